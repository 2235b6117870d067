//! Drivers realise the model: one small trait, one file per driver (the `host` and
//! `none` pseudo-networks share one) — libnetwork's NetworkAllocate, CreateNetwork /
//! DeleteNetwork, CreateEndpoint / DeleteEndpoint and Join.

pub mod bridge;
pub mod macvlan;
pub mod overlay;
pub mod parents;
pub mod pseudo;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use switch::engine::EngineError;
use switch::port::IoMode;
use switch::{Engine, NetConfig, PortId};

use crate::error::{ApiError, ApiResult, Step};
use crate::link::LinkError;
use crate::model::{DriverKind, Endpoint, Mac, Network, SandboxMode};
use crate::netns::NetnsError;
use switch::port::PortError;

/// What realising a network or an endpoint fails with.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The network's configuration is the user's to fix (a parent interface that is not
    /// there, say): answered with the refusal's own code.
    #[error(transparent)]
    Refused(#[from] ApiError),
    /// The data plane refused or did not answer.
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Plumbing in a sandbox's namespace; the step says which.
    #[error(transparent)]
    Netns(#[from] Step<NetnsError>),
    /// A file or a sysctl; the step says which.
    #[error(transparent)]
    Io(#[from] Step<io::Error>),
    /// Opening a port on an endpoint's veth or a parent interface.
    #[error(transparent)]
    Port(#[from] Step<PortError>),
    /// The network cannot have endpoints (host, none).
    #[error("{0}")]
    NoEndpoints(&'static str),
    /// The stored network or endpoint lacks what its driver needs.
    #[error("{0}")]
    Incomplete(String),
}

pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// An endpoint's addresses on a network, as the data plane is told them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Host {
    pub ip: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    pub mac: Mac,
}

/// What a sandbox joining a network gets from it (libnetwork's `Join`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinInfo {
    /// The default route's gateway this network offers, if it offers one.
    pub gateway: Option<Ipv4Addr>,
    /// The IPv6 default route's gateway, on a network with IPv6.
    pub gateway6: Option<Ipv6Addr>,
    /// The resolver the sandbox's resolv.conf names when this network serves names.
    pub resolver: Option<IpAddr>,
}

/// A network about to be created, as a driver checks it (libnetwork's
/// `NetworkAllocate`): nothing exists yet, and a refusal changes nothing.
pub struct NetworkRequest<'a> {
    /// `--subnet` was given (not chosen from the default pools).
    pub subnet_given: bool,
    pub internal: bool,
    /// `-o KEY=VALUE`, as the user gave them.
    pub options: BTreeMap<String, String>,
    /// The networks that exist.
    pub networks: &'a mut dyn Iterator<Item = &'a Network>,
    /// The VTEP address (`--vtep-ip`, else the uplink's), if there is an uplink.
    pub vtep_ip: Option<Ipv4Addr>,
}

/// What drivers may touch: the data plane and the runtime map of endpoint ports.
pub struct Ctx<'a> {
    pub engine: &'a mut Engine,
    pub io: IoMode,
    /// Endpoint id -> its port in the data plane (runtime only, rebuilt on start).
    pub ports: &'a mut HashMap<String, PortId>,
}

pub trait Driver {
    fn kind(&self) -> DriverKind;
    /// Check a new network's request and settle its options (what is stored): the
    /// default takes the bridge-family options (`mtu`, `fastpath`) and refuses bad ones.
    fn allocate(&self, req: NetworkRequest) -> ApiResult<BTreeMap<String, String>> {
        overlay::validate_mtu(&req.options)?;
        bridge::validate_fastpath(&req.options)?;
        bridge::validate_icc(&req.options)?;
        bridge::validate_gateway_mode(&req.options)?;
        Ok(req.options)
    }
    /// How a sandbox created on this driver's network gets its networking: a namespace
    /// of its own that networks connect to (the default), the host's, or loopback only.
    fn sandbox_mode(&self) -> SandboxMode {
        SandboxMode::Netns
    }
    /// Whether the network's subnet must keep clear of the host's own addresses (a
    /// `--subnet` over one is refused, automatic subnets step around them). Not for a
    /// macvlan network, whose subnet is the parent's LAN the host may be on, nor for an
    /// overlay, whose subnet spans hosts and so cannot follow one host's addresses.
    fn clear_of_host_addresses(&self) -> bool {
        true
    }
    /// Whether the embedded resolver serves the sandbox names of this driver's
    /// user-defined networks.
    fn embedded_dns(&self) -> bool {
        false
    }
    /// What a sandbox joining `net` gets (libnetwork's `Join`): the pool's gateway as
    /// its default route unless the network is internal, and the embedded resolver on
    /// that gateway where the network serves names.
    fn join(&self, net: &Network) -> JoinInfo {
        let gw = net.pool.as_ref().map(|p| p.gateway);
        let gw6 = net.pool6.as_ref().map(|p| p.gateway);
        // The resolver at the IPv4 gateway, or at the IPv6 one of an IPv6-only network.
        let resolver = gw.map(IpAddr::V4).or(gw6.map(IpAddr::V6));
        JoinInfo {
            gateway: gw.filter(|_| !net.internal),
            gateway6: gw6.filter(|_| !net.internal),
            resolver: resolver.filter(|_| serves_names(self, net)),
        }
    }
    /// Whether ports can be published on `net` (DNAT from the uplink); the refusal says
    /// why not.
    fn check_publish(&self, net: &Network) -> ApiResult<()> {
        Err(ApiError::invalid(format!(
            "cannot publish ports on network {}: only non-internal bridge networks publish ports",
            net.name
        )))
    }
    /// What the data plane is told of `net` with its endpoints at `hosts`; None for a
    /// network the data plane does not carry (the default: host, none).
    fn net_config(&self, _net: &Network, _hosts: &[Host]) -> Result<Option<NetConfig>> {
        Ok(None)
    }
    /// Program the data plane for a network (also on restart): by default, the network
    /// as `net_config` has it, with no endpoints yet.
    fn create_network(&mut self, ctx: &mut Ctx, net: &Network) -> Result<()> {
        self.sync_network(ctx, net, &[])
    }
    /// Take the network out of the data plane (the default: its switch).
    fn delete_network(&mut self, ctx: &mut Ctx, net: &Network) -> Result<()> {
        Ok(ctx.engine.remove_network(net.num)?)
    }
    /// The network's endpoints changed: tell the data plane their addresses (the
    /// network as `net_config` has it, where the data plane carries it).
    fn sync_network(&mut self, ctx: &mut Ctx, net: &Network, hosts: &[Host]) -> Result<()> {
        match self.net_config(net, hosts)? {
            Some(cfg) => Ok(ctx.engine.add_network(cfg)?),
            None => Ok(()),
        }
    }
    /// Give the sandbox its interface on the network and attach it to the data plane.
    /// On restart the same call re-attaches an endpoint whose link survived.
    fn create_endpoint(&mut self, ctx: &mut Ctx, net: &Network, ep: &Endpoint) -> Result<()>;
    /// Detach from the data plane and remove the link.
    fn delete_endpoint(&mut self, ctx: &mut Ctx, net: &Network, ep: &Endpoint) -> Result<()>;
}

/// Whether the embedded resolver answers the sandbox names of `net` (user-defined
/// networks of a driver that has it).
pub fn serves_names<D: Driver + ?Sized>(d: &D, net: &Network) -> bool {
    d.embedded_dns() && !net.predefined
}

/// The driver for a kind; None for kinds this build does not implement yet.
pub fn for_kind(kind: DriverKind) -> Option<Box<dyn Driver>> {
    match kind {
        DriverKind::Bridge => Some(Box::new(bridge::Bridge)),
        DriverKind::Host => Some(Box::new(pseudo::host())),
        DriverKind::Null => Some(Box::new(pseudo::null())),
        DriverKind::Macvlan => Some(Box::new(macvlan::Macvlan)),
        DriverKind::Overlay => Some(Box::new(overlay::Overlay)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipam::Pool;

    fn net(driver: DriverKind, internal: bool, predefined: bool) -> Network {
        Network {
            id: "id".into(),
            name: "n".into(),
            driver,
            pool: Some(Pool::new("172.20.0.0/16".parse().unwrap(), None, None).unwrap()),
            pool6: None,
            internal,
            attachable: false,
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            created: String::new(),
            num: 1,
            predefined,
            global: false,
            members: Vec::new(),
        }
    }

    /// What joining gives a sandbox, by driver: the switch's resolver on user-defined
    /// bridge and overlay networks, no default route out of an internal one, and on
    /// macvlan the LAN's router as gateway with the upstreams for names.
    #[test]
    fn join_gives_the_gateway_and_resolver_the_driver_offers() {
        let gw = Ipv4Addr::new(172, 20, 0, 1);
        let join = |n: &Network| for_kind(n.driver).unwrap().join(n);
        let user = join(&net(DriverKind::Bridge, false, false));
        assert_eq!(user.gateway, Some(gw));
        assert_eq!(user.resolver, Some(IpAddr::V4(gw)));
        let default = join(&net(DriverKind::Bridge, false, true));
        assert_eq!((default.gateway, default.resolver), (Some(gw), None));
        let internal = join(&net(DriverKind::Overlay, true, false));
        assert_eq!(
            (internal.gateway, internal.resolver),
            (None, Some(IpAddr::V4(gw)))
        );
        let lan = join(&net(DriverKind::Macvlan, false, false));
        assert_eq!((lan.gateway, lan.resolver), (Some(gw), None));
    }
}
