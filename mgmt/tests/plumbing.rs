//! The netns/netlink/ethtool plumbing against the real kernel: namespaces, veth pairs,
//! addresses and routes made by the library, checked with iproute2 and ping.
//! Needs root. Everything lives in namespaces named `vsn<pid>...`, removed on drop.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use mgmt::link::{errno_of, Netlink};
use mgmt::{ethtool, netns};

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create network namespaces and veth pairs: run them as root"
    );
}

/// A test namespace that is deleted when the test ends, also on panic.
struct TestNs {
    name: String,
}

impl TestNs {
    fn new(tag: &str) -> Self {
        let name = format!("vsn{}{tag}", std::process::id());
        // A leftover from a crashed earlier run with a reused pid.
        let _ = netns::delete(&name);
        netns::create(&name).unwrap_or_else(|e| panic!("creating {name}: {e:#}"));
        Self { name }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Err(e) = netns::delete(&self.name) {
            eprintln!("cleanup of {} failed: {e:#}", self.name);
        }
    }
}

/// Short unique interface names (<= 15 bytes): vsn<pid><letter><n>.
fn ifname(role: char) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("vsn{}{role}{n}", std::process::id() % 1_000_000)
}

/// Runs a command, returning its stdout; panics with its stderr when it fails.
fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn netns_listed(name: &str) -> bool {
    run(&["ip", "netns", "list"])
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn namespace_lifecycle_leaves_nothing_behind() {
    require_root();
    let ns = TestNs::new("life");
    let name = ns.name.clone();
    assert!(netns::exists(&name));
    assert!(netns_listed(&name), "ip netns list does not show {name}");

    let again = netns::create(&name).expect_err("creating an existing namespace succeeded");
    assert!(format!("{again:#}").contains("already exists"), "{again:#}");

    // A real, separate namespace: only lo, and ip netns exec works in it.
    let links = run(&["ip", "-n", &name, "-o", "link", "show"]);
    assert_eq!(
        links.lines().count(),
        1,
        "fresh namespace has more than lo: {links}"
    );
    run(&["ip", "netns", "exec", &name, "true"]);

    netns::write_resolv_conf(
        &name,
        &[IpAddr::V4(Ipv4Addr::new(172, 16, 0, 1))],
        &["ndots:0"],
    )
    .expect("writing resolv.conf");
    let resolv = run(&["ip", "netns", "exec", &name, "cat", "/etc/resolv.conf"]);
    assert_eq!(resolv, "nameserver 172.16.0.1\noptions ndots:0\n");

    netns::delete(&name).expect("deleting the namespace");
    assert!(!netns::exists(&name));
    assert!(!netns_listed(&name), "ip netns list still shows {name}");
    assert!(!netns::path(&name).exists());
    assert!(!std::path::Path::new(netns::ETC_DIR).join(&name).exists());
    netns::delete(&name).expect("deleting an absent namespace is not an error");
    assert!(netns::open(&name).is_err());
}

#[test]
fn invalid_namespace_names_are_refused() {
    require_root();
    for bad in ["", ".", "..", "a/b", &"x".repeat(65)] {
        assert!(netns::create(bad).is_err(), "created {bad:?}");
    }
}

#[test]
fn run_in_and_sysctl_act_inside_the_namespace_only() {
    require_root();
    let ns = TestNs::new("sys");
    let key = "net/ipv6/conf/all/disable_ipv6";
    let host_before = std::fs::read_to_string(format!("/proc/sys/{key}")).expect("host sysctl");
    let flipped = if host_before.trim() == "1" { "0" } else { "1" };

    netns::write_sysctl_in(&ns.name, key, flipped).expect("writing the sysctl");
    let inside = run(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "cat",
        &format!("/proc/sys/{key}"),
    ]);
    assert_eq!(inside.trim(), flipped);
    let host_after = std::fs::read_to_string(format!("/proc/sys/{key}")).expect("host sysctl");
    assert_eq!(host_before, host_after, "the host's sysctl changed");

    // Netlink opened in run_in sees the namespace's links, not the host's.
    let names = netns::run_in(&ns.name, || {
        let mut nl = Netlink::new()?;
        Ok((
            nl.link_exists("lo"),
            nl.link_index("lo")?,
            nl.link_exists("nonexist0"),
        ))
    })
    .expect("run_in");
    assert_eq!(names, (true, Some(1), false));

    assert!(netns::write_sysctl_in(&ns.name, "kernel/hostname", "x").is_err());
    let err = netns::run_in(&ns.name, || -> Result<(), _> {
        Err(netns::NetnsError::io(
            "boom",
            std::io::ErrorKind::Other.into(),
        ))
    })
    .expect_err("an error from the closure is returned");
    assert_eq!(err.to_string(), "boom");
}

/// The sandbox side: peer in `sb` with a fixed MAC and MTU, address, default route,
/// TX checksum off. The "host" end lives in a second test namespace, so the host's own
/// namespace never holds anything.
#[test]
fn veth_into_namespace_pings_across() {
    require_root();
    let sb = TestNs::new("sb");
    let far = TestNs::new("far");
    let host_if = ifname('h');
    let peer_if = ifname('p');
    let mac = [0x02, 0x42, 0xac, 0x10, 0x07, 0x02];
    let mtu = 1400;

    let sb_fd = netns::open(&sb.name).expect("opening the sandbox namespace");
    {
        let (h, p) = (host_if.clone(), peer_if.clone());
        netns::run_in(&far.name, move || {
            let mut nl = Netlink::new()?;
            nl.create_veth(&h, &p, sb_fd.as_fd(), Some(mac), mtu)?;
            // The peer went straight into the sandbox.
            assert!(nl.link_exists(&h));
            assert!(!nl.link_exists(&p));
            assert_eq!(nl.link_mtu(&h)?, mtu);
            nl.add_address(&h, Ipv4Addr::new(172, 16, 7, 1), 24)?;
            nl.set_up(&h)?;
            Ok(())
        })
        .expect("creating the veth from the far namespace");
    }

    {
        let p = peer_if.clone();
        netns::run_in(&sb.name, move || {
            let mut nl = Netlink::new()?;
            assert_eq!(nl.link_mac(&p)?, mac);
            assert_eq!(nl.link_mtu(&p)?, mtu);
            nl.set_up("lo")?;
            nl.add_address(&p, Ipv4Addr::new(172, 16, 7, 2), 24)?;
            // Replaying an address (daemon restart) is fine.
            nl.add_address(&p, Ipv4Addr::new(172, 16, 7, 2), 24)?;
            nl.set_up(&p)?;
            assert!(nl.is_up(&p)?);
            nl.add_default_route(Ipv4Addr::new(172, 16, 7, 1))?;
            // Replace, not fail, when a default route exists.
            nl.add_default_route(Ipv4Addr::new(172, 16, 7, 1))?;
            assert!(
                ethtool::tx_checksum_enabled(&p)?,
                "veth starts with TX csum on"
            );
            ethtool::disable_tx_checksum(&p)?;
            assert!(!ethtool::tx_checksum_enabled(&p)?);
            assert!(!ethtool::tso_enabled(&p)?);
            Ok(())
        })
        .expect("configuring the sandbox end");
    }

    let addrs = run(&[
        "ip", "-n", &sb.name, "-4", "-o", "addr", "show", "dev", &peer_if,
    ]);
    assert!(
        addrs.contains("inet 172.16.7.2/24 brd 172.16.7.255"),
        "{addrs}"
    );
    let route = run(&["ip", "-n", &sb.name, "-4", "route", "show", "default"]);
    assert!(
        route.contains(&format!("default via 172.16.7.1 dev {peer_if}")),
        "{route}"
    );
    let link = run(&["ip", "-n", &sb.name, "link", "show", "dev", &peer_if]);
    assert!(
        link.contains("mtu 1400") && link.contains("02:42:ac:10:07:02"),
        "{link}"
    );

    // Across the veth, both ways; and via the default route to an off-link address.
    run(&[
        "ip",
        "netns",
        "exec",
        &sb.name,
        "ping",
        "-c1",
        "-W2",
        "172.16.7.1",
    ]);
    run(&[
        "ip",
        "netns",
        "exec",
        &far.name,
        "ping",
        "-c1",
        "-W2",
        "172.16.7.2",
    ]);
    run(&[
        "ip",
        "-n",
        &far.name,
        "addr",
        "add",
        "172.16.99.1/32",
        "dev",
        "lo",
    ]);
    run(&["ip", "-n", &far.name, "link", "set", "lo", "up"]);
    run(&[
        "ip",
        "netns",
        "exec",
        &sb.name,
        "ping",
        "-c1",
        "-W2",
        "172.16.99.1",
    ]);

    // flush removes the IPv4 address (and with it the route through it).
    let p = peer_if.clone();
    netns::run_in(&sb.name, move || Ok(Netlink::new()?.flush_addresses(&p)?)).expect("flush");
    let addrs = run(&["ip", "-n", &sb.name, "-o", "addr", "show", "dev", &peer_if]);
    assert!(
        addrs.trim().is_empty(),
        "addresses left after flush: {addrs}"
    );

    // Deleting the namespaces takes the veth with them.
    drop(sb);
    let h = host_if.clone();
    let name = far.name.clone();
    let gone = (0..50).any(|_| {
        let h = h.clone();
        let gone =
            netns::run_in(&name, move || Ok(!Netlink::new()?.link_exists(&h))).unwrap_or(false);
        if !gone {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        gone
    });
    assert!(
        gone,
        "{host_if} survived the deletion of its peer's namespace"
    );
}

#[test]
fn link_settings_move_rename_delete() {
    require_root();
    let a = TestNs::new("la");
    let b = TestNs::new("lb");
    let x = ifname('x');
    let y = ifname('y');
    let renamed = ifname('r');
    let b_fd = netns::open(&b.name).expect("opening b");
    let a_fd = netns::open(&a.name).expect("opening a");
    let (x2, y2, r2) = (x.clone(), y.clone(), renamed.clone());
    netns::run_in(&a.name, move || {
        let mut nl = Netlink::new()?;
        // Both ends here first; then one is moved away.
        nl.create_veth(&x2, &y2, a_fd.as_fd(), None, 1500)?;
        let dup = nl
            .create_veth(&x2, &y2, a_fd.as_fd(), None, 1500)
            .expect_err("duplicate veth created");
        assert_eq!(errno_of(&dup), Some(libc::EEXIST), "{dup:#}");
        assert!(
            format!("{dup:#}").contains(&x2),
            "error does not name the link: {dup:#}"
        );

        nl.set_mtu(&x2, 1280)?;
        assert_eq!(nl.link_mtu(&x2)?, 1280);
        let mac = [0x02, 0, 0, 0, 0x12, 0x34];
        nl.set_mac(&x2, mac)?;
        assert_eq!(nl.link_mac(&x2)?, mac);
        nl.set_up(&x2)?;
        assert!(nl.is_up(&x2)?);
        nl.set_down(&x2)?;
        assert!(!nl.is_up(&x2)?);
        nl.rename(&x2, &r2)?;
        assert!(!nl.link_exists(&x2) && nl.link_exists(&r2));

        nl.move_to_ns(&y2, b_fd.as_fd())?;
        assert!(!nl.link_exists(&y2));

        let err = nl
            .set_up("vsnnosuchif")
            .expect_err("set_up of a missing link");
        assert!(format!("{err:#}").contains("vsnnosuchif"), "{err:#}");
        let err = nl.set_mtu(&r2, 10).expect_err("MTU 10 accepted");
        let shown = format!("{err:#}");
        // The kernel's extended-ACK reason travels with the errno.
        assert!(shown.contains(&r2) && shown.contains("mtu"), "{shown}");
        eprintln!("refused MTU reads: {shown}");
        Ok(())
    })
    .expect("link settings in a");

    let y2 = y.clone();
    netns::run_in(&b.name, move || {
        let mut nl = Netlink::new()?;
        assert!(nl.link_exists(&y2), "moved end not in b");
        nl.delete_link(&y2)?;
        assert!(!nl.link_exists(&y2));
        nl.delete_link(&y2)?; // absent: Ok
        Ok(())
    })
    .expect("delete in b");
    let r2 = renamed.clone();
    let still =
        netns::run_in(&a.name, move || Ok(Netlink::new()?.link_exists(&r2))).expect("checking a");
    assert!(!still, "deleting one veth end left the other");
}
