//! The uplink in the tc data path (`--uplink-mode tc`, the default): a tcx program at
//! the uplink's ingress, and no socket or XDP on it, so a veth wire's far end keeps
//! GSO and a NIC's GRO runs before the program.
//!
//! - VXLAN for this VTEP that the overlay fast path knows ([`super::tunnel`]) loses its
//!   outer headers and goes by `bpf_redirect_peer` into the destination sandbox.
//! - A TCP packet of an established session the router handed to the kernel (`nat_in`,
//!   installed by `fast_nat`) is translated back (MACs, destination address and port,
//!   TTL, with the checksum helpers, which keep a CHECKSUM_PARTIAL skb's pseudo-header
//!   sum right) and goes by `bpf_redirect_peer` to the endpoint.
//! - A SYN to a published port the router has already delivered to its endpoint
//!   (`published`, installed by `fast_nat`) opens the session here: both halves go
//!   into `nat_in` and `nat_out` (the reply to the MAC the SYN came from), a copy of
//!   the SYN tagged with the uplink's port and [`OBSERVED`] goes to the worker, whose
//!   router runs it through the NAT without sending anything (so the NAT holds the
//!   session as if it had translated it), and the SYN itself is translated and
//!   delivered like any packet of the session. The handshake never waits for the
//!   worker.
//! - Everything else is punted to the router's worker exactly like an endpoint's frames:
//!   tagged 802.1ad with the uplink's port id and redirected to the worker's trunk,
//!   where the kernel segments it. The worker's frames for the uplink come back through
//!   the trunk, whose program sends them out of the uplink (`peers` marks the uplink's
//!   slot with [`EGRESS`]).
//!
//! Like the endpoint program, it never returns TC_ACT_OK, except on a shared uplink
//! (`CFG_SHARED`, [`super::shared`]): there a classification in front of all this passes
//! the host's own traffic to the kernel and lets only the switch's through to the rest.

use super::asm::*;
use super::tc::*;
use super::tunnel::{BPF_ADJ_ROOM_MAC, FUNC_SKB_ADJUST_ROOM, HDR_LEN};
use crate::bpf::BpfInsn;

/// The maps the program reads, by fd.
pub(super) struct Maps {
    /// one entry: [`UplinkCfg`]
    pub cfg: i32,
    /// VNI (3 bytes as on the wire, then 0) -> network
    pub vnis: i32,
    pub fdb: i32,
    pub peers: i32,
    pub vxlan_out: i32,
    pub nat_in: i32,
    pub nat_out: i32,
    pub published: i32,
    pub stats: i32,
    /// published ports on a shared uplink's address ([`super::shared`])
    pub owned: i32,
}

/// The `cfg` entry: the uplink's MAC (6 bytes, 2 padding), the VTEP address (as on the
/// wire), the uplink's port id, the router's trunk's ifindex, flags; for a shared uplink
/// the shared address (as on the wire) and the first port of the switch's range (u32).
pub const CFG_LEN: usize = 32;
/// Flag: every frame goes to the worker (the uplink is captured).
pub const CFG_PUNT_ALL: u32 = 1;
/// Flag: the host shares the uplink ([`super::shared`]): only the switch's frames go on
/// into this program, the rest to the kernel.
pub const CFG_SHARED: u32 = 2;

/// In a `peers` slot: the device's frames leave by its egress (the uplink), not into a
/// sandbox.
pub const EGRESS: u32 = 1 << 31;
const EGRESS_BIT: i32 = EGRESS as i32;
/// In a trunk tag's TCI (the DEI bit, above every port id): a copy of a frame the kernel
/// delivered itself, for the router to observe, never to forward.
pub const OBSERVED: u16 = 0x1000;
const UDP_VXLAN_BE: i32 = 0xb512; // port 4789 as loaded from the wire

// The stack: fp-4 the cfg key; fp-16 the FDB key (network, MAC) or the NAT key (16
// bytes); fp-24 the destination port; fp-28 the counters' key; fp-32 the VNI key;
// fp-48 the inner MACs; fp-52 the destination's ifindex; fp-56/-60 the old and new
// TTL word; fp-64 the VTEP address; fp-72 the uplink's MAC; fp-132/-136 segments and
// length. Opening a session: fp-144 the published key, fp-176 the nat_in value,
// fp-192 the nat_out key, fp-224 its value, fp-228 "this SYN opened it". A shared
// uplink's classification uses fp-120 to fp-81 ([`super::shared`]).
const SAVED_SEGS: i16 = -132;
const SAVED_LEN: i16 = -136;
const PUB_KEY: i16 = -144;
const IN_VALUE: i16 = -176;
const OUT_KEY: i16 = -192;
const OUT_VALUE: i16 = -224;
const OPENED: i16 = -228;
const FUNC_MAP_UPDATE: i32 = 2;
const FUNC_MAP_DELETE: i32 = 3;
pub(super) const FUNC_CLONE_REDIRECT: i32 = 13;
const BPF_NOEXIST: i32 = 1;

pub(super) fn program(m: &Maps) -> Vec<BpfInsn> {
    let mut a = Asm::default();
    let (punt, drop, nat, deliver) = (a.label(), a.label(), a.label(), a.label());
    let (shared, main) = (a.label(), a.label());
    a.op(MOV_REG, 6, 1, 0, 0);
    a.op(ST_W, 10, 0, -4, 0);
    a.lookup(m.cfg, -4);
    a.jump(JEQ_IMM, 0, 0, 0, drop);
    a.op(LDX_W, 8, 0, 12, 0);
    a.op(LDX_W, 9, 0, 16, 0);
    a.op(LDX_W, 5, 0, 8, 0);
    a.op(STX_W, 10, 5, -64, 0);
    a.op(LDX_W, 5, 0, 0, 0);
    a.op(STX_W, 10, 5, -72, 0);
    a.op(LDX_H, 5, 0, 4, 0);
    a.op(STX_H, 10, 5, -68, 0);
    a.op(LDX_W, 5, 0, 20, 0);
    a.jump(JSET_IMM, 5, 0, CFG_SHARED as i32, shared);
    // From here on, on a shared uplink, only the switch's frames (r5 the flags again).
    a.bind(main);
    a.jump(JSET_IMM, 5, 0, CFG_PUNT_ALL as i32, punt);
    a.jump(JEQ_IMM, 8, 0, 0, drop); // not configured yet
                                    // Unicast for this uplink's MAC, untagged IPv4.
    a.op(LDX_W, 2, 6, SKB_VLAN_PRESENT, 0);
    a.jump(JNE_IMM, 2, 0, 0, punt);
    bounds(&mut a, punt);
    a.op(LDX_W, 5, 2, 0, 0);
    a.op(LDX_W, 4, 10, -72, 0);
    a.jump(JNE_REG, 5, 4, 0, punt);
    a.op(LDX_H, 5, 2, 4, 0);
    a.op(LDX_H, 4, 10, -68, 0);
    a.jump(JNE_REG, 5, 4, 0, punt);
    a.op(LDX_H, 5, 2, 12, 0);
    a.jump(JNE_IMM, 5, 0, 0x0008, punt);
    a.op(LDX_W, 5, 6, SKB_LEN, 0);
    a.op(STX_W, 10, 5, SAVED_LEN, 0);
    a.op(LDX_W, 5, 6, SKB_GSO_SEGS, 0);
    a.op(STX_W, 10, 5, SAVED_SEGS, 0);

    decap(&mut a, m, [nat, deliver, punt, drop]);
    nat_in(&mut a, m, [nat, deliver, punt, drop]);

    // Delivered (fp-52 the ifindex, fp-24 the port): count on both ports.
    a.bind(deliver);
    a.op(LDX_W, 1, 10, -52, 0);
    a.op(MOV_IMM, 2, 0, 0, 0);
    a.call(FUNC_REDIRECT_PEER);
    a.jump(JNE_IMM, 0, 0, TC_ACT_REDIRECT, drop);
    let (segs, tx, done) = (a.label(), a.label(), a.label());
    a.op(LDX_W, 7, 10, SAVED_SEGS, 0);
    a.jump(JNE_IMM, 7, 0, 0, segs);
    a.op(MOV_IMM, 7, 0, 0, 1);
    a.bind(segs);
    let count = |tx| Count {
        tx,
        packets: Some(7),
        bytes: Amount::Stack(SAVED_LEN),
    };
    a.op(STX_W, 10, 8, -28, 0);
    a.count(m.stats, -28, count(false), tx);
    a.bind(tx);
    a.op(LDX_W, 5, 10, -24, 0);
    a.op(STX_W, 10, 5, -28, 0);
    a.count(m.stats, -28, count(true), done);
    a.bind(done);
    a.ret(TC_ACT_REDIRECT);

    // Everything else: tagged with the uplink's port, to the router's worker.
    punt_and_drop(&mut a, punt, drop);
    super::shared::classify(&mut a, m.owned, [shared, main, drop]);
    a.finish()
}

/// fp-24 = the port the MAC at fp-16 is installed on, fp-52 its host end's ifindex; to
/// `fail` unless it is a local endpoint.
fn local_endpoint(a: &mut Asm, m: &Maps, fail: Label) {
    a.lookup(m.fdb, -16);
    a.jump(JEQ_IMM, 0, 0, 0, fail);
    a.op(LDX_W, 5, 0, 0, 0);
    a.op(STX_W, 10, 5, -24, 0);
    host_end(a, m, fail);
    a.op(STX_W, 10, 5, -52, 0);
}

/// r5 = the ifindex of the host end of the port at fp-24; to `fail` unless the port is a
/// sandbox's (it has a host end, and it is not the uplink's egress).
fn host_end(a: &mut Asm, m: &Maps, fail: Label) {
    a.lookup_nonzero(m.peers, -24, 5, fail);
    a.jump(JSET_IMM, 5, 0, EGRESS_BIT, fail);
}

/// VXLAN to this VTEP; anything else that is not VXLAN goes on to `nat`.
fn decap(a: &mut Asm, m: &Maps, l: [Label; 4]) {
    let [nat, deliver, punt, drop] = l;
    bounds_n(a, HDR_LEN + 14, nat);
    plain_ipv4(a, 17, false, nat); // UDP
    a.op(LDX_W, 5, 2, IP_DST, 0);
    a.op(LDX_W, 4, 10, -64, 0);
    a.jump(JNE_REG, 5, 4, 0, nat);
    a.op(LDX_H, 5, 2, 36, 0);
    a.jump(JNE_IMM, 5, 0, UDP_VXLAN_BE, nat);
    // VXLAN for us: from here on what the program does not take is the router's.
    a.op(LDX_H, 5, 2, 40, 0);
    a.jump(JNE_IMM, 5, 0, 0, punt); // a UDP checksum the router verifies
    a.op(LDX_B, 5, 2, 42, 0);
    a.jump(JNE_IMM, 5, 0, 0x08, punt);
    a.op(LDX_W, 5, 2, 46, 0);
    a.op(AND_IMM, 5, 0, 0, 0x00ff_ffff);
    a.op(STX_W, 10, 5, -32, 0);
    a.lookup(m.vnis, -32);
    a.jump(JEQ_IMM, 0, 0, 0, punt);
    a.op(LDX_W, 5, 0, 0, 0);
    a.op(STX_W, 10, 5, -16, 0);
    // The inner destination: unicast IPv4 for a local endpoint.
    bounds_n(a, HDR_LEN + 14, punt);
    a.op(LDX_B, 5, 2, 50, 0);
    a.jump(JSET_IMM, 5, 0, 1, punt);
    a.op(LDX_H, 5, 2, 62, 0);
    a.jump(JNE_IMM, 5, 0, 0x0008, punt);
    a.op(LDX_W, 5, 2, 50, 0);
    a.op(STX_W, 10, 5, -12, 0);
    a.op(LDX_H, 5, 2, 54, 0);
    a.op(STX_H, 10, 5, -8, 0);
    a.op(ST_H, 10, 0, -6, 0);
    local_endpoint(a, m, punt);
    // The inner source: learned by the router behind this very VTEP.
    bounds_n(a, HDR_LEN + 14, punt);
    a.op(LDX_W, 5, 2, 56, 0);
    a.op(STX_W, 10, 5, -12, 0);
    a.op(LDX_H, 5, 2, 60, 0);
    a.op(STX_H, 10, 5, -8, 0);
    a.lookup(m.vxlan_out, -16);
    a.jump(JEQ_IMM, 0, 0, 0, punt);
    a.op(MOV_REG, 7, 0, 0, 0);
    bounds_n(a, HDR_LEN + 14, punt);
    a.op(LDX_W, 5, 7, 30, 0); // the template's outer destination
    a.op(LDX_W, 4, 2, IP_SRC, 0);
    a.jump(JNE_REG, 5, 4, 0, punt);
    a.mark_seen(7, 56);
    for i in 0..3 {
        a.op(LDX_W, 5, 2, 50 + i * 4, 0);
        a.op(STX_W, 10, 5, -48 + i * 4, 0);
    }
    a.op(MOV_REG, 1, 6, 0, 0);
    a.op(MOV_IMM, 2, 0, 0, -HDR_LEN);
    a.op(MOV_IMM, 3, 0, 0, BPF_ADJ_ROOM_MAC);
    a.op(MOV_IMM, 4, 0, 0, 1); // BPF_F_ADJ_ROOM_FIXED_GSO: the segment size is the inner's
    a.call(FUNC_SKB_ADJUST_ROOM);
    a.jump(JNE_IMM, 0, 0, 0, punt);
    store(a, 0, false, -48, 12, drop);
    // Count the inner frame: the uplink's share is the outer one's less the headers.
    a.op(LDX_W, 5, 10, SAVED_LEN, 0);
    a.op(ADD_IMM, 5, 0, 0, -HDR_LEN);
    a.op(STX_W, 10, 5, SAVED_LEN, 0);
    a.jump(JA, 0, 0, 0, deliver);
}

/// An inbound packet of a session the kernel translates; anything else to `punt`.
fn nat_in(a: &mut Asm, m: &Maps, l: [Label; 4]) {
    let [nat, deliver, punt, drop] = l;
    let seen = a.label();
    a.bind(nat);
    bounds_n(a, TCP_HDR_END, punt);
    plain_ipv4(a, 6, true, punt); // TCP, TTL > 1
    for (from, to) in [(IP_SRC, -16), (IP_DST, -12), (TCP_PORTS, -8)] {
        a.op(LDX_W, 5, 2, from, 0);
        a.op(STX_W, 10, 5, to, 0);
    }
    a.op(ST_W, 10, 0, -4, 0);
    a.op(ST_W, 10, 0, OPENED, 0);
    a.op(LDX_H, 5, 2, IP_TTL, 0); // TTL (low byte as loaded) and protocol
    a.op(STX_W, 10, 5, -56, 0);
    a.op(ADD_IMM, 5, 0, 0, -1);
    a.op(STX_W, 10, 5, -60, 0);
    let (lookup, open) = (a.label(), a.label());
    a.op(LDX_B, 5, 2, TCP_FLAGS, 0);
    a.op(MOV_REG, 4, 5, 0, 0);
    a.op(AND_IMM, 4, 0, 0, 0x17);
    a.jump(JEQ_IMM, 4, 0, 0x02, open); // a SYN alone: perhaps to a published port
    a.jump(JSET_IMM, 5, 0, 0x07, punt); // FIN, SYN, RST: the router's
    a.bind(lookup);
    a.lookup(m.nat_in, -16);
    a.jump(JEQ_IMM, 0, 0, 0, punt);
    a.op(MOV_REG, 7, 0, 0, 0);
    a.op(LDX_W, 5, 7, 20, 0);
    a.op(STX_W, 10, 5, -24, 0);
    host_end(a, m, punt);
    a.op(STX_W, 10, 5, -52, 0);
    // The SYN that opened the session is no sign the handshake went on.
    a.op(LDX_W, 5, 10, OPENED, 0);
    a.jump(JNE_IMM, 5, 0, 0, seen);
    a.op(LDX_W, 5, 7, 28, 0);
    a.jump(JNE_IMM, 5, 0, 0, seen);
    a.op(ST_W, 7, 0, 28, 1);
    a.bind(seen);
    store(a, 0, true, 0, 12, drop);
    store(a, IP_DST as i32, true, 12, 4, drop);
    store(a, TCP_PORTS as i32 + 2, true, 16, 2, drop);
    store(a, IP_TTL as i32, false, -60, 1, drop);
    let (l3, l4) = (FUNC_L3_CSUM_REPLACE, FUNC_L4_CSUM_REPLACE);
    let fixes = [
        Replace::new(l3, IP_CSUM, -12, Src::Value(12), 4, 0),
        Replace::new(l3, IP_CSUM, -56, Src::Stack(-60), 2, 0),
        Replace::new(l4, TCP_CSUM, -12, Src::Value(12), 4, BPF_F_PSEUDO_HDR),
        Replace::new(l4, TCP_CSUM, -6, Src::Value(16), 2, 0),
    ];
    csum_all(a, &fixes, drop);
    a.jump(JA, 0, 0, 0, deliver);
    open_session(a, m, [open, lookup, punt, drop]);
}

/// A SYN (fp-16 its `nat_in` key) to a published port: both halves of its session into
/// the maps, a copy to the router to observe; then on to `lookup`, which translates it.
/// Anything in the way (not published, an endpoint without a host end, a session
/// already there, a map full) leaves the SYN to the router.
fn open_session(a: &mut Asm, m: &Maps, l: [Label; 4]) {
    let [open, lookup, punt, drop] = l;
    let (undo, undo_in) = (a.label(), a.label());
    a.bind(open);
    a.op(LDX_W, 5, 10, -12, 0);
    a.op(STX_W, 10, 5, PUB_KEY, 0);
    a.op(LDX_H, 5, 10, -6, 0);
    a.op(STX_H, 10, 5, PUB_KEY + 4, 0);
    a.op(ST_H, 10, 0, PUB_KEY + 6, 6);
    a.lookup(m.published, PUB_KEY as i32);
    a.jump(JEQ_IMM, 0, 0, 0, punt);
    a.op(MOV_REG, 7, 0, 0, 0);
    for i in 0..4 {
        a.op(LDX_DW, 5, 7, i * 8, 0);
        a.op(STX_DW, 10, 5, IN_VALUE + i * 8, 0);
    }
    a.op(ST_W, 10, 0, IN_VALUE + 28, 0);
    // The outbound half's key: the endpoint's port, its address, the remote address,
    // its port, the remote port.
    a.op(LDX_W, 5, 7, 20, 0);
    a.op(STX_W, 10, 5, OUT_KEY, 0);
    a.op(LDX_W, 5, 7, 12, 0);
    a.op(STX_W, 10, 5, OUT_KEY + 4, 0);
    a.op(LDX_W, 5, 10, -16, 0);
    a.op(STX_W, 10, 5, OUT_KEY + 8, 0);
    a.op(LDX_H, 5, 7, 16, 0);
    a.op(STX_H, 10, 5, OUT_KEY + 12, 0);
    a.op(LDX_H, 5, 10, -8, 0);
    a.op(STX_H, 10, 5, OUT_KEY + 14, 0);
    // The endpoint has a host end to deliver to.
    a.op(LDX_W, 5, 7, 20, 0);
    a.op(STX_W, 10, 5, -24, 0);
    host_end(a, m, punt);
    // Its value: replies to the MAC the SYN came from, from the uplink's, from the
    // address and port the SYN was sent to, out of this device.
    bounds(a, punt);
    for (ld, from, st, to) in [
        (LDX_W, 6, STX_W, 0),
        (LDX_H, 10, STX_H, 4),
        (LDX_H, 0, STX_H, 6),
        (LDX_W, 2, STX_W, 8),
    ] {
        a.op(ld, 5, 2, from, 0);
        a.op(st, 10, 5, OUT_VALUE + to, 0);
    }
    a.op(LDX_W, 5, 10, -12, 0);
    a.op(STX_W, 10, 5, OUT_VALUE + 12, 0);
    a.op(LDX_H, 5, 10, -6, 0);
    a.op(STX_H, 10, 5, OUT_VALUE + 16, 0);
    a.op(ST_H, 10, 0, OUT_VALUE + 18, 0);
    a.op(LDX_W, 5, 6, SKB_IFINDEX, 0);
    a.op(STX_W, 10, 5, OUT_VALUE + 20, 0);
    a.op(ST_W, 10, 0, OUT_VALUE + 24, 0);
    a.op(ST_W, 10, 0, OUT_VALUE + 28, 0);
    update(a, m.nat_in, -16, IN_VALUE);
    a.jump(JNE_IMM, 0, 0, 0, punt);
    update(a, m.nat_out, OUT_KEY, OUT_VALUE);
    a.jump(JNE_IMM, 0, 0, 0, undo_in);
    // The router's copy: tagged with the uplink's port and OBSERVED.
    a.op(MOV_REG, 1, 6, 0, 0);
    a.op(MOV_IMM, 2, 0, 0, ETH_P_8021AD_BE);
    a.op(MOV_REG, 3, 8, 0, 0);
    a.op(OR_IMM, 3, 0, 0, OBSERVED as i32);
    a.call(FUNC_SKB_VLAN_PUSH);
    a.jump(JNE_IMM, 0, 0, 0, undo);
    a.op(MOV_REG, 1, 6, 0, 0);
    a.op(MOV_REG, 2, 9, 0, 0);
    a.op(MOV_IMM, 3, 0, 0, 0);
    a.call(FUNC_CLONE_REDIRECT);
    a.op(MOV_REG, 7, 0, 0, 0);
    a.op(MOV_REG, 1, 6, 0, 0);
    a.call(FUNC_SKB_VLAN_POP);
    a.jump(JNE_IMM, 0, 0, 0, drop);
    a.jump(JNE_IMM, 7, 0, 0, undo); // the router would never hear of it
    a.op(ST_W, 10, 0, OPENED, 1);
    a.jump(JA, 0, 0, 0, lookup);
    a.bind(undo);
    delete(a, m.nat_out, OUT_KEY);
    a.bind(undo_in);
    delete(a, m.nat_in, -16);
    a.jump(JA, 0, 0, 0, punt);
}

/// r0 = bpf_map_update_elem(map, fp + key, fp + value, BPF_NOEXIST)
fn update(a: &mut Asm, map: i32, key: i16, value: i16) {
    a.load_map(1, map);
    a.op(MOV_REG, 2, 10, 0, 0);
    a.op(ADD_IMM, 2, 0, 0, key as i32);
    a.op(MOV_REG, 3, 10, 0, 0);
    a.op(ADD_IMM, 3, 0, 0, value as i32);
    a.op(MOV_IMM, 4, 0, 0, BPF_NOEXIST);
    a.call(FUNC_MAP_UPDATE);
}

/// bpf_map_delete_elem(map, fp + key)
fn delete(a: &mut Asm, map: i32, key: i16) {
    a.load_map(1, map);
    a.op(MOV_REG, 2, 10, 0, 0);
    a.op(ADD_IMM, 2, 0, 0, key as i32);
    a.call(FUNC_MAP_DELETE);
}
