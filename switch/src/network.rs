//! A network as the data plane holds it: its configuration, its FDB, its ports. Each
//! worker has its own copy (a replica of every network's table; no table is shared).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::fdb::{Fdb, Mac};
use crate::{NetConfig, PortId};

pub(crate) struct Network {
    pub cfg: NetConfig,
    pub fdb: Fdb,
    /// Every port of the network, on any worker, in insertion order.
    pub members: Vec<PortId>,
    /// `cfg.hosts` as a map, for the router.
    pub hosts: HashMap<Ipv4Addr, Mac>,
}
