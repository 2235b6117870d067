//! The TCP header (RFC 9293): ports, sequence and acknowledgment numbers, data offset,
//! flags, window, checksum.

use std::net::Ipv4Addr;

use crate::checksum::{checksum, pseudo_header};
use crate::ip::PROTO_TCP;
use crate::put16;

pub use crate::ip::TCP_HLEN as HEADER_LEN;
pub use crate::ip::{TCP_ACK as ACK, TCP_FIN as FIN, TCP_RST as RST, TCP_SYN as SYN};
pub const PSH: u8 = 0x08;

header! {
    /// A view of a TCP segment whose header (options included) is in the buffer.
    Packet, min: HEADER_LEN, check: |b| crate::stated_len(usize::from(b[field::DATA_OFF] >> 4) * 4, HEADER_LEN, b.len());
    /// Offsets in the TCP header.
    mod field {
        SRC_PORT = 0 => src_port: u16, set_src_port;
        DST_PORT = 2 => dst_port: u16, set_dst_port;
        SEQ = 4 => seq: u32;
        ACK = 8 => ack: u32;
        /// The data offset, in the high nibble.
        DATA_OFF = 12;
        FLAGS = 13 => flags: u8, set_flags;
        WINDOW = 14 => window: u16;
        CHECKSUM = 16 => checksum: u16, set_checksum;
        URGENT = 18;
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The header's length in bytes, options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }
    /// What follows the header, to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
    /// The checksum over the whole buffer (one segment) verifies.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buffer.as_ref();
        checksum(
            b,
            pseudo_header(src.octets(), dst.octets(), PROTO_TCP, b.len()),
        ) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes the checksum over the whole buffer (one segment).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let c = checksum(
            b,
            pseudo_header(src.octets(), dst.octets(), PROTO_TCP, b.len()),
        );
        self.set_checksum(c);
    }
}

/// The fixed header's fields (no options, urgent pointer 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq(),
            ack: p.ack(),
            flags: p.flags(),
            window: p.window(),
        }
    }

    /// Writes a 20-byte header at the start of `segment` (checksum 0: fill it once the
    /// payload is in place). The caller has checked it holds one.
    pub fn emit(&self, segment: &mut [u8]) {
        let h = &mut segment[..HEADER_LEN];
        put16(h, field::SRC_PORT, self.src_port);
        put16(h, field::DST_PORT, self.dst_port);
        h[field::SEQ..field::ACK].copy_from_slice(&self.seq.to_be_bytes());
        h[field::ACK..field::DATA_OFF].copy_from_slice(&self.ack.to_be_bytes());
        h[field::DATA_OFF] = ((HEADER_LEN / 4) as u8) << 4;
        h[field::FLAGS] = self.flags;
        put16(h, field::WINDOW, self.window);
        put16(h, field::CHECKSUM, 0);
        put16(h, field::URGENT, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// 172.18.0.2:40000 -> 198.51.100.1:443, SYN, window 64240, as captured.
    const SEGMENT: [u8; 20] = [
        0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0,
    ];

    #[test]
    fn reads_fields_and_emits_them_back() {
        let p = Packet::new_checked(&SEGMENT[..]).expect("a header");
        let r = Repr::parse(&p);
        assert_eq!(
            r,
            Repr {
                src_port: 40000,
                dst_port: 443,
                seq: 1,
                ack: 0,
                flags: super::SYN,
                window: 64240,
            }
        );
        assert_eq!((p.header_len(), p.checksum()), (20, 0));
        assert!(p.payload().is_empty());
        let mut out = [0xffu8; 20];
        r.emit(&mut out);
        assert_eq!(out, SEGMENT);
        let (a, b) = (Ipv4Addr::new(172, 18, 0, 2), Ipv4Addr::new(198, 51, 100, 1));
        let mut q = Packet::new_checked(&mut out[..]).expect("a header");
        q.fill_checksum(a, b);
        assert!(q.verify_checksum(a, b));
        assert!(!q.verify_checksum(b, b));
    }

    #[test]
    fn refuses_bad_data_offsets() {
        assert_eq!(Packet::new_checked(&SEGMENT[..19]), Err(Error::Truncated));
        let mut small = SEGMENT;
        small[12] = 0x40;
        assert_eq!(Packet::new_checked(&small[..]), Err(Error::Malformed));
        let mut opts = SEGMENT;
        opts[12] = 0x60;
        assert_eq!(Packet::new_checked(&opts[..]), Err(Error::Truncated));
    }
}
