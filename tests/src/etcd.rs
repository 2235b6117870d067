//! A real etcd cluster for tests of a multi-host control plane: `n` members, each in a
//! lab namespace of its own, on a management LAN (a Linux bridge in the namespace
//! `<prefix>mg`, 10.210.0.0/24). Nothing of it touches the host's interfaces,
//! addresses or routes; `etcdctl` runs in the management namespace.
//!
//! Members are numbered from 1: member `i` is `m<i>` at 10.210.0.(10+i), client port
//! 2379, peer port 2380, data dir `<lab dir>/etcd<i>`, log `<lab dir>/etcd<i>.log`
//! (appended to across restarts).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{run_ok, tail, wire, Bg, Lab};

/// The management LAN's first three octets.
pub const MGMT_NET: &str = "10.210.0";
/// The management namespace's own address on the bridge.
pub const MGMT_GW: &str = "10.210.0.254";
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
/// How long a (re)start may take to become healthy before the test fails.
const HEALTHY_WITHIN: Duration = Duration::from_secs(15);
/// The bridge in the management namespace.
const BRIDGE: &str = "br0";

struct Member {
    ns: String,
    ip: String,
    data: PathBuf,
    log: PathBuf,
    proc: Option<Bg>,
}

struct Tls {
    ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// Per member: its server certificate and key.
    servers: Vec<(PathBuf, PathBuf)>,
}

/// A running etcd cluster of a lab; every member is killed (and reaped) on drop.
pub struct EtcdCluster {
    /// The management namespace (where [`EtcdCluster::ctl`] runs).
    pub mgmt_ns: String,
    token: String,
    members: Vec<Member>,
    tls: Option<Tls>,
}

impl EtcdCluster {
    /// A management LAN and `n` members on it, healthy when this returns.
    pub fn start(lab: &Lab, n: usize) -> EtcdCluster {
        EtcdCluster::launch(lab, n, false)
    }

    /// The same with TLS on the client port: clients must present a certificate signed
    /// by the lab's CA (see [`EtcdCluster::client_tls`]). Peers talk plain HTTP.
    pub fn start_tls(lab: &Lab, n: usize) -> EtcdCluster {
        EtcdCluster::launch(lab, n, true)
    }

    fn launch(lab: &Lab, n: usize, tls: bool) -> EtcdCluster {
        assert!((1..=200).contains(&n), "an etcd cluster of {n} members?");
        let mgmt_ns = fresh_ns(&lab.name("mg"));
        run_ok(&[
            "ip", "-n", &mgmt_ns, "link", "add", BRIDGE, "type", "bridge",
        ]);
        let gw = format!("{MGMT_GW}/24");
        run_ok(&["ip", "-n", &mgmt_ns, "addr", "add", &gw, "dev", BRIDGE]);
        run_ok(&["ip", "-n", &mgmt_ns, "link", "set", BRIDGE, "up"]);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let members = (1..=n)
            .map(|i| Member {
                ns: lab.name(&format!("etcd{i}")),
                ip: format!("{MGMT_NET}.{}", 10 + i),
                data: lab.dir.join(format!("etcd{i}")),
                log: lab.dir.join(format!("etcd{i}.log")),
                proc: None,
            })
            .collect();
        // From here on Drop kills whatever was started, also when a step below fails.
        let mut c = EtcdCluster {
            mgmt_ns,
            token: format!("etcd-{}-{nanos:x}", lab.prefix),
            members,
            tls: None,
        };
        if tls {
            c.tls = Some(make_certs(&lab.dir, &c.members));
        }
        for i in 1..=n {
            let (ns, ip) = (c.members[i - 1].ns.clone(), c.members[i - 1].ip.clone());
            fresh_ns(&ns);
            c.plug(lab, &ns, &ip);
        }
        for i in 1..=n {
            c.spawn(i, "new");
        }
        c.wait_healthy();
        c
    }

    /// Plug namespace `ns` into the management LAN at `ip` (a veth, `ip`/24, up);
    /// the interface's name in `ns` (`<prefix>g<last octet>`).
    pub fn plug(&self, lab: &Lab, ns: &str, ip: &str) -> String {
        let octet = ip.rsplit('.').next().unwrap_or(ip);
        let end = lab.name(&format!("g{octet}"));
        let port = format!("{end}p");
        assert!(port.len() <= 15, "interface name {port} is too long");
        wire(ns, &end, &self.mgmt_ns, &port);
        run_ok(&[
            "ip",
            "-n",
            &self.mgmt_ns,
            "link",
            "set",
            &port,
            "master",
            BRIDGE,
        ]);
        let cidr = format!("{ip}/24");
        run_ok(&["ip", "-n", ns, "addr", "add", &cidr, "dev", &end]);
        run_ok(&["ip", "-n", ns, "link", "set", &end, "up"]);
        end
    }

    /// The client endpoints as `HOST:PORT,...` (what `--cluster-store etcd://` takes).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}:{CLIENT_PORT}", m.ip))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URLs (`http://` or `https://`), comma-separated, as etcdctl takes them.
    pub fn urls(&self) -> String {
        self.urls_of(&(1..=self.members.len()).collect::<Vec<_>>())
    }

    fn urls_of(&self, which: &[usize]) -> String {
        which
            .iter()
            .map(|&i| self.client_url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn client_url(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{CLIENT_PORT}", self.member(i).ip)
    }

    /// The CA certificate, client certificate and client key (TLS clusters only).
    pub fn client_tls(&self) -> Option<(PathBuf, PathBuf, PathBuf)> {
        self.tls
            .as_ref()
            .map(|t| (t.ca.clone(), t.client_cert.clone(), t.client_key.clone()))
    }

    /// Member `i`'s address (10.210.0.(10+i)).
    pub fn ip(&self, i: usize) -> &str {
        &self.member(i).ip
    }

    /// Member `i`'s namespace.
    pub fn ns(&self, i: usize) -> &str {
        &self.member(i).ns
    }

    /// Member `i`'s log so far (every start of it).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.member(i).log).unwrap_or_default()
    }

    /// SIGKILL member `i` and reap it (a no-op when it is not running). When the members
    /// left still make a quorum, returns once they are healthy again (a new leader
    /// elected, if `i` led): a write right after a leader's death could otherwise be
    /// lost in flight and time out.
    pub fn kill(&mut self, i: usize) {
        self.member(i);
        // Bg's drop is SIGKILL and wait.
        drop(self.members[i - 1].proc.take());
        if self.running().len() > self.members.len() / 2 {
            self.wait_healthy();
        }
    }

    /// The member leading the cluster now, as the running members report it.
    pub fn leader(&self) -> Option<usize> {
        let running = self.running();
        let o = self.etcdctl(
            &running,
            &["endpoint", "status", "-w", "json"],
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        let rows = v.as_array()?;
        let leader = rows.iter().find_map(|r| r["Status"]["leader"].as_u64())?;
        let row = rows
            .iter()
            .find(|r| r["Status"]["header"]["member_id"].as_u64() == Some(leader))?;
        let url = row["Endpoint"].as_str()?;
        running.into_iter().find(|&i| self.client_url(i) == url)
    }

    /// The members running now.
    pub fn running(&self) -> Vec<usize> {
        (1..=self.members.len())
            .filter(|&i| self.members[i - 1].proc.is_some())
            .collect()
    }

    /// Start member `i` again on its data dir; returns once every running member is
    /// healthy.
    pub fn start_member(&mut self, i: usize) {
        assert!(
            self.member(i).proc.is_none(),
            "etcd member {i} is already running"
        );
        self.spawn(i, "existing");
        self.wait_healthy();
    }

    /// SIGKILL every member.
    pub fn stop_all(&mut self) {
        for m in &mut self.members {
            drop(m.proc.take());
        }
    }

    /// Start every stopped member again; returns once all are healthy.
    pub fn start_all(&mut self) {
        for i in 1..=self.members.len() {
            if self.members[i - 1].proc.is_none() {
                self.spawn(i, "existing");
            }
        }
        self.wait_healthy();
    }

    /// `etcdctl ARGS` (API 3) in the management namespace against every member (with the
    /// client certificate on a TLS cluster); its stdout. Panics with stderr on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let o = self.ctl_status(args);
        assert!(
            o.status.success(),
            "etcdctl {args:?} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The same, whatever the outcome. Dial and command timeouts are short (2 s, 5 s);
    /// flags in `args` override them.
    pub fn ctl_status(&self, args: &[&str]) -> Output {
        let all: Vec<usize> = (1..=self.members.len()).collect();
        self.etcdctl(&all, args, Duration::from_secs(2), Duration::from_secs(5))
    }

    fn etcdctl(&self, which: &[usize], args: &[&str], dial: Duration, cmd: Duration) -> Output {
        let mut c = Command::new("timeout");
        let bound = (dial + cmd).as_secs() + 10;
        c.args(["-k", "1", &bound.to_string()])
            .args(["ip", "netns", "exec", &self.mgmt_ns, "etcdctl"])
            .arg(format!("--endpoints={}", self.urls_of(which)))
            .arg(format!("--dial-timeout={}ms", dial.as_millis()))
            .arg(format!("--command-timeout={}ms", cmd.as_millis()));
        if let Some(t) = &self.tls {
            c.arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.client_cert)
                .arg("--key")
                .arg(&t.client_key);
        }
        // An ETCDCTL_* variable of the caller's environment would clash with the flags.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCDCTL_") {
                c.env_remove(k);
            }
        }
        c.env("ETCDCTL_API", "3")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run etcdctl (is etcd-client installed?)")
    }

    fn member(&self, i: usize) -> &Member {
        assert!(
            (1..=self.members.len()).contains(&i),
            "etcd members are numbered 1..={}, not {i}",
            self.members.len()
        );
        &self.members[i - 1]
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let m = self.member(i);
        let peer = |m: &Member| format!("http://{}:{PEER_PORT}", m.ip);
        let initial = self
            .members
            .iter()
            .enumerate()
            .map(|(j, m)| format!("m{}={}", j + 1, peer(m)))
            .collect::<Vec<_>>()
            .join(",");
        let client = self.client_url(i);
        let mut args: Vec<String> = [
            "--name",
            &format!("m{i}"),
            "--data-dir",
            &m.data.to_string_lossy(),
            "--listen-peer-urls",
            &peer(m),
            "--initial-advertise-peer-urls",
            &peer(m),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--initial-cluster",
            &initial,
            "--initial-cluster-token",
            &self.token,
            "--initial-cluster-state",
            state,
            "--heartbeat-interval",
            "100",
            "--election-timeout",
            "1000",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(t) = &self.tls {
            let (cert, key) = &t.servers[i - 1];
            for (flag, path) in [
                ("--cert-file", cert),
                ("--key-file", key),
                ("--trusted-ca-file", &t.ca),
            ] {
                args.push(flag.to_string());
                args.push(path.to_string_lossy().into_owned());
            }
            args.push("--client-cert-auth".to_string());
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("open etcd log");
        {
            use std::io::Write;
            let _ = writeln!(log, "--- test harness: etcd {}", args.join(" "));
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &m.ns, "etcd"])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        // An ETCD_* variable of the caller's environment would clash with the flags.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        if let Some(arch) = unsupported_arch() {
            cmd.env("ETCD_UNSUPPORTED_ARCH", arch);
        }
        // `ip netns exec` execs etcd in place, so this pid is etcd's. If the test process
        // dies without unwinding (killed by a timeout, say), the kernel kills the member
        // too: PR_SET_PDEATHSIG fires when the spawning thread exits, which for a test is
        // the end of the test (a cluster is used from the thread that started it).
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn etcd (is etcd-server installed?)");
        let log = m.log.clone();
        self.members[i - 1].proc = Some(Bg { child, log });
    }

    /// Wait (bounded) until every running member answers `endpoint health`; panics with
    /// the members' logs when one exits or the bound passes.
    fn wait_healthy(&mut self) {
        let running = self.running();
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            for &i in &running {
                let proc = self.members[i - 1].proc.as_mut().expect("running");
                if let Ok(Some(st)) = proc.child.try_wait() {
                    panic!(
                        "etcd member {i} exited during start ({st})\n{}",
                        self.logs()
                    );
                }
            }
            let o = self.etcdctl(
                &running,
                &["endpoint", "health"],
                Duration::from_secs(1),
                Duration::from_secs(2),
            );
            if o.status.success() {
                return;
            }
            let last = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(
                Instant::now() < deadline,
                "etcd members {running:?} not healthy within {HEALTHY_WITHIN:?}; last \
                 `etcdctl endpoint health`:\n{last}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tail of every member's log, for a failure message.
    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                format!("--- {} ---\n{}", m.log.display(), tail(&text, 40))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.stop_all();
    }
}

/// A namespace `name` with `lo` up, made afresh (a leftover of a crashed run of the
/// same pid is removed first).
fn fresh_ns(name: &str) -> String {
    if let Err(e) = netlab::del_netns(name) {
        panic!("removing the leftover namespace {name}: {e}");
    }
    netlab::add_netns(name);
    name.to_string()
}

/// etcd 3.4 refuses to run on architectures other than amd64, arm64 and ppc64le unless
/// told the Go name of the one it is on.
fn unsupported_arch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" | "aarch64" | "powerpc64" => None,
        "x86" => Some("386"),
        "s390x" => Some("s390x"),
        "arm" => Some("arm"),
        other => Some(other),
    }
}

/// A CA, a server certificate per member (SAN IP = its address) and a client
/// certificate, made with the `openssl` CLI in `<dir>/etcd-tls` (P-256 keys: fast).
fn make_certs(dir: &Path, members: &[Member]) -> Tls {
    let d = dir.join("etcd-tls");
    std::fs::create_dir_all(&d).expect("create the TLS dir");
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut ca = vec!["openssl", "req", "-x509", "-nodes", "-days", "2"];
    ca.extend(ec);
    let (ca_key, ca_crt) = (p("ca.key"), p("ca.crt"));
    ca.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca_crt,
        "-subj",
        "/CN=vswitch-lab-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run_ok(&ca);
    let mut serial = 1;
    let mut sign = |name: &str, ext: &str| -> (PathBuf, PathBuf) {
        serial += 1;
        let (key, csr, crt, extf) = (
            p(&format!("{name}.key")),
            p(&format!("{name}.csr")),
            p(&format!("{name}.crt")),
            p(&format!("{name}.ext")),
        );
        std::fs::write(&extf, ext).expect("write the extensions file");
        let mut req = vec!["openssl", "req", "-nodes"];
        req.extend(ec);
        let subj = format!("/CN={name}");
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        run_ok(&req);
        let serial = serial.to_string();
        run_ok(&[
            "openssl",
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &extf,
        ]);
        (PathBuf::from(crt), PathBuf::from(key))
    };
    // Servers also authenticate as clients (etcd's gateway dials its own client port).
    let servers = members
        .iter()
        .enumerate()
        .map(|(j, m)| {
            let ext = format!(
                "subjectAltName=IP:{}\nextendedKeyUsage=serverAuth,clientAuth\n",
                m.ip
            );
            sign(&format!("m{}", j + 1), &ext)
        })
        .collect();
    let (client_cert, client_key) = sign("client", "extendedKeyUsage=clientAuth\n");
    Tls {
        ca: PathBuf::from(ca_crt),
        client_cert,
        client_key,
        servers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Members `endpoint health` finds healthy (etcdctl 3.4 prints its plain report to
    /// stderr; the JSON one goes to stdout).
    fn healthy_count(c: &EtcdCluster) -> usize {
        let out = c.ctl(&["endpoint", "health", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("health JSON");
        v.as_array()
            .expect("health rows")
            .iter()
            .filter(|r| r["health"] == true)
            .count()
    }

    #[test]
    fn three_members_survive_a_member_restart() {
        let lab = Lab::new();
        let t = Instant::now();
        let mut c = EtcdCluster::start(&lab, 3);
        eprintln!("3 members healthy after {:?}", t.elapsed());
        assert_eq!(
            c.endpoints(),
            "10.210.0.11:2379,10.210.0.12:2379,10.210.0.13:2379"
        );
        assert!(c.client_tls().is_none());
        c.ctl(&["put", "k", "v1"]);
        assert_eq!(c.ctl(&["get", "k", "--print-value-only"]).trim(), "v1");

        // The worst case: the leader goes.
        let leader = c.leader().expect("a leader");
        let t = Instant::now();
        c.kill(leader);
        eprintln!(
            "leader {leader} killed, the rest healthy after {:?}",
            t.elapsed()
        );
        assert_eq!(c.running().len(), 2);
        c.ctl(&["put", "k", "v2"]);
        assert_eq!(c.ctl(&["get", "k", "--print-value-only"]).trim(), "v2");

        let t = Instant::now();
        c.start_member(leader);
        eprintln!("member {leader} back after {:?}", t.elapsed());
        assert_eq!(healthy_count(&c), 3);
        assert_eq!(c.ctl(&["member", "list"]).lines().count(), 3);

        // A host plugged into the LAN reaches the members directly.
        let host = crate::named_ns(&lab, "eh");
        let ifname = c.plug(&lab, &host, "10.210.0.1");
        assert!(ifname.starts_with(&lab.prefix));
        assert!(crate::ping(&host, c.ip(leader), 1));

        let t = Instant::now();
        c.stop_all();
        let down = c.ctl_status(&["--command-timeout=1s", "get", "k"]);
        assert!(!down.status.success());
        eprintln!(
            "a get failed on the stopped cluster after {:?}",
            t.elapsed()
        );
        c.start_all();
        eprintln!("whole cluster back after {:?}", t.elapsed());
        assert_eq!(c.ctl(&["get", "k", "--print-value-only"]).trim(), "v2");
    }

    #[test]
    fn tls_cluster_demands_a_client_cert() {
        let lab = Lab::new();
        let t = Instant::now();
        let c = EtcdCluster::start_tls(&lab, 1);
        eprintln!("TLS member healthy after {:?}", t.elapsed());
        let (ca, cert, key) = c.client_tls().expect("TLS paths");
        assert!(ca.exists() && cert.exists() && key.exists());
        assert_eq!(c.urls(), "https://10.210.0.11:2379");

        let bare = crate::ns_exec(
            &c.mgmt_ns,
            &[
                "etcdctl",
                "--endpoints",
                &c.urls(),
                "--cacert",
                &ca.to_string_lossy(),
                "--dial-timeout=1s",
                "--command-timeout=2s",
                "put",
                "k",
                "nocert",
            ],
            Duration::from_secs(10),
        );
        assert!(
            !bare.status.success(),
            "a put without the client cert went through: {}",
            String::from_utf8_lossy(&bare.stdout)
        );
        assert!(
            c.log(1).contains("client didn't provide a certificate"),
            "refused for another reason: {}",
            String::from_utf8_lossy(&bare.stderr)
        );

        c.ctl(&["put", "k", "withcert"]);
        assert_eq!(
            c.ctl(&["get", "k", "--print-value-only"]).trim(),
            "withcert"
        );
    }
}
