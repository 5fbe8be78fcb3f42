//! Maildir file names, Dovecot style:
//! `<secs>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<vsize>[:2,<flags>]`.
//!
//! The part before `:2,` (the *base name*) identifies a message for its
//! whole life; the info part after it carries the flags (`D F P R S T`,
//! sorted), which mutt and Dovecot change by renaming the file.

/// The standard Maildir flags, in the order they must appear.
pub const FLAGS: &str = "DFPRST";

/// Parts of a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName<'a> {
    /// Everything before `:2,` (or the whole name).
    pub base: &'a str,
    /// Flag letters after `:2,` (empty when none or no info part).
    pub flags: &'a str,
    /// `S=` size on disk, when the name carries it.
    pub size: Option<u64>,
    /// `W=` size with CRLF line ends, when the name carries it.
    pub vsize: Option<u64>,
}

/// Split and read a file name. Names made by other programs (no `S=`,
/// other info) are accepted; sizes are then `None`.
pub fn parse(name: &str) -> FileName<'_> {
    let (base, flags) = match name.split_once(":2,") {
        Some((b, f)) => (b, f),
        None => (name.split_once(':').map_or(name, |(b, _)| b), ""),
    };
    let mut size = None;
    let mut vsize = None;
    for field in base.split(',').skip(1) {
        if let Some(v) = field.strip_prefix("S=") {
            size = v.parse().ok();
        } else if let Some(v) = field.strip_prefix("W=") {
            vsize = v.parse().ok();
        }
    }
    FileName {
        base,
        flags,
        size,
        vsize,
    }
}

/// Normalise flag letters: known flags in `DFPRST` order, then lowercase
/// keyword letters in order, duplicates removed.
pub fn normalize_flags(flags: &str) -> String {
    let mut out: String = FLAGS.chars().filter(|f| flags.contains(*f)).collect();
    let mut kw: Vec<char> = flags.chars().filter(|c| c.is_ascii_lowercase()).collect();
    kw.sort_unstable();
    kw.dedup();
    out.extend(kw);
    out
}

/// A file name for `cur/` with the given flags.
pub fn with_flags(base: &str, flags: &str) -> String {
    format!("{base}:2,{}", normalize_flags(flags))
}

/// Escape a host name the way Dovecot does: `/` → `\057`, `:` → `\072`.
pub fn escape_host(host: &str) -> String {
    host.replace('/', "\\057").replace(':', "\\072")
}

/// Whether a directory entry looks like a message file (not hidden, not a
/// temporary or lock file).
pub fn is_message(name: &str) -> bool {
    !name.starts_with('.') && !name.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_table() {
        let cases = [
            (
                "1700000000.M1P2Q3.host,S=100,W=104:2,RS",
                "1700000000.M1P2Q3.host,S=100,W=104",
                "RS",
                Some(100),
                Some(104),
            ),
            (
                "1700000000.M1P2Q3.host,S=100,W=104",
                "1700000000.M1P2Q3.host,S=100,W=104",
                "",
                Some(100),
                Some(104),
            ),
            // mutt / other tools: no sizes
            (
                "1234.5678_1.myhost:2,S",
                "1234.5678_1.myhost",
                "S",
                None,
                None,
            ),
            (
                "1234.5678_1.myhost:2,",
                "1234.5678_1.myhost",
                "",
                None,
                None,
            ),
            // an info part of another version
            ("1234.x:1,foo", "1234.x", "", None, None),
            ("1.2.h,S=abc", "1.2.h,S=abc", "", None, None),
        ];
        for (name, base, flags, size, vsize) in cases {
            let p = parse(name);
            assert_eq!(
                (p.base, p.flags, p.size, p.vsize),
                (base, flags, size, vsize),
                "{name}"
            );
        }
    }

    #[test]
    fn flags_are_sorted_and_deduplicated() {
        assert_eq!(normalize_flags("SRF"), "FRS");
        assert_eq!(normalize_flags("TSSba"), "STab");
        assert_eq!(normalize_flags("Xz"), "z");
        assert_eq!(with_flags("b", "SR"), "b:2,RS");
        assert_eq!(escape_host("a/b:c"), "a\\057b\\072c");
        assert!(!is_message(".hidden") && is_message("1.2.h"));
    }
}
