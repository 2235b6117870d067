//! ICMP for IPv4 (RFC 792): type, code, checksum, the echo identifier and sequence
//! number, and the datagram an error quotes (RFC 1812 4.3.2.3).

use crate::checksum::checksum;
use crate::{put16, Error, Result};

pub use crate::ip::ICMP_HLEN as HEADER_LEN;

pub const ECHO_REPLY: u8 = 0;
pub const DEST_UNREACHABLE: u8 = 3;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;
pub const PARAMETER_PROBLEM: u8 = 12;

/// Whether messages of type `t` are errors about another datagram (which is quoted).
#[inline]
pub fn is_error(t: u8) -> bool {
    matches!(t, DEST_UNREACHABLE | TIME_EXCEEDED | PARAMETER_PROBLEM)
}

header! {
    /// A view of an ICMP message, at least its 8-byte header long; the message is the
    /// whole buffer.
    Packet, min: HEADER_LEN;
    /// Offsets in an ICMP message.
    mod field {
        TYPE = 0 => msg_type: u8, set_msg_type;
        CODE = 1 => code: u8, set_code;
        CHECKSUM = 2 => checksum: u16, set_checksum;
        ECHO_IDENT = 4 => echo_ident: u16, set_echo_ident;
        ECHO_SEQ = 6 => echo_seq: u16;
        /// Fragmentation needed (type 3 code 4): the next hop's MTU (RFC 1191).
        NEXT_HOP_MTU = 6 => next_hop_mtu: u16;
        /// An error's quoted datagram, or an echo's data.
        DATA = 8;
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// An error's quoted datagram (IPv4 header and at least 8 bytes), or echo data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }
    pub fn verify_checksum(&self) -> bool {
        checksum(self.buffer.as_ref(), 0) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }
    /// Computes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum(self.buffer.as_ref(), 0);
        self.set_checksum(c);
    }
}

/// The ICMP messages the switch reads and sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repr {
    EchoRequest {
        ident: u16,
        seq: u16,
    },
    EchoReply {
        ident: u16,
        seq: u16,
    },
    /// Type 3; `next_hop_mtu` is meaningful for code 4 only (0 otherwise).
    DestUnreachable {
        code: u8,
        next_hop_mtu: u16,
    },
    TimeExceeded {
        code: u8,
    },
}

impl Repr {
    /// What the header says; `Unsupported` for other types (or echo with a code).
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        Ok(match (p.msg_type(), p.code()) {
            (ECHO_REQUEST, 0) => Repr::EchoRequest {
                ident: p.echo_ident(),
                seq: p.echo_seq(),
            },
            (ECHO_REPLY, 0) => Repr::EchoReply {
                ident: p.echo_ident(),
                seq: p.echo_seq(),
            },
            (DEST_UNREACHABLE, code) => Repr::DestUnreachable {
                code,
                next_hop_mtu: if code == 4 { p.next_hop_mtu() } else { 0 },
            },
            (TIME_EXCEEDED, code) => Repr::TimeExceeded { code },
            _ => return Err(Error::Unsupported),
        })
    }

    /// Writes the header over `msg` (whose data is in place behind it) and the checksum
    /// over all of it. The caller has checked that it holds a header.
    pub fn emit(&self, msg: &mut [u8]) {
        let (t, code, rest) = match *self {
            Repr::EchoRequest { ident, seq } => (ECHO_REQUEST, 0, [ident, seq]),
            Repr::EchoReply { ident, seq } => (ECHO_REPLY, 0, [ident, seq]),
            Repr::DestUnreachable { code, next_hop_mtu } => {
                (DEST_UNREACHABLE, code, [0, next_hop_mtu])
            }
            Repr::TimeExceeded { code } => (TIME_EXCEEDED, code, [0, 0]),
        };
        msg[field::TYPE] = t;
        msg[field::CODE] = code;
        put16(msg, field::ECHO_IDENT, rest[0]);
        put16(msg, field::ECHO_SEQ, rest[1]);
        Packet { buffer: msg }.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ping -c1` echo request, id 0x1c46 seq 1, 4 bytes of data, with its checksum.
    fn echo() -> [u8; 12] {
        let mut m = [8, 0, 0, 0, 0x1c, 0x46, 0, 1, b'p', b'i', b'n', b'g'];
        let c = checksum(&m, 0);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }

    #[test]
    fn echo_both_ways() {
        let m = echo();
        let p = Packet::new_checked(&m[..]).expect("a header");
        assert!(p.verify_checksum());
        assert_eq!(p.data(), b"ping");
        let r = Repr::parse(&p).expect("echo");
        assert_eq!(
            r,
            Repr::EchoRequest {
                ident: 0x1c46,
                seq: 1
            }
        );
        let mut out = [0u8; 12];
        out[8..].copy_from_slice(b"ping");
        r.emit(&mut out);
        assert_eq!(out, m);
        assert_eq!(Packet::new_checked(&m[..7]), Err(Error::Truncated));
    }

    #[test]
    fn errors_carry_mtu_and_quote() {
        let mut m = [0u8; 36];
        m[8] = 0x45;
        Repr::DestUnreachable {
            code: 4,
            next_hop_mtu: 1450,
        }
        .emit(&mut m);
        let p = Packet::new_checked(&m[..]).expect("a header");
        assert!(p.verify_checksum() && is_error(p.msg_type()));
        assert_eq!(
            Repr::parse(&p),
            Ok(Repr::DestUnreachable {
                code: 4,
                next_hop_mtu: 1450
            })
        );
        assert_eq!(p.data()[0], 0x45, "the quote follows the header");
        let mut q = m;
        q[0] = 5; // redirect
        assert_eq!(
            Repr::parse(&Packet::new_checked(&q[..]).expect("header")),
            Err(Error::Unsupported)
        );
    }
}
