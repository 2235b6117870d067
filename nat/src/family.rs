//! IPv4 and IPv6 as NAT sees them: where the IP header keeps its addresses and how long
//! it is, which checksums cover the addresses, and the ICMP numbers. The transport
//! headers, the session table, the port mappings and the translator are written once
//! over [`Family`], implemented by `Ipv4Addr` and `Ipv6Addr`.

use std::fmt::Debug;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use ::wire::ip::{ipv4, IPV4_HLEN, IP_FRAGMENT_MASK};
use ::wire::ipv6::{ipv6, is_extension_header, IPV6_HLEN, NEXT_HEADER_FRAGMENT};
use ::wire::{icmp, icmpv6};

use crate::wire::{be16, ParseError};

/// What the IP header of a packet says, as far as NAT reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpHeader<A> {
    /// Header length in bytes: where the transport header starts.
    pub len: usize,
    /// End of the packet: its stated length, or the end of a truncated quote.
    pub end: usize,
    /// The transport protocol (IPv6: the next header behind the fixed one).
    pub next: u8,
    pub src: A,
    pub dst: A,
}

/// An IP address family: the address type, and what differs between IPv4 and IPv6 for
/// translation.
pub trait Family: Copy + Eq + Hash + Debug + Into<IpAddr> + 'static {
    /// The address as the header carries it.
    type Octets: Into<Self> + for<'a> TryFrom<&'a [u8]>;
    /// Where the source address is in the IP header; the destination follows it.
    const SRC_AT: usize;
    const SRC: Range<usize> = Self::SRC_AT..Self::SRC_AT + size_of::<Self::Octets>();
    const DST: Range<usize> = Self::SRC.end..Self::SRC.end + size_of::<Self::Octets>();
    /// The IP header's own checksum, which covers the addresses (IPv4 only).
    const HEADER_CHECKSUM: Option<Range<usize>>;
    /// Whether a UDP checksum of 0 means "none" (IPv4); in IPv6 it is invalid
    /// (RFC 8200 8.1) and such a packet is dropped.
    const UDP_CHECKSUM_OPTIONAL: bool;
    const ICMP: Icmp;

    /// Parses the IP header at the start of `pkt`. With `quoted` (the packet an ICMP
    /// error carries) the stated length may exceed what is present.
    fn ip_header(pkt: &[u8], quoted: bool) -> Result<IpHeader<Self>, ParseError>;

    /// The address in `b`, when it is as long as this family's.
    fn read(b: &[u8]) -> Option<Self> {
        Self::Octets::try_from(b).ok().map(Into::into)
    }
    /// The address of `ip` when it is of this family.
    fn from_ip(ip: IpAddr) -> Option<Self> {
        with_octets(ip, Self::read)
    }
}

/// A family's ICMP, as far as NAT translates it.
pub struct Icmp {
    /// Its IP protocol number (IPv6: next header).
    pub proto: u8,
    pub echo_request: u8,
    pub echo_reply: u8,
    /// The error types translated with the packet they quote.
    pub errors: &'static [u8],
    /// Whether its checksum covers the pseudo-header, so an address rewrite changes it
    /// (ICMPv6, RFC 4443 2.3; ICMPv4 covers the message only).
    pub pseudo_header: bool,
}

/// `f` of the bytes of `ip` as a header carries them.
pub fn with_octets<R>(ip: IpAddr, f: impl FnOnce(&[u8]) -> R) -> R {
    match ip {
        IpAddr::V4(a) => f(&a.octets()),
        IpAddr::V6(a) => f(&a.octets()),
    }
}

/// Where a packet of `stated` bytes ends in a buffer of `have`: a quote may be cut
/// short, any other packet must be all there (and may be followed by padding).
fn end_of(stated: usize, have: usize, quoted: bool) -> Result<usize, ParseError> {
    if quoted {
        Ok(stated.min(have))
    } else if stated <= have {
        Ok(stated)
    } else {
        Err(ParseError::Malformed)
    }
}

fn word(at: usize) -> Range<usize> {
    at..at + 2
}

impl Family for Ipv4Addr {
    type Octets = [u8; 4];
    const SRC_AT: usize = ipv4::SRC;
    const HEADER_CHECKSUM: Option<Range<usize>> = Some(ipv4::CHECKSUM..ipv4::CHECKSUM + 2);
    const UDP_CHECKSUM_OPTIONAL: bool = true;
    const ICMP: Icmp = Icmp {
        proto: ::wire::ip::PROTO_ICMP,
        echo_request: icmp::ECHO_REQUEST,
        echo_reply: icmp::ECHO_REPLY,
        errors: &[
            icmp::DEST_UNREACHABLE,
            icmp::TIME_EXCEEDED,
            icmp::PARAMETER_PROBLEM,
        ],
        pseudo_header: false,
    };

    fn ip_header(pkt: &[u8], quoted: bool) -> Result<IpHeader<Self>, ParseError> {
        use ParseError::*;
        let vi = *pkt.get(ipv4::VER_IHL).ok_or(Malformed)?;
        if vi >> 4 != 4 || pkt.len() < IPV4_HLEN {
            return Err(Malformed);
        }
        let ihl = usize::from(vi & 0x0f) * 4;
        let total = usize::from(be16(pkt, word(ipv4::TOTAL_LEN)).ok_or(Malformed)?);
        if ihl < IPV4_HLEN || total < ihl || pkt.len() < ihl {
            return Err(Malformed);
        }
        let end = end_of(total, pkt.len(), quoted)?;
        if be16(pkt, word(ipv4::FRAG)).ok_or(Malformed)? & IP_FRAGMENT_MASK != 0 {
            // MF set or a non-zero offset. A quoted first fragment would do, but errors
            // about fragments are rare enough to leave alone.
            return Err(Fragment);
        }
        Ok(IpHeader {
            len: ihl,
            end,
            next: pkt[ipv4::PROTO],
            src: Self::read(&pkt[Self::SRC]).ok_or(Malformed)?,
            dst: Self::read(&pkt[Self::DST]).ok_or(Malformed)?,
        })
    }
}

impl Family for Ipv6Addr {
    type Octets = [u8; 16];
    const SRC_AT: usize = ipv6::SRC;
    const HEADER_CHECKSUM: Option<Range<usize>> = None;
    const UDP_CHECKSUM_OPTIONAL: bool = false;
    const ICMP: Icmp = Icmp {
        proto: ::wire::ipv6::NEXT_HEADER_ICMPV6,
        echo_request: icmpv6::ECHO_REQUEST,
        echo_reply: icmpv6::ECHO_REPLY,
        errors: &[
            icmpv6::DEST_UNREACHABLE,
            icmpv6::PACKET_TOO_BIG,
            icmpv6::TIME_EXCEEDED,
            icmpv6::PARAMETER_PROBLEM,
        ],
        pseudo_header: true,
    };

    /// The fixed header only: a packet whose next header is an extension header is
    /// refused (`Fragment` for a fragment header, else `ExtensionHeader`), so the
    /// transport header, when there is one, is right behind the 40 bytes.
    fn ip_header(pkt: &[u8], quoted: bool) -> Result<IpHeader<Self>, ParseError> {
        use ParseError::*;
        let v = *pkt.first().ok_or(Malformed)?;
        if v >> 4 != 6 || pkt.len() < IPV6_HLEN {
            return Err(Malformed);
        }
        let payload = usize::from(be16(pkt, word(ipv6::PAYLOAD_LEN)).ok_or(Malformed)?);
        let end = end_of(IPV6_HLEN + payload, pkt.len(), quoted)?;
        let next = pkt[ipv6::NEXT_HEADER];
        if next == NEXT_HEADER_FRAGMENT {
            return Err(Fragment);
        }
        if is_extension_header(next) {
            return Err(ExtensionHeader);
        }
        Ok(IpHeader {
            len: IPV6_HLEN,
            end,
            next,
            src: Self::read(&pkt[Self::SRC]).ok_or(Malformed)?,
            dst: Self::read(&pkt[Self::DST]).ok_or(Malformed)?,
        })
    }
}
