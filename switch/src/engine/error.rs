//! What the engine's calls fail with, by kind, so the control plane can tell a user
//! "that port is taken" from "the data plane is stuck" (and answer with the code that
//! fits each).

use std::io;

use thiserror::Error;

use crate::PortId;

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
    /// The router could not be built from the uplink's configuration.
    #[error("uplink NAT")]
    UplinkNat(#[source] nat::NatError),
    /// The uplink is attached once.
    #[error("the uplink is already attached")]
    UplinkAttached,
    /// The host port is attached once.
    #[error("the host port is already attached")]
    HostPortAttached,
    /// Every slot of a bounded resource is used (port ids of the tc data path, a
    /// worker's endpoint trunk).
    #[error("{0}")]
    Exhausted(String),
    /// A macvlan parent's VLAN (or its untagged side) belongs to another network.
    #[error("{what} is already used by another network (member port {member})")]
    VlanTaken { what: String, member: PortId },
    /// No such port in the data plane.
    #[error("no port {0}")]
    NoPort(PortId),
    /// The embedded resolver's configuration was refused.
    #[error("embedded DNS")]
    Dns(#[source] dns::ConfigError),
    /// The kernel refused (a BPF attachment, an eventfd, a thread, an ifindex lookup);
    /// `what` says what was being done.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// Opening or preparing a port (the caller's `open` of a trunk) failed.
    #[error(transparent)]
    Port(Box<dyn std::error::Error + Send + Sync>),
}

impl EngineError {
    /// A kernel refusal of `what`.
    pub fn io(what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        EngineError::Io {
            what: what.into(),
            source: source.into(),
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;
