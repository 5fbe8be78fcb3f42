//! The IMAP command grammar, in one place: a framed command (see
//! [`parse::frame`], which finds its end and its literals) is decoded by
//! [imap-codec](https://crates.io/crates/imap-codec) into imap-types'
//! `Command`, and lowered here into the session's own command form
//! ([`Command`]: tag, upper-case verb and canonical [`Token`] arguments).
//! The grammar is imap-codec's; what the arguments mean (mailboxes, flags,
//! sets, search keys, sections) is ours, in `session.rs` and `search.rs`.
//!
//! The lowering is canonical: quoted strings and literals become
//! [`Token::Str`], atoms come out upper-case where IMAP says they are
//! case-insensitive (`body.peek[header]` becomes `BODY.PEEK[HEADER]`),
//! sequence sets are re-printed, SASL-IR is re-encoded as base64 and
//! dates are printed in the form `search.rs`/`session.rs` read. With
//! IMAP4rev2 enabled ([`Names::Utf8`]) mailbox-name arguments are turned
//! from UTF-8 into the modified UTF-7 kept on disk. Lines may end in a bare
//! LF (imap-codec's `quirk_crlf_relaxed`), as the framer allows.
//!
//! # The fallback, and why
//! imap-codec 2.0.0-alpha.10 has no grammar for three extensions imapd
//! advertises; commands using them are rejected by imap-codec and then,
//! only if they have that shape, read with the hand-written tokenizer
//! ([`parse::tokenize`], bounded and fuzzed) that imapd used before:
//!
//! * LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819): selection
//!   options `LIST (SUBSCRIBED) ...`, several patterns `LIST "" (a b)`,
//!   `RETURN (...)`. imap-codec parses only the RFC 3501 LIST.
//! * ESEARCH (RFC 4731): `SEARCH RETURN (MIN MAX COUNT ALL SAVE)`.
//! * SEARCHRES (RFC 5182): `$` as a sequence set (FETCH, STORE, COPY,
//!   MOVE, UID EXPUNGE and the SEARCH keys).
//!
//! Anything else imap-codec refuses is answered `BAD`.

use std::fmt::Write as _;

use imap_codec::CommandCodec;
use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::imap_types::command::{CommandBody, FetchModifier, SelectParameter, StoreModifier};
use imap_codec::imap_types::core::{AString, Charset, IString, Tag, Vec1};
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItemName, Part, Section,
};
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::imap_types::status::StatusDataItemName;

use crate::parse::{self, Token};

/// A decoded command in the session's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    /// Upper case; `UID` for the UID forms, whose sub-command is the first
    /// argument (`UID FETCH 1 (FLAGS)` → verb `UID`, args `FETCH 1 (FLAGS)`).
    pub verb: String,
    pub args: Vec<Token>,
}

/// A command that could not be decoded: answer `{tag} {text}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The client's tag when one could be read, else `*`.
    pub tag: String,
    pub text: String,
}

/// Verbs imapd implements; a command with another verb is "unknown", one of
/// these with arguments imap-codec refuses is a syntax error.
const KNOWN_VERBS: &[&str] = &[
    "CAPABILITY",
    "NOOP",
    "LOGOUT",
    "STARTTLS",
    "AUTHENTICATE",
    "LOGIN",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "STATUS",
    "APPEND",
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "EXPUNGE",
    "SEARCH",
    "FETCH",
    "STORE",
    "COPY",
    "MOVE",
    "UID",
    "SORT",
    "THREAD",
    "IDLE",
    "ENABLE",
    "COMPRESS",
    "GETQUOTA",
    "GETQUOTAROOT",
    "SETQUOTA",
    "NAMESPACE",
    "ID",
];

/// How mailbox names are written by the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Names {
    /// IMAP4rev1: modified UTF-7 (RFC 3501 section 5.1.3), passed on as is.
    #[default]
    Mutf7,
    /// IMAP4rev2 enabled (RFC 9051 section 5.1): UTF-8, converted here to
    /// the modified UTF-7 imapd keeps on disk (as Dovecot does).
    Utf8,
}

/// Decode one framed command (CRLF and literals included), IMAP4rev1 names.
pub fn decode(raw: &[u8]) -> Result<Command, Rejected> {
    decode_with(raw, Names::Mutf7)
}

/// Decode one framed command with mailbox names written as `names` says.
pub fn decode_with(raw: &[u8], names: Names) -> Result<Command, Rejected> {
    // Why imap-codec refused it, when not for plain bad syntax.
    let problem = match CommandCodec::default().decode(raw) {
        Ok((b"", cmd)) => {
            let (verb, mut args) = lower(cmd.body);
            if names == Names::Utf8 {
                utf8_names(&verb, &mut args);
            }
            return Ok(Command {
                tag: cmd.tag.inner().to_string(),
                verb,
                args,
            });
        }
        Ok(_) => Some("BAD Junk after the command"),
        // `frame` hands over whole commands: incomplete means malformed.
        Err(CommandDecodeError::Incomplete | CommandDecodeError::LiteralFound { .. }) => {
            Some("BAD Incomplete command")
        }
        Err(CommandDecodeError::Failed) => None,
    };
    if let Some(mut cmd) = fallback(raw) {
        if names == Names::Utf8 {
            utf8_names(&cmd.verb, &mut cmd.args);
        }
        return Ok(cmd);
    }
    let (tag, verb) = tag_and_verb(raw);
    let text = match verb {
        Some(v) if KNOWN_VERBS.contains(&v.as_str()) => {
            problem.map_or_else(|| format!("BAD Invalid arguments to {v}"), str::to_string)
        }
        Some(v) if !v.is_empty() => "BAD Unknown command".to_string(),
        _ => "BAD Missing tag or command".to_string(),
    };
    Err(Rejected { tag, text })
}

/// Rewrite the mailbox-name arguments of a lowered command from UTF-8 to
/// modified UTF-7. Names that are not UTF-8 are left alone (the session
/// refuses them as invalid names).
fn utf8_names(verb: &str, args: &mut [Token]) {
    let convert = |t: &mut Token| {
        let text = match t {
            Token::Atom(a) => a.clone(),
            Token::Str(s) => match std::str::from_utf8(s) {
                Ok(s) => s.to_string(),
                Err(_) => return,
            },
            _ => return,
        };
        let m = utf8_to_mutf7(&text);
        if m != text {
            *t = Token::Str(m.into_bytes());
        }
    };
    // Which arguments are names: all of LIST's (its option words are ASCII
    // without `&`, which the conversion leaves as they are), the first of
    // the one-mailbox commands, the last of COPY/MOVE.
    let sub = match (verb, args.first()) {
        ("UID", Some(Token::Atom(s))) => s.to_ascii_uppercase(),
        _ => verb.to_string(),
    };
    match sub.as_str() {
        "LIST" | "LSUB" | "RENAME" => args.iter_mut().for_each(convert),
        "SELECT" | "EXAMINE" | "CREATE" | "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" | "STATUS"
        | "APPEND" | "GETQUOTAROOT" => {
            if let Some(t) = args.first_mut() {
                convert(t);
            }
        }
        "COPY" | "MOVE" => {
            if let Some(t) = args.last_mut() {
                convert(t);
            }
        }
        _ => {}
    }
}

/// UTF-8 → modified UTF-7 (RFC 3501 section 5.1.3): printable ASCII as
/// itself (`&` as `&-`), everything else as `&` + modified base64 of
/// UTF-16BE + `-`.
pub fn utf8_to_mutf7(s: &str) -> String {
    use base64::Engine as _;
    let mut out = String::with_capacity(s.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
        out.push('&');
        out.push_str(&b64.replace('/', ","));
        out.push('-');
        run.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Modified UTF-7 → UTF-8; `None` if `s` is not valid modified UTF-7.
pub fn mutf7_to_utf8(s: &str) -> Option<String> {
    use base64::Engine as _;
    if !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find('-')?;
        let run = &after[..end];
        if run.is_empty() {
            out.push('&');
        } else {
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(run.replace(',', "/"))
                .ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Longest tag of an undecodable command that is echoed in the `BAD`
/// reply (a longer one gets `*`): real tags are a few characters.
const MAX_ECHOED_TAG: usize = 64;

/// The tag (`*` when there is none usable) and upper-case verb of a raw
/// command, for error replies; the UID forms give `UID <sub>`'s `UID`.
pub fn tag_and_verb(raw: &[u8]) -> (String, Option<String>) {
    let first = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = first.strip_suffix(b"\r").unwrap_or(first);
    let mut words = line.split(|&b| b == b' ');
    let tag = words
        .next()
        // imap-codec's tag grammar; long tags are not echoed.
        .filter(|t| t.len() <= MAX_ECHOED_TAG && Tag::validate(t).is_ok())
        .map(|t| String::from_utf8_lossy(t).into_owned());
    let verb = words
        .next()
        .map(|v| String::from_utf8_lossy(v).to_ascii_uppercase());
    match tag {
        Some(t) => (t, verb),
        None => ("*".into(), None),
    }
}

/// The narrow fallback (see the module docs): the old tokenizer, only for
/// the extension syntax imap-codec has no grammar for.
fn fallback(raw: &[u8]) -> Option<Command> {
    // Only these verbs have such syntax: nothing else (a large APPEND
    // refused by imap-codec, say) is tokenized again.
    let (_, verb) = tag_and_verb(raw);
    if !matches!(
        verb.as_deref(),
        Some("LIST" | "SEARCH" | "FETCH" | "STORE" | "COPY" | "MOVE" | "UID")
    ) {
        return None;
    }
    let toks = parse::tokenize(raw).ok()?;
    let (Some(Token::Atom(tag)), Some(Token::Atom(verb))) = (toks.first(), toks.get(1)) else {
        return None;
    };
    // The same tag grammar as imap-codec's (a tokenizer atom may hold `[ ]`
    // with spaces, or `*`/`+`).
    Tag::validate(tag.as_bytes()).ok()?;
    let (tag, verb) = (tag.clone(), verb.to_ascii_uppercase());
    let cmd = |args: &[Token]| Command {
        tag: tag.clone(),
        verb: verb.clone(),
        args: args.to_vec(),
    };
    let args = &toks[2..];
    let (sub, sub_args) = if verb == "UID" {
        let Some(Token::Atom(s)) = args.first() else {
            return None;
        };
        (s.to_ascii_uppercase(), &args[1..])
    } else {
        (verb.clone(), args)
    };
    let dollar = |t: &Token| t.is_atom("$");
    let ok = match sub.as_str() {
        // LIST-EXTENDED selection options, several patterns, RETURN.
        "LIST" if verb == "LIST" => {
            sub_args.first() == Some(&Token::LParen)
                || sub_args.get(1) == Some(&Token::LParen)
                || sub_args.iter().any(|t| t.is_atom("RETURN"))
        }
        // ESEARCH RETURN options; SEARCHRES `$` among the keys.
        "SEARCH" => {
            sub_args.first().is_some_and(|t| t.is_atom("RETURN")) || sub_args.iter().any(dollar)
        }
        // SEARCHRES `$` as the sequence set.
        "FETCH" | "STORE" | "COPY" | "MOVE" => sub_args.first().is_some_and(dollar),
        "EXPUNGE" if verb == "UID" => sub_args.first().is_some_and(dollar),
        _ => false,
    };
    ok.then(|| cmd(args))
}

fn atom(s: impl Into<String>) -> Token {
    Token::Atom(s.into())
}

fn string(s: impl AsRef<[u8]>) -> Token {
    Token::Str(s.as_ref().to_vec())
}

fn mailbox(m: &Mailbox<'_>) -> Token {
    match m {
        Mailbox::Inbox => atom("INBOX"),
        Mailbox::Other(o) => string(o.as_ref()),
    }
}

fn astring(a: &AString<'_>) -> Token {
    string(a.as_ref())
}

fn list_mailbox(m: &ListMailbox<'_>) -> Token {
    match m {
        ListMailbox::Token(t) => string(t.as_ref()),
        ListMailbox::String(s) => string(<IString<'_> as AsRef<[u8]>>::as_ref(s)),
    }
}

fn charset(c: &Charset<'_>) -> Token {
    string(<Charset<'_> as AsRef<str>>::as_ref(c))
}

fn seq_or_uid(s: &SeqOrUid, out: &mut String) {
    match s {
        SeqOrUid::Value(n) => {
            let _ = write!(out, "{n}");
        }
        SeqOrUid::Asterisk => out.push('*'),
    }
}

/// `1:3,5,7:*` as the client sent it (not normalised: `*:4` stays).
pub fn sequence_set(set: &SequenceSet) -> String {
    let mut out = String::new();
    for (i, s) in set.0.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match s {
            Sequence::Single(a) => seq_or_uid(a, &mut out),
            Sequence::Range(a, b) => {
                seq_or_uid(a, &mut out);
                out.push(':');
                seq_or_uid(b, &mut out);
            }
        }
    }
    out
}

fn flag_list(flags: &[Flag<'_>], out: &mut Vec<Token>) {
    out.push(Token::LParen);
    out.extend(flags.iter().map(|f| atom(f.to_string())));
    out.push(Token::RParen);
}

fn part(p: &Part) -> String {
    let nums: Vec<String> = p.0.as_ref().iter().map(|n| n.to_string()).collect();
    nums.join(".")
}

/// A header field name inside `HEADER.FIELDS (..)`: as an atom when it is
/// one, else quoted (session.rs strips the quotes).
fn field_name(a: &AString<'_>, out: &mut String) {
    let b: &[u8] = a.as_ref();
    if !b.is_empty()
        && b.iter()
            .all(|&c| c.is_ascii_graphic() && !b"()[]{}\"\\%*".contains(&c))
    {
        out.push_str(&String::from_utf8_lossy(b).to_ascii_uppercase());
    } else {
        out.push('"');
        for &c in b {
            if c == b'"' || c == b'\\' {
                out.push('\\');
            }
            out.push(char::from(c));
        }
        out.push('"');
    }
}

fn section(s: &Section<'_>) -> String {
    let with_part = |p: &Option<Part>, what: &str| match p {
        Some(p) => format!("{}.{what}", part(p)),
        None => what.to_string(),
    };
    match s {
        Section::Part(p) => part(p),
        Section::Header(p) => with_part(p, "HEADER"),
        Section::Text(p) => with_part(p, "TEXT"),
        Section::Mime(p) => format!("{}.MIME", part(p)),
        Section::HeaderFields(p, fields) | Section::HeaderFieldsNot(p, fields) => {
            let not = matches!(s, Section::HeaderFieldsNot(..));
            let mut out = with_part(
                p,
                if not {
                    "HEADER.FIELDS.NOT"
                } else {
                    "HEADER.FIELDS"
                },
            );
            out.push_str(" (");
            for (i, f) in fields.as_ref().iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                field_name(f, &mut out);
            }
            out.push(')');
            out
        }
    }
}

fn partial(p: &Option<(u32, std::num::NonZeroU32)>, out: &mut String) {
    if let Some((offset, len)) = p {
        let _ = write!(out, "<{offset}.{len}>");
    }
}

/// One FETCH data item as the single atom session.rs reads.
pub fn fetch_item(item: &MessageDataItemName<'_>) -> String {
    match item {
        MessageDataItemName::Body => "BODY".into(),
        MessageDataItemName::BodyExt {
            section: s,
            partial: p,
            peek,
        } => {
            let mut out = String::from(if *peek { "BODY.PEEK[" } else { "BODY[" });
            if let Some(s) = s {
                out.push_str(&section(s));
            }
            out.push(']');
            partial(p, &mut out);
            out
        }
        MessageDataItemName::BodyStructure => "BODYSTRUCTURE".into(),
        MessageDataItemName::Envelope => "ENVELOPE".into(),
        MessageDataItemName::Flags => "FLAGS".into(),
        MessageDataItemName::InternalDate => "INTERNALDATE".into(),
        MessageDataItemName::Rfc822 => "RFC822".into(),
        MessageDataItemName::Rfc822Header => "RFC822.HEADER".into(),
        MessageDataItemName::Rfc822Size => "RFC822.SIZE".into(),
        MessageDataItemName::Rfc822Text => "RFC822.TEXT".into(),
        MessageDataItemName::Uid => "UID".into(),
        MessageDataItemName::Binary {
            section: s,
            partial: p,
            peek,
        } => {
            let mut out = String::from(if *peek { "BINARY.PEEK[" } else { "BINARY[" });
            let nums: Vec<String> = s.iter().map(|n| n.to_string()).collect();
            out.push_str(&nums.join("."));
            out.push(']');
            partial(p, &mut out);
            out
        }
        MessageDataItemName::BinarySize { section: s } => {
            let nums: Vec<String> = s.iter().map(|n| n.to_string()).collect();
            format!("BINARY.SIZE[{}]", nums.join("."))
        }
        MessageDataItemName::ModSeq => "MODSEQ".into(),
    }
}

/// `d-Mon-yyyy`, the form `search::parse_date` reads.
fn date(d: &imap_codec::imap_types::datetime::NaiveDate) -> Token {
    atom(d.as_ref().format("%-d-%b-%Y").to_string())
}

fn search_key(k: &SearchKey<'_>, out: &mut Vec<Token>) {
    use SearchKey as K;
    let word = |w: &str, out: &mut Vec<Token>| out.push(atom(w));
    match k {
        K::And(keys) => {
            out.push(Token::LParen);
            for k in keys.as_ref() {
                search_key(k, out);
            }
            out.push(Token::RParen);
        }
        K::SequenceSet(s) => out.push(atom(sequence_set(s))),
        K::All => word("ALL", out),
        K::Answered => word("ANSWERED", out),
        K::Deleted => word("DELETED", out),
        K::Draft => word("DRAFT", out),
        K::Flagged => word("FLAGGED", out),
        K::New => word("NEW", out),
        K::Old => word("OLD", out),
        K::Recent => word("RECENT", out),
        K::Seen => word("SEEN", out),
        K::Unanswered => word("UNANSWERED", out),
        K::Undeleted => word("UNDELETED", out),
        K::Undraft => word("UNDRAFT", out),
        K::Unflagged => word("UNFLAGGED", out),
        K::Unseen => word("UNSEEN", out),
        K::Bcc(s) | K::Body(s) | K::Cc(s) | K::From(s) | K::Subject(s) | K::Text(s) | K::To(s) => {
            let w = match k {
                K::Bcc(_) => "BCC",
                K::Body(_) => "BODY",
                K::Cc(_) => "CC",
                K::From(_) => "FROM",
                K::Subject(_) => "SUBJECT",
                K::Text(_) => "TEXT",
                _ => "TO",
            };
            word(w, out);
            out.push(astring(s));
        }
        K::Before(d)
        | K::On(d)
        | K::SentBefore(d)
        | K::SentOn(d)
        | K::SentSince(d)
        | K::Since(d) => {
            let w = match k {
                K::Before(_) => "BEFORE",
                K::On(_) => "ON",
                K::SentBefore(_) => "SENTBEFORE",
                K::SentOn(_) => "SENTON",
                K::SentSince(_) => "SENTSINCE",
                _ => "SINCE",
            };
            word(w, out);
            out.push(date(d));
        }
        K::Header(field, value) => {
            word("HEADER", out);
            out.push(astring(field));
            out.push(astring(value));
        }
        K::Keyword(a) | K::Unkeyword(a) => {
            word(
                if matches!(k, K::Keyword(_)) {
                    "KEYWORD"
                } else {
                    "UNKEYWORD"
                },
                out,
            );
            out.push(atom(a.inner()));
        }
        K::Larger(n) | K::Smaller(n) => {
            word(
                if matches!(k, K::Larger(_)) {
                    "LARGER"
                } else {
                    "SMALLER"
                },
                out,
            );
            out.push(atom(n.to_string()));
        }
        K::Not(k) => {
            word("NOT", out);
            search_key(k, out);
        }
        K::Or(a, b) => {
            word("OR", out);
            search_key(a, out);
            search_key(b, out);
        }
        K::Uid(s) => {
            word("UID", out);
            out.push(atom(sequence_set(s)));
        }
        K::ModSequence { entry, modseq } => {
            word("MODSEQ", out);
            if let Some((flag, kind)) = entry {
                // imap-types prints the flag quoted-string-escaped (`\\Seen`).
                out.push(string(format!("/flags/{flag}").replace("\\\\", "\\")));
                out.push(atom(kind.to_string().to_ascii_uppercase()));
            }
            out.push(atom(modseq.to_string()));
        }
    }
}

fn search_keys(keys: &Vec1<SearchKey<'_>>, out: &mut Vec<Token>) {
    for k in keys.as_ref() {
        search_key(k, out);
    }
}

fn sort_criterion(c: &SortCriterion, out: &mut Vec<Token>) {
    if c.reverse {
        out.push(atom("REVERSE"));
    }
    out.push(atom(match c.key {
        SortKey::Arrival => "ARRIVAL",
        SortKey::Cc => "CC",
        SortKey::Date => "DATE",
        SortKey::From => "FROM",
        SortKey::Size => "SIZE",
        SortKey::Subject => "SUBJECT",
        SortKey::To => "TO",
        SortKey::DisplayFrom => "DISPLAYFROM",
        SortKey::DisplayTo => "DISPLAYTO",
    }));
}

fn status_item(i: &StatusDataItemName) -> &'static str {
    match i {
        StatusDataItemName::Messages => "MESSAGES",
        StatusDataItemName::Recent => "RECENT",
        StatusDataItemName::UidNext => "UIDNEXT",
        StatusDataItemName::UidValidity => "UIDVALIDITY",
        StatusDataItemName::Unseen => "UNSEEN",
        StatusDataItemName::Deleted => "DELETED",
        StatusDataItemName::DeletedStorage => "DELETED-STORAGE",
        StatusDataItemName::Size => "SIZE",
        StatusDataItemName::HighestModSeq => "HIGHESTMODSEQ",
    }
}

fn copy_or_move(
    verb: &'static str,
    set: &SequenceSet,
    m: &Mailbox<'_>,
    uid: bool,
    a: &mut Vec<Token>,
) -> &'static str {
    if uid {
        a.push(atom(verb));
    }
    a.push(atom(sequence_set(set)));
    a.push(mailbox(m));
    if uid { "UID" } else { verb }
}

/// `(CONDSTORE)`, `(QRESYNC (uidvalidity modseq [known-uids [(seqs uids)]]))`.
fn select_parameters(params: &[SelectParameter], a: &mut Vec<Token>) {
    if params.is_empty() {
        return;
    }
    a.push(Token::LParen);
    for p in params {
        match p {
            SelectParameter::CondStore => a.push(atom("CONDSTORE")),
            SelectParameter::QResync {
                uid_validity,
                mod_sequence_value,
                known_uids,
                seq_match_data,
            } => {
                a.push(atom("QRESYNC"));
                a.push(Token::LParen);
                a.push(atom(uid_validity.to_string()));
                a.push(atom(mod_sequence_value.to_string()));
                if let Some(k) = known_uids {
                    a.push(atom(sequence_set(k)));
                }
                if let Some((seqs, uids)) = seq_match_data {
                    a.push(Token::LParen);
                    a.push(atom(sequence_set(seqs)));
                    a.push(atom(sequence_set(uids)));
                    a.push(Token::RParen);
                }
                a.push(Token::RParen);
            }
        }
    }
    a.push(Token::RParen);
}

/// imap-types' command → (verb, arguments) in the session's form.
fn lower(body: CommandBody<'_>) -> (String, Vec<Token>) {
    use base64::Engine as _;
    let mut a = Vec::new();
    let verb = match body {
        CommandBody::Capability => "CAPABILITY",
        CommandBody::Noop => "NOOP",
        CommandBody::Logout => "LOGOUT",
        CommandBody::StartTLS => "STARTTLS",
        CommandBody::Authenticate {
            mechanism,
            initial_response,
        } => {
            a.push(atom(mechanism.to_string().to_ascii_uppercase()));
            if let Some(ir) = initial_response {
                let ir = ir.declassify();
                a.push(atom(if ir.is_empty() {
                    "=".to_string()
                } else {
                    base64::engine::general_purpose::STANDARD.encode(ir)
                }));
            }
            "AUTHENTICATE"
        }
        CommandBody::Login { username, password } => {
            a.push(astring(&username));
            a.push(astring(password.declassify()));
            "LOGIN"
        }
        CommandBody::Select {
            mailbox: m,
            parameters,
        } => {
            a.push(mailbox(&m));
            select_parameters(&parameters, &mut a);
            "SELECT"
        }
        CommandBody::Examine {
            mailbox: m,
            parameters,
        } => {
            a.push(mailbox(&m));
            select_parameters(&parameters, &mut a);
            "EXAMINE"
        }
        CommandBody::Unselect => "UNSELECT",
        CommandBody::Create { mailbox: m } => {
            a.push(mailbox(&m));
            "CREATE"
        }
        CommandBody::Delete { mailbox: m } => {
            a.push(mailbox(&m));
            "DELETE"
        }
        CommandBody::Rename { from, to } => {
            a.push(mailbox(&from));
            a.push(mailbox(&to));
            "RENAME"
        }
        CommandBody::Subscribe { mailbox: m } => {
            a.push(mailbox(&m));
            "SUBSCRIBE"
        }
        CommandBody::Unsubscribe { mailbox: m } => {
            a.push(mailbox(&m));
            "UNSUBSCRIBE"
        }
        CommandBody::List {
            reference,
            mailbox_wildcard,
        } => {
            a.push(mailbox(&reference));
            a.push(list_mailbox(&mailbox_wildcard));
            "LIST"
        }
        CommandBody::Lsub {
            reference,
            mailbox_wildcard,
        } => {
            a.push(mailbox(&reference));
            a.push(list_mailbox(&mailbox_wildcard));
            "LSUB"
        }
        CommandBody::Status {
            mailbox: m,
            item_names,
        } => {
            a.push(mailbox(&m));
            a.push(Token::LParen);
            a.extend(item_names.iter().map(|i| atom(status_item(i))));
            a.push(Token::RParen);
            "STATUS"
        }
        CommandBody::Append {
            mailbox: m,
            flags,
            date,
            message,
        } => {
            a.push(mailbox(&m));
            if !flags.is_empty() {
                flag_list(&flags, &mut a);
            }
            if let Some(d) = date {
                a.push(string(
                    d.as_ref().format("%d-%b-%Y %H:%M:%S %z").to_string(),
                ));
            }
            a.push(match &message {
                LiteralOrLiteral8::Literal(l) => string(l.data()),
                LiteralOrLiteral8::Literal8(l) => string(l.data.as_ref()),
            });
            "APPEND"
        }
        CommandBody::Check => "CHECK",
        CommandBody::Close => "CLOSE",
        CommandBody::Expunge => "EXPUNGE",
        CommandBody::ExpungeUid { sequence_set: s } => {
            a.push(atom("EXPUNGE"));
            a.push(atom(sequence_set(&s)));
            "UID"
        }
        CommandBody::Search {
            charset: cs,
            criteria,
            uid,
        } => {
            if uid {
                a.push(atom("SEARCH"));
            }
            if let Some(cs) = cs {
                a.push(atom("CHARSET"));
                a.push(charset(&cs));
            }
            search_keys(&criteria, &mut a);
            if uid { "UID" } else { "SEARCH" }
        }
        CommandBody::Sort {
            sort_criteria,
            charset: cs,
            search_criteria,
            uid,
        } => {
            if uid {
                a.push(atom("SORT"));
            }
            a.push(Token::LParen);
            for c in sort_criteria.as_ref() {
                sort_criterion(c, &mut a);
            }
            a.push(Token::RParen);
            a.push(charset(&cs));
            search_keys(&search_criteria, &mut a);
            if uid { "UID" } else { "SORT" }
        }
        CommandBody::Thread {
            algorithm,
            charset: cs,
            search_criteria,
            uid,
        } => {
            if uid {
                a.push(atom("THREAD"));
            }
            a.push(atom(algorithm.to_string().to_ascii_uppercase()));
            a.push(charset(&cs));
            search_keys(&search_criteria, &mut a);
            if uid { "UID" } else { "THREAD" }
        }
        CommandBody::Fetch {
            sequence_set: s,
            macro_or_item_names,
            uid,
            modifiers,
        } => {
            if uid {
                a.push(atom("FETCH"));
            }
            a.push(atom(sequence_set(&s)));
            match macro_or_item_names {
                MacroOrMessageDataItemNames::Macro(m) => {
                    a.push(atom(m.to_string().to_ascii_uppercase()))
                }
                MacroOrMessageDataItemNames::MessageDataItemNames(items) => {
                    a.push(Token::LParen);
                    a.extend(items.iter().map(|i| atom(fetch_item(i))));
                    a.push(Token::RParen);
                }
            }
            if !modifiers.is_empty() {
                // CHANGEDSINCE first, as session.rs reads them.
                a.push(Token::LParen);
                for m in &modifiers {
                    if let FetchModifier::ChangedSince(n) = m {
                        a.push(atom("CHANGEDSINCE"));
                        a.push(atom(n.to_string()));
                    }
                }
                for m in &modifiers {
                    if let FetchModifier::Vanished = m {
                        a.push(atom("VANISHED"));
                    }
                }
                a.push(Token::RParen);
            }
            if uid { "UID" } else { "FETCH" }
        }
        CommandBody::Store {
            sequence_set: s,
            kind,
            response,
            flags,
            uid,
            modifiers,
        } => {
            if uid {
                a.push(atom("STORE"));
            }
            a.push(atom(sequence_set(&s)));
            for StoreModifier::UnchangedSince(n) in &modifiers {
                a.push(Token::LParen);
                a.push(atom("UNCHANGEDSINCE"));
                a.push(atom(n.to_string()));
                a.push(Token::RParen);
            }
            let op = match kind {
                StoreType::Replace => "FLAGS",
                StoreType::Add => "+FLAGS",
                StoreType::Remove => "-FLAGS",
            };
            a.push(atom(match response {
                StoreResponse::Answer => op.to_string(),
                StoreResponse::Silent => format!("{op}.SILENT"),
            }));
            flag_list(&flags, &mut a);
            if uid { "UID" } else { "STORE" }
        }
        CommandBody::Copy {
            sequence_set: s,
            mailbox: m,
            uid,
        } => copy_or_move("COPY", &s, &m, uid, &mut a),
        CommandBody::Move {
            sequence_set: s,
            mailbox: m,
            uid,
        } => copy_or_move("MOVE", &s, &m, uid, &mut a),
        CommandBody::Idle => "IDLE",
        CommandBody::Enable { capabilities } => {
            a.extend(
                capabilities
                    .as_ref()
                    .iter()
                    .map(|c| atom(c.to_string().to_ascii_uppercase())),
            );
            "ENABLE"
        }
        CommandBody::Compress { algorithm } => {
            a.push(atom(algorithm.to_string().to_ascii_uppercase()));
            "COMPRESS"
        }
        CommandBody::GetQuota { root } => {
            a.push(astring(&root));
            "GETQUOTA"
        }
        CommandBody::GetQuotaRoot { mailbox: m } => {
            a.push(mailbox(&m));
            "GETQUOTAROOT"
        }
        CommandBody::SetQuota { root, .. } => {
            a.push(astring(&root));
            "SETQUOTA"
        }
        CommandBody::Id { .. } => "ID",
        CommandBody::Namespace => "NAMESPACE",
    };
    (verb.to_string(), a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Framed, MAX_COMMAND, frame};

    /// Tokens as text: atoms bare, strings quoted, parentheses.
    fn show(c: &Command) -> String {
        let mut out = format!("{} {}", c.tag, c.verb);
        for t in &c.args {
            out.push(' ');
            match t {
                Token::Atom(a) => out.push_str(a),
                Token::Str(s) => out.push_str(&format!("{:?}", String::from_utf8_lossy(s))),
                Token::LParen => out.push('('),
                Token::RParen => out.push(')'),
            }
        }
        out
    }

    /// Decoded commands, each also fed to the framer one byte at a time:
    /// incomplete at every shorter prefix, complete exactly at its end.
    const DECODED: &[(&[u8], &str)] = &[
        (b"a NOOP\r\n", "a NOOP"),
        (b"a noop\n", "a NOOP"),
        (b"A1 CAPABILITY\r\n", "A1 CAPABILITY"),
        (b"a login bob \"p w\"\r\n", r#"a LOGIN "bob" "p w""#),
        (
            b"a LOGIN {3}\r\nbob {2+}\r\npw\r\n",
            r#"a LOGIN "bob" "pw""#,
        ),
        (
            b"a AUTHENTICATE plain AGJvYgBwdw==\r\n",
            "a AUTHENTICATE PLAIN AGJvYgBwdw==",
        ),
        (b"a AUTHENTICATE PLAIN =\r\n", "a AUTHENTICATE PLAIN ="),
        (b"a AUTHENTICATE LOGIN\r\n", "a AUTHENTICATE LOGIN"),
        (b"a select inbox\r\n", "a SELECT INBOX"),
        (
            b"a EXAMINE \"Old Inbox\" (CONDSTORE)\r\n",
            r#"a EXAMINE "Old Inbox" ( CONDSTORE )"#,
        ),
        (
            b"a SELECT Cs (QRESYNC (7 12 1:2 (1:2 5:6)))\r\n",
            r#"a SELECT "Cs" ( QRESYNC ( 7 12 1:2 ( 1:2 5:6 ) ) )"#,
        ),
        (
            b"a uid fetch 1:* (flags body.peek[header.fields (from \"to\")]<0.10> BINARY.PEEK[1] BINARY.SIZE[2] MODSEQ) (VANISHED CHANGEDSINCE 5)\r\n",
            "a UID FETCH 1:* ( FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10> BINARY.PEEK[1] BINARY.SIZE[2] MODSEQ ) ( CHANGEDSINCE 5 VANISHED )",
        ),
        (b"a FETCH 2,4:* all\r\n", "a FETCH 2,4:* ALL"),
        (
            b"a FETCH *:3 (BODY[] BODY[2.1.MIME] BODY[1.HEADER.FIELDS.NOT (X-A)] BODY[TEXT]<4.5> RFC822.SIZE BODY ENVELOPE)\r\n",
            "a FETCH *:3 ( BODY[] BODY[2.1.MIME] BODY[1.HEADER.FIELDS.NOT (X-A)] BODY[TEXT]<4.5> RFC822.SIZE BODY ENVELOPE )",
        ),
        (
            b"a STORE 1 (UNCHANGEDSINCE 3) +FLAGS.SILENT (\\Seen $Label)\r\n",
            r"a STORE 1 ( UNCHANGEDSINCE 3 ) +FLAGS.SILENT ( \Seen $Label )",
        ),
        (
            b"a UID STORE 1:2 -FLAGS \\Deleted\r\n",
            r"a UID STORE 1:2 -FLAGS ( \Deleted )",
        ),
        (
            b"a SEARCH CHARSET utf-8 OR KEYWORD x ON 1-Feb-1994 NOT (SEEN LARGER 5) HEADER Message-ID \"t2\"\r\n",
            r#"a SEARCH CHARSET "utf-8" OR KEYWORD x ON 1-Feb-1994 NOT ( SEEN LARGER 5 ) HEADER "Message-ID" "t2""#,
        ),
        (
            b"a UID SEARCH MODSEQ \"/flags/\\\\seen\" all 5 UID 3:* 1,2 SENTSINCE 01-Jan-2024\r\n",
            r#"a UID SEARCH MODSEQ "/flags/\\Seen" ALL 5 UID 3:* 1,2 SENTSINCE 1-Jan-2024"#,
        ),
        (
            b"a SORT (REVERSE SIZE DATE) UTF-8 NOT SUBJECT apple\r\n",
            r#"a SORT ( REVERSE SIZE DATE ) "UTF-8" NOT SUBJECT "apple""#,
        ),
        (
            b"a UID THREAD references US-ASCII ALL\r\n",
            r#"a UID THREAD REFERENCES "US-ASCII" ALL"#,
        ),
        (
            b"a APPEND Work (\\Seen kw) \"10-Mar-2020 12:00:00 +0100\" {2}\r\nhi\r\n",
            r#"a APPEND "Work" ( \Seen kw ) "10-Mar-2020 12:00:00 +0100" "hi""#,
        ),
        (
            b"a APPEND x ~{3}\r\na\0c\r\n",
            "a APPEND \"x\" \"a\\0c\"",
        ),
        (
            b"a STATUS INBOX (MESSAGES UIDNEXT DELETED SIZE HIGHESTMODSEQ)\r\n",
            "a STATUS INBOX ( MESSAGES UIDNEXT DELETED SIZE HIGHESTMODSEQ )",
        ),
        (b"a LIST \"\" %\r\n", r#"a LIST "" "%""#),
        (b"a LSUB \"\" \"W*\"\r\n", r#"a LSUB "" "W*""#),
        (
            b"a ENABLE IMAP4rev2 condstore\r\n",
            "a ENABLE IMAP4REV2 CONDSTORE",
        ),
        (b"a UID EXPUNGE 1:3\r\n", "a UID EXPUNGE 1:3"),
        (b"a UID MOVE 1 Mv\r\n", r#"a UID MOVE 1 "Mv""#),
        (b"a COPY 1:2 \"A b\"\r\n", r#"a COPY 1:2 "A b""#),
        (
            b"a RENAME INBOX {3+}\r\nOld\r\n",
            r#"a RENAME INBOX "Old""#,
        ),
        (
            b"a ID (\"name\" \"imaplib\" \"version\" NIL)\r\n",
            "a ID",
        ),
        (b"a ID NIL\r\n", "a ID"),
        (b"a COMPRESS deflate\r\n", "a COMPRESS DEFLATE"),
        (b"a GETQUOTAROOT INBOX\r\n", "a GETQUOTAROOT INBOX"),
        (b"a GETQUOTA \"\"\r\n", r#"a GETQUOTA """#),
        (b"a IDLE\r\n", "a IDLE"),
        (b"a NAMESPACE\r\n", "a NAMESPACE"),
        (b"a UNSELECT\r\n", "a UNSELECT"),
        (b"a STARTTLS\r\n", "a STARTTLS"),
        // The fallback: extension syntax imap-codec has no grammar for.
        (
            b"a LIST (SPECIAL-USE) \"\" *\r\n",
            r#"a LIST ( SPECIAL-USE ) "" *"#,
        ),
        (
            b"a LIST \"\" (Job* INBOX) RETURN (STATUS (MESSAGES))\r\n",
            r#"a LIST "" ( Job* INBOX ) RETURN ( STATUS ( MESSAGES ) )"#,
        ),
        (
            b"a SEARCH RETURN (MIN COUNT) ALL\r\n",
            "a SEARCH RETURN ( MIN COUNT ) ALL",
        ),
        (b"a UID SEARCH UID $\r\n", "a UID SEARCH UID $"),
        (b"a FETCH $ (UID)\r\n", "a FETCH $ ( UID )"),
        (
            b"a UID STORE $ +FLAGS (\\Flagged)\r\n",
            r"a UID STORE $ +FLAGS ( \Flagged )",
        ),
        (b"a MOVE $ Trash\r\n", "a MOVE $ Trash"),
    ];

    #[test]
    fn decodes_commands_whole_and_byte_by_byte() {
        for (raw, want) in DECODED {
            let got = decode(raw).unwrap_or_else(|e| panic!("{raw:?}: {e:?}"));
            assert_eq!(show(&got), *want, "{}", String::from_utf8_lossy(raw));
            // Split reads: every prefix is incomplete, the whole is one
            // command; a `{n}` literal asks for a continuation once.
            let mut continuations = 0;
            let mut last = None;
            for end in 0..raw.len() {
                match frame(&raw[..end], MAX_COMMAND) {
                    Framed::Incomplete(Some(p)) if last != Some(p) => {
                        last = Some(p);
                        continuations += 1;
                    }
                    Framed::Incomplete(_) => {}
                    other => panic!("{raw:?} at {end}: {other:?}"),
                }
            }
            assert_eq!(frame(raw, MAX_COMMAND), Framed::Command(raw.len()));
            let sync = raw
                .windows(3)
                .filter(|w| w[0].is_ascii_digit() && w[1] == b'}' && w[2] == b'\r')
                .count();
            assert_eq!(continuations, sync, "{raw:?}");
        }
    }

    /// Refused commands: tag (or `*`) and reply text.
    const REJECTED: &[(&[u8], &str, &str)] = &[
        (b"a FOO\r\n", "a", "BAD Unknown command"),
        (b"a FETCH\r\n", "a", "BAD Invalid arguments to FETCH"),
        (b"d \"unterminated\r\n", "d", "BAD Unknown command"),
        (
            b"a LOGIN \"unterminated\r\n",
            "a",
            "BAD Invalid arguments to LOGIN",
        ),
        (b"\r\n", "*", "BAD Missing tag or command"),
        (b"a\r\n", "a", "BAD Missing tag or command"),
        (b"* NOOP\r\n", "*", "BAD Missing tag or command"),
        (b"a+ NOOP\r\n", "*", "BAD Missing tag or command"),
        (b"a[ b] LIST (x) \"\" *\r\n", "a[", "BAD Unknown command"),
        (b"a NOOP extra\r\n", "a", "BAD Invalid arguments to NOOP"),
        (
            b"a STORE 1 +FLAGS (bad(kw)\r\n",
            "a",
            "BAD Invalid arguments to STORE",
        ),
        (
            b"a FETCH 0 (FLAGS)\r\n",
            "a",
            "BAD Invalid arguments to FETCH",
        ),
        (
            b"a SELECT INBOX (FOO)\r\n",
            "a",
            "BAD Invalid arguments to SELECT",
        ),
        (
            b"a COMPRESS GZIP\r\n",
            "a",
            "BAD Invalid arguments to COMPRESS",
        ),
        // RETURN only on SEARCH/LIST; NUL only in literal8 (RFC 3516).
        (
            b"a LOGIN a {1}\r\n\0\r\n",
            "a",
            "BAD Invalid arguments to LOGIN",
        ),
        (
            b"a LSUB (x) \"\" *\r\n",
            "a",
            "BAD Invalid arguments to LSUB",
        ),
        (
            b"a STATUS INBOX RETURN (x)\r\n",
            "a",
            "BAD Invalid arguments to STATUS",
        ),
        // Deeper than imap-codec's search nesting bound.
        (
            b"a SEARCH ((((((((((((ALL))))))))))))\r\n",
            "a",
            "BAD Invalid arguments to SEARCH",
        ),
    ];

    #[test]
    fn rejects_with_the_tag() {
        for (raw, tag, text) in REJECTED {
            let got = decode(raw).expect_err(&String::from_utf8_lossy(raw));
            assert_eq!(
                (got.tag.as_str(), got.text.as_str()),
                (*tag, *text),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn modified_utf7() {
        for (utf8, m) in [
            ("INBOX", "INBOX"),
            ("Tom & Jerry", "Tom &- Jerry"),
            ("日本語", "&ZeVnLIqe-"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("a/b ~ &", "a/b ~ &-"),
            ("😀x", "&2D3eAA-x"),
        ] {
            assert_eq!(utf8_to_mutf7(utf8), m);
            assert_eq!(mutf7_to_utf8(m).as_deref(), Some(utf8));
        }
        assert_eq!(mutf7_to_utf8("&ZeVnLIqe"), None);
        assert_eq!(mutf7_to_utf8("&Z-"), None);
    }

    #[test]
    fn utf8_names_in_rev2_mode() {
        let c = decode_with("a CREATE \"Entwürfe & Co\"\r\n".as_bytes(), Names::Utf8).unwrap();
        assert_eq!(c.args, [Token::Str(b"Entw&APw-rfe &- Co".to_vec())]);
        let c = decode_with(b"a UID MOVE 1:2 {9}\r\nEntw\xc3\xbcrfe\r\n", Names::Utf8).unwrap();
        assert_eq!(show(&c), r#"a UID MOVE 1:2 "Entw&APw-rfe""#);
        let c = decode_with(
            "a LIST (SUBSCRIBED) \"\" (Entwürfe* INBOX) RETURN (CHILDREN)\r\n".as_bytes(),
            Names::Utf8,
        )
        .unwrap();
        assert_eq!(
            show(&c),
            r#"a LIST ( SUBSCRIBED ) "" ( "Entw&APw-rfe*" INBOX ) RETURN ( CHILDREN )"#
        );
        // Search strings are not names.
        let c = decode_with(b"a SEARCH SUBJECT \"x & y\"\r\n", Names::Utf8).unwrap();
        assert_eq!(show(&c), r#"a SEARCH SUBJECT "x & y""#);
        // IMAP4rev1: `&` starts modified UTF-7, passed on as is.
        let c = decode(b"a CREATE &ZeVnLIqe-\r\n").unwrap();
        assert_eq!(show(&c), r#"a CREATE "&ZeVnLIqe-""#);
    }

    #[test]
    fn secrets_and_binary_literals_are_kept_exactly() {
        let mut raw = b"a LOGIN \"b\\\\o\\\"b\" {4}\r\n".to_vec();
        raw.extend_from_slice(b"\xff\x01 \"\r\n");
        let c = decode(&raw).unwrap();
        assert_eq!(
            c.args,
            [
                Token::Str(b"b\\o\"b".to_vec()),
                Token::Str(b"\xff\x01 \"".to_vec())
            ]
        );
    }
}
