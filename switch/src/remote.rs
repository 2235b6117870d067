//! Remote endpoints of overlay networks: containers on other hosts, as the control plane
//! learns them from the cluster store (MAC, IPv4 and IPv6 addresses, the VTEP of their
//! host). Each worker's replica of the network holds them as static FDB entries behind
//! the tunnel and as an ARP and NDP proxy (address -> MAC), so known traffic never
//! floods; the router's
//! VTEP holds them as static tunnel-table entries (`router/overlay.rs`). This is what
//! Docker's overlay driver programs into the kernel (static FDB entries, neighbour
//! entries with proxy ARP).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use crate::fdb::Mac;
use crate::network::Network;
use crate::TUNNEL_PORT;

/// A container of an overlay network on another host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteEndpoint {
    pub mac: Mac,
    pub ip: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    /// The VTEP (tunnel address) of its host.
    pub vtep: Ipv4Addr,
}

/// One change to a network's remote endpoints ([`crate::Engine::update_remote`]).
/// Removals are applied first, then upserts. An upsert of a known MAC replaces what
/// was known of it (its address, its VTEP). A removal withdraws the MAC only if it is
/// known behind the removal's VTEP: a removal that arrives after the endpoint was
/// upserted behind another VTEP (it moved) leaves it be.
#[derive(Clone, Debug, Default)]
pub struct RemoteUpdate {
    pub upsert: Vec<RemoteEndpoint>,
    pub remove: Vec<RemoteEndpoint>,
}

/// A network's remote endpoints on one worker: by MAC, and the proxies' maps.
#[derive(Debug, Default)]
pub(crate) struct RemoteEndpoints {
    by_mac: HashMap<Mac, RemoteEndpoint, ahash::RandomState>,
    proxy: Proxy<Ipv4Addr>,
    proxy6: Proxy<Ipv6Addr>,
}

/// Address -> MAC, one family.
#[derive(Debug)]
struct Proxy<A>(HashMap<A, Mac, ahash::RandomState>);

impl<A> Default for Proxy<A> {
    fn default() -> Self {
        Proxy(HashMap::default())
    }
}

impl<A: Hash + Eq + Copy> Proxy<A> {
    /// `new` answers with `mac` from now on, `old` (its address before) no longer does.
    fn replace(&mut self, old: Option<A>, new: Option<A>, mac: Mac) {
        if let Some(o) = old.filter(|o| Some(*o) != new) {
            self.remove(o, mac);
        }
        // Another MAC with this address (a stale endpoint): the latest wins.
        if let Some(n) = new {
            self.0.insert(n, mac);
        }
    }

    /// `ip` no longer answers with `mac` (another MAC that took the address since
    /// keeps it).
    fn remove(&mut self, ip: A, mac: Mac) {
        if self.0.get(&ip) == Some(&mac) {
            self.0.remove(&ip);
        }
    }
}

impl RemoteEndpoints {
    /// Whether none has an IPv4 address: the pipeline then never looks for an ARP
    /// proxy entry.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.proxy.0.is_empty()
    }

    /// Whether none has an IPv6 address (no NDP proxy lookups then).
    #[inline]
    pub fn is_empty6(&self) -> bool {
        self.proxy6.0.is_empty()
    }

    /// The MAC the ARP proxy answers with for `ip`.
    #[inline]
    pub fn proxy(&self, ip: Ipv4Addr) -> Option<Mac> {
        self.proxy.0.get(&ip).copied()
    }

    /// The MAC the NDP proxy answers with for `ip`.
    #[inline]
    pub fn proxy6(&self, ip: Ipv6Addr) -> Option<Mac> {
        self.proxy6.0.get(&ip).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &RemoteEndpoint> {
        self.by_mac.values()
    }

    /// Record `ep`, replacing what was known of its MAC (old addresses leave the
    /// proxies if they changed); returns the endpoint replaced.
    fn upsert(&mut self, ep: RemoteEndpoint) -> Option<RemoteEndpoint> {
        let old = self.by_mac.insert(ep.mac, ep);
        self.proxy.replace(old.and_then(|o| o.ip), ep.ip, ep.mac);
        self.proxy6.replace(old.and_then(|o| o.ip6), ep.ip6, ep.mac);
        old
    }

    /// Forget `ep.mac` if it is known behind `ep.vtep`; returns what was known.
    fn remove(&mut self, ep: &RemoteEndpoint) -> Option<RemoteEndpoint> {
        match self.by_mac.get(&ep.mac) {
            Some(known) if known.vtep == ep.vtep => {
                let known = *known;
                self.by_mac.remove(&ep.mac);
                self.proxy.replace(known.ip, None, known.mac);
                self.proxy6.replace(known.ip6, None, known.mac);
                Some(known)
            }
            _ => None,
        }
    }
}

impl Network {
    /// Apply `update` to this replica: static FDB entries behind the tunnel and the ARP
    /// proxy. Linear in the update; nothing is rebuilt per entry. An upserted MAC that
    /// was learned on a local port is remote from now on.
    pub(crate) fn update_remote(&mut self, update: &RemoteUpdate, now: Instant) {
        for ep in &update.remove {
            if self.remote.remove(ep).is_some() {
                self.fdb.remove_static(&ep.mac);
            }
        }
        for ep in &update.upsert {
            self.remote.upsert(*ep);
            self.fdb.add_static(ep.mac, TUNNEL_PORT, now);
        }
    }

    /// Forget every remote endpoint (the network is no longer an overlay).
    pub(crate) fn clear_remote(&mut self) {
        for ep in std::mem::take(&mut self.remote).by_mac.values() {
            self.fdb.remove_static(&ep.mac);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: Mac = [2, 0, 0, 0, 1, 1];
    const M2: Mac = [2, 0, 0, 0, 1, 2];
    const IP1: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
    const IP2: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
    const V1: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
    const V2: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);

    fn ep(mac: Mac, ip: Ipv4Addr, vtep: Ipv4Addr) -> RemoteEndpoint {
        RemoteEndpoint {
            mac,
            ip: Some(ip),
            ip6: None,
            vtep,
        }
    }

    #[test]
    fn upserts_replace_and_removals_need_the_vtep() {
        let mut r = RemoteEndpoints::default();
        assert!(r.is_empty());
        assert_eq!(r.upsert(ep(M1, IP1, V1)), None);
        assert_eq!(r.proxy(IP1), Some(M1));
        // The endpoint got another address: the old one no longer answers.
        r.upsert(ep(M1, IP2, V1));
        assert_eq!((r.proxy(IP1), r.proxy(IP2)), (None, Some(M1)));
        // It moved to another host: a late removal of the old location changes nothing.
        r.upsert(ep(M1, IP2, V2));
        assert_eq!(r.remove(&ep(M1, IP2, V1)), None);
        assert_eq!(r.proxy(IP2), Some(M1));
        // Another MAC takes the address; M1's removal leaves it to M2.
        r.upsert(ep(M2, IP2, V1));
        assert_eq!(r.remove(&ep(M1, IP2, V2)), Some(ep(M1, IP2, V2)));
        assert_eq!(r.proxy(IP2), Some(M2));
        assert_eq!(r.iter().count(), 1);
    }

    #[test]
    fn each_family_is_proxied_for_the_addresses_an_endpoint_has() {
        let a6: Ipv6Addr = "fd00:1::5".parse().unwrap();
        let b6: Ipv6Addr = "fd00:1::6".parse().unwrap();
        let mut r = RemoteEndpoints::default();
        // IPv6-only: no ARP proxy entry, an NDP one.
        let only6 = RemoteEndpoint {
            ip: None,
            ip6: Some(a6),
            ..ep(M1, IP1, V1)
        };
        r.upsert(only6);
        assert!(r.is_empty() && !r.is_empty6());
        assert_eq!((r.proxy(IP1), r.proxy6(a6)), (None, Some(M1)));
        // Dual-stack now, with another IPv6 address: the old one no longer answers.
        r.upsert(RemoteEndpoint {
            ip: Some(IP1),
            ip6: Some(b6),
            ..only6
        });
        assert_eq!(
            (r.proxy(IP1), r.proxy6(a6), r.proxy6(b6)),
            (Some(M1), None, Some(M1))
        );
        assert!(r.remove(&only6).is_some());
        assert!(r.is_empty() && r.is_empty6());
    }
}
