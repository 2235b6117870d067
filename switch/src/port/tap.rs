//! TAP port: a non-persistent /dev/net/tun device (IFF_TAP | IFF_NO_PI) created in the
//! caller's network namespace, read and written one frame per syscall. The device lives
//! exactly as long as the port; its fd keeps working from any namespace.
use super::{Backend, Burst, Port, PortError, MAX_FRAME};
use std::ffi::CStr;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// Larger than any frame tun can hand us (64 KiB GSO limit plus headers), so an oversize
/// frame is read whole, recognised and dropped instead of silently truncated.
const SPILL: usize = 64 * 1024 + 256;

/// Counters a port keeps instead of logging on the per-frame path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames from the kernel larger than MAX_FRAME.
    pub dropped_oversize: u64,
    /// Frames the kernel refused on write (EINVAL, e.g. shorter than an Ethernet header).
    pub dropped_invalid: u64,
}

/// A TAP device owned by the switch. Dropping it closes the fd, which deletes the device.
pub struct TapPort {
    name: String,
    fd: OwnedFd,
    /// Tail buffer for reads that overflow the burst slot; allocated once.
    spill: Box<[u8]>,
    stats: TapStats,
}

fn ctx(what: &str) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl TapPort {
    /// Create TAP device `name` in the calling thread's current network namespace.
    pub fn create(name: &str) -> Result<TapPort, PortError> {
        Self::create_io(name).map_err(|e| PortError::new(Backend::Tap, name, e))
    }

    fn create_io(name: &str) -> io::Result<TapPort> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TAP name {name:?} must be 1-{} bytes without NUL",
                    libc::IFNAMSIZ - 1
                ),
            ));
        }
        // tun binds the device to the namespace of whoever opens /dev/net/tun, so this
        // must happen on the (possibly setns'd) calling thread.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")
            .map_err(ctx("opening /dev/net/tun (is the tun module loaded?)"))?;
        let fd = OwnedFd::from(file);

        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `ifr` is, and it
        // outlives the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
        if rc < 0 {
            return Err(ctx("TUNSETIFF")(io::Error::last_os_error()));
        }
        // SAFETY: ifr_name is IFNAMSIZ bytes and started zeroed with at most IFNAMSIZ-1
        // bytes written, and the kernel writes back a NUL-terminated name.
        let created = unsafe { CStr::from_ptr(ifr.ifr_name.as_ptr()) }
            .to_string_lossy()
            .into_owned();

        Ok(TapPort {
            name: created,
            fd,
            spill: vec![0u8; SPILL].into_boxed_slice(),
            stats: TapStats::default(),
        })
    }

    /// Received frames dropped for being larger than MAX_FRAME.
    pub fn dropped_oversize(&self) -> u64 {
        self.stats.dropped_oversize
    }

    pub fn stats(&self) -> TapStats {
        self.stats
    }
}

impl Port for TapPort {
    /// The device name the kernel actually created.
    fn name(&self) -> &str {
        &self.name
    }

    fn backend(&self) -> Backend {
        Backend::Tap
    }

    fn recv(&mut self, burst: &mut Burst) -> io::Result<usize> {
        let mut got = 0;
        while let Some(slot) = burst.slot() {
            let iov = [
                libc::iovec {
                    iov_base: slot.as_mut_ptr().cast(),
                    iov_len: slot.len(),
                },
                libc::iovec {
                    iov_base: self.spill.as_mut_ptr().cast(),
                    iov_len: self.spill.len(),
                },
            ];
            // SAFETY: both iovecs describe live, writable, non-overlapping buffers (a burst
            // slot and our spill buffer) that outlive the call.
            let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(ctx("read")(err)),
                }
            }
            let n = n as usize;
            if n == 0 {
                break;
            }
            if n > MAX_FRAME {
                self.stats.dropped_oversize += 1;
                continue;
            }
            burst.commit(n);
            got += 1;
        }
        Ok(got)
    }

    fn send(&mut self, burst: &Burst) -> io::Result<usize> {
        let mut taken = 0;
        let mut frames = burst.iter();
        let mut next = frames.next();
        while let Some(frame) = next {
            // SAFETY: `frame` is valid for reads of its length for the whole call.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    Some(libc::EINTR) => continue,
                    // This frame is bad, not the device: count it and go on.
                    Some(libc::EINVAL) => self.stats.dropped_invalid += 1,
                    _ if taken > 0 => break,
                    _ => return Err(ctx("write")(err)),
                }
            }
            taken += 1;
            next = frames.next();
        }
        Ok(taken)
    }

    fn backend_stats(&mut self) -> Vec<(&'static str, u64)> {
        vec![
            ("rx_oversize", self.stats.dropped_oversize),
            ("tx_invalid", self.stats.dropped_invalid),
        ]
    }

    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::lab::{self, collect, is_test_frame, test_frame, Netns, RawSock};
    use crate::port::BURST;
    use std::process::Command;
    use std::time::{Duration, Instant};

    const WAIT: Duration = Duration::from_secs(5);
    const TAP: &str = "vspt0";

    /// A namespace holding our TAP (up, `mtu`), and a raw socket on it as the kernel side.
    fn setup(mtu: &str) -> (Netns, TapPort, RawSock) {
        let ns = lab::netns();
        let tap = ns.run(|| TapPort::create(TAP).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(tap.name(), TAP);
        ns.ip(&["link", "set", TAP, "mtu", mtu, "up"]);
        let raw = ns.run(|| RawSock::open(TAP).unwrap_or_else(|e| panic!("raw socket: {e}")));
        (ns, tap, raw)
    }

    fn link_exists(ns: Option<&Netns>, name: &str) -> bool {
        let mut cmd = Command::new("ip");
        if let Some(ns) = ns {
            cmd.args(["-n", ns.name()]);
        }
        let out = cmd
            .args(["link", "show", name])
            .output()
            .unwrap_or_else(|e| panic!("running ip: {e}"));
        out.status.success()
    }

    #[test]
    fn kernel_to_tap_exact_bytes_across_bursts() {
        let (_ns, mut tap, raw) = setup("1500");
        let sent: Vec<Vec<u8>> = (0..70u16)
            .map(|i| test_frame(i, 60 + (usize::from(i) * 31) % 1455))
            .collect();
        for f in &sent {
            raw.send(f).unwrap_or_else(|e| panic!("raw send: {e}"));
        }
        let fd = tap.fd();
        let (got, calls) = collect(sent.len(), WAIT, fd, |b| tap.recv(b), is_test_frame);
        assert_eq!(got, sent, "frames lost, changed or reordered");
        assert!(calls >= sent.len().div_ceil(BURST), "{calls} recv calls");
    }

    #[test]
    fn tap_to_kernel_exact_bytes() {
        let (_ns, mut tap, raw) = setup("1500");
        let sent: Vec<Vec<u8>> = (0..40u16)
            .map(|i| test_frame(i, 60 + (usize::from(i) * 53) % 1455))
            .collect();
        for chunk in sent.chunks(BURST) {
            let mut burst = Burst::new();
            for f in chunk {
                assert!(burst.push(f));
            }
            let n = tap.send(&burst).unwrap_or_else(|e| panic!("send: {e}"));
            assert_eq!(n, chunk.len());
        }
        let mut got = Vec::new();
        while got.len() < sent.len() {
            match raw.recv(WAIT).unwrap_or_else(|e| panic!("raw recv: {e}")) {
                Some(f) if is_test_frame(&f) => got.push(f),
                Some(_) => {}
                None => break,
            }
        }
        assert_eq!(got, sent, "frames lost, changed or reordered");
    }

    /// The kernel resolving a neighbour on the TAP: its ARP request reaches the port, and
    /// the reply the port writes is learnt by the kernel.
    #[test]
    fn arp_round_trip_with_the_kernel() {
        let (ns, mut tap, _raw) = setup("1500");
        ns.ip(&["addr", "add", "172.16.77.1/24", "dev", TAP]);
        ns.run(|| {
            let sock =
                std::net::UdpSocket::bind("172.16.77.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
            sock.send_to(b"x", "172.16.77.2:9")
                .unwrap_or_else(|e| panic!("send_to: {e}"));
        });
        use wire::arp::{Operation, Repr};
        let is_arp = |f: &[u8]| Repr::parse_frame(f).is_ok();
        let fd = tap.fd();
        let (got, _) = collect(1, WAIT, fd, |b| tap.recv(b), is_arp);
        let req = got
            .first()
            .unwrap_or_else(|| panic!("no ARP request from the kernel"));
        assert_eq!(&req[0..6], &[0xff; 6], "not broadcast");
        let r = Repr::parse_frame(req).unwrap_or_else(|e| panic!("ARP: {e}"));
        assert_eq!(r.op, Operation::Request, "not an ARP request");
        assert_eq!(r.sender_ip.octets(), [172, 16, 77, 1], "sender IP");
        assert_eq!(r.target_ip.octets(), [172, 16, 77, 2], "target IP");

        let peer_mac = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x02];
        let mut reply = vec![0u8; 60];
        Repr {
            op: Operation::Reply,
            sender_mac: peer_mac,
            sender_ip: r.target_ip,
            target_mac: r.sender_mac,
            target_ip: r.sender_ip,
        }
        .emit_frame(r.sender_mac, &mut reply) // to the requester
        .unwrap_or_else(|| panic!("a minimum frame"));
        let mut burst = Burst::new();
        assert!(burst.push(&reply));
        assert_eq!(tap.send(&burst).unwrap_or_else(|e| panic!("send: {e}")), 1);

        let deadline = Instant::now() + WAIT;
        loop {
            let out = Command::new("ip")
                .args(["-n", ns.name(), "neigh", "show", "172.16.77.2", "dev", TAP])
                .output()
                .unwrap_or_else(|e| panic!("ip neigh: {e}"));
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if text.contains("02:00:5e:10:00:02") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kernel did not learn the reply: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn oversize_frames_are_counted_and_skipped() {
        let (_ns, mut tap, raw) = setup("4000");
        raw.send(&test_frame(1, 3000))
            .unwrap_or_else(|e| panic!("{e}"));
        raw.send(&test_frame(2, MAX_FRAME + 1))
            .unwrap_or_else(|e| panic!("{e}"));
        raw.send(&test_frame(3, MAX_FRAME))
            .unwrap_or_else(|e| panic!("{e}"));
        let fd = tap.fd();
        let (got, _) = collect(1, WAIT, fd, |b| tap.recv(b), is_test_frame);
        assert_eq!(got, vec![test_frame(3, MAX_FRAME)]);
        assert_eq!(tap.dropped_oversize(), 2);
    }

    #[test]
    fn runt_frame_is_dropped_not_fatal() {
        let (_ns, mut tap, raw) = setup("1500");
        let mut burst = Burst::new();
        assert!(burst.push(&[0xff; 4]));
        assert!(burst.push(&test_frame(5, 64)));
        assert_eq!(tap.send(&burst).unwrap_or_else(|e| panic!("send: {e}")), 2);
        assert_eq!(tap.stats().dropped_invalid, 1);
        let got = raw.recv(WAIT).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, Some(test_frame(5, 64)));
    }

    #[test]
    fn device_lives_in_the_namespace_and_goes_with_the_port() {
        let (ns, tap, raw) = setup("1500");
        assert!(link_exists(Some(&ns), TAP));
        assert!(
            !link_exists(None, TAP),
            "TAP leaked into the host namespace"
        );
        drop(raw);
        drop(tap);
        assert!(!link_exists(Some(&ns), TAP), "TAP survived its port");
    }

    #[test]
    fn bad_names_are_refused() {
        lab::require_root();
        for bad in ["", "sixteen-chars-xx", "a\0b"] {
            let err = TapPort::create(bad).err().map(|e| e.kind());
            assert_eq!(err, Some(io::ErrorKind::InvalidInput), "{bad:?}");
        }
    }
}
