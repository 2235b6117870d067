//! Published ports (`-p [HOSTIP:]HOSTPORT:PORT[/PROTO]`): which host address and port
//! forward to which container address and port. A mapping belongs to its target's
//! address family: `-p 8080:80` of a dual-stack container is two mappings, one to its
//! IPv4 and one to its IPv6 address, each reached on the external addresses of its own
//! family.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::NatError;
use crate::family::Family;
use crate::wire::Proto;

/// One published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// `Proto::Tcp` or `Proto::Udp`.
    pub proto: Proto,
    /// The host address it listens on, of the target's family; `None` = every external
    /// address of the switch of that family.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    /// The container's address; its family is the mapping's.
    pub target_ip: IpAddr,
    pub target_port: u16,
}

impl PortMapping {
    /// The address it is bound to as a socket would say it: the host address, or the
    /// family's unspecified address (`0.0.0.0`, `::`) for every address.
    pub fn bound_ip(&self) -> IpAddr {
        match (self.host_ip, self.target_ip) {
            (Some(ip), _) => ip,
            (None, IpAddr::V4(_)) => std::net::Ipv4Addr::UNSPECIFIED.into(),
            (None, IpAddr::V6(_)) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        }
    }

    /// Whether `o` is of the same family and listens on the same protocol, port and
    /// host address or on every address (so that the two cannot both be published).
    fn overlaps(&self, o: &PortMapping) -> bool {
        self.target_ip.is_ipv4() == o.target_ip.is_ipv4()
            && (self.host_ip.is_none() || o.host_ip.is_none() || self.host_ip == o.host_ip)
    }

    /// The target, when the mapping is of family `A`.
    pub(crate) fn target<A: Family>(&self) -> Option<(A, u16)> {
        Some((A::from_ip(self.target_ip)?, self.target_port))
    }
}

/// Published ports by (protocol, host port); a port usually has one entry per family,
/// several only when bound to different host addresses.
#[derive(Default)]
pub struct Published {
    by_port: HashMap<(Proto, u16), Vec<PortMapping>>,
}

impl Published {
    pub fn add(&mut self, m: PortMapping) -> Result<(), NatError> {
        if m.proto == Proto::Icmp || m.host_port == 0 || m.target_port == 0 {
            return Err(NatError::InvalidMapping(m));
        }
        if m.host_ip
            .is_some_and(|h| h.is_ipv4() != m.target_ip.is_ipv4())
        {
            return Err(NatError::FamilyMismatch(m));
        }
        let list = self.by_port.entry((m.proto, m.host_port)).or_default();
        if list.iter().any(|o| o.overlaps(&m)) {
            return Err(NatError::PortAllocated {
                host_ip: m.bound_ip(),
                host_port: m.host_port,
                proto: m.proto,
            });
        }
        list.push(m);
        Ok(())
    }

    /// Removes the mapping bound where `m` is: the same protocol, host port and host
    /// address (`None`: every address), of the same family.
    pub fn remove(&mut self, m: &PortMapping) -> Option<PortMapping> {
        let key = (m.proto, m.host_port);
        let list = self.by_port.get_mut(&key)?;
        let pos = list.iter().position(|o| {
            o.host_ip == m.host_ip && o.target_ip.is_ipv4() == m.target_ip.is_ipv4()
        })?;
        let removed = list.swap_remove(pos);
        if list.is_empty() {
            self.by_port.remove(&key);
        }
        Some(removed)
    }

    /// The target (address, port) a packet of family `A` to `dst:port` is published
    /// to, if any. `external` tells whether an address is one of the switch's own (for
    /// mappings without a host address).
    pub fn find<A: Family>(
        &self,
        proto: Proto,
        dst: A,
        port: u16,
        external: impl Fn(A) -> bool,
    ) -> Option<(A, u16)> {
        self.by_port
            .get(&(proto, port))?
            .iter()
            .filter(|m| match m.host_ip {
                Some(ip) => ip == dst.into(),
                None => external(dst),
            })
            .find_map(PortMapping::target)
    }

    /// Whether a mapping of family `A` uses `port` (SNAT must not hand it out).
    pub fn is_published<A: Family>(&self, proto: Proto, port: u16) -> bool {
        self.by_port
            .get(&(proto, port))
            .is_some_and(|l| l.iter().any(|m| m.target::<A>().is_some()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &PortMapping> {
        self.by_port.values().flatten()
    }
}
