//! macvlan networks end to end: endpoints on a LAN behind the parent interface, no NAT,
//! and 802.1Q VLANs the switch tags and untags itself (the kernel here has no 8021q, so
//! the LAN's hosts are scapy responders that tag and untag).

use std::process::Command;
use std::time::Duration;

use e2e::{network_create, ns_exec, ping, send_raw, Bg, Capture, Daemon, Lab};

/// The LAN: a namespace whose `lan0` is the far end of the parent veth `<prefix>par`,
/// which lives in the daemon's namespace.
fn lan(lab: &Lab) -> (String, String) {
    let parent = lab.name("par");
    let ns = e2e::wired_ns(lab, "lan", &parent, "lan0");
    (ns, parent)
}

fn promisc(host: &str, dev: &str) -> bool {
    let o = Command::new("ip")
        .args(["-n", host, "link", "show", dev])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&o.stdout).contains("PROMISC")
}

#[test]
fn macvlan_endpoints_sit_on_the_lan() {
    let lab = Lab::new();
    let (lan_ns, parent) = lan(&lab);
    let o = ns_exec(
        &lan_ns,
        &["ip", "addr", "add", "192.168.0.1/24", "dev", "lan0"],
        Duration::from_secs(5),
    );
    assert!(o.status.success());
    let mut d = Daemon::start(&lab, &[]);
    let net = lab.name("mv");
    let opt = format!("parent={parent}");
    let flags = [
        "--subnet",
        "192.168.0.0/24",
        "--gateway",
        "192.168.0.1",
        "-o",
        &opt,
    ];
    d.ok(&network_create("macvlan", &flags, &net));
    assert!(
        promisc(&d.host_ns, &parent),
        "the parent is promiscuous while a macvlan network uses it"
    );
    let [(a, ip_a), (b, ip_b)] = d.sandboxes(&lab, &net, &[], ["a", "b"]);
    assert_eq!(ip_a, "192.168.0.2");
    assert!(ping(&a, "192.168.0.1", 2), "sandbox -> LAN host");
    assert!(ping(&lan_ns, &ip_a, 2), "LAN host -> sandbox");
    assert!(
        ping(&a, &ip_b, 2),
        "macvlan endpoints reach each other through the switch"
    );
    // No NAT: the LAN host knows the sandbox by its own MAC and address.
    let neigh = ns_exec(
        &lan_ns,
        &["ip", "neigh", "show", &ip_a],
        Duration::from_secs(5),
    );
    assert!(
        String::from_utf8_lossy(&neigh.stdout).contains("02:42:c0:a8:00:02"),
        "{}",
        String::from_utf8_lossy(&neigh.stdout)
    );
    let route = ns_exec(
        &a,
        &["ip", "route", "show", "default"],
        Duration::from_secs(5),
    );
    assert!(
        String::from_utf8_lossy(&route.stdout).contains("via 192.168.0.1"),
        "the LAN's router is the gateway"
    );
    // The switch does not play gateway on a macvlan network.
    d.sandbox_refused(
        &lab.name("p"),
        &net,
        &["-p", "80:80"],
        "bridge networks publish ports",
    );

    // One network per parent and VLAN; a subnet is required; the parent must exist.
    let (dup, ns, np) = (lab.name("dup"), lab.name("ns"), lab.name("np"));
    let flags = ["--subnet", "192.168.1.0/24", "-o", &opt];
    d.refused_with(&network_create("macvlan", &flags, &dup), "already used");
    d.refused_with(&network_create("macvlan", &["-o", &opt], &ns), "--subnet");
    let flags = ["--subnet", "192.168.2.0/24", "-o", "parent=nosuch0"];
    d.refused_with(&network_create("macvlan", &flags, &np), "does not exist");

    d.restart(true);
    assert!(
        ping(&a, "192.168.0.1", 2),
        "the trunk comes back after a restart"
    );
    assert!(promisc(&d.host_ns, &parent));

    d.ok(&["sandbox", "rm", &a]);
    d.ok(&["sandbox", "rm", &b]);
    d.ok(&["network", "rm", &net]);
    assert!(
        !promisc(&d.host_ns, &parent),
        "the parent's promiscuous mode is restored"
    );
}

/// The parent's settings vswitchd changed (IPv6 off, arp_ignore, promiscuous mode) are
/// put back when its last macvlan network goes, also after the daemon that changed them
/// was killed and another took the parent again.
#[test]
fn the_parent_is_given_back_as_it_was() {
    let lab = Lab::new();
    let (_lan_ns, parent) = lan(&lab);
    let mut d = Daemon::start(&lab, &[]);
    let sysctls = |host: &str| {
        ["ipv6/conf/{p}/disable_ipv6", "ipv4/conf/{p}/arp_ignore"]
            .map(|k| {
                let path = format!("/proc/sys/net/{}", k.replace("{p}", &parent));
                e2e::run_out(&["ip", "netns", "exec", host, "cat", &path])
            })
            .join(",")
    };
    let before = sysctls(&d.host_ns);
    let net = lab.name("mv");
    let opt = format!("parent={parent}");
    let flags = [
        "--subnet",
        "192.168.7.0/24",
        "--gateway",
        "192.168.7.1",
        "-o",
        &opt,
    ];
    d.ok(&network_create("macvlan", &flags, &net));
    assert_ne!(
        sysctls(&d.host_ns),
        before,
        "vswitchd keeps the kernel off the parent"
    );
    d.restart(true);
    d.ok(&["network", "rm", &net]);
    assert_eq!(
        sysctls(&d.host_ns),
        before,
        "the parent's sysctls are restored"
    );
    assert!(!promisc(&d.host_ns, &parent));
}

/// Answers ARP and ICMP echo for 192.168.VID.1 on each VID, tagging its replies, and
/// logs every tagged frame it sees as "vid=V".
const RESPONDER: &str = r#"
import sys
from scapy.all import Ether, Dot1Q, ARP, IP, ICMP, Raw, sendp, sniff, conf
conf.verb = 0
iface, vids = sys.argv[1], [int(v) for v in sys.argv[2:]]
mac = open(f"/sys/class/net/{iface}/address").read().strip()
def handle(p):
    if Dot1Q not in p or p[Ether].src == mac:
        return
    v = p[Dot1Q].vlan
    print(f"vid={v}", flush=True)
    if v not in vids:
        return
    me = f"192.168.{v}.1"
    if ARP in p and p[ARP].op == 1 and p[ARP].pdst == me:
        sendp(Ether(dst=p.src, src=mac)/Dot1Q(vlan=v)/ARP(op=2, hwsrc=mac, psrc=me, hwdst=p[ARP].hwsrc, pdst=p[ARP].psrc), iface=iface)
    elif IP in p and ICMP in p and p[IP].dst == me and p[ICMP].type == 8:
        r = Ether(dst=p.src, src=mac)/Dot1Q(vlan=v)/IP(src=me, dst=p[IP].src)/ICMP(type=0, id=p[ICMP].id, seq=p[ICMP].seq)
        if Raw in p:
            r = r/Raw(p[Raw].load)
        sendp(r, iface=iface)
sniff(iface=iface, prn=handle, store=False, started_callback=lambda: print("ready", flush=True))
"#;

fn frame(vlans: &[u16], src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend(src);
    for v in vlans {
        f.extend([0x81, 0x00]);
        f.extend(v.to_be_bytes());
    }
    f.extend([0x88, 0xb5]);
    f.resize(64, 0x5a);
    f
}

#[test]
fn vlans_are_tagged_and_isolated() {
    let lab = Lab::new();
    let (lan_ns, parent) = lan(&lab);
    let d = Daemon::start(&lab, &[]);
    let (n10, n20) = (lab.name("v10"), lab.name("v20"));
    for (n, v) in [(&n10, 10), (&n20, 20)] {
        let subnet = format!("192.168.{v}.0/24");
        let gw = format!("192.168.{v}.1");
        let opt = format!("parent={parent}.{v}");
        let flags = ["--subnet", &subnet, "--gateway", &gw, "-o", &opt];
        d.ok(&network_create("macvlan", &flags, n));
    }
    let (a10, a20) = (lab.name("a10"), lab.name("a20"));
    assert_eq!(d.sandbox(&a10, &n10, &[]), "192.168.10.2");
    assert_eq!(d.sandbox(&a20, &n20, &[]), "192.168.20.2");

    let responder = Bg::spawn(
        &lab,
        &lan_ns,
        "responder",
        &["/usr/bin/python3", "-c", RESPONDER, "lan0", "10", "20"],
    );
    e2e::wait_for("the scapy responder", Duration::from_secs(30), || {
        responder.output().contains("ready")
    });
    let trunk = Capture::start(&lab, &lan_ns, "lan0", "trunk");
    assert!(
        ping(&a10, "192.168.10.1", 2),
        "VLAN 10 sandbox reaches its LAN host"
    );
    assert!(
        ping(&a20, "192.168.20.1", 2),
        "VLAN 20 sandbox reaches its LAN host"
    );
    let text = trunk.stop().join("\n");
    assert!(
        text.lines()
            .any(|l| l.contains("vlan 10") && l.contains("192.168.10.2")),
        "VLAN 10 frames carry tag 10:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("vlan 20") && l.contains("192.168.20.2")),
        "VLAN 20 frames carry tag 20:\n{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("vlan 20") && l.contains("192.168.10.")),
        "no VLAN 10 traffic under tag 20"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("vlan 10") && l.contains("192.168.20.")),
        "no VLAN 20 traffic under tag 10"
    );

    // Crafted broadcasts from the LAN: single tag 20 reaches only the VLAN 20 sandbox;
    // untagged and double-tagged [10][20] frames never reach VLAN 20.
    let cap20 = Capture::start(&lab, &a20, "eth0", "a20");
    let cap10 = Capture::start(&lab, &a10, "eth0", "a10");
    let src = |n: u8| [0x02, 0, 0, 0, 0x99, n];
    send_raw(&lan_ns, "lan0", std::iter::once(frame(&[20], src(1))));
    send_raw(&lan_ns, "lan0", std::iter::once(frame(&[], src(2))));
    send_raw(&lan_ns, "lan0", std::iter::once(frame(&[10, 20], src(3))));
    std::thread::sleep(Duration::from_millis(500));
    let e20 = cap20.stop();
    let e10 = cap10.stop();
    let from = |lines: &[String], n: u8| {
        lines
            .iter()
            .any(|l| l.contains(&format!("02:00:00:00:99:{n:02x}")))
    };
    assert!(
        from(&e20, 1),
        "a tag-20 broadcast reaches VLAN 20 (positive control): {e20:?}"
    );
    assert!(
        !from(&e10, 1),
        "a tag-20 broadcast reached VLAN 10: {e10:?}"
    );
    assert!(
        !from(&e20, 2) && !from(&e10, 2),
        "an untagged frame reached a VLAN network"
    );
    assert!(
        !from(&e20, 3),
        "a double-tagged [10][20] frame hopped into VLAN 20: {e20:?}"
    );
    let stats = d.json(&["stats"]);
    let drops: u64 = stats["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["drops"]["vlan_mismatch"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        drops >= 1,
        "the untagged frame is counted as a VLAN mismatch: {stats}"
    );
    let fdb = d.ok(&["fdb", &n10]);
    assert!(
        fdb.contains(&format!("{parent}.10")),
        "trunk members show as PARENT.VID: {fdb}"
    );

    // A sandbox's own tags never reach the trunk: from VLAN 10 a frame tagged 20 would
    // leave double-tagged [10][20] (and hop to VLAN 20 at the next switch). Port
    // security drops it; with it off, the trunk's transmit does.
    let h10 = lab.name("h10");
    d.sandbox(&h10, &n10, &["--port-security", "off"]);
    let wire = Capture::start(&lab, &lan_ns, "lan0", "hop");
    for sb in [&a10, &h10] {
        send_raw(sb, "eth0", std::iter::once(frame(&[20], src(4))));
    }
    std::thread::sleep(Duration::from_millis(500));
    let seen = wire.stop();
    assert!(
        !from(&seen, 4),
        "a sandbox's tagged frame left on the trunk: {seen:?}"
    );
    assert!(d.port_stats(&a10)["drops"]["port_security"].as_u64() >= Some(1));
    assert!(
        d.port_stats(&h10)["drops"]["vlan_mismatch"].as_u64() >= Some(1),
        "{}",
        d.port_stats(&h10)
    );
}
