//! A macvlan parent's settings as vswitchd found them: the sysctls it changes to keep
//! the kernel off the parent (`disable_ipv6`, `arp_ignore`), and the IPv6 addresses
//! turning IPv6 off removes, given back with promiscuous mode off when the parent's
//! last network goes or the daemon stops. The values found are also kept in the state
//! directory until then, so a daemon that was killed still gives the parent back as it
//! was before the first start, not as the killed daemon left it: the next start reads
//! them instead of the changed values.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::link::Netlink;

/// Parent -> what was found: (sysctl path, value), or ([`ADDRESS6`], "ADDR/LEN").
type Saved = BTreeMap<String, Vec<(String, String)>>;

/// The key of a saved IPv6 address of the parent's own. `disable_ipv6` removes every
/// IPv6 address of the interface, and turning IPv6 back on brings back only the
/// kernel's own link-local one: a configured address would be lost for good. (A key no
/// sysctl path can be, so a file with them still reads as a list of sysctls.)
const ADDRESS6: &str = "ipv6 address";
/// `IFA_F_PERMANENT`: an address configured, not autoconfigured from a router
/// advertisement (those come back with the next one) nor temporary.
const IFA_F_PERMANENT: u32 = 0x80;

static PARENTS: Mutex<Saved> = Mutex::new(BTreeMap::new());
/// Where [`PARENTS`] is kept while any parent is held (set by [`load`]).
static FILE: Mutex<Option<PathBuf>> = Mutex::new(None);
const SAVED: &str = "macvlan-parents.json";

fn sysctls(parent: &str) -> [String; 2] {
    [
        format!("/proc/sys/net/ipv6/conf/{parent}/disable_ipv6"),
        format!("/proc/sys/net/ipv4/conf/{parent}/arp_ignore"),
    ]
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// At start, before any network is restored: keep what `state_dir` has saved from an
/// earlier run (one killed before it gave its parents back), and save there from now
/// on. Only the sysctls this module changes are taken from the file.
pub fn load(state_dir: &Path) -> std::io::Result<()> {
    let path = state_dir.join(SAVED);
    *lock(&FILE) = Some(path.clone());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let saved: Saved = serde_json::from_str(&text).map_err(|e| {
        std::io::Error::other(format!(
            "{} is not a saved parents file: {e}",
            path.display()
        ))
    })?;
    let mut parents = lock(&PARENTS);
    for (parent, values) in saved {
        let ours = sysctls(&parent);
        let values: Vec<_> = values
            .into_iter()
            .filter(|(p, _)| ours.contains(p) || p == ADDRESS6)
            .collect();
        tracing::info!(parent = %parent, "a macvlan parent's settings saved by an earlier run");
        parents.insert(parent, values);
    }
    Ok(())
}

/// Write what is held (the file goes when nothing is). Best effort: a parent that cannot
/// be saved is still given back at stop.
fn persist(saved: &Saved) {
    let Some(path) = lock(&FILE).clone() else {
        return;
    };
    let r = if saved.is_empty() {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    } else {
        let tmp = path.with_extension("json.tmp");
        serde_json::to_vec(saved)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &path))
    };
    if let Err(e) = r {
        tracing::warn!(path = %path.display(), error = %e, "cannot save the macvlan parents' settings");
    }
}

/// `parent` is about to be changed: remember its settings unless they are already.
pub fn remember(parent: &str) {
    let mut saved = lock(&PARENTS);
    if saved.contains_key(parent) {
        return;
    }
    let mut values: Vec<_> = sysctls(parent)
        .into_iter()
        .filter_map(|p| {
            std::fs::read_to_string(&p)
                .ok()
                .map(|v| (p, v.trim().to_string()))
        })
        .collect();
    values.extend(
        addresses6(parent)
            .into_iter()
            .filter(|&(_, _, flags)| flags & IFA_F_PERMANENT != 0)
            .map(|(ip, len, _)| (ADDRESS6.to_string(), format!("{ip}/{len}"))),
    );
    saved.insert(parent.to_string(), values);
    persist(&saved);
}

/// The IPv6 addresses on `dev` (address, prefix length, `IFA_F_*` flags), from this
/// namespace's `/proc/net/if_inet6`; none where IPv6 is off or absent.
fn addresses6(dev: &str) -> Vec<(Ipv6Addr, u8, u32)> {
    std::fs::read_to_string("/proc/net/if_inet6")
        .map(|text| parse_if_inet6(&text, dev))
        .unwrap_or_default()
}

/// `/proc/net/if_inet6`: per line the address (32 hex digits), then in hex the
/// interface index, prefix length, scope and flags, then the interface's name.
fn parse_if_inet6(text: &str, dev: &str) -> Vec<(Ipv6Addr, u8, u32)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [addr, _index, len, _scope, flags, name] = f[..] else {
                return None;
            };
            if name != dev || addr.len() != 32 {
                return None;
            }
            Some((
                Ipv6Addr::from(u128::from_str_radix(addr, 16).ok()?),
                u8::from_str_radix(len, 16).ok().filter(|l| *l <= 128)?,
                u32::from_str_radix(flags, 16).ok()?,
            ))
        })
        .collect()
}

/// After IPv6 is on again: the saved addresses the kernel did not bring back itself.
fn restore_addresses6(parent: &str, saved: &[(Ipv6Addr, u8)]) {
    let present: Vec<Ipv6Addr> = addresses6(parent).into_iter().map(|a| a.0).collect();
    let missing: Vec<_> = saved.iter().filter(|a| !present.contains(&a.0)).collect();
    if missing.is_empty() {
        return;
    }
    let added = Netlink::new().and_then(|mut nl| {
        missing
            .iter()
            .try_for_each(|&&(ip, len)| nl.add_address6(parent, ip, len))
    });
    if let Err(e) = added {
        tracing::warn!(parent = %parent, error = %crate::error::chain(&e), "cannot restore the parent's IPv6 addresses");
    }
}

/// A saved "ADDR/LEN".
fn address6(value: &str) -> Option<(Ipv6Addr, u8)> {
    let (ip, len) = value.split_once('/')?;
    Some((ip.parse().ok()?, len.parse().ok().filter(|l| *l <= 128)?))
}

/// Give the parent back as it was: promiscuous mode off, its sysctls as found, then the
/// IPv6 addresses it had. Best effort: a parent that has gone away must not keep the
/// network alive.
pub fn restore(parent: &str) {
    if let Err(e) = Netlink::new().and_then(|mut nl| nl.set_promisc(parent, false)) {
        tracing::warn!(parent = %parent, error = %crate::error::chain(&e), "cannot restore the parent's promiscuous mode");
    }
    let mut saved = lock(&PARENTS);
    let mut addrs = Vec::new();
    for (path, value) in saved.remove(parent).unwrap_or_default() {
        if path == ADDRESS6 {
            match address6(&value) {
                Some(a) => addrs.push(a),
                None => tracing::warn!(parent = %parent, value, "not a saved IPv6 address"),
            }
        } else if let Err(e) = std::fs::write(&path, &value) {
            tracing::warn!(parent = %parent, path, error = %e, "cannot restore the parent's setting");
        }
    }
    restore_addresses6(parent, &addrs);
    persist(&saved);
}

/// At shutdown: every parent still held goes back as it was (the next start takes them
/// again).
pub fn restore_all() {
    let parents: Vec<String> = lock(&PARENTS).keys().cloned().collect();
    for p in parents {
        restore(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the kernel prints it: a configured global address, a configured and the
    /// kernel's own link-local, a SLAAC one, another interface's.
    const IF_INET6: &str = "\
20010db8000000000000000000000005 03 40 00 82       par0
fe800000000000000000000000000001 03 40 20 80       par0
fe800000000000003886a3fffec23644 03 40 20 80       par0
20010db8000000003886a3fffec23644 03 40 00 00       par0
fe8000000000000004c33ffffec8ffd1 02 40 20 80       lan0
";

    #[test]
    fn if_inet6_lines_of_one_interface() {
        let got = parse_if_inet6(IF_INET6, "par0");
        let want: Vec<(Ipv6Addr, u8, u32)> = vec![
            ("2001:db8::5".parse().unwrap(), 64, 0x82),
            ("fe80::1".parse().unwrap(), 64, 0x80),
            ("fe80::3886:a3ff:fec2:3644".parse().unwrap(), 64, 0x80),
            ("2001:db8::3886:a3ff:fec2:3644".parse().unwrap(), 64, 0),
        ];
        assert_eq!(got, want);
        assert!(
            parse_if_inet6(IF_INET6, "par").is_empty(),
            "whole names only"
        );
        assert!(parse_if_inet6("garbage\n1 2 3 4 5 par0\n", "par0").is_empty());
    }

    #[test]
    fn saved_addresses_read_back() {
        let ip: Ipv6Addr = "2001:db8::5".parse().unwrap();
        assert_eq!(address6(&format!("{ip}/64")), Some((ip, 64)));
        for bad in ["2001:db8::5", "2001:db8::5/129", "192.0.2.1/24", "x/64"] {
            assert_eq!(address6(bad), None, "{bad}");
        }
    }
}
