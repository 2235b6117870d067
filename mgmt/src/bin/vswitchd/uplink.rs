//! `--uplink`: the external interface, owned by the switch or shared with the host.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipnet::{Ipv4Net, Ipv6Net};
use mgmt::driver::bridge;
use mgmt::link::Netlink;
use mgmt::reserved_ports::{self, Reservation};
use nat::NatConfig;
use switch::port;
use switch::router::Uplink6;
use switch::{Engine, UplinkConfig};

use crate::Args;

/// On an address the host shares, the switch's ports: IANA's dynamic range (RFC 6335),
/// SNAT from its start to 60999, the resolver's upstream ports above
/// (`switch::DNS_UPSTREAM_PORTS`). The kernel keeps the rest of its ephemeral range
/// (32768-49151 by default).
pub const SHARED_PORTS_FIRST: u16 = 49152;

/// The uplink as attached.
pub struct Attached {
    pub ip: Ipv4Addr,
    pub ip6: Option<Ipv6Addr>,
    pub vtep: Ipv4Addr,
    /// The host keeps the address: its own connections share the NIC.
    pub shared: bool,
    /// The switch's ports, kept from the host's connections while it runs (put back
    /// when dropped).
    pub _reservation: Option<Reservation>,
}

/// Where the uplink's address comes from.
struct Addressing {
    net: Ipv4Net,
    gw: Ipv4Addr,
    shared: bool,
}

/// `--uplink IFACE [--uplink-ip CIDR --uplink-gw IP]`. An interface without IPv4
/// addresses is the switch's alone: it owns `--uplink-ip` (the kernel must not), answers
/// ARP for it and routes and NATs through it. An interface with the host's address
/// (a one-NIC host) is shared: the address stays the host's and usable by it, the switch
/// uses it too (its SNAT and resolver ports, published ports, VXLAN), and the gateway
/// is the host's default route's unless `--uplink-gw` says otherwise.
fn addressing(nl: &mut Netlink, iface: &str, args: &Args) -> Result<Addressing> {
    let held = nl.link_ipv4_addresses(iface)?;
    let given = args
        .uplink_ip
        .as_deref()
        .map(|c| {
            c.parse::<Ipv4Net>().with_context(|| {
                format!("invalid --uplink-ip {c:?}: expected CIDR like 198.51.100.2/24")
            })
        })
        .transpose()?;
    let gw = args
        .uplink_gw
        .as_deref()
        .map(|g| {
            g.parse::<Ipv4Addr>()
                .with_context(|| format!("invalid --uplink-gw {g:?}: expected an IPv4 address"))
        })
        .transpose()?;
    let (net, shared) = match (given, held.first()) {
        (None, None) => bail!(
            "uplink {iface} has no IPv4 address: give the switch one with --uplink-ip and --uplink-gw"
        ),
        (None, Some(h)) => (*h, true),
        (Some(g), _) if held.contains(&g) => (g, true),
        (Some(g), Some(h)) => bail!(
            "uplink {iface} holds {h}, the host's; --uplink-ip {g} is another address: leave --uplink-ip out to share the host's address, or use an interface without addresses"
        ),
        (Some(g), None) => (g, false),
    };
    let gw = match (gw, shared) {
        (Some(g), _) => g,
        (None, true) => nl.default_gateway(iface)?.with_context(|| {
            format!(
                "uplink {iface} has no default route to take the gateway from: give --uplink-gw"
            )
        })?,
        (None, false) => bail!("--uplink-ip needs --uplink-gw: the next hop for egress"),
    };
    if !net.contains(&gw) || gw == net.addr() {
        bail!(
            "--uplink-gw {gw} must be another address of the uplink subnet {}",
            net.trunc()
        );
    }
    Ok(Addressing { net, gw, shared })
}

/// `--uplink-ip6 CIDR --uplink-gw6 IP`: the switch's IPv6 address on the uplink (its
/// own: the kernel keeps IPv6 off the interface) and the next hop, on-link (a
/// link-local router address is usual) or in the uplink's prefix.
fn addressing6(args: &Args, shared: bool) -> Result<Option<Uplink6>> {
    let (net, gw) = match (&args.uplink_ip6, &args.uplink_gw6) {
        (None, None) => return Ok(None),
        (Some(n), Some(g)) => (n, g),
        _ => bail!("--uplink-ip6 and --uplink-gw6 go together: the address and the IPv6 next hop"),
    };
    let net: Ipv6Net = net.parse().with_context(|| {
        format!("invalid --uplink-ip6 {net:?}: expected CIDR like 2001:db8:ff::2/64")
    })?;
    let gw: Ipv6Addr = gw
        .parse()
        .with_context(|| format!("invalid --uplink-gw6 {gw:?}: expected an IPv6 address"))?;
    let ip = net.addr();
    let seg = ip.segments()[0];
    if ip.is_unspecified() || ip.is_multicast() || seg & 0xffc0 == 0xfe80 || ip == net.network() {
        bail!(
            "--uplink-ip6 {net}: expected a global or unique local unicast address of its prefix"
        );
    }
    if gw.is_multicast() || gw.is_unspecified() || gw == ip {
        bail!("--uplink-gw6 {gw}: expected the unicast address of the next hop");
    }
    if shared {
        bail!("--uplink-ip6 on a shared uplink is not supported yet: give the switch an interface of its own");
    }
    Ok(Some(Uplink6 {
        ip,
        prefix: net.prefix_len(),
        gateway: gw,
    }))
}

/// Attach the uplink, if one is given.
pub fn attach(engine: &mut Engine, args: &Args) -> Result<Option<Attached>> {
    let Some(iface) = &args.uplink else {
        if args.uplink_ip.is_some()
            || args.uplink_gw.is_some()
            || args.uplink_ip6.is_some()
            || args.uplink_gw6.is_some()
        {
            bail!("--uplink-ip(6) and --uplink-gw(6) need --uplink: the interface they belong to");
        }
        return Ok(None);
    };
    let mut nl = Netlink::new()?;
    if !nl.link_exists(iface) {
        bail!("uplink interface {iface} does not exist in vswitchd's network namespace");
    }
    let Addressing { net, gw, shared } = addressing(&mut nl, iface, args)?;
    let ip6 = addressing6(args, shared)?;
    let mac = nl.link_mac(iface)?;
    let tc = args.uplink_mode == "tc" && engine.has_tc_path();
    if shared && !tc {
        bail!(
            "sharing the host's address on {iface} needs the tc uplink (--uplink-mode tc, and BPF with tcx): only its program can leave the host's traffic to the host"
        );
    }
    if !shared {
        // The switch's alone: keep the kernel out of it.
        bridge::prepare_host_end(iface)?;
    }
    let vtep_ip = match &args.vtep_ip {
        None => None,
        Some(v) => {
            let ip: Ipv4Addr = v
                .parse()
                .with_context(|| format!("invalid --vtep-ip {v:?}: expected an IPv4 address"))?;
            if !net.contains(&ip) || ip == net.network() || ip == net.broadcast() || ip == gw {
                bail!(
                    "--vtep-ip {ip} must be a free host address of the uplink subnet {}",
                    net.trunc()
                );
            }
            Some(ip)
        }
    };
    let first = if shared {
        SHARED_PORTS_FIRST
    } else if vtep_ip.is_none_or(|v| v == net.addr()) {
        // The VTEP owns UDP 4789 of its address, so SNAT on that address stays above it
        // (a kept source port 4789 would have its replies taken for tunnel traffic).
        vxlan::wire::VXLAN_PORT + 1
    } else {
        1024
    };
    let nat = NatConfig {
        udp: Duration::from_secs(args.nat_udp_timeout),
        tcp_established: Duration::from_secs(args.nat_tcp_timeout),
        max_sessions: args.nat_max_sessions,
        max_per_source: args.nat_max_per_sandbox,
        // The embedded resolver's upstream queries use a port above this range.
        port_range: nat::PortRange { first, last: 60999 },
        ..NatConfig::default()
    };
    let reservation = if shared {
        Some(reserved_ports::reserve(
            &args.state_dir,
            first,
            *switch::DNS_UPSTREAM_PORTS.end(),
        )?)
    } else {
        None
    };
    let cfg = UplinkConfig {
        vtep_ip,
        ip: net.addr(),
        prefix: net.prefix_len(),
        gateway: gw,
        mac,
        nat,
        shared,
        ip6,
    };
    if args.uplink_mode == "tc" && !tc {
        tracing::warn!(uplink = %iface, "no tc data path: the uplink gets a socket (--uplink-mode socket)");
    }
    let attached = if tc {
        // Up once its program is attached: what the switch owns never reaches the
        // stack (on a shared uplink, the host's traffic does).
        engine.set_uplink_tc(cfg, iface).map(|_| ())
    } else {
        nl.set_up(iface)?;
        let port = port::open(iface, args.io).with_context(|| format!("open uplink {iface}"))?;
        engine.set_uplink(cfg, port).map(|_| ())
    };
    // (On failure the reservation goes, and with it the host's value comes back.)
    attached?;
    nl.set_up(iface)?;
    let mode = if tc { "tc" } else { "socket" };
    let v6 = ip6.map(|u| format!("{}/{} via {}", u.ip, u.prefix, u.gateway));
    tracing::info!(uplink = %iface, ip = %net, gateway = %gw, ip6 = v6.as_deref().unwrap_or("none"), mode, shared, "uplink attached");
    Ok(Some(Attached {
        ip: net.addr(),
        ip6: ip6.map(|u| u.ip),
        vtep: vtep_ip.unwrap_or(net.addr()),
        shared,
        _reservation: reservation,
    }))
}
