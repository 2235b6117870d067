use crate::engine::{Engine, EngineConfig};
use crate::fdb::Mac;
use crate::port::af_xdp::XdpPort;
use crate::port::lab::{self, RawSock};
use crate::{NetConfig, PortId};
use std::time::{Duration, Instant};

const A: Mac = [2, 0, 0, 0, 0, 0xa];
const B: Mac = [2, 0, 0, 0, 0, 0xb];
const C: Mac = [2, 0, 0, 0, 0, 0xc];

fn frame(dst: Mac, src: Mac, seq: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend(src);
    f.extend([0x88, 0xb5, seq]);
    f.resize(60, seq);
    f
}

/// Whether `sock` receives `want` within a second (other frames are skipped).
fn gets(sock: &RawSock, want: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match sock.recv(left).expect("recv") {
            Some(f) if f == want => return true,
            Some(_) => continue,
            None => return false,
        }
    }
    false
}

/// Frames from `src` on `from` reach `to` (one every 5 ms), and within 20 of them
/// the kernel forwards them rather than a worker (the ingress port's fast-path count
/// moves): well inside the workers' once-a-second sync, so a takeover that only the
/// sync would bring about fails.
fn until_fast(e: &Engine, from: (&RawSock, PortId), to: &RawSock, dst: Mac, src: Mac) {
    let fast = |id| {
        e.stats()
            .ports
            .iter()
            .find(|p| p.info.id == id)
            .map(|p| p.counters.fast_path_rx_packets)
            .expect("port")
    };
    let before = fast(from.1);
    for seq in 0..20u8 {
        let f = frame(dst, src, seq);
        from.0.send(&f).expect("send");
        assert!(gets(to, &f), "frame {seq} from {src:x?} to {dst:x?} lost");
        if fast(from.1) > before {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the kernel never took over {src:x?} -> {dst:x?}");
}

#[test]
fn follows_a_mac_across_workers_and_back() {
    let ns = lab::netns();
    for i in 0..3 {
        let (s, p) = (format!("s{i}"), format!("p{i}"));
        ns.veth(&s, &p);
        // The far end takes frames the fast path redirects to it (NAPI).
        ns.exec(&["ethtool", "-K", &p, "gro", "on"]);
    }
    ns.run(|| {
        let mut e = Engine::start(EngineConfig {
            workers: 2,
            pin: false,
            ..Default::default()
        })
        .expect("engine");
        e.add_network(NetConfig {
            id: 7,
            ..Default::default()
        })
        .expect("network");
        let ids: Vec<PortId> = (0..3)
            .map(|i| {
                let port = XdpPort::open(&format!("s{i}")).expect("AF_XDP port");
                e.add_port_with(7, Box::new(port), true).expect("port")
            })
            .collect();
        let ports = e.ports();
        assert!(ports.iter().all(|p| p.fast_path), "{ports:?}");
        assert_ne!(
            ports[0].worker, ports[1].worker,
            "ports 0 and 1 on two workers"
        );
        e.barrier().expect("barrier");
        let far: Vec<RawSock> = (0..3)
            .map(|i| RawSock::open(&format!("p{i}")).expect("raw socket"))
            .collect();

        // A behind port 0 (worker 0), B behind port 1 (worker 1), C behind port 2.
        for (i, mac) in [A, B, C].into_iter().enumerate() {
            far[i].send(&frame([0xff; 6], mac, 0)).expect("send");
        }
        std::thread::sleep(Duration::from_millis(100));
        until_fast(&e, (&far[2], ids[2]), &far[0], A, C);
        until_fast(&e, (&far[0], ids[0]), &far[1], B, A);

        // A moves to port 1 (the other worker) and speaks there: frames for it follow.
        until_fast(&e, (&far[1], ids[1]), &far[2], C, A);
        until_fast(&e, (&far[2], ids[2]), &far[1], A, C);
        // And back to port 0: worker 0 must install it again (it had let it go).
        until_fast(&e, (&far[0], ids[0]), &far[2], C, A);
        until_fast(&e, (&far[2], ids[2]), &far[0], A, C);
        // Entries the sync might race away come back within its second.
        std::thread::sleep(Duration::from_millis(1500));
        until_fast(&e, (&far[2], ids[2]), &far[0], A, C);
    });
}
