//! What the data plane shows: forwarding tables, captures, NAT sessions, counters.

use super::*;
use crate::capture::{self, CaptureError};

impl Controller {
    pub fn fdb(&self, req: api::NameOnly) -> ApiResult<Vec<api::FdbRow>> {
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
        let owners = self.endpoints_by_port();
        let entries = self.engine.fdb(net.num)?;
        Ok(entries
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
                api::FdbRow {
                    mac: Mac(e.mac).to_string(),
                    port,
                    vtep: e.vtep.map(|v| v.to_string()),
                    sandbox: owners.get(&e.port).map(|ep| ep.sandbox.clone()),
                    age: e.age_secs,
                    is_static: e.is_static,
                    fast_path: e.fast_path,
                }
            })
            .collect())
    }

    /// The endpoints by their port in the data plane.
    fn endpoints_by_port(&self) -> HashMap<PortId, &Endpoint> {
        self.state
            .endpoints
            .values()
            .filter_map(|e| self.ports.get(&e.id).map(|p| (*p, e)))
            .collect()
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

    pub fn capture_start(&mut self, req: api::CaptureStart) -> ApiResult<api::CaptureStarted> {
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
        let max_bytes = req.max_bytes.unwrap_or(capture::DEFAULT_MAX_BYTES);
        if max_bytes < capture::MIN_MAX_BYTES {
            return Err(ApiError::invalid(format!(
                "capture max_bytes must be at least {}",
                capture::MIN_MAX_BYTES
            )));
        }
        let limits = capture::Limits {
            count: req.count,
            max_bytes,
        };
        let id = self
            .captures
            .start(&self.engine, port, &file, limits)
            .map_err(|e| match e {
                CaptureError::Busy(id) => ApiError::in_use(format!(
                    "port {} is already under capture {id}; stop it first",
                    req.port
                )),
                e => e.into(),
            })?;
        Ok(api::CaptureStarted { id })
    }

    /// Where a capture stands; one that ended itself says why until `capture.stop`
    /// collects it (the last few are kept).
    pub fn capture_status(&mut self, req: api::CaptureId) -> ApiResult<api::CaptureState> {
        let s = self
            .captures
            .status(&self.engine, req.id)
            .ok_or_else(|| ApiError::not_found(format!("no capture {}", req.id)))?;
        Ok(api::CaptureState {
            frames: s.frames,
            done: s.done,
            bytes: s.bytes,
            reason: s.reason,
            error: s.error,
        })
    }

    pub fn capture_stop(&mut self, req: api::CaptureId) -> ApiResult<api::CaptureStopped> {
        let s = self
            .captures
            .stop(&self.engine, req.id)
            .ok_or_else(|| ApiError::not_found(format!("no capture {}", req.id)))??;
        Ok(api::CaptureStopped {
            frames: s.frames,
            bytes: s.bytes,
            reason: Some(s.reason),
        })
    }

    /// NAT sessions, optionally only those of one network's addresses.
    pub fn conntrack(&self, req: api::Conntrack) -> ApiResult<Vec<nat::SessionRow>> {
        let subnets = match &req.network {
            Some(n) => {
                let net = self.network(n)?;
                if net.pool.is_none() {
                    return Err(ApiError::invalid(format!(
                        "network {n} has no addresses to track"
                    )));
                }
                Some((
                    net.pool.as_ref().map(|p| p.subnet),
                    net.pool6.as_ref().map(|p| p.subnet),
                ))
            }
            None => None,
        };
        let Some((_, sessions)) = self.engine.router()? else {
            return Ok(Vec::new());
        };
        let of = |ip: IpAddr, (v4, v6): (Option<Ipv4Net>, Option<Ipv6Net>)| match ip {
            IpAddr::V4(a) => v4.is_some_and(|s| s.contains(&a)),
            IpAddr::V6(a) => v6.is_some_and(|s| s.contains(&a)),
        };
        Ok(sessions
            .into_iter()
            .filter(|r| {
                subnets.is_none_or(|s| {
                    [
                        r.original.src.ip(),
                        r.original.dst.ip(),
                        r.translated.src.ip(),
                        r.translated.dst.ip(),
                    ]
                    .into_iter()
                    .any(|ip| of(ip, s))
                })
            })
            .collect())
    }

    pub fn stats(&self, req: api::StatsGet) -> ApiResult<api::Stats> {
        let mut s = self.engine.stats();
        let by_port = self.endpoints_by_port();
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
        let ports = s
            .ports
            .into_iter()
            .map(|p| {
                let owner = by_port.get(&p.info.id);
                let network = match owner {
                    Some(ep) => self
                        .state
                        .networks
                        .get(&ep.network)
                        .map(|n| api::PortNetwork::Name(n.name.clone())),
                    None => Some(match switch_port_role(p.info.network) {
                        Some(role) => api::PortNetwork::Name(role.into()),
                        None => api::PortNetwork::Number(p.info.network),
                    }),
                };
                let mut v = api::PortStats {
                    id: p.info.id,
                    name: p.info.name.clone(),
                    network,
                    backend: p.info.backend,
                    worker: p.info.worker,
                    fast_path: p.info.fast_path,
                    counters: p.counters,
                    sandbox: owner.map(|ep| ep.sandbox.clone()),
                };
                if p.info.network == switch::ENDPOINT_TRUNK_NET {
                    // What the kernel dropped on its way to the worker (a sandbox's
                    // oversized frames, a full ring) shows here, not in the worker.
                    if let Some(kernel_end) = p.info.name.strip_suffix('w') {
                        if let Ok((_, tx)) =
                            crate::link::Netlink::new().and_then(|mut nl| nl.link_drops(kernel_end))
                        {
                            v.counters.drops.insert("trunk_kernel".into(), tx);
                        }
                    }
                }
                v
            })
            .collect();
        let router = self.engine.router()?.map(|(r, _)| api::Router(r));
        let dns = self.engine.dns_stats()?;
        let host_port = self.engine.host_port()?;
        Ok(api::Stats {
            ports,
            workers: s.workers,
            router,
            dns,
            host_port,
        })
    }
}

/// What `stats` shows as the network of the switch's own ports.
fn switch_port_role(net: switch::NetId) -> Option<&'static str> {
    match net {
        switch::UPLINK_NET => Some("(uplink)"),
        switch::TRUNK_NET => Some("(vlan trunk)"),
        switch::ENDPOINT_TRUNK_NET => Some("(endpoint trunk)"),
        switch::HOST_NET => Some("(host port)"),
        _ => None,
    }
}
