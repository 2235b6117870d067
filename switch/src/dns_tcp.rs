//! DNS over TCP at a network's gateway address (RFC 7766). The gateway address exists
//! only in the switch, so the TCP endpoint is `smoltcp`'s: one IP-medium interface per
//! network holding the gateway address (and its IPv6 address on a dual-stack network)
//! and a small pool of sockets listening on port 53, for clients of either family.
//! Segments to gateway:53 are fed in as IP packets; the interface's output gets an
//! Ethernet header (gateway MAC -> the client's MAC) and leaves by the client's port.
//! Messages are 2-byte-length framed; the resolver sees them without the prefix.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dns::{Client, Transport};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

use crate::dns_clients::{NetClients, Seen};
use crate::gateway::Gateway;
use crate::network::Network;
use crate::pipeline::Emit;
use crate::port::MAX_FRAME;
use crate::stats::PortCounters;
use crate::{NetConfig, NetId, PortId};
use wire::ethernet::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use wire::ip::{Ipv4Frame, Ipv4Packet};
use wire::ipv6::{Ipv6Frame, Ipv6Packet, NEXT_HEADER_TCP};
use wire::ETH_HLEN;

/// Connections served at once per network; a SYN beyond them is answered with RST.
const LISTENERS: usize = 16;
const RX_BUFFER: usize = 4096;
const TX_BUFFER: usize = 16 * 1024;
/// A connection with no complete query for this long is closed (RFC 7766 6.2.3 asks
/// servers to time idle connections out; a few seconds is usual).
const IDLE: Duration = Duration::from_secs(10);
/// Largest DNS message over TCP, plus its prefix.
const MAX_MESSAGE: usize = u16::MAX as usize + 2;
/// Answers one connection may have waiting for its client to read, beyond the socket's
/// buffer: two of the largest. A client that asks for more without reading is reset,
/// so no client grows the switch's memory by not reading.
const MAX_PENDING: usize = 2 * MAX_MESSAGE;

/// What `stats` shows of the TCP side.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TcpCounts {
    /// Connections accepted.
    pub accepted: u64,
    /// SYNs reset because every listener was busy.
    pub refused: u64,
    /// Clients forgotten to make room ([`crate::dns_clients`]).
    pub clients_evicted: u64,
    /// Connections reset because their client did not read its answers (more pending
    /// than [`MAX_PENDING`], or none read for the idle time).
    pub unread_reset: u64,
}

/// The interface's device: the one packet being fed in, and what the stack sent.
#[derive(Default)]
struct Wire {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct RxTok(Vec<u8>);
struct TxTok<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxTok {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}

impl phy::Device for Wire {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(&mut self, _now: SmolInstant) -> Option<(RxTok, TxTok<'_>)> {
        let p = self.rx.pop_front()?;
        Some((RxTok(p), TxTok(&mut self.tx)))
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<TxTok<'_>> {
        Some(TxTok(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = 1500;
        c
    }
}

/// One connection's partial input and pending output.
#[derive(Default)]
struct Conn {
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    last_active: Option<Instant>,
}

/// The addresses a network's interface holds: the gateway's, with its subnets' prefix
/// lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Addrs {
    v4: (Ipv4Addr, u8),
    v6: Option<(Ipv6Addr, u8)>,
}

impl Addrs {
    /// None where the network has no gateway in the switch (nothing to listen at).
    fn of(cfg: &NetConfig) -> Option<Addrs> {
        let (Some(gw), Some((_, prefix))) = (cfg.gateway, cfg.subnet) else {
            return None;
        };
        let v6 = cfg
            .ipv6
            .as_ref()
            .and_then(|v6| Some((v6.gateway?, v6.subnet.1)));
        Some(Addrs {
            v4: (gw.ip, prefix),
            v6,
        })
    }

    fn apply(&self, iface: &mut Interface) {
        iface.update_ip_addrs(|a| {
            a.clear();
            // Two at most: smoltcp's default room (IFACE_MAX_ADDR_COUNT).
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(self.v4.0), self.v4.1));
            if let Some((ip, prefix)) = self.v6 {
                let _ = a.push(IpCidr::new(IpAddress::Ipv6(ip), prefix));
            }
        });
    }
}

/// The destination and EtherType of an IP packet the stack sent.
fn destination(packet: &[u8]) -> Option<(IpAddr, u16)> {
    match packet.first()? >> 4 {
        4 => Some((
            Ipv4Packet::new_checked(packet).ok()?.dst().into(),
            ETHERTYPE_IPV4,
        )),
        6 => Some((
            Ipv6Packet::new_checked(packet).ok()?.dst().into(),
            ETHERTYPE_IPV6,
        )),
        _ => None,
    }
}

struct NetTcp {
    gw: Gateway,
    addrs: Addrs,
    iface: Interface,
    wire: Wire,
    sockets: SocketSet<'static>,
    handles: Vec<SocketHandle>,
    conns: HashMap<SocketHandle, Conn>,
    /// Client address -> (MAC, port) seen on its segments, for the way back.
    clients: NetClients,
}

#[derive(Default)]
pub(crate) struct DnsTcp {
    nets: HashMap<NetId, NetTcp>,
    /// smoltcp's clock counts from here.
    epoch: Option<Instant>,
    next_poll: Option<Instant>,
    pub counts: TcpCounts,
    counters: Arc<PortCounters>,
}

fn smol(epoch: Instant, now: Instant) -> SmolInstant {
    SmolInstant::from_micros(now.saturating_duration_since(epoch).as_micros() as i64)
}

impl NetTcp {
    fn new(gw: Gateway, addrs: Addrs, now: SmolInstant) -> NetTcp {
        let mut wire = Wire::default();
        let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut wire, now);
        addrs.apply(&mut iface);
        let mut sockets = SocketSet::new(Vec::new());
        let mut handles = Vec::with_capacity(LISTENERS);
        for _ in 0..LISTENERS {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
                tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
            );
            let _ = s.listen(53);
            s.set_nagle_enabled(false);
            handles.push(sockets.add(s));
        }
        NetTcp {
            gw,
            addrs,
            iface,
            wire,
            sockets,
            handles,
            conns: HashMap::new(),
            clients: NetClients::default(),
        }
    }

    fn listening(&self) -> usize {
        self.handles
            .iter()
            .filter(|h| self.sockets.get::<tcp::Socket>(**h).state() == tcp::State::Listen)
            .count()
    }

    /// Run the stack, then move data between sockets and connections: complete queries
    /// out to `queries`, pending answers into the sockets, finished sockets re-listen.
    fn service(
        &mut self,
        net: NetId,
        now: Instant,
        t: SmolInstant,
        queries: &mut Vec<(Client, Vec<u8>)>,
        counts: &mut TcpCounts,
    ) {
        self.iface.poll(t, &mut self.wire, &mut self.sockets);
        for &h in &self.handles {
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            match s.state() {
                tcp::State::Closed => {
                    self.conns.remove(&h);
                    let _ = s.listen(53);
                    continue;
                }
                tcp::State::Listen => continue,
                // The client is done asking; answers still pending go first.
                tcp::State::CloseWait if self.conns.get(&h).is_none_or(|c| c.outbuf.is_empty()) => {
                    s.close();
                }
                _ => {}
            }
            let Some(IpEndpoint { addr, port }) = s.remote_endpoint() else {
                continue;
            };
            let ip = IpAddr::from(addr);
            let conn = self.conns.entry(h).or_insert_with(|| {
                counts.accepted += 1;
                Conn::default()
            });
            let last = *conn.last_active.get_or_insert(now);
            while s.can_recv() && conn.inbuf.len() < MAX_MESSAGE {
                let mut buf = [0u8; 2048];
                match s.recv_slice(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => conn.inbuf.extend_from_slice(&buf[..n]),
                }
            }
            while conn.inbuf.len() >= 2 {
                let len = u16::from_be_bytes([conn.inbuf[0], conn.inbuf[1]]) as usize;
                if conn.inbuf.len() < 2 + len {
                    break;
                }
                let msg = conn.inbuf[2..2 + len].to_vec();
                conn.inbuf.drain(..2 + len);
                conn.last_active = Some(now);
                queries.push((
                    Client {
                        net,
                        addr: SocketAddr::new(ip, port),
                        transport: Transport::Tcp,
                    },
                    msg,
                ));
            }
            if !conn.outbuf.is_empty() && s.can_send() {
                if let Ok(n) = s.send_slice(&conn.outbuf) {
                    conn.outbuf.drain(..n);
                    conn.last_active = Some(now);
                }
            }
            let idle = now.saturating_duration_since(last);
            if conn.outbuf.len() > MAX_PENDING || idle >= 2 * IDLE {
                // Too much waiting, or still not gone a while after closing (answers
                // stuck in the socket behind a zero window): reset, freeing the slot.
                if !conn.outbuf.is_empty() || s.send_queue() > 0 {
                    counts.unread_reset += 1;
                }
                s.abort();
                conn.outbuf.clear();
            } else if idle >= IDLE {
                if conn.outbuf.is_empty() {
                    s.close();
                } else {
                    // Answers waiting and none taken for the idle time: not reading.
                    counts.unread_reset += 1;
                    s.abort();
                    conn.outbuf.clear();
                }
            }
        }
        self.iface.poll(t, &mut self.wire, &mut self.sockets);
    }

    /// Queue `bytes` (one DNS message) for the connection from `to`.
    fn queue_answer(&mut self, to: SocketAddr, bytes: &[u8]) -> bool {
        let want = IpEndpoint::new(IpAddress::from(to.ip()), to.port());
        let Some(&h) = self.handles.iter().find(|h| {
            let s = self.sockets.get::<tcp::Socket>(**h);
            s.remote_endpoint() == Some(want) && s.may_send()
        }) else {
            return false;
        };
        let Ok(len) = u16::try_from(bytes.len()) else {
            return false;
        };
        let conn = self.conns.entry(h).or_default();
        conn.outbuf.extend_from_slice(&len.to_be_bytes());
        conn.outbuf.extend_from_slice(bytes);
        true
    }

    /// What the stack sent: Ethernet-framed to each client's MAC and port.
    fn emit(&mut self, out: &mut impl Emit, counters: &PortCounters) {
        let mut frame = [0u8; MAX_FRAME];
        for p in self.wire.tx.drain(..) {
            if ETH_HLEN + p.len() > MAX_FRAME {
                continue;
            }
            let Some((dst, ethertype)) = destination(&p) else {
                continue;
            };
            let Some(Seen { mac, port }) = self.clients.get(dst) else {
                continue;
            };
            ethernet::Repr {
                src: self.gw.mac,
                dst: mac,
                ethertype,
            }
            .emit_into(&mut frame);
            frame[ETH_HLEN..ETH_HLEN + p.len()].copy_from_slice(&p);
            out.emit(port, &frame[..ETH_HLEN + p.len()], counters);
        }
    }
}

impl DnsTcp {
    fn clock(&mut self, now: Instant) -> SmolInstant {
        smol(*self.epoch.get_or_insert(now), now)
    }

    /// A TCP segment to gateway:53 on `net`; false if it is not a well-formed IPv4 or
    /// IPv6 packet carrying TCP. Complete queries are appended to `queries`.
    pub fn receive(
        &mut self,
        net: &Network,
        in_port: PortId,
        frame: &[u8],
        out: &mut impl Emit,
        queries: &mut Vec<(Client, Vec<u8>)>,
        now: Instant,
    ) -> bool {
        let (Some(gw), Some(addrs)) = (net.cfg.gateway, Addrs::of(&net.cfg)) else {
            return false;
        };
        // (source, its MAC, the IP packet, the TCP segment)
        let (src, mac, packet, segment) = if let Some(f) = Ipv4Frame::new(frame) {
            (
                IpAddr::V4(f.src()),
                f.src_mac(),
                f.packet_bytes(),
                f.payload(),
            )
        } else if let Some(f) = Ipv6Frame::new(frame) {
            if f.next_header() != NEXT_HEADER_TCP {
                return false;
            }
            (
                IpAddr::V6(f.src()),
                f.src_mac(),
                f.packet_bytes(),
                f.payload(),
            )
        } else {
            return false;
        };
        let t = self.clock(now);
        let id = net.cfg.id;
        let n = self
            .nets
            .entry(id)
            .or_insert_with(|| NetTcp::new(gw, addrs, t));
        if n.addrs != addrs {
            // The network's config changed (it became dual-stack, say).
            addrs.apply(&mut n.iface);
            n.addrs = addrs;
        }
        self.counts.clients_evicted += n.clients.remember(src, Seen { mac, port: in_port }, now);
        // A SYN (without ACK) and no listener left: the stack will reset it.
        let syn = wire::tcp::Packet::new_checked(segment)
            .is_ok_and(|t| t.flags() & (wire::tcp::SYN | wire::tcp::ACK) == wire::tcp::SYN);
        if syn && n.listening() == 0 {
            self.counts.refused += 1;
        }
        n.wire.rx.push_back(packet.to_vec());
        n.service(id, now, t, queries, &mut self.counts);
        n.emit(out, &self.counters);
        self.update_next_poll(now);
        true
    }

    /// The resolver's answer for a TCP client (false: its connection has gone). Queries
    /// that completed meanwhile (a client pipelining) are appended to `queries`.
    pub fn answer(
        &mut self,
        client: Client,
        bytes: &[u8],
        out: &mut impl Emit,
        queries: &mut Vec<(Client, Vec<u8>)>,
        now: Instant,
    ) -> bool {
        let t = self.clock(now);
        let Some(n) = self.nets.get_mut(&client.net) else {
            return false;
        };
        let queued = n.queue_answer(client.addr, bytes);
        if queued {
            n.service(client.net, now, t, queries, &mut self.counts);
            n.emit(out, &self.counters);
        }
        self.update_next_poll(now);
        queued
    }

    /// Timers: retransmissions, idle connections, sockets going back to listening.
    /// Returns complete queries (a pipelined client's next ones).
    pub fn poll(&mut self, out: &mut impl Emit, now: Instant) -> Vec<(Client, Vec<u8>)> {
        let t = self.clock(now);
        let mut queries = Vec::new();
        for (&id, n) in self.nets.iter_mut() {
            n.service(id, now, t, &mut queries, &mut self.counts);
            n.emit(out, &self.counters);
        }
        self.update_next_poll(now);
        queries
    }

    fn update_next_poll(&mut self, now: Instant) {
        let Some(epoch) = self.epoch else { return };
        let t = smol(epoch, now);
        let mut next: Option<Instant> = None;
        for n in self.nets.values_mut() {
            let busy = n
                .conns
                .values()
                .any(|c| !c.outbuf.is_empty() || !c.inbuf.is_empty())
                || n.listening() < LISTENERS;
            let d = n
                .iface
                .poll_delay(t, &n.sockets)
                .map(|d| Duration::from_micros(d.total_micros()));
            // Open connections are looked at at least once a second (idle timeout,
            // re-listening after close).
            let d = match (d, busy) {
                (Some(d), true) => Some(d.min(Duration::from_secs(1))),
                (None, true) => Some(Duration::from_secs(1)),
                (d, false) => d,
            };
            if let Some(d) = d {
                let at = now + d;
                next = Some(next.map_or(at, |x: Instant| x.min(at)));
            }
        }
        self.next_poll = next;
    }

    pub fn next_deadline(&self, _now: Instant) -> Option<Instant> {
        self.next_poll
    }

    pub fn remove_network(&mut self, net: NetId) {
        self.nets.remove(&net);
    }

    /// Answers waiting for their clients, over every connection.
    #[cfg(test)]
    pub fn pending_bytes(&self) -> usize {
        self.nets
            .values()
            .flat_map(|n| n.conns.values())
            .map(|c| c.outbuf.len())
            .sum()
    }
}

/// A forwarded query over TCP (the client asked over TCP) to an upstream, from the
/// uplink address: a smoltcp interface holding that address, one connection per query,
/// from the port the resolver picked for it. Its segments leave through the router's
/// ARP-resolved uplink path; the router sets aside the segments coming back to our
/// ports.
pub(crate) struct UpstreamTcp {
    iface: Interface,
    wire: Wire,
    sockets: SocketSet<'static>,
    conns: HashMap<SocketHandle, UpConn>,
    epoch: Instant,
    next_poll: Option<Instant>,
}

struct UpConn {
    to: SocketAddr,
    local_port: u16,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    started: Instant,
}

/// A connection to an upstream is given up after this (the resolver has long since
/// moved on to the next upstream or answered SERVFAIL).
const UPSTREAM_LIFETIME: Duration = Duration::from_secs(10);
/// Connections to upstreams at once; a query beyond it is not sent, and the resolver's
/// timeout moves it on (next upstream, then SERVFAIL).
const MAX_UPSTREAM_CONNS: usize = 64;

impl UpstreamTcp {
    pub fn new(ip: Ipv4Addr, prefix: u8, gateway: Ipv4Addr, now: Instant) -> UpstreamTcp {
        let mut wire = Wire::default();
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ip),
            &mut wire,
            SmolInstant::ZERO,
        );
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(ip), prefix));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(gateway);
        UpstreamTcp {
            iface,
            wire,
            sockets: SocketSet::new(Vec::new()),
            conns: HashMap::new(),
            epoch: now,
            next_poll: None,
        }
    }

    /// Open a connection from `local_port` to `to` carrying `query`; false if it
    /// cannot be opened (too many, or refused by the stack). A connection still on
    /// `local_port` is aborted first: the resolver gives a port to one query in flight
    /// at a time, so that one's query has been answered or given up.
    pub fn send(&mut self, to: SocketAddr, local_port: u16, query: &[u8], now: Instant) -> bool {
        let (IpAddr::V4(ip), Ok(len)) = (to.ip(), u16::try_from(query.len())) else {
            return false;
        };
        let stale: Vec<SocketHandle> = self
            .conns
            .iter()
            .filter(|(_, c)| c.local_port == local_port)
            .map(|(h, _)| *h)
            .collect();
        for h in stale {
            self.sockets.get_mut::<tcp::Socket>(h).abort();
            self.conns.remove(&h);
            // Its RST goes out in the poll below, then the socket goes.
            self.service(now);
            self.sockets.remove(h);
        }
        if self.conns.len() >= MAX_UPSTREAM_CONNS {
            return false;
        }
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
            tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
        );
        s.set_nagle_enabled(false);
        let remote = IpEndpoint::new(IpAddress::Ipv4(ip), to.port());
        if s.connect(self.iface.context(), remote, local_port).is_err() {
            return false;
        }
        let h = self.sockets.add(s);
        let mut outbuf = len.to_be_bytes().to_vec();
        outbuf.extend_from_slice(query);
        self.conns.insert(
            h,
            UpConn {
                to,
                local_port,
                inbuf: Vec::new(),
                outbuf,
                started: now,
            },
        );
        self.service(now);
        true
    }

    /// Whether a connection is open from local port `port`.
    #[cfg(test)]
    pub fn uses_port(&self, port: u16) -> bool {
        self.conns.values().any(|c| c.local_port == port)
    }

    /// An IP packet from the uplink for one of our connections; complete replies
    /// (from, our local port, message) are appended to `replies`.
    pub fn receive(
        &mut self,
        packet: &[u8],
        now: Instant,
        replies: &mut Vec<(SocketAddr, u16, Vec<u8>)>,
    ) {
        self.wire.rx.push_back(packet.to_vec());
        self.service_into(now, replies);
    }

    /// Timers and cleanup; complete replies are appended to `replies`.
    pub fn poll(&mut self, now: Instant, replies: &mut Vec<(SocketAddr, u16, Vec<u8>)>) {
        self.service_into(now, replies);
    }

    fn service(&mut self, now: Instant) {
        let mut replies = Vec::new();
        self.service_into(now, &mut replies);
    }

    fn service_into(&mut self, now: Instant, replies: &mut Vec<(SocketAddr, u16, Vec<u8>)>) {
        let t = smol(self.epoch, now);
        self.iface.poll(t, &mut self.wire, &mut self.sockets);
        let mut done = Vec::new();
        for (&h, c) in self.conns.iter_mut() {
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            if !c.outbuf.is_empty() && s.can_send() {
                if let Ok(n) = s.send_slice(&c.outbuf) {
                    c.outbuf.drain(..n);
                }
            }
            while s.can_recv() && c.inbuf.len() < MAX_MESSAGE {
                let mut buf = [0u8; 2048];
                match s.recv_slice(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                }
            }
            if c.inbuf.len() >= 2 {
                let len = u16::from_be_bytes([c.inbuf[0], c.inbuf[1]]) as usize;
                if c.inbuf.len() >= 2 + len {
                    replies.push((c.to, c.local_port, c.inbuf[2..2 + len].to_vec()));
                    c.inbuf.clear();
                    s.close();
                }
            }
            let expired = now.saturating_duration_since(c.started) >= UPSTREAM_LIFETIME;
            if expired {
                s.abort();
            }
            if expired || matches!(s.state(), tcp::State::Closed | tcp::State::TimeWait) {
                done.push(h);
            }
        }
        self.iface.poll(t, &mut self.wire, &mut self.sockets);
        for h in done {
            // An aborted socket's RST has gone out in the poll above.
            self.conns.remove(&h);
            self.sockets.remove(h);
        }
        self.next_poll = if self.conns.is_empty() {
            None
        } else {
            let d = self
                .iface
                .poll_delay(t, &self.sockets)
                .map_or(Duration::from_secs(1), |d| {
                    Duration::from_micros(d.total_micros())
                });
            Some(now + d.min(Duration::from_secs(1)))
        };
    }

    /// IP packets the stack sent, for the router to put on the uplink.
    pub fn take_output(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.wire.tx)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_poll
    }
}
