//! The body of the `conntrack` fuzz target, here so the unit tests run it too, and a
//! full (non-incremental) checksum verifier used as the oracle: whatever the input, no
//! panic, and a packet whose checksums held before translation still holds them after.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::wire::{self, L4, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::{Nat, NatConfig, PortMapping, PortRange, Proto, Verdict};
use ::wire::checksum::{checksum, pseudo_header};
use ::wire::ip::Ipv4Packet;
use ::wire::udp;

/// Whether every checksum that can be verified in `pkt` (an IPv4 packet) is correct,
/// computed from scratch: the IPv4 header, TCP/UDP with the pseudo-header (UDP 0 =
/// none), ICMP, and for an ICMP error the quoted IPv4 header and, when the quote is
/// complete, the quoted transport checksum.
pub fn checksums_ok(pkt: &[u8]) -> bool {
    let Ok(h) = wire::parse(pkt, false) else {
        return false;
    };
    if checksum(&pkt[..h.ihl], 0) != 0 {
        return false;
    }
    if !l4_ok(&pkt[..h.end], h.ihl) {
        return false;
    }
    if h.l4 == L4::IcmpError {
        let q = &pkt[wire::quote_offset(&h)..h.end];
        let Ok(inner) = wire::parse(q, true) else {
            return false;
        };
        if q.len() < inner.ihl || checksum(&q[..inner.ihl], 0) != 0 {
            return false;
        }
        // A quote cut short is not checked past its header.
        if let Ok(whole) = Ipv4Packet::new_checked(q) {
            if !l4_ok(whole.packet(), inner.ihl) {
                return false;
            }
        }
    }
    true
}

fn l4_ok(ip: &[u8], ihl: usize) -> bool {
    let Ok(p) = Ipv4Packet::new_checked(ip) else {
        return false;
    };
    let Some(l4) = ip.get(ihl..) else {
        return false;
    };
    let (s, d) = (p.src().octets(), p.dst().octets());
    match p.proto() {
        PROTO_TCP => checksum(l4, pseudo_header(s, d, PROTO_TCP, l4.len())) == 0,
        PROTO_UDP => {
            l4.get(udp::field::CHECKSUM..udp::field::PAYLOAD) == Some(&[0, 0][..])
                || checksum(l4, pseudo_header(s, d, PROTO_UDP, l4.len())) == 0
        }
        PROTO_ICMP => checksum(l4, 0) == 0,
        _ => true,
    }
}

/// The address the fuzz target's NAT masquerades as.
pub const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

/// Runs `data` as a script against a small NAT (4 sessions, 3 ports, one published
/// port): each step is an opcode byte, a length byte and that many packet bytes.
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
        target_ip: Ipv4Addr::new(172, 17, 0, 2),
        target_port: 80,
    });
    let _ = nat.add_port_mapping(PortMapping {
        proto: Proto::Udp,
        host_ip: Some(EXTERNAL),
        host_port: 5353,
        target_ip: Ipv4Addr::new(172, 17, 0, 3),
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
        let v = match op % 4 {
            0 => nat.outbound(pkt, now),
            1 => nat.inbound(pkt, now),
            2 => {
                now += Duration::from_secs(u64::from(*len));
                nat.expire(now);
                continue;
            }
            _ => {
                let _ = nat.sessions(now);
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
