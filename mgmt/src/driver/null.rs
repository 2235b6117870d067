//! The `none` pseudo-network (driver "null"): loopback only; nothing to connect.

use anyhow::{bail, Result};

use super::{Ctx, Driver};
use crate::model::{DriverKind, Endpoint, Network};

pub struct Null;

impl Driver for Null {
    fn kind(&self) -> DriverKind {
        DriverKind::Null
    }
    fn create_network(&mut self, _: &mut Ctx, _: &Network) -> Result<()> {
        Ok(())
    }
    fn delete_network(&mut self, _: &mut Ctx, _: &Network) -> Result<()> {
        Ok(())
    }
    fn create_endpoint(&mut self, _: &mut Ctx, _: &Network, _: &Endpoint) -> Result<()> {
        bail!("the none network has no endpoints: a sandbox on none has loopback only")
    }
    fn delete_endpoint(&mut self, _: &mut Ctx, _: &Network, _: &Endpoint) -> Result<()> {
        Ok(())
    }
}
