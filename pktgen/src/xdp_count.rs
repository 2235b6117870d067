//! The kernel-assisted sink (`rx --backend xdp-count`): a hand-assembled XDP program that
//! adds each frame and its length to a BPF_MAP_TYPE_PERCPU_ARRAY and drops it, attached
//! through a BPF link (gone when pktgen exits or is killed). Userspace sums the CPUs.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use switch::bpf::{self, insn, BpfInsn};

const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const XDP_DROP: i32 = 1;
/// Per-CPU value: frames then bytes, two u64.
const VALUE_SIZE: usize = 16;

/// The counting program:
/// ```text
///  0: r2 = *(u32 *)(r1 + 0)      ; ctx->data
///  1: r3 = *(u32 *)(r1 + 4)      ; ctx->data_end
///  2: r7 = r3
///  3: r7 -= r2                   ; frame length
///  4: r1 = 0
///  5: *(u32 *)(r10 - 4) = r1     ; key 0 on the stack
///  6: r1 = &counters             ; ld_imm64, pseudo map fd (two slots)
///  8: r2 = r10
///  9: r2 += -4
/// 10: call bpf_map_lookup_elem
/// 11: if r0 == 0 goto +6
/// 12: r1 = *(u64 *)(r0 + 0) ; r1 += 1 ; *(u64 *)(r0 + 0) = r1
/// 15: r1 = *(u64 *)(r0 + 8) ; r1 += r7 ; *(u64 *)(r0 + 8) = r1
/// 18: r0 = XDP_DROP
/// 19: exit
/// ```
/// Per-CPU slots need no atomics: XDP runs with preemption off.
pub fn count_program(map_fd: RawFd) -> [BpfInsn; 20] {
    [
        insn(0x61, 2, 1, 0, 0),                           // ldxw r2, [r1+0]
        insn(0x61, 3, 1, 4, 0),                           // ldxw r3, [r1+4]
        insn(0xbf, 7, 3, 0, 0),                           // mov64 r7, r3
        insn(0x1f, 7, 2, 0, 0),                           // sub64 r7, r2
        insn(0xb7, 1, 0, 0, 0),                           // mov64 r1, 0
        insn(0x63, 10, 1, -4, 0),                         // stxw [r10-4], r1
        insn(0x18, 1, bpf::BPF_PSEUDO_MAP_FD, 0, map_fd), // ld_imm64 r1, map
        insn(0, 0, 0, 0, 0),
        insn(0xbf, 2, 10, 0, 0),                       // mov64 r2, r10
        insn(0x07, 2, 0, 0, -4),                       // add64 r2, -4
        insn(0x85, 0, 0, 0, BPF_FUNC_MAP_LOOKUP_ELEM), // call
        insn(0x15, 0, 0, 6, 0),                        // jeq r0, 0, +6
        insn(0x79, 1, 0, 0, 0),                        // ldxdw r1, [r0+0]
        insn(0x07, 1, 0, 0, 1),                        // add64 r1, 1
        insn(0x7b, 0, 1, 0, 0),                        // stxdw [r0+0], r1
        insn(0x79, 1, 0, 8, 0),                        // ldxdw r1, [r0+8]
        insn(0x0f, 1, 7, 0, 0),                        // add64 r1, r7
        insn(0x7b, 0, 1, 8, 0),                        // stxdw [r0+8], r1
        insn(0xb7, 0, 0, 0, XDP_DROP),                 // mov64 r0, XDP_DROP
        insn(0x95, 0, 0, 0, 0),                        // exit
    ]
}

/// The counter attached to an interface. Fields drop in order: the link (detaching the
/// program), then the program, then the map.
pub struct XdpCounter {
    _link: OwnedFd,
    _prog: OwnedFd,
    map: OwnedFd,
    cpus: usize,
    /// "native" or "generic".
    pub mode: &'static str,
}

impl XdpCounter {
    /// Load the counter and attach it to `iface` (native XDP, else generic).
    pub fn attach(iface: &str) -> io::Result<XdpCounter> {
        let ifindex = bpf::ifindex(iface)?;
        let cpus = bpf::possible_cpus()?;
        let map = bpf::map_create(
            bpf::BPF_MAP_TYPE_PERCPU_ARRAY,
            4,
            VALUE_SIZE as u32,
            1,
            "pktgen_count",
        )
        .map_err(|e| {
            bpf::context(
                e,
                "create the per-CPU counter map",
                "run as root or with CAP_BPF",
            )
        })?;
        let prog = bpf::prog_load_xdp(&count_program(map.as_raw_fd()), "pktgen_count")?;
        let attach = |flags: u32, mode: &str| {
            bpf::xdp_link_create(&prog, ifindex, flags).map_err(|e| {
                let hint = match e.raw_os_error() {
                    Some(libc::EBUSY) | Some(libc::EEXIST) => {
                        "another XDP program is attached to it; stop its owner first"
                    }
                    Some(libc::EPERM) => "run as root or with CAP_NET_ADMIN",
                    _ => "",
                };
                bpf::context(
                    e,
                    &format!("attach the XDP counter to {iface} in {mode} mode"),
                    hint,
                )
            })
        };
        let (link, mode) = match attach(bpf::XDP_FLAGS_DRV_MODE, "native") {
            Ok(l) => (l, "native"),
            Err(native) => match attach(bpf::XDP_FLAGS_SKB_MODE, "generic") {
                Ok(l) => (l, "generic"),
                Err(generic) => {
                    return Err(io::Error::new(
                        generic.kind(),
                        format!("{native}; then {generic}"),
                    ))
                }
            },
        };
        Ok(XdpCounter {
            _link: link,
            _prog: prog,
            map,
            cpus,
            mode,
        })
    }

    /// (frames, bytes) summed over all CPUs.
    pub fn read(&self) -> io::Result<(u64, u64)> {
        let mut buf = vec![0u8; VALUE_SIZE * self.cpus];
        bpf::map_lookup(&self.map, 0, &mut buf)
            .map_err(|e| bpf::context(e, "read the XDP counters", ""))?;
        Ok(sum_percpu(&buf))
    }
}

/// Add up per-CPU (frames, bytes) slots.
pub fn sum_percpu(buf: &[u8]) -> (u64, u64) {
    let mut frames = 0u64;
    let mut bytes = 0u64;
    for slot in buf.chunks_exact(VALUE_SIZE) {
        let mut f = [0u8; 8];
        let mut b = [0u8; 8];
        f.copy_from_slice(&slot[..8]);
        b.copy_from_slice(&slot[8..]);
        frames += u64::from_ne_bytes(f);
        bytes += u64::from_ne_bytes(b);
    }
    (frames, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_bytes() {
        let bytes = bpf::insn_bytes(&count_program(9));
        assert_eq!(bytes.len(), 160);
        #[rustfmt::skip]
        let head: [u8; 48] = [
            0x61, 0x12, 0, 0, 0, 0, 0, 0,       // r2 = ctx->data
            0x61, 0x13, 4, 0, 0, 0, 0, 0,       // r3 = ctx->data_end
            0xbf, 0x37, 0, 0, 0, 0, 0, 0,       // r7 = r3
            0x1f, 0x27, 0, 0, 0, 0, 0, 0,       // r7 -= r2
            0xb7, 0x01, 0, 0, 0, 0, 0, 0,       // r1 = 0
            0x63, 0x1a, 0xfc, 0xff, 0, 0, 0, 0, // *(u32 *)(r10 - 4) = r1
        ];
        assert_eq!(&bytes[..48], &head);
        assert_eq!(&bytes[48..56], &[0x18, 0x11, 0, 0, 9, 0, 0, 0]);
        assert_eq!(&bytes[88..96], &[0x15, 0, 6, 0, 0, 0, 0, 0]);
        assert_eq!(
            &bytes[144..],
            &[0xb7, 0, 0, 0, 1, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn percpu_values_are_summed() {
        let mut buf = vec![0u8; 32];
        buf[..8].copy_from_slice(&3u64.to_ne_bytes());
        buf[8..16].copy_from_slice(&192u64.to_ne_bytes());
        buf[16..24].copy_from_slice(&2u64.to_ne_bytes());
        buf[24..].copy_from_slice(&128u64.to_ne_bytes());
        assert_eq!(sum_percpu(&buf), (5, 320));
    }
}
