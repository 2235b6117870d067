//! Bridge networks end to end: real vswitchd, real namespaces, real ping and tcpdump.
//! Each data-path scenario runs with veth endpoints on the tc data path (the worker's
//! trunk read by AF_XDP, and by AF_PACKET), with TAP endpoints, and with veth endpoints
//! on AF_XDP sockets of their own (`-o fastpath=xdp`).

use std::time::Duration;

use e2e::{network_create, ping, ping_df, send_raw, Capture, Daemon, Lab};

#[derive(Clone, Copy, Debug)]
enum Mode {
    AfXdp,
    AfPacket,
    Tap,
    Xdp,
}

impl Mode {
    fn daemon_args(self) -> &'static [&'static str] {
        match self {
            Mode::AfXdp | Mode::Xdp => &["--io", "af_xdp"],
            Mode::AfPacket | Mode::Tap => &["--io", "af_packet"],
        }
    }
    /// A network `<prefix><tag>` created with the mode's options and `flags`.
    fn network(self, d: &Daemon, lab: &Lab, tag: &str, flags: &[&str]) -> String {
        let mut args = flags.to_vec();
        if let Mode::Xdp = self {
            args.extend(["-o", "fastpath=xdp"]);
        }
        d.network(lab, tag, &args)
    }
    fn link(self) -> &'static [&'static str] {
        match self {
            Mode::Tap => &["--link", "tap"],
            _ => &[],
        }
    }
    /// The backend `stats` shows for a sandbox's port.
    fn backend(self) -> &'static str {
        match self {
            Mode::AfXdp | Mode::AfPacket => "tc",
            Mode::Xdp => "af_xdp",
            Mode::Tap => "tap",
        }
    }
    /// The backend of the worker's endpoint trunk (what `--io` chose).
    fn trunk_backend(self) -> &'static str {
        match self {
            Mode::AfXdp | Mode::Xdp => "af_xdp",
            Mode::AfPacket | Mode::Tap => "af_packet",
        }
    }
}

/// `in_modes!([test: Mode, ...] scenario, ...)`: a module per scenario (a function
/// taking a `Mode`) with a test per listed mode, `scenario::test`.
macro_rules! in_modes {
    ($modes:tt $($scenario:ident),* $(,)?) => {$( in_modes!(@one $scenario $modes); )*};
    (@one $scenario:ident [$($test:ident: $mode:ident),*]) => {
        mod $scenario {
            $(
                #[test]
                fn $test() { super::$scenario(super::Mode::$mode) }
            )*
        }
    };
}

in_modes!(
    [af_xdp: AfXdp, af_packet: AfPacket, tap: Tap, xdp: Xdp]
    peers_and_gateway_answer_ping,
    full_size_frames_pass_with_df,
    networks_are_isolated,
    sandbox_on_two_networks_reaches_both,
    restart_restores_everything
);

// The in-kernel fast path, in both flavours (the worker's trunk on the tc path, and
// AF_XDP sockets of the endpoints' own).
in_modes!(
    [tc: AfXdp, xdp: Xdp]
    fast_path_forwards_known_unicast_and_steps_aside,
    fast_path_keeps_busy_macs_learned
);

/// Two sandboxes on one network ping each other and the gateway; the ports use the
/// backend asked for and the forwarding table learned both MACs.
fn peers_and_gateway_answer_ping(m: Mode) {
    let lab = Lab::new();
    let d = Daemon::start(&lab, m.daemon_args());
    let net = m.network(&d, &lab, "net", &["--subnet", "172.20.0.0/24"]);
    let [(a, ip_a), (b, ip_b)] = d.sandboxes(&lab, &net, m.link(), ["a", "b"]);
    assert_eq!(
        (ip_a.as_str(), ip_b.as_str()),
        ("172.20.0.2", "172.20.0.3"),
        "lowest free addresses first"
    );
    assert!(ping(&a, &ip_b, 3), "a cannot ping b over {m:?}");
    assert!(ping(&b, &ip_a, 3), "b cannot ping a over {m:?}");
    assert!(
        ping(&a, "172.20.0.1", 3),
        "a cannot ping the gateway over {m:?}"
    );

    let stats = d.json(&["stats"]);
    let all = stats["ports"].as_array().expect("ports");
    let trunks: Vec<_> = all
        .iter()
        .filter(|p| p["network"] == "(endpoint trunk)")
        .collect();
    assert_eq!(trunks.len(), 1, "one worker, one endpoint trunk: {stats}");
    assert_eq!(trunks[0]["backend"], m.trunk_backend(), "{stats}");
    let ports: Vec<_> = all.iter().filter(|p| p["sandbox"].is_string()).collect();
    assert_eq!(ports.len(), 2, "{stats}");
    // The worker's stages: the gateway answered the echoes that L2 sorted to it, after
    // port input; nothing was routed (no uplink, one network).
    let st = &stats["workers"][0]["stages"];
    let n = |k: &str| st[k].as_u64().unwrap_or(0);
    assert!(n("gateway") >= 3, "{st}");
    assert!(
        n("l2") >= n("gateway") && n("port_input") >= n("l2"),
        "{st}"
    );
    assert!(n("port_output") >= n("gateway"), "{st}");
    assert_eq!((n("router"), n("vtep"), n("dns")), (0, 0, 0), "{st}");
    let text = d.ok(&["stats"]);
    assert!(
        text.contains("STAGES") && text.contains("PORT-INPUT") && text.contains("PORT-OUTPUT"),
        "{text}"
    );
    for p in ports {
        assert_eq!(p["backend"], m.backend(), "port {p}");
        assert!(
            p["rx_packets"].as_u64().unwrap_or(0) >= 6,
            "port counted its frames: {p}"
        );
    }
    let fdb = d.json(&["fdb", &net]);
    let macs = e2e::column(&fdb, "mac");
    assert!(
        macs.contains(&"02:42:ac:14:00:02") && macs.contains(&"02:42:ac:14:00:03"),
        "fdb: {fdb}"
    );
}

/// 1472-byte ICMP payloads with DF make 1514-byte frames: the full 1500 MTU crosses.
fn full_size_frames_pass_with_df(m: Mode) {
    let lab = Lab::new();
    let d = Daemon::start(&lab, m.daemon_args());
    let net = m.network(&d, &lab, "net", &[]);
    let [(a, _), (_, ip_b)] = d.sandboxes(&lab, &net, m.link(), ["a", "b"]);
    assert!(
        ping_df(&a, &ip_b, 1472),
        "1472-byte DF ping to a peer failed over {m:?}"
    );
    let gw = d.json(&["network", "inspect", &net])[0]["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .expect("gateway")
        .to_string();
    assert!(
        ping_df(&a, &gw, 1472),
        "1472-byte DF ping to the gateway failed over {m:?}"
    );
    assert!(
        !ping_df(&a, &ip_b, 1473),
        "a 1473-byte DF ping must not fit a 1500 MTU"
    );
}

/// No frame crosses networks: broadcasts on one are seen by its members and by no one
/// on the other; unicast across gets nowhere.
fn networks_are_isolated(m: Mode) {
    let lab = Lab::new();
    let d = Daemon::start(&lab, m.daemon_args());
    let n1 = m.network(&d, &lab, "n1", &["--subnet", "172.21.0.0/24"]);
    let n2 = m.network(&d, &lab, "n2", &["--subnet", "172.22.0.0/24"]);
    let (a, b, c) = (lab.name("a"), lab.name("b"), lab.name("c"));
    d.sandbox(&a, &n1, m.link());
    d.sandbox(&b, &n1, m.link());
    let ip_c = d.sandbox(&c, &n2, m.link());

    let same = Capture::start(&lab, &b, "eth0", "same");
    let other = Capture::start(&lab, &c, "eth0", "other");
    // ARP for an absent host on n1: broadcast, flooded to n1's ports only.
    assert!(!ping(&a, "172.21.0.200", 2));
    assert!(!ping(&a, &ip_c, 1), "a sandbox on n1 reached one on n2");
    let seen_same = same.stop();
    let seen_other = other.stop();
    assert!(
        seen_same.iter().any(|l| l.contains("172.21.0.200")),
        "the capture on n1 must see n1's broadcasts (else this test proves nothing): {seen_same:?}"
    );
    let leaked: Vec<&String> = seen_other
        .iter()
        .filter(|l| l.contains("172.21."))
        .collect();
    assert!(leaked.is_empty(), "frames of n1 reached n2: {leaked:?}");
}

/// A sandbox connected to two networks reaches a peer on each, through eth0 and eth1.
fn sandbox_on_two_networks_reaches_both(m: Mode) {
    let lab = Lab::new();
    let d = Daemon::start(&lab, m.daemon_args());
    let front = m.network(&d, &lab, "front", &[]);
    let back = m.network(&d, &lab, "back", &[]);
    let (web, api, db) = (lab.name("web"), lab.name("api"), lab.name("db"));
    let ip_web = d.sandbox(&web, &front, m.link());
    d.sandbox(&api, &front, m.link());
    let ip_db = d.sandbox(&db, &back, m.link());
    let mut args = vec!["network", "connect"];
    args.extend(m.link());
    args.extend([back.as_str(), api.as_str()]);
    d.ok(&args);
    let v = d.json(&["sandbox", "inspect", &api]);
    assert_eq!(v["Networks"][&back]["Interface"], "eth1", "{v}");
    assert!(ping(&api, &ip_web, 2), "api cannot reach web");
    assert!(ping(&api, &ip_db, 2), "api cannot reach db");
    assert!(!ping(&web, &ip_db, 1), "web reached db across networks");

    d.ok(&["network", "disconnect", &back, &api]);
    assert!(
        !ping(&api, &ip_db, 1),
        "api still reaches db after disconnect"
    );
    assert!(
        ping(&api, &ip_web, 2),
        "api lost its first network on disconnecting the second"
    );
}

/// A daemon restarted on the same state dir (after SIGTERM, and after SIGKILL) brings
/// back networks, sandboxes, addresses and forwarding.
fn restart_restores_everything(m: Mode) {
    let lab = Lab::new();
    let mut d = Daemon::start(&lab, m.daemon_args());
    let net = m.network(
        &d,
        &lab,
        "net",
        &["--subnet", "172.23.0.0/24", "--label", "team=x"],
    );
    let (a, b) = (lab.name("a"), lab.name("b"));
    d.sandbox(&a, &net, m.link());
    let ip_b = d.sandbox(&b, &net, &[m.link(), &["--ip", "172.23.0.50"]].concat());
    assert!(ping(&a, &ip_b, 2));
    let mut before = d.json(&["network", "inspect", &net]);

    for kill in [false, true] {
        d.restart(kill);
        let after = d.json(&["network", "inspect", &net]);
        assert_eq!(before[0]["Id"], after[0]["Id"]);
        assert_eq!(
            before[0]["Containers"], after[0]["Containers"],
            "endpoints, addresses and MACs come back"
        );
        assert_eq!(after[0]["Labels"]["team"], "x");
        assert!(
            ping(&a, &ip_b, 3),
            "ping after restart (kill={kill}) over {m:?}"
        );
        assert!(
            ping(&b, "172.23.0.1", 2),
            "gateway after restart (kill={kill})"
        );
        if let Mode::AfXdp | Mode::AfPacket = m {
            let k = e2e::run_out(&["ip", "netns", "exec", &a, "ethtool", "-k", "eth0"]);
            assert!(
                k.contains("tx-checksumming: on") && k.contains("tcp-segmentation-offload: on"),
                "the sandbox keeps its offloads after a restart: {k}"
            );
        }
        // The next address handed out is still the lowest free one.
        let c = lab.name(if kill { "k" } else { "t" });
        let ip_c = d.sandbox(&c, &net, m.link());
        assert_eq!(ip_c, if kill { "172.23.0.4" } else { "172.23.0.3" });
        before = d.json(&["network", "inspect", &net]);
    }
}

/// Static addresses are honoured; taken, gateway and out-of-subnet ones are refused
/// with a reason, and refused requests change nothing.
#[test]
fn static_and_conflicting_addresses() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &[]);
    let range = ["--subnet", "172.24.0.0/24", "--ip-range", "172.24.0.128/25"];
    let net = d.network(&lab, "net", &range);
    let (a, b) = (lab.name("a"), lab.name("b"));
    assert_eq!(d.sandbox(&a, &net, &["--ip", "172.24.0.10"]), "172.24.0.10");
    assert_eq!(
        d.sandbox(&b, &net, &[]),
        "172.24.0.128",
        "dynamic addresses come from --ip-range"
    );
    let c = lab.name("c");
    for (ip, why) in [
        ("172.24.0.10", "already in use"),
        ("172.24.0.1", "gateway"),
        ("172.25.0.9", "not in subnet"),
        ("banana", "invalid IPv4 address"),
    ] {
        d.sandbox_refused(&c, &net, &["--ip", ip], why);
    }
    assert!(
        !std::path::Path::new(&format!("/run/netns/{c}")).exists(),
        "a refused create leaves no namespace"
    );
    assert_eq!(
        d.json(&["sandbox", "ls"]).as_array().map(|v| v.len()),
        Some(2)
    );
    assert!(ping(&a, "172.24.0.128", 2), "the static sandbox works");

    // Overlapping subnets and duplicate names are refused.
    let (over, gw) = (lab.name("over"), lab.name("gw"));
    d.refused_with(
        &["network", "create", "--subnet", "172.24.0.0/16", &over],
        "overlaps",
    );
    d.refused_with(&["network", "create", &net], "already exists");
    let flags = ["--subnet", "172.26.0.0/24", "--gateway", "172.27.0.1"];
    d.refused_with(&network_create("bridge", &flags, &gw), "gateway");

    // Disconnect frees the address for the next sandbox.
    d.ok(&["sandbox", "rm", &a]);
    assert_eq!(d.sandbox(&c, &net, &["--ip", "172.24.0.10"]), "172.24.0.10");
}

/// `network rm` is refused while endpoints are attached, works after; predefined
/// networks stay; prune removes only unused user networks.
#[test]
fn network_rm_and_prune() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &[]);
    let used = d.network(&lab, "used", &[]);
    let unused = d.network(&lab, "unused", &[]);
    let a = lab.name("a");
    d.sandbox(&a, &used, &[]);
    let err = d.refused(&["network", "rm", &used]);
    assert!(
        err.contains("active endpoints") && err.contains(&a),
        "{err}"
    );
    d.refused_with(&["network", "rm", "bridge"], "pre-defined");
    d.refused_with(&["network", "rm", &lab.name("nope")], "not found");
    let pruned = d.json(&["network", "prune"]);
    assert_eq!(pruned["NetworksDeleted"], serde_json::json!([unused]));
    d.ok(&["network", "disconnect", &used, &a]);
    assert_eq!(d.ok(&["network", "rm", &used]).trim(), used);
    let names: Vec<String> = d
        .ok(&["network", "ls"])
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        .collect();
    assert_eq!(names, vec!["bridge", "host", "none"]);
}

/// `none` sandboxes have loopback only and cannot be connected; `host` sandboxes share
/// the host's namespace; sandboxes default to the `bridge` network like `docker run`.
#[test]
fn none_host_and_default_bridge() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &[]);
    let (n, h, b) = (lab.name("none"), lab.name("host"), lab.name("br"));
    d.ok(&["sandbox", "create", "--network", "none", &n]);
    let links = e2e::ns_exec(&n, &["ip", "-o", "link"], Duration::from_secs(5));
    let links = String::from_utf8_lossy(&links.stdout).to_string();
    assert_eq!(links.lines().count(), 1, "only lo: {links}");
    d.refused_with(&["network", "connect", "bridge", &n], "none");

    d.ok(&["sandbox", "create", "--network", "host", &h]);
    let ino = |p: &str| {
        std::fs::metadata(p)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .expect("stat ns")
    };
    assert_eq!(
        ino(&format!("/run/netns/{h}")),
        ino(&format!("/run/netns/{}", d.host_ns)),
        "host sandbox is the daemon's namespace"
    );
    d.refused_with(&["network", "connect", "bridge", &h], "host");

    assert_eq!(d.sandbox(&b, "bridge", &[]), "172.17.0.2");
    let b2 = lab.name("br2");
    d.ok(&["sandbox", "create", &b2]);
    assert_eq!(
        d.ip_of(&b2, "bridge"),
        "172.17.0.3",
        "no --network means the default bridge"
    );
    assert!(ping(&b2, "172.17.0.2", 2));
    let resolv = std::fs::read_to_string(format!("/etc/netns/{b2}/resolv.conf"))
        .expect("resolv.conf written");
    assert!(
        !resolv.contains("nameserver"),
        "no upstream given: no resolver named, never the host's: {resolv}"
    );
    for s in [&n, &h, &b, &b2] {
        d.ok(&["sandbox", "rm", s]);
    }
    assert!(
        e2e::ns_exec(&d.host_ns, &["true"], Duration::from_secs(5))
            .status
            .success(),
        "removing a host sandbox leaves the host namespace alone"
    );
}

/// `vswitchctl run` executes a command inside a new sandbox and removes it with --rm.
#[test]
fn run_executes_inside_the_sandbox() {
    let lab = Lab::new();
    let (d, net) = e2e::daemon_with_network(&lab, &[], &["--subnet", "172.28.0.0/24"]);
    let [(_, ip_peer)] = d.sandboxes(&lab, &net, &[], ["peer"]);
    let r = lab.name("run");
    let script = format!("ip -o -4 addr show eth0; cat /etc/resolv.conf; ping -c1 -W2 {ip_peer}");
    let out = d.ok(&[
        "run",
        "--rm",
        "--name",
        &r,
        "--network",
        &net,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.contains("172.28.0.3/24"), "{out}");
    assert!(
        out.contains("nameserver 172.28.0.1"),
        "user networks name the embedded resolver: {out}"
    );
    assert!(out.contains("1 received"), "{out}");
    assert!(
        !std::path::Path::new(&format!("/run/netns/{r}")).exists(),
        "--rm removed the sandbox"
    );
    let failed = d.ctl(&["run", "--rm", "--network", &net, "--", "false"]);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "the command's exit status is passed on"
    );
}

/// A MAC flood from one sandbox (port security off: with it on, none of the flood
/// gets past its port) fills the table to its bound, counts what it could not learn,
/// and leaves the switch forwarding.
#[test]
fn mac_flood_is_bounded() {
    let lab = Lab::new();
    let (d, net) = e2e::daemon_with_network(&lab, &["--fdb-max", "1000"], &[]);
    let off = ["--port-security", "off"];
    let [(a, _), (b, ip_b)] = d.sandboxes(&lab, &net, &off, ["a", "b"]);
    assert!(ping(&a, &ip_b, 1));
    let frames = (0..100_000u32).map(|i| {
        let r: [u8; 4] = rand::random();
        let mut f = vec![0xff; 6];
        f.extend([0x02, r[0], r[1], r[2], r[3], (i & 0xff) as u8, 0x88, 0xb5]);
        f.resize(60, 0);
        f
    });
    let sent = send_raw(&a, "eth0", frames);
    assert_eq!(sent, 100_000);
    e2e::wait_for("the flood to be switched", Duration::from_secs(30), || {
        let s = d.json(&["stats"]);
        s["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["fdb_full"].as_u64().unwrap_or(0))
            .sum::<u64>()
            > 50_000
    });
    let fdb = d.json(&["fdb", &net]);
    assert_eq!(
        fdb.as_array().map(|v| v.len()),
        Some(1000),
        "table held at its bound"
    );
    assert!(
        ping(&b, "172.18.0.1", 2)
            || ping(
                &b,
                &format!("{}.1", ip_b.rsplit_once('.').map(|x| x.0).unwrap_or("")),
                2
            )
    );
    assert!(ping(&a, &ip_b, 3), "still forwarding after the flood");
}

/// An idle daemon with endpoints sleeps: under 5% of one core.
#[test]
fn idle_daemon_uses_almost_no_cpu() {
    let lab = Lab::new();
    let (d, net) = e2e::daemon_with_network(&lab, &[], &[]);
    let (a, b) = (lab.name("a"), lab.name("b"));
    d.sandbox(&a, &net, &[]);
    let ip_b = d.sandbox(&b, &net, &["--link", "tap"]);
    assert!(ping(&a, &ip_b, 2));
    std::thread::sleep(Duration::from_millis(500));
    let t0 = d.cpu_seconds();
    let wall = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let used = (d.cpu_seconds() - t0) / wall.elapsed().as_secs_f64();
    assert!(
        used < 0.05,
        "idle vswitchd used {:.1}% of a core",
        used * 100.0
    );
}

/// `vswitchctl capture` writes what a port received and sent as pcap that tcpdump
/// reads; a capture on another network's port records none of it.
#[test]
fn capture_writes_pcap_of_one_port_only() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &[]);
    let n1 = d.network(&lab, "n1", &["--subnet", "172.19.1.0/24"]);
    let n2 = d.network(&lab, "n2", &["--subnet", "172.19.2.0/24"]);
    let [(a, _), (_, ip_b)] = d.sandboxes(&lab, &n1, &[], ["a", "b"]);
    let c = lab.name("c");
    d.sandbox(&c, &n2, &[]);
    assert!(ping(&a, &ip_b, 1), "warm up ARP");

    let file_a = lab.dir.join("a.pcap");
    let file_c = lab.dir.join("c.pcap");
    let ctl = |args: &[&str]| d.spawn_ctl(args);
    let cap_a = ctl(&[
        "capture",
        &a,
        "-w",
        file_a.to_str().expect("path"),
        "-c",
        "6",
    ]);
    let mut cap_c = ctl(&[
        "capture",
        &format!("{c}:eth0"),
        "-w",
        file_c.to_str().expect("path"),
    ]);
    e2e::wait_for("captures to start", Duration::from_secs(5), || {
        file_a.exists() && file_c.exists()
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(ping(&a, &ip_b, 3));
    let out = cap_a.wait_with_output().expect("capture a");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("6 frames captured"));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(cap_c.id() as i32, libc::SIGINT) };
    assert!(cap_c.wait().expect("capture c").success());

    let read = |f: &std::path::Path| e2e::pcap_lines(f, &[]);
    let seen_a = read(&file_a);
    assert_eq!(seen_a.len(), 6, "{seen_a:?}");
    assert_eq!(
        seen_a
            .iter()
            .filter(|l| l.contains("ICMP echo request"))
            .count(),
        3,
        "{seen_a:?}"
    );
    assert_eq!(
        seen_a
            .iter()
            .filter(|l| l.contains("ICMP echo reply"))
            .count(),
        3,
        "{seen_a:?}"
    );
    assert!(
        read(&file_c).iter().all(|l| !l.contains("172.19.1.")),
        "n1 frames captured on n2"
    );
}

/// `--network container:NAME` joins another sandbox's namespace: same addresses, same
/// ports; it refuses endpoint options and -p, cannot be connected, keeps its target
/// from being removed, and comes back after a restart. `host` refuses -p too.
#[test]
fn container_mode_shares_the_namespace() {
    let lab = Lab::new();
    let (mut d, net) = e2e::daemon_with_network(&lab, &[], &["--subnet", "172.25.0.0/24"]);
    let (web, side, peer) = (lab.name("web"), lab.name("side"), lab.name("peer"));
    let ip_web = d.sandbox(&web, &net, &[]);
    d.sandbox(&peer, &net, &[]);
    d.ok(&[
        "sandbox",
        "create",
        "--network",
        &format!("container:{web}"),
        &side,
    ]);
    let addr = |ns: &str| {
        let o = e2e::ns_exec(
            ns,
            &["ip", "-o", "-4", "addr", "show", "eth0"],
            Duration::from_secs(5),
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert!(
        addr(&side).contains(&format!("{ip_web}/24")),
        "same addresses: {}",
        addr(&side)
    );
    // Same ports: a server started in one is on localhost of the other.
    let _srv = e2e::Bg::spawn(
        &lab,
        &web,
        "srv",
        &[
            "python3",
            "-m",
            "http.server",
            "8081",
            "--bind",
            "127.0.0.1",
        ],
    );
    e2e::wait_listening(&side, 8081);
    assert!(ping(&peer, &ip_web, 1));
    let v = d.json(&["sandbox", "inspect", &side]);
    assert_eq!(v["NetworkMode"], format!("container:{web}"));

    let joined = format!("container:{web}");
    let why = "port publishing and the container type network mode";
    d.sandbox_refused(&lab.name("p"), &joined, &["-p", "80:80"], why);
    let why = "conflicting options";
    d.sandbox_refused(&lab.name("i"), &joined, &["--ip", "172.25.0.9"], why);
    d.refused_with(
        &["network", "connect", &net, &side],
        &format!("connect {web} instead"),
    );
    d.refused_with(&["sandbox", "rm", &web], "is joined by");
    d.sandbox_refused(&lab.name("n"), "container:nosuch", &[], "no such sandbox");
    // `host` publishes nothing either.
    d.sandbox_refused(
        &lab.name("hp"),
        "host",
        &["-p", "80:80"],
        "host network mode",
    );

    d.restart(false);
    assert!(
        addr(&side).contains(&format!("{ip_web}/24")),
        "after restart: {}",
        addr(&side)
    );
    d.ok(&["sandbox", "rm", &side]);
    assert!(
        ping(&peer, &ip_web, 1),
        "removing the joiner leaves the namespace it joined"
    );
    d.ok(&["sandbox", "rm", &web]);
}

/// The in-kernel fast path, in both flavours: once both ends are learned the kernel
/// forwards their frames, counted on the ports all the same; it keeps networks apart,
/// follows a MAC that moves to another port as soon as it speaks there, and steps aside
/// for a capture. `--fast-path off` leaves every frame to the worker.
fn fast_path_forwards_known_unicast_and_steps_aside(m: Mode) {
    let lab = Lab::new();
    let d = Daemon::start(&lab, m.daemon_args());
    let n1 = m.network(&d, &lab, "n1", &["--subnet", "172.23.0.0/24"]);
    let n2 = m.network(&d, &lab, "n2", &["--subnet", "172.24.0.0/24"]);
    let [(a, _), (b, ip_b)] = d.sandboxes(&lab, &n1, &[], ["a", "b"]);
    // c takes b's MAC and address below (a VM moving): its port security is off.
    let [(c, ip_c)] = d.sandboxes(&lab, &n1, &["--port-security", "off"], ["c"]);
    let [(x, ip_x)] = d.sandboxes(&lab, &n2, &[], ["x"]);
    let port = d.port_stats(&a);
    assert_eq!(port["fast_path"], true, "{port}");
    assert_eq!(port["backend"], m.backend(), "{port}");
    let count = |s: &str, key: &str| d.port_count(s, key);

    // Learn both ends, then a fast ping: all but the first frames stay in the kernel.
    assert!(ping(&a, &ip_b, 1));
    let (rx0, fast0) = (count(&a, "rx_packets"), count(&a, "fast_path_rx_packets"));
    ping_burst(&a, &ip_b, 100, "0.005");
    let (rx1, fast1) = (count(&a, "rx_packets"), count(&a, "fast_path_rx_packets"));
    assert!(
        fast1 - fast0 >= 95,
        "the kernel forwarded {} of 100",
        fast1 - fast0
    );
    assert!(rx1 - rx0 >= 100, "fast-path frames count in rx_packets too");
    assert!(
        count(&b, "fast_path_tx_packets") >= 95,
        "{}",
        d.port_stats(&b)
    );
    let fdb = d.json(&["fdb", &n1]);
    let fast: Vec<&str> = fdb
        .as_array()
        .expect("fdb")
        .iter()
        .filter(|e| e["fast_path"] == true)
        .filter_map(|e| e["mac"].as_str())
        .collect();
    assert!(
        fast.contains(&mac_of(&ip_b).as_str()) && fast.len() == 2,
        "fdb shows a and b in the fast path: {fdb}"
    );

    // Isolation: a frame from n1 to x's MAC (an address of n2) never reaches x.
    assert!(
        ping(&x, "172.24.0.1", 1),
        "x speaks, so n2 has learned its MAC"
    );
    let mac_x = mac_of(&ip_x);
    e2e::run_ok(&[
        "ip",
        "-n",
        &a,
        "neigh",
        "replace",
        "172.23.0.99",
        "lladdr",
        &mac_x,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    let seen = Capture::start(&lab, &x, "eth0", "x");
    assert!(!ping(&a, "172.23.0.99", 2));
    let leaked: Vec<String> = seen
        .stop()
        .into_iter()
        .filter(|l| l.contains("172.23."))
        .collect();
    assert!(leaked.is_empty(), "a frame of n1 reached n2: {leaked:?}");

    // A MAC moves: b goes quiet, c takes over its MAC and address and speaks once.
    e2e::run_ok(&["ip", "-n", &b, "link", "set", "eth0", "down"]);
    e2e::run_ok(&[
        "ip",
        "-n",
        &c,
        "link",
        "set",
        "eth0",
        "address",
        &mac_of(&ip_b),
    ]);
    e2e::run_ok(&[
        "ip",
        "-n",
        &c,
        "addr",
        "add",
        &format!("{ip_b}/24"),
        "dev",
        "eth0",
    ]);
    e2e::run_ok(&[
        "ip",
        "-n",
        &c,
        "route",
        "replace",
        "default",
        "via",
        "172.23.0.1",
    ]);
    assert!(ping(&c, "172.23.0.1", 1), "c speaks from b's MAC");
    assert!(ping(&a, &ip_b, 3), "a reaches b's MAC on its new port");
    assert!(ping(&a, &ip_c, 1));

    // A capture sees every frame of its port: the kernel leaves that port's to the worker.
    let file = lab.dir.join("c.pcap");
    let mut cap = d.spawn_ctl(&["capture", &c, "-w", file.to_str().expect("path")]);
    e2e::wait_for("the capture to start", Duration::from_secs(5), || {
        file.exists()
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(ping(&a, &ip_c, 10));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(cap.id() as i32, libc::SIGINT) };
    assert!(cap.wait().expect("capture").success());
    let text = e2e::pcap_lines(&file, &[]).join("\n");
    assert!(
        text.lines().filter(|l| l.contains("ICMP echo")).count() >= 20,
        "the capture missed frames the kernel forwarded: {text}"
    );

    // Off: the worker forwards everything.
    let lab2 = Lab::new();
    let d2 = Daemon::start(&lab2, &["--io", "af_xdp", "--fast-path", "off"]);
    let n = m.network(&d2, &lab2, "n", &["--subnet", "172.25.0.0/24"]);
    let (p, q) = (lab2.name("p"), lab2.name("q"));
    d2.sandbox(&p, &n, &[]);
    let ip_q = d2.sandbox(&q, &n, &[]);
    assert!(ping(&p, &ip_q, 5));
    let s = d2.port_stats(&p);
    assert_eq!(s["fast_path"], false, "{s}");
    assert_eq!(s["fast_path_rx_packets"], 0, "{s}");
}

/// `count` pings from `ns` to `dst`, `interval` seconds apart: every one must come back.
fn ping_burst(ns: &str, dst: &str, count: u32, interval: &str) {
    let count = count.to_string();
    let args = [
        "ping", "-n", "-q", "-c", &count, "-i", interval, "-W", "2", dst,
    ];
    let out = e2e::ns_exec(ns, &args, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{count} pings {ns} -> {dst}: {text}");
}

/// The MAC vswitchd gives an endpoint: 02:42 and its IPv4 address, as Docker does.
fn mac_of(ip: &str) -> String {
    let o: Vec<u8> = ip.split('.').map(|b| b.parse().expect("IPv4")).collect();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// MACs the kernel forwards for stay learned: the worker never sees their frames, so it
/// refreshes them from the fast path's `seen` marks. With a 2-second age, 4 seconds of
/// pings must all stay in the kernel (an expiry would send a frame to the worker).
fn fast_path_keeps_busy_macs_learned(m: Mode) {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &[m.daemon_args(), &["--fdb-age", "2"]].concat());
    let net = m.network(&d, &lab, "n", &["--subnet", "172.26.0.0/24"]);
    let [(a, _), (_, ip_b)] = d.sandboxes(&lab, &net, &[], ["a", "b"]);
    assert!(ping(&a, &ip_b, 2), "learn both ends");
    let counts = |s: &str| {
        let p = d.port_stats(s);
        let n = |k: &str| p[k].as_u64().unwrap_or(0);
        (n("rx_packets"), n("fast_path_rx_packets"))
    };
    let (rx0, fast0) = counts(&a);
    ping_burst(&a, &ip_b, 400, "0.01");
    let (rx1, fast1) = counts(&a);
    assert_eq!(
        rx1 - rx0,
        fast1 - fast0,
        "frames the worker had to take while the conversation was busy: an entry aged out"
    );
    let fdb = d.json(&["fdb", &net]);
    assert!(
        fdb.as_array()
            .expect("fdb")
            .iter()
            .all(|e| e["fast_path"] == true && e["age"].as_u64().unwrap_or(9) <= 1),
        "{fdb}"
    );
}
