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
        PacketPort::open(iface).map(PortOut::Packet)
    }
    pub fn af_xdp(iface: &str) -> io::Result<Self> {
        XdpPort::open(iface).map(|p| PortOut::Xdp(Box::new(p)))
    }
    pub fn tap(name: &str) -> io::Result<Self> {
        TapPort::create(name).map(PortOut::Tap)
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
