//! Sending through the switch's own ports: AF_PACKET (TPACKET_V2 TX ring with qdisc
//! bypass), AF_XDP (copy mode, queue 0) and TAP, each opened in the caller's netns.

use super::FrameOut;
use std::io;
use std::time::{Duration, Instant};
use switch::port::af_packet::PacketPort;
use switch::port::af_xdp::XdpPort;
use switch::port::tap::TapPort;
use switch::port::{Burst, Port};

/// A port pktgen sends on, with a way to tell when its queue has drained.
pub enum PortOut {
    Packet(PacketPort),
    // Boxed: the AF_XDP port is several times larger than the others.
    Xdp(Box<XdpPort>),
    Tap(TapPort),
}

impl PortOut {
    pub fn af_packet(iface: &str) -> io::Result<Self> {
        Ok(PortOut::Packet(PacketPort::open(iface)?))
    }
    pub fn af_xdp(iface: &str) -> io::Result<Self> {
        Ok(PortOut::Xdp(Box::new(XdpPort::open(iface)?)))
    }
    /// A new TAP device, brought up (a down TAP refuses writes with EIO).
    pub fn tap(name: &str) -> io::Result<Self> {
        let port = TapPort::create(name)?;
        set_up(name)?;
        Ok(PortOut::Tap(port))
    }

    fn port(&mut self) -> &mut dyn Port {
        match self {
            PortOut::Packet(p) => p,
            PortOut::Xdp(p) => p.as_mut(),
            PortOut::Tap(p) => p,
        }
    }

    fn pending(&self) -> bool {
        match self {
            PortOut::Packet(p) => p.tx_pending(),
            PortOut::Xdp(p) => p.tx_pending() > 0,
            PortOut::Tap(_) => false,
        }
    }
}

/// `ip link set NAME up`, through SIOCGIFFLAGS/SIOCSIFFLAGS on a datagram socket.
fn set_up(name: &str) -> io::Result<()> {
    let ctx = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what} {name}: {e}"));
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name {name:?} is longer than {} bytes",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    // SAFETY: plain socket(2); the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(ctx("open a socket to bring up", io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name; the ioctls read and
    // write only that struct.
    if unsafe { libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(ctx("read the flags of", io::Error::last_os_error()));
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above.
    if unsafe { libc::ioctl(raw, libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(ctx("bring up", io::Error::last_os_error()));
    }
    Ok(())
}

impl FrameOut for PortOut {
    fn send(&mut self, burst: &Burst) -> io::Result<usize> {
        self.port().send(burst)
    }

    fn flush(&mut self, deadline: Instant) -> io::Result<bool> {
        let empty = Burst::new();
        loop {
            // An empty send kicks the ring again and (AF_XDP) reaps completions.
            self.port().send(&empty)?;
            if !self.pending() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}
