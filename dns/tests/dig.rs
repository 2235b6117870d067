//! Against a real client: `dig`'s own query bytes (captured once, and live over
//! loopback) are answered, and dig understands the answers, including the UDP-truncated
//! then TCP retry path. Loopback only; no root needed.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use dns::{Action, Client, Resolver, Transport};
use hickory_proto::op::{Message, ResponseCode};

/// `dig @127.0.0.1 -p PORT Web.Example.COM` as dig 9.18 sent it: RD and AD set, EDNS0
/// with a 1232-byte payload and a client COOKIE option.
#[rustfmt::skip]
const DIG_QUERY: &[u8] = &[
    0x07, 0xec, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x03, 0x57, 0x65, 0x62, 0x07, 0x45, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65,
    0x03, 0x43, 0x4f, 0x4d, 0x00, 0x00, 0x01, 0x00, 0x01,
    0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c,
    0x00, 0x0a, 0x00, 0x08, 0x63, 0xcb, 0xed, 0x19, 0x9a, 0x07, 0x1a, 0x26,
];

fn lab() -> Resolver {
    let mut records = vec![rec(
        "web",
        &["web.example.com"],
        Some([172, 18, 0, 2]),
        None,
    )];
    records
        .extend((1..=60).map(|i| rec(&format!("svc-{i}"), &["svc"], Some([172, 20, 0, i]), None)));
    with_net(resolver(vec![]), 1, &records)
}

#[test]
fn a_captured_dig_query_is_answered() {
    let mut r = lab();
    let q = Message::from_vec(DIG_QUERY).expect("dig's query parses");
    assert_eq!(q.queries[0].name().to_ascii(), "Web.Example.COM.");
    let m = answer(r.handle_query(udp(1), DIG_QUERY, now()));
    assert_eq!(m.metadata.id, 0x07ec);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.recursion_desired);
    assert_eq!(v4s(&m), vec![Ipv4Addr::new(172, 18, 0, 2)]);
    assert!(
        m.answers[0].name.eq_case(q.queries[0].name()),
        "question case echoed"
    );
    let edns = m.edns.expect("an OPT record answers dig's");
    assert_eq!(edns.version(), 0);
}

/// Serve `lab()` on 127.0.0.1 (UDP and TCP on one port) while `dig ARGS` runs; return
/// dig's output.
fn dig(args: &[&str]) -> String {
    let (udp_sock, tcp) = bind_pair();
    let port = udp_sock.local_addr().map(|a| a.port()).unwrap_or(0);
    udp_sock.set_nonblocking(true).unwrap();
    tcp.set_nonblocking(true).unwrap();
    let mut child = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=5"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run dig ({e}): install dnsutils (make deps)"));
    let mut r = lab();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 65535];
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "dig did not finish in 15 s");
        let mut served = false;
        if let Ok((n, from)) = udp_sock.recv_from(&mut buf) {
            served = true;
            let c = Client {
                net: 1,
                addr: from,
                transport: Transport::Udp,
            };
            if let Action::Answer { bytes, .. } = r.handle_query(c, &buf[..n], now()) {
                udp_sock.send_to(&bytes, from).unwrap();
            }
        }
        if let Ok((mut s, from)) = tcp.accept() {
            served = true;
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut msg).unwrap();
            let c = Client {
                net: 1,
                addr: from,
                transport: Transport::Tcp,
            };
            if let Action::Answer { bytes, .. } = r.handle_query(c, &msg, now()) {
                let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&bytes);
                s.write_all(&framed).unwrap();
            }
        }
        if !served {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

/// A UDP socket and a TCP listener on the same free loopback port.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if let Ok(t) = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))) {
            return (u, t);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

#[test]
fn dig_resolves_a_name_over_udp() {
    // No upstream in the lab: RA is clear.
    let out = dig(&["WEB"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("flags: qr aa rd;"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("WEB.") && l.contains("600") && l.contains("172.18.0.2")),
        "{out}"
    );
}

#[test]
fn dig_gets_nxdomain_for_an_unknown_short_name() {
    let out = dig(&["nosuch"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
}

#[test]
fn dig_resolves_ptr() {
    let out = dig(&["-x", "172.18.0.2"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("PTR\tweb."), "{out}");
}

#[test]
fn dig_retries_a_truncated_answer_over_tcp_and_gets_all_60() {
    let out = dig(&["+noedns", "svc"]);
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains("ANSWER: 60"), "{out}");
    let a = out
        .lines()
        .filter(|l| l.starts_with("svc.") && l.contains("\tA\t"))
        .count();
    assert_eq!(a, 60, "{out}");
}
