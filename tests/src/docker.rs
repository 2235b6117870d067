//! A private dockerd for a test: Debian's docker.io (20.10) in the daemon's host
//! namespace, with its own config file, data root, exec root (and so its own
//! containerd), socket and pid file, touching nothing of the host's
//! (`--iptables=false --ip6tables=false --bridge=none`, vfs storage), and images
//! imported offline from a root filesystem made of Debian's busybox-static.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{run_ok, Lab};

/// The Docker client that matches the daemon (the one on PATH may be newer).
pub const DOCKER: &str = "/usr/bin/docker";

pub struct Dockerd {
    pub host: String,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    ns: String,
}

impl Dockerd {
    /// Start dockerd in namespace `ns` and wait until it answers.
    pub fn start(lab: &Lab, ns: &str) -> Dockerd {
        let dir = lab.dir.join("dk");
        std::fs::create_dir_all(&dir).expect("docker dir");
        std::fs::write(dir.join("daemon.json"), "{}").expect("daemon.json");
        let mut d = Dockerd {
            host: format!("unix://{}", dir.join("docker.sock").display()),
            log: lab.dir.join("dockerd.log"),
            dir,
            child: None,
            ns: ns.to_string(),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("dockerd log");
        let p = |s: &str| self.dir.join(s).to_string_lossy().into_owned();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .args(["--", "dockerd", "--config-file", &p("daemon.json")])
            .args(["--data-root", &p("data"), "--exec-root", &p("x")])
            .args(["-H", &self.host, "--pidfile", &p("docker.pid")])
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args(["--storage-driver", "vfs"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn dockerd (Debian docker.io: make deps)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not come up in 60 s:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_tail(&self) -> String {
        crate::tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 40)
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .args(["-H", &self.host])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// `docker ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed: {}\ndockerd log:\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `docker ARGS`, which must fail saying `why`; its stderr.
    pub fn refused(&self, args: &[&str], why: &str) -> String {
        let o = self.docker(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "docker {args:?} succeeded");
        assert!(
            err.contains(why),
            "docker {args:?}: {err:?} does not say {why:?}"
        );
        err
    }

    /// Import an image `tag` made offline: busybox-static and its applets, and
    /// /www/index.html saying `page`.
    pub fn import_busybox(&self, tag: &str, page: &str) {
        let root = self.dir.join("rootfs");
        crate::busybox_rootfs(&root, page);
        let tar = self.dir.join("rootfs.tar");
        run_ok(&[
            "tar",
            "-C",
            &root.to_string_lossy(),
            "-cf",
            &tar.to_string_lossy(),
            ".",
        ]);
        self.ok(&["import", &tar.to_string_lossy(), tag]);
    }

    /// Stop dockerd (containers are removed first, so it does not wait on them).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let ids = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        unmount_under(&self.dir);
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- dockerd log ---\n{}", self.log_tail());
        }
    }
}

/// Lazily unmount whatever dockerd left mounted under `dir` (namespace files,
/// overlays), deepest first, so the lab's directory can go.
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    let mut under: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in under {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
}
