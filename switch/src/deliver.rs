//! Delivery by destination address: a routed IPv4 or IPv6 frame (already translated, where the
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
use wire::ipv6::{Ipv6Frame, Ipv6Packet};

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
    send_to(net, frame, len, (gw.mac, mac), out, counters, now);
    Delivery::Delivered
}

/// `frame[..len]` from the gateway's MAC to the endpoint's: to the port the FDB knows,
/// else to every member of its network.
fn send_to(
    net: &mut Network,
    frame: &mut [u8],
    len: usize,
    (from, to): (crate::fdb::Mac, crate::fdb::Mac),
    out: &mut impl Emit,
    counters: &PortCounters,
    now: Instant,
) {
    let mut e = ethernet::Frame::new_checked(&mut frame[..]).expect("an Ethernet header");
    e.set_dst(to);
    e.set_src(from);
    match net.fdb.lookup(&to, now) {
        Some(p) => out.emit(p, &frame[..len], counters),
        None => {
            for &p in &net.members {
                out.emit(p, &frame[..len], counters);
            }
        }
    }
}

/// [`to_endpoint`] for IPv6: `frame` (Ethernet + IPv6, `len` bytes) goes to the
/// endpoint whose IPv6 address it carries, hop limit decremented.
pub(crate) fn to_endpoint6(
    nets: &mut HashMap<NetId, Network>,
    frame: &mut [u8],
    len: usize,
    out: &mut impl Emit,
    counters: &PortCounters,
    now: Instant,
) -> Delivery {
    let dst = Ipv6Frame::new(&frame[..len]).map_or(std::net::Ipv6Addr::UNSPECIFIED, |f| f.dst());
    let found = nets.values_mut().find_map(|n| {
        let v6 = n.cfg.ipv6.as_ref()?;
        let mac = *v6.hosts.get(&dst)?;
        Some((n, mac))
    });
    let Some((net, mac)) = found else {
        return Delivery::UnknownHost;
    };
    let Some(gw) = net.cfg.gateway else {
        return Delivery::UnknownHost;
    };
    let Ok(mut p) = Ipv6Packet::new_checked(&mut frame[ETH_HLEN..len]) else {
        return Delivery::UnknownHost;
    };
    if p.decrement_hop_limit().is_none() {
        return Delivery::TtlExceeded;
    }
    send_to(net, frame, len, (gw.mac, mac), out, counters, now);
    Delivery::Delivered
}
