//! Persisted state: one JSON document in the state dir, replaced atomically (write a
//! temporary file, fsync, rename, fsync the directory) before a change is acknowledged.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{step, Step};
use crate::model::{Endpoint, Network, Sandbox};

/// What loading or saving the state fails with.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file operation on the state dir; the step names it.
    #[error(transparent)]
    Io(#[from] Step<std::io::Error>),
    #[error("state dir {} is in use by another vswitchd (its lock is held); stop that daemon or pass another --state-dir", .0.display())]
    Locked(PathBuf),
    #[error("{} is not valid vswitchd state; move it aside to start empty", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} has format version {found}, this vswitchd reads {FORMAT_VERSION}", path.display())]
    Version { path: PathBuf, found: u32 },
    #[error("serialize state")]
    Serialize(#[source] serde_json::Error),
}

type Result<T, E = StateError> = std::result::Result<T, E>;

const STATE_FILE: &str = "state.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// By network id.
    pub networks: BTreeMap<String, Network>,
    /// By endpoint id.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// By sandbox name.
    pub sandboxes: BTreeMap<String, Sandbox>,
}

impl State {
    /// The address pool of network `id`, if there is such a network and it has one.
    pub fn pool_mut(&mut self, id: &str) -> Option<&mut crate::ipam::Pool> {
        self.networks.get_mut(id).and_then(|n| n.pool.as_mut())
    }

    pub fn pool6_mut(&mut self, id: &str) -> Option<&mut crate::ipam6::Pool6> {
        self.networks.get_mut(id).and_then(|n| n.pool6.as_mut())
    }

    /// Give an endpoint's addresses back to network `id`'s pools.
    pub fn release(
        &mut self,
        id: &str,
        ip: Option<std::net::Ipv4Addr>,
        ip6: Option<std::net::Ipv6Addr>,
    ) {
        if let (Some(p), Some(ip)) = (self.pool_mut(id), ip) {
            p.release(ip);
        }
        if let (Some(p), Some(ip6)) = (self.pool6_mut(id), ip6) {
            p.release(ip6);
        }
    }
}

/// The state dir, locked for this daemon's lifetime so two daemons never share it.
pub struct Store {
    dir: PathBuf,
    _lock: File,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(step(format!("create state dir {}", dir.display())))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join("lock"))
            .map_err(step(format!("open lock file in {}", dir.display())))?;
        // SAFETY: flock on an fd we own; no memory is involved.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(StateError::Locked(dir.to_path_buf()));
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The saved state, or None on first start.
    pub fn load(&self) -> Result<Option<State>> {
        let path = self.dir.join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(step(format!("read {}", path.display()))(e).into()),
        };
        let state: State =
            serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.clone(),
                source,
            })?;
        if state.version != FORMAT_VERSION {
            return Err(StateError::Version {
                path,
                found: state.version,
            });
        }
        Ok(Some(state))
    }

    pub fn save(&self, state: &State) -> Result<()> {
        let mut s = state.clone();
        s.version = FORMAT_VERSION;
        let bytes = serde_json::to_vec_pretty(&s).map_err(StateError::Serialize)?;
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let dst = self.dir.join(STATE_FILE);
        {
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(step(format!("create {}", tmp.display())))?;
            f.write_all(&bytes)
                .map_err(step(format!("write {}", tmp.display())))?;
            f.sync_all()
                .map_err(step(format!("fsync {}", tmp.display())))?;
        }
        fs::rename(&tmp, &dst).map_err(step(format!(
            "rename {} to {}",
            tmp.display(),
            dst.display()
        )))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(step(format!("fsync {}", self.dir.display())))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vs-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn save_then_load_round_trips() {
        let d = tmpdir("rt");
        let store = Store::open(&d).unwrap();
        assert!(store.load().unwrap().is_none());
        let mut s = State::default();
        s.sandboxes.insert(
            "web".into(),
            Sandbox {
                id: "x".into(),
                name: "web".into(),
                mode: crate::model::SandboxMode::Netns,
                endpoints: vec![],
                created: "now".into(),
                ports: vec![],
                extra_hosts: vec![],
            },
        );
        store.save(&s).unwrap();
        let back = store.load().unwrap().unwrap();
        assert_eq!(back.sandboxes["web"].name, "web");
        assert!(!d.join("state.json.tmp").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn second_daemon_is_refused_and_corrupt_state_is_reported() {
        let d = tmpdir("lock");
        let store = Store::open(&d).unwrap();
        let err = Store::open(&d).err().unwrap().to_string();
        assert!(err.contains("in use by another vswitchd"), "{err}");
        fs::write(d.join("state.json"), b"{not json").unwrap();
        let err = format!("{:#}", store.load().unwrap_err());
        assert!(err.contains("not valid vswitchd state"), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }
}
