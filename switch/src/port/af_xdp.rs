//! AF_XDP port: one XDP socket in copy mode on queue 0 of a veth end or uplink, its
//! UMEM and four rings from the pure-Rust `xdp` crate, fed by the redirect program of
//! `xdp_prog` attached through a BPF link (so it detaches when the process dies).

use super::xdp_prog::XskRedirect;
use super::{Backend, Burst, Port, BURST, MAX_FRAME};
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
    pub fn open(iface: &str) -> io::Result<Self> {
        Self::open_with(iface, XdpMode::Auto)
    }

    /// Open `iface` (in the calling thread's network namespace) in the given XDP mode.
    pub fn open_with(iface: &str, mode: XdpMode) -> io::Result<Self> {
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
    ) -> io::Result<()> {
        // The redirect target first: a port running the program is always reachable.
        fp.add_port(id, self.ifindex)?;
        let prog = fp.program(self.redirect.xsks(), net, id);
        self.redirect.replace(&prog, "vsw_fast").map_err(|e| {
            fp.remove_port(id);
            io::Error::new(e.kind(), format!("{}: {e}", self.name))
        })
    }

    fn enable_nat_in(&mut self, fp: &crate::fastpath::FastPath) -> io::Result<()> {
        let prog = fp.nat_in_program(self.redirect.xsks());
        self.redirect
            .replace(&prog, "vsw_nat_in")
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.name)))
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
mod tests {
    //! Real kernel objects: a namespace and veth pair per test, an XdpPort on one end
    //! and a raw AF_PACKET socket on the other.
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// Experimental EtherType (IEEE 802 local use): tells test frames from the IPv6
    /// chatter the kernel sends on a fresh link.
    const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
    const PORT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    const WAIT: Duration = Duration::from_secs(5);

    fn require_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!("this test needs root (network namespaces, BPF, AF_XDP): run `cargo test -p switch` as root");
        }
    }

    fn ip(args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(args)
            .output()
            .expect("run `ip` (install iproute2)");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A namespace holding a veth pair; deleting the namespace on drop removes both ends.
    struct Lab {
        ns: String,
        port_dev: String,
        peer_dev: String,
    }

    impl Lab {
        fn new(tag: &str) -> Lab {
            require_root();
            let ns = format!("vsx{}{tag}", std::process::id());
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            ip(&["netns", "add", &ns]);
            let lab = Lab {
                port_dev: format!("{ns}p"),
                peer_dev: format!("{ns}q"),
                ns,
            };
            let (ns, a, b) = (&lab.ns, &lab.port_dev, &lab.peer_dev);
            ip(&[
                "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b,
            ]);
            ip(&[
                "-n",
                ns,
                "link",
                "set",
                a,
                "address",
                "02:00:00:00:00:0a",
                "up",
            ]);
            ip(&[
                "-n",
                ns,
                "link",
                "set",
                b,
                "address",
                "02:00:00:00:00:0b",
                "up",
            ]);
            lab
        }

        /// Run `f` on a thread inside the namespace (sockets it opens stay there).
        fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
            let path = format!("/run/netns/{}", self.ns);
            let handle = std::thread::spawn(move || {
                let ns = std::fs::File::open(&path).expect("open the test namespace");
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("setns into the test namespace");
                f()
            });
            match handle.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }

        fn link_show(&self, dev: &str) -> String {
            ip(&["-n", &self.ns, "link", "show", dev])
        }
    }

    impl Drop for Lab {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        }
    }

    /// A raw AF_PACKET socket bound to one interface, seeing every frame on it.
    struct Peer(OwnedFd);

    impl Peer {
        fn open(dev: &str) -> Peer {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2) call.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
            assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
            // SAFETY: fd was just returned by socket(2) and is owned by nothing else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let rcvbuf: libc::c_int = 8 << 20;
            // SAFETY: setsockopt with a pointer to a live c_int and its size.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &rcvbuf as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as u32,
                )
            };
            // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = proto;
            addr.sll_ifindex = ifindex(dev).expect("peer ifindex") as i32;
            // SAFETY: bind with a pointer to a live sockaddr_ll and its size.
            let ret = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(ret, 0, "bind AF_PACKET: {}", io::Error::last_os_error());
            Peer(fd)
        }

        fn send(&self, frame: &[u8]) {
            // SAFETY: send from a live slice on a bound socket we own.
            let n =
                unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            assert_eq!(
                n,
                frame.len() as isize,
                "send: {}",
                io::Error::last_os_error()
            );
        }

        /// Test frames (our EtherType) received from the port side, until `n` or WAIT.
        fn recv_test_frames(&self, n: usize) -> Vec<Vec<u8>> {
            let deadline = Instant::now() + WAIT;
            let mut got = Vec::new();
            let mut buf = vec![0u8; 4096];
            while got.len() < n && Instant::now() < deadline {
                if !poll_readable(self.0.as_raw_fd(), 100) {
                    continue;
                }
                // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut fromlen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                // SAFETY: recvfrom into a live buffer and sockaddr of the sizes given.
                let len = unsafe {
                    libc::recvfrom(
                        self.0.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                        &mut from as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                        &mut fromlen,
                    )
                };
                if len < 0 {
                    continue;
                }
                let frame = &buf[..len as usize];
                if from.sll_pkttype != libc::PACKET_OUTGOING && is_test_frame(frame) {
                    got.push(frame.to_vec());
                }
            }
            got
        }
    }

    fn poll_readable(fd: RawFd, ms: i32) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one live pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    fn is_test_frame(frame: &[u8]) -> bool {
        frame.len() >= 14 && frame[12..14] == ETHERTYPE
    }

    /// Frame number `i`: a distinct length (60..=1514) and distinct contents.
    fn test_frame(i: usize, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let len = 60 + (i * 397) % (1514 - 60 + 1);
        let mut f = Vec::with_capacity(len);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ETHERTYPE);
        f.extend_from_slice(&(i as u32).to_be_bytes());
        f.extend((f.len()..len).map(|j| (i * 7 + j) as u8));
        f
    }

    /// Frames sent from the peer arrive on the port byte for byte and in order, over
    /// several bursts, and a part-filled burst is only topped up to BURST.
    fn receives_from_peer(port: &mut XdpPort, peer: &Peer) {
        const N: usize = 100;
        let sent: Vec<Vec<u8>> = (0..N).map(|i| test_frame(i, PORT_MAC, PEER_MAC)).collect();
        for f in &sent {
            peer.send(f);
        }
        assert!(
            poll_readable(port.fd(), WAIT.as_millis() as i32),
            "port fd never polled readable"
        );
        let mut got = Vec::new();
        let mut calls_with_frames = 0;
        let mut burst = Burst::new();
        // Start part-full: recv must only append up to the room left.
        for _ in 0..20 {
            assert!(burst.push(&[0xee; 60]));
        }
        let deadline = Instant::now() + WAIT;
        while got.len() < N && Instant::now() < deadline {
            let before = burst.len();
            let n = port.recv(&mut burst).expect("recv");
            assert_eq!(burst.len(), before + n);
            assert!(burst.len() <= BURST);
            if n == 0 {
                poll_readable(port.fd(), 100);
                continue;
            }
            calls_with_frames += 1;
            got.extend(
                burst
                    .iter()
                    .skip(before)
                    .filter(|f| is_test_frame(f))
                    .map(<[u8]>::to_vec),
            );
            burst.clear();
        }
        assert_eq!(got.len(), N, "frames received on the port");
        for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
            assert_eq!(g, s, "frame {i} differs");
        }
        assert!(
            calls_with_frames >= N / BURST,
            "took {calls_with_frames} recv calls"
        );
        assert_eq!(port.stats().rx_oversize, 0);
    }

    /// Bursts sent through the port reach the peer byte for byte and in order.
    fn sends_to_peer(port: &mut XdpPort, peer: &Peer) {
        const BURSTS: usize = 3;
        let mut sent = Vec::new();
        for b in 0..BURSTS {
            let mut burst = Burst::new();
            for i in 0..BURST {
                let f = test_frame(1000 + b * BURST + i, PEER_MAC, PORT_MAC);
                assert!(burst.push(&f));
                sent.push(f);
            }
            assert_eq!(port.send(&burst).expect("send"), BURST);
        }
        let got = peer.recv_test_frames(sent.len());
        assert_eq!(got.len(), sent.len(), "frames the peer received");
        for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
            assert_eq!(g, s, "frame {i} differs");
        }
    }

    fn rx_tx_in_mode(tag: &str, mode: XdpMode, shown: &'static str) {
        let lab = Lab::new(tag);
        let (a, b) = (lab.port_dev.clone(), lab.peer_dev.clone());
        let port_dev = a.clone();
        let check_attached = move |out: String| {
            assert!(
                out.contains(shown),
                "expected {shown} attached, ip says: {out}"
            );
        };
        let link = lab.link_show(&a);
        assert!(!link.contains("xdp"), "no program before open: {link}");
        let ns = lab.ns.clone();
        lab.run(move || {
            let mut port = XdpPort::open_with(&port_dev, mode).expect("open XdpPort");
            assert_eq!(port.mode(), mode);
            assert_eq!(port.name(), port_dev);
            check_attached(ip(&["-n", &ns, "link", "show", &port_dev]));
            let peer = Peer::open(&b);
            receives_from_peer(&mut port, &peer);
            sends_to_peer(&mut port, &peer);
        });
    }

    #[test]
    fn generic_mode_moves_frames_both_ways() {
        rx_tx_in_mode("g", XdpMode::Generic, "xdpgeneric");
    }

    #[test]
    fn native_mode_moves_frames_both_ways() {
        rx_tx_in_mode("n", XdpMode::Native, " xdp ");
    }

    #[test]
    fn drop_detaches_the_program_and_reopen_works() {
        let lab = Lab::new("d");
        let dev = lab.port_dev.clone();
        let port = lab.run(move || XdpPort::open(&dev).expect("first open"));
        // veth has native XDP, so Auto must not fall back.
        assert_eq!(port.mode(), XdpMode::Native);
        let link = lab.link_show(&lab.port_dev);
        assert!(link.contains("xdp"), "program attached while open: {link}");
        drop(port);
        let link = lab.link_show(&lab.port_dev);
        assert!(
            !link.contains("xdp"),
            "program left attached after drop: {link}"
        );
        let dev = lab.port_dev.clone();
        let again = lab.run(move || XdpPort::open_with(&dev, XdpMode::Generic));
        let again = again.expect("second open after drop");
        assert_eq!(again.mode(), XdpMode::Generic);
    }

    /// Run by `killed_process_leaves_no_program` in a child process: open the port named
    /// by VSX_HOLD_NS / VSX_HOLD_DEV, say so, and wait to be killed.
    #[test]
    #[ignore = "helper: run as a child process by killed_process_leaves_no_program"]
    fn hold_port_until_killed() {
        let (Ok(ns), Ok(dev)) = (std::env::var("VSX_HOLD_NS"), std::env::var("VSX_HOLD_DEV"))
        else {
            return;
        };
        let lab = Lab {
            ns,
            port_dev: dev.clone(),
            peer_dev: String::new(),
        };
        let port = lab.run(move || XdpPort::open(&dev).expect("open in the child"));
        std::mem::forget(lab); // the parent owns the namespace
        println!("VSX_READY {}", port.mode());
        std::thread::sleep(WAIT * 6);
    }

    /// The hard requirement: a killed daemon leaves no XDP program behind, because the
    /// program hangs on a BPF link that dies with the process's fds.
    #[test]
    fn killed_process_leaves_no_program() {
        use std::io::BufRead;
        let lab = Lab::new("k");
        let mut child = Command::new(std::env::current_exe().expect("test binary path"))
            .args([
                "--exact",
                "port::af_xdp::tests::hold_port_until_killed",
                "--ignored",
                "--nocapture",
            ])
            .env("VSX_HOLD_NS", &lab.ns)
            .env("VSX_HOLD_DEV", &lab.port_dev)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the child holding the port");
        let stdout = child.stdout.take().expect("child stdout");
        let ready = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("VSX_READY"));
        let link = lab.link_show(&lab.port_dev);
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        assert!(ready.is_some(), "the child never opened the port");
        assert!(
            link.contains("xdp"),
            "attached while the child lived: {link}"
        );
        // Fd release after exit is synchronous for links, but allow the kernel a moment.
        let deadline = Instant::now() + WAIT;
        loop {
            let link = lab.link_show(&lab.port_dev);
            if !link.contains("xdp") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "program left attached after SIGKILL: {link}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let dev = lab.port_dev.clone();
        lab.run(move || XdpPort::open(&dev).expect("open again after the kill"));
    }

    #[test]
    fn open_errors_say_what_failed() {
        let lab = Lab::new("e");
        let dev = lab.port_dev.clone();
        let (first, second, third) = lab.run(move || {
            let missing = XdpPort::open("vsxnosuchdev").err().map(|e| e.to_string());
            let held = XdpPort::open_with(&dev, XdpMode::Generic).expect("first open");
            let busy = XdpPort::open_with(&dev, XdpMode::Generic)
                .err()
                .map(|e| e.to_string());
            // A second program on the same interface: the kernel refuses the link.
            let index = ifindex(&dev).expect("ifindex");
            let linked = XskRedirect::attach(&dev, index, held.fd(), XdpMode::Generic)
                .err()
                .map(|e| e.to_string());
            drop(held);
            (missing, busy, linked)
        });
        let first = first.expect("opening a missing interface fails");
        assert!(first.contains("find interface vsxnosuchdev"), "{first}");
        let second = second.expect("a second port on a busy interface fails");
        assert!(second.contains("bind the AF_XDP socket"), "{second}");
        assert!(second.contains("EBUSY"), "{second}");
        let third = third.expect("a second XDP link on the interface fails");
        assert!(
            third.contains(&format!(
                "attach XDP program to {} in generic mode",
                lab.port_dev
            )),
            "{third}"
        );
        assert!(
            third.contains("EBUSY") || third.contains("EEXIST"),
            "{third}"
        );
        assert!(second.contains(&lab.port_dev), "{second}");
    }
}
