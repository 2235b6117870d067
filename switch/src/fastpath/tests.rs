use super::*;

#[test]
fn jumps_land_on_their_labels() {
    let maps = xdp::Maps {
        xsks: 3,
        fdb: 4,
        ports: 5,
        stats: 6,
        guard: guard::Maps {
            guarded: 9,
            allowed: 10,
            allowed6: 11,
        },
    };
    let p = xdp::program(&maps, 7, 8);
    let bytes = bpf::insn_bytes(&p);
    let at = |i: usize| &bytes[i * 8..i * 8 + 8];
    // The first bounds check jumps to the punt tail: r2 = ctx->rx_queue_index.
    let first = at(5);
    assert_eq!(first[0], 0x2d);
    let off = i16::from_le_bytes([first[2], first[3]]) as usize;
    assert_eq!(at(5 + 1 + off)[..4], [0x61, 0x62, 16, 0]);
    // The program ends with the punt's call and exit.
    assert_eq!(at(p.len() - 1)[0], 0x95);
    assert_eq!(at(p.len() - 2)[..1], [0x85]);
    assert_eq!(at(p.len() - 2)[4], FUNC_REDIRECT_MAP as u8);
}

const A: Mac = [2, 0, 0, 0, 0, 0xa];
const B: Mac = [2, 0, 0, 0, 0, 0xb];

fn frame(dst: Mac, src: Mac, ethertype: [u8; 2]) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&ethertype);
    f
}

/// The program, through the kernel's verifier, run over frames against real maps:
/// it forwards (XDP_REDIRECT) only known unicast from an installed source, and
/// counts what it forwards. Needs root (BPF), as the e2e tests do.
#[test]
fn forwards_only_known_unicast_from_its_own_sources() {
    let fp = FastPath::new().expect("create the fast path's maps (root?)");
    let xsks = bpf::map_create(bpf::BPF_MAP_TYPE_XSKMAP, 4, 4, 1, "t_xsks").unwrap();
    let (net, port, other) = (7, 1, 2);
    let prog = bpf::prog_load_xdp(&fp.program(&xsks, net, port), "t_fast")
        .expect("the verifier accepts the program");
    let run = |f: &[u8]| bpf::prog_test_run(&prog, f).expect("test run");
    let ip = [0x08, 0x00];
    let (pass, redirect) = (XDP_PASS as u32, XDP_REDIRECT as u32);

    assert_eq!(
        run(&frame(B, A, ip)),
        pass,
        "nothing installed: the worker's"
    );
    fp.install(net, A, port).unwrap();
    assert_eq!(run(&frame(B, A, ip)), pass, "unknown destination");
    fp.install(net, B, other).unwrap();
    assert_eq!(
        run(&frame(B, A, ip)),
        pass,
        "no devmap slot for the egress yet"
    );
    fp.add_port(port, 1).unwrap();
    fp.add_port(other, 1).unwrap();
    assert_eq!(
        run(&frame(B, A, ip)),
        redirect,
        "known unicast is forwarded"
    );
    assert_eq!(run(&frame([0xff; 6], A, ip)), pass, "broadcast");
    assert_eq!(run(&frame(B, A, [0x81, 0x00])), pass, "VLAN tag");
    assert_eq!(
        run(&frame(A, B, ip)),
        pass,
        "source installed on another port"
    );
    assert_eq!(run(&frame(A, A, ip)), pass, "destination on the same port");
    fp.install(net + 1, [2, 0, 0, 0, 0, 0xc], other).unwrap();
    assert_eq!(
        run(&frame([2, 0, 0, 0, 0, 0xc], A, ip)),
        pass,
        "a MAC of another network"
    );

    assert_eq!(
        fp.take_seen(net, A, port),
        Some(true),
        "A was seen as a source"
    );
    assert_eq!(
        fp.take_seen(net, A, port),
        Some(false),
        "and the mark was cleared"
    );
    assert_eq!(fp.take_seen(net, A, other), None, "not on that port");
    let rx = fp.counters(port).unwrap();
    let tx = fp.counters(other).unwrap();
    assert_eq!((rx.rx_packets, rx.rx_bytes, rx.tx_packets), (1, 64, 0));
    assert_eq!((tx.tx_packets, tx.tx_bytes, tx.rx_packets), (1, 64, 0));

    fp.remove(net, B, port); // not B's port: stays
    assert_eq!(run(&frame(B, A, ip)), redirect);
    fp.remove(net, B, other);
    assert_eq!(run(&frame(B, A, ip)), pass, "removed");
    fp.install(net, B, other).unwrap();
    fp.remove_port(other);
    assert_eq!(run(&frame(B, A, ip)), pass, "egress left the devmap");
}

/// The tc endpoint program through the verifier and over skbs on loopback (test runs
/// decide redirects without carrying them out): only known unicast from an installed
/// source is forwarded and counted; the rest is punted, never passed; a device that
/// is no endpoint gets nothing through. The trunk program loads too.
#[test]
fn tc_endpoint_forwards_known_unicast_and_punts_the_rest() {
    let fp = FastPath::new().expect("create the fast path's maps and programs (root?)");
    let (net, port, other): (NetId, PortId, PortId) = (9, 3, 4);
    let lo = 1u32;
    let ctx = |ifindex: u32| {
        let mut c = vec![0u8; 44];
        c[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        c
    };
    let progs = fp.tc_programs().expect("the verifier accepts them");
    let (ep_prog, trunk_prog) = (&progs.endpoint, &progs.trunk);
    let run = |f: &[u8]| bpf::prog_test_run_ctx(ep_prog, f, &ctx(lo)).expect("test run");
    let ip = [0x08, 0x00];
    let (shot, redirect) = (2u32, tc::TC_ACT_REDIRECT as u32);
    assert_eq!(
        run(&frame(B, A, ip)),
        shot,
        "not an endpoint: dropped, never passed"
    );
    // Only the maps: nothing is attached to any device (the test runs read the maps).
    test_endpoint(&fp, lo, net, port, lo);
    bpf::map_update(&fp.peers, port, lo).unwrap();
    let fast = || fp.counters(port).unwrap().rx_packets;
    assert_eq!(run(&frame(B, A, ip)), redirect, "punted to the trunk");
    fp.install(net, A, port).unwrap();
    fp.install(net, B, other).unwrap();
    assert_eq!(
        run(&frame(B, A, ip)),
        redirect,
        "punted: the egress has no host end"
    );
    assert_eq!(fast(), 0);
    bpf::map_update(&fp.peers, other, 77).unwrap();
    assert_eq!(run(&frame(B, A, ip)), redirect);
    assert_eq!(fast(), 1, "known unicast forwarded in the kernel");
    let tx = fp.counters(other).unwrap();
    assert_eq!((tx.tx_packets, tx.tx_bytes), (1, 64));
    for (f, why) in [
        (frame([0xff; 6], A, ip), "broadcast"),
        (frame(B, A, [0x81, 0x00]), "VLAN tag"),
        (frame(A, B, ip), "source installed on another port"),
        (frame(A, A, ip), "destination on the same port"),
    ] {
        assert_eq!(run(&f), redirect, "{why}: punted");
        assert_eq!(fast(), 1, "{why}: not forwarded in the kernel");
    }
    assert_eq!(fp.take_seen(net, A, port), Some(true));
    assert_eq!(
        bpf::prog_test_run_ctx(trunk_prog, &frame(B, A, ip), &ctx(lo)).unwrap(),
        shot,
        "an untagged frame on the trunk is dropped"
    );
    fp.detach_endpoint(lo, port);
    assert_eq!(run(&frame(B, A, ip)), shot, "detached");
}

/// Both flavours' programs for port `port` of `net`, whose source `A` is installed
/// there, sending to `B` on `other`: what each of them forwards in the kernel.
struct GuardRig {
    fp: FastPath,
    xdp: OwnedFd,
    _xsks: OwnedFd,
    port: PortId,
    /// The tc context: the endpoint's host end, loopback.
    ctx: Vec<u8>,
}

impl GuardRig {
    fn new(net: NetId, port: PortId, other: PortId) -> GuardRig {
        let fp = FastPath::new().expect("create the fast path's maps and programs (root?)");
        let xsks = bpf::map_create(bpf::BPF_MAP_TYPE_XSKMAP, 4, 4, 1, "t_xsks").unwrap();
        let xdp = bpf::prog_load_xdp(&fp.program(&xsks, net, port), "t_guard")
            .expect("the verifier accepts the program");
        fp.tc_programs().expect("the verifier accepts them");
        fp.install(net, A, port).unwrap();
        fp.install(net, B, other).unwrap();
        fp.add_port(port, 1).unwrap();
        fp.add_port(other, 1).unwrap();
        let lo = 1u32;
        test_endpoint(&fp, lo, net, port, lo);
        bpf::map_update(&fp.peers, other, 77).unwrap();
        let mut ctx = vec![0u8; 44];
        ctx[40..44].copy_from_slice(&lo.to_ne_bytes());
        GuardRig {
            fp,
            xdp,
            _xsks: xsks,
            port,
            ctx,
        }
    }

    /// XDP: XDP_REDIRECT is forwarded, XDP_PASS the socket's.
    fn xdp(&self, f: &[u8]) -> bool {
        bpf::prog_test_run(&self.xdp, f).expect("test run") == XDP_REDIRECT as u32
    }

    /// tc: forwarded when the kernel's own counters move (a punt redirects too).
    fn tc(&self, f: &[u8]) -> bool {
        let ep = &self.fp.tc_programs().expect("loaded").endpoint;
        let before = self.fp.counters(self.port).unwrap().rx_packets;
        bpf::prog_test_run_ctx(ep, f, &self.ctx).expect("test run");
        self.fp.counters(self.port).unwrap().rx_packets > before
    }

    fn both(&self, f: &[u8]) -> (bool, bool) {
        (self.xdp(f), self.tc(f))
    }
}

/// Port security in both flavours' programs: a guarded port's frames are forwarded in
/// the kernel only as IPv4 or ARP from its addresses; another source address or sender,
/// and other ethertypes, go to the worker (whose guard drops and counts what it must), and
/// lifting the guard, or changing its addresses, takes effect at once.
#[test]
fn a_guarded_port_forwards_only_ipv4_from_its_own_addresses() {
    let (net, port, other): (NetId, PortId, PortId) = (13, 7, 8);
    let from = |ip: [u8; 4]| {
        let mut f = frame(B, A, [0x08, 0x00]);
        f[14] = 0x45;
        f[26..30].copy_from_slice(&ip);
        f
    };
    let (own, vip, spoofed) = ([172, 18, 0, 2], [172, 18, 0, 100], [172, 19, 0, 2]);
    let arp = |sender: Mac, ip: [u8; 4]| {
        let mut f = frame(B, A, [0x08, 0x06]);
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f[22..28].copy_from_slice(&sender);
        f[28..32].copy_from_slice(&ip);
        f
    };
    let rig = GuardRig::new(net, port, other);
    let (fp, both) = (&rig.fp, |f: &[u8]| rig.both(f));

    assert_eq!(both(&from(spoofed)), (true, true), "unguarded: anything");
    let guard = |ips: &[[u8; 4]]| {
        let ips: Vec<_> = ips.iter().map(|ip| (*ip).into()).collect();
        PortGuard::new(&[A], &ips, &[]).expect("a guard")
    };
    let both_ips = guard(&[own, vip]);
    fp.set_guard(port, Some(&both_ips), None).unwrap();
    assert_eq!(both(&from(own)), (true, true), "its own address");
    assert_eq!(both(&from(vip)), (true, true), "an allowed extra address");
    assert_eq!(
        both(&from(spoofed)),
        (false, false),
        "another address: the worker's"
    );
    assert_eq!(both(&arp(A, own)), (true, true), "ARP from its own address");
    assert_eq!(
        both(&arp(A, spoofed)),
        (false, false),
        "ARP for another address"
    );
    assert_eq!(both(&arp(B, own)), (false, false), "ARP for another MAC");
    assert_eq!(
        both(&arp(A, [0; 4])),
        (false, false),
        "a probe: the worker's"
    );
    assert_eq!(
        both(&frame(B, A, [0x86, 0xdd])),
        (false, false),
        "not an IPv6 header (version 0): the worker's"
    );
    let short = from(own)[..30].to_vec();
    // (An skb test run refuses an IPv4 frame shorter than its header.)
    assert!(!rig.xdp(&short), "a truncated header");
    let own_only = guard(&[own]);
    fp.set_guard(port, Some(&own_only), Some(&both_ips))
        .unwrap();
    assert_eq!(
        both(&from(vip)),
        (false, false),
        "an address no longer allowed"
    );
    assert_eq!(both(&from(own)), (true, true));
    fp.set_guard(port, None, Some(&own_only)).unwrap();
    assert_eq!(both(&from(spoofed)), (true, true), "the guard lifted");
    fp.detach_endpoint(1, port);
}

/// IPv6 through a guarded port in both flavours, over frames built with `wire`: TCP,
/// UDP and echo from one of its IPv6 addresses or from its MAC's EUI-64 link-local
/// address are forwarded in the kernel; another source (another address, another MAC's
/// link-local address, one off by the universal/local bit), neighbour discovery,
/// extension headers and a bad version go to the worker; changing or lifting the guard
/// moves the `allowed6` entries with it.
#[test]
fn a_guarded_port_forwards_ipv6_only_from_its_own_addresses() {
    use crate::port_security::frames::{echo, ipv6, ndp, transport, TCP, UDP};
    use crate::port_security::link_local;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use wire::icmpv6::{NaFlags, NdpRepr};
    let (net, port, other): (NetId, PortId, PortId) = (14, 9, 10);
    let rig = GuardRig::new(net, port, other);
    let (fp, both) = (&rig.fp, |f: &[u8]| rig.both(f));
    let a6 = |s: &str| -> Ipv6Addr { s.parse().expect("address") };
    let (own, vip, spoofed) = (
        a6("fd00:0:0:1::2"),
        a6("fd00:0:0:1::100"),
        a6("fd00:0:0:2::2"),
    );
    let peer = a6("fd00:0:0:1::3");
    let udp = |src: Ipv6Addr| transport(A, B, (src, peer), UDP);
    let own4 = Ipv4Addr::new(172, 18, 0, 2);
    let ipv4 = {
        let mut f = frame(B, A, [0x08, 0x00]);
        f[14] = 0x45;
        f[26..30].copy_from_slice(&own4.octets());
        f
    };

    assert_eq!(both(&udp(spoofed)), (true, true), "unguarded: anything");
    let dual = PortGuard::new(&[A], &[own4], &[own, vip]).expect("a guard");
    fp.set_guard(port, Some(&dual), None).unwrap();
    assert_eq!(both(&udp(own)), (true, true), "UDP from its own address");
    assert_eq!(
        both(&transport(A, B, (vip, peer), TCP)),
        (true, true),
        "TCP from an allowed extra address"
    );
    assert_eq!(
        both(&udp(link_local(A))),
        (true, true),
        "from its link-local address"
    );
    assert_eq!(both(&ipv4), (true, true), "IPv4 as before");
    assert_eq!(
        both(&echo(A, B, (own, peer), false)),
        (true, true),
        "an echo request"
    );
    assert_eq!(
        both(&echo(A, B, (link_local(A), link_local(B)), true)),
        (true, true),
        "an echo reply from its link-local address"
    );
    for (f, why) in [
        (udp(spoofed), "another address"),
        (udp(link_local(B)), "another MAC's link-local address"),
        (udp(a6("fe80::1")), "a link-local address not its MAC's"),
        (
            echo(A, B, (spoofed, peer), false),
            "ping from another address",
        ),
    ] {
        assert_eq!(both(&f), (false, false), "{why}: the worker's");
    }
    // The link-local address of a MAC one byte off, for each byte the program compares.
    for i in 0..6 {
        let mut mac = A;
        mac[i] ^= 0x10;
        assert_eq!(
            both(&udp(link_local(mac))),
            (false, false),
            "a link-local address off in the MAC's byte {i}"
        );
    }
    let mut not_eui64 = link_local(A).octets();
    not_eui64[11] = 0;
    assert_eq!(
        both(&udp(Ipv6Addr::from(not_eui64))),
        (false, false),
        "no ff:fe in the middle"
    );
    let mut other_prefix = link_local(A).octets();
    other_prefix[7] = 1; // fe80:0:0:1::/64
    assert_eq!(
        both(&udp(Ipv6Addr::from(other_prefix))),
        (false, false),
        "its interface identifier under a prefix not fe80::/64"
    );
    // The universal/local bit, which EUI-64 inverts, taken as it is.
    let mut not_inverted = link_local(A).octets();
    not_inverted[8] ^= 0x02;
    assert_eq!(
        both(&udp(Ipv6Addr::from(not_inverted))),
        (false, false),
        "the MAC's bytes without the inverted bit"
    );
    // Neighbour discovery is the worker's to check, even from its own address.
    let ns = NdpRepr::NeighborSolicit {
        target: peer,
        source_lladdr: Some(A),
    };
    let na = NdpRepr::NeighborAdvert {
        flags: NaFlags::default(),
        target: own,
        target_lladdr: Some(A),
    };
    assert_eq!(both(&ndp(A, B, (own, peer), &ns)), (false, false), "NS");
    assert_eq!(both(&ndp(A, B, (own, peer), &na)), (false, false), "NA");
    // Anything behind an extension header, and a header that is not IPv6.
    let mut hbh = crate::port_security::frames::hop_by_hop(UDP).to_vec();
    hbh.extend([0x14, 0x51, 0x14, 0x51, 0, 8, 0, 0]);
    assert_eq!(
        both(&ipv6(A, B, (own, peer), 0, &hbh)),
        (false, false),
        "behind a hop-by-hop header"
    );
    let mut frag = vec![UDP, 0, 0, 1, 0, 0, 0, 9];
    frag.extend([0x14, 0x51, 0x14, 0x51, 0, 8, 0, 0]);
    assert_eq!(
        both(&ipv6(A, B, (own, peer), 44, &frag)),
        (false, false),
        "a fragment"
    );
    let mut v4 = udp(own);
    v4[14] = 0x45;
    assert_eq!(both(&v4), (false, false), "version 4 in an IPv6 frame");
    assert!(!rig.xdp(&udp(own)[..14 + 39]), "a truncated header");

    // Fewer addresses: the one dropped goes to the worker at once.
    let own_only = PortGuard::new(&[A], &[], &[own]).expect("an IPv6-only guard");
    fp.set_guard(port, Some(&own_only), Some(&dual)).unwrap();
    assert_eq!(
        both(&udp(vip)),
        (false, false),
        "an address no longer allowed"
    );
    assert_eq!(both(&udp(own)), (true, true));
    assert_eq!(both(&ipv4), (false, false), "IPv4 from an IPv6-only port");
    fp.set_guard(port, None, Some(&own_only)).unwrap();
    assert_eq!(both(&udp(spoofed)), (true, true), "the guard lifted");
    let mut v = [0u8; 4];
    for ip in [own, vip] {
        let key = guard::allowed6_key(port, ip);
        assert!(
            bpf::map_lookup_bytes(&fp.allowed6, &key, &mut v).is_err(),
            "{ip} left the map"
        );
    }
    fp.detach_endpoint(1, port);
}

/// The tc program's routed TCP branch, over a real frame: an established session's
/// packet comes out exactly as the router would send it (MACs, source address and
/// port, TTL, both checksums recomputed from scratch by etherparse for the expected
/// frame); SYN, FIN and RST, other ports and unknown sessions are left alone.
#[test]
fn tc_endpoint_translates_routed_tcp_like_the_router() {
    use etherparse::PacketBuilder;
    let fp = FastPath::new().expect("create the fast path's maps and programs (root?)");
    let ep_prog = &fp.tc_programs().expect("the verifier accepts it").endpoint;
    let (net, port): (NetId, PortId) = (11, 5);
    let lo = 1u32;
    test_endpoint(&fp, lo, net, port, lo);
    fp.install(net, A, port).unwrap();
    let gw_mac: Mac = [2, 0x42, 172, 18, 0, 1];
    let (hop, uplink): (Mac, Mac) = ([2, 0, 0, 0, 0, 0x99], [2, 0, 0, 0, 0, 0x55]);
    let tcp = |src: Mac, dst: Mac, from: ([u8; 4], u16), ttl: u8, syn: bool| {
        let b = PacketBuilder::ethernet2(src, dst)
            .ipv4(from.0, [198, 51, 100, 1], ttl)
            .tcp(from.1, 5201, 1000, 64000)
            .ack(7);
        let b = if syn { b.syn() } else { b };
        let payload = [0xabu8; 100];
        let mut f = Vec::new();
        b.write(&mut f, &payload).unwrap();
        f
    };
    let orig = tcp(A, gw_mac, ([172, 18, 0, 2], 40000), 64, false);
    let want = tcp(uplink, hop, ([198, 51, 100, 2], 1024), 63, false);
    let mut key: NatKey = [0; 16];
    key[..4].copy_from_slice(&port.to_ne_bytes());
    key[4..16].copy_from_slice(&orig[26..38]);
    let mut v: NatValue = [0; NAT_VALUE_LEN];
    v[..6].copy_from_slice(&hop);
    v[6..12].copy_from_slice(&uplink);
    v[12..16].copy_from_slice(&[198, 51, 100, 2]);
    v[16..18].copy_from_slice(&1024u16.to_be_bytes());
    v[20..24].copy_from_slice(&7u32.to_ne_bytes());
    let ctx = {
        let mut c = vec![0u8; 44];
        c[40..44].copy_from_slice(&lo.to_ne_bytes());
        c
    };
    let run = |f: &[u8]| bpf::prog_test_run_out(ep_prog, f, &ctx).expect("test run");
    let redirect = tc::TC_ACT_REDIRECT as u32;

    let (verdict, out) = run(&orig);
    assert_eq!(
        (verdict, &out[..]),
        (redirect, &orig[..]),
        "no session: punted untouched"
    );
    fp.nat_install(NatDir::Out, &key, &v).unwrap();
    let (verdict, out) = run(&orig);
    assert_eq!(verdict, redirect);
    assert_eq!(out, want, "translated as the router does, byte for byte");
    assert_eq!(fp.nat_take_seen(NatDir::Out, &key), Some(true));
    assert_eq!(fp.counters(port).unwrap().rx_packets, 1);

    let syn_ack = tcp(A, gw_mac, ([172, 18, 0, 2], 40000), 64, true);
    let want = tcp(uplink, hop, ([198, 51, 100, 2], 1024), 63, true);
    assert_eq!(
        run(&syn_ack).1,
        want,
        "the SYN+ACK of a session the uplink opened"
    );
    let mut syn = syn_ack.clone();
    syn[47] &= !0x10; // no ACK: a new connection (punted before any checksum matters)
    assert_eq!(run(&syn).1, syn, "a SYN is the router's");
    let mut fin = orig.clone();
    fin[47] |= 0x01;
    assert_eq!(run(&fin).1, fin, "a FIN is the router's");
    let mut other = orig.clone();
    other[35] ^= 1; // another source port: another session
    assert_eq!(run(&other).1, other, "an unknown session is the router's");
    let ttl1 = tcp(A, gw_mac, ([172, 18, 0, 2], 40000), 1, false);
    assert_eq!(
        run(&ttl1).1,
        ttl1,
        "TTL 1: the router answers time exceeded"
    );
    fp.nat_remove(NatDir::Out, &key);
    assert_eq!(run(&orig).1, orig, "removed");
    fp.remove(net, A, port);
}

/// The uplink's inbound NAT program, over a real frame: a reply of a session in
/// `nat_in` comes out translated back exactly (MACs, destination address and port,
/// TTL, checksums as etherparse computes them from scratch) and is redirected to the
/// endpoint; without the session, or without a redirect target, it is left alone for
/// the AF_XDP socket.
#[test]
fn uplink_translates_replies_back_like_the_router() {
    let fp = FastPath::new().expect("create the fast path's maps (root?)");
    let xsks = bpf::map_create(bpf::BPF_MAP_TYPE_XSKMAP, 4, 4, 1, "t_xsks").unwrap();
    let prog = bpf::prog_load_xdp(&fp.nat_in_program(&xsks), "t_nat_in")
        .expect("the verifier accepts the program");
    let port: PortId = 6;
    let (ep_mac, up_mac, out_mac): (Mac, Mac, Mac) = (
        [2, 0x42, 172, 18, 0, 2],
        [2, 0, 0, 0, 0, 0x55],
        [2, 0, 0, 0, 0, 0x99],
    );
    let case = super::test_frames::inbound_case(out_mac, up_mac, ep_mac, port);
    let (reply, want, fin, key, v) = (case.reply, case.want, case.fin, case.key, case.value);
    let run = |f: &[u8]| bpf::prog_test_run_out(&prog, f, &[]).expect("test run");
    let (pass, redirect) = (XDP_PASS as u32, XDP_REDIRECT as u32);

    assert_eq!(
        run(&reply),
        (pass, reply.clone()),
        "no session: the socket's"
    );
    fp.nat_install(NatDir::In, &key, &v).unwrap();
    assert_eq!(
        run(&reply),
        (pass, reply.clone()),
        "no redirect target: untouched"
    );
    fp.add_port(port, 1).unwrap();
    let (verdict, out) = run(&reply);
    assert_eq!(verdict, redirect);
    assert_eq!(
        out, want,
        "translated back as the router does, byte for byte"
    );
    assert_eq!(fp.nat_take_seen(NatDir::In, &key), Some(true));
    assert_eq!(fp.counters(port).unwrap().tx_packets, 1);
    assert_eq!(run(&fin), (pass, fin.clone()), "a FIN is the router's");
    // The same reply from a sender with checksum offload: its TCP checksum is the
    // pseudo-header seed, for the router to finish, not to be translated here.
    let mut partial = reply.clone();
    let (src, dst) = (&partial[26..30], &partial[30..34]);
    let tcp_len = usize::from(u16::from_be_bytes([partial[16], partial[17]])) - 20;
    let seed = wire::checksum::fold(wire::checksum::pseudo_header(
        src.try_into().unwrap(),
        dst.try_into().unwrap(),
        6,
        tcp_len,
    ));
    partial[50..52].copy_from_slice(&seed.to_be_bytes());
    assert_eq!(
        run(&partial),
        (pass, partial.clone()),
        "an unfinished checksum: the socket's"
    );
    fp.nat_remove(NatDir::In, &key);
    assert_eq!(run(&reply), (pass, reply.clone()), "removed");
}

#[test]
fn key_layout() {
    let k = key(0x0102_0304, [2, 0, 0, 0, 0, 9]);
    assert_eq!(&k[..4], &0x0102_0304u32.to_ne_bytes());
    assert_eq!(&k[4..], &[2, 0, 0, 0, 0, 9, 0, 0]);
}
