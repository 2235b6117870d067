//! The pseudo-networks: `host` (sandboxes share the host's namespace) and `none`
//! (driver "null": loopback only). Nothing in the data path, and nothing can be
//! connected to them; they differ only in the sandbox they give and what they say.

use super::{Ctx, Driver, DriverError, Result};
use crate::error::{ApiError, ApiResult};
use crate::model::{DriverKind, Endpoint, Network, SandboxMode};

pub struct Pseudo {
    kind: DriverKind,
    mode: SandboxMode,
    /// Why ports cannot be published on it.
    no_publish: &'static str,
    /// Why it has no endpoints.
    no_endpoints: &'static str,
}

/// `host`: the sandbox uses the host's namespace, ports and all.
pub fn host() -> Pseudo {
    Pseudo {
        kind: DriverKind::Host,
        mode: SandboxMode::Host,
        no_publish: "published ports make no sense in host network mode: the sandbox already uses the host's ports",
        no_endpoints: "the host network has no endpoints: run the sandbox with --network host instead",
    }
}

/// `none`: loopback only.
pub fn null() -> Pseudo {
    Pseudo {
        kind: DriverKind::Null,
        mode: SandboxMode::None,
        no_publish: "cannot publish ports on the none network: it has no connectivity",
        no_endpoints: "the none network has no endpoints: a sandbox on none has loopback only",
    }
}

impl Driver for Pseudo {
    fn kind(&self) -> DriverKind {
        self.kind
    }
    fn sandbox_mode(&self) -> SandboxMode {
        self.mode.clone()
    }
    fn check_publish(&self, _: &Network) -> ApiResult<()> {
        Err(ApiError::invalid(self.no_publish))
    }
    fn delete_network(&mut self, _: &mut Ctx, _: &Network) -> Result<()> {
        Ok(())
    }
    fn create_endpoint(&mut self, _: &mut Ctx, _: &Network, _: &Endpoint) -> Result<()> {
        Err(DriverError::NoEndpoints(self.no_endpoints))
    }
    fn delete_endpoint(&mut self, _: &mut Ctx, _: &Network, _: &Endpoint) -> Result<()> {
        Ok(())
    }
}
