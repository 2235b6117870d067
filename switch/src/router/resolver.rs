//! What the embedded resolver asks of the router: its upstream traffic out of the
//! uplink and the replies back to it.

use super::*;
use wire::ethernet::ETHERTYPE_IPV4;
use wire::ip::{IPV4_HLEN, PROTO_TCP, PROTO_UDP};

impl Router {
    /// An upstream query to an IPv6 server, from the uplink's IPv6 address.
    fn send_udp6(
        &mut self,
        sport: u16,
        dst: std::net::SocketAddrV6,
        payload: &[u8],
        out: &mut impl Emit,
        now: Instant,
    ) -> bool {
        let Some(up) = self.cfg.ip6 else {
            return false;
        };
        let src = std::net::SocketAddrV6::new(up.ip, sport, 0, 0);
        let frame = (self.cfg.mac, src);
        let Some(len) = crate::ipv6::udp6_frame(frame, ([0; 6], dst), payload, &mut self.pkt[..])
        else {
            return false;
        };
        self.send6_out(up, len, out, now);
        true
    }

    /// IPv6 UDP to one of the resolver's ports on the uplink's IPv6 address: an upstream
    /// reply, for the dns stage (as [`Router::dns_reply`] for IPv4).
    pub(super) fn dns_reply6(&mut self, frame: &[u8], out: &mut impl Emit) -> bool {
        let (true, Some(up)) = (self.dns, self.cfg.ip6) else {
            return false;
        };
        let Some((_, to, _)) = crate::ipv6::parse_udp6(frame) else {
            return false;
        };
        if *to.ip() != up.ip || !crate::DNS_UPSTREAM_PORTS.contains(&to.port()) {
            return false;
        }
        if out.upstream_reply(frame) {
            self.counters.dns_replies += 1;
        } else {
            self.counters.dns_inbox_full += 1;
        }
        true
    }

    /// UDP or TCP to any of the resolver's ports (`DNS_UPSTREAM_PORTS`: each query goes
    /// out from a random one) on the uplink address goes to the dns stage's queue
    /// (`Emit::upstream_reply`). The resolver takes a reply only on the port its query
    /// went out from (with its ID, server and question); the rest it counts as
    /// `unmatched_replies`.
    pub(super) fn dns_reply(&mut self, frame: &[u8], out: &mut impl Emit) -> bool {
        if !self.dns {
            return false;
        }
        let Some(ip) = Ipv4Frame::new(frame) else {
            return false;
        };
        let Some((_, to)) = ip.endpoints().filter(|(_, to)| *to.ip() == self.cfg.ip) else {
            return false;
        };
        let ours = matches!(ip.proto(), PROTO_UDP | PROTO_TCP)
            && crate::DNS_UPSTREAM_PORTS.contains(&to.port());
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

    /// Send a datagram from the uplink address of `dst`'s family (`sport`) to `dst` by
    /// the uplink; false if it cannot be built (or there is no uplink IPv6 address for
    /// an IPv6 upstream).
    pub fn send_udp(
        &mut self,
        sport: u16,
        dst: std::net::SocketAddr,
        payload: &[u8],
        out: &mut impl Emit,
        now: Instant,
    ) -> bool {
        let dst = match dst {
            std::net::SocketAddr::V4(d) => d,
            std::net::SocketAddr::V6(d) => return self.send_udp6(sport, d, payload, out, now),
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::Sink;

    const ME: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    const UP_MAC: Mac = [2, 0, 0, 0, 0, 1];

    fn router() -> Router {
        let cfg = UplinkConfig {
            ip: ME,
            prefix: 16,
            gateway: Ipv4Addr::new(10, 200, 0, 254),
            mac: UP_MAC,
            nat: NatConfig::default(),
            vtep_ip: None,
            shared: false,
            ip6: None,
        };
        let mut r = Router::new(9, cfg, Arc::new(PortCounters::default())).expect("router");
        r.dns = true;
        r
    }

    /// A datagram from an upstream (198.51.100.1:53) to the uplink address, port `port`.
    fn reply_to(port: u16) -> Vec<u8> {
        let a = ipv4::UdpAddrs {
            src_mac: [2, 0, 0, 0, 0, 0xfe],
            dst_mac: UP_MAC,
            src: std::net::SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 53),
            dst: std::net::SocketAddrV4::new(ME, port),
        };
        let mut buf = [0u8; MAX_FRAME];
        let n = ipv4::udp_frame(&a, &[0x12, 0x34, 0x81, 0x80], &mut buf).expect("fits");
        buf[..n].to_vec()
    }

    #[test]
    fn uplink_udp_to_any_resolver_port_is_set_aside_for_it() {
        let mut r = router();
        let mut nets = HashMap::new();
        let mut out = Sink::default();
        // Each query has a port of its own: every port of the range is the resolver's.
        let ports = [
            *crate::DNS_UPSTREAM_PORTS.start(),
            62345,
            *crate::DNS_UPSTREAM_PORTS.end(),
        ];
        for p in ports {
            r.receive_from_uplink(
                &mut Cx::new(&mut nets, &mut out, Instant::now()),
                &reply_to(p),
            );
        }
        assert_eq!(out.upstream_replies.len(), 3);
        // Below the range (the NAT's) it is not.
        let below = *crate::DNS_UPSTREAM_PORTS.start() - 1;
        r.receive_from_uplink(
            &mut Cx::new(&mut nets, &mut out, Instant::now()),
            &reply_to(below),
        );
        assert_eq!(out.upstream_replies.len(), 3);
        assert_eq!(r.stats().router.dns_replies, 3);
        // Without the resolver, none.
        r.dns = false;
        r.receive_from_uplink(
            &mut Cx::new(&mut nets, &mut out, Instant::now()),
            &reply_to(62345),
        );
        assert_eq!(out.upstream_replies.len(), 3);
    }
}
