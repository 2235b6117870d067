//! vswitchd: the control plane and the poll-mode data plane in one process.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use mgmt::controller::{Config, Controller};
use mgmt::server::{self, Server};
use mgmt::state::Store;
use switch::port::IoMode;
use switch::{Engine, EngineConfig, PollMode};

#[derive(Parser, Debug)]
#[command(
    name = "vswitchd",
    version,
    about = "userspace virtual switch and container network daemon"
)]
struct Args {
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
    /// adaptive (spin while traffic flows, sleep when idle) or busy.
    #[arg(long, default_value = "adaptive")]
    poll: PollMode,
    /// How veth ends are read: auto (AF_XDP, else AF_PACKET), af_xdp, af_packet.
    #[arg(long, default_value = "auto")]
    io: IoMode,
    /// The external interface (egress, published ports).
    #[arg(long)]
    uplink: Option<String>,
    #[arg(long)]
    uplink_ip: Option<String>,
    #[arg(long)]
    uplink_gw: Option<String>,
    /// Overlay tunnel source address.
    #[arg(long)]
    vtep_ip: Option<String>,
    /// Upstream resolvers (IP[:PORT]) for names the embedded DNS does not own.
    #[arg(long = "dns-upstream")]
    dns_upstream: Vec<String>,
    /// Shared state for multi-host overlays (etcd://HOST:PORT[,HOST:PORT]).
    #[arg(long)]
    cluster_store: Option<String>,
    /// Bound on learned MAC addresses per network.
    #[arg(long, default_value_t = 8192)]
    fdb_max: usize,
    /// Seconds before a learned MAC address is forgotten.
    #[arg(long, default_value_t = 300)]
    fdb_age: u64,
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

fn upstreams(specs: &[String]) -> Result<Vec<IpAddr>> {
    specs
        .iter()
        .map(|s| {
            let host = s
                .parse::<std::net::SocketAddr>()
                .map(|a| a.ip())
                .or_else(|_| s.parse::<IpAddr>());
            host.with_context(|| format!("invalid --dns-upstream {s:?}: expected IP or IP:PORT"))
        })
        .collect()
}

fn run(args: Args) -> Result<()> {
    for (flag, v) in [
        ("--uplink", &args.uplink),
        ("--uplink-ip", &args.uplink_ip),
        ("--uplink-gw", &args.uplink_gw),
        ("--vtep-ip", &args.vtep_ip),
        ("--cluster-store", &args.cluster_store),
    ] {
        if v.is_some() {
            bail!(
                "{flag} is not supported by this build yet (egress, NAT and overlays come later)"
            );
        }
    }
    let workers = workers(&args.workers)?;
    let dns_upstreams = upstreams(&args.dns_upstream)?;
    if !nix::unistd::Uid::effective().is_root() {
        bail!("vswitchd needs root (namespaces, links and AF_XDP/AF_PACKET sockets)");
    }
    // Before any thread exists, so every thread inherits the blocked mask.
    let mut signals = server::block_signals()?;
    let store = Store::open(&args.state_dir)?;
    let server = Server::bind(&args.socket)?;
    let engine = Engine::start(EngineConfig {
        workers,
        poll: args.poll,
        fdb_max: args.fdb_max,
        fdb_age: Duration::from_secs(args.fdb_age),
        pin: true,
    })?;
    let mut ctl = Controller::start(
        Config {
            io: args.io,
            dns_upstreams,
        },
        store,
        engine,
    )?;
    server.run(&mut ctl, &mut signals)?;
    drop(ctl);
    tracing::info!("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
