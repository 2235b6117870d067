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
//!
//! Published ports on a tc uplink go one step further. Once the router has answered a
//! connection to a published port (the endpoint's SYN+ACK went out through it), the
//! port goes into the `published` map: the uplink's program opens the next sessions to
//! it itself (both halves, from the SYN) and sends the router a copy of the SYN marked
//! observed, which [`FastNat::adopt`] takes in after the NAT has run it through `inbound`.
//! The NAT then holds the session as if it had carried the SYN; once both directions
//! have carried packets in the kernel, [`nat::Nat::kernel_opened`] counts it
//! established. A new connection's handshake so never waits for a worker.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use nat::{Nat, Proto};

use crate::fastpath::{FastPath, NatDir, NatKey, NatValue, PublishedKey, NAT_VALUE_LEN};
use crate::fdb::Mac;
use crate::PortId;

use wire::ethernet;
use wire::ip::{Ipv4Frame, IPV4_HLEN};
use wire::tcp::{ACK, FIN, RST, SYN};
const FIN_SYN_RST: u8 = FIN | SYN | RST;

/// An inside TCP flow: source, destination.
type Flow = (SocketAddrV4, SocketAddrV4);

/// A session's keys in the two maps (the inbound one only with `inbound`).
#[derive(Clone, Copy)]
struct Keys {
    out: NatKey,
    inb: Option<NatKey>,
    /// Opened by the uplink's program: whether each way (out, in) has carried a packet
    /// since, until both have and the NAT counts the session established.
    opening: Option<[bool; 2]>,
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
    /// The uplink's program opens sessions to published ports (a tc uplink).
    opens: bool,
    /// Published ports it opens sessions for: key -> the endpoint's port and the
    /// container's address and port.
    published: HashMap<PublishedKey, (PortId, SocketAddrV4), ahash::RandomState>,
}

/// An untagged IPv4 TCP frame without IP options (the kernel's programs take no
/// others): (source, destination, TCP flags).
fn tcp_flow(frame: &[u8]) -> Option<(Flow, u8)> {
    let ip = Ipv4Frame::new(frame).filter(|f| f.header_len() == IPV4_HLEN)?;
    Some((ip.endpoints()?, ip.tcp_flags()?))
}

/// A flow as the maps key it: source and destination address, source and destination
/// port, in network order.
fn flow_bytes((src, dst): Flow) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&src.ip().octets());
    b[4..8].copy_from_slice(&dst.ip().octets());
    b[8..10].copy_from_slice(&src.port().to_be_bytes());
    b[10..12].copy_from_slice(&dst.port().to_be_bytes());
    b
}

/// A map value: the MACs a translated frame leaves with, the address and port it is
/// translated to, and the interface or port it leaves by.
fn nat_value(dst_mac: Mac, src_mac: Mac, to: SocketAddrV4, via: u32) -> NatValue {
    let mut value: NatValue = [0; NAT_VALUE_LEN];
    value[..6].copy_from_slice(&dst_mac);
    value[6..12].copy_from_slice(&src_mac);
    value[12..16].copy_from_slice(&to.ip().octets());
    value[16..18].copy_from_slice(&to.port().to_be_bytes());
    value[20..24].copy_from_slice(&via.to_ne_bytes());
    value
}

/// The address and port a map value translates to ([`nat_value`]'s `to`).
fn value_target(v: &NatValue) -> SocketAddrV4 {
    let ip = Ipv4Addr::new(v[12], v[13], v[14], v[15]);
    SocketAddrV4::new(ip, u16::from_be_bytes([v[16], v[17]]))
}

/// The MACs of a frame `tcp_flow` accepted: (destination, source).
fn macs(frame: &[u8]) -> (Mac, Mac) {
    ethernet::Frame::new_checked(frame).map_or(([0; 6], [0; 6]), |f| (f.dst(), f.src()))
}

/// The `published` key for SYNs to `public`.
fn published_key(public: SocketAddrV4) -> PublishedKey {
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(&public.ip().octets());
    key[4..6].copy_from_slice(&public.port().to_be_bytes());
    key[6] = 6;
    key
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
            opens: false,
            published: HashMap::default(),
        }
    }

    /// The uplink's program (a tc uplink's) opens sessions to published ports itself.
    pub fn opening_published(mut self) -> FastNat {
        self.opens = true;
        self
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
        // The router answered a connection to a published port: the kernel may open the
        // next ones.
        if flags & (FIN_SYN_RST | ACK) == SYN | ACK {
            self.publish(nat, in_port, orig, sent);
        }
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
            || !nat.inside_session(Proto::Tcp, flow.0, flow.1, false, now)
        {
            return;
        }
        let Some((sent_flow, _)) = tcp_flow(sent) else {
            return;
        };
        let mut key: NatKey = [0; 16];
        key[..4].copy_from_slice(&in_port.to_ne_bytes());
        key[4..16].copy_from_slice(&flow_bytes(flow));
        let (dst_mac, src_mac) = macs(sent);
        let value = nat_value(dst_mac, src_mac, sent_flow.0, self.uplink_ifindex);
        if let Err(e) = self.maps.nat_install(NatDir::Out, &key, &value) {
            // The map is full: this session stays with the router.
            tracing::debug!(error = %e, "fast path: cannot install a NAT session");
            return;
        }
        let inb = self
            .inbound
            .then(|| self.install_inbound(in_port, orig, flow.0, sent_flow))
            .flatten();
        let keys = Keys {
            out: key,
            inb,
            opening: None,
        };
        self.installed.insert(flow, keys);
    }

    /// `orig` (as the endpoint sent it) is the SYN+ACK of a published port's session,
    /// sent as `sent`: SYNs to that address and port open their sessions in the kernel.
    fn publish(&mut self, nat: &Nat, in_port: PortId, orig: &[u8], sent: &[u8]) {
        if !self.opens || self.all_excluded || self.excluded.contains(&in_port) {
            return;
        }
        let (Some(((inside, _), _)), Some(((public, _), _))) = (tcp_flow(orig), tcp_flow(sent))
        else {
            return;
        };
        let key = published_key(public);
        if self.published.contains_key(&key)
            || !nat.port_mappings().any(|m| {
                m.proto == Proto::Tcp
                    && m.host_port == public.port()
                    && m.host_ip.is_none_or(|ip| ip == *public.ip())
                    && m.target_ip == *inside.ip()
                    && m.target_port == inside.port()
            })
        {
            return;
        }
        let (dst_mac, src_mac) = macs(orig);
        let value = nat_value(src_mac, dst_mac, inside, in_port);
        match self.maps.published_install(&key, &value) {
            Ok(()) => {
                self.published.insert(key, (in_port, inside));
            }
            Err(e) => tracing::debug!(error = %e, "fast path: cannot publish a port"),
        }
    }

    /// No more sessions opened in the kernel for TCP port `host_port` (unpublished).
    pub fn unpublish(&mut self, host_port: u16) {
        let maps = &self.maps;
        self.published.retain(|key, _| {
            let mine = key[4..6] == host_port.to_be_bytes();
            if mine {
                maps.published_remove(key);
            }
            !mine
        });
    }

    fn unpublish_port(&mut self, port: Option<PortId>) {
        let maps = &self.maps;
        self.published.retain(|key, (p, _)| {
            let mine = port.is_none_or(|port| port == *p);
            if mine {
                maps.published_remove(key);
            }
            !mine
        });
    }

    /// The router observed `orig`, a SYN the uplink's program opened a session for and
    /// delivered; `xlat` is what the NAT made of it (None: the NAT did not take it). The
    /// session stays in the kernel if the NAT agrees with what the kernel did; else its
    /// entries go. `hop` is the MAC the router sends the remote end's traffic to, when
    /// it knows one: the replies go there rather than to the SYN's source MAC.
    /// Whether the session was adopted.
    pub fn adopt(&mut self, orig: &[u8], xlat: Option<&[u8]>, hop: Option<Mac>) -> bool {
        let Some(((remote, public), _)) = tcp_flow(orig) else {
            return false;
        };
        let mut inb: NatKey = [0; 16];
        inb[..12].copy_from_slice(&flow_bytes((remote, public)));
        // What the kernel opened it with: the published entry, or (unpublished since)
        // the session's own inbound half.
        let published = self.published.get(&published_key(public)).copied();
        let Some((port, inside)) = published.or_else(|| {
            let v = self.maps.nat_value(NatDir::In, &inb)?;
            let port = PortId::from_ne_bytes(v[20..24].try_into().expect("4 bytes"));
            Some((port, value_target(&v)))
        }) else {
            return false; // gone already (evicted, or the router took it back)
        };
        let mut out: NatKey = [0; 16];
        out[..4].copy_from_slice(&port.to_ne_bytes());
        out[4..16].copy_from_slice(&flow_bytes((inside, remote)));
        let keys = Keys {
            out,
            inb: Some(inb),
            opening: Some([false; 2]),
        };
        let agrees = xlat
            .and_then(tcp_flow)
            .is_some_and(|((src, dst), _)| src == remote && dst == inside)
            && published.is_some()
            && !self.all_excluded
            && !self.excluded.contains(&port);
        if !agrees {
            Self::remove(&self.maps, &keys);
            return false;
        }
        // The kernel addressed the replies to the SYN's source MAC.
        if let Some(mac) = hop.filter(|mac| *mac != macs(orig).1) {
            if let Some(mut value) = self.maps.nat_value(NatDir::Out, &out) {
                value[..6].copy_from_slice(&mac);
                let _ = self.maps.nat_install(NatDir::Out, &out, &value);
            }
        }
        self.installed.insert((inside, remote), keys);
        true
    }

    /// The replies' half: from the remote end to the uplink address and mapped port, back
    /// to the endpoint's address, port and MAC, from the gateway's MAC.
    fn install_inbound(
        &self,
        in_port: PortId,
        orig: &[u8],
        inside: SocketAddrV4,
        (sent_src, sent_dst): Flow,
    ) -> Option<NatKey> {
        let mut key: NatKey = [0; 16];
        key[..12].copy_from_slice(&flow_bytes((sent_dst, sent_src)));
        let (dst_mac, src_mac) = macs(orig);
        let value = nat_value(src_mac, dst_mac, inside, in_port);
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
                self.unpublish_port(None);
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
            let seen = match (out, inb) {
                (Some(o), None) => Some([o, false]),
                (Some(o), Some(Some(i))) => Some([o, i]),
                _ => None, // an entry went missing: the router takes the session back
            };
            let keep = match (seen, keys.opening.as_mut()) {
                (None, _) => false,
                (Some([o, i]), None) => nat.inside_session(Proto::Tcp, flow.0, flow.1, o || i, now),
                (Some([o, i]), Some(ways)) => {
                    ways[0] |= o;
                    ways[1] |= i;
                    let done = ways[0] && ways[1];
                    if done {
                        keys.opening = None;
                    }
                    nat.kernel_opened(flow.0, flow.1, done, o || i, now)
                }
            };
            if !keep {
                Self::remove(maps, keys);
            }
            keep
        });
    }

    /// Every session of `port` leaves the kernel (the port is going, or captured).
    pub fn forget_port(&mut self, port: PortId) {
        self.excluded.remove(&port);
        self.unpublish_port(Some(port));
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
        self.unpublish_port(None);
    }
}
