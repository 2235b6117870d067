//! Ending a run early: SIGINT and SIGTERM set a flag the send and receive loops poll,
//! so an interrupted run still detaches its XDP programs and prints its report.

use nix::sys::signal::{self, SigHandler, Signal};
use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Route SIGINT and SIGTERM to the stop flag.
pub fn install() -> std::io::Result<()> {
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { signal::signal(sig, SigHandler::Handler(on_signal)) }.map_err(|e| {
            std::io::Error::other(format!("install the {sig} handler: {}", e.desc()))
        })?;
    }
    Ok(())
}

/// Whether a signal asked the run to end.
pub fn requested() -> bool {
    STOP.load(Ordering::Relaxed)
}
