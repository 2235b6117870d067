//! The vswitch control plane: the CNM model (networks, endpoints, sandboxes), drivers,
//! IPAM, namespace and link plumbing, persisted state and the control socket.

pub mod api;
pub mod capture;
pub mod cluster;
pub mod controller;
pub mod docker_api;
pub mod driver;
pub mod endpoint_trunk;
pub mod error;
pub mod ethtool;
pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub mod host_port;
pub mod http_door;
pub mod ipam;
pub mod ipam6;
pub mod link;
pub mod metrics;
pub mod model;
pub mod netns;
pub mod proxy;
pub mod publish;
pub mod reserved_ports;
pub mod rpc;
pub mod sandbox;
pub mod server;
pub mod state;
