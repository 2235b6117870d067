//! The lab checks itself: commands, names and waits without root; namespaces, veth
//! pairs and code inside a namespace against the real kernel (root, as CI runs them).
use super::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The port tests' prefix, so `make clean-lab` also finds what these leave behind.
const PREFIX: &str = "vsp";

fn panic_text(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn ifindex(dev: &str) -> u32 {
    let c = std::ffi::CString::new(dev).expect("no NUL in a name");
    // SAFETY: a valid NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

#[test]
fn run_out_returns_stdout_and_failures_show_command_and_stderr() {
    assert_eq!(run_out(&["echo", "hello"]), "hello\n");
    run(&["true"]);
    let msg = panic_text(|| run(&["sh", "-c", "echo oops >&2; exit 3"]));
    assert!(msg.contains("\"sh\", \"-c\""), "names the command: {msg}");
    assert!(msg.contains("oops"), "shows stderr: {msg}");
    let msg = panic_text(|| run(&["vsp-no-such-program"]));
    assert!(msg.contains("vsp-no-such-program"), "{msg}");
}

#[test]
fn ifnames_are_unique_and_short() {
    let a = ifname(PREFIX, 'a');
    let b = ifname(PREFIX, 'a');
    assert_ne!(a, b);
    assert!(a.starts_with(PREFIX) && a.len() <= 15, "{a}");
    let msg = panic_text(|| {
        ifname("waytoolongprefix", 'x');
    });
    assert!(msg.contains("too long"), "{msg}");
}

#[test]
fn waits_are_bounded() {
    let mut n = 0;
    assert!(eventually(Duration::from_secs(5), || {
        n += 1;
        n == 3
    }));
    let start = Instant::now();
    assert!(!eventually(Duration::from_millis(120), || false));
    assert!(start.elapsed() < Duration::from_secs(2));
    let msg = panic_text(|| wait_for("the moon", Duration::from_millis(60), || false));
    assert!(msg.contains("waiting for the moon"), "{msg}");
}

#[test]
fn ns_exec_is_killed_at_its_bound() {
    require_root();
    let ns = Netns::new(PREFIX, "x");
    let start = Instant::now();
    let out = ns_exec(ns.name(), &["sleep", "10"], Duration::from_millis(300));
    assert!(!out.status.success());
    assert!(start.elapsed() < Duration::from_secs(5));
    let out = ns_exec(ns.name(), &["echo", "in"], Duration::from_secs(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in\n");
}

#[test]
fn namespace_is_made_with_lo_up_and_deleted_on_drop_and_on_panic() {
    require_root();
    let ns = Netns::new(PREFIX, "life");
    let name = ns.name().to_string();
    assert_eq!(name, format!("{PREFIX}{}life", std::process::id()));
    assert!(netns_exists(&name));
    let lo = ns.ip_out(&["link", "show", "lo"]);
    assert!(lo.contains(",UP"), "lo is not up: {lo}");
    drop(ns);
    assert!(!netns_exists(&name), "{name} survived its guard");

    let name = format!("{PREFIX}{}boom", std::process::id());
    let msg = panic_text(|| {
        let _ns = Netns::new(PREFIX, "boom");
        panic!("the test failed");
    });
    assert_eq!(msg, "the test failed");
    assert!(!netns_exists(&name), "{name} survived a panicking test");
}

#[test]
fn leftovers_are_replaced_and_live_tags_are_refused() {
    require_root();
    let name = format!("{PREFIX}{}old", std::process::id());
    add_netns(&name);
    ip(&[
        "-n", &name, "link", "add", "stale0", "type", "veth", "peer", "name", "stale1",
    ]);
    let ns = Netns::new(PREFIX, "old");
    assert!(
        !ns.ip_out(&["link", "show"]).contains("stale0"),
        "the leftover was kept"
    );
    let msg = panic_text(|| {
        Netns::new(PREFIX, "old");
    });
    assert!(msg.contains("in use"), "{msg}");
    assert!(netns_exists(&name), "the refused twin deleted the live one");
    drop(ns);
    assert!(!netns_exists(&name));
}

#[test]
fn veth_pairs_and_code_inside_the_namespace() {
    require_root();
    let ns = Netns::numbered(PREFIX).without_ipv6();
    let far = Netns::new(PREFIX, "far");
    let (a, b) = (ifname(PREFIX, 'a'), ifname(PREFIX, 'b'));
    ns.veth(&a, &b);
    for dev in [&a, &b] {
        let link = ns.ip_out(&["link", "show", dev]);
        assert!(link.contains(",UP"), "{dev} is not up: {link}");
    }
    let v6 = ns.exec_out(&["sysctl", "-n", "net.ipv6.conf.default.disable_ipv6"]);
    assert_eq!(v6.trim(), "1");
    let a2 = a.clone();
    assert!(ns.run(move || ifindex(&a2)) > 0, "{a} not seen inside");
    assert_eq!(ifindex(&a), 0, "{a} is in the test's own namespace");

    let (c, d) = (ifname(PREFIX, 'c'), ifname(PREFIX, 'd'));
    veth(ns.name(), &c, far.name(), &d);
    let d2 = d.clone();
    assert!(
        in_netns(far.name(), move || ifindex(&d2)) > 0,
        "{d} not moved"
    );

    let msg = panic_text(|| ns.run(|| panic!("inside")));
    assert_eq!(msg, "inside", "a panic inside is passed on");
}
