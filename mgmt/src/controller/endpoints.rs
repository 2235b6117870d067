//! Endpoints: connecting sandboxes to networks and back, and what joining gives a
//! sandbox (its default route and resolver, from the networks' drivers).

use super::*;

impl Controller {
    pub fn network_connect(&mut self, req: api::Connect) -> ApiResult<api::Empty> {
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
            SandboxMode::External(ref x) => {
                return Err(ApiError::invalid(format!(
                    "sandbox {} is {}'s: connect it to networks there",
                    sb.name,
                    x.runtime.name()
                )))
            }
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
        let want = endpoint_options(&req.endpoint)?;
        self.connect(&sb.name, &net.id, want)?;
        Ok(api::Empty {})
    }

    /// Allocate, realise, persist; undo everything if a step fails.
    pub(super) fn connect(&mut self, sandbox: &str, net_id: &str, want: Wanted) -> ApiResult<()> {
        let (link, ip, ip6, mac) = (want.link, want.ip, want.ip6, want.mac);
        let net = self.state.networks[net_id].clone();
        if let (Some(ip6), None) = (ip6, &net.pool6) {
            return Err(ApiError::invalid(format!(
                "--ip6 {ip6}: network {} has no IPv6 (it was created without --ipv6)",
                net.name
            )));
        }
        if let (Some(ip), None) = (ip, &net.pool) {
            return Err(ApiError::invalid(format!(
                "--ip {ip}: network {} has no IPv4 (it is IPv6-only)",
                net.name
            )));
        }
        if net.pool.is_none() && net.pool6.is_none() {
            return Err(ApiError::invalid(format!(
                "network {} has no address pool",
                net.name
            )));
        }
        if let Some(m) = mac {
            if self.endpoints_of_network(net_id).iter().any(|e| e.mac == m) {
                return Err(ApiError::conflict(format!(
                    "MAC address {m} is already in use on network {}",
                    net.name
                )));
            }
        }
        if let Some(held) = self.remote_holder(&net, &want) {
            return Err(held);
        }
        let ip = self
            .state
            .pool_mut(net_id)
            .map(|p| p.allocate(ip))
            .transpose()?;
        let ip6 = match self.state.pool6_mut(net_id).map(|p| p.allocate(ip6)) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(e)) => {
                self.state.release(net_id, ip, None);
                return Err(e);
            }
        };
        let used: Vec<String> = self.state.sandboxes[sandbox]
            .endpoints
            .iter()
            .filter_map(|e| self.state.endpoints.get(e).map(|e| e.ifname.clone()))
            .collect();
        let ifname = want.ifname.clone().unwrap_or_else(|| {
            (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !used.contains(n))
                .unwrap_or_default()
        });
        let id = model::new_id();
        let ep = Endpoint {
            host_ifname: (link == LinkKind::Veth).then(|| format!("vsh{}", &id[..10])),
            id,
            network: net_id.to_string(),
            sandbox: sandbox.to_string(),
            ip,
            ip6,
            // A network has one pool at least (checked above): so has the endpoint.
            mac: mac.unwrap_or_else(|| Endpoint::default_mac(ip, ip6)),
            aliases: want.aliases.clone(),
            link,
            ifname,
            security: want.security.clone(),
            outside: want.outside.clone(),
        };
        let ep = if net.global {
            self.claim_address(&net, ep, &want)?
        } else {
            ep
        };
        let (ip, ip6) = (ep.ip, ep.ip6);
        let undo_ip = |c: &mut Controller| c.state.release(net_id, ip, ip6);
        if let Err(e) = self.with_driver(net.driver, |d, ctx| d.create_endpoint(ctx, &net, &ep)) {
            let _ = self.with_driver(net.driver, |d, ctx| d.delete_endpoint(ctx, &net, &ep));
            self.withdraw(&ep);
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
            self.withdraw(&ep);
            undo_ip(self);
            return Err(e);
        }
        tracing::info!(sandbox, network = %net.name, ip = ?ip, ip6 = ?ip6, link = ?link, "endpoint connected");
        Ok(())
    }

    pub fn network_disconnect(&mut self, req: api::Disconnect) -> ApiResult<api::Empty> {
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
                return Ok(api::Empty {});
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
        Ok(api::Empty {})
    }

    pub(super) fn disconnect_endpoint(&mut self, ep_id: &str) -> ApiResult<()> {
        let ep = self.state.endpoints[ep_id].clone();
        let net = self.state.networks[&ep.network].clone();
        self.with_driver(net.driver, |d, ctx| d.delete_endpoint(ctx, &net, &ep))?;
        self.withdraw(&ep);
        self.state.endpoints.remove(ep_id);
        self.state.release(&ep.network, ep.ip, ep.ip6);
        if let Some(sb) = self.state.sandboxes.get_mut(&ep.sandbox) {
            sb.endpoints.retain(|e| e != ep_id);
        }
        if let Err(e) = self.sync_hosts(&ep.network) {
            tracing::warn!(network = %net.name, error = %e, "cannot update the network's address table");
        }
        if self.state.sandboxes.contains_key(&ep.sandbox) {
            if let Err(e) = self.refresh_sandbox_config(&ep.sandbox) {
                tracing::warn!(sandbox = %ep.sandbox, error = %chain(&e), "cannot update routes after disconnect");
            }
        }
        self.save()?;
        tracing::info!(sandbox = %ep.sandbox, network = %net.name, "endpoint disconnected");
        Ok(())
    }

    /// What the sandbox's networks give it, in the order it joined them (each
    /// driver's `join`): the default route via the first that offers a gateway, and
    /// resolv.conf naming the first embedded resolver, else the upstreams.
    pub(super) fn refresh_sandbox_config(&self, name: &str) -> Result<(), SandboxError> {
        let sb = &self.state.sandboxes[name];
        if sb.mode != SandboxMode::Netns {
            return Ok(());
        }
        let joins: Vec<driver::JoinInfo> = sb
            .endpoints
            .iter()
            .filter_map(|e| self.state.endpoints.get(e))
            .filter_map(|e| self.state.networks.get(&e.network))
            .filter_map(|n| driver::for_kind(n.driver).map(|d| d.join(n)))
            .collect();
        let gw = joins.iter().find_map(|j| j.gateway);
        sandbox::set_default_route(name, gw)?;
        // IPv6's, out of the interface of the first network with an IPv6 gateway.
        let gw6 = sb
            .endpoints
            .iter()
            .filter_map(|e| self.state.endpoints.get(e))
            .filter(|e| e.ip6.is_some())
            .find_map(|e| {
                let n = self.state.networks.get(&e.network)?;
                let j = driver::for_kind(n.driver)?.join(n);
                Some((j.gateway6?, e.ifname.clone()))
            });
        sandbox::set_default_route6(name, gw6)?;
        if !sb.extra_hosts.is_empty() {
            let extra = sb
                .extra_hosts
                .iter()
                .filter_map(|h| self.extra_host(h).ok())
                .collect::<Vec<_>>();
            let own = sb
                .endpoints
                .first()
                .and_then(|e| self.state.endpoints.get(e))
                .and_then(|e| e.ip.map(IpAddr::V4).or(e.ip6.map(IpAddr::V6)));
            sandbox::write_hosts(name, own, &extra)?;
        }
        match joins.iter().find_map(|j| j.resolver) {
            Some(resolver) => sandbox::write_resolv_conf(name, &[resolver], true),
            None => sandbox::write_resolv_conf(name, &self.upstream_ips(), false),
        }
    }
}

impl Controller {
    /// An `--add-host NAME:IP` entry, `host-gateway` resolved to the host's address
    /// on the host port (Docker's `host.docker.internal:host-gateway`).
    pub(super) fn extra_host(&self, spec: &str) -> ApiResult<(IpAddr, String)> {
        let bad = |why: &str| {
            ApiError::invalid(format!(
                "invalid --add-host {spec:?}: {why} (expected NAME:IP or NAME:host-gateway)"
            ))
        };
        let (name, ip) = spec.split_once(':').ok_or_else(|| bad("no ':'"))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(bad("the name must be a host name"));
        }
        let ip = match ip {
            "host-gateway" => IpAddr::V4(self.cfg.host_gateway.ok_or_else(|| {
                ApiError::invalid(
                    "--add-host NAME:host-gateway needs the host port (vswitchd --host-port): the host has no address containers reach it at",
                )
            })?),
            ip => ip
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| bad("not an IP address"))?,
        };
        Ok((ip, name.to_string()))
    }
}

/// An endpoint as asked for (`--link`, `--ip`, `--ip6`, `--mac`, `--alias` as `network
/// connect` and `sandbox create` take them), validated.
pub(super) struct Wanted {
    pub link: LinkKind,
    pub ip: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    pub mac: Option<Mac>,
    pub aliases: Vec<String>,
    pub security: model::PortSecurity,
    /// The interface's name in the container (CNI_IFNAME), else the next ethN.
    pub ifname: Option<String>,
    /// Where the container end is made, when not in a sandbox of vswitch's.
    pub outside: Option<model::Outside>,
}

pub(super) fn endpoint_options(p: &api::EndpointParams) -> ApiResult<Wanted> {
    let link = p
        .link
        .as_deref()
        .map(LinkKind::parse)
        .transpose()?
        .unwrap_or_default();
    let ip = p.ip.as_deref().map(parse_ip).transpose()?;
    let ip6 = p
        .ip6
        .as_deref()
        .map(|s| {
            s.parse::<Ipv6Addr>()
                .map_err(|_| ApiError::invalid(format!("invalid IPv6 address {s:?} for --ip6")))
        })
        .transpose()?;
    let mac = p.mac.as_deref().map(Mac::parse).transpose()?;
    for a in &p.aliases {
        model::validate_dns_name("alias", a)?;
    }
    let mut security = model::PortSecurity {
        enabled: p.port_security.unwrap_or(true),
        ..Default::default()
    };
    for a in &p.allowed_addresses {
        if let Ok(ip) = a.parse::<Ipv4Addr>() {
            security.allowed_ips.push(ip);
        } else if let Ok(ip) = a.parse::<Ipv6Addr>() {
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(ApiError::invalid(format!(
                    "invalid --allow-address {a}: an endpoint sends from unicast addresses only"
                )));
            }
            security.allowed_ips6.push(ip);
        } else if let Ok(m) = Mac::parse(a) {
            security.allowed_macs.push(m);
        } else {
            return Err(ApiError::invalid(format!(
                "invalid --allow-address {a:?}: expected an IPv4 or IPv6 address or a unicast MAC"
            )));
        }
    }
    let most = switch::port_security::MAX_ADDRESSES - 1;
    if security.allowed_ips.len() > most
        || security.allowed_ips6.len() > most
        || security.allowed_macs.len() > most
    {
        return Err(ApiError::invalid(format!(
            "too many --allow-address: at most {most} IPv4 addresses, {most} IPv6 addresses and {most} MACs"
        )));
    }
    if !security.enabled && !p.allowed_addresses.is_empty() {
        return Err(ApiError::invalid(
            "--allow-address with --port-security off: with it off, every address is allowed",
        ));
    }
    Ok(Wanted {
        link,
        ip,
        ip6,
        mac,
        aliases: p.aliases.clone(),
        security,
        ifname: None,
        outside: None,
    })
}

pub(super) fn parse_ip(s: &str) -> ApiResult<Ipv4Addr> {
    s.parse()
        .map_err(|_| ApiError::invalid(format!("invalid IPv4 address {s:?}")))
}
