//! JSON-RPC 2.0 over the control socket: one request object per line in, one response
//! per line out. Every malformed input gets an error reply naming what is wrong.

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::api;
use crate::controller::Controller;
use crate::error::{ApiError, ApiResult, Code};

/// Requests larger than this are refused (and the connection closed, since the rest of
/// the line cannot be framed).
pub const MAX_REQUEST: usize = 1 << 20;

/// Handle one request line; None for a notification (a request without an id).
pub fn handle_line(ctl: &mut Controller, line: &[u8]) -> Option<Value> {
    let req: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Some(error_reply(
                Value::Null,
                &ApiError::new(Code::ParseError, format!("parse error: {e}")),
            ))
        }
    };
    let id = req.get("id").cloned();
    let reply_id = id.clone().unwrap_or(Value::Null);
    let (method, params) = match validate(&req) {
        Ok(v) => v,
        // An invalid request is answered even without an id (JSON-RPC 2.0, section 5).
        Err(e) => return Some(error_reply(reply_id, &e)),
    };
    let result = dispatch(ctl, method, params);
    match (id, result) {
        (None, _) => None,
        (Some(_), Ok(v)) => Some(json!({ "jsonrpc": "2.0", "id": reply_id, "result": v })),
        (Some(_), Err(e)) => Some(error_reply(reply_id, &e)),
    }
}

pub fn error_reply(id: Value, e: &ApiError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": e.code as i32, "message": e.message } })
}

fn validate(req: &Value) -> ApiResult<(&str, Value)> {
    let obj = req.as_object().ok_or_else(|| {
        ApiError::new(
            Code::InvalidRequest,
            "invalid request: expected a JSON object",
        )
    })?;
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "invalid request: \"jsonrpc\" must be \"2.0\"",
        ));
    }
    if let Some(id) = obj.get("id") {
        if !(id.is_string() || id.is_number() || id.is_null()) {
            return Err(ApiError::new(
                Code::InvalidRequest,
                "invalid request: \"id\" must be a string, number or null",
            ));
        }
    }
    let method = obj.get("method").and_then(Value::as_str).ok_or_else(|| {
        ApiError::new(
            Code::InvalidRequest,
            "invalid request: \"method\" must be a string",
        )
    })?;
    let params = match obj.get("params") {
        None | Some(Value::Null) => json!({}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => {
            return Err(ApiError::new(
                Code::InvalidParams,
                "invalid params: \"params\" must be an object",
            ))
        }
    };
    Ok((method, params))
}

fn params<T: DeserializeOwned>(method: &str, p: Value) -> ApiResult<T> {
    serde_json::from_value(p).map_err(|e| {
        ApiError::new(
            Code::InvalidParams,
            format!("invalid params for {method}: {e}"),
        )
    })
}

fn dispatch(ctl: &mut Controller, method: &str, p: Value) -> ApiResult<Value> {
    match method {
        "network.create" => ctl.network_create(params(method, p)?),
        "network.ls" => ctl.network_ls(params(method, p)?),
        "network.inspect" => ctl.network_inspect(params(method, p)?),
        "network.rm" => ctl.network_rm(params(method, p)?),
        "network.prune" => {
            let _: api::NetworkLs = params(method, p)?;
            ctl.network_prune()
        }
        "network.connect" => ctl.network_connect(params(method, p)?),
        "network.disconnect" => ctl.network_disconnect(params(method, p)?),
        "sandbox.create" => ctl.sandbox_create(params(method, p)?),
        "sandbox.ls" => ctl.sandbox_ls(),
        "sandbox.inspect" => ctl.sandbox_inspect(params(method, p)?),
        "sandbox.rm" => ctl.sandbox_rm(params(method, p)?),
        "fdb.get" => ctl.fdb(params(method, p)?),
        "stats.get" => ctl.stats(params(method, p)?),
        "capture.start" => ctl.capture_start(params(method, p)?),
        "capture.status" => ctl.capture_status(params(method, p)?),
        "capture.stop" => ctl.capture_stop(params(method, p)?),
        "daemon.ping" => Ok(json!({ "version": env!("CARGO_PKG_VERSION") })),
        other => Err(ApiError::new(
            Code::MethodNotFound,
            format!("method not found: {other}"),
        )),
    }
}
