//! AF_PACKET port with TPACKET_V3 mmap rings (placeholder until the backend lands).
use super::{Backend, Burst, Port};
use std::io;
use std::os::fd::RawFd;

pub struct PacketPort {
    name: String,
}

impl PacketPort {
    pub fn open(iface: &str) -> io::Result<Self> {
        let _ = iface;
        Err(io::Error::new(io::ErrorKind::Unsupported, "AF_PACKET backend not built yet"))
    }
}

impl Port for PacketPort {
    fn name(&self) -> &str {
        &self.name
    }
    fn backend(&self) -> Backend {
        Backend::AfPacket
    }
    fn recv(&mut self, _burst: &mut Burst) -> io::Result<usize> {
        Ok(0)
    }
    fn send(&mut self, _burst: &Burst) -> io::Result<usize> {
        Ok(0)
    }
    fn fd(&self) -> RawFd {
        -1
    }
}
