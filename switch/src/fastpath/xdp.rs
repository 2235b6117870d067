//! The XDP flavour of the fast path (`-o fastpath=xdp` networks): a program on each
//! AF_XDP sandbox port that redirects known unicast through a devmap straight to the
//! egress veth, and hands everything else to the port's AF_XDP socket. A port with
//! port security forwards in the kernel only IPv4, ARP and IPv6 (no neighbour
//! discovery, no extension headers) from its own addresses ([`super::guard`]).

use super::asm::{Asm, Label};
use super::{FUNC_REDIRECT_MAP, XDP_PASS, XDP_REDIRECT};
use crate::bpf::BpfInsn;
use crate::{NetId, PortId};

const FUNC_XDP_GET_BUFF_LEN: i32 = 188;

/// The maps the program reads, by fd.
pub(super) struct Maps {
    /// The port's AF_XDP sockets by receive queue.
    pub xsks: i32,
    pub fdb: i32,
    pub ports: i32,
    pub stats: i32,
    pub guard: super::guard::Maps,
}

/// r2 = ctx->data, r3 = ctx->data_end; to `fail` unless `n` bytes are there.
fn bounds(a: &mut Asm, n: i32, fail: Label) {
    a.op(0x61, 2, 6, 0, 0);
    a.op(0x61, 3, 6, 4, 0);
    a.op(0xbf, 4, 2, 0, 0);
    a.op(0x07, 4, 0, 0, n);
    a.jump(0x2d, 4, 3, 0, fail);
}

/// The fast-path program (r6 = ctx, r7 = egress port, r8 = frame length; the FDB key
/// is built at fp-16: network u32, MAC, u16 zero; the counters' key at fp-20). An FDB
/// value is the port (u32) and a `seen` mark (u32) the program sets on a source.
pub(super) fn program(m: &Maps, net: NetId, port: PortId) -> Vec<BpfInsn> {
    let (xsks, fdb, ports, stats) = (m.xsks, m.fdb, m.ports, m.stats);
    let mut a = Asm::default();
    let (punt, tx, done, seen) = (a.label(), a.label(), a.label(), a.label());
    let port = port as i32;
    a.op(0xbf, 6, 1, 0, 0); // r6 = ctx
                            // Ethernet header in bounds, destination unicast, no VLAN tag.
    a.op(0x61, 2, 6, 0, 0); // r2 = ctx->data
    a.op(0x61, 3, 6, 4, 0); // r3 = ctx->data_end
    a.op(0xbf, 4, 2, 0, 0); // r4 = r2
    a.op(0x07, 4, 0, 0, 14); // r4 += 14
    a.jump(0x2d, 4, 3, 0, punt); // if r4 > r3
    a.op(0x71, 5, 2, 0, 0); // r5 = dst[0]
    a.jump(0x45, 5, 0, 1, punt); // if r5 & 1: group address
    a.op(0x69, 5, 2, 12, 0); // r5 = ethertype (network order)
    a.jump(0x15, 5, 0, 0x0081, punt); // 802.1Q
    a.jump(0x15, 5, 0, 0xa888, punt); // 802.1ad
                                      // The source must be installed on this port.
    a.op(0x62, 10, 0, -16, net as i32); // *(u32 *)(fp - 16) = net
    a.op(0x61, 5, 2, 6, 0); // r5 = src[0..4]
    a.op(0x63, 10, 5, -12, 0); // *(u32 *)(fp - 12) = r5
    a.op(0x69, 5, 2, 10, 0); // r5 = src[4..6]
    a.op(0x6b, 10, 5, -8, 0); // *(u16 *)(fp - 8) = r5
    a.op(0x6a, 10, 0, -6, 0); // *(u16 *)(fp - 6) = 0
    a.lookup(fdb, -16);
    a.jump(0x15, 0, 0, 0, punt); // if !r0
    a.op(0x61, 5, 0, 0, 0); // r5 = value->port
    a.jump(0x55, 5, 0, port, punt); // if r5 != port
                                    // Mark the source seen, for the worker's aging (a write only when it is not yet).
    a.op(0x61, 5, 0, 4, 0); // r5 = value->seen
    a.jump(0x55, 5, 0, 0, seen);
    a.op(0x62, 0, 0, 4, 1); // value->seen = 1
    a.bind(seen);
    // A guarded port's frame is IPv4, ARP or plain IPv6 from one of its addresses.
    super::guard::check(&mut a, m.guard, super::guard::Port::Imm(port), bounds, punt);
    // The destination must be installed on another port.
    bounds(&mut a, 14, punt); // the calls clobbered r2-r5: reload and recheck
    a.op(0x61, 5, 2, 0, 0); // r5 = dst[0..4]
    a.op(0x63, 10, 5, -12, 0);
    a.op(0x69, 5, 2, 4, 0); // r5 = dst[4..6]
    a.op(0x6b, 10, 5, -8, 0);
    a.lookup(fdb, -16);
    a.jump(0x15, 0, 0, 0, punt);
    a.op(0x61, 7, 0, 0, 0); // r7 = value->port
    a.jump(0x15, 7, 0, port, punt); // same port: the worker drops and counts it
    a.load_map(1, ports);
    a.op(0xbf, 2, 7, 0, 0); // r2 = r7
    a.op(0xb7, 3, 0, 0, 0); // r3 = 0: XDP_ABORTED when the slot is empty
    a.op(0x85, 0, 0, 0, FUNC_REDIRECT_MAP);
    a.jump(0x55, 0, 0, XDP_REDIRECT, punt); // no such egress: the worker's
                                            // Count: rx on this port, tx on the egress.
    a.op(0xbf, 1, 6, 0, 0);
    a.op(0x85, 0, 0, 0, FUNC_XDP_GET_BUFF_LEN);
    a.op(0xbf, 8, 0, 0, 0); // r8 = length
    a.op(0x62, 10, 0, -20, port); // *(u32 *)(fp - 20) = port
    a.lookup(stats, -20);
    a.jump(0x15, 0, 0, 0, tx);
    a.add_u64(0, None);
    a.add_u64(8, Some(8));
    a.bind(tx);
    a.op(0x63, 10, 7, -20, 0); // *(u32 *)(fp - 20) = r7
    a.lookup(stats, -20);
    a.jump(0x15, 0, 0, 0, done);
    a.add_u64(16, None);
    a.add_u64(24, Some(8));
    a.bind(done);
    a.op(0xb7, 0, 0, 0, XDP_REDIRECT);
    a.op(0x95, 0, 0, 0, 0);
    // Everything else: the AF_XDP socket, as without the fast path.
    a.bind(punt);
    a.op(0x61, 2, 6, 16, 0); // r2 = ctx->rx_queue_index
    a.load_map(1, xsks);
    a.op(0xb7, 3, 0, 0, XDP_PASS);
    a.op(0x85, 0, 0, 0, FUNC_REDIRECT_MAP);
    a.op(0x95, 0, 0, 0, 0);
    a.finish()
}
