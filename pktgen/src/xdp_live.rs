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

/// The redirect program:
/// ```text
/// r1 = ifindex
/// r2 = 0
/// call bpf_redirect
/// exit
/// ```
pub fn redirect_program(ifindex: u32) -> [BpfInsn; 4] {
    [
        insn(0xb7, 1, 0, 0, ifindex as i32),    // mov64 r1, ifindex
        insn(0xb7, 2, 0, 0, 0),                 // mov64 r2, 0 (flags)
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT), // call bpf_redirect
        insn(0x95, 0, 0, 0, 0),                 // exit
    ]
}

/// A loaded redirect program for one interface; threads share it.
pub struct LiveSender {
    prog: OwnedFd,
    iface: String,
    /// Keeps the program in the kernel's XDP dispatcher between runs (see [`pin_dispatcher`]).
    _pin: Option<(OwnedFd, std::fs::File)>,
}

impl LiveSender {
    pub fn load(iface: &str) -> io::Result<LiveSender> {
        let ifindex = bpf::ifindex(iface)?;
        let prog = bpf::prog_load_xdp(&redirect_program(ifindex), "pktgen_live")?;
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
        let bytes = bpf::insn_bytes(&redirect_program(0x0102));
        #[rustfmt::skip]
        let expected: [u8; 32] = [
            0xb7, 0x01, 0, 0, 0x02, 0x01, 0, 0, // r1 = ifindex
            0xb7, 0x02, 0, 0, 0, 0, 0, 0,       // r2 = 0
            0x85, 0x00, 0, 0, 23, 0, 0, 0,      // call bpf_redirect
            0x95, 0, 0, 0, 0, 0, 0, 0,          // exit
        ];
        assert_eq!(bytes, expected);
    }
}
