//! Published ports: planning host ports for `-p`/`-P`, and programming the NAT.

use super::*;

impl Controller {
    /// The address a sandbox's published ports forward to: its first network's.
    pub(super) fn publish_target(&self, sandbox: &str) -> ApiResult<Ipv4Addr> {
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
    pub(super) fn publish(&mut self, sandbox: &str, bindings: &[Binding]) -> ApiResult<()> {
        if bindings.is_empty() {
            return Ok(());
        }
        let target = self.publish_target(sandbox)?;
        for (i, b) in bindings.iter().enumerate() {
            if let Err(e) = self.engine.port_mapping(true, mapping(b, target)) {
                self.unpublish(sandbox, &bindings[..i]);
                return Err(e.into());
            }
        }
        Ok(())
    }

    pub(super) fn unpublish(&mut self, sandbox: &str, bindings: &[Binding]) {
        let target = self
            .publish_target(sandbox)
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        for b in bindings {
            if let Err(e) = self.engine.port_mapping(false, mapping(b, target)) {
                tracing::warn!(sandbox, error = %e, "cannot unpublish port");
            }
        }
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
}

/// What the NAT programs for binding `b` of a sandbox at `target`.
fn mapping(b: &Binding, target: Ipv4Addr) -> nat::PortMapping {
    nat::PortMapping {
        proto: b.proto.nat(),
        host_ip: b.host_ip,
        host_port: b.host_port,
        target_ip: target,
        target_port: b.port,
    }
}

/// Docker's shape: {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}.
pub(super) fn port_bindings(bindings: &[Binding]) -> BTreeMap<String, Vec<api::PortBinding>> {
    let mut m: BTreeMap<String, Vec<api::PortBinding>> = BTreeMap::new();
    for b in bindings {
        m.entry(format!("{}/{}", b.port, b.proto))
            .or_default()
            .push(api::PortBinding {
                host_ip: b.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string(),
                host_port: b.host_port.to_string(),
            });
    }
    m
}
