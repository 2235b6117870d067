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

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<ApiError>() {
            Ok(api) => api,
            Err(e) => ApiError::system(e),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
