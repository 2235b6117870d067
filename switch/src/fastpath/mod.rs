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
//! - the destination MAC is installed in this network on another port.
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
mod nat_in;
pub mod tc;
mod tunnel;
pub mod uplink;
mod xdp;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::bpf::{self, BpfInsn};
use crate::fdb::Mac;
use crate::{NetId, PortId};

/// Ports with ids below this can use the fast path (array and devmap slots), and only
/// they can be tc endpoints (the trunk tag's TCI names the port).
pub const MAX_PORTS: u32 = 4096;
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
}

/// A `vxlan_out` value ([`tunnel`]): the outer headers for one MAC behind a VTEP.
pub type VxlanValue = [u8; tunnel::VXLAN_VALUE_LEN];

/// The `vxlan_out` value for frames to a VTEP: `outer` is the 50 bytes of outer
/// headers (Ethernet, IPv4, UDP, VXLAN) as the router writes them for that VTEP; the
/// lengths, checksums and IP ID are the program's (zeroed here, and the IPv4 checksum
/// recomputed over a total length of 0).
pub fn vxlan_value(outer: &[u8], uplink_ifindex: u32, uplink_port: PortId) -> VxlanValue {
    let mut v = [0u8; tunnel::VXLAN_VALUE_LEN];
    v[..50].copy_from_slice(&outer[..50]);
    v[16..20].fill(0); // total length, IP ID
    v[24..26].fill(0);
    v[38..42].fill(0); // UDP length and checksum
    let sum = wire::checksum::checksum(&v[14..34], 0);
    v[24..26].copy_from_slice(&sum.to_be_bytes());
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

impl FastPath {
    pub fn new() -> io::Result<FastPath> {
        let hint = "run as root or with CAP_BPF and CAP_NET_ADMIN";
        let fdb = bpf::map_create(
            bpf::BPF_MAP_TYPE_HASH,
            KEY_LEN as u32,
            VALUE_LEN as u32,
            FDB_ENTRIES,
            "vsw_fast_fdb",
        )
        .map_err(|e| bpf::context(e, "create the fast path's FDB map", hint))?;
        let ports = bpf::map_create(bpf::BPF_MAP_TYPE_DEVMAP, 4, 4, MAX_PORTS, "vsw_fast_ports")
            .map_err(|e| bpf::context(e, "create the fast path's devmap", hint))?;
        let stats = bpf::map_create(
            bpf::BPF_MAP_TYPE_PERCPU_ARRAY,
            4,
            STATS_LEN as u32,
            MAX_PORTS,
            "vsw_fast_stats",
        )
        .map_err(|e| bpf::context(e, "create the fast path's counters", hint))?;
        let endpoints = bpf::map_create(
            bpf::BPF_MAP_TYPE_HASH,
            4,
            ENDPOINT_LEN as u32,
            MAX_PORTS,
            "vsw_tc_eps",
        )
        .map_err(|e| bpf::context(e, "create the tc endpoints map", hint))?;
        let peers = bpf::map_create(bpf::BPF_MAP_TYPE_ARRAY, 4, 4, MAX_PORTS, "vsw_tc_peers")
            .map_err(|e| bpf::context(e, "create the tc peers map", hint))?;
        let nat_out = bpf::map_create(
            bpf::BPF_MAP_TYPE_LRU_HASH,
            NAT_KEY_LEN as u32,
            NAT_VALUE_LEN as u32,
            NAT_ENTRIES,
            "vsw_tc_nat",
        )
        .map_err(|e| bpf::context(e, "create the tc NAT map", hint))?;
        let nat_in = bpf::map_create(
            bpf::BPF_MAP_TYPE_LRU_HASH,
            NAT_KEY_LEN as u32,
            NAT_VALUE_LEN as u32,
            NAT_ENTRIES,
            "vsw_nat_in",
        )
        .map_err(|e| bpf::context(e, "create the inbound NAT map", hint))?;
        let published = bpf::map_create(
            bpf::BPF_MAP_TYPE_HASH,
            8,
            NAT_VALUE_LEN as u32,
            PUBLISHED_ENTRIES,
            "vsw_published",
        )
        .map_err(|e| bpf::context(e, "create the published ports' map", hint))?;
        let vxlan_out = bpf::map_create(
            bpf::BPF_MAP_TYPE_HASH,
            KEY_LEN as u32,
            tunnel::VXLAN_VALUE_LEN as u32,
            FDB_ENTRIES,
            "vsw_vxlan_out",
        )
        .map_err(|e| bpf::context(e, "create the overlay fast path's map", hint))?;
        let vnis = bpf::map_create(bpf::BPF_MAP_TYPE_HASH, 4, 4, MAX_PORTS, "vsw_vnis")
            .map_err(|e| bpf::context(e, "create the VNI map", hint))?;
        let uplink_cfg = bpf::map_create(
            bpf::BPF_MAP_TYPE_ARRAY,
            4,
            uplink::CFG_LEN as u32,
            1,
            "vsw_uplink",
        )
        .map_err(|e| bpf::context(e, "create the uplink's map", hint))?;
        let maps = tc::Maps {
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
        let mut value = [0u8; ENDPOINT_LEN];
        value[..4].copy_from_slice(&net.to_ne_bytes());
        value[4..8].copy_from_slice(&port.to_ne_bytes());
        value[8..12].copy_from_slice(&trunk_ifindex.to_ne_bytes());
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

    /// The tc uplink's configuration with `flags` ([`uplink::CFG_PUNT_ALL`]).
    pub fn set_uplink_cfg(&self, u: &TcUplink, flags: u32) -> io::Result<()> {
        let mut v = [0u8; uplink::CFG_LEN];
        v[..6].copy_from_slice(&u.mac);
        v[8..12].copy_from_slice(&u.vtep.octets());
        v[12..16].copy_from_slice(&u.port.to_ne_bytes());
        v[16..20].copy_from_slice(&u.trunk_ifindex.to_ne_bytes());
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
        xdp::program(
            xsks.as_raw_fd(),
            self.fdb.as_raw_fd(),
            self.ports.as_raw_fd(),
            self.stats.as_raw_fd(),
            net,
            port,
        )
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
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_their_labels() {
        let p = xdp::program(3, 4, 5, 6, 7, 8);
        let bytes = bpf::insn_bytes(&p);
        let at = |i: usize| &bytes[i * 8..i * 8 + 8];
        // The first bounds check jumps to the punt tail: r2 = ctx->rx_queue_index.
        let first = at(5);
        assert_eq!(first[0], 0x2d);
        let off = i16::from_le_bytes([first[2], first[3]]) as usize;
        assert_eq!(at(5 + 1 + off)[..4], [0x61, 0x62, 16, 0]);
        // The program ends with the punt's call and exit.
        assert_eq!(at(p.len() - 1)[0], 0x95);
        assert_eq!(at(p.len() - 2)[..1], [0x85]);
        assert_eq!(at(p.len() - 2)[4], FUNC_REDIRECT_MAP as u8);
    }

    const A: Mac = [2, 0, 0, 0, 0, 0xa];
    const B: Mac = [2, 0, 0, 0, 0, 0xb];

    fn frame(dst: Mac, src: Mac, ethertype: [u8; 2]) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&ethertype);
        f
    }

    /// The program, through the kernel's verifier, run over frames against real maps:
    /// it forwards (XDP_REDIRECT) only known unicast from an installed source, and
    /// counts what it forwards. Needs root (BPF), as the e2e tests do.
    #[test]
    fn forwards_only_known_unicast_from_its_own_sources() {
        let fp = FastPath::new().expect("create the fast path's maps (root?)");
        let xsks = bpf::map_create(bpf::BPF_MAP_TYPE_XSKMAP, 4, 4, 1, "t_xsks").unwrap();
        let (net, port, other) = (7, 1, 2);
        let prog = bpf::prog_load_xdp(&fp.program(&xsks, net, port), "t_fast")
            .expect("the verifier accepts the program");
        let run = |f: &[u8]| bpf::prog_test_run(&prog, f).expect("test run");
        let ip = [0x08, 0x00];
        let (pass, redirect) = (XDP_PASS as u32, XDP_REDIRECT as u32);

        assert_eq!(
            run(&frame(B, A, ip)),
            pass,
            "nothing installed: the worker's"
        );
        fp.install(net, A, port).unwrap();
        assert_eq!(run(&frame(B, A, ip)), pass, "unknown destination");
        fp.install(net, B, other).unwrap();
        assert_eq!(
            run(&frame(B, A, ip)),
            pass,
            "no devmap slot for the egress yet"
        );
        fp.add_port(port, 1).unwrap();
        fp.add_port(other, 1).unwrap();
        assert_eq!(
            run(&frame(B, A, ip)),
            redirect,
            "known unicast is forwarded"
        );
        assert_eq!(run(&frame([0xff; 6], A, ip)), pass, "broadcast");
        assert_eq!(run(&frame(B, A, [0x81, 0x00])), pass, "VLAN tag");
        assert_eq!(
            run(&frame(A, B, ip)),
            pass,
            "source installed on another port"
        );
        assert_eq!(run(&frame(A, A, ip)), pass, "destination on the same port");
        fp.install(net + 1, [2, 0, 0, 0, 0, 0xc], other).unwrap();
        assert_eq!(
            run(&frame([2, 0, 0, 0, 0, 0xc], A, ip)),
            pass,
            "a MAC of another network"
        );

        assert_eq!(
            fp.take_seen(net, A, port),
            Some(true),
            "A was seen as a source"
        );
        assert_eq!(
            fp.take_seen(net, A, port),
            Some(false),
            "and the mark was cleared"
        );
        assert_eq!(fp.take_seen(net, A, other), None, "not on that port");
        let rx = fp.counters(port).unwrap();
        let tx = fp.counters(other).unwrap();
        assert_eq!((rx.rx_packets, rx.rx_bytes, rx.tx_packets), (1, 64, 0));
        assert_eq!((tx.tx_packets, tx.tx_bytes, tx.rx_packets), (1, 64, 0));

        fp.remove(net, B, port); // not B's port: stays
        assert_eq!(run(&frame(B, A, ip)), redirect);
        fp.remove(net, B, other);
        assert_eq!(run(&frame(B, A, ip)), pass, "removed");
        fp.install(net, B, other).unwrap();
        fp.remove_port(other);
        assert_eq!(run(&frame(B, A, ip)), pass, "egress left the devmap");
    }

    /// The tc endpoint program through the verifier and over skbs on loopback (test runs
    /// decide redirects without carrying them out): only known unicast from an installed
    /// source is forwarded and counted; the rest is punted, never passed; a device that
    /// is no endpoint gets nothing through. The trunk program loads too.
    #[test]
    fn tc_endpoint_forwards_known_unicast_and_punts_the_rest() {
        let fp = FastPath::new().expect("create the fast path's maps and programs (root?)");
        let (net, port, other): (NetId, PortId, PortId) = (9, 3, 4);
        let lo = 1u32;
        let ctx = |ifindex: u32| {
            let mut c = vec![0u8; 44];
            c[40..44].copy_from_slice(&ifindex.to_ne_bytes());
            c
        };
        let progs = fp.tc_programs().expect("the verifier accepts them");
        let (ep_prog, trunk_prog) = (&progs.endpoint, &progs.trunk);
        let run = |f: &[u8]| bpf::prog_test_run_ctx(ep_prog, f, &ctx(lo)).expect("test run");
        let ip = [0x08, 0x00];
        let (shot, redirect) = (2u32, tc::TC_ACT_REDIRECT as u32);
        assert_eq!(
            run(&frame(B, A, ip)),
            shot,
            "not an endpoint: dropped, never passed"
        );
        // Only the maps: nothing is attached to any device (the test runs read the maps).
        let mut value = [0u8; ENDPOINT_LEN];
        value[..4].copy_from_slice(&net.to_ne_bytes());
        value[4..8].copy_from_slice(&port.to_ne_bytes());
        value[8..12].copy_from_slice(&lo.to_ne_bytes());
        bpf::map_update_bytes(&fp.endpoints, &lo.to_ne_bytes(), &value).unwrap();
        bpf::map_update(&fp.peers, port, lo).unwrap();
        let fast = || fp.counters(port).unwrap().rx_packets;
        assert_eq!(run(&frame(B, A, ip)), redirect, "punted to the trunk");
        fp.install(net, A, port).unwrap();
        fp.install(net, B, other).unwrap();
        assert_eq!(
            run(&frame(B, A, ip)),
            redirect,
            "punted: the egress has no host end"
        );
        assert_eq!(fast(), 0);
        bpf::map_update(&fp.peers, other, 77).unwrap();
        assert_eq!(run(&frame(B, A, ip)), redirect);
        assert_eq!(fast(), 1, "known unicast forwarded in the kernel");
        let tx = fp.counters(other).unwrap();
        assert_eq!((tx.tx_packets, tx.tx_bytes), (1, 64));
        for (f, why) in [
            (frame([0xff; 6], A, ip), "broadcast"),
            (frame(B, A, [0x81, 0x00]), "VLAN tag"),
            (frame(A, B, ip), "source installed on another port"),
            (frame(A, A, ip), "destination on the same port"),
        ] {
            assert_eq!(run(&f), redirect, "{why}: punted");
            assert_eq!(fast(), 1, "{why}: not forwarded in the kernel");
        }
        assert_eq!(fp.take_seen(net, A, port), Some(true));
        assert_eq!(
            bpf::prog_test_run_ctx(trunk_prog, &frame(B, A, ip), &ctx(lo)).unwrap(),
            shot,
            "an untagged frame on the trunk is dropped"
        );
        fp.detach_endpoint(lo, port);
        assert_eq!(run(&frame(B, A, ip)), shot, "detached");
    }

    /// The tc program's routed TCP branch, over a real frame: an established session's
    /// packet comes out exactly as the router would send it (MACs, source address and
    /// port, TTL, both checksums recomputed from scratch by etherparse for the expected
    /// frame); SYN, FIN and RST, other ports and unknown sessions are left alone.
    #[test]
    fn tc_endpoint_translates_routed_tcp_like_the_router() {
        use etherparse::PacketBuilder;
        let fp = FastPath::new().expect("create the fast path's maps and programs (root?)");
        let ep_prog = &fp.tc_programs().expect("the verifier accepts it").endpoint;
        let (net, port): (NetId, PortId) = (11, 5);
        let lo = 1u32;
        let mut value = [0u8; ENDPOINT_LEN];
        value[..4].copy_from_slice(&net.to_ne_bytes());
        value[4..8].copy_from_slice(&port.to_ne_bytes());
        value[8..12].copy_from_slice(&lo.to_ne_bytes());
        bpf::map_update_bytes(&fp.endpoints, &lo.to_ne_bytes(), &value).unwrap();
        fp.install(net, A, port).unwrap();
        let gw_mac: Mac = [2, 0x42, 172, 18, 0, 1];
        let (hop, uplink): (Mac, Mac) = ([2, 0, 0, 0, 0, 0x99], [2, 0, 0, 0, 0, 0x55]);
        let tcp = |src: Mac, dst: Mac, from: ([u8; 4], u16), ttl: u8, syn: bool| {
            let b = PacketBuilder::ethernet2(src, dst)
                .ipv4(from.0, [198, 51, 100, 1], ttl)
                .tcp(from.1, 5201, 1000, 64000)
                .ack(7);
            let b = if syn { b.syn() } else { b };
            let payload = [0xabu8; 100];
            let mut f = Vec::new();
            b.write(&mut f, &payload).unwrap();
            f
        };
        let orig = tcp(A, gw_mac, ([172, 18, 0, 2], 40000), 64, false);
        let want = tcp(uplink, hop, ([198, 51, 100, 2], 1024), 63, false);
        let mut key: NatKey = [0; 16];
        key[..4].copy_from_slice(&port.to_ne_bytes());
        key[4..16].copy_from_slice(&orig[26..38]);
        let mut v: NatValue = [0; NAT_VALUE_LEN];
        v[..6].copy_from_slice(&hop);
        v[6..12].copy_from_slice(&uplink);
        v[12..16].copy_from_slice(&[198, 51, 100, 2]);
        v[16..18].copy_from_slice(&1024u16.to_be_bytes());
        v[20..24].copy_from_slice(&7u32.to_ne_bytes());
        let ctx = {
            let mut c = vec![0u8; 44];
            c[40..44].copy_from_slice(&lo.to_ne_bytes());
            c
        };
        let run = |f: &[u8]| bpf::prog_test_run_out(ep_prog, f, &ctx).expect("test run");
        let redirect = tc::TC_ACT_REDIRECT as u32;

        let (verdict, out) = run(&orig);
        assert_eq!(
            (verdict, &out[..]),
            (redirect, &orig[..]),
            "no session: punted untouched"
        );
        fp.nat_install(NatDir::Out, &key, &v).unwrap();
        let (verdict, out) = run(&orig);
        assert_eq!(verdict, redirect);
        assert_eq!(out, want, "translated as the router does, byte for byte");
        assert_eq!(fp.nat_take_seen(NatDir::Out, &key), Some(true));
        assert_eq!(fp.counters(port).unwrap().rx_packets, 1);

        let syn_ack = tcp(A, gw_mac, ([172, 18, 0, 2], 40000), 64, true);
        let want = tcp(uplink, hop, ([198, 51, 100, 2], 1024), 63, true);
        assert_eq!(
            run(&syn_ack).1,
            want,
            "the SYN+ACK of a session the uplink opened"
        );
        let mut syn = syn_ack.clone();
        syn[47] &= !0x10; // no ACK: a new connection (punted before any checksum matters)
        assert_eq!(run(&syn).1, syn, "a SYN is the router's");
        let mut fin = orig.clone();
        fin[47] |= 0x01;
        assert_eq!(run(&fin).1, fin, "a FIN is the router's");
        let mut other = orig.clone();
        other[35] ^= 1; // another source port: another session
        assert_eq!(run(&other).1, other, "an unknown session is the router's");
        let ttl1 = tcp(A, gw_mac, ([172, 18, 0, 2], 40000), 1, false);
        assert_eq!(
            run(&ttl1).1,
            ttl1,
            "TTL 1: the router answers time exceeded"
        );
        fp.nat_remove(NatDir::Out, &key);
        assert_eq!(run(&orig).1, orig, "removed");
        fp.remove(net, A, port);
    }

    /// The uplink's inbound NAT program, over a real frame: a reply of a session in
    /// `nat_in` comes out translated back exactly (MACs, destination address and port,
    /// TTL, checksums as etherparse computes them from scratch) and is redirected to the
    /// endpoint; without the session, or without a redirect target, it is left alone for
    /// the AF_XDP socket.
    #[test]
    fn uplink_translates_replies_back_like_the_router() {
        use etherparse::PacketBuilder;
        let fp = FastPath::new().expect("create the fast path's maps (root?)");
        let xsks = bpf::map_create(bpf::BPF_MAP_TYPE_XSKMAP, 4, 4, 1, "t_xsks").unwrap();
        let prog = bpf::prog_load_xdp(&fp.nat_in_program(&xsks), "t_nat_in")
            .expect("the verifier accepts the program");
        let port: PortId = 6;
        let (gw_mac, ep_mac, up_mac, out_mac): (Mac, Mac, Mac, Mac) = (
            [2, 0x42, 172, 18, 0, 1],
            [2, 0x42, 172, 18, 0, 2],
            [2, 0, 0, 0, 0, 0x55],
            [2, 0, 0, 0, 0, 0x99],
        );
        let tcp = |src: Mac, dst: Mac, to: ([u8; 4], u16), ttl: u8, fin: bool| {
            let b = PacketBuilder::ethernet2(src, dst)
                .ipv4([198, 51, 100, 1], to.0, ttl)
                .tcp(5201, to.1, 9000, 64000)
                .ack(1001);
            let b = if fin { b.fin() } else { b };
            let mut f = Vec::new();
            b.write(&mut f, &[0x5a; 200]).unwrap();
            f
        };
        let reply = tcp(out_mac, up_mac, ([198, 51, 100, 2], 1024), 64, false);
        let want = tcp(gw_mac, ep_mac, ([172, 18, 0, 2], 40000), 63, false);
        let mut key: NatKey = [0; 16];
        key[..12].copy_from_slice(&reply[26..38]);
        let mut v: NatValue = [0; NAT_VALUE_LEN];
        v[..6].copy_from_slice(&ep_mac);
        v[6..12].copy_from_slice(&gw_mac);
        v[12..16].copy_from_slice(&[172, 18, 0, 2]);
        v[16..18].copy_from_slice(&40000u16.to_be_bytes());
        v[20..24].copy_from_slice(&port.to_ne_bytes());
        let run = |f: &[u8]| bpf::prog_test_run_out(&prog, f, &[]).expect("test run");
        let (pass, redirect) = (XDP_PASS as u32, XDP_REDIRECT as u32);

        assert_eq!(
            run(&reply),
            (pass, reply.clone()),
            "no session: the socket's"
        );
        fp.nat_install(NatDir::In, &key, &v).unwrap();
        assert_eq!(
            run(&reply),
            (pass, reply.clone()),
            "no redirect target: untouched"
        );
        fp.add_port(port, 1).unwrap();
        let (verdict, out) = run(&reply);
        assert_eq!(verdict, redirect);
        assert_eq!(
            out, want,
            "translated back as the router does, byte for byte"
        );
        assert_eq!(fp.nat_take_seen(NatDir::In, &key), Some(true));
        assert_eq!(fp.counters(port).unwrap().tx_packets, 1);
        let fin = tcp(out_mac, up_mac, ([198, 51, 100, 2], 1024), 64, true);
        assert_eq!(run(&fin), (pass, fin.clone()), "a FIN is the router's");
        fp.nat_remove(NatDir::In, &key);
        assert_eq!(run(&reply), (pass, reply.clone()), "removed");
    }

    #[test]
    fn key_layout() {
        let k = key(0x0102_0304, [2, 0, 0, 0, 0, 9]);
        assert_eq!(&k[..4], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(&k[4..], &[2, 0, 0, 0, 0, 9, 0, 0]);
    }
}

/// The fast path in a real engine with two workers: AF_XDP ports on veths in a lab
/// namespace, frames from AF_PACKET sockets on the far ends.
#[cfg(test)]
mod engine_tests {
    use crate::engine::{Engine, EngineConfig};
    use crate::fdb::Mac;
    use crate::port::af_xdp::XdpPort;
    use crate::port::lab::{Netns, RawSock};
    use crate::{NetConfig, PortId};
    use std::time::{Duration, Instant};

    const A: Mac = [2, 0, 0, 0, 0, 0xa];
    const B: Mac = [2, 0, 0, 0, 0, 0xb];
    const C: Mac = [2, 0, 0, 0, 0, 0xc];

    fn frame(dst: Mac, src: Mac, seq: u8) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend(src);
        f.extend([0x88, 0xb5, seq]);
        f.resize(60, seq);
        f
    }

    /// Whether `sock` receives `want` within a second (other frames are skipped).
    fn gets(sock: &RawSock, want: &[u8]) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match sock.recv(left).expect("recv") {
                Some(f) if f == want => return true,
                Some(_) => continue,
                None => return false,
            }
        }
        false
    }

    /// Frames from `src` on `from` reach `to` (one every 5 ms), and within 20 of them
    /// the kernel forwards them rather than a worker (the ingress port's fast-path count
    /// moves): well inside the workers' once-a-second sync, so a takeover that only the
    /// sync would bring about fails.
    fn until_fast(e: &Engine, from: (&RawSock, PortId), to: &RawSock, dst: Mac, src: Mac) {
        let fast = |id| {
            e.stats()
                .ports
                .iter()
                .find(|p| p.info.id == id)
                .map(|p| p.counters.fast_path_rx_packets)
                .expect("port")
        };
        let before = fast(from.1);
        for seq in 0..20u8 {
            let f = frame(dst, src, seq);
            from.0.send(&f).expect("send");
            assert!(gets(to, &f), "frame {seq} from {src:x?} to {dst:x?} lost");
            if fast(from.1) > before {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the kernel never took over {src:x?} -> {dst:x?}");
    }

    #[test]
    fn follows_a_mac_across_workers_and_back() {
        let ns = Netns::new();
        for i in 0..3 {
            let (s, p) = (format!("s{i}"), format!("p{i}"));
            ns.ip(&["link", "add", &s, "type", "veth", "peer", "name", &p]);
            ns.ip(&["link", "set", &s, "up"]);
            ns.ip(&["link", "set", &p, "up"]);
            // The far end takes frames the fast path redirects to it (NAPI).
            ns.exec(&["ethtool", "-K", &p, "gro", "on"]);
        }
        ns.run(|| {
            let mut e = Engine::start(EngineConfig {
                workers: 2,
                pin: false,
                ..Default::default()
            })
            .expect("engine");
            e.add_network(NetConfig {
                id: 7,
                ..Default::default()
            })
            .expect("network");
            let ids: Vec<PortId> = (0..3)
                .map(|i| {
                    let port = XdpPort::open(&format!("s{i}")).expect("AF_XDP port");
                    e.add_port_with(7, Box::new(port), true).expect("port")
                })
                .collect();
            let ports = e.ports();
            assert!(ports.iter().all(|p| p.fast_path), "{ports:?}");
            assert_ne!(
                ports[0].worker, ports[1].worker,
                "ports 0 and 1 on two workers"
            );
            e.barrier().expect("barrier");
            let far: Vec<RawSock> = (0..3)
                .map(|i| RawSock::open(&format!("p{i}")).expect("raw socket"))
                .collect();

            // A behind port 0 (worker 0), B behind port 1 (worker 1), C behind port 2.
            for (i, mac) in [A, B, C].into_iter().enumerate() {
                far[i].send(&frame([0xff; 6], mac, 0)).expect("send");
            }
            std::thread::sleep(Duration::from_millis(100));
            until_fast(&e, (&far[2], ids[2]), &far[0], A, C);
            until_fast(&e, (&far[0], ids[0]), &far[1], B, A);

            // A moves to port 1 (the other worker) and speaks there: frames for it follow.
            until_fast(&e, (&far[1], ids[1]), &far[2], C, A);
            until_fast(&e, (&far[2], ids[2]), &far[1], A, C);
            // And back to port 0: worker 0 must install it again (it had let it go).
            until_fast(&e, (&far[0], ids[0]), &far[2], C, A);
            until_fast(&e, (&far[2], ids[2]), &far[0], A, C);
            // Entries the sync might race away come back within its second.
            std::thread::sleep(Duration::from_millis(1500));
            until_fast(&e, (&far[2], ids[2]), &far[0], A, C);
        });
    }
}

#[cfg(test)]
mod tunnel_tests;
