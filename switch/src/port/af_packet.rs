//! AF_PACKET port: a TPACKET_V3 mmap'd RX ring (block-based, retired after 1 ms so light
//! traffic stays low-latency) and a TPACKET_V2 TX ring on a second socket that bypasses the
//! qdisc, kicked once per burst. The fallback when AF_XDP is unavailable.
use super::{Backend, Burst, Port, PortError, MAX_FRAME};
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

use wire::ethernet::field::MACS_END as MAC_PAIR_LEN;
use wire::ethernet::ETHERTYPE_VLAN as ETH_P_8021Q;
use wire::vlan::{self, TagRepr, TAG_LEN as VLAN_TAG_LEN};

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

/// Wrap an OS error with the step that failed (the port is named one level up).
fn ctx(what: &str) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
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
    pub fn open(iface: &str) -> Result<PacketPort, PortError> {
        Self::open_io(iface).map_err(|e| PortError::new(Backend::AfPacket, iface, e))
    }

    fn open_io(iface: &str) -> io::Result<PacketPort> {
        let ifindex = ifindex(iface).map_err(ctx("looking up interface"))?;

        let rx_fd = packet_socket().map_err(ctx("creating RX socket"))?;
        let v3 = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        set_opt(&rx_fd, libc::PACKET_VERSION, &v3).map_err(ctx("setting TPACKET_V3"))?;
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
        set_opt(&rx_fd, libc::PACKET_RX_RING, &req).map_err(ctx("setting up RX ring"))?;
        let rx_ring =
            Mmap::ring(&rx_fd, RX_BLOCK_SIZE * RX_BLOCK_NR).map_err(ctx("mapping RX ring"))?;

        let tx_fd = packet_socket().map_err(ctx("creating TX socket"))?;
        let v2 = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        set_opt(&tx_fd, libc::PACKET_VERSION, &v2).map_err(ctx("setting TPACKET_V2"))?;
        set_opt(&tx_fd, libc::PACKET_QDISC_BYPASS, &one)
            .map_err(ctx("setting PACKET_QDISC_BYPASS"))?;
        // A frame the kernel rejects is dropped and its slot freed, instead of marking it
        // WRONG_FORMAT and stalling the ring.
        set_opt(&tx_fd, libc::PACKET_LOSS, &one).map_err(ctx("setting PACKET_LOSS"))?;
        let req = libc::tpacket_req {
            tp_block_size: TX_BLOCK_SIZE as u32,
            tp_block_nr: TX_BLOCK_NR as u32,
            tp_frame_size: TX_FRAME_SIZE as u32,
            tp_frame_nr: TX_FRAME_NR as u32,
        };
        set_opt(&tx_fd, libc::PACKET_TX_RING, &req).map_err(ctx("setting up TX ring"))?;
        let tx_ring =
            Mmap::ring(&tx_fd, TX_BLOCK_SIZE * TX_BLOCK_NR).map_err(ctx("mapping TX ring"))?;

        bind_to(&rx_fd, ifindex, libc::ETH_P_ALL as u16).map_err(ctx("binding RX"))?;
        // Protocol 0 on the TX socket: it never receives, so it never queues copies of
        // the link's traffic that nobody reads.
        bind_to(&tx_fd, ifindex, 0).map_err(ctx("binding TX"))?;

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
                // The snap holds the MACs (checked above) and the slot the tagged frame.
                vlan::push_tag(data, TagRepr::from_tci(tpid, tci), slot)?;
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
                Err(ctx("kicking TX ring")(err))
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
mod tests;
