//! Trunk ports: a macvlan parent's (802.1Q members) and the worker's endpoint trunk (tc
//! endpoints by their 802.1ad tag, and the kernel's observed copies).

use super::*;

impl Worker {
    /// Frames from a trunk: by VID to the member network (tag stripped); frames for no
    /// member (wrong VID, or untagged without an untagged network) are dropped. A double
    /// tag stays in the payload of the outer VID's network: it never reaches another.
    pub(super) fn trunk_burst(
        &mut self,
        i: usize,
        rx: &Burst,
        counters: &PortCounters,
        now: Instant,
    ) {
        let mut vlans = std::mem::take(&mut self.tx.ports[i].vlans);
        for frame in rx.iter() {
            let tag = dot1q_of(frame);
            let vid = tag.as_ref().map(|t| t.vid());
            match vlans.iter_mut().find(|m| m.vid == vid) {
                Some(m) => {
                    let pushed = m.rx.slot().and_then(|slot| match &tag {
                        Some(t) => vlan::pop_tag(t, slot),
                        None => {
                            slot[..frame.len()].copy_from_slice(frame);
                            Some(frame.len())
                        }
                    });
                    if let Some(n) = pushed {
                        m.rx.commit(n);
                    }
                }
                None => {
                    counters.rx(frame.len());
                    counters.dropped(DropReason::Vlan, 1);
                }
            }
        }
        for m in vlans.iter_mut().filter(|m| !m.rx.is_empty()) {
            if let Some(net) = self.nets.get_mut(&m.net) {
                self.setup.counters.stage(Stage::L2, m.rx.len());
                let src = self.tx.source(m.id, counters);
                pipeline::switch_burst(net, src, &m.rx, &mut self.tx, &mut self.scratch, now);
            }
            m.rx.clear();
        }
        self.tx.ports[i].vlans = vlans;
    }

    /// Frames from this worker's endpoint trunk: each run of frames for one tc endpoint
    /// (by the tag's TCI) goes untagged through its network's pipeline as a burst from
    /// that endpoint. A frame for no endpoint of this worker is dropped and counted.
    pub(super) fn skb_trunk_burst(&mut self, rx: &Burst, trunk: &PortCounters, now: Instant) {
        let mut run = self.skb_run.take().unwrap_or_default();
        let mut cur: Option<skb_trunk::Tagged> = None;
        for frame in rx.iter() {
            trunk.rx(frame.len());
            let port =
                skb_trunk::tagged_port(frame).filter(|t| self.tx.skb_member(t.port).is_some());
            if port != cur || run.is_full() {
                if let Some(p) = cur {
                    self.skb_run_done(p, &run, now);
                }
                run.clear();
                cur = None;
            }
            let Some(p) = port else {
                trunk.dropped(DropReason::Vlan, 1);
                continue;
            };
            cur = Some(p);
            if let Some(slot) = run.slot() {
                let n = skb_trunk::untag_into(frame, slot);
                run.commit(n);
            }
        }
        if let Some(p) = cur {
            self.skb_run_done(p, &run, now);
        }
        run.clear();
        self.skb_run = Some(run);
    }

    /// A run of frames from tc endpoint `from.port`, through its network's pipeline; or
    /// copies of frames the kernel delivered itself, which only the router observes.
    pub(super) fn skb_run_done(&mut self, from: skb_trunk::Tagged, run: &Burst, now: Instant) {
        let id = from.port;
        let Some(Some(m)) = self.tx.skb.get_mut(id as usize) else {
            return;
        };
        if from.observed {
            if let (UPLINK_NET, Some(r)) = (m.net, self.router.as_mut()) {
                for frame in run.iter() {
                    r.observe_from_uplink(frame, now);
                }
            }
            return;
        }
        if let Some(tap) = &m.capture {
            if !tee(tap, run.iter()) {
                m.capture = None;
            }
        }
        let (net_id, counters, install) = (m.net, m.counters.clone(), m.capture.is_none());
        if net_id == UPLINK_NET {
            // The tc uplink's frames: the router's, as from an uplink socket.
            self.uplink_burst(run, &counters, now);
            return;
        }
        let src = self.tx.source(id, &counters);
        self.l2_burst(net_id, src, run, install, now);
    }
}
