//! Decapsulation: is a frame from the uplink VXLAN for this VTEP? If so, its VNI, the
//! sending VTEP and the inner frame (a slice of the input, nothing copied); if it is
//! something else (another protocol, another address, another port) it is passed on to
//! the rest of the pipeline; if it is VXLAN for us but unusable it is dropped, with a
//! reason to count.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::encap::Vtep;
use crate::wire::{
    self, field, Packet, Repr, ETHERTYPE_IPV4, ETH_HLEN, IPV4_HLEN, IP_FRAGMENT_MASK,
    IP_OFFSET_MASK, PROTO_UDP, UDP_HLEN, VXLAN_HLEN,
};
use crate::{Mac, Vni};
use ::wire::checksum::{checksum, pseudo_header};

/// A VXLAN frame for this VTEP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decapsulated<'a> {
    /// As sent; whether this host has the network is the caller's (or
    /// [`crate::Overlay`]'s) question.
    pub vni: Vni,
    /// The sending VTEP: where replies to the inner source MAC go.
    pub outer_src: Ipv4Addr,
    /// The outer Ethernet source (the sending VTEP or the underlay router).
    pub outer_src_mac: Mac,
    /// The inner Ethernet frame, without the outer headers or any Ethernet padding.
    pub inner: &'a [u8],
}

/// Why a frame is not VXLAN for this VTEP: the rest of the pipeline handles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassReason {
    /// Not an IPv4 frame (ARP, IPv6, VLAN-tagged, a runt).
    NotIpv4,
    /// IPv4 to another address.
    NotForUs,
    /// IPv4 to us but not UDP.
    NotUdp,
    /// UDP to us on another port (DNS, NAT replies, published ports).
    OtherPort,
    /// A non-first fragment: it carries no UDP header, so it cannot be VXLAN as far as
    /// this VTEP is concerned (the VTEP never fragments and never reassembles).
    Fragment,
}

/// Why a frame that is VXLAN for this VTEP (or invalid IPv4 to it) is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// IPv4 header length below 20 bytes or above the total length.
    BadIpHeader,
    BadIpChecksum,
    /// The frame ends before the lengths its headers claim, or the UDP datagram is too
    /// short for a VXLAN header and an inner Ethernet header.
    Truncated,
    /// The UDP length disagrees with the IPv4 total length.
    BadLength,
    BadUdpChecksum,
    /// A first fragment of a VXLAN datagram: VTEPs must not fragment (RFC 7348 sec. 4.3).
    Fragment,
    /// The I flag is clear: the VNI is not valid.
    BadFlags,
    /// No overlay network with this VNI here (set by the caller's VNI lookup).
    UnknownVni,
    /// From a VTEP that is not one of the network's peers: anyone who can reach UDP
    /// 4789 could otherwise inject frames and take over MACs (set by the overlay).
    UnknownPeer,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::BadIpHeader,
        DropReason::BadIpChecksum,
        DropReason::Truncated,
        DropReason::BadLength,
        DropReason::BadUdpChecksum,
        DropReason::Fragment,
        DropReason::BadFlags,
        DropReason::UnknownVni,
        DropReason::UnknownPeer,
    ];

    /// A dense index for per-reason counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What to do with a frame from the uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decap<'a> {
    Frame(Decapsulated<'a>),
    Pass(PassReason),
    Drop(DropReason),
}

impl Vtep {
    /// Classifies `frame`, an Ethernet frame received on the uplink. Never panics.
    pub fn decapsulate<'a>(&self, frame: &'a [u8]) -> Decap<'a> {
        decapsulate(self.config(), frame)
    }
}

fn decapsulate<'a>(cfg: &crate::VtepConfig, frame: &'a [u8]) -> Decap<'a> {
    use DropReason::*;
    use PassReason::*;
    if wire::be16(frame, field::eth::ETHERTYPE) != Some(ETHERTYPE_IPV4) {
        return Decap::Pass(NotIpv4);
    }
    let ip = &frame[ETH_HLEN..];
    let Some(&ver_ihl) = ip.first() else {
        return Decap::Pass(NotIpv4);
    };
    if ver_ihl >> 4 != 4 || ip.len() < IPV4_HLEN {
        return Decap::Pass(NotIpv4);
    }
    // From here the 20 fixed bytes are present.
    if wire::addr(ip, field::ipv4::DST) != Some(cfg.ip) {
        return Decap::Pass(NotForUs);
    }
    if ip[field::ipv4::PROTO] != PROTO_UDP {
        return Decap::Pass(NotUdp);
    }
    let frag = wire::be16(ip, field::ipv4::FRAG).unwrap_or(0);
    if frag & IP_OFFSET_MASK != 0 {
        return Decap::Pass(PassReason::Fragment);
    }
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    let total = usize::from(wire::be16(ip, field::ipv4::TOTAL_LEN).unwrap_or(0));
    if ihl < IPV4_HLEN || total < ihl {
        return Decap::Drop(BadIpHeader);
    }
    if total > ip.len() {
        return Decap::Drop(Truncated);
    }
    if checksum(&ip[..ihl], 0) != 0 {
        return Decap::Drop(BadIpChecksum);
    }
    // Bytes past the total length are Ethernet padding: ignored.
    let udp = &ip[ihl..total];
    let Some(dport) = wire::be16(udp, field::udp::DST_PORT) else {
        return Decap::Drop(Truncated);
    };
    if dport != cfg.port {
        return Decap::Pass(OtherPort);
    }
    if frag & IP_FRAGMENT_MASK != 0 {
        return Decap::Drop(DropReason::Fragment);
    }
    let udp_len = usize::from(wire::be16(udp, field::udp::LEN).unwrap_or(0));
    if udp.len() < UDP_HLEN || udp_len != udp.len() {
        return Decap::Drop(if udp_len > udp.len() || udp.len() < UDP_HLEN {
            Truncated
        } else {
            BadLength
        });
    }
    if udp.len() < UDP_HLEN + VXLAN_HLEN + ETH_HLEN {
        return Decap::Drop(Truncated);
    }
    let udp_sum = wire::be16(udp, field::udp::CHECKSUM).unwrap_or(0);
    if udp_sum != 0 && cfg.verify_udp_checksum {
        let (Some(src), Some(dst)) = (
            wire::addr(ip, field::ipv4::SRC),
            wire::addr(ip, field::ipv4::DST),
        ) else {
            return Decap::Drop(Truncated);
        };
        if checksum(
            udp,
            pseudo_header(src.octets(), dst.octets(), PROTO_UDP, udp.len()),
        ) != 0
        {
            return Decap::Drop(BadUdpChecksum);
        }
    }
    let Ok(vx) = Packet::new_checked(&udp[UDP_HLEN..]) else {
        return Decap::Drop(Truncated);
    };
    let Ok(repr) = Repr::parse(&vx) else {
        return Decap::Drop(BadFlags);
    };
    let (Some(outer_src), Some(outer_src_mac)) = (
        wire::addr(ip, field::ipv4::SRC),
        wire::mac(frame, field::eth::SRC),
    ) else {
        return Decap::Drop(Truncated);
    };
    Decap::Frame(Decapsulated {
        vni: Vni::from_wire(repr.vni),
        outer_src,
        outer_src_mac,
        inner: &udp[UDP_HLEN + VXLAN_HLEN..],
    })
}
