//! The worker's stage graph: a burst meets the stages in a fixed order, each stage
//! sorts its frames to the next ones, and the stages that borrow every network (router,
//! vtep, resolver) take their input from a queue once the burst has been through L2:
//!
//! ```text
//! port input ──> l2 ──┬──────────────────────────────────────> port output
//!   (mod.rs,    (pipeline)├─> gateway (its answer) ─────────────> port output
//!    trunks.rs)           ├─> router queue ─> router ──> port output (networks, uplink)
//!     │                   ├─> vtep queue ──> vtep ───> port output (the uplink)
//!     │                   └─> dns queue ───> dns ────> port output, router (upstream)
//!     └─ uplink ─> router ─┬─> port output (networks; the tunnel's arrivals to l2's ports)
//!                          └─> resolver queue ─> dns (upstream replies)
//! ```
//!
//! Every edge is static: the L2 stage's `Verdict`, the `Emit` methods the stages call,
//! and the queues below, which hold frames in `Burst`s (no allocation per frame).
//! Frames for a stage on another worker (the router and the resolver live on the
//! uplink's worker) cross by `Handoff` instead of a queue (`handoff.rs`).

use super::*;
use crate::stats::Stage;

/// Frames waiting for one stage, with where each came in.
pub(crate) struct StageQueue {
    frames: Burst,
    from: Vec<Ingress>,
}

impl StageQueue {
    pub(super) fn new() -> Self {
        StageQueue {
            frames: Burst::new(),
            from: Vec::with_capacity(crate::port::BURST),
        }
    }

    /// Queue a frame; false (nothing queued) when the queue is full.
    pub(super) fn push(&mut self, from: Ingress, frame: &[u8]) -> bool {
        let pushed = self.frames.push(frame);
        if pushed {
            self.from.push(from);
        }
        pushed
    }

    pub(super) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.frames.len()
    }

    fn get(&self, i: usize) -> (Ingress, &[u8]) {
        (self.from[i], self.frames.frame(i))
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.from.clear();
    }
}

/// The queues into the stages that run after a burst. They live on the transmit side
/// (the stages' `Emit` fills them); each is drained by swapping it with its spare in
/// [`Spares`], so the stage may emit while it reads.
pub(crate) struct Queues {
    pub(super) router: StageQueue,
    pub(super) vtep: StageQueue,
    pub(super) dns: StageQueue,
    /// Upstream replies for the resolver, set aside by the router.
    pub(super) resolver: StageQueue,
}

impl Queues {
    pub(super) fn new() -> Self {
        Queues {
            router: StageQueue::new(),
            vtep: StageQueue::new(),
            dns: StageQueue::new(),
            resolver: StageQueue::new(),
        }
    }
}

/// The other half of each queue in [`Queues`] (see there).
pub(super) type Spares = Queues;

/// The uplink's frames carry no network; the resolver queue's entries name the uplink.
const FROM_UPLINK: Ingress = Ingress {
    net: UPLINK_NET,
    port: PortId::MAX,
};

impl TxSide {
    /// An upstream reply the router received for the resolver.
    pub(super) fn queue_for_resolver(&mut self, frame: &[u8]) -> bool {
        self.queues.resolver.push(FROM_UPLINK, frame)
    }
}

impl Worker {
    /// Run the queued stages in the graph's order: router, vtep, dns (whose upstream
    /// queries go to the router at once), then the resolver's upstream replies.
    pub(super) fn run_queued(&mut self, now: Instant) {
        self.router_stage(now);
        self.vtep_stage(now);
        self.dns_stage(now);
        self.resolver_replies(now);
    }

    /// Swap the queue `pick` names with its spare, to be read while the stages refill
    /// it; counts its frames into `stage`. False when it was empty.
    fn take(&mut self, pick: fn(&mut Queues) -> &mut StageQueue, stage: Stage) -> bool {
        let queue = pick(&mut self.tx.queues);
        if queue.is_empty() {
            return false;
        }
        let spare = pick(&mut self.spares);
        spare.clear();
        std::mem::swap(queue, spare);
        self.setup.counters.stage(stage, spare.len());
        true
    }

    /// The router stage: frames the L2 stage sent to the gateway to be routed.
    fn router_stage(&mut self, now: Instant) {
        if !self.take(|q| &mut q.router, Stage::Router) {
            return;
        }
        let q = &self.spares.router;
        for i in 0..q.len() {
            let (from, frame) = q.get(i);
            match self.router.as_mut() {
                Some(r) => r.route_from_network(
                    &mut Cx::new(&mut self.nets, &mut self.tx, now),
                    from,
                    frame,
                ),
                None => unreachable_net(&self.nets, &mut self.tx, from, frame, &mut self.scratch),
            }
        }
    }

    /// The vtep stage: frames of overlay networks for the tunnel.
    fn vtep_stage(&mut self, now: Instant) {
        if !self.take(|q| &mut q.vtep, Stage::Vtep) {
            return;
        }
        let q = &self.spares.vtep;
        for i in 0..q.len() {
            let (from, frame) = q.get(i);
            match self.router.as_mut() {
                Some(r) => {
                    r.tunnel_out(&mut Cx::new(&mut self.nets, &mut self.tx, now), from, frame)
                }
                // No uplink: an overlay has no tunnel to send by.
                None => {
                    if let Some(c) = self.tx.port_counters(from.port) {
                        c.dropped(DropReason::NoRoute, 1);
                    }
                }
            }
        }
    }

    /// The dns stage: queries to the gateway's resolver.
    fn dns_stage(&mut self, now: Instant) {
        if !self.take(|q| &mut q.dns, Stage::Dns) {
            return;
        }
        let q = &self.spares.dns;
        if let Some(d) = self.dns.as_mut() {
            for i in 0..q.len() {
                let (from, frame) = q.get(i);
                d.query_frame(&mut Cx::new(&mut self.nets, &mut self.tx, now), from, frame);
            }
        }
        self.dns_upstream(now);
    }

    /// The resolver's upstream replies, which the router set aside.
    fn resolver_replies(&mut self, now: Instant) {
        if !self.take(|q| &mut q.resolver, Stage::Dns) {
            return;
        }
        let q = &self.spares.resolver;
        if let Some(d) = self.dns.as_mut() {
            for i in 0..q.len() {
                d.uplink_frame(&mut Cx::new(&mut self.nets, &mut self.tx, now), q.get(i).1);
            }
        }
        self.dns_upstream(now);
    }

    /// What the resolver asked to send out of the uplink, to the router (queries from its
    /// port, its TCP connections' packets); without an uplink the queries fail at once.
    pub(super) fn dns_upstream(&mut self, now: Instant) {
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
                    failed += u64::from(!r.send_udp(d.port, to, &bytes, &mut self.tx, now));
                }
                (Some(r), Upstream::Ip(packet)) => r.send_ip(&packet, &mut self.tx, now),
                (None, Upstream::Udp { .. }) => failed += 1,
                (None, Upstream::Ip(_)) => {}
            }
        }
        d.upstream_failed(failed);
    }
}

/// No uplink: drop, count, and tell the sender at once (ICMP net unreachable).
fn unreachable_net(
    nets: &HashMap<NetId, Network>,
    tx: &mut TxSide,
    from: Ingress,
    frame: &[u8],
    scratch: &mut [u8; MAX_FRAME],
) {
    let Some(counters) = tx.port_counters(from.port) else {
        return;
    };
    counters.dropped(DropReason::NoRoute, 1);
    if let Some(n) = nets.get(&from.net) {
        router::no_uplink(n, from.port, frame, tx, scratch, &counters);
    }
}
