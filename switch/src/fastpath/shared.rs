//! A NIC shared between the host and the switch (`CFG_SHARED` in the tc uplink's
//! `cfg`): the host keeps the uplink's address and MAC for its own traffic, and the
//! switch uses the same address for SNAT, published ports and VXLAN. At the start of the
//! uplink program (before the capture flag: a captured shared uplink still passes the
//! host's traffic), frames are steered:
//!
//! - ARP, to any MAC: both (a copy tagged like a punt to the router's trunk, which
//!   answers for a VTEP address of its own and learns from the rest, and TC_ACT_OK).
//! - VLAN-tagged, not unicast to the uplink's MAC, or not IPv4: the host's.
//! - IPv4 to another address: the switch's if it is the VTEP's, else the host's.
//! - IPv4 to the shared address: fragments are the host's; ICMP echo requests the
//!   host's, other ICMP (echo replies, errors) both; UDP to 4789 when the VTEP is the
//!   shared address the switch's; TCP and UDP to a port in `owned` (the published ports)
//!   the switch's, below `owned_from` the host's, from `owned_from` up the host's if it
//!   has a socket for the tuple (`bpf_skc_lookup_tcp`, `bpf_sk_lookup_udp`: established,
//!   listening, time-wait, bound) and otherwise the switch's; other protocols the host's.
//!
//! What is the switch's goes on into the uplink program unchanged; the host's returns
//! TC_ACT_OK. The program fails open: when vswitchd dies its tcx link goes, and with it
//! the program.

use std::io;

use super::asm::*;
use super::tc::*;
use super::uplink::FUNC_CLONE_REDIRECT;
use super::FastPath;
use crate::bpf;

/// Published ports on a shared address the `owned` map holds at most.
pub(super) const OWNED_ENTRIES: u32 = 16384;

/// The `owned` map's key: the IP protocol number (6 TCP, 17 UDP) shifted left by 16,
/// ORed with the port in host order, as a native-order u32. Its value is a u32 (1).
pub fn owned_key(proto: u8, port: u16) -> [u8; 4] {
    ((u32::from(proto) << 16) | u32::from(port)).to_ne_bytes()
}

impl FastPath {
    /// On a shared tc uplink, frames to `port` (`proto` 6 or 17) on the shared address
    /// are the switch's (`owned`), or no longer (a port not owned is no error).
    pub fn own_port(&self, proto: u8, port: u16, owned: bool) -> io::Result<()> {
        let key = owned_key(proto, port);
        if owned {
            return bpf::map_update_bytes(&self.owned, &key, &1u32.to_ne_bytes())
                .map_err(|e| bpf::context(e, "add the port to the owned ports' map", ""));
        }
        match bpf::map_delete_bytes(&self.owned, &key) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map_err(|e| bpf::context(e, "remove the port from the owned ports' map", "")),
        }
    }
}

// Offsets in the `cfg` entry (super::uplink::CFG_LEN).
const CFG_SHARED_IP: i16 = 24;
const CFG_OWNED_FROM: i16 = 28;

// The stack (free in the uplink program, which keeps fp-72 the uplink's MAC and fp-64
// the VTEP address from its cfg): fp-104 the IPv4 header (20 bytes) and right behind it
// the first 4 bytes of the transport header, so that fp-92 is the `bpf_sock_tuple`
// (source and destination address, source and destination port, as on the wire);
// fp-108 the shared address, fp-112 owned_from, fp-116 the cfg's flags, fp-120 the
// `owned` key.
const IPH: i16 = -104;
const TUPLE: i16 = IPH + 12;
const L4: i16 = IPH + 20;
const SHARED_IP: i16 = -108;
const OWNED_FROM: i16 = -112;
const FLAGS: i16 = -116;
const OWNED_KEY: i16 = -120;
const VTEP: i16 = -64;
const MAC: i16 = -72;

const FUNC_SKB_LOAD_BYTES: i32 = 26;
const FUNC_SK_LOOKUP_UDP: i32 = 85;
const FUNC_SK_RELEASE: i32 = 86;
const FUNC_SKC_LOOKUP_TCP: i32 = 99;
const TC_ACT_OK: i32 = 0;
const ETH_P_ARP_AS_LOADED: i32 = 0x0608;
const ETH_P_IP_AS_LOADED: i32 = 0x0008;
const VXLAN_PORT: i32 = 4789;

/// The classification, entered at `shared` with r0 = the cfg entry, r5 its flags, r6 =
/// skb, r8 = the uplink's port, r9 = the trunk's ifindex (the uplink program's
/// registers, which it keeps); what is the switch's goes on at `main` with r5 = the
/// flags again, the rest returns TC_ACT_OK (`drop` if a copy's tag cannot come off).
pub(super) fn classify(a: &mut Asm, owned: i32, l: [Label; 3]) {
    let [shared, main, drop] = l;
    let (pass, both, switch) = (a.label(), a.label(), a.label());
    let (to_us, ports, not_vxlan, udp, found) =
        (a.label(), a.label(), a.label(), a.label(), a.label());
    a.bind(shared);
    a.op(STX_W, 10, 5, FLAGS, 0);
    a.op(LDX_W, 5, 0, CFG_SHARED_IP, 0);
    a.op(STX_W, 10, 5, SHARED_IP, 0);
    a.op(LDX_W, 5, 0, CFG_OWNED_FROM, 0);
    a.op(STX_W, 10, 5, OWNED_FROM, 0);
    // ARP to any MAC: both; VLAN-tagged, not IPv4, not unicast to us: the host's.
    a.op(LDX_W, 2, 6, SKB_VLAN_PRESENT, 0);
    a.jump(JNE_IMM, 2, 0, 0, pass);
    bounds(a, pass);
    a.op(LDX_H, 5, 2, 12, 0);
    a.jump(JEQ_IMM, 5, 0, ETH_P_ARP_AS_LOADED, both);
    a.jump(JNE_IMM, 5, 0, ETH_P_IP_AS_LOADED, pass);
    a.op(LDX_W, 5, 2, 0, 0);
    a.op(LDX_W, 4, 10, MAC, 0);
    a.jump(JNE_REG, 5, 4, 0, pass);
    a.op(LDX_H, 5, 2, 4, 0);
    a.op(LDX_H, 4, 10, MAC + 4, 0);
    a.jump(JNE_REG, 5, 4, 0, pass);
    // The IPv4 header (copied: options and non-linear skbs need no special case);
    // r7 = the transport header's offset.
    load_bytes(a, None, IPH, 20, pass);
    a.op(LDX_B, 5, 10, IPH, 0);
    a.op(MOV_REG, 4, 5, 0, 0);
    a.op(AND_IMM, 4, 0, 0, 0xf0);
    a.jump(JNE_IMM, 4, 0, 0x40, pass);
    a.op(AND_IMM, 5, 0, 0, 0x0f);
    a.jump(JLE_IMM, 5, 0, 4, pass);
    a.op(LSH_IMM, 5, 0, 0, 2);
    a.op(ADD_IMM, 5, 0, 0, 14);
    a.op(MOV_REG, 7, 5, 0, 0);
    // Another destination: the switch's if it is the VTEP address, else the host's.
    a.op(LDX_W, 5, 10, IPH + 16, 0);
    a.op(LDX_W, 4, 10, SHARED_IP, 0);
    a.jump(JEQ_REG, 5, 4, 0, to_us);
    a.op(LDX_W, 4, 10, VTEP, 0);
    a.jump(JEQ_REG, 5, 4, 0, switch);
    a.jump(JA, 0, 0, 0, pass);

    // To the shared address: fragments are the host's (it reassembles).
    a.bind(to_us);
    a.op(LDX_H, 5, 10, IPH + 6, 0);
    a.op(AND_IMM, 5, 0, 0, 0xff3f); // MF, fragment offset (as loaded)
    a.jump(JNE_IMM, 5, 0, 0, pass);
    load_bytes(a, Some(7), L4, 4, pass);
    a.op(LDX_B, 5, 10, IPH + 9, 0);
    a.jump(JEQ_IMM, 5, 0, 6, ports);
    a.jump(JEQ_IMM, 5, 0, 17, ports);
    a.jump(JNE_IMM, 5, 0, 1, pass); // other protocols: the host's
                                    // ICMP: an echo request is the host's to answer; replies and errors both.
    a.op(LDX_B, 4, 10, L4, 0);
    a.jump(JEQ_IMM, 4, 0, 8, pass);
    a.jump(JA, 0, 0, 0, both);

    // TCP, UDP (r5 the protocol): r4, then r7 = the destination port in host order.
    a.bind(ports);
    a.op(LDX_H, 4, 10, L4 + 2, 0);
    a.bswap16(4);
    a.jump(JNE_IMM, 5, 0, 17, not_vxlan);
    a.jump(JNE_IMM, 4, 0, VXLAN_PORT, not_vxlan);
    a.op(LDX_W, 3, 10, VTEP, 0);
    a.op(LDX_W, 2, 10, SHARED_IP, 0);
    a.jump(JEQ_REG, 3, 2, 0, switch);
    a.bind(not_vxlan);
    a.op(MOV_REG, 7, 4, 0, 0);
    a.op(LSH_IMM, 5, 0, 0, 16);
    a.op(OR_REG, 5, 4, 0, 0);
    a.op(STX_W, 10, 5, OWNED_KEY, 0);
    a.lookup(owned, OWNED_KEY as i32);
    a.jump(JNE_IMM, 0, 0, 0, switch); // published
    a.op(LDX_W, 5, 10, OWNED_FROM, 0);
    a.jump(JGT_REG, 5, 7, 0, pass); // below the switch's range
                                    // In the switch's range: the host's if it has a socket for the tuple.
    a.op(LDX_B, 5, 10, IPH + 9, 0);
    a.op(MOV_REG, 1, 6, 0, 0);
    a.op(MOV_REG, 2, 10, 0, 0);
    a.op(ADD_IMM, 2, 0, 0, TUPLE as i32);
    a.op(MOV_IMM, 3, 0, 0, 12); // sizeof tuple.ipv4
    a.op(MOV_IMM, 4, 0, 0, -1); // BPF_F_CURRENT_NETNS (sign-extended to 64 bits)
    a.jump(JEQ_IMM, 5, 0, 17, udp);
    a.op(MOV_IMM, 5, 0, 0, 0);
    a.call(FUNC_SKC_LOOKUP_TCP);
    a.jump(JA, 0, 0, 0, found);
    a.bind(udp);
    a.op(MOV_IMM, 5, 0, 0, 0);
    a.call(FUNC_SK_LOOKUP_UDP);
    a.bind(found);
    a.jump(JEQ_IMM, 0, 0, 0, switch);
    a.op(MOV_REG, 1, 0, 0, 0);
    a.call(FUNC_SK_RELEASE);
    a.jump(JA, 0, 0, 0, pass);

    // The switch's: on into the uplink program.
    a.bind(switch);
    a.op(LDX_W, 5, 10, FLAGS, 0);
    a.jump(JA, 0, 0, 0, main);

    // Both: a copy tagged with the uplink's port to the router's trunk, then the host.
    a.bind(both);
    a.op(MOV_REG, 1, 6, 0, 0);
    a.op(MOV_IMM, 2, 0, 0, ETH_P_8021AD_BE);
    a.op(MOV_REG, 3, 8, 0, 0);
    a.call(FUNC_SKB_VLAN_PUSH);
    a.jump(JNE_IMM, 0, 0, 0, pass);
    a.op(MOV_REG, 1, 6, 0, 0);
    a.op(MOV_REG, 2, 9, 0, 0);
    a.op(MOV_IMM, 3, 0, 0, 0);
    a.call(FUNC_CLONE_REDIRECT);
    a.op(MOV_REG, 1, 6, 0, 0);
    a.call(FUNC_SKB_VLAN_POP);
    a.jump(JNE_IMM, 0, 0, 0, drop);
    a.bind(pass);
    a.ret(TC_ACT_OK);
}

/// bpf_skb_load_bytes(skb, offset, fp + `to`, `len`): from offset 14 (None) or the
/// offset in register `off`; to `fail` when the skb is shorter. Clobbers r0-r5.
fn load_bytes(a: &mut Asm, off: Option<u8>, to: i16, len: i32, fail: Label) {
    a.op(MOV_REG, 1, 6, 0, 0);
    match off {
        Some(r) => a.op(MOV_REG, 2, r, 0, 0),
        None => a.op(MOV_IMM, 2, 0, 0, 14),
    }
    a.op(MOV_REG, 3, 10, 0, 0);
    a.op(ADD_IMM, 3, 0, 0, to as i32);
    a.op(MOV_IMM, 4, 0, 0, len);
    a.call(FUNC_SKB_LOAD_BYTES);
    a.jump(JNE_IMM, 0, 0, 0, fail);
}
