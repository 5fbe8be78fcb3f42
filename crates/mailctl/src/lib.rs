//! # NAME
//! mailctl — postern administration tool
//!
//! # SYNOPSIS
//! ```text
//! mailctl [--config FILE] config check [-n]
//! mailctl config export [--format yaml|json] [-o FILE]
//! mailctl config apply FILE [--dry-run]
//! mailctl domain add DOMAIN | del DOMAIN | list [-l]
//! mailctl user add ADDRESS [--quota BYTES] [--password-stdin]
//! mailctl user del ADDRESS
//! mailctl user passwd ADDRESS [--password-stdin]
//! mailctl user list [--domain DOMAIN] [-l]
//! mailctl user show ADDRESS
//! mailctl user enable ADDRESS | disable ADDRESS | quota ADDRESS BYTES
//! mailctl alias add SOURCE DEST [DEST...]      (SOURCE @domain = catch-all)
//! mailctl alias del SOURCE [DEST]
//! mailctl alias list [SOURCE | @DOMAIN | DOMAIN]
//! mailctl aliases check | rebuild
//! mailctl pw hash [-s SCHEME] [--password-stdin]
//! mailctl pw verify HASH [--password-stdin]
//! mailctl queue list [QUEUE...] | show QUEUE_ID [--envelope]
//! mailctl queue hold|release|delete QUEUE_ID... | ALL [QUEUE]
//! mailctl queue flush [QUEUE_ID...]
//! mailctl import maildir|mbox PATH --user ADDRESS [--folder F]
//! mailctl export maildir|mbox --user ADDRESS PATH [--folder F]
//! mailctl dns DOMAIN [--ip IPV4]... [--ipv6 IPV6]... [--json] [--ttl SECS] [--mx-preference N]
//! mailctl status [--json] [--timeout SECS]
//! mailctl doctor [DOMAIN] [--resolver IP:PORT]... [--ip IPV4]... [--ipv6 IPV6]... [--ca-file PEM] [--relay-source IP]
//! mailctl backup DIR
//! mailctl restore DIR [--force]
//! mailctl dkim generate DOMAIN [--selector S] [--algorithm rsa|ed25519]
//! mailctl dkim list [DOMAIN] | activate DOMAIN SELECTOR
//! mailq [-C config]
//! newaliases [-C config]
//! sendmail [-t] [-i] [-f sender] [-F name] [-N dsn] [-R ret] [-V envid] [-C config] [recipient ...]
//! ```
//! (`newaliases`, `sendmail` and `mailq` are mailctl installed or linked
//! under that name; see [`cmd::aliases`], [`cmd::sendmail`] and
//! [`cmd::queue`].)
//!
//! # DESCRIPTION
//! One entry point for the operator. Each subcommand group lives in its own
//! module under `cmd/`.
//!
//! * `config check` loads the configuration exactly as the daemons do,
//!   reports the first error as `file: key: reason` (exit 78), or prints the
//!   effective configuration: keys set in the file or environment first
//!   (what `postconf -n` / `doveconf -n` show), then every other key with its
//!   default. `-n` prints only the first part.
//! * `domain`, `user`, `alias` manage the directory authd serves. mailctl
//!   opens it directly, exactly as authd does (`[authd.directory]`; SQLite,
//!   MySQL/MariaDB or PostgreSQL with the postern schema; the `system`
//!   backend is managed with useradd/passwd and is refused). A user's domain
//!   must exist first; `domain del` is refused while users or aliases remain.
//!   Passwords are asked on the terminal (twice, echo off; the terminal is
//!   restored on error and on Ctrl-C) or read from the first line of standard
//!   input with `--password-stdin` — never from argv — and hashed with
//!   `default_scheme` (ARGON2ID unless configured). `user show` prints the
//!   password scheme, never the hash. Output is plain: one item per line
//!   (`list`), `key: value` lines (`show`), `source destination` lines
//!   (`alias list`).
//! * authd caches lookups, negative answers included, for
//!   `[authd.directory] cache_ttl_secs` (default 60 s): after a change
//!   mailctl prints a note that authd sees it within that time, or at once
//!   after `systemctl reload postern-authd` (SIGHUP empties the cache).
//! * When run as root with SQLite, database files that mailctl created
//!   (`-wal`, `-shm`, the database itself) are given to the owner of their
//!   directory (the state directory, owned by `postern`), so authd can still
//!   write them.
//! * `aliases check|rebuild` and `newaliases`: see [`cmd::aliases`]; bad
//!   lines are printed as `file:line: reason`.
//! * `pw hash|verify`: like `doveadm pw`; see [`cmd::pw`].
//! * `queue list|show|hold|release|delete|flush` and `mailq`: the mail
//!   queue over queue-manager's private socket, Postfix `mailq` /
//!   `postsuper` / `postcat -q` style; see [`cmd::queue`].
//! * `dns DOMAIN`: every DNS record the domain needs (MX, A/AAAA, SPF,
//!   DKIM keys, DMARC, MTA-STS, TLS-RPT, RFC 6186 SRV, autoconfig CNAMEs)
//!   as a BIND zone fragment or JSON; see [`cmd::dns`].
//! * `dkim generate|list|activate`: DKIM signing keys (RSA-2048, Ed25519)
//!   and the TXT record to publish; rotation; see [`cmd::dkim`].
//! * `import`/`export`: a Maildir (with its subfolders and Dovecot UIDs)
//!   or an mbox into or out of a user's folder, flags and internal dates
//!   kept; see [`cmd::import`].
//! * `doctor`: published DNS against `dns`, reverse DNS, the certificate of
//!   every TLS listener, an open-relay self-test; each problem with its
//!   fix, exit 1 when there is one; see [`cmd::doctor`].
//! * `config export|apply`: the directory (domains, users with password
//!   hashes, aliases, transports) as YAML/JSON, and made to match such a
//!   file (`--dry-run` prints the difference); see [`cmd::config::state`].
//! * `backup DIR`/`restore DIR`: directory, spool, mailboxes (and DKIM
//!   keys); see [`cmd::backup`].
//!
//! # EXIT STATUS
//! 0 success; 1 failure (unknown domain/user/alias, duplicate, domain not
//! empty, password mismatch, bad lines in the aliases file, `pw verify`
//! mismatch, unknown queue id); 64 usage error; 65 bad data (a malformed
//! address or domain); 75 queue-manager unreachable (`queue`, `mailq`);
//! 77 no permission to use the queue socket; 78 configuration error.

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
    /// Domains of the directory.
    #[command(subcommand)]
    Domain(cmd::domain::DomainCmd),
    /// Mailbox users.
    #[command(subcommand)]
    User(cmd::user::UserCmd),
    /// Virtual aliases (forwardings), catch-alls (`@domain`).
    #[command(subcommand)]
    Alias(cmd::alias::AliasCmd),
    /// The local aliases file (`aliases_file`): check, rebuild (= newaliases).
    #[command(subcommand)]
    Aliases(cmd::aliases::AliasesCmd),
    /// Password hashes, like `doveadm pw`.
    #[command(subcommand)]
    Pw(cmd::pw::PwCmd),
    /// The mail queue: list (= mailq), show, hold, release, delete, flush.
    #[command(subcommand)]
    Queue(cmd::queue::QueueCmd),
    /// The DNS records a mail domain needs (BIND zone fragment or --json).
    Dns(cmd::dns::DnsCmd),
    /// DKIM signing keys: generate (prints the TXT record), list, activate.
    #[command(subcommand)]
    Dkim(cmd::dkim::DkimCmd),
    /// Import a Maildir or an mbox into a user's mailbox.
    #[command(subcommand)]
    Import(cmd::import::ImportCmd),
    /// Export a user's folder as a Maildir or an mbox.
    #[command(subcommand)]
    Export(cmd::import::ExportCmd),
    /// Check DNS, reverse DNS, TLS certificates and relaying; print fixes.
    Doctor(cmd::doctor::DoctorCmd),
    /// Snapshot directory, spool and mailboxes into a directory.
    Backup(cmd::backup::BackupCmd),
    /// Put a snapshot made by `backup` back.
    Restore(cmd::backup::RestoreCmd),
    /// Each daemon's state, version, uptime, listeners and protocol checks.
    Status(cmd::status::StatusCmd),
}

/// Parse the command line and run. Called as `sendmail`, `newaliases` or
/// `mailq` (a link to mailctl), it behaves as that command.
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
    if invoked_as == "newaliases" {
        return ExitCode::from(cmd::aliases::newaliases(&argv[1..]));
    }
    if invoked_as == "mailq" {
        return ExitCode::from(cmd::queue::mailq(&argv[1..]));
    }
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    match args.command {
        Command::Config(c) => ExitCode::from(cmd::config::run(&args.config, c)),
        Command::Domain(c) => ExitCode::from(cmd::domain::run(&args.config, c)),
        Command::User(c) => ExitCode::from(cmd::user::run(&args.config, c)),
        Command::Alias(c) => ExitCode::from(cmd::alias::run(&args.config, c)),
        Command::Aliases(c) => ExitCode::from(cmd::aliases::run(&args.config, c)),
        Command::Pw(c) => ExitCode::from(cmd::pw::run(c)),
        Command::Queue(c) => ExitCode::from(cmd::queue::run(&args.config, c)),
        Command::Dns(c) => ExitCode::from(cmd::dns::run(&args.config, c)),
        Command::Dkim(c) => ExitCode::from(cmd::dkim::run(&args.config, c)),
        Command::Import(c) => ExitCode::from(cmd::import::run_import(&args.config, c)),
        Command::Export(c) => ExitCode::from(cmd::import::run_export(&args.config, c)),
        Command::Doctor(c) => ExitCode::from(cmd::doctor::run(&args.config, c)),
        Command::Backup(c) => ExitCode::from(cmd::backup::run_backup(&args.config, c)),
        Command::Restore(c) => ExitCode::from(cmd::backup::run_restore(&args.config, c)),
        Command::Status(c) => ExitCode::from(cmd::status::run(&args.config, c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmd::alias::AliasCmd;
    use cmd::pw::PwCmd;
    use cmd::user::UserCmd;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("mailctl").chain(args.iter().copied()))
    }

    #[test]
    fn user_add_takes_quota_and_password_stdin_but_no_password_argument() {
        let a = parse(&[
            "user",
            "add",
            "a@b.test",
            "--quota",
            "1M",
            "--password-stdin",
        ])
        .unwrap();
        match a.command {
            Command::User(UserCmd::Add {
                address,
                quota,
                password_stdin,
            }) => {
                assert_eq!(address, "a@b.test");
                assert_eq!(quota, Some(1 << 20));
                assert!(password_stdin);
            }
            other => panic!("{other:?}"),
        }
        // A password in argv is refused, in any position.
        assert!(parse(&["user", "add", "a@b.test", "secret"]).is_err());
        assert!(parse(&["user", "passwd", "a@b.test", "secret"]).is_err());
        assert!(parse(&["user", "add", "a@b.test", "--password", "secret"]).is_err());
        assert!(parse(&["pw", "hash", "secret"]).is_err());
        assert!(parse(&["user", "add", "a@b.test", "--quota", "lots"]).is_err());
        assert!(parse(&["user", "add"]).is_err());
    }

    #[test]
    fn user_list_and_config_option() {
        let a = parse(&["user", "list", "--domain", "b.test", "--config", "/x.toml"]).unwrap();
        assert_eq!(a.config, PathBuf::from("/x.toml"));
        assert!(matches!(
            a.command,
            Command::User(UserCmd::List { domain: Some(ref d), long: false }) if d == "b.test"
        ));
        assert!(parse(&["user", "enable", "a@b.test"]).is_ok());
        assert!(parse(&["user", "disable"]).is_err());
        assert!(parse(&["user", "quota", "a@b.test", "2G"]).is_ok());
    }

    #[test]
    fn alias_arguments() {
        let a = parse(&["alias", "add", "@b.test", "x@b.test", "y@c.test"]).unwrap();
        match a.command {
            Command::Alias(AliasCmd::Add {
                source,
                destinations,
            }) => {
                assert_eq!(source, "@b.test");
                assert_eq!(destinations, ["x@b.test", "y@c.test"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            parse(&["alias", "add", "t@b.test"]).is_err(),
            "a destination is required"
        );
        assert!(parse(&["alias", "del", "t@b.test"]).is_ok());
        assert!(parse(&["alias", "del", "t@b.test", "x@b.test"]).is_ok());
        assert!(parse(&["alias", "del", "t@b.test", "x@b.test", "y"]).is_err());
        assert!(parse(&["alias", "list"]).is_ok());
    }

    #[test]
    fn domain_pw_and_aliases_arguments() {
        assert!(parse(&["domain", "add", "b.test"]).is_ok());
        assert!(parse(&["domain", "add"]).is_err());
        assert!(parse(&["domain", "list", "-l"]).is_ok());
        let a = parse(&["pw", "hash", "-s", "SHA512-CRYPT"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Pw(PwCmd::Hash { ref scheme, password_stdin: false }) if scheme == "SHA512-CRYPT"
        ));
        assert!(matches!(
            parse(&["pw", "hash"]).unwrap().command,
            Command::Pw(PwCmd::Hash { ref scheme, .. }) if scheme == "ARGON2ID"
        ));
        assert!(parse(&["aliases", "check"]).is_ok());
        assert!(parse(&["aliases", "rebuild"]).is_ok());
        assert!(parse(&["aliases", "frobnicate"]).is_err());
    }

    #[test]
    fn queue_arguments() {
        use cmd::queue::QueueCmd;
        assert!(matches!(
            parse(&["queue", "list"]).unwrap().command,
            Command::Queue(QueueCmd::List { ref queues }) if queues.is_empty()
        ));
        assert!(matches!(
            parse(&["queue", "show", "0123456789ABCDEF", "-e"])
                .unwrap()
                .command,
            Command::Queue(QueueCmd::Show { envelope: true, .. })
        ));
        assert!(parse(&["queue", "show"]).is_err());
        assert!(
            parse(&["queue", "hold"]).is_err(),
            "an id or ALL is required"
        );
        assert!(parse(&["queue", "delete", "ALL", "deferred"]).is_ok());
        assert!(parse(&["queue", "release", "0123456789ABCDEF"]).is_ok());
        assert!(parse(&["queue", "flush"]).is_ok());
    }
}
