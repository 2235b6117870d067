//! Sandboxes on the host: a named network namespace (as `ip netns add` makes) with
//! loopback up, or a name bound to the host's own namespace for `--network host`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::link::Netlink;
use crate::model::SandboxMode;
use crate::netns;

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
        SandboxMode::Host => {
            netns::bind_current(name).with_context(|| format!("bind host namespace as {name}"))
        }
        SandboxMode::Container(target) => {
            netns::bind_existing(name, target)
                .with_context(|| format!("join the namespace of sandbox {target} as {name}"))?;
            // The same resolver as the sandbox it joins.
            let src = netns::resolv_conf_path(target);
            if let Ok(text) = std::fs::read(&src) {
                let dst = netns::resolv_conf_path(name);
                if let Some(dir) = dst.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("create {}", dir.display()))?;
                }
                std::fs::write(&dst, text).with_context(|| format!("write {}", dst.display()))?;
            }
            Ok(())
        }
        SandboxMode::Netns | SandboxMode::None => {
            netns::create(name).with_context(|| format!("create network namespace {name}"))?;
            let setup = netns::run_in(name, || {
                // No IPv6 on the data path yet: keep sandboxes from emitting RS/MLD noise.
                for key in [
                    "net/ipv6/conf/all/disable_ipv6",
                    "net/ipv6/conf/default/disable_ipv6",
                ] {
                    let _ = std::fs::write(format!("/proc/sys/{key}"), "1");
                }
                Netlink::new()?.set_up("lo")
            });
            if let Err(e) = setup {
                let _ = netns::delete(name);
                return Err(e.context(format!("set up loopback in {name}")));
            }
            Ok(())
        }
    }
}

/// Delete the namespace (its veth ends go with it) and its /etc/netns files.
pub fn remove(name: &str) -> Result<()> {
    netns::delete(name).with_context(|| format!("delete network namespace {name}"))
}

/// Point the default route at `gw`, or leave none.
pub fn set_default_route(name: &str, gw: Option<Ipv4Addr>) -> Result<()> {
    let Some(gw) = gw else { return Ok(()) };
    netns::run_in(name, move || Netlink::new()?.add_default_route(gw))
        .with_context(|| format!("set default route via {gw} in sandbox {name}"))
}

/// resolv.conf naming `servers`; `embedded` (the gateway's resolver) adds `ndots:0`, so
/// a dotted name is asked as given before any search domain, as Docker writes it.
pub fn write_resolv_conf(name: &str, servers: &[IpAddr], embedded: bool) -> Result<()> {
    let options: &[&str] = if embedded { &["ndots:0"] } else { &[] };
    netns::write_resolv_conf(name, servers, options)
        .with_context(|| format!("write resolv.conf for sandbox {name}"))
}
