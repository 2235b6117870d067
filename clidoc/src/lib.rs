//! The man page and the shell completions of a binary, made from its clap definition:
//! `BIN --generate man|bash|zsh|fish` prints one to stdout (`make install` installs
//! them). The flag must be the first argument and is read before the binary's own
//! parsing, so it shows in no `--help`, completion, man page or configuration file.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Command;
pub use clap_complete::Shell;

const FLAG: &str = "--generate";

/// What `--generate` asks for.
enum Wanted {
    Man,
    Completions(Shell),
}

/// `BIN --generate WHAT` (or `--generate=WHAT`): print it and give the exit code the
/// binary returns with (0, or 2 for a bad WHAT). `None` when argv asks for no such
/// thing: the binary goes on as usual. `cmd` is the binary's clap command; `section`
/// its man page's section ("1" for commands, "8" for daemons).
pub fn requested(
    argv: &[OsString],
    cmd: impl FnOnce() -> Command,
    section: &str,
) -> Option<ExitCode> {
    let first = argv.get(1)?.to_str()?;
    let value = if first == FLAG {
        argv.get(2)
            .filter(|_| argv.len() == 3)
            .and_then(|v| v.to_str())
    } else {
        let v = first.strip_prefix(FLAG)?.strip_prefix('=')?;
        Some(v).filter(|_| argv.len() == 2)
    };
    let cmd = cmd();
    let name = cmd.get_name().to_string();
    let wanted = match value {
        Some("man") => Some(Wanted::Man),
        Some(v) => v.parse().ok().map(Wanted::Completions),
        None => None,
    };
    let Some(wanted) = wanted else {
        eprintln!("{name}: {FLAG} takes one value: man, bash, zsh, fish, elvish or powershell");
        return Some(ExitCode::from(2));
    };
    let mut out = Vec::new();
    match wanted {
        Wanted::Man => man(cmd, section, &mut out),
        Wanted::Completions(shell) => completions(shell, cmd, &mut out),
    }
    Some(match std::io::stdout().lock().write_all(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: writing to stdout: {e}");
            ExitCode::FAILURE
        }
    })
}

/// The man page (troff) of `cmd` in `section`: one page for the whole binary, each
/// subcommand in a COMMANDS section with its synopsis and options (clap_mangen alone
/// would point to a page per subcommand).
pub fn man(mut cmd: Command, section: &str, out: &mut Vec<u8>) {
    cmd.build();
    let manual = match section {
        "8" => "System Manager's Manual",
        _ => "User Commands",
    };
    render(&cmd, section, manual, out).expect("rendering into memory cannot fail");
}

fn render(cmd: &Command, section: &str, manual: &str, out: &mut Vec<u8>) -> std::io::Result<()> {
    let page = clap_mangen::Man::new(cmd.clone())
        .section(section)
        .manual(manual);
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_options_section(out)?;
    let commands = leaves(cmd);
    if !commands.is_empty() {
        let mut roff = roff::Roff::new();
        roff.control("SH", ["COMMANDS"]);
        roff.to_writer(out)?;
        for sub in commands {
            command_section(sub, out)?;
        }
    }
    if cmd.get_version().is_some() {
        page.render_version_section(out)?;
    }
    Ok(())
}

/// The subcommands that do something (`network create`, not `network`), in order.
fn leaves(cmd: &Command) -> Vec<&Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .flat_map(|s| {
            if s.has_subcommands() {
                leaves(s)
            } else {
                vec![s]
            }
        })
        .collect()
}

/// One subcommand: its full name as a subsection, what it does, its synopsis and
/// options under it.
fn command_section(sub: &Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    // The binary's global flags and --help are told once, at the top of the page.
    let sub = sub.clone().mut_args(|a| {
        let told = a.is_global_set() || a.get_id() == "help";
        a.hide(told)
    });
    let mut roff = roff::Roff::new();
    roff.control("SS", [sub.get_bin_name().unwrap_or(sub.get_name())]);
    if let Some(about) = sub.get_long_about().or(sub.get_about()) {
        for line in about.to_string().lines() {
            roff.text([roff::roman(line)]);
        }
        roff.control("PP", []);
    }
    roff.to_writer(out)?;
    let page = clap_mangen::Man::new(sub);
    let mut parts = Vec::new();
    page.render_synopsis_section(&mut parts)?;
    page.render_options_section(&mut parts)?;
    // Their section headings would end the COMMANDS section.
    for line in String::from_utf8_lossy(&parts).lines() {
        if !line.starts_with(".SH ") {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// `shell`'s completion script for `cmd`.
pub fn completions(shell: Shell, mut cmd: Command, out: &mut Vec<u8>) {
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> Command {
        Command::new("demo")
            .about("a demo")
            .arg(clap::Arg::new("verbose").long("verbose").global(true))
            .subcommand(
                Command::new("network").subcommand(
                    Command::new("create")
                        .about("Create a network")
                        .arg(clap::Arg::new("subnet").long("subnet")),
                ),
            )
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("demo")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn only_a_first_generate_flag_is_taken() {
        assert!(requested(&argv(&[]), cmd, "1").is_none());
        assert!(requested(&argv(&["--verbose", "x"]), cmd, "1").is_none());
        assert!(requested(&argv(&["--verbose", "--generate", "man"]), cmd, "1").is_none());
        assert!(requested(&argv(&["--generated"]), cmd, "1").is_none());
        for bad in [
            &["--generate"][..],
            &["--generate", "tcsh"],
            &["--generate", "man", "extra"],
            &["--generate="],
        ] {
            assert_eq!(
                requested(&argv(bad), cmd, "1"),
                Some(ExitCode::from(2)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn man_page_and_completions() {
        let mut page = Vec::new();
        man(cmd(), "8", &mut page);
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with(".ie"), "{page}");
        assert!(page.contains(".TH demo 8"), "{page}");
        // One page: the subcommands in it, the global flag told once.
        assert!(page.contains(".SS \"demo network create\""), "{page}");
        assert!(page.contains("Create a network"), "{page}");
        assert!(page.contains("subnet"), "{page}");
        assert_eq!(page.matches("verbose").count(), 2, "{page}");
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            completions(shell, cmd(), &mut script);
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("subnet"), "{shell}: {script}");
        }
    }
}
