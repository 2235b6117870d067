//! Encapsulation (RFC 7348 section 5): the VTEP's configuration, the UDP source port
//! chosen from a hash of the inner flow (so the underlay's ECMP spreads flows but keeps
//! each one on one path), and the outer headers written in front of the inner frame in
//! a buffer the caller owns. The VTEP never fragments: too big is an error.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::EncapError;
use crate::wire::{
    self, field, OuterRepr, ETHERTYPE_IPV4, ETH_HLEN, IP_FRAGMENT_MASK, OUTER_IP_OVERHEAD,
    OUTER_LEN, PROTO_TCP, PROTO_UDP, UDP_HLEN, VXLAN_PORT,
};
use crate::{Mac, Vni};
use ::wire::checksum::{checksum, pseudo_header, udp_sent};
use ::wire::ethernet::ETHERTYPE_IPV6;
use ::wire::ipv6::Ipv6Packet;

/// An inclusive range of UDP source ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl Default for PortRange {
    /// The dynamic range RFC 7348 recommends (49152-65535). Linux's vxlan device uses
    /// the host's ephemeral range (`ip_local_port_range`, 32768-60999) unless given
    /// `srcport MIN MAX`; both are fine for receivers, which ignore the source port.
    fn default() -> Self {
        PortRange {
            first: 49152,
            last: 65535,
        }
    }
}

/// Maps a flow hash into `range` the way Linux's `udp_flow_src_port` does: a
/// multiply-shift, so every port of the range is reached evenly.
pub fn source_port(hash: u32, range: PortRange) -> u16 {
    let (lo, hi) = if range.first <= range.last {
        (range.first, range.last)
    } else {
        (range.last, range.first)
    };
    let span = u64::from(hi - lo) + 1;
    lo + ((u64::from(hash) * span) >> 32) as u16
}

/// A hash of the inner frame's flow: Ethernet destination and source and, for IPv4 and
/// IPv6, the addresses and protocol, plus the ports for TCP and UDP (not in fragments,
/// whose later pieces carry none, so every piece of a datagram hashes alike; not behind
/// IPv6 extension headers, which are not walked). Deterministic: every worker and every
/// restart picks the same source port for a flow.
pub fn flow_hash(inner: &[u8]) -> u32 {
    let mut h = Hasher(0x5bd1_e995_9e37_79b9);
    if let (Some(dst), Some(src)) = (
        wire::mac(inner, field::eth::DST),
        wire::mac(inner, field::eth::SRC),
    ) {
        h.bytes(&dst);
        h.bytes(&src);
    }
    if let Some(ip) = inner.get(ETH_HLEN..) {
        match wire::be16(inner, field::eth::ETHERTYPE) {
            Some(ETHERTYPE_IPV4) => ip_flow(&mut h, ip),
            Some(ETHERTYPE_IPV6) => ipv6_flow(&mut h, ip),
            _ => None,
        };
    }
    h.finish()
}

fn ipv6_flow(h: &mut Hasher, ip: &[u8]) -> Option<()> {
    let p = Ipv6Packet::new_checked(ip).ok()?;
    h.bytes(&p.src().octets());
    h.bytes(&p.dst().octets());
    let next = p.next_header();
    h.word(u64::from(next));
    if next == PROTO_TCP || next == PROTO_UDP {
        h.bytes(p.payload().get(..4)?);
    }
    Some(())
}

fn ip_flow(h: &mut Hasher, ip: &[u8]) -> Option<()> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let proto = *ip.get(field::ipv4::PROTO)?;
    h.bytes(&wire::addr(ip, field::ipv4::SRC)?.octets());
    h.bytes(&wire::addr(ip, field::ipv4::DST)?.octets());
    h.word(u64::from(proto));
    let fragment = wire::be16(ip, field::ipv4::FRAG)? & IP_FRAGMENT_MASK != 0;
    if (proto == PROTO_TCP || proto == PROTO_UDP) && !fragment && ihl >= wire::IPV4_HLEN {
        h.bytes(ip.get(ihl..ihl + 4)?);
    }
    Some(())
}

/// A small multiply-xorshift hash (no random seed, unlike `ahash`): see `flow_hash`.
struct Hasher(u64);

impl Hasher {
    fn word(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 ^= self.0 >> 29;
    }

    fn bytes(&mut self, b: &[u8]) {
        let mut v = 0u64;
        for (i, x) in b.iter().enumerate() {
            v |= u64::from(*x) << (8 * (i % 8));
        }
        self.word(v ^ (b.len() as u64) << 56);
    }

    /// MurmurHash3's 64-bit finaliser, folded to 32 bits.
    fn finish(&self) -> u32 {
        let mut k = self.0;
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^= k >> 33;
        (k ^ (k >> 32)) as u32
    }
}

/// One VTEP: the host's end of every tunnel, on the uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VtepConfig {
    /// The uplink's MAC: the outer Ethernet source.
    pub mac: Mac,
    /// The uplink's address: the outer IPv4 source, and the destination tunnels use.
    pub ip: Ipv4Addr,
    /// UDP destination port sent to and listened on (4789).
    pub port: u16,
    pub src_ports: PortRange,
    /// Outer TTL (64).
    pub ttl: u8,
    /// The underlay MTU: the largest outer IPv4 packet sent (1500).
    pub mtu: usize,
    /// Send a UDP checksum (Linux's default) instead of 0 (RFC 7348's SHOULD, and
    /// cheaper: the inner frame carries its own checksums).
    pub udp_checksum: bool,
    /// Verify a non-zero UDP checksum on receipt (RFC 7348: MAY).
    pub verify_udp_checksum: bool,
}

impl VtepConfig {
    /// Defaults for the uplink with this MAC and address.
    pub fn new(mac: Mac, ip: Ipv4Addr) -> Self {
        VtepConfig {
            mac,
            ip,
            port: VXLAN_PORT,
            src_ports: PortRange::default(),
            ttl: 64,
            mtu: 1500,
            udp_checksum: false,
            verify_udp_checksum: true,
        }
    }

    /// The largest inner Ethernet frame (header included) that fits the underlay MTU.
    pub fn max_inner_frame(&self) -> usize {
        self.mtu.saturating_sub(OUTER_IP_OVERHEAD)
    }
}

/// A VTEP's encapsulation state: its configuration and the outer IP ID counter. Each
/// worker owns one (the IDs of DF packets need not be unique, RFC 6864).
#[derive(Clone, Debug)]
pub struct Vtep {
    cfg: VtepConfig,
    next_id: u16,
}

impl Vtep {
    pub fn new(cfg: VtepConfig) -> Self {
        Vtep { cfg, next_id: 0 }
    }

    pub fn config(&self) -> &VtepConfig {
        &self.cfg
    }

    /// Writes `inner` (an Ethernet frame) encapsulated for `remote` on `vni` into
    /// `out`, the outer Ethernet destination being `next_hop` (the remote VTEP's or the
    /// underlay gateway's MAC, which the caller resolved). Returns the frame length.
    pub fn encapsulate(
        &mut self,
        vni: Vni,
        remote: Ipv4Addr,
        next_hop: Mac,
        inner: &[u8],
        out: &mut [u8],
    ) -> Result<usize, EncapError> {
        if inner.len() < ETH_HLEN {
            return Err(EncapError::InnerTooShort(inner.len()));
        }
        let ip_len = OUTER_IP_OVERHEAD + inner.len();
        if ip_len > self.cfg.mtu || ip_len > usize::from(u16::MAX) {
            return Err(EncapError::TooBig {
                len: ip_len,
                mtu: self.cfg.mtu,
            });
        }
        let len = OUTER_LEN + inner.len();
        let Some(out) = out.get_mut(..len) else {
            return Err(EncapError::BufferTooSmall {
                need: len,
                have: out.len(),
            });
        };
        let repr = OuterRepr {
            eth_src: self.cfg.mac,
            eth_dst: next_hop,
            ip_src: self.cfg.ip,
            ip_dst: remote,
            ip_id: self.next_id,
            ttl: self.cfg.ttl,
            dont_fragment: true,
            src_port: source_port(flow_hash(inner), self.cfg.src_ports),
            dst_port: self.cfg.port,
            udp_checksum: 0,
            vni,
            inner_len: inner.len(),
        };
        self.next_id = self.next_id.wrapping_add(1);
        repr.emit(out);
        out[OUTER_LEN..].copy_from_slice(inner);
        if self.cfg.udp_checksum {
            fill_udp_checksum(out);
        }
        Ok(len)
    }
}

/// Computes the UDP checksum of a frame laid out as `OuterRepr::emit` writes it (the
/// UDP header right after a 20-byte IPv4 header) and writes it into the header.
pub fn fill_udp_checksum(frame: &mut [u8]) {
    let ip_start = ETH_HLEN;
    let udp_start = ip_start + wire::IPV4_HLEN;
    let (Some(src), Some(dst)) = (
        wire::addr(frame, ip_start + field::ipv4::SRC),
        wire::addr(frame, ip_start + field::ipv4::DST),
    ) else {
        return;
    };
    let Some(udp) = frame.get_mut(udp_start..) else {
        return;
    };
    if udp.len() < UDP_HLEN {
        return;
    }
    wire::put16(udp, field::udp::CHECKSUM, 0);
    let c = udp_sent(checksum(
        udp,
        pseudo_header(src.octets(), dst.octets(), PROTO_UDP, udp.len()),
    ));
    wire::put16(udp, field::udp::CHECKSUM, c);
}
