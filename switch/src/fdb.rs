//! The forwarding database of one network: which port a MAC address was last seen on.
//! Learned entries age out; the table is bounded so a MAC flood cannot exhaust memory
//! (new addresses past the bound are not learned and their frames are flooded). Static
//! entries (the control plane's remote endpoints) never age and take no room from
//! learning.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::PortId;

pub use wire::Mac;

#[derive(Clone, Copy, Debug)]
struct Entry {
    port: PortId,
    last_seen: Instant,
    /// When other workers were last told of this entry (they age their replicas too).
    announced: Instant,
    is_static: bool,
}

impl Entry {
    fn new(port: PortId, now: Instant, is_static: bool) -> Entry {
        Entry {
            port,
            last_seen: now,
            announced: now,
            is_static,
        }
    }
}

/// What `learn` did, so the worker can tell its peers about new or moved entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Already known on that port; only the age was refreshed.
    Refreshed,
    /// A new entry, or one that moved to another port.
    Changed,
    /// Known and unchanged, but the other workers' replicas are due a refresh so they
    /// do not age out an address that is still active.
    Reannounce,
    /// The table is at its bound: not learned.
    Full,
    /// A static entry owns this address: not overridden.
    Static,
}

/// One row of `entries`, for `vswitchctl fdb`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FdbEntry {
    pub mac: Mac,
    pub port: PortId,
    /// Seconds since last seen (0 for static entries).
    pub age_secs: u64,
    pub is_static: bool,
    /// For a MAC behind the tunnel (`TUNNEL_PORT`): the remote VTEP, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep: Option<std::net::Ipv4Addr>,
    /// Installed in the in-kernel fast path on `port` (`crate::fastpath`).
    #[serde(default)]
    pub fast_path: bool,
}

pub struct Fdb {
    map: HashMap<Mac, Entry, ahash::RandomState>,
    /// How many of `map`'s entries were learned (not static): what `max_entries` bounds.
    learned: usize,
    max_entries: usize,
    max_age: Duration,
    /// Learned entries per port, and the bound on them (`--fdb-max-per-port`), so one
    /// port's flood of source MACs cannot take the table from the others.
    per_port: HashMap<PortId, usize, ahash::RandomState>,
    max_per_port: usize,
}

impl Fdb {
    pub fn new(max_entries: usize, max_age: Duration) -> Self {
        Fdb {
            map: HashMap::with_capacity_and_hasher(
                max_entries.min(4096),
                ahash::RandomState::new(),
            ),
            learned: 0,
            max_entries,
            max_age,
            per_port: HashMap::default(),
            max_per_port: max_entries,
        }
    }

    /// Learned entries older than `age` are forgotten from now on (a reload).
    pub fn set_max_age(&mut self, age: Duration) {
        self.max_age = age;
    }

    /// Bound what one port may have learned at once (the table's bound by default).
    pub fn with_port_limit(mut self, max_per_port: usize) -> Self {
        self.max_per_port = max_per_port.max(1);
        self
    }

    fn count(&mut self, port: PortId, up: bool) {
        if up {
            *self.per_port.entry(port).or_insert(0) += 1;
        } else if let Some(n) = self.per_port.get_mut(&port) {
            *n -= 1;
            if *n == 0 {
                self.per_port.remove(&port);
            }
        }
    }

    fn port_full(&self, port: PortId) -> bool {
        self.per_port.get(&port).copied().unwrap_or(0) >= self.max_per_port
    }

    /// Entries, static ones included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Learned entries: what `--fdb-max` bounds.
    pub fn learned_len(&self) -> usize {
        self.learned
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Record that `mac` was seen arriving on `port`.
    pub fn learn(&mut self, mac: Mac, port: PortId, now: Instant) -> Learned {
        // The per-frame case first: known on this port (or static), one lookup.
        let moved_from = match self.map.get_mut(&mac) {
            Some(e) if e.is_static => return Learned::Static,
            Some(e) if e.port == port => {
                e.last_seen = now;
                return if now.saturating_duration_since(e.announced) >= self.max_age / 4 {
                    e.announced = now;
                    Learned::Reannounce
                } else {
                    Learned::Refreshed
                };
            }
            Some(e) => Some(e.port),
            None => None,
        };
        // New or moved (rare): the table's and the port's bounds apply.
        if self.port_full(port) || (moved_from.is_none() && self.learned >= self.max_entries) {
            return Learned::Full;
        }
        match moved_from {
            Some(old) => {
                if let Some(e) = self.map.get_mut(&mac) {
                    e.port = port;
                    e.last_seen = now;
                    e.announced = now;
                }
                self.count(old, false);
            }
            None => {
                self.map.insert(mac, Entry::new(port, now, false));
                self.learned += 1;
            }
        }
        self.count(port, true);
        Learned::Changed
    }

    /// Install an entry learned elsewhere (another worker), without the refresh logic.
    pub fn install(&mut self, mac: Mac, port: PortId, now: Instant) {
        if self.learned < self.max_entries || self.map.contains_key(&mac) {
            let mut moved = None;
            let e = self.map.entry(mac).or_insert_with(|| {
                moved = Some(None);
                Entry::new(port, now, false)
            });
            if moved.is_some() {
                self.learned += 1;
            }
            if !e.is_static && e.port != port {
                moved = Some(Some(e.port));
                e.port = port;
            }
            if !e.is_static {
                e.last_seen = now;
            }
            if let Some(old) = moved {
                if let Some(old) = old {
                    self.count(old, false);
                }
                self.count(port, true);
            }
        }
    }

    /// A static entry: never ages, never moves by learning, and counts against neither
    /// bound (the control plane's). It takes the place of a learned entry for `mac`.
    pub fn add_static(&mut self, mac: Mac, port: PortId, now: Instant) {
        if let Some(old) = self.map.insert(mac, Entry::new(port, now, true)) {
            if !old.is_static {
                self.learned -= 1;
                self.count(old.port, false);
            }
        }
    }

    /// Remove `mac`'s entry if it is static (a learned one stays); true if it went.
    pub fn remove_static(&mut self, mac: &Mac) -> bool {
        if self.map.get(mac).is_some_and(|e| e.is_static) {
            self.map.remove(mac);
            true
        } else {
            false
        }
    }

    /// The port `mac` lives on, unless unknown or aged out.
    pub fn lookup(&self, mac: &Mac, now: Instant) -> Option<PortId> {
        let e = self.map.get(mac)?;
        if e.is_static || now.saturating_duration_since(e.last_seen) < self.max_age {
            Some(e.port)
        } else {
            None
        }
    }

    /// Remove entries older than the age limit; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.map.len();
        let max_age = self.max_age;
        let per_port = &mut self.per_port;
        self.map.retain(|_, e| {
            let keep = e.is_static || now.saturating_duration_since(e.last_seen) < max_age;
            if !keep {
                if let Some(n) = per_port.get_mut(&e.port) {
                    *n = n.saturating_sub(1);
                }
            }
            keep
        });
        self.per_port.retain(|_, n| *n > 0);
        let removed = before - self.map.len();
        self.learned -= removed;
        removed
    }

    /// Forget everything on a port (it was removed).
    pub fn forget_port(&mut self, port: PortId) {
        let learned = &mut self.learned;
        self.map.retain(|_, e| {
            let keep = e.port != port;
            if !keep && !e.is_static {
                *learned -= 1;
            }
            keep
        });
        self.per_port.remove(&port);
    }

    pub fn entries(&self, now: Instant) -> Vec<FdbEntry> {
        let mut v: Vec<FdbEntry> = self
            .map
            .iter()
            .filter(|(_, e)| {
                e.is_static || now.saturating_duration_since(e.last_seen) < self.max_age
            })
            .map(|(mac, e)| FdbEntry {
                mac: *mac,
                port: e.port,
                age_secs: if e.is_static {
                    0
                } else {
                    now.saturating_duration_since(e.last_seen).as_secs()
                },
                is_static: e.is_static,
                vtep: None,
                fast_path: false,
            })
            .collect();
        v.sort_by_key(|e| e.mac);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [2, 0, 0, 0, 0, 1];
    const B: Mac = [2, 0, 0, 0, 0, 2];

    #[test]
    fn one_port_learns_at_most_its_share() {
        let now = Instant::now();
        let mut f = Fdb::new(100, Duration::from_secs(300)).with_port_limit(3);
        for i in 0..10u8 {
            f.learn([2, 0, 0, 0, 1, i], 1, now);
        }
        assert_eq!(f.len(), 3, "port 1 stops at its share");
        assert_eq!(
            f.learn(A, 2, now),
            Learned::Changed,
            "another port still learns"
        );
        assert_eq!(
            f.learn(A, 1, now),
            Learned::Full,
            "nor can port 1 take A over"
        );
        assert_eq!(f.lookup(&A, now), Some(2));
        f.forget_port(1);
        assert_eq!(f.learn([2, 0, 0, 0, 1, 9], 1, now), Learned::Changed);
        let later = now + Duration::from_secs(301);
        assert_eq!(f.expire(later), 2);
        for i in 0..3u8 {
            assert_eq!(
                f.learn([2, 0, 0, 0, 2, i], 1, later),
                Learned::Changed,
                "aged out: room again"
            );
        }
    }

    #[test]
    fn learns_moves_and_refreshes() {
        let now = Instant::now();
        let mut f = Fdb::new(10, Duration::from_secs(300));
        assert_eq!(f.learn(A, 1, now), Learned::Changed);
        assert_eq!(f.learn(A, 1, now), Learned::Refreshed);
        assert_eq!(f.lookup(&A, now), Some(1));
        assert_eq!(f.learn(A, 2, now), Learned::Changed);
        assert_eq!(f.lookup(&A, now), Some(2));
        assert_eq!(f.lookup(&B, now), None);
    }

    #[test]
    fn active_entries_are_reannounced_to_peer_replicas() {
        let t0 = Instant::now();
        let mut f = Fdb::new(10, Duration::from_secs(300));
        f.learn(A, 1, t0);
        assert_eq!(
            f.learn(A, 1, t0 + Duration::from_secs(10)),
            Learned::Refreshed
        );
        assert_eq!(
            f.learn(A, 1, t0 + Duration::from_secs(80)),
            Learned::Reannounce
        );
        assert_eq!(
            f.learn(A, 1, t0 + Duration::from_secs(81)),
            Learned::Refreshed
        );
    }

    #[test]
    fn entries_age_out() {
        let t0 = Instant::now();
        let mut f = Fdb::new(10, Duration::from_secs(300));
        f.learn(A, 1, t0);
        f.add_static(B, 3, t0);
        let later = t0 + Duration::from_secs(301);
        assert_eq!(f.lookup(&A, later), None, "expired entries are not used");
        assert_eq!(f.lookup(&B, later), Some(3), "static entries never age");
        assert_eq!(f.expire(later), 1);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn bounded_under_mac_flood() {
        let now = Instant::now();
        let mut f = Fdb::new(100, Duration::from_secs(300));
        let mut full = 0;
        for i in 0..10_000u32 {
            let b = i.to_be_bytes();
            if f.learn([2, 0, b[0], b[1], b[2], b[3]], 1, now) == Learned::Full {
                full += 1;
            }
        }
        assert_eq!(f.len(), 100);
        assert_eq!(full, 9_900);
        // Known addresses still move and refresh at the bound.
        assert_eq!(f.learn([2, 0, 0, 0, 0, 0], 7, now), Learned::Changed);
    }

    /// Remote endpoints (static, behind the tunnel) may outnumber `--fdb-max`: they
    /// take no room from learning, in the table or on their port.
    #[test]
    fn static_entries_do_not_count_against_the_bounds() {
        let now = Instant::now();
        let mut f = Fdb::new(4, Duration::from_secs(300)).with_port_limit(2);
        for i in 0..10u8 {
            f.add_static([2, 0, 0, 0, 1, i], crate::TUNNEL_PORT, now);
        }
        assert_eq!((f.len(), f.learned_len()), (10, 0));
        assert_eq!(f.learn(A, 1, now), Learned::Changed, "still learns");
        assert_eq!(f.learn(B, 1, now), Learned::Changed);
        assert_eq!(
            f.learn([2, 0, 0, 0, 0, 3], 1, now),
            Learned::Full,
            "port 1's share"
        );
        assert_eq!(
            f.learn([2, 0, 0, 0, 2, 1], crate::TUNNEL_PORT, now),
            Learned::Changed,
            "statics on the tunnel port leave it its share"
        );
        f.install([2, 0, 0, 0, 2, 2], 2, now);
        assert_eq!(f.learned_len(), 4, "installed from another worker: counted");
        assert_eq!(
            f.learn([2, 0, 0, 0, 2, 3], 3, now),
            Learned::Full,
            "the table's bound"
        );
        // A static over a learned entry gives its room back, on its port too.
        f.add_static(A, crate::TUNNEL_PORT, now);
        assert_eq!(f.learned_len(), 3);
        assert_eq!(f.lookup(&A, now), Some(crate::TUNNEL_PORT));
        assert_eq!(f.learn([2, 0, 0, 0, 0, 4], 1, now), Learned::Changed);
        // Forgetting a port with statics on it counts only what it learned.
        f.forget_port(crate::TUNNEL_PORT);
        assert_eq!((f.len(), f.learned_len()), (3, 3));
    }

    #[test]
    fn remove_static_leaves_learned_entries() {
        let now = Instant::now();
        let mut f = Fdb::new(2, Duration::from_secs(300));
        f.learn(A, 1, now);
        f.add_static(B, crate::TUNNEL_PORT, now);
        assert!(!f.remove_static(&A), "learned: not the control plane's");
        assert_eq!(f.lookup(&A, now), Some(1));
        assert!(f.remove_static(&B));
        assert!(!f.remove_static(&B), "gone already");
        assert_eq!(f.lookup(&B, now), None);
        assert_eq!((f.len(), f.learned_len()), (1, 1));
        assert_eq!(f.learn(B, 2, now), Learned::Changed, "B is learned again");
        assert_eq!(
            f.expire(now + Duration::from_secs(301)),
            2,
            "and ages like the rest"
        );
        assert_eq!(f.learned_len(), 0);
    }

    #[test]
    fn static_entries_are_not_overridden_and_ports_are_forgotten() {
        let now = Instant::now();
        let mut f = Fdb::new(10, Duration::from_secs(300));
        f.add_static(A, 1, now);
        assert_eq!(f.learn(A, 2, now), Learned::Static);
        f.learn(B, 2, now);
        f.forget_port(2);
        assert_eq!(f.lookup(&B, now), None);
        assert_eq!(f.entries(now).len(), 1);
    }
}
