//! The sink's accounting: frames and bytes in total and per flow, and, from the pktgen
//! header in each payload, loss, reordering, duplicates (per sending stream, with a
//! sliding window of recently seen sequence numbers) and one-way latency.

use crate::payload;
use crate::template::{VXLAN_FLAG_I, VXLAN_HLEN, VXLAN_PORT};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use wire::ethernet::{ethertype, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use wire::ip::{ipv4, IPV4_HLEN, PROTO_TCP, PROTO_UDP, TCP_HLEN};
use wire::ipv6::{
    ipv6, IPV6_HLEN, NEXT_HEADER_DEST_OPTS, NEXT_HEADER_FRAGMENT, NEXT_HEADER_HOP_BY_HOP,
    NEXT_HEADER_ROUTING,
};
use wire::{tcp, udp, vlan, ETH_HLEN};

/// Sequence numbers remembered behind the highest one seen: a frame later than this is
/// counted as reordered (it can no longer be told from a duplicate).
const WINDOW: u64 = 1 << 16;
/// Flows tracked one by one; frames of further flows count only in the totals.
pub const MAX_TRACKED_FLOWS: usize = 65536;
/// Latencies above this are recorded as this (a minute: far beyond any lab path).
const LATENCY_MAX_NS: u64 = 60_000_000_000;
/// IPv6 extension headers walked before giving up on finding the transport header.
const MAX_EXTENSION_HEADERS: usize = 8;

/// Loss, reordering and duplicates of one stream of sequence numbers.
#[derive(Clone, Debug)]
pub struct SeqTracker {
    min: u64,
    max: u64,
    started: bool,
    seen: Vec<u64>,
    unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            min: 0,
            max: 0,
            started: false,
            seen: vec![0; (WINDOW / 64) as usize],
            unique: 0,
            duplicates: 0,
            reordered: 0,
        }
    }
}

impl SeqTracker {
    fn bit(&mut self, seq: u64) -> (&mut u64, u64) {
        let i = seq % WINDOW;
        (&mut self.seen[(i / 64) as usize], 1 << (i % 64))
    }

    fn set(&mut self, seq: u64) -> bool {
        let (word, mask) = self.bit(seq);
        let was = *word & mask != 0;
        *word |= mask;
        was
    }

    fn clear(&mut self, seq: u64) {
        let (word, mask) = self.bit(seq);
        *word &= !mask;
    }

    pub fn record(&mut self, seq: u64) {
        if !self.started {
            self.started = true;
            self.min = seq;
            self.max = seq;
            self.set(seq);
            self.unique = 1;
            return;
        }
        if seq > self.max {
            if seq - self.max >= WINDOW {
                self.seen.fill(0);
            } else {
                for s in self.max + 1..seq {
                    self.clear(s);
                }
                self.clear(seq);
            }
            self.max = seq;
            self.set(seq);
            self.unique += 1;
            return;
        }
        if seq < self.min {
            self.min = seq;
        }
        if self.max - seq >= WINDOW {
            // Too old to remember: late, and most likely not a duplicate.
            self.reordered += 1;
            self.unique += 1;
        } else if self.set(seq) {
            self.duplicates += 1;
        } else {
            self.reordered += 1;
            self.unique += 1;
        }
    }

    /// Frames missing between the lowest and the highest sequence number seen (frames
    /// lost after the last one that arrived cannot be seen by the sink alone).
    pub fn lost(&self) -> u64 {
        if !self.started {
            return 0;
        }
        (self.max - self.min + 1).saturating_sub(self.unique)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCount {
    pub frames: u64,
    pub bytes: u64,
}

/// What the sink takes from a frame: the innermost IP flow and its L4 payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub key: FlowKey,
    pub payload: &'a [u8],
}

/// Parse Ethernet (one optional 802.1Q tag) / IPv4 or IPv6 / UDP or TCP, looking inside
/// VXLAN.
pub fn parse_frame(frame: &[u8]) -> Option<Parsed<'_>> {
    parse_at(frame, true)
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// An IP packet's transport: (protocol, source, destination, L4 bytes).
type Transport<'a> = (u8, IpAddr, IpAddr, &'a [u8]);

fn addr<const N: usize>(ip: &[u8], at: usize) -> Option<[u8; N]> {
    ip.get(at..at + N)?.try_into().ok()
}

fn ipv4_transport(ip: &[u8]) -> Option<Transport<'_>> {
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if *ip.first()? >> 4 != 4 || ihl < IPV4_HLEN {
        return None;
    }
    let total = usize::from(be16(ip, ipv4::TOTAL_LEN)?).min(ip.len());
    let src = Ipv4Addr::from(addr::<4>(ip, ipv4::SRC)?);
    let dst = Ipv4Addr::from(addr::<4>(ip, ipv4::DST)?);
    Some((
        *ip.get(ipv4::PROTO)?,
        src.into(),
        dst.into(),
        ip.get(ihl..total)?,
    ))
}

/// IPv6, past the extension headers that say their own length (hop-by-hop, routing,
/// destination options) and a first fragment's header; a later fragment has no ports
/// and counts as protocol 44 (fragment), as does any other header with no transport
/// behind it that this reads.
fn ipv6_transport(ip: &[u8]) -> Option<Transport<'_>> {
    if *ip.first()? >> 4 != 6 {
        return None;
    }
    let end = (IPV6_HLEN + usize::from(be16(ip, ipv6::PAYLOAD_LEN)?)).min(ip.len());
    let src = Ipv6Addr::from(addr::<16>(ip, ipv6::SRC)?).into();
    let dst = Ipv6Addr::from(addr::<16>(ip, ipv6::DST)?).into();
    let mut next = *ip.get(ipv6::NEXT_HEADER)?;
    let mut l4 = ip.get(IPV6_HLEN..end)?;
    for _ in 0..MAX_EXTENSION_HEADERS {
        let len = match next {
            NEXT_HEADER_HOP_BY_HOP | NEXT_HEADER_ROUTING | NEXT_HEADER_DEST_OPTS => {
                (usize::from(*l4.get(1)?) + 1) * 8
            }
            NEXT_HEADER_FRAGMENT if be16(l4, 2)? & 0xfff8 == 0 => 8,
            NEXT_HEADER_FRAGMENT => return Some((next, src, dst, &l4[..0])),
            _ => return Some((next, src, dst, l4)),
        };
        next = *l4.first()?;
        l4 = l4.get(len..)?;
    }
    Some((next, src, dst, &l4[..0]))
}

/// Lenient on purpose: a frame cut short by a capture (or a length field past its end)
/// still names its flow, so IP headers are read by offset rather than through
/// `Ipv4Packet`/`Ipv6Packet`.
fn parse_at(frame: &[u8], outer: bool) -> Option<Parsed<'_>> {
    let (ethertype, ip) = match vlan::Tagged::new_checked(frame) {
        Ok(t) => (t.inner_ethertype(), t.into_payload()),
        Err(_) => (ethertype(frame)?, frame.get(ETH_HLEN..)?),
    };
    let (proto, src, dst, l4) = match ethertype {
        ETHERTYPE_IPV4 => ipv4_transport(ip)?,
        ETHERTYPE_IPV6 => ipv6_transport(ip)?,
        _ => return None,
    };
    let ports = |l4: &[u8]| {
        Some((
            be16(l4, udp::field::SRC_PORT)?,
            be16(l4, udp::field::DST_PORT)?,
        ))
    };
    let (sport, dport, payload) = match proto {
        PROTO_UDP => {
            let (s, d) = ports(l4)?;
            (s, d, l4.get(udp::field::PAYLOAD..)?)
        }
        PROTO_TCP => {
            let doff = usize::from(*l4.get(tcp::field::DATA_OFF)? >> 4) * 4;
            let (s, d) = ports(l4)?;
            (s, d, l4.get(doff.max(TCP_HLEN)..)?)
        }
        _ => (0, 0, &l4[..0]),
    };
    if outer
        && proto == PROTO_UDP
        && dport == VXLAN_PORT
        && payload.len() > VXLAN_HLEN
        && payload[0] & VXLAN_FLAG_I != 0
    {
        if let Some(inner) = parse_at(&payload[VXLAN_HLEN..], false) {
            return Some(inner);
        }
    }
    Some(Parsed {
        key: FlowKey {
            src,
            dst,
            proto,
            sport,
            dport,
        },
        payload,
    })
}

/// Latency percentiles in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Latency {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    #[serde(rename = "p99.9")]
    pub p99_9: u64,
    pub max: u64,
}

/// Everything the sink counts.
pub struct Sink {
    pub frames: u64,
    pub bytes: u64,
    /// Frames that carried a pktgen header.
    pub tagged: u64,
    pub first_ns: Option<u64>,
    pub last_ns: u64,
    streams: HashMap<u16, SeqTracker>,
    flows: HashMap<FlowKey, FlowCount>,
    /// Frames of flows beyond MAX_TRACKED_FLOWS.
    pub untracked_flow_frames: u64,
    latency: Histogram<u64>,
}

impl Default for Sink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink {
    pub fn new() -> Self {
        Sink {
            frames: 0,
            bytes: 0,
            tagged: 0,
            first_ns: None,
            last_ns: 0,
            streams: HashMap::new(),
            flows: HashMap::new(),
            untracked_flow_frames: 0,
            // 1 ns to a minute at 3 significant digits; valid bounds, so it cannot fail.
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3)
                .unwrap_or_else(|_| unreachable!()),
        }
    }

    /// Count one frame received at `rx_ns` (CLOCK_MONOTONIC).
    pub fn record(&mut self, frame: &[u8], rx_ns: u64) {
        self.frames += 1;
        self.bytes += frame.len() as u64;
        self.first_ns.get_or_insert(rx_ns);
        self.last_ns = rx_ns;
        let Some(p) = parse_frame(frame) else {
            return;
        };
        let n = self.flows.len();
        match self.flows.get_mut(&p.key) {
            Some(c) => {
                c.frames += 1;
                c.bytes += frame.len() as u64;
            }
            None if n < MAX_TRACKED_FLOWS => {
                self.flows.insert(
                    p.key,
                    FlowCount {
                        frames: 1,
                        bytes: frame.len() as u64,
                    },
                );
            }
            None => self.untracked_flow_frames += 1,
        }
        if let Some(h) = payload::Header::parse(p.payload) {
            self.tagged += 1;
            self.streams.entry(h.stream).or_default().record(h.seq);
            if rx_ns >= h.tx_ns {
                // saturating_record clamps to the histogram's top; it never fails.
                self.latency.saturating_record(rx_ns - h.tx_ns);
            }
        }
    }

    pub fn lost(&self) -> u64 {
        self.streams.values().map(SeqTracker::lost).sum()
    }
    pub fn reordered(&self) -> u64 {
        self.streams.values().map(|s| s.reordered).sum()
    }
    pub fn duplicates(&self) -> u64 {
        self.streams.values().map(|s| s.duplicates).sum()
    }
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    pub fn latency(&self) -> Option<Latency> {
        if self.latency.is_empty() {
            return None;
        }
        let h = &self.latency;
        Some(Latency {
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
        })
    }

    /// Flows by frames, most first.
    pub fn flows(&self) -> Vec<(FlowKey, FlowCount)> {
        let mut v: Vec<_> = self.flows.iter().map(|(k, c)| (*k, *c)).collect();
        v.sort_by(|a, b| b.1.frames.cmp(&a.1.frames).then(a.0.cmp(&b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Proto, Range};
    use crate::template::{TrafficSpec, VxlanSpec};

    fn tracker(seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::default();
        for &s in seqs {
            t.record(s);
        }
        t
    }

    #[test]
    fn in_order_stream_has_nothing_to_report() {
        let t = tracker(&(0..1000).collect::<Vec<_>>());
        assert_eq!((t.lost(), t.reordered, t.duplicates), (0, 0, 0));
    }

    #[test]
    fn gaps_count_as_loss() {
        let t = tracker(&[0, 1, 2, 5, 6, 10]);
        assert_eq!((t.lost(), t.reordered, t.duplicates), (5, 0, 0));
    }

    #[test]
    fn late_frames_fill_gaps_and_count_as_reordered() {
        let t = tracker(&[0, 2, 1, 4, 3, 5]);
        assert_eq!((t.lost(), t.reordered, t.duplicates), (0, 2, 0));
    }

    #[test]
    fn repeats_count_as_duplicates_not_as_frames() {
        let t = tracker(&[0, 1, 1, 2, 0, 3, 3]);
        assert_eq!((t.lost(), t.reordered, t.duplicates), (0, 0, 3));
    }

    #[test]
    fn window_forgets_after_a_big_jump() {
        let t = tracker(&[0, 1, WINDOW * 3, 1]);
        // 1 is too old to tell: counted late. Everything in between is lost.
        assert_eq!(t.reordered, 1);
        assert_eq!(t.duplicates, 0);
        assert_eq!(t.lost(), WINDOW * 3 + 1 - 4);
        // The slot that wrapped is not mistaken for a duplicate.
        let t = tracker(&[0, WINDOW, 1]);
        assert_eq!((t.reordered, t.duplicates), (1, 0));
    }

    #[test]
    fn sink_reads_pktgen_frames_and_flows() {
        let spec = TrafficSpec {
            proto: Proto::Udp,
            src_mac: Range::one([2, 0, 0, 0, 0, 1]),
            dst_mac: Range::one([2, 0, 0, 0, 0, 2]),
            src_ip: Range::one(Ipv4Addr::new(172, 16, 0, 1).into()),
            dst_ip: Range::one(Ipv4Addr::new(172, 16, 0, 2).into()),
            sport: Range { lo: 1000, hi: 1001 },
            dport: Range::one(9),
            flows: None,
            vxlan: Some(VxlanSpec {
                vni: 7,
                outer_src_mac: [2, 0, 0, 0, 0, 0xa],
                outer_dst_mac: [2, 0, 0, 0, 0, 0xb],
                outer_src: Ipv4Addr::new(172, 16, 1, 1),
                outer_dst: Ipv4Addr::new(172, 16, 1, 2),
            }),
        };
        let ts = spec.templates().unwrap();
        let mut sink = Sink::new();
        let mut buf = [0u8; 200];
        for seq in [0u64, 1, 3, 2, 3] {
            ts[(seq % 2) as usize].write(&mut buf, 150, 1, seq, 1000);
            sink.record(&buf[..150], 1000 + 500 * (seq + 1));
        }
        assert_eq!(sink.frames, 5);
        assert_eq!(sink.tagged, 5);
        assert_eq!(
            (sink.lost(), sink.reordered(), sink.duplicates()),
            (0, 1, 1)
        );
        let flows = sink.flows();
        assert_eq!(flows.len(), 2);
        assert_eq!(flows[0].0.sport, 1001);
        assert_eq!(flows[0].1.frames, 3);
        let lat = sink.latency().unwrap();
        assert_eq!(lat.min, 500);
        assert!(lat.max >= 2000 && lat.max <= 2002);
        // Large values are kept, not clamped to the histogram's initial range.
        sink.record(&buf[..150], 1000 + 3_000_000_000);
        assert!(sink.latency().unwrap().max >= 2_999_000_000);
    }

    fn spec6(vxlan: Option<VxlanSpec>) -> TrafficSpec {
        TrafficSpec {
            proto: Proto::Udp,
            src_mac: Range::one([2, 0, 0, 0, 0, 1]),
            dst_mac: Range::one([2, 0, 0, 0, 0, 2]),
            src_ip: Range {
                lo: "2001:db8:3::2".parse().unwrap(),
                hi: "2001:db8:3::3".parse().unwrap(),
            },
            dst_ip: Range::one("2001:db8:ff::1".parse().unwrap()),
            sport: Range { lo: 1024, hi: 1027 },
            dport: Range::one(9),
            flows: None,
            vxlan,
        }
    }

    #[test]
    fn sink_reads_ipv6_frames_flows_loss_and_latency() {
        let vx = VxlanSpec {
            vni: 7,
            outer_src_mac: [2, 0, 0, 0, 0, 0xa],
            outer_dst_mac: [2, 0, 0, 0, 0, 0xb],
            outer_src: Ipv4Addr::new(172, 16, 1, 1),
            outer_dst: Ipv4Addr::new(172, 16, 1, 2),
        };
        for spec in [spec6(None), spec6(Some(vx))] {
            let ts = spec.templates().unwrap();
            assert_eq!(ts.len(), 4);
            let mut sink = Sink::new();
            let mut buf = [0u8; 200];
            // seq 4 lost, 2 late, 5 twice.
            for seq in [0u64, 1, 3, 2, 5, 6, 5] {
                ts[(seq % 4) as usize].write(&mut buf, 150, 2, seq, 1000);
                sink.record(&buf[..150], 1000 + 100 * (seq + 1));
            }
            assert_eq!((sink.frames, sink.tagged), (7, 7));
            assert_eq!(
                (sink.lost(), sink.reordered(), sink.duplicates()),
                (1, 1, 1)
            );
            let flows = sink.flows();
            assert_eq!(flows.len(), 4, "{flows:?}");
            let top = flows[0].0;
            assert_eq!(
                (top.src, top.dst, top.proto, top.sport, top.dport),
                (
                    "2001:db8:3::3".parse().unwrap(),
                    "2001:db8:ff::1".parse().unwrap(),
                    PROTO_UDP,
                    1025,
                    9
                ),
                "seq 1 and 5 twice: {flows:?}"
            );
            assert_eq!(flows[0].1.frames, 3);
            let lat = sink.latency().unwrap();
            assert_eq!((lat.min, lat.max), (100, 700));
        }
    }

    #[test]
    fn ipv6_extension_headers_are_walked_to_the_ports() {
        let ts = spec6(None).templates().unwrap();
        let mut plain = [0u8; 100];
        ts[1].write(&mut plain, 100, 3, 42, 1);
        // The same datagram behind a hop-by-hop header (PadN) and a first fragment's
        // header: payload length +16, next headers chained.
        let mut frame = plain[..54].to_vec();
        frame[20] = NEXT_HEADER_HOP_BY_HOP;
        let payload_len = u16::from_be_bytes([frame[18], frame[19]]) + 16;
        frame[18..20].copy_from_slice(&payload_len.to_be_bytes());
        frame.extend_from_slice(&[NEXT_HEADER_FRAGMENT, 0, 1, 4, 0, 0, 0, 0]);
        frame.extend_from_slice(&[PROTO_UDP, 0, 0, 0, 0, 0, 0, 1]);
        frame.extend_from_slice(&plain[54..]);
        let p = parse_frame(&frame).unwrap();
        let q = parse_frame(&plain).unwrap();
        assert_eq!(p, q);
        assert_eq!(payload::Header::parse(p.payload).map(|h| h.seq), Some(42));
        // A later fragment names the flow's addresses but no ports.
        frame[54 + 8 + 2..54 + 8 + 4].copy_from_slice(&[0, 0x08]);
        let p = parse_frame(&frame).unwrap();
        assert_eq!(
            (p.key.src, p.key.proto, p.key.sport, p.payload.len()),
            (q.key.src, NEXT_HEADER_FRAGMENT, 0, 0)
        );
        // Cut short inside the extension headers: not a flow.
        assert_eq!(parse_frame(&frame[..58]), None);
    }

    #[test]
    fn foreign_frames_count_but_carry_no_sequence() {
        let mut sink = Sink::new();
        sink.record(&[0xffu8; 60], 1);
        assert_eq!(sink.frames, 1);
        assert_eq!(sink.tagged, 0);
        assert!(sink.latency().is_none());
    }
}
