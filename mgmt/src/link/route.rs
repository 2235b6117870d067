//! Routes: the host's routes to container subnets through the host port, and the
//! default route a shared uplink's gateway is read from.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Netlink, Result};

/// A main-table IPv4 unicast route to `dst` via `gw` out of interface `index`.
fn route_message(dst: Ipv4Net, gw: Ipv4Addr, index: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.destination_prefix_length = dst.prefix_len();
    msg.header.table = libc::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Static;
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(
            dst.network(),
        )));
    msg.attributes
        .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
    msg.attributes.push(RouteAttribute::Oif(index));
    msg
}

impl Netlink {
    /// `ip route add DST via GW dev NAME proto static`: never replacing a route the
    /// host has to the same prefix (that fails with EEXIST).
    pub fn add_route(&mut self, dst: Ipv4Net, gw: Ipv4Addr, name: &str) -> Result<()> {
        let index = self.require_index(name)?;
        self.ack(
            RouteNetlinkMessage::NewRoute(route_message(dst.trunc(), gw, index)),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("adding the route to {} via {gw} dev {name}", dst.trunc()),
        )
    }

    /// `ip route del DST via GW dev NAME`; a route already gone is not an error.
    pub fn delete_route(&mut self, dst: Ipv4Net, gw: Ipv4Addr, name: &str) -> Result<()> {
        let index = self.require_index(name)?;
        let r = self.ack(
            RouteNetlinkMessage::DelRoute(route_message(dst.trunc(), gw, index)),
            0,
            || format!("removing the route to {} via {gw} dev {name}", dst.trunc()),
        );
        match r {
            Err(e) if super::errno_of(&e) == Some(libc::ESRCH) => Ok(()),
            other => other,
        }
    }

    /// The gateway of the main table's IPv4 default route out of `name`, if it has one.
    pub fn default_gateway(&mut self, name: &str) -> Result<Option<Ipv4Addr>> {
        let index = self.require_index(name)?;
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let dump = self.dump(RouteNetlinkMessage::GetRoute(req), || {
            "listing this namespace's routes".to_string()
        })?;
        for reply in dump {
            let RouteNetlinkMessage::NewRoute(r) = reply else {
                continue;
            };
            if r.header.destination_prefix_length != 0 || r.header.table != libc::RT_TABLE_MAIN {
                continue;
            }
            let oif = r.attributes.contains(&RouteAttribute::Oif(index));
            let gw = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
                _ => None,
            });
            if let (true, Some(g)) = (oif, gw) {
                return Ok(Some(g));
            }
        }
        Ok(None)
    }

    /// The IPv4 addresses on interface `name`, with their prefixes.
    pub fn link_ipv4_addresses(&mut self, name: &str) -> Result<Vec<Ipv4Net>> {
        let index = self.require_index(name)?;
        self.ipv4_addresses_where(|i| i == index)
    }
}
