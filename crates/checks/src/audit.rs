//! Content audit (`[checks.audit]`): rules over header fields, decoded body
//! text and attachment names/types, for inbound (`mx`) and outbound
//! (`submission`) mail, at end-of-data.
//!
//! The message is taken apart with mail-parser ([`extract`]): transfer
//! encodings (base64, quoted-printable) and charsets (UTF-8, GB2312, GBK,
//! GB18030, Big5, ISO-8859-x, windows-125x, …, through encoding_rs) are
//! decoded, RFC 2047 encoded words in header fields and RFC 2231 file names
//! too, and text/html parts are turned into text. Each rule ([`rules`]) is
//! one regex — its keywords (escaped) and its regexes as alternatives —
//! matched against the items its `scope` names; its first match counts.
//!
//! Every rule is evaluated. If a matching rule rejects, the first such rule
//! (in configuration order) is the verdict (`550`/`554 5.7.1` with its text)
//! and only it is written to the audit log; otherwise every matching rule
//! gives its verdict (hold, archive copy, add header; `log` gives none) and
//! is written to the audit log.
//!
//! Bounds: `max_scan_bytes` of decoded text and `max_parts` MIME parts per
//! message (what lies beyond is not scanned, and the log line says
//! `"truncated": true`); mail-parser's own nesting bound; the excerpt in
//! the audit log is at most `excerpt_length` characters. Parsing runs on
//! the blocking pool, so a large message does not stall other sessions.
//!
//! The audit log is JSON lines, appended (the file is opened with
//! `O_APPEND` for each message, so logrotate's move-and-create works without
//! a signal; not fsynced). The queue id does not exist yet when the check
//! runs (the message is queued after the verdict): a line carries the SMTP
//! session id and the Message-ID instead, and smtpd logs the queue id with
//! the same session id. The excerpt is the only place a message's content
//! is ever logged; the verdict reasons in smtpd's log name the rule and
//! where it matched, never the text.

pub mod extract;
pub mod rules;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use postern_common::Config;
use postern_common::checks::audit::{AuditAction, AuditConfig, AuditScope};

use crate::{Action, Check, CheckSession, Connection, Envelope, Pipeline, Role, Verdict};

use extract::{Bounds, Extracted};
use rules::{Match, Rule};

/// The check's name (its config section).
pub const NAME: &str = "audit";

/// The content audit check, built once from `[checks.audit]`.
#[derive(Debug)]
pub struct Audit {
    rules: Vec<Rule>,
    bounds: Bounds,
    excerpt_length: usize,
    log: Option<PathBuf>,
}

/// What the check decided for one message, with the matches behind it.
#[derive(Debug, Default)]
pub struct Decision {
    pub verdicts: Vec<Verdict>,
    /// The matches written to the audit log (those that took effect).
    pub matches: Vec<Match>,
    pub extracted: Extracted,
}

fn scope_name(s: AuditScope) -> &'static str {
    match s {
        AuditScope::Headers => "headers",
        AuditScope::Body => "body",
        AuditScope::AttachmentName => "attachment_name",
        AuditScope::AttachmentType => "attachment_type",
    }
}

fn action_name(a: AuditAction) -> &'static str {
    match a {
        AuditAction::Reject => "reject",
        AuditAction::Hold => "hold",
        AuditAction::Archive => "archive",
        AuditAction::AddHeader => "add_header",
        AuditAction::Log => "log",
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Mx => "mx",
        Role::Submission => "submission",
    }
}

impl Audit {
    /// Compile `[checks.audit]`; the error names the key at fault. The
    /// audit log is opened once here, so a path smtpd cannot write to stops
    /// it at start rather than at the first message.
    pub fn new(cfg: &AuditConfig) -> Result<Self, rules::RuleError> {
        let rules = rules::compile(&cfg.rule, &cfg.reject_text)?;
        let log = if cfg.log_path.is_empty() {
            None
        } else {
            let path = PathBuf::from(&cfg.log_path);
            open_log(&path).map_err(|e| rules::RuleError {
                key: "log_path".into(),
                reason: format!("{}: {e}", path.display()),
            })?;
            Some(path)
        };
        if cfg.max_scan_bytes == 0 || cfg.max_parts == 0 {
            return Err(rules::RuleError {
                key: "max_scan_bytes".into(),
                reason: "max_scan_bytes and max_parts must be at least 1".into(),
            });
        }
        Ok(Self {
            rules,
            bounds: Bounds {
                max_bytes: usize::try_from(cfg.max_scan_bytes).unwrap_or(usize::MAX),
                max_parts: cfg.max_parts as usize,
            },
            excerpt_length: cfg.excerpt_length as usize,
            log,
        })
    }

    /// Evaluate every rule for `role` against `message` (blocking: CPU
    /// only).
    pub fn evaluate(&self, role: Role, message: &[u8]) -> Decision {
        let applicable: Vec<(usize, &Rule)> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| role.in_roles(&r.roles))
            .collect();
        if applicable.is_empty() {
            return Decision::default();
        }
        let extracted = extract::extract(message, self.bounds);
        let matches: Vec<Match> = applicable
            .iter()
            .filter_map(|(i, r)| r.find(*i, &extracted.items, self.excerpt_length))
            .collect();
        let reason = |m: &Match| {
            let r = &self.rules[m.rule];
            if m.header.is_empty() {
                format!("rule {} matched in {}", r.name, scope_name(m.scope))
            } else {
                format!(
                    "rule {} matched in header {}",
                    r.name,
                    m.header.chars().take(64).collect::<String>()
                )
            }
        };
        if let Some(m) = matches
            .iter()
            .find(|m| self.rules[m.rule].action == AuditAction::Reject)
        {
            let r = &self.rules[m.rule];
            return Decision {
                verdicts: vec![Verdict::new(
                    NAME,
                    Action::Reject {
                        code: r.code,
                        enhanced: (5, 7, 1),
                        text: r.text.clone(),
                    },
                    reason(m),
                )],
                matches: vec![m.clone()],
                extracted,
            };
        }
        let mut verdicts = Vec::new();
        for m in &matches {
            let r = &self.rules[m.rule];
            let action = match r.action {
                AuditAction::Reject | AuditAction::Log => None,
                AuditAction::Hold => Some(Action::Hold { reason: reason(m) }),
                AuditAction::Archive => Some(Action::Archive {
                    to: r.archive_to.clone(),
                }),
                AuditAction::AddHeader => Some(Action::AddHeader {
                    name: r.header_name.clone(),
                    value: r.name.clone(),
                }),
            };
            if let Some(action) = action {
                verdicts.push(Verdict::new(NAME, action, reason(m)));
            }
        }
        Decision {
            verdicts,
            matches,
            extracted,
        }
    }

    /// The audit log lines for a decision (one per match), newline-ended.
    pub fn log_lines(&self, conn: &Connection, env: &Envelope, d: &Decision) -> String {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut out = String::new();
        for m in &d.matches {
            let r = &self.rules[m.rule];
            let mut line = serde_json::json!({
                "time": now,
                "session": conn.session_id,
                "message_id": d.extracted.message_id,
                "client": conn.ip.to_string(),
                "role": role_name(conn.role),
                "auth_user": conn.auth_user,
                "sender": env.sender,
                "recipients": env.recipients,
                "rule": r.name,
                "action": action_name(r.action),
                "scope": scope_name(m.scope),
                "excerpt": m.excerpt,
                "truncated": d.extracted.truncated,
            });
            if !m.header.is_empty() {
                line["header"] = serde_json::Value::from(m.header.clone());
            }
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out
    }
}

fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Append `lines` with one write (O_APPEND: lines of concurrent sessions
/// do not interleave).
fn append_log(path: &std::path::Path, lines: &str) -> std::io::Result<()> {
    open_log(path)?.write_all(lines.as_bytes())
}

impl Check for Audit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn session(self: Arc<Self>, _conn: &Connection) -> Box<dyn CheckSession> {
        Box::new(AuditSession { audit: self })
    }
}

struct AuditSession {
    audit: Arc<Audit>,
}

#[async_trait::async_trait]
impl CheckSession for AuditSession {
    async fn data(
        &mut self,
        conn: &Connection,
        envelope: &Envelope,
        message: &[u8],
    ) -> Vec<Verdict> {
        let audit = self.audit.clone();
        let role = conn.role;
        let msg = message.to_vec();
        let decision = match tokio::task::spawn_blocking(move || audit.evaluate(role, &msg)).await {
            Ok(d) => d,
            Err(e) => {
                // A panic in the parser must not take the session down; the
                // message is scanned as not matching, loudly.
                tracing::error!(session = %conn.session_id, error = %e, "audit scan failed");
                return Vec::new();
            }
        };
        if decision.extracted.truncated {
            tracing::debug!(session = %conn.session_id, "audit: scan bound reached, rest not scanned");
        }
        if let Some(path) = self.audit.log.clone()
            && !decision.matches.is_empty()
        {
            let lines = self.audit.log_lines(conn, envelope, &decision);
            let session = conn.session_id.clone();
            let written = tokio::task::spawn_blocking(move || append_log(&path, &lines)).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(session = %session, error = %e, "cannot write the audit log")
                }
                Err(e) => {
                    tracing::error!(session = %session, error = %e, "cannot write the audit log")
                }
            }
        }
        decision.verdicts
    }
}

/// Add the audit check when enabled.
pub fn build(cfg: &Config, p: &mut Pipeline) -> anyhow::Result<()> {
    let a = &cfg.checks.audit;
    if !a.enabled {
        return Ok(());
    }
    let audit = Audit::new(a)?;
    if audit.log.is_none() && audit.rules.iter().any(|r| r.action == AuditAction::Log) {
        tracing::warn!(
            "content audit: rules with action \"log\" but no checks.audit.log_path: their matches are not recorded anywhere"
        );
    }
    tracing::info!(
        rules = audit.rules.len(),
        log = ?audit.log,
        "content audit enabled"
    );
    p.push(Arc::new(audit), a.roles.clone());
    Ok(())
}

#[cfg(test)]
mod tests;
