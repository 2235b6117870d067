//! IPv6 (issue 16): dual-stack networks as Docker has them. Sandboxes get their IPv6
//! address (no DAD), a default route via the gateway, and the switch answers neighbour
//! discovery and echo for the gateway; real `ping -6` and tshark check it on the wire.

use std::time::Duration;

use e2e::{ns_exec, ping, Daemon, Lab};
use serde_json::Value;

const SUBNET6: &str = "2001:db8:24::/64";
const GW6: &str = "2001:db8:24::1";

/// A daemon with one dual-stack network (172.24.0.0/24 and `SUBNET6`).
fn dual_stack(lab: &Lab) -> (Daemon, String) {
    e2e::daemon_with_network(
        lab,
        &[],
        &["--ipv6", "--subnet", "172.24.0.0/24", "--subnet", SUBNET6],
    )
}

fn output(ns: &str, args: &[&str]) -> String {
    let o = ns_exec(ns, args, Duration::from_secs(10));
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn dual_stack_sandboxes_ping_each_other_and_the_gateway_over_ipv6() {
    let lab = Lab::new();
    let (d, net) = dual_stack(&lab);
    let [(a, _), (b, ip_b)] = d.sandboxes(&lab, &net, &[], ["a", "b"]);
    let (ip6_a, ip6_b) = (d.ip6_of(&a, &net), d.ip6_of(&b, &net));
    assert_eq!(
        (ip6_a.as_str(), ip6_b.as_str()),
        ("2001:db8:24::2", "2001:db8:24::3"),
        "lowest free first, the gateway ::1 skipped"
    );

    // Docker's inspect fields.
    let n = &d.json(&["network", "inspect", &net])[0];
    assert_eq!(n["EnableIPv6"], Value::Bool(true), "{n}");
    let subnets: Vec<&str> = n["IPAM"]["Config"]
        .as_array()
        .expect("config")
        .iter()
        .filter_map(|c| c["Subnet"].as_str())
        .collect();
    assert_eq!(subnets, ["172.24.0.0/24", SUBNET6], "{n}");
    assert_eq!(n["IPAM"]["Config"][1]["Gateway"], GW6);
    let containers: Vec<&str> = n["Containers"]
        .as_object()
        .expect("containers")
        .values()
        .filter_map(|c| c["IPv6Address"].as_str())
        .collect();
    assert!(
        containers.contains(&"2001:db8:24::2/64"),
        "IPv6Address per container: {n}"
    );
    let sb = &d.json(&["sandbox", "inspect", &a])["Networks"][&net];
    assert_eq!(
        (&sb["GlobalIPv6PrefixLen"], &sb["IPv6Gateway"]),
        (&Value::from(64), &Value::from(GW6)),
        "{sb}"
    );

    // In the sandbox: the address usable at once (no DAD: not tentative), IPv6 on,
    // the default route via the gateway.
    let addrs = output(&a, &["ip", "-6", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains("2001:db8:24::2/64"), "{addrs}");
    assert!(!addrs.contains("tentative"), "no DAD delays use: {addrs}");
    let routes = output(&a, &["ip", "-6", "route", "show", "default"]);
    assert!(
        routes.contains(&format!("via {GW6} dev eth0")),
        "default route: {routes}"
    );

    assert!(ping(&a, GW6, 3), "the gateway answers ping -6");
    assert!(ping(&a, &ip6_b, 3), "a reaches b over IPv6");
    assert!(ping(&b, &ip6_a, 3), "and back");
    assert!(ping(&a, &ip_b, 2), "IPv4 still works beside it");
    let neigh = output(&a, &["ip", "-6", "neigh", "show", GW6]);
    assert!(
        neigh.contains("02:42:ac:18:00:01") && neigh.contains("router"),
        "the gateway advertised itself, as a router, with its MAC: {neigh}"
    );

    // --ip6 picks the address; a taken one is refused.
    let c = lab.name("c");
    d.sandbox(&c, &net, &["--ip6", "2001:db8:24::99"]);
    assert_eq!(d.ip6_of(&c, &net), "2001:db8:24::99");
    assert!(ping(&c, &ip6_a, 2));
    d.sandbox_refused(
        &lab.name("d"),
        &net,
        &["--ip6", "2001:db8:24::99"],
        "already in use",
    );
    // Disconnected, its address is free again.
    d.ok(&["network", "disconnect", &net, &c]);
    let e = lab.name("e");
    d.sandbox(&e, &net, &["--ip6", "2001:db8:24::99"]);
}

#[test]
fn ipv6_is_refused_where_it_cannot_be_right() {
    let lab = Lab::new();
    let (d, net) = dual_stack(&lab);
    let v4 = d.network(&lab, "v4", &["--subnet", "172.25.0.0/24"]);
    let create = |tag: &str, flags: &[&str], why: &str| {
        let name = lab.name(tag);
        let mut args = vec!["network", "create"];
        args.extend(flags);
        args.push(&name);
        d.refused_with(&args, why);
    };
    create(
        "o",
        &["--ipv6", "--subnet", "2001:db8:24:0:1::/80"],
        "overlaps with 2001:db8:24::/64",
    );
    create("s", &["--ipv6", "--subnet", "2001:db8:9::/96"], "too small");
    create("l", &["--ipv6", "--subnet", "fe80::/64"], "link-local");
    create("m", &["--ipv6", "--subnet", "ff05::/64"], "multicast");
    create(
        "h",
        &["--ipv6", "--subnet", "2001:db8:9::1/64"],
        "host bits",
    );
    create("n", &["--subnet", "2001:db8:9::/64"], "without --ipv6");
    create(
        "g",
        &[
            "--ipv6",
            "--subnet",
            "2001:db8:9::/64",
            "--gateway",
            "2001:db8:8::1",
        ],
        "not a usable address",
    );
    let sb = lab.name("x");
    d.sandbox_refused(
        &sb,
        &net,
        &["--ip6", "2001:db8:99::5"],
        "not in IPv6 subnet",
    );
    d.sandbox_refused(&sb, &v4, &["--ip6", "2001:db8:24::5"], "has no IPv6");
    d.sandbox_refused(&sb, &net, &["--ip6", "nonsense"], "invalid IPv6 address");
    let ls = d.ok(&["network", "ls"]);
    assert!(!ls.contains(&lab.name("o")), "nothing was made: {ls}");
    let st = d.ok(&["sandbox", "ls"]);
    assert!(!st.contains(&sb), "no sandbox was left behind: {st}");

    // Without an IPv6 subnet: a /64 of the host's unique local /48, kept in the state
    // dir, the next one for the next network.
    let auto = d.network(&lab, "auto", &["--ipv6"]);
    let auto2 = d.network(&lab, "auto2", &["--ipv6"]);
    let subnet6 = |n: &str| {
        d.json(&["network", "inspect", n])[0]["IPAM"]["Config"][1]["Subnet"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (s1, s2) = (subnet6(&auto), subnet6(&auto2));
    let ula = std::fs::read_to_string(d.state_dir.join("ula-prefix")).expect("ula-prefix");
    let ula: ipnet::Ipv6Net = ula.trim().parse().expect("a prefix");
    for s in [&s1, &s2] {
        let s: ipnet::Ipv6Net = s.parse().unwrap_or_else(|_| panic!("{s}"));
        assert!(ula.contains(&s) && s.prefix_len() == 64, "{s} in {ula}");
    }
    assert_ne!(s1, s2);
    assert!(s1.starts_with("fd"), "unique local: {s1}");
}

/// IPv6 networks are isolated from each other as IPv4 ones are: nothing routes
/// between them.
#[test]
fn ipv6_networks_are_isolated_from_each_other() {
    let lab = Lab::new();
    let (d, n1) = dual_stack(&lab);
    let n2 = d.network(
        &lab,
        "n2",
        &[
            "--ipv6",
            "--subnet",
            "172.26.0.0/24",
            "--subnet",
            "2001:db8:26::/64",
        ],
    );
    let a = lab.name("a");
    d.sandbox(&a, &n1, &[]);
    let b = lab.name("b");
    d.sandbox(&b, &n2, &[]);
    let c = lab.name("c");
    d.sandbox(&c, &n1, &[]);
    let ip6_b = d.ip6_of(&b, &n2);
    assert!(ping(&b, "2001:db8:26::1", 1), "b reaches its own gateway");
    assert!(ping(&a, &d.ip6_of(&c, &n1), 1), "a reaches its own network");
    assert!(!ping(&a, &ip6_b, 2), "a cannot reach b on another network");
    assert!(!ping(&a, "2001:db8:26::1", 1), "nor that network's gateway");

    // Multicast floods stay in their network: a's echo to all nodes reaches c (which
    // answers), never b.
    let file = lab.dir.join("b6.pcap");
    let mut cap = d.spawn_ctl(&["capture", &b, "-w", file.to_str().expect("path")]);
    e2e::wait_for("the capture to start", Duration::from_secs(5), || {
        file.exists()
    });
    std::thread::sleep(Duration::from_millis(200));
    let all = output(
        &a,
        &[
            "ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-I", "eth0", "ff02::1",
        ],
    );
    assert!(
        ping(&b, "2001:db8:26::1", 1),
        "b's own traffic, for the capture to see"
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(cap.id() as i32, libc::SIGINT) };
    assert!(cap.wait().expect("capture").success());
    let ip6_c = d.ip6_of(&c, &n1);
    let c_ll = output(
        &c,
        &["ip", "-6", "addr", "show", "dev", "eth0", "scope", "link"],
    );
    let c_ll = c_ll
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string();
    assert!(
        all.contains(&c_ll) || all.contains(&ip6_c),
        "c answered the all-nodes echo ({c_ll}): {all}"
    );
    let seen = e2e::pcap_lines(&file, &["icmp6"]);
    assert!(
        seen.iter().any(|l| l.contains("2001:db8:26::1")),
        "the capture on b works: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("ff02::1") && l.contains("echo request")),
        "a's all-nodes echo crossed into another network: {seen:?}"
    );
}

/// tshark decodes the neighbour discovery and echo the gateway and the sandboxes
/// exchange, with no malformed packet.
#[test]
fn tshark_decodes_ndp_and_icmpv6_without_malformed_packets() {
    let lab = Lab::new();
    let (d, net) = dual_stack(&lab);
    let [(a, _), (b, _)] = d.sandboxes(&lab, &net, &[], ["a", "b"]);
    let ip6_b = d.ip6_of(&b, &net);
    let file = lab.dir.join("a6.pcap");
    let mut cap = d.spawn_ctl(&["capture", &a, "-w", file.to_str().expect("path")]);
    e2e::wait_for("the capture to start", Duration::from_secs(5), || {
        file.exists()
    });
    std::thread::sleep(Duration::from_millis(200));
    // Fresh neighbour caches, so solicitations cross.
    ns_exec(
        &a,
        &["ip", "-6", "neigh", "flush", "dev", "eth0"],
        Duration::from_secs(5),
    );
    assert!(ping(&a, GW6, 2));
    assert!(ping(&a, &ip6_b, 2));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(cap.id() as i32, libc::SIGINT) };
    assert!(cap.wait().expect("capture").success());
    let path = file.to_str().expect("path");
    let decoded = e2e::run_out(&[
        "tshark",
        "-r",
        path,
        "-T",
        "fields",
        "-e",
        "icmpv6.type",
        "-e",
        "icmpv6.nd.na.flag.r",
        "-Y",
        "icmpv6",
    ]);
    let types: Vec<&str> = decoded
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect();
    for (t, what) in [
        ("135", "neighbour solicitation"),
        ("136", "neighbour advertisement"),
        ("128", "echo request"),
        ("129", "echo reply"),
    ] {
        assert!(types.contains(&t), "no {what} seen: {decoded}");
    }
    let bad = e2e::run_out(&[
        "tshark",
        "-r",
        path,
        "-Y",
        "_ws.malformed || _ws.expert.severity >= warning || icmpv6.checksum.status == 0",
    ]);
    assert!(bad.trim().is_empty(), "malformed or suspect packets: {bad}");
}

/// Port security covers IPv6: a sandbox sending from an address that is not its own
/// gets nowhere (counted on its port), while ping -6 between the owners is forwarded
/// in the kernel once both MACs are learned.
#[test]
fn ipv6_port_security_and_the_fast_path() {
    let lab = Lab::new();
    let (d, net) = dual_stack(&lab);
    let [(a, _), (b, _), (c, _)] = d.sandboxes(&lab, &net, &[], ["a", "b", "c"]);
    let ip6_b = d.ip6_of(&b, &net);
    assert!(ping(&a, &ip6_b, 1), "learn both ends");
    let fast = |s: &str| d.port_count(s, "fast_path_rx_packets");
    let before = fast(&a);
    let burst = ns_exec(
        &a,
        &[
            "ping", "-n", "-q", "-c", "100", "-i", "0.005", "-W", "2", &ip6_b,
        ],
        Duration::from_secs(20),
    );
    assert!(burst.status.success(), "{burst:?}");
    assert!(
        fast(&a) - before >= 90,
        "the kernel forwarded {} of 100 echo requests: {}",
        fast(&a) - before,
        d.port_stats(&a)
    );

    // c sends from an address the switch never gave it.
    let spoofed = "2001:db8:24::50";
    ns_exec(
        &c,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{spoofed}/64"),
            "dev",
            "eth0",
            "nodad",
        ],
        Duration::from_secs(5),
    );
    let drops = |s: &str| {
        d.port_stats(s)["drops"]["port_security"]
            .as_u64()
            .unwrap_or(0)
    };
    let dropped = drops(&c);
    let spoof = ns_exec(
        &c,
        &[
            "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", "-I", spoofed, &ip6_b,
        ],
        Duration::from_secs(10),
    );
    assert!(!spoof.status.success(), "a spoofed source got an answer");
    assert!(drops(&c) > dropped, "counted: {}", d.port_stats(&c));
    // With --allow-address the same address is c's to use.
    let e = lab.name("e");
    d.sandbox(&e, &net, &["--allow-address", "2001:db8:24::60"]);
    ns_exec(
        &e,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:24::60/64",
            "dev",
            "eth0",
            "nodad",
        ],
        Duration::from_secs(5),
    );
    let allowed = ns_exec(
        &e,
        &[
            "ping",
            "-n",
            "-q",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "2",
            "-I",
            "2001:db8:24::60",
            &ip6_b,
        ],
        Duration::from_secs(10),
    );
    assert!(
        allowed.status.success(),
        "an allowed address works: {allowed:?}"
    );
}

/// The outside's IPv6 address (on the uplink's prefix) and the switch's there.
const FAR6: &str = "2001:db8:ff::1";
const UPLINK6: &str = "2001:db8:ff::2";

/// An outside namespace behind the uplink with IPv6 too, a daemon with the uplink's
/// IPv6 side, and one dual-stack network created with `flags` as well.
fn uplinked6(lab: &Lab, flags: &[&str]) -> (e2e::Outside, Daemon, String) {
    uplinked6_with(lab, &[], flags)
}

/// [`uplinked6`] with `extra` daemon flags.
fn uplinked6_with(lab: &Lab, extra: &[&str], flags: &[&str]) -> (e2e::Outside, Daemon, String) {
    let out = e2e::Outside::new(lab);
    let peer = lab.name("o");
    let far = format!("{FAR6}/64");
    e2e::run_ok(&[
        "ip", "-n", &out.ns, "addr", "add", &far, "dev", &peer, "nodad",
    ]);
    let uplink6 = format!("{UPLINK6}/64");
    let mut args = vec!["--uplink-ip6", &uplink6, "--uplink-gw6", FAR6];
    args.extend(extra);
    let d = out.daemon(lab, &args);
    let mut all = vec!["--ipv6", "--subnet", "172.24.0.0/24", "--subnet", SUBNET6];
    all.extend(flags);
    let net = d.network(lab, "net", &all);
    (out, d, net)
}

/// An HTTP GET with curl over IPv6 from `ns`: the status code.
fn curl6(ns: &str, url: &str) -> String {
    let o = ns_exec(
        ns,
        &[
            "curl",
            "-6",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            url,
        ],
        Duration::from_secs(10),
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Routed mode (Docker's gateway_mode_ipv6=routed): the far host sees the sandbox's
/// own address and reaches it back; the hop limit is a router's.
#[test]
fn routed_ipv6_keeps_the_sandbox_address_both_ways() {
    let lab = Lab::new();
    let (out, d, net) = uplinked6(
        &lab,
        &["-o", "com.docker.network.bridge.gateway_mode_ipv6=routed"],
    );
    // The far side routes the network's prefix to the switch, as a routed setup has it.
    e2e::run_ok(&[
        "ip", "-n", &out.ns, "-6", "route", "add", SUBNET6, "via", UPLINK6,
    ]);
    let a = lab.name("a");
    d.sandbox(&a, &net, &[]);
    let ip6_a = d.ip6_of(&a, &net);
    let web = e2e::Bg::spawn(
        &lab,
        &out.ns,
        "web6",
        &["python3", "-m", "http.server", "8000", "--bind", FAR6],
    );
    e2e::wait_listening(&out.ns, 8000);
    assert_eq!(curl6(&a, &format!("http://[{FAR6}]:8000/")), "200");
    assert!(
        web.output().contains(&ip6_a),
        "the far host sees the sandbox's own address: {}",
        web.output()
    );
    assert!(ping(&out.ns, &ip6_a, 2), "and reaches it back");
    assert!(ping(&a, FAR6, 2));
    // Hop limit 1: the gateway answers time exceeded, as a router does.
    let o = output(&a, &["ping", "-n", "-c", "1", "-t", "1", "-W", "2", FAR6]);
    assert!(o.contains("Time exceeded"), "{o}");
    let stats = d.json(&["stats"]);
    assert!(
        stats["router"]["ndp"]["replies_learned"].as_u64() > Some(0),
        "the far host was resolved by neighbour discovery: {}",
        stats["router"]
    );
}

/// NAT66, Docker 27's default: the far host sees the uplink's IPv6 address, never the
/// sandbox's; a published port answers on the uplink's IPv6 address from outside and,
/// hairpinned, from inside.
#[test]
fn ipv6_egress_is_masqueraded_and_published_ports_answer_over_ipv6() {
    let lab = Lab::new();
    let (out, d, net) = uplinked6(&lab, &[]);
    let a = lab.name("a");
    d.sandbox(&a, &net, &[]);
    let web = e2e::Bg::spawn(
        &lab,
        &out.ns,
        "far6",
        &["python3", "-m", "http.server", "8000", "--bind", FAR6],
    );
    e2e::wait_listening(&out.ns, 8000);
    assert_eq!(curl6(&a, &format!("http://[{FAR6}]:8000/")), "200");
    let log = web.output();
    assert!(
        log.contains(UPLINK6),
        "the far host sees the uplink's address: {log}"
    );
    assert!(
        !log.contains("2001:db8:24:"),
        "no sandbox address leaks: {log}"
    );
    assert!(ping(&a, FAR6, 2), "ICMPv6 echo through the NAT");
    assert!(
        ping(&a, UPLINK6, 1),
        "the uplink's IPv6 address from inside"
    );
    assert!(ping(&out.ns, UPLINK6, 1), "and from outside");
    let rows = d.json(&["conntrack"]);
    assert!(
        rows.to_string().contains(UPLINK6),
        "IPv6 sessions in conntrack: {rows}"
    );

    // A published port, on both families of the uplink.
    let w = lab.name("w");
    d.sandbox(&w, &net, &["-p", "8080:80"]);
    let _srv = e2e::Bg::spawn(
        &lab,
        &w,
        "w80",
        &["python3", "-m", "http.server", "80", "--bind", "::"],
    );
    e2e::wait_listening(&w, 80);
    let url = format!("http://[{UPLINK6}]:8080/");
    assert_eq!(curl6(&out.ns, &url), "200", "from outside over IPv6");
    assert_eq!(curl6(&a, &url), "200", "hairpinned from inside");
    // [::] publishes IPv6 only.
    let v = lab.name("v");
    d.sandbox(&v, &net, &["-p", "[::]:8081:80"]);
    let _srv2 = e2e::Bg::spawn(
        &lab,
        &v,
        "v80",
        &["python3", "-m", "http.server", "80", "--bind", "::"],
    );
    e2e::wait_listening(&v, 80);
    assert_eq!(curl6(&out.ns, &format!("http://[{UPLINK6}]:8081/")), "200");
    let v4 = ns_exec(
        &out.ns,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "2",
            "http://198.51.100.2:8081/",
        ],
        Duration::from_secs(5),
    );
    assert!(!v4.status.success(), "[::] is not published on IPv4");
}

/// `dig` with a bounded wait, `+short`: the answers' lines.
fn dig_short(ns: &str, args: &[&str]) -> Vec<String> {
    let mut full = vec!["dig", "+time=3", "+tries=1", "+short"];
    full.extend(args);
    output(ns, &full)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .collect()
}

/// The embedded resolver gives sandbox names and aliases their IPv6 addresses (AAAA),
/// IPv6 addresses their names (ip6.arpa), and answers at the gateway's IPv6 address,
/// over UDP and TCP, as at its IPv4 one; glibc's getent finds them.
#[test]
fn the_embedded_dns_answers_aaaa_and_ip6_arpa_on_both_families() {
    let lab = Lab::new();
    let (d, net) = dual_stack(&lab);
    let a = lab.name("a");
    d.sandbox(&a, &net, &[]);
    let b = lab.name("b");
    d.sandbox(&b, &net, &["--alias", "web"]);
    let ip6_b = d.ip6_of(&b, &net);
    assert_eq!(
        dig_short(&a, &["@172.24.0.1", "AAAA", &b]),
        vec![ip6_b.clone()]
    );
    assert_eq!(
        dig_short(&a, &[&format!("@{GW6}"), "AAAA", "web"]),
        vec![ip6_b.clone()],
        "an alias, asked at the gateway's IPv6 address"
    );
    assert_eq!(
        dig_short(&a, &[&format!("@{GW6}"), "+tcp", "AAAA", &b]),
        vec![ip6_b.clone()],
        "over TCP too"
    );
    assert_eq!(
        dig_short(&a, &[&format!("@{GW6}"), "A", &b]),
        ["172.24.0.3"],
        "A records over IPv6"
    );
    assert_eq!(
        dig_short(&a, &[&format!("@{GW6}"), "-x", &ip6_b]),
        [format!("{b}.")],
        "PTR under ip6.arpa"
    );
    let hosts = output(&a, &["getent", "ahostsv6", &b]);
    assert!(hosts.contains(&ip6_b), "getent ahostsv6 {b}: {hosts}");
    assert!(ping(&a, &b, 1), "ping by name");
    let o = output(&a, &["ping", "-6", "-n", "-c", "1", "-W", "2", "web"]);
    assert!(
        o.contains(&ip6_b) && o.contains(" 0% packet loss"),
        "ping -6 web: {o}"
    );
}

/// `-p` on one of the host's IPv6 addresses reaches a container that has IPv4 only:
/// the host's proxy listens there and forwards to the container's IPv4 address, as
/// Docker's docker-proxy does.
#[test]
fn a_port_published_on_a_host_ipv6_address_reaches_an_ipv4_only_container() {
    let lab = Lab::new();
    let (d, net) = e2e::daemon_with_network(&lab, &[], &["--subnet", "172.25.0.0/24"]);
    let host6 = "2001:db8:ee::1";
    e2e::run_ok(&[
        "ip",
        "-n",
        &d.host_ns,
        "addr",
        "add",
        &format!("{host6}/128"),
        "dev",
        "lo",
        "nodad",
    ]);
    let w = lab.name("w");
    d.sandbox(&w, &net, &["-p", &format!("[{host6}]:8090:80")]);
    let _srv = e2e::Bg::spawn(
        &lab,
        &w,
        "w80",
        &["python3", "-m", "http.server", "80", "--bind", "0.0.0.0"],
    );
    e2e::wait_listening(&w, 80);
    assert_eq!(
        curl6(&d.host_ns, &format!("http://[{host6}]:8090/")),
        "200",
        "through the proxy to the IPv4-only container"
    );
    let ports = d.ok(&["port", &w]);
    assert!(ports.contains(&format!("[{host6}]:8090")), "{ports}");
}

/// IPv6-only networks (Docker 28's `--ipv4=false`): no IPv4 at all, the gateway and
/// the embedded resolver at the IPv6 gateway address, names resolved over IPv6.
#[test]
fn ipv6_only_networks_have_no_ipv4_and_resolve_over_ipv6() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &[]);
    let net = d.network(
        &lab,
        "only6",
        &["--ipv6", "--ipv4=false", "--subnet", "2001:db8:30::/64"],
    );
    let [(a, ip_a), (b, ip_b)] = [lab.name("a"), lab.name("b")].map(|n| {
        d.ok(&["sandbox", "create", "--network", &net, &n]);
        let v = d.json(&["sandbox", "inspect", &n]);
        let ip = v["Networks"][&net]["IPAddress"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        (n, ip)
    });
    assert_eq!(
        (ip_a.as_str(), ip_b.as_str()),
        ("", ""),
        "no IPv4 addresses"
    );
    let ip6_b = d.ip6_of(&b, &net);
    let n = &d.json(&["network", "inspect", &net])[0];
    let config = n["IPAM"]["Config"].as_array().expect("config");
    assert_eq!(config.len(), 1, "one IPAM config, IPv6's: {n}");
    assert_eq!(config[0]["Subnet"], "2001:db8:30::/64");
    let v4 = output(&a, &["ip", "-4", "addr", "show", "dev", "eth0"]);
    assert!(!v4.contains("inet "), "no IPv4 in the sandbox: {v4}");
    assert!(ping(&a, "2001:db8:30::1", 2), "the gateway");
    assert!(ping(&a, &ip6_b, 2), "the other sandbox");
    let resolv = std::fs::read_to_string(format!("/etc/netns/{a}/resolv.conf")).unwrap_or_default();
    assert!(
        resolv.contains("nameserver 2001:db8:30::1"),
        "the resolver at the gateway's IPv6 address: {resolv}"
    );
    let hosts = output(&a, &["getent", "ahostsv6", &b]);
    assert!(hosts.contains(&ip6_b), "getent over IPv6: {hosts}");
    // Bad input.
    let name = lab.name("bad");
    d.refused_with(
        &["network", "create", "--ipv4=false", &name],
        "needs --ipv6",
    );
    d.refused_with(
        &[
            "network",
            "create",
            "--ipv6",
            "--ipv4=false",
            "--subnet",
            "172.26.0.0/24",
            &name,
        ],
        "IPv6-only",
    );
    d.sandbox_refused(&lab.name("c"), &net, &["--ip", "172.26.0.9"], "IPv6-only");
}

/// Names the network does not own are forwarded to an upstream given as an IPv6
/// address, through the uplink's IPv6 address, AAAA included.
#[test]
fn aaaa_is_forwarded_to_an_ipv6_upstream() {
    let lab = Lab::new();
    let (out, d, net) = uplinked6_with(&lab, &["--dns-upstream", FAR6], &[]);
    let _dnsmasq = e2e::Bg::spawn(
        &lab,
        &out.ns,
        "dnsmasq6",
        &[
            "dnsmasq",
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address={FAR6}"),
            "--port=53",
            "--address=/example.test/2001:db8:77::7",
        ],
    );
    e2e::wait_for("dnsmasq to answer", Duration::from_secs(10), || {
        dig_short(&out.ns, &[&format!("@{FAR6}"), "AAAA", "www.example.test"]) == ["2001:db8:77::7"]
    });
    let a = lab.name("a");
    d.sandbox(&a, &net, &[]);
    assert_eq!(
        dig_short(&a, &["AAAA", "www.example.test"]),
        ["2001:db8:77::7"],
        "through the embedded resolver to the IPv6 upstream"
    );
    assert_eq!(
        dig_short(&a, &[&format!("@{GW6}"), "AAAA", "www.example.test"]),
        ["2001:db8:77::7"],
        "asked over IPv6 too"
    );
    let dns = &d.json(&["stats"])["dns"];
    assert!(dns["forwarded"].as_u64() >= Some(2), "{dns}");
}
