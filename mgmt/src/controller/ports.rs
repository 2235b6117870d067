//! Published ports: planning host ports for `-p`/`-P`, and programming the NAT.

use std::net::{IpAddr, SocketAddr};

/// A sandbox's IPv4 and IPv6 addresses on its first network.
type Target = (Option<Ipv4Addr>, Option<Ipv6Addr>);

use super::*;

impl Controller {
    /// The addresses a sandbox's published ports forward to: its first network's (at
    /// least one of the two).
    pub(super) fn publish_target(&self, sandbox: &str) -> ApiResult<Target> {
        let sb = self.sandbox(sandbox)?;
        sb.endpoints
            .first()
            .and_then(|e| self.state.endpoints.get(e))
            .map(|e| (e.ip, e.ip6))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "sandbox {sandbox} has no network to publish ports from"
                ))
            })
    }

    /// Program the NAT for a sandbox's bindings and start the host's proxies for them;
    /// all or nothing.
    pub(super) fn publish(&mut self, sandbox: &str, bindings: &[Binding]) -> ApiResult<()> {
        if bindings.is_empty() {
            return Ok(());
        }
        let target = self.publish_target(sandbox)?;
        for (i, b) in bindings.iter().enumerate() {
            if let Err(e) = self.publish_one(sandbox, b, target) {
                self.unpublish(sandbox, &bindings[..i]);
                return Err(e);
            }
        }
        Ok(())
    }

    /// What the NAT publishes of binding `b` for a sandbox at `target`: on the uplink's
    /// IPv4 address to its IPv4 address, and on the uplink's IPv6 address to its IPv6
    /// one where both exist. A wildcard binds both families, `0.0.0.0` IPv4 and `[::]`
    /// IPv6 only, a host address its own family.
    fn nat_mappings(&self, b: &Binding, (v4, v6): Target) -> Vec<nat::PortMapping> {
        let on = |uplink: Option<IpAddr>| match (b.host_ip, uplink) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(ip), Some(u)) if ip.is_unspecified() => ip.is_ipv6() == u.is_ipv6(),
            (Some(ip), Some(u)) => ip == u,
        };
        let host_ip = b.host_ip.filter(|ip| !ip.is_unspecified());
        let mut out = Vec::new();
        if let Some(v4) = v4.filter(|_| on(self.cfg.uplink_ip.map(IpAddr::V4))) {
            out.push(mapping(b, host_ip, v4.into()));
        }
        if let Some(v6) = v6.filter(|_| on(self.cfg.uplink_ip6.map(IpAddr::V6))) {
            out.push(mapping(b, host_ip, v6.into()));
        }
        out
    }

    /// One binding: on the uplink's addresses through the NAT (a wildcard, or the
    /// uplink's address), and on the host's own addresses through a proxy (a wildcard,
    /// or one of them): traffic a host process sends to 127.0.0.1 or to the host's
    /// address goes through `lo` and never reaches a switch port. The proxy forwards to
    /// the sandbox's IPv4 address from IPv6 host addresses too, as Docker's does.
    fn publish_one(&mut self, sandbox: &str, b: &Binding, target: Target) -> ApiResult<()> {
        let maps = self.nat_mappings(b, target);
        for (i, m) in maps.iter().enumerate() {
            if let Err(e) = self.engine.port_mapping(true, *m) {
                for m in &maps[..i] {
                    let _ = self.engine.port_mapping(false, *m);
                }
                return Err(e.into());
            }
        }
        // The proxy forwards to the IPv4 address, or the IPv6 one of an IPv6-only
        // sandbox.
        let target: IpAddr = match target {
            (Some(v4), _) => v4.into(),
            (None, Some(v6)) => v6.into(),
            (None, None) => return Ok(()),
        };
        if self.host_port.is_none() {
            return Ok(());
        }
        let listen: Vec<IpAddr> = match b.host_ip {
            None => vec![
                Ipv4Addr::UNSPECIFIED.into(),
                std::net::Ipv6Addr::UNSPECIFIED.into(),
            ],
            Some(ip) if is_host_address(ip) => vec![ip],
            Some(_) => Vec::new(),
        };
        let to = SocketAddr::new(target, b.port);
        let mut started = Vec::new();
        for ip in listen {
            let at = SocketAddr::new(ip, b.host_port);
            match Proxy::start(b.proto, at, to) {
                Ok(p) => started.push(p),
                // The host has no IPv6: the wildcard is IPv4's only.
                Err(e)
                    if ip.is_ipv6()
                        && b.host_ip.is_none()
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                        ) =>
                {
                    tracing::debug!(error = %e, "no IPv6 proxy for a published port");
                }
                Err(e) => {
                    for m in &maps {
                        let _ = self.engine.port_mapping(false, *m);
                    }
                    return Err(ApiError::conflict(format!(
                        "Bind for {} failed: {e}",
                        SocketAddr::new(ip, b.host_port)
                    )));
                }
            }
        }
        self.proxies
            .entry(sandbox.to_string())
            .or_default()
            .extend(started);
        Ok(())
    }

    pub(super) fn unpublish(&mut self, sandbox: &str, bindings: &[Binding]) {
        let target = self.publish_target(sandbox).unwrap_or((None, None));
        for b in bindings {
            for m in self.nat_mappings(b, target) {
                if let Err(e) = self.engine.port_mapping(false, m) {
                    tracing::warn!(sandbox, error = %e, "cannot unpublish port");
                }
            }
        }
        if let Some(list) = self.proxies.get_mut(sandbox) {
            list.retain(|p| {
                !bindings
                    .iter()
                    .any(|b| b.proto == p.proto() && b.host_port == p.local_addr().port())
            });
            if list.is_empty() {
                self.proxies.remove(sandbox);
            }
        }
    }

    /// The addresses a sandbox's published ports are served on, as `docker port` lists
    /// them: each binding's, and `[::]` beside `0.0.0.0` where the host's proxy has it.
    pub(super) fn port_bindings(
        &self,
        sandbox: &str,
        bindings: &[Binding],
    ) -> BTreeMap<String, Vec<api::PortBinding>> {
        let proxies = self.proxies.get(sandbox).map_or(&[][..], Vec::as_slice);
        let mut m: BTreeMap<String, Vec<api::PortBinding>> = BTreeMap::new();
        for b in bindings {
            let list = m.entry(format!("{}/{}", b.port, b.proto)).or_default();
            let ip = b.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED.into());
            list.push(api::PortBinding {
                host_ip: ip.to_string(),
                host_port: b.host_port.to_string(),
            });
            let v6_any = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), b.host_port);
            if b.host_ip.is_none()
                && proxies
                    .iter()
                    .any(|p| p.proto() == b.proto && p.local_addr() == v6_any)
            {
                list.push(api::PortBinding {
                    host_ip: "::".into(),
                    host_port: b.host_port.to_string(),
                });
            }
        }
        m
    }

    /// Validate `-p`/`-P`/`--expose` and choose host ports, refusing claims of a host
    /// port another sandbox holds.
    pub(super) fn plan_bindings(
        &self,
        req: &api::SandboxCreate,
        net: &Network,
    ) -> ApiResult<Vec<Binding>> {
        if req.publish.is_empty() && !req.publish_all {
            for e in &req.expose {
                publish::parse_expose(e)?;
            }
            return Ok(Vec::new());
        }
        self.driver_of(net)?.check_publish(net)?;
        let uplink_ip = self.cfg.uplink_ip;
        if uplink_ip.is_none() && self.host_port.is_none() {
            return Err(ApiError::invalid("publishing ports needs an uplink (vswitchd --uplink) or the host port (vswitchd --host-port)"));
        }
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
                self.check_publish_address(ip)?;
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
                && uplink_ip.is_some()
                && self.cfg.vtep_ip == uplink_ip
                && (b.host_ip.is_none() || b.nat_ip() == uplink_ip)
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
}

impl Controller {
    /// `-p HOSTIP:...`: the uplink's address (through the NAT) or one of the host's
    /// (through its proxy, which needs the host port).
    fn check_publish_address(&self, ip: IpAddr) -> ApiResult<()> {
        if Some(ip) == self.cfg.uplink_ip.map(IpAddr::V4)
            || Some(ip) == self.cfg.uplink_ip6.map(IpAddr::V6)
        {
            return Ok(());
        }
        if !is_host_address(ip) {
            let uplink = self
                .cfg
                .uplink_ip
                .map(|u| format!(" (the switch's uplink address is {u})"))
                .unwrap_or_default();
            return Err(ApiError::invalid(format!(
                "cannot publish on {ip}: it is not an address of this host{uplink}"
            )));
        }
        if self.host_port.is_none() {
            return Err(ApiError::invalid(format!(
                "cannot publish on {ip}: publishing on the host's own addresses needs the host port (vswitchd --host-port)"
            )));
        }
        Ok(())
    }
}

/// Whether `ip` is an address of this host (its namespace): one a socket can bind to,
/// the unspecified addresses and loopback included.
fn is_host_address(ip: IpAddr) -> bool {
    ip.is_unspecified() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// What the NAT programs for binding `b` on `host_ip` (None: the uplink's address of
/// the target's family) to a sandbox at `target`.
fn mapping(b: &Binding, host_ip: Option<IpAddr>, target: IpAddr) -> nat::PortMapping {
    nat::PortMapping {
        proto: b.proto.nat(),
        host_ip,
        host_port: b.host_port,
        target_ip: target,
        target_port: b.port,
    }
}
