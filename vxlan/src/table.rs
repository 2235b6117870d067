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

/// How many entries live behind each VTEP, so the replication list is rebuilt only
/// when a VTEP gains its first entry or loses its last (not whenever an entry comes or
/// goes), and a rebuild costs the VTEPs, not the entries.
#[derive(Clone, Debug, Default)]
struct Vteps(HashMap<Ipv4Addr, usize, ahash::RandomState>);

impl Vteps {
    /// One more entry behind `vtep`; true if it had none.
    fn up(&mut self, vtep: Ipv4Addr) -> bool {
        let n = self.0.entry(vtep).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// One entry fewer behind `vtep`; true if that was its last.
    fn down(&mut self, vtep: Ipv4Addr) -> bool {
        match self.0.get_mut(&vtep) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.0.remove(&vtep);
                true
            }
            None => false,
        }
    }
}

/// The tunnel forwarding table of one VNI. Owned by a worker; `now` is the burst's.
#[derive(Clone, Debug)]
pub struct TunnelTable {
    vni: Vni,
    map: HashMap<Mac, Entry, ahash::RandomState>,
    /// Entries that were learned (not static): what the bound applies to.
    learned: usize,
    /// Entries per VTEP behind them.
    vteps: Vteps,
    /// Configured peers (`-o vxlan.peers=` or the cluster store), in the order given.
    peers: Vec<Ipv4Addr>,
    /// Peers plus every VTEP behind a current entry, deduplicated: rebuilt when a VTEP
    /// gets its first entry or loses its last, or the peers change, never per frame.
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
            learned: 0,
            vteps: Vteps::default(),
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
        match self.map.get_mut(&mac) {
            Some(e) if e.is_static => Learned::Static,
            Some(e) if e.vtep == vtep => {
                e.last_seen = now;
                Learned::Refreshed
            }
            Some(e) => {
                let old = std::mem::replace(&mut e.vtep, vtep);
                e.last_seen = now;
                self.flood_stale |= self.vteps.down(old) | self.vteps.up(vtep);
                Learned::Moved
            }
            // Static entries (the control plane's) take no room from learning.
            None if self.learned >= self.max_entries => Learned::Full,
            None => {
                self.map.insert(
                    mac,
                    Entry {
                        vtep,
                        last_seen: now,
                        is_static: false,
                    },
                );
                self.learned += 1;
                self.flood_stale |= self.vteps.up(vtep);
                Learned::New
            }
        }
    }

    /// A static entry (from the cluster store): never ages, never moves by learning,
    /// and neither is refused at the bound nor counts against it (the control plane is
    /// trusted; learning keeps its room). It replaces a learned entry for `mac`.
    pub fn add_static(&mut self, mac: Mac, vtep: Ipv4Addr, now: Instant) {
        let entry = Entry {
            vtep,
            last_seen: now,
            is_static: true,
        };
        match self.map.insert(mac, entry) {
            Some(old) => {
                self.learned -= usize::from(!old.is_static);
                if old.vtep != vtep {
                    self.flood_stale |= self.vteps.down(old.vtep) | self.vteps.up(vtep);
                }
            }
            None => self.flood_stale |= self.vteps.up(vtep),
        }
    }

    /// Removes an entry, learned or static; true if there was one.
    pub fn remove(&mut self, mac: &Mac) -> bool {
        let Some(old) = self.map.remove(mac) else {
            return false;
        };
        self.learned -= usize::from(!old.is_static);
        self.flood_stale |= self.vteps.down(old.vtep);
        true
    }

    /// Removes `mac`'s entry only if it is static and behind `vtep` (the control plane
    /// withdrawing what it added: an entry learned since, or one it has moved to
    /// another VTEP meanwhile, stays). True if it went.
    pub fn remove_static(&mut self, mac: &Mac, vtep: Ipv4Addr) -> bool {
        match self.map.get(mac) {
            Some(e) if e.is_static && e.vtep == vtep => self.remove(mac),
            _ => false,
        }
    }

    /// Whether `mac` has a static entry.
    pub fn is_static(&self, mac: &Mac) -> bool {
        self.map.get(mac).is_some_and(|e| e.is_static)
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
        let max_age = self.max_age;
        self.remove_where(|e| !e.is_static && now.saturating_duration_since(e.last_seen) >= max_age)
    }

    /// Removes the entries `gone` picks, keeping the counts; returns how many.
    fn remove_where(&mut self, mut gone: impl FnMut(&Entry) -> bool) -> usize {
        let before = self.map.len();
        let (vteps, learned, stale) = (&mut self.vteps, &mut self.learned, &mut self.flood_stale);
        self.map.retain(|_, e| {
            if !gone(e) {
                return true;
            }
            *learned -= usize::from(!e.is_static);
            *stale |= vteps.down(e.vtep);
            false
        });
        before - self.map.len()
    }

    /// Forgets every entry behind `vtep`, static ones too, and the peer.
    pub fn forget_vtep(&mut self, vtep: Ipv4Addr) {
        self.remove_where(|e| e.vtep == vtep);
        self.peers.retain(|p| *p != vtep);
        self.flood_stale = true;
    }

    /// Replaces the peer list (static `-o vxlan.peers=IP,IP`, or the cluster's
    /// members). Duplicates are kept once. Learned entries behind a VTEP that is no
    /// longer a peer are forgotten at once, so floods stop going to a host that left
    /// (they would otherwise until the entries age out) and its MACs are flooded for
    /// until heard again; static entries stay until the control plane removes them.
    /// Returns how many entries went.
    pub fn set_peers(&mut self, peers: &[Ipv4Addr]) -> usize {
        let mut new = Vec::with_capacity(peers.len());
        for p in peers {
            if !new.contains(p) {
                new.push(*p);
            }
        }
        if new == self.peers {
            return 0;
        }
        let shrank = self.peers.iter().any(|p| !new.contains(p));
        self.peers = new;
        self.flood_stale = true;
        if !shrank {
            return 0;
        }
        let peers = std::mem::take(&mut self.peers);
        let gone = self.remove_where(|e| !e.is_static && !peers.contains(&e.vtep));
        self.peers = peers;
        gone
    }

    pub fn add_peer(&mut self, peer: Ipv4Addr) {
        if !self.peers.contains(&peer) {
            self.peers.push(peer);
            self.flood_stale = true;
        }
    }

    /// Removes a peer and, as [`TunnelTable::set_peers`] does, the entries learned
    /// behind it; true if it was one.
    pub fn remove_peer(&mut self, peer: Ipv4Addr) -> bool {
        let before = self.peers.len();
        self.peers.retain(|p| *p != peer);
        let removed = self.peers.len() != before;
        if removed {
            self.flood_stale = true;
            self.remove_where(|e| !e.is_static && e.vtep == peer);
        }
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
            let first = self.flood.len();
            let peers = &self.peers;
            self.flood
                .extend(self.vteps.0.keys().filter(|v| !peers.contains(v)).copied());
            self.flood[first..].sort_unstable();
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
