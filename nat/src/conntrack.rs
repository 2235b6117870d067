//! The session table: every tracked flow with its original and translated tuples,
//! found by either direction's tuple in one hash lookup, kept in least-recently-used
//! order so the oldest idle session is the one evicted when the table is full.
//! Also the TCP state machine that picks a session's idle timeout (RFC 5382).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::family::Family;
use crate::wire::{Proto, Tuple, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// Which side of the NAT a packet comes from (or is sent to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The container networks behind the switch.
    Inside,
    /// The uplink.
    Outside,
}

/// Which direction of a session a packet travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// The direction of the packet that created the session.
    Original,
    Reply,
}

/// What a session translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Container to outside: the source becomes the external address.
    Snat,
    /// Outside to a published port: the destination becomes the target.
    Dnat,
    /// Container to a published port of the switch: both.
    Hairpin,
}

impl Kind {
    /// Where a session's original packets come from, and its replies.
    fn sides(self) -> (Side, Side) {
        match self {
            Kind::Snat => (Side::Inside, Side::Outside),
            Kind::Dnat => (Side::Outside, Side::Inside),
            Kind::Hairpin => (Side::Inside, Side::Inside),
        }
    }

    /// Whether the session holds an external port of its own (SNAT, hairpin); a DNAT
    /// session uses the published one.
    fn holds_port(self) -> bool {
        self != Kind::Dnat
    }
}

/// TCP connection state as far as NAT needs it (no sequence-number checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TcpState {
    /// SYN seen in the original direction.
    SynSent,
    /// SYN+ACK (or a crossing SYN) seen in reply.
    SynRecv,
    Established,
    /// FIN seen in one direction.
    FinWait,
    /// FIN seen in both directions.
    TimeWait,
    /// RST seen.
    Close,
}

impl TcpState {
    /// The state after a packet with `flags` in direction `dir`.
    pub fn next(self, dir: Dir, flags: u8, fins: &mut [bool; 2]) -> TcpState {
        use TcpState::*;
        if flags & TCP_RST != 0 {
            return Close;
        }
        let syn = flags & TCP_SYN != 0;
        let ack = flags & TCP_ACK != 0;
        if syn {
            return match (self, dir, ack) {
                // A new connection reusing the tuple after the old one closed.
                (TimeWait | Close, Dir::Original, false) => {
                    *fins = [false; 2];
                    SynSent
                }
                (SynSent, Dir::Reply, _) => SynRecv,
                (s, _, _) => s,
            };
        }
        if flags & TCP_FIN != 0 && matches!(self, SynRecv | Established | FinWait) {
            fins[dir as usize] = true;
            return if fins[0] && fins[1] {
                TimeWait
            } else {
                FinWait
            };
        }
        match (self, dir) {
            (SynRecv, Dir::Original) if ack => Established,
            (s, _) => s,
        }
    }

    /// Whether the RFC 5382 "established" idle timeout applies (else "transitory").
    pub fn is_established(self) -> bool {
        self == TcpState::Established
    }
}

/// Idle timeouts by protocol and state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_established: Duration,
    pub tcp_transitory: Duration,
    pub udp: Duration,
    pub icmp: Duration,
}

/// One tracked flow, of one address family.
#[derive(Clone, Copy, Debug)]
pub struct Session<A> {
    pub proto: Proto,
    pub kind: Kind,
    /// The first packet as it arrived.
    pub orig: Tuple<A>,
    /// The first packet as it left.
    pub xlat: Tuple<A>,
    /// Where original-direction packets come from; replies come from `reply_side`.
    pub orig_side: Side,
    pub reply_side: Side,
    pub tcp: TcpState,
    pub fins: [bool; 2],
    /// A packet was seen in the reply direction.
    pub replied: bool,
    pub last_seen: Instant,
    /// The internal endpoint whose external port this session holds (SNAT, hairpin).
    pub holds_port: bool,
    prev: u32,
    next: u32,
    live: bool,
}

impl<A: Family> Session<A> {
    /// A new session of `kind`: its first packet `orig`, translated to `xlat`.
    pub fn new(proto: Proto, kind: Kind, orig: Tuple<A>, xlat: Tuple<A>, now: Instant) -> Self {
        let (orig_side, reply_side) = kind.sides();
        Session {
            proto,
            kind,
            orig,
            xlat,
            orig_side,
            reply_side,
            tcp: TcpState::SynSent,
            fins: [false; 2],
            replied: false,
            last_seen: now,
            holds_port: kind.holds_port(),
            prev: NIL,
            next: NIL,
            live: true,
        }
    }

    /// The tuple a packet in `dir` carries after translation.
    pub fn translate(&self, dir: Dir) -> Tuple<A> {
        match dir {
            Dir::Original => self.xlat,
            Dir::Reply => self.orig.reversed(),
        }
    }

    /// Where a packet in `dir` goes after translation.
    pub fn egress(&self, dir: Dir) -> Side {
        match dir {
            Dir::Original => self.reply_side,
            Dir::Reply => self.orig_side,
        }
    }

    pub fn timeout(&self, t: &Timeouts) -> Duration {
        match self.proto {
            Proto::Tcp if self.tcp.is_established() => t.tcp_established,
            Proto::Tcp => t.tcp_transitory,
            Proto::Udp => t.udp,
            Proto::Icmp => t.icmp,
        }
    }

    pub fn idle(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_seen)
    }

    pub fn expired(&self, now: Instant, t: &Timeouts) -> bool {
        self.idle(now) > self.timeout(t)
    }

    fn key(&self, dir: Dir) -> Key<A> {
        match dir {
            Dir::Original => Key {
                side: self.orig_side,
                proto: self.proto,
                tuple: self.orig,
            },
            Dir::Reply => Key {
                side: self.reply_side,
                proto: self.proto,
                tuple: self.xlat.reversed(),
            },
        }
    }
}

/// What a packet is looked up by: its tuple as it arrives, and where it arrives from
/// (so a packet from outside can never match a session's inside direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key<A> {
    pub side: Side,
    pub proto: Proto,
    pub tuple: Tuple<A>,
}

const NIL: u32 = u32::MAX;
/// Sessions allocated up front; the table grows (on session creation only) beyond it,
/// so an idle worker does not hold megabytes for a bound it never reaches.
const INITIAL_CAPACITY: usize = 4096;

/// Sessions in a slab (indices stay valid until removal), a hash index from both
/// directions' keys, and an intrusive LRU list through the slab. One per address
/// family.
pub struct Table<A> {
    slots: Vec<Session<A>>,
    free: Vec<u32>,
    index: HashMap<Key<A>, (u32, Dir)>,
    /// Least recently used.
    head: u32,
    /// Most recently used.
    tail: u32,
    len: usize,
}

impl<A: Family> Table<A> {
    pub fn with_capacity(n: usize) -> Self {
        Table {
            slots: Vec::with_capacity(n.min(INITIAL_CAPACITY)),
            free: Vec::new(),
            index: HashMap::with_capacity(2 * n.min(INITIAL_CAPACITY)),
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn lookup(&self, key: &Key<A>) -> Option<(u32, Dir)> {
        self.index.get(key).copied()
    }

    pub fn get(&self, i: u32) -> &Session<A> {
        &self.slots[i as usize]
    }

    pub fn get_mut(&mut self, i: u32) -> &mut Session<A> {
        &mut self.slots[i as usize]
    }

    /// Whether either direction of `s` would clash with a session in the table.
    pub fn clashes(&self, s: &Session<A>) -> Option<u32> {
        self.lookup(&s.key(Dir::Original))
            .or_else(|| self.lookup(&s.key(Dir::Reply)))
            .map(|(i, _)| i)
    }

    /// Adds `s`; the caller made sure it does not clash.
    pub fn insert(&mut self, s: Session<A>) -> u32 {
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = s;
                i
            }
            None => {
                self.slots.push(s);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(s.key(Dir::Original), (i, Dir::Original));
        self.index.insert(s.key(Dir::Reply), (i, Dir::Reply));
        self.link_tail(i);
        self.len += 1;
        i
    }

    pub fn remove(&mut self, i: u32) -> Session<A> {
        let s = self.slots[i as usize];
        debug_assert!(s.live);
        self.index.remove(&s.key(Dir::Original));
        self.index.remove(&s.key(Dir::Reply));
        self.unlink(i);
        self.slots[i as usize].live = false;
        self.free.push(i);
        self.len -= 1;
        s
    }

    /// Marks `i` as just used.
    pub fn touch(&mut self, i: u32, now: Instant) {
        self.slots[i as usize].last_seen = now;
        if self.tail != i {
            self.unlink(i);
            self.link_tail(i);
        }
    }

    /// The least recently used session.
    pub fn oldest(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// The session used after `i` (towards the most recent).
    pub fn iter_next(&self, i: u32) -> Option<u32> {
        let n = self.slots[i as usize].next;
        (n != NIL).then_some(n)
    }

    /// Indices of live sessions, least recently used first.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Session<A>)> {
        let mut cur = self.head;
        std::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let i = cur;
            let s = &self.slots[i as usize];
            cur = s.next;
            Some((i, s))
        })
    }

    fn unlink(&mut self, i: u32) {
        let (p, n) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        match p {
            NIL => self.head = n,
            p => self.slots[p as usize].next = n,
        }
        match n {
            NIL => self.tail = p,
            n => self.slots[n as usize].prev = p,
        }
        let s = &mut self.slots[i as usize];
        s.prev = NIL;
        s.next = NIL;
    }

    fn link_tail(&mut self, i: u32) {
        let t = self.tail;
        {
            let s = &mut self.slots[i as usize];
            s.prev = t;
            s.next = NIL;
        }
        match t {
            NIL => self.head = i,
            t => self.slots[t as usize].next = i,
        }
        self.tail = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const SYN: u8 = TCP_SYN;
    const SYNACK: u8 = TCP_SYN | TCP_ACK;
    const ACK: u8 = TCP_ACK;
    const FINACK: u8 = TCP_FIN | TCP_ACK;

    fn run(steps: &[(Dir, u8)]) -> Vec<TcpState> {
        let mut s = TcpState::SynSent;
        let mut fins = [false; 2];
        steps
            .iter()
            .map(|&(d, f)| {
                s = s.next(d, f, &mut fins);
                s
            })
            .collect()
    }

    #[test]
    fn tcp_handshake_and_close() {
        use Dir::*;
        use TcpState::*;
        assert_eq!(
            run(&[
                (Reply, SYNACK),
                (Original, ACK),
                (Original, ACK),
                (Reply, FINACK),
                (Original, ACK),
                (Original, FINACK),
                (Reply, ACK),
            ]),
            vec![
                SynRecv,
                Established,
                Established,
                FinWait,
                FinWait,
                TimeWait,
                TimeWait
            ]
        );
    }

    #[test]
    fn tcp_rst_simultaneous_open_and_reuse() {
        use Dir::*;
        use TcpState::*;
        assert_eq!(
            run(&[(Original, ACK)]),
            vec![SynSent],
            "no ACK before SYN+ACK"
        );
        assert_eq!(
            run(&[(Reply, SYN), (Original, SYNACK), (Original, ACK)]),
            vec![SynRecv, SynRecv, Established]
        );
        assert_eq!(
            run(&[
                (Reply, SYNACK),
                (Original, ACK),
                (Reply, TCP_RST),
                (Original, SYN)
            ]),
            vec![SynRecv, Established, Close, SynSent]
        );
        assert_eq!(
            run(&[(Reply, SYNACK), (Original, ACK), (Original, SYN)]),
            vec![SynRecv, Established, Established],
            "a stray SYN does not reset an open connection"
        );
    }

    fn sess(port: u16, now: Instant) -> Session<Ipv4Addr> {
        let t = Tuple {
            src: Ipv4Addr::new(172, 16, 0, 2),
            sport: port,
            dst: Ipv4Addr::new(198, 51, 100, 7),
            dport: 53,
        };
        let x = Tuple {
            src: Ipv4Addr::new(203, 0, 113, 1),
            ..t
        };
        Session::new(Proto::Udp, Kind::Snat, t, x, now)
    }

    #[test]
    fn lru_order_follows_use_and_slots_are_reused() {
        let now = Instant::now();
        let mut t = Table::with_capacity(4);
        let a = t.insert(sess(1, now));
        let b = t.insert(sess(2, now));
        let c = t.insert(sess(3, now));
        assert_eq!(t.oldest(), Some(a));
        t.touch(a, now);
        assert_eq!(t.iter().map(|(i, _)| i).collect::<Vec<_>>(), vec![b, c, a]);
        t.remove(c);
        assert_eq!(t.iter().map(|(i, _)| i).collect::<Vec<_>>(), vec![b, a]);
        let d = t.insert(sess(4, now));
        assert_eq!(d, c, "slot reused");
        assert_eq!(t.len(), 3);
        let s = sess(4, now);
        assert_eq!(t.clashes(&s), Some(d));
        let k = Key {
            side: Side::Outside,
            proto: Proto::Udp,
            tuple: s.xlat.reversed(),
        };
        assert_eq!(t.lookup(&k), Some((d, Dir::Reply)));
        let k_wrong_side = Key {
            side: Side::Inside,
            ..k
        };
        assert_eq!(t.lookup(&k_wrong_side), None);
    }
}
