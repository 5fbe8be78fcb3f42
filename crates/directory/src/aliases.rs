//! `/etc/aliases` parser (sendmail / Postfix `aliases(5)` format).
//!
//! ```text
//! # comment
//! postmaster: root
//! root:       alice, bob@example.org
//! team:       alice,
//!             bob                     <- continuation: leading whitespace
//! "odd name": alice
//! list:       :include:/etc/mail/list.txt
//! archive:    /var/mail/archive       <- file target, refused unless allowed
//! robot:      "|/usr/bin/robot --x"   <- command target, refused unless allowed
//! ```
//!
//! Parsing never stops at the first problem: [`parse_str`] and [`load`]
//! return the table of good entries plus every bad line with its line number
//! and reason, like `postalias` warnings. A bad target makes its whole entry
//! bad (a half-expanded alias could silently drop mail). A duplicate name
//! keeps the first definition (as Postfix does) and reports the later one.
//!
//! `:include:` paths must be absolute. Included files are read when the
//! aliases file is parsed (what `newaliases` does), to a bounded depth
//! ([`MAX_INCLUDE_DEPTH`]), and hold targets separated by commas and/or
//! newlines, with `#` comments.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Nesting bound for `:include:` (an include that includes itself stops here).
pub const MAX_INCLUDE_DEPTH: usize = 8;
/// Largest aliases or include file read (bytes).
pub const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;
/// Longest logical line (after joining continuations), bytes.
pub const MAX_LOGICAL_LINE: usize = 64 * 1024;
/// Most targets of one alias, after includes.
pub const MAX_TARGETS: usize = 10_000;

/// What local aliases may point to, besides addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AliasPolicy {
    /// Accept `|command` targets. Default false.
    pub allow_commands: bool,
    /// Accept `/path/file` targets. Default false.
    pub allow_files: bool,
}

/// One expanded alias target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AliasTarget {
    /// An address or a local name (no `@`), to be resolved again.
    Address(String),
    /// `|command` (the command line without the `|`).
    Command(String),
    /// An absolute file path to append to.
    File(PathBuf),
}

impl fmt::Display for AliasTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AliasTarget::Address(a) => f.write_str(a),
            AliasTarget::Command(c) => write!(f, "|{c}"),
            AliasTarget::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Why a line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AliasErrorKind {
    /// No `name:` separator.
    #[error("missing ':' after the alias name")]
    MissingColon,
    /// Empty or invalid name.
    #[error("bad alias name")]
    BadName,
    /// No targets after the colon.
    #[error("alias has no targets")]
    NoTargets,
    /// A quote is not closed.
    #[error("unterminated quote")]
    UnterminatedQuote,
    /// Continuation line with nothing to continue.
    #[error("continuation line without an alias before it")]
    OrphanContinuation,
    /// `|command` target and commands are not allowed.
    #[error(
        "command target {0:?} refused: commands are not allowed by policy (allow_command_targets)"
    )]
    CommandNotAllowed(String),
    /// `/file` target and files are not allowed.
    #[error("file target {0:?} refused: files are not allowed by policy (allow_file_targets)")]
    FileNotAllowed(String),
    /// `:include:` with a relative path.
    #[error(":include: path {0:?} is not absolute")]
    RelativeInclude(String),
    /// `:include:` file could not be read.
    #[error(":include: {path:?}: {reason}")]
    IncludeUnreadable {
        /// the path
        path: String,
        /// the I/O error
        reason: String,
    },
    /// `:include:` nested deeper than [`MAX_INCLUDE_DEPTH`].
    #[error(":include: nested deeper than {MAX_INCLUDE_DEPTH}")]
    IncludeTooDeep,
    /// Bad target syntax.
    #[error("bad target {0:?}")]
    BadTarget(String),
    /// Name defined twice; the first definition is kept.
    #[error("duplicate alias {0:?}, first definition kept")]
    Duplicate(String),
    /// Logical line longer than [`MAX_LOGICAL_LINE`] or more than
    /// [`MAX_TARGETS`] targets.
    #[error("line or target list too long")]
    TooLong,
}

/// A refused line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasLineError {
    /// File the line is in (the aliases file or an included file).
    pub file: String,
    /// 1-based line number of the logical line's first physical line.
    pub line: usize,
    /// What is wrong.
    pub kind: AliasErrorKind,
}

impl fmt::Display for AliasLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.kind)
    }
}

/// Whole-file failure (the file itself cannot be read).
#[derive(Debug, thiserror::Error)]
pub enum AliasFileError {
    /// I/O error.
    #[error("{path}: {source}")]
    Io {
        /// path
        path: String,
        /// error
        source: std::io::Error,
    },
    /// Bigger than [`MAX_FILE_SIZE`].
    #[error("{0}: file too large")]
    TooLarge(String),
}

/// Parsed aliases: name (lowercased) → targets (deduplicated, in order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AliasTable {
    entries: BTreeMap<String, Vec<AliasTarget>>,
}

impl AliasTable {
    /// Targets of `name` (matched case-insensitively).
    pub fn get(&self, name: &str) -> Option<&[AliasTarget]> {
        self.entries
            .get(&name.to_ascii_lowercase())
            .map(Vec::as_slice)
    }

    /// Number of aliases.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[AliasTarget])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// Result of parsing: good entries and all bad lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedAliases {
    /// Good entries.
    pub table: AliasTable,
    /// Every refused line, in file order.
    pub errors: Vec<AliasLineError>,
}

/// Read and parse an aliases file.
pub fn load(path: &Path, policy: AliasPolicy) -> Result<ParsedAliases, AliasFileError> {
    let text = read_bounded(path)?;
    Ok(parse_str(&text, &path.display().to_string(), policy))
}

fn read_bounded(path: &Path) -> Result<String, AliasFileError> {
    let io = |source| AliasFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > MAX_FILE_SIZE {
        return Err(AliasFileError::TooLarge(path.display().to_string()));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Parse aliases text. `source` names the text in error reports.
pub fn parse_str(text: &str, source: &str, policy: AliasPolicy) -> ParsedAliases {
    let mut out = ParsedAliases::default();
    for (line_no, logical) in logical_lines(text, source, &mut out.errors) {
        let err = |kind| AliasLineError {
            file: source.to_string(),
            line: line_no,
            kind,
        };
        if logical.len() > MAX_LOGICAL_LINE {
            out.errors.push(err(AliasErrorKind::TooLong));
            continue;
        }
        match parse_entry(&logical, policy) {
            Ok((name, targets)) => {
                use std::collections::btree_map::Entry;
                match out.table.entries.entry(name) {
                    Entry::Occupied(o) => out
                        .errors
                        .push(err(AliasErrorKind::Duplicate(o.key().clone()))),
                    Entry::Vacant(v) => {
                        v.insert(targets);
                    }
                }
            }
            Err(kind) => out.errors.push(err(kind)),
        }
    }
    out
}

/// Join continuation lines; skip comments and blank lines. Yields (first
/// line number, logical line).
fn logical_lines(
    text: &str,
    source: &str,
    errors: &mut Vec<AliasLineError>,
) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            match out.last_mut() {
                Some((_, l)) => {
                    if l.len() <= MAX_LOGICAL_LINE {
                        l.push(' ');
                        l.push_str(trimmed);
                    }
                }
                None => errors.push(AliasLineError {
                    file: source.to_string(),
                    line: line_no,
                    kind: AliasErrorKind::OrphanContinuation,
                }),
            }
        } else {
            out.push((line_no, raw.trim_end().to_string()));
        }
    }
    out
}

/// Split at `sep` outside double quotes. Error on an unterminated quote.
fn split_unquoted(s: &str, sep: char, max: usize) -> Result<Vec<&str>, AliasErrorKind> {
    let mut parts = Vec::new();
    let mut in_quote = false;
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            c if c == sep && !in_quote && parts.len() + 1 < max => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if in_quote {
        return Err(AliasErrorKind::UnterminatedQuote);
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        let inner = &s[1..s.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut esc = false;
        for c in inner.chars() {
            if esc {
                out.push(c);
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else {
                out.push(c);
            }
        }
        out
    } else {
        s.to_string()
    }
}

fn parse_entry(
    line: &str,
    policy: AliasPolicy,
) -> Result<(String, Vec<AliasTarget>), AliasErrorKind> {
    let parts = split_unquoted(line, ':', 2)?;
    if parts.len() != 2 {
        return Err(AliasErrorKind::MissingColon);
    }
    let name = unquote(parts[0]);
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_control() || (c.is_whitespace() && !parts[0].trim().starts_with('"')))
    {
        return Err(AliasErrorKind::BadName);
    }
    let mut targets = Vec::new();
    expand_targets(parts[1], policy, 0, &mut targets)?;
    if targets.is_empty() {
        return Err(AliasErrorKind::NoTargets);
    }
    Ok((name.to_ascii_lowercase(), targets))
}

fn push_unique(targets: &mut Vec<AliasTarget>, t: AliasTarget) -> Result<(), AliasErrorKind> {
    if !targets.contains(&t) {
        if targets.len() >= MAX_TARGETS {
            return Err(AliasErrorKind::TooLong);
        }
        targets.push(t);
    }
    Ok(())
}

fn expand_targets(
    list: &str,
    policy: AliasPolicy,
    depth: usize,
    targets: &mut Vec<AliasTarget>,
) -> Result<(), AliasErrorKind> {
    for raw in split_unquoted(list, ',', usize::MAX)? {
        let t = unquote(raw);
        if t.is_empty() {
            continue; // "a, b," and "a,,b" are tolerated, as in Postfix
        }
        if let Some(path) = strip_prefix_ci(&t, ":include:") {
            let path = path.trim();
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(AliasErrorKind::IncludeTooDeep);
            }
            if !Path::new(path).is_absolute() {
                return Err(AliasErrorKind::RelativeInclude(path.to_string()));
            }
            let text =
                read_bounded(Path::new(path)).map_err(|e| AliasErrorKind::IncludeUnreadable {
                    path: path.to_string(),
                    reason: match e {
                        AliasFileError::Io { source, .. } => source.to_string(),
                        AliasFileError::TooLarge(_) => "file too large".into(),
                    },
                })?;
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                expand_targets(line, policy, depth + 1, targets)?;
            }
        } else if let Some(cmd) = t.strip_prefix('|') {
            if !policy.allow_commands {
                return Err(AliasErrorKind::CommandNotAllowed(t.clone()));
            }
            if cmd.trim().is_empty() {
                return Err(AliasErrorKind::BadTarget(t.clone()));
            }
            push_unique(targets, AliasTarget::Command(cmd.trim().to_string()))?;
        } else if t.starts_with('/') {
            if !policy.allow_files {
                return Err(AliasErrorKind::FileNotAllowed(t.clone()));
            }
            push_unique(targets, AliasTarget::File(PathBuf::from(&t)))?;
        } else {
            if t.chars().any(|c| c.is_whitespace() || c.is_control()) || t.starts_with(':') {
                return Err(AliasErrorKind::BadTarget(t.clone()));
            }
            push_unique(targets, AliasTarget::Address(t))?;
        }
    }
    Ok(())
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> AliasTarget {
        AliasTarget::Address(s.into())
    }

    const ALLOW_ALL: AliasPolicy = AliasPolicy {
        allow_commands: true,
        allow_files: true,
    };

    #[test]
    fn good_lines_table() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("postmaster: root", "postmaster", &["root"]),
            (
                "Root:  alice , bob@example.org",
                "root",
                &["alice", "bob@example.org"],
            ),
            (
                "team: alice,\n  bob,\n\tcarol",
                "team",
                &["alice", "bob", "carol"],
            ),
            (
                "team: alice,\n# comment inside\n  bob",
                "team",
                &["alice", "bob"],
            ),
            ("\"odd name\": alice", "odd name", &["alice"]),
            ("dups: alice, alice, bob, alice", "dups", &["alice", "bob"]),
            ("trailing: alice,", "trailing", &["alice"]),
            ("q: \"alice@example.org\"", "q", &["alice@example.org"]),
        ];
        for (text, name, want) in cases {
            let p = parse_str(text, "t", AliasPolicy::default());
            assert!(p.errors.is_empty(), "{text}: {:?}", p.errors);
            let got = p
                .table
                .get(name)
                .unwrap_or_else(|| panic!("{text}: no {name}"));
            let want: Vec<_> = want.iter().map(|s| addr(s)).collect();
            assert_eq!(got, &want[..], "{text}");
        }
    }

    #[test]
    fn command_and_file_targets_follow_policy() {
        let text = "robot: \"|/usr/bin/robot --x\"\narchive: /var/mail/archive\n";
        let p = parse_str(text, "aliases", AliasPolicy::default());
        assert!(p.table.is_empty());
        assert_eq!(
            p.errors,
            vec![
                AliasLineError {
                    file: "aliases".into(),
                    line: 1,
                    kind: AliasErrorKind::CommandNotAllowed("|/usr/bin/robot --x".into())
                },
                AliasLineError {
                    file: "aliases".into(),
                    line: 2,
                    kind: AliasErrorKind::FileNotAllowed("/var/mail/archive".into())
                },
            ]
        );
        assert!(
            p.errors[0]
                .to_string()
                .contains("aliases:1: command target")
        );
        let p = parse_str(text, "aliases", ALLOW_ALL);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(
            p.table.get("robot").unwrap(),
            &[AliasTarget::Command("/usr/bin/robot --x".into())]
        );
        assert_eq!(
            p.table.get("archive").unwrap(),
            &[AliasTarget::File("/var/mail/archive".into())]
        );
    }

    #[test]
    fn all_bad_lines_reported_with_numbers() {
        let text = "\
# comment
  orphan continuation
nocolon alice
: alice
empty:
ok: alice
bad quote: \"alice
rel: :include:relative/file
ok: bob
two words: alice
spacey: alice bob

also_ok: carol
";
        let p = parse_str(text, "f", AliasPolicy::default());
        let got: Vec<(usize, AliasErrorKind)> =
            p.errors.into_iter().map(|e| (e.line, e.kind)).collect();
        assert_eq!(
            got,
            vec![
                (2, AliasErrorKind::OrphanContinuation),
                (3, AliasErrorKind::MissingColon),
                (4, AliasErrorKind::BadName),
                (5, AliasErrorKind::NoTargets),
                (7, AliasErrorKind::UnterminatedQuote),
                (8, AliasErrorKind::RelativeInclude("relative/file".into())),
                (9, AliasErrorKind::Duplicate("ok".into())),
                (10, AliasErrorKind::BadName),
                (11, AliasErrorKind::BadTarget("alice bob".into())),
            ]
        );
        assert_eq!(p.table.get("ok").unwrap(), &[addr("alice")]);
        assert_eq!(p.table.get("ALSO_OK").unwrap(), &[addr("carol")]);
        assert_eq!(p.table.len(), 2);
    }

    #[test]
    fn include_files() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list");
        std::fs::write(&list, "# members\nalice, bob\ncarol\n\n").unwrap();
        let looped = dir.path().join("loop");
        std::fs::write(&looped, format!(":include:{}\n", looped.display())).unwrap();
        let cmd = dir.path().join("cmd");
        std::fs::write(&cmd, "|/bin/evil\n").unwrap();
        let text = format!(
            "list: :include:{}, dave\nloop: :include:{}\nmissing: :include:{}/nope\ncmd: :include:{}\n",
            list.display(),
            looped.display(),
            dir.path().display(),
            cmd.display()
        );
        let aliases = dir.path().join("aliases");
        std::fs::write(&aliases, &text).unwrap();
        let p = load(&aliases, AliasPolicy::default()).unwrap();
        assert_eq!(
            p.table.get("list").unwrap(),
            &[addr("alice"), addr("bob"), addr("carol"), addr("dave")]
        );
        let kinds: Vec<_> = p.errors.iter().map(|e| (e.line, &e.kind)).collect();
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        assert_eq!(kinds[0], (2, &AliasErrorKind::IncludeTooDeep));
        assert!(matches!(
            kinds[1],
            (3, AliasErrorKind::IncludeUnreadable { .. })
        ));
        assert_eq!(
            kinds[2],
            (4, &AliasErrorKind::CommandNotAllowed("|/bin/evil".into()))
        );
    }

    #[test]
    fn missing_file_is_an_error() {
        assert!(matches!(
            load(Path::new("/nonexistent/aliases"), AliasPolicy::default()),
            Err(AliasFileError::Io { .. })
        ));
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    /// Deterministic pseudo-random texts built from the characters that
    /// matter to the grammar: the parser must never panic and must account
    /// for every non-comment line (as an entry, a continuation or an error).
    #[test]
    fn random_input_never_panics() {
        const ALPHABET: &[&str] = &[
            "a",
            "b",
            ":",
            ",",
            "\"",
            "\\",
            " ",
            "\t",
            "\n",
            "#",
            "|",
            "/",
            "@",
            ":include:",
            "é",
            "\r",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..3000 {
            let mut text = String::new();
            let len = (x % 40) as usize;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.push_str(ALPHABET[(x % ALPHABET.len() as u64) as usize]);
            }
            let p = parse_str(&text, "fuzz", AliasPolicy::default());
            for e in &p.errors {
                assert!(
                    e.line >= 1 && e.line <= text.lines().count().max(1),
                    "{text:?}: {e}"
                );
            }
            for (name, targets) in p.table.iter() {
                assert!(!name.is_empty() && !targets.is_empty(), "{text:?}");
            }
        }
    }

    #[test]
    fn overlong_logical_line_is_reported() {
        let mut text = String::from("big: a\n");
        for _ in 0..(MAX_LOGICAL_LINE / 8 + 10) {
            text.push_str("  bbbbbb,\n");
        }
        text.push_str("ok: c\n");
        let p = parse_str(&text, "f", AliasPolicy::default());
        assert_eq!(p.errors.len(), 1);
        assert_eq!(
            (p.errors[0].line, &p.errors[0].kind),
            (1, &AliasErrorKind::TooLong)
        );
        assert!(p.table.get("ok").is_some());
    }
}
