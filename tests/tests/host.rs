//! The host itself (issue 13): a namespace standing in for a one-NIC host, whose NIC
//! holds the host's address and is wired to a router namespace with a far host behind
//! it. vswitchd takes the NIC as its uplink and shares the address: the host's own
//! connections (one made before the daemon started, bound to a port in the switch's
//! range, included) keep working, containers get out by SNAT, the far host reaches a
//! published port on the host's address, the host reaches it on 127.0.0.1 and reaches
//! containers by their addresses through the host port, containers reach the host by
//! `host-gateway`; after the daemon stops the host's configuration is as before.

use std::time::Duration;

use e2e::{
    daemon_refuses, host_ns, http_get, http_get_eventually, named_ns, run_ok, run_out,
    udp_echo_server, udp_roundtrip, Bg, Daemon, Lab,
};

const HOST_IP: &str = "198.51.100.2";
const ROUTER_IP: &str = "198.51.100.1";
const FAR_IP: &str = "203.0.113.10";

/// The one-NIC host, its NIC (in the host namespace), the far host's namespace with an
/// HTTP server on port 8000, and the host's configuration before any daemon.
struct OneNic {
    host: String,
    nic: String,
    far: String,
    before: String,
    _far_web: Bg,
}

fn one_nic_host(lab: &Lab) -> OneNic {
    let (nic, far) = wired_host(lab);
    let before = host_config(lab, &nic);
    let _far_web = Bg::spawn(
        lab,
        &far,
        "farweb",
        &["python3", "-m", "http.server", "8000"],
    );
    OneNic {
        host: host_ns(lab),
        nic,
        far,
        before,
        _far_web,
    }
}

/// The host's NIC wired to a router namespace with the far host behind it: the NIC's
/// name and the far host's namespace.
fn wired_host(lab: &Lab) -> (String, String) {
    let host = host_ns(lab);
    let rt = named_ns(lab, "rt");
    let far = named_ns(lab, "far");
    let nic = lab.name("nic");
    e2e::wire(&host, &nic, &rt, "rt0");
    e2e::wire(&rt, "rt1", &far, "far0");
    for (ns, cmd) in [
        (&host, vec!["addr", "add", "198.51.100.2/24", "dev", &nic]),
        (&host, vec!["link", "set", &nic, "up"]),
        (&host, vec!["route", "add", "default", "via", ROUTER_IP]),
        (&rt, vec!["addr", "add", "198.51.100.1/24", "dev", "rt0"]),
        (&rt, vec!["addr", "add", "203.0.113.1/24", "dev", "rt1"]),
        (&rt, vec!["link", "set", "rt1", "up"]),
        (&far, vec!["addr", "add", "203.0.113.10/24", "dev", "far0"]),
        (&far, vec!["route", "add", "default", "via", "203.0.113.1"]),
    ] {
        let mut args = vec!["ip", "-n", ns.as_str()];
        args.extend(cmd);
        run_ok(&args);
    }
    run_ok(&[
        "ip",
        "netns",
        "exec",
        &rt,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    (nic, far)
}

/// The host's configuration a daemon must leave as it found it.
fn host_config(lab: &Lab, nic: &str) -> String {
    let host = host_ns(lab);
    let mut s = run_out(&["ip", "-n", &host, "-o", "-4", "addr", "show", "dev", nic]);
    s += &run_out(&["ip", "-n", &host, "route", "show", "table", "main"]);
    // Sandboxes outlive a stop (their parked veth ends, `vsh...`, come back with the
    // next start): they are the daemon's state, not the host's configuration.
    let links = run_out(&["ip", "-n", &host, "-o", "link", "show"]);
    s += &links
        .lines()
        .filter(|l| !l.contains(": vsh"))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    s += &reserved_ports(&host);
    s
}

fn reserved_ports(ns: &str) -> String {
    run_out(&[
        "ip",
        "netns",
        "exec",
        ns,
        "cat",
        "/proc/sys/net/ipv4/ip_local_reserved_ports",
    ])
}

/// A TCP echo server on the far host, and a client on the host holding one connection
/// from local port 50000 (in the range the switch takes on a shared address), sending
/// a line every 200 ms and printing `ok N` per echo, `BROKEN` when it fails.
fn long_lived_connection(lab: &Lab, far: &str) -> (Bg, Bg) {
    let server = "import socketserver\nclass H(socketserver.StreamRequestHandler):\n def handle(self):\n  for l in self.rfile:\n   self.wfile.write(l)\nsocketserver.ThreadingTCPServer.allow_reuse_address=True\nsocketserver.ThreadingTCPServer(('0.0.0.0',7000),H).serve_forever()";
    let s = Bg::spawn(lab, far, "echo", &["python3", "-c", server]);
    e2e::wait_listening(far, 7000);
    let client = format!(
        "import socket,time,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{HOST_IP}',50000))\ns.connect(('{FAR_IP}',7000))\ns.settimeout(3)\nf=s.makefile('rb')\nn=0\nwhile True:\n try:\n  s.sendall(b'x%d\\n'%n); l=f.readline()\n except Exception as e:\n  print('BROKEN',e,flush=True); sys.exit(1)\n if not l:\n  print('BROKEN closed',flush=True); sys.exit(1)\n print('ok',n,flush=True); n+=1; time.sleep(0.2)"
    );
    let c = Bg::spawn(
        lab,
        &host_ns(lab),
        "client",
        &["python3", "-u", "-c", &client],
    );
    (s, c)
}

/// The long-lived connection still carries lines: more echoes within 3 s, none failed.
fn still_connected(c: &Bg, when: &str) {
    let count = |t: &str| t.lines().filter(|l| l.starts_with("ok")).count();
    let before = count(&c.output());
    std::thread::sleep(Duration::from_secs(2));
    let out = c.output();
    assert!(
        !out.contains("BROKEN") && count(&out) > before,
        "the host's connection must keep working {when}: {}",
        e2e::tail(&out, 5)
    );
}

#[test]
fn a_one_nic_host_shares_its_address_with_the_switch() {
    let lab = Lab::new();
    let OneNic {
        host,
        nic,
        far,
        before,
        _far_web,
    } = one_nic_host(&lab);
    let (_echo, client) = long_lived_connection(&lab, &far);
    let _udp = udp_echo_server(&lab, &far, 5300);
    still_connected(&client, "before vswitchd");

    let mut d = Daemon::start(&lab, &["--uplink", &nic]);
    let net = d.network(&lab, "net", &["--subnet", "172.20.0.0/24"]);
    let web = lab.name("web");
    let lo = lab.name("lo");
    let c = lab.name("c");
    d.sandbox(&web, &net, &["-p", "8080:80"]);
    d.sandbox(&lo, &net, &["-p", "127.0.0.1:8081:80"]);
    d.sandbox(
        &c,
        &net,
        &["--add-host", "host.docker.internal:host-gateway"],
    );
    let _w1 = Bg::spawn(&lab, &web, "web", &["python3", "-m", "http.server", "80"]);
    let _w2 = Bg::spawn(&lab, &lo, "lo", &["python3", "-m", "http.server", "80"]);
    let _hostweb = Bg::spawn(
        &lab,
        &host,
        "hostweb",
        &["python3", "-m", "http.server", "9000"],
    );
    let web_ip = d.ip_of(&web, &net);

    still_connected(&client, "with vswitchd on its NIC");
    let far_url = format!("http://{FAR_IP}:8000/");
    assert_eq!(
        udp_roundtrip(&host, FAR_IP, 5300, "query"),
        "query",
        "the host's UDP (a DNS-like exchange from an ephemeral port)"
    );
    assert_eq!(
        http_get(&host, &far_url),
        "200",
        "a new connection of the host"
    );
    assert_eq!(
        http_get_eventually(&c, &far_url),
        "200",
        "a container through SNAT"
    );
    assert_eq!(
        http_get_eventually(&far, &format!("http://{HOST_IP}:8080/")),
        "200",
        "the far host to the published port on the host's address"
    );
    assert_eq!(
        http_get_eventually(&host, "http://127.0.0.1:8080/"),
        "200",
        "the host to the published port on its loopback"
    );
    assert_eq!(
        http_get(&host, &format!("http://{HOST_IP}:8080/")),
        "200",
        "the host to the published port on its own address"
    );
    assert_eq!(
        http_get_eventually(&host, &format!("http://{web_ip}:80/")),
        "200",
        "the host to a container by its address"
    );
    assert_eq!(http_get_eventually(&host, "http://127.0.0.1:8081/"), "200");
    assert!(
        http_get(&far, &format!("http://{HOST_IP}:8081/")).starts_with("error"),
        "-p 127.0.0.1:8081:80 must not be reachable from outside"
    );
    assert_eq!(
        http_get_eventually(&c, "http://host.docker.internal:9000/"),
        "200",
        "a container to the host by host-gateway"
    );
    assert_eq!(
        http_get(&c, &format!("http://{HOST_IP}:9000/")),
        "200",
        "a container to the host at its shared address"
    );
    let port = d.ok(&["port", &web]);
    assert!(port.contains("80/tcp -> 0.0.0.0:8080"), "{port}");
    assert!(
        port.contains("80/tcp -> [::]:8080"),
        "the proxy's IPv6 wildcard: {port}"
    );
    let stats = d.json(&["stats"]);
    assert!(
        stats["host_port"]["counters"]["from_host"].as_u64() > Some(0),
        "the host port counts what the host sent: {}",
        stats["host_port"]
    );
    let port = d.ok(&["port", &lo]);
    assert!(port.contains("80/tcp -> 127.0.0.1:8081"), "{port}");
    still_connected(&client, "while containers use the NIC");

    d.stop(false);
    assert_eq!(
        host_config(&lab, &nic),
        before,
        "the host's configuration after stop"
    );
    still_connected(&client, "after vswitchd stopped");
    assert_eq!(http_get(&host, &far_url), "200");
}

#[test]
fn a_killed_daemon_leaves_the_host_online_and_the_next_start_cleans_up() {
    let lab = Lab::new();
    let OneNic {
        host,
        nic,
        far: _,
        before,
        _far_web,
    } = one_nic_host(&lab);
    let far_url = format!("http://{FAR_IP}:8000/");
    assert_eq!(http_get_eventually(&host, &far_url), "200");
    let mut d = Daemon::start(&lab, &["--uplink", &nic]);
    assert_ne!(
        reserved_ports(&host),
        reserved_ports_of_fresh(),
        "the switch's ports are reserved"
    );
    d.stop(true);
    // Its tcx program went with its fds: the host's traffic is the host's again.
    assert_eq!(
        http_get(&host, &far_url),
        "200",
        "the host after vswitchd was killed"
    );
    d.restart(false);
    d.stop(false);
    assert_eq!(
        host_config(&lab, &nic),
        before,
        "after a kill, a start and a stop"
    );
}

/// What a fresh namespace reserves (nothing, on these machines).
fn reserved_ports_of_fresh() -> String {
    "\n".to_string()
}

#[test]
fn host_port_and_publish_errors_name_what_is_wrong() {
    let lab = Lab::new();
    let host = host_ns(&lab);
    let taken = lab.name("hp");
    run_ok(&[
        "ip",
        "-n",
        &host,
        "link",
        "add",
        &taken,
        "type",
        "veth",
        "peer",
        "name",
        &lab.name("hq"),
    ]);
    let e = daemon_refuses(&lab, &["--host-port", &taken]);
    assert!(e.contains("already exists and is not vswitchd's"), "{e}");
    run_ok(&[
        "ip",
        "-n",
        &host,
        "addr",
        "add",
        "169.254.77.1/24",
        "dev",
        &taken,
    ]);
    let e = daemon_refuses(&lab, &["--host-port-ip", "169.254.77.5/30"]);
    assert!(
        e.contains("overlaps 169.254.77.1/24, an address of this host"),
        "{e}"
    );
    run_ok(&["ip", "-n", &host, "link", "del", &taken]);

    let (d, net) = e2e::daemon_with_network(&lab, &[], &["--subnet", "172.21.0.0/24"]);
    d.sandbox_refused(
        &lab.name("a"),
        &net,
        &["-p", "192.0.2.9:8080:80"],
        "not an address of this host",
    );
    let b = lab.name("b");
    d.sandbox(&b, &net, &["-p", "127.0.0.1:8090:80"]);
    d.sandbox_refused(
        &lab.name("c"),
        &net,
        &["-p", "127.0.0.1:8090:80"],
        "already allocated",
    );
    // A host port a host process holds.
    let _holder = Bg::spawn(
        &lab,
        &host,
        "holder",
        &["python3", "-m", "http.server", "8091"],
    );
    e2e::wait_listening(&host, 8091);
    d.sandbox_refused(
        &lab.name("d"),
        &net,
        &["-p", "8091:80"],
        "Bind for 0.0.0.0:8091 failed",
    );
    d.sandbox_refused(
        &lab.name("e"),
        &net,
        &["--add-host", "x"],
        "invalid --add-host",
    );
    // Without an uplink, a published port serves the host through its proxy.
    let _w = Bg::spawn(&lab, &b, "bweb", &["python3", "-m", "http.server", "80"]);
    assert_eq!(http_get_eventually(&host, "http://127.0.0.1:8090/"), "200");
}
