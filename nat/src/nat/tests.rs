//! Translation tests: byte-exact against packets the Linux kernel's MASQUERADE
//! produced (testdata/capture_masquerade.sh), and against packets built independently
//! with etherparse, with every checksum verified by a full recompute.

use super::*;
use crate::fuzzing::checksums_ok;
use ::wire::checksum::checksum;
use etherparse::{IpHeaders, PacketBuilder, PacketBuilderStep};

const EXT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const C1: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);
const C2: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 3);

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect()
}

/// What the router does besides NAT: decrement TTL, recompute the header checksum.
fn forward_hop(p: &mut [u8]) {
    p[8] -= 1;
    p[10..12].fill(0);
    let ihl = usize::from(p[0] & 15) * 4;
    let c = checksum(&p[..ihl], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

fn nat() -> Nat {
    Nat::new(NatConfig::default(), EXT).unwrap()
}

fn nat_with(cfg: NatConfig) -> Nat {
    Nat::new(cfg, EXT).unwrap()
}

const OUT: Verdict = Verdict::Translated { to: Side::Outside };
const IN: Verdict = Verdict::Translated { to: Side::Inside };

/// The packets of one family, built by etherparse.
trait Build: Copy {
    const V6: bool;
    fn ip(src: Self, dst: Self) -> PacketBuilderStep<IpHeaders>;
}

impl Build for Ipv4Addr {
    const V6: bool = false;
    fn ip(src: Self, dst: Self) -> PacketBuilderStep<IpHeaders> {
        PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
    }
}

impl Build for Ipv6Addr {
    const V6: bool = true;
    fn ip(src: Self, dst: Self) -> PacketBuilderStep<IpHeaders> {
        PacketBuilder::ipv6(src.octets(), dst.octets(), 64)
    }
}

fn udp<A: Build>(src: (A, u16), dst: (A, u16), payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    A::ip(src.0, dst.0)
        .udp(src.1, dst.1)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn tcp<A: Build>(src: (A, u16), dst: (A, u16), flags: u8) -> Vec<u8> {
    let mut b = A::ip(src.0, dst.0).tcp(src.1, dst.1, 1000, 64240);
    if flags & wire::TCP_SYN != 0 {
        b = b.syn();
    }
    if flags & wire::TCP_ACK != 0 {
        b = b.ack(2000);
    }
    if flags & wire::TCP_FIN != 0 {
        b = b.fin();
    }
    if flags & wire::TCP_RST != 0 {
        b = b.rst();
    }
    let mut v = Vec::new();
    b.write(&mut v, b"data").unwrap();
    v
}

/// C1 and C2 ping REMOTE with the same identifier `id`: both requests go out; they
/// are returned as translated.
fn echoes_from_c1_and_c2(n: &mut Nat, id: u16, t: Instant) -> (Vec<u8>, Vec<u8>) {
    let mut a = echo(C1, REMOTE, id, false);
    let mut b = echo(C2, REMOTE, id, false);
    assert_eq!(n.outbound(&mut a, t), OUT);
    assert_eq!(n.outbound(&mut b, t), OUT);
    (a, b)
}

fn echo<A: Build>(src: A, dst: A, id: u16, reply: bool) -> Vec<u8> {
    let b = A::ip(src, dst);
    let mut v = Vec::new();
    match (A::V6, reply) {
        (false, false) => b.icmpv4_echo_request(id, 1).write(&mut v, b"ping"),
        (false, true) => b.icmpv4_echo_reply(id, 1).write(&mut v, b"ping"),
        (true, false) => b.icmpv6_echo_request(id, 1).write(&mut v, b"ping"),
        (true, true) => b.icmpv6_echo_reply(id, 1).write(&mut v, b"ping"),
    }
    .unwrap();
    v
}

/// An ICMP error (`typ`, `code`) from `src` to `dst` quoting `quoted` (cut to `keep`).
fn icmp_error(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    typ: u8,
    code: u8,
    quoted: &[u8],
    keep: usize,
) -> Vec<u8> {
    let q = &quoted[..keep.min(quoted.len())];
    let mut icmp = vec![typ, code, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(q);
    let c = checksum(&icmp, 0);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = 20 + icmp.len();
    let mut p = vec![
        0x45,
        0xc0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0,
        0,
        64,
        1,
        0,
        0,
    ];
    p.extend(src.octets());
    p.extend(dst.octets());
    let c = checksum(&p, 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend(icmp);
    p
}

fn tuple_of(p: &[u8]) -> Tuple<Ipv4Addr> {
    wire::parse(p, false).unwrap().tuple
}

// --- Against the kernel -----------------------------------------------------------

#[test]
fn matches_kernel_masquerade_udp_and_its_icmp_port_unreachable() {
    let mut n = nat();
    let t = Instant::now();
    // 172.16.5.2:40000 -> 203.0.113.7:7777, as sent by the container.
    let mut p = hex(
        "4500 002c 4acc 4000 4011 02db ac10 0502 cb00 7107 9c40 1e61 0018 c345
                     7673 7769 7463 6820 6e61 7420 7465 7374",
    );
    forward_hop(&mut p);
    assert_eq!(n.outbound(&mut p, t), OUT);
    let kernel_out = hex(
        "4500 002c 4acc 4000 3f11 78eb cb00 7101 cb00 7107 9c40 1e61 0018 3856
                          7673 7769 7463 6820 6e61 7420 7465 7374",
    );
    assert_eq!(
        p, kernel_out,
        "source 203.0.113.1:40000, port kept, checksums as Linux"
    );
    // The outside host answers port unreachable, quoting what it received.
    let mut e = hex(
        "45c0 0048 6bf4 0000 4001 95f7 cb00 7107 cb00 7101 0303 7530 0000 0000
                     4500 002c 4acc 4000 3f11 78eb cb00 7101 cb00 7107 9c40 1e61 0018 3856
                     7673 7769 7463 6820 6e61 7420 7465 7374",
    );
    assert_eq!(n.inbound(&mut e, t), IN);
    forward_hop(&mut e);
    let kernel_in = hex(
        "45c0 0048 6bf4 0000 3f01 21e7 cb00 7107 ac10 0502 0303 ea40 0000 0000
                         4500 002c 4acc 4000 3f11 03db ac10 0502 cb00 7107 9c40 1e61 0018 c345
                         7673 7769 7463 6820 6e61 7420 7465 7374",
    );
    assert_eq!(
        e, kernel_in,
        "outer and quoted headers restored, all four checksums"
    );
    assert!(checksums_ok(&e));
    assert_eq!(n.counters().icmp_errors, 1);
}

#[test]
fn matches_kernel_masquerade_tcp_syn_and_rst() {
    let mut n = nat();
    let t = Instant::now();
    let mut syn = hex(
        "4500 003c a8b9 4000 4006 a4e8 ac10 0502 cb00 7107 9c41 1e62 6e17 9cbe
                       0000 0000 a002 faf0 ebf5 0000 0204 05b4 0402 080a 8a49 2439 0000 0000
                       0103 030a",
    );
    forward_hop(&mut syn);
    assert_eq!(n.outbound(&mut syn, t), OUT);
    assert_eq!(
        syn,
        hex(
            "4500 003c a8b9 4000 3f06 1af9 cb00 7101 cb00 7107 9c41 1e62 6e17 9cbe
             0000 0000 a002 faf0 6106 0000 0204 05b4 0402 080a 8a49 2439 0000 0000
             0103 030a"
        )
    );
    let mut rst = hex(
        "4500 0028 0000 4000 4006 c2c6 cb00 7107 cb00 7101 1e62 9c41 0000 0000
                       6e17 9cbf 5014 0000 724c 0000",
    );
    assert_eq!(n.inbound(&mut rst, t), IN);
    forward_hop(&mut rst);
    assert_eq!(
        rst,
        hex(
            "4500 0028 0000 4000 3f06 4eb6 cb00 7107 ac10 0502 1e62 9c41 0000 0000
             6e17 9cbf 5014 0000 fd3b 0000"
        )
    );
    assert_eq!(n.sessions(t)[0].state, SessionState::Close);
}

#[test]
fn matches_kernel_masquerade_icmp_echo() {
    let mut n = nat();
    let t = Instant::now();
    let mut req = hex(
        "4500 002c df63 4000 4001 6e53 ac10 0502 cb00 7107 0800 ae47 4c06 0001
                       d996 036b 0000 0000 1daf 0300 0000 0000",
    );
    forward_hop(&mut req);
    assert_eq!(n.outbound(&mut req, t), OUT);
    assert_eq!(
        req,
        hex(
            "4500 002c df63 4000 3f01 e463 cb00 7101 cb00 7107 0800 ae47 4c06 0001
             d996 036b 0000 0000 1daf 0300 0000 0000"
        )
    );
    let mut rep = hex(
        "4500 002c 6c0f 0000 4001 96b8 cb00 7107 cb00 7101 0000 b647 4c06 0001
                       d996 036b 0000 0000 1daf 0300 0000 0000",
    );
    assert_eq!(n.inbound(&mut rep, t), IN);
    forward_hop(&mut rep);
    assert_eq!(
        rep,
        hex(
            "4500 002c 6c0f 0000 3f01 22a8 cb00 7107 ac10 0502 0000 b647 4c06 0001
             d996 036b 0000 0000 1daf 0300 0000 0000"
        )
    );
}

// --- SNAT ---------------------------------------------------------------------------

#[test]
fn snat_rewrites_source_and_reply_comes_back() {
    let mut n = nat();
    let t = Instant::now();
    let mut p = udp((C1, 5000), (REMOTE, 53), b"query");
    assert_eq!(n.outbound(&mut p, t), OUT);
    assert_eq!(p, {
        let mut e = udp((EXT, 5000), (REMOTE, 53), b"query");
        e[4..6].copy_from_slice(&p[4..6]);
        e
    });
    assert!(checksums_ok(&p));
    let mut r = udp((REMOTE, 53), (EXT, 5000), b"answer");
    assert_eq!(n.inbound(&mut r, t), IN);
    assert_eq!(r, udp((REMOTE, 53), (C1, 5000), b"answer"));
    let row = &n.sessions(t)[0];
    assert_eq!(row.state, SessionState::Replied);
    assert_eq!(row.kind, Kind::Snat);
}

#[test]
fn endpoint_independent_mapping_and_port_choice() {
    let mut n = nat();
    let t = Instant::now();
    let other = Ipv4Addr::new(198, 51, 100, 99);
    let mut a = udp((C1, 5000), (REMOTE, 53), b"x");
    let mut b = udp((C1, 5000), (other, 123), b"x");
    n.outbound(&mut a, t);
    n.outbound(&mut b, t);
    assert_eq!(tuple_of(&a).sport, 5000, "source port kept when free");
    assert_eq!(
        tuple_of(&b).sport,
        5000,
        "same mapping for another destination"
    );
    let mut c = udp((C2, 5000), (REMOTE, 53), b"x");
    assert_eq!(n.outbound(&mut c, t), OUT);
    let pc = tuple_of(&c).sport;
    assert!(
        pc != 5000 && pc >= 1024,
        "taken port replaced from the range: {pc}"
    );
    assert!(checksums_ok(&c));
    // Address-and-port-dependent filtering: a host C1 never talked to gets nothing.
    let mut s = udp((Ipv4Addr::new(198, 51, 100, 50), 53), (EXT, 5000), b"x");
    assert_eq!(n.inbound(&mut s, t), Verdict::NotOurs);
    // The reply to C2 goes to C2, not C1.
    let mut r = udp((REMOTE, 53), (EXT, pc), b"x");
    assert_eq!(n.inbound(&mut r, t), IN);
    assert_eq!(tuple_of(&r).dst, C2);
    assert_eq!(tuple_of(&r).dport, 5000);
}

#[test]
fn port_exhaustion_is_counted_and_never_shares() {
    let mut n = nat_with(NatConfig {
        port_range: PortRange {
            first: 2000,
            last: 2001,
        },
        ..NatConfig::default()
    });
    let t = Instant::now();
    let mut got = Vec::new();
    for (i, ip) in [C1, C2, Ipv4Addr::new(172, 17, 0, 4)]
        .into_iter()
        .enumerate()
    {
        let mut p = udp((ip, 7000), (REMOTE, 53), b"x");
        let before = p.clone();
        let v = n.outbound(&mut p, t);
        if i < 2 {
            assert_eq!(v, OUT);
            got.push(tuple_of(&p).sport);
        } else {
            assert_eq!(v, Verdict::Drop(DropReason::PortsExhausted));
            assert_eq!(p, before, "dropped packets are not touched");
        }
    }
    got.sort();
    assert_eq!(got, vec![2000, 2001]);
    assert_eq!(n.counters().drop_ports_exhausted, 1);
    // C1's second flow reuses its mapping even though the range is full.
    let mut p = udp((C1, 7000), (Ipv4Addr::new(198, 51, 100, 8), 53), b"x");
    assert_eq!(n.outbound(&mut p, t), OUT);
}

#[test]
fn icmp_echo_identifier_is_the_port() {
    let mut n = nat();
    let t = Instant::now();
    let (a, b) = echoes_from_c1_and_c2(&mut n, 4242, t);
    assert_eq!(a, echo(EXT, REMOTE, 4242, false));
    let idb = tuple_of(&b).sport;
    assert_ne!(idb, 4242);
    assert_eq!(
        b,
        echo(EXT, REMOTE, idb, false),
        "id and checksum rewritten"
    );
    let mut r = echo(REMOTE, EXT, idb, true);
    assert_eq!(n.inbound(&mut r, t), IN);
    assert_eq!(r, echo(REMOTE, C2, 4242, true));
    let mut stray = echo(REMOTE, EXT, 999, true);
    assert_eq!(n.inbound(&mut stray, t), Verdict::NotOurs);
    let mut ping_us = echo(REMOTE, EXT, 4242, false);
    assert_eq!(
        n.inbound(&mut ping_us, t),
        Verdict::NotOurs,
        "the switch answers"
    );
}

#[test]
fn udp_zero_checksum_stays_zero() {
    let mut n = nat();
    let t = Instant::now();
    let mut p = udp((C1, 5000), (REMOTE, 53), b"x");
    p[26..28].fill(0);
    assert_eq!(n.outbound(&mut p, t), OUT);
    assert_eq!(&p[26..28], &[0, 0]);
    assert!(checksums_ok(&p));
}

// --- Timeouts, TCP, table bound -----------------------------------------------------

#[test]
fn udp_session_expires_after_shortened_timeout() {
    let mut n = nat_with(NatConfig {
        udp: Duration::from_secs(2),
        ..NatConfig::default()
    });
    let t = Instant::now();
    let mut p = udp((C1, 5000), (REMOTE, 53), b"x");
    n.outbound(&mut p, t);
    let mut r = udp((REMOTE, 53), (EXT, 5000), b"x");
    assert_eq!(n.inbound(&mut r, t + Duration::from_secs(1)), IN);
    assert_eq!(
        n.expire(t + Duration::from_secs(2)),
        0,
        "refreshed by the reply"
    );
    let mut late = udp((REMOTE, 53), (EXT, 5000), b"x");
    assert_eq!(
        n.inbound(&mut late, t + Duration::from_secs(4)),
        Verdict::NotOurs
    );
    assert_eq!(n.session_count(), 0, "removed on lookup");
    let mut p = udp((C1, 5000), (REMOTE, 53), b"x");
    n.outbound(&mut p, t + Duration::from_secs(5));
    assert_eq!(n.expire(t + Duration::from_secs(6)), 0);
    assert_eq!(n.expire(t + Duration::from_secs(8)), 1);
    assert_eq!(n.counters().sessions_expired, 2);
    assert!(n.sessions(t).is_empty());
}

#[test]
fn tcp_handshake_uses_established_timeout_and_close_transitory() {
    let cfg = NatConfig::default();
    let mut n = nat_with(cfg);
    let t = Instant::now();
    let c = (C1, 40000);
    let r = (REMOTE, 443);
    let x = (EXT, 40000);
    let state = |n: &Nat, at| n.sessions(at)[0].state;
    assert_eq!(
        n.outbound(&mut tcp(c, r, wire::TCP_ACK), t),
        Verdict::Drop(DropReason::Untracked)
    );
    assert_eq!(n.outbound(&mut tcp(c, r, wire::TCP_SYN), t), OUT);
    assert_eq!(state(&n, t), SessionState::SynSent);
    assert_eq!(
        n.inbound(&mut tcp(r, x, wire::TCP_SYN | wire::TCP_ACK), t),
        IN
    );
    assert_eq!(state(&n, t), SessionState::SynRecv);
    assert_eq!(n.outbound(&mut tcp(c, r, wire::TCP_ACK), t), OUT);
    assert_eq!(state(&n, t), SessionState::Established);
    // Idle for longer than the transitory timeout: still there.
    let later = t + cfg.tcp_transitory + Duration::from_secs(60);
    assert_eq!(n.expire(later), 0);
    assert_eq!(
        n.sessions(later)[0].expires_in_secs,
        (cfg.tcp_established - Duration::from_secs(300)).as_secs()
    );
    assert_eq!(
        n.inbound(&mut tcp(r, x, wire::TCP_ACK | wire::TCP_FIN), later),
        IN
    );
    assert_eq!(state(&n, later), SessionState::FinWait);
    assert_eq!(
        n.outbound(&mut tcp(c, r, wire::TCP_ACK | wire::TCP_FIN), later),
        OUT
    );
    assert_eq!(state(&n, later), SessionState::TimeWait);
    assert_eq!(n.expire(later + cfg.tcp_transitory), 0);
    assert_eq!(
        n.expire(later + cfg.tcp_transitory + Duration::from_secs(1)),
        1
    );
    // An established connection idles out after 2 h 4 min, not before.
    n.outbound(&mut tcp(c, r, wire::TCP_SYN), t);
    n.inbound(&mut tcp(r, x, wire::TCP_SYN | wire::TCP_ACK), t);
    n.outbound(&mut tcp(c, r, wire::TCP_ACK), t);
    assert!(cfg.tcp_established >= Duration::from_secs(2 * 3600 + 4 * 60));
    assert_eq!(n.expire(t + cfg.tcp_established), 0);
    assert_eq!(
        n.expire(t + cfg.tcp_established + Duration::from_secs(1)),
        1
    );
    // A half-open (SYN only) session is transitory.
    n.outbound(&mut tcp(c, r, wire::TCP_SYN), t);
    assert_eq!(n.expire(t + cfg.tcp_transitory + Duration::from_secs(1)), 1);
}

#[test]
fn full_table_evicts_the_oldest_idle_session() {
    let mut n = nat_with(NatConfig {
        max_sessions: 2,
        ..NatConfig::default()
    });
    let t = Instant::now();
    let s = Duration::from_secs(1);
    n.outbound(&mut udp((C1, 1001), (REMOTE, 53), b"x"), t);
    n.outbound(&mut udp((C1, 1002), (REMOTE, 53), b"x"), t + s);
    // 1001 is used again, so 1002 is now the oldest idle one.
    n.outbound(&mut udp((C1, 1001), (REMOTE, 53), b"x"), t + 2 * s);
    assert_eq!(
        n.outbound(&mut udp((C1, 1003), (REMOTE, 53), b"x"), t + 3 * s),
        OUT
    );
    assert_eq!(n.counters().sessions_evicted, 1);
    let ports: Vec<u16> = n
        .sessions(t + 3 * s)
        .iter()
        .map(|r| r.original.src.port())
        .collect();
    assert_eq!(ports, vec![1001, 1003]);
    let mut r = udp((REMOTE, 53), (EXT, 1002), b"x");
    assert_eq!(n.inbound(&mut r, t + 3 * s), Verdict::NotOurs, "evicted");
}

// --- Published ports, hairpin -------------------------------------------------------

fn web() -> PortMapping {
    PortMapping {
        proto: Proto::Tcp,
        host_ip: None,
        host_port: 8080,
        target_ip: C1.into(),
        target_port: 80,
    }
}

/// A NAT that publishes [`web`].
fn nat_publishing_web() -> Nat {
    let mut n = nat();
    n.add_port_mapping(web()).unwrap();
    n
}

#[test]
fn published_port_conflicts_are_refused() {
    let mut n = nat_publishing_web();
    let e = n
        .add_port_mapping(PortMapping {
            host_ip: Some(EXT.into()),
            target_ip: C2.into(),
            ..web()
        })
        .unwrap_err();
    assert!(e.to_string().contains("port is already allocated"), "{e}");
    assert_eq!(
        e.to_string(),
        "Bind for 203.0.113.1:8080/tcp failed: port is already allocated"
    );
    let e = n.add_port_mapping(web()).unwrap_err();
    assert!(e.to_string().contains("0.0.0.0:8080"), "{e}");
    n.add_port_mapping(PortMapping {
        proto: Proto::Udp,
        ..web()
    })
    .expect("udp is another port space");
    let a = PortMapping {
        host_ip: Some(EXT.into()),
        host_port: 9090,
        ..web()
    };
    n.add_port_mapping(a).unwrap();
    n.add_port_mapping(PortMapping {
        host_ip: Some(Ipv4Addr::new(203, 0, 113, 2).into()),
        ..a
    })
    .expect("another host address");
    assert!(n
        .add_port_mapping(PortMapping { host_ip: None, ..a })
        .is_err());
    assert!(n
        .add_port_mapping(PortMapping {
            proto: Proto::Icmp,
            ..a
        })
        .is_err());
    assert_eq!(n.remove_port_mapping(&web()), Some(web()));
    n.add_port_mapping(web()).expect("free again after removal");
    assert_eq!(n.port_mappings().count(), 4);
}

#[test]
fn dnat_translates_to_target_and_back() {
    let mut n = nat_publishing_web();
    let t = Instant::now();
    let mut syn = tcp((REMOTE, 40000), (EXT, 8080), wire::TCP_SYN);
    assert_eq!(n.inbound(&mut syn, t), IN);
    assert_eq!(syn, tcp((REMOTE, 40000), (C1, 80), wire::TCP_SYN));
    let mut sa = tcp((C1, 80), (REMOTE, 40000), wire::TCP_SYN | wire::TCP_ACK);
    assert_eq!(n.outbound(&mut sa, t), OUT);
    assert_eq!(
        sa,
        tcp((EXT, 8080), (REMOTE, 40000), wire::TCP_SYN | wire::TCP_ACK)
    );
    let row = &n.sessions(t)[0];
    assert_eq!(row.kind, Kind::Dnat);
    assert_eq!(
        row.translated.dst,
        SocketAddr::from(SocketAddrV4::new(C1, 80))
    );
    // Mid-stream segments to a published port do not open sessions.
    let mut ack = tcp((REMOTE, 40001), (EXT, 8080), wire::TCP_ACK);
    assert_eq!(n.inbound(&mut ack, t), Verdict::Drop(DropReason::Untracked));
    // Not published: not ours.
    let mut other = tcp((REMOTE, 40000), (EXT, 8081), wire::TCP_SYN);
    assert_eq!(n.inbound(&mut other, t), Verdict::NotOurs);
    // SNAT never hands out a published port.
    let mut p = tcp((C2, 8080), (REMOTE, 80), wire::TCP_SYN);
    assert_eq!(n.outbound(&mut p, t), OUT);
    assert_ne!(tuple_of(&p).sport, 8080);
    // Unpublishing ends the DNAT session.
    n.remove_port_mapping(&web());
    let mut late = tcp((REMOTE, 40000), (EXT, 8080), wire::TCP_ACK);
    assert_eq!(n.inbound(&mut late, t), Verdict::NotOurs);
}

#[test]
fn hairpin_dnats_and_snats_so_replies_return_through_the_switch() {
    let mut n = nat_publishing_web();
    let t = Instant::now();
    // C2 connects to the published port on the external address.
    let mut syn = tcp((C2, 5555), (EXT, 8080), wire::TCP_SYN);
    assert_eq!(
        n.outbound(&mut syn, t),
        IN,
        "delivered inside, to the target"
    );
    let tu = tuple_of(&syn);
    assert_eq!((tu.dst, tu.dport), (C1, 80));
    assert_eq!(
        tu.src, EXT,
        "source is the external address so C1 replies via the switch"
    );
    assert_eq!(syn, tcp((EXT, tu.sport), (C1, 80), wire::TCP_SYN));
    // C1 replies to the external address: back to C2, as if from EXT:8080.
    let mut sa = tcp((C1, 80), (EXT, tu.sport), wire::TCP_SYN | wire::TCP_ACK);
    assert_eq!(n.outbound(&mut sa, t), IN);
    assert_eq!(
        sa,
        tcp((EXT, 8080), (C2, 5555), wire::TCP_SYN | wire::TCP_ACK)
    );
    assert_eq!(n.counters().hairpin, 2);
    assert_eq!(n.sessions(t)[0].kind, Kind::Hairpin);
    // The external address without a published port is the switch's own business.
    let mut own = tcp((C2, 5555), (EXT, 22), wire::TCP_SYN);
    assert_eq!(n.outbound(&mut own, t), Verdict::NotOurs);
}

// --- ICMP errors ----------------------------------------------------------------------

#[test]
fn icmp_time_exceeded_about_tcp_from_a_router() {
    let mut n = nat();
    let t = Instant::now();
    let mut syn = tcp((C1, 40000), (REMOTE, 443), wire::TCP_SYN);
    n.outbound(&mut syn, t);
    let router = Ipv4Addr::new(198, 51, 100, 1);
    // Quote the whole segment, so the quoted TCP checksum can be checked too.
    let mut e = icmp_error(router, EXT, 11, 0, &syn, syn.len());
    assert_eq!(n.inbound(&mut e, t), IN);
    let orig = tcp((C1, 40000), (REMOTE, 443), wire::TCP_SYN);
    assert_eq!(e, icmp_error(router, C1, 11, 0, &orig, orig.len()));
    assert!(checksums_ok(&e));
    // RFC 792 minimum quote: 8 bytes of TCP, no checksum field; still translated.
    let mut short = icmp_error(router, EXT, 3, 4, &syn, 28);
    assert_eq!(n.inbound(&mut short, t), IN);
    assert_eq!(short, icmp_error(router, C1, 3, 4, &orig, 28));
    // An error about nothing we track is left alone.
    let mut unknown = icmp_error(router, EXT, 3, 1, &udp((EXT, 1), (REMOTE, 2), b""), 28);
    let before = unknown.clone();
    assert_eq!(n.inbound(&mut unknown, t), Verdict::NotOurs);
    assert_eq!(unknown, before);
}

#[test]
fn icmp_error_from_a_container_about_a_dnat_flow() {
    let mut n = nat();
    n.add_port_mapping(PortMapping {
        proto: Proto::Udp,
        ..web()
    })
    .unwrap();
    let t = Instant::now();
    let mut q = udp((REMOTE, 40000), (EXT, 8080), b"hello");
    assert_eq!(n.inbound(&mut q, t), IN);
    // Nothing listens on C1:80: C1 answers port unreachable, quoting what it got.
    let mut e = icmp_error(C1, REMOTE, 3, 3, &q, q.len());
    assert_eq!(n.outbound(&mut e, t), OUT);
    let sent = udp((REMOTE, 40000), (EXT, 8080), b"hello");
    assert_eq!(
        e,
        icmp_error(EXT, REMOTE, 3, 3, &sent, sent.len()),
        "speaks for EXT:8080"
    );
    assert!(checksums_ok(&e));
    // Untracked errors from inside are dropped (they would leak the inside address).
    let mut stray = icmp_error(C1, REMOTE, 3, 3, &udp((REMOTE, 1), (C1, 2), b""), 28);
    assert_eq!(
        n.outbound(&mut stray, t),
        Verdict::Drop(DropReason::Untracked)
    );
}

#[test]
fn icmp_error_about_an_echo_request() {
    let mut n = nat();
    let t = Instant::now();
    let (_, b) = echoes_from_c1_and_c2(&mut n, 7, t);
    let id = tuple_of(&b).sport;
    let router = Ipv4Addr::new(198, 51, 100, 1);
    let mut e = icmp_error(router, EXT, 11, 0, &b, b.len());
    assert_eq!(n.inbound(&mut e, t), IN);
    let orig = echo(C2, REMOTE, 7, false);
    assert_eq!(e, icmp_error(router, C2, 11, 0, &orig, orig.len()));
    assert!(checksums_ok(&e));
    assert_ne!(id, 7);
}

// --- Listing and robustness -----------------------------------------------------------

#[test]
fn session_rows_serialize_for_vswitchctl() {
    let mut n = nat();
    let t = Instant::now();
    n.outbound(&mut tcp((C1, 40000), (REMOTE, 443), wire::TCP_SYN), t);
    let rows = n.sessions(t + Duration::from_secs(3));
    let j = serde_json::to_value(&rows).unwrap();
    assert_eq!(
        j,
        serde_json::json!([{
            "proto": "tcp",
            "kind": "snat",
            "original": {"src": "172.17.0.2:40000", "dst": "198.51.100.7:443"},
            "translated": {"src": "203.0.113.1:40000", "dst": "198.51.100.7:443"},
            "state": "SYN_SENT",
            "idle_secs": 3,
            "expires_in_secs": 237
        }])
    );
    assert_eq!(rows[0].state.to_string(), "SYN_SENT");
    let back: Vec<SessionRow> = serde_json::from_value(j).unwrap();
    assert_eq!(back, rows);
}

#[test]
fn drops_what_it_cannot_translate_without_touching_it() {
    let mut n = nat();
    let t = Instant::now();
    let mut frag = udp((C1, 5000), (REMOTE, 53), b"x");
    frag[6] |= 0x20;
    assert_eq!(
        n.outbound(&mut frag, t),
        Verdict::Drop(DropReason::Fragment)
    );
    let mut gre = udp((C1, 5000), (REMOTE, 53), b"x");
    gre[9] = 47;
    assert_eq!(
        n.outbound(&mut gre, t),
        Verdict::Drop(DropReason::Unsupported)
    );
    assert_eq!(n.inbound(&mut gre, t), Verdict::NotOurs);
    let full = udp((C1, 5000), (REMOTE, 53), b"x");
    for len in 0..full.len() {
        let mut p = full[..len].to_vec();
        assert_eq!(n.outbound(&mut p, t), Verdict::Drop(DropReason::Malformed));
        assert_eq!(p, full[..len]);
    }
    let c = n.counters();
    assert_eq!(
        (c.drop_fragment, c.drop_unsupported, c.drop_malformed),
        (1, 1, full.len() as u64)
    );
    assert_eq!(n.session_count(), 0);
}

#[test]
fn rejects_bad_config() {
    let bad = NatConfig {
        port_range: PortRange { first: 9, last: 8 },
        ..NatConfig::default()
    };
    assert!(Nat::new(bad, EXT).is_err());
    assert!(Nat::new(
        NatConfig {
            max_sessions: 0,
            ..NatConfig::default()
        },
        EXT
    )
    .is_err());
}

/// A small xorshift generator: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn fuzz_body_survives_random_and_mutated_input() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seeds: Vec<Vec<u8>> = vec![
        udp((C1, 1024), (REMOTE, 53), b"q"),
        udp((REMOTE, 53), (EXT, 1024), b"a"),
        udp((REMOTE, 1), (EXT, 5353), b"dns"),
        tcp((C1, 1025), (REMOTE, 80), wire::TCP_SYN),
        tcp((REMOTE, 80), (EXT, 1025), wire::TCP_SYN | wire::TCP_ACK),
        tcp((REMOTE, 9), (EXT, 8080), wire::TCP_SYN),
        tcp((C2, 9), (EXT, 8080), wire::TCP_SYN),
        tcp(
            (Ipv4Addr::new(172, 17, 0, 2), 80),
            (REMOTE, 9),
            wire::TCP_ACK,
        ),
        echo(C1, REMOTE, 1026, false),
        echo(REMOTE, EXT, 1026, true),
        icmp_error(REMOTE, EXT, 3, 3, &udp((EXT, 1024), (REMOTE, 53), b"q"), 36),
        icmp_error(C1, REMOTE, 3, 3, &udp((REMOTE, 1), (C1, 80), b"q"), 28),
    ];
    let mut translated = 0;
    for round in 0..4000 {
        let mut script = Vec::new();
        for _ in 0..(rng.next() % 12) {
            let op = (rng.next() % 4) as u8;
            let mut pkt = if round % 8 == 0 {
                (0..rng.next() % 80).map(|_| rng.next() as u8).collect()
            } else {
                seeds[(rng.next() % seeds.len() as u64) as usize].clone()
            };
            for _ in 0..(rng.next() % 3) {
                if !pkt.is_empty() {
                    let i = (rng.next() % pkt.len() as u64) as usize;
                    pkt[i] ^= 1 << (rng.next() % 8);
                }
            }
            if matches!(rng.next() % 5, 0) {
                pkt.truncate((rng.next() % 60) as usize);
            }
            script.push(op);
            script.push(pkt.len().min(255) as u8);
            script.extend(pkt.iter().take(255));
        }
        translated += crate::fuzzing::conntrack(&script);
    }
    assert!(
        translated > 2000,
        "the scripts reach translation: {translated}"
    );
}

#[test]
fn workers_with_disjoint_ranges_never_hand_out_the_same_port() {
    let half = |first, last| NatConfig {
        port_range: PortRange { first, last },
        ..NatConfig::default()
    };
    let mut w0 = nat_with(half(1024, 32767));
    let mut w1 = nat_with(half(32768, 65535));
    let t = Instant::now();
    let mut a = udp((C1, 40000), (REMOTE, 53), b"x");
    let mut b = udp((C2, 40000), (REMOTE, 53), b"x");
    assert_eq!(w0.outbound(&mut a, t), OUT);
    assert_eq!(w1.outbound(&mut b, t), OUT);
    assert!(
        (1024..=32767).contains(&tuple_of(&a).sport),
        "40000 is not w0's to keep"
    );
    assert_eq!(tuple_of(&b).sport, 40000, "kept: in w1's range");
}

#[test]
fn published_ports_answer_on_every_external_address_unless_bound() {
    let mut n = nat();
    let second = Ipv4Addr::new(203, 0, 113, 2);
    n.add_external_ip(second);
    n.add_port_mapping(web()).unwrap();
    n.add_port_mapping(PortMapping {
        host_ip: Some(EXT.into()),
        host_port: 9090,
        ..web()
    })
    .unwrap();
    let t = Instant::now();
    let mut a = tcp((REMOTE, 1), (second, 8080), wire::TCP_SYN);
    assert_eq!(n.inbound(&mut a, t), IN);
    let mut b = tcp((REMOTE, 1), (second, 9090), wire::TCP_SYN);
    assert_eq!(
        n.inbound(&mut b, t),
        Verdict::NotOurs,
        "9090 is bound to EXT only"
    );
    // Same target and remote ip:port as `a`: the target's replies could not be told
    // apart, so the session is refused rather than shared.
    let mut c = tcp((REMOTE, 1), (EXT, 9090), wire::TCP_SYN);
    assert_eq!(n.inbound(&mut c, t), Verdict::Drop(DropReason::Collision));
    let mut d = tcp((REMOTE, 2), (EXT, 9090), wire::TCP_SYN);
    assert_eq!(n.inbound(&mut d, t), IN);
    assert_eq!(n.external_ip(), EXT, "SNAT still uses the first address");
}

/// What the kernel's NAT fast path asks: an established TCP session of an inside flow
/// exists (only once the handshake is done), and using it in the kernel keeps it alive.
#[test]
fn inside_sessions_are_found_established_and_refreshed() {
    let cfg = NatConfig::default();
    let mut n = nat_with(cfg);
    let t = Instant::now();
    let (c, r, x) = ((C1, 40000), (REMOTE, 443), (EXT, 40000));
    let sa = |(ip, port): (Ipv4Addr, u16)| std::net::SocketAddrV4::new(ip, port);
    let ask = |n: &mut Nat, touch, at| n.inside_session(Proto::Tcp, sa(c), sa(r), touch, at);
    assert!(!ask(&mut n, false, t), "no session yet");
    n.outbound(&mut tcp(c, r, wire::TCP_SYN), t);
    assert!(!ask(&mut n, false, t), "SYN sent: not established");
    n.inbound(&mut tcp(r, x, wire::TCP_SYN | wire::TCP_ACK), t);
    n.outbound(&mut tcp(c, r, wire::TCP_ACK), t);
    assert!(ask(&mut n, false, t), "established");
    assert!(
        !n.inside_session(Proto::Tcp, sa(r), sa(c), false, t),
        "an outside tuple is not an inside flow"
    );
    // Refreshed just before it would idle out, it lives on past the first deadline.
    let late = t + cfg.tcp_established;
    assert!(ask(&mut n, true, late));
    assert_eq!(n.expire(late + Duration::from_secs(60)), 0);
    assert!(!ask(
        &mut n,
        false,
        late + cfg.tcp_established + Duration::from_secs(1)
    ));
}

/// A published-port session the kernel opened: the NAT saw only its SYN, stays live
/// (transitory) until both directions carried packets elsewhere, then is established.
#[test]
fn kernel_opened_sessions_become_established_when_both_ways_carried() {
    let cfg = NatConfig::default();
    let mut n = nat_with(cfg);
    n.add_port_mapping(web()).unwrap();
    let t = Instant::now();
    let sa = |(ip, port): (Ipv4Addr, u16)| std::net::SocketAddrV4::new(ip, port);
    let (inside, remote) = (sa((C1, 80)), sa((REMOTE, 40000)));
    assert!(
        !n.kernel_opened(inside, remote, false, false, t),
        "no session yet"
    );
    let mut syn = tcp((REMOTE, 40000), (EXT, 8080), wire::TCP_SYN);
    assert_eq!(n.inbound(&mut syn, t), IN);
    assert!(n.kernel_opened(inside, remote, false, false, t));
    assert!(
        !n.inside_session(Proto::Tcp, inside, remote, false, t),
        "still opening"
    );
    let after_transitory = t + cfg.tcp_transitory + Duration::from_secs(1);
    assert!(n.kernel_opened(inside, remote, true, true, t + Duration::from_secs(1)));
    assert!(n.inside_session(Proto::Tcp, inside, remote, false, after_transitory));
    assert_eq!(
        n.sessions(after_transitory)[0].state,
        SessionState::Established
    );
    // An RST the router sees still closes it; promotion never reopens a closed one.
    let mut rst = tcp((REMOTE, 40000), (EXT, 8080), wire::TCP_RST | wire::TCP_ACK);
    assert_eq!(n.inbound(&mut rst, after_transitory), IN);
    assert!(n.kernel_opened(inside, remote, true, false, after_transitory));
    assert_eq!(n.sessions(after_transitory)[0].state, SessionState::Close);
}

#[test]
fn a_gone_endpoints_sessions_are_flushed_and_its_address_gets_nothing() {
    let mut n = nat();
    let now = Instant::now();
    let mut p = udp((C1, 5000), (REMOTE, 53), b"q");
    assert_eq!(n.outbound(&mut p, now), OUT);
    let mut q = udp((C2, 5001), (REMOTE, 53), b"q");
    assert_eq!(n.outbound(&mut q, now), OUT);
    let c1_port = u16::from_be_bytes([p[20], p[21]]);
    assert_eq!(n.flush_inside(C1), 1);
    assert_eq!(n.session_count(), 1, "C2's session stays");
    // The far host's reply to C1's old mapping finds no session.
    let mut reply = udp((REMOTE, 53), (EXT, c1_port), b"a");
    assert_ne!(n.inbound(&mut reply, now), IN);
}

#[test]
fn one_source_cannot_take_every_session() {
    let mut n = nat_with(NatConfig {
        max_per_source: 3,
        ..NatConfig::default()
    });
    let now = Instant::now();
    for p in 0..3 {
        let mut q = udp((C1, 5000 + p), (REMOTE, 53), b"q");
        assert_eq!(n.outbound(&mut q, now), OUT);
    }
    let mut q = udp((C1, 6000), (REMOTE, 53), b"q");
    assert_eq!(
        n.outbound(&mut q, now),
        Verdict::Drop(DropReason::SourceLimit)
    );
    assert_eq!(n.counters().drop_source_limit, 1);
    let mut other = udp((C2, 6000), (REMOTE, 53), b"q");
    assert_eq!(
        n.outbound(&mut other, now),
        OUT,
        "another container has its share"
    );
    // A session of C1 goes: C1 may open one again.
    assert_eq!(n.flush_inside(C1), 3);
    assert_eq!(n.outbound(&mut q, now), OUT);
}

mod nat66;
