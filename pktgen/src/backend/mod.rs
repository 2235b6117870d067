//! Where a sender thread's bursts go: a switch port (AF_PACKET, AF_XDP, TAP) or a pcap
//! file. The kernel-assisted generator (xdp-live) has its own loop in `xdp_live`.

pub mod pcap;
pub mod port;

use std::io;
use std::time::Instant;
use switch::port::Burst;

/// A destination for frames, one per sender thread.
pub trait FrameOut: Send {
    /// Take frames from the front of `burst`; returns how many were taken.
    fn send(&mut self, burst: &Burst) -> io::Result<usize>;
    /// Push out whatever is still queued, giving up at `deadline`. Returns whether
    /// everything went.
    fn flush(&mut self, deadline: Instant) -> io::Result<bool>;
}
