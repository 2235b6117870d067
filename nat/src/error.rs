//! Errors of the control-side calls (configuration and published ports). The packet
//! path never errors: it returns a `Verdict`.

use std::net::{IpAddr, SocketAddr};

use crate::published::PortMapping;
use crate::wire::Proto;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatError {
    /// Docker's wording, so scripts that match it keep working.
    #[error(
        "Bind for {}/{proto} failed: port is already allocated",
        SocketAddr::new(*host_ip, *host_port)
    )]
    PortAllocated {
        /// The address bound: the host address, or `0.0.0.0` / `::` for every address
        /// of the family ([`PortMapping::bound_ip`]).
        host_ip: IpAddr,
        host_port: u16,
        proto: Proto,
    },
    #[error("invalid port mapping {0:?}: the protocol must be tcp or udp and ports non-zero")]
    InvalidMapping(PortMapping),
    #[error(
        "invalid port mapping {0:?}: the host address and the target address must be of \
         the same IP family (publish an IPv6 target on an IPv6 host address, or on every \
         address)"
    )]
    FamilyMismatch(PortMapping),
    #[error("invalid NAT configuration: {0}")]
    InvalidConfig(&'static str),
}
