//! Real kernel objects: a namespace and veth pair per test, an XdpPort on one end
//! and a raw AF_PACKET socket on the other.
use super::*;
use crate::port::lab::{self, is_test_frame, RawSock, TEST_ETHERTYPE};
use std::process::Command;
use std::time::{Duration, Instant};

const PORT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const WAIT: Duration = Duration::from_secs(5);

/// The port lab's namespace holding a veth pair: the port under test on one end, the
/// raw peer on the other.
struct Lab {
    ns: lab::Netns,
    port_dev: String,
    peer_dev: String,
}

impl Lab {
    fn new(_tag: &str) -> Lab {
        let ns = lab::netns();
        let (port_dev, peer_dev) = (format!("{}p", ns.name()), format!("{}q", ns.name()));
        ns.veth(&port_dev, &peer_dev);
        ns.ip(&[
            "link",
            "set",
            &port_dev,
            "address",
            "02:00:00:00:00:0a",
            "up",
        ]);
        ns.ip(&[
            "link",
            "set",
            &peer_dev,
            "address",
            "02:00:00:00:00:0b",
            "up",
        ]);
        Lab {
            ns,
            port_dev,
            peer_dev,
        }
    }

    /// Run `f` on a thread inside the namespace (sockets it opens stay there).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.ns.run(f)
    }

    fn link_show(&self, dev: &str) -> String {
        self.ns.ip_out(&["link", "show", dev])
    }
}

/// Test frames (our EtherType) the peer received from the port side, until `n` or WAIT.
fn recv_test_frames(peer: &RawSock, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let frame = peer.recv(left).unwrap_or_else(|e| panic!("peer recv: {e}"));
        got.extend(frame.filter(|f| is_test_frame(f)));
    }
    got
}

fn poll_readable(fd: RawFd, within: Duration) -> bool {
    lab::wait_readable(fd, within).unwrap_or_else(|e| panic!("poll: {e}"))
}

/// Frame number `i`: a distinct length (60..=1514) and distinct contents.
fn test_frame(i: usize, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let len = 60 + (i * 397) % (1514 - 60 + 1);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&(i as u32).to_be_bytes());
    f.extend((f.len()..len).map(|j| (i * 7 + j) as u8));
    f
}

/// Frames sent from the peer arrive on the port byte for byte and in order, over
/// several bursts, and a part-filled burst is only topped up to BURST.
fn receives_from_peer(port: &mut XdpPort, peer: &RawSock) {
    const N: usize = 100;
    let sent: Vec<Vec<u8>> = (0..N).map(|i| test_frame(i, PORT_MAC, PEER_MAC)).collect();
    for f in &sent {
        peer.send(f).unwrap_or_else(|e| panic!("peer send: {e}"));
    }
    assert!(
        poll_readable(port.fd(), WAIT),
        "port fd never polled readable"
    );
    let mut got = Vec::new();
    let mut calls_with_frames = 0;
    let mut burst = Burst::new();
    // Start part-full: recv must only append up to the room left.
    for _ in 0..20 {
        assert!(burst.push(&[0xee; 60]));
    }
    let deadline = Instant::now() + WAIT;
    while got.len() < N && Instant::now() < deadline {
        let before = burst.len();
        let n = port.recv(&mut burst).expect("recv");
        assert_eq!(burst.len(), before + n);
        assert!(burst.len() <= BURST);
        if n == 0 {
            poll_readable(port.fd(), Duration::from_millis(100));
            continue;
        }
        calls_with_frames += 1;
        got.extend(
            burst
                .iter()
                .skip(before)
                .filter(|f| is_test_frame(f))
                .map(<[u8]>::to_vec),
        );
        burst.clear();
    }
    assert_eq!(got.len(), N, "frames received on the port");
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g, s, "frame {i} differs");
    }
    assert!(
        calls_with_frames >= N / BURST,
        "took {calls_with_frames} recv calls"
    );
    assert_eq!(port.stats().rx_oversize, 0);
}

/// Bursts sent through the port reach the peer byte for byte and in order.
fn sends_to_peer(port: &mut XdpPort, peer: &RawSock) {
    const BURSTS: usize = 3;
    let mut sent = Vec::new();
    for b in 0..BURSTS {
        let mut burst = Burst::new();
        for i in 0..BURST {
            let f = test_frame(1000 + b * BURST + i, PEER_MAC, PORT_MAC);
            assert!(burst.push(&f));
            sent.push(f);
        }
        assert_eq!(port.send(&burst).expect("send"), BURST);
    }
    let got = recv_test_frames(peer, sent.len());
    assert_eq!(got.len(), sent.len(), "frames the peer received");
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g, s, "frame {i} differs");
    }
}

fn rx_tx_in_mode(tag: &str, mode: XdpMode, shown: &'static str) {
    let lab = Lab::new(tag);
    let (a, b) = (lab.port_dev.clone(), lab.peer_dev.clone());
    let port_dev = a.clone();
    let check_attached = move |out: String| {
        assert!(
            out.contains(shown),
            "expected {shown} attached, ip says: {out}"
        );
    };
    let link = lab.link_show(&a);
    assert!(!link.contains("xdp"), "no program before open: {link}");
    let ns = lab.ns.name().to_string();
    lab.run(move || {
        let mut port = XdpPort::open_with(&port_dev, mode).expect("open XdpPort");
        assert_eq!(port.mode(), mode);
        assert_eq!(port.name(), port_dev);
        check_attached(lab::ip_out(&["-n", &ns, "link", "show", &port_dev]));
        let peer = RawSock::open(&b).unwrap_or_else(|e| panic!("peer socket: {e}"));
        receives_from_peer(&mut port, &peer);
        sends_to_peer(&mut port, &peer);
    });
}

#[test]
fn generic_mode_moves_frames_both_ways() {
    rx_tx_in_mode("g", XdpMode::Generic, "xdpgeneric");
}

#[test]
fn native_mode_moves_frames_both_ways() {
    rx_tx_in_mode("n", XdpMode::Native, " xdp ");
}

#[test]
fn drop_detaches_the_program_and_reopen_works() {
    let lab = Lab::new("d");
    let dev = lab.port_dev.clone();
    let port = lab.run(move || XdpPort::open(&dev).expect("first open"));
    // veth has native XDP, so Auto must not fall back.
    assert_eq!(port.mode(), XdpMode::Native);
    let link = lab.link_show(&lab.port_dev);
    assert!(link.contains("xdp"), "program attached while open: {link}");
    drop(port);
    let link = lab.link_show(&lab.port_dev);
    assert!(
        !link.contains("xdp"),
        "program left attached after drop: {link}"
    );
    let dev = lab.port_dev.clone();
    let again = lab.run(move || XdpPort::open_with(&dev, XdpMode::Generic));
    let again = again.expect("second open after drop");
    assert_eq!(again.mode(), XdpMode::Generic);
}

/// Run by `killed_process_leaves_no_program` in a child process: open the port named
/// by VSX_HOLD_NS / VSX_HOLD_DEV, say so, and wait to be killed.
#[test]
#[ignore = "helper: run as a child process by killed_process_leaves_no_program"]
fn hold_port_until_killed() {
    let (Ok(ns), Ok(dev)) = (std::env::var("VSX_HOLD_NS"), std::env::var("VSX_HOLD_DEV")) else {
        return;
    };
    // The parent owns the namespace.
    let port = lab::run_in(&ns, move || XdpPort::open(&dev).expect("open in the child"));
    println!("VSX_READY {}", port.mode());
    std::thread::sleep(WAIT * 6);
}

/// The hard requirement: a killed daemon leaves no XDP program behind, because the
/// program hangs on a BPF link that dies with the process's fds.
#[test]
fn killed_process_leaves_no_program() {
    use std::io::BufRead;
    let lab = Lab::new("k");
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "port::af_xdp::tests::hold_port_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env("VSX_HOLD_NS", lab.ns.name())
        .env("VSX_HOLD_DEV", &lab.port_dev)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the child holding the port");
    let stdout = child.stdout.take().expect("child stdout");
    let ready = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("VSX_READY"));
    let link = lab.link_show(&lab.port_dev);
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    assert!(ready.is_some(), "the child never opened the port");
    assert!(
        link.contains("xdp"),
        "attached while the child lived: {link}"
    );
    // Fd release after exit is synchronous for links, but allow the kernel a moment.
    let deadline = Instant::now() + WAIT;
    loop {
        let link = lab.link_show(&lab.port_dev);
        if !link.contains("xdp") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "program left attached after SIGKILL: {link}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let dev = lab.port_dev.clone();
    lab.run(move || XdpPort::open(&dev).expect("open again after the kill"));
}

#[test]
fn open_errors_say_what_failed() {
    let lab = Lab::new("e");
    let dev = lab.port_dev.clone();
    let (first, second, third) = lab.run(move || {
        let missing = XdpPort::open("vsxnosuchdev").err().map(|e| e.to_string());
        let held = XdpPort::open_with(&dev, XdpMode::Generic).expect("first open");
        let busy = XdpPort::open_with(&dev, XdpMode::Generic)
            .err()
            .map(|e| e.to_string());
        // A second program on the same interface: the kernel refuses the link.
        let index = ifindex(&dev).expect("ifindex");
        let linked = XskRedirect::attach(&dev, index, held.fd(), XdpMode::Generic)
            .err()
            .map(|e| e.to_string());
        drop(held);
        (missing, busy, linked)
    });
    let first = first.expect("opening a missing interface fails");
    assert!(first.contains("find interface vsxnosuchdev"), "{first}");
    let second = second.expect("a second port on a busy interface fails");
    assert!(second.contains("bind the AF_XDP socket"), "{second}");
    assert!(second.contains("EBUSY"), "{second}");
    let third = third.expect("a second XDP link on the interface fails");
    assert!(
        third.contains(&format!(
            "attach XDP program to {} in generic mode",
            lab.port_dev
        )),
        "{third}"
    );
    assert!(
        third.contains("EBUSY") || third.contains("EEXIST"),
        "{third}"
    );
    assert!(second.contains(&lab.port_dev), "{second}");
}
