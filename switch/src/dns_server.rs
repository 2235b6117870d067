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
use crate::network::Network;
use crate::pipeline::{Cx, Emit, Ingress};
use crate::port::MAX_FRAME;
use crate::stats::PortCounters;
use crate::{NetId, PortId};

/// Clients remembered (network, address -> MAC, port) for answers that come later
/// (forwarded queries). Bounded: past it the map starts over.
const MAX_CLIENTS: usize = 4096;
/// Source ports for upstream queries are picked from here; the NAT's SNAT range stays
/// below it (`nat::PortRange`), so no session can take the resolver's port.
pub use crate::DNS_UPSTREAM_PORTS as UPSTREAM_PORTS;

/// What the resolver asks to have sent out of the uplink. It never reaches into the
/// router: the worker drains [`DnsServer::outbox`] into it after each call.
pub(crate) enum Upstream {
    /// A query over UDP, from the resolver's port.
    Udp { to: SocketAddrV4, bytes: Vec<u8> },
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
    /// Forwards that could not leave (no uplink, or an IPv6 upstream).
    pub upstream_unreachable: u64,
    /// TCP connections accepted on gateway:53.
    pub tcp_connections: u64,
    /// TCP connections refused because every listener was busy.
    pub tcp_refused: u64,
    /// Queries that came over TCP, forwarded to an upstream over TCP.
    pub tcp_forwarded: u64,
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
        ..Default::default()
    })
}

/// TCP in IPv4 (the resolver's TCP side takes it; anything else is tried as UDP).
fn tcp_frame(frame: &[u8]) -> Option<wire::ip::Ipv4Frame<'_>> {
    wire::ip::Ipv4Frame::new(frame).filter(|f| f.proto() == wire::ip::PROTO_TCP)
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
        let mut resolver = self.resolver.counters();
        // Answers the switch could not put in a frame are dropped answers too.
        resolver.dropped += self.stats.resolver.dropped;
        DnsStats {
            resolver,
            inflight: self.resolver.inflight(),
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
    /// gateway, port 53).
    pub fn query_frame(&mut self, cx: &mut Cx<impl Emit>, from: Ingress, frame: &[u8]) {
        let (nets, out, now) = (&*cx.nets, &mut *cx.out, cx.now);
        let Ingress { net, port: in_port } = from;
        let Some(n) = nets.get(&net) else { return };
        if tcp_frame(frame).is_some() {
            let mut queries = std::mem::take(&mut self.tcp_backlog);
            if !self.tcp.receive(n, in_port, frame, out, &mut queries, now) {
                self.stats.malformed_frames += 1;
            }
            self.tcp_backlog = queries;
            self.tcp_queries(nets, out, now);
            return;
        }
        let Some((src, _dst, payload)) = ipv4::parse_udp(frame) else {
            self.stats.malformed_frames += 1;
            return;
        };
        // parse_udp took it as an Ethernet/IPv4 frame.
        let Ok(eth) = wire::ethernet::Frame::new_checked(frame) else {
            return;
        };
        let mac = eth.src();
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
        self.act(a, nets, out, now);
    }

    /// A frame the router set aside: UDP to the resolver's port, or TCP to one of its
    /// upstream connections, on the uplink address.
    pub fn uplink_frame(&mut self, cx: &mut Cx<impl Emit>, frame: &[u8]) {
        let (nets, out, now) = (&*cx.nets, &mut *cx.out, cx.now);
        let mut replies = Vec::new();
        if let Some(f) = tcp_frame(frame) {
            if let Some(u) = self.upstream_tcp.as_mut() {
                u.receive(f.packet_bytes(), now, &mut replies);
            }
        } else if let Some((src, _, payload)) = ipv4::parse_udp(frame) {
            replies.push((SocketAddr::V4(src), payload.to_vec()));
        } else {
            self.stats.malformed_frames += 1;
        }
        self.upstream_replies(nets, replies, out, now);
        self.flush_upstream_tcp();
    }

    fn upstream_replies(
        &mut self,
        nets: &HashMap<NetId, Network>,
        replies: Vec<(SocketAddr, Vec<u8>)>,
        out: &mut impl Emit,
        now: Instant,
    ) {
        for (from, msg) in replies {
            let a = self.resolver.handle_upstream_reply(from, &msg, now);
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
            let a = self.resolver.handle_query(client, &q, now);
            self.act(a, nets, out, now);
        }
        self.stats.tcp_connections = self.tcp.accepted;
        self.stats.tcp_refused = self.tcp.refused;
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
            } => {
                let SocketAddr::V4(to) = to else {
                    self.stats.upstream_unreachable += 1;
                    return;
                };
                self.outbox.push(Upstream::Udp { to, bytes });
            }
            Action::Forward {
                to,
                transport: Transport::Tcp,
                bytes,
            } => {
                let port = self.free_tcp_port();
                let sent = match (self.upstream_tcp.as_mut(), port) {
                    (Some(u), Some(port)) => u.send(to, port, &bytes, now),
                    _ => false,
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

    /// A random local port for a new upstream connection, not the UDP port and not
    /// one in use.
    fn free_tcp_port(&self) -> Option<u16> {
        let u = self.upstream_tcp.as_ref()?;
        (0..16)
            .map(|_| rand::random_range(UPSTREAM_PORTS))
            .find(|p| *p != self.port && !u.uses_port(*p))
    }

    fn answer_udp(
        &mut self,
        client: Client,
        bytes: &[u8],
        nets: &HashMap<NetId, Network>,
        out: &mut impl Emit,
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
        match ipv4::udp_frame(&addrs, bytes, &mut *self.scratch) {
            Some(n) => out.emit(seen.port, &self.scratch[..n], &self.counters),
            None => self.stats.resolver.dropped += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdb::Fdb;
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
