//! Counters: each set has exactly one writer (the worker owning the port, or the worker
//! itself), so the per-frame path does plain relaxed load+store, no locked instruction.
//! Readers sum them on demand.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// An enum indexing a counter array, with each variant's name as reports show it.
macro_rules! counter_index {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum $name { $($(#[$vm])* $v,)* }

        impl $name {
            pub const COUNT: usize = [$($s),*].len();
            /// Every variant, in the order of the counter array.
            pub const ALL: [$name; Self::COUNT] = [$($name::$v),*];
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$v => $s,)*
                }
            }
        }
    };
}

counter_index! {
    /// Why a frame was dropped.
    pub enum DropReason {
        /// Shorter than an Ethernet header.
        Runt => "runt",
        /// Source MAC is multicast/broadcast: never valid.
        BadSource => "bad_source_mac",
        /// Destination was learned on the port it arrived on.
        SamePort => "same_port",
        /// Sent to the gateway but not something the gateway handles (yet: routing).
        NoRoute => "no_route",
        /// The port's transmit ring was full.
        TxFull => "tx_full",
        /// The queue to the worker owning the destination port was full.
        QueueFull => "worker_queue_full",
        /// The port's backend reported an error.
        PortError => "port_error",
        /// On a trunk: a VID (or no tag) no network on it uses.
        Vlan => "vlan_mismatch",
        /// To another endpoint of a network whose endpoints may not talk to each other
        /// (`enable_icc=false`).
        Icc => "icc_disabled",
        /// From a MAC or IPv4 address the port may not use (port security), or
        /// VLAN-tagged.
        Spoofed => "port_security",
        /// A flood over the port's `--flood-rate` (storm control).
        Storm => "storm",
    }
}

counter_index! {
    /// The worker's stages, in the order a frame meets them (`worker::graph` runs them).
    pub enum Stage {
        /// Receive a burst, copy it to a capture, demultiplex a trunk by its tags.
        PortInput => "port_input",
        /// Learn the source, look up the destination, flood (`pipeline`).
        L2 => "l2",
        /// The gateway's own answers: ARP for its address, ICMP echo (`gateway`).
        Gateway => "gateway",
        /// Routing between networks and the uplink: ARP, NAT (`router`).
        Router => "router",
        /// An overlay's VXLAN tunnel end (`router::overlay`).
        Vtep => "vtep",
        /// The embedded resolver's queries and its upstream replies (`dns_server`).
        Dns => "dns",
        /// Frames sent on this worker's ports (`worker::tx`); frames handed to another
        /// worker count as `cross_worker` here and as port output there.
        PortOutput => "port_output",
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
        let [port_input, l2, gateway, router, vtep, dns, port_output] =
            std::array::from_fn(|i| c[i].load(Relaxed));
        StageCountersSnapshot {
            port_input,
            l2,
            gateway,
            router,
            vtep,
            dns,
            port_output,
        }
    }

    /// (name, frames) in the stages' order.
    pub fn rows(&self) -> [(&'static str, u64); Stage::COUNT] {
        let v = [
            self.port_input,
            self.l2,
            self.gateway,
            self.router,
            self.vtep,
            self.dns,
            self.port_output,
        ];
        std::array::from_fn(|i| (Stage::ALL[i].name(), v[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_snapshot_fields_are_the_stages_in_order() {
        let c: [AtomicU64; Stage::COUNT] = std::array::from_fn(|i| AtomicU64::new(i as u64));
        let snap = StageCountersSnapshot::of(&c);
        let json = serde_json::to_value(&snap).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
        // serde_json's map sorts its keys; the rows keep the stages' order.
        names.sort_unstable();
        assert_eq!(keys, names);
        for (i, (name, v)) in snap.rows().iter().enumerate() {
            assert_eq!((*name, *v), (Stage::ALL[i].name(), i as u64));
            assert_eq!(json[name], i as u64, "{name}");
        }
    }
}
