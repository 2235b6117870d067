//! The kernel side of an AF_XDP port: an XSKMAP, a five-instruction redirect program
//! (hand-assembled, no clang/ELF), and a BPF link attaching it to the interface, all
//! made with raw bpf(2) calls. The link detaches by itself when its fd closes.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::bpf::{self, context, insn, BpfInsn};

const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;
/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;
/// One entry per queue the port binds; only queue 0 is used, others fall back to XDP_PASS.
const XSKMAP_ENTRIES: u32 = 1;

/// How the redirect program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native, falling back to generic where the driver has no XDP support.
    Auto,
    /// In the driver (XDP_FLAGS_DRV_MODE): fastest, needs driver support (veth has it).
    Native,
    /// On the generic skb path (XDP_FLAGS_SKB_MODE): works on any interface.
    Generic,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// The redirect program:
/// ```text
/// r2 = *(u32 *)(r1 + 16)          ; ctx->rx_queue_index
/// r1 = &xsks_map                  ; ld_imm64, pseudo map fd
/// r3 = XDP_PASS                   ; what to do when no socket is in the slot
/// call bpf_redirect_map
/// exit
/// ```
pub(crate) fn redirect_program(map_fd: RawFd) -> [BpfInsn; 6] {
    [
        insn(0x61, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0), // BPF_LDX | BPF_W | BPF_MEM
        insn(0x18, 1, bpf::BPF_PSEUDO_MAP_FD, 0, map_fd), // BPF_LD | BPF_DW | BPF_IMM
        insn(0, 0, 0, 0, 0),                        // upper half of the 64-bit immediate
        insn(0xb7, 3, 0, 0, XDP_PASS),              // BPF_ALU64 | BPF_MOV | BPF_K
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP), // BPF_JMP | BPF_CALL
        insn(0x95, 0, 0, 0, 0),                     // BPF_JMP | BPF_EXIT
    ]
}

/// The redirect program attached to an interface. Fields drop in order: the link
/// (detaching the program), then the program, then the map.
pub struct XskRedirect {
    link: OwnedFd,
    prog: OwnedFd,
    map: OwnedFd,
    mode: XdpMode,
}

impl XskRedirect {
    /// Create the XSKMAP holding `xsk_fd` for queue 0, load the program and attach it to
    /// `ifindex` through a BPF link in `mode` (Auto: native, else generic).
    pub fn attach(iface: &str, ifindex: u32, xsk_fd: RawFd, mode: XdpMode) -> io::Result<Self> {
        let map = create_xskmap().map_err(|e| {
            context(
                e,
                &format!("create the XSKMAP for {iface}"),
                "run as root or with CAP_BPF and CAP_NET_ADMIN",
            )
        })?;
        map_update(&map, 0, xsk_fd).map_err(|e| {
            context(
                e,
                &format!("put the AF_XDP socket of {iface} into the XSKMAP"),
                "",
            )
        })?;
        let prog = load_program(&map).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("load the XDP redirect program for {iface}: {e}"),
            )
        })?;
        let try_mode = |m: XdpMode| {
            link_create(&prog, ifindex, m).map_err(|e| {
                let hint = match e.raw_os_error() {
                    Some(libc::EBUSY) | Some(libc::EEXIST) => {
                        "another XDP program is attached (another vswitchd?); stop its owner, or if `ip link` attached it, run `ip link set dev IFACE xdp off`"
                    }
                    Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) if m == XdpMode::Native => {
                        "the driver has no native XDP; use generic mode"
                    }
                    Some(libc::EPERM) => "run as root or with CAP_NET_ADMIN",
                    _ => "",
                };
                context(
                    e,
                    &format!("attach XDP program to {iface} in {m} mode"),
                    &hint.replace("IFACE", iface),
                )
            })
        };
        let (link, mode) = match mode {
            XdpMode::Native | XdpMode::Generic => (try_mode(mode)?, mode),
            XdpMode::Auto => match try_mode(XdpMode::Native) {
                Ok(link) => (link, XdpMode::Native),
                Err(native) => match try_mode(XdpMode::Generic) {
                    Ok(link) => {
                        tracing::info!(iface, error = %native, "native XDP refused, using generic mode");
                        (link, XdpMode::Generic)
                    }
                    Err(generic) => {
                        return Err(io::Error::new(
                            generic.kind(),
                            format!("{native}; then {generic}"),
                        ))
                    }
                },
            },
        };
        Ok(XskRedirect {
            link,
            prog,
            map,
            mode,
        })
    }

    /// The XSKMAP the programs redirect to (slot 0: this port's socket).
    pub fn xsks(&self) -> &OwnedFd {
        &self.map
    }

    /// Load `insns` and swap it in for the running program, atomically.
    pub fn replace(&mut self, insns: &[BpfInsn], name: &str) -> io::Result<()> {
        let prog = bpf::prog_load_xdp(insns, name)?;
        bpf::link_update(&self.link, &prog)
            .map_err(|e| context(e, &format!("swap in XDP program {name}"), ""))?;
        self.prog = prog;
        Ok(())
    }

    /// The mode actually attached: Native or Generic, never Auto.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }
}

fn create_xskmap() -> io::Result<OwnedFd> {
    bpf::map_create(bpf::BPF_MAP_TYPE_XSKMAP, 4, 4, XSKMAP_ENTRIES, "vsw_xsks")
}

fn map_update(map: &OwnedFd, key: u32, value: RawFd) -> io::Result<()> {
    bpf::map_update(map, key, value as u32)
}

fn load_program(map: &OwnedFd) -> io::Result<OwnedFd> {
    bpf::prog_load_xdp(&redirect_program(map.as_raw_fd()), "vsw_xsk_redir")
}

fn link_create(prog: &OwnedFd, ifindex: u32, mode: XdpMode) -> io::Result<OwnedFd> {
    let flags = match mode {
        XdpMode::Generic => bpf::XDP_FLAGS_SKB_MODE,
        _ => bpf::XDP_FLAGS_DRV_MODE,
    };
    bpf::xdp_link_create(prog, ifindex, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_program_bytes() {
        let bytes = bpf::insn_bytes(&redirect_program(7));
        #[rustfmt::skip]
        let expected: [u8; 48] = [
            0x61, 0x12, 16, 0, 0, 0, 0, 0,   // r2 = *(u32 *)(r1 + 16)
            0x18, 0x11, 0, 0, 7, 0, 0, 0,    // r1 = map fd 7
            0, 0, 0, 0, 0, 0, 0, 0,
            0xb7, 0x03, 0, 0, 2, 0, 0, 0,    // r3 = XDP_PASS
            0x85, 0x00, 0, 0, 51, 0, 0, 0,   // call bpf_redirect_map
            0x95, 0, 0, 0, 0, 0, 0, 0,       // exit
        ];
        assert_eq!(bytes, expected);
    }
}
