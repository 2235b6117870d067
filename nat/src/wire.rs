//! The few header fields NAT reads and rewrites, as views over the packet bytes: an
//! IPv4 header, the TCP/UDP ports, the ICMP echo identifier and the packet an ICMP
//! error quotes. Every read is bounds-checked; a short or odd packet is an error value.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use ::wire::Delta;

/// The fields NAT reads, as ranges (a truncated quote may lack some): each one is
/// wire's offset, named once there.
mod field {
    use ::wire::ip::ipv4;
    use ::wire::{icmp, tcp, udp};
    use std::ops::Range;

    const fn word(at: usize) -> Range<usize> {
        at..at + 2
    }
    const fn addr(at: usize) -> Range<usize> {
        at..at + 4
    }

    pub const VER_IHL: usize = ipv4::VER_IHL;
    pub const TOTAL_LEN: Range<usize> = word(ipv4::TOTAL_LEN);
    pub const FRAG: Range<usize> = word(ipv4::FRAG);
    pub const PROTO: usize = ipv4::PROTO;
    pub const CHECKSUM: Range<usize> = word(ipv4::CHECKSUM);
    pub const SRC: Range<usize> = addr(ipv4::SRC);
    pub const DST: Range<usize> = addr(ipv4::DST);
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
}

use ::wire::icmp::{DEST_UNREACHABLE, ECHO_REPLY, ECHO_REQUEST, PARAMETER_PROBLEM, TIME_EXCEEDED};
use ::wire::ip::{ICMP_HLEN, IPV4_HLEN, IP_FRAGMENT_MASK, TCP_HLEN, UDP_HLEN};
pub use ::wire::ip::{PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// The transport protocols NAT tracks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    /// ICMP echo, keyed by its identifier.
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
pub struct Tuple {
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

impl Tuple {
    pub fn reversed(self) -> Tuple {
        Tuple {
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
}

/// What follows the IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        flags: u8,
    },
    Udp,
    IcmpEcho {
        reply: bool,
    },
    /// Destination unreachable, time exceeded or parameter problem: quotes a packet.
    IcmpError,
}

/// Why a packet could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Too short, not IPv4, or lengths that do not add up.
    Malformed,
    /// A fragment: ports are not in every piece, so it cannot be matched.
    Fragment,
    /// A protocol (or ICMP type) NAT does not translate.
    Unsupported,
}

/// The parsed headers of a packet (or of the packet quoted by an ICMP error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    /// IPv4 header length in bytes.
    pub ihl: usize,
    /// End of the IPv4 packet (total length, or the end of a truncated quote).
    pub end: usize,
    pub proto: Proto,
    pub l4: L4,
    pub tuple: Tuple,
}

fn be16(b: &[u8], r: std::ops::Range<usize>) -> Option<u16> {
    let s = b.get(r)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn addr(b: &[u8], r: std::ops::Range<usize>) -> Option<Ipv4Addr> {
    let s = b.get(r)?;
    Some(Ipv4Addr::new(s[0], s[1], s[2], s[3]))
}

/// Parses the packet at the start of `pkt`. With `quoted`, the packet is the one an
/// ICMP error carries: it may be truncated after 8 bytes of transport header, its
/// total length may exceed what is present, and it must not itself be an ICMP error.
pub fn parse(pkt: &[u8], quoted: bool) -> Result<Headers, ParseError> {
    use ParseError::*;
    let vi = *pkt.get(field::VER_IHL).ok_or(Malformed)?;
    if vi >> 4 != 4 || pkt.len() < IPV4_HLEN {
        return Err(Malformed);
    }
    let ihl = usize::from(vi & 0x0f) * 4;
    let total = usize::from(be16(pkt, field::TOTAL_LEN).ok_or(Malformed)?);
    if ihl < IPV4_HLEN || total < ihl || pkt.len() < ihl {
        return Err(Malformed);
    }
    let end = if quoted {
        total.min(pkt.len())
    } else if total <= pkt.len() {
        total
    } else {
        return Err(Malformed);
    };
    if be16(pkt, field::FRAG).ok_or(Malformed)? & IP_FRAGMENT_MASK != 0 {
        // MF set or a non-zero offset. A quoted first fragment would do, but errors
        // about fragments are rare enough to leave alone.
        return Err(Fragment);
    }
    let src = addr(pkt, field::SRC).ok_or(Malformed)?;
    let dst = addr(pkt, field::DST).ok_or(Malformed)?;
    let l4b = pkt.get(ihl..end).ok_or(Malformed)?;
    // A quote needs only the ports (RFC 792 guarantees 8 bytes of them).
    let need = |full: usize| if quoted { ICMP_HLEN } else { full };
    let (proto, l4, sport, dport) = match pkt[field::PROTO] {
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
            let (s, d) = ports(l4b).ok_or(Malformed)?;
            (Proto::Udp, L4::Udp, s, d)
        }
        PROTO_ICMP => {
            if l4b.len() < ICMP_HLEN {
                return Err(Malformed);
            }
            let id = be16(l4b, field::ICMP_ID).ok_or(Malformed)?;
            match (l4b[field::ICMP_TYPE], l4b[field::ICMP_CODE]) {
                (ECHO_REQUEST, 0) => (Proto::Icmp, L4::IcmpEcho { reply: false }, id, 0),
                (ECHO_REPLY, 0) => (Proto::Icmp, L4::IcmpEcho { reply: true }, 0, id),
                (DEST_UNREACHABLE | TIME_EXCEEDED | PARAMETER_PROBLEM, _) if !quoted => {
                    (Proto::Icmp, L4::IcmpError, 0, 0)
                }
                _ => return Err(Unsupported),
            }
        }
        _ => return Err(Unsupported),
    };
    Ok(Headers {
        ihl,
        end,
        proto,
        l4,
        tuple: Tuple {
            src,
            sport,
            dst,
            dport,
        },
    })
}

fn ports(l4: &[u8]) -> Option<(u16, u16)> {
    Some((be16(l4, field::SPORT)?, be16(l4, field::DPORT)?))
}

/// Offset of the packet an ICMP error quotes, relative to the outer IPv4 header.
pub fn quote_offset(h: &Headers) -> usize {
    h.ihl + field::ICMP_ERROR_QUOTE
}

/// Offset of the ICMP checksum relative to the IPv4 header.
pub fn icmp_checksum_range(h: &Headers) -> std::ops::Range<usize> {
    h.ihl + field::ICMP_CHECKSUM.start..h.ihl + field::ICMP_CHECKSUM.end
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

/// Rewrites the packet described by `h` (parsed from `pkt`) to carry `new` instead of
/// `h.tuple`, updating the IPv4 header checksum and the transport checksum
/// incrementally. A UDP checksum of 0 (none) stays 0. Fields beyond the end of a
/// truncated quote are left alone. Returns every 16-bit change made, for a checksum
/// that covers the whole packet (the ICMP checksum of an error quoting it).
pub fn rewrite(pkt: &mut [u8], h: &Headers, new: &Tuple) -> Delta {
    let old = h.tuple;
    let mut total = Delta::default();
    let mut addrs = Delta::default();
    if old.src != new.src {
        if let Some(s) = pkt.get_mut(field::SRC) {
            s.copy_from_slice(&new.src.octets());
            addrs.addr(old.src.octets(), new.src.octets());
        }
    }
    if old.dst != new.dst {
        if let Some(s) = pkt.get_mut(field::DST) {
            s.copy_from_slice(&new.dst.octets());
            addrs.addr(old.dst.octets(), new.dst.octets());
        }
    }
    total = total.plus(addrs);
    if let Some(c) = be16(pkt, field::CHECKSUM) {
        put16(pkt, field::CHECKSUM, addrs.apply(c), &mut total);
    }
    let Some(l4) = pkt.get_mut(h.ihl..h.end) else {
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
            // ICMP has no pseudo-header: only the identifier counts.
            if let Some(c) = be16(l4, field::ICMP_CHECKSUM) {
                put16(l4, field::ICMP_CHECKSUM, ports.apply(c), &mut total);
            }
        }
        L4::IcmpError => {}
    }
    total
}

/// Updates the ICMP checksum of an error (whose quote was rewritten, changing `d`).
pub fn update_icmp_checksum(pkt: &mut [u8], h: &Headers, d: Delta) {
    let r = icmp_checksum_range(h);
    if let Some(c) = be16(pkt, r.clone()) {
        let mut ignored = Delta::default();
        put16(pkt, r, d.apply(c), &mut ignored);
    }
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
