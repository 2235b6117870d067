//! IPv4 helpers for the router: TTL decrement with an incremental checksum update
//! (RFC 1624) and the ICMP errors a router sends (time exceeded, unreachable, RFC 792 /
//! RFC 1812 4.3.2.3: the original IP header plus the first 8 bytes of its payload).

use std::net::Ipv4Addr;

use crate::fdb::Mac;
use crate::gateway::internet_checksum;

pub const ETH_HLEN: usize = 14;

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for one 16-bit word changing from m to m'.
pub fn checksum_adjust(hc: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!hc as u32) + (!old as u32 & 0xffff) + new as u32;
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Decrement the TTL of the IPv4 header at `ip` (checksum updated in place). Returns the
/// new TTL, or None if the packet must not be forwarded (TTL was 0 or 1).
pub fn decrement_ttl(ip: &mut [u8]) -> Option<u8> {
    if ip.len() < 20 || ip[8] <= 1 {
        return None;
    }
    let old = u16::from_be_bytes([ip[8], ip[9]]);
    ip[8] -= 1;
    let new = u16::from_be_bytes([ip[8], ip[9]]);
    let hc = u16::from_be_bytes([ip[10], ip[11]]);
    ip[10..12].copy_from_slice(&checksum_adjust(hc, old, new).to_be_bytes());
    Some(ip[8])
}

/// ICMP types a router sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpError {
    /// Type 11 code 0.
    TtlExceeded,
    /// Type 3 code 0.
    NetUnreachable,
    /// Type 3 code 1.
    HostUnreachable,
    /// Type 3 code 13: administratively prohibited (e.g. an internal network).
    Prohibited,
}

impl IcmpError {
    fn type_code(self) -> (u8, u8) {
        match self {
            IcmpError::TtlExceeded => (11, 0),
            IcmpError::NetUnreachable => (3, 0),
            IcmpError::HostUnreachable => (3, 1),
            IcmpError::Prohibited => (3, 13),
        }
    }
}

/// Build, into `out`, the Ethernet frame carrying an ICMP error about `frame` (an
/// Ethernet+IPv4 frame), sent from (`src_mac`, `src_ip`) back to the frame's sender.
/// None when no error may be sent (RFC 1812: not about ICMP errors, fragments other
/// than the first, broadcasts or multicasts).
pub fn icmp_error(
    kind: IcmpError,
    frame: &[u8],
    src_mac: Mac,
    src_ip: Ipv4Addr,
    out: &mut [u8],
) -> Option<usize> {
    let ip = frame.get(ETH_HLEN..)?;
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    if ihl < 20 || ip.len() < ihl {
        return None;
    }
    let frag_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    if frag_offset != 0
        || dst.is_broadcast()
        || dst.is_multicast()
        || src.is_unspecified()
        || frame[6] & 1 != 0
    {
        return None;
    }
    if ip[9] == 1 && ip.len() > ihl {
        // Never an error about an error: only echo/timestamp/info queries may be answered.
        let t = ip[ihl];
        if !matches!(t, 0 | 8 | 13 | 14 | 15 | 16) {
            return None;
        }
    }
    let quoted = &ip[..(ihl + 8).min(ip.len())];
    let icmp_len = 8 + quoted.len();
    let total = 20 + icmp_len;
    let len = ETH_HLEN + total;
    if out.len() < len {
        return None;
    }
    out[0..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&src_mac);
    out[12..14].copy_from_slice(&[0x08, 0x00]);
    let h = &mut out[ETH_HLEN..ETH_HLEN + 20];
    h.copy_from_slice(&[
        0x45, 0xc0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[12..16].copy_from_slice(&src_ip.octets());
    h[16..20].copy_from_slice(&src.octets());
    let c = internet_checksum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let (t, code) = kind.type_code();
    let m = &mut out[ETH_HLEN + 20..len];
    m[..8].copy_from_slice(&[t, code, 0, 0, 0, 0, 0, 0]);
    m[8..].copy_from_slice(quoted);
    let c = internet_checksum(m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_frame(ttl: u8) -> Vec<u8> {
        let mut f = vec![2, 0x42, 172, 18, 0, 1, 2, 0x42, 172, 18, 0, 2, 8, 0];
        let mut ip = vec![
            0x45, 0, 0, 36, 0xab, 0xcd, 0x40, 0, ttl, 17, 0, 0, 172, 18, 0, 2, 198, 51, 100, 7,
        ];
        let c = internet_checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend(ip);
        f.extend([0x30, 0x39, 0x00, 0x35, 0, 16, 0, 0]); // 12345 -> 53, no checksum
        f.extend(b"payload!");
        f
    }

    #[test]
    fn ttl_decrement_keeps_the_checksum_valid() {
        for ttl in [2u8, 64, 128, 255] {
            let mut f = udp_frame(ttl);
            assert_eq!(decrement_ttl(&mut f[14..]), Some(ttl - 1));
            assert_eq!(internet_checksum(&f[14..34]), 0, "ttl {ttl}");
        }
        assert_eq!(decrement_ttl(&mut udp_frame(1)[14..]), None);
        assert_eq!(decrement_ttl(&mut udp_frame(0)[14..]), None);
    }

    #[test]
    fn checksum_adjust_matches_recomputation() {
        let mut h = [
            0x45u8, 0, 0, 60, 1, 2, 0, 0, 9, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = internet_checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        // Rewrite the source address word by word, as SNAT would.
        for (i, new) in [(12usize, [198u8, 51]), (14, [100, 2])] {
            let old = u16::from_be_bytes([h[i], h[i + 1]]);
            h[i..i + 2].copy_from_slice(&new);
            let hc = u16::from_be_bytes([h[10], h[11]]);
            h[10..12]
                .copy_from_slice(&checksum_adjust(hc, old, u16::from_be_bytes(new)).to_be_bytes());
        }
        assert_eq!(internet_checksum(&h), 0);
    }

    #[test]
    fn time_exceeded_quotes_the_header_and_8_bytes() {
        let f = udp_frame(1);
        let mut out = [0u8; 128];
        let gw = Ipv4Addr::new(172, 18, 0, 1);
        let n = icmp_error(
            IcmpError::TtlExceeded,
            &f,
            [2, 0x42, 172, 18, 0, 1],
            gw,
            &mut out,
        )
        .expect("error sent");
        assert_eq!(n, 14 + 20 + 8 + 28);
        let r = &out[..n];
        assert_eq!(&r[0..6], &f[6..12], "back to the sender's MAC");
        assert_eq!(&r[26..30], &[172, 18, 0, 1]);
        assert_eq!(&r[30..34], &[172, 18, 0, 2]);
        assert_eq!(internet_checksum(&r[14..34]), 0);
        assert_eq!((r[34], r[35]), (11, 0));
        assert_eq!(internet_checksum(&r[34..]), 0);
        assert_eq!(&r[42..], &f[14..14 + 28], "original header + 8 bytes");
    }

    #[test]
    fn no_error_about_errors_broadcasts_or_later_fragments() {
        let mut out = [0u8; 128];
        let gw = Ipv4Addr::new(172, 18, 0, 1);
        let mac = [2, 0, 0, 0, 0, 1];
        let mut f = udp_frame(1);
        f[14 + 9] = 1; // ICMP
        f[34] = 3; // destination unreachable
        assert!(icmp_error(IcmpError::TtlExceeded, &f, mac, gw, &mut out).is_none());
        f[34] = 8; // echo request: answered
        assert!(icmp_error(IcmpError::TtlExceeded, &f, mac, gw, &mut out).is_some());
        let mut f = udp_frame(1);
        f[14 + 7] = 1; // fragment offset 8
        assert!(icmp_error(IcmpError::TtlExceeded, &f, mac, gw, &mut out).is_none());
        let mut f = udp_frame(1);
        f[30..34].copy_from_slice(&[255, 255, 255, 255]);
        assert!(icmp_error(IcmpError::NetUnreachable, &f, mac, gw, &mut out).is_none());
        assert!(
            icmp_error(IcmpError::NetUnreachable, &f[..20], mac, gw, &mut out).is_none(),
            "truncated"
        );
    }
}
