//! The router's IPv6 side: container traffic leaves by the uplink's IPv6 address,
//! masqueraded by the NAT (Docker's default) or, on a network in routed mode
//! (`gateway_mode_ipv6=routed`), with its own source; replies and traffic to routed
//! networks come back by destination. The uplink's neighbours are resolved by
//! neighbour discovery; the hop limit and the ICMPv6 errors are RFC 4443's.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::time::Instant;

use nat::{Side, Verdict as NatVerdict};
use wire::icmpv6::{self, NdpRepr, NEIGHBOR_ADVERT, NEIGHBOR_SOLICIT};
use wire::ipv6::{is_link_local, Ipv6Frame, Ipv6Packet, NEXT_HEADER_ICMPV6};

use super::{eth, Router, Uplink6};
use crate::arp::Lookup;
use crate::deliver::Delivery;
use crate::gateway6;
use crate::ipv6::{icmp6_error, in_subnet6, neighbor_solicit, Icmp6Error, ETH_HLEN};
use crate::network::Network;
use crate::pipeline::{Emit, Ingress};
use crate::{NetId, PortId};

/// Not forwarded by a router: link-scoped and multicast destinations, and what has no
/// address.
fn routable(dst: Ipv6Addr) -> bool {
    !(dst.is_multicast() || is_link_local(&dst) || dst.is_unspecified() || dst.is_loopback())
}

impl Router {
    /// An IPv6 frame a container sent to its gateway's MAC that is not for the gateway.
    pub(super) fn route6_from_network(
        &mut self,
        nets: &mut HashMap<NetId, Network>,
        from: Ingress,
        frame: &[u8],
        out: &mut impl Emit,
        now: Instant,
    ) {
        let Some(net) = nets.get(&from.net) else {
            return;
        };
        let (Some(gw), Some(v6)) = (net.cfg.gateway, net.cfg.ipv6.as_ref()) else {
            self.counters.not_ipv4 += 1;
            return;
        };
        let Some(gw6) = v6.gateway else {
            return;
        };
        let Some(f) = Ipv6Frame::new(frame) else {
            self.counters.not_ipv4 += 1;
            return;
        };
        let (src, dst) = (f.src(), f.dst());
        let (subnet, prefix) = v6.subnet;
        // A network's own sources only (the reverse-path check), to routable places.
        if !in_subnet6(src, subnet, prefix) || !routable(dst) {
            self.counters.ipv6_not_routable += 1;
            return;
        }
        let error = |r: &mut Router, kind, out: &mut _| {
            r.icmp6_error(kind, frame, (gw.mac, gw6), from.port, out)
        };
        if net.cfg.internal {
            self.counters.internal += 1;
            return error(self, Icmp6Error::NoRoute, out);
        }
        let other_network = nets.values().any(|n| {
            n.cfg
                .ipv6
                .as_ref()
                .is_some_and(|o| in_subnet6(dst, o.subnet.0, o.subnet.1))
        });
        if other_network {
            self.counters.isolated += 1;
            return;
        }
        if f.hop_limit() <= 1 {
            self.counters.ttl_exceeded += 1;
            return error(self, Icmp6Error::HopLimit, out);
        }
        let Some(up) = self.cfg.ip6 else {
            self.counters.no_uplink += 1;
            return error(self, Icmp6Error::NoRoute, out);
        };
        let routed = v6.routed;
        let len = f.frame().len();
        self.pkt[..len].copy_from_slice(f.frame());
        if routed {
            return self.forward6(up, len, out, now);
        }
        match self.nat.outbound(&mut self.pkt[ETH_HLEN..len], now) {
            NatVerdict::Translated { to: Side::Outside } => self.forward6(up, len, out, now),
            // Hairpin: a published port on the uplink's IPv6 address, from inside.
            NatVerdict::Translated { to: Side::Inside } => {
                self.deliver6_inside(nets, len, out, now)
            }
            NatVerdict::NotOurs if dst == up.ip => {
                if let Some(n) = gateway6::reply(gw.mac, up.ip, frame, &mut *self.scratch) {
                    self.counters.echo_answered += 1;
                    out.emit(from.port, &self.scratch[..n], &self.port_counters);
                }
            }
            NatVerdict::NotOurs | NatVerdict::Drop(_) => self.counters.nat_drops += 1,
        }
    }

    /// `self.pkt[..len]` (translated where the NAT had a say) leaves by the uplink.
    fn forward6(&mut self, up: Uplink6, len: usize, out: &mut impl Emit, now: Instant) {
        // The caller checked the hop limit: it is at least 2.
        if let Ok(mut p) = Ipv6Packet::new_checked(&mut self.pkt[ETH_HLEN..len]) {
            let _ = p.decrement_hop_limit();
        }
        self.counters.routed_out += 1;
        self.send6_out(up, len, out, now);
    }

    /// Send `self.pkt[..len]` to its next hop on the uplink (on-link destinations
    /// directly, the rest via `--uplink-gw6`), soliciting it first if need be.
    pub(super) fn send6_out(&mut self, up: Uplink6, len: usize, out: &mut impl Emit, now: Instant) {
        eth(&mut self.pkt[..]).set_src(self.cfg.mac);
        let dst = Ipv6Frame::new(&self.pkt[..len]).map_or(Ipv6Addr::UNSPECIFIED, |f| f.dst());
        let hop = if in_subnet6(dst, up.ip, up.prefix) {
            dst
        } else {
            up.gateway
        };
        match self.ndp.resolve(hop, &self.pkt[..len], now) {
            Lookup::Known(mac) => {
                eth(&mut self.pkt[..]).set_dst(mac);
                out.emit(self.port, &self.pkt[..len], &self.port_counters);
            }
            Lookup::Held { request: true } => {
                let n = neighbor_solicit(self.cfg.mac, up.ip, hop, &mut *self.scratch);
                out.emit(self.port, &self.scratch[..n], &self.port_counters);
            }
            Lookup::Held { request: false } | Lookup::Dropped => {}
        }
    }

    /// An IPv6 frame from the uplink: neighbour discovery for the uplink's address,
    /// NAT replies and published ports, traffic to routed networks, echo.
    pub(super) fn receive6_from_uplink(
        &mut self,
        nets: &mut HashMap<NetId, Network>,
        frame: &[u8],
        out: &mut impl Emit,
        now: Instant,
    ) {
        let (Some(up), Some(f)) = (self.cfg.ip6, Ipv6Frame::new(frame)) else {
            self.counters.uplink_ignored += 1;
            return;
        };
        if f.next_header() == NEXT_HEADER_ICMPV6
            && matches!(
                f.payload().first(),
                Some(&(NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT))
            )
        {
            return self.ndp_in(up, &f, out, now);
        }
        if f.dst_mac() != self.cfg.mac {
            self.counters.uplink_ignored += 1;
            return;
        }
        let dst = f.dst();
        let len = f.frame().len();
        self.pkt[..len].copy_from_slice(f.frame());
        crate::port::csum::complete_if_partial(&mut self.pkt[..len]);
        // A routed network's addresses are reached as they are; the NAT has only the
        // uplink's address.
        if routed_network(nets, dst) {
            return self.deliver6_inside(nets, len, out, now);
        }
        match self.nat.inbound(&mut self.pkt[ETH_HLEN..len], now) {
            NatVerdict::Translated { to: Side::Inside } => {
                self.deliver6_inside(nets, len, out, now)
            }
            NatVerdict::NotOurs if dst == up.ip && self.dns_reply6(f.frame(), out) => {}
            NatVerdict::NotOurs if dst == up.ip => {
                match gateway6::reply(self.cfg.mac, up.ip, frame, &mut *self.scratch) {
                    Some(n) => {
                        self.counters.echo_answered += 1;
                        out.emit(self.port, &self.scratch[..n], &self.port_counters);
                    }
                    None => self.counters.uplink_ignored += 1,
                }
            }
            NatVerdict::NotOurs => self.counters.uplink_ignored += 1,
            NatVerdict::Translated { to: Side::Outside } | NatVerdict::Drop(_) => {
                self.counters.nat_drops += 1
            }
        }
    }

    /// Neighbour discovery on the uplink: solicitations for the uplink's address are
    /// answered (and their sender learned, RFC 4861 7.2.3), advertisements update a
    /// neighbour the router tracks and release what waited for it.
    fn ndp_in(&mut self, up: Uplink6, f: &Ipv6Frame, out: &mut impl Emit, now: Instant) {
        let (src, dst) = (f.src(), f.dst());
        let Ok(p) = icmpv6::Packet::new_checked(f.payload()) else {
            return;
        };
        if !icmpv6::ndp_hop_limit_ok(f.hop_limit()) {
            self.counters.uplink_ignored += 1;
            return;
        }
        let released = match NdpRepr::parse(&src, &dst, &p) {
            Ok(NdpRepr::NeighborSolicit {
                target,
                source_lladdr,
            }) if target == up.ip => {
                if let Some(n) = gateway6::reply(self.cfg.mac, up.ip, f.frame(), &mut *self.scratch)
                {
                    self.counters.ndp_answered += 1;
                    out.emit(self.port, &self.scratch[..n], &self.port_counters);
                }
                match (src.is_unspecified(), source_lladdr) {
                    (false, Some(mac)) => (self.ndp.learn(src, mac, now), mac),
                    _ => return,
                }
            }
            Ok(NdpRepr::NeighborAdvert {
                target,
                target_lladdr,
                ..
            }) => {
                let mac = target_lladdr.unwrap_or_else(|| f.src_mac());
                (self.ndp.refresh(target, mac, now), mac)
            }
            _ => return,
        };
        let (held, mac) = released;
        for mut frame in held {
            eth(&mut frame).set_dst(mac);
            out.emit(self.port, &frame, &self.port_counters);
        }
    }

    /// `self.pkt[..len]` goes to the container owning its destination address.
    fn deliver6_inside(
        &mut self,
        nets: &mut HashMap<NetId, Network>,
        len: usize,
        out: &mut impl Emit,
        now: Instant,
    ) {
        use crate::deliver::to_endpoint6;
        match to_endpoint6(nets, &mut self.pkt[..], len, out, &self.port_counters, now) {
            Delivery::Delivered => self.counters.routed_in += 1,
            Delivery::UnknownHost => self.counters.unknown_host += 1,
            Delivery::TtlExceeded => self.counters.ttl_exceeded += 1,
        }
    }

    pub(super) fn icmp6_error(
        &mut self,
        kind: Icmp6Error,
        frame: &[u8],
        (mac, ip): (crate::fdb::Mac, Ipv6Addr),
        to: PortId,
        out: &mut impl Emit,
    ) {
        if !self.error_allowed() {
            return;
        }
        if let Some(n) = icmp6_error(kind, frame, mac, ip, &mut *self.scratch) {
            self.counters.icmp_errors_sent += 1;
            out.emit(to, &self.scratch[..n], &self.port_counters);
        }
    }

    /// Once a second: solicit again the neighbours still unresolved.
    pub(super) fn ndp_tick(&mut self, out: &mut impl Emit, now: Instant) {
        let Some(up) = self.cfg.ip6 else {
            return;
        };
        for ip in self.ndp.expire(now) {
            let n = neighbor_solicit(self.cfg.mac, up.ip, ip, &mut *self.scratch);
            out.emit(self.port, &self.scratch[..n], &self.port_counters);
        }
    }
}

/// Whether `dst` is in a network whose IPv6 is routed (no NAT): traffic from outside
/// reaches its endpoints.
fn routed_network(nets: &HashMap<NetId, Network>, dst: Ipv6Addr) -> bool {
    nets.values().any(|n| {
        n.cfg.ipv6.as_ref().is_some_and(|v6| {
            v6.routed && !n.cfg.internal && in_subnet6(dst, v6.subnet.0, v6.subnet.1)
        })
    })
}
