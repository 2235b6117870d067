//! Ports the host's own connections must not pick: on an uplink whose address the host
//! shares, the switch's SNAT and resolver ports live in the kernel's
//! `net.ipv4.ip_local_reserved_ports`, so the kernel never binds an ephemeral port
//! there (explicit binds still work, as the sysctl documents). The value found at
//! start is kept in the state directory until it is put back at stop, so a killed
//! daemon's reservation is undone at the next start.

use std::path::{Path, PathBuf};

use crate::error::{step, Step};

const SYSCTL: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";
const SAVED: &str = "ip_local_reserved_ports.before";

const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
/// Fewer ephemeral ports than this left to the host and its connections would fail.
const MIN_HOST_PORTS: u32 = 1024;

type Result<T, E = Step<std::io::Error>> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("the host's ephemeral ports (net.ipv4.ip_local_port_range {lo}-{hi}) lie within the switch's {first}-{last} on the shared address: set the range below {first} (the default is 32768-60999)")]
    RangeTaken {
        lo: u16,
        hi: u16,
        first: u16,
        last: u16,
    },
    #[error(transparent)]
    Io(#[from] Step<std::io::Error>),
}

/// A reservation in force; [`Reservation::release`] puts the host's value back.
pub struct Reservation {
    before: String,
    saved: PathBuf,
}

fn read_sysctl() -> Result<String> {
    std::fs::read_to_string(SYSCTL)
        .map(|s| s.trim().to_string())
        .map_err(step(format!("read {SYSCTL}")))
}

fn write_sysctl(value: &str) -> Result<()> {
    // The kernel takes an empty list as "none reserved" only as a newline.
    std::fs::write(SYSCTL, format!("{value}\n")).map_err(step(format!("write {SYSCTL}")))
}

/// Put back the value a killed daemon saved (it never released its reservation).
pub fn undo_leftover(state_dir: &Path) -> Result<()> {
    let saved = state_dir.join(SAVED);
    match std::fs::read_to_string(&saved) {
        Ok(before) => {
            tracing::info!(
                value = before.trim(),
                "restoring ip_local_reserved_ports left by a killed vswitchd"
            );
            write_sysctl(before.trim())?;
            std::fs::remove_file(&saved).map_err(step(format!("remove {}", saved.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(step(format!("read {}", saved.display()))(e)),
    }
}

/// Reserve `first..=last` on top of what the host reserves.
pub fn reserve(state_dir: &Path, first: u16, last: u16) -> Result<Reservation, ReserveError> {
    let range = std::fs::read_to_string(PORT_RANGE).map_err(step(format!("read {PORT_RANGE}")))?;
    let mut it = range
        .split_whitespace()
        .filter_map(|p| p.parse::<u16>().ok());
    if let (Some(lo), Some(hi)) = (it.next(), it.next()) {
        // What stays the host's: its range below ours, and above it if any.
        let below = if lo < first {
            u32::from(hi.min(first - 1) - lo) + 1
        } else {
            0
        };
        let above = if hi > last {
            u32::from(hi - last.max(lo))
        } else {
            0
        };
        if below + above < MIN_HOST_PORTS {
            return Err(ReserveError::RangeTaken {
                lo,
                hi,
                first,
                last,
            });
        }
    }
    undo_leftover(state_dir)?;
    let before = read_sysctl()?;
    let saved = state_dir.join(SAVED);
    std::fs::write(&saved, &before).map_err(step(format!("write {}", saved.display())))?;
    let range = format!("{first}-{last}");
    let value = if before.is_empty() {
        range
    } else {
        format!("{before},{range}")
    };
    write_sysctl(&value)?;
    tracing::info!(reserved = %value, "the host's connections keep off the switch's ports");
    Ok(Reservation { before, saved })
}

/// The host's value goes back when the reservation goes: at stop, or on a failed start.
impl Drop for Reservation {
    fn drop(&mut self) {
        if let Err(e) = write_sysctl(&self.before) {
            tracing::warn!(error = %crate::error::chain(&e), "cannot restore ip_local_reserved_ports");
            return;
        }
        let _ = std::fs::remove_file(&self.saved);
    }
}
