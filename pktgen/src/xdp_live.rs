//! The kernel-assisted generator (`tx --backend xdp-live`), the way xdp-trafficgen does
//! it: an XDP program that redirects every frame to the target interface, run with
//! BPF_PROG_TEST_RUN and BPF_F_TEST_XDP_LIVE_FRAMES; the kernel sends real frames. The
//! program is never attached anywhere. Frames are static, so they carry no pktgen header.

use std::io;
use std::os::fd::OwnedFd;
use switch::bpf::{self, insn, BpfInsn};

const BPF_FUNC_REDIRECT: i32 = 23;
/// Frames the kernel builds and sends per internal batch (the kernel's maximum is 256).
pub const BATCH: u32 = 256;

/// The redirect program, with `header` (the frames' Ethernet header, the same in every
/// frame of the run) written back over each frame first:
/// ```text
/// r2 = ctx->data; r3 = ctx->data_end; r4 = r2 + 14
/// if r4 > r3 goto redirect
/// *(u32 *)(r2 + 0) = dst[0..4]; *(u16 *)(r2 + 4) = dst[4..6]
/// *(u32 *)(r2 + 6) = src[0..4]; *(u16 *)(r2 + 10) = src[4..6]
/// *(u16 *)(r2 + 12) = ethertype
/// redirect: r1 = ifindex; r2 = 0; call bpf_redirect; exit
/// ```
/// The kernel sends the pages of a live run again without copying the frame in anew,
/// and a receiver that pushes a VLAN tag in place (a veth whose peer inserts tags in
/// software, as vswitchd's endpoint trunk does) shifts the MACs over the frame's first
/// bytes: written back each time, every frame sent is the frame asked for. Without a
/// header the program only redirects.
pub fn redirect_program(ifindex: u32, header: Option<&[u8; 14]>) -> Vec<BpfInsn> {
    let mut p = Vec::new();
    if let Some(h) = header {
        let w32 = |at: usize| i32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let w16 = |at: usize| i32::from(u16::from_le_bytes([h[at], h[at + 1]]));
        p.extend([
            insn(0x61, 2, 1, 0, 0),  // r2 = *(u32 *)(r1 + 0): data
            insn(0x61, 3, 1, 4, 0),  // r3 = *(u32 *)(r1 + 4): data_end
            insn(0xbf, 4, 2, 0, 0),  // r4 = r2
            insn(0x07, 4, 0, 0, 14), // r4 += 14
            insn(0x2d, 4, 3, 5, 0),  // if r4 > r3 goto +5
            insn(0x62, 2, 0, 0, w32(0)),
            insn(0x6a, 2, 0, 4, w16(4)),
            insn(0x62, 2, 0, 6, w32(6)),
            insn(0x6a, 2, 0, 10, w16(10)),
            insn(0x6a, 2, 0, 12, w16(12)),
        ]);
    }
    p.extend([
        insn(0xb7, 1, 0, 0, ifindex as i32),    // mov64 r1, ifindex
        insn(0xb7, 2, 0, 0, 0),                 // mov64 r2, 0 (flags)
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT), // call bpf_redirect
        insn(0x95, 0, 0, 0, 0),                 // exit
    ]);
    p
}

/// A loaded redirect program for one interface; threads share it.
pub struct LiveSender {
    prog: OwnedFd,
    iface: String,
    /// Keeps the program in the kernel's XDP dispatcher between runs (see [`pin_dispatcher`]).
    _pin: Option<(OwnedFd, std::fs::File)>,
}

impl LiveSender {
    /// `header`: the Ethernet header every frame of the run starts with, written back
    /// before each send ([`redirect_program`]).
    pub fn load(iface: &str, header: Option<&[u8; 14]>) -> io::Result<LiveSender> {
        let ifindex = bpf::ifindex(iface)?;
        let prog = bpf::prog_load_xdp(&redirect_program(ifindex, header), "pktgen_live")?;
        let pin = match pin_dispatcher(&prog) {
            Ok(link) => Some(link),
            Err(e) => {
                eprintln!("pktgen: xdp-live runs unpinned, each run waits for RCU twice: {e}");
                None
            }
        };
        Ok(LiveSender {
            prog,
            iface: iface.to_string(),
            _pin: pin,
        })
    }

    /// Send `frame` `repeat` times. An interrupted run (EINTR) sent an unknown part of
    /// the batch; it reports 0 so counts never overstate.
    pub fn send(&self, frame: &[u8], repeat: u32) -> io::Result<u64> {
        match bpf::prog_test_run_live(&self.prog, frame, repeat, BATCH) {
            Ok(_) => Ok(u64::from(repeat)),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(0),
            Err(e) => {
                let hint = match e.raw_os_error() {
                    Some(libc::EINVAL) => {
                        "the kernel needs BPF_F_TEST_XDP_LIVE_FRAMES (Linux 5.18 or later)"
                    }
                    Some(libc::EPERM) => "run as root or with CAP_SYS_ADMIN",
                    _ => "",
                };
                Err(bpf::context(
                    e,
                    &format!("BPF_PROG_TEST_RUN of live frames to {}", self.iface),
                    hint,
                ))
            }
        }
    }
}

/// Every BPF_PROG_TEST_RUN with a repeat count adds the program to the kernel's XDP
/// dispatcher on entry and removes it on exit, and each change waits for an RCU grace
/// period: on this kind of VM that left the sender asleep two thirds of the time
/// (1.8 Mpps). A program already attached somewhere stays in the dispatcher, so runs
/// only take a reference. It is attached (generic mode, through a BPF link) to the
/// loopback of a network namespace of its own that nothing else uses and that goes away
/// with the sender (the namespace lives as long as the returned file that names it).
fn pin_dispatcher(prog: &OwnedFd) -> io::Result<(OwnedFd, std::fs::File)> {
    let prog = prog.try_clone()?;
    // unshare(CLONE_NEWNET) moves only the calling thread: do it on a thread of its own.
    std::thread::Builder::new()
        .name("pktgen-pin".into())
        .spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io::Error::other(format!("unshare a network namespace: {e}")))?;
            let netns = std::fs::File::open("/proc/thread-self/ns/net")?;
            let lo = bpf::ifindex("lo")?;
            let link = bpf::xdp_link_create(&prog, lo, bpf::XDP_FLAGS_SKB_MODE)
                .map_err(|e| bpf::context(e, "attach to a private loopback", ""))?;
            Ok((link, netns))
        })?
        .join()
        .map_err(|_| io::Error::other("the pinning thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_bytes() {
        let bytes = bpf::insn_bytes(&redirect_program(0x0102, None));
        #[rustfmt::skip]
        let expected: [u8; 32] = [
            0xb7, 0x01, 0, 0, 0x02, 0x01, 0, 0, // r1 = ifindex
            0xb7, 0x02, 0, 0, 0, 0, 0, 0,       // r2 = 0
            0x85, 0x00, 0, 0, 23, 0, 0, 0,      // call bpf_redirect
            0x95, 0, 0, 0, 0, 0, 0, 0,          // exit
        ];
        assert_eq!(bytes, expected);
        let header = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x86, 0xdd];
        let with = bpf::insn_bytes(&redirect_program(0x0102, Some(&header)));
        assert_eq!(&with[with.len() - 32..], &expected, "then the redirect");
        #[rustfmt::skip]
        let stores: [u8; 40] = [
            0x62, 0x02, 0, 0, 1, 2, 3, 4,      // *(u32 *)(r2 + 0) = dst[0..4]
            0x6a, 0x02, 4, 0, 5, 6, 0, 0,      // *(u16 *)(r2 + 4) = dst[4..6]
            0x62, 0x02, 6, 0, 7, 8, 9, 10,     // *(u32 *)(r2 + 6) = src[0..4]
            0x6a, 0x02, 10, 0, 11, 12, 0, 0,   // *(u16 *)(r2 + 10) = src[4..6]
            0x6a, 0x02, 12, 0, 0x86, 0xdd, 0, 0, // *(u16 *)(r2 + 12) = ethertype
        ];
        assert_eq!(&with[40..80], &stores);
    }

    /// The program passes the real verifier, and a frame whose MACs a receiver overwrote
    /// leaves with the ones asked for.
    #[test]
    fn the_header_is_written_back_before_each_send() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to load BPF");
            return;
        }
        let header = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let prog = bpf::prog_load_xdp(&redirect_program(1, Some(&header)), "pktgen_live_t")
            .expect("the verifier takes it");
        let mut frame = vec![0x88u8; 60];
        let (verdict, out) = bpf::prog_test_run_out(&prog, &frame, &[]).expect("test run");
        assert_eq!(verdict, 4, "XDP_REDIRECT");
        frame[..14].copy_from_slice(&header);
        assert_eq!(&out[..frame.len()], &frame[..]);
    }
}
