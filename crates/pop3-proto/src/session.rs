//! Session states, the command table, and the failed-command counter.

use crate::command::Command;
use crate::response::{RespCode, Response, is_cleartext_mechanism};

/// POP3 session states (RFC 1939 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Before login: USER/PASS, APOP, AUTH, STLS, CAPA, QUIT.
    Authorization,
    /// Logged in, maildrop open.
    Transaction,
    /// After QUIT in TRANSACTION: the server expunges and closes. No command
    /// is accepted any more.
    Update,
}

/// Command keywords, the key of the [`CommandTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// USER
    User,
    /// PASS
    Pass,
    /// STAT
    Stat,
    /// LIST
    List,
    /// RETR
    Retr,
    /// DELE
    Dele,
    /// NOOP
    Noop,
    /// RSET
    Rset,
    /// QUIT
    Quit,
    /// TOP
    Top,
    /// UIDL
    Uidl,
    /// APOP
    Apop,
    /// CAPA
    Capa,
    /// STLS
    Stls,
    /// AUTH
    Auth,
}

impl Command {
    /// The keyword of this command; `None` for [`Command::Unknown`].
    pub fn verb(&self) -> Option<Verb> {
        Some(match self {
            Command::User { .. } => Verb::User,
            Command::Pass { .. } => Verb::Pass,
            Command::Stat => Verb::Stat,
            Command::List { .. } => Verb::List,
            Command::Retr { .. } => Verb::Retr,
            Command::Dele { .. } => Verb::Dele,
            Command::Noop => Verb::Noop,
            Command::Rset => Verb::Rset,
            Command::Quit => Verb::Quit,
            Command::Top { .. } => Verb::Top,
            Command::Uidl { .. } => Verb::Uidl,
            Command::Apop { .. } => Verb::Apop,
            Command::Capa => Verb::Capa,
            Command::Stls => Verb::Stls,
            Command::Auth { .. } => Verb::Auth,
            Command::Unknown(_) => return None,
        })
    }
}

/// Allowed in AUTHORIZATION state.
pub const FLAG_AUTHORIZATION: u8 = 1 << 0;
/// Allowed in TRANSACTION state.
pub const FLAG_TRANSACTION: u8 = 1 << 1;
/// Carries a clear-text password: refused on a connection without TLS unless
/// plaintext authentication is allowed (RFC 2595 section 2.3). For AUTH this
/// applies only to the mechanisms in
/// [`CLEARTEXT_MECHANISMS`](crate::CLEARTEXT_MECHANISMS).
pub const FLAG_CLEARTEXT_CREDENTIALS: u8 = 1 << 2;
/// Refused once TLS is active (STLS).
pub const FLAG_NOT_WITH_TLS: u8 = 1 << 3;

/// One row of the command table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// The keyword.
    pub verb: Verb,
    /// The keyword as sent by clients.
    pub name: &'static str,
    /// `FLAG_*` bits.
    pub flags: u8,
}

impl CommandSpec {
    /// Whether the command may be used in `state`.
    pub fn allowed_in(&self, state: State) -> bool {
        match state {
            State::Authorization => self.flags & FLAG_AUTHORIZATION != 0,
            State::Transaction => self.flags & FLAG_TRANSACTION != 0,
            State::Update => false,
        }
    }
}

const A: u8 = FLAG_AUTHORIZATION;
const T: u8 = FLAG_TRANSACTION;
const CLEAR: u8 = FLAG_CLEARTEXT_CREDENTIALS;

/// The POP3 command table: every command with the states it is valid in
/// (RFC 1939 sections 4–7, RFC 2449 section 5, RFC 2595 section 4,
/// RFC 5034 section 4) and its TLS flags.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        verb: Verb::User,
        name: "USER",
        flags: A | CLEAR,
    },
    CommandSpec {
        verb: Verb::Pass,
        name: "PASS",
        flags: A | CLEAR,
    },
    CommandSpec {
        verb: Verb::Apop,
        name: "APOP",
        flags: A,
    },
    CommandSpec {
        verb: Verb::Auth,
        name: "AUTH",
        flags: A | CLEAR,
    },
    CommandSpec {
        verb: Verb::Stls,
        name: "STLS",
        flags: A | FLAG_NOT_WITH_TLS,
    },
    CommandSpec {
        verb: Verb::Capa,
        name: "CAPA",
        flags: A | T,
    },
    CommandSpec {
        verb: Verb::Quit,
        name: "QUIT",
        flags: A | T,
    },
    CommandSpec {
        verb: Verb::Stat,
        name: "STAT",
        flags: T,
    },
    CommandSpec {
        verb: Verb::List,
        name: "LIST",
        flags: T,
    },
    CommandSpec {
        verb: Verb::Retr,
        name: "RETR",
        flags: T,
    },
    CommandSpec {
        verb: Verb::Dele,
        name: "DELE",
        flags: T,
    },
    CommandSpec {
        verb: Verb::Noop,
        name: "NOOP",
        flags: T,
    },
    CommandSpec {
        verb: Verb::Rset,
        name: "RSET",
        flags: T,
    },
    CommandSpec {
        verb: Verb::Top,
        name: "TOP",
        flags: T,
    },
    CommandSpec {
        verb: Verb::Uidl,
        name: "UIDL",
        flags: T,
    },
];

/// Reply text when a command is refused because the connection is not
/// encrypted (Dovecot's wording, which clients and operators recognise).
pub const PLAINTEXT_DISALLOWED: &str =
    "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";

/// The table the daemon consults before running a command.
#[derive(Debug, Clone, Copy)]
pub struct CommandTable {
    specs: &'static [CommandSpec],
}

impl Default for CommandTable {
    fn default() -> Self {
        Self::standard()
    }
}

impl CommandTable {
    /// The table of RFC 1939 + 2449 + 2595 + 5034 commands, [`COMMANDS`].
    pub const fn standard() -> Self {
        CommandTable { specs: COMMANDS }
    }

    /// The row for `verb`.
    pub fn spec(&self, verb: Verb) -> Option<&'static CommandSpec> {
        self.specs.iter().find(|s| s.verb == verb)
    }

    /// All rows.
    pub fn specs(&self) -> &'static [CommandSpec] {
        self.specs
    }

    /// Decides whether `cmd` may run now. `Ok(())`: run it. `Err(reply)`:
    /// send `reply` (always `-ERR`) and count a failed command.
    ///
    /// `plaintext_allowed` is the operator's choice to accept clear-text
    /// passwords without TLS (Dovecot's `disable_plaintext_auth = no`).
    /// Whether STLS is offered at all (a certificate configured) and which
    /// SASL mechanisms exist are the daemon's business, not the table's.
    pub fn check(
        &self,
        cmd: &Command,
        state: State,
        tls_active: bool,
        plaintext_allowed: bool,
    ) -> Result<(), Response> {
        if state == State::Update {
            return Err(Response::err("Session is closing"));
        }
        let Some(spec) = cmd.verb().and_then(|v| self.spec(v)) else {
            return Err(Response::err("Unknown command"));
        };
        if !spec.allowed_in(state) {
            return Err(Response::err(match state {
                State::Authorization => "Not logged in",
                _ => "Command not valid in this state",
            }));
        }
        if tls_active && spec.flags & FLAG_NOT_WITH_TLS != 0 {
            return Err(Response::err("Command not permitted when TLS active"));
        }
        if !tls_active && !plaintext_allowed && spec.flags & FLAG_CLEARTEXT_CREDENTIALS != 0 {
            let cleartext = match cmd {
                Command::Auth { mechanism, .. } => {
                    mechanism.as_deref().is_some_and(is_cleartext_mechanism)
                }
                _ => true,
            };
            if cleartext {
                return Err(Response::err_code(RespCode::Auth, PLAINTEXT_DISALLOWED));
            }
        }
        Ok(())
    }
}

/// Failed commands (parse errors, refused commands, `-ERR` results) a
/// session may accumulate before the server closes it.
///
/// POP3 has no standard value (Postfix's SMTP `smtpd_hard_error_limit`
/// defaults to 20). A real client in a working session sends none; 10 leaves room for a
/// confused one while stopping a scanner quickly. The counter never resets
/// within a session. Login failures are additionally throttled by authd.
pub const MAX_FAILED_COMMANDS: u32 = 10;

/// Counts failed commands; see [`MAX_FAILED_COMMANDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCounter {
    count: u32,
    limit: u32,
}

impl Default for FailureCounter {
    fn default() -> Self {
        Self::new(MAX_FAILED_COMMANDS)
    }
}

/// What to do after recording a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureVerdict {
    /// Send the `-ERR` reply and go on.
    Continue,
    /// Send the `-ERR` reply, then close the connection.
    Close,
}

impl FailureCounter {
    /// A counter with a custom limit (a limit of 0 behaves like 1).
    pub fn new(limit: u32) -> Self {
        FailureCounter {
            count: 0,
            limit: limit.max(1),
        }
    }

    /// Records one failed command. Returns [`FailureVerdict::Close`] when
    /// this failure reaches the limit (and on every failure after that).
    pub fn record(&mut self) -> FailureVerdict {
        self.count = self.count.saturating_add(1);
        if self.count >= self.limit {
            FailureVerdict::Close
        } else {
            FailureVerdict::Continue
        }
    }

    /// Failures so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

/// Per-connection protocol state: the current [`State`], TLS, the name from
/// a pending USER, and the [`FailureCounter`]. Pure bookkeeping; the daemon
/// calls the transition methods when the corresponding event has happened.
#[derive(Debug, Clone)]
pub struct Session {
    state: State,
    tls_active: bool,
    plaintext_allowed: bool,
    user: Option<String>,
    failures: FailureCounter,
    table: CommandTable,
}

impl Session {
    /// A session in AUTHORIZATION state. `tls_active` is true for implicit
    /// TLS (port 995); `plaintext_allowed` lets USER/PASS and PLAIN/LOGIN run
    /// without TLS.
    pub fn new(tls_active: bool, plaintext_allowed: bool) -> Self {
        Session {
            state: State::Authorization,
            tls_active,
            plaintext_allowed,
            user: None,
            failures: FailureCounter::default(),
            table: CommandTable::standard(),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether TLS is active.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// Whether clear-text credentials may be used right now.
    pub fn cleartext_ok(&self) -> bool {
        self.tls_active || self.plaintext_allowed
    }

    /// [`CommandTable::check`] for the current situation, plus the one
    /// sequencing rule the table cannot express: PASS is valid only
    /// immediately after a successful USER (RFC 1939 section 7). Any command
    /// other than USER and PASS therefore forgets a pending USER name.
    pub fn check(&mut self, cmd: &Command) -> Result<(), Response> {
        if !matches!(cmd, Command::User { .. } | Command::Pass { .. }) {
            self.user = None;
        }
        self.table
            .check(cmd, self.state, self.tls_active, self.plaintext_allowed)?;
        if matches!(cmd, Command::Pass { .. }) && self.user.is_none() {
            return Err(Response::err("No username given"));
        }
        Ok(())
    }

    /// Records the name of an accepted USER command (replacing an earlier one).
    pub fn set_user(&mut self, name: String) {
        self.user = Some(name);
    }

    /// Takes the name recorded by USER, for the PASS that follows.
    pub fn take_user(&mut self) -> Option<String> {
        self.user.take()
    }

    /// Forgets a pending USER name.
    pub fn clear_user(&mut self) {
        self.user = None;
    }

    /// The TLS handshake after STLS succeeded. The daemon must also
    /// [`Receiver::reset`](crate::Receiver::reset) and drop unread input.
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.user = None;
    }

    /// Authentication succeeded and the maildrop is open: enter TRANSACTION.
    pub fn logged_in(&mut self) {
        self.state = State::Transaction;
        self.user = None;
    }

    /// QUIT was received. Returns the new state: UPDATE when it came in
    /// TRANSACTION (expunge with [`Maildrop::to_expunge`](crate::Maildrop::to_expunge),
    /// then close), otherwise the session just closes without touching the
    /// maildrop (RFC 1939 section 6).
    pub fn quit(&mut self) -> State {
        if self.state == State::Transaction {
            self.state = State::Update;
        }
        self.state
    }

    /// Records a failed command; see [`FailureCounter::record`].
    pub fn record_failure(&mut self) -> FailureVerdict {
        self.failures.record()
    }

    /// The failure counter.
    pub fn failures(&self) -> &FailureCounter {
        &self.failures
    }
}
