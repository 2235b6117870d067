//! The configuration file (`--config PATH`, else `/etc/vswitchd/vswitchd.toml` when it
//! exists): every daemon flag is a key, spelled as the flag without its dashes
//! (`uplink-ip = "198.51.100.2/24"`, or `uplink_ip`); a flag given on the command line
//! overrides the file's key. A key that is no flag, or a value the flag would refuse,
//! stops the start with a message naming the key and the file.
//!
//! The file's keys become flags placed before the command line's, and the whole is
//! parsed once by clap: one set of rules for both, and clap's own checks (values,
//! requirements, conflicts) for the file too.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use super::Args;

/// Where the file is looked for when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/vswitchd/vswitchd.toml";

/// The daemon's arguments as loaded.
pub struct Loaded {
    pub args: Args,
    /// What they were parsed from (for comparing with a reload).
    pub matches: clap::ArgMatches,
    /// The configuration file, when there is one.
    pub path: Option<PathBuf>,
}

/// The daemon's arguments: the command line over the configuration file.
pub fn load(argv: &[OsString]) -> Result<Loaded, String> {
    let cli = match Args::command().try_get_matches_from(argv) {
        Ok(m) => m,
        // --help, --version and usage errors: clap's own output and exit code.
        Err(e) => e.exit(),
    };
    let given = cli.get_one::<PathBuf>("config").cloned();
    let path = match given {
        Some(p) => Some(p),
        None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
    };
    let Some(path) = path else {
        let args = Args::from_arg_matches(&cli).map_err(|e| e.to_string())?;
        return Ok(Loaded {
            args,
            matches: cli,
            path: None,
        });
    };
    let (args, matches) = reread(argv, &path, &cli)?;
    Ok(Loaded {
        args,
        matches,
        path: Some(path),
    })
}

/// Read the file at `path` again under the command line `argv` (parsed: `cli`).
pub fn reread(
    argv: &[OsString],
    path: &Path,
    cli: &clap::ArgMatches,
) -> Result<(Args, clap::ArgMatches), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
    merge(argv, &text, path, cli)
}

/// The ids of the arguments whose values differ between `a` and `b`.
pub fn changed(a: &clap::ArgMatches, b: &clap::ArgMatches) -> Vec<String> {
    Args::command()
        .get_arguments()
        .map(|arg| arg.get_id().as_str().to_string())
        .filter(|id| {
            let raw = |m: &clap::ArgMatches| -> Vec<OsString> {
                m.get_raw(id)
                    .map(|v| v.map(|x| x.to_os_string()).collect())
                    .unwrap_or_default()
            };
            raw(a) != raw(b)
        })
        .collect()
}

/// Parse `text` (the file at `path`) under the command line `argv` (parsed: `cli`).
pub fn merge(
    argv: &[OsString],
    text: &str,
    path: &Path,
    cli: &clap::ArgMatches,
) -> Result<(Args, clap::ArgMatches), String> {
    let shown = path.display();
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{shown} is not valid TOML: {e}"))?;
    let cmd = Args::command();
    let mut from_file: Vec<OsString> = Vec::new();
    let mut keys: Vec<(String, String)> = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
            .ok_or_else(|| {
                format!(
                    "unknown key {key:?} in {shown}: the keys are vswitchd's flags without their dashes (vswitchd --help lists them)"
                )
            })?;
        keys.push((long.clone(), key.clone()));
        // The command line's flag (or its environment variable) wins.
        if matches!(
            cli.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = format!("--{long}");
        let bad = |why: &str| format!("key {key:?} in {shown}: {why}");
        let scalar = |v: &toml::Value| -> Result<String, String> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                _ => Err(bad("expected a string, number or boolean")),
            }
        };
        match (value, arg.get_action()) {
            (toml::Value::Boolean(b), ArgAction::SetTrue) => {
                if *b {
                    from_file.push(flag.into());
                }
            }
            (_, ArgAction::SetTrue) => return Err(bad("expected true or false")),
            (toml::Value::Array(items), ArgAction::Append) => {
                for v in items {
                    from_file.push(format!("{flag}={}", scalar(v)?).into());
                }
            }
            // A flag whose value may be left out (`--docker-plugin`): true means alone.
            (toml::Value::Boolean(true), _)
                if arg.get_num_args().is_some_and(|n| n.min_values() == 0) =>
            {
                from_file.push(flag.into());
            }
            (toml::Value::Boolean(false), _)
                if arg.get_num_args().is_some_and(|n| n.min_values() == 0) => {}
            (v, _) => from_file.push(format!("{flag}={}", scalar(v)?).into()),
        }
    }
    let mut all: Vec<OsString> = argv.iter().take(1).cloned().collect();
    all.extend(from_file);
    all.extend(argv.iter().skip(1).cloned());
    let matches = Args::command().try_get_matches_from(&all).map_err(|e| {
        // Name the key when the refusal is about one of the file's.
        let about = e
            .get(clap::error::ContextKind::InvalidArg)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let key = keys
            .iter()
            .find(|(long, _)| about.starts_with(&format!("--{long}")))
            .filter(|(long, _)| {
                cli.value_source(long.replace('-', "_").as_str()) != Some(ValueSource::CommandLine)
            });
        let msg = e.render().to_string();
        let msg = msg.trim().trim_start_matches("error: ");
        match key {
            Some((_, k)) => format!("key {k:?} in {shown}: {msg}"),
            None => format!("{msg} (with {shown})"),
        }
    })?;
    let args = Args::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    Ok((args, matches))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(cli: &[&str], file: &str) -> Result<Args, String> {
        let argv: Vec<OsString> = std::iter::once("vswitchd")
            .chain(cli.iter().copied())
            .map(OsString::from)
            .collect();
        let m = Args::command().try_get_matches_from(&argv).unwrap();
        merge(&argv, file, Path::new("/etc/vswitchd/vswitchd.toml"), &m).map(|(a, _)| a)
    }

    #[test]
    fn changes_between_two_readings_are_listed() {
        let argv: Vec<OsString> = ["vswitchd", "--workers", "1"].map(OsString::from).to_vec();
        let m = Args::command().try_get_matches_from(&argv).unwrap();
        let p = Path::new("/x.toml");
        let (_, a) = merge(&argv, "fdb-age = 10\nworkers = 3", p, &m).unwrap();
        let (_, b) = merge(&argv, "fdb-age = 20\nflood-rate = 5", p, &m).unwrap();
        let mut c = changed(&a, &b);
        c.sort();
        assert_eq!(
            c,
            vec!["fdb_age", "flood_rate"],
            "workers is the command line's"
        );
    }

    #[test]
    fn the_file_sets_and_the_command_line_overrides() {
        let a = parse(
            &["--fdb-age", "60"],
            "fdb-age = 120\nnat_udp_timeout = 600\nlog-level = \"debug\"\ndns-upstream = [\"192.0.2.53\", \"192.0.2.54\"]\ndocker-plugin = true\n",
        )
        .unwrap();
        assert_eq!(a.fdb_age, 60, "the flag wins");
        assert_eq!(a.nat_udp_timeout, 600, "snake_case keys too");
        assert_eq!(a.log_level, "debug");
        assert_eq!(a.dns_upstream, vec!["192.0.2.53", "192.0.2.54"]);
        assert_eq!(
            a.docker_plugin.as_deref(),
            Some(Path::new("/run/docker/plugins/vswitch.sock"))
        );
        let a = parse(&[], "").unwrap();
        assert_eq!(a.fdb_age, 300, "defaults without keys");
    }

    /// dist/vswitchd.toml, installed as the sample: as it is, vswitchd's defaults; each
    /// key it shows commented out is a flag that takes the value shown.
    #[test]
    fn the_sample_file_is_defaults_and_its_keys_are_flags() {
        let sample = include_str!("../../../../dist/vswitchd.toml");
        let defaults = parse(&[], "").unwrap();
        assert_eq!(
            format!("{:?}", parse(&[], sample).unwrap()),
            format!("{defaults:?}")
        );
        let keys: Vec<&str> = sample
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .collect();
        assert!(keys.len() >= 5, "{keys:?}");
        parse(&[], &keys.join("\n")).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        for (file, says) in [
            ("no-such-key = 1", "unknown key \"no-such-key\""),
            ("config = \"/x\"", "unknown key \"config\""),
            ("fdb-age = \"soon\"", "key \"fdb-age\""),
            ("fdb-age = [1, 2]", "key \"fdb-age\""),
            ("fdb-age = ", "not valid TOML"),
            ("dns-upstream = [{ a = 1 }]", "key \"dns-upstream\""),
        ] {
            let e = parse(&[], file).unwrap_err();
            assert!(e.contains(says), "{file:?}: {e}");
            assert!(e.contains("/etc/vswitchd/vswitchd.toml"), "{e}");
        }
    }
}
