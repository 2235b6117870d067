//! vswitch-cni, run as a CNI runtime runs it (environment, configuration on stdin,
//! result or error on stdout): ADD makes the container's interface in CNI_NETNS with
//! its address, MAC and default route; two containers ping; CHECK passes; DEL is
//! idempotent and frees the address; GC removes what the runtime no longer lists; bad
//! input and a daemon that is down get CNI errors, not hangs.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{bin, ping, Daemon, Lab};
use serde_json::{json, Value};

const SUBNET: &str = "10.89.0.0/24";

/// Run the plugin: (exit success, stdout as JSON).
fn cni(cmd: &str, container: &str, netns: &str, args: &str, config: &Value) -> (bool, Value) {
    let mut child = Command::new(bin("vswitch-cni"))
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", args)
        .env("CNI_PATH", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("vswitch-cni");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(config.to_string().as_bytes())
        .expect("write config");
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stdout);
    (
        out.status.success(),
        serde_json::from_str(text.trim()).unwrap_or(Value::Null),
    )
}

fn config(d: &Daemon, net: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": net,
        "type": "vswitch-cni",
        "subnet": SUBNET,
        "socket": d.socket,
    })
}

fn container_ns(lab: &Lab, tag: &str) -> (String, String) {
    let ns = e2e::named_ns(lab, tag);
    (format!("/run/netns/{ns}"), ns)
}

#[test]
fn cni_add_check_del_gc() {
    let lab = Lab::new();
    let d = Daemon::start(&lab, &[]);
    let net = lab.name("cn");
    let cfg = config(&d, &net);
    let (p1, ns1) = container_ns(&lab, "k1");
    let (p2, ns2) = container_ns(&lab, "k2");

    let (ok, r1) = cni("ADD", "c1", &p1, "IgnoreUnknown=1;K8S_POD_NAME=web", &cfg);
    assert!(ok, "{r1}");
    assert_eq!(r1["cniVersion"], "1.0.0");
    assert_eq!(r1["interfaces"][0]["name"], "eth0");
    assert_eq!(r1["interfaces"][0]["sandbox"], p1.as_str());
    assert_eq!(r1["ips"][0]["address"], "10.89.0.2/24", "{r1}");
    assert_eq!(r1["ips"][0]["gateway"], "10.89.0.1");
    assert_eq!(r1["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(r1["dns"]["nameservers"][0], "10.89.0.1");
    // The network was made on first use, from the configuration's subnet.
    let v = d.json(&["network", "inspect", &net]);
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], SUBNET);
    let (ok, r2) = cni("ADD", "c2", &p2, "", &cfg);
    assert!(ok, "{r2}");
    assert_eq!(r2["ips"][0]["address"], "10.89.0.3/24");
    // In the namespaces: the MAC the result names, the address, the default route.
    let link = e2e::run_out(&["ip", "-n", &ns1, "-o", "link", "show", "eth0"]);
    let mac1 = r1["interfaces"][0]["mac"].as_str().unwrap_or("?");
    assert!(link.contains(mac1), "{link}");
    let route = e2e::run_out(&["ip", "-n", &ns1, "route", "show", "default"]);
    assert!(route.contains("via 10.89.0.1"), "{route}");
    assert!(ping(&ns1, "10.89.0.3", 2), "c1 -> c2");
    assert!(ping(&ns2, "10.89.0.1", 1), "c2 -> the gateway");
    // Its name (K8S_POD_NAME) from the embedded DNS.
    let dig = e2e::run_out(&[
        "ip",
        "netns",
        "exec",
        &ns2,
        "dig",
        "+short",
        "+time=2",
        "@10.89.0.1",
        "web",
    ]);
    assert_eq!(dig.trim(), "10.89.0.2");

    assert!(cni("CHECK", "c1", &p1, "", &cfg).0);
    // CHECK notices what changed behind vswitch's back.
    e2e::run_ok(&["ip", "-n", &ns2, "addr", "flush", "dev", "eth0"]);
    let (ok, e) = cni("CHECK", "c2", &p2, "", &cfg);
    assert!(
        !ok && e["msg"].as_str().unwrap_or("").contains("10.89.0.3"),
        "{e}"
    );

    // ADD again: refused; nothing changed.
    let (ok, e) = cni("ADD", "c1", &p1, "", &cfg);
    assert!(!ok && e["code"] == 100, "{e}");
    // DEL twice: both succeed, the address is free again.
    assert!(cni("DEL", "c1", &p1, "", &cfg).0);
    assert!(cni("DEL", "c1", &p1, "", &cfg).0);
    assert!(!e2e::run_out(&["ip", "-n", &ns1, "-o", "link"]).contains("eth0"));
    let (ok, r3) = cni("ADD", "c3", &p1, "", &cfg);
    assert!(ok, "{r3}");
    assert_eq!(r3["ips"][0]["address"], "10.89.0.2/24", "freed by DEL");

    // GC: the runtime lists c3 only; c2 goes.
    let mut gc = cfg.clone();
    gc["cniVersion"] = "1.1.0".into();
    gc["cni.dev/valid-attachments"] = json!([{ "containerID": "c3", "ifname": "eth0" }]);
    assert!(cni("GC", "", "", "", &gc).0);
    let sandboxes = d.ok(&["sandbox", "ls"]);
    assert!(
        sandboxes.contains("cni-c3-eth0") && !sandboxes.contains("cni-c2-eth0"),
        "{sandboxes}"
    );
    assert!(cni("STATUS", "", "", "", &gc).0);
}

#[test]
fn cni_bad_input_and_a_daemon_that_is_down() {
    let lab = Lab::new();
    let mut d = Daemon::start(&lab, &[]);
    let net = lab.name("cb");
    let cfg = config(&d, &net);
    let (p1, ns1) = container_ns(&lab, "k1");

    // Malformed configuration, unsupported version, missing environment.
    let mut child = Command::new(bin("vswitch-cni"))
        .env("CNI_COMMAND", "ADD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("vswitch-cni");
    child.stdin.take().unwrap().write_all(b"{not json").unwrap();
    let out = child.wait_with_output().unwrap();
    let e: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(!out.status.success() && e["code"] == 6, "{e}");
    let mut old = cfg.clone();
    old["cniVersion"] = "0.2.0".into();
    let (ok, e) = cni("ADD", "c1", &p1, "", &old);
    assert!(!ok && e["code"] == 1, "{e}");
    let (ok, e) = cni("ADD", "c1", "", "", &cfg);
    assert!(!ok && e["code"] == 4, "{e}");

    // An unknown network without a subnet to make it from; an address outside the
    // subnet; a namespace that is not one: refused, nothing left behind.
    let mut unknown = cfg.clone();
    unknown.as_object_mut().unwrap().remove("subnet");
    let (ok, e) = cni("ADD", "c1", &p1, "", &unknown);
    assert!(
        !ok && e["msg"].as_str().unwrap_or("").contains("subnet"),
        "{e}"
    );
    let (ok, e) = cni("ADD", "c1", &p1, "IP=10.1.2.3", &cfg);
    assert!(
        !ok && e["msg"].as_str().unwrap_or("").contains("10.1.2.3"),
        "{e}"
    );
    let (ok, e) = cni("ADD", "c1", "/etc/hostname", "", &cfg);
    assert!(
        !ok && e["msg"].as_str().unwrap_or("").contains("namespace"),
        "{e}"
    );
    assert!(
        !d.ok(&["sandbox", "ls"]).contains("cni-"),
        "nothing half-made"
    );
    assert!(!e2e::run_out(&["ip", "-n", &ns1, "-o", "link"]).contains("eth0"));

    // The daemon down: a CNI error at once ("try again later"), not a hang.
    d.stop(false);
    let t = Instant::now();
    let (ok, e) = cni("ADD", "c1", &p1, "", &cfg);
    assert!(!ok && e["code"] == 11, "{e}");
    assert!(t.elapsed() < Duration::from_secs(5));
    let (ok, e) = cni("STATUS", "", "", "", &cfg);
    assert!(!ok && e["code"] == 50, "{e}");
}

/// A real CNI runtime: podman 4.3 on its CNI backend, a conflist selecting
/// vswitch-cni, containers run from a local root filesystem.
#[test]
fn podman_containers_through_vswitch_cni() {
    use e2e::podman::{Podman, PAGE};
    let lab = Lab::new();
    let out = e2e::Outside::new(&lab);
    let d = out.daemon(&lab, &[]);
    let net = lab.name("pn");
    let plugins = lab.dir.join("cni-bin");
    std::fs::create_dir_all(&plugins).expect("plugin dir");
    std::fs::copy(bin("vswitch-cni"), plugins.join("vswitch-cni")).expect("copy plugin");
    let plugin_conf = json!({
        "type": "vswitch-cni",
        "subnet": "10.90.0.0/24",
        "socket": d.socket,
        "capabilities": { "portMappings": true, "ips": true },
    });
    let conflist = json!({ "cniVersion": "1.0.0", "name": net, "plugins": [plugin_conf] });
    let ns = e2e::named_ns(&lab, "pm");
    let pm = Podman::new(
        &lab,
        &ns,
        &net,
        &conflist.to_string(),
        &plugins.to_string_lossy(),
    );

    let (p1, p2) = (lab.name("p1"), lab.name("p2"));
    let id1 = pm.run(&p1, &[], &["sleep", "600"]);
    pm.run(
        &p2,
        &["-p", "8080:80"],
        &["httpd", "-f", "-p", "80", "-h", "/www"],
    );
    let field =
        |c: &str, f: &str| pm.ok(&["inspect", "-f", &format!("{{{{.NetworkSettings.{f}}}}}"), c]);
    let (ip1, ip2) = (field(&p1, "IPAddress"), field(&p2, "IPAddress"));
    assert!(ip1.starts_with("10.90.0.") && ip2.starts_with("10.90.0.") && ip1 != ip2);
    pm.ok(&["exec", &p1, "ping", "-c", "2", "-W", "2", &ip2]);
    // Each attachment an external sandbox of vswitch's; its MAC in the fdb.
    let sandboxes = d.ok(&["sandbox", "ls"]);
    assert!(
        sandboxes.contains(&format!("cni-{}-eth0", &id1[..12])),
        "{sandboxes}"
    );
    assert!(d.ok(&["fdb", &net]).contains(&field(&p1, "MacAddress")));
    // -p through vswitch's uplink, from outside.
    let url = format!("http://{}:8080/", out.uplink_ip);
    e2e::wait_for(
        "curl through the published port",
        Duration::from_secs(15),
        || {
            let o = e2e::ns_exec(
                &out.ns,
                &["curl", "-s", "-m", "3", &url],
                Duration::from_secs(5),
            );
            String::from_utf8_lossy(&o.stdout).contains(PAGE)
        },
    );

    // CHECK, as a runtime would run it, for podman's attachment.
    let netns = field(&p1, "SandboxKey");
    let conf =
        json!({ "cniVersion": "1.0.0", "name": net, "type": "vswitch-cni", "socket": d.socket });
    let (ok, e) = cni("CHECK", &id1, &netns, "", &conf);
    assert!(ok, "{e}");
    // DEL by podman, then once more: both succeed; the address is free again.
    pm.ok(&["rm", "-f", "-t", "0", &p1]);
    assert!(cni("DEL", &id1, &netns, "", &conf).0, "a second DEL");
    assert!(!d.ok(&["sandbox", "ls"]).contains(&id1[..12]));
    let p3 = lab.name("p3");
    pm.run(&p3, &[], &["sleep", "600"]);
    assert_eq!(
        field(&p3, "IPAddress"),
        ip1,
        "the freed address, lowest first"
    );
    pm.ok(&["rm", "-af", "-t", "0"]);
    assert!(
        !d.ok(&["sandbox", "ls"]).contains("cni-"),
        "every DEL reached vswitch"
    );
}
