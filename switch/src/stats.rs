//! Counters: each set has exactly one writer (the worker owning the port, or the worker
//! itself), so the per-frame path does plain relaxed load+store, no locked instruction.
//! Readers sum them on demand.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Why a frame was dropped. Order is the on-the-wire order of `DropReason::ALL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// Source MAC is multicast/broadcast: never valid.
    BadSource,
    /// Destination was learned on the port it arrived on.
    SamePort,
    /// Sent to the gateway but not something the gateway handles (yet: routing).
    NoRoute,
    /// The port's transmit ring was full.
    TxFull,
    /// The queue to the worker owning the destination port was full.
    QueueFull,
    /// The port's backend reported an error.
    PortError,
    /// On a trunk: a VID (or no tag) no network on it uses.
    Vlan,
}

impl DropReason {
    pub const COUNT: usize = 8;
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Runt,
        DropReason::BadSource,
        DropReason::SamePort,
        DropReason::NoRoute,
        DropReason::TxFull,
        DropReason::QueueFull,
        DropReason::PortError,
        DropReason::Vlan,
    ];
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::BadSource => "bad_source_mac",
            DropReason::SamePort => "same_port",
            DropReason::NoRoute => "no_route",
            DropReason::TxFull => "tx_full",
            DropReason::QueueFull => "worker_queue_full",
            DropReason::PortError => "port_error",
            DropReason::Vlan => "vlan_mismatch",
        }
    }
}

/// The worker's stages, in the order a frame meets them (`worker::graph` runs them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Stage {
    /// Receive a burst, copy it to a capture, demultiplex a trunk by its tags.
    PortInput,
    /// Learn the source, look up the destination, flood (`pipeline`).
    L2,
    /// The gateway's own answers: ARP for its address, ICMP echo (`gateway`).
    Gateway,
    /// Routing between networks and the uplink: ARP, NAT (`router`).
    Router,
    /// An overlay's VXLAN tunnel end (`router::overlay`).
    Vtep,
    /// The embedded resolver's queries and its upstream replies (`dns_server`).
    Dns,
    /// Transmit bursts and hand-offs to other workers (`worker::tx`).
    PortOutput,
}

impl Stage {
    pub const COUNT: usize = 7;
    pub const ALL: [Stage; Self::COUNT] = [
        Stage::PortInput,
        Stage::L2,
        Stage::Gateway,
        Stage::Router,
        Stage::Vtep,
        Stage::Dns,
        Stage::PortOutput,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Stage::PortInput => "port_input",
            Stage::L2 => "l2",
            Stage::Gateway => "gateway",
            Stage::Router => "router",
            Stage::Vtep => "vtep",
            Stage::Dns => "dns",
            Stage::PortOutput => "port_output",
        }
    }
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    // Single writer: a relaxed read-modify-write without the lock prefix.
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

#[derive(Default)]
pub struct PortCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    /// Source MACs not learned because the network's table was at its bound.
    pub fdb_full: AtomicU64,
    pub drops: [AtomicU64; DropReason::COUNT],
    /// The backend's own counters, copied by the owning worker once a second.
    pub backend: std::sync::Mutex<Vec<(&'static str, u64)>>,
}

impl PortCounters {
    #[inline]
    pub fn rx(&self, bytes: usize) {
        bump(&self.rx_packets, 1);
        bump(&self.rx_bytes, bytes as u64);
    }
    #[inline]
    pub fn tx(&self, packets: usize, bytes: usize) {
        bump(&self.tx_packets, packets as u64);
        bump(&self.tx_bytes, bytes as u64);
    }
    #[inline]
    pub fn dropped(&self, why: DropReason, n: usize) {
        bump(&self.drops[why as usize], n as u64);
    }
    #[inline]
    pub fn fdb_full(&self) {
        bump(&self.fdb_full, 1);
    }
    pub fn snapshot(&self) -> PortCountersSnapshot {
        PortCountersSnapshot {
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            fast_path_rx_packets: 0,
            fast_path_tx_packets: 0,
            fdb_full: self.fdb_full.load(Relaxed),
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name().to_string(), self.drops[*r as usize].load(Relaxed)))
                .collect(),
            backend_counters: self
                .backend
                .lock()
                .map(|b| b.iter().map(|(k, v)| (k.to_string(), *v)).collect())
                .unwrap_or_default(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct PortCountersSnapshot {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Of rx_packets and tx_packets, those the in-kernel fast path forwarded.
    #[serde(default)]
    pub fast_path_rx_packets: u64,
    #[serde(default)]
    pub fast_path_tx_packets: u64,
    pub fdb_full: u64,
    pub drops: std::collections::BTreeMap<String, u64>,
    pub backend_counters: std::collections::BTreeMap<String, u64>,
}

#[derive(Default)]
pub struct WorkerCounters {
    /// Loop iterations that found work.
    pub busy_polls: AtomicU64,
    /// Loop iterations that found none.
    pub idle_polls: AtomicU64,
    /// Times the worker slept waiting for its ports.
    pub sleeps: AtomicU64,
    pub rx_packets: AtomicU64,
    pub tx_packets: AtomicU64,
    /// Frames handed to another worker's port.
    pub cross_worker: AtomicU64,
    pub drops: AtomicU64,
    /// Frames each stage took in (indexed by `Stage`).
    pub stages: [AtomicU64; Stage::COUNT],
}

impl WorkerCounters {
    #[inline]
    pub fn add(c: &AtomicU64, n: u64) {
        bump(c, n)
    }
    /// `n` frames entered `stage`.
    #[inline]
    pub fn stage(&self, stage: Stage, n: usize) {
        bump(&self.stages[stage as usize], n as u64)
    }
    pub fn snapshot(&self, id: usize, core: Option<usize>, ports: usize) -> WorkerCountersSnapshot {
        WorkerCountersSnapshot {
            id,
            core,
            ports,
            busy_polls: self.busy_polls.load(Relaxed),
            idle_polls: self.idle_polls.load(Relaxed),
            sleeps: self.sleeps.load(Relaxed),
            rx_packets: self.rx_packets.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            cross_worker: self.cross_worker.load(Relaxed),
            drops: self.drops.load(Relaxed),
            stages: StageCountersSnapshot::of(&self.stages),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct WorkerCountersSnapshot {
    pub id: usize,
    pub core: Option<usize>,
    pub ports: usize,
    pub busy_polls: u64,
    pub idle_polls: u64,
    pub sleeps: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub cross_worker: u64,
    pub drops: u64,
    #[serde(default)]
    pub stages: StageCountersSnapshot,
}

/// Frames each stage took in, by name, in the stages' order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StageCountersSnapshot {
    pub port_input: u64,
    pub l2: u64,
    pub gateway: u64,
    pub router: u64,
    pub vtep: u64,
    pub dns: u64,
    pub port_output: u64,
}

impl StageCountersSnapshot {
    fn of(c: &[AtomicU64; Stage::COUNT]) -> Self {
        let get = |s: Stage| c[s as usize].load(Relaxed);
        StageCountersSnapshot {
            port_input: get(Stage::PortInput),
            l2: get(Stage::L2),
            gateway: get(Stage::Gateway),
            router: get(Stage::Router),
            vtep: get(Stage::Vtep),
            dns: get(Stage::Dns),
            port_output: get(Stage::PortOutput),
        }
    }
    /// (name, frames) in the stages' order.
    pub fn rows(&self) -> [(&'static str, u64); Stage::COUNT] {
        Stage::ALL.map(|s| {
            let v = match s {
                Stage::PortInput => self.port_input,
                Stage::L2 => self.l2,
                Stage::Gateway => self.gateway,
                Stage::Router => self.router,
                Stage::Vtep => self.vtep,
                Stage::Dns => self.dns,
                Stage::PortOutput => self.port_output,
            };
            (s.name(), v)
        })
    }
}
