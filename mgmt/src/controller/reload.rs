//! SIGHUP: the configuration file is read again; what can change live does (log level,
//! NAT timeouts, FDB age), each change logged; a changed key that takes a restart is
//! logged as refused and left as it is; a file that no longer parses changes nothing.

use std::time::Duration;

use super::*;

/// The settings that change without a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Live {
    pub log_level: String,
    pub nat_udp_timeout: Duration,
    pub nat_tcp_timeout: Duration,
    pub fdb_age: Duration,
}

/// What re-reading the configuration gave.
pub struct Reloaded {
    pub live: Live,
    /// Keys whose value changed but take a restart.
    pub refused: Vec<String>,
}

/// Re-reads the configuration (the daemon's file under its command line).
pub type Reloader = Box<dyn FnMut() -> Result<Reloaded, String>>;
/// Sets the log filter (`--log-level`'s syntax).
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String>>;

/// How the controller reloads: set by the daemon when it has a configuration file.
pub(super) struct Reload {
    reread: Reloader,
    set_log_level: SetLogLevel,
    live: Live,
}

impl Controller {
    /// Reload on SIGHUP with `reread`, starting from `live`.
    pub fn set_reloader(&mut self, reread: Reloader, set_log_level: SetLogLevel, live: Live) {
        self.reload = Some(Reload {
            reread,
            set_log_level,
            live,
        });
    }

    /// SIGHUP.
    pub fn reload(&mut self) {
        let Some(r) = self.reload.as_mut() else {
            tracing::info!("SIGHUP: no configuration file to read again (start with --config)");
            return;
        };
        let new = match (r.reread)() {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the configuration was not reloaded; nothing changed");
                return;
            }
        };
        for key in &new.refused {
            tracing::warn!(key = %key, "SIGHUP: changed in the configuration, but it takes a restart: left as it is");
        }
        let (old, want) = (r.live.clone(), new.live);
        let mut now = old.clone();
        if want.log_level != old.log_level {
            match (r.set_log_level)(&want.log_level) {
                Ok(()) => {
                    tracing::info!(key = "log-level", from = %old.log_level, to = %want.log_level, "SIGHUP: reloaded");
                    now.log_level = want.log_level.clone();
                }
                Err(e) => tracing::error!(key = "log-level", error = %e, "SIGHUP: refused"),
            }
        }
        if (want.nat_udp_timeout, want.nat_tcp_timeout)
            != (old.nat_udp_timeout, old.nat_tcp_timeout)
        {
            match self
                .engine
                .set_nat_timeouts(want.nat_udp_timeout, want.nat_tcp_timeout)
            {
                Ok(()) => {
                    tracing::info!(
                        key = "nat-udp-timeout, nat-tcp-timeout",
                        udp = want.nat_udp_timeout.as_secs(),
                        tcp = want.nat_tcp_timeout.as_secs(),
                        "SIGHUP: reloaded"
                    );
                    now.nat_udp_timeout = want.nat_udp_timeout;
                    now.nat_tcp_timeout = want.nat_tcp_timeout;
                }
                Err(e) => tracing::error!(key = "nat timeouts", error = %e, "SIGHUP: refused"),
            }
        }
        if want.fdb_age != old.fdb_age {
            match self.engine.set_fdb_age(want.fdb_age) {
                Ok(()) => {
                    tracing::info!(
                        key = "fdb-age",
                        from = old.fdb_age.as_secs(),
                        to = want.fdb_age.as_secs(),
                        "SIGHUP: reloaded"
                    );
                    now.fdb_age = want.fdb_age;
                }
                Err(e) => tracing::error!(key = "fdb-age", error = %e, "SIGHUP: refused"),
            }
        }
        if now == old && new.refused.is_empty() {
            tracing::info!("SIGHUP: the configuration is unchanged");
        }
        if let Some(r) = self.reload.as_mut() {
            r.live = now;
        }
    }
}
