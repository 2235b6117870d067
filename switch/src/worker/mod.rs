//! A poll-mode worker: owns a set of ports, reads them in bursts, runs each burst
//! through the pipeline, flushes transmit queues, then applies control messages.
//! Adaptive polling spins while frames flow and sleeps on the ports' fds when idle.
//!
//! This file holds the worker's types and its loop (`run`, `poll_port`, `sleep`); the
//! rest is one file a job: `graph` (the stage graph: the queued stages' inputs and their
//! runs), `trunks` (trunk ports' demultiplexing, part of port input), `handoff` (frames
//! from other workers), `tx` (port output: the transmit side, the stages' `Emit`),
//! `control` (control messages, by stage), `fast` (the fast path's FDB).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::capture::{tee, CaptureTap};
use crate::dns_server::{DnsServer, DnsStats, Upstream};
use crate::fastpath::FastPath;
use crate::fdb::{Fdb, FdbEntry, Learned, Mac};
use crate::host_link::{HostLink, HostPortStats};
use crate::network::Network;
use crate::pipeline::{self, Cx, Emit, Ingress, Source};
use crate::port::{Burst, Port, MAX_FRAME};
use crate::router::{self, Routed, Router, RouterStats};
use crate::skb_trunk::{self, SkbMember};
use crate::stats::{DropReason, PortCounters, Stage, WorkerCounters};
use crate::{
    NetConfig, NetId, PollMode, PortId, ENDPOINT_TRUNK_NET, HOST_NET, TRUNK_NET, UPLINK_NET,
};
use wire::ethernet::ETHERTYPE_VLAN;
use wire::vlan;

mod control;
mod fast;
mod graph;
mod handoff;
mod trunks;
mod tx;

pub use control::{Control, DnsControl, L2Control, PortControl, RouterControl};
use graph::{Queues, Spares};

/// How long a worker keeps spinning with nothing to do before it sleeps.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(200);
/// How long a worker stays awake before it stops watching its ports' fds. A watched
/// socket has the worker's epoll entry on its wait queue, and the kernel then takes that
/// queue's lock (irqsave) for every transmitted frame it frees (`sock_wfree` wakes
/// writers): 7% of a forwarding worker's time at 0.6 Mpps. The fds are watched again
/// just before the worker sleeps; level-triggered epoll reports frames that arrived in
/// between.
const DISARM_AFTER: Duration = Duration::from_millis(10);
/// Upper bound on a sleep, so aging runs even on an idle switch.
const MAX_SLEEP_MS: u16 = 1000;
/// Frames taken from the cross-worker queue per loop iteration.
const QUEUE_BUDGET: usize = 256;
/// Epoll token for the wake-up eventfd (ports use their PortId).
const WAKER_TOKEN: u64 = u64::MAX;

/// Wakes a sleeping worker. Senders check `sleeping` first so the common case (worker
/// spinning) costs no syscall.
pub struct Waker {
    fd: EventFd,
    sleeping: AtomicBool,
}

impl Waker {
    fn new() -> nix::Result<Self> {
        Ok(Waker {
            fd: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
            sleeping: AtomicBool::new(false),
        })
    }
    /// Wake unconditionally (control messages: rare).
    pub fn wake(&self) {
        let _ = self.fd.write(1);
    }
    /// Wake only if the worker is asleep (data path).
    pub fn wake_if_sleeping(&self) {
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake();
        }
    }
}

/// A port being added to a worker.
pub struct NewPort {
    pub id: PortId,
    pub net: NetId,
    pub port: Box<dyn Port>,
    pub counters: Arc<PortCounters>,
    /// The port runs the fast path's program (`crate::fastpath`).
    pub fast: bool,
}

/// A tc endpoint (`skb_trunk`) being added to the worker that owns its trunk.
pub struct NewSkbPort {
    pub id: PortId,
    pub net: NetId,
    pub counters: Arc<PortCounters>,
    pub trunk: PortId,
}

/// Data handed between workers.
pub enum Handoff {
    Frame {
        port: PortId,
        frame: Box<[u8]>,
    },
    /// A frame for the router, which lives on the uplink's worker.
    Route {
        from: Ingress,
        frame: Box<[u8]>,
    },
    /// A frame of an overlay network for the vtep, which lives there too.
    Tunnel {
        from: Ingress,
        frame: Box<[u8]>,
    },
    Learned {
        net: NetId,
        mac: Mac,
        port: PortId,
    },
    /// A query for the embedded resolver, which lives on worker `DNS_WORKER`.
    Dns {
        from: Ingress,
        frame: Box<[u8]>,
    },
}

/// The worker running the embedded resolver: the uplink's (the router's) worker, so
/// forwarded queries and their replies never cross workers.
pub const DNS_WORKER: usize = 0;

/// The channels to one worker, held by the engine and by every other worker.
#[derive(Clone)]
pub struct Peer {
    pub control: Sender<Control>,
    pub data: Sender<Handoff>,
    pub waker: Arc<Waker>,
}

pub struct WorkerSetup {
    pub index: usize,
    pub poll: PollMode,
    pub fdb_max: usize,
    pub fdb_age: Duration,
    /// Storm control: floods per second per port (0: no limit).
    pub flood_rate: u32,
    /// Bound on the MACs one port may have learned in a network.
    pub fdb_max_per_port: usize,
    pub counters: Arc<WorkerCounters>,
    /// The in-kernel fast path's maps, when it runs.
    pub fast: Option<Arc<FastPath>>,
}

/// Where a port lives, indexed by PortId (ids are small and reused).
#[derive(Clone, Copy)]
enum Home {
    Local(usize),
    Remote(usize),
    /// A network's member on a trunk this worker owns (a macvlan parent): frames to it
    /// leave by that port, tagged with the VID if there is one.
    Vlan {
        port: usize,
        vid: Option<u16>,
    },
    /// A tc endpoint on trunk port `trunk` (owned by this worker): frames to it leave by
    /// the trunk with its tag (`skb_trunk`).
    Skb {
        trunk: PortId,
    },
}

/// One network on a trunk: frames with this VID (or untagged, for None) belong to it.
struct VlanMember {
    vid: Option<u16>,
    /// The member's own PortId: what the network's FDB and flood list name.
    id: PortId,
    net: NetId,
    rx: Burst,
}

/// A trunk frame's 802.1Q tag, if it has one (an 802.1ad tag is payload here: it stays
/// in the frame of the untagged network, if there is one).
fn dot1q_of(frame: &[u8]) -> Option<vlan::Tagged<&[u8]>> {
    vlan::Tagged::new_checked(frame)
        .ok()
        .filter(|t| t.tpid() == ETHERTYPE_VLAN)
}

struct OwnedPort {
    id: PortId,
    net: NetId,
    port: Box<dyn Port>,
    tx: Burst,
    counters: Arc<PortCounters>,
    /// Set after a receive error until the port is removed: not polled any more.
    faulted: bool,
    capture: Option<CaptureTap>,
    /// Runs the fast path's program; entries are installed for it unless captured.
    fast: bool,
    /// For a trunk: the networks on it by VID.
    vlans: Vec<VlanMember>,
}

/// Where this worker's routed frames go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RouterAt {
    /// No uplink: the sender is told the network is unreachable.
    Nowhere,
    Local,
    Remote(usize),
}

/// The transmit side of a worker: what the pipeline emits into.
pub(crate) struct TxSide {
    ports: Vec<OwnedPort>,
    home: Vec<Option<Home>>,
    /// This worker's tc endpoints, by PortId.
    skb: Vec<Option<SkbMember>>,
    dirty: Vec<usize>,
    peers: Vec<Peer>,
    peers_to_wake: u64,
    counters: Arc<WorkerCounters>,
    router_at: RouterAt,
    /// This worker runs the resolver: queries queue here rather than crossing over.
    dns_local: bool,
    /// The inputs of the stages that run after each burst (`graph`).
    queues: Queues,
}

pub struct Worker {
    setup: WorkerSetup,
    control: Receiver<Control>,
    data: Receiver<Handoff>,
    waker: Arc<Waker>,
    nets: HashMap<NetId, Network>,
    tx: TxSide,
    epoll: Epoll,
    /// Whether the ports' fds are registered with `epoll` (see [`DISARM_AFTER`]).
    armed: bool,
    /// When the worker last woke up (or started).
    awake_since: Instant,
    /// What this worker installed in the fast path: (network, MAC) -> its port.
    installed: HashMap<(NetId, Mac), PortId, ahash::RandomState>,
    router: Option<Box<Router>>,
    /// The host port (on the router's worker), with or without an uplink.
    host: Option<Box<HostLink>>,
    /// The embedded resolver (on `DNS_WORKER` only).
    dns: Option<Box<DnsServer>>,
    /// Swapped with `tx.queues` to drain them while the stages refill the others.
    spares: Spares,
    /// Where the L2 stage writes the gateway's answers (the router and the resolver
    /// have their own).
    scratch: Box<[u8; MAX_FRAME]>,
    /// One tc endpoint's frames from a trunk burst, untagged (`skb_trunk_burst`).
    skb_run: Option<Box<Burst>>,
}

impl Worker {
    pub fn new(
        setup: WorkerSetup,
        control: Receiver<Control>,
        data: Receiver<Handoff>,
        waker: Arc<Waker>,
        peers: Vec<Peer>,
        dns: Option<Box<DnsServer>>,
    ) -> nix::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(
            waker.fd.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, WAKER_TOKEN),
        )?;
        let counters = setup.counters.clone();
        Ok(Worker {
            setup,
            control,
            data,
            waker,
            nets: Default::default(),
            tx: TxSide {
                ports: Vec::new(),
                home: Vec::new(),
                skb: Vec::new(),
                dirty: Vec::new(),
                peers,
                peers_to_wake: 0,
                counters,
                router_at: RouterAt::Nowhere,
                dns_local: dns.is_some(),
                queues: Queues::new(),
            },
            epoll,
            armed: true,
            awake_since: Instant::now(),
            installed: HashMap::default(),
            router: None,
            host: None,
            dns,
            spares: Spares::new(),
            scratch: Box::new([0u8; MAX_FRAME]),
            skb_run: None,
        })
    }

    pub fn new_waker() -> nix::Result<Arc<Waker>> {
        Ok(Arc::new(Waker::new()?))
    }

    /// The worker loop; returns on `Control::Stop` or when the engine is gone.
    pub fn run(mut self) {
        let mut rx = Burst::new();
        let mut idle_since: Option<Instant> = None;
        let mut last_tick = Instant::now();
        let c = self.setup.counters.clone();
        tracing::debug!(worker = self.setup.index, "worker running");
        loop {
            let now = Instant::now();
            let mut work = 0usize;
            for i in 0..self.tx.ports.len() {
                work += self.poll_port(i, &mut rx, now);
            }
            work += self.drain_handoffs(now);
            self.tx.flush();
            match self.apply_control(now) {
                Ok(n) => work += n,
                Err(()) => return,
            }
            if let Some(d) = self.dns.as_mut() {
                if d.next_deadline(now).is_some_and(|t| t <= now) {
                    d.tick(&mut Cx::new(&mut self.nets, &mut self.tx, now));
                    self.dns_upstream(now);
                    self.tx.flush();
                }
            }
            if now.duration_since(last_tick) >= Duration::from_secs(1) {
                for n in self.nets.values_mut() {
                    n.fdb.expire(now);
                }
                if let Some(r) = self.router.as_mut() {
                    r.tick(&mut Cx::new(&mut self.nets, &mut self.tx, now));
                    self.tx.flush();
                }
                for op in self.tx.ports.iter_mut() {
                    let b = op.port.backend_stats();
                    if let Ok(mut slot) = op.counters.backend.lock() {
                        *slot = b;
                    }
                }
                self.sync_fast_path(now);
                last_tick = now;
            }
            if work > 0 {
                WorkerCounters::add(&c.busy_polls, 1);
                idle_since = None;
                if self.armed && now.duration_since(self.awake_since) >= DISARM_AFTER {
                    self.set_armed(false);
                }
                continue;
            }
            WorkerCounters::add(&c.idle_polls, 1);
            match self.setup.poll {
                PollMode::Busy => std::hint::spin_loop(),
                PollMode::Adaptive => {
                    let since = *idle_since.get_or_insert(now);
                    if now.duration_since(since) >= SPIN_BEFORE_SLEEP {
                        self.sleep();
                        idle_since = None;
                    } else {
                        // Spinning, but not at the expense of a runnable thread on
                        // this core (a sandbox's, on a small host).
                        std::thread::yield_now();
                    }
                }
            }
        }
    }

    fn poll_port(&mut self, i: usize, rx: &mut Burst, now: Instant) -> usize {
        let op = &mut self.tx.ports[i];
        if op.faulted {
            return 0;
        }
        rx.clear();
        let n = match op.port.recv(rx) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(port = op.port.name(), error = %e, "receive failed; port no longer polled");
                op.counters.dropped(DropReason::PortError, 1);
                op.faulted = true;
                if let (true, Some(fd)) = (self.armed, fd_of(op.port.as_ref())) {
                    let _ = self.epoll.delete(fd);
                }
                let id = op.id;
                self.uninstall_port(id);
                return 0;
            }
        };
        if n == 0 {
            return 0;
        }
        if let Some(tap) = &op.capture {
            if !tee(tap, rx.iter()) {
                op.capture = None;
            }
        }
        let (id, net_id, counters) = (op.id, op.net, op.counters.clone());
        let install = op.fast && op.capture.is_none();
        WorkerCounters::add(&self.setup.counters.rx_packets, n as u64);
        self.setup.counters.stage(Stage::PortInput, n);
        if net_id == TRUNK_NET {
            self.trunk_burst(i, rx, &counters, now);
            self.run_queued(now);
        } else if net_id == ENDPOINT_TRUNK_NET {
            self.skb_trunk_burst(rx, &counters, now);
            self.run_queued(now);
        } else if net_id == UPLINK_NET {
            self.uplink_burst(rx, &counters, now);
        } else if net_id == HOST_NET {
            self.host_burst(rx, &counters, now);
        } else {
            let src = self.tx.source(id, &counters);
            self.l2_burst(net_id, src, rx, install, now);
            self.run_queued(now);
        }
        n
    }

    /// A burst from `src` through network `net_id`'s L2 stage; with `install`, the
    /// sources it learned go into the fast path (and moved MACs leave it either way).
    pub(super) fn l2_burst(
        &mut self,
        net_id: NetId,
        src: Source,
        rx: &Burst,
        install: bool,
        now: Instant,
    ) {
        let check_moves = !self.installed.is_empty();
        if let Some(net) = self.nets.get_mut(&net_id) {
            // The kernel forwards between endpoints by the FDB alone: an isolated
            // network's MACs never go there.
            let install = install && !net.cfg.isolate;
            self.setup.counters.stage(Stage::L2, rx.len());
            pipeline::switch_burst(net, src, rx, &mut self.tx, &mut self.scratch, now);
            if install || check_moves {
                self.sync_sources(src.port, net_id, install, rx, now);
            }
        }
    }

    /// Frames from the uplink, to the router stage; then the stages it queued for (the
    /// resolver's upstream replies).
    pub(super) fn uplink_burst(&mut self, rx: &Burst, counters: &PortCounters, now: Instant) {
        for frame in rx.iter() {
            counters.rx(frame.len());
        }
        if let Some(r) = self.router.as_mut() {
            self.setup.counters.stage(Stage::Router, rx.len());
            for frame in rx.iter() {
                r.receive_from_uplink(&mut Cx::new(&mut self.nets, &mut self.tx, now), frame);
            }
        }
        self.run_queued(now);
    }

    /// Frames from the host port, to the host link; then the stages it queued for.
    pub(super) fn host_burst(&mut self, rx: &Burst, counters: &PortCounters, now: Instant) {
        for frame in rx.iter() {
            counters.rx(frame.len());
        }
        if let Some(h) = self.host.as_mut() {
            for frame in rx.iter() {
                h.receive(&mut Cx::new(&mut self.nets, &mut self.tx, now), frame);
            }
        }
        self.run_queued(now);
    }

    /// Sleep until a port or the waker is readable (or the one-second tick).
    fn sleep(&mut self) {
        self.waker.sleeping.store(true, Ordering::SeqCst);
        // Re-check after announcing sleep: a sender that saw `sleeping == false` has
        // already queued its message, and we must not miss it.
        if !self.data.is_empty() || !self.control.is_empty() {
            self.waker.sleeping.store(false, Ordering::SeqCst);
            return;
        }
        if !self.armed {
            self.set_armed(true);
        }
        WorkerCounters::add(&self.setup.counters.sleeps, 1);
        let mut events = [EpollEvent::empty(); 16];
        // Never past the resolver's next deadline (an upstream's timeout, a TCP timer).
        let now = Instant::now();
        let ms = self
            .dns
            .as_ref()
            .and_then(|d| d.next_deadline(now))
            .map(|t| t.saturating_duration_since(now).as_millis() as u64 + 1)
            .map_or(MAX_SLEEP_MS, |ms| ms.min(MAX_SLEEP_MS as u64) as u16);
        let _ = self.epoll.wait(&mut events, EpollTimeout::from(ms));
        self.waker.sleeping.store(false, Ordering::SeqCst);
        let _ = self.waker.fd.read();
        self.awake_since = Instant::now();
    }

    /// Watch (or stop watching) every working port's fd; the waker stays watched.
    fn set_armed(&mut self, armed: bool) {
        for op in self.tx.ports.iter().filter(|op| !op.faulted) {
            if armed {
                watch(&self.epoll, op.port.as_ref(), op.id);
            } else if let Some(fd) = fd_of(op.port.as_ref()) {
                let _ = self.epoll.delete(fd);
            }
        }
        self.armed = armed;
    }
}

fn watch(epoll: &Epoll, port: &dyn Port, id: PortId) {
    if let Some(fd) = fd_of(port) {
        if let Err(e) = epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, id as u64)) {
            tracing::warn!(port = port.name(), error = %e, "cannot watch port fd; adaptive sleep may delay it");
        }
    }
}

/// The port's pollable fd, if it has one. Epoll registrations are removed before the
/// port is dropped (`remove_port`), so the kernel never watches a closed fd.
fn fd_of(p: &dyn Port) -> Option<BorrowedFd<'_>> {
    let fd = p.fd();
    // SAFETY: the fd is owned by the port, open while the port lives, and the borrow
    // cannot outlive the port.
    (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
}
