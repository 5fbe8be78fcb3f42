//! `mailctl dkim`: DKIM signing keys.
//!
//! ```text
//! mailctl dkim generate DOMAIN [--selector S] [--algorithm rsa|ed25519]
//! mailctl dkim list [DOMAIN]
//! mailctl dkim activate DOMAIN SELECTOR
//! ```
//!
//! Keys live in `[checks.dkim_sign] key_directory` (default
//! `<state_directory>/dkim`) as `<domain>/<selector>.pem` (PKCS#8, 0600,
//! given to the state directory's owner when run as root) with
//! `<domain>/active` naming the selector that signs; see
//! `postern_checks::auth::keys` for why files and not the directory
//! database. `generate` prints the TXT record to publish; a domain's first
//! key is active at once, a later one only after `activate` (publish its
//! record first). smtpd reads keys per message: no reload is needed.
//!
//! Rotation: `generate DOMAIN --selector NEW`, publish the printed record
//! (`mailctl dns DOMAIN` prints every key's), wait for the old record's TTL,
//! `activate DOMAIN NEW`; keep the old record published for a few days
//! (mail in flight is verified with it), then delete the old `.pem` and its
//! record.

use std::path::Path;

use clap::Subcommand;
use postern_checks::auth::keys::{Algorithm, KeyError, KeyInfo, KeyStore};

use super::admin;
use super::dns::{DEFAULT_TTL, txt_rdata};

#[derive(Debug, Subcommand)]
pub enum DkimCmd {
    /// Create a key pair and print the DNS TXT record to publish.
    Generate {
        /// The mail domain (the signature's d=).
        domain: String,
        /// Selector (one DNS label). Default: `rsa-YYYYMMDD` / `ed-YYYYMMDD`.
        #[arg(long)]
        selector: Option<String>,
        /// rsa (RSA-2048, rsa-sha256) or ed25519 (RFC 8463, ed25519-sha256).
        #[arg(long, default_value = "rsa")]
        algorithm: String,
    },
    /// Every key (or one domain's) with its selector, algorithm and state.
    List { domain: Option<String> },
    /// Make a selector the one that signs the domain's mail.
    Activate { domain: String, selector: String },
}

fn store(file: &Path) -> Result<KeyStore, u8> {
    let cfg = admin::load_config(file)?;
    Ok(KeyStore::new(
        cfg.checks
            .dkim_sign
            .key_directory(&cfg.global.state_directory),
    ))
}

fn fail(e: KeyError) -> u8 {
    eprintln!("mailctl: {e}");
    match e {
        KeyError::BadDomain(_) | KeyError::BadSelector(_) => admin::EXIT_DATAERR,
        _ => admin::EXIT_FAILURE,
    }
}

/// The zone-file line of a key's record.
pub fn record_line(k: &KeyInfo) -> String {
    format!(
        "{}. {DEFAULT_TTL} IN TXT {}",
        k.dns_name(),
        txt_rdata(&k.dns_txt())
    )
}

fn default_selector(algorithm: Algorithm) -> String {
    let d = time::OffsetDateTime::now_utc().date();
    let prefix = match algorithm {
        Algorithm::Rsa => "rsa",
        Algorithm::Ed25519 => "ed",
    };
    format!(
        "{prefix}-{:04}{:02}{:02}",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

pub fn run(file: &Path, cmd: DkimCmd) -> u8 {
    let ks = match store(file) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match cmd {
        DkimCmd::Generate {
            domain,
            selector,
            algorithm,
        } => {
            let Some(alg) = Algorithm::parse(&algorithm) else {
                eprintln!("mailctl: --algorithm {algorithm:?}: use rsa or ed25519");
                return 64;
            };
            let selector = selector.unwrap_or_else(|| default_selector(alg));
            let k = match ks.generate(&domain, &selector, alg) {
                Ok(k) => k,
                Err(e) => return fail(e),
            };
            println!(
                "created {} key {} for {} in {}{}",
                alg.k(),
                k.selector,
                k.domain,
                k.path.display(),
                if k.active { " (active: signs now)" } else { "" }
            );
            println!("publish this DNS record:");
            println!("{}", record_line(&k));
            if !k.active {
                println!(
                    "then, once it is visible in DNS: mailctl dkim activate {} {}",
                    k.domain, k.selector
                );
            }
            0
        }
        DkimCmd::List { domain } => {
            let domains = match domain {
                Some(d) => match postern_checks::auth::keys::check_domain(&d) {
                    Ok(d) => vec![d],
                    Err(e) => return fail(e),
                },
                None => ks.domains(),
            };
            let mut code = 0;
            for d in domains {
                for k in ks.keys(&d) {
                    match k {
                        Ok(k) => println!(
                            "{} {} {} {}",
                            k.domain,
                            k.selector,
                            k.algorithm.k(),
                            if k.active { "active" } else { "inactive" }
                        ),
                        Err(e) => {
                            eprintln!("mailctl: {e}");
                            code = admin::EXIT_FAILURE;
                        }
                    }
                }
            }
            code
        }
        DkimCmd::Activate { domain, selector } => match ks.activate(&domain, &selector) {
            Ok(()) => {
                println!("{domain}: selector {selector} signs from now on");
                0
            }
            Err(e) => fail(e),
        },
    }
}
