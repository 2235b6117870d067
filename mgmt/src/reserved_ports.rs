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

type Result<T> = std::result::Result<T, Step<std::io::Error>>;

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
pub fn reserve(state_dir: &Path, first: u16, last: u16) -> Result<Reservation> {
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

impl Reservation {
    pub fn release(self) {
        if let Err(e) = write_sysctl(&self.before) {
            tracing::warn!(error = %crate::error::chain(&e), "cannot restore ip_local_reserved_ports");
            return;
        }
        let _ = std::fs::remove_file(&self.saved);
    }
}
