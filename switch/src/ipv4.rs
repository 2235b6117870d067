//! IPv4 helpers for the router: TTL decrement with an incremental checksum update
//! (RFC 1624) and the ICMP errors a router sends (time exceeded, unreachable, RFC 792 /
//! RFC 1812 4.3.2.3: the original IP header plus the first 8 bytes of its payload).

use std::net::Ipv4Addr;

use crate::fdb::Mac;
use wire::checksum::{adjust, checksum, pseudo_header, udp_sent};

pub use wire::ETH_HLEN;

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
    ip[10..12].copy_from_slice(&adjust(hc, old, new).to_be_bytes());
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
    /// Type 3 code 4: fragmentation needed and DF set, with the next-hop MTU
    /// (RFC 1191).
    FragNeeded { mtu: u16 },
}

impl IcmpError {
    fn type_code(self) -> (u8, u8) {
        match self {
            IcmpError::TtlExceeded => (11, 0),
            IcmpError::NetUnreachable => (3, 0),
            IcmpError::HostUnreachable => (3, 1),
            IcmpError::Prohibited => (3, 13),
            IcmpError::FragNeeded { .. } => (3, 4),
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
    let c = checksum(h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let (t, code) = kind.type_code();
    let m = &mut out[ETH_HLEN + 20..len];
    m[..8].copy_from_slice(&[t, code, 0, 0, 0, 0, 0, 0]);
    if let IcmpError::FragNeeded { mtu } = kind {
        m[6..8].copy_from_slice(&mtu.to_be_bytes());
    }
    m[8..].copy_from_slice(quoted);
    let c = checksum(m, 0);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

/// One UDP datagram's addressing, as the switch sends it from an address it owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpAddrs {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src: std::net::SocketAddrV4,
    pub dst: std::net::SocketAddrV4,
}

/// Write an Ethernet/IPv4/UDP frame carrying `payload` into `out` (IPv4 and UDP
/// checksums complete, DF set, TTL 64); its length, or None if it does not fit.
pub fn udp_frame(a: &UdpAddrs, payload: &[u8], out: &mut [u8]) -> Option<usize> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let len = ETH_HLEN + total;
    if out.len() < len || total > u16::MAX as usize {
        return None;
    }
    out[0..6].copy_from_slice(&a.dst_mac);
    out[6..12].copy_from_slice(&a.src_mac);
    out[12..14].copy_from_slice(&[0x08, 0x00]);
    let h = &mut out[ETH_HLEN..ETH_HLEN + 20];
    h.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[12..16].copy_from_slice(&a.src.ip().octets());
    h[16..20].copy_from_slice(&a.dst.ip().octets());
    let c = checksum(h, 0);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let u = &mut out[ETH_HLEN + 20..len];
    u[0..2].copy_from_slice(&a.src.port().to_be_bytes());
    u[2..4].copy_from_slice(&a.dst.port().to_be_bytes());
    u[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    u[6..8].fill(0);
    u[8..].copy_from_slice(payload);
    let c = udp_checksum(*a.src.ip(), *a.dst.ip(), u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

/// The UDP checksum of datagram `udp` (header with a zero checksum field, and payload)
/// between `src` and `dst`; 0 is sent as 0xffff (RFC 768).
pub fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    udp_sent(checksum(
        udp,
        pseudo_header(src.octets(), dst.octets(), 17, udp.len()),
    ))
}

/// A UDP datagram inside an Ethernet/IPv4 frame: (source, destination, payload). None
/// when the frame is not an unfragmented, well-formed IPv4/UDP datagram (the header
/// checksum, and a non-zero UDP checksum, must verify).
pub fn parse_udp(frame: &[u8]) -> Option<(std::net::SocketAddrV4, std::net::SocketAddrV4, &[u8])> {
    let ip = frame.get(ETH_HLEN..)?;
    if frame[12..14] != [0x08, 0x00] || ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
    if ihl < 20 || total < ihl + 8 || total > ip.len() || frag != 0 {
        return None;
    }
    if checksum(&ip[..ihl], 0) != 0 {
        return None;
    }
    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let u = &ip[ihl..total];
    let ulen = u16::from_be_bytes([u[4], u[5]]) as usize;
    if ulen < 8 || ulen > u.len() {
        return None;
    }
    let u = &u[..ulen];
    let sum = u16::from_be_bytes([u[6], u[7]]);
    if sum != 0 && checksum(u, pseudo_header(src_ip.octets(), dst_ip.octets(), 17, ulen)) != 0 {
        return None;
    }
    let sport = u16::from_be_bytes([u[0], u[1]]);
    let dport = u16::from_be_bytes([u[2], u[3]]);
    Some((
        std::net::SocketAddrV4::new(src_ip, sport),
        std::net::SocketAddrV4::new(dst_ip, dport),
        &u[8..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_frame(ttl: u8) -> Vec<u8> {
        let mut f = vec![2, 0x42, 172, 18, 0, 1, 2, 0x42, 172, 18, 0, 2, 8, 0];
        let mut ip = vec![
            0x45, 0, 0, 36, 0xab, 0xcd, 0x40, 0, ttl, 17, 0, 0, 172, 18, 0, 2, 198, 51, 100, 7,
        ];
        let c = checksum(&ip, 0);
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
            assert_eq!(checksum(&f[14..34], 0), 0, "ttl {ttl}");
        }
        assert_eq!(decrement_ttl(&mut udp_frame(1)[14..]), None);
        assert_eq!(decrement_ttl(&mut udp_frame(0)[14..]), None);
    }

    #[test]
    fn checksum_adjust_matches_recomputation() {
        let mut h = [
            0x45u8, 0, 0, 60, 1, 2, 0, 0, 9, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = checksum(&h, 0);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        // Rewrite the source address word by word, as SNAT would.
        for (i, new) in [(12usize, [198u8, 51]), (14, [100, 2])] {
            let old = u16::from_be_bytes([h[i], h[i + 1]]);
            h[i..i + 2].copy_from_slice(&new);
            let hc = u16::from_be_bytes([h[10], h[11]]);
            h[10..12].copy_from_slice(&adjust(hc, old, u16::from_be_bytes(new)).to_be_bytes());
        }
        assert_eq!(checksum(&h, 0), 0);
    }

    #[test]
    fn frag_needed_carries_the_next_hop_mtu() {
        let f = udp_frame(64);
        let mut out = [0u8; 128];
        let gw = Ipv4Addr::new(172, 18, 0, 1);
        let n = icmp_error(
            IcmpError::FragNeeded { mtu: 1450 },
            &f,
            [2, 0x42, 172, 18, 0, 1],
            gw,
            &mut out,
        )
        .expect("error sent");
        let r = &out[..n];
        assert_eq!((r[34], r[35]), (3, 4));
        assert_eq!(
            u16::from_be_bytes([r[40], r[41]]),
            1450,
            "RFC 1191 MTU field"
        );
        assert_eq!(checksum(&r[34..], 0), 0);
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
        assert_eq!(checksum(&r[14..34], 0), 0);
        assert_eq!((r[34], r[35]), (11, 0));
        assert_eq!(checksum(&r[34..], 0), 0);
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

    #[test]
    fn udp_frames_round_trip_with_valid_checksums() {
        let a = UdpAddrs {
            src_mac: [2, 0x42, 172, 18, 0, 1],
            dst_mac: [2, 0x42, 172, 18, 0, 2],
            src: "172.18.0.1:53".parse().expect("addr"),
            dst: "172.18.0.2:40000".parse().expect("addr"),
        };
        let mut out = [0u8; 128];
        let n = super::udp_frame(&a, b"hello", &mut out).expect("fits");
        assert_eq!(n, 14 + 20 + 8 + 5);
        assert_eq!(checksum(&out[14..34], 0), 0);
        let (src, dst, payload) = parse_udp(&out[..n]).expect("parses back");
        assert_eq!((src, dst, payload), (a.src, a.dst, &b"hello"[..]));
        out[n - 1] ^= 1;
        assert!(parse_udp(&out[..n]).is_none(), "a bad checksum is refused");
        assert!(parse_udp(&out[..30]).is_none(), "truncated");
        assert!(super::udp_frame(&a, &[0u8; 100], &mut [0u8; 64]).is_none());
    }
}
