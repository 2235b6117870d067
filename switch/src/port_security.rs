//! Port security (OVN's `port_security`, Cilium's endpoint checks): an endpoint's port
//! may send only from the MACs and IPv4 and IPv6 addresses the control plane gave it,
//! plus the extra addresses allowed for it (OVN's allowed-address-pairs: a virtual IP, a
//! second MAC). What a protocol needs passes: ARP for its own address (and RFC 5227
//! probes from 0.0.0.0); IPv6 from its EUI-64 link-local address (RFC 4291 appendix A:
//! sandboxes use `addr_gen_mode` eui64), and from :: only Duplicate Address Detection
//! (RFC 4862) and MLDv2 reports (RFC 3810). Neighbour discovery may not speak for
//! another node: a Neighbor Advertisement's target is one of the port's own addresses
//! and every link-layer address option one of its MACs; Router Advertisements and
//! Redirects never pass (RA guard, RFC 6105: a sandbox is not a router). VLAN-tagged
//! frames never pass: a sandbox must not hop onto a trunk's other VLANs. Checked once
//! per frame, before the source is learned, so a spoofed MAC is never learned on the
//! port (and the kernel's fast path, which forwards only from a source installed on the
//! port, follows).
//!
//! IPv6 extension headers (hop-by-hop, routing, destination options, fragment,
//! authentication) are walked, up to [`MAX_EXTENSION_HEADERS`] of them, to the upper
//! layer, so neighbour discovery cannot hide behind them (MLDv2 reports always carry a
//! hop-by-hop header); a chain that is longer or runs past the packet is refused, and so
//! is neighbour discovery or MLD in a fragment (RFC 6980). A later fragment holds no
//! upper-layer header and is checked by its source only. Only frames that carry
//! extension headers pay for the walk; TCP, UDP and the rest pass on their source.
//! Checksums, hop limits and payloads beyond the header chain are the receiver's to
//! check: a frame they would fail is dropped there, whoever sent it.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::fdb::Mac;
use wire::ethernet::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use wire::icmpv6::{self, NdpOption};
use wire::ipv6::{Ipv6Frame, NEXT_HEADER_ICMPV6};

/// Most addresses one port may use (its own and the allowed extras), per kind.
pub const MAX_ADDRESSES: usize = 8;

/// Most IPv6 extension headers walked before the upper layer; a longer chain is refused
/// (real traffic has one or two).
pub const MAX_EXTENSION_HEADERS: usize = 8;

const TAGS: [u16; 3] = [0x8100, 0x88a8, 0x9100];

// IPv6 extension headers the guard walks (RFC 8200 4, RFC 4302).
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AUTH: u8 = 51;
const DEST_OPTS: u8 = 60;

// ICMPv6 types the guard treats apart (the NDP ones are in `wire::icmpv6`).
const MLD_QUERY: u8 = 130;
const REDIRECT: u8 = 137;
const MLDV2_REPORT: u8 = 143;

/// What one port may send from. Fixed-size and `Copy`: read once per burst, no
/// allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortGuard {
    macs: [Mac; MAX_ADDRESSES],
    ips: [Ipv4Addr; MAX_ADDRESSES],
    ips6: [Ipv6Addr; MAX_ADDRESSES],
    // How many of each are used (u8: the guard travels in every worker's control
    // message, which stays small).
    n_macs: u8,
    n_ips: u8,
    n_ips6: u8,
}

/// The EUI-64 link-local address of `mac`: fe80::/64 and the modified EUI-64 interface
/// identifier (RFC 4291 appendix A: ff:fe in the middle, the universal/local bit
/// inverted), the one a kernel with `addr_gen_mode` eui64 gives the interface.
pub fn link_local(mac: Mac) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

impl PortGuard {
    /// A guard for `macs`, `ips` and `ips6`, each deduplicated (the unspecified and
    /// multicast IPv6 addresses, never a source, are left out). An IPv6-only endpoint
    /// has no IPv4 address and one on an IPv4-only network no IPv6 one; None when
    /// `macs` is empty, when there is no address of either family, or when a list is
    /// longer than [`MAX_ADDRESSES`].
    pub fn new(macs: &[Mac], ips: &[Ipv4Addr], ips6: &[Ipv6Addr]) -> Option<PortGuard> {
        if macs.is_empty()
            || macs.len() > MAX_ADDRESSES
            || ips.len() > MAX_ADDRESSES
            || ips6.len() > MAX_ADDRESSES
        {
            return None;
        }
        let mut g = PortGuard {
            macs: [[0; 6]; MAX_ADDRESSES],
            n_macs: 0,
            ips: [Ipv4Addr::UNSPECIFIED; MAX_ADDRESSES],
            n_ips: 0,
            ips6: [Ipv6Addr::UNSPECIFIED; MAX_ADDRESSES],
            n_ips6: 0,
        };
        for m in macs {
            if !g.macs().contains(m) {
                g.macs[usize::from(g.n_macs)] = *m;
                g.n_macs += 1;
            }
        }
        for ip in ips {
            if !g.ips().contains(ip) {
                g.ips[usize::from(g.n_ips)] = *ip;
                g.n_ips += 1;
            }
        }
        for ip in ips6 {
            if !ip.is_unspecified() && !ip.is_multicast() && !g.ips6().contains(ip) {
                g.ips6[usize::from(g.n_ips6)] = *ip;
                g.n_ips6 += 1;
            }
        }
        (g.n_ips + g.n_ips6 > 0).then_some(g)
    }

    /// The IPv4 addresses the port may send from.
    pub fn ips(&self) -> &[Ipv4Addr] {
        &self.ips[..usize::from(self.n_ips)]
    }

    /// The IPv6 addresses the port may send from, besides its MACs' link-local ones
    /// ([`link_local`]).
    pub fn ips6(&self) -> &[Ipv6Addr] {
        &self.ips6[..usize::from(self.n_ips6)]
    }

    fn macs(&self) -> &[Mac] {
        &self.macs[..usize::from(self.n_macs)]
    }

    fn mac_ok(&self, m: &[u8]) -> bool {
        self.macs().iter().any(|a| a[..] == *m)
    }

    fn ip_ok(&self, ip: &[u8]) -> bool {
        self.ips().iter().any(|a| a.octets()[..] == *ip)
    }

    /// One of the port's IPv6 addresses: its own, or a link-local one of its MACs.
    fn own6(&self, ip: &Ipv6Addr) -> bool {
        self.ips6().contains(ip) || self.macs().iter().any(|m| link_local(*m) == *ip)
    }

    /// Whether the port may send `frame` (an Ethernet frame; a runt is not allowed).
    pub fn allows(&self, frame: &[u8]) -> bool {
        if frame.len() < 14 || !self.mac_ok(&frame[6..12]) {
            return false;
        }
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        match ethertype {
            ETHERTYPE_IPV4 => frame.len() >= 34 && self.ip_ok(&frame[26..30]),
            ETHERTYPE_ARP => {
                // Ethernet/IPv4 ARP: sender MAC at 22, sender IP at 28.
                frame.len() >= 42
                    && self.mac_ok(&frame[22..28])
                    && (self.ip_ok(&frame[28..32]) || frame[28..32] == [0, 0, 0, 0])
            }
            ETHERTYPE_IPV6 => self.ipv6_ok(frame),
            t if TAGS.contains(&t) => false,
            _ => true,
        }
    }

    /// The IPv6 rules (the module's docs): the source, then for ICMPv6 the type and
    /// neighbour discovery's targets and link-layer addresses.
    fn ipv6_ok(&self, frame: &[u8]) -> bool {
        // Version 6 and a payload length that fits the frame.
        let Some(ip) = Ipv6Frame::new(frame) else {
            return false;
        };
        let src = ip.src();
        let (msg, fragment) = match upper_layer(ip.next_header(), ip.payload()) {
            Some(Upper::Icmp { msg, fragment }) => (msg, fragment),
            Some(Upper::Other) => return self.own6(&src),
            None => return false,
        };
        let Ok(p) = icmpv6::Packet::new_checked(msg) else {
            return false;
        };
        let t = p.msg_type();
        if fragment && matches!(t, MLD_QUERY..=REDIRECT | MLDV2_REPORT) {
            return false; // RFC 6980: never fragmented
        }
        match t {
            icmpv6::ROUTER_ADVERT | REDIRECT => false,
            icmpv6::NEIGHBOR_SOLICIT => match self.nd_options(&p) {
                None => false,
                // Duplicate Address Detection (RFC 4862 5.4.2), for an address of its own.
                Some(has_source) if src.is_unspecified() => {
                    !has_source && neighbor_target(msg).is_some_and(|t| self.own6(&t))
                }
                Some(_) => self.own6(&src),
            },
            icmpv6::NEIGHBOR_ADVERT => {
                self.own6(&src)
                    && self.nd_options(&p).is_some()
                    && neighbor_target(msg).is_some_and(|t| self.own6(&t))
            }
            icmpv6::ROUTER_SOLICIT => self.own6(&src) && self.nd_options(&p).is_some(),
            // RFC 3810 5.2.13: sent from :: before the node has a link-local address.
            MLDV2_REPORT => src.is_unspecified() || self.own6(&src),
            _ => self.own6(&src),
        }
    }

    /// A Router or Neighbor Solicitation's or Neighbor Advertisement's options, when
    /// they are well formed and every link-layer address in them is one of the port's
    /// MACs: whether a source link-layer address is among them.
    fn nd_options<T: AsRef<[u8]>>(&self, p: &icmpv6::Packet<T>) -> Option<bool> {
        let mut has_source = false;
        for o in p.ndp_options().ok()? {
            match o.ok()? {
                NdpOption::SourceLladdr(m) => {
                    has_source = true;
                    if !self.mac_ok(&m) {
                        return None;
                    }
                }
                NdpOption::TargetLladdr(m) if !self.mac_ok(&m) => return None,
                _ => {}
            }
        }
        Some(has_source)
    }
}

/// A Neighbor Solicitation's or Advertisement's target.
fn neighbor_target(msg: &[u8]) -> Option<Ipv6Addr> {
    icmpv6::NeighborPacket::new_checked(msg)
        .ok()
        .map(|n| n.target())
}

/// What the guard needs to know of the upper layer behind an IPv6 header chain.
enum Upper<'a> {
    /// An ICMPv6 message (as much of it as the packet holds), and whether it is the
    /// first fragment of a fragmented packet.
    Icmp { msg: &'a [u8], fragment: bool },
    /// Any other upper layer, or a later fragment (which holds none).
    Other,
}

/// The upper layer behind the extension headers from `next` (the fixed header's Next
/// Header) over `rest` (the payload); None when the chain is longer than
/// [`MAX_EXTENSION_HEADERS`] or runs past the packet.
fn upper_layer(mut next: u8, mut rest: &[u8]) -> Option<Upper<'_>> {
    let mut fragment = false;
    for _ in 0..=MAX_EXTENSION_HEADERS {
        let len = match next {
            NEXT_HEADER_ICMPV6 => {
                return Some(Upper::Icmp {
                    msg: rest,
                    fragment,
                })
            }
            HOP_BY_HOP | ROUTING | DEST_OPTS => (usize::from(*rest.get(1)?) + 1) * 8,
            AUTH => (usize::from(*rest.get(1)?) + 2) * 4,
            FRAGMENT => {
                let offset = u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]) >> 3;
                if offset != 0 {
                    return Some(Upper::Other);
                }
                fragment = true;
                8
            }
            _ => return Some(Upper::Other),
        };
        let header = rest.get(..len)?;
        next = header[0];
        rest = &rest[len..];
    }
    None
}

/// IPv6 frames for the guard's tests and the fast path's, built with `wire`'s emitters.
#[cfg(test)]
pub(crate) mod frames {
    use std::net::Ipv6Addr;

    use wire::icmpv6::{self, NdpRepr};
    use wire::ipv6::{Ipv6Repr, IPV6_HLEN};
    use wire::{Mac, ETH_HLEN};

    pub const UDP: u8 = 17;
    pub const TCP: u8 = 6;

    /// An IPv6 frame from `src_mac` to `dst_mac`, `payload` behind the fixed header.
    pub fn ipv6(
        src_mac: Mac,
        dst_mac: Mac,
        (src, dst): (Ipv6Addr, Ipv6Addr),
        next_header: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HLEN + IPV6_HLEN + payload.len()];
        let repr = Ipv6Repr {
            src,
            dst,
            next_header,
            payload_len: payload.len(),
            hop_limit: 255,
        };
        repr.emit_frame(src_mac, dst_mac, &mut f)
            .copy_from_slice(payload);
        f
    }

    /// A UDP (or TCP, by `next_header`) packet's first bytes: ports 5201 -> 5201.
    pub fn transport(mac: Mac, to: Mac, addrs: (Ipv6Addr, Ipv6Addr), next_header: u8) -> Vec<u8> {
        let mut l4 = [0u8; 20];
        l4[..4].copy_from_slice(&[0x14, 0x51, 0x14, 0x51]);
        ipv6(mac, to, addrs, next_header, &l4)
    }

    /// An echo request (`reply`: an echo reply).
    pub fn echo(mac: Mac, to: Mac, (src, dst): (Ipv6Addr, Ipv6Addr), reply: bool) -> Vec<u8> {
        let (ident, seq, data) = (7, 1, &b"ping6"[..]);
        let r = if reply {
            icmpv6::Repr::EchoReply { ident, seq, data }
        } else {
            icmpv6::Repr::EchoRequest { ident, seq, data }
        };
        let mut m = vec![0u8; r.buffer_len()];
        r.emit(&src, &dst, &mut m);
        ipv6(mac, to, (src, dst), 58, &m)
    }

    /// An NDP message, its checksum filled in.
    pub fn ndp_message(r: &NdpRepr, (src, dst): (Ipv6Addr, Ipv6Addr)) -> Vec<u8> {
        let mut m = vec![0u8; r.buffer_len()];
        r.emit(&src, &dst, &mut m);
        m
    }

    pub fn ndp(mac: Mac, to: Mac, addrs: (Ipv6Addr, Ipv6Addr), r: &NdpRepr) -> Vec<u8> {
        ipv6(mac, to, addrs, 58, &ndp_message(r, addrs))
    }

    /// A hop-by-hop options header with a router alert (RFC 2711, MLD's), then
    /// `next_header`.
    pub fn hop_by_hop(next_header: u8) -> [u8; 8] {
        [next_header, 0, 5, 2, 0, 0, 1, 0]
    }
}

#[cfg(test)]
mod tests {
    use super::frames::*;
    use super::*;
    use wire::icmpv6::{NaFlags, NdpRepr};
    use wire::ipv6::{solicited_node, ALL_NODES, ALL_ROUTERS};

    const MAC: Mac = [2, 0x42, 172, 20, 0, 2];
    const IP: Ipv4Addr = Ipv4Addr::new(172, 20, 0, 2);
    const OTHER_MAC: Mac = [2, 0x42, 172, 20, 0, 3];
    const GW: Mac = [2, 0x42, 172, 20, 0, 1];
    const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 1);
    const IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 2);
    const OTHER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 3);
    const MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
    const UN: Ipv6Addr = Ipv6Addr::UNSPECIFIED;

    fn eth(src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend(src);
        f.extend(ethertype.to_be_bytes());
        f.extend(payload);
        f.resize(f.len().max(60), 0);
        f
    }

    fn ipv4(src: Mac, ip: Ipv4Addr) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 17, 0, 0];
        p.extend(ip.octets());
        p.extend([172, 20, 0, 1]);
        eth(src, ETHERTYPE_IPV4, &p)
    }

    fn arp(src: Mac, sender_mac: Mac, sender_ip: Ipv4Addr) -> Vec<u8> {
        let mut p = vec![0, 1, 8, 0, 6, 4, 0, 1];
        p.extend(sender_mac);
        p.extend(sender_ip.octets());
        p.extend([0; 6]);
        p.extend([172, 20, 0, 1]);
        eth(src, ETHERTYPE_ARP, &p)
    }

    fn dual() -> PortGuard {
        PortGuard::new(&[MAC], &[IP], &[IP6]).expect("guard")
    }

    fn udp_from(src: Ipv6Addr) -> Vec<u8> {
        transport(MAC, GW, (src, GW6), UDP)
    }

    fn ns(src: Ipv6Addr, target: Ipv6Addr, source_lladdr: Option<Mac>) -> Vec<u8> {
        let r = NdpRepr::NeighborSolicit {
            target,
            source_lladdr,
        };
        ndp(
            MAC,
            [0x33, 0x33, 0xff, 0, 0, 1],
            (src, solicited_node(&target)),
            &r,
        )
    }

    fn na(src: Ipv6Addr, target: Ipv6Addr, target_lladdr: Option<Mac>) -> Vec<u8> {
        let flags = NaFlags {
            solicited: true,
            override_: true,
            ..NaFlags::default()
        };
        let r = NdpRepr::NeighborAdvert {
            flags,
            target,
            target_lladdr,
        };
        ndp(MAC, GW, (src, GW6), &r)
    }

    fn rs(src: Ipv6Addr, source_lladdr: Option<Mac>) -> Vec<u8> {
        let r = NdpRepr::RouterSolicit { source_lladdr };
        ndp(MAC, [0x33, 0x33, 0, 0, 0, 2], (src, ALL_ROUTERS), &r)
    }

    /// An MLDv2 report joining one group, behind a hop-by-hop header as RFC 3810 5
    /// sends it (or, with `direct`, without one).
    fn mldv2(src: Ipv6Addr, direct: bool) -> Vec<u8> {
        let mut m = vec![MLDV2_REPORT, 0, 0, 0, 0, 0, 0, 1];
        m.extend([4, 0, 0, 0]); // CHANGE_TO_EXCLUDE, no sources
        m.extend(solicited_node(&IP6).octets());
        let mut p = icmpv6::Packet::new_checked(&mut m[..]).expect("header");
        p.fill_checksum(&src, &MLDV2_ROUTERS);
        let to = [0x33, 0x33, 0, 0, 0, 0x16];
        if direct {
            return ipv6(MAC, to, (src, MLDV2_ROUTERS), 58, &m);
        }
        let mut payload = hop_by_hop(58).to_vec();
        payload.extend(m);
        ipv6(MAC, to, (src, MLDV2_ROUTERS), HOP_BY_HOP, &payload)
    }

    #[test]
    fn only_its_own_addresses_pass() {
        let g = PortGuard::new(&[MAC], &[IP], &[]).expect("guard");
        let other_ip = Ipv4Addr::new(172, 21, 0, 2);
        assert!(g.allows(&ipv4(MAC, IP)));
        assert!(!g.allows(&ipv4(OTHER_MAC, IP)), "another MAC");
        assert!(!g.allows(&ipv4(MAC, other_ip)), "another network's address");
        assert!(g.allows(&arp(MAC, MAC, IP)));
        assert!(
            g.allows(&arp(MAC, MAC, Ipv4Addr::UNSPECIFIED)),
            "RFC 5227 probe"
        );
        assert!(!g.allows(&arp(MAC, OTHER_MAC, IP)), "ARP for another MAC");
        assert!(
            !g.allows(&arp(MAC, MAC, other_ip)),
            "ARP for another address"
        );
        assert!(!g.allows(&eth(MAC, 0x8100, &[0, 10, 8, 0])), "802.1Q tag");
        assert!(!g.allows(&eth(MAC, 0x88a8, &[0, 10, 8, 0])), "802.1ad tag");
        assert!(!g.allows(&[0u8; 10]), "a runt");
        assert!(
            !g.allows(&eth(MAC, ETHERTYPE_IPV4, &[0x45])),
            "a truncated header"
        );
    }

    #[test]
    fn allowed_extras_pass_too() {
        let vip = Ipv4Addr::new(172, 20, 0, 100);
        let mac2 = [2, 0, 0, 0, 0, 9];
        let g = PortGuard::new(&[MAC, mac2], &[IP, vip], &[]).expect("guard");
        assert!(g.allows(&ipv4(MAC, vip)));
        assert!(g.allows(&ipv4(mac2, IP)));
        assert!(g.allows(&arp(mac2, mac2, vip)));
        assert!(PortGuard::new(&[], &[IP], &[IP6]).is_none());
        assert!(PortGuard::new(&[MAC], &[IP; MAX_ADDRESSES + 1], &[]).is_none());
    }

    #[test]
    fn either_family_alone_makes_a_guard() {
        let only6 = PortGuard::new(&[MAC], &[], &[IP6, IP6]).expect("IPv6-only");
        assert_eq!((only6.ips(), only6.ips6()), (&[][..], &[IP6][..]));
        assert!(!only6.allows(&ipv4(MAC, IP)), "no IPv4 address of its own");
        assert!(only6.allows(&udp_from(IP6)));
        assert!(PortGuard::new(&[MAC], &[], &[]).is_none(), "no address");
        assert!(PortGuard::new(&[MAC], &[], &[IP6; MAX_ADDRESSES + 1]).is_none());
        // Never a source: left out, so a guard of only these has no address.
        let never = [UN, ALL_NODES];
        assert!(PortGuard::new(&[MAC], &[], &never).is_none());
        let g = PortGuard::new(&[MAC], &[IP], &never).expect("guard");
        assert!(g.ips6().is_empty());
        assert!(!g.allows(&udp_from(UN)), ":: is not an address of its own");
    }

    #[test]
    fn link_local_is_modified_eui64() {
        // RFC 4291 appendix A's example pattern, and what Linux derives for 02:42:ac:14:00:02.
        let want: Ipv6Addr = "fe80::42:acff:fe14:2".parse().expect("address");
        assert_eq!(link_local(MAC), want);
        let universal: Ipv6Addr = "fe80::21a:2bff:fe3c:4d5e".parse().expect("address");
        assert_eq!(link_local([0, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]), universal);
    }

    #[test]
    fn ipv6_from_its_own_addresses_only() {
        let g = dual();
        assert!(g.allows(&udp_from(IP6)), "its own address");
        assert!(g.allows(&transport(MAC, GW, (IP6, GW6), TCP)), "TCP too");
        assert!(!g.allows(&udp_from(OTHER6)), "another address");
        assert!(
            !g.allows(&transport(OTHER_MAC, GW, (IP6, GW6), UDP)),
            "another MAC"
        );
        assert!(g.allows(&echo(MAC, GW, (IP6, GW6), false)), "ping");
        assert!(
            !g.allows(&echo(MAC, GW, (OTHER6, GW6), false)),
            "ping from another address"
        );
    }

    #[test]
    fn ipv6_from_its_macs_link_local_addresses() {
        let mac2 = [2, 0, 0, 0, 0, 9];
        let g = PortGuard::new(&[MAC, mac2], &[IP], &[]).expect("guard");
        assert!(g.allows(&udp_from(link_local(MAC))));
        assert!(
            g.allows(&udp_from(link_local(mac2))),
            "an allowed extra MAC's"
        );
        assert!(
            !g.allows(&udp_from(link_local(OTHER_MAC))),
            "another node's link-local address"
        );
        let not_eui64: Ipv6Addr = "fe80::1".parse().expect("address");
        assert!(!g.allows(&udp_from(not_eui64)));
    }

    #[test]
    fn the_unspecified_address_only_for_dad_and_mldv2() {
        let g = dual();
        assert!(!g.allows(&udp_from(UN)), "UDP from ::");
        assert!(!g.allows(&echo(MAC, GW, (UN, GW6), false)), "echo from ::");
        assert!(!g.allows(&rs(UN, None)), "RS from ::");
        assert!(g.allows(&ns(UN, IP6, None)), "DAD for its address");
        assert!(
            g.allows(&ns(UN, link_local(MAC), None)),
            "DAD for its link-local"
        );
        assert!(
            !g.allows(&ns(UN, IP6, Some(MAC))),
            "DAD carries no source link-layer address"
        );
        assert!(
            !g.allows(&ns(UN, OTHER6, None)),
            "DAD for another node's address"
        );
        assert!(g.allows(&mldv2(UN, false)), "MLDv2 report from ::");
        assert!(g.allows(&mldv2(UN, true)), "without the hop-by-hop header");
        assert!(g.allows(&mldv2(link_local(MAC), false)));
        assert!(!g.allows(&mldv2(OTHER6, false)), "from another address");
        let mut query = mldv2(UN, false);
        query[14 + 40 + 8] = MLD_QUERY;
        assert!(!g.allows(&query), "only reports from ::");
    }

    #[test]
    fn neighbour_discovery_speaks_only_for_the_port() {
        let g = dual();
        let ll = link_local(MAC);
        // Solicitations: its own source, its own link-layer address; any target.
        assert!(g.allows(&ns(IP6, GW6, Some(MAC))));
        assert!(g.allows(&ns(ll, GW6, None)));
        assert!(
            !g.allows(&ns(OTHER6, GW6, Some(MAC))),
            "from another address"
        );
        assert!(
            !g.allows(&ns(IP6, GW6, Some(OTHER_MAC))),
            "another MAC as the source link-layer address"
        );
        // Advertisements: for its own addresses, with its own link-layer address.
        assert!(g.allows(&na(IP6, IP6, Some(MAC))));
        assert!(g.allows(&na(ll, ll, Some(MAC))));
        assert!(g.allows(&na(ll, IP6, None)));
        assert!(
            !g.allows(&na(IP6, OTHER6, Some(MAC))),
            "another node's target"
        );
        assert!(
            !g.allows(&na(IP6, link_local(OTHER_MAC), Some(MAC))),
            "another node's link-local target"
        );
        assert!(
            !g.allows(&na(IP6, IP6, Some(OTHER_MAC))),
            "another MAC as the target link-layer address"
        );
        assert!(!g.allows(&na(UN, IP6, Some(MAC))), "from ::");
        // Router solicitations: its own link-layer address.
        assert!(g.allows(&rs(ll, Some(MAC))));
        assert!(!g.allows(&rs(ll, Some(OTHER_MAC))));
        // A malformed option (length 0), which a receiver discards anyway.
        let mut f = ns(IP6, GW6, Some(MAC));
        let opt = 14 + 40 + 24;
        f[opt + 1] = 0;
        assert!(!g.allows(&f), "a malformed option");
        let mut short = ns(IP6, GW6, None);
        short.truncate(short.len() - 4);
        short[18..20].copy_from_slice(&20u16.to_be_bytes());
        assert!(!g.allows(&short), "a solicitation cut short");
    }

    #[test]
    fn sandboxes_are_not_routers() {
        let g = dual();
        let ll = link_local(MAC);
        let ra = NdpRepr::RouterAdvert {
            cur_hop_limit: 64,
            flags: 0,
            router_lifetime: 1800,
            reachable_time: 0,
            retrans_timer: 0,
            source_lladdr: Some(MAC),
            mtu: None,
        };
        let to = [0x33, 0x33, 0, 0, 0, 1];
        assert!(
            !g.allows(&ndp(MAC, to, (ll, ALL_NODES), &ra)),
            "a Router Advertisement"
        );
        // A Redirect (RFC 4861 4.5): target and destination, no options.
        let mut m = vec![REDIRECT, 0, 0, 0, 0, 0, 0, 0];
        m.extend(ll.octets());
        m.extend(OTHER6.octets());
        assert!(
            !g.allows(&ipv6(MAC, GW, (ll, OTHER6), 58, &m)),
            "a Redirect"
        );
        // Other ICMPv6 from its own address passes (errors, here a Time Exceeded).
        m[0] = icmpv6::TIME_EXCEEDED;
        assert!(g.allows(&ipv6(MAC, GW, (ll, OTHER6), 58, &m)));
    }

    #[test]
    fn malformed_ipv6_is_refused() {
        let g = dual();
        let f = udp_from(IP6);
        assert!(!g.allows(&f[..14 + 39]), "a truncated header");
        assert!(
            !g.allows(&f[..f.len() - 1]),
            "a payload length past the frame"
        );
        let mut v4 = f.clone();
        v4[14] = 0x45;
        assert!(!g.allows(&v4), "version 4 in an IPv6 frame");
        let mut short = echo(MAC, GW, (IP6, GW6), false);
        short.truncate(14 + 40 + 7);
        short[18..20].copy_from_slice(&7u16.to_be_bytes());
        assert!(!g.allows(&short), "ICMPv6 shorter than its header");
    }

    /// `payload` behind the extension headers `headers` (each a Next Header of its own
    /// and the bytes of the header it names, in order), the last one naming `upper`.
    fn chain(src: Ipv6Addr, headers: &[(u8, Vec<u8>)], upper: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        for (i, (_, h)) in headers.iter().enumerate() {
            let mut h = h.clone();
            h[0] = headers.get(i + 1).map_or(upper, |n| n.0);
            p.extend(h);
        }
        p.extend(payload);
        ipv6(MAC, GW, (src, GW6), headers[0].0, &p)
    }

    #[test]
    fn extension_headers_hide_nothing() {
        let g = dual();
        let hbh = (HOP_BY_HOP, hop_by_hop(0).to_vec());
        let dst = (DEST_OPTS, vec![0, 0, 1, 4, 0, 0, 0, 0]);
        let auth = (
            AUTH,
            vec![
                0, 4, 0, 0, 0, 0, 1, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        );
        let udp = [0x14, 0x51, 0x14, 0x51, 0, 8, 0, 0];
        assert!(g.allows(&chain(IP6, &[hbh.clone(), dst.clone()], UDP, &udp)));
        assert!(!g.allows(&chain(OTHER6, std::slice::from_ref(&hbh), UDP, &udp)));
        let spoofed = ndp_message(
            &NdpRepr::NeighborAdvert {
                flags: NaFlags::default(),
                target: OTHER6,
                target_lladdr: Some(MAC),
            },
            (IP6, GW6),
        );
        assert!(
            !g.allows(&chain(
                IP6,
                &[hbh.clone(), dst.clone(), auth.clone()],
                58,
                &spoofed
            )),
            "an advertisement for another node behind three headers"
        );
        let own = ndp_message(
            &NdpRepr::NeighborAdvert {
                flags: NaFlags::default(),
                target: IP6,
                target_lladdr: Some(MAC),
            },
            (IP6, GW6),
        );
        assert!(g.allows(&chain(IP6, std::slice::from_ref(&dst), 58, &own)));
        let mut redirect = vec![REDIRECT, 0, 0, 0, 0, 0, 0, 0];
        redirect.extend([0; 32]);
        assert!(!g.allows(&chain(IP6, std::slice::from_ref(&auth), 58, &redirect)));
        // Too long a chain, and one that runs past the packet.
        let long = vec![dst.clone(); MAX_EXTENSION_HEADERS + 1];
        assert!(!g.allows(&chain(IP6, &long, UDP, &udp)));
        let walked = vec![dst.clone(); MAX_EXTENSION_HEADERS];
        assert!(g.allows(&chain(IP6, &walked, UDP, &udp)));
        let mut past = chain(IP6, std::slice::from_ref(&dst), UDP, &[]);
        past[14 + 40 + 1] = 1; // 16 bytes long, in a packet of 8
        assert!(!g.allows(&past));
    }

    #[test]
    fn fragments_carry_no_neighbour_discovery() {
        let g = dual();
        // A first fragment (offset 0, more fragments), and a later one (offset 1448).
        let first = (FRAGMENT, vec![0, 0, 0, 1, 0, 0, 0, 9]);
        let later = (FRAGMENT, vec![0, 0, 0x05, 0xa8, 0, 0, 0, 9]);
        let atomic = (FRAGMENT, vec![0, 0, 0, 0, 0, 0, 0, 9]);
        let fine = ndp_message(
            &NdpRepr::NeighborSolicit {
                target: GW6,
                source_lladdr: Some(MAC),
            },
            (IP6, GW6),
        );
        assert!(
            g.allows(&ipv6(MAC, GW, (IP6, GW6), 58, &fine)),
            "unfragmented"
        );
        assert!(
            !g.allows(&chain(IP6, std::slice::from_ref(&first), 58, &fine)),
            "RFC 6980"
        );
        assert!(
            !g.allows(&chain(IP6, &[atomic], 58, &fine)),
            "an atomic fragment"
        );
        let e = echo(MAC, GW, (IP6, GW6), false);
        let ping = &e[14 + 40..];
        assert!(
            g.allows(&chain(IP6, &[first], 58, ping)),
            "a big ping's first fragment"
        );
        assert!(g.allows(&chain(IP6, std::slice::from_ref(&later), 58, &[0x5a; 16])));
        assert!(
            !g.allows(&chain(OTHER6, &[later], 58, &[0x5a; 16])),
            "a later fragment still needs its source"
        );
    }
}
