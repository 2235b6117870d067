//! The underlay of multi-host tests: a namespace with a Linux bridge (10.200.0.0/16,
//! its gateway .254) that every "host"'s uplink plugs into.

use crate::{named_ns, run_ok, Daemon, Lab};

pub const UNDERLAY_GW: &str = "10.200.0.254";

/// The underlay: a namespace with a Linux bridge every host's uplink plugs into.
pub struct Underlay {
    pub ns: String,
}

impl Underlay {
    pub fn new(lab: &Lab) -> Underlay {
        let ns = named_ns(lab, "ul");
        run_ok(&["ip", "-n", &ns, "link", "add", "br0", "type", "bridge"]);
        run_ok(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{UNDERLAY_GW}/16"),
            "dev",
            "br0",
        ]);
        run_ok(&["ip", "-n", &ns, "link", "set", "br0", "up"]);
        Underlay { ns }
    }

    /// A veth from namespace `ns` into the bridge; returns its name in `ns`.
    pub fn plug(&self, lab: &Lab, ns: &str, tag: &str) -> String {
        let end = lab.name(tag);
        let port = lab.name(&format!("{tag}p"));
        crate::wire(ns, &end, &self.ns, &port);
        run_ok(&["ip", "-n", &self.ns, "link", "set", &port, "master", "br0"]);
        end
    }

    /// A vswitchd "host" with its uplink on the underlay at `ip`.
    pub fn host(&self, lab: &Lab, tag: &str, ip: &str) -> Daemon {
        self.host_with(lab, tag, ip, &[])
    }

    pub fn host_with(&self, lab: &Lab, tag: &str, ip: &str, extra: &[&str]) -> Daemon {
        let ns = named_ns(lab, tag);
        let up = self.plug(lab, &ns, &format!("{tag}u"));
        Self::start_host(lab, tag, &up, ip, extra)
    }

    /// Start the daemon of host `tag` whose uplink `up` is plugged in already.
    pub fn start_host(lab: &Lab, tag: &str, up: &str, ip: &str, extra: &[&str]) -> Daemon {
        let cidr = format!("{ip}/16");
        let mut args = vec![
            "--uplink",
            up,
            "--uplink-ip",
            &cidr,
            "--uplink-gw",
            UNDERLAY_GW,
        ];
        args.extend(extra);
        Daemon::start_named(lab, tag, &args)
    }
}
