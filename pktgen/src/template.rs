//! Frame templates: per flow, the Ethernet/IPv4 or IPv6/UDP or TCP-SYN headers
//! (optionally inside VXLAN over IPv4) built once with etherparse, then stamped per frame
//! with its length, pktgen header and checksums, which are finished incrementally from
//! precomputed partial sums (IPv4's header checksum, and the L4 checksum over either
//! family's pseudo-header).

use crate::cli::{mac_to_u64, u64_to_mac, Proto, Range, SizeSpec, MIN_FRAME};
use crate::payload::{self, HEADER_LEN};
use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, PacketBuilder, UdpHeader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use wire::checksum::{finish, sum, udp_sent};
use wire::ip::{ipv4, IPV4_HLEN, PROTO_TCP, PROTO_UDP};
use wire::ipv6::{ipv6, IPV6_HLEN};
use wire::{tcp, udp, ETH_HLEN};

/// A big-endian 16-bit field of a frame being stamped.
#[inline]
fn put16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// VXLAN's IANA UDP port (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// The VXLAN header, and its I flag (the VNI is valid).
pub const VXLAN_HLEN: usize = 8;
pub const VXLAN_FLAG_I: u8 = 0x08;
/// Most flows a run may cycle through (each has its own template).
pub const MAX_FLOWS: u64 = 65536;

#[derive(Clone, Debug)]
pub struct VxlanSpec {
    pub vni: u32,
    pub outer_src_mac: [u8; 6],
    pub outer_dst_mac: [u8; 6],
    pub outer_src: Ipv4Addr,
    pub outer_dst: Ipv4Addr,
}

/// What traffic to build: the field ranges flows step through.
#[derive(Clone, Debug)]
pub struct TrafficSpec {
    pub proto: Proto,
    pub src_mac: Range<[u8; 6]>,
    pub dst_mac: Range<[u8; 6]>,
    /// Both ranges of one family (cli::ip_pair sees to it), which the frames have.
    pub src_ip: Range<IpAddr>,
    pub dst_ip: Range<IpAddr>,
    pub sport: Range<u16>,
    pub dport: Range<u16>,
    /// None: as many flows as the widest range has values.
    pub flows: Option<u32>,
    pub vxlan: Option<VxlanSpec>,
}

/// One flow's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

fn span_u64(lo: u64, hi: u64) -> u64 {
    hi - lo + 1
}

fn ip_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

/// How many addresses a range holds (an IPv6 range wider than u64 counts as u64::MAX:
/// far more than MAX_FLOWS either way).
fn ip_span(r: Range<IpAddr>) -> u64 {
    u64::try_from(ip_u128(r.hi) - ip_u128(r.lo)).map_or(u64::MAX, |d| d.saturating_add(1))
}

/// The address `off` steps above `lo` (`off` below the range's span, so it stays inside).
fn ip_step(lo: IpAddr, off: u64) -> IpAddr {
    match lo {
        IpAddr::V4(a) => Ipv4Addr::from(u32::from(a) + off as u32).into(),
        IpAddr::V6(a) => Ipv6Addr::from(u128::from(a) + u128::from(off)).into(),
    }
}

impl TrafficSpec {
    fn spans(&self) -> [u64; 6] {
        [
            span_u64(mac_to_u64(self.src_mac.lo), mac_to_u64(self.src_mac.hi)),
            span_u64(mac_to_u64(self.dst_mac.lo), mac_to_u64(self.dst_mac.hi)),
            ip_span(self.src_ip),
            ip_span(self.dst_ip),
            span_u64(self.sport.lo.into(), self.sport.hi.into()),
            span_u64(self.dport.lo.into(), self.dport.hi.into()),
        ]
    }

    /// How many flows the run cycles through.
    pub fn flow_count(&self) -> u64 {
        match self.flows {
            Some(n) => u64::from(n),
            None => self.spans().into_iter().max().unwrap_or(1).min(MAX_FLOWS),
        }
    }

    /// Flow `i`: every field steps through its own range, wrapping independently.
    pub fn flow(&self, i: u64) -> Flow {
        let [smac, dmac, sip, dip, sp, dp] = self.spans();
        Flow {
            src_mac: u64_to_mac(mac_to_u64(self.src_mac.lo) + i % smac),
            dst_mac: u64_to_mac(mac_to_u64(self.dst_mac.lo) + i % dmac),
            src_ip: ip_step(self.src_ip.lo, i % sip),
            dst_ip: ip_step(self.dst_ip.lo, i % dip),
            sport: self.sport.lo + (i % sp) as u16,
            dport: self.dport.lo + (i % dp) as u16,
        }
    }

    /// Templates for every flow.
    pub fn templates(&self) -> Result<Vec<Template>, String> {
        (0..self.flow_count())
            .map(|i| Template::build(self, &self.flow(i), i))
            .collect()
    }
}

fn u64_words(v: u64) -> u32 {
    ((v >> 48) & 0xffff) as u32
        + ((v >> 32) & 0xffff) as u32
        + ((v >> 16) & 0xffff) as u32
        + (v & 0xffff) as u32
}

/// Offsets of the outer IPv4 and UDP headers of a VXLAN frame.
#[derive(Clone, Copy, Debug)]
struct Outer {
    ip: usize,
    udp: usize,
    ip_sum: u32,
}

/// The (inner) network header, and what its per-frame fields need.
#[derive(Clone, Copy, Debug)]
enum Net {
    /// IPv4 header words, without total length and checksum.
    Ipv4 { ip_sum: u32 },
    /// No header checksum; only the payload length changes per frame.
    Ipv6,
}

/// One flow's headers plus what is needed to finish a frame of any length.
#[derive(Clone, Debug)]
pub struct Template {
    /// All headers up to the L4 payload; lengths and checksums in it are zero.
    bytes: Vec<u8>,
    outer: Option<Outer>,
    proto: Proto,
    net: Net,
    /// Offsets of the (inner) IP and L4 headers.
    ip: usize,
    l4: usize,
    /// Pseudo-header addresses and protocol plus L4 header words, without length and
    /// checksum (the two families' pseudo-headers sum alike: addresses, protocol, and
    /// the L4 length, which fits 16 bits here).
    l4_sum: u32,
    #[cfg(test)]
    flow: Flow,
}

impl Template {
    fn build(spec: &TrafficSpec, flow: &Flow, index: u64) -> Result<Template, String> {
        let mut bytes = Vec::with_capacity(128);
        let outer = match &spec.vxlan {
            None => None,
            Some(v) => {
                let eth = Ethernet2Header {
                    source: v.outer_src_mac,
                    destination: v.outer_dst_mac,
                    ether_type: EtherType::IPV4,
                };
                let ip = Ipv4Header::new(
                    0,
                    64,
                    IpNumber::UDP,
                    v.outer_src.octets(),
                    v.outer_dst.octets(),
                )
                .map_err(|e| format!("build the outer IPv4 header: {e}"))?;
                // Spread flows over the underlay's ECMP/RSS hash as VTEPs do (RFC 7348 §5).
                let sport = 49152 + (index % 16384) as u16;
                let udp = UdpHeader {
                    source_port: sport,
                    destination_port: VXLAN_PORT,
                    length: 0,
                    checksum: 0,
                };
                bytes.extend_from_slice(&eth.to_bytes());
                let ip_off = bytes.len();
                bytes.extend_from_slice(&ip.to_bytes());
                let udp_off = bytes.len();
                bytes.extend_from_slice(&udp.to_bytes());
                // VXLAN header: I flag, 24 reserved bits, VNI, 8 reserved bits.
                bytes.extend_from_slice(&[VXLAN_FLAG_I, 0, 0, 0]);
                bytes.extend_from_slice(&(v.vni << 8).to_be_bytes());
                bytes[ip_off + ipv4::TOTAL_LEN..ip_off + ipv4::IDENT].fill(0);
                bytes[ip_off + ipv4::CHECKSUM..ip_off + ipv4::SRC].fill(0);
                Some(Outer {
                    ip: ip_off,
                    udp: udp_off,
                    ip_sum: sum(&bytes[ip_off..udp_off]),
                })
            }
        };
        let inner_start = bytes.len();
        let eth = PacketBuilder::ethernet2(flow.src_mac, flow.dst_mac);
        let (builder, ip_hlen) = match (flow.src_ip, flow.dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (eth.ipv4(s.octets(), d.octets(), 64), IPV4_HLEN),
            (IpAddr::V6(s), IpAddr::V6(d)) => (eth.ipv6(s.octets(), d.octets(), 64), IPV6_HLEN),
            (s, d) => return Err(format!("{s} and {d} are not of one address family")),
        };
        let written = match spec.proto {
            Proto::Udp => builder.udp(flow.sport, flow.dport).write(&mut bytes, &[]),
            Proto::TcpSyn => builder
                .tcp(flow.sport, flow.dport, 0x7067_0000 ^ index as u32, 64240)
                .syn()
                .write(&mut bytes, &[]),
        };
        written.map_err(|e| format!("build the frame template: {e}"))?;
        let ip = inner_start + ETH_HLEN;
        let l4 = ip + ip_hlen;
        let (len_off, csum_off) = match spec.proto {
            Proto::Udp => (Some(l4 + udp::field::LEN), l4 + udp::field::CHECKSUM),
            Proto::TcpSyn => (None, l4 + tcp::field::CHECKSUM),
        };
        // Zero what `write` fills per frame.
        let v4 = ip_hlen == IPV4_HLEN;
        if v4 {
            bytes[ip + ipv4::TOTAL_LEN..ip + ipv4::IDENT].fill(0);
            bytes[ip + ipv4::CHECKSUM..ip + ipv4::SRC].fill(0);
        } else {
            bytes[ip + ipv6::PAYLOAD_LEN..ip + ipv6::NEXT_HEADER].fill(0);
        }
        if let Some(off) = len_off {
            bytes[off..off + 2].fill(0);
        }
        bytes[csum_off..csum_off + 2].fill(0);
        let proto_num = match spec.proto {
            Proto::Udp => PROTO_UDP,
            Proto::TcpSyn => PROTO_TCP,
        };
        let (net, addrs) = if v4 {
            let ip_sum = sum(&bytes[ip..l4]);
            (Net::Ipv4 { ip_sum }, ip + ipv4::SRC..l4)
        } else {
            (Net::Ipv6, ip + ipv6::SRC..l4)
        };
        // Both families put the source and destination last in the fixed header.
        let l4_sum = sum(&bytes[addrs]) + u32::from(proto_num) + sum(&bytes[l4..]);
        Ok(Template {
            bytes,
            outer,
            proto: spec.proto,
            net,
            ip,
            l4,
            l4_sum,
            #[cfg(test)]
            flow: *flow,
        })
    }

    /// Length of the headers (where the L4 payload starts).
    #[cfg(test)]
    fn header_len(&self) -> usize {
        self.bytes.len()
    }

    /// Shortest frame this template can make.
    pub fn min_len(&self) -> usize {
        self.bytes.len().max(MIN_FRAME)
    }

    /// Write a frame of `len` bytes (at least `min_len()`) into `out`. The payload starts
    /// with a pktgen header `(stream, seq, tx_ns)` when there is room, zeros after.
    pub fn write(&self, out: &mut [u8], len: usize, stream: u16, seq: u64, tx_ns: u64) {
        self.fill(out, len, Some(payload::Header { stream, seq, tx_ns }));
    }

    /// Write a frame of `len` bytes with an all-zero payload.
    pub fn write_plain(&self, out: &mut [u8], len: usize) {
        self.fill(out, len, None);
    }

    fn fill(&self, out: &mut [u8], len: usize, stamp: Option<payload::Header>) {
        let hdr = self.bytes.len();
        out[..hdr].copy_from_slice(&self.bytes);
        let mut payload_sum = 0;
        match stamp {
            Some(h) if len >= hdr + HEADER_LEN => {
                h.emit(&mut out[hdr..]);
                payload_sum = u32::from(payload::MAGIC)
                    + u32::from(h.stream)
                    + u64_words(h.seq)
                    + u64_words(h.tx_ns);
                out[hdr + HEADER_LEN..len].fill(0);
            }
            _ => out[hdr..len].fill(0),
        }
        if let Some(o) = self.outer {
            let total = (len - o.ip) as u16;
            put16(out, o.ip + ipv4::TOTAL_LEN, total);
            put16(
                out,
                o.ip + ipv4::CHECKSUM,
                finish(o.ip_sum + u32::from(total)),
            );
            put16(out, o.udp + udp::field::LEN, (len - o.udp) as u16);
        }
        let (ip, l4) = (self.ip, self.l4);
        let l4_len = (len - l4) as u16;
        match self.net {
            Net::Ipv4 { ip_sum } => {
                let total = (len - ip) as u16;
                put16(out, ip + ipv4::TOTAL_LEN, total);
                put16(out, ip + ipv4::CHECKSUM, finish(ip_sum + u32::from(total)));
            }
            Net::Ipv6 => put16(out, ip + ipv6::PAYLOAD_LEN, l4_len),
        }
        match self.proto {
            Proto::Udp => {
                put16(out, l4 + udp::field::LEN, l4_len);
                // The length counts twice: in the pseudo-header and in the UDP header.
                // A computed 0 goes out as 0xffff: IPv6 has no "no checksum".
                let sum = self.l4_sum + 2 * u32::from(l4_len) + payload_sum;
                let csum = udp_sent(finish(sum));
                put16(out, l4 + udp::field::CHECKSUM, csum);
            }
            Proto::TcpSyn => {
                let csum = finish(self.l4_sum + u32::from(l4_len) + payload_sum);
                put16(out, l4 + tcp::field::CHECKSUM, csum);
            }
        }
    }
}

/// IMIX as 7:4:1 of 64/576/1500-byte frames, interleaved over each 12 frames.
pub const IMIX_PATTERN: [usize; 12] = [64, 576, 64, 64, 1500, 64, 576, 64, 64, 576, 64, 576];

/// The sequence of frame sizes a sender walks through.
#[derive(Clone, Debug)]
pub struct SizeSeq {
    spec: SizeSpec,
    /// Raise every size to at least this (headers that must fit).
    floor: usize,
    i: u64,
    rng: u64,
}

impl SizeSeq {
    pub fn new(spec: SizeSpec, floor: usize, seed: u64) -> Self {
        SizeSeq {
            spec,
            floor,
            i: 0,
            rng: seed | 1,
        }
    }

    pub fn spec(&self) -> SizeSpec {
        self.spec
    }

    /// The largest size the sequence yields.
    pub fn max(&self) -> usize {
        let m = match self.spec {
            SizeSpec::Fixed(n) => n,
            SizeSpec::Range(_, hi) => hi,
            SizeSpec::Imix => 1500,
        };
        m.max(self.floor)
    }

    pub fn next_size(&mut self) -> usize {
        let s = match self.spec {
            SizeSpec::Fixed(n) => n,
            SizeSpec::Imix => IMIX_PATTERN[(self.i % 12) as usize],
            SizeSpec::Range(lo, hi) => {
                // xorshift64: cheap, deterministic, uniform enough for frame sizes.
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                lo + (self.rng % (hi - lo + 1) as u64) as usize
            }
        };
        self.i += 1;
        s.max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Range;

    fn spec(proto: Proto) -> TrafficSpec {
        TrafficSpec {
            proto,
            src_mac: Range::one([0x02, 0, 0, 0, 0, 0x01]),
            dst_mac: Range::one([0x02, 0, 0, 0, 0, 0x02]),
            src_ip: Range::one(Ipv4Addr::new(198, 51, 100, 1).into()),
            dst_ip: Range::one(Ipv4Addr::new(198, 51, 100, 2).into()),
            sport: Range::one(1024),
            dport: Range::one(9),
            flows: None,
            vxlan: None,
        }
    }

    fn v6(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// `spec` between 2001:db8::1 and 2001:db8::2.
    fn spec6(proto: Proto) -> TrafficSpec {
        TrafficSpec {
            src_ip: Range::one(v6("2001:db8::1")),
            dst_ip: Range::one(v6("2001:db8::2")),
            ..spec(proto)
        }
    }

    /// The same frame built in one go by etherparse, with checksums it computes.
    fn reference(spec: &TrafficSpec, t: &Template, len: usize, seq: u64, ts: u64) -> Vec<u8> {
        let f = t.flow;
        let mut payload = vec![0u8; len - t.header_len()];
        if payload.len() >= HEADER_LEN {
            payload::Header {
                stream: 5,
                seq,
                tx_ns: ts,
            }
            .emit(&mut payload);
        }
        let eth = PacketBuilder::ethernet2(f.src_mac, f.dst_mac);
        let b = match (f.src_ip, f.dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => panic!("mixed families"),
        };
        let mut out = Vec::new();
        match spec.proto {
            Proto::Udp => b.udp(f.sport, f.dport).write(&mut out, &payload).unwrap(),
            Proto::TcpSyn => b
                .tcp(f.sport, f.dport, 0x7067_0000, 64240)
                .syn()
                .write(&mut out, &payload)
                .unwrap(),
        }
        out
    }

    #[test]
    fn udp_frame_is_byte_exact() {
        let s = spec(Proto::Udp);
        let t = &s.templates().unwrap()[0];
        let mut buf = [0u8; 128];
        t.write(&mut buf, 64, 5, 7, 0x1122_3344_5566_7788);
        #[rustfmt::skip]
        let expected: [u8; 64] = [
            // Ethernet: dst, src, IPv4
            0x02, 0, 0, 0, 0, 0x02,  0x02, 0, 0, 0, 0, 0x01,  0x08, 0x00,
            // IPv4: v4 ihl5, tos, total 50, id 0, DF, ttl 64, UDP, checksum
            0x45, 0x00, 0x00, 0x32, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xe6, 0x50,
            198, 51, 100, 1,  198, 51, 100, 2,
            // UDP: 1024 -> 9, length 30, checksum
            0x04, 0x00, 0x00, 0x09, 0x00, 0x1e, 0x25, 0x76,
            // pktgen header: magic, stream 5, seq 7, tx_ns
            0x70, 0x67, 0x00, 0x05,  0, 0, 0, 0, 0, 0, 0, 7,
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
            // padding
            0, 0,
        ];
        assert_eq!(&buf[..64], &expected[..]);
        assert_eq!(
            &buf[..64],
            &reference(&s, t, 64, 7, 0x1122_3344_5566_7788)[..]
        );
    }

    #[test]
    fn udp6_frame_is_byte_exact() {
        let s = spec6(Proto::Udp);
        let t = &s.templates().unwrap()[0];
        // 62 bytes of headers: the shortest frame with a pktgen header is 82.
        assert_eq!((t.header_len(), t.min_len()), (62, 62));
        let mut buf = [0u8; 128];
        t.write(&mut buf, 84, 5, 7, 0x1122_3344_5566_7788);
        #[rustfmt::skip]
        let expected: [u8; 84] = [
            // Ethernet: dst, src, IPv6
            0x02, 0, 0, 0, 0, 0x02,  0x02, 0, 0, 0, 0, 0x01,  0x86, 0xdd,
            // IPv6: v6 tc 0 flow 0, payload 30, UDP, hop limit 64
            0x60, 0, 0, 0,  0x00, 0x1e, 0x11, 0x40,
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
            // UDP: 1024 -> 9, length 30, checksum over the IPv6 pseudo-header
            0x04, 0x00, 0x00, 0x09, 0x00, 0x1e, 0x1e, 0x6c,
            // pktgen header: magic, stream 5, seq 7, tx_ns
            0x70, 0x67, 0x00, 0x05,  0, 0, 0, 0, 0, 0, 0, 7,
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
            // padding
            0, 0,
        ];
        assert_eq!(&buf[..84], &expected[..]);
        assert_eq!(
            &buf[..84],
            &reference(&s, t, 84, 7, 0x1122_3344_5566_7788)[..]
        );
        // The frame verifies: its UDP checksum over the pseudo-header sums to zero.
        let udp = &buf[54..84];
        let (src, dst) = (
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
        );
        let ph = wire::ipv6::pseudo_header(&src, &dst, 30, PROTO_UDP);
        assert_eq!(wire::checksum::checksum(udp, ph), 0);
    }

    #[test]
    fn udp6_checksum_is_never_zero() {
        // Every source port once: one of them sums to a computed 0, which must go out
        // as 0xffff (IPv6 forbids a UDP checksum of 0, RFC 8200 8.1).
        let mut s = spec6(Proto::Udp);
        s.sport = Range { lo: 0, hi: 65535 };
        let ts = s.templates().unwrap();
        assert_eq!(ts.len(), 65536);
        let mut buf = [0u8; 64];
        let mut all_ones = 0;
        for t in &ts {
            t.write_plain(&mut buf, 64);
            let c = u16::from_be_bytes([buf[60], buf[61]]);
            assert_ne!(c, 0, "sport {}", t.flow.sport);
            if c == 0xffff {
                all_ones += 1;
                assert_eq!(&buf[..], &reference(&s, t, 64, 0, 0)[..]);
            }
        }
        assert!(all_ones > 0, "some port sums to zero");
    }

    #[test]
    fn frames_of_every_size_match_etherparse() {
        for (proto, s) in [
            (Proto::Udp, spec(Proto::Udp)),
            (Proto::TcpSyn, spec(Proto::TcpSyn)),
            (Proto::Udp, spec6(Proto::Udp)),
            (Proto::TcpSyn, spec6(Proto::TcpSyn)),
        ] {
            let t = &s.templates().unwrap()[0];
            let mut buf = vec![0xaau8; 1600];
            for len in [
                t.min_len(),
                64,
                65,
                73,
                74,
                75,
                81,
                82,
                83,
                95,
                576,
                1500,
                1536,
            ] {
                if len < t.min_len() {
                    continue;
                }
                // Reuse the dirty buffer: write must not depend on what was there.
                let seq = len as u64 * 0x0101_0101_0101;
                t.write(&mut buf, len, 5, seq, u64::MAX - seq);
                assert_eq!(
                    &buf[..len],
                    &reference(&s, t, len, seq, u64::MAX - seq)[..],
                    "{proto:?} {} len {len}",
                    t.flow.src_ip
                );
            }
        }
    }

    #[test]
    fn vxlan_frame_wraps_a_correct_inner_frame() {
        for s in [spec(Proto::Udp), spec6(Proto::Udp)] {
            vxlan_wraps(s);
        }
    }

    fn vxlan_wraps(mut s: TrafficSpec) {
        s.vxlan = Some(VxlanSpec {
            vni: 0x123456,
            outer_src_mac: [0x02, 0, 0, 0, 0, 0x0a],
            outer_dst_mac: [0x02, 0, 0, 0, 0, 0x0b],
            outer_src: Ipv4Addr::new(172, 16, 0, 1),
            outer_dst: Ipv4Addr::new(172, 16, 0, 2),
        });
        let t = &s.templates().unwrap()[0];
        let len = 200;
        let mut buf = vec![0u8; len];
        t.write(&mut buf, len, 5, 9, 99);
        let outer = etherparse::SlicedPacket::from_ethernet(&buf).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &outer.net else {
            panic!("no outer IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.total_len as usize, len - 14);
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let Some(etherparse::TransportSlice::Udp(udp)) = &outer.transport else {
            panic!("no outer UDP")
        };
        assert_eq!(udp.destination_port(), VXLAN_PORT);
        assert_eq!(udp.length() as usize, len - 34);
        assert_eq!(udp.checksum(), 0);
        let vx = udp.payload();
        assert_eq!(&vx[..8], &[0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        // The reference builds the inner frame only, from the same payload length.
        assert_eq!(&vx[8..], &reference(&s, t, len, 9, 99)[..]);
    }

    #[test]
    fn flows_step_through_each_range() {
        let mut s = spec(Proto::Udp);
        let v4 = |d: u8| IpAddr::from(Ipv4Addr::new(172, 16, 0, d));
        s.src_ip = Range {
            lo: v4(1),
            hi: v4(4),
        };
        s.dport = Range { lo: 1000, hi: 1001 };
        assert_eq!(s.flow_count(), 4);
        let ts = s.templates().unwrap();
        let got: Vec<(IpAddr, u16)> = ts.iter().map(|t| (t.flow.src_ip, t.flow.dport)).collect();
        assert_eq!(
            got,
            vec![(v4(1), 1000), (v4(2), 1001), (v4(3), 1000), (v4(4), 1001)]
        );
        s.flows = Some(6);
        assert_eq!(s.flow(5).src_ip, v4(2));
        assert_eq!(s.flow(5).sport, 1024);
        s.src_mac = Range {
            lo: [0x02, 0, 0, 0, 0, 0xff],
            hi: [0x02, 0, 0, 0, 1, 0x01],
        };
        assert_eq!(s.flow(1).src_mac, [0x02, 0, 0, 0, 1, 0]);
        assert_eq!(s.flow(3).src_mac, [0x02, 0, 0, 0, 0, 0xff]);
    }

    #[test]
    fn ipv6_flows_step_over_addresses_and_ports() {
        let mut s = spec6(Proto::Udp);
        // Across a 16-bit boundary, as an IPv4 range crosses an octet.
        s.src_ip = Range {
            lo: v6("2001:db8:7::fffe"),
            hi: v6("2001:db8:7::1:1"),
        };
        s.sport = Range { lo: 1024, hi: 1025 };
        assert_eq!(s.flow_count(), 4);
        let got: Vec<(IpAddr, u16)> = s
            .templates()
            .unwrap()
            .iter()
            .map(|t| (t.flow.src_ip, t.flow.sport))
            .collect();
        assert_eq!(
            got,
            vec![
                (v6("2001:db8:7::fffe"), 1024),
                (v6("2001:db8:7::ffff"), 1025),
                (v6("2001:db8:7::1:0"), 1024),
                (v6("2001:db8:7::1:1"), 1025),
            ]
        );
        // A range wider than u64 is no problem: the flows stop at MAX_FLOWS.
        s.dst_ip = Range {
            lo: v6("2001:db8::"),
            hi: v6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
        };
        assert_eq!(s.flow_count(), MAX_FLOWS);
        assert_eq!(s.flow(3).dst_ip, v6("2001:db8::3"));
        // 1024 flows over the source ports only, as the NAT rows send them.
        s.src_ip = Range::one(v6("2001:db8:7::2"));
        s.dst_ip = Range::one(v6("2001:db8:ff::1"));
        s.sport = Range { lo: 1024, hi: 2047 };
        s.flows = Some(1024);
        let ts = s.templates().unwrap();
        assert_eq!(ts.len(), 1024);
        assert_eq!(ts[1023].flow.sport, 2047);
        assert!(ts.iter().all(|t| t.flow.src_ip == v6("2001:db8:7::2")));
        let mut buf = [0u8; 128];
        for t in ts.iter().step_by(97) {
            t.write(&mut buf, 100, 5, 3, 4);
            assert_eq!(&buf[..100], &reference(&s, t, 100, 3, 4)[..]);
        }
    }

    #[test]
    fn mixed_families_are_refused() {
        let mut s = spec6(Proto::Udp);
        s.dst_ip = Range::one(Ipv4Addr::new(198, 51, 100, 2).into());
        let err = s.templates().unwrap_err();
        assert!(err.contains("one address family"), "{err}");
    }

    #[test]
    fn imix_is_7_4_1() {
        let mut seq = SizeSeq::new(SizeSpec::Imix, 60, 1);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..12_000 {
            *counts.entry(seq.next_size()).or_insert(0) += 1;
        }
        assert_eq!(counts[&64], 7000);
        assert_eq!(counts[&576], 4000);
        assert_eq!(counts[&1500], 1000);
        assert_eq!(counts.len(), 3);
    }

    #[test]
    fn size_ranges_stay_inside_and_respect_floor() {
        let mut seq = SizeSeq::new(SizeSpec::Range(64, 128), 100, 42);
        let sizes: Vec<usize> = (0..10_000).map(|_| seq.next_size()).collect();
        assert!(sizes.iter().all(|&s| (100..=128).contains(&s)));
        assert!(sizes.contains(&100) && sizes.contains(&128));
        assert_eq!(seq.max(), 128);
    }
}
