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

use crate::fdb::FdbEntry;
use crate::port::{Backend, Port};
use crate::stats::{PortCounters, PortCountersSnapshot, WorkerCounters, WorkerCountersSnapshot};
use crate::worker::{Control, NewPort, Peer, Worker, WorkerSetup};
use crate::{NetConfig, NetId, PollMode, PortId};

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            poll: PollMode::Adaptive,
            fdb_max: 8192,
            fdb_age: Duration::from_secs(300),
            pin: true,
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
}

struct PortEntry {
    info: PortInfo,
    counters: Arc<PortCounters>,
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
        let mut workers = Vec::with_capacity(n);
        for (i, (ctl_rx, data_rx, waker)) in receivers.into_iter().enumerate() {
            let counters = Arc::new(WorkerCounters::default());
            // Leave core 0 to the control plane and the kernel when we can.
            let core = (cfg.pin && !cores.is_empty()).then(|| cores[(i + 1) % cores.len()]);
            let setup = WorkerSetup {
                index: i,
                poll: cfg.poll,
                fdb_max: cfg.fdb_max,
                fdb_age: cfg.fdb_age,
                counters: counters.clone(),
            };
            let worker = Worker::new(setup, ctl_rx, data_rx, waker, peers.clone())
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
        })
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
        let id = (0..).find(|i| !self.ports.contains_key(i)).unwrap_or(0);
        let worker = (0..self.workers.len())
            .min_by_key(|w| self.ports.values().filter(|p| p.info.worker == *w).count())
            .unwrap_or(0);
        let counters = Arc::new(PortCounters::default());
        let info = PortInfo {
            id,
            name: port.name().to_string(),
            network: net,
            backend: port.backend(),
            worker,
        };
        for w in 0..self.workers.len() {
            if w != worker {
                self.send(w, Control::AddRemotePort { id, net, worker })?;
            }
        }
        self.send(
            worker,
            Control::AddPort(NewPort {
                id,
                net,
                port,
                counters: counters.clone(),
            }),
        )?;
        self.ports.insert(id, PortEntry { info, counters });
        Ok(id)
    }

    /// Detach a port; the worker closes it once it has flushed what was queued.
    pub fn remove_port(&mut self, id: PortId) -> Result<()> {
        if self.ports.remove(&id).is_some() {
            self.broadcast(|| Control::RemovePort(id))?;
            self.barrier()?;
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
            for e in entries {
                match merged.get(&e.mac) {
                    Some(old) if old.age_secs <= e.age_secs => {}
                    _ => {
                        merged.insert(e.mac, e);
                    }
                }
            }
        }
        Ok(merged.into_values().collect())
    }

    pub fn stats(&self) -> StatsSnapshot {
        let ports = self
            .ports
            .values()
            .map(|p| PortStats {
                info: p.info.clone(),
                counters: p.counters.snapshot(),
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
