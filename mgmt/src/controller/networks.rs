//! Networks: create (the driver allocates, IPAM chooses the subnet), list, inspect,
//! remove, prune.

use super::*;

impl Controller {
    pub fn network_create(&mut self, req: api::NetworkCreate) -> ApiResult<api::NetworkCreated> {
        // A global create that lost a race with another host's reads the store again.
        for _ in 0..4 {
            if let Some(done) = self.network_create_once(req.clone())? {
                return Ok(done);
            }
        }
        Err(ApiError::conflict(format!(
            "network {}: the cluster store kept changing while it was created; try again",
            req.name
        )))
    }

    /// None: the store changed between its read and the write (try again).
    fn network_create_once(
        &mut self,
        req: api::NetworkCreate,
    ) -> ApiResult<Option<api::NetworkCreated>> {
        model::validate_name("network", &req.name)?;
        if self.state.networks.values().any(|n| n.name == req.name) {
            return Err(ApiError::conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let driver = DriverKind::parse(req.driver.as_deref().unwrap_or("bridge"))?;
        // With a cluster store every overlay network is global (Docker's scope).
        let global = self.cluster.is_some() && driver == DriverKind::Overlay;
        let (store_nets, store_rev) = if global {
            self.store_networks()?
        } else {
            (Vec::new(), 0)
        };
        if let Some(n) = store_nets.iter().find(|n| n.name == req.name) {
            return Err(ApiError::conflict(format!(
                "network with name {} already exists in the cluster (created on host {})",
                req.name, n.node
            )));
        }
        if global && req.options.contains_key(driver::overlay::OPT_PEERS) {
            return Err(ApiError::invalid(format!(
                "-o {} is not used on global networks: their members come from the cluster store",
                driver::overlay::OPT_PEERS
            )));
        }
        let Some(d) = driver::for_kind(driver) else {
            return Err(ApiError::invalid(format!(
                "the {} driver is not available in this build yet; use bridge",
                driver.name()
            )));
        };
        let store_subnets: Vec<Ipv4Net> = store_nets.iter().filter_map(|n| n.subnet).collect();
        let pool = self.ipv4_pool(&req, d.clear_of_host_addresses(), &store_subnets)?;
        let store_subnets6: Vec<Ipv6Net> = store_nets.iter().filter_map(|n| n.subnet6).collect();
        let pool6 = self.ipv6_pool(&req, driver, global.then_some(&store_subnets6[..]))?;
        let options = if global {
            // The VNI is free on this host and in the whole cluster.
            let mut vnis: Vec<u32> = self
                .state
                .networks
                .values()
                .filter_map(driver::overlay::vni_of)
                .collect();
            vnis.extend(store_nets.iter().map(|n| n.vni));
            driver::overlay::settle_options(req.options, &vnis, self.cfg.vtep_ip)
                .map_err(|e| ApiError::new(e.code, format!("{} (in the cluster)", e.message)))?
        } else {
            d.allocate(driver::NetworkRequest {
                subnet_given: req.subnet.is_some(),
                internal: req.internal,
                options: req.options,
                networks: &mut self.state.networks.values(),
                vtep_ip: self.cfg.vtep_ip,
            })?
        };
        let id = match req.id.clone() {
            Some(id) if self.state.networks.contains_key(&id) => {
                return Err(ApiError::conflict(format!(
                    "network id {id} exists already"
                )))
            }
            Some(id) => id,
            None => model::new_id(),
        };
        let num = self.next_network_num();
        let net = Network {
            id,
            name: req.name.clone(),
            driver,
            pool,
            pool6,
            internal: req.internal,
            attachable: req.attachable,
            options,
            labels: req.labels,
            created: model::now_rfc3339(),
            num,
            predefined: false,
            global,
            members: Vec::new(),
        };
        if global && !self.publish_network(&net, store_rev)? {
            return Ok(None);
        }
        if let Err(e) = self.with_driver(driver, |d, ctx| d.create_network(ctx, &net)) {
            if global {
                self.unpublish_network(&net);
            }
            return Err(e.into());
        }
        let id = net.id.clone();
        self.state.networks.insert(id.clone(), net.clone());
        if let Err(e) = self.save() {
            self.state.networks.remove(&id);
            let _ = self.with_driver(driver, |d, ctx| d.delete_network(ctx, &net));
            return Err(e);
        }
        self.sync_host_routes();
        let subnets = [
            net.pool.as_ref().map(|p| p.subnet.to_string()),
            net.pool6.as_ref().map(|p| p.subnet.to_string()),
        ];
        let subnets = subnets.into_iter().flatten().collect::<Vec<_>>().join(" ");
        tracing::info!(network = %req.name, subnets, global, "network created");
        Ok(Some(api::NetworkCreated {
            id,
            warning: String::new(),
        }))
    }

    /// The IPv4 pool of a new network: its `--subnet` (which overlaps no other
    /// network's, nor, where `clear_of_host`, the host's addresses), else the next free
    /// default pool; None for an IPv6-only network (`--ipv4=false`, with `--ipv6`).
    fn ipv4_pool(
        &self,
        req: &api::NetworkCreate,
        clear_of_host: bool,
        store_subnets: &[Ipv4Net],
    ) -> ApiResult<Option<Pool>> {
        if req.ipv4 == Some(false) {
            if !req.ipv6 {
                return Err(ApiError::invalid(
                    "--ipv4=false needs --ipv6: a network needs addresses of one family at least",
                ));
            }
            if let Some(v) = [&req.subnet, &req.gateway, &req.ip_range]
                .into_iter()
                .find_map(|v| v.as_ref())
            {
                return Err(ApiError::invalid(format!(
                    "IPv4 address {v} given for an IPv6-only network (--ipv4=false)"
                )));
            }
            return Ok(None);
        }
        let mut taken: Vec<Ipv4Net> = self
            .state
            .networks
            .values()
            .filter_map(|n| n.pool.as_ref().map(|p| p.subnet))
            .chain(store_subnets.iter().copied())
            .collect();
        let host = if clear_of_host {
            host_addresses()
        } else {
            Vec::new()
        };
        let subnet = match &req.subnet {
            Some(s) => {
                let s: Ipv4Net = s.parse().map_err(|_| {
                    ApiError::invalid(format!(
                        "invalid subnet {s:?}: expected an IPv4 CIDR like 172.20.0.0/16"
                    ))
                })?;
                if let Some(t) = taken.iter().find(|t| ipam::overlaps(&s.trunc(), t)) {
                    return Err(ApiError::conflict(format!(
                        "subnet {s} overlaps with {t}, used by another network"
                    )));
                }
                if let Some(a) = host.iter().find(|a| ipam::overlaps(&s.trunc(), &a.trunc())) {
                    return Err(ApiError::conflict(format!(
                        "subnet {s} overlaps with {a}, an address of this host; choose another --subnet"
                    )));
                }
                s
            }
            None => {
                if req.gateway.is_some() || req.ip_range.is_some() {
                    return Err(ApiError::invalid("--gateway and --ip-range need --subnet"));
                }
                taken.extend(host.iter().map(Ipv4Net::trunc));
                ipam::auto_subnet(&taken)?
            }
        };
        let gateway = req.gateway.as_deref().map(parse_ip).transpose()?;
        let ip_range = match &req.ip_range {
            Some(r) => Some(r.parse::<Ipv4Net>().map_err(|_| {
                ApiError::invalid(format!("invalid ip-range {r:?}: expected an IPv4 CIDR"))
            })?),
            None => None,
        };
        Pool::new(subnet, gateway, ip_range).map(Some)
    }

    /// The IPv6 pool of a network created with `--ipv6`: its IPv6 `--subnet` (which
    /// overlaps no other network's), else the next free /64 of the host's IPv6 pool, or
    /// for a global network (`store`: the cluster's IPv6 subnets) of the cluster's.
    fn ipv6_pool(
        &self,
        req: &api::NetworkCreate,
        driver: DriverKind,
        store: Option<&[Ipv6Net]>,
    ) -> ApiResult<Option<Pool6>> {
        if !req.ipv6 {
            if let Some(s) = &req.subnet6 {
                return Err(ApiError::invalid(format!(
                    "IPv6 subnet {s} given without --ipv6: pass --ipv6 to make the network dual-stack"
                )));
            }
            if req.gateway6.is_some() || req.ip_range6.is_some() {
                return Err(ApiError::invalid(
                    "an IPv6 --gateway or --ip-range needs --ipv6 and an IPv6 --subnet",
                ));
            }
            return Ok(None);
        }
        if !matches!(
            driver,
            DriverKind::Bridge | DriverKind::Overlay | DriverKind::Macvlan
        ) {
            return Err(ApiError::invalid(format!(
                "the {} driver has no addresses to give: --ipv6 does not apply",
                driver.name()
            )));
        }
        let taken: Vec<Ipv6Net> = self
            .state
            .networks
            .values()
            .filter_map(|n| n.pool6.as_ref().map(|p| p.subnet))
            .chain(store.into_iter().flatten().copied())
            .collect();
        let subnet = match &req.subnet6 {
            Some(s) => {
                let s: Ipv6Net = s.parse().map_err(|_| {
                    ApiError::invalid(format!(
                        "invalid IPv6 subnet {s:?}: expected a CIDR like 2001:db8:1::/64"
                    ))
                })?;
                if let Some(t) = taken.iter().find(|t| ipam6::overlaps(&s.trunc(), t)) {
                    return Err(ApiError::conflict(format!(
                        "IPv6 subnet {s} overlaps with {t}, used by another network"
                    )));
                }
                s
            }
            None => {
                if req.gateway6.is_some() || req.ip_range6.is_some() {
                    return Err(ApiError::invalid(
                        "an IPv6 --gateway or --ip-range needs an IPv6 --subnet",
                    ));
                }
                let host = match self.cfg.ipv6_pool {
                    Some(p) => p,
                    None => ipam6::ula_prefix(self.store.dir()).map_err(|e| {
                        ApiError::new(
                            crate::error::Code::System,
                            format!(
                                "cannot read or keep the host's IPv6 pool in {}: {e}",
                                self.store.dir().display()
                            ),
                        )
                    })?,
                };
                let pool = match store {
                    Some(_) => self.cluster_ipv6_pool(host)?,
                    None => host,
                };
                ipam6::auto_subnet6(&pool, &taken)?
            }
        };
        let parse6 = |what: &str, s: &str| {
            s.parse::<Ipv6Addr>().map_err(|_| {
                ApiError::invalid(format!(
                    "invalid IPv6 {what} {s:?}: expected an IPv6 address"
                ))
            })
        };
        let gateway = req
            .gateway6
            .as_deref()
            .map(|g| parse6("gateway", g))
            .transpose()?;
        let ip_range = match &req.ip_range6 {
            Some(r) => Some(r.parse::<Ipv6Net>().map_err(|_| {
                ApiError::invalid(format!(
                    "invalid IPv6 ip-range {r:?}: expected an IPv6 CIDR"
                ))
            })?),
            None => None,
        };
        Pool6::new(subnet, gateway, ip_range).map(Some)
    }

    pub fn network_ls(&self, req: api::NetworkLs) -> ApiResult<Vec<api::NetworkSummary>> {
        let mut driver_filter = None;
        for f in &req.filters {
            match f.split_once('=') {
                Some(("driver", d)) => driver_filter = Some(d.to_string()),
                _ => {
                    return Err(ApiError::invalid(format!(
                        "invalid filter {f:?} (supported: driver=D)"
                    )))
                }
            }
        }
        let mut nets: Vec<&Network> = self
            .state
            .networks
            .values()
            .filter(|n| {
                driver_filter
                    .as_deref()
                    .is_none_or(|d| d == n.driver.name())
            })
            .collect();
        nets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(nets
            .iter()
            .map(|n| api::NetworkSummary {
                id: n.id.get(..12).unwrap_or(&n.id).to_string(),
                name: n.name.clone(),
                driver: n.driver.name().to_string(),
                scope: scope(n).into(),
            })
            .collect())
    }

    pub fn network_inspect(&self, req: api::Names) -> ApiResult<Vec<api::NetworkDetail>> {
        if req.names.is_empty() {
            return Err(ApiError::invalid(
                "network inspect needs at least one network name or id",
            ));
        }
        let mut out = Vec::new();
        for r in &req.names {
            out.push(self.inspect_network(self.network(r)?));
        }
        Ok(out)
    }

    fn inspect_network(&self, n: &Network) -> api::NetworkDetail {
        let config = n
            .pool
            .iter()
            .map(|p| api::IpamConfig {
                subnet: p.subnet.to_string(),
                gateway: p.gateway.to_string(),
                ip_range: p.ip_range.map(|r| r.to_string()),
            })
            .chain(n.pool6.iter().map(|p| api::IpamConfig {
                subnet: p.subnet.to_string(),
                gateway: p.gateway.to_string(),
                ip_range: p.ip_range.map(|r| r.to_string()),
            }))
            .collect();
        let mut containers = BTreeMap::new();
        for ep in self.endpoints_of_network(&n.id) {
            let Some(sb) = self.state.sandboxes.get(&ep.sandbox) else {
                continue;
            };
            let prefix = n.pool.as_ref().map(|p| p.subnet.prefix_len()).unwrap_or(32);
            containers.insert(
                sb.id.clone(),
                api::NetworkContainer {
                    name: sb.name.clone(),
                    endpoint_id: ep.id.clone(),
                    mac_address: ep.mac.to_string(),
                    ipv4_address: ep.ip.map(|ip| format!("{ip}/{prefix}")).unwrap_or_default(),
                    ipv6_address: match (ep.ip6, &n.pool6) {
                        (Some(ip), Some(p)) => format!("{ip}/{}", p.subnet.prefix_len()),
                        _ => String::new(),
                    },
                },
            );
        }
        api::NetworkDetail {
            name: n.name.clone(),
            id: n.id.clone(),
            created: n.created.clone(),
            scope: scope(n).into(),
            driver: n.driver.name().to_string(),
            enable_ipv6: n.pool6.is_some(),
            ipam: api::Ipam {
                driver: "default".into(),
                options: BTreeMap::new(),
                config,
            },
            internal: n.internal,
            attachable: n.attachable,
            containers,
            options: n.options.clone(),
            labels: n.labels.clone(),
            peers: self.peers_of(n),
        }
    }

    pub fn network_rm(&mut self, req: api::Names) -> ApiResult<Vec<String>> {
        if req.names.is_empty() {
            return Err(ApiError::invalid(
                "network rm needs at least one network name or id",
            ));
        }
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        for r in &req.names {
            match self.remove_network(r) {
                Ok(name) => removed.push(name),
                Err(e) => errors.push(e),
            }
        }
        if let Some(first) = errors.first() {
            let msg = errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            let mut e = ApiError::new(first.code, msg);
            if !removed.is_empty() {
                e.message
                    .push_str(&format!(" (removed: {})", removed.join(", ")));
            }
            return Err(e);
        }
        Ok(removed)
    }

    pub(super) fn remove_network(&mut self, r: &str) -> ApiResult<String> {
        let net = self.network(r)?.clone();
        if net.predefined {
            return Err(ApiError::in_use(format!(
                "{} is a pre-defined network and cannot be removed",
                net.name
            )));
        }
        let attached: Vec<String> = self
            .endpoints_of_network(&net.id)
            .iter()
            .map(|e| e.sandbox.clone())
            .collect();
        if !attached.is_empty() {
            return Err(ApiError::in_use(format!(
                "error while removing network: network {} id {} has active endpoints (sandboxes: {}); disconnect them first",
                net.name,
                net.id.get(..12).unwrap_or(&net.id),
                attached.join(", ")
            )));
        }
        if net.global {
            self.remove_from_store(&net)?;
        }
        self.with_driver(net.driver, |d, ctx| d.delete_network(ctx, &net))?;
        self.state.networks.remove(&net.id);
        self.save()?;
        self.sync_host_routes();
        tracing::info!(network = %net.name, "network removed");
        // A global network refused for clashing with this one may come now.
        self.adopt_refused();
        Ok(net.name)
    }

    /// The host routes every network whose gateway is the switch (bridge and overlay,
    /// internal ones included) through the host port.
    pub(super) fn sync_host_routes(&mut self) {
        let subnets = self
            .state
            .networks
            .values()
            .filter(|n| matches!(n.driver, DriverKind::Bridge | DriverKind::Overlay))
            .filter_map(|n| n.pool.as_ref().map(|p| p.subnet.trunc()))
            .collect();
        if let Some(h) = self.host_port.as_mut() {
            h.sync_routes(subnets);
        }
    }

    pub fn network_prune(&mut self) -> ApiResult<api::Pruned> {
        let unused: Vec<String> = self
            .state
            .networks
            .values()
            .filter(|n| !n.predefined && self.endpoints_of_network(&n.id).is_empty())
            .map(|n| n.id.clone())
            .collect();
        let mut removed = Vec::new();
        for id in unused {
            removed.push(self.remove_network(&id)?);
        }
        Ok(api::Pruned {
            networks_deleted: removed,
        })
    }
}

/// Docker's Scope: `global` for the cluster store's networks.
fn scope(n: &Network) -> &'static str {
    if n.global {
        "global"
    } else {
        "local"
    }
}

/// The host's own IPv4 addresses (this namespace's), which container networks must not
/// overlap; none when they cannot be read (logged).
pub(super) fn host_addresses() -> Vec<Ipv4Net> {
    match crate::link::Netlink::new().and_then(|mut nl| nl.ipv4_addresses()) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the host's addresses; subnets are not checked against them");
            Vec::new()
        }
    }
}
