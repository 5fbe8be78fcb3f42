//! `[checks.spf]`, `[checks.dkim]`, `[checks.arc]`, `[checks.dmarc]`,
//! `[checks.dkim_sign]`: sender authentication (RFC 7208, 6376, 8617, 7489)
//! and DKIM signing.
//!
//! DNS lookups of these checks use the resolver of `queue.dns_servers`
//! (empty: the system's `/etc/resolv.conf`), the one queue-manager uses for
//! MX lookups: one DNS configuration per installation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CheckRole, mx_only, submission_only};

/// The header field smtpd adds (DMARC `p=quarantine`) to have lmtp-delivery
/// file the message into the recipient's `Junk` folder. lmtp-delivery acts
/// only on a copy above the message's first `Received:` field (ours: smtpd
/// prepends it above the `Received:` it writes), and removes every copy, so
/// a sender cannot plant one and none reaches a mailbox.
pub const JUNK_HEADER: &str = "X-Postern-Junk";

/// What to do with an SPF `fail` of the MAIL FROM identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfFailAction {
    /// Record it in `Authentication-Results` (DMARC may still reject).
    Record,
    /// `550 5.7.23` at MAIL FROM.
    Reject,
}

/// `[checks.spf]`: SPF verification of MAIL FROM / HELO (RFC 7208).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpfConfig {
    /// Run this check. Default `false`.
    pub enabled: bool,
    /// Listener roles it runs on. Default `["mx"]`.
    pub roles: Vec<CheckRole>,
    /// SPF `fail` of the MAIL FROM identity (of the HELO identity for the
    /// null sender): `"record"` (default: DMARC decides) or `"reject"`.
    /// `softfail`, `neutral`, `none` and errors never reject.
    pub fail_action: SpfFailAction,
    /// Also check the HELO identity (RFC 7208 2.3) and record it.
    /// Default `true`.
    pub helo: bool,
}

impl Default for SpfConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            roles: mx_only(),
            fail_action: SpfFailAction::Record,
            helo: true,
        }
    }
}

crate::check_section!(
    /// `[checks.dkim]`: DKIM signature verification (RFC 6376, RFC 8463).
    DkimConfig,
    mx_only
);
crate::check_section!(
    /// `[checks.arc]`: ARC chain verification (RFC 8617).
    ArcConfig,
    mx_only
);

/// What to do with mail failing DMARC under a domain's `p=reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcRejectAction {
    /// `550 5.7.1` at end of data (what the domain asks for).
    Reject,
    /// Treat it as `p=quarantine`.
    Quarantine,
    /// Only record it in `Authentication-Results`.
    Record,
}

/// What to do with mail failing DMARC under a domain's `p=quarantine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcQuarantineAction {
    /// Deliver into the recipient's `Junk` folder ([`JUNK_HEADER`]).
    Junk,
    /// Keep it in the queue's hold queue for review.
    Hold,
    /// Only record it in `Authentication-Results`.
    Record,
}

/// `[checks.dmarc]`: DMARC policy (RFC 7489).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DmarcConfig {
    /// Run this check. Default `false`. Needs SPF and DKIM results: it
    /// computes them itself when `[checks.spf]`/`[checks.dkim]` are off.
    pub enabled: bool,
    /// Listener roles it runs on. Default `["mx"]`.
    pub roles: Vec<CheckRole>,
    /// `p=reject` failures: `"reject"` (default), `"quarantine"`, `"record"`.
    pub reject_action: DmarcRejectAction,
    /// `p=quarantine` failures: `"junk"` (default), `"hold"`, `"record"`.
    pub quarantine_action: DmarcQuarantineAction,
    /// The Public Suffix List, for organizational domains (relaxed
    /// alignment). Default Debian's `publicsuffix` package file; when it
    /// cannot be read the last two labels of a name are its organizational
    /// domain (logged at start).
    pub public_suffix_list: PathBuf,
}

impl Default for DmarcConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            roles: mx_only(),
            reject_action: DmarcRejectAction::Reject,
            quarantine_action: DmarcQuarantineAction::Junk,
            public_suffix_list: "/usr/share/publicsuffix/public_suffix_list.dat".into(),
        }
    }
}

/// The header fields signed by default (RFC 6376 5.4.1's list, the ones a
/// message usually has).
pub fn default_signed_headers() -> Vec<String> {
    [
        "From",
        "Reply-To",
        "Subject",
        "Date",
        "To",
        "Cc",
        "Message-ID",
        "In-Reply-To",
        "References",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `[checks.dkim_sign]`: DKIM signing of mail from our domains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DkimSignConfig {
    /// Run this check. Default `false`.
    pub enabled: bool,
    /// Listener roles it runs on. Default `["submission"]`.
    pub roles: Vec<CheckRole>,
    /// Where `mailctl dkim generate` keeps the keys:
    /// `<dir>/<domain>/<selector>.pem` (0600) and `<dir>/<domain>/active`
    /// (the selector that signs). Default `<state_directory>/dkim`.
    pub key_directory: PathBuf,
    /// Header fields to sign (those present are signed). Default: From,
    /// Reply-To, Subject, Date, To, Cc, Message-ID, In-Reply-To, References,
    /// MIME-Version, Content-Type, Content-Transfer-Encoding.
    pub headers: Vec<String>,
}

impl Default for DkimSignConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            roles: submission_only(),
            key_directory: PathBuf::new(),
            headers: default_signed_headers(),
        }
    }
}

impl DkimSignConfig {
    /// `key_directory`, or its default under `state_directory`.
    pub fn key_directory(&self, state_directory: &Path) -> PathBuf {
        if self.key_directory.as_os_str().is_empty() {
            state_directory.join("dkim")
        } else {
            self.key_directory.clone()
        }
    }
}
