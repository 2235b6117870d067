//! What the frame path's tests, fuzz targets and the `frame_cost` example emit into:
//! one [`Sink`]. It counts every frame (and checks each fits a port's buffer); unless
//! made with [`Sink::counting`] it also keeps them, by port and by next stage. A
//! counting sink allocates nothing, so the allocation tests use it.

use crate::fdb::Mac;
use crate::pipeline::{Emit, Ingress};
use crate::port::MAX_FRAME;
use crate::stats::PortCounters;
use crate::{NetId, PortId};

pub(crate) struct Sink {
    /// Frames sent to ports (the gateway's answers included).
    pub frames: usize,
    /// Frames handed to the router, the resolver or the tunnel.
    pub handed: usize,
    record: bool,
    pub out: Vec<(PortId, Vec<u8>)>,
    pub learned: Vec<Mac>,
    pub routed: Vec<Vec<u8>>,
    pub dns: Vec<Vec<u8>>,
    pub tunnel: Vec<Vec<u8>>,
    pub upstream_replies: Vec<Vec<u8>>,
}

impl Default for Sink {
    /// A sink that keeps what it is given.
    fn default() -> Self {
        Sink {
            frames: 0,
            handed: 0,
            record: true,
            out: Vec::new(),
            learned: Vec::new(),
            routed: Vec::new(),
            dns: Vec::new(),
            tunnel: Vec::new(),
            upstream_replies: Vec::new(),
        }
    }
}

impl Sink {
    /// A sink that only counts: no allocation per frame.
    pub fn counting() -> Self {
        Sink {
            record: false,
            ..Default::default()
        }
    }

    fn hand(&mut self, to: fn(&mut Sink) -> &mut Vec<Vec<u8>>, frame: &[u8]) {
        self.handed += 1;
        if self.record {
            to(self).push(frame.to_vec());
        }
    }
}

impl Emit for Sink {
    fn emit(&mut self, to: PortId, frame: &[u8], _counters: &PortCounters) {
        assert!(frame.len() <= MAX_FRAME, "a {}-byte frame", frame.len());
        self.frames += 1;
        if self.record {
            self.out.push((to, frame.to_vec()));
        }
    }
    fn answer(&mut self, to: PortId, frame: &[u8], counters: &PortCounters) {
        self.emit(to, frame, counters);
    }
    fn learned(&mut self, _net: NetId, mac: Mac, _port: PortId) {
        if self.record {
            self.learned.push(mac);
        }
    }
    fn route(&mut self, _from: Ingress, frame: &[u8], _counters: &PortCounters) {
        self.hand(|s| &mut s.routed, frame);
    }
    fn dns(&mut self, _from: Ingress, frame: &[u8], _counters: &PortCounters) {
        self.hand(|s| &mut s.dns, frame);
    }
    fn tunnel(&mut self, _from: Ingress, frame: &[u8], _counters: &PortCounters) {
        self.hand(|s| &mut s.tunnel, frame);
    }
    fn upstream_reply(&mut self, frame: &[u8]) -> bool {
        self.hand(|s| &mut s.upstream_replies, frame);
        true
    }
}
