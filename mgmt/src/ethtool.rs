//! Offload settings through the SIOCETHTOOL ioctl, in the calling thread's namespace.
//! A userspace switch reading a veth by AF_PACKET/AF_XDP gets CHECKSUM_PARTIAL frames
//! with unfinished TCP/UDP checksums; with TX checksumming off the sender finishes them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};

use crate::link::validate_ifname;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` with the `ifr_data` member of its union, padded to the kernel's size.
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// Turns off TX checksum offload on `name`, and TSO with it, so the frames it sends
/// carry complete checksums and are at most one MTU. GSO stays on: it segments (and
/// checksums) in software before the frame reaches the device.
pub fn disable_tx_checksum(name: &str) -> Result<()> {
    let sock = control_socket()?;
    // The kernel drops TSO (and SG) by itself once no checksum feature is left; the
    // explicit TSO off keeps the outcome the same should it ever stop doing so.
    for (cmd, what) in [
        (ETHTOOL_STXCSUM, "TX checksum offload"),
        (ETHTOOL_STSO, "TCP segmentation offload"),
    ] {
        ethtool_value(&sock, name, cmd, 0)
            .with_context(|| format!("turning off {what} on {name}"))?;
    }
    Ok(())
}

/// Turns GRO on for `name`. On a veth this also makes it take frames other devices
/// redirect to it from XDP (its NAPI receive path), which the fast path needs.
pub fn enable_gro(name: &str) -> Result<()> {
    let sock = control_socket()?;
    ethtool_value(&sock, name, ETHTOOL_SGRO, 1)
        .with_context(|| format!("turning on GRO on {name}"))?;
    Ok(())
}

/// Whether GRO is on for `name`.
pub fn gro_enabled(name: &str) -> Result<bool> {
    get_flag(name, ETHTOOL_GGRO, "GRO")
}

/// Whether TX checksum offload is on for `name`.
pub fn tx_checksum_enabled(name: &str) -> Result<bool> {
    get_flag(name, ETHTOOL_GTXCSUM, "TX checksum offload")
}

/// Whether TCP segmentation offload is on for `name`.
pub fn tso_enabled(name: &str) -> Result<bool> {
    get_flag(name, ETHTOOL_GTSO, "TCP segmentation offload")
}

fn get_flag(name: &str, cmd: u32, what: &str) -> Result<bool> {
    let sock = control_socket()?;
    let value =
        ethtool_value(&sock, name, cmd, 0).with_context(|| format!("reading {what} of {name}"))?;
    Ok(value != 0)
}

/// Any socket will do for SIOCETHTOOL; it acts in the namespace the socket was made in.
fn control_socket() -> Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error()).context("opening a socket for SIOCETHTOOL");
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs one ETHTOOL_G*/S* command carrying a `struct ethtool_value`, returning the
/// value the kernel left in it (the setting, for a G* command).
fn ethtool_value(sock: &OwnedFd, name: &str, cmd: u32, data: u32) -> Result<u32> {
    validate_ifname(name)?;
    let mut value = EthtoolValue { cmd, data };
    let mut req = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: (&mut value as *mut EthtoolValue).cast(),
        _pad: [0; 16],
    };
    // validate_ifname() bounds the name to IFNAMSIZ - 1, so the NUL stays in place.
    for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: req is a properly laid out ifreq whose data pointer points at `value`,
    // and both outlive the call; the kernel reads/writes only sizeof(ethtool_value).
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error()).context("SIOCETHTOOL");
    }
    Ok(value.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn ifreq_matches_the_kernel_layout() {
        // struct ifreq is 40 bytes on 64-bit Linux: a 16-byte name and a 24-byte union.
        assert_eq!(std::mem::size_of::<IfreqData>(), 40);
        assert_eq!(std::mem::size_of::<EthtoolValue>(), 8);
    }
}
