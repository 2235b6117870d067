//! Frames other workers handed over: for a port of this worker, or for a stage that
//! lives here (the router, the vtep, the resolver), and MACs they learned.

use super::*;
use crate::stats::Stage;

impl Worker {
    pub(super) fn drain_handoffs(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while n < QUEUE_BUDGET {
            let msg = match self.data.try_recv() {
                Ok(m) => m,
                Err(_) => break,
            };
            n += 1;
            let c = &self.setup.counters;
            match msg {
                Handoff::Frame { port, frame } => {
                    if let Some(counters) = self.tx.port_counters(port) {
                        self.tx.emit(port, &frame, &counters);
                    }
                }
                Handoff::Route { from, frame } => {
                    if let Some(r) = self.router.as_mut() {
                        c.stage(Stage::Router, 1);
                        r.route_from_network(
                            &mut Cx::new(&mut self.nets, &mut self.tx, now),
                            from,
                            &frame,
                        );
                    }
                }
                Handoff::Tunnel { from, frame } => {
                    if let Some(r) = self.router.as_mut() {
                        c.stage(Stage::Vtep, 1);
                        r.tunnel_out(
                            &mut Cx::new(&mut self.nets, &mut self.tx, now),
                            from,
                            &frame,
                        );
                    }
                }
                Handoff::Dns { from, frame } => {
                    if let Some(d) = self.dns.as_mut() {
                        c.stage(Stage::Dns, 1);
                        d.query_frame(
                            &mut Cx::new(&mut self.nets, &mut self.tx, now),
                            from,
                            &frame,
                        );
                    }
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
