//! The engine: starts the workers, assigns ports to them, and is the one door through
//! which the control plane changes or reads the data plane. Every change is a message
//! that workers apply between bursts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Receiver};
use serde::Serialize;

pub use crate::capture::{CaptureTap, Captured};
use crate::dns_server::{DnsServer, DnsStats};
use crate::fast_nat::FastNat;
use crate::fast_vxlan::FastVxlan;
use crate::fastpath::{self, FastPath, TcLink};
use crate::fdb::FdbEntry;
use crate::port::{Backend, Port};
use crate::remote::{RemoteEndpoint, RemoteUpdate};
use crate::router::{Router, RouterStats, UplinkConfig};
use crate::stats::{PortCounters, PortCountersSnapshot, WorkerCounters, WorkerCountersSnapshot};
use crate::worker::{
    Control, DnsControl, L2Control, NewPort, NewSkbPort, Peer, PortControl, RouterControl, Worker,
    WorkerSetup, DNS_WORKER,
};
use crate::{NetConfig, NetId, PollMode, PortId, ENDPOINT_TRUNK_NET, TRUNK_NET, UPLINK_NET};

mod error;
mod host;
mod query;
mod uplink;
mod vlan;

pub use error::{EngineError, EngineResult};

/// The engine's calls fail with an [`EngineError`].
type Result<T, E = EngineError> = std::result::Result<T, E>;

/// How long a removed port's id is not handed out again: frames of the old port may
/// still wait in a trunk's rings or a cross-worker queue, and must not be taken for the
/// new port's (which may be on another network).
const ID_QUARANTINE: Duration = Duration::from_secs(2);

/// Depth of each worker's queue of frames from other workers.
const HANDOFF_QUEUE: usize = 4096;
/// How long a control request waits for a worker's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub workers: usize,
    pub poll: PollMode,
    /// Bound on learned MACs per network.
    pub fdb_max: usize,
    pub fdb_age: Duration,
    /// Pin each worker to its own core.
    pub pin: bool,
    /// The cores to pin to, worker i on `cpus[i % len]`; None: core i+1 (wrapping),
    /// leaving core 0 to the control plane and the kernel.
    pub cpus: Option<Vec<usize>>,
    /// Where the embedded DNS forwards names it does not own (reached by the uplink).
    pub dns_upstreams: Vec<std::net::SocketAddr>,
    /// Forward known unicast between sandbox endpoints in the kernel (`fastpath`).
    pub fast_path: bool,
    /// Storm control: floods per second per port (0: no limit).
    pub flood_rate: u32,
    /// Bound on the MACs one port may have learned in a network.
    pub fdb_max_per_port: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            poll: PollMode::Adaptive,
            fdb_max: 8192,
            fdb_age: Duration::from_secs(300),
            flood_rate: crate::storm::DEFAULT_FLOOD_RATE,
            fdb_max_per_port: 8192,
            pin: true,
            cpus: None,
            dns_upstreams: Vec::new(),
            fast_path: true,
        }
    }
}

struct WorkerHandle {
    peer: Peer,
    counters: Arc<WorkerCounters>,
    core: Option<usize>,
    thread: Option<JoinHandle<()>>,
}

/// What the engine knows of a port, for stats and listings.
#[derive(Clone, Debug, Serialize)]
pub struct PortInfo {
    pub id: PortId,
    pub name: String,
    pub network: NetId,
    pub backend: Backend,
    pub worker: usize,
    /// Known unicast between this port and other fast-path ports is forwarded in the
    /// kernel (`fastpath`); its frames count in the port's counters all the same.
    pub fast_path: bool,
}

struct PortEntry {
    info: PortInfo,
    counters: Arc<PortCounters>,
    /// A tc endpoint: its host end's ifindex and the link of its program.
    tc: Option<(u32, TcLink)>,
}

/// A worker's endpoint trunk: the port its worker reads, the kernel end's ifindex, and
/// the trunk program's link there.
struct EndpointTrunk {
    port: PortId,
    ifindex: u32,
    _link: TcLink,
}

#[derive(Clone, Debug, Serialize)]
pub struct PortStats {
    #[serde(flatten)]
    pub info: PortInfo,
    #[serde(flatten)]
    pub counters: PortCountersSnapshot,
}

#[derive(Clone, Debug, Serialize)]
pub struct StatsSnapshot {
    pub ports: Vec<PortStats>,
    pub workers: Vec<WorkerCountersSnapshot>,
}

pub struct Engine {
    cfg: EngineConfig,
    workers: Vec<WorkerHandle>,
    ports: BTreeMap<PortId, PortEntry>,
    /// Trunk ports (macvlan parents) by interface name.
    trunks: BTreeMap<String, PortId>,
    /// Networks' members on trunks: member id -> (trunk, VID, network).
    vlan_members: BTreeMap<PortId, (PortId, Option<u16>, NetId)>,
    /// The fast path's maps and programs (also with `--fast-path off`: the tc data path
    /// punts through them); None where BPF is unavailable.
    maps: Option<Arc<FastPath>>,
    /// Each worker's endpoint trunk, once attached.
    endpoint_trunks: Vec<Option<EndpointTrunk>>,
    /// The uplink in the tc data path, if it is there.
    tc_uplink: Option<fastpath::TcUplink>,
    /// Ids of ports removed lately, and when (see [`ID_QUARANTINE`]).
    retired: Vec<(PortId, std::time::Instant)>,
    /// Ports with port security, as set last ([`Engine::set_port_guard`]).
    guards: BTreeMap<PortId, crate::port_security::PortGuard>,
}

impl Engine {
    pub fn start(cfg: EngineConfig) -> Result<Engine> {
        let n = cfg.workers.max(1);
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let mut receivers = Vec::with_capacity(n);
        let mut peers = Vec::with_capacity(n);
        for _ in 0..n {
            let (ctl_tx, ctl_rx) = unbounded();
            let (data_tx, data_rx) = bounded(HANDOFF_QUEUE);
            let waker = Worker::new_waker()
                .map_err(|e| EngineError::io("create worker wake-up eventfd", e))?;
            peers.push(Peer {
                control: ctl_tx,
                data: data_tx,
                waker: waker.clone(),
            });
            receivers.push((ctl_rx, data_rx, waker));
        }
        let mut dns = Some(Box::new(
            DnsServer::new(cfg.dns_upstreams.clone()).map_err(EngineError::Dns)?,
        ));
        let maps = match FastPath::new() {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                tracing::warn!(error = %e, "no in-kernel fast path or tc data path; sandbox veths get a socket each and every frame goes through the workers");
                None
            }
        };
        // The workers install learned MACs in the kernel only with the fast path on.
        let fast = maps.clone().filter(|_| cfg.fast_path);
        let mut workers = Vec::with_capacity(n);
        for (i, (ctl_rx, data_rx, waker)) in receivers.into_iter().enumerate() {
            let counters = Arc::new(WorkerCounters::default());
            // Leave core 0 to the control plane and the kernel when we can.
            let core = match &cfg.cpus {
                _ if !cfg.pin => None,
                Some(list) if !list.is_empty() => Some(core_affinity::CoreId {
                    id: list[i % list.len()],
                }),
                _ => (!cores.is_empty()).then(|| cores[(i + 1) % cores.len()]),
            };
            let setup = WorkerSetup {
                index: i,
                poll: cfg.poll,
                fdb_max: cfg.fdb_max,
                fdb_age: cfg.fdb_age,
                flood_rate: cfg.flood_rate,
                fdb_max_per_port: cfg.fdb_max_per_port,
                counters: counters.clone(),
                fast: fast.clone(),
            };
            let resolver = if i == DNS_WORKER { dns.take() } else { None };
            let worker = Worker::new(setup, ctl_rx, data_rx, waker, peers.clone(), resolver)
                .map_err(|e| EngineError::io("create worker epoll set", e))?;
            let thread = std::thread::Builder::new()
                .name(format!("vs-worker-{i}"))
                .spawn(move || {
                    if let Some(c) = core {
                        if !core_affinity::set_for_current(c) {
                            tracing::warn!(
                                worker = i,
                                core = c.id,
                                "could not pin worker to its core"
                            );
                        }
                    }
                    worker.run()
                })
                .map_err(|e| EngineError::io("spawn worker thread", e))?;
            workers.push(WorkerHandle {
                peer: peers[i].clone(),
                counters,
                core: core.map(|c| c.id),
                thread: Some(thread),
            });
        }
        tracing::info!(workers = n, poll = ?cfg.poll, "data plane started");
        Ok(Engine {
            cfg,
            workers,
            ports: BTreeMap::new(),
            trunks: BTreeMap::new(),
            vlan_members: BTreeMap::new(),
            maps,
            endpoint_trunks: (0..n).map(|_| None).collect(),
            tc_uplink: None,
            retired: Vec::new(),
            guards: BTreeMap::new(),
        })
    }

    /// The lowest id neither a port nor a trunk member has.
    fn free_id(&mut self) -> PortId {
        self.free_id_from(0)
    }

    /// The lowest id from `first` that no port or trunk member has and that was not
    /// retired within [`ID_QUARANTINE`].
    fn free_id_from(&mut self, first: PortId) -> PortId {
        let now = std::time::Instant::now();
        self.retired
            .retain(|(_, at)| now.duration_since(*at) < ID_QUARANTINE);
        let retired = &self.retired;
        (first..)
            .find(|i| {
                !self.ports.contains_key(i)
                    && !self.vlan_members.contains_key(i)
                    && !retired.iter().any(|(r, _)| r == i)
            })
            .unwrap_or(first)
    }

    fn least_loaded(&self) -> usize {
        (0..self.workers.len())
            .min_by_key(|w| self.ports.values().filter(|p| p.info.worker == *w).count())
            .unwrap_or(0)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    fn send(&self, worker: usize, msg: impl Into<Control>) -> EngineResult<()> {
        let w = &self.workers[worker];
        w.peer
            .control
            .send(msg.into())
            .map_err(|_| EngineError::Stopped(worker))?;
        w.peer.waker.wake();
        Ok(())
    }

    /// A worker's answer on `rx`, or `Timeout` naming `who` after the reply time-out.
    fn reply<T>(rx: &Receiver<T>, who: &'static str) -> EngineResult<T> {
        rx.recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| EngineError::Timeout(who))
    }

    fn broadcast<M: Into<Control>>(&self, msg: impl Fn() -> M) -> Result<()> {
        for i in 0..self.workers.len() {
            self.send(i, msg())?;
        }
        Ok(())
    }

    /// Add or update a network on every worker (its ports are kept).
    pub fn add_network(&self, cfg: NetConfig) -> Result<()> {
        self.broadcast(|| L2Control::AddNetwork(cfg.clone()))
    }

    /// Remote endpoints of overlay network `net` (containers on other hosts, from the
    /// cluster store) came or went ([`RemoteUpdate`]): every worker holds them as static
    /// FDB entries behind the tunnel and answers ARP for their addresses, the router's
    /// VTEP sends their unicast straight to their VTEP, so known traffic never floods.
    /// Applied between bursts, in order with the other calls; ignored for a network
    /// that is no overlay. Endpoints with a multicast or all-zero MAC are left out.
    pub fn update_remote(&self, net: NetId, mut update: RemoteUpdate) -> Result<()> {
        let usable = |e: &RemoteEndpoint| !wire::ethernet::is_group(&e.mac) && e.mac != [0; 6];
        let before = update.upsert.len() + update.remove.len();
        update.upsert.retain(usable);
        update.remove.retain(usable);
        let dropped = before - update.upsert.len() - update.remove.len();
        if dropped > 0 {
            tracing::warn!(
                net,
                dropped,
                "remote endpoints with a multicast or zero MAC left out"
            );
        }
        if update.upsert.is_empty() && update.remove.is_empty() {
            return Ok(());
        }
        // One copy for every worker, however many endpoints.
        let update = Arc::new(update);
        self.broadcast(|| L2Control::Remote {
            net,
            update: update.clone(),
        })
    }

    /// Port security for endpoint `port` of network `net`, in the kernel's fast path
    /// and on every worker: what it may send from (None: anything).
    pub fn set_port_guard(
        &mut self,
        net: NetId,
        port: PortId,
        guard: Option<crate::port_security::PortGuard>,
    ) -> Result<()> {
        if let Some(fp) = &self.maps {
            // Both families' addresses in before the flag, the old ones out after it.
            fp.set_guard(port, guard.as_ref(), self.guards.get(&port))
                .map_err(|e| EngineError::io(format!("port security for port {port}"), e))?;
        }
        match guard {
            Some(g) => self.guards.insert(port, g),
            None => self.guards.remove(&port),
        };
        self.broadcast(|| L2Control::Guard { net, port, guard })
    }

    pub fn remove_network(&mut self, id: NetId) -> Result<()> {
        let ports: Vec<PortId> = self
            .ports
            .values()
            .filter(|p| p.info.network == id)
            .map(|p| p.info.id)
            .collect();
        for p in ports {
            self.remove_port(p)?;
        }
        self.broadcast(|| L2Control::RemoveNetwork(id))
    }

    /// Attach an opened port to a network; the least-loaded worker owns it.
    pub fn add_port(&mut self, net: NetId, port: Box<dyn Port>) -> Result<PortId> {
        self.add_port_with(net, port, false)
    }

    /// `add_port`, and with `fast_path` the port runs the in-kernel fast path if it can
    /// (an AF_XDP port). Only for a veth whose peer takes XDP-redirected frames (GRO on
    /// or an XDP program there): the kernel drops redirected frames a veth cannot take.
    pub fn add_port_with(
        &mut self,
        net: NetId,
        mut port: Box<dyn Port>,
        fast_path: bool,
    ) -> Result<PortId> {
        let id = self.free_id();
        let fast = match (self.fast(), fast_path && id < fastpath::MAX_PORTS) {
            (Some(fp), true) => match port.enable_fast_path(fp, net, id) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => false,
                Err(e) => {
                    tracing::warn!(port = port.name(), error = %e, "fast path not enabled; the worker forwards all of this port's frames");
                    false
                }
            },
            _ => false,
        };
        let worker = (0..self.workers.len())
            .min_by_key(|w| self.ports.values().filter(|p| p.info.worker == *w).count())
            .unwrap_or(0);
        for w in 0..self.workers.len() {
            if w != worker {
                self.send(w, PortControl::AddRemotePort { id, net, worker })?;
            }
        }
        self.hand_port(worker, id, net, port, fast, Arc::default())?;
        Ok(id)
    }

    /// Hand `port` to `worker` as port `id` of `net` (running the fast path's program
    /// with `fast`), counting on `counters`, and record it.
    fn hand_port(
        &mut self,
        worker: usize,
        id: PortId,
        net: NetId,
        port: Box<dyn Port>,
        fast: bool,
        counters: Arc<PortCounters>,
    ) -> Result<()> {
        let info = PortInfo {
            id,
            name: port.name().to_string(),
            network: net,
            backend: port.backend(),
            worker,
            fast_path: fast,
        };
        self.send(
            worker,
            PortControl::AddPort(NewPort {
                id,
                net,
                port,
                counters: counters.clone(),
                fast,
            }),
        )?;
        self.ports.insert(
            id,
            PortEntry {
                info,
                counters,
                tc: None,
            },
        );
        Ok(())
    }

    /// Record a port on the tc data path: `tc` is its host end's ifindex and the link
    /// of its program there.
    fn add_tc_entry(&mut self, info: PortInfo, counters: Arc<PortCounters>, tc: (u32, TcLink)) {
        let entry = PortEntry {
            info,
            counters,
            tc: Some(tc),
        };
        self.ports.insert(entry.info.id, entry);
    }

    /// The fast path's maps when the workers install learned MACs in them.
    fn fast(&self) -> Option<&Arc<FastPath>> {
        self.maps.as_ref().filter(|_| self.cfg.fast_path)
    }

    /// Give worker `worker` its endpoint trunk: `port` is the worker's end of a veth
    /// pair whose other end, `kernel_end`, has no checksum, TSO, GSO or S-VLAN transmit
    /// offload (so what tc endpoints punt reaches the worker segmented, checksummed and
    /// with the tag in the frame). Tc endpoints then can be placed on this worker.
    pub fn add_endpoint_trunk(
        &mut self,
        worker: usize,
        kernel_end: &str,
        port: Box<dyn Port>,
    ) -> Result<PortId> {
        let maps = self.maps.clone().ok_or(EngineError::Unavailable(
            "the tc data path needs BPF (maps and tcx programs)",
        ))?;
        if worker >= self.workers.len() || self.endpoint_trunks[worker].is_some() {
            return Err(EngineError::Exhausted(format!(
                "worker {worker} has no slot for an endpoint trunk"
            )));
        }
        let ifindex = crate::bpf::ifindex(kernel_end)
            .map_err(|e| EngineError::io(format!("look up {kernel_end}"), e))?;
        let link = maps
            .attach_trunk(ifindex)
            .map_err(|e| EngineError::io(format!("attach the endpoint trunk {kernel_end}"), e))?;
        let id = self.free_id();
        self.hand_port(worker, id, ENDPOINT_TRUNK_NET, port, false, Arc::default())?;
        self.endpoint_trunks[worker] = Some(EndpointTrunk {
            port: id,
            ifindex,
            _link: link,
        });
        Ok(id)
    }

    /// Whether sandbox veths can be attached on the tc data path (`add_tc_endpoint`).
    pub fn has_tc_path(&self) -> bool {
        self.endpoint_trunks.iter().any(Option::is_some)
    }

    /// Attach the host end `iface` of a sandbox veth to network `net` on the tc data
    /// path: no socket of its own; a tcx program forwards known unicast in the kernel
    /// (with the fast path on) and punts the rest to the least-loaded worker's trunk.
    pub fn add_tc_endpoint(&mut self, net: NetId, iface: &str) -> Result<PortId> {
        let maps = self.maps.clone().ok_or(EngineError::Unavailable(
            "the tc data path needs BPF (maps and tcx programs)",
        ))?;
        // Never 0: an 802.1ad TCI of 0 reads as a priority tag on some receive paths.
        let id = self.free_id_from(1);
        if id >= fastpath::MAX_PORTS {
            return Err(EngineError::Exhausted(format!(
                "the switch has {} ports, as many as the tc data path has slots for; remove some first",
                fastpath::MAX_PORTS
            )));
        }
        let (worker, trunk, trunk_ifindex) = (0..self.workers.len())
            .filter_map(|w| {
                let t = self.endpoint_trunks[w].as_ref()?;
                Some((w, t.port, t.ifindex))
            })
            .min_by_key(|(w, _, _)| self.ports.values().filter(|p| p.info.worker == *w).count())
            .ok_or(EngineError::Unavailable(
                "no worker has an endpoint trunk for the tc data path",
            ))?;
        let ifindex = crate::bpf::ifindex(iface)
            .map_err(|e| EngineError::io(format!("look up {iface}"), e))?;
        let counters = Arc::new(PortCounters::default());
        for w in 0..self.workers.len() {
            if w != worker {
                self.send(w, PortControl::AddRemotePort { id, net, worker })?;
            }
        }
        self.send(
            worker,
            PortControl::AddSkbPort(NewSkbPort {
                id,
                net,
                counters: counters.clone(),
                trunk,
            }),
        )?;
        let link = match maps.attach_endpoint(ifindex, net, id, trunk_ifindex) {
            Ok(l) => l,
            Err(e) => {
                self.broadcast(|| PortControl::RemovePort(id))?;
                return Err(EngineError::io(
                    format!("attach {iface} to the tc data path"),
                    e,
                ));
            }
        };
        let info = PortInfo {
            id,
            name: iface.to_string(),
            network: net,
            backend: Backend::Tc,
            worker,
            fast_path: self.cfg.fast_path,
        };
        self.add_tc_entry(info, counters, (ifindex, link));
        Ok(id)
    }

    /// Detach a port; the worker closes it once it has flushed what was queued.
    pub fn remove_port(&mut self, id: PortId) -> Result<()> {
        if let Some(p) = self.ports.remove(&id) {
            self.retired.push((id, std::time::Instant::now()));
            if let (Some(g), Some(maps)) = (self.guards.remove(&id), &self.maps) {
                let _ = maps.set_guard(id, None, Some(&g));
            }
            if let (Some((ifindex, link)), Some(maps)) = (p.tc, &self.maps) {
                // Out of the maps first: the program, still attached, then drops every
                // frame of the host end instead of punting it for a port being removed
                // (and never lets one through to this namespace's stack).
                maps.detach_endpoint(ifindex, id);
                drop(link);
            }
            self.broadcast(|| PortControl::RemovePort(id))?;
            self.barrier()?;
            if let (true, Some(fp)) = (p.info.fast_path, &self.maps) {
                fp.remove_port(id);
            }
        }
        Ok(())
    }

    /// Learned MACs are forgotten after `age` from now on, on every network.
    pub fn set_fdb_age(&mut self, age: Duration) -> Result<()> {
        self.broadcast(|| L2Control::FdbAge(age))?;
        self.cfg.fdb_age = age;
        self.barrier()
    }

    /// New idle timeouts for the router's UDP and established TCP NAT sessions.
    pub fn set_nat_timeouts(&self, udp: Duration, tcp: Duration) -> Result<()> {
        self.broadcast(|| RouterControl::NatTimeouts { udp, tcp })?;
        self.barrier()
    }

    /// Wait until every worker has applied all messages sent so far.
    pub fn barrier(&self) -> Result<()> {
        let (tx, rx) = bounded(self.workers.len());
        self.broadcast(|| Control::Barrier(tx.clone()))?;
        for _ in 0..self.workers.len() {
            Self::reply(&rx, "a data-plane worker")?;
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for w in &self.workers {
            let _ = w.peer.control.send(Control::Stop);
            w.peer.waker.wake();
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests;
