//! The control socket's client side: one request per connection, typed results.

use super::*;

/// Why a command failed, mapped to the exit code.
pub enum Failure {
    Refused(String),
    Unreachable(String),
    Usage(String),
}

pub type Res<T> = Result<T, Failure>;

pub struct Client {
    pub socket: PathBuf,
}

impl Client {
    /// Call `method` and read its result as `T` (the types the daemon answers with).
    pub fn call<T: DeserializeOwned>(&self, method: &str, params: &impl Serialize) -> Res<T> {
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

pub fn kv(list: &[String], what: &str) -> Res<BTreeMap<String, String>> {
    list.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Failure::Usage(format!(
                "invalid {what} {s:?}: expected KEY=VALUE"
            ))),
        })
        .collect()
}
