//! The milter wire format, sans I/O: packets the MTA sends
//! ([`Command::encode`]) and the milter's replies ([`Decoder::decode`]).
//!
//! A packet is a 4-byte big-endian length (counting the command byte), one
//! command byte, then data; strings are NUL-terminated. Constants follow
//! Sendmail's `libmilter/mfdef.h` (protocol version 6, as Postfix 2.6+).
//!
//! This file uses only `std` so the fuzz crate (`crates/checks/fuzz`) can
//! include it without building the daemon's dependency tree.

use std::fmt;

/// The protocol version we speak (Sendmail 8.14 / Postfix 2.6+).
pub const VERSION: u32 = 6;

/// Largest reply packet accepted. Replies are verdicts, header fields and
/// (not negotiated by us) body chunks of at most 64 KiB; anything bigger is
/// a broken or hostile milter.
pub const MAX_REPLY_LEN: usize = 256 * 1024;

/// Largest body chunk sent (`MILTER_CHUNK_SIZE`; we do not negotiate the
/// larger `SMFIP_MDS_*` sizes).
pub const BODY_CHUNK: usize = 65_535;

// Actions the milter may ask for (SMFIF_*).
pub const SMFIF_ADDHDRS: u32 = 0x01;
pub const SMFIF_CHGBODY: u32 = 0x02;
pub const SMFIF_ADDRCPT: u32 = 0x04;
pub const SMFIF_DELRCPT: u32 = 0x08;
pub const SMFIF_CHGHDRS: u32 = 0x10;
pub const SMFIF_QUARANTINE: u32 = 0x20;
pub const SMFIF_CHGFROM: u32 = 0x40;
pub const SMFIF_ADDRCPT_PAR: u32 = 0x80;
pub const SMFIF_SETSYMLIST: u32 = 0x100;

// Protocol steps the milter may leave out or not reply to (SMFIP_*).
pub const SMFIP_NOCONNECT: u32 = 0x1;
pub const SMFIP_NOHELO: u32 = 0x2;
pub const SMFIP_NOMAIL: u32 = 0x4;
pub const SMFIP_NORCPT: u32 = 0x8;
pub const SMFIP_NOBODY: u32 = 0x10;
pub const SMFIP_NOHDRS: u32 = 0x20;
pub const SMFIP_NOEOH: u32 = 0x40;
pub const SMFIP_NR_HDR: u32 = 0x80;
pub const SMFIP_NOUNKNOWN: u32 = 0x100;
pub const SMFIP_NODATA: u32 = 0x200;
pub const SMFIP_SKIP: u32 = 0x400;
pub const SMFIP_RCPT_REJ: u32 = 0x800;
pub const SMFIP_NR_CONN: u32 = 0x1000;
pub const SMFIP_NR_HELO: u32 = 0x2000;
pub const SMFIP_NR_MAIL: u32 = 0x4000;
pub const SMFIP_NR_RCPT: u32 = 0x8000;
pub const SMFIP_NR_DATA: u32 = 0x10000;
pub const SMFIP_NR_UNKN: u32 = 0x20000;
pub const SMFIP_NR_EOH: u32 = 0x40000;
pub const SMFIP_NR_BODY: u32 = 0x80000;
pub const SMFIP_HDR_LEADSPC: u32 = 0x100000;

/// Actions we offer: adding/inserting header fields, quarantine, adding a
/// recipient (delivered as an archive copy). Not offered, because the queue
/// only prepends: changing or deleting header fields, replacing the body,
/// removing recipients, changing the sender, macro lists.
pub const OFFERED_ACTIONS: u32 = SMFIF_ADDHDRS | SMFIF_QUARANTINE | SMFIF_ADDRCPT;

/// Protocol flags we honour: every "leave out" and "no reply" step, SKIP
/// and leading-space header values. Not `SMFIP_RCPT_REJ` (rejected
/// recipients are not shown to the milter).
pub const OFFERED_PROTOCOL: u32 = SMFIP_NOCONNECT
    | SMFIP_NOHELO
    | SMFIP_NOMAIL
    | SMFIP_NORCPT
    | SMFIP_NOBODY
    | SMFIP_NOHDRS
    | SMFIP_NOEOH
    | SMFIP_NR_HDR
    | SMFIP_NOUNKNOWN
    | SMFIP_NODATA
    | SMFIP_SKIP
    | SMFIP_NR_CONN
    | SMFIP_NR_HELO
    | SMFIP_NR_MAIL
    | SMFIP_NR_RCPT
    | SMFIP_NR_DATA
    | SMFIP_NR_UNKN
    | SMFIP_NR_EOH
    | SMFIP_NR_BODY
    | SMFIP_HDR_LEADSPC;

/// Client address family in SMFIC_CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet4,
    Inet6,
    Unknown,
}

/// A packet from the MTA to the milter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// SMFIC_OPTNEG `O`.
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// SMFIC_MACRO `D`: macros for the command `stage` that follows.
    Macro {
        stage: u8,
        pairs: &'a [(&'a str, String)],
    },
    /// SMFIC_CONNECT `C`.
    Connect {
        hostname: &'a str,
        family: Family,
        port: u16,
        address: &'a str,
    },
    /// SMFIC_HELO `H`.
    Helo(&'a str),
    /// SMFIC_MAIL `M`: `<sender>` then ESMTP parameters.
    Mail(&'a [&'a str]),
    /// SMFIC_RCPT `R`: `<recipient>` then ESMTP parameters.
    Rcpt(&'a [&'a str]),
    /// SMFIC_DATA `T`.
    Data,
    /// SMFIC_HEADER `L`: name and value (folds as LF).
    Header { name: &'a [u8], value: &'a [u8] },
    /// SMFIC_EOH `N`.
    Eoh,
    /// SMFIC_BODY `B`: at most [`BODY_CHUNK`] bytes.
    Body(&'a [u8]),
    /// SMFIC_BODYEOB `E`.
    BodyEob,
    /// SMFIC_ABORT `A`: the transaction ended without end-of-message.
    Abort,
    /// SMFIC_QUIT `Q`.
    Quit,
}

impl Command<'_> {
    /// The command byte.
    pub fn code(&self) -> u8 {
        match self {
            Command::OptNeg { .. } => b'O',
            Command::Macro { .. } => b'D',
            Command::Connect { .. } => b'C',
            Command::Helo(_) => b'H',
            Command::Mail(_) => b'M',
            Command::Rcpt(_) => b'R',
            Command::Data => b'T',
            Command::Header { .. } => b'L',
            Command::Eoh => b'N',
            Command::Body(_) => b'B',
            Command::BodyEob => b'E',
            Command::Abort => b'A',
            Command::Quit => b'Q',
        }
    }

    /// Append the packet to `out`. NUL bytes inside strings (which would
    /// end them early on the milter's side) are sent as spaces.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0, 0, self.code()]);
        match self {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => {
                out.extend_from_slice(&version.to_be_bytes());
                out.extend_from_slice(&actions.to_be_bytes());
                out.extend_from_slice(&protocol.to_be_bytes());
            }
            Command::Macro { stage, pairs } => {
                out.push(*stage);
                for (name, value) in pairs.iter() {
                    cstr(out, name.as_bytes());
                    cstr(out, value.as_bytes());
                }
            }
            Command::Connect {
                hostname,
                family,
                port,
                address,
            } => {
                cstr(out, hostname.as_bytes());
                match family {
                    Family::Inet4 | Family::Inet6 => {
                        out.push(if *family == Family::Inet4 { b'4' } else { b'6' });
                        out.extend_from_slice(&port.to_be_bytes());
                        cstr(out, address.as_bytes());
                    }
                    Family::Unknown => out.push(b'U'),
                }
            }
            Command::Helo(s) => cstr(out, s.as_bytes()),
            Command::Mail(args) | Command::Rcpt(args) => {
                for a in args.iter() {
                    cstr(out, a.as_bytes());
                }
            }
            Command::Header { name, value } => {
                cstr(out, name);
                cstr(out, value);
            }
            Command::Body(chunk) => out.extend_from_slice(chunk),
            Command::Data | Command::Eoh | Command::BodyEob | Command::Abort | Command::Quit => {}
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

fn cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend(s.iter().map(|&b| if b == 0 { b' ' } else { b }));
    out.push(0);
}

/// A packet from the milter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `O`: the milter's side of the negotiation.
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// `a`: accept (the connection or the message) without further milter
    /// calls.
    Accept,
    /// `c`: go on.
    Continue,
    /// `d`: accept and drop the message.
    Discard,
    /// `r`: reject (5xx).
    Reject,
    /// `t`: temporary failure (4xx).
    TempFail,
    /// `y`: reject with the milter's own reply (`"550 5.7.1 text"`).
    ReplyCode(String),
    /// `s`: no more body chunks, please.
    Skip,
    /// `p`: still working, keep waiting.
    Progress,
    /// `q`: quarantine with a reason.
    Quarantine(String),
    /// `h`: append a header field.
    AddHeader { name: String, value: String },
    /// `i`: insert a header field at `index`.
    InsHeader {
        index: u32,
        name: String,
        value: String,
    },
    /// `m`: change (empty value = delete) the `index`th field `name`.
    ChgHeader {
        index: u32,
        name: String,
        value: String,
    },
    /// `b`: replace the body (a chunk of it).
    ReplBody(Vec<u8>),
    /// `+`: add a recipient.
    AddRcpt(String),
    /// `2`: add a recipient with ESMTP parameters.
    AddRcptPar { rcpt: String, args: String },
    /// `-`: remove a recipient.
    DelRcpt(String),
    /// `e`: change the sender.
    ChgFrom { sender: String, args: String },
    /// `f`: connection failure: the milter gives up on this connection.
    ConnFail,
    /// `4`: the milter is shutting down.
    Shutdown,
    /// `l`: macro list (only with SMFIF_SETSYMLIST, not offered).
    SetSymList,
    /// Any other command byte.
    Unknown(u8),
}

impl Reply {
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Reply::OptNeg { .. } => "optneg",
            Reply::Accept => "accept",
            Reply::Continue => "continue",
            Reply::Discard => "discard",
            Reply::Reject => "reject",
            Reply::TempFail => "tempfail",
            Reply::ReplyCode(_) => "replycode",
            Reply::Skip => "skip",
            Reply::Progress => "progress",
            Reply::Quarantine(_) => "quarantine",
            Reply::AddHeader { .. } => "addheader",
            Reply::InsHeader { .. } => "insheader",
            Reply::ChgHeader { .. } => "chgheader",
            Reply::ReplBody(_) => "replbody",
            Reply::AddRcpt(_) => "addrcpt",
            Reply::AddRcptPar { .. } => "addrcpt_par",
            Reply::DelRcpt(_) => "delrcpt",
            Reply::ChgFrom { .. } => "chgfrom",
            Reply::ConnFail => "connfail",
            Reply::Shutdown => "shutdown",
            Reply::SetSymList => "setsymlist",
            Reply::Unknown(_) => "unknown",
        }
    }
}

/// A malformed reply packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// Length 0: not even a command byte.
    Empty,
    /// Longer than [`MAX_REPLY_LEN`].
    TooLong(usize),
    /// The data does not fit the command.
    Malformed { code: u8, what: &'static str },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Empty => write!(f, "empty milter packet"),
            CodecError::TooLong(n) => {
                write!(f, "milter packet of {n} bytes (limit {MAX_REPLY_LEN})")
            }
            CodecError::Malformed { code, what } => {
                write!(
                    f,
                    "malformed milter reply {:?}: {what}",
                    char::from(*code).escape_default().to_string()
                )
            }
        }
    }
}

impl std::error::Error for CodecError {}

/// Decode one reply from the front of `buf`: `Ok(None)` = need more bytes
/// (nothing consumed); `Ok(Some)` consumes the packet. An error leaves the
/// stream unusable (the caller closes it).
pub fn decode(buf: &mut Vec<u8>) -> Result<Option<Reply>, CodecError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 {
        return Err(CodecError::Empty);
    }
    if len > MAX_REPLY_LEN {
        return Err(CodecError::TooLong(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let reply = parse(buf[4], &buf[5..4 + len]);
    buf.drain(..4 + len);
    reply.map(Some)
}

fn parse(code: u8, data: &[u8]) -> Result<Reply, CodecError> {
    let bad = |what| CodecError::Malformed { code, what };
    let mut f = Fields { data, code };
    Ok(match code {
        b'O' => {
            if data.len() < 12 {
                return Err(bad("shorter than 12 bytes"));
            }
            // Anything after the three words (v6 macro lists) is ignored:
            // we do not offer SMFIF_SETSYMLIST.
            Reply::OptNeg {
                version: be32(&data[0..4]),
                actions: be32(&data[4..8]),
                protocol: be32(&data[8..12]),
            }
        }
        b'a' => Reply::Accept,
        b'c' => Reply::Continue,
        b'd' => Reply::Discard,
        b'r' => Reply::Reject,
        b't' => Reply::TempFail,
        b's' => Reply::Skip,
        b'p' => Reply::Progress,
        b'f' => Reply::ConnFail,
        b'4' => Reply::Shutdown,
        b'l' => Reply::SetSymList,
        b'y' => Reply::ReplyCode(f.string()?),
        b'q' => Reply::Quarantine(f.string()?),
        b'h' => Reply::AddHeader {
            name: f.string()?,
            value: f.string_or_rest()?,
        },
        b'i' | b'm' => {
            if data.len() < 4 {
                return Err(bad("no index"));
            }
            let index = be32(&data[0..4]);
            f.data = &data[4..];
            let name = f.string()?;
            let value = f.string_or_rest()?;
            if code == b'i' {
                Reply::InsHeader { index, name, value }
            } else {
                Reply::ChgHeader { index, name, value }
            }
        }
        b'b' => Reply::ReplBody(data.to_vec()),
        b'+' => Reply::AddRcpt(f.string()?),
        b'-' => Reply::DelRcpt(f.string()?),
        b'2' => Reply::AddRcptPar {
            rcpt: f.string()?,
            args: f.optional()?,
        },
        b'e' => Reply::ChgFrom {
            sender: f.string()?,
            args: f.optional()?,
        },
        other => Reply::Unknown(other),
    })
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// NUL-terminated strings, read in turn.
struct Fields<'a> {
    data: &'a [u8],
    code: u8,
}

impl Fields<'_> {
    fn string(&mut self) -> Result<String, CodecError> {
        let end = self
            .data
            .iter()
            .position(|&b| b == 0)
            .ok_or(CodecError::Malformed {
                code: self.code,
                what: "string without NUL",
            })?;
        let s = String::from_utf8_lossy(&self.data[..end]).into_owned();
        self.data = &self.data[end + 1..];
        Ok(s)
    }

    /// A last string whose NUL some milters leave out.
    fn string_or_rest(&mut self) -> Result<String, CodecError> {
        if self.data.contains(&0) {
            self.string()
        } else {
            let s = String::from_utf8_lossy(self.data).into_owned();
            self.data = &[];
            Ok(s)
        }
    }

    /// An optional trailing string (absent = empty).
    fn optional(&mut self) -> Result<String, CodecError> {
        if self.data.is_empty() {
            Ok(String::new())
        } else {
            self.string_or_rest()
        }
    }
}

/// An SMTP reply from `SMFIR_REPLYCODE`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyCode {
    /// 4xx or 5xx.
    pub code: u16,
    /// The enhanced status code, when given (class must match the code).
    pub enhanced: Option<(u8, u16, u16)>,
    /// The text: lines joined with a space, control characters removed,
    /// at most [`MAX_REPLY_TEXT`] bytes.
    pub text: String,
}

/// Longest reply text passed on to the SMTP client.
pub const MAX_REPLY_TEXT: usize = 400;

/// Parse `"550 5.7.1 text"` (also multi-line `"550-5.7.1 a\r\n550 5.7.1 b"`).
/// Only 4xx and 5xx are valid (a milter cannot make us accept).
pub fn parse_reply_code(s: &str) -> Option<ReplyCode> {
    let mut code = None;
    let mut enhanced = None;
    let mut texts = Vec::new();
    for line in s.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        let b = line.as_bytes();
        if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
            return None;
        }
        let c: u16 = line[..3].parse().ok()?;
        if !(400..600).contains(&c) || code.is_some_and(|old| old != c) {
            return None;
        }
        code = Some(c);
        let rest = match b.get(3) {
            None => "",
            Some(b' ') | Some(b'-') => &line[4..],
            Some(_) => return None,
        };
        let rest = rest.trim_start();
        let (enh, text) = match rest.split_once(' ') {
            Some((first, text)) if parse_enhanced(first).is_some() => (parse_enhanced(first), text),
            None if parse_enhanced(rest).is_some() => (parse_enhanced(rest), ""),
            _ => (None, rest),
        };
        if let Some(e) = enh {
            if u16::from(e.0) != c / 100 {
                return None;
            }
            enhanced.get_or_insert(e);
        }
        if !text.trim().is_empty() {
            texts.push(text.trim());
        }
    }
    let code = code?;
    let mut text: String = texts
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if text.len() > MAX_REPLY_TEXT {
        let mut end = MAX_REPLY_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    Some(ReplyCode {
        code,
        enhanced,
        text,
    })
}

fn parse_enhanced(s: &str) -> Option<(u8, u16, u16)> {
    let mut it = s.split('.');
    let class: u8 = it.next()?.parse().ok()?;
    let subject: u16 = it.next()?.parse().ok()?;
    let detail: u16 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(class == 4 || class == 5) || subject > 999 || detail > 999 {
        return None;
    }
    Some((class, subject, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u8, data: &[u8]) -> Vec<u8> {
        let mut v = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        v.push(code);
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn encode_table() {
        let pairs = [
            ("j", "mx.example.test".to_string()),
            ("{daemon_name}", "MTA".into()),
        ];
        let cases: Vec<(Command, &[u8])> = vec![
            (
                Command::OptNeg {
                    version: 6,
                    actions: 0x21,
                    protocol: 0x1fffff,
                },
                b"\0\0\0\x0dO\0\0\0\x06\0\0\0\x21\0\x1f\xff\xff",
            ),
            (
                Command::Macro {
                    stage: b'C',
                    pairs: &pairs,
                },
                b"\0\0\0\x26DCj\0mx.example.test\0{daemon_name}\0MTA\0",
            ),
            (
                Command::Connect {
                    hostname: "[192.0.2.1]",
                    family: Family::Inet4,
                    port: 4242,
                    address: "192.0.2.1",
                },
                b"\0\0\0\x1aC[192.0.2.1]\x004\x10\x92192.0.2.1\0",
            ),
            (
                Command::Connect {
                    hostname: "x",
                    family: Family::Unknown,
                    port: 0,
                    address: "",
                },
                b"\0\0\0\x04Cx\0U",
            ),
            (Command::Helo("client"), b"\0\0\0\x08Hclient\0"),
            (
                Command::Mail(&["<a@b>", "SIZE=10"]),
                b"\0\0\0\x0fM<a@b>\0SIZE=10\0",
            ),
            (Command::Rcpt(&["<c@d>"]), b"\0\0\0\x07R<c@d>\0"),
            (Command::Data, b"\0\0\0\x01T"),
            (
                Command::Header {
                    name: b"Subject",
                    value: b"a\0b\n\tc",
                },
                b"\0\0\0\x10LSubject\0a b\n\tc\0",
            ),
            (Command::Eoh, b"\0\0\0\x01N"),
            (Command::Body(b"hi\r\n"), b"\0\0\0\x05Bhi\r\n"),
            (Command::BodyEob, b"\0\0\0\x01E"),
            (Command::Abort, b"\0\0\0\x01A"),
            (Command::Quit, b"\0\0\0\x01Q"),
        ];
        for (cmd, want) in cases {
            let mut out = Vec::new();
            cmd.encode(&mut out);
            assert_eq!(out, want, "{cmd:?}");
        }
    }

    fn decode_table() -> Vec<(Vec<u8>, Reply)> {
        vec![
            (
                packet(b'O', b"\0\0\0\x06\0\0\0\x01\0\0\0\x10"),
                Reply::OptNeg {
                    version: 6,
                    actions: 1,
                    protocol: 0x10,
                },
            ),
            (
                packet(b'O', b"\0\0\0\x06\0\0\0\x01\0\0\0\x10\0\0\0\x01{x}\0"),
                Reply::OptNeg {
                    version: 6,
                    actions: 1,
                    protocol: 0x10,
                },
            ),
            (packet(b'a', b""), Reply::Accept),
            (packet(b'c', b""), Reply::Continue),
            (packet(b'd', b""), Reply::Discard),
            (packet(b'r', b""), Reply::Reject),
            (packet(b't', b""), Reply::TempFail),
            (packet(b's', b""), Reply::Skip),
            (packet(b'p', b""), Reply::Progress),
            (packet(b'f', b""), Reply::ConnFail),
            (packet(b'4', b""), Reply::Shutdown),
            (packet(b'Z', b"junk"), Reply::Unknown(b'Z')),
            (
                packet(b'y', b"550 5.7.1 go away\0"),
                Reply::ReplyCode("550 5.7.1 go away".into()),
            ),
            (packet(b'q', b"spam\0"), Reply::Quarantine("spam".into())),
            (
                packet(b'h', b"X-Spam\0yes\0"),
                Reply::AddHeader {
                    name: "X-Spam".into(),
                    value: "yes".into(),
                },
            ),
            (
                packet(b'h', b"X-Spam\0yes"),
                Reply::AddHeader {
                    name: "X-Spam".into(),
                    value: "yes".into(),
                },
            ),
            (
                packet(b'i', b"\0\0\0\0DKIM-Signature\0v=1;\n\tb=x\0"),
                Reply::InsHeader {
                    index: 0,
                    name: "DKIM-Signature".into(),
                    value: "v=1;\n\tb=x".into(),
                },
            ),
            (
                packet(b'm', b"\0\0\0\x01Subject\0\0"),
                Reply::ChgHeader {
                    index: 1,
                    name: "Subject".into(),
                    value: "".into(),
                },
            ),
            (
                packet(b'b', b"new body"),
                Reply::ReplBody(b"new body".to_vec()),
            ),
            (packet(b'+', b"<x@y>\0"), Reply::AddRcpt("<x@y>".into())),
            (packet(b'-', b"<x@y>\0"), Reply::DelRcpt("<x@y>".into())),
            (
                packet(b'2', b"<x@y>\0NOTIFY=NEVER\0"),
                Reply::AddRcptPar {
                    rcpt: "<x@y>".into(),
                    args: "NOTIFY=NEVER".into(),
                },
            ),
            (
                packet(b'e', b"<s@y>\0"),
                Reply::ChgFrom {
                    sender: "<s@y>".into(),
                    args: "".into(),
                },
            ),
        ]
    }

    #[test]
    fn decode_at_every_split() {
        for (bytes, want) in decode_table() {
            // Two packets back to back, fed in two parts split at every byte.
            let mut twice = bytes.clone();
            twice.extend_from_slice(&bytes);
            for split in 0..=twice.len() {
                let mut buf = twice[..split].to_vec();
                let mut got = Vec::new();
                while let Some(r) = decode(&mut buf).unwrap() {
                    got.push(r);
                }
                buf.extend_from_slice(&twice[split..]);
                while let Some(r) = decode(&mut buf).unwrap() {
                    got.push(r);
                }
                assert_eq!(got, vec![want.clone(), want.clone()], "split {split}");
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn decode_errors() {
        let cases: Vec<(Vec<u8>, CodecError)> = vec![
            (b"\0\0\0\0".to_vec(), CodecError::Empty),
            (
                ((MAX_REPLY_LEN + 1) as u32).to_be_bytes().to_vec(),
                CodecError::TooLong(MAX_REPLY_LEN + 1),
            ),
            (
                b"\xff\xff\xff\xff".to_vec(),
                CodecError::TooLong(u32::MAX as usize),
            ),
            (
                packet(b'O', b"\0\0\0\x06"),
                CodecError::Malformed {
                    code: b'O',
                    what: "shorter than 12 bytes",
                },
            ),
            (
                packet(b'y', b"550 no nul"),
                CodecError::Malformed {
                    code: b'y',
                    what: "string without NUL",
                },
            ),
            (
                packet(b'i', b"\0\0"),
                CodecError::Malformed {
                    code: b'i',
                    what: "no index",
                },
            ),
            (
                packet(b'h', b"no-nul-after-name"),
                CodecError::Malformed {
                    code: b'h',
                    what: "string without NUL",
                },
            ),
        ];
        for (bytes, want) in cases {
            let mut buf = bytes.clone();
            assert_eq!(decode(&mut buf), Err(want), "{bytes:?}");
        }
        // A length announcing more than is there is "need more", not an error.
        let mut buf = b"\0\0\0\x10c".to_vec();
        assert_eq!(decode(&mut buf), Ok(None));
    }

    #[test]
    fn reply_codes() {
        let ok = [
            ("550 5.7.1 go away", 550, Some((5, 7, 1)), "go away"),
            ("451 4.7.1 later", 451, Some((4, 7, 1)), "later"),
            ("554 no enhanced code", 554, None, "no enhanced code"),
            ("550", 550, None, ""),
            ("550 5.7.1", 550, Some((5, 7, 1)), ""),
            (
                "550-5.7.1 line one\r\n550 5.7.1 line two",
                550,
                Some((5, 7, 1)),
                "line one line two",
            ),
            ("550 5.7.1 tab\there", 550, Some((5, 7, 1)), "tabhere"),
        ];
        for (s, code, enh, text) in ok {
            let r = parse_reply_code(s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(
                (r.code, r.enhanced, r.text.as_str()),
                (code, enh, text),
                "{s}"
            );
        }
        for bad in [
            "",
            "250 ok",
            "350 go on",
            "600 x",
            "55 x",
            "abc",
            "550x",
            "550 4.7.1 class differs",
            "550-a\r\n451 b",
        ] {
            assert_eq!(parse_reply_code(bad), None, "{bad}");
        }
        let long = format!("550 5.7.1 {}", "é".repeat(400));
        assert!(parse_reply_code(&long).unwrap().text.len() <= MAX_REPLY_TEXT);
    }
}
