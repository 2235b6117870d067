//! The overlay driver: a bridge network (local switching, the switch as gateway, the
//! embedded DNS) whose L2 segment spans hosts through VXLAN tunnels from the uplink's
//! VTEP. One VNI per network (`-o vxlan.id`, else allocated from 4096 up), the peer
//! VTEPs floods are replicated to (`-o vxlan.peers=IP,IP`), and an endpoint MTU that
//! leaves room for the 50 bytes of encapsulation (`-o mtu`, default 1450).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use switch::{NetConfig, OverlayConfig};

use super::bridge;
use super::{Ctx, Driver, DriverError, Host, NetworkRequest, Result};
use crate::error::{ApiError, ApiResult};
use crate::model::{DriverKind, Endpoint, Network};

/// Endpoint MTU on overlay networks: a 1500-byte underlay minus the VXLAN overhead.
pub const DEFAULT_MTU: u32 = 1450;
/// The option keys (Docker's `-o` names where Docker has one).
pub const OPT_VNI: &str = "vxlan.id";
pub const OPT_PEERS: &str = "vxlan.peers";
pub const OPT_MTU: &str = "mtu";

pub struct Overlay;

/// `-o mtu=N` on any network: a whole number from 68 (IPv4's minimum) to 1500, what the
/// workers' frame buffers carry.
pub fn validate_mtu(options: &BTreeMap<String, String>) -> ApiResult<()> {
    if let Some(m) = options.get(OPT_MTU) {
        match m.parse::<u32>() {
            // The workers' frame buffers hold a 1500-byte MTU (plus Ethernet and a tag).
            Ok(v) if (68..=1500).contains(&v) => {}
            _ => {
                return Err(ApiError::invalid(format!(
                    "invalid -o mtu={m}: expected a number from 68 to 1500 (the switch's frame buffers hold at most a 1500-byte MTU)"
                )))
            }
        }
    }
    Ok(())
}

/// Check an overlay network's options and settle its VNI: `vxlan.id` if given (refused
/// when out of range or used by another network), else the lowest free from 4096. The
/// returned options carry the VNI, so it is persisted and restored with the network.
pub fn settle_options(
    mut options: BTreeMap<String, String>,
    taken: &[u32],
    vtep: Option<Ipv4Addr>,
) -> ApiResult<BTreeMap<String, String>> {
    let Some(vtep) = vtep else {
        return Err(ApiError::invalid(
            "overlay networks need an uplink for their tunnels: start vswitchd with --uplink, --uplink-ip and --uplink-gw",
        ));
    };
    validate_mtu(&options)?;
    bridge::validate_fastpath(&options)?;
    bridge::validate_icc(&options)?;
    bridge::validate_gateway_mode(&options)?;
    let mut alloc = vxlan::VniAllocator::new();
    for v in taken {
        let _ = alloc.reserve(*v);
    }
    let vni = match options.get(OPT_VNI) {
        Some(s) => {
            let v: u32 = s.parse().map_err(|_| {
                ApiError::invalid(format!(
                    "invalid -o {OPT_VNI}={s}: expected a VXLAN id from 1 to 16777215"
                ))
            })?;
            alloc.reserve(v).map_err(|e| match e {
                vxlan::VniError::Taken(_) => ApiError::conflict(format!(
                    "VXLAN id {v} is already used by another network on this host"
                )),
                e => ApiError::invalid(format!("invalid -o {OPT_VNI}={s}: {e}")),
            })?
        }
        None => alloc
            .allocate()
            .map_err(|e| ApiError::invalid(format!("cannot allocate a VXLAN id: {e}")))?,
    };
    options.insert(OPT_VNI.to_string(), vni.get().to_string());
    if let Some(p) = options.get(OPT_PEERS) {
        let peers = parse_peers(p)?;
        if peers.contains(&vtep) {
            return Err(ApiError::invalid(format!(
                "-o {OPT_PEERS} names {vtep}, this host's own tunnel address"
            )));
        }
    }
    Ok(options)
}

fn parse_peers(s: &str) -> ApiResult<Vec<Ipv4Addr>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let ip: Ipv4Addr = p.parse().map_err(|_| {
                ApiError::invalid(format!(
                    "invalid -o {OPT_PEERS} entry {p:?}: expected IPv4 addresses separated by commas"
                ))
            })?;
            if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback()
            {
                return Err(ApiError::invalid(format!(
                    "invalid -o {OPT_PEERS} entry {ip}: a peer is another host's unicast tunnel address"
                )));
            }
            Ok(ip)
        })
        .collect()
}

/// The VNI of an overlay network (settled at create).
pub fn vni_of(net: &Network) -> Option<u32> {
    if net.driver != DriverKind::Overlay {
        return None;
    }
    net.options.get(OPT_VNI).and_then(|v| v.parse().ok())
}

fn overlay_config(net: &Network) -> Result<OverlayConfig> {
    let vni = vni_of(net).ok_or_else(|| {
        DriverError::Incomplete(format!("overlay network {} has no VNI", net.name))
    })?;
    let mut peers = match net.options.get(OPT_PEERS) {
        Some(p) => parse_peers(p)?,
        None => Vec::new(),
    };
    for m in &net.members {
        if !peers.contains(m) {
            peers.push(*m);
        }
    }
    Ok(OverlayConfig { vni, peers })
}

impl Driver for Overlay {
    fn clear_of_host_addresses(&self) -> bool {
        false
    }
    fn kind(&self) -> DriverKind {
        DriverKind::Overlay
    }
    fn embedded_dns(&self) -> bool {
        true
    }

    /// A VNI (given, or the next free one) and the VTEP the tunnels leave from.
    fn allocate(&self, req: NetworkRequest) -> ApiResult<BTreeMap<String, String>> {
        let vnis: Vec<u32> = req.networks.filter_map(vni_of).collect();
        settle_options(req.options, &vnis, req.vtep_ip)
    }

    /// A bridge network with its tunnel.
    fn net_config(&self, net: &Network, hosts: &[Host]) -> Result<Option<NetConfig>> {
        Ok(Some(NetConfig {
            overlay: Some(overlay_config(net)?),
            mtu: bridge::mtu(net, DEFAULT_MTU),
            ..bridge::net_config(net, hosts)
        }))
    }

    fn create_endpoint(&mut self, ctx: &mut Ctx, net: &Network, ep: &Endpoint) -> Result<()> {
        bridge::attach_endpoint(ctx, net, ep, bridge::mtu(net, DEFAULT_MTU))
    }

    fn delete_endpoint(&mut self, ctx: &mut Ctx, _net: &Network, ep: &Endpoint) -> Result<()> {
        bridge::detach_endpoint(ctx, ep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
    const ME: Option<Ipv4Addr> = Some(Ipv4Addr::new(10, 200, 0, 1));

    #[test]
    fn vni_given_allocated_or_refused() {
        let o = settle_options(opts(&[]), &[4096], ME).expect("allocated");
        assert_eq!(o[OPT_VNI], "4097");
        let o = settle_options(opts(&[(OPT_VNI, "42")]), &[4096], ME).expect("given");
        assert_eq!(o[OPT_VNI], "42");
        let e = settle_options(opts(&[(OPT_VNI, "42")]), &[42], ME).expect_err("taken");
        assert!(e.message.contains("already used"), "{}", e.message);
        assert!(settle_options(opts(&[(OPT_VNI, "16777216")]), &[], ME).is_err());
        assert!(settle_options(opts(&[(OPT_VNI, "x")]), &[], ME).is_err());
        assert!(
            settle_options(opts(&[]), &[], None).is_err(),
            "needs an uplink"
        );
    }

    #[test]
    fn peers_and_mtu_are_checked() {
        assert!(settle_options(opts(&[(OPT_PEERS, "10.200.0.2,10.200.0.3")]), &[], ME).is_ok());
        assert!(settle_options(opts(&[(OPT_PEERS, "10.200.0.1")]), &[], ME).is_err());
        assert!(settle_options(opts(&[(OPT_PEERS, "nope")]), &[], ME).is_err());
        assert!(settle_options(opts(&[(OPT_MTU, "1400")]), &[], ME).is_ok());
        assert!(settle_options(opts(&[(OPT_MTU, "10")]), &[], ME).is_err());
    }
}
