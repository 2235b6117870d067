//! API errors: each has a stable JSON-RPC code and a message a person can act on.

use serde::Serialize;

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
    /// The kernel or the data plane refused: the message carries the whole cause chain.
    pub fn system(e: anyhow::Error) -> Self {
        Self::new(Code::System, format!("{e:#}"))
    }
}

/// The code follows from what went wrong: a published port that is taken is the
/// user's conflict, an invalid mapping or a missing uplink the user's request, a worker
/// that stopped or did not answer the system's fault.
impl From<switch::engine::EngineError> for ApiError {
    fn from(e: switch::engine::EngineError) -> Self {
        use switch::engine::EngineError as E;
        let code = match &e {
            E::Nat(nat::NatError::PortAllocated { .. }) => Code::Conflict,
            E::Nat(_) | E::Unavailable(_) => Code::Invalid,
            E::Timeout(_) | E::Stopped(_) => Code::System,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<ApiError>() {
            Ok(api) => api,
            Err(e) => ApiError::system(e),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use switch::engine::EngineError;

    #[test]
    fn engine_errors_answer_with_the_code_of_their_kind() {
        let taken = EngineError::Nat(nat::NatError::PortAllocated {
            host_ip: None,
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
        assert_eq!(stuck.code, Code::System, "a time-out is no conflict");
        assert_eq!(stuck.message, "the router's worker did not answer in time");
        assert_eq!(ApiError::from(EngineError::Stopped(1)).code, Code::System);
        assert_eq!(
            ApiError::from(EngineError::Unavailable("publishing ports needs an uplink")).code,
            Code::Invalid
        );
    }
}
