//! CNI runtimes (`vswitch-cni`, over the control socket): an attachment (container
//! id, interface) is an endpoint of an *external* sandbox (`cni-<container>-<ifname>`)
//! whose container end vswitch makes in CNI_NETNS under CNI_IFNAME, with its addresses
//! and default routes, as CNI plugins do; the runtime owns the namespace. DEL is
//! idempotent, CHECK compares the namespace with the model, GC removes attachments the
//! runtime no longer lists.

use super::*;
use crate::model::{External, Outside, Runtime};

/// CNI_IFNAME and container ids as the spec allows them, short enough for our names.
fn check_key(container_id: &str, ifname: &str) -> ApiResult<()> {
    if container_id.is_empty()
        || !container_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return Err(ApiError::invalid(format!(
            "invalid container id {container_id:?}: letters, digits, '_', '.', '-' only"
        )));
    }
    if ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ':']) || ifname == "." {
        return Err(ApiError::invalid(format!(
            "invalid interface name {ifname:?}: 1-15 characters, no '/' or ':'"
        )));
    }
    Ok(())
}

/// The external sandbox's name for an attachment.
fn sandbox_name(container_id: &str, ifname: &str) -> String {
    let short: String = container_id.chars().take(12).collect();
    format!("cni-{short}-{ifname}").to_ascii_lowercase()
}

impl Controller {
    fn cni_sandbox(&self, key: &api::CniKey) -> Option<&Sandbox> {
        self.state.sandboxes.values().find(|s| match &s.mode {
            SandboxMode::External(x) => {
                x.runtime == Runtime::Cni
                    && x.id == key.container_id
                    && s.endpoints.iter().any(|e| {
                        self.state
                            .endpoints
                            .get(e)
                            .is_some_and(|e| e.ifname == key.ifname)
                    })
            }
            _ => false,
        })
    }

    pub fn cni_add(&mut self, req: api::CniAdd) -> ApiResult<api::CniResult> {
        check_key(&req.container_id, &req.ifname)?;
        let key = api::CniKey {
            container_id: req.container_id.clone(),
            ifname: req.ifname.clone(),
        };
        if self.cni_sandbox(&key).is_some() {
            return Err(ApiError::conflict(format!(
                "container {} is attached as {} already (DEL it first)",
                req.container_id, req.ifname
            )));
        }
        let path = std::path::PathBuf::from(&req.netns);
        crate::netns::open_path(&path)
            .map_err(|e| ApiError::invalid(format!("CNI_NETNS {}: {e}", req.netns)))?;
        let net_id = match self.network(&req.network) {
            Ok(n) => n.id.clone(),
            Err(_) if req.subnet.is_some() => {
                let made = self.network_create(api::NetworkCreate {
                    name: req.network.clone(),
                    subnet: req.subnet.clone(),
                    gateway: req.gateway.clone(),
                    labels: BTreeMap::from([("vswitch.owner".to_string(), "cni".to_string())]),
                    ..Default::default()
                })?;
                made.id
            }
            Err(e) => {
                return Err(ApiError::not_found(format!(
                    "{}; give \"subnet\" in the network configuration to have it created",
                    e.message
                )))
            }
        };
        let net = self.state.networks[&net_id].clone();
        let params = api::EndpointParams {
            ip: req.ip.clone(),
            ip6: req.ip6.clone(),
            mac: req.mac.clone(),
            aliases: req
                .name
                .iter()
                .filter(|n| model::validate_dns_name("name", n).is_ok())
                .cloned()
                .collect(),
            ..Default::default()
        };
        let mut want = endpoint_options(&params)?;
        want.ifname = Some(req.ifname.clone());
        want.outside = Some(Outside::Netns { path: path.clone() });
        let name = sandbox_name(&req.container_id, &req.ifname);
        let sb = Sandbox {
            id: model::new_id(),
            name: name.clone(),
            mode: SandboxMode::External(External {
                runtime: Runtime::Cni,
                id: req.container_id.clone(),
                netns: Some(path.clone()),
            }),
            endpoints: Vec::new(),
            created: model::now_rfc3339(),
            ports: Vec::new(),
            extra_hosts: Vec::new(),
        };
        self.state.sandboxes.insert(name.clone(), sb);
        let undo = |c: &mut Controller| {
            let _ = c.sandbox_rm(api::SandboxRm {
                name: name.clone(),
                force: true,
            });
            c.state.sandboxes.remove(&name);
        };
        if let Err(e) = self.connect(&name, &net.id, want) {
            self.state.sandboxes.remove(&name);
            return Err(e);
        }
        let ep = self.sole_endpoint(&self.state.sandboxes[&name])?;
        let join = self.driver_of(&net)?.join(&net);
        if let Err(e) = default_routes(&path, &ep, &join) {
            undo(self);
            return Err(e);
        }
        if let Err(e) = self.cni_publish(&name, &net, &req.port_mappings) {
            undo(self);
            return Err(e);
        }
        self.save()?;
        tracing::info!(container = %req.container_id, ifname = %req.ifname, network = %net.name, ip = ?ep.ip, ip6 = ?ep.ip6, who = "cni", "attached");
        Ok(result(&net, &ep, &join, &req.netns))
    }

    /// `portMappings`: published as `-p` would, through the uplink's NAT.
    fn cni_publish(
        &mut self,
        sandbox: &str,
        net: &Network,
        maps: &[api::CniPortMapping],
    ) -> ApiResult<()> {
        if maps.is_empty() {
            return Ok(());
        }
        let mut publish = Vec::new();
        for m in maps {
            let proto = match m.protocol.to_ascii_lowercase().as_str() {
                "" | "tcp" => "tcp",
                "udp" => "udp",
                p => {
                    return Err(ApiError::invalid(format!(
                        "cannot publish protocol {p:?}: tcp and udp only"
                    )))
                }
            };
            let host = match m.host_ip.as_str() {
                "" => String::new(),
                ip if ip.contains(':') => format!("[{ip}]:"),
                ip => format!("{ip}:"),
            };
            publish.push(format!(
                "{host}{}:{}/{proto}",
                m.host_port, m.container_port
            ));
        }
        let plan = api::SandboxCreate {
            name: sandbox.to_string(),
            publish,
            ..Default::default()
        };
        let bindings = self.plan_bindings(&plan, net)?;
        self.publish(sandbox, &bindings)?;
        if let Some(s) = self.state.sandboxes.get_mut(sandbox) {
            s.ports = bindings;
        }
        Ok(())
    }

    pub fn cni_del(&mut self, key: api::CniKey) -> ApiResult<api::Empty> {
        check_key(&key.container_id, &key.ifname)?;
        let Some(name) = self.cni_sandbox(&key).map(|s| s.name.clone()) else {
            // Gone already, or never made: DEL succeeds (CNI spec: idempotent).
            return Ok(api::Empty {});
        };
        self.sandbox_rm(api::SandboxRm { name, force: true })?;
        tracing::info!(container = %key.container_id, ifname = %key.ifname, who = "cni", "detached");
        Ok(api::Empty {})
    }

    /// CHECK: the attachment exists, its switch end is attached, and the container's
    /// interface has the MAC and addresses vswitch gave it.
    pub fn cni_check(&mut self, key: api::CniKey) -> ApiResult<api::Empty> {
        check_key(&key.container_id, &key.ifname)?;
        let sb = self.cni_sandbox(&key).cloned().ok_or_else(|| {
            ApiError::not_found(format!(
                "container {} is not attached as {}",
                key.container_id, key.ifname
            ))
        })?;
        let ep = self.sole_endpoint(&sb)?;
        if !self.ports.contains_key(&ep.id) {
            return Err(ApiError::invalid(format!(
                "the switch's end of {} is not attached",
                key.ifname
            )));
        }
        let Some(Outside::Netns { path }) = ep.outside.clone() else {
            return Err(ApiError::invalid("not a CNI attachment"));
        };
        let ifname = ep.ifname.clone();
        let seen = crate::netns::run_in_path(&path, move || {
            let mut nl = crate::link::Netlink::new()?;
            let mac = nl.link_mac(&ifname).ok();
            let addrs = nl.addresses_of(&ifname)?;
            Ok((mac, addrs))
        })
        .map_err(|e| ApiError::invalid(format!("{} in {}: {e}", ep.ifname, path.display())))?;
        if seen.0 != Some(ep.mac.0) {
            return Err(ApiError::invalid(format!(
                "{} has MAC {:?}, not {}",
                ep.ifname, seen.0, ep.mac
            )));
        }
        let want: Vec<IpAddr> = ep
            .ip
            .map(IpAddr::V4)
            .into_iter()
            .chain(ep.ip6.map(IpAddr::V6))
            .collect();
        if let Some(missing) = want.iter().find(|a| !seen.1.contains(a)) {
            return Err(ApiError::invalid(format!(
                "{} lacks its address {missing}",
                ep.ifname
            )));
        }
        Ok(api::Empty {})
    }

    /// GC: attachments of `network` the runtime does not list as valid go.
    pub fn cni_gc(&mut self, req: api::CniGc) -> ApiResult<Vec<String>> {
        let net_id = self.network(&req.network)?.id.clone();
        let stale: Vec<(String, String, String)> = self
            .state
            .sandboxes
            .values()
            .filter_map(|s| match &s.mode {
                SandboxMode::External(x) if x.runtime == Runtime::Cni => {
                    let ep = s
                        .endpoints
                        .first()
                        .and_then(|e| self.state.endpoints.get(e))?;
                    (ep.network == net_id)
                        .then(|| (s.name.clone(), x.id.clone(), ep.ifname.clone()))
                }
                _ => None,
            })
            .filter(|(_, id, ifname)| {
                !req.valid
                    .iter()
                    .any(|k| &k.container_id == id && &k.ifname == ifname)
            })
            .collect();
        let mut gone = Vec::new();
        for (name, id, ifname) in stale {
            self.sandbox_rm(api::SandboxRm {
                name: name.clone(),
                force: true,
            })?;
            tracing::info!(container = %id, ifname = %ifname, who = "cni", "garbage-collected");
            gone.push(name);
        }
        Ok(gone)
    }
}

/// The default routes the network offers, in the container's namespace.
fn default_routes(path: &std::path::Path, ep: &Endpoint, join: &driver::JoinInfo) -> ApiResult<()> {
    let (gw, gw6, dev) = (
        join.gateway.filter(|_| ep.ip.is_some()),
        join.gateway6.filter(|_| ep.ip6.is_some()),
        ep.ifname.clone(),
    );
    crate::netns::run_in_path(path, move || {
        let mut nl = crate::link::Netlink::new()?;
        nl.set_up("lo")?;
        if let Some(gw) = gw {
            nl.add_default_route(gw)?;
        }
        if let Some(gw6) = gw6 {
            nl.add_default_route6(gw6, &dev)?;
        }
        Ok(())
    })
    .map_err(|e| ApiError::invalid(format!("default route in {}: {e}", path.display())))
}

/// The CNI result of an attachment.
fn result(net: &Network, ep: &Endpoint, join: &driver::JoinInfo, netns: &str) -> api::CniResult {
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    if let (Some(ip), Some(p)) = (ep.ip, net.pool.as_ref()) {
        ips.push(api::CniIp {
            address: format!("{ip}/{}", p.subnet.prefix_len()),
            gateway: join.gateway.map(|g| g.to_string()),
            interface: 0,
        });
        if let Some(gw) = join.gateway {
            routes.push(api::CniRoute {
                dst: "0.0.0.0/0".into(),
                gw: Some(gw.to_string()),
            });
        }
    }
    if let (Some(ip), Some(p)) = (ep.ip6, net.pool6.as_ref()) {
        ips.push(api::CniIp {
            address: format!("{ip}/{}", p.subnet.prefix_len()),
            gateway: join.gateway6.map(|g| g.to_string()),
            interface: 0,
        });
        if let Some(gw) = join.gateway6 {
            routes.push(api::CniRoute {
                dst: "::/0".into(),
                gw: Some(gw.to_string()),
            });
        }
    }
    api::CniResult {
        interfaces: vec![api::CniInterface {
            name: ep.ifname.clone(),
            mac: ep.mac.to_string(),
            sandbox: netns.to_string(),
        }],
        ips,
        routes,
        dns: api::CniDns {
            nameservers: join.resolver.map(|r| r.to_string()).into_iter().collect(),
        },
    }
}
