//! What the control plane reads and sets besides ports: DNS names and counters,
//! captures, the port list, FDBs, counters.

use super::*;

impl Engine {
    /// Install (Some) or forget (None) the names network `net`'s resolver answers.
    pub fn set_dns_names(&self, net: NetId, table: Option<Arc<dns::NameTable>>) -> Result<()> {
        self.send(DNS_WORKER, DnsControl::DnsNames { net, table })
    }

    /// The embedded resolver's counters.
    pub fn dns_stats(&self) -> Result<Option<DnsStats>> {
        let (tx, rx) = bounded(1);
        self.send(DNS_WORKER, DnsControl::DnsDump(tx))?;
        Self::reply(&rx, "the resolver's worker")
    }

    /// Copy every frame the port receives or sends into `tap` (None stops). Frames are
    /// copied only while a capture is armed; a full tap loses frames, never slows the port.
    pub fn capture(&self, port: PortId, tap: Option<CaptureTap>) -> Result<()> {
        let worker = self
            .ports
            .get(&port)
            .map(|p| p.info.worker)
            .ok_or(EngineError::NoPort(port))?;
        let on = tap.is_some();
        self.send(worker, PortControl::Capture { port, tap })?;
        // A captured tc uplink punts everything to its worker.
        if let (Some(u), Some(maps)) = (self.tc_uplink.filter(|u| u.port == port), &self.maps) {
            maps.set_uplink_cfg(
                &u,
                if on {
                    fastpath::uplink::CFG_PUNT_ALL
                } else {
                    0
                },
            )
            .map_err(|e| EngineError::io("set the uplink program's capture flag", e))?;
        }
        // The NAT fast path steps aside too: the capture sees every routed frame.
        if let Some(r) = self.router_worker() {
            self.send(r, RouterControl::NatExclude { port, on })?;
        }
        self.barrier()
    }

    pub fn ports(&self) -> Vec<PortInfo> {
        self.ports.values().map(|p| p.info.clone()).collect()
    }

    /// The network's forwarding table, merged over the workers' replicas (freshest wins).
    pub fn fdb(&self, net: NetId) -> Result<Vec<FdbEntry>> {
        let (tx, rx) = bounded(self.workers.len());
        self.broadcast(|| L2Control::FdbDump {
            net,
            reply: tx.clone(),
        })?;
        let mut merged: BTreeMap<[u8; 6], FdbEntry> = BTreeMap::new();
        for _ in 0..self.workers.len() {
            let entries = Self::reply(&rx, "a data-plane worker")?;
            for mut e in entries {
                match merged.get_mut(&e.mac) {
                    // Only the router's worker knows the VTEP of a remote MAC.
                    Some(old) if old.age_secs <= e.age_secs => old.vtep = old.vtep.or(e.vtep),
                    old => {
                        e.vtep = e.vtep.or(old.and_then(|o| o.vtep));
                        merged.insert(e.mac, e);
                    }
                }
            }
        }
        let mut entries: Vec<FdbEntry> = merged.into_values().collect();
        if let Some(fp) = self.fast() {
            for e in entries.iter_mut() {
                e.fast_path = fp.installed_on(net, e.mac, e.port);
            }
        }
        Ok(entries)
    }

    pub fn stats(&self) -> StatsSnapshot {
        let ports = self
            .ports
            .values()
            .map(|p| {
                let mut counters = p.counters.snapshot();
                if let (true, Some(fp)) = (p.info.fast_path, self.fast()) {
                    if let Ok(k) = fp.counters(p.info.id) {
                        counters.rx_packets += k.rx_packets;
                        counters.rx_bytes += k.rx_bytes;
                        counters.tx_packets += k.tx_packets;
                        counters.tx_bytes += k.tx_bytes;
                        counters.fast_path_rx_packets = k.rx_packets;
                        counters.fast_path_tx_packets = k.tx_packets;
                    }
                }
                PortStats {
                    info: p.info.clone(),
                    counters,
                }
            })
            .collect();
        let workers = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let n = self.ports.values().filter(|p| p.info.worker == i).count();
                w.counters.snapshot(i, w.core, n)
            })
            .collect();
        StatsSnapshot { ports, workers }
    }
}
