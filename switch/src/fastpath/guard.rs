//! Port security in the kernel ([`crate::port_security`] in the workers): the fast path
//! forwards a frame from a guarded port only when it is
//! - IPv4 from one of the port's allowed addresses;
//! - ARP whose sender is one of them at the frame's own source MAC (the unicast requests
//!   a neighbour cache sends to confirm an entry);
//! - IPv6 (version 6, the fixed header in the frame) from one of the port's IPv6
//!   addresses or from the EUI-64 link-local address of the frame's source MAC, whose
//!   next header is not ICMPv6 or an extension header (hop-by-hop, routing, fragment,
//!   authentication, destination options), or is ICMPv6 echo request or reply (so
//!   `ping -6` stays in the kernel too).
//!
//! Everything else from such a port (another source, probes from 0.0.0.0 or ::,
//! neighbour discovery and MLD, anything behind extension headers, other ethertypes)
//! goes to the worker, whose guard passes what the protocols need and drops and counts
//! the rest per port: the worker's guard walks extension headers and checks neighbour
//! discovery's targets and link-layer addresses, the kernel only repeats its simplest
//! decisions. The source MAC needs no check here: the programs forward only from a MAC
//! installed on the very port, and the worker learns (and installs) only what its guard
//! allowed; so the link-local address is derived from the frame's own source MAC here
//! (a few compares, no map entry), where the worker accepts any of the port's MACs'.
//!
//! Three maps, written by [`super::FastPath::set_guard`]: `guarded`, an array with one
//! u32 per port (nonzero: guarded), `allowed`, a hash of (port u32, IPv4 address as on
//! the wire) for each IPv4 address a guarded port may send from, and `allowed6`, a hash
//! of (port u32, IPv6 address as on the wire) for each of its IPv6 ones. IPv6 has a map
//! of its own rather than a wider key for both: IPv4 frames, the fast path's bulk, keep
//! their 8-byte key (two stack stores, a short hash) and pay nothing for IPv6. A port's
//! addresses go in before its flag, so a port never has the flag without them.

use super::asm::*;

/// The key built on the stack: the port at fp-144, the source address at fp-140.
const KEY: i16 = -144;
/// The IPv6 key: the port at fp-168, the source address at fp-164 .. fp-148 (clear of
/// what the tunnel branch writes after the check, from fp-136 up).
const KEY6: i16 = -168;
/// `allowed6` key: port (u32, native order), IPv6 address (network order).
pub(super) const ALLOWED6_KEY_LEN: usize = 20;
/// Ethernet + the fixed IPv6 header; its version byte, next header and source.
const IPV6_END: i32 = 54;
const IP6_VERSION: i16 = 14;
const IP6_NEXT: i16 = 20;
const IP6_SRC: i16 = 22;
/// Ethernet + IPv6 + the ICMPv6 header; its type.
const ICMP6_END: i32 = 62;
const ICMP6_TYPE: i16 = 54;
/// What the kernel never forwards behind the fixed IPv6 header: ICMPv6 other than echo
/// and the extension headers the worker's guard walks.
const ICMPV6: i32 = 58;
const EXTENSION_HEADERS: [i32; 5] = [0, 43, 44, 51, 60];
/// `allowed` key: port (u32, native order), IPv4 address (network order).
pub(super) const ALLOWED_KEY_LEN: usize = 8;
/// Ethernet + an IPv4 header without options.
const IPV4_END: i32 = 34;
const IP_SRC: i16 = 26;
/// Ethernet + an Ethernet/IPv4 ARP packet; its sender MAC and IPv4 address.
const ARP_END: i32 = 42;
const ARP_SENDER_MAC: i16 = 22;
const ARP_SENDER_IP: i16 = 28;

/// The maps the check reads, by fd.
#[derive(Clone, Copy)]
pub(super) struct Maps {
    pub guarded: i32,
    pub allowed: i32,
    pub allowed6: i32,
}

/// Where the program holds the port being checked.
#[derive(Clone, Copy)]
pub(super) enum Port {
    /// In a register (the tc endpoint program's r8).
    Reg(u8),
    /// Known when the program is built (the XDP flavour's, one program per port).
    Imm(i32),
}

/// The check, with the frame's Ethernet header already in bounds. `bounds(a, n, fail)`
/// loads r2 = data, r3 = data end and goes to `fail` unless `n` bytes are there (the
/// flavours read their context differently). On to `punt` when the port is guarded and
/// the frame is not one the module's docs list; falls through otherwise. Clobbers
/// r0-r5 (the caller reloads its frame pointers).
pub(super) fn check(
    a: &mut Asm,
    m: Maps,
    port: Port,
    bounds: impl Fn(&mut Asm, i32, Label),
    punt: Label,
) {
    let (ok, arp, have_ip, ipv6) = (a.label(), a.label(), a.label(), a.label());
    match port {
        Port::Reg(r) => a.op(STX_W, 10, r, KEY, 0),
        Port::Imm(p) => a.op(ST_W, 10, 0, KEY, p),
    }
    a.lookup(m.guarded, KEY as i32);
    a.jump(JEQ_IMM, 0, 0, 0, punt); // past the array: never forward
    a.op(LDX_W, 5, 0, 0, 0);
    a.jump(JEQ_IMM, 5, 0, 0, ok); // port security off for this port
    bounds(a, IPV4_END, punt);
    a.op(LDX_H, 5, 2, 12, 0); // the ethertype, as loaded
    a.jump(JEQ_IMM, 5, 0, 0x0608, arp);
    a.jump(JEQ_IMM, 5, 0, 0xdd86, ipv6);
    a.jump(JNE_IMM, 5, 0, 0x0008, punt);
    a.op(LDX_W, 5, 2, IP_SRC, 0);
    a.jump(JA, 0, 0, 0, have_ip);
    // ARP: the sender MAC is the frame's source, the sender address is checked.
    a.bind(arp);
    bounds(a, ARP_END, punt);
    a.op(LDX_W, 4, 2, ARP_SENDER_MAC, 0);
    a.op(LDX_W, 5, 2, 6, 0);
    a.jump(JNE_REG, 4, 5, 0, punt);
    a.op(LDX_H, 4, 2, ARP_SENDER_MAC + 4, 0);
    a.op(LDX_H, 5, 2, 10, 0);
    a.jump(JNE_REG, 4, 5, 0, punt);
    a.op(LDX_W, 5, 2, ARP_SENDER_IP, 0);
    a.bind(have_ip);
    a.op(STX_W, 10, 5, KEY + 4, 0);
    a.lookup(m.allowed, KEY as i32);
    a.jump(JEQ_IMM, 0, 0, 0, punt);
    a.jump(JA, 0, 0, 0, ok);
    a.bind(ipv6);
    check_ipv6(a, m, port, &bounds, punt);
    a.bind(ok);
}

/// The IPv6 half of [`check`]: at `punt` unless the frame is IPv6 the kernel may
/// forward from an allowed source; falls through otherwise.
fn check_ipv6(
    a: &mut Asm,
    m: Maps,
    port: Port,
    bounds: &impl Fn(&mut Asm, i32, Label),
    punt: Label,
) {
    let (icmp, source, global) = (a.label(), a.label(), a.label());
    bounds(a, IPV6_END, punt);
    a.op(LDX_B, 5, 2, IP6_VERSION, 0);
    a.op(AND_IMM, 5, 0, 0, 0xf0);
    a.jump(JNE_IMM, 5, 0, 0x60, punt);
    // TCP and UDP first: what nearly every frame carries.
    a.op(LDX_B, 5, 2, IP6_NEXT, 0);
    a.jump(JEQ_IMM, 5, 0, 6, source);
    a.jump(JEQ_IMM, 5, 0, 17, source);
    a.jump(JEQ_IMM, 5, 0, ICMPV6, icmp);
    for h in EXTENSION_HEADERS {
        a.jump(JEQ_IMM, 5, 0, h, punt);
    }
    a.jump(JA, 0, 0, 0, source);
    // ICMPv6: echo only (neighbour discovery is the worker's to check).
    a.bind(icmp);
    bounds(a, ICMP6_END, punt);
    a.op(LDX_B, 5, 2, ICMP6_TYPE, 0);
    a.jump(JEQ_IMM, 5, 0, 128, source);
    a.jump(JNE_IMM, 5, 0, 129, punt);
    // The source: the link-local address of the frame's MAC (fe80::/64, the MAC with
    // ff:fe in the middle and the universal/local bit inverted), or one in `allowed6`.
    a.bind(source);
    a.op(LDX_W, 4, 2, IP6_SRC, 0);
    a.jump(JNE_IMM, 4, 0, 0x80fe, global); // fe80:0000 as loaded
    a.op(LDX_W, 4, 2, IP6_SRC + 4, 0);
    a.jump(JNE_IMM, 4, 0, 0, global);
    let iid = IP6_SRC + 8;
    a.op(LDX_H, 4, 2, iid, 0);
    a.op(LDX_H, 5, 2, 6, 0);
    a.op(XOR_IMM, 5, 0, 0, 0x02); // the first byte's U/L bit, as loaded
    a.jump(JNE_REG, 4, 5, 0, global);
    for (at, mac) in [(iid + 2, 8), (iid + 5, 9)] {
        a.op(LDX_B, 4, 2, at, 0);
        a.op(LDX_B, 5, 2, mac, 0);
        a.jump(JNE_REG, 4, 5, 0, global);
    }
    a.op(LDX_H, 4, 2, iid + 3, 0);
    a.jump(JNE_IMM, 4, 0, 0xfeff, global); // ff:fe as loaded
    a.op(LDX_H, 4, 2, iid + 6, 0);
    a.op(LDX_H, 5, 2, 10, 0);
    a.jump(JNE_REG, 4, 5, 0, global);
    let done = a.label();
    a.jump(JA, 0, 0, 0, done);
    a.bind(global);
    match port {
        Port::Reg(r) => a.op(STX_W, 10, r, KEY6, 0),
        Port::Imm(p) => a.op(ST_W, 10, 0, KEY6, p),
    }
    for i in 0..4 {
        a.op(LDX_W, 4, 2, IP6_SRC + 4 * i, 0);
        a.op(STX_W, 10, 4, KEY6 + 4 + 4 * i, 0);
    }
    a.lookup(m.allowed6, KEY6 as i32);
    a.jump(JEQ_IMM, 0, 0, 0, punt);
    a.bind(done);
}

/// An `allowed` key: `port` may send from `ip`.
pub(super) fn allowed_key(port: crate::PortId, ip: std::net::Ipv4Addr) -> [u8; ALLOWED_KEY_LEN] {
    let mut k = [0u8; ALLOWED_KEY_LEN];
    k[..4].copy_from_slice(&port.to_ne_bytes());
    k[4..].copy_from_slice(&ip.octets());
    k
}

/// An `allowed6` key: `port` may send from `ip`.
pub(super) fn allowed6_key(port: crate::PortId, ip: std::net::Ipv6Addr) -> [u8; ALLOWED6_KEY_LEN] {
    let mut k = [0u8; ALLOWED6_KEY_LEN];
    k[..4].copy_from_slice(&port.to_ne_bytes());
    k[4..].copy_from_slice(&ip.octets());
    k
}
