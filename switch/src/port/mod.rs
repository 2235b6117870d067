//! Ports: one burst-oriented interface over the three ways the switch reaches a link
//! (AF_XDP, AF_PACKET TPACKET_V3 rings, TAP). Workers only ever see `dyn Port`.

pub mod af_packet;
pub mod af_xdp;
pub(crate) mod csum;
mod error;
#[cfg(test)]
pub(crate) mod lab;
pub mod tap;
mod xdp_prog;

pub use error::PortError;

use std::fmt;
use std::io;
use std::os::fd::RawFd;

/// Largest frame a port carries: 1500-byte MTU + Ethernet header + one 802.1Q tag,
/// rounded up. Anything larger is dropped by the backend and counted.
pub const MAX_FRAME: usize = 1536;
/// Frames moved per receive or send call.
pub const BURST: usize = 32;

/// A fixed set of reusable frame buffers: what a port fills on receive and drains on
/// send. Allocated once per queue; the per-frame path never allocates.
pub struct Burst {
    bufs: Box<[[u8; MAX_FRAME]]>,
    lens: [u16; BURST],
    count: usize,
}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl Burst {
    pub fn new() -> Self {
        Burst {
            bufs: vec![[0u8; MAX_FRAME]; BURST].into_boxed_slice(),
            lens: [0; BURST],
            count: 0,
        }
    }
    pub fn len(&self) -> usize {
        self.count
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    pub fn is_full(&self) -> bool {
        self.count == BURST
    }
    pub fn clear(&mut self) {
        self.count = 0;
    }
    /// The i-th frame (i < len()).
    pub fn frame(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i] as usize]
    }
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        let len = self.lens[i] as usize;
        &mut self.bufs[i][..len]
    }
    /// Iterate over the frames held.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.count).map(move |i| self.frame(i))
    }
    /// Copy a frame in; false (and nothing copied) when full or the frame is too big.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        if self.is_full() || frame.len() > MAX_FRAME {
            return false;
        }
        self.bufs[self.count][..frame.len()].copy_from_slice(frame);
        self.lens[self.count] = frame.len() as u16;
        self.count += 1;
        true
    }
    /// The next free buffer, for a backend to receive into; call `commit` with the
    /// length written. None when full.
    pub fn slot(&mut self) -> Option<&mut [u8; MAX_FRAME]> {
        if self.is_full() {
            None
        } else {
            Some(&mut self.bufs[self.count])
        }
    }
    /// Keep the frame just written into `slot()`.
    pub fn commit(&mut self, len: usize) {
        debug_assert!(!self.is_full() && len <= MAX_FRAME);
        self.lens[self.count] = len as u16;
        self.count += 1;
    }
    /// Drop the first `n` frames, keeping the rest in order (after a partial send).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.count);
        for i in n..self.count {
            self.bufs.copy_within(i..i + 1, i - n);
            self.lens[i - n] = self.lens[i];
        }
        self.count -= n;
    }
}

/// How a port reaches its link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    AfXdp,
    AfPacket,
    Tap,
    /// A sandbox veth on the tc data path: no socket of its own; the kernel forwards
    /// known unicast and its worker's trunk carries the rest (`fastpath::tc`).
    Tc,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::AfXdp => "af_xdp",
            Backend::AfPacket => "af_packet",
            Backend::Tap => "tap",
            Backend::Tc => "tc",
        })
    }
}

/// One link the switch reads and writes in bursts.
///
/// `recv` and `send` never block: a port is drained until `recv` returns 0, then the
/// worker may sleep on `fd()` becoming readable (level-triggered epoll).
pub trait Port: Send {
    /// Interface name (host side of a veth, or the TAP name).
    fn name(&self) -> &str;
    fn backend(&self) -> Backend;
    /// Append received frames to `burst` until it is full or nothing is pending;
    /// returns how many were appended.
    fn recv(&mut self, burst: &mut Burst) -> io::Result<usize>;
    /// Send the frames of `burst` in order; returns how many the backend took (the
    /// rest are the caller's to count as dropped).
    fn send(&mut self, burst: &Burst) -> io::Result<usize>;
    /// An fd that polls readable when `recv` has something to return.
    fn fd(&self) -> RawFd;
    /// The backend's own counters (kernel ring drops and the like), by name. Read about
    /// once a second by the owning worker, never per frame.
    fn backend_stats(&mut self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Run the inbound half of the NAT fast path on this port (the uplink): replies of
    /// sessions the kernel translates go straight to their endpoints. Only AF_XDP ports.
    fn enable_nat_in(&mut self, _fp: &crate::fastpath::FastPath) -> Result<(), PortError> {
        let why = "only AF_XDP ports run the inbound NAT fast path";
        Err(self.unsupported(why))
    }
    /// Run the in-kernel fast path (`crate::fastpath`) on this port as port `id` of
    /// network `net`, and make it a redirect target. Only AF_XDP ports can.
    fn enable_fast_path(
        &mut self,
        _fp: &crate::fastpath::FastPath,
        _net: crate::NetId,
        _id: crate::PortId,
    ) -> Result<(), PortError> {
        Err(self.unsupported("only AF_XDP ports run the fast path"))
    }
    /// What this backend does not do, as its error.
    fn unsupported(&self, why: &'static str) -> PortError {
        let e = io::Error::new(io::ErrorKind::Unsupported, why);
        PortError::new(self.backend(), self.name(), e)
    }
}

/// How `open` should reach a veth end or uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    Auto,
    AfXdp,
    AfPacket,
}

impl std::str::FromStr for IoMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(IoMode::Auto),
            "af_xdp" => Ok(IoMode::AfXdp),
            "af_packet" => Ok(IoMode::AfPacket),
            other => Err(format!(
                "unknown io mode {other:?} (expected auto, af_xdp or af_packet)"
            )),
        }
    }
}

/// Open a kernel interface (a veth end) as a port. `Auto` tries AF_XDP and falls back to
/// AF_PACKET, logging why.
pub fn open(iface: &str, mode: IoMode) -> Result<Box<dyn Port>, PortError> {
    match mode {
        IoMode::AfXdp => Ok(Box::new(af_xdp::XdpPort::open(iface)?)),
        IoMode::AfPacket => Ok(Box::new(af_packet::PacketPort::open(iface)?)),
        IoMode::Auto => match af_xdp::XdpPort::open(iface) {
            Ok(p) => Ok(Box::new(p)),
            Err(e) => {
                tracing::warn!(iface, error = %e, "AF_XDP unavailable, falling back to AF_PACKET");
                Ok(Box::new(af_packet::PacketPort::open(iface)?))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_push_consume_keeps_order() {
        let mut b = Burst::new();
        for i in 0..5u8 {
            assert!(b.push(&[i; 60]));
        }
        b.consume(2);
        assert_eq!(b.len(), 3);
        assert_eq!(b.frame(0)[0], 2);
        assert_eq!(b.frame(2)[0], 4);
        assert!(!b.push(&[0; MAX_FRAME + 1]));
    }

    #[test]
    fn burst_fills_to_capacity() {
        let mut b = Burst::new();
        for _ in 0..BURST {
            assert!(b.push(&[1; 64]));
        }
        assert!(b.is_full());
        assert!(!b.push(&[1; 64]));
        assert!(b.slot().is_none());
    }
}
