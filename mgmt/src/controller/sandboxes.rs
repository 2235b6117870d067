//! Sandboxes: create (with their first network or a joined namespace), list, inspect,
//! remove.

use super::*;

impl Controller {
    pub fn sandbox_create(&mut self, req: api::SandboxCreate) -> ApiResult<api::SandboxCreated> {
        model::validate_dns_name("sandbox", &req.name)?;
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
            && (req.endpoint.ip.is_some()
                || req.endpoint.ip6.is_some()
                || !req.endpoint.aliases.is_empty()
                || req.endpoint.mac.is_some())
        {
            return Err(ApiError::invalid(format!(
                "--ip, --ip6, --alias and --mac need a network; {} has none",
                net.name
            )));
        }
        let want = endpoint_options(&req.endpoint)?;
        let ip = want.ip;
        if mode != SandboxMode::Netns && !req.add_host.is_empty() {
            return Err(ApiError::invalid(format!(
                "--add-host needs a network namespace of the sandbox's own; {} gives none",
                net.name
            )));
        }
        for h in &req.add_host {
            self.extra_host(h)?;
        }
        if let Some(held) = self.remote_holder(&net, &want) {
            return Err(held);
        }
        let in_use = |ip: &dyn std::fmt::Display| {
            Err(ApiError::conflict(format!(
                "address {ip} is already in use on network {}",
                net.name
            )))
        };
        if let (Some(ip), Some(pool)) = (ip, net.pool.as_ref()) {
            if pool.is_allocated(ip) {
                return in_use(&ip);
            }
        }
        if let (Some(ip), Some(pool)) = (want.ip6, net.pool6.as_ref()) {
            if pool.is_allocated(ip) {
                return in_use(&ip);
            }
        }
        sandbox::ensure(&req.name, &mode)?;
        let sb = Sandbox {
            id: model::new_id(),
            name: req.name.clone(),
            mode: mode.clone(),
            endpoints: Vec::new(),
            created: model::now_rfc3339(),
            ports: Vec::new(),
            extra_hosts: req.add_host.clone(),
        };
        self.state.sandboxes.insert(sb.name.clone(), sb.clone());
        let result = match mode {
            SandboxMode::Netns => self
                .connect(&sb.name, &net.id, want)
                .and_then(|_| self.publish(&sb.name, &bindings))
                .and_then(|_| {
                    if let Some(s) = self.state.sandboxes.get_mut(&sb.name) {
                        s.ports = bindings.clone();
                    }
                    self.save()
                }),
            _ => self.save().and_then(|_| {
                Ok(sandbox::write_resolv_conf(
                    &sb.name,
                    &self.upstream_ips(),
                    false,
                )?)
            }),
        };
        if let Err(e) = result {
            // Published (the ports were recorded) but not saved: take them back first.
            let published = self.state.sandboxes.get(&sb.name).map(|s| s.ports.clone());
            if let Some(ports) = published.filter(|p| !p.is_empty()) {
                self.unpublish(&sb.name, &ports);
            }
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
        Ok(api::SandboxCreated {
            id: sb.id,
            name: sb.name,
        })
    }

    /// `--network container:TARGET`: a name for TARGET's namespace, nothing else.
    fn sandbox_join(
        &mut self,
        req: &api::SandboxCreate,
        target: &str,
    ) -> ApiResult<api::SandboxCreated> {
        if !req.publish.is_empty() || req.publish_all {
            return Err(ApiError::invalid(
                "conflicting options: port publishing and the container type network mode",
            ));
        }
        if !req.add_host.is_empty() {
            return Err(ApiError::invalid(
                "conflicting options: --add-host and the container type network mode (the sandbox shares its target's /etc/hosts)",
            ));
        }
        if req.endpoint.any() {
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
        sandbox::ensure(&req.name, &mode)?;
        let sb = Sandbox {
            id: model::new_id(),
            name: req.name.clone(),
            mode,
            endpoints: Vec::new(),
            created: model::now_rfc3339(),
            ports: Vec::new(),
            extra_hosts: Vec::new(),
        };
        self.state.sandboxes.insert(sb.name.clone(), sb.clone());
        if let Err(e) = self.save() {
            self.state.sandboxes.remove(&sb.name);
            let _ = sandbox::remove(&sb.name);
            return Err(e);
        }
        tracing::info!(sandbox = %sb.name, joins = %owner, "sandbox created");
        Ok(api::SandboxCreated {
            id: sb.id,
            name: sb.name,
        })
    }

    pub fn sandbox_ls(&self) -> ApiResult<Vec<api::SandboxSummary>> {
        Ok(self
            .state
            .sandboxes
            .values()
            .map(|sb| {
                let networks = match &sb.mode {
                    SandboxMode::Host => vec!["host".to_string()],
                    SandboxMode::None => vec!["none".to_string()],
                    SandboxMode::Container(of) => vec![format!("container:{of}")],
                    SandboxMode::Netns | SandboxMode::External(_) => self
                        .sandbox_networks(sb)
                        .iter()
                        .map(|(n, _)| n.name.clone())
                        .collect(),
                };
                api::SandboxSummary {
                    id: sb.id[..12].to_string(),
                    name: sb.name.clone(),
                    networks,
                    created: sb.created.clone(),
                }
            })
            .collect())
    }

    fn sandbox_networks(&self, sb: &Sandbox) -> Vec<(&Network, &Endpoint)> {
        sb.endpoints
            .iter()
            .filter_map(|e| self.state.endpoints.get(e))
            .filter_map(|e| self.state.networks.get(&e.network).map(|n| (n, e)))
            .collect()
    }

    pub fn sandbox_inspect(&self, req: api::NameOnly) -> ApiResult<api::SandboxDetail> {
        let sb = self.sandbox(&req.name)?;
        let mut networks = BTreeMap::new();
        for (n, e) in self.sandbox_networks(sb) {
            let (pool, pool6) = (n.pool.as_ref(), n.pool6.as_ref());
            networks.insert(
                n.name.clone(),
                api::SandboxNetwork {
                    network_id: n.id.clone(),
                    endpoint_id: e.id.clone(),
                    ip_address: e.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    ip_prefix_len: pool
                        .filter(|_| e.ip.is_some())
                        .map(|p| p.subnet.prefix_len())
                        .unwrap_or(0),
                    gateway: pool.map(|p| p.gateway.to_string()).unwrap_or_default(),
                    global_ipv6_address: e.ip6.map(|ip| ip.to_string()).unwrap_or_default(),
                    global_ipv6_prefix_len: pool6
                        .filter(|_| e.ip6.is_some())
                        .map_or(0, |p| p.subnet.prefix_len()),
                    ipv6_gateway: pool6
                        .filter(|_| e.ip6.is_some())
                        .map(|p| p.gateway.to_string())
                        .unwrap_or_default(),
                    mac_address: e.mac.to_string(),
                    aliases: e.aliases.clone(),
                    link: e.link,
                    interface: e.ifname.clone(),
                    host_interface: e.host_ifname.clone(),
                },
            );
        }
        let mode = match &sb.mode {
            SandboxMode::Netns => "netns".to_string(),
            SandboxMode::Host => "host".to_string(),
            SandboxMode::None => "none".to_string(),
            SandboxMode::Container(of) => format!("container:{of}"),
            SandboxMode::External(x) => x.runtime.name().to_string(),
        };
        let key = match &sb.mode {
            SandboxMode::External(x) => x.netns.clone().unwrap_or_default(),
            _ => sandbox::netns_path(&sb.name),
        };
        Ok(api::SandboxDetail {
            id: sb.id.clone(),
            name: sb.name.clone(),
            created: sb.created.clone(),
            network_mode: mode,
            sandbox_key: key.to_string_lossy().into_owned(),
            ports: self.port_bindings(&sb.name, &sb.ports),
            networks,
        })
    }

    pub fn sandbox_rm(&mut self, req: api::SandboxRm) -> ApiResult<String> {
        let sb = self.sandbox(&req.name)?.clone();
        if let SandboxMode::External(x) = &sb.mode {
            if !req.force {
                return Err(ApiError::in_use(format!(
                    "sandbox {} is {}'s (its container {}): remove it there, or use -f",
                    sb.name,
                    x.runtime.name(),
                    &x.id[..12.min(x.id.len())]
                )));
            }
        }
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
        if !matches!(sb.mode, SandboxMode::External(_)) {
            sandbox::remove(&sb.name)?;
        }
        self.state.sandboxes.remove(&sb.name);
        self.save()?;
        tracing::info!(sandbox = %sb.name, "sandbox removed");
        Ok(sb.name)
    }
}
