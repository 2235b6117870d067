//! The agent: the etcd client's thread. One session at a time (connect, lease, node
//! key, list, watch, keep-alive); when it fails, calls are answered "unreachable" at
//! once while it reconnects with a bounded back-off, and the next session re-lists
//! and hands the controller the difference.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use nix::sys::eventfd::EventFd;
use tokio::sync::mpsc::UnboundedReceiver;

use super::keys::{self, Change};
use super::{Call, EndpointRecord, Event, Health, NodeRecord, Op, Reply};
use super::{Settings, StoreError, StoreResult};

pub(super) struct Outbox {
    pub events: crossbeam_channel::Sender<Event>,
    pub wake: Arc<EventFd>,
}

impl Outbox {
    fn send(&self, ev: Event) {
        if self.events.send(ev).is_ok() {
            let _ = self.wake.write(1);
        }
    }
}

pub(super) struct Agent {
    s: Settings,
    out: Outbox,
    health: Arc<Mutex<Health>>,
    /// What was last handed over: key -> value, for the keys that carry state.
    mirror: BTreeMap<String, Vec<u8>>,
    /// Keys already reported as not ours (logged once each).
    foreign: std::collections::BTreeSet<String>,
    lease: Option<i64>,
    /// A call whose session broke under it (a member died mid-call): tried once more on
    /// the next session, which with the other members up opens at once.
    retry: Vec<Call>,
    /// The member the session is on (an index into the endpoints).
    member: usize,
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The controller went away: stop.
    Closed,
    Failed(String),
}

impl From<etcd_client::Error> for End {
    fn from(e: etcd_client::Error) -> End {
        End::Failed(e.to_string())
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Agent {
    pub fn new(s: Settings, out: Outbox, health: Arc<Mutex<Health>>) -> Agent {
        Agent {
            s,
            out,
            health,
            mirror: BTreeMap::new(),
            foreign: Default::default(),
            lease: None,
            retry: Vec::new(),
            member: 0,
        }
    }

    pub fn run(mut self, calls: UnboundedReceiver<Call>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cluster agent: cannot start its runtime");
                return;
            }
        };
        rt.block_on(self.main(calls));
    }

    fn set_health(&self, f: impl FnOnce(&mut Health)) {
        if let Ok(mut h) = self.health.lock() {
            f(&mut h);
        }
    }

    fn last_error(&self) -> String {
        self.health
            .lock()
            .ok()
            .and_then(|h| h.last_error.clone())
            .unwrap_or_else(|| "not connected yet".into())
    }

    async fn main(&mut self, mut calls: UnboundedReceiver<Call>) {
        let mut backoff = BACKOFF_MIN;
        let mut warned = false;
        // Opens that failed since the last session. Right after a session broke (most
        // likely one member went and the others answer), calls wait for the next
        // session; once opening has failed twice in a row the store is down, and every
        // call is refused at once.
        let mut failed_opens = 0u32;
        let mut held: Vec<Call> = Vec::new();
        loop {
            let why = self.last_error();
            let url = self.s.url.clone();
            let hold = failed_opens < 2;
            let limit = self.s.timeout * 3;
            let opened = tokio::select! {
                r = tokio::time::timeout(limit, self.open()) => r.unwrap_or_else(|_| Err(End::Failed(format!("no session within {limit:?}")))),
                _ = take_calls(&mut calls, &mut held, hold, &url, &why) => return,
            };
            let end = match opened {
                Ok((client, watch)) => {
                    backoff = BACKOFF_MIN;
                    warned = false;
                    failed_opens = 0;
                    let first = std::mem::take(&mut held);
                    self.serve(client, watch, &mut calls, first).await
                }
                Err(e) => {
                    failed_opens += 1;
                    e
                }
            };
            let why = match end {
                End::Closed => return,
                End::Failed(why) => why,
            };
            held.append(&mut self.retry);
            // The next session starts on the next member.
            self.member = (self.member + 1) % self.s.endpoints.len().max(1);
            let now = std::time::Instant::now();
            let (keep, refuse): (Vec<Call>, Vec<Call>) = held
                .drain(..)
                .partition(|c| failed_opens < 2 && now + BACKOFF_MIN * 2 < c.deadline);
            held = keep;
            for c in refuse {
                let _ = c.reply.send(Err(StoreError::Unreachable(
                    self.s.url.clone(),
                    why.clone(),
                )));
            }
            let was = self.health.lock().map(|h| h.connected).unwrap_or(false);
            self.set_health(|h| {
                h.connected = false;
                h.last_error = Some(why.clone());
            });
            if was || !warned {
                tracing::warn!(store = %self.s.url, error = %why, "cluster store unreachable; the data plane keeps what it knows, global network changes are refused until it is back");
                warned = true;
            }
            if !held.is_empty() {
                backoff = BACKOFF_MIN;
            }
            let hold = failed_opens < 2;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = take_calls(&mut calls, &mut held, hold, &self.s.url, &why) => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn options(&self) -> Result<ConnectOptions, End> {
        let t = self.s.timeout;
        let mut o = ConnectOptions::new()
            .with_connect_timeout(t)
            .with_timeout(t)
            .with_keep_alive(Duration::from_secs(1), t)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some(tls) = &self.s.tls {
            let read = |p: &std::path::PathBuf| {
                std::fs::read(p).map_err(|e| End::Failed(format!("read {}: {e}", p.display())))
            };
            let mut c = TlsOptions::new();
            if let Some(ca) = &tls.ca {
                c = c.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
                c = c.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            o = o.with_tls(c);
        }
        Ok(o)
    }

    /// Connect, keep or take a lease, register the node, list, watch.
    /// A client on one member that answers: the members in turn, from the one after
    /// the last session's (a session stays on one member, as etcd's own clients pin
    /// one; a member that dies ends it, and the next opens on another).
    async fn member(&mut self) -> Result<Client, End> {
        let n = self.s.endpoints.len();
        let mut errors = Vec::new();
        for k in 0..n {
            let i = (self.member + k) % n;
            let ep = &self.s.endpoints[i];
            let tried = async {
                let mut c = Client::connect([ep], Some(self.options()?)).await?;
                // Answers, and is part of a quorum (require_leader).
                c.get(keys::networks_rev(), None).await?;
                Ok::<Client, End>(c)
            };
            match tokio::time::timeout(self.s.timeout, tried).await {
                Ok(Ok(c)) => {
                    self.member = i;
                    return Ok(c);
                }
                Ok(Err(End::Failed(e))) => errors.push(format!("{ep}: {e}")),
                Ok(Err(End::Closed)) => return Err(End::Closed),
                Err(_) => errors.push(format!("{ep}: no answer in {:?}", self.s.timeout)),
            }
        }
        Err(End::Failed(errors.join("; ")))
    }

    async fn open(&mut self) -> Result<(Client, WatchStream), End> {
        let mut c = self.member().await?;
        // The lease of the last session, if it is still alive; else a new one (and
        // everything this host published is published again under it).
        let mut lease = None;
        if let Some(id) = self.lease {
            if let Ok(r) = c.lease_time_to_live(id, None).await {
                if r.ttl() > 0 {
                    lease = Some(id);
                }
            }
        }
        let lease = match lease {
            Some(id) => id,
            None => c.lease_grant(self.s.ttl, None).await?.id(),
        };
        self.lease = Some(lease);
        self.register(&mut c, lease).await?;
        let mut got = c
            .get(keys::PREFIX, Some(GetOptions::new().with_prefix()))
            .await?;
        let rev = got.header().map(|h| h.revision()).unwrap_or(0);
        let watch = c
            .watch(
                keys::PREFIX,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(rev + 1),
                ),
            )
            .await?;
        // Nothing awaited from here on: the mirror and what the controller was told
        // change together, or not at all (an open that fails leaves both as they were).
        let mut fresh = BTreeMap::new();
        for kv in got.take_kvs() {
            let (k, v) = kv.into_key_value();
            let Ok(k) = String::from_utf8(k) else {
                self.foreign_key("(not UTF-8)", "key is not UTF-8");
                continue;
            };
            match keys::put(&k, &v) {
                Ok(Some(_)) => {
                    fresh.insert(k, v);
                }
                Ok(None) => {}
                Err(e) => {
                    self.foreign_key(&k, &e.to_string());
                    // Present but unreadable (another version wrote it, or a hand):
                    // what was read of it before stands; it is no delete.
                    if let Some(old) = self.mirror.get(&k) {
                        fresh.insert(k, old.clone());
                    }
                }
            }
        }
        let changes = diff(&self.mirror, &fresh);
        self.mirror = fresh;
        self.out.send(Event::Changes(changes));
        self.out.send(Event::Connected);
        self.set_health(|h| {
            h.connected = true;
            h.revision = rev;
            h.lease = Some(format!("{lease:x}"));
            h.connects += 1;
            h.last_error = None;
        });
        tracing::info!(store = %self.s.url, node = %self.s.node, lease = %format!("{lease:x}"), revision = rev, "cluster store connected");
        Ok((c, watch))
    }

    fn foreign_key(&mut self, key: &str, why: &str) {
        if self.foreign.insert(key.to_string()) {
            tracing::warn!(key, why, "cluster store: a key under the prefix vswitchd did not write, or cannot read; left alone");
            self.set_health(|h| h.foreign_keys += 1);
        }
    }

    /// `nodes/<name>` under the lease. A name held by another live host (another VTEP
    /// under another lease) is refused: two hosts with one name would take each other's
    /// endpoints for their own.
    async fn register(&self, c: &mut Client, lease: i64) -> Result<(), End> {
        let key = keys::node(&self.s.node);
        let rec = NodeRecord {
            name: self.s.node.clone(),
            vtep: self.s.vtep,
            started: crate::model::now_rfc3339(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        let value = serde_json::to_vec(&rec).map_err(|e| End::Failed(e.to_string()))?;
        let put = TxnOp::put(
            key.clone(),
            value.clone(),
            Some(PutOptions::new().with_lease(lease)),
        );
        let r = c
            .txn(
                Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([put.clone()])
                    .or_else([TxnOp::get(key.clone(), None)]),
            )
            .await?;
        if r.succeeded() {
            return Ok(());
        }
        let held = first_kv(&r.op_responses());
        if let Some((v, held_lease)) = held {
            let theirs: Option<NodeRecord> = serde_json::from_slice(&v).ok();
            if held_lease != lease && theirs.as_ref().is_some_and(|t| t.vtep != self.s.vtep) {
                return Err(End::Failed(format!(
                    "node name {:?} is already registered by VTEP {}: give each host its own --node-name",
                    self.s.node,
                    theirs.map(|t| t.vtep.to_string()).unwrap_or_default()
                )));
            }
        }
        // Ours (an earlier run of this host): take it over under this lease.
        c.put(key, value, Some(PutOptions::new().with_lease(lease)))
            .await?;
        Ok(())
    }

    async fn serve(
        &mut self,
        mut c: Client,
        mut watch: WatchStream,
        calls: &mut UnboundedReceiver<Call>,
        first: Vec<Call>,
    ) -> End {
        let Some(lease) = self.lease else {
            return End::Failed("no lease".into());
        };
        let (keeper, alive) =
            match tokio::time::timeout(self.s.timeout, c.lease_keep_alive(lease)).await {
                Ok(Ok(k)) => k,
                Ok(Err(e)) => {
                    self.retry = first;
                    return e.into();
                }
                Err(_) => {
                    self.retry = first;
                    return End::Failed("lease keep-alive stream: no answer in time".into());
                }
            };
        tracing::debug!(member = %self.s.endpoints[self.member], "cluster session serving");
        // The lease is kept alive by a task of its own, so a long call (a republish of
        // many endpoints) never holds its renewal up.
        let (lost_tx, mut lost) = tokio::sync::oneshot::channel();
        let period = Duration::from_secs((self.s.ttl as u64 / 3).max(1));
        let _renewal = Abort(tokio::spawn(renew(
            keeper,
            alive,
            period,
            Duration::from_secs(self.s.ttl as u64),
            self.s.timeout,
            lost_tx,
        )));
        // Calls that waited for this session first, in order; what a broken session
        // leaves of them waits for the next.
        let mut first = std::collections::VecDeque::from(first);
        while let Some(call) = first.pop_front() {
            if let Some(end) = self.call(&mut c, lease, call).await {
                self.retry.extend(first);
                return end;
            }
        }
        loop {
            tokio::select! {
                call = calls.recv() => {
                    let Some(call) = call else {
                        // A clean stop: give the lease back, so the others drop this
                        // host's endpoints now, not after the TTL.
                        let _ = tokio::time::timeout(self.s.timeout, c.lease_revoke(lease)).await;
                        return End::Closed;
                    };
                    if let Some(end) = self.call(&mut c, lease, call).await {
                        return end;
                    }
                }
                msg = watch.message() => {
                    match msg {
                        Ok(Some(resp)) => {
                            if resp.canceled() {
                                let why = if resp.compact_revision() > 0 {
                                    format!("watch fell behind a compaction (revision {}); listing again", resp.compact_revision())
                                } else {
                                    format!("watch canceled: {}", resp.cancel_reason())
                                };
                                return End::Failed(why);
                            }
                            let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
                            let changes = self.apply(resp.events());
                            self.set_health(|h| h.revision = h.revision.max(rev));
                            if !changes.is_empty() {
                                self.out.send(Event::Changes(changes));
                            }
                        }
                        Ok(None) => return End::Failed("watch stream ended".into()),
                        Err(e) => return e.into(),
                    }
                }
                why = &mut lost => {
                    return match why {
                        Ok(Lost::Expired) => {
                            // A partition longer than the TTL: the next session takes a
                            // new lease and publishes everything again.
                            self.lease = None;
                            End::Failed("this host's lease expired".into())
                        }
                        Ok(Lost::Failed(why)) => End::Failed(why),
                        Err(_) => End::Failed("the lease renewal stopped".into()),
                    };
                }
            }
        }
    }

    /// Make one call and answer it; Some when the session broke under it (the call is
    /// kept for the next session).
    async fn call(&mut self, c: &mut Client, lease: i64, call: Call) -> Option<End> {
        tracing::debug!(op = ?std::mem::discriminant(&call.op), "cluster call");
        // A member whose leader just died can hold a write until its own request
        // timeout (seconds): give up sooner and make the call again on another member
        // while the caller still waits.
        let limit = match &call.op {
            Op::Republish(eps) => self.s.timeout + Duration::from_millis(10) * eps.len() as u32,
            _ => self.s.timeout,
        };
        // A call that could still be running when its caller stops waiting is not
        // started: it must not take effect after the caller was told it failed.
        if std::time::Instant::now() + limit >= call.deadline {
            let _ = call.reply.send(Err(StoreError::Unreachable(
                self.s.url.clone(),
                "no answer in time".into(),
            )));
            return None;
        }
        let r = tokio::time::timeout(limit, self.execute(c, lease, call.op.clone())).await;
        match r.unwrap_or_else(|_| {
            Err(StoreError::Unreachable(
                self.s.url.clone(),
                "no answer in time".into(),
            ))
        }) {
            Err(StoreError::Unreachable(_, why)) => {
                self.retry.push(call);
                Some(End::Failed(why))
            }
            r => {
                let _ = call.reply.send(r);
                None
            }
        }
    }

    fn apply(&mut self, events: &[etcd_client::Event]) -> Vec<Change> {
        let mut out = Vec::new();
        for ev in events {
            let Some(kv) = ev.kv() else { continue };
            let Ok(k) = kv.key_str() else { continue };
            let k = k.to_string();
            match ev.event_type() {
                EventType::Put => match keys::put(&k, kv.value()) {
                    Ok(Some(c)) => {
                        self.mirror.insert(k, kv.value().to_vec());
                        out.push(c);
                    }
                    Ok(None) => {}
                    Err(e) => self.foreign_key(&k, &e.to_string()),
                },
                EventType::Delete => {
                    if self.mirror.remove(&k).is_some() {
                        out.extend(keys::delete(&k));
                    }
                }
            }
        }
        out
    }

    async fn execute(&mut self, c: &mut Client, lease: i64, op: Op) -> StoreResult<Reply> {
        let url = self.s.url.clone();
        let net = |e: etcd_client::Error| StoreError::Unreachable(url.clone(), e.to_string());
        match op {
            Op::ListNetworks => {
                let r = c
                    .get(
                        format!("{}networks/", keys::PREFIX),
                        Some(GetOptions::new().with_prefix()),
                    )
                    .await
                    .map_err(net)?;
                let rev = r.header().map(|h| h.revision()).unwrap_or(0);
                let nets = r
                    .kvs()
                    .iter()
                    .filter_map(|kv| match keys::put(kv.key_str().ok()?, kv.value()) {
                        Ok(Some(Change::NetworkPut(n))) => Some(n),
                        _ => None,
                    })
                    .collect();
                Ok(Reply::Networks(nets, rev))
            }
            Op::CreateNetwork { rec, rev } => {
                let value = value_again(&rec)?;
                let r = c
                    .txn(
                        Txn::new()
                            .when([Compare::mod_revision(
                                keys::networks_rev(),
                                CompareOp::Less,
                                rev + 1,
                            )])
                            .and_then([
                                TxnOp::put(keys::network(&rec.id), value, None),
                                TxnOp::put(keys::networks_rev(), "", None),
                            ]),
                    )
                    .await
                    .map_err(net)?;
                if r.succeeded() {
                    return Ok(Reply::Done);
                }
                // Made already (a first try whose answer was lost with its member)?
                let now = c.get(keys::network(&rec.id), None).await.map_err(net)?;
                match now.kvs().first() {
                    Some(kv) if kv.value() == value_again(&rec)?.as_slice() => Ok(Reply::Done),
                    _ => Err(StoreError::Changed),
                }
            }
            Op::RemoveNetwork { id } => {
                let held = c
                    .get(
                        keys::ipam_prefix(&id),
                        Some(GetOptions::new().with_prefix()),
                    )
                    .await
                    .map_err(net)?;
                if !held.kvs().is_empty() {
                    let mut nodes: Vec<String> = held
                        .kvs()
                        .iter()
                        .filter_map(|kv| kv.value_str().ok())
                        .map(|v| v.split('/').next().unwrap_or(v).to_string())
                        .collect();
                    nodes.sort();
                    nodes.dedup();
                    return Err(StoreError::InUse(nodes));
                }
                let lock = c.get(keys::ipam_rev(&id), None).await.map_err(net)?;
                let present = c.get(keys::network(&id), None).await.map_err(net)?;
                if present.kvs().is_empty() {
                    // Gone already (a first try whose answer was lost, or another host).
                    return Ok(Reply::Done);
                }
                let lock_rev = lock.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0);
                let r = c
                    .txn(
                        Txn::new()
                            .when([
                                Compare::mod_revision(
                                    keys::ipam_rev(&id),
                                    CompareOp::Equal,
                                    lock_rev,
                                ),
                                Compare::version(keys::network(&id), CompareOp::Greater, 0),
                            ])
                            .and_then([
                                TxnOp::delete(keys::network(&id), None),
                                TxnOp::delete(keys::ipam_rev(&id), None),
                                TxnOp::put(keys::networks_rev(), "", None),
                            ]),
                    )
                    .await
                    .map_err(net)?;
                if r.succeeded() {
                    Ok(Reply::Done)
                } else {
                    Err(StoreError::Changed)
                }
            }
            Op::Claim(ep) => self.claim(c, &ep, lease).await,
            Op::Withdraw(ep) => {
                withdraw(c, &ep).await.map_err(net)?;
                Ok(Reply::Done)
            }
            Op::UlaPrefix(mine) => {
                // Put-if-absent: the first host's candidate is everyone's.
                let key = keys::ula_prefix();
                let r = c
                    .txn(
                        Txn::new()
                            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                            .and_then([TxnOp::put(key.clone(), mine.to_string(), None)])
                            .or_else([TxnOp::get(key, None)]),
                    )
                    .await
                    .map_err(net)?;
                if r.succeeded() {
                    return Ok(Reply::Prefix(mine));
                }
                let (v, _) = first_kv(r.op_responses().as_slice()).ok_or(StoreError::Changed)?;
                let text = String::from_utf8_lossy(&v).into_owned();
                text.trim()
                    .parse::<ipnet::Ipv6Net>()
                    .ok()
                    .filter(|p| p.prefix_len() <= 64)
                    .map(Reply::Prefix)
                    .ok_or_else(|| {
                        StoreError::Failed(format!(
                            "the cluster's IPv6 prefix {:?} (key {}) is not an IPv6 CIDR of /64 or shorter",
                            text,
                            keys::ula_prefix()
                        ))
                    })
            }
            Op::Republish(eps) => {
                let mut conflicts = Vec::new();
                for ep in &eps {
                    match self.claim(c, ep, lease).await {
                        Ok(_) => {}
                        Err(StoreError::Taken(ip, by)) => {
                            conflicts.push((ep.clone(), format!("{ip} is held by {by}")))
                        }
                        // The store is away: the whole republish is made again.
                        Err(e @ StoreError::Unreachable(..)) => return Err(e),
                        // This one cannot be (its network is gone): the rest still are.
                        Err(e) => conflicts.push((ep.clone(), e.to_string())),
                    }
                }
                // This host's keys that no local endpoint stands behind any more (a
                // disconnect while the store was away, a crash before a withdraw).
                let mine: Vec<EndpointRecord> = self
                    .mirror
                    .iter()
                    .filter_map(|(k, v)| match keys::put(k, v) {
                        Ok(Some(Change::EndpointPut(e))) if e.node == self.s.node => Some(e),
                        _ => None,
                    })
                    .filter(|e| !eps.iter().any(|x| x.id == e.id && x.network == e.network))
                    .collect();
                for e in mine {
                    tracing::info!(network = %e.network, endpoint = %e.id, "cluster store: withdrawing a stale endpoint of this host");
                    withdraw(c, &e).await.map_err(net)?;
                }
                Ok(Reply::Conflicts(conflicts))
            }
        }
    }

    /// Claim the endpoint's addresses (each free, or already this endpoint's) and
    /// publish the endpoint, all under the lease, in one transaction, only while its
    /// network exists.
    async fn claim(&self, c: &mut Client, ep: &EndpointRecord, lease: i64) -> StoreResult<Reply> {
        let url = self.s.url.clone();
        let net = |e: etcd_client::Error| StoreError::Unreachable(url.clone(), e.to_string());
        let addrs = ep.addresses();
        let ipam: Vec<String> = addrs
            .iter()
            .map(|ip| keys::ipam(&ep.network, *ip))
            .collect();
        let holder = keys::holder(&ep.node, &ep.id);
        let opts = || Some(PutOptions::new().with_lease(lease));
        let mut writes: Vec<TxnOp> = ipam
            .iter()
            .map(|k| TxnOp::put(k.clone(), holder.clone(), opts()))
            .collect();
        writes.push(TxnOp::put(keys::endpoint(ep), to_json(ep)?, opts()));
        writes.push(TxnOp::put(keys::ipam_rev(&ep.network), "", None));
        let exists = Compare::version(keys::network(&ep.network), CompareOp::Greater, 0);
        let mut when = vec![exists];
        when.extend(
            ipam.iter()
                .map(|k| Compare::create_revision(k.clone(), CompareOp::Equal, 0)),
        );
        let mut reads = vec![TxnOp::get(keys::network(&ep.network), None)];
        reads.extend(ipam.iter().map(|k| TxnOp::get(k.clone(), None)));
        let r = c
            .txn(
                Txn::new()
                    .when(when)
                    .and_then(writes.clone())
                    .or_else(reads),
            )
            .await
            .map_err(net)?;
        if r.succeeded() {
            return Ok(Reply::Done);
        }
        let resp = r.op_responses();
        if first_kv(&resp[..1]).is_none() {
            return Err(StoreError::Failed(format!(
                "network {} is no longer in the cluster store",
                ep.network
            )));
        }
        // Each address free or ours; the first held by another is the answer.
        let held: Vec<Option<Vec<u8>>> = (0..addrs.len())
            .map(|i| first_kv(&resp[i + 1..i + 2]).map(|(v, _)| v))
            .collect();
        for (ip, h) in addrs.iter().zip(&held) {
            if let Some(v) = h.as_ref().filter(|v| v.as_slice() != holder.as_bytes()) {
                return Err(StoreError::Taken(
                    *ip,
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
        }
        // Ours already, some or all (republishing, or a claim whose answer was lost
        // with its connection and is tried again): write them again under this lease,
        // while the ones that were ours still are and the free ones still are free.
        let again: Vec<Compare> = ipam
            .iter()
            .zip(&held)
            .map(|(k, h)| match h {
                Some(_) => Compare::value(k.clone(), CompareOp::Equal, holder.clone()),
                None => Compare::create_revision(k.clone(), CompareOp::Equal, 0),
            })
            .collect();
        let r = c
            .txn(Txn::new().when(again).and_then(writes))
            .await
            .map_err(net)?;
        if r.succeeded() {
            Ok(Reply::Done)
        } else {
            Err(StoreError::Changed)
        }
    }
}

/// Take an endpoint out of the store, and those of its addresses it still holds (an
/// address may be another's by now: that one stays).
async fn withdraw(c: &mut Client, ep: &EndpointRecord) -> Result<(), etcd_client::Error> {
    let holder = keys::holder(&ep.node, &ep.id);
    for ip in ep.addresses() {
        let ipam = keys::ipam(&ep.network, ip);
        let held = Compare::value(ipam.clone(), CompareOp::Equal, holder.clone());
        c.txn(
            Txn::new()
                .when([held])
                .and_then([TxnOp::delete(ipam, None)]),
        )
        .await?;
    }
    c.delete(keys::endpoint(ep), None).await.map(|_| ())
}

/// Why the lease's renewal stopped.
enum Lost {
    Expired,
    Failed(String),
}

/// A task aborted when the session that spawned it ends, however it ends.
struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renew the lease every `period`; says why once it cannot.
async fn renew(
    mut keeper: etcd_client::LeaseKeeper,
    mut alive: etcd_client::LeaseKeepAliveStream,
    period: Duration,
    ttl: Duration,
    timeout: Duration,
    lost: tokio::sync::oneshot::Sender<Lost>,
) {
    let mut tick = tokio::time::interval(period);
    let mut last_ack = tokio::time::Instant::now();
    let why = loop {
        tokio::select! {
            _ = tick.tick() => {
                if last_ack.elapsed() > ttl {
                    break Lost::Failed("lease keep-alives unanswered for a TTL".into());
                }
                match tokio::time::timeout(timeout, keeper.keep_alive()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break Lost::Failed(e.to_string()),
                    Err(_) => break Lost::Failed("lease keep-alive: no answer in time".into()),
                }
            }
            ack = alive.message() => match ack {
                Ok(Some(r)) if r.ttl() > 0 => last_ack = tokio::time::Instant::now(),
                Ok(Some(_)) => break Lost::Expired,
                Ok(None) => break Lost::Failed("keep-alive stream ended".into()),
                Err(e) => break Lost::Failed(e.to_string()),
            },
        }
    };
    let _ = lost.send(why);
}

/// A network record's value as written (the same bytes every time, so a retry can
/// recognise its own first try).
fn value_again(rec: &super::NetworkRecord) -> StoreResult<Vec<u8>> {
    to_json(rec)
}

fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Failed(e.to_string()))
}

/// The first key's value and lease in a transaction's get responses.
fn first_kv(resp: &[TxnOpResponse]) -> Option<(Vec<u8>, i64)> {
    resp.iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| (kv.value().to_vec(), kv.lease())),
        _ => None,
    })
}

/// Until a session is up: calls wait for it (`hold`), or are refused at once, naming
/// the store and why. Returns when the controller goes away.
async fn take_calls(
    calls: &mut UnboundedReceiver<Call>,
    held: &mut Vec<Call>,
    hold: bool,
    url: &str,
    why: &str,
) {
    while let Some(call) = calls.recv().await {
        if hold {
            held.push(call);
        } else {
            let _ = call.reply.send(Err(StoreError::Unreachable(
                url.to_string(),
                why.to_string(),
            )));
        }
    }
}

/// The changes that turn `old` into `new` (after a re-list): deletes first, then puts.
pub(super) fn diff(
    old: &BTreeMap<String, Vec<u8>>,
    new: &BTreeMap<String, Vec<u8>>,
) -> Vec<Change> {
    let mut out: Vec<Change> = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .filter_map(|k| keys::delete(k))
        .collect();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            if let Ok(Some(c)) = keys::put(k, v) {
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relist_hands_over_only_the_difference() {
        let node = |n: &str| {
            (
                keys::node(n),
                serde_json::to_vec(&NodeRecord {
                    name: n.into(),
                    vtep: "10.0.0.1".parse().unwrap(),
                    started: "t".into(),
                    version: "v".into(),
                })
                .unwrap(),
            )
        };
        let old: BTreeMap<_, _> = [node("a"), node("b")].into_iter().collect();
        let new: BTreeMap<_, _> = [node("b"), node("c")].into_iter().collect();
        let d = diff(&old, &new);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0], Change::NodeDel("a".into()));
        assert!(matches!(&d[1], Change::NodePut(n) if n.name == "c"));
        assert!(diff(&new, &new).is_empty());
    }
}
