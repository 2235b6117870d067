//! The kernel's share of overlay unicast (with the tc uplink). Once the router knows a
//! MAC of an overlay network behind a remote VTEP (it learned it from a decapsulated
//! frame, or sent a known unicast frame to it) and the next hop toward that VTEP is
//! resolved, the MAC goes into `vxlan_out` with the outer headers the router would
//! write: endpoint programs encapsulate frames for it themselves, and the uplink's
//! program decapsulates frames from it for local endpoints. Once a second the router
//! refreshes what the kernel carried (the entries' `seen` marks) in its tunnel table and
//! FDB, re-writes entries whose VTEP or next hop changed, and takes out those it no
//! longer knows; a remote endpoint the control plane withdraws or moves to another VTEP,
//! and the MACs learned behind a peer that left, go at once (`router/overlay.rs`). While
//! the uplink is captured nothing is installed, so the capture sees every tunnelled
//! frame.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::fastpath::{self, FastPath, VxlanValue};
use crate::fdb::Mac;
use crate::{NetId, PortId};

pub(crate) struct FastVxlan {
    maps: Arc<FastPath>,
    uplink_ifindex: u32,
    uplink_port: PortId,
    installed: HashMap<(NetId, Mac), VxlanValue, ahash::RandomState>,
    excluded: bool,
}

/// The remote VTEP a value sends to (the outer IPv4 destination).
pub(crate) fn value_vtep(v: &VxlanValue) -> Ipv4Addr {
    let dst = wire::ETH_HLEN + wire::ip::ipv4::DST;
    Ipv4Addr::new(v[dst], v[dst + 1], v[dst + 2], v[dst + 3])
}

impl FastVxlan {
    pub fn new(maps: Arc<FastPath>, uplink_ifindex: u32, uplink_port: PortId) -> FastVxlan {
        FastVxlan {
            maps,
            uplink_ifindex,
            uplink_port,
            installed: HashMap::default(),
            excluded: false,
        }
    }

    /// Overlay network `net` has VNI `vni` (Some) or no longer (None, which also takes
    /// its MACs out).
    pub fn set_network(&mut self, vni: u32, net: Option<NetId>, old_net: NetId) {
        self.maps.set_vni(vni, net);
        if net.is_none() {
            let maps = &self.maps;
            self.installed.retain(|(n, mac), _| {
                let keep = *n != old_net;
                if !keep {
                    maps.vxlan_remove(*n, *mac);
                }
                keep
            });
        }
    }

    /// Whether `mac` of `net` is installed to `vtep` already.
    pub fn has(&self, net: NetId, mac: Mac, vtep: Ipv4Addr) -> bool {
        self.installed
            .get(&(net, mac))
            .is_some_and(|v| value_vtep(v) == vtep)
    }

    /// Frames for `mac` of `net` get `outer` (the router's 50 bytes of outer headers).
    pub fn install(&mut self, net: NetId, mac: Mac, outer: &[u8]) {
        if self.excluded || outer.len() < 50 {
            return;
        }
        let v = fastpath::vxlan_value(outer, self.uplink_ifindex, self.uplink_port);
        if self.installed.get(&(net, mac)) == Some(&v) {
            return;
        }
        match self.maps.vxlan_install(net, mac, &v) {
            Ok(()) => {
                self.installed.insert((net, mac), v);
            }
            Err(e) => tracing::debug!(error = %e, "fast path: cannot install a tunnel MAC"),
        }
    }

    pub fn remove(&mut self, net: NetId, mac: Mac) {
        if self.installed.remove(&(net, mac)).is_some() {
            self.maps.vxlan_remove(net, mac);
        }
    }

    /// Keep only the entries of `net` that `keep` (given the MAC and its VTEP) wants.
    pub fn retain(&mut self, net: NetId, mut keep: impl FnMut(Mac, Ipv4Addr) -> bool) {
        let maps = &self.maps;
        self.installed.retain(|&(n, mac), v| {
            if n != net || keep(mac, value_vtep(v)) {
                return true;
            }
            maps.vxlan_remove(n, mac);
            false
        });
    }

    /// The installed MACs with their VTEP, and whether the kernel carried frames for
    /// them since the last call.
    pub fn take_seen(&self) -> Vec<(NetId, Mac, Ipv4Addr, bool)> {
        self.installed
            .iter()
            .map(|(&(net, mac), v)| {
                let seen = self.maps.vxlan_take_seen(net, mac).unwrap_or(false);
                (net, mac, value_vtep(v), seen)
            })
            .collect()
    }

    /// While `on` (the uplink is captured), nothing is in the kernel.
    pub fn exclude(&mut self, on: bool) {
        self.excluded = on;
        if on {
            for (net, mac) in self.installed.keys() {
                self.maps.vxlan_remove(*net, *mac);
            }
            self.installed.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.installed.len()
    }
}
