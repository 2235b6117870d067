//! macvlan networks end to end: endpoints on a LAN behind the parent interface, no NAT,
//! and 802.1Q VLANs the switch tags and untags itself (the kernel here has no 8021q, so
//! the LAN's hosts are scapy responders that tag and untag). Dual-stack networks carry
//! IPv6 the same way (issue 16): the LAN's router is the IPv6 gateway too.

use std::process::Command;
use std::time::Duration;

use e2e::{network_create, ns_exec, ping, run_ok, send_raw, Bg, Capture, Daemon, Lab};

/// The LAN: a namespace whose `lan0` is the far end of the parent veth `<prefix>par`,
/// which lives in the daemon's namespace.
fn lan(lab: &Lab) -> (String, String) {
    let parent = lab.name("par");
    let ns = e2e::wired_ns(lab, "lan", &parent, "lan0");
    (ns, parent)
}

/// `ping -6` from a namespace, `extra` before the destination; true when every echo
/// came back.
fn ping6_with(ns: &str, extra: &[&str], dst: &str, count: u32) -> bool {
    let c = count.to_string();
    let mut args = vec!["ping", "-6", "-n", "-q", "-c", &c, "-i", "0.2", "-W", "2"];
    args.extend(extra);
    args.push(dst);
    ns_exec(ns, &args, Duration::from_secs(10)).status.success()
}

fn ping6(ns: &str, dst: &str, count: u32) -> bool {
    ping6_with(ns, &[], dst, count)
}

/// What a command in a namespace printed (stdout, then stderr).
fn output(ns: &str, args: &[&str]) -> String {
    let o = ns_exec(ns, args, Duration::from_secs(10));
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// The sandbox's IPv6 address on `network`, from `sandbox inspect`.
fn ip6_of(d: &Daemon, sandbox: &str, network: &str) -> String {
    let v = d.json(&["sandbox", "inspect", sandbox]);
    v["Networks"][network]["GlobalIPv6Address"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("{sandbox} has no IPv6 address on {network}: {v}"))
        .to_string()
}

/// An IPv6 address on a LAN host's interface, usable at once (no DAD).
fn add_ip6(ns: &str, dev: &str, cidr: &str) {
    run_ok(&[
        "ip", "-n", ns, "-6", "addr", "add", cidr, "dev", dev, "nodad",
    ]);
}

/// The flags of a dual-stack macvlan network on `parent` (IFACE or IFACE.VID): the
/// LAN's IPv4 and IPv6 subnets, and its router's addresses as the gateways.
fn dual_stack<'a>(
    v4: &'a str,
    gw4: &'a str,
    v6: &'a str,
    gw6: &'a str,
    parent: &'a str,
) -> [&'a str; 11] {
    [
        "--ipv6",
        "--subnet",
        v4,
        "--subnet",
        v6,
        "--gateway",
        gw4,
        "--gateway",
        gw6,
        "-o",
        parent,
    ]
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

/// The untagged dual-stack LAN of the IPv6 tests: 2001:db8:c0a8::/64 (192.168 in hex,
/// beside the IPv4 plan's 192.168.0.0/16), its router at ::1, a host at ::fe.
const LAN6: &str = "2001:db8:c0a8::/64";
const ROUTER6: &str = "2001:db8:c0a8::1";
const HOST6: &str = "2001:db8:c0a8::fe";
/// The host's own address on the parent, before and after vswitchd uses it.
const PARENT6: &str = "2001:db8:c0a8::f0";
/// An address beyond the LAN's router (on its loopback), off the LAN's subnet.
const BEYOND6: &str = "2001:db8:c0a9::1";

/// A dual-stack macvlan network: its sandboxes get IPv6 addresses of the LAN's subnet,
/// reach the LAN's hosts, its router and each other over IPv6 with no NAT, and their
/// IPv6 default route is via the LAN's router, which the switch does not play: nothing
/// answers for the gateway address until the router is on the LAN. Port security
/// holds for IPv6 sources here too.
#[test]
fn dual_stack_macvlan_endpoints_reach_the_lan_over_ipv6() {
    let lab = Lab::new();
    let (lan_ns, parent) = lan(&lab);
    add_ip6(&lan_ns, "lan0", &format!("{HOST6}/64"));
    let d = Daemon::start(&lab, &[]);
    let net = lab.name("mv6");
    let opt = format!("parent={parent}");
    let flags = dual_stack("192.168.6.0/24", "192.168.6.1", LAN6, ROUTER6, &opt);
    d.ok(&network_create("macvlan", &flags, &net));
    let [(a, _), (b, _)] = d.sandboxes(&lab, &net, &[], ["a", "b"]);
    let (ip6_a, ip6_b) = (ip6_of(&d, &a, &net), ip6_of(&d, &b, &net));
    assert_eq!(
        (ip6_a.as_str(), ip6_b.as_str()),
        ("2001:db8:c0a8::2", "2001:db8:c0a8::3"),
        "addresses of the LAN's subnet, the router's ::1 skipped"
    );
    let sb = &d.json(&["sandbox", "inspect", &a])["Networks"][&net];
    assert_eq!(sb["IPv6Gateway"], ROUTER6, "{sb}");

    let routes = output(&a, &["ip", "-6", "route", "show", "default"]);
    assert!(
        routes.contains(&format!("via {ROUTER6} dev eth0")),
        "the IPv6 default route is via the LAN's router: {routes}"
    );
    let addrs = output(&a, &["ip", "-6", "addr", "show", "dev", "eth0"]);
    assert!(
        addrs.contains(&format!("{ip6_a}/64")) && !addrs.contains("tentative"),
        "{addrs}"
    );

    // No router on the LAN yet: nobody answers for the gateway address, the switch
    // least of all (it plays no gateway on a macvlan network).
    assert!(ping6(&a, HOST6, 2), "sandbox -> LAN host over IPv6");
    assert!(
        !ping6(&a, ROUTER6, 1),
        "something other than the LAN answered for the IPv6 gateway"
    );
    // Now the LAN gets its router (forwarding on, so it advertises itself as one).
    add_ip6(&lan_ns, "lan0", &format!("{ROUTER6}/64"));
    run_ok(&[
        "ip",
        "netns",
        "exec",
        &lan_ns,
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.forwarding=1",
    ]);
    assert!(ping6(&a, ROUTER6, 2), "sandbox -> the LAN's router");
    let lan_mac = output(&lan_ns, &["cat", "/sys/class/net/lan0/address"]);
    let neigh = output(&a, &["ip", "-6", "neigh", "show", ROUTER6, "dev", "eth0"]);
    assert!(
        neigh.contains(lan_mac.trim()) && neigh.contains("router"),
        "the gateway is the LAN's router, by its own MAC ({}): {neigh}",
        lan_mac.trim()
    );
    // Beyond the router: an address off the LAN's subnet is reached by the default
    // route alone.
    run_ok(&[
        "ip", "-n", &lan_ns, "-6", "addr", "add", BEYOND6, "dev", "lo", "nodad",
    ]);
    assert!(
        ping6(&a, BEYOND6, 2),
        "sandbox -> beyond the LAN's router, by the default route"
    );

    assert!(ping6(&lan_ns, &ip6_a, 2), "LAN host -> sandbox over IPv6");
    assert!(ping6(&a, &ip6_b, 2), "sandbox -> sandbox over IPv6");
    assert!(ping6(&b, &ip6_a, 2), "and back");
    // No NAT: the LAN knows the sandbox by its own MAC and IPv6 address.
    let neigh = output(&lan_ns, &["ip", "-6", "neigh", "show", &ip6_a]);
    assert!(neigh.contains("02:42:c0:a8:06:02"), "{neigh}");
    assert!(ping(&a, "192.168.6.3", 1), "IPv4 still works beside it");

    // A source address that is not the sandbox's own gets nowhere on the LAN.
    add_ip6(&a, "eth0", "2001:db8:c0a8::99/64");
    let before = d.port_stats(&a)["drops"]["port_security"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        !ping6_with(&a, &["-I", "2001:db8:c0a8::99"], HOST6, 1),
        "a spoofed IPv6 source reached the LAN host"
    );
    let after = d.port_stats(&a)["drops"]["port_security"]
        .as_u64()
        .unwrap_or(0);
    assert!(after > before, "the spoofed frames are counted: {after}");

    // Nor does a sandbox's router advertisement: a rogue router on a real LAN. An echo
    // request to all nodes, sent the same way, is the positive control.
    let wire = Capture::start(&lab, &lan_ns, "lan0", "ra");
    let o = ns_exec(
        &a,
        &["/usr/bin/python3", "-c", ROGUE_RA, "eth0"],
        Duration::from_secs(30),
    );
    assert!(o.status.success(), "{o:?}");
    let seen = wire.stop();
    let has = |what: &str| seen.iter().any(|l| l.contains(what));
    assert!(has("echo request"), "positive control: {seen:?}");
    assert!(
        !has("router advertisement"),
        "a sandbox's router advertisement reached the LAN: {seen:?}"
    );
}

/// From a sandbox's own MAC and link-local address, to all nodes: a router
/// advertisement for a prefix, then an echo request.
const ROGUE_RA: &str = r#"
import sys
from scapy.all import Ether, IPv6, ICMPv6ND_RA, ICMPv6NDOptPrefixInfo, ICMPv6EchoRequest, sendp, conf
from scapy.utils6 import in6_mactoifaceid
conf.verb = 0
iface = sys.argv[1]
mac = open(f"/sys/class/net/{iface}/address").read().strip()
l2 = Ether(src=mac, dst="33:33:00:00:00:01")/IPv6(src="fe80::" + in6_mactoifaceid(mac).lower(), dst="ff02::1", hlim=255)
sendp(l2/ICMPv6ND_RA()/ICMPv6NDOptPrefixInfo(prefix="2001:db8:bad::", prefixlen=64), iface=iface)
sendp(l2/ICMPv6EchoRequest(), iface=iface)
"#;

/// The parent's own kernel stays off the LAN while the switch uses it: IPv6 off on it
/// (no address left, its own no longer answers), also across a killed daemon; when its
/// last network goes IPv6 comes back on as it was: the kernel's link-local, and the
/// address the host had configured on it, answering again.
#[test]
fn the_parents_ipv6_is_off_while_used_and_given_back() {
    let lab = Lab::new();
    let (lan_ns, parent) = lan(&lab);
    add_ip6(&lan_ns, "lan0", &format!("{HOST6}/64"));
    let host = e2e::host_ns(&lab);
    let disabled = || {
        let path = format!("/proc/sys/net/ipv6/conf/{parent}/disable_ipv6");
        e2e::run_out(&["ip", "netns", "exec", &host, "cat", &path])
            .trim()
            .to_string()
    };
    let addrs6 = || output(&host, &["ip", "-6", "addr", "show", "dev", &parent]);
    // The parent as a host might have it: up, IPv6 on, an address of its own on the LAN.
    run_ok(&["ip", "-n", &host, "link", "set", &parent, "up"]);
    add_ip6(&host, &parent, &format!("{PARENT6}/64"));
    assert_eq!(disabled(), "0");
    let answers = || netlab::eventually(Duration::from_secs(5), || ping6(&lan_ns, PARENT6, 1));
    assert!(answers(), "positive control: the parent's kernel answers");

    // AF_PACKET, under which the parent's kernel sees every frame the switch takes (an
    // XDP program would keep them from it): IPv6 off is then all that keeps it quiet.
    let mut d = Daemon::start(&lab, &["--io", "af_packet"]);
    let net = lab.name("mv6");
    let opt = format!("parent={parent}");
    let flags = dual_stack("192.168.6.0/24", "192.168.6.1", LAN6, ROUTER6, &opt);
    d.ok(&network_create("macvlan", &flags, &net));
    let a = lab.name("a");
    d.sandbox(&a, &net, &[]);
    let kept_out = |when: &str| {
        assert_eq!(disabled(), "1", "IPv6 is off on the parent {when}");
        let a6 = addrs6();
        assert!(
            !a6.contains("inet6"),
            "the parent has no IPv6 address {when}: {a6}"
        );
        assert!(ping6(&a, HOST6, 2), "the sandbox reaches the LAN {when}");
        assert!(
            !ping6(&lan_ns, PARENT6, 1),
            "the parent's kernel answered at {PARENT6} {when}"
        );
    };
    kept_out("while used");
    d.restart(true);
    kept_out("after the daemon was killed and started again");

    d.ok(&["sandbox", "rm", &a]);
    d.ok(&["network", "rm", &net]);
    assert_eq!(disabled(), "0", "the parent's IPv6 is given back");
    let a6 = addrs6();
    assert!(
        a6.contains(&format!("inet6 {PARENT6}/64")) && a6.contains("scope link"),
        "the parent's IPv6 addresses are given back: {a6}"
    );
    assert!(answers(), "the parent's kernel answers at {PARENT6} again");
}

/// Answers, on each VID and tagging its replies: ARP and ICMP echo for 192.168.VID.1;
/// neighbour solicitations and ICMPv6 echo for the VID's LAN router 2001:db8:c0a8:VID::1
/// (its advertisements carry the router flag) and LAN host 2001:db8:c0a8:VID::fe. Only
/// on their own VID, as a VLAN-aware LAN does. Logs every tagged frame it sees as
/// "vid=V".
const RESPONDER: &str = r#"
import ipaddress, sys
from scapy.all import Ether, Dot1Q, ARP, IP, ICMP, Raw, sendp, sniff, conf
from scapy.all import IPv6, ICMPv6ND_NS, ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, ICMPv6EchoRequest, ICMPv6EchoReply
conf.verb = 0
iface, vids = sys.argv[1], [int(v) for v in sys.argv[2:]]
mac = open(f"/sys/class/net/{iface}/address").read().strip()
canon = lambda a: str(ipaddress.ip_address(a))
def handle(p):
    if Dot1Q not in p or p[Ether].src == mac:
        return
    v = p[Dot1Q].vlan
    print(f"vid={v}", flush=True)
    if v not in vids:
        return
    me = f"192.168.{v}.1"
    router6, host6 = canon(f"2001:db8:c0a8:{v}::1"), canon(f"2001:db8:c0a8:{v}::fe")
    l2 = Ether(dst=p.src, src=mac)/Dot1Q(vlan=v)
    if ARP in p and p[ARP].op == 1 and p[ARP].pdst == me:
        sendp(l2/ARP(op=2, hwsrc=mac, psrc=me, hwdst=p[ARP].hwsrc, pdst=p[ARP].psrc), iface=iface)
    elif IP in p and ICMP in p and p[IP].dst == me and p[ICMP].type == 8:
        r = l2/IP(src=me, dst=p[IP].src)/ICMP(type=0, id=p[ICMP].id, seq=p[ICMP].seq)
        if Raw in p:
            r = r/Raw(p[Raw].load)
        sendp(r, iface=iface)
    elif IPv6 in p and ICMPv6ND_NS in p and canon(p[ICMPv6ND_NS].tgt) in (router6, host6):
        tgt = canon(p[ICMPv6ND_NS].tgt)
        na = ICMPv6ND_NA(tgt=tgt, R=int(tgt == router6), S=1, O=1)/ICMPv6NDOptDstLLAddr(lladdr=mac)
        sendp(l2/IPv6(src=tgt, dst=p[IPv6].src, hlim=255)/na, iface=iface)
    elif IPv6 in p and ICMPv6EchoRequest in p and canon(p[IPv6].dst) in (router6, host6):
        q = p[ICMPv6EchoRequest]
        r = ICMPv6EchoReply(id=q.id, seq=q.seq, data=q.data)
        sendp(l2/IPv6(src=p[IPv6].dst, dst=p[IPv6].src)/r, iface=iface)
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

/// Dual-stack VLAN networks: IPv6 leaves tagged with the network's VID and comes back
/// untagged to it, to the VID's LAN host and router (the IPv6 gateway, by the
/// responder's MAC) and between two sandboxes of one VID; and neither a VID's IPv6
/// traffic nor its neighbour discovery ever reaches the other VID, on the trunk or in
/// the switch, even when a sandbox takes the other VID's prefix for on-link.
#[test]
fn vlans_carry_ipv6_tagged_and_isolated() {
    let lab = Lab::new();
    let (lan_ns, parent) = lan(&lab);
    let d = Daemon::start(&lab, &[]);
    let (n10, n20) = (lab.name("v10"), lab.name("v20"));
    for (n, v) in [(&n10, 10), (&n20, 20)] {
        let (v4, gw4) = (format!("192.168.{v}.0/24"), format!("192.168.{v}.1"));
        let (v6, gw6) = (
            format!("2001:db8:c0a8:{v}::/64"),
            format!("2001:db8:c0a8:{v}::1"),
        );
        let opt = format!("parent={parent}.{v}");
        let flags = dual_stack(&v4, &gw4, &v6, &gw6, &opt);
        d.ok(&network_create("macvlan", &flags, n));
    }
    let [(a10, _), (b10, _)] = d.sandboxes(&lab, &n10, &[], ["a10", "b10"]);
    let a20 = lab.name("a20");
    d.sandbox(&a20, &n20, &[]);
    let (ip6_a10, ip6_b10, ip6_a20) = (
        ip6_of(&d, &a10, &n10),
        ip6_of(&d, &b10, &n10),
        ip6_of(&d, &a20, &n20),
    );
    assert_eq!(ip6_a10, "2001:db8:c0a8:10::2");
    assert_eq!(ip6_a20, "2001:db8:c0a8:20::2");
    let routes = output(&a10, &["ip", "-6", "route", "show", "default"]);
    assert!(
        routes.contains("via 2001:db8:c0a8:10::1 dev eth0"),
        "the IPv6 default route is via VLAN 10's router: {routes}"
    );

    let responder = Bg::spawn(
        &lab,
        &lan_ns,
        "responder",
        &["/usr/bin/python3", "-c", RESPONDER, "lan0", "10", "20"],
    );
    e2e::wait_for("the scapy responder", Duration::from_secs(30), || {
        responder.output().contains("ready")
    });
    let trunk = Capture::start(&lab, &lan_ns, "lan0", "trunk6");
    let in10 = Capture::start(&lab, &a10, "eth0", "in10");
    for (sb, v) in [(&a10, 10), (&b10, 10), (&a20, 20)] {
        for (who, host) in [("router", 1), ("host", 0xfe)] {
            let dst = format!("2001:db8:c0a8:{v}::{host:x}");
            assert!(
                ping6(sb, &dst, 2),
                "{sb} on VLAN {v} reaches its LAN {who} {dst} over IPv6"
            );
        }
    }
    assert!(
        ping6(&a10, &ip6_b10, 2),
        "sandboxes of one VLAN reach each other"
    );
    assert!(ping6(&b10, &ip6_a10, 2), "and back");
    let lan_mac = output(&lan_ns, &["cat", "/sys/class/net/lan0/address"]);
    let neigh = output(&a10, &["ip", "-6", "neigh", "show", "2001:db8:c0a8:10::1"]);
    assert!(
        neigh.contains(lan_mac.trim()) && neigh.contains("router"),
        "VLAN 10's gateway is the LAN's router, by its MAC: {neigh}"
    );
    let text = trunk.stop().join("\n");
    let seen10 = in10.stop();
    assert!(
        !seen10.iter().any(|l| l.contains("2001:db8:c0a8:20:")),
        "VLAN 20's IPv6 reached VLAN 10's sandbox: {seen10:?}"
    );
    assert!(
        seen10.iter().any(|l| l.contains("2001:db8:c0a8:10::fe")),
        "positive control: VLAN 10's sandbox sees its own traffic: {seen10:?}"
    );
    let tagged = |vid: u16, what: &str| {
        text.lines()
            .any(|l| l.contains(&format!("vlan {vid},")) && l.contains(what))
    };
    assert!(
        tagged(
            10,
            "2001:db8:c0a8:10::2 > 2001:db8:c0a8:10::fe: ICMP6, echo request"
        ),
        "VLAN 10's IPv6 leaves with tag 10:\n{text}"
    );
    assert!(
        tagged(10, "neighbor solicitation, who has 2001:db8:c0a8:10::1"),
        "VLAN 10's neighbour discovery leaves with tag 10:\n{text}"
    );
    assert!(
        tagged(
            20,
            "2001:db8:c0a8:20::2 > 2001:db8:c0a8:20::1: ICMP6, echo request"
        ),
        "VLAN 20's IPv6 leaves with tag 20:\n{text}"
    );
    assert!(
        !tagged(20, "2001:db8:c0a8:10:") && !tagged(10, "2001:db8:c0a8:20:"),
        "a VLAN's IPv6 under the other's tag:\n{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains("2001:db8:c0a8:") && !l.contains("vlan ")),
        "IPv6 of a VLAN network left untagged:\n{text}"
    );

    // A sandbox of VLAN 10 that takes VLAN 20's prefix for on-link solicits VLAN 20's
    // addresses on its own VLAN: under tag 10 only, never under tag 20 nor to VLAN
    // 20's sandbox, so neither answers.
    run_ok(&[
        "ip",
        "-n",
        &a10,
        "-6",
        "route",
        "add",
        "2001:db8:c0a8:20::/64",
        "dev",
        "eth0",
    ]);
    let trunk = Capture::start(&lab, &lan_ns, "lan0", "cross6");
    let in20 = Capture::start(&lab, &a20, "eth0", "in20");
    assert!(
        !ping6(&a10, &ip6_a20, 1),
        "VLAN 10 reached VLAN 20's sandbox"
    );
    assert!(
        !ping6(&a10, "2001:db8:c0a8:20::fe", 1),
        "VLAN 10 reached VLAN 20's LAN host"
    );
    let (wire, seen20) = (trunk.stop(), in20.stop());
    let a10_mac = "02:42:c0:a8:0a:02";
    let solicited = |vid: u16, target: &str| {
        wire.iter().any(|l| {
            l.contains(&format!("{a10_mac} >"))
                && l.contains(&format!("vlan {vid},"))
                && l.contains(&format!("who has {target}"))
        })
    };
    assert!(
        solicited(10, &ip6_a20),
        "positive control: the solicitation left under tag 10: {wire:?}"
    );
    assert!(
        !wire
            .iter()
            .any(|l| l.contains(a10_mac) && l.contains("vlan 20,")),
        "VLAN 10's sandbox was heard under tag 20: {wire:?}"
    );
    assert!(
        !seen20.iter().any(|l| l.contains(a10_mac)),
        "VLAN 10's sandbox was heard in VLAN 20: {seen20:?}"
    );
}
