//! `[checks.audit]`: content audit rules over headers, decoded body text and
//! attachment names, inbound and outbound.
//!
//! The rules themselves (keyword lists, regexes) are compiled and checked by
//! the `postern-checks` crate when smtpd builds its pipeline; a bad regex
//! stops smtpd at start with the rule's key named.

use serde::{Deserialize, Serialize};

use super::CheckRole;

fn both() -> Vec<CheckRole> {
    vec![CheckRole::Mx, CheckRole::Submission]
}

/// `[checks.audit]`: content audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Run this check. Default `false`.
    pub enabled: bool,
    /// Listener roles it runs on. Default both: inbound (`mx`) and outbound
    /// (`submission`) mail. A rule can narrow this with its own `roles`.
    pub roles: Vec<CheckRole>,
    /// The append-only JSON-lines audit log: one line per rule that matched.
    /// `""` (default) = no audit log (verdicts are still in smtpd's log).
    pub log_path: String,
    /// Decoded text scanned per message, bytes (headers, body parts and
    /// attachment names together); the rest is not looked at. Default
    /// 4 MiB.
    pub max_scan_bytes: u64,
    /// MIME parts looked at per message (nested messages included); later
    /// parts are not scanned. Default 100.
    pub max_parts: u32,
    /// Bound on the matched excerpt written to the audit log, characters.
    /// Default 80; 0 = no excerpt.
    pub excerpt_length: u32,
    /// Reply text of a `reject` rule without its own `text`.
    pub reject_text: String,
    /// The rules, `[[checks.audit.rule]]`, all evaluated for every message.
    pub rule: Vec<AuditRule>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            roles: both(),
            log_path: String::new(),
            max_scan_bytes: 4 * 1024 * 1024,
            max_parts: 100,
            excerpt_length: 80,
            reject_text: "Message content rejected by policy".into(),
            rule: Vec::new(),
        }
    }
}

/// Where a rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditScope {
    /// Each header field of the message as `Name: value`, unfolded, with
    /// RFC 2047 encoded words decoded.
    Headers,
    /// Text parts (text/plain, text/html as text, any charset), after
    /// transfer decoding (base64, quoted-printable) and charset decoding.
    Body,
    /// File names of attachments (RFC 2231 / 2047 decoded).
    AttachmentName,
    /// Content types (`type/subtype`, lower case) of the message's leaf
    /// parts.
    AttachmentType,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// Refuse at end-of-data: `code` (5xx) with enhanced code 5.7.1.
    Reject,
    /// Accept into the `hold` queue for review (`mailctl queue release`).
    Hold,
    /// Accept, and deliver a copy to `archive_to` too.
    Archive,
    /// Accept with a header field `header_name: <rule name>` prepended.
    AddHeader,
    /// Only write the audit log.
    Log,
}

/// One `[[checks.audit.rule]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditRule {
    /// Name (letters, digits, `.`, `_`, `-`): in logs, the hold reason and
    /// the added header.
    pub name: String,
    /// Roles the rule applies on (within the section's `roles`).
    pub roles: Vec<CheckRole>,
    /// Where to look. Default: headers, body, attachment names.
    pub scope: Vec<AuditScope>,
    /// With `headers` in scope: only these header fields (case-insensitive
    /// names); empty = every field.
    pub headers: Vec<String>,
    /// Literal words or phrases (any script, e.g. Chinese).
    pub keywords: Vec<String>,
    /// Regular expressions (Rust `regex` syntax; `^`/`$` match at line
    /// boundaries).
    pub regex: Vec<String>,
    /// Match keywords and regexes case-sensitively. Default `false`.
    pub case_sensitive: bool,
    /// What to do on a match.
    pub action: AuditAction,
    /// `reject`: the SMTP code (550 or 554; enhanced code 5.7.1).
    pub code: u16,
    /// `reject`: reply text ("" = the section's `reject_text`).
    pub text: String,
    /// `archive`: the address that gets the copy.
    pub archive_to: String,
    /// `add_header`: the header field name; its value is the rule name.
    pub header_name: String,
}

impl Default for AuditRule {
    fn default() -> Self {
        Self {
            name: String::new(),
            roles: both(),
            scope: vec![
                AuditScope::Headers,
                AuditScope::Body,
                AuditScope::AttachmentName,
            ],
            headers: Vec::new(),
            keywords: Vec::new(),
            regex: Vec::new(),
            case_sensitive: false,
            action: AuditAction::Log,
            code: 550,
            text: String::new(),
            archive_to: String::new(),
            header_name: "X-Postern-Audit".into(),
        }
    }
}
