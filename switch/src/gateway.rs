//! The switch as a network's gateway: it answers ARP for the gateway address and ICMP
//! echo sent to it. Replies are written into a caller-supplied buffer (no allocation).

use std::net::Ipv4Addr;

use crate::fdb::Mac;

use wire::arp::{self, Operation};
use wire::ethernet::{ethertype, ETHERTYPE_ARP, ETHERTYPE_IPV4};
use wire::icmp;
use wire::ip::{Ipv4Frame, Ipv4Packet, PROTO_ICMP};
use wire::ETH_HLEN;

/// A network's gateway identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gateway {
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

/// If `frame` is an ARP request for the gateway's address, write the reply into `out`
/// and return its length.
#[inline]
pub fn arp_reply(gw: &Gateway, frame: &[u8], out: &mut [u8]) -> Option<usize> {
    // Most frames are not ARP: they leave here, without a call.
    if ethertype(frame) != Some(ETHERTYPE_ARP) {
        return None;
    }
    arp_reply_to(frame, out, |ip| (ip == gw.ip).then_some(gw.mac))
}

/// If `frame` (ARP, the caller has checked) is a request for an address `mac_of` knows
/// the MAC of, write the reply into `out`, from that address and MAC to the requester,
/// and return its length. The gateway answers for its address; the ARP proxy of an
/// overlay network for its remote endpoints'.
pub(crate) fn arp_reply_to(
    frame: &[u8],
    out: &mut [u8],
    mac_of: impl FnOnce(Ipv4Addr) -> Option<Mac>,
) -> Option<usize> {
    let req = arp::Repr::parse_frame(frame).ok()?;
    if req.op != Operation::Request {
        return None;
    }
    let mac = mac_of(req.target_ip)?;
    arp::Repr {
        op: Operation::Reply,
        sender_mac: mac,
        sender_ip: req.target_ip,
        target_mac: req.sender_mac,
        target_ip: req.sender_ip,
    }
    .emit_frame(req.sender_mac, out)
}

/// If `frame` is an ICMP echo request to the gateway (its MAC and IP), write the echo
/// reply into `out` and return its length.
#[inline]
pub fn icmp_echo_reply(gw: &Gateway, frame: &[u8], out: &mut [u8]) -> Option<usize> {
    // Most frames are not IPv4 to the gateway's MAC: they leave here, without a call.
    let eth = wire::ethernet::Frame::new_checked(frame).ok()?;
    if eth.ethertype() != ETHERTYPE_IPV4 || eth.dst() != gw.mac {
        return None;
    }
    echo_reply_to(gw, frame, out)
}

fn echo_reply_to(gw: &Gateway, frame: &[u8], out: &mut [u8]) -> Option<usize> {
    let eth = wire::ethernet::Frame::new_checked(frame).ok()?;
    let f = Ipv4Frame::new(frame)?;
    let ip = f.packet();
    if ip.dst() != gw.ip || ip.proto() != PROTO_ICMP || ip.is_fragment() {
        return None;
    }
    let icmp = icmp::Packet::new_checked(ip.payload()).ok()?;
    if !matches!(icmp::Repr::parse(&icmp), Ok(icmp::Repr::EchoRequest { .. }))
        || !icmp.verify_checksum()
    {
        return None;
    }
    let len = f.frame().len();
    if out.len() < len {
        return None;
    }
    out[..len].copy_from_slice(f.frame());
    // Ethernet: back to the sender.
    wire::ethernet::Repr {
        src: gw.mac,
        dst: eth.src(),
        ethertype: ETHERTYPE_IPV4,
    }
    .emit_into(out);
    // IPv4: swap addresses, fresh TTL, recompute the header checksum.
    let mut iph = Ipv4Packet::new_checked(&mut out[ETH_HLEN..len]).ok()?;
    iph.set_src(ip.dst());
    iph.set_dst(ip.src());
    iph.set_ttl(64);
    iph.fill_checksum();
    // ICMP: type 0, same id/seq/payload.
    let mut ic = icmp::Packet::new_checked(iph.payload_mut()).ok()?;
    ic.set_msg_type(icmp::ECHO_REPLY);
    ic.fill_checksum();
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::checksum::checksum;

    const GW: Gateway = Gateway {
        ip: Ipv4Addr::new(172, 18, 0, 1),
        mac: [0x02, 0x42, 0xac, 0x12, 0x00, 0x01],
    };

    /// `arping 172.18.0.1` from 02:42:ac:12:00:02 / 172.18.0.2 as captured.
    fn arp_request() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend([0x02, 0x42, 0xac, 0x12, 0x00, 0x02, 0x08, 0x06]);
        f.extend([0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01]);
        f.extend([0x02, 0x42, 0xac, 0x12, 0x00, 0x02, 172, 18, 0, 2]);
        f.extend([0, 0, 0, 0, 0, 0, 172, 18, 0, 1]);
        f.resize(60, 0);
        f
    }

    #[test]
    fn answers_arp_for_gateway_only() {
        let mut out = [0u8; 128];
        let n = arp_reply(&GW, &arp_request(), &mut out).expect("reply");
        assert_eq!(n, 60);
        let expect: [u8; 42] = [
            0x02, 0x42, 0xac, 0x12, 0x00, 0x02, 0x02, 0x42, 0xac, 0x12, 0x00, 0x01, 0x08,
            0x06, // eth
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // reply
            0x02, 0x42, 0xac, 0x12, 0x00, 0x01, 172, 18, 0, 1, // sender = gateway
            0x02, 0x42, 0xac, 0x12, 0x00, 0x02, 172, 18, 0, 2, // target = requester
        ];
        assert_eq!(&out[..42], &expect);
        let mut other = arp_request();
        other[41] = 3; // who-has 172.18.0.3
        assert!(arp_reply(&GW, &other, &mut out).is_none());
        assert!(
            arp_reply(&GW, &other[..30], &mut out).is_none(),
            "truncated ARP is ignored"
        );
    }

    fn echo_request() -> Vec<u8> {
        let mut f = Vec::new();
        f.extend(GW.mac);
        f.extend([0x02, 0x42, 0xac, 0x12, 0x00, 0x02, 0x08, 0x00]);
        let payload = b"abcdefgh";
        let total = 20 + 8 + payload.len();
        let mut ip = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0x12,
            0x34,
            0x40,
            0,
            64,
            1,
            0,
            0,
        ];
        ip.extend([172, 18, 0, 2, 172, 18, 0, 1]);
        let c = checksum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut icmp = vec![8, 0, 0, 0, 0x00, 0x07, 0x00, 0x01];
        icmp.extend(payload);
        let c = checksum(&icmp, 0);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        f.extend(ip);
        f.extend(icmp);
        f
    }

    #[test]
    fn answers_echo_with_valid_checksums() {
        let mut out = [0u8; 256];
        let req = echo_request();
        let n = icmp_echo_reply(&GW, &req, &mut out).expect("reply");
        assert_eq!(n, req.len());
        let r = &out[..n];
        assert_eq!(&r[0..6], &req[6..12]);
        assert_eq!(&r[26..30], &[172, 18, 0, 1]);
        assert_eq!(&r[30..34], &[172, 18, 0, 2]);
        assert_eq!(checksum(&r[14..34], 0), 0, "IPv4 header checksum");
        assert_eq!(r[34], 0, "echo reply");
        assert_eq!(checksum(&r[34..], 0), 0, "ICMP checksum");
        assert_eq!(&r[38..], &req[38..], "id, seq and payload echoed");
    }

    #[test]
    fn ignores_bad_echo() {
        let mut out = [0u8; 256];
        let mut req = echo_request();
        req[40] ^= 0xff; // corrupt the payload: checksum no longer holds
        assert!(icmp_echo_reply(&GW, &req, &mut out).is_none());
        let mut req = echo_request();
        req[33] = 9; // to 172.18.0.9, not the gateway
        assert!(icmp_echo_reply(&GW, &req, &mut out).is_none());
        let req = echo_request();
        assert!(
            icmp_echo_reply(&GW, &req[..40], &mut out).is_none(),
            "truncated"
        );
    }
}
