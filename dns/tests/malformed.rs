//! Hostile and broken input: FORMERR when a header can be read, Drop otherwise, never a
//! panic. The random-bytes test runs the same functions as the fuzz target so CI
//! exercises them without cargo-fuzz.

mod common;

use common::*;
use dns::{Action, Transport};
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn net() -> dns::Resolver {
    with_net(
        resolver(vec![upstream(1), upstream(2)]),
        1,
        &[rec("web", &["svc"], Some([172, 18, 0, 2]), None)],
    )
}

#[test]
fn shorter_than_a_header_is_dropped() {
    let mut r = net();
    for len in 0..12 {
        let b = vec![0xabu8; len];
        assert_eq!(r.handle_query(udp(1), &b, now()), Action::Drop, "len {len}");
    }
    assert_eq!(r.counters().dropped, 12);
}

#[test]
fn a_header_with_a_broken_body_gets_formerr() {
    let mut r = net();
    let good = query_bytes(0x7777, "web", RecordType::A);
    for cut in 12..good.len() {
        let m = answer(r.handle_query(udp(1), &good[..cut], now()));
        assert_eq!(m.metadata.id, 0x7777);
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::FormErr,
            "cut at {cut}"
        );
        assert!(m.queries.is_empty());
    }
    // A header claiming two questions.
    let mut two = query(1, "web", RecordType::A);
    two.add_query(two.queries[0].clone());
    let m = answer(r.handle_query(udp(1), &two.to_vec().unwrap(), now()));
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // No question at all.
    let none = Message::query().to_vec().unwrap();
    let m = answer(r.handle_query(udp(1), &none, now()));
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // A compression pointer looping on itself.
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    let m = answer(r.handle_query(udp(1), &looped, now()));
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn responses_are_never_answered() {
    let mut r = net();
    let mut m = query(1, "web", RecordType::A);
    m.metadata.message_type = hickory_proto::op::MessageType::Response;
    assert_eq!(
        r.handle_query(udp(1), &m.to_vec().unwrap(), now()),
        Action::Drop
    );
}

#[test]
fn other_opcodes_get_notimp() {
    let mut r = net();
    let mut m = query(3, "web", RecordType::A);
    m.metadata.op_code = OpCode::Update;
    let a = answer(r.handle_query(udp(1), &m.to_vec().unwrap(), now()));
    assert_eq!(a.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(a.metadata.id, 3);
}

#[test]
fn unknown_edns_versions_get_badvers() {
    let mut r = net();
    let mut m = query(4, "web", RecordType::A);
    let mut e = hickory_proto::op::Edns::new();
    e.set_version(1);
    m.set_edns(e);
    let a = answer(r.handle_query(udp(1), &m.to_vec().unwrap(), now()));
    // BADVERS and BADSIG share the value 16; the decoder names it BADSIG.
    assert_eq!(u16::from(a.metadata.response_code), 16);
    assert!(a.edns.is_some());
}

#[test]
fn short_or_garbage_upstream_replies_are_dropped() {
    let mut r = net();
    let t = now();
    let (_, fwd, port) = forward_a(&mut r, 5, "a.example", t);
    for len in 0..fwd.len() {
        let mut b = fwd[..len].to_vec();
        if len > 2 {
            b[2] |= 0x80; // QR
        }
        assert_eq!(
            r.handle_upstream_reply(upstream(1), port, &b, t),
            Action::Drop
        );
    }
    assert_eq!(r.inflight(), 1);
}

/// Arbitrary bytes through every entry point, also mutations of valid messages (which
/// reach deeper than pure noise), checking only that nothing panics and the answers we
/// produce are themselves valid DNS.
#[test]
fn thousands_of_random_messages_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut r = net();
    let t0 = now();
    let seeds = [
        query_bytes(1, "web", RecordType::A),
        query_bytes(2, "svc.", RecordType::AAAA),
        query_bytes(3, "2.0.18.172.in-addr.arpa", RecordType::PTR),
        with_edns(query(4, "example.com", RecordType::A), 4096),
    ];
    for i in 0..5000u32 {
        let bytes: Vec<u8> = if i % 2 == 0 {
            let len = rng.random_range(0..600);
            (0..len).map(|_| rng.random()).collect()
        } else {
            let mut b = seeds[i as usize % seeds.len()].clone();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..b.len());
                b[at] = rng.random();
            }
            b.truncate(rng.random_range(0..=b.len()));
            b
        };
        let transport = if i % 3 == 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        let now = t0 + std::time::Duration::from_millis(u64::from(i));
        match r.handle_query(client(1, transport), &bytes, now) {
            Action::Answer { bytes: out, .. } => {
                if transport == Transport::Udp {
                    assert!(
                        out.len() <= dns::FRAME_UDP_PAYLOAD,
                        "{} bytes over UDP",
                        out.len()
                    );
                }
                let parsed = Message::from_vec(&out);
                assert!(parsed.is_ok(), "our answer does not parse: {out:?}");
            }
            Action::Forward {
                bytes: fwd,
                to,
                local_port,
                ..
            } => {
                // Answer some forwards with the garbage too, some properly.
                let _ = r.handle_upstream_reply(to, local_port, &bytes, now);
                if i % 5 == 0 {
                    let mut reply = fwd.clone();
                    reply[2] |= 0x80;
                    let _ = r.handle_upstream_reply(to, local_port, &reply, now);
                }
            }
            Action::Drop => {}
        }
        let _ = r.handle_upstream_reply(upstream(1), 0, &bytes, now);
        let _ = r.poll_timeouts(now);
    }
    let c = r.counters();
    assert_eq!(c.queries, 5000);
    assert!(c.formerr > 0 && c.dropped > 0, "{c:?}");
}
