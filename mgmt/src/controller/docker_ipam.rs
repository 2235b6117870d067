//! Docker's IPAM driver protocol (moby `libnetwork/docs/ipam.md`) for `docker network
//! create --ipam-driver vswitch`: pools and addresses come from vswitch's own IPAM, so
//! Docker's containers and vswitch's own sandboxes on one network never get an address
//! twice. dockerd asks for a pool (a `--subnet`, or one vswitch chooses as for
//! `network create`), for its gateway, then makes the network (CreateNetwork) and, per
//! container, asks for an address before CreateEndpoint: that address is allocated in
//! the network's pool at once and held for the endpoint (`reserved`), which takes it.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::*;

/// What the IPAM side remembers between calls (not persisted: Docker asks again for a
/// pool after a restart of either side, and an address between its request and its
/// endpoint is a moment's).
#[derive(Default)]
pub(super) struct DockerIpam {
    /// Pools handed out, by pool id.
    pools: BTreeMap<String, IpNet>,
    /// Addresses allocated for endpoints dockerd has not created yet.
    pub(super) reserved: BTreeSet<IpAddr>,
}

pub(super) const GATEWAY_REQUEST: &str = "com.docker.network.gateway";

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Capabilities {
    #[serde(rename = "RequiresMACAddress")]
    pub requires_mac_address: bool,
    pub requires_request_replay: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AddressSpaces {
    pub local_default_address_space: &'static str,
    pub global_default_address_space: &'static str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct RequestPool {
    pub address_space: String,
    pub pool: String,
    pub sub_pool: String,
    #[serde(rename = "V6")]
    pub v6: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Pool {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub pool: String,
    pub data: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct PoolOnly {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct RequestAddress {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub address: String,
    #[serde(deserialize_with = "crate::docker_api::nullable")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct ReleaseAddress {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    pub address: String,
}

fn pool_id(net: &IpNet) -> String {
    format!("vswitch/{net}")
}

impl Controller {
    /// The subnets of vswitch's networks, both families, with the network's name.
    fn subnets(&self) -> Vec<(IpNet, &Network)> {
        let mut out = Vec::new();
        for n in self.state.networks.values() {
            if let Some(p) = &n.pool {
                out.push((IpNet::V4(p.subnet), n));
            }
            if let Some(p) = &n.pool6 {
                out.push((IpNet::V6(p.subnet), n));
            }
        }
        out
    }

    pub(super) fn ipam_request_pool(&mut self, req: RequestPool) -> ApiResult<Value> {
        if !req.sub_pool.is_empty() {
            return Err(ApiError::invalid(
                "--ip-range is not served by vswitch's IPAM driver: leave it out, or use Docker's IPAM",
            ));
        }
        let taken: Vec<IpNet> = self
            .subnets()
            .into_iter()
            .map(|(s, _)| s)
            .chain(self.docker_ipam.pools.values().copied())
            .collect();
        let net: IpNet = if req.pool.is_empty() {
            if req.v6 {
                let host = match self.cfg.ipv6_pool {
                    Some(p) => p,
                    None => ipam6::ula_prefix(self.store.dir())
                        .map_err(|e| ApiError::invalid(format!("the host's IPv6 pool: {e}")))?,
                };
                let v6: Vec<Ipv6Net> = taken
                    .iter()
                    .filter_map(|t| match t {
                        IpNet::V6(n) => Some(*n),
                        _ => None,
                    })
                    .collect();
                IpNet::V6(ipam6::auto_subnet6(&host, &v6)?)
            } else {
                let mut v4: Vec<Ipv4Net> = taken
                    .iter()
                    .filter_map(|t| match t {
                        IpNet::V4(n) => Some(*n),
                        _ => None,
                    })
                    .collect();
                v4.extend(networks::host_addresses().iter().map(Ipv4Net::trunc));
                IpNet::V4(ipam::auto_subnet(&v4)?)
            }
        } else {
            let net: IpNet = req.pool.parse().map_err(|_| {
                ApiError::invalid(format!("invalid pool {:?}: expected a CIDR", req.pool))
            })?;
            if net.trunc() != net {
                return Err(ApiError::invalid(format!(
                    "invalid pool {net}: host bits set (did you mean {}?)",
                    net.trunc()
                )));
            }
            if matches!(net, IpNet::V6(_)) != req.v6 {
                return Err(ApiError::invalid(format!(
                    "pool {net} is not of the family asked for"
                )));
            }
            let clash = self
                .subnets()
                .into_iter()
                .find(|(s, _)| s.contains(&net.network()) || net.contains(&s.network()));
            if let Some((s, n)) = clash {
                // Docker asking again for the pool of a network it made: the same one.
                let docker_owned =
                    n.labels.get(super::docker::OWNER_LABEL).map(String::as_str) == Some("docker");
                if !(docker_owned && s == net) {
                    return Err(ApiError::conflict(format!(
                        "pool {net} overlaps {s} of vswitch network {}",
                        n.name
                    )));
                }
            }
            let id = pool_id(&net);
            if let Some(other) = self.docker_ipam.pools.iter().find(|(k, p)| {
                **k != id && (p.contains(&net.network()) || net.contains(&p.network()))
            }) {
                return Err(ApiError::conflict(format!(
                    "pool {net} overlaps {} handed out already",
                    other.1
                )));
            }
            net
        };
        let id = pool_id(&net);
        self.docker_ipam.pools.insert(id.clone(), net);
        tracing::info!(pool = %net, who = "docker", "IPAM pool given");
        serde_json::to_value(Pool {
            pool_id: id,
            pool: net.to_string(),
            data: BTreeMap::new(),
        })
        .map_err(|e| ApiError::invalid(e.to_string()))
    }

    pub(super) fn ipam_release_pool(&mut self, req: PoolOnly) -> ApiResult<Value> {
        self.docker_ipam.pools.remove(&req.pool_id);
        Ok(Value::Object(Default::default()))
    }

    pub(super) fn ipam_request_address(&mut self, req: RequestAddress) -> ApiResult<Value> {
        let pool = *self.docker_ipam.pools.get(&req.pool_id).ok_or_else(|| {
            ApiError::not_found(format!("pool {:?} was not given by vswitch", req.pool_id))
        })?;
        let asked: Option<IpAddr> = match req.address.as_str() {
            "" => None,
            a => Some(
                a.parse()
                    .map_err(|_| ApiError::invalid(format!("invalid address {a:?}")))?,
            ),
        };
        if let Some(a) = asked.filter(|a| !pool.contains(a)) {
            return Err(ApiError::invalid(format!(
                "address {a} is not in pool {pool}"
            )));
        }
        let gateway =
            req.options.get("RequestAddressType").map(String::as_str) == Some(GATEWAY_REQUEST);
        let net = self
            .subnets()
            .into_iter()
            .find(|(s, _)| *s == pool)
            .map(|(_, n)| n.id.clone());
        let ip = match (gateway, net) {
            // Before the network exists: its gateway (the first address unless asked),
            // or an auxiliary address as asked; the network's pool takes them at create.
            (true, _) | (false, None) => match asked {
                Some(a) => a,
                None if gateway => first_host(&pool),
                None => {
                    return Err(ApiError::invalid(format!(
                        "pool {pool} has no network yet to give an address from"
                    )))
                }
            },
            (false, Some(id)) => {
                let ip = match pool {
                    IpNet::V4(_) => {
                        let p = self
                            .state
                            .pool_mut(&id)
                            .ok_or_else(|| ApiError::invalid("no pool"))?;
                        let want = asked.and_then(|a| match a {
                            IpAddr::V4(a) => Some(a),
                            _ => None,
                        });
                        IpAddr::V4(p.allocate(want)?)
                    }
                    IpNet::V6(_) => {
                        let p = self
                            .state
                            .pool6_mut(&id)
                            .ok_or_else(|| ApiError::invalid("no pool"))?;
                        let want = asked.and_then(|a| match a {
                            IpAddr::V6(a) => Some(a),
                            _ => None,
                        });
                        IpAddr::V6(p.allocate(want)?)
                    }
                };
                self.docker_ipam.reserved.insert(ip);
                ip
            }
        };
        Ok(serde_json::json!({
            "Address": format!("{ip}/{}", pool.prefix_len()),
            "Data": {},
        }))
    }

    pub(super) fn ipam_release_address(&mut self, req: ReleaseAddress) -> ApiResult<Value> {
        let Ok(ip) = req
            .address
            .split('/')
            .next()
            .unwrap_or("")
            .parse::<IpAddr>()
        else {
            return Err(ApiError::invalid(format!(
                "invalid address {:?}",
                req.address
            )));
        };
        let held = self.docker_ipam.reserved.remove(&ip);
        let in_use = self
            .state
            .endpoints
            .values()
            .any(|e| e.ip.map(IpAddr::V4) == Some(ip) || e.ip6.map(IpAddr::V6) == Some(ip));
        if held && !in_use {
            self.release_docker_reservation(ip);
        }
        Ok(Value::Object(Default::default()))
    }

    /// Give an address reserved for Docker back to its network's pool (an endpoint
    /// about to take it, or Docker releasing it unused).
    pub(super) fn release_docker_reservation(&mut self, ip: IpAddr) {
        let net = self
            .subnets()
            .into_iter()
            .find(|(s, _)| s.contains(&ip))
            .map(|(_, n)| n.id.clone());
        let Some(id) = net else { return };
        match ip {
            IpAddr::V4(a) => {
                if let Some(p) = self.state.pool_mut(&id) {
                    p.release(a);
                }
            }
            IpAddr::V6(a) => {
                if let Some(p) = self.state.pool6_mut(&id) {
                    p.release(a);
                }
            }
        }
    }
}

/// A pool's first host address (its gateway's, by Docker's convention).
fn first_host(pool: &IpNet) -> IpAddr {
    match pool {
        IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) + 1)),
        IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) + 1)),
    }
}
