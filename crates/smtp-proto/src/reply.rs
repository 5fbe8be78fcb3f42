//! Reply encoder (RFC 5321 4.2, RFC 2034 enhanced status codes).

use std::fmt;

/// An RFC 3463 enhanced status code `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode(pub u8, pub u16, pub u16);

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// An SMTP reply: a three-digit code, an optional enhanced code (repeated on
/// every line, RFC 2034 sec. 4) and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code, 200..=599.
    pub code: u16,
    /// Enhanced status code, written after the code on every line.
    pub enhanced: Option<EnhancedCode>,
    /// Text lines. CR and LF inside a line are replaced by spaces when encoding,
    /// so a hook cannot inject extra reply lines.
    pub lines: Vec<String>,
}

/// An ESMTP capability advertised in the EHLO reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// RFC 2920
    Pipelining,
    /// RFC 1870, with the maximum size (0 or `None`: no fixed limit).
    Size(Option<u64>),
    /// RFC 6152
    EightBitMime,
    /// RFC 6531
    SmtpUtf8,
    /// RFC 3030
    Chunking,
    /// RFC 3030
    BinaryMime,
    /// RFC 3461
    Dsn,
    /// RFC 2034
    EnhancedStatusCodes,
    /// RFC 3207
    StartTls,
    /// RFC 4954, with the offered mechanisms.
    Auth(Vec<String>),
    /// Anything else, written verbatim.
    Other(String),
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capability::Pipelining => f.write_str("PIPELINING"),
            Capability::Size(Some(n)) => write!(f, "SIZE {n}"),
            Capability::Size(None) => f.write_str("SIZE"),
            Capability::EightBitMime => f.write_str("8BITMIME"),
            Capability::SmtpUtf8 => f.write_str("SMTPUTF8"),
            Capability::Chunking => f.write_str("CHUNKING"),
            Capability::BinaryMime => f.write_str("BINARYMIME"),
            Capability::Dsn => f.write_str("DSN"),
            Capability::EnhancedStatusCodes => f.write_str("ENHANCEDSTATUSCODES"),
            Capability::StartTls => f.write_str("STARTTLS"),
            Capability::Auth(m) => write!(f, "AUTH {}", m.join(" ")),
            Capability::Other(s) => f.write_str(s),
        }
    }
}

impl Reply {
    /// A single-line reply.
    pub fn new(code: u16, enhanced: Option<EnhancedCode>, text: impl Into<String>) -> Self {
        Reply {
            code,
            enhanced,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply. An empty `lines` encodes as one line with no text.
    pub fn multi(code: u16, enhanced: Option<EnhancedCode>, lines: Vec<String>) -> Self {
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// Reply class: 2 (positive), 3 (intermediate), 4 (transient), 5 (permanent).
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// True for 2xx and 3xx replies.
    pub fn is_positive(&self) -> bool {
        matches!(self.class(), 2 | 3)
    }

    /// Append the wire form (`250-a\r\n250 b\r\n`) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 == n { ' ' } else { '-' };
            let mut line = format!("{:03}{sep}", self.code);
            if let Some(e) = self.enhanced {
                line.push_str(&e.to_string());
                if !text.is_empty() {
                    line.push(' ');
                }
            }
            line.extend(
                text.chars()
                    .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
            );
            if sep == ' ' && self.enhanced.is_none() && text.is_empty() {
                // "250 " is legal, but strip the trailing space for tidiness.
                line.pop();
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v);
        v
    }

    /// EHLO reply: `250-<hostname> <greeting>` followed by one line per capability.
    /// No enhanced codes (the first line is not a status, RFC 2034 sec. 3).
    pub fn ehlo(hostname: &str, greeting: &str, caps: &[Capability]) -> Self {
        let mut lines = Vec::with_capacity(caps.len() + 1);
        lines.push(if greeting.is_empty() {
            hostname.to_string()
        } else {
            format!("{hostname} {greeting}")
        });
        lines.extend(caps.iter().map(ToString::to_string));
        Reply {
            code: 250,
            enhanced: None,
            lines,
        }
    }

    /// LHLO reply (RFC 2033): same form as EHLO.
    pub fn lhlo(hostname: &str, greeting: &str, caps: &[Capability]) -> Self {
        Self::ehlo(hostname, greeting, caps)
    }

    /// `220 <hostname> ESMTP <banner>` greeting (no enhanced code).
    pub fn greeting(hostname: &str, banner: &str) -> Self {
        Reply::new(220, None, format!("{hostname} {banner}"))
    }
    /// `220 2.0.0 Ready to start TLS`
    pub fn starttls_ready() -> Self {
        Reply::new(220, Some(EnhancedCode(2, 0, 0)), "Ready to start TLS")
    }
    /// `221 2.0.0 Bye`
    pub fn bye() -> Self {
        Reply::new(221, Some(EnhancedCode(2, 0, 0)), "Bye")
    }
    /// `235 2.7.0 Authentication successful`
    pub fn auth_ok() -> Self {
        Reply::new(
            235,
            Some(EnhancedCode(2, 7, 0)),
            "Authentication successful",
        )
    }
    /// `250 <helo reply>` for HELO (no enhanced code).
    pub fn helo(hostname: &str) -> Self {
        Reply::new(250, None, hostname)
    }
    /// `250 2.0.0 Ok`
    pub fn ok() -> Self {
        Reply::new(250, Some(EnhancedCode(2, 0, 0)), "Ok")
    }
    /// `250 2.1.0 Ok` (MAIL accepted)
    pub fn sender_ok() -> Self {
        Reply::new(250, Some(EnhancedCode(2, 1, 0)), "Ok")
    }
    /// `250 2.1.5 Ok` (RCPT accepted)
    pub fn recipient_ok() -> Self {
        Reply::new(250, Some(EnhancedCode(2, 1, 5)), "Ok")
    }
    /// `250 2.0.0 Ok: queued as <id>`
    pub fn queued(queue_id: &str) -> Self {
        Reply::new(
            250,
            Some(EnhancedCode(2, 0, 0)),
            format!("Ok: queued as {queue_id}"),
        )
    }
    /// `252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery`
    pub fn vrfy_disabled() -> Self {
        Reply::new(
            252,
            Some(EnhancedCode(2, 0, 0)),
            "Cannot VRFY user, but will accept message and attempt delivery",
        )
    }
    /// `334 <challenge>` (AUTH continuation, base64 already applied by the caller).
    pub fn auth_challenge(base64: &str) -> Self {
        Reply::new(334, None, base64)
    }
    /// `354 End data with <CR><LF>.<CR><LF>`
    pub fn start_data() -> Self {
        Reply::new(354, None, "End data with <CR><LF>.<CR><LF>")
    }
    /// `421 4.3.2 <hostname> Service not available, closing transmission channel`
    pub fn shutting_down(hostname: &str) -> Self {
        Reply::new(
            421,
            Some(EnhancedCode(4, 3, 2)),
            format!("{hostname} Service not available, closing transmission channel"),
        )
    }
    /// `421 4.7.0 <hostname> Error: too many errors`
    pub fn too_many_errors(hostname: &str) -> Self {
        Reply::new(
            421,
            Some(EnhancedCode(4, 7, 0)),
            format!("{hostname} Error: too many errors"),
        )
    }
    /// `451 4.3.0 Error: queue file write error` style local error.
    pub fn local_error(text: &str) -> Self {
        Reply::new(451, Some(EnhancedCode(4, 3, 0)), text)
    }
    /// `452 4.5.3 Error: too many recipients`
    pub fn too_many_recipients() -> Self {
        Reply::new(
            452,
            Some(EnhancedCode(4, 5, 3)),
            "Error: too many recipients",
        )
    }
    /// `452 4.3.1 Insufficient system storage`
    pub fn insufficient_storage() -> Self {
        Reply::new(
            452,
            Some(EnhancedCode(4, 3, 1)),
            "Insufficient system storage",
        )
    }
    /// `500 5.5.2 Error: command not recognized`
    pub fn unrecognized() -> Self {
        Reply::new(
            500,
            Some(EnhancedCode(5, 5, 2)),
            "Error: command not recognized",
        )
    }
    /// `501 5.5.4 Syntax: <usage>`
    pub fn syntax(usage: &str) -> Self {
        Reply::new(501, Some(EnhancedCode(5, 5, 4)), format!("Syntax: {usage}"))
    }
    /// `502 5.5.1 Error: command not implemented`
    pub fn not_implemented() -> Self {
        Reply::new(
            502,
            Some(EnhancedCode(5, 5, 1)),
            "Error: command not implemented",
        )
    }
    /// `503 5.5.1 Error: <what>` (bad sequence of commands)
    pub fn bad_sequence(what: &str) -> Self {
        Reply::new(503, Some(EnhancedCode(5, 5, 1)), format!("Error: {what}"))
    }
    /// `504 5.5.4 Unrecognized authentication type` (or other unsupported parameter value)
    pub fn unsupported_auth_mechanism() -> Self {
        Reply::new(
            504,
            Some(EnhancedCode(5, 5, 4)),
            "Unrecognized authentication type",
        )
    }
    /// `530 5.7.0 Must issue a STARTTLS command first`
    pub fn tls_required() -> Self {
        Reply::new(
            530,
            Some(EnhancedCode(5, 7, 0)),
            "Must issue a STARTTLS command first",
        )
    }
    /// `530 5.7.0 Authentication required`
    pub fn auth_required() -> Self {
        Reply::new(530, Some(EnhancedCode(5, 7, 0)), "Authentication required")
    }
    /// `535 5.7.8 Error: authentication failed`
    pub fn auth_failed() -> Self {
        Reply::new(
            535,
            Some(EnhancedCode(5, 7, 8)),
            "Error: authentication failed",
        )
    }
    /// `550 5.1.1 <addr>: Recipient address rejected: User unknown`
    pub fn user_unknown(addr: &str) -> Self {
        Reply::new(
            550,
            Some(EnhancedCode(5, 1, 1)),
            format!("<{addr}>: Recipient address rejected: User unknown"),
        )
    }
    /// `550 5.5.2 Error: bare <LF> received` (see [`crate::BareNewlinePolicy`]).
    pub fn bare_newline() -> Self {
        Reply::new(
            550,
            Some(EnhancedCode(5, 5, 2)),
            "Error: bare <LF> received",
        )
    }
    /// `552 5.3.4 Error: message file too big`
    pub fn message_too_big() -> Self {
        Reply::new(
            552,
            Some(EnhancedCode(5, 3, 4)),
            "Error: message file too big",
        )
    }
    /// `554 5.7.1 <text>` (policy rejection, e.g. relay access denied)
    pub fn policy_rejected(text: &str) -> Self {
        Reply::new(554, Some(EnhancedCode(5, 7, 1)), text)
    }
    /// `555 5.5.4 Unsupported option: <param>`
    pub fn unsupported_parameter(param: &str) -> Self {
        Reply::new(
            555,
            Some(EnhancedCode(5, 5, 4)),
            format!("Unsupported option: {param}"),
        )
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.encode()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line() {
        assert_eq!(Reply::ok().encode(), b"250 2.0.0 Ok\r\n");
        let r = Reply::multi(
            250,
            Some(EnhancedCode(2, 0, 0)),
            vec!["a".into(), "b".into()],
        );
        assert_eq!(r.encode(), b"250-2.0.0 a\r\n250 2.0.0 b\r\n");
        assert_eq!(Reply::multi(250, None, vec![]).encode(), b"250\r\n");
    }

    #[test]
    fn ehlo_builder() {
        let r = Reply::ehlo(
            "mx.example",
            "",
            &[
                Capability::Pipelining,
                Capability::Size(Some(1000)),
                Capability::Auth(vec!["PLAIN".into(), "LOGIN".into()]),
            ],
        );
        assert_eq!(
            r.encode(),
            b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 AUTH PLAIN LOGIN\r\n"
        );
    }

    #[test]
    fn no_line_injection() {
        let r = Reply::new(550, Some(EnhancedCode(5, 1, 1)), "x\r\n250 ok");
        assert_eq!(r.encode(), b"550 5.1.1 x  250 ok\r\n");
    }

    #[test]
    fn common_codes() {
        assert_eq!(
            Reply::message_too_big().encode(),
            b"552 5.3.4 Error: message file too big\r\n"
        );
        assert_eq!(Reply::start_data().code, 354);
        assert_eq!(
            Reply::unsupported_parameter("FOO=1").encode(),
            b"555 5.5.4 Unsupported option: FOO=1\r\n"
        );
        assert!(Reply::start_data().is_positive());
        assert!(!Reply::bad_sequence("x").is_positive());
    }
}
