//! The host port: the host's own network stack on the switch, like Docker's docker0 or
//! OVS's LOCAL port. A veth pair in the daemon's namespace: `vswitch0` (`--host-port`,
//! the host's end, with `--host-port-ip`, 169.254.77.1/30 by default) and `vsw-hw`
//! (the switch's end, read by the router's worker). The host routes every container
//! subnet (bridge and overlay networks, internal ones included) via the switch's
//! address on the link, and containers reach the host at its address there (what
//! `host-gateway` names). The host end has no transmit offload, so every frame the
//! host sends is whole and checksummed.
//!
//! Stopping removes the pair (and the routes with it); a killed daemon's pair is removed
//! at the next start (the switch's end's name marks it as vswitchd's).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use ipnet::Ipv4Net;
use switch::engine::EngineError;
use switch::host_link::HostPortConfig;
use switch::port::{self, IoMode};
use switch::Engine;

use crate::driver::bridge::prepare_host_end;
use crate::driver::DriverError;
use crate::error::{step, Step};
use crate::ethtool::{self, EthtoolError};
use crate::link::{LinkError, Netlink};

/// The switch's end of the pair.
pub const SWITCH_END: &str = "vsw-hw";
pub const DEFAULT_NAME: &str = "vswitch0";
pub const DEFAULT_ADDRESS: &str = "169.254.77.1/30";

#[derive(Debug, thiserror::Error)]
pub enum HostPortError {
    #[error("--host-port {0}: an interface of that name already exists and is not vswitchd's; choose another name (or --host-port none)")]
    NameInUse(String),
    #[error("--host-port-ip {net}: {why}")]
    BadAddress { net: Ipv4Net, why: String },
    #[error("--host-port-ip {net} overlaps {addr}, an address of this host; choose another --host-port-ip")]
    Overlap { net: Ipv4Net, addr: Ipv4Net },
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Ethtool(#[from] EthtoolError),
    #[error(transparent)]
    HostEnd(#[from] DriverError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Io(#[from] Step<std::io::Error>),
    #[error(transparent)]
    Port(#[from] Step<switch::port::PortError>),
}

type Result<T, E = HostPortError> = std::result::Result<T, E>;

/// The host port, attached.
pub struct HostPort {
    name: String,
    /// The host's address on the link, with its prefix.
    host: Ipv4Net,
    /// The switch's address on the link: the routes' next hop.
    switch_ip: Ipv4Addr,
    /// The container subnets routed through the link.
    routes: BTreeSet<Ipv4Net>,
}

/// The host's and the switch's addresses on a link given as the host's address/prefix.
fn link_addresses(net: Ipv4Net) -> Result<(Ipv4Addr, Ipv4Addr)> {
    let bad = |why: &str| HostPortError::BadAddress {
        net,
        why: why.to_string(),
    };
    if net.prefix_len() > 30 {
        return Err(bad(
            "the link needs two addresses: a prefix of /30 or shorter",
        ));
    }
    let host = net.addr();
    if host == net.network() || host == net.broadcast() {
        return Err(bad(
            "give the host's address, not the subnet's or its broadcast",
        ));
    }
    let switch_ip = net
        .hosts()
        .find(|a| *a != host)
        .ok_or_else(|| bad("no second address on the link"))?;
    Ok((host, switch_ip))
}

impl HostPort {
    /// Create the pair (replacing a leftover of a killed run), give the host its
    /// address and hand the switch's end to the engine. `host_ips` are the host's other
    /// addresses containers may reach it by (the uplink's, when the host shares it).
    pub fn attach(
        engine: &mut Engine,
        name: &str,
        net: Ipv4Net,
        io: IoMode,
        host_ips: &[Ipv4Addr],
    ) -> Result<HostPort> {
        let (host, switch_ip) = link_addresses(net)?;
        let mut nl = Netlink::new()?;
        if nl.link_exists(SWITCH_END) {
            tracing::info!(
                host_port = name,
                "removing the host port a killed vswitchd left"
            );
            nl.delete_link(SWITCH_END)?;
        }
        if nl.link_exists(name) {
            return Err(HostPortError::NameInUse(name.to_string()));
        }
        if let Some(addr) = nl
            .ipv4_addresses()?
            .into_iter()
            .find(|a| crate::ipam::overlaps(&a.trunc(), &net.trunc()))
        {
            return Err(HostPortError::Overlap { net, addr });
        }
        let here = crate::netns::current()?;
        nl.create_veth(name, SWITCH_END, here.as_fd(), None, 1500)?;
        let attached = (|| {
            ethtool::disable_features(name, ethtool::TX_OFFLOADS)?;
            prepare_host_end(SWITCH_END)?;
            nl.set_up(SWITCH_END)?;
            nl.add_address(name, host, net.prefix_len())?;
            nl.set_up(name)?;
            let mut ips = vec![host];
            ips.extend(host_ips.iter().filter(|a| **a != host));
            let cfg = HostPortConfig {
                host_ips: ips,
                host_mac: nl.link_mac(name)?,
                ip: switch_ip,
                mac: nl.link_mac(SWITCH_END)?,
            };
            let port =
                port::open(SWITCH_END, io).map_err(step(format!("open port on {SWITCH_END}")))?;
            engine.set_host_port(cfg, port)?;
            Ok::<_, HostPortError>(())
        })();
        if let Err(e) = attached {
            let _ = nl.delete_link(name);
            return Err(e);
        }
        tracing::info!(host_port = name, host = %net, switch = %switch_ip, "host port attached");
        Ok(HostPort {
            name: name.to_string(),
            host: net,
            switch_ip,
            routes: BTreeSet::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's address on the link: where containers reach the host.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host.addr()
    }

    /// Route exactly `subnets` through the link: add the new ones, remove the gone
    /// ones. A route that cannot be added is logged (the host then has no way to that
    /// network; nothing else is affected).
    pub fn sync_routes(&mut self, subnets: BTreeSet<Ipv4Net>) {
        let Ok(mut nl) = Netlink::new() else {
            tracing::warn!("cannot open netlink: host routes to container subnets not updated");
            return;
        };
        for gone in self.routes.difference(&subnets) {
            if let Err(e) = nl.delete_route(*gone, self.switch_ip, &self.name) {
                tracing::warn!(subnet = %gone, error = %e, "cannot remove the host's route");
            }
        }
        self.routes.retain(|r| subnets.contains(r));
        for new in subnets {
            if self.routes.contains(&new) {
                continue;
            }
            match nl.add_route(new, self.switch_ip, &self.name) {
                Ok(()) => {
                    self.routes.insert(new);
                }
                Err(e) => {
                    tracing::warn!(subnet = %new, error = %e, "cannot route the subnet through the host port (the host keeps its own route to it)")
                }
            }
        }
    }
}

/// The pair goes (its routes with it) when the host port does: at shutdown after the
/// engine (the controller drops it after its engine), or on a failed start.
impl Drop for HostPort {
    fn drop(&mut self) {
        if let Ok(mut nl) = Netlink::new() {
            let _ = nl.delete_link(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_addresses_pick_the_other_host_address() {
        let n = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert_eq!(
            link_addresses(n("169.254.77.1/30")).unwrap(),
            (
                "169.254.77.1".parse().unwrap(),
                "169.254.77.2".parse().unwrap()
            )
        );
        assert_eq!(
            link_addresses(n("10.9.0.2/30")).unwrap().1,
            "10.9.0.1".parse::<Ipv4Addr>().unwrap()
        );
        for (s, says) in [
            ("10.9.0.1/31", "/30 or shorter"),
            ("10.9.0.0/30", "not the subnet's"),
            ("10.9.0.3/30", "not the subnet's"),
        ] {
            let e = link_addresses(n(s)).unwrap_err().to_string();
            assert!(e.contains(says), "{s}: {e}");
        }
    }
}
