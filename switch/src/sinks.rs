//! What the frame path's tests and fuzz targets emit into: [`Counter`] only counts (no
//! allocation, so the allocation tests can use it) and checks every frame fits a
//! port's buffer; [`Recorder`] (tests only) keeps every frame and learned MAC.

use crate::fdb::Mac;
use crate::pipeline::{Emit, Ingress};
use crate::port::MAX_FRAME;
use crate::stats::PortCounters;
use crate::{NetId, PortId};

/// Counts frames sent to ports and frames handed to the router, resolver or tunnel.
#[derive(Default)]
pub(crate) struct Counter {
    pub frames: usize,
    pub handed: usize,
}

impl Emit for Counter {
    fn emit(&mut self, _to: PortId, frame: &[u8], _from: &PortCounters) {
        assert!(frame.len() <= MAX_FRAME, "a {}-byte frame", frame.len());
        self.frames += 1;
    }
    fn answer(&mut self, to: PortId, frame: &[u8], from: &PortCounters) {
        self.emit(to, frame, from);
    }
    fn learned(&mut self, _net: NetId, _mac: Mac, _port: PortId) {}
    fn route(&mut self, _from: Ingress, _frame: &[u8], _counters: &PortCounters) {
        self.handed += 1;
    }
    fn dns(&mut self, _from: Ingress, _frame: &[u8], _counters: &PortCounters) {
        self.handed += 1;
    }
    fn tunnel(&mut self, _from: Ingress, _frame: &[u8], _counters: &PortCounters) {
        self.handed += 1;
    }
    fn upstream_reply(&mut self, _frame: &[u8]) -> bool {
        self.handed += 1;
        true
    }
}

/// Keeps what it is given: frames by port, learned MACs, frames for each next stage.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Recorder {
    pub out: Vec<(PortId, Vec<u8>)>,
    pub learned: Vec<Mac>,
    pub routed: Vec<Vec<u8>>,
    pub dns: Vec<Vec<u8>>,
    pub tunnel: Vec<Vec<u8>>,
    pub upstream_replies: Vec<Vec<u8>>,
}

#[cfg(test)]
impl Emit for Recorder {
    fn emit(&mut self, to: PortId, frame: &[u8], _from: &PortCounters) {
        self.out.push((to, frame.to_vec()));
    }
    fn answer(&mut self, to: PortId, frame: &[u8], from: &PortCounters) {
        self.emit(to, frame, from);
    }
    fn learned(&mut self, _net: NetId, mac: Mac, _port: PortId) {
        self.learned.push(mac);
    }
    fn route(&mut self, _from: Ingress, frame: &[u8], _counters: &PortCounters) {
        self.routed.push(frame.to_vec());
    }
    fn dns(&mut self, _from: Ingress, frame: &[u8], _counters: &PortCounters) {
        self.dns.push(frame.to_vec());
    }
    fn tunnel(&mut self, _from: Ingress, frame: &[u8], _counters: &PortCounters) {
        self.tunnel.push(frame.to_vec());
    }
    fn upstream_reply(&mut self, frame: &[u8]) -> bool {
        self.upstream_replies.push(frame.to_vec());
        true
    }
}
