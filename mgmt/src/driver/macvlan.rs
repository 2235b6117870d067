//! The macvlan driver: endpoints sit directly on a parent interface's LAN, each with its
//! own MAC and an address of the LAN's subnet; no NAT, and no gateway in the switch (the
//! LAN's router is the gateway). `-o parent=IFACE.VID` makes the switch itself add and
//! strip 802.1Q tags with VID on the parent: no kernel VLAN device is created.

use std::collections::BTreeMap;

use switch::engine::EngineError;
use switch::port::{self, IoMode, Port};
use switch::NetConfig;

use super::bridge::{attach_endpoint, detach_endpoint, mtu, prepare_host_end};
use super::{Ctx, Driver, DriverError, Host, NetworkRequest, Result};
use crate::error::{step, ApiError, ApiResult};
use crate::link::Netlink;
use crate::model::{DriverKind, Endpoint, Network};

/// Endpoint MTU: the LAN's.
const MTU: u32 = 1500;

pub struct Macvlan;

/// `-o parent=IFACE[.VID]` of a network.
pub fn parent_of(net: &Network) -> Result<(String, Option<u16>)> {
    let spec = net.options.get("parent").ok_or_else(|| {
        ApiError::invalid(
            "a macvlan network needs its parent interface: -o parent=IFACE or -o parent=IFACE.VID",
        )
    })?;
    Ok(parse_parent(spec)?)
}

pub fn parse_parent(spec: &str) -> std::result::Result<(String, Option<u16>), ApiError> {
    let (iface, vid) = match spec.rsplit_once('.') {
        Some((i, v)) => {
            let vid: u16 = v
                .parse()
                .ok()
                .filter(|v| (1..=4094).contains(v))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "invalid VLAN id {v:?} in parent {spec}: expected 1-4094"
                    ))
                })?;
            (i, Some(vid))
        }
        None => (spec, None),
    };
    if iface.is_empty() || iface.len() > 15 || iface.contains('/') {
        return Err(ApiError::invalid(format!(
            "invalid parent interface name {iface:?}"
        )));
    }
    Ok((iface.to_string(), vid))
}

fn vlan_key(net: &Network) -> String {
    format!("vlan:{}", net.id)
}

/// Open the parent as the switch's trunk: kernel kept out, promiscuous (it must take
/// frames for every endpoint's MAC), up.
fn open_parent(parent: &str, io: IoMode) -> Result<Box<dyn Port>> {
    let mut nl = Netlink::new()?;
    if !nl.link_exists(parent) {
        return Err(ApiError::invalid(format!(
            "parent interface {parent} does not exist in vswitchd's network namespace"
        ))
        .into());
    }
    super::parents::remember(parent);
    prepare_host_end(parent)?;
    nl.set_promisc(parent, true)?;
    nl.set_up(parent)?;
    Ok(port::open(parent, io).map_err(step(format!("open macvlan parent {parent}")))?)
}

impl Driver for Macvlan {
    fn clear_of_host_addresses(&self) -> bool {
        false
    }
    fn kind(&self) -> DriverKind {
        DriverKind::Macvlan
    }

    /// The LAN's subnet and the parent interface are the user's to give; a macvlan
    /// network is never internal.
    fn allocate(&self, req: NetworkRequest) -> ApiResult<BTreeMap<String, String>> {
        if !req.subnet_given {
            return Err(ApiError::invalid(
                "a macvlan network needs --subnet (and --gateway) of the LAN its parent is on",
            ));
        }
        if req.internal {
            return Err(ApiError::invalid(
                "--internal is not supported with the macvlan driver",
            ));
        }
        let parent = req.options.get("parent").ok_or_else(|| {
            ApiError::invalid("a macvlan network needs its parent interface: -o parent=IFACE or -o parent=IFACE.VID")
        })?;
        parse_parent(parent)?;
        super::overlay::validate_mtu(&req.options)?;
        super::bridge::validate_fastpath(&req.options)?;
        if req.options.contains_key(super::bridge::OPT_ICC) {
            return Err(ApiError::invalid(format!(
                "-o {} is a bridge network option: macvlan endpoints meet on the parent's LAN, not in the switch",
                super::bridge::OPT_ICC
            )));
        }
        Ok(req.options)
    }

    fn create_network(&mut self, ctx: &mut Ctx, net: &Network) -> Result<()> {
        let (parent, vid) = parent_of(net)?;
        // The network first, so the worker can add the trunk member to it.
        self.sync_network(ctx, net, &[])?;
        let io = ctx.io;
        let member = ctx
            .engine
            .vlan_attach(&parent, vid, net.num, || open_parent(&parent, io))
            .map_err(|e| match e {
                // What `open_parent` failed with, as it failed.
                EngineError::Port(e) => match e.downcast::<DriverError>() {
                    Ok(d) => *d,
                    Err(e) => DriverError::Engine(EngineError::Port(e)),
                },
                e => DriverError::Engine(e),
            })?;
        ctx.ports.insert(vlan_key(net), member);
        Ok(())
    }

    /// A bridge network's, but the LAN's router is the gateway: the switch answers
    /// nothing for it, resolves no names, and the network is never internal.
    fn net_config(&self, net: &Network, hosts: &[Host]) -> Result<Option<NetConfig>> {
        let base = super::bridge::net_config(net, hosts);
        Ok(Some(NetConfig {
            gateway: None,
            internal: false,
            dns: false,
            isolate: false,
            ipv6: base.ipv6.clone().map(|v6| switch::Ipv6Config {
                gateway: None,
                ..v6
            }),
            ..base
        }))
    }

    fn delete_network(&mut self, ctx: &mut Ctx, net: &Network) -> Result<()> {
        if let Some(member) = ctx.ports.remove(&vlan_key(net)) {
            if let Some(parent) = ctx.engine.vlan_detach(member)? {
                // The last macvlan network on it: give the parent back as it was. Best
                // effort: a parent that has gone away must not keep the network alive.
                super::parents::restore(&parent);
            }
        }
        Ok(ctx.engine.remove_network(net.num)?)
    }

    fn create_endpoint(&mut self, ctx: &mut Ctx, net: &Network, ep: &Endpoint) -> Result<()> {
        attach_endpoint(ctx, net, ep, mtu(net, MTU))
    }

    fn delete_endpoint(&mut self, ctx: &mut Ctx, _net: &Network, ep: &Endpoint) -> Result<()> {
        detach_endpoint(ctx, ep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_specs() {
        assert_eq!(parse_parent("eth1").unwrap(), ("eth1".to_string(), None));
        assert_eq!(
            parse_parent("eth1.10").unwrap(),
            ("eth1".to_string(), Some(10))
        );
        assert!(parse_parent("eth1.0").is_err());
        assert!(parse_parent("eth1.4095").is_err());
        assert!(parse_parent("eth1.x").is_err());
        assert!(parse_parent(".10").is_err());
    }
}
