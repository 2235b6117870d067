//! The inbound half of the NAT fast path: an XDP program on the uplink. A TCP packet of
//! an established session the router handed to the kernel (`nat_in`, installed with its
//! outbound half by `fast_nat`) is translated back in place (MACs, destination address
//! and port, TTL, both checksums updated incrementally as RFC 1624 says) and redirected
//! through the devmap straight to the endpoint's veth. Everything else goes to the
//! uplink's AF_XDP socket, as without it.

use super::asm::*;
use super::tc::plain_ipv4;
use super::{FUNC_REDIRECT_MAP, XDP_PASS, XDP_REDIRECT};
use crate::bpf::BpfInsn;

/// The maps the program reads, by fd.
pub(super) struct Maps {
    pub xsks: i32,
    /// (source address, destination address, source and destination ports, 4 bytes 0)
    /// as on the wire -> `NatValue` (destination and source MAC, the inside address and
    /// port, the endpoint's port id at 20, the seen mark at 28)
    pub nat_in: i32,
    pub ports: i32,
    pub stats: i32,
}

/// r0 += (16-bit word at r2 + `old`) ^ 0xffff (the old value's complement); r0 += the new
/// 16-bit word at r7 + `new` (the session's value). r4 is clobbered.
fn swap_word(a: &mut Asm, old: i16, new: i16) {
    a.op(LDX_H, 4, 2, old, 0);
    a.op(XOR_IMM, 4, 0, 0, 0xffff);
    a.op(ADD_REG, 0, 4, 0, 0);
    a.op(LDX_H, 4, 7, new, 0);
    a.op(ADD_REG, 0, 4, 0, 0);
}

/// r0 = the one's complement sum in r0 folded to 16 bits, complemented, stored at r2 +
/// `at` (RFC 1624: HC' = ~(~HC + ~m + m')). r4 is clobbered.
fn fold_store(a: &mut Asm, at: i16) {
    a.fold_checksum();
    a.op(STX_H, 2, 0, at, 0);
}

/// To `partial` when the TCP checksum field holds only the pseudo-header seed: the
/// sender (a veth peer with checksum offload on) left it to "hardware", and a segment
/// translated in place would reach the endpoint with a checksum it drops. The router
/// finishes those. The frame is at r2, IPv4 without options (checked); the sum is taken
/// in the frame's byte order throughout. Clobbers r0, r4.
fn partial_checksum(a: &mut Asm, partial: Label) {
    a.op(LDX_W, 0, 2, 26, 0); // source address
    a.op(LDX_W, 4, 2, 30, 0); // destination address
    a.op(ADD_REG, 0, 4, 0, 0);
    a.op(LDX_H, 4, 2, 16, 0); // total length
    a.bswap16(4);
    a.op(ADD_IMM, 4, 0, 0, -20); // the TCP length (no IP options)
    a.bswap16(4);
    a.op(ADD_REG, 0, 4, 0, 0);
    a.op(ADD_IMM, 0, 0, 0, 0x0600); // protocol 6: the bytes 00 06
    for _ in 0..3 {
        a.op(MOV_REG, 4, 0, 0, 0);
        a.op(RSH_IMM, 4, 0, 0, 16);
        a.op(AND_IMM, 0, 0, 0, 0xffff);
        a.op(ADD_REG, 0, 4, 0, 0);
    }
    a.op(LDX_H, 4, 2, 50, 0); // the TCP checksum
    a.jump(JEQ_REG, 4, 0, 0, partial);
}

/// r2 = data, r3 = data_end; to `fail` unless the Ethernet, IPv4 and TCP headers fit.
fn bounds(a: &mut Asm, fail: Label) {
    a.op(LDX_W, 2, 6, 0, 0);
    a.op(LDX_W, 3, 6, 4, 0);
    a.op(MOV_REG, 4, 2, 0, 0);
    a.op(ADD_IMM, 4, 0, 0, 54);
    a.jump(JGT_REG, 4, 3, 0, fail);
}

/// r6 = ctx, r7 = the session's value, r8 = the endpoint's port. Stack: fp-16 the key,
/// fp-20 the counters' key.
pub(super) fn program(m: &Maps) -> Vec<BpfInsn> {
    let mut a = Asm::default();
    let (punt, done) = (a.label(), a.label());
    a.op(MOV_REG, 6, 1, 0, 0);
    bounds(&mut a, punt);
    a.op(LDX_H, 5, 2, 12, 0);
    a.jump(JNE_IMM, 5, 0, 0x0008, punt); // IPv4
    plain_ipv4(&mut a, 6, true, punt); // TCP, TTL > 1 (else the router's)
    partial_checksum(&mut a, punt);
    a.op(LDX_B, 5, 2, 47, 0);
    a.jump(JSET_IMM, 5, 0, 0x07, punt); // FIN, SYN, RST: the router's
    for (from, to) in [(26, -16), (30, -12), (34, -8)] {
        a.op(LDX_W, 5, 2, from, 0);
        a.op(STX_W, 10, 5, to, 0);
    }
    a.op(ST_W, 10, 0, -4, 0);
    a.lookup(m.nat_in, -16);
    a.jump(JEQ_IMM, 0, 0, 0, punt);
    a.op(MOV_REG, 7, 0, 0, 0);
    a.op(LDX_W, 8, 7, 20, 0);
    // The egress first: nothing is rewritten for a frame that could not leave.
    a.load_map(1, m.ports);
    a.op(MOV_REG, 2, 8, 0, 0);
    a.op(MOV_IMM, 3, 0, 0, 0);
    a.call(FUNC_REDIRECT_MAP);
    a.jump(JNE_IMM, 0, 0, XDP_REDIRECT, punt);
    a.mark_seen(7, 28);
    bounds(&mut a, punt); // the calls clobbered r2-r5
                          // IP checksum: the destination address and the TTL.
    a.op(LDX_H, 0, 2, 24, 0);
    a.op(XOR_IMM, 0, 0, 0, 0xffff);
    swap_word(&mut a, 30, 12);
    swap_word(&mut a, 32, 14);
    a.op(LDX_H, 4, 2, 22, 0); // TTL (low byte as loaded) and protocol
    a.op(MOV_REG, 5, 4, 0, 0);
    a.op(XOR_IMM, 4, 0, 0, 0xffff);
    a.op(ADD_REG, 0, 4, 0, 0);
    a.op(ADD_IMM, 5, 0, 0, -1);
    a.op(ADD_REG, 0, 5, 0, 0);
    a.op(STX_B, 2, 5, 22, 0);
    fold_store(&mut a, 24);
    // TCP checksum: the destination address (pseudo-header) and port.
    a.op(LDX_H, 0, 2, 50, 0);
    a.op(XOR_IMM, 0, 0, 0, 0xffff);
    swap_word(&mut a, 30, 12);
    swap_word(&mut a, 32, 14);
    swap_word(&mut a, 36, 16);
    fold_store(&mut a, 50);
    // The fields themselves.
    for (at, from, load, store) in [
        (0, 0, LDX_W, STX_W),
        (4, 4, LDX_W, STX_W),
        (8, 8, LDX_W, STX_W),
        (30, 12, LDX_W, STX_W),
        (36, 16, LDX_H, STX_H),
    ] {
        a.op(load, 5, 7, from, 0);
        a.op(store, 2, 5, at, 0);
    }
    // Count it as sent to the endpoint.
    a.op(LDX_W, 9, 6, 4, 0);
    a.op(LDX_W, 5, 6, 0, 0);
    a.op(0x1f, 9, 5, 0, 0); // r9 = data_end - data
    a.op(STX_W, 10, 8, -20, 0);
    let tx = Count {
        tx: true,
        packets: None,
        bytes: Amount::Reg(9),
    };
    a.count(m.stats, -20, tx, done);
    a.bind(done);
    a.ret(XDP_REDIRECT);
    // Everything else: the uplink's AF_XDP socket.
    a.bind(punt);
    a.op(LDX_W, 2, 6, 16, 0);
    a.load_map(1, m.xsks);
    a.op(MOV_IMM, 3, 0, 0, XDP_PASS);
    a.call(FUNC_REDIRECT_MAP);
    a.op(EXIT, 0, 0, 0, 0);
    a.finish()
}
