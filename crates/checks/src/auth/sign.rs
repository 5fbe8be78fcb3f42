//! `dkim_sign`: a DKIM-Signature (relaxed/relaxed, rsa-sha256 or
//! ed25519-sha256 by the key) for mail from our domains.
//!
//! Signed: messages from authenticated or `mynetworks` clients whose
//! `From:` domain — or a parent of it, for relaxed DMARC alignment — has an
//! active key, when the envelope sender (whose ownership smtpd checked on
//! submission) is in that key's domain too: a user of one of our domains
//! cannot get another of our domains' signature on a forged `From:`.
//! Keys are read per message (a rotated key is used at once, no reload).
//! A key that cannot be read is logged and the message goes out unsigned
//! (refusing all mail for an operator's mistake would be worse).

use std::sync::Arc;

use mail_auth::AuthenticatedMessage;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use postern_common::Config;

use super::keys::{KeyStore, SigningKey};
use crate::{Action, Check, CheckSession, Connection, Envelope, Verdict};

pub struct DkimSignCheck {
    store: KeyStore,
    headers: Vec<String>,
}

impl DkimSignCheck {
    pub fn from_config(cfg: &Config) -> Self {
        let c = &cfg.checks.dkim_sign;
        Self::new(
            KeyStore::new(c.key_directory(&cfg.global.state_directory)),
            c.headers.clone(),
        )
    }

    pub fn new(store: KeyStore, headers: Vec<String>) -> Self {
        Self { store, headers }
    }

    /// The key domain for a `From:` domain: itself or the nearest parent
    /// with an active key (at least two labels).
    fn key_domain(&self, from_domain: &str) -> Option<String> {
        let mut d = from_domain.trim_end_matches('.').to_ascii_lowercase();
        loop {
            if !d.contains('.') {
                return None;
            }
            if super::keys::check_domain(&d).is_ok() && self.store.active_selector(&d).is_some() {
                return Some(d);
            }
            d = d.split_once('.')?.1.to_string();
        }
    }

    /// The header field value (after `DKIM-Signature: `) for `message`, or
    /// why there is none.
    pub fn sign(&self, sender: &str, message: &[u8]) -> Result<(String, String), String> {
        let parsed = AuthenticatedMessage::parse(message).ok_or("unparsable message")?;
        let from = parsed.from().to_ascii_lowercase();
        let from_domain = from
            .rsplit_once('@')
            .map(|(_, d)| d)
            .ok_or("no From address")?;
        let domain = self
            .key_domain(from_domain)
            .ok_or_else(|| format!("no active key for {from_domain}"))?;
        let sender_domain = sender
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        if sender_domain != domain && !sender_domain.ends_with(&format!(".{domain}")) {
            return Err(format!(
                "envelope sender domain {sender_domain:?} is not in {domain}"
            ));
        }
        let (selector, key) = self
            .store
            .signing_key(&domain)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no active key for {domain}"))?;
        let sig = match key {
            SigningKey::Rsa(k) => DkimSigner::from_key(k)
                .domain(domain.clone())
                .selector(selector.clone())
                .headers(self.headers.iter().cloned())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed)
                .sign(message),
            SigningKey::Ed25519(k) => DkimSigner::from_key(k)
                .domain(domain.clone())
                .selector(selector.clone())
                .headers(self.headers.iter().cloned())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed)
                .sign(message),
        }
        .map_err(|e| format!("signing failed: {e}"))?;
        let header = sig.to_header();
        let value = header
            .strip_prefix("DKIM-Signature: ")
            .unwrap_or(&header)
            .trim_end_matches("\r\n")
            .to_string();
        Ok((format!("d={domain} s={selector}"), value))
    }
}

impl Check for DkimSignCheck {
    fn name(&self) -> &'static str {
        "dkim_sign"
    }

    fn session(self: Arc<Self>, _conn: &Connection) -> Box<dyn CheckSession> {
        Box::new(SignSession(self))
    }
}

struct SignSession(Arc<DkimSignCheck>);

#[async_trait::async_trait]
impl CheckSession for SignSession {
    async fn data(&mut self, conn: &Connection, env: &Envelope, message: &[u8]) -> Vec<Verdict> {
        if conn.auth_user.is_none() && !conn.trusted {
            return Vec::new();
        }
        match self.0.sign(&env.sender, message) {
            Ok((reason, value)) => vec![Verdict::new(
                "dkim_sign",
                Action::AddHeader {
                    name: "DKIM-Signature".into(),
                    value,
                },
                reason,
            )],
            Err(why) => {
                if why.starts_with("no active key") || why.starts_with("envelope sender") {
                    tracing::debug!(session = %conn.session_id, reason = %why, "not signed");
                } else {
                    tracing::error!(session = %conn.session_id, reason = %why, "DKIM signing failed: sent unsigned");
                }
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::Algorithm;
    use super::*;

    const MSG: &[u8] = b"Received: from x by mx.example.org\r\nFrom: Alice <alice@example.org>\r\nTo: bob@elsewhere.test\r\nSubject: hi\r\n\r\nbody\r\n";

    #[test]
    fn signs_with_the_active_key_only_for_its_domain() {
        let t = tempfile::tempdir().unwrap();
        let store = KeyStore::new(t.path());
        store
            .generate("example.org", "ed1", Algorithm::Ed25519)
            .unwrap();
        let check = DkimSignCheck::new(
            store.clone(),
            postern_common::checks::auth::default_signed_headers(),
        );
        let (reason, value) = check.sign("alice@example.org", MSG).unwrap();
        assert_eq!(reason, "d=example.org s=ed1");
        assert!(
            value.starts_with("v=1; a=ed25519-sha256; s=ed1; d=example.org; c=relaxed/relaxed;")
        );
        assert!(value.contains("h=From:To:Subject") || value.contains("h=Subject:To:From"));
        assert!(!value.ends_with('\n'));
        // Our Received: header is not signed.
        assert!(!value.to_ascii_lowercase().contains("received"));

        // A subdomain's From signs with the parent's key (relaxed alignment).
        let sub = String::from_utf8(MSG.to_vec())
            .unwrap()
            .replace("alice@example.org", "alice@lists.example.org");
        let (reason, _) = check
            .sign("alice@lists.example.org", sub.as_bytes())
            .unwrap();
        assert_eq!(reason, "d=example.org s=ed1");

        // Another domain's sender does not get example.org's signature.
        assert!(
            check
                .sign("mallory@other.test", MSG)
                .unwrap_err()
                .contains("not in example.org")
        );
        // No key for the From domain.
        let other = String::from_utf8(MSG.to_vec())
            .unwrap()
            .replace("alice@example.org", "alice@other.test");
        assert!(
            check
                .sign("alice@other.test", other.as_bytes())
                .unwrap_err()
                .starts_with("no active key")
        );

        // After rotation the new selector signs, RSA this time.
        store
            .generate("example.org", "rsa2", Algorithm::Rsa)
            .unwrap();
        store.activate("example.org", "rsa2").unwrap();
        let (reason, value) = check.sign("alice@example.org", MSG).unwrap();
        assert_eq!(reason, "d=example.org s=rsa2");
        assert!(value.starts_with("v=1; a=rsa-sha256; s=rsa2;"));
    }
}
