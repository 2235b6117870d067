//! IPv4 (RFC 791) and the transport headers' fixed parts: protocol numbers, header
//! lengths, flags, the fields every layer reads.

/// An IPv4 header without options.
pub const IPV4_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
/// A TCP header without options.
pub const TCP_HLEN: usize = 20;
pub const ICMP_HLEN: usize = 8;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Don't Fragment, in the flags/fragment-offset word.
pub const IP_DF: u16 = 0x4000;
/// MF and the fragment offset: any of them set means a fragment.
pub const IP_FRAGMENT_MASK: u16 = 0x3fff;
/// The fragment offset alone: non-zero in every fragment but the first.
pub const IP_OFFSET_MASK: u16 = 0x1fff;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::checksum::{adjust, checksum};
use crate::ethernet::{ethertype, ETHERTYPE_IPV4, ETH_HLEN};
use crate::{be16, put16, Error, Result};

/// The header length an IPv4 header's first byte says, if its version is 4.
#[inline]
fn v4_header_len(ver_ihl: u8) -> Option<usize> {
    (ver_ihl >> 4 == 4).then_some(usize::from(ver_ihl & 0x0f) * 4)
}

header! {
    /// A view of an IPv4 packet, checked once: version 4, a header length of at least 20
    /// bytes that fits, a total length that covers the header and fits the buffer (which
    /// may run on past it: Ethernet padding).
    Ipv4Packet, min: IPV4_HLEN, check: |b| {
        let ihl = v4_header_len(b[ipv4::VER_IHL]).ok_or(Error::Malformed)?;
        if ihl < IPV4_HLEN {
            return Err(Error::Malformed);
        }
        crate::stated_len(usize::from(be16(b, ipv4::TOTAL_LEN)), ihl, b.len())
    };
    /// Offsets in an IPv4 header.
    mod ipv4 {
        VER_IHL = 0;
        TOS = 1 => tos: u8;
        TOTAL_LEN = 2;
        IDENT = 4 => ident: u16;
        FRAG = 6;
        TTL = 8 => ttl: u8, set_ttl;
        PROTO = 9 => proto: u8;
        CHECKSUM = 10 => checksum: u16, set_checksum;
        SRC = 12 => src: Ipv4Addr, set_src;
        DST = 16 => dst: Ipv4Addr, set_dst;
    }
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// The header's length, options included (20 without).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[ipv4::VER_IHL] & 0x0f) * 4
    }
    /// Header and payload.
    #[inline]
    pub fn total_len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), ipv4::TOTAL_LEN))
    }
    #[inline]
    pub fn dont_fragment(&self) -> bool {
        be16(self.buffer.as_ref(), ipv4::FRAG) & IP_DF != 0
    }
    /// MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        be16(self.buffer.as_ref(), ipv4::FRAG) & IP_FRAGMENT_MASK != 0
    }
    /// The fragment offset, in 8-byte units (non-zero: not the first fragment).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), ipv4::FRAG) & IP_OFFSET_MASK
    }
    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }
    /// Header and payload, up to the total length.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len()]
    }
    /// What follows the header, up to the total length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }
    pub fn verify_checksum(&self) -> bool {
        checksum(self.header(), 0) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Computes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum(self.header(), 0);
        self.set_checksum(c);
    }
    /// Decrements the TTL, updating the checksum incrementally (RFC 1624). The new TTL,
    /// or None (packet untouched) when it was 0 or 1: the packet must not be forwarded.
    #[inline]
    pub fn decrement_ttl(&mut self) -> Option<u8> {
        let ttl = self.ttl();
        if ttl <= 1 {
            return None;
        }
        let b = self.buffer.as_ref();
        let old = be16(b, ipv4::TTL);
        let new = old - 0x100;
        let c = adjust(self.checksum(), old, new);
        self.set_ttl(ttl - 1);
        self.set_checksum(c);
        Some(ttl - 1)
    }
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), self.total_len());
        &mut self.buffer.as_mut()[h..t]
    }
}

/// The fields of an IPv4 header without options that a sender chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// What follows the header.
    pub payload_len: usize,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_fragment: bool,
}

impl Ipv4Repr {
    /// Writes an Ethernet header (`src_mac` to `dst_mac`, EtherType IPv4) and this
    /// header at the start of `frame`; returns the room for the payload behind them.
    /// The caller has checked that `frame` holds the whole packet.
    #[inline]
    pub fn emit_frame<'b>(
        &self,
        src_mac: crate::Mac,
        dst_mac: crate::Mac,
        frame: &'b mut [u8],
    ) -> &'b mut [u8] {
        crate::ethernet::Repr {
            src: src_mac,
            dst: dst_mac,
            ethertype: ETHERTYPE_IPV4,
        }
        .emit_into(frame);
        let start = ETH_HLEN + IPV4_HLEN;
        self.emit(&mut frame[ETH_HLEN..]);
        &mut frame[start..start + self.payload_len]
    }

    /// What the header says; `Malformed` when its checksum does not verify or it has
    /// options (which this `Repr` does not carry), `Unsupported` for a fragment.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        if p.header_len() != IPV4_HLEN || !p.verify_checksum() {
            return Err(Error::Malformed);
        }
        if p.is_fragment() {
            return Err(Error::Unsupported);
        }
        Ok(Ipv4Repr {
            src: p.src(),
            dst: p.dst(),
            proto: p.proto(),
            payload_len: p.total_len() - IPV4_HLEN,
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_fragment: p.dont_fragment(),
        })
    }

    /// Writes the 20-byte header at the start of `buf`, checksum included. The caller
    /// has checked that `buf` holds it and the total length fits 16 bits.
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) {
        let h = &mut buf[..IPV4_HLEN];
        h[ipv4::VER_IHL] = 0x45;
        h[ipv4::TOS] = self.tos;
        put16(h, ipv4::TOTAL_LEN, (IPV4_HLEN + self.payload_len) as u16);
        put16(h, ipv4::IDENT, self.ident);
        put16(h, ipv4::FRAG, if self.dont_fragment { IP_DF } else { 0 });
        h[ipv4::TTL] = self.ttl;
        h[ipv4::PROTO] = self.proto;
        h[ipv4::SRC..ipv4::DST].copy_from_slice(&self.src.octets());
        h[ipv4::DST..IPV4_HLEN].copy_from_slice(&self.dst.octets());
        put16(h, ipv4::CHECKSUM, 0);
        let c = checksum(h, 0);
        put16(h, ipv4::CHECKSUM, c);
    }
}

/// An untagged Ethernet frame carrying an IPv4 packet, checked once: version 4, a
/// header length of at least 20 bytes, and a total length that fits the frame. It
/// dereferences to the packet ([`Ipv4Packet`], without the Ethernet header or padding),
/// whose fields are read by name; nothing past the total length is looked at.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Frame<'a> {
    /// The Ethernet frame up to the packet's end.
    frame: &'a [u8],
    packet: Ipv4Packet<&'a [u8]>,
}

impl<'a> std::ops::Deref for Ipv4Frame<'a> {
    type Target = Ipv4Packet<&'a [u8]>;

    #[inline]
    fn deref(&self) -> &Ipv4Packet<&'a [u8]> {
        &self.packet
    }
}

impl<'a> Ipv4Frame<'a> {
    #[inline]
    pub fn new(frame: &'a [u8]) -> Option<Ipv4Frame<'a>> {
        if ethertype(frame)? != ETHERTYPE_IPV4 {
            return None;
        }
        let p = Ipv4Packet::new_checked(frame.get(ETH_HLEN..)?).ok()?;
        let frame = &frame[..ETH_HLEN + p.total_len()];
        Some(Ipv4Frame {
            frame,
            packet: Ipv4Packet {
                buffer: &frame[ETH_HLEN..],
            },
        })
    }

    /// The IPv4 packet's bytes, without the Ethernet header or padding.
    #[inline]
    pub fn packet_bytes(&self) -> &'a [u8] {
        self.packet.buffer
    }
    #[inline]
    pub fn dst_mac(&self) -> crate::Mac {
        crate::mac(self.frame, crate::ethernet::field::DST)
    }
    #[inline]
    pub fn src_mac(&self) -> crate::Mac {
        crate::mac(self.frame, crate::ethernet::field::SRC)
    }
    /// The Ethernet frame up to the packet's end (no padding).
    pub fn frame(&self) -> &'a [u8] {
        self.frame
    }
    /// What follows the header, up to the total length, for as long as the frame lives.
    pub fn payload(&self) -> &'a [u8] {
        &self.packet.buffer[self.header_len()..]
    }
    /// Source and destination of a TCP or UDP packet whose ports are in the payload.
    pub fn endpoints(&self) -> Option<(SocketAddrV4, SocketAddrV4)> {
        let p = self.payload();
        if !matches!(self.proto(), PROTO_TCP | PROTO_UDP) || p.len() < 4 {
            return None;
        }
        Some((
            SocketAddrV4::new(self.src(), u16::from_be_bytes([p[0], p[1]])),
            SocketAddrV4::new(self.dst(), u16::from_be_bytes([p[2], p[3]])),
        ))
    }
    /// A TCP segment's flags, when the payload holds its header.
    pub fn tcp_flags(&self) -> Option<u8> {
        let p = self.payload();
        (self.proto() == PROTO_TCP && p.len() >= TCP_HLEN).then(|| p[crate::tcp::field::FLAGS])
    }

    /// The IPv4 packet (checked by construction), without the Ethernet header or padding,
    /// for as long as the frame lives.
    #[inline]
    pub fn packet(&self) -> Ipv4Packet<&'a [u8]> {
        self.packet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 172.18.0.2:40000 -> 198.51.100.1:443, TCP SYN, DF, TTL 64, as captured.
    const SYN: [u8; 54] = [
        0x02, 0x42, 0xac, 0x12, 0, 1, 0x02, 0x42, 0xac, 0x12, 0, 2, 0x08, 0x00, // Ethernet
        0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 172, 18, 0, 2, 198, 51, 100, 1, // IPv4
        0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0,
        0, // TCP
    ];

    #[test]
    fn reads_the_fields_by_name() {
        let f = Ipv4Frame::new(&SYN).expect("IPv4");
        assert_eq!(
            (f.header_len(), f.total_len(), f.ttl(), f.proto()),
            (20, 40, 64, 6)
        );
        assert_eq!(
            (f.src(), f.dst()),
            (Ipv4Addr::new(172, 18, 0, 2), Ipv4Addr::new(198, 51, 100, 1))
        );
        assert!(f.dont_fragment() && !f.is_fragment());
        let (src, dst) = f.endpoints().expect("ports");
        assert_eq!((src.port(), dst.port()), (40000, 443));
        assert_eq!(f.tcp_flags(), Some(TCP_SYN));
        assert_eq!(f.payload().len(), 20);
        assert_eq!(f.src_mac(), [0x02, 0x42, 0xac, 0x12, 0, 2]);
        assert_eq!(f.dst_mac(), [0x02, 0x42, 0xac, 0x12, 0, 1]);
        assert_eq!(f.packet_bytes(), &SYN[14..]);
    }

    #[test]
    fn refuses_what_is_not_a_whole_ipv4_packet() {
        assert!(Ipv4Frame::new(&SYN[..33]).is_none(), "truncated header");
        let mut arp = SYN;
        arp[13] = 0x06;
        assert!(Ipv4Frame::new(&arp).is_none(), "ARP");
        let mut long = SYN;
        long[17] = 41;
        assert!(
            Ipv4Frame::new(&long).is_none(),
            "total length past the frame"
        );
        let mut v6 = SYN;
        v6[14] = 0x65;
        assert!(Ipv4Frame::new(&v6).is_none(), "version 6");
        let mut frag = SYN;
        frag[20] = 0x20; // MF
        assert!(Ipv4Frame::new(&frag).expect("IPv4").is_fragment());
    }

    #[test]
    fn packet_view_and_repr_mirror_each_other() {
        let mut syn = SYN;
        let mut p = Ipv4Packet::new_checked(&mut syn[ETH_HLEN..]).expect("IPv4");
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&syn[ETH_HLEN..]).expect("IPv4");
        assert!(p.verify_checksum());
        let r = Ipv4Repr::parse(&p).expect("no options, not a fragment");
        assert_eq!(
            r,
            Ipv4Repr {
                src: Ipv4Addr::new(172, 18, 0, 2),
                dst: Ipv4Addr::new(198, 51, 100, 1),
                proto: PROTO_TCP,
                payload_len: 20,
                ttl: 64,
                tos: 0,
                ident: 1,
                dont_fragment: true,
            }
        );
        let mut out = [0u8; 20];
        r.emit(&mut out);
        assert_eq!(&out[..], &syn[ETH_HLEN..ETH_HLEN + 20]);
        let mut frame = [0u8; 54];
        let room = r.emit_frame(
            [0x02, 0x42, 0xac, 0x12, 0, 2],
            [0x02, 0x42, 0xac, 0x12, 0, 1],
            &mut frame,
        );
        assert_eq!(room.len(), 20);
        room.copy_from_slice(&syn[34..]);
        assert_eq!(frame, syn, "Ethernet, IPv4 and the payload's room");
        assert_eq!(Ipv4Frame::new(&syn).expect("IPv4").packet(), p);
        assert_eq!(p.payload().len(), 20);
        assert_eq!(
            Ipv4Packet::new_checked(&syn[ETH_HLEN..33]),
            Err(Error::Truncated)
        );
        let mut bad = syn;
        bad[ETH_HLEN] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&bad[ETH_HLEN..]),
            Err(Error::Malformed)
        );
        bad = syn;
        bad[ETH_HLEN + 11] ^= 1;
        let p = Ipv4Packet::new_checked(&bad[ETH_HLEN..]).expect("IPv4");
        assert_eq!(Ipv4Repr::parse(&p), Err(Error::Malformed), "bad checksum");
    }

    #[test]
    fn ttl_decrement_keeps_the_checksum_valid() {
        for ttl in [2u8, 64, 128, 255] {
            let mut syn = SYN;
            syn[ETH_HLEN + ipv4::TTL] = ttl;
            let mut p = Ipv4Packet::new_checked(&mut syn[ETH_HLEN..]).expect("IPv4");
            p.fill_checksum();
            assert_eq!(p.decrement_ttl(), Some(ttl - 1));
            assert!(p.verify_checksum(), "ttl {ttl}");
        }
        for ttl in [0u8, 1] {
            let mut syn = SYN;
            syn[ETH_HLEN + ipv4::TTL] = ttl;
            let mut p = Ipv4Packet::new_checked(&mut syn[ETH_HLEN..]).expect("IPv4");
            assert_eq!(p.decrement_ttl(), None);
        }
    }
}
