//! A private podman for a test: Debian's podman 4.3 on its CNI backend, every file it
//! writes under the lab's directory (its own containers.conf via CONTAINERS_CONF,
//! root, runroot, tmpdir, file locks, runc state through a wrapper, a cgroup parent of
//! the lab's), every call in one network namespace (so DEL, which podman's cleanup
//! process may run, happens where ADD did), and containers run offline from a
//! busybox-static root filesystem (`--rootfs`).
//!
//! What cannot be moved: libcni's result cache `/var/lib/cni/results/<net>-...`, which
//! a DEL removes; [`Podman`]'s drop removes the lab network's leftovers by name.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::Lab;

/// What the root filesystem's /www/index.html says.
pub const PAGE: &str = "hello from a podman container on vswitch";

pub struct Podman {
    dir: PathBuf,
    ns: String,
    /// The CNI network (conflist) name: leftovers in the result cache carry it.
    pub network: String,
    cgroup: String,
}

impl Podman {
    /// Podman for `lab`, run in namespace `ns`, with conflist `conflist` (named
    /// `network`) and the CNI plugins in `plugin_dir`.
    pub fn new(lab: &Lab, ns: &str, network: &str, conflist: &str, plugin_dir: &str) -> Podman {
        let dir = lab.dir.join("pm");
        for d in ["net.d", "root", "runroot", "tmp", "rootfs/bin", "runc"] {
            std::fs::create_dir_all(dir.join(d)).expect("podman dirs");
        }
        let p = |s: &str| dir.join(s).to_string_lossy().into_owned();
        crate::busybox_rootfs(&dir.join("rootfs"), PAGE);
        // runc keeps its state under the lab, not /run/runc (podman's cleanup process
        // is not given --runtime-flag, so a wrapper it is).
        let wrapper = dir.join("runc-wrapper");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec /usr/sbin/runc --root {} \"$@\"\n",
                p("runc")
            ),
        )
        .expect("runc wrapper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("chmod wrapper");
        let conf = format!(
            r#"[containers]
netns = "none"
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}"]
network_config_dir = "{netd}"
default_network = "{network}"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
tmp_dir = "{tmp}"
volume_path = "{root}/volumes"
enable_port_reservation = false
[engine.runtimes]
runc = ["{wrapper}"]
"#,
            plugins = plugin_dir,
            netd = p("net.d"),
            tmp = p("tmp"),
            root = p("root"),
            wrapper = wrapper.display(),
        );
        std::fs::write(dir.join("containers.conf"), conf).expect("containers.conf");
        std::fs::write(dir.join(format!("net.d/{network}.conflist")), conflist).expect("conflist");
        Podman {
            dir,
            ns: ns.to_string(),
            network: network.to_string(),
            cgroup: format!("/{}", lab.prefix),
        }
    }

    /// `podman ARGS` in the lab's namespace with the lab's settings.
    pub fn podman(&self, args: &[&str]) -> Output {
        let p = |s: &str| self.dir.join(s).to_string_lossy().into_owned();
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg("--")
            .arg("podman")
            .env("CONTAINERS_CONF", p("containers.conf"))
            .args(["--root", &p("root"), "--runroot", &p("runroot")])
            .args(["--tmpdir", &p("tmp"), "--storage-driver", "vfs"])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args([
                "--network-backend",
                "cni",
                "--network-config-dir",
                &p("net.d"),
            ])
            .args(["--runtime", "runc"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run podman (Debian podman: make deps)")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.podman(args);
        assert!(
            o.status.success(),
            "podman {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `podman run -d --name NAME --network NET [extra] --rootfs ROOTFS CMD...`
    /// (options before the root filesystem: what follows it is the command).
    pub fn run(&self, name: &str, extra: &[&str], cmd: &[&str]) -> String {
        let rootfs = self.dir.join("rootfs").to_string_lossy().into_owned();
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &self.network,
            "--cgroup-parent",
            &self.cgroup,
            "--stop-signal",
            "KILL",
        ];
        args.extend(extra);
        args.extend(["--rootfs", &rootfs]);
        args.extend(cmd);
        self.ok(&args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-af", "-t", "0"]);
        if let Ok(entries) = std::fs::read_dir("/var/lib/cni/results") {
            for e in entries.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}-", self.network))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir("/var/lib/cni/results");
        let _ = std::fs::remove_dir("/var/lib/cni");
        // The cgroup parent, deepest first.
        if let Ok(ctls) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in ctls.flatten() {
                let top = c.path().join(self.cgroup.trim_start_matches('/'));
                if top.is_dir() {
                    let _ = Command::new("find")
                        .arg(&top)
                        .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                        .status();
                }
            }
        }
    }
}
