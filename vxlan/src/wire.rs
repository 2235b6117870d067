//! The headers a VXLAN frame carries on the underlay (RFC 7348 section 5), as views over
//! the frame bytes: the 8-byte VXLAN header as a smoltcp-style `Packet` with a `Repr`,
//! and the whole 50-byte outer header stack (Ethernet / IPv4 / UDP / VXLAN, no IP
//! options) as [`OuterRepr`] whose `emit` and `parse` are a matched pair.

use std::net::Ipv4Addr;

use crate::{Mac, Vni};
use ::wire::checksum::checksum;
use ::wire::ip::Ipv4Repr;

/// Field offsets: Ethernet from the frame start, the others from the start of their own
/// header. All but VXLAN's are the `wire` crate's, defined there once.
pub(crate) mod field {
    pub use ::wire::ethernet::field as eth;
    pub use ::wire::ip::ipv4;
    pub use ::wire::udp::field as udp;
    use std::ops::Range;

    pub const VXLAN_FLAGS: usize = 0;
    /// 24 reserved bits between the flags and the VNI.
    pub const VXLAN_RESERVED1: Range<usize> = 1..4;
    pub const VXLAN_VNI: Range<usize> = 4..7;
    pub const VXLAN_RESERVED2: usize = 7;
}

pub use ::wire::ethernet::ETHERTYPE_IPV4;
pub use ::wire::ip::{
    IPV4_HLEN, IP_DF, IP_FRAGMENT_MASK, IP_OFFSET_MASK, PROTO_TCP, PROTO_UDP, UDP_HLEN,
};
pub use ::wire::ETH_HLEN;
pub const VXLAN_HLEN: usize = 8;
/// Outer Ethernet + IPv4 (no options) + UDP + VXLAN: what encapsulation adds.
pub const OUTER_LEN: usize = ETH_HLEN + IPV4_HLEN + UDP_HLEN + VXLAN_HLEN;
/// What encapsulation adds to the IP packet the underlay MTU limits.
pub const OUTER_IP_OVERHEAD: usize = IPV4_HLEN + UDP_HLEN + VXLAN_HLEN;

/// The IANA-assigned VXLAN port (RFC 7348 section 5).
pub const VXLAN_PORT: u16 = 4789;
/// The I flag: the VNI is valid. The only flag RFC 7348 defines.
pub const FLAG_I: u8 = 0x08;

/// The big-endian 16 bits at `at`, if `b` holds them.
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at + 2)? {
        [h, l] => Some(u16::from_be_bytes([*h, *l])),
        _ => None,
    }
}

/// The IPv4 address at `at`, if `b` holds it.
pub(crate) fn addr(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    match b.get(at..at + 4)? {
        [a, b, c, d] => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        _ => None,
    }
}

/// The MAC address at `at`, if `b` holds it.
pub(crate) fn mac(b: &[u8], at: usize) -> Option<Mac> {
    b.get(at..at + 6)?.try_into().ok()
}

/// Writes `v` big-endian at `at`; the caller has checked that `b` holds it.
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// A read/write view of a VXLAN header followed by the inner frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// The buffer is shorter than a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view that is checked for length: every accessor below is then in bounds.
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        if buffer.as_ref().len() < VXLAN_HLEN {
            return Err(Truncated);
        }
        Ok(Packet { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::VXLAN_FLAGS]
    }

    /// The 24-bit VXLAN Network Identifier, as sent (0 included).
    pub fn vni(&self) -> u32 {
        let v = &self.buffer.as_ref()[field::VXLAN_VNI];
        u32::from_be_bytes([0, v[0], v[1], v[2]])
    }

    /// Whether every reserved bit (flags other than I, both reserved fields) is zero.
    /// Receivers ignore them (RFC 7348); this is for tests and diagnostics.
    pub fn reserved_zero(&self) -> bool {
        let b = self.buffer.as_ref();
        b[field::VXLAN_FLAGS] & !FLAG_I == 0
            && b[field::VXLAN_RESERVED1] == [0, 0, 0]
            && b[field::VXLAN_RESERVED2] == 0
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[VXLAN_HLEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::VXLAN_FLAGS] = flags;
    }

    /// Writes the low 24 bits of `vni`.
    pub fn set_vni(&mut self, vni: u32) {
        let b = vni.to_be_bytes();
        self.buffer.as_mut()[field::VXLAN_VNI].copy_from_slice(&b[1..]);
    }

    pub fn clear_reserved(&mut self) {
        let b = self.buffer.as_mut();
        b[field::VXLAN_RESERVED1].fill(0);
        b[field::VXLAN_RESERVED2] = 0;
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[VXLAN_HLEN..]
    }
}

/// The meaning of a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// As sent: 0 and unconfigured VNIs are the receiver's to refuse.
    pub vni: u32,
}

/// The I flag is clear: the VNI is not valid (RFC 7348 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoVniFlag;

impl Repr {
    /// Reads the header; reserved bits are ignored, as RFC 7348 requires of receivers.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr, NoVniFlag> {
        if p.flags() & FLAG_I == 0 {
            return Err(NoVniFlag);
        }
        Ok(Repr { vni: p.vni() })
    }

    /// Writes the header: the I flag, every reserved bit zero, the VNI.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_flags(FLAG_I);
        p.clear_reserved();
        p.set_vni(self.vni);
    }
}

/// Every field of the 50-byte outer header stack that encapsulation chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterRepr {
    pub eth_src: Mac,
    pub eth_dst: Mac,
    pub ip_src: Ipv4Addr,
    pub ip_dst: Ipv4Addr,
    pub ip_id: u16,
    pub ttl: u8,
    pub dont_fragment: bool,
    pub src_port: u16,
    pub dst_port: u16,
    /// The UDP checksum field as sent (0: none).
    pub udp_checksum: u16,
    pub vni: Vni,
    /// Length of the inner Ethernet frame that follows.
    pub inner_len: usize,
}

impl OuterRepr {
    /// Writes the outer headers into `buf[..OUTER_LEN]` with the IPv4 header checksum.
    /// The caller has checked that `buf` is long enough and the lengths fit 16 bits.
    pub fn emit(&self, buf: &mut [u8]) {
        let (eth, rest) = buf.split_at_mut(ETH_HLEN);
        ::wire::ethernet::Repr {
            src: self.eth_src,
            dst: self.eth_dst,
            ethertype: ETHERTYPE_IPV4,
        }
        .emit_into(eth);

        let (ip, rest) = rest.split_at_mut(IPV4_HLEN);
        let ip_len = OUTER_IP_OVERHEAD + self.inner_len;
        Ipv4Repr {
            src: self.ip_src,
            dst: self.ip_dst,
            proto: PROTO_UDP,
            payload_len: ip_len - IPV4_HLEN,
            ttl: self.ttl,
            tos: 0,
            ident: self.ip_id,
            dont_fragment: self.dont_fragment,
        }
        .emit(ip);

        let (udp, rest) = rest.split_at_mut(UDP_HLEN);
        put16(udp, field::udp::SRC_PORT, self.src_port);
        put16(udp, field::udp::DST_PORT, self.dst_port);
        let udp_len = (ip_len - IPV4_HLEN) as u16;
        put16(udp, field::udp::LEN, udp_len);
        put16(udp, field::udp::CHECKSUM, self.udp_checksum);

        let mut vx = Packet {
            buffer: &mut rest[..VXLAN_HLEN],
        };
        Repr {
            vni: self.vni.get(),
        }
        .emit(&mut vx);
    }

    /// Reads back what `emit` wrote: a frame with the exact layout `emit` produces (no
    /// IP options, the lengths consistent, the I flag set). `None` otherwise. This is
    /// the strict mirror of `emit`, for tests and tools; the receive path is
    /// [`crate::decapsulate`], which also takes IP options and says why it refuses.
    pub fn parse(frame: &[u8]) -> Option<OuterRepr> {
        if be16(frame, field::eth::ETHERTYPE)? != ETHERTYPE_IPV4 {
            return None;
        }
        let ip = frame.get(ETH_HLEN..)?;
        if *ip.first()? != 0x45 || ip.get(field::ipv4::PROTO) != Some(&PROTO_UDP) {
            return None;
        }
        let ip_len = usize::from(be16(ip, field::ipv4::TOTAL_LEN)?);
        let inner_len = ip_len.checked_sub(OUTER_IP_OVERHEAD)?;
        if ip.len() < ip_len || checksum(ip.get(..IPV4_HLEN)?, 0) != 0 {
            return None;
        }
        let udp = &ip[IPV4_HLEN..];
        if usize::from(be16(udp, field::udp::LEN)?) != ip_len - IPV4_HLEN {
            return None;
        }
        let vx = Packet::new_checked(&udp[UDP_HLEN..]).ok()?;
        let repr = Repr::parse(&vx).ok()?;
        Some(OuterRepr {
            eth_src: mac(frame, field::eth::SRC)?,
            eth_dst: mac(frame, field::eth::DST)?,
            ip_src: addr(ip, field::ipv4::SRC)?,
            ip_dst: addr(ip, field::ipv4::DST)?,
            ip_id: be16(ip, field::ipv4::IDENT)?,
            ttl: ip[field::ipv4::TTL],
            dont_fragment: be16(ip, field::ipv4::FRAG)? & IP_DF != 0,
            src_port: be16(udp, field::udp::SRC_PORT)?,
            dst_port: be16(udp, field::udp::DST_PORT)?,
            udp_checksum: be16(udp, field::udp::CHECKSUM)?,
            vni: Vni::from_wire(repr.vni),
            inner_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_header_both_ways() {
        // VNI 42 as the kernel sent it (testdata/kernel_vxlan_capture.txt).
        let bytes = [0x08, 0, 0, 0, 0, 0, 0x2a, 0, 0xaa];
        let p = Packet::new_checked(&bytes[..]).expect("long enough");
        assert!(p.reserved_zero());
        assert_eq!(Repr::parse(&p), Ok(Repr { vni: 42 }));
        assert_eq!(p.payload(), &[0xaa]);

        let mut out = [0xffu8; 9];
        let mut q = Packet::new_checked(&mut out[..]).expect("long enough");
        Repr { vni: 42 }.emit(&mut q);
        assert_eq!(&out[..8], &bytes[..8]);
        let mut q = Packet::new_checked(&mut out[..]).expect("long enough");
        q.set_vni(0x00ab_cdef);
        assert_eq!(q.vni(), 0xab_cdef);
    }

    #[test]
    fn vxlan_header_refusals() {
        assert_eq!(Packet::new_checked(&[0x08u8; 7][..]), Err(Truncated));
        let no_i = [0x00, 0, 0, 0, 0, 0, 0x2a, 0];
        let p = Packet::new_checked(&no_i[..]).expect("long enough");
        assert_eq!(Repr::parse(&p), Err(NoVniFlag));
        // Reserved bits set are ignored on receipt (RFC 7348), but noticed.
        let reserved = [0x88, 1, 0, 0, 0, 0, 0x2a, 1];
        let p = Packet::new_checked(&reserved[..]).expect("long enough");
        assert_eq!(Repr::parse(&p), Ok(Repr { vni: 42 }));
        assert!(!p.reserved_zero());
    }
}
