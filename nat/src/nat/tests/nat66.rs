//! NAT66: byte-exact against packets the Linux kernel's IPv6 masquerade and DNAT
//! produced (testdata/capture_masquerade6.sh, its output in masquerade6_capture.txt),
//! and against packets built independently with etherparse, every checksum verified by
//! a full recompute; IPv4 and IPv6 side by side.

use super::*;
use etherparse::Icmpv6Type;

const EXT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1);
const REMOTE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 7);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0xfe);
const C1_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 2);
const C2_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 3);
/// The capture's container.
const IN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x16, 5, 0, 0, 0, 0, 2);

/// What the router does besides NAT: decrement the hop limit (no header checksum).
fn hop6(p: &mut [u8]) {
    p[7] -= 1;
}

/// A NAT with an IPv4 and an IPv6 external address.
fn nat6() -> Nat {
    let mut n = nat();
    n.set_external_ip6(Some(EXT6));
    n
}

/// An ICMPv6 error (`typ`, `code`, the 4 bytes behind the checksum `rest`) from `src`
/// to `dst` quoting `quoted` cut to `keep` bytes; etherparse computes the checksum.
fn icmp6_error(
    (src, dst): (Ipv6Addr, Ipv6Addr),
    (typ, code, rest): (u8, u8, u32),
    quoted: &[u8],
    keep: usize,
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6(src.octets(), dst.octets(), 64)
        .icmpv6(Icmpv6Type::Unknown {
            type_u8: typ,
            code_u8: code,
            bytes5to8: rest.to_be_bytes(),
        })
        .write(&mut v, &quoted[..keep.min(quoted.len())])
        .unwrap();
    v
}

const PORT_UNREACHABLE: (u8, u8, u32) = (1, 4, 0);
const HOP_LIMIT_EXCEEDED: (u8, u8, u32) = (3, 0, 0);
const TOO_BIG_1280: (u8, u8, u32) = (2, 0, 1280);
const BAD_HEADER_FIELD_AT_6: (u8, u8, u32) = (4, 0, 6);

fn mapping6(proto: Proto, host_port: u16, target: (Ipv6Addr, u16)) -> PortMapping {
    PortMapping {
        proto,
        host_ip: None,
        host_port,
        target_ip: target.0.into(),
        target_port: target.1,
    }
}

/// `web()` for IPv6: TCP 8080 on every IPv6 external address to [C1_6]:80.
fn web6() -> PortMapping {
    mapping6(Proto::Tcp, 8080, (C1_6, 80))
}

fn sa6(ip: Ipv6Addr, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// What a packet must become: translated and sent out (`Out`) or in (`In`) with these
/// bytes, or refused with this verdict and left as it was.
enum Then {
    Out(Vec<u8>),
    In(Vec<u8>),
    Refused(Verdict),
}

/// A packet from a side, and what must become of it.
type Step = (Side, Vec<u8>, Then);

/// Passes each packet through `n` from its side at `t` and checks what became of it;
/// every translated packet's checksums are verified from scratch.
fn run(n: &mut Nat, t: Instant, steps: Vec<Step>) {
    for (k, (from, mut p, then)) in steps.into_iter().enumerate() {
        let before = p.clone();
        let v = match from {
            Side::Inside => n.outbound(&mut p, t),
            Side::Outside => n.inbound(&mut p, t),
        };
        let (want_v, want_p) = match then {
            Then::Out(b) => (OUT, b),
            Then::In(b) => (IN, b),
            Then::Refused(v) => (v, before),
        };
        assert_eq!((v, &p), (want_v, &want_p), "step {k}");
        if let Verdict::Translated { .. } = v {
            assert!(checksums_ok(&p), "step {k}: {p:02x?}");
        }
    }
}

use Side::{Inside as FROM_IN, Outside as FROM_OUT};
use Then::Refused;

/// From inside, translated and sent out as `want`.
fn out(p: Vec<u8>, want: Vec<u8>) -> Step {
    (FROM_IN, p, Then::Out(want))
}

/// From outside, translated and sent in as `want`.
fn back(p: Vec<u8>, want: Vec<u8>) -> Step {
    (FROM_OUT, p, Then::In(want))
}

/// From inside, translated and sent back in as `want`.
fn hairpin(p: Vec<u8>, want: Vec<u8>) -> Step {
    (FROM_IN, p, Then::In(want))
}

/// From `from`, refused with `v` and left untouched.
fn refused(from: Side, p: Vec<u8>, v: Verdict) -> Step {
    (from, p, Refused(v))
}

// --- Against the kernel -----------------------------------------------------------

/// The capture's packets: for each side, its (timestamp, tcpdump summary, bytes).
fn capture() -> [Vec<(String, String, Vec<u8>)>; 2] {
    let text = include_str!("../../../testdata/masquerade6_capture.txt");
    let mut sides: [Vec<(String, String, Vec<u8>)>; 2] = Default::default();
    let mut side = 0;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            side = usize::from(name.starts_with("outside"));
        } else if let Some((_, bytes)) = line.trim().split_once(":  ") {
            let last = sides[side].last_mut().expect("bytes after a summary");
            last.2.extend(hex(bytes));
        } else if let Some((time, summary)) = line.split_once(' ') {
            sides[side].push((time.into(), summary.into(), Vec::new()));
        }
    }
    sides
}

/// Every packet the kernel translated in capture_masquerade6.sh, fed to the NAT set up
/// as the script's router was, in the order the kernel saw them: the same bytes must
/// come out (the hop limit decremented as the router does). The packet seen first (on
/// either side) is the one before translation.
#[test]
fn matches_every_packet_of_the_kernels_nat66_capture() {
    let mut n = nat6();
    n.add_port_mapping(mapping6(Proto::Udp, 8080, (IN6, 80)))
        .unwrap();
    n.add_port_mapping(mapping6(Proto::Tcp, 8081, (IN6, 81)))
        .unwrap();
    let t = Instant::now();
    let [inside, outside] = capture();
    assert_eq!(inside.len(), 10, "the script's ten packets");
    assert_eq!(inside.len(), outside.len());
    let mut seen = Vec::new();
    for ((t_in, what, bytes_in), (t_out, _, bytes_out)) in inside.iter().zip(&outside) {
        let from_inside = t_in < t_out;
        let (mut p, want) = if from_inside {
            (bytes_in.clone(), bytes_out)
        } else {
            (bytes_out.clone(), bytes_in)
        };
        let v = if from_inside {
            n.outbound(&mut p, t)
        } else {
            n.inbound(&mut p, t)
        };
        hop6(&mut p);
        let to = if from_inside { OUT } else { IN };
        assert_eq!((v, &p), (to, want), "{what}");
        assert!(checksums_ok(&p), "{what}");
        seen.push((from_inside, what.as_str()));
    }
    // Both directions of each kind were compared.
    for (from_inside, kind) in [
        (true, "UDP"),
        (false, "UDP"),
        (true, "Flags [S]"),
        (false, "Flags [S]"),
        (true, "Flags [R.]"),
        (false, "Flags [R.]"),
        (true, "echo request"),
        (false, "echo reply"),
        (true, "unreachable port"),
        (false, "unreachable port"),
    ] {
        assert!(
            seen.iter()
                .any(|&(i, w)| i == from_inside && w.contains(kind)),
            "{kind} from {}",
            if from_inside { "inside" } else { "outside" }
        );
    }
    assert_eq!(n.counters().icmp_errors, 2);
    assert_eq!(n.session_count(), 5);
}

// --- SNAT ---------------------------------------------------------------------------

#[test]
fn snat6_rewrites_source_and_reply_comes_back() {
    let mut n = nat6();
    let t = Instant::now();
    run(&mut n, t, vec![c1_asks_remote6(), remote6_answers_c1()]);
    // Listed with bracketed IPv6 socket addresses, and read back.
    let rows = n.sessions(t);
    let j = serde_json::to_value(&rows).unwrap();
    assert_eq!(j[0]["original"]["src"], "[fd00:17::2]:5000");
    assert_eq!(j[0]["translated"]["src"], "[2001:db8:113::1]:5000");
    assert_eq!(j[0]["translated"]["dst"], "[2001:db8:113::7]:53");
    assert_eq!(serde_json::from_value::<Vec<SessionRow>>(j).unwrap(), rows);
    assert_eq!(
        (rows[0].kind, rows[0].state),
        (Kind::Snat, SessionState::Replied)
    );
}

/// A small UDP datagram of either family.
fn dgram<A: Build>(src: (A, u16), dst: (A, u16)) -> Vec<u8> {
    udp(src, dst, b"x")
}

/// [C1_6]:5000 asks [REMOTE6]:53, its port kept.
fn c1_asks_remote6() -> Step {
    out(
        dgram((C1_6, 5000), (REMOTE6, 53)),
        dgram((EXT6, 5000), (REMOTE6, 53)),
    )
}

/// [REMOTE6]:53 answers [C1_6]:5000 (after [`c1_asks_remote6`]).
fn remote6_answers_c1() -> Step {
    back(
        dgram((REMOTE6, 53), (EXT6, 5000)),
        dgram((REMOTE6, 53), (C1_6, 5000)),
    )
}

/// The first free port of the default range, handed out when the source port is taken.
const FIRST_FREE: u16 = 1024;

#[test]
fn endpoint_independent_mapping_port_preservation_and_filtering6() {
    let mut n = nat6();
    let other = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 99);
    let stranger = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 50);
    run(
        &mut n,
        Instant::now(),
        vec![
            // Port kept; the same mapping for another destination.
            c1_asks_remote6(),
            out(
                dgram((C1_6, 5000), (other, 123)),
                dgram((EXT6, 5000), (other, 123)),
            ),
            // Taken: another port from the range.
            out(
                dgram((C2_6, 5000), (REMOTE6, 53)),
                dgram((EXT6, FIRST_FREE), (REMOTE6, 53)),
            ),
            // Address-and-port-dependent filtering.
            refused(
                FROM_OUT,
                dgram((stranger, 53), (EXT6, 5000)),
                Verdict::NotOurs,
            ),
            refused(
                FROM_OUT,
                dgram((REMOTE6, 54), (EXT6, 5000)),
                Verdict::NotOurs,
            ),
            back(
                dgram((REMOTE6, 53), (EXT6, FIRST_FREE)),
                dgram((REMOTE6, 53), (C2_6, 5000)),
            ),
            back(
                dgram((other, 123), (EXT6, 5000)),
                dgram((other, 123), (C1_6, 5000)),
            ),
        ],
    );
}

#[test]
fn icmpv6_echo_identifier_is_the_port() {
    let mut n = nat6();
    run(
        &mut n,
        Instant::now(),
        vec![
            out(
                echo(C1_6, REMOTE6, 4242, false),
                echo(EXT6, REMOTE6, 4242, false),
            ),
            // The same identifier from another container: another one, and the
            // checksum (which covers the pseudo-header) follows both changes.
            out(
                echo(C2_6, REMOTE6, 4242, false),
                echo(EXT6, REMOTE6, FIRST_FREE, false),
            ),
            back(
                echo(REMOTE6, EXT6, FIRST_FREE, true),
                echo(REMOTE6, C2_6, 4242, true),
            ),
            refused(FROM_OUT, echo(REMOTE6, EXT6, 999, true), Verdict::NotOurs),
            // A ping of the switch itself is the switch's to answer.
            refused(FROM_OUT, echo(REMOTE6, EXT6, 4242, false), Verdict::NotOurs),
        ],
    );
}

#[test]
fn tcp6_follows_the_state_machine_and_its_timeouts() {
    let cfg = NatConfig::default();
    let mut n = nat6();
    let t = Instant::now();
    let (c, r, x) = ((C1_6, 40000), (REMOTE6, 443), (EXT6, 40000));
    let (syn, ack, synack) = (wire::TCP_SYN, wire::TCP_ACK, wire::TCP_SYN | wire::TCP_ACK);
    run(
        &mut n,
        t,
        vec![
            refused(
                FROM_IN,
                tcp(c, r, ack),
                Verdict::Drop(DropReason::Untracked),
            ),
            out(tcp(c, r, syn), tcp(x, r, syn)),
            back(tcp(r, x, synack), tcp(r, c, synack)),
            out(tcp(c, r, ack), tcp(x, r, ack)),
        ],
    );
    assert_eq!(n.sessions(t)[0].state, SessionState::Established);
    let idle_out = t + cfg.tcp_established;
    assert_eq!(n.expire(idle_out), 0);
    assert_eq!(n.expire(idle_out + Duration::from_secs(1)), 1);
    run(&mut n, t, vec![out(tcp(c, r, syn), tcp(x, r, syn))]);
    assert_eq!(n.expire(t + cfg.tcp_transitory + Duration::from_secs(1)), 1);
}

// --- ICMPv6 errors --------------------------------------------------------------------

#[test]
fn icmpv6_errors_about_tcp_whole_or_cut_short() {
    let mut n = nat6();
    let t = Instant::now();
    let orig = tcp((C1_6, 40000), (REMOTE6, 443), wire::TCP_SYN);
    let sent = tcp((EXT6, 40000), (REMOTE6, 443), wire::TCP_SYN);
    let mut steps = vec![out(orig.clone(), sent.clone())];
    for (kind, keep) in [
        (HOP_LIMIT_EXCEEDED, sent.len()),
        // The IPv6 header and the ports only.
        (TOO_BIG_1280, 48),
        // Cut inside the TCP header, before its checksum.
        (BAD_HEADER_FIELD_AT_6, 52),
    ] {
        steps.push(back(
            icmp6_error((ROUTER6, EXT6), kind, &sent, keep),
            icmp6_error((ROUTER6, C1_6), kind, &orig, keep),
        ));
    }
    let other = udp((EXT6, 1), (REMOTE6, 2), b"");
    steps.extend([
        // About nothing tracked: left alone.
        refused(
            FROM_OUT,
            icmp6_error((ROUTER6, EXT6), PORT_UNREACHABLE, &other, 48),
            Verdict::NotOurs,
        ),
        // Too short a quote for the ports.
        refused(
            FROM_OUT,
            icmp6_error((ROUTER6, EXT6), PORT_UNREACHABLE, &sent, 44),
            Verdict::Drop(DropReason::Malformed),
        ),
    ]);
    run(&mut n, t, steps);
    assert_eq!(n.counters().icmp_errors, 3);
}

#[test]
fn icmpv6_error_from_the_quoted_destination_and_about_an_echo() {
    let mut n = nat6();
    let q = udp((C1_6, 5000), (REMOTE6, 7777), b"hello");
    let q_sent = udp((EXT6, 5000), (REMOTE6, 7777), b"hello");
    let e = echo(C2_6, REMOTE6, 4000, false);
    let e_sent = echo(EXT6, REMOTE6, 4000, false);
    let e2 = echo(C1_6, REMOTE6, 4000, false);
    let e2_sent = echo(EXT6, REMOTE6, FIRST_FREE, false);
    run(
        &mut n,
        Instant::now(),
        vec![
            out(q.clone(), q_sent.clone()),
            // REMOTE6 itself answers: the outer source stays REMOTE6.
            back(
                icmp6_error((REMOTE6, EXT6), PORT_UNREACHABLE, &q_sent, q_sent.len()),
                icmp6_error((REMOTE6, C1_6), PORT_UNREACHABLE, &q, q.len()),
            ),
            out(e, e_sent),
            out(e2.clone(), e2_sent.clone()),
            // About an echo whose identifier was changed: put back in the quote.
            back(
                icmp6_error((ROUTER6, EXT6), HOP_LIMIT_EXCEEDED, &e2_sent, 99),
                icmp6_error((ROUTER6, C1_6), HOP_LIMIT_EXCEEDED, &e2, 99),
            ),
        ],
    );
}

#[test]
fn icmpv6_error_from_a_container_about_a_dnat_flow() {
    let mut n = nat6();
    n.add_port_mapping(PortMapping {
        proto: Proto::Udp,
        ..web6()
    })
    .unwrap();
    let sent = udp((REMOTE6, 40000), (EXT6, 8080), b"hello");
    let got = udp((REMOTE6, 40000), (C1_6, 80), b"hello");
    let stray = udp((REMOTE6, 1), (C1_6, 2), b"");
    run(
        &mut n,
        Instant::now(),
        vec![
            back(sent.clone(), got.clone()),
            // Nothing listens on [C1_6]:80: its port unreachable speaks for [EXT6]:8080.
            out(
                icmp6_error((C1_6, REMOTE6), PORT_UNREACHABLE, &got, got.len()),
                icmp6_error((EXT6, REMOTE6), PORT_UNREACHABLE, &sent, sent.len()),
            ),
            // Untracked errors from inside would leak the inside address.
            refused(
                FROM_IN,
                icmp6_error((C1_6, REMOTE6), PORT_UNREACHABLE, &stray, 48),
                Verdict::Drop(DropReason::Untracked),
            ),
        ],
    );
}

// --- Published ports, hairpin -------------------------------------------------------

#[test]
fn published_ports_belong_to_their_targets_family() {
    let mut n = nat6();
    n.add_port_mapping(web()).unwrap();
    n.add_port_mapping(web6())
        .expect("the same port on IPv6: another family");
    let e = n
        .add_port_mapping(mapping6(Proto::Tcp, 8080, (C2_6, 80)))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Bind for [::]:8080/tcp failed: port is already allocated"
    );
    let bound = |ip: IpAddr, port| PortMapping {
        host_ip: Some(ip),
        ..mapping6(Proto::Tcp, port, (C2_6, 80))
    };
    let e = n.add_port_mapping(bound(EXT6.into(), 8080)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Bind for [2001:db8:113::1]:8080/tcp failed: port is already allocated"
    );
    n.add_port_mapping(bound(EXT6.into(), 9090)).unwrap();
    let second6 = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 2);
    n.add_port_mapping(bound(second6.into(), 9090))
        .expect("another host address");
    // Host and target of different families.
    let mixed = bound(EXT.into(), 7070);
    assert_eq!(
        n.add_port_mapping(mixed),
        Err(NatError::FamilyMismatch(mixed))
    );
    assert!(n
        .add_port_mapping(mixed)
        .unwrap_err()
        .to_string()
        .contains("same IP family"));
    let mixed = PortMapping {
        host_ip: Some(EXT6.into()),
        ..web()
    };
    assert_eq!(
        n.add_port_mapping(mixed),
        Err(NatError::FamilyMismatch(mixed))
    );
    assert_eq!(n.port_mappings().count(), 4);
    // Removal names the binding and its family: the IPv4 mapping stays.
    assert_eq!(n.remove_port_mapping(&web6()), Some(web6()));
    assert_eq!(n.remove_port_mapping(&web6()), None);
    assert!(n.port_mappings().any(|m| *m == web()));
}

#[test]
fn dnat6_translates_to_target_and_back_and_unpublishing_ends_it() {
    let mut n = nat6();
    n.add_port_mapping(web6()).unwrap();
    let t = Instant::now();
    let (r, x, c) = ((REMOTE6, 40000), (EXT6, 8080), (C1_6, 80));
    let (syn, ack, synack) = (wire::TCP_SYN, wire::TCP_ACK, wire::TCP_SYN | wire::TCP_ACK);
    run(
        &mut n,
        t,
        vec![
            back(tcp(r, x, syn), tcp(r, c, syn)),
            out(tcp(c, r, synack), tcp(x, r, synack)),
            // The IPv6 mapping is no IPv4 one.
            refused(
                FROM_OUT,
                tcp((REMOTE, 40000), (EXT, 8080), syn),
                Verdict::NotOurs,
            ),
            // SNAT never hands out the published port.
            out(tcp((C2_6, 8080), r, syn), tcp((EXT6, FIRST_FREE), r, syn)),
        ],
    );
    let row = &n.sessions(t)[0];
    assert_eq!((row.kind, row.translated.dst), (Kind::Dnat, sa6(C1_6, 80)));
    assert_eq!(n.remove_port_mapping(&web6()), Some(web6()));
    run(
        &mut n,
        t,
        vec![refused(FROM_OUT, tcp(r, x, ack), Verdict::NotOurs)],
    );
}

#[test]
fn hairpin6_comes_back_inside_from_the_external_address() {
    let mut n = nat6();
    n.add_port_mapping(web6()).unwrap();
    let t = Instant::now();
    let (client, published, target) = ((C2_6, 5555), (EXT6, 8080), (C1_6, 80));
    let (syn, synack) = (wire::TCP_SYN, wire::TCP_SYN | wire::TCP_ACK);
    run(
        &mut n,
        t,
        vec![
            // Delivered inside to the target, from the external address (the client's
            // port kept) so that the target answers through the switch.
            hairpin(tcp(client, published, syn), tcp((EXT6, 5555), target, syn)),
            hairpin(
                tcp(target, (EXT6, 5555), synack),
                tcp(published, client, synack),
            ),
            // The external address without a published port is the switch's own.
            refused(FROM_IN, tcp(client, (EXT6, 22), syn), Verdict::NotOurs),
        ],
    );
    assert_eq!(n.counters().hairpin, 2);
    assert_eq!(n.sessions(t)[0].kind, Kind::Hairpin);
    assert_eq!(n.flush_inside(C1_6), 1, "the target's hairpin session");
}

// --- The two families together ----------------------------------------------------------

#[test]
fn ipv4_and_ipv6_sessions_do_not_interfere() {
    let mut n = nat6();
    let t = Instant::now();
    // The same port in both families: each has its own port space.
    run(
        &mut n,
        t,
        vec![
            out(
                dgram((C1, 5000), (REMOTE, 53)),
                dgram((EXT, 5000), (REMOTE, 53)),
            ),
            c1_asks_remote6(),
            remote6_answers_c1(),
        ],
    );
    let srcs: Vec<SocketAddr> = n.sessions(t).iter().map(|r| r.translated.src).collect();
    assert_eq!(
        srcs,
        vec![SocketAddr::new(EXT.into(), 5000), sa6(EXT6, 5000)]
    );
    // The IPv6 container goes; the IPv4 one keeps its session.
    assert_eq!(n.flush_inside(C1_6), 1);
    run(
        &mut n,
        t,
        vec![
            refused(
                FROM_OUT,
                dgram((REMOTE6, 53), (EXT6, 5000)),
                Verdict::NotOurs,
            ),
            back(
                dgram((REMOTE, 53), (EXT, 5000)),
                dgram((REMOTE, 53), (C1, 5000)),
            ),
        ],
    );
    assert_eq!(n.flush_inside(C1), 1);
    assert_eq!(n.session_count(), 0);
}

#[test]
fn max_sessions_counts_both_families_and_evicts_the_oldest_of_either() {
    let mut n = nat_with(NatConfig {
        max_sessions: 2,
        ..NatConfig::default()
    });
    n.set_external_ip6(Some(EXT6));
    let t = Instant::now();
    let at = |secs| t + Duration::from_secs(secs);
    let open =
        |n: &mut Nat, p: Vec<u8>, secs| assert_eq!(n.outbound(&mut p.clone(), at(secs)), OUT);
    let ports = |n: &Nat, secs| -> Vec<u16> {
        n.sessions(at(secs))
            .iter()
            .map(|r| r.original.src.port())
            .collect()
    };
    open(&mut n, udp((C1_6, 1001), (REMOTE6, 53), b"x"), 0);
    open(&mut n, udp((C1, 1002), (REMOTE, 53), b"x"), 1);
    open(&mut n, udp((C1, 1003), (REMOTE, 53), b"x"), 2);
    assert_eq!(
        ports(&n, 2),
        vec![1002, 1003],
        "the IPv6 session was the oldest"
    );
    assert_eq!(n.counters().sessions_evicted, 1);
    // Used again, 1002 is no longer the oldest: 1003 goes for a new IPv6 session.
    open(&mut n, udp((C1, 1002), (REMOTE, 53), b"x"), 3);
    open(&mut n, udp((C1_6, 1004), (REMOTE6, 53), b"x"), 4);
    assert_eq!(
        ports(&n, 4),
        vec![1002, 1004],
        "merged least recently used first"
    );
    assert_eq!(n.counters().sessions_evicted, 2);
}

// --- What is not translated ---------------------------------------------------------------

#[test]
fn no_ipv6_external_address_drops_ipv6_and_counts_it() {
    let mut n = nat();
    let t = Instant::now();
    let no_address = Verdict::Drop(DropReason::NoExternalAddress);
    let v6 = |ext: Ipv6Addr| udp((ext, 5000), (REMOTE6, 53), b"q");
    let (v6_out, v6_back) = (v6(C1_6), udp((REMOTE6, 53), (EXT6, 5000), b"a"));
    assert_eq!(n.external_ip6(), None);
    run(
        &mut n,
        t,
        vec![
            refused(FROM_IN, v6_out.clone(), no_address),
            refused(FROM_OUT, v6_back, no_address),
            out(
                udp((C1, 5000), (REMOTE, 53), b"q"),
                udp((EXT, 5000), (REMOTE, 53), b"q"),
            ),
        ],
    );
    assert_eq!(n.counters().drop_no_external_address, 2);
    assert_eq!(n.session_count(), 1, "IPv4 goes on");
    // Given an address, IPv6 is translated; another address ends its sessions.
    n.set_external_ip6(Some(EXT6));
    run(&mut n, t, vec![out(v6_out.clone(), v6(EXT6))]);
    let second6 = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 2);
    n.set_external_ip6(Some(second6));
    assert_eq!(n.session_count(), 1, "only the IPv4 session is left");
    run(&mut n, t, vec![out(v6_out.clone(), v6(second6))]);
    n.set_external_ip6(None);
    assert_eq!(n.session_count(), 1);
    run(&mut n, t, vec![refused(FROM_IN, v6_out, no_address)]);
    // An IPv6 address added while there is none becomes the source.
    n.add_external_ip(EXT6);
    assert_eq!((n.external_ip(), n.external_ip6()), (EXT, Some(EXT6)));
}

#[test]
fn ipv6_udp_without_checksum_is_dropped() {
    let mut n = nat6();
    let zero = |mut p: Vec<u8>| {
        p[46..48].fill(0);
        p
    };
    let dropped = || Refused(Verdict::Drop(DropReason::UdpZeroChecksum));
    run(
        &mut n,
        Instant::now(),
        vec![
            (
                FROM_IN,
                zero(udp((C1_6, 5000), (REMOTE6, 53), b"x")),
                dropped(),
            ),
            (
                FROM_OUT,
                zero(udp((REMOTE6, 53), (EXT6, 5000), b"x")),
                dropped(),
            ),
        ],
    );
    assert_eq!(n.counters().drop_udp_zero_checksum, 2);
    assert_eq!(n.session_count(), 0);
}

/// `p` with an 8-byte extension header `next_header` between the fixed header and the
/// transport header.
fn with_extension_header(p: &[u8], next_header: u8) -> Vec<u8> {
    let mut v = p[..40].to_vec();
    let upper = v[6];
    v[6] = next_header;
    let len = u16::from_be_bytes([v[4], v[5]]) + 8;
    v[4..6].copy_from_slice(&len.to_be_bytes());
    let ext = match next_header {
        // Fragment: offset 0, no more fragments (an atomic fragment), identification.
        44 => [upper, 0, 0, 0, 0, 0, 0x12, 0x34],
        // Routing: type 0, no segments left.
        43 => [upper, 0, 0, 0, 0, 0, 0, 0],
        // Hop-by-hop and destination options: one PadN option of 4 bytes.
        _ => [upper, 0, 1, 4, 0, 0, 0, 0],
    };
    v.extend(ext);
    v.extend(&p[40..]);
    v
}

#[test]
fn extension_headers_and_fragments_are_dropped_and_counted() {
    let mut n = nat6();
    let t = Instant::now();
    let out = udp((C1_6, 5000), (REMOTE6, 53), b"x");
    let back = udp((REMOTE6, 53), (EXT6, 5000), b"x");
    for (nh, outbound, inbound) in [
        (0, DropReason::ExtensionHeader, None),
        (43, DropReason::ExtensionHeader, None),
        (60, DropReason::ExtensionHeader, None),
        (44, DropReason::Fragment, Some(DropReason::Fragment)),
    ] {
        let mut p = with_extension_header(&out, nh);
        let before = p.clone();
        assert_eq!(n.outbound(&mut p, t), Verdict::Drop(outbound), "{nh}");
        assert_eq!(p, before);
        let mut p = with_extension_header(&back, nh);
        let before = p.clone();
        let want = inbound.map_or(Verdict::NotOurs, Verdict::Drop);
        assert_eq!(n.inbound(&mut p, t), want, "{nh}");
        assert_eq!(p, before);
    }
    let c = n.counters();
    assert_eq!((c.drop_extension_header, c.drop_fragment), (3, 2));
    assert_eq!(n.session_count(), 0);
}

#[test]
fn malformed_and_unsupported_ipv6_is_refused_untouched() {
    let mut n = nat6();
    let full = udp((C1_6, 5000), (REMOTE6, 53), b"x");
    let mut steps: Vec<Step> = (0..full.len())
        .map(|len| {
            let cut = full[..len].to_vec();
            refused(FROM_IN, cut, Verdict::Drop(DropReason::Malformed))
        })
        .collect();
    // Neighbor Discovery and an echo with a code are not NAT's.
    let mut ns = Vec::new();
    PacketBuilder::ipv6(C1_6.octets(), REMOTE6.octets(), 255)
        .icmpv6(Icmpv6Type::Unknown {
            type_u8: 135,
            code_u8: 0,
            bytes5to8: [0; 4],
        })
        .write(&mut ns, &EXT6.octets())
        .unwrap();
    let mut coded = echo(C1_6, REMOTE6, 1, false);
    coded[41] = 1;
    let unsupported = || Refused(Verdict::Drop(DropReason::Unsupported));
    steps.extend([
        (FROM_IN, ns.clone(), unsupported()),
        refused(FROM_OUT, ns, Verdict::NotOurs),
        (FROM_IN, coded, unsupported()),
    ]);
    run(&mut n, Instant::now(), steps);
    assert_eq!(n.session_count(), 0);
    assert_eq!(n.counters().drop_malformed, full.len() as u64);
}

#[test]
fn checksum_oracle_catches_broken_ipv6_checksums() {
    let good = [
        udp((C1_6, 5000), (REMOTE6, 53), b"query"),
        tcp((C1_6, 5000), (REMOTE6, 80), wire::TCP_SYN),
        echo(C1_6, REMOTE6, 9, false),
    ];
    for p in &good {
        assert!(checksums_ok(p));
        let mut bad = p.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(!checksums_ok(&bad), "{bad:02x?}");
        // The same transport bytes under another source: the pseudo-header counts.
        let mut moved = p.clone();
        moved[23] ^= 1;
        assert!(!checksums_ok(&moved), "{moved:02x?}");
    }
    let e = icmp6_error((ROUTER6, C1_6), PORT_UNREACHABLE, &good[0], good[0].len());
    assert!(checksums_ok(&e));
    // A complete quote's transport checksum is checked too: break it, and make the
    // outer ICMPv6 checksum right again.
    let mut quote_broken = e.clone();
    *quote_broken.last_mut().unwrap() ^= 1;
    quote_broken[42..44].fill(0);
    let c = ::wire::icmpv6::message_checksum(&ROUTER6, &C1_6, &quote_broken[40..]);
    quote_broken[42..44].copy_from_slice(&c.to_be_bytes());
    assert!(!checksums_ok(&quote_broken));
    // Cut short, only the quoted header is there to check.
    let cut = icmp6_error((ROUTER6, C1_6), PORT_UNREACHABLE, &good[0], 48);
    assert!(checksums_ok(&cut));
}

/// The IPv6 seeds of the fuzz body's script: its NAT's flows, published ports and
/// errors, and what it must refuse.
fn fuzz_seeds6() -> Vec<Vec<u8>> {
    use crate::fuzzing::EXTERNAL6 as X6;
    let t6 = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 2);
    let (syn, synack) = (wire::TCP_SYN, wire::TCP_SYN | wire::TCP_ACK);
    let q_out = udp((X6, 1024), (REMOTE6, 53), b"q");
    let q_in = udp((REMOTE6, 1), (t6, 80), b"q");
    vec![
        udp((C1_6, 1024), (REMOTE6, 53), b"q"),
        udp((REMOTE6, 53), (X6, 1024), b"a"),
        udp((REMOTE6, 1), (X6, 5353), b"dns"),
        tcp((C1_6, 1025), (REMOTE6, 80), syn),
        tcp((REMOTE6, 80), (X6, 1025), synack),
        tcp((REMOTE6, 9), (X6, 8080), syn),
        tcp((C2_6, 9), (X6, 8080), syn),
        tcp((t6, 80), (REMOTE6, 9), wire::TCP_ACK),
        echo(C1_6, REMOTE6, 1026, false),
        echo(REMOTE6, X6, 1026, true),
        icmp6_error((REMOTE6, X6), PORT_UNREACHABLE, &q_out, 49),
        icmp6_error((t6, REMOTE6), PORT_UNREACHABLE, &q_in, 48),
        with_extension_header(&udp((C1_6, 1024), (REMOTE6, 53), b"q"), 0),
        with_extension_header(&udp((REMOTE6, 53), (X6, 1024), b"a"), 44),
        udp((C1, 1024), (REMOTE, 53), b"q"),
    ]
}

/// The fuzz body over scripts of the IPv6 seeds, bit-flipped and cut, and random bytes
/// that claim to be IPv6; now and then the IPv6 address goes and comes back (op 4).
#[test]
fn fuzz_body_survives_random_and_mutated_ipv6_input() {
    let seeds = fuzz_seeds6();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let packet = |rng: &mut Rng, round: u32| -> Vec<u8> {
        let mut p: Vec<u8> = match round % 8 {
            0 => std::iter::once(0x60)
                .chain((1..rng.next() % 80).map(|_| rng.next() as u8))
                .collect(),
            _ => seeds[(rng.next() % seeds.len() as u64) as usize].clone(),
        };
        let flips = rng.next() % 3;
        (0..flips).for_each(|_| {
            let (at, bit) = (rng.next() as usize % p.len(), rng.next() % 8);
            p[at] ^= 1 << bit;
        });
        if rng.next().is_multiple_of(5) {
            p.truncate((rng.next() % 70) as usize);
        }
        p
    };
    let translated: u64 = (0..4000)
        .map(|round| {
            let steps = rng.next() % 12;
            let script: Vec<u8> = (0..steps)
                .flat_map(|_| {
                    let op = (rng.next() % 5) as u8;
                    let p = packet(&mut rng, round);
                    let n = p.len().min(255);
                    [op, n as u8].into_iter().chain(p.into_iter().take(n))
                })
                .collect();
            crate::fuzzing::conntrack(&script)
        })
        .sum();
    assert!(
        translated > 1000,
        "the scripts reach translation: {translated}"
    );
}
