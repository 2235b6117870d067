//! External port allocation with endpoint-independent mapping (RFC 4787 REQ-1): one
//! internal ip:port keeps one external port for every destination, for as long as any
//! of its sessions lives. The source port is kept when it is in range and free.

use std::collections::HashMap;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use crate::wire::Proto;

/// An inclusive range of external ports (TCP, UDP) and ICMP identifiers. Give each
/// worker its own slice of the range when several share one external address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange {
            first: 1024,
            last: 65535,
        }
    }
}

impl PortRange {
    pub fn contains(&self, p: u16) -> bool {
        self.first <= p && p <= self.last
    }

    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

const WORDS: usize = 65536 / 64;

struct Bitmap(Box<[u64; WORDS]>);

impl Bitmap {
    fn new() -> Bitmap {
        Bitmap(Box::new([0; WORDS]))
    }
    fn get(&self, p: u16) -> bool {
        self.0[usize::from(p) / 64] & (1 << (p % 64)) != 0
    }
    fn set(&mut self, p: u16, v: bool) {
        let w = &mut self.0[usize::from(p) / 64];
        if v {
            *w |= 1 << (p % 64);
        } else {
            *w &= !(1 << (p % 64));
        }
    }
}

#[derive(Clone, Copy)]
struct Mapping {
    external: u16,
    /// Sessions using the mapping.
    refs: u32,
}

/// Port allocator and endpoint-independent mapping table, one per protocol, of the
/// internal endpoints of one address family `A`.
pub struct Ports<A> {
    range: PortRange,
    used: [Bitmap; 3],
    /// Where the search for a free port resumes, per protocol.
    cursor: [u16; 3],
    /// Ports taken per protocol, so exhaustion is answered without a scan.
    in_use: [usize; 3],
    mappings: HashMap<(Proto, A, u16), Mapping>,
}

impl<A: Copy + Eq + Hash> Ports<A> {
    pub fn new(range: PortRange) -> Self {
        Ports {
            range,
            used: [Bitmap::new(), Bitmap::new(), Bitmap::new()],
            cursor: [range.first; 3],
            in_use: [0; 3],
            mappings: HashMap::new(),
        }
    }

    /// Takes a reference on `internal`'s mapping, creating it if needed: its own port
    /// if in range, free and not `reserved`, else the next free one. None when the
    /// range is exhausted.
    pub fn acquire(
        &mut self,
        proto: Proto,
        internal: (A, u16),
        reserved: impl Fn(u16) -> bool,
    ) -> Option<u16> {
        let key = (proto, internal.0, internal.1);
        if let Some(m) = self.mappings.get_mut(&key) {
            m.refs += 1;
            return Some(m.external);
        }
        if self.in_use[proto.index()] >= self.range.len() {
            return None;
        }
        let used = &mut self.used[proto.index()];
        // Port 0 is never handed out: it means "no port" (and no ICMP id) on the wire.
        let free = |p: u16, used: &Bitmap| p != 0 && !used.get(p) && !reserved(p);
        let port = if self.range.contains(internal.1) && free(internal.1, used) {
            internal.1
        } else {
            let start = self.cursor[proto.index()];
            let n = self.range.len();
            let off = usize::from(start.saturating_sub(self.range.first));
            let found = (0..n)
                .map(|k| {
                    let v = (off + k) % n;
                    // v < n <= 65536 - first, so this stays within u16.
                    (usize::from(self.range.first) + v) as u16
                })
                .find(|&p| free(p, used))?;
            self.cursor[proto.index()] = if found == self.range.last {
                self.range.first
            } else {
                found + 1
            };
            found
        };
        used.set(port, true);
        self.in_use[proto.index()] += 1;
        self.mappings.insert(
            key,
            Mapping {
                external: port,
                refs: 1,
            },
        );
        Some(port)
    }

    /// Drops a reference; the port is free again when the last one goes.
    pub fn release(&mut self, proto: Proto, internal: (A, u16)) {
        let key = (proto, internal.0, internal.1);
        if let Some(m) = self.mappings.get_mut(&key) {
            m.refs = m.refs.saturating_sub(1);
            if m.refs == 0 {
                let p = m.external;
                self.mappings.remove(&key);
                self.used[proto.index()].set(p, false);
                self.in_use[proto.index()] -= 1;
            }
        }
    }

    /// Number of internal endpoints holding an external port.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.mappings.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const C1: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
    const C2: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 3);

    fn ports(first: u16, last: u16) -> Ports<Ipv4Addr> {
        Ports::new(PortRange { first, last })
    }

    /// An external port for `internal`, with no port published.
    fn take(p: &mut Ports<Ipv4Addr>, proto: Proto, internal: (Ipv4Addr, u16)) -> Option<u16> {
        p.acquire(proto, internal, |_| false)
    }

    #[test]
    fn keeps_port_when_free_else_picks_another() {
        let mut p = Ports::new(PortRange::default());
        assert_eq!(take(&mut p, Proto::Udp, (C1, 5000)), Some(5000));
        assert_eq!(
            take(&mut p, Proto::Udp, (C1, 5000)),
            Some(5000),
            "same endpoint, same mapping"
        );
        let other = take(&mut p, Proto::Udp, (C2, 5000));
        assert!(matches!(other, Some(x) if x != 5000 && x >= 1024));
        assert_eq!(
            take(&mut p, Proto::Tcp, (C2, 5000)),
            Some(5000),
            "protocols have separate port spaces"
        );
        assert_eq!(
            p.acquire(Proto::Udp, (C2, 6000), |x| x == 6000)
                .map(|x| x != 6000),
            Some(true),
            "reserved (published) ports are skipped"
        );
        assert_eq!(
            take(&mut p, Proto::Udp, (C2, 80)).map(|x| x >= 1024),
            Some(true),
            "out-of-range source ports are not kept"
        );
    }

    #[test]
    fn exhaustion_and_release() {
        let mut p = ports(2000, 2001);
        assert_eq!(take(&mut p, Proto::Udp, (C1, 1)), Some(2000));
        assert_eq!(take(&mut p, Proto::Udp, (C1, 2)), Some(2001));
        assert_eq!(take(&mut p, Proto::Udp, (C1, 3)), None);
        take(&mut p, Proto::Udp, (C1, 1));
        p.release(Proto::Udp, (C1, 1));
        assert_eq!(take(&mut p, Proto::Udp, (C1, 3)), None, "still held");
        p.release(Proto::Udp, (C1, 1));
        assert_eq!(take(&mut p, Proto::Udp, (C1, 3)), Some(2000));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn full_range_wraps_without_overflow() {
        let mut p = ports(65534, 65535);
        assert_eq!(take(&mut p, Proto::Icmp, (C1, 1)), Some(65534));
        assert_eq!(take(&mut p, Proto::Icmp, (C1, 2)), Some(65535));
        p.release(Proto::Icmp, (C1, 1));
        assert_eq!(take(&mut p, Proto::Icmp, (C1, 3)), Some(65534));
        let mut q = ports(0, 1);
        assert_eq!(take(&mut q, Proto::Icmp, (C1, 0)), Some(1), "never 0");
        assert_eq!(take(&mut q, Proto::Icmp, (C1, 5)), None);
    }
}
