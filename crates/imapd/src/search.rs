//! SEARCH keys (RFC 3501 section 6.4.4 / RFC 9051 section 6.4.4): parsed
//! from the command's tokens into a [`Key`] tree, then evaluated message by
//! message. Flag, size, date and set keys use the index only; header keys
//! (and SENT*) use the header from the mail store's message cache (read
//! from the file once per message, ever); body and text keys read the
//! message (once per message, however many keys need it).

use std::path::PathBuf;

use crate::parse::{self, Token};

/// Deepest nesting of parentheses, `NOT` and `OR` in one SEARCH.
pub const MAX_SEARCH_DEPTH: usize = 32;

/// One search key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    All,
    /// A Maildir flag letter present (`true`) or absent.
    Flag(char, bool),
    /// A keyword (case-insensitive) present or absent.
    Keyword(String, bool),
    Larger(u64),
    Smaller(u64),
    /// Internal date, compared by day (days since the epoch).
    Before(i64),
    On(i64),
    Since(i64),
    /// The Date: header's day, in its own time zone.
    SentBefore(i64),
    SentOn(i64),
    SentSince(i64),
    /// Header field contains (empty needle: the field exists).
    Header(String, Vec<u8>),
    Body(Vec<u8>),
    Text(Vec<u8>),
    Uid(Vec<u32>),
    Seq(Vec<u32>),
    Not(Box<Key>),
    Or(Box<Key>, Box<Key>),
    And(Vec<Key>),
    /// Matches nothing (`NEW`, `RECENT`: no message is ever \Recent).
    Nothing,
    /// RFC 7162 `MODSEQ`: the message's mod-sequence is at least this.
    ModSeq(u64),
}

impl Key {
    /// Whether the search uses `MODSEQ` (the answer then carries the
    /// highest mod-sequence of the matches, RFC 7162 section 3.1.5).
    pub fn uses_modseq(&self) -> bool {
        match self {
            Key::ModSeq(_) => true,
            Key::Not(k) => k.uses_modseq(),
            Key::Or(a, b) => a.uses_modseq() || b.uses_modseq(),
            Key::And(v) => v.iter().any(Key::uses_modseq),
            _ => false,
        }
    }
}

/// Parse the arguments of SEARCH (after an optional `RETURN (...)`, which
/// the caller removes). `max_msn`/`max_uid` give `*`.
pub fn parse(args: &[Token], max_msn: u32, max_uid: u32) -> Result<Key, String> {
    parse_with_saved(args, max_msn, max_uid, &[])
}

/// [`parse`] where `$` (RFC 5182 SEARCHRES) stands for `saved`, the UIDs
/// of the last `RETURN (SAVE)` search.
pub fn parse_with_saved(
    args: &[Token],
    max_msn: u32,
    max_uid: u32,
    saved: &[u32],
) -> Result<Key, String> {
    let mut p = Parser {
        toks: args,
        pos: 0,
        max_msn,
        max_uid,
        saved,
    };
    if p.peek().is_some_and(|t| t.is_atom("CHARSET")) {
        p.pos += 1;
        let cs = p.string()?;
        let cs = String::from_utf8_lossy(&cs).to_ascii_uppercase();
        if cs != "UTF-8" && cs != "US-ASCII" {
            return Err("NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset".into());
        }
    }
    let mut keys = Vec::new();
    while p.pos < p.toks.len() {
        keys.push(p.key(0)?);
    }
    if keys.is_empty() {
        return Err("BAD SEARCH needs a key".into());
    }
    Ok(if keys.len() == 1 {
        keys.pop().expect("one")
    } else {
        Key::And(keys)
    })
}

struct Parser<'a> {
    toks: &'a [Token],
    pos: usize,
    max_msn: u32,
    max_uid: u32,
    saved: &'a [u32],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<&Token> {
        let t = self.toks.get(self.pos);
        self.pos += 1;
        t
    }

    fn string(&mut self) -> Result<Vec<u8>, String> {
        match self.next() {
            Some(Token::Atom(a)) => Ok(a.as_bytes().to_vec()),
            Some(Token::Str(s)) => Ok(s.clone()),
            _ => Err("BAD Missing search argument".into()),
        }
    }

    fn number(&mut self) -> Result<u64, String> {
        let s = self.string()?;
        std::str::from_utf8(&s)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "BAD Invalid number".to_string())
    }

    fn date(&mut self) -> Result<i64, String> {
        let s = self.string()?;
        std::str::from_utf8(&s)
            .ok()
            .and_then(parse_date)
            .ok_or_else(|| "BAD Invalid date (want d-Mon-yyyy)".to_string())
    }

    fn key(&mut self, depth: usize) -> Result<Key, String> {
        if depth > MAX_SEARCH_DEPTH {
            return Err("BAD SEARCH nested too deeply".into());
        }
        let tok = self.next().cloned().ok_or("BAD Missing search key")?;
        let word = match tok {
            Token::LParen => {
                let mut keys = Vec::new();
                loop {
                    match self.peek() {
                        Some(Token::RParen) => {
                            self.pos += 1;
                            break;
                        }
                        None => return Err("BAD Unbalanced parentheses".into()),
                        _ => keys.push(self.key(depth + 1)?),
                    }
                }
                if keys.is_empty() {
                    return Err("BAD Empty parentheses".into());
                }
                return Ok(Key::And(keys));
            }
            Token::RParen => return Err("BAD Unexpected )".into()),
            Token::Str(_) => return Err("BAD Unexpected string".into()),
            Token::Atom(a) => a,
        };
        let upper = word.to_ascii_uppercase();
        Ok(match upper.as_str() {
            "ALL" => Key::All,
            "SEEN" => Key::Flag('S', true),
            "UNSEEN" => Key::Flag('S', false),
            "DELETED" => Key::Flag('T', true),
            "UNDELETED" => Key::Flag('T', false),
            "FLAGGED" => Key::Flag('F', true),
            "UNFLAGGED" => Key::Flag('F', false),
            "ANSWERED" => Key::Flag('R', true),
            "UNANSWERED" => Key::Flag('R', false),
            "DRAFT" => Key::Flag('D', true),
            "UNDRAFT" => Key::Flag('D', false),
            // Nothing is ever \Recent: NEW and RECENT match nothing, OLD all.
            "NEW" | "RECENT" => Key::Nothing,
            "OLD" => Key::All,
            "KEYWORD" | "UNKEYWORD" => {
                let k = String::from_utf8_lossy(&self.string()?).into_owned();
                Key::Keyword(k, upper == "KEYWORD")
            }
            "LARGER" => Key::Larger(self.number()?),
            "SMALLER" => Key::Smaller(self.number()?),
            "BEFORE" => Key::Before(self.date()?),
            "ON" => Key::On(self.date()?),
            "SINCE" => Key::Since(self.date()?),
            "SENTBEFORE" => Key::SentBefore(self.date()?),
            "SENTON" => Key::SentOn(self.date()?),
            "SENTSINCE" => Key::SentSince(self.date()?),
            "SUBJECT" | "FROM" | "TO" | "CC" | "BCC" => {
                Key::Header(upper.to_ascii_lowercase(), self.string()?)
            }
            "HEADER" => {
                let field = String::from_utf8_lossy(&self.string()?).into_owned();
                Key::Header(field, self.string()?)
            }
            "BODY" => Key::Body(self.string()?),
            "TEXT" => Key::Text(self.string()?),
            "UID" => {
                let s = String::from_utf8_lossy(&self.string()?).into_owned();
                if s == "$" {
                    Key::Uid(self.saved.to_vec())
                } else {
                    Key::Uid(parse::sequence_set(&s, self.max_uid).ok_or("BAD Invalid UID set")?)
                }
            }
            "$" => Key::Uid(self.saved.to_vec()),
            "MODSEQ" => {
                // Optional entry name and type (per-flag mod-sequences are
                // not kept; the message's own is used).
                if let Some(Token::Str(_)) = self.peek() {
                    self.pos += 2;
                }
                Key::ModSeq(self.number()?)
            }
            "NOT" => Key::Not(Box::new(self.key(depth + 1)?)),
            "OR" => {
                let a = self.key(depth + 1)?;
                let b = self.key(depth + 1)?;
                Key::Or(Box::new(a), Box::new(b))
            }
            _ => match parse::sequence_set(&word, self.max_msn) {
                Some(set) => Key::Seq(set),
                None => return Err(format!("BAD Unknown SEARCH key {word}")),
            },
        })
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// `d-Mon-yyyy` (RFC 3501 `date`) to days since the epoch.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.split('-');
    let d: u32 = it.next()?.parse().ok()?;
    let mon = it.next()?.to_ascii_lowercase();
    let y: i64 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(1..=31).contains(&d) || !(1..=9999).contains(&y) {
        return None;
    }
    let m = MONTHS.iter().position(|x| *x == mon)? as u32 + 1;
    Some(days_from_civil(y, m, d))
}

/// One message as the search sees it.
pub struct Candidate<'a> {
    pub msn: u32,
    pub uid: u32,
    /// Maildir flag letters (keywords as lowercase letters).
    pub flags: &'a str,
    /// The keyword names set on this message.
    pub keywords: Vec<String>,
    pub vsize: u64,
    pub internal_date: u64,
    pub modseq: u64,
    pub path: PathBuf,
    /// The wire form, read on first need.
    pub cached: Option<Vec<u8>>,
    /// The header (stored form, LF line ends, or the wire form when taken
    /// from `cached`), from `mailbox`'s cache on first need. Header keys
    /// accept either line end.
    pub header: Option<std::sync::Arc<[u8]>>,
    /// Where the cached header comes from (`None`: from the file).
    pub mailbox: Option<&'a mailstore::Mailbox>,
}

impl Candidate<'_> {
    fn message(&mut self) -> &[u8] {
        if self.cached.is_none() {
            let raw = std::fs::read(&self.path).unwrap_or_default();
            self.cached = Some(parse::to_crlf(&raw));
        }
        self.cached.as_deref().unwrap_or_default()
    }

    /// The header, shared (no copy per key).
    fn header(&mut self) -> std::sync::Arc<[u8]> {
        if let Some(h) = &self.header {
            return h.clone();
        }
        let from_cache = match (&self.cached, self.mailbox) {
            (None, Some(mb)) => mb.header(self.uid).ok(),
            _ => None,
        };
        let h = from_cache.unwrap_or_else(|| {
            let msg = self.message();
            let end = msg
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(msg.len(), |p| p + 4);
            std::sync::Arc::from(&msg[..end])
        });
        self.header = Some(h.clone());
        h
    }

    fn sent_day(&mut self) -> Option<i64> {
        let header = self.header();
        let parsed = mail_parser::MessageParser::default().parse_headers(&header)?;
        let d = parsed.date()?;
        Some(days_from_civil(
            i64::from(d.year),
            u32::from(d.month),
            u32::from(d.day),
        ))
    }

    /// Does this message match `key`?
    pub fn matches(&mut self, key: &Key) -> bool {
        let day = (self.internal_date / 86_400) as i64;
        match key {
            Key::All => true,
            Key::Nothing => false,
            Key::ModSeq(n) => self.modseq >= *n,
            Key::Flag(c, want) => self.flags.contains(*c) == *want,
            Key::Keyword(k, want) => {
                self.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) == *want
            }
            Key::Larger(n) => self.vsize > *n,
            Key::Smaller(n) => self.vsize < *n,
            Key::Before(d) => day < *d,
            Key::On(d) => day == *d,
            Key::Since(d) => day >= *d,
            Key::SentBefore(d) => self.sent_day().is_some_and(|s| s < *d),
            Key::SentOn(d) => self.sent_day().is_some_and(|s| s == *d),
            Key::SentSince(d) => self.sent_day().is_some_and(|s| s >= *d),
            Key::Header(field, needle) => {
                let hdr = self.header();
                let values = all_headers(&hdr, field);
                if values.iter().any(|v| parse::contains_ci(v, needle)) {
                    return true;
                }
                // Decoding changes nothing for an unstructured field whose
                // values are plain ASCII (no encoded words, no tabs from
                // folding), and an ASCII needle was compared
                // case-insensitively already: skip the parse. Address
                // fields are always decoded ("name address" form).
                let plain = |v: &[u8]| {
                    v.is_ascii() && !v.contains(&b'\t') && !v.windows(2).any(|w| w == b"=?")
                };
                let address = [
                    "from",
                    "to",
                    "cc",
                    "bcc",
                    "sender",
                    "reply-to",
                    "resent-from",
                    "resent-to",
                    "resent-cc",
                    "resent-bcc",
                    "resent-sender",
                ]
                .iter()
                .any(|a| field.eq_ignore_ascii_case(a));
                if !address && needle.is_ascii() && values.iter().all(|v| plain(v)) {
                    return false;
                }
                decoded_header_contains(&hdr, field, needle)
            }
            Key::Body(needle) => {
                let msg = self.message();
                let start = msg
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(msg.len(), |p| p + 4);
                parse::contains_ci(&msg[start..], needle) || decoded_body_contains(msg, needle)
            }
            Key::Text(needle) => {
                let msg = self.message();
                parse::contains_ci(msg, needle)
                    || decoded_body_contains(msg, needle)
                    || decoded_all_headers_contain(msg, needle)
            }
            Key::Uid(set) => set.binary_search(&self.uid).is_ok(),
            Key::Seq(set) => set.binary_search(&self.msn).is_ok(),
            Key::Not(k) => !self.matches(k),
            Key::Or(a, b) => self.matches(a) || self.matches(b),
            Key::And(keys) => keys.iter().all(|k| self.matches(k)),
        }
    }
}

/// Case-insensitive (Unicode lowercase) containment of a UTF-8 needle.
fn text_contains(hay: &str, needle: &[u8]) -> bool {
    let needle = String::from_utf8_lossy(needle).to_lowercase();
    hay.to_lowercase().contains(&needle)
}

/// A header value as text: encoded words decoded, addresses as
/// "name address".
fn header_text(v: &mail_parser::HeaderValue<'_>) -> String {
    use mail_parser::HeaderValue;
    match v {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(l) => l.join(" "),
        HeaderValue::Address(a) => a
            .iter()
            .map(|x| {
                format!(
                    "{} {}",
                    x.name.as_deref().unwrap_or(""),
                    x.address.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// RFC 2047 encoded words (`=?UTF-8?B?...?=`) decoded before matching, so
/// a UTF-8 search finds a MIME-encoded Subject or name.
fn decoded_header_contains(header: &[u8], field: &str, needle: &[u8]) -> bool {
    let Some(m) = mail_parser::MessageParser::default().parse_headers(header) else {
        return false;
    };
    m.header_values(field)
        .any(|v| text_contains(&header_text(v), needle))
}

fn decoded_all_headers_contain(msg: &[u8], needle: &[u8]) -> bool {
    let Some(m) = mail_parser::MessageParser::default().parse_headers(msg) else {
        return false;
    };
    m.headers()
        .iter()
        .any(|h| text_contains(&header_text(&h.value), needle))
}

/// The text parts decoded (transfer encoding and charset) before matching.
fn decoded_body_contains(msg: &[u8], needle: &[u8]) -> bool {
    use mail_parser::PartType;
    let Some(m) = mail_parser::MessageParser::default().parse(msg) else {
        return false;
    };
    m.parts.iter().any(|p| match &p.body {
        PartType::Text(t) | PartType::Html(t) => text_contains(t, needle),
        _ => false,
    })
}

/// Every (unfolded) value of header `name` in a wire-form header.
fn all_headers(header: &[u8], name: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut current = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let trimmed = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if line[0] == b' ' || line[0] == b'\t' {
            if current && let Some(v) = out.last_mut() {
                v.extend_from_slice(trimmed);
            }
            continue;
        }
        current = false;
        if let Some(colon) = trimmed.iter().position(|&b| b == b':')
            && trimmed[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
        {
            current = true;
            out.push(trimmed[colon + 1..].trim_ascii().to_vec());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Token> {
        parse::tokenize(format!("{s}\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1-Jan-1970"), Some(0));
        assert_eq!(parse_date("01-jan-1970"), Some(0));
        assert_eq!(parse_date("29-Feb-2000"), Some(11_016));
        assert_eq!(parse_date("1-Foo-2000"), None);
        assert_eq!(parse_date("1-Jan-2000-1"), None);
        assert_eq!(days_from_civil(2024, 3, 1), 19_783);
    }

    #[test]
    fn parse_tree() {
        let k = parse(&toks("OR SEEN (FLAGGED NOT DELETED) 1:2"), 5, 9).unwrap();
        assert_eq!(
            k,
            Key::And(vec![
                Key::Or(
                    Box::new(Key::Flag('S', true)),
                    Box::new(Key::And(vec![
                        Key::Flag('F', true),
                        Key::Not(Box::new(Key::Flag('T', true)))
                    ]))
                ),
                Key::Seq(vec![1, 2])
            ])
        );
        assert_eq!(
            parse(&toks("CHARSET UTF-8 SINCE 1-Feb-1994"), 1, 1).unwrap(),
            Key::Since(parse_date("1-Feb-1994").unwrap())
        );
        assert!(
            parse(&toks("CHARSET KOI8-R ALL"), 1, 1)
                .unwrap_err()
                .contains("BADCHARSET")
        );
        assert!(parse(&toks("(SEEN"), 1, 1).is_err());
        assert!(parse(&toks("BOGUS"), 1, 1).is_err());
        assert!(parse(&toks("OR SEEN"), 1, 1).is_err());
        let deep = format!("{}ALL{}", "(".repeat(40), ")".repeat(40));
        assert!(parse(&toks(&deep), 1, 1).unwrap_err().contains("deeply"));
        let nots = format!("{}ALL", "NOT ".repeat(40));
        assert!(parse(&toks(&nots), 1, 1).is_err());
    }

    #[test]
    fn evaluation() {
        let dir = tempfile_dir();
        let path = dir.join("m");
        std::fs::write(
            &path,
            "Subject: Hello\nDate: Tue, 1 Feb 1994 23:30:00 -0800\nX-A: one\nX-A: two\n\nBody Text\n",
        )
        .unwrap();
        let mut c = Candidate {
            msn: 2,
            uid: 7,
            flags: "Sa",
            keywords: vec!["$Junk".into()],
            vsize: 100,
            internal_date: 86_400 * 10 + 5,
            modseq: 12,
            path,
            cached: None,
            header: None,
            mailbox: None,
        };
        let t = |c: &mut Candidate, s: &str| c.matches(&parse(&toks(s), 5, 9).unwrap());
        assert!(t(&mut c, "SEEN UNFLAGGED KEYWORD $junk"));
        assert!(!t(&mut c, "UNKEYWORD $Junk"));
        assert!(t(&mut c, "LARGER 99 SMALLER 101"));
        assert!(t(
            &mut c,
            "ON 11-Jan-1970 SINCE 11-Jan-1970 BEFORE 12-Jan-1970"
        ));
        assert!(!t(&mut c, "BEFORE 11-Jan-1970"));
        assert!(t(
            &mut c,
            "SENTON 1-Feb-1994 SENTBEFORE 2-Feb-1994 SENTSINCE 1-Feb-1994"
        ));
        assert!(t(
            &mut c,
            "HEADER X-A two SUBJECT hello BODY \"body text\" TEXT date"
        ));
        assert!(!t(&mut c, "BODY hello"));
        assert!(t(&mut c, "UID 7 2 NOT 3 OR 1 2"));
        assert!(t(&mut c, "HEADER X-A \"\""));
        assert!(!t(&mut c, "HEADER X-B \"\""));
        assert!(!t(&mut c, "NEW") && t(&mut c, "OLD"));
        // Encoded words and encoded bodies are decoded for text keys.
        let path2 = dir.join("e");
        std::fs::write(
            &path2,
            "Subject: =?UTF-8?B?Q2Fmw6kgY3LDqG1l?=\nFrom: =?ISO-8859-1?Q?J=F6rg?= <j@x.test>\n\
             Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n\
             w6ljbGFpciBhdSBjaG9jb2xhdA==\n",
        )
        .unwrap();
        let mut e = Candidate {
            path: path2,
            cached: None,
            header: None,
            keywords: Vec::new(),
            ..c
        };
        let te = |c: &mut Candidate, s: &str| c.matches(&parse(&toks(s), 5, 9).unwrap());
        assert!(te(&mut e, "SUBJECT \"caf\u{e9} CR\u{c8}ME\""));
        assert!(te(&mut e, "FROM \"j\u{f6}rg\""));
        assert!(te(&mut e, "BODY \"\u{c9}CLAIR\""));
        assert!(te(&mut e, "TEXT chocolat") && te(&mut e, "TEXT \"cr\u{e8}me\""));
        assert!(!te(&mut e, "BODY vanille"));
        assert!(t(&mut c, "MODSEQ 12") && !t(&mut c, "MODSEQ 13"));
        assert!(t(&mut c, "MODSEQ \"/flags/\\\\draft\" all 5"));
        assert!(parse(&toks("NOT MODSEQ 3"), 1, 1).unwrap().uses_modseq());
    }

    /// Random key sequences from a vocabulary of keys, arguments and
    /// parentheses: parsing and evaluation never panic.
    #[test]
    fn random_keys_never_panic() {
        let vocab = [
            "ALL",
            "OR",
            "NOT",
            "(",
            ")",
            "SEEN",
            "KEYWORD",
            "LARGER",
            "BEFORE",
            "SENTON",
            "HEADER",
            "UID",
            "MODSEQ",
            "1:*",
            "*",
            "$",
            "0",
            "-1",
            "99999999999999999999",
            "1-Jan-1970",
            "31-Feb-2024",
            "\"x\"",
            "CHARSET",
            "UTF-8",
            "TEXT",
            "\u{e9}",
            "NEW",
        ];
        let dir = tempfile_dir();
        let path = dir.join("r");
        std::fs::write(&path, "Subject: r\nDate: bogus\n\nbody\n").unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            let mut words = Vec::new();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            for k in 0..(seed % 12) {
                words.push(vocab[((seed >> (k * 5)) % vocab.len() as u64) as usize]);
            }
            let line = words.join(" ");
            let Ok(t) = parse::tokenize(format!("{line}\r\n").as_bytes()) else {
                continue;
            };
            if let Ok(k) = parse_with_saved(&t, 3, 7, &[2, 5]) {
                let mut c = Candidate {
                    msn: 1,
                    uid: 2,
                    flags: "S",
                    keywords: Vec::new(),
                    vsize: 10,
                    internal_date: 0,
                    modseq: 1,
                    path: path.clone(),
                    cached: None,
                    header: None,
                    mailbox: None,
                };
                let _ = c.matches(&k);
            }
        }
    }

    /// Header keys are answered from the mail store's cache: the message
    /// file is gone, the search still finds the subject.
    #[test]
    fn header_keys_use_the_message_cache() {
        let dir = tempfile_dir().join("cache");
        let _ = std::fs::remove_dir_all(&dir);
        mailstore::deliver(
            &dir,
            "",
            b"Subject: Cached subject\r\nX-A: one\r\n\r\nbody\r\n",
        )
        .unwrap();
        let mb = mailstore::Mailbox::open(&dir).unwrap();
        let m = mb.messages()[0].clone();
        mb.header(m.uid).unwrap();
        std::fs::remove_file(&m.path).unwrap();
        let mut c = Candidate {
            msn: 1,
            uid: m.uid,
            flags: "",
            keywords: Vec::new(),
            vsize: m.vsize,
            internal_date: m.internal_date,
            modseq: m.modseq,
            path: m.path.clone(),
            cached: None,
            header: None,
            mailbox: Some(&mb),
        };
        let t = |c: &mut Candidate, s: &str| c.matches(&parse(&toks(s), 1, 9).unwrap());
        assert!(t(&mut c, "SUBJECT cached HEADER X-A one"));
        assert!(!t(&mut c, "SUBJECT other"));
        // A body key needs the file, which is gone: no match.
        assert!(!t(&mut c, "BODY body"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("imapd-search-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
