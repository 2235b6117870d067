//! The bridge driver: one L2 switch per network in the data plane, the switch as the
//! gateway, endpoints as veth pairs (the switch reads the host end) or TAP devices
//! living in the sandbox (the switch holds the fd).

use std::os::fd::AsFd;

use switch::gateway::Gateway;
use switch::port::tap::TapPort;
use switch::port::{self, Port};
use switch::NetConfig;

use super::{Ctx, Driver, DriverError, Host, Result};
use crate::error::{step, ApiError, ApiResult};
use crate::link::Netlink;
use crate::model::{DriverKind, Endpoint, LinkKind, Mac, Network, Outside};
use crate::netns::NetnsError;
use crate::{ethtool, netns};

/// Endpoint MTU on bridge networks unless `-o mtu=N` says otherwise.
pub const DEFAULT_MTU: u32 = 1500;

/// `-o fastpath=tc|xdp`: how the network's veth endpoints reach the switch.
pub const OPT_FASTPATH: &str = "fastpath";

/// How a network's veth endpoints are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datapath {
    /// The default: tcx programs on skbs (GSO and checksum offload kept in the sandbox,
    /// known unicast by `bpf_redirect_peer`, the rest through the worker's trunk), no
    /// socket per endpoint.
    Tc,
    /// An AF_XDP socket per endpoint and the XDP fast path: more small frames per second
    /// for lab traffic, but sandboxes segment and checksum TCP in software.
    Xdp,
}

/// The network's `-o fastpath` (validated at create), tc unless it says xdp.
pub fn datapath(net: &Network) -> Datapath {
    match net.options.get(OPT_FASTPATH).map(String::as_str) {
        Some("xdp") => Datapath::Xdp,
        _ => Datapath::Tc,
    }
}

/// Refuse a `-o fastpath` other than tc or xdp.
pub fn validate_fastpath(options: &std::collections::BTreeMap<String, String>) -> ApiResult<()> {
    match options.get(OPT_FASTPATH).map(String::as_str) {
        None | Some("tc") | Some("xdp") => Ok(()),
        Some(v) => Err(ApiError::invalid(format!(
            "invalid -o fastpath={v}: expected tc (the default: TCP offloads kept, known unicast forwarded on skbs) or xdp (AF_XDP per endpoint: more small packets per second, no TCP offloads)"
        ))),
    }
}

/// The endpoint MTU a network asks for with `-o mtu=N` (validated at create), else
/// `default`.
pub fn mtu(net: &Network, default: u32) -> u32 {
    net.options
        .get("mtu")
        .and_then(|m| m.parse().ok())
        .unwrap_or(default)
}

pub struct Bridge;

/// The switch as the network's gateway: the IPv4 gateway's address and MAC; on an
/// IPv6-only network a MAC from the IPv6 gateway's address and no IPv4 address (the
/// unspecified address, which no ARP request or packet is ever for).
fn gateway(net: &Network) -> Option<Gateway> {
    match (&net.pool, &net.pool6) {
        (Some(p), _) => Some(Gateway {
            ip: p.gateway,
            mac: Mac::from_ip(p.gateway).0,
        }),
        (None, Some(p6)) => Some(Gateway {
            ip: std::net::Ipv4Addr::UNSPECIFIED,
            mac: Mac::from_ip6(p6.gateway).0,
        }),
        (None, None) => None,
    }
}

impl Driver for Bridge {
    fn kind(&self) -> DriverKind {
        DriverKind::Bridge
    }
    fn embedded_dns(&self) -> bool {
        true
    }
    /// Published ports are DNAT from the uplink into the network: not for an internal
    /// one, which has no way out.
    fn check_publish(&self, net: &Network) -> ApiResult<()> {
        if net.internal {
            return Err(ApiError::invalid(format!(
                "cannot publish ports on network {}: only non-internal bridge networks publish ports",
                net.name
            )));
        }
        Ok(())
    }

    fn net_config(&self, net: &Network, hosts: &[Host]) -> Result<Option<NetConfig>> {
        Ok(Some(net_config(net, hosts)))
    }

    fn create_endpoint(&mut self, ctx: &mut Ctx, net: &Network, ep: &Endpoint) -> Result<()> {
        attach_endpoint(ctx, net, ep, mtu(net, DEFAULT_MTU))
    }

    fn delete_endpoint(&mut self, ctx: &mut Ctx, _net: &Network, ep: &Endpoint) -> Result<()> {
        detach_endpoint(ctx, ep)
    }
}

/// What the data plane needs of a network with the switch as its gateway (bridge and
/// overlay networks; the overlay driver adds its tunnel, the macvlan driver takes the
/// gateway and the resolver away).
pub fn net_config(net: &Network, hosts: &[Host]) -> NetConfig {
    NetConfig {
        id: net.num,
        gateway: gateway(net),
        subnet: net
            .pool
            .as_ref()
            .map(|p| (p.subnet.network(), p.subnet.prefix_len())),
        internal: net.internal,
        hosts: hosts
            .iter()
            .filter_map(|h| h.ip.map(|ip| (ip, h.mac.0)))
            .collect(),
        // The embedded resolver serves user-defined networks (macvlan has none).
        dns: !net.predefined,
        overlay: None,
        isolate: !icc(net),
        mtu: mtu(net, DEFAULT_MTU),
        ipv6: net.pool6.as_ref().map(|p| switch::Ipv6Config {
            gateway: Some(p.gateway),
            subnet: (p.subnet.network(), p.subnet.prefix_len()),
            hosts: hosts
                .iter()
                .filter_map(|h| h.ip6.map(|ip| (ip, h.mac.0)))
                .collect(),
            routed: gateway_mode_ipv6(net) == GatewayMode::Routed,
        }),
    }
}

/// Docker's option: how IPv6 leaves the network, `nat` (the default: masqueraded to
/// the uplink's IPv6 address) or `routed` (the endpoints' own addresses, no NAT).
pub const OPT_GATEWAY_MODE_IPV6: &str = "com.docker.network.bridge.gateway_mode_ipv6";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayMode {
    Nat,
    Routed,
}

/// The network's IPv6 gateway mode (validated at create).
pub fn gateway_mode_ipv6(net: &Network) -> GatewayMode {
    match net.options.get(OPT_GATEWAY_MODE_IPV6).map(String::as_str) {
        Some("routed") => GatewayMode::Routed,
        _ => GatewayMode::Nat,
    }
}

/// Refuse a `gateway_mode_ipv6` other than nat or routed.
pub fn validate_gateway_mode(
    options: &std::collections::BTreeMap<String, String>,
) -> ApiResult<()> {
    match options.get(OPT_GATEWAY_MODE_IPV6).map(String::as_str) {
        None | Some("nat") | Some("routed") => Ok(()),
        Some(v) => Err(ApiError::invalid(format!(
            "invalid -o {OPT_GATEWAY_MODE_IPV6}={v}: expected nat (IPv6 masqueraded to the uplink's address) or routed (the endpoints' own addresses)"
        ))),
    }
}

/// Docker's option: `enable_icc=false` keeps the network's endpoints from talking to
/// each other; they still reach the gateway and, through it, the outside.
pub const OPT_ICC: &str = "com.docker.network.bridge.enable_icc";

/// Whether the network's endpoints may talk to each other (validated at create).
pub fn icc(net: &Network) -> bool {
    net.options.get(OPT_ICC).map(String::as_str) != Some("false")
}

/// Refuse an `enable_icc` other than true or false.
pub fn validate_icc(options: &std::collections::BTreeMap<String, String>) -> ApiResult<()> {
    match options.get(OPT_ICC).map(String::as_str) {
        None | Some("true") | Some("false") => Ok(()),
        Some(v) => Err(ApiError::invalid(format!(
            "invalid -o {OPT_ICC}={v}: expected true or false"
        ))),
    }
}

/// Give the sandbox its interface (veth or TAP, with the address and `mtu`) and attach
/// it to the network's switch. Idempotent: re-attaches a surviving link on restart.
pub fn attach_endpoint(ctx: &mut Ctx, net: &Network, ep: &Endpoint, mtu: u32) -> Result<()> {
    let prefix = net
        .pool
        .as_ref()
        .map(|p| p.subnet.prefix_len())
        .unwrap_or(32);
    let prefix6 = net.pool6.as_ref().map_or(128, |p| p.subnet.prefix_len());
    let mut fast_path = false;
    let port: Box<dyn Port> = match ep.link {
        LinkKind::Veth => {
            let host = ep.host_ifname.clone().ok_or_else(|| {
                DriverError::Incomplete("veth endpoint without a host interface name".into())
            })?;
            let tc = datapath(net) == Datapath::Tc && ctx.engine.has_tc_path();
            let mut nl = Netlink::new()?;
            if !nl.link_exists(&host) {
                let ns = match &ep.outside {
                    None => netns::open(&ep.sandbox),
                    Some(Outside::Netns { path }) => netns::open_path(path),
                    Some(Outside::Docker { .. }) => netns::open_current(),
                }
                .map_err(step(format!("open sandbox {}", ep.sandbox)))?;
                let peer = container_ifname(ep);
                nl.create_veth(&host, &peer, ns.as_fd(), Some(ep.mac.0), mtu)
                    .map_err(|e| {
                        step(format!("create veth {host} <-> {}:{peer}", ep.sandbox))(
                            NetnsError::from(e),
                        )
                    })?;
                // Docker configures its end itself, once it has moved it.
                if !matches!(ep.outside, Some(Outside::Docker { .. })) {
                    configure_sandbox_end(ep, prefix, prefix6)?;
                }
            }
            prepare_host_end(&host)?;
            fast_path = sandbox_end_takes_redirects(ep);
            if tc {
                // Offloads on (a link made by a socket attachment earlier may have them
                // off), the program attached, and only then the host end up: a host end
                // without its program would hand the sandbox's frames to this
                // namespace's stack.
                let ifname = container_ifname(ep);
                in_container(ep, move || Ok(ethtool::enable_tx_checksum(&ifname)?))
                    .transpose()
                    .map_err(step(format!(
                        "turn offloads on for {} in sandbox {}",
                        ep.ifname, ep.sandbox
                    )))?;
                let id = ctx.engine.add_tc_endpoint(net.num, &host)?;
                ctx.ports.insert(ep.id.clone(), id);
                guard(ctx, net, ep, id)?;
                nl.set_up(&host)?;
                return Ok(());
            }
            nl.set_up(&host)?;
            // A socket reads the host end: the sandbox finishes its own checksums and
            // segments (also on restart, when the link may predate this choice).
            let ifname = container_ifname(ep);
            in_container(ep, move || Ok(ethtool::disable_tx_checksum(&ifname)?))
                .transpose()
                .map_err(step(format!(
                    "configure {} in sandbox {}",
                    ep.ifname, ep.sandbox
                )))?;
            port::open(&host, ctx.io).map_err(step(format!("open port on {host}")))?
        }
        LinkKind::Tap if ep.outside.is_some() => {
            return Err(DriverError::Incomplete(
                "a TAP endpoint lives in a sandbox of vswitch's own".into(),
            ))
        }
        LinkKind::Tap => {
            let (ifname, mac, ip, ip6) = (ep.ifname.clone(), ep.mac.0, ep.ip, ep.ip6);
            let tap = netns::run_in(&ep.sandbox, move || {
                let tap = TapPort::create(&ifname)
                    .map_err(|e| NetnsError::io(format!("create TAP {ifname}"), e.into()))?;
                let mut nl = Netlink::new()?;
                nl.set_mac(&ifname, mac)?;
                nl.set_mtu(&ifname, mtu)?;
                add_addresses(&mut nl, &ifname, (ip, prefix), (ip6, prefix6))?;
                nl.set_up(&ifname)?;
                Ok(tap)
            })
            .map_err(step(format!(
                "create TAP endpoint in sandbox {}",
                ep.sandbox
            )))?;
            Box::new(tap)
        }
    };
    let id = ctx.engine.add_port_with(net.num, port, fast_path)?;
    ctx.ports.insert(ep.id.clone(), id);
    guard(ctx, net, ep, id)
}

/// Port security for the endpoint's port (before it is up, so nothing spoofed is
/// learned first).
fn guard(ctx: &mut Ctx, net: &Network, ep: &Endpoint, id: switch::PortId) -> Result<()> {
    let g = ep.security.enabled.then(|| {
        let mut macs = vec![ep.mac.0];
        macs.extend(ep.security.allowed_macs.iter().map(|m| m.0));
        let mut ips: Vec<_> = ep.ip.into_iter().collect();
        ips.extend(&ep.security.allowed_ips);
        let mut ips6: Vec<_> = ep.ip6.into_iter().collect();
        ips6.extend(&ep.security.allowed_ips6);
        switch::port_security::PortGuard::new(&macs, &ips, &ips6)
    });
    ctx.engine.set_port_guard(net.num, id, g.flatten())?;
    Ok(())
}

/// Detach an endpoint from the switch and remove its link (taken down first, so no
/// frame reaches this namespace's stack once its program is gone).
pub fn detach_endpoint(ctx: &mut Ctx, ep: &Endpoint) -> Result<()> {
    let mut nl = Netlink::new()?;
    if let Some(host) = &ep.host_ifname {
        if nl.link_exists(host) {
            nl.set_down(host)?;
        }
    }
    if let Some(p) = ctx.ports.remove(&ep.id) {
        ctx.engine.remove_port(p)?;
    }
    if let Some(host) = &ep.host_ifname {
        nl.delete_link(host)?;
    }
    Ok(())
}

/// At a clean stop: take every veth host end down, so no sandbox frame reaches this
/// namespace's stack while the daemon (and the endpoints' programs) are gone. The next
/// start brings them up again as it attaches them.
pub fn park_endpoints<'a>(eps: impl Iterator<Item = &'a Endpoint>) {
    let Ok(mut nl) = Netlink::new() else {
        return;
    };
    for host in eps.filter_map(|e| e.host_ifname.as_ref()) {
        if nl.link_exists(host) {
            let _ = nl.set_down(host);
        }
    }
}

/// Inside the sandbox: the addresses, link up. Offloads stay as the kernel sets them.
fn configure_sandbox_end(ep: &Endpoint, prefix: u8, prefix6: u8) -> Result<()> {
    let (ifname, ip, ip6) = (ep.ifname.clone(), ep.ip, ep.ip6);
    in_container(ep, move || {
        let mut nl = Netlink::new()?;
        add_addresses(&mut nl, &ifname, (ip, prefix), (ip6, prefix6))?;
        Ok(nl.set_up(&ifname)?)
    })
    .transpose()
    .map(|_| ())
    .map_err(|e| step(format!("configure {} in sandbox {}", ep.ifname, ep.sandbox))(e).into())
}

/// The container end's name where vswitch reaches it: Docker's until dockerd moves it
/// (Join's SrcName), else the interface's name in the container.
fn container_ifname(ep: &Endpoint) -> String {
    match &ep.outside {
        Some(Outside::Docker { peer }) => peer.clone(),
        _ => ep.ifname.clone(),
    }
}

/// Run `f` where the endpoint's container end is: in its sandbox, in the runtime's
/// namespace file, or here (Docker's, until dockerd moves it). None once it is out of
/// reach: vswitch does not go into Docker's namespaces (what it set before the move,
/// offloads and GRO, went with the link).
fn in_container<T: Send + 'static>(
    ep: &Endpoint,
    f: impl FnOnce() -> std::result::Result<T, NetnsError> + Send + 'static,
) -> Option<std::result::Result<T, NetnsError>> {
    match &ep.outside {
        None => Some(netns::run_in(&ep.sandbox, f)),
        Some(Outside::Netns { path }) => Some(netns::run_in_path(path, f)),
        Some(Outside::Docker { peer }) => {
            let here = Netlink::new().is_ok_and(|mut nl| nl.link_exists(peer));
            here.then(f)
        }
    }
}

/// The endpoint's addresses on `ifname` (run inside the sandbox, before the link is
/// up): IPv4, IPv6, or both.
fn add_addresses(
    nl: &mut Netlink,
    ifname: &str,
    (ip, prefix): (Option<std::net::Ipv4Addr>, u8),
    (ip6, prefix6): (Option<std::net::Ipv6Addr>, u8),
) -> std::result::Result<(), NetnsError> {
    if let Some(ip) = ip {
        nl.add_address(ifname, ip, prefix)?;
    }
    if let Some(ip6) = ip6 {
        add_ipv6(nl, ifname, ip6, prefix6)?;
    }
    Ok(())
}

/// IPv6 on `ifname` (run inside the sandbox, before the link is up): sandboxes are made
/// with IPv6 off, so it is turned on for this interface (and loopback) only, as Docker
/// does for IPv6 networks: no duplicate address detection (the address is usable at
/// once: Docker's `accept_dad=0` and `nodad`), no router advertisements taken (the
/// configuration is static), the link-local address from the MAC (EUI-64, which port
/// security expects), then the address.
fn add_ipv6(
    nl: &mut Netlink,
    ifname: &str,
    ip6: std::net::Ipv6Addr,
    prefix: u8,
) -> std::result::Result<(), NetnsError> {
    for (key, value) in [
        ("lo/disable_ipv6", "0"),
        (&format!("{ifname}/accept_dad") as &str, "0"),
        (&format!("{ifname}/accept_ra"), "0"),
        (&format!("{ifname}/addr_gen_mode"), "0"),
        (&format!("{ifname}/disable_ipv6"), "0"),
    ] {
        let path = format!("/proc/sys/net/ipv6/conf/{key}");
        std::fs::write(&path, value).map_err(|e| NetnsError::io(format!("write {path}"), e))?;
    }
    Ok(nl.add_address6(ifname, ip6, prefix)?)
}

/// GRO on the sandbox's end of the veth (also on restart: the link may predate it), so
/// it takes the frames the fast path redirects to it. Without it the switch keeps the
/// endpoint off the fast path.
fn sandbox_end_takes_redirects(ep: &Endpoint) -> bool {
    let ifname = container_ifname(ep);
    match in_container(ep, move || Ok(ethtool::enable_gro(&ifname)?)) {
        Some(Ok(())) | None => true,
        Some(Err(e)) => {
            tracing::warn!(endpoint = %ep.id, error = %crate::error::chain(&e), "GRO stays off: the endpoint is kept off the fast path");
            false
        }
    }
}

/// A link the switch reads (a veth end, the uplink) lives in the daemon's namespace:
/// keep that kernel out of the data path (no IPv6 chatter, never answer ARP for host
/// addresses arriving on it).
pub fn prepare_host_end(host: &str) -> Result<()> {
    for (key, val) in [
        (format!("ipv6/conf/{host}/disable_ipv6"), "1"),
        (format!("ipv4/conf/{host}/arp_ignore"), "8"),
    ] {
        let path = format!("/proc/sys/net/{key}");
        std::fs::write(&path, val).map_err(step(format!("write {path}")))?;
    }
    Ok(())
}
