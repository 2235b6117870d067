//! The embedded DNS end to end: `dig` and glibc's `getent hosts` inside sandboxes ask
//! the resolver at their network's gateway address (which exists only in the switch);
//! names it does not own go to a real dnsmasq in the outside namespace, behind the
//! uplink.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use e2e::{ns_exec, Bg, Daemon, Lab, Outside};

/// The outside upstream's address (the outside namespace's).
const UPSTREAM: &str = "198.51.100.1";

/// `dig` from a namespace with a bounded wait per try; stdout.
fn dig(ns: &str, args: &[&str]) -> String {
    let mut full = vec!["dig", "+time=3", "+tries=1"];
    full.extend(args);
    let o = ns_exec(ns, &full, Duration::from_secs(10));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The addresses `dig +short` printed, in order.
fn short(ns: &str, server: &str, args: &[&str]) -> Vec<String> {
    let at = format!("@{server}");
    let mut full = vec![at.as_str(), "+short"];
    full.extend(args);
    dig(ns, &full)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .collect()
}

/// The response code dig reports ("NOERROR", "NXDOMAIN", ...), or "" with no answer.
fn status(ns: &str, server: &str, args: &[&str]) -> String {
    let at = format!("@{server}");
    let mut full = vec![at.as_str()];
    full.extend(args);
    let text = dig(ns, &full);
    text.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_string()
}

/// `getent hosts NAME` in a sandbox: glibc reading the sandbox's resolv.conf.
fn getent(ns: &str, name: &str) -> String {
    let o = ns_exec(ns, &["getent", "hosts", name], Duration::from_secs(15));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn resolv_conf(sandbox: &str) -> String {
    std::fs::read_to_string(format!("/etc/netns/{sandbox}/resolv.conf")).unwrap_or_default()
}

/// dnsmasq in the outside namespace: example.test names, and a TXT name whose answer
/// (~1.7 KB) is beyond 512 bytes and beyond what dnsmasq itself sends over UDP.
fn upstream(lab: &Lab, out: &Outside) -> Bg {
    let big = "x".repeat(200);
    let mut args: Vec<String> = [
        "dnsmasq",
        "--no-daemon",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=198.51.100.1",
        "--port=53",
        "--address=/example.test/198.51.100.7",
        "--address=/invalid/",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..8 {
        args.push(format!("--txt-record=big.example.test,{i}{big}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let bg = Bg::spawn(lab, &out.ns, "dnsmasq", &args);
    // Ready when it answers directly (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while short(&out.ns, UPSTREAM, &["www.example.test"]) != ["198.51.100.7"] {
        assert!(
            Instant::now() < deadline,
            "dnsmasq did not come up: {}",
            bg.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    bg
}

#[test]
fn names_and_aliases_resolve_on_their_network_only() {
    let lab = Lab::new();
    let (d, net) = e2e::daemon_with_network(&lab, &[], &["--subnet", "172.21.0.0/24"]);
    let other = d.network(&lab, "oth", &["--subnet", "172.22.0.0/24"]);
    let (a, b, c, x) = (lab.name("a"), lab.name("b"), lab.name("c"), lab.name("x"));
    let ip_a = d.sandbox(&a, &net, &["--alias", "web", "--alias", "alpha"]);
    let ip_b = d.sandbox(&b, &net, &["--alias", "web"]);
    let ip_c = d.sandbox(&c, &net, &[]);
    d.sandbox(&x, &other, &["--alias", "elsewhere"]);
    let gw = "172.21.0.1";

    let rc = resolv_conf(&a);
    assert!(
        rc.contains("nameserver 172.21.0.1") && rc.contains("options ndots:0"),
        "{rc}"
    );

    assert_eq!(short(&a, gw, &[&b]), vec![ip_b.clone()], "a sandbox name");
    assert_eq!(short(&c, gw, &["alpha"]), vec![ip_a.clone()], "an alias");
    assert_eq!(
        short(&c, gw, &[&format!("{a}.")]),
        vec![ip_a.clone()],
        "fully qualified"
    );
    let full = dig(&c, &["@172.21.0.1", &b, "+noall", "+answer"]);
    assert!(full.contains("\t600\tIN\tA\t"), "TTL 600: {full}");

    // A shared alias: every address, in an order that varies between queries.
    let mut orders = HashSet::new();
    for _ in 0..20 {
        let mut got = short(&c, gw, &["web"]);
        orders.insert(got.clone());
        got.sort();
        let mut want = vec![ip_a.clone(), ip_b.clone()];
        want.sort();
        assert_eq!(got, want, "a shared alias answers with every address");
        if orders.len() > 1 {
            break;
        }
    }
    assert!(orders.len() > 1, "always the same order: {orders:?}");

    // Reverse lookups.
    let ptr = short(&a, gw, &["-x", &ip_b]);
    assert_eq!(ptr, vec![format!("{b}.")], "PTR of b");

    // glibc through the sandbox's resolv.conf.
    let g = getent(&a, &c);
    assert!(g.starts_with(&ip_c), "getent hosts {c}: {g:?}");
    let g = getent(&c, "alpha");
    assert!(g.starts_with(&ip_a), "getent hosts alpha: {g:?}");

    // Scoped to the network: names on another network are not answered.
    assert_eq!(status(&a, gw, &[&x]), "NXDOMAIN");
    assert_eq!(status(&a, gw, &["elsewhere"]), "NXDOMAIN");
    assert_eq!(status(&a, gw, &["nosuchname"]), "NXDOMAIN");
    // No upstream (and no uplink): names it does not own fail at once.
    let t = Instant::now();
    assert_eq!(status(&a, gw, &["www.example.test"]), "SERVFAIL");
    assert!(t.elapsed() < Duration::from_secs(3), "SERVFAIL at once");

    // A name goes with its endpoint and comes back with it.
    d.ok(&["network", "disconnect", &net, &b]);
    assert_eq!(status(&a, gw, &[&b]), "NXDOMAIN", "b disconnected");
    assert_eq!(
        short(&a, gw, &["web"]),
        vec![ip_a.clone()],
        "b's alias is gone"
    );
    d.ok(&["network", "connect", "--alias", "beta", &net, &b]);
    let ip_b2 = d.ip_of(&b, &net);
    assert_eq!(short(&a, gw, &[&b]), vec![ip_b2.clone()], "b is back");
    assert_eq!(short(&a, gw, &["beta"]), vec![ip_b2], "with its new alias");

    // The other network's resolver answers its own names only.
    assert_eq!(short(&x, "172.22.0.1", &["elsewhere"]).len(), 1);
    assert_eq!(status(&x, "172.22.0.1", &[&a]), "NXDOMAIN");

    let s = d.json(&["stats"]);
    assert!(
        s["dns"]["local_answers"].as_u64() >= Some(10),
        "{}",
        s["dns"]
    );
    // Every query went through the worker's dns stage.
    let st = &s["workers"][0]["stages"];
    assert!(st["dns"].as_u64() >= Some(10), "{st}");
}

#[test]
fn unknown_names_are_forwarded_to_the_upstream() {
    let lab = Lab::new();
    let upstream_flags = ["--dns-upstream", UPSTREAM];
    let (out, d, net) = e2e::uplinked_network(&lab, "172.23.0.0/24", &upstream_flags);
    let a = lab.name("a");
    d.sandbox(&a, &net, &[]);
    let gw = "172.23.0.1";
    let dnsmasq = upstream(&lab, &out);

    assert_eq!(
        short(&a, gw, &["www.example.test"]),
        vec!["198.51.100.7"],
        "relayed from the upstream"
    );
    let g = getent(&a, "host.example.test");
    assert!(g.starts_with("198.51.100.7"), "getent: {g:?}");
    // The upstream's answer is relayed as is: its NXDOMAIN too.
    assert_eq!(status(&a, gw, &["nothing.invalid"]), "NXDOMAIN");

    // Beyond 512 bytes over UDP: TC set, without EDNS and with a 512-byte EDNS buffer;
    // in full over TCP.
    for edns in ["+noedns", "+bufsize=512"] {
        let udp = dig(
            &a,
            &["@172.23.0.1", edns, "+ignore", "big.example.test", "TXT"],
        );
        assert!(udp.contains(" tc"), "TC over UDP with {edns}: {udp}");
    }
    let tcp = dig(
        &a,
        &["@172.23.0.1", "+tcp", "+short", "big.example.test", "TXT"],
    );
    assert_eq!(tcp.lines().count(), 8, "all eight records over TCP: {tcp}");

    let s = d.json(&["stats"]);
    assert!(s["dns"]["forwarded"].as_u64() >= Some(3), "{}", s["dns"]);
    // The TCP query went upstream over TCP: dnsmasq's UDP answer would stop at its
    // EDNS size and come back truncated.
    assert_eq!(s["dns"]["tcp_forwarded"].as_u64(), Some(1), "{}", s["dns"]);

    // An --internal network resolves its own names only: nothing leaves the switch
    // (an exfiltration channel otherwise, Docker's CVE-2024-29018), SERVFAIL instead.
    let internal = d.network(&lab, "int", &["--internal", "--subnet", "172.23.9.0/24"]);
    let i = lab.name("i");
    d.sandbox(&i, &internal, &[]);
    let forwarded = |d: &Daemon| d.json(&["stats"])["dns"]["forwarded"].as_u64().unwrap_or(0);
    let before = forwarded(&d);
    assert_eq!(status(&i, "172.23.9.1", &["www.example.test"]), "SERVFAIL");
    assert_eq!(
        short(&i, "172.23.9.1", &[&i]).len(),
        1,
        "its own names answer"
    );
    let s = d.json(&["stats"]);
    assert_eq!(forwarded(&d), before, "nothing forwarded: {}", s["dns"]);
    assert!(
        s["dns"]["internal_not_forwarded"].as_u64() >= Some(1),
        "{}",
        s["dns"]
    );

    // The upstream goes away: SERVFAIL within the bound (one upstream, 2 s timeout).
    drop(dnsmasq);
    let t = Instant::now();
    let code = status(&a, gw, &["+time=6", "gone.example.test"]);
    assert_eq!(code, "SERVFAIL");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    // Own names still answer.
    assert_eq!(short(&a, gw, &[&a]).len(), 1);
}

#[test]
fn dns_over_tcp_answers_own_names() {
    let lab = Lab::new();
    let (d, net) = e2e::daemon_with_network(&lab, &[], &["--subnet", "172.24.0.0/24"]);
    let (a, b) = (lab.name("a"), lab.name("b"));
    let ip_a = d.sandbox(&a, &net, &["--alias", "svc"]);
    let ip_b = d.sandbox(&b, &net, &["--alias", "svc"]);
    let mut got = short(&a, "172.24.0.1", &["+tcp", "svc"]);
    got.sort();
    let mut want = vec![ip_a, ip_b.clone()];
    want.sort();
    assert_eq!(got, want);
    // Several queries in a row on fresh connections, and one connection kept open.
    for _ in 0..3 {
        assert_eq!(short(&a, "172.24.0.1", &["+tcp", &b]), vec![ip_b.clone()]);
    }
    let kept = dig(
        &a,
        &["@172.24.0.1", "+tcp", "+keepopen", "+short", &b, &b, &b],
    );
    assert_eq!(kept.lines().filter(|l| *l == ip_b).count(), 3, "{kept}");
    assert_eq!(
        status(&a, "172.24.0.1", &["+tcp", "nosuchname"]),
        "NXDOMAIN"
    );
}

#[test]
fn default_bridge_has_no_embedded_resolver() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &["--dns-upstream", UPSTREAM]);
    let a = lab.name("a");
    d.ok(&["sandbox", "create", &a]);
    let b = lab.name("b");
    d.ok(&["sandbox", "create", &b]);
    let rc = resolv_conf(&a);
    assert_eq!(rc.trim(), "nameserver 198.51.100.1", "{rc}");
    let text = dig(&a, &["@172.17.0.1", &b]);
    assert!(
        !text.contains("status:"),
        "nothing answers at the default bridge's gateway: {text}"
    );
}

#[test]
fn malformed_queries_are_answered_or_counted_never_fatal() {
    let lab = Lab::new();
    let (d, net) = e2e::daemon_with_network(&lab, &[], &["--subnet", "172.25.0.0/24"]);
    let a = lab.name("a");
    d.sandbox(&a, &net, &[]);
    // Short garbage (dropped), a header claiming a question that is not there (FORMERR),
    // a response (never answered) and an opcode we do not speak (NOTIMP).
    let code = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for m in [b'\x01', b'\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff', b'\x12\x35\x81\x00' + bytes(8), b'\x12\x36\x28\x00' + bytes(8)]:
    s.sendto(m, ('172.25.0.1', 53))
    try:
        r = s.recv(2048)
        print(r[:2].hex(), r[3] & 15)
    except socket.timeout:
        print('none')
"#;
    let o = ns_exec(&a, &["python3", "-c", code], Duration::from_secs(15));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec!["none", "1234 1", "none", "1236 4"],
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(short(&a, "172.25.0.1", &[&a]).len(), 1, "still answering");
    let s = d.json(&["stats"]);
    assert!(s["dns"]["dropped"].as_u64() >= Some(2), "{}", s["dns"]);
    assert!(s["dns"]["formerr"].as_u64() >= Some(1), "{}", s["dns"]);
}

#[test]
fn names_come_back_after_a_restart() {
    let lab = Lab::new();
    let (mut d, net) = e2e::daemon_with_network(&lab, &[], &["--subnet", "172.26.0.0/24"]);
    let (a, b) = (lab.name("a"), lab.name("b"));
    d.sandbox(&a, &net, &[]);
    let ip_b = d.sandbox(&b, &net, &["--alias", "db"]);
    assert_eq!(short(&a, "172.26.0.1", &["db"]), vec![ip_b.clone()]);
    d.restart(false);
    assert_eq!(
        short(&a, "172.26.0.1", &["db"]),
        vec![ip_b.clone()],
        "restored names"
    );
    assert_eq!(short(&a, "172.26.0.1", &["+tcp", &b]), vec![ip_b]);
}
