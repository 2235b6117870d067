//! The router's VTEP: overlay networks' VNIs, encapsulation toward remote VTEPs,
//! decapsulated frames into their network, and the tunnelled MACs the kernel carries
//! itself.

use super::*;
use crate::ipv6::Icmp6Error;
use crate::remote::{RemoteEndpoint, RemoteUpdate};
use wire::ipv6::Ipv6Frame;

impl Router {
    /// A network is (Some) or is no longer (None) an overlay: its tunnel table and
    /// peers (the cluster's members). An update keeps what was learned, except behind a
    /// VTEP that is no longer a peer: those MACs leave the tunnel table (floods stop
    /// going there at once) and the kernel (it no longer sends to that host). True when
    /// the network got a new
    /// tunnel table (it had none, or another VNI): the caller gives it the remote
    /// endpoints ([`Router::add_remote`]).
    pub fn set_overlay(&mut self, net: NetId, cfg: Option<&OverlayConfig>) -> bool {
        let vni = cfg.and_then(|c| Vni::new(c.vni).ok().map(|v| (v, c)));
        let fresh = vni.is_some_and(|(v, _)| self.net_vnis.get(&net) != Some(&v));
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
            let before = self.overlay.table(v).map_or(0, |t| t.len());
            let table = self.overlay.add_network(v, &c.peers);
            let forgot = table.len() < before;
            self.vni_nets.insert(v, net);
            self.net_vnis.insert(net, v);
            if let Some(f) = self.fast_vxlan.as_mut() {
                f.set_network(v.get(), Some(net), net);
                if forgot {
                    f.retain(net, |mac, vtep| {
                        table.peers().contains(&vtep) || table.is_static(&mac)
                    });
                }
            }
        }
        fresh
    }

    /// Remote endpoints of overlay network `net` came or went (`crate::remote`): static
    /// entries in its tunnel table, so known unicast to them goes straight to their VTEP
    /// (and the kernel may carry it). A removal takes a MAC out only if it is static and
    /// still behind that VTEP; the kernel's entry for a removed MAC, or for one that
    /// moved to another VTEP, goes at once (the next frame through the router installs
    /// the new one).
    pub fn update_remote(&mut self, net: NetId, update: &RemoteUpdate, now: Instant) {
        let Some(table) = self
            .net_vnis
            .get(&net)
            .and_then(|v| self.overlay.table_mut(*v))
        else {
            return;
        };
        for ep in &update.remove {
            if table.remove_static(&ep.mac, ep.vtep) {
                if let Some(f) = self.fast_vxlan.as_mut() {
                    f.remove(net, ep.mac);
                }
            }
        }
        self.add_remote(net, update.upsert.iter(), now);
    }

    /// Static tunnel-table entries for `endpoints` of overlay network `net`.
    pub fn add_remote<'a>(
        &mut self,
        net: NetId,
        endpoints: impl Iterator<Item = &'a RemoteEndpoint>,
        now: Instant,
    ) {
        let Some(table) = self
            .net_vnis
            .get(&net)
            .and_then(|v| self.overlay.table_mut(*v))
        else {
            return;
        };
        let mut fast = self.fast_vxlan.as_mut();
        for ep in endpoints {
            table.add_static(ep.mac, ep.vtep, now);
            if let Some(f) = fast.as_mut().filter(|f| !f.has(net, ep.mac, ep.vtep)) {
                f.remove(net, ep.mac);
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
    pub fn tunnel_out(&mut self, cx: &mut Cx<impl Emit>, from: Ingress, frame: &[u8]) {
        let (nets, out, now) = (&*cx.nets, &mut *cx.out, cx.now);
        let (net_id, in_port) = (from.net, from.port);
        let (Some(net), Some(&vni)) = (nets.get(&net_id), self.net_vnis.get(&net_id)) else {
            self.counters.tunnel_dropped += 1;
            return;
        };
        // Ethernet padding stays home: an IP frame goes as long as its packet.
        let frame = match Ipv4Frame::new(frame) {
            Some(f) => f.frame(),
            None => Ipv6Frame::new(frame).map_or(frame, |f| f.frame()),
        };
        let max = self.overlay.vtep().config().max_inner_frame();
        if frame.len() > max {
            self.counters.tunnel_too_big += 1;
            self.tunnel_too_big(net, frame, max - ETH_HLEN, in_port, out);
            return;
        }
        let local = self.overlay.vtep().config().ip;
        let Some(table) = self.overlay.table_mut(vni) else {
            self.counters.tunnel_dropped += 1;
            return;
        };
        self.flood.clear();
        let dst = ethernet::Frame::new_checked(frame).ok().map(|e| e.dst());
        let known = dst
            .filter(|d| !ethernet::is_group(d))
            .and_then(|d| table.lookup(&d, now));
        match known {
            Some(vtep) => self.flood.push(vtep),
            None => self
                .flood
                .extend_from_slice(table.flood_list(Origin::Local, local)),
        }
        if let (Some(vtep), Some(dst), true) = (known, dst, self.fast_vxlan.is_some()) {
            self.fast_tunnel(net_id, vni, dst, vtep, now);
        }
        for i in 0..self.flood.len() {
            let peer = self.flood[i];
            match self
                .overlay
                .send(vni, peer, [0; 6], frame, &mut self.pkt[..])
            {
                Ok(n) => {
                    self.send_out(n, out, now);
                }
                Err(_) => self.counters.tunnel_dropped += 1,
            }
        }
    }

    /// `frame`, from `port` of `net`, is too big for the underlay, whose MTU leaves `mtu`
    /// bytes for an inner packet. The VTEP never fragments, so the gateway tells the
    /// sender as a router would: IPv4 with DF gets ICMP fragmentation needed (RFC 1191),
    /// IPv6 (which no router fragments) ICMPv6 Packet Too Big (RFC 4443 3.2) from the
    /// gateway's IPv6 address; other frames are only dropped.
    fn tunnel_too_big(
        &mut self,
        net: &Network,
        frame: &[u8],
        mtu: usize,
        port: PortId,
        out: &mut impl Emit,
    ) {
        let Some(gw) = net.cfg.gateway else {
            return;
        };
        if let Some(f) = Ipv4Frame::new(frame) {
            if f.dont_fragment() {
                let mtu = mtu.min(usize::from(u16::MAX)) as u16;
                self.icmp_error(IcmpError::FragNeeded { mtu }, frame, gw, port, out);
            }
            return;
        }
        let Some(gw6) = net.cfg.ipv6.as_ref().and_then(|v6| v6.gateway) else {
            return;
        };
        let kind = Icmp6Error::PacketTooBig {
            mtu: u32::try_from(mtu).unwrap_or(u32::MAX),
        };
        self.icmp6_error(kind, frame, (gw.mac, gw6), port, out);
    }

    /// A decapsulated frame enters its overlay network as if from the tunnel port:
    /// its source is learned behind the tunnel, and it goes to its local port or is
    /// flooded to local ports only (never back into tunnels).
    pub(super) fn tunnel_in(
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
        let Some((dst, src)) = ethernet::Frame::new_checked(inner)
            .ok()
            .map(|e| (e.dst(), e.src()))
            .filter(|(_, src)| !ethernet::is_group(src))
        else {
            self.counters.tunnel_dropped += 1;
            return;
        };
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
                // Only where the table has the source: a static entry behind another
                // VTEP (the control plane's word) is not overridden in the kernel.
                if self.fast_vxlan.is_some()
                    && self.overlay.table(vni).and_then(|t| t.lookup(&src, now))
                        == Some(d.outer_src)
                {
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
    pub(super) fn outer_headers(&self, vni: Vni, vtep: Ipv4Addr, now: Instant) -> Option<[u8; 64]> {
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
    pub(super) fn fast_tunnel(
        &mut self,
        net: NetId,
        vni: Vni,
        mac: Mac,
        vtep: Ipv4Addr,
        now: Instant,
    ) {
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
    pub(super) fn fast_tunnel_tick(&mut self, nets: &mut HashMap<NetId, Network>, now: Instant) {
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
}

#[cfg(test)]
#[path = "overlay_tests.rs"]
mod tests;
