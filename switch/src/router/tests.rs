use super::*;

use crate::fdb::Fdb;
use crate::{NetConfig, OverlayConfig};
use std::time::Duration;

use crate::sinks::Sink;

const UPLINK: PortId = 9;
const UP_MAC: Mac = [2, 0, 0, 0, 0, 1];
const ME: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const PEER2: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
const PEER3: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 3);
const GW_MAC: Mac = [2, 0x42, 172, 28, 0, 1];
const LOCAL: Mac = [2, 0x42, 172, 28, 0, 2];
const REMOTE: Mac = [2, 0x42, 172, 28, 0, 3];

fn setup() -> (Router, HashMap<NetId, Network>) {
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
    let net = Network {
        cfg: NetConfig {
            id: 1,
            gateway: Some(Gateway {
                ip: Ipv4Addr::new(172, 28, 0, 1),
                mac: GW_MAC,
            }),
            subnet: Some((Ipv4Addr::new(172, 28, 0, 0), 24)),
            overlay: Some(overlay.clone()),
            ..Default::default()
        },
        fdb: Fdb::new(64, Duration::from_secs(300)),
        members: vec![1, 2],
        hosts: Default::default(),
        guards: Default::default(),
        storm: Default::default(),
        remote: Default::default(),
    };
    r.set_overlay(1, Some(&overlay));
    let mut nets = HashMap::new();
    nets.insert(1, net);
    // Both peers' MACs known, so encapsulated frames leave at once.
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
        r.receive_from_uplink(&mut Cx::new(&mut nets, &mut sink, Instant::now()), &f);
    }
    (r, nets)
}

/// An inner IPv4/UDP frame of `len` bytes, DF set.
fn inner(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend(src);
    f.extend([0x08, 0x00]);
    let ip_len = (len - ETH_HLEN) as u16;
    f.extend([0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0]);
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f.extend([172, 28, 0, 2, 172, 28, 0, 3]);
    f.resize(len, 0);
    f
}

fn decap(frame: &[u8]) -> (Ipv4Addr, Vec<u8>) {
    let mut rx = vxlan::Overlay::new(
        VtepConfig::new([2, 0, 0, 0, 0, 2], dst_ip(frame)),
        16,
        Duration::from_secs(300),
    );
    // The sender (the router's VTEP) is the receiver's peer.
    let from = Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]);
    rx.add_network(Vni::new(5000).expect("vni"), &[from]);
    match rx.receive(frame, Instant::now()) {
        Decap::Frame(d) => (dst_ip(frame), d.inner.to_vec()),
        other => panic!("not VXLAN 5000: {other:?}"),
    }
}

#[test]
fn floods_replicate_to_every_peer_and_learned_macs_go_to_theirs() {
    let (mut r, mut nets) = setup();
    let now = Instant::now();
    let f = inner([0xff; 6], LOCAL, 100);
    let mut sink = Sink::default();
    r.tunnel_out(
        &mut Cx::new(&mut nets, &mut sink, now),
        Ingress { net: 1, port: 1 },
        &f,
    );
    let dsts: Vec<Ipv4Addr> = sink
        .out
        .iter()
        .map(|(p, o)| {
            assert_eq!(*p, UPLINK);
            let (d, i) = decap(o);
            assert_eq!(i, f, "inner frame unchanged");
            d
        })
        .collect();
    assert_eq!(dsts, vec![PEER2, PEER3], "head-end replication");

    // REMOTE speaks from behind 10.200.0.2: learned, delivered to local ports only.
    let mut remote = vxlan::Vtep::new(VtepConfig::new([2, 0, 0, 0, 0, 2], PEER2));
    let mut out = [0u8; MAX_FRAME];
    let reply = inner(LOCAL, REMOTE, 100);
    let n = remote
        .encapsulate(Vni::new(5000).expect("vni"), ME, UP_MAC, &reply, &mut out)
        .expect("encap");
    let mut sink = Sink::default();
    r.receive_from_uplink(&mut Cx::new(&mut nets, &mut sink, now), &out[..n]);
    let ports: Vec<PortId> = sink.out.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        ports,
        vec![1, 2],
        "LOCAL unknown yet: flooded to local ports, not tunnels"
    );
    assert_eq!(sink.out[0].1, reply);
    assert_eq!(sink.learned, vec![REMOTE]);
    let net = &nets[&1];
    assert_eq!(net.fdb.lookup(&REMOTE, now), Some(TUNNEL_PORT));
    let mut rows = net.fdb.entries(now);
    r.fill_vteps(net, &mut rows, now);
    assert_eq!(rows[0].vtep, Some(PEER2));

    let mut sink = Sink::default();
    r.tunnel_out(
        &mut Cx::new(&mut nets, &mut sink, now),
        Ingress { net: 1, port: 1 },
        &inner(REMOTE, LOCAL, 100),
    );
    assert_eq!(
        sink.out.len(),
        1,
        "a known remote MAC goes to its VTEP only"
    );
    assert_eq!(decap(&sink.out[0].1).0, PEER2);
}

#[test]
fn oversize_df_frames_get_frag_needed_and_unknown_vnis_are_dropped() {
    let (mut r, mut nets) = setup();
    let now = Instant::now();
    let mut sink = Sink::default();
    r.tunnel_out(
        &mut Cx::new(&mut nets, &mut sink, now),
        Ingress { net: 1, port: 2 },
        &inner([0xff; 6], LOCAL, 14 + 1450),
    );
    assert_eq!(sink.out.len(), 2, "1450 bytes of IP fit");
    let mut sink = Sink::default();
    r.tunnel_out(
        &mut Cx::new(&mut nets, &mut sink, now),
        Ingress { net: 1, port: 2 },
        &inner(REMOTE, LOCAL, 14 + 1451),
    );
    assert_eq!(sink.out.len(), 1);
    let (to, icmp) = &sink.out[0];
    assert_eq!(*to, 2, "back to the sender's port");
    assert_eq!(&icmp[0..6], &LOCAL);
    assert_eq!((icmp[34], icmp[35]), (3, 4), "frag needed");
    assert_eq!(u16::from_be_bytes([icmp[40], icmp[41]]), 1450);
    assert_eq!(r.stats().router.tunnel_too_big, 1);

    let mut remote = vxlan::Vtep::new(VtepConfig::new([2, 0, 0, 0, 0, 2], PEER2));
    let mut out = [0u8; MAX_FRAME];
    let n = remote
        .encapsulate(
            Vni::new(77).expect("vni"),
            ME,
            UP_MAC,
            &inner(LOCAL, REMOTE, 100),
            &mut out,
        )
        .expect("encap");
    let mut sink = Sink::default();
    r.receive_from_uplink(&mut Cx::new(&mut nets, &mut sink, now), &out[..n]);
    assert!(sink.out.is_empty());
    assert_eq!(r.stats().overlay.dropped(vxlan::DropReason::UnknownVni), 1);
    // The network stops being an overlay: its VNI is unknown from then on.
    r.set_overlay(1, None);
    let n = remote
        .encapsulate(
            Vni::new(5000).expect("vni"),
            ME,
            UP_MAC,
            &inner(LOCAL, REMOTE, 100),
            &mut out,
        )
        .expect("encap");
    r.receive_from_uplink(&mut Cx::new(&mut nets, &mut sink, now), &out[..n]);
    assert!(sink.out.is_empty());
    assert_eq!(r.stats().overlay.dropped(vxlan::DropReason::UnknownVni), 2);
}

#[test]
fn subnets() {
    let n = Ipv4Addr::new(172, 18, 0, 0);
    assert!(in_subnet(Ipv4Addr::new(172, 18, 255, 1), n, 16));
    assert!(!in_subnet(Ipv4Addr::new(172, 19, 0, 1), n, 16));
    assert!(in_subnet(Ipv4Addr::new(1, 2, 3, 4), n, 0));
}

/// On a shared uplink the kernel answers ARP for the uplink address (with the same
/// MAC): the router only learns from such a request. A VTEP address of its own it still
/// answers for.
#[test]
fn a_shared_uplink_leaves_arp_for_its_address_to_the_host() {
    let vtep = Ipv4Addr::new(10, 200, 0, 9);
    let peer_mac: Mac = [2, 0, 0, 0, 0, 2];
    let request = |target: Ipv4Addr| {
        let mut f = vec![0xff; 6];
        f.extend(peer_mac);
        f.extend([0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend(peer_mac);
        f.extend(PEER2.octets());
        f.extend([0; 6]);
        f.extend(target.octets());
        f.resize(60, 0);
        f
    };
    for shared in [false, true] {
        let cfg = UplinkConfig {
            ip: ME,
            prefix: 16,
            gateway: Ipv4Addr::new(10, 200, 0, 254),
            mac: UP_MAC,
            nat: NatConfig::default(),
            vtep_ip: Some(vtep),
            shared,
            ip6: None,
        };
        let mut r = Router::new(UPLINK, cfg, Arc::new(PortCounters::default())).expect("router");
        let (mut nets, now) = (HashMap::new(), Instant::now());
        let mut sink = Sink::default();
        r.receive_from_uplink(&mut Cx::new(&mut nets, &mut sink, now), &request(ME));
        assert_eq!(
            sink.out.len(),
            usize::from(!shared),
            "shared {shared}: answered only when not shared"
        );
        assert_eq!(
            r.arp.known(PEER2, now),
            Some(peer_mac),
            "learned either way"
        );
        let mut sink = Sink::default();
        r.receive_from_uplink(&mut Cx::new(&mut nets, &mut sink, now), &request(vtep));
        assert_eq!(
            sink.out.len(),
            1,
            "shared {shared}: the VTEP's address answered"
        );
        let reply = &sink.out[0].1;
        assert_eq!((reply[21], &reply[28..32]), (2, &vtep.octets()[..]));
    }
}

/// Where `r` sends a frame for `dst` from LOCAL: the VTEPs of the outer frames.
fn tunnelled_to(r: &mut Router, nets: &mut HashMap<NetId, Network>, dst: Mac) -> Vec<Ipv4Addr> {
    let mut sink = Sink::default();
    r.tunnel_out(
        &mut Cx::new(nets, &mut sink, Instant::now()),
        Ingress { net: 1, port: 1 },
        &inner(dst, LOCAL, 100),
    );
    sink.out.iter().map(|(_, o)| decap(o).0).collect()
}

/// A remote endpoint from the control plane: known unicast to it goes to its VTEP
/// alone, before anything was ever heard from it; what arrives from elsewhere does not
/// move it; a removal of a location it has left changes nothing.
#[test]
fn static_remote_macs_are_encapsulated_to_their_vtep_only() {
    use crate::remote::{RemoteEndpoint, RemoteUpdate};
    let (mut r, mut nets) = setup();
    let now = Instant::now();
    assert_eq!(
        tunnelled_to(&mut r, &mut nets, REMOTE),
        vec![PEER2, PEER3],
        "unknown: flooded"
    );
    let at = |vtep| RemoteEndpoint {
        mac: REMOTE,
        ip: Some(Ipv4Addr::new(172, 28, 0, 3)),
        ip6: None,
        vtep,
    };
    let apply = |r: &mut Router, nets: &mut HashMap<NetId, Network>, u: RemoteUpdate| {
        nets.get_mut(&1).expect("net").update_remote(&u, now);
        r.update_remote(1, &u, now);
    };
    let upsert = |vtep| RemoteUpdate {
        upsert: vec![at(vtep)],
        ..Default::default()
    };
    let remove = |vtep| RemoteUpdate {
        remove: vec![at(vtep)],
        ..Default::default()
    };
    apply(&mut r, &mut nets, upsert(PEER3));
    assert_eq!(tunnelled_to(&mut r, &mut nets, REMOTE), vec![PEER3]);
    let mut rows = nets[&1].fdb.entries(now);
    r.fill_vteps(&nets[&1], &mut rows, now);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].mac, rows[0].port, rows[0].is_static, rows[0].vtep),
        (REMOTE, TUNNEL_PORT, true, Some(PEER3))
    );

    // REMOTE's frames through PEER2 neither move it nor refresh a learned entry.
    let mut remote = vxlan::Vtep::new(VtepConfig::new([2, 0, 0, 0, 0, 2], PEER2));
    let mut out = [0u8; MAX_FRAME];
    let n = remote
        .encapsulate(
            Vni::new(5000).expect("vni"),
            ME,
            UP_MAC,
            &inner(LOCAL, REMOTE, 100),
            &mut out,
        )
        .expect("encap");
    let mut sink = Sink::default();
    r.receive_from_uplink(&mut Cx::new(&mut nets, &mut sink, now), &out[..n]);
    assert!(sink.learned.is_empty());
    assert_eq!(tunnelled_to(&mut r, &mut nets, REMOTE), vec![PEER3]);

    // It moves to PEER2; the late removal of its PEER3 location is ignored.
    apply(&mut r, &mut nets, upsert(PEER2));
    apply(&mut r, &mut nets, remove(PEER3));
    assert_eq!(tunnelled_to(&mut r, &mut nets, REMOTE), vec![PEER2]);
    apply(&mut r, &mut nets, remove(PEER2));
    assert_eq!(
        tunnelled_to(&mut r, &mut nets, REMOTE),
        vec![PEER2, PEER3],
        "withdrawn: flooded again"
    );
}

/// The overlay's peers are the cluster's members: a host that leaves gets no floods
/// from the next frame on, though MACs were learned behind it.
#[test]
fn a_peer_that_leaves_gets_no_more_floods() {
    let (mut r, mut nets) = setup();
    let now = Instant::now();
    let mut remote = vxlan::Vtep::new(VtepConfig::new([2, 0, 0, 0, 0, 3], PEER3));
    let mut out = [0u8; MAX_FRAME];
    let n = remote
        .encapsulate(
            Vni::new(5000).expect("vni"),
            ME,
            UP_MAC,
            &inner(LOCAL, REMOTE, 100),
            &mut out,
        )
        .expect("encap");
    let mut sink = Sink::default();
    r.receive_from_uplink(&mut Cx::new(&mut nets, &mut sink, now), &out[..n]);
    assert_eq!(sink.learned, vec![REMOTE], "learned behind PEER3");
    assert_eq!(tunnelled_to(&mut r, &mut nets, REMOTE), vec![PEER3]);
    let fresh = r.set_overlay(
        1,
        Some(&OverlayConfig {
            vni: 5000,
            peers: vec![PEER2],
        }),
    );
    assert!(!fresh, "the same VNI keeps its table");
    assert_eq!(tunnelled_to(&mut r, &mut nets, [0xff; 6]), vec![PEER2]);
    assert_eq!(
        tunnelled_to(&mut r, &mut nets, REMOTE),
        vec![PEER2],
        "REMOTE forgotten with its host: flooded to the members"
    );
    let mut sink = Sink::default();
    r.receive_from_uplink(&mut Cx::new(&mut nets, &mut sink, now), &out[..n]);
    assert!(sink.out.is_empty(), "and PEER3 is no peer any more");
}

/// With the tc uplink the kernel carries known unicast to a static remote MAC too; when
/// the endpoint moves or is withdrawn, or its host leaves the members, the kernel's
/// entry goes at once, not at the next second's sweep.
#[test]
fn the_kernel_forgets_remote_macs_when_the_control_plane_does() {
    use crate::remote::{RemoteEndpoint, RemoteUpdate};
    let fp =
        Arc::new(crate::fastpath::FastPath::new().expect("create the fast path's maps (root?)"));
    let (mut r, mut nets) = setup();
    r.fast_vxlan = Some(FastVxlan::new(fp.clone(), 77, UPLINK));
    let now = Instant::now();
    let in_kernel = |mac| fp.vxlan_take_seen(1, mac).is_some();
    let at = |vtep| RemoteEndpoint {
        mac: REMOTE,
        ip: Some(Ipv4Addr::new(172, 28, 0, 3)),
        ip6: None,
        vtep,
    };
    let apply = |r: &mut Router, nets: &mut HashMap<NetId, Network>, u: RemoteUpdate| {
        nets.get_mut(&1).expect("net").update_remote(&u, now);
        r.update_remote(1, &u, now);
    };
    let upsert = |vtep| RemoteUpdate {
        upsert: vec![at(vtep)],
        ..Default::default()
    };
    apply(&mut r, &mut nets, upsert(PEER3));
    assert_eq!(tunnelled_to(&mut r, &mut nets, REMOTE), vec![PEER3]);
    assert!(in_kernel(REMOTE), "known unicast: the kernel's from now on");
    assert!(r
        .fast_vxlan
        .as_ref()
        .is_some_and(|f| f.has(1, REMOTE, PEER3)));
    apply(&mut r, &mut nets, upsert(PEER3));
    assert!(in_kernel(REMOTE), "the same location: kept");
    apply(&mut r, &mut nets, upsert(PEER2));
    assert!(!in_kernel(REMOTE), "moved: out of the kernel at once");
    assert_eq!(tunnelled_to(&mut r, &mut nets, REMOTE), vec![PEER2]);
    assert!(r
        .fast_vxlan
        .as_ref()
        .is_some_and(|f| f.has(1, REMOTE, PEER2)));
    apply(
        &mut r,
        &mut nets,
        RemoteUpdate {
            remove: vec![at(PEER2)],
            ..Default::default()
        },
    );
    assert!(!in_kernel(REMOTE), "withdrawn: out of the kernel at once");

    // A MAC learned behind PEER3 and carried by the kernel leaves with its host.
    let mut sink = Sink::default();
    let mut cx = Cx::new(&mut nets, &mut sink, now);
    cx.nets.get_mut(&1).expect("net").fdb.learn(LOCAL, 1, now);
    let mut peer3 = vxlan::Vtep::new(VtepConfig::new([2, 0, 0, 0, 0, 3], PEER3));
    let mut out = [0u8; MAX_FRAME];
    let n = peer3
        .encapsulate(
            Vni::new(5000).expect("vni"),
            ME,
            UP_MAC,
            &inner(LOCAL, REMOTE, 100),
            &mut out,
        )
        .expect("encap");
    r.receive_from_uplink(&mut cx, &out[..n]);
    assert!(in_kernel(REMOTE), "learned behind PEER3, to a local port");
    let members = OverlayConfig {
        vni: 5000,
        peers: vec![PEER2],
    };
    r.set_overlay(1, Some(&members));
    assert!(!in_kernel(REMOTE), "PEER3 left: out of the kernel at once");
}
