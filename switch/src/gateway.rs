//! The switch as a network's gateway: it answers ARP for the gateway address and ICMP
//! echo sent to it. Replies are written into a caller-supplied buffer (no allocation).

use std::net::Ipv4Addr;

use etherparse::{
    ArpOperation, ArpPacketSlice, EtherType, Ethernet2Slice, Icmpv4Slice, IpNumber, Ipv4HeaderSlice,
};

use crate::fdb::Mac;

use wire::checksum::checksum;
use wire::ETH_HLEN;
const ARP_LEN: usize = 28;
/// ARP over Ethernet is padded to the 60-byte minimum frame.
const MIN_FRAME: usize = 60;

/// A network's gateway identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gateway {
    pub ip: Ipv4Addr,
    pub mac: Mac,
}

/// If `frame` is an ARP request for the gateway's address, write the reply into `out`
/// and return its length.
pub fn arp_reply(gw: &Gateway, frame: &[u8], out: &mut [u8]) -> Option<usize> {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame).ok()?;
    if eth.ether_type() != EtherType::ARP {
        return None;
    }
    let arp = ArpPacketSlice::from_slice(eth.payload_slice()).ok()?;
    if arp.operation() != ArpOperation::REQUEST
        || arp.proto_addr_type() != EtherType::IPV4
        || arp.hw_addr_size() != 6
        || arp.proto_addr_size() != 4
        || arp.target_protocol_addr() != gw.ip.octets()
    {
        return None;
    }
    if out.len() < MIN_FRAME {
        return None;
    }
    let requester_mac = arp.sender_hw_addr();
    let requester_ip = arp.sender_protocol_addr();
    out[..MIN_FRAME].fill(0);
    out[0..6].copy_from_slice(requester_mac);
    out[6..12].copy_from_slice(&gw.mac);
    out[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let a = &mut out[ETH_HLEN..ETH_HLEN + ARP_LEN];
    a[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    a[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
    a[4] = 6;
    a[5] = 4;
    a[6..8].copy_from_slice(&2u16.to_be_bytes()); // reply
    a[8..14].copy_from_slice(&gw.mac);
    a[14..18].copy_from_slice(&gw.ip.octets());
    a[18..24].copy_from_slice(requester_mac);
    a[24..28].copy_from_slice(requester_ip);
    Some(MIN_FRAME)
}

/// If `frame` is an ICMP echo request to the gateway (its MAC and IP), write the echo
/// reply into `out` and return its length.
pub fn icmp_echo_reply(gw: &Gateway, frame: &[u8], out: &mut [u8]) -> Option<usize> {
    let eth = Ethernet2Slice::from_slice_without_fcs(frame).ok()?;
    if eth.ether_type() != EtherType::IPV4 || eth.destination() != gw.mac {
        return None;
    }
    let ip = Ipv4HeaderSlice::from_slice(eth.payload_slice()).ok()?;
    if ip.destination_addr() != gw.ip
        || ip.protocol() != IpNumber::ICMP
        || ip.is_fragmenting_payload()
    {
        return None;
    }
    let ihl = ip.slice().len();
    let total = ip.total_len() as usize;
    if total < ihl || ETH_HLEN + total > frame.len() {
        return None;
    }
    let icmp_bytes = &frame[ETH_HLEN + ihl..ETH_HLEN + total];
    let icmp = Icmpv4Slice::from_slice(icmp_bytes).ok()?;
    if icmp.type_u8() != 8 || icmp.code_u8() != 0 || checksum(icmp_bytes, 0) != 0 {
        return None;
    }
    let len = ETH_HLEN + total;
    if out.len() < len {
        return None;
    }
    out[..len].copy_from_slice(&frame[..len]);
    // Ethernet: back to the sender.
    out[0..6].copy_from_slice(&eth.source());
    out[6..12].copy_from_slice(&gw.mac);
    // IPv4: swap addresses, fresh TTL, recompute the header checksum.
    let iph = &mut out[ETH_HLEN..ETH_HLEN + ihl];
    iph[12..16].copy_from_slice(&ip.destination());
    iph[16..20].copy_from_slice(&ip.source());
    iph[8] = 64;
    iph[10..12].fill(0);
    let c = checksum(iph, 0);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    // ICMP: type 0, same id/seq/payload.
    let ic = &mut out[ETH_HLEN + ihl..len];
    ic[0] = 0;
    ic[2..4].fill(0);
    let c = checksum(ic, 0);
    ic[2..4].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

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
