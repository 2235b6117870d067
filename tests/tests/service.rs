//! vswitchd as a service: the configuration file under the command line, SIGHUP
//! reloading what can change live, READY=1 to a NOTIFY_SOCKET the test owns, and the
//! metrics address (`/metrics` rising with traffic and clean under `promtool check
//! metrics`, 1000 scrapes in bounded memory, idle clients stalling nothing).

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{ns_exec, ping, wait_for, Daemon, Lab};

const METRICS: &str = "127.0.0.1:9477";

/// GET `path` on the daemon's metrics address (inside its namespace): status, body.
fn get(d: &Daemon, addr: &str, path: &str) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    let o = ns_exec(
        &d.host_ns,
        &["curl", "-s", "-m", "5", "-w", "\n%{http_code}", &url],
        Duration::from_secs(10),
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A sample's value: the line starting with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn metrics_rise_with_pings_and_promtool_finds_no_problem() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &["--metrics-addr", METRICS]);
    let net = d.network(&lab, "net", &["--subnet", "10.61.0.0/24"]);
    let [(a, _), (_b, ip_b)] = d.sandboxes(&lab, &net, &[], ["a", "b"]);
    assert!(ping(&a, &ip_b, 1));
    let series = "vswitch_port_rx_packets_total{port=";
    let of_a = |text: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series) && l.contains(&format!("sandbox=\"{a}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no rx counter of {a}'s port in:\n{text}"))
    };
    let (code, before) = get(&d, METRICS, "/metrics");
    assert_eq!(code, 200, "{before}");
    const PINGS: u32 = 20;
    let o = ns_exec(
        &a,
        &["ping", "-q", "-c", &PINGS.to_string(), "-i", "0.05", &ip_b],
        Duration::from_secs(20),
    );
    assert!(o.status.success());
    let (_, after) = get(&d, METRICS, "/metrics");
    let rose = of_a(&after) - of_a(&before);
    assert!(
        rose >= PINGS as f64,
        "{a}'s port received {rose} more, {PINGS} pings sent"
    );
    let created = sample(
        &after,
        "vswitch_control_requests_total{method=\"sandbox.create\",result=\"ok\"}",
    );
    assert_eq!(created, Some(2.0), "{after}");
    assert!(after.contains(&format!("vswitch_fdb_entries{{network=\"{net}\"}}")));

    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian prometheus: make deps)");
    use std::io::Write;
    lint.stdin
        .take()
        .unwrap()
        .write_all(after.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );

    assert_eq!(get(&d, METRICS, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(&d, METRICS, "/nope").0, 404);
}

#[test]
fn a_thousand_scrapes_in_bounded_memory_and_idle_clients_stall_nothing() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &["--metrics-addr", METRICS]);
    let net = d.network(&lab, "net", &["--subnet", "10.62.0.0/24"]);
    d.sandboxes(&lab, &net, &[], ["a", "b"]);
    // Clients that connect and never send.
    let code = "import socket,time\ns=[socket.create_connection(('127.0.0.1',9477)) for _ in range(8)]\ntime.sleep(60)";
    let mut holders = Command::new("ip")
        .args(["netns", "exec", &d.host_ns, "/usr/bin/python3", "-c", code])
        .spawn()
        .expect("python3");
    std::thread::sleep(Duration::from_millis(500));
    // Scrapes and the control socket go on meanwhile.
    let t = Instant::now();
    assert_eq!(get(&d, METRICS, "/healthz").0, 200);
    d.ok(&["network", "ls"]);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stalled {:?}",
        t.elapsed()
    );

    let scrape = |n: u32| {
        let code = format!(
            "import http.client\nfor i in range({n}):\n c=http.client.HTTPConnection('127.0.0.1',9477,timeout=5)\n c.request('GET','/metrics')\n r=c.getresponse()\n assert r.status==200, r.status\n r.read()\n c.close()\nprint('done')"
        );
        let o = ns_exec(
            &d.host_ns,
            &["/usr/bin/python3", "-c", &code],
            Duration::from_secs(300),
        );
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("done"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    scrape(100);
    let warm = rss_kib(d.pid());
    scrape(900);
    let after = rss_kib(d.pid());
    assert!(
        after < warm + 8 * 1024,
        "RSS {warm} KiB after 100 scrapes, {after} KiB after 1000"
    );
    let _ = holders.kill();
    let _ = holders.wait();
}

#[test]
fn a_configuration_file_under_the_command_line() {
    let lab = Lab::new();
    let conf = lab.dir.join("vswitchd.toml");
    // From the file: no host port. Overridden by a flag: the metrics address.
    std::fs::write(
        &conf,
        "host-port = \"none\"\nmetrics-addr = \"127.0.0.1:9478\"\nfdb_age = 120\n",
    )
    .unwrap();
    let c = conf.to_string_lossy().into_owned();
    let d = Daemon::start(&lab, &["--config", &c, "--metrics-addr", METRICS]);
    let links = e2e::run_out(&["ip", "-n", &d.host_ns, "-o", "link"]);
    assert!(
        !links.contains("vswitch0"),
        "the file's host-port = none: {links}"
    );
    assert_eq!(get(&d, METRICS, "/healthz").0, 200, "the flag's address");
    assert_eq!(get(&d, "127.0.0.1:9478", "/healthz").0, 0, "not the file's");
    drop(d);

    // A key that is no flag, a value the flag refuses: refused, naming it.
    std::fs::write(&conf, "bogus-key = 1\n").unwrap();
    let e = e2e::daemon_refuses(&lab, &["--config", &c]);
    assert!(e.contains("bogus-key") && e.contains(&c), "{e}");
    std::fs::write(&conf, "fdb-age = \"soon\"\n").unwrap();
    let e = e2e::daemon_refuses(&lab, &["--config", &c]);
    assert!(e.contains("fdb-age") && e.contains(&c), "{e}");
}

#[test]
fn sighup_reloads_what_can_change_live() {
    let lab = Lab::new();
    let conf = lab.dir.join("vswitchd.toml");
    std::fs::write(&conf, "fdb-age = 300\nflood-rate = 1000\n").unwrap();
    let c = conf.to_string_lossy().into_owned();
    let d = Daemon::start(&lab, &["--config", &c]);
    let net = d.network(&lab, "net", &["--subnet", "10.63.0.0/24"]);
    let [(a, _), (_b, ip_b)] = d.sandboxes(&lab, &net, &[], ["a", "b"]);
    assert!(ping(&a, &ip_b, 1));
    let learned = || {
        d.json(&["fdb", &net])
            .as_array()
            .map_or(0, |v| v.iter().filter(|e| e["static"] != true).count())
    };
    assert_eq!(learned(), 2);
    let hup = || {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) };
    };
    // A broken file: nothing changes.
    std::fs::write(&conf, "fdb-age = ").unwrap();
    hup();
    wait_for("the refused reload logged", Duration::from_secs(5), || {
        d.log_text().contains("was not reloaded")
    });
    // fdb-age live (learned MACs go after 1 s), flood-rate refused (a restart).
    std::fs::write(&conf, "fdb-age = 1\nflood-rate = 5\n").unwrap();
    hup();
    wait_for("the reload logged", Duration::from_secs(5), || {
        let log = d.log_text();
        log.contains("SIGHUP: reloaded") && log.contains("takes a restart")
    });
    let log = d.log_text();
    assert!(
        log.contains("key=\"fdb-age\"") || log.contains("key=fdb-age"),
        "{log}"
    );
    assert!(log.contains("flood-rate"), "{log}");
    wait_for("learned MACs to age out", Duration::from_secs(15), || {
        learned() == 0
    });
    // The daemon still serves.
    d.ok(&["network", "ls"]);
}

#[test]
fn ready_is_notified_once_the_socket_serves() {
    let lab = Lab::new();
    let path = lab.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let p = path.to_string_lossy().into_owned();
    let mut d = Daemon::start_env(&lab, &[], &[("NOTIFY_SOCKET", &p)]);
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");
    d.ok(&["network", "ls"]);
    d.stop(false);
    let n = sock.recv(&mut buf).expect("the stop notification");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg:?}");
}
