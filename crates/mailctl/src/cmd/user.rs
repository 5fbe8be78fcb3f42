//! `mailctl user add|del|passwd|list|show|enable|disable|quota`.
//!
//! Passwords are asked on the terminal (twice, echo off) or read from the
//! first line of standard input with `--password-stdin`; there is no way to
//! pass one in argv, where `ps` and shell history would see it. They are
//! hashed with `[authd.directory] default_scheme` (ARGON2ID by default).
//! `user show` prints the hash's scheme, never the hash.

use std::path::Path;

use clap::Subcommand;
use directory::{Address, Directory, DirectoryError, NewUser, User};

use super::admin;
use super::password::{self, Source};

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user; its domain must exist. Asks for the password.
    Add {
        /// Full address, e.g. alice@example.org.
        address: String,
        /// Quota in bytes (suffix K, M, G, T allowed); 0 = none (default).
        #[arg(long, value_parser = admin::parse_size)]
        quota: Option<u64>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user (its Maildir is left on disk).
    Del { address: String },
    /// Set a new password. Asks for it.
    Passwd {
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users, one address per line.
    List {
        /// Only the users of this domain.
        #[arg(long)]
        domain: Option<String>,
        /// Also print enabled/disabled, quota and mailbox.
        #[arg(short, long)]
        long: bool,
    },
    /// Show one user (`key: value` lines; the password scheme, not the hash).
    Show { address: String },
    /// Allow logins and delivery again.
    Enable { address: String },
    /// Refuse logins and delivery (mail to the address bounces).
    Disable { address: String },
    /// Set the quota in bytes (suffix K, M, G, T allowed); 0 = none.
    Quota {
        address: String,
        #[arg(value_parser = admin::parse_size)]
        bytes: u64,
    },
}

pub fn run(file: &Path, cmd: UserCmd) -> u8 {
    let cfg = match admin::load_config(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    admin::block_on(async move {
        let dir = match admin::open(&cfg, file).await {
            Ok(d) => d,
            Err(code) => return code,
        };
        match execute(&dir, cmd).await {
            Ok(changed) => {
                if changed {
                    admin::cache_hint(&dir);
                }
                0
            }
            Err(Failure::Directory(e)) => admin::report(&e),
            Err(Failure::Password(msg)) => {
                eprintln!("mailctl: {msg}");
                admin::EXIT_FAILURE
            }
        }
    })
}

enum Failure {
    Directory(DirectoryError),
    Password(String),
}

impl From<DirectoryError> for Failure {
    fn from(e: DirectoryError) -> Self {
        Failure::Directory(e)
    }
}

fn parse_address(s: &str) -> Result<Address, DirectoryError> {
    Address::parse(s).map_err(|reason| DirectoryError::BadAddress {
        address: s.chars().take(300).collect(),
        reason,
    })
}

/// Run one subcommand; `Ok(true)` when the directory changed.
async fn execute(dir: &Directory, cmd: UserCmd) -> Result<bool, Failure> {
    match cmd {
        UserCmd::Add {
            address,
            quota,
            password_stdin,
        } => {
            // Check what can be checked before asking for a password.
            let addr = parse_address(&address)?;
            if !dir
                .domain_list()
                .await?
                .iter()
                .any(|d| d.name == addr.domain())
            {
                return Err(DirectoryError::UnknownDomain(addr.domain().to_string()).into());
            }
            match dir.user_show(&address).await {
                Ok(u) => return Err(DirectoryError::Duplicate(u.address).into()),
                Err(DirectoryError::UnknownUser(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let pw =
                password::read_new(Source::from_flag(password_stdin)).map_err(Failure::Password)?;
            let mut new = NewUser::new(&address, pw);
            new.quota_bytes = quota.unwrap_or(0);
            let user = dir.user_add(new).await?;
            println!(
                "user {} added, mailbox {}",
                user.address,
                user.mailbox.display()
            );
            Ok(true)
        }
        UserCmd::Del { address } => {
            dir.user_del(&address).await?;
            println!("user {} deleted", parse_address(&address)?);
            Ok(true)
        }
        UserCmd::Passwd {
            address,
            password_stdin,
        } => {
            let user = dir.user_show(&address).await?;
            let pw =
                password::read_new(Source::from_flag(password_stdin)).map_err(Failure::Password)?;
            dir.user_passwd(&user.address, pw).await?;
            println!("password of {} changed", user.address);
            Ok(true)
        }
        UserCmd::List { domain, long } => {
            for u in dir.user_list(domain.as_deref()).await? {
                if long {
                    println!(
                        "{} {} quota={} {}",
                        u.address,
                        if u.enabled { "enabled" } else { "disabled" },
                        u.quota_bytes,
                        u.mailbox.display()
                    );
                } else {
                    println!("{}", u.address);
                }
            }
            Ok(false)
        }
        UserCmd::Show { address } => {
            let u = dir.user_show(&address).await?;
            print!("{}", show(&u));
            Ok(false)
        }
        UserCmd::Enable { address } => {
            dir.user_set_enabled(&address, true).await?;
            println!("user {} enabled", parse_address(&address)?);
            Ok(true)
        }
        UserCmd::Disable { address } => {
            dir.user_set_enabled(&address, false).await?;
            println!("user {} disabled", parse_address(&address)?);
            Ok(true)
        }
        UserCmd::Quota { address, bytes } => {
            dir.user_set_quota(&address, bytes).await?;
            println!("quota of {} set to {bytes}", parse_address(&address)?);
            Ok(true)
        }
    }
}

/// The `user show` text: `key: value` lines. The password appears as its
/// scheme only.
pub fn show(u: &User) -> String {
    let scheme = match directory::scheme::identify(u.password_hash.expose()) {
        Ok((s, _)) => s.name().to_string(),
        Err(_) => "unrecognised".to_string(),
    };
    let mut s = format!(
        "address: {}\nenabled: {}\nquota: {}\nmailbox: {}\npassword_scheme: {scheme}\n",
        u.address,
        if u.enabled { "yes" } else { "no" },
        u.quota_bytes,
        u.mailbox.display(),
    );
    if u.login != u.address {
        s.push_str(&format!("login: {}\n", u.login));
    }
    if let Some(h) = &u.host {
        s.push_str(&format!("host: {h}\n"));
    }
    if let Some(uid) = u.uid {
        s.push_str(&format!("uid: {uid}\n"));
    }
    if let Some(gid) = u.gid {
        s.push_str(&format!("gid: {gid}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use directory::Secret;

    #[test]
    fn show_prints_the_scheme_never_the_hash() {
        let hash = "{SHA512-CRYPT}$6$salt$abcdefghijklmnop";
        let u = User {
            address: "alice@example.test".into(),
            login: "alice@example.test".into(),
            password_hash: Secret::new(hash.into()),
            quota_bytes: 1024,
            enabled: false,
            mailbox: "/var/vmail/example.test/alice/Maildir".into(),
            host: None,
            uid: Some(5000),
            gid: None,
        };
        let s = show(&u);
        assert!(s.contains("address: alice@example.test\n"), "{s}");
        assert!(s.contains("enabled: no\n"), "{s}");
        assert!(s.contains("quota: 1024\n"), "{s}");
        assert!(s.contains("password_scheme: SHA512-CRYPT\n"), "{s}");
        assert!(s.contains("uid: 5000\n"), "{s}");
        assert!(!s.contains("$6$"), "{s}");
        assert!(!s.contains("abcdefgh"), "{s}");
    }
}
