//! `mailctl config check`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use postern_common::Config;
use postern_common::daemon::EXIT_CONFIG;

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration and print the effective values.
    Check {
        /// Only the keys set in the file or environment (like `postconf -n`).
        #[arg(short = 'n', long)]
        non_default: bool,
    },
}

pub fn run(file: &Path, cmd: ConfigCmd) -> ExitCode {
    let ConfigCmd::Check { non_default } = cmd;
    let cfg = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailctl: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", render(file, &cfg, non_default));
    ExitCode::SUCCESS
}

/// The text printed by `config check`.
pub fn render(file: &Path, cfg: &Config, non_default: bool) -> String {
    let rows = cfg.annotated();
    let mut s = format!(
        "# {}: valid\n# set in the file or environment\n",
        file.display()
    );
    for (k, v, explicit) in &rows {
        if *explicit {
            s.push_str(&format!("{k} = {v}\n"));
        }
    }
    if !non_default {
        s.push_str("# defaults (and values derived from other keys)\n");
        for (k, v, explicit) in &rows {
            if !*explicit {
                s.push_str(&format!("{k} = {v}\n"));
            }
        }
    }
    s
}
