//! ARP (RFC 826) for IPv4 over Ethernet: the 28-byte packet, and the request and reply
//! frames a switch answers and sends (padded to the Ethernet minimum).

use std::net::Ipv4Addr;

use crate::ethernet::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, MIN_FRAME};
use crate::{put16, Error, Mac, Result, ETH_HLEN};

/// An Ethernet/IPv4 ARP packet.
pub const ARP_LEN: usize = 28;
/// The smallest frame holding one: Ethernet header and ARP packet, before padding.
pub const ARP_FRAME_LEN: usize = ETH_HLEN + ARP_LEN;
pub const HTYPE_ETHERNET: u16 = 1;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

header! {
    /// A view of an ARP packet (the Ethernet payload), at least 28 bytes long.
    Packet, min: ARP_LEN;
    /// Offsets in the ARP packet.
    mod field {
        HTYPE = 0 => hardware_type: u16;
        PTYPE = 2 => protocol_type: u16;
        HLEN = 4 => hardware_len: u8;
        PLEN = 5 => protocol_len: u8;
        OPER = 6 => operation: u16, set_operation;
        SHA = 8 => sender_mac: Mac;
        SPA = 14 => sender_ip: Ipv4Addr;
        THA = 18 => target_mac: Mac;
        TPA = 24 => target_ip: Ipv4Addr;
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Ethernet hardware addresses and IPv4 protocol addresses: the only ARP we speak.
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        let b = self.buffer.as_ref();
        b[..field::OPER] == [0, HTYPE_ETHERNET as u8, 0x08, 0x00, 6, 4]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes hardware type, protocol type and both lengths for Ethernet/IPv4.
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        put16(b, field::HTYPE, HTYPE_ETHERNET);
        put16(b, field::PTYPE, ETHERTYPE_IPV4);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }
    #[inline]
    pub fn set_sender(&mut self, mac: Mac, ip: Ipv4Addr) {
        let b = self.buffer.as_mut();
        b[field::SHA..field::SPA].copy_from_slice(&mac);
        b[field::SPA..field::THA].copy_from_slice(&ip.octets());
    }
    #[inline]
    pub fn set_target(&mut self, mac: Mac, ip: Ipv4Addr) {
        let b = self.buffer.as_mut();
        b[field::THA..field::TPA].copy_from_slice(&mac);
        b[field::TPA..ARP_LEN].copy_from_slice(&ip.octets());
    }
}

/// Request or reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Request,
    Reply,
}

impl Operation {
    fn code(self) -> u16 {
        match self {
            Operation::Request => OP_REQUEST,
            Operation::Reply => OP_REPLY,
        }
    }
}

/// What an Ethernet/IPv4 ARP packet says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub op: Operation,
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_mac: Mac,
    pub target_ip: Ipv4Addr,
}

impl Repr {
    /// `Malformed` for ARP that is not Ethernet/IPv4, `Unsupported` for operations
    /// other than request and reply.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        if !p.is_ethernet_ipv4() {
            return Err(Error::Malformed);
        }
        let op = match p.operation() {
            OP_REQUEST => Operation::Request,
            OP_REPLY => Operation::Reply,
            _ => return Err(Error::Unsupported),
        };
        Ok(Repr {
            op,
            sender_mac: p.sender_mac(),
            sender_ip: p.sender_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        })
    }

    /// The ARP packet in an Ethernet frame (EtherType ARP; padding after it is allowed).
    pub fn parse_frame(frame: &[u8]) -> Result<Repr> {
        let f = ethernet::Frame::new_checked(frame)?;
        if f.ethertype() != ETHERTYPE_ARP {
            return Err(Error::Unsupported);
        }
        Repr::parse(&Packet::new_checked(f.payload())?)
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_ethernet_ipv4();
        p.set_operation(self.op.code());
        p.set_sender(self.sender_mac, self.sender_ip);
        p.set_target(self.target_mac, self.target_ip);
    }

    /// Writes the whole frame into `out`: Ethernet header from the sender's MAC to
    /// `eth_dst`, the packet, zero padding to 60 bytes. Its length, or None when `out`
    /// is shorter.
    pub fn emit_frame(&self, eth_dst: Mac, out: &mut [u8]) -> Option<usize> {
        let out = out.get_mut(..MIN_FRAME)?;
        out.fill(0);
        ethernet::Repr {
            src: self.sender_mac,
            dst: eth_dst,
            ethertype: ETHERTYPE_ARP,
        }
        .emit_into(out);
        self.emit(&mut Packet {
            buffer: &mut out[ETH_HLEN..ARP_FRAME_LEN],
        });
        Some(MIN_FRAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `arping 172.18.0.1` from 02:42:ac:12:00:02 / 172.18.0.2 as captured.
    const REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0xac, 0x12, 0x00, 0x02, 0x08,
        0x06, // eth
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // request
        0x02, 0x42, 0xac, 0x12, 0x00, 0x02, 172, 18, 0, 2, // sender
        0, 0, 0, 0, 0, 0, 172, 18, 0, 1, // target
    ];

    #[test]
    fn parses_a_captured_request_and_emits_it_back() {
        let p = Packet::new_checked(&REQUEST[14..]).expect("long enough");
        assert_eq!((p.hardware_type(), p.protocol_type()), (1, ETHERTYPE_IPV4));
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        let r = Repr::parse_frame(&REQUEST).expect("ARP");
        assert_eq!(
            r,
            Repr {
                op: Operation::Request,
                sender_mac: [0x02, 0x42, 0xac, 0x12, 0x00, 0x02],
                sender_ip: Ipv4Addr::new(172, 18, 0, 2),
                target_mac: [0; 6],
                target_ip: Ipv4Addr::new(172, 18, 0, 1),
            }
        );
        let mut out = [0xaa; 64];
        assert_eq!(r.emit_frame(ethernet::BROADCAST, &mut out), Some(60));
        assert_eq!(&out[..42], &REQUEST);
        assert!(out[42..60].iter().all(|b| *b == 0), "padded with zeros");
        assert_eq!(r.emit_frame(ethernet::BROADCAST, &mut [0; 59]), None);
    }

    #[test]
    fn refuses_other_arp() {
        assert_eq!(Repr::parse_frame(&REQUEST[..41]), Err(Error::Truncated));
        let mut reply = REQUEST;
        reply[21] = 2;
        assert_eq!(
            Repr::parse_frame(&reply).map(|r| r.op),
            Ok(Operation::Reply)
        );
        let mut rarp = REQUEST;
        rarp[21] = 3;
        assert_eq!(Repr::parse_frame(&rarp), Err(Error::Unsupported));
        let mut v6 = REQUEST;
        v6[16..18].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(Repr::parse_frame(&v6), Err(Error::Malformed));
        let mut ip = REQUEST;
        ip[13] = 0;
        assert_eq!(Repr::parse_frame(&ip), Err(Error::Unsupported));
    }
}
