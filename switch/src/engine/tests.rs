//! Two workers, ports on different workers: frames and learned MACs must cross.
//! The ports are AF_UNIX SOCK_SEQPACKET pairs: real fds the workers poll, with
//! frame boundaries kept, and no privileges needed.

use super::*;
use crate::gateway::Gateway;
use crate::port::{Burst, Port};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

struct PairPort {
    name: String,
    fd: OwnedFd,
}

impl Port for PairPort {
    fn name(&self) -> &str {
        &self.name
    }
    fn backend(&self) -> Backend {
        Backend::Tap
    }
    fn recv(&mut self, burst: &mut Burst) -> io::Result<usize> {
        let mut n = 0;
        while let Some(slot) = burst.slot() {
            match recv(self.fd.as_raw_fd(), slot, MsgFlags::MSG_DONTWAIT) {
                Ok(len) => {
                    burst.commit(len);
                    n += 1;
                }
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    }
    fn send(&mut self, burst: &Burst) -> io::Result<usize> {
        let mut n = 0;
        for f in burst.iter() {
            if send(self.fd.as_raw_fd(), f, MsgFlags::MSG_DONTWAIT).is_err() {
                break;
            }
            n += 1;
        }
        Ok(n)
    }
    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A port for the engine and the test's end of it.
fn pair(name: &str) -> (Box<dyn Port>, OwnedFd) {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_NONBLOCK,
    )
    .expect("socketpair");
    (
        Box::new(PairPort {
            name: name.into(),
            fd: a,
        }),
        b,
    )
}

fn frame(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend(src);
    f.extend([0x88, 0xb5]);
    f.resize(60, tag);
    f
}

/// Read one frame from the test's end, waiting up to 2 s.
fn read_frame(fd: &OwnedFd) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => return Some(buf[..n].to_vec()),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    None
}

const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

#[test]
fn frames_and_learning_cross_workers() {
    let mut e = Engine::start(EngineConfig {
        workers: 2,
        pin: false,
        ..Default::default()
    })
    .expect("engine");
    let gw = Gateway {
        ip: Ipv4Addr::new(172, 18, 0, 1),
        mac: [2, 0x42, 172, 18, 0, 1],
    };
    e.add_network(NetConfig {
        id: 7,
        gateway: Some(gw),
        ..Default::default()
    })
    .expect("network");
    let (p0, t0) = pair("p0");
    let (p1, t1) = pair("p1");
    let id0 = e.add_port(7, p0).expect("port");
    let id1 = e.add_port(7, p1).expect("port");
    // A bystander: it sees the broadcast and must not see the unicast.
    let (p2, t2) = pair("p2");
    e.add_port(7, p2).expect("port");
    let ports = e.ports();
    assert_ne!(
        ports[0].worker, ports[1].worker,
        "least-loaded placement spreads ports"
    );
    e.barrier().expect("barrier");

    // Broadcast from A on worker X reaches the port on worker Y.
    let bcast = frame([0xff; 6], A, 1);
    send(t0.as_raw_fd(), &bcast, MsgFlags::empty()).expect("send");
    assert_eq!(
        read_frame(&t1).as_deref(),
        Some(&bcast[..]),
        "flooded across workers"
    );
    assert_eq!(
        read_frame(&t2).as_deref(),
        Some(&bcast[..]),
        "flooded to the bystander"
    );
    // B answers A by unicast: the other worker must know A (announced), not flood.
    let reply = frame(A, B, 2);
    send(t1.as_raw_fd(), &reply, MsgFlags::empty()).expect("send");
    assert_eq!(
        read_frame(&t0).as_deref(),
        Some(&reply[..]),
        "unicast across workers"
    );
    assert_eq!(
        read_frame(&t2),
        None,
        "A was known on the other worker: no flood"
    );

    let fdb = e.fdb(7).expect("fdb");
    let learned: Vec<([u8; 6], PortId)> = fdb.iter().map(|x| (x.mac, x.port)).collect();
    assert_eq!(learned, vec![(A, id0), (B, id1)]);
    let s = e.stats();
    assert!(
        s.workers.iter().map(|w| w.cross_worker).sum::<u64>() >= 2,
        "{:?}",
        s.workers
    );
    let p = |id| {
        s.ports
            .iter()
            .find(|p| p.info.id == id)
            .map(|p| p.counters.clone())
            .expect("port stats")
    };
    assert_eq!((p(id0).rx_packets, p(id0).tx_packets), (1, 1));
    assert_eq!((p(id1).rx_packets, p(id1).tx_packets), (1, 1));
    // Each stage counts the frames it took in, summed over the workers: two received,
    // both through L2, three sent (the flood's two copies and the unicast), none routed.
    let stages = s.workers.iter().fold([0u64; 7], |mut sum, w| {
        for (k, (_, v)) in w.stages.rows().iter().enumerate() {
            sum[k] += v;
        }
        sum
    });
    assert_eq!(stages, [2, 2, 0, 0, 0, 0, 3], "{:?}", s.workers);

    // After removal nothing is sent to the port and its MACs are forgotten.
    e.remove_port(id1).expect("remove");
    assert!(e.fdb(7).expect("fdb").iter().all(|x| x.port != id1));
}

/// The control plane's remote endpoints reach every worker: each answers ARP for them
/// from its own replica and lists them as static entries behind the tunnel.
#[test]
fn remote_endpoints_reach_every_worker() {
    use crate::remote::{RemoteEndpoint, RemoteUpdate};
    let mut e = Engine::start(EngineConfig {
        workers: 2,
        pin: false,
        ..Default::default()
    })
    .expect("engine");
    e.add_network(NetConfig {
        id: 8,
        gateway: Some(Gateway {
            ip: Ipv4Addr::new(10, 0, 9, 1),
            mac: [2, 0x42, 10, 0, 9, 1],
        }),
        overlay: Some(crate::OverlayConfig {
            vni: 4096,
            peers: vec![Ipv4Addr::new(192, 168, 0, 2)],
        }),
        ..Default::default()
    })
    .expect("network");
    let (p0, t0) = pair("p0");
    let (p1, t1) = pair("p1");
    e.add_port(8, p0).expect("port");
    e.add_port(8, p1).expect("port");
    let upsert: Vec<RemoteEndpoint> = (0..100u8)
        .map(|i| RemoteEndpoint {
            mac: [2, 0, 0, 0, 9, i],
            ip: Some(Ipv4Addr::new(10, 0, 9, 100 + i)),
            ip6: None,
            vtep: Ipv4Addr::new(192, 168, 0, 2),
        })
        .collect();
    e.update_remote(
        8,
        RemoteUpdate {
            upsert: upsert.clone(),
            remove: vec![],
        },
    )
    .expect("update");
    e.barrier().expect("barrier");
    let fdb = e.fdb(8).expect("fdb");
    assert_eq!(fdb.len(), 100);
    assert!(fdb
        .iter()
        .all(|x| x.is_static && x.port == crate::TUNNEL_PORT));

    // Who has 10.0.9.142? asked on either worker's port: answered, not flooded.
    for (asker, other, mac) in [(&t0, &t1, A), (&t1, &t0, B)] {
        let mut req = vec![0xff; 6];
        req.extend(mac);
        req.extend([0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        req.extend(mac);
        req.extend([10, 0, 9, 2, 0, 0, 0, 0, 0, 0, 10, 0, 9, 142]);
        req.resize(60, 0);
        send(asker.as_raw_fd(), &req, MsgFlags::empty()).expect("send");
        let reply = read_frame(asker).expect("answered");
        assert_eq!(&reply[6..12], &[2, 0, 0, 0, 9, 42], "the remote's MAC");
        assert_eq!(&reply[28..32], &[10, 0, 9, 142]);
        assert_eq!(read_frame(other), None, "not flooded");
    }
}
