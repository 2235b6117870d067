//! The host port: the host's own network stack as a port of the switch (`vswitch0` in
//! the daemon's namespace, like Docker's docker0 or OVS's LOCAL port). It is an L3 link:
//! the host routes every container subnet via the switch's address on it, and the
//! switch sends containers' traffic for the host's addresses to it. No NAT either way,
//! internal networks included (internal means no way out, not no way to the host).
//!
//! It lives on the router's worker (the first), beside the router, and works with or
//! without an uplink.

use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::Serialize;

use crate::deliver::{to_endpoint, Delivery};
use crate::fdb::Mac;
use crate::gateway::{self, Gateway};
use crate::ipv4::{self, IcmpError, ETH_HLEN};
use crate::pipeline::{Cx, Emit, Ingress};
use crate::port::MAX_FRAME;
use crate::stats::PortCounters;
use crate::PortId;
use wire::ethernet;
use wire::ip::Ipv4Frame;

/// The link between the host and the switch.
#[derive(Clone, Debug)]
pub struct HostPortConfig {
    /// The host's addresses containers reach it by, the host port's own first (what
    /// `host-gateway` names); container traffic to any of them goes to the host.
    pub host_ips: Vec<Ipv4Addr>,
    /// The host end's MAC: frames for the host go to it.
    pub host_mac: Mac,
    /// The switch's address on the link: the host's next hop to every container subnet.
    pub ip: Ipv4Addr,
    /// The switch end's MAC.
    pub mac: Mac,
}

#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize)]
pub struct HostPortCounters {
    /// Container traffic sent to the host.
    pub to_host: u64,
    /// Traffic from the host delivered to a container.
    pub from_host: u64,
    /// From the host, for an address no endpoint has.
    pub unknown_host: u64,
    pub ttl_exceeded: u64,
    /// ARP requests and echo requests for the switch's address answered.
    pub answered: u64,
    /// From the host, neither IPv4 nor ARP for the switch (IPv6 included).
    pub ignored: u64,
}

/// What `stats` shows of the host port.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct HostPortStats {
    pub port: PortId,
    pub ip: Ipv4Addr,
    pub host_ips: Vec<Ipv4Addr>,
    pub counters: HostPortCounters,
}

pub(crate) struct HostLink {
    port: PortId,
    cfg: HostPortConfig,
    counters: HostPortCounters,
    port_counters: Arc<PortCounters>,
    pkt: Box<[u8; MAX_FRAME]>,
    scratch: Box<[u8; MAX_FRAME]>,
}

impl HostLink {
    pub fn new(port: PortId, cfg: HostPortConfig, port_counters: Arc<PortCounters>) -> Self {
        HostLink {
            port,
            cfg,
            counters: HostPortCounters::default(),
            port_counters,
            pkt: Box::new([0u8; MAX_FRAME]),
            scratch: Box::new([0u8; MAX_FRAME]),
        }
    }

    pub fn stats(&self) -> HostPortStats {
        HostPortStats {
            port: self.port,
            ip: self.cfg.ip,
            host_ips: self.cfg.host_ips.clone(),
            counters: self.counters,
        }
    }

    /// Whether a routed frame to `dst` is the host's.
    pub fn wants(&self, dst: Ipv4Addr) -> bool {
        self.cfg.host_ips.contains(&dst)
    }

    /// A container's frame for one of the host's addresses (the router stage checked
    /// [`HostLink::wants`]): to the host end, TTL decremented.
    pub fn send_from_network(&mut self, cx: &mut Cx<impl Emit>, from: Ingress, frame: &[u8]) {
        let Some(ip) = Ipv4Frame::new(frame) else {
            return;
        };
        let len = ETH_HLEN + ip.total_len();
        self.pkt[..len].copy_from_slice(&frame[..len]);
        if ipv4::decrement_ttl(&mut self.pkt[ETH_HLEN..len]).is_none() {
            self.counters.ttl_exceeded += 1;
            let gw = cx.nets.get(&from.net).and_then(|n| n.cfg.gateway);
            if let Some(gw) = gw {
                let kind = IcmpError::TtlExceeded;
                if let Some(n) = ipv4::icmp_error(kind, frame, gw.mac, gw.ip, &mut *self.scratch) {
                    cx.out
                        .emit(from.port, &self.scratch[..n], &self.port_counters);
                }
            }
            return;
        }
        let mut e = ethernet::Frame::new_checked(&mut self.pkt[..]).expect("an Ethernet header");
        e.set_dst(self.cfg.host_mac);
        e.set_src(self.cfg.mac);
        self.counters.to_host += 1;
        cx.out
            .emit(self.port, &self.pkt[..len], &self.port_counters);
    }

    /// A frame the host sent: ARP and ping for the switch's address are answered, IPv4
    /// for a container goes to it.
    pub fn receive(&mut self, cx: &mut Cx<impl Emit>, frame: &[u8]) {
        let me = Gateway {
            ip: self.cfg.ip,
            mac: self.cfg.mac,
        };
        let answer = gateway::arp_reply(&me, frame, &mut *self.scratch)
            .or_else(|| gateway::icmp_echo_reply(&me, frame, &mut *self.scratch));
        if let Some(n) = answer {
            self.counters.answered += 1;
            cx.out
                .emit(self.port, &self.scratch[..n], &self.port_counters);
            return;
        }
        let to_us = ethernet::Frame::new_checked(frame).is_ok_and(|f| f.dst() == self.cfg.mac);
        // The host's own stack only: what the host forwards (it may route for others)
        // does not reach containers around the switch's NAT and published ports.
        let from_host = |ip: &Ipv4Frame<'_>| to_us && self.cfg.host_ips.contains(&ip.src());
        let Some(ip) = Ipv4Frame::new(frame).filter(from_host) else {
            self.counters.ignored += 1;
            return;
        };
        let len = ETH_HLEN + ip.total_len();
        self.pkt[..len].copy_from_slice(&frame[..len]);
        crate::port::csum::complete_if_partial(&mut self.pkt[..len]);
        let (nets, out, now) = (&mut *cx.nets, &mut *cx.out, cx.now);
        match to_endpoint(nets, &mut self.pkt[..], len, out, &self.port_counters, now) {
            Delivery::Delivered => self.counters.from_host += 1,
            Delivery::UnknownHost => self.counters.unknown_host += 1,
            Delivery::TtlExceeded => self.counters.ttl_exceeded += 1,
        }
    }
}
