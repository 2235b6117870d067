//! The translator a worker owns: SNAT (masquerade) for container traffic leaving by the
//! uplink, DNAT for published ports, hairpin for containers reaching a published port
//! through the external address, and ICMP errors about any of them; for IPv4 and IPv6
//! (NAT66) alike, each family with its own external addresses, sessions and ports, the
//! published ports, limits and counters shared.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use ::wire::Delta;

use crate::conntrack::{Dir, Key, Kind, Session, Side, Table, TcpState, Timeouts};
use crate::error::NatError;
use crate::family::Family;
use crate::ports::{PortRange, Ports};
use crate::published::{PortMapping, Published};
use crate::wire::{
    self, Headers, ParseError, Proto, Tuple, L4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
};

/// Limits and timeouts. `Default` gives the RFC-recommended values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatConfig {
    /// Sessions kept at most, IPv4 and IPv6 together; beyond it the least recently
    /// used one is evicted.
    pub max_sessions: usize,
    /// Idle timeout of an established TCP connection (RFC 5382: at least 2 h 4 min).
    pub tcp_established: Duration,
    /// Idle timeout of an opening or closing TCP connection (RFC 5382: at least 4 min).
    pub tcp_transitory: Duration,
    /// UDP idle timeout (RFC 4787: at least 2 min, 5 min recommended).
    pub udp: Duration,
    /// ICMP echo idle timeout (RFC 5508: at least 60 s).
    pub icmp: Duration,
    /// External ports (and ICMP identifiers) SNAT may hand out, in each family.
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
    /// IP fragments (IPv6: a fragment header) are not reassembled, so they cannot be
    /// matched to a session.
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
    /// An IPv6 extension header other than a fragment header behind the fixed header,
    /// from inside: extension headers are not walked, so the transport header is not
    /// found.
    ExtensionHeader,
    /// IPv6 UDP with a checksum of 0, which IPv6 does not allow (RFC 8200 8.1).
    UdpZeroChecksum,
    /// An IPv6 packet while the NAT has no IPv6 external address.
    NoExternalAddress,
}

/// Per-instance counters, IPv4 and IPv6 together; sum them over workers with `add`.
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
    #[serde(default)]
    pub drop_extension_header: u64,
    #[serde(default)]
    pub drop_udp_zero_checksum: u64,
    /// IPv6 packets while no IPv6 external address was configured.
    #[serde(default)]
    pub drop_no_external_address: u64,
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
        self.drop_extension_header += o.drop_extension_header;
        self.drop_udp_zero_checksum += o.drop_udp_zero_checksum;
        self.drop_no_external_address += o.drop_no_external_address;
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
            DropReason::ExtensionHeader => &mut self.drop_extension_header,
            DropReason::UdpZeroChecksum => &mut self.drop_udp_zero_checksum,
            DropReason::NoExternalAddress => &mut self.drop_no_external_address,
        };
        *c += 1;
    }
}

/// Source and destination of a session direction, for listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowTuple {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

impl<A: Family> From<Tuple<A>> for FlowTuple {
    fn from(t: Tuple<A>) -> Self {
        FlowTuple {
            src: SocketAddr::new(t.src.into(), t.sport),
            dst: SocketAddr::new(t.dst.into(), t.dport),
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

/// One address family's part of a [`Nat`]: its external addresses, sessions and
/// external ports.
struct Af<A> {
    /// The switch's external addresses of the family; the first is the SNAT source.
    /// Empty: the family is not translated (IPv6 without an IPv6 uplink address).
    external: Vec<A>,
    table: Table<A>,
    ports: Ports<A>,
    /// Sessions holding an external port, per inside address (`max_per_source`).
    per_source: HashMap<A, usize>,
}

impl<A: Family> Af<A> {
    fn new(cfg: &NatConfig, external: Option<A>, table_capacity: usize) -> Self {
        Af {
            external: external.into_iter().collect(),
            table: Table::with_capacity(table_capacity),
            ports: Ports::new(cfg.port_range),
            per_source: HashMap::new(),
        }
    }

    fn is_external(&self, ip: A) -> bool {
        self.external.contains(&ip)
    }

    fn add_external(&mut self, ip: A) {
        if !self.external.contains(&ip) {
            self.external.push(ip);
        }
    }

    /// Removes session `i`, giving back its external port.
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

    /// When the least recently used session was last used.
    fn oldest_seen(&self) -> Option<Instant> {
        self.table.oldest().map(|i| self.table.get(i).last_seen)
    }
}

/// Both families' parts of a [`Nat`].
struct Stacks {
    v4: Af<Ipv4Addr>,
    v6: Af<Ipv6Addr>,
}

impl Stacks {
    fn get<A: Stack>(&self) -> &Af<A> {
        A::of(self)
    }

    fn get_mut<A: Stack>(&mut self) -> &mut Af<A> {
        A::of_mut(self)
    }
}

/// How the family-generic paths of [`Nat`] reach their family's part.
trait Stack: Family {
    fn of(s: &Stacks) -> &Af<Self>;
    fn of_mut(s: &mut Stacks) -> &mut Af<Self>;
}

impl Stack for Ipv4Addr {
    fn of(s: &Stacks) -> &Af<Self> {
        &s.v4
    }
    fn of_mut(s: &mut Stacks) -> &mut Af<Self> {
        &mut s.v4
    }
}

impl Stack for Ipv6Addr {
    fn of(s: &Stacks) -> &Af<Self> {
        &s.v6
    }
    fn of_mut(s: &mut Stacks) -> &mut Af<Self> {
        &mut s.v6
    }
}

/// Whether `pkt` is an IPv6 packet (its version nibble); anything else is taken as
/// IPv4 and refused there if it is not.
fn is_ipv6(pkt: &[u8]) -> bool {
    pkt.first().is_some_and(|b| b >> 4 == 6)
}

/// What becomes of a packet from `from` that could not be parsed: what the switch
/// cannot translate from inside is dropped; from outside, a protocol it does not
/// translate is the switch's own business.
fn unparsed(e: ParseError, from: Side) -> Verdict {
    Verdict::Drop(match (e, from) {
        (ParseError::Malformed, _) => DropReason::Malformed,
        (ParseError::Fragment, _) => DropReason::Fragment,
        (ParseError::ZeroChecksum, _) => DropReason::UdpZeroChecksum,
        (ParseError::Unsupported, Side::Inside) => DropReason::Unsupported,
        (ParseError::ExtensionHeader, Side::Inside) => DropReason::ExtensionHeader,
        (ParseError::Unsupported | ParseError::ExtensionHeader, Side::Outside) => {
            return Verdict::NotOurs
        }
    })
}

/// Connection tracking and translation for one worker. Not shared: each worker owns
/// one, with a disjoint `port_range` when several use the same external address (the
/// caller steers a reply to the worker whose range holds its destination port).
pub struct Nat {
    cfg: NatConfig,
    timeouts: Timeouts,
    stacks: Stacks,
    published: Published,
    counters: NatCounters,
}

impl Nat {
    /// New idle timeouts for UDP and established TCP sessions (a configuration
    /// reload): sessions are judged by them from the next expiry on.
    pub fn set_timeouts(&mut self, udp: std::time::Duration, tcp_established: std::time::Duration) {
        self.cfg.udp = udp;
        self.cfg.tcp_established = tcp_established;
        self.timeouts = self.cfg.timeouts();
    }

    /// A translator masquerading as `external_ip`; IPv6 is translated once it has an
    /// IPv6 address too ([`Nat::set_external_ip6`]).
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
            stacks: Stacks {
                v4: Af::new(&cfg, Some(external_ip), cfg.max_sessions),
                // Grown as IPv6 sessions come: most hosts have none.
                v6: Af::new(&cfg, None, 0),
            },
            cfg,
            published: Published::default(),
            counters: NatCounters::default(),
        })
    }

    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    /// The IPv4 SNAT source address.
    pub fn external_ip(&self) -> Ipv4Addr {
        self.stacks.v4.external[0]
    }

    /// The IPv6 SNAT source address, if IPv6 is translated.
    pub fn external_ip6(&self) -> Option<Ipv6Addr> {
        self.stacks.v6.external.first().copied()
    }

    /// Makes `ip` the IPv6 SNAT source and only IPv6 external address, or with `None`
    /// stops translating IPv6 (its packets are then dropped, `NoExternalAddress`).
    /// When the source changes, every IPv6 session ends (they count as expired): their
    /// translations name an address the switch may no longer have.
    pub fn set_external_ip6(&mut self, ip: Option<Ipv6Addr>) {
        if self.external_ip6() != ip {
            let n = self.remove_where::<Ipv6Addr>(|_| true);
            self.counters.sessions_expired += n as u64;
        }
        self.stacks.v6.external = ip.into_iter().collect();
    }

    /// Another address of the switch that published ports without a host address
    /// answer on. An IPv6 address while there is none becomes the IPv6 SNAT source.
    pub fn add_external_ip(&mut self, ip: impl Into<IpAddr>) {
        match ip.into() {
            IpAddr::V4(a) => self.stacks.v4.add_external(a),
            IpAddr::V6(a) => self.stacks.v6.add_external(a),
        }
    }

    /// Publishes a port. Fails with "port is already allocated" when a mapping of the
    /// same family with the same protocol and host port exists on the same or any
    /// (`None`) host address, and with `FamilyMismatch` when the host and target
    /// addresses are of different families.
    pub fn add_port_mapping(&mut self, m: PortMapping) -> Result<(), NatError> {
        self.published.add(m)
    }

    /// Unpublishes the port bound where `m` is (its protocol, host address and port,
    /// and its target's family) and ends the sessions made through it. Returns the
    /// mapping removed.
    pub fn remove_port_mapping(&mut self, m: &PortMapping) -> Option<PortMapping> {
        let m = self.published.remove(m)?;
        match m.target_ip {
            IpAddr::V4(_) => self.unpublish::<Ipv4Addr>(&m),
            IpAddr::V6(_) => self.unpublish::<Ipv6Addr>(&m),
        };
        Some(m)
    }

    /// Ends the DNAT and hairpin sessions made through `m`, of family `A`.
    fn unpublish<A: Stack>(&mut self, m: &PortMapping) -> usize {
        let Some((ip, port)) = m.target::<A>() else {
            return 0;
        };
        let host = m.host_ip.and_then(A::from_ip);
        self.remove_where::<A>(|s| {
            s.proto == m.proto
                && s.kind != Kind::Snat
                && s.orig.dport == m.host_port
                && host.is_none_or(|h| h == s.orig.dst)
                && s.xlat.dst == ip
                && s.xlat.dport == port
        })
    }

    /// The published ports.
    pub fn port_mappings(&self) -> impl Iterator<Item = &PortMapping> {
        self.published.iter()
    }

    /// A packet from a container (starting at its IP header, IPv4 or IPv6 by its
    /// version) leaving through the gateway to a non-container address, including the
    /// switch's external addresses (hairpin). SNAT, or the reply of a DNAT session;
    /// rewrites it in place.
    pub fn outbound(&mut self, pkt: &mut [u8], now: Instant) -> Verdict {
        let v = if is_ipv6(pkt) {
            self.outbound_as::<Ipv6Addr>(pkt, now)
        } else {
            self.outbound_as::<Ipv4Addr>(pkt, now)
        };
        self.count(v);
        v
    }

    /// A packet from the uplink (IPv4 or IPv6) addressed to the switch: the reply of a
    /// SNAT session, or traffic to a published port (DNAT); rewrites it in place.
    pub fn inbound(&mut self, pkt: &mut [u8], now: Instant) -> Verdict {
        let v = if is_ipv6(pkt) {
            self.inbound_as::<Ipv6Addr>(pkt, now)
        } else {
            self.inbound_as::<Ipv4Addr>(pkt, now)
        };
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

    fn outbound_as<A: Stack>(&mut self, pkt: &mut [u8], now: Instant) -> Verdict {
        if self.stacks.get::<A>().external.is_empty() {
            return Verdict::Drop(DropReason::NoExternalAddress);
        }
        let h = match wire::parse_as::<A>(pkt, false) {
            Ok(h) => h,
            Err(e) => return unparsed(e, Side::Inside),
        };
        if h.l4 == L4::IcmpError {
            return self
                .icmp_error(pkt, &h, Side::Inside, now)
                .unwrap_or(Verdict::Drop(DropReason::Untracked));
        }
        if let Some(found) = self.lookup(Side::Inside, h.proto, h.tuple, now) {
            return self.forward(pkt, &h, found, now);
        }
        if !starts_session(&h) {
            return Verdict::Drop(DropReason::Untracked);
        }
        let t = h.tuple;
        if h.proto != Proto::Icmp {
            if let Some(target) = self.published_target(h.proto, t.dst, t.dport) {
                return self.snat(pkt, &h, Some(target), now);
            }
        }
        if self.stacks.get::<A>().is_external(t.dst) {
            return Verdict::NotOurs;
        }
        self.snat(pkt, &h, None, now)
    }

    fn inbound_as<A: Stack>(&mut self, pkt: &mut [u8], now: Instant) -> Verdict {
        if self.stacks.get::<A>().external.is_empty() {
            return Verdict::Drop(DropReason::NoExternalAddress);
        }
        let h = match wire::parse_as::<A>(pkt, false) {
            Ok(h) => h,
            Err(e) => return unparsed(e, Side::Outside),
        };
        if h.l4 == L4::IcmpError {
            return self
                .icmp_error(pkt, &h, Side::Outside, now)
                .unwrap_or(Verdict::NotOurs);
        }
        if let Some(found) = self.lookup(Side::Outside, h.proto, h.tuple, now) {
            return self.forward(pkt, &h, found, now);
        }
        let t = h.tuple;
        let Some((ip, port)) = self.published_target(h.proto, t.dst, t.dport) else {
            return Verdict::NotOurs;
        };
        if !starts_session(&h) {
            return Verdict::Drop(DropReason::Untracked);
        }
        let xlat = Tuple {
            dst: ip,
            dport: port,
            ..t
        };
        let s = Session::new(h.proto, Kind::Dnat, t, xlat, now);
        match self.create(s) {
            Ok(i) => self.forward(pkt, &h, (i, Dir::Original), now),
            Err(r) => Verdict::Drop(r),
        }
    }

    /// The target a packet to `dst:port` is published to, if any.
    fn published_target<A: Stack>(&self, proto: Proto, dst: A, port: u16) -> Option<(A, u16)> {
        let af = self.stacks.get::<A>();
        self.published
            .find(proto, dst, port, |ip| af.is_external(ip))
    }

    /// A new session whose source is translated to the external address and a port
    /// acquired for it; the port goes back when the session cannot be created. With
    /// `hairpin` (a published port's target), a container reaching a published port
    /// through the external address: the destination is translated to the target too,
    /// so the target's replies come back to the switch (and are translated to what the
    /// client expects).
    fn snat<A: Stack>(
        &mut self,
        pkt: &mut [u8],
        h: &Headers<A>,
        hairpin: Option<(A, u16)>,
        now: Instant,
    ) -> Verdict {
        let t = h.tuple;
        let af = self.stacks.get_mut::<A>();
        if af.per_source.get(&t.src).copied().unwrap_or(0) >= self.cfg.max_per_source {
            return Verdict::Drop(DropReason::SourceLimit);
        }
        let published = &self.published;
        // A published port stays with DNAT (only TCP and UDP are published).
        let Some(port) = af.ports.acquire(h.proto, (t.src, t.sport), |p| {
            published.is_published::<A>(h.proto, p)
        }) else {
            return Verdict::Drop(DropReason::PortsExhausted);
        };
        let xlat = Tuple {
            src: af.external[0],
            sport: port,
            ..t
        };
        let (kind, xlat) = match hairpin {
            None => (Kind::Snat, xlat),
            Some((ip, port)) => (
                Kind::Hairpin,
                Tuple {
                    dst: ip,
                    dport: port,
                    ..xlat
                },
            ),
        };
        let s = Session::new(h.proto, kind, t, xlat, now);
        match self.create(s) {
            Ok(i) => self.forward(pkt, h, (i, Dir::Original), now),
            Err(r) => {
                let af = self.stacks.get_mut::<A>();
                af.ports.release(h.proto, (t.src, t.sport));
                Verdict::Drop(r)
            }
        }
    }

    /// Inserts `s`, evicting the least recently used session (of either family) when
    /// the table is full.
    fn create<A: Stack>(&mut self, s: Session<A>) -> Result<u32, DropReason> {
        let af = self.stacks.get_mut::<A>();
        if let Some(i) = af.table.clashes(&s) {
            if af.table.get(i).expired(s.last_seen, &self.timeouts) {
                af.remove(i);
                self.counters.sessions_expired += 1;
            } else {
                return Err(DropReason::Collision);
            }
            if af.table.clashes(&s).is_some() {
                return Err(DropReason::Collision);
            }
        }
        if self.session_count() >= self.cfg.max_sessions {
            let (v4, v6) = (self.stacks.v4.oldest_seen(), self.stacks.v6.oldest_seen());
            if v6.is_some_and(|b| v4.is_none_or(|a| b < a)) {
                self.evict_oldest::<Ipv6Addr>(s.last_seen);
            } else {
                self.evict_oldest::<Ipv4Addr>(s.last_seen);
            }
        }
        self.counters.sessions_created += 1;
        let af = self.stacks.get_mut::<A>();
        if s.holds_port {
            *af.per_source.entry(s.orig.src).or_insert(0) += 1;
        }
        Ok(af.table.insert(s))
    }

    /// Removes family `A`'s least recently used session to make room.
    fn evict_oldest<A: Stack>(&mut self, now: Instant) {
        let af = self.stacks.get_mut::<A>();
        if let Some(old) = af.table.oldest() {
            if af.table.get(old).expired(now, &self.timeouts) {
                self.counters.sessions_expired += 1;
            } else {
                self.counters.sessions_evicted += 1;
            }
            af.remove(old);
        }
    }

    /// Removes every session of family `A` that is `doomed`. Returns how many.
    fn remove_where<A: Stack>(&mut self, doomed: impl Fn(&Session<A>) -> bool) -> usize {
        let af = self.stacks.get_mut::<A>();
        let mut n = 0;
        let mut cur = af.table.oldest();
        while let Some(i) = cur {
            let next = af.table.iter_next(i);
            if doomed(af.table.get(i)) {
                af.remove(i);
                n += 1;
            }
            cur = next;
        }
        n
    }

    /// The live session a packet arriving from `side` belongs to. An expired one is
    /// removed here, so correctness does not depend on how often `expire` runs.
    fn lookup<A: Stack>(
        &mut self,
        side: Side,
        proto: Proto,
        tuple: Tuple<A>,
        now: Instant,
    ) -> Option<(u32, Dir)> {
        let af = self.stacks.get_mut::<A>();
        let (i, dir) = af.table.lookup(&Key { side, proto, tuple })?;
        if af.table.get(i).expired(now, &self.timeouts) {
            af.remove(i);
            self.counters.sessions_expired += 1;
            return None;
        }
        Some((i, dir))
    }

    /// Translates a packet of session `i` travelling in `dir` and updates its state.
    fn forward<A: Stack>(
        &mut self,
        pkt: &mut [u8],
        h: &Headers<A>,
        (i, dir): (u32, Dir),
        now: Instant,
    ) -> Verdict {
        let af = self.stacks.get_mut::<A>();
        let s = af.table.get_mut(i);
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
        af.table.touch(i, now);
        wire::rewrite(pkt, h, &new, Delta::default());
        Verdict::Translated { to }
    }

    /// An ICMP error from `side` quoting a packet the switch translated: the quoted
    /// packet is put back as it was before translation (IP and transport checksums
    /// included), and the outer header is addressed to the quoted packet's sender; the
    /// ICMP checksum follows both (ICMPv6's covers the outer addresses too). None when
    /// the quote matches no session.
    fn icmp_error<A: Stack>(
        &mut self,
        pkt: &mut [u8],
        h: &Headers<A>,
        side: Side,
        now: Instant,
    ) -> Option<Verdict> {
        let q = wire::quote_offset(h);
        let quote = pkt.get(q..h.end)?;
        let Ok(inner) = wire::parse_as::<A>(quote, true) else {
            return Some(Verdict::Drop(DropReason::Malformed));
        };
        // The quoted packet went out towards `side`; a packet coming back from `side`
        // in the same flow carries its reversed tuple.
        let (i, dir) = self.lookup(side, inner.proto, inner.tuple.reversed(), now)?;
        let s = self.stacks.get::<A>().table.get(i);
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
            Some(quote) => wire::rewrite(quote, &inner, &new_inner, Delta::default()),
            None => return Some(Verdict::Drop(DropReason::Malformed)),
        };
        wire::rewrite(pkt, h, &outer, d);
        self.counters.icmp_errors += 1;
        Some(Verdict::Translated { to })
    }

    /// Whether an inside IPv4 packet of `proto` from `src` to `dst` belongs to a live
    /// session (for TCP: an established one); with `touch`, the session counts as just
    /// used. For packets that were translated elsewhere (the kernel repeating this
    /// session's translation) and never passed through `outbound`.
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
        proto != Proto::Tcp || self.stacks.v4.table.get(i).tcp.is_established()
    }

    /// The live session of an inside IPv4 flow (source, destination), refreshed with
    /// `touch`.
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
            self.stacks.v4.table.touch(i, now);
        }
        Some(i)
    }

    /// An IPv4 TCP session whose SYN went through `inbound` but whose handshake the
    /// kernel carried on (its SYN+ACK and ACK were translated elsewhere): whether it is
    /// still live. With `done` (both directions carried packets after the SYN) a
    /// session still opening counts as established from now on; with `touch`, as just
    /// used.
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
        let s = self.stacks.v4.table.get_mut(i);
        if done && matches!(s.tcp, TcpState::SynSent | TcpState::SynRecv) {
            s.tcp = TcpState::Established;
            s.replied = true;
        }
        true
    }

    /// Removes sessions idle longer than their timeout. Returns how many. Call it every
    /// second or so between bursts; lookups also drop expired sessions they meet.
    pub fn expire(&mut self, now: Instant) -> usize {
        let t = self.timeouts;
        let n = self.remove_where::<Ipv4Addr>(|s| s.expired(now, &t))
            + self.remove_where::<Ipv6Addr>(|s| s.expired(now, &t));
        self.counters.sessions_expired += n as u64;
        n
    }

    /// Removes every session of the container at `inside` (IPv4 or IPv6: its SNAT
    /// sessions, the published-port sessions delivered to it, its hairpin sessions
    /// either way), when its endpoint goes: a new endpoint given the same address must
    /// not receive the old one's replies. Returns how many; they count as expired.
    pub fn flush_inside(&mut self, inside: impl Into<IpAddr>) -> usize {
        let n = match inside.into() {
            IpAddr::V4(a) => self.flush_as(a),
            IpAddr::V6(a) => self.flush_as(a),
        };
        self.counters.sessions_expired += n as u64;
        n
    }

    fn flush_as<A: Stack>(&mut self, inside: A) -> usize {
        self.remove_where::<A>(|s| match s.kind {
            Kind::Snat => s.orig.src == inside,
            Kind::Dnat => s.xlat.dst == inside,
            Kind::Hairpin => s.orig.src == inside || s.xlat.dst == inside,
        })
    }

    /// Number of sessions in the table, IPv4 and IPv6.
    pub fn session_count(&self) -> usize {
        self.stacks.v4.table.len() + self.stacks.v6.table.len()
    }

    /// A snapshot of every session, least recently used first (each family's in its
    /// own order, the two merged by when they were last used).
    pub fn sessions(&self, now: Instant) -> Vec<SessionRow> {
        let (v4, v6) = (self.rows::<Ipv4Addr>(now), self.rows::<Ipv6Addr>(now));
        let mut out = Vec::with_capacity(v4.len() + v6.len());
        let (mut v4, mut v6) = (v4.into_iter().peekable(), v6.into_iter().peekable());
        loop {
            let next = match (v4.peek(), v6.peek()) {
                (Some(a), Some(b)) if b.0 < a.0 => v6.next(),
                (Some(_), _) => v4.next(),
                (None, _) => v6.next(),
            };
            match next {
                Some((_, row)) => out.push(row),
                None => return out,
            }
        }
    }

    /// Family `A`'s sessions, least recently used first, with when each was last used.
    fn rows<A: Stack>(&self, now: Instant) -> Vec<(Instant, SessionRow)> {
        self.stacks
            .get::<A>()
            .table
            .iter()
            .map(|(_, s)| {
                let idle = s.idle(now);
                let row = SessionRow {
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
                };
                (s.last_seen, row)
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
fn starts_session<A>(h: &Headers<A>) -> bool {
    match h.l4 {
        L4::Tcp { flags } => flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN,
        L4::Udp => true,
        L4::IcmpEcho { reply } => !reply,
        L4::IcmpError => false,
    }
}

#[cfg(test)]
mod tests;
