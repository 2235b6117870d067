//! IPv6 helpers for the router: the ICMPv6 errors a router sends (RFC 4443: as much
//! of the invoking packet as fits the minimum MTU, never about errors or multicast but
//! for Packet Too Big) and the neighbour solicitations that resolve its next hops.

use std::net::{Ipv6Addr, SocketAddrV6};

use crate::fdb::Mac;
use wire::checksum::{checksum, udp_sent};
use wire::ethernet;
use wire::icmpv6::{self, NdpRepr, NDP_HOP_LIMIT};
use wire::ip::UDP_HLEN;
use wire::ipv6::NEXT_HEADER_UDP;
use wire::ipv6::{
    multicast_mac, solicited_node, Ipv6Frame, Ipv6Repr, IPV6_HLEN, NEXT_HEADER_ICMPV6,
};
use wire::udp;

pub use wire::ETH_HLEN;

/// The minimum MTU of IPv6 links (RFC 8200 5): an ICMPv6 error never exceeds it.
pub const MIN_MTU: usize = 1280;

/// ICMPv6 errors a router sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icmp6Error {
    /// Time exceeded, code 0: hop limit exceeded in transit.
    HopLimit,
    /// Destination unreachable, code 0: no route to destination.
    NoRoute,
    /// Destination unreachable, code 1: administratively prohibited.
    Prohibited,
    /// Destination unreachable, code 3: address unreachable.
    AddressUnreachable,
    /// Packet too big, with the next hop's MTU.
    PacketTooBig { mtu: u32 },
}

/// Build, into `out`, the Ethernet frame carrying an ICMPv6 error about `frame` (an
/// Ethernet+IPv6 frame), sent from (`src_mac`, `src_ip`) back to the frame's sender.
/// None when RFC 4443 2.4 (e) forbids one: about an ICMPv6 error (or a redirect or
/// NDP), about a packet to a multicast address or sent as link-layer multicast (Packet
/// Too Big excepted), or from the unspecified or a multicast address.
pub fn icmp6_error(
    kind: Icmp6Error,
    frame: &[u8],
    src_mac: Mac,
    src_ip: Ipv6Addr,
    out: &mut [u8],
) -> Option<usize> {
    let f = Ipv6Frame::new(frame)?;
    let (src, dst) = (f.src(), f.dst());
    let too_big = matches!(kind, Icmp6Error::PacketTooBig { .. });
    if src.is_unspecified() || src.is_multicast() {
        return None;
    }
    if !too_big && (dst.is_multicast() || ethernet::is_group(&f.dst_mac())) {
        return None;
    }
    if f.next_header() == NEXT_HEADER_ICMPV6 {
        // Only an informational message (echo: types 128 and up, but not NDP or
        // redirects, which never leave the link) gets an error back.
        match f.payload().first() {
            Some(&t) if (icmpv6::ECHO_REQUEST..=icmpv6::ECHO_REPLY).contains(&t) => {}
            _ => return None,
        }
    }
    let packet = f.packet_bytes();
    let quote = &packet[..packet.len().min(MIN_MTU - IPV6_HLEN - icmpv6::HEADER_LEN)];
    let repr = match kind {
        Icmp6Error::HopLimit => icmpv6::Repr::TimeExceeded { code: 0, quote },
        Icmp6Error::NoRoute => icmpv6::Repr::DestUnreachable { code: 0, quote },
        Icmp6Error::Prohibited => icmpv6::Repr::DestUnreachable { code: 1, quote },
        Icmp6Error::AddressUnreachable => icmpv6::Repr::DestUnreachable { code: 3, quote },
        Icmp6Error::PacketTooBig { mtu } => icmpv6::Repr::PacketTooBig { mtu, quote },
    };
    let msg_len = repr.buffer_len();
    let len = ETH_HLEN + IPV6_HLEN + msg_len;
    if out.len() < len {
        return None;
    }
    let ip = Ipv6Repr {
        src: src_ip,
        dst: src,
        next_header: NEXT_HEADER_ICMPV6,
        payload_len: msg_len,
        hop_limit: 64,
    };
    repr.emit(
        &src_ip,
        &src,
        ip.emit_frame(src_mac, f.src_mac(), &mut out[..len]),
    );
    Some(len)
}

/// Write a neighbour solicitation for `target` from (`mac`, `ip`) into `out` (to the
/// target's solicited-node group, with the source link-layer address); its length.
pub fn neighbor_solicit(mac: Mac, ip: Ipv6Addr, target: Ipv6Addr, out: &mut [u8]) -> usize {
    let group = solicited_node(&target);
    let ns = NdpRepr::NeighborSolicit {
        target,
        source_lladdr: Some(mac),
    };
    let msg_len = ns.buffer_len();
    let ip6 = Ipv6Repr {
        src: ip,
        dst: group,
        next_header: NEXT_HEADER_ICMPV6,
        payload_len: msg_len,
        hop_limit: NDP_HOP_LIMIT,
    };
    ns.emit(&ip, &group, ip6.emit_frame(mac, multicast_mac(&group), out));
    ETH_HLEN + IPV6_HLEN + msg_len
}

/// A UDP datagram inside an Ethernet/IPv6 frame: (source, destination, payload). None
/// when it is not a well-formed one we can answer: UDP right after the fixed header,
/// a length within the packet, a checksum that verifies (mandatory over IPv6: 0 is
/// refused, RFC 8200 8.1), and a source that is neither unspecified nor multicast.
pub fn parse_udp6(frame: &[u8]) -> Option<(SocketAddrV6, SocketAddrV6, &[u8])> {
    let f = Ipv6Frame::new(frame)?;
    let (src, dst) = (f.src(), f.dst());
    if f.next_header() != NEXT_HEADER_UDP || src.is_unspecified() || src.is_multicast() {
        return None;
    }
    let u = udp::Packet::new_checked(f.payload()).ok()?;
    let d = u.datagram();
    let pseudo = wire::ipv6::pseudo_header(&src, &dst, d.len() as u32, NEXT_HEADER_UDP);
    if u.checksum() == 0 || checksum(d, pseudo) != 0 {
        return None;
    }
    Some((
        SocketAddrV6::new(src, u.src_port(), 0, 0),
        SocketAddrV6::new(dst, u.dst_port(), 0, 0),
        u.into_payload(),
    ))
}

/// Write an Ethernet/IPv6/UDP frame carrying `payload` from `src` (`src_mac`) to `dst`
/// (`dst_mac`) into `out`: hop limit 64 (IPv4's TTL), the UDP checksum over the IPv6
/// pseudo-header.
/// Its length, or None if it does not fit.
pub fn udp6_frame(
    (src_mac, src): (Mac, SocketAddrV6),
    (dst_mac, dst): (Mac, SocketAddrV6),
    payload: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let udp_len = UDP_HLEN + payload.len();
    let len = ETH_HLEN + IPV6_HLEN + udp_len;
    let len_field = u16::try_from(udp_len).ok()?;
    if out.len() < len {
        return None;
    }
    let ip = Ipv6Repr {
        src: *src.ip(),
        dst: *dst.ip(),
        next_header: NEXT_HEADER_UDP,
        payload_len: udp_len,
        hop_limit: 64,
    };
    let d = ip.emit_frame(src_mac, dst_mac, &mut out[..len]);
    d[udp::field::LEN..udp::field::CHECKSUM].copy_from_slice(&len_field.to_be_bytes());
    d[UDP_HLEN..].copy_from_slice(payload);
    let mut u = udp::Packet::new_checked(d).ok()?;
    u.set_src_port(src.port());
    u.set_dst_port(dst.port());
    u.set_checksum(0);
    let c = udp_sent(checksum(u.datagram(), ip.pseudo_header()));
    u.set_checksum(c);
    Some(len)
}

/// Whether `ip` lies in `net`/`prefix`.
pub fn in_subnet6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix.min(128)))
    };
    u128::from(ip) & mask == u128::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    const A_MAC: Mac = [2, 0x42, 0xac, 0x18, 0, 2];
    const GW_MAC: Mac = [2, 0x42, 0xac, 0x18, 0, 1];

    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// A UDP datagram of `payload` bytes from the sandbox to `dst`.
    fn udp(dst: Ipv6Addr, payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HLEN + IPV6_HLEN + 8 + payload];
        let r = Ipv6Repr {
            src: ip("2001:db8:24::2"),
            dst,
            next_header: 17,
            payload_len: 8 + payload,
            hop_limit: 1,
        };
        r.emit_frame(A_MAC, GW_MAC, &mut f);
        f
    }

    fn parse(frame: &[u8]) -> (Ipv6Addr, Ipv6Addr, u8, u8, Vec<u8>) {
        let f = Ipv6Frame::new(frame).expect("IPv6");
        let p = icmpv6::Packet::new_checked(f.payload()).expect("ICMPv6");
        assert!(p.verify_checksum(&f.src(), &f.dst()), "checksum");
        (f.src(), f.dst(), p.msg_type(), p.code(), p.data().to_vec())
    }

    #[test]
    fn errors_quote_what_fits_the_minimum_mtu_and_go_back_to_the_sender() {
        let gw = ip("2001:db8:24::1");
        let mut out = [0u8; 2048];
        let small = udp(ip("2001:db8:9::9"), 20);
        let n = icmp6_error(Icmp6Error::HopLimit, &small, GW_MAC, gw, &mut out).unwrap();
        let (src, dst, t, code, quote) = parse(&out[..n]);
        assert_eq!((src, dst, t, code), (gw, ip("2001:db8:24::2"), 3, 0));
        assert_eq!(quote, small[ETH_HLEN..], "the whole packet quoted");
        assert_eq!((&out[0..6], &out[6..12]), (&A_MAC[..], &GW_MAC[..]));
        let big = udp(ip("2001:db8:9::9"), 1400);
        let n = icmp6_error(Icmp6Error::NoRoute, &big, GW_MAC, gw, &mut out).unwrap();
        assert_eq!(n - ETH_HLEN, MIN_MTU, "cut to the minimum MTU");
        let (.., t, code, _) = parse(&out[..n]);
        assert_eq!((t, code), (1, 0));
        let n = icmp6_error(
            Icmp6Error::PacketTooBig { mtu: 1450 },
            &big,
            GW_MAC,
            gw,
            &mut out,
        )
        .unwrap();
        let f = Ipv6Frame::new(&out[..n]).unwrap();
        let p = icmpv6::Packet::new_checked(f.payload()).unwrap();
        assert_eq!((p.msg_type(), p.mtu()), (2, 1450));
    }

    #[test]
    fn never_about_multicast_errors_or_unspecified_sources() {
        let gw = ip("2001:db8:24::1");
        let mut out = [0u8; 2048];
        let mcast = udp(ip("ff05::1"), 20);
        assert!(icmp6_error(Icmp6Error::HopLimit, &mcast, GW_MAC, gw, &mut out).is_none());
        assert!(
            icmp6_error(
                Icmp6Error::PacketTooBig { mtu: 1280 },
                &mcast,
                GW_MAC,
                gw,
                &mut out
            )
            .is_some(),
            "packet too big is sent for multicast too"
        );
        let small = udp(ip("2001:db8:9::9"), 20);
        let n = icmp6_error(Icmp6Error::HopLimit, &small, GW_MAC, gw, &mut out).unwrap();
        let mut error = out[..n].to_vec();
        // The error itself, routed back through a router with hop limit 1.
        error[ETH_HLEN + 7] = 1;
        assert!(icmp6_error(Icmp6Error::HopLimit, &error, GW_MAC, gw, &mut out).is_none());
        let mut unspec = small.clone();
        unspec[ETH_HLEN + 8..ETH_HLEN + 24].fill(0);
        assert!(icmp6_error(Icmp6Error::HopLimit, &unspec, GW_MAC, gw, &mut out).is_none());
    }

    #[test]
    fn solicitations_go_to_the_solicited_node_group() {
        let mut out = [0u8; 128];
        let me = ip("2001:db8:ff::2");
        let target = ip("2001:db8:ff::1");
        let n = neighbor_solicit(GW_MAC, me, target, &mut out);
        assert_eq!(&out[0..6], &[0x33, 0x33, 0xff, 0, 0, 1]);
        let f = Ipv6Frame::new(&out[..n]).unwrap();
        assert_eq!(f.dst(), ip("ff02::1:ff00:1"));
        let p = icmpv6::Packet::new_checked(f.payload()).unwrap();
        assert_eq!(
            NdpRepr::parse(&f.src(), &f.dst(), &p),
            Ok(NdpRepr::NeighborSolicit {
                target,
                source_lladdr: Some(GW_MAC)
            })
        );
    }

    #[test]
    fn subnets() {
        assert!(in_subnet6(ip("2001:db8:1::5"), ip("2001:db8:1::"), 64));
        assert!(!in_subnet6(ip("2001:db8:2::5"), ip("2001:db8:1::"), 64));
        assert!(in_subnet6(ip("::1"), ip("::"), 0));
        assert!(in_subnet6(ip("2001:db8::1"), ip("2001:db8::1"), 128));
    }
}
