//! A network as the data plane holds it: its configuration, its FDB, its ports. Each
//! worker has its own copy (a replica of every network's table; no table is shared).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::fdb::{Fdb, Mac};
use crate::port_security::PortGuard;
use crate::remote::RemoteEndpoints;
use crate::storm::Storm;
use crate::{NetConfig, PortId};

pub(crate) struct Network {
    pub cfg: NetConfig,
    pub fdb: Fdb,
    /// Every port of the network, on any worker, in insertion order.
    pub members: Vec<PortId>,
    /// `cfg.hosts` as a map, for the router.
    pub hosts: HashMap<Ipv4Addr, Mac>,
    /// What each endpoint port may send from (port security); ports without an entry
    /// (the switch's own, endpoints with port security off) are not checked.
    pub guards: HashMap<PortId, PortGuard>,
    /// Storm control: each port's flood budget.
    pub storm: Storm,
    /// Overlay networks: the endpoints on other hosts the control plane told of (static
    /// FDB entries behind the tunnel, and the ARP proxy).
    pub remote: RemoteEndpoints,
}
