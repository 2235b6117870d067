//! AF_PACKET port: a TPACKET_V3 mmap'd RX ring (block-based, retired after 1 ms so light
//! traffic stays low-latency) and a TPACKET_V2 TX ring on a second socket that bypasses the
//! qdisc, kicked once per burst. The fallback when AF_XDP is unavailable.
use super::{Backend, Burst, Port, MAX_FRAME};
use std::ffi::CString;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// RX ring geometry: 64 blocks of 64 KiB (4 MiB). Frames are packed inside a block, so a
/// block holds ~40 full-size frames or several hundred small ones.
const RX_BLOCK_SIZE: usize = 64 * 1024;
const RX_BLOCK_NR: usize = 64;
const RX_FRAME_SIZE: usize = 2048;
/// A partly filled block is handed to us after this long; keeps ping-style traffic fast.
const RX_RETIRE_TOV_MS: u32 = 1;

/// TX ring geometry: 256 slots of 2048 bytes (frames are one per slot in V2).
const TX_BLOCK_SIZE: usize = 64 * 1024;
const TX_BLOCK_NR: usize = 4;
const TX_FRAME_SIZE: usize = 2048;
const TX_FRAME_NR: usize = TX_BLOCK_SIZE / TX_FRAME_SIZE * TX_BLOCK_NR;
/// Where the kernel expects frame data in a V2 TX slot (no PACKET_TX_HAS_OFF):
/// `tp_hdrlen - sizeof(sockaddr_ll)`, i.e. the aligned tpacket2_hdr.
const TX_DATA_OFF: usize = tpacket_align(size_of::<libc::tpacket2_hdr>());

/// Where the kernel puts the sockaddr_ll of a received frame: after the aligned header.
const RX_SLL_OFF: usize = tpacket_align(size_of::<libc::tpacket3_hdr>());

/// Offset of `hdr.bh1.block_status` inside a V3 block descriptor.
const BLOCK_STATUS_OFF: usize =
    offset_of!(libc::tpacket_block_desc, hdr) + offset_of!(libc::tpacket_hdr_v1, block_status);

const MAC_PAIR_LEN: usize = 12;
const VLAN_TAG_LEN: usize = 4;
const ETH_P_8021Q: u16 = 0x8100;

const fn tpacket_align(x: usize) -> usize {
    (x + libc::TPACKET_ALIGNMENT - 1) & !(libc::TPACKET_ALIGNMENT - 1)
}

/// A shared mapping of a packet ring, unmapped on drop. All access to ring memory goes
/// through its bounds-checked accessors.
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this struct; nothing in it is tied to the
// thread that created it, and `&mut self` methods are the only writers on our side.
unsafe impl Send for Mmap {}

impl Mmap {
    /// Map the ring configured on `fd` (PACKET_RX_RING / PACKET_TX_RING must be set).
    fn ring(fd: &OwnedFd, len: usize) -> io::Result<Mmap> {
        // SAFETY: asking for a fresh shared mapping at an address of the kernel's choice;
        // no existing memory is affected. The result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap of packet ring returned NULL"))?;
        Ok(Mmap { ptr, len })
    }

    fn check(&self, off: usize, len: usize) {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len),
            "ring access {off}+{len} outside mapping of {}",
            self.len
        );
    }

    /// A status word the kernel updates concurrently; accessed atomically on both sides.
    fn status(&self, off: usize) -> &AtomicU32 {
        self.check(off, size_of::<u32>());
        assert_eq!(
            off % align_of::<AtomicU32>(),
            0,
            "unaligned ring status word"
        );
        // SAFETY: in bounds and aligned (checked above); the mapping lives as long as
        // `self`, and the kernel only touches this word with atomic/ordered accesses.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(off).cast::<u32>()) }
    }

    /// Copy a ring header struct out. Only call on memory currently owned by user space
    /// (a block/frame whose status word said so, read with Acquire).
    fn read<T: Copy>(&self, off: usize) -> T {
        self.check(off, size_of::<T>());
        // SAFETY: in bounds (checked above); `T` is a plain-old-data kernel struct, valid
        // for any bit pattern; read_unaligned makes no alignment assumption.
        unsafe { self.ptr.as_ptr().add(off).cast::<T>().read_unaligned() }
    }

    fn write<T: Copy>(&mut self, off: usize, val: T) {
        self.check(off, size_of::<T>());
        // SAFETY: in bounds (checked above); the slot is owned by user space until its
        // status is flipped, so the kernel does not read it concurrently.
        unsafe { self.ptr.as_ptr().add(off).cast::<T>().write_unaligned(val) }
    }

    fn bytes(&self, off: usize, len: usize) -> &[u8] {
        self.check(off, len);
        // SAFETY: in bounds (checked above); callers only ask for frame data in a block
        // user space owns, so the kernel does not write it while the slice lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off), len) }
    }

    fn bytes_mut(&mut self, off: usize, len: usize) -> &mut [u8] {
        self.check(off, len);
        // SAFETY: in bounds (checked above); the TX slot is owned by user space (status
        // AVAILABLE) so nothing else reads or writes it while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(off), len) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and no reference into the
        // mapping outlives `self` (all accessors borrow `self`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Wrap an OS error with which port and which step failed.
fn ctx<'a>(iface: &'a str, what: &'a str) -> impl FnOnce(io::Error) -> io::Error + 'a {
    move |e| io::Error::new(e.kind(), format!("AF_PACKET port {iface}: {what}: {e}"))
}

fn packet_socket() -> io::Result<OwnedFd> {
    // Protocol 0: the socket receives nothing until bound, so no frame from another
    // interface can slip into the ring between socket() and bind().
    // SAFETY: plain syscall with constant arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_opt<T>(fd: &OwnedFd, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live `T` of the size passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bind_to(fd: &OwnedFd, ifindex: libc::c_int, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: `sll` is a valid sockaddr_ll and the length passed matches it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn ifindex(iface: &str) -> io::Result<libc::c_int> {
    let cname = CString::new(iface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    libc::c_int::try_from(idx).map_err(|_| io::Error::other("interface index out of range"))
}

/// Where `recv` stopped inside a block the kernel handed over.
#[derive(Clone, Copy)]
struct BlockCursor {
    /// Frames not yet looked at.
    left: u32,
    /// Offset of the next frame's tpacket3_hdr from the block start.
    off: usize,
}

/// Counters a port keeps instead of logging on the per-frame path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketStats {
    /// Received frames larger than MAX_FRAME (after re-inserting a stripped VLAN tag).
    pub dropped_oversize: u64,
    /// Received frames whose ring header did not make sense (never expected).
    pub dropped_malformed: u64,
    /// Frames whose TCP/UDP checksum the sender left to offload and we filled in.
    pub csum_completed: u64,
}

/// An interface reached through AF_PACKET mmap rings. Owns both sockets and mappings.
pub struct PacketPort {
    name: String,
    // Mappings are declared before the sockets so they are unmapped first on drop.
    rx_ring: Mmap,
    tx_ring: Mmap,
    rx_fd: OwnedFd,
    tx_fd: OwnedFd,
    /// Next block to look at (kernel fills blocks in order).
    rx_block: usize,
    rx_cursor: Option<BlockCursor>,
    /// Next TX slot to fill (the kernel consumes slots in the same order).
    tx_head: usize,
    /// The last kick could not push everything out (socket buffer full); kick again on
    /// the next `send` even if it brings no frames.
    tx_kick_pending: bool,
    stats: PacketStats,
}

impl PacketPort {
    /// Open `iface` (in the calling thread's network namespace; the sockets keep working
    /// from any namespace afterwards).
    pub fn open(iface: &str) -> io::Result<PacketPort> {
        let ifindex = ifindex(iface).map_err(ctx(iface, "looking up interface"))?;

        let rx_fd = packet_socket().map_err(ctx(iface, "creating RX socket"))?;
        let v3 = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        set_opt(&rx_fd, libc::PACKET_VERSION, &v3).map_err(ctx(iface, "setting TPACKET_V3"))?;
        // Not seeing our own TX is the point; pkttype is checked too in case the kernel
        // lacks the option (it appeared in 4.20).
        let one: libc::c_int = 1;
        if let Err(e) = set_opt(&rx_fd, libc::PACKET_IGNORE_OUTGOING, &one) {
            tracing::debug!(iface, error = %e, "PACKET_IGNORE_OUTGOING unavailable");
        }
        let req = libc::tpacket_req3 {
            tp_block_size: RX_BLOCK_SIZE as u32,
            tp_block_nr: RX_BLOCK_NR as u32,
            tp_frame_size: RX_FRAME_SIZE as u32,
            tp_frame_nr: (RX_BLOCK_SIZE / RX_FRAME_SIZE * RX_BLOCK_NR) as u32,
            tp_retire_blk_tov: RX_RETIRE_TOV_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        set_opt(&rx_fd, libc::PACKET_RX_RING, &req).map_err(ctx(iface, "setting up RX ring"))?;
        let rx_ring = Mmap::ring(&rx_fd, RX_BLOCK_SIZE * RX_BLOCK_NR)
            .map_err(ctx(iface, "mapping RX ring"))?;

        let tx_fd = packet_socket().map_err(ctx(iface, "creating TX socket"))?;
        let v2 = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        set_opt(&tx_fd, libc::PACKET_VERSION, &v2).map_err(ctx(iface, "setting TPACKET_V2"))?;
        set_opt(&tx_fd, libc::PACKET_QDISC_BYPASS, &one)
            .map_err(ctx(iface, "setting PACKET_QDISC_BYPASS"))?;
        // A frame the kernel rejects is dropped and its slot freed, instead of marking it
        // WRONG_FORMAT and stalling the ring.
        set_opt(&tx_fd, libc::PACKET_LOSS, &one).map_err(ctx(iface, "setting PACKET_LOSS"))?;
        let req = libc::tpacket_req {
            tp_block_size: TX_BLOCK_SIZE as u32,
            tp_block_nr: TX_BLOCK_NR as u32,
            tp_frame_size: TX_FRAME_SIZE as u32,
            tp_frame_nr: TX_FRAME_NR as u32,
        };
        set_opt(&tx_fd, libc::PACKET_TX_RING, &req).map_err(ctx(iface, "setting up TX ring"))?;
        let tx_ring = Mmap::ring(&tx_fd, TX_BLOCK_SIZE * TX_BLOCK_NR)
            .map_err(ctx(iface, "mapping TX ring"))?;

        bind_to(&rx_fd, ifindex, libc::ETH_P_ALL as u16).map_err(ctx(iface, "binding RX"))?;
        // Protocol 0 on the TX socket: it never receives, so it never queues copies of
        // the link's traffic that nobody reads.
        bind_to(&tx_fd, ifindex, 0).map_err(ctx(iface, "binding TX"))?;

        Ok(PacketPort {
            name: iface.to_owned(),
            rx_ring,
            tx_ring,
            rx_fd,
            tx_fd,
            rx_block: 0,
            rx_cursor: None,
            tx_head: 0,
            tx_kick_pending: false,
            stats: PacketStats::default(),
        })
    }

    /// Received frames dropped for being larger than MAX_FRAME.
    pub fn dropped_oversize(&self) -> u64 {
        self.stats.dropped_oversize
    }

    pub fn stats(&self) -> PacketStats {
        self.stats
    }

    /// Whether frames queued by `send` still wait for a kick (the last one hit a full
    /// socket buffer); `send` with an empty burst kicks again.
    pub fn tx_pending(&self) -> bool {
        self.tx_kick_pending
    }

    /// Hand the current block back to the kernel and move to the next.
    fn release_block(&mut self) {
        let base = self.rx_block * RX_BLOCK_SIZE;
        self.rx_ring
            .status(base + BLOCK_STATUS_OFF)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.rx_block = (self.rx_block + 1) % RX_BLOCK_NR;
        self.rx_cursor = None;
    }

    /// Copy the frame at `off` in the current block into `burst` (or count it dropped).
    /// Returns the offset of the next frame relative to this one (0 for the last).
    fn take_frame(&mut self, base: usize, off: usize, burst: &mut Burst) -> Option<u32> {
        let hdr_end = off.checked_add(RX_SLL_OFF + size_of::<libc::sockaddr_ll>())?;
        if hdr_end > RX_BLOCK_SIZE {
            return None;
        }
        let hdr: libc::tpacket3_hdr = self.rx_ring.read(base + off);
        let sll: libc::sockaddr_ll = self.rx_ring.read(base + off + RX_SLL_OFF);
        let mac = off + usize::from(hdr.tp_mac);
        let snap = hdr.tp_snaplen as usize;
        if mac.checked_add(snap)? > RX_BLOCK_SIZE || snap < MAC_PAIR_LEN {
            return None;
        }
        if sll.sll_pkttype == libc::PACKET_OUTGOING {
            return Some(hdr.tp_next_offset);
        }
        // The kernel strips an 802.1Q tag before packet sockets see the frame and reports
        // it beside the frame; put it back so the switch sees the bytes on the wire.
        let tag = (hdr.tp_status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
            let tpid = if hdr.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                hdr.hv1.tp_vlan_tpid
            } else {
                ETH_P_8021Q
            };
            // Only the low 16 bits of the field carry the TCI.
            (tpid, hdr.hv1.tp_vlan_tci as u16)
        });
        let extra = if tag.is_some() { VLAN_TAG_LEN } else { 0 };
        let wire_len = (hdr.tp_len as usize).max(snap) + extra;
        if wire_len > MAX_FRAME || (hdr.tp_len as usize) > snap {
            self.stats.dropped_oversize += 1;
            return Some(hdr.tp_next_offset);
        }
        let data = self.rx_ring.bytes(base + mac, snap);
        // The caller checked the burst has room.
        let slot = burst.slot()?;
        match tag {
            None => slot[..snap].copy_from_slice(data),
            Some((tpid, tci)) => {
                slot[..MAC_PAIR_LEN].copy_from_slice(&data[..MAC_PAIR_LEN]);
                slot[MAC_PAIR_LEN..MAC_PAIR_LEN + 2].copy_from_slice(&tpid.to_be_bytes());
                slot[MAC_PAIR_LEN + 2..MAC_PAIR_LEN + 4].copy_from_slice(&tci.to_be_bytes());
                slot[MAC_PAIR_LEN + VLAN_TAG_LEN..snap + VLAN_TAG_LEN]
                    .copy_from_slice(&data[MAC_PAIR_LEN..]);
            }
        }
        if hdr.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0 {
            // Sent locally on the peer with checksum offload: only the seed is there.
            if super::csum::complete_partial(&mut slot[..snap + extra]) {
                self.stats.csum_completed += 1;
            }
        }
        burst.commit(snap + extra);
        Some(hdr.tp_next_offset)
    }

    /// Tell the kernel to transmit every slot marked SEND_REQUEST.
    fn kick(&mut self) -> io::Result<()> {
        // SAFETY: a zero-length send with no buffer and no address: the kernel reads
        // nothing from user memory except the TX ring it already knows.
        let rc = unsafe {
            libc::sendto(
                self.tx_fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if rc >= 0 {
            self.tx_kick_pending = false;
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // Socket send buffer or device queue full: the slots stay queued and go out
            // with the next kick.
            Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                self.tx_kick_pending = true;
                Ok(())
            }
            _ => {
                self.tx_kick_pending = true;
                Err(ctx(&self.name, "kicking TX ring")(err))
            }
        }
    }
}

impl Port for PacketPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn backend(&self) -> Backend {
        Backend::AfPacket
    }

    fn recv(&mut self, burst: &mut Burst) -> io::Result<usize> {
        let start = burst.len();
        while !burst.is_full() {
            let base = self.rx_block * RX_BLOCK_SIZE;
            let cursor = match self.rx_cursor {
                Some(c) => c,
                None => {
                    let status = self.rx_ring.status(base + BLOCK_STATUS_OFF);
                    if status.load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                        break;
                    }
                    let desc: libc::tpacket_block_desc = self.rx_ring.read(base);
                    // SAFETY: bh1 is the union's only variant (TPACKET_V3 block header).
                    let bh = unsafe { desc.hdr.bh1 };
                    BlockCursor {
                        left: bh.num_pkts,
                        off: bh.offset_to_first_pkt as usize,
                    }
                }
            };
            if cursor.left == 0 {
                self.release_block();
                continue;
            }
            match self.take_frame(base, cursor.off, burst) {
                Some(next) => {
                    self.rx_cursor = Some(BlockCursor {
                        left: cursor.left - 1,
                        off: cursor.off + next as usize,
                    });
                }
                None => {
                    // A header pointing outside the block: give up on the rest of it.
                    self.stats.dropped_malformed += 1;
                    self.release_block();
                }
            }
        }
        Ok(burst.len() - start)
    }

    fn send(&mut self, burst: &Burst) -> io::Result<usize> {
        let mut queued = 0;
        for frame in burst.iter() {
            let off = self.tx_head * TX_FRAME_SIZE;
            let status = self
                .tx_ring
                .status(off + offset_of!(libc::tpacket2_hdr, tp_status))
                .load(Ordering::Acquire);
            if status & (libc::TP_STATUS_SEND_REQUEST | libc::TP_STATUS_SENDING) != 0 {
                break; // ring full: the kernel still owns the oldest slot
            }
            self.tx_ring
                .bytes_mut(off + TX_DATA_OFF, frame.len())
                .copy_from_slice(frame);
            self.tx_ring.write(
                off + offset_of!(libc::tpacket2_hdr, tp_len),
                frame.len() as u32,
            );
            self.tx_ring
                .status(off + offset_of!(libc::tpacket2_hdr, tp_status))
                .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.tx_head = (self.tx_head + 1) % TX_FRAME_NR;
            queued += 1;
        }
        if queued > 0 || self.tx_kick_pending {
            self.kick()?;
        }
        Ok(queued)
    }

    fn backend_stats(&mut self) -> Vec<(&'static str, u64)> {
        vec![
            ("rx_oversize", self.stats.dropped_oversize),
            ("rx_malformed", self.stats.dropped_malformed),
            ("csum_completed", self.stats.csum_completed),
        ]
    }

    fn fd(&self) -> RawFd {
        self.rx_fd.as_raw_fd()
    }
}

const _: () = assert!(TX_DATA_OFF + MAX_FRAME <= TX_FRAME_SIZE);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::lab::{self, collect, is_test_frame, test_frame, Netns, RawSock};
    use crate::port::BURST;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(5);

    /// A namespace with veth `vpa`<->`vpb`; our port on `vpa`, a plain raw socket on `vpb`.
    fn setup(mtu: Option<&str>) -> (Netns, PacketPort, RawSock) {
        let ns = Netns::new();
        ns.ip(&["link", "add", "vpa", "type", "veth", "peer", "name", "vpb"]);
        if let Some(mtu) = mtu {
            ns.ip(&["link", "set", "vpa", "mtu", mtu]);
            ns.ip(&["link", "set", "vpb", "mtu", mtu]);
        }
        ns.ip(&["link", "set", "vpa", "up"]);
        ns.ip(&["link", "set", "vpb", "up"]);
        let (port, peer) = ns.run(|| {
            let port = PacketPort::open("vpa").unwrap_or_else(|e| panic!("{e}"));
            let peer = RawSock::open("vpb").unwrap_or_else(|e| panic!("raw socket: {e}"));
            (port, peer)
        });
        (ns, port, peer)
    }

    fn recv_all(port: &mut PacketPort, want: usize) -> (Vec<Vec<u8>>, usize) {
        let fd = port.fd();
        collect(want, WAIT, fd, |b| port.recv(b), is_test_frame)
    }

    #[test]
    fn receives_exact_bytes_across_many_bursts() {
        let (_ns, mut port, peer) = setup(None);
        // 100 frames: more than three bursts, lengths from minimum to full MTU.
        let sent: Vec<Vec<u8>> = (0..100u16)
            .map(|i| test_frame(i, 60 + (usize::from(i) * 29) % 1455))
            .collect();
        for f in &sent {
            peer.send(f).unwrap_or_else(|e| panic!("peer send: {e}"));
        }
        let (got, calls) = recv_all(&mut port, sent.len());
        assert_eq!(got.len(), sent.len(), "frames lost");
        assert_eq!(got, sent, "frames differ or out of order");
        assert!(calls >= sent.len().div_ceil(BURST), "{calls} recv calls");
        assert_eq!(port.stats(), PacketStats::default());
    }

    /// A lone frame (ping-like traffic) must make the fd readable without more traffic
    /// filling the block: the block retire timer hands it over.
    #[test]
    fn lone_frame_wakes_the_fd() {
        let (_ns, mut port, peer) = setup(None);
        peer.send(&test_frame(42, 98))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut burst = Burst::new();
        let deadline = std::time::Instant::now() + WAIT;
        while !burst.iter().any(is_test_frame) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                lab::wait_readable(port.fd(), left).unwrap_or_else(|e| panic!("{e}")),
                "fd never became readable"
            );
            burst.clear();
            port.recv(&mut burst).unwrap_or_else(|e| panic!("{e}"));
        }
        let got: Vec<&[u8]> = burst.iter().filter(|f| is_test_frame(f)).collect();
        assert_eq!(got, vec![&test_frame(42, 98)[..]]);
    }

    #[test]
    fn sends_exact_bytes_and_does_not_hear_itself() {
        let (_ns, mut port, peer) = setup(None);
        let sent: Vec<Vec<u8>> = (0..80u16)
            .map(|i| test_frame(i, 60 + (usize::from(i) * 97) % 1455))
            .collect();
        for chunk in sent.chunks(BURST) {
            let mut burst = Burst::new();
            for f in chunk {
                assert!(burst.push(f));
            }
            let n = port.send(&burst).unwrap_or_else(|e| panic!("send: {e}"));
            assert_eq!(n, chunk.len(), "TX ring refused frames");
        }
        let mut got = Vec::new();
        while got.len() < sent.len() {
            match peer.recv(WAIT).unwrap_or_else(|e| panic!("peer recv: {e}")) {
                Some(f) if is_test_frame(&f) => got.push(f),
                Some(_) => {}
                None => break,
            }
        }
        assert_eq!(got.len(), sent.len(), "frames lost");
        assert_eq!(got, sent, "frames differ or out of order");
        // Our own transmissions must not come back up the RX ring.
        let (echo, _) = collect(
            1,
            Duration::from_millis(100),
            port.fd(),
            |b| port.recv(b),
            is_test_frame,
        );
        assert!(
            echo.is_empty(),
            "port received {} of its own frames",
            echo.len()
        );
    }

    #[test]
    fn tx_ring_wraps_around() {
        let (_ns, mut port, peer) = setup(None);
        // More frames than the ring has slots, in bursts, draining the peer as we go.
        let total = TX_FRAME_NR * 2 + 7;
        let mut got = 0usize;
        let mut seq = 0u16;
        while usize::from(seq) < total {
            let mut burst = Burst::new();
            while !burst.is_full() && usize::from(seq) < total {
                burst.push(&test_frame(seq, 128));
                seq += 1;
            }
            let n = port.send(&burst).unwrap_or_else(|e| panic!("send: {e}"));
            assert_eq!(n, burst.len());
            while let Some(f) = peer
                .recv(Duration::from_millis(0))
                .unwrap_or_else(|e| panic!("{e}"))
            {
                if is_test_frame(&f) {
                    assert_eq!(f, test_frame(got as u16, 128));
                    got += 1;
                }
            }
        }
        while got < total {
            match peer.recv(WAIT).unwrap_or_else(|e| panic!("peer recv: {e}")) {
                Some(f) if is_test_frame(&f) => {
                    assert_eq!(f, test_frame(got as u16, 128));
                    got += 1;
                }
                Some(_) => {}
                None => panic!("only {got} of {total} frames arrived"),
            }
        }
    }

    #[test]
    fn oversize_frames_are_counted_and_skipped() {
        let (_ns, mut port, peer) = setup(Some("4000"));
        peer.send(&test_frame(1, 60))
            .unwrap_or_else(|e| panic!("{e}"));
        peer.send(&test_frame(2, MAX_FRAME + 1))
            .unwrap_or_else(|e| panic!("{e}"));
        peer.send(&test_frame(3, 3000))
            .unwrap_or_else(|e| panic!("{e}"));
        peer.send(&test_frame(4, MAX_FRAME))
            .unwrap_or_else(|e| panic!("{e}"));
        let (got, _) = recv_all(&mut port, 2);
        assert_eq!(got, vec![test_frame(1, 60), test_frame(4, MAX_FRAME)]);
        assert_eq!(port.dropped_oversize(), 2);
    }

    #[test]
    fn vlan_tag_stripped_by_kernel_is_put_back() {
        let (_ns, mut port, peer) = setup(None);
        let inner = test_frame(9, 100);
        let mut tagged = inner[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x20, 0x2a]); // PCP 1, VID 42
        tagged.extend_from_slice(&inner[12..]);
        peer.send(&tagged).unwrap_or_else(|e| panic!("{e}"));
        let fd = port.fd();
        let (got, _) = collect(
            1,
            WAIT,
            fd,
            |b| port.recv(b),
            |f| f.len() > 16 && f[12..14] == [0x81, 0x00],
        );
        assert_eq!(got, vec![tagged]);
    }

    /// A veth peer offloads TCP/UDP checksums; what the port hands on must carry real
    /// ones, or the next kernel along drops the packet.
    #[test]
    fn offloaded_checksums_are_completed() {
        let (ns, mut port, _peer) = setup(None);
        ns.ip(&["addr", "add", "172.16.5.1/24", "dev", "vpb"]);
        ns.ip(&[
            "neigh",
            "add",
            "172.16.5.2",
            "lladdr",
            "02:00:5e:10:00:09",
            "dev",
            "vpb",
            "nud",
            "permanent",
        ]);
        ns.run(|| {
            let udp = std::net::UdpSocket::bind("172.16.5.1:0").unwrap_or_else(|e| panic!("{e}"));
            udp.send_to(&[7u8; 333], "172.16.5.2:9")
                .unwrap_or_else(|e| panic!("{e}"));
            // Only the SYN matters; nobody answers, so give up quickly.
            let to = "172.16.5.2:80".parse().unwrap_or_else(|e| panic!("{e}"));
            let _ = std::net::TcpStream::connect_timeout(&to, Duration::from_millis(50));
        });
        let fd = port.fd();
        let ipv4 = |f: &[u8]| f.len() > 34 && f[12..14] == [0x08, 0x00] && matches!(f[23], 6 | 17);
        let (got, _) = collect(2, WAIT, fd, |b| port.recv(b), ipv4);
        assert!(got.iter().any(|f| f[23] == 17), "no UDP frame");
        assert!(got.iter().any(|f| f[23] == 6), "no TCP frame");
        for f in &got {
            assert_eq!(crate::port::csum::l4_checksum_ok(f), Some(true), "{f:02x?}");
        }
        assert!(port.stats().csum_completed >= 2, "{:?}", port.stats());
    }

    #[test]
    fn open_missing_interface_says_which() {
        lab::require_root();
        let err = PacketPort::open("vsp-no-such").err().map(|e| e.to_string());
        let msg = err.unwrap_or_default();
        assert!(msg.contains("vsp-no-such"), "{msg}");
    }
}
