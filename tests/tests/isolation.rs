//! Tenant isolation (issue 14): what one sandbox sends cannot steal another's traffic
//! or reach into another network. Frames are crafted and sent from inside a sandbox
//! with a raw AF_PACKET socket, as an attacker there would.

use std::net::Ipv4Addr;
use std::time::Duration;

use e2e::{ping, send_raw, udp_echo_server, udp_roundtrip, Bg, Lab};

/// The MAC vswitchd gives an endpoint: 02:42 and its IPv4 address.
fn mac_of(ip: &str) -> [u8; 6] {
    let o = ip.parse::<Ipv4Addr>().expect("ip").octets();
    [2, 0x42, o[0], o[1], o[2], o[3]]
}

/// An Ethernet frame from `src` to `dst` of a local experimental ethertype.
fn l2_frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend(src);
    f.extend([0x88, 0xb5]);
    f.resize(60, 0);
    f
}

/// An IPv4/UDP frame with a valid header checksum (UDP checksum 0: none).
fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut f = dst_mac.to_vec();
    f.extend(src_mac);
    f.extend([0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip.extend(src.octets());
    ip.extend(dst.octets());
    e2e::fill_ipv4_checksum(&mut ip);
    f.extend(ip);
    f.extend([0x9c, 0x40, 0x1b, 0x59, 0, 12, 0, 0]); // 40000 -> 7001, length 12
    f.extend(b"spoof");
    f.resize(60, 0);
    f
}

/// While a sandbox keeps sending with another's MAC, that one's traffic stays its own.
#[test]
fn a_sandbox_cannot_take_anothers_mac() {
    let lab = Lab::new();
    let (d, net) = e2e::daemon_with_network(&lab, &[], &["--subnet", "172.23.0.0/24"]);
    let [(a, a_ip), (b, b_ip), (c, _)] = d.sandboxes(&lab, &net, &[], ["a", "b", "c"]);
    assert!(ping(&a, &b_ip, 2), "a reaches b");
    let (to, stolen) = (mac_of(&a_ip), mac_of(&b_ip));
    let spoofer = std::thread::spawn({
        let c = c.clone();
        move || {
            send_raw(
                &c,
                "eth0",
                (0..600).map(move |_| {
                    std::thread::sleep(Duration::from_millis(5));
                    l2_frame(to, stolen)
                }),
            )
        }
    });
    assert!(
        ping(&a, &b_ip, 10),
        "b keeps its traffic while c claims its MAC"
    );
    spoofer.join().expect("spoofer");
    let fdb = d.ok(&["fdb", &net]);
    let b_mac = stolen.map(|b| format!("{b:02x}")).join(":");
    let row = fdb
        .lines()
        .find(|l| l.starts_with(&b_mac))
        .unwrap_or_default()
        .to_string();
    assert!(row.contains(&b), "b's MAC stays on b's port: {fdb}");
    let stats = d.port_stats(&c);
    assert!(
        stats["drops"]["port_security"].as_u64() >= Some(100),
        "counted on c: {stats}"
    );
}

/// A sandbox on n1 sending with a source address of n2 gets nothing of n2's: with port
/// security its frames are dropped; with it off the router refuses to route them, so
/// no reply is steered into n2.
#[test]
fn a_source_of_another_network_is_refused() {
    let lab = Lab::new();
    let (out, d, n1) = e2e::uplinked_network(&lab, "172.24.0.0/24", &[]);
    let n2 = d.network(&lab, "n2", &["--subnet", "172.25.0.0/24"]);
    let (guarded, open, victim) = (lab.name("g"), lab.name("o"), lab.name("v"));
    d.sandbox(&guarded, &n1, &[]);
    d.sandbox(&open, &n1, &["--port-security", "off"]);
    d.sandbox(&victim, &n2, &[]);
    let _echo = udp_echo_server(&lab, &out.ns, 7001);
    let _listen = Bg::spawn(&lab, &victim, "victim", &["python3", "-c", "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',40000))\nprint(s.recvfrom(100),flush=True)"]);
    assert_eq!(
        udp_roundtrip(&guarded, out.ip, 7001, "ok"),
        "ok",
        "n1 gets out"
    );
    let victim_ip: Ipv4Addr = d.ip_of(&victim, &n2).parse().expect("ip");
    let gw_mac = mac_of("172.24.0.1");
    for sb in [&guarded, &open] {
        let src = mac_of(&d.ip_of(sb, &n1));
        let frames: Vec<Vec<u8>> = (0..5)
            .map(|_| udp_frame(gw_mac, src, victim_ip, out.ip.parse().expect("ip")))
            .collect();
        assert_eq!(send_raw(sb, "eth0", frames.into_iter()), 5);
    }
    std::thread::sleep(Duration::from_millis(500));
    let ct = d.ok(&["conntrack"]);
    assert!(
        !ct.contains(&victim_ip.to_string()),
        "no session with n2's source: {ct}"
    );
    assert!(
        d.port_stats(&guarded)["drops"]["port_security"].as_u64() >= Some(5),
        "port security"
    );
    assert!(
        d.port_stats(&open)["drops"]["port_security"].as_u64() >= Some(5),
        "the router's reverse-path check: {}",
        d.port_stats(&open)
    );
}

/// `--port-security off` lets a sandbox use another MAC; `--allow-address` lets it
/// answer for a virtual IP.
#[test]
fn port_security_can_be_turned_off_or_widened() {
    let lab = Lab::new();
    let (d, net) = e2e::daemon_with_network(&lab, &[], &["--subnet", "172.26.0.0/24"]);
    let (free, vip_holder, plain, client) =
        (lab.name("f"), lab.name("v"), lab.name("p"), lab.name("c"));
    d.sandbox(&free, &net, &["--port-security", "off"]);
    d.sandbox(&vip_holder, &net, &["--allow-address", "172.26.0.100"]);
    d.sandbox(&plain, &net, &[]);
    d.sandbox(&client, &net, &[]);
    for (sb, vip) in [
        (&vip_holder, "172.26.0.100/24"),
        (&plain, "172.26.0.101/24"),
    ] {
        e2e::run_ok(&["ip", "-n", sb, "addr", "add", vip, "dev", "eth0"]);
    }
    assert!(
        ping(&client, "172.26.0.100", 2),
        "an allowed virtual IP answers"
    );
    assert!(
        !ping(&client, "172.26.0.101", 2),
        "an address not allowed does not"
    );
    e2e::run_ok(&[
        "ip",
        "-n",
        &free,
        "link",
        "set",
        "eth0",
        "address",
        "02:00:00:00:0f:0f",
    ]);
    let free_ip = d.ip_of(&free, &net);
    assert!(
        ping(&client, &free_ip, 3),
        "with port security off, another MAC works"
    );
    d.sandbox_refused(
        &lab.name("x"),
        &net,
        &["--allow-address", "nope"],
        "invalid --allow-address",
    );
}

/// Port security holds in the kernel's fast path too: once both MACs are known (and
/// installed for the kernel to forward between them), frames from c with a neighbour's
/// source address still never reach b; the same frames from c's own address do.
#[test]
fn a_spoofed_source_is_not_forwarded_in_the_kernel() {
    let lab = Lab::new();
    let (d, net) = e2e::daemon_with_network(&lab, &[], &["--subnet", "172.27.0.0/24"]);
    let [(_a, a_ip), (b, b_ip), (c, c_ip)] = d.sandboxes(&lab, &net, &[], ["a", "b", "c"]);
    assert!(ping(&c, &b_ip, 2), "c reaches b: both MACs learned");
    let listen = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                  s.bind(('0.0.0.0',7001))\ns.settimeout(8)\n\
                  while True: print(s.recvfrom(100)[1][0],flush=True)";
    let rx = Bg::spawn(&lab, &b, "rx", &["python3", "-c", listen]);
    std::thread::sleep(Duration::from_millis(300));
    let (to, from) = (mac_of(&b_ip), mac_of(&c_ip));
    let ip = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
    let (spoofed, own, dst) = (ip(&a_ip), ip(&c_ip), ip(&b_ip));
    let frames = move |src| (0..20).map(move |_| udp_frame(to, from, src, dst));
    assert_eq!(send_raw(&c, "eth0", frames(spoofed)), 20);
    assert_eq!(send_raw(&c, "eth0", frames(own)), 20);
    let mut seen = String::new();
    for _ in 0..50 {
        seen = rx.output();
        if seen.contains(&c_ip) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen.contains(&c_ip),
        "c's own address gets through: {seen:?}"
    );
    assert!(
        !seen.contains(&a_ip),
        "a's address from c's port never does: {seen:?}"
    );
    assert!(
        d.port_stats(&c)["drops"]["port_security"].as_u64() >= Some(20),
        "dropped and counted on c: {}",
        d.port_stats(&c)
    );
}

/// Storm control with `--flood-rate 100`: 2000 broadcasts sent at once from c reach
/// the others only at about the rate (a second's burst), the rest are dropped and
/// counted on c, and a's ARP and pings, from its own port, are not charged for them.
#[test]
fn a_ports_floods_are_rate_limited_and_counted() {
    let lab = Lab::new();
    let (d, net) = e2e::daemon_with_network(
        &lab,
        &["--flood-rate", "100"],
        &["--subnet", "172.29.0.0/24"],
    );
    let [(a, _), (b, b_ip), (c, c_ip)] = d.sandboxes(&lab, &net, &[], ["a", "b", "c"]);
    assert!(ping(&a, &b_ip, 1), "a reaches b");
    let before = d.port_count(&b, "tx_packets");
    let from = mac_of(&c_ip);
    assert_eq!(
        send_raw(
            &c,
            "eth0",
            (0..2000).map(move |_| l2_frame([0xff; 6], from))
        ),
        2000
    );
    std::thread::sleep(Duration::from_millis(300));
    let delivered = d.port_count(&b, "tx_packets") - before;
    let port = d.port_stats(&c);
    let storm = port["drops"]["storm"].as_u64().unwrap_or(0);
    assert!(storm >= 1700, "most of c's floods dropped as storm: {port}");
    assert!(
        delivered <= 300,
        "b got {delivered} frames of c's 2000 broadcasts"
    );
    e2e::run_ok(&["ip", "-n", &a, "neigh", "flush", "all"]);
    assert!(ping(&a, &b_ip, 2), "a's own broadcasts (ARP) still go");
}
