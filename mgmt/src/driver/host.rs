//! The `host` pseudo-network: sandboxes share the host's namespace; nothing in the
//! data path, and nothing can be connected to it.

use super::{Ctx, Driver, DriverError, Result};
use crate::error::{ApiError, ApiResult};
use crate::model::{DriverKind, Endpoint, Network, SandboxMode};

pub struct Host;

impl Driver for Host {
    fn kind(&self) -> DriverKind {
        DriverKind::Host
    }
    fn sandbox_mode(&self) -> SandboxMode {
        SandboxMode::Host
    }
    fn check_publish(&self, _: &Network) -> ApiResult<()> {
        Err(ApiError::invalid(
            "published ports make no sense in host network mode: the sandbox already uses the host's ports",
        ))
    }
    fn create_network(&mut self, _: &mut Ctx, _: &Network) -> Result<()> {
        Ok(())
    }
    fn delete_network(&mut self, _: &mut Ctx, _: &Network) -> Result<()> {
        Ok(())
    }
    fn create_endpoint(&mut self, _: &mut Ctx, _: &Network, _: &Endpoint) -> Result<()> {
        Err(DriverError::NoEndpoints(
            "the host network has no endpoints: run the sandbox with --network host instead",
        ))
    }
    fn delete_endpoint(&mut self, _: &mut Ctx, _: &Network, _: &Endpoint) -> Result<()> {
        Ok(())
    }
}
