//! A macvlan parent's settings as vswitchd found them: the sysctls it changes to keep
//! the kernel off the parent (`disable_ipv6`, `arp_ignore`), given back with
//! promiscuous mode off when the parent's last network goes or the daemon stops. The
//! values found are also kept in the state directory until then, so a daemon that was
//! killed still gives the parent back as it was before the first start, not as the
//! killed daemon left it: the next start reads them instead of the changed values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::link::Netlink;

/// Parent -> (sysctl path, value found).
type Saved = BTreeMap<String, Vec<(String, String)>>;

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
            .filter(|(p, _)| ours.contains(p))
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
    let values = sysctls(parent)
        .into_iter()
        .filter_map(|p| {
            std::fs::read_to_string(&p)
                .ok()
                .map(|v| (p, v.trim().to_string()))
        })
        .collect();
    saved.insert(parent.to_string(), values);
    persist(&saved);
}

/// Give the parent back as it was: promiscuous mode off, its sysctls as found. Best
/// effort: a parent that has gone away must not keep the network alive.
pub fn restore(parent: &str) {
    if let Err(e) = Netlink::new().and_then(|mut nl| nl.set_promisc(parent, false)) {
        tracing::warn!(parent = %parent, error = %crate::error::chain(&e), "cannot restore the parent's promiscuous mode");
    }
    let mut saved = lock(&PARENTS);
    for (path, value) in saved.remove(parent).unwrap_or_default() {
        if let Err(e) = std::fs::write(&path, &value) {
            tracing::warn!(parent = %parent, path, error = %e, "cannot restore the parent's setting");
        }
    }
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
