//! API errors: each has a stable JSON-RPC code and a message a person can act on.
//! The code follows from the kind of what went wrong (the modules' typed errors map
//! here), never from its text.

use std::error::Error;

use serde::Serialize;
use switch::engine::EngineError;

use crate::capture::CaptureError;
use crate::driver::DriverError;
use crate::sandbox::SandboxError;
use crate::state::StateError;

/// Stable error codes on the control socket (JSON-RPC 2.0 "server error" range for
/// ours, the spec's codes for protocol errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Code {
    ParseError = -32700,
    InvalidRequest = -32600,
    MethodNotFound = -32601,
    InvalidParams = -32602,
    Internal = -32603,
    NotFound = -32001,
    Conflict = -32002,
    InUse = -32003,
    Invalid = -32004,
    System = -32005,
    TooLarge = -32006,
    /// The data plane did not answer in time: the request may or may not have taken
    /// effect.
    Timeout = -32007,
    /// The cluster store cannot be reached: nothing was changed.
    Unavailable = -32008,
}

impl Code {
    /// Its name as metrics label it (`not_found`).
    pub fn name(self) -> &'static str {
        match self {
            Code::ParseError => "parse_error",
            Code::InvalidRequest => "invalid_request",
            Code::MethodNotFound => "method_not_found",
            Code::InvalidParams => "invalid_params",
            Code::Internal => "internal",
            Code::NotFound => "not_found",
            Code::Conflict => "conflict",
            Code::InUse => "in_use",
            Code::Invalid => "invalid",
            Code::System => "system",
            Code::TooLarge => "too_large",
            Code::Timeout => "timeout",
            Code::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(Code::NotFound, m)
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(Code::Conflict, m)
    }
    pub fn in_use(m: impl Into<String>) -> Self {
        Self::new(Code::InUse, m)
    }
    pub fn invalid(m: impl Into<String>) -> Self {
        Self::new(Code::Invalid, m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, m)
    }
    /// The kernel or the data plane refused: the message carries the whole cause chain.
    pub fn system(e: &(dyn Error + 'static)) -> Self {
        Self::new(Code::System, chain(e))
    }
}

/// An error and its sources, outermost first, as "a: b: c" (what anyhow's `{:#}`
/// shows): each level names what it was doing, the last what the kernel said.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        // A level that only forwards its cause's text adds nothing.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

/// The code follows from what went wrong: a published port that is taken is the
/// user's conflict, an invalid mapping or a missing uplink the user's request, a worker
/// that stopped or did not answer the system's fault.
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        use EngineError as E;
        let code = match &e {
            E::Nat(nat::NatError::PortAllocated { .. }) | E::VlanTaken { .. } => Code::Conflict,
            E::Nat(_) | E::Unavailable(_) => Code::Invalid,
            E::Timeout(_) => Code::Timeout,
            E::Stopped(_)
            | E::UplinkNat(_)
            | E::UplinkAttached
            | E::HostPortAttached
            | E::Exhausted(_)
            | E::NoPort(_)
            | E::Dns(_)
            | E::Io { .. }
            | E::Port(_) => Code::System,
        };
        ApiError::new(code, chain(&e))
    }
}

/// A driver's refusal keeps its code, the data plane's follows its kind, and what the
/// kernel refused is the system's.
impl From<DriverError> for ApiError {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::Refused(api) => api,
            DriverError::Engine(e) => e.into(),
            DriverError::NoEndpoints(m) => ApiError::invalid(m),
            e => ApiError::system(&e),
        }
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        ApiError::system(&e)
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        ApiError::system(&e)
    }
}

impl From<CaptureError> for ApiError {
    fn from(e: CaptureError) -> Self {
        match e {
            CaptureError::Engine(e) => e.into(),
            CaptureError::Exists(_) | CaptureError::TooMany(_) => ApiError::conflict(chain(&e)),
            CaptureError::Busy(_) => ApiError::in_use(chain(&e)),
            CaptureError::NoDirectory { .. } | CaptureError::NotRegular(_) => {
                ApiError::invalid(chain(&e))
            }
            e => ApiError::system(&e),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// One step of the plumbing that failed: `what` was being done (naming the file, the
/// interface, the namespace) when `source` happened. The modules' errors wrap it
/// (`#[from]`), so `.map_err(step(format!("write {path}")))?` names the step and
/// converts in one go.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct Step<E: Error + 'static> {
    pub what: String,
    #[source]
    pub source: E,
}

/// The step `what` failed: for `map_err`.
pub fn step<E: Error + 'static>(what: impl Into<String>) -> impl FnOnce(E) -> Step<E> {
    let what = what.into();
    move |source| Step { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_answer_with_the_code_of_their_kind() {
        let taken = EngineError::Nat(nat::NatError::PortAllocated {
            host_ip: std::net::Ipv4Addr::UNSPECIFIED.into(),
            host_port: 8080,
            proto: nat::Proto::Tcp,
        });
        let e = ApiError::from(taken);
        assert_eq!(e.code, Code::Conflict);
        assert_eq!(
            e.message,
            "Bind for 0.0.0.0:8080/tcp failed: port is already allocated"
        );
        let stuck = ApiError::from(EngineError::Timeout("the router's worker"));
        assert_eq!(stuck.code, Code::Timeout, "a time-out is no conflict");
        assert_eq!(stuck.message, "the router's worker did not answer in time");
        assert_eq!(ApiError::from(EngineError::Stopped(1)).code, Code::System);
        assert_eq!(
            ApiError::from(EngineError::Unavailable("publishing ports needs an uplink")).code,
            Code::Invalid
        );
    }
}

#[cfg(test)]
mod timeout_tests {
    use super::*;

    /// A worker that does not answer is reported as a time-out, wherever the engine's
    /// error comes from (a published port, a driver's call): never as a conflict.
    #[test]
    fn an_engine_time_out_answers_with_the_time_out_code() {
        let direct = ApiError::from(EngineError::Timeout("the router's worker"));
        assert_eq!(direct.code, Code::Timeout);
        assert_eq!(direct.code as i32, -32007);
        let via_driver = ApiError::from(DriverError::Engine(EngineError::Timeout(
            "a data-plane worker",
        )));
        assert_eq!(via_driver.code, Code::Timeout);
        assert_ne!(via_driver.code, Code::Conflict);
        assert_eq!(
            via_driver.message,
            "a data-plane worker did not answer in time"
        );
        let reply = crate::rpc::error_reply(serde_json::json!(1), &via_driver);
        assert_eq!(reply["error"]["code"], -32007);
    }

    #[test]
    fn messages_carry_the_cause_chain_once() {
        let e = DriverError::from(step("write /proc/sys/x")(
            std::io::Error::from_raw_os_error(libc::ENOENT),
        ));
        let api = ApiError::from(e);
        assert_eq!(api.code, Code::System);
        assert_eq!(
            api.message,
            "write /proc/sys/x: No such file or directory (os error 2)"
        );
        let taken = EngineError::VlanTaken {
            what: "eth1.10".into(),
            member: 7,
        };
        assert_eq!(
            ApiError::from(DriverError::Engine(taken)).code,
            Code::Conflict
        );
    }
}
