//! Frames other workers handed over: for a port of this worker, or for a stage that
//! lives here (the router, the vtep, the resolver), and MACs they learned.

use super::*;
use std::iter::once;

use super::graph::{dns_stage, router_stage, vtep_stage, Routers};

impl Worker {
    pub(super) fn drain_handoffs(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while n < QUEUE_BUDGET {
            let msg = match self.data.try_recv() {
                Ok(m) => m,
                Err(_) => break,
            };
            n += 1;
            match msg {
                Handoff::Frame { port, frame } => {
                    if let Some(counters) = self.tx.port_counters(port) {
                        self.tx.emit(port, &frame, &counters);
                    }
                }
                Handoff::Route { from, frame } => {
                    let mut cx = Cx::new(&mut self.nets, &mut self.tx, now);
                    let at = Routers {
                        router: self.router.as_deref_mut(),
                        host: self.host.as_deref_mut(),
                    };
                    router_stage(at, &mut cx, &mut self.scratch, once((from, &*frame)));
                }
                Handoff::Tunnel { from, frame } => {
                    let mut cx = Cx::new(&mut self.nets, &mut self.tx, now);
                    vtep_stage(self.router.as_deref_mut(), &mut cx, once((from, &*frame)));
                }
                Handoff::Dns { from, frame } => {
                    let mut cx = Cx::new(&mut self.nets, &mut self.tx, now);
                    dns_stage(self.dns.as_deref_mut(), &mut cx, once((from, &*frame)));
                    self.dns_upstream(now);
                }
                Handoff::Learned { net, mac, port } => {
                    if let Some(n) = self.nets.get_mut(&net) {
                        n.fdb.install(mac, port, now);
                    }
                    // Moved to another worker's port: stop claiming it in the kernel.
                    self.forget_moved(net, mac, port);
                }
            }
        }
        n
    }
}
