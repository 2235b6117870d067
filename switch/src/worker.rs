//! A poll-mode worker: owns a set of ports, reads them in bursts, runs each burst
//! through the pipeline, flushes transmit queues, then applies control messages.
//! Adaptive polling spins while frames flow and sleeps on the ports' fds when idle.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::dns_server::{DnsServer, DnsStats};
use crate::fastpath::FastPath;
use crate::fdb::{Fdb, FdbEntry, Learned, Mac};
use crate::pipeline::{self, Emit};
use crate::port::{Burst, Port, MAX_FRAME};
use crate::router::{self, Router, RouterStats};
use crate::skb_trunk::{self, SkbMember};
use crate::stats::{DropReason, PortCounters, WorkerCounters};
use crate::{NetConfig, NetId, PollMode, PortId, ENDPOINT_TRUNK_NET, TRUNK_NET, UPLINK_NET};

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

/// A frame copied off a port for `vswitchctl capture`.
pub struct Captured {
    /// Wall-clock time the worker saw it.
    pub at: std::time::SystemTime,
    pub frame: Box<[u8]>,
}

/// Where a port's captured frames go (bounded: a slow reader loses frames, never
/// slows the worker).
pub type CaptureTap = Sender<Captured>;

/// Control-plane requests, applied between bursts.
pub enum Control {
    /// Start (Some) or stop (None) copying a port's received and sent frames.
    Capture {
        port: PortId,
        tap: Option<CaptureTap>,
    },
    /// While `on`, the router hands none of `port`'s NAT sessions to the kernel (the
    /// port is captured).
    NatExclude {
        port: PortId,
        on: bool,
    },
    AddNetwork(NetConfig),
    RemoveNetwork(NetId),
    /// A port this worker owns from now on.
    AddPort(NewPort),
    /// A tc endpoint on a trunk this worker owns.
    AddSkbPort(NewSkbPort),
    /// A port owned by another worker, so frames for it can be handed over.
    AddRemotePort {
        id: PortId,
        net: NetId,
        worker: usize,
    },
    RemovePort(PortId),
    FdbDump {
        net: NetId,
        reply: Sender<Vec<FdbEntry>>,
    },
    /// This worker owns the uplink from now on and routes for every worker.
    EnableRouter(Box<Router>),
    /// Routed frames go to that worker (None: there is no uplink).
    RouteVia(Option<usize>),
    /// Publish (`add`) or unpublish a port; the router's worker answers.
    PortMapping {
        add: bool,
        mapping: nat::PortMapping,
        reply: Sender<Result<(), String>>,
    },
    /// The router's counters and NAT sessions, if this worker has the router.
    RouterDump(Sender<Option<(RouterStats, Vec<nat::SessionRow>)>>),
    /// A network's names for the embedded resolver (None: forget them).
    DnsNames {
        net: NetId,
        table: Option<Arc<dns::NameTable>>,
    },
    /// The embedded resolver's counters, if this worker runs it.
    DnsDump(Sender<Option<DnsStats>>),
    /// Reply once every message sent before it has been applied.
    Barrier(Sender<()>),
    /// A network joins a trunk this or another worker owns, as member port `member`.
    AddVlanMember {
        trunk: PortId,
        member: PortId,
        vid: Option<u16>,
        net: NetId,
    },
    Stop,
}

/// Data handed between workers.
pub enum Handoff {
    Frame {
        port: PortId,
        frame: Box<[u8]>,
    },
    /// A frame for the router, which lives on the uplink's worker (`tunnel`: for the
    /// VXLAN tunnel of an overlay network rather than for routing).
    Route {
        net: NetId,
        in_port: PortId,
        frame: Box<[u8]>,
        tunnel: bool,
    },
    Learned {
        net: NetId,
        mac: Mac,
        port: PortId,
    },
    /// A query for the embedded resolver, which lives on worker `DNS_WORKER`.
    Dns {
        net: NetId,
        in_port: PortId,
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

/// The 802.1Q VID of a frame, if tagged.
fn vlan_of(frame: &[u8]) -> Option<u16> {
    (frame.len() >= 18 && frame[12..14] == [0x81, 0x00])
        .then(|| u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff)
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

/// Copy frames to a capture tap; false once the reader has gone away.
fn tee<'a>(tap: &CaptureTap, frames: impl Iterator<Item = &'a [u8]>) -> bool {
    let at = std::time::SystemTime::now();
    for f in frames {
        if let Err(crossbeam_channel::TrySendError::Disconnected(_)) = tap.try_send(Captured {
            at,
            frame: f.into(),
        }) {
            return false;
        }
    }
    true
}

pub(crate) struct Network {
    pub cfg: NetConfig,
    pub fdb: Fdb,
    /// Every port of the network, on any worker, in insertion order.
    pub members: Vec<PortId>,
    /// `cfg.hosts` as a map, for the router.
    pub hosts: HashMap<Ipv4Addr, Mac>,
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
    /// Frames for this worker's router (or for the no-uplink answer), drained after
    /// each burst, with (network, ingress port).
    routeq: Burst,
    /// (network, ingress port, for the tunnel rather than routing)
    routeq_meta: Vec<(NetId, PortId, bool)>,
    /// This worker runs the resolver: DNS frames queue here, drained after each burst.
    dns_local: bool,
    dnsq: Burst,
    dnsq_meta: Vec<(NetId, PortId)>,
}

impl TxSide {
    fn home(&self, id: PortId) -> Option<Home> {
        self.home.get(id as usize).copied().flatten()
    }

    fn set_home(&mut self, id: PortId, h: Option<Home>) {
        let i = id as usize;
        if self.home.len() <= i {
            self.home.resize(i + 1, None);
        }
        self.home[i] = h;
    }

    fn flush_port(&mut self, i: usize) {
        let op = &mut self.ports[i];
        if op.tx.is_empty() {
            return;
        }
        let queued = op.tx.len();
        let sent = match op.port.send(&op.tx) {
            Ok(n) => n.min(queued),
            Err(_) => 0,
        };
        let bytes: usize = (0..sent).map(|k| op.tx.frame(k).len()).sum();
        if let Some(tap) = &op.capture {
            if !tee(tap, op.tx.iter().take(sent)) {
                op.capture = None;
            }
        }
        op.counters.tx(sent, bytes);
        WorkerCounters::add(&self.counters.tx_packets, sent as u64);
        if sent < queued {
            op.counters.dropped(DropReason::TxFull, queued - sent);
            WorkerCounters::add(&self.counters.drops, (queued - sent) as u64);
        }
        op.tx.clear();
    }

    fn flush(&mut self) {
        while let Some(i) = self.dirty.pop() {
            self.flush_port(i);
        }
        if self.peers_to_wake != 0 {
            for (w, p) in self.peers.iter().enumerate() {
                if self.peers_to_wake & (1 << (w % 64)) != 0 {
                    p.waker.wake_if_sleeping();
                }
            }
            self.peers_to_wake = 0;
        }
    }

    fn peer_send(&mut self, worker: usize, msg: Handoff) -> bool {
        let ok = self.peers[worker].data.try_send(msg).is_ok();
        self.peers_to_wake |= 1 << (worker % 64);
        ok
    }

    fn port_counters(&self, id: PortId) -> Option<Arc<PortCounters>> {
        match self.home(id) {
            Some(Home::Local(i)) | Some(Home::Vlan { port: i, .. }) => {
                Some(self.ports[i].counters.clone())
            }
            Some(Home::Skb { .. }) => self.skb_member(id).map(|m| m.counters.clone()),
            _ => None,
        }
    }

    /// Port `i`'s transmit burst, flushed first when full and marked for the flush at the
    /// end of the loop iteration.
    fn tx_burst(&mut self, i: usize) -> &mut Burst {
        if self.ports[i].tx.is_full() {
            self.flush_port(i);
        }
        if self.ports[i].tx.is_empty() {
            self.dirty.push(i);
        }
        &mut self.ports[i].tx
    }

    fn skb_member(&self, id: PortId) -> Option<&SkbMember> {
        self.skb.get(id as usize).and_then(|m| m.as_ref())
    }

    /// Queue a frame for tc endpoint `to`: on its trunk, tagged with its port.
    fn emit_skb(&mut self, to: PortId, trunk: PortId, frame: &[u8], from: &PortCounters) {
        let Some(Home::Local(i)) = self.home(trunk) else {
            from.dropped(DropReason::PortError, 1);
            return;
        };
        let Some(slot) = self.tx_burst(i).slot() else {
            return;
        };
        let Some(n) = skb_trunk::tag_into(frame, to, slot) else {
            from.dropped(DropReason::TxFull, 1);
            return;
        };
        self.ports[i].tx.commit(n);
        if let Some(Some(m)) = self.skb.get_mut(to as usize) {
            m.counters.tx(1, frame.len());
            if let Some(tap) = &m.capture {
                if !tee(tap, std::iter::once(frame)) {
                    m.capture = None;
                }
            }
        }
    }

    /// Queue a frame on trunk port `i` with an 802.1Q tag for `vid` pushed in.
    fn emit_tagged(&mut self, i: usize, vid: u16, frame: &[u8], from: &PortCounters) {
        if frame.len() < 14 || frame.len() + 4 > MAX_FRAME {
            from.dropped(DropReason::TxFull, 1);
            return;
        }
        if let Some(slot) = self.tx_burst(i).slot() {
            slot[..12].copy_from_slice(&frame[..12]);
            slot[12..14].copy_from_slice(&[0x81, 0x00]);
            slot[14..16].copy_from_slice(&vid.to_be_bytes());
            slot[16..frame.len() + 4].copy_from_slice(&frame[12..]);
            self.ports[i].tx.commit(frame.len() + 4);
        }
    }
}

impl TxSide {
    /// Queue a frame for the router (routing, or the overlay tunnel), here or on the
    /// uplink's worker.
    fn hand_to_router(
        &mut self,
        net: NetId,
        in_port: PortId,
        frame: &[u8],
        from: &PortCounters,
        tunnel: bool,
    ) {
        match self.router_at {
            RouterAt::Remote(w) => {
                let msg = Handoff::Route {
                    net,
                    in_port,
                    frame: frame.into(),
                    tunnel,
                };
                if self.peer_send(w, msg) {
                    WorkerCounters::add(&self.counters.cross_worker, 1);
                } else {
                    from.dropped(DropReason::QueueFull, 1);
                }
            }
            RouterAt::Local | RouterAt::Nowhere => {
                if self.routeq.push(frame) {
                    self.routeq_meta.push((net, in_port, tunnel));
                } else {
                    from.dropped(DropReason::NoRoute, 1);
                }
            }
        }
    }
}

impl Emit for TxSide {
    fn emit(&mut self, to: PortId, frame: &[u8], from: &PortCounters) {
        match self.home(to) {
            Some(Home::Local(i)) | Some(Home::Vlan { port: i, vid: None }) => {
                self.tx_burst(i).push(frame);
            }
            Some(Home::Vlan {
                port,
                vid: Some(vid),
            }) => self.emit_tagged(port, vid, frame, from),
            Some(Home::Skb { trunk }) => self.emit_skb(to, trunk, frame, from),
            Some(Home::Remote(w)) => {
                let msg = Handoff::Frame {
                    port: to,
                    frame: frame.into(),
                };
                if self.peer_send(w, msg) {
                    WorkerCounters::add(&self.counters.cross_worker, 1);
                } else {
                    from.dropped(DropReason::QueueFull, 1);
                    WorkerCounters::add(&self.counters.drops, 1);
                }
            }
            None => {}
        }
    }

    fn learned(&mut self, net: NetId, mac: Mac, port: PortId) {
        for w in 0..self.peers.len() {
            let _ = self.peer_send(w, Handoff::Learned { net, mac, port });
        }
    }

    fn route(&mut self, net: NetId, in_port: PortId, frame: &[u8], from: &PortCounters) {
        self.hand_to_router(net, in_port, frame, from, false);
    }

    fn tunnel(&mut self, net: NetId, in_port: PortId, frame: &[u8], from: &PortCounters) {
        self.hand_to_router(net, in_port, frame, from, true);
    }

    fn dns(&mut self, net: NetId, in_port: PortId, frame: &[u8], from: &PortCounters) {
        if self.dns_local {
            if self.dnsq.push(frame) {
                self.dnsq_meta.push((net, in_port));
            } else {
                from.dropped(DropReason::QueueFull, 1);
            }
            return;
        }
        let msg = Handoff::Dns {
            net,
            in_port,
            frame: frame.into(),
        };
        if self.peer_send(DNS_WORKER, msg) {
            WorkerCounters::add(&self.counters.cross_worker, 1);
        } else {
            from.dropped(DropReason::QueueFull, 1);
        }
    }
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
    /// Swapped with `tx.routeq` to drain it while the pipeline may refill the other.
    route_spare: Burst,
    /// The embedded resolver (on `DNS_WORKER` only).
    dns: Option<Box<DnsServer>>,
    dns_spare: Burst,
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
                routeq: Burst::new(),
                routeq_meta: Vec::with_capacity(crate::port::BURST),
                dns_local: dns.is_some(),
                dnsq: Burst::new(),
                dnsq_meta: Vec::with_capacity(crate::port::BURST),
            },
            epoll,
            armed: true,
            awake_since: Instant::now(),
            installed: HashMap::default(),
            router: None,
            route_spare: Burst::new(),
            dns,
            dns_spare: Burst::new(),
            skb_run: None,
        })
    }

    pub fn new_waker() -> nix::Result<Arc<Waker>> {
        Ok(Arc::new(Waker::new()?))
    }

    /// The worker loop; returns on `Control::Stop` or when the engine is gone.
    pub fn run(mut self) {
        let mut rx = Burst::new();
        let mut scratch = [0u8; MAX_FRAME];
        let mut idle_since: Option<Instant> = None;
        let mut last_tick = Instant::now();
        let c = self.setup.counters.clone();
        tracing::debug!(worker = self.setup.index, "worker running");
        loop {
            let now = Instant::now();
            let mut work = 0usize;
            for i in 0..self.tx.ports.len() {
                work += self.poll_port(i, &mut rx, &mut scratch, now);
            }
            work += self.drain_handoffs(&mut scratch, now);
            self.tx.flush();
            match self.apply_control(now) {
                Ok(n) => work += n,
                Err(()) => return,
            }
            if let Some(d) = self.dns.as_mut() {
                if d.next_deadline(now).is_some_and(|t| t <= now) {
                    d.tick(
                        &self.nets,
                        &mut self.tx,
                        self.router.as_deref_mut(),
                        &mut scratch,
                        now,
                    );
                    self.tx.flush();
                }
            }
            if now.duration_since(last_tick) >= Duration::from_secs(1) {
                for n in self.nets.values_mut() {
                    n.fdb.expire(now);
                }
                if let Some(r) = self.router.as_mut() {
                    r.tick(&mut self.nets, &mut self.tx, &mut scratch, now);
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

    fn poll_port(
        &mut self,
        i: usize,
        rx: &mut Burst,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) -> usize {
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
        let check_moves = !self.installed.is_empty();
        WorkerCounters::add(&self.setup.counters.rx_packets, n as u64);
        if net_id == TRUNK_NET {
            self.trunk_burst(i, rx, &counters, scratch, now);
        } else if net_id == ENDPOINT_TRUNK_NET {
            self.skb_trunk_burst(rx, &counters, scratch, now);
            self.route_queued(scratch, now);
            self.dns_queued(scratch, now);
        } else if net_id == UPLINK_NET {
            for frame in rx.iter() {
                counters.rx(frame.len());
                if let Some(r) = self.router.as_mut() {
                    r.receive_from_uplink(&mut self.nets, frame, &mut self.tx, scratch, now);
                }
            }
            self.dns_replies(scratch, now);
        } else if let Some(net) = self.nets.get_mut(&net_id) {
            let multi = self.tx.peers.len() > 1;
            pipeline::switch_burst(net, id, rx, &counters, &mut self.tx, scratch, now, multi);
            if install || check_moves {
                self.sync_sources(id, net_id, install, rx, now);
            }
            self.route_queued(scratch, now);
            self.dns_queued(scratch, now);
        }
        n
    }

    /// Run what the pipeline queued for the router (after the burst, when the router
    /// may borrow every network).
    fn route_queued(&mut self, scratch: &mut [u8; MAX_FRAME], now: Instant) {
        if self.tx.routeq.is_empty() {
            return;
        }
        std::mem::swap(&mut self.tx.routeq, &mut self.route_spare);
        let meta = std::mem::take(&mut self.tx.routeq_meta);
        for (i, &(net, in_port, tunnel)) in meta.iter().enumerate() {
            let frame = self.route_spare.frame(i);
            match self.router.as_mut() {
                Some(r) if tunnel => {
                    r.tunnel_out(&self.nets, net, in_port, frame, &mut self.tx, scratch, now)
                }
                // No uplink: an overlay has no tunnel to send by.
                None if tunnel => {
                    if let Some(c) = self.tx.port_counters(in_port) {
                        c.dropped(DropReason::NoRoute, 1);
                    }
                }
                Some(r) => r.route_from_network(
                    &mut self.nets,
                    net,
                    in_port,
                    frame,
                    &mut self.tx,
                    scratch,
                    now,
                ),
                None => self.unreachable(net, in_port, i, scratch),
            }
        }
        self.route_spare.clear();
        self.tx.routeq_meta = meta;
        self.tx.routeq_meta.clear();
    }

    /// Hand what the pipeline queued for the resolver to it (after the burst).
    fn dns_queued(&mut self, scratch: &mut [u8; MAX_FRAME], now: Instant) {
        if self.tx.dnsq.is_empty() {
            return;
        }
        std::mem::swap(&mut self.tx.dnsq, &mut self.dns_spare);
        let meta = std::mem::take(&mut self.tx.dnsq_meta);
        if let Some(d) = self.dns.as_mut() {
            for (i, &(net, in_port)) in meta.iter().enumerate() {
                d.query_frame(
                    &self.nets,
                    net,
                    in_port,
                    self.dns_spare.frame(i),
                    &mut self.tx,
                    self.router.as_deref_mut(),
                    scratch,
                    now,
                );
            }
        }
        self.dns_spare.clear();
        self.tx.dnsq_meta = meta;
        self.tx.dnsq_meta.clear();
    }

    /// Upstream replies the router set aside during an uplink burst.
    fn dns_replies(&mut self, scratch: &mut [u8; MAX_FRAME], now: Instant) {
        let Some(r) = self.router.as_mut() else {
            return;
        };
        if r.dns_inbox.is_empty() {
            return;
        }
        let inbox = std::mem::take(&mut r.dns_inbox);
        if let Some(d) = self.dns.as_mut() {
            for frame in &inbox {
                d.uplink_frame(
                    &self.nets,
                    frame,
                    &mut self.tx,
                    self.router.as_deref_mut(),
                    scratch,
                    now,
                );
            }
        }
        if let Some(r) = self.router.as_mut() {
            // Keep the allocation for the next burst.
            let mut inbox = inbox;
            inbox.clear();
            r.dns_inbox = inbox;
        }
    }

    /// No uplink: drop, count, and tell the sender at once (ICMP net unreachable).
    fn unreachable(
        &mut self,
        net: NetId,
        in_port: PortId,
        i: usize,
        scratch: &mut [u8; MAX_FRAME],
    ) {
        let Some(counters) = self.tx.port_counters(in_port) else {
            return;
        };
        counters.dropped(DropReason::NoRoute, 1);
        if let Some(n) = self.nets.get(&net) {
            router::no_uplink(
                n,
                in_port,
                self.route_spare.frame(i),
                &mut self.tx,
                scratch,
                &counters,
            );
        }
    }

    fn drain_handoffs(&mut self, scratch: &mut [u8; MAX_FRAME], now: Instant) -> usize {
        let mut n = 0;
        while n < QUEUE_BUDGET {
            match self.data.try_recv() {
                Ok(Handoff::Frame { port, frame }) => {
                    if let Some(counters) = self.tx.port_counters(port) {
                        self.tx.emit(port, &frame, &counters);
                    }
                }
                Ok(Handoff::Route {
                    net,
                    in_port,
                    frame,
                    tunnel: true,
                }) => {
                    if let Some(r) = self.router.as_mut() {
                        r.tunnel_out(&self.nets, net, in_port, &frame, &mut self.tx, scratch, now);
                    }
                }
                Ok(Handoff::Route {
                    net,
                    in_port,
                    frame,
                    tunnel: false,
                }) => {
                    if let Some(r) = self.router.as_mut() {
                        r.route_from_network(
                            &mut self.nets,
                            net,
                            in_port,
                            &frame,
                            &mut self.tx,
                            scratch,
                            now,
                        );
                    }
                }
                Ok(Handoff::Dns {
                    net,
                    in_port,
                    frame,
                }) => {
                    if let Some(d) = self.dns.as_mut() {
                        d.query_frame(
                            &self.nets,
                            net,
                            in_port,
                            &frame,
                            &mut self.tx,
                            self.router.as_deref_mut(),
                            scratch,
                            now,
                        );
                    }
                }
                Ok(Handoff::Learned { net, mac, port }) => {
                    if let Some(n) = self.nets.get_mut(&net) {
                        n.fdb.install(mac, port, now);
                    }
                    // Moved to another worker's port: stop claiming it in the kernel.
                    self.forget_moved(net, mac, port);
                }
                Err(_) => break,
            }
            n += 1;
        }
        n
    }

    /// Apply pending control messages; Err(()) means stop.
    fn apply_control(&mut self, now: Instant) -> Result<usize, ()> {
        let mut n = 0;
        loop {
            let msg = match self.control.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => return Ok(n),
                Err(TryRecvError::Disconnected) => return Err(()),
            };
            n += 1;
            match msg {
                Control::AddNetwork(cfg) => {
                    if let Some(r) = self.router.as_mut() {
                        r.set_overlay(cfg.id, cfg.overlay.as_ref());
                    }
                    let hosts = cfg.hosts.iter().copied().collect();
                    match self.nets.get_mut(&cfg.id) {
                        // An update (endpoints came or went): keep what was learned.
                        Some(net) => {
                            net.cfg = cfg;
                            net.hosts = hosts;
                        }
                        None => {
                            let fdb = Fdb::new(self.setup.fdb_max, self.setup.fdb_age);
                            self.nets.insert(
                                cfg.id,
                                Network {
                                    cfg,
                                    fdb,
                                    members: Vec::new(),
                                    hosts,
                                },
                            );
                        }
                    }
                }
                Control::RemoveNetwork(id) => {
                    self.nets.remove(&id);
                    if let Some(r) = self.router.as_mut() {
                        r.set_overlay(id, None);
                    }
                    if let Some(d) = self.dns.as_mut() {
                        d.set_network(id, None);
                    }
                }
                Control::DnsNames { net, table } => {
                    if let Some(d) = self.dns.as_mut() {
                        d.set_network(net, table);
                    }
                }
                Control::DnsDump(reply) => {
                    let _ = reply.send(self.dns.as_ref().map(|d| d.stats()));
                }
                Control::AddPort(p) => self.add_port(p),
                Control::NatExclude { port, on } => {
                    if let Some(r) = self.router.as_mut() {
                        // The uplink itself: nothing routed or tunnelled in the kernel.
                        let uplink = port == r.port;
                        if let Some(f) = r.fast_nat.as_mut() {
                            f.exclude(port, on, uplink);
                        }
                        if let (true, Some(f)) = (uplink, r.fast_vxlan.as_mut()) {
                            f.exclude(on);
                        }
                    }
                }
                Control::AddSkbPort(p) => {
                    let i = p.id as usize;
                    if self.tx.skb.len() <= i {
                        self.tx.skb.resize_with(i + 1, || None);
                    }
                    self.tx.skb[i] = Some(SkbMember {
                        net: p.net,
                        counters: p.counters,
                        capture: None,
                    });
                    self.tx.set_home(p.id, Some(Home::Skb { trunk: p.trunk }));
                    if let Some(n) = self.nets.get_mut(&p.net) {
                        n.members.push(p.id);
                    }
                }
                Control::AddRemotePort { id, net, worker } => {
                    self.tx.set_home(id, Some(Home::Remote(worker)));
                    if let Some(n) = self.nets.get_mut(&net) {
                        n.members.push(id);
                    }
                }
                Control::RemovePort(id) => self.remove_port(id),
                Control::Capture { port, tap } => {
                    // A captured port's frames all go through the worker, both ways.
                    if tap.is_some() {
                        self.uninstall_port(port);
                    }
                    match self.tx.home(port) {
                        Some(Home::Local(i)) => self.tx.ports[i].capture = tap,
                        Some(Home::Skb { .. }) => {
                            if let Some(Some(m)) = self.tx.skb.get_mut(port as usize) {
                                m.capture = tap;
                            }
                        }
                        _ => {}
                    }
                }
                Control::FdbDump { net, reply } => {
                    let mut entries = self
                        .nets
                        .get(&net)
                        .map(|n| n.fdb.entries(now))
                        .unwrap_or_default();
                    if let (Some(r), Some(n)) = (self.router.as_ref(), self.nets.get(&net)) {
                        r.fill_vteps(n, &mut entries, now);
                    }
                    let _ = reply.send(entries);
                }
                Control::EnableRouter(mut r) => {
                    if let Some(d) = self.dns.as_mut() {
                        d.enable_upstreams(r.uplink_addr(), now);
                        r.dns_port = Some(d.port);
                    }
                    for n in self.nets.values() {
                        r.set_overlay(n.cfg.id, n.cfg.overlay.as_ref());
                    }
                    self.router = Some(r);
                    self.tx.router_at = RouterAt::Local;
                }
                Control::RouteVia(w) => {
                    self.tx.router_at = match w {
                        Some(w) => RouterAt::Remote(w),
                        None => RouterAt::Nowhere,
                    };
                }
                Control::PortMapping {
                    add,
                    mapping,
                    reply,
                } => {
                    let result = match self.router.as_mut() {
                        None => {
                            Err("publishing ports needs an uplink (vswitchd --uplink)".to_string())
                        }
                        Some(r) if add => {
                            r.nat.add_port_mapping(mapping).map_err(|e| e.to_string())
                        }
                        Some(r) => {
                            r.nat.remove_port_mapping(
                                mapping.proto,
                                mapping.host_ip,
                                mapping.host_port,
                            );
                            if let (nat::Proto::Tcp, Some(f)) = (mapping.proto, r.fast_nat.as_mut())
                            {
                                f.unpublish(mapping.host_port);
                            }
                            Ok(())
                        }
                    };
                    let _ = reply.send(result);
                }
                Control::RouterDump(reply) => {
                    let dump = self
                        .router
                        .as_ref()
                        .map(|r| (r.stats(), r.nat.sessions(now)));
                    let _ = reply.send(dump);
                }
                Control::Barrier(reply) => {
                    let _ = reply.send(());
                }
                Control::AddVlanMember {
                    trunk,
                    member,
                    vid,
                    net,
                } => {
                    if let Some(Home::Local(i)) = self.tx.home(trunk) {
                        self.tx.ports[i].vlans.push(VlanMember {
                            vid,
                            id: member,
                            net,
                            rx: Burst::new(),
                        });
                        self.tx.set_home(member, Some(Home::Vlan { port: i, vid }));
                    }
                    if let Some(n) = self.nets.get_mut(&net) {
                        n.members.push(member);
                    }
                }
                Control::Stop => return Err(()),
            }
        }
    }

    fn add_port(&mut self, p: NewPort) {
        if self.armed {
            watch(&self.epoll, p.port.as_ref(), p.id);
        }
        if let Some(net) = self.nets.get_mut(&p.net) {
            net.members.push(p.id);
        }
        let idx = self.tx.ports.len();
        self.tx.set_home(p.id, Some(Home::Local(idx)));
        self.tx.ports.push(OwnedPort {
            id: p.id,
            net: p.net,
            port: p.port,
            tx: Burst::new(),
            counters: p.counters,
            faulted: false,
            capture: None,
            fast: p.fast,
            vlans: Vec::new(),
        });
    }

    /// Frames from a trunk: by VID to the member network (tag stripped); frames for no
    /// member (wrong VID, or untagged without an untagged network) are dropped. A double
    /// tag stays in the payload of the outer VID's network: it never reaches another.
    fn trunk_burst(
        &mut self,
        i: usize,
        rx: &Burst,
        counters: &PortCounters,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        let mut vlans = std::mem::take(&mut self.tx.ports[i].vlans);
        for frame in rx.iter() {
            let vid = vlan_of(frame);
            match vlans.iter_mut().find(|m| m.vid == vid) {
                Some(m) => {
                    let pushed = match vid {
                        Some(_) => m.rx.slot().map(|slot| {
                            slot[..12].copy_from_slice(&frame[..12]);
                            slot[12..frame.len() - 4].copy_from_slice(&frame[16..]);
                        }),
                        None => {
                            m.rx.slot()
                                .map(|slot| slot[..frame.len()].copy_from_slice(frame))
                        }
                    };
                    if pushed.is_some() {
                        m.rx.commit(if vid.is_some() {
                            frame.len() - 4
                        } else {
                            frame.len()
                        });
                    }
                }
                None => {
                    counters.rx(frame.len());
                    counters.dropped(DropReason::Vlan, 1);
                }
            }
        }
        let multi = self.tx.peers.len() > 1;
        for m in vlans.iter_mut().filter(|m| !m.rx.is_empty()) {
            if let Some(net) = self.nets.get_mut(&m.net) {
                pipeline::switch_burst(
                    net,
                    m.id,
                    &m.rx,
                    counters,
                    &mut self.tx,
                    scratch,
                    now,
                    multi,
                );
            }
            m.rx.clear();
        }
        self.tx.ports[i].vlans = vlans;
    }

    /// Frames from this worker's endpoint trunk: each run of frames for one tc endpoint
    /// (by the tag's TCI) goes untagged through its network's pipeline as a burst from
    /// that endpoint. A frame for no endpoint of this worker is dropped and counted.
    fn skb_trunk_burst(
        &mut self,
        rx: &Burst,
        trunk: &PortCounters,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        let mut run = self.skb_run.take().unwrap_or_default();
        let mut cur: Option<skb_trunk::Tagged> = None;
        for frame in rx.iter() {
            trunk.rx(frame.len());
            let port =
                skb_trunk::tagged_port(frame).filter(|t| self.tx.skb_member(t.port).is_some());
            if port != cur || run.is_full() {
                if let Some(p) = cur {
                    self.skb_run_done(p, &run, scratch, now);
                }
                run.clear();
                cur = None;
            }
            let Some(p) = port else {
                trunk.dropped(DropReason::Vlan, 1);
                continue;
            };
            cur = Some(p);
            if let Some(slot) = run.slot() {
                let n = skb_trunk::untag_into(frame, slot);
                run.commit(n);
            }
        }
        if let Some(p) = cur {
            self.skb_run_done(p, &run, scratch, now);
        }
        run.clear();
        self.skb_run = Some(run);
    }

    /// A run of frames from tc endpoint `from.port`, through its network's pipeline; or
    /// copies of frames the kernel delivered itself, which only the router observes.
    fn skb_run_done(
        &mut self,
        from: skb_trunk::Tagged,
        run: &Burst,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        let id = from.port;
        let Some(Some(m)) = self.tx.skb.get_mut(id as usize) else {
            return;
        };
        if from.observed {
            if let (UPLINK_NET, Some(r)) = (m.net, self.router.as_mut()) {
                for frame in run.iter() {
                    r.observe_from_uplink(frame, now);
                }
            }
            return;
        }
        if let Some(tap) = &m.capture {
            if !tee(tap, run.iter()) {
                m.capture = None;
            }
        }
        let (net_id, counters, install) = (m.net, m.counters.clone(), m.capture.is_none());
        if net_id == UPLINK_NET {
            // The tc uplink's frames: the router's, as from an uplink socket.
            for frame in run.iter() {
                counters.rx(frame.len());
                if let Some(r) = self.router.as_mut() {
                    r.receive_from_uplink(&mut self.nets, frame, &mut self.tx, scratch, now);
                }
            }
            self.dns_replies(scratch, now);
            return;
        }
        let check_moves = !self.installed.is_empty();
        let multi = self.tx.peers.len() > 1;
        if let Some(net) = self.nets.get_mut(&net_id) {
            pipeline::switch_burst(net, id, run, &counters, &mut self.tx, scratch, now, multi);
            if install || check_moves {
                self.sync_sources(id, net_id, install, run, now);
            }
        }
    }

    fn remove_port(&mut self, id: PortId) {
        self.uninstall_port(id);
        if let Some(f) = self.router.as_mut().and_then(|r| r.fast_nat.as_mut()) {
            f.forget_port(id);
        }
        for net in self.nets.values_mut() {
            net.members.retain(|p| *p != id);
            net.fdb.forget_port(id);
        }
        if let Some(Home::Vlan { port, .. }) = self.tx.home(id) {
            self.tx.ports[port].vlans.retain(|m| m.id != id);
        }
        if let Some(m) = self.tx.skb.get_mut(id as usize) {
            *m = None;
        }
        if let Some(Home::Local(i)) = self.tx.home(id) {
            self.tx.flush_port(i);
            let op = self.tx.ports.swap_remove(i);
            if let (false, true, Some(fd)) = (op.faulted, self.armed, fd_of(op.port.as_ref())) {
                let _ = self.epoll.delete(fd);
            }
            self.tx.dirty.retain(|d| *d != i);
            if i < self.tx.ports.len() {
                let moved = self.tx.ports[i].id;
                self.tx.set_home(moved, Some(Home::Local(i)));
                // A moved trunk's members now leave by index i.
                let members: Vec<(PortId, Option<u16>)> = self.tx.ports[i]
                    .vlans
                    .iter()
                    .map(|m| (m.id, m.vid))
                    .collect();
                for (m, vid) in members {
                    self.tx.set_home(m, Some(Home::Vlan { port: i, vid }));
                }
                let last = self.tx.ports.len();
                for d in self.tx.dirty.iter_mut() {
                    if *d == last {
                        *d = i;
                    }
                }
            }
        }
        self.tx.set_home(id, None);
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

    /// After a burst from port `id` of `net`: sources the FDB has on it are installed in
    /// the fast path when the port runs it (`install`), so the kernel forwards their
    /// conversations from now on; a source installed on another of this worker's ports
    /// has moved here, and leaves the fast path (a port off the fast path, or one being
    /// captured, gets its frames through the worker).
    fn sync_sources(&mut self, id: PortId, net: NetId, install: bool, rx: &Burst, now: Instant) {
        let (Some(fp), Some(n)) = (self.setup.fast.as_ref(), self.nets.get(&net)) else {
            return;
        };
        let mut last: Option<Mac> = None;
        let mut flushed = false;
        for frame in rx.iter() {
            let Some(src) = frame.get(6..12) else {
                continue;
            };
            let src: Mac = src.try_into().expect("six bytes");
            if last == Some(src) || src[0] & 1 != 0 {
                continue;
            }
            last = Some(src);
            let here = n.fdb.lookup(&src, now) == Some(id);
            let old = self.installed.get(&(net, src)).copied();
            match old {
                Some(p) if p == id => continue,
                Some(p) if here => {
                    fp.remove(net, src, p);
                    self.installed.remove(&(net, src));
                }
                None if here => {}
                _ => continue,
            }
            if install {
                // What the worker has queued goes out before the kernel takes over, so
                // the kernel's first frames of a conversation do not overtake them.
                if !flushed {
                    self.tx.flush();
                    flushed = true;
                }
                install_mac(&mut self.installed, fp, net, src, id);
            }
        }
    }

    /// Another worker learned `mac` on its `port`: if this worker had it installed on one
    /// of its own ports, that entry is stale.
    fn forget_moved(&mut self, net: NetId, mac: Mac, port: PortId) {
        if let (Some(fp), Some(&p)) = (self.setup.fast.as_ref(), self.installed.get(&(net, mac))) {
            if p != port {
                fp.remove(net, mac, p);
                self.installed.remove(&(net, mac));
            }
        }
    }

    /// Take every entry of port `id` out of the fast path.
    fn uninstall_port(&mut self, id: PortId) {
        let Some(fp) = self.setup.fast.as_ref() else {
            return;
        };
        self.installed.retain(|&(net, mac), port| {
            if *port == id {
                fp.remove(net, mac, id);
            }
            *port != id
        });
    }

    /// Once a second, for every entry this worker installed: one the FDB no longer has on
    /// its port (aged, moved) leaves the fast path; one the kernel forwarded frames from
    /// since the last look (its `seen` mark) is refreshed in the FDB, as the worker never
    /// saw those frames; one that another worker's removal or install raced away is put
    /// back. A syscall or two per entry per second, none per frame.
    fn sync_fast_path(&mut self, now: Instant) {
        let Some(fp) = self.setup.fast.clone() else {
            return;
        };
        let multi = self.tx.peers.len() > 1;
        let (nets, tx) = (&mut self.nets, &mut self.tx);
        self.installed.retain(|&(net, mac), port| {
            let Some(n) = nets
                .get_mut(&net)
                .filter(|n| n.fdb.lookup(&mac, now) == Some(*port))
            else {
                fp.remove(net, mac, *port);
                return false;
            };
            match fp.take_seen(net, mac, *port) {
                Some(true) => {
                    if n.fdb.learn(mac, *port, now) == Learned::Reannounce && multi {
                        tx.learned(net, mac, *port);
                    }
                    true
                }
                Some(false) => true,
                None => fp.install(net, mac, *port).is_ok(),
            }
        });
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

/// Install `mac` of `net` on port `id` in the fast path, and note it in `installed`.
fn install_mac(
    installed: &mut HashMap<(NetId, Mac), PortId, ahash::RandomState>,
    fp: &FastPath,
    net: NetId,
    mac: Mac,
    id: PortId,
) {
    match fp.install(net, mac, id) {
        Ok(()) => {
            installed.insert((net, mac), id);
        }
        // The map is full: this address stays with the worker.
        Err(e) => tracing::debug!(error = %e, "fast path: cannot install a MAC"),
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
