//! Arbitrary bytes as a client query and as upstream replies (raw, and grafted onto the
//! query we forwarded so they pass the ID/question match and reach the relay path).
//! Invariants: no panic, every answer parses, UDP answers fit one frame, and nothing
//! of the internal network 2 is forwarded.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dns::{Action, Client, NameTable, Record, Resolver, ResolverConfig, Transport};
use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;

fn resolver() -> Resolver {
    let upstreams: Vec<SocketAddr> = (1..=2)
        .map(|i| SocketAddr::from(([198, 51, 100, i], 53)))
        .collect();
    let mut r = Resolver::new(ResolverConfig {
        upstreams,
        timeout: Duration::from_secs(2),
        max_inflight: 4,
        seed: Some(1),
        ..Default::default()
    })
    .expect("static config is valid");
    let records: Vec<Record> = (1..=40u8)
        .map(|i| Record {
            name: format!("web{i}"),
            aliases: vec!["svc".into(), "svc.example".into()],
            ipv4: Some(Ipv4Addr::new(172, 18, 0, i)),
            ipv6: Some(format!("fd00::{i}").parse().expect("literal")),
        })
        .collect();
    r.set_network(
        1,
        Arc::new(NameTable::new(&records).expect("literal names")),
    );
    // Network 2's clients are internal: nothing of theirs goes upstream.
    r.set_internal(2, true);
    r
}

fn check(a: &Action) {
    if let Action::Answer { client, bytes } = a {
        assert!(bytes.len() >= 12);
        if client.transport == Transport::Udp {
            assert!(bytes.len() <= dns::FRAME_UDP_PAYLOAD);
        }
        // Relayed upstream answers are passed on as they came (only the ID changed), so
        // only answers we built ourselves must parse; those always carry QR and a
        // question or come from a header we parsed.
        assert!(bytes[2] & 0x80 != 0, "an answer without QR: {bytes:?}");
    }
}

fn check_ours(a: &Action) {
    check(a);
    if let Action::Answer { bytes, .. } = a {
        assert!(
            Message::from_vec(bytes).is_ok(),
            "our own answer does not parse: {bytes:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let transport = if sel & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let client = Client {
        net: u32::from(sel >> 1 & 1) + 1,
        addr: SocketAddr::from(([172, 18, 0, 99], 40000)),
        transport,
    };
    let mut r = resolver();
    let t0 = Instant::now();
    let a = r.handle_query(client, body, t0);
    check_ours(&a);
    if client.net == 2 {
        assert!(!matches!(a, Action::Forward { .. }), "internal query forwarded");
    }
    if let Action::Forward {
        to,
        bytes,
        local_port,
        ..
    } = a
    {
        // Raw bytes as a reply...
        check(&r.handle_upstream_reply(to, local_port, body, t0));
        // ... and grafted onto the forwarded query: header flags from the input,
        // then the question, then the input as the rest of the message.
        let mut reply = bytes.clone();
        reply[2] = 0x80 | body.get(2).copied().unwrap_or(0);
        reply[3] = body.get(3).copied().unwrap_or(0);
        for (i, b) in reply.iter_mut().enumerate().take(12).skip(6) {
            *b = body.get(i).copied().unwrap_or(0);
        }
        reply.extend_from_slice(body);
        check(&r.handle_upstream_reply(to, local_port, &reply, t0));
    }
    for a in r.poll_timeouts(t0 + Duration::from_secs(3)) {
        check(&a);
    }
    for a in r.poll_timeouts(t0 + Duration::from_secs(10)) {
        check(&a);
    }
});
