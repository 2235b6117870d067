//! JSON-RPC 2.0 over the control socket: one request object per line in, one response
//! per line out. `decode` turns a line into a typed call (pure: every shape check
//! happens here, before the controller is touched); `execute` runs it.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::api;
use crate::controller::Controller;
use crate::error::{ApiError, ApiResult, Code};

/// Requests larger than this are refused (and the connection closed, since the rest of
/// the line cannot be framed).
pub const MAX_REQUEST: usize = 1 << 20;

/// A request whose method and parameters were fully decoded.
#[derive(Debug)]
pub enum Call {
    NetworkCreate(api::NetworkCreate),
    NetworkLs(api::NetworkLs),
    NetworkInspect(api::Names),
    NetworkRm(api::Names),
    NetworkPrune,
    NetworkConnect(api::Connect),
    NetworkDisconnect(api::Disconnect),
    SandboxCreate(api::SandboxCreate),
    SandboxLs,
    SandboxInspect(api::NameOnly),
    SandboxRm(api::SandboxRm),
    FdbGet(api::NameOnly),
    StatsGet(api::StatsGet),
    Conntrack(api::Conntrack),
    CaptureStart(api::CaptureStart),
    CaptureStatus(api::CaptureId),
    CaptureStop(api::CaptureId),
    ClusterInfo,
    CniAdd(api::CniAdd),
    CniDel(api::CniKey),
    CniCheck(api::CniKey),
    CniGc(api::CniGc),
    Ping,
}

#[derive(Debug)]
pub struct Request {
    /// None for a notification: executed, never answered.
    pub id: Option<Value>,
    pub call: Call,
    /// The method as named (`network.create`).
    pub method: &'static str,
}

/// A request that could not be decoded: the id to answer with (null if unknown) and why.
#[derive(Debug)]
pub struct Rejected {
    pub id: Value,
    pub error: ApiError,
}

/// Handle one request line; None for a notification.
/// Methods that only read: not logged one line each (the changes are).
const READ_ONLY: &[&str] = &[
    "network.ls",
    "network.inspect",
    "sandbox.ls",
    "sandbox.inspect",
    "fdb.get",
    "stats.get",
    "conntrack.get",
    "capture.status",
    "cluster.info",
    "daemon.ping",
    "cni.check",
];

/// Answer one request line from client `who` (`pid=.. uid=..`), counting it by method
/// and result (`vswitch_control_requests_total`) and logging each change.
pub fn handle_line(ctl: &mut Controller, line: &[u8], who: &str) -> Option<Value> {
    match decode(line) {
        // An invalid request is answered even without an id (JSON-RPC 2.0, section 5).
        Err(r) => {
            ctl.count_request("invalid", r.error.code.name());
            Some(error_reply(r.id, &r.error))
        }
        Ok(Request { id, call, method }) => {
            let result = execute(ctl, call);
            let outcome = result.as_ref().map_or_else(|e| e.code.name(), |_| "ok");
            ctl.count_request(method, outcome);
            if !READ_ONLY.contains(&method) {
                match &result {
                    Ok(_) => tracing::info!(who, method, result = "ok", "control change"),
                    Err(e) => {
                        tracing::info!(who, method, result = outcome, error = %e.message, "control change refused")
                    }
                }
            }
            let id = id?;
            Some(match result {
                Ok(v) => json!({ "jsonrpc": "2.0", "id": id, "result": v }),
                Err(e) => error_reply(id, &e),
            })
        }
    }
}

pub fn error_reply(id: Value, e: &ApiError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": e.code as i32, "message": e.message } })
}

/// Parse and validate a request line. Never panics, whatever the bytes.
pub fn decode(line: &[u8]) -> Result<Request, Rejected> {
    let reject = |id: Value, code, msg: String| Rejected {
        id,
        error: ApiError::new(code, msg),
    };
    let req: Value = serde_json::from_slice(line)
        .map_err(|e| reject(Value::Null, Code::ParseError, format!("parse error: {e}")))?;
    let Some(obj) = req.as_object() else {
        return Err(reject(
            Value::Null,
            Code::InvalidRequest,
            "invalid request: expected a JSON object".into(),
        ));
    };
    let id = obj.get("id").cloned();
    let reply_id = id.clone().unwrap_or(Value::Null);
    if let Some(i) = &id {
        if !(i.is_string() || i.is_number() || i.is_null()) {
            return Err(reject(
                Value::Null,
                Code::InvalidRequest,
                "invalid request: \"id\" must be a string, number or null".into(),
            ));
        }
    }
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(reject(
            reply_id,
            Code::InvalidRequest,
            "invalid request: \"jsonrpc\" must be \"2.0\"".into(),
        ));
    }
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        return Err(reject(
            reply_id,
            Code::InvalidRequest,
            "invalid request: \"method\" must be a string".into(),
        ));
    };
    let p = match obj.get("params") {
        None | Some(Value::Null) => json!({}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => {
            return Err(reject(
                reply_id,
                Code::InvalidParams,
                "invalid params: \"params\" must be an object".into(),
            ))
        }
    };
    let call = call(method, p).map_err(|error| Rejected {
        id: reply_id.clone(),
        error,
    })?;
    let method = METHODS
        .iter()
        .copied()
        .find(|m| *m == method)
        .unwrap_or("unknown");
    Ok(Request { id, call, method })
}

/// `call`, for a method that has no use for its parameters but still refuses ones
/// that are not `T`'s.
fn unused_params<T: DeserializeOwned>(method: &str, p: Value, call: Call) -> ApiResult<Call> {
    params::<T>(method, p).map(|_| call)
}

fn params<T: DeserializeOwned>(method: &str, p: Value) -> ApiResult<T> {
    serde_json::from_value(p).map_err(|e| {
        ApiError::new(
            Code::InvalidParams,
            format!("invalid params for {method}: {e}"),
        )
    })
}

/// Every method served (what `Request::method` names).
const METHODS: &[&str] = &[
    "network.create",
    "network.ls",
    "network.inspect",
    "network.rm",
    "network.prune",
    "network.connect",
    "network.disconnect",
    "sandbox.create",
    "sandbox.ls",
    "sandbox.inspect",
    "sandbox.rm",
    "fdb.get",
    "stats.get",
    "conntrack.get",
    "capture.start",
    "capture.status",
    "capture.stop",
    "cluster.info",
    "cni.add",
    "cni.del",
    "cni.check",
    "cni.gc",
    "daemon.ping",
];

/// Methods mirror the CLI's commands.
fn call(method: &str, p: Value) -> ApiResult<Call> {
    Ok(match method {
        "network.create" => Call::NetworkCreate(params(method, p)?),
        "network.ls" => Call::NetworkLs(params(method, p)?),
        "network.inspect" => Call::NetworkInspect(params(method, p)?),
        "network.rm" => Call::NetworkRm(params(method, p)?),
        "network.prune" => unused_params::<api::NetworkLs>(method, p, Call::NetworkPrune)?,
        "network.connect" => Call::NetworkConnect(params(method, p)?),
        "network.disconnect" => Call::NetworkDisconnect(params(method, p)?),
        "sandbox.create" => Call::SandboxCreate(params(method, p)?),
        "sandbox.ls" => unused_params::<api::Empty>(method, p, Call::SandboxLs)?,
        "sandbox.inspect" => Call::SandboxInspect(params(method, p)?),
        "sandbox.rm" => Call::SandboxRm(params(method, p)?),
        "fdb.get" => Call::FdbGet(params(method, p)?),
        "stats.get" => Call::StatsGet(params(method, p)?),
        "conntrack.get" => Call::Conntrack(params(method, p)?),
        "capture.start" => Call::CaptureStart(params(method, p)?),
        "capture.status" => Call::CaptureStatus(params(method, p)?),
        "capture.stop" => Call::CaptureStop(params(method, p)?),
        "cluster.info" => unused_params::<api::Empty>(method, p, Call::ClusterInfo)?,
        "cni.add" => Call::CniAdd(params(method, p)?),
        "cni.del" => Call::CniDel(params(method, p)?),
        "cni.check" => Call::CniCheck(params(method, p)?),
        "cni.gc" => Call::CniGc(params(method, p)?),
        "daemon.ping" => unused_params::<api::Empty>(method, p, Call::Ping)?,
        other => {
            return Err(ApiError::new(
                Code::MethodNotFound,
                format!("method not found: {other}"),
            ))
        }
    })
}

fn execute(ctl: &mut Controller, call: Call) -> ApiResult<Value> {
    match call {
        Call::NetworkCreate(p) => result(ctl.network_create(p)),
        Call::NetworkLs(p) => result(ctl.network_ls(p)),
        Call::NetworkInspect(p) => result(ctl.network_inspect(p)),
        Call::NetworkRm(p) => result(ctl.network_rm(p)),
        Call::NetworkPrune => result(ctl.network_prune()),
        Call::NetworkConnect(p) => result(ctl.network_connect(p)),
        Call::NetworkDisconnect(p) => result(ctl.network_disconnect(p)),
        Call::SandboxCreate(p) => result(ctl.sandbox_create(p)),
        Call::SandboxLs => result(ctl.sandbox_ls()),
        Call::SandboxInspect(p) => result(ctl.sandbox_inspect(p)),
        Call::SandboxRm(p) => result(ctl.sandbox_rm(p)),
        Call::FdbGet(p) => result(ctl.fdb(p)),
        Call::StatsGet(p) => result(ctl.stats(p)),
        Call::Conntrack(p) => result(ctl.conntrack(p)),
        Call::CaptureStart(p) => result(ctl.capture_start(p)),
        Call::CaptureStatus(p) => result(ctl.capture_status(p)),
        Call::CaptureStop(p) => result(ctl.capture_stop(p)),
        Call::ClusterInfo => result(ctl.cluster_info()),
        Call::CniAdd(p) => result(ctl.cni_add(p)),
        Call::CniDel(p) => result(ctl.cni_del(p)),
        Call::CniCheck(p) => result(ctl.cni_check(p)),
        Call::CniGc(p) => result(ctl.cni_gc(p)),
        Call::Ping => result(Ok(api::Ping {
            version: env!("CARGO_PKG_VERSION").into(),
        })),
    }
}

/// A method's typed result as the reply's `result` (objects with their keys sorted, as
/// `serde_json::Value` keeps them).
fn result<T: Serialize>(r: ApiResult<T>) -> ApiResult<Value> {
    serde_json::to_value(r?).map_err(|e| {
        ApiError::new(
            Code::Internal,
            format!("internal error: cannot encode the result: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> i32 {
        decode(line.as_bytes())
            .err()
            .map(|r| r.error.code as i32)
            .unwrap_or(0)
    }

    #[test]
    fn decodes_good_requests() {
        let r = decode(br#"{"jsonrpc":"2.0","id":7,"method":"network.create","params":{"name":"x","internal":true}}"#)
            .expect("valid");
        assert_eq!(r.id, Some(json!(7)));
        match r.call {
            Call::NetworkCreate(p) => assert!(p.name == "x" && p.internal),
            other => panic!("{other:?}"),
        }
        let n = decode(br#"{"jsonrpc":"2.0","method":"sandbox.ls"}"#).expect("notification");
        assert!(n.id.is_none());
    }

    #[test]
    fn rejects_with_the_right_codes() {
        assert_eq!(code("{"), -32700);
        assert_eq!(code("[]"), -32600);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#), -32600);
        assert_eq!(code(r#"{"id":1,"method":"sandbox.ls"}"#), -32600);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":5}"#), -32600);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#), -32601);
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"sandbox.ls","params":[1]}"#),
            -32602
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"sandbox.ls","params":{"x":1}}"#),
            -32602
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"capture.stop","params":{"id":-1}}"#),
            -32602
        );
        let r = decode(br#"{"jsonrpc":"2.0","id":"q","method":"nope"}"#).expect_err("unknown");
        assert_eq!(r.id, json!("q"), "the id is echoed on errors");
    }

    /// What the fuzz target does, on a few thousand inputs, so CI runs it too.
    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let seeds: [&[u8]; 3] = [
            br#"{"jsonrpc":"2.0","id":1,"method":"network.create","params":{"name":"a","subnet":"1.2.3.0/24"}}"#,
            br#"{"jsonrpc":"2.0","id":"x","method":"sandbox.create","params":{"name":"s","publish":["80:80"]}}"#,
            b"\xff\xfe{\"a\":[[[[[[",
        ];
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for i in 0..5000 {
            let mut input = seeds[i % seeds.len()].to_vec();
            for _ in 0..(i % 8) + 1 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if input.is_empty() {
                    break;
                }
                let pos = (x as usize) % input.len();
                match x % 3 {
                    0 => input[pos] = (x >> 8) as u8,
                    1 => input.truncate(pos),
                    _ => input.insert(pos, b"{[\",:}]"[(x >> 16) as usize % 7]),
                }
            }
            let _ = decode(&input);
        }
    }
}
