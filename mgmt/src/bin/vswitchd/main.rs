//! vswitchd: the control plane and the poll-mode data plane in one process.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser};
use mgmt::controller::{Config, Controller};
use mgmt::endpoint_trunk;
use mgmt::host_port::HostPort;
use mgmt::server::{self, Server};
use mgmt::state::Store;
use switch::port::IoMode;
use switch::{Engine, EngineConfig, PollMode};

mod config;
mod uplink;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "vswitchd",
    version,
    about = "userspace virtual switch and container network daemon"
)]
pub struct Args {
    /// The configuration file: every flag as a key (`uplink-ip = "..."`); flags given
    /// here override it. Default: /etc/vswitchd/vswitchd.toml when it exists.
    #[arg(long, env = "VSWITCHD_CONFIG")]
    config: Option<PathBuf>,
    /// Control socket path.
    #[arg(
        long,
        env = "VSWITCH_SOCKET",
        default_value = "/run/vswitchd/vswitchd.sock"
    )]
    socket: PathBuf,
    /// Where networks, endpoints and sandboxes are persisted.
    #[arg(long, default_value = "/var/lib/vswitchd")]
    state_dir: PathBuf,
    /// Poll-mode workers, one pinned per core: N, or auto (cores-1, at least 1).
    #[arg(long, default_value = "auto")]
    workers: String,
    /// Cores the workers are pinned to, like DPDK's -l or OVS's pmd-cpu-mask: a list
    /// such as 1 or 2,3 or 1-3. With --workers auto, one worker per core listed; with
    /// N workers, pinned in turn over the list. Default: every core but core 0.
    #[arg(long)]
    cpus: Option<String>,
    /// adaptive (spin while traffic flows, sleep when idle) or busy.
    #[arg(long, default_value = "adaptive")]
    poll: PollMode,
    /// How veth ends are read: auto (AF_XDP, else AF_PACKET), af_xdp, af_packet.
    #[arg(long, default_value = "auto")]
    io: IoMode,
    /// Forward known unicast between veth endpoints in the kernel (XDP) once both ends
    /// are learned: on, or off (every frame through the workers).
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    fast_path: String,
    /// The external interface (egress, published ports).
    #[arg(long)]
    uplink: Option<String>,
    /// How the uplink is attached: tc (a tcx program on it: routed TCP and overlay
    /// unicast stay in the kernel with GSO both ways, the rest reaches the router's
    /// worker through its trunk) or socket (the worker reads it with its own --io
    /// socket: AF_XDP with the XDP inbound-NAT program, or AF_PACKET; more frames per
    /// second for small packets, no GSO). tc falls back to socket without the tc data
    /// path.
    #[arg(long, default_value = "tc", value_parser = ["tc", "socket"])]
    uplink_mode: String,
    /// The switch's address on the uplink (CIDR). Leave it out on an interface that
    /// holds the host's address: the switch then shares that address with the host.
    #[arg(long)]
    uplink_ip: Option<String>,
    /// The uplink's next hop; on a shared uplink, the host's default route's gateway
    /// unless given.
    #[arg(long)]
    uplink_gw: Option<String>,
    /// The switch's IPv6 address on the uplink (CIDR): IPv6 egress is masqueraded to it
    /// (networks in routed mode keep their own addresses) and IPv6 published ports are
    /// reached on it.
    #[arg(long)]
    uplink_ip6: Option<String>,
    /// The uplink's IPv6 next hop (a link-local router address, or one of the prefix).
    #[arg(long)]
    uplink_gw6: Option<String>,
    /// Overlay tunnel source address.
    #[arg(long)]
    vtep_ip: Option<String>,
    /// Upstream resolvers (IP[:PORT]) for names the embedded DNS does not own.
    #[arg(long = "dns-upstream")]
    dns_upstream: Vec<String>,
    /// Shared state for multi-host overlays (etcd://HOST:PORT[,HOST:PORT]): overlay
    /// networks become global, addresses are handed out cluster-wide and endpoints
    /// are distributed to every host. The store is reached through this host's own
    /// stack (a management interface, or the host's address on the uplink).
    #[arg(long)]
    cluster_store: Option<String>,
    /// CA certificate (PEM) the store's server certificates are checked against; with
    /// it the store is spoken to over TLS (Docker's kv.cacertfile).
    #[arg(long)]
    cluster_store_ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to the store (kv.certfile).
    #[arg(long, requires = "cluster_store_key")]
    cluster_store_cert: Option<PathBuf>,
    /// The client certificate's key (PEM) (kv.keyfile).
    #[arg(long, requires = "cluster_store_cert")]
    cluster_store_key: Option<PathBuf>,
    /// This host's name in the cluster (unique per host); default the hostname.
    #[arg(long)]
    node_name: Option<String>,
    /// The VTEP address the other hosts send this host's tunnels to; default the
    /// --vtep-ip (else the uplink address). Tunnels from it are what the others accept.
    #[arg(long)]
    advertise: Option<std::net::Ipv4Addr>,
    /// Seconds this host's keys outlive it in the store (its lease's TTL; renewed every
    /// third of it): how long the others keep a dead host's endpoints.
    #[arg(long, default_value_t = 10)]
    cluster_ttl: i64,
    /// Where IPv6 networks created without an IPv6 --subnet take their /64 from (a
    /// CIDR of /64 or shorter); default: a unique local /48 (RFC 4193) chosen once and
    /// kept in the state dir.
    #[arg(long)]
    ipv6_pool: Option<ipnet::Ipv6Net>,
    /// Serve Docker as a remote network driver on this plugin socket (dockerd finds
    /// plugins in /run/docker/plugins; the file's name is the driver's: `docker network
    /// create -d vswitch`). Given alone: /run/docker/plugins/vswitch.sock. Off unless
    /// given.
    #[arg(long, num_args = 0..=1, default_missing_value = "/run/docker/plugins/vswitch.sock")]
    docker_plugin: Option<PathBuf>,
    /// Serve Prometheus metrics (`/metrics`) and `/healthz` over HTTP on this address
    /// (e.g. 127.0.0.1:9477). Off unless given.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Idle timeout of UDP NAT sessions, seconds (RFC 4787: at least 120).
    #[arg(long, default_value_t = 300)]
    nat_udp_timeout: u64,
    /// Idle timeout of established TCP NAT sessions, seconds (RFC 5382: at least 7440).
    #[arg(long, default_value_t = 7440)]
    nat_tcp_timeout: u64,
    /// Bound on NAT sessions; the least recently used is evicted beyond it.
    #[arg(long, default_value_t = 65536)]
    nat_max_sessions: usize,
    /// Bound on the SNAT sessions of one container address, so one sandbox cannot take
    /// the port range and the table from the others.
    #[arg(long, default_value_t = 8192)]
    nat_max_per_sandbox: usize,
    /// Bound on learned MAC addresses per network.
    #[arg(long, default_value_t = 8192)]
    fdb_max: usize,
    /// Seconds before a learned MAC address is forgotten.
    #[arg(long, default_value_t = 300)]
    fdb_age: u64,
    /// Bound on the MACs one port may have learned in a network, so one port's flood
    /// of source MACs leaves room for the others (the endpoint of a VM or a router
    /// container with port security off, say).
    #[arg(long, default_value_t = 1024)]
    fdb_max_per_port: usize,
    /// Storm control: broadcast, multicast and unknown-unicast frames one port may flood
    /// per second (0: no limit).
    #[arg(long, default_value_t = switch::storm::DEFAULT_FLOOD_RATE)]
    flood_rate: u32,
    /// The host's port on the switch (like docker0): the host reaches containers through
    /// it and containers reach the host; `none` for no host port.
    #[arg(long, default_value = mgmt::host_port::DEFAULT_NAME)]
    host_port: String,
    /// The host's address on the host port (CIDR, /30 or shorter: the switch takes
    /// another address of it).
    #[arg(long, default_value = mgmt::host_port::DEFAULT_ADDRESS)]
    host_port_ip: String,
    /// error, warn, info, debug or trace (env RUST_LOG overrides).
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn workers(spec: &str) -> Result<usize> {
    if spec == "auto" {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        return Ok(cores.saturating_sub(1).max(1));
    }
    match spec.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => bail!("invalid --workers {spec:?}: expected a number of at least 1, or auto"),
    }
}

/// `--cpus LIST`: core numbers and ranges (`1`, `2,3`, `0-1,3`), each below `online`,
/// in the order given, without repeats.
fn cpu_list(spec: &str, online: usize) -> Result<Vec<usize>> {
    let bad = || {
        anyhow::anyhow!(
            "invalid --cpus {spec:?}: expected core numbers and ranges such as 1, 2,3 or 0-1,3"
        )
    };
    let mut cores = Vec::new();
    for part in spec.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (part, part),
        };
        let (lo, hi): (usize, usize) = (
            lo.trim().parse().map_err(|_| bad())?,
            hi.trim().parse().map_err(|_| bad())?,
        );
        if lo > hi {
            return Err(bad());
        }
        for c in lo..=hi {
            if c >= online {
                bail!(
                    "--cpus names core {c}, but this machine has cores 0-{} only",
                    online - 1
                );
            }
            if cores.contains(&c) {
                bail!("--cpus names core {c} twice");
            }
            cores.push(c);
        }
    }
    Ok(cores)
}

/// `--dns-upstream IP[:PORT]`, port 53 unless given; at most `dns::MAX_UPSTREAMS`.
fn upstreams(specs: &[String]) -> Result<Vec<SocketAddr>> {
    if specs.len() > dns::MAX_UPSTREAMS {
        bail!(
            "{} --dns-upstream given; at most {} are used, drop the extra ones",
            specs.len(),
            dns::MAX_UPSTREAMS
        );
    }
    specs
        .iter()
        .map(|s| {
            let addr = s
                .parse::<SocketAddr>()
                .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
            addr.with_context(|| format!("invalid --dns-upstream {s:?}: expected IP or IP:PORT"))
        })
        .collect()
}

/// `--cluster-store` and its companions, checked before anything is set up.
fn cluster_settings(
    args: &Args,
    vtep: Option<std::net::Ipv4Addr>,
) -> Result<Option<mgmt::cluster::Settings>> {
    let Some(url) = &args.cluster_store else {
        for (set, flag) in [
            (args.cluster_store_ca.is_some(), "--cluster-store-ca"),
            (args.cluster_store_cert.is_some(), "--cluster-store-cert"),
            (args.node_name.is_some(), "--node-name"),
            (args.advertise.is_some(), "--advertise"),
        ] {
            if set {
                bail!("{flag} needs --cluster-store");
            }
        }
        return Ok(None);
    };
    let tls = (args.cluster_store_ca.is_some() || args.cluster_store_cert.is_some()).then(|| {
        mgmt::cluster::Tls {
            ca: args.cluster_store_ca.clone(),
            cert: args.cluster_store_cert.clone(),
            key: args.cluster_store_key.clone(),
        }
    });
    if let Some(t) = &tls {
        for p in [&t.ca, &t.cert, &t.key].into_iter().flatten() {
            std::fs::metadata(p)
                .with_context(|| format!("cluster store TLS file {}", p.display()))?;
        }
    }
    let endpoints = mgmt::cluster::parse_url(url, tls.is_some()).map_err(anyhow::Error::msg)?;
    if !(2..=3600).contains(&args.cluster_ttl) {
        bail!(
            "invalid --cluster-ttl {}: expected 2 to 3600 seconds",
            args.cluster_ttl
        );
    }
    let node = match &args.node_name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
    };
    mgmt::model::validate_name("node", &node)
        .map_err(|e| anyhow::anyhow!("--node-name: {}", e.message))?;
    let Some(vtep) = args.advertise.or(vtep) else {
        bail!("--cluster-store needs a tunnel address for the others to reach: an uplink (--uplink, --uplink-ip, --uplink-gw), --vtep-ip or --advertise");
    };
    Ok(Some(mgmt::cluster::Settings {
        url: url.clone(),
        endpoints,
        tls,
        node,
        vtep,
        ttl: args.cluster_ttl,
        timeout: Duration::from_secs(2),
    }))
}

/// What the daemon reloads on SIGHUP, and how.
struct Reloading {
    argv: Vec<std::ffi::OsString>,
    loaded: config::Loaded,
    set_log_level: mgmt::controller::SetLogLevel,
}

fn live(a: &Args) -> mgmt::controller::Live {
    mgmt::controller::Live {
        log_level: a.log_level.clone(),
        nat_udp_timeout: Duration::from_secs(a.nat_udp_timeout),
        nat_tcp_timeout: Duration::from_secs(a.nat_tcp_timeout),
        fdb_age: Duration::from_secs(a.fdb_age),
    }
}

/// The keys SIGHUP applies; the others take a restart.
const LIVE_KEYS: &[&str] = &["log_level", "nat_udp_timeout", "nat_tcp_timeout", "fdb_age"];

fn reloader(r: Reloading) -> Option<(mgmt::controller::Reloader, mgmt::controller::SetLogLevel)> {
    let path = r.loaded.path.clone()?;
    let argv = r.argv;
    // What the daemon runs with: keys that take a restart are compared with it at
    // every reload (they stay as they were), live ones by the controller.
    let running = r.loaded.matches;
    let cli = match Args::command().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(_) => return None,
    };
    let reread: mgmt::controller::Reloader = Box::new(move || {
        let (args, matches) = config::reread(&argv, &path, &cli)?;
        let refused = config::changed(&running, &matches)
            .into_iter()
            .filter(|id| !LIVE_KEYS.contains(&id.as_str()))
            .map(|id| id.replace('_', "-"))
            .collect();
        Ok(mgmt::controller::Reloaded {
            live: live(&args),
            refused,
        })
    });
    Some((reread, r.set_log_level))
}

fn run(args: Args, reloading: Reloading) -> Result<()> {
    if args.cluster_store.is_some() && args.uplink.is_none() {
        bail!("--cluster-store needs an uplink: global overlay networks tunnel through it (--uplink, --uplink-ip, --uplink-gw)");
    }
    cluster_settings(&args, None).or_else(|e| {
        // Only the tunnel address is settled later (it comes from the uplink).
        if e.to_string().contains("needs a tunnel address") {
            Ok(None)
        } else {
            Err(e)
        }
    })?;
    if let Some(p) = args.ipv6_pool {
        let first = p.network().segments()[0];
        if p.prefix_len() > 64 || first & 0xffc0 == 0xfe80 || first & 0xff00 == 0xff00 {
            bail!("--ipv6-pool {p}: expected a unicast, non-link-local IPv6 prefix of /64 or shorter (networks take /64s from it)");
        }
    }
    if args.vtep_ip.is_some() && args.uplink.is_none() {
        bail!("--vtep-ip needs an uplink: the tunnels leave by it (--uplink, --uplink-ip, --uplink-gw)");
    }
    let online = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cpus = args
        .cpus
        .as_deref()
        .map(|spec| cpu_list(spec, online))
        .transpose()?;
    let workers = match &cpus {
        Some(list) if args.workers == "auto" => list.len(),
        _ => workers(&args.workers)?,
    };
    let dns_upstreams = upstreams(&args.dns_upstream)?;
    if !nix::unistd::Uid::effective().is_root() {
        bail!("vswitchd needs root (namespaces, links and AF_XDP/AF_PACKET sockets)");
    }
    raise_nofile_limit();
    // Before any thread exists, so every thread inherits the blocked mask.
    let mut signals = server::block_signals()?;
    let store = Store::open(&args.state_dir)?;
    let server = Server::bind(&args.socket)?;
    let mut engine = Engine::start(EngineConfig {
        workers,
        poll: args.poll,
        fdb_max: args.fdb_max,
        fdb_age: Duration::from_secs(args.fdb_age),
        pin: true,
        cpus,
        dns_upstreams: dns_upstreams.clone(),
        fast_path: args.fast_path == "on",
        flood_rate: args.flood_rate,
        fdb_max_per_port: args.fdb_max_per_port,
    })?;
    if let Err(e) = endpoint_trunk::attach_all(&mut engine, args.io) {
        tracing::warn!(error = %mgmt::error::chain(&e), "no tc data path: sandbox veths get a socket each (no TCP offloads in sandboxes)");
    }
    mgmt::reserved_ports::undo_leftover(&args.state_dir)?;
    mgmt::driver::parents::load(&args.state_dir)
        .map_err(|e| anyhow::anyhow!("read the macvlan parents' saved settings: {e}"))?;
    // From here on a failed start puts the host back as it was: the reservation and
    // the host port undo themselves when dropped.
    let up = uplink::attach(&mut engine, &args)?;
    let host_port = attach_host_port(&mut engine, &args, up.as_ref())?;
    let cluster = cluster_settings(&args, up.as_ref().map(|a| a.vtep))?;
    if let Some(c) = &cluster {
        tracing::info!(store = %c.url, node = %c.node, vtep = %c.vtep, ttl = c.ttl, "cluster store configured (local networks work whether or not it answers)");
    }
    let mut ctl = Controller::start(
        Config {
            io: args.io,
            dns_upstreams,
            uplink_ip: up.as_ref().map(|a| a.ip),
            uplink_ip6: up.as_ref().and_then(|a| a.ip6),
            vtep_ip: up.as_ref().map(|a| a.vtep),
            host_gateway: host_port.as_ref().map(HostPort::host_ip),
            cluster,
            ipv6_pool: args.ipv6_pool.map(|p| p.trunc()),
            docker_plugin: args.docker_plugin.clone(),
            metrics_addr: args.metrics_addr,
        },
        store,
        engine,
        host_port,
    )?;
    if let Some((reread, set_log_level)) = reloader(reloading) {
        ctl.set_reloader(reread, set_log_level, live(&args));
    }
    // systemd (Type=notify): the socket serves and the state is restored.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let served = server.run(&mut ctl, &mut signals);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    ctl.park_endpoints();
    // The engine stops, then the host port goes and macvlan parents are given back.
    drop(ctl);
    drop(up);
    mgmt::driver::parents::restore_all();
    endpoint_trunk::remove_all(workers);
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// `--host-port NAME --host-port-ip CIDR` (or `--host-port none`).
fn attach_host_port(
    engine: &mut Engine,
    args: &Args,
    up: Option<&uplink::Attached>,
) -> Result<Option<HostPort>> {
    if args.host_port == "none" {
        return Ok(None);
    }
    let net: ipnet::Ipv4Net = args.host_port_ip.parse().with_context(|| {
        format!(
            "invalid --host-port-ip {:?}: expected CIDR like 169.254.77.1/30",
            args.host_port_ip
        )
    })?;
    // Containers reach the host at every address it has, the shared uplink's too.
    let mut host_ips: Vec<std::net::Ipv4Addr> = mgmt::link::Netlink::new()?
        .ipv4_addresses()?
        .iter()
        .map(|n| n.addr())
        .collect();
    if let Some(u) = up.filter(|u| !u.shared) {
        host_ips.retain(|a| *a != u.ip);
    }
    let h = HostPort::attach(engine, &args.host_port, net, args.io, &host_ips)?;
    Ok(Some(h))
}

/// Each endpoint holds a few fds (a BPF link, a TAP, or a socket): raise the soft limit
/// on open files as far as the hard limit allows, so a thousand sandboxes fit.
fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit"),
    }
}

/// The log filter for `--log-level LEVEL`.
fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    // The etcd client's gRPC stack logs every HTTP/2 frame at debug: only its warnings
    // are ours to show.
    tracing_subscriber::EnvFilter::try_new(format!(
        "{level},h2=warn,tonic=warn,tower=warn,hyper=warn,hyper_util=warn,rustls=warn"
    ))
    .map_err(|e| format!("invalid --log-level {level:?}: {e}"))
}

/// Logs to journald when systemd started us with the journal on stderr, else to
/// stderr; the filter can be set again (SIGHUP).
fn init_logging(level: &str) -> Result<mgmt::controller::SetLogLevel, String> {
    use tracing_subscriber::prelude::*;
    let filter = match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => log_filter(level)?,
    };
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let journal = std::env::var_os("JOURNAL_STREAM")
        .and_then(|_| tracing_journald::layer().ok())
        .map(|l| l.with_syslog_identifier("vswitchd".into()));
    let registry = tracing_subscriber::registry().with(filter);
    match journal {
        Some(j) => registry.with(j).init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .init(),
    }
    Ok(Box::new(move |level: &str| {
        handle.reload(log_filter(level)?).map_err(|e| e.to_string())
    }))
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Before the configuration file is read: packaging needs no daemon settings.
    if let Some(code) = clidoc::requested(&argv, Args::command, "8") {
        return code;
    }
    let loaded = match config::load(&argv) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vswitchd: {e}");
            return ExitCode::from(2);
        }
    };
    let set_log_level = match init_logging(&loaded.args.log_level) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vswitchd: {e}");
            return ExitCode::from(2);
        }
    };
    let args = loaded.args.clone();
    let reloading = Reloading {
        argv,
        loaded,
        set_log_level,
    };
    match run(args, reloading) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list("1", 4).unwrap(), vec![1]);
        assert_eq!(cpu_list("2,3", 4).unwrap(), vec![2, 3]);
        assert_eq!(cpu_list("0-1,3", 4).unwrap(), vec![0, 1, 3]);
        for (spec, says) in [
            ("", "invalid --cpus"),
            ("a", "invalid --cpus"),
            ("3-1", "invalid --cpus"),
            ("1,", "invalid --cpus"),
            ("4", "names core 4, but this machine has cores 0-3 only"),
            ("1,1", "names core 1 twice"),
        ] {
            let e = cpu_list(spec, 4).unwrap_err().to_string();
            assert!(e.contains(says), "{spec:?}: {e}");
        }
    }
}
