//! The controller's side of the cluster store: global networks adopted from it and
//! reconciled to it, addresses claimed in it, this host's endpoints published to it,
//! and the other hosts' endpoints programmed into the data plane (static FDB entries
//! behind their VTEP, the ARP proxy, the members a network floods to, DNS names).
//! Changes arrive in batches (one per watch response, or the difference after a
//! reconnect); each batch touches the data plane once per network it changed, with
//! only what changed.

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::{Change, Cluster, EndpointRecord, Event, NetworkRecord, NodeRecord};
use crate::cluster::{Op, Reply, StoreError};

use super::*;

/// What the controller knows of the store.
pub struct ClusterView {
    pub client: Cluster,
    /// The store's global networks.
    pub networks: BTreeMap<String, NetworkRecord>,
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Other hosts' endpoints, per network id, by (node, endpoint id).
    pub remote: HashMap<String, BTreeMap<(String, String), EndpointRecord>>,
    /// What the data plane was given, per network id: MAC -> endpoint.
    programmed: HashMap<String, HashMap<[u8; 6], switch::RemoteEndpoint>>,
    /// Global networks this host could not take, and why.
    pub refused: BTreeMap<String, String>,
    /// Networks this host removed from the store, until the watch says so: their own
    /// put, still queued, must not bring them back.
    removed: BTreeSet<String>,
    /// Local endpoints the last republish could not publish (their address is another
    /// host's now: this host was away longer than its lease), shown by `cluster`.
    pub unpublished: Vec<api::Unpublished>,
}

impl ClusterView {
    pub fn new(client: Cluster) -> ClusterView {
        ClusterView {
            client,
            networks: BTreeMap::new(),
            nodes: BTreeMap::new(),
            remote: HashMap::new(),
            programmed: HashMap::new(),
            refused: BTreeMap::new(),
            removed: BTreeSet::new(),
            unpublished: Vec::new(),
        }
    }

    fn node(&self) -> &str {
        &self.client.settings().node
    }
}

/// A store error as the user sees it.
pub(super) fn store_error(e: StoreError, what: &str) -> ApiError {
    match e {
        StoreError::Unreachable(..) => ApiError::unavailable(format!(
            "{what}: {e}; global networks cannot change until it is back (local networks work as before)"
        )),
        StoreError::Changed => {
            ApiError::conflict(format!("{what}: the cluster store changed meanwhile; try again"))
        }
        StoreError::Taken(ip, by) => ApiError::conflict(format!("{what}: {ip} is held by {by}")),
        StoreError::InUse(nodes) => ApiError::in_use(format!(
            "{what}: it has active endpoints on hosts {}",
            nodes.join(", ")
        )),
        StoreError::Failed(m) => ApiError::invalid(format!("{what}: {m}")),
    }
}

impl Controller {
    /// The fd that is readable when the cluster store has news.
    pub fn cluster_fd(&self) -> Option<std::os::fd::RawFd> {
        self.cluster.as_ref().map(|c| c.client.wake_fd())
    }

    /// Apply what the store's agent reported.
    pub fn cluster_events(&mut self) {
        let Some(events) = self.cluster.as_ref().map(|c| c.client.drain()) else {
            return;
        };
        let mut dirty = BTreeSet::new();
        let mut connected = false;
        for ev in events {
            match ev {
                Event::Changes(changes) => {
                    // The store's networks first, all of them: whether a new one
                    // clashes with a saved global network depends on whether the store
                    // still has that one.
                    if let Some(cv) = self.cluster.as_mut() {
                        for c in &changes {
                            match c {
                                Change::NetworkPut(r) => {
                                    cv.networks.insert(r.id.clone(), r.clone());
                                }
                                Change::NetworkDel(id) => {
                                    cv.networks.remove(id);
                                }
                                _ => {}
                            }
                        }
                    }
                    for c in changes {
                        self.apply_change(c, &mut dirty);
                    }
                }
                Event::Connected => connected = true,
            }
        }
        for net in dirty {
            self.program_remote(&net);
        }
        if connected {
            self.reconcile();
        }
    }

    fn apply_change(&mut self, change: Change, dirty: &mut BTreeSet<String>) {
        let Some(cv) = self.cluster.as_mut() else {
            return;
        };
        match change {
            Change::NodePut(n) => {
                cv.nodes.insert(n.name.clone(), n);
            }
            Change::NodeDel(n) => {
                cv.nodes.remove(&n);
            }
            Change::NetworkPut(rec) => {
                if cv.removed.contains(&rec.id) {
                    return;
                }
                self.adopt_network(&rec);
                dirty.insert(rec.id);
            }
            Change::NetworkDel(id) => {
                cv.remote.remove(&id);
                cv.refused.remove(&id);
                cv.removed.remove(&id);
                self.drop_global_network(&id, "it was removed from the cluster store");
                self.adopt_refused();
            }
            Change::EndpointPut(e) => {
                if e.node == cv.node() {
                    return;
                }
                dirty.insert(e.network.clone());
                cv.remote
                    .entry(e.network.clone())
                    .or_default()
                    .insert((e.node.clone(), e.id.clone()), e);
            }
            Change::EndpointDel { network, node, id } => {
                if let Some(m) = cv.remote.get_mut(&network) {
                    if m.remove(&(node, id)).is_some() {
                        dirty.insert(network);
                    }
                }
            }
        }
    }

    /// A global network from the store: take it here unless it clashes with a local
    /// network (name, subnet, VNI), which is refused, logged and shown by `cluster`.
    fn adopt_network(&mut self, rec: &NetworkRecord) {
        if self.state.networks.contains_key(&rec.id) {
            return;
        }
        // Saved global networks the store no longer has (removed, perhaps re-created
        // under the same name, while this host was away) go before anything is
        // compared with them.
        let stale: Vec<String> = match self.cluster.as_ref() {
            Some(cv) => self
                .state
                .networks
                .values()
                .filter(|n| n.global && !cv.networks.contains_key(&n.id))
                .map(|n| n.id.clone())
                .collect(),
            None => Vec::new(),
        };
        for id in stale {
            self.drop_global_network(&id, "the cluster store does not have it");
        }
        if let Some(cv) = self.cluster.as_mut() {
            cv.refused.remove(&rec.id);
        }
        let clash = self.state.networks.values().find_map(|n| {
            if n.name == rec.name {
                return Some(format!("a local network is named {}", n.name));
            }
            if let (Some(p), Some(s)) = (n.pool.as_ref(), rec.subnet) {
                if ipam::overlaps(&p.subnet, &s) {
                    return Some(format!(
                        "its subnet {s} overlaps {} of local network {}",
                        p.subnet, n.name
                    ));
                }
            }
            if let (Some(p), Some(s)) = (n.pool6.as_ref(), rec.subnet6) {
                if ipam6::overlaps(&p.subnet, &s) {
                    return Some(format!(
                        "its IPv6 subnet {s} overlaps {} of local network {}",
                        p.subnet, n.name
                    ));
                }
            }
            (driver::overlay::vni_of(n) == Some(rec.vni)).then(|| {
                format!(
                    "its VXLAN id {} is used by local network {}",
                    rec.vni, n.name
                )
            })
        });
        if let Some(why) = clash {
            tracing::error!(network = %rec.name, id = %rec.id, why, "global network refused on this host");
            if let Some(cv) = self.cluster.as_mut() {
                cv.refused.insert(rec.id.clone(), why);
            }
            return;
        }
        let net = match self.network_of_record(rec) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(network = %rec.name, error = %e.message, "global network refused on this host");
                if let Some(cv) = self.cluster.as_mut() {
                    cv.refused.insert(rec.id.clone(), e.message);
                }
                return;
            }
        };
        if let Err(e) = self.with_driver(net.driver, |d, ctx| d.create_network(ctx, &net)) {
            tracing::error!(network = %rec.name, error = %chain(&e), "cannot create a global network here");
            return;
        }
        self.state.networks.insert(net.id.clone(), net);
        if let Err(e) = self.save() {
            tracing::error!(error = %e.message, "cannot save state");
        }
        self.sync_host_routes();
        tracing::info!(network = %rec.name, subnets = %rec.subnets_text(), vni = rec.vni, "global network taken from the cluster store");
    }

    /// Take the global networks refused for a clash again (a local network went).
    pub(super) fn adopt_refused(&mut self) {
        let Some(cv) = self.cluster.as_ref() else {
            return;
        };
        let again: Vec<NetworkRecord> = cv
            .refused
            .keys()
            .filter_map(|id| cv.networks.get(id).cloned())
            .collect();
        for rec in again {
            self.adopt_network(&rec);
            if self.state.networks.contains_key(&rec.id) {
                self.program_remote(&rec.id);
            }
        }
    }

    /// The local model of a global network.
    pub(super) fn network_of_record(&self, rec: &NetworkRecord) -> ApiResult<Network> {
        let pool = rec
            .subnet
            .map(|s| Pool::new(s, rec.gateway, rec.ip_range))
            .transpose()?;
        let pool6 = rec
            .subnet6
            .map(|s| Pool6::new(s, rec.gateway6, rec.ip_range6))
            .transpose()?;
        let mut options = rec.options.clone();
        options.insert(driver::overlay::OPT_VNI.into(), rec.vni.to_string());
        let num = self.next_network_num();
        Ok(Network {
            id: rec.id.clone(),
            name: rec.name.clone(),
            driver: DriverKind::Overlay,
            pool,
            pool6,
            internal: rec.internal,
            attachable: rec.attachable,
            options,
            labels: rec.labels.clone(),
            created: rec.created.clone(),
            num,
            predefined: false,
            global: true,
            members: Vec::new(),
        })
    }

    /// A global network the store no longer has goes here too, its local endpoints
    /// with it (their sandboxes stay).
    fn drop_global_network(&mut self, id: &str, why: &str) {
        let Some(net) = self.state.networks.get(id).filter(|n| n.global).cloned() else {
            return;
        };
        let eps: Vec<String> = self
            .endpoints_of_network(id)
            .iter()
            .map(|e| e.id.clone())
            .collect();
        for ep in eps {
            tracing::warn!(network = %net.name, endpoint = %ep, why, "disconnecting an endpoint of a global network that is gone");
            if let Err(e) = self.disconnect_endpoint(&ep) {
                tracing::error!(error = %e.message, "cannot disconnect");
            }
        }
        if let Some(cv) = self.cluster.as_mut() {
            cv.programmed.remove(id);
        }
        if let Err(e) = self.with_driver(net.driver, |d, ctx| d.delete_network(ctx, &net)) {
            tracing::error!(network = %net.name, error = %chain(&e), "cannot remove a global network");
        }
        self.state.networks.remove(id);
        if let Err(e) = self.save() {
            tracing::error!(error = %e.message, "cannot save state");
        }
        self.sync_host_routes();
        tracing::info!(network = %net.name, why, "global network removed");
    }

    /// Give the data plane what changed of `net_id`'s remote endpoints: static entries
    /// and ARP proxy (added and removed ones only), the members, the addresses IPAM
    /// must skip, the names.
    fn program_remote(&mut self, net_id: &str) {
        let Some(net) = self
            .state
            .networks
            .get(net_id)
            .filter(|n| n.global)
            .cloned()
        else {
            return;
        };
        let Some(cv) = self.cluster.as_mut() else {
            return;
        };
        let want: HashMap<[u8; 6], switch::RemoteEndpoint> = cv
            .remote
            .get(net_id)
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|e| {
                Some((
                    e.mac()?,
                    switch::RemoteEndpoint {
                        mac: e.mac()?,
                        ip: e.ip,
                        ip6: e.ip6,
                        vtep: e.vtep,
                    },
                ))
            })
            .collect();
        let had = cv.programmed.remove(net_id).unwrap_or_default();
        let mut update = switch::RemoteUpdate::default();
        for (mac, r) in &had {
            if want.get(mac) != Some(r) {
                update.remove.push(*r);
            }
        }
        for (mac, r) in &want {
            if had.get(mac) != Some(r) {
                update.upsert.push(*r);
            }
        }
        let mut members: Vec<Ipv4Addr> = want.values().map(|r| r.vtep).collect();
        members.sort();
        members.dedup();
        cv.programmed.insert(net_id.to_string(), want);
        let local = self.endpoints_of_network(net_id);
        let local4: BTreeSet<Ipv4Addr> = local.iter().filter_map(|e| e.ip).collect();
        let local6: BTreeSet<Ipv6Addr> = local.iter().filter_map(|e| e.ip6).collect();
        if let Some(p) = self.state.pool_mut(net_id) {
            for ip in update.remove.iter().filter_map(|r| r.ip) {
                if !local4.contains(&ip) {
                    p.release(ip);
                }
            }
            for ip in update.upsert.iter().filter_map(|r| r.ip) {
                p.reserve(ip);
            }
        }
        if let Some(p) = self.state.pool6_mut(net_id) {
            for ip in update.remove.iter().filter_map(|r| r.ip6) {
                if !local6.contains(&ip) {
                    p.release(ip);
                }
            }
            for ip in update.upsert.iter().filter_map(|r| r.ip6) {
                p.reserve(ip);
            }
        }
        let (added, removed) = (update.upsert.len(), update.remove.len());
        if added + removed > 0 {
            if let Err(e) = self.engine.update_remote(net.num, update) {
                tracing::error!(network = %net.name, error = %e, "cannot program remote endpoints");
            }
        }
        let members_changed = net.members != members;
        if let Some(n) = self.state.networks.get_mut(net_id) {
            n.members = members;
        }
        if members_changed || added + removed > 0 {
            if let Err(e) = self.sync_hosts(net_id) {
                tracing::warn!(network = %net.name, error = %e.message, "cannot update the network's members and names");
            }
        }
        tracing::debug!(network = %net.name, added, removed, "remote endpoints programmed");
    }

    /// After (re)connecting: global networks the store no longer has go; this host's
    /// endpoints are published again (its own stale keys withdrawn by the agent).
    fn reconcile(&mut self) {
        let Some(cv) = self.cluster.as_ref() else {
            return;
        };
        let gone: Vec<String> = self
            .state
            .networks
            .values()
            .filter(|n| n.global && !cv.networks.contains_key(&n.id))
            .map(|n| n.id.clone())
            .collect();
        for id in gone {
            self.drop_global_network(&id, "the cluster store does not have it");
        }
        let eps: Vec<EndpointRecord> = self
            .state
            .endpoints
            .values()
            .filter_map(|e| self.endpoint_record(e))
            .collect();
        let n = eps.len();
        let Some(cv) = self.cluster.as_ref() else {
            return;
        };
        match cv.client.call(Op::Republish(eps)) {
            Ok(Reply::Conflicts(c)) => {
                for (e, by) in &c {
                    tracing::error!(network = %e.network, sandbox = %e.name, ip = %e.addresses_text(), holder = %by, "address taken by another host while this one was away: the endpoint is not published");
                }
                let unpublished = c
                    .iter()
                    .map(|(e, by)| api::Unpublished {
                        network: self
                            .state
                            .networks
                            .get(&e.network)
                            .map_or_else(|| e.network.clone(), |n| n.name.clone()),
                        sandbox: e.name.clone(),
                        ip: e.addresses_text(),
                        why: by.clone(),
                    })
                    .collect();
                if let Some(cv) = self.cluster.as_mut() {
                    cv.unpublished = unpublished;
                }
                tracing::info!(
                    endpoints = n,
                    conflicts = c.len(),
                    "local endpoints published to the cluster store"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot publish local endpoints; retried at the next connect")
            }
        }
    }

    /// The store's record of a local endpoint of a global network.
    pub(super) fn endpoint_record(&self, e: &Endpoint) -> Option<EndpointRecord> {
        let cv = self.cluster.as_ref()?;
        self.state.networks.get(&e.network).filter(|n| n.global)?;
        Some(EndpointRecord {
            network: e.network.clone(),
            node: cv.node().to_string(),
            id: e.id.clone(),
            name: e.sandbox.clone(),
            aliases: e.aliases.clone(),
            mac: e.mac.to_string(),
            ip: e.ip,
            ip6: e.ip6,
            vtep: cv.client.settings().vtep,
        })
    }

    /// Claim `ep`'s address in the store (global networks only). `requested`: the user
    /// asked for this address (a clash is their error, not a reason to try another).
    pub(super) fn claim(&self, ep: &Endpoint) -> Result<(), StoreError> {
        let (Some(cv), Some(rec)) = (self.cluster.as_ref(), self.endpoint_record(ep)) else {
            return Ok(());
        };
        cv.client.call(Op::Claim(rec)).map(|_| ())
    }

    /// On a global network: an address or the MAC asked for is another host's.
    pub(super) fn remote_holder(&self, net: &Network, want: &Wanted) -> Option<ApiError> {
        let cv = self.cluster.as_ref().filter(|_| net.global)?;
        let eps = cv.remote.get(&net.id)?;
        let asked = want.ip.map(IpAddr::V4).into_iter();
        for ip in asked.chain(want.ip6.map(IpAddr::V6)) {
            if let Some(e) = eps.values().find(|e| e.addresses().contains(&ip)) {
                return Some(ApiError::conflict(format!(
                    "address {ip} is already in use on network {} (sandbox {} on host {})",
                    net.name, e.name, e.node
                )));
            }
        }
        let mac = want.mac?.to_string();
        let e = eps.values().find(|e| e.mac == mac)?;
        Some(ApiError::conflict(format!(
            "MAC address {mac} is already in use on network {} (sandbox {} on host {})",
            net.name, e.name, e.node
        )))
    }

    /// Claim `ep`'s addresses in the store; when another host took one meanwhile (a
    /// concurrent create), the next free one of its family, unless it was asked for.
    pub(super) fn claim_address(
        &mut self,
        net: &Network,
        mut ep: Endpoint,
        want: &Wanted,
    ) -> ApiResult<Endpoint> {
        let what = format!("cannot connect to network {}", net.name);
        for _ in 0..64 {
            let taken = match self.claim(&ep) {
                Ok(()) => return Ok(ep),
                Err(StoreError::Taken(ip, by)) => {
                    let asked = match ip {
                        IpAddr::V4(_) => want.ip.is_some(),
                        IpAddr::V6(_) => want.ip6.is_some(),
                    };
                    if asked {
                        self.state.release(&net.id, ep.ip, ep.ip6);
                        return Err(ApiError::conflict(format!(
                            "{what}: address {ip} is already in use (held by {by})"
                        )));
                    }
                    // Kept reserved here: its holder's endpoint arrives by the watch.
                    tracing::debug!(%ip, holder = %by, "address claimed by another host meanwhile; taking the next");
                    ip
                }
                Err(e) => {
                    self.state.release(&net.id, ep.ip, ep.ip6);
                    return Err(store_error(e, &what));
                }
            };
            let next = match taken {
                IpAddr::V4(_) => self
                    .state
                    .pool_mut(&net.id)
                    .map(|p| p.allocate(None).map(|ip| ep.ip = Some(ip))),
                IpAddr::V6(_) => self
                    .state
                    .pool6_mut(&net.id)
                    .map(|p| p.allocate(None).map(|ip| ep.ip6 = Some(ip))),
            };
            match next {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    self.state.release(&net.id, ep.ip, ep.ip6);
                    return Err(e);
                }
                None => return Err(ApiError::invalid("no address pool")),
            }
            if want.mac.is_none() {
                ep.mac = Endpoint::default_mac(ep.ip, ep.ip6);
            }
        }
        self.state.release(&net.id, ep.ip, ep.ip6);
        Err(ApiError::conflict(format!(
            "{what}: every address tried was claimed by other hosts meanwhile"
        )))
    }

    /// Withdraw `ep` from the store; when it cannot be reached the next connect's
    /// republish withdraws it.
    pub(super) fn withdraw(&self, ep: &Endpoint) {
        let (Some(cv), Some(rec)) = (self.cluster.as_ref(), self.endpoint_record(ep)) else {
            return;
        };
        if let Err(e) = cv.client.call(Op::Withdraw(rec)) {
            tracing::warn!(endpoint = %ep.id, error = %e, "endpoint not withdrawn from the cluster store yet; done at the next connect");
        }
    }

    /// `Peers` of a global network's inspect: this host, then those with endpoints on it.
    pub(super) fn peers_of(&self, n: &Network) -> Vec<api::Peer> {
        let Some(cv) = self.cluster.as_ref().filter(|_| n.global) else {
            return Vec::new();
        };
        let mut peers = vec![api::Peer {
            name: cv.node().to_string(),
            ip: cv.client.settings().vtep.to_string(),
        }];
        let mut others: BTreeMap<&str, Ipv4Addr> = BTreeMap::new();
        for e in cv.remote.get(&n.id).into_iter().flat_map(|m| m.values()) {
            others.insert(&e.node, e.vtep);
        }
        peers.extend(others.into_iter().map(|(name, ip)| api::Peer {
            name: name.to_string(),
            ip: ip.to_string(),
        }));
        peers
    }

    /// Names of the other hosts' endpoints on `net` (for its embedded DNS).
    pub(super) fn remote_records(&self, net: &str) -> Vec<dns::Record> {
        let Some(m) = self.cluster.as_ref().and_then(|c| c.remote.get(net)) else {
            return Vec::new();
        };
        m.values()
            .map(|e| dns::Record {
                name: e.name.clone(),
                aliases: e.aliases.clone(),
                ipv4: e.ip,
                ipv6: e.ip6,
            })
            .collect()
    }

    /// The store's global networks and the revision they were read at.
    pub(super) fn store_networks(&self) -> ApiResult<(Vec<NetworkRecord>, i64)> {
        let Some(cv) = self.cluster.as_ref() else {
            return Ok((Vec::new(), 0));
        };
        match cv.client.call(Op::ListNetworks) {
            Ok(Reply::Networks(n, rev)) => Ok((n, rev)),
            Ok(_) => Err(ApiError::invalid("the cluster agent answered out of turn")),
            Err(e) => Err(store_error(e, "cannot create a global network")),
        }
    }

    /// The cluster's IPv6 pool, which global networks' `--ipv6` without a subnet take
    /// /64s of: the first host to need one makes its own (`host`) the cluster's.
    pub(super) fn cluster_ipv6_pool(&self, host: Ipv6Net) -> ApiResult<Ipv6Net> {
        let Some(cv) = self.cluster.as_ref() else {
            return Ok(host);
        };
        match cv.client.call(Op::UlaPrefix(host)) {
            Ok(Reply::Prefix(p)) => Ok(p),
            Ok(_) => Err(ApiError::invalid("the cluster agent answered out of turn")),
            Err(e) => Err(store_error(e, "cannot choose an IPv6 subnet")),
        }
    }

    /// Write a new global network to the store, unless networks changed there after
    /// `rev` (then false: read again).
    pub(super) fn publish_network(&mut self, net: &Network, rev: i64) -> ApiResult<bool> {
        let Some(cv) = self.cluster.as_mut() else {
            return Ok(true);
        };
        let (pool, pool6) = (net.pool.as_ref(), net.pool6.as_ref());
        let mut options = net.options.clone();
        let vni = options
            .remove(driver::overlay::OPT_VNI)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let rec = NetworkRecord {
            id: net.id.clone(),
            name: net.name.clone(),
            subnet: pool.map(|p| p.subnet),
            gateway: pool.map(|p| p.gateway),
            ip_range: pool.and_then(|p| p.ip_range),
            subnet6: pool6.map(|p| p.subnet),
            gateway6: pool6.map(|p| p.gateway),
            ip_range6: pool6.and_then(|p| p.ip_range),
            vni,
            internal: net.internal,
            attachable: net.attachable,
            options,
            labels: net.labels.clone(),
            created: net.created.clone(),
            node: cv.client.settings().node.clone(),
        };
        match cv.client.call(Op::CreateNetwork {
            rec: rec.clone(),
            rev,
        }) {
            Ok(_) => {
                cv.networks.insert(rec.id.clone(), rec);
                Ok(true)
            }
            Err(StoreError::Changed) => Ok(false),
            Err(e) => Err(store_error(
                e,
                &format!("cannot create network {}", net.name),
            )),
        }
    }

    /// Undo `publish_network` after the local side failed.
    pub(super) fn unpublish_network(&mut self, net: &Network) {
        if let Some(cv) = self.cluster.as_mut() {
            cv.networks.remove(&net.id);
            if let Err(e) = cv.client.call(Op::RemoveNetwork { id: net.id.clone() }) {
                tracing::error!(network = %net.name, error = %e, "cannot take a half-created network out of the cluster store");
            }
        }
    }

    /// `network rm` of a global network: refused while any host holds an address of it.
    pub(super) fn remove_from_store(&mut self, net: &Network) -> ApiResult<()> {
        let Some(cv) = self.cluster.as_mut() else {
            return Ok(());
        };
        let what = format!("error while removing network {}", net.name);
        match cv.client.call(Op::RemoveNetwork { id: net.id.clone() }) {
            Ok(_) => {
                cv.networks.remove(&net.id);
                cv.remote.remove(&net.id);
                cv.programmed.remove(&net.id);
                cv.removed.insert(net.id.clone());
                Ok(())
            }
            Err(StoreError::InUse(nodes)) => Err(ApiError::in_use(format!(
                "{what}: network {} id {} has active endpoints on hosts {}; disconnect them first",
                net.name,
                &net.id[..12.min(net.id.len())],
                nodes.join(", ")
            ))),
            Err(e) => Err(store_error(e, &what)),
        }
    }

    /// `cluster`: the store, the hosts, the global networks.
    pub fn cluster_info(&self) -> ApiResult<api::ClusterInfo> {
        let Some(cv) = self.cluster.as_ref() else {
            return Err(ApiError::invalid(
                "this daemon has no cluster store (start vswitchd with --cluster-store etcd://HOST:PORT)",
            ));
        };
        let me = cv.node();
        let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
        for m in cv.remote.values() {
            for (node, _) in m.keys() {
                *per_node.entry(node.as_str()).or_default() += 1;
            }
        }
        let local_eps = self
            .state
            .endpoints
            .values()
            .filter(|e| {
                self.state
                    .networks
                    .get(&e.network)
                    .is_some_and(|n| n.global)
            })
            .count();
        let nodes = cv
            .nodes
            .values()
            .map(|n| api::ClusterNode {
                name: n.name.clone(),
                vtep: n.vtep.to_string(),
                started: n.started.clone(),
                endpoints: if n.name == me {
                    local_eps
                } else {
                    per_node.get(n.name.as_str()).copied().unwrap_or(0)
                },
                this_host: n.name == me,
                lease: "alive".into(),
            })
            .collect();
        let networks = cv
            .networks
            .values()
            .map(|r| api::ClusterNetwork {
                name: r.name.clone(),
                id: r.id.clone(),
                vni: r.vni,
                subnet: r.subnets_text(),
                remote_endpoints: cv.remote.get(&r.id).map_or(0, |m| m.len()),
                refused: cv.refused.get(&r.id).cloned(),
            })
            .collect();
        Ok(api::ClusterInfo {
            store: cv.client.health(),
            nodes,
            networks,
            unpublished: cv.unpublished.clone(),
        })
    }
}
