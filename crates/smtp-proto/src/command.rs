//! Command and address parser (RFC 5321 sec. 4.1, RFC 6531, RFC 1870, RFC 6152,
//! RFC 3030, RFC 3461, RFC 4954, RFC 2033).

use crate::error::Error;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest local part in octets (RFC 5321 4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain in octets (RFC 5321 4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest domain label in octets (RFC 1035 2.3.4).
pub const MAX_LABEL: usize = 63;
/// Longest path including `<>` (RFC 5321 4.5.3.1.3), after dropping a source route.
pub const MAX_PATH: usize = 256;
/// Most MAIL/RCPT parameters accepted on one command (Postfix has no explicit
/// bound beyond the line length; this stops quadratic duplicate checks).
pub const MAX_PARAMS: usize = 16;
/// Longest ENVID after xtext decoding (RFC 3461 4.4: 100 characters).
pub const MAX_ENVID: usize = 100;

/// A parsed SMTP/LMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain-or-literal`
    Ehlo(String),
    /// `HELO domain`
    Helo(String),
    /// `LHLO domain` (RFC 2033)
    Lhlo(String),
    /// `MAIL FROM:<reverse-path> [params]`; `from == None` is the null sender `<>`.
    Mail {
        /// Sender, `None` for `<>`.
        from: Option<Address>,
        /// ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<forward-path> [params]`
    Rcpt {
        /// Recipient (`domain == None` only for `<postmaster>`).
        to: Address,
        /// ESMTP parameters.
        params: RcptParams,
    },
    /// `DATA`
    Data,
    /// `BDAT size [LAST]` (RFC 3030)
    Bdat {
        /// Chunk size in octets.
        size: u64,
        /// `LAST` given.
        last: bool,
    },
    /// `RSET`
    Rset,
    /// `NOOP [string]`
    Noop(Option<String>),
    /// `QUIT`
    Quit,
    /// `VRFY string`
    Vrfy(String),
    /// `EXPN string`
    Expn(String),
    /// `HELP [string]`
    Help(Option<String>),
    /// `STARTTLS` (RFC 3207)
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954). The mechanism is upper-cased;
    /// the initial response is kept as sent (base64 or `=`).
    Auth {
        /// SASL mechanism name, upper case.
        mechanism: String,
        /// Initial response, undecoded.
        initial_response: Option<String>,
    },
    /// Any other verb (upper-cased), for `500 5.5.2` or `502 5.5.1`.
    Unknown(String),
}

/// `BODY=` values (RFC 6152, RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `BODY=7BIT`
    SevenBit,
    /// `BODY=8BITMIME`
    EightBitMime,
    /// `BODY=BINARYMIME` (requires BDAT)
    BinaryMime,
}

/// `RET=` values (RFC 3461).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// `RET=FULL`
    Full,
    /// `RET=HDRS`
    Hdrs,
}

/// `NOTIFY=` value (RFC 3461 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    /// `NEVER` (exclusive with the others)
    pub never: bool,
    /// `SUCCESS`
    pub success: bool,
    /// `FAILURE`
    pub failure: bool,
    /// `DELAY`
    pub delay: bool,
}

/// `ORCPT=addr-type;xtext` (RFC 3461 4.2), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orcpt {
    /// Address type, e.g. `rfc822` or `utf-8` (as sent).
    pub addr_type: String,
    /// Decoded address.
    pub address: String,
}

/// Parameters of `MAIL FROM`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    /// `SIZE=n` (RFC 1870)
    pub size: Option<u64>,
    /// `BODY=`
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531)
    pub smtputf8: bool,
    /// `RET=`
    pub ret: Option<Ret>,
    /// `ENVID=`, xtext-decoded
    pub envid: Option<String>,
    /// `AUTH=`, xtext-decoded (`<>` kept as is)
    pub auth: Option<String>,
    /// Parameters this parser does not know, keyword upper-cased, for `555 5.5.4`.
    pub unknown: Vec<(String, Option<String>)>,
}

/// Parameters of `RCPT TO`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcptParams {
    /// `NOTIFY=`
    pub notify: Option<Notify>,
    /// `ORCPT=`
    pub orcpt: Option<Orcpt>,
    /// Parameters this parser does not know, keyword upper-cased, for `555 5.5.4`.
    pub unknown: Vec<(String, Option<String>)>,
}

/// A mailbox from a MAIL or RCPT path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// Local part exactly as sent (a quoted local part keeps its quotes and escapes).
    pub local: String,
    /// Domain or address literal as sent (`[1.2.3.4]`); `None` only for `<postmaster>`.
    pub domain: Option<String>,
    /// True if the address contains non-ASCII characters (needs SMTPUTF8).
    pub needs_smtputf8: bool,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.domain {
            Some(d) => write!(f, "{}@{}", self.local, d),
            None => f.write_str(&self.local),
        }
    }
}

impl Command {
    /// Upper-case verb of this command (for logging and the command table).
    pub fn verb(&self) -> &str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Lhlo(_) => "LHLO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop(_) => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help(_) => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
            Command::Unknown(v) => v,
        }
    }

    /// Parse one command line (without its line ending).
    pub fn parse(line: &[u8]) -> Result<Command, Error> {
        let line = std::str::from_utf8(line).map_err(|_| Error::InvalidUtf8)?;
        if line.chars().any(|c| c.is_control() && c != '\t') {
            // Bare CR, NUL, DEL, C1 controls: never valid in a command line.
            return Err(Error::Syntax("control character in command"));
        }
        let line = line.trim_end_matches([' ', '\t']);
        let (verb, args) = match line.find([' ', '\t']) {
            Some(i) => (&line[..i], line[i + 1..].trim_start_matches([' ', '\t'])),
            None => (line, ""),
        };
        let upper = verb.to_ascii_uppercase();
        let no_args = |c: Command| {
            if args.is_empty() {
                Ok(c)
            } else {
                Err(Error::Syntax("no arguments allowed"))
            }
        };
        match upper.as_str() {
            "EHLO" => Ok(Command::Ehlo(helo_arg(args)?)),
            "HELO" => Ok(Command::Helo(helo_arg(args)?)),
            "LHLO" => Ok(Command::Lhlo(helo_arg(args)?)),
            "MAIL" => parse_mail(args),
            "RCPT" => parse_rcpt(args),
            "DATA" => no_args(Command::Data),
            "BDAT" => parse_bdat(args),
            "RSET" => no_args(Command::Rset),
            "QUIT" => no_args(Command::Quit),
            "STARTTLS" => no_args(Command::StartTls),
            "NOOP" => Ok(Command::Noop(opt(args))),
            "HELP" => Ok(Command::Help(opt(args))),
            "VRFY" => opt(args)
                .map(Command::Vrfy)
                .ok_or(Error::Syntax("VRFY address")),
            "EXPN" => opt(args)
                .map(Command::Expn)
                .ok_or(Error::Syntax("EXPN name")),
            "AUTH" => parse_auth(args),
            "" => Err(Error::Syntax("empty command")),
            _ => Ok(Command::Unknown(upper)),
        }
    }
}

fn opt(args: &str) -> Option<String> {
    if args.is_empty() {
        None
    } else {
        Some(args.to_string())
    }
}

/// HELO/EHLO/LHLO argument: one word, not validated further (Postfix
/// `smtpd_helo_restrictions` style checks belong to policy, not syntax).
fn helo_arg(args: &str) -> Result<String, Error> {
    if args.is_empty() {
        return Err(Error::Syntax("EHLO hostname"));
    }
    if args.split_whitespace().count() != 1 {
        return Err(Error::Syntax("EHLO hostname"));
    }
    Ok(args.to_string())
}

fn parse_bdat(args: &str) -> Result<Command, Error> {
    let mut it = args.split([' ', '\t']).filter(|s| !s.is_empty());
    let size = it.next().ok_or(Error::Syntax("BDAT size [LAST]"))?;
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Syntax("BDAT size [LAST]"));
    }
    let size: u64 = size
        .parse()
        .map_err(|_| Error::Syntax("BDAT size too large"))?;
    let last = match it.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(Error::Syntax("BDAT size [LAST]")),
    };
    if it.next().is_some() {
        return Err(Error::Syntax("BDAT size [LAST]"));
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(args: &str) -> Result<Command, Error> {
    let mut it = args.split([' ', '\t']).filter(|s| !s.is_empty());
    let mech = it
        .next()
        .ok_or(Error::Syntax("AUTH mechanism [initial-response]"))?;
    if !mech
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        || mech.len() > 20
    {
        return Err(Error::Syntax("AUTH mechanism [initial-response]"));
    }
    let initial_response = it.next().map(str::to_string);
    if it.next().is_some() {
        return Err(Error::Syntax("AUTH mechanism [initial-response]"));
    }
    if let Some(r) = &initial_response
        && r != "="
        && !r
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    {
        return Err(Error::Syntax("AUTH initial response is not base64"));
    }
    Ok(Command::Auth {
        mechanism: mech.to_ascii_uppercase(),
        initial_response,
    })
}

/// Strip a case-insensitive `FROM:`/`TO:` prefix and optional spaces after it.
fn strip_keyword<'a>(args: &'a str, kw: &str) -> Option<&'a str> {
    let head = args.get(..kw.len())?;
    if head.eq_ignore_ascii_case(kw) {
        Some(args[kw.len()..].trim_start_matches([' ', '\t']))
    } else {
        None
    }
}

fn parse_mail(args: &str) -> Result<Command, Error> {
    let rest = strip_keyword(args, "FROM:").ok_or(Error::Syntax("MAIL FROM:<address>"))?;
    let (path, rest) = split_path(rest).map_err(Error::BadSender)?;
    let from = if path.is_empty() {
        None
    } else {
        Some(parse_path_inner(path, false).map_err(Error::BadSender)?)
    };
    let mut params = MailParams::default();
    for (kw, val) in split_params(rest)? {
        let bad = || Error::InvalidParameter(param_text(&kw, val));
        match kw.as_str() {
            "SIZE" => {
                let v = val
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(bad)?;
                // Saturate absurd values: the size check rejects them anyway.
                set_once(&mut params.size, Some(v.parse().unwrap_or(u64::MAX)), bad)?;
            }
            "BODY" => {
                let b = match val.map(str::to_ascii_uppercase).as_deref() {
                    Some("7BIT") => Body::SevenBit,
                    Some("8BITMIME") => Body::EightBitMime,
                    Some("BINARYMIME") => Body::BinaryMime,
                    _ => return Err(bad()),
                };
                set_once(&mut params.body, Some(b), bad)?;
            }
            "SMTPUTF8" => {
                if val.is_some() || params.smtputf8 {
                    return Err(bad());
                }
                params.smtputf8 = true;
            }
            "RET" => {
                let r = match val.map(str::to_ascii_uppercase).as_deref() {
                    Some("FULL") => Ret::Full,
                    Some("HDRS") => Ret::Hdrs,
                    _ => return Err(bad()),
                };
                set_once(&mut params.ret, Some(r), bad)?;
            }
            "ENVID" => {
                let v = val
                    .and_then(xtext_decode)
                    .filter(|v| !v.is_empty() && v.len() <= MAX_ENVID);
                let v = v.ok_or_else(bad)?;
                set_once(&mut params.envid, Some(v), bad)?;
            }
            "AUTH" => {
                let v = match val {
                    Some("<>") => Some("<>".to_string()),
                    Some(v) => xtext_decode(v).filter(|v| !v.is_empty()),
                    None => None,
                };
                set_once(&mut params.auth, Some(v.ok_or_else(bad)?), bad)?;
            }
            _ => push_unknown(&mut params.unknown, kw, val)?,
        }
    }
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(args: &str) -> Result<Command, Error> {
    let rest = strip_keyword(args, "TO:").ok_or(Error::Syntax("RCPT TO:<address>"))?;
    let (path, rest) = split_path(rest).map_err(Error::BadRecipient)?;
    if path.is_empty() {
        return Err(Error::BadRecipient("empty recipient"));
    }
    let to = parse_path_inner(path, true).map_err(Error::BadRecipient)?;
    let mut params = RcptParams::default();
    for (kw, val) in split_params(rest)? {
        let bad = || Error::InvalidParameter(param_text(&kw, val));
        match kw.as_str() {
            "NOTIFY" => {
                let v = val.ok_or_else(bad)?;
                let mut n = Notify::default();
                for item in v.split(',') {
                    let flag = match item.to_ascii_uppercase().as_str() {
                        "NEVER" => &mut n.never,
                        "SUCCESS" => &mut n.success,
                        "FAILURE" => &mut n.failure,
                        "DELAY" => &mut n.delay,
                        _ => return Err(bad()),
                    };
                    if *flag {
                        return Err(bad());
                    }
                    *flag = true;
                }
                if n.never && (n.success || n.failure || n.delay) {
                    return Err(bad());
                }
                set_once(&mut params.notify, Some(n), bad)?;
            }
            "ORCPT" => {
                let v = val.ok_or_else(bad)?;
                let (t, x) = v.split_once(';').ok_or_else(bad)?;
                if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(bad());
                }
                let address = xtext_decode(x).filter(|a| !a.is_empty()).ok_or_else(bad)?;
                set_once(
                    &mut params.orcpt,
                    Some(Orcpt {
                        addr_type: t.to_string(),
                        address,
                    }),
                    bad,
                )?;
            }
            _ => push_unknown(&mut params.unknown, kw, val)?,
        }
    }
    Ok(Command::Rcpt { to, params })
}

fn param_text(kw: &str, val: Option<&str>) -> String {
    match val {
        Some(v) => format!("{kw}={v}"),
        None => kw.to_string(),
    }
}

fn set_once<T>(slot: &mut Option<T>, v: Option<T>, bad: impl Fn() -> Error) -> Result<(), Error> {
    if slot.is_some() {
        return Err(bad());
    }
    *slot = v;
    Ok(())
}

fn push_unknown(
    list: &mut Vec<(String, Option<String>)>,
    kw: String,
    val: Option<&str>,
) -> Result<(), Error> {
    if list.iter().any(|(k, _)| *k == kw) {
        return Err(Error::InvalidParameter(kw));
    }
    list.push((kw, val.map(str::to_string)));
    Ok(())
}

/// Split `KEY[=VALUE] KEY[=VALUE]`; keywords are `ALPHA/DIGIT *(ALPHA/DIGIT/"-")`
/// (RFC 5321 esmtp-keyword) and upper-cased; values must be non-empty printable
/// ASCII except `=` (esmtp-value; UTF-8 allowed per RFC 6531).
fn split_params(rest: &str) -> Result<Vec<(String, Option<&str>)>, Error> {
    let mut out = Vec::new();
    for p in rest.split([' ', '\t']).filter(|s| !s.is_empty()) {
        if out.len() >= MAX_PARAMS {
            return Err(Error::Syntax("too many parameters"));
        }
        let (kw, val) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        };
        let kw_ok = kw.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
            && kw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !kw_ok {
            return Err(Error::Syntax("bad parameter keyword"));
        }
        if let Some(v) = val
            && (v.is_empty() || v.chars().any(|c| c == '=' || c.is_ascii_control()))
        {
            return Err(Error::InvalidParameter(p.to_string()));
        }
        out.push((kw.to_ascii_uppercase(), val));
    }
    Ok(out)
}

/// Decode RFC 3461 xtext (`+HH` escapes; `+` and `=` must be escaped). UTF-8
/// (RFC 6533 utf-8-addr-xtext style) characters are passed through.
pub fn xtext_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = |c: u8| match c {
                    b'0'..=b'9' => Some(c - b'0'),
                    b'A'..=b'F' => Some(c - b'A' + 10),
                    _ => None,
                };
                let h = hex(*b.get(i + 1)?)?;
                let l = hex(*b.get(i + 2)?)?;
                out.push(h << 4 | l);
                i += 3;
            }
            b'=' => return None,
            c if c < 33 || c == 127 => return None,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// From `<...> rest`, return the text between the brackets and the rest.
/// Finds the closing `>` outside a quoted string.
fn split_path(s: &str) -> Result<(&str, &str), &'static str> {
    let inner = s.strip_prefix('<').ok_or("missing <")?;
    let b = inner.as_bytes();
    let (mut i, mut quoted) = (0, false);
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => {
                let rest = &inner[i + 1..];
                if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
                    return Err("garbage after >");
                }
                if i + 2 > MAX_PATH {
                    return Err("path too long");
                }
                return Ok((&inner[..i], rest));
            }
            _ => {}
        }
        i += 1;
    }
    Err("missing >")
}

/// Parse what was between `<` and `>` (non-empty).
fn parse_path_inner(path: &str, rcpt: bool) -> Result<Address, &'static str> {
    let mut mailbox = path;
    if path.starts_with('@') {
        // A-d-l ":" Mailbox — source route, accepted and ignored (RFC 5321 4.1.2, C.).
        let (route, mb) = path.split_once(':').ok_or("bad source route")?;
        for hop in route.split(',') {
            let d = hop.strip_prefix('@').ok_or("bad source route")?;
            parse_domain(d)?;
        }
        mailbox = mb;
    }
    if rcpt && mailbox.eq_ignore_ascii_case("postmaster") {
        return Ok(Address {
            local: mailbox.to_string(),
            domain: None,
            needs_smtputf8: false,
        });
    }
    let (local, domain) = split_local(mailbox)?;
    let local_utf8 = check_local(local)?;
    let domain_utf8 = parse_domain(domain)?;
    Ok(Address {
        local: local.to_string(),
        domain: Some(domain.to_string()),
        needs_smtputf8: local_utf8 || domain_utf8,
    })
}

/// Split at the `@` after the local part (which may be quoted).
fn split_local(mb: &str) -> Result<(&str, &str), &'static str> {
    let b = mb.as_bytes();
    if b.first() == Some(&b'"') {
        let mut i = 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => {
                    return match b.get(i + 1) {
                        Some(b'@') => Ok((&mb[..=i], &mb[i + 2..])),
                        _ => Err("missing @domain"),
                    };
                }
                _ => i += 1,
            }
        }
        return Err("unterminated quoted local part");
    }
    mb.split_once('@').ok_or("missing @domain")
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// Validate a local part; returns whether it contains non-ASCII.
fn check_local(local: &str) -> Result<bool, &'static str> {
    if local.is_empty() {
        return Err("empty local part");
    }
    if local.len() > MAX_LOCAL_PART {
        return Err("local part too long");
    }
    if let Some(q) = local.strip_prefix('"') {
        let q = q.strip_suffix('"').ok_or("bad quoted local part")?;
        let mut chars = q.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e) if (' '..='~').contains(&e) => {}
                    _ => return Err("bad quoted-pair"),
                },
                '"' => return Err("bad quoted local part"),
                c if (c as u32) < 32 || c as u32 == 127 => {
                    return Err("control character in local part");
                }
                _ => {}
            }
        }
    } else {
        for atom in local.split('.') {
            if atom.is_empty() || !atom.chars().all(is_atext) {
                return Err("bad local part");
            }
        }
    }
    Ok(!local.is_ascii())
}

/// Validate a domain or address literal; returns whether it contains non-ASCII.
pub fn parse_domain(d: &str) -> Result<bool, &'static str> {
    if d.is_empty() {
        return Err("empty domain");
    }
    if d.len() > MAX_DOMAIN {
        return Err("domain too long");
    }
    if let Some(lit) = d.strip_prefix('[') {
        let lit = lit.strip_suffix(']').ok_or("bad address literal")?;
        if let Some(v6) = lit
            .get(..5)
            .filter(|t| t.eq_ignore_ascii_case("IPv6:"))
            .and(lit.get(5..))
        {
            v6.parse::<Ipv6Addr>()
                .map_err(|_| "bad IPv6 address literal")?;
        } else {
            lit.parse::<Ipv4Addr>().map_err(|_| "bad address literal")?;
        }
        return Ok(false);
    }
    for label in d.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err("bad domain");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("bad domain");
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        {
            return Err("bad domain");
        }
    }
    Ok(!d.is_ascii())
}
