//! The tc data path end to end (the default for veth endpoints): sandboxes keep their
//! TCP offloads, the kernel carries GSO segments between them whole, everything the
//! workers handle (the gateway, floods, DNS, routing and NAT) still works with offloads
//! on, and an endpoint costs the daemon almost no memory.

use std::time::Duration;

use e2e::{iperf_bytes, ns_exec, ping, uplinked_network, Bg, Capture, Daemon, Lab};

/// `ethtool -k` of the sandbox's eth0: (tx checksumming, TSO) as "on"/"off".
fn offloads(ns: &str) -> (bool, bool) {
    let o = ns_exec(ns, &["ethtool", "-k", "eth0"], Duration::from_secs(5));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let on = |key: &str| {
        text.lines()
            .any(|l| l.trim_start().starts_with(key) && l.contains(": on"))
    };
    (on("tx-checksumming:"), on("tcp-segmentation-offload:"))
}

/// The namespace's TCP stack has verified every checksum it received (the kernel's
/// translations left them right).
fn assert_no_tcp_checksum_errors(ns: &str) {
    let o = ns_exec(
        ns,
        &["nstat", "-az", "TcpInCsumErrors"],
        Duration::from_secs(5),
    );
    let errors = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        errors
            .lines()
            .any(|l| l.starts_with("TcpInCsumErrors") && l.split_whitespace().nth(1) == Some("0")),
        "{ns} saw bad TCP checksums: {errors}"
    );
}

/// Frame lengths tcpdump printed (`-e`: "... length N: ...", the first is the frame's).
fn frame_lengths(lines: &[String]) -> Vec<usize> {
    lines
        .iter()
        .filter_map(|l| {
            let (_, rest) = l.split_once(", length ")?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// A 64 KiB TCP segment from one sandbox reaches the other in one piece: with GRO off
/// on the receiving side, what tcpdump sees there is larger than the MTU only if the
/// sender's GSO skb crossed the switch unsegmented (the tc fast path's redirect_peer).
#[test]
fn gso_segments_cross_the_fast_path_whole() {
    let lab = Lab::new();
    let (d, net) = e2e::daemon_with_network(&lab, &[], &["--subnet", "172.27.0.0/24"]);
    let [(a, _), (b, ip_b)] = d.sandboxes(&lab, &net, &[], ["a", "b"]);
    assert_eq!(
        offloads(&a),
        (true, true),
        "the sender keeps TX checksum and TSO"
    );
    e2e::run_ok(&[
        "ip", "netns", "exec", &b, "ethtool", "-K", "eth0", "gro", "off",
    ]);
    assert!(ping(&a, &ip_b, 2), "learn both ends");

    let _srv = Bg::spawn(&lab, &b, "iperf", &["iperf3", "-s"]);
    e2e::wait_listening(&b, 5201);
    let cap = Capture::start(&lab, &b, "eth0", "gso");
    let (bytes, why) = iperf_bytes(&a, &ip_b, false);
    let lines = cap.stop();
    assert!(bytes > 10_000_000, "iperf3 moved {bytes} bytes: {why}");
    let big = frame_lengths(&lines)
        .into_iter()
        .filter(|&n| n > 1514)
        .count();
    assert!(
        big > 0,
        "no frame larger than the MTU reached the receiver: segments were cut on the way ({} frames seen)",
        lines.len()
    );
    let s = d.port_stats(&a);
    assert_eq!(s["backend"], "tc", "{s}");
    // No XDP program of any kind on the host end: it would clear the sandbox's GSO.
    let host = s["name"].as_str().expect("port name");
    let link = e2e::run_out(&["ip", "-n", &e2e::host_ns(&lab), "-d", "link", "show", host]);
    assert!(!link.contains("xdp"), "{link}");
    assert!(
        s["fast_path_rx_packets"].as_u64().unwrap_or(0) > 1000,
        "the kernel forwarded the stream: {s}"
    );
}

/// With offloads on in the sandboxes, what the workers handle still works: the gateway
/// (ARP, ping), floods, the embedded DNS over UDP and TCP, and TCP sent by a sandbox
/// through SNAT and through a published port. Frames the tc program punts must reach the
/// worker segmented and with finished checksums, or the outside drops them. Established
/// routed TCP is then translated by the kernel (the sender's FAST-RX grows), and with TX
/// checksumming off on the uplink the outside verifies every checksum it translated.
#[test]
fn worker_traffic_works_with_offloads_on() {
    let lab = Lab::new();
    let (out, d, net) = uplinked_network(&lab, "172.28.0.0/24", &[]);
    let (a, b, c) = (lab.name("a"), lab.name("b"), lab.name("c"));
    let ip_a = d.sandbox(&a, &net, &[]);
    let ip_b = d.sandbox(&b, &net, &["-p", "5201:5201"]);
    d.sandbox(&c, &net, &[]);
    for s in [&a, &b, &c] {
        assert_eq!(offloads(s), (true, true), "{s} keeps its offloads");
    }
    // The kernel then finishes the checksums of what leaves by the uplink, from the
    // pseudo-header sums the translation left, and the outside checks them.
    let host = e2e::host_ns(&lab);
    e2e::run_ok(&[
        "ip",
        "netns",
        "exec",
        &host,
        "ethtool",
        "-K",
        &out.uplink,
        "tx",
        "off",
    ]);

    // The gateway answers ARP and echo; the first ARP for b floods, so c sees it.
    assert!(ping(&a, "172.28.0.1", 2), "the gateway answers");
    let cap = Capture::start(&lab, &c, "eth0", "flood");
    assert!(ping(&a, &ip_b, 2));
    let seen = cap.stop();
    assert!(
        seen.iter()
            .any(|l| l.contains("ARP") && l.contains(&format!("who-has {ip_b}"))),
        "the broadcast ARP was flooded to c: {seen:?}"
    );

    // The embedded resolver answers sandbox names over UDP and TCP.
    for proto in ["+notcp", "+tcp"] {
        let o = ns_exec(
            &a,
            &[
                "dig",
                "+short",
                "+time=3",
                "+tries=2",
                proto,
                "@172.28.0.1",
                &b,
            ],
            Duration::from_secs(20),
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            ip_b,
            "dig {proto} for {b}"
        );
    }

    // TCP a sandbox sends, leaving by the router: SNAT to the outside, and a published
    // port's server sending back to an outside client (-R); then replies coming back
    // through the uplink's XDP program, straight to the endpoint. Each transfer: the
    // client, the server's address, -R, the sandbox port whose kernel counter must grow
    // and that counter, and what it shows.
    let _outside = Bg::spawn(&lab, &out.ns, "iperf-out", &["iperf3", "-s", "-B", out.ip]);
    let _inside = Bg::spawn(&lab, &b, "iperf-in", &["iperf3", "-s"]);
    e2e::wait_listening(&out.ns, 5201);
    e2e::wait_listening(&b, 5201);
    let transfers = [
        (
            &a,
            out.ip,
            false,
            &a,
            "fast_path_rx_packets",
            "sandbox -> outside through SNAT",
            "the kernel translated the established SNAT session",
        ),
        (
            &out.ns,
            out.uplink_ip,
            true,
            &b,
            "fast_path_rx_packets",
            "published port, sandbox sending,",
            "the kernel translated the published port's replies",
        ),
        (
            &a,
            out.ip,
            true,
            &a,
            "fast_path_tx_packets",
            "outside -> sandbox through SNAT",
            "the uplink's program translated the replies back",
        ),
    ];
    for (client, server, reverse, port, counter, what, kernel) in transfers {
        let before = d.port_count(port, counter);
        let (bytes, why) = iperf_bytes(client, server, reverse);
        assert!(bytes > 10_000_000, "{what} moved {bytes} bytes: {why}");
        assert!(d.port_count(port, counter) - before > 1000, "{kernel}");
    }
    // Both ends checked every checksum the kernel's translations left.
    for ns in [&out.ns, &a] {
        assert_no_tcp_checksum_errors(ns);
    }
    // The sessions stay listed in the NAT, which keeps their state.
    let ct = d.json(&["conntrack"]);
    assert!(ct.as_array().is_some_and(|a| !a.is_empty()), "{ct}");
    let _ = ip_a;
}

/// Hundreds of sandboxes on one network: each endpoint adds well under 1 MiB to the
/// daemon's memory (no socket, rings or buffers of its own), and they all work.
#[test]
fn hundreds_of_sandboxes_cost_little_memory() {
    const N: usize = 200;
    let lab = Lab::new();
    let (d, net) = e2e::daemon_with_network(&lab, &[], &["--subnet", "172.29.0.0/16"]);
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).expect("status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS");
        kb * 1024
    };
    // One sandbox first, so one-time costs (threads, tables) are not charged to the rest.
    let first = lab.name("s0");
    d.sandbox(&first, &net, &[]);
    let before = rss();
    let names: Vec<String> = (1..N).map(|i| lab.name(&format!("s{i}"))).collect();
    for n in &names {
        d.sandbox(n, &net, &[]);
    }
    let after = rss();
    let per = (after.saturating_sub(before)) as f64 / (N - 1) as f64;
    assert!(
        per <= 1024.0 * 1024.0,
        "each endpoint costs the daemon {:.0} KiB of RSS ({} -> {} bytes)",
        per / 1024.0,
        before,
        after
    );
    let last = names.last().expect("names");
    let ip_last = d.ip_of(last, &net);
    assert!(
        ping(&first, &ip_last, 2),
        "the first sandbox reaches the last"
    );
    for n in &names {
        d.ok(&["sandbox", "rm", "-f", n]);
    }
    let ports = d.json(&["stats"])["ports"].as_array().expect("ports").len();
    assert_eq!(
        ports, 3,
        "one sandbox, the endpoint trunk and the host port are left"
    );
}

/// `-o fastpath` takes tc or xdp; anything else is refused, naming the choices.
#[test]
fn fastpath_option_is_validated() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &[]);
    let err = d.refused(&["network", "create", "-o", "fastpath=ebpf", &lab.name("n")]);
    assert!(
        err.contains("fastpath=ebpf") && err.contains("tc") && err.contains("xdp"),
        "{err}"
    );
    d.ok(&["network", "create", "-o", "fastpath=xdp", &lab.name("x")]);
}

/// A capture of a port sees its routed TCP too: while it runs, the router hands none of
/// the port's NAT sessions to the kernel (and takes back those it had).
#[test]
fn capture_sees_routed_tcp_the_kernel_would_translate() {
    let lab = Lab::new();
    let (out, d, net) = uplinked_network(&lab, "172.28.1.0/24", &[]);
    let a = lab.name("a");
    d.sandbox(&a, &net, &[]);
    let _srv = Bg::spawn(&lab, &out.ns, "iperf-out", &["iperf3", "-s", "-B", out.ip]);
    e2e::wait_listening(&out.ns, 5201);
    let fast = || {
        let p = d.port_stats(&a);
        let n = |k: &str| p[k].as_u64().unwrap_or(0);
        n("fast_path_rx_packets") + n("fast_path_tx_packets")
    };
    let file = lab.dir.join("a.pcap");
    let mut cap = d.spawn_ctl(&["capture", &a, "-w", file.to_str().expect("path")]);
    e2e::wait_for("the capture to start", Duration::from_secs(5), || {
        file.exists()
    });
    let before = fast();
    let (bytes, why) = iperf_bytes(&a, out.ip, false);
    assert!(
        bytes > 1_000_000,
        "iperf3 through SNAT moved {bytes} bytes: {why}"
    );
    let kernel = fast() - before;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(cap.id() as i32, libc::SIGINT) };
    assert!(cap.wait().expect("capture").success());
    assert_eq!(kernel, 0, "the kernel translated frames of a captured port");
    let lines = e2e::pcap_lines(&file, &[]);
    let count = |pat: &str| lines.iter().filter(|l| l.contains(pat)).count();
    let (sent, replies) = (count("> 198.51.100.1.5201"), count("198.51.100.1.5201 >"));
    assert!(sent > 500, "the capture saw {sent} frames of the transfer");
    assert!(replies > 100, "the capture saw {replies} replies");
}

/// Line echo server on port 80 (a thread per connection).
const ECHO_SERVER: &str = r"import socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(('0.0.0.0', 80), H).serve_forever()
";

/// New connections to a published port open in the kernel once the router has answered
/// one: the tc uplink's program opens the session from the SYN and the handshake never
/// reaches a worker, while the NAT still holds every session (the router observes each
/// SYN), counts a long one established once both ways carried packets in the kernel,
/// and sees it end. Every checksum the kernel's translations left is verified by the
/// receiving stacks.
#[test]
fn published_port_connections_open_in_the_kernel() {
    let lab = Lab::new();
    let (out, d, net) = uplinked_network(&lab, "172.28.2.0/24", &[]);
    let a = lab.name("a");
    let ip_a = d.sandbox(&a, &net, &["-p", "8080:80"]);
    let _srv = Bg::spawn(&lab, &a, "echo", &["python3", "-c", ECHO_SERVER]);
    e2e::wait_listening(&a, 80);
    let router = |k: &str| {
        d.json(&["stats"])["router"]["router"][k]
            .as_u64()
            .unwrap_or(0)
    };
    let clients = format!(
        "import socket\nok = 0\nfor i in range(40):\n s = socket.create_connection(('{}', 8080), timeout=3)\n s.sendall(b'hi %d\\n' % i)\n ok += s.makefile().readline() == 'hi %d\\n' % i\n s.close()\nprint(ok)",
        out.uplink_ip
    );
    let o = ns_exec(
        &out.ns,
        &["python3", "-c", &clients],
        Duration::from_secs(60),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "40",
        "40 connections answered: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let opened = router("kernel_opened");
    assert!(
        opened >= 35,
        "the kernel opened {opened} of 40 sessions: {}",
        d.json(&["stats"])["router"]
    );
    assert_eq!(router("kernel_open_refused"), 0);

    // A long connection from a known port: established in the NAT though the router
    // saw only its SYN, and gone from the kernel when it closes.
    let long = format!(
        "import socket, time\ns = socket.socket()\ns.bind(('{}', 45000))\ns.connect(('{}', 8080))\nf = s.makefile()\nfor i in range(60):\n s.sendall(b'x\\n'); assert f.readline() == 'x\\n'; time.sleep(0.1)\nprint('done')",
        out.ip, out.uplink_ip
    );
    let client = Bg::spawn(&lab, &out.ns, "long", &["python3", "-c", &long]);
    let row = || {
        let ct = d.json(&["conntrack"]);
        ct.as_array()
            .and_then(|rows| {
                rows.iter()
                    .find(|r| r["original"]["src"] == "198.51.100.1:45000")
                    .cloned()
            })
            .unwrap_or_default()
    };
    e2e::wait_for(
        "the long session to count as established",
        Duration::from_secs(5),
        || row()["state"] == "ESTABLISHED",
    );
    assert_eq!(
        row()["translated"]["dst"],
        format!("{ip_a}:80"),
        "{}",
        row()
    );
    assert!(
        router("kernel_opened") > opened,
        "the long one opened in the kernel too"
    );
    e2e::wait_for("the long client to finish", Duration::from_secs(20), || {
        client.output().contains("done")
    });
    for ns in [&out.ns, &a] {
        assert_no_tcp_checksum_errors(ns);
    }
    e2e::wait_for(
        "the closed sessions to leave the kernel",
        Duration::from_secs(5),
        || d.json(&["stats"])["router"]["fast_path_sessions"] == 0,
    );
}
