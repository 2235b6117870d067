//! Port security in the kernel ([`crate::port_security`] in the workers): the fast path
//! forwards a frame from a guarded port only when it is IPv4 from one of the port's
//! allowed addresses, or ARP whose sender is one of them at the frame's own source MAC
//! (the unicast requests a neighbour cache sends to confirm an entry). Everything else
//! from such a port (another source, probes from 0.0.0.0, other ethertypes) goes to
//! the worker, whose guard passes what the protocols need and
//! drops and counts the rest per port. The source MAC needs no check here: the
//! programs forward only from a MAC installed on the very port, and the worker learns
//! (and installs) only what its guard allowed.
//!
//! Two maps, written by [`super::FastPath::set_guard`]: `guarded`, an array with one
//! u32 per port (nonzero: guarded), and `allowed`, a hash of (port u32, IPv4 address
//! as on the wire) for each address a guarded port may send from. A port's addresses
//! go in before its flag, so a port never has the flag without them.

use super::asm::*;

/// The key built on the stack: the port at fp-144, the source address at fp-140.
const KEY: i16 = -144;
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
/// the frame is neither IPv4 from an allowed address nor ARP from one (at the frame's
/// source MAC); falls through otherwise. Clobbers
/// r0-r5 (the caller reloads its frame pointers).
pub(super) fn check(
    a: &mut Asm,
    m: Maps,
    port: Port,
    bounds: impl Fn(&mut Asm, i32, Label),
    punt: Label,
) {
    let (ok, arp, have_ip) = (a.label(), a.label(), a.label());
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
    a.bind(ok);
}

/// An `allowed` key: `port` may send from `ip`.
pub(super) fn allowed_key(port: crate::PortId, ip: std::net::Ipv4Addr) -> [u8; ALLOWED_KEY_LEN] {
    let mut k = [0u8; ALLOWED_KEY_LEN];
    k[..4].copy_from_slice(&port.to_ne_bytes());
    k[4..].copy_from_slice(&ip.octets());
    k
}
