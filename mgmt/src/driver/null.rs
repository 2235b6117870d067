//! The `none` pseudo-network (driver "null"): loopback only; nothing to connect.

use super::{Ctx, Driver, DriverError, Result};
use crate::error::{ApiError, ApiResult};
use crate::model::{DriverKind, Endpoint, Network, SandboxMode};

pub struct Null;

impl Driver for Null {
    fn kind(&self) -> DriverKind {
        DriverKind::Null
    }
    fn sandbox_mode(&self) -> SandboxMode {
        SandboxMode::None
    }
    fn check_publish(&self, _: &Network) -> ApiResult<()> {
        Err(ApiError::invalid(
            "cannot publish ports on the none network: it has no connectivity",
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
            "the none network has no endpoints: a sandbox on none has loopback only",
        ))
    }
    fn delete_endpoint(&mut self, _: &mut Ctx, _: &Network, _: &Endpoint) -> Result<()> {
        Ok(())
    }
}
