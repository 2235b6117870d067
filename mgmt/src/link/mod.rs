//! A small synchronous rtnetlink client: links, veth pairs, addresses and the default
//! route, in the network namespace of the thread that created the handle (use
//! `netns::run_in` to act inside a sandbox). Never runs `ip`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_ACK_TLVS,
    NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

mod error;
mod route;

use crate::error::step;

pub use error::{errno_of, LinkError, NetlinkError, Result};

/// An rtnetlink socket bound in the calling thread's network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a handle for the network namespace of the calling thread (a netlink socket
    /// belongs to the namespace it was created in, whatever thread uses it later).
    pub fn new() -> Result<Self> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(step("opening a NETLINK_ROUTE socket"))?;
        socket
            .bind_auto()
            .map_err(step("binding the NETLINK_ROUTE socket"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(step("connecting the NETLINK_ROUTE socket to the kernel"))?;
        // Extended ACKs carry the kernel's reason for a refusal ("mtu less than device
        // minimum"), which goes into the error; capped ACKs keep them small. Kernels
        // without them still work, with bare errnos.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Self {
            socket,
            seq: 0,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Creates veth `host_name` here and its peer `peer_name` directly inside the
    /// namespace `peer_ns`, both with `mtu`, the peer with `peer_mac` if given.
    ///
    /// Creating the peer in place (IFLA_NET_NS_FD on the peer) means it never appears
    /// in this namespace, where its name could clash with a host interface.
    pub fn create_veth(
        &mut self,
        host_name: &str,
        peer_name: &str,
        peer_ns: BorrowedFd<'_>,
        peer_mac: Option<[u8; 6]>,
        mtu: u32,
    ) -> Result<()> {
        validate_ifname(host_name)?;
        validate_ifname(peer_name)?;
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(peer_name.into()));
        peer.attributes.push(LinkAttribute::Mtu(mtu));
        if let Some(mac) = peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        peer.attributes
            .push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));

        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(host_name.into()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.ack(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            || format!("creating veth pair {host_name} / {peer_name}"),
        )
    }

    /// The ifindex of `name`, or None if there is no such interface here.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        Ok(self.get_link(name)?.map(|m| m.header.index))
    }

    /// Whether interface `name` exists in this namespace (false also on lookup errors).
    pub fn link_exists(&mut self, name: &str) -> bool {
        matches!(self.link_index(name), Ok(Some(_)))
    }

    /// Brings `name` up (IFF_UP).
    pub fn set_up(&mut self, name: &str) -> Result<()> {
        self.set_flag_up(name, true)
    }

    /// Brings `name` down.
    pub fn set_down(&mut self, name: &str) -> Result<()> {
        self.set_flag_up(name, false)
    }

    fn set_flag_up(&mut self, name: &str, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        self.set_link_flag(name, LinkFlags::Up, up, || {
            format!("setting {name} {state}")
        })
    }

    /// Turns promiscuous mode on or off (a macvlan parent receives frames for every
    /// endpoint's MAC).
    pub fn set_promisc(&mut self, name: &str, on: bool) -> Result<()> {
        let state = if on { "on" } else { "off" };
        self.set_link_flag(name, LinkFlags::Promisc, on, || {
            format!("setting promiscuous mode {state} on {name}")
        })
    }

    /// Sets (`on`) or clears one flag of `name`, leaving the others as they are.
    fn set_link_flag(
        &mut self,
        name: &str,
        flag: LinkFlags,
        on: bool,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        let mut msg = self.link_message_for(name)?;
        if on {
            msg.header.flags |= flag;
        } else {
            msg.header.flags.remove(flag);
        }
        msg.header.change_mask |= flag;
        self.ack(RouteNetlinkMessage::SetLink(msg), 0, what)
    }

    /// Sets the MTU of `name`.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<()> {
        let mut msg = self.link_message_for(name)?;
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.ack(RouteNetlinkMessage::SetLink(msg), 0, || {
            format!("setting the MTU of {name} to {mtu}")
        })
    }

    /// Sets the MAC address of `name`.
    pub fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> Result<()> {
        let mut msg = self.link_message_for(name)?;
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.ack(RouteNetlinkMessage::SetLink(msg), 0, || {
            format!("setting the MAC of {name} to {}", format_mac(&mac))
        })
    }

    /// Renames interface `old` to `new` (the kernel may refuse while it is up).
    pub fn rename(&mut self, old: &str, new: &str) -> Result<()> {
        validate_ifname(new)?;
        let mut msg = self.link_message_for(old)?;
        msg.attributes.push(LinkAttribute::IfName(new.into()));
        self.ack(RouteNetlinkMessage::SetLink(msg), 0, || {
            format!("renaming {old} to {new}")
        })
    }

    /// Deletes interface `name` (for a veth, both ends); Ok if it does not exist.
    pub fn delete_link(&mut self, name: &str) -> Result<()> {
        let Some(index) = self.link_index(name)? else {
            return Ok(());
        };
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.ack(RouteNetlinkMessage::DelLink(msg), 0, || {
            format!("deleting interface {name}")
        }) {
            // Gone between the lookup and the delete: the wanted outcome.
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => Ok(()),
            other => other,
        }
    }

    /// Moves interface `name` into the network namespace `ns_fd`.
    pub fn move_to_ns(&mut self, name: &str, ns_fd: BorrowedFd<'_>) -> Result<()> {
        let mut msg = self.link_message_for(name)?;
        msg.attributes
            .push(LinkAttribute::NetNsFd(ns_fd.as_raw_fd()));
        self.ack(RouteNetlinkMessage::SetLink(msg), 0, || {
            format!("moving {name} to another network namespace")
        })
    }

    /// The MAC address of `name`.
    pub fn link_mac(&mut self, name: &str) -> Result<[u8; 6]> {
        let msg = self.require_link(name)?;
        msg.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(mac) => <[u8; 6]>::try_from(mac.as_slice()).ok(),
                _ => None,
            })
            .ok_or_else(|| {
                LinkError::Missing(format!("interface {name} has no Ethernet MAC address"))
            })
    }

    /// The MTU of `name`.
    pub fn link_mtu(&mut self, name: &str) -> Result<u32> {
        let msg = self.require_link(name)?;
        msg.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Mtu(mtu) => Some(*mtu),
                _ => None,
            })
            .ok_or_else(|| {
                LinkError::Missing(format!("the kernel reported no MTU for interface {name}"))
            })
    }

    /// The frames the kernel dropped on `name`: (received, sent), from its 64-bit stats.
    pub fn link_drops(&mut self, name: &str) -> Result<(u64, u64)> {
        let msg = self.require_link(name)?;
        msg.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Stats64(s) => Some((s.rx_dropped, s.tx_dropped)),
                _ => None,
            })
            .ok_or_else(|| {
                LinkError::Missing(format!(
                    "the kernel reported no statistics for interface {name}"
                ))
            })
    }

    /// Whether `name` is administratively up (IFF_UP).
    pub fn is_up(&mut self, name: &str) -> Result<bool> {
        Ok(self
            .require_link(name)?
            .header
            .flags
            .contains(LinkFlags::Up))
    }

    /// Adds `addr/prefix_len` to `name` with the broadcast address set, like
    /// `ip addr add ADDR/LEN brd + dev NAME`. Adding an address that is already there
    /// is not an error (so a restarted daemon can replay its state).
    pub fn add_address(&mut self, name: &str, addr: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let mut attrs = vec![AddressAttribute::Local(addr.into())];
        if let Some(brd) = broadcast(addr, prefix_len) {
            attrs.push(AddressAttribute::Broadcast(brd));
        }
        self.new_address(name, addr.into(), prefix_len, attrs)
    }

    /// Adds the IPv6 `addr/prefix_len` to `name` with no duplicate address detection,
    /// like `ip addr add ADDR/LEN dev NAME nodad` (Docker's container addresses: usable
    /// at once). Adding an address that is already there is not an error.
    pub fn add_address6(&mut self, name: &str, addr: Ipv6Addr, prefix_len: u8) -> Result<()> {
        let attrs = vec![AddressAttribute::Flags(AddressFlags::Nodad)];
        self.new_address(name, addr.into(), prefix_len, attrs)
    }

    /// RTM_NEWADDR (create or replace) of `addr/prefix_len` on `name`, with `attrs`
    /// beside the address.
    fn new_address(
        &mut self,
        name: &str,
        addr: IpAddr,
        prefix_len: u8,
        attrs: Vec<AddressAttribute>,
    ) -> Result<()> {
        let (family, max) = match addr {
            IpAddr::V4(_) => (AddressFamily::Inet, 32),
            IpAddr::V6(_) => (AddressFamily::Inet6, 128),
        };
        if prefix_len > max {
            return Err(LinkError::InvalidPrefix {
                addr,
                prefix_len,
                name: name.to_string(),
            });
        }
        let index = self.require_index(name)?;
        let mut msg = AddressMessage::default();
        msg.header.family = family;
        msg.header.prefix_len = prefix_len;
        msg.header.scope = AddressScope::Universe;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Address(addr));
        msg.attributes.extend(attrs);
        self.ack(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            || format!("adding address {addr}/{prefix_len} to {name}"),
        )
    }

    /// Removes every address (IPv4 and IPv6) from `name`, like `ip addr flush dev NAME`.
    pub fn flush_addresses(&mut self, name: &str) -> Result<()> {
        let index = self.require_index(name)?;
        let dump = self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            || format!("listing the addresses of {name}"),
        )?;
        for reply in dump {
            let RouteNetlinkMessage::NewAddress(addr) = reply else {
                continue;
            };
            if addr.header.index != index {
                continue;
            }
            let shown = addr
                .attributes
                .iter()
                .find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(ip.to_string()),
                    _ => None,
                })
                .unwrap_or_else(|| "?".into());
            let prefix_len = addr.header.prefix_len;
            match self.ack(RouteNetlinkMessage::DelAddress(addr), 0, || {
                format!("removing address {shown}/{prefix_len} from {name}")
            }) {
                // Secondaries go with their primary: already gone is fine.
                Err(e) if errno_of(&e) == Some(libc::EADDRNOTAVAIL) => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// The addresses (both families) of interface `name`.
    pub fn addresses_of(&mut self, name: &str) -> Result<Vec<IpAddr>> {
        let index = self.require_index(name)?;
        let dump = self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            || format!("listing the addresses of {name}"),
        )?;
        Ok(dump
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// The IPv4 addresses of this namespace with their prefixes (loopback's aside): what
    /// a container network's subnet must not overlap (docker0's 172.17.0.1/16, say).
    pub fn ipv4_addresses(&mut self) -> Result<Vec<ipnet::Ipv4Net>> {
        self.ipv4_addresses_where(|_| true)
    }

    /// The IPv4 addresses of the interfaces whose index `on` accepts.
    fn ipv4_addresses_where(&mut self, on: impl Fn(u32) -> bool) -> Result<Vec<ipnet::Ipv4Net>> {
        let dump = self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            || "listing this namespace's addresses".to_string(),
        )?;
        let mut out = Vec::new();
        for reply in dump {
            let RouteNetlinkMessage::NewAddress(addr) = reply else {
                continue;
            };
            if addr.header.scope == AddressScope::Host || !on(addr.header.index) {
                continue;
            }
            let prefix = addr.header.prefix_len;
            // On a point-to-point link the address attribute is the peer's; the local
            // one is ours.
            let v4 = |a: &AddressAttribute| match a {
                AddressAttribute::Local(std::net::IpAddr::V4(ip)) => Some((0, *ip)),
                AddressAttribute::Address(std::net::IpAddr::V4(ip)) => Some((1, *ip)),
                _ => None,
            };
            if let Some((_, ip)) = addr.attributes.iter().filter_map(v4).min() {
                if let Ok(net) = ipnet::Ipv4Net::new(ip, prefix) {
                    out.push(net);
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Sets the IPv4 default route (main table) via `gw`, replacing any existing one.
    pub fn add_default_route(&mut self, gw: Ipv4Addr) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 0;
        msg.header.table = libc::RT_TABLE_MAIN;
        // RTPROT_BOOT: what `ip route add` marks a route as.
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        self.ack(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            || format!("setting the default route via {gw}"),
        )
    }

    /// Sets the IPv6 default route (main table) via `gw` out of `name`, replacing any
    /// existing one, like `ip -6 route replace default via GW dev NAME`.
    pub fn add_default_route6(&mut self, gw: Ipv6Addr, name: &str) -> Result<()> {
        let index = self.require_index(name)?;
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet6;
        msg.header.destination_prefix_length = 0;
        msg.header.table = libc::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(gw)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.ack(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
            || format!("setting the IPv6 default route via {gw} dev {name}"),
        )
    }

    fn get_link(&mut self, name: &str) -> Result<Option<LinkMessage>> {
        validate_ifname(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        let replies = match self.request(RouteNetlinkMessage::GetLink(msg), 0, || {
            format!("looking up interface {name}")
        }) {
            Ok(r) => r,
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(replies.into_iter().find_map(|r| match r {
            RouteNetlinkMessage::NewLink(m) => Some(m),
            _ => None,
        }))
    }

    fn require_link(&mut self, name: &str) -> Result<LinkMessage> {
        self.get_link(name)?
            .ok_or_else(|| LinkError::NoSuchLink(name.to_string()))
    }

    fn require_index(&mut self, name: &str) -> Result<u32> {
        Ok(self.require_link(name)?.header.index)
    }

    /// An RTM_SETLINK skeleton addressing `name` by index.
    fn link_message_for(&mut self, name: &str) -> Result<LinkMessage> {
        let mut msg = LinkMessage::default();
        msg.header.index = self.require_index(name)?;
        Ok(msg)
    }

    /// Sends a request that expects only an ACK.
    fn ack(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        self.request(msg, flags | NLM_F_ACK, what).map(|_| ())
    }

    fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.request(msg, NLM_F_DUMP, what)
    }

    /// Sends one request and collects the replies until its ACK (or NLMSG_DONE for a
    /// dump). A kernel refusal becomes a [`NetlinkError`] described by `what`.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);

        let end = if flags & NLM_F_DUMP == NLM_F_DUMP {
            End::Done
        } else if flags & NLM_F_ACK != 0 {
            End::Ack
        } else {
            End::FirstReply
        };
        let outcome = retry_eintr(|| self.socket.send(&out, 0))
            .map_err(|e| LinkError::from(step("sending a netlink request")(e)))
            .and_then(|_| self.collect(seq, end));
        match outcome {
            Ok(Ok(replies)) => Ok(replies),
            Ok(Err(Refusal { os_error, detail })) => Err(NetlinkError {
                what: what(),
                os_error,
                detail,
            }
            .into()),
            Err(e) => Err(step(what())(Box::new(e)).into()),
        }
    }

    /// Reads the replies to request `seq`. The outer error is a transport or parse
    /// failure, the inner one the kernel's refusal of the request.
    fn collect(
        &mut self,
        seq: u32,
        end: End,
    ) -> Result<std::result::Result<Vec<RouteNetlinkMessage>, Refusal>> {
        let mut replies = Vec::new();
        loop {
            self.buf.clear();
            let n = retry_eintr(|| self.socket.recv(&mut self.buf, 0))
                .map_err(step("receiving a netlink reply"))?;
            if n > self.buf.len() {
                return Err(LinkError::Malformed(format!(
                    "netlink reply truncated ({n} bytes, buffer {})",
                    self.buf.len()
                )));
            }
            let mut offset = 0;
            while offset < n {
                let chunk = &self.buf[offset..n];
                let len = NetlinkBuffer::new_checked(chunk)
                    .map_err(|e| LinkError::Malformed(format!("malformed netlink reply: {e}")))?
                    .length() as usize;
                if len == 0 || len > chunk.len() {
                    return Err(LinkError::Malformed(format!(
                        "malformed netlink reply: message length {len}"
                    )));
                }
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&chunk[..len])
                    .map_err(|e| {
                        LinkError::Malformed(format!("cannot parse netlink reply: {e}"))
                    })?;
                offset += (len + 3) & !3;
                if parsed.header.sequence_number != seq {
                    continue; // a late reply to an earlier request
                }
                match parsed.payload {
                    NetlinkPayload::Error(err) => {
                        return Ok(match err.code {
                            None => Ok(replies),
                            Some(_) => Err(Refusal {
                                os_error: err.to_io(),
                                detail: ext_ack_message(parsed.header.flags, &err.header),
                            }),
                        });
                    }
                    NetlinkPayload::Done(_) => return Ok(Ok(replies)),
                    NetlinkPayload::InnerMessage(m) => {
                        replies.push(m);
                        if end == End::FirstReply {
                            return Ok(Ok(replies));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The kernel's NACK of a request, before it is named by what was asked.
struct Refusal {
    os_error: io::Error,
    detail: Option<String>,
}

/// What ends the replies to a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// The ACK (an NLMSG_ERROR with code 0) we asked for with NLM_F_ACK.
    Ack,
    /// NLMSG_DONE closing a dump.
    Done,
    /// A GET without NLM_F_ACK: its one reply.
    FirstReply,
}

/// The NLMSGERR_ATTR_MSG text of an extended ACK. `payload` is what follows the error
/// code: the (capped) original request header, then attributes if NLM_F_ACK_TLVS.
fn ext_ack_message(flags: u16, payload: &[u8]) -> Option<String> {
    const NLMSG_HDRLEN: usize = 16;
    const NLMSGERR_ATTR_MSG: u16 = 1;
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    // Without NLM_F_CAPPED the whole original request sits before the attributes.
    let skip = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        let len = payload.get(..4)?;
        u32::from_ne_bytes(len.try_into().ok()?) as usize
    };
    let mut rest = payload.get(skip..)?;
    while rest.len() >= 4 {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        if len < 4 || len > rest.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &rest[4..len];
            let text = text.split(|&b| b == 0).next().unwrap_or(text);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
    }
    None
}

/// Repeats a socket call interrupted by a signal (the daemon handles SIGTERM).
fn retry_eintr<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Rejects names the kernel would refuse, with a message that says why.
pub fn validate_ifname(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > IFNAME_MAX
        || name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return Err(LinkError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// `brd +`: the all-ones host part; none for /31 and /32, which have no broadcast.
fn broadcast(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Addr> {
    if prefix_len >= 31 {
        return None;
    }
    let host_mask = u32::MAX >> prefix_len;
    Some(Ipv4Addr::from(u32::from(addr) | host_mask))
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_is_all_ones_host_part() {
        let a = Ipv4Addr::new(172, 16, 5, 2);
        assert_eq!(broadcast(a, 24), Some(Ipv4Addr::new(172, 16, 5, 255)));
        assert_eq!(broadcast(a, 12), Some(Ipv4Addr::new(172, 31, 255, 255)));
        assert_eq!(broadcast(a, 0), Some(Ipv4Addr::BROADCAST));
        assert_eq!(broadcast(a, 31), None);
        assert_eq!(broadcast(a, 32), None);
    }

    #[test]
    fn interface_names_are_validated() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("vsn1234567h1234").is_ok());
        for bad in ["", "a/b", "a b", "a:b", ".", "0123456789abcdef"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ext_ack_message_is_read_after_the_capped_header() {
        let mut payload = vec![0u8; 16];
        let msg = b"mtu less than device minimum\0";
        let len = 4 + msg.len();
        payload.extend_from_slice(&(len as u16).to_ne_bytes());
        payload.extend_from_slice(&1u16.to_ne_bytes());
        payload.extend_from_slice(msg);
        let flags = NLM_F_ACK_TLVS | NLM_F_CAPPED;
        assert_eq!(
            ext_ack_message(flags, &payload).as_deref(),
            Some("mtu less than device minimum")
        );
        assert_eq!(ext_ack_message(NLM_F_CAPPED, &payload), None);
        assert_eq!(ext_ack_message(flags, &payload[..10]), None);
    }

    #[test]
    fn macs_are_formatted() {
        assert_eq!(
            format_mac(&[2, 0x42, 0xac, 0x11, 0, 0xff]),
            "02:42:ac:11:00:ff"
        );
    }
}
