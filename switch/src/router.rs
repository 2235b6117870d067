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

use crate::arp::{self, ArpCache, ArpCounters, Lookup};
use crate::fast_nat::FastNat;
use crate::fast_vxlan::FastVxlan;
use crate::fdb::Mac;
use crate::gateway::{self, Gateway};
use crate::ipv4::{self, IcmpError, ETH_HLEN};
use crate::network::Network;
use crate::pipeline::Emit;
use crate::port::MAX_FRAME;
use crate::stats::PortCounters;
use crate::{NetId, OverlayConfig, PortId, TUNNEL_PORT};
use vxlan::{Decap, Origin, Overlay, Vni, VtepConfig};

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
    /// DF gets ICMP fragmentation needed.
    pub tunnel_too_big: u64,
    /// TCP sessions to published ports the tc uplink opened in the kernel and the NAT
    /// took in from the SYN's observed copy.
    #[serde(default)]
    pub kernel_opened: u64,
    /// Such sessions the NAT did not take (unpublished meanwhile, table full, capture
    /// started): their kernel entries were removed.
    #[serde(default)]
    pub kernel_open_refused: u64,
}

/// What `stats` shows of the router.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct RouterStats {
    pub uplink_port: PortId,
    pub router: RouterCounters,
    pub nat: NatCounters,
    pub arp: ArpCounters,
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

pub(crate) struct Router {
    pub port: PortId,
    cfg: UplinkConfig,
    pub nat: Nat,
    arp: ArpCache,
    counters: RouterCounters,
    /// Charged for drops of what the router emits.
    port_counters: Arc<PortCounters>,
    pkt: Box<[u8; MAX_FRAME]>,
    /// The embedded resolver's source port for upstream queries, when it has one.
    pub dns_port: Option<u16>,
    /// Uplink frames for the resolver (UDP to `dns_port`, TCP to its upstream ports),
    /// drained by the worker after each uplink burst; bounded by `DNS_INBOX`.
    pub dns_inbox: Vec<Vec<u8>>,
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

/// Upstream DNS replies held per uplink burst at most (more are dropped and counted).
const DNS_INBOX: usize = 64;

fn in_subnet(ip: Ipv4Addr, net: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// The IPv4 header of an Ethernet frame, checked: (header length, total length).
fn ipv4_lengths(frame: &[u8]) -> Option<(usize, usize)> {
    if frame.len() < ETH_HLEN + 20 || frame[12..14] != [0x08, 0x00] || frame[14] >> 4 != 4 {
        return None;
    }
    let ihl = ((frame[14] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([frame[16], frame[17]]) as usize;
    (ihl >= 20 && total >= ihl && ETH_HLEN + total <= frame.len()).then_some((ihl, total))
}

fn src_ip(frame: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29])
}

fn dst_ip(frame: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33])
}

impl Router {
    pub fn new(
        port: PortId,
        cfg: UplinkConfig,
        port_counters: Arc<PortCounters>,
    ) -> Result<Router, nat::NatError> {
        let vtep = VtepConfig::new(cfg.mac, cfg.vtep_ip.unwrap_or(cfg.ip));
        Ok(Router {
            port,
            overlay: Overlay::new(vtep, vxlan::DEFAULT_MAX_ENTRIES, vxlan::DEFAULT_MAX_AGE),
            vni_nets: HashMap::new(),
            net_vnis: HashMap::new(),
            flood: Vec::with_capacity(16),
            fast_nat: None,
            fast_vxlan: None,
            nat: Nat::new(cfg.nat, cfg.ip)?,
            cfg,
            arp: ArpCache::default(),
            counters: RouterCounters::default(),
            port_counters,
            pkt: Box::new([0u8; MAX_FRAME]),
            dns_port: None,
            dns_inbox: Vec::new(),
        })
    }

    pub fn stats(&self) -> RouterStats {
        RouterStats {
            uplink_port: self.port,
            router: self.counters,
            nat: self.nat.counters(),
            arp: self.arp.counters,
            sessions: self.nat.session_count(),
            fast_path_sessions: self.fast_nat.as_ref().map_or(0, FastNat::len),
            fast_path_tunnel_macs: self.fast_vxlan.as_ref().map_or(0, FastVxlan::len),
            vtep: self.overlay.vtep().config().ip,
            overlay: self.overlay.counters().clone(),
        }
    }

    /// A network is (Some) or is no longer (None) an overlay: its tunnel table and
    /// peers. An update keeps what was learned.
    pub fn set_overlay(&mut self, net: NetId, cfg: Option<&OverlayConfig>) {
        let vni = cfg.and_then(|c| Vni::new(c.vni).ok().map(|v| (v, c)));
        if let Some(old) = self.net_vnis.get(&net).copied() {
            if vni.is_none_or(|(v, _)| v != old) {
                self.net_vnis.remove(&net);
                self.vni_nets.remove(&old);
                self.overlay.remove_network(old);
                if let Some(f) = self.fast_vxlan.as_mut() {
                    f.set_network(old.get(), None, net);
                }
            }
        }
        if let Some((v, c)) = vni {
            self.overlay.add_network(v, &c.peers);
            self.vni_nets.insert(v, net);
            self.net_vnis.insert(net, v);
            if let Some(f) = self.fast_vxlan.as_mut() {
                f.set_network(v.get(), Some(net), net);
            }
        }
    }

    /// Fill in the remote VTEP of entries learned behind the tunnel.
    pub fn fill_vteps(&self, net: &Network, entries: &mut [crate::fdb::FdbEntry], now: Instant) {
        let Some(table) = self
            .net_vnis
            .get(&net.cfg.id)
            .and_then(|v| self.overlay.table(*v))
        else {
            return;
        };
        for e in entries.iter_mut().filter(|e| e.port == TUNNEL_PORT) {
            e.vtep = table.lookup(&e.mac, now);
        }
    }

    /// A frame of an overlay network for the tunnel: encapsulated to the VTEP its
    /// destination lives behind, or replicated to every peer VTEP (head-end
    /// replication) when the destination is unknown, broadcast or multicast.
    #[allow(clippy::too_many_arguments)]
    pub fn tunnel_out(
        &mut self,
        nets: &HashMap<NetId, Network>,
        net_id: NetId,
        in_port: PortId,
        frame: &[u8],
        out: &mut impl Emit,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        let (Some(net), Some(&vni)) = (nets.get(&net_id), self.net_vnis.get(&net_id)) else {
            self.counters.tunnel_dropped += 1;
            return;
        };
        // Ethernet padding stays home: an IPv4 frame goes as long as its packet.
        let frame = match ipv4_lengths(frame) {
            Some((_, total)) => &frame[..ETH_HLEN + total],
            None => frame,
        };
        let max = self.overlay.vtep().config().max_inner_frame();
        if frame.len() > max {
            self.counters.tunnel_too_big += 1;
            let df = ipv4_lengths(frame).is_some()
                && u16::from_be_bytes([frame[ETH_HLEN + 6], frame[ETH_HLEN + 7]]) & 0x4000 != 0;
            if let (true, Some(gw)) = (df, net.cfg.gateway) {
                let mtu = (max - ETH_HLEN).min(u16::MAX as usize) as u16;
                self.icmp_error(
                    IcmpError::FragNeeded { mtu },
                    frame,
                    gw,
                    in_port,
                    out,
                    scratch,
                );
            }
            return;
        }
        let local = self.overlay.vtep().config().ip;
        let Some(table) = self.overlay.table_mut(vni) else {
            self.counters.tunnel_dropped += 1;
            return;
        };
        self.flood.clear();
        let known = if frame.len() >= 6 && frame[0] & 1 == 0 {
            let mut dst: Mac = [0; 6];
            dst.copy_from_slice(&frame[0..6]);
            table.lookup(&dst, now)
        } else {
            None
        };
        match known {
            Some(vtep) => self.flood.push(vtep),
            None => self
                .flood
                .extend_from_slice(table.flood_list(Origin::Local, local)),
        }
        if let (Some(vtep), true) = (known, self.fast_vxlan.is_some()) {
            let mut dst: Mac = [0; 6];
            dst.copy_from_slice(&frame[0..6]);
            self.fast_tunnel(net_id, vni, dst, vtep, now);
        }
        for i in 0..self.flood.len() {
            let peer = self.flood[i];
            match self
                .overlay
                .send(vni, peer, [0; 6], frame, &mut self.pkt[..])
            {
                Ok(n) => {
                    self.send_out(n, out, scratch, now);
                }
                Err(_) => self.counters.tunnel_dropped += 1,
            }
        }
    }

    /// A decapsulated frame enters its overlay network as if from the tunnel port:
    /// its source is learned behind the tunnel, and it goes to its local port or is
    /// flooded to local ports only (never back into tunnels).
    fn tunnel_in(
        &mut self,
        nets: &mut HashMap<NetId, Network>,
        d: &vxlan::Decapsulated,
        out: &mut impl Emit,
        now: Instant,
    ) {
        let (vni, inner) = (d.vni, d.inner);
        let Some(net) = self.vni_nets.get(&vni).and_then(|id| nets.get_mut(id)) else {
            self.counters.tunnel_dropped += 1;
            return;
        };
        if inner.len() < ETH_HLEN || inner[6] & 1 != 0 {
            self.counters.tunnel_dropped += 1;
            return;
        }
        let mut dst: Mac = [0; 6];
        dst.copy_from_slice(&inner[0..6]);
        let mut src: Mac = [0; 6];
        src.copy_from_slice(&inner[6..12]);
        let id = net.cfg.id;
        match net.fdb.learn(src, TUNNEL_PORT, now) {
            crate::fdb::Learned::Changed | crate::fdb::Learned::Reannounce => {
                out.learned(id, src, TUNNEL_PORT)
            }
            _ => {}
        }
        if net.cfg.gateway.is_some_and(|g| g.mac == dst) {
            // Each host is its own gateway: another host's gateway traffic is not ours.
            self.counters.tunnel_dropped += 1;
            return;
        }
        let to = if dst[0] & 1 == 0 {
            net.fdb.lookup(&dst, now)
        } else {
            None
        };
        match to {
            Some(TUNNEL_PORT) => {
                self.counters.tunnel_dropped += 1;
                return;
            }
            Some(p) => {
                out.emit(p, inner, &self.port_counters);
                if self.fast_vxlan.is_some() {
                    self.fast_tunnel(id, vni, src, d.outer_src, now);
                }
            }
            None => {
                for &p in &net.members {
                    out.emit(p, inner, &self.port_counters);
                }
            }
        }
        self.counters.tunnel_in += 1;
    }

    /// The outer headers (Ethernet, IPv4, UDP, VXLAN: 50 bytes) of frames to `vtep` on
    /// `vni`, once the next hop toward it is resolved.
    fn outer_headers(&self, vni: Vni, vtep: Ipv4Addr, now: Instant) -> Option<[u8; 64]> {
        let cfg = self.overlay.vtep().config();
        if cfg.udp_checksum {
            return None; // the kernel's copy leaves the UDP checksum 0
        }
        let mac = self.arp.known(self.next_hop(vtep), now)?;
        let mut buf = [0u8; 64];
        vxlan::Vtep::new(*cfg)
            .encapsulate(vni, vtep, mac, &[0u8; ETH_HLEN], &mut buf)
            .ok()?;
        Some(buf)
    }

    /// `mac` of overlay network `net` lives behind `vtep`: the kernel carries its unicast
    /// from now on, if it does not already.
    fn fast_tunnel(&mut self, net: NetId, vni: Vni, mac: Mac, vtep: Ipv4Addr, now: Instant) {
        if self
            .fast_vxlan
            .as_ref()
            .is_none_or(|f| f.has(net, mac, vtep))
        {
            return;
        }
        let outer = self.outer_headers(vni, vtep, now);
        if let (Some(f), Some(outer)) = (self.fast_vxlan.as_mut(), outer) {
            f.install(net, mac, &outer);
        }
    }

    /// Once a second: what the kernel carried counts as heard in the tunnel table and
    /// the FDB; entries the router no longer holds (aged, moved, network gone) leave,
    /// and a changed next hop is written again.
    fn fast_tunnel_tick(&mut self, nets: &mut HashMap<NetId, Network>, now: Instant) {
        let Some(mut f) = self.fast_vxlan.take() else {
            return;
        };
        for (net, mac, vtep, seen) in f.take_seen() {
            let vni = self.net_vnis.get(&net).copied();
            let Some((vni, table)) = vni.and_then(|v| Some((v, self.overlay.table_mut(v)?))) else {
                f.remove(net, mac);
                continue;
            };
            let fdb = nets.get_mut(&net).map(|n| &mut n.fdb);
            if seen {
                table.learn(mac, vtep, now);
            }
            let held = match fdb {
                Some(fdb) => {
                    if seen {
                        fdb.learn(mac, TUNNEL_PORT, now);
                    }
                    fdb.lookup(&mac, now) == Some(TUNNEL_PORT)
                }
                None => false,
            };
            if !held || table.lookup(&mac, now) != Some(vtep) {
                f.remove(net, mac);
                continue;
            }
            match self.outer_headers(vni, vtep, now) {
                Some(outer) => f.install(net, mac, &outer),
                None => f.remove(net, mac),
            }
        }
        self.fast_vxlan = Some(f);
    }

    /// A frame a container sent to its gateway's MAC that is not for the gateway itself.
    #[allow(clippy::too_many_arguments)]
    pub fn route_from_network(
        &mut self,
        nets: &mut HashMap<NetId, Network>,
        net_id: NetId,
        in_port: PortId,
        frame: &[u8],
        out: &mut impl Emit,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        let Some(net) = nets.get(&net_id) else { return };
        let Some((gw, (subnet, prefix))) = net.cfg.gateway.zip(net.cfg.subnet) else {
            return;
        };
        let Some((_, total)) = ipv4_lengths(frame) else {
            self.counters.not_ipv4 += 1;
            return;
        };
        let dst = dst_ip(frame);
        if net.cfg.internal {
            self.counters.internal += 1;
            self.icmp_error(IcmpError::NetUnreachable, frame, gw, in_port, out, scratch);
            return;
        }
        if in_subnet(dst, subnet, prefix)
            || nets
                .values()
                .any(|n| n.cfg.subnet.is_some_and(|(s, p)| in_subnet(dst, s, p)))
        {
            self.counters.isolated += 1;
            return;
        }
        if frame[ETH_HLEN + 8] <= 1 {
            self.counters.ttl_exceeded += 1;
            self.icmp_error(IcmpError::TtlExceeded, frame, gw, in_port, out, scratch);
            return;
        }
        let len = ETH_HLEN + total;
        self.pkt[..len].copy_from_slice(&frame[..len]);
        match self.nat.outbound(&mut self.pkt[ETH_HLEN..len], now) {
            NatVerdict::Translated { to: Side::Outside } => {
                let _ = ipv4::decrement_ttl(&mut self.pkt[ETH_HLEN..len]);
                self.counters.routed_out += 1;
                let sent = self.send_out(len, out, scratch, now);
                if let Some(f) = self.fast_nat.as_mut() {
                    let as_sent: &[u8] = if sent { &self.pkt[..len] } else { &[] };
                    f.outbound(&mut self.nat, in_port, frame, as_sent, now);
                }
            }
            NatVerdict::Translated { to: Side::Inside } => {
                // Hairpin: a container reached a published port through the uplink address.
                self.deliver_inside(nets, len, out, now);
            }
            NatVerdict::NotOurs if dst == self.cfg.ip => {
                let me = Gateway {
                    ip: self.cfg.ip,
                    mac: gw.mac,
                };
                if let Some(n) = gateway::icmp_echo_reply(&me, frame, scratch) {
                    self.counters.echo_answered += 1;
                    out.emit(in_port, &scratch[..n], &self.port_counters);
                }
            }
            NatVerdict::NotOurs => self.counters.nat_drops += 1,
            NatVerdict::Drop(_) => self.counters.nat_drops += 1,
        }
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
        let Some((_, total)) = ipv4_lengths(frame) else {
            return;
        };
        let hop = self.next_hop(src_ip(frame));
        let mac = self.arp.known(hop, now);
        let Some(f) = self.fast_nat.as_mut() else {
            return;
        };
        let len = ETH_HLEN + total;
        self.pkt[..len].copy_from_slice(&frame[..len]);
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
    pub fn receive_from_uplink(
        &mut self,
        nets: &mut HashMap<NetId, Network>,
        frame: &[u8],
        out: &mut impl Emit,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        let me = Gateway {
            ip: self.cfg.ip,
            mac: self.cfg.mac,
        };
        if frame.len() >= 42 && frame[12..14] == [0x08, 0x06] {
            self.arp_in(&me, frame, out, scratch, now);
            return;
        }
        if frame.len() < ETH_HLEN || frame[0..6] != self.cfg.mac {
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
        match self.nat.inbound(&mut self.pkt[ETH_HLEN..len], now) {
            NatVerdict::Translated { to: Side::Inside } => {
                if let Some(f) = self.fast_nat.as_mut() {
                    f.inbound(&self.pkt[..len]);
                }
                self.deliver_inside(nets, len, out, now)
            }
            NatVerdict::Translated { to: Side::Outside } => self.counters.nat_drops += 1,
            NatVerdict::NotOurs => {
                if self.dns_reply(frame) {
                    return;
                }
                if let Some(n) = gateway::icmp_echo_reply(&me, frame, scratch) {
                    self.counters.echo_answered += 1;
                    out.emit(self.port, &scratch[..n], &self.port_counters);
                } else {
                    self.counters.uplink_ignored += 1;
                }
            }
            NatVerdict::Drop(_) => self.counters.nat_drops += 1,
        }
    }

    /// UDP to the resolver's port, or TCP to its upstream connections' ports, on the
    /// uplink address goes to its inbox.
    fn dns_reply(&mut self, frame: &[u8]) -> bool {
        let Some(port) = self.dns_port else {
            return false;
        };
        let Some((ihl, total)) = ipv4_lengths(frame) else {
            return false;
        };
        if total < ihl + 4 || dst_ip(frame) != self.cfg.ip {
            return false;
        }
        let l4 = ETH_HLEN + ihl;
        let dport = u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]);
        let ours = match frame[ETH_HLEN + 9] {
            17 => dport == port,
            6 => crate::dns_server::UPSTREAM_PORTS.contains(&dport),
            _ => false,
        };
        if !ours {
            return false;
        }
        if self.dns_inbox.len() >= DNS_INBOX {
            self.counters.dns_inbox_full += 1;
        } else {
            self.counters.dns_replies += 1;
            self.dns_inbox.push(frame[..ETH_HLEN + total].to_vec());
        }
        true
    }

    /// The uplink's address, prefix length and gateway.
    pub fn uplink_addr(&self) -> (Ipv4Addr, u8, Ipv4Addr) {
        (self.cfg.ip, self.cfg.prefix, self.cfg.gateway)
    }

    /// Send an IPv4 packet the switch made (from the uplink address) by the uplink.
    pub fn send_ip(
        &mut self,
        packet: &[u8],
        out: &mut impl Emit,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        let len = ETH_HLEN + packet.len();
        if packet.len() < 20 || len > MAX_FRAME {
            return;
        }
        self.pkt[12..14].copy_from_slice(&[0x08, 0x00]);
        self.pkt[ETH_HLEN..len].copy_from_slice(packet);
        self.send_out(len, out, scratch, now);
    }

    /// Send a datagram from the uplink address (`sport`) to `dst` by the uplink; false if
    /// it cannot be built.
    pub fn send_udp(
        &mut self,
        sport: u16,
        dst: std::net::SocketAddrV4,
        payload: &[u8],
        out: &mut impl Emit,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) -> bool {
        let addrs = ipv4::UdpAddrs {
            src_mac: self.cfg.mac,
            dst_mac: [0; 6],
            src: std::net::SocketAddrV4::new(self.cfg.ip, sport),
            dst,
        };
        let Some(len) = ipv4::udp_frame(&addrs, payload, &mut self.pkt[..]) else {
            return false;
        };
        self.send_out(len, out, scratch, now);
        true
    }

    fn arp_in(
        &mut self,
        me: &Gateway,
        frame: &[u8],
        out: &mut impl Emit,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        let a = &frame[ETH_HLEN..];
        if a[0..8] != [0, 1, 8, 0, 6, 4, 0, 1] && a[0..8] != [0, 1, 8, 0, 6, 4, 0, 2] {
            self.counters.uplink_ignored += 1;
            return;
        }
        let mut mac: Mac = [0; 6];
        mac.copy_from_slice(&a[8..14]);
        let sender = Ipv4Addr::new(a[14], a[15], a[16], a[17]);
        let target = Ipv4Addr::new(a[24], a[25], a[26], a[27]);
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
            held[0..6].copy_from_slice(&mac);
            out.emit(self.port, &held, &self.port_counters);
        }
        if a[7] == 1 && for_us {
            if let Some(n) = gateway::arp_reply(me, frame, scratch) {
                out.emit(self.port, &scratch[..n], &self.port_counters);
            }
        }
    }

    /// `self.pkt[..len]` leaves by the uplink toward its next hop.
    /// Send `self.pkt[..len]` to its next hop; true when it went (the next hop's MAC
    /// known), false when it waits for ARP or was dropped.
    fn send_out(
        &mut self,
        len: usize,
        out: &mut impl Emit,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) -> bool {
        self.pkt[6..12].copy_from_slice(&self.cfg.mac);
        let hop = self.next_hop(dst_ip(&self.pkt[..len]));
        match self.arp.resolve(hop, &self.pkt[..len], now) {
            Lookup::Known(mac) => {
                self.pkt[0..6].copy_from_slice(&mac);
                out.emit(self.port, &self.pkt[..len], &self.port_counters);
                true
            }
            Lookup::Held { request: true } => {
                let n = arp::request(self.cfg.mac, self.cfg.ip, hop, scratch);
                out.emit(self.port, &scratch[..n], &self.port_counters);
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
        let dst = dst_ip(&self.pkt[..len]);
        let found = nets
            .values_mut()
            .find(|n| n.cfg.subnet.is_some_and(|(s, p)| in_subnet(dst, s, p)));
        let Some(net) = found else {
            self.counters.unknown_host += 1;
            return;
        };
        let (Some(gw), Some(mac)) = (net.cfg.gateway, net.hosts.get(&dst).copied()) else {
            self.counters.unknown_host += 1;
            return;
        };
        if ipv4::decrement_ttl(&mut self.pkt[ETH_HLEN..len]).is_none() {
            self.counters.ttl_exceeded += 1;
            return;
        }
        self.pkt[0..6].copy_from_slice(&mac);
        self.pkt[6..12].copy_from_slice(&gw.mac);
        self.counters.routed_in += 1;
        match net.fdb.lookup(&mac, now) {
            Some(p) => out.emit(p, &self.pkt[..len], &self.port_counters),
            None => {
                for &p in &net.members {
                    out.emit(p, &self.pkt[..len], &self.port_counters);
                }
            }
        }
    }

    fn icmp_error(
        &mut self,
        kind: IcmpError,
        frame: &[u8],
        gw: Gateway,
        to: PortId,
        out: &mut impl Emit,
        scratch: &mut [u8; MAX_FRAME],
    ) {
        if let Some(n) = ipv4::icmp_error(kind, frame, gw.mac, gw.ip, scratch) {
            self.counters.icmp_errors_sent += 1;
            out.emit(to, &scratch[..n], &self.port_counters);
        }
    }

    /// Once a second: idle sessions out, stale neighbours out, ARP retries sent.
    pub fn tick(
        &mut self,
        nets: &mut HashMap<NetId, Network>,
        out: &mut impl Emit,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        self.nat.expire(now);
        if let Some(f) = self.fast_nat.as_mut() {
            f.tick(&mut self.nat, now);
        }
        self.fast_tunnel_tick(nets, now);
        self.overlay.expire(now);
        for ip in self.arp.expire(now) {
            let n = arp::request(self.cfg.mac, self.cfg.ip, ip, scratch);
            out.emit(self.port, &scratch[..n], &self.port_counters);
        }
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
    if ipv4_lengths(frame).is_none() {
        return false;
    }
    if let Some(n) = ipv4::icmp_error(IcmpError::NetUnreachable, frame, gw.mac, gw.ip, scratch) {
        out.emit(in_port, &scratch[..n], from);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fdb::Fdb;
    use crate::{NetConfig, OverlayConfig};
    use std::time::Duration;

    #[derive(Default)]
    struct Sink {
        out: Vec<(PortId, Vec<u8>)>,
        learned: Vec<Mac>,
    }
    impl Emit for Sink {
        fn emit(&mut self, to: PortId, frame: &[u8], _from: &PortCounters) {
            self.out.push((to, frame.to_vec()));
        }
        fn learned(&mut self, _net: NetId, mac: Mac, _port: PortId) {
            self.learned.push(mac);
        }
        fn route(&mut self, _: NetId, _: PortId, _: &[u8], _: &PortCounters) {}
        fn dns(&mut self, _: NetId, _: PortId, _: &[u8], _: &PortCounters) {}
        fn tunnel(&mut self, _: NetId, _: PortId, _: &[u8], _: &PortCounters) {}
    }

    const UPLINK: PortId = 9;
    const UP_MAC: Mac = [2, 0, 0, 0, 0, 1];
    const ME: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    const PEER2: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
    const PEER3: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 3);
    const GW_MAC: Mac = [2, 0x42, 172, 28, 0, 1];
    const LOCAL: Mac = [2, 0x42, 172, 28, 0, 2];
    const REMOTE: Mac = [2, 0x42, 172, 28, 0, 3];

    fn setup() -> (Router, HashMap<NetId, Network>) {
        let cfg = UplinkConfig {
            ip: ME,
            prefix: 16,
            gateway: Ipv4Addr::new(10, 200, 0, 254),
            mac: UP_MAC,
            nat: NatConfig::default(),
            vtep_ip: None,
        };
        let mut r = Router::new(UPLINK, cfg, Arc::new(PortCounters::default())).expect("router");
        let overlay = OverlayConfig {
            vni: 5000,
            peers: vec![PEER2, PEER3],
        };
        let net = Network {
            cfg: NetConfig {
                id: 1,
                gateway: Some(Gateway {
                    ip: Ipv4Addr::new(172, 28, 0, 1),
                    mac: GW_MAC,
                }),
                subnet: Some((Ipv4Addr::new(172, 28, 0, 0), 24)),
                overlay: Some(overlay.clone()),
                ..Default::default()
            },
            fdb: Fdb::new(64, Duration::from_secs(300)),
            members: vec![1, 2],
            hosts: Default::default(),
        };
        r.set_overlay(1, Some(&overlay));
        let mut nets = HashMap::new();
        nets.insert(1, net);
        // Both peers' MACs known, so encapsulated frames leave at once.
        let mut sink = Sink::default();
        let mut scratch = [0u8; MAX_FRAME];
        for (i, peer) in [PEER2, PEER3].into_iter().enumerate() {
            let mut f = UP_MAC.to_vec();
            let mac = [2, 0, 0, 0, 0, 2 + i as u8];
            f.extend(mac);
            f.extend([0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
            f.extend(mac);
            f.extend(peer.octets());
            f.extend(UP_MAC);
            f.extend(ME.octets());
            f.resize(60, 0);
            r.receive_from_uplink(&mut nets, &f, &mut sink, &mut scratch, Instant::now());
        }
        (r, nets)
    }

    /// An inner IPv4/UDP frame of `len` bytes, DF set.
    fn inner(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend(src);
        f.extend([0x08, 0x00]);
        let ip_len = (len - ETH_HLEN) as u16;
        f.extend([0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0]);
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f.extend([172, 28, 0, 2, 172, 28, 0, 3]);
        f.resize(len, 0);
        f
    }

    fn decap(frame: &[u8]) -> (Ipv4Addr, Vec<u8>) {
        let mut rx = vxlan::Overlay::new(
            VtepConfig::new([2, 0, 0, 0, 0, 2], dst_ip(frame)),
            16,
            Duration::from_secs(300),
        );
        rx.add_network(Vni::new(5000).expect("vni"), &[]);
        match rx.receive(frame, Instant::now()) {
            Decap::Frame(d) => (dst_ip(frame), d.inner.to_vec()),
            other => panic!("not VXLAN 5000: {other:?}"),
        }
    }

    #[test]
    fn floods_replicate_to_every_peer_and_learned_macs_go_to_theirs() {
        let (mut r, mut nets) = setup();
        let mut scratch = [0u8; MAX_FRAME];
        let now = Instant::now();
        let f = inner([0xff; 6], LOCAL, 100);
        let mut sink = Sink::default();
        r.tunnel_out(&nets, 1, 1, &f, &mut sink, &mut scratch, now);
        let dsts: Vec<Ipv4Addr> = sink
            .out
            .iter()
            .map(|(p, o)| {
                assert_eq!(*p, UPLINK);
                let (d, i) = decap(o);
                assert_eq!(i, f, "inner frame unchanged");
                d
            })
            .collect();
        assert_eq!(dsts, vec![PEER2, PEER3], "head-end replication");

        // REMOTE speaks from behind 10.200.0.2: learned, delivered to local ports only.
        let mut remote = vxlan::Vtep::new(VtepConfig::new([2, 0, 0, 0, 0, 2], PEER2));
        let mut out = [0u8; MAX_FRAME];
        let reply = inner(LOCAL, REMOTE, 100);
        let n = remote
            .encapsulate(Vni::new(5000).expect("vni"), ME, UP_MAC, &reply, &mut out)
            .expect("encap");
        let mut sink = Sink::default();
        r.receive_from_uplink(&mut nets, &out[..n], &mut sink, &mut scratch, now);
        let ports: Vec<PortId> = sink.out.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            ports,
            vec![1, 2],
            "LOCAL unknown yet: flooded to local ports, not tunnels"
        );
        assert_eq!(sink.out[0].1, reply);
        assert_eq!(sink.learned, vec![REMOTE]);
        let net = &nets[&1];
        assert_eq!(net.fdb.lookup(&REMOTE, now), Some(TUNNEL_PORT));
        let mut rows = net.fdb.entries(now);
        r.fill_vteps(net, &mut rows, now);
        assert_eq!(rows[0].vtep, Some(PEER2));

        let mut sink = Sink::default();
        r.tunnel_out(
            &nets,
            1,
            1,
            &inner(REMOTE, LOCAL, 100),
            &mut sink,
            &mut scratch,
            now,
        );
        assert_eq!(
            sink.out.len(),
            1,
            "a known remote MAC goes to its VTEP only"
        );
        assert_eq!(decap(&sink.out[0].1).0, PEER2);
    }

    #[test]
    fn oversize_df_frames_get_frag_needed_and_unknown_vnis_are_dropped() {
        let (mut r, mut nets) = setup();
        let mut scratch = [0u8; MAX_FRAME];
        let now = Instant::now();
        let mut sink = Sink::default();
        r.tunnel_out(
            &nets,
            1,
            2,
            &inner([0xff; 6], LOCAL, 14 + 1450),
            &mut sink,
            &mut scratch,
            now,
        );
        assert_eq!(sink.out.len(), 2, "1450 bytes of IP fit");
        let mut sink = Sink::default();
        r.tunnel_out(
            &nets,
            1,
            2,
            &inner(REMOTE, LOCAL, 14 + 1451),
            &mut sink,
            &mut scratch,
            now,
        );
        assert_eq!(sink.out.len(), 1);
        let (to, icmp) = &sink.out[0];
        assert_eq!(*to, 2, "back to the sender's port");
        assert_eq!(&icmp[0..6], &LOCAL);
        assert_eq!((icmp[34], icmp[35]), (3, 4), "frag needed");
        assert_eq!(u16::from_be_bytes([icmp[40], icmp[41]]), 1450);
        assert_eq!(r.stats().router.tunnel_too_big, 1);

        let mut remote = vxlan::Vtep::new(VtepConfig::new([2, 0, 0, 0, 0, 2], PEER2));
        let mut out = [0u8; MAX_FRAME];
        let n = remote
            .encapsulate(
                Vni::new(77).expect("vni"),
                ME,
                UP_MAC,
                &inner(LOCAL, REMOTE, 100),
                &mut out,
            )
            .expect("encap");
        let mut sink = Sink::default();
        r.receive_from_uplink(&mut nets, &out[..n], &mut sink, &mut scratch, now);
        assert!(sink.out.is_empty());
        assert_eq!(r.stats().overlay.dropped(vxlan::DropReason::UnknownVni), 1);
        // The network stops being an overlay: its VNI is unknown from then on.
        r.set_overlay(1, None);
        let n = remote
            .encapsulate(
                Vni::new(5000).expect("vni"),
                ME,
                UP_MAC,
                &inner(LOCAL, REMOTE, 100),
                &mut out,
            )
            .expect("encap");
        r.receive_from_uplink(&mut nets, &out[..n], &mut sink, &mut scratch, now);
        assert!(sink.out.is_empty());
        assert_eq!(r.stats().overlay.dropped(vxlan::DropReason::UnknownVni), 2);
    }

    #[test]
    fn subnets() {
        let n = Ipv4Addr::new(172, 18, 0, 0);
        assert!(in_subnet(Ipv4Addr::new(172, 18, 255, 1), n, 16));
        assert!(!in_subnet(Ipv4Addr::new(172, 19, 0, 1), n, 16));
        assert!(in_subnet(Ipv4Addr::new(1, 2, 3, 4), n, 0));
    }
}
