//! Named network namespaces, laid out exactly as `ip netns add` does (a bind mount of the
//! namespace under /run/netns/NAME, a per-namespace /etc/netns/NAME), so that
//! `ip netns exec NAME ...` works on every sandbox the switch creates.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;

use thiserror::Error;

use crate::error::{step, Step};
use crate::ethtool::EthtoolError;
use crate::link::LinkError;
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Where the namespace bind mounts live (iproute2's NETNS_RUN_DIR).
pub const RUN_DIR: &str = "/run/netns";
/// Per-namespace configuration files `ip netns exec` bind-mounts over /etc.
pub const ETC_DIR: &str = "/etc/netns";

/// Longest name accepted; the name ends up in paths and thread names, not in ifnames.
const MAX_NAME_LEN: usize = 64;

/// What namespace plumbing fails with, and what work run in a namespace
/// ([`run_in`]) returns: its netlink and ethtool errors pass through as they are.
#[derive(Debug, Error)]
pub enum NetnsError {
    #[error("{0}")]
    InvalidName(String),
    #[error("network namespace {0:?} already exists")]
    Exists(String),
    #[error("invalid sysctl key {0:?}: expected a path under net/, like net/ipv4/ip_forward")]
    InvalidSysctlKey(String),
    /// A file operation failed; the step names the file.
    #[error(transparent)]
    Io(#[from] Step<io::Error>),
    /// A system call failed (mount, unshare, setns); the step says what it was for.
    #[error(transparent)]
    Sys(#[from] Step<Errno>),
    #[error("{what} panicked: {message}")]
    Panicked { what: String, message: String },
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Ethtool(#[from] EthtoolError),
    /// This error made a step fail (creating a namespace, say).
    #[error(transparent)]
    In(#[from] Step<Box<NetnsError>>),
}

impl NetnsError {
    /// A failed file operation on `what`.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        step(what)(source).into()
    }
    /// This error as the cause of a failure to do `what`.
    pub fn context(self, what: impl Into<String>) -> Self {
        step(what)(Box::new(self)).into()
    }
}

fn sys(what: impl Into<String>) -> impl FnOnce(Errno) -> NetnsError {
    let s = step(what);
    move |e| s(e).into()
}

pub type Result<T, E = NetnsError> = std::result::Result<T, E>;

/// The bind-mount file of namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

/// Whether `/run/netns/NAME` exists (it may be a stale, unmounted file).
pub fn exists(name: &str) -> bool {
    validate_name(name).is_ok() && path(name).exists()
}

/// Checks a namespace name the way iproute2 does, plus a length bound.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(NetnsError::InvalidName(
            "invalid namespace name: empty".into(),
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NetnsError::InvalidName(format!(
            "invalid namespace name {name:?}: longer than {MAX_NAME_LEN} bytes"
        )));
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(NetnsError::InvalidName(format!(
            "invalid namespace name {name:?}: must not be '.', '..' or contain '/'"
        )));
    }
    Ok(())
}

/// Creates the named network namespace `name`; fails if it already exists.
pub fn create(name: &str) -> Result<()> {
    mount_named(name, true)
}

/// Names the calling thread's own network namespace `name` (a sandbox that shares the
/// host's namespace, reachable with `ip netns exec NAME` all the same).
pub fn bind_current(name: &str) -> Result<()> {
    mount_named(name, false)
}

/// Names an existing named namespace `target` also `name` (a bind mount of its file),
/// for a sandbox that joins another's namespace (`--network container:TARGET`).
pub fn bind_existing(name: &str, target: &str) -> Result<()> {
    validate_name(name)?;
    validate_name(target)?;
    prepare_run_dir()?;
    let dst = create_mount_point(name)?;
    if let Err(e) = mount(
        Some(&path(target)),
        &dst,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = fs::remove_file(&dst);
        return Err(sys(format!(
            "bind-mounting namespace {target:?} as {name:?}"
        ))(e));
    }
    Ok(())
}

/// The empty file a namespace named `name` is bind-mounted on, created; its path.
/// O_EXCL: two creators of one name must not share a namespace silently.
fn create_mount_point(name: &str) -> Result<PathBuf> {
    let file = path(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&file)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                NetnsError::Exists(name.to_string())
            } else {
                NetnsError::io(format!("creating {}", file.display()), e)
            }
        })?;
    Ok(file)
}

fn mount_named(name: &str, new_namespace: bool) -> Result<()> {
    validate_name(name)?;
    prepare_run_dir()?;
    let target = create_mount_point(name)?;

    // unshare() moves only the calling thread; doing it on a throwaway thread keeps the
    // caller (and every other thread of the daemon) in its own namespace.
    let mount_target = target.clone();
    let result = thread::Builder::new()
        .name("netns-create".into())
        .spawn(move || -> Result<()> {
            if new_namespace {
                unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unshare(CLONE_NEWNET)"))?;
            }
            // /proc/self/ns/net would name the thread-group leader's namespace.
            mount(
                Some("/proc/thread-self/ns/net"),
                &mount_target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys(format!(
                "bind-mounting the new namespace onto {}",
                mount_target.display()
            )))
        })
        .map_err(|e| NetnsError::io("spawning the namespace-creating thread", e))?
        .join()
        .map_err(|p| NetnsError::Panicked {
            what: "namespace-creating thread".into(),
            message: panic_message(&p),
        })
        .and_then(|r| r);

    if let Err(e) = result {
        let _ = fs::remove_file(&target);
        return Err(e.context(format!("creating network namespace {name:?}")));
    }
    tracing::debug!(netns = name, "created network namespace");
    Ok(())
}

/// Makes /run/netns a shared mount point, as iproute2 does, so that a namespace mounted
/// later is seen in mount namespaces that were cloned from this one (e.g. by
/// `ip netns exec`), and unmounting it releases it everywhere.
fn prepare_run_dir() -> Result<()> {
    // Two creates racing here could both see EINVAL and stack two bind mounts.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    fs::create_dir_all(RUN_DIR).map_err(|e| NetnsError::io(format!("creating {RUN_DIR}"), e))?;
    let mut bound = false;
    loop {
        match mount(
            Some(""),
            RUN_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            // EINVAL: not a mount point yet; make it one by binding it onto itself.
            Err(Errno::EINVAL) if !bound => {
                mount(
                    Some(RUN_DIR),
                    RUN_DIR,
                    Some("none"),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(sys(format!("bind-mounting {RUN_DIR} onto itself")))?;
                bound = true;
            }
            Err(e) => return Err(sys(format!("making {RUN_DIR} a shared mount"))(e)),
        }
    }
}

/// Deletes namespace `name` and its /etc/netns/NAME; Ok if it does not exist.
///
/// The kernel destroys the namespace (and the links in it) once nothing else holds it:
/// processes still inside keep it alive, as with `ip netns delete`.
pub fn delete(name: &str) -> Result<()> {
    validate_name(name)?;
    let target = path(name);
    match umount2(&target, MntFlags::MNT_DETACH) {
        // ENOENT: no file; EINVAL: a file that is not a mount point (a failed create).
        Ok(()) | Err(Errno::ENOENT) | Err(Errno::EINVAL) => {}
        Err(e) => {
            return Err(sys(format!("unmounting network namespace {name:?}"))(e));
        }
    }
    match fs::remove_file(&target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(NetnsError::io(format!("removing {}", target.display()), e));
        }
    }
    let etc = Path::new(ETC_DIR).join(name);
    match fs::remove_dir_all(&etc) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(NetnsError::io(format!("removing {}", etc.display()), e)),
    }
    tracing::debug!(netns = name, "deleted network namespace");
    Ok(())
}

/// Opens namespace `name`; the fd is what setns() and IFLA_NET_NS_FD take.
pub fn open(name: &str) -> Result<OwnedFd> {
    validate_name(name)?;
    let target = path(name);
    let file = File::open(&target).map_err(|e| {
        NetnsError::io(
            format!("opening network namespace {name:?} ({})", target.display()),
            e,
        )
    })?;
    Ok(OwnedFd::from(file))
}

/// Opens the namespace file at `path` (a runtime's: Docker's SandboxKey, CNI_NETNS),
/// checking that it is one.
pub fn open_path(path: &Path) -> Result<OwnedFd> {
    let file = File::open(path)
        .map_err(|e| NetnsError::io(format!("opening network namespace {}", path.display()), e))?;
    let fd = OwnedFd::from(file);
    // NS_GET_NSTYPE: a namespace file answers with its type; anything else fails.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: an ioctl without arguments on an fd we own.
    let kind = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind != libc::CLONE_NEWNET {
        return Err(NetnsError::io(
            format!("opening network namespace {}", path.display()),
            io::Error::new(io::ErrorKind::InvalidInput, "not a network namespace"),
        ));
    }
    Ok(fd)
}

/// Opens the calling thread's own network namespace (a veth's peer made here stays
/// here).
pub fn open_current() -> Result<OwnedFd> {
    let file = File::open("/proc/thread-self/ns/net")
        .map_err(|e| NetnsError::io("opening this thread's network namespace", e))?;
    Ok(OwnedFd::from(file))
}

/// [`run_in`] for the namespace file at `path`.
pub fn run_in_path<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = open_path(path)?;
    run_in_fd(ns, path.display().to_string(), f)
}

/// Runs `f` on a new thread that has entered namespace `name`, and returns its result.
///
/// A thread, so that the caller's namespace never changes: sockets `f` opens (netlink,
/// ioctl) and /proc/sys/net it opens belong to `name`.
pub fn run_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = open(name)?;
    run_in_fd(ns, name.to_string(), f)
}

fn run_in_fd<T: Send + 'static>(
    ns: OwnedFd,
    owned_name: String,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let name = owned_name.clone();
    thread::Builder::new()
        .name("netns-run".into())
        .spawn(move || -> Result<T> {
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(sys(format!("entering network namespace {owned_name:?}")))?;
            drop(ns);
            f()
        })
        .map_err(|e| NetnsError::io("spawning a thread to run in a network namespace", e))?
        .join()
        .map_err(|p| NetnsError::Panicked {
            what: format!("thread in network namespace {name:?}"),
            message: panic_message(&p),
        })?
}

/// Writes `value` to /proc/sys/`key` inside namespace `name`, e.g.
/// `write_sysctl_in("sb1", "net/ipv6/conf/all/disable_ipv6", "1")`.
///
/// Only `net/` keys are accepted: other sysctls are not per-namespace, and writing one
/// "inside" a sandbox would change the host.
pub fn write_sysctl_in(name: &str, key: &str, value: &str) -> Result<()> {
    validate_sysctl_key(key)?;
    let file = Path::new("/proc/sys").join(key);
    let value = value.to_string();
    let ns = name.to_string();
    run_in(name, move || {
        fs::write(&file, value.as_bytes()).map_err(|e| {
            NetnsError::io(
                format!(
                    "writing {value:?} to {} in network namespace {ns:?}",
                    file.display()
                ),
                e,
            )
        })
    })
}

fn validate_sysctl_key(key: &str) -> Result<()> {
    let ok_chars = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.'));
    if !key.starts_with("net/")
        || !ok_chars
        || key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(NetnsError::InvalidSysctlKey(key.to_string()));
    }
    Ok(())
}

/// The calling thread's network namespace, as an fd (to create links in it).
pub fn current() -> std::result::Result<OwnedFd, crate::error::Step<std::io::Error>> {
    std::fs::File::open("/proc/thread-self/ns/net")
        .map(OwnedFd::from)
        .map_err(crate::error::step("open this thread's network namespace"))
}

/// Path of the resolv.conf that `ip netns exec NAME` shows as /etc/resolv.conf.
pub fn resolv_conf_path(name: &str) -> PathBuf {
    Path::new(ETC_DIR).join(name).join("resolv.conf")
}

/// Writes /etc/netns/NAME/resolv.conf naming `nameservers` (no search list) with an
/// `options` line when `options` is not empty, replacing it atomically so a process in
/// the sandbox never reads half a file.
pub fn write_resolv_conf(name: &str, nameservers: &[IpAddr], options: &[&str]) -> Result<()> {
    let mut text = String::new();
    for ns in nameservers {
        text.push_str(&format!("nameserver {ns}\n"));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    write_etc_file(name, "resolv.conf", &text)
}

/// Writes /etc/netns/NAME/hosts (what `ip netns exec NAME` shows as /etc/hosts): the
/// loopback names, then `entries` (address, name), as Docker writes a container's.
pub fn write_hosts(name: &str, entries: &[(IpAddr, String)]) -> Result<()> {
    let mut text =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (ip, host) in entries {
        text.push_str(&format!("{ip}\t{host}\n"));
    }
    write_etc_file(name, "hosts", &text)
}

/// Replace /etc/netns/NAME/FILE with `text` atomically, so a process in the sandbox
/// never reads half a file.
fn write_etc_file(name: &str, file: &str, text: &str) -> Result<()> {
    validate_name(name)?;
    let dir = Path::new(ETC_DIR).join(name);
    fs::create_dir_all(&dir)
        .map_err(|e| NetnsError::io(format!("creating {}", dir.display()), e))?;
    let tmp = dir.join(format!(".{file}.tmp"));
    let final_path = dir.join(file);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| NetnsError::io(format!("creating {}", tmp.display()), e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| NetnsError::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, &final_path).map_err(|e| {
        NetnsError::io(
            format!("renaming {} to {}", tmp.display(), final_path.display()),
            e,
        )
    })?;
    Ok(())
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("sb1").is_ok());
        assert!(validate_name(&"a".repeat(64)).is_ok());
        for bad in ["", ".", "..", "a/b", "/x", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sysctl_keys_are_validated() {
        assert!(validate_sysctl_key("net/ipv6/conf/all/disable_ipv6").is_ok());
        assert!(validate_sysctl_key("net/ipv4/conf/eth0.100/rp_filter").is_ok());
        for bad in [
            "",
            "kernel/hostname",
            "net/../kernel/x",
            "/net/ipv4/ip_forward",
            "net//x",
            "net/a b",
        ] {
            assert!(validate_sysctl_key(bad).is_err(), "{bad:?} accepted");
        }
    }
}
