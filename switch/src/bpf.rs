//! Raw bpf(2) for the hand-assembled programs the switch and pktgen load (no clang, no
//! ELF, no libbpf): map create/update/lookup, program load with the verifier log on
//! failure, BPF links for XDP (detached when the fd closes), and BPF_PROG_TEST_RUN for
//! XDP live frames.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// Commands, types and flags from linux/bpf.h and linux/if_link.h.
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_ANY: u64 = 0;
pub const BPF_MAP_TYPE_HASH: u32 = 1;
pub const BPF_MAP_TYPE_DEVMAP: u32 = 14;
pub const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_TEST_RUN: libc::c_int = 10;
const BPF_LINK_CREATE: libc::c_int = 28;
const BPF_LINK_UPDATE: libc::c_int = 29;
pub const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
pub const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_XDP: u32 = 37;
/// tcx (kernel 6.6+): the ingress hook of a device, attached through a BPF link.
const BPF_TCX_INGRESS: u32 = 46;
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// BPF_PROG_TEST_RUN: send the frames for real instead of returning them.
pub const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `struct bpf_insn`: dst in the low nibble of `regs`, src in the high one.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfInsn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

pub const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

impl BpfInsn {
    pub const fn code(&self) -> u8 {
        self.code
    }
    pub const fn dst(&self) -> u8 {
        self.regs & 0x0f
    }
    pub const fn src(&self) -> u8 {
        self.regs >> 4
    }
    pub const fn imm(&self) -> i32 {
        self.imm
    }
}

/// The program as the bytes the kernel reads (for tests against literal bytes).
pub fn insn_bytes(prog: &[BpfInsn]) -> Vec<u8> {
    prog.iter()
        .flat_map(|i| {
            let mut b = [0u8; 8];
            b[0] = i.code;
            b[1] = i.regs;
            b[2..4].copy_from_slice(&i.off.to_le_bytes());
            b[4..8].copy_from_slice(&i.imm.to_le_bytes());
            b
        })
        .collect()
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
struct MapElemAttr {
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

#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// The `test` member of bpf_attr (BPF_PROG_TEST_RUN).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// bpf(2) itself; returns the syscall's non-negative result.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<i64> {
    // SAFETY: `attr` is a live, initialised #[repr(C)] prefix of `union bpf_attr` for
    // `cmd`, and its exact size is passed, so the kernel reads no further. Pointers
    // inside it (insns, license, log buffer, keys, values, frame data) point at memory
    // the caller keeps alive for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// bpf(2) for a command that returns a new fd.
fn bpf_fd<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    // SAFETY: on success these commands return a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `EPERM (Operation not permitted)` for an OS error, the plain text otherwise.
pub fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let errno = nix::errno::Errno::from_raw(code);
            format!("{errno:?} ({})", errno.desc())
        }
        None => e.to_string(),
    }
}

/// Wrap an OS error with what was being done and, where there is one, what to do.
pub fn context(e: io::Error, what: &str, hint: &str) -> io::Error {
    let text = errno_text(&e);
    let msg = if hint.is_empty() {
        format!("{what}: {text}")
    } else {
        format!("{what}: {text}; {hint}")
    };
    io::Error::new(e.kind(), msg)
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

pub fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    entries: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries: entries,
        map_name: name16(name),
        ..Default::default()
    };
    bpf_fd(BPF_MAP_CREATE, &mut attr)
}

/// Look up `key`, filling `value` (for per-CPU maps: one slot per possible CPU, each
/// rounded up to 8 bytes).
pub fn map_lookup(map: &OwnedFd, key: u32, value: &mut [u8]) -> io::Result<()> {
    map_lookup_bytes(map, &key.to_ne_bytes(), value)
}

/// Set `key` to `value` (both u32: an XSKMAP slot and a socket fd, an array index...).
pub fn map_update(map: &OwnedFd, key: u32, value: u32) -> io::Result<()> {
    map_update_bytes(map, &key.to_ne_bytes(), &value.to_ne_bytes())
}

/// Set `key` to `value`, both exactly the map's key and value sizes (for per-CPU maps,
/// the value holds one slot per possible CPU, each rounded up to 8 bytes).
pub fn map_update_bytes(map: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        flags: BPF_ANY,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// Look up `key` (exactly the map's key size), filling `value`.
pub fn map_lookup_bytes(map: &OwnedFd, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).map(|_| ())
}

/// Remove `key` (exactly the map's key size); ENOENT when it is not there.
pub fn map_delete_bytes(map: &OwnedFd, key: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_DELETE_ELEM, &mut attr).map(|_| ())
}

/// Load an XDP program, asking for the verifier log when the first try fails.
pub fn prog_load_xdp(insns: &[BpfInsn], name: &str) -> io::Result<OwnedFd> {
    prog_load(BPF_PROG_TYPE_XDP, BPF_XDP, insns, name)
}

/// Load a tc (SCHED_CLS) program for tcx, asking for the verifier log when the first
/// try fails.
pub fn prog_load_tc(insns: &[BpfInsn], name: &str) -> io::Result<OwnedFd> {
    prog_load(BPF_PROG_TYPE_SCHED_CLS, 0, insns, name)
}

fn prog_load(
    prog_type: u32,
    expected_attach_type: u32,
    insns: &[BpfInsn],
    name: &str,
) -> io::Result<OwnedFd> {
    // GPL: bpf_redirect_peer and the skb VLAN helpers are GPL-only.
    const LICENSE: &CStr = c"Dual MIT/GPL";
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        expected_attach_type,
        prog_name: name16(name),
        ..Default::default()
    };
    match bpf_fd(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let again = bpf_fd(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            match again {
                Ok(fd) => Ok(fd),
                Err(_) => {
                    let hint = if first.raw_os_error() == Some(libc::EPERM) {
                        "run as root or with CAP_BPF and CAP_NET_ADMIN".to_string()
                    } else {
                        format!("verifier log: {}", text.trim())
                    };
                    Err(context(first, &format!("load BPF program {name}"), &hint))
                }
            }
        }
    }
}

/// Attach an XDP program to `ifindex` through a BPF link (detached when the fd closes,
/// also when the process is killed).
pub fn xdp_link_create(prog: &OwnedFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    bpf_fd(BPF_LINK_CREATE, &mut attr)
}

/// Attach a tc program to the ingress of `ifindex` through a tcx BPF link (kernel 6.6+;
/// detached when the fd closes, also when the process is killed).
pub fn tcx_ingress_link_create(prog: &OwnedFd, ifindex: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_TCX_INGRESS,
        flags: 0,
    };
    bpf_fd(BPF_LINK_CREATE, &mut attr)
}

/// Run a program once over `data` (nothing is sent) and return its verdict.
pub fn prog_test_run(prog: &OwnedFd, data: &[u8]) -> io::Result<u32> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_in: data.as_ptr() as u64,
        repeat: 1,
        ..Default::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(attr.retval)
}

/// Run a tc program once over `data` with the first `ctx.len()` bytes of its
/// `struct __sk_buff` given (the kernel accepts only a few fields there, `ifindex` among
/// them); returns its verdict. Redirects are decided, not carried out.
pub fn prog_test_run_ctx(prog: &OwnedFd, data: &[u8], ctx: &[u8]) -> io::Result<u32> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_in: data.as_ptr() as u64,
        repeat: 1,
        ctx_size_in: ctx.len() as u32,
        ctx_in: ctx.as_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(attr.retval)
}

/// `prog_test_run_ctx`, also returning the frame as the program left it.
pub fn prog_test_run_out(prog: &OwnedFd, data: &[u8], ctx: &[u8]) -> io::Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; data.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_in: data.as_ptr() as u64,
        data_size_out: out.len() as u32,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ctx_size_in: ctx.len() as u32,
        // No context at all unless one is given (XDP takes none by default).
        ctx_in: if ctx.is_empty() {
            0
        } else {
            ctx.as_ptr() as u64
        },
        ..Default::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    out.truncate(attr.data_size_out as usize);
    Ok((attr.retval, out))
}

/// Swap the program behind a BPF link (atomically: every frame sees one or the other).
pub fn link_update(link: &OwnedFd, prog: &OwnedFd) -> io::Result<()> {
    let mut attr = LinkUpdateAttr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: prog.as_raw_fd() as u32,
        ..Default::default()
    };
    bpf(BPF_LINK_UPDATE, &mut attr).map(|_| ())
}

/// Run an XDP program `repeat` times over `data` with BPF_F_TEST_XDP_LIVE_FRAMES: the
/// kernel builds real frames from `data` and acts on the verdict (XDP_REDIRECT sends
/// them). Returns the program's return value.
pub fn prog_test_run_live(
    prog: &OwnedFd,
    data: &[u8],
    repeat: u32,
    batch_size: u32,
) -> io::Result<u32> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_in: data.as_ptr() as u64,
        repeat,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size,
        ..Default::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(attr.retval)
}

/// The interface's index in the calling thread's network namespace.
pub fn ifindex(iface: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(iface).map_err(|e| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "look up interface {iface}: {} (does it exist in this network namespace?)",
                e.desc()
            ),
        )
    })
}

/// How many CPUs per-CPU maps have slots for (`/sys/devices/system/cpu/possible`).
pub fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("read /sys/devices/system/cpu/possible: {e}"),
        )
    })?;
    parse_cpu_list(&text).ok_or_else(|| {
        io::Error::other(format!(
            "cannot parse /sys/devices/system/cpu/possible: {:?}",
            text.trim()
        ))
    })
}

/// "0-3,5" -> 6 (highest CPU + 1, which is what per-CPU values are laid out by).
pub fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut highest = None;
    for part in text.trim().split(',') {
        let last = part.rsplit('-').next()?.trim();
        let n: usize = last.parse().ok()?;
        highest = Some(highest.map_or(n, |h: usize| h.max(n)));
    }
    highest.map(|h| h + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_linux_bpf_h() {
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
        assert_eq!(std::mem::size_of::<MapElemAttr>(), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::size_of::<LinkCreateAttr>(), 16);
        assert_eq!(std::mem::offset_of!(TestRunAttr, repeat), 32);
        assert_eq!(std::mem::offset_of!(TestRunAttr, ctx_in), 48);
        assert_eq!(std::mem::offset_of!(TestRunAttr, flags), 64);
        assert_eq!(std::mem::offset_of!(TestRunAttr, batch_size), 72);
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3,8-11"), Some(12));
        assert_eq!(parse_cpu_list("x"), None);
    }
}
