//! The uplink: attaching it (a socket, or the tc data path), where the router lives,
//! published ports and the router's state.

use super::*;

impl Engine {
    /// Attach the uplink: its worker (the first) owns the router and the NAT; every
    /// other worker hands it the frames its networks route.
    pub fn set_uplink(&mut self, cfg: UplinkConfig, mut port: Box<dyn Port>) -> Result<PortId> {
        if self.ports.values().any(|p| p.info.network == UPLINK_NET) {
            return Err(EngineError::UplinkAttached);
        }
        let id = self.free_id();
        // The resolver's worker too: its upstream queries and replies never cross workers.
        let worker = DNS_WORKER;
        let counters = Arc::new(PortCounters::default());
        let mut router = Router::new(id, cfg, counters.clone()).map_err(EngineError::UplinkNat)?;
        // Established routed TCP from tc endpoints is translated in the kernel too.
        if let (Some(maps), true) = (self.fast().cloned(), self.has_tc_path()) {
            match crate::bpf::ifindex(port.name()) {
                Ok(ifindex) => {
                    // Replies too, where the uplink runs XDP (AF_XDP).
                    let inbound = match port.enable_nat_in(&maps) {
                        Ok(()) => true,
                        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => false,
                        Err(e) => {
                            tracing::warn!(error = %e, "replies of kernel-translated sessions go through the router");
                            false
                        }
                    };
                    router.fast_nat = Some(FastNat::new(maps, ifindex, inbound));
                }
                Err(e) => tracing::warn!(error = %e, "no NAT fast path"),
            }
        }
        self.route_via(id, worker)?;
        self.hand_port(worker, id, UPLINK_NET, port, false, counters)?;
        self.send(worker, RouterControl::EnableRouter(Box::new(router)))?;
        self.barrier()?;
        Ok(id)
    }

    /// Attach the uplink in the tc data path: no socket, a tcx program at its ingress
    /// ([`fastpath::uplink`]). Its frames reach the router's worker through that worker's
    /// endpoint trunk, and the router's go out of it the same way; with the fast path
    /// on, established routed TCP and overlay unicast stay in the kernel both ways.
    pub fn set_uplink_tc(&mut self, cfg: UplinkConfig, iface: &str) -> Result<PortId> {
        if self.ports.values().any(|p| p.info.network == UPLINK_NET) {
            return Err(EngineError::UplinkAttached);
        }
        let maps = self.maps.clone().ok_or(EngineError::Unavailable(
            "the tc data path needs BPF (maps and tcx programs)",
        ))?;
        let worker = DNS_WORKER;
        let (trunk, trunk_ifindex) = self.endpoint_trunks[worker]
            .as_ref()
            .map(|t| (t.port, t.ifindex))
            .ok_or(EngineError::Unavailable(
                "the router's worker has no endpoint trunk",
            ))?;
        let id = self.free_id_from(1);
        if id >= fastpath::MAX_PORTS {
            return Err(EngineError::Exhausted(
                "no port id left for the uplink".into(),
            ));
        }
        let ifindex = crate::bpf::ifindex(iface)
            .map_err(|e| EngineError::io(format!("look up {iface}"), e))?;
        let tc = fastpath::TcUplink {
            ifindex,
            port: id,
            trunk_ifindex,
            mac: cfg.mac,
            vtep: cfg.vtep_ip.unwrap_or(cfg.ip),
            // The host keeps its traffic on the address; the switch owns its NAT range
            // and up (the resolver's upstream ports sit above the range).
            shared: cfg.shared.then_some(fastpath::SharedUplink {
                ip: cfg.ip,
                owned_from: cfg.nat.port_range.first,
            }),
        };
        let counters = Arc::new(PortCounters::default());
        let mut router = Router::new(id, cfg, counters.clone()).map_err(EngineError::UplinkNat)?;
        if let Some(fp) = self.fast().cloned() {
            router.fast_nat = Some(FastNat::new(fp.clone(), ifindex, true).opening_published());
            router.fast_vxlan = Some(FastVxlan::new(fp, ifindex, id));
        }
        self.route_via(id, worker)?;
        self.send(
            worker,
            PortControl::AddSkbPort(NewSkbPort {
                id,
                net: UPLINK_NET,
                counters: counters.clone(),
                trunk,
            }),
        )?;
        self.send(worker, RouterControl::EnableRouter(Box::new(router)))?;
        self.barrier()?;
        let link = maps.attach_uplink(&tc).map_err(|e| {
            EngineError::io(format!("attach the uplink {iface} to the tc data path"), e)
        })?;
        let info = PortInfo {
            id,
            name: iface.to_string(),
            network: UPLINK_NET,
            backend: Backend::Tc,
            worker,
            fast_path: true,
        };
        self.add_tc_entry(info, counters, (ifindex, link));
        self.tc_uplink = Some(tc);
        Ok(id)
    }

    /// Every other worker hands `worker` the frames its networks route, for uplink `id`.
    fn route_via(&self, id: PortId, worker: usize) -> Result<()> {
        for w in (0..self.workers.len()).filter(|w| *w != worker) {
            self.send(
                w,
                PortControl::AddRemotePort {
                    id,
                    net: UPLINK_NET,
                    worker,
                },
            )?;
            self.send(w, RouterControl::RouteVia(Some(worker)))?;
        }
        Ok(())
    }

    pub(super) fn router_worker(&self) -> Option<usize> {
        self.ports
            .values()
            .find(|p| p.info.network == UPLINK_NET)
            .map(|p| p.info.worker)
    }

    /// Publish (or, with `add` false, unpublish) a port on the uplink address. On a
    /// shared tc uplink a port published on its address is also the program's to take
    /// from the host ([`fastpath::FastPath::own_port`]); if that fails, the mapping is
    /// taken back.
    pub fn port_mapping(&self, add: bool, mapping: nat::PortMapping) -> EngineResult<()> {
        let w = self.router_worker().ok_or(EngineError::Unavailable(
            "publishing ports needs an uplink (vswitchd --uplink)",
        ))?;
        self.router_mapping(w, add, mapping)?;
        let Some((maps, proto)) = self.shared_owner(&mapping) else {
            return Ok(());
        };
        if let Err(e) = maps.own_port(proto, mapping.host_port, add) {
            if add {
                let _ = self.router_mapping(w, false, mapping);
            }
            return Err(EngineError::io(
                format!(
                    "steer port {}/{:?} on the shared uplink",
                    mapping.host_port, mapping.proto
                ),
                e,
            ));
        }
        Ok(())
    }

    /// The maps and the IP protocol number when `m` is published on the address of a
    /// shared tc uplink (bound to it, or to every address).
    fn shared_owner(&self, m: &nat::PortMapping) -> Option<(&Arc<fastpath::FastPath>, u8)> {
        let shared = self.tc_uplink?.shared?;
        // The shared address is IPv4: IPv6 mappings are never steered there.
        if !m.target_ip.is_ipv4() || m.host_ip.is_some_and(|ip| ip != shared.ip) {
            return None;
        }
        let proto = match m.proto {
            nat::Proto::Tcp => 6,
            nat::Proto::Udp => 17,
            nat::Proto::Icmp => return None,
        };
        Some((self.maps.as_ref()?, proto))
    }

    fn router_mapping(&self, w: usize, add: bool, mapping: nat::PortMapping) -> EngineResult<()> {
        let (tx, rx) = bounded(1);
        self.send(
            w,
            RouterControl::PortMapping {
                add,
                mapping,
                reply: tx,
            },
        )?;
        Self::reply(&rx, "the router's worker")?
    }

    /// The router's counters and NAT sessions; None without an uplink.
    pub fn router(&self) -> Result<Option<(RouterStats, Vec<nat::SessionRow>)>> {
        let Some(w) = self.router_worker() else {
            return Ok(None);
        };
        let (tx, rx) = bounded(1);
        self.send(w, RouterControl::RouterDump(tx))?;
        Self::reply(&rx, "the router's worker")
    }
}
