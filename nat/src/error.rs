//! Errors of the control-side calls (configuration and published ports). The packet
//! path never errors: it returns a `Verdict`.

use std::net::Ipv4Addr;

use crate::published::PortMapping;
use crate::wire::Proto;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatError {
    /// Docker's wording, so scripts that match it keep working.
    #[error(
        "Bind for {}:{host_port}/{proto} failed: port is already allocated",
        host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED)
    )]
    PortAllocated {
        host_ip: Option<Ipv4Addr>,
        host_port: u16,
        proto: Proto,
    },
    #[error("invalid port mapping {0:?}: the protocol must be tcp or udp and ports non-zero")]
    InvalidMapping(PortMapping),
    #[error("invalid NAT configuration: {0}")]
    InvalidConfig(&'static str),
}
