//! The translator a worker owns: SNAT (masquerade) for container traffic leaving by the
//! uplink, DNAT for published ports, hairpin for containers reaching a published port
//! through the external address, and ICMP errors about any of them.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::conntrack::{Dir, Key, Kind, Session, Side, Table, TcpState, Timeouts};
use crate::error::NatError;
use crate::ports::{PortRange, Ports};
use crate::published::{PortMapping, Published};
use crate::wire::{
    self, Headers, ParseError, Proto, Tuple, L4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
};

/// Limits and timeouts. `Default` gives the RFC-recommended values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatConfig {
    /// Sessions kept at most; beyond it the least recently used one is evicted.
    pub max_sessions: usize,
    /// Idle timeout of an established TCP connection (RFC 5382: at least 2 h 4 min).
    pub tcp_established: Duration,
    /// Idle timeout of an opening or closing TCP connection (RFC 5382: at least 4 min).
    pub tcp_transitory: Duration,
    /// UDP idle timeout (RFC 4787: at least 2 min, 5 min recommended).
    pub udp: Duration,
    /// ICMP echo idle timeout (RFC 5508: at least 60 s).
    pub icmp: Duration,
    /// External ports (and ICMP identifiers) SNAT may hand out.
    pub port_range: PortRange,
    /// Sessions one inside address may hold through SNAT at most, so that one
    /// container cannot take the port range and the table from the others.
    pub max_per_source: usize,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            max_sessions: 65536,
            tcp_established: Duration::from_secs(2 * 3600 + 4 * 60),
            tcp_transitory: Duration::from_secs(4 * 60),
            udp: Duration::from_secs(5 * 60),
            icmp: Duration::from_secs(60),
            port_range: PortRange::default(),
            max_per_source: 8192,
        }
    }
}

impl NatConfig {
    fn timeouts(&self) -> Timeouts {
        Timeouts {
            tcp_established: self.tcp_established,
            tcp_transitory: self.tcp_transitory,
            udp: self.udp,
            icmp: self.icmp,
        }
    }
}

/// What to do with a packet after `outbound` or `inbound`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Rewritten in place; send it `to` that side. `Side::Inside` means route it to the
    /// container owning the (new) destination address, also for hairpin traffic that
    /// came from inside.
    Translated { to: Side },
    /// Not NAT traffic: the packet is unchanged. Inbound: not for a session or a
    /// published port (the switch's own traffic, such as a ping of the uplink address).
    /// Outbound: addressed to an external address but no published port.
    NotOurs,
    /// Drop it; the reason is counted.
    Drop(DropReason),
}

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Truncated or inconsistent headers.
    Malformed,
    /// IP fragments are not reassembled, so they cannot be matched to a session.
    Fragment,
    /// A protocol other than TCP, UDP, ICMP echo and ICMP errors, from inside.
    Unsupported,
    /// No session and the packet cannot start one (TCP without SYN, an echo reply,
    /// an ICMP error about an unknown flow).
    Untracked,
    /// No external port left in the range.
    PortsExhausted,
    /// The translated tuple is in use by another session.
    Collision,
    /// The inside address holds `max_per_source` sessions already.
    SourceLimit,
}

/// Per-instance counters; sum them over workers with `add`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatCounters {
    /// Packets translated and sent outside / inside.
    pub to_outside: u64,
    pub to_inside: u64,
    /// Of those, hairpin packets (inside to inside through a published port).
    pub hairpin: u64,
    /// ICMP errors whose quoted packet was translated too.
    pub icmp_errors: u64,
    pub sessions_created: u64,
    pub sessions_expired: u64,
    /// Sessions removed early because the table was full.
    pub sessions_evicted: u64,
    pub drop_malformed: u64,
    pub drop_fragment: u64,
    pub drop_unsupported: u64,
    pub drop_untracked: u64,
    pub drop_ports_exhausted: u64,
    pub drop_collision: u64,
    /// New sessions refused: their inside address held its share already.
    #[serde(default)]
    pub drop_source_limit: u64,
}

impl NatCounters {
    /// Adds `o` (another worker's counters) into `self`.
    pub fn add(&mut self, o: &NatCounters) {
        self.to_outside += o.to_outside;
        self.to_inside += o.to_inside;
        self.hairpin += o.hairpin;
        self.icmp_errors += o.icmp_errors;
        self.sessions_created += o.sessions_created;
        self.sessions_expired += o.sessions_expired;
        self.sessions_evicted += o.sessions_evicted;
        self.drop_malformed += o.drop_malformed;
        self.drop_fragment += o.drop_fragment;
        self.drop_unsupported += o.drop_unsupported;
        self.drop_untracked += o.drop_untracked;
        self.drop_ports_exhausted += o.drop_ports_exhausted;
        self.drop_collision += o.drop_collision;
        self.drop_source_limit += o.drop_source_limit;
    }

    fn dropped(&mut self, r: DropReason) {
        let c = match r {
            DropReason::Malformed => &mut self.drop_malformed,
            DropReason::Fragment => &mut self.drop_fragment,
            DropReason::Unsupported => &mut self.drop_unsupported,
            DropReason::Untracked => &mut self.drop_untracked,
            DropReason::PortsExhausted => &mut self.drop_ports_exhausted,
            DropReason::Collision => &mut self.drop_collision,
            DropReason::SourceLimit => &mut self.drop_source_limit,
        };
        *c += 1;
    }
}

/// Source and destination of a session direction, for listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowTuple {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

impl From<Tuple> for FlowTuple {
    fn from(t: Tuple) -> Self {
        FlowTuple {
            src: SocketAddrV4::new(t.src, t.sport),
            dst: SocketAddrV4::new(t.dst, t.dport),
        }
    }
}

/// A session's state for listings: the TCP state, or for UDP and ICMP whether a reply
/// was seen. Serialized as the upper-case name (`"ESTABLISHED"`, `"UNREPLIED"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionState {
    SynSent,
    SynRecv,
    Established,
    FinWait,
    TimeWait,
    Close,
    Unreplied,
    Replied,
}

impl From<TcpState> for SessionState {
    fn from(t: TcpState) -> Self {
        match t {
            TcpState::SynSent => SessionState::SynSent,
            TcpState::SynRecv => SessionState::SynRecv,
            TcpState::Established => SessionState::Established,
            TcpState::FinWait => SessionState::FinWait,
            TcpState::TimeWait => SessionState::TimeWait,
            TcpState::Close => SessionState::Close,
        }
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionState::SynSent => "SYN_SENT",
            SessionState::SynRecv => "SYN_RECV",
            SessionState::Established => "ESTABLISHED",
            SessionState::FinWait => "FIN_WAIT",
            SessionState::TimeWait => "TIME_WAIT",
            SessionState::Close => "CLOSE",
            SessionState::Unreplied => "UNREPLIED",
            SessionState::Replied => "REPLIED",
        })
    }
}

/// One line of `vswitchctl conntrack`. For ICMP the identifier is the port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    pub proto: Proto,
    pub kind: Kind,
    /// The first packet as it arrived.
    pub original: FlowTuple,
    /// The first packet as it left.
    pub translated: FlowTuple,
    pub state: SessionState,
    pub idle_secs: u64,
    /// Seconds until the session expires unless traffic refreshes it.
    pub expires_in_secs: u64,
}

/// Connection tracking and translation for one worker. Not shared: each worker owns
/// one, with a disjoint `port_range` when several use the same external address (the
/// caller steers a reply to the worker whose range holds its destination port).
pub struct Nat {
    cfg: NatConfig,
    timeouts: Timeouts,
    /// The switch's external addresses; the first is the SNAT source.
    external: Vec<Ipv4Addr>,
    table: Table,
    ports: Ports,
    published: Published,
    counters: NatCounters,
    /// Sessions holding an external port, per inside address (`max_per_source`).
    per_source: HashMap<Ipv4Addr, usize>,
}

impl Nat {
    /// A translator masquerading as `external_ip`.
    pub fn new(cfg: NatConfig, external_ip: Ipv4Addr) -> Result<Nat, NatError> {
        if cfg.max_sessions == 0 {
            return Err(NatError::InvalidConfig("max_sessions must be at least 1"));
        }
        if cfg.port_range.first > cfg.port_range.last || cfg.port_range.last == 0 {
            return Err(NatError::InvalidConfig(
                "port_range must be first <= last with a non-zero port",
            ));
        }
        Ok(Nat {
            timeouts: cfg.timeouts(),
            table: Table::with_capacity(cfg.max_sessions),
            ports: Ports::new(cfg.port_range),
            cfg,
            external: vec![external_ip],
            published: Published::default(),
            counters: NatCounters::default(),
            per_source: HashMap::new(),
        })
    }

    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    /// The SNAT source address.
    pub fn external_ip(&self) -> Ipv4Addr {
        self.external[0]
    }

    /// Another address of the switch that published ports without a host address
    /// answer on.
    pub fn add_external_ip(&mut self, ip: Ipv4Addr) {
        if !self.external.contains(&ip) {
            self.external.push(ip);
        }
    }

    fn is_external(&self, ip: Ipv4Addr) -> bool {
        self.external.contains(&ip)
    }

    /// Publishes a port. Fails with "port is already allocated" when a mapping with the
    /// same protocol and host port exists on the same or any (`None`) host address.
    pub fn add_port_mapping(&mut self, m: PortMapping) -> Result<(), NatError> {
        self.published.add(m)
    }

    /// Unpublishes a port and ends the sessions made through it. Returns the mapping.
    pub fn remove_port_mapping(
        &mut self,
        proto: Proto,
        host_ip: Option<Ipv4Addr>,
        host_port: u16,
    ) -> Option<PortMapping> {
        let m = self.published.remove(proto, host_ip, host_port)?;
        let doomed: Vec<u32> = self
            .table
            .iter()
            .filter(|(_, s)| {
                s.proto == proto
                    && s.kind != Kind::Snat
                    && s.orig.dport == host_port
                    && host_ip.is_none_or(|ip| ip == s.orig.dst)
                    && s.xlat.dst == m.target_ip
                    && s.xlat.dport == m.target_port
            })
            .map(|(i, _)| i)
            .collect();
        for i in doomed {
            self.remove(i);
        }
        Some(m)
    }

    /// The published ports.
    pub fn port_mappings(&self) -> impl Iterator<Item = &PortMapping> {
        self.published.iter()
    }

    /// A packet from a container (starting at its IPv4 header) leaving through the
    /// gateway to a non-container address, including the switch's external addresses
    /// (hairpin). SNAT, or the reply of a DNAT session; rewrites it in place.
    pub fn outbound(&mut self, pkt: &mut [u8], now: Instant) -> Verdict {
        let v = self.outbound_inner(pkt, now);
        self.count(v);
        v
    }

    /// A packet from the uplink addressed to the switch: the reply of a SNAT session, or
    /// traffic to a published port (DNAT); rewrites it in place.
    pub fn inbound(&mut self, pkt: &mut [u8], now: Instant) -> Verdict {
        let v = self.inbound_inner(pkt, now);
        self.count(v);
        v
    }

    fn count(&mut self, v: Verdict) {
        match v {
            Verdict::Translated { to: Side::Outside } => self.counters.to_outside += 1,
            Verdict::Translated { to: Side::Inside } => self.counters.to_inside += 1,
            Verdict::NotOurs => {}
            Verdict::Drop(r) => self.counters.dropped(r),
        }
    }

    fn outbound_inner(&mut self, pkt: &mut [u8], now: Instant) -> Verdict {
        let h = match wire::parse(pkt, false) {
            Ok(h) => h,
            Err(ParseError::Malformed) => return Verdict::Drop(DropReason::Malformed),
            Err(ParseError::Fragment) => return Verdict::Drop(DropReason::Fragment),
            Err(ParseError::Unsupported) => return Verdict::Drop(DropReason::Unsupported),
        };
        if h.l4 == L4::IcmpError {
            return self
                .icmp_error(pkt, &h, Side::Inside, now)
                .unwrap_or(Verdict::Drop(DropReason::Untracked));
        }
        if let Some((i, dir)) = self.lookup(Side::Inside, h.proto, h.tuple, now) {
            return self.forward(pkt, &h, i, dir, now);
        }
        if !starts_session(&h) {
            return Verdict::Drop(DropReason::Untracked);
        }
        let t = h.tuple;
        if h.proto != Proto::Icmp {
            let external = &self.external;
            if let Some(m) = self
                .published
                .find(h.proto, t.dst, t.dport, |ip| external.contains(&ip))
                .copied()
            {
                return self.snat(pkt, &h, Some(m), now);
            }
        }
        if self.is_external(t.dst) {
            return Verdict::NotOurs;
        }
        self.snat(pkt, &h, None, now)
    }

    fn inbound_inner(&mut self, pkt: &mut [u8], now: Instant) -> Verdict {
        let h = match wire::parse(pkt, false) {
            Ok(h) => h,
            Err(ParseError::Malformed) => return Verdict::Drop(DropReason::Malformed),
            Err(ParseError::Fragment) => return Verdict::Drop(DropReason::Fragment),
            Err(ParseError::Unsupported) => return Verdict::NotOurs,
        };
        if h.l4 == L4::IcmpError {
            return self
                .icmp_error(pkt, &h, Side::Outside, now)
                .unwrap_or(Verdict::NotOurs);
        }
        if let Some((i, dir)) = self.lookup(Side::Outside, h.proto, h.tuple, now) {
            return self.forward(pkt, &h, i, dir, now);
        }
        let t = h.tuple;
        let external = &self.external;
        let Some(m) = self
            .published
            .find(h.proto, t.dst, t.dport, |ip| external.contains(&ip))
            .copied()
        else {
            return Verdict::NotOurs;
        };
        if !starts_session(&h) {
            return Verdict::Drop(DropReason::Untracked);
        }
        let xlat = Tuple {
            dst: m.target_ip,
            dport: m.target_port,
            ..t
        };
        let s = Session::new(h.proto, Kind::Dnat, t, xlat, now);
        match self.create(s) {
            Ok(i) => self.forward(pkt, &h, i, Dir::Original, now),
            Err(r) => Verdict::Drop(r),
        }
    }

    /// A new session whose source is translated to the external address and a port
    /// acquired for it; the port goes back when the session cannot be created. With
    /// `hairpin`, a container reaching a published port through the external address:
    /// the destination is translated to the target too, so the target's replies come
    /// back to the switch (and are translated to what the client expects).
    fn snat(
        &mut self,
        pkt: &mut [u8],
        h: &Headers,
        hairpin: Option<PortMapping>,
        now: Instant,
    ) -> Verdict {
        let t = h.tuple;
        if self.per_source.get(&t.src).copied().unwrap_or(0) >= self.cfg.max_per_source {
            return Verdict::Drop(DropReason::SourceLimit);
        }
        let Some(port) = self.acquire_port(h.proto, t.src, t.sport) else {
            return Verdict::Drop(DropReason::PortsExhausted);
        };
        let xlat = Tuple {
            src: self.external[0],
            sport: port,
            ..t
        };
        let (kind, xlat) = match hairpin {
            None => (Kind::Snat, xlat),
            Some(m) => (
                Kind::Hairpin,
                Tuple {
                    dst: m.target_ip,
                    dport: m.target_port,
                    ..xlat
                },
            ),
        };
        let s = Session::new(h.proto, kind, t, xlat, now);
        match self.create(s) {
            Ok(i) => self.forward(pkt, h, i, Dir::Original, now),
            Err(r) => {
                self.ports.release(h.proto, (t.src, t.sport));
                Verdict::Drop(r)
            }
        }
    }

    fn acquire_port(&mut self, proto: Proto, ip: Ipv4Addr, port: u16) -> Option<u16> {
        let published = &self.published;
        // A published port stays with DNAT (only TCP and UDP are published).
        self.ports
            .acquire(proto, (ip, port), |p| published.is_published(proto, p))
    }

    /// Inserts `s`, evicting the least recently used session when the table is full.
    fn create(&mut self, s: Session) -> Result<u32, DropReason> {
        if let Some(i) = self.table.clashes(&s) {
            if self.table.get(i).expired(s.last_seen, &self.timeouts) {
                self.remove(i);
                self.counters.sessions_expired += 1;
            } else {
                return Err(DropReason::Collision);
            }
            if self.table.clashes(&s).is_some() {
                return Err(DropReason::Collision);
            }
        }
        if self.table.len() >= self.cfg.max_sessions {
            if let Some(old) = self.table.oldest() {
                if self.table.get(old).expired(s.last_seen, &self.timeouts) {
                    self.counters.sessions_expired += 1;
                } else {
                    self.counters.sessions_evicted += 1;
                }
                self.remove(old);
            }
        }
        self.counters.sessions_created += 1;
        if s.holds_port {
            *self.per_source.entry(s.orig.src).or_insert(0) += 1;
        }
        Ok(self.table.insert(s))
    }

    fn remove(&mut self, i: u32) {
        let s = self.table.remove(i);
        if s.holds_port {
            self.ports.release(s.proto, (s.orig.src, s.orig.sport));
            if let Some(n) = self.per_source.get_mut(&s.orig.src) {
                *n -= 1;
                if *n == 0 {
                    self.per_source.remove(&s.orig.src);
                }
            }
        }
    }

    /// The live session a packet arriving from `side` belongs to. An expired one is
    /// removed here, so correctness does not depend on how often `expire` runs.
    fn lookup(
        &mut self,
        side: Side,
        proto: Proto,
        tuple: Tuple,
        now: Instant,
    ) -> Option<(u32, Dir)> {
        let (i, dir) = self.table.lookup(&Key { side, proto, tuple })?;
        if self.table.get(i).expired(now, &self.timeouts) {
            self.remove(i);
            self.counters.sessions_expired += 1;
            return None;
        }
        Some((i, dir))
    }

    /// Translates a packet of session `i` travelling in `dir` and updates its state.
    fn forward(&mut self, pkt: &mut [u8], h: &Headers, i: u32, dir: Dir, now: Instant) -> Verdict {
        let s = self.table.get_mut(i);
        if let L4::Tcp { flags } = h.l4 {
            let mut fins = s.fins;
            s.tcp = s.tcp.next(dir, flags, &mut fins);
            s.fins = fins;
        }
        if dir == Dir::Reply {
            s.replied = true;
        }
        let new = s.translate(dir);
        let to = s.egress(dir);
        if s.kind == Kind::Hairpin {
            self.counters.hairpin += 1;
        }
        self.table.touch(i, now);
        wire::rewrite(pkt, h, &new);
        Verdict::Translated { to }
    }

    /// An ICMP error from `side` quoting a packet the switch translated: the quoted
    /// packet is put back as it was before translation (IP and transport checksums
    /// included), and the outer header is addressed to the quoted packet's sender.
    /// None when the quote matches no session.
    fn icmp_error(
        &mut self,
        pkt: &mut [u8],
        h: &Headers,
        side: Side,
        now: Instant,
    ) -> Option<Verdict> {
        let q = wire::quote_offset(h);
        let quote = pkt.get(q..h.end)?;
        let Ok(inner) = wire::parse(quote, true) else {
            return Some(Verdict::Drop(DropReason::Malformed));
        };
        // The quoted packet went out towards `side`; a packet coming back from `side`
        // in the same flow carries its reversed tuple.
        let (i, dir) = self.lookup(side, inner.proto, inner.tuple.reversed(), now)?;
        let s = self.table.get(i);
        let back = s.translate(dir);
        let to = s.egress(dir);
        let new_inner = back.reversed();
        let outer = Tuple {
            // The error may come from the quoted packet's destination itself; it then
            // speaks for the address the sender thinks it talked to.
            src: if h.tuple.src == inner.tuple.dst {
                new_inner.dst
            } else {
                h.tuple.src
            },
            sport: 0,
            dst: new_inner.src,
            dport: 0,
        };
        let d = match pkt.get_mut(q..h.end) {
            Some(quote) => wire::rewrite(quote, &inner, &new_inner),
            None => return Some(Verdict::Drop(DropReason::Malformed)),
        };
        wire::rewrite(pkt, h, &outer);
        wire::update_icmp_checksum(pkt, h, d);
        self.counters.icmp_errors += 1;
        Some(Verdict::Translated { to })
    }

    /// Whether an inside packet of `proto` from `src` to `dst` belongs to a live session
    /// (for TCP: an established one); with `touch`, the session counts as just used. For
    /// packets that were translated elsewhere (the kernel repeating this session's
    /// translation) and never passed through `outbound`.
    pub fn inside_session(
        &mut self,
        proto: Proto,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        touch: bool,
        now: Instant,
    ) -> bool {
        let Some(i) = self.inside_flow(proto, (src, dst), touch, now) else {
            return false;
        };
        proto != Proto::Tcp || self.table.get(i).tcp.is_established()
    }

    /// The live session of an inside flow (source, destination), refreshed with `touch`.
    fn inside_flow(
        &mut self,
        proto: Proto,
        (src, dst): (SocketAddrV4, SocketAddrV4),
        touch: bool,
        now: Instant,
    ) -> Option<u32> {
        let tuple = Tuple {
            src: *src.ip(),
            sport: src.port(),
            dst: *dst.ip(),
            dport: dst.port(),
        };
        let (i, _) = self.lookup(Side::Inside, proto, tuple, now)?;
        if touch {
            self.table.touch(i, now);
        }
        Some(i)
    }

    /// A TCP session whose SYN went through `inbound` but whose handshake the kernel
    /// carried on (its SYN+ACK and ACK were translated elsewhere): whether it is still
    /// live. With `done` (both directions carried packets after the SYN) a session
    /// still opening counts as established from now on; with `touch`, as just used.
    pub fn kernel_opened(
        &mut self,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        done: bool,
        touch: bool,
        now: Instant,
    ) -> bool {
        let Some(i) = self.inside_flow(Proto::Tcp, (src, dst), touch, now) else {
            return false;
        };
        let s = self.table.get_mut(i);
        if done && matches!(s.tcp, TcpState::SynSent | TcpState::SynRecv) {
            s.tcp = TcpState::Established;
            s.replied = true;
        }
        true
    }

    /// Removes sessions idle longer than their timeout. Returns how many. Call it every
    /// second or so between bursts; lookups also drop expired sessions they meet.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        let mut cur = self.table.oldest();
        while let Some(i) = cur {
            let next = self.table.iter_next(i);
            if self.table.get(i).expired(now, &self.timeouts) {
                self.remove(i);
                n += 1;
            }
            cur = next;
        }
        self.counters.sessions_expired += n as u64;
        n
    }

    /// Removes every session of the container at `inside` (its SNAT sessions, the
    /// published-port sessions delivered to it, its hairpin sessions either way), when
    /// its endpoint goes: a new endpoint given the same address must not receive the old
    /// one's replies. Returns how many; they count as expired.
    pub fn flush_inside(&mut self, inside: Ipv4Addr) -> usize {
        let mut n = 0;
        let mut cur = self.table.oldest();
        while let Some(i) = cur {
            let next = self.table.iter_next(i);
            let s = self.table.get(i);
            let theirs = match s.kind {
                Kind::Snat => s.orig.src == inside,
                Kind::Dnat => s.xlat.dst == inside,
                Kind::Hairpin => s.orig.src == inside || s.xlat.dst == inside,
            };
            if theirs {
                self.remove(i);
                n += 1;
            }
            cur = next;
        }
        self.counters.sessions_expired += n as u64;
        n
    }

    /// Number of sessions in the table.
    pub fn session_count(&self) -> usize {
        self.table.len()
    }

    /// A snapshot of every session, least recently used first.
    pub fn sessions(&self, now: Instant) -> Vec<SessionRow> {
        self.table
            .iter()
            .map(|(_, s)| {
                let idle = s.idle(now);
                SessionRow {
                    proto: s.proto,
                    kind: s.kind,
                    original: s.orig.into(),
                    translated: s.xlat.into(),
                    state: match (s.proto, s.replied) {
                        (Proto::Tcp, _) => s.tcp.into(),
                        (_, true) => SessionState::Replied,
                        (_, false) => SessionState::Unreplied,
                    },
                    idle_secs: idle.as_secs(),
                    expires_in_secs: s.timeout(&self.timeouts).saturating_sub(idle).as_secs(),
                }
            })
            .collect()
    }

    pub fn counters(&self) -> NatCounters {
        self.counters
    }
}

/// Whether a packet with no session may start one: TCP only with a bare SYN (RFC 5382
/// leaves mid-stream pickup optional; refusing it keeps stray segments from allocating
/// ports), UDP always, ICMP only with an echo request.
fn starts_session(h: &Headers) -> bool {
    match h.l4 {
        L4::Tcp { flags } => flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN,
        L4::Udp => true,
        L4::IcmpEcho { reply } => !reply,
        L4::IcmpError => false,
    }
}

#[cfg(test)]
mod tests;
