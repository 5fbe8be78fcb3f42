//! Server replies: `+OK` / `-ERR [CODE]` lines, SASL continuations,
//! multi-line responses and the CAPA list.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Largest single-line reply, in octets including CRLF (RFC 2449 section 4:
/// "Responses may be up to 512 characters long, including the terminating
/// CRLF"). [`Response::encode`] truncates longer text at a UTF-8 boundary.
pub const MAX_RESPONSE_LINE: usize = 512;

/// Whether a reply is positive or negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `+OK`
    Ok,
    /// `-ERR`
    Err,
}

/// Extended response codes sent in brackets after `-ERR`
/// (RFC 2449 section 8, RFC 3206).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespCode {
    /// `[AUTH]` — the failure is about credentials (RFC 3206 section 4).
    Auth,
    /// `[SYS/TEMP]` — temporary system problem; retry later (RFC 3206 section 5).
    SysTemp,
    /// `[SYS/PERM]` — permanent system problem (RFC 3206 section 5).
    SysPerm,
    /// `[IN-USE]` — the maildrop is locked by another session (RFC 2449 section 8.1.2).
    InUse,
    /// `[LOGIN-DELAY]` — logged in too recently (RFC 2449 section 8.1.1).
    LoginDelay,
}

impl RespCode {
    /// The code as written between the brackets.
    pub fn as_str(self) -> &'static str {
        match self {
            RespCode::Auth => "AUTH",
            RespCode::SysTemp => "SYS/TEMP",
            RespCode::SysPerm => "SYS/PERM",
            RespCode::InUse => "IN-USE",
            RespCode::LoginDelay => "LOGIN-DELAY",
        }
    }
}

/// A single-line reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `+OK` or `-ERR`.
    pub status: Status,
    /// Optional response code (only written for `-ERR`).
    pub code: Option<RespCode>,
    /// Human-readable text. CR, LF and NUL are replaced by spaces on encoding.
    pub text: Cow<'static, str>,
}

impl Response {
    /// `+OK text`.
    pub fn ok(text: impl Into<Cow<'static, str>>) -> Self {
        Response {
            status: Status::Ok,
            code: None,
            text: text.into(),
        }
    }

    /// `-ERR text`.
    pub fn err(text: impl Into<Cow<'static, str>>) -> Self {
        Response {
            status: Status::Err,
            code: None,
            text: text.into(),
        }
    }

    /// `-ERR [CODE] text`.
    pub fn err_code(code: RespCode, text: impl Into<Cow<'static, str>>) -> Self {
        Response {
            status: Status::Err,
            code: Some(code),
            text: text.into(),
        }
    }

    /// True for `+OK`.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// Appends the wire form (at most [`MAX_RESPONSE_LINE`] octets, CRLF
    /// included) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(match self.status {
            Status::Ok => b"+OK",
            Status::Err => b"-ERR",
        });
        if let (Status::Err, Some(code)) = (self.status, self.code) {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_str().as_bytes());
            out.push(b']');
        }
        if !self.text.is_empty() {
            out.push(b' ');
            let room = MAX_RESPONSE_LINE - 2 - (out.len() - start);
            let mut end = self.text.len().min(room);
            while !self.text.is_char_boundary(end) {
                end -= 1;
            }
            push_sanitized(out, &self.text.as_bytes()[..end]);
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The wire form as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

/// Copies `text`, replacing CR, LF and NUL by spaces so that a reply can
/// never be split into two lines by text that came from elsewhere.
fn push_sanitized(out: &mut Vec<u8>, text: &[u8]) {
    out.extend(text.iter().map(|&b| match b {
        b'\r' | b'\n' | 0 => b' ',
        b => b,
    }));
}

/// Appends a SASL server challenge: `+ <base64>` CRLF (RFC 5034 section 4).
/// An empty challenge is sent as `+ ` CRLF.
pub fn encode_continuation(challenge: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"+ ");
    out.extend_from_slice(BASE64.encode(challenge).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete multi-line response: the `first` line (normally
/// `+OK`), each of `lines` with CRLF and byte-stuffing (a leading `.` is
/// doubled, RFC 1939 section 3), then the terminating `.` CRLF.
///
/// For LIST, UIDL and CAPA. Lines must not contain line ends; CR, LF and NUL
/// are replaced by spaces. Message bodies go through
/// [`BodyEncoder`](crate::BodyEncoder) instead.
pub fn encode_multiline<I, L>(first: &Response, lines: I, out: &mut Vec<u8>)
where
    I: IntoIterator<Item = L>,
    L: AsRef<[u8]>,
{
    first.encode(out);
    for line in lines {
        let line = line.as_ref();
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        push_sanitized(out, line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// RFC 2449 `EXPIRE` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expire {
    /// `EXPIRE NEVER`: messages are never deleted by the server.
    Never,
    /// `EXPIRE n`: messages may be deleted `n` days after first retrieval
    /// (0: the client must delete what it retrieves).
    Days(u32),
}

/// The CAPA response (RFC 2449 section 5 and 6, RFC 2595 section 4,
/// RFC 3206 section 6, RFC 5034 section 5).
///
/// Fill in what the server supports, then call [`Capabilities::advertised`]
/// for the session's situation and [`Capabilities::encode`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `TOP`.
    pub top: bool,
    /// `UIDL`.
    pub uidl: bool,
    /// `USER` (USER/PASS login).
    pub user: bool,
    /// `RESP-CODES`.
    pub resp_codes: bool,
    /// `AUTH-RESP-CODE` (RFC 3206).
    pub auth_resp_code: bool,
    /// `PIPELINING`.
    pub pipelining: bool,
    /// `SASL mech ...`; omitted when empty.
    pub sasl: Vec<String>,
    /// `STLS` (RFC 2595).
    pub stls: bool,
    /// `EXPIRE` policy, if announced.
    pub expire: Option<Expire>,
    /// `LOGIN-DELAY` seconds, if announced.
    pub login_delay: Option<u32>,
    /// Add the `USER` tag to EXPIRE and LOGIN-DELAY (in AUTHORIZATION state:
    /// "the value may differ per user").
    pub per_user_policy: bool,
    /// `IMPLEMENTATION text`.
    pub implementation: Option<String>,
}

/// SASL mechanisms that carry the password in clear; hidden and refused on a
/// plaintext connection when plaintext authentication is disabled.
pub const CLEARTEXT_MECHANISMS: &[&str] = &["PLAIN", "LOGIN"];

/// True if `mech` (any case) sends the password in clear.
pub fn is_cleartext_mechanism(mech: &str) -> bool {
    CLEARTEXT_MECHANISMS
        .iter()
        .any(|m| m.eq_ignore_ascii_case(mech))
}

impl Capabilities {
    /// The capabilities to show in the given situation:
    ///
    /// * `STLS` only in AUTHORIZATION state without TLS;
    /// * `USER` and clear-text SASL mechanisms hidden on a plaintext
    ///   connection when plaintext authentication is not allowed;
    /// * `USER`, `SASL` and `STLS` dropped in TRANSACTION state, where they
    ///   cannot be used.
    pub fn advertised(
        &self,
        state: crate::State,
        tls_active: bool,
        plaintext_allowed: bool,
    ) -> Capabilities {
        let mut c = self.clone();
        let authorization = state == crate::State::Authorization;
        let cleartext_ok = tls_active || plaintext_allowed;
        c.stls &= authorization && !tls_active;
        c.user &= authorization && cleartext_ok;
        if !authorization {
            c.sasl.clear();
            c.per_user_policy = false;
        } else if !cleartext_ok {
            c.sasl.retain(|m| !is_cleartext_mechanism(m));
        }
        c
    }

    /// Appends the full multi-line CAPA response.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut lines: Vec<Cow<'static, str>> = Vec::new();
        let tag = if self.per_user_policy { " USER" } else { "" };
        if self.top {
            lines.push("TOP".into());
        }
        if self.uidl {
            lines.push("UIDL".into());
        }
        if self.user {
            lines.push("USER".into());
        }
        if !self.sasl.is_empty() {
            lines.push(format!("SASL {}", self.sasl.join(" ")).into());
        }
        if self.resp_codes {
            lines.push("RESP-CODES".into());
        }
        if self.auth_resp_code {
            lines.push("AUTH-RESP-CODE".into());
        }
        if self.pipelining {
            lines.push("PIPELINING".into());
        }
        if self.stls {
            lines.push("STLS".into());
        }
        match self.expire {
            Some(Expire::Never) => lines.push("EXPIRE NEVER".into()),
            Some(Expire::Days(d)) => lines.push(format!("EXPIRE {d}{tag}").into()),
            None => {}
        }
        if let Some(s) = self.login_delay {
            lines.push(format!("LOGIN-DELAY {s}{tag}").into());
        }
        if let Some(i) = &self.implementation {
            lines.push(format!("IMPLEMENTATION {i}").into());
        }
        encode_multiline(
            &Response::ok("Capability list follows"),
            lines.iter().map(|l| l.as_bytes()),
            out,
        );
    }
}
