//! Docker on vswitch: a real dockerd (Debian's docker.io 20.10, private roots, no
//! iptables, no docker0) using vswitchd as a remote network driver
//! (`vswitchd --docker-plugin`). Containers on a `docker network create -d PLUGIN`
//! network ping each other by name (Docker's own resolver) over vswitch's switch,
//! `-p` is reached from outside through vswitch's uplink, both daemons restart
//! without losing the network, and the plugin socket refuses bad input cleanly.

use std::time::Duration;

use e2e::docker::Dockerd;
use e2e::{wait_for, Daemon, Lab, Outside};
use serde_json::Value;

const SUBNET: &str = "172.29.0.0/24";
const PAGE: &str = "hello from a docker container on vswitch";

/// A Docker call straight to the plugin socket: (HTTP status, JSON body).
fn plugin(sock: &str, method: &str, body: &str) -> (u16, Value) {
    let out = e2e::run_out(&[
        "curl",
        "-s",
        "--max-time",
        "10",
        "--unix-socket",
        sock,
        "-X",
        "POST",
        "-d",
        body,
        "-w",
        "\n%{http_code}",
        &format!("http://plugin/{method}"),
    ]);
    let (json, code) = out.trim().rsplit_once('\n').unwrap_or(("", out.trim()));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

fn networks(d: &Daemon) -> Vec<String> {
    d.json(&["network", "ls"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["Name"].as_str().map(str::to_string))
        .collect()
}

fn docker_sandboxes(d: &Daemon) -> usize {
    d.json(&["sandbox", "ls"])
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["Name"].as_str().is_some_and(|n| n.starts_with("docker-")))
        .count()
}

fn container_field(docker: &Dockerd, c: &str, field: &str) -> String {
    docker.ok(&[
        "inspect",
        "-f",
        &format!("{{{{range .NetworkSettings.Networks}}}}{{{{.{field}}}}}{{{{end}}}}"),
        c,
    ])
}

#[test]
fn docker_containers_on_a_vswitch_network() {
    let lab = Lab::new();
    let out = Outside::new(&lab);
    let driver = format!("vs{}", lab.prefix);
    let sock = format!("/run/docker/plugins/{driver}.sock");
    let mut d = out.daemon(&lab, &["--docker-plugin", &sock]);
    let mut docker = Dockerd::start(&lab, &d.host_ns);
    docker.import_busybox("vsbox", PAGE);

    let net = lab.name("dn");
    let name_opt = format!("vswitch.name={net}");
    let id = docker.ok(&[
        "network", "create", "-d", &driver, "--subnet", SUBNET, "-o", &name_opt, &net,
    ]);
    // vswitch has it, under Docker's id, labelled as Docker's.
    let v = d.json(&["network", "inspect", &net]);
    assert_eq!(v[0]["Id"], id.as_str(), "{v}");
    assert_eq!(v[0]["Labels"]["vswitch.owner"], "docker", "{v}");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], SUBNET, "{v}");

    // Two containers: by name (Docker's resolver) and by address, over the switch.
    let (ca, cb) = (lab.name("ca"), lab.name("cb"));
    for c in [&ca, &cb] {
        docker.ok(&[
            "run",
            "-d",
            "--network",
            &net,
            "--name",
            c,
            "vsbox",
            "sleep",
            "600",
        ]);
    }
    let ip_b = container_field(&docker, &cb, "IPAddress");
    assert!(ip_b.starts_with("172.29.0."), "{ip_b}");
    docker.ok(&["exec", &ca, "ping", "-c", "2", "-W", "2", &cb]);
    docker.ok(&["exec", &ca, "ping", "-c", "1", "-W", "2", &ip_b]);
    let fdb = d.ok(&["fdb", &net]);
    for c in [&ca, &cb] {
        let mac = container_field(&docker, c, "MacAddress");
        assert!(
            !mac.is_empty() && fdb.contains(&mac),
            "{c}'s {mac} not in:\n{fdb}"
        );
    }

    // --ip and --mac-address on run, network connect/disconnect of a running one.
    let cm = lab.name("cm");
    docker.ok(&[
        "run",
        "-d",
        "--network",
        &net,
        "--ip",
        "172.29.0.77",
        "--mac-address",
        "02:42:ac:1d:00:99",
        "--name",
        &cm,
        "vsbox",
        "sleep",
        "600",
    ]);
    let fdb = |n: &str| d.ok(&["fdb", n]);
    docker.ok(&["exec", &ca, "ping", "-c", "1", "-W", "2", "172.29.0.77"]);
    assert!(fdb(&net).contains("02:42:ac:1d:00:99"), "{}", fdb(&net));
    let net2 = lab.name("dn2");
    let name2 = format!("vswitch.name={net2}");
    docker.ok(&[
        "network",
        "create",
        "-d",
        &driver,
        "--subnet",
        "172.28.5.0/24",
        "-o",
        &name2,
        &net2,
    ]);
    docker.ok(&["network", "connect", "--ip", "172.28.5.50", &net2, &cm]);
    let addrs = docker.ok(&["exec", &cm, "ip", "-o", "addr"]);
    assert!(addrs.contains("172.28.5.50/24"), "{addrs}");
    docker.ok(&["exec", &cm, "ping", "-c", "1", "-W", "2", "172.28.5.1"]);
    assert_eq!(
        d.json(&["network", "inspect", &net2])[0]["Containers"]
            .as_object()
            .map(|c| c.len()),
        Some(1)
    );
    docker.ok(&["network", "disconnect", &net2, &cm]);
    assert_eq!(
        d.json(&["network", "inspect", &net2])[0]["Containers"]
            .as_object()
            .map_or(0, |c| c.len()),
        0
    );
    docker.ok(&["network", "rm", &net2]);
    docker.ok(&["rm", "-f", &cm]);

    // `docker run -p`: published through vswitch's uplink, reached from outside.
    let web = lab.name("web");
    docker.ok(&[
        "run",
        "-d",
        "--network",
        &net,
        "-p",
        "8080:80",
        "--name",
        &web,
        "vsbox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let url = format!("http://{}:8080/", out.uplink_ip);
    let fetch = || {
        let o = e2e::ns_exec(
            &out.ns,
            &["curl", "-s", "-m", "3", &url],
            Duration::from_secs(5),
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    wait_for(
        "curl through the published port",
        Duration::from_secs(15),
        || fetch().contains(PAGE),
    );
    // Removed with the container.
    docker.ok(&["rm", "-f", &web]);
    wait_for("the published port to go", Duration::from_secs(10), || {
        !fetch().contains(PAGE)
    });

    // vswitchd restarts: the network and the containers' ports come back.
    d.restart(false);
    assert!(networks(&d).contains(&net));
    wait_for(
        "the containers to reach each other again",
        Duration::from_secs(15),
        || {
            docker
                .docker(&["exec", &ca, "ping", "-c", "1", "-W", "1", &cb])
                .status
                .success()
        },
    );

    // dockerd restarts (its containers removed first): Docker and vswitch both still
    // have the network, and a new container joins it.
    docker.restart();
    let ls = docker.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(ls.lines().any(|l| l == net), "{ls}");
    assert!(networks(&d).contains(&net));
    assert_eq!(
        docker_sandboxes(&d),
        0,
        "the removed containers' endpoints are gone"
    );
    let cc = lab.name("cc");
    docker.ok(&[
        "run",
        "-d",
        "--network",
        &net,
        "--name",
        &cc,
        "vsbox",
        "sleep",
        "600",
    ]);
    docker.ok(&["exec", &cc, "ping", "-c", "1", "-W", "2", "172.29.0.1"]);

    // Docker asking vswitch's IPAM (--ipam-driver): a pool vswitch chooses, and a
    // vswitch sandbox on the same network gets the next address, not a container's.
    let n3 = lab.name("dn3");
    let name3 = format!("vswitch.name={n3}");
    docker.ok(&[
        "network",
        "create",
        "-d",
        &driver,
        "--ipam-driver",
        &driver,
        "-o",
        &name3,
        &n3,
    ]);
    let cd = lab.name("cd");
    docker.ok(&[
        "run",
        "-d",
        "--network",
        &n3,
        "--name",
        &cd,
        "vsbox",
        "sleep",
        "600",
    ]);
    let ip_d = container_field(&docker, &cd, "IPAddress");
    let s3 = lab.name("s3");
    let ip_s = d.sandbox(&s3, &n3, &[]);
    assert_ne!(ip_d, ip_s, "one address handed out twice");
    assert!(e2e::ping(&s3, &ip_d, 1), "{s3} -> {cd} at {ip_d}");
    d.ok(&["sandbox", "rm", &s3]);
    docker.ok(&["rm", "-f", &cd]);
    docker.ok(&["network", "rm", &n3]);
    assert!(!networks(&d).contains(&n3));

    // docker network rm: gone from vswitch too.
    docker.ok(&["rm", "-f", &cc]);
    docker.ok(&["network", "rm", &net]);
    assert!(!networks(&d).contains(&net));
    assert_eq!(docker_sandboxes(&d), 0);
}

/// What dockerd never sends, sent anyway: clear errors, nothing half-made.
#[test]
fn the_plugin_socket_refuses_bad_calls_cleanly() {
    let lab = Lab::new();
    let driver = format!("vs{}", lab.prefix);
    let sock = format!("/run/docker/plugins/{driver}.sock");
    // An uplink, for the overlay network below.
    let out = Outside::new(&lab);
    let d = out.daemon(&lab, &["--docker-plugin", &sock]);
    let before = networks(&d);

    let (code, v) = plugin(&sock, "Plugin.Activate", "");
    assert_eq!(
        (code, &v["Implements"][0]),
        (200, &Value::from("NetworkDriver"))
    );
    let (code, v) = plugin(&sock, "NetworkDriver.GetCapabilities", "");
    assert_eq!((code, &v["Scope"]), (200, &Value::from("local")));
    let (code, v) = plugin(&sock, "NetworkDriver.Nonsense", "{}");
    assert_eq!(code, 404, "{v}");
    let (code, v) = plugin(&sock, "NetworkDriver.CreateNetwork", "{not json");
    assert_eq!(code, 500);
    assert!(
        v["Err"].as_str().unwrap_or("").contains("malformed JSON"),
        "{v}"
    );
    let (code, v) = plugin(
        &sock,
        "NetworkDriver.CreateNetwork",
        r#"{"NetworkID":"short","IPv4Data":[{"Pool":"172.30.0.0/24","Gateway":"172.30.0.1/24"}]}"#,
    );
    assert_eq!(code, 500);
    assert!(v["Err"].as_str().unwrap_or("").contains("NetworkID"), "{v}");
    assert_eq!(networks(&d), before, "nothing made");

    let net_id = "ab".repeat(32);
    let ep_id = "cd".repeat(32);
    let create = format!(
        r#"{{"NetworkID":"{net_id}","Options":{{"com.docker.network.generic":{{}}}},"IPv4Data":[{{"Pool":"172.30.0.0/24","Gateway":"172.30.0.1/24","AuxAddresses":{{"router":"172.30.0.2/24"}}}}]}}"#
    );
    assert_eq!(plugin(&sock, "NetworkDriver.CreateNetwork", &create).0, 200);
    let endpoint = |net: &str, addr: &str| {
        format!(
            r#"{{"NetworkID":"{net}","EndpointID":"{ep_id}","Interface":{{"Address":"{addr}"}}}}"#
        )
    };
    // An unknown network, an address outside the subnet: refused, nothing left.
    let (code, v) = plugin(
        &sock,
        "NetworkDriver.CreateEndpoint",
        &endpoint(&"ef".repeat(32), "172.30.0.5/24"),
    );
    assert_eq!(code, 500);
    assert!(
        v["Err"]
            .as_str()
            .unwrap_or("")
            .contains("not a vswitch network"),
        "{v}"
    );
    let (code, v) = plugin(
        &sock,
        "NetworkDriver.CreateEndpoint",
        &endpoint(&net_id, "10.9.9.9/24"),
    );
    assert_eq!(code, 500);
    assert!(v["Err"].as_str().unwrap_or("").contains("10.9.9.9"), "{v}");
    assert_eq!(docker_sandboxes(&d), 0, "nothing half-made");
    let host_links = e2e::run_out(&["ip", "-n", &d.host_ns, "-o", "link"]);
    assert!(!host_links.contains("vsc"), "{host_links}");

    // A good one; its MAC comes back (Docker gave none), its address does not.
    let (code, v) = plugin(
        &sock,
        "NetworkDriver.CreateEndpoint",
        &endpoint(&net_id, "172.30.0.5/24"),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["Interface"]["MacAddress"], "02:42:ac:1e:00:05", "{v}");
    assert!(v["Interface"].get("Address").is_none(), "{v}");
    let join = |key: &str| {
        format!(r#"{{"NetworkID":"{net_id}","EndpointID":"{ep_id}","SandboxKey":"{key}"}}"#)
    };
    let (code, v) = plugin(
        &sock,
        "NetworkDriver.Join",
        &join("/var/run/docker/netns/1"),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["Gateway"], "172.30.0.1", "{v}");
    let src = v["InterfaceName"]["SrcName"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        e2e::run_out(&["ip", "-n", &d.host_ns, "link", "show", &src]).contains(&src),
        "the link Docker is to move is there"
    );
    // A second Join of the endpoint into another sandbox.
    let (code, v) = plugin(
        &sock,
        "NetworkDriver.Join",
        &join("/var/run/docker/netns/2"),
    );
    assert_eq!(code, 500);
    assert!(v["Err"].as_str().unwrap_or("").contains("joined"), "{v}");
    let (code, _) = plugin(
        &sock,
        "NetworkDriver.EndpointOperInfo",
        &endpoint(&net_id, ""),
    );
    assert_eq!(code, 200);

    // --aux-address: not handed out by vswitch either (also after a restart).
    let sb = lab.name("sx");
    let net_name = format!("docker-{}", &net_id[..12]);
    assert_eq!(d.sandbox(&sb, &net_name, &[]), "172.30.0.3");
    d.ok(&["sandbox", "rm", &sb]);

    // Deleting twice is no error; the network goes with its last endpoint's link.
    let del = format!(r#"{{"NetworkID":"{net_id}","EndpointID":"{ep_id}"}}"#);
    assert_eq!(plugin(&sock, "NetworkDriver.Leave", &del).0, 200);
    assert_eq!(plugin(&sock, "NetworkDriver.DeleteEndpoint", &del).0, 200);
    assert_eq!(plugin(&sock, "NetworkDriver.DeleteEndpoint", &del).0, 200);
    assert!(!e2e::run_out(&["ip", "-n", &d.host_ns, "-o", "link"]).contains(&src));
    let rm = format!(r#"{{"NetworkID":"{net_id}"}}"#);
    assert_eq!(plugin(&sock, "NetworkDriver.DeleteNetwork", &rm).0, 200);
    assert_eq!(networks(&d), before);

    // -o vswitch.driver=overlay -o vxlan.id=N: an overlay network of vswitch's; a bad
    // option value: refused by name, nothing made.
    let ov = "0f".repeat(32);
    let overlay = |opts: &str| {
        format!(
            r#"{{"NetworkID":"{ov}","Options":{{"com.docker.network.generic":{{{opts}}}}},"IPv4Data":[{{"Pool":"172.31.7.0/24","Gateway":"172.31.7.1/24"}}]}}"#
        )
    };
    let (code, v) = plugin(
        &sock,
        "NetworkDriver.CreateNetwork",
        &overlay(r#""vswitch.driver":"overlay","vxlan.id":"4242","vswitch.name":"ov""#),
    );
    assert_eq!(code, 200, "{v}");
    let n = d.json(&["network", "inspect", "ov"]);
    assert_eq!(
        (&n[0]["Driver"], &n[0]["Options"]["vxlan.id"]),
        (&Value::from("overlay"), &Value::from("4242")),
        "{n}"
    );
    let rm = format!(r#"{{"NetworkID":"{ov}"}}"#);
    assert_eq!(plugin(&sock, "NetworkDriver.DeleteNetwork", &rm).0, 200);
    let (code, v) = plugin(
        &sock,
        "NetworkDriver.CreateNetwork",
        &overlay(r#""com.docker.network.driver.mtu":"lots""#),
    );
    assert_eq!(code, 500, "{v}");
    assert!(v["Err"].as_str().unwrap_or("").contains("mtu=lots"), "{v}");
    assert_eq!(networks(&d), before);
}
