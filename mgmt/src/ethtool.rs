//! Offload settings through the SIOCETHTOOL ioctl, in the calling thread's namespace.
//! A userspace switch reading a veth by AF_PACKET/AF_XDP gets CHECKSUM_PARTIAL frames
//! with unfinished TCP/UDP checksums; with TX checksumming off the sender finishes them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{step, Step};
use crate::link::{validate_ifname, LinkError};

/// What an offload setting fails with.
#[derive(Debug, thiserror::Error)]
pub enum EthtoolError {
    #[error(transparent)]
    Name(#[from] LinkError),
    #[error("opening a socket for SIOCETHTOOL")]
    Socket(#[source] io::Error),
    #[error("SIOCETHTOOL")]
    Ioctl(#[source] io::Error),
    /// Features the driver does not let go of.
    #[error("{name} keeps {features} on (fixed by its driver)")]
    Fixed { name: String, features: String },
    #[error("{0} reports no feature names (ETHTOOL_GSSET_INFO)")]
    NoFeatureNames(String),
    /// This error made a step fail (turning an offload off, say).
    #[error(transparent)]
    In(#[from] Step<Box<EthtoolError>>),
}

type Result<T, E = EthtoolError> = std::result::Result<T, E>;

/// Names what failed: `.map_err(doing("turning on GRO"))`.
fn doing(what: String) -> impl FnOnce(EthtoolError) -> EthtoolError {
    move |e| step(what)(Box::new(e)).into()
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_STSO: u32 = 0x1f;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ethtool_sset_info` asking for one string set (so one count follows the mask).
#[repr(C)]
struct SsetInfo {
    cmd: u32,
    reserved: u32,
    mask: u64,
    count: u32,
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
    // The kernel drops TSO (and SG) by itself once no checksum feature is left; the
    // explicit TSO off keeps the outcome the same should it ever stop doing so.
    set_tx_offloads(name, false)
}

/// Turns TX checksum offload and TSO on for `name` (as a veth has them by default), so
/// the sandbox hands the switch GSO skbs with partial checksums (the tc data path).
pub fn enable_tx_checksum(name: &str) -> Result<()> {
    set_tx_offloads(name, true)
}

/// TX checksum offload, then TSO, on or off.
fn set_tx_offloads(name: &str, on: bool) -> Result<()> {
    let sock = control_socket()?;
    let state = if on { "on" } else { "off" };
    for (cmd, what) in [
        (ETHTOOL_STXCSUM, "TX checksum offload"),
        (ETHTOOL_STSO, "TCP segmentation offload"),
    ] {
        ethtool_value(&sock, name, cmd, u32::from(on))
            .map_err(doing(format!("turning {state} {what} on {name}")))?;
    }
    Ok(())
}

/// Turns GRO on for `name`. On a veth this also makes it take frames other devices
/// redirect to it from XDP (its NAPI receive path), which the fast path needs.
pub fn enable_gro(name: &str) -> Result<()> {
    let sock = control_socket()?;
    ethtool_value(&sock, name, ETHTOOL_SGRO, 1)
        .map_err(doing(format!("turning on GRO on {name}")))?;
    Ok(())
}

/// The transmit offloads a device must not have for the kernel to hand it only
/// complete frames: checksums finished, segmented, VLAN tags in the frame.
pub const TX_OFFLOADS: &[&str] = &[
    "tx-checksum-ipv4",
    "tx-checksum-ip-generic",
    "tx-checksum-ipv6",
    "tx-checksum-sctp",
    "tx-scatter-gather",
    "tx-scatter-gather-fraglist",
    "tx-tcp-segmentation",
    "tx-tcp-ecn-segmentation",
    "tx-tcp-mangleid-segmentation",
    "tx-tcp6-segmentation",
    "tx-udp-segmentation",
    "tx-gso-list",
    "tx-sctp-segmentation",
    "tx-generic-segmentation",
    "tx-vlan-hw-insert",
    "tx-vlan-stag-hw-insert",
];

/// Turns off every feature named in `features` that `name` has (ETHTOOL_SFEATURES, by
/// the kernel's feature names as `ethtool -k` shows them), then checks that none of them
/// stayed on (a fixed feature cannot be turned off: that is an error naming it).
pub fn disable_features(name: &str, features: &[&str]) -> Result<()> {
    let sock = control_socket()?;
    let names = feature_names(&sock, name)?;
    let words = names.len().div_ceil(32);
    // ethtool_sfeatures: cmd, size, then (valid, requested) per 32 features.
    let mut req = vec![0u32; 2 + 2 * words];
    req[0] = ETHTOOL_SFEATURES;
    req[1] = words as u32;
    let wanted: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| features.contains(&n.as_str()))
        .map(|(i, _)| i)
        .collect();
    for &i in &wanted {
        req[2 + 2 * (i / 32)] |= 1 << (i % 32);
    }
    // A positive return only says some requests were adjusted: checked below.
    ethtool_raw(&sock, name, req.as_mut_ptr().cast())
        .map_err(doing(format!("turning off transmit offloads on {name}")))?;
    // ethtool_gfeatures: cmd, size, then (available, requested, active, never_changed).
    let mut get = vec![0u32; 2 + 4 * words];
    get[0] = ETHTOOL_GFEATURES;
    get[1] = words as u32;
    ethtool_raw(&sock, name, get.as_mut_ptr().cast())
        .map_err(doing(format!("reading the features of {name}")))?;
    let still: Vec<&str> = wanted
        .iter()
        .filter(|&&i| get[2 + 4 * (i / 32) + 2] & (1 << (i % 32)) != 0)
        .map(|&i| names[i].as_str())
        .collect();
    if !still.is_empty() {
        return Err(EthtoolError::Fixed {
            name: name.to_string(),
            features: still.join(", "),
        });
    }
    Ok(())
}

/// The device's feature names, by bit (the ETH_SS_FEATURES string set).
fn feature_names(sock: &OwnedFd, name: &str) -> Result<Vec<String>> {
    let mut info = SsetInfo {
        cmd: ETHTOOL_GSSET_INFO,
        reserved: 0,
        mask: 1 << ETH_SS_FEATURES,
        count: 0,
    };
    ethtool_raw(sock, name, (&mut info as *mut SsetInfo).cast())
        .map_err(doing(format!("counting the features of {name}")))?;
    // The kernel clears the mask bit of a set it cannot count.
    if info.mask & (1 << ETH_SS_FEATURES) == 0 || info.count == 0 {
        return Err(EthtoolError::NoFeatureNames(name.to_string()));
    }
    let count = info.count as usize;
    // ethtool_gstrings: cmd, string_set, len, then len names of 32 bytes.
    let mut buf = vec![0u8; 12 + count * ETH_GSTRING_LEN];
    buf[..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
    buf[4..8].copy_from_slice(&ETH_SS_FEATURES.to_ne_bytes());
    buf[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
    ethtool_raw(sock, name, buf.as_mut_ptr().cast())
        .map_err(doing(format!("reading the feature names of {name}")))?;
    Ok(buf[12..]
        .chunks_exact(ETH_GSTRING_LEN)
        .map(|c| {
            let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..end]).into_owned()
        })
        .collect())
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
        ethtool_value(&sock, name, cmd, 0).map_err(doing(format!("reading {what} of {name}")))?;
    Ok(value != 0)
}

/// Any socket will do for SIOCETHTOOL; it acts in the namespace the socket was made in.
fn control_socket() -> Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(EthtoolError::Socket(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs one ETHTOOL_G*/S* command carrying a `struct ethtool_value`, returning the
/// value the kernel left in it (the setting, for a G* command).
fn ethtool_value(sock: &OwnedFd, name: &str, cmd: u32, data: u32) -> Result<u32> {
    let mut value = EthtoolValue { cmd, data };
    ethtool_raw(sock, name, (&mut value as *mut EthtoolValue).cast())?;
    Ok(value.data)
}

/// SIOCETHTOOL on `name` with `data` pointing at the command's structure (its first
/// u32 the command); the caller keeps it alive and sized for what the command returns.
fn ethtool_raw(sock: &OwnedFd, name: &str, data: *mut libc::c_void) -> Result<()> {
    validate_ifname(name)?;
    let mut req = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data,
        _pad: [0; 16],
    };
    // validate_ifname() bounds the name to IFNAMSIZ - 1, so the NUL stays in place.
    for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: req is a properly laid out ifreq whose data pointer points at the
    // command's structure, which the caller keeps alive and sized for the command (the
    // kernel reads and writes only what the command and its counts say).
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if rc < 0 {
        return Err(EthtoolError::Ioctl(io::Error::last_os_error()));
    }
    Ok(())
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
