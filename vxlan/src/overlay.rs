//! A worker's whole VXLAN state: its VTEP and one tunnel table per overlay network,
//! with the counters `vswitchctl stats` shows. `receive` is the uplink side (decap,
//! VNI lookup, learning), `send` the network side (encap to a known VTEP).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::decap::{Decap, DropReason};
use crate::encap::{Vtep, VtepConfig};
use crate::error::EncapError;
use crate::table::{Learned, TunnelTable};
use crate::wire::{field, mac};
use crate::{Mac, Vni};

/// Per-worker counters (summed on read by the caller).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub decapsulated: u64,
    pub encapsulated: u64,
    /// Refused by `send`: bigger than the underlay MTU allows.
    pub too_big: u64,
    /// Remote MACs not learned because a table was at its bound.
    pub learn_full: u64,
    /// Decapsulation drops, indexed by `DropReason::index`.
    pub dropped: [u64; DropReason::ALL.len()],
}

impl Counters {
    pub fn dropped(&self, why: DropReason) -> u64 {
        self.dropped[why.index()]
    }
}

pub struct Overlay {
    vtep: Vtep,
    tables: HashMap<Vni, TunnelTable, ahash::RandomState>,
    counters: Counters,
    max_entries: usize,
    max_age: Duration,
}

impl Overlay {
    pub fn new(cfg: VtepConfig, max_entries: usize, max_age: Duration) -> Self {
        Overlay {
            vtep: Vtep::new(cfg),
            tables: HashMap::default(),
            counters: Counters::default(),
            max_entries,
            max_age,
        }
    }

    pub fn vtep(&self) -> &Vtep {
        &self.vtep
    }

    /// Adds an overlay network (or replaces its peers if it exists: what was learned
    /// behind a VTEP that is no longer a peer goes, see [`TunnelTable::set_peers`]).
    pub fn add_network(&mut self, vni: Vni, peers: &[Ipv4Addr]) -> &mut TunnelTable {
        let (max_entries, max_age) = (self.max_entries, self.max_age);
        let t = self
            .tables
            .entry(vni)
            .or_insert_with(|| TunnelTable::new(vni, max_entries, max_age));
        t.set_peers(peers);
        t
    }

    pub fn remove_network(&mut self, vni: Vni) -> bool {
        self.tables.remove(&vni).is_some()
    }

    pub fn table(&self, vni: Vni) -> Option<&TunnelTable> {
        self.tables.get(&vni)
    }

    pub fn table_mut(&mut self, vni: Vni) -> Option<&mut TunnelTable> {
        self.tables.get_mut(&vni)
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A frame from the uplink: VXLAN for a network here is returned (its inner source
    /// MAC learned behind the sending VTEP); VXLAN for an unknown VNI and unusable VXLAN
    /// are counted and returned as drops; anything else passes.
    pub fn receive<'a>(&mut self, frame: &'a [u8], now: Instant) -> Decap<'a> {
        let d = match self.vtep.decapsulate(frame) {
            Decap::Frame(d) => d,
            Decap::Drop(why) => {
                self.counters.dropped[why.index()] += 1;
                return Decap::Drop(why);
            }
            pass => return pass,
        };
        let Some(table) = self.tables.get_mut(&d.vni) else {
            self.counters.dropped[DropReason::UnknownVni.index()] += 1;
            return Decap::Drop(DropReason::UnknownVni);
        };
        // Only the network's peers may tunnel into it: nothing from elsewhere is learned
        // or delivered.
        if !table.peers().contains(&d.outer_src) {
            self.counters.dropped[DropReason::UnknownPeer.index()] += 1;
            return Decap::Drop(DropReason::UnknownPeer);
        }
        if let Some(src) = mac(d.inner, field::eth::SRC) {
            if table.learn(src, d.outer_src, now) == Learned::Full {
                self.counters.learn_full += 1;
            }
        }
        self.counters.decapsulated += 1;
        Decap::Frame(d)
    }

    /// Encapsulates `inner` for `remote` on `vni` into `out`; `next_hop` is the MAC the
    /// caller resolved for `remote` (or its underlay gateway). Refusals are counted.
    pub fn send(
        &mut self,
        vni: Vni,
        remote: Ipv4Addr,
        next_hop: Mac,
        inner: &[u8],
        out: &mut [u8],
    ) -> Result<usize, EncapError> {
        let r = self.vtep.encapsulate(vni, remote, next_hop, inner, out);
        match r {
            Ok(_) => self.counters.encapsulated += 1,
            Err(EncapError::TooBig { .. }) => self.counters.too_big += 1,
            Err(_) => {}
        }
        r
    }

    /// Ages every table; returns how many entries went.
    pub fn expire(&mut self, now: Instant) -> usize {
        self.tables.values_mut().map(|t| t.expire(now)).sum()
    }
}
