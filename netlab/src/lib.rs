//! The one test lab for everything that needs real kernel objects: a root check, a
//! command runner whose failures show the command and its stderr, throwaway network
//! namespaces (unique per process, deleted on drop, also when a test panics), veth
//! pairs, code and commands run inside a namespace, unique short interface names and a
//! bounded wait.
//!
//! Every caller passes its own name prefix (`vsp` port tests, `vsg` pktgen, `vsn` mgmt
//! plumbing, `vt` end-to-end), so `make clean-lab` finds what a crashed run left.
//! Used only by tests: a `[dev-dependency]` (and the e2e crate's support library).

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where `ip netns add` mounts named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Fail (not skip) when not root: these tests need real kernel objects.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (it creates network namespaces, veth pairs and other kernel \
         objects); run it as root, as CI does"
    );
}

/// Run a command (`args[0]` with the rest as arguments) that must succeed.
pub fn run(args: &[&str]) {
    run_out(args);
}

/// Run a command that must succeed; its standard output. A failure panics with the
/// command, its exit status, and what it printed.
pub fn run_out(args: &[&str]) -> String {
    let (prog, rest) = args.split_first().expect("run: an empty command");
    let out = Command::new(prog)
        .args(rest)
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e} (is {prog} installed?)"));
    assert!(
        out.status.success(),
        "{args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    ip_out(args);
}

/// `ip ARGS`, which must succeed; its standard output.
pub fn ip_out(args: &[&str]) -> String {
    let mut all = vec!["ip"];
    all.extend_from_slice(args);
    run_out(&all)
}

/// Run a command in a namespace (`ip netns exec`), killed after `timeout`; its output,
/// whatever the exit status (the caller judges it).
pub fn ns_exec(ns: &str, args: &[&str], timeout: Duration) -> Output {
    let secs = format!("{}", timeout.as_secs_f64());
    Command::new("timeout")
        .args(["-k", "1", &secs, "ip", "netns", "exec", ns])
        .args(args)
        .output()
        .expect("run ip netns exec")
}

/// Run `f` on a thread that has entered the named namespace; its result (a panic in
/// `f` is passed on). Sockets and devices it opens stay in that namespace when handed
/// back.
pub fn in_netns<R: Send + 'static>(name: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = Path::new(NETNS_DIR).join(name);
    let file = File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let handle = std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns into {}: {e}", path.display()));
        f()
    });
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Does the named namespace exist?
pub fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// `ip netns add NAME` with `lo` up. No guard: for names a test's own cleanup removes
/// (see [`Netns`] for one that is deleted on drop).
pub fn add_netns(name: &str) {
    ip(&["netns", "add", name]);
    ip(&["-n", name, "link", "set", "lo", "up"]);
}

/// Delete a namespace (and the `/etc/netns/NAME` files `ip netns exec` would bind);
/// an absent one is not an error. Never panics: it runs in Drop.
pub fn del_netns(name: &str) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(name));
    if !netns_exists(name) {
        return Ok(());
    }
    match Command::new("ip").args(["netns", "del", name]).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// A veth pair: `a` in namespace `a_ns`, its peer `b` in `b_ns` (both down).
pub fn veth(a_ns: &str, a: &str, b_ns: &str, b: &str) {
    ip(&[
        "-n", a_ns, "link", "add", a, "type", "veth", "peer", "name", b, "netns", b_ns,
    ]);
}

/// A short interface name unique in this process: `<prefix><pid mod 10^6><role><n>`.
/// Panics when that would pass the kernel's 15 bytes.
pub fn ifname(prefix: &str, role: char) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}{role}{n}", std::process::id() % 1_000_000);
    assert!(name.len() <= 15, "interface name {name} is too long");
    name
}

/// Poll `f` (every 50 ms) until it returns true or `bound` passes; whether it did.
pub fn eventually(bound: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Poll `f` until it returns true; panics naming `what` when `bound` passes first.
pub fn wait_for(what: &str, bound: Duration, f: impl FnMut() -> bool) {
    assert!(
        eventually(bound, f),
        "timed out after {bound:?} waiting for {what}"
    );
}

/// The frames of a pcap file as `tcpdump -n -r` (plus `extra` flags) prints them, one
/// line each; a file tcpdump cannot read fails the test.
pub fn pcap_lines(file: &Path, extra: &[&str]) -> Vec<String> {
    let out = Command::new("tcpdump")
        .args(extra)
        .args(["-n", "-r"])
        .arg(file)
        .output()
        .expect("tcpdump -r (is tcpdump installed?)");
    assert!(
        out.status.success(),
        "tcpdump cannot read {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Names of the live [`Netns`] guards of this process, so a repeated tag fails loudly
/// instead of deleting another test's namespace as a "leftover".
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// A named network namespace `<prefix><pid><tag>` with `lo` up, deleted on drop (also
/// when the test panics).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create with `ip netns add`. Needs root.
    pub fn new(prefix: &str, tag: &str) -> Netns {
        Netns::create_with(prefix, tag, |name| ip(&["netns", "add", name]))
    }

    /// One of a series: the tag is `n<seq>`, counted per process.
    pub fn numbered(prefix: &str) -> Netns {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        Netns::new(prefix, &format!("n{}", SEQ.fetch_add(1, Ordering::Relaxed)))
    }

    /// Create with `create` (the code under test, say) instead of `ip netns add`; it is
    /// given the name and must leave a namespace of that name behind.
    pub fn create_with(prefix: &str, tag: &str, create: impl FnOnce(&str)) -> Netns {
        require_root();
        let name = format!("{prefix}{}{tag}", std::process::id());
        let fresh = LIVE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone());
        assert!(
            fresh,
            "namespace {name} is in use by another test of this process: give each its own tag"
        );
        // From here on Drop removes it, whatever fails below.
        let ns = Netns { name };
        // A leftover from a crashed run whose pid was the same.
        if let Err(e) = del_netns(&ns.name) {
            panic!("removing the leftover namespace {}: {e}", ns.name);
        }
        create(&ns.name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Turn IPv6 off for every link (existing and future) in the namespace, so the
    /// kernel sends no chatter of its own (DAD, MLD, router solicitations).
    pub fn without_ipv6(self) -> Netns {
        self.exec(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        self.ip_out(args);
    }

    /// `ip -n NS ARGS`, which must succeed; its standard output.
    pub fn ip_out(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip_out(&all)
    }

    /// Run a command inside the namespace (`ip netns exec`); it must succeed.
    pub fn exec(&self, cmd: &[&str]) {
        self.exec_out(cmd);
    }

    /// Run a command inside the namespace that must succeed; its standard output.
    pub fn exec_out(&self, cmd: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(cmd);
        ip_out(&all)
    }

    /// A veth pair `a`-`b` inside the namespace, both ends up.
    pub fn veth(&self, a: &str, b: &str) {
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        for dev in [a, b] {
            self.ip(&["link", "set", dev, "up"]);
        }
    }

    /// Run `f` on a thread inside the namespace (see [`in_netns`]).
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        in_netns(&self.name, f)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Never panic in drop (we may already be unwinding); report and move on.
        if let Err(e) = del_netns(&self.name) {
            eprintln!("warning: deleting namespace {}: {e}", self.name);
        }
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.name);
    }
}

#[cfg(test)]
mod tests;
