//! The netns/netlink/ethtool plumbing against the real kernel: namespaces, veth pairs,
//! addresses and routes made by the library, checked with iproute2 and ping.
//! Needs root. Everything lives in namespaces named `vsn<pid>...`, removed on drop.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::time::Duration;

use mgmt::link::{errno_of, Netlink};
use mgmt::{ethtool, netns};
use netlab::{require_root, Netns};

/// Every namespace and interface these tests make starts with this (plus the pid), so
/// `make clean-lab` can find leftovers.
const PREFIX: &str = "vsn";

/// A test namespace made by the library under test (`netns::create`), deleted when the
/// test ends, also on panic.
fn test_ns(tag: &str) -> Netns {
    Netns::create_with(PREFIX, tag, |name| {
        netns::create(name).unwrap_or_else(|e| panic!("creating {name}: {e:#}"))
    })
}

/// Short unique interface names (<= 15 bytes): vsn<pid><letter><n>.
fn ifname(role: char) -> String {
    netlab::ifname(PREFIX, role)
}

fn netns_listed(name: &str) -> bool {
    netlab::ip_out(&["netns", "list"])
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn namespace_lifecycle_leaves_nothing_behind() {
    require_root();
    let ns = test_ns("life");
    let name = ns.name().to_string();
    assert!(netns::exists(&name));
    assert!(netns_listed(&name), "ip netns list does not show {name}");

    let again = netns::create(&name).expect_err("creating an existing namespace succeeded");
    assert!(format!("{again:#}").contains("already exists"), "{again:#}");

    // A real, separate namespace: only lo, and ip netns exec works in it.
    let links = ns.ip_out(&["-o", "link", "show"]);
    assert_eq!(
        links.lines().count(),
        1,
        "fresh namespace has more than lo: {links}"
    );
    ns.exec(&["true"]);

    netns::write_resolv_conf(
        &name,
        &[IpAddr::V4(Ipv4Addr::new(172, 16, 0, 1))],
        &["ndots:0"],
    )
    .expect("writing resolv.conf");
    let resolv = ns.exec_out(&["cat", "/etc/resolv.conf"]);
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
    let ns = test_ns("sys");
    let key = "net/ipv6/conf/all/disable_ipv6";
    let host_before = std::fs::read_to_string(format!("/proc/sys/{key}")).expect("host sysctl");
    let flipped = if host_before.trim() == "1" { "0" } else { "1" };

    netns::write_sysctl_in(ns.name(), key, flipped).expect("writing the sysctl");
    let inside = ns.exec_out(&["cat", &format!("/proc/sys/{key}")]);
    assert_eq!(inside.trim(), flipped);
    let host_after = std::fs::read_to_string(format!("/proc/sys/{key}")).expect("host sysctl");
    assert_eq!(host_before, host_after, "the host's sysctl changed");

    // Netlink opened in run_in sees the namespace's links, not the host's.
    let names = netns::run_in(ns.name(), || {
        let mut nl = Netlink::new()?;
        Ok((
            nl.link_exists("lo"),
            nl.link_index("lo")?,
            nl.link_exists("nonexist0"),
        ))
    })
    .expect("run_in");
    assert_eq!(names, (true, Some(1), false));

    assert!(netns::write_sysctl_in(ns.name(), "kernel/hostname", "x").is_err());
    let err = netns::run_in(ns.name(), || -> Result<(), _> {
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
    let sb = test_ns("sb");
    let far = test_ns("far");
    let host_if = ifname('h');
    let peer_if = ifname('p');
    let mac = [0x02, 0x42, 0xac, 0x10, 0x07, 0x02];
    let mtu = 1400;

    let sb_fd = netns::open(sb.name()).expect("opening the sandbox namespace");
    {
        let (h, p) = (host_if.clone(), peer_if.clone());
        netns::run_in(far.name(), move || {
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
        netns::run_in(sb.name(), move || {
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

    let addrs = sb.ip_out(&["-4", "-o", "addr", "show", "dev", &peer_if]);
    assert!(
        addrs.contains("inet 172.16.7.2/24 brd 172.16.7.255"),
        "{addrs}"
    );
    let route = sb.ip_out(&["-4", "route", "show", "default"]);
    assert!(
        route.contains(&format!("default via 172.16.7.1 dev {peer_if}")),
        "{route}"
    );
    let link = sb.ip_out(&["link", "show", "dev", &peer_if]);
    assert!(
        link.contains("mtu 1400") && link.contains("02:42:ac:10:07:02"),
        "{link}"
    );

    // Across the veth, both ways; and via the default route to an off-link address.
    sb.exec(&["ping", "-c1", "-W2", "172.16.7.1"]);
    far.exec(&["ping", "-c1", "-W2", "172.16.7.2"]);
    far.ip(&["addr", "add", "172.16.99.1/32", "dev", "lo"]);
    far.ip(&["link", "set", "lo", "up"]);
    sb.exec(&["ping", "-c1", "-W2", "172.16.99.1"]);

    // flush removes the IPv4 address (and with it the route through it).
    let p = peer_if.clone();
    netns::run_in(sb.name(), move || Ok(Netlink::new()?.flush_addresses(&p)?)).expect("flush");
    let addrs = sb.ip_out(&["-o", "addr", "show", "dev", &peer_if]);
    assert!(
        addrs.trim().is_empty(),
        "addresses left after flush: {addrs}"
    );

    // Deleting the namespaces takes the veth with them.
    drop(sb);
    let h = host_if.clone();
    let name = far.name().to_string();
    let gone = netlab::eventually(Duration::from_secs(5), || {
        let h = h.clone();
        netns::run_in(&name, move || Ok(!Netlink::new()?.link_exists(&h))).unwrap_or(false)
    });
    assert!(
        gone,
        "{host_if} survived the deletion of its peer's namespace"
    );
}

#[test]
fn link_settings_move_rename_delete() {
    require_root();
    let a = test_ns("la");
    let b = test_ns("lb");
    let x = ifname('x');
    let y = ifname('y');
    let renamed = ifname('r');
    let b_fd = netns::open(b.name()).expect("opening b");
    let a_fd = netns::open(a.name()).expect("opening a");
    let (x2, y2, r2) = (x.clone(), y.clone(), renamed.clone());
    netns::run_in(a.name(), move || {
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
    netns::run_in(b.name(), move || {
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
        netns::run_in(a.name(), move || Ok(Netlink::new()?.link_exists(&r2))).expect("checking a");
    assert!(!still, "deleting one veth end left the other");
}
