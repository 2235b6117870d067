//! IPv6 address management (`network create --ipv6`):
//! a network's IPv6 pool, lowest-free allocation as for IPv4, and the unique local
//! (RFC 4193) /48 a host takes its automatic /64s from, chosen once and kept in the
//! state directory, as Docker's default-address-pools do for IPv6.
//!
//! Docker's rules where it has them: a subnet must have its host bits clear, be at
//! most a /80 (SLAAC-sized /64s are the norm; anything smaller leaves no room for
//! Docker's MAC-derived or sequential addresses at scale), and be neither link-local
//! (fe80::/10) nor multicast (ff00::/8). The gateway defaults to the subnet's `::1`;
//! the subnet's own address (the subnet-router anycast, RFC 4291 2.6.1) is never
//! handed out.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::path::Path;

use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

/// The longest prefix a network's IPv6 subnet may have.
pub const MAX_PREFIX: u8 = 80;
/// Where the host's unique local /48 is kept.
pub const ULA_FILE: &str = "ula-prefix";

pub fn overlaps(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// One network's IPv6 pool; `allocated` is rebuilt from the endpoints at load.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pool6 {
    pub subnet: Ipv6Net,
    pub gateway: Ipv6Addr,
    pub ip_range: Option<Ipv6Net>,
    #[serde(skip)]
    allocated: BTreeSet<Ipv6Addr>,
}

impl Pool6 {
    pub fn new(
        subnet: Ipv6Net,
        gateway: Option<Ipv6Addr>,
        ip_range: Option<Ipv6Net>,
    ) -> ApiResult<Pool6> {
        if subnet != subnet.trunc() {
            return Err(ApiError::invalid(format!(
                "invalid IPv6 subnet {subnet}: host bits set (did you mean {}?)",
                subnet.trunc()
            )));
        }
        if subnet.prefix_len() > MAX_PREFIX {
            return Err(ApiError::invalid(format!(
                "IPv6 subnet {subnet} is too small: at most a /{MAX_PREFIX} (a /64 is usual)"
            )));
        }
        let first = subnet.network().segments()[0];
        if first & 0xffc0 == 0xfe80 {
            return Err(ApiError::invalid(format!(
                "IPv6 subnet {subnet} is link-local (fe80::/10): every interface has those already"
            )));
        }
        if first & 0xff00 == 0xff00 {
            return Err(ApiError::invalid(format!(
                "IPv6 subnet {subnet} is multicast (ff00::/8): endpoints need unicast addresses"
            )));
        }
        let gateway = gateway.unwrap_or_else(|| offset(subnet.network(), 1));
        if !subnet.contains(&gateway) || gateway == subnet.network() {
            return Err(ApiError::invalid(format!(
                "IPv6 gateway {gateway} is not a usable address of subnet {subnet}"
            )));
        }
        if let Some(r) = ip_range {
            if r != r.trunc() {
                return Err(ApiError::invalid(format!(
                    "invalid IPv6 ip-range {r}: host bits set"
                )));
            }
            if !subnet.contains(&r) {
                return Err(ApiError::invalid(format!(
                    "IPv6 ip-range {r} is not inside subnet {subnet}"
                )));
            }
        }
        Ok(Pool6 {
            subnet,
            gateway,
            ip_range,
            allocated: BTreeSet::new(),
        })
    }

    pub fn is_allocated(&self, ip: Ipv6Addr) -> bool {
        self.allocated.contains(&ip)
    }

    /// Reserve `requested`, or the lowest free address of the range (never the
    /// subnet's own address nor the gateway).
    pub fn allocate(&mut self, requested: Option<Ipv6Addr>) -> ApiResult<Ipv6Addr> {
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
                let (lo, hi) = (u128::from(range.network()), u128::from(range.broadcast()));
                // Walks past taken addresses only: at most allocated + 2 steps.
                let mut c = lo;
                loop {
                    let ip = Ipv6Addr::from(c);
                    if self.check_usable(ip).is_ok() && !self.allocated.contains(&ip) {
                        break ip;
                    }
                    if c >= hi {
                        return Err(ApiError::conflict(format!(
                            "no available IPv6 addresses left in {range}"
                        )));
                    }
                    c += 1;
                }
            }
        };
        self.allocated.insert(ip);
        Ok(ip)
    }

    pub fn reserve(&mut self, ip: Ipv6Addr) {
        self.allocated.insert(ip);
    }

    pub fn release(&mut self, ip: Ipv6Addr) {
        self.allocated.remove(&ip);
    }

    fn check_usable(&self, ip: Ipv6Addr) -> ApiResult<()> {
        let s = &self.subnet;
        if !s.contains(&ip) {
            return Err(ApiError::invalid(format!(
                "address {ip} is not in IPv6 subnet {s}"
            )));
        }
        if ip == s.network() {
            return Err(ApiError::invalid(format!(
                "address {ip} is the subnet-router anycast address of {s}"
            )));
        }
        if ip == self.gateway {
            return Err(ApiError::conflict(format!(
                "address {ip} is the network's IPv6 gateway"
            )));
        }
        Ok(())
    }
}

fn offset(a: Ipv6Addr, n: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(a) + n)
}

/// The host's unique local /48 (RFC 4193: fd00::/8 and a random 40-bit global ID),
/// read from `<state_dir>/ula-prefix`, or chosen now and written there: the same
/// across restarts, so automatic subnets stay where they were.
pub fn ula_prefix(state_dir: &Path) -> std::io::Result<Ipv6Net> {
    let path = state_dir.join(ULA_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<Ipv6Net>().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: {e} (expected a /48 like fd12:3456:789a::/48)",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id: u64 = rand::random::<u64>() & 0xff_ffff_ffff;
            let mut seg = [0u16; 8];
            seg[0] = 0xfd00 | (id >> 32) as u16;
            seg[1] = (id >> 16) as u16;
            seg[2] = id as u16;
            let net = Ipv6Net::new(Ipv6Addr::from(seg), 48).expect("48 <= 128");
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, format!("{net}\n"))?;
            std::fs::rename(&tmp, &path)?;
            Ok(net)
        }
        Err(e) => Err(e),
    }
}

/// The next free /64 of `pool` (the host's /48), past every `taken` subnet.
pub fn auto_subnet6(pool: &Ipv6Net, taken: &[Ipv6Net]) -> ApiResult<Ipv6Net> {
    let subnets = pool
        .subnets(64)
        .map_err(|e| ApiError::invalid(format!("the IPv6 pool {pool} cannot hold /64s: {e}")))?;
    subnets
        .into_iter()
        .find(|c| !taken.iter().any(|t| overlaps(c, t)))
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "the IPv6 pool {pool} has no free /64 left; pass an IPv6 --subnet"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn lowest_free_first_skipping_anycast_and_gateway() {
        let mut p = Pool6::new(net("2001:db8:1::/64"), None, None).unwrap();
        assert_eq!(p.gateway, ip("2001:db8:1::1"));
        assert_eq!(p.allocate(None).unwrap(), ip("2001:db8:1::2"));
        assert_eq!(p.allocate(None).unwrap(), ip("2001:db8:1::3"));
        p.release(ip("2001:db8:1::2"));
        assert_eq!(p.allocate(None).unwrap(), ip("2001:db8:1::2"), "reused");
        assert_eq!(
            p.allocate(Some(ip("2001:db8:1::99"))).unwrap(),
            ip("2001:db8:1::99")
        );
        let e = p.allocate(Some(ip("2001:db8:1::99"))).unwrap_err();
        assert!(e.message.contains("already in use"), "{}", e.message);
        for bad in ["2001:db8:1::", "2001:db8:1::1", "2001:db8:2::5"] {
            assert!(p.allocate(Some(ip(bad))).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_limit_dynamic_addresses_and_exhaust() {
        let mut p = Pool6::new(
            net("2001:db8:1::/64"),
            Some(ip("2001:db8:1::ffff")),
            Some(net("2001:db8:1::100/126")),
        )
        .unwrap();
        let got: Vec<_> = (0..4).map(|_| p.allocate(None).unwrap()).collect();
        assert_eq!(got[0], ip("2001:db8:1::100"));
        assert_eq!(got[3], ip("2001:db8:1::103"));
        assert!(p.allocate(None).is_err(), "range exhausted");
    }

    #[test]
    fn bad_subnets_are_refused_with_reasons() {
        let why = |s: &str| Pool6::new(net(s), None, None).unwrap_err().message;
        assert!(why("2001:db8:1::1/64").contains("host bits"));
        assert!(why("2001:db8:1::/96").contains("too small"));
        assert!(why("fe80::/64").contains("link-local"));
        assert!(why("ff02::/64").contains("multicast"));
        assert!(
            Pool6::new(net("2001:db8:1::/80"), None, None).is_ok(),
            "a /80 is allowed"
        );
        assert!(Pool6::new(net("2001:db8:1::/64"), Some(ip("2001:db8:2::1")), None).is_err());
        assert!(Pool6::new(net("2001:db8:1::/64"), None, Some(net("2001:db8:2::/80"))).is_err());
    }

    #[test]
    fn the_ula_prefix_is_chosen_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("vs-ula-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = ula_prefix(&dir).unwrap();
        assert_eq!(a.prefix_len(), 48);
        assert_eq!(
            a.network().segments()[0] & 0xff00,
            0xfd00,
            "{a} is in fd00::/8"
        );
        assert_eq!(ula_prefix(&dir).unwrap(), a, "kept across restarts");
        std::fs::write(dir.join(ULA_FILE), "nonsense").unwrap();
        assert!(
            ula_prefix(&dir).is_err(),
            "a bad file is an error, not a new prefix"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn automatic_subnets_are_the_next_free_64s_of_the_48() {
        let pool = net("fd12:3456:789a::/48");
        assert_eq!(
            auto_subnet6(&pool, &[]).unwrap(),
            net("fd12:3456:789a::/64")
        );
        let taken = [net("fd12:3456:789a::/64"), net("fd12:3456:789a:1::/80")];
        assert_eq!(
            auto_subnet6(&pool, &taken).unwrap(),
            net("fd12:3456:789a:2::/64"),
            "a partial overlap skips the /64"
        );
        assert!(auto_subnet6(&pool, &[pool]).is_err(), "all taken");
    }
}
