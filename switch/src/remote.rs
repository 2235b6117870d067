//! Remote endpoints of overlay networks: containers on other hosts, as the control plane
//! learns them from the cluster store (MAC, IPv4 address, the VTEP of their host). Each
//! worker's replica of the network holds them as static FDB entries behind the tunnel
//! and as an ARP proxy (address -> MAC), so known traffic never floods; the router's
//! VTEP holds them as static tunnel-table entries (`router/overlay.rs`). This is what
//! Docker's overlay driver programs into the kernel (static FDB entries, neighbour
//! entries with proxy ARP).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Instant;

use crate::fdb::Mac;
use crate::network::Network;
use crate::TUNNEL_PORT;

/// A container of an overlay network on another host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteEndpoint {
    pub mac: Mac,
    pub ip: Ipv4Addr,
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

/// A network's remote endpoints on one worker: by MAC, and the ARP proxy's map.
#[derive(Debug, Default)]
pub(crate) struct RemoteEndpoints {
    by_mac: HashMap<Mac, RemoteEndpoint, ahash::RandomState>,
    proxy: HashMap<Ipv4Addr, Mac, ahash::RandomState>,
}

impl RemoteEndpoints {
    /// Whether there are none: the pipeline then never looks for an ARP proxy entry.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.proxy.is_empty()
    }

    /// The MAC the ARP proxy answers with for `ip`.
    #[inline]
    pub fn proxy(&self, ip: Ipv4Addr) -> Option<Mac> {
        self.proxy.get(&ip).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &RemoteEndpoint> {
        self.by_mac.values()
    }

    /// Record `ep`, replacing what was known of its MAC (the old address leaves the
    /// proxy if it changed); returns the endpoint replaced.
    fn upsert(&mut self, ep: RemoteEndpoint) -> Option<RemoteEndpoint> {
        let old = self.by_mac.insert(ep.mac, ep);
        if let Some(o) = old.filter(|o| o.ip != ep.ip) {
            self.unproxy(o.ip, o.mac);
        }
        // Another MAC with this address (a stale endpoint): the latest wins.
        self.proxy.insert(ep.ip, ep.mac);
        old
    }

    /// Forget `ep.mac` if it is known behind `ep.vtep`; returns what was known.
    fn remove(&mut self, ep: &RemoteEndpoint) -> Option<RemoteEndpoint> {
        match self.by_mac.get(&ep.mac) {
            Some(known) if known.vtep == ep.vtep => {
                let known = *known;
                self.by_mac.remove(&ep.mac);
                self.unproxy(known.ip, known.mac);
                Some(known)
            }
            _ => None,
        }
    }

    /// `ip` no longer answers with `mac` (another MAC that took the address since
    /// keeps it).
    fn unproxy(&mut self, ip: Ipv4Addr, mac: Mac) {
        if self.proxy.get(&ip) == Some(&mac) {
            self.proxy.remove(&ip);
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
        RemoteEndpoint { mac, ip, vtep }
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
}
