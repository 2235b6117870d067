//! `make install` and `make uninstall` into a staging root (DESTDIR), as a packager runs
//! them: every file in its place, the binaries executable, the unit naming the installed
//! vswitchd and accepted by `systemd-analyze verify`, man pages that groff reads without
//! a warning, completions that know the commands; a changed configuration file survives
//! a reinstall and an uninstall; uninstall leaves nothing else but directories. Nothing
//! outside the lab's temp dir is touched. The first run builds the release binaries.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::Lab;

const PREFIX: &str = "/usr/local";
const BINS: [&str; 3] = ["vswitchd", "vswitchctl", "pktgen"];
const UNIT: &str = "usr/local/lib/systemd/system/vswitchd.service";
const CONFIG: &str = "etc/vswitchd/vswitchd.toml";
const MAN_PAGES: [&str; 3] = [
    "usr/local/share/man/man8/vswitchd.8",
    "usr/local/share/man/man1/vswitchctl.1",
    "usr/local/share/man/man1/pktgen.1",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Run a command that must succeed; what it printed, stdout then stderr.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {text}",
        out.status
    );
    text
}

/// `make TARGET DESTDIR=... PREFIX=/usr/local` in the workspace.
fn make(target: &str, destdir: &Path) -> String {
    run(Command::new("make")
        .arg("--no-print-directory")
        .arg("-C")
        .arg(workspace())
        .arg(target)
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg(format!("PREFIX={PREFIX}"))
        // Under `make test`, the outer make's jobserver is not ours to use.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL"))
}

/// Every file (not directory) under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = e.expect("directory entry").path();
            if path.is_dir() && !path.is_symlink() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under the root");
                out.push(rel.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files install puts, each binary's completions with a word they must know.
fn expected() -> Vec<String> {
    let mut all: Vec<String> = BINS
        .iter()
        .flat_map(|b| {
            [
                format!("usr/local/bin/{b}"),
                format!("usr/local/share/bash-completion/completions/{b}"),
                format!("usr/local/share/zsh/site-functions/_{b}"),
                format!("usr/local/share/fish/vendor_completions.d/{b}.fish"),
            ]
        })
        .chain(MAN_PAGES.map(String::from))
        .chain(["opt/cni/bin/vswitch-cni".into(), UNIT.into(), CONFIG.into()])
        .collect();
    all.sort();
    all
}

/// `systemd-analyze verify` of the installed unit, in a root made of the host's own
/// systemd units and /bin/kill (ExecReload=) with the installed tree over them, as the
/// host would be after `make install`; man pages where install put them. Whatever it
/// prints is a complaint.
fn verify_unit(lab: &Lab, destdir: &Path) {
    let root = lab.dir.join("root");
    std::fs::create_dir_all(root.join("lib/systemd")).expect("create the root");
    std::fs::create_dir_all(root.join("bin")).expect("create the root");
    run(Command::new("cp")
        .args(["-a", "/lib/systemd/system"])
        .arg(root.join("lib/systemd")));
    run(Command::new("cp")
        .args(["-L", "/bin/kill"])
        .arg(root.join("bin/kill")));
    run(Command::new("cp")
        .arg("-a")
        .arg(destdir.join("."))
        .arg(&root));
    let said = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(root.join(UNIT))
        .env("MANPATH", root.join("usr/local/share/man")));
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
}

#[test]
fn make_install_and_uninstall_under_destdir() {
    let lab = Lab::new();
    let destdir = lab.dir.join("dest");
    make("install", &destdir);
    assert_eq!(files(&destdir), expected());

    for exe in BINS
        .map(|b| format!("usr/local/bin/{b}"))
        .iter()
        .chain([&"opt/cni/bin/vswitch-cni".to_string()])
    {
        let mode = std::fs::metadata(destdir.join(exe))
            .expect(exe)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "{exe}: {mode:o}");
    }

    let unit = read(&destdir.join(UNIT));
    assert!(
        unit.lines()
            .any(|l| l == "ExecStart=/usr/local/bin/vswitchd --config /etc/vswitchd/vswitchd.toml"),
        "{unit}"
    );
    assert!(!unit.contains("@PREFIX@"), "{unit}");
    verify_unit(&lab, &destdir);

    let sample = read(&workspace().join("dist/vswitchd.toml"));
    assert_eq!(read(&destdir.join(CONFIG)), sample);

    for (page, title, mentions) in [
        (MAN_PAGES[0], ".TH vswitchd 8", "uplink\\-ip"),
        (
            MAN_PAGES[1],
            ".TH vswitchctl 1",
            ".SS \"vswitchctl network create\"",
        ),
        (MAN_PAGES[2], ".TH pktgen 1", ".SS \"pktgen tx\""),
    ] {
        let path = destdir.join(page);
        let text = read(&path);
        assert!(
            text.contains(title) && text.contains(mentions),
            "{page}: {text}"
        );
        // -z: parse and format, print nothing; -ww: every warning. Silence is acceptance.
        let said = run(Command::new("groff")
            .args(["-man", "-Tutf8", "-z", "-ww"])
            .arg(&path));
        assert!(said.is_empty(), "groff on {page}: {said}");
    }

    for (bin, word) in [
        ("vswitchd", "uplink-ip"),
        ("vswitchctl", "sandbox"),
        ("pktgen", "backend"),
    ] {
        for script in [
            format!("usr/local/share/bash-completion/completions/{bin}"),
            format!("usr/local/share/zsh/site-functions/_{bin}"),
            format!("usr/local/share/fish/vendor_completions.d/{bin}.fish"),
        ] {
            let text = read(&destdir.join(&script));
            assert!(text.contains(word), "{script} knows no {word:?}: {text}");
        }
        run(Command::new("bash")
            .arg("-n")
            .arg(destdir.join(format!("usr/local/share/bash-completion/completions/{bin}"))));
    }

    // The administrator's configuration survives a reinstall and an uninstall.
    let changed = format!("{sample}log-level = \"debug\"\n");
    std::fs::write(destdir.join(CONFIG), &changed).expect("change the configuration");
    let said = make("install", &destdir);
    assert!(said.contains("exists, kept as it is"), "{said}");
    assert_eq!(read(&destdir.join(CONFIG)), changed);
    let said = make("uninstall", &destdir);
    assert!(said.contains("differs from the sample, kept"), "{said}");
    assert_eq!(files(&destdir), vec![CONFIG.to_string()]);

    // The sample itself goes, with its directory.
    std::fs::write(destdir.join(CONFIG), &sample).expect("restore the sample");
    make("uninstall", &destdir);
    assert_eq!(files(&destdir), Vec::<String>::new());
    assert!(!destdir.join("etc/vswitchd").exists());
}
