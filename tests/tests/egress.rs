//! Egress and published ports end to end: an "outside" namespace behind the uplink with
//! real servers and clients (python's http.server and urllib, a UDP echo, iperf3,
//! ping), the switch routing, SNATing and DNATing in userspace.

use std::time::Duration;

use e2e::{
    http_get, http_get_eventually, ns_exec, ping, udp_echo_server, udp_roundtrip, Bg, Daemon, Lab,
    Outside,
};

/// The user network's subnet (behind the uplink).
const SUBNET: &str = "172.20.0.0/24";

/// A daemon with an uplink to a fresh outside namespace, and one user network.
fn setup(lab: &Lab, extra: &[&str]) -> (Outside, Daemon, String) {
    e2e::uplinked_network(lab, SUBNET, extra)
}

#[test]
fn containers_reach_the_outside_as_the_uplink_address() {
    let lab = Lab::new();
    let (out, d, net) = setup(&lab, &[]);
    let a = lab.name("a");
    d.sandbox(&a, &net, &[]);
    let web = Bg::spawn(
        &lab,
        &out.ns,
        "outweb",
        &["python3", "-m", "http.server", "8000", "--bind", out.ip],
    );
    assert_eq!(http_get_eventually(&a, "http://198.51.100.1:8000/"), "200");
    assert!(
        web.output().contains("198.51.100.2 - -"),
        "the server must see the uplink address: {}",
        web.output()
    );
    assert!(
        !web.output().contains("172.20."),
        "container addresses must not leak: {}",
        web.output()
    );

    assert!(ping(&a, out.ip, 2), "ping to an outside host");
    assert!(
        ping(&a, out.uplink_ip, 1),
        "ping to the switch's uplink address"
    );
    assert!(
        ping(&out.ns, out.uplink_ip, 1),
        "the outside pings the uplink address"
    );
    // TTL 1: the gateway answers with time exceeded, as a router does for traceroute.
    let o = ns_exec(
        &a,
        &["ping", "-n", "-c", "1", "-t", "1", "-W", "2", out.ip],
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        text.contains("From 172.20.0.1") && text.contains("Time to live exceeded"),
        "{text}"
    );

    let ct = d.json(&["conntrack", "--network", &net]);
    let rows = ct.as_array().expect("sessions");
    assert!(
        rows.iter().any(|r| r["proto"] == "tcp"
            && r["original"]["src"]
                .as_str()
                .is_some_and(|s| s.starts_with("172.20.0.2:"))
            && r["translated"]["src"]
                .as_str()
                .is_some_and(|s| s.starts_with("198.51.100.2:"))),
        "conntrack shows the SNAT session: {ct}"
    );
    // The router stage took the egress frames and the replies from the uplink.
    let s = d.json(&["stats"]);
    let st = &s["workers"][0]["stages"];
    assert!(st["router"].as_u64() >= Some(4), "{st}");
}

#[test]
fn published_tcp_and_udp_ports_and_hairpin() {
    let lab = Lab::new();
    let (out, d, net) = setup(&lab, &[]);
    let (a, b) = (lab.name("a"), lab.name("b"));
    d.sandbox(&a, &net, &["-p", "8080:80", "-p", "5353:53/udp"]);
    d.sandbox(&b, &net, &[]);
    let ports = d.ok(&["port", &a]);
    assert!(
        ports.contains("80/tcp -> 0.0.0.0:8080") && ports.contains("53/udp -> 0.0.0.0:5353"),
        "{ports}"
    );

    let web = Bg::spawn(
        &lab,
        &a,
        "web",
        &["python3", "-m", "http.server", "80", "--bind", "0.0.0.0"],
    );
    let _echo = udp_echo_server(&lab, &a, 53);
    assert_eq!(
        http_get_eventually(&out.ns, "http://198.51.100.2:8080/"),
        "200",
        "outside -> published TCP port"
    );
    assert!(
        web.output().contains("198.51.100.1 - -"),
        "DNAT keeps the client's address: {}",
        web.output()
    );
    assert_eq!(
        udp_roundtrip(&out.ns, "198.51.100.2", 5353, "hello"),
        "hello",
        "outside -> published UDP port"
    );
    // Hairpin: another container reaches the published port through the uplink address.
    assert_eq!(http_get(&b, "http://198.51.100.2:8080/"), "200", "hairpin");
    // A port that is not published is not reachable.
    assert_ne!(http_get(&out.ns, "http://198.51.100.2:8081/"), "200");
}

#[test]
fn port_conflicts_and_publish_all() {
    let lab = Lab::new();
    let (_out, d, net) = setup(&lab, &[]);
    let (a, b, c) = (lab.name("a"), lab.name("b"), lab.name("c"));
    d.sandbox(&a, &net, &["-p", "8080:80"]);
    d.sandbox_refused(&b, &net, &["-p", "8080:81"], "port is already allocated");
    assert!(
        !std::path::Path::new(&format!("/run/netns/{b}")).exists(),
        "nothing left of the refused sandbox"
    );
    d.sandbox(&b, &net, &["-p", "8080:80/udp"]);
    d.sandbox(&c, &net, &["-P", "--expose", "80", "--expose", "53/udp"]);
    let v = d.json(&["sandbox", "inspect", &c]);
    for k in ["80/tcp", "53/udp"] {
        let hp: u16 = v["Ports"][k][0]["HostPort"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        assert!((32768..=60999).contains(&hp), "{k}: {v}");
    }
    d.sandbox_refused(&lab.name("r"), &net, &["-p", "8000-8010:80"], "ranges");
}

#[test]
fn internal_networks_do_not_get_out() {
    let lab = Lab::new();
    let (out, d, _net) = setup(&lab, &[]);
    let internal = d.network(&lab, "int", &["--internal", "--subnet", "172.21.0.0/24"]);
    let a = lab.name("a");
    d.sandbox(&a, &internal, &[]);
    assert!(
        !ping(&a, out.ip, 1),
        "an internal network reached the outside"
    );
    // Even with a route forced through the gateway, the switch refuses.
    let o = ns_exec(
        &a,
        &["ip", "route", "add", "default", "via", "172.21.0.1"],
        Duration::from_secs(5),
    );
    assert!(o.status.success());
    assert!(
        !ping(&a, out.ip, 1),
        "an internal network got out through the gateway"
    );
    d.sandbox_refused(&lab.name("p"), &internal, &["-p", "9000:80"], "internal");
}

#[test]
fn idle_udp_sessions_expire() {
    let lab = Lab::new();
    let (out, d, net) = setup(&lab, &["--nat-udp-timeout", "2"]);
    let a = lab.name("a");
    d.sandbox(&a, &net, &[]);
    let _echo = udp_echo_server(&lab, &out.ns, 7007);
    assert_eq!(udp_roundtrip(&a, out.ip, 7007, "ping"), "ping");
    let udp = |d: &Daemon| {
        d.json(&["conntrack"])
            .as_array()
            .map(|r| r.iter().filter(|s| s["proto"] == "udp").count())
            .unwrap_or(0)
    };
    assert_eq!(udp(&d), 1, "the UDP session is tracked");
    e2e::wait_for(
        "the idle UDP session to expire",
        Duration::from_secs(10),
        || udp(&d) == 0,
    );
}

/// `-o com.docker.network.bridge.enable_icc=false`: the network's sandboxes reach the
/// gateway and the outside, never each other (the kernel's fast path neither).
#[test]
fn without_icc_sandboxes_reach_the_outside_not_each_other() {
    let lab = Lab::new();
    let (out, d, _) = setup(&lab, &[]);
    let iso = d.network(
        &lab,
        "iso",
        &[
            "--subnet",
            "172.22.0.0/24",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
        ],
    );
    let (x, y) = (lab.name("x"), lab.name("y"));
    d.sandbox(&x, &iso, &[]);
    d.sandbox(&y, &iso, &[]);
    let y_ip = d.ip_of(&y, &iso);
    assert!(ping(&x, "172.22.0.1", 2), "the gateway");
    assert!(
        ping(&y, "172.22.0.1", 2),
        "the gateway, from y (both MACs learned)"
    );
    assert!(!ping(&x, &y_ip, 3), "x must not reach y");
    let _echo = udp_echo_server(&lab, &out.ns, 7009);
    assert_eq!(udp_roundtrip(&x, out.ip, 7009, "out"), "out", "the outside");
    let stats = d.port_stats(&x);
    assert!(
        stats["drops"]["icc_disabled"].as_u64() > Some(0),
        "counted: {stats}"
    );
    d.refused_with(
        &e2e::network_create(
            "bridge",
            &["-o", "com.docker.network.bridge.enable_icc=maybe"],
            &lab.name("bad"),
        ),
        "expected true or false",
    );
}

/// A sandbox's NAT sessions go with it, so a new sandbox given the same address does
/// not receive replies meant for the old one.
#[test]
fn a_removed_sandboxs_sessions_go_with_it() {
    let lab = Lab::new();
    let (out, d, net) = setup(&lab, &[]);
    let (a, b) = (lab.name("a"), lab.name("b"));
    d.sandbox(&a, &net, &[]);
    d.sandbox(&b, &net, &[]);
    let _echo = udp_echo_server(&lab, &out.ns, 7008);
    assert_eq!(udp_roundtrip(&a, out.ip, 7008, "a"), "a");
    assert_eq!(udp_roundtrip(&b, out.ip, 7008, "b"), "b");
    let a_ip = d.ip_of(&a, &net);
    let sessions_of = |ip: &str| {
        d.json(&["conntrack"])
            .as_array()
            .map(|r| {
                r.iter()
                    .filter(|s| {
                        s["original"]["src"]
                            .as_str()
                            .is_some_and(|x| x.starts_with(&format!("{ip}:")))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(sessions_of(&a_ip), 1, "{}", d.ok(&["conntrack"]));
    d.ok(&["sandbox", "rm", "-f", &a]);
    assert_eq!(
        sessions_of(&a_ip),
        0,
        "a's session left with it: {}",
        d.ok(&["conntrack"])
    );
    assert_eq!(sessions_of(&d.ip_of(&b, &net)), 1, "b's stays");
}

#[test]
fn iperf3_through_snat_and_dnat() {
    let lab = Lab::new();
    let (out, d, net) = setup(&lab, &[]);
    let (a, b) = (lab.name("a"), lab.name("b"));
    d.sandbox(&a, &net, &[]);
    d.sandbox(&b, &net, &["-p", "5201:5201"]);
    let _outside = Bg::spawn(&lab, &out.ns, "iperf-out", &["iperf3", "-s", "-B", out.ip]);
    let _inside = Bg::spawn(&lab, &b, "iperf-in", &["iperf3", "-s"]);
    e2e::wait_listening(&out.ns, 5201);
    e2e::wait_listening(&b, 5201);
    let (snat, why) = e2e::iperf_bytes(&a, out.ip, false);
    assert!(
        snat > 1_000_000,
        "iperf3 through SNAT moved {snat} bytes: {why}"
    );
    let (dnat, why) = e2e::iperf_bytes(&out.ns, out.uplink_ip, false);
    assert!(
        dnat > 1_000_000,
        "iperf3 through DNAT moved {dnat} bytes: {why}"
    );
}

/// A veth uplink whose peer keeps TX checksum offload on (a veth's default) hands the
/// switch TCP segments with unfinished checksums; TCP still crosses both ways, through
/// SNAT and through a published port, whichever way the uplink is read.
#[test]
fn tcp_crosses_a_veth_uplink_whose_peer_offloads_checksums() {
    for mode in ["tc", "socket"] {
        let lab = Lab::new();
        let out = Outside::with_offloads(&lab);
        let d = out.daemon(&lab, &["--uplink-mode", mode]);
        let net = d.network(&lab, "net", &["--subnet", "172.20.0.0/24"]);
        let (a, b) = (lab.name("a"), lab.name("b"));
        d.sandbox(&a, &net, &[]);
        d.sandbox(&b, &net, &["-p", "5201:5201"]);
        let _outside = Bg::spawn(&lab, &out.ns, "iperf-out", &["iperf3", "-s", "-B", out.ip]);
        let _inside = Bg::spawn(&lab, &b, "iperf-in", &["iperf3", "-s"]);
        e2e::wait_listening(&out.ns, 5201);
        e2e::wait_listening(&b, 5201);
        for reverse in [false, true] {
            let (snat, why) = e2e::iperf_bytes(&a, out.ip, reverse);
            assert!(
                snat > 1_000_000,
                "{mode} uplink, SNAT, reverse={reverse}: {snat} bytes: {why}"
            );
            let (dnat, why) = e2e::iperf_bytes(&out.ns, out.uplink_ip, reverse);
            assert!(
                dnat > 1_000_000,
                "{mode} uplink, DNAT, reverse={reverse}: {dnat} bytes: {why}"
            );
        }
    }
}

#[test]
fn published_ports_survive_restart() {
    let lab = Lab::new();
    let (out, mut d, net) = setup(&lab, &[]);
    let a = lab.name("a");
    d.sandbox(&a, &net, &["-p", "8080:80"]);
    let _web = Bg::spawn(&lab, &a, "web", &["python3", "-m", "http.server", "80"]);
    assert_eq!(
        http_get_eventually(&out.ns, "http://198.51.100.2:8080/"),
        "200"
    );
    d.restart(true);
    assert!(d.ok(&["port", &a]).contains("80/tcp -> 0.0.0.0:8080"));
    assert_eq!(
        http_get_eventually(&out.ns, "http://198.51.100.2:8080/"),
        "200",
        "after restart"
    );
    // The restored claim still holds.
    d.sandbox_refused(
        &lab.name("b"),
        &net,
        &["-p", "8080:80"],
        "port is already allocated",
    );
}

#[test]
fn without_an_uplink_egress_is_refused_at_once() {
    let lab = Lab::new();
    // No host port either: nothing to publish a port on (with one, the host's proxy
    // serves it: host.rs).
    let (d, net) = e2e::daemon_with_network(&lab, &["--host-port", "none"], &[]);
    let a = lab.name("a");
    d.sandbox(&a, &net, &[]);
    let o = ns_exec(
        &a,
        &["ping", "-n", "-c", "1", "-W", "2", "198.51.100.1"],
        Duration::from_secs(5),
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("Destination Net Unreachable"), "{text}");
    d.sandbox_refused(&lab.name("p"), &net, &["-p", "8080:80"], "uplink");
    let port = d.port_stats(&a);
    assert!(
        port["drops"]["no_route"].as_u64().unwrap_or(0) >= 1,
        "{port}"
    );
}
