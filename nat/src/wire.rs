//! The few header fields NAT reads and rewrites, as views over the packet bytes, for
//! either IP family ([`Family`]): the addresses, the TCP/UDP ports, the ICMP echo
//! identifier and the packet an ICMP error quotes. Every read is bounds-checked; a
//! short or odd packet is an error value.

#[cfg(test)]
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use ::wire::Delta;

use crate::family::{with_octets, Family};

/// The transport fields NAT reads, as ranges (a truncated quote may lack some): each
/// one is wire's offset, named once there. ICMPv6 keeps type, code, checksum,
/// identifier and an error's quote where ICMPv4 does.
mod field {
    use ::wire::{icmp, icmpv6, tcp, udp};
    use std::ops::Range;

    const fn word(at: usize) -> Range<usize> {
        at..at + 2
    }

    /// TCP/UDP source and destination port (the same place in both).
    pub const SPORT: Range<usize> = word(udp::field::SRC_PORT);
    pub const DPORT: Range<usize> = word(udp::field::DST_PORT);
    pub const TCP_FLAGS: usize = tcp::field::FLAGS;
    pub const TCP_CHECKSUM: Range<usize> = word(tcp::field::CHECKSUM);
    pub const UDP_CHECKSUM: Range<usize> = word(udp::field::CHECKSUM);
    pub const ICMP_TYPE: usize = icmp::field::TYPE;
    pub const ICMP_CODE: usize = icmp::field::CODE;
    pub const ICMP_CHECKSUM: Range<usize> = word(icmp::field::CHECKSUM);
    pub const ICMP_ID: Range<usize> = word(icmp::field::ECHO_IDENT);
    /// An ICMP error's quoted packet starts after type, code, checksum and 4 unused bytes.
    pub const ICMP_ERROR_QUOTE: usize = icmp::field::DATA;

    const _: () = assert!(
        icmp::field::TYPE == icmpv6::field::TYPE
            && icmp::field::CODE == icmpv6::field::CODE
            && icmp::field::CHECKSUM == icmpv6::field::CHECKSUM
            && icmp::field::ECHO_IDENT == icmpv6::field::ECHO_IDENT
            && icmp::field::DATA == icmpv6::field::DATA
    );
}

use ::wire::ip::{ICMP_HLEN, TCP_HLEN, UDP_HLEN};
pub use ::wire::ip::{PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// The transport protocols NAT tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    /// ICMP echo (ICMPv4 or ICMPv6, by the session's addresses), keyed by its
    /// identifier.
    Icmp,
}

impl Proto {
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        })
    }
}

/// Addresses and ports of one packet. For ICMP echo the identifier is the source
/// "port" of a request and the destination "port" of a reply (the other is 0), so a
/// reply's tuple is the reverse of its request's, as for TCP and UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple<A> {
    pub src: A,
    pub sport: u16,
    pub dst: A,
    pub dport: u16,
}

impl<A> Tuple<A> {
    pub fn reversed(self) -> Tuple<A> {
        Tuple {
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
}

/// What follows the IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        flags: u8,
    },
    Udp,
    IcmpEcho {
        reply: bool,
    },
    /// Destination unreachable, time exceeded, parameter problem (and for ICMPv6
    /// packet too big): quotes a packet.
    IcmpError,
}

/// Why a packet could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Too short, not of the family, or lengths that do not add up.
    Malformed,
    /// A fragment: ports are not in every piece, so it cannot be matched.
    Fragment,
    /// An IPv6 extension header other than a fragment header behind the fixed one.
    ExtensionHeader,
    /// IPv6 UDP with a checksum of 0, which IPv6 does not allow.
    ZeroChecksum,
    /// A protocol (or ICMP type) NAT does not translate.
    Unsupported,
}

/// The parsed headers of a packet (or of the packet quoted by an ICMP error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers<A> {
    /// IP header length in bytes (40 for IPv6).
    pub hlen: usize,
    /// End of the IP packet (its stated length, or the end of a truncated quote).
    pub end: usize,
    pub proto: Proto,
    pub l4: L4,
    pub tuple: Tuple<A>,
}

pub(crate) fn be16(b: &[u8], r: std::ops::Range<usize>) -> Option<u16> {
    let s = b.get(r)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// Parses the IPv4 packet at the start of `pkt`; see [`parse_as`].
#[cfg(test)]
pub fn parse(pkt: &[u8], quoted: bool) -> Result<Headers<Ipv4Addr>, ParseError> {
    parse_as(pkt, quoted)
}

/// Parses the packet of family `A` at the start of `pkt`. With `quoted`, the packet is
/// the one an ICMP error carries: it may be truncated after 8 bytes of transport
/// header, its length may exceed what is present, and it must not itself be an ICMP
/// error.
pub fn parse_as<A: Family>(pkt: &[u8], quoted: bool) -> Result<Headers<A>, ParseError> {
    use ParseError::*;
    let ip = A::ip_header(pkt, quoted)?;
    let l4b = pkt.get(ip.len..ip.end).ok_or(Malformed)?;
    // A quote needs only the ports (RFC 792 guarantees 8 bytes of them).
    let need = |full: usize| if quoted { ICMP_HLEN } else { full };
    let (proto, l4, sport, dport) = match ip.next {
        PROTO_TCP => {
            if l4b.len() < need(TCP_HLEN) {
                return Err(Malformed);
            }
            let flags = l4b.get(field::TCP_FLAGS).copied().unwrap_or(0);
            let (s, d) = ports(l4b).ok_or(Malformed)?;
            (Proto::Tcp, L4::Tcp { flags }, s, d)
        }
        PROTO_UDP => {
            if l4b.len() < need(UDP_HLEN) {
                return Err(Malformed);
            }
            if !quoted && !A::UDP_CHECKSUM_OPTIONAL && be16(l4b, field::UDP_CHECKSUM) == Some(0) {
                return Err(ZeroChecksum);
            }
            let (s, d) = ports(l4b).ok_or(Malformed)?;
            (Proto::Udp, L4::Udp, s, d)
        }
        p if p == A::ICMP.proto => {
            if l4b.len() < ICMP_HLEN {
                return Err(Malformed);
            }
            let id = be16(l4b, field::ICMP_ID).ok_or(Malformed)?;
            match (l4b[field::ICMP_TYPE], l4b[field::ICMP_CODE]) {
                (t, 0) if t == A::ICMP.echo_request => {
                    (Proto::Icmp, L4::IcmpEcho { reply: false }, id, 0)
                }
                (t, 0) if t == A::ICMP.echo_reply => {
                    (Proto::Icmp, L4::IcmpEcho { reply: true }, 0, id)
                }
                (t, _) if A::ICMP.errors.contains(&t) && !quoted => {
                    (Proto::Icmp, L4::IcmpError, 0, 0)
                }
                _ => return Err(Unsupported),
            }
        }
        _ => return Err(Unsupported),
    };
    Ok(Headers {
        hlen: ip.len,
        end: ip.end,
        proto,
        l4,
        tuple: Tuple {
            src: ip.src,
            sport,
            dst: ip.dst,
            dport,
        },
    })
}

fn ports(l4: &[u8]) -> Option<(u16, u16)> {
    Some((be16(l4, field::SPORT)?, be16(l4, field::DPORT)?))
}

/// Offset of the packet an ICMP error quotes, relative to the outer IP header.
pub fn quote_offset<A>(h: &Headers<A>) -> usize {
    h.hlen + field::ICMP_ERROR_QUOTE
}

/// Writes `v` at `r` if the bytes are there, recording the change in `d`. Returns the
/// old value.
fn put16(b: &mut [u8], r: std::ops::Range<usize>, v: u16, d: &mut Delta) -> Option<u16> {
    let s = b.get_mut(r)?;
    let old = u16::from_be_bytes([s[0], s[1]]);
    s.copy_from_slice(&v.to_be_bytes());
    d.word(old, v);
    Some(old)
}

/// Writes address `new` over `old` at `r` if the bytes are there, recording the change
/// word by word in `d`.
fn put_addr<A: Family>(pkt: &mut [u8], r: std::ops::Range<usize>, old: A, new: A, d: &mut Delta) {
    if old == new {
        return;
    }
    let Some(s) = pkt.get_mut(r) else {
        return;
    };
    with_octets(new.into(), |n| {
        for (o, n) in s.chunks_exact(2).zip(n.chunks_exact(2)) {
            d.word(
                u16::from_be_bytes([o[0], o[1]]),
                u16::from_be_bytes([n[0], n[1]]),
            );
        }
        s.copy_from_slice(n);
    });
}

/// Rewrites the packet described by `h` (parsed from `pkt`) to carry `new` instead of
/// `h.tuple`, updating the IPv4 header checksum and the transport checksum
/// incrementally (ICMPv6's too for the addresses: it covers the pseudo-header). For an
/// ICMP error, `quote` is what rewriting its quoted packet changed, for the ICMP
/// checksum; else `Delta::default()`. A UDP checksum of 0 (none) stays 0. Fields beyond
/// the end of a truncated quote are left alone. Returns every 16-bit change made, for a
/// checksum that covers the whole packet (the ICMP checksum of an error quoting it).
pub fn rewrite<A: Family>(pkt: &mut [u8], h: &Headers<A>, new: &Tuple<A>, quote: Delta) -> Delta {
    let old = h.tuple;
    let mut total = Delta::default();
    let mut addrs = Delta::default();
    put_addr(pkt, A::SRC, old.src, new.src, &mut addrs);
    put_addr(pkt, A::DST, old.dst, new.dst, &mut addrs);
    total = total.plus(addrs);
    if let Some(r) = A::HEADER_CHECKSUM {
        if let Some(c) = be16(pkt, r.clone()) {
            put16(pkt, r, addrs.apply(c), &mut total);
        }
    }
    // What an ICMP checksum owes the addresses: nothing unless it covers them.
    let icmp_pseudo = |d: Delta| {
        if A::ICMP.pseudo_header {
            d.plus(addrs)
        } else {
            d
        }
    };
    let Some(l4) = pkt.get_mut(h.hlen..h.end) else {
        return total;
    };
    let mut ports = Delta::default();
    match h.l4 {
        L4::Tcp { .. } | L4::Udp => {
            if old.sport != new.sport {
                put16(l4, field::SPORT, new.sport, &mut ports);
            }
            if old.dport != new.dport {
                put16(l4, field::DPORT, new.dport, &mut ports);
            }
            total = total.plus(ports);
            let both = addrs.plus(ports);
            if matches!(h.l4, L4::Tcp { .. }) {
                if let Some(c) = be16(l4, field::TCP_CHECKSUM) {
                    put16(l4, field::TCP_CHECKSUM, both.apply(c), &mut total);
                }
            } else if let Some(c) = be16(l4, field::UDP_CHECKSUM) {
                if c != 0 {
                    // 0 means "no checksum"; a computed 0 is sent as all ones (RFC 768).
                    let n = ::wire::checksum::udp_sent(both.apply(c));
                    put16(l4, field::UDP_CHECKSUM, n, &mut total);
                }
            }
        }
        L4::IcmpEcho { reply } => {
            let (o, n) = if reply {
                (old.dport, new.dport)
            } else {
                (old.sport, new.sport)
            };
            if o != n {
                put16(l4, field::ICMP_ID, n, &mut ports);
            }
            total = total.plus(ports);
            if let Some(c) = be16(l4, field::ICMP_CHECKSUM) {
                put16(
                    l4,
                    field::ICMP_CHECKSUM,
                    icmp_pseudo(ports).apply(c),
                    &mut total,
                );
            }
        }
        L4::IcmpError => {
            if let Some(c) = be16(l4, field::ICMP_CHECKSUM) {
                let mut ignored = Delta::default();
                put16(
                    l4,
                    field::ICMP_CHECKSUM,
                    icmp_pseudo(quote).apply(c),
                    &mut ignored,
                );
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp() -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0x00, 0x1c, 0, 1, 0x40, 0x00, 64, 17, 0, 0, 172, 16, 0, 2, 198, 51, 100, 7,
        ];
        p.extend([0x13, 0x88, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00]);
        p
    }

    #[test]
    fn parses_udp_and_allows_trailing_padding() {
        let mut p = udp();
        p.extend([0u8; 18]); // Ethernet minimum-frame padding
        let h = parse(&p, false).expect("valid");
        assert_eq!(h.end, 28);
        assert_eq!(h.proto, Proto::Udp);
        assert_eq!(h.tuple.sport, 5000);
        assert_eq!(h.tuple.dport, 53);
        assert_eq!(h.tuple.dst, Ipv4Addr::new(198, 51, 100, 7));
    }

    #[test]
    fn rejects_what_it_cannot_translate() {
        let p = udp();
        for n in 0..p.len() {
            assert_eq!(parse(&p[..n], false), Err(ParseError::Malformed), "len {n}");
        }
        let mut f = udp();
        f[6] = 0x20; // more fragments
        assert_eq!(parse(&f, false), Err(ParseError::Fragment));
        let mut g = udp();
        g[9] = 47; // GRE
        assert_eq!(parse(&g, false), Err(ParseError::Unsupported));
        let mut v6 = udp();
        v6[0] = 0x65;
        assert_eq!(parse(&v6, false), Err(ParseError::Malformed));
        let mut short_ihl = udp();
        short_ihl[0] = 0x44;
        assert_eq!(parse(&short_ihl, false), Err(ParseError::Malformed));
    }
}
