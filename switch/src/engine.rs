//! The engine: starts the workers, assigns ports to them, and is the one door through
//! which the control plane changes or reads the data plane. Every change is a message
//! that workers apply between bursts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{bounded, unbounded};
use serde::Serialize;

use crate::dns_server::{DnsServer, DnsStats};
use crate::fast_nat::FastNat;
use crate::fast_vxlan::FastVxlan;
use crate::fastpath::{self, FastPath, TcLink};
use crate::fdb::FdbEntry;
use crate::port::{Backend, Port};
use crate::router::{Router, RouterStats, UplinkConfig};
use crate::stats::{PortCounters, PortCountersSnapshot, WorkerCounters, WorkerCountersSnapshot};
pub use crate::worker::{CaptureTap, Captured};
use crate::worker::{Control, NewPort, NewSkbPort, Peer, Worker, WorkerSetup, DNS_WORKER};
use crate::{NetConfig, NetId, PollMode, PortId, ENDPOINT_TRUNK_NET, TRUNK_NET, UPLINK_NET};

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            poll: PollMode::Adaptive,
            fdb_max: 8192,
            fdb_age: Duration::from_secs(300),
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
            let waker = Worker::new_waker().context("create worker wake-up eventfd")?;
            peers.push(Peer {
                control: ctl_tx,
                data: data_tx,
                waker: waker.clone(),
            });
            receivers.push((ctl_rx, data_rx, waker));
        }
        let mut dns = Some(Box::new(
            DnsServer::new(cfg.dns_upstreams.clone()).map_err(|e| anyhow!("{e}"))?,
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
                counters: counters.clone(),
                fast: fast.clone(),
            };
            let resolver = if i == DNS_WORKER { dns.take() } else { None };
            let worker = Worker::new(setup, ctl_rx, data_rx, waker, peers.clone(), resolver)
                .context("create worker epoll set")?;
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
                .context("spawn worker thread")?;
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

    /// Put network `net` on the trunk `parent` (a macvlan parent) with 802.1Q `vid`
    /// (None: untagged). The trunk is opened with `open` on first use and shared by
    /// every network on that parent. Returns the network's member port.
    pub fn vlan_attach(
        &mut self,
        parent: &str,
        vid: Option<u16>,
        net: NetId,
        open: impl FnOnce() -> Result<Box<dyn Port>>,
    ) -> Result<PortId> {
        let trunk = match self.trunks.get(parent) {
            Some(t) => *t,
            None => {
                let port = open()?;
                let id = self.free_id();
                let worker = self.least_loaded();
                for w in 0..self.workers.len() {
                    if w != worker {
                        self.send(
                            w,
                            Control::AddRemotePort {
                                id,
                                net: TRUNK_NET,
                                worker,
                            },
                        )?;
                    }
                }
                self.hand_port(worker, id, TRUNK_NET, port, false)?;
                self.trunks.insert(parent.to_string(), id);
                id
            }
        };
        if let Some((m, _)) = self
            .vlan_members
            .iter()
            .find(|(_, (t, v, _))| *t == trunk && *v == vid)
        {
            let what = vid
                .map(|v| format!("{parent}.{v}"))
                .unwrap_or_else(|| parent.to_string());
            return Err(anyhow!(
                "{what} is already used by another network (member port {m})"
            ));
        }
        let member = self.free_id();
        self.vlan_members.insert(member, (trunk, vid, net));
        let owner = self.ports.get(&trunk).map(|p| p.info.worker).unwrap_or(0);
        for w in 0..self.workers.len() {
            if w == owner {
                self.send(
                    w,
                    Control::AddVlanMember {
                        trunk,
                        member,
                        vid,
                        net,
                    },
                )?;
            } else {
                self.send(
                    w,
                    Control::AddRemotePort {
                        id: member,
                        net,
                        worker: owner,
                    },
                )?;
            }
        }
        self.barrier()?;
        Ok(member)
    }

    /// Take a network off its trunk; when it was the trunk's last network the trunk is
    /// closed and its interface name returned (so the caller can restore it).
    pub fn vlan_detach(&mut self, member: PortId) -> Result<Option<String>> {
        let Some((trunk, _, _)) = self.vlan_members.remove(&member) else {
            return Ok(None);
        };
        self.retired.push((member, std::time::Instant::now()));
        self.broadcast(|| Control::RemovePort(member))?;
        self.barrier()?;
        if self.vlan_members.values().any(|(t, _, _)| *t == trunk) {
            return Ok(None);
        }
        let parent = self
            .trunks
            .iter()
            .find(|(_, t)| **t == trunk)
            .map(|(p, _)| p.clone());
        if let Some(p) = &parent {
            self.trunks.remove(p);
        }
        self.remove_port(trunk)?;
        Ok(parent)
    }

    /// The name `fdb` and `stats` show for a trunk member: PARENT.VID (or PARENT).
    pub fn vlan_member_name(&self, member: PortId) -> Option<String> {
        let (trunk, vid, _) = self.vlan_members.get(&member)?;
        let parent = self.ports.get(trunk)?.info.name.clone();
        Some(vid.map(|v| format!("{parent}.{v}")).unwrap_or(parent))
    }

    fn least_loaded(&self) -> usize {
        (0..self.workers.len())
            .min_by_key(|w| self.ports.values().filter(|p| p.info.worker == *w).count())
            .unwrap_or(0)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    fn send(&self, worker: usize, msg: Control) -> Result<()> {
        let w = &self.workers[worker];
        w.peer
            .control
            .send(msg)
            .map_err(|_| anyhow!("data-plane worker {worker} has stopped"))?;
        w.peer.waker.wake();
        Ok(())
    }

    fn broadcast(&self, msg: impl Fn() -> Control) -> Result<()> {
        for i in 0..self.workers.len() {
            self.send(i, msg())?;
        }
        Ok(())
    }

    /// Add or update a network on every worker (its ports are kept).
    pub fn add_network(&self, cfg: NetConfig) -> Result<()> {
        self.broadcast(|| Control::AddNetwork(cfg.clone()))
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
        self.broadcast(|| Control::RemoveNetwork(id))
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
                self.send(w, Control::AddRemotePort { id, net, worker })?;
            }
        }
        self.hand_port(worker, id, net, port, fast)?;
        Ok(id)
    }

    /// Hand `port` to `worker` as port `id` of `net` (running the fast path's program
    /// with `fast`), and record it.
    fn hand_port(
        &mut self,
        worker: usize,
        id: PortId,
        net: NetId,
        port: Box<dyn Port>,
        fast: bool,
    ) -> Result<()> {
        let counters = Arc::new(PortCounters::default());
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
            Control::AddPort(NewPort {
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
        let maps = self
            .maps
            .clone()
            .ok_or_else(|| anyhow!("the tc data path needs BPF (maps and tcx programs)"))?;
        if worker >= self.workers.len() || self.endpoint_trunks[worker].is_some() {
            return Err(anyhow!("worker {worker} has no slot for an endpoint trunk"));
        }
        let ifindex = crate::bpf::ifindex(kernel_end)?;
        let link = maps.attach_trunk(ifindex)?;
        let id = self.free_id();
        self.hand_port(worker, id, ENDPOINT_TRUNK_NET, port, false)?;
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
        let maps = self
            .maps
            .clone()
            .ok_or_else(|| anyhow!("the tc data path needs BPF (maps and tcx programs)"))?;
        // Never 0: an 802.1ad TCI of 0 reads as a priority tag on some receive paths.
        let id = self.free_id_from(1);
        if id >= fastpath::MAX_PORTS {
            return Err(anyhow!(
                "the switch has {} ports, as many as the tc data path has slots for; remove some first",
                fastpath::MAX_PORTS
            ));
        }
        let (worker, trunk, trunk_ifindex) = (0..self.workers.len())
            .filter_map(|w| {
                let t = self.endpoint_trunks[w].as_ref()?;
                Some((w, t.port, t.ifindex))
            })
            .min_by_key(|(w, _, _)| self.ports.values().filter(|p| p.info.worker == *w).count())
            .ok_or_else(|| anyhow!("no worker has an endpoint trunk for the tc data path"))?;
        let ifindex = crate::bpf::ifindex(iface)?;
        let counters = Arc::new(PortCounters::default());
        for w in 0..self.workers.len() {
            if w != worker {
                self.send(w, Control::AddRemotePort { id, net, worker })?;
            }
        }
        self.send(
            worker,
            Control::AddSkbPort(NewSkbPort {
                id,
                net,
                counters: counters.clone(),
                trunk,
            }),
        )?;
        let link = match maps.attach_endpoint(ifindex, net, id, trunk_ifindex) {
            Ok(l) => l,
            Err(e) => {
                self.broadcast(|| Control::RemovePort(id))?;
                return Err(anyhow!("attach {iface} to the tc data path: {e}"));
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
        self.ports.insert(
            id,
            PortEntry {
                info,
                counters,
                tc: Some((ifindex, link)),
            },
        );
        Ok(id)
    }

    /// Detach a port; the worker closes it once it has flushed what was queued.
    pub fn remove_port(&mut self, id: PortId) -> Result<()> {
        if let Some(p) = self.ports.remove(&id) {
            self.retired.push((id, std::time::Instant::now()));
            if let (Some((ifindex, link)), Some(maps)) = (p.tc, &self.maps) {
                // Out of the maps first: the program, still attached, then drops every
                // frame of the host end instead of punting it for a port being removed
                // (and never lets one through to this namespace's stack).
                maps.detach_endpoint(ifindex, id);
                drop(link);
            }
            self.broadcast(|| Control::RemovePort(id))?;
            self.barrier()?;
            if let (true, Some(fp)) = (p.info.fast_path, &self.maps) {
                fp.remove_port(id);
            }
        }
        Ok(())
    }

    /// Wait until every worker has applied all messages sent so far.
    pub fn barrier(&self) -> Result<()> {
        let (tx, rx) = bounded(self.workers.len());
        self.broadcast(|| Control::Barrier(tx.clone()))?;
        for _ in 0..self.workers.len() {
            rx.recv_timeout(REPLY_TIMEOUT)
                .map_err(|_| anyhow!("a data-plane worker did not answer in time"))?;
        }
        Ok(())
    }

    /// Attach the uplink: its worker (the first) owns the router and the NAT; every
    /// other worker hands it the frames its networks route.
    pub fn set_uplink(&mut self, cfg: UplinkConfig, mut port: Box<dyn Port>) -> Result<PortId> {
        if self.ports.values().any(|p| p.info.network == UPLINK_NET) {
            return Err(anyhow!("the uplink is already attached"));
        }
        let id = self.free_id();
        // The resolver's worker too: its upstream queries and replies never cross workers.
        let worker = DNS_WORKER;
        let counters = Arc::new(PortCounters::default());
        let mut router =
            Router::new(id, cfg, counters.clone()).map_err(|e| anyhow!("uplink NAT: {e}"))?;
        // Established routed TCP from tc endpoints is translated in the kernel too.
        if let (Some(maps), true) = (self.fast().cloned(), self.has_tc_path()) {
            match crate::bpf::ifindex(port.name()) {
                Ok(ifindex) => {
                    // Replies too, where the uplink runs XDP (AF_XDP).
                    let inbound = match port.enable_nat_in(&maps) {
                        Ok(()) => true,
                        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => false,
                        Err(e) => {
                            tracing::warn!(error = %e, "replies of kernel-translated sessions go through the router");
                            false
                        }
                    };
                    router.fast_nat = Some(FastNat::new(maps, ifindex, inbound));
                }
                Err(e) => tracing::warn!(error = %e, "no NAT fast path"),
            }
        }
        let info = PortInfo {
            id,
            name: port.name().to_string(),
            network: UPLINK_NET,
            backend: port.backend(),
            worker,
            fast_path: false,
        };
        for w in 1..self.workers.len() {
            self.send(
                w,
                Control::AddRemotePort {
                    id,
                    net: UPLINK_NET,
                    worker,
                },
            )?;
            self.send(w, Control::RouteVia(Some(worker)))?;
        }
        self.send(
            worker,
            Control::AddPort(NewPort {
                id,
                net: UPLINK_NET,
                port,
                counters: counters.clone(),
                fast: false,
            }),
        )?;
        self.send(worker, Control::EnableRouter(Box::new(router)))?;
        self.ports.insert(
            id,
            PortEntry {
                info,
                counters,
                tc: None,
            },
        );
        self.barrier()?;
        Ok(id)
    }

    /// Attach the uplink in the tc data path: no socket, a tcx program at its ingress
    /// ([`fastpath::uplink`]). Its frames reach the router's worker through that worker's
    /// endpoint trunk, and the router's go out of it the same way; with the fast path
    /// on, established routed TCP and overlay unicast stay in the kernel both ways.
    pub fn set_uplink_tc(&mut self, cfg: UplinkConfig, iface: &str) -> Result<PortId> {
        if self.ports.values().any(|p| p.info.network == UPLINK_NET) {
            return Err(anyhow!("the uplink is already attached"));
        }
        let maps = self
            .maps
            .clone()
            .ok_or_else(|| anyhow!("the tc data path needs BPF (maps and tcx programs)"))?;
        let worker = DNS_WORKER;
        let (trunk, trunk_ifindex) = self.endpoint_trunks[worker]
            .as_ref()
            .map(|t| (t.port, t.ifindex))
            .ok_or_else(|| anyhow!("the router's worker has no endpoint trunk"))?;
        let id = self.free_id_from(1);
        if id >= fastpath::MAX_PORTS {
            return Err(anyhow!("no port id left for the uplink"));
        }
        let ifindex = crate::bpf::ifindex(iface)?;
        let tc = fastpath::TcUplink {
            ifindex,
            port: id,
            trunk_ifindex,
            mac: cfg.mac,
            vtep: cfg.vtep_ip.unwrap_or(cfg.ip),
        };
        let counters = Arc::new(PortCounters::default());
        let mut router =
            Router::new(id, cfg, counters.clone()).map_err(|e| anyhow!("uplink NAT: {e}"))?;
        if let Some(fp) = self.fast().cloned() {
            router.fast_nat = Some(FastNat::new(fp.clone(), ifindex, true).opening_published());
            router.fast_vxlan = Some(FastVxlan::new(fp, ifindex, id));
        }
        for w in (0..self.workers.len()).filter(|w| *w != worker) {
            self.send(
                w,
                Control::AddRemotePort {
                    id,
                    net: UPLINK_NET,
                    worker,
                },
            )?;
            self.send(w, Control::RouteVia(Some(worker)))?;
        }
        self.send(
            worker,
            Control::AddSkbPort(NewSkbPort {
                id,
                net: UPLINK_NET,
                counters: counters.clone(),
                trunk,
            }),
        )?;
        self.send(worker, Control::EnableRouter(Box::new(router)))?;
        self.barrier()?;
        let link = maps
            .attach_uplink(&tc)
            .map_err(|e| anyhow!("attach the uplink {iface} to the tc data path: {e}"))?;
        let info = PortInfo {
            id,
            name: iface.to_string(),
            network: UPLINK_NET,
            backend: Backend::Tc,
            worker,
            fast_path: true,
        };
        self.ports.insert(
            id,
            PortEntry {
                info,
                counters,
                tc: Some((ifindex, link)),
            },
        );
        self.tc_uplink = Some(tc);
        Ok(id)
    }

    fn router_worker(&self) -> Option<usize> {
        self.ports
            .values()
            .find(|p| p.info.network == UPLINK_NET)
            .map(|p| p.info.worker)
    }

    /// Publish (or, with `add` false, unpublish) a port on the uplink address.
    pub fn port_mapping(&self, add: bool, mapping: nat::PortMapping) -> Result<()> {
        let w = self
            .router_worker()
            .ok_or_else(|| anyhow!("publishing ports needs an uplink (vswitchd --uplink)"))?;
        let (tx, rx) = bounded(1);
        self.send(
            w,
            Control::PortMapping {
                add,
                mapping,
                reply: tx,
            },
        )?;
        rx.recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| anyhow!("the router's worker did not answer in time"))?
            .map_err(|e| anyhow!(e))
    }

    /// The router's counters and NAT sessions; None without an uplink.
    pub fn router(&self) -> Result<Option<(RouterStats, Vec<nat::SessionRow>)>> {
        let Some(w) = self.router_worker() else {
            return Ok(None);
        };
        let (tx, rx) = bounded(1);
        self.send(w, Control::RouterDump(tx))?;
        rx.recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| anyhow!("the router's worker did not answer in time"))
    }

    /// Install (Some) or forget (None) the names network `net`'s resolver answers.
    pub fn set_dns_names(&self, net: NetId, table: Option<Arc<dns::NameTable>>) -> Result<()> {
        self.send(DNS_WORKER, Control::DnsNames { net, table })
    }

    /// The embedded resolver's counters.
    pub fn dns_stats(&self) -> Result<Option<DnsStats>> {
        let (tx, rx) = bounded(1);
        self.send(DNS_WORKER, Control::DnsDump(tx))?;
        rx.recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| anyhow!("the resolver's worker did not answer in time"))
    }

    /// Copy every frame the port receives or sends into `tap` (None stops). Frames are
    /// copied only while a capture is armed; a full tap loses frames, never slows the port.
    pub fn capture(&self, port: PortId, tap: Option<CaptureTap>) -> Result<()> {
        let worker = self
            .ports
            .get(&port)
            .map(|p| p.info.worker)
            .ok_or_else(|| anyhow!("no port {port}"))?;
        let on = tap.is_some();
        self.send(worker, Control::Capture { port, tap })?;
        // A captured tc uplink punts everything to its worker.
        if let (Some(u), Some(maps)) = (self.tc_uplink.filter(|u| u.port == port), &self.maps) {
            maps.set_uplink_cfg(
                &u,
                if on {
                    fastpath::uplink::CFG_PUNT_ALL
                } else {
                    0
                },
            )?;
        }
        // The NAT fast path steps aside too: the capture sees every routed frame.
        if let Some(r) = self.router_worker() {
            self.send(r, Control::NatExclude { port, on })?;
        }
        self.barrier()
    }

    pub fn ports(&self) -> Vec<PortInfo> {
        self.ports.values().map(|p| p.info.clone()).collect()
    }

    /// The network's forwarding table, merged over the workers' replicas (freshest wins).
    pub fn fdb(&self, net: NetId) -> Result<Vec<FdbEntry>> {
        let (tx, rx) = bounded(self.workers.len());
        self.broadcast(|| Control::FdbDump {
            net,
            reply: tx.clone(),
        })?;
        let mut merged: BTreeMap<[u8; 6], FdbEntry> = BTreeMap::new();
        for _ in 0..self.workers.len() {
            let entries = rx
                .recv_timeout(REPLY_TIMEOUT)
                .map_err(|_| anyhow!("a data-plane worker did not answer in time"))?;
            for mut e in entries {
                match merged.get_mut(&e.mac) {
                    // Only the router's worker knows the VTEP of a remote MAC.
                    Some(old) if old.age_secs <= e.age_secs => old.vtep = old.vtep.or(e.vtep),
                    old => {
                        e.vtep = e.vtep.or(old.and_then(|o| o.vtep));
                        merged.insert(e.mac, e);
                    }
                }
            }
        }
        let mut entries: Vec<FdbEntry> = merged.into_values().collect();
        if let Some(fp) = self.fast() {
            for e in entries.iter_mut() {
                e.fast_path = fp.installed_on(net, e.mac, e.port);
            }
        }
        Ok(entries)
    }

    pub fn stats(&self) -> StatsSnapshot {
        let ports = self
            .ports
            .values()
            .map(|p| {
                let mut counters = p.counters.snapshot();
                if let (true, Some(fp)) = (p.info.fast_path, self.fast()) {
                    if let Ok(k) = fp.counters(p.info.id) {
                        counters.rx_packets += k.rx_packets;
                        counters.rx_bytes += k.rx_bytes;
                        counters.tx_packets += k.tx_packets;
                        counters.tx_bytes += k.tx_bytes;
                        counters.fast_path_rx_packets = k.rx_packets;
                        counters.fast_path_tx_packets = k.tx_packets;
                    }
                }
                PortStats {
                    info: p.info.clone(),
                    counters,
                }
            })
            .collect();
        let workers = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let n = self.ports.values().filter(|p| p.info.worker == i).count();
                w.counters.snapshot(i, w.core, n)
            })
            .collect();
        StatsSnapshot { ports, workers }
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
mod tests {
    //! Two workers, ports on different workers: frames and learned MACs must cross.
    //! The ports are AF_UNIX SOCK_SEQPACKET pairs: real fds the workers poll, with
    //! frame boundaries kept, and no privileges needed.

    use super::*;
    use crate::gateway::Gateway;
    use crate::port::{Burst, Port};
    use std::io;
    use std::net::Ipv4Addr;
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};
    use std::time::Instant;

    use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

    struct PairPort {
        name: String,
        fd: OwnedFd,
    }

    impl Port for PairPort {
        fn name(&self) -> &str {
            &self.name
        }
        fn backend(&self) -> Backend {
            Backend::Tap
        }
        fn recv(&mut self, burst: &mut Burst) -> io::Result<usize> {
            let mut n = 0;
            while let Some(slot) = burst.slot() {
                match recv(self.fd.as_raw_fd(), slot, MsgFlags::MSG_DONTWAIT) {
                    Ok(len) => {
                        burst.commit(len);
                        n += 1;
                    }
                    Err(nix::errno::Errno::EAGAIN) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(n)
        }
        fn send(&mut self, burst: &Burst) -> io::Result<usize> {
            let mut n = 0;
            for f in burst.iter() {
                if send(self.fd.as_raw_fd(), f, MsgFlags::MSG_DONTWAIT).is_err() {
                    break;
                }
                n += 1;
            }
            Ok(n)
        }
        fn fd(&self) -> RawFd {
            self.fd.as_raw_fd()
        }
    }

    /// A port for the engine and the test's end of it.
    fn pair(name: &str) -> (Box<dyn Port>, OwnedFd) {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_NONBLOCK,
        )
        .expect("socketpair");
        (
            Box::new(PairPort {
                name: name.into(),
                fd: a,
            }),
            b,
        )
    }

    fn frame(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend(src);
        f.extend([0x88, 0xb5]);
        f.resize(60, tag);
        f
    }

    /// Read one frame from the test's end, waiting up to 2 s.
    fn read_frame(fd: &OwnedFd) -> Option<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => return Some(buf[..n].to_vec()),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        None
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    #[test]
    fn frames_and_learning_cross_workers() {
        let mut e = Engine::start(EngineConfig {
            workers: 2,
            pin: false,
            ..Default::default()
        })
        .expect("engine");
        let gw = Gateway {
            ip: Ipv4Addr::new(172, 18, 0, 1),
            mac: [2, 0x42, 172, 18, 0, 1],
        };
        e.add_network(NetConfig {
            id: 7,
            gateway: Some(gw),
            ..Default::default()
        })
        .expect("network");
        let (p0, t0) = pair("p0");
        let (p1, t1) = pair("p1");
        let id0 = e.add_port(7, p0).expect("port");
        let id1 = e.add_port(7, p1).expect("port");
        // A bystander: it sees the broadcast and must not see the unicast.
        let (p2, t2) = pair("p2");
        e.add_port(7, p2).expect("port");
        let ports = e.ports();
        assert_ne!(
            ports[0].worker, ports[1].worker,
            "least-loaded placement spreads ports"
        );
        e.barrier().expect("barrier");

        // Broadcast from A on worker X reaches the port on worker Y.
        let bcast = frame([0xff; 6], A, 1);
        send(t0.as_raw_fd(), &bcast, MsgFlags::empty()).expect("send");
        assert_eq!(
            read_frame(&t1).as_deref(),
            Some(&bcast[..]),
            "flooded across workers"
        );
        assert_eq!(
            read_frame(&t2).as_deref(),
            Some(&bcast[..]),
            "flooded to the bystander"
        );
        // B answers A by unicast: the other worker must know A (announced), not flood.
        let reply = frame(A, B, 2);
        send(t1.as_raw_fd(), &reply, MsgFlags::empty()).expect("send");
        assert_eq!(
            read_frame(&t0).as_deref(),
            Some(&reply[..]),
            "unicast across workers"
        );
        assert_eq!(
            read_frame(&t2),
            None,
            "A was known on the other worker: no flood"
        );

        let fdb = e.fdb(7).expect("fdb");
        let learned: Vec<([u8; 6], PortId)> = fdb.iter().map(|x| (x.mac, x.port)).collect();
        assert_eq!(learned, vec![(A, id0), (B, id1)]);
        let s = e.stats();
        assert!(
            s.workers.iter().map(|w| w.cross_worker).sum::<u64>() >= 2,
            "{:?}",
            s.workers
        );
        let p = |id| {
            s.ports
                .iter()
                .find(|p| p.info.id == id)
                .map(|p| p.counters.clone())
                .expect("port stats")
        };
        assert_eq!((p(id0).rx_packets, p(id0).tx_packets), (1, 1));
        assert_eq!((p(id1).rx_packets, p(id1).tx_packets), (1, 1));

        // After removal nothing is sent to the port and its MACs are forgotten.
        e.remove_port(id1).expect("remove");
        assert!(e.fdb(7).expect("fdb").iter().all(|x| x.port != id1));
    }
}
