//! Names no network owns: forwarded to the upstreams in order, replies relayed intact
//! with the client's ID, failures and timeouts moving to the next upstream.

mod common;

use std::time::Duration;

use common::*;
use dns::{Action, Resolver, ResolverConfig, Transport};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

fn id_of(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

#[test]
fn no_upstream_means_servfail_at_once() {
    let mut r = resolver(vec![]);
    let m = answer(r.handle_query(
        udp(1),
        &query_bytes(42, "example.com", RecordType::A),
        now(),
    ));
    assert_eq!(m.metadata.id, 42);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(m.queries.len(), 1);
    assert_eq!(r.counters().servfail, 1);
    assert_eq!(r.inflight(), 0);
}

#[test]
fn forwards_with_a_fresh_id_and_relays_the_reply_intact_with_the_client_id() {
    let mut r = resolver(vec![upstream(1), upstream(2)]);
    let q = with_edns(query(0x4242, "example.com", RecordType::A), 1232);
    let t = now();
    let (to, transport, fwd, port) = forward(r.handle_query(udp(1), &q, t));
    assert_eq!(to, upstream(1));
    assert_eq!(transport, Transport::Udp);
    assert_eq!(fwd[2..], q[2..], "only the ID changes on the way up");
    assert_ne!(
        id_of(&fwd),
        0x4242,
        "a fresh ID upstream (seeded rng: not the client's)"
    );
    assert_eq!(r.inflight(), 1);

    let reply = upstream_reply(&fwd, ResponseCode::NoError, false, &[[93, 184, 216, 34]]);
    // Answered 30 ms later: the latency histogram has it in its 50 ms bucket.
    let t = t + std::time::Duration::from_millis(30);
    match r.handle_upstream_reply(upstream(1), port, &reply, t) {
        Action::Answer { client, bytes } => {
            assert_eq!(client, udp(1));
            assert_eq!(id_of(&bytes), 0x4242);
            assert_eq!(bytes[2..], reply[2..], "relayed byte for byte");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.inflight(), 0);
    let c = r.counters();
    assert_eq!((c.forwarded, c.upstream_replies), (1, 1));
    let l = c.upstream_latency;
    assert_eq!((l.count, l.sum_micros), (1, 30_000));
    let buckets = l.cumulative();
    assert_eq!(buckets[4], (0.025, 0), "not by 25 ms");
    assert_eq!(buckets[5], (0.05, 1), "by 50 ms");
    // A duplicate of the same reply matches nothing any more.
    assert_eq!(
        r.handle_upstream_reply(upstream(1), port, &reply, t),
        Action::Drop
    );
    assert_eq!(r.counters().unmatched_replies, 1);
}

#[test]
fn replies_from_the_wrong_server_or_for_another_question_are_ignored() {
    let mut r = resolver(vec![upstream(1), upstream(2)]);
    let t = now();
    let (_, fwd, port) = forward_a(&mut r, 1, "a.example", t);
    let reply = upstream_reply(&fwd, ResponseCode::NoError, false, &[[1, 2, 3, 4]]);
    assert_eq!(
        r.handle_upstream_reply(upstream(2), port, &reply, t),
        Action::Drop
    );

    let mut other = query(id_of(&fwd), "b.example", RecordType::A);
    other.metadata.message_type = hickory_proto::op::MessageType::Response;
    assert_eq!(
        r.handle_upstream_reply(upstream(1), port, &other.to_vec().unwrap(), t),
        Action::Drop
    );
    // The query (a query, not a response) echoed back is not an answer either.
    assert_eq!(
        r.handle_upstream_reply(upstream(1), port, &fwd, t),
        Action::Drop
    );
    // The right reply to another port is not the answer (RFC 5452 9.1).
    let other_port = if port == 65535 { port - 1 } else { port + 1 };
    assert_eq!(
        r.handle_upstream_reply(upstream(1), other_port, &reply, t),
        Action::Drop
    );
    assert_eq!(r.inflight(), 1, "still waiting for the real answer");
    assert_eq!(r.counters().unmatched_replies, 4);
    // The upper-cased question is the same question.
    let mut upper = Message::from_vec(&reply).unwrap();
    let name = hickory_proto::rr::Name::from_ascii("A.EXAMPLE.").unwrap();
    upper.queries[0].set_name(name);
    assert!(matches!(
        r.handle_upstream_reply(upstream(1), port, &upper.to_vec().unwrap(), t),
        Action::Answer { .. }
    ));
}

#[test]
fn servfail_and_refused_move_to_the_next_upstream() {
    let mut r = resolver(vec![upstream(1), upstream(2), upstream(3)]);
    let t = now();
    let (to, fwd1, port1) = forward_a(&mut r, 7, "x.example", t);
    assert_eq!(to, upstream(1));
    let sf = upstream_reply(&fwd1, ResponseCode::ServFail, false, &[]);
    let (to, _, fwd2, port2) = forward(r.handle_upstream_reply(upstream(1), port1, &sf, t));
    assert_eq!(to, upstream(2));
    assert_ne!(id_of(&fwd2), id_of(&fwd1));
    let refused = upstream_reply(&fwd2, ResponseCode::Refused, false, &[]);
    let (to, _, fwd3, port3) = forward(r.handle_upstream_reply(upstream(2), port2, &refused, t));
    assert_eq!(to, upstream(3));
    let ok = upstream_reply(&fwd3, ResponseCode::NoError, false, &[[9, 9, 9, 9]]);
    let m = answer(r.handle_upstream_reply(upstream(3), port3, &ok, t));
    assert_eq!(m.metadata.id, 7);
    assert_eq!(v4s(&m), vec![std::net::Ipv4Addr::new(9, 9, 9, 9)]);
}

#[test]
fn the_last_upstream_error_is_relayed_when_all_fail() {
    let mut r = resolver(vec![upstream(1)]);
    let t = now();
    let (_, fwd, port) = forward_a(&mut r, 8, "x.example", t);
    let refused = upstream_reply(&fwd, ResponseCode::Refused, false, &[]);
    let m = answer(r.handle_upstream_reply(upstream(1), port, &refused, t));
    assert_eq!(m.metadata.id, 8);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert_eq!(r.inflight(), 0);
}

#[test]
fn authoritative_nxdomain_stops_and_non_authoritative_moves_on() {
    let mut r = resolver(vec![upstream(1), upstream(2)]);
    let t = now();
    let (_, fwd, port) = forward_a(&mut r, 9, "gone.example", t);
    let nx = upstream_reply(&fwd, ResponseCode::NXDomain, true, &[]);
    let m = answer(r.handle_upstream_reply(upstream(1), port, &nx, t));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.metadata.id, 9);

    let (_, fwd, port) = forward_a(&mut r, 10, "gone.example", t);
    let nx = upstream_reply(&fwd, ResponseCode::NXDomain, false, &[]);
    let (to, _, fwd2, port2) = forward(r.handle_upstream_reply(upstream(1), port, &nx, t));
    assert_eq!(to, upstream(2));
    // The last upstream's non-authoritative NXDOMAIN is the answer.
    let nx2 = upstream_reply(&fwd2, ResponseCode::NXDomain, false, &[]);
    let m = answer(r.handle_upstream_reply(upstream(2), port2, &nx2, t));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.metadata.id, 10);
}

#[test]
fn timeouts_move_on_then_servfail_after_the_last() {
    let mut r = resolver(vec![upstream(1), upstream(2)]);
    let t0 = now();
    let (_, fwd1, port1) = forward_a(&mut r, 11, "slow.example", t0);
    assert_eq!(r.next_deadline(), Some(t0 + TIMEOUT));
    assert!(r
        .poll_timeouts(t0 + TIMEOUT - Duration::from_millis(1))
        .is_empty());

    let t1 = t0 + TIMEOUT;
    let mut acts = r.poll_timeouts(t1);
    assert_eq!(acts.len(), 1);
    let (to, _, fwd2, port2) = forward(acts.remove(0));
    assert_eq!(to, upstream(2));
    assert_eq!(fwd2[2..], fwd1[2..]);
    assert_ne!(port2, port1, "the next upstream is asked from a fresh port");
    // The first upstream's late answer is no longer accepted.
    let late = upstream_reply(&fwd1, ResponseCode::NoError, false, &[[1, 1, 1, 1]]);
    assert_eq!(
        r.handle_upstream_reply(upstream(1), port1, &late, t1),
        Action::Drop
    );

    let mut acts = r.poll_timeouts(t1 + TIMEOUT);
    assert_eq!(acts.len(), 1);
    let m = answer(acts.remove(0));
    assert_eq!(m.metadata.id, 11);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(m.queries.len(), 1);
    let c = r.counters();
    assert_eq!((c.upstream_timeouts, c.servfail), (2, 1));
    assert_eq!(r.inflight(), 0);
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn the_inflight_limit_is_enforced_and_counted() {
    let mut r = Resolver::new(ResolverConfig {
        upstreams: vec![upstream(1)],
        max_inflight: 1024,
        seed: Some(1),
        ..Default::default()
    })
    .unwrap();
    let t = now();
    let mut ids = std::collections::HashSet::new();
    let mut ports = std::collections::HashSet::new();
    for i in 0..1024u16 {
        let (_, fwd, port) = forward_a(&mut r, i, "many.example", t);
        assert!(ids.insert(id_of(&fwd)), "upstream IDs are unique in flight");
        assert!(ports.insert(port), "source ports are unique in flight");
        assert!(dns::DEFAULT_SOURCE_PORTS.contains(&port));
    }
    let m = answer(r.handle_query(udp(1), &query_bytes(5000, "many.example", RecordType::A), t));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(r.counters().inflight_full, 1);
    assert_eq!(r.inflight(), 1024);
    // Expiry frees the slots.
    let acts = r.poll_timeouts(t + Duration::from_secs(60));
    assert_eq!(acts.len(), 1024);
    assert_eq!(r.inflight(), 0);
    assert!(matches!(
        r.handle_query(udp(1), &query_bytes(1, "many.example", RecordType::A), t),
        Action::Forward { .. }
    ));
}

#[test]
fn oversized_upstream_answers_are_cut_to_header_and_question_with_tc() {
    let mut r = resolver(vec![upstream(1)]);
    let t = now();
    let (_, fwd, port) = forward_a(&mut r, 12, "big.example", t);
    let addrs: Vec<[u8; 4]> = (0..60).map(|i| [10, 0, 0, i]).collect();
    let big = upstream_reply(&fwd, ResponseCode::NoError, false, &addrs);
    assert!(big.len() > 512);
    let bytes = answer_bytes(r.handle_upstream_reply(upstream(1), port, &big, t));
    assert!(bytes.len() <= 512);
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(m.metadata.id, 12);
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());
    assert_eq!(m.queries.len(), 1);
    assert_eq!(r.counters().truncated, 1);

    // Over TCP the same answer goes through whole, and is forwarded over TCP.
    let (_, transport, fwd, port) = forward(r.handle_query(
        client(1, Transport::Tcp),
        &query_bytes(13, "big.example", RecordType::A),
        t,
    ));
    assert_eq!(transport, Transport::Tcp);
    let big = upstream_reply(&fwd, ResponseCode::NoError, false, &addrs);
    let bytes = answer_bytes(r.handle_upstream_reply(upstream(1), port, &big, t));
    assert_eq!(bytes[2..], big[2..]);
    assert_eq!(id_of(&bytes), 13);
}

#[test]
fn config_is_validated() {
    let cfg = |n: u8| ResolverConfig {
        upstreams: (1..=n).map(upstream).collect(),
        ..Default::default()
    };
    assert!(Resolver::new(cfg(3)).is_ok());
    assert!(Resolver::new(cfg(4)).is_err());
    assert!(Resolver::new(ResolverConfig {
        timeout: Duration::ZERO,
        ..Default::default()
    })
    .is_err());
    assert!(Resolver::new(ResolverConfig {
        max_inflight: 0,
        ..Default::default()
    })
    .is_err());
}

#[test]
fn a_client_retransmission_is_not_forwarded_twice() {
    let mut r = resolver(vec![upstream(1)]);
    let t = now();
    let q = query_bytes(21, "dup.example", RecordType::A);
    let (_, _, fwd, port) = forward(r.handle_query(udp(1), &q, t));
    assert_eq!(r.handle_query(udp(1), &q, t), Action::Drop);
    assert_eq!(r.counters().duplicates, 1);
    assert_eq!(r.inflight(), 1);
    // Another client asking the same is its own query.
    let mut other = udp(1);
    other.addr.set_port(40001);
    assert!(matches!(
        r.handle_query(other, &q, t),
        Action::Forward { .. }
    ));
    // Once answered, the same ID from the same client is a new query.
    let reply = upstream_reply(&fwd, ResponseCode::NoError, false, &[[1, 2, 3, 4]]);
    assert!(matches!(
        r.handle_upstream_reply(upstream(1), port, &reply, t),
        Action::Answer { .. }
    ));
    assert!(matches!(
        r.handle_query(udp(1), &q, t),
        Action::Forward { .. }
    ));
}

fn switch_like(seed: u64) -> Resolver {
    Resolver::new(ResolverConfig {
        upstreams: vec![upstream(1), upstream(2)],
        source_ports: 61000..=65535,
        seed: Some(seed),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn each_query_goes_out_from_a_fresh_random_port() {
    let mut r = switch_like(3);
    let t = now();
    let mut ports = Vec::new();
    // One after the other, each answered before the next: nothing in flight to avoid.
    for id in 0..20u16 {
        let (_, fwd, port) = forward_a(&mut r, id, "seq.example", t);
        assert!((61000..=65535).contains(&port), "{port}");
        let reply = upstream_reply(&fwd, ResponseCode::NoError, false, &[[1, 2, 3, 4]]);
        assert!(matches!(
            r.handle_upstream_reply(upstream(1), port, &reply, t),
            Action::Answer { .. }
        ));
        ports.push(port);
    }
    assert_ne!(ports[0], ports[1], "two successive queries, two ports");
    let distinct: std::collections::HashSet<_> = ports.iter().collect();
    assert!(distinct.len() >= 18, "not random per query: {ports:?}");
    // Another run picks other ports.
    let mut other = switch_like(4);
    let (_, _, p) = forward_a(&mut other, 0, "seq.example", t);
    assert_ne!(p, ports[0]);
}

#[test]
fn a_reply_to_a_port_with_nothing_in_flight_is_unmatched() {
    let mut r = switch_like(5);
    let t = now();
    let (_, fwd, port) = forward_a(&mut r, 30, "p.example", t);
    let reply = upstream_reply(&fwd, ResponseCode::NoError, false, &[[1, 2, 3, 4]]);
    // Same ID, server and question, another port of the range: not the answer.
    let others: Vec<u16> = [61000, 63000, 65535]
        .into_iter()
        .filter(|p| *p != port)
        .take(2)
        .collect();
    for other in others {
        assert_eq!(
            r.handle_upstream_reply(upstream(1), other, &reply, t),
            Action::Drop
        );
    }
    assert_eq!(r.counters().unmatched_replies, 2);
    assert_eq!(r.inflight(), 1);
    assert!(matches!(
        r.handle_upstream_reply(upstream(1), port, &reply, t),
        Action::Answer { .. }
    ));
    // Nothing in flight now: the same reply on the same port is unmatched too.
    assert_eq!(
        r.handle_upstream_reply(upstream(1), port, &reply, t),
        Action::Drop
    );
    assert_eq!(r.counters().unmatched_replies, 3);
}

#[test]
fn reserved_ports_are_never_source_ports() {
    let mut r = Resolver::new(ResolverConfig {
        upstreams: vec![upstream(1)],
        source_ports: 61000..=61009,
        max_inflight: 10,
        seed: Some(6),
        ..Default::default()
    })
    .unwrap();
    for p in 61000..=61004 {
        r.reserve_port(p);
    }
    r.reserve_port(61000);
    let t = now();
    let mut ports = Vec::new();
    for id in 0..5 {
        let (_, _, port) = forward_a(&mut r, id, "r.example", t);
        ports.push(port);
    }
    ports.sort();
    assert_eq!(ports, vec![61005, 61006, 61007, 61008, 61009]);
    // Every port is in flight or reserved: SERVFAIL, as with a full table.
    let m = answer(r.handle_query(udp(1), &query_bytes(9, "r.example", RecordType::A), t));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(r.counters().inflight_full, 1);
    // Released (61000 twice, as it was reserved twice): usable again.
    r.release_port(61000);
    r.release_port(61003);
    let (_, _, port) = forward_a(&mut r, 10, "r.example", t);
    assert_eq!(port, 61003);
    r.release_port(61000);
    let (_, _, port) = forward_a(&mut r, 11, "r.example", t);
    assert_eq!(port, 61000);
}

#[test]
fn udp_forwards_ask_for_no_more_than_a_frame_and_big_answers_come_back_truncated() {
    let mut r = resolver(vec![upstream(1)]);
    let t = now();
    let q = with_edns(query(40, "big.example", RecordType::A), 4096);
    let (_, _, fwd, port) = forward(r.handle_query(udp(1), &q, t));
    let sent = Message::from_vec(&fwd).unwrap();
    assert_eq!(
        sent.edns.as_ref().map(|e| usize::from(e.max_payload())),
        Some(dns::FRAME_UDP_PAYLOAD),
        "the upstream's answer must fit a frame too"
    );
    let changed: Vec<usize> = (2..q.len()).filter(|&i| q[i] != fwd[i]).collect();
    assert_eq!(
        changed.len(),
        2,
        "only the OPT payload size changes: {changed:?}"
    );
    // An upstream that sends more anyway: cut to a frame, TC set.
    let addrs: Vec<[u8; 4]> = (0..150).map(|i| [10, 0, 1, i]).collect();
    let big = upstream_reply(&fwd, ResponseCode::NoError, false, &addrs);
    assert!(big.len() > dns::FRAME_UDP_PAYLOAD);
    let bytes = answer_bytes(r.handle_upstream_reply(upstream(1), port, &big, t));
    assert!(bytes.len() <= dns::FRAME_UDP_PAYLOAD);
    let m = Message::from_vec(&bytes).unwrap();
    assert!(m.metadata.truncation);
    assert_eq!(m.metadata.id, 40);
    // Over TCP the query goes up as it came (only the ID changed).
    let (_, _, fwd, _) = forward(r.handle_query(client(1, Transport::Tcp), &q, t));
    assert_eq!(fwd[2..], q[2..]);
}

#[test]
fn source_ports_and_udp_cap_are_validated() {
    assert!(Resolver::new(ResolverConfig {
        source_ports: 61000..=61009,
        max_inflight: 11,
        ..Default::default()
    })
    .is_err());
    #[allow(clippy::reversed_empty_ranges)]
    let empty = 2..=1;
    assert!(Resolver::new(ResolverConfig {
        source_ports: empty,
        ..Default::default()
    })
    .is_err());
}
