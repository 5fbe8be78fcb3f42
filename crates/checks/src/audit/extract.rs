//! What the audit rules look at: a message taken apart with mail-parser
//! into decoded text items (header fields, text parts, attachment names and
//! content types), within the scan bounds.

use mail_parser::{HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use postern_common::checks::audit::AuditScope;

/// Nested messages (message/rfc822 inside message/rfc822 …) followed;
/// mail-parser itself decodes at most 3 levels of encoded nesting.
const MAX_DEPTH: usize = 8;
/// Bound on the Message-ID kept for the audit log, characters.
const MAX_MESSAGE_ID: usize = 256;

/// One piece of decoded text a rule can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub scope: AuditScope,
    /// The header field name (`Headers` items), else empty.
    pub header: String,
    pub text: String,
}

/// A message as the rules see it.
#[derive(Debug, Default)]
pub struct Extracted {
    pub items: Vec<Item>,
    /// The top-level Message-ID (without angle brackets), bounded.
    pub message_id: String,
    /// A scan bound was reached: parts or text after it were not looked at.
    pub truncated: bool,
}

/// The scan bounds (`max_scan_bytes`, `max_parts`).
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_bytes: usize,
    pub max_parts: usize,
}

struct Walk {
    bounds: Bounds,
    out: Extracted,
    bytes: usize,
    parts: usize,
}

impl Walk {
    /// Add an item, cut to what is left of the byte budget (at a character
    /// boundary). Returns false once the budget is spent.
    fn push(&mut self, scope: AuditScope, header: &str, text: &str) -> bool {
        let left = self.bounds.max_bytes.saturating_sub(self.bytes);
        if left == 0 {
            self.out.truncated = true;
            return false;
        }
        let mut end = text.len().min(left);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end < text.len() {
            self.out.truncated = true;
        }
        self.bytes += end;
        if end > 0 {
            self.out.items.push(Item {
                scope,
                header: header.to_string(),
                text: text[..end].to_string(),
            });
        }
        end == text.len()
    }

    fn headers(&mut self, msg: &Message<'_>) -> bool {
        let raw = msg.raw_message();
        for h in msg.headers() {
            let value = match h.value() {
                HeaderValue::Text(t) => t.to_string(),
                HeaderValue::TextList(l) => l.join(", "),
                HeaderValue::Address(a) => a
                    .iter()
                    .map(|addr| match (&addr.name, &addr.address) {
                        (Some(n), Some(a)) => format!("{n} <{a}>"),
                        (Some(n), None) => n.to_string(),
                        (None, Some(a)) => a.to_string(),
                        (None, None) => String::new(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                // Dates, Content-Type, Received, …: the raw value, unfolded.
                _ => raw_value(raw, h.offset_start() as usize, h.offset_end() as usize),
            };
            let line = format!("{}: {}", h.name(), value.trim());
            if !self.push(AuditScope::Headers, h.name(), &line) {
                return false;
            }
        }
        true
    }

    fn message(&mut self, msg: &Message<'_>, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            self.out.truncated = true;
            return false;
        }
        if !self.headers(msg) {
            return false;
        }
        for part in &msg.parts {
            self.parts += 1;
            if self.parts > self.bounds.max_parts {
                self.out.truncated = true;
                return false;
            }
            let leaf = !matches!(part.body, PartType::Multipart(_));
            if leaf {
                let ctype = match part.content_type() {
                    Some(ct) => match ct.subtype() {
                        Some(sub) => format!("{}/{}", ct.ctype(), sub),
                        None => ct.ctype().to_string(),
                    },
                    None => "text/plain".to_string(),
                };
                if !self.push(AuditScope::AttachmentType, "", &ctype.to_ascii_lowercase()) {
                    return false;
                }
            }
            if let Some(name) = part.attachment_name()
                && !self.push(AuditScope::AttachmentName, "", name)
            {
                return false;
            }
            let more = match &part.body {
                PartType::Text(t) => self.push(AuditScope::Body, "", t),
                PartType::Html(h) => {
                    let text = mail_parser::decoders::html::html_to_text(h);
                    self.push(AuditScope::Body, "", &text)
                }
                PartType::Message(m) => self.message(m, depth + 1),
                PartType::Binary(_) | PartType::InlineBinary(_) | PartType::Multipart(_) => true,
            };
            if !more {
                return false;
            }
        }
        true
    }
}

/// The raw header value between `start` and `end`, unfolded, lossily UTF-8.
fn raw_value(raw: &[u8], start: usize, end: usize) -> String {
    let Some(v) = raw.get(start..end.min(raw.len())) else {
        return String::new();
    };
    String::from_utf8_lossy(v)
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Take `message` apart. Never fails: what mail-parser cannot parse is
/// scanned as far as it got (a message it cannot parse at all gives its
/// raw text, lossily decoded, as one body item).
pub fn extract(message: &[u8], bounds: Bounds) -> Extracted {
    let mut w = Walk {
        bounds,
        out: Extracted::default(),
        bytes: 0,
        parts: 0,
    };
    match MessageParser::default().parse(message) {
        Some(msg) => {
            w.out.message_id = msg
                .message_id()
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_MESSAGE_ID)
                .collect();
            w.message(&msg, 0);
        }
        None => {
            let text = String::from_utf8_lossy(message);
            w.push(AuditScope::Body, "", &text);
        }
    }
    w.out
}
