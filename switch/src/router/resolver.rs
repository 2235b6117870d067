//! What the embedded resolver asks of the router: its upstream traffic out of the
//! uplink and the replies back to it.

use super::*;
use wire::ethernet::ETHERTYPE_IPV4;
use wire::ip::{IPV4_HLEN, PROTO_TCP, PROTO_UDP};

impl Router {
    /// UDP to the resolver's port, or TCP to its upstream connections' ports, on the
    /// uplink address goes to the dns stage's queue (`Emit::upstream_reply`).
    pub(super) fn dns_reply(&mut self, frame: &[u8], out: &mut impl Emit) -> bool {
        let Some(port) = self.dns_port else {
            return false;
        };
        let Some(ip) = Ipv4Frame::new(frame) else {
            return false;
        };
        let Some((_, to)) = ip.endpoints().filter(|(_, to)| *to.ip() == self.cfg.ip) else {
            return false;
        };
        let ours = match ip.proto() {
            PROTO_UDP => to.port() == port,
            PROTO_TCP => crate::DNS_UPSTREAM_PORTS.contains(&to.port()),
            _ => false,
        };
        if !ours {
            return false;
        }
        if out.upstream_reply(ip.frame()) {
            self.counters.dns_replies += 1;
        } else {
            self.counters.dns_inbox_full += 1;
        }
        true
    }

    /// The uplink's address, prefix length and gateway.
    pub fn uplink_addr(&self) -> (Ipv4Addr, u8, Ipv4Addr) {
        (self.cfg.ip, self.cfg.prefix, self.cfg.gateway)
    }

    /// Send an IPv4 packet the switch made (from the uplink address) by the uplink.
    pub fn send_ip(&mut self, packet: &[u8], out: &mut impl Emit, now: Instant) {
        let len = ETH_HLEN + packet.len();
        if packet.len() < IPV4_HLEN || len > MAX_FRAME {
            return;
        }
        eth(&mut self.pkt[..]).set_ethertype(ETHERTYPE_IPV4);
        self.pkt[ETH_HLEN..len].copy_from_slice(packet);
        self.send_out(len, out, now);
    }

    /// Send a datagram from the uplink address (`sport`) to `dst` by the uplink; false if
    /// it cannot be built.
    pub fn send_udp(
        &mut self,
        sport: u16,
        dst: std::net::SocketAddrV4,
        payload: &[u8],
        out: &mut impl Emit,
        now: Instant,
    ) -> bool {
        let addrs = ipv4::UdpAddrs {
            src_mac: self.cfg.mac,
            dst_mac: [0; 6],
            src: std::net::SocketAddrV4::new(self.cfg.ip, sport),
            dst,
        };
        let Some(len) = ipv4::udp_frame(&addrs, payload, &mut self.pkt[..]) else {
            return false;
        };
        self.send_out(len, out, now);
        true
    }
}
