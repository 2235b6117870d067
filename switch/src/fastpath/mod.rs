//! The in-kernel fast path for known unicast between sandbox endpoints.
//!
//! Once a network has learned both ends of a conversation, the switching decision is a
//! pure table lookup, so the kernel makes it: a program on the sandbox's veth looks up
//! the destination MAC in this network's part of a BPF hash map the workers keep, and
//! sends the frame straight to the destination. Anything the program is not sure about
//! goes to the workers exactly as without it. Two flavours share the map, the rules and
//! the counters:
//!
//! - `tc` (the default, [`tc`]): tcx programs on skbs. Known unicast goes by
//!   `bpf_redirect_peer` into the destination sandbox with GSO intact; the rest reaches
//!   the worker through its trunk veth, segmented and checksummed by the kernel. No
//!   AF_XDP socket per endpoint, and no XDP on the sandbox's veth (which would clear
//!   TSO/GSO on its peer, the sandbox's end).
//! - `xdp` (`-o fastpath=xdp`, [`xdp`]): AF_XDP ports per endpoint and an XDP program
//!   that redirects through a devmap: more frames per second for small-packet lab
//!   traffic, but sandboxes send MTU-sized frames with software checksums.
//!
//! What the programs forward, all of it required:
//! - the destination is unicast and not a VLAN tag;
//! - the source MAC is installed, in this network, on this very port (so learning,
//!   moves and the FDB's bound stay the worker's: a new or moved source goes to the
//!   worker, which learns it and installs it);
//! - the destination MAC is installed in this network on another port;
//! - a port with port security sends IPv4 or ARP from one of its addresses, or IPv6
//!   (TCP, UDP, echo and the like; no neighbour discovery) from one of its IPv6
//!   addresses or its link-local one ([`guard`]).
//!
//! Everything else (broadcast, the gateway's MAC, unknown or moved addresses, ports in
//! capture) reaches the worker. Workers install an entry for a MAC when they see it
//! learned on one of their fast-path ports, remove it when the FDB forgets or moves it,
//! and remove every entry of a port while it is captured or when it goes away. Entries
//! are keyed by network, so isolation between networks holds in the kernel as well.
//!
//! Per-port counters (frames and bytes each way) are per-CPU array slots, summed into
//! the port's counters by `stats`.

mod asm;
mod guard;
mod nat_in;
mod shared;
pub mod tc;
mod tunnel;
pub mod uplink;
mod xdp;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::bpf::{self, BpfInsn};
use crate::fdb::Mac;
use crate::port_security::PortGuard;
use crate::{NetId, PortId};

/// Ports with ids below this can use the fast path (array and devmap slots), and only
/// they can be tc endpoints (the trunk tag's TCI names the port).
pub const MAX_PORTS: u32 = 4096;
pub use shared::owned_key;
pub use uplink::OBSERVED;
/// Installed (network, MAC) entries, for every network together.
const FDB_ENTRIES: u32 = 65536;
const KEY_LEN: usize = 12;
const VALUE_LEN: usize = 8;
/// rx_packets, rx_bytes, tx_packets, tx_bytes.
const STATS_LEN: usize = 32;
/// A tc endpoint: network, port, the trunk's ifindex, padding.
const ENDPOINT_LEN: usize = 16;
/// Routed TCP sessions the kernel translates (`NatKey` -> `NatValue`), per direction.
/// The maps are LRU: an entry nobody took back (a session whose adoption the router
/// never saw) cannot fill them, and one evicted goes back to the router at its next
/// tick.
const NAT_ENTRIES: u32 = 65536;
/// Published ports the tc uplink opens TCP sessions for ([`PublishedKey`]).
const PUBLISHED_ENTRIES: u32 = 4096;
pub const NAT_KEY_LEN: usize = 16;
pub const NAT_VALUE_LEN: usize = 32;

/// An outbound session as the tc endpoint program looks it up: the endpoint's port
/// (u32, native order), then the packet's source and destination addresses and ports
/// as they are on the wire.
pub type NatKey = [u8; NAT_KEY_LEN];

/// What the program does to such a packet: destination and source MACs (12 bytes), the
/// new source address (4) and port (2), both in network order, 2 bytes padding, the
/// uplink's ifindex (u32), 4 bytes reserved, and the `seen` mark (u32) it sets.
pub type NatValue = [u8; NAT_VALUE_LEN];

/// A published port as the tc uplink looks it up for a SYN: the address (4 bytes) and
/// port (2) it was sent to, as on the wire, the protocol (6) and a zero byte. Its value
/// is the `nat_in` value of the sessions it opens: the endpoint's and the gateway's
/// MACs, the container's address and port, the endpoint's port id at 20.
pub type PublishedKey = [u8; 8];

/// Which half of a NAT session: outbound (a tc endpoint's program) or inbound (the
/// uplink's). An inbound key is the packet's addresses and ports as on the wire and 4
/// bytes of zero; its value has the endpoint's port id at 20 instead of an ifindex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatDir {
    Out,
    In,
}

/// The tc uplink as its program sees it.
#[derive(Clone, Copy, Debug)]
pub struct TcUplink {
    pub ifindex: u32,
    pub port: PortId,
    pub trunk_ifindex: u32,
    pub mac: Mac,
    /// The VTEP address: VXLAN to it is decapsulated.
    pub vtep: std::net::Ipv4Addr,
    /// The host shares the uplink's address and MAC ([`shared`]); None: every frame is
    /// the switch's.
    pub shared: Option<SharedUplink>,
}

/// A tc uplink whose address the host holds too: the program passes the host's traffic
/// to the kernel and takes only the switch's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedUplink {
    /// The shared address.
    pub ip: std::net::Ipv4Addr,
    /// The first TCP/UDP port of the switch's range: it owns `owned_from..=65535` on the
    /// shared address (less what the host has sockets for), and below that only the
    /// ports in `owned` ([`FastPath::own_port`]).
    pub owned_from: u16,
}

/// A `vxlan_out` value ([`tunnel`]): the outer headers for one MAC behind a VTEP.
pub type VxlanValue = [u8; tunnel::VXLAN_VALUE_LEN];

/// The `vxlan_out` value for frames to a VTEP: `outer` is the 50 bytes of outer
/// headers (Ethernet, IPv4, UDP, VXLAN) as the router writes them for that VTEP; the
/// lengths, checksums and IP ID are the program's (zeroed here, and the IPv4 checksum
/// recomputed over a total length of 0).
pub fn vxlan_value(outer: &[u8], uplink_ifindex: u32, uplink_port: PortId) -> VxlanValue {
    use vxlan::wire::OUTER_LEN;
    use wire::ip::{ipv4, IPV4_HLEN};
    use wire::{udp, ETH_HLEN};
    let mut v = [0u8; tunnel::VXLAN_VALUE_LEN];
    v[..OUTER_LEN].copy_from_slice(&outer[..OUTER_LEN]);
    let ip = &mut v[ETH_HLEN..ETH_HLEN + IPV4_HLEN];
    ip[ipv4::TOTAL_LEN..ipv4::FRAG].fill(0); // total length, IP ID
    ip[ipv4::CHECKSUM..ipv4::SRC].fill(0);
    let sum = wire::checksum::checksum(ip, 0);
    ip[ipv4::CHECKSUM..ipv4::SRC].copy_from_slice(&sum.to_be_bytes());
    let u = ETH_HLEN + IPV4_HLEN;
    v[u + udp::field::LEN..u + udp::field::PAYLOAD].fill(0); // UDP length and checksum
    v[52..56].copy_from_slice(&uplink_ifindex.to_ne_bytes());
    v[60..64].copy_from_slice(&uplink_port.to_ne_bytes());
    v
}

const FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;
const XDP_REDIRECT: i32 = 4;

/// Frames and bytes the kernel forwarded for one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// The maps every fast-path program shares. One per engine.
pub struct FastPath {
    fdb: OwnedFd,
    ports: OwnedFd,
    stats: OwnedFd,
    /// tc endpoints by the ifindex of their host end.
    endpoints: OwnedFd,
    /// A tc endpoint's host end by port.
    peers: OwnedFd,
    /// Routed TCP sessions the tc endpoint program translates itself.
    nat_out: OwnedFd,
    /// Their inbound halves, which the uplink's program (XDP or tc) translates back.
    nat_in: OwnedFd,
    /// Published ports the tc uplink opens sessions for itself.
    published: OwnedFd,
    /// Overlay unicast: (network, MAC behind a VTEP) -> the outer headers.
    vxlan_out: OwnedFd,
    /// VNI -> network, for the tc uplink's decapsulation.
    vnis: OwnedFd,
    /// The tc uplink's configuration (one entry).
    uplink_cfg: OwnedFd,
    /// Published ports on a shared uplink's address ([`owned_key`]).
    owned: OwnedFd,
    /// Port security: which ports are guarded, and their addresses ([`guard`]).
    guarded: OwnedFd,
    allowed: OwnedFd,
    allowed6: OwnedFd,
    /// The tc programs, or why they could not be loaded (the XDP flavour works without
    /// them).
    tc: Result<TcPrograms, String>,
    cpus: usize,
}

/// The tc data path's programs.
struct TcPrograms {
    endpoint: OwnedFd,
    trunk: OwnedFd,
    uplink: OwnedFd,
}

/// A tc program attached to a device's ingress; detached when dropped (also when the
/// daemon dies: the kernel drops the link with its last fd).
pub struct TcLink {
    _link: OwnedFd,
}

/// A BPF map the fast path creates: type, key and value sizes, bound, the kernel's name
/// for it, and what it is for (named when the kernel refuses it).
struct MapSpec(u32, usize, usize, u32, &'static str, &'static str);

use bpf::{
    BPF_MAP_TYPE_ARRAY as ARRAY, BPF_MAP_TYPE_DEVMAP as DEVMAP, BPF_MAP_TYPE_HASH as HASH,
    BPF_MAP_TYPE_LRU_HASH as LRU, BPF_MAP_TYPE_PERCPU_ARRAY as PERCPU,
};

/// The fast path's maps, in the order `FastPath::new` takes them.
#[rustfmt::skip]
const MAPS: [MapSpec; 15] = [
    MapSpec(HASH, KEY_LEN, VALUE_LEN, FDB_ENTRIES, "vsw_fast_fdb", "the fast path's FDB map"),
    MapSpec(DEVMAP, 4, 4, MAX_PORTS, "vsw_fast_ports", "the fast path's devmap"),
    MapSpec(PERCPU, 4, STATS_LEN, MAX_PORTS, "vsw_fast_stats", "the fast path's counters"),
    MapSpec(HASH, 4, ENDPOINT_LEN, MAX_PORTS, "vsw_tc_eps", "the tc endpoints map"),
    MapSpec(ARRAY, 4, 4, MAX_PORTS, "vsw_tc_peers", "the tc peers map"),
    MapSpec(LRU, NAT_KEY_LEN, NAT_VALUE_LEN, NAT_ENTRIES, "vsw_tc_nat", "the tc NAT map"),
    MapSpec(LRU, NAT_KEY_LEN, NAT_VALUE_LEN, NAT_ENTRIES, "vsw_nat_in", "the inbound NAT map"),
    MapSpec(HASH, 8, NAT_VALUE_LEN, PUBLISHED_ENTRIES, "vsw_published", "the published ports' map"),
    MapSpec(HASH, KEY_LEN, tunnel::VXLAN_VALUE_LEN, FDB_ENTRIES, "vsw_vxlan_out", "the overlay fast path's map"),
    MapSpec(HASH, 4, 4, MAX_PORTS, "vsw_vnis", "the VNI map"),
    MapSpec(ARRAY, 4, uplink::CFG_LEN, 1, "vsw_uplink", "the uplink's map"),
    MapSpec(HASH, 4, 4, shared::OWNED_ENTRIES, "vsw_owned", "the shared uplink's owned ports"),
    MapSpec(ARRAY, 4, 4, MAX_PORTS, "vsw_guarded", "the port-security flags"),
    MapSpec(HASH, guard::ALLOWED_KEY_LEN, 4, ALLOWED_ENTRIES, "vsw_allowed", "the port-security addresses"),
    MapSpec(HASH, guard::ALLOWED6_KEY_LEN, 4, ALLOWED_ENTRIES, "vsw_allowed6", "the port-security IPv6 addresses"),
];

/// Every guarded port's allowed addresses of one family (`guard`; link-local addresses
/// are derived from the frame's MAC, not kept).
const ALLOWED_ENTRIES: u32 = MAX_PORTS * crate::port_security::MAX_ADDRESSES as u32;

fn create_maps<const N: usize>(specs: &[MapSpec; N]) -> io::Result<[OwnedFd; N]> {
    let hint = "run as root or with CAP_BPF and CAP_NET_ADMIN";
    let mut fds = Vec::with_capacity(N);
    for MapSpec(kind, key, value, entries, name, what) in specs {
        let fd = bpf::map_create(*kind, *key as u32, *value as u32, *entries, name)
            .map_err(|e| bpf::context(e, &format!("create {what}"), hint))?;
        fds.push(fd);
    }
    Ok(fds
        .try_into()
        .unwrap_or_else(|_| unreachable!("one fd per spec")))
}

impl FastPath {
    pub fn new() -> io::Result<FastPath> {
        let [fdb, ports, stats, endpoints, peers, nat_out, nat_in, published, vxlan_out, vnis, uplink_cfg, owned, guarded, allowed, allowed6] =
            create_maps(&MAPS)?;
        let guard_maps = guard::Maps {
            guarded: guarded.as_raw_fd(),
            allowed: allowed.as_raw_fd(),
            allowed6: allowed6.as_raw_fd(),
        };
        let maps = tc::Maps {
            guard: guard_maps,
            endpoints: endpoints.as_raw_fd(),
            peers: peers.as_raw_fd(),
            fdb: fdb.as_raw_fd(),
            stats: stats.as_raw_fd(),
            nat_out: nat_out.as_raw_fd(),
            vxlan_out: vxlan_out.as_raw_fd(),
        };
        let uplink_maps = uplink::Maps {
            cfg: uplink_cfg.as_raw_fd(),
            vnis: vnis.as_raw_fd(),
            fdb: fdb.as_raw_fd(),
            peers: peers.as_raw_fd(),
            vxlan_out: vxlan_out.as_raw_fd(),
            nat_in: nat_in.as_raw_fd(),
            nat_out: nat_out.as_raw_fd(),
            published: published.as_raw_fd(),
            stats: stats.as_raw_fd(),
            owned: owned.as_raw_fd(),
        };
        let load = |insns: Vec<BpfInsn>, name: &str| {
            bpf::prog_load_tc(&insns, name).map_err(|e| format!("load {name}: {e}"))
        };
        let tc = (|| {
            Ok(TcPrograms {
                endpoint: load(tc::endpoint_program(&maps), "vsw_tc_ep")?,
                trunk: load(tc::trunk_program(&maps), "vsw_tc_trunk")?,
                uplink: load(uplink::program(&uplink_maps), "vsw_tc_uplink")?,
            })
        })();
        if let Err(e) = &tc {
            tracing::warn!(error = %e, "no tc data path");
        }
        Ok(FastPath {
            fdb,
            ports,
            stats,
            endpoints,
            peers,
            nat_out,
            nat_in,
            published,
            vxlan_out,
            vnis,
            uplink_cfg,
            owned,
            guarded,
            allowed,
            allowed6,
            tc,
            cpus: bpf::possible_cpus()?,
        })
    }

    /// The tc programs, or an error saying why there are none.
    fn tc_programs(&self) -> io::Result<&TcPrograms> {
        match &self.tc {
            Ok(p) => Ok(p),
            Err(e) => Err(io::Error::other(format!(
                "the tc data path is unavailable: {e}"
            ))),
        }
    }

    /// Make the veth host end `ifindex` tc endpoint `port` of network `net`: its frames
    /// are forwarded in the kernel or punted to the trunk `trunk_ifindex` (the kernel end
    /// of its worker's trunk), and the trunk delivers the worker's frames for `port` to it.
    pub fn attach_endpoint(
        &self,
        ifindex: u32,
        net: NetId,
        port: PortId,
        trunk_ifindex: u32,
    ) -> io::Result<TcLink> {
        if port >= MAX_PORTS {
            return Err(io::Error::other(format!(
                "port {port} is past the {MAX_PORTS} endpoints the tc data path has slots for"
            )));
        }
        let program = &self.tc_programs()?.endpoint;
        let value = endpoint_value(net, port, trunk_ifindex);
        let zero = vec![0u8; STATS_LEN * self.cpus];
        bpf::map_update_bytes(&self.stats, &port.to_ne_bytes(), &zero)
            .map_err(|e| bpf::context(e, "zero the fast path's counters", ""))?;
        bpf::map_update_bytes(&self.endpoints, &ifindex.to_ne_bytes(), &value)
            .map_err(|e| bpf::context(e, "add the endpoint to the tc endpoints map", ""))?;
        bpf::map_update(&self.peers, port, ifindex)
            .map_err(|e| bpf::context(e, "add the endpoint to the tc peers map", ""))?;
        // A redirect target for the uplink's inbound NAT.
        bpf::map_update(&self.ports, port, ifindex)
            .map_err(|e| bpf::context(e, "add the endpoint to the fast path's devmap", ""))?;
        match bpf::tcx_ingress_link_create(program, ifindex) {
            Ok(link) => Ok(TcLink { _link: link }),
            Err(e) => {
                self.detach_endpoint(ifindex, port);
                let hint = tcx_hint(&e);
                Err(bpf::context(
                    e,
                    "attach the tc endpoint program (tcx ingress)",
                    hint,
                ))
            }
        }
    }

    /// Forget tc endpoint `port` on `ifindex` (its link is dropped by the caller).
    pub fn detach_endpoint(&self, ifindex: u32, port: PortId) {
        let _ = bpf::map_delete_bytes(&self.endpoints, &ifindex.to_ne_bytes());
        let _ = bpf::map_update(&self.peers, port, 0);
        self.remove_port(port);
    }

    /// Run the trunk program on the kernel end of a worker's trunk, `ifindex`.
    pub fn attach_trunk(&self, ifindex: u32) -> io::Result<TcLink> {
        let program = &self.tc_programs()?.trunk;
        bpf::tcx_ingress_link_create(program, ifindex)
            .map(|link| TcLink { _link: link })
            .map_err(|e| {
                let hint = tcx_hint(&e);
                bpf::context(e, "attach the tc trunk program (tcx ingress)", hint)
            })
    }

    /// Make `ifindex` the tc uplink, port `port`: its frames are forwarded in the
    /// kernel ([`uplink`]) or punted to the trunk `trunk_ifindex`, and the worker's
    /// frames for `port` leave by its egress.
    pub fn attach_uplink(&self, u: &TcUplink) -> io::Result<TcLink> {
        if u.port >= MAX_PORTS {
            return Err(io::Error::other(format!(
                "port {} is past the {MAX_PORTS} the tc data path has slots for",
                u.port
            )));
        }
        let program = &self.tc_programs()?.uplink;
        let zero = vec![0u8; STATS_LEN * self.cpus];
        bpf::map_update_bytes(&self.stats, &u.port.to_ne_bytes(), &zero)
            .map_err(|e| bpf::context(e, "zero the fast path's counters", ""))?;
        bpf::map_update(&self.peers, u.port, u.ifindex | uplink::EGRESS)
            .map_err(|e| bpf::context(e, "add the uplink to the tc peers map", ""))?;
        self.set_uplink_cfg(u, 0)?;
        match bpf::tcx_ingress_link_create(program, u.ifindex) {
            Ok(link) => Ok(TcLink { _link: link }),
            Err(e) => {
                let _ = bpf::map_update(&self.peers, u.port, 0);
                let hint = tcx_hint(&e);
                Err(bpf::context(
                    e,
                    "attach the tc uplink program (tcx ingress)",
                    hint,
                ))
            }
        }
    }

    /// The tc uplink's configuration with `flags` ([`uplink::CFG_PUNT_ALL`]; a shared
    /// uplink adds [`uplink::CFG_SHARED`] itself).
    pub fn set_uplink_cfg(&self, u: &TcUplink, flags: u32) -> io::Result<()> {
        let mut v = [0u8; uplink::CFG_LEN];
        v[..6].copy_from_slice(&u.mac);
        v[8..12].copy_from_slice(&u.vtep.octets());
        v[12..16].copy_from_slice(&u.port.to_ne_bytes());
        v[16..20].copy_from_slice(&u.trunk_ifindex.to_ne_bytes());
        let mut flags = flags;
        if let Some(s) = u.shared {
            flags |= uplink::CFG_SHARED;
            v[24..28].copy_from_slice(&s.ip.octets());
            v[28..32].copy_from_slice(&u32::from(s.owned_from).to_ne_bytes());
        }
        v[20..24].copy_from_slice(&flags.to_ne_bytes());
        bpf::map_update_bytes(&self.uplink_cfg, &0u32.to_ne_bytes(), &v)
            .map_err(|e| bpf::context(e, "configure the tc uplink", ""))
    }

    /// Overlay network `net` has VNI `vni` (Some), or no longer (None).
    pub fn set_vni(&self, vni: u32, net: Option<NetId>) {
        let b = vni.to_be_bytes();
        let key = [b[1], b[2], b[3], 0];
        let _ = match net {
            Some(n) => bpf::map_update_bytes(&self.vnis, &key, &n.to_ne_bytes()),
            None => bpf::map_delete_bytes(&self.vnis, &key),
        };
    }

    /// Frames for `mac` of `net` are encapsulated with `value` ([`VxlanValue`]) and
    /// leave by the uplink; frames from it through the uplink are decapsulated.
    pub fn vxlan_install(&self, net: NetId, mac: Mac, value: &VxlanValue) -> io::Result<()> {
        bpf::map_update_bytes(&self.vxlan_out, &key(net, mac), value)
    }

    pub fn vxlan_remove(&self, net: NetId, mac: Mac) {
        let _ = bpf::map_delete_bytes(&self.vxlan_out, &key(net, mac));
    }

    /// Whether the kernel carried a frame to or from `mac` of `net` since the last call
    /// (clearing the mark); None when the entry is gone.
    pub fn vxlan_take_seen(&self, net: NetId, mac: Mac) -> Option<bool> {
        let k = key(net, mac);
        let mut value = [0u8; tunnel::VXLAN_VALUE_LEN];
        bpf::map_lookup_bytes(&self.vxlan_out, &k, &mut value).ok()?;
        let seen = value[56..60] != [0; 4];
        if seen {
            value[56..60].fill(0);
            let _ = bpf::map_update_bytes(&self.vxlan_out, &k, &value);
        }
        Some(seen)
    }

    /// The program for port `port` of network `net`, punting to the AF_XDP socket in
    /// `xsks` (slot = the receive queue).
    pub fn program(&self, xsks: &OwnedFd, net: NetId, port: PortId) -> Vec<BpfInsn> {
        let maps = xdp::Maps {
            xsks: xsks.as_raw_fd(),
            fdb: self.fdb.as_raw_fd(),
            ports: self.ports.as_raw_fd(),
            stats: self.stats.as_raw_fd(),
            guard: guard::Maps {
                guarded: self.guarded.as_raw_fd(),
                allowed: self.allowed.as_raw_fd(),
                allowed6: self.allowed6.as_raw_fd(),
            },
        };
        xdp::program(&maps, net, port)
    }

    /// Port security for `port` in the kernel: it forwards only from `new`'s addresses,
    /// of both families (the `guard` module says what exactly), or anything (None).
    /// `old` is the guard set last time, whose addresses are removed unless kept; the
    /// new ones go in before the flag, the old ones out after it.
    pub fn set_guard(
        &self,
        port: PortId,
        new: Option<&PortGuard>,
        old: Option<&PortGuard>,
    ) -> io::Result<()> {
        if port >= MAX_PORTS {
            return Ok(()); // past the programs' slots: never forwarded in the kernel
        }
        let (keep, keep6) = new.map_or((&[][..], &[][..]), |g| (g.ips(), g.ips6()));
        let add = |map: &OwnedFd, key: &[u8]| {
            bpf::map_update_bytes(map, key, &[1, 0, 0, 0])
                .map_err(|e| bpf::context(e, "add a port-security address", ""))
        };
        for ip in keep {
            add(&self.allowed, &guard::allowed_key(port, *ip))?;
        }
        for ip in keep6 {
            add(&self.allowed6, &guard::allowed6_key(port, *ip))?;
        }
        bpf::map_update(&self.guarded, port, u32::from(new.is_some()))
            .map_err(|e| bpf::context(e, "set the port-security flag", ""))?;
        if let Some(old) = old {
            for ip in old.ips().iter().filter(|ip| !keep.contains(ip)) {
                let _ = bpf::map_delete_bytes(&self.allowed, &guard::allowed_key(port, *ip));
            }
            for ip in old.ips6().iter().filter(|ip| !keep6.contains(ip)) {
                let _ = bpf::map_delete_bytes(&self.allowed6, &guard::allowed6_key(port, *ip));
            }
        }
        Ok(())
    }

    /// The uplink's program: the inbound half of the NAT fast path, punting to the AF_XDP
    /// socket in `xsks`.
    pub fn nat_in_program(&self, xsks: &OwnedFd) -> Vec<BpfInsn> {
        nat_in::program(&nat_in::Maps {
            xsks: xsks.as_raw_fd(),
            nat_in: self.nat_in.as_raw_fd(),
            ports: self.ports.as_raw_fd(),
            stats: self.stats.as_raw_fd(),
        })
    }

    /// Make `port` (the veth with `ifindex`) a redirect target with zeroed counters.
    pub fn add_port(&self, port: PortId, ifindex: u32) -> io::Result<()> {
        if port >= MAX_PORTS {
            return Err(io::Error::other(format!(
                "port {port} is past the fast path's {MAX_PORTS} slots"
            )));
        }
        let zero = vec![0u8; STATS_LEN * self.cpus];
        bpf::map_update_bytes(&self.stats, &port.to_ne_bytes(), &zero)
            .map_err(|e| bpf::context(e, "zero the fast path's counters", ""))?;
        bpf::map_update(&self.ports, port, ifindex)
            .map_err(|e| bpf::context(e, "add the port to the fast path's devmap", ""))
    }

    /// `port` is no longer a redirect target (frames for it go to the worker).
    pub fn remove_port(&self, port: PortId) {
        let _ = bpf::map_delete_bytes(&self.ports, &port.to_ne_bytes());
    }

    /// Frames addressed to `mac` in `net` go straight to `port`, and frames from it are
    /// accepted on `port`.
    pub fn install(&self, net: NetId, mac: Mac, port: PortId) -> io::Result<()> {
        let mut value = [0u8; VALUE_LEN];
        value[..4].copy_from_slice(&port.to_ne_bytes());
        bpf::map_update_bytes(&self.fdb, &key(net, mac), &value)
    }

    /// Remove `mac` in `net` if it is still installed on `port` (another worker may
    /// have installed it elsewhere since).
    pub fn remove(&self, net: NetId, mac: Mac, port: PortId) {
        let k = key(net, mac);
        let mut value = [0u8; VALUE_LEN];
        if bpf::map_lookup_bytes(&self.fdb, &k, &mut value).is_ok()
            && value[..4] == port.to_ne_bytes()
        {
            let _ = bpf::map_delete_bytes(&self.fdb, &k);
        }
    }

    /// Whether the kernel forwarded a frame from `mac` since the last call (clearing the
    /// mark); None when the entry is gone or now names another port.
    pub fn take_seen(&self, net: NetId, mac: Mac, port: PortId) -> Option<bool> {
        let k = key(net, mac);
        let mut value = [0u8; VALUE_LEN];
        bpf::map_lookup_bytes(&self.fdb, &k, &mut value).ok()?;
        if value[..4] != port.to_ne_bytes() {
            return None;
        }
        let seen = value[4..] != [0; 4];
        if seen {
            value[4..].fill(0);
            // Fails only if the entry went in between: the next look reinstalls it.
            let _ = bpf::map_update_bytes(&self.fdb, &k, &value);
        }
        Some(seen)
    }

    /// Whether `mac` of `net` is installed on `port`.
    pub fn installed_on(&self, net: NetId, mac: Mac, port: PortId) -> bool {
        let mut value = [0u8; VALUE_LEN];
        bpf::map_lookup_bytes(&self.fdb, &key(net, mac), &mut value).is_ok()
            && value[..4] == port.to_ne_bytes()
    }

    fn nat_map(&self, dir: NatDir) -> &OwnedFd {
        match dir {
            NatDir::Out => &self.nat_out,
            NatDir::In => &self.nat_in,
        }
    }

    /// From now on the kernel translates the packets matching `key` itself, outbound
    /// (the tc endpoint program) or inbound (the uplink's program); a full map keeps the
    /// session with the router.
    pub fn nat_install(&self, dir: NatDir, key: &NatKey, value: &NatValue) -> io::Result<()> {
        bpf::map_update_bytes(self.nat_map(dir), key, value)
    }

    pub fn nat_remove(&self, dir: NatDir, key: &NatKey) {
        let _ = bpf::map_delete_bytes(self.nat_map(dir), key);
    }

    /// SYNs to `key` open sessions in the kernel (the tc uplink's), translated to `value`.
    pub fn published_install(&self, key: &PublishedKey, value: &NatValue) -> io::Result<()> {
        bpf::map_update_bytes(&self.published, key, value)
    }

    pub fn published_remove(&self, key: &PublishedKey) {
        let _ = bpf::map_delete_bytes(&self.published, key);
    }

    /// The value installed for `key` in `dir`'s map, if any.
    pub fn nat_value(&self, dir: NatDir, key: &NatKey) -> Option<NatValue> {
        let mut value = [0u8; NAT_VALUE_LEN];
        bpf::map_lookup_bytes(self.nat_map(dir), key, &mut value).ok()?;
        Some(value)
    }

    /// Whether the kernel translated a packet of `key` since the last call (clearing the
    /// mark); None when the entry is gone.
    pub fn nat_take_seen(&self, dir: NatDir, key: &NatKey) -> Option<bool> {
        let map = self.nat_map(dir);
        let mut value = [0u8; NAT_VALUE_LEN];
        bpf::map_lookup_bytes(map, key, &mut value).ok()?;
        let seen = value[28..] != [0; 4];
        if seen {
            value[28..].fill(0);
            let _ = bpf::map_update_bytes(map, key, &value);
        }
        Some(seen)
    }

    /// What the kernel forwarded for `port`, summed over CPUs.
    pub fn counters(&self, port: PortId) -> io::Result<FastCounters> {
        let mut buf = vec![0u8; STATS_LEN * self.cpus];
        bpf::map_lookup(&self.stats, port, &mut buf)?;
        let mut c = FastCounters::default();
        for cpu in buf.chunks_exact(STATS_LEN) {
            let field = |i: usize| u64::from_ne_bytes(cpu[i * 8..i * 8 + 8].try_into().unwrap());
            c.rx_packets += field(0);
            c.rx_bytes += field(1);
            c.tx_packets += field(2);
            c.tx_bytes += field(3);
        }
        Ok(c)
    }
}

/// What to tell the operator when a tcx attach fails: a kernel without tcx refuses the
/// attach type; other errors (EMFILE, EPERM, ENODEV) speak for themselves.
/// An `endpoints` entry: the endpoint's network and port, its worker's trunk.
fn endpoint_value(net: NetId, port: PortId, trunk_ifindex: u32) -> [u8; ENDPOINT_LEN] {
    let mut value = [0u8; ENDPOINT_LEN];
    value[..4].copy_from_slice(&net.to_ne_bytes());
    value[4..8].copy_from_slice(&port.to_ne_bytes());
    value[8..12].copy_from_slice(&trunk_ifindex.to_ne_bytes());
    value
}

/// The program tests' endpoint: the maps' entry for host end `ifindex`, nothing attached.
#[cfg(test)]
fn test_endpoint(fp: &FastPath, ifindex: u32, net: NetId, port: PortId, trunk_ifindex: u32) {
    let value = endpoint_value(net, port, trunk_ifindex);
    bpf::map_update_bytes(&fp.endpoints, &ifindex.to_ne_bytes(), &value).unwrap();
}

fn tcx_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => "tcx needs Linux 6.6 or later",
        _ => "",
    }
}

/// The FDB map's key: the network, then the MAC, then two bytes of zero padding.
fn key(net: NetId, mac: Mac) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..4].copy_from_slice(&net.to_ne_bytes());
    k[4..10].copy_from_slice(&mac);
    k
}

#[cfg(test)]
mod tests;

/// The fast path in a real engine with two workers: AF_XDP ports on veths in a lab
/// namespace, frames from AF_PACKET sockets on the far ends.
#[cfg(test)]
mod engine_tests;

#[cfg(test)]
mod tunnel_tests;

#[cfg(test)]
mod shared_tests;

#[cfg(test)]
mod test_frames;
