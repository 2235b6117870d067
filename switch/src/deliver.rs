//! Delivery by destination address: a routed IPv4 frame (already translated, where the
//! NAT had a say) goes to the container owning its destination, with the MACs the
//! control plane gave the network (no ARP into container networks). The router's
//! inbound traffic and the host port's share it.

use std::collections::HashMap;
use std::time::Instant;

use crate::ipv4::{self, ETH_HLEN};
use crate::network::Network;
use crate::pipeline::Emit;
use crate::stats::PortCounters;
use crate::NetId;
use wire::ethernet;
use wire::ip::Ipv4Frame;

/// What became of a frame given to [`to_endpoint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Delivered,
    /// No network with a gateway has an endpoint with the destination address.
    UnknownHost,
    /// The TTL ran out (0 or 1): not forwarded.
    TtlExceeded,
}

/// Deliver `frame` (Ethernet + IPv4, `len` bytes) to the endpoint whose address it
/// carries: TTL decremented, MACs rewritten (the network's gateway to the endpoint),
/// sent to the port the FDB knows, else to every member of its network.
pub(crate) fn to_endpoint(
    nets: &mut HashMap<NetId, Network>,
    frame: &mut [u8],
    len: usize,
    out: &mut impl Emit,
    counters: &PortCounters,
    now: Instant,
) -> Delivery {
    let dst = Ipv4Frame::new(&frame[..len]).map_or(std::net::Ipv4Addr::UNSPECIFIED, |f| f.dst());
    let found = nets.values_mut().find(|n| {
        n.cfg
            .subnet
            .is_some_and(|(s, p)| crate::router::in_subnet(dst, s, p))
    });
    let Some(net) = found else {
        return Delivery::UnknownHost;
    };
    let (Some(gw), Some(mac)) = (net.cfg.gateway, net.hosts.get(&dst).copied()) else {
        return Delivery::UnknownHost;
    };
    if ipv4::decrement_ttl(&mut frame[ETH_HLEN..len]).is_none() {
        return Delivery::TtlExceeded;
    }
    let mut e = ethernet::Frame::new_checked(&mut frame[..]).expect("an Ethernet header");
    e.set_dst(mac);
    e.set_src(gw.mac);
    match net.fdb.lookup(&mac, now) {
        Some(p) => out.emit(p, &frame[..len], counters),
        None => {
            for &p in &net.members {
                out.emit(p, &frame[..len], counters);
            }
        }
    }
    Delivery::Delivered
}
