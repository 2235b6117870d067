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

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Offsets in an IPv4 header.
pub mod ipv4 {
    pub const TOTAL_LEN: usize = 2;
    pub const FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// Offsets in a TCP header.
pub mod tcp {
    pub const FLAGS: usize = 13;
    pub const CHECKSUM: usize = 16;
}

/// Offsets in a UDP header.
pub mod udp {
    pub const LEN: usize = 4;
    pub const CHECKSUM: usize = 6;
}

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::ethernet::{ethertype, ETHERTYPE_IPV4, ETH_HLEN};

/// An untagged Ethernet frame carrying an IPv4 packet, checked once: version 4, a
/// header length of at least 20 bytes, and a total length that fits the frame. The
/// fields are read by name; nothing past the total length is looked at.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Frame<'a> {
    frame: &'a [u8],
    ihl: usize,
    total: usize,
}

impl<'a> Ipv4Frame<'a> {
    pub fn new(frame: &'a [u8]) -> Option<Ipv4Frame<'a>> {
        if ethertype(frame)? != ETHERTYPE_IPV4 || frame.len() < ETH_HLEN + IPV4_HLEN {
            return None;
        }
        let ip = &frame[ETH_HLEN..];
        if ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([
            ip[ipv4::TOTAL_LEN],
            ip[ipv4::TOTAL_LEN + 1],
        ]));
        (ihl >= IPV4_HLEN && total >= ihl && ETH_HLEN + total <= frame.len()).then_some(Ipv4Frame {
            frame,
            ihl,
            total,
        })
    }

    fn ip(&self, at: usize) -> u8 {
        self.frame[ETH_HLEN + at]
    }

    fn addr(&self, at: usize) -> Ipv4Addr {
        let a = ETH_HLEN + at;
        Ipv4Addr::new(
            self.frame[a],
            self.frame[a + 1],
            self.frame[a + 2],
            self.frame[a + 3],
        )
    }

    /// The IPv4 header's length (20 without options).
    pub fn header_len(&self) -> usize {
        self.ihl
    }
    /// The packet's length (header and payload), without the Ethernet header.
    pub fn total_len(&self) -> usize {
        self.total
    }
    /// The Ethernet frame up to the packet's end (no padding).
    pub fn frame(&self) -> &'a [u8] {
        &self.frame[..ETH_HLEN + self.total]
    }
    pub fn ttl(&self) -> u8 {
        self.ip(ipv4::TTL)
    }
    pub fn proto(&self) -> u8 {
        self.ip(ipv4::PROTO)
    }
    pub fn src(&self) -> Ipv4Addr {
        self.addr(ipv4::SRC)
    }
    pub fn dst(&self) -> Ipv4Addr {
        self.addr(ipv4::DST)
    }
    /// Don't Fragment is set.
    pub fn dont_fragment(&self) -> bool {
        self.ip(ipv4::FRAG) & 0x40 != 0
    }
    /// A fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        u16::from_be_bytes([self.ip(ipv4::FRAG), self.ip(ipv4::FRAG + 1)]) & IP_FRAGMENT_MASK != 0
    }
    /// What follows the header, up to the total length.
    pub fn payload(&self) -> &'a [u8] {
        &self.frame[ETH_HLEN + self.ihl..ETH_HLEN + self.total]
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
        (self.proto() == PROTO_TCP && p.len() >= TCP_HLEN).then(|| p[tcp::FLAGS])
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
}
