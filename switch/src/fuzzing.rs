//! Entry points for the fuzz targets (`switch/fuzz`), also run over random inputs by
//! a unit test so CI exercises them: arbitrary bytes through the frame path.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::fdb::{Fdb, Mac};
use crate::gateway::{self, Gateway};
use crate::pipeline::{switch_burst, Emit};
use crate::port::{Burst, MAX_FRAME};
use crate::stats::PortCounters;
use crate::worker::Network;
use crate::{NetConfig, NetId, PortId};

struct Count(usize);

impl Emit for Count {
    fn emit(&mut self, _to: PortId, frame: &[u8], _from: &PortCounters) {
        assert!(frame.len() <= MAX_FRAME);
        self.0 += 1;
    }
    fn learned(&mut self, _net: NetId, _mac: Mac, _port: PortId) {}
    fn route(&mut self, _net: NetId, _in_port: PortId, _frame: &[u8], _from: &PortCounters) {
        self.0 += 1;
    }
    fn dns(&mut self, _net: NetId, _in_port: PortId, _frame: &[u8], _from: &PortCounters) {
        self.0 += 1;
    }
}

/// Split `data` into frames (each prefixed by one length byte, scaled) and switch them
/// as bursts arriving on alternating ports of a small network with a gateway.
pub fn switch_frames(data: &[u8]) {
    let gw = Gateway {
        ip: Ipv4Addr::new(172, 18, 0, 1),
        mac: [0x02, 0x42, 172, 18, 0, 1],
    };
    let mut net = Network {
        cfg: NetConfig {
            id: 1,
            gateway: Some(gw),
            ..Default::default()
        },
        hosts: Default::default(),
        fdb: Fdb::new(16, Duration::from_secs(300)),
        members: vec![0, 1, 2],
    };
    let counters = PortCounters::default();
    let mut out = Count(0);
    let mut scratch = [0u8; MAX_FRAME];
    let mut burst = Burst::new();
    let now = Instant::now();
    let mut rest = data;
    let mut port = 0;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize * 6).min(tail.len());
        let (frame, tail) = tail.split_at(n);
        rest = tail;
        let _ = gateway::arp_reply(&gw, frame, &mut scratch);
        let _ = gateway::icmp_echo_reply(&gw, frame, &mut scratch);
        burst.push(frame);
        if burst.is_full() {
            switch_burst(
                &mut net,
                port,
                &burst,
                &counters,
                &mut out,
                &mut scratch,
                now,
                true,
            );
            burst.clear();
            port = (port + 1) % 3;
        }
    }
    switch_burst(
        &mut net,
        port,
        &burst,
        &counters,
        &mut out,
        &mut scratch,
        now,
        true,
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn frame_path_survives_random_bytes() {
        let mut x: u64 = 0x2545f4914f6cdd1d;
        let mut buf = Vec::new();
        for i in 0..3000 {
            buf.clear();
            for _ in 0..(i % 700) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            // Bias some inputs toward ARP and IPv4/ICMP so the parsers go deep.
            if i % 3 == 0 && buf.len() > 40 {
                buf[0] = 10;
                buf[13..15].copy_from_slice(&[0x08, 0x06]);
            } else if i % 3 == 1 && buf.len() > 40 {
                buf[0] = 12;
                buf[13..17].copy_from_slice(&[0x08, 0x00, 0x45, 0x00]);
            }
            super::switch_frames(&buf);
        }
    }
}
