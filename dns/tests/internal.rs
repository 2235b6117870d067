//! Internal networks (`--internal`, Docker's CVE-2024-29018): their clients get their own
//! network's names and nothing else; no query of theirs is forwarded, over UDP or TCP.

mod common;

use std::net::Ipv4Addr;

use common::*;
use dns::{Action, Transport};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

fn internal_net() -> dns::Resolver {
    let mut r = with_net(
        resolver(vec![upstream(1)]),
        1,
        &[rec("web", &["front"], Some([172, 18, 0, 2]), None)],
    );
    r.set_internal(1, true);
    r
}

#[test]
fn internal_networks_answer_their_own_names_and_forward_nothing() {
    let mut r = internal_net();
    let t = now();
    // Their own names, as on any network (no recursion on offer, though).
    let m = answer(r.handle_query(udp(1), &query_bytes(1, "front", RecordType::A), t));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(v4s(&m), vec![Ipv4Addr::new(172, 18, 0, 2)]);
    assert!(!m.metadata.recursion_available);
    let m = answer(r.handle_query(
        udp(1),
        &query_bytes(2, "2.0.18.172.in-addr.arpa", RecordType::PTR),
        t,
    ));
    assert_eq!(m.answers.len(), 1);

    // Any other name: SERVFAIL here, over UDP and TCP, never a forward.
    for (id, name, transport) in [
        (3, "anything.example.com", Transport::Udp),
        (4, "anything.example.com", Transport::Tcp),
        (5, "9.9.9.9.in-addr.arpa", Transport::Udp),
    ] {
        let t_ = if name.ends_with("arpa") {
            RecordType::PTR
        } else {
            RecordType::A
        };
        let a = r.handle_query(client(1, transport), &query_bytes(id, name, t_), t);
        assert!(!matches!(a, Action::Forward { .. }), "{name}: {a:?}");
        let m = answer(a);
        assert_eq!(m.metadata.id, id);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{name}");
        assert!(!m.metadata.recursion_available);
        assert_eq!(m.queries.len(), 1);
    }
    // Unqualified names no network owns stay NXDOMAIN, as everywhere.
    let m = answer(r.handle_query(udp(1), &query_bytes(6, "nosuch", RecordType::A), t));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    let c = r.counters();
    assert_eq!(c.internal_not_forwarded, 3);
    assert_eq!(c.servfail, 3);
    assert_eq!(c.forwarded, 0);
    assert_eq!(r.inflight(), 0);
    assert_eq!(r.next_deadline(), None, "nothing waits for an upstream");
}

#[test]
fn only_the_internal_network_is_held_back() {
    let mut r = with_net(
        internal_net(),
        2,
        &[rec("api", &[], Some([172, 19, 0, 2]), None)],
    );
    let t = now();
    let q = query_bytes(7, "www.example.com", RecordType::A);
    let (to, _, _, _) = forward(r.handle_query(udp(2), &q, t));
    assert_eq!(to, upstream(1));
    // An internal network with no names (yet) forwards nothing either.
    r.set_internal(3, true);
    let m = answer(r.handle_query(udp(3), &q, t));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    // Forgetting a network's names does not make it forward.
    r.remove_network(1);
    let m = answer(r.handle_query(udp(1), &q, t));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    // A network that is no longer internal forwards again.
    r.set_internal(1, false);
    assert!(matches!(
        r.handle_query(udp(1), &q, t),
        Action::Forward { .. }
    ));
    assert_eq!(r.counters().internal_not_forwarded, 2);
}
