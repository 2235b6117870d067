//! Tests across the modules: byte-exact against the Linux kernel's own vxlan device
//! (testdata/kernel_vxlan_capture.txt, made by testdata/capture_kernel_vxlan.sh),
//! round trips, every refusal, the source-port hash, the tunnel table, and the fuzz
//! body over a few thousand mutated frames.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::wire::{OuterRepr, OUTER_LEN};
use crate::*;

const KERNEL_A_MAC: Mac = [0x02, 0x00, 0x0a, 0xc8, 0x00, 0x01];
const KERNEL_B_MAC: Mac = [0x02, 0x00, 0x0a, 0xc8, 0x00, 0x02];
const VTEP_A: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const VTEP_B: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

/// The captured frame: the `eth` line, then tcpdump's hex of the IPv4 packet.
fn kernel_frame() -> Vec<u8> {
    let text = include_str!("../testdata/kernel_vxlan_capture.txt");
    let mut hex = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("eth ") {
            hex.push_str(rest);
        } else if line.starts_with("0x") {
            if let Some((_, rest)) = line.split_once(':') {
                hex.push_str(rest);
            }
        }
    }
    let hex: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("fixture is hex"))
        .collect()
}

fn vni(v: u32) -> Vni {
    Vni::new(v).expect("valid VNI")
}

fn vtep_b() -> Vtep {
    Vtep::new(VtepConfig::new(KERNEL_B_MAC, VTEP_B))
}

/// An inner Ethernet frame: IPv4 UDP from `sport` to `dport`.
fn inner_udp(src_mac: Mac, sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xbb];
    f.extend(src_mac);
    f.extend([0x08, 0x00]);
    let total = (20 + 8 + payload) as u16;
    let tl = total.to_be_bytes();
    f.extend([0x45, 0, tl[0], tl[1], 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend([172, 16, 42, 1, 172, 16, 42, 2]);
    f.extend(sport.to_be_bytes());
    f.extend(dport.to_be_bytes());
    f.extend(((8 + payload) as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend(std::iter::repeat_n(0x5a, payload));
    f
}

/// An IPv6/UDP frame from port `sport` to 2001:db8::2 port 80.
fn inner_udp6(sport: u16, hop_limit: u8, payload: usize) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xbb, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
    let len = ((8 + payload) as u16).to_be_bytes();
    f.extend([0x60, 0, 0, 0, len[0], len[1], 17, hop_limit]);
    f.extend([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend(sport.to_be_bytes());
    f.extend(80u16.to_be_bytes());
    f.extend(len);
    f.extend([0, 0]);
    f.extend(std::iter::repeat_n(0x5a, payload));
    f
}

#[test]
fn decapsulates_the_kernels_frame() {
    let frame = kernel_frame();
    assert_eq!(frame.len(), 14 + 0x86);
    let Decap::Frame(d) = vtep_b().decapsulate(&frame) else {
        panic!("the kernel's frame is VXLAN for 10.200.0.2");
    };
    assert_eq!(d.vni.get(), 42);
    assert_eq!(d.outer_src, VTEP_A);
    assert_eq!(d.outer_src_mac, KERNEL_A_MAC);
    assert_eq!(d.inner, &frame[OUTER_LEN..]);
    // Inner: 02:00:ac:10:2a:01 -> 02:00:ac:10:2a:02, IPv4 ICMP echo request.
    assert_eq!(
        d.inner[..14],
        [2, 0, 0xac, 0x10, 0x2a, 2, 2, 0, 0xac, 0x10, 0x2a, 1, 8, 0]
    );
    assert_eq!(d.inner[14 + 9], 1, "ICMP");
    assert_eq!(d.inner[14 + 20], 8, "echo request");
    // The kernel sent a UDP checksum (udpcsum is its default); it verified.
    assert_ne!(frame[14 + 20 + 6..14 + 20 + 8], [0, 0]);
    // Not for the other end.
    assert_eq!(
        Vtep::new(VtepConfig::new(KERNEL_A_MAC, VTEP_A)).decapsulate(&frame),
        Decap::Pass(PassReason::NotForUs)
    );
}

#[test]
fn encapsulation_matches_the_kernels_outer_headers() {
    let frame = kernel_frame();
    let inner = &frame[OUTER_LEN..];
    let kernel = OuterRepr::parse(&frame).expect("the kernel's layout is emit's layout");
    // What the kernel chose: DF (df set), TTL 64, its ephemeral port range.
    assert!(kernel.dont_fragment);
    assert_eq!(kernel.ttl, 64);
    assert_eq!(kernel.src_port, 49200);
    assert!(
        (32768..=60999).contains(&kernel.src_port),
        "ip_local_port_range"
    );

    let mut cfg = VtepConfig::new(KERNEL_A_MAC, VTEP_A);
    cfg.udp_checksum = true; // as the kernel's default udpcsum
    let mut a = Vtep::new(cfg);
    let mut out = [0u8; 1514];
    let n = a
        .encapsulate(vni(42), VTEP_B, KERNEL_B_MAC, inner, &mut out)
        .expect("fits");
    assert_eq!(n, frame.len());
    let ours = OuterRepr::parse(&out[..n]).expect("parses back");
    // The source port comes from a different hash (Linux: the flow dissector's jhash
    // with a boot-time random seed, into 32768-60999; here: a fixed hash into the
    // RFC 7348 range) and the IP ID is a per-VTEP counter: everything else is equal.
    assert!((49152..=65535).contains(&ours.src_port));
    assert_eq!(
        OuterRepr {
            src_port: kernel.src_port,
            ip_id: kernel.ip_id,
            udp_checksum: kernel.udp_checksum,
            ..ours
        },
        kernel
    );
    // Byte for byte, once the kernel's port and ID are used (the IPv4 and UDP checksums
    // then come out as the kernel's, so both computations agree with Linux).
    let mut same = kernel;
    same.udp_checksum = 0;
    let mut again = vec![0u8; n];
    same.emit(&mut again);
    again[OUTER_LEN..].copy_from_slice(inner);
    fill_udp_checksum(&mut again);
    assert_eq!(again, frame);
    // And without the UDP checksum (our default) only those two bytes differ.
    let mut plain = Vtep::new(VtepConfig::new(KERNEL_A_MAC, VTEP_A));
    let m = plain
        .encapsulate(vni(42), VTEP_B, KERNEL_B_MAC, inner, &mut out)
        .expect("fits");
    assert_eq!(out[14 + 26..14 + 28], [0, 0]);
    assert_eq!(out[OUTER_LEN..m], *inner);
}

#[test]
fn outer_repr_round_trips() {
    let repr = OuterRepr {
        eth_src: KERNEL_A_MAC,
        eth_dst: KERNEL_B_MAC,
        ip_src: VTEP_A,
        ip_dst: VTEP_B,
        ip_id: 7,
        ttl: 64,
        dont_fragment: true,
        src_port: 50000,
        dst_port: 4789,
        udp_checksum: 0,
        vni: vni(0xabcdef),
        inner_len: 14,
    };
    let mut buf = [0u8; OUTER_LEN + 14];
    repr.emit(&mut buf);
    assert_eq!(OuterRepr::parse(&buf), Some(repr));
    assert_eq!(
        buf[OUTER_LEN - 8..OUTER_LEN],
        [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]
    );
}

#[test]
fn round_trip_through_two_vteps() {
    let mut a = Vtep::new(VtepConfig::new(KERNEL_A_MAC, VTEP_A));
    let b = vtep_b();
    let mut out = [0u8; 1600];
    for len in [0usize, 1, 100, 1422] {
        let inner = inner_udp([2, 0, 0, 0, 0, 0xaa], 1234, 53, len);
        let n = a
            .encapsulate(vni(7), VTEP_B, KERNEL_B_MAC, &inner, &mut out)
            .expect("fits");
        match b.decapsulate(&out[..n]) {
            Decap::Frame(d) => {
                assert_eq!(d.inner, &inner[..]);
                assert_eq!(d.vni.get(), 7);
                assert_eq!(d.outer_src, VTEP_A);
            }
            other => panic!("{other:?}"),
        }
        // Ethernet padding after the IP packet is ignored.
        let mut padded = out[..n].to_vec();
        padded.extend([0u8; 8]);
        assert!(matches!(b.decapsulate(&padded), Decap::Frame(d) if d.inner == &inner[..]));
    }
    // The IP ID increments per frame.
    let inner = inner_udp([2, 0, 0, 0, 0, 0xaa], 1, 2, 0);
    a.encapsulate(vni(7), VTEP_B, KERNEL_B_MAC, &inner, &mut out)
        .expect("fits");
    let first = OuterRepr::parse(&out).map(|r| r.ip_id);
    a.encapsulate(vni(7), VTEP_B, KERNEL_B_MAC, &inner, &mut out)
        .expect("fits");
    assert_eq!(
        OuterRepr::parse(&out).map(|r| r.ip_id),
        first.map(|i| i + 1)
    );
}

#[test]
fn refuses_what_exceeds_the_underlay_mtu() {
    let mut a = Vtep::new(VtepConfig::new(KERNEL_A_MAC, VTEP_A));
    assert_eq!(a.config().max_inner_frame(), 1464, "1450 inner MTU + 14");
    let mut out = [0u8; 2000];
    let fits = inner_udp(KERNEL_A_MAC, 1, 2, 1464 - 14 - 28);
    assert_eq!(fits.len(), 1464);
    assert_eq!(
        a.encapsulate(vni(1), VTEP_B, KERNEL_B_MAC, &fits, &mut out),
        Ok(1514)
    );
    let big = inner_udp(KERNEL_A_MAC, 1, 2, 1464 - 14 - 28 + 1);
    assert_eq!(
        a.encapsulate(vni(1), VTEP_B, KERNEL_B_MAC, &big, &mut out),
        Err(EncapError::TooBig {
            len: 1501,
            mtu: 1500
        })
    );
    let mut small = [0u8; 100];
    assert_eq!(
        a.encapsulate(vni(1), VTEP_B, KERNEL_B_MAC, &fits, &mut small),
        Err(EncapError::BufferTooSmall {
            need: 1514,
            have: 100
        })
    );
    assert_eq!(
        a.encapsulate(vni(1), VTEP_B, KERNEL_B_MAC, &fits[..13], &mut out),
        Err(EncapError::InnerTooShort(13))
    );
    // Counted by the overlay.
    let mut ov = Overlay::new(*a.config(), 16, DEFAULT_MAX_AGE);
    assert!(ov
        .send(vni(1), VTEP_B, KERNEL_B_MAC, &big, &mut out)
        .is_err());
    assert!(ov
        .send(vni(1), VTEP_B, KERNEL_B_MAC, &fits, &mut out)
        .is_ok());
    assert_eq!((ov.counters().too_big, ov.counters().encapsulated), (1, 1));
}

/// Recomputes the outer IPv4 header checksum after a test edits the header.
fn fix_ip_checksum(f: &mut [u8]) {
    let ihl = usize::from(f[14] & 0x0f) * 4;
    f[24..26].fill(0);
    let c = ::wire::checksum::checksum(&f[14..14 + ihl], 0);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn every_refusal_has_its_reason() {
    let frame = kernel_frame();
    let b = vtep_b();
    let check = |f: &[u8], want: Decap| assert_eq!(b.decapsulate(f), want, "{f:02x?}");

    let mut no_i = frame.clone();
    no_i[OUTER_LEN - 8] = 0x00;
    fill_udp_checksum(&mut no_i);
    check(&no_i, Decap::Drop(DropReason::BadFlags));

    let mut other_port = frame.clone();
    other_port[14 + 22..14 + 24].copy_from_slice(&8472u16.to_be_bytes());
    check(&other_port, Decap::Pass(PassReason::OtherPort));

    let mut mf = frame.clone();
    mf[14 + 6] |= 0x20;
    fix_ip_checksum(&mut mf);
    check(&mf, Decap::Drop(DropReason::Fragment));

    let mut later = frame.clone();
    later[14 + 7] = 0x10;
    fix_ip_checksum(&mut later);
    check(&later, Decap::Pass(PassReason::Fragment));

    let mut bad_sum = frame.clone();
    bad_sum[14 + 10] ^= 0xff;
    check(&bad_sum, Decap::Drop(DropReason::BadIpChecksum));

    let mut bad_udp = frame.clone();
    bad_udp[OUTER_LEN + 20] ^= 1; // an inner byte: only the UDP checksum notices
    check(&bad_udp, Decap::Drop(DropReason::BadUdpChecksum));
    let mut lenient = VtepConfig::new(KERNEL_B_MAC, VTEP_B);
    lenient.verify_udp_checksum = false;
    assert!(matches!(
        Vtep::new(lenient).decapsulate(&bad_udp),
        Decap::Frame(_)
    ));

    let mut udp_len = frame.clone();
    udp_len[14 + 24..14 + 26].copy_from_slice(&0x0070u16.to_be_bytes());
    check(&udp_len, Decap::Drop(DropReason::BadLength));

    let mut ihl = frame.clone();
    ihl[14] = 0x44;
    check(&ihl, Decap::Drop(DropReason::BadIpHeader));

    let mut tcp = frame.clone();
    tcp[14 + 9] = 6;
    check(&tcp, Decap::Pass(PassReason::NotUdp));

    let mut arp = frame.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    check(&arp, Decap::Pass(PassReason::NotIpv4));

    // Every truncation: no panic; past the IPv4 header, a drop.
    for n in 0..frame.len() {
        let got = b.decapsulate(&frame[..n]);
        match n {
            0..=33 => assert_eq!(got, Decap::Pass(PassReason::NotIpv4), "len {n}"),
            _ => assert_eq!(got, Decap::Drop(DropReason::Truncated), "len {n}"),
        }
    }
    // A datagram too short for a VXLAN header plus an inner Ethernet header.
    let mut a = Vtep::new(VtepConfig::new(KERNEL_A_MAC, VTEP_A));
    let mut out = [0u8; 64];
    let n = a
        .encapsulate(
            vni(42),
            VTEP_B,
            KERNEL_B_MAC,
            &frame[OUTER_LEN..OUTER_LEN + 14],
            &mut out,
        )
        .expect("fits");
    let mut short = out[..n - 1].to_vec();
    short[14 + 2..14 + 4].copy_from_slice(&((n - 15) as u16).to_be_bytes());
    short[14 + 24..14 + 26].copy_from_slice(&((n - 35) as u16).to_be_bytes());
    fix_ip_checksum(&mut short);
    check(&short, Decap::Drop(DropReason::Truncated));
}

#[test]
fn ip_options_are_skipped() {
    // The kernel's frame with a 4-byte IPv4 option (NOP x4) inserted.
    let frame = kernel_frame();
    let mut f = frame[..34].to_vec();
    f.extend([1, 1, 1, 1]);
    f.extend(&frame[34..]);
    f[14] = 0x46;
    let total = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ip_checksum(&mut f);
    match vtep_b().decapsulate(&f) {
        Decap::Frame(d) => assert_eq!(d.inner, &frame[OUTER_LEN..]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_vni_is_dropped_and_counted_and_sources_learned() {
    let frame = kernel_frame();
    let now = Instant::now();
    let mut ov = Overlay::new(VtepConfig::new(KERNEL_B_MAC, VTEP_B), 16, DEFAULT_MAX_AGE);
    ov.add_network(vni(43), &[VTEP_A]);
    assert_eq!(ov.receive(&frame, now), Decap::Drop(DropReason::UnknownVni));
    assert_eq!(ov.counters().dropped(DropReason::UnknownVni), 1);
    ov.add_network(vni(42), &[VTEP_A]);
    assert!(matches!(ov.receive(&frame, now), Decap::Frame(_)));
    assert_eq!(ov.counters().decapsulated, 1);
    let inner_src = [2, 0, 0xac, 0x10, 0x2a, 1];
    let t = ov.table(vni(42)).expect("added");
    assert_eq!(t.lookup(&inner_src, now), Some(VTEP_A));
    assert!(
        ov.table(vni(43)).is_some_and(|t| t.is_empty()),
        "networks apart"
    );
}

#[test]
fn frames_from_a_vtep_that_is_no_peer_are_dropped_and_not_learned() {
    let frame = kernel_frame();
    let now = Instant::now();
    let mut ov = Overlay::new(VtepConfig::new(KERNEL_B_MAC, VTEP_B), 16, DEFAULT_MAX_AGE);
    ov.add_network(vni(42), &[Ipv4Addr::new(192, 0, 2, 99)]);
    assert_eq!(
        ov.receive(&frame, now),
        Decap::Drop(DropReason::UnknownPeer)
    );
    assert_eq!(ov.counters().dropped(DropReason::UnknownPeer), 1);
    assert!(
        ov.table(vni(42)).is_some_and(|t| t.is_empty()),
        "nothing learned"
    );
    assert_eq!(ov.counters().decapsulated, 0);
}

#[test]
fn source_port_is_stable_per_flow_and_spreads_across_flows() {
    let range = PortRange::default();
    let f = inner_udp([2, 0, 0, 0, 0, 1], 40000, 80, 10);
    let p = source_port(flow_hash(&f), range);
    assert_eq!(p, source_port(flow_hash(&f.clone()), range));
    // The payload and IP ID are not part of the flow.
    let mut g = inner_udp([2, 0, 0, 0, 0, 1], 40000, 80, 30);
    g[18] = 0x77;
    assert_eq!(source_port(flow_hash(&g), range), p);
    // 1000 flows differing only in the inner source port spread over the range.
    let mut buckets = [0u32; 16];
    let mut seen = std::collections::HashSet::new();
    for sport in 0..1000u16 {
        let port = source_port(
            flow_hash(&inner_udp([2, 0, 0, 0, 0, 1], sport, 80, 0)),
            range,
        );
        assert!(port >= 49152);
        seen.insert(port);
        buckets[usize::from((port - 49152) / 1024)] += 1;
    }
    assert!(seen.len() > 950, "few collisions: {}", seen.len());
    assert!(
        buckets.iter().all(|&b| (30..=100).contains(&b)),
        "{buckets:?}"
    );
    // IPv6 alike: by addresses, next header and ports, not by payload or hop limit.
    let mut seen = std::collections::HashSet::new();
    for sport in 0..1000u16 {
        let f = inner_udp6(sport, 64, 10);
        let port = source_port(flow_hash(&f), range);
        assert_eq!(
            port,
            source_port(flow_hash(&inner_udp6(sport, 1, 30)), range)
        );
        seen.insert(port);
    }
    assert!(seen.len() > 950, "IPv6 flows spread: {}", seen.len());
    let mut other_dst = inner_udp6(7, 64, 0);
    other_dst[14 + 39] ^= 1;
    assert_ne!(flow_hash(&other_dst), flow_hash(&inner_udp6(7, 64, 0)));
    // Non-IP frames hash by MACs.
    let arp1 = [[0xff; 6], [2, 0, 0, 0, 0, 1]].concat();
    let arp2 = [[0xff; 6], [2, 0, 0, 0, 0, 2]].concat();
    assert_ne!(flow_hash(&arp1), flow_hash(&arp2));
    // Linux's mapping, both ends reachable.
    assert_eq!(source_port(0, range), 49152);
    assert_eq!(source_port(u32::MAX, range), 65535);
    let one = PortRange {
        first: 5000,
        last: 5000,
    };
    assert_eq!(source_port(u32::MAX, one), 5000);
}

#[test]
fn table_learns_ages_bounds_and_keeps_static_entries() {
    let t0 = Instant::now();
    let (m1, m2, m3): (Mac, Mac, Mac) =
        ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]);
    let c = Ipv4Addr::new(10, 200, 0, 3);
    let mut t = TunnelTable::new(vni(42), 2, DEFAULT_MAX_AGE);
    assert_eq!(t.learn(m1, VTEP_A, t0), Learned::New);
    assert_eq!(t.learn(m1, VTEP_A, t0), Learned::Refreshed);
    assert_eq!(t.learn(m1, c, t0), Learned::Moved);
    assert_eq!(t.lookup(&m1, t0), Some(c));
    assert_eq!(t.learn([0xff; 6], c, t0), Learned::Invalid);
    assert_eq!(t.learn([0x01, 0, 0x5e, 0, 0, 1], c, t0), Learned::Invalid);
    assert_eq!(t.learn(m2, VTEP_A, t0), Learned::New);
    assert_eq!(t.learn(m3, VTEP_A, t0), Learned::Full, "bounded");
    t.add_static(m3, VTEP_B, t0);
    assert_eq!(t.learn(m3, VTEP_A, t0), Learned::Static);
    let later = t0 + Duration::from_secs(300);
    assert_eq!(t.lookup(&m1, later), None, "aged out at 300 s");
    assert_eq!(t.lookup(&m3, later), Some(VTEP_B), "static never ages");
    assert_eq!(t.entries(t0 + Duration::from_secs(5)).len(), 3);
    assert_eq!(t.expire(later), 2);
    assert_eq!(t.len(), 1);
    assert!(t.remove(&m3));
    assert!(t.is_empty());
}

#[test]
fn replication_list_has_every_peer_and_learned_vtep_once() {
    let t0 = Instant::now();
    let c = Ipv4Addr::new(10, 200, 0, 3);
    let d = Ipv4Addr::new(10, 200, 0, 4);
    let mut t = TunnelTable::with_defaults(vni(42));
    assert!(t.flood_list(Origin::Local, VTEP_B).is_empty());
    t.set_peers(&[VTEP_A, c, VTEP_A, VTEP_B]);
    assert_eq!(t.peers(), &[VTEP_A, c, VTEP_B]);
    assert_eq!(
        t.flood_list(Origin::Local, VTEP_B),
        &[VTEP_A, c],
        "never ourselves"
    );
    t.learn([2, 0, 0, 0, 0, 1], d, t0);
    t.learn([2, 0, 0, 0, 0, 2], d, t0);
    t.learn([2, 0, 0, 0, 0, 3], VTEP_A, t0);
    assert_eq!(t.flood_list(Origin::Local, VTEP_B), &[VTEP_A, c, d]);
    assert!(
        t.flood_list(Origin::Tunnel, VTEP_B).is_empty(),
        "tunnel never to tunnel"
    );
    t.expire(t0 + DEFAULT_MAX_AGE);
    assert_eq!(t.flood_list(Origin::Local, VTEP_B), &[VTEP_A, c]);
    assert!(t.remove_peer(c));
    t.add_peer(d);
    assert_eq!(t.flood_list(Origin::Local, VTEP_B), &[VTEP_A, d]);
    t.forget_vtep(VTEP_A);
    assert_eq!(t.flood_list(Origin::Local, VTEP_B), &[d]);
}

/// The control plane's static entries (remote endpoints from the cluster store) may
/// outnumber the bound: they take no room from learning, and taking a learned MAC over
/// gives its room back.
#[test]
fn static_entries_take_no_room_from_learning() {
    let t0 = Instant::now();
    let mut t = TunnelTable::new(vni(42), 2, DEFAULT_MAX_AGE);
    for i in 0..10u8 {
        t.add_static([2, 0, 0, 0, 1, i], VTEP_A, t0);
    }
    let (m1, m2, m3): (Mac, Mac, Mac) =
        ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]);
    assert_eq!(
        t.learn(m1, VTEP_B, t0),
        Learned::New,
        "statics are not counted"
    );
    assert_eq!(t.learn(m2, VTEP_B, t0), Learned::New);
    assert_eq!(
        t.learn(m3, VTEP_B, t0),
        Learned::Full,
        "learning is still bounded"
    );
    t.add_static(m1, VTEP_A, t0);
    assert!(t.is_static(&m1));
    assert_eq!(
        t.lookup(&m1, t0),
        Some(VTEP_A),
        "a static replaces a learned entry"
    );
    assert_eq!(t.learn(m3, VTEP_B, t0), Learned::New, "and frees its room");
    assert!(
        !t.remove_static(&m2, VTEP_B),
        "a learned entry is not the control plane's"
    );
    assert!(
        !t.remove_static(&m1, VTEP_B),
        "nor a static behind another VTEP"
    );
    assert!(t.remove_static(&m1, VTEP_A));
    assert_eq!(t.lookup(&m1, t0), None);
    assert_eq!(t.len(), 12);
}

/// The cluster's members are the peers: when one leaves, floods stop going to it at
/// once (not after its learned MACs age out), while the control plane's statics stay
/// until it removes them.
#[test]
fn a_removed_peer_leaves_the_replication_list_with_its_learned_macs() {
    let t0 = Instant::now();
    let c = Ipv4Addr::new(10, 200, 0, 3);
    let d = Ipv4Addr::new(10, 200, 0, 4);
    let (learned, stat): (Mac, Mac) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut t = TunnelTable::with_defaults(vni(42));
    t.set_peers(&[VTEP_B, c, d]);
    assert_eq!(t.learn(learned, c, t0), Learned::New);
    t.learn([2, 0, 0, 0, 0, 3], VTEP_B, t0);
    t.add_static(stat, d, t0);
    assert_eq!(t.flood_list(Origin::Local, VTEP_A), &[VTEP_B, c, d]);
    assert_eq!(
        t.set_peers(&[VTEP_B, c, d]),
        0,
        "the same members: nothing goes"
    );
    assert_eq!(t.set_peers(&[VTEP_B]), 1, "c's learned MAC goes");
    assert_eq!(t.lookup(&learned, t0), None);
    assert_eq!(
        t.lookup(&stat, t0),
        Some(d),
        "statics are the control plane's"
    );
    assert_eq!(
        t.flood_list(Origin::Local, VTEP_A),
        &[VTEP_B, d],
        "no flood to c any more; d still hosts a static endpoint"
    );
    assert!(t.remove_static(&stat, d));
    assert_eq!(t.flood_list(Origin::Local, VTEP_A), &[VTEP_B]);
    // One peer removed at a time: the same.
    t.add_peer(c);
    t.learn(learned, c, t0);
    assert!(t.remove_peer(c));
    assert_eq!(
        t.lookup(&learned, t0),
        None,
        "remove_peer forgets the same way"
    );
    assert_eq!(t.flood_list(Origin::Local, VTEP_A), &[VTEP_B]);
}

#[test]
fn fdb_rows_serialize() {
    let now = Instant::now();
    let mut t = TunnelTable::with_defaults(vni(42));
    t.add_static([2, 0, 0, 0, 0, 1], VTEP_A, now);
    let json = serde_json::to_string(&t.entries(now)).expect("serializes");
    assert_eq!(
        json,
        r#"[{"vni":42,"mac":[2,0,0,0,0,1],"vtep":"10.200.0.1","age_secs":0,"is_static":true}]"#
    );
    let back: Vec<RemoteEntry> = serde_json::from_str(&json).expect("round trips");
    assert_eq!(back, t.entries(now));
}

#[test]
fn fuzz_body_survives_mutations() {
    // A deterministic xorshift: no dependency, the same inputs every run.
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let seed = kernel_frame();
    assert!(fuzzing::decap(&seed));
    let mut accepted = 0;
    for i in 0..4000 {
        let mut f = seed.clone();
        match i % 4 {
            0 => {
                for _ in 0..1 + next() % 4 {
                    let at = (next() % f.len() as u64) as usize;
                    f[at] = next() as u8;
                }
            }
            1 => f.truncate((next() % seed.len() as u64) as usize),
            2 => {
                // Mutate only past the checksummed headers: must stay accepted unless
                // the UDP checksum catches it.
                let at = OUTER_LEN + (next() % (f.len() - OUTER_LEN) as u64) as usize;
                f[at] ^= 1 + (next() as u8 & 0x7f);
            }
            _ => {
                let n = (next() % 200) as usize;
                f = (0..n).map(|_| next() as u8).collect();
            }
        }
        if fuzzing::decap(&f) {
            accepted += 1;
        }
    }
    assert!(accepted > 0, "some mutations stay valid VXLAN");
}
