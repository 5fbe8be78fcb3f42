//! DKIM keys on disk: what `mailctl dkim` writes and the `dkim_sign` check
//! reads.
//!
//! Layout under `[checks.dkim_sign] key_directory` (default
//! `<state_directory>/dkim`):
//!
//! ```text
//! <dir>/<domain>/<selector>.pem   private key, PKCS#8 PEM, mode 0600
//! <dir>/<domain>/active           the selector that signs (one line)
//! ```
//!
//! Files rather than the directory database: a private key is a secret of
//! the signing host, read only by smtpd (user `postern`); the directory may
//! be a MySQL/PostgreSQL database shared by several nodes and readable by
//! everyone holding its credentials (authd, mailctl, the web admin). Files
//! also make rotation and backup plain `ls`/`cp` (like OpenDKIM's key
//! files). Several selectors of a domain may exist at once: every one is
//! published by `mailctl dns`, only `active` signs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};

/// RSA key size `mailctl dkim generate` uses (RFC 8301: at least 1024,
/// 2048 recommended; larger keys do not fit a single TXT string anyway).
pub const RSA_BITS: usize = 2048;
/// Bound on a key file read from disk (a 4096-bit RSA PEM is ~3.3 KB).
const MAX_KEY_FILE: u64 = 64 * 1024;
/// Name of the file holding the active selector.
pub const ACTIVE_FILE: &str = "active";

/// Key algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// rsa-sha256 (RFC 6376), 2048 bits.
    Rsa,
    /// ed25519-sha256 (RFC 8463).
    Ed25519,
}

impl Algorithm {
    /// The DNS record's `k=` value.
    pub fn k(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rsa" | "rsa-sha256" => Some(Algorithm::Rsa),
            "ed25519" | "ed25519-sha256" => Some(Algorithm::Ed25519),
            _ => None,
        }
    }
}

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a valid domain name")]
    BadDomain(String),
    #[error("{0}: a selector is letters, digits and '-' (at most 63)")]
    BadSelector(String),
    #[error("{0}: exists already (pick another selector)")]
    Exists(PathBuf),
    #[error("{path}: not a usable private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("no key {selector} for {domain}")]
    NoSuchKey { domain: String, selector: String },
    #[error("key generation failed: {0}")]
    Generate(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A domain name as used in the layout (lowercase, no trailing dot).
pub fn check_domain(domain: &str) -> Result<String, KeyError> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(d)
    } else {
        Err(KeyError::BadDomain(domain.to_string()))
    }
}

/// A selector: one DNS label (we do not create dotted selectors).
pub fn check_selector(selector: &str) -> Result<String, KeyError> {
    let s = selector.to_ascii_lowercase();
    let ok = !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(s)
    } else {
        Err(KeyError::BadSelector(selector.to_string()))
    }
}

/// One key of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub domain: String,
    pub selector: String,
    pub algorithm: Algorithm,
    /// It is the selector in `active`.
    pub active: bool,
    /// The public key as published (`p=`), base64.
    pub public_key: String,
    pub path: PathBuf,
}

impl KeyInfo {
    /// `<selector>._domainkey.<domain>` (no trailing dot).
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT record's text (RFC 6376 3.6.1).
    pub fn dns_txt(&self) -> String {
        format!("v=DKIM1; k={}; p={}", self.algorithm.k(), self.public_key)
    }
}

/// A loaded private key, ready to sign.
pub enum SigningKey {
    Rsa(RsaKey<Sha256>),
    Ed25519(Ed25519Key),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        match self {
            SigningKey::Rsa(_) => f.write_str("SigningKey::Rsa(***)"),
            SigningKey::Ed25519(_) => f.write_str("SigningKey::Ed25519(***)"),
        }
    }
}

/// The parsed forms of a key file.
struct Parsed {
    algorithm: Algorithm,
    public_key: Vec<u8>,
    signing: SigningKey,
}

fn parse_pem(path: &Path, pem: &[u8]) -> Result<Parsed, KeyError> {
    let bad = |reason: String| KeyError::BadKey {
        path: path.to_path_buf(),
        reason,
    };
    let item = rustls_pemfile::read_one(&mut &pem[..])
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("no PEM block".into()))?;
    match item {
        rustls_pemfile::Item::Pkcs8Key(der) => {
            let der = der.secret_pkcs8_der();
            if let Ok(ed) = Ed25519Key::from_pkcs8_maybe_unchecked_der(der) {
                return Ok(Parsed {
                    algorithm: Algorithm::Ed25519,
                    public_key: ed.public_key(),
                    signing: SigningKey::Ed25519(ed),
                });
            }
            let rsa = rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| bad(e.to_string()))?;
            let public_key = rsa
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| bad(e.to_string()))?
                .into_vec();
            let signing = RsaKey::<Sha256>::from_pkcs8_der(der).map_err(|e| bad(e.to_string()))?;
            Ok(Parsed {
                algorithm: Algorithm::Rsa,
                public_key,
                signing: SigningKey::Rsa(signing),
            })
        }
        rustls_pemfile::Item::Pkcs1Key(der) => {
            let der = der.secret_pkcs1_der();
            let rsa = rsa::RsaPrivateKey::from_pkcs1_der(der).map_err(|e| bad(e.to_string()))?;
            let public_key = rsa
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| bad(e.to_string()))?
                .into_vec();
            let signing = RsaKey::<Sha256>::from_der(der).map_err(|e| bad(e.to_string()))?;
            Ok(Parsed {
                algorithm: Algorithm::Rsa,
                public_key,
                signing: SigningKey::Rsa(signing),
            })
        }
        _ => Err(bad(
            "not a PKCS#8 or PKCS#1 private key (BEGIN PRIVATE KEY / BEGIN RSA PRIVATE KEY)".into(),
        )),
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, KeyError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    if meta.len() > MAX_KEY_FILE {
        return Err(KeyError::BadKey {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_KEY_FILE} bytes"),
        });
    }
    fs::read(path).map_err(io(path))
}

/// The key directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn domain_dir(&self, domain: &str) -> PathBuf {
        self.dir.join(domain)
    }

    /// The active selector of `domain`, if any.
    pub fn active_selector(&self, domain: &str) -> Option<String> {
        let p = self.domain_dir(domain).join(ACTIVE_FILE);
        let s = fs::read_to_string(p).ok()?;
        check_selector(s.trim()).ok()
    }

    /// Create a key; the domain's first key becomes active. Files are 0600,
    /// directories 0700; when run as root, both are given to the owner of
    /// the key directory's parent (the state directory, owned by the user
    /// smtpd runs as).
    pub fn generate(
        &self,
        domain: &str,
        selector: &str,
        algorithm: Algorithm,
    ) -> Result<KeyInfo, KeyError> {
        let domain = check_domain(domain)?;
        let selector = check_selector(selector)?;
        let ddir = self.domain_dir(&domain);
        for d in [&self.dir, &ddir] {
            if !d.is_dir() {
                fs::create_dir_all(d).map_err(io(d))?;
                fs::set_permissions(d, fs::Permissions::from_mode(0o700)).map_err(io(d))?;
                self.give_away(d);
            }
        }
        let path = ddir.join(format!("{selector}.pem"));
        if path.exists() {
            return Err(KeyError::Exists(path));
        }
        let pem = match algorithm {
            Algorithm::Rsa => {
                let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), RSA_BITS)
                    .map_err(|e| KeyError::Generate(e.to_string()))?;
                key.to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| KeyError::Generate(e.to_string()))?
                    .as_bytes()
                    .to_vec()
            }
            Algorithm::Ed25519 => {
                let der =
                    Ed25519Key::generate_pkcs8().map_err(|e| KeyError::Generate(e.to_string()))?;
                pem_encode("PRIVATE KEY", &der).into_bytes()
            }
        };
        // Check it loads before it is written.
        parse_pem(&path, &pem)?;
        let tmp = ddir.join(format!(".{selector}.pem.tmp"));
        {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all(&pem).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        self.give_away(&tmp);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        if self.active_selector(&domain).is_none() {
            self.activate(&domain, &selector)?;
        }
        self.info(&domain, &selector)
    }

    /// Make `selector` the one that signs `domain`'s mail.
    pub fn activate(&self, domain: &str, selector: &str) -> Result<(), KeyError> {
        let domain = check_domain(domain)?;
        let selector = check_selector(selector)?;
        let ddir = self.domain_dir(&domain);
        if !ddir.join(format!("{selector}.pem")).is_file() {
            return Err(KeyError::NoSuchKey { domain, selector });
        }
        let tmp = ddir.join(".active.tmp");
        fs::write(&tmp, format!("{selector}\n")).map_err(io(&tmp))?;
        self.give_away(&tmp);
        let dest = ddir.join(ACTIVE_FILE);
        fs::rename(&tmp, &dest).map_err(io(&dest))?;
        Ok(())
    }

    /// One key's details.
    pub fn info(&self, domain: &str, selector: &str) -> Result<KeyInfo, KeyError> {
        let path = self.domain_dir(domain).join(format!("{selector}.pem"));
        if !path.is_file() {
            return Err(KeyError::NoSuchKey {
                domain: domain.to_string(),
                selector: selector.to_string(),
            });
        }
        let parsed = parse_pem(&path, &read_bounded(&path)?)?;
        Ok(KeyInfo {
            domain: domain.to_string(),
            selector: selector.to_string(),
            algorithm: parsed.algorithm,
            active: self.active_selector(domain).as_deref() == Some(selector),
            public_key: base64::engine::general_purpose::STANDARD.encode(&parsed.public_key),
            path,
        })
    }

    /// Every key of `domain` (sorted by selector); unreadable files are
    /// reported as errors in the list.
    pub fn keys(&self, domain: &str) -> Vec<Result<KeyInfo, KeyError>> {
        let ddir = self.domain_dir(domain);
        let Ok(entries) = fs::read_dir(&ddir) else {
            return Vec::new();
        };
        let mut selectors: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let sel = name.strip_suffix(".pem")?;
                check_selector(sel).ok().filter(|s| s == sel)
            })
            .collect();
        selectors.sort();
        selectors.iter().map(|s| self.info(domain, s)).collect()
    }

    /// Domains with a key directory (sorted).
    pub fn domains(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut v: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|d| check_domain(d).is_ok_and(|c| &c == d))
            .collect();
        v.sort();
        v
    }

    /// The signing key for mail from `domain`: its active selector's key.
    /// `Ok(None)` when the domain has no active key.
    pub fn signing_key(&self, domain: &str) -> Result<Option<(String, SigningKey)>, KeyError> {
        let Some(selector) = self.active_selector(domain) else {
            return Ok(None);
        };
        let path = self.domain_dir(domain).join(format!("{selector}.pem"));
        let parsed = parse_pem(&path, &read_bounded(&path)?)?;
        Ok(Some((selector, parsed.signing)))
    }

    /// When root, hand a new file to the owner of the key directory's
    /// parent (like mailctl does for the SQLite directory).
    fn give_away(&self, path: &Path) {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) else {
            return;
        };
        let Ok(meta) = fs::metadata(parent) else {
            return;
        };
        if meta.uid() == 0 {
            return;
        }
        let _ = nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(meta.uid())),
            Some(nix::unistd::Gid::from_raw(meta.gid())),
        );
    }
}

/// PEM with 64-column base64 lines.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(check_domain("Example.ORG.").unwrap(), "example.org");
        assert!(check_domain("../etc").is_err());
        assert!(check_domain("a/b.example").is_err());
        assert!(check_domain("nodot").is_err());
        assert_eq!(check_selector("S2026-01").unwrap(), "s2026-01");
        assert!(check_selector("a.b").is_err());
        assert!(check_selector("../x").is_err());
        assert!(check_selector("").is_err());
    }

    #[test]
    fn generate_list_activate() {
        let t = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(t.path().join("dkim"));
        let ed = ks
            .generate("example.org", "ed1", Algorithm::Ed25519)
            .unwrap();
        assert!(ed.active, "the first key becomes active");
        assert_eq!(ed.algorithm, Algorithm::Ed25519);
        // RFC 8463: the raw 32-byte key.
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&ed.public_key)
            .unwrap();
        assert_eq!(raw.len(), 32);
        let mode = fs::metadata(&ed.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let rsa = ks.generate("example.org", "rsa1", Algorithm::Rsa).unwrap();
        assert!(!rsa.active, "a second key waits for activation");
        assert!(rsa.dns_txt().starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"));
        assert!(matches!(
            ks.generate("example.org", "rsa1", Algorithm::Rsa),
            Err(KeyError::Exists(_))
        ));

        let keys: Vec<KeyInfo> = ks
            .keys("example.org")
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].selector, "ed1");
        assert_eq!(ks.domains(), ["example.org"]);

        let (sel, key) = ks.signing_key("example.org").unwrap().unwrap();
        assert_eq!(sel, "ed1");
        assert!(matches!(key, SigningKey::Ed25519(_)));
        ks.activate("example.org", "rsa1").unwrap();
        let (sel, key) = ks.signing_key("example.org").unwrap().unwrap();
        assert_eq!(sel, "rsa1");
        assert!(matches!(key, SigningKey::Rsa(_)));
        assert!(ks.activate("example.org", "nope").is_err());
        assert!(ks.signing_key("other.org").unwrap().is_none());
    }

    #[test]
    fn a_broken_key_file_is_an_error_not_a_panic() {
        let t = tempfile::tempdir().unwrap();
        let ks = KeyStore::new(t.path());
        fs::create_dir_all(t.path().join("example.org")).unwrap();
        fs::write(t.path().join("example.org/x.pem"), "garbage").unwrap();
        fs::write(t.path().join("example.org/active"), "x\n").unwrap();
        assert!(matches!(
            ks.signing_key("example.org"),
            Err(KeyError::BadKey { .. })
        ));
        assert!(ks.keys("example.org")[0].is_err());
    }
}
