//! The lab for end-to-end scenarios: a unique name prefix per test, a vswitchd of its
//! own (socket and state dir in a temp dir), and Drop guards that remove every
//! namespace the test made, also when it fails. The generic lab pieces (root check,
//! command runner, namespaces, code in a namespace, waits) are `netlab`'s.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod docker;
pub mod etcd;
pub mod podman;
pub mod underlay;

pub use netlab::{ns_exec, pcap_lines, require_root, run as run_ok, run_out, wait_for};

/// Every lab object's name starts with this, so `make clean-lab` can find leftovers.
pub const LAB_PREFIX: &str = "vt";

/// Where the workspace's binaries are (built by `make test` before the tests run).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("VSWITCH_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (`cargo build --bins`, as `make test` does)",
        p.display()
    );
    p
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One test's lab: names, a temp dir, and the namespaces to remove at the end.
pub struct Lab {
    pub prefix: String,
    pub dir: PathBuf,
}

impl Lab {
    pub fn new() -> Lab {
        require_root();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        // vt + 4 digits of pid + 2 of sequence: short enough for interface names.
        let prefix = format!(
            "{LAB_PREFIX}{:04}{:02}",
            std::process::id() % 10000,
            seq % 100
        );
        let dir = std::env::temp_dir().join(format!("vswitch-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create lab temp dir");
        Lab { prefix, dir }
    }

    /// A lab-unique name (sandbox, network).
    pub fn name(&self, s: &str) -> String {
        format!("{}{s}", self.prefix)
    }

    /// Remove every namespace carrying this lab's prefix.
    fn cleanup(&self) {
        if let Ok(entries) = std::fs::read_dir(netlab::NETNS_DIR) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n.starts_with(&self.prefix) {
                    if let Err(e) = netlab::del_netns(&n) {
                        eprintln!("warning: deleting namespace {n}: {e}");
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A container root filesystem at `root` made offline: Debian's busybox-static and
/// links for its applets in /bin, the usual mount points, and /www/index.html saying
/// `page` (for busybox httpd).
pub fn busybox_rootfs(root: &std::path::Path, page: &str) {
    let bin = root.join("bin");
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "run", "www"] {
        std::fs::create_dir_all(root.join(d)).expect("rootfs dirs");
    }
    std::fs::write(root.join("www/index.html"), page).expect("index.html");
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("/bin/busybox (Debian busybox-static: make deps)");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        // busybox itself is in the list: a link to itself would replace it.
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
    }
}

/// The namespace standing in for the daemon's host, created on first use.
pub fn host_ns(lab: &Lab) -> String {
    named_ns(lab, "h")
}

/// A lab namespace `<prefix><tag>` with `lo` up, created on first use (a second
/// "host" of a multi-host test, say).
pub fn named_ns(lab: &Lab, tag: &str) -> String {
    let ns = lab.name(tag);
    if !netlab::netns_exists(&ns) {
        netlab::add_netns(&ns);
    }
    ns
}

/// A wire between two namespaces: a veth with `near` in `near_ns` (left down, for the
/// daemon to take, say) and `far` in `far_ns`, up, TX checksum offload off (a wire
/// delivers finished checksums; a veth would hand over partial ones).
pub fn wire(near_ns: &str, near: &str, far_ns: &str, far: &str) {
    netlab::veth(near_ns, near, far_ns, far);
    run_ok(&["ip", "-n", far_ns, "link", "set", far, "up"]);
    run_ok(&[
        "ip", "netns", "exec", far_ns, "ethtool", "-K", far, "tx", "off",
    ]);
}

/// A lab namespace `<prefix><tag>` (created on first use) [`wire`]d to the daemon's
/// host namespace: `host_end` there, `far_end` in it. Returns the namespace's name.
pub fn wired_ns(lab: &Lab, tag: &str, host_end: &str, far_end: &str) -> String {
    let ns = named_ns(lab, tag);
    wire(&host_ns(lab), host_end, &ns, far_end);
    ns
}

/// The outside world behind the uplink: a namespace with 198.51.100.1/24 on a veth
/// whose other end (the uplink) sits in the daemon's namespace.
pub struct Outside {
    pub ns: String,
    pub uplink: String,
    pub ip: &'static str,
    pub uplink_ip: &'static str,
}

impl Outside {
    pub fn new(lab: &Lab) -> Outside {
        Outside::made(lab, false)
    }

    /// The same, but the outside's veth keeps TX checksum offload on, as a veth has by
    /// default: the uplink receives frames whose checksums are left for it to finish.
    pub fn with_offloads(lab: &Lab) -> Outside {
        Outside::made(lab, true)
    }

    fn made(lab: &Lab, offloads: bool) -> Outside {
        let uplink = lab.name("up");
        let peer = lab.name("o");
        let ns = wired_ns(lab, "out", &uplink, &peer);
        if offloads {
            run_ok(&[
                "ip", "netns", "exec", &ns, "ethtool", "-K", &peer, "tx", "on",
            ]);
        }
        let cidr = "198.51.100.1/24";
        run_ok(&["ip", "-n", &ns, "addr", "add", cidr, "dev", &peer]);
        Outside {
            ns,
            uplink,
            ip: "198.51.100.1",
            uplink_ip: "198.51.100.2",
        }
    }

    /// vswitchd flags attaching this uplink.
    pub fn daemon_args(&self) -> Vec<String> {
        [
            "--uplink",
            &self.uplink,
            "--uplink-ip",
            "198.51.100.2/24",
            "--uplink-gw",
            self.ip,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// A daemon of `lab` whose uplink is this one, started with `extra` flags as well.
    pub fn daemon(&self, lab: &Lab, extra: &[&str]) -> Daemon {
        let mut args = self.daemon_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Daemon::start(lab, &args)
    }
}

/// The start of a routed scenario: a daemon with an uplink to a fresh [`Outside`]
/// (and `extra` flags), and one user network `<prefix>net` on `subnet`.
pub fn uplinked_network(lab: &Lab, subnet: &str, extra: &[&str]) -> (Outside, Daemon, String) {
    let out = Outside::new(lab);
    let d = out.daemon(lab, extra);
    let net = d.network(lab, "net", &["--subnet", subnet]);
    (out, d, net)
}

/// The start of most scenarios: a daemon started with `extra` flags (no uplink), and
/// one user network `<prefix>net` created with `flags`.
pub fn daemon_with_network(lab: &Lab, extra: &[&str], flags: &[&str]) -> (Daemon, String) {
    let d = Daemon::start(lab, extra);
    let net = d.network(lab, "net", flags);
    (d, net)
}

/// The vswitchctl arguments of `network create -d DRIVER FLAGS NAME`, for
/// [`Daemon::ok`] or [`Daemon::refused`].
pub fn network_create<'a>(driver: &'a str, flags: &[&'a str], name: &'a str) -> Vec<&'a str> {
    let mut args = vec!["network", "create", "-d", driver];
    args.extend(flags);
    args.push(name);
    args
}

/// The string `key` of every row of a JSON array (`fdb`, `network ls`, ...), in order;
/// rows without it are left out.
pub fn column<'a>(rows: &'a Value, key: &str) -> Vec<&'a str> {
    rows.as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {rows}"))
        .iter()
        .filter_map(|r| r[key].as_str())
        .collect()
}

/// A background process in a namespace (a server), killed on drop; its output goes
/// to a file in the lab dir.
pub struct Bg {
    child: Child,
    pub log: PathBuf,
}

impl Bg {
    pub fn spawn(lab: &Lab, ns: &str, tag: &str, args: &[&str]) -> Bg {
        let log = lab.dir.join(format!("{tag}.log"));
        let f = std::fs::File::create(&log).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .expect("spawn background process");
        Bg { child, log }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait (bounded) until something in `ns` listens on TCP `port`.
pub fn wait_listening(ns: &str, port: u16) {
    let filter = format!("sport = :{port}");
    wait_for(
        &format!("a listener on TCP {port} in {ns}"),
        Duration::from_secs(15),
        || {
            let o = ns_exec(ns, &["ss", "-Hltn", &filter], Duration::from_secs(5));
            !String::from_utf8_lossy(&o.stdout).trim().is_empty()
        },
    );
}

/// The throughput (bits/s received) of an iperf3 client in `ns` to `target` over
/// `secs` seconds, or 0 and what went wrong.
pub fn iperf_seconds(ns: &str, target: &str, secs: u64) -> (f64, String) {
    let t = secs.to_string();
    let o = ns_exec(
        ns,
        &["iperf3", "-c", target, "-t", &t, "-J"],
        Duration::from_secs(secs + 30),
    );
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    let why = v["error"].as_str().unwrap_or("").to_string();
    (bps, why)
}

/// Bytes an iperf3 client in `ns` moved to `target` in 2 s (`reverse`: the server sent),
/// or what went wrong.
pub fn iperf_bytes(ns: &str, target: &str, reverse: bool) -> (u64, String) {
    let mut args = vec!["iperf3", "-c", target, "-t", "2", "-J"];
    if reverse {
        args.push("-R");
    }
    let mut last = String::new();
    for _ in 0..3 {
        let o = ns_exec(ns, &args, Duration::from_secs(30));
        last = String::from_utf8_lossy(&o.stdout).to_string();
        if o.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
    let bytes = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let why = v["error"]
        .as_str()
        .unwrap_or("no JSON from iperf3")
        .to_string();
    (bytes, why)
}

/// Fetch a URL from a namespace with python's urllib; the HTTP status, or the error.
pub fn http_get(ns: &str, url: &str) -> String {
    let code = format!(
        "import urllib.request,sys\ntry:\n print(urllib.request.urlopen('{url}', timeout=3).status)\nexcept Exception as e:\n print('error', e)"
    );
    let o = ns_exec(ns, &["python3", "-c", &code], Duration::from_secs(20));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Retry until a server in the background answers (bounded).
pub fn http_get_eventually(ns: &str, url: &str) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        last = http_get(ns, url);
        if last == "200" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

/// A UDP echo server on `port` in `ns`.
pub fn udp_echo_server(lab: &Lab, ns: &str, port: u16) -> Bg {
    let code = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',{port}))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(d,a)"
    );
    Bg::spawn(
        lab,
        ns,
        &format!("udpecho{port}"),
        &["python3", "-c", &code],
    )
}

/// Send one UDP datagram from a namespace and wait for the echo; the echoed text.
pub fn udp_roundtrip(ns: &str, ip: &str, port: u16, msg: &str) -> String {
    let code = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\nfor _ in range(10):\n try:\n  s.sendto(b'{msg}',('{ip}',{port}))\n  print(s.recvfrom(2048)[0].decode()); break\n except Exception: pass"
    );
    let o = ns_exec(ns, &["python3", "-c", &code], Duration::from_secs(20));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Write the header checksum of a 20-byte IPv4 header (crafted frames).
pub fn fill_ipv4_checksum(ip: &mut [u8]) {
    ip[10..12].fill(0);
    let mut sum: u32 = ip[..20]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// Run vswitchd in `lab`'s host namespace with `extra` flags, expecting it to refuse to
/// start: its stderr.
pub fn daemon_refuses(lab: &Lab, extra: &[&str]) -> String {
    let o = Command::new("timeout")
        .arg("20")
        .arg("nsenter")
        .arg(format!("--net=/run/netns/{}", host_ns(lab)))
        .arg("--")
        .arg(bin("vswitchd"))
        .arg("--socket")
        .arg(lab.dir.join("refused.sock"))
        .arg("--state-dir")
        .arg(lab.dir.join("refused-state"))
        .args(["--workers", "1"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run vswitchd");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        !o.status.success() && o.status.code() != Some(124),
        "vswitchd {extra:?} should have refused to start: {:?}\n{err}",
        o.status
    );
    err
}

/// `ping` from a namespace; true when every echo came back.
pub fn ping(ns: &str, dst: &str, count: u32) -> bool {
    let c = count.to_string();
    let out = ns_exec(
        ns,
        &["ping", "-n", "-q", "-c", &c, "-i", "0.2", "-W", "2", dst],
        Duration::from_secs(10),
    );
    out.status.success()
}

/// A ping whose every reply is awaited, with an explicit payload size and DF set.
pub fn ping_df(ns: &str, dst: &str, size: u32) -> bool {
    let s = size.to_string();
    let out = ns_exec(
        ns,
        &[
            "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "2", "-M", "do", "-s", &s, dst,
        ],
        Duration::from_secs(10),
    );
    out.status.success()
}

/// A vswitchd of the test's own, stopped (SIGTERM, then SIGKILL) on drop. It runs in
/// a namespace of its own (`host_ns`, the test's stand-in for the host), so the links it
/// makes (the switch's veth ends, an uplink) never appear in the real host namespace.
pub struct Daemon {
    pub host_ns: String,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
    /// Environment variables the daemon is started with, beside the test's.
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Start with `--workers 1` and the given extra flags (e.g. `--io af_packet`).
    pub fn start(lab: &Lab, extra: &[&str]) -> Daemon {
        Daemon::start_env(lab, extra, &[])
    }

    /// [`Daemon::start`] with environment variables of its own (`NOTIFY_SOCKET`, say).
    pub fn start_env(lab: &Lab, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let host_ns = host_ns(lab);
        let mut d = Daemon {
            host_ns,
            socket: lab.dir.join("vswitchd.sock"),
            state_dir: lab.dir.join("state"),
            log: lab.dir.join("vswitchd.log"),
            child: None,
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        d.spawn();
        d
    }

    /// Another daemon of the same lab (a second "host"): its own host namespace
    /// (`named_ns(lab, tag)`), socket, state dir and log, all named by `tag`.
    pub fn start_named(lab: &Lab, tag: &str, extra: &[&str]) -> Daemon {
        let host_ns = named_ns(lab, tag);
        let mut d = Daemon {
            host_ns,
            socket: lab.dir.join(format!("vswitchd-{tag}.sock")),
            state_dir: lab.dir.join(format!("state-{tag}")),
            log: lab.dir.join(format!("vswitchd-{tag}.log")),
            child: None,
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open daemon log");
        // nsenter joins only the network namespace: the daemon must share our mount
        // namespace so the sandboxes it mounts under /run/netns are visible to the test.
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.host_ns))
            .arg("--")
            .arg(bin("vswitchd"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["--workers", "1", "--log-level", "debug"])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn vswitchd");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.socket.exists() && self.ctl(&["network", "ls", "-q"]).status.success() {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "vswitchd exited during start ({st}); log:\n{}",
                        self.log_text()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "vswitchd did not come up within 15 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("daemon running")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stop with SIGTERM (or SIGKILL) and wait, bounded.
    pub fn stop(&mut self, kill: bool) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let sig = if kill { libc::SIGKILL } else { libc::SIGTERM };
        // SAFETY: signalling our own child process by pid.
        unsafe { libc::kill(child.id() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start again with the same socket and state dir.
    pub fn restart(&mut self, kill: bool) {
        self.stop(kill);
        self.spawn();
    }

    /// Start vswitchctl against this daemon in the background (a capture, say); its
    /// stderr is piped.
    pub fn spawn_ctl(&self, args: &[&str]) -> Child {
        Command::new(bin("vswitchctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vswitchctl")
    }

    /// Run vswitchctl against this daemon.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin("vswitchctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run vswitchctl")
    }

    /// vswitchctl that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "vswitchctl {args:?} failed ({}): {}\n--- daemon log tail ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log_text(), 30)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// vswitchctl that must be refused (exit 1); returns stderr.
    pub fn refused(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(1),
            "vswitchctl {args:?} should be refused, got {} / {err}",
            out.status
        );
        assert!(
            err.starts_with("Error: "),
            "error message should start with 'Error: ': {err}"
        );
        err
    }

    /// vswitchctl that must be refused with a message naming `why`; returns stderr.
    pub fn refused_with(&self, args: &[&str], why: &str) -> String {
        let err = self.refused(args);
        assert!(
            err.contains(why),
            "vswitchctl {args:?} should be refused for {why:?}: {err}"
        );
        err
    }

    /// vswitchctl --format json, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut full = vec!["--format", "json"];
        full.extend(args);
        let out = self.ok(&full);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("vswitchctl {args:?} printed invalid JSON ({e}): {out}"))
    }

    /// One sandbox on a network: returns its IPv4 address.
    pub fn sandbox(&self, name: &str, network: &str, extra: &[&str]) -> String {
        let mut args = vec!["sandbox", "create", "--network", network];
        args.extend(extra);
        args.push(name);
        self.ok(&args);
        self.ip_of(name, network)
    }

    /// A user network `<prefix><tag>` created with `flags`; returns its name.
    pub fn network(&self, lab: &Lab, tag: &str, flags: &[&str]) -> String {
        let name = lab.name(tag);
        let mut args = vec!["network", "create"];
        args.extend(flags);
        args.push(&name);
        self.ok(&args);
        name
    }

    /// Sandboxes `<prefix><tag>` on `network`, each created with `extra`: their names
    /// and addresses, in order.
    pub fn sandboxes<const N: usize>(
        &self,
        lab: &Lab,
        network: &str,
        extra: &[&str],
        tags: [&str; N],
    ) -> [(String, String); N] {
        tags.map(|tag| {
            let name = lab.name(tag);
            let ip = self.sandbox(&name, network, extra);
            (name, ip)
        })
    }

    /// A sandbox create that must be refused with a message naming `why` (the
    /// arguments as for [`Daemon::sandbox`]); returns the message.
    pub fn sandbox_refused(&self, name: &str, network: &str, extra: &[&str], why: &str) -> String {
        let mut args = vec!["sandbox", "create", "--network", network];
        args.extend(extra);
        args.push(name);
        self.refused_with(&args, why)
    }

    /// The `stats` row of a sandbox's (first) port.
    pub fn port_stats(&self, sandbox: &str) -> Value {
        self.json(&["stats", sandbox])["ports"][0].clone()
    }

    /// One counter of a sandbox's port (0 where the row has none).
    pub fn port_count(&self, sandbox: &str, key: &str) -> u64 {
        self.port_stats(sandbox)[key].as_u64().unwrap_or(0)
    }

    pub fn ip_of(&self, sandbox: &str, network: &str) -> String {
        let v = self.json(&["sandbox", "inspect", sandbox]);
        v["Networks"][network]["IPAddress"]
            .as_str()
            .unwrap_or_else(|| panic!("{sandbox} has no address on {network}: {v}"))
            .to_string()
    }

    /// The sandbox's IPv6 address on `network`, from `sandbox inspect`.
    pub fn ip6_of(&self, sandbox: &str, network: &str) -> String {
        let v = self.json(&["sandbox", "inspect", sandbox]);
        v["Networks"][network]["GlobalIPv6Address"]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| panic!("{sandbox} has no IPv6 address on {network}: {v}"))
            .to_string()
    }

    /// The CPU time (user+system, in seconds) the daemon has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read daemon stat");
        let after = &stat[stat.rfind(')').expect("stat format") + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks / hz
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(st) = self.stop(false) {
            if std::thread::panicking() {
                eprintln!(
                    "--- vswitchd log ({st}) ---\n{}",
                    tail(&self.log_text(), 60)
                );
            }
            let _ = st.signal();
        }
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A `tcpdump` capturing in a namespace into a pcap file until stopped.
pub struct Capture {
    child: Child,
    pub file: PathBuf,
}

impl Capture {
    pub fn start(lab: &Lab, ns: &str, iface: &str, tag: &str) -> Capture {
        let file = lab.dir.join(format!("{tag}.pcap"));
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "tcpdump",
                "-n",
                "-U",
                "--immediate-mode",
                "-s",
                "128",
                "-i",
                iface,
                "-w",
            ])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump");
        // tcpdump says "listening on" once the capture is live.
        let f = file.clone();
        wait_for("tcpdump to start", Duration::from_secs(10), || f.exists());
        std::thread::sleep(Duration::from_millis(300));
        Capture { child, file }
    }

    /// Stop and return the frames as `tcpdump -e -r` prints them (with link-level headers).
    pub fn stop(mut self) -> Vec<String> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        pcap_lines(&self.file, &["-e"])
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send raw Ethernet frames out of `iface` inside namespace `ns` (an AF_PACKET socket
/// opened from a thread that entered the namespace).
pub fn send_raw(
    ns: &str,
    iface: &str,
    frames: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> usize {
    let iface = iface.to_string();
    netlab::in_netns(ns, move || {
        // SAFETY: plain socket syscalls on values we own; the sockaddr is fully initialised.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(fd >= 0, "AF_PACKET socket");
            let cname = std::ffi::CString::new(iface).expect("iface name");
            let ifindex = libc::if_nametoindex(cname.as_ptr());
            assert!(ifindex > 0, "no interface in namespace");
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            sll.sll_halen = 6;
            let mut sent = 0;
            for fr in frames {
                loop {
                    let n = libc::sendto(
                        fd,
                        fr.as_ptr() as *const libc::c_void,
                        fr.len(),
                        0,
                        &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    );
                    if n >= 0 {
                        sent += 1;
                        break;
                    }
                    if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOBUFS) {
                        break;
                    }
                    std::thread::yield_now();
                }
            }
            libc::close(fd);
            sent
        }
    })
}
