//! The router between bridge networks and the uplink: it owns the uplink address
//! (answers ARP and ping for it), resolves next hops by ARP, sends container traffic
//! out through SNAT and brings replies and published-port traffic back through DNAT
//! (the `nat` crate), decrementing TTL and sending the ICMP errors a router sends.
//! One worker (the uplink's owner) runs it; other workers hand it their routed frames.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use nat::{Nat, NatConfig, NatCounters, Side, Verdict as NatVerdict};
use serde::Serialize;

use crate::arp::{self, ArpCache, ArpCounters, Lookup, NdpCache};
use crate::fast_nat::FastNat;
use crate::fast_vxlan::FastVxlan;
use crate::fdb::Mac;
use crate::gateway::{self, Gateway};
use crate::ipv4::{self, IcmpError, ETH_HLEN};
use crate::network::Network;
use crate::pipeline::{Cx, Emit, Ingress};
use crate::port::MAX_FRAME;
use crate::stats::PortCounters;
use crate::{NetId, OverlayConfig, PortId, TUNNEL_PORT};
use vxlan::{Decap, Origin, Overlay, Vni, VtepConfig};
use wire::ethernet::{self, ethertype, ETHERTYPE_ARP};
use wire::ip::Ipv4Frame;

/// The Ethernet header of a frame the router holds (it has checked it is one).
fn eth(frame: &mut [u8]) -> ethernet::Frame<&mut [u8]> {
    ethernet::Frame::new_checked(frame).expect("an Ethernet header")
}

mod overlay;
mod resolver;
mod v6;
#[cfg(test)]
mod v6_tests;

/// The external side, as `vswitchd --uplink ... --uplink-ip ... --uplink-gw` gives it.
#[derive(Clone, Debug)]
pub struct UplinkConfig {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The uplink interface's MAC: frames leave with it as source.
    pub mac: Mac,
    pub nat: NatConfig,
    /// The overlay tunnel endpoint's address (`--vtep-ip`); None: the uplink address.
    pub vtep_ip: Option<Ipv4Addr>,
    /// The host holds the uplink address too (a shared uplink): the kernel answers ARP
    /// for it, with the same MAC.
    pub shared: bool,
    /// The uplink's IPv6 side (`--uplink-ip6`, `--uplink-gw6`), if it has one.
    pub ip6: Option<Uplink6>,
}

/// The switch's IPv6 address on the uplink, its prefix and the next hop beyond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uplink6 {
    pub ip: std::net::Ipv6Addr,
    pub prefix: u8,
    pub gateway: std::net::Ipv6Addr,
}

#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize)]
pub struct RouterCounters {
    /// Container traffic sent out of the uplink.
    pub routed_out: u64,
    /// Traffic from the uplink delivered to a container.
    pub routed_in: u64,
    /// Routed frames with no uplink to leave by.
    pub no_uplink: u64,
    /// Frames toward another container network (networks are isolated).
    pub isolated: u64,
    /// Frames leaving an --internal network.
    pub internal: u64,
    pub ttl_exceeded: u64,
    pub icmp_errors_sent: u64,
    /// Not IPv4, or a malformed header.
    pub not_ipv4: u64,
    /// No endpoint has the destination address.
    pub unknown_host: u64,
    /// Dropped by the NAT (see its counters for why).
    pub nat_drops: u64,
    /// Uplink frames that were not for the switch.
    pub uplink_ignored: u64,
    /// Echo requests to the uplink address answered.
    pub echo_answered: u64,
    /// Upstream DNS replies (datagrams, TCP segments) handed to the embedded resolver.
    pub dns_replies: u64,
    /// Upstream DNS replies dropped: more than a burst's worth at once.
    pub dns_inbox_full: u64,
    /// Decapsulated frames delivered into an overlay network.
    pub tunnel_in: u64,
    /// Overlay frames not sent or not delivered: runt or multicast-source inner
    /// frames, frames for the tunnel from a tunnel, frames of an unknown overlay.
    pub tunnel_dropped: u64,
    /// Inner frames too big for the underlay MTU (the VTEP never fragments); IPv4 with
    /// DF gets ICMP fragmentation needed, IPv6 ICMPv6 Packet Too Big.
    pub tunnel_too_big: u64,
    /// TCP sessions to published ports the tc uplink opened in the kernel and the NAT
    /// took in from the SYN's observed copy.
    #[serde(default)]
    pub kernel_opened: u64,
    /// Such sessions the NAT did not take (unpublished meanwhile, table full, capture
    /// started): their kernel entries were removed.
    #[serde(default)]
    pub kernel_open_refused: u64,
    /// IPv6 not routed: to link-local or multicast destinations (a router forwards
    /// neither), or from a source outside the network's subnet.
    #[serde(default)]
    pub ipv6_not_routable: u64,
    /// Neighbour solicitations for the uplink's IPv6 address answered.
    #[serde(default)]
    pub ndp_answered: u64,
    /// ICMP and ICMPv6 errors not sent: more than `ICMP_ERRORS_PER_SEC` in a second.
    #[serde(default)]
    pub icmp_errors_limited: u64,
}

/// What `stats` shows of the router.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct RouterStats {
    pub uplink_port: PortId,
    pub router: RouterCounters,
    pub nat: NatCounters,
    pub arp: ArpCounters,
    /// The uplink's IPv6 neighbour cache.
    #[serde(default)]
    pub ndp: ArpCounters,
    pub sessions: usize,
    /// Of those, established TCP sessions the tc fast path translates in the kernel.
    #[serde(default)]
    pub fast_path_sessions: usize,
    /// Overlay MACs behind remote VTEPs whose unicast the kernel encapsulates and
    /// decapsulates itself (tc uplink).
    #[serde(default)]
    pub fast_path_tunnel_macs: usize,
    /// The VTEP address and its VXLAN counters (encap/decap, drops by reason).
    pub vtep: Ipv4Addr,
    pub overlay: vxlan::Counters,
}

/// What [`Router::route_from_network`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Routed {
    /// Routed, answered or dropped (and counted).
    Done,
    /// For the uplink address, not the NAT's: the host's (the address is shared).
    ForHost,
}

pub(crate) struct Router {
    pub port: PortId,
    cfg: UplinkConfig,
    pub nat: Nat,
    arp: ArpCache,
    /// The uplink's IPv6 neighbours.
    ndp: NdpCache,
    /// ICMP and ICMPv6 errors the router may still send this second.
    errors_left: u32,
    counters: RouterCounters,
    /// Charged for drops of what the router emits.
    port_counters: Arc<PortCounters>,
    pkt: Box<[u8; MAX_FRAME]>,
    /// What the router writes itself (ARP, ICMP errors and echo replies).
    scratch: Box<[u8; MAX_FRAME]>,
    /// The embedded resolver runs beside it: uplink UDP and TCP to its ports
    /// (`DNS_UPSTREAM_PORTS`) that the NAT does not claim go to it.
    pub dns: bool,
    /// The VTEP: encapsulation, decapsulation and a tunnel table per overlay network.
    overlay: Overlay,
    vni_nets: HashMap<Vni, NetId>,
    net_vnis: HashMap<NetId, Vni>,
    /// The VTEPs one frame goes to (reused: no allocation per frame).
    flood: Vec<Ipv4Addr>,
    /// Established TCP sessions handed to the tc fast path (`fast_nat`).
    pub fast_nat: Option<FastNat>,
    /// Overlay MACs handed to the tc fast path (`fast_vxlan`), with the tc uplink.
    pub fast_vxlan: Option<FastVxlan>,
}

/// ICMP and ICMPv6 errors the router sends per second at most (Linux's
/// net.ipv4.icmp_msgs_per_sec is 1000 as well).
pub const ICMP_ERRORS_PER_SEC: u32 = 1000;

pub(crate) fn in_subnet(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// The IPv4 header of an Ethernet frame, checked: (header length, total length).
fn ipv4_lengths(frame: &[u8]) -> Option<(usize, usize)> {
    Ipv4Frame::new(frame).map(|f| (f.header_len(), f.total_len()))
}

/// The destination of a frame the router built or checked as IPv4.
fn dst_ip(frame: &[u8]) -> Ipv4Addr {
    Ipv4Frame::new(frame).map_or(Ipv4Addr::UNSPECIFIED, |f| f.dst())
}

impl Router {
    pub fn new(
        port: PortId,
        cfg: UplinkConfig,
        port_counters: Arc<PortCounters>,
    ) -> Result<Router, nat::NatError> {
        let vtep = VtepConfig::new(cfg.mac, cfg.vtep_ip.unwrap_or(cfg.ip));
        let mut nat = Nat::new(cfg.nat, cfg.ip)?;
        nat.set_external_ip6(cfg.ip6.map(|u| u.ip));
        Ok(Router {
            port,
            overlay: Overlay::new(vtep, vxlan::DEFAULT_MAX_ENTRIES, vxlan::DEFAULT_MAX_AGE),
            vni_nets: HashMap::new(),
            net_vnis: HashMap::new(),
            flood: Vec::with_capacity(16),
            fast_nat: None,
            fast_vxlan: None,
            nat,
            cfg,
            arp: ArpCache::default(),
            ndp: NdpCache::default(),
            errors_left: ICMP_ERRORS_PER_SEC,
            counters: RouterCounters::default(),
            port_counters,
            pkt: Box::new([0u8; MAX_FRAME]),
            scratch: Box::new([0u8; MAX_FRAME]),
            dns: false,
        })
    }

    pub fn stats(&self) -> RouterStats {
        RouterStats {
            uplink_port: self.port,
            router: self.counters,
            nat: self.nat.counters(),
            arp: self.arp.counters,
            ndp: self.ndp.counters,
            sessions: self.nat.session_count(),
            fast_path_sessions: self.fast_nat.as_ref().map_or(0, FastNat::len),
            fast_path_tunnel_macs: self.fast_vxlan.as_ref().map_or(0, FastVxlan::len),
            vtep: self.overlay.vtep().config().ip,
            overlay: self.overlay.counters().clone(),
        }
    }

    /// A frame a container sent to its gateway's MAC that is not for the gateway itself.
    /// With `host_fallback` (the uplink address is also the host's), what the NAT does
    /// not claim on the uplink address is the host's: [`Routed::ForHost`].
    pub fn route_from_network(
        &mut self,
        cx: &mut Cx<impl Emit>,
        from: Ingress,
        frame: &[u8],
        host_fallback: bool,
    ) -> Routed {
        let (nets, out, now) = (&mut *cx.nets, &mut *cx.out, cx.now);
        let (net_id, in_port) = (from.net, from.port);
        if ethertype(frame) == Some(wire::ethernet::ETHERTYPE_IPV6) {
            self.route6_from_network(nets, from, frame, out, now);
            return Routed::Done;
        }
        let Some(net) = nets.get(&net_id) else {
            return Routed::Done;
        };
        let Some((gw, (subnet, prefix))) = net.cfg.gateway.zip(net.cfg.subnet) else {
            return Routed::Done;
        };
        let Some(ip) = Ipv4Frame::new(frame) else {
            self.counters.not_ipv4 += 1;
            return Routed::Done;
        };
        let (total, dst) = (ip.total_len(), ip.dst());
        if net.cfg.internal {
            self.counters.internal += 1;
            self.icmp_error(IcmpError::NetUnreachable, frame, gw, in_port, out);
            return Routed::Done;
        }
        if in_subnet(dst, subnet, prefix)
            || nets
                .values()
                .any(|n| n.cfg.subnet.is_some_and(|(s, p)| in_subnet(dst, s, p)))
        {
            self.counters.isolated += 1;
            return Routed::Done;
        }
        if ip.ttl() <= 1 {
            self.counters.ttl_exceeded += 1;
            self.icmp_error(IcmpError::TtlExceeded, frame, gw, in_port, out);
            return Routed::Done;
        }
        let len = ETH_HLEN + total;
        self.pkt[..len].copy_from_slice(&frame[..len]);
        match self.nat.outbound(&mut self.pkt[ETH_HLEN..len], now) {
            NatVerdict::Translated { to: Side::Outside } => {
                let _ = ipv4::decrement_ttl(&mut self.pkt[ETH_HLEN..len]);
                self.counters.routed_out += 1;
                let sent = self.send_out(len, out, now);
                if let Some(f) = self.fast_nat.as_mut() {
                    let as_sent: &[u8] = if sent { &self.pkt[..len] } else { &[] };
                    f.outbound(&mut self.nat, in_port, frame, as_sent, now);
                }
            }
            NatVerdict::Translated { to: Side::Inside } => {
                // Hairpin: a container reached a published port through the uplink address.
                self.deliver_inside(nets, len, out, now);
            }
            // The host's own address: what the NAT does not translate (a new connection
            // to a port not published, and everything after it) is the host's.
            NatVerdict::NotOurs | NatVerdict::Drop(_) if dst == self.cfg.ip && host_fallback => {
                return Routed::ForHost
            }
            NatVerdict::NotOurs if dst == self.cfg.ip => {
                let me = Gateway {
                    ip: self.cfg.ip,
                    mac: gw.mac,
                };
                if let Some(n) = gateway::icmp_echo_reply(&me, frame, &mut *self.scratch) {
                    self.counters.echo_answered += 1;
                    out.emit(in_port, &self.scratch[..n], &self.port_counters);
                }
            }
            NatVerdict::NotOurs => self.counters.nat_drops += 1,
            NatVerdict::Drop(_) => self.counters.nat_drops += 1,
        }
        Routed::Done
    }

    /// Where traffic to `dst` goes first: itself on the uplink's subnet, else the gateway.
    fn next_hop(&self, dst: Ipv4Addr) -> Ipv4Addr {
        if in_subnet(dst, self.cfg.ip, self.cfg.prefix) {
            dst
        } else {
            self.cfg.gateway
        }
    }

    /// A copy of a SYN that the tc uplink delivered to a published port itself, having
    /// opened the session in the kernel: the NAT runs it through `inbound` as if it had
    /// carried it (nothing is sent), and the session stays in the kernel if the NAT
    /// translated it the same way (`FastNat::adopt`).
    pub fn observe_from_uplink(&mut self, frame: &[u8], now: Instant) {
        let Some(ip) = Ipv4Frame::new(frame) else {
            return;
        };
        let total = ip.total_len();
        let hop = self.next_hop(ip.src());
        let mac = self.arp.known(hop, now);
        let Some(f) = self.fast_nat.as_mut() else {
            return;
        };
        let len = ETH_HLEN + total;
        self.pkt[..len].copy_from_slice(&frame[..len]);
        crate::port::csum::complete_if_partial(&mut self.pkt[..len]);
        let xlat = match self.nat.inbound(&mut self.pkt[ETH_HLEN..len], now) {
            NatVerdict::Translated { to: Side::Inside } => Some(&self.pkt[..len]),
            _ => None,
        };
        if f.adopt(frame, xlat, mac) {
            self.counters.kernel_opened += 1;
        } else {
            self.counters.kernel_open_refused += 1;
        }
    }

    /// A frame that arrived on the uplink.
    pub fn receive_from_uplink(&mut self, cx: &mut Cx<impl Emit>, frame: &[u8]) {
        let (nets, out, now) = (&mut *cx.nets, &mut *cx.out, cx.now);
        let me = Gateway {
            ip: self.cfg.ip,
            mac: self.cfg.mac,
        };
        if frame.len() >= wire::arp::ARP_FRAME_LEN && ethertype(frame) == Some(ETHERTYPE_ARP) {
            self.arp_in(&me, frame, out, now);
            return;
        }
        if ethertype(frame) == Some(wire::ethernet::ETHERTYPE_IPV6) {
            self.receive6_from_uplink(nets, frame, out, now);
            return;
        }
        if ethernet::Frame::new_checked(frame).map_or(true, |f| f.dst() != self.cfg.mac) {
            self.counters.uplink_ignored += 1;
            return;
        }
        // VXLAN to the VTEP comes before the NAT; drops are counted by the VTEP.
        match self.overlay.receive(frame, now) {
            Decap::Pass(_) => {}
            Decap::Drop(_) => return,
            Decap::Frame(d) => {
                self.tunnel_in(nets, &d, out, now);
                return;
            }
        }
        let Some((_, total)) = ipv4_lengths(frame) else {
            self.counters.not_ipv4 += 1;
            return;
        };
        let len = ETH_HLEN + total;
        self.pkt[..len].copy_from_slice(&frame[..len]);
        // A veth peer with checksum offload on leaves TCP/UDP checksums unfinished, and a
        // socket uplink cannot tell (the tc uplink's frames come finished): finish them.
        crate::port::csum::complete_if_partial(&mut self.pkt[..len]);
        match self.nat.inbound(&mut self.pkt[ETH_HLEN..len], now) {
            NatVerdict::Translated { to: Side::Inside } => {
                if let Some(f) = self.fast_nat.as_mut() {
                    f.inbound(&self.pkt[..len]);
                }
                self.deliver_inside(nets, len, out, now)
            }
            NatVerdict::Translated { to: Side::Outside } => self.counters.nat_drops += 1,
            NatVerdict::NotOurs => {
                if self.dns_reply(frame, out) {
                    return;
                }
                if let Some(n) = gateway::icmp_echo_reply(&me, frame, &mut *self.scratch) {
                    self.counters.echo_answered += 1;
                    out.emit(self.port, &self.scratch[..n], &self.port_counters);
                } else {
                    self.counters.uplink_ignored += 1;
                }
            }
            NatVerdict::Drop(_) => self.counters.nat_drops += 1,
        }
    }

    fn arp_in(&mut self, me: &Gateway, frame: &[u8], out: &mut impl Emit, now: Instant) {
        let Ok(a) = wire::arp::Repr::parse_frame(frame) else {
            self.counters.uplink_ignored += 1;
            return;
        };
        let (mac, sender, target) = (a.sender_mac, a.sender_ip, a.target_ip);
        let vtep = self.overlay.vtep().config().ip;
        let for_us = target == self.cfg.ip || target == vtep;
        let me = &Gateway {
            ip: target,
            mac: me.mac,
        };
        // RFC 826: update a known sender; learn it if the packet was for us.
        let released = if for_us {
            self.arp.learn(sender, mac, now)
        } else {
            self.arp.refresh(sender, mac, now)
        };
        for mut held in released {
            eth(&mut held).set_dst(mac);
            out.emit(self.port, &held, &self.port_counters);
        }
        // On a shared uplink the kernel answers for the uplink address (not for a VTEP
        // address of the switch's own).
        let answer = for_us && !(self.cfg.shared && target == self.cfg.ip);
        if a.op == wire::arp::Operation::Request && answer {
            if let Some(n) = gateway::arp_reply(me, frame, &mut *self.scratch) {
                out.emit(self.port, &self.scratch[..n], &self.port_counters);
            }
        }
    }

    /// `self.pkt[..len]` leaves by the uplink toward its next hop.
    /// Send `self.pkt[..len]` to its next hop; true when it went (the next hop's MAC
    /// known), false when it waits for ARP or was dropped.
    fn send_out(&mut self, len: usize, out: &mut impl Emit, now: Instant) -> bool {
        eth(&mut self.pkt[..]).set_src(self.cfg.mac);
        let hop = self.next_hop(dst_ip(&self.pkt[..len]));
        match self.arp.resolve(hop, &self.pkt[..len], now) {
            Lookup::Known(mac) => {
                eth(&mut self.pkt[..]).set_dst(mac);
                out.emit(self.port, &self.pkt[..len], &self.port_counters);
                true
            }
            Lookup::Held { request: true } => {
                let n = arp::request(self.cfg.mac, self.cfg.ip, hop, &mut *self.scratch);
                out.emit(self.port, &self.scratch[..n], &self.port_counters);
                false
            }
            Lookup::Held { request: false } | Lookup::Dropped => false,
        }
    }

    /// `self.pkt[..len]` (already translated) goes to the container owning its
    /// destination address.
    fn deliver_inside(
        &mut self,
        nets: &mut HashMap<NetId, Network>,
        len: usize,
        out: &mut impl Emit,
        now: Instant,
    ) {
        use crate::deliver::{to_endpoint, Delivery};
        match to_endpoint(nets, &mut self.pkt[..], len, out, &self.port_counters, now) {
            Delivery::Delivered => self.counters.routed_in += 1,
            Delivery::UnknownHost => self.counters.unknown_host += 1,
            Delivery::TtlExceeded => self.counters.ttl_exceeded += 1,
        }
    }

    fn icmp_error(
        &mut self,
        kind: IcmpError,
        frame: &[u8],
        gw: Gateway,
        to: PortId,
        out: &mut impl Emit,
    ) {
        if !self.error_allowed() {
            return;
        }
        if let Some(n) = ipv4::icmp_error(kind, frame, gw.mac, gw.ip, &mut *self.scratch) {
            self.counters.icmp_errors_sent += 1;
            out.emit(to, &self.scratch[..n], &self.port_counters);
        }
    }

    /// Whether the router may send another ICMP or ICMPv6 error this second (RFC 4443
    /// 2.4 (f), RFC 1812 4.3.2.8: a router limits the errors it sends, so a flood of
    /// expiring or unroutable packets cannot make it a flood of errors); counted when
    /// not.
    pub(super) fn error_allowed(&mut self) -> bool {
        if self.errors_left == 0 {
            self.counters.icmp_errors_limited += 1;
            return false;
        }
        self.errors_left -= 1;
        true
    }

    /// Once a second: idle sessions out, stale neighbours out, ARP retries sent.
    pub fn tick(&mut self, cx: &mut Cx<impl Emit>) {
        let (nets, out, now) = (&mut *cx.nets, &mut *cx.out, cx.now);
        self.errors_left = ICMP_ERRORS_PER_SEC;
        self.nat.expire(now);
        if let Some(f) = self.fast_nat.as_mut() {
            f.tick(&mut self.nat, now);
        }
        self.fast_tunnel_tick(nets, now);
        self.overlay.expire(now);
        for ip in self.arp.expire(now) {
            let n = arp::request(self.cfg.mac, self.cfg.ip, ip, &mut *self.scratch);
            out.emit(self.port, &self.scratch[..n], &self.port_counters);
        }
        self.ndp_tick(out, now);
    }
}

/// A routed frame when there is no uplink: dropped, and the sender told at once.
pub(crate) fn no_uplink(
    net: &Network,
    in_port: PortId,
    frame: &[u8],
    out: &mut impl Emit,
    scratch: &mut [u8; MAX_FRAME],
    from: &PortCounters,
) -> bool {
    let Some(gw) = net.cfg.gateway else {
        return false;
    };
    let gw6 = net.cfg.ipv6.as_ref().and_then(|v6| v6.gateway);
    if let (Some(gw6), Some(f)) = (gw6, wire::ipv6::Ipv6Frame::new(frame)) {
        if !in_own_subnet6(net, f.src()) {
            return false;
        }
        let kind = crate::ipv6::Icmp6Error::NoRoute;
        if let Some(n) = crate::ipv6::icmp6_error(kind, frame, gw.mac, gw6, scratch) {
            out.emit(in_port, &scratch[..n], from);
            return true;
        }
        return false;
    }
    if ipv4_lengths(frame).is_none() {
        return false;
    }
    if let Some(n) = ipv4::icmp_error(IcmpError::NetUnreachable, frame, gw.mac, gw.ip, scratch) {
        out.emit(in_port, &scratch[..n], from);
        return true;
    }
    false
}

/// Whether `ip` is in the network's IPv6 subnet.
fn in_own_subnet6(net: &Network, ip: std::net::Ipv6Addr) -> bool {
    net.cfg
        .ipv6
        .as_ref()
        .is_some_and(|v6| crate::ipv6::in_subnet6(ip, v6.subnet.0, v6.subnet.1))
}

#[cfg(test)]
mod tests;
