//! The VTEP with IPv6 inside: neighbour discovery and unicast cross the tunnel as any
//! frame does, Ethernet padding stays home, and an inner IPv6 packet too big for the
//! underlay gets ICMPv6 Packet Too Big from the gateway (RFC 4443 3.2).

use super::*;

use std::net::Ipv6Addr;
use std::time::Duration;

use crate::fdb::Fdb;
use crate::sinks::Sink;
use crate::{Ipv6Config, NetConfig, OverlayConfig};
use wire::icmpv6::{self, NaFlags, NdpRepr};
use wire::ipv6::{multicast_mac, solicited_node, Ipv6Repr, IPV6_HLEN};

const UPLINK: PortId = 9;
const UP_MAC: Mac = [2, 0, 0, 0, 0, 1];
const ME: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const PEER2: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
const PEER3: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 3);
const GW_MAC: Mac = [2, 0x42, 172, 28, 0, 1];
const LOCAL: Mac = [2, 0x42, 172, 28, 0, 2];
const REMOTE: Mac = [2, 0x42, 172, 28, 0, 3];
/// The sandbox's port.
const PORT: PortId = 2;

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().expect("an IPv6 address")
}

fn gw6() -> Ipv6Addr {
    ip6("2001:db8:28::1")
}

fn local6() -> Ipv6Addr {
    ip6("2001:db8:28::2")
}

fn remote6() -> Ipv6Addr {
    ip6("2001:db8:28::3")
}

/// A router whose uplink knows both peers' MACs, and dual-stack overlay network 1
/// (VNI 5000, peers .2 and .3; the IPv6 gateway `gw6` unless `v6_gateway` is false),
/// with LOCAL learned on `PORT`.
fn setup(v6_gateway: bool) -> (Router, HashMap<NetId, Network>) {
    let cfg = UplinkConfig {
        ip: ME,
        prefix: 16,
        gateway: Ipv4Addr::new(10, 200, 0, 254),
        mac: UP_MAC,
        nat: NatConfig::default(),
        vtep_ip: None,
        shared: false,
        ip6: None,
    };
    let mut r = Router::new(UPLINK, cfg, Arc::new(PortCounters::default())).expect("router");
    let overlay = OverlayConfig {
        vni: 5000,
        peers: vec![PEER2, PEER3],
    };
    let now = Instant::now();
    let mut net = Network {
        cfg: NetConfig {
            id: 1,
            gateway: Some(Gateway {
                ip: Ipv4Addr::new(172, 28, 0, 1),
                mac: GW_MAC,
            }),
            subnet: Some((Ipv4Addr::new(172, 28, 0, 0), 24)),
            overlay: Some(overlay.clone()),
            ipv6: Some(Ipv6Config {
                gateway: v6_gateway.then(gw6),
                subnet: (ip6("2001:db8:28::"), 64),
                hosts: Default::default(),
                routed: false,
            }),
            ..Default::default()
        },
        fdb: Fdb::new(64, Duration::from_secs(300)),
        members: vec![1, PORT],
        hosts: Default::default(),
        guards: Default::default(),
        storm: Default::default(),
        remote: Default::default(),
    };
    net.fdb.learn(LOCAL, PORT, now);
    r.set_overlay(1, Some(&overlay));
    let mut nets = HashMap::new();
    nets.insert(1, net);
    let mut sink = Sink::default();
    for (i, peer) in [PEER2, PEER3].into_iter().enumerate() {
        let mut f = UP_MAC.to_vec();
        let mac = [2, 0, 0, 0, 0, 2 + i as u8];
        f.extend(mac);
        f.extend([0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
        f.extend(mac);
        f.extend(peer.octets());
        f.extend(UP_MAC);
        f.extend(ME.octets());
        f.resize(60, 0);
        r.receive_from_uplink(&mut Cx::new(&mut nets, &mut sink, now), &f);
    }
    (r, nets)
}

/// An IPv6 frame from (`src_mac`, `src`) to (`dst_mac`, `dst`) with `payload` after
/// the fixed header (`next_header` says what it is).
fn frame6(
    (src_mac, src): (Mac, Ipv6Addr),
    (dst_mac, dst): (Mac, Ipv6Addr),
    next_header: u8,
    hop_limit: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![0u8; ETH_HLEN + IPV6_HLEN + payload.len()];
    let r = Ipv6Repr {
        src,
        dst,
        next_header,
        payload_len: payload.len(),
        hop_limit,
    };
    r.emit_frame(src_mac, dst_mac, &mut f)
        .copy_from_slice(payload);
    f
}

/// An ICMPv6 echo request of `len` bytes of IPv6 (header included) to REMOTE.
fn echo6(len: usize) -> Vec<u8> {
    let data = vec![0x5a; len - IPV6_HLEN - icmpv6::HEADER_LEN];
    let echo = icmpv6::Repr::EchoRequest {
        ident: 7,
        seq: 1,
        data: &data,
    };
    let mut msg = vec![0u8; echo.buffer_len()];
    echo.emit(&local6(), &remote6(), &mut msg);
    frame6(
        (LOCAL, local6()),
        (REMOTE, remote6()),
        wire::ipv6::NEXT_HEADER_ICMPV6,
        64,
        &msg,
    )
}

/// REMOTE's reply to `request` (an [`echo6`]).
fn echo_reply6(request: &[u8]) -> Vec<u8> {
    let data = &request[ETH_HLEN + IPV6_HLEN + icmpv6::HEADER_LEN..];
    let reply = icmpv6::Repr::EchoReply {
        ident: 7,
        seq: 1,
        data,
    };
    let mut msg = vec![0u8; reply.buffer_len()];
    reply.emit(&remote6(), &local6(), &mut msg);
    frame6(
        (REMOTE, remote6()),
        (LOCAL, local6()),
        wire::ipv6::NEXT_HEADER_ICMPV6,
        64,
        &msg,
    )
}

/// An NDP message from (`src_mac`, `src`) to (`dst_mac`, `dst`).
fn ndp(src: (Mac, Ipv6Addr), dst: (Mac, Ipv6Addr), repr: NdpRepr) -> Vec<u8> {
    let mut msg = vec![0u8; repr.buffer_len()];
    repr.emit(&src.1, &dst.1, &mut msg);
    frame6(
        src,
        dst,
        wire::ipv6::NEXT_HEADER_ICMPV6,
        icmpv6::NDP_HOP_LIMIT,
        &msg,
    )
}

fn tunnel_out(r: &mut Router, nets: &mut HashMap<NetId, Network>, frame: &[u8]) -> Sink {
    let mut sink = Sink::default();
    r.tunnel_out(
        &mut Cx::new(nets, &mut sink, Instant::now()),
        Ingress { net: 1, port: PORT },
        frame,
    );
    sink
}

/// The VTEP a frame on the uplink goes to and its inner frame, VNI 5000.
fn decap(frame: &[u8]) -> (Ipv4Addr, Vec<u8>) {
    let to = Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]);
    let mut rx = vxlan::Overlay::new(
        VtepConfig::new([2, 0, 0, 0, 0, 2], to),
        16,
        Duration::from_secs(300),
    );
    rx.add_network(Vni::new(5000).expect("vni"), &[ME]);
    match rx.receive(frame, Instant::now()) {
        Decap::Frame(d) => (to, d.inner.to_vec()),
        other => panic!("not VXLAN 5000: {other:?}"),
    }
}

/// `inner` encapsulated by REMOTE's host (PEER2) toward this VTEP.
fn from_peer2(inner: &[u8]) -> Vec<u8> {
    let mut vtep = vxlan::Vtep::new(VtepConfig::new([2, 0, 0, 0, 0, 2], PEER2));
    let mut out = vec![0u8; MAX_FRAME];
    let n = vtep
        .encapsulate(Vni::new(5000).expect("vni"), ME, UP_MAC, inner, &mut out)
        .expect("encapsulate");
    out.truncate(n);
    out
}

/// Neighbour discovery across the tunnel: LOCAL's multicast solicitation for REMOTE's
/// address is replicated to every peer VTEP unchanged; REMOTE's unicast advertisement
/// from behind PEER2 is delivered to LOCAL's port alone and REMOTE learned behind
/// PEER2; the echo that follows goes to PEER2 only, and its reply comes back in.
#[test]
fn ndp_and_echo_cross_the_tunnel() {
    let (mut r, mut nets) = setup(true);
    let group = solicited_node(&remote6());
    let ns = ndp(
        (LOCAL, local6()),
        (multicast_mac(&group), group),
        NdpRepr::NeighborSolicit {
            target: remote6(),
            source_lladdr: Some(LOCAL),
        },
    );
    let sink = tunnel_out(&mut r, &mut nets, &ns);
    let out: Vec<(PortId, Ipv4Addr, Vec<u8>)> = sink
        .out
        .iter()
        .map(|(p, f)| {
            let (to, inner) = decap(f);
            (*p, to, inner)
        })
        .collect();
    assert_eq!(
        out,
        vec![(UPLINK, PEER2, ns.clone()), (UPLINK, PEER3, ns.clone())],
        "the solicitation flooded to every peer VTEP"
    );

    let na = ndp(
        (REMOTE, remote6()),
        (LOCAL, local6()),
        NdpRepr::NeighborAdvert {
            flags: NaFlags {
                solicited: true,
                override_: true,
                ..Default::default()
            },
            target: remote6(),
            target_lladdr: Some(REMOTE),
        },
    );
    let now = Instant::now();
    let mut sink = Sink::default();
    r.receive_from_uplink(&mut Cx::new(&mut nets, &mut sink, now), &from_peer2(&na));
    assert_eq!(
        sink.out,
        vec![(PORT, na)],
        "the advertisement to LOCAL only"
    );
    assert_eq!(nets[&1].fdb.lookup(&REMOTE, now), Some(TUNNEL_PORT));

    let echo = echo6(IPV6_HLEN + 64);
    let sink = tunnel_out(&mut r, &mut nets, &echo);
    assert_eq!(sink.out.len(), 1, "known unicast: one VTEP");
    assert_eq!(decap(&sink.out[0].1), (PEER2, echo.clone()));
    let reply = echo_reply6(&echo);
    let mut sink = Sink::default();
    r.receive_from_uplink(&mut Cx::new(&mut nets, &mut sink, now), &from_peer2(&reply));
    assert_eq!(sink.out, vec![(PORT, reply)]);
}

/// Ethernet padding after an IPv6 packet is not tunnelled: the inner frame ends with
/// the packet, as the kernel's vxlan device sends it.
#[test]
fn ipv6_padding_stays_home() {
    let (mut r, mut nets) = setup(true);
    let echo = echo6(IPV6_HLEN + icmpv6::HEADER_LEN);
    let mut padded = echo.clone();
    padded.resize(echo.len() + 6, 0);
    let sink = tunnel_out(&mut r, &mut nets, &padded);
    assert_eq!(sink.out.len(), 2);
    assert_eq!(decap(&sink.out[0].1).1, echo);
}

/// 1450 bytes of IPv6 (the overlay MTU) are tunnelled; 1451 are not, and the sender
/// gets Packet Too Big from the gateway's IPv6 address and MAC, with MTU 1450 and as
/// much of its packet as fits 1280 bytes, checksum right; counted once each.
#[test]
fn ipv6_too_big_gets_packet_too_big_from_the_gateway() {
    let (mut r, mut nets) = setup(true);
    let sink = tunnel_out(&mut r, &mut nets, &echo6(1450));
    assert_eq!(sink.out.len(), 2, "1450 bytes of IPv6 fit");
    assert!(sink.out.iter().all(|(p, _)| *p == UPLINK));

    let big = echo6(1451);
    let sink = tunnel_out(&mut r, &mut nets, &big);
    assert_eq!(sink.out.len(), 1, "nothing tunnelled, one error");
    let (to, err) = &sink.out[0];
    assert_eq!(*to, PORT, "back to the sender's port");
    assert_eq!((&err[0..6], &err[6..12]), (&LOCAL[..], &GW_MAC[..]));
    let f = Ipv6Frame::new(err).expect("IPv6");
    assert_eq!((f.src(), f.dst()), (gw6(), local6()));
    assert_eq!(f.next_header(), wire::ipv6::NEXT_HEADER_ICMPV6);
    assert_eq!(err.len(), ETH_HLEN + crate::ipv6::MIN_MTU, "cut to 1280");
    let p = icmpv6::Packet::new_checked(f.payload()).expect("ICMPv6");
    assert_eq!(
        icmpv6::Repr::parse(&f.src(), &f.dst(), &p),
        Ok(icmpv6::Repr::PacketTooBig {
            mtu: 1450,
            quote: &big[ETH_HLEN..ETH_HLEN + 1280 - IPV6_HLEN - icmpv6::HEADER_LEN],
        }),
        "Packet Too Big, MTU 1450, checksum verified"
    );
    let c = r.stats().router;
    assert_eq!((c.tunnel_too_big, c.icmp_errors_sent), (1, 1));
}

/// RFC 4443 2.4 (e.2): Packet Too Big answers multicast too (the flood could not be
/// tunnelled); but never an ICMPv6 error, and nothing without an IPv6 gateway (the
/// frame is still dropped and counted).
#[test]
fn packet_too_big_rules() {
    let (mut r, mut nets) = setup(true);
    let group = ip6("ff05::1:3");
    let mcast = frame6(
        (LOCAL, local6()),
        (multicast_mac(&group), group),
        wire::ipv6::NEXT_HEADER_UDP,
        64,
        &[0u8; 1411],
    );
    let sink = tunnel_out(&mut r, &mut nets, &mcast);
    assert_eq!(sink.out.len(), 1, "Packet Too Big for a multicast flood");
    let f = Ipv6Frame::new(&sink.out[0].1).expect("IPv6");
    assert_eq!(f.payload()[0], icmpv6::PACKET_TOO_BIG);

    let sink = tunnel_out(&mut r, &mut nets, &big_error());
    assert!(sink.out.is_empty(), "no error about an error");

    let (mut r, mut nets) = setup(false);
    let sink = tunnel_out(&mut r, &mut nets, &echo6(1451));
    assert!(sink.out.is_empty(), "no IPv6 gateway: only dropped");
    assert_eq!(r.stats().router.tunnel_too_big, 1);
}

/// A 1451-byte ICMPv6 error (destination unreachable) from LOCAL to REMOTE.
fn big_error() -> Vec<u8> {
    let quote = vec![0x60; 1451 - IPV6_HLEN - icmpv6::HEADER_LEN];
    let e = icmpv6::Repr::DestUnreachable {
        code: 0,
        quote: &quote,
    };
    let mut msg = vec![0u8; e.buffer_len()];
    e.emit(&local6(), &remote6(), &mut msg);
    frame6(
        (LOCAL, local6()),
        (REMOTE, remote6()),
        wire::ipv6::NEXT_HEADER_ICMPV6,
        64,
        &msg,
    )
}
