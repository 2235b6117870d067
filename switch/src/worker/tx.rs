//! The transmit side: per-port transmit bursts, trunk tags, hand-offs to other workers,
//! and the pipeline's `Emit` sink.

use super::*;

impl TxSide {
    pub(super) fn home(&self, id: PortId) -> Option<Home> {
        self.home.get(id as usize).copied().flatten()
    }

    pub(super) fn set_home(&mut self, id: PortId, h: Option<Home>) {
        let i = id as usize;
        if self.home.len() <= i {
            self.home.resize(i + 1, None);
        }
        self.home[i] = h;
    }

    pub(super) fn flush_port(&mut self, i: usize) {
        let op = &mut self.ports[i];
        if op.tx.is_empty() {
            return;
        }
        let queued = op.tx.len();
        let sent = match op.port.send(&op.tx) {
            Ok(n) => n.min(queued),
            Err(_) => 0,
        };
        let bytes: usize = (0..sent).map(|k| op.tx.frame(k).len()).sum();
        if let Some(tap) = &op.capture {
            if !tee(tap, op.tx.iter().take(sent)) {
                op.capture = None;
            }
        }
        op.counters.tx(sent, bytes);
        WorkerCounters::add(&self.counters.tx_packets, sent as u64);
        self.counters.stage(Stage::PortOutput, sent);
        if sent < queued {
            op.counters.dropped(DropReason::TxFull, queued - sent);
            WorkerCounters::add(&self.counters.drops, (queued - sent) as u64);
        }
        op.tx.clear();
    }

    pub(super) fn flush(&mut self) {
        while let Some(i) = self.dirty.pop() {
            self.flush_port(i);
        }
        if self.peers_to_wake != 0 {
            for (w, p) in self.peers.iter().enumerate() {
                if self.peers_to_wake & (1 << (w % 64)) != 0 {
                    p.waker.wake_if_sleeping();
                }
            }
            self.peers_to_wake = 0;
        }
    }

    pub(super) fn peer_send(&mut self, worker: usize, msg: Handoff) -> bool {
        let ok = self.peers[worker].data.try_send(msg).is_ok();
        self.peers_to_wake |= 1 << (worker % 64);
        ok
    }

    /// A burst's source as the L2 stage needs it: with more than one worker, the MACs it
    /// learns are announced to the others.
    pub(super) fn source<'a>(&self, port: PortId, counters: &'a PortCounters) -> Source<'a> {
        Source {
            port,
            counters,
            announce_learning: self.peers.len() > 1,
        }
    }

    pub(super) fn port_counters(&self, id: PortId) -> Option<Arc<PortCounters>> {
        match self.home(id) {
            Some(Home::Local(i)) | Some(Home::Vlan { port: i, .. }) => {
                Some(self.ports[i].counters.clone())
            }
            Some(Home::Skb { .. }) => self.skb_member(id).map(|m| m.counters.clone()),
            _ => None,
        }
    }

    /// Port `i`'s transmit burst, flushed first when full and marked for the flush at the
    /// end of the loop iteration.
    pub(super) fn tx_burst(&mut self, i: usize) -> &mut Burst {
        if self.ports[i].tx.is_full() {
            self.flush_port(i);
        }
        if self.ports[i].tx.is_empty() {
            self.dirty.push(i);
        }
        &mut self.ports[i].tx
    }

    pub(super) fn skb_member(&self, id: PortId) -> Option<&SkbMember> {
        self.skb.get(id as usize).and_then(|m| m.as_ref())
    }

    /// Queue a frame for tc endpoint `to`: on its trunk, tagged with its port.
    fn emit_skb(&mut self, to: PortId, trunk: PortId, frame: &[u8], from: &PortCounters) {
        let Some(Home::Local(i)) = self.home(trunk) else {
            from.dropped(DropReason::PortError, 1);
            return;
        };
        let Some(slot) = self.tx_burst(i).slot() else {
            return;
        };
        let Some(n) = skb_trunk::tag_into(frame, to, slot) else {
            from.dropped(DropReason::TxFull, 1);
            return;
        };
        self.ports[i].tx.commit(n);
        if let Some(Some(m)) = self.skb.get_mut(to as usize) {
            m.counters.tx(1, frame.len());
            if let Some(tap) = &m.capture {
                if !tee(tap, std::iter::once(frame)) {
                    m.capture = None;
                }
            }
        }
    }

    /// Queue a frame on trunk port `i` with an 802.1Q tag for `vid` pushed in.
    fn emit_tagged(&mut self, i: usize, vid: u16, frame: &[u8], from: &PortCounters) {
        if frame.len() < wire::ETH_HLEN {
            from.dropped(DropReason::TxFull, 1);
            return;
        }
        let tag = vlan::TagRepr::from_tci(ETHERTYPE_VLAN, vid);
        let Some(slot) = self.tx_burst(i).slot() else {
            return;
        };
        match vlan::push_tag(frame, tag, slot) {
            Some(n) => self.ports[i].tx.commit(n),
            // Too big for a port's buffer once tagged.
            None => from.dropped(DropReason::TxFull, 1),
        }
    }
}

impl TxSide {
    /// Queue a frame for a stage on the uplink's worker (the router or the vtep): here,
    /// or handed over to that worker.
    fn hand_to_uplink_worker(
        &mut self,
        from: Ingress,
        frame: &[u8],
        counters: &PortCounters,
        tunnel: bool,
    ) {
        match self.router_at {
            RouterAt::Remote(w) => {
                let frame = frame.into();
                let msg = if tunnel {
                    Handoff::Tunnel { from, frame }
                } else {
                    Handoff::Route { from, frame }
                };
                if self.peer_send(w, msg) {
                    WorkerCounters::add(&self.counters.cross_worker, 1);
                } else {
                    counters.dropped(DropReason::QueueFull, 1);
                }
            }
            RouterAt::Local | RouterAt::Nowhere => {
                let q = if tunnel {
                    &mut self.queues.vtep
                } else {
                    &mut self.queues.router
                };
                if !q.push(from, frame) {
                    counters.dropped(DropReason::NoRoute, 1);
                }
            }
        }
    }
}

impl Emit for TxSide {
    fn emit(&mut self, to: PortId, frame: &[u8], from: &PortCounters) {
        match self.home(to) {
            // Onto a trunk, a frame that is tagged already would hop VLANs (from an
            // untagged member) or leave double-tagged (from a tagged one): never.
            Some(Home::Vlan { .. }) if is_tagged(frame) => from.dropped(DropReason::Vlan, 1),
            Some(Home::Local(i)) | Some(Home::Vlan { port: i, vid: None }) => {
                self.tx_burst(i).push(frame);
            }
            Some(Home::Vlan {
                port,
                vid: Some(vid),
            }) => self.emit_tagged(port, vid, frame, from),
            Some(Home::Skb { trunk }) => self.emit_skb(to, trunk, frame, from),
            Some(Home::Remote(w)) => {
                let msg = Handoff::Frame {
                    port: to,
                    frame: frame.into(),
                };
                if self.peer_send(w, msg) {
                    WorkerCounters::add(&self.counters.cross_worker, 1);
                } else {
                    from.dropped(DropReason::QueueFull, 1);
                    WorkerCounters::add(&self.counters.drops, 1);
                }
            }
            None => {}
        }
    }

    fn learned(&mut self, net: NetId, mac: Mac, port: PortId) {
        for w in 0..self.peers.len() {
            let _ = self.peer_send(w, Handoff::Learned { net, mac, port });
        }
    }

    fn answer(&mut self, to: PortId, frame: &[u8], from: &PortCounters) {
        self.counters.stage(Stage::Gateway, 1);
        self.emit(to, frame, from);
    }

    fn route(&mut self, from: Ingress, frame: &[u8], counters: &PortCounters) {
        self.hand_to_uplink_worker(from, frame, counters, false);
    }

    fn tunnel(&mut self, from: Ingress, frame: &[u8], counters: &PortCounters) {
        self.hand_to_uplink_worker(from, frame, counters, true);
    }

    fn dns(&mut self, from: Ingress, frame: &[u8], counters: &PortCounters) {
        if self.dns_local {
            if !self.queues.dns.push(from, frame) {
                counters.dropped(DropReason::QueueFull, 1);
            }
            return;
        }
        let msg = Handoff::Dns {
            from,
            frame: frame.into(),
        };
        if self.peer_send(DNS_WORKER, msg) {
            WorkerCounters::add(&self.counters.cross_worker, 1);
        } else {
            counters.dropped(DropReason::QueueFull, 1);
        }
    }

    fn upstream_reply(&mut self, frame: &[u8]) -> bool {
        self.queue_for_resolver(frame)
    }
}

/// An Ethernet frame carrying a VLAN tag (802.1Q, 802.1ad, or the old QinQ TPID).
fn is_tagged(frame: &[u8]) -> bool {
    frame.len() >= wire::ETH_HLEN
        && matches!(
            u16::from_be_bytes([frame[12], frame[13]]),
            0x8100 | 0x88a8 | 0x9100
        )
}
