//! The tc flavour of the fast path (the default for sandbox veths): programs on skbs,
//! so a sandbox keeps TSO, GSO and checksum offload and a 64 KiB segment crosses the
//! switch in one piece.
//!
//! - The endpoint program runs at tcx ingress of each sandbox veth's host end (frames
//!   the sandbox sends). Known unicast (same rules as the XDP flavour: unicast, no VLAN,
//!   the source installed on this port, the destination on another) goes by
//!   `bpf_redirect_peer` straight into the destination sandbox's namespace, GSO intact.
//!   Everything else is punted to this endpoint's worker: an 802.1ad tag whose TCI is
//!   the port id is pushed and the skb is redirected to the egress of the worker's
//!   trunk veth. That device has no checksum, TSO, GSO or S-VLAN offload, so the kernel
//!   inserts the tag, segments and finishes checksums before the worker's AF_XDP (or
//!   AF_PACKET) socket on the trunk's other end reads MTU-sized, complete frames.
//!   A port with port security forwards in the kernel only IPv4, ARP and IPv6 (no
//!   neighbour discovery, no extension headers) from its own addresses
//!   ([`super::guard`]); the rest of its frames are the worker's.
//! - The trunk program runs at tcx ingress of the trunk's kernel end (frames the worker
//!   sends): it takes the tag off and hands the frame by `bpf_redirect_peer` to the
//!   sandbox that the TCI names.
//!
//! - Routed TCP: an outbound packet of an established session that the router has
//!   translated before (`nat_out`, installed by `fast_nat`) is translated here the same
//!   way (MACs, source address and port, TTL, with the checksum helpers, which keep a
//!   CHECKSUM_PARTIAL skb's pseudo-header sum right) and sent out of the uplink, GSO
//!   intact. SYN, FIN and RST still go to the router, which keeps the session's state,
//!   except the SYN+ACK of a session the tc uplink opened for a published port.
//!
//! Neither program ever returns TC_ACT_OK: a frame passed up would reach the daemon
//! namespace's own stack (broadcasts, frames for the veth's MAC). What cannot be
//! forwarded or punted is dropped.

use super::asm::*;
use crate::bpf::BpfInsn;

// Offsets in `struct __sk_buff` (linux/bpf.h).
pub(super) const SKB_LEN: i16 = 0;
pub(super) const SKB_VLAN_PRESENT: i16 = 20;
pub(super) const SKB_VLAN_TCI: i16 = 24;
pub(super) const SKB_VLAN_PROTO: i16 = 28;
pub(super) const SKB_IFINDEX: i16 = 40;
pub(super) const SKB_DATA: i16 = 76;
pub(super) const SKB_DATA_END: i16 = 80;
pub(super) const SKB_GSO_SEGS: i16 = 164;

pub(super) const FUNC_SKB_STORE_BYTES: i32 = 9;
pub(super) const FUNC_L3_CSUM_REPLACE: i32 = 10;
pub(super) const FUNC_L4_CSUM_REPLACE: i32 = 11;
pub(super) const FUNC_SKB_VLAN_PUSH: i32 = 18;
/// bpf_l4_csum_replace: the field is part of the pseudo-header (addresses).
pub(super) const BPF_F_PSEUDO_HDR: i32 = 1 << 4;
// Offsets in an untagged Ethernet + IPv4 (no options) + TCP frame.
pub(super) const IP_VER_IHL: i16 = 14;
pub(super) const IP_FRAG: i16 = 20;
pub(super) const IP_TTL: i16 = 22;
pub(super) const IP_PROTO: i16 = 23;
pub(super) const IP_CSUM: i32 = 24;
pub(super) const IP_SRC: i16 = 26;
pub(super) const IP_DST: i16 = 30;
pub(super) const TCP_PORTS: i16 = 34;
pub(super) const TCP_FLAGS: i16 = 47;
pub(super) const TCP_CSUM: i32 = 50;
pub(super) const TCP_HDR_END: i32 = 54;
pub(super) const FUNC_SKB_VLAN_POP: i32 = 19;
pub(super) const FUNC_REDIRECT: i32 = 23;
pub(super) const FUNC_REDIRECT_PEER: i32 = 155;
pub(super) const TC_ACT_SHOT: i32 = 2;
pub(super) const TC_ACT_REDIRECT: i32 = 7;
/// 802.1ad (S-VLAN) in network order, as `vlan_proto` reads and `skb_vlan_push` takes it.
pub(super) const ETH_P_8021AD_BE: i32 = 0xa888;

/// The maps the programs read, by fd.
pub(super) struct Maps {
    /// ifindex of a host end -> (network, port, trunk ifindex, 0)
    pub endpoints: i32,
    /// port -> ifindex of its host end (0: none)
    pub peers: i32,
    /// (network, MAC) -> (port, seen), shared with the XDP flavour and the workers
    pub fdb: i32,
    /// port -> per-CPU rx/tx packets/bytes the kernel forwarded
    pub stats: i32,
    /// outbound routed TCP sessions the program translates (`NatKey` -> `NatValue`)
    pub nat_out: i32,
    /// (network, MAC) -> the outer headers to its VTEP ([`super::tunnel`])
    pub vxlan_out: i32,
    /// port security ([`super::guard`])
    pub guard: super::guard::Maps,
}

/// The endpoint program. r6 = skb, r7 = network, r8 = port, r9 = trunk ifindex. Stack:
/// fp-16 the FDB key (network, MAC, u16 0), fp-20 the endpoint key, fp-24 the egress
/// port, fp-28 the counters' key; for routed TCP (`nat`) fp-48 the NAT key, fp-52 the
/// old TTL/protocol word, fp-56 the new one, fp-60 the uplink's ifindex.
pub(super) fn endpoint_program(m: &Maps) -> Vec<BpfInsn> {
    let mut a = Asm::default();
    let (punt, drop, segs, tx, done, nat, vx) = (
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
    );
    a.op(MOV_REG, 6, 1, 0, 0);
    a.op(LDX_W, 2, 6, SKB_IFINDEX, 0);
    a.op(STX_W, 10, 2, -20, 0);
    a.lookup(m.endpoints, -20);
    a.jump(JEQ_IMM, 0, 0, 0, drop); // not an endpoint (any more): never pass
    a.op(LDX_W, 7, 0, 0, 0);
    a.op(LDX_W, 8, 0, 4, 0);
    a.op(LDX_W, 9, 0, 8, 0);

    // Unicast, untagged, with the Ethernet header in the linear part.
    a.op(LDX_W, 2, 6, SKB_VLAN_PRESENT, 0);
    a.jump(JNE_IMM, 2, 0, 0, punt);
    bounds(&mut a, punt);
    a.op(LDX_B, 5, 2, 0, 0);
    a.jump(JSET_IMM, 5, 0, 1, punt);
    a.op(LDX_H, 5, 2, 12, 0);
    a.jump(JEQ_IMM, 5, 0, 0x0081, punt);
    a.jump(JEQ_IMM, 5, 0, ETH_P_8021AD_BE, punt);
    // The source is installed on this very port.
    a.op(STX_W, 10, 7, -16, 0);
    a.op(LDX_W, 5, 2, 6, 0);
    a.op(STX_W, 10, 5, -12, 0);
    a.op(LDX_H, 5, 2, 10, 0);
    a.op(STX_H, 10, 5, -8, 0);
    a.op(ST_H, 10, 0, -6, 0);
    a.lookup(m.fdb, -16);
    a.jump(JEQ_IMM, 0, 0, 0, punt);
    a.op(LDX_W, 5, 0, 0, 0);
    a.jump(JNE_REG, 5, 8, 0, punt);
    a.mark_seen(0, 4);
    // A guarded port's frame is IPv4, ARP or plain IPv6 from one of its addresses.
    super::guard::check(&mut a, m.guard, super::guard::Port::Reg(8), bounds_n, punt);
    // The destination is installed on another port that has a host end.
    bounds(&mut a, punt); // the calls clobbered r2-r5
    a.op(LDX_W, 5, 2, 0, 0);
    a.op(STX_W, 10, 5, -12, 0);
    a.op(LDX_H, 5, 2, 4, 0);
    a.op(STX_H, 10, 5, -8, 0);
    a.lookup(m.fdb, -16);
    a.jump(JEQ_IMM, 0, 0, 0, vx); // not an endpoint's MAC: a tunnel's, or routed
    a.op(LDX_W, 5, 0, 0, 0);
    a.jump(JEQ_REG, 5, 8, 0, punt); // same port: the worker drops and counts it
    a.op(STX_W, 10, 5, -24, 0);
    a.lookup_nonzero(m.peers, -24, 1, punt);
    a.op(MOV_IMM, 2, 0, 0, 0);
    a.call(FUNC_REDIRECT_PEER);
    a.jump(JNE_IMM, 0, 0, TC_ACT_REDIRECT, drop);

    // Count: r7 = segments (a GSO skb is that many frames on a wire), r9 = bytes.
    a.op(LDX_W, 7, 6, SKB_GSO_SEGS, 0);
    a.jump(JNE_IMM, 7, 0, 0, segs);
    a.op(MOV_IMM, 7, 0, 0, 1);
    a.bind(segs);
    a.op(LDX_W, 9, 6, SKB_LEN, 0);
    let count = |tx| Count {
        tx,
        packets: Some(7),
        bytes: Amount::Reg(9),
    };
    a.op(STX_W, 10, 8, -28, 0);
    a.count(m.stats, -28, count(false), tx);
    a.bind(tx);
    a.op(LDX_W, 1, 10, -24, 0);
    a.op(STX_W, 10, 1, -28, 0);
    a.count(m.stats, -28, count(true), done);
    a.bind(done);
    a.ret(TC_ACT_REDIRECT);

    super::tunnel::encap(&mut a, m.vxlan_out, m.stats, [vx, nat, punt, drop]);
    routed_tcp(&mut a, m, nat, punt, drop);

    // Everything else: tagged with the port, to the worker through its trunk.
    punt_and_drop(&mut a, punt, drop);
    a.finish()
}

/// The programs' two exits: at `punt`, the skb tagged 802.1ad with the port in r8 and
/// redirected to the egress of the trunk whose ifindex is in r9 (the worker's); at
/// `drop`, shot.
pub(super) fn punt_and_drop(a: &mut Asm, punt: Label, drop: Label) {
    a.bind(punt);
    a.op(MOV_REG, 1, 6, 0, 0);
    a.op(MOV_IMM, 2, 0, 0, ETH_P_8021AD_BE);
    a.op(MOV_REG, 3, 8, 0, 0);
    a.call(FUNC_SKB_VLAN_PUSH);
    a.jump(JNE_IMM, 0, 0, 0, drop);
    a.op(MOV_REG, 1, 9, 0, 0);
    a.op(MOV_IMM, 2, 0, 0, 0);
    a.call(FUNC_REDIRECT);
    a.op(EXIT, 0, 0, 0, 0);
    a.bind(drop);
    a.ret(TC_ACT_SHOT);
}

/// r2 = skb->data, r3 = skb->data_end; to `fail` unless 14 bytes are in the linear part.
pub(super) fn bounds(a: &mut Asm, fail: Label) {
    bounds_n(a, 14, fail);
}

pub(super) fn bounds_n(a: &mut Asm, n: i32, fail: Label) {
    a.op(LDX_W, 2, 6, SKB_DATA, 0);
    a.op(LDX_W, 3, 6, SKB_DATA_END, 0);
    a.op(MOV_REG, 4, 2, 0, 0);
    a.op(ADD_IMM, 4, 0, 0, n);
    a.jump(JGT_REG, 4, 3, 0, fail);
}

/// With the frame at r2 (its headers bounds-checked): IPv4 without options, not a
/// fragment (DF may be set), carrying `proto`, and with `routed` a TTL above 1 (the
/// router answers the rest with time exceeded); otherwise to `no`. Clobbers r5.
pub(super) fn plain_ipv4(a: &mut Asm, proto: i32, routed: bool, no: Label) {
    a.op(LDX_B, 5, 2, IP_VER_IHL, 0);
    a.jump(JNE_IMM, 5, 0, 0x45, no); // no options
    a.op(LDX_H, 5, 2, IP_FRAG, 0);
    a.op(AND_IMM, 5, 0, 0, 0xff3f); // MF, fragment offset
    a.jump(JNE_IMM, 5, 0, 0, no);
    a.op(LDX_B, 5, 2, IP_PROTO, 0);
    a.jump(JNE_IMM, 5, 0, proto, no);
    if routed {
        a.op(LDX_B, 5, 2, IP_TTL, 0);
        a.jump(JLE_IMM, 5, 0, 1, no);
    }
}

/// r1 = skb; r2 = off; r3 = fp + at (or r7 + at with `from_value`); r4 = len; r5 = 0;
/// call bpf_skb_store_bytes; to `fail` on error.
pub(super) fn store(a: &mut Asm, off: i32, from_value: bool, at: i32, len: i32, fail: Label) {
    a.op(MOV_REG, 1, 6, 0, 0);
    a.op(MOV_IMM, 2, 0, 0, off);
    a.op(MOV_REG, 3, if from_value { 7 } else { 10 }, 0, 0);
    a.op(ADD_IMM, 3, 0, 0, at);
    a.op(MOV_IMM, 4, 0, 0, len);
    a.op(MOV_IMM, 5, 0, 0, 0);
    a.call(FUNC_SKB_STORE_BYTES);
    a.jump(JNE_IMM, 0, 0, 0, fail);
}

/// One checksum update: `helper` (l3 or l4 csum_replace) on the field at `off`, from
/// the old value on the stack at fp + `from` to the new one at `to` (the session's value
/// in r7, or the stack), `size` bytes, with `flags`.
pub(super) struct Replace {
    pub helper: i32,
    pub off: i32,
    pub from: i16,
    pub to: Src,
    pub size: i32,
    pub flags: i32,
}

impl Replace {
    pub(super) const fn new(
        helper: i32,
        off: i32,
        from: i16,
        to: Src,
        size: i32,
        flags: i32,
    ) -> Self {
        Replace {
            helper,
            off,
            from,
            to,
            size,
            flags,
        }
    }
}

/// Where a new value is read from.
#[derive(Clone, Copy)]
pub(super) enum Src {
    Value(i16),
    Stack(i16),
}

/// `csum` for each update, in order.
pub(super) fn csum_all(a: &mut Asm, fixes: &[Replace], fail: Label) {
    for r in fixes {
        csum(a, r, fail);
    }
}

/// r1 = skb; r2 = offset; r3 = old; r4 = new; r5 = flags | size; call; to `fail` on error.
fn csum(a: &mut Asm, r: &Replace, fail: Label) {
    let ld = if r.size == 4 { LDX_W } else { LDX_H };
    a.op(MOV_REG, 1, 6, 0, 0);
    a.op(MOV_IMM, 2, 0, 0, r.off);
    a.op(ld, 3, 10, r.from, 0);
    match r.to {
        Src::Value(at) => a.op(ld, 4, 7, at, 0),
        Src::Stack(at) => a.op(ld, 4, 10, at, 0),
    }
    a.op(MOV_IMM, 5, 0, 0, r.flags | r.size);
    a.call(r.helper);
    a.jump(JNE_IMM, 0, 0, 0, fail);
}

/// The routed TCP branch (entered at `nat` with r6 = skb, r8 = port): an outbound
/// packet of a session in `nat_out` is translated as the router would and sent out of
/// the uplink; anything else goes to `punt`. r7 = the session's value.
fn routed_tcp(a: &mut Asm, m: &Maps, nat: Label, punt: Label, drop: Label) {
    let segs = a.label();
    a.bind(nat);
    bounds_n(a, TCP_HDR_END, punt);
    a.op(LDX_H, 5, 2, 12, 0);
    a.jump(JNE_IMM, 5, 0, 0x0008, punt); // IPv4
    plain_ipv4(a, 6, true, punt); // TCP
                                  // FIN, SYN, RST: the router tracks them; but a SYN+ACK of a session the tc uplink
                                  // opened (only such a session can have one in the map) goes on.
    let flags_ok = a.label();
    a.op(LDX_B, 5, 2, TCP_FLAGS, 0);
    a.op(MOV_REG, 4, 5, 0, 0);
    a.op(AND_IMM, 4, 0, 0, 0x17);
    a.jump(JEQ_IMM, 4, 0, 0x12, flags_ok);
    a.jump(JSET_IMM, 5, 0, 0x07, punt);
    a.bind(flags_ok);
    // The key: port, addresses, ports.
    a.op(STX_W, 10, 8, -48, 0);
    a.op(LDX_W, 5, 2, IP_SRC, 0);
    a.op(STX_W, 10, 5, -44, 0);
    a.op(LDX_W, 5, 2, IP_DST, 0);
    a.op(STX_W, 10, 5, -40, 0);
    a.op(LDX_W, 5, 2, TCP_PORTS, 0);
    a.op(STX_W, 10, 5, -36, 0);
    a.op(LDX_H, 5, 2, IP_TTL, 0); // TTL (low byte as loaded) and protocol
    a.op(STX_W, 10, 5, -52, 0);
    a.op(ADD_IMM, 5, 0, 0, -1);
    a.op(STX_W, 10, 5, -56, 0);
    a.lookup(m.nat_out, -48);
    a.jump(JEQ_IMM, 0, 0, 0, punt);
    a.op(MOV_REG, 7, 0, 0, 0);
    a.mark_seen(7, 28);
    a.op(LDX_W, 5, 7, 20, 0);
    a.op(STX_W, 10, 5, -60, 0);
    // Rewrite, then fix the checksums from the old and new values.
    store(a, 0, true, 0, 12, drop); // MACs
    store(a, IP_SRC as i32, true, 12, 4, drop);
    store(a, TCP_PORTS as i32, true, 16, 2, drop);
    store(a, IP_TTL as i32, false, -56, 1, drop);
    let (l3, l4) = (FUNC_L3_CSUM_REPLACE, FUNC_L4_CSUM_REPLACE);
    let fixes = [
        // The source address, in the IP header's checksum and the TCP pseudo-header.
        Replace::new(l3, IP_CSUM, -44, Src::Value(12), 4, 0),
        Replace::new(l3, IP_CSUM, -52, Src::Stack(-56), 2, 0), // TTL
        Replace::new(l4, TCP_CSUM, -44, Src::Value(12), 4, BPF_F_PSEUDO_HDR),
        Replace::new(l4, TCP_CSUM, -36, Src::Value(16), 2, 0), // source port
    ];
    csum_all(a, &fixes, drop);
    // Count it on the endpoint (a GSO skb as its segments).
    a.op(LDX_W, 7, 6, SKB_GSO_SEGS, 0);
    a.jump(JNE_IMM, 7, 0, 0, segs);
    a.op(MOV_IMM, 7, 0, 0, 1);
    a.bind(segs);
    a.op(LDX_W, 9, 6, SKB_LEN, 0);
    a.op(STX_W, 10, 8, -28, 0);
    let out = a.label();
    let rx = Count {
        tx: false,
        packets: Some(7),
        bytes: Amount::Reg(9),
    };
    a.count(m.stats, -28, rx, out);
    a.bind(out);
    a.op(LDX_W, 1, 10, -60, 0);
    a.op(MOV_IMM, 2, 0, 0, 0);
    a.call(FUNC_REDIRECT);
    a.op(EXIT, 0, 0, 0, 0);
}

/// The trunk program: the worker's frame, tagged 802.1ad with the destination port as
/// its TCI (taken off into the skb by the kernel's receive path), goes untagged to that
/// port's sandbox, or out of the uplink when that is the port. r6 = skb, r7 = the host end's ifindex; fp-4 the port.
pub(super) fn trunk_program(m: &Maps) -> Vec<BpfInsn> {
    let mut a = Asm::default();
    let drop = a.label();
    a.op(MOV_REG, 6, 1, 0, 0);
    a.op(LDX_W, 2, 6, SKB_VLAN_PRESENT, 0);
    a.jump(JEQ_IMM, 2, 0, 0, drop);
    a.op(LDX_W, 2, 6, SKB_VLAN_PROTO, 0);
    a.jump(JNE_IMM, 2, 0, ETH_P_8021AD_BE, drop);
    a.op(LDX_W, 2, 6, SKB_VLAN_TCI, 0);
    a.op(STX_W, 10, 2, -4, 0);
    a.lookup_nonzero(m.peers, -4, 7, drop);
    a.op(MOV_REG, 1, 6, 0, 0);
    a.call(FUNC_SKB_VLAN_POP);
    a.jump(JNE_IMM, 0, 0, 0, drop);
    let egress = a.label();
    a.jump(JSET_IMM, 7, 0, super::uplink::EGRESS as i32, egress);
    a.op(MOV_REG, 1, 7, 0, 0);
    a.op(MOV_IMM, 2, 0, 0, 0);
    a.call(FUNC_REDIRECT_PEER);
    a.op(EXIT, 0, 0, 0, 0);
    // The uplink: out of its egress.
    a.bind(egress);
    a.op(MOV_REG, 1, 7, 0, 0);
    a.op(AND_IMM, 1, 0, 0, !(super::uplink::EGRESS as i32));
    a.op(MOV_IMM, 2, 0, 0, 0);
    a.call(FUNC_REDIRECT);
    a.op(EXIT, 0, 0, 0, 0);
    a.bind(drop);
    a.ret(TC_ACT_SHOT);
    a.finish()
}
