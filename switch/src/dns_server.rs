//! The embedded resolver's data-plane side. Queries to a network's gateway address,
//! port 53 (its IPv4 address, and its IPv6 address on a dual-stack network), arrive here
//! as frames; the `dns` crate decides; answers leave as frames from the gateway address
//! they were sent to. Names no network owns go upstream from the uplink address through the
//! router (not an internal network's: those get SERVFAIL here), each query from a port
//! of its own, and the upstream's replies come back from the router. One worker owns it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::time::Instant;

use dns::{Action, Client, NameTable, Resolver, ResolverConfig, Transport};
use serde::Serialize;

use crate::dns_clients::{NetClients, Seen};
use crate::ipv4::{self, UdpAddrs};
use crate::network::Network;
use crate::pipeline::{Cx, Emit, Ingress};
use crate::port::MAX_FRAME;
use crate::stats::PortCounters;
use crate::NetId;
use wire::ip::{IPV4_HLEN, UDP_HLEN};
use wire::ipv6::{Ipv6Frame, IPV6_HLEN, NEXT_HEADER_TCP};

/// Source ports for upstream queries are picked from here, a fresh one per query; the
/// NAT's SNAT range stays below it (`nat::PortRange`), so no session can take one.
pub use crate::DNS_UPSTREAM_PORTS as UPSTREAM_PORTS;
/// The MTU the ports carry (`MAX_FRAME`), where a network states none.
const PORT_MTU: usize = 1500;
/// The largest answer sent over UDP, whatever the client's EDNS size: one datagram in
/// one frame of the 1500-byte MTU the ports carry. Beyond it TC is set (over IPv6,
/// whose header is 20 bytes longer, 20 bytes sooner: `DnsServer::query`).
pub const MAX_UDP_ANSWER: usize = PORT_MTU - IPV4_HLEN - UDP_HLEN;

/// What the resolver asks to have sent out of the uplink. It never reaches into the
/// router: the worker drains [`DnsServer::outbox`] into it after each call.
pub(crate) enum Upstream {
    /// A query over UDP, from local port `from` (the query's own).
    Udp {
        from: u16,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    /// An IP packet of an upstream TCP connection.
    Ip(Vec<u8>),
}

/// What `stats` shows of the embedded DNS: the resolver's counters (flat in the JSON)
/// and the switch's own.
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize)]
pub struct DnsStats {
    #[serde(flatten)]
    pub resolver: dns::Counters,
    /// Queries in flight upstream right now.
    pub inflight: usize,
    /// Frames to port 53 that were not a well-formed UDP datagram (or TCP segment).
    pub malformed_frames: u64,
    /// Answers for a client whose network or port has gone.
    pub client_gone: u64,
    /// Clients forgotten to make room in their network's table (UDP and TCP), so that
    /// others could ask ([`crate::dns_clients`]).
    pub clients_evicted: u64,
    /// Forwards that could not leave (no uplink, or an IPv6 upstream).
    pub upstream_unreachable: u64,
    /// TCP connections accepted on gateway:53.
    pub tcp_connections: u64,
    /// TCP connections refused because every listener was busy.
    pub tcp_refused: u64,
    /// TCP connections reset because their client did not read its answers.
    pub tcp_unread_reset: u64,
    /// Queries that came over TCP, forwarded to an upstream over TCP.
    pub tcp_forwarded: u64,
}

pub(crate) struct DnsServer {
    resolver: Resolver,
    /// Configured upstreams; used once there is an uplink to reach them through.
    upstreams: Vec<SocketAddr>,
    tables: HashMap<NetId, Arc<NameTable>>,
    /// Ports published on the uplink (the NAT's, never a query's source port), once per
    /// mapping.
    reserved: Vec<u16>,
    /// Where answers go back, per network ([`crate::dns_clients`]).
    clients: HashMap<NetId, NetClients>,
    stats: DnsStats,
    /// Charged for drops of the frames we emit.
    counters: Arc<PortCounters>,
    tcp: crate::dns_tcp::DnsTcp,
    /// TCP queries completed while answering others, handled before returning.
    tcp_backlog: Vec<(Client, Vec<u8>)>,
    /// Connections to upstreams for queries that came over TCP (once there is an uplink).
    upstream_tcp: Option<crate::dns_tcp::UpstreamTcp>,
    /// For the uplink, in order (see [`Upstream`]).
    pub outbox: Vec<Upstream>,
    /// The answers' frames are written here.
    scratch: Box<[u8; MAX_FRAME]>,
}

fn resolver(upstreams: Vec<SocketAddr>) -> Result<Resolver, dns::ConfigError> {
    Resolver::new(ResolverConfig {
        upstreams,
        source_ports: UPSTREAM_PORTS,
        max_udp_payload: MAX_UDP_ANSWER,
        ..Default::default()
    })
}

/// TCP in IPv4 (the resolver's TCP side takes it; anything else is tried as UDP).
fn tcp_frame(frame: &[u8]) -> Option<wire::ip::Ipv4Frame<'_>> {
    wire::ip::Ipv4Frame::new(frame).filter(|f| f.proto() == wire::ip::PROTO_TCP)
}

/// TCP in IPv4 or IPv6: a client's segment for the resolver's TCP side.
fn is_tcp(frame: &[u8]) -> bool {
    tcp_frame(frame).is_some()
        || Ipv6Frame::new(frame).is_some_and(|f| f.next_header() == NEXT_HEADER_TCP)
}

impl DnsServer {
    /// Refuses a configuration the resolver would refuse (too many upstreams).
    pub fn new(upstreams: Vec<SocketAddr>) -> Result<DnsServer, dns::ConfigError> {
        resolver(upstreams.clone())?;
        Ok(DnsServer {
            // Without an uplink no upstream is reachable: SERVFAIL at once, not after
            // every upstream's timeout.
            resolver: resolver(Vec::new())?,
            upstreams,
            tables: HashMap::new(),
            reserved: Vec::new(),
            clients: HashMap::new(),
            stats: DnsStats::default(),
            counters: Arc::new(PortCounters::default()),
            tcp: crate::dns_tcp::DnsTcp::default(),
            tcp_backlog: Vec::new(),
            upstream_tcp: None,
            outbox: Vec::new(),
            scratch: Box::new([0u8; MAX_FRAME]),
        })
    }

    /// The uplink is attached (its address, prefix length and gateway): forward to the
    /// configured upstreams from now on.
    pub fn enable_upstreams(&mut self, uplink: (Ipv4Addr, u8, Ipv4Addr), now: Instant) {
        let (ip, prefix, gw) = uplink;
        self.upstream_tcp = Some(crate::dns_tcp::UpstreamTcp::new(ip, prefix, gw, now));
        // Validated in `new`; the old resolver's counters restart (there were no
        // forwards before the uplink).
        let Ok(r) = resolver(self.upstreams.clone()) else {
            return;
        };
        self.resolver = r;
        for (net, t) in &self.tables {
            self.resolver.set_network(*net, t.clone());
        }
        for p in &self.reserved {
            self.resolver.reserve_port(*p);
        }
    }

    /// A port mapping on the uplink was added (or removed): no query goes out from its
    /// host port while it exists (the NAT would take the reply).
    pub fn reserve_port(&mut self, port: u16, reserve: bool) {
        if reserve {
            self.reserved.push(port);
            self.resolver.reserve_port(port);
        } else if let Some(i) = self.reserved.iter().position(|p| *p == port) {
            self.reserved.swap_remove(i);
            self.resolver.release_port(port);
        }
    }

    /// Network `client.net`'s query `msg`, under the network's current config: an
    /// internal network's never leaves (a network gone is taken as internal).
    fn query(
        &mut self,
        nets: &HashMap<NetId, Network>,
        client: Client,
        msg: &[u8],
        now: Instant,
    ) -> Action {
        let cfg = nets.get(&client.net).map(|n| &n.cfg);
        self.resolver
            .set_internal(client.net, cfg.is_none_or(|c| c.internal));
        let mtu = match cfg.map_or(0, |c| c.mtu as usize) {
            0 => PORT_MTU,
            m => m,
        };
        // The cap goes with the query (a forwarded one keeps it), so the family of
        // each client decides its own.
        let ip_hlen = if client.addr.is_ipv6() {
            IPV6_HLEN
        } else {
            IPV4_HLEN
        };
        let cap = mtu.saturating_sub(ip_hlen + UDP_HLEN);
        self.resolver.set_udp_cap(client.net, cap);
        self.resolver.handle_query(client, msg, now)
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
                self.clients.remove(&net);
                self.tcp.remove_network(net);
            }
        }
    }

    pub fn stats(&self) -> DnsStats {
        let mut resolver = self.resolver.counters();
        // Answers the switch could not put in a frame are dropped answers too.
        resolver.dropped += self.stats.resolver.dropped;
        DnsStats {
            resolver,
            inflight: self.resolver.inflight(),
            clients_evicted: self.stats.clients_evicted + self.tcp.counts.clients_evicted,
            tcp_unread_reset: self.tcp.counts.unread_reset,
            ..self.stats
        }
    }

    /// When the resolver (or a TCP connection) next needs `tick`.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        [
            self.resolver.next_deadline(),
            self.tcp.next_deadline(now),
            self.upstream_tcp.as_ref().and_then(|u| u.next_deadline()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A frame the pipeline classified as DNS for network `net` (UDP or TCP to the
    /// gateway's IPv4 or IPv6 address, port 53).
    pub fn query_frame(&mut self, cx: &mut Cx<impl Emit>, from: Ingress, frame: &[u8]) {
        let (nets, out, now) = (&*cx.nets, &mut *cx.out, cx.now);
        let Ingress { net, port: in_port } = from;
        let Some(n) = nets.get(&net) else { return };
        if is_tcp(frame) {
            let mut queries = std::mem::take(&mut self.tcp_backlog);
            if !self.tcp.receive(n, in_port, frame, out, &mut queries, now) {
                self.stats.malformed_frames += 1;
            }
            self.tcp_backlog = queries;
            self.tcp_queries(nets, out, now);
            return;
        }
        let udp = match ipv4::parse_udp(frame) {
            Some((src, _, payload)) => Some((SocketAddr::V4(src), payload)),
            None => crate::ipv6::parse_udp6(frame)
                .map(|(src, _, payload)| (SocketAddr::V6(src), payload)),
        };
        let Some((src, payload)) = udp else {
            self.stats.malformed_frames += 1;
            return;
        };
        // Either parser took it as an Ethernet frame.
        let Ok(eth) = wire::ethernet::Frame::new_checked(frame) else {
            return;
        };
        let mac = eth.src();
        self.stats.clients_evicted += self.clients.entry(net).or_default().remember(
            src.ip(),
            Seen { mac, port: in_port },
            now,
        );
        let client = Client {
            net,
            addr: src,
            transport: Transport::Udp,
        };
        let a = self.query(nets, client, payload, now);
        self.act(a, nets, out, now);
    }

    /// A frame the router set aside: UDP or TCP to a port of `UPSTREAM_PORTS` on the
    /// uplink address (the resolver tells its queries' replies from the rest).
    pub fn uplink_frame(&mut self, cx: &mut Cx<impl Emit>, frame: &[u8]) {
        let (nets, out, now) = (&*cx.nets, &mut *cx.out, cx.now);
        let mut replies = Vec::new();
        if let Some(f) = tcp_frame(frame) {
            if let Some(u) = self.upstream_tcp.as_mut() {
                u.receive(f.packet_bytes(), now, &mut replies);
            }
        } else if let Some((src, dst, payload)) = ipv4::parse_udp(frame) {
            replies.push((SocketAddr::V4(src), dst.port(), payload.to_vec()));
        } else if let Some((src, dst, payload)) = crate::ipv6::parse_udp6(frame) {
            replies.push((SocketAddr::V6(src), dst.port(), payload.to_vec()));
        } else {
            self.stats.malformed_frames += 1;
        }
        self.upstream_replies(nets, replies, out, now);
        self.flush_upstream_tcp();
    }

    fn upstream_replies(
        &mut self,
        nets: &HashMap<NetId, Network>,
        replies: Vec<(SocketAddr, u16, Vec<u8>)>,
        out: &mut impl Emit,
        now: Instant,
    ) {
        for (from, port, msg) in replies {
            let a = self.resolver.handle_upstream_reply(from, port, &msg, now);
            self.act(a, nets, out, now);
        }
        self.tcp_queries(nets, out, now);
    }

    /// What the upstream TCP connections sent, for the uplink.
    fn flush_upstream_tcp(&mut self) {
        let Some(u) = self.upstream_tcp.as_mut() else {
            return;
        };
        self.outbox
            .extend(u.take_output().into_iter().map(Upstream::Ip));
    }

    /// `n` UDP queries of the outbox could not be sent (no uplink, no route).
    pub fn upstream_failed(&mut self, n: u64) {
        self.stats.upstream_unreachable += n;
    }

    /// Answer (or forward) the TCP queries waiting in `tcp_backlog`; answering one may
    /// complete the next.
    fn tcp_queries(&mut self, nets: &HashMap<NetId, Network>, out: &mut impl Emit, now: Instant) {
        // In arrival order; `act` may append (a pipelined client's next query).
        while !self.tcp_backlog.is_empty() {
            let (client, q) = self.tcp_backlog.remove(0);
            let a = self.query(nets, client, &q, now);
            self.act(a, nets, out, now);
        }
        self.stats.tcp_connections = self.tcp.counts.accepted;
        self.stats.tcp_refused = self.tcp.counts.refused;
    }

    /// Expired upstream queries move on (next upstream or SERVFAIL); TCP timers run.
    pub fn tick(&mut self, cx: &mut Cx<impl Emit>) {
        let (nets, out, now) = (&*cx.nets, &mut *cx.out, cx.now);
        for a in self.resolver.poll_timeouts(now) {
            self.act(a, nets, out, now);
        }
        let more = self.tcp.poll(out, now);
        self.tcp_backlog.extend(more);
        self.tcp_queries(nets, out, now);
        let mut replies = Vec::new();
        if let Some(u) = self.upstream_tcp.as_mut() {
            u.poll(now, &mut replies);
        }
        self.upstream_replies(nets, replies, out, now);
        self.flush_upstream_tcp();
    }

    fn act(
        &mut self,
        action: Action,
        nets: &HashMap<NetId, Network>,
        out: &mut impl Emit,
        now: Instant,
    ) {
        match action {
            Action::Drop => {}
            Action::Answer { client, bytes } => match client.transport {
                Transport::Udp => self.answer_udp(client, &bytes, nets, out),
                Transport::Tcp => {
                    let mut more = std::mem::take(&mut self.tcp_backlog);
                    if !self.tcp.answer(client, &bytes, out, &mut more, now) {
                        self.stats.client_gone += 1;
                    }
                    self.tcp_backlog = more;
                }
            },
            Action::Forward {
                to,
                transport: Transport::Udp,
                bytes,
                local_port,
            } => {
                self.outbox.push(Upstream::Udp {
                    from: local_port,
                    to,
                    bytes,
                });
            }
            Action::Forward {
                to,
                transport: Transport::Tcp,
                bytes,
                local_port,
            } => {
                let sent = match self.upstream_tcp.as_mut() {
                    Some(u) => u.send(to, local_port, &bytes, now),
                    None => false,
                };
                if sent {
                    self.stats.tcp_forwarded += 1;
                    self.flush_upstream_tcp();
                } else {
                    // The resolver's timeout moves the query on.
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
    ) {
        let cfg = nets.get(&client.net).map(|n| &n.cfg);
        let gw = cfg.and_then(|c| c.gateway);
        let gw6 = cfg.and_then(|c| c.ipv6.as_ref()?.gateway);
        let seen = self
            .clients
            .get(&client.net)
            .and_then(|c| c.get(client.addr.ip()));
        let (Some(gw), Some(seen)) = (gw, seen) else {
            self.stats.client_gone += 1;
            return;
        };
        let written = match client.addr {
            SocketAddr::V4(to) => {
                let addrs = UdpAddrs {
                    src_mac: gw.mac,
                    dst_mac: seen.mac,
                    src: SocketAddrV4::new(gw.ip, 53),
                    dst: to,
                };
                ipv4::udp_frame(&addrs, bytes, &mut *self.scratch)
            }
            SocketAddr::V6(to) => {
                // The network lost its IPv6 side meanwhile: nothing to answer from.
                let Some(gw6) = gw6 else {
                    self.stats.client_gone += 1;
                    return;
                };
                let from = SocketAddrV6::new(gw6, 53, 0, 0);
                crate::ipv6::udp6_frame((gw.mac, from), (seen.mac, to), bytes, &mut *self.scratch)
            }
        };
        match written {
            Some(n) => out.emit(seen.port, &self.scratch[..n], &self.counters),
            None => self.stats.resolver.dropped += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdb::Fdb;
    use crate::fdb::Mac;
    use crate::gateway::Gateway;
    use crate::NetConfig;
    use std::time::Duration;

    use crate::sinks::Sink;

    const GW: Gateway = Gateway {
        ip: Ipv4Addr::new(172, 18, 0, 1),
        mac: [2, 0x42, 172, 18, 0, 1],
    };
    const CLIENT_MAC: Mac = [2, 0x42, 172, 18, 0, 3];

    fn nets() -> HashMap<NetId, Network> {
        let mut m = HashMap::new();
        m.insert(
            1,
            Network {
                cfg: NetConfig {
                    id: 1,
                    gateway: Some(GW),
                    subnet: Some((Ipv4Addr::new(172, 18, 0, 0), 16)),
                    dns: true,
                    ..Default::default()
                },
                fdb: Fdb::new(16, Duration::from_secs(300)),
                members: vec![4, 5],
                hosts: HashMap::new(),
                guards: Default::default(),
                storm: Default::default(),
                remote: Default::default(),
            },
        );
        m
    }

    /// A DNS query for `name` (one label), type A, class IN, RD set.
    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend([1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.push(name.len() as u8);
        q.extend(name.as_bytes());
        q.extend([0, 0, 1, 0, 1]);
        q
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let a = UdpAddrs {
            src_mac: CLIENT_MAC,
            dst_mac: GW.mac,
            src: "172.18.0.3:40000".parse().expect("addr"),
            dst: SocketAddrV4::new(GW.ip, 53),
        };
        let mut buf = [0u8; MAX_FRAME];
        let n = ipv4::udp_frame(&a, payload, &mut buf).expect("fits");
        buf[..n].to_vec()
    }

    fn server() -> DnsServer {
        let mut d = DnsServer::new(Vec::new()).expect("resolver");
        let table = NameTable::new(&[dns::Record {
            name: "web".into(),
            aliases: vec!["front".into()],
            ipv4: Some(Ipv4Addr::new(172, 18, 0, 2)),
            ipv6: None,
        }])
        .expect("table");
        d.set_network(1, Some(Arc::new(table)));
        d
    }

    #[test]
    fn answers_leave_from_the_gateway_to_the_asking_port() {
        let mut d = server();
        let mut nets = nets();
        let mut out = Sink::default();
        let f = frame(&query(0x1234, "front"));
        d.query_frame(
            &mut Cx::new(&mut nets, &mut out, Instant::now()),
            Ingress { net: 1, port: 5 },
            &f,
        );
        assert_eq!(out.out.len(), 1);
        let (port, reply) = &out.out[0];
        assert_eq!(*port, 5, "back out of the ingress port");
        assert_eq!(&reply[0..6], &CLIENT_MAC);
        assert_eq!(&reply[6..12], &GW.mac);
        let (src, dst, msg) = ipv4::parse_udp(reply).expect("a valid datagram");
        assert_eq!(src, SocketAddrV4::new(GW.ip, 53));
        assert_eq!(dst, "172.18.0.3:40000".parse().expect("addr"));
        assert_eq!(&msg[0..2], &[0x12, 0x34], "same ID");
        assert_eq!(msg[2] & 0x80, 0x80, "a response");
        assert_eq!(msg[3] & 0x0f, 0, "NOERROR");
        assert_eq!(&msg[6..8], &[0, 1], "one answer");
        assert_eq!(&msg[msg.len() - 4..], &[172, 18, 0, 2]);
        assert_eq!(d.stats().resolver.local_answers, 1);
    }

    #[test]
    fn without_an_uplink_unknown_names_fail_at_once_and_garbage_is_counted() {
        let mut d =
            DnsServer::new(vec!["198.51.100.1:53".parse().expect("addr")]).expect("resolver");
        let mut nets = nets();
        let mut out = Sink::default();
        let mut q = query(7, "example");
        // Two labels: "example.test".
        q.truncate(q.len() - 5);
        q.extend([4]);
        q.extend(b"test");
        q.extend([0, 0, 1, 0, 1]);
        let now = Instant::now();
        d.query_frame(
            &mut Cx::new(&mut nets, &mut out, now),
            Ingress { net: 1, port: 4 },
            &frame(&q),
        );
        assert_eq!(out.out.len(), 1);
        let (_, _, msg) = ipv4::parse_udp(&out.out[0].1).expect("datagram");
        assert_eq!(msg[3] & 0x0f, 2, "SERVFAIL");
        assert!(d.next_deadline(now).is_none(), "nothing in flight");

        let mut bad = frame(&query(8, "web"));
        bad[20] = 0x20; // more fragments follow: not a datagram we can read whole
        d.query_frame(
            &mut Cx::new(&mut nets, &mut out, now),
            Ingress { net: 1, port: 4 },
            &bad,
        );
        d.query_frame(
            &mut Cx::new(&mut nets, &mut out, now),
            Ingress { net: 1, port: 4 },
            &frame(&[1, 2]),
        );
        assert_eq!(out.out.len(), 1, "nothing answered");
        let s = d.stats();
        assert_eq!((s.malformed_frames, s.resolver.dropped), (1, 1));
        assert!(
            DnsServer::new(vec!["198.51.100.1:53".parse().expect("addr"); 4]).is_err(),
            "at most three upstreams"
        );
    }
}

#[cfg(test)]
mod upstream_tests {
    //! What leaves the switch for an upstream (internal networks: nothing), the size of
    //! UDP answers, and the per-query source ports.

    use super::*;
    use crate::fdb::Fdb;
    use crate::fdb::Mac;
    use crate::gateway::Gateway;
    use crate::sinks::Sink;
    use crate::NetConfig;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
    use std::time::Duration;

    const GW: Gateway = Gateway {
        ip: Ipv4Addr::new(172, 18, 0, 1),
        mac: [2, 0x42, 172, 18, 0, 1],
    };
    const CLIENT_MAC: Mac = [2, 0x42, 172, 18, 0, 3];
    const CLIENT: [u8; 4] = [172, 18, 0, 3];
    const UPLINK: (Ipv4Addr, u8, Ipv4Addr) = (
        Ipv4Addr::new(10, 200, 0, 1),
        16,
        Ipv4Addr::new(10, 200, 0, 254),
    );
    const UPSTREAM: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 53);
    const UP_MAC: Mac = [2, 0, 0, 0, 0, 1];

    fn net(internal: bool) -> HashMap<NetId, Network> {
        let mut m = HashMap::new();
        m.insert(
            1,
            Network {
                cfg: NetConfig {
                    id: 1,
                    gateway: Some(GW),
                    subnet: Some((Ipv4Addr::new(172, 18, 0, 0), 16)),
                    dns: true,
                    internal,
                    ..Default::default()
                },
                fdb: Fdb::new(16, Duration::from_secs(300)),
                members: vec![4],
                hosts: HashMap::new(),
                guards: Default::default(),
                storm: Default::default(),
                remote: Default::default(),
            },
        );
        m
    }

    /// A resolver with an upstream reachable through the uplink, and `records` on
    /// network 1.
    fn server(records: &[dns::Record], now: Instant) -> DnsServer {
        let mut d = DnsServer::new(vec![SocketAddr::V4(UPSTREAM)]).expect("resolver");
        d.enable_upstreams(UPLINK, now);
        let table = NameTable::new(records).expect("table");
        d.set_network(1, Some(Arc::new(table)));
        d
    }

    fn web() -> Vec<dns::Record> {
        vec![dns::Record {
            name: "web".into(),
            aliases: Vec::new(),
            ipv4: Some(Ipv4Addr::new(172, 18, 0, 2)),
            ipv6: None,
        }]
    }

    /// A query (RD) for `name`, type A, with an OPT record asking for `edns` bytes.
    fn query(id: u16, name: &str, edns: Option<u16>) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend([1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend(label.as_bytes());
        }
        q.extend([0, 0, 1, 0, 1]);
        if let Some(size) = edns {
            q.extend([0, 0, 41]);
            q.extend(size.to_be_bytes());
            q.extend([0, 0, 0, 0, 0, 0]);
        }
        q
    }

    fn udp_query(payload: &[u8]) -> Vec<u8> {
        let a = UdpAddrs {
            src_mac: CLIENT_MAC,
            dst_mac: GW.mac,
            src: SocketAddrV4::new(CLIENT.into(), 40000),
            dst: SocketAddrV4::new(GW.ip, 53),
        };
        let mut buf = [0u8; MAX_FRAME];
        let n = ipv4::udp_frame(&a, payload, &mut buf).expect("fits");
        buf[..n].to_vec()
    }

    /// The upstream's answer to `query` (as forwarded), to uplink port `port`.
    fn upstream_answer(query: &[u8], port: u16) -> Vec<u8> {
        let mut m = query.to_vec();
        m[2] |= 0x80; // QR
        m[3] |= 0x80; // RA
        let a = UdpAddrs {
            src_mac: [2, 0, 0, 0, 0, 0xfe],
            dst_mac: UP_MAC,
            src: UPSTREAM,
            dst: SocketAddrV4::new(UPLINK.0, port),
        };
        let mut buf = [0u8; MAX_FRAME];
        let n = ipv4::udp_frame(&a, &m, &mut buf).expect("fits");
        buf[..n].to_vec()
    }

    fn ask(d: &mut DnsServer, nets: &mut HashMap<NetId, Network>, out: &mut Sink, f: &[u8]) {
        d.query_frame(
            &mut Cx::new(nets, out, Instant::now()),
            Ingress { net: 1, port: 4 },
            f,
        );
    }

    /// The DNS message of the UDP answer `frame`.
    fn udp_answer(frame: &[u8]) -> &[u8] {
        ipv4::parse_udp(frame).expect("a valid datagram").2
    }

    fn rcode(msg: &[u8]) -> u8 {
        msg[3] & 0x0f
    }

    #[test]
    fn an_internal_network_resolves_its_own_names_only_and_nothing_leaves_over_udp() {
        let now = Instant::now();
        let mut d = server(&web(), now);
        let mut nets = net(true);
        let mut out = Sink::default();
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &udp_query(&query(1, "web", None)),
        );
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &udp_query(&query(2, "anything.example.com", None)),
        );
        assert_eq!(out.out.len(), 2, "both answered, at once");
        let own = udp_answer(&out.out[0].1);
        assert_eq!((rcode(own), &own[6..8]), (0, &[0u8, 1][..]), "its own name");
        let other = udp_answer(&out.out[1].1);
        assert_eq!(&other[0..2], &[0, 2]);
        assert_eq!(rcode(other), 2, "SERVFAIL");
        assert!(d.outbox.is_empty(), "nothing for the uplink");
        let s = d.stats();
        assert_eq!(s.resolver.internal_not_forwarded, 1);
        assert_eq!((s.resolver.forwarded, s.inflight), (0, 0));
        assert!(d.next_deadline(now).is_none());

        // The same network, not internal: the name goes upstream.
        let mut nets = net(false);
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &udp_query(&query(3, "anything.example.com", None)),
        );
        assert_eq!(out.out.len(), 2, "no answer yet");
        assert!(
            matches!(d.outbox.as_slice(), [Upstream::Udp { to, .. }] if *to == SocketAddr::V4(UPSTREAM))
        );
    }

    /// A TCP segment from the client (172.18.0.3:40001) to gateway:53.
    fn tcp_segment(seq: u32, ack: Option<u32>, syn: bool, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, GW.mac)
            .ipv4(CLIENT, GW.ip.octets(), 64)
            .tcp(40001, 53, seq, 64240);
        segment(b, ack, syn, payload)
    }

    /// A client's segment: SYN, or data with ACK and PSH, or neither.
    pub(super) fn segment(
        b: etherparse::PacketBuilderStep<etherparse::TcpHeader>,
        ack: Option<u32>,
        syn: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        let b = match (syn, ack) {
            (true, _) => b.syn(),
            (false, Some(a)) => b.ack(a).psh(),
            (false, None) => b,
        };
        let mut f = Vec::new();
        b.write(&mut f, payload).expect("segment");
        f
    }

    /// (sequence number, SYN, payload) of TCP segment `frame`.
    fn tcp_of(frame: &[u8]) -> (u32, bool, Vec<u8>) {
        let p = SlicedPacket::from_ethernet(frame).expect("a packet");
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!("not TCP");
        };
        (t.sequence_number(), t.syn(), t.payload().to_vec())
    }

    #[test]
    fn an_internal_network_gets_servfail_over_tcp_and_no_upstream_connection() {
        let now = Instant::now();
        let mut d = server(&web(), now);
        let mut nets = net(true);
        let mut out = Sink::default();
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &tcp_segment(1000, None, true, &[]),
        );
        let (their_seq, syn, _) = tcp_of(&out.out.last().expect("SYN-ACK").1);
        assert!(syn);
        let q = query(7, "anything.example.com", None);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend(&q);
        let before = out.out.len();
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &tcp_segment(1001, Some(their_seq.wrapping_add(1)), false, &framed),
        );
        let answer = out.out[before..]
            .iter()
            .map(|(_, f)| tcp_of(f).2)
            .find(|p| !p.is_empty())
            .expect("an answer segment");
        assert_eq!(&answer[2..4], &[0, 7], "the query's ID");
        assert_eq!(rcode(&answer[2..]), 2, "SERVFAIL");
        assert!(d.outbox.is_empty(), "no segment for the uplink");
        let u = d.upstream_tcp.as_ref().expect("an uplink");
        assert!(
            !UPSTREAM_PORTS.into_iter().any(|p| u.uses_port(p)),
            "no upstream connection"
        );
        let s = d.stats();
        assert_eq!((s.resolver.internal_not_forwarded, s.tcp_forwarded), (1, 0));
    }

    /// A client that pipelines queries over TCP and never reads the answers (its
    /// window stays where it was) is reset once more than two of the largest answers
    /// wait for it: the switch never buffers without bound for a client.
    #[test]
    fn a_tcp_client_that_never_reads_is_reset_not_buffered() {
        let now = Instant::now();
        let mut d = server(&web(), now);
        let mut nets = net(false);
        let mut out = Sink::default();
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &tcp_segment(1000, None, true, &[]),
        );
        let (their_seq, _, _) = tcp_of(&out.out.last().expect("SYN-ACK").1);
        let q = query(7, "web", None);
        let mut batch = Vec::new();
        while batch.len() + q.len() + 2 < 3900 {
            batch.extend((q.len() as u16).to_be_bytes());
            batch.extend(&q);
        }
        let mut seq = 1001u32;
        for _ in 0..60 {
            // Acknowledges only the SYN-ACK: nothing of the answers is ever read.
            let seg = tcp_segment(seq, Some(their_seq.wrapping_add(1)), false, &batch);
            ask(&mut d, &mut nets, &mut out, &seg);
            seq = seq.wrapping_add(batch.len() as u32);
            if d.stats().tcp_unread_reset > 0 {
                break;
            }
        }
        assert_eq!(d.stats().tcp_unread_reset, 1, "reset once");
        let rst = out.out.iter().any(|(_, f)| {
            let p = SlicedPacket::from_ethernet(f).expect("a packet");
            matches!(p.transport, Some(TransportSlice::Tcp(t)) if t.rst())
        });
        assert!(rst, "the client is told");
        let pending: usize = d.tcp.pending_bytes();
        assert_eq!(pending, 0, "nothing kept for it");
    }

    #[test]
    fn an_answer_larger_than_a_frame_comes_back_truncated_not_dropped() {
        answers_fit(0, MAX_UDP_ANSWER);
    }

    /// An overlay's endpoints carry 1450-byte packets: its answers stop at 1422 bytes,
    /// not at the 1472 that would be dropped on the way into the sandbox.
    #[test]
    fn a_smaller_mtu_gets_smaller_answers() {
        answers_fit(1450, 1450 - 28);
    }

    /// On a network of `mtu` (0: 1500), a large answer is truncated to `cap` bytes with
    /// TC, and forwarded queries ask the upstream for no more than `cap`.
    fn answers_fit(mtu: u32, cap: usize) {
        // 200 endpoints sharing an alias: an A answer of over 3 KB.
        let records: Vec<dns::Record> = (1..=200u8)
            .map(|i| dns::Record {
                name: format!("svc-{i}"),
                aliases: vec!["svc".into()],
                ipv4: Some(Ipv4Addr::new(172, 18, 1, i)),
                ipv6: None,
            })
            .collect();
        let now = Instant::now();
        let mut d = server(&records, now);
        let mut nets = net(false);
        nets.get_mut(&1).expect("network").cfg.mtu = mtu;
        let mut out = Sink::default();
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &udp_query(&query(9, "svc", Some(4096))),
        );
        assert_eq!(out.out.len(), 1, "answered, not dropped");
        let frame = &out.out[0].1;
        let total = wire::ip::Ipv4Frame::new(frame).expect("IPv4").total_len();
        assert!(
            total <= cap + 28,
            "a {total}-byte IP packet for a {cap}-byte cap"
        );
        let msg = udp_answer(frame);
        assert!(
            msg.len() <= cap && msg.len() > cap - 100,
            "{} bytes",
            msg.len()
        );
        assert_eq!(msg[2] & 0x02, 0x02, "TC: retry over TCP");
        let answers = u16::from_be_bytes([msg[6], msg[7]]);
        assert!(answers > 0 && answers < 200, "{answers} answers");
        let s = d.stats();
        assert_eq!((s.resolver.truncated, s.resolver.dropped), (1, 0));

        // Forwarded: the upstream is asked for no more than a frame either.
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &udp_query(&query(10, "big.example.com", Some(4096))),
        );
        let [Upstream::Udp { bytes, .. }] = d.outbox.as_slice() else {
            panic!("one datagram upstream");
        };
        let opt = bytes.len() - 11;
        assert_eq!(&bytes[opt..opt + 3], &[0, 0, 41]);
        assert_eq!(
            usize::from(u16::from_be_bytes([bytes[opt + 3], bytes[opt + 4]])),
            cap
        );
    }

    /// One network's clients, however many, never push out another network's: a
    /// query in flight from network 2 is answered while network 1 gets queries from
    /// 5000 addresses.
    #[test]
    fn a_flood_of_clients_on_one_network_leaves_anothers_answers_alone() {
        let now = Instant::now();
        let mut d = server(&web(), now);
        let mut nets = net(false);
        let mut other = net(false).remove(&1).expect("network");
        other.cfg.id = 2;
        nets.insert(2, other);
        d.set_network(2, Some(Arc::new(NameTable::new(&web()).expect("table"))));
        let mut out = Sink::default();
        let from = |net: NetId, port: crate::PortId, ip: Ipv4Addr, q: &[u8]| {
            let a = UdpAddrs {
                src_mac: CLIENT_MAC,
                dst_mac: GW.mac,
                src: SocketAddrV4::new(ip, 40000),
                dst: SocketAddrV4::new(GW.ip, 53),
            };
            let mut buf = [0u8; MAX_FRAME];
            let n = ipv4::udp_frame(&a, q, &mut buf).expect("fits");
            (Ingress { net, port }, buf[..n].to_vec())
        };
        let (at, f) = from(2, 5, CLIENT.into(), &query(1, "www.example.com", None));
        d.query_frame(&mut Cx::new(&mut nets, &mut out, now), at, &f);
        let Some(Upstream::Udp {
            from: port, bytes, ..
        }) = d.outbox.pop()
        else {
            panic!("a query upstream");
        };
        for i in 0..5000u32 {
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 18, 32, 0)) + i);
            let (at, f) = from(1, 4, ip, &query(2, "web", None));
            d.query_frame(&mut Cx::new(&mut nets, &mut out, now), at, &f);
        }
        let before = out.out.len();
        d.uplink_frame(
            &mut Cx::new(&mut nets, &mut out, now),
            &upstream_answer(&bytes, port),
        );
        assert_eq!(out.out.len(), before + 1, "answered");
        assert_eq!(out.out[before].0, 5, "on network 2's port");
        let s = d.stats();
        assert_eq!(s.client_gone, 0);
        assert!(s.clients_evicted >= 5000 - 1024, "network 1's own: {s:?}");
    }

    /// Ask for `name` and answer it from the upstream: the source port it went from.
    fn round_trip(
        d: &mut DnsServer,
        nets: &mut HashMap<NetId, Network>,
        out: &mut Sink,
        id: u16,
    ) -> u16 {
        ask(
            d,
            nets,
            out,
            &udp_query(&query(id, "www.example.com", None)),
        );
        let Some(Upstream::Udp { from, to, bytes }) = d.outbox.pop() else {
            panic!("a query upstream");
        };
        assert!(d.outbox.is_empty());
        assert_eq!(to, SocketAddr::V4(UPSTREAM));
        let answered = out.out.len();
        d.uplink_frame(
            &mut Cx::new(nets, out, Instant::now()),
            &upstream_answer(&bytes, from),
        );
        assert_eq!(
            out.out.len(),
            answered + 1,
            "the reply on its port is the answer"
        );
        from
    }

    #[test]
    fn each_query_goes_out_from_a_fresh_port_and_replies_elsewhere_are_unmatched() {
        let now = Instant::now();
        let mut d = server(&web(), now);
        let mut nets = net(false);
        let mut out = Sink::default();
        // One after the other: the first is answered before the second is asked, so a
        // second port is not merely avoiding the first.
        let ports: Vec<u16> = (0..8)
            .map(|id| round_trip(&mut d, &mut nets, &mut out, id))
            .collect();
        assert!(
            ports.iter().all(|p| UPSTREAM_PORTS.contains(p)),
            "{ports:?}"
        );
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert!(distinct.len() > 1, "one port for every query: {ports:?}");
        assert_eq!(d.stats().resolver.unmatched_replies, 0);

        // In flight from one port, answered to another: unmatched, still in flight.
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &udp_query(&query(20, "x.example.com", None)),
        );
        let Some(Upstream::Udp { from, bytes, .. }) = d.outbox.pop() else {
            panic!("a query upstream");
        };
        let elsewhere = if from == *UPSTREAM_PORTS.end() {
            from - 1
        } else {
            from + 1
        };
        let answered = out.out.len();
        d.uplink_frame(
            &mut Cx::new(&mut nets, &mut out, now),
            &upstream_answer(&bytes, elsewhere),
        );
        assert_eq!(out.out.len(), answered, "not an answer");
        let s = d.stats();
        assert_eq!((s.resolver.unmatched_replies, s.inflight), (1, 1));
        // The same reply on the right port is.
        d.uplink_frame(
            &mut Cx::new(&mut nets, &mut out, now),
            &upstream_answer(&bytes, from),
        );
        assert_eq!(out.out.len(), answered + 1);
        // Nothing in flight on it any more: unmatched.
        d.uplink_frame(
            &mut Cx::new(&mut nets, &mut out, now),
            &upstream_answer(&bytes, from),
        );
        assert_eq!(d.stats().resolver.unmatched_replies, 2);
    }

    #[test]
    fn a_published_port_is_never_a_source_port() {
        let now = Instant::now();
        let mut d = server(&web(), now);
        // Every port of the range published but one.
        for p in UPSTREAM_PORTS.clone().filter(|p| *p != 62000) {
            d.reserve_port(p, true);
        }
        let mut nets = net(false);
        let mut out = Sink::default();
        assert_eq!(round_trip(&mut d, &mut nets, &mut out, 1), 62000);
        d.reserve_port(61000, false);
        d.reserve_port(62000, true);
        assert_eq!(round_trip(&mut d, &mut nets, &mut out, 2), 61000);
    }
}

#[cfg(test)]
mod ipv6_tests {
    //! The resolver at the gateway's IPv6 address: over UDP (answers, reverse names,
    //! forwarding, the IPv6 size cap, checksums) and over TCP. Frames are built and
    //! read back with etherparse, not with the code under test.

    use super::*;
    use crate::fdb::{Fdb, Mac};
    use crate::gateway::Gateway;
    use crate::sinks::Sink;
    use crate::{Ipv6Config, NetConfig};
    use etherparse::{LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
    use std::net::Ipv6Addr;
    use std::time::Duration;
    use wire::ETH_HLEN;

    const GW: Gateway = Gateway {
        ip: Ipv4Addr::new(172, 18, 0, 1),
        mac: [2, 0x42, 172, 18, 0, 1],
    };
    const GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 3);
    const CLIENT_MAC: Mac = [2, 0x42, 172, 18, 0, 3];
    const WEB6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0xabc, 2);
    /// The port queries come in by.
    const IN_PORT: crate::PortId = 5;
    const UPLINK: (Ipv4Addr, u8, Ipv4Addr) = (
        Ipv4Addr::new(10, 200, 0, 1),
        16,
        Ipv4Addr::new(10, 200, 0, 254),
    );
    const UPSTREAM: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 53);

    /// A dual-stack network 1 of endpoint MTU `mtu` (0: 1500).
    fn nets(mtu: u32) -> HashMap<NetId, Network> {
        let mut m = HashMap::new();
        m.insert(
            1,
            Network {
                cfg: NetConfig {
                    id: 1,
                    gateway: Some(GW),
                    subnet: Some((Ipv4Addr::new(172, 18, 0, 0), 16)),
                    dns: true,
                    mtu,
                    ipv6: Some(Ipv6Config {
                        gateway: Some(GW6),
                        subnet: (Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0), 64),
                        hosts: Default::default(),
                        routed: false,
                    }),
                    ..Default::default()
                },
                fdb: Fdb::new(16, Duration::from_secs(300)),
                members: vec![4, IN_PORT],
                hosts: HashMap::new(),
                guards: Default::default(),
                storm: Default::default(),
                remote: Default::default(),
            },
        );
        m
    }

    fn web() -> Vec<dns::Record> {
        vec![dns::Record {
            name: "web".into(),
            aliases: vec!["front".into()],
            ipv4: Some(Ipv4Addr::new(172, 18, 0, 2)),
            ipv6: Some(WEB6),
        }]
    }

    /// A resolver with `records` on network 1 and an upstream through the uplink.
    fn server(records: &[dns::Record], now: Instant) -> DnsServer {
        let mut d = DnsServer::new(vec![SocketAddr::V4(UPSTREAM)]).expect("resolver");
        d.enable_upstreams(UPLINK, now);
        let table = NameTable::new(records).expect("table");
        d.set_network(1, Some(Arc::new(table)));
        d
    }

    const A: u16 = 1;
    const PTR: u16 = 12;
    const AAAA: u16 = 28;

    /// A query (RD) for `name` of type `qtype`, class IN, with an OPT record asking
    /// for `edns` bytes.
    fn query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend([1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend(label.as_bytes());
        }
        q.push(0);
        q.extend(qtype.to_be_bytes());
        q.extend([0, 1]);
        if let Some(size) = edns {
            q.extend([0, 0, 41]);
            q.extend(size.to_be_bytes());
            q.extend([0, 0, 0, 0, 0, 0]);
        }
        q
    }

    /// `msg` over UDP from the client ([CLIENT6]:40000) to [GW6]:53.
    fn udp6_query(msg: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, GW.mac)
            .ipv6(CLIENT6.octets(), GW6.octets(), 64)
            .udp(40000, 53)
            .write(&mut f, msg)
            .expect("datagram");
        f
    }

    /// `msg` over UDP from 172.18.0.3:40000 to the gateway's IPv4 address.
    fn udp4_query(msg: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, GW.mac)
            .ipv4([172, 18, 0, 3], GW.ip.octets(), 64)
            .udp(40000, 53)
            .write(&mut f, msg)
            .expect("datagram");
        f
    }

    fn ask(d: &mut DnsServer, nets: &mut HashMap<NetId, Network>, out: &mut Sink, f: &[u8]) {
        d.query_frame(
            &mut Cx::new(nets, out, Instant::now()),
            Ingress {
                net: 1,
                port: IN_PORT,
            },
            f,
        );
    }

    /// The DNS message of the UDP answer `frame`, after checking that it goes from
    /// the gateway's MAC and IPv6 address, port 53, to the client's, hop limit 64, the
    /// lengths agree and the UDP checksum is the one recomputed from scratch.
    fn udp6_answer(frame: &[u8]) -> Vec<u8> {
        let p = SlicedPacket::from_ethernet(frame).expect("a packet");
        let Some(LinkSlice::Ethernet2(eth)) = p.link else {
            panic!("not Ethernet");
        };
        assert_eq!((eth.source(), eth.destination()), (GW.mac, CLIENT_MAC));
        let Some(NetSlice::Ipv6(ip)) = p.net else {
            panic!("not IPv6");
        };
        let h = ip.header();
        assert_eq!((h.source_addr(), h.destination_addr()), (GW6, CLIENT6));
        assert_eq!(h.hop_limit(), 64);
        let Some(TransportSlice::Udp(u)) = p.transport else {
            panic!("not UDP");
        };
        assert_eq!((u.source_port(), u.destination_port()), (53, 40000));
        assert_eq!(usize::from(u.length()), UDP_HLEN + u.payload().len());
        assert_eq!(usize::from(h.payload_length()), usize::from(u.length()));
        assert_eq!(frame.len(), ETH_HLEN + IPV6_HLEN + usize::from(u.length()));
        let want = u
            .to_header()
            .calc_checksum_ipv6_raw(h.source(), h.destination(), u.payload())
            .expect("checksum");
        assert_ne!(u.checksum(), 0, "mandatory over IPv6");
        assert_eq!(u.checksum(), want, "UDP checksum");
        u.payload().to_vec()
    }

    fn rcode(msg: &[u8]) -> u8 {
        msg[3] & 0x0f
    }

    fn answers(msg: &[u8]) -> u16 {
        u16::from_be_bytes([msg[6], msg[7]])
    }

    #[test]
    fn an_aaaa_query_over_ipv6_is_answered_from_the_gateways_ipv6_address() {
        let now = Instant::now();
        let mut d = server(&web(), now);
        let mut nets = nets(0);
        let mut out = Sink::default();
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &udp6_query(&query(0x1234, "front", AAAA, None)),
        );
        assert_eq!(out.out.len(), 1, "answered: {:?}", d.stats());
        let (port, frame) = &out.out[0];
        assert_eq!(*port, IN_PORT, "back out of the asking port");
        let msg = udp6_answer(frame);
        assert_eq!(&msg[0..2], &[0x12, 0x34], "same ID");
        assert_eq!(msg[2] & 0x80, 0x80, "a response");
        assert_eq!((rcode(&msg), answers(&msg)), (0, 1));
        assert_eq!(
            &msg[msg.len() - 16..],
            &WEB6.octets(),
            "the record's address"
        );
        // The same client asks for A over IPv6: the IPv4 address, to the same place.
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &udp6_query(&query(0x1235, "web", A, None)),
        );
        let msg = udp6_answer(&out.out[1].1);
        assert_eq!(&msg[msg.len() - 4..], &[172, 18, 0, 2]);
        let s = d.stats();
        assert_eq!((s.resolver.queries, s.resolver.local_answers), (2, 2));
        assert_eq!((s.malformed_frames, s.client_gone), (0, 0));
    }

    /// The reverse name of `ip` under ip6.arpa (its 32 nibbles, last first).
    fn ip6_arpa(ip: Ipv6Addr) -> String {
        let mut labels: Vec<String> = ip
            .octets()
            .iter()
            .rev()
            .flat_map(|b| [b & 0xf, b >> 4])
            .map(|n| format!("{n:x}"))
            .collect();
        labels.extend(["ip6".into(), "arpa".into()]);
        labels.join(".")
    }

    #[test]
    fn a_reverse_query_under_ip6_arpa_gives_the_owner() {
        let now = Instant::now();
        let mut d = server(&web(), now);
        let mut nets = nets(0);
        let mut out = Sink::default();
        let name = ip6_arpa(WEB6);
        assert!(name.starts_with("2.0.0.0.c.b.a.0."), "{name}");
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &udp6_query(&query(0x4321, &name, PTR, None)),
        );
        assert_eq!(out.out.len(), 1);
        let msg = udp6_answer(&out.out[0].1);
        assert_eq!((rcode(&msg), answers(&msg)), (0, 1));
        assert!(
            msg.ends_with(&[3, b'w', b'e', b'b', 0]),
            "PTR web.: {:?}",
            &msg[msg.len() - 8..]
        );
        assert_eq!(d.stats().resolver.local_answers, 1);
    }

    /// The upstream's answer to `query` (as forwarded), to uplink port `port`.
    fn upstream_answer(query: &[u8], port: u16) -> Vec<u8> {
        let mut m = query.to_vec();
        m[2] |= 0x80; // QR
        m[3] |= 0x80; // RA
        m[7] = 1; // one answer: www.example.com A 93.184.215.14
        m.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 93, 184, 215, 14]);
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xfe], [2, 0, 0, 0, 0, 1])
            .ipv4(UPSTREAM.ip().octets(), UPLINK.0.octets(), 60)
            .udp(53, port)
            .write(&mut f, &m)
            .expect("datagram");
        f
    }

    #[test]
    fn a_query_over_ipv6_goes_upstream_over_ipv4_and_its_answer_comes_back_over_ipv6() {
        let now = Instant::now();
        let mut d = server(&web(), now);
        let mut nets = nets(0);
        let mut out = Sink::default();
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &udp6_query(&query(0x0606, "www.example.com", A, None)),
        );
        assert!(out.out.is_empty(), "not ours: no answer yet");
        let Some(Upstream::Udp { from, to, bytes }) = d.outbox.pop() else {
            panic!("a query upstream");
        };
        assert_eq!(
            to,
            SocketAddr::V4(UPSTREAM),
            "through the uplink, over IPv4"
        );
        assert!(UPSTREAM_PORTS.contains(&from));
        d.uplink_frame(
            &mut Cx::new(&mut nets, &mut out, now),
            &upstream_answer(&bytes, from),
        );
        assert_eq!(out.out.len(), 1, "answered: {:?}", d.stats());
        let (port, frame) = &out.out[0];
        assert_eq!(*port, IN_PORT);
        let msg = udp6_answer(frame);
        assert_eq!(&msg[0..2], &[6, 6], "the client's ID, not the upstream's");
        assert_eq!((rcode(&msg), answers(&msg)), (0, 1));
        assert_eq!(&msg[msg.len() - 4..], &[93, 184, 215, 14]);
        let s = d.stats();
        assert_eq!((s.resolver.forwarded, s.resolver.upstream_replies), (1, 1));
        assert_eq!((s.inflight, s.client_gone), (0, 0));
    }

    /// 200 endpoints sharing an alias: an A answer of over 3 KB.
    fn crowd() -> Vec<dns::Record> {
        (1..=200u8)
            .map(|i| dns::Record {
                name: format!("svc-{i}"),
                aliases: vec!["svc".into()],
                ipv4: Some(Ipv4Addr::new(172, 18, 1, i)),
                ipv6: None,
            })
            .collect()
    }

    /// On a network of `mtu` (0: 1500) a large answer over IPv6 is truncated (TC) to
    /// `cap6` bytes, one over IPv4 to `cap4` (20 bytes more), and a query forwarded for
    /// an IPv6 client asks the upstream for no more than `cap6`.
    fn answers_fit(mtu: u32, cap6: usize, cap4: usize) {
        let now = Instant::now();
        let mut d = server(&crowd(), now);
        let mut nets = nets(mtu);
        let mut out = Sink::default();
        for (i, f) in [
            udp6_query(&query(9, "svc", A, Some(4096))),
            udp4_query(&query(10, "svc", A, Some(4096))),
        ]
        .iter()
        .enumerate()
        {
            ask(&mut d, &mut nets, &mut out, f);
            assert_eq!(out.out.len(), i + 1, "answered, not dropped");
        }
        let msg = udp6_answer(&out.out[0].1);
        assert!(
            msg.len() <= cap6 && msg.len() > cap6 - 20,
            "{} bytes over IPv6 for a {cap6}-byte cap",
            msg.len()
        );
        assert_eq!(msg[2] & 0x02, 0x02, "TC: retry over TCP");
        assert!(answers(&msg) > 0 && answers(&msg) < 200);
        let v4 = ipv4::parse_udp(&out.out[1].1).expect("IPv4 answer").2;
        assert!(
            v4.len() <= cap4 && v4.len() > cap6,
            "{} bytes over IPv4 for a {cap4}-byte cap",
            v4.len()
        );
        let s = d.stats();
        assert_eq!((s.resolver.truncated, s.resolver.dropped), (2, 0));

        ask(
            &mut d,
            &mut nets,
            &mut out,
            &udp6_query(&query(11, "big.example.com", A, Some(4096))),
        );
        let [Upstream::Udp { bytes, .. }] = d.outbox.as_slice() else {
            panic!("one datagram upstream");
        };
        let opt = bytes.len() - 11;
        assert_eq!(&bytes[opt..opt + 3], &[0, 0, 41]);
        let asked = u16::from_be_bytes([bytes[opt + 3], bytes[opt + 4]]);
        assert_eq!(usize::from(asked), cap6, "the upstream's answer fits too");
    }

    #[test]
    fn answers_over_ipv6_stop_at_the_mtu_less_48_bytes() {
        answers_fit(0, 1452, 1472);
    }

    #[test]
    fn a_smaller_mtu_gets_smaller_answers_over_ipv6_too() {
        answers_fit(1450, 1402, 1422);
    }

    #[test]
    fn an_ipv6_datagram_without_a_checksum_or_with_a_wrong_one_is_dropped_and_counted() {
        let now = Instant::now();
        let mut d = server(&web(), now);
        let mut nets = nets(0);
        let mut out = Sink::default();
        let good = udp6_query(&query(1, "web", AAAA, None));
        let sum = ETH_HLEN + IPV6_HLEN + 6;
        let mut none = good.clone();
        none[sum..sum + 2].fill(0);
        let mut wrong = good.clone();
        wrong[sum] ^= 0x40;
        let mut from_nowhere = good.clone();
        // Source :: (the checksum follows it: the source is what refuses it).
        from_nowhere[ETH_HLEN + 8..ETH_HLEN + 24].fill(0);
        let c = udp6_answer_checksum(&from_nowhere);
        from_nowhere[sum..sum + 2].copy_from_slice(&c.to_be_bytes());
        for f in [&none, &wrong, &from_nowhere] {
            ask(&mut d, &mut nets, &mut out, f);
        }
        assert!(out.out.is_empty(), "nothing answered");
        let s = d.stats();
        assert_eq!(s.malformed_frames, 3);
        assert_eq!(s.resolver.queries, 0, "never reached the resolver");
        // The same query with its checksum is answered.
        ask(&mut d, &mut nets, &mut out, &good);
        assert_eq!(out.out.len(), 1);
        udp6_answer(&out.out[0].1);
    }

    /// The UDP checksum the IPv6/UDP `frame` should carry.
    fn udp6_answer_checksum(frame: &[u8]) -> u16 {
        let p = SlicedPacket::from_ethernet(frame).expect("a packet");
        let (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Udp(u))) = (p.net, p.transport) else {
            panic!("IPv6/UDP");
        };
        let h = ip.header();
        u.to_header()
            .calc_checksum_ipv6_raw(h.source(), h.destination(), u.payload())
            .expect("checksum")
    }

    /// A TCP segment from the client ([CLIENT6]:40001) to [GW6]:53.
    fn tcp6_segment(seq: u32, ack: Option<u32>, syn: bool, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, GW.mac)
            .ipv6(CLIENT6.octets(), GW6.octets(), 64)
            .tcp(40001, 53, seq, 64240);
        super::upstream_tests::segment(b, ack, syn, payload)
    }

    /// (sequence number, SYN, payload) of TCP segment `frame`, after checking that it
    /// goes from [GW6]:53 (the gateway's MAC) to the client and that its checksum is
    /// the one recomputed from scratch.
    fn tcp6_of(frame: &[u8]) -> (u32, bool, Vec<u8>) {
        let p = SlicedPacket::from_ethernet(frame).expect("a packet");
        let Some(LinkSlice::Ethernet2(eth)) = p.link else {
            panic!("not Ethernet");
        };
        assert_eq!((eth.source(), eth.destination()), (GW.mac, CLIENT_MAC));
        let Some(NetSlice::Ipv6(ip)) = p.net else {
            panic!("not IPv6");
        };
        let h = ip.header();
        assert_eq!((h.source_addr(), h.destination_addr()), (GW6, CLIENT6));
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!("not TCP");
        };
        assert_eq!((t.source_port(), t.destination_port()), (53, 40001));
        let want = t
            .to_header()
            .calc_checksum_ipv6_raw(h.source(), h.destination(), t.payload())
            .expect("checksum");
        assert_eq!(t.checksum(), want, "TCP checksum");
        (t.sequence_number(), t.syn(), t.payload().to_vec())
    }

    #[test]
    fn a_query_over_tcp_to_the_gateways_ipv6_address_is_answered() {
        let now = Instant::now();
        let mut d = server(&web(), now);
        let mut nets = nets(0);
        let mut out = Sink::default();
        ask(
            &mut d,
            &mut nets,
            &mut out,
            &tcp6_segment(1000, None, true, &[]),
        );
        let (port, synack) = out.out.last().expect("SYN-ACK");
        assert_eq!(*port, IN_PORT);
        let (their_seq, syn, _) = tcp6_of(synack);
        assert!(syn, "the handshake's second step");
        let q = query(0x0707, "web", AAAA, None);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend(&q);
        let before = out.out.len();
        let seg = tcp6_segment(1001, Some(their_seq.wrapping_add(1)), false, &framed);
        ask(&mut d, &mut nets, &mut out, &seg);
        let answer = out.out[before..]
            .iter()
            .map(|(_, f)| tcp6_of(f).2)
            .find(|p| !p.is_empty())
            .expect("an answer segment");
        let len = usize::from(u16::from_be_bytes([answer[0], answer[1]]));
        assert_eq!(answer.len(), 2 + len, "one length-prefixed message");
        let msg = &answer[2..];
        assert_eq!(&msg[0..2], &[7, 7], "the query's ID");
        assert_eq!((rcode(msg), answers(msg)), (0, 1));
        assert_eq!(&msg[msg.len() - 16..], &WEB6.octets());
        let s = d.stats();
        assert_eq!((s.tcp_connections, s.resolver.local_answers), (1, 1));
        assert_eq!(s.malformed_frames, 0);

        // IPv4 clients of the same network still get their handshake from the
        // interface that now holds both addresses.
        let mut syn4 = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, GW.mac)
            .ipv4([172, 18, 0, 3], GW.ip.octets(), 64)
            .tcp(40002, 53, 5000, 64240)
            .syn()
            .write(&mut syn4, &[])
            .expect("segment");
        let before = out.out.len();
        ask(&mut d, &mut nets, &mut out, &syn4);
        let p = SlicedPacket::from_ethernet(&out.out.last().expect("SYN-ACK").1).expect("IP");
        assert_eq!(out.out.len(), before + 1);
        assert!(matches!(p.net, Some(NetSlice::Ipv4(_))));
        assert!(matches!(p.transport, Some(TransportSlice::Tcp(t)) if t.syn() && t.ack()));
    }
}
