//! The embedded resolver's data-plane side. Queries to a network's gateway address,
//! port 53, arrive here as frames; the `dns` crate decides; answers leave as frames from
//! the gateway. Names no network owns go upstream from the uplink address through the
//! router, and the upstream's replies come back from the router. One worker owns it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use dns::{Action, Client, NameTable, Resolver, ResolverConfig, Transport};
use serde::Serialize;

use crate::fdb::Mac;
use crate::ipv4::{self, UdpAddrs};
use crate::pipeline::Emit;
use crate::port::MAX_FRAME;
use crate::router::Router;
use crate::stats::PortCounters;
use crate::worker::Network;
use crate::{NetId, PortId};

/// Clients remembered (network, address -> MAC, port) for answers that come later
/// (forwarded queries). Bounded: past it the map starts over.
const MAX_CLIENTS: usize = 4096;
/// Source ports for upstream queries are picked from here; the NAT's SNAT range stays
/// below it (`nat::PortRange`), so no session can take the resolver's port.
pub const UPSTREAM_PORTS: std::ops::RangeInclusive<u16> = 61000..=65535;

/// What `stats` shows of the embedded DNS.
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize)]
pub struct DnsStats {
    pub queries: u64,
    pub local_answers: u64,
    pub nxdomain: u64,
    pub forwarded: u64,
    pub duplicates: u64,
    pub upstream_replies: u64,
    pub unmatched_replies: u64,
    pub upstream_timeouts: u64,
    pub servfail: u64,
    pub inflight_full: u64,
    pub formerr: u64,
    pub notimp: u64,
    pub dropped: u64,
    pub truncated: u64,
    /// Queries in flight upstream right now.
    pub inflight: usize,
    /// Frames to port 53 that were not a well-formed UDP datagram (or TCP segment).
    pub malformed_frames: u64,
    /// Answers for a client whose network or port has gone.
    pub client_gone: u64,
    /// Forwards that could not leave (no uplink, or an IPv6 upstream).
    pub upstream_unreachable: u64,
    /// TCP connections accepted on gateway:53.
    pub tcp_connections: u64,
    /// TCP connections refused because every listener was busy.
    pub tcp_refused: u64,
}

/// Where an answer goes back: the client's MAC and the port it asked through.
#[derive(Clone, Copy)]
struct Seen {
    mac: Mac,
    port: PortId,
}

pub(crate) struct DnsServer {
    resolver: Resolver,
    /// Configured upstreams; used once there is an uplink to reach them through.
    upstreams: Vec<SocketAddr>,
    tables: HashMap<NetId, Arc<NameTable>>,
    /// Source port of upstream queries (random per daemon run).
    pub port: u16,
    clients: HashMap<(NetId, Ipv4Addr), Seen>,
    stats: DnsStats,
    /// Charged for drops of the frames we emit.
    counters: Arc<PortCounters>,
    tcp: crate::dns_tcp::DnsTcp,
    /// TCP queries completed while answering others, handled before returning.
    tcp_backlog: Vec<(Client, Vec<u8>)>,
}

fn resolver(upstreams: Vec<SocketAddr>) -> Result<Resolver, dns::ConfigError> {
    Resolver::new(ResolverConfig {
        upstreams,
        ..Default::default()
    })
}

impl DnsServer {
    /// Refuses a configuration the resolver would refuse (too many upstreams).
    pub fn new(upstreams: Vec<SocketAddr>) -> Result<DnsServer, dns::ConfigError> {
        resolver(upstreams.clone())?;
        let port = rand::random_range(UPSTREAM_PORTS);
        Ok(DnsServer {
            // Without an uplink no upstream is reachable: SERVFAIL at once, not after
            // every upstream's timeout.
            resolver: resolver(Vec::new())?,
            upstreams,
            tables: HashMap::new(),
            port,
            clients: HashMap::new(),
            stats: DnsStats::default(),
            counters: Arc::new(PortCounters::default()),
            tcp: crate::dns_tcp::DnsTcp::default(),
            tcp_backlog: Vec::new(),
        })
    }

    /// The uplink is attached: forward to the configured upstreams from now on.
    pub fn enable_upstreams(&mut self) {
        // Validated in `new`; the old resolver's counters restart (there were no
        // forwards before the uplink).
        let Ok(r) = resolver(self.upstreams.clone()) else {
            return;
        };
        self.resolver = r;
        for (net, t) in &self.tables {
            self.resolver.set_network(*net, t.clone());
        }
    }

    /// Install (Some) or forget (None) a network's names.
    pub fn set_network(&mut self, net: NetId, table: Option<Arc<NameTable>>) {
        match table {
            Some(t) => {
                self.resolver.set_network(net, t.clone());
                self.tables.insert(net, t);
            }
            None => {
                self.resolver.remove_network(net);
                self.tables.remove(&net);
                self.clients.retain(|(n, _), _| *n != net);
                self.tcp.remove_network(net);
            }
        }
    }

    pub fn stats(&self) -> DnsStats {
        let c = self.resolver.counters();
        DnsStats {
            queries: c.queries,
            local_answers: c.local_answers,
            nxdomain: c.nxdomain,
            forwarded: c.forwarded,
            duplicates: c.duplicates,
            upstream_replies: c.upstream_replies,
            unmatched_replies: c.unmatched_replies,
            upstream_timeouts: c.upstream_timeouts,
            servfail: c.servfail,
            inflight_full: c.inflight_full,
            formerr: c.formerr,
            notimp: c.notimp,
            dropped: c.dropped,
            truncated: c.truncated,
            inflight: self.resolver.inflight(),
            ..self.stats
        }
    }

    /// When the resolver (or a TCP connection) next needs `tick`.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let tcp = self.tcp.next_deadline(now);
        match (self.resolver.next_deadline(), tcp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A frame the pipeline classified as DNS for network `net` (UDP or TCP to the
    /// gateway, port 53).
    #[allow(clippy::too_many_arguments)]
    pub fn query_frame(
        &mut self,
        nets: &HashMap<NetId, Network>,
        net: NetId,
        in_port: PortId,
        frame: &[u8],
        out: &mut impl Emit,
        router: Option<&mut Router>,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        let Some(n) = nets.get(&net) else { return };
        if frame.len() > ipv4::ETH_HLEN + 9 && frame[ipv4::ETH_HLEN + 9] == 6 {
            let mut queries = std::mem::take(&mut self.tcp_backlog);
            if !self.tcp.receive(n, in_port, frame, out, &mut queries, now) {
                self.stats.malformed_frames += 1;
            }
            self.tcp_backlog = queries;
            self.tcp_queries(nets, out, router, scratch, now);
            return;
        }
        let Some((src, _dst, payload)) = ipv4::parse_udp(frame) else {
            self.stats.malformed_frames += 1;
            return;
        };
        let mut mac: Mac = [0; 6];
        mac.copy_from_slice(&frame[6..12]);
        if self.clients.len() >= MAX_CLIENTS && !self.clients.contains_key(&(net, *src.ip())) {
            self.clients.clear();
        }
        self.clients
            .insert((net, *src.ip()), Seen { mac, port: in_port });
        let client = Client {
            net,
            addr: SocketAddr::V4(src),
            transport: Transport::Udp,
        };
        let a = self.resolver.handle_query(client, payload, now);
        self.act(a, nets, out, router, scratch, now);
    }

    /// A datagram from `from` to the resolver's port on the uplink address.
    #[allow(clippy::too_many_arguments)]
    pub fn upstream_reply(
        &mut self,
        nets: &HashMap<NetId, Network>,
        from: SocketAddr,
        payload: &[u8],
        out: &mut impl Emit,
        router: Option<&mut Router>,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        let mut router = router;
        let a = self.resolver.handle_upstream_reply(from, payload, now);
        self.act(a, nets, out, router.as_deref_mut(), scratch, now);
        self.tcp_queries(nets, out, router, scratch, now);
    }

    /// Answer (or forward) the TCP queries waiting in `tcp_backlog`; answering one may
    /// complete the next.
    fn tcp_queries(
        &mut self,
        nets: &HashMap<NetId, Network>,
        out: &mut impl Emit,
        mut router: Option<&mut Router>,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        // In arrival order; `act` may append (a pipelined client's next query).
        while !self.tcp_backlog.is_empty() {
            let (client, q) = self.tcp_backlog.remove(0);
            let a = self.resolver.handle_query(client, &q, now);
            self.act(a, nets, out, router.as_deref_mut(), scratch, now);
        }
        self.stats.tcp_connections = self.tcp.accepted;
        self.stats.tcp_refused = self.tcp.refused;
    }

    /// Expired upstream queries move on (next upstream or SERVFAIL); TCP timers run.
    pub fn tick(
        &mut self,
        nets: &HashMap<NetId, Network>,
        out: &mut impl Emit,
        mut router: Option<&mut Router>,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        for a in self.resolver.poll_timeouts(now) {
            self.act(a, nets, out, router.as_deref_mut(), scratch, now);
        }
        let more = self.tcp.poll(out, now);
        self.tcp_backlog.extend(more);
        self.tcp_queries(nets, out, router, scratch, now);
    }

    fn act(
        &mut self,
        action: Action,
        nets: &HashMap<NetId, Network>,
        out: &mut impl Emit,
        router: Option<&mut Router>,
        scratch: &mut [u8; MAX_FRAME],
        now: Instant,
    ) {
        match action {
            Action::Drop => {}
            Action::Answer { client, bytes } => match client.transport {
                Transport::Udp => self.answer_udp(client, &bytes, nets, out, scratch),
                Transport::Tcp => {
                    let mut more = std::mem::take(&mut self.tcp_backlog);
                    if !self.tcp.answer(client, &bytes, out, &mut more, now) {
                        self.stats.client_gone += 1;
                    }
                    self.tcp_backlog = more;
                }
            },
            // TCP queries go upstream over UDP too (documented in ARCHITECTURE.md): the
            // switch has no TCP client on the uplink.
            Action::Forward { to, bytes, .. } => {
                let (Some(r), SocketAddr::V4(to)) = (router, to) else {
                    self.stats.upstream_unreachable += 1;
                    return;
                };
                if !r.send_udp(self.port, to, &bytes, out, scratch, now) {
                    self.stats.upstream_unreachable += 1;
                }
            }
        }
    }

    fn answer_udp(
        &mut self,
        client: Client,
        bytes: &[u8],
        nets: &HashMap<NetId, Network>,
        out: &mut impl Emit,
        scratch: &mut [u8; MAX_FRAME],
    ) {
        let SocketAddr::V4(to) = client.addr else {
            return;
        };
        let gw = nets.get(&client.net).and_then(|n| n.cfg.gateway);
        let seen = self.clients.get(&(client.net, *to.ip())).copied();
        let (Some(gw), Some(seen)) = (gw, seen) else {
            self.stats.client_gone += 1;
            return;
        };
        let addrs = UdpAddrs {
            src_mac: gw.mac,
            dst_mac: seen.mac,
            src: SocketAddrV4::new(gw.ip, 53),
            dst: to,
        };
        match ipv4::udp_frame(&addrs, bytes, scratch) {
            Some(n) => out.emit(seen.port, &scratch[..n], &self.counters),
            None => self.stats.dropped += 1,
        }
    }
}
