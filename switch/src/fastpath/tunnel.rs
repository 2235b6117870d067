//! Overlay (VXLAN) unicast in the kernel, GSO intact both ways.
//!
//! - Out, in the endpoint program: an IPv4 or IPv6 frame for a MAC the router has
//!   learned behind a remote VTEP (`vxlan_out`, keyed like the FDB) that fits the
//!   underlay (whole, or each GSO segment with its own headers) gets the outer
//!   Ethernet, IPv4, UDP and VXLAN headers in front of it by `bpf_skb_adjust_room` (in
//!   encapsulation mode, so a 64 KiB TCP skb becomes a UDP-tunnel GSO skb that the
//!   uplink, or the kernel in software, segments into whole VXLAN packets) and leaves
//!   by the uplink. The router wrote the headers (its MAC, the next hop's, both VTEP
//!   addresses, the VNI); the program fills in the lengths, the IPv4 checksum and a
//!   UDP source port from the flow's hash, as RFC 7348 asks.
//! - In, in the uplink program: VXLAN with IPv4 inside, to this VTEP on a known VNI,
//!   from a source MAC the router has learned behind that very VTEP, for a MAC
//!   installed on a local endpoint, loses the outer headers the same way and goes by
//!   `bpf_redirect_peer` into that sandbox. IPv6 inside is the router's (taking the
//!   headers off without `BPF_F_ADJ_ROOM_DECAP_L3_IPV6` would leave the skb's protocol
//!   the outer one, IPv4).
//!
//! Everything else (flooding, unknown or moved MACs, the gateway, frames too big for the
//! underlay, outer UDP checksums to verify) stays with the router, as without this.

use super::asm::*;
use super::tc::*;

/// `vxlan_out` values: the outer headers (Ethernet, IPv4 with the checksum of a total
/// length of 0, UDP with length and checksum 0, VXLAN), 2 bytes padding, the uplink's
/// ifindex, the `seen` mark, the uplink's port id (for its counters).
pub const VXLAN_VALUE_LEN: usize = 64;
pub(super) const HDR_LEN: i32 = 50;
const VALUE_IFINDEX: i16 = 52;
const VALUE_SEEN: i16 = 56;
const VALUE_UPLINK_PORT: i16 = 60;
/// The largest inner frame (its Ethernet header included) a 1500-byte underlay carries.
const MAX_INNER: i32 = 1500 - 36;
/// EtherTypes as a 16-bit load from the frame (or `skb->protocol`) reads them.
const ETH_P_IP_AS_LOADED: i32 = 0x0008;
const ETH_P_IPV6_AS_LOADED: i32 = 0xdd86;

const SKB_PROTOCOL: i16 = 16;
const SKB_GSO_SIZE: i16 = 176;
const FUNC_GET_HASH_RECALC: i32 = 34;
pub(super) const FUNC_SKB_ADJUST_ROOM: i32 = 50;
pub(super) const BPF_ADJ_ROOM_MAC: i32 = 1;
const BPF_F_ADJ_ROOM_FIXED_GSO: u64 = 1 << 0;
const BPF_F_ADJ_ROOM_ENCAP_L3_IPV4: u64 = 1 << 1;
const BPF_F_ADJ_ROOM_ENCAP_L4_UDP: u64 = 1 << 4;
const BPF_F_ADJ_ROOM_ENCAP_L2_ETH: u64 = 1 << 6;
const ENCAP_FLAGS: u64 = BPF_F_ADJ_ROOM_FIXED_GSO
    | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH
    | (14 << 56); // BPF_F_ADJ_ROOM_ENCAP_L2(ETH_HLEN)

/// The header the program writes in front of the frame: fp-128 .. fp-64.
const HDR: i16 = -128;
/// Saved across the helper calls: the frame's segments and length.
const SAVED_SEGS: i16 = -132;
const SAVED_LEN: i16 = -136;

/// The encapsulation branch of the endpoint program, entered at `vx` when the
/// destination MAC is not a local endpoint's: r6 = skb, r8 = port, fp-16 the FDB key
/// (network, destination MAC). A destination behind a VTEP is encapsulated and sent;
/// otherwise on to `nat` (routed, perhaps). r7 = the tunnel's value.
pub(super) fn encap(a: &mut Asm, vxlan_out: i32, stats: i32, l: [Label; 4]) {
    let [vx, nat, punt, drop] = l;
    let (ip, gso, fits, rx, done) = (a.label(), a.label(), a.label(), a.label(), a.label());
    a.bind(vx);
    a.lookup(vxlan_out, -16);
    a.jump(JEQ_IMM, 0, 0, 0, nat);
    a.op(MOV_REG, 7, 0, 0, 0);
    // IPv4 or IPv6 inside (adjust_room encapsulates IP only), and it fits the underlay.
    a.op(LDX_W, 5, 6, SKB_PROTOCOL, 0);
    a.jump(JEQ_IMM, 5, 0, ETH_P_IP_AS_LOADED, ip);
    a.jump(JNE_IMM, 5, 0, ETH_P_IPV6_AS_LOADED, punt);
    a.bind(ip);
    a.op(LDX_W, 5, 6, SKB_LEN, 0);
    a.jump(JGT_IMM, 5, 0, 0xffff - 36, punt); // the outer total length is 16 bits
    a.op(LDX_W, 4, 6, SKB_GSO_SIZE, 0);
    a.jump(JNE_IMM, 4, 0, 0, gso);
    // The router answers: fragmentation needed, or Packet Too Big.
    a.jump(JGT_IMM, 5, 0, MAX_INNER, punt);
    a.jump(JA, 0, 0, 0, fits);
    a.bind(gso);
    segments_fit(a, fits, punt);
    a.bind(fits);
    a.op(LDX_W, 5, 6, SKB_LEN, 0);
    a.op(STX_W, 10, 5, SAVED_LEN, 0);
    a.op(LDX_W, 4, 6, SKB_GSO_SEGS, 0);
    a.op(STX_W, 10, 4, SAVED_SEGS, 0);
    // The header: the router's template, then the frame's own MACs and EtherType.
    for i in 0..6 {
        a.op(LDX_DW, 4, 7, i * 8, 0);
        a.op(STX_DW, 10, 4, HDR + i * 8, 0);
    }
    a.op(LDX_H, 4, 7, 48, 0);
    a.op(STX_H, 10, 4, HDR + 48, 0);
    bounds(a, punt);
    for i in 0..7 {
        a.op(LDX_H, 4, 2, i * 2, 0);
        a.op(STX_H, 10, 4, HDR + HDR_LEN as i16 + i * 2, 0);
    }
    // Outer IPv4 total length (network order) and the checksum with it (RFC 1624: the
    // template's was computed over a length of 0).
    a.op(LDX_W, 5, 10, SAVED_LEN, 0);
    a.op(MOV_REG, 4, 5, 0, 0);
    a.op(ADD_IMM, 4, 0, 0, 36);
    a.bswap16(4);
    a.op(STX_H, 10, 4, HDR + 16, 0);
    a.op(LDX_H, 0, 10, HDR + 24, 0);
    a.op(XOR_IMM, 0, 0, 0, 0xffff);
    a.op(ADD_REG, 0, 4, 0, 0);
    a.fold_checksum();
    a.op(STX_H, 10, 0, HDR + 24, 0);
    // UDP length; the source port from the flow's hash, in 49152-65535.
    a.op(ADD_IMM, 5, 0, 0, 16);
    a.bswap16(5);
    a.op(STX_H, 10, 5, HDR + 38, 0);
    a.op(MOV_REG, 1, 6, 0, 0);
    a.call(FUNC_GET_HASH_RECALC);
    a.op(RSH_IMM, 0, 0, 0, 18);
    a.op(OR_IMM, 0, 0, 0, 0xc000);
    a.bswap16(0);
    a.op(STX_H, 10, 0, HDR + 34, 0);
    // Room for the outer headers after the Ethernet header, marked as a UDP tunnel
    // (GSO segments it as one; the segment size stays the sandbox's).
    a.op(MOV_REG, 1, 6, 0, 0);
    a.op(MOV_IMM, 2, 0, 0, HDR_LEN);
    a.op(MOV_IMM, 3, 0, 0, BPF_ADJ_ROOM_MAC);
    a.ld_imm64(4, ENCAP_FLAGS);
    a.call(FUNC_SKB_ADJUST_ROOM);
    a.jump(JNE_IMM, 0, 0, 0, punt); // unchanged: the router encapsulates it
    store(a, 0, false, HDR as i32, HDR_LEN + 14, drop);
    a.mark_seen(7, VALUE_SEEN);
    // Count: the endpoint received, the uplink sent (segments, inner bytes).
    a.op(LDX_W, 9, 10, SAVED_SEGS, 0);
    a.jump(JNE_IMM, 9, 0, 0, rx);
    a.op(MOV_IMM, 9, 0, 0, 1);
    a.bind(rx);
    let tx = a.label();
    let count = |tx| Count {
        tx,
        packets: Some(9),
        bytes: Amount::Stack(SAVED_LEN),
    };
    a.op(STX_W, 10, 8, -28, 0);
    a.count(stats, -28, count(false), tx);
    a.bind(tx);
    a.op(LDX_W, 5, 7, VALUE_UPLINK_PORT, 0);
    a.op(STX_W, 10, 5, -28, 0);
    a.count(stats, -28, count(true), done);
    a.bind(done);
    a.op(LDX_W, 1, 7, VALUE_IFINDEX, 0);
    a.op(MOV_IMM, 2, 0, 0, 0);
    a.call(FUNC_REDIRECT);
    a.op(EXIT, 0, 0, 0, 0);
}

/// A GSO skb, r4 its segment size: to `ok` if every segment it becomes, with its
/// Ethernet, IP and TCP (options included) or UDP headers, fits the underlay once
/// encapsulated; else to `no` (the router's, once the trunk has segmented it). The
/// headers are read from the frame: IPv4 without options or IPv6 without extension
/// headers, then TCP or UDP. Clobbers r1-r5.
pub(super) fn segments_fit(a: &mut Asm, ok: Label, no: Label) {
    let v6 = a.label();
    a.op(MOV_REG, 1, 4, 0, 0);
    a.op(LDX_W, 5, 6, SKB_PROTOCOL, 0);
    a.jump(JEQ_IMM, 5, 0, ETH_P_IPV6_AS_LOADED, v6);
    bounds_n(a, ETH + IPV4 + TCP_DATA_OFFSET + 1, no);
    a.op(LDX_B, 5, 2, ETH as i16, 0);
    a.jump(JNE_IMM, 5, 0, 0x45, no);
    a.op(LDX_B, 5, 2, (ETH + 9) as i16, 0);
    transport_fits(a, ETH + IPV4, ok, no);
    a.bind(v6);
    bounds_n(a, ETH + IPV6 + TCP_DATA_OFFSET + 1, no);
    a.op(LDX_B, 5, 2, (ETH + 6) as i16, 0);
    transport_fits(a, ETH + IPV6, ok, no);
}

const ETH: i32 = 14;
const IPV4: i32 = 20;
const IPV6: i32 = 40;
const TCP_DATA_OFFSET: i32 = 12;

/// r5 = the transport protocol, whose header starts at `l4` (in bounds up to TCP's
/// data offset), r1 = the segment size: to `ok` if the headers up to the transport's
/// and the segment are at most `MAX_INNER`, else to `no`.
fn transport_fits(a: &mut Asm, l4: i32, ok: Label, no: Label) {
    let (udp, sum) = (a.label(), a.label());
    a.jump(JEQ_IMM, 5, 0, 17, udp);
    a.jump(JNE_IMM, 5, 0, 6, no);
    a.op(LDX_B, 5, 2, (l4 + TCP_DATA_OFFSET) as i16, 0);
    a.op(RSH_IMM, 5, 0, 0, 4);
    a.op(LSH_IMM, 5, 0, 0, 2);
    a.jump(JA, 0, 0, 0, sum);
    a.bind(udp);
    a.op(MOV_IMM, 5, 0, 0, 8);
    a.bind(sum);
    a.op(ADD_REG, 1, 5, 0, 0);
    a.jump(JGT_IMM, 1, 0, MAX_INNER - l4, no);
    a.jump(JA, 0, 0, 0, ok);
}
