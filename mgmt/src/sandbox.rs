//! Sandboxes on the host: a named network namespace (as `ip netns add` makes) with
//! loopback up, or a name bound to the host's own namespace for `--network host`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use crate::error::{step, Step};
use crate::link::Netlink;
use crate::model::SandboxMode;
use crate::netns::{self, NetnsError};

/// What setting up a sandbox's namespace fails with; the step says which.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Netns(#[from] Step<NetnsError>),
    #[error(transparent)]
    Io(#[from] Step<std::io::Error>),
}

type Result<T, E = SandboxError> = std::result::Result<T, E>;

pub fn netns_path(name: &str) -> PathBuf {
    netns::path(name)
}

pub fn netns_exists(name: &str) -> bool {
    netns::exists(name)
}

/// Make sure the sandbox's namespace exists and is set up (idempotent: used on create
/// and on restart).
pub fn ensure(name: &str, mode: &SandboxMode) -> Result<()> {
    if netns::exists(name) {
        return Ok(());
    }
    match mode {
        // The runtime's to make.
        SandboxMode::External(_) => Ok(()),
        SandboxMode::Host => Ok(
            netns::bind_current(name).map_err(step(format!("bind host namespace as {name}")))?
        ),
        SandboxMode::Container(target) => {
            netns::bind_existing(name, target).map_err(step(format!(
                "join the namespace of sandbox {target} as {name}"
            )))?;
            // The same resolver as the sandbox it joins.
            let src = netns::resolv_conf_path(target);
            if let Ok(text) = std::fs::read(&src) {
                let dst = netns::resolv_conf_path(name);
                if let Some(dir) = dst.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(step(format!("create {}", dir.display())))?;
                }
                std::fs::write(&dst, text).map_err(step(format!("write {}", dst.display())))?;
            }
            Ok(())
        }
        SandboxMode::Netns | SandboxMode::None => {
            netns::create(name).map_err(step(format!("create network namespace {name}")))?;
            let setup = netns::run_in(name, || {
                // IPv6 off, so interfaces of IPv4-only networks emit no RS/MLD noise; an
                // IPv6 network turns it on for its own interface (`bridge::add_ipv6`).
                for key in [
                    "net/ipv6/conf/all/disable_ipv6",
                    "net/ipv6/conf/default/disable_ipv6",
                ] {
                    let _ = std::fs::write(format!("/proc/sys/{key}"), "1");
                }
                Ok(Netlink::new()?.set_up("lo")?)
            });
            if let Err(e) = setup {
                let _ = netns::delete(name);
                return Err(step(format!("set up loopback in {name}"))(e).into());
            }
            Ok(())
        }
    }
}

/// Delete the namespace (its veth ends go with it) and its /etc/netns files.
pub fn remove(name: &str) -> Result<()> {
    Ok(netns::delete(name).map_err(step(format!("delete network namespace {name}")))?)
}

/// Point the default route at `gw`, or leave none.
pub fn set_default_route(name: &str, gw: Option<Ipv4Addr>) -> Result<()> {
    let Some(gw) = gw else { return Ok(()) };
    let route = netns::run_in(name, move || Ok(Netlink::new()?.add_default_route(gw)?));
    Ok(route.map_err(step(format!(
        "set default route via {gw} in sandbox {name}"
    )))?)
}

/// Point the IPv6 default route at `gw` out of the interface named with it, or leave
/// none.
pub fn set_default_route6(name: &str, gw: Option<(std::net::Ipv6Addr, String)>) -> Result<()> {
    let Some((gw, dev)) = gw else { return Ok(()) };
    let route = netns::run_in(name, move || {
        Ok(Netlink::new()?.add_default_route6(gw, &dev)?)
    });
    Ok(route.map_err(step(format!(
        "set IPv6 default route via {gw} in sandbox {name}"
    )))?)
}

/// The sandbox's /etc/hosts: its own name at `own` (when it has an address), then
/// `extra` (`--add-host`).
pub fn write_hosts(name: &str, own: Option<IpAddr>, extra: &[(IpAddr, String)]) -> Result<()> {
    let mut entries: Vec<(IpAddr, String)> =
        own.map(|ip| (ip, name.to_string())).into_iter().collect();
    entries.extend(extra.iter().cloned());
    Ok(netns::write_hosts(name, &entries)
        .map_err(step(format!("write /etc/hosts for sandbox {name}")))?)
}

/// resolv.conf naming `servers`; `embedded` (the gateway's resolver) adds `ndots:0`, so
/// a dotted name is asked as given before any search domain, as Docker writes it.
pub fn write_resolv_conf(name: &str, servers: &[IpAddr], embedded: bool) -> Result<()> {
    let options: &[&str] = if embedded { &["ndots:0"] } else { &[] };
    Ok(netns::write_resolv_conf(name, servers, options)
        .map_err(step(format!("write resolv.conf for sandbox {name}")))?)
}
