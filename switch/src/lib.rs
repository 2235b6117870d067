//! The vswitch data plane: ports, poll-mode workers, per-network L2 forwarding and the
//! gateway. The control plane reaches it only through `Engine`.

#[cfg(test)]
mod alloc_tests;
pub mod arp;
pub mod bpf;
mod capture;
mod deliver;
mod dns_clients;
mod dns_server;
mod dns_tcp;
pub mod engine;
mod fast_nat;
mod fast_vxlan;
pub mod fastpath;
pub mod fdb;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod gateway6;
pub mod host_link;
pub mod ipv4;
pub mod ipv6;
mod network;
mod pipeline;
pub mod port;
pub mod port_security;
pub mod remote;
pub mod router;
mod sinks;
mod skb_trunk;
pub mod stats;
pub mod storm;
mod worker;

pub use dns_server::DnsStats;
pub use engine::{CaptureTap, Captured, Engine, EngineConfig, PortInfo, StatsSnapshot};
pub use fdb::Mac;
pub use remote::{RemoteEndpoint, RemoteUpdate};
pub use router::{RouterStats, UplinkConfig};

/// A port's number inside the engine: small, dense, reused after removal.
pub type PortId = u32;
/// A network's number inside the engine, chosen by the control plane.
pub type NetId = u32;

/// What the data plane needs to know of a network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetConfig {
    pub id: NetId,
    /// The switch answers ARP/ICMP for this address (bridge networks).
    pub gateway: Option<gateway::Gateway>,
    /// The network's subnet (address, prefix length), for routing.
    pub subnet: Option<(std::net::Ipv4Addr, u8)>,
    /// No traffic leaves it (`--internal`).
    pub internal: bool,
    /// Endpoint addresses and MACs, so routed traffic reaches them without ARP.
    pub hosts: Vec<(std::net::Ipv4Addr, fdb::Mac)>,
    /// The embedded resolver answers at the gateway address, UDP/TCP port 53
    /// (user-defined networks; not the default bridge).
    pub dns: bool,
    /// An overlay network: its VNI and the peer VTEPs floods are replicated to.
    pub overlay: Option<OverlayConfig>,
    /// Endpoints may not talk to each other, only to the gateway and through it
    /// (Docker's `com.docker.network.bridge.enable_icc=false`).
    pub isolate: bool,
    /// The endpoints' MTU (0: the 1500 the ports carry): the embedded resolver's UDP
    /// answers fit in it.
    pub mtu: u32,
    /// A dual-stack network's IPv6 side.
    pub ipv6: Option<Ipv6Config>,
}

/// The IPv6 side of a dual-stack network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6Config {
    /// The gateway's IPv6 address: the switch answers neighbour solicitations and echo
    /// for it with the gateway's MAC (None where the network has no gateway in the
    /// switch, as on macvlan networks).
    pub gateway: Option<std::net::Ipv6Addr>,
    /// The subnet (address, prefix length).
    pub subnet: (std::net::Ipv6Addr, u8),
    /// Endpoint addresses and MACs, so routed traffic reaches them without neighbour
    /// discovery.
    pub hosts: std::collections::HashMap<std::net::Ipv6Addr, fdb::Mac>,
    /// Routed without NAT (Docker's `gateway_mode_ipv6=routed`): the endpoints' own
    /// addresses leave by the uplink, and traffic from outside to them is delivered.
    pub routed: bool,
}

/// What makes a network an overlay: the VXLAN network identifier and the VTEPs of the
/// other hosts (head-end replication list).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OverlayConfig {
    pub vni: u32,
    pub peers: Vec<std::net::Ipv4Addr>,
}

/// The pseudo-port "the tunnel": remote MACs of an overlay network are learned on it;
/// frames for it are encapsulated by the router's worker.
pub const TUNNEL_PORT: PortId = PortId::MAX - 1;

/// The pseudo-network the uplink port belongs to: its frames go to the router.
pub const UPLINK_NET: NetId = NetId::MAX;
/// The embedded resolver's local ports on the uplink address (each upstream query, UDP
/// or TCP, goes out from a random one of them): the router hands what arrives on any of
/// them to it.
pub const DNS_UPSTREAM_PORTS: std::ops::RangeInclusive<u16> = 61000..=65535;
/// The pseudo-network of a trunk port (a macvlan parent): its frames go, by VID, to
/// the networks on it.
pub const TRUNK_NET: NetId = NetId::MAX - 1;
/// The pseudo-network of a worker's endpoint trunk (the tc data path): its frames go, by
/// their tag, to the tc endpoints on it (`skb_trunk`).
pub const ENDPOINT_TRUNK_NET: NetId = NetId::MAX - 2;

/// The pseudo-network of the host port (`host_link`): its frames go to the host link.
pub const HOST_NET: NetId = NetId::MAX - 3;

/// How workers wait for frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PollMode {
    /// Spin while frames flow; sleep on the ports' fds after a short idle stretch.
    Adaptive,
    /// Spin always: lowest latency, one full core per worker.
    Busy,
}

impl std::str::FromStr for PollMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "adaptive" => Ok(PollMode::Adaptive),
            "busy" => Ok(PollMode::Busy),
            o => Err(format!(
                "unknown poll mode {o:?} (expected adaptive or busy)"
            )),
        }
    }
}
