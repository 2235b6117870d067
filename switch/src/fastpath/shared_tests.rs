//! The shared uplink's classification ([`super::shared`]) through the verifier and over
//! frames (BPF_PROG_TEST_RUN) in a lab namespace whose loopback holds the shared
//! address: the socket lookups see this namespace's sockets, and the copies for the
//! router arrive on the far end of a veth standing in for its trunk.

use super::*;
use crate::port::lab::{self, RawSock};
use etherparse::PacketBuilder;
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

const UP_MAC: Mac = [2, 0, 0, 0, 0, 0x55];
const HOP_MAC: Mac = [2, 0, 0, 0, 0, 0x99];
const SHARED: [u8; 4] = [198, 51, 100, 2];
const REMOTE: [u8; 4] = [198, 51, 100, 1];
const VTEP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const OWNED_FROM: u16 = 32768;
const OK: u32 = 0;
const REDIRECT: u32 = tc::TC_ACT_REDIRECT as u32;
const LO: u32 = 1;
const UP_PORT: PortId = 12;
const EP_PORT: PortId = 13;

type Addr = ([u8; 4], u16);

fn ctx() -> Vec<u8> {
    let mut c = vec![0u8; 44];
    c[40..44].copy_from_slice(&LO.to_ne_bytes());
    c
}

fn tcp(from: Addr, to: Addr, syn: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(HOP_MAC, UP_MAC)
        .ipv4(from.0, to.0, 64)
        .tcp(from.1, to.1, 1000, 64000);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut f = Vec::new();
    b.write(&mut f, &[]).unwrap();
    f
}

fn udp(from: Addr, to: Addr) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(HOP_MAC, UP_MAC)
        .ipv4(from.0, to.0, 64)
        .udp(from.1, to.1);
    let mut f = Vec::new();
    b.write(&mut f, &[0x11; 32]).unwrap();
    f
}

fn icmp(request: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(HOP_MAC, UP_MAC).ipv4(REMOTE, SHARED, 64);
    let b = if request {
        b.icmpv4_echo_request(7, 1)
    } else {
        b.icmpv4_echo_reply(7, 1)
    };
    let mut f = Vec::new();
    b.write(&mut f, &[0x22; 16]).unwrap();
    f
}

/// An ARP request from the next hop for `target`, broadcast.
fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend(HOP_MAC);
    f.extend([0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend(HOP_MAC);
    f.extend(REMOTE);
    f.extend([0; 6]);
    f.extend(target);
    f.resize(60, 0);
    f
}

/// `f` (Ethernet + IPv4 without options) with 4 bytes of NOP options.
fn with_options(f: &[u8]) -> Vec<u8> {
    let mut o = f[..34].to_vec();
    o.extend([1, 1, 1, 1]);
    o.extend(&f[34..]);
    o[14] = 0x46;
    let len = u16::from_be_bytes([o[16], o[17]]) + 4;
    o[16..18].copy_from_slice(&len.to_be_bytes());
    o
}

fn uplink(trunk: u32, vtep: Ipv4Addr, owned_from: Option<u16>) -> TcUplink {
    TcUplink {
        ifindex: LO,
        port: UP_PORT,
        trunk_ifindex: trunk,
        mac: UP_MAC,
        vtep,
        shared: owned_from.map(|owned_from| SharedUplink {
            ip: Ipv4Addr::from(SHARED),
            owned_from,
        }),
    }
}

/// Everything of the tests below runs in a fresh namespace: `lo` with the shared
/// address, a veth `t0`-`t1` as the router's trunk (the copies arrive on `t1`).
fn in_lab(f: impl FnOnce(&FastPath, u32, &RawSock) + Send + 'static) {
    let ns = lab::netns();
    ns.veth("t0", "t1");
    ns.ip(&["addr", "add", "198.51.100.2/32", "dev", "lo"]);
    ns.run(move || {
        let fp = FastPath::new().expect("create the fast path's maps and programs (root?)");
        fp.tc_programs().expect("the verifier accepts them");
        let trunk = bpf::ifindex("t0").unwrap();
        bpf::map_update(&fp.peers, UP_PORT, LO | uplink::EGRESS).unwrap();
        for p in [UP_PORT, EP_PORT] {
            let zero = vec![0u8; STATS_LEN * fp.cpus];
            bpf::map_update_bytes(&fp.stats, &p.to_ne_bytes(), &zero).unwrap();
        }
        let sink = RawSock::open("t1").unwrap();
        f(&fp, trunk, &sink);
    });
}

fn run(fp: &FastPath, f: &[u8]) -> (u32, Vec<u8>) {
    let prog = &fp.tc_programs().unwrap().uplink;
    bpf::prog_test_run_out(prog, f, &ctx()).expect("test run")
}

/// The router's copy of `f`, if one arrived on the trunk.
fn copy(sink: &RawSock, wait_ms: u64) -> Option<Vec<u8>> {
    sink.recv(Duration::from_millis(wait_ms)).unwrap()
}

/// The host keeps what is its own and the switch gets what is its own: ARP and ICMP
/// other than echo requests go to both (TC_ACT_OK and a copy on the trunk); ports below
/// `owned_from` are the host's unless published (`owned`), ports from it up the switch's
/// unless the host has a socket for the tuple (listening, established, bound UDP);
/// anything not IPv4 unicast for the uplink's MAC, fragments and echo requests the
/// host's; the VTEP's VXLAN and address the switch's. The switch's frames meet the
/// program they met before (here: punted to the router, untouched).
#[test]
fn shared_uplink_passes_the_hosts_traffic_and_takes_the_switchs() {
    in_lab(|fp, trunk, sink| {
        fp.set_uplink_cfg(&uplink(trunk, Ipv4Addr::from(SHARED), Some(OWNED_FROM)), 0)
            .unwrap();
        let host = |f: &[u8], why: &str| assert_eq!(run(fp, f), (OK, f.to_vec()), "{why}");
        let switch = |f: &[u8], why: &str| {
            assert_eq!(run(fp, f), (REDIRECT, f.to_vec()), "{why}");
        };
        let both = |f: &[u8], why: &str| {
            host(f, why);
            assert_eq!(
                copy(sink, 2000).as_deref(),
                Some(f),
                "{why}: the router's copy"
            );
        };

        both(
            &arp_request(SHARED),
            "an ARP request for the shared address",
        );
        let mut reply = arp_request(REMOTE);
        reply[..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x77]);
        reply[21] = 2;
        both(&reply, "an ARP reply to another MAC");
        both(&icmp(false), "an echo reply");
        host(&icmp(true), "an echo request: the host answers");

        host(
            &tcp((REMOTE, 40000), (SHARED, 22), true),
            "below owned_from",
        );
        let high = tcp((REMOTE, 40000), (SHARED, 40001), true);
        switch(&high, "in the switch's range, no socket of the host's");
        host(
            &with_options(&tcp((REMOTE, 1), (SHARED, 22), true)),
            "options, below",
        );
        switch(&with_options(&high), "options, in the switch's range");
        let mut frag = high.clone();
        frag[20] |= 0x20;
        host(&frag, "a fragment: the host reassembles");
        host(
            &tcp((REMOTE, 40000), (REMOTE, 40001), true),
            "another address",
        );
        let mut bcast = high.clone();
        bcast[..6].fill(0xff);
        host(&bcast, "broadcast");
        let mut other_mac = high.clone();
        other_mac[5] ^= 1;
        host(&other_mac, "another MAC");
        let mut tagged = high[..12].to_vec();
        tagged.extend([0x81, 0x00, 0, 5]);
        tagged.extend(&high[12..]);
        host(&tagged, "VLAN-tagged");
        let mut v6 = Vec::new();
        PacketBuilder::ethernet2(HOP_MAC, UP_MAC)
            .ipv6([0xfe; 16], [0xfd; 16], 64)
            .udp(40000, 40001)
            .write(&mut v6, &[0; 8])
            .unwrap();
        host(&v6, "IPv6");

        // The host's sockets in the switch's range keep their traffic.
        let listener = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(
            port >= OWNED_FROM,
            "an ephemeral port, {port}, in the range"
        );
        host(&tcp((REMOTE, 40000), (SHARED, port), true), "a listener's");
        let stream = TcpStream::connect((Ipv4Addr::from(SHARED), port)).unwrap();
        let local = stream.local_addr().unwrap().port();
        host(
            &tcp((SHARED, port), (SHARED, local), false),
            "an established socket's",
        );
        switch(
            &tcp((REMOTE, port), (SHARED, local), false),
            "the same port from another address: no socket",
        );
        drop((stream, listener));
        switch(
            &tcp((REMOTE, 40000), (SHARED, port), true),
            "the listener gone",
        );
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        let uport = sock.local_addr().unwrap().port();
        host(&udp((REMOTE, 53), (SHARED, uport)), "a bound UDP socket's");
        drop(sock);
        switch(&udp((REMOTE, 53), (SHARED, uport)), "that socket gone");

        // Published ports below the range.
        let published = udp((REMOTE, 40000), (SHARED, 5353));
        host(&published, "UDP below owned_from");
        fp.own_port(17, 5353, true).unwrap();
        switch(&published, "a published UDP port");
        host(
            &tcp((REMOTE, 1), (SHARED, 5353), true),
            "the same port, TCP",
        );
        fp.own_port(17, 5353, false).unwrap();
        fp.own_port(17, 5353, false).expect("not owned is no error");
        host(&published, "unpublished");

        // The VTEP: VXLAN to the shared address, or everything to an address of its own.
        let vxlan = udp((REMOTE, 50000), (SHARED, 4789));
        switch(&vxlan, "VXLAN to the shared address, the VTEP's");
        let own_vtep = uplink(trunk, VTEP, Some(OWNED_FROM));
        fp.set_uplink_cfg(&own_vtep, 0).unwrap();
        host(&vxlan, "VXLAN to the shared address, not the VTEP's");
        switch(
            &tcp((REMOTE, 1), (VTEP.octets(), 22), true),
            "to the VTEP's own address",
        );
        both(&arp_request(VTEP.octets()), "ARP for the VTEP");

        // Captured: the switch's frames are all punted, the host's still the host's.
        fp.set_uplink_cfg(&own_vtep, uplink::CFG_PUNT_ALL).unwrap();
        host(
            &tcp((REMOTE, 40000), (SHARED, 22), true),
            "captured, the host's",
        );
        switch(&high, "captured, the switch's");
        both(&arp_request(SHARED), "captured, ARP");
        assert_eq!(copy(sink, 300), None, "no other copies");
    });
}

/// The switch's frames go on into the program as before: a reply of a session in
/// `nat_in` to a port of the switch's range is translated back and delivered.
#[test]
fn shared_uplink_keeps_the_nat_fast_path() {
    in_lab(|fp, trunk, _| {
        // The case's mapped port is 1024: that is where the switch's range starts here.
        fp.set_uplink_cfg(&uplink(trunk, VTEP, Some(1024)), 0)
            .unwrap();
        let case = super::test_frames::inbound_case(HOP_MAC, UP_MAC, [2, 0, 0, 0, 0, 0xa], EP_PORT);
        fp.nat_install(NatDir::In, &case.key, &case.value).unwrap();
        bpf::map_update(&fp.peers, EP_PORT, 55).unwrap();
        assert_eq!(
            run(fp, &case.reply),
            (REDIRECT, case.want),
            "translated back"
        );
        assert_eq!(fp.counters(EP_PORT).unwrap().tx_packets, 1);
        fp.set_uplink_cfg(&uplink(trunk, VTEP, Some(1025)), 0)
            .unwrap();
        assert_eq!(
            run(fp, &case.reply),
            (OK, case.reply.clone()),
            "below the range: the host's"
        );
    });
}

/// Without the shared flag nothing is the host's: ARP and a port the shared mode
/// would pass are punted to the router, and no copy goes anywhere.
#[test]
fn unshared_uplink_passes_nothing() {
    in_lab(|fp, trunk, sink| {
        fp.set_uplink_cfg(&uplink(trunk, Ipv4Addr::from(SHARED), None), 0)
            .unwrap();
        for f in [
            arp_request(SHARED),
            tcp((REMOTE, 40000), (SHARED, 22), true),
            icmp(true),
        ] {
            assert_eq!(run(fp, &f), (REDIRECT, f.clone()));
        }
        assert_eq!(copy(sink, 300), None);
    });
}

#[test]
fn owned_key_layout() {
    assert_eq!(owned_key(17, 0x1234), 0x0011_1234u32.to_ne_bytes());
    assert_eq!(owned_key(6, 80), ((6u32 << 16) | 80).to_ne_bytes());
}
