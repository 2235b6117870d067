//! vswitch-cni: a CNI plugin (SPEC 1.0.0 and 1.1.0: ADD, DEL, CHECK, VERSION, STATUS,
//! GC) that puts a runtime's container on a vswitch network. It talks to vswitchd over
//! its control socket; vswitchd makes the veth into CNI_NETNS, gives it its address,
//! routes and MAC, and publishes `portMappings`.
//!
//! Network configuration (besides CNI's `cniVersion`, `name`, `type`):
//!
//! ```json
//! { "network": "web",            // the vswitch network; default: the config's name
//!   "subnet": "10.88.0.0/24",    // create it (bridge) on first use with this subnet
//!   "gateway": "10.88.0.1",
//!   "socket": "/run/vswitchd/vswitchd.sock",
//!   "capabilities": { "portMappings": true } }
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use mgmt::api;
use serde::Deserialize;
use serde_json::{json, Value};

const SUPPORTED: &[&str] = &["1.0.0", "1.1.0"];
const DEFAULT_SOCKET: &str = "/run/vswitchd/vswitchd.sock";

/// CNI's well-known error codes (SPEC "Error").
const INCOMPATIBLE_VERSION: u32 = 1;
const INVALID_ENV: u32 = 4;
const IO_FAILURE: u32 = 5;
const DECODE_FAILURE: u32 = 6;
const INVALID_CONFIG: u32 = 7;
const TRY_AGAIN_LATER: u32 = 11;
const NOT_AVAILABLE: u32 = 50;
/// vswitchd refused the request (its message says why).
const REFUSED: u32 = 100;

struct Error {
    code: u32,
    msg: String,
    details: String,
}

fn err(code: u32, msg: impl Into<String>) -> Error {
    Error {
        code,
        msg: msg.into(),
        details: String::new(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Config {
    cni_version: String,
    name: String,
    network: Option<String>,
    subnet: Option<String>,
    gateway: Option<String>,
    socket: Option<String>,
    runtime_config: RuntimeConfig,
    /// GC's list (SPEC 1.1 names it `cni.dev/valid-attachments`; its text once said
    /// `cni.dev/attachments`).
    #[serde(rename = "cni.dev/valid-attachments", alias = "cni.dev/attachments")]
    valid_attachments: Vec<Attachment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RuntimeConfig {
    port_mappings: Vec<api::CniPortMapping>,
    mac: Option<String>,
    ips: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Attachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn need(key: &str) -> Result<String, Error> {
    env(key).ok_or_else(|| err(INVALID_ENV, format!("{key} is not set")))
}

/// `CNI_ARGS`: `K=V;K=V`.
fn cni_args() -> BTreeMap<String, String> {
    env("CNI_ARGS")
        .unwrap_or_default()
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One request to vswitchd; unreachable is "try again later", a refusal its message.
fn call(socket: &str, method: &str, params: Value) -> Result<Value, Error> {
    let down = |e: std::io::Error| {
        err(
            TRY_AGAIN_LATER,
            format!("cannot reach vswitchd at {socket}: {e}"),
        )
    };
    let mut s = UnixStream::connect(socket).map_err(down)?;
    // A hung daemon must not hang the runtime: ADD plumbs links, but not for minutes.
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(down)?;
    let mut line =
        json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(down)?;
    let mut reply = String::new();
    BufReader::new(&s).read_line(&mut reply).map_err(down)?;
    let v: Value = serde_json::from_str(&reply).map_err(|e| {
        err(
            TRY_AGAIN_LATER,
            format!("vswitchd sent no readable answer ({e})"),
        )
    })?;
    if let Some(e) = v.get("error") {
        let msg = e["message"].as_str().unwrap_or("refused").to_string();
        return Err(Error {
            code: REFUSED,
            msg,
            details: format!("vswitchd {method}"),
        });
    }
    Ok(v.get("result").cloned().unwrap_or(Value::Null))
}

fn run(command: &str) -> Result<Option<Value>, Error> {
    if command == "VERSION" {
        return Ok(Some(json!({
            "cniVersion": SUPPORTED[SUPPORTED.len() - 1],
            "supportedVersions": SUPPORTED,
        })));
    }
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).map_err(|e| {
        err(
            IO_FAILURE,
            format!("reading the network configuration: {e}"),
        )
    })?;
    let cfg: Config = serde_json::from_slice(&input).map_err(|e| {
        err(
            DECODE_FAILURE,
            format!("the network configuration is not valid JSON: {e}"),
        )
    })?;
    if !SUPPORTED.contains(&cfg.cni_version.as_str()) {
        return Err(err(
            INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {:?} is not supported (supported: {})",
                cfg.cni_version,
                SUPPORTED.join(", ")
            ),
        ));
    }
    let network = cfg.network.clone().unwrap_or_else(|| cfg.name.clone());
    if network.is_empty() {
        return Err(err(
            INVALID_CONFIG,
            "the network configuration names no network (\"name\" or \"network\")",
        ));
    }
    let socket = cfg.socket.clone().unwrap_or_else(|| DEFAULT_SOCKET.into());
    let key = || -> Result<Value, Error> {
        Ok(json!({ "container_id": need("CNI_CONTAINERID")?, "ifname": need("CNI_IFNAME")? }))
    };
    match command {
        "ADD" => {
            let args = cni_args();
            let mut ip = None;
            let mut ip6 = None;
            for a in cfg
                .runtime_config
                .ips
                .iter()
                .chain(args.get("IP"))
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
            {
                if a.contains(':') {
                    ip6 = Some(a);
                } else {
                    ip = Some(a);
                }
            }
            let req = api::CniAdd {
                container_id: need("CNI_CONTAINERID")?,
                netns: need("CNI_NETNS")?,
                ifname: need("CNI_IFNAME")?,
                network,
                subnet: cfg.subnet.clone(),
                gateway: cfg.gateway.clone(),
                ip,
                ip6,
                mac: cfg.runtime_config.mac.clone().or(args.get("MAC").cloned()),
                name: args.get("K8S_POD_NAME").cloned(),
                port_mappings: cfg.runtime_config.port_mappings,
            };
            let params = serde_json::to_value(req).map_err(|e| err(REFUSED, e.to_string()))?;
            let mut result = call(&socket, "cni.add", params)?;
            result["cniVersion"] = Value::String(cfg.cni_version.clone());
            Ok(Some(result))
        }
        "DEL" => {
            call(&socket, "cni.del", key()?)?;
            Ok(None)
        }
        "CHECK" => {
            call(&socket, "cni.check", key()?)?;
            Ok(None)
        }
        "STATUS" => {
            call(&socket, "daemon.ping", json!({})).map_err(|e| Error {
                code: NOT_AVAILABLE,
                ..e
            })?;
            Ok(None)
        }
        "GC" => {
            let valid: Vec<Value> = cfg
                .valid_attachments
                .iter()
                .map(|a| json!({ "container_id": a.container_id, "ifname": a.ifname }))
                .collect();
            call(
                &socket,
                "cni.gc",
                json!({ "network": network, "valid": valid }),
            )?;
            Ok(None)
        }
        other => Err(err(
            INVALID_ENV,
            format!("unknown CNI_COMMAND {other:?} (ADD, DEL, CHECK, VERSION, STATUS, GC)"),
        )),
    }
}

fn main() -> ExitCode {
    let Some(command) = env("CNI_COMMAND") else {
        eprintln!("vswitch-cni is a CNI plugin: a container runtime runs it with CNI_COMMAND set (ADD, DEL, CHECK, VERSION, STATUS, GC)");
        return ExitCode::from(1);
    };
    match run(&command) {
        Ok(Some(out)) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            let version = "1.0.0";
            println!(
                "{}",
                json!({ "cniVersion": version, "code": e.code, "msg": e.msg, "details": e.details })
            );
            ExitCode::from(1)
        }
    }
}
