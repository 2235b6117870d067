//! IP address management: picking subnets for new networks and addresses for
//! endpoints, the way Docker's default IPAM does.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

/// The default bridge network's subnet (docker0).
pub const DEFAULT_BRIDGE_SUBNET: &str = "172.17.0.0/16";

/// The next free subnet for a network created without `--subnet`: /16s from
/// 172.18.0.0/16 to 172.31.0.0/16, then /20s of 192.168.0.0/16.
pub fn auto_subnet(taken: &[Ipv4Net]) -> ApiResult<Ipv4Net> {
    let sixteens = (18..=31u8).map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16));
    let twenties = (0..16u8).map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20));
    sixteens
        .chain(twenties)
        .flatten()
        .find(|c| !taken.iter().any(|t| overlaps(c, t)))
        .ok_or_else(|| {
            ApiError::conflict(
                "all predefined address pools have been fully subnetted; pass --subnet",
            )
        })
}

pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// One network's address pool. `allocated` is derived from the endpoints at load time
/// and kept in step as endpoints come and go.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pool {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Where dynamic addresses come from (defaults to the subnet).
    pub ip_range: Option<Ipv4Net>,
    #[serde(skip)]
    allocated: BTreeSet<Ipv4Addr>,
}

impl Pool {
    /// Validate the user's choices and build the pool. The gateway defaults to the
    /// first host address.
    pub fn new(
        subnet: Ipv4Net,
        gateway: Option<Ipv4Addr>,
        ip_range: Option<Ipv4Net>,
    ) -> ApiResult<Pool> {
        if subnet != subnet.trunc() {
            return Err(ApiError::invalid(format!(
                "invalid subnet {subnet}: host bits set (did you mean {}?)",
                subnet.trunc()
            )));
        }
        if subnet.prefix_len() > 30 {
            return Err(ApiError::invalid(format!("subnet {subnet} is too small: it needs room for a gateway and an endpoint (/30 or larger)")));
        }
        let gateway = match gateway {
            Some(g) => g,
            None => first_host(&subnet),
        };
        if !subnet.contains(&gateway)
            || gateway == subnet.network()
            || gateway == subnet.broadcast()
        {
            return Err(ApiError::invalid(format!(
                "gateway {gateway} is not a usable address of subnet {subnet}"
            )));
        }
        if let Some(r) = ip_range {
            if r != r.trunc() {
                return Err(ApiError::invalid(format!(
                    "invalid ip-range {r}: host bits set"
                )));
            }
            if !subnet.contains(&r) {
                return Err(ApiError::invalid(format!(
                    "ip-range {r} is not inside subnet {subnet}"
                )));
            }
        }
        Ok(Pool {
            subnet,
            gateway,
            ip_range,
            allocated: BTreeSet::new(),
        })
    }

    pub fn is_allocated(&self, ip: Ipv4Addr) -> bool {
        self.allocated.contains(&ip)
    }

    /// Reserve `requested`, or the lowest free address of the range.
    pub fn allocate(&mut self, requested: Option<Ipv4Addr>) -> ApiResult<Ipv4Addr> {
        let ip = match requested {
            Some(ip) => {
                self.check_usable(ip)?;
                if self.allocated.contains(&ip) {
                    return Err(ApiError::conflict(format!(
                        "address {ip} is already in use on this network"
                    )));
                }
                ip
            }
            None => {
                let range = self.ip_range.unwrap_or(self.subnet);
                let lo = u32::from(range.network());
                let hi = u32::from(range.broadcast());
                (lo..=hi)
                    .map(Ipv4Addr::from)
                    .find(|ip| self.check_usable(*ip).is_ok() && !self.allocated.contains(ip))
                    .ok_or_else(|| {
                        ApiError::conflict(format!("no available addresses left in {range}"))
                    })?
            }
        };
        self.allocated.insert(ip);
        Ok(ip)
    }

    /// Mark an address as taken (restoring from state).
    pub fn reserve(&mut self, ip: Ipv4Addr) {
        self.allocated.insert(ip);
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.allocated.remove(&ip);
    }

    fn check_usable(&self, ip: Ipv4Addr) -> ApiResult<()> {
        let s = &self.subnet;
        if !s.contains(&ip) {
            return Err(ApiError::invalid(format!(
                "address {ip} is not in subnet {s}"
            )));
        }
        if ip == s.network() || ip == s.broadcast() {
            return Err(ApiError::invalid(format!(
                "address {ip} is the network or broadcast address of {s}"
            )));
        }
        if ip == self.gateway {
            return Err(ApiError::conflict(format!(
                "address {ip} is the network's gateway"
            )));
        }
        Ok(())
    }
}

fn first_host(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn auto_subnets_follow_docker_order() {
        let mut taken = vec![net("172.17.0.0/16")];
        assert_eq!(auto_subnet(&taken).unwrap(), net("172.18.0.0/16"));
        taken.push(net("172.18.5.0/24"));
        assert_eq!(
            auto_subnet(&taken).unwrap(),
            net("172.19.0.0/16"),
            "partial overlap skips the /16"
        );
        for b in 19..=31 {
            taken.push(Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).unwrap());
        }
        assert_eq!(auto_subnet(&taken).unwrap(), net("192.168.0.0/20"));
        taken.push(net("192.168.0.0/16"));
        assert!(auto_subnet(&taken).is_err());
    }

    #[test]
    fn lowest_free_first_skipping_gateway_and_reusing() {
        let mut p = Pool::new(net("172.18.0.0/16"), None, None).unwrap();
        assert_eq!(p.gateway, Ipv4Addr::new(172, 18, 0, 1));
        assert_eq!(p.allocate(None).unwrap(), Ipv4Addr::new(172, 18, 0, 2));
        assert_eq!(p.allocate(None).unwrap(), Ipv4Addr::new(172, 18, 0, 3));
        p.release(Ipv4Addr::new(172, 18, 0, 2));
        assert_eq!(
            p.allocate(None).unwrap(),
            Ipv4Addr::new(172, 18, 0, 2),
            "freed address is reused"
        );
    }

    #[test]
    fn static_addresses_are_checked() {
        let mut p = Pool::new(
            net("172.20.0.0/24"),
            Some(Ipv4Addr::new(172, 20, 0, 254)),
            None,
        )
        .unwrap();
        assert_eq!(
            p.allocate(None).unwrap(),
            Ipv4Addr::new(172, 20, 0, 1),
            "gateway elsewhere: .1 is free"
        );
        assert_eq!(
            p.allocate(Some(Ipv4Addr::new(172, 20, 0, 10))).unwrap(),
            Ipv4Addr::new(172, 20, 0, 10)
        );
        let e = p.allocate(Some(Ipv4Addr::new(172, 20, 0, 10))).unwrap_err();
        assert!(e.message.contains("already in use"), "{}", e.message);
        for (ip, what) in [
            (Ipv4Addr::new(172, 20, 0, 254), "gateway"),
            (Ipv4Addr::new(172, 20, 0, 255), "broadcast"),
            (Ipv4Addr::new(172, 20, 0, 0), "network"),
            (Ipv4Addr::new(172, 21, 0, 5), "outside"),
        ] {
            assert!(p.allocate(Some(ip)).is_err(), "{what}");
        }
    }

    #[test]
    fn ip_range_limits_dynamic_allocation_and_exhausts() {
        let mut p = Pool::new(net("172.20.0.0/24"), None, Some(net("172.20.0.128/30"))).unwrap();
        let got: Vec<_> = (0..4).map(|_| p.allocate(None).unwrap()).collect();
        assert_eq!(got[0], Ipv4Addr::new(172, 20, 0, 128));
        assert_eq!(got[3], Ipv4Addr::new(172, 20, 0, 131));
        assert!(p.allocate(None).is_err(), "range exhausted");
        assert!(
            p.allocate(Some(Ipv4Addr::new(172, 20, 0, 5))).is_ok(),
            "static outside the range but in the subnet"
        );
    }

    #[test]
    fn bad_pools_are_refused_with_reasons() {
        assert!(Pool::new(net("172.20.0.1/24"), None, None)
            .unwrap_err()
            .message
            .contains("host bits"));
        assert!(Pool::new(net("172.20.0.0/24"), Some(Ipv4Addr::new(10, 0, 0, 1)), None).is_err());
        assert!(Pool::new(net("172.20.0.0/24"), None, Some(net("172.21.0.0/25"))).is_err());
        assert!(Pool::new(net("172.20.0.0/31"), None, None).is_err());
    }
}
