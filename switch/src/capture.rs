//! Frames copied off ports for `vswitchctl capture`: what a copy is and where copies go.

use crossbeam_channel::Sender;

/// A frame copied off a port for `vswitchctl capture`.
pub struct Captured {
    /// Wall-clock time the worker saw it.
    pub at: std::time::SystemTime,
    pub frame: Box<[u8]>,
}

/// Where a port's captured frames go (bounded: a slow reader loses frames, never
/// slows the worker).
pub type CaptureTap = Sender<Captured>;

/// Copy frames to a capture tap; false once the reader has gone away.
pub(crate) fn tee<'a>(tap: &CaptureTap, frames: impl Iterator<Item = &'a [u8]>) -> bool {
    let at = std::time::SystemTime::now();
    for f in frames {
        if let Err(crossbeam_channel::TrySendError::Disconnected(_)) = tap.try_send(Captured {
            at,
            frame: f.into(),
        }) {
            return false;
        }
    }
    true
}
