//! IPv4 helpers for the router: TTL decrement with an incremental checksum update
//! (RFC 1624) and the ICMP errors a router sends (time exceeded, unreachable, RFC 792 /
//! RFC 1812 4.3.2.3: the original IP header plus the first 8 bytes of its payload).

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::fdb::Mac;
use wire::ethernet;
use wire::icmp;
use wire::ip::{Ipv4Frame, Ipv4Packet, Ipv4Repr, IPV4_HLEN, PROTO_ICMP, PROTO_UDP, UDP_HLEN};
use wire::udp;

pub use wire::ETH_HLEN;

/// Decrement the TTL of the IPv4 header at `ip` (checksum updated in place). Returns the
/// new TTL, or None if the packet must not be forwarded (TTL was 0 or 1).
pub fn decrement_ttl(ip: &mut [u8]) -> Option<u8> {
    if ip.len() < IPV4_HLEN {
        return None;
    }
    // The caller has parsed the packet (`Ipv4Frame`); only the fixed header is touched.
    Ipv4Packet::new_checked(&mut ip[..]).ok()?.decrement_ttl()
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
    // Every caller has checked the frame as IPv4 already (`Ipv4Frame`).
    let f = Ipv4Frame::new(frame)?;
    let h = f.packet();
    let (src, dst, ihl) = (h.src(), h.dst(), h.header_len());
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    // What is quoted may run into the padding, as the frame came.
    let ip = eth.payload();
    if h.frag_offset() != 0
        || dst.is_broadcast()
        || dst.is_multicast()
        || src.is_unspecified()
        || ethernet::is_group(&eth.src())
    {
        return None;
    }
    if h.proto() == PROTO_ICMP && ip.len() > ihl {
        // Never an error about an error: only echo/timestamp/info queries may be answered.
        if !matches!(ip[ihl], 0 | 8 | 13 | 14 | 15 | 16) {
            return None;
        }
    }
    let quoted = &ip[..(ihl + 8).min(ip.len())];
    let icmp_len = icmp::HEADER_LEN + quoted.len();
    let len = ETH_HLEN + IPV4_HLEN + icmp_len;
    if out.len() < len {
        return None;
    }
    let m = Ipv4Repr {
        src: src_ip,
        dst: src,
        proto: PROTO_ICMP,
        payload_len: icmp_len,
        ttl: 64,
        tos: 0xc0,
        ident: 0,
        dont_fragment: false,
    }
    .emit_frame(src_mac, eth.src(), &mut out[..len]);
    m[icmp::field::DATA..].copy_from_slice(quoted);
    let (t, code) = kind.type_code();
    let repr = match t {
        icmp::TIME_EXCEEDED => icmp::Repr::TimeExceeded { code },
        _ => icmp::Repr::DestUnreachable {
            code,
            next_hop_mtu: match kind {
                IcmpError::FragNeeded { mtu } => mtu,
                _ => 0,
            },
        },
    };
    repr.emit(m);
    Some(len)
}

/// One UDP datagram's addressing, as the switch sends it from an address it owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpAddrs {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

/// Write an Ethernet/IPv4/UDP frame carrying `payload` into `out` (IPv4 and UDP
/// checksums complete, DF set, TTL 64); its length, or None if it does not fit.
pub fn udp_frame(a: &UdpAddrs, payload: &[u8], out: &mut [u8]) -> Option<usize> {
    let udp_len = UDP_HLEN + payload.len();
    let total = IPV4_HLEN + udp_len;
    let len = ETH_HLEN + total;
    if out.len() < len || total > u16::MAX as usize {
        return None;
    }
    let u = Ipv4Repr {
        src: *a.src.ip(),
        dst: *a.dst.ip(),
        proto: PROTO_UDP,
        payload_len: udp_len,
        ttl: 64,
        tos: 0,
        ident: 0,
        dont_fragment: true,
    }
    .emit_frame(a.src_mac, a.dst_mac, &mut out[..len]);
    u[UDP_HLEN..].copy_from_slice(payload);
    udp::Repr {
        src_port: a.src.port(),
        dst_port: a.dst.port(),
    }
    .emit(u, *a.src.ip(), *a.dst.ip());
    Some(len)
}

/// A UDP datagram inside an Ethernet/IPv4 frame: (source, destination, payload). None
/// when the frame is not an unfragmented, well-formed IPv4/UDP datagram (the header
/// checksum, and a non-zero UDP checksum, must verify).
pub fn parse_udp(frame: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, &[u8])> {
    let f = Ipv4Frame::new(frame)?;
    let ip = f.packet();
    if ip.proto() != PROTO_UDP || ip.is_fragment() || !ip.verify_checksum() {
        return None;
    }
    let u = udp::Packet::new_checked(f.payload()).ok()?;
    let r = udp::Repr::parse(&u, ip.src(), ip.dst()).ok()?;
    Some((
        SocketAddrV4::new(ip.src(), r.src_port),
        SocketAddrV4::new(ip.dst(), r.dst_port),
        u.into_payload(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::checksum::{adjust, checksum};

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
