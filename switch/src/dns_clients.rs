//! Where the embedded resolver's answers go back: each client's MAC and the port it
//! asked through, by address, one bounded table per network. A table that is full
//! forgets what has not asked for a while, then its oldest client: never the whole
//! table, and never another network's clients, so a sandbox sending from many
//! addresses (port security off) can push out only its own network's quiet clients.
//! IPv4 and IPv6 clients (a dual-stack network's) share the table and its bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::fdb::Mac;
use crate::PortId;

/// Clients remembered per network.
pub(crate) const MAX_PER_NETWORK: usize = 1024;
/// A client that has not asked for this long is the first to go: longer than any
/// answer takes (the resolver's upstream timeouts, one after another).
const QUIET: Duration = Duration::from_secs(10);

/// Where one client's answers go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub mac: Mac,
    pub port: PortId,
}

/// One network's clients.
#[derive(Debug)]
pub(crate) struct NetClients {
    map: HashMap<IpAddr, (Seen, Instant)>,
    cap: usize,
}

impl Default for NetClients {
    fn default() -> Self {
        NetClients::with_capacity(MAX_PER_NETWORK)
    }
}

impl NetClients {
    pub fn with_capacity(cap: usize) -> NetClients {
        NetClients {
            map: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// `ip` asked just now, from `seen`; how many clients were forgotten for it.
    pub fn remember(&mut self, ip: impl Into<IpAddr>, seen: Seen, now: Instant) -> u64 {
        let ip = ip.into();
        let mut evicted = 0;
        if self.map.len() >= self.cap && !self.map.contains_key(&ip) {
            let before = self.map.len();
            self.map
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < QUIET);
            if self.map.len() >= self.cap {
                let oldest = self
                    .map
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.map.remove(&k);
                }
            }
            evicted = (before - self.map.len()) as u64;
        }
        self.map.insert(ip, (seen, now));
        evicted
    }

    pub fn get(&self, ip: impl Into<IpAddr>) -> Option<Seen> {
        self.map.get(&ip.into()).map(|(s, _)| *s)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn seen(i: u32) -> Seen {
        Seen {
            mac: [2, 0, 0, 0, 0, i as u8],
            port: i,
        }
    }

    #[test]
    fn a_full_table_forgets_the_quiet_then_the_oldest_never_everyone() {
        let t0 = Instant::now();
        let mut c = NetClients::with_capacity(4);
        let ip = |i: u32| Ipv4Addr::from(0x0a00_0000 + i);
        let mut evicted = 0;
        for i in 0..4 {
            evicted += c.remember(ip(i), seen(i), t0 + Duration::from_millis(u64::from(i)));
        }
        c.remember(ip(0), seen(9), t0 + Duration::from_millis(5)); // asks again
        assert_eq!(evicted, 0);
        assert_eq!(c.remember(ip(4), seen(4), t0 + Duration::from_millis(6)), 1);
        assert_eq!(c.len(), 4);
        assert_eq!(c.get(ip(1)), None, "the oldest went");
        assert_eq!(
            c.get(ip(0)),
            Some(seen(9)),
            "a client that asked again stays"
        );
        assert!(c.get(ip(2)).is_some() && c.get(ip(3)).is_some() && c.get(ip(4)).is_some());
        // Much later, the quiet ones all go and the newcomer is the only one.
        assert_eq!(
            c.remember(ip(5), seen(5), t0 + QUIET + Duration::from_secs(1)),
            4
        );
        assert_eq!(c.len(), 1);
        // A flood of new addresses keeps the table at its bound.
        let t1 = t0 + QUIET * 3;
        for i in 100..10_000 {
            c.remember(ip(i), seen(i), t1);
            assert!(c.len() <= 4);
        }
    }

    #[test]
    fn ipv6_clients_are_told_apart_and_share_the_bound() {
        let t0 = Instant::now();
        let mut c = NetClients::with_capacity(2);
        let v4 = Ipv4Addr::new(172, 18, 0, 3);
        // The same last 32 bits as v4: a different client.
        let v6: Ipv6Addr = "::ffff:172.18.0.3".parse().expect("addr");
        let other: Ipv6Addr = "2001:db8:1::3".parse().expect("addr");
        c.remember(v4, seen(1), t0);
        c.remember(v6, seen(2), t0 + Duration::from_millis(1));
        assert_eq!((c.get(v4), c.get(v6)), (Some(seen(1)), Some(seen(2))));
        assert_eq!(c.remember(other, seen(3), t0 + Duration::from_millis(2)), 1);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(v4), None, "the oldest went, whatever its family");
        assert_eq!(c.get(other), Some(seen(3)));
    }
}
