//! The gateway's IPv6 side: it answers Neighbor Solicitations for its address (to the
//! solicited-node group, or unicast to its MAC as neighbour unreachability detection
//! sends them) with a Neighbor Advertisement, and echo requests sent to it, as a
//! router on the link (RFC 4861 7.2.4, RFC 4443 4.2). Router Advertisements are not
//! sent: sandboxes are configured statically, as Docker configures them. The NDP proxy
//! answers solicitations for other hosts' endpoints of an overlay network the same way
//! ([`proxy_reply`], as the ARP proxy does for IPv4). Replies are written into a
//! caller-supplied buffer (no allocation).

use std::net::Ipv6Addr;

use crate::fdb::Mac;

use wire::icmpv6::{self, NaFlags, NdpRepr, ECHO_REQUEST, NDP_HOP_LIMIT, NEIGHBOR_SOLICIT};
use wire::ipv6::{Ipv6Frame, Ipv6Repr, ALL_NODES, IPV6_HLEN, NEXT_HEADER_ICMPV6};
use wire::ETH_HLEN;

/// The hop limit of the gateway's echo replies.
const HOP_LIMIT: u8 = 64;

/// If `frame` is a Neighbor Solicitation for `ip` (the gateway's IPv6 address) or an
/// ICMPv6 echo request to it, write the answer into `out` (from `mac`) and return its
/// length. Anything else, malformed NDP included (RFC 4861 7.1.1: silently dropped by
/// a node), gives None.
#[inline]
pub fn reply(mac: Mac, ip: Ipv6Addr, frame: &[u8], out: &mut [u8]) -> Option<usize> {
    let f = Ipv6Frame::new(frame)?;
    if f.next_header() != NEXT_HEADER_ICMPV6 {
        return None;
    }
    let msg = icmpv6::Packet::new_checked(f.payload()).ok()?;
    match msg.msg_type() {
        NEIGHBOR_SOLICIT => advertise(&f, &msg, out, |t| (t == ip).then_some((mac, true))),
        ECHO_REQUEST if f.dst() == ip => echo_reply(mac, &f, &msg, out),
        _ => None,
    }
}

/// If `frame` is a Neighbor Solicitation for an address `owner` knows the MAC of (a
/// remote endpoint's), the Neighbor Advertisement its owner would send (not a
/// router's), written into `out`; its length.
#[inline]
pub fn proxy_reply(
    frame: &[u8],
    out: &mut [u8],
    owner: impl FnOnce(Ipv6Addr) -> Option<Mac>,
) -> Option<usize> {
    let f = Ipv6Frame::new(frame)?;
    if f.next_header() != NEXT_HEADER_ICMPV6 {
        return None;
    }
    let msg = icmpv6::Packet::new_checked(f.payload()).ok()?;
    if msg.msg_type() != NEIGHBOR_SOLICIT {
        return None;
    }
    advertise(&f, &msg, out, |t| owner(t).map(|m| (m, false)))
}

/// The Neighbor Advertisement answering a valid solicitation for a target `answer`
/// gives a MAC for (and whether it is a router): solicited, override; to the
/// solicitation's source, or to all nodes when it came from the unspecified address
/// (duplicate address detection: RFC 4861 7.2.4).
fn advertise(
    f: &Ipv6Frame,
    msg: &icmpv6::Packet<&[u8]>,
    out: &mut [u8],
    answer: impl FnOnce(Ipv6Addr) -> Option<(Mac, bool)>,
) -> Option<usize> {
    if !icmpv6::ndp_hop_limit_ok(f.hop_limit()) {
        return None;
    }
    let (src, dst) = (f.src(), f.dst());
    let NdpRepr::NeighborSolicit {
        target,
        source_lladdr,
    } = NdpRepr::parse(&src, &dst, msg).ok()?
    else {
        return None;
    };
    let (mac, router) = answer(target)?;
    let ip = target;
    let dad = src.is_unspecified();
    let na = NdpRepr::NeighborAdvert {
        flags: NaFlags {
            router,
            solicited: !dad,
            override_: true,
        },
        target: ip,
        target_lladdr: Some(mac),
    };
    let (to, to_mac) = if dad {
        (ALL_NODES, wire::ipv6::multicast_mac(&ALL_NODES))
    } else {
        (src, source_lladdr.unwrap_or_else(|| f.src_mac()))
    };
    let len = na.buffer_len();
    let total = ETH_HLEN + IPV6_HLEN + len;
    if out.len() < total {
        return None;
    }
    let ip6 = Ipv6Repr {
        src: ip,
        dst: to,
        next_header: NEXT_HEADER_ICMPV6,
        payload_len: len,
        hop_limit: NDP_HOP_LIMIT,
    };
    na.emit(&ip, &to, ip6.emit_frame(mac, to_mac, out));
    Some(total)
}

/// The echo reply to a valid echo request: addresses swapped, the same identifier,
/// sequence and data.
fn echo_reply(
    mac: Mac,
    f: &Ipv6Frame,
    msg: &icmpv6::Packet<&[u8]>,
    out: &mut [u8],
) -> Option<usize> {
    let (src, dst) = (f.src(), f.dst());
    let icmpv6::Repr::EchoRequest { ident, seq, data } =
        icmpv6::Repr::parse(&src, &dst, msg).ok()?
    else {
        return None;
    };
    // Echo requests from the unspecified or a multicast address get no answer.
    if src.is_unspecified() || src.is_multicast() {
        return None;
    }
    let answer = icmpv6::Repr::EchoReply { ident, seq, data };
    let len = answer.buffer_len();
    let total = ETH_HLEN + IPV6_HLEN + len;
    if out.len() < total {
        return None;
    }
    let ip6 = Ipv6Repr {
        src: dst,
        dst: src,
        next_header: NEXT_HEADER_ICMPV6,
        payload_len: len,
        hop_limit: HOP_LIMIT,
    };
    answer.emit(&dst, &src, ip6.emit_frame(mac, f.src_mac(), out));
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::ipv6::{multicast_mac, solicited_node};

    const GW_MAC: Mac = [0x02, 0x42, 0xac, 0x14, 0, 1];
    const C_MAC: Mac = [0x02, 0x42, 0xac, 0x14, 0, 2];

    fn gw() -> Ipv6Addr {
        "2001:db8:1::1".parse().unwrap()
    }
    fn c() -> Ipv6Addr {
        "2001:db8:1::2".parse().unwrap()
    }

    /// A frame from `src_mac`/`src` to `dst_mac`/`dst` carrying `msg` as ICMPv6 with
    /// hop limit `hop`.
    fn icmp6(
        src_mac: Mac,
        dst_mac: Mac,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop: u8,
        emit: impl FnOnce(&mut [u8]),
        len: usize,
    ) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HLEN + IPV6_HLEN + len];
        let ip = Ipv6Repr {
            src,
            dst,
            next_header: NEXT_HEADER_ICMPV6,
            payload_len: len,
            hop_limit: hop,
        };
        emit(ip.emit_frame(src_mac, dst_mac, &mut f));
        f
    }

    fn solicit(src: Ipv6Addr, target: Ipv6Addr, hop: u8) -> Vec<u8> {
        let group = solicited_node(&target);
        let ns = NdpRepr::NeighborSolicit {
            target,
            source_lladdr: (!src.is_unspecified()).then_some(C_MAC),
        };
        icmp6(
            C_MAC,
            multicast_mac(&group),
            src,
            group,
            hop,
            |m| ns.emit(&src, &group, m),
            ns.buffer_len(),
        )
    }

    fn parse_na(reply: &[u8]) -> (Ipv6Addr, Ipv6Addr, NdpRepr) {
        let f = Ipv6Frame::new(reply).expect("IPv6");
        assert_eq!(f.hop_limit(), 255);
        let p = icmpv6::Packet::new_checked(f.payload()).unwrap();
        let r = NdpRepr::parse(&f.src(), &f.dst(), &p).expect("a valid NA");
        (f.src(), f.dst(), r)
    }

    #[test]
    fn a_solicitation_for_the_gateway_is_advertised_to_the_asker() {
        let mut out = [0u8; 256];
        let n = reply(GW_MAC, gw(), &solicit(c(), gw(), 255), &mut out).expect("NA");
        let r = &out[..n];
        assert_eq!((&r[0..6], &r[6..12]), (&C_MAC[..], &GW_MAC[..]));
        let (src, dst, na) = parse_na(r);
        assert_eq!((src, dst), (gw(), c()));
        assert_eq!(
            na,
            NdpRepr::NeighborAdvert {
                flags: NaFlags {
                    router: true,
                    solicited: true,
                    override_: true
                },
                target: gw(),
                target_lladdr: Some(GW_MAC),
            }
        );
    }

    #[test]
    fn the_ndp_proxy_answers_as_the_owner_not_as_a_router() {
        const OWNER: Mac = [2, 0, 0, 0, 0, 0x77];
        let remote: Ipv6Addr = "fd00:1::9".parse().unwrap();
        let owner = |t: Ipv6Addr| (t == remote).then_some(OWNER);
        let mut out = [0u8; 256];
        let n = proxy_reply(&solicit(c(), remote, 255), &mut out, owner).expect("NA");
        assert_eq!((&out[0..6], &out[6..12]), (&C_MAC[..], &OWNER[..]));
        let (src, dst, na) = parse_na(&out[..n]);
        assert_eq!((src, dst), (remote, c()));
        assert_eq!(
            na,
            NdpRepr::NeighborAdvert {
                flags: NaFlags {
                    router: false,
                    solicited: true,
                    override_: true
                },
                target: remote,
                target_lladdr: Some(OWNER),
            }
        );
        // Not the owner's address, or a forwarded solicitation: nothing.
        assert_eq!(proxy_reply(&solicit(c(), gw(), 255), &mut out, owner), None);
        assert_eq!(
            proxy_reply(&solicit(c(), remote, 64), &mut out, owner),
            None
        );
    }

    #[test]
    fn duplicate_address_detection_is_answered_to_all_nodes() {
        let mut out = [0u8; 256];
        let ns = solicit(Ipv6Addr::UNSPECIFIED, gw(), 255);
        let n = reply(GW_MAC, gw(), &ns, &mut out).expect("NA");
        assert_eq!(&out[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        let (_, dst, na) = parse_na(&out[..n]);
        assert_eq!(dst, ALL_NODES);
        assert!(matches!(na, NdpRepr::NeighborAdvert { flags, .. } if !flags.solicited));
    }

    #[test]
    fn other_targets_forwarded_hops_and_bad_checksums_get_nothing() {
        let mut out = [0u8; 256];
        assert!(reply(GW_MAC, gw(), &solicit(c(), c(), 255), &mut out).is_none());
        assert!(
            reply(GW_MAC, gw(), &solicit(c(), gw(), 254), &mut out).is_none(),
            "NDP must come with hop limit 255 (not routed)"
        );
        let mut bad = solicit(c(), gw(), 255);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(reply(GW_MAC, gw(), &bad, &mut out).is_none(), "checksum");
        assert!(reply(GW_MAC, gw(), &bad[..50], &mut out).is_none(), "runt");
    }

    fn echo(dst: Ipv6Addr) -> Vec<u8> {
        let req = icmpv6::Repr::EchoRequest {
            ident: 0x1234,
            seq: 7,
            data: b"abcdefgh",
        };
        icmp6(
            C_MAC,
            GW_MAC,
            c(),
            dst,
            64,
            |m| req.emit(&c(), &dst, m),
            req.buffer_len(),
        )
    }

    #[test]
    fn echo_to_the_gateway_is_answered_with_the_same_data() {
        let mut out = [0u8; 256];
        let n = reply(GW_MAC, gw(), &echo(gw()), &mut out).expect("reply");
        let f = Ipv6Frame::new(&out[..n]).unwrap();
        assert_eq!((f.src(), f.dst()), (gw(), c()));
        assert_eq!((f.src_mac(), f.dst_mac()), (GW_MAC, C_MAC));
        let p = icmpv6::Packet::new_checked(f.payload()).unwrap();
        assert_eq!(
            icmpv6::Repr::parse(&f.src(), &f.dst(), &p),
            Ok(icmpv6::Repr::EchoReply {
                ident: 0x1234,
                seq: 7,
                data: b"abcdefgh"
            })
        );
        let far: Ipv6Addr = "2001:db8:9::1".parse().unwrap();
        assert!(
            reply(GW_MAC, gw(), &echo(far), &mut out).is_none(),
            "not the gateway's: routed"
        );
    }
}
