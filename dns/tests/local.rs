//! Names the networks own: A, AAAA and PTR from local data, scoping, shuffling, sizes.

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use dns::{Transport, CLASSIC_UDP_LIMIT, TTL};
use hickory_proto::op::{MessageType, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

const V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

fn web_net() -> dns::Resolver {
    with_net(
        resolver(vec![upstream(1)]),
        1,
        &[
            rec(
                "web",
                &["frontend", "www.example.test"],
                Some([172, 18, 0, 2]),
                Some(V6),
            ),
            rec("db", &[], Some([172, 18, 0, 3]), None),
        ],
    )
}

#[test]
fn a_record_for_a_sandbox_name() {
    let mut r = web_net();
    let m = answer(r.handle_query(udp(1), &query_bytes(0x1234, "web", RecordType::A), now()));
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert!(m.metadata.recursion_desired, "RD is copied from the query");
    assert!(m.metadata.recursion_available);
    assert_eq!(m.queries.len(), 1);
    assert_eq!(v4s(&m), vec![Ipv4Addr::new(172, 18, 0, 2)]);
    assert_eq!(m.answers[0].ttl, TTL);
    assert_eq!(TTL, 600);
    assert_eq!(&m.answers[0].name, &Name::from_ascii("web.").unwrap());
    assert_eq!(r.counters().local_answers, 1);
}

#[test]
fn answer_bytes_are_exactly_a_standard_response() {
    let mut r = web_net();
    let q = query_bytes(0xbeef, "db", RecordType::A);
    let got = answer_bytes(r.handle_query(udp(1), &q, now()));
    #[rustfmt::skip]
    let want: &[u8] = &[
        0xbe, 0xef,             // ID
        0x85, 0x80,             // QR, AA, RD, RA; NOERROR
        0, 1, 0, 1, 0, 0, 0, 0, // 1 question, 1 answer
        2, b'd', b'b', 0, 0, 1, 0, 1, // db. A IN
        0xc0, 0x0c,             // name: pointer to the question
        0, 1, 0, 1,             // A IN
        0, 0, 0x02, 0x58,       // TTL 600
        0, 4, 172, 18, 0, 3,
    ];
    assert_eq!(got, want);
}

#[test]
fn aaaa_when_the_endpoint_has_ipv6_and_nodata_when_not() {
    let mut r = web_net();
    let m = answer(r.handle_query(udp(1), &query_bytes(1, "web", RecordType::AAAA), now()));
    assert_eq!(v6s(&m), vec![V6]);
    assert_eq!(m.answers[0].ttl, 600);

    let m = answer(r.handle_query(udp(1), &query_bytes(2, "db", RecordType::AAAA), now()));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(
        m.answers.is_empty(),
        "owned name without IPv6: NODATA, not NXDOMAIN"
    );
}

#[test]
fn aliases_and_dotted_names_resolve() {
    let mut r = web_net();
    for name in ["frontend", "www.example.test", "www.example.test."] {
        let m = answer(r.handle_query(udp(1), &query_bytes(3, name, RecordType::A), now()));
        assert_eq!(v4s(&m), vec![Ipv4Addr::new(172, 18, 0, 2)], "{name}");
    }
}

#[test]
fn names_are_case_insensitive_and_the_question_case_is_kept() {
    let mut r = web_net();
    for name in ["WEB", "Web.", "wEb", "FrontEnd"] {
        let m = answer(r.handle_query(udp(1), &query_bytes(4, name, RecordType::A), now()));
        assert_eq!(v4s(&m), vec![Ipv4Addr::new(172, 18, 0, 2)], "{name}");
        // Resolvers using 0x20 case randomisation check the echoed case.
        assert!(m.answers[0].name.eq_case(m.queries[0].name()), "{name}");
        assert!(m.answers[0]
            .name
            .to_ascii()
            .starts_with(name.trim_end_matches('.')));
    }
}

#[test]
fn ptr_for_ipv4_and_ipv6_addresses() {
    let mut r = web_net();
    let m = answer(r.handle_query(
        udp(1),
        &query_bytes(5, "2.0.18.172.in-addr.arpa.", RecordType::PTR),
        now(),
    ));
    match m.answers.first().map(|a| &a.data) {
        Some(RData::PTR(p)) => assert_eq!(p.0, Name::from_ascii("web.").unwrap()),
        other => panic!("want PTR web., got {other:?}"),
    }
    assert_eq!(m.answers[0].ttl, 600);

    let v6_arpa = Name::from(V6).to_ascii();
    assert!(v6_arpa.ends_with("ip6.arpa."), "{v6_arpa}");
    let m = answer(r.handle_query(udp(1), &query_bytes(6, &v6_arpa, RecordType::PTR), now()));
    match m.answers.first().map(|a| &a.data) {
        Some(RData::PTR(p)) => assert_eq!(p.0, Name::from_ascii("web.").unwrap()),
        other => panic!("want PTR web., got {other:?}"),
    }
    // Upper case reverse names work too.
    let m = answer(r.handle_query(
        udp(1),
        &query_bytes(7, "3.0.18.172.IN-ADDR.ARPA.", RecordType::PTR),
        now(),
    ));
    assert_eq!(m.answers.len(), 1);
}

#[test]
fn ptr_for_an_address_not_owned_is_forwarded() {
    let mut r = web_net();
    let (to, _, _, _) = forward(r.handle_query(
        udp(1),
        &query_bytes(8, "9.0.18.172.in-addr.arpa.", RecordType::PTR),
        now(),
    ));
    assert_eq!(to, upstream(1));
}

#[test]
fn names_are_scoped_to_their_network() {
    let mut r = with_net(
        web_net(),
        2,
        &[rec("api", &[], Some([172, 19, 0, 2]), None)],
    );
    // net 2 does not see net 1's single-label names: NXDOMAIN, never leaked upstream.
    let m = answer(r.handle_query(udp(2), &query_bytes(9, "web", RecordType::A), now()));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // ... nor its multi-label ones: those go upstream like any other name.
    let (to, _, _, _) = forward(r.handle_query(
        udp(2),
        &query_bytes(10, "www.example.test", RecordType::A),
        now(),
    ));
    assert_eq!(to, upstream(1));
    // ... nor its addresses.
    let a = r.handle_query(
        udp(2),
        &query_bytes(11, "2.0.18.172.in-addr.arpa.", RecordType::PTR),
        now(),
    );
    assert!(matches!(a, dns::Action::Forward { .. }), "{a:?}");
    // net 1 does not see net 2's.
    let m = answer(r.handle_query(udp(1), &query_bytes(12, "api", RecordType::A), now()));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // A removed network answers nothing locally any more.
    r.remove_network(2);
    let m = answer(r.handle_query(udp(2), &query_bytes(13, "api", RecordType::A), now()));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn set_network_replaces_the_table() {
    let mut r = web_net();
    r = with_net(r, 1, &[rec("other", &[], Some([172, 18, 0, 9]), None)]);
    let m = answer(r.handle_query(udp(1), &query_bytes(1, "web", RecordType::A), now()));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = answer(r.handle_query(udp(1), &query_bytes(1, "other", RecordType::A), now()));
    assert_eq!(v4s(&m), vec![Ipv4Addr::new(172, 18, 0, 9)]);
}

#[test]
fn unowned_single_label_names_are_nxdomain_not_forwarded() {
    let mut r = web_net();
    let m = answer(r.handle_query(udp(1), &query_bytes(14, "nosuch", RecordType::A), now()));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.counters().nxdomain, 1);
    assert_eq!(r.counters().forwarded, 0);
}

fn shared_alias_net(n: u8) -> dns::Resolver {
    let records: Vec<_> = (1..=n)
        .map(|i| rec(&format!("svc-{i}"), &["svc"], Some([172, 20, 0, i]), None))
        .collect();
    with_net(resolver(vec![upstream(1)]), 1, &records)
}

#[test]
fn shared_alias_returns_every_address_in_varying_order() {
    let mut r = shared_alias_net(4);
    let mut orders = HashSet::new();
    for id in 0..50 {
        let m = answer(r.handle_query(udp(1), &query_bytes(id, "svc", RecordType::A), now()));
        let got = v4s(&m);
        let set: HashSet<_> = got.iter().copied().collect();
        assert_eq!(set.len(), 4, "every endpoint's address, once: {got:?}");
        orders.insert(got);
    }
    assert!(orders.len() > 1, "the order never changed over 50 queries");
    let firsts: HashSet<_> = orders.iter().map(|o| o[0]).collect();
    assert!(firsts.len() > 1, "the first address never changed");
}

#[test]
fn udp_answers_over_512_bytes_are_truncated_with_tc() {
    let mut r = shared_alias_net(60);
    let q = query_bytes(15, "svc", RecordType::A);
    let bytes = answer_bytes(r.handle_query(udp(1), &q, now()));
    assert!(bytes.len() <= CLASSIC_UDP_LIMIT, "{} bytes", bytes.len());
    let m = hickory_proto::op::Message::from_vec(&bytes).unwrap();
    assert!(m.metadata.truncation, "TC must be set");
    assert!(!v4s(&m).is_empty(), "as many addresses as fit are kept");
    assert!(v4s(&m).len() < 60);
    assert_eq!(r.counters().truncated, 1);
}

#[test]
fn udp_answers_honour_the_client_edns_size() {
    let mut r = shared_alias_net(60);
    let q = with_edns(query(16, "svc", RecordType::A), 4096);
    let bytes = answer_bytes(r.handle_query(udp(1), &q, now()));
    assert!(bytes.len() > CLASSIC_UDP_LIMIT);
    let m = hickory_proto::op::Message::from_vec(&bytes).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(v4s(&m).len(), 60);
    assert!(m.edns.is_some(), "an EDNS query gets an OPT record back");

    // A small EDNS size still truncates, and the OPT record survives truncation.
    let q = with_edns(query(17, "svc", RecordType::A), 600);
    let bytes = answer_bytes(r.handle_query(udp(1), &q, now()));
    assert!(bytes.len() <= 600);
    let m = hickory_proto::op::Message::from_vec(&bytes).unwrap();
    assert!(m.metadata.truncation);
    assert!(m.edns.is_some());

    // Sizes below 512 mean 512 (RFC 6891).
    let q = with_edns(query(18, "svc", RecordType::A), 100);
    let bytes = answer_bytes(r.handle_query(udp(1), &q, now()));
    assert!(bytes.len() > 100 && bytes.len() <= 512);
}

#[test]
fn tcp_answers_are_complete() {
    let mut r = shared_alias_net(60);
    let q = query_bytes(19, "svc", RecordType::A);
    let bytes = answer_bytes(r.handle_query(client(1, Transport::Tcp), &q, now()));
    let m = hickory_proto::op::Message::from_vec(&bytes).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(v4s(&m).len(), 60);
    assert!(bytes.len() > CLASSIC_UDP_LIMIT);
    assert_eq!(r.counters().truncated, 0);
}

#[test]
fn any_returns_both_families_and_other_types_nodata() {
    let mut r = web_net();
    let m = answer(r.handle_query(udp(1), &query_bytes(20, "web", RecordType::ANY), now()));
    assert_eq!(v4s(&m).len(), 1);
    assert_eq!(v6s(&m).len(), 1);
    let m = answer(r.handle_query(udp(1), &query_bytes(21, "web", RecordType::MX), now()));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
}

#[test]
fn udp_answers_never_exceed_one_frame_whatever_the_edns_size() {
    // 200 addresses: over 3 KB, more than one 1500-byte frame carries.
    let mut r = shared_alias_net(200);
    let q = with_edns(query(22, "svc", RecordType::A), 4096);
    let bytes = answer_bytes(r.handle_query(udp(1), &q, now()));
    assert!(
        bytes.len() <= dns::FRAME_UDP_PAYLOAD,
        "{} bytes: more than a frame",
        bytes.len()
    );
    let m = hickory_proto::op::Message::from_vec(&bytes).unwrap();
    assert!(m.metadata.truncation, "TC, so the client retries over TCP");
    assert!(
        v4s(&m).len() > 60,
        "as many addresses as fit: {}",
        v4s(&m).len()
    );
    assert!(v4s(&m).len() < 200);
    assert!(m.edns.is_some());
    assert_eq!(r.counters().truncated, 1);
    // Over TCP it is whole.
    let bytes = answer_bytes(r.handle_query(client(1, Transport::Tcp), &q, now()));
    let m = hickory_proto::op::Message::from_vec(&bytes).unwrap();
    assert_eq!(v4s(&m).len(), 200);
}

#[test]
fn the_udp_cap_is_the_callers() {
    let mut r = dns::Resolver::new(dns::ResolverConfig {
        max_udp_payload: 1000,
        ..Default::default()
    })
    .unwrap();
    let records: Vec<_> = (1..=100)
        .map(|i| rec(&format!("s-{i}"), &["svc"], Some([172, 20, 0, i]), None))
        .collect();
    r.set_network(
        1,
        std::sync::Arc::new(dns::NameTable::new(&records).unwrap()),
    );
    let q = with_edns(query(23, "svc", RecordType::A), 4096);
    let bytes = answer_bytes(r.handle_query(udp(1), &q, now()));
    assert!(bytes.len() <= 1000 && bytes.len() > 512, "{}", bytes.len());
    assert!(dns::Resolver::new(dns::ResolverConfig {
        max_udp_payload: 511,
        ..Default::default()
    })
    .is_err());
}
