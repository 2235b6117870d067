//! vswitchctl: Docker-like management of vswitchd over its control socket. Every
//! command is one JSON-RPC request. Exit codes: 0 ok, 1 refused, 2 usage, 3 daemon
//! unreachable.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// NAT sessions (protocol, original and translated tuples, state, idle time).
    Conntrack {
        #[arg(long)]
        network: Option<String>,
    },
    /// Write the frames a port receives and sends to a pcap file (Ctrl-C stops).
    Capture {
        /// Switch-side interface name, SANDBOX, or SANDBOX:ethN.
        port: String,
        #[arg(short = 'w', value_name = "FILE.pcap")]
        file: PathBuf,
        /// Stop after N frames.
        #[arg(short = 'c', value_name = "N")]
        count: Option<u64>,
    },
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// `capture`: the daemon writes the file; we poll its progress and stop it on Ctrl-C.
fn capture(c: &Client, port: String, file: PathBuf, count: Option<u64>, json_out: bool) -> Res<()> {
    let file = std::path::absolute(&file)
        .map_err(|e| Failure::Usage(format!("invalid file {}: {e}", file.display())))?;
    // SAFETY: installing an async-signal-safe handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_sigint as *const () as libc::sighandler_t);
    }
    let req = api::CaptureStart {
        port,
        file: file.to_string_lossy().into_owned(),
        count,
    };
    let started: api::CaptureStarted = c.call("capture.start", &req)?;
    let id = api::CaptureId { id: started.id };
    while !INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        let st: api::CaptureState = c.call("capture.status", &id)?;
        if st.done {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let v: api::CaptureStopped = c.call("capture.stop", &id)?;
    if json_out {
        print_json(&json!({ "file": file, "frames": v.frames }));
    } else {
        eprintln!("{} frames captured to {}", v.frames, file.display());
    }
    Ok(())
}

#[derive(Subcommand)]
enum NetworkCmd {
    Create {
        #[arg(short = 'd', long, default_value = "bridge")]
        driver: String,
        #[arg(long)]
        subnet: Option<String>,
        #[arg(long)]
        gateway: Option<String>,
        #[arg(long)]
        ip_range: Option<String>,
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
        #[arg(long)]
        ip: Option<String>,
        #[arg(long)]
        alias: Vec<String>,
        #[arg(long)]
        mac: Option<String>,
        #[arg(long)]
        link: Option<String>,
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

#[derive(Args, Clone)]
struct CreateFlags {
    #[arg(long)]
    network: Option<String>,
    #[arg(long)]
    ip: Option<String>,
    #[arg(long)]
    alias: Vec<String>,
    #[arg(long)]
    mac: Option<String>,
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    #[arg(long)]
    expose: Vec<String>,
    #[arg(long)]
    link: Option<String>,
}

impl CreateFlags {
    fn request(&self, name: String) -> api::SandboxCreate {
        api::SandboxCreate {
            name,
            network: self.network.clone(),
            ip: self.ip.clone(),
            aliases: self.alias.clone(),
            mac: self.mac.clone(),
            publish: self.publish.clone(),
            publish_all: self.publish_all,
            expose: self.expose.clone(),
            link: self.link.clone(),
        }
    }
}

#[derive(Subcommand)]
enum SandboxCmd {
    Create {
        #[command(flatten)]
        flags: CreateFlags,
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

/// Why a command failed, mapped to the exit code.
enum Failure {
    Refused(String),
    Unreachable(String),
    Usage(String),
}

type Res<T> = Result<T, Failure>;

struct Client {
    socket: PathBuf,
}

impl Client {
    /// Call `method` and read its result as `T` (the types the daemon answers with).
    fn call<T: DeserializeOwned>(&self, method: &str, params: &impl Serialize) -> Res<T> {
        let unreachable = |e: std::io::Error| {
            Failure::Unreachable(format!(
                "cannot reach vswitchd at {}: {e}",
                self.socket.display()
            ))
        };
        let mut s = UnixStream::connect(&self.socket).map_err(unreachable)?;
        // Plumbing many links can take a while; a hung daemon should still not hang us forever.
        let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
        let req = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let mut line = req.to_string();
        line.push('\n');
        s.write_all(line.as_bytes()).map_err(unreachable)?;
        let mut reply = String::new();
        BufReader::new(&s)
            .read_line(&mut reply)
            .map_err(unreachable)?;
        if reply.is_empty() {
            return Err(Failure::Unreachable(
                "vswitchd closed the connection without answering".into(),
            ));
        }
        let v: Value = serde_json::from_str(&reply)
            .map_err(|e| Failure::Unreachable(format!("vswitchd sent an unreadable reply: {e}")))?;
        if let Some(err) = v.get("error") {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            return Err(Failure::Refused(msg.to_string()));
        }
        let result = v.get("result").cloned().unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| {
            Failure::Unreachable(format!(
                "vswitchd sent an unreadable result for {method}: {e}"
            ))
        })
    }
}

fn kv(list: &[String], what: &str) -> Res<BTreeMap<String, String>> {
    list.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Failure::Usage(format!(
                "invalid {what} {s:?}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

/// A result as JSON (through `Value`, so objects print with their keys sorted, as the
/// daemon sends them).
fn print_json<T: Serialize>(t: &T) {
    let v = serde_json::to_value(t).unwrap_or(Value::Null);
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

/// A value as its JSON text, strings without quotes (enums as the daemon names them).
fn text<T: Serialize>(t: &T) -> String {
    match serde_json::to_value(t) {
        Ok(Value::String(s)) => s,
        Ok(Value::Null) | Err(_) => String::new(),
        Ok(o) => o.to_string(),
    }
}

/// Left-aligned columns separated by three spaces, like docker's tables.
fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                s.push_str(&c);
            } else {
                s.push_str(&format!("{:w$}   ", c, w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(o) => o.to_string(),
    }
}

fn run(cli: Cli) -> Res<()> {
    let c = Client {
        socket: cli.socket.clone(),
    };
    let json_out = cli.format == Format::Json;
    match cli.cmd {
        Cmd::Network(n) => network(&c, n, json_out),
        Cmd::Sandbox(sb) => sandbox(&c, sb, json_out),
        Cmd::Run(r) => run_cmd(&c, r),
        Cmd::Capture { port, file, count } => capture(&c, port, file, count, json_out),
        Cmd::Port { sandbox } => {
            let v: api::SandboxDetail =
                c.call("sandbox.inspect", &api::NameOnly { name: sandbox })?;
            if json_out {
                print_json(&v.ports);
            } else {
                // Like `docker port`: 80/tcp -> 0.0.0.0:8080
                for (k, list) in &v.ports {
                    for b in list {
                        println!("{k} -> {}:{}", b.host_ip, b.host_port);
                    }
                }
            }
            Ok(())
        }
        Cmd::Conntrack { network } => {
            let v: Vec<nat::SessionRow> = c.call("conntrack.get", &api::Conntrack { network })?;
            if json_out {
                print_json(&v);
            } else {
                let rows = v
                    .iter()
                    .map(|r| {
                        let t = |f: &nat::FlowTuple| format!("{} -> {}", f.src, f.dst);
                        vec![
                            text(&r.proto),
                            text(&r.kind),
                            t(&r.original),
                            t(&r.translated),
                            text(&r.state),
                            r.idle_secs.to_string(),
                        ]
                    })
                    .collect();
                print_table(
                    &["PROTO", "KIND", "ORIGINAL", "TRANSLATED", "STATE", "IDLE"],
                    rows,
                );
            }
            Ok(())
        }
        Cmd::Fdb { network } => {
            let v: Vec<api::FdbRow> = c.call("fdb.get", &api::NameOnly { name: network })?;
            if json_out {
                print_json(&v);
            } else {
                let rows = v
                    .iter()
                    .map(|e| {
                        let kind = if e.is_static {
                            "static".into()
                        } else {
                            e.age.to_string()
                        };
                        vec![
                            e.mac.clone(),
                            e.port.clone(),
                            e.sandbox.clone().unwrap_or_default(),
                            e.vtep.clone().unwrap_or_default(),
                            kind,
                            if e.fast_path { "yes" } else { "" }.into(),
                        ]
                    })
                    .collect();
                print_table(
                    &["MAC", "PORT", "SANDBOX", "VTEP", "AGE", "FAST-PATH"],
                    rows,
                );
            }
            Ok(())
        }
        Cmd::Stats { port } => {
            let v: api::Stats = c.call("stats.get", &api::StatsGet { port })?;
            if json_out {
                print_json(&v);
                return Ok(());
            }
            let fast = |p: &api::PortStats, n: u64| {
                if p.fast_path {
                    n.to_string()
                } else {
                    "-".to_string()
                }
            };
            let rows = v
                .ports
                .iter()
                .map(|p| {
                    let c = &p.counters;
                    let drops: Vec<String> = c
                        .drops
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(k, n)| format!("{k}={n}"))
                        .collect();
                    vec![
                        p.name.clone(),
                        p.sandbox.clone().unwrap_or_default(),
                        p.network
                            .as_ref()
                            .map(|n| n.to_string())
                            .unwrap_or_default(),
                        text(&p.backend),
                        p.worker.to_string(),
                        c.rx_packets.to_string(),
                        c.rx_bytes.to_string(),
                        c.tx_packets.to_string(),
                        c.tx_bytes.to_string(),
                        // Of those, what the in-kernel fast path forwarded.
                        fast(p, c.fast_path_rx_packets),
                        fast(p, c.fast_path_tx_packets),
                        c.fdb_full.to_string(),
                        drops.join(","),
                    ]
                })
                .collect();
            print_table(
                &[
                    "PORT", "SANDBOX", "NETWORK", "BACKEND", "WORKER", "RX-PKTS", "RX-BYTES",
                    "TX-PKTS", "TX-BYTES", "FAST-RX", "FAST-TX", "FDB-FULL", "DROPS",
                ],
                rows,
            );
            println!();
            let rows = v
                .workers
                .iter()
                .map(|w| {
                    vec![
                        w.id.to_string(),
                        w.core.map(|c| c.to_string()).unwrap_or_default(),
                        w.ports.to_string(),
                        w.rx_packets.to_string(),
                        w.tx_packets.to_string(),
                        w.busy_polls.to_string(),
                        w.idle_polls.to_string(),
                        w.sleeps.to_string(),
                        w.cross_worker.to_string(),
                        w.drops.to_string(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "WORKER",
                    "CORE",
                    "PORTS",
                    "RX-PKTS",
                    "TX-PKTS",
                    "BUSY-POLLS",
                    "IDLE-POLLS",
                    "SLEEPS",
                    "CROSS-WORKER",
                    "DROPS",
                ],
                rows,
            );
            let r = &v.router;
            if r.is_object() {
                println!();
                println!(
                    "NAT: sessions={} in_kernel={} opened_in_kernel={} open_refused={}",
                    s(r, "sessions"),
                    s(r, "fast_path_sessions"),
                    s(&r["router"], "kernel_opened"),
                    s(&r["router"], "kernel_open_refused"),
                );
            }
            let o = &v.router["overlay"];
            if o.is_object() {
                let drops: Vec<String> = o["drops"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                    .map(|(k, n)| format!("{k}={n}"))
                    .collect();
                println!();
                println!(
                    "VTEP {}: encapsulated={} decapsulated={} too_big={} drops: {}",
                    s(&v.router, "vtep"),
                    s(o, "encapsulated"),
                    s(o, "decapsulated"),
                    s(&v.router["router"], "tunnel_too_big"),
                    if drops.is_empty() {
                        "none".to_string()
                    } else {
                        drops.join(",")
                    }
                );
            }
            Ok(())
        }
    }
}

fn network(c: &Client, n: NetworkCmd, json_out: bool) -> Res<()> {
    match n {
        NetworkCmd::Create {
            driver,
            subnet,
            gateway,
            ip_range,
            internal,
            attachable,
            opt,
            label,
            name,
        } => {
            let req = api::NetworkCreate {
                name,
                driver: Some(driver),
                subnet,
                gateway,
                ip_range,
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
            ip,
            alias,
            mac,
            link,
            network,
            sandbox,
        } => {
            let req = api::Connect {
                network,
                sandbox,
                ip,
                aliases: alias,
                mac,
                link,
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
            if json_out {
                print_json(&v);
            } else {
                let rows = v
                    .into_iter()
                    .map(|sb| vec![sb.id, sb.name, sb.networks.join(",")])
                    .collect();
                print_table(&["SANDBOX ID", "NAME", "NETWORKS"], rows);
            }
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

/// `run`: create the sandbox, then run the command inside its namespace the way
/// `ip netns exec` does (its own mount namespace with the sandbox's resolv.conf).
fn run_cmd(c: &Client, r: RunArgs) -> Res<()> {
    let name = r
        .name
        .clone()
        .unwrap_or_else(|| format!("sb-{:08x}", rand::random::<u32>()));
    let _: api::SandboxCreated = c.call("sandbox.create", &r.flags.request(name.clone()))?;
    let result = exec_in(&name, &r.cmd, r.detach);
    if r.rm && !r.detach {
        let _: Res<String> = c.call(
            "sandbox.rm",
            &api::SandboxRm {
                name: name.clone(),
                force: true,
            },
        );
    }
    match result {
        Ok(code) if r.detach => {
            println!("{name}");
            let _ = code;
            Ok(())
        }
        Ok(0) => Ok(()),
        Ok(code) => std::process::exit(code),
        Err(e) => Err(Failure::Refused(e)),
    }
}

fn exec_in(name: &str, cmd: &[String], detach: bool) -> Result<i32, String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let ns = std::fs::File::open(mgmt::netns::path(name))
        .map_err(|e| format!("open namespace of {name}: {e}"))?;
    let resolv = mgmt::netns::resolv_conf_path(name);
    let resolv_c =
        std::ffi::CString::new(resolv.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let has_resolv = resolv.exists();
    let ns_fd = ns.as_raw_fd();
    let mut command = std::process::Command::new(&cmd[0]);
    command.args(&cmd[1..]);
    // SAFETY: the closure runs in the forked child before exec and only makes raw
    // syscalls (setns, unshare, mount, setsid) on values prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let root = c"/";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if has_resolv {
                let target = c"/etc/resolv.conf";
                // Best effort, as ip netns exec: a missing /etc/resolv.conf target is not fatal.
                libc::mount(
                    resolv_c.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                );
            }
            if detach {
                libc::setsid();
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("run {:?} in sandbox {name}: {e}", cmd[0]))?;
    if detach {
        return Ok(0);
    }
    let status = child
        .wait()
        .map_err(|e| format!("wait for {:?}: {e}", cmd[0]))?;
    Ok(status
        .code()
        .unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)))
}

fn main() -> ExitCode {
    // Like other CLI tools: a closed pipe (`| head`) ends us quietly, not with a panic.
    // SAFETY: resetting a signal disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
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
