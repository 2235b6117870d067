//! The kernel's share of routed TCP. The router translates every session's first
//! packets; once an outbound packet of an established TCP session has been translated
//! and sent to a known next hop, the session goes into the fast path's NAT maps: the
//! endpoint's tc program repeats exactly that translation for the session's later
//! packets (64 KiB GSO skbs whole) and sends them out of the uplink itself, and, when
//! the uplink is an AF_XDP port, the uplink's XDP program translates the replies back
//! and redirects them straight to the endpoint's veth. SYN, FIN
//! and RST still reach the router, so the NAT keeps the session's state; a FIN or RST
//! either way takes the session out of the map. Once a second the router refreshes in
//! the NAT the sessions the kernel used (their `seen` marks) and takes out those the NAT
//! no longer has. Only what the router decided is repeated, and only for the port the
//! session came from.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use nat::{Nat, Proto};

use crate::fastpath::{FastPath, NatDir, NatKey, NatValue, NAT_VALUE_LEN};
use crate::PortId;

const ETH_HLEN: usize = 14;
const TCP_END: usize = ETH_HLEN + 20 + 20;
const FIN_SYN_RST: u8 = 0x07;
const ACK: u8 = 0x10;

/// An inside TCP flow: source, destination.
type Flow = (SocketAddrV4, SocketAddrV4);

/// A session's keys in the two maps (the inbound one only with `inbound`).
#[derive(Clone, Copy)]
struct Keys {
    out: NatKey,
    inb: Option<NatKey>,
}

pub(crate) struct FastNat {
    maps: Arc<FastPath>,
    uplink_ifindex: u32,
    /// The uplink runs the inbound program.
    inbound: bool,
    installed: HashMap<Flow, Keys, ahash::RandomState>,
    /// Ports under capture: their sessions are not handed to the kernel.
    excluded: HashSet<PortId>,
    /// The uplink is under capture: no session is.
    all_excluded: bool,
}

/// An untagged IPv4 TCP frame without IP options: (source, destination, TCP flags).
fn tcp_flow(frame: &[u8]) -> Option<(Flow, u8)> {
    if frame.len() < TCP_END
        || frame[12..14] != [0x08, 0x00]
        || frame[ETH_HLEN] != 0x45
        || frame[ETH_HLEN + 9] != 6
    {
        return None;
    }
    let ip = |o: usize| Ipv4Addr::new(frame[o], frame[o + 1], frame[o + 2], frame[o + 3]);
    let port = |o: usize| u16::from_be_bytes([frame[o], frame[o + 1]]);
    let src = SocketAddrV4::new(ip(ETH_HLEN + 12), port(ETH_HLEN + 20));
    let dst = SocketAddrV4::new(ip(ETH_HLEN + 16), port(ETH_HLEN + 22));
    Some(((src, dst), frame[ETH_HLEN + 33]))
}

impl FastNat {
    pub fn new(maps: Arc<FastPath>, uplink_ifindex: u32, inbound: bool) -> FastNat {
        FastNat {
            maps,
            uplink_ifindex,
            inbound,
            installed: HashMap::default(),
            excluded: HashSet::new(),
            all_excluded: false,
        }
    }

    /// An outbound frame from `in_port` (`orig`, as it arrived) was translated and sent
    /// as `sent` (the whole frame, MACs included): hand the session to the kernel if it
    /// is established TCP and not there yet. A frame with FIN or RST takes it out.
    pub fn outbound(
        &mut self,
        nat: &mut Nat,
        in_port: PortId,
        orig: &[u8],
        sent: &[u8],
        now: Instant,
    ) {
        let Some((flow, flags)) = tcp_flow(orig) else {
            return;
        };
        // A FIN or RST ends the session's time in the kernel; a SYN starts a new session
        // for the flow, whose translation may differ from an old one's.
        if flags & FIN_SYN_RST != 0 {
            self.forget(&flow);
            return;
        }
        if flags & ACK == 0
            || self.all_excluded
            || self.excluded.contains(&in_port)
            || self.installed.contains_key(&flow)
            || sent.len() < TCP_END
            || !nat.inside_session(Proto::Tcp, flow.0, flow.1, false, now)
        {
            return;
        }
        let mut key: NatKey = [0; 16];
        key[..4].copy_from_slice(&in_port.to_ne_bytes());
        key[4..16].copy_from_slice(&orig[ETH_HLEN + 12..ETH_HLEN + 24]);
        let mut value: NatValue = [0; NAT_VALUE_LEN];
        value[..12].copy_from_slice(&sent[..12]);
        value[12..16].copy_from_slice(&sent[ETH_HLEN + 12..ETH_HLEN + 16]);
        value[16..18].copy_from_slice(&sent[ETH_HLEN + 20..ETH_HLEN + 22]);
        value[20..24].copy_from_slice(&self.uplink_ifindex.to_ne_bytes());
        if let Err(e) = self.maps.nat_install(NatDir::Out, &key, &value) {
            // The map is full: this session stays with the router.
            tracing::debug!(error = %e, "fast path: cannot install a NAT session");
            return;
        }
        let inb = self
            .inbound
            .then(|| self.install_inbound(in_port, orig, sent))
            .flatten();
        self.installed.insert(flow, Keys { out: key, inb });
    }

    /// The replies' half: from the remote end to the uplink address and mapped port, back
    /// to the endpoint's address, port and MAC, from the gateway's MAC.
    fn install_inbound(&self, in_port: PortId, orig: &[u8], sent: &[u8]) -> Option<NatKey> {
        let ip = ETH_HLEN;
        let mut key: NatKey = [0; 16];
        key[..4].copy_from_slice(&sent[ip + 16..ip + 20]);
        key[4..8].copy_from_slice(&sent[ip + 12..ip + 16]);
        key[8..10].copy_from_slice(&sent[ip + 22..ip + 24]);
        key[10..12].copy_from_slice(&sent[ip + 20..ip + 22]);
        let mut value: NatValue = [0; NAT_VALUE_LEN];
        value[..6].copy_from_slice(&orig[6..12]);
        value[6..12].copy_from_slice(&orig[..6]);
        value[12..16].copy_from_slice(&orig[ip + 12..ip + 16]);
        value[16..18].copy_from_slice(&orig[ip + 20..ip + 22]);
        value[20..24].copy_from_slice(&in_port.to_ne_bytes());
        self.maps.nat_install(NatDir::In, &key, &value).ok()?;
        Some(key)
    }

    fn remove(maps: &FastPath, keys: &Keys) {
        maps.nat_remove(NatDir::Out, &keys.out);
        if let Some(k) = &keys.inb {
            maps.nat_remove(NatDir::In, k);
        }
    }

    /// An inbound frame, already translated back (`inner`: to the endpoint): a FIN or
    /// RST from outside takes its session out of the kernel.
    pub fn inbound(&mut self, inner: &[u8]) {
        if let Some(((src, dst), flags)) = tcp_flow(inner) {
            if flags & FIN_SYN_RST != 0 {
                self.forget(&(dst, src));
            }
        }
    }

    /// While `on`, `port`'s sessions stay with the router (a capture of the port sees
    /// every frame): those in the kernel leave it now.
    /// (`all`: the port is the uplink, and every session steps aside.)
    pub fn exclude(&mut self, port: PortId, on: bool, all: bool) {
        if all {
            self.all_excluded = on;
            if on {
                for keys in self.installed.values() {
                    Self::remove(&self.maps, keys);
                }
                self.installed.clear();
            }
        } else if on {
            self.forget_port(port);
            self.excluded.insert(port);
        } else {
            self.excluded.remove(&port);
        }
    }

    fn forget(&mut self, flow: &Flow) {
        if let Some(keys) = self.installed.remove(flow) {
            Self::remove(&self.maps, &keys);
        }
    }

    /// Once a second: sessions the kernel used count as used in the NAT; sessions the
    /// NAT no longer has (expired, evicted) or no longer holds as established leave.
    pub fn tick(&mut self, nat: &mut Nat, now: Instant) {
        let maps = &self.maps;
        self.installed.retain(|flow, keys| {
            let out = maps.nat_take_seen(NatDir::Out, &keys.out);
            let inb = keys.inb.map(|k| maps.nat_take_seen(NatDir::In, &k));
            let keep = match (out, inb) {
                (Some(o), None) => Some(o),
                (Some(o), Some(Some(i))) => Some(o || i),
                _ => None, // an entry went missing: the router takes the session back
            }
            .is_some_and(|seen| nat.inside_session(Proto::Tcp, flow.0, flow.1, seen, now));
            if !keep {
                Self::remove(maps, keys);
            }
            keep
        });
    }

    /// Every session of `port` leaves the kernel (the port is going, or captured).
    pub fn forget_port(&mut self, port: PortId) {
        self.excluded.remove(&port);
        let maps = &self.maps;
        self.installed.retain(|_, keys| {
            let mine = keys.out[..4] == port.to_ne_bytes();
            if mine {
                Self::remove(maps, keys);
            }
            !mine
        });
    }

    /// How many sessions the kernel translates now.
    pub fn len(&self) -> usize {
        self.installed.len()
    }
}

impl Drop for FastNat {
    fn drop(&mut self) {
        for keys in self.installed.values() {
            Self::remove(&self.maps, keys);
        }
    }
}
