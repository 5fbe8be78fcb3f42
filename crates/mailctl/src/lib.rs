//! # NAME
//! mailctl — postern administration tool
//!
//! # SYNOPSIS
//! `mailctl [--config FILE] config check [-n]`
//!
//! `sendmail [-t] [-i] [-f sender] [-F name] [-C config] [recipient ...]`
//! (mailctl installed or linked under the name `sendmail`; see [`cmd::sendmail`])
//!
//! # DESCRIPTION
//! One entry point for the operator. Each subcommand group lives in its own
//! module under `cmd/`; later work adds `domain`, `user`, `alias`, `queue`
//! and the `sendmail`, `newaliases` and `mailq` entry points.
//!
//! * `config check` loads the configuration exactly as the daemons do,
//!   reports the first error as `file: key: reason` (exit 78), or prints the
//!   effective configuration: keys set in the file or environment first
//!   (what `postconf -n` / `doveconf -n` show), then every other key with its
//!   default. `-n` prints only the first part.
//!
//! # EXIT STATUS
//! 0 success, 1 failure, 64 usage error, 78 configuration error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use postern_common::config::{CONFIG_ENV, DEFAULT_CONFIG_PATH};

pub mod cmd;

/// postern administration tool.
#[derive(Debug, Parser)]
#[command(name = "mailctl", version, about)]
pub struct Args {
    /// Configuration file.
    #[arg(short, long, global = true, env = CONFIG_ENV, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Configuration: check and show.
    #[command(subcommand)]
    Config(cmd::config::ConfigCmd),
}

/// Parse the command line and run. Called as `sendmail` (a link to
/// mailctl), it behaves as sendmail(1).
pub fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("mailctl");
    if invoked_as == "sendmail" {
        return ExitCode::from(cmd::sendmail::run(&argv[1..]));
    }
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    match args.command {
        Command::Config(c) => cmd::config::run(&args.config, c),
    }
}
