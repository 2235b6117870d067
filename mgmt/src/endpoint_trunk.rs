//! Each worker's endpoint trunk, the door between the kernel and the worker on the tc
//! data path: a veth pair in the daemon's namespace, `vsw-tN` (the kernel end, where the
//! sandbox veths' tc programs send what they do not forward, and whose tc program
//! delivers the worker's frames) and `vsw-tNw` (the worker's end, read by AF_XDP or
//! AF_PACKET). The kernel end has no transmit offload at all, so the kernel segments,
//! checksums and writes the tag into every frame before it crosses to the worker.

use std::os::fd::AsFd;

use switch::engine::EngineError;
use switch::port::{self, IoMode};
use switch::Engine;

use crate::driver::bridge::prepare_host_end;
use crate::driver::DriverError;
use crate::error::{step, Step};
use crate::ethtool::{self, EthtoolError};
use crate::link::{LinkError, Netlink};

/// What attaching the endpoint trunks fails with.
#[derive(Debug, thiserror::Error)]
pub enum TrunkError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Ethtool(#[from] EthtoolError),
    /// Keeping the kernel out of a trunk end (its sysctls).
    #[error(transparent)]
    HostEnd(#[from] DriverError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// This thread's namespace; the step says which.
    #[error(transparent)]
    Io(#[from] Step<std::io::Error>),
    /// Opening the worker's end as a port.
    #[error(transparent)]
    Port(#[from] Step<switch::port::PortError>),
    #[error("endpoint trunk of worker {worker}")]
    Worker {
        worker: usize,
        #[source]
        source: Box<TrunkError>,
    },
}

type Result<T, E = TrunkError> = std::result::Result<T, E>;

/// MTU of the trunk: a sandbox frame of up to 1500 bytes plus the 4-byte tag.
const TRUNK_MTU: u32 = 1504;

/// The names of worker `w`'s trunk: (kernel end, worker end).
pub fn names(worker: usize) -> (String, String) {
    (format!("vsw-t{worker}"), format!("vsw-t{worker}w"))
}

/// Create and attach every worker's trunk (replacing leftovers of an earlier run).
pub fn attach_all(engine: &mut Engine, io: IoMode) -> Result<()> {
    let workers = engine.config().workers.max(1);
    // Trunks of an earlier run with more workers (killed before it removed them).
    let mut nl = Netlink::new()?;
    for w in workers..LEFTOVER_SCAN {
        let kernel = names(w).0;
        if nl.link_exists(&kernel) {
            nl.delete_link(&kernel)?;
        }
    }
    for w in 0..workers {
        attach(engine, io, w).map_err(|e| TrunkError::Worker {
            worker: w,
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// How many trunk names a start looks for leftovers of.
const LEFTOVER_SCAN: usize = 256;

fn attach(engine: &mut Engine, io: IoMode, worker: usize) -> Result<()> {
    let (kernel, user) = names(worker);
    let mut nl = Netlink::new()?;
    if nl.link_exists(&kernel) {
        nl.delete_link(&kernel)?;
    }
    let here = crate::netns::current()?;
    nl.create_veth(&kernel, &user, here.as_fd(), None, TRUNK_MTU)?;
    ethtool::disable_features(&kernel, ethtool::TX_OFFLOADS)?;
    for end in [&kernel, &user] {
        prepare_host_end(end)?;
        nl.set_up(end)?;
    }
    let port = port::open(&user, io).map_err(step(format!("open port on {user}")))?;
    engine.add_endpoint_trunk(worker, &kernel, port)?;
    tracing::debug!(worker, trunk = %kernel, "endpoint trunk attached");
    Ok(())
}

/// Remove the trunks (at shutdown; the engine must have let go of them).
pub fn remove_all(workers: usize) {
    let Ok(mut nl) = Netlink::new() else {
        return;
    };
    for w in 0..workers.max(1) {
        let _ = nl.delete_link(&names(w).0);
    }
}
