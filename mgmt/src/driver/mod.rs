//! Drivers realise the model: one small trait, one file per driver (libnetwork's
//! CreateNetwork / DeleteNetwork / CreateEndpoint / DeleteEndpoint).

pub mod bridge;
pub mod host;
pub mod macvlan;
pub mod null;
pub mod overlay;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr};

use switch::engine::EngineError;
use switch::port::IoMode;
use switch::{Engine, PortId};

use crate::error::ApiError;
use crate::error::ApiResult;
use crate::link::LinkError;
use crate::model::{DriverKind, Endpoint, Mac, Network, SandboxMode};
use crate::netns::NetnsError;

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
    /// Plumbing in a sandbox's namespace; `what` says which.
    #[error("{what}")]
    Netns {
        what: String,
        #[source]
        source: NetnsError,
    },
    /// A file, a sysctl or a port's socket; `what` says which.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The network cannot have endpoints (host, none).
    #[error("{0}")]
    NoEndpoints(&'static str),
    /// The stored network or endpoint lacks what its driver needs.
    #[error("{0}")]
    Incomplete(String),
}

impl DriverError {
    /// The step `what` failed in a namespace.
    pub fn netns(what: impl Into<String>) -> impl FnOnce(NetnsError) -> DriverError {
        let what = what.into();
        move |source| DriverError::Netns { what, source }
    }
    /// The step `what` failed on a file or socket.
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> DriverError {
        let what = what.into();
        move |source| DriverError::Io { what, source }
    }
}

pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// What a sandbox joining a network gets from it (libnetwork's `Join`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinInfo {
    /// The default route's gateway this network offers, if it offers one.
    pub gateway: Option<Ipv4Addr>,
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
        Ok(req.options)
    }
    /// How a sandbox created on this driver's network gets its networking: a namespace
    /// of its own that networks connect to (the default), the host's, or loopback only.
    fn sandbox_mode(&self) -> SandboxMode {
        SandboxMode::Netns
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
        JoinInfo {
            gateway: gw.filter(|_| !net.internal),
            resolver: gw.filter(|_| serves_names(self, net)).map(IpAddr::V4),
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
    /// Program the data plane for a network (also on restart).
    fn create_network(&mut self, ctx: &mut Ctx, net: &Network) -> Result<()>;
    fn delete_network(&mut self, ctx: &mut Ctx, net: &Network) -> Result<()>;
    /// The network's endpoints changed: tell the data plane their addresses.
    fn sync_network(
        &mut self,
        _ctx: &mut Ctx,
        _net: &Network,
        _hosts: &[(Ipv4Addr, Mac)],
    ) -> Result<()> {
        Ok(())
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
        DriverKind::Host => Some(Box::new(host::Host)),
        DriverKind::Null => Some(Box::new(null::Null)),
        DriverKind::Macvlan => Some(Box::new(macvlan::Macvlan)),
        DriverKind::Overlay => Some(Box::new(overlay::Overlay)),
    }
}
