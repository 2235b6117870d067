//! TAP port via /dev/net/tun (placeholder until the backend lands).
use super::{Backend, Burst, Port};
use std::io;
use std::os::fd::RawFd;

pub struct TapPort {
    name: String,
}

impl TapPort {
    pub fn open(iface: &str) -> io::Result<Self> {
        let _ = iface;
        Err(io::Error::new(io::ErrorKind::Unsupported, "TAP backend not built yet"))
    }
}

impl Port for TapPort {
    fn name(&self) -> &str {
        &self.name
    }
    fn backend(&self) -> Backend {
        Backend::Tap
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
