//! DNS over TCP at the gateway address (RFC 7766): placeholder until the TCP stack lands.

use std::collections::HashMap;
use std::time::Instant;

use dns::Client;

use crate::pipeline::Emit;
use crate::worker::Network;
use crate::{NetId, PortId};

#[derive(Default)]
pub(crate) struct DnsTcp {
    pub accepted: u64,
    pub refused: u64,
}

impl DnsTcp {
    pub fn receive(
        &mut self,
        _net: &Network,
        _in_port: PortId,
        _frame: &[u8],
        _out: &mut impl Emit,
        _queries: &mut Vec<(Client, Vec<u8>)>,
        _now: Instant,
    ) -> bool {
        self.refused += 1;
        true
    }

    pub fn answer(
        &mut self,
        _client: Client,
        _bytes: &[u8],
        _nets: &HashMap<NetId, Network>,
        _out: &mut impl Emit,
        _now: Instant,
    ) {
    }

    pub fn poll(&mut self, _nets: &HashMap<NetId, Network>, _out: &mut impl Emit, _now: Instant) {}

    pub fn next_deadline(&self, _now: Instant) -> Option<Instant> {
        None
    }

    pub fn remove_network(&mut self, _net: NetId) {}
}
