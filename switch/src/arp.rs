//! The router's neighbour caches for next hops on the uplink, ARP's for IPv4 and
//! neighbour discovery's for IPv6 (one generic table): entries expire, a frame waiting
//! for a resolution is held briefly (a few per next hop), and requests (or
//! solicitations) are rate-limited per address so a burst toward an unresolved hop
//! sends one, not thirty.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::fdb::Mac;

/// How long a learned neighbour is trusted.
pub const REACHABLE: Duration = Duration::from_secs(60);
/// Minimum spacing of requests for one address.
pub const RETRY: Duration = Duration::from_millis(500);
/// Held frames are dropped when unresolved this long.
pub const HOLD: Duration = Duration::from_secs(3);
/// Frames held per unresolved address (Linux keeps a few as well: unres_qlen).
pub const HOLD_FRAMES: usize = 8;
/// Neighbours tracked at most (a scan of the uplink subnet must not grow it forever).
pub const MAX_ENTRIES: usize = 4096;

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArpCounters {
    pub requests_sent: u64,
    pub replies_learned: u64,
    pub held: u64,
    /// Frames dropped: hold queue full, or never resolved.
    pub hold_drops: u64,
    pub table_full: u64,
}

enum State {
    Resolved {
        mac: Mac,
        until: Instant,
    },
    Pending {
        since: Instant,
        last_request: Instant,
        held: Vec<Vec<u8>>,
    },
}

/// What to do with a frame that needs `ip`'s MAC.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Known(Mac),
    /// Held; send an ARP request now if `request` is true.
    Held {
        request: bool,
    },
    Dropped,
}

/// Next hops by address (`A`: an IPv4 or IPv6 address).
pub struct Neighbors<A> {
    entries: HashMap<A, State>,
    pub counters: ArpCounters,
}

/// The IPv4 neighbours, resolved by ARP.
pub type ArpCache = Neighbors<Ipv4Addr>;
/// The IPv6 neighbours, resolved by neighbour solicitations.
pub type NdpCache = Neighbors<std::net::Ipv6Addr>;

impl<A> Default for Neighbors<A> {
    fn default() -> Self {
        Neighbors {
            entries: HashMap::new(),
            counters: ArpCounters::default(),
        }
    }
}

impl<A: Copy + Eq + Hash + Ord> Neighbors<A> {
    /// The MAC for `ip`, or hold `frame` (copied) until it resolves.
    pub fn resolve(&mut self, ip: A, frame: &[u8], now: Instant) -> Lookup {
        if !self.entries.contains_key(&ip) && self.entries.len() >= MAX_ENTRIES {
            self.expire(now);
            if self.entries.len() >= MAX_ENTRIES {
                self.counters.table_full += 1;
                self.counters.hold_drops += 1;
                return Lookup::Dropped;
            }
        }
        let st = self.entries.entry(ip).or_insert(State::Pending {
            since: now,
            last_request: now,
            held: Vec::new(),
        });
        match st {
            State::Resolved { mac, until } if *until > now => Lookup::Known(*mac),
            State::Resolved { .. } => {
                *st = State::Pending {
                    since: now,
                    last_request: now,
                    held: vec![frame.to_vec()],
                };
                self.counters.held += 1;
                self.counters.requests_sent += 1;
                Lookup::Held { request: true }
            }
            State::Pending {
                since,
                last_request,
                held,
            } => {
                let first = held.is_empty() && *since == now && *last_request == now;
                if held.len() >= HOLD_FRAMES {
                    self.counters.hold_drops += 1;
                    return Lookup::Dropped;
                }
                held.push(frame.to_vec());
                self.counters.held += 1;
                let request = first || now.saturating_duration_since(*last_request) >= RETRY;
                if request {
                    *last_request = now;
                    self.counters.requests_sent += 1;
                }
                Lookup::Held { request }
            }
        }
    }

    /// The MAC for `ip` if it is resolved, without asking or holding anything.
    pub fn known(&self, ip: A, now: Instant) -> Option<Mac> {
        match self.entries.get(&ip) {
            Some(State::Resolved { mac, until }) if *until > now => Some(*mac),
            _ => None,
        }
    }

    /// A neighbour announced itself (reply, or a request from it): cache it and return
    /// the frames that were waiting for it.
    pub fn learn(&mut self, ip: A, mac: Mac, now: Instant) -> Vec<Vec<u8>> {
        let prev = self.entries.insert(
            ip,
            State::Resolved {
                mac,
                until: now + REACHABLE,
            },
        );
        self.counters.replies_learned += 1;
        match prev {
            Some(State::Pending { held, .. }) => held,
            _ => Vec::new(),
        }
    }

    /// Only refresh an address we already track (gratuitous traffic must not fill us).
    pub fn refresh(&mut self, ip: A, mac: Mac, now: Instant) -> Vec<Vec<u8>> {
        if self.entries.contains_key(&ip) {
            self.learn(ip, mac, now)
        } else {
            Vec::new()
        }
    }

    /// Drop held frames that waited too long and forget stale neighbours; returns the
    /// addresses still pending that are due another request.
    pub fn expire(&mut self, now: Instant) -> Vec<A> {
        let mut retry = Vec::new();
        let mut dropped = 0u64;
        self.entries.retain(|ip, st| match st {
            State::Resolved { until, .. } => *until + REACHABLE > now,
            State::Pending {
                since,
                last_request,
                held,
            } => {
                if now.saturating_duration_since(*since) >= HOLD {
                    dropped += held.len() as u64;
                    false
                } else {
                    if now.saturating_duration_since(*last_request) >= RETRY {
                        *last_request = now;
                        retry.push(*ip);
                    }
                    true
                }
            }
        });
        self.counters.hold_drops += dropped;
        self.counters.requests_sent += retry.len() as u64;
        retry
    }

    pub fn entries(&self, now: Instant) -> Vec<(A, Option<Mac>)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .map(|(ip, st)| match st {
                State::Resolved { mac, until } if *until > now => (*ip, Some(*mac)),
                _ => (*ip, None),
            })
            .collect();
        v.sort();
        v
    }
}

/// Write an ARP request for `target` from (`mac`, `ip`) into `out`, which holds at
/// least a minimum frame; returns its length.
pub fn request(mac: Mac, ip: Ipv4Addr, target: Ipv4Addr, out: &mut [u8]) -> usize {
    wire::arp::Repr {
        op: wire::arp::Operation::Request,
        sender_mac: mac,
        sender_ip: ip,
        target_mac: [0; 6],
        target_ip: target,
    }
    .emit_frame(wire::ethernet::BROADCAST, out)
    .expect("room for a minimum frame")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const M: Mac = [2, 0, 0, 0, 0, 1];

    #[test]
    fn holds_requests_once_then_releases_on_reply() {
        let t = Instant::now();
        let mut c = ArpCache::default();
        assert_eq!(c.resolve(GW, b"one", t), Lookup::Held { request: true });
        assert_eq!(
            c.resolve(GW, b"two", t),
            Lookup::Held { request: false },
            "one request per burst"
        );
        assert_eq!(
            c.resolve(GW, b"three", t + RETRY),
            Lookup::Held { request: true },
            "retried after RETRY"
        );
        let held = c.learn(GW, M, t + RETRY);
        assert_eq!(
            held,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()],
            "in order"
        );
        assert_eq!(c.resolve(GW, b"x", t + RETRY), Lookup::Known(M));
        assert_eq!(c.counters.requests_sent, 2);
    }

    #[test]
    fn bounded_hold_and_expiry() {
        let t = Instant::now();
        let mut c = ArpCache::default();
        for _ in 0..HOLD_FRAMES {
            assert!(matches!(c.resolve(GW, b"f", t), Lookup::Held { .. }));
        }
        assert_eq!(c.resolve(GW, b"f", t), Lookup::Dropped);
        assert!(c.expire(t + HOLD).is_empty());
        assert_eq!(
            c.counters.hold_drops,
            1 + HOLD_FRAMES as u64,
            "unresolved frames dropped after HOLD"
        );
        c.learn(GW, M, t);
        assert_eq!(
            c.resolve(GW, b"f", t + REACHABLE),
            Lookup::Held { request: true },
            "stale entries re-resolve"
        );
    }

    #[test]
    fn refresh_only_tracks_known_neighbours() {
        let t = Instant::now();
        let mut c = ArpCache::default();
        c.refresh(GW, M, t);
        assert!(c.entries(t).is_empty());
        c.learn(GW, M, t);
        assert_eq!(c.entries(t), vec![(GW, Some(M))]);
    }

    #[test]
    fn request_bytes() {
        let mut out = [0u8; 64];
        let n = request(M, Ipv4Addr::new(198, 51, 100, 2), GW, &mut out);
        assert_eq!(n, 60);
        assert_eq!(
            &out[..14],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8, 6]
        );
        assert_eq!(&out[20..22], &[0, 1], "request");
        assert_eq!(&out[28..32], &[198, 51, 100, 2]);
        assert_eq!(&out[38..42], &[198, 51, 100, 1]);
    }
}
