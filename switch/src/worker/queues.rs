//! The side queues drained after each burst: frames for the router and the resolver,
//! the resolver's upstream replies, frames handed over by other workers.

use super::*;

impl Worker {
    /// Run what the pipeline queued for the router (after the burst, when the router
    /// may borrow every network).
    pub(super) fn route_queued(&mut self, scratch: &mut [u8; MAX_FRAME], now: Instant) {
        if self.tx.routeq.is_empty() {
            return;
        }
        std::mem::swap(&mut self.tx.routeq, &mut self.route_spare);
        let meta = std::mem::take(&mut self.tx.routeq_meta);
        for (i, &(net, in_port, tunnel)) in meta.iter().enumerate() {
            let frame = self.route_spare.frame(i);
            match self.router.as_mut() {
                Some(r) if tunnel => r.tunnel_out(
                    &self.nets,
                    Ingress { net, port: in_port },
                    frame,
                    &mut self.tx,
                    scratch,
                    now,
                ),
                // No uplink: an overlay has no tunnel to send by.
                None if tunnel => {
                    if let Some(c) = self.tx.port_counters(in_port) {
                        c.dropped(DropReason::NoRoute, 1);
                    }
                }
                Some(r) => r.route_from_network(
                    &mut self.nets,
                    Ingress { net, port: in_port },
                    frame,
                    &mut self.tx,
                    scratch,
                    now,
                ),
                None => self.unreachable(net, in_port, i, scratch),
            }
        }
        self.route_spare.clear();
        self.tx.routeq_meta = meta;
        self.tx.routeq_meta.clear();
    }

    /// Hand what the pipeline queued for the resolver to it (after the burst).
    pub(super) fn dns_queued(&mut self, scratch: &mut [u8; MAX_FRAME], now: Instant) {
        if self.tx.dnsq.is_empty() {
            return;
        }
        std::mem::swap(&mut self.tx.dnsq, &mut self.dns_spare);
        let meta = std::mem::take(&mut self.tx.dnsq_meta);
        if let Some(d) = self.dns.as_mut() {
            for (i, &(net, in_port)) in meta.iter().enumerate() {
                d.query_frame(
                    &self.nets,
                    Ingress { net, port: in_port },
                    self.dns_spare.frame(i),
                    &mut self.tx,
                    scratch,
                    now,
                );
            }
        }
        self.dns_upstream(scratch, now);
        self.dns_spare.clear();
        self.tx.dnsq_meta = meta;
        self.tx.dnsq_meta.clear();
    }

    /// What the resolver asked to send out of the uplink, to the router (queries from its
    /// port, its TCP connections' packets); without an uplink the queries fail at once.
    pub(super) fn dns_upstream(&mut self, scratch: &mut [u8; MAX_FRAME], now: Instant) {
        let Some(d) = self.dns.as_mut() else {
            return;
        };
        if d.outbox.is_empty() {
            return;
        }
        let mut failed = 0;
        for u in d.outbox.drain(..) {
            match (self.router.as_mut(), u) {
                (Some(r), Upstream::Udp { to, bytes }) => {
                    failed +=
                        u64::from(!r.send_udp(d.port, to, &bytes, &mut self.tx, scratch, now));
                }
                (Some(r), Upstream::Ip(packet)) => r.send_ip(&packet, &mut self.tx, scratch, now),
                (None, Upstream::Udp { .. }) => failed += 1,
                (None, Upstream::Ip(_)) => {}
            }
        }
        d.upstream_failed(failed);
    }

    /// Upstream replies the router set aside during an uplink burst.
    pub(super) fn dns_replies(&mut self, scratch: &mut [u8; MAX_FRAME], now: Instant) {
        let Some(r) = self.router.as_mut() else {
            return;
        };
        if r.dns_inbox.is_empty() {
            return;
        }
        let inbox = std::mem::take(&mut r.dns_inbox);
        if let Some(d) = self.dns.as_mut() {
            for frame in &inbox {
                d.uplink_frame(&self.nets, frame, &mut self.tx, scratch, now);
            }
        }
        self.dns_upstream(scratch, now);
        if let Some(r) = self.router.as_mut() {
            // Keep the allocation for the next burst.
            let mut inbox = inbox;
            inbox.clear();
            r.dns_inbox = inbox;
        }
    }

    /// No uplink: drop, count, and tell the sender at once (ICMP net unreachable).
    pub(super) fn unreachable(
        &mut self,
        net: NetId,
        in_port: PortId,
        i: usize,
        scratch: &mut [u8; MAX_FRAME],
    ) {
        let Some(counters) = self.tx.port_counters(in_port) else {
            return;
        };
        counters.dropped(DropReason::NoRoute, 1);
        if let Some(n) = self.nets.get(&net) {
            router::no_uplink(
                n,
                in_port,
                self.route_spare.frame(i),
                &mut self.tx,
                scratch,
                &counters,
            );
        }
    }

    pub(super) fn drain_handoffs(&mut self, scratch: &mut [u8; MAX_FRAME], now: Instant) -> usize {
        let mut n = 0;
        while n < QUEUE_BUDGET {
            match self.data.try_recv() {
                Ok(Handoff::Frame { port, frame }) => {
                    if let Some(counters) = self.tx.port_counters(port) {
                        self.tx.emit(port, &frame, &counters);
                    }
                }
                Ok(Handoff::Route {
                    net,
                    in_port,
                    frame,
                    tunnel: true,
                }) => {
                    if let Some(r) = self.router.as_mut() {
                        r.tunnel_out(
                            &self.nets,
                            Ingress { net, port: in_port },
                            &frame,
                            &mut self.tx,
                            scratch,
                            now,
                        );
                    }
                }
                Ok(Handoff::Route {
                    net,
                    in_port,
                    frame,
                    tunnel: false,
                }) => {
                    if let Some(r) = self.router.as_mut() {
                        r.route_from_network(
                            &mut self.nets,
                            Ingress { net, port: in_port },
                            &frame,
                            &mut self.tx,
                            scratch,
                            now,
                        );
                    }
                }
                Ok(Handoff::Dns {
                    net,
                    in_port,
                    frame,
                }) => {
                    if let Some(d) = self.dns.as_mut() {
                        d.query_frame(
                            &self.nets,
                            Ingress { net, port: in_port },
                            &frame,
                            &mut self.tx,
                            scratch,
                            now,
                        );
                    }
                    self.dns_upstream(scratch, now);
                }
                Ok(Handoff::Learned { net, mac, port }) => {
                    if let Some(n) = self.nets.get_mut(&net) {
                        n.fdb.install(mac, port, now);
                    }
                    // Moved to another worker's port: stop claiming it in the kernel.
                    self.forget_moved(net, mac, port);
                }
                Err(_) => break,
            }
            n += 1;
        }
        n
    }
}
