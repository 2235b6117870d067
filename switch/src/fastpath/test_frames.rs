//! Frames and map entries the fast path's program tests share: a TCP reply from the
//! outside (198.51.100.1:5201) to the uplink's mapped port 198.51.100.2:1024, of a
//! session whose container end is 172.18.0.2:40000 behind the gateway 02:42:ac:12:00:01.

use super::*;
use etherparse::PacketBuilder;

pub(super) const GW_MAC: Mac = [2, 0x42, 172, 18, 0, 1];

/// The session's inbound half: the reply as it arrives (from `hop` to `uplink`), as the
/// program must deliver it (to `endpoint`), a FIN of it, and its `nat_in` entry for
/// endpoint port `port`.
pub(super) struct InboundCase {
    pub reply: Vec<u8>,
    pub want: Vec<u8>,
    pub fin: Vec<u8>,
    pub key: NatKey,
    pub value: NatValue,
}

fn tcp(src: Mac, dst: Mac, to: ([u8; 4], u16), ttl: u8, fin: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src, dst)
        .ipv4([198, 51, 100, 1], to.0, ttl)
        .tcp(5201, to.1, 9000, 64000)
        .ack(1001);
    let b = if fin { b.fin() } else { b };
    let mut f = Vec::new();
    b.write(&mut f, &[0x5a; 200]).unwrap();
    f
}

pub(super) fn inbound_case(hop: Mac, uplink: Mac, endpoint: Mac, port: PortId) -> InboundCase {
    let reply = tcp(hop, uplink, ([198, 51, 100, 2], 1024), 64, false);
    let mut key: NatKey = [0; 16];
    key[..12].copy_from_slice(&reply[26..38]);
    let mut value: NatValue = [0; NAT_VALUE_LEN];
    value[..6].copy_from_slice(&endpoint);
    value[6..12].copy_from_slice(&GW_MAC);
    value[12..16].copy_from_slice(&[172, 18, 0, 2]);
    value[16..18].copy_from_slice(&40000u16.to_be_bytes());
    value[20..24].copy_from_slice(&port.to_ne_bytes());
    InboundCase {
        want: tcp(GW_MAC, endpoint, ([172, 18, 0, 2], 40000), 63, false),
        fin: tcp(hop, uplink, ([198, 51, 100, 2], 1024), 64, true),
        reply,
        key,
        value,
    }
}
