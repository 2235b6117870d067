//! The tunnel forwarding table of one overlay network (one VNI): which remote VTEP a
//! MAC address lives behind, learned from decapsulated frames' inner source MAC (aged,
//! bounded like the switch's FDB) or static (from the cluster store), and the peer
//! VTEPs that broadcast, unknown unicast and multicast are replicated to (head-end
//! replication: no multicast underlay needed).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Mac, Vni};

/// Entries age out after this long unseen (Linux vxlan's `ageing 300`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Remote MACs per network before learning stops (a MAC flood through a tunnel).
pub const DEFAULT_MAX_ENTRIES: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Entry {
    vtep: Ipv4Addr,
    last_seen: Instant,
    is_static: bool,
}

/// What `learn` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    New,
    /// The MAC moved to another VTEP (a container migrated, or a stale entry).
    Moved,
    Refreshed,
    /// At the bound: not learned (the caller counts it; frames to it are flooded).
    Full,
    /// A static entry owns this MAC: not overridden.
    Static,
    /// A multicast or broadcast source: never learned.
    Invalid,
}

/// Where a frame to be flooded came from: a frame that arrived by tunnel floods only to
/// local ports (the sender replicated it to every VTEP already; sending it on would
/// loop), so it gets no replication list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Local,
    Tunnel,
}

/// One row of `vswitchctl fdb NETWORK` for a remote MAC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteEntry {
    pub vni: Vni,
    pub mac: Mac,
    /// The VTEP the MAC lives behind.
    pub vtep: Ipv4Addr,
    /// Seconds since last seen (0 for static entries).
    pub age_secs: u64,
    pub is_static: bool,
}

/// The tunnel forwarding table of one VNI. Owned by a worker; `now` is the burst's.
#[derive(Clone, Debug)]
pub struct TunnelTable {
    vni: Vni,
    map: HashMap<Mac, Entry, ahash::RandomState>,
    /// Configured peers (`-o vxlan.peers=` or the cluster store), in the order given.
    peers: Vec<Ipv4Addr>,
    /// Peers plus every VTEP behind a current entry, deduplicated: rebuilt when an
    /// entry appears, moves or goes, never per frame.
    flood: Vec<Ipv4Addr>,
    flood_stale: bool,
    max_entries: usize,
    max_age: Duration,
}

impl TunnelTable {
    pub fn new(vni: Vni, max_entries: usize, max_age: Duration) -> Self {
        TunnelTable {
            vni,
            map: HashMap::with_capacity_and_hasher(
                max_entries.min(1024),
                ahash::RandomState::new(),
            ),
            peers: Vec::new(),
            flood: Vec::new(),
            flood_stale: false,
            max_entries,
            max_age,
        }
    }

    /// A table with the defaults: 4096 entries, 300 s.
    pub fn with_defaults(vni: Vni) -> Self {
        Self::new(vni, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_AGE)
    }

    pub fn vni(&self) -> Vni {
        self.vni
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records that `mac` (an inner source MAC) arrived from `vtep`.
    pub fn learn(&mut self, mac: Mac, vtep: Ipv4Addr, now: Instant) -> Learned {
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return Learned::Invalid;
        }
        let len = self.map.len();
        match self.map.get_mut(&mac) {
            Some(e) if e.is_static => Learned::Static,
            Some(e) if e.vtep == vtep => {
                e.last_seen = now;
                Learned::Refreshed
            }
            Some(e) => {
                e.vtep = vtep;
                e.last_seen = now;
                self.flood_stale = true;
                Learned::Moved
            }
            None if len >= self.max_entries => Learned::Full,
            None => {
                self.map.insert(
                    mac,
                    Entry {
                        vtep,
                        last_seen: now,
                        is_static: false,
                    },
                );
                self.flood_stale = true;
                Learned::New
            }
        }
    }

    /// A static entry (from the cluster store): never ages, never moves by learning,
    /// and does not count against the bound's refusal (the control plane is trusted).
    pub fn add_static(&mut self, mac: Mac, vtep: Ipv4Addr, now: Instant) {
        self.map.insert(
            mac,
            Entry {
                vtep,
                last_seen: now,
                is_static: true,
            },
        );
        self.flood_stale = true;
    }

    /// Removes an entry, learned or static; true if there was one.
    pub fn remove(&mut self, mac: &Mac) -> bool {
        let had = self.map.remove(mac).is_some();
        self.flood_stale |= had;
        had
    }

    /// The VTEP `mac` lives behind, unless unknown or aged out (then: flood).
    pub fn lookup(&self, mac: &Mac, now: Instant) -> Option<Ipv4Addr> {
        let e = self.map.get(mac)?;
        if e.is_static || now.saturating_duration_since(e.last_seen) < self.max_age {
            Some(e.vtep)
        } else {
            None
        }
    }

    /// Removes entries older than the age limit (call every second or so, between
    /// bursts); returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.map.len();
        let max_age = self.max_age;
        self.map
            .retain(|_, e| e.is_static || now.saturating_duration_since(e.last_seen) < max_age);
        let removed = before - self.map.len();
        self.flood_stale |= removed > 0;
        removed
    }

    /// Forgets every entry behind `vtep` (the peer left the cluster).
    pub fn forget_vtep(&mut self, vtep: Ipv4Addr) {
        self.map.retain(|_, e| e.vtep != vtep);
        self.peers.retain(|p| *p != vtep);
        self.flood_stale = true;
    }

    /// Replaces the peer list (static `-o vxlan.peers=IP,IP`, or the cluster's view).
    /// Duplicates are kept once.
    pub fn set_peers(&mut self, peers: &[Ipv4Addr]) {
        self.peers.clear();
        for p in peers {
            if !self.peers.contains(p) {
                self.peers.push(*p);
            }
        }
        self.flood_stale = true;
    }

    pub fn add_peer(&mut self, peer: Ipv4Addr) {
        if !self.peers.contains(&peer) {
            self.peers.push(peer);
            self.flood_stale = true;
        }
    }

    pub fn remove_peer(&mut self, peer: Ipv4Addr) -> bool {
        let before = self.peers.len();
        self.peers.retain(|p| *p != peer);
        let removed = self.peers.len() != before;
        self.flood_stale |= removed;
        removed
    }

    pub fn peers(&self) -> &[Ipv4Addr] {
        &self.peers
    }

    /// The VTEPs a broadcast, unknown unicast or multicast frame from `origin` is
    /// replicated to: every configured peer and every VTEP a current entry lives behind
    /// (a VTEP known only by learning still hosts part of the network), each once,
    /// never `local` (this VTEP). Empty for a frame that came from a tunnel.
    pub fn flood_list(&mut self, origin: Origin, local: Ipv4Addr) -> &[Ipv4Addr] {
        if origin == Origin::Tunnel {
            return &[];
        }
        if self.flood_stale {
            self.flood.clear();
            self.flood.extend(self.peers.iter().copied());
            let mut learned: Vec<Ipv4Addr> = self.map.values().map(|e| e.vtep).collect();
            learned.sort_unstable();
            learned.dedup();
            for v in learned {
                if !self.flood.contains(&v) {
                    self.flood.push(v);
                }
            }
            self.flood_stale = false;
        }
        // The local address can only be here by misconfiguration; skip it cheaply.
        if let Some(i) = self.flood.iter().position(|v| *v == local) {
            self.flood.remove(i);
        }
        &self.flood
    }

    /// The rows for `vswitchctl fdb`, sorted by MAC, aged-out entries left out.
    pub fn entries(&self, now: Instant) -> Vec<RemoteEntry> {
        let mut v: Vec<RemoteEntry> = self
            .map
            .iter()
            .filter(|(_, e)| {
                e.is_static || now.saturating_duration_since(e.last_seen) < self.max_age
            })
            .map(|(mac, e)| RemoteEntry {
                vni: self.vni,
                mac: *mac,
                vtep: e.vtep,
                age_secs: if e.is_static {
                    0
                } else {
                    now.saturating_duration_since(e.last_seen).as_secs()
                },
                is_static: e.is_static,
            })
            .collect();
        v.sort_by_key(|e| e.mac);
        v
    }
}
