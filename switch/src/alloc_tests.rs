//! No allocation per frame. This test binary's global allocator counts, per thread and
//! only while a test asks it to, every allocation; after a warm-up (the FDB and the NAT
//! table taking their first entries, the ARP cache its neighbour) the L2 path (learning,
//! known unicast, floods) and the routed path (SNAT out, the replies in) must not
//! allocate at all.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;

use crate::fdb::{Fdb, Mac};
use crate::gateway::Gateway;
use crate::network::Network;
use crate::pipeline::{switch_burst, Cx, Ingress, Source};
use crate::port::{Burst, MAX_FRAME};
use crate::router::{Router, UplinkConfig};
use crate::sinks::Sink;
use crate::stats::PortCounters;
use crate::NetConfig;

struct Counting;

thread_local! {
    /// Allocations on this thread since counting started; None while not counting.
    static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
}

fn count_one() {
    let _ = COUNT.try_with(|c| {
        if let Some(n) = c.get() {
            c.set(Some(n + 1));
        }
    });
}

// SAFETY: every call is passed on unchanged to the system allocator, which upholds
// GlobalAlloc's contract; counting touches only a thread-local Cell (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: `ptr` came from this allocator (that is, System) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (that is, System) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How many allocations `f` made on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(Some(0)));
    f();
    COUNT.with(|c| c.replace(None)).unwrap_or(0)
}

const GW: Gateway = Gateway {
    ip: Ipv4Addr::new(172, 28, 0, 1),
    mac: [2, 0x42, 172, 28, 0, 1],
};
const A: Mac = [2, 0x42, 172, 28, 0, 2];
const B: Mac = [2, 0x42, 172, 28, 0, 3];

fn network() -> Network {
    Network {
        cfg: NetConfig {
            id: 1,
            gateway: Some(GW),
            subnet: Some((Ipv4Addr::new(172, 28, 0, 0), 24)),
            ..Default::default()
        },
        fdb: Fdb::new(64, Duration::from_secs(300)),
        members: vec![1, 2, 3],
        hosts: [(Ipv4Addr::new(172, 28, 0, 2), A)].into_iter().collect(),
        guards: Default::default(),
        storm: Default::default(),
        remote: Default::default(),
    }
}

fn udp(dst: Mac, src: Mac, to: [u8; 4], sport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src, dst)
        .ipv4([172, 28, 0, 2], to, 64)
        .udp(sport, 9);
    let mut f = Vec::new();
    b.write(&mut f, &[0x42; 18]).unwrap();
    f
}

#[test]
fn the_counter_sees_allocations() {
    let n = allocations(|| {
        std::hint::black_box(vec![0u8; 64]);
    });
    assert_eq!(n, 1);
}

#[test]
fn the_l2_path_does_not_allocate_per_frame() {
    let mut net = network();
    let counters = PortCounters::default();
    let mut out = Sink::counting();
    let mut scratch = [0u8; MAX_FRAME];
    let mut burst = Burst::new();
    // From A on port 1: to B (unknown, then known), a broadcast; from B on port 2 to A.
    let to_b = udp(B, A, [172, 28, 0, 3], 1000);
    let bcast = udp([0xff; 6], A, [172, 28, 0, 255], 1001);
    let to_a = udp(A, B, [172, 28, 0, 2], 1002);
    let mut run = |net: &mut Network, out: &mut Sink, scratch: &mut [u8; MAX_FRAME]| {
        let now = Instant::now();
        for (port, frames) in [(1, [&to_b, &bcast]), (2, [&to_a, &to_a])] {
            burst.clear();
            for f in frames {
                burst.push(f);
            }
            let src = Source {
                port,
                counters: &counters,
                announce_learning: true,
            };
            switch_burst(net, src, &burst, out, scratch, now);
        }
    };
    run(&mut net, &mut out, &mut scratch); // warm-up: the FDB learns A and B
    let before = out.frames;
    let n = allocations(|| {
        for _ in 0..100 {
            run(&mut net, &mut out, &mut scratch);
        }
    });
    assert!(
        out.frames - before >= 100 * 4,
        "frames went out: {}",
        out.frames
    );
    assert_eq!(n, 0, "allocations on the L2 path");
}

#[test]
fn the_routed_path_does_not_allocate_per_frame() {
    let (me, remote) = (Ipv4Addr::new(198, 51, 100, 2), [198, 51, 100, 1]);
    let (up_mac, remote_mac): (Mac, Mac) = ([2, 0, 0, 0, 0, 0x55], [2, 0, 0, 0, 0, 0x99]);
    let cfg = UplinkConfig {
        ip: me,
        prefix: 24,
        gateway: Ipv4Addr::new(198, 51, 100, 254),
        mac: up_mac,
        nat: nat::NatConfig::default(),
        vtep_ip: None,
        shared: false,
        ip6: None,
    };
    let mut r = Router::new(9, cfg, Arc::new(PortCounters::default())).expect("router");
    let now = Instant::now();
    let mut net = network();
    net.fdb.install(A, 1, now); // the replies' destination is known unicast
    let mut nets = HashMap::new();
    nets.insert(1, net);
    let mut out = Sink::counting();
    // The remote end is on the uplink's subnet and answers ARP.
    let arp = {
        let mut f = up_mac.to_vec();
        f.extend(remote_mac);
        f.extend([0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
        f.extend(remote_mac);
        f.extend(remote);
        f.extend(up_mac);
        f.extend(me.octets());
        f.resize(60, 0);
        f
    };
    r.receive_from_uplink(&mut Cx::new(&mut nets, &mut out, now), &arp);
    let from = Ingress { net: 1, port: 1 };
    let flows: Vec<Vec<u8>> = (0..8).map(|i| udp(GW.mac, A, remote, 2000 + i)).collect();
    // Each flow's first packet opens its NAT session (the table's one allocation).
    for f in &flows {
        r.route_from_network(&mut Cx::new(&mut nets, &mut out, now), from, f, false);
    }
    let sent = out.frames;
    assert_eq!(sent, flows.len(), "the first packets left by the uplink");
    // Replies come back to the uplink address at each session's mapped port, which
    // the NAT picks: learn them from a translated copy, as the remote end would.
    let replies: Vec<Vec<u8>> = flows
        .iter()
        .map(|f| {
            let mut p = f[14..].to_vec();
            assert!(matches!(
                r.nat.outbound(&mut p, now),
                nat::Verdict::Translated { .. }
            ));
            let sport = u16::from_be_bytes([p[20], p[21]]);
            let b = PacketBuilder::ethernet2(remote_mac, up_mac)
                .ipv4(remote, me.octets(), 64)
                .udp(9, sport);
            let mut f = Vec::new();
            b.write(&mut f, &[0x24; 18]).unwrap();
            f
        })
        .collect();
    let n = allocations(|| {
        for _ in 0..50 {
            for (f, reply) in flows.iter().zip(&replies) {
                r.route_from_network(&mut Cx::new(&mut nets, &mut out, now), from, f, false);
                r.receive_from_uplink(&mut Cx::new(&mut nets, &mut out, now), reply);
            }
        }
    });
    assert_eq!(
        out.frames - sent,
        50 * 2 * flows.len(),
        "every packet went out and every reply came in"
    );
    assert_eq!(n, 0, "allocations on the routed path");
}
