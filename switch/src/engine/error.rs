//! What the engine's calls fail with, by kind, so the control plane can tell a user
//! "that port is taken" from "the data plane is stuck" (and answer with the code that
//! fits each).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    /// A worker did not answer within the engine's reply time-out (it is stuck or
    /// overloaded); the request may or may not have taken effect.
    #[error("{0} did not answer in time")]
    Timeout(&'static str),
    /// A worker thread has stopped (it panicked or the engine is shutting down).
    #[error("data-plane worker {0} has stopped")]
    Stopped(usize),
    /// The request needs something the switch does not have (an uplink, BPF).
    #[error("{0}")]
    Unavailable(&'static str),
    /// The NAT refused a published port (taken, or not a valid mapping).
    #[error(transparent)]
    Nat(#[from] nat::NatError),
}

pub type EngineResult<T> = Result<T, EngineError>;
