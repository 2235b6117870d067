//! Docker's remote network driver (`vswitchd --docker-plugin`): dockerd's calls on the
//! plugin socket mapped onto the model. A Docker network is a vswitch network with
//! Docker's id (its pools as Docker's IPAM chose them, its `-o` options as vswitch
//! options, `-o vswitch.driver=bridge|overlay|macvlan`, `-o vswitch.name=NAME`); a
//! Docker endpoint is an endpoint of an *external* sandbox (one per endpoint, named
//! `docker-<endpoint id>`): vswitch makes the veth, keeps the switch's end and leaves
//! the container's in its own namespace for dockerd to move (Join's `SrcName`); Docker
//! owns the namespace, its addresses, routes, resolver and names.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::*;
use crate::docker_api as d;
use crate::http_door::CONTENT_TYPE;
use crate::model::{External, Outside, Runtime};

use super::docker_ipam as ipam;

/// The label marking networks Docker made.
pub const OWNER_LABEL: &str = "vswitch.owner";
/// `--aux-address`es of a Docker network (never handed out), kept with it.
pub const AUX_LABEL: &str = "vswitch.docker.aux-addresses";
/// `-o` options of `docker network create` vswitch takes for itself.
pub const OPT_DRIVER: &str = "vswitch.driver";
pub const OPT_NAME: &str = "vswitch.name";

/// Why a call got no answer of its own.
enum Refusal {
    /// Not a call this plugin serves: 404, as dockerd expects of calls a plugin does
    /// not implement.
    Unknown,
    Api(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Refusal {
        Refusal::Api(e)
    }
}

type Answer = Result<Value, Refusal>;

fn parse<T: DeserializeOwned + Default>(method: &str, body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("malformed JSON in {method}: {e}")))
}

fn json<T: serde::Serialize>(v: T) -> Answer {
    serde_json::to_value(v).map_err(|e| Refusal::Api(ApiError::invalid(e.to_string())))
}

fn empty() -> Answer {
    Ok(Value::Object(Default::default()))
}

/// Docker's ids: 64 hex digits.
fn docker_id(what: &str, id: &str) -> ApiResult<String> {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid(format!(
            "invalid {what} {id:?}: expected Docker's 64 hex digits"
        )))
    }
}

/// `ADDRESS/LEN` (or a bare address) as Docker writes gateways and endpoint addresses.
fn address<A: std::str::FromStr>(what: &str, s: &str) -> ApiResult<Option<A>> {
    if s.is_empty() {
        return Ok(None);
    }
    let a = s.split('/').next().unwrap_or(s);
    a.parse()
        .map(Some)
        .map_err(|_| ApiError::invalid(format!("invalid {what} {s:?}")))
}

/// An option's value as a string (Docker sends `-o` values as strings, flags as
/// booleans).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn flag(options: &BTreeMap<String, Value>, key: &str) -> bool {
    options
        .get(key)
        .is_some_and(|v| v == &Value::Bool(true) || v == "true")
}

impl Controller {
    /// The fd that is readable when dockerd's calls wait.
    pub fn plugin_fd(&self) -> Option<std::os::fd::RawFd> {
        self.plugin.as_ref().map(|p| p.wake_fd())
    }

    /// Answer every call waiting on the plugin socket.
    pub fn plugin_calls(&mut self) {
        let Some(calls) = self.plugin.as_ref().map(|p| p.drain()) else {
            return;
        };
        for call in calls {
            if call.verb != hyper::Method::POST {
                let body = serde_json::json!({ "Err": "the plugin protocol is POST only" });
                call.answer(405, CONTENT_TYPE, body.to_string().into_bytes());
                continue;
            }
            let (status, body) = match self.docker_call(&call.method, &call.body) {
                Ok(v) => (200, v.to_string()),
                Err(Refusal::Unknown) => (
                    404,
                    serde_json::json!({ "Err": format!("{} is not served by this plugin", call.method) })
                        .to_string(),
                ),
                Err(Refusal::Api(e)) => {
                    tracing::warn!(call = %call.method, error = %e.message, "Docker plugin call refused");
                    // Network calls read `Err`, IPAM calls `Error`.
                    let body = serde_json::json!({ "Err": e.message, "Error": e.message });
                    (500, body.to_string())
                }
            };
            call.answer(status, CONTENT_TYPE, body.into_bytes());
        }
    }

    fn docker_call(&mut self, method: &str, body: &[u8]) -> Answer {
        match method {
            "Plugin.Activate" => json(d::Activate {
                implements: vec!["NetworkDriver", "IpamDriver"],
            }),
            "IpamDriver.GetCapabilities" => json(ipam::Capabilities {
                requires_mac_address: false,
                requires_request_replay: false,
            }),
            "IpamDriver.GetDefaultAddressSpaces" => json(ipam::AddressSpaces {
                local_default_address_space: "vswitch",
                global_default_address_space: "vswitch-global",
            }),
            "IpamDriver.RequestPool" => Ok(self.ipam_request_pool(parse(method, body)?)?),
            "IpamDriver.ReleasePool" => Ok(self.ipam_release_pool(parse(method, body)?)?),
            "IpamDriver.RequestAddress" => Ok(self.ipam_request_address(parse(method, body)?)?),
            "IpamDriver.ReleaseAddress" => Ok(self.ipam_release_address(parse(method, body)?)?),
            "NetworkDriver.GetCapabilities" => json(d::Capabilities {
                scope: "local",
                connectivity_scope: "local",
            }),
            "NetworkDriver.CreateNetwork" => self.docker_create_network(parse(method, body)?),
            "NetworkDriver.DeleteNetwork" => self.docker_delete_network(parse(method, body)?),
            "NetworkDriver.CreateEndpoint" => self.docker_create_endpoint(parse(method, body)?),
            "NetworkDriver.DeleteEndpoint" => self.docker_delete_endpoint(parse(method, body)?),
            "NetworkDriver.EndpointOperInfo" => self.docker_oper_info(parse(method, body)?),
            "NetworkDriver.Join" => self.docker_join(parse(method, body)?),
            "NetworkDriver.Leave" => self.docker_leave(parse(method, body)?),
            "NetworkDriver.ProgramExternalConnectivity" => {
                self.docker_publish(parse(method, body)?)
            }
            "NetworkDriver.RevokeExternalConnectivity" => {
                self.docker_unpublish(parse(method, body)?)
            }
            // Node discovery is for Docker's own overlay; nothing to do.
            "NetworkDriver.DiscoverNew" | "NetworkDriver.DiscoverDelete" => empty(),
            _ => Err(Refusal::Unknown),
        }
    }

    fn docker_create_network(&mut self, req: d::CreateNetwork) -> Answer {
        let id = docker_id("NetworkID", &req.network_id)?;
        if self.state.networks.contains_key(&id) {
            // Made already (dockerd asking again after a restart of either side).
            return empty();
        }
        if req.ipv4_data.len() > 1 || req.ipv6_data.len() > 1 {
            return Err(ApiError::invalid(
                "a vswitch network has one IPv4 and one IPv6 pool at most: give one --subnet per family",
            )
            .into());
        }
        let mut options: BTreeMap<String, String> = match req.options.get(d::GENERIC) {
            Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
            _ => BTreeMap::new(),
        };
        if let Some(mtu) = options.remove("com.docker.network.driver.mtu") {
            options.insert("mtu".into(), mtu);
        }
        let driver = options
            .remove(OPT_DRIVER)
            .unwrap_or_else(|| "bridge".into());
        let name = options
            .remove(OPT_NAME)
            .unwrap_or_else(|| format!("docker-{}", &id[..12]));
        let v4 = req.ipv4_data.first().filter(|p| !p.pool.is_empty());
        let v6 = req.ipv6_data.first().filter(|p| !p.pool.is_empty());
        let gateway = |p: &d::IpamData| -> ApiResult<Option<String>> {
            Ok(address::<std::net::IpAddr>("gateway", &p.gateway)?.map(|g| g.to_string()))
        };
        let ipv6 = flag(&req.options, d::ENABLE_IPV6) || v6.is_some();
        let create = api::NetworkCreate {
            id: Some(id.clone()),
            name,
            driver: Some(driver),
            subnet: v4.map(|p| p.pool.clone()),
            gateway: v4.map(gateway).transpose()?.flatten(),
            ipv4: Some(v4.is_some() || !ipv6),
            ipv6,
            subnet6: v6.map(|p| p.pool.clone()),
            gateway6: v6.map(gateway).transpose()?.flatten(),
            internal: flag(&req.options, d::INTERNAL),
            options,
            labels: BTreeMap::from([(OWNER_LABEL.to_string(), "docker".to_string())]),
            ..Default::default()
        };
        let aux: Vec<std::net::IpAddr> = v4
            .into_iter()
            .chain(v6)
            .flat_map(|p| p.aux_addresses.values())
            .map(|a| address::<std::net::IpAddr>("auxiliary address", a))
            .collect::<ApiResult<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        let mut create = create;
        if !aux.is_empty() {
            let list: Vec<String> = aux.iter().map(IpAddr::to_string).collect();
            create.labels.insert(AUX_LABEL.into(), list.join(","));
        }
        let made = self.network_create(create)?;
        self.reserve_aux(&made.id);
        tracing::info!(network = %made.id, who = "docker", "network created");
        empty()
    }

    /// Keep a Docker network's `--aux-address`es out of its pools (at create and on
    /// restore: pools are rebuilt from the endpoints).
    pub(super) fn reserve_aux(&mut self, net_id: &str) {
        let Some(list) = self
            .state
            .networks
            .get(net_id)
            .and_then(|n| n.labels.get(AUX_LABEL))
            .cloned()
        else {
            return;
        };
        for a in list.split(',').filter_map(|a| a.parse::<IpAddr>().ok()) {
            match a {
                IpAddr::V4(a) => self.state.pool_mut(net_id).map(|p| p.reserve(a)),
                IpAddr::V6(a) => self.state.pool6_mut(net_id).map(|p| p.reserve(a)),
            };
        }
    }

    fn docker_delete_network(&mut self, req: d::NetworkOnly) -> Answer {
        let id = docker_id("NetworkID", &req.network_id)?;
        if !self.state.networks.contains_key(&id) {
            return empty();
        }
        // Endpoints Docker left behind (a dockerd that died mid-way) go with it.
        let left: Vec<String> = self
            .state
            .sandboxes
            .values()
            .filter(|s| matches!(s.mode, SandboxMode::External(_)))
            .filter(|s| {
                s.endpoints
                    .iter()
                    .any(|e| self.state.endpoints.get(e).is_some_and(|e| e.network == id))
            })
            .map(|s| s.name.clone())
            .collect();
        for name in left {
            self.sandbox_rm(api::SandboxRm { name, force: true })?;
        }
        self.network_rm(api::Names {
            names: vec![id.clone()],
        })?;
        tracing::info!(network = %id, who = "docker", "network removed");
        empty()
    }

    /// The external sandbox of Docker endpoint `id`.
    fn docker_sandbox(&self, id: &str) -> Option<&Sandbox> {
        self.state.sandboxes.values().find(|s| {
            matches!(&s.mode, SandboxMode::External(x) if x.runtime == Runtime::Docker && x.id == id)
        })
    }

    fn docker_endpoint(&self, id: &str) -> ApiResult<(Sandbox, Endpoint)> {
        let sb = self.docker_sandbox(id).cloned().ok_or_else(|| {
            ApiError::not_found(format!(
                "endpoint {} is not one of vswitch's (CreateEndpoint first)",
                &id[..12.min(id.len())]
            ))
        })?;
        let ep = self.sole_endpoint(&sb)?;
        Ok((sb, ep))
    }

    fn docker_create_endpoint(&mut self, req: d::CreateEndpoint) -> Answer {
        let net_id = docker_id("NetworkID", &req.network_id)?;
        let ep_id = docker_id("EndpointID", &req.endpoint_id)?;
        let net = self.state.networks.get(&net_id).cloned().ok_or_else(|| {
            ApiError::not_found(format!(
                "network {} is not a vswitch network (was it removed from vswitch?)",
                &net_id[..12]
            ))
        })?;
        if self.docker_sandbox(&ep_id).is_some() {
            return Err(
                ApiError::conflict(format!("endpoint {} exists already", &ep_id[..12])).into(),
            );
        }
        let given = req.interface.unwrap_or_default();
        let mac = match given.mac_address.as_str() {
            "" => None,
            m => Some(Mac::parse(m).map_err(|e| ApiError::invalid(format!("MacAddress: {e}")))?),
        };
        let (ip, ip6) = (
            address("Address", &given.address)?,
            address("AddressIPv6", &given.address_ipv6)?,
        );
        // Addresses vswitch's IPAM driver gave Docker for this endpoint: it takes them.
        for a in [ip.map(IpAddr::V4), ip6.map(IpAddr::V6)]
            .into_iter()
            .flatten()
        {
            if self.docker_ipam.reserved.remove(&a) {
                self.release_docker_reservation(a);
            }
        }
        let want = Wanted {
            link: LinkKind::Veth,
            ip,
            ip6,
            mac,
            aliases: Vec::new(),
            security: model::PortSecurity::default(),
            ifname: None,
            outside: Some(Outside::Docker {
                peer: format!("vsc{}", &ep_id[..10]),
            }),
        };
        let name = format!("docker-{}", &ep_id[..12]);
        let sb = Sandbox {
            id: model::new_id(),
            name: name.clone(),
            mode: SandboxMode::External(External {
                runtime: Runtime::Docker,
                id: ep_id.clone(),
                netns: None,
            }),
            endpoints: Vec::new(),
            created: model::now_rfc3339(),
            ports: Vec::new(),
            extra_hosts: Vec::new(),
        };
        self.state.sandboxes.insert(name.clone(), sb);
        if let Err(e) = self.connect(&name, &net.id, want) {
            self.state.sandboxes.remove(&name);
            return Err(e.into());
        }
        let (_, ep) = self.docker_endpoint(&ep_id)?;
        tracing::info!(endpoint = %&ep_id[..12], network = %net.name, ip = ?ep.ip, ip6 = ?ep.ip6, who = "docker", "endpoint created");
        // Only what Docker did not give: giving back an address it gave is an error.
        let prefix = |len: Option<u8>| len.map_or(String::new(), |l| format!("/{l}"));
        let back = d::Interface {
            address: match (given.address.is_empty(), ep.ip) {
                (true, Some(ip)) => format!(
                    "{ip}{}",
                    prefix(net.pool.as_ref().map(|p| p.subnet.prefix_len()))
                ),
                _ => String::new(),
            },
            address_ipv6: match (given.address_ipv6.is_empty(), ep.ip6) {
                (true, Some(ip)) => format!(
                    "{ip}{}",
                    prefix(net.pool6.as_ref().map(|p| p.subnet.prefix_len()))
                ),
                _ => String::new(),
            },
            mac_address: if given.mac_address.is_empty() {
                ep.mac.to_string()
            } else {
                String::new()
            },
        };
        json(d::EndpointCreated {
            interface: Some(back),
        })
    }

    fn docker_delete_endpoint(&mut self, req: d::EndpointOnly) -> Answer {
        let ep_id = docker_id("EndpointID", &req.endpoint_id)?;
        let Some(name) = self.docker_sandbox(&ep_id).map(|s| s.name.clone()) else {
            // Gone already: deleting twice is not an error.
            return empty();
        };
        self.sandbox_rm(api::SandboxRm { name, force: true })?;
        tracing::info!(endpoint = %&ep_id[..12], who = "docker", "endpoint deleted");
        empty()
    }

    fn docker_oper_info(&mut self, req: d::EndpointOnly) -> Answer {
        let ep_id = docker_id("EndpointID", &req.endpoint_id)?;
        let (_, ep) = self.docker_endpoint(&ep_id)?;
        let mut value = BTreeMap::new();
        value.insert("vswitch.sandbox".into(), Value::String(ep.sandbox.clone()));
        value.insert("MacAddress".into(), Value::String(ep.mac.to_string()));
        if let Some(h) = &ep.host_ifname {
            value.insert("vswitch.port".into(), Value::String(h.clone()));
        }
        json(d::OperInfo { value })
    }

    fn docker_join(&mut self, req: d::Join) -> Answer {
        let ep_id = docker_id("EndpointID", &req.endpoint_id)?;
        let (sb, ep) = self.docker_endpoint(&ep_id)?;
        let Some(Outside::Docker { peer }) = ep.outside.clone() else {
            return Err(ApiError::invalid("not a Docker endpoint").into());
        };
        if let SandboxMode::External(x) = &sb.mode {
            if let Some(k) = x
                .netns
                .as_ref()
                .filter(|k| k.as_os_str() != req.sandbox_key.as_str())
            {
                return Err(ApiError::conflict(format!(
                    "endpoint {} has joined sandbox {} already",
                    &ep_id[..12],
                    k.display()
                ))
                .into());
            }
        }
        let net = self
            .state
            .networks
            .get(&ep.network)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("network {} is gone", ep.network)))?;
        let join = self.driver_of(&net)?.join(&net);
        if let Some(s) = self.state.sandboxes.get_mut(&sb.name) {
            if let SandboxMode::External(x) = &mut s.mode {
                x.netns = (!req.sandbox_key.is_empty()).then(|| req.sandbox_key.clone().into());
            }
        }
        self.save()?;
        tracing::info!(endpoint = %&ep_id[..12], sandbox = %req.sandbox_key, who = "docker", "endpoint joined");
        json(d::Joined {
            interface_name: d::InterfaceName {
                src_name: peer,
                dst_prefix: "eth".into(),
            },
            gateway: join.gateway.map(|g| g.to_string()).unwrap_or_default(),
            gateway_ipv6: join.gateway6.map(|g| g.to_string()).unwrap_or_default(),
            static_routes: Vec::new(),
            disable_gateway_service: true,
        })
    }

    fn docker_leave(&mut self, req: d::EndpointOnly) -> Answer {
        let ep_id = docker_id("EndpointID", &req.endpoint_id)?;
        let (sb, _) = self.docker_endpoint(&ep_id)?;
        if let Some(s) = self.state.sandboxes.get_mut(&sb.name) {
            if let SandboxMode::External(x) = &mut s.mode {
                x.netns = None;
            }
        }
        self.save()?;
        empty()
    }

    /// `docker run -p`: the endpoint's published ports, through vswitch's NAT on the
    /// uplink (and the host's proxy where vswitchd has the host port).
    fn docker_publish(&mut self, req: d::ProgramExternal) -> Answer {
        let ep_id = docker_id("EndpointID", &req.endpoint_id)?;
        let (sb, ep) = self.docker_endpoint(&ep_id)?;
        let maps: Vec<d::PortBinding> = match req.options.get(d::PORTMAP) {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| ApiError::invalid(format!("malformed {}: {e}", d::PORTMAP)))?,
        };
        let mut publish = Vec::new();
        for m in &maps {
            let proto = match m.proto {
                6 => "tcp",
                17 => "udp",
                132 => "sctp",
                p => {
                    return Err(ApiError::invalid(format!(
                        "cannot publish IP protocol {p}: tcp and udp only"
                    ))
                    .into())
                }
            };
            let end = m.host_port_end.max(m.host_port);
            if end != m.host_port {
                return Err(ApiError::invalid(format!(
                    "host port ranges ({}-{end}) are not supported: publish one host port per container port",
                    m.host_port
                ))
                .into());
            }
            let host = match m.host_ip.as_str() {
                "" => String::new(),
                ip if ip.contains(':') => format!("[{ip}]:"),
                ip => format!("{ip}:"),
            };
            let host_port = if m.host_port == 0 {
                String::new()
            } else {
                m.host_port.to_string()
            };
            publish.push(format!("{host}{host_port}:{}/{proto}", m.port));
        }
        if publish.is_empty() {
            return empty();
        }
        let net = self.state.networks[&ep.network].clone();
        let plan = api::SandboxCreate {
            name: sb.name.clone(),
            publish,
            ..Default::default()
        };
        // Programmed again (a second call): the old ones go first, or they would
        // clash with themselves.
        self.unpublish(&sb.name, &sb.ports);
        if let Some(s) = self.state.sandboxes.get_mut(&sb.name) {
            s.ports.clear();
        }
        let bindings = self.plan_bindings(&plan, &net)?;
        self.publish(&sb.name, &bindings)?;
        if let Some(s) = self.state.sandboxes.get_mut(&sb.name) {
            s.ports = bindings;
        }
        self.save()?;
        tracing::info!(endpoint = %&ep_id[..12], ports = maps.len(), who = "docker", "ports published");
        empty()
    }

    fn docker_unpublish(&mut self, req: d::EndpointOnly) -> Answer {
        let ep_id = docker_id("EndpointID", &req.endpoint_id)?;
        let Some(sb) = self.docker_sandbox(&ep_id).cloned() else {
            return empty();
        };
        self.unpublish(&sb.name, &sb.ports);
        if let Some(s) = self.state.sandboxes.get_mut(&sb.name) {
            s.ports.clear();
        }
        self.save()?;
        empty()
    }
}
