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
    let id = c.call("capture.start", to_value(&req))?["id"]
        .as_u64()
        .unwrap_or(0);
    while !INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        let st = c.call("capture.status", json!({ "id": id }))?;
        if st["done"].as_bool() == Some(true) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let v = c.call("capture.stop", json!({ "id": id }))?;
    if json_out {
        print_json(&json!({ "file": file, "frames": v["frames"] }));
    } else {
        eprintln!("{} frames captured to {}", v["frames"], file.display());
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
    fn call(&self, method: &str, params: Value) -> Res<Value> {
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
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    }
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
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

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
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
            let v = c.call("sandbox.inspect", json!({ "name": sandbox }))?;
            let ports = v.get("Ports").cloned().unwrap_or(json!({}));
            if json_out {
                print_json(&ports);
            } else if let Some(m) = ports.as_object() {
                // Like `docker port`: 80/tcp -> 0.0.0.0:8080
                for (k, list) in m {
                    for b in list.as_array().into_iter().flatten() {
                        println!("{k} -> {}:{}", s(b, "HostIp"), s(b, "HostPort"));
                    }
                }
            }
            Ok(())
        }
        Cmd::Conntrack { network } => {
            let v = c.call("conntrack.get", to_value(&api::Conntrack { network }))?;
            if json_out {
                print_json(&v);
            } else {
                let rows = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        let t = |k: &str| format!("{} -> {}", s(&r[k], "src"), s(&r[k], "dst"));
                        vec![
                            s(r, "proto"),
                            s(r, "kind"),
                            t("original"),
                            t("translated"),
                            s(r, "state"),
                            s(r, "idle_secs"),
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
            let v = c.call("fdb.get", json!({ "name": network }))?;
            if json_out {
                print_json(&v);
            } else {
                let rows = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        let kind = if e["static"].as_bool() == Some(true) {
                            "static".into()
                        } else {
                            s(e, "age")
                        };
                        vec![
                            s(e, "mac"),
                            s(e, "port"),
                            s(e, "sandbox"),
                            s(e, "vtep"),
                            kind,
                            if e["fast_path"] == true { "yes" } else { "" }.into(),
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
            let v = c.call("stats.get", to_value(&api::StatsGet { port }))?;
            if json_out {
                print_json(&v);
                return Ok(());
            }
            let fast = |p: &Value, key: &str| {
                if p["fast_path"] == true {
                    s(p, key)
                } else {
                    "-".to_string()
                }
            };
            let rows = v["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let drops: Vec<String> = p["drops"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                        .map(|(k, n)| format!("{k}={n}"))
                        .collect();
                    vec![
                        s(p, "name"),
                        s(p, "sandbox"),
                        s(p, "network"),
                        s(p, "backend"),
                        s(p, "worker"),
                        s(p, "rx_packets"),
                        s(p, "rx_bytes"),
                        s(p, "tx_packets"),
                        s(p, "tx_bytes"),
                        // Of those, what the in-kernel fast path forwarded.
                        fast(p, "fast_path_rx_packets"),
                        fast(p, "fast_path_tx_packets"),
                        s(p, "fdb_full"),
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
            let rows = v["workers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|w| {
                    vec![
                        s(w, "id"),
                        s(w, "core"),
                        s(w, "ports"),
                        s(w, "rx_packets"),
                        s(w, "tx_packets"),
                        s(w, "busy_polls"),
                        s(w, "idle_polls"),
                        s(w, "sleeps"),
                        s(w, "cross_worker"),
                        s(w, "drops"),
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
            let r = &v["router"];
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
            let o = &v["router"]["overlay"];
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
                    s(&v["router"], "vtep"),
                    s(o, "encapsulated"),
                    s(o, "decapsulated"),
                    s(&v["router"]["router"], "tunnel_too_big"),
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
            let v = c.call("network.create", to_value(&req))?;
            if json_out {
                print_json(&v)
            } else {
                println!("{}", s(&v, "Id"))
            }
        }
        NetworkCmd::Ls { filter, quiet } => {
            let v = c.call("network.ls", to_value(&api::NetworkLs { filters: filter }))?;
            let nets = v.as_array().cloned().unwrap_or_default();
            if json_out {
                print_json(&v);
            } else if quiet {
                nets.iter().for_each(|n| println!("{}", s(n, "ID")));
            } else {
                let rows = nets
                    .iter()
                    .map(|n| vec![s(n, "ID"), s(n, "Name"), s(n, "Driver"), s(n, "Scope")])
                    .collect();
                print_table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], rows);
            }
        }
        NetworkCmd::Inspect { names } => {
            print_json(&c.call("network.inspect", to_value(&api::Names { names }))?)
        }
        NetworkCmd::Rm { names } => {
            let v = c.call("network.rm", to_value(&api::Names { names }))?;
            if json_out {
                print_json(&v);
            } else {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .for_each(|n| println!("{}", n.as_str().unwrap_or_default()));
            }
        }
        NetworkCmd::Prune => {
            let v = c.call("network.prune", json!({}))?;
            if json_out {
                print_json(&v);
            } else {
                let names = v["NetworksDeleted"].as_array().cloned().unwrap_or_default();
                if !names.is_empty() {
                    println!("Deleted Networks:");
                    names
                        .iter()
                        .for_each(|n| println!("{}", n.as_str().unwrap_or_default()));
                }
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
            c.call("network.connect", to_value(&req))?;
        }
        NetworkCmd::Disconnect {
            force,
            network,
            sandbox,
        } => {
            c.call(
                "network.disconnect",
                to_value(&api::Disconnect {
                    network,
                    sandbox,
                    force,
                }),
            )?;
        }
    }
    Ok(())
}

fn sandbox(c: &Client, cmd: SandboxCmd, json_out: bool) -> Res<()> {
    match cmd {
        SandboxCmd::Create { flags, name } => {
            let v = c.call("sandbox.create", to_value(&flags.request(name)))?;
            if json_out {
                print_json(&v)
            } else {
                println!("{}", s(&v, "Id"))
            }
        }
        SandboxCmd::Ls => {
            let v = c.call("sandbox.ls", json!({}))?;
            if json_out {
                print_json(&v);
            } else {
                let rows = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|sb| {
                        let nets: Vec<String> = sb["Networks"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|n| n.as_str().map(String::from))
                            .collect();
                        vec![s(sb, "ID"), s(sb, "Name"), nets.join(",")]
                    })
                    .collect();
                print_table(&["SANDBOX ID", "NAME", "NETWORKS"], rows);
            }
        }
        SandboxCmd::Inspect { name } => {
            print_json(&c.call("sandbox.inspect", json!({ "name": name }))?)
        }
        SandboxCmd::Rm { force, name } => {
            let v = c.call("sandbox.rm", to_value(&api::SandboxRm { name, force }))?;
            if !json_out {
                println!("{}", v.as_str().unwrap_or_default());
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
    c.call("sandbox.create", to_value(&r.flags.request(name.clone())))?;
    let result = exec_in(&name, &r.cmd, r.detach);
    if r.rm && !r.detach {
        let _ = c.call(
            "sandbox.rm",
            to_value(&api::SandboxRm {
                name: name.clone(),
                force: true,
            }),
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
