//! `mailctl aliases check|rebuild` and the `newaliases` entry point: the
//! local aliases file (`[authd.directory] aliases_file`, sendmail/Postfix
//! `aliases(5)` format).
//!
//! Both parse the file with the same parser and policy authd uses
//! (`allow_command_targets`, `allow_file_targets`, `:include:` files), print
//! every bad line to stderr as `file:line: reason`, and exit 1 if there is
//! any; otherwise they print `<file>: N aliases` and exit 0.
//!
//! There is no compiled database: authd reads the text file itself, at start
//! and on SIGHUP. `rebuild` (= `newaliases` = `sendmail -bi`) therefore
//! *activates* a clean file: when systemd is running
//! (`/run/systemd/system` exists) it runs `systemctl reload postern-authd`;
//! otherwise, or when that fails, it says so and the operator reloads authd
//! (SIGHUP) by hand. A file with bad lines is not activated (authd would
//! skip the bad entries, silently dropping their mail).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use directory::aliases::{self, ParsedAliases};

use super::admin;

#[derive(Debug, Subcommand)]
pub enum AliasesCmd {
    /// Parse the aliases file; report bad lines (exit 1) or the count.
    Check,
    /// Check, then have authd re-read the file (`systemctl reload
    /// postern-authd`). Same as `newaliases`.
    Rebuild,
}

/// The report for a parsed file: (stdout text, stderr lines).
pub fn render(file: &Path, parsed: &ParsedAliases) -> (String, Vec<String>) {
    let errors = parsed.errors.iter().map(|e| e.to_string()).collect();
    let n = parsed.table.len();
    let out = format!(
        "{}: {n} alias{}\n",
        file.display(),
        if n == 1 { "" } else { "es" }
    );
    (out, errors)
}

pub fn run(file: &Path, cmd: AliasesCmd) -> u8 {
    let cfg = match admin::load_config(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dcfg = match postern_authd::directory_config(&cfg, file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("mailctl: configuration error: {e}");
            return admin::EXIT_CONFIG;
        }
    };
    let Some(path) = dcfg.aliases_file.clone() else {
        eprintln!(
            "mailctl: configuration error: {}: authd.directory.aliases_file: not set, \
             there is no aliases file to check",
            file.display()
        );
        return admin::EXIT_CONFIG;
    };
    let parsed = match aliases::load(&path, dcfg.alias_policy()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mailctl: {e}");
            return admin::EXIT_FAILURE;
        }
    };
    let (out, errors) = render(&path, &parsed);
    for e in &errors {
        eprintln!("{e}");
    }
    if !errors.is_empty() {
        eprintln!(
            "mailctl: {}: {} bad line{}{}",
            path.display(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            if matches!(cmd, AliasesCmd::Rebuild) {
                "; not activated"
            } else {
                ""
            }
        );
        return admin::EXIT_FAILURE;
    }
    print!("{out}");
    if matches!(cmd, AliasesCmd::Rebuild) {
        activate();
    }
    0
}

/// Have authd re-read the file.
fn activate() {
    if !Path::new("/run/systemd/system").exists() {
        eprintln!(
            "mailctl: systemd is not running: send SIGHUP to authd to activate the file \
             (`systemctl reload postern-authd` under systemd)"
        );
        return;
    }
    match std::process::Command::new("systemctl")
        .args(["reload", "postern-authd"])
        .status()
    {
        Ok(s) if s.success() => println!("postern-authd reloaded"),
        Ok(s) => eprintln!(
            "mailctl: `systemctl reload postern-authd` failed ({s}); authd reads the file \
             when it starts or is reloaded"
        ),
        Err(e) => eprintln!(
            "mailctl: cannot run systemctl: {e}; reload postern-authd to activate the file"
        ),
    }
}

/// `newaliases [-C FILE | --config FILE]` (argv without argv\[0\]).
pub fn newaliases(args: &[OsString]) -> u8 {
    match newaliases_config(args) {
        Ok(file) => run(&file, AliasesCmd::Rebuild),
        Err(e) => {
            eprintln!("newaliases: {e}");
            eprintln!("usage: newaliases [-C config-file]");
            64
        }
    }
}

/// The configuration file for `newaliases`: `-C FILE`, `--config FILE`,
/// `$POSTERN_CONFIG`, the default path.
pub fn newaliases_config(args: &[OsString]) -> Result<PathBuf, String> {
    // sendmail -bi compatibility: harmless flags.
    entry_point_config(args, &["-bi", "-oi", "-v"])
}

/// The configuration file named by a Postfix-style entry point's arguments
/// (`-C file`, `-Cfile`, `-c file`, `--config[=]file`), else
/// `$POSTERN_CONFIG`, else the default path; `harmless` flags are accepted
/// and ignored, anything else is an error.
pub fn entry_point_config(args: &[OsString], harmless: &[&str]) -> Result<PathBuf, String> {
    let mut file = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_str().ok_or("arguments must be UTF-8")?;
        match a {
            "-C" | "-c" | "--config" => {
                let v = it.next().ok_or(format!("option {a} needs a value"))?;
                file = Some(PathBuf::from(v));
            }
            _ if harmless.contains(&a) => {}
            _ => {
                if let Some(v) = a.strip_prefix("--config=") {
                    file = Some(PathBuf::from(v));
                } else if let Some(v) = a.strip_prefix("-C").filter(|v| !v.is_empty()) {
                    file = Some(PathBuf::from(v));
                } else {
                    return Err(format!("unknown argument {a:?}"));
                }
            }
        }
    }
    Ok(file
        .or_else(|| std::env::var_os(postern_common::config::CONFIG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(postern_common::config::DEFAULT_CONFIG_PATH)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use directory::aliases::{AliasPolicy, parse_str};

    #[test]
    fn render_reports_every_bad_line_with_its_number() {
        let text = "postmaster: root\nbad line without colon\nroot: alice\n\
                    pipe: \"|/bin/true\"\n# comment\nempty:\n";
        let parsed = parse_str(text, "/etc/aliases", AliasPolicy::default());
        let (out, errors) = render(Path::new("/etc/aliases"), &parsed);
        assert_eq!(out, "/etc/aliases: 2 aliases\n");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("/etc/aliases:2: "), "{errors:?}");
        assert!(errors[1].starts_with("/etc/aliases:4: "), "{errors:?}");
        assert!(errors[2].starts_with("/etc/aliases:6: "), "{errors:?}");
    }

    #[test]
    fn newaliases_arguments() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            newaliases_config(&os(&["-C", "/x.toml"])).unwrap(),
            PathBuf::from("/x.toml")
        );
        assert_eq!(
            newaliases_config(&os(&["-C/y.toml"])).unwrap(),
            PathBuf::from("/y.toml")
        );
        assert_eq!(
            newaliases_config(&os(&["--config", "/z.toml"])).unwrap(),
            PathBuf::from("/z.toml")
        );
        assert!(newaliases_config(&os(&["-C"])).is_err());
        assert!(newaliases_config(&os(&["root"])).is_err());
    }
}
