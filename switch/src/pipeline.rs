//! The packet's journey through one network, a burst at a time: classify, learn the
//! source, let the gateway answer what is addressed to it, then switch (known unicast
//! to its port, everything else flooded to the network's other ports).

use std::collections::HashMap;
use std::time::Instant;

use crate::fdb::{Learned, Mac};
use crate::network::Network;
use crate::port::{Burst, MAX_FRAME};
use crate::stats::{DropReason, PortCounters};
use crate::{gateway, gateway6};
use crate::{NetId, PortId, TUNNEL_PORT};

use wire::ethernet::{self, is_group, BROADCAST, ETHERTYPE_ARP};
use wire::ip::Ipv4Frame;

const DNS_PORT: u16 = 53;

/// The edges of the worker's stage graph (`worker::graph`): where a stage puts a frame
/// it is done with. The worker's transmit side implements it; tests record into
/// `sinks`. `counters` (the ingress port's) are charged for drops.
pub trait Emit {
    /// To port output: queue `frame` for transmission on port `to`.
    fn emit(&mut self, to: PortId, frame: &[u8], counters: &PortCounters);
    /// The gateway's answer (ARP, echo), to port output on port `to`.
    fn answer(&mut self, to: PortId, frame: &[u8], counters: &PortCounters);
    /// A MAC was newly learned (or moved): tell the other workers.
    fn learned(&mut self, net: NetId, mac: Mac, port: PortId);
    /// To the router stage: a frame for the gateway to route (leaving the network).
    fn route(&mut self, from: Ingress, frame: &[u8], counters: &PortCounters);
    /// To the dns stage: a query to the network's embedded resolver (gateway address,
    /// port 53).
    fn dns(&mut self, from: Ingress, frame: &[u8], counters: &PortCounters);
    /// To the vtep stage: a frame of an overlay network for the tunnel (a remote MAC,
    /// or the tunnel's share of a flood).
    fn tunnel(&mut self, from: Ingress, frame: &[u8], counters: &PortCounters);
    /// From the router to the dns stage: an upstream reply for the resolver; false when
    /// its queue is full.
    fn upstream_reply(&mut self, frame: &[u8]) -> bool;
}

/// What to do with one frame.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Drop(DropReason),
    /// The gateway answered; the reply is in the scratch buffer.
    Reply(usize),
    Unicast(PortId),
    Flood,
    /// Addressed to the gateway's MAC but not to the gateway: the router's.
    Route,
    /// UDP or TCP to the gateway address, port 53: the embedded resolver's.
    Dns,
    /// A MAC learned behind the tunnel (overlay networks).
    Tunnel,
}

/// What a stage that borrows every network works with besides its input: the networks,
/// where its output goes (the stage graph's edges) and the time of the burst.
pub(crate) struct Cx<'a, E> {
    pub nets: &'a mut HashMap<NetId, Network>,
    pub out: &'a mut E,
    pub now: Instant,
}

impl<'a, E: Emit> Cx<'a, E> {
    pub fn new(nets: &'a mut HashMap<NetId, Network>, out: &'a mut E, now: Instant) -> Self {
        Cx { nets, out, now }
    }
}

/// Where a frame came in: its network and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ingress {
    pub net: NetId,
    pub port: PortId,
}

/// The port a burst came in on, as the L2 stage needs it: its id, its counters, and
/// whether the MACs it learns are announced to the other workers.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub port: PortId,
    pub counters: &'a PortCounters,
    pub announce_learning: bool,
}

/// Switch a burst received from `src` on `net`.
pub(crate) fn switch_burst(
    net: &mut Network,
    src: Source,
    rx: &Burst,
    out: &mut impl Emit,
    scratch: &mut [u8; MAX_FRAME],
    now: Instant,
) {
    let (in_port, counters) = (src.port, src.counters);
    let from = Ingress {
        net: net.cfg.id,
        port: in_port,
    };
    // Port security: read once per burst (a `Copy` value, no allocation).
    let guard = net.guards.get(&in_port).copied();
    for frame in rx.iter() {
        counters.rx(frame.len());
        if guard.is_some_and(|g| !g.allows(frame)) {
            counters.dropped(DropReason::Spoofed, 1);
            continue;
        }
        match classify(net, src, frame, out, scratch, now) {
            Verdict::Drop(why) => counters.dropped(why, 1),
            Verdict::Reply(len) => out.answer(in_port, &scratch[..len], counters),
            Verdict::Unicast(to) => out.emit(to, frame, counters),
            Verdict::Route => out.route(from, frame, counters),
            Verdict::Dns => out.dns(from, frame, counters),
            Verdict::Tunnel => out.tunnel(from, frame, counters),
            Verdict::Flood => {
                if !net.storm.allow(in_port, now) {
                    counters.dropped(DropReason::Storm, 1);
                    continue;
                }
                for &p in &net.members {
                    if p != in_port {
                        out.emit(p, frame, counters);
                    }
                }
                if net.cfg.overlay.is_some() {
                    out.tunnel(from, frame, counters);
                }
            }
        }
    }
}

#[inline]
fn classify(
    net: &mut Network,
    src: Source,
    frame: &[u8],
    out: &mut impl Emit,
    scratch: &mut [u8; MAX_FRAME],
    now: Instant,
) -> Verdict {
    let Source {
        port: in_port,
        counters,
        announce_learning,
    } = src;
    let Ok(eth) = ethernet::Frame::new_checked(frame) else {
        return Verdict::Drop(DropReason::Runt);
    };
    let (dst, src) = (eth.dst(), eth.src());
    if is_group(&src) {
        return Verdict::Drop(DropReason::BadSource);
    }
    // A sandbox claiming the gateway's MAC would take the network's routed traffic once
    // learned (the in-kernel fast path forwards by the FDB alone).
    if net.cfg.gateway.as_ref().is_some_and(|gw| gw.mac == src) {
        return Verdict::Drop(DropReason::BadSource);
    }

    match net.fdb.learn(src, in_port, now) {
        Learned::Changed | Learned::Reannounce if announce_learning => {
            out.learned(net.cfg.id, src, in_port)
        }
        Learned::Full => counters.fdb_full(),
        _ => {}
    }

    if dst == BROADCAST && eth.ethertype() == ETHERTYPE_ARP {
        if let Some(gw) = &net.cfg.gateway {
            if let Some(n) = gateway::arp_reply(gw, frame, scratch) {
                return Verdict::Reply(n);
            }
        }
        // The ARP proxy: a remote endpoint's address is answered here, with its MAC,
        // rather than flooded to every host (only frames from local ports get here).
        if !net.remote.is_empty() && !net.cfg.isolate {
            let remote = &net.remote;
            if let Some(n) = gateway::arp_reply_to(frame, scratch, |ip| remote.proxy(ip)) {
                return Verdict::Reply(n);
            }
        }
    } else if let Some(gw) = &net.cfg.gateway {
        let gw6 = net.cfg.ipv6.as_ref().and_then(|v6| v6.gateway);
        // IPv6 multicast (33:33:...): neighbour solicitations for the gateway go to its
        // solicited-node group; they are answered, the rest is flooded below.
        if let (Some(ip6), [0x33, 0x33, ..]) = (gw6, dst) {
            if let Some(n) = gateway6::reply(gw.mac, ip6, frame, scratch) {
                return Verdict::Reply(n);
            }
        }
        // The NDP proxy: solicitations for a remote endpoint's IPv6 address.
        if dst[..2] == [0x33, 0x33] && !net.remote.is_empty6() && !net.cfg.isolate {
            let remote = &net.remote;
            if let Some(n) = gateway6::proxy_reply(frame, scratch, |ip| remote.proxy6(ip)) {
                return Verdict::Reply(n);
            }
        }
        if dst == gw.mac {
            if let Some(n) = gateway::icmp_echo_reply(gw, frame, scratch) {
                return Verdict::Reply(n);
            }
            if let Some(n) = gateway::arp_reply(gw, frame, scratch) {
                return Verdict::Reply(n);
            }
            if let Some(n) = gw6.and_then(|ip6| gateway6::reply(gw.mac, ip6, frame, scratch)) {
                return Verdict::Reply(n);
            }
            if net.cfg.dns && is_dns_to(gw.ip, gw6, frame) {
                return Verdict::Dns;
            }
            return Verdict::Route;
        }
    }

    // enable_icc=false: what is not the gateway's is another endpoint's, or a flood.
    if net.cfg.isolate {
        return Verdict::Drop(DropReason::Icc);
    }
    if !is_group(&dst) {
        if let Some(to) = net.fdb.lookup(&dst, now) {
            return if to == in_port {
                Verdict::Drop(DropReason::SamePort)
            } else if to == TUNNEL_PORT {
                Verdict::Tunnel
            } else {
                Verdict::Unicast(to)
            };
        }
    }
    Verdict::Flood
}

/// UDP or TCP to destination port 53 of `ip` (IPv4, first or only fragment) or of
/// `ip6` (IPv6 with UDP or TCP as the next header: queries do not come with extension
/// headers). Only frames already addressed to the gateway's MAC get here: the rest never
/// pay for it.
#[inline]
fn is_dns_to(ip: std::net::Ipv4Addr, ip6: Option<std::net::Ipv6Addr>, frame: &[u8]) -> bool {
    use wire::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};
    use wire::ipv6::{Ipv6Frame, NEXT_HEADER_TCP, NEXT_HEADER_UDP};
    match ethernet::ethertype(frame) {
        Some(ETHERTYPE_IPV4) => Ipv4Frame::new(frame).is_some_and(|f| {
            f.packet().frag_offset() == 0
                && f.endpoints()
                    .is_some_and(|(_, to)| *to.ip() == ip && to.port() == DNS_PORT)
        }),
        Some(ETHERTYPE_IPV6) => ip6.is_some_and(|ip6| {
            Ipv6Frame::new(frame).is_some_and(|f| {
                matches!(f.next_header(), NEXT_HEADER_UDP | NEXT_HEADER_TCP)
                    && f.dst() == ip6
                    && f.payload().get(2..4) == Some(&DNS_PORT.to_be_bytes()[..])
            })
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdb::Fdb;
    use crate::gateway::Gateway;
    use crate::NetConfig;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use crate::sinks::Sink;

    const GW_MAC: Mac = [0x02, 0x42, 0xac, 0x12, 0, 1];

    fn net(members: Vec<PortId>) -> Network {
        Network {
            cfg: NetConfig {
                id: 1,
                gateway: Some(Gateway {
                    ip: Ipv4Addr::new(172, 18, 0, 1),
                    mac: GW_MAC,
                }),
                ..Default::default()
            },
            hosts: Default::default(),
            fdb: Fdb::new(4, Duration::from_secs(300)),
            members,
            guards: Default::default(),
            storm: Default::default(),
            remote: Default::default(),
        }
    }

    fn frame(dst: Mac, src: Mac) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend(src);
        f.extend([0x08, 0x00]);
        f.resize(60, 0xab);
        f
    }

    fn run(n: &mut Network, port: PortId, frames: &[Vec<u8>]) -> (Sink, PortCounters) {
        let mut b = Burst::new();
        for f in frames {
            b.push(f);
        }
        let mut sink = Sink::default();
        let c = PortCounters::default();
        let mut scratch = [0u8; MAX_FRAME];
        switch_burst(
            n,
            Source {
                port,
                counters: &c,
                announce_learning: true,
            },
            &b,
            &mut sink,
            &mut scratch,
            Instant::now(),
        );
        (sink, c)
    }

    const A: Mac = [2, 0, 0, 0, 0, 0xa];
    const B: Mac = [2, 0, 0, 0, 0, 0xb];

    #[test]
    fn unknown_unicast_floods_then_learned_goes_direct() {
        let mut n = net(vec![1, 2, 3]);
        let (s, _) = run(&mut n, 1, &[frame(B, A)]);
        let ports: Vec<_> = s.out.iter().map(|(p, _)| *p).collect();
        assert_eq!(ports, vec![2, 3], "flooded to all but the ingress");
        assert_eq!(s.learned, vec![A]);
        let (s, _) = run(&mut n, 2, &[frame(A, B)]);
        assert_eq!(s.out.len(), 1);
        assert_eq!(s.out[0].0, 1, "A was learned on port 1");
        assert_eq!(s.out[0].1, frame(A, B), "forwarded unchanged");
    }

    #[test]
    fn drops_runts_bad_sources_and_hairpins() {
        let mut n = net(vec![1, 2]);
        let (s, c) = run(
            &mut n,
            1,
            &[vec![0; 10], frame(B, BROADCAST), frame(B, GW_MAC)],
        );
        assert!(s.out.is_empty());
        let snap = c.snapshot();
        assert_eq!(snap.drops["runt"], 1);
        assert_eq!(
            snap.drops["bad_source_mac"], 2,
            "multicast, and the gateway's MAC"
        );
        assert_eq!(n.fdb.lookup(&GW_MAC, Instant::now()), None, "never learned");
        run(&mut n, 1, &[frame(B, A)]);
        let (s, c) = run(&mut n, 1, &[frame(A, [2, 0, 0, 0, 0, 0xc])]);
        assert!(s.out.is_empty(), "A lives on the ingress port");
        assert_eq!(c.snapshot().drops["same_port"], 1);
    }

    #[test]
    fn gateway_answers_arp_without_flooding() {
        let mut n = net(vec![1, 2]);
        let mut req = BROADCAST.to_vec();
        req.extend(A);
        req.extend([0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        req.extend(A);
        req.extend([172, 18, 0, 2, 0, 0, 0, 0, 0, 0, 172, 18, 0, 1]);
        req.resize(60, 0);
        let (s, _) = run(&mut n, 1, &[req.clone()]);
        assert_eq!(s.out.len(), 1);
        assert_eq!(s.out[0].0, 1, "reply goes back to the asker");
        assert_eq!(&s.out[0].1[0..6], &A);
        // ARP for another host on the network is flooded as usual.
        req[41] = 9;
        let (s, _) = run(&mut n, 1, &[req]);
        assert_eq!(s.out.len(), 1);
        assert_eq!(s.out[0].0, 2);
    }

    /// A broadcast ARP request from `A` (172.18.0.2) for `target`.
    fn arp_request(target: Ipv4Addr) -> Vec<u8> {
        let mut req = BROADCAST.to_vec();
        req.extend(A);
        req.extend([0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        req.extend(A);
        req.extend([172, 18, 0, 2, 0, 0, 0, 0, 0, 0]);
        req.extend(target.octets());
        req.resize(60, 0);
        req
    }

    #[test]
    fn solicitations_for_a_remote_ipv6_address_are_answered_by_the_ndp_proxy() {
        use crate::remote::{RemoteEndpoint, RemoteUpdate};
        let mut n = net(vec![1, 2]);
        n.cfg.overlay = Some(crate::OverlayConfig {
            vni: 4096,
            peers: vec![Ipv4Addr::new(10, 200, 0, 2)],
        });
        let (me, far): (Ipv6Addr, Ipv6Addr) =
            ("fd00:1::2".parse().unwrap(), "fd00:1::9".parse().unwrap());
        let remote = RemoteEndpoint {
            mac: B,
            ip: None,
            ip6: Some(far),
            vtep: Ipv4Addr::new(10, 200, 0, 2),
        };
        let update = RemoteUpdate {
            upsert: vec![remote],
            ..Default::default()
        };
        n.update_remote(&update, Instant::now());
        let ns = |target| {
            let mut f = vec![0u8; 128];
            let len = crate::ipv6::neighbor_solicit(A, me, target, &mut f);
            f.truncate(len);
            f
        };
        let (s, _) = run(&mut n, 1, &[ns(far)]);
        assert!(s.tunnel.is_empty(), "not tunnelled: {:?}", s.tunnel);
        assert_eq!(s.out.len(), 1, "answered, not flooded: {:?}", s.out);
        let (to, reply) = &s.out[0];
        assert_eq!(*to, 1, "to the asker");
        assert_eq!((&reply[0..6], &reply[6..12]), (&A[..], &B[..]));
        // Another address is asked of every host.
        let (s, _) = run(&mut n, 1, &[ns("fd00:1::10".parse().unwrap())]);
        assert_eq!((s.out.len(), s.tunnel.len()), (1, 1), "flooded");
    }

    #[test]
    fn remote_endpoints_are_answered_by_the_arp_proxy_and_reached_by_the_tunnel() {
        use crate::remote::{RemoteEndpoint, RemoteUpdate};
        let mut n = net(vec![1, 2]);
        n.cfg.overlay = Some(crate::OverlayConfig {
            vni: 4096,
            peers: vec![Ipv4Addr::new(10, 200, 0, 2)],
        });
        let remote_ip = Ipv4Addr::new(172, 18, 0, 9);
        let remote = RemoteEndpoint {
            mac: B,
            ip: Some(remote_ip),
            ip6: None,
            vtep: Ipv4Addr::new(10, 200, 0, 2),
        };
        let update = RemoteUpdate {
            upsert: vec![remote],
            ..Default::default()
        };
        n.update_remote(&update, Instant::now());
        let (s, _) = run(&mut n, 1, &[arp_request(remote_ip)]);
        assert!(s.tunnel.is_empty(), "not tunnelled: {:?}", s.tunnel);
        assert_eq!(s.out.len(), 1, "answered, not flooded: {:?}", s.out);
        let (to, reply) = &s.out[0];
        assert_eq!(*to, 1, "to the asker");
        let r = wire::arp::Repr::parse_frame(reply).expect("ARP");
        assert_eq!(r.op, wire::arp::Operation::Reply);
        assert_eq!((r.sender_mac, r.sender_ip), (B, remote_ip), "the remote's");
        assert_eq!(
            (r.target_mac, r.target_ip),
            (A, Ipv4Addr::new(172, 18, 0, 2))
        );
        assert_eq!((&reply[0..6], &reply[6..12]), (&A[..], &B[..]));
        // Another address is flooded, to the local ports and the tunnel, as before.
        let (s, _) = run(&mut n, 1, &[arp_request(Ipv4Addr::new(172, 18, 0, 10))]);
        assert_eq!(s.out.len(), 1);
        assert_eq!(s.out[0].0, 2);
        assert_eq!(s.tunnel.len(), 1);
        // Known unicast to the remote MAC goes to the tunnel only.
        let (s, _) = run(&mut n, 1, &[frame(B, A)]);
        assert!(s.out.is_empty());
        assert_eq!(s.tunnel.len(), 1);
        // Withdrawn: its address is asked of every host again.
        n.update_remote(
            &RemoteUpdate {
                remove: vec![remote],
                ..Default::default()
            },
            Instant::now(),
        );
        assert_eq!(n.fdb.lookup(&B, Instant::now()), None);
        let (s, _) = run(&mut n, 1, &[arp_request(remote_ip)]);
        assert_eq!((s.out.len(), s.tunnel.len()), (1, 1), "flooded");
        assert_eq!(s.out[0].0, 2);
    }

    #[test]
    fn table_bound_counts_and_still_forwards() {
        let mut n = net(vec![1, 2]);
        let frames: Vec<_> = (0..10u8)
            .map(|i| frame(BROADCAST, [2, 0, 0, 0, 1, i]))
            .collect();
        let (s, c) = run(&mut n, 1, &frames);
        assert_eq!(n.fdb.len(), 4);
        assert_eq!(c.snapshot().fdb_full, 6);
        assert_eq!(
            s.out.len(),
            10,
            "frames from unlearned sources are still flooded"
        );
    }

    fn udp_to_gateway(dport: u16) -> Vec<u8> {
        let mut f = GW_MAC.to_vec();
        f.extend(A);
        f.extend([0x08, 0x00]);
        f.extend([
            0x45, 0, 0, 40, 0, 0, 0, 0, 64, 17, 0, 0, 172, 18, 0, 2, 172, 18, 0, 1,
        ]);
        f.extend(40000u16.to_be_bytes());
        f.extend(dport.to_be_bytes());
        f.extend([0, 20, 0, 0]);
        f.resize(14 + 40, 0);
        f
    }

    #[test]
    fn without_icc_endpoints_reach_only_the_gateway() {
        let mut n = net(vec![1, 2, 3]);
        n.cfg.isolate = true;
        // B is known on port 2; A's unicast to it and A's broadcast both stop here.
        run(&mut n, 2, &[frame(GW_MAC, B)]);
        let (s, c) = run(&mut n, 1, &[frame(B, A), frame(BROADCAST, A)]);
        assert!(
            s.out.is_empty(),
            "nothing reached another endpoint: {:?}",
            s.out
        );
        assert_eq!(c.snapshot().drops["icc_disabled"], 2);
        // The gateway still answers and routes.
        let (s, _) = run(&mut n, 1, &[frame(GW_MAC, A)]);
        assert_eq!(s.routed.len(), 1, "to the gateway: routed");
    }

    #[test]
    fn queries_to_the_gateway_go_to_the_resolver_only_where_it_runs() {
        let mut n = net(vec![1, 2]);
        n.cfg.dns = true;
        let (s, _) = run(&mut n, 1, &[udp_to_gateway(53), udp_to_gateway(54)]);
        assert_eq!(s.dns.len(), 1, "port 53 to the gateway");
        assert_eq!(s.routed.len(), 1, "other ports are routed as before");
        n.cfg.dns = false;
        let (s, _) = run(&mut n, 1, &[udp_to_gateway(53)]);
        assert!(s.dns.is_empty(), "no resolver on this network");
        assert_eq!(s.routed.len(), 1);
    }

    #[test]
    fn overlay_floods_include_the_tunnel_and_remote_macs_go_to_it() {
        let mut n = net(vec![1, 2]);
        let (s, _) = run(&mut n, 1, &[frame(B, A)]);
        assert!(s.tunnel.is_empty(), "not an overlay: no tunnel");
        n.cfg.overlay = Some(crate::OverlayConfig {
            vni: 4096,
            peers: vec![Ipv4Addr::new(10, 200, 0, 2)],
        });
        let (s, _) = run(&mut n, 1, &[frame(B, A)]);
        assert_eq!(s.out.len(), 1, "local ports still get the flood");
        assert_eq!(s.tunnel.len(), 1, "and the tunnel gets its share");
        n.fdb.learn(B, TUNNEL_PORT, Instant::now());
        let (s, _) = run(&mut n, 1, &[frame(B, A)]);
        assert!(s.out.is_empty(), "a remote MAC goes to the tunnel only");
        assert_eq!(s.tunnel.len(), 1);
    }

    /// UDP (17) or TCP (6) from A (2001:db8:1::2) to `dst`, port `dport`, to the
    /// gateway's MAC.
    fn ip6_to_gateway(next_header: u8, dst: std::net::Ipv6Addr, dport: u16) -> Vec<u8> {
        let mut f = GW_MAC.to_vec();
        f.extend(A);
        f.extend([0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, next_header, 64]);
        f.extend(
            "2001:db8:1::2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        f.extend(dst.octets());
        f.extend(40000u16.to_be_bytes());
        f.extend(dport.to_be_bytes());
        f.resize(14 + 40 + 20, 0);
        f
    }

    #[test]
    fn queries_to_the_gateways_ipv6_address_go_to_the_resolver() {
        let gw6: std::net::Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let other: std::net::Ipv6Addr = "2001:db8:1::9".parse().unwrap();
        let mut n = net(vec![1, 2]);
        n.cfg.dns = true;
        // Not dual-stack: IPv6 to port 53 is only something to route.
        let (s, _) = run(&mut n, 1, &[ip6_to_gateway(17, gw6, 53)]);
        assert_eq!((s.dns.len(), s.routed.len()), (0, 1), "no IPv6 gateway");
        n.cfg.ipv6 = Some(crate::Ipv6Config {
            gateway: Some(gw6),
            subnet: ("2001:db8:1::".parse().unwrap(), 64),
            hosts: Default::default(),
            routed: false,
        });
        let (s, _) = run(
            &mut n,
            1,
            &[
                ip6_to_gateway(17, gw6, 53),
                ip6_to_gateway(6, gw6, 53),
                udp_to_gateway(53),
            ],
        );
        assert_eq!(s.dns.len(), 3, "UDP and TCP over IPv6, and IPv4 as before");
        assert!(s.routed.is_empty());
        let (s, _) = run(
            &mut n,
            1,
            &[
                ip6_to_gateway(17, gw6, 54),
                ip6_to_gateway(17, other, 53),
                // ICMPv6 (58) is not a query, even with 53 where a port would be.
                ip6_to_gateway(58, gw6, 53),
                udp_to_gateway(54),
            ],
        );
        assert!(s.dns.is_empty(), "{:?}", s.dns);
        assert_eq!(
            s.routed.len(),
            4,
            "other ports and addresses are routed as before"
        );
        n.cfg.dns = false;
        let (s, _) = run(&mut n, 1, &[ip6_to_gateway(17, gw6, 53)]);
        assert_eq!((s.dns.len(), s.routed.len()), (0, 1), "no resolver here");
    }
}
