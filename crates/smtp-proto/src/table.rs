//! The command table: one row per verb with its flags (like Postfix
//! `smtpd_cmd_table` and `SMTPD_CMD_FLAG_*`).

use crate::command::Command;

/// Coarse session stage, as far as command sequencing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// After the greeting, before HELO/EHLO/LHLO.
    Connected,
    /// After HELO/EHLO/LHLO, no transaction.
    Greeted,
    /// After MAIL, before any accepted RCPT.
    Mail,
    /// After at least one accepted RCPT (DATA/BDAT allowed).
    Rcpt,
}

impl Stage {
    const fn bit(self) -> u8 {
        match self {
            Stage::Connected => 1,
            Stage::Greeted => 2,
            Stage::Mail => 4,
            Stage::Rcpt => 8,
        }
    }
}

const ANY: u8 = 1 | 2 | 4 | 8;

/// Flags of one verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Upper-case verb.
    pub verb: &'static str,
    stages: u8,
    /// Allowed before STARTTLS when the server requires TLS (`smtpd_tls_security_level = encrypt`).
    pub before_tls: bool,
    /// Allowed before AUTH when the server requires authentication (submission).
    pub before_auth: bool,
    /// Ends a pipelining group (RFC 2920 3.1): the server flushes buffered replies
    /// after answering it. AUTH, STARTTLS and BDAT LAST are included because the
    /// client must wait for their reply in practice. BDAT without LAST does not end
    /// a group (see [`Command::ends_group`]).
    pub ends_group: bool,
    /// Only valid in LMTP (LHLO) or only in SMTP (HELO/EHLO).
    pub protocol: Protocol,
}

/// Which protocols accept a verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// SMTP and LMTP.
    Both,
    /// SMTP only (HELO, EHLO).
    Smtp,
    /// LMTP only (LHLO).
    Lmtp,
}

impl CommandSpec {
    /// Whether the verb is allowed in `stage` (503 5.5.1 otherwise).
    pub fn allowed_in(&self, stage: Stage) -> bool {
        self.stages & stage.bit() != 0
    }
}

const fn row(
    verb: &'static str,
    stages: u8,
    before_tls: bool,
    before_auth: bool,
    ends_group: bool,
    protocol: Protocol,
) -> CommandSpec {
    CommandSpec {
        verb,
        stages,
        before_tls,
        before_auth,
        ends_group,
        protocol,
    }
}

/// The command table. Unknown verbs have no row.
pub const COMMAND_TABLE: &[CommandSpec] = &[
    //    verb        stages   pre-TLS pre-AUTH ends-group
    row("EHLO", ANY, true, true, true, Protocol::Smtp),
    row("HELO", ANY, true, true, true, Protocol::Smtp),
    row("LHLO", ANY, true, true, true, Protocol::Lmtp),
    row("STARTTLS", 2, true, true, true, Protocol::Both),
    row("AUTH", 2, false, true, true, Protocol::Both),
    row("MAIL", 2, false, false, false, Protocol::Both),
    row("RCPT", 4 | 8, false, false, false, Protocol::Both),
    row("DATA", 8, false, false, true, Protocol::Both),
    row("BDAT", 8, false, false, false, Protocol::Both),
    row("RSET", ANY, true, true, false, Protocol::Both),
    row("NOOP", ANY, true, true, true, Protocol::Both),
    row("QUIT", ANY, true, true, true, Protocol::Both),
    row("VRFY", ANY, false, false, true, Protocol::Both),
    row("EXPN", ANY, false, false, true, Protocol::Both),
    row("HELP", ANY, true, true, false, Protocol::Both),
];

/// Look up a verb (case-insensitive).
pub fn lookup(verb: &str) -> Option<&'static CommandSpec> {
    COMMAND_TABLE
        .iter()
        .find(|s| s.verb.eq_ignore_ascii_case(verb))
}

impl Command {
    /// The table row for this command, `None` for [`Command::Unknown`].
    pub fn spec(&self) -> Option<&'static CommandSpec> {
        match self {
            Command::Unknown(_) => None,
            c => lookup(c.verb()),
        }
    }

    /// Whether the server must flush buffered replies after answering this command.
    /// Unknown commands end a group (the client cannot have expected to pipeline them).
    pub fn ends_group(&self) -> bool {
        match self {
            Command::Bdat { last, .. } => *last,
            c => c.spec().is_none_or(|s| s.ends_group),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_verb_has_a_row() {
        for line in [
            "EHLO x",
            "HELO x",
            "LHLO x",
            "STARTTLS",
            "AUTH PLAIN",
            "MAIL FROM:<>",
            "RCPT TO:<a@b>",
            "DATA",
            "BDAT 1",
            "RSET",
            "NOOP",
            "QUIT",
            "VRFY x",
            "EXPN x",
            "HELP",
        ] {
            let c = Command::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert!(c.spec().is_some(), "{line}");
        }
        assert!(lookup("xyzzy").is_none());
    }

    #[test]
    fn group_enders() {
        let ends = |l: &str| Command::parse(l.as_bytes()).map(|c| c.ends_group()).ok();
        for l in [
            "EHLO x",
            "DATA",
            "VRFY a",
            "EXPN a",
            "QUIT",
            "NOOP",
            "AUTH PLAIN",
            "STARTTLS",
            "BDAT 5 LAST",
            "FOO",
        ] {
            assert_eq!(ends(l), Some(true), "{l}");
        }
        for l in ["MAIL FROM:<>", "RCPT TO:<a@b>", "RSET", "BDAT 5"] {
            assert_eq!(ends(l), Some(false), "{l}");
        }
    }

    #[test]
    fn stages() {
        let s = |v: &'static str| {
            lookup(v).copied().ok_or(v).map(|s| {
                (
                    s.allowed_in(Stage::Connected),
                    s.allowed_in(Stage::Greeted),
                    s.allowed_in(Stage::Mail),
                    s.allowed_in(Stage::Rcpt),
                )
            })
        };
        assert_eq!(s("MAIL"), Ok((false, true, false, false)));
        assert_eq!(s("RCPT"), Ok((false, false, true, true)));
        assert_eq!(s("DATA"), Ok((false, false, false, true)));
        assert_eq!(s("EHLO"), Ok((true, true, true, true)));
        assert!(lookup("starttls").is_some_and(|s| s.before_tls
            && !s.allowed_in(Stage::Connected)
            && !s.allowed_in(Stage::Mail)));
        assert!(lookup("MAIL").is_some_and(|s| !s.before_tls && !s.before_auth));
    }
}
