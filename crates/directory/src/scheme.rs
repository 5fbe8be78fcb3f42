//! Password schemes with Dovecot-style `{SCHEME}` prefixes.
//!
//! A stored password is `{SCHEME}data` (as written by `doveadm pw -s SCHEME`)
//! or a bare crypt(3) string recognised by its form (`$argon2id$`, `$2y$`,
//! `$6$`, `$5$`, `$1$`), like Dovecot's `{CRYPT}`.
//!
//! | scheme          | stored form                                          | hash | verify |
//! |-----------------|------------------------------------------------------|------|--------|
//! | `ARGON2ID`      | PHC string `$argon2id$v=19$m=..,t=..,p=..$salt$hash` | yes (default) | yes |
//! | `ARGON2I`       | PHC string `$argon2i$...`                            | no   | yes |
//! | `BLF-CRYPT`     | bcrypt `$2y$`/`$2b$`/`$2a$`                          | yes (`$2y$`) | yes |
//! | `SHA512-CRYPT`  | `$6$[rounds=N$]salt$hash`                            | yes  | yes |
//! | `SHA256-CRYPT`  | `$5$[rounds=N$]salt$hash`                            | yes  | yes |
//! | `SSHA512`       | base64(SHA512(pw‖salt)‖salt)                         | yes  | yes |
//! | `SSHA256`       | base64(SHA256(pw‖salt)‖salt)                         | yes  | yes |
//! | `SCRAM-SHA-256` | `iterations,b64(salt),b64(StoredKey),b64(ServerKey)` (Dovecot) | yes | yes |
//! | `PLAIN`/`CLEAR`/`CLEARTEXT` | the password itself                      | yes  | only if [`VerifyPolicy::allow_plaintext`] |
//! | `MD5-CRYPT`     | `$1$salt$hash`                                       | no   | yes, flagged [`Verified::deprecated`] |
//! | (`CRYPT`)       | yescrypt `$y$`, `$gy$`, scrypt `$7$`                 | no   | yes, via the system libxcrypt when present |
//! | `SHA512`/`SHA256`/`SHA`(`SHA1`) | unsalted digest, base64 or hex       | no   | yes, flagged deprecated |
//! | `SSHA`          | base64(SHA1(pw‖salt)‖salt) (LDAP)                    | no   | yes, flagged deprecated |
//!
//! Dovecot's `.HEX`/`.B64` suffixes are accepted on the digest schemes.
//!
//! Comparisons of derived values are constant time ([`subtle`]). Errors never
//! contain the password. Unknown user handling: callers should run
//! [`dummy_verify`] so a missing user costs as much time as a wrong password.

use std::fmt;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use rand::RngCore;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// Longest stored hash we parse (a PHC string with big parameters is ~120
/// bytes; this leaves room for odd but legitimate forms).
pub const MAX_STORED_LEN: usize = 1024;

/// Longest password we hash or verify. Longer input is refused before any
/// work is done (argon2/sha-crypt cost grows with password length).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Bounds on SCRAM iterations read from a stored secret.
pub const SCRAM_MIN_ITERATIONS: u32 = 1;
/// Upper bound on SCRAM iterations (a broken row must not cost minutes of CPU).
pub const SCRAM_MAX_ITERATIONS: u32 = 1_000_000;

/// A password scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Argon2id, PHC string. Default for new hashes.
    Argon2id,
    /// Argon2i, PHC string (verify only).
    Argon2i,
    /// bcrypt (`BLF-CRYPT`).
    BlfCrypt,
    /// glibc SHA-512 crypt (`$6$`).
    Sha512Crypt,
    /// glibc SHA-256 crypt (`$5$`).
    Sha256Crypt,
    /// Salted SHA-512, base64(digest‖salt).
    Ssha512,
    /// Salted SHA-256, base64(digest‖salt).
    Ssha256,
    /// SCRAM-SHA-256 keys (allows the SCRAM-SHA-256 SASL mechanism).
    ScramSha256,
    /// Plain text (`PLAIN`, `CLEAR`, `CLEARTEXT`).
    Plain,
    /// MD5 crypt (`$1$`), verify only, for migration.
    Md5Crypt,
    /// Unsalted SHA-512 (`SHA512`), verify only, deprecated.
    Sha512,
    /// Unsalted SHA-256 (`SHA256`), verify only, deprecated.
    Sha256,
    /// Unsalted SHA-1 (`SHA`, `SHA1`; LDAP `{SHA}`), verify only, deprecated.
    Sha1,
    /// Salted SHA-1 (`SSHA`; LDAP `{SSHA}`), verify only, deprecated.
    Ssha,
    /// yescrypt (`$y$`), gost-yescrypt (`$gy$`), scrypt (`$7$`): verify
    /// only, through the system's libxcrypt (see `libcrypt`); the
    /// `/etc/shadow` default of current Linux distributions.
    SystemCrypt,
}

impl Scheme {
    /// The default scheme for new hashes.
    pub const DEFAULT: Scheme = Scheme::Argon2id;

    /// Dovecot name of the scheme (what goes between the braces).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Argon2id => "ARGON2ID",
            Scheme::Argon2i => "ARGON2I",
            Scheme::BlfCrypt => "BLF-CRYPT",
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::Sha256Crypt => "SHA256-CRYPT",
            Scheme::Ssha512 => "SSHA512",
            Scheme::Ssha256 => "SSHA256",
            Scheme::ScramSha256 => "SCRAM-SHA-256",
            Scheme::Plain => "PLAIN",
            Scheme::Md5Crypt => "MD5-CRYPT",
            Scheme::SystemCrypt => "CRYPT",
            Scheme::Sha512 => "SHA512",
            Scheme::Sha256 => "SHA256",
            Scheme::Sha1 => "SHA1",
            Scheme::Ssha => "SSHA",
        }
    }

    /// Parse a Dovecot scheme name, case-insensitively. `CRYPT` is not a
    /// scheme of its own here: it means "look at the crypt form", see
    /// [`verify`].
    pub fn from_name(name: &str) -> Option<Scheme> {
        let upper = name.to_ascii_uppercase();
        // Dovecot encoding suffixes, for the digest schemes (whose bodies
        // are decoded as hex or base64 by length anyway).
        let digest_only = [".HEX", ".B64", ".BASE64"]
            .iter()
            .find_map(|suffix| upper.strip_suffix(suffix));
        if let Some(base) = digest_only {
            return Scheme::from_name(base).filter(|s| s.is_digest());
        }
        Some(match upper.as_str() {
            "ARGON2ID" => Scheme::Argon2id,
            "ARGON2I" => Scheme::Argon2i,
            "BLF-CRYPT" => Scheme::BlfCrypt,
            "SHA512-CRYPT" => Scheme::Sha512Crypt,
            "SHA256-CRYPT" => Scheme::Sha256Crypt,
            "SSHA512" => Scheme::Ssha512,
            "SSHA256" => Scheme::Ssha256,
            "SCRAM-SHA-256" => Scheme::ScramSha256,
            "PLAIN" | "CLEAR" | "CLEARTEXT" => Scheme::Plain,
            "MD5-CRYPT" => Scheme::Md5Crypt,
            "SHA512" => Scheme::Sha512,
            "SHA256" => Scheme::Sha256,
            "SHA" | "SHA1" => Scheme::Sha1,
            "SSHA" => Scheme::Ssha,
            _ => return None,
        })
    }

    /// Whether [`hash`] can produce this scheme.
    pub fn can_hash(self) -> bool {
        !matches!(
            self,
            Scheme::Md5Crypt
                | Scheme::Argon2i
                | Scheme::SystemCrypt
                | Scheme::Sha512
                | Scheme::Sha256
                | Scheme::Sha1
                | Scheme::Ssha
        )
    }

    /// Weak schemes, accepted for migration only (MD5-crypt, unsalted
    /// digests, SHA-1): a login with one is flagged [`Verified::deprecated`].
    pub fn is_deprecated(self) -> bool {
        matches!(
            self,
            Scheme::Md5Crypt | Scheme::Sha512 | Scheme::Sha256 | Scheme::Sha1 | Scheme::Ssha
        )
    }

    fn is_digest(self) -> bool {
        matches!(
            self,
            Scheme::Sha512
                | Scheme::Sha256
                | Scheme::Sha1
                | Scheme::Ssha
                | Scheme::Ssha512
                | Scheme::Ssha256
        )
    }

    /// Whether the scheme stores the password in clear.
    pub fn is_plaintext(self) -> bool {
        self == Scheme::Plain
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors from hashing and verification. None of them carries the password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemeError {
    /// The password does not match the stored hash.
    #[error("password mismatch")]
    Mismatch,
    /// The `{SCHEME}` prefix names a scheme we do not know, or a bare
    /// string is not in any crypt form we recognise.
    #[error("unknown password scheme {0:?}")]
    UnknownScheme(String),
    /// The stored value is not a valid hash of its scheme.
    #[error("malformed {scheme} hash: {reason}")]
    Malformed {
        /// scheme that was being parsed
        scheme: Scheme,
        /// what is wrong
        reason: &'static str,
    },
    /// A plaintext stored password, and the policy does not allow them.
    #[error("plaintext password schemes are not allowed by policy")]
    PlaintextNotAllowed,
    /// The scheme can only be verified (MD5-CRYPT, ARGON2I).
    #[error("scheme {0} is verify-only")]
    VerifyOnly(Scheme),
    /// The password is longer than [`MAX_PASSWORD_LEN`] or the stored value
    /// longer than [`MAX_STORED_LEN`].
    #[error("input too long")]
    TooLong,
    /// The scheme needs the system's libxcrypt, which is not available.
    #[error("scheme {0} needs libxcrypt (libcrypt.so.1), not available")]
    Unavailable(Scheme),
    /// The hashing library failed (bad parameters).
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// What the caller allows during verification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Accept `{PLAIN}`/`{CLEAR}` stored passwords. Default false.
    pub allow_plaintext: bool,
}

/// A successful verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Scheme of the stored hash.
    pub scheme: Scheme,
    /// The scheme is weak and accepted only for migration (MD5-CRYPT): the
    /// caller should log a warning and rehash.
    pub deprecated: bool,
    /// The hash is not in the default scheme (the caller may rehash it
    /// with [`hash`] now that it knows the password).
    pub needs_rehash: bool,
}

/// Cost parameters for new hashes. `Default` gives production values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Argon2 memory in KiB. Default 65536 (64 MiB, like Dovecot/libsodium
    /// "interactive").
    pub argon2_m_kib: u32,
    /// Argon2 passes. Default 3.
    pub argon2_t: u32,
    /// Argon2 lanes. Default 1.
    pub argon2_p: u32,
    /// bcrypt cost. Default 12.
    pub bcrypt_cost: u32,
    /// SHA-crypt rounds. Default 5000 (the crypt(3) default, what
    /// `doveadm pw` and `mkpasswd` write).
    pub sha_crypt_rounds: u32,
    /// SCRAM iterations. Default 4096 (RFC 7677 minimum, Dovecot default).
    pub scram_iterations: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        HashParams {
            argon2_m_kib: 65536,
            argon2_t: 3,
            argon2_p: 1,
            bcrypt_cost: 12,
            sha_crypt_rounds: 5000,
            scram_iterations: 4096,
        }
    }
}

/// Hash `password` with `scheme` and default parameters; the result carries
/// the `{SCHEME}` prefix.
pub fn hash(scheme: Scheme, password: &Secret<impl AsRef<[u8]>>) -> Result<String, SchemeError> {
    hash_with(scheme, password, &HashParams::default())
}

/// Hash `password` with `scheme` and explicit cost parameters.
pub fn hash_with(
    scheme: Scheme,
    password: &Secret<impl AsRef<[u8]>>,
    params: &HashParams,
) -> Result<String, SchemeError> {
    let pw = password.expose().as_ref();
    if pw.len() > MAX_PASSWORD_LEN {
        return Err(SchemeError::TooLong);
    }
    let body = match scheme {
        Scheme::Argon2id => {
            use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
            let p =
                argon2::Params::new(params.argon2_m_kib, params.argon2_t, params.argon2_p, None)
                    .map_err(|e| SchemeError::Hash(e.to_string()))?;
            let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
            let salt = SaltString::generate(&mut OsRng);
            a.hash_password(pw, &salt)
                .map_err(|e| SchemeError::Hash(e.to_string()))?
                .to_string()
        }
        Scheme::BlfCrypt => bcrypt::hash_with_result(pw, params.bcrypt_cost)
            .map_err(|e| SchemeError::Hash(e.to_string()))?
            .format_for_version(bcrypt::Version::TwoY),
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => {
            let pw = std::str::from_utf8(pw)
                .map_err(|_| SchemeError::Hash("SHA-crypt needs a UTF-8 password".into()))?;
            let rounds = params.sha_crypt_rounds as usize;
            let r = if scheme == Scheme::Sha512Crypt {
                let p = sha_crypt::Sha512Params::new(rounds)
                    .map_err(|_| SchemeError::Hash("bad rounds".into()))?;
                sha_crypt::sha512_simple(pw, &p)
            } else {
                let p = sha_crypt::Sha256Params::new(rounds)
                    .map_err(|_| SchemeError::Hash("bad rounds".into()))?;
                sha_crypt::sha256_simple(pw, &p)
            };
            r.map_err(|_| SchemeError::Hash("sha-crypt failed".into()))?
        }
        Scheme::Ssha512 => {
            let salt = random_bytes::<16>();
            let mut out = Sha512::digest([pw, &salt[..]].concat()).to_vec();
            out.extend_from_slice(&salt);
            B64.encode(out)
        }
        Scheme::Ssha256 => {
            let salt = random_bytes::<16>();
            let mut out = Sha256::digest([pw, &salt[..]].concat()).to_vec();
            out.extend_from_slice(&salt);
            B64.encode(out)
        }
        Scheme::ScramSha256 => {
            let salt = random_bytes::<16>();
            ScramSecret::derive(pw, &salt, params.scram_iterations)?.to_stored_body()
        }
        Scheme::Plain => String::from_utf8(pw.to_vec())
            .map_err(|_| SchemeError::Hash("PLAIN needs a UTF-8 password".into()))?,
        Scheme::Md5Crypt
        | Scheme::Argon2i
        | Scheme::SystemCrypt
        | Scheme::Sha512
        | Scheme::Sha256
        | Scheme::Sha1
        | Scheme::Ssha => {
            return Err(SchemeError::VerifyOnly(scheme));
        }
    };
    Ok(format!("{{{}}}{}", scheme.name(), body))
}

/// Split a stored value into its scheme and the scheme-specific body.
///
/// `{SCHEME}body` uses the prefix; `{CRYPT}body` and a bare string are
/// recognised by their crypt form. A bare string that is not a crypt form is
/// refused ([`SchemeError::UnknownScheme`]), never taken as plain text.
pub fn identify(stored: &str) -> Result<(Scheme, &str), SchemeError> {
    if stored.len() > MAX_STORED_LEN {
        return Err(SchemeError::TooLong);
    }
    if let Some(rest) = stored.strip_prefix('{')
        && let Some(end) = rest.find('}')
    {
        let name = &rest[..end];
        let body = &rest[end + 1..];
        if name.eq_ignore_ascii_case("CRYPT") {
            return identify_crypt(body);
        }
        return match Scheme::from_name(name) {
            Some(s) => Ok((s, body)),
            None => Err(SchemeError::UnknownScheme(name.chars().take(32).collect())),
        };
    }
    identify_crypt(stored)
}

fn identify_crypt(s: &str) -> Result<(Scheme, &str), SchemeError> {
    let scheme = if s.starts_with("$argon2id$") {
        Scheme::Argon2id
    } else if s.starts_with("$argon2i$") {
        Scheme::Argon2i
    } else if s.starts_with("$2y$") || s.starts_with("$2b$") || s.starts_with("$2a$") {
        Scheme::BlfCrypt
    } else if s.starts_with("$6$") {
        Scheme::Sha512Crypt
    } else if s.starts_with("$5$") {
        Scheme::Sha256Crypt
    } else if s.starts_with("$1$") {
        Scheme::Md5Crypt
    } else if s.starts_with("$y$") || s.starts_with("$gy$") || s.starts_with("$7$") {
        Scheme::SystemCrypt
    } else {
        return Err(SchemeError::UnknownScheme("CRYPT".into()));
    };
    Ok((scheme, s))
}

/// Verify `password` against a stored hash.
pub fn verify(
    stored: &str,
    password: &Secret<impl AsRef<[u8]>>,
    policy: VerifyPolicy,
) -> Result<Verified, SchemeError> {
    let pw = password.expose().as_ref();
    if pw.len() > MAX_PASSWORD_LEN {
        return Err(SchemeError::TooLong);
    }
    let (scheme, body) = identify(stored)?;
    let ok = match scheme {
        Scheme::Argon2id | Scheme::Argon2i => {
            use argon2::password_hash::{PasswordHash, PasswordVerifier};
            let want = if scheme == Scheme::Argon2id {
                "$argon2id$"
            } else {
                "$argon2i$"
            };
            if !body.starts_with(want) {
                return Err(malformed(scheme, "not a PHC string of this algorithm"));
            }
            let parsed =
                PasswordHash::new(body).map_err(|_| malformed(scheme, "bad PHC string"))?;
            if parsed.hash.is_none() || parsed.salt.is_none() {
                return Err(malformed(scheme, "PHC string without salt or hash"));
            }
            match argon2::Argon2::default().verify_password(pw, &parsed) {
                Ok(()) => true,
                Err(argon2::password_hash::Error::Password) => false,
                Err(_) => return Err(malformed(scheme, "bad argon2 parameters")),
            }
        }
        Scheme::BlfCrypt => {
            if !(body.starts_with("$2y$") || body.starts_with("$2b$") || body.starts_with("$2a$")) {
                return Err(malformed(scheme, "not a $2y$/$2b$/$2a$ string"));
            }
            // bcrypt uses only the first 72 bytes, like every other bcrypt.
            bcrypt::verify(pw, body).map_err(|_| malformed(scheme, "bad bcrypt string"))?
        }
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => verify_sha_crypt(scheme, body, pw)?,
        Scheme::Ssha512 => verify_salted::<Sha512>(scheme, body, pw, 64)?,
        Scheme::Ssha256 => verify_salted::<Sha256>(scheme, body, pw, 32)?,
        Scheme::Ssha => verify_salted::<sha1::Sha1>(scheme, body, pw, 20)?,
        Scheme::Sha512 => verify_unsalted::<Sha512>(scheme, body, pw, 64)?,
        Scheme::Sha256 => verify_unsalted::<Sha256>(scheme, body, pw, 32)?,
        Scheme::Sha1 => verify_unsalted::<sha1::Sha1>(scheme, body, pw, 20)?,
        Scheme::ScramSha256 => {
            let s = ScramSecret::parse_body(body)?;
            let derived = ScramSecret::derive(pw, &s.salt, s.iterations)?;
            bool::from(derived.stored_key.ct_eq(&s.stored_key))
        }
        Scheme::Plain => {
            if !policy.allow_plaintext {
                return Err(SchemeError::PlaintextNotAllowed);
            }
            // Compare digests so the comparison time does not depend on
            // where the strings first differ, nor much on their lengths.
            bool::from(Sha256::digest(body.as_bytes()).ct_eq(&Sha256::digest(pw)))
        }
        Scheme::Md5Crypt => {
            let computed = md5_crypt_from_setting(pw, body)?;
            bool::from(computed.as_bytes().ct_eq(body.as_bytes()))
        }
        Scheme::SystemCrypt => {
            if !crate::libcrypt::available() {
                return Err(SchemeError::Unavailable(scheme));
            }
            match crate::libcrypt::crypt(pw, body) {
                Some(computed) => bool::from(computed.as_bytes().ct_eq(body.as_bytes())),
                // a NUL in the password cannot match; otherwise the
                // library refused the setting
                None if pw.contains(&0) => false,
                None => return Err(malformed(scheme, "refused by libxcrypt")),
            }
        }
    };
    if !ok {
        return Err(SchemeError::Mismatch);
    }
    Ok(Verified {
        scheme,
        deprecated: scheme.is_deprecated(),
        needs_rehash: scheme != Scheme::DEFAULT,
    })
}

/// Spend about the time of a real verification of the default scheme with
/// default parameters, for unknown users. The result is discarded.
/// [`crate::Directory`] uses [`dummy_hash`] with its configured scheme and
/// parameters instead, so the dummy costs what a real user's check costs.
pub fn dummy_verify(password: &Secret<impl AsRef<[u8]>>) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let stored = DUMMY.get_or_init(|| dummy_hash(Scheme::DEFAULT, &HashParams::default()));
    let _ = verify(
        stored,
        password,
        VerifyPolicy {
            allow_plaintext: true,
        },
    );
}

/// A hash of a random password, in `scheme` with `params` (falls back to
/// the default scheme if `scheme` cannot hash).
pub fn dummy_hash(scheme: Scheme, params: &HashParams) -> String {
    let random: String = random_bytes::<16>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let pw = Secret::new(random);
    hash_with(scheme, &pw, params)
        .or_else(|_| hash_with(Scheme::DEFAULT, &pw, params))
        .unwrap_or_else(|_| "{SSHA512}".to_string())
}

fn malformed(scheme: Scheme, reason: &'static str) -> SchemeError {
    SchemeError::Malformed { scheme, reason }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

fn verify_sha_crypt(scheme: Scheme, body: &str, pw: &[u8]) -> Result<bool, SchemeError> {
    let (prefix, n) = if scheme == Scheme::Sha512Crypt {
        ("$6$", 86)
    } else {
        ("$5$", 43)
    };
    if !body.starts_with(prefix) {
        return Err(malformed(scheme, "wrong crypt prefix"));
    }
    // Check the shape ourselves so that a malformed row is reported as
    // such and not as a mismatch.
    let parts: Vec<&str> = body.split('$').collect();
    let hash_part = parts.last().copied().unwrap_or("");
    if !(parts.len() == 4 || (parts.len() == 5 && parts[2].starts_with("rounds=")))
        || hash_part.len() != n
    {
        return Err(malformed(scheme, "expected $id$[rounds=N$]salt$hash"));
    }
    // sha-crypt takes &str; a non-UTF-8 password cannot be what produced a
    // hash we store (we hash only UTF-8), but still do the work so timing
    // does not tell.
    let (pw_str, forced_mismatch) = match std::str::from_utf8(pw) {
        Ok(s) => (std::borrow::Cow::Borrowed(s), false),
        Err(_) => (String::from_utf8_lossy(pw), true),
    };
    let r = if scheme == Scheme::Sha512Crypt {
        sha_crypt::sha512_check(&pw_str, body).map_err(|e| format!("{e:?}"))
    } else {
        sha_crypt::sha256_check(&pw_str, body).map_err(|e| format!("{e:?}"))
    };
    match r {
        Ok(()) => Ok(!forced_mismatch),
        Err(e) if e.contains("HashMismatch") => Ok(false),
        Err(_) => Err(malformed(scheme, "bad salt, rounds or hash encoding")),
    }
}

/// Unsalted digest, hex (by length) or base64 (Dovecot decodes the same way).
fn verify_unsalted<D: sha2::Digest>(
    scheme: Scheme,
    body: &str,
    pw: &[u8],
    digest_len: usize,
) -> Result<bool, SchemeError> {
    let body = body.trim();
    let want = if body.len() == digest_len * 2 && body.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..digest_len)
            .map(|i| u8::from_str_radix(&body[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| malformed(scheme, "bad hex"))?
    } else {
        B64.decode(body)
            .map_err(|_| malformed(scheme, "bad base64"))?
    };
    if want.len() != digest_len {
        return Err(malformed(scheme, "wrong digest length"));
    }
    Ok(bool::from(D::digest(pw).as_slice().ct_eq(&want)))
}

fn verify_salted<D: sha2::Digest>(
    scheme: Scheme,
    body: &str,
    pw: &[u8],
    digest_len: usize,
) -> Result<bool, SchemeError> {
    let raw = B64
        .decode(body.trim())
        .map_err(|_| malformed(scheme, "bad base64"))?;
    if raw.len() <= digest_len {
        return Err(malformed(scheme, "no salt after the digest"));
    }
    let (want, salt) = raw.split_at(digest_len);
    let mut h = D::new();
    h.update(pw);
    h.update(salt);
    Ok(bool::from(h.finalize().as_slice().ct_eq(want)))
}

// ---------------------------------------------------------------- SCRAM

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA-256.
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with one output block (RFC 5802 `Hi()`).
pub(crate) fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(password).expect("any key length");
    m.update(salt);
    m.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = m.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_sha256(password, &u);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

/// The keys a server stores for SCRAM-SHA-256 (RFC 5802 section 3).
/// Stored form (Dovecot): `{SCRAM-SHA-256}iter,b64(salt),b64(StoredKey),b64(ServerKey)`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// Salt.
    pub salt: Vec<u8>,
    /// H(ClientKey).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .field("keys", &"***")
            .finish()
    }
}

impl ScramSecret {
    /// Derive the keys from a password.
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Result<Self, SchemeError> {
        if !(SCRAM_MIN_ITERATIONS..=SCRAM_MAX_ITERATIONS).contains(&iterations) {
            return Err(malformed(Scheme::ScramSha256, "iterations out of range"));
        }
        let salted = hi(password, salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        Ok(ScramSecret {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac_sha256(&salted, b"Server Key"),
        })
    }

    /// Parse the body after `{SCRAM-SHA-256}`.
    pub fn parse_body(body: &str) -> Result<Self, SchemeError> {
        let bad = |r| malformed(Scheme::ScramSha256, r);
        let parts: Vec<&str> = body.trim().split(',').collect();
        if parts.len() != 4 {
            return Err(bad("expected iterations,salt,storedkey,serverkey"));
        }
        let iterations: u32 = parts[0].parse().map_err(|_| bad("bad iteration count"))?;
        if !(SCRAM_MIN_ITERATIONS..=SCRAM_MAX_ITERATIONS).contains(&iterations) {
            return Err(bad("iterations out of range"));
        }
        let salt = B64.decode(parts[1]).map_err(|_| bad("bad salt base64"))?;
        let key = |s: &str| -> Result<[u8; 32], SchemeError> {
            B64.decode(s)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| bad("bad key"))
        };
        Ok(ScramSecret {
            iterations,
            salt,
            stored_key: key(parts[2])?,
            server_key: key(parts[3])?,
        })
    }

    /// Get the SCRAM keys out of a stored password: from a
    /// `{SCRAM-SHA-256}` value, or derived from a plain text one if the
    /// policy allows plain text (with a salt derived from `user` so
    /// repeated exchanges look stable). Other schemes are one-way and
    /// cannot serve SCRAM: `None`.
    pub fn from_stored(stored: &str, user: &str, policy: VerifyPolicy) -> Option<Self> {
        match identify(stored).ok()? {
            (Scheme::ScramSha256, body) => Self::parse_body(body).ok(),
            (Scheme::Plain, body) if policy.allow_plaintext => {
                let salt = hmac_sha256(b"postern scram salt", user.as_bytes());
                Self::derive(body.as_bytes(), &salt[..16], 4096).ok()
            }
            _ => None,
        }
    }

    fn to_stored_body(&self) -> String {
        format!(
            "{},{},{},{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

// ------------------------------------------------------------ MD5-CRYPT

const CRYPT_ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// MD5-crypt (Poul-Henning Kamp's `$1$`), from a setting `$1$salt[$...]`.
/// Returns the full `$1$salt$hash` string.
fn md5_crypt_from_setting(pw: &[u8], setting: &str) -> Result<String, SchemeError> {
    let rest = setting
        .strip_prefix("$1$")
        .ok_or_else(|| malformed(Scheme::Md5Crypt, "expected $1$"))?;
    let salt_end = rest.find('$').unwrap_or(rest.len());
    let salt = &rest.as_bytes()[..salt_end.min(8)];
    Ok(md5_crypt(pw, salt))
}

fn md5_crypt(pw: &[u8], salt: &[u8]) -> String {
    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(b"$1$");
    ctx.update(salt);

    let mut alt = Md5::new();
    alt.update(pw);
    alt.update(salt);
    alt.update(pw);
    let alt = alt.finalize();

    let mut pl = pw.len();
    while pl > 0 {
        let n = pl.min(16);
        ctx.update(&alt[..n]);
        pl -= n;
    }
    let mut i = pw.len();
    while i != 0 {
        if i & 1 != 0 {
            ctx.update([0u8]);
        } else {
            ctx.update(&pw[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();

    for r in 0..1000 {
        let mut c = Md5::new();
        if r & 1 != 0 {
            c.update(pw);
        } else {
            c.update(fin);
        }
        if r % 3 != 0 {
            c.update(salt);
        }
        if r % 7 != 0 {
            c.update(pw);
        }
        if r & 1 != 0 {
            c.update(fin);
        } else {
            c.update(pw);
        }
        fin = c.finalize();
    }

    let mut out = String::with_capacity(34);
    out.push_str("$1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut to64 = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(CRYPT_ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    let f = |i: usize| u32::from(fin[i]);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        to64((f(a) << 16) | (f(b) << 8) | f(c), 4);
    }
    to64(f(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Secret<String> {
        Secret::new(s.to_string())
    }

    const STRICT: VerifyPolicy = VerifyPolicy {
        allow_plaintext: false,
    };
    const LAX: VerifyPolicy = VerifyPolicy {
        allow_plaintext: true,
    };

    /// Small argon2 costs for tests that are not about the costs.
    fn cheap() -> HashParams {
        HashParams {
            argon2_m_kib: 64,
            argon2_t: 1,
            argon2_p: 1,
            bcrypt_cost: 4,
            sha_crypt_rounds: 1000,
            scram_iterations: 64,
        }
    }

    // Vectors produced outside this crate:
    // - SHA-crypt: Drepper's specification examples, reproduced with
    //   `openssl passwd -6/-5 -salt saltstring 'Hello world!'` and python3
    //   `crypt.crypt` (glibc/libxcrypt), same as `mkpasswd -m sha-512 -S`.
    // - bcrypt: OpenWall crypt_blowfish test vector (`U*U`) and libxcrypt
    //   `crypt("secret", "$2y$05$abc...")` (the form `htpasswd -B` writes).
    // - MD5-crypt: `openssl passwd -1 -salt saltsalt password`.
    // - SSHA: python3 `base64.b64encode(hashlib.sha512(b"secret" + salt).digest() + salt)`
    //   with salt = bytes 1..=8.
    // - SCRAM: python3 hashlib.pbkdf2_hmac/hmac, salt b"0123456789abcdef", i=4096, "pencil".
    // - Argon2id: the PHC reference implementation's test vector
    //   (password "password", salt "somesalt", t=2, m=65536, p=1).
    const VECTORS: &[(&str, &str, Scheme)] = &[
        (
            "{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
            "Hello world!",
            Scheme::Sha512Crypt,
        ),
        (
            "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
            "Hello world!",
            Scheme::Sha512Crypt,
        ),
        (
            "{SHA256-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
            "Hello world!",
            Scheme::Sha256Crypt,
        ),
        (
            "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA",
            "Hello world!",
            Scheme::Sha256Crypt,
        ),
        (
            "{CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
            "Hello world!",
            Scheme::Sha512Crypt,
        ),
        (
            "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "U*U",
            Scheme::BlfCrypt,
        ),
        (
            "{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a",
            "secret",
            Scheme::BlfCrypt,
        ),
        (
            "$2b$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW",
            "secret",
            Scheme::BlfCrypt,
        ),
        (
            "{MD5-CRYPT}$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/",
            "password",
            Scheme::Md5Crypt,
        ),
        (
            "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/",
            "password",
            Scheme::Md5Crypt,
        ),
        (
            "{SSHA512}KO8EsMPQTwZrxxbOkDAOOXEeVCc2grMQg1pnZwZhC1bBQLby8zCmFn7qTZRvoTd+yQdROQQNYHWpTUST4zjTdQECAwQFBgcI",
            "secret",
            Scheme::Ssha512,
        ),
        (
            "{SSHA256}A7N1lAy5bBb4T6qH9e85zAvHBmzNPhRFbZ105DjjWDIBAgMEBQYHCA==",
            "secret",
            Scheme::Ssha256,
        ),
        (
            "{SCRAM-SHA-256}4096,MDEyMzQ1Njc4OWFiY2RlZg==,nQpbZ77WudtqufPwikHXGRt6g2QJ4zns8bZLw273DRM=,jn2amWP1q1h+jgjy0YTO14S6/F02SV7taipOeB7ef20=",
            "pencil",
            Scheme::ScramSha256,
        ),
        (
            "{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
            "password",
            Scheme::Argon2id,
        ),
    ];

    #[test]
    fn known_vectors_verify_and_wrong_passwords_do_not() {
        for (stored, good, scheme) in VECTORS {
            let v = verify(stored, &pw(good), STRICT).unwrap_or_else(|e| panic!("{stored}: {e}"));
            assert_eq!(v.scheme, *scheme, "{stored}");
            assert_eq!(v.deprecated, *scheme == Scheme::Md5Crypt, "{stored}");
            assert_eq!(
                verify(stored, &pw(&format!("{good}x")), STRICT),
                Err(SchemeError::Mismatch),
                "{stored}"
            );
            assert_eq!(verify(stored, &pw(""), STRICT), Err(SchemeError::Mismatch));
        }
    }

    #[test]
    fn md5_crypt_matches_openssl() {
        assert_eq!(
            md5_crypt(b"password", b"saltsalt"),
            "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/"
        );
    }

    #[test]
    fn hash_then_verify_roundtrip_every_hashable_scheme() {
        let params = cheap();
        for scheme in [
            Scheme::Argon2id,
            Scheme::BlfCrypt,
            Scheme::Sha512Crypt,
            Scheme::Sha256Crypt,
            Scheme::Ssha512,
            Scheme::Ssha256,
            Scheme::ScramSha256,
            Scheme::Plain,
        ] {
            let h = hash_with(scheme, &pw("correct horse"), &params).unwrap();
            assert!(h.starts_with(&format!("{{{}}}", scheme.name())), "{h}");
            let v = verify(&h, &pw("correct horse"), LAX).unwrap();
            assert_eq!(v.scheme, scheme);
            assert_eq!(v.needs_rehash, scheme != Scheme::Argon2id);
            assert_eq!(
                verify(&h, &pw("correct horsf"), LAX),
                Err(SchemeError::Mismatch),
                "{scheme}"
            );
        }
        let a = hash_with(Scheme::Argon2id, &pw("x"), &params).unwrap();
        assert!(
            a.starts_with("{ARGON2ID}$argon2id$v=19$m=64,t=1,p=1$"),
            "{a}"
        );
        let b = hash_with(Scheme::BlfCrypt, &pw("x"), &params).unwrap();
        assert!(b.starts_with("{BLF-CRYPT}$2y$04$"), "{b}");
        // Salts are random: two hashes of one password differ.
        assert_ne!(a, hash_with(Scheme::Argon2id, &pw("x"), &params).unwrap());
    }

    #[test]
    fn plaintext_needs_policy() {
        assert_eq!(
            verify("{PLAIN}secret", &pw("secret"), STRICT),
            Err(SchemeError::PlaintextNotAllowed)
        );
        assert_eq!(
            verify("{CLEAR}secret", &pw("secret"), LAX).unwrap().scheme,
            Scheme::Plain
        );
        assert_eq!(
            verify("{clear}secret", &pw("secreT"), LAX),
            Err(SchemeError::Mismatch)
        );
        // A bare string is never taken as plain text.
        assert!(matches!(
            verify("secret", &pw("secret"), LAX),
            Err(SchemeError::UnknownScheme(_))
        ));
    }

    #[test]
    fn verify_only_schemes_refuse_hashing() {
        assert_eq!(
            hash_with(Scheme::Md5Crypt, &pw("x"), &cheap()),
            Err(SchemeError::VerifyOnly(Scheme::Md5Crypt))
        );
    }

    #[test]
    fn malformed_and_unknown_stored_values() {
        let cases: &[(&str, &str)] = &[
            ("{NOPE}abc", "unknown"),
            ("{CRYPT}abc", "unknown"),
            ("", "unknown"),
            ("$3$foo", "unknown"),
            ("_J9..salt", "unknown"),
            ("saQ0fJ8lYkTfA", "unknown"),
            (
                "{SHA512-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
                "malformed",
            ),
            ("{SHA512-CRYPT}$6$salt$tooshort", "malformed"),
            ("{SSHA512}!!!notbase64", "malformed"),
            ("{SSHA256}AAAA", "malformed"),
            ("{BLF-CRYPT}$2y$05$short", "malformed"),
            ("{ARGON2ID}$argon2id$v=19$garbage", "malformed"),
            (
                "{ARGON2ID}$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
                "malformed",
            ),
            ("{SCRAM-SHA-256}4096,abc", "malformed"),
            ("{SCRAM-SHA-256}0,MDEy,AAAA,AAAA", "malformed"),
        ];
        for (stored, kind) in cases {
            let r = verify(stored, &pw("x"), LAX);
            match (*kind, &r) {
                ("unknown", Err(SchemeError::UnknownScheme(_))) => {}
                ("malformed", Err(SchemeError::Malformed { .. })) => {}
                _ => panic!("{stored}: expected {kind}, got {r:?}"),
            }
        }
        let long = "x".repeat(MAX_PASSWORD_LEN + 1);
        assert_eq!(
            verify(VECTORS[0].0, &pw(&long), LAX),
            Err(SchemeError::TooLong)
        );
    }

    #[test]
    fn scram_secret_from_stored() {
        let s = ScramSecret::from_stored(VECTORS[12].0, "user", STRICT).unwrap();
        assert_eq!(s.iterations, 4096);
        assert_eq!(s.salt, b"0123456789abcdef");
        assert!(ScramSecret::from_stored("{PLAIN}pencil", "user", STRICT).is_none());
        assert!(ScramSecret::from_stored("{PLAIN}pencil", "user", LAX).is_some());
        assert!(ScramSecret::from_stored(VECTORS[0].0, "user", LAX).is_none());
        assert_eq!(
            format!("{s:?}"),
            "ScramSecret { iterations: 4096, keys: \"***\" }"
        );
    }

    #[test]
    fn yescrypt_through_system_libxcrypt() {
        // python3 crypt.crypt("Hello world!", "$y$j9T$saltsaltsaltsaltsalt$")
        let stored = "$y$j9T$saltsaltsaltsaltsalt$adBKrFn3hwbqWG03oiRp.xMiX7C30iKL3zON1ZA2hy9";
        if !crate::libcrypt::available() {
            println!("SKIPPED: libcrypt.so.1 with crypt_rn not found on this system");
            assert_eq!(
                verify(stored, &pw("Hello world!"), STRICT),
                Err(SchemeError::Unavailable(Scheme::SystemCrypt))
            );
            return;
        }
        let v = verify(stored, &pw("Hello world!"), STRICT).unwrap();
        assert_eq!(v.scheme, Scheme::SystemCrypt);
        assert!(v.needs_rehash && !v.deprecated);
        assert_eq!(
            verify(stored, &pw("Hello world?"), STRICT),
            Err(SchemeError::Mismatch)
        );
        assert_eq!(
            verify(stored, &pw("Hello\0world!"), STRICT),
            Err(SchemeError::Mismatch)
        );
        assert_eq!(
            verify(&format!("{{CRYPT}}{stored}"), &pw("Hello world!"), STRICT).map(|v| v.scheme),
            Ok(Scheme::SystemCrypt)
        );
        assert!(matches!(
            verify("$y$garbage", &pw("x"), STRICT),
            Err(SchemeError::Malformed { .. })
        ));
    }

    /// python3: hashlib.sha512(b"secret").hexdigest() / base64 of the
    /// digests; SSHA with salt b"\x01\x02\x03\x04".
    #[test]
    fn legacy_digest_schemes() {
        let cases: &[(&str, Scheme)] = &[
            (
                "{SHA512}vSsar3708Jvp9Szi2NWZZ02Bqp1qRCFpbcTZPdBhnWgs5WtNZKnvCXdhztmeD2cmW192CF5bDufKRpayrW/isg==",
                Scheme::Sha512,
            ),
            (
                "{SHA512.HEX}bd2b1aaf7ef4f09be9f52ce2d8d599674d81aa9d6a4421696dc4d93dd0619d682ce56b4d64a9ef097761ced99e0f67265b5f76085e5b0ee7ca4696b2ad6fe2b2",
                Scheme::Sha512,
            ),
            (
                "{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=",
                Scheme::Sha256,
            ),
            (
                "{SHA256.HEX}2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b",
                Scheme::Sha256,
            ),
            ("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", Scheme::Sha1),
            ("{SSHA}uJDd0BIdJ9Z7yDCZNWdgYeb33+cBAgME", Scheme::Ssha),
        ];
        for (stored, scheme) in cases {
            let v =
                verify(stored, &pw("secret"), STRICT).unwrap_or_else(|e| panic!("{stored}: {e}"));
            assert_eq!(v.scheme, *scheme);
            assert!(v.deprecated, "{stored}");
            assert_eq!(
                verify(stored, &pw("Secret"), STRICT),
                Err(SchemeError::Mismatch),
                "{stored}"
            );
        }
        assert!(matches!(
            verify("{SHA256}AAAA", &pw("x"), STRICT),
            Err(SchemeError::Malformed { .. })
        ));
        assert!(matches!(
            verify("{PLAIN.HEX}00", &pw("x"), LAX),
            Err(SchemeError::UnknownScheme(_))
        ));
        assert_eq!(
            hash_with(Scheme::Sha1, &pw("x"), &cheap()),
            Err(SchemeError::VerifyOnly(Scheme::Sha1))
        );
    }

    #[test]
    fn dummy_hash_follows_the_scheme() {
        let p = cheap();
        for (scheme, prefix) in [
            (Scheme::Sha512Crypt, "{SHA512-CRYPT}$6$rounds=1000$"),
            (Scheme::Argon2id, "{ARGON2ID}$argon2id$v=19$m=64,t=1,p=1$"),
            (Scheme::Plain, "{PLAIN}"),
            (Scheme::Md5Crypt, "{ARGON2ID}"),
        ] {
            let h = dummy_hash(scheme, &p);
            assert!(h.starts_with(prefix), "{h}");
            assert_eq!(verify(&h, &pw(""), LAX), Err(SchemeError::Mismatch));
        }
        assert_ne!(dummy_hash(Scheme::Plain, &p), dummy_hash(Scheme::Plain, &p));
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
