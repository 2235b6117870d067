//! AF_XDP port: one XDP socket in copy mode on queue 0 of a veth end or uplink, its
//! UMEM and four rings from the pure-Rust `xdp` crate, fed by the redirect program of
//! `xdp_prog` attached through a BPF link (so it detaches when the process dies).

use super::xdp_prog::XskRedirect;
use super::{Backend, Burst, Port, PortError, BURST, MAX_FRAME};
use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};
use xdp::slab::{Slab, StackSlab};
use xdp::socket::{XdpSocket, XdpSocketBuilder};
use xdp::umem::{FrameSize, UmemCfgBuilder};
use xdp::{CompletionRing, FillRing, Packet, RingConfigBuilder, RxRing, TxRing, Umem};

pub use super::xdp_prog::XdpMode;

/// UMEM frames kept posted to the kernel for receive (all of them sit in the fill ring
/// when idle: smaller fill rings drop under load).
const RX_FRAMES: usize = 4096;
/// UMEM frames for transmit; the TX ring has as many entries, so a frame we hold
/// always has a ring slot.
const TX_FRAMES: usize = 2048;
const FILL_RING: u32 = RX_FRAMES as u32;
const RX_RING: u32 = 2048;
const TX_RING: u32 = TX_FRAMES as u32;
const COMPLETION_RING: u32 = TX_FRAMES as u32;
/// Attempts at kicking the kernel per send; copy mode transmits at most 32 frames per
/// kick and answers EAGAIN while more are queued.
const KICK_TRIES: usize = 4;
/// How long `open` retries a bind refused with EBUSY (see `open_with`).
const BIND_BUSY_WAIT: Duration = Duration::from_secs(2);

/// Frames this port dropped or could not take, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Received frames longer than MAX_FRAME, dropped.
    pub rx_oversize: u64,
    /// Frames `send` could not take because every TX frame was in flight.
    pub tx_full: u64,
    /// Kicks that failed with something other than a retry-later errno.
    pub tx_kick_errors: u64,
}

pub struct XdpPort {
    name: String,
    ifindex: u32,
    // Fields drop in declaration order: ring mappings, the socket, the BPF link /
    // program / map, and the UMEM last, once the kernel has let go of it.
    fill: FillRing,
    rx: RxRing,
    tx: TxRing,
    completion: CompletionRing,
    socket: XdpSocket,
    redirect: XskRedirect,
    umem: Umem,
    /// UMEM frames owned by the kernel for receive (fill ring + RX ring + in use).
    rx_posted: usize,
    /// UMEM frames submitted for transmit and not yet back on the completion ring.
    tx_in_flight: usize,
    /// The last kick left frames in the TX ring (EAGAIN/EBUSY/ENOBUFS).
    kick_pending: bool,
    stats: XdpStats,
}

impl XdpPort {
    /// Open `iface` with the redirect program in native mode, falling back to generic.
    pub fn open(iface: &str) -> Result<Self, PortError> {
        Self::open_with(iface, XdpMode::Auto)
    }

    /// Open `iface` (in the calling thread's network namespace) in the given XDP mode.
    pub fn open_with(iface: &str, mode: XdpMode) -> Result<Self, PortError> {
        Self::open_io(iface, mode).map_err(|e| PortError::new(Backend::AfXdp, iface, e))
    }

    fn open_io(iface: &str, mode: XdpMode) -> io::Result<Self> {
        let ifindex = ifindex(iface)?;

        let umem_cfg = UmemCfgBuilder {
            frame_size: FrameSize::TwoK,
            head_room: 0,
            frame_count: (RX_FRAMES + TX_FRAMES) as u32,
            ..Default::default()
        }
        .build()
        .map_err(|e| io::Error::other(format!("configure the UMEM for {iface}: {e}")))?;
        let mut umem = Umem::map(umem_cfg).map_err(|e| {
            crate::bpf::context(e, &format!("map the UMEM for {iface}"), "check free memory")
        })?;

        let ring_cfg = RingConfigBuilder {
            rx_count: RX_RING,
            tx_count: TX_RING,
            fill_count: FILL_RING,
            completion_count: COMPLETION_RING,
        }
        .build()
        .map_err(|e| io::Error::other(format!("configure the AF_XDP rings for {iface}: {e}")))?;
        // A socket of a process that just died keeps queue 0 until the kernel's deferred
        // pool release runs, so a restart right after a crash sees EBUSY for a moment.
        let deadline = Instant::now() + BIND_BUSY_WAIT;
        let (socket, rings) = loop {
            match bind_socket(&umem, ring_cfg, ifindex) {
                Ok(bound) => break bound,
                Err(xdp::socket::SocketError::Bind(e))
                    if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(socket_err(iface, "set up", e)),
            }
        };
        let (Some(rx), Some(tx)) = (rings.rx_ring, rings.tx_ring) else {
            return Err(io::Error::other(format!(
                "set up the rings of the AF_XDP socket on {iface}: RX or TX ring missing"
            )));
        };
        let mut fill = rings.fill_ring;

        // SAFETY: the UMEM is owned by the port together with the socket and is
        // dropped after it (field order), so the frames handed over outlive their use.
        let rx_posted = unsafe { fill.enqueue(&mut umem, RX_FRAMES) };

        let redirect = XskRedirect::attach(iface, ifindex, socket.raw_fd(), mode)?;
        tracing::info!(iface, mode = %redirect.mode(), "AF_XDP port open (copy mode, queue 0)");

        Ok(XdpPort {
            name: iface.to_string(),
            ifindex,
            fill,
            rx,
            tx,
            completion: rings.completion_ring,
            socket,
            redirect,
            umem,
            rx_posted,
            tx_in_flight: 0,
            kick_pending: false,
            stats: XdpStats::default(),
        })
    }

    /// The XDP mode the redirect program got attached in (Native or Generic).
    pub fn mode(&self) -> XdpMode {
        self.redirect.mode()
    }

    /// Frames this port dropped, by reason.
    pub fn stats(&self) -> XdpStats {
        self.stats
    }

    /// Frames handed to the TX ring that the kernel has not completed yet; `send` with
    /// an empty burst reaps completions and kicks again.
    pub fn tx_pending(&self) -> usize {
        self.tx_in_flight
    }

    /// The kernel's counters for the socket (drops for a full RX ring, an empty fill ring...).
    pub fn kernel_stats(&self) -> io::Result<xdp::libc::xdp::XdpStatistics> {
        self.socket
            .statistics()
            .map_err(|e| io::Error::other(format!("read XDP_STATISTICS of {}: {e}", self.name)))
    }

    /// Give received frames back to the kernel, keeping RX_FRAMES posted.
    fn refill(&mut self) {
        let want = RX_FRAMES - self.rx_posted;
        if want > 0 {
            // SAFETY: see `open_with`: the UMEM outlives the socket.
            self.rx_posted += unsafe { self.fill.enqueue(&mut self.umem, want) };
        }
    }

    /// Move finished transmit frames back to the UMEM free list.
    fn reap_completions(&mut self) {
        let done = self.completion.dequeue(&mut self.umem, TX_FRAMES);
        self.tx_in_flight -= done.min(self.tx_in_flight);
    }

    /// Tell the kernel the TX ring has frames: copy mode only transmits on sendto.
    fn kick(&mut self) -> io::Result<()> {
        for _ in 0..KICK_TRIES {
            // SAFETY: a zero-length sendto with no buffer and no address on an fd we own.
            let ret = unsafe {
                libc::sendto(
                    self.socket.raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if ret >= 0 {
                self.kick_pending = false;
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {
                    self.kick_pending = true;
                }
                Some(libc::EINTR) => {}
                _ => {
                    self.stats.tx_kick_errors += 1;
                    return Err(crate::bpf::context(
                        err,
                        &format!("kick AF_XDP transmit on {}", self.name),
                        "is the interface up?",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A fresh AF_XDP socket with its rings, bound in copy mode to queue 0 of `ifindex`.
fn bind_socket(
    umem: &Umem,
    ring_cfg: xdp::RingConfig,
    ifindex: u32,
) -> Result<(XdpSocket, xdp::Rings), xdp::socket::SocketError> {
    let mut builder = XdpSocketBuilder::new()?;
    let (rings, mut bind_flags) = builder.build_rings(umem, ring_cfg)?;
    // veth refuses zero-copy; copy mode works on every driver.
    bind_flags.force_copy();
    let socket = builder.bind(xdp::nic::NicIndex(ifindex), 0, bind_flags)?;
    Ok((socket, rings))
}

fn ifindex(iface: &str) -> io::Result<u32> {
    let cname = CString::new(iface).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {iface:?} contains a NUL byte"),
        )
    })?;
    // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(crate::bpf::context(
            io::Error::last_os_error(),
            &format!("find interface {iface}"),
            "does it exist in this network namespace?",
        ));
    }
    Ok(index)
}

fn socket_err(iface: &str, what: &str, e: xdp::socket::SocketError) -> io::Error {
    use xdp::socket::SocketError as E;
    let (step, inner) = match e {
        E::SocketCreation(inner) => ("create", inner),
        E::Bind(inner) => ("bind", inner),
        E::SetSockOpt { inner, option } => {
            return crate::bpf::context(
                inner,
                &format!("{what} the AF_XDP socket on {iface} (setsockopt {option:?})"),
                "",
            )
        }
        E::GetSockOpt { inner, option } => {
            return crate::bpf::context(
                inner,
                &format!("{what} the AF_XDP socket on {iface} (getsockopt {option:?})"),
                "",
            )
        }
        E::RingMap { inner, ring } => {
            return crate::bpf::context(
                inner,
                &format!("{what} the AF_XDP socket on {iface} (mmap the {ring:?} ring)"),
                "",
            )
        }
    };
    let hint = match inner.raw_os_error() {
        Some(libc::EBUSY) => {
            "another AF_XDP socket is bound to queue 0 of this interface; stop its owner"
        }
        Some(libc::EPERM) | Some(libc::EACCES) => "run as root or with CAP_NET_RAW",
        Some(libc::EAFNOSUPPORT) => "the kernel has no AF_XDP (CONFIG_XDP_SOCKETS)",
        _ => "",
    };
    crate::bpf::context(inner, &format!("{step} the AF_XDP socket on {iface}"), hint)
}

/// What `RxRing::recv` fills: copies each frame straight into the Burst and keeps the
/// UMEM packet to hand back to the fill ring afterwards.
struct RxSink<'a> {
    burst: &'a mut Burst,
    room: usize,
    held: [Option<Packet>; BURST],
    n_held: usize,
    appended: usize,
    oversize: u64,
}

impl Slab for RxSink<'_> {
    fn available(&self) -> usize {
        self.room - self.n_held
    }
    fn len(&self) -> usize {
        self.n_held
    }
    fn is_empty(&self) -> bool {
        self.n_held == 0
    }
    fn push_front(&mut self, packet: Packet) -> Option<Packet> {
        if self.n_held == self.room {
            return Some(packet);
        }
        let len = packet.len();
        match self.burst.slot() {
            Some(slot) if len <= MAX_FRAME => {
                slot[..len].copy_from_slice(&packet);
                self.burst.commit(len);
                self.appended += 1;
            }
            _ => self.oversize += 1,
        }
        self.held[self.n_held] = Some(packet);
        self.n_held += 1;
        None
    }
    fn pop_back(&mut self) -> Option<Packet> {
        None
    }
}

impl Port for XdpPort {
    fn name(&self) -> &str {
        &self.name
    }
    fn backend(&self) -> Backend {
        Backend::AfXdp
    }

    fn recv(&mut self, burst: &mut Burst) -> io::Result<usize> {
        if self.kick_pending {
            self.kick()?;
        }
        let room = BURST - burst.len();
        if room == 0 {
            return Ok(0);
        }
        let mut sink = RxSink {
            burst,
            room,
            held: [const { None }; BURST],
            n_held: 0,
            appended: 0,
            oversize: 0,
        };
        // SAFETY: the packets point into `self.umem`; they live only in `sink` and are
        // returned to the UMEM below, before this function returns.
        let got = unsafe { self.rx.recv(&self.umem, &mut sink) };
        let (appended, oversize) = (sink.appended, sink.oversize);
        for packet in sink.held.iter_mut().filter_map(Option::take) {
            self.umem.free_packet(packet);
        }
        self.stats.rx_oversize += oversize;
        self.rx_posted -= got.min(self.rx_posted);
        self.refill();
        Ok(appended)
    }

    fn send(&mut self, burst: &Burst) -> io::Result<usize> {
        self.reap_completions();
        let mut slab = StackSlab::<BURST>::new();
        for frame in burst.iter() {
            if self.tx_in_flight + slab.len() >= TX_FRAMES {
                break;
            }
            // SAFETY: the packet points into `self.umem`; it goes to the TX ring (the
            // kernel gives it back on the completion ring) or back to the UMEM below.
            let Some(mut packet) = (unsafe { self.umem.alloc() }) else {
                break;
            };
            // Burst frames are at most MAX_FRAME bytes, well under a 2 KiB UMEM frame.
            if packet.append(frame).is_err() {
                self.umem.free_packet(packet);
                break;
            }
            if let Some(packet) = slab.push_front(packet) {
                self.umem.free_packet(packet);
                break;
            }
        }
        // SAFETY: the packets come from `self.umem`, which outlives the socket.
        let queued = unsafe { self.tx.send(&mut slab) };
        while let Some(packet) = slab.pop_back() {
            self.umem.free_packet(packet);
        }
        self.tx_in_flight += queued;
        self.stats.tx_full += (burst.len() - queued) as u64;
        if queued > 0 || self.kick_pending {
            self.kick()?;
        }
        Ok(queued)
    }

    fn backend_stats(&mut self) -> Vec<(&'static str, u64)> {
        let mut v = vec![
            ("rx_oversize", self.stats.rx_oversize),
            ("tx_full", self.stats.tx_full),
            ("tx_kick_errors", self.stats.tx_kick_errors),
        ];
        if let Ok(k) = self.kernel_stats() {
            v.extend([
                ("xsk_rx_dropped", k.rx_dropped),
                ("xsk_rx_ring_full", k.rx_ring_full),
                ("xsk_rx_fill_ring_empty", k.rx_fill_ring_empty_descs),
                ("xsk_rx_invalid_descs", k.rx_invalid_descs),
                ("xsk_tx_invalid_descs", k.tx_invalid_descs),
                ("xsk_tx_ring_empty", k.tx_ring_empty_descs),
            ]);
        }
        v
    }

    fn enable_fast_path(
        &mut self,
        fp: &crate::fastpath::FastPath,
        net: crate::NetId,
        id: crate::PortId,
    ) -> Result<(), PortError> {
        let failed = |e| PortError::new(Backend::AfXdp, &self.name, e);
        // The redirect target first: a port running the program is always reachable.
        fp.add_port(id, self.ifindex).map_err(failed)?;
        let prog = fp.program(self.redirect.xsks(), net, id);
        self.redirect.replace(&prog, "vsw_fast").map_err(|e| {
            fp.remove_port(id);
            failed(e)
        })
    }

    fn enable_nat_in(&mut self, fp: &crate::fastpath::FastPath) -> Result<(), PortError> {
        let prog = fp.nat_in_program(self.redirect.xsks());
        self.redirect
            .replace(&prog, "vsw_nat_in")
            .map_err(|e| PortError::new(Backend::AfXdp, &self.name, e))
    }

    fn fd(&self) -> RawFd {
        self.socket.raw_fd()
    }
}

// Ports move to the worker thread that owns them.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<XdpPort>();
};

#[cfg(test)]
mod tests;
