//! `mailctl pw hash|verify`, like `doveadm pw`: hash a password into a
//! `{SCHEME}...` string for the directory (or for a Dovecot/Postfix table),
//! or check a password against such a string. The password comes from the
//! terminal prompt or `--password-stdin`, never from argv.

use clap::Subcommand;
use directory::scheme::{self, Scheme, VerifyPolicy};

use super::password::{self, Source};

#[derive(Debug, Subcommand)]
pub enum PwCmd {
    /// Print the `{SCHEME}hash` of a password (asked twice, or from stdin).
    Hash {
        /// ARGON2ID (default), BLF-CRYPT, SHA512-CRYPT, SHA256-CRYPT,
        /// SSHA512, SSHA256, SCRAM-SHA-256, PLAIN.
        #[arg(short, long, default_value = "ARGON2ID")]
        scheme: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Check a password against a `{SCHEME}hash` string: exit 0 if it
    /// matches, 1 if not.
    Verify {
        /// The stored hash, with its `{SCHEME}` prefix (a hash is not a secret
        /// the way a password is, but quote it: `$` is special to the shell).
        hash: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// A scheme new hashes can be written in.
pub fn hash_scheme(name: &str) -> Result<Scheme, String> {
    let s = Scheme::from_name(name).ok_or_else(|| format!("unknown scheme {name:?}"))?;
    if !s.can_hash() {
        return Err(format!(
            "scheme {} can be verified but not written (weak or system-only)",
            s.name()
        ));
    }
    Ok(s)
}

pub fn run(cmd: PwCmd) -> u8 {
    match cmd {
        PwCmd::Hash {
            scheme,
            password_stdin,
        } => {
            let scheme = match hash_scheme(&scheme) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("mailctl: {e}");
                    return 64;
                }
            };
            let pw = match password::read_new(Source::from_flag(password_stdin)) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("mailctl: {e}");
                    return 1;
                }
            };
            match scheme::hash(scheme, &pw) {
                Ok(h) => {
                    println!("{h}");
                    0
                }
                Err(e) => {
                    eprintln!("mailctl: {e}");
                    1
                }
            }
        }
        PwCmd::Verify {
            hash,
            password_stdin,
        } => {
            let pw = match password::read_once(Source::from_flag(password_stdin)) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("mailctl: {e}");
                    return 1;
                }
            };
            let policy = VerifyPolicy {
                allow_plaintext: true,
            };
            match scheme::verify(hash.trim(), &pw, policy) {
                Ok(v) => {
                    let note = if v.deprecated {
                        " (deprecated scheme: rehash)"
                    } else {
                        ""
                    };
                    println!("verified {}{note}", v.scheme.name());
                    0
                }
                Err(scheme::SchemeError::Mismatch) => {
                    println!("mismatch");
                    1
                }
                Err(e) => {
                    eprintln!("mailctl: {e}");
                    1
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_schemes() {
        assert_eq!(hash_scheme("sha512-crypt"), Ok(Scheme::Sha512Crypt));
        assert_eq!(hash_scheme("ARGON2ID"), Ok(Scheme::Argon2id));
        assert!(hash_scheme("MD5-CRYPT").is_err());
        assert!(hash_scheme("NOPE").is_err());
    }
}
