//! The cluster control plane: global overlay networks, cluster-wide IPAM and endpoint
//! distribution on a real etcd cluster (`--cluster-store etcd://...`).
//!
//! The etcd client (`etcd-client`, tonic/tokio) runs in a thread of its own, the
//! *agent* (`agent.rs`): it keeps the connection, this host's lease (renewed every
//! third of its TTL), its node key, and one watch on [`keys::PREFIX`], from which it
//! hands the controller typed [`keys::Change`]s; after a reconnect it re-lists and hands
//! over the difference, so changes missed while away (or compacted away) are not lost.
//! The controller's side of it is [`Cluster`]: blocking calls with a deadline for what
//! needs the store (create/remove a global network, claim or give back an address), and
//! an eventfd that wakes the control loop when changes arrive. With the store
//! unreachable, calls fail at once with an error naming the store; nothing the data
//! plane knows is taken away for it.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use nix::sys::eventfd::{EfdFlags, EventFd};
use serde::{Deserialize, Serialize};

mod agent;
pub mod keys;

pub use keys::{Change, EndpointRecord, NetworkRecord, NodeRecord};

/// How to reach the store and who this host is in it.
#[derive(Clone, Debug)]
pub struct Settings {
    /// As given: `etcd://HOST:PORT[,HOST:PORT...]` (what messages name).
    pub url: String,
    /// `http://HOST:PORT` (or https with TLS) per member.
    pub endpoints: Vec<String>,
    pub tls: Option<Tls>,
    pub node: String,
    /// This host's VTEP as the others reach it (`--advertise`).
    pub vtep: Ipv4Addr,
    /// The lease's time to live, in seconds.
    pub ttl: i64,
    /// How long one call to the store may take.
    pub timeout: Duration,
}

/// `--cluster-store-ca/-cert/-key`, as Docker's kv.cacertfile, kv.certfile, kv.keyfile.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Parse `etcd://HOST:PORT[,HOST:PORT...]` into client URLs.
pub fn parse_url(url: &str, tls: bool) -> Result<Vec<String>, String> {
    let rest = url.strip_prefix("etcd://").ok_or_else(|| {
        format!("invalid --cluster-store {url:?}: expected etcd://HOST:PORT[,HOST:PORT...] (etcd is the store this build supports)")
    })?;
    let scheme = if tls { "https" } else { "http" };
    let mut out = Vec::new();
    for m in rest.split(',').map(str::trim) {
        let ok = m
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok || m.contains('/') {
            return Err(format!(
                "invalid --cluster-store member {m:?} in {url:?}: expected HOST:PORT"
            ));
        }
        out.push(format!("{scheme}://{m}"));
    }
    Ok(out)
}

/// What the controller asks of the store.
#[derive(Clone, Debug)]
pub enum Op {
    /// The global networks and the revision they were read at.
    ListNetworks,
    /// Create `rec`, unless any network was created or removed after `rev`.
    CreateNetwork { rec: NetworkRecord, rev: i64 },
    /// Remove a global network, unless an address of it is held anywhere.
    RemoveNetwork { id: String },
    /// Claim the endpoint's addresses on its network and publish the endpoint.
    Claim(EndpointRecord),
    /// Give the endpoint's addresses back and withdraw it.
    Withdraw(EndpointRecord),
    /// After (re)connecting: publish every local endpoint of a global network again
    /// under the current lease, and remove this host's keys that are not among them.
    Republish(Vec<EndpointRecord>),
    /// The cluster's IPv6 /48, this one if none is set yet (global networks' `--ipv6`
    /// without a subnet take /64s of it, as a host's local networks take its own).
    UlaPrefix(ipnet::Ipv6Net),
}

#[derive(Debug)]
pub enum Reply {
    Done,
    Networks(Vec<NetworkRecord>, i64),
    /// Republished, but these addresses are held by someone else now.
    Conflicts(Vec<(EndpointRecord, String)>),
    Prefix(ipnet::Ipv6Net),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the cluster store {0} is unreachable: {1}")]
    Unreachable(String, String),
    /// The store changed between the read and the write: read again and retry.
    #[error("the cluster store changed meanwhile")]
    Changed,
    /// The address is held by this holder (`node/endpoint`).
    #[error("{0} is held by {1}")]
    Taken(std::net::IpAddr, String),
    /// Addresses of the network are held on these hosts.
    #[error("in use on {0:?}")]
    InUse(Vec<String>),
    #[error("{0}")]
    Failed(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

struct Call {
    op: Op,
    reply: Sender<StoreResult<Reply>>,
    /// The caller stops waiting then: a call still queued is not made after it.
    deadline: std::time::Instant,
}

/// What the agent tells the controller.
#[derive(Debug)]
pub enum Event {
    /// The store's content changed (or, after a reconnect, differs from what was handed
    /// over before) this way.
    Changes(Vec<Change>),
    /// Connected (again): the changes above are complete; publish local endpoints.
    Connected,
}

/// `vswitchctl cluster`: the store's side.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Health {
    pub store: String,
    pub node: String,
    pub vtep: String,
    pub connected: bool,
    /// The store's revision last seen.
    pub revision: i64,
    pub lease: Option<String>,
    pub ttl: i64,
    /// Times the agent (re)connected.
    pub connects: u64,
    pub last_error: Option<String>,
    /// Keys under the prefix that vswitchd did not write, or whose value it cannot read.
    pub foreign_keys: u64,
}

/// The controller's handle on the agent.
pub struct Cluster {
    settings: Settings,
    calls: tokio::sync::mpsc::UnboundedSender<Call>,
    events: Receiver<Event>,
    wake: Arc<EventFd>,
    health: Arc<Mutex<Health>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Cluster {
    /// Start the agent. It connects in the background: the daemon starts with its local
    /// networks whether or not the store answers (and says so in the log).
    pub fn start(settings: Settings) -> std::io::Result<Cluster> {
        let wake = Arc::new(
            EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
                .map_err(std::io::Error::from)?,
        );
        let (calls, rx) = tokio::sync::mpsc::unbounded_channel();
        let (ev_tx, events) = crossbeam_channel::unbounded();
        let health = Arc::new(Mutex::new(Health {
            store: settings.url.clone(),
            node: settings.node.clone(),
            vtep: settings.vtep.to_string(),
            ttl: settings.ttl,
            ..Health::default()
        }));
        let agent = agent::Agent::new(
            settings.clone(),
            agent::Outbox {
                events: ev_tx,
                wake: wake.clone(),
            },
            health.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || agent.run(rx))?;
        Ok(Cluster {
            settings,
            calls,
            events,
            wake,
            health,
            thread: Some(thread),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Ask the store; fails at once when it is unreachable, and after the call's
    /// deadline when it does not answer.
    pub fn call(&self, op: Op) -> StoreResult<Reply> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let unreachable =
            |why: &str| StoreError::Unreachable(self.settings.url.clone(), why.to_string());
        // Time for the call to be made again on another member, twice if need be.
        let mut wait = self.settings.timeout * 3 + Duration::from_secs(1);
        if let Op::Republish(eps) = &op {
            wait += Duration::from_millis(10) * eps.len() as u32;
        }
        self.calls
            .send(Call {
                op,
                reply: tx,
                deadline: std::time::Instant::now() + wait,
            })
            .map_err(|_| unreachable("the cluster agent stopped"))?;
        rx.recv_timeout(wait).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => unreachable("no answer in time"),
            crossbeam_channel::RecvTimeoutError::Disconnected => {
                unreachable("its agent gave the call up")
            }
        })?
    }

    /// The fd that becomes readable when events wait.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Every event waiting, in order.
    pub fn drain(&self) -> Vec<Event> {
        let _ = self.wake.read();
        self.events.try_iter().collect()
    }

    pub fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

impl Drop for Cluster {
    /// A clean stop gives the lease back: the others drop this host's endpoints at once
    /// rather than after its TTL.
    fn drop(&mut self) {
        // Closing the channel ends the agent (after revoking the lease, bounded).
        let (dead, _) = tokio::sync::mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.calls, dead));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_are_checked() {
        assert_eq!(
            parse_url("etcd://10.0.0.1:2379,10.0.0.2:2379", false).unwrap(),
            vec!["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(
            parse_url("etcd://e1:2379", true).unwrap(),
            vec!["https://e1:2379"]
        );
        for bad in [
            "consul://10.0.0.1:8500",
            "etcd://",
            "etcd://10.0.0.1",
            "etcd://10.0.0.1:0",
            "etcd://10.0.0.1:2379/x",
            "10.0.0.1:2379",
        ] {
            assert!(parse_url(bad, false).is_err(), "{bad}");
        }
    }
}
