//! `[[checks.audit.rule]]` compiled: one regex per rule (its keywords
//! escaped and its regexes, as alternatives), validated with the key named.

use postern_common::checks::CheckRole;
use postern_common::checks::audit::{AuditAction, AuditRule, AuditScope};
use regex::{Regex, RegexBuilder};

use super::extract::Item;

/// Bound on a rule's compiled regex (bytes of the automaton): a huge
/// keyword list or a pathological pattern is refused at start instead of
/// using memory per message.
const REGEX_SIZE_LIMIT: usize = 16 * 1024 * 1024;
/// Bound on a rule name, characters.
const MAX_RULE_NAME: usize = 64;
/// Bound on a reject text, bytes (it goes into one SMTP reply line, which
/// RFC 5321 4.5.3.1.5 bounds at 512 octets with the code).
pub const MAX_REJECT_TEXT: usize = 400;

/// A configuration mistake in `[checks.audit]`, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("checks.audit.{key}: {reason}")]
pub struct RuleError {
    pub key: String,
    pub reason: String,
}

fn err(key: impl Into<String>, reason: impl Into<String>) -> RuleError {
    RuleError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub roles: Vec<CheckRole>,
    pub scope: Vec<AuditScope>,
    /// Lower-case header names; empty = every field.
    pub headers: Vec<String>,
    pub re: Regex,
    pub action: AuditAction,
    pub code: u16,
    /// Reply text for `reject` (the section's default filled in).
    pub text: String,
    pub archive_to: String,
    pub header_name: String,
}

/// A rule's first match in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index of the rule.
    pub rule: usize,
    pub scope: AuditScope,
    /// The header field it matched in (`Headers`), else empty.
    pub header: String,
    /// The matched text with context, at most `excerpt_length` characters.
    pub excerpt: String,
}

fn header_name_ok(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// An address we write into an envelope: no spaces, controls or brackets.
fn address_ok(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 254
        && a.contains('@')
        && !a
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
}

/// Compile and validate the rules; `default_text` is the section's
/// `reject_text`.
pub fn compile(rules: &[AuditRule], default_text: &str) -> Result<Vec<Rule>, RuleError> {
    if default_text.is_empty()
        || default_text.len() > MAX_REJECT_TEXT
        || !default_text.bytes().all(|b| (32..=126).contains(&b))
    {
        return Err(err(
            "reject_text",
            format!("1 to {MAX_REJECT_TEXT} printable ASCII characters"),
        ));
    }
    let mut out: Vec<Rule> = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let key = |k: &str| format!("rule[{i}].{k}");
        if r.name.is_empty()
            || r.name.chars().count() > MAX_RULE_NAME
            || !r
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(err(
                key("name"),
                format!(
                    "{:?}: 1 to {MAX_RULE_NAME} letters, digits, '.', '_', '-'",
                    r.name
                ),
            ));
        }
        if out.iter().any(|o| o.name == r.name) {
            return Err(err(key("name"), format!("{:?} used twice", r.name)));
        }
        if r.roles.is_empty() {
            return Err(err(key("roles"), "empty: the rule would never run"));
        }
        if r.scope.is_empty() {
            return Err(err(key("scope"), "empty: the rule would look nowhere"));
        }
        for (j, h) in r.headers.iter().enumerate() {
            if !header_name_ok(h) {
                return Err(err(
                    key(&format!("headers[{j}]")),
                    format!("{h:?} is not a header field name"),
                ));
            }
        }
        if r.keywords.is_empty() && r.regex.is_empty() {
            return Err(err(key("keywords"), "a rule needs keywords or regex"));
        }
        let mut alternatives = Vec::with_capacity(r.keywords.len() + r.regex.len());
        for (j, k) in r.keywords.iter().enumerate() {
            if k.is_empty() {
                return Err(err(
                    key(&format!("keywords[{j}]")),
                    "empty keyword (matches everything)",
                ));
            }
            alternatives.push(regex::escape(k));
        }
        for (j, p) in r.regex.iter().enumerate() {
            // Compiled alone first, so an error names the pattern.
            build(p, r.case_sensitive)
                .map_err(|e| err(key(&format!("regex[{j}]")), e.to_string()))?;
            alternatives.push(p.clone());
        }
        let joined = alternatives
            .iter()
            .map(|a| format!("(?:{a})"))
            .collect::<Vec<_>>()
            .join("|");
        let re = build(&joined, r.case_sensitive).map_err(|e| err(key("regex"), e.to_string()))?;
        if !(r.code == 550 || r.code == 554) {
            return Err(err(key("code"), "550 or 554"));
        }
        if r.text.len() > MAX_REJECT_TEXT || !r.text.bytes().all(|b| (32..=126).contains(&b)) {
            return Err(err(
                key("text"),
                format!("at most {MAX_REJECT_TEXT} printable ASCII characters"),
            ));
        }
        if r.action == AuditAction::Archive && !address_ok(&r.archive_to) {
            return Err(err(
                key("archive_to"),
                "action \"archive\" needs an address (user@domain)",
            ));
        }
        if !r.archive_to.is_empty() && !address_ok(&r.archive_to) {
            return Err(err(key("archive_to"), "not an address"));
        }
        if !header_name_ok(&r.header_name) {
            return Err(err(
                key("header_name"),
                format!("{:?} is not a header field name", r.header_name),
            ));
        }
        out.push(Rule {
            name: r.name.clone(),
            roles: r.roles.clone(),
            scope: r.scope.clone(),
            headers: r.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            re,
            action: r.action,
            code: r.code,
            text: if r.text.is_empty() {
                default_text.to_string()
            } else {
                r.text.clone()
            },
            archive_to: r.archive_to.clone(),
            header_name: r.header_name.clone(),
        });
    }
    Ok(out)
}

fn build(pattern: &str, case_sensitive: bool) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(!case_sensitive)
        .multi_line(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

impl Rule {
    /// The rule's first match in `items` (in message order), if any.
    pub fn find(&self, index: usize, items: &[Item], excerpt_length: usize) -> Option<Match> {
        for item in items {
            if !self.scope.contains(&item.scope) {
                continue;
            }
            if item.scope == AuditScope::Headers
                && !self.headers.is_empty()
                && !self
                    .headers
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(&item.header))
            {
                continue;
            }
            if let Some(m) = self.re.find(&item.text) {
                return Some(Match {
                    rule: index,
                    scope: item.scope,
                    header: item.header.clone(),
                    excerpt: excerpt(&item.text, m.start(), m.end(), excerpt_length),
                });
            }
        }
        None
    }
}

/// The match `text[start..end]` with context around it, at most `max`
/// characters, control characters shown as spaces. When the match itself
/// is longer than `max`, its first `max` characters.
pub fn excerpt(text: &str, start: usize, end: usize, max: usize) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    let matched: Vec<char> = text[start..end].chars().collect();
    if matched.len() >= max {
        return clean(&matched[..max].iter().collect::<String>());
    }
    let room = max - matched.len();
    let before: Vec<char> = text[..start].chars().rev().take(room / 2).collect();
    let after_room = room - before.len();
    let after: String = text[end..].chars().take(after_room).collect();
    let mut s: String = before.into_iter().rev().collect();
    s.extend(matched);
    s.push_str(&after);
    clean(&s)
}
