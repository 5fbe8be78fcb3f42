//! IMAP input framing and small helpers. [`frame`] finds where a command
//! (line plus `{n}`/`{n+}`/`~{n}` literals) ends, so that the session can
//! send `+` continuations, refuse literals over the bounds before they are
//! sent, and hand whole commands to the grammar in `codec.rs` (imap-codec).
//! [`tokenize`] is the tokenizer imapd used before imap-codec: it survives
//! only as `codec.rs`'s narrow fallback for extension syntax imap-codec has
//! no grammar for (LIST-EXTENDED, ESEARCH, SEARCHRES; see there).
//!
//! Why not imap-codec's own `Fragmentizer`: it has one size bound for the
//! life of the connection (imapd allows `APPEND_LIMIT` only after login),
//! and it keeps reading (and dropping) an oversized literal, where imapd
//! refuses a synchronizing literal before the client sends it.

/// Longest command line, and longest command with its literals before login
/// (RFC 9051 sets no limit; 64 KiB is far above any real command line,
/// which Dovecot bounds at 64 KiB as well: `imap_max_line_length`).
pub const MAX_COMMAND: usize = 64 * 1024;

/// What the reader found at the start of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// A complete command of this many bytes (CRLF included).
    Command(usize),
    /// More input is needed; if `Some(pos)`, a synchronizing literal whose
    /// announcing line ends at `pos` waits for a `+` continuation.
    Incomplete(Option<usize>),
    /// A line over `MAX_COMMAND`, or lines and literals together over the
    /// limit: the command's end cannot be found safely.
    TooLong,
    /// A literal announced on the line ending at `line_end` would take the
    /// command over the limit; `sync`: a `{n}` literal, whose data the
    /// client sends only after a `+` (so the command can be refused and the
    /// session go on), else `{n+}`, whose data is already on its way.
    LiteralTooBig { line_end: usize, sync: bool },
}

/// Largest APPEND message (advertised as `APPENDLIMIT`); literals this big
/// are accepted only after login.
pub const APPEND_LIMIT: usize = 25 * 1024 * 1024;

/// Find a complete command (line plus literals) at the start of `input`;
/// the whole command may be up to `limit` bytes (`MAX_COMMAND` before login,
/// `APPEND_LIMIT` plus `MAX_COMMAND` after).
pub fn frame(input: &[u8], limit: usize) -> Framed {
    let mut pos = 0;
    loop {
        let Some(nl) = input[pos..].iter().position(|&b| b == b'\n') else {
            return if input.len() - pos > MAX_COMMAND {
                Framed::TooLong
            } else {
                Framed::Incomplete(None)
            };
        };
        let end = pos + nl + 1;
        if end - pos > MAX_COMMAND || end > limit {
            return Framed::TooLong;
        }
        let line = &input[pos..end];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match literal_len(line) {
            None => return Framed::Command(end),
            Some((n, sync)) => {
                if end + n > limit {
                    return Framed::LiteralTooBig {
                        line_end: end,
                        sync,
                    };
                }
                if input.len() < end + n {
                    return Framed::Incomplete(sync.then_some(end));
                }
                pos = end + n;
            }
        }
    }
}

/// `{n}` or `{n+}` at the end of a line: (n, synchronizing).
fn literal_len(line: &[u8]) -> Option<(usize, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let mut digits = &inner[open + 1..];
    let mut sync = true;
    if let Some(d) = digits.strip_suffix(b"+") {
        digits = d;
        sync = false;
    }
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, sync))
}

/// One token of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An atom; a `[...]` section (with spaces and parentheses inside) and a
    /// following `<...>` partial stay part of the atom.
    Atom(String),
    /// A quoted string or a literal.
    Str(Vec<u8>),
    LParen,
    RParen,
}

impl Token {
    /// The text of an atom or string (astring).
    pub fn astring(&self) -> Option<String> {
        match self {
            Token::Atom(a) => Some(a.clone()),
            Token::Str(s) => String::from_utf8(s.clone()).ok(),
            _ => None,
        }
    }
    pub fn is_atom(&self, word: &str) -> bool {
        matches!(self, Token::Atom(a) if a.eq_ignore_ascii_case(word))
    }
}

/// Split a framed command (CRLF included) into tokens.
pub fn tokenize(cmd: &[u8]) -> Result<Vec<Token>, &'static str> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = cmd.len();
    while i < n {
        match cmd[i] {
            b' ' => i += 1,
            b'\r' | b'\n' => i += 1,
            b'(' => {
                out.push(Token::LParen);
                i += 1;
            }
            b')' => {
                out.push(Token::RParen);
                i += 1;
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match cmd.get(i) {
                        None | Some(b'\r') | Some(b'\n') => return Err("unterminated string"),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let c = *cmd.get(i + 1).ok_or("bad escape")?;
                            if c != b'"' && c != b'\\' {
                                return Err("bad escape");
                            }
                            s.push(c);
                            i += 2;
                        }
                        Some(&c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Str(s));
            }
            // RFC 3516 literal8 `~{n}`: read like a literal.
            b'~' if cmd.get(i + 1) == Some(&b'{') => i += 1,
            b'{' => {
                let close = cmd[i..]
                    .iter()
                    .position(|&b| b == b'}')
                    .ok_or("bad literal")?
                    + i;
                let (len, _) = literal_len(&cmd[i..=close]).ok_or("bad literal")?;
                let mut start = close + 1;
                if cmd.get(start) == Some(&b'\r') {
                    start += 1;
                }
                if cmd.get(start) != Some(&b'\n') {
                    return Err("bad literal");
                }
                start += 1;
                let data = cmd.get(start..start + len).ok_or("short literal")?;
                out.push(Token::Str(data.to_vec()));
                i = start + len;
            }
            _ => {
                let start = i;
                let mut depth = 0usize;
                while i < n {
                    let c = cmd[i];
                    match c {
                        b'[' | b'<' => depth += 1,
                        b']' | b'>' => depth = depth.saturating_sub(1),
                        b'\r' | b'\n' => break,
                        b' ' | b'(' | b')' if depth == 0 => break,
                        b'"' | b'{' if depth == 0 => return Err("bad atom"),
                        _ => {}
                    }
                    i += 1;
                }
                let atom = std::str::from_utf8(&cmd[start..i]).map_err(|_| "bad atom")?;
                out.push(Token::Atom(atom.to_string()));
            }
        }
    }
    Ok(out)
}

/// Parse a sequence set against `max` (the value of `*`); `None` if invalid.
/// The result is sorted and deduplicated; numbers may exceed `max` (callers
/// filter).
pub fn sequence_set(s: &str, max: u32) -> Option<Vec<u32>> {
    let num = |p: &str| -> Option<u32> {
        if p == "*" {
            Some(max)
        } else {
            let v: u32 = p.parse().ok()?;
            (v > 0).then_some(v)
        }
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        if let Some((a, b)) = part.split_once(':') {
            let (a, b) = (num(a)?, num(b)?);
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            // Bounded: only up to max matters (plus the explicit ends).
            let hi_eff = hi.min(max.max(lo));
            out.extend(lo..=hi_eff);
        } else {
            out.push(num(part)?);
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// A sorted list of numbers as a sequence set with ranges (`1:3,5`).
pub fn compress_set(sorted: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
#[test]
fn literal8_is_a_literal() {
    let cmd = b"a APPEND x ~{3}\r\na\0c\r\n";
    assert_eq!(frame(cmd, 1000), Framed::Command(cmd.len()));
    assert_eq!(
        tokenize(cmd).unwrap(),
        [
            Token::Atom("a".into()),
            Token::Atom("APPEND".into()),
            Token::Atom("x".into()),
            Token::Str(b"a\0c".to_vec())
        ]
    );
}

#[cfg(test)]
#[test]
fn compressed_sets() {
    assert_eq!(compress_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
    assert_eq!(compress_set(&[4]), "4");
    assert_eq!(compress_set(&[]), "");
}

/// Quote a string for a response, or send it as a literal.
pub fn astring_out(s: &[u8], out: &mut Vec<u8>) {
    if s.len() < 1000 && s.iter().all(|&c| (0x20..0x7f).contains(&c)) {
        out.push(b'"');
        for &c in s {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

/// A mailbox name in a response: as stored (modified UTF-7, RFC 3501), or
/// with `utf8` (IMAP4rev2 enabled) decoded to UTF-8 in a quoted string,
/// which RFC 9051 allows to hold UTF-8.
pub fn mailbox_out(name: &str, utf8: bool, out: &mut Vec<u8>) {
    let decoded = if utf8 {
        crate::codec::mutf7_to_utf8(name)
    } else {
        None
    };
    match decoded {
        Some(u) if u.len() < 1000 && !u.chars().any(char::is_control) => {
            out.push(b'"');
            for c in u.bytes() {
                if c == b'"' || c == b'\\' {
                    out.push(b'\\');
                }
                out.push(c);
            }
            out.push(b'"');
        }
        _ => astring_out(name.as_bytes(), out),
    }
}

/// Convert stored form (LF) to the wire form (CRLF).
pub fn to_crlf(stored: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored.len() + stored.len() / 30);
    for &b in stored {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// INTERNALDATE text (`dd-Mon-yyyy hh:mm:ss +0000`) from Unix seconds.
pub fn internal_date(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{:02}-{}-{} {:02}:{:02}:{:02} +0000",
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Glob for LIST patterns: `*` matches anything, `%` anything but `.`.
/// Dynamic programming, O(pattern × name): no exponential backtracking.
pub fn list_match(pattern: &[u8], name: &[u8]) -> bool {
    let n = name.len();
    // reach[j]: the pattern prefix consumed so far can end at name[..j].
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for &c in pattern {
        let mut next = vec![false; n + 1];
        match c {
            b'*' | b'%' => {
                let mut on = false;
                for j in 0..=n {
                    if reach[j] {
                        on = true;
                    } else if c == b'%' && j > 0 && name[j - 1] == b'.' {
                        on = false;
                    }
                    if on && c == b'%' && j > 0 && name[j - 1] == b'.' && !reach[j] {
                        on = false;
                    }
                    next[j] = on;
                }
            }
            _ => {
                for j in 1..=n {
                    next[j] = reach[j - 1] && name[j - 1].eq_ignore_ascii_case(&c);
                }
            }
        }
        reach = next;
    }
    reach[n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_lines_and_literals() {
        assert_eq!(frame(b"a NOOP\r\n", MAX_COMMAND), Framed::Command(8));
        assert_eq!(frame(b"a NOOP", MAX_COMMAND), Framed::Incomplete(None));
        assert_eq!(
            frame(b"a LOGIN {3}\r\nab", MAX_COMMAND),
            Framed::Incomplete(Some(13))
        );
        assert_eq!(
            frame(b"a LOGIN {3+}\r\nab", MAX_COMMAND),
            Framed::Incomplete(None)
        );
        assert_eq!(
            frame(b"a LOGIN {3}\r\nabc x\r\n", MAX_COMMAND),
            Framed::Command(20)
        );
        assert_eq!(
            frame(b"a X {999999999}\r\n", MAX_COMMAND),
            Framed::LiteralTooBig {
                line_end: 17,
                sync: true
            }
        );
        assert_eq!(
            frame(b"a X {3}\r\nabc {99999+}\r\n", MAX_COMMAND),
            Framed::LiteralTooBig {
                line_end: 23,
                sync: false
            }
        );
        // Only a whole line's worth may wait for its end.
        assert_eq!(
            frame(&[b'a'; MAX_COMMAND], MAX_COMMAND),
            Framed::Incomplete(None)
        );
        assert_eq!(
            frame(&vec![b'a'; MAX_COMMAND + 1], MAX_COMMAND),
            Framed::TooLong
        );
        assert_eq!(
            frame(b"a APPEND x {70000}\r\n", MAX_COMMAND),
            Framed::LiteralTooBig {
                line_end: 20,
                sync: true
            }
        );
        assert_eq!(
            frame(b"a APPEND x {70000}\r\n", APPEND_LIMIT + MAX_COMMAND),
            Framed::Incomplete(Some(20))
        );
    }

    #[test]
    fn tokenizes_sections_strings_literals() {
        let t = tokenize(
            b"1 FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10> \"a\\\"b\" {2}\r\nxy)\r\n",
        )
        .unwrap();
        assert_eq!(
            t,
            vec![
                Token::Atom("1".into()),
                Token::Atom("FETCH".into()),
                Token::Atom("1:*".into()),
                Token::LParen,
                Token::Atom("BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>".into()),
                Token::Str(b"a\"b".to_vec()),
                Token::Str(b"xy".to_vec()),
                Token::RParen,
            ]
        );
        assert!(tokenize(b"a \"unterminated\r\n").is_err());
        assert!(tokenize(b"a {5}\r\nab").is_err());
    }

    #[test]
    fn sequence_sets() {
        assert_eq!(sequence_set("1:3,5", 9), Some(vec![1, 2, 3, 5]));
        assert_eq!(sequence_set("*", 4), Some(vec![4]));
        assert_eq!(sequence_set("3:*", 4), Some(vec![3, 4]));
        assert_eq!(sequence_set("5:*", 4), Some(vec![4]));
        assert_eq!(sequence_set("0", 4), None);
        assert_eq!(sequence_set("x", 4), None);
        // A huge range stays bounded by max.
        assert_eq!(sequence_set("1:4294967295", 2), Some(vec![1, 2]));
    }

    #[test]
    fn helpers() {
        assert_eq!(to_crlf(b"a\nb\n"), b"a\r\nb\r\n");
        assert_eq!(internal_date(0), "01-Jan-1970 00:00:00 +0000");
        assert_eq!(internal_date(1_709_210_096), "29-Feb-2024 12:34:56 +0000");
        assert!(list_match(b"*", b"Sent"));
        assert!(list_match(b"%", b"Sent"));
        assert!(!list_match(b"%", b"a.b"));
        assert!(list_match(b"in*", b"INBOX"));
        assert!(list_match(b"a.%", b"a.b"));
        assert!(!list_match(b"a%", b"a.b"));
        assert!(list_match(b"%.b", b"a.b"));
        assert!(list_match(b"*b", b"a.b"));
        assert!(!list_match(b"S", b"Sent"));
        assert!(list_match(b"", b""));
        let evil = b"*%".repeat(30_000);
        assert!(!list_match(
            &[evil.as_slice(), b"y"].concat(),
            b"INBOX.Sent.Very.Long.Name"
        ));
        let mut o = Vec::new();
        astring_out(b"a\"b", &mut o);
        assert_eq!(o, b"\"a\\\"b\"");
        let mut o = Vec::new();
        mailbox_out("Entw&APw-rfe \"x\"", true, &mut o);
        assert_eq!(o, "\"Entwürfe \\\"x\\\"\"".as_bytes());
        let mut o = Vec::new();
        mailbox_out("Entw&APw-rfe", false, &mut o);
        assert_eq!(o, b"\"Entw&APw-rfe\"");
    }
}

/// The unfolded raw value of the first header `name` (wire-form header).
pub fn raw_header(header: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut found: Option<Vec<u8>> = None;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let trimmed = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(f) = found.as_mut() {
                f.extend_from_slice(trimmed);
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some(colon) = trimmed.iter().position(|&b| b == b':')
            && trimmed[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
        {
            found = Some(trimmed[colon + 1..].trim_ascii().to_vec());
        }
    }
    found
}

fn nstring(v: Option<&[u8]>, out: &mut Vec<u8>) {
    match v {
        None => out.extend_from_slice(b"NIL"),
        Some(s) => astring_out(s, out),
    }
}

fn address_list(a: Option<&mail_parser::Address<'_>>, out: &mut Vec<u8>) {
    let Some(a) = a else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let addrs: Vec<_> = a.iter().filter(|x| x.address.is_some()).collect();
    if addrs.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for x in addrs {
        let addr = x.address.as_deref().unwrap_or("");
        let (mbox, host) = addr.rsplit_once('@').unwrap_or((addr, ""));
        out.push(b'(');
        nstring(x.name.as_deref().map(str::as_bytes), out);
        out.extend_from_slice(b" NIL ");
        nstring(Some(mbox.as_bytes()), out);
        out.push(b' ');
        nstring((!host.is_empty()).then_some(host.as_bytes()), out);
        out.push(b')');
    }
    out.push(b')');
}

/// RFC 3501 ENVELOPE of a wire-form message: date, subject, message-id and
/// in-reply-to are the raw header values; addresses come from mail-parser
/// (names decoded to UTF-8; groups are flattened).
pub fn envelope(msg: &[u8]) -> Vec<u8> {
    let hdr_end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(msg.len());
    let header = &msg[..hdr_end];
    let parsed = mail_parser::MessageParser::default().parse_headers(header);
    let mut out = b"ENVELOPE (".to_vec();
    nstring(raw_header(header, "Date").as_deref(), &mut out);
    out.push(b' ');
    nstring(raw_header(header, "Subject").as_deref(), &mut out);
    let p = parsed.as_ref();
    let from = p.and_then(|m| m.from());
    for a in [
        from,
        p.and_then(|m| m.sender()).or(from),
        p.and_then(|m| m.reply_to()).or(from),
        p.and_then(|m| m.to()),
        p.and_then(|m| m.cc()),
        p.and_then(|m| m.bcc()),
    ] {
        out.push(b' ');
        address_list(a, &mut out);
    }
    out.push(b' ');
    nstring(raw_header(header, "In-Reply-To").as_deref(), &mut out);
    out.push(b' ');
    nstring(raw_header(header, "Message-ID").as_deref(), &mut out);
    out.push(b')');
    out
}

#[cfg(test)]
mod envelope_tests {
    use super::*;

    #[test]
    fn envelope_fields() {
        let m = b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: hi\r\n there\r\nFrom: Al <al@example.test>\r\nTo: b@example.test, c@x.test\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n";
        let e = String::from_utf8(envelope(m)).unwrap();
        assert_eq!(
            e,
            "ENVELOPE (\"Mon, 1 Jan 2024 00:00:00 +0000\" \"hi there\" ((\"Al\" NIL \"al\" \"example.test\")) ((\"Al\" NIL \"al\" \"example.test\")) ((\"Al\" NIL \"al\" \"example.test\")) ((NIL NIL \"b\" \"example.test\")(NIL NIL \"c\" \"x.test\")) NIL NIL NIL \"<1@x>\")"
        );
        let e = String::from_utf8(envelope(b"\r\n")).unwrap();
        assert_eq!(e, "ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    }
}

/// Case-insensitive (ASCII) substring test, as SEARCH text keys use.
pub fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod text_tests {
    #[test]
    fn contains_ci() {
        assert!(super::contains_ci(b"Hello World", b"wORLD"));
        assert!(!super::contains_ci(b"Hello", b"World"));
        assert!(super::contains_ci(b"x", b""));
        assert_eq!(
            super::raw_header(b"Subject: a\r\n b\r\nX: y\r\n\r\n", "subject").unwrap(),
            b"a b"
        );
    }
}

/// RFC 3501 BODYSTRUCTURE (non-extensible form: no extension data) of a
/// wire-form message, from mail-parser's MIME tree. Sizes and line counts
/// are of the raw (still transfer-encoded) part bodies. Nesting is bounded.
/// Deepest MIME nesting BODYSTRUCTURE describes (Dovecot stops at 100).
pub const MAX_MIME_DEPTH: usize = 64;

pub fn bodystructure(msg: &[u8]) -> Vec<u8> {
    let mut out = b"BODYSTRUCTURE ".to_vec();
    structure_of(msg, 0, true, &mut out);
    out
}

/// FETCH BODY: the non-extensible BODYSTRUCTURE (no extension data).
pub fn body(msg: &[u8]) -> Vec<u8> {
    let mut out = b"BODY ".to_vec();
    structure_of(msg, 0, false, &mut out);
    out
}

/// BODYSTRUCTURE extension data after a part's fields: for a multipart the
/// Content-Type parameters, then (both kinds) disposition, language and
/// location (RFC 3501 `body-ext-1part`/`body-ext-mpart`; MD5 is NIL).
fn extension_data(part: &mail_parser::MessagePart<'_>, multipart: bool, out: &mut Vec<u8>) {
    use mail_parser::MimeHeaders;
    let params = |c: Option<&mail_parser::ContentType<'_>>, out: &mut Vec<u8>| {
        let attrs: Vec<_> = c
            .and_then(|c| c.attributes())
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        if attrs.is_empty() {
            out.extend_from_slice(b"NIL");
            return;
        }
        out.push(b'(');
        for (i, a) in attrs.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            astring_out(a.name.to_ascii_uppercase().as_bytes(), out);
            out.push(b' ');
            astring_out(a.value.as_bytes(), out);
        }
        out.push(b')');
    };
    out.push(b' ');
    if multipart {
        params(part.content_type(), out);
    } else {
        out.extend_from_slice(b"NIL");
    }
    out.push(b' ');
    match part.content_disposition() {
        Some(d) => {
            out.push(b'(');
            astring_out(d.ctype().to_ascii_uppercase().as_bytes(), out);
            out.push(b' ');
            params(Some(d), out);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match part.content_language().as_text_list() {
        Some(l) if !l.is_empty() => {
            out.push(b'(');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                astring_out(x.as_bytes(), out);
            }
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    nstring(part.content_location().map(str::as_bytes), out);
}

fn structure_of(msg: &[u8], depth: usize, ext: bool, out: &mut Vec<u8>) {
    match mail_parser::MessageParser::default().parse(msg) {
        Some(m) if depth < 8 => part_structure(&m, 0, msg, depth, ext, out),
        _ => out.extend_from_slice(
            b"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0)",
        ),
    }
}

fn part_structure(
    m: &mail_parser::Message<'_>,
    id: u32,
    raw: &[u8],
    depth: usize,
    ext: bool,
    out: &mut Vec<u8>,
) {
    use mail_parser::{MimeHeaders, PartType};
    if depth > MAX_MIME_DEPTH {
        // Deeper parts are shown as an empty text part: the recursion
        // stays bounded whatever the message's nesting.
        structure_of(b"", usize::MAX, ext, out);
        return;
    }
    let Some(part) = m.parts.get(id as usize) else {
        return;
    };
    let ct = part.content_type();
    let ctype = ct.map(|c| c.ctype().to_ascii_uppercase());
    let subtype = ct.and_then(|c| c.subtype()).map(|s| s.to_ascii_uppercase());
    if let PartType::Multipart(children) = &part.body {
        out.push(b'(');
        for &c in children.iter().take(500) {
            part_structure(m, c, raw, depth + 1, ext, out);
        }
        if children.is_empty() {
            structure_of(b"", 99, ext, out);
        }
        out.push(b' ');
        astring_out(subtype.as_deref().unwrap_or("MIXED").as_bytes(), out);
        if ext {
            extension_data(part, true, out);
        }
        out.push(b')');
        return;
    }
    let start = (part.raw_body_offset() as usize).min(raw.len());
    let end = (part.raw_end_offset() as usize).clamp(start, raw.len());
    let body = &raw[start..end];
    let (t, s) = match (ctype.as_deref(), subtype.as_deref()) {
        (Some(t), Some(s)) => (t.to_string(), s.to_string()),
        (Some(t), None) => (t.to_string(), String::new()),
        _ => ("TEXT".to_string(), "PLAIN".to_string()),
    };
    out.push(b'(');
    astring_out(t.as_bytes(), out);
    out.push(b' ');
    astring_out(s.as_bytes(), out);
    out.push(b' ');
    let attrs: Vec<_> = ct
        .and_then(|c| c.attributes())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if attrs.is_empty() {
        if t == "TEXT" {
            out.extend_from_slice(b"(\"CHARSET\" \"us-ascii\")");
        } else {
            out.extend_from_slice(b"NIL");
        }
    } else {
        out.push(b'(');
        for (i, a) in attrs.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            astring_out(a.name.to_ascii_uppercase().as_bytes(), out);
            out.push(b' ');
            astring_out(a.value.as_bytes(), out);
        }
        out.push(b')');
    }
    out.push(b' ');
    nstring(part.content_id().map(str::as_bytes), out);
    out.push(b' ');
    nstring(part.content_description().map(str::as_bytes), out);
    out.push(b' ');
    let cte = part
        .content_transfer_encoding()
        .unwrap_or("7BIT")
        .to_ascii_uppercase();
    astring_out(cte.as_bytes(), out);
    out.extend_from_slice(format!(" {}", body.len()).as_bytes());
    let lines = body.iter().filter(|&&b| b == b'\n').count();
    if t == "MESSAGE" && s == "RFC822" {
        out.push(b' ');
        let env = envelope(body);
        out.extend_from_slice(&env[b"ENVELOPE ".len()..]);
        out.push(b' ');
        structure_of(body, depth + 1, ext, out);
        out.extend_from_slice(format!(" {lines}").as_bytes());
    } else if t == "TEXT" {
        out.extend_from_slice(format!(" {lines}").as_bytes());
    }
    if ext {
        extension_data(part, false, out);
    }
    out.push(b')');
}

#[cfg(test)]
mod structure_tests {
    use super::*;

    #[test]
    fn deep_nesting_is_bounded() {
        let mut m = Vec::new();
        for i in 0..5000 {
            m.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nleaf\r\n");
        let s = bodystructure(&m);
        assert!(s.starts_with(b"BODYSTRUCTURE ("));
        // The nesting was really parsed that deep, and cut at the bound.
        let opens = s.iter().filter(|&&c| c == b'(').count();
        assert!(
            opens > MAX_MIME_DEPTH && opens < 3 * MAX_MIME_DEPTH,
            "{opens}"
        );
        let _ = body(&m);
    }

    #[test]
    fn single_and_multipart() {
        let s = String::from_utf8(bodystructure(b"Subject: x\r\n\r\nhello\r\nworld\r\n")).unwrap();
        assert_eq!(
            s,
            "BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 14 2 NIL NIL NIL NIL)"
        );
        let b = String::from_utf8(body(b"Subject: x\r\n\r\nhello\r\nworld\r\n")).unwrap();
        assert_eq!(
            b,
            "BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 14 2)"
        );
        let m = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\nContent-Language: en\r\n\r\nAAAA\r\n--b--\r\n";
        let s = String::from_utf8(bodystructure(m)).unwrap();
        assert!(
            s.starts_with(
                "BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" "
            ),
            "{s}"
        );
        assert!(
            s.contains("(\"APPLICATION\" \"PDF\" NIL NIL NIL \"BASE64\" "),
            "{s}"
        );
        assert!(
            s.ends_with(" \"MIXED\" (\"BOUNDARY\" \"b\") NIL NIL NIL)"),
            "{s}"
        );
        assert!(
            s.contains(" NIL (\"ATTACHMENT\" (\"FILENAME\" \"r.pdf\")) (\"en\") NIL)"),
            "{s}"
        );
    }
}

/// A MIME part section (`1`, `2.1`, `2.MIME`, `3.HEADER`, `3.TEXT`) of a
/// wire-form message: `None` if the spec is not numeric, `Some(empty)` if
/// the part does not exist.
pub fn part_section(msg: &[u8], spec: &str) -> Option<Vec<u8>> {
    let mut path = Vec::new();
    let mut suffix = String::new();
    for (i, piece) in spec.split('.').enumerate() {
        match piece.parse::<u32>() {
            Ok(n) if n > 0 && suffix.is_empty() => path.push(n),
            _ if i > 0 && suffix.is_empty() => {
                suffix = spec.splitn(i + 1, '.').last()?.to_ascii_uppercase()
            }
            _ if !suffix.is_empty() => {}
            _ => return None,
        }
    }
    if path.is_empty() || !matches!(suffix.as_str(), "" | "MIME" | "HEADER" | "TEXT") {
        return None;
    }
    if suffix.starts_with("HEADER.FIELDS") {
        return None;
    }
    Some(part_at(msg, &path, &suffix, 0).unwrap_or_default())
}

fn part_at(raw: &[u8], path: &[u32], suffix: &str, depth: usize) -> Option<Vec<u8>> {
    use mail_parser::PartType;
    if depth > 8 {
        return None;
    }
    let m = mail_parser::MessageParser::default().parse(raw)?;
    let mut cur = 0usize;
    for (i, &n) in path.iter().enumerate() {
        let part = m.parts.get(cur)?;
        match &part.body {
            PartType::Multipart(children) => cur = *children.get(n as usize - 1)? as usize,
            PartType::Message(_) if i > 0 => {
                let start = (part.raw_body_offset() as usize).min(raw.len());
                let end = (part.raw_end_offset() as usize).clamp(start, raw.len());
                return part_at(&raw[start..end], &path[i..], suffix, depth + 1);
            }
            _ if i == 0 && n == 1 => {}
            _ => return None,
        }
    }
    let part = m.parts.get(cur)?;
    let hs = (part.offset_header as usize).min(raw.len());
    let bs = (part.raw_body_offset() as usize).clamp(hs, raw.len());
    let be = (part.raw_end_offset() as usize).clamp(bs, raw.len());
    let body = &raw[bs..be];
    match suffix {
        "" if cur == 0 && path == [1] => section_text(raw),
        "" => Some(body.to_vec()),
        "MIME" => Some(raw[hs..bs].to_vec()),
        "HEADER" | "TEXT" => {
            let hdr_end = body
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| p + 4)
                .unwrap_or(body.len());
            Some(if suffix == "HEADER" {
                body[..hdr_end].to_vec()
            } else {
                body[hdr_end..].to_vec()
            })
        }
        _ => None,
    }
}

fn section_text(msg: &[u8]) -> Option<Vec<u8>> {
    let hdr_end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(msg.len());
    Some(msg[hdr_end..].to_vec())
}

#[cfg(test)]
mod part_tests {
    use super::*;

    #[test]
    fn parts() {
        let single = b"Subject: x\r\n\r\nhello\r\n";
        assert_eq!(part_section(single, "1").unwrap(), b"hello\r\n");
        assert_eq!(part_section(single, "2").unwrap(), b"");
        assert!(part_section(single, "HEADER").is_none());
        let m = b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b--\r\n";
        let p1 = part_section(m, "1").unwrap();
        assert!(p1.starts_with(b"hi"), "{:?}", String::from_utf8_lossy(&p1));
        let p2 = part_section(m, "2").unwrap();
        assert!(
            p2.starts_with(b"AAAA"),
            "{:?}",
            String::from_utf8_lossy(&p2)
        );
        let mime = part_section(m, "2.MIME").unwrap();
        assert!(
            mime.starts_with(b"Content-Type: application/pdf"),
            "{:?}",
            String::from_utf8_lossy(&mime)
        );
        assert_eq!(part_section(m, "3").unwrap(), b"");
        assert!(part_section(m, "1.BOGUS").is_none());
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    /// Pseudo-random and adversarial input never panics the parsers.
    #[test]
    fn garbage_does_not_panic() {
        let alphabet = b"aB1 *:,()[]<>{}+\"\\.\r\n%0HEADER.FIELDS";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 0..400usize {
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let _ = frame(&buf, MAX_COMMAND);
            let _ = tokenize(&buf);
            let s = String::from_utf8_lossy(&buf);
            let _ = sequence_set(&s, 7);
            let _ = part_section(&buf, &s);
            let _ = envelope(&buf);
            let _ = bodystructure(&buf);
            let _ = list_match(&buf, b"INBOX.Sent");
        }
    }
}
