//! Test lab for the port backends: what is specific to them on top of the shared
//! `netlab` (namespaces, `ip`, code run inside a namespace): a plain AF_PACKET socket as
//! the far end that the backends under test are checked against, test frames, and a
//! bounded receive loop.
use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub use netlab::{in_netns as run_in, ip_out, require_root, Netns};

/// Every namespace a port test creates starts with this (plus the pid), so `make
/// clean-lab` can find leftovers.
pub const PREFIX: &str = "vsp";

/// A fresh namespace for one port test (`vsp<pid>n<seq>`), IPv6 off so the kernel adds
/// no chatter of its own to the links; deleted on drop.
pub fn netns() -> Netns {
    Netns::numbered(PREFIX).without_ipv6()
}

/// A plain (non-mmap) AF_PACKET socket bound to one interface: the independent far end.
pub struct RawSock {
    fd: OwnedFd,
    ifindex: libc::c_int,
}

impl RawSock {
    /// Open on `iface` in the calling thread's namespace. Ignores its own transmissions.
    pub fn open(iface: &str) -> io::Result<RawSock> {
        let cname = CString::new(iface)?;
        // SAFETY: valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) } as libc::c_int;
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain syscall.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                proto.into(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let sock = RawSock { fd, ifindex };
        sock.opt(
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            1 as libc::c_int,
        )?;
        // Room for a few hundred frames sent before the test reads any.
        sock.opt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20)?;
        let sll = sock.addr(libc::ETH_P_ALL as u16);
        // SAFETY: valid sockaddr_ll and matching length.
        let rc = unsafe {
            libc::bind(
                sock.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    fn opt(&self, level: libc::c_int, name: libc::c_int, val: libc::c_int) -> io::Result<()> {
        // SAFETY: `val` is a live c_int and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (&val as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn addr(&self, proto: u16) -> libc::sockaddr_ll {
        // SAFETY: plain data, zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto.to_be();
        sll.sll_ifindex = self.ifindex;
        sll
    }

    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is valid for its length; the kernel only reads it.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        assert_eq!(n as usize, frame.len(), "short raw send");
        Ok(())
    }

    /// Next received frame, or None after `timeout`.
    pub fn recv(&self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        if !wait_readable(self.fd.as_raw_fd(), timeout)? {
            return Ok(None);
        }
        let mut buf = vec![0u8; 65536];
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(Some(buf))
    }
}

/// poll() one fd for input; false on timeout.
pub fn wait_readable(fd: libc::c_int, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc > 0)
}

/// A test frame: broadcast destination, locally administered source, the IEEE local
/// experimental ethertype (so nothing in the kernel reacts to it), then `seq` and filler
/// up to `len` bytes.
pub const TEST_ETHERTYPE: u16 = 0x88b5;

pub fn test_frame(seq: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
    f.extend_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u8).wrapping_mul(7) ^ seq as u8);
    }
    f
}

/// Is this one of ours (ethertype at 12, untagged)?
pub fn is_test_frame(f: &[u8]) -> bool {
    wire::ethernet::ethertype(f) == Some(TEST_ETHERTYPE)
}

/// Receive with `recv` until `want` test frames arrived or `within` passed; frames of
/// other kinds (kernel chatter) are skipped. Returns the frames and how many calls of
/// `recv` returned something.
pub fn collect(
    want: usize,
    within: Duration,
    fd: libc::c_int,
    mut recv: impl FnMut(&mut super::Burst) -> io::Result<usize>,
    keep: impl Fn(&[u8]) -> bool,
) -> (Vec<Vec<u8>>, usize) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut calls = 0;
    let mut burst = super::Burst::new();
    while got.len() < want {
        burst.clear();
        let n = recv(&mut burst).unwrap_or_else(|e| panic!("recv: {e}"));
        if n > 0 {
            calls += 1;
            got.extend(burst.iter().filter(|f| keep(f)).map(<[u8]>::to_vec));
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        wait_readable(fd, left.min(Duration::from_millis(50)))
            .unwrap_or_else(|e| panic!("poll: {e}"));
    }
    (got, calls)
}
