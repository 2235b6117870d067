//! The controller owns the model: it validates every request before changing anything,
//! asks drivers to realise the change, persists it, and only then acknowledges. One
//! file per job: networks, endpoints (connect, disconnect, join), sandboxes, published
//! ports, and what the data plane shows (observe); this one holds the model, start and
//! restore, and the lookups they share.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use switch::port::IoMode;
use switch::{Engine, PortId};

use crate::api;
use crate::capture::Captures;
use crate::driver::{self, Ctx, Driver};
use crate::error::{chain, ApiError, ApiResult};
use crate::host_port::HostPort;
use crate::ipam::{self, Pool};
use crate::ipam6::{self, Pool6};
use crate::model::{self, DriverKind, Endpoint, LinkKind, Mac, Network, Sandbox, SandboxMode};
use crate::proxy::Proxy;
use crate::publish::{self, Binding};
use crate::sandbox::{self, SandboxError};
use crate::state::{State, StateError, Store};

mod cluster;
mod cni;
mod docker;
mod docker_ipam;
mod reload;
mod scrape;

pub use reload::{Live, Reloaded, Reloader, SetLogLevel};
mod endpoints;
mod networks;
mod observe;
mod ports;
mod sandboxes;

use endpoints::{endpoint_options, parse_ip, Wanted};

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Load(#[from] StateError),
    #[error("create predefined networks")]
    Predefined(#[source] ApiError),
    #[error("save initial state")]
    Save(#[source] StateError),
    #[error("start the cluster store's agent")]
    Cluster(#[source] std::io::Error),
    #[error("serve the Docker plugin socket {}", .0.display())]
    Plugin(std::path::PathBuf, #[source] std::io::Error),
    #[error("serve metrics on {0}")]
    Metrics(std::net::SocketAddr, #[source] std::io::Error),
}

/// Daemon-wide settings the controller needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub io: IoMode,
    /// Upstream resolvers: the embedded DNS forwards to them, and resolv.conf of
    /// sandboxes on the default bridge names their addresses (resolv.conf has no ports).
    pub dns_upstreams: Vec<std::net::SocketAddr>,
    /// The uplink address, when there is an uplink (egress, published ports).
    pub uplink_ip: Option<Ipv4Addr>,
    /// The uplink's IPv6 address, when it has one (`--uplink-ip6`).
    pub uplink_ip6: Option<Ipv6Addr>,
    /// The overlay tunnel endpoint (`--vtep-ip`, else the uplink address).
    pub vtep_ip: Option<Ipv4Addr>,
    /// The host's address on the host port: what `--add-host NAME:host-gateway` names.
    pub host_gateway: Option<Ipv4Addr>,
    /// The cluster store, when there is one (`--cluster-store`).
    pub cluster: Option<crate::cluster::Settings>,
    /// Where automatic IPv6 subnets come from (`--ipv6-pool`); None: the host's
    /// unique local /48, chosen once and kept in the state dir.
    pub ipv6_pool: Option<ipnet::Ipv6Net>,
    /// Docker's plugin socket, when vswitchd serves Docker (`--docker-plugin`).
    pub docker_plugin: Option<std::path::PathBuf>,
    /// Where `/metrics` and `/healthz` are served (`--metrics-addr`).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

pub struct Controller {
    /// The cluster store's agent and what it told us. First, so that it stops first
    /// (giving the lease back) while the state dir is still this daemon's.
    cluster: Option<cluster::ClusterView>,
    cfg: Config,
    store: Store,
    state: State,
    engine: Engine,
    ports: HashMap<String, PortId>,
    captures: Captures,
    /// The host's own stack on the switch, when vswitchd has one (`--host-port`);
    /// declared after `engine`, so that it goes after the engine has stopped.
    host_port: Option<HostPort>,
    /// The userland proxies serving each sandbox's published ports on the host.
    proxies: HashMap<String, Vec<Proxy>>,
    /// Docker's plugin socket (`--docker-plugin`), opened once state is restored.
    plugin: Option<crate::http_door::HttpDoor>,
    /// Docker's IPAM driver calls between a pool or address and its network or endpoint.
    docker_ipam: docker_ipam::DockerIpam,
    /// The metrics address (`--metrics-addr`).
    metrics: Option<crate::http_door::HttpDoor>,
    /// Control-socket requests by (method, result), for the metrics.
    requests: BTreeMap<(&'static str, &'static str), u64>,
    /// Why the last save of the state failed, until one succeeds (`/healthz`).
    save_failed: std::cell::RefCell<Option<String>>,
    /// SIGHUP's configuration reload, when the daemon has a configuration file.
    reload: Option<reload::Reload>,
}

impl Controller {
    /// Load the saved state (or create the predefined networks) and rebuild the data
    /// plane from it.
    pub fn start(
        cfg: Config,
        store: Store,
        engine: Engine,
        host_port: Option<HostPort>,
    ) -> Result<Controller, StartError> {
        let loaded = store.load()?;
        let fresh = loaded.is_none();
        let cluster = match cfg.cluster.clone() {
            Some(s) => Some(cluster::ClusterView::new(
                crate::cluster::Cluster::start(s).map_err(StartError::Cluster)?,
            )),
            None => None,
        };
        let mut c = Controller {
            cfg,
            store,
            state: loaded.unwrap_or_default(),
            engine,
            ports: HashMap::new(),
            captures: Captures::default(),
            host_port,
            proxies: HashMap::new(),
            cluster,
            plugin: None,
            docker_ipam: Default::default(),
            metrics: None,
            requests: BTreeMap::new(),
            save_failed: Default::default(),
            reload: None,
        };
        if fresh {
            c.create_predefined().map_err(StartError::Predefined)?;
            c.store.save(&c.state).map_err(StartError::Save)?;
        }
        c.restore();
        if let Some(path) = c.cfg.docker_plugin.clone() {
            c.plugin = Some(
                crate::http_door::HttpDoor::start(
                    crate::http_door::Bind::Unix(path.clone()),
                    "Docker plugin socket",
                )
                .map_err(|e| StartError::Plugin(path.clone(), e))?,
            );
        }
        if let Some(addr) = c.cfg.metrics_addr {
            c.metrics = Some(
                crate::http_door::HttpDoor::start(crate::http_door::Bind::Tcp(addr), "metrics")
                    .map_err(|e| StartError::Metrics(addr, e))?,
            );
        }
        Ok(c)
    }

    fn create_predefined(&mut self) -> ApiResult<()> {
        let mut subnet: Ipv4Net = ipam::DEFAULT_BRIDGE_SUBNET
            .parse()
            .map_err(|e| ApiError::invalid(format!("the default bridge's subnet: {e}")))?;
        // A host that also runs Docker has docker0 on 172.17.0.1/16: take the next pool.
        let host = networks::host_addresses();
        if let Some(a) = host.iter().find(|a| ipam::overlaps(&subnet, &a.trunc())) {
            let taken: Vec<Ipv4Net> = host.iter().map(Ipv4Net::trunc).collect();
            let free = ipam::auto_subnet(&taken)?;
            tracing::warn!(
                "{subnet} is already on this host ({a}): the default bridge network uses {free}"
            );
            subnet = free;
        }
        let pool = Pool::new(subnet, None, None)?;
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
                pool6: None,
                internal: false,
                attachable: false,
                options,
                labels: BTreeMap::new(),
                created: model::now_rfc3339(),
                num,
                predefined: true,
                global: false,
                members: Vec::new(),
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
            if let (Some(p), Some(ip)) = (self.state.pool_mut(&ep.network), ep.ip) {
                p.reserve(ip);
            }
            if let (Some(p), Some(ip6)) = (self.state.pool6_mut(&ep.network), ep.ip6) {
                p.reserve(ip6);
            }
        }
        let nets: Vec<Network> = self.state.networks.values().cloned().collect();
        for net in &nets {
            self.reserve_aux(&net.id);
            if let Err(e) = self.with_driver(net.driver, |d, ctx| d.create_network(ctx, net)) {
                tracing::error!(network = %net.name, error = %chain(&e), "cannot restore network");
            }
        }
        let mut sandboxes: Vec<Sandbox> = self.state.sandboxes.values().cloned().collect();
        // Namespaces that others join come back before the sandboxes joining them.
        sandboxes.sort_by_key(|s| matches!(s.mode, SandboxMode::Container(_)));
        for sb in &sandboxes {
            if let Err(e) = sandbox::ensure(&sb.name, &sb.mode) {
                tracing::error!(sandbox = %sb.name, error = %chain(&e), "cannot restore sandbox namespace");
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
                    tracing::error!(sandbox = %sb.name, network = %net.name, error = %chain(&e), "cannot restore endpoint");
                }
            }
            if let Err(e) = self.publish(&sb.name, &sb.ports) {
                tracing::error!(sandbox = %sb.name, error = %e, "cannot restore published ports");
            }
            if let Err(e) = self.refresh_sandbox_config(&sb.name) {
                tracing::error!(sandbox = %sb.name, error = %chain(&e), "cannot restore routes and resolv.conf");
            }
        }
        self.sync_host_routes();
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
        f: impl FnOnce(&mut dyn Driver, &mut Ctx) -> driver::Result<T>,
    ) -> driver::Result<T> {
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

    /// The data plane's number for a new network: one past the highest.
    fn next_network_num(&self) -> u32 {
        self.state
            .networks
            .values()
            .map(|n| n.num)
            .max()
            .unwrap_or(0)
            + 1
    }

    fn save(&self) -> ApiResult<()> {
        let saved = self.store.save(&self.state);
        *self.save_failed.borrow_mut() = saved.as_ref().err().map(|e| e.to_string());
        Ok(saved?)
    }

    /// The one endpoint of an external sandbox (Docker's, a CNI attachment).
    fn sole_endpoint(&self, sb: &Sandbox) -> ApiResult<Endpoint> {
        sb.endpoints
            .first()
            .and_then(|e| self.state.endpoints.get(e))
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("sandbox {} has no endpoint", sb.name)))
    }

    /// Count a control-socket request (`vswitch_control_requests_total`).
    pub fn count_request(&mut self, method: &'static str, result: &'static str) {
        *self.requests.entry((method, result)).or_default() += 1;
    }

    /// Tell the data plane which endpoint owns which address on a network.
    fn sync_hosts(&mut self, net_id: &str) -> ApiResult<()> {
        let Some(net) = self.state.networks.get(net_id).cloned() else {
            return Ok(());
        };
        let hosts: Vec<driver::Host> = self
            .state
            .endpoints
            .values()
            .filter(|e| e.network == net_id)
            .map(|e| driver::Host {
                ip: e.ip,
                ip6: e.ip6,
                mac: e.mac,
            })
            .collect();
        self.with_driver(net.driver, |d, ctx| d.sync_network(ctx, &net, &hosts))?;
        self.sync_names(&net)
    }

    /// Give the network's embedded resolver its names: each endpoint's sandbox name and
    /// aliases, scoped to this network.
    fn sync_names(&mut self, net: &Network) -> ApiResult<()> {
        if !driver::for_kind(net.driver).is_some_and(|d| driver::serves_names(d.as_ref(), net)) {
            return Ok(());
        }
        let mut records: Vec<dns::Record> = self
            .state
            .endpoints
            .values()
            .filter(|e| e.network == net.id)
            .map(|e| dns::Record {
                name: e.sandbox.clone(),
                aliases: e.aliases.clone(),
                ipv4: e.ip,
                ipv6: e.ip6,
            })
            .collect();
        // The other hosts' endpoints of a global network answer here too.
        records.extend(self.remote_records(&net.id));
        let table = dns::NameTable::new(&records).map_err(|e| {
            ApiError::invalid(format!("names on network {} for its DNS: {e}", net.name))
        })?;
        Ok(self
            .engine
            .set_dns_names(net.num, Some(std::sync::Arc::new(table)))?)
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

    fn upstream_ips(&self) -> Vec<IpAddr> {
        self.cfg.dns_upstreams.iter().map(|a| a.ip()).collect()
    }

    /// At a clean stop: every veth host end down until the next start attaches it again.
    pub fn park_endpoints(&self) {
        driver::bridge::park_endpoints(self.state.endpoints.values());
    }
}
