//! pktgen: the lab packet generator (`tx`) and sink (`rx`) of vswitch. Exit codes: 0 on
//! success, 1 on a runtime error, 2 on a usage error (bad flags or values).

mod backend;
mod cli;
mod pace;
mod payload;
mod report;
mod rx;
mod sink;
mod stop;
mod template;
mod tx;
mod xdp_count;
mod xdp_live;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command};

/// Why a run failed, which decides the exit code.
pub enum Failure {
    /// The request itself is wrong: exit 2.
    Usage(String),
    /// The request was fine but something failed while carrying it out: exit 1.
    Runtime(anyhow::Error),
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = clidoc::requested(&argv, Cli::command, "1") {
        return code;
    }
    // clap prints its own usage errors and exits 2 (0 for --help and --version).
    let cli = Cli::parse();
    if let Err(e) = stop::install() {
        eprintln!("pktgen: {e}");
        std::process::exit(1);
    }
    let result = match &cli.cmd {
        Command::Tx(args) => tx::run(args).map(|r| report::print(&r, args.json, report::tx_text)),
        Command::Rx(args) => rx::run(args).map(|r| report::print(&r, args.json, report::rx_text)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            Cli::command()
                .error(clap::error::ErrorKind::ValueValidation, msg)
                .exit();
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("pktgen: {e:#}");
            std::process::exit(1);
        }
    }
}
