//! What the netlink client fails with: the kernel's refusals (errno and extended ACK
//! kept), the socket's failures, and requests refused before they were sent.

use std::io;

use super::IFNAME_MAX;
use crate::error::Step;

/// A netlink request the kernel refused, with the errno kept for callers that care
/// (e.g. EEXIST).
#[derive(Debug, thiserror::Error)]
#[error("{what}: {os_error}{}", detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct NetlinkError {
    /// What was asked, naming the interface or address.
    pub what: String,
    /// The kernel's answer (in the message, not a separate `source`, so `{:#}` does
    /// not print it twice).
    pub os_error: io::Error,
    /// The kernel's own explanation (extended ACK), when it gave one.
    pub detail: Option<String>,
}

impl NetlinkError {
    /// The errno the kernel answered with, if any.
    pub fn errno(&self) -> Option<i32> {
        self.os_error.raw_os_error()
    }
}

/// What a [`Netlink`] call fails with.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The kernel refused the request.
    #[error(transparent)]
    Refused(#[from] NetlinkError),
    /// The socket failed (open, bind, send, receive); the step says which.
    #[error(transparent)]
    Socket(#[from] Step<io::Error>),
    /// The kernel's reply could not be read.
    #[error("{0}")]
    Malformed(String),
    /// A request failed before the kernel answered it: the step names the request.
    #[error(transparent)]
    Request(#[from] Step<Box<LinkError>>),
    #[error("invalid interface name {0:?}: 1-{IFNAME_MAX} bytes, no '/', ':' or spaces")]
    InvalidName(String),
    #[error("invalid prefix length /{prefix_len} for {addr} on {name}")]
    InvalidPrefix {
        addr: std::net::IpAddr,
        prefix_len: u8,
        name: String,
    },
    #[error("no interface named {0} in this network namespace")]
    NoSuchLink(String),
    /// The kernel's answer lacks an attribute asked for (a MAC, an MTU, statistics).
    #[error("{0}")]
    Missing(String),
}

impl LinkError {
    /// The errno the kernel or the socket answered with, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            LinkError::Refused(e) => e.errno(),
            LinkError::Socket(s) => s.source.raw_os_error(),
            LinkError::Request(s) => s.source.errno(),
            _ => None,
        }
    }
}

pub type Result<T, E = LinkError> = std::result::Result<T, E>;

/// The errno inside an error (or its sources) from this module, if it came from the
/// kernel.
pub fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    std::iter::successors(Some(e), |c| c.source()).find_map(|c| {
        c.downcast_ref::<LinkError>()
            .and_then(LinkError::errno)
            .or_else(|| {
                c.downcast_ref::<NetlinkError>()
                    .and_then(NetlinkError::errno)
            })
            .or_else(|| {
                c.downcast_ref::<io::Error>()
                    .and_then(io::Error::raw_os_error)
            })
    })
}
