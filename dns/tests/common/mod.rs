//! Query builders and answer readers shared by the resolver's tests, all through
//! hickory-proto so the bytes are what a real client would send.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dns::{Action, Client, NameTable, Record, Resolver, ResolverConfig, Transport};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

pub fn client(net: u32, transport: Transport) -> Client {
    Client {
        net,
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(172, 18, 0, 2)), 40000),
        transport,
    }
}

pub fn udp(net: u32) -> Client {
    client(net, Transport::Udp)
}

pub fn query(id: u16, name: &str, t: RecordType) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m
}

pub fn query_bytes(id: u16, name: &str, t: RecordType) -> Vec<u8> {
    query(id, name, t).to_vec().unwrap()
}

pub fn with_edns(mut m: Message, payload: u16) -> Vec<u8> {
    let mut e = Edns::new();
    e.set_max_payload(payload);
    m.set_edns(e);
    m.to_vec().unwrap()
}

pub fn rec(name: &str, aliases: &[&str], v4: Option<[u8; 4]>, v6: Option<Ipv6Addr>) -> Record {
    Record {
        name: name.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        ipv4: v4.map(Ipv4Addr::from),
        ipv6: v6,
    }
}

pub fn upstream(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, n)), 53)
}

pub const TIMEOUT: Duration = Duration::from_secs(2);

pub fn resolver(upstreams: Vec<SocketAddr>) -> Resolver {
    Resolver::new(ResolverConfig {
        upstreams,
        timeout: TIMEOUT,
        max_inflight: 1024,
        seed: Some(7),
        ..Default::default()
    })
    .unwrap()
}

pub fn with_net(mut r: Resolver, net: u32, records: &[Record]) -> Resolver {
    r.set_network(net, Arc::new(NameTable::new(records).unwrap()));
    r
}

pub fn now() -> Instant {
    Instant::now()
}

/// The answer bytes, or a panic naming what came instead.
pub fn answer_bytes(a: Action) -> Vec<u8> {
    match a {
        Action::Answer { bytes, .. } => bytes,
        other => panic!("expected an answer, got {other:?}"),
    }
}

pub fn answer(a: Action) -> Message {
    Message::from_vec(&answer_bytes(a)).unwrap()
}

/// A forward: the upstream, the transport, the bytes and the local port they go from.
pub fn forward(a: Action) -> (SocketAddr, Transport, Vec<u8>, u16) {
    match a {
        Action::Forward {
            to,
            transport,
            bytes,
            local_port,
        } => (to, transport, bytes, local_port),
        other => panic!("expected a forward, got {other:?}"),
    }
}

/// Client `udp(1)` asks `r` for the A record of `name` with ID `id`, which `r` forwards:
/// the upstream it goes to, the bytes forwarded and the local port they go from.
pub fn forward_a(r: &mut Resolver, id: u16, name: &str, t: Instant) -> (SocketAddr, Vec<u8>, u16) {
    let (to, _, bytes, port) =
        forward(r.handle_query(udp(1), &query_bytes(id, name, RecordType::A), t));
    (to, bytes, port)
}

pub fn v4s(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

pub fn v6s(m: &Message) -> Vec<Ipv6Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// An upstream's reply to `fwd` (the bytes we sent it), with `rcode` and the given
/// A records.
pub fn upstream_reply(
    fwd: &[u8],
    rcode: hickory_proto::op::ResponseCode,
    authoritative: bool,
    addrs: &[[u8; 4]],
) -> Vec<u8> {
    let q = Message::from_vec(fwd).unwrap();
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.authoritative = authoritative;
    m.metadata.response_code = rcode;
    m.add_queries(q.queries.iter().cloned());
    for a in addrs {
        m.add_answer(hickory_proto::rr::Record::from_rdata(
            q.queries[0].name().clone(),
            300,
            RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::from(*a))),
        ));
    }
    if let Some(e) = q.edns {
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}
