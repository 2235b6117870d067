//! The router's IPv6 side against frames built with wire's emitters.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nat::NatConfig;
use wire::icmpv6::{self, NaFlags, NdpRepr};
use wire::ipv6::{solicited_node, Ipv6Frame, Ipv6Repr, NEXT_HEADER_ICMPV6};

use super::{Router, Uplink6, UplinkConfig};
use crate::fdb::{Fdb, Mac};
use crate::gateway::Gateway;
use crate::network::Network;
use crate::pipeline::{Cx, Ingress};
use crate::sinks::Sink;
use crate::stats::PortCounters;
use crate::{Ipv6Config, NetConfig, NetId, PortId};

const UPLINK: PortId = 9;
const UP_MAC: Mac = [2, 0, 0, 0, 0, 1];
const FAR_MAC: Mac = [2, 0, 0, 0, 0, 0xfa];
const GW_MAC: Mac = [2, 0x42, 172, 24, 0, 1];
const A_MAC: Mac = [2, 0x42, 172, 24, 0, 2];

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn setup(routed: bool, uplink6: bool) -> (Router, HashMap<NetId, Network>) {
    let cfg = UplinkConfig {
        ip: Ipv4Addr::new(198, 51, 100, 2),
        prefix: 24,
        gateway: Ipv4Addr::new(198, 51, 100, 1),
        mac: UP_MAC,
        nat: NatConfig::default(),
        vtep_ip: None,
        shared: false,
        ip6: uplink6.then(|| Uplink6 {
            ip: ip("2001:db8:ff::2"),
            prefix: 64,
            gateway: ip("2001:db8:ff::1"),
        }),
    };
    let r = Router::new(UPLINK, cfg, Arc::new(PortCounters::default())).expect("router");
    let net = Network {
        cfg: NetConfig {
            id: 1,
            gateway: Some(Gateway {
                ip: Ipv4Addr::new(172, 24, 0, 1),
                mac: GW_MAC,
            }),
            subnet: Some((Ipv4Addr::new(172, 24, 0, 0), 24)),
            ipv6: Some(Ipv6Config {
                gateway: Some(ip("2001:db8:24::1")),
                subnet: (ip("2001:db8:24::"), 64),
                hosts: [(ip("2001:db8:24::2"), A_MAC)].into_iter().collect(),
                routed,
            }),
            ..Default::default()
        },
        fdb: Fdb::new(64, Duration::from_secs(300)),
        members: vec![1, 2],
        hosts: Default::default(),
        guards: Default::default(),
        storm: Default::default(),
        remote: Default::default(),
    };
    (r, [(1, net)].into_iter().collect())
}

/// A UDP datagram (8 bytes of payload, checksum left 0: the router does not look).
fn udp(src_mac: Mac, dst_mac: Mac, src: Ipv6Addr, dst: Ipv6Addr, hop: u8) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 40 + 16];
    Ipv6Repr {
        src,
        dst,
        next_header: 17,
        payload_len: 16,
        hop_limit: hop,
    }
    .emit_frame(src_mac, dst_mac, &mut f);
    f
}

fn ndp(src_mac: Mac, dst_mac: Mac, src: Ipv6Addr, dst: Ipv6Addr, m: NdpRepr) -> Vec<u8> {
    let len = m.buffer_len();
    let mut f = vec![0u8; 14 + 40 + len];
    let r = Ipv6Repr {
        src,
        dst,
        next_header: NEXT_HEADER_ICMPV6,
        payload_len: len,
        hop_limit: 255,
    };
    m.emit(&src, &dst, r.emit_frame(src_mac, dst_mac, &mut f));
    f
}

fn from_net(r: &mut Router, nets: &mut HashMap<NetId, Network>, f: &[u8]) -> Sink {
    let mut sink = Sink::default();
    let from = Ingress { net: 1, port: 1 };
    r.route_from_network(
        &mut Cx::new(nets, &mut sink, Instant::now()),
        from,
        f,
        false,
    );
    sink
}

fn from_uplink(r: &mut Router, nets: &mut HashMap<NetId, Network>, f: &[u8]) -> Sink {
    let mut sink = Sink::default();
    r.receive_from_uplink(&mut Cx::new(nets, &mut sink, Instant::now()), f);
    sink
}

fn icmp6_of(frame: &[u8]) -> (Ipv6Addr, Ipv6Addr, u8, u8) {
    let f = Ipv6Frame::new(frame).expect("IPv6");
    let p = icmpv6::Packet::new_checked(f.payload()).expect("ICMPv6");
    assert!(p.verify_checksum(&f.src(), &f.dst()));
    (f.src(), f.dst(), p.msg_type(), p.code())
}

#[test]
fn routed_traffic_leaves_after_neighbour_discovery_and_replies_come_back() {
    let (mut r, mut nets) = setup(true, true);
    let (a, far) = (ip("2001:db8:24::2"), ip("2001:db8:9::9"));
    let out = udp(A_MAC, GW_MAC, a, far, 64);
    let s = from_net(&mut r, &mut nets, &out);
    assert_eq!(
        s.out.len(),
        1,
        "a solicitation for the next hop: {:?}",
        s.out
    );
    let (src, dst, t, _) = icmp6_of(&s.out[0].1);
    assert_eq!(
        (src, dst, t),
        (
            ip("2001:db8:ff::2"),
            solicited_node(&ip("2001:db8:ff::1")),
            135
        )
    );
    // The next hop advertises itself: the held datagram leaves, hop limit 63.
    let na = NdpRepr::NeighborAdvert {
        flags: NaFlags {
            router: true,
            solicited: true,
            override_: true,
        },
        target: ip("2001:db8:ff::1"),
        target_lladdr: Some(FAR_MAC),
    };
    let s = from_uplink(
        &mut r,
        &mut nets,
        &ndp(
            FAR_MAC,
            UP_MAC,
            ip("2001:db8:ff::1"),
            ip("2001:db8:ff::2"),
            na,
        ),
    );
    assert_eq!(s.out.len(), 1, "{:?}", s.out);
    let (port, sent) = &s.out[0];
    assert_eq!(*port, UPLINK);
    let f = Ipv6Frame::new(sent).unwrap();
    assert_eq!((f.dst_mac(), f.src_mac()), (FAR_MAC, UP_MAC));
    assert_eq!((f.src(), f.dst(), f.hop_limit()), (a, far, 63), "no NAT");

    // The reply, to the sandbox's own address, is delivered with the gateway's MAC.
    let back = udp(FAR_MAC, UP_MAC, far, a, 60);
    let s = from_uplink(&mut r, &mut nets, &back);
    let ports: Vec<PortId> = s.out.iter().map(|(p, _)| *p).collect();
    assert_eq!(ports, vec![1, 2], "A's port not learned: to every member");
    let f = Ipv6Frame::new(&s.out[0].1).unwrap();
    assert_eq!(
        (f.dst_mac(), f.src_mac(), f.hop_limit()),
        (A_MAC, GW_MAC, 59)
    );
    // Without routed mode, the same reply is the NAT's (here: not a session of it).
    let (mut r, mut nets) = setup(false, true);
    assert!(from_uplink(&mut r, &mut nets, &back).out.is_empty());
}

#[test]
fn the_uplink_address_is_advertised_when_solicited() {
    let (mut r, mut nets) = setup(true, true);
    let me = ip("2001:db8:ff::2");
    let group = solicited_node(&me);
    let ns = NdpRepr::NeighborSolicit {
        target: me,
        source_lladdr: Some(FAR_MAC),
    };
    let mac = wire::ipv6::multicast_mac(&group);
    let s = from_uplink(
        &mut r,
        &mut nets,
        &ndp(FAR_MAC, mac, ip("2001:db8:ff::1"), group, ns),
    );
    assert_eq!(s.out.len(), 1);
    let (src, dst, t, _) = icmp6_of(&s.out[0].1);
    assert_eq!((src, dst, t), (me, ip("2001:db8:ff::1"), 136));
    assert_eq!(r.counters.ndp_answered, 1);
    // Another address's solicitation is not ours.
    let other = NdpRepr::NeighborSolicit {
        target: ip("2001:db8:ff::7"),
        source_lladdr: Some(FAR_MAC),
    };
    let s = from_uplink(
        &mut r,
        &mut nets,
        &ndp(FAR_MAC, mac, ip("2001:db8:ff::1"), group, other),
    );
    assert!(s.out.is_empty());
}

#[test]
fn hop_limit_isolation_and_missing_uplinks_get_icmpv6_errors_or_nothing() {
    let (mut r, mut nets) = setup(true, true);
    let a = ip("2001:db8:24::2");
    let s = from_net(
        &mut r,
        &mut nets,
        &udp(A_MAC, GW_MAC, a, ip("2001:db8:9::9"), 1),
    );
    assert_eq!(s.out.len(), 1);
    assert_eq!(s.out[0].0, 1, "back to the sender's port");
    assert_eq!(
        icmp6_of(&s.out[0].1),
        (ip("2001:db8:24::1"), a, 3, 0),
        "time exceeded"
    );
    // Link-local, multicast and spoofed sources are not routed.
    for (src, dst) in [
        (a, ip("fe80::1")),
        (a, ip("ff0e::1")),
        (ip("2001:db8:77::2"), ip("2001:db8:9::9")),
    ] {
        let s = from_net(&mut r, &mut nets, &udp(A_MAC, GW_MAC, src, dst, 64));
        assert!(s.out.is_empty(), "{src} -> {dst}: {:?}", s.out);
    }
    assert_eq!(r.counters.ipv6_not_routable, 3);
    // Without an IPv6 uplink: no route to destination.
    let (mut r, mut nets) = setup(true, false);
    let s = from_net(
        &mut r,
        &mut nets,
        &udp(A_MAC, GW_MAC, a, ip("2001:db8:9::9"), 64),
    );
    let (.., t, code) = icmp6_of(&s.out[0].1);
    assert_eq!((t, code), (1, 0), "destination unreachable: no route");
}

#[test]
fn errors_are_limited_per_second() {
    let (mut r, mut nets) = setup(true, true);
    let a = ip("2001:db8:24::2");
    let expiring = udp(A_MAC, GW_MAC, a, ip("2001:db8:9::9"), 1);
    let mut sent = 0;
    for _ in 0..super::ICMP_ERRORS_PER_SEC + 5 {
        sent += from_net(&mut r, &mut nets, &expiring).out.len();
    }
    assert_eq!(sent, super::ICMP_ERRORS_PER_SEC as usize);
    assert_eq!(r.counters.icmp_errors_limited, 5);
    let mut sink = Sink::default();
    r.tick(&mut Cx::new(&mut nets, &mut sink, Instant::now()));
    assert_eq!(
        from_net(&mut r, &mut nets, &expiring).out.len(),
        1,
        "a new second"
    );
}
