//! The worker's stage graph: a burst meets the stages in a fixed order, each stage
//! sorts its frames to the next ones, and the stages that borrow every network (router,
//! vtep, resolver) take their input from a queue once the burst has been through L2:
//!
//! ```text
//! port input ──> l2 ──┬──────────────────────────────────────> port output
//! (mod.rs,   (pipeline)├─> gateway: its answer ──────────────> port output
//!  trunks.rs)         ├─> router queue ─> router ─> port output (networks, uplink)
//!   │                 ├─> vtep queue ───> vtep ───> port output (the uplink)
//!   │                 └─> dns queue ────> dns ────> port output; router (upstream)
//!   └─ uplink frames ─> router ─┬─> port output (networks; the tunnel's arrivals)
//!                               └─> resolver queue ─> dns (upstream replies)
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

    fn iter(&self) -> impl Iterator<Item = (Ingress, &[u8])> {
        self.from.iter().copied().zip(self.frames.iter())
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
        let mut cx = Cx::new(&mut self.nets, &mut self.tx, now);
        if take(&mut cx.out.queues.router, &mut self.spares.router) {
            let at = Routers {
                router: self.router.as_deref_mut(),
                host: self.host.as_deref_mut(),
            };
            router_stage(at, &mut cx, &mut self.scratch, self.spares.router.iter());
        }
        if take(&mut cx.out.queues.vtep, &mut self.spares.vtep) {
            vtep_stage(self.router.as_deref_mut(), &mut cx, self.spares.vtep.iter());
        }
        let mut resolved = false;
        if take(&mut cx.out.queues.dns, &mut self.spares.dns) {
            dns_stage(self.dns.as_deref_mut(), &mut cx, self.spares.dns.iter());
            resolved = true;
        }
        if take(&mut cx.out.queues.resolver, &mut self.spares.resolver) {
            let replies = self.spares.resolver.iter().map(|(_, f)| f);
            resolver_stage(self.dns.as_deref_mut(), &mut cx, replies);
            resolved = true;
        }
        if resolved {
            self.dns_upstream(now);
        }
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
                (Some(r), Upstream::Udp { from, to, bytes }) => {
                    failed += u64::from(!r.send_udp(from, to, &bytes, &mut self.tx, now));
                }
                (Some(r), Upstream::Ip(packet)) => r.send_ip(&packet, &mut self.tx, now),
                (None, Upstream::Udp { .. }) => failed += 1,
                (None, Upstream::Ip(_)) => {}
            }
        }
        d.upstream_failed(failed);
    }
}

/// Swap a stage's queue with its spare, to be read while the stages refill the queue;
/// false when it was empty.
fn take(queue: &mut StageQueue, spare: &mut StageQueue) -> bool {
    if queue.is_empty() {
        return false;
    }
    spare.clear();
    std::mem::swap(queue, spare);
    true
}

/// What the router stage routes by: the router (with an uplink) and the host port.
pub(super) struct Routers<'a> {
    pub router: Option<&'a mut Router>,
    pub host: Option<&'a mut HostLink>,
}

/// The router stage: frames the L2 stage sent to the gateway to be routed. The host's
/// addresses go to the host port (the uplink address first to the router, which keeps
/// published ports' hairpin and hands the rest to the host); the rest to the router, or
/// without an uplink they are unreachable.
pub(super) fn router_stage<'f>(
    at: Routers<'_>,
    cx: &mut Cx<TxSide>,
    scratch: &mut [u8; MAX_FRAME],
    frames: impl Iterator<Item = (Ingress, &'f [u8])>,
) {
    let Routers {
        mut router,
        mut host,
    } = at;
    for (from, frame) in frames {
        cx.out.counters.stage(Stage::Router, 1);
        // Reverse-path check: a network routes only its own sources, so no reply (nor a
        // host's answer) can be steered into another network by a spoofed source, with
        // port security off too.
        if !from_own_subnet(cx.nets, from, frame) {
            if let Some(c) = cx.out.port_counters(from.port) {
                c.dropped(DropReason::Spoofed, 1);
            }
            continue;
        }
        if let Some(h) = host.as_deref_mut() {
            let dst = wire::ip::Ipv4Frame::new(frame).map(|f| f.dst());
            if dst.is_some_and(|d| h.wants(d)) {
                let uplink = router.as_deref().map(|r| r.uplink_addr().0);
                let internal = cx.nets.get(&from.net).is_some_and(|n| n.cfg.internal);
                if uplink != dst || internal {
                    h.send_from_network(cx, from, frame);
                    continue;
                }
                if let Some(r) = router.as_deref_mut() {
                    if r.route_from_network(cx, from, frame, true) == Routed::ForHost {
                        h.send_from_network(cx, from, frame);
                    }
                    continue;
                }
            }
        }
        match router.as_deref_mut() {
            Some(r) => {
                r.route_from_network(cx, from, frame, false);
            }
            None => unreachable_net(cx.nets, cx.out, from, frame, scratch),
        }
    }
}

/// Whether a routed frame's IPv4 source lies in the subnet of the network it came from
/// (frames that are not IPv4 are the router's to refuse).
fn from_own_subnet(nets: &HashMap<NetId, Network>, from: Ingress, frame: &[u8]) -> bool {
    let Some(src) = wire::ip::Ipv4Frame::new(frame).map(|f| f.src()) else {
        return true;
    };
    nets.get(&from.net)
        .and_then(|n| n.cfg.subnet)
        .is_none_or(|(s, p)| router::in_subnet(src, s, p))
}

/// The vtep stage: frames of overlay networks for the tunnel (without an uplink there is
/// no tunnel to send by: dropped and counted).
pub(super) fn vtep_stage<'f>(
    mut router: Option<&mut Router>,
    cx: &mut Cx<TxSide>,
    frames: impl Iterator<Item = (Ingress, &'f [u8])>,
) {
    for (from, frame) in frames {
        cx.out.counters.stage(Stage::Vtep, 1);
        match router.as_deref_mut() {
            Some(r) => r.tunnel_out(cx, from, frame),
            None => {
                if let Some(c) = cx.out.port_counters(from.port) {
                    c.dropped(DropReason::NoRoute, 1);
                }
            }
        }
    }
}

/// The dns stage: queries to the gateway's resolver.
pub(super) fn dns_stage<'f>(
    dns: Option<&mut DnsServer>,
    cx: &mut Cx<TxSide>,
    frames: impl Iterator<Item = (Ingress, &'f [u8])>,
) {
    let Some(d) = dns else { return };
    for (from, frame) in frames {
        cx.out.counters.stage(Stage::Dns, 1);
        d.query_frame(cx, from, frame);
    }
}

/// The resolver's upstream replies, which the router set aside: the dns stage's too.
fn resolver_stage<'f>(
    dns: Option<&mut DnsServer>,
    cx: &mut Cx<TxSide>,
    frames: impl Iterator<Item = &'f [u8]>,
) {
    let Some(d) = dns else { return };
    for frame in frames {
        cx.out.counters.stage(Stage::Dns, 1);
        d.uplink_frame(cx, frame);
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
        // Handed over by another worker (in the moment before it learns the router
        // moved): its port is not ours to answer for; the worker counts the drop.
        WorkerCounters::add(&tx.counters.drops, 1);
        return;
    };
    counters.dropped(DropReason::NoRoute, 1);
    if let Some(n) = nets.get(&from.net) {
        router::no_uplink(n, from.port, frame, tx, scratch, &counters);
    }
}
