//! The resolver a worker owns: answers names its networks own from their tables, forwards
//! everything else (but an internal network's) to the upstream servers as a state
//! machine the caller drives (it owns the sockets; we only see bytes, addresses, ports
//! and `now`).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, RData, Record as RR, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::counters::Counters;
use crate::inflight::{InFlight, Pending};
use crate::reply::{self, CLASSIC_UDP_LIMIT, FRAME_UDP_PAYLOAD, TCP_LIMIT, TTL};
use crate::table::NameTable;

/// At most this many upstream servers, like resolv.conf's MAXNS.
pub const MAX_UPSTREAMS: usize = 3;
/// Forwarded queries in flight per resolver unless configured otherwise.
pub const DEFAULT_MAX_INFLIGHT: usize = 1024;
/// How long one upstream gets before the next is tried. Three of them stay under glibc's
/// 5 s retransmit only partly; Docker uses 4 s. Short enough that a dead first server
/// costs little, long enough for a cold recursive lookup.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Upstream message IDs are 16 bits; keep the table sparse enough that picking a free
/// random one stays quick.
const MAX_INFLIGHT_LIMIT: usize = 32768;
/// Local ports forwarded queries are sent from unless configured otherwise: IANA's
/// dynamic range.
pub const DEFAULT_SOURCE_PORTS: RangeInclusive<u16> = 49152..=65535;
/// Random picks of a source port before the free ones are searched in order (only a
/// crowded range gets there).
const PORT_TRIES: usize = 8;

/// How a message reached us (and how the answer must go back).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// One message per datagram; answers are limited to 512 bytes or the EDNS0 size.
    Udp,
    /// RFC 7766 stream; the caller strips and adds the 2-byte length prefix.
    Tcp,
}

/// Who asked: the caller's handle to send an answer back. Opaque to the resolver except
/// `net` (which name table applies) and `transport` (size limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    pub net: u32,
    pub addr: SocketAddr,
    pub transport: Transport,
}

/// What the caller does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `bytes` (a complete DNS message) to `client`.
    Answer { client: Client, bytes: Vec<u8> },
    /// Send `bytes` to upstream server `to` over `transport` (the client's transport) from
    /// local port `local_port` (fresh and random for each query and each upstream tried,
    /// unused by anything else in flight), and later pass its reply, with the local port
    /// it came to, to `handle_upstream_reply`.
    Forward {
        to: SocketAddr,
        transport: Transport,
        bytes: Vec<u8>,
        local_port: u16,
    },
    /// Nothing to send (counted).
    Drop,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} DNS upstreams given; at most {MAX_UPSTREAMS} are used, drop the extra ones")]
    TooManyUpstreams(usize),
    #[error("the DNS upstream timeout must be more than zero")]
    ZeroTimeout,
    #[error("max in-flight DNS queries must be between 1 and {MAX_INFLIGHT_LIMIT}, not {0}")]
    BadInflight(usize),
    #[error("{ports} DNS source ports for {max_inflight} queries in flight: each query needs a port of its own")]
    TooFewSourcePorts { ports: usize, max_inflight: usize },
    #[error("the largest DNS answer over UDP must be at least {CLASSIC_UDP_LIMIT} bytes, not {0}")]
    BadUdpPayload(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolverConfig {
    /// Tried in order for names no network owns; empty means SERVFAIL at once.
    pub upstreams: Vec<SocketAddr>,
    /// How long each upstream gets.
    pub timeout: Duration,
    /// Forwarded queries in flight at once; beyond it queries get SERVFAIL.
    pub max_inflight: usize,
    /// Local ports forwarded queries go out from, one picked at random per query (RFC
    /// 5452: an off-path attacker must guess the port as well as the ID). At least
    /// `max_inflight` of them.
    pub source_ports: RangeInclusive<u16>,
    /// The largest answer sent over UDP whatever the client's EDNS size: what one
    /// datagram in one frame carries (the caller's MTU). At least 512.
    pub max_udp_payload: usize,
    /// Seed for upstream IDs and answer shuffling; `None` seeds from the OS (use that in
    /// production: predictable IDs invite cache poisoning).
    pub seed: Option<u64>,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            upstreams: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            source_ports: DEFAULT_SOURCE_PORTS,
            max_udp_payload: FRAME_UDP_PAYLOAD,
            seed: None,
        }
    }
}

/// One per worker; holds per-network name tables and the forwarded queries in flight.
pub struct Resolver {
    cfg: ResolverConfig,
    networks: HashMap<u32, Arc<NameTable>>,
    /// Networks whose queries never leave: names outside their table get SERVFAIL.
    internal: HashSet<u32>,
    /// Networks whose frames carry less than `max_udp_payload` (a smaller MTU): their
    /// UDP answers stop there.
    udp_caps: HashMap<u32, usize>,
    /// Ports the caller's other traffic takes (published ports), with how many times each
    /// was reserved: never a source port.
    reserved_ports: HashMap<u16, u32>,
    inflight: InFlight,
    rng: StdRng,
    counters: Counters,
}

impl Resolver {
    /// A resolver with no networks yet.
    pub fn new(cfg: ResolverConfig) -> Result<Self, ConfigError> {
        if cfg.upstreams.len() > MAX_UPSTREAMS {
            return Err(ConfigError::TooManyUpstreams(cfg.upstreams.len()));
        }
        if cfg.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if cfg.max_inflight == 0 || cfg.max_inflight > MAX_INFLIGHT_LIMIT {
            return Err(ConfigError::BadInflight(cfg.max_inflight));
        }
        let ports = cfg.source_ports.clone().count();
        if ports < cfg.max_inflight {
            return Err(ConfigError::TooFewSourcePorts {
                ports,
                max_inflight: cfg.max_inflight,
            });
        }
        if cfg.max_udp_payload < CLASSIC_UDP_LIMIT {
            return Err(ConfigError::BadUdpPayload(cfg.max_udp_payload));
        }
        let rng = match cfg.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Ok(Resolver {
            cfg,
            networks: HashMap::new(),
            internal: HashSet::new(),
            udp_caps: HashMap::new(),
            reserved_ports: HashMap::new(),
            inflight: InFlight::default(),
            rng,
            counters: Counters::default(),
        })
    }

    /// Install (or replace) network `net`'s names.
    pub fn set_network(&mut self, net: u32, table: Arc<NameTable>) {
        self.networks.insert(net, table);
    }

    /// Forget network `net`'s names; its clients' names are then forwarded (multi-label)
    /// or NXDOMAIN (single-label). The caller stops sending its queries anyway. Whether
    /// the network is internal is kept: that is `set_internal`'s.
    pub fn remove_network(&mut self, net: u32) {
        self.networks.remove(&net);
    }

    /// Network `net` is internal (`--internal`: no traffic leaves it), or no longer is.
    /// Its clients get their own network's names only: any other name gets SERVFAIL
    /// (what Docker 26+ answers a container with no external network) and nothing is
    /// forwarded, over UDP or TCP.
    pub fn set_internal(&mut self, net: u32, internal: bool) {
        if internal {
            self.internal.insert(net);
        } else {
            self.internal.remove(&net);
        }
    }

    /// The largest UDP answer network `net`'s frames carry (its MTU less the IPv4 and
    /// UDP headers); never above `max_udp_payload` nor below 512. Answers beyond it are
    /// truncated (TC), and forwarded queries ask the upstream for no more.
    pub fn set_udp_cap(&mut self, net: u32, cap: usize) {
        let cap = cap.clamp(CLASSIC_UDP_LIMIT, self.cfg.max_udp_payload);
        if cap == self.cfg.max_udp_payload {
            self.udp_caps.remove(&net);
        } else {
            self.udp_caps.insert(net, cap);
        }
    }

    fn udp_cap(&self, net: u32) -> usize {
        self.udp_caps
            .get(&net)
            .copied()
            .unwrap_or(self.cfg.max_udp_payload)
    }

    /// The caller's other traffic takes local port `port` (a published port the
    /// caller's NAT claims): no query goes out from it until as many `release_port`s.
    pub fn reserve_port(&mut self, port: u16) {
        *self.reserved_ports.entry(port).or_default() += 1;
    }

    /// Undo one `reserve_port(port)`.
    pub fn release_port(&mut self, port: u16) {
        if let Some(n) = self.reserved_ports.get_mut(&port) {
            *n -= 1;
            if *n == 0 {
                self.reserved_ports.remove(&port);
            }
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Forwarded queries waiting for an upstream.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// When `poll_timeouts` next has work: lets an idle worker bound its sleep.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.inflight.next_deadline()
    }

    /// Handle one DNS message from `client` (a UDP payload or one TCP-framed message
    /// without its length prefix).
    pub fn handle_query(&mut self, client: Client, query: &[u8], now: Instant) -> Action {
        self.counters.queries += 1;
        let Some(header) = read_header(query) else {
            self.counters.dropped += 1;
            return Action::Drop;
        };
        if header.metadata.message_type == MessageType::Response {
            // Never answer a response: two resolvers must not ping-pong.
            self.counters.dropped += 1;
            return Action::Drop;
        }
        if header.metadata.op_code != OpCode::Query {
            self.counters.notimp += 1;
            return self.header_error(client, &header, ResponseCode::NotImp);
        }
        let req = match Message::from_vec(query) {
            Ok(m) if m.queries.len() == 1 => m,
            _ => {
                self.counters.formerr += 1;
                return self.header_error(client, &header, ResponseCode::FormErr);
            }
        };
        let ra = self.ra(client.net);
        if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
            // RFC 6891 6.1.3: we only speak EDNS version 0.
            self.counters.formerr += 1;
            let m = reply::response_to(&req, ra, ResponseCode::BADVERS);
            return self.answer(client, &m, CLASSIC_UDP_LIMIT);
        }
        let limit = match client.transport {
            Transport::Udp => reply::udp_limit(&req, self.udp_cap(client.net)),
            Transport::Tcp => TCP_LIMIT,
        };
        let q = &req.queries[0];

        if let Some(answers) = self.local_answers(client.net, q) {
            self.counters.local_answers += 1;
            let mut m = reply::response_to(&req, ra, ResponseCode::NoError);
            m.metadata.authoritative = true;
            m.add_answers(answers);
            return self.answer(client, &m, limit);
        }
        if q.name().iter().count() == 1 {
            // Unqualified names no network owns stay here (Docker does the same):
            // upstream they would only leak container names to the outside.
            self.counters.nxdomain += 1;
            let mut m = reply::response_to(&req, ra, ResponseCode::NXDomain);
            m.metadata.authoritative = true;
            return self.answer(client, &m, limit);
        }
        self.forward(client, &req, query, limit, now)
    }

    /// Handle a datagram or TCP message from upstream server `from` to our local port
    /// `local_port`. A reply matches a query in flight by its ID, the server, the
    /// question and the port the query went out from; replies that match nothing (late,
    /// spoofed, wrong question or port) are dropped and counted.
    pub fn handle_upstream_reply(
        &mut self,
        from: SocketAddr,
        local_port: u16,
        reply: &[u8],
        now: Instant,
    ) -> Action {
        let Some(header) = read_header(reply) else {
            self.counters.unmatched_replies += 1;
            return Action::Drop;
        };
        let id = header.metadata.id;
        let matches = header.metadata.message_type == MessageType::Response
            && self.inflight.get(id).is_some_and(|p| {
                p.upstream_addr == from
                    && p.local_port == local_port
                    && same_question(reply, &p.question)
            });
        if !matches {
            self.counters.unmatched_replies += 1;
            return Action::Drop;
        }
        let Some(mut p) = self.inflight.remove(id) else {
            return Action::Drop;
        };
        self.counters.upstream_replies += 1;
        let rcode = header.metadata.response_code;
        let try_next = rcode == ResponseCode::ServFail
            || rcode == ResponseCode::Refused
            || (rcode == ResponseCode::NXDomain && !header.metadata.authoritative);
        if try_next {
            p.last_reply = Some(reply.to_vec());
            self.next_upstream(p, now)
        } else {
            self.counters
                .upstream_latency
                .observe(now.saturating_duration_since(p.started));
            self.relay(p, reply.to_vec())
        }
    }

    /// Expire forwarded queries whose upstream did not answer in time: each moves to the
    /// next upstream or, after the last, gets its answer (the last error an upstream gave,
    /// else SERVFAIL).
    pub fn poll_timeouts(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(p) = self.inflight.pop_expired(now) {
            self.counters.upstream_timeouts += 1;
            out.push(self.next_upstream(p, now));
        }
        out
    }

    /// Whether recursion is available to network `net`'s clients.
    fn ra(&self, net: u32) -> bool {
        !self.cfg.upstreams.is_empty() && !self.internal.contains(&net)
    }

    /// The records answering `q` from network `net`'s table, or `None` if the network
    /// does not own the name (or address, for PTR). An owned name asked for a type it
    /// lacks gives `Some(empty)`: NOERROR without answers, not NXDOMAIN.
    fn local_answers(&mut self, net: u32, q: &Query) -> Option<Vec<RR>> {
        if q.query_class() != DNSClass::IN {
            return None;
        }
        let table = self.networks.get(&net)?;
        let name = q.name();
        if q.query_type() == RecordType::PTR {
            if let Some(ip) = arpa_address(name) {
                let owner = table.reverse(ip)?;
                return Some(vec![RR::from_rdata(
                    name.clone(),
                    TTL,
                    RData::PTR(PTR(owner.clone())),
                )]);
            }
        }
        let addrs = table.lookup(name)?;
        let want_a = matches!(q.query_type(), RecordType::A | RecordType::ANY);
        let want_aaaa = matches!(q.query_type(), RecordType::AAAA | RecordType::ANY);
        let mut v4 = if want_a { addrs.v4.clone() } else { Vec::new() };
        let mut v6 = if want_aaaa {
            addrs.v6.clone()
        } else {
            Vec::new()
        };
        // Several endpoints sharing an alias: a fresh order per query spreads clients
        // that take the first address.
        v4.shuffle(&mut self.rng);
        v6.shuffle(&mut self.rng);
        let a = v4
            .into_iter()
            .map(|ip| RR::from_rdata(name.clone(), TTL, RData::A(A(ip))));
        let aaaa = v6
            .into_iter()
            .map(|ip| RR::from_rdata(name.clone(), TTL, RData::AAAA(AAAA(ip))));
        Some(a.chain(aaaa).collect())
    }

    fn forward(
        &mut self,
        client: Client,
        req: &Message,
        query: &[u8],
        limit: usize,
        now: Instant,
    ) -> Action {
        if self.internal.contains(&client.net) {
            // CVE-2024-29018: an internal network's names must not reach the outside,
            // nor can its clients use a DNS server as a channel out.
            self.counters.internal_not_forwarded += 1;
            self.counters.servfail += 1;
            let m = reply::response_to(req, false, ResponseCode::ServFail);
            return self.answer(client, &m, limit);
        }
        if self.cfg.upstreams.is_empty() {
            self.counters.servfail += 1;
            let m = reply::response_to(req, false, ResponseCode::ServFail);
            return self.answer(client, &m, limit);
        }
        if self.inflight.has_client_query(client, req.metadata.id) {
            // The client retransmitted while we wait upstream: one answer will come.
            self.counters.duplicates += 1;
            return Action::Drop;
        }
        if self.inflight.len() >= self.cfg.max_inflight {
            self.counters.inflight_full += 1;
            self.counters.servfail += 1;
            let m = reply::response_to(req, true, ResponseCode::ServFail);
            return self.answer(client, &m, limit);
        }
        self.counters.forwarded += 1;
        let mut query = query.to_vec();
        if client.transport == Transport::Udp {
            // The upstream's answer comes back in one frame too, or it never arrives:
            // ask for no more than that (it sets TC beyond, and the client retries
            // over TCP).
            reply::cap_edns_payload(&mut query, self.udp_cap(client.net));
        }
        let p = Pending {
            client,
            client_id: req.metadata.id,
            question: req.queries[0].clone(),
            rd: req.metadata.recursion_desired,
            client_edns: req.edns.is_some(),
            limit,
            query,
            upstream: 0,
            upstream_addr: self.cfg.upstreams[0],
            local_port: 0,
            deadline: now,
            started: now,
            last_reply: None,
        };
        self.send(p, now)
    }

    /// Send `p` to its current upstream under a fresh, unused ID from a fresh, unused
    /// port.
    fn send(&mut self, mut p: Pending, now: Instant) -> Action {
        let Some(port) = self.free_port() else {
            // Every port is in flight or reserved: as if the in-flight table were full.
            self.counters.inflight_full += 1;
            return self.fail(p);
        };
        let id = loop {
            let id: u16 = self.rng.random();
            if !self.inflight.contains(id) {
                break id;
            }
        };
        p.query[..2].copy_from_slice(&id.to_be_bytes());
        p.local_port = port;
        p.deadline = now + self.cfg.timeout;
        let action = Action::Forward {
            to: p.upstream_addr,
            transport: p.client.transport,
            bytes: p.query.clone(),
            local_port: port,
        };
        self.inflight.insert(id, p);
        action
    }

    fn next_upstream(&mut self, mut p: Pending, now: Instant) -> Action {
        if let Some(&next) = self.cfg.upstreams.get(p.upstream + 1) {
            p.upstream += 1;
            p.upstream_addr = next;
            return self.send(p, now);
        }
        match p.last_reply.take() {
            Some(r) => self.relay(p, r),
            None => self.fail(p),
        }
    }

    /// SERVFAIL for `p`, made here.
    fn fail(&mut self, p: Pending) -> Action {
        self.counters.servfail += 1;
        let m = reply::response_from_parts(
            p.client_id,
            &p.question,
            p.rd,
            p.client_edns,
            ResponseCode::ServFail,
        );
        self.answer(p.client, &m, p.limit)
    }

    /// A random source port that no query in flight uses and the caller has not
    /// reserved; `None` only when there is none at all.
    fn free_port(&mut self) -> Option<u16> {
        let (lo, hi) = (*self.cfg.source_ports.start(), *self.cfg.source_ports.end());
        let (inflight, reserved) = (&self.inflight, &self.reserved_ports);
        let free = |p: u16| !inflight.uses_port(p) && !reserved.contains_key(&p);
        for _ in 0..PORT_TRIES {
            let p = self.rng.random_range(lo..=hi);
            if free(p) {
                return Some(p);
            }
        }
        // A crowded range: the first free port from a random point on.
        let n = u32::from(hi - lo) + 1;
        let start = self.rng.random_range(0..n);
        (0..n)
            .map(|i| lo + ((start + i) % n) as u16)
            .find(|&p| free(p))
    }

    /// Pass an upstream's answer to the client with only the ID changed back, unless it
    /// exceeds what the client accepts: then header and question only, TC set.
    fn relay(&mut self, p: Pending, mut bytes: Vec<u8>) -> Action {
        if bytes.len() <= p.limit {
            bytes[..2].copy_from_slice(&p.client_id.to_be_bytes());
            return Action::Answer {
                client: p.client,
                bytes,
            };
        }
        self.counters.truncated += 1;
        let Some(h) = read_header(&bytes) else {
            return Action::Drop;
        };
        let mut m = reply::response_from_parts(
            p.client_id,
            &p.question,
            p.rd,
            p.client_edns,
            h.metadata.response_code,
        );
        m.metadata.authoritative = h.metadata.authoritative;
        m.metadata.recursion_available = h.metadata.recursion_available;
        m.metadata.truncation = true;
        match reply::encode_limited(&m, p.limit) {
            Some((bytes, _)) => Action::Answer {
                client: p.client,
                bytes,
            },
            None => {
                self.counters.dropped += 1;
                Action::Drop
            }
        }
    }

    fn answer(&mut self, client: Client, m: &Message, limit: usize) -> Action {
        match reply::encode_limited(m, limit) {
            Some((bytes, truncated)) => {
                if truncated {
                    self.counters.truncated += 1;
                }
                Action::Answer { client, bytes }
            }
            None => {
                self.counters.dropped += 1;
                Action::Drop
            }
        }
    }

    fn header_error(&mut self, client: Client, h: &Header, rcode: ResponseCode) -> Action {
        match reply::header_only_error(h, rcode) {
            Some(bytes) => Action::Answer { client, bytes },
            None => {
                self.counters.dropped += 1;
                Action::Drop
            }
        }
    }
}

fn read_header(bytes: &[u8]) -> Option<Header> {
    Header::read(&mut BinDecoder::new(bytes)).ok()
}

/// Whether `reply` asks exactly `q` (name compared case-insensitively): a reply for
/// another question under a guessed ID is not an answer.
fn same_question(reply: &[u8], q: &Query) -> bool {
    let mut d = BinDecoder::new(reply);
    let Ok(h) = Header::read(&mut d) else {
        return false;
    };
    if h.counts.queries != 1 {
        return false;
    }
    Query::read(&mut d).is_ok_and(|r| {
        r.name() == q.name()
            && r.query_type() == q.query_type()
            && r.query_class() == q.query_class()
    })
}

/// The full address a reverse name stands for (`4.3.2.1.in-addr.arpa.` or 32 nibbles in
/// `ip6.arpa.`); partial reverse names are not ours to answer.
fn arpa_address(name: &hickory_proto::rr::Name) -> Option<IpAddr> {
    let net = name.parse_arpa_name().ok()?;
    let full = match net.addr() {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    (net.prefix_len() == full).then(|| net.addr())
}
