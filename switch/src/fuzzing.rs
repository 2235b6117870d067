//! Entry points for the fuzz targets (`switch/fuzz`), also run over random inputs by
//! a unit test so CI exercises them: arbitrary bytes through the frame path and the
//! embedded resolver's frame handling, and the VTEP (decapsulation into an overlay
//! network, encapsulation out of it).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::fdb::{Fdb, Mac};
use crate::gateway::{self, Gateway};
use crate::network::Network;
use crate::pipeline::{switch_burst, Cx, Ingress, Source};
use crate::port::{Burst, MAX_FRAME};
use crate::sinks::Sink;
use crate::stats::PortCounters;
use crate::NetConfig;
use wire::ethernet::{ETHERTYPE_AT, ETHERTYPE_IPV4};
use wire::ip::{ipv4, IPV4_HLEN, PROTO_TCP};
use wire::ETH_HLEN;

/// Split `data` into frames (each prefixed by one length byte, scaled) and switch them
/// as bursts arriving on alternating ports of a small dual-stack network with a gateway
/// (so NDP and ICMPv6 echo meet the gateway's IPv6 side too).
pub fn switch_frames(data: &[u8]) {
    let gw = Gateway {
        ip: Ipv4Addr::new(172, 18, 0, 1),
        mac: [0x02, 0x42, 172, 18, 0, 1],
    };
    let mut net = Network {
        cfg: NetConfig {
            id: 1,
            gateway: Some(gw),
            ipv6: Some(crate::Ipv6Config {
                gateway: Some(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1)),
                subnet: (std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0), 64),
                hosts: Default::default(),
                routed: false,
            }),
            ..Default::default()
        },
        hosts: Default::default(),
        fdb: Fdb::new(16, Duration::from_secs(300)),
        members: vec![0, 1, 2],
        guards: Default::default(),
        storm: Default::default(),
        remote: Default::default(),
    };
    // One remote endpoint, so broadcast ARP and NDP meet the proxies too.
    let remote = crate::remote::RemoteEndpoint {
        mac: [2, 0, 0, 0, 0, 9],
        ip: Some(Ipv4Addr::new(172, 18, 0, 9)),
        ip6: Some(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 9)),
        vtep: Ipv4Addr::new(10, 200, 0, 2),
    };
    let update = crate::remote::RemoteUpdate {
        upsert: vec![remote],
        remove: Vec::new(),
    };
    net.update_remote(&update, Instant::now());
    let counters = PortCounters::default();
    let from = |port| Source {
        port,
        counters: &counters,
        announce_learning: true,
    };
    let mut out = Sink::counting();
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
            let src = from(port);
            switch_burst(&mut net, src, &burst, &mut out, &mut scratch, now);
            burst.clear();
            port = (port + 1) % 3;
        }
    }
    switch_burst(&mut net, from(port), &burst, &mut out, &mut scratch, now);
}

/// Split `data` into frames as `switch_frames` does and hand each to the embedded
/// resolver as a query frame of a DNS network: odd-length-prefixed chunks raw (the
/// frame checks), the others wrapped in a valid UDP datagram to gateway:53 (the DNS
/// parser), and every fourth raw chunk as a TCP segment (the TCP stack).
pub fn dns_frames(data: &[u8]) {
    use std::collections::HashMap;
    let gw = Gateway {
        ip: Ipv4Addr::new(172, 18, 0, 1),
        mac: [0x02, 0x42, 172, 18, 0, 1],
    };
    let mut nets = HashMap::new();
    nets.insert(
        1,
        Network {
            cfg: NetConfig {
                id: 1,
                gateway: Some(gw),
                subnet: Some((Ipv4Addr::new(172, 18, 0, 0), 16)),
                dns: true,
                ..Default::default()
            },
            hosts: Default::default(),
            fdb: Fdb::new(16, Duration::from_secs(300)),
            members: vec![0, 1],
            guards: Default::default(),
            storm: Default::default(),
            remote: Default::default(),
        },
    );
    let Ok(mut d) = crate::dns_server::DnsServer::new(Vec::new()) else {
        return;
    };
    if let Ok(t) = dns::NameTable::new(&[dns::Record {
        name: "web".into(),
        aliases: vec!["front".into()],
        ipv4: Some(Ipv4Addr::new(172, 18, 0, 2)),
        ipv6: None,
    }]) {
        d.set_network(1, Some(std::sync::Arc::new(t)));
    }
    let mut out = Sink::counting();
    let mut frame = [0u8; MAX_FRAME];
    let now = Instant::now();
    let mut rest = data;
    let mut i = 0usize;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize * 6).min(tail.len());
        let (chunk, tail) = tail.split_at(n);
        rest = tail;
        i += 1;
        let f: &[u8] = if len & 1 == 0 {
            let a = crate::ipv4::UdpAddrs {
                src_mac: [2, 0x42, 172, 18, 0, 3],
                dst_mac: gw.mac,
                src: std::net::SocketAddrV4::new(Ipv4Addr::new(172, 18, 0, 3), 40000),
                dst: std::net::SocketAddrV4::new(gw.ip, 53),
            };
            match crate::ipv4::udp_frame(&a, chunk, &mut frame) {
                Some(n) => &frame[..n],
                None => continue,
            }
        } else {
            let n = chunk.len().min(MAX_FRAME);
            frame[..n].copy_from_slice(&chunk[..n]);
            if i & 3 == 0 && n > ETH_HLEN + IPV4_HLEN {
                // Now and then TCP in IPv4: the resolver's TCP side.
                frame[ETHERTYPE_AT..ETH_HLEN].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
                frame[ETH_HLEN + ipv4::PROTO] = PROTO_TCP;
            }
            &frame[..n]
        };
        d.query_frame(
            &mut Cx::new(&mut nets, &mut out, now),
            Ingress {
                net: 1,
                port: (i % 2) as u32,
            },
            f,
        );
    }
    d.tick(&mut Cx::new(
        &mut nets,
        &mut out,
        now + Duration::from_secs(30),
    ));
}

/// Split `data` into chunks (one length byte each, scaled) and give them to the VTEP
/// of a router with one overlay network (VNI 5000): odd-length-prefixed chunks raw as
/// uplink frames (ARP, IPv4, VXLAN parsers), the others as the inner frame of a valid
/// VXLAN datagram from a peer (learning and delivery), and every chunk also as a frame
/// for the tunnel (encapsulation, head-end replication, frag-needed). Emitted frames
/// must fit a port's buffer.
pub fn vtep_frames(data: &[u8]) {
    use std::collections::HashMap;
    use std::sync::Arc;
    let me = Ipv4Addr::new(10, 200, 0, 1);
    let peer = Ipv4Addr::new(10, 200, 0, 2);
    let up_mac: Mac = [2, 0, 0, 0, 0, 1];
    let cfg = crate::UplinkConfig {
        ip: me,
        prefix: 16,
        gateway: Ipv4Addr::new(10, 200, 0, 254),
        mac: up_mac,
        nat: nat::NatConfig::default(),
        vtep_ip: None,
        shared: false,
        ip6: Some(crate::router::Uplink6 {
            ip: std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 2),
            prefix: 64,
            gateway: std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1),
        }),
    };
    let Ok(mut r) = crate::router::Router::new(9, cfg, Arc::new(PortCounters::default())) else {
        return;
    };
    let overlay = crate::OverlayConfig {
        vni: 5000,
        peers: vec![peer],
    };
    r.set_overlay(1, Some(&overlay));
    let mut nets = HashMap::new();
    nets.insert(
        1,
        Network {
            cfg: NetConfig {
                id: 1,
                gateway: Some(Gateway {
                    ip: Ipv4Addr::new(172, 28, 0, 1),
                    mac: [0x02, 0x42, 172, 28, 0, 1],
                }),
                subnet: Some((Ipv4Addr::new(172, 28, 0, 0), 24)),
                overlay: Some(overlay),
                ..Default::default()
            },
            hosts: Default::default(),
            fdb: Fdb::new(16, Duration::from_secs(300)),
            members: vec![0, 1],
            guards: Default::default(),
            storm: Default::default(),
            remote: Default::default(),
        },
    );
    let Ok(vni) = vxlan::Vni::new(5000) else {
        return;
    };
    let mut remote = vxlan::Vtep::new(vxlan::VtepConfig::new([2, 0, 0, 0, 0, 2], peer));
    let mut out = Sink::counting();
    let mut wrapped = [0u8; MAX_FRAME];
    let now = Instant::now();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize * 6).min(tail.len());
        let (frame, tail) = tail.split_at(n);
        rest = tail;
        if len % 2 == 1 {
            r.receive_from_uplink(&mut Cx::new(&mut nets, &mut out, now), frame);
            r.observe_from_uplink(frame, now);
        } else if let Ok(w) = remote.encapsulate(vni, me, up_mac, frame, &mut wrapped) {
            r.receive_from_uplink(&mut Cx::new(&mut nets, &mut out, now), &wrapped[..w]);
        }
        r.tunnel_out(
            &mut Cx::new(&mut nets, &mut out, now),
            Ingress { net: 1, port: 0 },
            frame,
        );
    }
}

/// Port security over arbitrary frames: a guard for one MAC and address (and an
/// allowed extra), then the check on the input, which must never panic and never let
/// through a frame whose source MAC is not the guard's.
pub fn port_guard(data: &[u8]) {
    let mac: Mac = [2, 0x42, 172, 18, 0, 2];
    let extra: Mac = [2, 0, 0, 0, 0, 9];
    let ips = [Ipv4Addr::new(172, 18, 0, 2), Ipv4Addr::new(172, 18, 0, 100)];
    let ip6 = std::net::Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 2);
    let Some(g) = crate::port_security::PortGuard::new(&[mac, extra], &ips, &[ip6]) else {
        return;
    };
    let allowed = g.allows(data);
    if allowed {
        let src = &data[6..12];
        assert!(
            src == mac || src == extra,
            "a frame from another MAC passed"
        );
        let ethertype = u16::from_be_bytes([data[12], data[13]]);
        assert!(
            !matches!(ethertype, 0x8100 | 0x88a8 | 0x9100),
            "a tagged frame passed"
        );
        if ethertype == ETHERTYPE_IPV4 {
            assert!(ips.iter().any(|ip| ip.octets()[..] == data[26..30]));
        }
        if ethertype == wire::ethernet::ETHERTYPE_IPV6 {
            use crate::port_security::link_local;
            let src: [u8; 16] = data[22..38].try_into().expect("a whole IPv6 header");
            let src = std::net::Ipv6Addr::from(src);
            assert!(
                [ip6, link_local(mac), link_local(extra)].contains(&src) || src.is_unspecified(),
                "IPv6 from another address passed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn port_guard_survives_random_frames() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut buf = Vec::new();
        for i in 0..5000 {
            random_bytes(&mut x, i % 120, &mut buf);
            // Half from the guard's own MAC, so the deeper checks run.
            if i % 2 == 0 && buf.len() >= 14 {
                buf[6..12].copy_from_slice(&[2, 0x42, 172, 18, 0, 2]);
            }
            super::port_guard(&buf);
        }
    }

    #[test]
    fn frame_path_survives_random_bytes() {
        let mut x: u64 = 0x2545f4914f6cdd1d;
        let mut buf = Vec::new();
        for i in 0..3000 {
            random_bytes(&mut x, i % 700, &mut buf);
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

    /// Refill `buf` with `n` xorshift bytes (deterministic, so a failure reproduces).
    fn random_bytes(x: &mut u64, n: usize, buf: &mut Vec<u8>) {
        buf.clear();
        for _ in 0..n {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            buf.push(*x as u8);
        }
    }

    #[test]
    fn resolver_survives_random_frames() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut buf = Vec::new();
        for i in 0..2000 {
            random_bytes(&mut x, i % 600, &mut buf);
            if i % 2 == 0 && buf.len() > 20 {
                // A plausible DNS header: one question.
                buf[0] = 40;
                buf[3..5].copy_from_slice(&[0x01, 0x00]);
                buf[5..7].copy_from_slice(&[0, 1]);
            }
            super::dns_frames(&buf);
        }
    }

    #[test]
    fn vtep_survives_random_frames() {
        let mut x: u64 = 0x2545f4914f6cdd1d;
        let mut buf = Vec::new();
        for i in 0..2000 {
            random_bytes(&mut x, i % 900, &mut buf);
            // Bias some chunks toward IPv4/UDP to the VTEP on port 4789.
            if i % 2 == 0 && buf.len() > 60 {
                buf[0] = 9;
                buf[1..7].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
                buf[13..17].copy_from_slice(&[0x08, 0x00, 0x45, 0x00]);
                buf[24] = 17;
                buf[31..35].copy_from_slice(&[10, 200, 0, 1]);
                buf[37..39].copy_from_slice(&4789u16.to_be_bytes());
                buf[43] = 0x08;
            }
            super::vtep_frames(&buf);
        }
    }
}
