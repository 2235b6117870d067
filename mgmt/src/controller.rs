//! The controller owns the model: it validates every request before changing anything,
//! asks drivers to realise the change, persists it, and only then acknowledges.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use serde_json::{json, Value};
use switch::port::IoMode;
use switch::{Engine, PortId};

use crate::api;
use crate::capture::Captures;
use crate::driver::{self, Ctx, Driver};
use crate::error::{ApiError, ApiResult};
use crate::ipam::{self, Pool};
use crate::model::{self, DriverKind, Endpoint, LinkKind, Mac, Network, Sandbox, SandboxMode};
use crate::publish::{self, Binding};
use crate::sandbox;
use crate::state::{State, Store};

/// Daemon-wide settings the controller needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub io: IoMode,
    /// Upstream resolvers: the embedded DNS forwards to them, and resolv.conf of
    /// sandboxes on the default bridge names their addresses (resolv.conf has no ports).
    pub dns_upstreams: Vec<std::net::SocketAddr>,
    /// The uplink address, when there is an uplink (egress, published ports).
    pub uplink_ip: Option<Ipv4Addr>,
    /// The overlay tunnel endpoint (`--vtep-ip`, else the uplink address).
    pub vtep_ip: Option<Ipv4Addr>,
}

pub struct Controller {
    cfg: Config,
    store: Store,
    state: State,
    engine: Engine,
    ports: HashMap<String, PortId>,
    captures: Captures,
}

impl Controller {
    /// Load the saved state (or create the predefined networks) and rebuild the data
    /// plane from it.
    pub fn start(cfg: Config, store: Store, engine: Engine) -> Result<Controller> {
        let loaded = store.load()?;
        let fresh = loaded.is_none();
        let mut c = Controller {
            cfg,
            store,
            state: loaded.unwrap_or_default(),
            engine,
            ports: HashMap::new(),
            captures: Captures::default(),
        };
        if fresh {
            c.create_predefined()
                .context("create predefined networks")?;
            c.store.save(&c.state).context("save initial state")?;
        }
        c.restore();
        Ok(c)
    }

    fn create_predefined(&mut self) -> Result<()> {
        let subnet: Ipv4Net = ipam::DEFAULT_BRIDGE_SUBNET.parse()?;
        let pool = Pool::new(subnet, None, None).map_err(anyhow::Error::from)?;
        for (name, driver, pool, num) in [
            ("bridge", DriverKind::Bridge, Some(pool), 1),
            ("host", DriverKind::Host, None, 0),
            ("none", DriverKind::Null, None, 0),
        ] {
            let mut options = BTreeMap::new();
            if name == "bridge" {
                options.insert(
                    "com.docker.network.bridge.default_bridge".into(),
                    "true".into(),
                );
            }
            let net = Network {
                id: model::new_id(),
                name: name.into(),
                driver,
                pool,
                internal: false,
                attachable: false,
                options,
                labels: BTreeMap::new(),
                created: model::now_rfc3339(),
                num,
                predefined: true,
            };
            self.state.networks.insert(net.id.clone(), net);
        }
        Ok(())
    }

    /// Rebuild namespaces, links and the data plane from `state`. Problems with one
    /// object are logged and do not stop the others from coming back.
    fn restore(&mut self) {
        let eps: Vec<Endpoint> = self.state.endpoints.values().cloned().collect();
        for ep in &eps {
            if let Some(p) = self
                .state
                .networks
                .get_mut(&ep.network)
                .and_then(|n| n.pool.as_mut())
            {
                p.reserve(ep.ip);
            }
        }
        let nets: Vec<Network> = self.state.networks.values().cloned().collect();
        for net in &nets {
            if let Err(e) = self.with_driver(net.driver, |d, ctx| d.create_network(ctx, net)) {
                tracing::error!(network = %net.name, error = %format!("{e:#}"), "cannot restore network");
            }
        }
        let mut sandboxes: Vec<Sandbox> = self.state.sandboxes.values().cloned().collect();
        // Namespaces that others join come back before the sandboxes joining them.
        sandboxes.sort_by_key(|s| matches!(s.mode, SandboxMode::Container(_)));
        for sb in &sandboxes {
            if let Err(e) = sandbox::ensure(&sb.name, &sb.mode) {
                tracing::error!(sandbox = %sb.name, error = %format!("{e:#}"), "cannot restore sandbox namespace");
                continue;
            }
            for ep_id in &sb.endpoints {
                let Some(ep) = self.state.endpoints.get(ep_id).cloned() else {
                    continue;
                };
                let Some(net) = self.state.networks.get(&ep.network).cloned() else {
                    continue;
                };
                if let Err(e) =
                    self.with_driver(net.driver, |d, ctx| d.create_endpoint(ctx, &net, &ep))
                {
                    tracing::error!(sandbox = %sb.name, network = %net.name, error = %format!("{e:#}"), "cannot restore endpoint");
                }
            }
            if let Err(e) = self.publish(&sb.name, &sb.ports) {
                tracing::error!(sandbox = %sb.name, error = %e, "cannot restore published ports");
            }
            if let Err(e) = self.refresh_sandbox_config(&sb.name) {
                tracing::error!(sandbox = %sb.name, error = %format!("{e:#}"), "cannot restore routes and resolv.conf");
            }
        }
        let ids: Vec<String> = self.state.networks.keys().cloned().collect();
        for id in ids {
            if let Err(e) = self.sync_hosts(&id) {
                tracing::error!(network = %id, error = %e, "cannot restore the network's address table");
            }
        }
        tracing::info!(
            networks = self.state.networks.len(),
            sandboxes = self.state.sandboxes.len(),
            endpoints = self.state.endpoints.len(),
            "state restored"
        );
    }

    /// The driver of `net`, for what it decides without touching the data plane.
    fn driver_of(&self, net: &Network) -> ApiResult<Box<dyn Driver>> {
        driver::for_kind(net.driver).ok_or_else(|| {
            ApiError::invalid(format!(
                "the {} driver is not available in this build",
                net.driver.name()
            ))
        })
    }

    fn with_driver<T>(
        &mut self,
        kind: DriverKind,
        f: impl FnOnce(&mut dyn Driver, &mut Ctx) -> Result<T>,
    ) -> Result<T> {
        let mut d = driver::for_kind(kind).ok_or_else(|| {
            ApiError::invalid(format!(
                "the {} driver is not available in this build",
                kind.name()
            ))
        })?;
        let mut ctx = Ctx {
            engine: &mut self.engine,
            io: self.cfg.io,
            ports: &mut self.ports,
        };
        f(d.as_mut(), &mut ctx)
    }

    fn save(&self) -> ApiResult<()> {
        self.store.save(&self.state).map_err(ApiError::system)
    }

    /// Tell the data plane which endpoint owns which address on a network.
    fn sync_hosts(&mut self, net_id: &str) -> ApiResult<()> {
        let Some(net) = self.state.networks.get(net_id).cloned() else {
            return Ok(());
        };
        let hosts: Vec<(Ipv4Addr, Mac)> = self
            .state
            .endpoints
            .values()
            .filter(|e| e.network == net_id)
            .map(|e| (e.ip, e.mac))
            .collect();
        self.with_driver(net.driver, |d, ctx| d.sync_network(ctx, &net, &hosts))?;
        self.sync_names(&net)
    }

    /// Give the network's embedded resolver its names: each endpoint's sandbox name and
    /// aliases, scoped to this network.
    fn sync_names(&mut self, net: &Network) -> ApiResult<()> {
        if !net.has_embedded_dns()
            || !driver::for_kind(net.driver).is_some_and(|d| d.embedded_dns())
        {
            return Ok(());
        }
        let records: Vec<dns::Record> = self
            .state
            .endpoints
            .values()
            .filter(|e| e.network == net.id)
            .map(|e| dns::Record {
                name: e.sandbox.clone(),
                aliases: e.aliases.clone(),
                ipv4: Some(e.ip),
                ipv6: None,
            })
            .collect();
        let table = dns::NameTable::new(&records).map_err(|e| {
            ApiError::invalid(format!("names on network {} for its DNS: {e}", net.name))
        })?;
        self.engine
            .set_dns_names(net.num, Some(std::sync::Arc::new(table)))
            .map_err(ApiError::system)
    }

    /// The address a sandbox's published ports forward to: its first network's.
    fn publish_target(&self, sandbox: &str) -> ApiResult<Ipv4Addr> {
        let sb = self.sandbox(sandbox)?;
        sb.endpoints
            .first()
            .and_then(|e| self.state.endpoints.get(e))
            .map(|e| e.ip)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "sandbox {sandbox} has no network to publish ports from"
                ))
            })
    }

    /// Program the NAT for a sandbox's bindings; all or nothing.
    fn publish(&mut self, sandbox: &str, bindings: &[Binding]) -> ApiResult<()> {
        if bindings.is_empty() {
            return Ok(());
        }
        let target = self.publish_target(sandbox)?;
        for (i, b) in bindings.iter().enumerate() {
            let m = nat::PortMapping {
                proto: b.proto.nat(),
                host_ip: b.host_ip,
                host_port: b.host_port,
                target_ip: target,
                target_port: b.port,
            };
            if let Err(e) = self.engine.port_mapping(true, m) {
                self.unpublish(sandbox, &bindings[..i]);
                return Err(e.into());
            }
        }
        Ok(())
    }

    fn unpublish(&mut self, sandbox: &str, bindings: &[Binding]) {
        let target = self
            .publish_target(sandbox)
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        for b in bindings {
            let m = nat::PortMapping {
                proto: b.proto.nat(),
                host_ip: b.host_ip,
                host_port: b.host_port,
                target_ip: target,
                target_port: b.port,
            };
            if let Err(e) = self.engine.port_mapping(false, m) {
                tracing::warn!(sandbox, error = %e, "cannot unpublish port");
            }
        }
    }

    /// Validate `-p`/`-P`/`--expose` and choose host ports, refusing claims of a host
    /// port another sandbox holds.
    fn plan_bindings(&self, req: &api::SandboxCreate, net: &Network) -> ApiResult<Vec<Binding>> {
        if req.publish.is_empty() && !req.publish_all {
            for e in &req.expose {
                publish::parse_expose(e)?;
            }
            return Ok(Vec::new());
        }
        self.driver_of(net)?.check_publish(net)?;
        let Some(uplink_ip) = self.cfg.uplink_ip else {
            return Err(ApiError::invalid("publishing ports needs an uplink: start vswitchd with --uplink, --uplink-ip and --uplink-gw"));
        };
        let mut wanted: Vec<Binding> = req
            .publish
            .iter()
            .map(|p| publish::parse(p))
            .collect::<ApiResult<_>>()?;
        if req.publish_all {
            for e in &req.expose {
                let (port, proto) = publish::parse_expose(e)?;
                if !wanted.iter().any(|b| b.port == port && b.proto == proto) {
                    wanted.push(Binding {
                        proto,
                        host_ip: None,
                        host_port: 0,
                        port,
                    });
                }
            }
        }
        let mut taken: Vec<Binding> = self
            .state
            .sandboxes
            .values()
            .flat_map(|s| s.ports.iter().copied())
            .collect();
        let mut out = Vec::new();
        for mut b in wanted {
            if let Some(ip) = b.host_ip {
                if ip != uplink_ip {
                    return Err(ApiError::invalid(format!(
                        "cannot publish on {ip}: the switch's address is {uplink_ip}"
                    )));
                }
            }
            if b.host_port == 0 {
                let free = publish::EPHEMERAL.clone().find(|p| {
                    let c = Binding { host_port: *p, ..b };
                    !taken.iter().any(|t| t.clashes(&c))
                });
                b.host_port = free
                    .ok_or_else(|| ApiError::conflict("no free host port left in 32768-60999"))?;
            } else if taken.iter().any(|t| t.clashes(&b)) {
                return Err(ApiError::conflict(format!(
                    "Bind for {} failed: port is already allocated",
                    b.host()
                )));
            } else if b.proto == publish::Proto::Udp
                && b.host_port == vxlan::wire::VXLAN_PORT
                && self.cfg.vtep_ip == Some(uplink_ip)
            {
                return Err(ApiError::conflict(format!(
                    "Bind for {} failed: port is already allocated (the overlay tunnel endpoint's VXLAN port)",
                    b.host()
                )));
            }
            taken.push(b);
            out.push(b);
        }
        Ok(out)
    }

    // ---- lookups -------------------------------------------------------------------

    /// A network by name, full id or unique id prefix, as Docker resolves them.
    fn network_id(&self, r: &str) -> ApiResult<String> {
        if let Some(n) = self
            .state
            .networks
            .values()
            .find(|n| n.name == r || n.id == r)
        {
            return Ok(n.id.clone());
        }
        let matches: Vec<&Network> = self
            .state
            .networks
            .values()
            .filter(|n| !r.is_empty() && n.id.starts_with(r))
            .collect();
        match matches.as_slice() {
            [n] => Ok(n.id.clone()),
            [] => Err(ApiError::not_found(format!("network {r} not found"))),
            _ => Err(ApiError::conflict(format!(
                "network {r} is ambiguous ({} matches)",
                matches.len()
            ))),
        }
    }

    fn network(&self, r: &str) -> ApiResult<&Network> {
        let id = self.network_id(r)?;
        Ok(&self.state.networks[&id])
    }

    fn sandbox(&self, name: &str) -> ApiResult<&Sandbox> {
        self.state
            .sandboxes
            .get(name)
            .or_else(|| self.state.sandboxes.values().find(|s| s.id == name))
            .ok_or_else(|| ApiError::not_found(format!("no such sandbox: {name}")))
    }

    fn endpoints_of_network(&self, net_id: &str) -> Vec<&Endpoint> {
        self.state
            .endpoints
            .values()
            .filter(|e| e.network == net_id)
            .collect()
    }

    // ---- networks ------------------------------------------------------------------

    pub fn network_create(&mut self, req: api::NetworkCreate) -> ApiResult<Value> {
        model::validate_name("network", &req.name)?;
        if self.state.networks.values().any(|n| n.name == req.name) {
            return Err(ApiError::conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let driver = DriverKind::parse(req.driver.as_deref().unwrap_or("bridge"))?;
        let Some(d) = driver::for_kind(driver) else {
            return Err(ApiError::invalid(format!(
                "the {} driver is not available in this build yet; use bridge",
                driver.name()
            )));
        };
        let options = d.allocate(driver::NetworkRequest {
            subnet_given: req.subnet.is_some(),
            internal: req.internal,
            options: req.options,
            networks: &mut self.state.networks.values(),
            vtep_ip: self.cfg.vtep_ip,
        })?;
        let taken: Vec<Ipv4Net> = self
            .state
            .networks
            .values()
            .filter_map(|n| n.pool.as_ref().map(|p| p.subnet))
            .collect();
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
                s
            }
            None => {
                if req.gateway.is_some() || req.ip_range.is_some() {
                    return Err(ApiError::invalid("--gateway and --ip-range need --subnet"));
                }
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
        let pool = Pool::new(subnet, gateway, ip_range)?;
        let num = self
            .state
            .networks
            .values()
            .map(|n| n.num)
            .max()
            .unwrap_or(0)
            + 1;
        let net = Network {
            id: model::new_id(),
            name: req.name.clone(),
            driver,
            pool: Some(pool),
            internal: req.internal,
            attachable: req.attachable,
            options,
            labels: req.labels,
            created: model::now_rfc3339(),
            num,
            predefined: false,
        };
        self.with_driver(driver, |d, ctx| d.create_network(ctx, &net))?;
        let id = net.id.clone();
        self.state.networks.insert(id.clone(), net.clone());
        if let Err(e) = self.save() {
            self.state.networks.remove(&id);
            let _ = self.with_driver(driver, |d, ctx| d.delete_network(ctx, &net));
            return Err(e);
        }
        tracing::info!(network = %req.name, subnet = %subnet, "network created");
        Ok(json!({ "Id": id, "Warning": "" }))
    }

    pub fn network_ls(&self, req: api::NetworkLs) -> ApiResult<Value> {
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
        Ok(Value::Array(
            nets.iter()
                .map(|n| json!({ "ID": &n.id[..12], "Name": n.name, "Driver": n.driver.name(), "Scope": "local" }))
                .collect(),
        ))
    }

    pub fn network_inspect(&self, req: api::Names) -> ApiResult<Value> {
        if req.names.is_empty() {
            return Err(ApiError::invalid(
                "network inspect needs at least one network name or id",
            ));
        }
        let mut out = Vec::new();
        for r in &req.names {
            out.push(self.inspect_network(self.network(r)?));
        }
        Ok(Value::Array(out))
    }

    fn inspect_network(&self, n: &Network) -> Value {
        let config: Vec<Value> = n
            .pool
            .iter()
            .map(|p| {
                let mut c =
                    json!({ "Subnet": p.subnet.to_string(), "Gateway": p.gateway.to_string() });
                if let Some(r) = p.ip_range {
                    c["IPRange"] = json!(r.to_string());
                }
                c
            })
            .collect();
        let mut containers = serde_json::Map::new();
        for ep in self.endpoints_of_network(&n.id) {
            let Some(sb) = self.state.sandboxes.get(&ep.sandbox) else {
                continue;
            };
            let prefix = n.pool.as_ref().map(|p| p.subnet.prefix_len()).unwrap_or(32);
            containers.insert(
                sb.id.clone(),
                json!({
                    "Name": sb.name,
                    "EndpointID": ep.id,
                    "MacAddress": ep.mac.to_string(),
                    "IPv4Address": format!("{}/{}", ep.ip, prefix),
                    "IPv6Address": "",
                }),
            );
        }
        json!({
            "Name": n.name,
            "Id": n.id,
            "Created": n.created,
            "Scope": "local",
            "Driver": n.driver.name(),
            "EnableIPv6": false,
            "IPAM": { "Driver": "default", "Options": {}, "Config": config },
            "Internal": n.internal,
            "Attachable": n.attachable,
            "Containers": containers,
            "Options": n.options,
            "Labels": n.labels,
        })
    }

    pub fn network_rm(&mut self, req: api::Names) -> ApiResult<Value> {
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
        Ok(json!(removed))
    }

    fn remove_network(&mut self, r: &str) -> ApiResult<String> {
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
                &net.id[..12],
                attached.join(", ")
            )));
        }
        self.with_driver(net.driver, |d, ctx| d.delete_network(ctx, &net))?;
        self.state.networks.remove(&net.id);
        self.save()?;
        tracing::info!(network = %net.name, "network removed");
        Ok(net.name)
    }

    pub fn network_prune(&mut self) -> ApiResult<Value> {
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
        Ok(json!({ "NetworksDeleted": removed }))
    }

    pub fn network_connect(&mut self, req: api::Connect) -> ApiResult<Value> {
        let net = self.network(&req.network)?.clone();
        let sb = self.sandbox(&req.sandbox)?.clone();
        match sb.mode {
            SandboxMode::None => {
                return Err(ApiError::invalid(format!(
                    "sandbox {} is on the none network: it cannot be connected to any network",
                    sb.name
                )))
            }
            SandboxMode::Host => {
                return Err(ApiError::invalid(format!(
                    "sandbox {} uses the host's namespace: it cannot be connected to networks",
                    sb.name
                )))
            }
            SandboxMode::Container(ref of) => {
                return Err(ApiError::invalid(format!(
                    "sandbox {} shares the namespace of {of}: connect {of} instead",
                    sb.name
                )))
            }
            SandboxMode::Netns => {}
        }
        if self.driver_of(&net)?.sandbox_mode() != SandboxMode::Netns {
            return Err(ApiError::invalid(format!(
                "a sandbox cannot be connected to the {} network after creation; use `sandbox create --network {}`",
                net.name, net.name
            )));
        }
        if sb.endpoints.iter().any(|e| {
            self.state
                .endpoints
                .get(e)
                .is_some_and(|e| e.network == net.id)
        }) {
            return Err(ApiError::conflict(format!(
                "sandbox {} is already connected to network {}",
                sb.name, net.name
            )));
        }
        let (link, ip, mac) = endpoint_options(
            req.link.as_deref(),
            req.ip.as_deref(),
            req.mac.as_deref(),
            &req.aliases,
        )?;
        self.connect(&sb.name, &net.id, ip, mac, req.aliases, link)?;
        Ok(json!({}))
    }

    /// Allocate, realise, persist; undo everything if a step fails.
    fn connect(
        &mut self,
        sandbox: &str,
        net_id: &str,
        ip: Option<Ipv4Addr>,
        mac: Option<Mac>,
        aliases: Vec<String>,
        link: LinkKind,
    ) -> ApiResult<()> {
        let net = self.state.networks[net_id].clone();
        if let Some(m) = mac {
            if self.endpoints_of_network(net_id).iter().any(|e| e.mac == m) {
                return Err(ApiError::conflict(format!(
                    "MAC address {m} is already in use on network {}",
                    net.name
                )));
            }
        }
        let pool = self
            .state
            .networks
            .get_mut(net_id)
            .and_then(|n| n.pool.as_mut())
            .ok_or_else(|| {
                ApiError::invalid(format!("network {} has no address pool", net.name))
            })?;
        let ip = pool.allocate(ip)?;
        let used: Vec<String> = self.state.sandboxes[sandbox]
            .endpoints
            .iter()
            .filter_map(|e| self.state.endpoints.get(e).map(|e| e.ifname.clone()))
            .collect();
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !used.contains(n))
            .unwrap_or_default();
        let id = model::new_id();
        let ep = Endpoint {
            host_ifname: (link == LinkKind::Veth).then(|| format!("vsh{}", &id[..10])),
            id,
            network: net_id.to_string(),
            sandbox: sandbox.to_string(),
            ip,
            mac: mac.unwrap_or_else(|| Mac::from_ip(ip)),
            aliases,
            link,
            ifname,
        };
        let undo_ip = |c: &mut Controller| {
            if let Some(p) = c
                .state
                .networks
                .get_mut(net_id)
                .and_then(|n| n.pool.as_mut())
            {
                p.release(ip);
            }
        };
        if let Err(e) = self.with_driver(net.driver, |d, ctx| d.create_endpoint(ctx, &net, &ep)) {
            let _ = self.with_driver(net.driver, |d, ctx| d.delete_endpoint(ctx, &net, &ep));
            undo_ip(self);
            return Err(e.into());
        }
        self.state.endpoints.insert(ep.id.clone(), ep.clone());
        if let Some(sb) = self.state.sandboxes.get_mut(sandbox) {
            sb.endpoints.push(ep.id.clone());
        }
        if let Err(e) = self.sync_hosts(net_id) {
            tracing::warn!(network = %net.name, error = %e, "cannot update the network's address table");
        }
        let done = self
            .refresh_sandbox_config(sandbox)
            .map_err(ApiError::from)
            .and_then(|_| self.save());
        if let Err(e) = done {
            let _ = self.with_driver(net.driver, |d, ctx| d.delete_endpoint(ctx, &net, &ep));
            self.state.endpoints.remove(&ep.id);
            if let Some(sb) = self.state.sandboxes.get_mut(sandbox) {
                sb.endpoints.retain(|x| *x != ep.id);
            }
            undo_ip(self);
            return Err(e);
        }
        tracing::info!(sandbox, network = %net.name, ip = %ip, link = ?link, "endpoint connected");
        Ok(())
    }

    pub fn network_disconnect(&mut self, req: api::Disconnect) -> ApiResult<Value> {
        let net = self.network(&req.network)?.clone();
        let sb = match self.sandbox(&req.sandbox) {
            Ok(s) => s.clone(),
            Err(e) if req.force => {
                // Forced: drop a stale endpoint whose sandbox is gone.
                let stale: Vec<String> = self
                    .endpoints_of_network(&net.id)
                    .iter()
                    .filter(|e| e.sandbox == req.sandbox)
                    .map(|e| e.id.clone())
                    .collect();
                if stale.is_empty() {
                    return Err(e);
                }
                for id in stale {
                    self.disconnect_endpoint(&id)?;
                }
                return Ok(json!({}));
            }
            Err(e) => return Err(e),
        };
        let ep_id = sb
            .endpoints
            .iter()
            .find(|e| {
                self.state
                    .endpoints
                    .get(*e)
                    .is_some_and(|e| e.network == net.id)
            })
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "sandbox {} is not connected to network {}",
                    sb.name, net.name
                ))
            })?;
        self.disconnect_endpoint(&ep_id)?;
        Ok(json!({}))
    }

    fn disconnect_endpoint(&mut self, ep_id: &str) -> ApiResult<()> {
        let ep = self.state.endpoints[ep_id].clone();
        let net = self.state.networks[&ep.network].clone();
        self.with_driver(net.driver, |d, ctx| d.delete_endpoint(ctx, &net, &ep))?;
        self.state.endpoints.remove(ep_id);
        if let Some(p) = self
            .state
            .networks
            .get_mut(&ep.network)
            .and_then(|n| n.pool.as_mut())
        {
            p.release(ep.ip);
        }
        if let Some(sb) = self.state.sandboxes.get_mut(&ep.sandbox) {
            sb.endpoints.retain(|e| e != ep_id);
        }
        if let Err(e) = self.sync_hosts(&ep.network) {
            tracing::warn!(network = %net.name, error = %e, "cannot update the network's address table");
        }
        if self.state.sandboxes.contains_key(&ep.sandbox) {
            if let Err(e) = self.refresh_sandbox_config(&ep.sandbox) {
                tracing::warn!(sandbox = %ep.sandbox, error = %format!("{e:#}"), "cannot update routes after disconnect");
            }
        }
        self.save()?;
        tracing::info!(sandbox = %ep.sandbox, network = %net.name, "endpoint disconnected");
        Ok(())
    }

    /// Default route via the first non-internal network, and resolv.conf naming the
    /// embedded resolver (user networks) or the upstreams (default bridge).
    fn refresh_sandbox_config(&self, name: &str) -> Result<()> {
        let sb = &self.state.sandboxes[name];
        if sb.mode != SandboxMode::Netns {
            return Ok(());
        }
        let nets: Vec<&Network> = sb
            .endpoints
            .iter()
            .filter_map(|e| self.state.endpoints.get(e))
            .filter_map(|e| self.state.networks.get(&e.network))
            .collect();
        let gw = nets
            .iter()
            .find(|n| !n.internal)
            .and_then(|n| n.pool.as_ref())
            .map(|p| p.gateway);
        sandbox::set_default_route(name, gw)?;
        match nets.iter().find(|n| n.has_embedded_dns()) {
            Some(n) => {
                let gw: Vec<IpAddr> = n.pool.iter().map(|p| IpAddr::V4(p.gateway)).collect();
                sandbox::write_resolv_conf(name, &gw, true)
            }
            None => sandbox::write_resolv_conf(name, &self.upstream_ips(), false),
        }
    }

    fn upstream_ips(&self) -> Vec<IpAddr> {
        self.cfg.dns_upstreams.iter().map(|a| a.ip()).collect()
    }

    // ---- sandboxes -----------------------------------------------------------------

    pub fn sandbox_create(&mut self, req: api::SandboxCreate) -> ApiResult<Value> {
        model::validate_name("sandbox", &req.name)?;
        if self.state.sandboxes.contains_key(&req.name) {
            return Err(ApiError::conflict(format!(
                "the sandbox name {} is already in use",
                req.name
            )));
        }
        if sandbox::netns_exists(&req.name) {
            return Err(ApiError::conflict(format!(
                "a network namespace named {} already exists (not made by vswitchd); pick another name or remove it",
                req.name
            )));
        }
        let net_ref = req.network.clone().unwrap_or_else(|| "bridge".into());
        if let Some(target) = net_ref.strip_prefix("container:") {
            return self.sandbox_join(&req, target);
        }
        let net = self.network(&net_ref)?.clone();
        let bindings = self.plan_bindings(&req, &net)?;
        let mode = self.driver_of(&net)?.sandbox_mode();
        if mode != SandboxMode::Netns
            && (req.ip.is_some() || !req.aliases.is_empty() || req.mac.is_some())
        {
            return Err(ApiError::invalid(format!(
                "--ip, --alias and --mac need a network; {} has none",
                net.name
            )));
        }
        let (link, ip, mac) = endpoint_options(
            req.link.as_deref(),
            req.ip.as_deref(),
            req.mac.as_deref(),
            &req.aliases,
        )?;
        if let (Some(ip), Some(pool)) = (ip, net.pool.as_ref()) {
            if pool.is_allocated(ip) {
                return Err(ApiError::conflict(format!(
                    "address {ip} is already in use on network {}",
                    net.name
                )));
            }
        }
        sandbox::ensure(&req.name, &mode).map_err(ApiError::system)?;
        let sb = Sandbox {
            id: model::new_id(),
            name: req.name.clone(),
            mode: mode.clone(),
            endpoints: Vec::new(),
            created: model::now_rfc3339(),
            ports: Vec::new(),
        };
        self.state.sandboxes.insert(sb.name.clone(), sb.clone());
        let result = match mode {
            SandboxMode::Netns => self
                .connect(&sb.name, &net.id, ip, mac, req.aliases, link)
                .and_then(|_| self.publish(&sb.name, &bindings))
                .and_then(|_| {
                    if let Some(s) = self.state.sandboxes.get_mut(&sb.name) {
                        s.ports = bindings.clone();
                    }
                    self.save()
                }),
            _ => self.save().and_then(|_| {
                sandbox::write_resolv_conf(&sb.name, &self.upstream_ips(), false)
                    .map_err(ApiError::system)
            }),
        };
        if let Err(e) = result {
            let eps = self
                .state
                .sandboxes
                .get(&sb.name)
                .map(|s| s.endpoints.clone())
                .unwrap_or_default();
            for ep in eps {
                let _ = self.disconnect_endpoint(&ep);
            }
            self.state.sandboxes.remove(&sb.name);
            let _ = sandbox::remove(&sb.name);
            let _ = self.save();
            return Err(e);
        }
        tracing::info!(sandbox = %sb.name, network = %net.name, "sandbox created");
        Ok(json!({ "Id": sb.id, "Name": sb.name }))
    }

    /// `--network container:TARGET`: a name for TARGET's namespace, nothing else.
    fn sandbox_join(&mut self, req: &api::SandboxCreate, target: &str) -> ApiResult<Value> {
        if !req.publish.is_empty() || req.publish_all {
            return Err(ApiError::invalid(
                "conflicting options: port publishing and the container type network mode",
            ));
        }
        if req.ip.is_some() || !req.aliases.is_empty() || req.mac.is_some() || req.link.is_some() {
            return Err(ApiError::invalid(
                "conflicting options: --ip, --alias, --mac and --link configure a network endpoint; a container-mode sandbox has none",
            ));
        }
        let t = self.sandbox(target)?;
        // Joining a sandbox that itself joined another joins the namespace's owner.
        let owner = match &t.mode {
            SandboxMode::Container(of) => of.clone(),
            _ => t.name.clone(),
        };
        let mode = SandboxMode::Container(owner.clone());
        sandbox::ensure(&req.name, &mode).map_err(ApiError::system)?;
        let sb = Sandbox {
            id: model::new_id(),
            name: req.name.clone(),
            mode,
            endpoints: Vec::new(),
            created: model::now_rfc3339(),
            ports: Vec::new(),
        };
        self.state.sandboxes.insert(sb.name.clone(), sb.clone());
        if let Err(e) = self.save() {
            self.state.sandboxes.remove(&sb.name);
            let _ = sandbox::remove(&sb.name);
            return Err(e);
        }
        tracing::info!(sandbox = %sb.name, joins = %owner, "sandbox created");
        Ok(json!({ "Id": sb.id, "Name": sb.name }))
    }

    pub fn sandbox_ls(&self) -> ApiResult<Value> {
        Ok(Value::Array(
            self.state
                .sandboxes
                .values()
                .map(|sb| {
                    let nets: Vec<String> = self.sandbox_networks(sb).iter().map(|(n, _)| n.name.clone()).collect();
                    let nets = match &sb.mode {
                        SandboxMode::Host => vec!["host".to_string()],
                        SandboxMode::None => vec!["none".to_string()],
                        SandboxMode::Container(of) => vec![format!("container:{of}")],
                        SandboxMode::Netns => nets,
                    };
                    json!({ "ID": &sb.id[..12], "Name": sb.name, "Networks": nets, "Created": sb.created })
                })
                .collect(),
        ))
    }

    fn sandbox_networks(&self, sb: &Sandbox) -> Vec<(&Network, &Endpoint)> {
        sb.endpoints
            .iter()
            .filter_map(|e| self.state.endpoints.get(e))
            .filter_map(|e| self.state.networks.get(&e.network).map(|n| (n, e)))
            .collect()
    }

    pub fn sandbox_inspect(&self, req: api::NameOnly) -> ApiResult<Value> {
        let sb = self.sandbox(&req.name)?;
        let mut networks = serde_json::Map::new();
        for (n, e) in self.sandbox_networks(sb) {
            let pool = n.pool.as_ref();
            networks.insert(
                n.name.clone(),
                json!({
                    "NetworkID": n.id,
                    "EndpointID": e.id,
                    "IPAddress": e.ip.to_string(),
                    "IPPrefixLen": pool.map(|p| p.subnet.prefix_len()).unwrap_or(0),
                    "Gateway": pool.map(|p| p.gateway.to_string()).unwrap_or_default(),
                    "MacAddress": e.mac.to_string(),
                    "Aliases": e.aliases,
                    "Link": e.link,
                    "Interface": e.ifname,
                    "HostInterface": e.host_ifname,
                }),
            );
        }
        let mode = match &sb.mode {
            SandboxMode::Netns => "netns".to_string(),
            SandboxMode::Host => "host".to_string(),
            SandboxMode::None => "none".to_string(),
            SandboxMode::Container(of) => format!("container:{of}"),
        };
        Ok(json!({
            "Id": sb.id,
            "Name": sb.name,
            "Created": sb.created,
            "NetworkMode": mode,
            "SandboxKey": sandbox::netns_path(&sb.name),
            "Ports": ports_json(&sb.ports),
            "Networks": networks,
        }))
    }

    pub fn sandbox_rm(&mut self, req: api::SandboxRm) -> ApiResult<Value> {
        let sb = self.sandbox(&req.name)?.clone();
        let joined: Vec<String> = self
            .state
            .sandboxes
            .values()
            .filter(|s| s.mode == SandboxMode::Container(sb.name.clone()))
            .map(|s| s.name.clone())
            .collect();
        if !joined.is_empty() && !req.force {
            return Err(ApiError::in_use(format!(
                "sandbox {} is joined by {} (--network container:{}); remove them first, or use -f",
                sb.name,
                joined.join(", "),
                sb.name
            )));
        }
        self.unpublish(&sb.name, &sb.ports);
        if let Some(s) = self.state.sandboxes.get_mut(&sb.name) {
            s.ports.clear();
        }
        for ep in sb.endpoints.clone() {
            if let Err(e) = self.disconnect_endpoint(&ep) {
                if !req.force {
                    return Err(e);
                }
                tracing::warn!(sandbox = %sb.name, error = %e, "forced removal: endpoint cleanup failed");
            }
        }
        sandbox::remove(&sb.name).map_err(ApiError::system)?;
        self.state.sandboxes.remove(&sb.name);
        self.save()?;
        tracing::info!(sandbox = %sb.name, "sandbox removed");
        Ok(json!(sb.name))
    }

    // ---- observability -------------------------------------------------------------

    pub fn fdb(&self, req: api::NameOnly) -> ApiResult<Value> {
        let net = self.network(&req.name)?;
        if net.pool.is_none() {
            return Err(ApiError::invalid(format!(
                "network {} has no data path (driver {})",
                net.name,
                net.driver.name()
            )));
        }
        let names: HashMap<PortId, String> = self
            .engine
            .ports()
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect();
        let owners: HashMap<PortId, &Endpoint> = self
            .state
            .endpoints
            .values()
            .filter_map(|e| self.ports.get(&e.id).map(|p| (*p, e)))
            .collect();
        let entries = self.engine.fdb(net.num).map_err(ApiError::system)?;
        Ok(Value::Array(
            entries
                .iter()
                .map(|e| {
                    let port = if e.port == switch::TUNNEL_PORT {
                        "vxlan".to_string()
                    } else {
                        names
                            .get(&e.port)
                            .cloned()
                            .or_else(|| self.engine.vlan_member_name(e.port))
                            .unwrap_or_else(|| e.port.to_string())
                    };
                    json!({
                        "mac": Mac(e.mac).to_string(),
                        "port": port,
                        "vtep": e.vtep.map(|v| v.to_string()),
                        "sandbox": owners.get(&e.port).map(|ep| ep.sandbox.clone()),
                        "age": e.age_secs,
                        "static": e.is_static,
                        "fast_path": e.fast_path,
                    })
                })
                .collect(),
        ))
    }

    /// A port by the switch-side interface name, `SANDBOX:ethN`, or a sandbox with a
    /// single endpoint.
    fn resolve_port(&self, p: &str) -> ApiResult<PortId> {
        let port_of = |e: &Endpoint| self.ports.get(&e.id).copied();
        let eps: Vec<&Endpoint> = match p.split_once(':') {
            Some((sb, ifname)) => self
                .state
                .endpoints
                .values()
                .filter(|e| e.sandbox == sb && e.ifname == ifname)
                .collect(),
            None => {
                let by_host: Vec<&Endpoint> = self
                    .state
                    .endpoints
                    .values()
                    .filter(|e| e.host_ifname.as_deref() == Some(p))
                    .collect();
                if by_host.is_empty() {
                    self.state
                        .endpoints
                        .values()
                        .filter(|e| e.sandbox == p)
                        .collect()
                } else {
                    by_host
                }
            }
        };
        match eps.as_slice() {
            [e] => port_of(e).ok_or_else(|| {
                ApiError::not_found(format!("port {p} is not attached to the data plane"))
            }),
            [] => Err(ApiError::not_found(format!(
                "no port named {p} (give a port name, SANDBOX or SANDBOX:ethN)"
            ))),
            many => Err(ApiError::invalid(format!(
                "sandbox {p} has {} ports; name one as {p}:{}",
                many.len(),
                many[0].ifname
            ))),
        }
    }

    pub fn capture_start(&mut self, req: api::CaptureStart) -> ApiResult<Value> {
        let port = self.resolve_port(&req.port)?;
        let file = std::path::PathBuf::from(&req.file);
        if !file.is_absolute() {
            return Err(ApiError::invalid(format!(
                "capture file {} must be an absolute path",
                req.file
            )));
        }
        if req.count == Some(0) {
            return Err(ApiError::invalid("capture count must be at least 1"));
        }
        let id = self
            .captures
            .start(&self.engine, port, &file, req.count)
            .map_err(ApiError::system)?;
        Ok(json!({ "id": id }))
    }

    pub fn capture_status(&self, req: api::CaptureId) -> ApiResult<Value> {
        let s = self
            .captures
            .status(req.id)
            .ok_or_else(|| ApiError::not_found(format!("no capture {}", req.id)))?;
        Ok(json!({ "frames": s.frames, "done": s.done }))
    }

    pub fn capture_stop(&mut self, req: api::CaptureId) -> ApiResult<Value> {
        let frames = self
            .captures
            .stop(&self.engine, req.id)
            .ok_or_else(|| ApiError::not_found(format!("no capture {}", req.id)))?
            .map_err(ApiError::system)?;
        Ok(json!({ "frames": frames }))
    }

    /// NAT sessions, optionally only those of one network's addresses.
    pub fn conntrack(&self, req: api::Conntrack) -> ApiResult<Value> {
        let subnet = match &req.network {
            Some(n) => Some(
                self.network(n)?
                    .pool
                    .as_ref()
                    .map(|p| p.subnet)
                    .ok_or_else(|| {
                        ApiError::invalid(format!("network {n} has no addresses to track"))
                    })?,
            ),
            None => None,
        };
        let Some((_, sessions)) = self.engine.router().map_err(ApiError::system)? else {
            return Ok(json!([]));
        };
        let rows: Vec<&nat::SessionRow> = sessions
            .iter()
            .filter(|r| {
                subnet.is_none_or(|s| {
                    [
                        r.original.src.ip(),
                        r.original.dst.ip(),
                        r.translated.src.ip(),
                        r.translated.dst.ip(),
                    ]
                    .iter()
                    .any(|ip| s.contains(*ip))
                })
            })
            .collect();
        Ok(serde_json::to_value(rows).unwrap_or(Value::Null))
    }

    /// At a clean stop: every veth host end down until the next start attaches it again.
    pub fn park_endpoints(&self) {
        driver::bridge::park_endpoints(self.state.endpoints.values());
    }

    pub fn stats(&self, req: api::StatsGet) -> ApiResult<Value> {
        let mut s = self.engine.stats();
        let by_port: HashMap<PortId, &Endpoint> = self
            .state
            .endpoints
            .values()
            .filter_map(|e| self.ports.get(&e.id).map(|p| (*p, e)))
            .collect();
        if let Some(p) = &req.port {
            s.ports.retain(|x| {
                x.info.name == *p || by_port.get(&x.info.id).is_some_and(|e| e.sandbox == *p)
            });
            if s.ports.is_empty() {
                return Err(ApiError::not_found(format!(
                    "no port named {p} (give a port name or a sandbox name)"
                )));
            }
        }
        let ports: Vec<Value> = s
            .ports
            .iter()
            .map(|p| {
                let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
                if let Some(ep) = by_port.get(&p.info.id) {
                    v["sandbox"] = json!(ep.sandbox);
                    v["network"] =
                        json!(self.state.networks.get(&ep.network).map(|n| n.name.clone()));
                } else if let Some(role) = switch_port_role(p.info.network) {
                    v["network"] = json!(role);
                }
                if p.info.network == switch::ENDPOINT_TRUNK_NET {
                    // What the kernel dropped on its way to the worker (a sandbox's
                    // oversized frames, a full ring) shows here, not in the worker.
                    if let Some(kernel_end) = p.info.name.strip_suffix('w') {
                        if let Ok((_, tx)) =
                            crate::link::Netlink::new().and_then(|mut nl| nl.link_drops(kernel_end))
                        {
                            v["drops"]["trunk_kernel"] = json!(tx);
                        }
                    }
                }
                v
            })
            .collect();
        let router = self
            .engine
            .router()
            .map_err(ApiError::system)?
            .map(|(r, _)| r);
        let dns = self.engine.dns_stats().map_err(ApiError::system)?;
        let mut router = serde_json::to_value(router).unwrap_or(Value::Null);
        // The VTEP's drops by name too (`dropped` is indexed by `DropReason::ALL`).
        if let Some(o) = router.get_mut("overlay") {
            let drops: serde_json::Map<String, Value> = vxlan::DropReason::ALL
                .iter()
                .filter_map(|r| {
                    let name = serde_json::to_value(r).ok()?.as_str()?.to_string();
                    Some((name, o["dropped"][r.index()].clone()))
                })
                .collect();
            o["drops"] = Value::Object(drops);
        }
        Ok(json!({ "ports": ports, "workers": s.workers, "router": router, "dns": dns }))
    }
}

/// What `stats` shows as the network of the switch's own ports.
fn switch_port_role(net: switch::NetId) -> Option<&'static str> {
    match net {
        switch::UPLINK_NET => Some("(uplink)"),
        switch::TRUNK_NET => Some("(vlan trunk)"),
        switch::ENDPOINT_TRUNK_NET => Some("(endpoint trunk)"),
        _ => None,
    }
}

/// `--link`, `--ip`, `--mac` and `--alias` as `network connect` and `sandbox create`
/// take them, validated.
fn endpoint_options(
    link: Option<&str>,
    ip: Option<&str>,
    mac: Option<&str>,
    aliases: &[String],
) -> ApiResult<(LinkKind, Option<Ipv4Addr>, Option<Mac>)> {
    let link = link.map(LinkKind::parse).transpose()?.unwrap_or_default();
    let ip = ip.map(parse_ip).transpose()?;
    let mac = mac.map(Mac::parse).transpose()?;
    for a in aliases {
        model::validate_name("alias", a)?;
    }
    Ok((link, ip, mac))
}

fn parse_ip(s: &str) -> ApiResult<Ipv4Addr> {
    s.parse()
        .map_err(|_| ApiError::invalid(format!("invalid IPv4 address {s:?}")))
}

/// Docker's shape: {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}.
fn ports_json(bindings: &[Binding]) -> Value {
    let mut m = serde_json::Map::new();
    for b in bindings {
        let key = format!("{}/{}", b.port, b.proto);
        let entry = json!({
            "HostIp": b.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
            "HostPort": b.host_port.to_string(),
        });
        match m.get_mut(&key) {
            Some(Value::Array(a)) => a.push(entry),
            _ => {
                m.insert(key, json!([entry]));
            }
        }
    }
    Value::Object(m)
}
