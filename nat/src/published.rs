//! Published ports (`-p [HOSTIP:]HOSTPORT:PORT[/PROTO]`): which host address and port
//! forward to which container address and port.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::NatError;
use crate::wire::Proto;

/// One published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// `Proto::Tcp` or `Proto::Udp`.
    pub proto: Proto,
    /// The host address it listens on; `None` = every external address of the switch.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub target_ip: Ipv4Addr,
    pub target_port: u16,
}

/// Published ports by (protocol, host port); a port usually has one entry, several
/// only when bound to different host addresses.
#[derive(Default)]
pub struct Published {
    by_port: HashMap<(Proto, u16), Vec<PortMapping>>,
}

impl Published {
    pub fn add(&mut self, m: PortMapping) -> Result<(), NatError> {
        if m.proto == Proto::Icmp || m.host_port == 0 || m.target_port == 0 {
            return Err(NatError::InvalidMapping(m));
        }
        let list = self.by_port.entry((m.proto, m.host_port)).or_default();
        if list
            .iter()
            .any(|o| o.host_ip.is_none() || m.host_ip.is_none() || o.host_ip == m.host_ip)
        {
            return Err(NatError::PortAllocated {
                host_ip: m.host_ip,
                host_port: m.host_port,
                proto: m.proto,
            });
        }
        list.push(m);
        Ok(())
    }

    /// Removes the mapping bound to exactly (`proto`, `host_ip`, `host_port`).
    pub fn remove(
        &mut self,
        proto: Proto,
        host_ip: Option<Ipv4Addr>,
        host_port: u16,
    ) -> Option<PortMapping> {
        let list = self.by_port.get_mut(&(proto, host_port))?;
        let pos = list.iter().position(|m| m.host_ip == host_ip)?;
        let m = list.swap_remove(pos);
        if list.is_empty() {
            self.by_port.remove(&(proto, host_port));
        }
        Some(m)
    }

    /// The mapping a packet to `dst:port` hits, if any. `external` tells whether an
    /// address is one of the switch's own (for mappings without a host address).
    pub fn find(
        &self,
        proto: Proto,
        dst: Ipv4Addr,
        port: u16,
        external: impl Fn(Ipv4Addr) -> bool,
    ) -> Option<&PortMapping> {
        self.by_port
            .get(&(proto, port))?
            .iter()
            .find(|m| match m.host_ip {
                Some(ip) => ip == dst,
                None => external(dst),
            })
    }

    /// Whether any mapping uses `port` (SNAT must not hand it out).
    pub fn is_published(&self, proto: Proto, port: u16) -> bool {
        self.by_port.contains_key(&(proto, port))
    }

    pub fn iter(&self) -> impl Iterator<Item = &PortMapping> {
        self.by_port.values().flatten()
    }
}
