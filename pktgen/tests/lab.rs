//! The built pktgen binary against real kernel objects: a namespace with a veth pair per
//! test (prefix `vsg<pid>`, a `netlab` guard that removes it), a sink on one end and a
//! generator on the other. Needs root, as CI has; without it these tests fail and say so.

use netlab::Netns;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PKTGEN: &str = env!("CARGO_BIN_EXE_pktgen");
/// How long the sink counts; the senders finish within milliseconds of starting.
const RX_SECS: &str = "3";
/// Bound on any one child: a hung pktgen fails the test instead of hanging it.
const CHILD_LIMIT: &str = "30";
/// Bound on the sink saying it is listening.
const READY_WAIT: Duration = Duration::from_secs(15);

/// Every namespace these tests make starts with this (plus the pid), so `make clean-lab`
/// can find leftovers.
const PREFIX: &str = "vsg";

/// A namespace holding veth pair `a`-`b`, both up, IPv6 off so the kernel sends no
/// chatter of its own; deleted on drop, also when the test fails.
struct Lab {
    ns: Netns,
    a: String,
    b: String,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let ns = Netns::new(PREFIX, tag).without_ipv6();
        let (a, b) = (format!("{}a", ns.name()), format!("{}b", ns.name()));
        assert!(a.len() <= 15, "interface name {a} too long");
        ns.veth(&a, &b);
        Lab { ns, a, b }
    }

    fn pktgen(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args([CHILD_LIMIT, "ip", "netns", "exec", self.ns.name(), PKTGEN]);
        c.args(args);
        c
    }

    /// Start a sink on `b`, wait until it listens, run the sender on `a`, and return
    /// (sender report, sink report).
    fn send_and_count(&self, rx_backend: &str, tx_args: &[&str]) -> (Value, Value) {
        let mut rx = self
            .pktgen(&["rx", "--iface", &self.b, "--backend", rx_backend])
            .args(["--duration", RX_SECS, "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the sink: {e}"));
        let stderr = rx.stderr.take().unwrap_or_else(|| unreachable!());
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("counting on") {
                    let _ = ready_tx.send(());
                }
                text += &line;
                text.push('\n');
            }
            text
        });
        if ready_rx.recv_timeout(READY_WAIT).is_err() {
            let _ = rx.kill();
            let _ = rx.wait();
            let err = reader.join().unwrap_or_default();
            panic!("the sink did not start listening: {err}");
        }
        let mut args = vec!["tx", "--iface", &self.a, "--json"];
        args.extend_from_slice(tx_args);
        let tx = self.pktgen(&args).output().expect("run the sender");
        let tx_report = report(&tx, "sender");
        let rx_out = rx.wait_with_output().expect("wait for the sink");
        let err = reader.join().unwrap_or_default();
        assert!(
            rx_out.status.success(),
            "sink failed ({}): {err}",
            rx_out.status
        );
        let rx_report: Value = serde_json::from_slice(&rx_out.stdout)
            .unwrap_or_else(|e| panic!("sink report is not JSON ({e}): {:?}", rx_out.stdout));
        (tx_report, rx_report)
    }
}

fn report(out: &Output, who: &str) -> Value {
    assert!(
        out.status.success(),
        "{who} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{who} report is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn assert_clean_1000(tx: &Value, rx: &Value) {
    assert_eq!(tx["frames"], 1000, "sender: {tx}");
    assert_eq!(rx["frames"], 1000, "sink: {rx}");
    assert_eq!(rx["pktgen_frames"], 1000, "sink: {rx}");
    assert_eq!(rx["loss"], 0, "sink: {rx}");
    assert_eq!(rx["duplicates"], 0, "sink: {rx}");
    assert_eq!(rx["reordered"], 0, "sink: {rx}");
    assert!(rx["latency_ns"]["p50"].as_u64().is_some(), "sink: {rx}");
}

#[test]
fn af_packet_sends_1000_and_the_sink_counts_1000() {
    let lab = Lab::new("p");
    let (tx, rx) = lab.send_and_count("af_packet", &["--count", "1000"]);
    assert_clean_1000(&tx, &rx);
}

#[test]
fn af_xdp_sends_1000_and_the_sink_counts_1000() {
    let lab = Lab::new("x");
    let (tx, rx) = lab.send_and_count("af_xdp", &["--backend", "af_xdp", "--count", "1000"]);
    assert_clean_1000(&tx, &rx);
}

#[test]
fn xdp_live_sends_1000_into_xdp_count() {
    let lab = Lab::new("l");
    let (tx, rx) = lab.send_and_count("xdp-count", &["--backend", "xdp-live", "--count", "1000"]);
    assert_eq!(tx["frames"], 1000, "sender: {tx}");
    assert_eq!(rx["frames"], 1000, "sink: {rx}");
    assert_eq!(rx["bytes"], 64000, "sink: {rx}");
}

#[test]
fn threads_flows_and_sizes_are_all_accounted() {
    let lab = Lab::new("t");
    let (tx, rx) = lab.send_and_count(
        "af_packet",
        &[
            "--count",
            "1000",
            "--threads",
            "2",
            "--size",
            "imix",
            "--src-ip",
            "172.16.0.1-172.16.0.4",
            "--dport",
            "5000-5001",
        ],
    );
    assert_eq!(tx["frames"], 1000, "sender: {tx}");
    assert_eq!(rx["frames"], 1000, "sink: {rx}");
    assert_eq!(rx["streams"], 2, "sink: {rx}");
    assert_eq!(rx["loss"], 0, "sink: {rx}");
    assert_eq!(rx["flow_count"], 4, "sink: {rx}");
    assert_eq!(tx["bytes"], rx["bytes"], "sender {tx} sink {rx}");
}

#[test]
fn vxlan_tcp_syn_at_a_paced_rate_reaches_the_sink() {
    let lab = Lab::new("v");
    let (tx, rx) = lab.send_and_count(
        "af_packet",
        &[
            "--count",
            "1000",
            "--rate",
            "20000",
            "--proto",
            "tcp-syn",
            "--size",
            "128",
            "--vxlan",
            "42",
            "--outer-src",
            "172.16.1.1",
            "--outer-dst",
            "172.16.1.2",
            "--outer-dst-mac",
            "02:00:00:00:01:02",
        ],
    );
    assert_clean_1000(&tx, &rx);
    assert_eq!(rx["flows"][0]["proto"], 6, "inner TCP flow: {rx}");
}

#[test]
fn ipv6_udp_flows_over_addresses_and_ports_reach_the_sink() {
    let lab = Lab::new("6");
    let (tx, rx) = lab.send_and_count(
        "af_xdp",
        &[
            "--count",
            "1000",
            "--size",
            "82",
            "--src-ip",
            "2001:db8:1::fffe-2001:db8:1::1:1",
            "--sport",
            "1024-1025",
            "--dst-ip",
            "2001:db8:1::99",
        ],
    );
    assert_clean_1000(&tx, &rx);
    assert_eq!(rx["flow_count"], 4, "sink: {rx}");
    let mut srcs: Vec<&str> = (0..4)
        .map(|i| rx["flows"][i]["src"].as_str().unwrap_or_default())
        .collect();
    srcs.sort();
    assert_eq!(
        srcs,
        [
            "2001:db8:1::1:0",
            "2001:db8:1::1:1",
            "2001:db8:1::fffe",
            "2001:db8:1::ffff"
        ],
        "sink: {rx}"
    );
    assert_eq!(rx["flows"][0]["dst"], "2001:db8:1::99", "sink: {rx}");
    assert_eq!(rx["bytes"], 82_000, "sink: {rx}");
}

/// tcpdump checks every UDP checksum over the IPv6 pseudo-header, at every size.
#[test]
fn ipv6_pcap_frames_have_good_udp_checksums() {
    let dir = std::env::temp_dir().join(format!("vsg{}-pcap6", std::process::id()));
    std::fs::create_dir_all(&dir).expect("make a temp dir");
    let path = dir.join("out6.pcap");
    let out = Command::new(PKTGEN)
        .args([
            "tx",
            "--count",
            "300",
            "--size",
            "62-1500",
            "--flows",
            "16",
            "--sport",
            "1-65535",
            "--dst-ip",
            "2001:db8:2::2",
            "--json",
            "--pcap",
        ])
        .arg(&path)
        .output()
        .expect("run pktgen");
    let tx = report(&out, "pcap writer");
    assert_eq!(tx["frames"], 300);
    let lines = netlab::pcap_lines(&path, &["-vv"]);
    let _ = std::fs::remove_dir_all(&dir);
    let joined = lines.join("\n");
    let frames: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("2001:db8::1."))
        .collect();
    assert_eq!(frames.len(), 300, "{joined}");
    let good = lines.iter().filter(|l| l.contains("[udp sum ok]")).count();
    assert_eq!(good, 300, "every checksum verifies: {joined}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("2001:db8::1.1 > 2001:db8:2::2.9")),
        "defaults: 2001:db8::1 as the source: {joined}"
    );
}

#[test]
fn pcap_output_reads_back_with_the_right_frame_count() {
    let dir = std::env::temp_dir().join(format!("vsg{}-pcap", std::process::id()));
    std::fs::create_dir_all(&dir).expect("make a temp dir");
    let path = dir.join("out.pcap");
    let out = Command::new(PKTGEN)
        .args([
            "tx", "--count", "250", "--size", "64-1500", "--flows", "8", "--json", "--pcap",
        ])
        .arg(&path)
        .output()
        .expect("run pktgen");
    let tx = report(&out, "pcap writer");
    assert_eq!(tx["frames"], 250);
    let n = netlab::pcap_lines(&path, &[]).len();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(n, 250);
}

#[test]
fn usage_errors_exit_2_and_runtime_errors_exit_1() {
    let code = |args: &[&str]| {
        let out = Command::new(PKTGEN)
            .args(args)
            .output()
            .expect("run pktgen");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for bad in [
        &["tx"][..],
        &["tx", "--iface", "x", "--rate", "fast"],
        &["tx", "--iface", "x", "--size", "20"],
        &["tx", "--iface", "x", "--count", "5", "--duration", "1"],
        &["tx", "--pcap", "/tmp/never.pcap"],
        &[
            "tx",
            "--iface",
            "x",
            "--backend",
            "af_xdp",
            "--threads",
            "2",
        ],
        &["tx", "--iface", "x", "--vxlan", "5"],
        &[
            "tx",
            "--iface",
            "x",
            "--size",
            "64",
            "--proto",
            "tcp-syn",
            "--vxlan",
            "5",
            "--outer-src",
            "172.16.0.1",
            "--outer-dst",
            "172.16.0.2",
            "--outer-dst-mac",
            "02:00:00:00:00:09",
        ],
        &[
            "tx",
            "--iface",
            "x",
            "--src-ip",
            "172.16.0.1",
            "--dst-ip",
            "2001:db8::2",
        ],
        &["tx", "--iface", "x", "--src-ip", "172.16.0.1-2001:db8::2"],
        &[
            "tx",
            "--iface",
            "x",
            "--dst-ip",
            "2001:db8::2",
            "--size",
            "60",
        ],
        &["rx"],
        &["bogus"],
    ] {
        let (c, err) = code(bad);
        assert_eq!(c, Some(2), "{bad:?} should be a usage error: {err}");
        assert!(!err.is_empty(), "{bad:?} says nothing");
    }
    let (c, err) = code(&["rx", "--iface", "vsg-missing0", "--duration", "1"]);
    assert_eq!(c, Some(1), "missing interface is a runtime error: {err}");
    assert!(
        err.contains("vsg-missing0"),
        "the error names the interface: {err}"
    );
}

#[test]
fn tap_backend_sends_into_its_own_device() {
    let lab = Lab::new("d");
    let tap = format!("{}t", lab.ns.name());
    // The TAP exists only while the sender runs: send paced for a while, count a part.
    let tx = lab
        .pktgen(&["tx", "--iface", &tap, "--backend", "tap", "--rate", "2000"])
        .args(["--duration", "4", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the TAP sender");
    let appeared = netlab::eventually(Duration::from_secs(2), || {
        Command::new("ip")
            .args(["-n", lab.ns.name(), "link", "show", &tap, "up"])
            .output()
            .is_ok_and(|o| o.status.success() && !o.stdout.is_empty())
    });
    assert!(appeared, "the sender did not create and bring up {tap}");
    let rx = lab
        .pktgen(&["rx", "--iface", &tap, "--duration", "1", "--json"])
        .output()
        .expect("run the sink");
    let rx = report(&rx, "sink");
    let tx = report(
        &tx.wait_with_output().expect("wait for the sender"),
        "sender",
    );
    assert!(tx["frames"].as_u64().unwrap_or(0) > 0, "sender: {tx}");
    assert!(rx["pktgen_frames"].as_u64().unwrap_or(0) > 0, "sink: {rx}");
    assert_eq!(rx["loss"], 0, "sink: {rx}");
}
