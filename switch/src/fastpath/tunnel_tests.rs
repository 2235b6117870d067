//! The overlay and tc-uplink programs through the verifier and over real frames
//! (BPF_PROG_TEST_RUN decides redirects without carrying them out): encapsulation
//! byte-exact against the vxlan crate's VTEP, decapsulation back to the inner frame,
//! and the uplink's inbound NAT against etherparse.

use super::asm::{Asm, LDX_W, MOV_REG};
use super::*;
use std::net::Ipv4Addr;

const A: Mac = [2, 0, 0, 0, 0, 0xa];
const B: Mac = [2, 0, 0, 0, 0, 0xb];
const UP_MAC: Mac = [2, 0, 0, 0, 0, 0x55];
const HOP_MAC: Mac = [2, 0, 0, 0, 0, 0x99];
const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
const VNI: u32 = 4242;

fn udp_frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(src, dst)
        .ipv4([172, 31, 0, 2], [172, 31, 0, 3], 64)
        .udp(4000, 5000);
    let mut f = Vec::new();
    b.write(&mut f, &vec![0x6b; len]).unwrap();
    f
}

/// What the crate's VTEP sends for `inner` from `from` to `to`.
fn encapsulated(inner: &[u8], from: Ipv4Addr, to: Ipv4Addr, src_mac: Mac, hop: Mac) -> Vec<u8> {
    let mut vtep = vxlan::Vtep::new(vxlan::VtepConfig::new(src_mac, from));
    let mut out = vec![0u8; 2048];
    let n = vtep
        .encapsulate(vxlan::Vni::new(VNI).unwrap(), to, hop, inner, &mut out)
        .unwrap();
    out.truncate(n);
    out
}

fn ctx(ifindex: u32) -> Vec<u8> {
    let mut c = vec![0u8; 44];
    c[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    c
}

/// An endpoint frame for a MAC behind a VTEP comes out as the crate's VTEP would send
/// it (all but the UDP source port, which the program takes from the skb's flow hash),
/// counted on the endpoint and the uplink; one too big for the underlay, or without an
/// entry, is punted untouched.
#[test]
fn endpoint_encapsulates_like_the_vtep() {
    let fp = FastPath::new().expect("create the fast path's maps and programs (root?)");
    let prog = &fp
        .tc_programs()
        .expect("the verifier accepts them")
        .endpoint;
    let (net, port, uplink_port, lo): (NetId, PortId, PortId, u32) = (21, 8, 9, 1);
    test_endpoint(&fp, lo, net, port, lo);
    fp.install(net, A, port).unwrap();
    for p in [port, uplink_port] {
        let zero = vec![0u8; STATS_LEN * fp.cpus];
        bpf::map_update_bytes(&fp.stats, &p.to_ne_bytes(), &zero).unwrap();
    }
    let inner = udp_frame(B, A, 200);
    let want = encapsulated(&inner, LOCAL, REMOTE, UP_MAC, HOP_MAC);
    let run = |f: &[u8]| bpf::prog_test_run_out(prog, f, &ctx(lo)).expect("test run");
    let redirect = tc::TC_ACT_REDIRECT as u32;
    assert_eq!(
        run(&inner),
        (redirect, inner.clone()),
        "no entry: punted untouched"
    );

    // The router's template: the headers it sends to that VTEP, any frame's.
    let other = udp_frame(B, A, 17);
    let tmpl = encapsulated(&other, LOCAL, REMOTE, UP_MAC, HOP_MAC);
    fp.vxlan_install(net, B, &vxlan_value(&tmpl, 77, uplink_port))
        .unwrap();
    let (verdict, mut out) = run(&inner);
    assert_eq!(verdict, redirect);
    assert_eq!(out.len(), want.len());
    let sport = u16::from_be_bytes([out[34], out[35]]);
    assert!(sport >= 49152, "source port {sport} in the dynamic range");
    out[34..36].copy_from_slice(&want[34..36]);
    assert_eq!(out, want, "encapsulated as the VTEP does, byte for byte");
    assert_eq!(fp.vxlan_take_seen(net, B), Some(true));
    assert_eq!(fp.vxlan_take_seen(net, B), Some(false));
    let (rx, tx) = (
        fp.counters(port).unwrap(),
        fp.counters(uplink_port).unwrap(),
    );
    assert_eq!((rx.rx_packets, rx.rx_bytes), (1, inner.len() as u64));
    assert_eq!((tx.tx_packets, tx.tx_bytes), (1, inner.len() as u64));

    let big = udp_frame(B, A, 1500 - 36 - 14 - 28 + 1);
    assert_eq!(
        run(&big),
        (redirect, big.clone()),
        "too big for the underlay: the router's"
    );
    fp.vxlan_remove(net, B);
    assert_eq!(run(&inner), (redirect, inner.clone()), "removed");
}

fn udp6_frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(src, dst)
        .ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            [0x20, 1, 0xd, 0xb8, 0, 0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3],
            64,
        )
        .udp(4000, 5000);
    let mut f = Vec::new();
    b.write(&mut f, &vec![0x6b; len]).unwrap();
    f
}

/// An IPv6 frame for a MAC behind a VTEP is encapsulated as the crate's VTEP does it
/// (EtherType 0x86dd inside, outer IPv4), up to 1450 bytes of IPv6 (a 1464-byte inner
/// frame); one byte more, or no entry, is punted untouched (the router answers Packet
/// Too Big).
#[test]
fn endpoint_encapsulates_ipv6_like_the_vtep() {
    let fp = FastPath::new().expect("create the fast path's maps and programs (root?)");
    let prog = &fp
        .tc_programs()
        .expect("the verifier accepts them")
        .endpoint;
    let (net, port, uplink_port, lo): (NetId, PortId, PortId, u32) = (23, 8, 9, 1);
    test_endpoint(&fp, lo, net, port, lo);
    fp.install(net, A, port).unwrap();
    for p in [port, uplink_port] {
        let zero = vec![0u8; STATS_LEN * fp.cpus];
        bpf::map_update_bytes(&fp.stats, &p.to_ne_bytes(), &zero).unwrap();
    }
    let run = |f: &[u8]| bpf::prog_test_run_out(prog, f, &ctx(lo)).expect("test run");
    let redirect = tc::TC_ACT_REDIRECT as u32;
    let small = udp6_frame(B, A, 100);
    assert_eq!(run(&small), (redirect, small.clone()), "no entry: punted");
    let tmpl = encapsulated(&udp_frame(B, A, 17), LOCAL, REMOTE, UP_MAC, HOP_MAC);
    fp.vxlan_install(net, B, &vxlan_value(&tmpl, 77, uplink_port))
        .unwrap();
    let largest = 1450 - 40 - 8;
    for inner in [small, udp6_frame(B, A, largest)] {
        let want = encapsulated(&inner, LOCAL, REMOTE, UP_MAC, HOP_MAC);
        let (verdict, mut out) = run(&inner);
        assert_eq!(verdict, redirect);
        assert_eq!(out.len(), want.len());
        assert!(u16::from_be_bytes([out[34], out[35]]) >= 49152);
        out[34..36].copy_from_slice(&want[34..36]);
        assert_eq!(
            out,
            want,
            "{} bytes, as the VTEP does, byte for byte",
            inner.len()
        );
        assert_eq!(&out[62..64], &[0x86, 0xdd], "IPv6 inside");
    }
    assert_eq!(fp.vxlan_take_seen(net, B), Some(true));
    let tx = fp.counters(uplink_port).unwrap();
    assert_eq!(tx.tx_packets, 2);
    let big = udp6_frame(B, A, largest + 1);
    assert_eq!(
        run(&big),
        (redirect, big.clone()),
        "too big for the underlay: the router's"
    );
    assert_eq!(fp.counters(uplink_port).unwrap().tx_packets, 2);
    fp.vxlan_remove(net, B);
}

/// A frame of `ethertype` whose IP header is `ip` (at least the fixed part), then a
/// transport header whose byte 12 is `doff_byte` (TCP's data offset), then zeros.
fn seg(ethertype: u16, ip: &[u8], doff_byte: u8) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend(ethertype.to_be_bytes());
    f.extend(ip);
    let l4 = f.len();
    f.resize(l4 + 64, 0);
    f[l4 + 12] = doff_byte;
    f
}

fn ipv4_hdr(proto: u8, ihl: u8) -> Vec<u8> {
    let mut h = vec![0u8; usize::from(ihl) * 4];
    h[0] = 0x40 | ihl;
    h[9] = proto;
    h
}

fn ipv6_hdr(next_header: u8) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[6] = next_header;
    h
}

/// The GSO size rule through the verifier: a segment fits when its Ethernet, IP and
/// transport headers (TCP's options counted from its data offset, UDP's 8 bytes) and
/// the segment size are at most 1464 bytes, the inner frame a 1500-byte underlay
/// carries; IPv4 options, IPv6 extension headers and other transports are the router's.
#[test]
fn gso_segments_must_fit_the_underlay() {
    let mut a = Asm::default();
    let (ok, no) = (a.label(), a.label());
    a.op(MOV_REG, 6, 1, 0, 0);
    a.op(LDX_W, 4, 6, 176, 0); // gso_size
    tunnel::segments_fit(&mut a, ok, no);
    a.bind(ok);
    a.ret(1);
    a.bind(no);
    a.ret(0);
    let prog = bpf::prog_load_tc(&a.finish(), "vsw_test_gso").expect("the verifier accepts it");
    let fits = |frame: &[u8], gso_size: u32| {
        let mut c = vec![0u8; 180];
        c[40..44].copy_from_slice(&1u32.to_ne_bytes());
        c[176..180].copy_from_slice(&gso_size.to_ne_bytes());
        bpf::prog_test_run_ctx(&prog, frame, &c).expect("test run") == 1
    };
    let (v4, v6) = (0x0800, 0x86dd);
    let tcp4 = seg(v4, &ipv4_hdr(6, 5), 5 << 4);
    let tcp4_ts = seg(v4, &ipv4_hdr(6, 5), 8 << 4);
    let udp4 = seg(v4, &ipv4_hdr(17, 5), 0);
    let tcp6_ts = seg(v6, &ipv6_hdr(6), 8 << 4);
    let udp6 = seg(v6, &ipv6_hdr(17), 0);
    for (frame, largest, what) in [
        (&tcp4, 1464 - 14 - 20 - 20, "IPv4 TCP"),
        (&tcp4_ts, 1464 - 14 - 20 - 32, "IPv4 TCP with timestamps"),
        (&udp4, 1464 - 14 - 20 - 8, "IPv4 UDP"),
        (&tcp6_ts, 1464 - 14 - 40 - 32, "IPv6 TCP with timestamps"),
        (&udp6, 1464 - 14 - 40 - 8, "IPv6 UDP"),
    ] {
        assert!(fits(frame, largest), "{what}: {largest} fits");
        assert!(
            !fits(frame, largest + 1),
            "{what}: {} does not",
            largest + 1
        );
    }
    for (frame, what) in [
        (seg(v4, &ipv4_hdr(6, 6), 5 << 4), "IPv4 options"),
        (seg(v4, &ipv4_hdr(47, 5), 0), "GRE"),
        (seg(v6, &ipv6_hdr(0), 5 << 4), "a hop-by-hop header"),
        (seg(v6, &ipv6_hdr(58), 0), "ICMPv6"),
        (
            tcp6_ts[..14 + 40 + 12].to_vec(),
            "TCP's data offset past the linear part",
        ),
    ] {
        assert!(!fits(&frame, 500), "{what}: the router's");
    }
}

/// The tc uplink of these tests: on `lo`, port `up_port`, punting to `trunk`.
fn test_uplink(up_port: PortId, trunk: u32, lo: u32) -> TcUplink {
    TcUplink {
        ifindex: lo,
        port: up_port,
        trunk_ifindex: trunk,
        mac: UP_MAC,
        vtep: LOCAL,
        shared: None,
    }
}

fn uplink_ctx(fp: &FastPath, up_port: PortId, trunk: u32, lo: u32) {
    let u = test_uplink(up_port, trunk, lo);
    bpf::map_update(&fp.peers, up_port, lo | uplink::EGRESS).unwrap();
    fp.set_uplink_cfg(&u, 0).unwrap();
    for p in [up_port, 12, 13] {
        let zero = vec![0u8; STATS_LEN * fp.cpus];
        bpf::map_update_bytes(&fp.stats, &p.to_ne_bytes(), &zero).unwrap();
    }
}

/// VXLAN from a known VTEP for a local endpoint comes out as the inner frame (the
/// outer Ethernet header's place taken by the inner MACs), redirected and counted; an
/// unknown VNI, a source learned behind another VTEP, a destination that is no local
/// endpoint, or a captured uplink punt it to the worker untouched.
#[test]
fn uplink_decapsulates_for_local_endpoints() {
    let fp = FastPath::new().expect("create the fast path's maps and programs (root?)");
    let prog = &fp.tc_programs().expect("the verifier accepts them").uplink;
    let (net, up_port, ep_port, lo, trunk): (NetId, PortId, PortId, u32, u32) = (22, 12, 13, 1, 1);
    uplink_ctx(&fp, up_port, trunk, lo);
    let inner = udp_frame(B, A, 300);
    let frame = encapsulated(&inner, REMOTE, LOCAL, HOP_MAC, UP_MAC);
    let run = |f: &[u8]| bpf::prog_test_run_out(prog, f, &ctx(lo)).expect("test run");
    let redirect = tc::TC_ACT_REDIRECT as u32;
    let delivered = || fp.counters(ep_port).unwrap().tx_packets;
    assert_eq!(
        run(&frame),
        (redirect, frame.clone()),
        "unknown VNI: punted"
    );
    fp.set_vni(VNI, Some(net));
    assert_eq!(
        run(&frame),
        (redirect, frame.clone()),
        "unknown destination: punted"
    );
    fp.install(net, B, ep_port).unwrap();
    bpf::map_update(&fp.peers, ep_port, 55).unwrap();
    assert_eq!(
        run(&frame),
        (redirect, frame.clone()),
        "unknown source: punted (the router learns it)"
    );
    // The source is known behind another VTEP: still the router's.
    let elsewhere = encapsulated(&inner, LOCAL, Ipv4Addr::new(10, 200, 0, 9), UP_MAC, HOP_MAC);
    fp.vxlan_install(net, A, &vxlan_value(&elsewhere, 1, up_port))
        .unwrap();
    assert_eq!(
        run(&frame),
        (redirect, frame.clone()),
        "source behind another VTEP: punted"
    );
    assert_eq!(delivered(), 0);
    let back = encapsulated(&inner, LOCAL, REMOTE, UP_MAC, HOP_MAC);
    fp.vxlan_install(net, A, &vxlan_value(&back, 1, up_port))
        .unwrap();
    assert_eq!(
        run(&frame),
        (redirect, inner.clone()),
        "decapsulated to the inner frame"
    );
    assert_eq!(delivered(), 1);
    assert_eq!(fp.counters(up_port).unwrap().rx_packets, 1);
    assert_eq!(
        fp.vxlan_take_seen(net, A),
        Some(true),
        "the remote source was seen"
    );
    // IPv6 inside stays the router's (the uplink program takes inner IPv4 only).
    let v6 = encapsulated(&udp6_frame(B, A, 300), REMOTE, LOCAL, HOP_MAC, UP_MAC);
    assert_eq!(run(&v6), (redirect, v6.clone()), "IPv6 inside: punted");
    assert_eq!(delivered(), 1);

    let mut csum = frame.clone();
    csum[40] = 0x12; // an outer UDP checksum: the router verifies it
    assert_eq!(run(&csum), (redirect, csum.clone()));
    let mut other_mac = frame.clone();
    other_mac[5] ^= 1;
    assert_eq!(
        run(&other_mac),
        (redirect, other_mac.clone()),
        "not for the uplink's MAC"
    );
    let u = test_uplink(up_port, trunk, lo);
    fp.set_uplink_cfg(&u, uplink::CFG_PUNT_ALL).unwrap();
    assert_eq!(
        run(&frame),
        (redirect, frame.clone()),
        "captured: everything punted"
    );
    assert_eq!(delivered(), 1);
    fp.set_uplink_cfg(&u, 0).unwrap();
    fp.set_vni(VNI, None);
    assert_eq!(run(&frame), (redirect, frame.clone()), "VNI gone");
}

/// The tc uplink's inbound NAT: a reply of a kernel session comes out translated back
/// exactly as etherparse builds the expected frame; a FIN is the router's.
#[test]
fn uplink_translates_replies_back_on_skbs() {
    let fp = FastPath::new().expect("create the fast path's maps and programs (root?)");
    let prog = &fp.tc_programs().expect("the verifier accepts them").uplink;
    let (up_port, ep_port, lo): (PortId, PortId, u32) = (12, 13, 1);
    uplink_ctx(&fp, up_port, 1, lo);
    let case = super::test_frames::inbound_case(HOP_MAC, UP_MAC, A, ep_port);
    let (reply, want, fin, key, v) = (case.reply, case.want, case.fin, case.key, case.value);
    let run = |f: &[u8]| bpf::prog_test_run_out(prog, f, &ctx(lo)).expect("test run");
    let redirect = tc::TC_ACT_REDIRECT as u32;
    assert_eq!(run(&reply), (redirect, reply.clone()), "no session: punted");
    fp.nat_install(NatDir::In, &key, &v).unwrap();
    assert_eq!(
        run(&reply),
        (redirect, reply.clone()),
        "no host end: punted"
    );
    bpf::map_update(&fp.peers, ep_port, 55).unwrap();
    assert_eq!(
        run(&reply),
        (redirect, want),
        "translated back, byte for byte"
    );
    assert_eq!(fp.nat_take_seen(NatDir::In, &key), Some(true));
    assert_eq!(fp.counters(ep_port).unwrap().tx_packets, 1);
    assert_eq!(run(&fin), (redirect, fin.clone()), "a FIN is the router's");
    fp.nat_remove(NatDir::In, &key);
}

/// The tc uplink opens a published port's session from its SYN: both halves in the
/// maps (the reply toward the MAC the SYN came from), the SYN translated as the NAT
/// does (etherparse builds the expected frame), a copy on the trunk for the router;
/// the endpoint program then carries the SYN+ACK out. A SYN for a session already
/// there, to a port not published, or on a captured uplink is punted untouched.
#[test]
fn uplink_opens_published_sessions_from_the_syn() {
    use crate::port::lab::{self, RawSock};
    use etherparse::PacketBuilder;
    let ns = lab::netns();
    ns.veth("t0", "t1");
    ns.run(|| {
        let fp = FastPath::new().expect("create the fast path's maps and programs (root?)");
        let progs = fp.tc_programs().expect("the verifier accepts them");
        let (up_port, ep_port, lo): (PortId, PortId, u32) = (12, 13, 1);
        let trunk = bpf::ifindex("t0").unwrap();
        uplink_ctx(&fp, up_port, trunk, lo);
        bpf::map_update(&fp.peers, ep_port, 55).unwrap();
        let sink = RawSock::open("t1").unwrap();
        let gw_mac = super::test_frames::GW_MAC;
        type Addr = ([u8; 4], u16);
        let (remote, public, inside): (Addr, Addr, Addr) = (
            ([198, 51, 100, 1], 40000),
            ([198, 51, 100, 2], 8080),
            ([172, 18, 0, 2], 80),
        );
        let tcp =
            |src: Mac, dst: Mac, from: ([u8; 4], u16), to: ([u8; 4], u16), ttl: u8, ack: bool| {
                let b = PacketBuilder::ethernet2(src, dst)
                    .ipv4(from.0, to.0, ttl)
                    .tcp(from.1, to.1, 1000, 64000)
                    .syn();
                let b = if ack { b.ack(1001) } else { b };
                let mut f = Vec::new();
                b.write(&mut f, &[]).unwrap();
                f
            };
        let syn = tcp(HOP_MAC, UP_MAC, remote, public, 64, false);
        let run =
            |prog: &OwnedFd, f: &[u8]| bpf::prog_test_run_out(prog, f, &ctx(lo)).expect("test run");
        let redirect = tc::TC_ACT_REDIRECT as u32;
        assert_eq!(
            run(&progs.uplink, &syn),
            (redirect, syn.clone()),
            "not published: punted"
        );

        let mut key: PublishedKey = [0; 8];
        key[..4].copy_from_slice(&public.0);
        key[4..6].copy_from_slice(&public.1.to_be_bytes());
        key[6] = 6;
        let mut v: NatValue = [0; NAT_VALUE_LEN];
        v[..6].copy_from_slice(&A);
        v[6..12].copy_from_slice(&gw_mac);
        v[12..16].copy_from_slice(&inside.0);
        v[16..18].copy_from_slice(&inside.1.to_be_bytes());
        v[20..24].copy_from_slice(&ep_port.to_ne_bytes());
        fp.published_install(&key, &v).unwrap();
        let want = tcp(gw_mac, A, remote, inside, 63, false);
        assert_eq!(
            run(&progs.uplink, &syn),
            (redirect, want),
            "translated, byte for byte"
        );
        let mut in_key: NatKey = [0; 16];
        in_key[..12].copy_from_slice(&syn[26..38]);
        assert_eq!(
            fp.nat_value(NatDir::In, &in_key),
            Some(v),
            "the inbound half"
        );
        assert_eq!(
            fp.nat_take_seen(NatDir::In, &in_key),
            Some(false),
            "a SYN is no sign of use"
        );
        let mut out_key: NatKey = [0; 16];
        out_key[..4].copy_from_slice(&ep_port.to_ne_bytes());
        out_key[4..8].copy_from_slice(&inside.0);
        out_key[8..12].copy_from_slice(&remote.0);
        out_key[12..14].copy_from_slice(&inside.1.to_be_bytes());
        out_key[14..16].copy_from_slice(&remote.1.to_be_bytes());
        let mut out_v: NatValue = [0; NAT_VALUE_LEN];
        out_v[..6].copy_from_slice(&HOP_MAC);
        out_v[6..12].copy_from_slice(&UP_MAC);
        out_v[12..16].copy_from_slice(&public.0);
        out_v[16..18].copy_from_slice(&public.1.to_be_bytes());
        out_v[20..24].copy_from_slice(&lo.to_ne_bytes());
        assert_eq!(
            fp.nat_value(NatDir::Out, &out_key),
            Some(out_v),
            "the outbound half"
        );
        let copy = sink.recv(std::time::Duration::from_secs(2)).unwrap();
        assert_eq!(
            copy.as_deref(),
            Some(&syn[..]),
            "the router's copy, untranslated"
        );

        assert_eq!(
            run(&progs.uplink, &syn),
            (redirect, syn.clone()),
            "already open: the router's"
        );
        // The endpoint's SYN+ACK leaves translated by the endpoint program.
        test_endpoint(&fp, lo, 21, ep_port, trunk);
        fp.install(21, A, ep_port).unwrap();
        let syn_ack = tcp(A, gw_mac, inside, remote, 64, true);
        let want = tcp(UP_MAC, HOP_MAC, public, remote, 63, true);
        assert_eq!(
            run(&progs.endpoint, &syn_ack),
            (redirect, want),
            "the SYN+ACK, translated"
        );
        assert_eq!(fp.nat_take_seen(NatDir::Out, &out_key), Some(true));

        fp.nat_remove(NatDir::In, &in_key);
        fp.nat_remove(NatDir::Out, &out_key);
        let u = test_uplink(up_port, trunk, lo);
        fp.set_uplink_cfg(&u, uplink::CFG_PUNT_ALL).unwrap();
        assert_eq!(
            run(&progs.uplink, &syn),
            (redirect, syn.clone()),
            "captured: punted"
        );
        assert_eq!(
            fp.nat_value(NatDir::In, &in_key),
            None,
            "and nothing opened"
        );
        fp.published_remove(&key);
    });
}
