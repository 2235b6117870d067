use super::*;
use crate::port::lab::{self, collect, is_test_frame, test_frame, Netns, RawSock};
use crate::port::BURST;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

/// A namespace with veth `vpa`<->`vpb`; our port on `vpa`, a plain raw socket on `vpb`.
fn setup(mtu: Option<&str>) -> (Netns, PacketPort, RawSock) {
    let ns = lab::netns();
    ns.veth("vpa", "vpb");
    if let Some(mtu) = mtu {
        ns.ip(&["link", "set", "vpa", "mtu", mtu]);
        ns.ip(&["link", "set", "vpb", "mtu", mtu]);
    }
    let (port, peer) = ns.run(|| {
        let port = PacketPort::open("vpa").unwrap_or_else(|e| panic!("{e}"));
        let peer = RawSock::open("vpb").unwrap_or_else(|e| panic!("raw socket: {e}"));
        (port, peer)
    });
    (ns, port, peer)
}

fn recv_all(port: &mut PacketPort, want: usize) -> (Vec<Vec<u8>>, usize) {
    let fd = port.fd();
    collect(want, WAIT, fd, |b| port.recv(b), is_test_frame)
}

#[test]
fn receives_exact_bytes_across_many_bursts() {
    let (_ns, mut port, peer) = setup(None);
    // 100 frames: more than three bursts, lengths from minimum to full MTU.
    let sent: Vec<Vec<u8>> = (0..100u16)
        .map(|i| test_frame(i, 60 + (usize::from(i) * 29) % 1455))
        .collect();
    for f in &sent {
        peer.send(f).unwrap_or_else(|e| panic!("peer send: {e}"));
    }
    let (got, calls) = recv_all(&mut port, sent.len());
    assert_eq!(got.len(), sent.len(), "frames lost");
    assert_eq!(got, sent, "frames differ or out of order");
    assert!(calls >= sent.len().div_ceil(BURST), "{calls} recv calls");
    assert_eq!(port.stats(), PacketStats::default());
}

/// A lone frame (ping-like traffic) must make the fd readable without more traffic
/// filling the block: the block retire timer hands it over.
#[test]
fn lone_frame_wakes_the_fd() {
    let (_ns, mut port, peer) = setup(None);
    peer.send(&test_frame(42, 98))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut burst = Burst::new();
    let deadline = std::time::Instant::now() + WAIT;
    while !burst.iter().any(is_test_frame) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(
            lab::wait_readable(port.fd(), left).unwrap_or_else(|e| panic!("{e}")),
            "fd never became readable"
        );
        burst.clear();
        port.recv(&mut burst).unwrap_or_else(|e| panic!("{e}"));
    }
    let got: Vec<&[u8]> = burst.iter().filter(|f| is_test_frame(f)).collect();
    assert_eq!(got, vec![&test_frame(42, 98)[..]]);
}

#[test]
fn sends_exact_bytes_and_does_not_hear_itself() {
    let (_ns, mut port, peer) = setup(None);
    let sent: Vec<Vec<u8>> = (0..80u16)
        .map(|i| test_frame(i, 60 + (usize::from(i) * 97) % 1455))
        .collect();
    for chunk in sent.chunks(BURST) {
        let mut burst = Burst::new();
        for f in chunk {
            assert!(burst.push(f));
        }
        let n = port.send(&burst).unwrap_or_else(|e| panic!("send: {e}"));
        assert_eq!(n, chunk.len(), "TX ring refused frames");
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        match peer.recv(WAIT).unwrap_or_else(|e| panic!("peer recv: {e}")) {
            Some(f) if is_test_frame(&f) => got.push(f),
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(got.len(), sent.len(), "frames lost");
    assert_eq!(got, sent, "frames differ or out of order");
    // Our own transmissions must not come back up the RX ring.
    let (echo, _) = collect(
        1,
        Duration::from_millis(100),
        port.fd(),
        |b| port.recv(b),
        is_test_frame,
    );
    assert!(
        echo.is_empty(),
        "port received {} of its own frames",
        echo.len()
    );
}

#[test]
fn tx_ring_wraps_around() {
    let (_ns, mut port, peer) = setup(None);
    // More frames than the ring has slots, in bursts, draining the peer as we go.
    let total = TX_FRAME_NR * 2 + 7;
    let mut got = 0usize;
    let mut seq = 0u16;
    while usize::from(seq) < total {
        let mut burst = Burst::new();
        while !burst.is_full() && usize::from(seq) < total {
            burst.push(&test_frame(seq, 128));
            seq += 1;
        }
        let n = port.send(&burst).unwrap_or_else(|e| panic!("send: {e}"));
        assert_eq!(n, burst.len());
        while let Some(f) = peer
            .recv(Duration::from_millis(0))
            .unwrap_or_else(|e| panic!("{e}"))
        {
            if is_test_frame(&f) {
                assert_eq!(f, test_frame(got as u16, 128));
                got += 1;
            }
        }
    }
    while got < total {
        match peer.recv(WAIT).unwrap_or_else(|e| panic!("peer recv: {e}")) {
            Some(f) if is_test_frame(&f) => {
                assert_eq!(f, test_frame(got as u16, 128));
                got += 1;
            }
            Some(_) => {}
            None => panic!("only {got} of {total} frames arrived"),
        }
    }
}

#[test]
fn oversize_frames_are_counted_and_skipped() {
    let (_ns, mut port, peer) = setup(Some("4000"));
    peer.send(&test_frame(1, 60))
        .unwrap_or_else(|e| panic!("{e}"));
    peer.send(&test_frame(2, MAX_FRAME + 1))
        .unwrap_or_else(|e| panic!("{e}"));
    peer.send(&test_frame(3, 3000))
        .unwrap_or_else(|e| panic!("{e}"));
    peer.send(&test_frame(4, MAX_FRAME))
        .unwrap_or_else(|e| panic!("{e}"));
    let (got, _) = recv_all(&mut port, 2);
    assert_eq!(got, vec![test_frame(1, 60), test_frame(4, MAX_FRAME)]);
    assert_eq!(port.dropped_oversize(), 2);
}

#[test]
fn vlan_tag_stripped_by_kernel_is_put_back() {
    let (_ns, mut port, peer) = setup(None);
    let inner = test_frame(9, 100);
    let mut tagged = inner[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x20, 0x2a]); // PCP 1, VID 42
    tagged.extend_from_slice(&inner[12..]);
    peer.send(&tagged).unwrap_or_else(|e| panic!("{e}"));
    let fd = port.fd();
    let (got, _) = collect(
        1,
        WAIT,
        fd,
        |b| port.recv(b),
        |f| f.len() > 16 && f[12..14] == [0x81, 0x00],
    );
    assert_eq!(got, vec![tagged]);
}

/// A veth peer offloads TCP/UDP checksums; what the port hands on must carry real
/// ones, or the next kernel along drops the packet.
#[test]
fn offloaded_checksums_are_completed() {
    let (ns, mut port, _peer) = setup(None);
    ns.ip(&["addr", "add", "172.16.5.1/24", "dev", "vpb"]);
    ns.ip(&[
        "neigh",
        "add",
        "172.16.5.2",
        "lladdr",
        "02:00:5e:10:00:09",
        "dev",
        "vpb",
        "nud",
        "permanent",
    ]);
    ns.run(|| {
        let udp = std::net::UdpSocket::bind("172.16.5.1:0").unwrap_or_else(|e| panic!("{e}"));
        udp.send_to(&[7u8; 333], "172.16.5.2:9")
            .unwrap_or_else(|e| panic!("{e}"));
        // Only the SYN matters; nobody answers, so give up quickly.
        let to = "172.16.5.2:80".parse().unwrap_or_else(|e| panic!("{e}"));
        let _ = std::net::TcpStream::connect_timeout(&to, Duration::from_millis(50));
    });
    let fd = port.fd();
    let ipv4 = |f: &[u8]| f.len() > 34 && f[12..14] == [0x08, 0x00] && matches!(f[23], 6 | 17);
    let (got, _) = collect(2, WAIT, fd, |b| port.recv(b), ipv4);
    assert!(got.iter().any(|f| f[23] == 17), "no UDP frame");
    assert!(got.iter().any(|f| f[23] == 6), "no TCP frame");
    for f in &got {
        assert_eq!(crate::port::csum::l4_checksum_ok(f), Some(true), "{f:02x?}");
    }
    assert!(port.stats().csum_completed >= 2, "{:?}", port.stats());
}

#[test]
fn open_missing_interface_says_which() {
    lab::require_root();
    let err = PacketPort::open("vsp-no-such").err().map(|e| e.to_string());
    let msg = err.unwrap_or_default();
    assert!(msg.contains("vsp-no-such"), "{msg}");
}
