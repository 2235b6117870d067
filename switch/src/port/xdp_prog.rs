//! The kernel side of an AF_XDP port: an XSKMAP, a five-instruction redirect program
//! (hand-assembled, no clang/ELF), and a BPF link attaching it to the interface, all
//! made with raw bpf(2) calls. The link detaches by itself when its fd closes.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// Commands, types and flags from linux/bpf.h and linux/if_link.h.
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_ANY: u64 = 0;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
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

/// `struct bpf_insn`: dst in the low nibble of `regs`, src in the high one.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BpfInsn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
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
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // BPF_LD | BPF_DW | BPF_IMM
        insn(0, 0, 0, 0, 0),                        // upper half of the 64-bit immediate
        insn(0xb7, 3, 0, 0, XDP_PASS),              // BPF_ALU64 | BPF_MOV | BPF_K
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP), // BPF_JMP | BPF_CALL
        insn(0x95, 0, 0, 0, 0),                     // BPF_JMP | BPF_EXIT
    ]
}

// The bpf_attr members for exactly the commands used; the kernel zero-fills the rest.

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapUpdateAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// bpf(2) for a command that returns a new fd.
fn bpf_fd<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] prefix of `union bpf_attr` for
    // `cmd`, and its exact size is passed, so the kernel reads no further. Pointers
    // inside it (insns, license, log buffer) are kept alive by the caller for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success these commands return a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// `EOPNOTSUPP (Operation not supported)` for an OS error, the plain text otherwise.
pub(crate) fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let errno = nix::errno::Errno::from_raw(code);
            format!("{errno:?} ({})", errno.desc())
        }
        None => e.to_string(),
    }
}

/// Wrap an OS error with what was being done and, where there is one, what to do.
pub(crate) fn context(e: io::Error, what: &str, hint: &str) -> io::Error {
    let text = errno_text(&e);
    let msg = if hint.is_empty() {
        format!("{what}: {text}")
    } else {
        format!("{what}: {text}; {hint}")
    };
    io::Error::new(e.kind(), msg)
}

/// The redirect program attached to an interface. Fields drop in order: the link
/// (detaching the program), then the program, then the map.
pub struct XskRedirect {
    _link: OwnedFd,
    _prog: OwnedFd,
    _map: OwnedFd,
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
            _link: link,
            _prog: prog,
            _map: map,
            mode,
        })
    }

    /// The mode actually attached: Native or Generic, never Auto.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }
}

fn create_xskmap() -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: XSKMAP_ENTRIES,
        ..Default::default()
    };
    attr.map_name[..8].copy_from_slice(b"vsw_xsks");
    bpf_fd(BPF_MAP_CREATE, &mut attr)
}

fn map_update(map: &OwnedFd, key: u32, value: RawFd) -> io::Result<()> {
    let value = value as u32;
    let mut attr = MapUpdateAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: BPF_ANY,
        ..Default::default()
    };
    // SAFETY: `attr` is the map-element member of bpf_attr with its exact size; `key`
    // and `value` are live u32s on this stack frame for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_ELEM,
            &mut attr as *mut MapUpdateAttr as *mut libc::c_void,
            std::mem::size_of::<MapUpdateAttr>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn load_program(map: &OwnedFd) -> io::Result<OwnedFd> {
    const LICENSE: &CStr = c"Dual MIT/GPL";
    let insns = redirect_program(map.as_raw_fd());
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        expected_attach_type: BPF_XDP,
        ..Default::default()
    };
    attr.prog_name[..13].copy_from_slice(b"vsw_xsk_redir");
    match bpf_fd(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            // Load again asking for the verifier log, so the error says why.
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let again = bpf_fd(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            match again {
                Ok(fd) => Ok(fd),
                Err(_) => Err(context(
                    first,
                    "BPF_PROG_LOAD",
                    &format!("verifier log: {}", text.trim()),
                )),
            }
        }
    }
}

fn link_create(prog: &OwnedFd, ifindex: u32, mode: XdpMode) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags: match mode {
            XdpMode::Generic => XDP_FLAGS_SKB_MODE,
            _ => XDP_FLAGS_DRV_MODE,
        },
    };
    bpf_fd(BPF_LINK_CREATE, &mut attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_linux_bpf_h() {
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
        assert_eq!(std::mem::size_of::<MapUpdateAttr>(), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::size_of::<LinkCreateAttr>(), 16);
    }

    #[test]
    fn redirect_program_bytes() {
        let prog = redirect_program(7);
        // SAFETY: BpfInsn is #[repr(C)], 8 bytes with no padding; reading it as bytes is sound.
        let bytes: &[u8] =
            unsafe { std::slice::from_raw_parts(prog.as_ptr().cast::<u8>(), prog.len() * 8) };
        #[rustfmt::skip]
        let expected: [u8; 48] = [
            0x61, 0x12, 16, 0, 0, 0, 0, 0,   // r2 = *(u32 *)(r1 + 16)
            0x18, 0x11, 0, 0, 7, 0, 0, 0,    // r1 = map fd 7
            0, 0, 0, 0, 0, 0, 0, 0,
            0xb7, 0x03, 0, 0, 2, 0, 0, 0,    // r3 = XDP_PASS
            0x85, 0x00, 0, 0, 51, 0, 0, 0,   // call bpf_redirect_map
            0x95, 0, 0, 0, 0, 0, 0, 0,       // exit
        ];
        assert_eq!(bytes, &expected);
    }
}
