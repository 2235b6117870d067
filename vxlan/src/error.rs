//! Errors of the control-side calls and of encapsulation. Decapsulation does not error:
//! it returns a [`crate::Decap`] that says whether to pass the frame on or drop it.

/// Why a VNI cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VniError {
    #[error("VNI {0} is out of range: use 1..=16777215 (-o vxlan.id=N)")]
    OutOfRange(u32),
    #[error("VNI {0} is already used by another overlay network: pick another -o vxlan.id")]
    Taken(u32),
    #[error("no free VNI from 4096 to 16777215: delete unused overlay networks")]
    Exhausted,
}

/// Why a frame was not encapsulated. The caller drops the frame and counts the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncapError {
    /// The VTEP never fragments: the inner MTU must leave room for the 50 bytes of
    /// outer headers (1450 on a 1500-byte underlay).
    #[error("encapsulated packet of {len} bytes exceeds the underlay MTU {mtu}: lower the overlay network's MTU")]
    TooBig { len: usize, mtu: usize },
    #[error("output buffer of {have} bytes is too small for a {need}-byte frame")]
    BufferTooSmall { need: usize, have: usize },
    #[error("inner frame of {0} bytes is shorter than an Ethernet header")]
    InnerTooShort(usize),
}
