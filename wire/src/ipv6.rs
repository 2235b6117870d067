//! IPv6 (RFC 8200): the fixed 40-byte header, the upper-layer pseudo-header its
//! checksums cover (RFC 8200 8.1), and the addresses Neighbor Discovery derives from
//! others (solicited-node groups, RFC 4291 2.7.1; multicast MACs, RFC 2464 7).
//!
//! Extension headers are not walked: `next_header` is what follows the fixed header.
//! A payload length of 0 is an empty payload (jumbograms, RFC 2675, are not read).

use std::net::Ipv6Addr;

use crate::checksum::sum;
use crate::ethernet::{ethertype, ETHERTYPE_IPV6, ETH_HLEN};
use crate::{be16, be32, put16, put32, Error, Mac};

/// The fixed IPv6 header.
pub const IPV6_HLEN: usize = 40;

pub const NEXT_HEADER_HOP_BY_HOP: u8 = 0;
pub const NEXT_HEADER_TCP: u8 = 6;
pub const NEXT_HEADER_UDP: u8 = 17;
pub const NEXT_HEADER_ICMPV6: u8 = 58;
pub const NEXT_HEADER_ROUTING: u8 = 43;
pub const NEXT_HEADER_FRAGMENT: u8 = 44;
pub const NEXT_HEADER_DEST_OPTS: u8 = 60;

/// Whether `next_header` names an IPv6 extension header (RFC 8200 4, and IANA's
/// "IPv6 Extension Header Types": hop-by-hop, routing, fragment, ESP, AH, destination
/// options, mobility, HIP, shim6 and the two experimental ones), so that what follows
/// the fixed header is not yet the upper-layer header.
#[inline]
pub fn is_extension_header(next_header: u8) -> bool {
    matches!(
        next_header,
        NEXT_HEADER_HOP_BY_HOP
            | NEXT_HEADER_ROUTING
            | NEXT_HEADER_FRAGMENT
            | 50 // ESP
            | 51 // AH
            | NEXT_HEADER_DEST_OPTS
            | 135 // Mobility
            | 139 // HIP
            | 140 // Shim6
            | 253
            | 254
    )
}

/// ff02::1, every node on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, every router on the link.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// fe80::/10 (RFC 4291 2.5.6).
#[inline]
pub fn is_link_local(addr: &Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

/// The solicited-node multicast group of `addr`: ff02::1:ff and its last 24 bits
/// (RFC 4291 2.7.1), where Neighbor Solicitations for it are sent.
#[inline]
pub fn solicited_node(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// Whether `addr` is a solicited-node multicast group (ff02::1:ff00:0/104).
#[inline]
pub fn is_solicited_node(addr: &Ipv6Addr) -> bool {
    addr.octets()[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]
}

/// The Ethernet destination of an IPv6 multicast address: 33:33 and its last 32 bits
/// (RFC 2464 7). Meaningful only for multicast `addr`.
#[inline]
pub fn multicast_mac(addr: &Ipv6Addr) -> Mac {
    let o = addr.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The sum of the upper-layer pseudo-header (RFC 8200 8.1: source, destination, the
/// upper-layer length as 32 bits, three zero bytes and the next header), to pass as
/// `extra` to [`crate::checksum::checksum`] over the upper-layer packet.
#[inline]
pub fn pseudo_header(src: &Ipv6Addr, dst: &Ipv6Addr, upper_len: u32, next_header: u8) -> u32 {
    sum(&src.octets()) + sum(&dst.octets()) + sum(&upper_len.to_be_bytes()) + u32::from(next_header)
}

header! {
    /// A view of an IPv6 packet, checked once: version 6 (else `Malformed`), and a
    /// payload length that fits the buffer behind the fixed header (else `Truncated`;
    /// the buffer may run on past it: Ethernet padding).
    Ipv6Packet, min: IPV6_HLEN, check: |b| {
        if b[ipv6::VER_TC_FLOW] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        crate::stated_len(IPV6_HLEN + usize::from(be16(b, ipv6::PAYLOAD_LEN)), IPV6_HLEN, b.len())
    };
    /// Offsets in the fixed IPv6 header.
    mod ipv6 {
        /// Version (4 bits), traffic class (8), flow label (20).
        VER_TC_FLOW = 0;
        PAYLOAD_LEN = 4;
        NEXT_HEADER = 6 => next_header: u8, set_next_header;
        HOP_LIMIT = 7 => hop_limit: u8, set_hop_limit;
        SRC = 8 => src: Ipv6Addr, set_src;
        DST = 24 => dst: Ipv6Addr, set_dst;
        PAYLOAD = 40;
    }
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (be32(self.buffer.as_ref(), ipv6::VER_TC_FLOW) >> 20) as u8
    }
    #[inline]
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), ipv6::VER_TC_FLOW) & 0x000f_ffff
    }
    /// What follows the fixed header, as the header states it.
    #[inline]
    pub fn payload_len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), ipv6::PAYLOAD_LEN))
    }
    /// Header and payload, without what follows (padding).
    #[inline]
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..IPV6_HLEN + self.payload_len()]
    }
    /// What follows the fixed header, up to the payload length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[IPV6_HLEN..IPV6_HLEN + self.payload_len()]
    }
    /// The pseudo-header sum for the payload, taken as the upper-layer packet of
    /// `next_header` (no extension headers in between).
    #[inline]
    pub fn payload_pseudo_header(&self) -> u32 {
        pseudo_header(
            &self.src(),
            &self.dst(),
            self.payload_len() as u32,
            self.next_header(),
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let b = self.buffer.as_mut();
        let w = be32(b, ipv6::VER_TC_FLOW) & 0xf00f_ffff | u32::from(tc) << 20;
        put32(b, ipv6::VER_TC_FLOW, w);
    }
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        let b = self.buffer.as_mut();
        let w = be32(b, ipv6::VER_TC_FLOW) & 0xfff0_0000 | label & 0x000f_ffff;
        put32(b, ipv6::VER_TC_FLOW, w);
    }
    /// Decrements the hop limit (no header checksum to update). The new hop limit, or
    /// None (packet untouched) when it was 0 or 1: the packet must not be forwarded.
    #[inline]
    pub fn decrement_hop_limit(&mut self) -> Option<u8> {
        let h = self.hop_limit();
        if h <= 1 {
            return None;
        }
        self.set_hop_limit(h - 1);
        Some(h - 1)
    }
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = IPV6_HLEN + self.payload_len();
        &mut self.buffer.as_mut()[IPV6_HLEN..end]
    }
}

/// The fields of the fixed IPv6 header that a sender chooses (traffic class and flow
/// label are written as 0; set them on the view when they matter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    /// What follows the fixed header.
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// What the checked header says.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Ipv6Repr {
        Ipv6Repr {
            src: p.src(),
            dst: p.dst(),
            next_header: p.next_header(),
            payload_len: p.payload_len(),
            hop_limit: p.hop_limit(),
        }
    }

    /// Writes the 40-byte header at the start of `buf`. The caller has checked that
    /// `buf` holds it and that the payload length fits 16 bits.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) {
        let h = &mut buf[..IPV6_HLEN];
        put32(h, ipv6::VER_TC_FLOW, 6 << 28);
        put16(h, ipv6::PAYLOAD_LEN, self.payload_len as u16);
        h[ipv6::NEXT_HEADER] = self.next_header;
        h[ipv6::HOP_LIMIT] = self.hop_limit;
        h[ipv6::SRC..ipv6::DST].copy_from_slice(&self.src.octets());
        h[ipv6::DST..IPV6_HLEN].copy_from_slice(&self.dst.octets());
    }

    /// Writes an Ethernet header (`src_mac` to `dst_mac`, EtherType IPv6) and this
    /// header at the start of `frame`; returns the room for the payload behind them.
    /// The caller has checked that `frame` holds the whole packet.
    #[inline]
    pub fn emit_frame<'b>(&self, src_mac: Mac, dst_mac: Mac, frame: &'b mut [u8]) -> &'b mut [u8] {
        crate::ethernet::Repr {
            src: src_mac,
            dst: dst_mac,
            ethertype: ETHERTYPE_IPV6,
        }
        .emit_into(frame);
        self.emit(&mut frame[ETH_HLEN..]);
        let start = ETH_HLEN + IPV6_HLEN;
        &mut frame[start..start + self.payload_len]
    }

    /// The pseudo-header sum for this header's payload as the upper-layer packet.
    #[inline]
    pub fn pseudo_header(&self) -> u32 {
        pseudo_header(
            &self.src,
            &self.dst,
            self.payload_len as u32,
            self.next_header,
        )
    }
}

/// An untagged Ethernet frame carrying an IPv6 packet, checked once: version 6 and a
/// payload length that fits the frame. It dereferences to the packet ([`Ipv6Packet`],
/// without the Ethernet header or padding); nothing past the payload is looked at.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Frame<'a> {
    /// The Ethernet frame up to the packet's end.
    frame: &'a [u8],
    packet: Ipv6Packet<&'a [u8]>,
}

impl<'a> std::ops::Deref for Ipv6Frame<'a> {
    type Target = Ipv6Packet<&'a [u8]>;

    #[inline]
    fn deref(&self) -> &Ipv6Packet<&'a [u8]> {
        &self.packet
    }
}

impl<'a> Ipv6Frame<'a> {
    #[inline]
    pub fn new(frame: &'a [u8]) -> Option<Ipv6Frame<'a>> {
        if ethertype(frame)? != ETHERTYPE_IPV6 {
            return None;
        }
        let p = Ipv6Packet::new_checked(frame.get(ETH_HLEN..)?).ok()?;
        let frame = &frame[..ETH_HLEN + IPV6_HLEN + p.payload_len()];
        Some(Ipv6Frame {
            frame,
            packet: Ipv6Packet {
                buffer: &frame[ETH_HLEN..],
            },
        })
    }
    #[inline]
    pub fn dst_mac(&self) -> Mac {
        crate::mac(self.frame, crate::ethernet::field::DST)
    }
    #[inline]
    pub fn src_mac(&self) -> Mac {
        crate::mac(self.frame, crate::ethernet::field::SRC)
    }
    /// The Ethernet frame up to the packet's end (no padding).
    pub fn frame(&self) -> &'a [u8] {
        self.frame
    }
    /// The IPv6 packet's bytes, without the Ethernet header or padding.
    #[inline]
    pub fn packet_bytes(&self) -> &'a [u8] {
        self.packet.buffer
    }
    /// What follows the fixed header, for as long as the frame lives.
    pub fn payload(&self) -> &'a [u8] {
        &self.packet.buffer[IPV6_HLEN..]
    }
    /// The IPv6 packet (checked by construction), for as long as the frame lives.
    #[inline]
    pub fn packet(&self) -> Ipv6Packet<&'a [u8]> {
        self.packet
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::checksum::checksum;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// scapy: `Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") /
    /// IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=64, tc=0x20, fl=0x12345) /
    /// ICMPv6EchoRequest(id=0x1c46, seq=1, data=b"ping6")`.
    pub(crate) const ECHO_REQUEST: &str = "02000000000202000000000186dd62012345000d3a4020010db8\
        00000000000000000000000120010db80000000000000000000000028000f32a1c46000170696e6736";

    fn a(s: &str) -> Ipv6Addr {
        s.parse().expect("address")
    }

    #[test]
    fn reads_every_field_of_a_scapy_frame() {
        let f = hex(ECHO_REQUEST);
        let v = Ipv6Frame::new(&f).expect("IPv6");
        assert_eq!(v.traffic_class(), 0x20);
        assert_eq!(v.flow_label(), 0x12345);
        assert_eq!(v.payload_len(), 13);
        assert_eq!(v.next_header(), NEXT_HEADER_ICMPV6);
        assert_eq!(v.hop_limit(), 64);
        assert_eq!((v.src(), v.dst()), (a("2001:db8::1"), a("2001:db8::2")));
        assert_eq!(v.src_mac(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(v.dst_mac(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(v.payload(), &f[54..]);
        assert_eq!(v.packet_bytes(), &f[14..]);
        // scapy's ICMPv6 checksum verifies over our pseudo-header.
        assert_eq!(checksum(v.payload(), v.payload_pseudo_header()), 0);
        let r = Ipv6Repr::parse(&v.packet());
        assert_eq!(
            r,
            Ipv6Repr {
                src: a("2001:db8::1"),
                dst: a("2001:db8::2"),
                next_header: 58,
                payload_len: 13,
                hop_limit: 64
            }
        );
        assert_eq!(r.pseudo_header(), v.payload_pseudo_header());
        // Emitted again, byte for byte (traffic class and flow label set on the view).
        let mut out = vec![0u8; f.len()];
        let room = r.emit_frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], &mut out);
        room.copy_from_slice(&f[54..]);
        let mut p = Ipv6Packet::new_checked(&mut out[14..]).expect("IPv6");
        p.set_traffic_class(0x20);
        p.set_flow_label(0x12345);
        assert_eq!(out, f);
    }

    #[test]
    fn refusals() {
        let f = hex(ECHO_REQUEST);
        let p = &f[14..];
        assert_eq!(Ipv6Packet::new_checked(&p[..39]), Err(Error::Truncated));
        assert_eq!(
            Ipv6Packet::new_checked(&p[..p.len() - 1]),
            Err(Error::Truncated),
            "payload length past the buffer"
        );
        let mut v4 = p.to_vec();
        v4[0] = 0x42;
        assert_eq!(Ipv6Packet::new_checked(&v4[..]), Err(Error::Malformed));
        assert!(Ipv6Frame::new(&f[..f.len() - 1]).is_none());
        let mut arp = f.clone();
        arp[13] = 0x06;
        assert!(Ipv6Frame::new(&arp).is_none());
        // Padding behind the payload is allowed and cut off.
        let mut padded = f.clone();
        padded.extend_from_slice(&[0; 7]);
        let v = Ipv6Frame::new(&padded).expect("IPv6");
        assert_eq!(v.frame(), &f[..]);
        assert_eq!(v.packet().packet(), &f[14..]);
    }

    #[test]
    fn hop_limit_decrement() {
        let mut f = hex(ECHO_REQUEST);
        let mut p = Ipv6Packet::new_checked(&mut f[14..]).expect("IPv6");
        assert_eq!(p.decrement_hop_limit(), Some(63));
        p.set_hop_limit(1);
        assert_eq!(p.decrement_hop_limit(), None);
        assert_eq!(p.hop_limit(), 1);
    }

    #[test]
    fn extension_headers_are_told_from_upper_layers() {
        for nh in [0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254] {
            assert!(is_extension_header(nh), "{nh}");
        }
        for nh in [
            NEXT_HEADER_TCP,
            NEXT_HEADER_UDP,
            NEXT_HEADER_ICMPV6,
            59,
            4,
            41,
        ] {
            assert!(!is_extension_header(nh), "{nh}");
        }
    }

    #[test]
    fn derived_addresses() {
        assert!(is_link_local(&a("fe80::1")));
        assert!(is_link_local(&a("febf::1")));
        assert!(!is_link_local(&a("fec0::1")));
        assert!(!is_link_local(&a("2001:db8::1")));
        let s = solicited_node(&a("2001:db8::1:abcd:ef12"));
        assert_eq!(s, a("ff02::1:ffcd:ef12"));
        assert!(is_solicited_node(&s) && !is_solicited_node(&ALL_NODES));
        assert_eq!(multicast_mac(&s), [0x33, 0x33, 0xff, 0xcd, 0xef, 0x12]);
        assert_eq!(multicast_mac(&ALL_ROUTERS), [0x33, 0x33, 0, 0, 0, 2]);
    }
}
