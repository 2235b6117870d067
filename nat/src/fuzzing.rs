//! The body of the `conntrack` fuzz target, here so the unit tests run it too, and a
//! full (non-incremental) checksum verifier used as the oracle: whatever the input, no
//! panic, and a packet whose checksums held before translation still holds them after.
//! IPv4 and IPv6 alike.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::family::Family;
use crate::wire::{self, L4, PROTO_TCP, PROTO_UDP};
use crate::{Nat, NatConfig, PortMapping, PortRange, Proto, Verdict};
use ::wire::checksum::checksum;
use ::wire::ip::PROTO_ICMP;
use ::wire::ipv6::NEXT_HEADER_ICMPV6;
use ::wire::udp;

/// Whether every checksum that can be verified in `pkt` (an IPv4 or IPv6 packet, by
/// its version) is correct, computed from scratch: the IPv4 header, TCP/UDP with the
/// pseudo-header (IPv4 UDP 0 = none; in IPv6 not allowed), ICMP (ICMPv6 with the
/// pseudo-header), and for an ICMP error the quoted IPv4 header and, when the quote is
/// complete, the quoted transport checksum.
pub fn checksums_ok(pkt: &[u8]) -> bool {
    if pkt.first().is_some_and(|b| b >> 4 == 6) {
        checksums_ok_as::<Ipv6Addr>(pkt)
    } else {
        checksums_ok_as::<Ipv4Addr>(pkt)
    }
}

fn checksums_ok_as<A: Family>(pkt: &[u8]) -> bool {
    let Ok(h) = wire::parse_as::<A>(pkt, false) else {
        return false;
    };
    if !header_ok::<A>(&pkt[..h.hlen]) || !l4_ok::<A>(&pkt[..h.end]) {
        return false;
    }
    if h.l4 == L4::IcmpError {
        let q = &pkt[wire::quote_offset(&h)..h.end];
        let Ok(inner) = wire::parse_as::<A>(q, true) else {
            return false;
        };
        if q.len() < inner.hlen || !header_ok::<A>(&q[..inner.hlen]) {
            return false;
        }
        // A quote cut short is not checked past its header.
        if let Ok(whole) = A::ip_header(q, false) {
            if !l4_ok::<A>(&q[..whole.end]) {
                return false;
            }
        }
    }
    true
}

/// wire's pseudo-header sum of either family.
fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            ::wire::checksum::pseudo_header(s.octets(), d.octets(), proto, len)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => ::wire::ipv6::pseudo_header(&s, &d, len as u32, proto),
        _ => 0,
    }
}

/// The IP header's own checksum (IPv6 has none).
fn header_ok<A: Family>(header: &[u8]) -> bool {
    A::HEADER_CHECKSUM.is_none() || checksum(header, 0) == 0
}

/// The transport checksum of the packet `ip` (cut to its end).
fn l4_ok<A: Family>(ip: &[u8]) -> bool {
    let Ok(h) = A::ip_header(ip, false) else {
        return false;
    };
    let Some(l4) = ip.get(h.len..) else {
        return false;
    };
    // The rules as the RFCs state them, not as the translator's Family has them.
    let (src, dst): (IpAddr, IpAddr) = (h.src.into(), h.dst.into());
    let pseudo = |proto| pseudo_header(src, dst, proto, l4.len());
    let v4 = src.is_ipv4();
    match (h.next, v4) {
        (PROTO_TCP, _) => checksum(l4, pseudo(PROTO_TCP)) == 0,
        (PROTO_UDP, _) => {
            // 0 is "no checksum" in IPv4 (RFC 768), invalid in IPv6 (RFC 8200 8.1).
            (v4 && l4.get(udp::field::CHECKSUM..udp::field::PAYLOAD) == Some(&[0, 0][..]))
                || checksum(l4, pseudo(PROTO_UDP)) == 0
        }
        // ICMPv4 covers the message only; ICMPv6 the pseudo-header too (RFC 4443 2.3).
        (PROTO_ICMP, true) => checksum(l4, 0) == 0,
        (NEXT_HEADER_ICMPV6, false) => checksum(l4, pseudo(NEXT_HEADER_ICMPV6)) == 0,
        _ => true,
    }
}

/// The address the fuzz target's NAT masquerades as.
pub const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// Its IPv6 address, while it has one (a step can take it away and give it back).
pub const EXTERNAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1);

/// Runs `data` as a script against a small NAT (4 sessions, 3 ports, two published
/// ports per family): each step is an opcode byte, a length byte and that many packet
/// bytes (outbound, inbound, expire, list, or take away / give back the IPv6 address).
/// Returns how many packets were translated (so tests can see the script did work).
pub fn conntrack(data: &[u8]) -> u64 {
    let cfg = NatConfig {
        max_sessions: 4,
        tcp_established: Duration::from_secs(50),
        tcp_transitory: Duration::from_secs(10),
        udp: Duration::from_secs(5),
        icmp: Duration::from_secs(3),
        port_range: PortRange {
            first: 1024,
            last: 1026,
        },
        max_per_source: 3,
    };
    let Ok(mut nat) = Nat::new(cfg, EXTERNAL) else {
        return 0;
    };
    let _ = nat.add_port_mapping(PortMapping {
        proto: Proto::Tcp,
        host_ip: None,
        host_port: 8080,
        target_ip: Ipv4Addr::new(172, 17, 0, 2).into(),
        target_port: 80,
    });
    let _ = nat.add_port_mapping(PortMapping {
        proto: Proto::Udp,
        host_ip: Some(EXTERNAL.into()),
        host_port: 5353,
        target_ip: Ipv4Addr::new(172, 17, 0, 3).into(),
        target_port: 53,
    });
    nat.set_external_ip6(Some(EXTERNAL6));
    let _ = nat.add_port_mapping(PortMapping {
        proto: Proto::Tcp,
        host_ip: None,
        host_port: 8080,
        target_ip: Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 2).into(),
        target_port: 80,
    });
    let _ = nat.add_port_mapping(PortMapping {
        proto: Proto::Udp,
        host_ip: Some(EXTERNAL6.into()),
        host_port: 5353,
        target_ip: Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 3).into(),
        target_port: 53,
    });
    let start = Instant::now();
    let mut now = start;
    let mut buf = [0u8; 256];
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let pkt = &mut buf[..n];
        pkt.copy_from_slice(bytes);
        let valid = checksums_ok(pkt);
        let v = match op % 5 {
            0 => nat.outbound(pkt, now),
            1 => nat.inbound(pkt, now),
            2 => {
                now += Duration::from_secs(u64::from(*len));
                nat.expire(now);
                continue;
            }
            3 => {
                let _ = nat.sessions(now);
                continue;
            }
            _ => {
                let v6 = nat.external_ip6().is_none().then_some(EXTERNAL6);
                nat.set_external_ip6(v6);
                continue;
            }
        };
        match v {
            Verdict::Translated { .. } => assert!(
                !valid || checksums_ok(pkt),
                "translation broke a checksum: {bytes:02x?} -> {pkt:02x?}"
            ),
            _ => assert_eq!(&pkt[..], bytes, "a packet not translated is unchanged"),
        }
        assert!(nat.session_count() <= 4);
    }
    nat.expire(now + Duration::from_secs(3600));
    assert_eq!(nat.session_count(), 0, "every session expires");
    let c = nat.counters();
    c.to_inside + c.to_outside
}
