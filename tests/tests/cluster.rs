//! Multi-host overlays on a real etcd cluster: three etcd 3.4 members on a management
//! LAN, three vswitchd "hosts" with their uplinks on an underlay bridge and a
//! management interface each on that LAN (`--cluster-store etcd://...`). Global
//! networks, cluster-wide IPAM, endpoint distribution (static FDB entries, ARP proxy,
//! names), the store failing and coming back, and a host dying.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use e2e::etcd::EtcdCluster;
use e2e::underlay::Underlay;
use e2e::{named_ns, network_create, ns_exec, ping, send_raw, wait_for, Capture, Daemon, Lab};
use serde_json::Value;

const SUBNET: &str = "172.27.0.0/24";
const TTL: u64 = 5;

/// Dropped in this order: the daemons (their logs printed on failure), etcd, the lab.
struct Hosts {
    hosts: Vec<Daemon>,
    etcd: EtcdCluster,
    ul: Underlay,
    lab: Lab,
}

/// Host `i` (1-based): uplink 10.200.0.i on the underlay, management 10.210.0.i.
fn host(lab: &Lab, ul: &Underlay, etcd: &EtcdCluster, i: usize, extra: &[&str]) -> Daemon {
    let tag = format!("n{i}");
    let ns = named_ns(lab, &tag);
    let up = ul.plug(lab, &ns, &format!("{tag}u"));
    etcd.plug(lab, &ns, &format!("10.210.0.{i}"));
    let store = format!("etcd://{}", etcd.endpoints());
    let node = format!("host{i}");
    let ttl = TTL.to_string();
    let mut args = vec![
        "--cluster-store",
        &store,
        "--node-name",
        &node,
        "--cluster-ttl",
        &ttl,
    ];
    args.extend(extra);
    Underlay::start_host(lab, &tag, &up, &format!("10.200.0.{i}"), &args)
}

impl Hosts {
    fn start() -> Hosts {
        let lab = Lab::new();
        let etcd = EtcdCluster::start(&lab, 3);
        let ul = Underlay::new(&lab);
        let hosts = (1..=3).map(|i| host(&lab, &ul, &etcd, i, &[])).collect();
        let h = Hosts {
            hosts,
            etcd,
            ul,
            lab,
        };
        for d in &h.hosts {
            wait_for("the store to be connected", Duration::from_secs(15), || {
                connected(d)
            });
        }
        h
    }

    fn name(&self, s: &str) -> String {
        self.lab.name(s)
    }
}

fn cluster(d: &Daemon) -> Value {
    d.json(&["cluster"])
}

fn connected(d: &Daemon) -> bool {
    cluster(d)["store"]["connected"] == true
}

/// Other hosts' endpoints on `net` that `d` has.
fn remote_endpoints(d: &Daemon, net: &str) -> u64 {
    cluster(d)["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["name"] == net)
        .and_then(|n| n["remote_endpoints"].as_u64())
        .unwrap_or(0)
}

fn scope_of(d: &Daemon, net: &str) -> Option<String> {
    d.json(&["network", "ls"])
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["Name"] == net)
        .map(|n| n["Scope"].as_str().unwrap_or_default().to_string())
}

fn ping_eventually(ns: &str, dst: &str) {
    wait_for(
        &format!("{ns} to reach {dst}"),
        Duration::from_secs(15),
        || ping(ns, dst, 1),
    );
}

fn mac_in(ns: &str) -> String {
    let o = ns_exec(
        ns,
        &["cat", "/sys/class/net/eth0/address"],
        Duration::from_secs(5),
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn resolve(ns: &str, name: &str) -> String {
    let o = ns_exec(ns, &["getent", "hosts", name], Duration::from_secs(10));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A sandbox on each host at once, on `net`; their addresses.
fn sandboxes_concurrently(h: &Hosts, net: &str, names: &[String]) -> Vec<String> {
    let mut children: Vec<_> = h
        .hosts
        .iter()
        .zip(names)
        .map(|(d, n)| d.spawn_ctl(&["sandbox", "create", "--network", net, n]))
        .collect();
    for (c, n) in children.iter_mut().zip(names) {
        let out = c.wait_with_output_ref();
        assert!(out.0, "sandbox {n}: {}", out.1);
    }
    h.hosts
        .iter()
        .zip(names)
        .map(|(d, n)| d.ip_of(n, net))
        .collect()
}

trait WaitRef {
    fn wait_with_output_ref(&mut self) -> (bool, String);
}

impl WaitRef for std::process::Child {
    fn wait_with_output_ref(&mut self) -> (bool, String) {
        let st = self.wait().expect("vswitchctl");
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        (st.success(), err)
    }
}

#[test]
fn a_global_network_spans_three_hosts() {
    let h = Hosts::start();
    let net = h.name("g");
    h.hosts[0].ok(&network_create("overlay", &["--subnet", SUBNET], &net));
    for d in &h.hosts {
        wait_for("the network on every host", Duration::from_secs(10), || {
            scope_of(d, &net).as_deref() == Some("global")
        });
    }
    // Created on host 1, named on host 2: refused, the cluster has it.
    h.hosts[1].refused_with(
        &network_create("overlay", &["--subnet", "172.26.0.0/24"], &net),
        "already exists",
    );

    // Three sandboxes created at once on three hosts, no --ip: three addresses.
    let names: Vec<String> = (1..=3).map(|i| h.name(&format!("s{i}"))).collect();
    let ips = sandboxes_concurrently(&h, &net, &names);
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "addresses handed out twice: {ips:?}");
    for d in &h.hosts {
        wait_for(
            "every host to know the others' endpoints",
            Duration::from_secs(10),
            || remote_endpoints(d, &net) == 2,
        );
    }
    // --ip of another host's sandbox: refused, naming it.
    let e = h.hosts[2].sandbox_refused(&h.name("dup"), &net, &["--ip", &ips[0]], "already in use");
    assert!(e.contains("host1"), "{e}");

    // Known endpoints: pings, names, static FDB entries behind their VTEP.
    for (i, a) in names.iter().enumerate() {
        for (j, ip) in ips.iter().enumerate() {
            if i != j {
                ping_eventually(a, ip);
            }
        }
    }
    for (j, b) in names.iter().enumerate() {
        let got = resolve(&names[(j + 1) % 3], b);
        assert!(got.contains(&ips[j]), "{b} -> {got:?}, expected {}", ips[j]);
    }
    // Aliases too: one on host 3, asked for on host 1; gone with its sandbox.
    let aliased = h.name("al");
    h.hosts[2].ok(&[
        "sandbox",
        "create",
        "--network",
        &net,
        "--alias",
        "dbalias",
        &aliased,
    ]);
    let alias_ip = h.hosts[2].ip_of(&aliased, &net);
    wait_for(
        "host 1 to resolve the alias",
        Duration::from_secs(10),
        || resolve(&names[0], "dbalias").contains(&alias_ip),
    );
    h.hosts[2].ok(&["sandbox", "rm", &aliased]);
    wait_for("the alias gone on host 1", Duration::from_secs(10), || {
        !resolve(&names[0], "dbalias").contains(&alias_ip)
    });
    let fdb = h.hosts[0].json(&["fdb", &net]);
    for (j, b) in names.iter().enumerate().skip(1) {
        let mac = mac_in(b);
        let row = fdb
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["mac"] == mac.as_str())
            .unwrap_or_else(|| panic!("{mac} of {b} not in host1's fdb: {fdb}"));
        assert_eq!(row["static"], true, "{row}");
        assert_eq!(row["vtep"], format!("10.200.0.{}", j + 1), "{row}");
    }

    // No ARP broadcast crosses the underlay for known endpoints: the switch answers
    // for remote endpoints itself.
    let cap = Capture::start(&h.lab, &h.ul.ns, "br0", "underlay");
    for a in &names {
        e2e::run_ok(&["ip", "-n", a, "neigh", "flush", "all"]);
    }
    for (i, a) in names.iter().enumerate() {
        assert!(ping(a, &ips[(i + 1) % 3], 1), "{a} after a neighbour flush");
    }
    let _ = cap.stop();
    let pcap = h.lab.dir.join("underlay.pcap");
    let arp = e2e::run_out(&["tshark", "-r", pcap.to_str().unwrap(), "-Y", "vxlan && arp"]);
    assert!(arp.trim().is_empty(), "ARP crossed the underlay: {arp}");
    let icmp = e2e::run_out(&[
        "tshark",
        "-r",
        pcap.to_str().unwrap(),
        "-Y",
        "vxlan && icmp",
    ]);
    assert!(!icmp.trim().is_empty(), "the pings went through tunnels");

    // A VXLAN frame for the network from an underlay address that is no member.
    let vni: u32 = h.hosts[0].json(&["network", "inspect", &net])[0]["Options"]["vxlan.id"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("VNI");
    let before = h.hosts[0].json(&["stats"])["router"]["overlay"]["drops"]["unknown_peer"]
        .as_u64()
        .unwrap_or(0);
    let up_mac = {
        let o = ns_exec(
            &h.hosts[0].host_ns,
            &["cat", &format!("/sys/class/net/{}/address", h.name("n1u"))],
            Duration::from_secs(5),
        );
        let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let mut m = [0u8; 6];
        for (i, p) in s.split(':').enumerate().take(6) {
            m[i] = u8::from_str_radix(p, 16).expect("MAC");
        }
        m
    };
    let mut vtep = vxlan::Vtep::new(vxlan::VtepConfig::new(
        [2, 0, 0, 0, 0, 0xfe],
        Ipv4Addr::new(10, 200, 0, 99),
    ));
    let mut inner = vec![0xff; 6];
    inner.extend([2, 0, 0, 0, 0, 0xfd, 0x08, 0x00]);
    inner.resize(60, 0);
    let mut out = vec![0u8; 200];
    let n = vtep
        .encapsulate(
            vxlan::Vni::new(vni).expect("vni"),
            Ipv4Addr::new(10, 200, 0, 1),
            up_mac,
            &inner,
            &mut out,
        )
        .expect("encapsulate");
    out.truncate(n);
    assert_eq!(send_raw(&h.ul.ns, "br0", std::iter::repeat_n(out, 3)), 3);
    wait_for(
        "forged tunnel frames to be counted",
        Duration::from_secs(5),
        || {
            h.hosts[0].json(&["stats"])["router"]["overlay"]["drops"]["unknown_peer"]
                .as_u64()
                .unwrap_or(0)
                >= before + 3
        },
    );
    let fdb = h.hosts[0].ok(&["fdb", &net]);
    assert!(
        !fdb.contains("02:00:00:00:00:fd"),
        "learned from a non-member: {fdb}"
    );

    // A key under the prefix that vswitchd did not write is left alone and counted.
    h.etcd
        .ctl(&["put", "/vswitch/v1/endpoints/x/y", "not json"]);
    h.etcd.ctl(&[
        "put",
        &format!("/vswitch/v1/networks/{}", h.name("junk")),
        "{\"id\": 1}",
    ]);
    wait_for("foreign keys to be counted", Duration::from_secs(5), || {
        cluster(&h.hosts[1])["store"]["foreign_keys"].as_u64() >= Some(2)
    });
    // A global network whose subnet a host has locally: that host refuses it, says
    // why, and keeps its own; the others take it.
    let local = h.hosts[2].network(&h.lab, "loc", &["--subnet", "172.24.0.0/24"]);
    let clash = h.name("clash");
    h.hosts[0].ok(&network_create(
        "overlay",
        &["--subnet", "172.24.0.0/24"],
        &clash,
    ));
    wait_for(
        "host 3 to refuse the clashing network",
        Duration::from_secs(10),
        || {
            cluster(&h.hosts[2])["networks"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| {
                    n["name"] == clash.as_str()
                        && n["refused"].as_str().is_some_and(|r| r.contains(&local))
                })
        },
    );
    assert!(scope_of(&h.hosts[1], &clash).is_some());
    assert!(scope_of(&h.hosts[2], &clash).is_none());
    assert_eq!(scope_of(&h.hosts[2], &local).as_deref(), Some("local"));
    h.hosts[0].ok(&["network", "rm", &clash]);

    // rm with endpoints on other hosts: refused, naming them.
    h.hosts[0].ok(&["sandbox", "rm", &names[0]]);
    let e = h.hosts[0].refused_with(&["network", "rm", &net], "active endpoints");
    assert!(e.contains("host2") && e.contains("host3"), "{e}");
    h.hosts[1].ok(&["sandbox", "rm", &names[1]]);
    h.hosts[2].ok(&["sandbox", "rm", &names[2]]);
    h.hosts[0].ok(&["network", "rm", &net]);
    for d in &h.hosts {
        wait_for(
            "the network gone everywhere",
            Duration::from_secs(10),
            || scope_of(d, &net).is_none(),
        );
    }
}

#[test]
fn the_store_failing_and_a_host_dying() {
    let mut h = Hosts::start();
    let net = h.name("g");
    h.hosts[0].ok(&network_create("overlay", &["--subnet", SUBNET], &net));
    // A second one, removed while host 3 is down: host 3 drops it when it is back.
    let spare = h.name("g2");
    h.hosts[0].ok(&network_create(
        "overlay",
        &["--subnet", "172.23.0.0/24"],
        &spare,
    ));
    let names: Vec<String> = (1..=3).map(|i| h.name(&format!("s{i}"))).collect();
    for (d, n) in h.hosts.iter().zip(&names) {
        wait_for("the network on every host", Duration::from_secs(10), || {
            scope_of(d, &net).is_some()
        });
        d.ok(&["sandbox", "create", "--network", &net, n]);
    }
    let ips: Vec<String> = h
        .hosts
        .iter()
        .zip(&names)
        .map(|(d, n)| d.ip_of(n, &net))
        .collect();
    for d in &h.hosts {
        wait_for(
            "every host to know the others' endpoints",
            Duration::from_secs(10),
            || remote_endpoints(d, &net) == 2,
        );
    }
    ping_eventually(&names[0], &ips[1]);

    // One member down: everything keeps working, a new sandbox joins.
    h.etcd.kill(1);
    let extra = h.name("x1");
    h.hosts[1].ok(&["sandbox", "create", "--network", &net, &extra]);
    wait_for(
        "the new endpoint on host 1",
        Duration::from_secs(10),
        || remote_endpoints(&h.hosts[0], &net) == 3,
    );
    ping_eventually(&names[0], &h.hosts[1].ip_of(&extra, &net));

    // Every member down: what was known keeps flowing, global changes are refused at
    // once naming the store, local networks work.
    let pinger = e2e::Bg::spawn(
        &h.lab,
        &names[0],
        "ping-through",
        &["ping", "-c", "40", "-i", "0.2", &ips[2]],
    );
    // And a TCP stream, connected before the store goes and running through.
    let _server = e2e::Bg::spawn(&h.lab, &names[2], "iperf-s", &["iperf3", "-s", "-1"]);
    e2e::wait_listening(&names[2], 5201);
    let stream = std::thread::spawn({
        let (from, to) = (names[0].clone(), ips[2].clone());
        move || e2e::iperf_seconds(&from, &to, 6)
    });
    std::thread::sleep(Duration::from_millis(500));
    h.etcd.stop_all();
    wait_for(
        "host 1 to see the store gone",
        Duration::from_secs(10),
        || !connected(&h.hosts[0]),
    );
    let t0 = Instant::now();
    let e = h.hosts[0].sandbox_refused(&h.name("x2"), &net, &[], "cluster store");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "refused slowly: {:?}",
        t0.elapsed()
    );
    assert!(e.contains("etcd://"), "{e}");
    let local = h.hosts[0].network(&h.lab, "loc", &["--subnet", "172.25.0.0/24"]);
    let l1 = h.name("l1");
    let l2 = h.name("l2");
    h.hosts[0].ok(&["sandbox", "create", "--network", &local, &l1]);
    h.hosts[0].ok(&["sandbox", "create", "--network", &local, &l2]);
    ping_eventually(&l1, &h.hosts[0].ip_of(&l2, &local));
    assert!(
        ping(&names[1], &ips[2], 3),
        "known endpoints still reach each other"
    );
    wait_for(
        "the ping through the outage to finish",
        Duration::from_secs(15),
        || pinger.output().contains("packets transmitted"),
    );
    let out = pinger.output();
    assert!(
        out.contains(" 0% packet loss"),
        "pings lost while the store was down: {out}"
    );
    let (bps, why) = stream.join().expect("iperf3 thread");
    assert!(bps > 1e6, "TCP through the outage: {bps} bit/s ({why})");

    // Members back: a new sandbox joins without a daemon restart.
    h.etcd.start_all();
    wait_for("host 1 to reconnect", Duration::from_secs(15), || {
        connected(&h.hosts[0])
    });
    let back = h.name("x3");
    h.hosts[0].ok(&["sandbox", "create", "--network", &net, &back]);
    let back_ip = h.hosts[0].ip_of(&back, &net);
    ping_eventually(&names[2], &back_ip);

    // Host 3 killed: within TTL + 2 s the others drop its endpoint and its VTEP.
    let s3_mac = mac_in(&names[2]);
    h.hosts[2].stop(true);
    let t0 = Instant::now();
    for d in &h.hosts[..2] {
        wait_for(
            "host 3's endpoints to go",
            Duration::from_secs(TTL + 4),
            || !d.ok(&["fdb", &net]).contains(&s3_mac),
        );
    }
    assert!(
        t0.elapsed() <= Duration::from_secs(TTL + 2),
        "host 3 lingered {:?}",
        t0.elapsed()
    );
    let nodes = cluster(&h.hosts[0])["nodes"].to_string();
    assert!(!nodes.contains("host3"), "{nodes}");
    // Nor does it get floods: its VTEP left the network's members.
    let peers = h.hosts[0].json(&["network", "inspect", &net])[0]["Peers"].to_string();
    assert!(
        peers.contains("10.200.0.2") && !peers.contains("10.200.0.3"),
        "{peers}"
    );
    h.hosts[0].ok(&["network", "rm", &spare]);
    // Restarted, it is back, and reconciled to the store.
    h.hosts[2].restart(false);
    wait_for("host 3 back", Duration::from_secs(15), || {
        cluster(&h.hosts[0])["nodes"].to_string().contains("host3")
    });
    wait_for("host 3's endpoint back", Duration::from_secs(10), || {
        h.hosts[0].ok(&["fdb", &net]).contains(&s3_mac)
    });
    ping_eventually(&names[0], &ips[2]);
    wait_for(
        "host 3 to drop the network removed while it was away",
        Duration::from_secs(10),
        || scope_of(&h.hosts[2], &spare).is_none(),
    );

    // A clean stop gives the lease back: the others drop the host at once, not after
    // its TTL.
    h.hosts[1].stop(false);
    let t0 = Instant::now();
    wait_for(
        "host 2 gone after its clean stop",
        Duration::from_secs(TTL),
        || !cluster(&h.hosts[0])["nodes"].to_string().contains("host2"),
    );
    assert!(
        t0.elapsed() < Duration::from_secs(TTL - 2),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn tls_with_client_certificates() {
    let lab = Lab::new();
    let etcd = EtcdCluster::start_tls(&lab, 1);
    let (ca, cert, key) = etcd.client_tls().expect("TLS files");
    let ul = Underlay::new(&lab);
    let (ca, cert, key) = (
        ca.to_string_lossy().into_owned(),
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let d = host(
        &lab,
        &ul,
        &etcd,
        1,
        &[
            "--cluster-store-ca",
            &ca,
            "--cluster-store-cert",
            &cert,
            "--cluster-store-key",
            &key,
        ],
    );
    wait_for(
        "a TLS connection to the store",
        Duration::from_secs(15),
        || connected(&d),
    );
    let net = lab.name("g");
    d.ok(&network_create("overlay", &["--subnet", SUBNET], &net));
    let keys = etcd.ctl(&["get", "--prefix", "--keys-only", "/vswitch/v1/networks/"]);
    assert!(keys.contains("/vswitch/v1/networks/"), "{keys}");

    // Without the client certificate the store refuses, and the daemon says so.
    let d2 = host(&lab, &ul, &etcd, 2, &["--cluster-store-ca", &ca]);
    std::thread::sleep(Duration::from_secs(2));
    let c = cluster(&d2);
    assert_eq!(c["store"]["connected"], false, "{c}");
    assert!(c["store"]["last_error"].is_string(), "{c}");
}

#[test]
fn a_host_cut_off_longer_than_its_lease_finds_its_address_taken() {
    let h = Hosts::start();
    let net = h.name("g");
    h.hosts[0].ok(&network_create("overlay", &["--subnet", SUBNET], &net));
    let (s1, s3) = (h.name("s1"), h.name("s3"));
    for (d, n) in [(&h.hosts[0], &s1), (&h.hosts[2], &s3)] {
        wait_for("the network here", Duration::from_secs(10), || {
            scope_of(d, &net).is_some()
        });
        d.ok(&["sandbox", "create", "--network", &net, n]);
    }
    let ip3 = h.hosts[2].ip_of(&s3, &net);
    wait_for("host 1 to know s3", Duration::from_secs(10), || {
        remote_endpoints(&h.hosts[0], &net) == 1
    });
    // Host 3 loses the store (its management link) for longer than its lease; its
    // container keeps running. The others forget it, and hand its address out again.
    let mgmt3 = h.name("g3");
    let ns3 = h.hosts[2].host_ns.clone();
    e2e::run_ok(&["ip", "-n", &ns3, "link", "set", &mgmt3, "down"]);
    wait_for("host 1 to forget s3", Duration::from_secs(TTL + 5), || {
        remote_endpoints(&h.hosts[0], &net) == 0
    });
    let s4 = h.name("s4");
    h.hosts[0].ok(&["sandbox", "create", "--network", &net, &s4]);
    assert_eq!(
        h.hosts[0].ip_of(&s4, &net),
        ip3,
        "lowest free, s3's lease gone"
    );
    // Back: host 3 says its endpoint is not published, and why, rather than claim an
    // address another container has.
    e2e::run_ok(&["ip", "-n", &ns3, "link", "set", &mgmt3, "up"]);
    wait_for("host 3 to reconnect", Duration::from_secs(20), || {
        connected(&h.hosts[2])
    });
    wait_for(
        "host 3 to list s3 as not published",
        Duration::from_secs(10),
        || {
            let c = cluster(&h.hosts[2]);
            c["unpublished"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|u| u["sandbox"] == s3.as_str() && u["ip"] == ip3.as_str())
        },
    );
    let table = h.hosts[2].ok(&["cluster"]);
    assert!(table.contains("NOT PUBLISHED"), "{table}");
    assert_eq!(
        remote_endpoints(&h.hosts[0], &net),
        0,
        "s3 was published over s4: {}",
        cluster(&h.hosts[0])
    );
}

/// `getent ahostsv6 NAME` inside `ns`.
fn resolve6(ns: &str, name: &str) -> String {
    let o = ns_exec(ns, &["getent", "ahostsv6", name], Duration::from_secs(10));
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn ipv6_on_global_networks() {
    let h = Hosts::start();
    // Dual-stack, the IPv6 subnet from the cluster's prefix: the same on every host.
    let net = h.name("g6");
    h.hosts[0].ok(&network_create(
        "overlay",
        &["--subnet", SUBNET, "--ipv6"],
        &net,
    ));
    let subnet6 = |d: &Daemon| {
        let v = d.json(&["network", "inspect", &net]);
        v[0]["IPAM"]["Config"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["Subnet"].as_str())
            .find(|s| s.contains(':'))
            .map(str::to_string)
    };
    for d in &h.hosts {
        wait_for("the network on every host", Duration::from_secs(10), || {
            scope_of(d, &net).as_deref() == Some("global")
        });
    }
    let s6 = subnet6(&h.hosts[0]).expect("an IPv6 subnet");
    for d in &h.hosts[1..] {
        assert_eq!(subnet6(d).as_deref(), Some(s6.as_str()), "same subnet");
        assert_eq!(d.json(&["network", "inspect", &net])[0]["EnableIPv6"], true);
    }
    let prefix = h
        .etcd
        .ctl(&["get", "--print-value-only", "/vswitch/v1/ula-prefix"]);
    let prefix: ipnet::Ipv6Net = prefix.trim().parse().expect("the cluster's /48");
    let net6: ipnet::Ipv6Net = s6.parse().expect("CIDR");
    assert!(prefix.contains(&net6), "{net6} from {prefix}");
    assert_eq!(net6.prefix_len(), 64);

    // At once on three hosts: distinct addresses of both families.
    let names: Vec<String> = (1..=3).map(|i| h.name(&format!("s{i}"))).collect();
    sandboxes_concurrently(&h, &net, &names);
    let ips6: Vec<String> = h
        .hosts
        .iter()
        .zip(&names)
        .map(|(d, n)| d.ip6_of(n, &net))
        .collect();
    let mut distinct = ips6.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        3,
        "IPv6 addresses handed out twice: {ips6:?}"
    );
    for d in &h.hosts {
        wait_for("the others' endpoints", Duration::from_secs(10), || {
            remote_endpoints(d, &net) == 2
        });
    }
    // --ip6 of another host's sandbox: refused, naming it; nothing left behind.
    let e =
        h.hosts[2].sandbox_refused(&h.name("dup"), &net, &["--ip6", &ips6[0]], "already in use");
    assert!(e.contains("host1"), "{e}");
    for (i, a) in names.iter().enumerate() {
        ping_eventually(a, &ips6[(i + 1) % 3]);
        let got = resolve6(a, &names[(i + 1) % 3]);
        assert!(got.contains(&ips6[(i + 1) % 3]), "{got:?}");
    }

    // No neighbour solicitation crosses the underlay for known endpoints: the switch
    // answers for remote IPv6 addresses itself, as it does ARP.
    let cap = Capture::start(&h.lab, &h.ul.ns, "br0", "underlay6");
    for a in &names {
        e2e::run_ok(&["ip", "-n", a, "-6", "neigh", "flush", "all"]);
    }
    for (i, a) in names.iter().enumerate() {
        assert!(
            ping(a, &ips6[(i + 1) % 3], 1),
            "{a} after a neighbour flush"
        );
    }
    let _ = cap.stop();
    let pcap = h.lab.dir.join("underlay6.pcap");
    let pcap = pcap.to_str().unwrap();
    let ns = e2e::run_out(&["tshark", "-r", pcap, "-Y", "vxlan && icmpv6.type == 135"]);
    assert!(
        ns.trim().is_empty(),
        "solicitations crossed the underlay: {ns}"
    );
    let echo = e2e::run_out(&["tshark", "-r", pcap, "-Y", "vxlan && icmpv6.type == 128"]);
    assert!(!echo.trim().is_empty(), "the pings went through tunnels");
    let bad = e2e::run_out(&[
        "tshark",
        "-r",
        pcap,
        "-Y",
        "_ws.malformed || _ws.expert.severity >= warning",
    ]);
    assert!(bad.trim().is_empty(), "malformed on the wire: {bad}");

    // IPv6-only, created on host 2: addresses, pings and names across hosts.
    let only6 = h.name("o6");
    h.hosts[1].ok(&network_create(
        "overlay",
        &["--ipv6", "--ipv4=false"],
        &only6,
    ));
    let (a, c) = (h.name("a6"), h.name("c6"));
    for (d, n) in [(&h.hosts[0], &a), (&h.hosts[2], &c)] {
        wait_for(
            "the IPv6-only network here",
            Duration::from_secs(10),
            || scope_of(d, &only6).is_some(),
        );
        d.ok(&["sandbox", "create", "--network", &only6, n]);
    }
    let (ip_a, ip_c) = (h.hosts[0].ip6_of(&a, &only6), h.hosts[2].ip6_of(&c, &only6));
    assert_ne!(ip_a, ip_c);
    let o6: ipnet::Ipv6Net = subnet_of(&h.hosts[0], &only6).parse().expect("CIDR");
    assert!(
        prefix.contains(&o6) && o6 != net6,
        "{o6}: another /64 of {prefix}"
    );
    wait_for("host 1 to know c6", Duration::from_secs(10), || {
        remote_endpoints(&h.hosts[0], &only6) == 1
    });
    ping_eventually(&a, &ip_c);
    assert!(resolve6(&a, &c).contains(&ip_c));

    for (d, n) in [(&h.hosts[0], &a), (&h.hosts[2], &c)] {
        d.ok(&["sandbox", "rm", n]);
    }
    h.hosts[1].ok(&["network", "rm", &only6]);
    for (d, n) in h.hosts.iter().zip(&names) {
        d.ok(&["sandbox", "rm", n]);
    }
    h.hosts[2].ok(&["network", "rm", &net]);
    let left = h
        .etcd
        .ctl(&["get", "--prefix", "--keys-only", "/vswitch/v1/ipam/"]);
    assert!(left.trim().is_empty(), "addresses left claimed: {left}");
}

/// The network's one subnet, as inspect shows it.
fn subnet_of(d: &Daemon, net: &str) -> String {
    let v = d.json(&["network", "inspect", net]);
    v[0]["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap_or_else(|| panic!("no subnet: {v}"))
        .to_string()
}
