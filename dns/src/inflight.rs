//! Forwarded queries waiting for an upstream: keyed by the fresh message ID we sent
//! upstream (unique across everything in flight, as is the local port it went out
//! from), with their deadlines kept in order so expiry is a walk from the front.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use hickory_proto::op::Query;

use crate::Client;

/// One client query being resolved upstream.
#[derive(Debug)]
pub(crate) struct Pending {
    pub client: Client,
    /// The client's message ID, written back into whatever we answer.
    pub client_id: u16,
    pub question: Query,
    pub rd: bool,
    pub client_edns: bool,
    /// The largest answer the client accepts (its UDP limit, or 65535 over TCP).
    pub limit: usize,
    /// The client's query bytes; the ID is rewritten for each upstream attempt.
    pub query: Vec<u8>,
    /// Index into the configured upstreams of the one being tried.
    pub upstream: usize,
    pub upstream_addr: SocketAddr,
    /// The local port the current attempt went out from (its reply must come to it).
    pub local_port: u16,
    pub deadline: Instant,
    /// When the client's query arrived.
    pub started: Instant,
    /// The last SERVFAIL/REFUSED/non-authoritative NXDOMAIN received: relayed if every
    /// upstream has been tried, as Docker does, rather than a made-up SERVFAIL.
    pub last_reply: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    by_id: HashMap<u16, Pending>,
    deadlines: BTreeSet<(Instant, u16)>,
    /// (client, client's message ID) of everything in flight: a retransmission of a
    /// query already upstream is not forwarded twice.
    by_client: HashMap<(Client, u16), u16>,
    /// The local ports of everything in flight: a new query takes another.
    ports: HashSet<u16>,
}

impl InFlight {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn contains(&self, id: u16) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Whether `client` already has query `client_id` in flight.
    pub fn has_client_query(&self, client: Client, client_id: u16) -> bool {
        self.by_client.contains_key(&(client, client_id))
    }

    /// Whether a query in flight went out from local port `port`.
    pub fn uses_port(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }

    pub fn get(&self, id: u16) -> Option<&Pending> {
        self.by_id.get(&id)
    }

    /// Track `p` under upstream ID `id` (the caller picked an unused ID and port).
    pub fn insert(&mut self, id: u16, p: Pending) {
        // Never there (the ID is unused); if it were, nothing of the old one may stay.
        self.remove(id);
        self.deadlines.insert((p.deadline, id));
        self.by_client.insert((p.client, p.client_id), id);
        self.ports.insert(p.local_port);
        self.by_id.insert(id, p);
    }

    pub fn remove(&mut self, id: u16) -> Option<Pending> {
        let p = self.by_id.remove(&id)?;
        self.deadlines.remove(&(p.deadline, id));
        self.by_client.remove(&(p.client, p.client_id));
        self.ports.remove(&p.local_port);
        Some(p)
    }

    /// Take the next query whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Pending> {
        let &(deadline, id) = self.deadlines.first()?;
        if deadline > now {
            return None;
        }
        self.remove(id)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(d, _)| d)
    }
}
