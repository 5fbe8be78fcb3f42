//! Mail address syntax as the directory needs it: split, normalise, strip
//! the plus-address extension.
//!
//! This is not a full RFC 5321 parser (smtpd has one): it accepts the
//! `local@domain` forms a directory stores, refuses what cannot be a key
//! (whitespace, control characters, `@` in the local part, empty parts,
//! over-long parts) and lowercases the whole address. Case-insensitive
//! local parts are what Postfix and Dovecot lookups do in practice.

use std::fmt;

/// Longest address (RFC 5321 4.5.3.1.3 path limit minus the brackets).
pub const MAX_ADDRESS_LEN: usize = 254;
/// Longest local part (RFC 5321 4.5.3.1.1).
pub const MAX_LOCAL_LEN: usize = 64;
/// Longest domain (RFC 5321 4.5.3.1.2).
pub const MAX_DOMAIN_LEN: usize = 253;

/// A normalised `local@domain` address (lowercase).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    local: String,
    domain: String,
}

impl Address {
    /// Parse and normalise. Refuses an address without `@`.
    pub fn parse(s: &str) -> Result<Address, String> {
        let s = s.trim();
        if s.len() > MAX_ADDRESS_LEN {
            return Err("address too long".into());
        }
        let (local, domain) = s.rsplit_once('@').ok_or("address without @")?;
        let local = validate_local(local)?;
        let domain = normalize_domain(domain)?;
        Ok(Address { local, domain })
    }

    /// Build from parts (validated).
    pub fn from_parts(local: &str, domain: &str) -> Result<Address, String> {
        Ok(Address {
            local: validate_local(local)?,
            domain: normalize_domain(domain)?,
        })
    }

    /// Local part.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// Domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Split off a plus-address extension: `user+tag` → (`user`, `tag`).
    /// `delimiters` is a set of characters (Postfix `recipient_delimiter`);
    /// empty disables. The split is at the first delimiter character; a
    /// local part that starts with a delimiter is not split.
    pub fn strip_extension(&self, delimiters: &str) -> Option<(Address, String)> {
        if delimiters.is_empty() {
            return None;
        }
        let i = self.local.find(|c| delimiters.contains(c))?;
        if i == 0 {
            return None;
        }
        let c = self.local[i..].chars().next()?;
        Some((
            Address {
                local: self.local[..i].to_string(),
                domain: self.domain.clone(),
            },
            self.local[i + c.len_utf8()..].to_string(),
        ))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

fn validate_local(local: &str) -> Result<String, String> {
    if local.is_empty() {
        return Err("empty local part".into());
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err("local part too long".into());
    }
    if local.chars().any(|c| {
        c.is_whitespace() || c.is_control() || c == '@' || c == '<' || c == '>' || c == ','
    }) {
        return Err("invalid character in local part".into());
    }
    Ok(local.to_lowercase())
}

/// Lowercase and check a domain name (LDH labels, dots, a trailing dot
/// removed; address literals `[..]` are refused: the directory never holds
/// them).
pub fn normalize_domain(domain: &str) -> Result<String, String> {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty() {
        return Err("empty domain".into());
    }
    if d.len() > MAX_DOMAIN_LEN {
        return Err("domain too long".into());
    }
    for label in d.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("bad domain label".into());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("domain label starts or ends with '-'".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("invalid character in domain (use the A-label form for IDN)".into());
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let cases: &[(&str, Result<&str, ()>)] = &[
            ("Alice@Example.ORG", Ok("alice@example.org")),
            ("  bob@example.org. ", Ok("bob@example.org")),
            ("a+b@x.y", Ok("a+b@x.y")),
            ("\"odd\"@x.y", Ok("\"odd\"@x.y")),
            ("nobody", Err(())),
            ("@example.org", Err(())),
            ("bob@", Err(())),
            ("b ob@example.org", Err(())),
            ("bob@exa mple.org", Err(())),
            ("bob@-example.org", Err(())),
            ("bob@example..org", Err(())),
            ("bob@[127.0.0.1]", Err(())),
        ];
        for (input, want) in cases {
            let got = Address::parse(input).map(|a| a.to_string()).map_err(|_| ());
            assert_eq!(got, want.map(str::to_string), "{input}");
        }
        let long = format!("{}@x.y", "a".repeat(MAX_LOCAL_LEN + 1));
        assert!(Address::parse(&long).is_err());
    }

    #[test]
    fn extension_table() {
        type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);
        let cases: &[Case] = &[
            ("user+tag@x.y", "+", Some(("user@x.y", "tag"))),
            ("user+a+b@x.y", "+", Some(("user@x.y", "a+b"))),
            ("user-tag@x.y", "+-", Some(("user@x.y", "tag"))),
            ("user+@x.y", "+", Some(("user@x.y", ""))),
            ("+tag@x.y", "+", None),
            ("user+tag@x.y", "", None),
            ("user@x.y", "+", None),
        ];
        for (input, delim, want) in cases {
            let a = Address::parse(input).unwrap();
            let got = a.strip_extension(delim).map(|(b, e)| (b.to_string(), e));
            assert_eq!(
                got,
                want.map(|(b, e)| (b.to_string(), e.to_string())),
                "{input} {delim}"
            );
        }
    }
}
