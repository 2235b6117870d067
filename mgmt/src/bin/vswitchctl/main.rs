//! vswitchctl: Docker-like management of vswitchd over its control socket. Every
//! command is one JSON-RPC request. Exit codes: 0 ok, 1 refused, 2 usage, 3 daemon
//! unreachable.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use mgmt::api;

#[derive(Parser)]
#[command(
    name = "vswitchctl",
    version,
    about = "manage vswitchd networks and sandboxes"
)]
struct Cli {
    #[arg(
        long,
        global = true,
        env = "VSWITCH_SOCKET",
        default_value = "/run/vswitchd/vswitchd.sock"
    )]
    socket: PathBuf,
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage sandboxes (named network namespaces).
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// Create a sandbox and run a command inside it.
    Run(RunArgs),
    /// Published ports of a sandbox.
    Port { sandbox: String },
    /// Learned and static MAC entries of a network.
    Fdb { network: String },
    /// Per-port and per-worker counters.
    Stats { port: Option<String> },
    /// The cluster store: its health, the hosts (VTEP, lease), the global networks.
    #[command(alias = "node")]
    Cluster,
    /// NAT sessions (protocol, original and translated tuples, state, idle time).
    Conntrack {
        #[arg(long)]
        network: Option<String>,
    },
    /// Write the frames a port receives and sends to a pcap file (Ctrl-C stops).
    Capture {
        /// Switch-side interface name, SANDBOX, or SANDBOX:ethN.
        port: String,
        /// A new file (the daemon refuses an existing path) in a directory that exists.
        #[arg(short = 'w', value_name = "FILE.pcap")]
        file: PathBuf,
        /// Stop after N frames.
        #[arg(short = 'c', value_name = "N")]
        count: Option<u64>,
        /// Stop before the file grows past SIZE bytes (K, M, G: KiB, MiB, GiB; the
        /// daemon's default is 256M).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_bytes: Option<u64>,
    },
    /// Print the shell completion script for SHELL (`source <(vswitchctl completion
    /// bash)`).
    Completion { shell: clidoc::Shell },
}

/// A byte count, with an optional K/M/G (binary) suffix.
fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&s[..s.len() - 1], 10),
        Some(b'M') => (&s[..s.len() - 1], 20),
        Some(b'G') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s} is not a size (bytes, or a number with K, M or G)"))
}

mod client;
mod exec;
mod show;

use client::{kv, Client, Failure, Res};
use show::{print_json, print_list, print_table};

#[derive(Subcommand)]
enum NetworkCmd {
    Create {
        #[arg(short = 'd', long, default_value = "bridge")]
        driver: String,
        /// The subnet; given twice (one IPv4, one IPv6) for a dual-stack network.
        #[arg(long)]
        subnet: Vec<String>,
        /// The gateway of the subnet of its family (at most one per family).
        #[arg(long)]
        gateway: Vec<String>,
        /// The dynamic range of the subnet of its family (at most one per family).
        #[arg(long)]
        ip_range: Vec<String>,
        /// Dual-stack: an IPv6 pool beside the IPv4 one (the IPv6 --subnet, else a /64
        /// of the daemon's IPv6 pool).
        #[arg(long)]
        ipv6: bool,
        /// --ipv4=false: IPv6 only (with --ipv6), as Docker 28 takes it.
        #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
        ipv4: Option<bool>,
        #[arg(long)]
        internal: bool,
        #[arg(long)]
        attachable: bool,
        #[arg(short = 'o', long = "opt")]
        opt: Vec<String>,
        #[arg(long)]
        label: Vec<String>,
        name: String,
    },
    #[command(alias = "list")]
    Ls {
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    Prune,
    Connect {
        #[command(flatten)]
        endpoint: EndpointFlags,
        network: String,
        sandbox: String,
    },
    Disconnect {
        #[arg(short = 'f', long)]
        force: bool,
        network: String,
        sandbox: String,
    },
}

// How a sandbox's endpoint on a network is made (`network connect`, `sandbox create`,
// `run`). Not a doc comment: clap would make it the about of those commands.
#[derive(Args, Clone)]
struct EndpointFlags {
    #[arg(long)]
    ip: Option<String>,
    /// The IPv6 address, on a network with IPv6.
    #[arg(long)]
    ip6: Option<String>,
    #[arg(long)]
    alias: Vec<String>,
    #[arg(long)]
    mac: Option<String>,
    #[arg(long)]
    link: Option<String>,
    /// Port security: on (the default: the endpoint sends only from its own MAC and
    /// address) or off (a VM, a router container).
    #[arg(long, value_parser = ["on", "off"])]
    port_security: Option<String>,
    /// An extra IPv4 or IPv6 address or MAC the endpoint may send from (repeatable).
    #[arg(long = "allow-address")]
    allow_address: Vec<String>,
}

impl EndpointFlags {
    fn params(self) -> api::EndpointParams {
        api::EndpointParams {
            ip: self.ip,
            ip6: self.ip6,
            aliases: self.alias,
            mac: self.mac,
            link: self.link,
            port_security: self.port_security.map(|s| s == "on"),
            allowed_addresses: self.allow_address,
        }
    }
}

#[derive(Args, Clone)]
struct CreateFlags {
    #[arg(long)]
    network: Option<String>,
    #[command(flatten)]
    endpoint: EndpointFlags,
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    #[arg(long)]
    expose: Vec<String>,
    /// NAME:IP for the sandbox's /etc/hosts; IP `host-gateway` is the host's address.
    #[arg(long = "add-host")]
    add_host: Vec<String>,
}

impl CreateFlags {
    fn request(&self, name: String) -> api::SandboxCreate {
        api::SandboxCreate {
            name,
            network: self.network.clone(),
            endpoint: self.endpoint.clone().params(),
            publish: self.publish.clone(),
            publish_all: self.publish_all,
            expose: self.expose.clone(),
            add_host: self.add_host.clone(),
        }
    }
}

#[derive(Subcommand)]
enum SandboxCmd {
    Create {
        #[command(flatten)]
        flags: Box<CreateFlags>,
        name: String,
    },
    #[command(alias = "list")]
    Ls,
    Inspect {
        name: String,
    },
    #[command(alias = "remove")]
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        name: String,
    },
}

#[derive(Args)]
struct RunArgs {
    #[arg(long)]
    name: Option<String>,
    /// Remove the sandbox when the command exits.
    #[arg(long)]
    rm: bool,
    /// Start the command in the background and print the sandbox name.
    #[arg(short = 'd', long)]
    detach: bool,
    #[command(flatten)]
    flags: CreateFlags,
    #[arg(last = true, required = true)]
    cmd: Vec<String>,
}

fn run(cli: Cli) -> Res<()> {
    let c = Client {
        socket: cli.socket.clone(),
    };
    let json_out = cli.format == Format::Json;
    match cli.cmd {
        Cmd::Network(n) => network(&c, n, json_out),
        Cmd::Sandbox(sb) => sandbox(&c, sb, json_out),
        Cmd::Run(r) => exec::run_cmd(&c, r),
        Cmd::Capture {
            port,
            file,
            count,
            max_bytes,
        } => exec::capture(&c, port, file, count, max_bytes, json_out),
        Cmd::Port { sandbox } => show::port(&c, sandbox, json_out),
        Cmd::Conntrack { network } => show::conntrack(&c, network, json_out),
        Cmd::Fdb { network } => show::fdb(&c, network, json_out),
        Cmd::Cluster => show::cluster(&c, json_out),
        Cmd::Stats { port } => show::stats(&c, port, json_out),
        Cmd::Completion { shell } => {
            let mut script = Vec::new();
            clidoc::completions(shell, Cli::command(), &mut script);
            print!("{}", String::from_utf8_lossy(&script));
            Ok(())
        }
    }
}

/// Docker's way of taking both families with one flag: the IPv4 value and the IPv6
/// one (told apart by a ':'), at most one of each.
fn by_family(flag: &str, values: Vec<String>) -> Res<(Option<String>, Option<String>)> {
    let (mut v4, mut v6) = (None, None);
    for v in values {
        let slot = if v.contains(':') { &mut v6 } else { &mut v4 };
        if let Some(first) = slot.replace(v.clone()) {
            return Err(Failure::Usage(format!(
                "{flag} given twice for one address family ({first} and {v}): one IPv4 and one IPv6 at most"
            )));
        }
    }
    Ok((v4, v6))
}

fn network(c: &Client, n: NetworkCmd, json_out: bool) -> Res<()> {
    match n {
        NetworkCmd::Create {
            driver,
            subnet,
            gateway,
            ip_range,
            ipv6,
            ipv4,
            internal,
            attachable,
            opt,
            label,
            name,
        } => {
            let (subnet, subnet6) = by_family("--subnet", subnet)?;
            let (gateway, gateway6) = by_family("--gateway", gateway)?;
            let (ip_range, ip_range6) = by_family("--ip-range", ip_range)?;
            let req = api::NetworkCreate {
                id: None,
                name,
                driver: Some(driver),
                subnet,
                gateway,
                ip_range,
                ipv6,
                ipv4,
                subnet6,
                gateway6,
                ip_range6,
                internal,
                attachable,
                options: kv(&opt, "option")?,
                labels: kv(&label, "label")?,
            };
            let v: api::NetworkCreated = c.call("network.create", &req)?;
            if json_out {
                print_json(&v)
            } else {
                println!("{}", v.id)
            }
        }
        NetworkCmd::Ls { filter, quiet } => {
            let nets: Vec<api::NetworkSummary> =
                c.call("network.ls", &api::NetworkLs { filters: filter })?;
            if json_out {
                print_json(&nets);
            } else if quiet {
                nets.iter().for_each(|n| println!("{}", n.id));
            } else {
                let rows = nets
                    .into_iter()
                    .map(|n| vec![n.id, n.name, n.driver, n.scope])
                    .collect();
                print_table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], rows);
            }
        }
        NetworkCmd::Inspect { names } => {
            let nets: Vec<api::NetworkDetail> = c.call("network.inspect", &api::Names { names })?;
            print_json(&nets)
        }
        NetworkCmd::Rm { names } => {
            let removed: Vec<String> = c.call("network.rm", &api::Names { names })?;
            if json_out {
                print_json(&removed);
            } else {
                removed.iter().for_each(|n| println!("{n}"));
            }
        }
        NetworkCmd::Prune => {
            let v: api::Pruned = c.call("network.prune", &api::NetworkLs::default())?;
            if json_out {
                print_json(&v);
            } else if !v.networks_deleted.is_empty() {
                println!("Deleted Networks:");
                v.networks_deleted.iter().for_each(|n| println!("{n}"));
            }
        }
        NetworkCmd::Connect {
            endpoint,
            network,
            sandbox,
        } => {
            let req = api::Connect {
                network,
                sandbox,
                endpoint: endpoint.params(),
            };
            let _: api::Empty = c.call("network.connect", &req)?;
        }
        NetworkCmd::Disconnect {
            force,
            network,
            sandbox,
        } => {
            let _: api::Empty = c.call(
                "network.disconnect",
                &api::Disconnect {
                    network,
                    sandbox,
                    force,
                },
            )?;
        }
    }
    Ok(())
}

fn sandbox(c: &Client, cmd: SandboxCmd, json_out: bool) -> Res<()> {
    match cmd {
        SandboxCmd::Create { flags, name } => {
            let v: api::SandboxCreated = c.call("sandbox.create", &flags.request(name))?;
            if json_out {
                print_json(&v)
            } else {
                println!("{}", v.id)
            }
        }
        SandboxCmd::Ls => {
            let v: Vec<api::SandboxSummary> = c.call("sandbox.ls", &api::Empty {})?;
            print_list(&v, json_out, &["SANDBOX ID", "NAME", "NETWORKS"], |sb| {
                vec![sb.id.clone(), sb.name.clone(), sb.networks.join(",")]
            });
        }
        SandboxCmd::Inspect { name } => {
            let v: api::SandboxDetail = c.call("sandbox.inspect", &api::NameOnly { name })?;
            print_json(&v)
        }
        SandboxCmd::Rm { force, name } => {
            let removed: String = c.call("sandbox.rm", &api::SandboxRm { name, force })?;
            if !json_out {
                println!("{removed}");
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    // Like other CLI tools: a closed pipe (`| head`) ends us quietly, not with a panic.
    // SAFETY: resetting a signal disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = clidoc::requested(&argv, Cli::command, "1") {
        return code;
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(m)) => {
            eprintln!("Error: {m}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(m)) => {
            eprintln!("Error: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Unreachable(m)) => {
            eprintln!("Error: {m}");
            ExitCode::from(3)
        }
    }
}
