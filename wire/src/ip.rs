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
