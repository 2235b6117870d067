//! The UDP header (RFC 768).

use std::net::Ipv4Addr;

use crate::checksum::{checksum, pseudo_header, udp_sent};
use crate::ip::PROTO_UDP;
use crate::{be16, put16, Error, Result};

pub use crate::ip::UDP_HLEN as HEADER_LEN;

header! {
    /// A view of a UDP datagram: the header is there, and the length field is at least a
    /// header and at most the buffer (which may run on past it).
    Packet, min: HEADER_LEN, check: |b| crate::stated_len(usize::from(be16(b, field::LEN)), HEADER_LEN, b.len());
    /// Offsets in the UDP header.
    mod field {
        SRC_PORT = 0 => src_port: u16, set_src_port;
        DST_PORT = 2 => dst_port: u16, set_dst_port;
        /// The length field: header and payload.
        LEN = 4 => len_field: u16;
        CHECKSUM = 6 => checksum: u16, set_checksum;
        PAYLOAD = 8;
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Header and payload, up to the length field.
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len_field())]
    }
    /// The payload, up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.datagram()[field::PAYLOAD..]
    }
    /// The checksum verifies between `src` and `dst`, or there is none (0).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0
            || checksum(
                self.datagram(),
                pseudo_header(src.octets(), dst.octets(), PROTO_UDP, self.datagram().len()),
            ) == 0
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The payload, for as long as the buffer lives.
    #[inline]
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer[field::PAYLOAD..usize::from(self.len_field())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes the checksum over the datagram between `src` and `dst` (0 is sent as
    /// all ones).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let d = self.datagram();
        let c = udp_sent(checksum(
            d,
            pseudo_header(src.octets(), dst.octets(), PROTO_UDP, d.len()),
        ));
        self.set_checksum(c);
    }
}

/// What a UDP header says (the length is the datagram's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl Repr {
    /// The ports of a datagram whose checksum verifies between `src` and `dst`.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Repr> {
        if !p.verify_checksum(src, dst) {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
        })
    }

    /// Writes the header over `datagram` (whose payload is in place behind it): ports,
    /// its whole length, the checksum between `src` and `dst`. The caller has checked
    /// that it holds a header and its length fits 16 bits.
    pub fn emit(&self, datagram: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
        put16(datagram, field::LEN, datagram.len() as u16);
        let mut p = Packet { buffer: datagram };
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.1:1 -> 10.0.0.2:2, "hi", with its checksum, and Ethernet padding after it.
    const HI: [u8; 12] = [0, 1, 0, 2, 0, 10, 0x83, 0x6b, b'h', b'i', 0, 0];
    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn parse_and_emit_mirror() {
        let p = Packet::new_checked(&HI[..]).expect("a datagram");
        assert_eq!((p.src_port(), p.dst_port(), p.len_field()), (1, 2, 10));
        assert_eq!(p.payload(), b"hi", "padding is not payload");
        assert_eq!(p.into_payload(), b"hi");
        let r = Repr::parse(&p, A, B).expect("checksum verifies");
        assert_eq!(
            r,
            Repr {
                src_port: 1,
                dst_port: 2
            }
        );
        let mut out = [0u8; 10];
        out[8..].copy_from_slice(b"hi");
        r.emit(&mut out, A, B);
        assert_eq!(out, HI[..10]);
        assert_eq!(
            Repr::parse(&p, A, A),
            Err(Error::Malformed),
            "wrong pseudo-header"
        );
        let mut none = HI;
        none[6..8].fill(0);
        assert!(Packet::new_checked(&none[..])
            .expect("datagram")
            .verify_checksum(A, A));
    }

    #[test]
    fn refuses_bad_lengths() {
        assert_eq!(Packet::new_checked(&HI[..7]), Err(Error::Truncated));
        assert_eq!(
            Packet::new_checked(&HI[..9]),
            Err(Error::Truncated),
            "length past the end"
        );
        let mut short = HI;
        short[5] = 7;
        assert_eq!(Packet::new_checked(&short[..]), Err(Error::Malformed));
    }
}
