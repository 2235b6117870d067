//! The host port: the host's own stack as a port of the router's worker
//! ([`crate::host_link`]).

use super::*;
use crate::host_link::{HostLink, HostPortConfig, HostPortStats};
use crate::HOST_NET;

impl Engine {
    /// Attach the host port (the switch's end of the host's link, as a socket port): it
    /// goes to the router's worker, with or without an uplink, and every other worker
    /// hands that worker the frames its networks route.
    pub fn set_host_port(&mut self, cfg: HostPortConfig, port: Box<dyn Port>) -> Result<PortId> {
        if self.ports.values().any(|p| p.info.network == HOST_NET) {
            return Err(EngineError::HostPortAttached);
        }
        let id = self.free_id();
        let worker = DNS_WORKER;
        let counters = Arc::new(PortCounters::default());
        let link = HostLink::new(id, cfg, counters.clone());
        self.hand_port(worker, id, HOST_NET, port, false, counters)?;
        self.send(worker, RouterControl::EnableHostPort(Box::new(link)))?;
        for w in (0..self.workers.len()).filter(|w| *w != worker) {
            self.send(w, RouterControl::RouteVia(Some(worker)))?;
        }
        self.barrier()?;
        Ok(id)
    }

    /// The host port's counters; None without one.
    pub fn host_port(&self) -> Result<Option<HostPortStats>> {
        let Some(w) = self
            .ports
            .values()
            .find(|p| p.info.network == HOST_NET)
            .map(|p| p.info.worker)
        else {
            return Ok(None);
        };
        let (tx, rx) = bounded(1);
        self.send(w, RouterControl::HostPortDump(tx))?;
        Self::reply(&rx, "the host port's worker")
    }
}
