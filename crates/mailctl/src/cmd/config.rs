//! `mailctl config check`, and the directory state as a file:
//! `mailctl config export` / `mailctl config apply` (see [`state`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use postern_common::Config;
use postern_common::daemon::EXIT_CONFIG;

pub mod state;

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration and print the effective values.
    Check {
        /// Only the keys set in the file or environment (like `postconf -n`).
        #[arg(short = 'n', long)]
        non_default: bool,
    },
    /// Print the whole directory (domains, users with their password
    /// hashes, aliases, transports) as YAML or JSON.
    Export {
        #[arg(long, value_enum, default_value = "yaml")]
        format: state::Format,
        /// Write to this file (mode 0600) instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Make the directory match FILE (YAML or JSON from `config export`).
    Apply {
        file: PathBuf,
        /// Only print what would change.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(file: &Path, cmd: ConfigCmd) -> u8 {
    let non_default = match cmd {
        ConfigCmd::Check { non_default } => non_default,
        ConfigCmd::Export { format, output } => {
            return state::run_export(file, format, output.as_deref());
        }
        ConfigCmd::Apply {
            file: input,
            dry_run,
        } => return state::run_apply(file, &input, dry_run),
    };
    let cfg = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailctl: configuration error: {e}");
            return EXIT_CONFIG;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", render(file, &cfg, non_default));
    0
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
