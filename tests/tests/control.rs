//! The control socket and vswitchctl's contract: malformed, unknown, mistyped and
//! oversize requests get error replies and never disturb the daemon or other clients;
//! exit codes and the JSON shapes scripts rely on.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use e2e::{bin, Daemon, Lab};
use serde_json::{json, Value};

fn connect(d: &Daemon) -> (UnixStream, BufReader<UnixStream>) {
    let s = UnixStream::connect(&d.socket).expect("connect to control socket");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let r = BufReader::new(s.try_clone().expect("clone"));
    (s, r)
}

/// Run one of the workspace's binaries with `--socket SOCKET` and `args`, to the end.
fn on_socket(name: &str, socket: &Path, args: &[&str]) -> Output {
    Command::new(bin(name))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

fn reply(r: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).expect("read reply");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {line:?}"))
}

#[test]
fn bad_requests_get_errors_and_the_daemon_keeps_serving() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &[]);
    // A second client stays connected across all of this.
    let (mut other, mut other_r) = connect(&d);

    let (mut s, mut r) = connect(&d);
    let cases: Vec<(&[u8], i64)> = vec![
        (b"{not json\n", -32700),
        (b"[1,2,3]\n", -32600),
        (b"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"network.ls\"}\n", -32600),
        (b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"no.such\"}\n", -32601),
        (b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"network.create\",\"params\":{\"name\":5}}\n", -32602),
        (b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"network.create\",\"params\":{\"name\":\"x\",\"bogus\":1}}\n", -32602),
        (b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"network.create\",\"params\":[1]}\n", -32602),
        (b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"network.inspect\",\"params\":{\"names\":[\"nope\"]}}\n", -32001),
        (b"\xff\xfe\x00garbage\n", -32700),
    ];
    for (req, code) in cases {
        s.write_all(req).expect("send");
        let v = reply(&mut r);
        assert_eq!(
            v["error"]["code"].as_i64(),
            Some(code),
            "request {:?} -> {v}",
            String::from_utf8_lossy(req)
        );
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // Ids are echoed; a good request on the same connection still works.
    s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"network.ls\"}\n")
        .expect("send");
    let v = reply(&mut r);
    assert_eq!(v["id"], "abc");
    assert_eq!(v["result"].as_array().map(|a| a.len()), Some(3));

    // Oversize: more than 1 MiB without a newline gets an error, then the connection closes.
    let (mut big, mut big_r) = connect(&d);
    let blob = vec![b'a'; (1 << 20) + 4096];
    let _ = big.write_all(&blob);
    let v = reply(&mut big_r);
    assert_eq!(v["error"]["code"].as_i64(), Some(-32006), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("too large"));
    // Half a request and a hang-up.
    {
        let mut half = UnixStream::connect(&d.socket).expect("connect");
        let _ = half.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"met");
    }

    other
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"daemon.ping\"}\n")
        .expect("send");
    assert!(
        reply(&mut other_r)["result"]["version"].is_string(),
        "the other client is still served"
    );
    let net = lab.name("net");
    d.ok(&["network", "create", &net]);
    assert!(d.ok(&["network", "ls"]).contains(&net));
}

#[test]
fn exit_codes_and_socket_permissions() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &[]);
    let mode = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660, "socket mode");

    // 1: refused, message on stderr starting "Error: ".
    d.refused_with(&["network", "inspect", &lab.name("missing")], "not found");
    // 2: usage.
    let out = d.ctl(&["network", "create"]);
    assert_eq!(out.status.code(), Some(2), "missing NAME is a usage error");
    let out = d.ctl(&["network", "create", "-o", "novalue", &lab.name("x")]);
    assert_eq!(out.status.code(), Some(2), "bad -o is a usage error");
    // 3: unreachable.
    let out = on_socket(
        "vswitchctl",
        &lab.dir.join("nobody.sock"),
        &["network", "ls"],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error: cannot reach vswitchd"));
}

#[test]
fn inspect_and_ls_have_docker_shapes() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &[]);
    let net = lab.name("net");
    let id = d.ok(&[
        "network",
        "create",
        "--subnet",
        "172.29.0.0/16",
        "--gateway",
        "172.29.0.254",
        "--ip-range",
        "172.29.5.0/24",
        "--internal",
        "--attachable",
        "-o",
        "com.example.k=v",
        "--label",
        "env=lab",
        &net,
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let a = lab.name("a");
    d.sandbox(&a, &net, &["--mac", "02:00:00:00:00:0a"]);
    let v = d.json(&["network", "inspect", &net]);
    let n = &v[0];
    assert_eq!(n["Name"], json!(net));
    assert_eq!(n["Id"], json!(id));
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["Scope"], "local");
    assert_eq!(n["Internal"], true);
    assert_eq!(n["Attachable"], true);
    assert_eq!(
        n["IPAM"]["Config"][0],
        json!({"Subnet": "172.29.0.0/16", "Gateway": "172.29.0.254", "IPRange": "172.29.5.0/24"})
    );
    assert_eq!(n["Options"]["com.example.k"], "v");
    assert_eq!(n["Labels"]["env"], "lab");
    let containers = n["Containers"].as_object().expect("Containers");
    assert_eq!(containers.len(), 1);
    let (_, c) = containers.iter().next().expect("one");
    assert_eq!(c["Name"], json!(a));
    assert_eq!(c["MacAddress"], "02:00:00:00:00:0a");
    assert_eq!(
        c["IPv4Address"], "172.29.5.0/16",
        "lowest free of --ip-range, with the subnet's prefix"
    );
    assert_eq!(c["EndpointID"].as_str().map(str::len), Some(64));
    // By id prefix too, and several at once.
    let both = d.json(&["network", "inspect", &id[..12], "bridge"]);
    assert_eq!(both.as_array().map(|a| a.len()), Some(2));
    // Internal networks give no default route.
    let routes = e2e::ns_exec(
        &a,
        &["ip", "route", "show", "default"],
        Duration::from_secs(5),
    );
    assert!(
        routes.stdout.is_empty(),
        "internal network must not provide a default route"
    );

    let ls = d.json(&["network", "ls", "-f", "driver=bridge"]);
    let names = e2e::column(&ls, "Name");
    assert!(
        names.contains(&"bridge") && names.contains(&net.as_str()) && !names.contains(&"host"),
        "{names:?}"
    );
    let q = d.ok(&["network", "ls", "-q"]);
    assert!(q.lines().all(|l| l.len() == 12), "{q}");
}

/// `--cpus` pins the workers where asked (as DPDK's -l or OVS's pmd-cpu-mask) and a
/// core the machine does not have is refused, naming it.
#[test]
fn cpus_pin_the_workers_where_asked() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &["--cpus", "0"]);
    let stats = d.json(&["stats"]);
    assert_eq!(stats["workers"][0]["core"], 0, "{stats}");

    let out = on_socket(
        "vswitchd",
        &lab.dir.join("refused.sock"),
        &["--cpus", "4096"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cpus names core 4096"), "{err}");
}

/// A host that also runs Docker has docker0 on 172.17.0.1/16: the default bridge takes
/// the next free pool and says so, a --subnet over an address of the host is refused
/// naming it, and automatic subnets step around the host's addresses.
#[test]
fn container_subnets_keep_clear_of_the_hosts_addresses() {
    let lab = Lab::new();
    let host = e2e::host_ns(&lab);
    let (d0, d1) = (lab.name("d0"), lab.name("d1"));
    netlab::veth(&host, &d0, &host, &d1);
    for (dev, cidr) in [(&d0, "172.17.0.1/16"), (&d1, "172.19.0.1/24")] {
        e2e::run_ok(&["ip", "-n", &host, "addr", "add", cidr, "dev", dev]);
    }
    let d = Daemon::start(&lab, &[]);
    let subnet = |net: &str| {
        d.json(&["network", "inspect", net])[0]["IPAM"]["Config"][0]["Subnet"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        subnet("bridge"),
        "172.18.0.0/16",
        "docker0's 172.17 is taken"
    );
    assert!(
        d.log_text()
            .contains("172.17.0.0/16 is already on this host"),
        "{}",
        d.log_text()
    );
    d.refused_with(
        &[
            "network",
            "create",
            "--subnet",
            "172.17.5.0/24",
            &lab.name("x"),
        ],
        "overlaps with 172.17.0.1/16, an address of this host",
    );
    let auto = lab.name("auto");
    d.ok(&["network", "create", &auto]);
    assert_eq!(
        subnet(&auto),
        "172.20.0.0/16",
        "past the bridge's and the host's 172.19"
    );
}
