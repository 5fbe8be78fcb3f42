//! Sans-I/O SMTP/LMTP server session engine, shared by smtpd and lmtp-delivery.
//!
//! The engine owns the [`CommandReceiver`] and the DATA/BDAT receivers and does
//! sequencing (503 5.5.1), TLS/AUTH requirements (530), syntax errors, the hard
//! error limit (421), QUIT, pipelining output buffering and STARTTLS buffer
//! discarding. Everything that needs a decision is handed to the caller as an
//! [`Event`]; for events where [`Event::needs_reply`] is true the caller computes a
//! [`Reply`] (typically in an async hook that calls gRPC) and passes it to
//! [`Session::reply`] before polling again.
//!
//! ```
//! use smtp_proto::{Event, Reply, Session, SessionConfig};
//! let mut s = Session::new(SessionConfig::default());
//! s.feed(b"EHLO c\r\nMAIL FROM:<a@b>\r\nQUIT\r\n");
//! while let Some(ev) = s.poll() {
//!     let reply = match ev {
//!         Event::Hello(_) => Some(Reply::ehlo("mx.example", "", &[])),
//!         Event::Mail { .. } => Some(Reply::sender_ok()),
//!         e if e.needs_reply() => Some(Reply::ok()),
//!         _ => None,
//!     };
//!     if let Some(r) = reply { s.reply(r); }
//! }
//! assert!(s.is_closed());
//! assert_eq!(s.take_output(), b"250 mx.example\r\n250 2.1.0 Ok\r\n221 2.0.0 Bye\r\n");
//! ```

use crate::command::{Address, Command, MailParams, RcptParams};
use crate::data::{
    BareNewlinePolicy, BdatReceiver, DEFAULT_MESSAGE_SIZE_LIMIT, DataEnd, DataError, DataReceiver,
};
use crate::error::Error;
use crate::receiver::CommandReceiver;
use crate::reply::{EnhancedCode, Reply};
use crate::table::{Protocol, Stage};

/// Default hard error limit (Postfix `smtpd_hard_error_limit`): after this many
/// error replies the session is closed with 421.
pub const DEFAULT_HARD_ERROR_LIMIT: u32 = 20;
/// Default recipient limit per transaction (Postfix `smtpd_recipient_limit`).
pub const DEFAULT_MAX_RECIPIENTS: usize = 1000;
/// Default junk command limit (Postfix `smtpd_junk_command_limit`): NOOP, VRFY,
/// EXPN, HELP and RSET beyond this many in one session each count as an error,
/// so a client looping on them reaches the hard error limit.
pub const DEFAULT_JUNK_COMMAND_LIMIT: u32 = 100;

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// LMTP mode: LHLO instead of HELO/EHLO, one reply per recipient after DATA.
    pub lmtp: bool,
    /// Error replies before `421` and close. Default [`DEFAULT_HARD_ERROR_LIMIT`].
    pub hard_error_limit: u32,
    /// Recipients per transaction; more get `452 4.5.3`. Default [`DEFAULT_MAX_RECIPIENTS`].
    pub max_recipients: usize,
    /// NOOP/VRFY/EXPN/HELP/RSET allowed before each one counts as an error.
    /// Default [`DEFAULT_JUNK_COMMAND_LIMIT`].
    pub junk_command_limit: u32,
    /// Message size limit in octets. Default [`DEFAULT_MESSAGE_SIZE_LIMIT`].
    pub message_size_limit: u64,
    /// Bare LF/CR handling in DATA. Default [`BareNewlinePolicy::Reject`].
    pub bare_newline: BareNewlinePolicy,
    /// Only commands allowed before TLS are accepted until STARTTLS succeeded.
    pub tls_required: bool,
    /// Mail commands need a successful AUTH first (submission).
    pub auth_required: bool,
    /// Host name used in engine-generated 421 replies.
    pub hostname: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            lmtp: false,
            hard_error_limit: DEFAULT_HARD_ERROR_LIMIT,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            junk_command_limit: DEFAULT_JUNK_COMMAND_LIMIT,
            message_size_limit: DEFAULT_MESSAGE_SIZE_LIMIT,
            bare_newline: BareNewlinePolicy::Reject,
            tls_required: false,
            auth_required: false,
            hostname: "localhost".into(),
        }
    }
}

/// Something the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// HELO, EHLO or LHLO. A positive reply starts a fresh session state.
    Hello(Command),
    /// STARTTLS. Reply `220` ([`Reply::starttls_ready`]) to accept: the engine then
    /// discards pipelined plaintext input; the caller flushes output, does the TLS
    /// handshake and calls [`Session::tls_started`].
    StartTls,
    /// AUTH. Reply `334` to continue (the next client line becomes
    /// [`Event::AuthResponse`]), `235` on success, anything else on failure.
    Auth {
        /// Upper-case mechanism.
        mechanism: String,
        /// Initial response as sent.
        initial_response: Option<String>,
    },
    /// A SASL response line after a `334` (`*` means the client cancels).
    AuthResponse(String),
    /// MAIL FROM. A positive reply starts the transaction.
    Mail {
        /// `None` for `<>`.
        from: Option<Address>,
        /// Parameters (answer 555 for `params.unknown`).
        params: MailParams,
    },
    /// RCPT TO. A positive reply adds the recipient.
    Rcpt {
        /// Recipient.
        to: Address,
        /// Parameters.
        params: RcptParams,
    },
    /// DATA (`bdat: false`, accept with `354`) or the first BDAT chunk of a
    /// transaction (`bdat: true`, accept with any 2xx reply, which is not sent).
    /// Any other reply refuses; a refused BDAT chunk is skipped.
    DataStart {
        /// BDAT rather than DATA.
        bdat: bool,
    },
    /// Message content, in order (dot-unstuffed for DATA). No reply.
    Data(Vec<u8>),
    /// End of a complete, acceptable message. SMTP: one reply. LMTP: one reply per
    /// accepted recipient, in RCPT order ([`Session::replies_expected`]).
    DataEnd(DataEnd),
    /// The message ended but must be refused; the engine has already sent the
    /// reply (per recipient in LMTP). The caller discards what it stored. No reply.
    DataAborted(DataError),
    /// RSET, NOOP, HELP, VRFY, EXPN: reply as you like (RSET also resets the
    /// transaction in the engine).
    Other(Command),
}

impl Event {
    /// Whether [`Session::reply`] must be called before the next poll.
    pub fn needs_reply(&self) -> bool {
        !matches!(self, Event::Data(_) | Event::DataAborted(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Hello,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    DataStart,
    BdatStart,
    DataEnd,
    Rset,
    Other,
}

#[derive(Debug)]
enum Mode {
    Command,
    AuthLine,
    Data(DataReceiver),
    Bdat(BdatReceiver),
    /// Skip a refused or out-of-sequence BDAT chunk.
    BdatSkip(BdatReceiver),
}

/// The session state machine. See the module docs.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    rx: CommandReceiver,
    mode: Mode,
    stage: Stage,
    tls: bool,
    authenticated: bool,
    recipients: usize,
    bdat_total: u64,
    /// A BDAT chunk of this transaction was accepted (DATA is then out of sequence).
    bdat_started: bool,
    /// BDAT size/last of a chunk waiting for its DataStart reply.
    bdat_next: Option<(u64, bool)>,
    pending: Option<(Pending, bool)>,
    replies_expected: usize,
    queued_end: Option<Event>,
    errors: u32,
    junk: u32,
    out: Vec<u8>,
    flush: bool,
    closed: bool,
}

impl Session {
    /// A new session. The caller sends the `220` greeting itself.
    pub fn new(cfg: SessionConfig) -> Self {
        Session {
            cfg,
            rx: CommandReceiver::new(),
            mode: Mode::Command,
            stage: Stage::Connected,
            tls: false,
            authenticated: false,
            recipients: 0,
            bdat_total: 0,
            bdat_started: false,
            bdat_next: None,
            pending: None,
            replies_expected: 0,
            queued_end: None,
            errors: 0,
            junk: 0,
            out: Vec::new(),
            flush: false,
            closed: false,
        }
    }

    /// Bytes received from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !self.closed {
            self.rx.push(bytes);
        }
    }

    /// Reply bytes to send now (may be empty). Call after every [`poll`](Self::poll)
    /// that returned `None` and whenever [`wants_flush`](Self::wants_flush) is true.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.flush = false;
        std::mem::take(&mut self.out)
    }

    /// True when a pipelining group ended (RFC 2920): write [`take_output`](Self::take_output) now.
    pub fn wants_flush(&self) -> bool {
        self.flush
    }

    /// The session is over (QUIT, too many errors, or a `421` reply from the
    /// caller); flush output and close.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True while message content (DATA or a BDAT chunk) is being received:
    /// a server uses its data timeout rather than its command timeout.
    pub fn in_message(&self) -> bool {
        matches!(self.mode, Mode::Data(_) | Mode::Bdat(_) | Mode::BdatSkip(_))
    }

    /// Current stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Replies still expected for the pending event (LMTP DataEnd: per recipient).
    pub fn replies_expected(&self) -> usize {
        if self.pending.is_some() {
            self.replies_expected
        } else {
            0
        }
    }

    /// Call after a successful TLS handshake: the session starts over (RFC 3207 4.2).
    pub fn tls_started(&mut self) {
        self.rx.discard_buffered();
        self.tls = true;
        self.stage = Stage::Connected;
        self.authenticated = false;
        self.reset_transaction();
    }

    fn reset_transaction(&mut self) {
        if matches!(self.stage, Stage::Mail | Stage::Rcpt) {
            self.stage = Stage::Greeted;
        }
        self.recipients = 0;
        self.bdat_total = 0;
        self.bdat_started = false;
    }

    fn write(&mut self, r: &Reply, ends_group: bool) {
        r.write_to(&mut self.out);
        if ends_group {
            self.flush = true;
        }
        if r.code == 421 {
            // RFC 5321 3.8: 421 means the server is closing the channel.
            self.flush = true;
            self.closed = true;
            return;
        }
        if r.class() >= 4 {
            self.count_error();
        }
    }

    fn count_error(&mut self) {
        self.errors += 1;
        if self.errors >= self.cfg.hard_error_limit && !self.closed {
            Reply::too_many_errors(&self.cfg.hostname).write_to(&mut self.out);
            self.flush = true;
            self.closed = true;
        }
    }

    fn wait(&mut self, p: Pending, ends_group: bool, ev: Event) -> Option<Event> {
        self.pending = Some((p, ends_group));
        self.replies_expected = 1;
        Some(ev)
    }

    /// The caller's reply to the last event that needed one.
    pub fn reply(&mut self, r: Reply) {
        let Some((p, ends)) = self.pending else {
            return;
        };
        match p {
            Pending::Hello if r.is_positive() => {
                self.stage = Stage::Greeted;
                self.reset_transaction();
            }
            Pending::StartTls if r.code == 220 => {
                self.rx.discard_buffered();
            }
            Pending::Auth => match r.code {
                334 => self.mode = Mode::AuthLine,
                235 => self.authenticated = true,
                _ => {}
            },
            Pending::Mail if r.is_positive() => self.stage = Stage::Mail,
            Pending::Rcpt if r.is_positive() => {
                self.recipients += 1;
                self.stage = Stage::Rcpt;
            }
            Pending::DataStart if r.code == 354 => {
                self.mode = Mode::Data(DataReceiver::new(
                    self.cfg.message_size_limit,
                    self.cfg.bare_newline,
                ));
            }
            Pending::BdatStart => {
                let (size, last) = self.bdat_next.take().unwrap_or((0, true));
                if r.class() == 2 {
                    self.bdat_started = true;
                    self.mode = Mode::Bdat(BdatReceiver::new(
                        size,
                        last,
                        0,
                        self.cfg.message_size_limit,
                    ));
                    self.pending = None;
                    return; // accepted: nothing is sent
                }
                self.mode = Mode::BdatSkip(BdatReceiver::new(size, last, 0, 0));
                self.reset_transaction();
            }
            Pending::DataEnd => {
                self.replies_expected = self.replies_expected.saturating_sub(1);
                let done = self.replies_expected == 0;
                self.write(&r, done);
                if done {
                    self.pending = None;
                    self.reset_transaction();
                }
                return;
            }
            Pending::Rset => self.reset_transaction(),
            _ => {}
        }
        self.pending = None;
        self.write(&r, ends);
    }

    /// Next event, or `None` when more input is needed, a reply is outstanding, or
    /// the session is closed.
    pub fn poll(&mut self) -> Option<Event> {
        if self.closed || self.pending.is_some() {
            return None;
        }
        if let Some(ev) = self.queued_end.take() {
            return self.end_event(ev);
        }
        loop {
            if self.closed {
                return None;
            }
            match &mut self.mode {
                Mode::Command => {
                    let cmd = self.rx.next_command()?;
                    match cmd {
                        Ok(c) => {
                            if let Some(ev) = self.command(c) {
                                return Some(ev);
                            }
                        }
                        Err(e) => self.write(&e.reply(), true),
                    }
                }
                Mode::AuthLine => {
                    let line = self.rx.next_line()?;
                    self.mode = Mode::Command;
                    match line.map(String::from_utf8) {
                        Ok(Ok(l)) => return self.wait(Pending::Auth, true, Event::AuthResponse(l)),
                        Ok(Err(_)) => self.write(&Error::InvalidUtf8.reply(), true),
                        Err(e) => self.write(&e.reply(), true),
                    }
                }
                Mode::Data(rx) => {
                    let input = self.rx.take_buffered();
                    if input.is_empty() {
                        return None;
                    }
                    let mut chunk = Vec::new();
                    let done = rx.feed(&input, &mut chunk);
                    if let Some((used, end)) = done {
                        self.rx.push(&input[used..]);
                        self.mode = Mode::Command;
                        let ev = match end.result {
                            Ok(()) => Event::DataEnd(end),
                            Err(e) => Event::DataAborted(e),
                        };
                        if chunk.is_empty() {
                            return self.end_event(ev);
                        }
                        self.queued_end = Some(ev);
                    }
                    if !chunk.is_empty() {
                        return Some(Event::Data(chunk));
                    }
                }
                Mode::Bdat(_) | Mode::BdatSkip(_) => {
                    let skip = matches!(self.mode, Mode::BdatSkip(_));
                    let (Mode::Bdat(rx) | Mode::BdatSkip(rx)) = &mut self.mode else {
                        return None;
                    };
                    let last = rx.is_last();
                    let input = self.rx.take_buffered();
                    let mut chunk = Vec::new();
                    let done = rx.feed(&input, &mut chunk);
                    if let Some((used, end)) = done {
                        self.rx.push(&input[used..]);
                        self.mode = Mode::Command;
                        if !skip {
                            self.bdat_total = end.size;
                            let ev = match (end.result, last) {
                                (Err(e), _) => Some(Event::DataAborted(e)),
                                (Ok(()), true) => Some(Event::DataEnd(end)),
                                (Ok(()), false) => {
                                    let r = Reply::new(
                                        250,
                                        Some(EnhancedCode(2, 0, 0)),
                                        format!("Ok: {} octets received", end.size),
                                    );
                                    self.write(&r, false);
                                    None
                                }
                            };
                            if let Some(ev) = ev {
                                if chunk.is_empty() {
                                    return self.end_event(ev);
                                }
                                self.queued_end = Some(ev);
                            }
                        }
                    } else if input.is_empty() {
                        return None;
                    }
                    if !skip && !chunk.is_empty() {
                        return Some(Event::Data(chunk));
                    }
                }
            }
        }
    }

    /// Deliver DataEnd/DataAborted: set up the expected replies.
    fn end_event(&mut self, ev: Event) -> Option<Event> {
        let n = if self.cfg.lmtp {
            self.recipients.max(1)
        } else {
            1
        };
        match ev {
            Event::DataAborted(e) => {
                for _ in 0..n {
                    self.write(&e.reply(), true);
                }
                self.reset_transaction();
                Some(Event::DataAborted(e))
            }
            ev => {
                self.pending = Some((Pending::DataEnd, true));
                self.replies_expected = n;
                Some(ev)
            }
        }
    }

    /// Handle a parsed command: an event for the caller, or `None` after the engine
    /// answered itself.
    fn command(&mut self, c: Command) -> Option<Event> {
        let ends = c.ends_group();
        let Some(spec) = c.spec() else {
            self.write(&Reply::unrecognized(), true);
            return None;
        };
        let wrong_protocol = match spec.protocol {
            Protocol::Both => false,
            Protocol::Smtp => self.cfg.lmtp,
            Protocol::Lmtp => !self.cfg.lmtp,
        };
        if wrong_protocol {
            self.write(&Reply::unrecognized(), true);
            return None;
        }
        if let Command::Bdat { size, last } = c {
            // Whatever happens, the chunk's octets must be consumed.
            let refuse = if self.cfg.tls_required && !self.tls {
                Some(Reply::tls_required())
            } else if self.cfg.auth_required && !self.authenticated {
                Some(Reply::auth_required())
            } else if self.stage != Stage::Rcpt {
                Some(Reply::bad_sequence("need RCPT command"))
            } else {
                None
            };
            if let Some(r) = refuse {
                self.write(&r, last);
                self.mode = Mode::BdatSkip(BdatReceiver::new(size, last, 0, 0));
                return None;
            }
            if !self.bdat_started {
                self.bdat_next = Some((size, last));
                return self.wait(Pending::BdatStart, ends, Event::DataStart { bdat: true });
            }
            self.mode = Mode::Bdat(BdatReceiver::new(
                size,
                last,
                self.bdat_total,
                self.cfg.message_size_limit,
            ));
            return None;
        }
        if c == Command::Quit {
            self.write(&Reply::bye(), true);
            self.closed = true;
            return None;
        }
        if self.cfg.tls_required && !self.tls && !spec.before_tls {
            self.write(&Reply::tls_required(), ends);
            return None;
        }
        if self.cfg.auth_required && !self.authenticated && !spec.before_auth {
            self.write(&Reply::auth_required(), ends);
            return None;
        }
        if !spec.allowed_in(self.stage) {
            let why = match (&c, self.stage) {
                (_, Stage::Connected) if self.cfg.lmtp => "send LHLO first",
                (_, Stage::Connected) => "send HELO/EHLO first",
                (Command::Mail { .. }, _) => "nested MAIL command",
                (Command::Rcpt { .. }, _) => "need MAIL command",
                (Command::Data, _) => "need RCPT command",
                _ => "MAIL transaction in progress",
            };
            self.write(&Reply::bad_sequence(why), ends);
            return None;
        }
        match c {
            Command::Ehlo(_) | Command::Helo(_) | Command::Lhlo(_) => {
                self.wait(Pending::Hello, ends, Event::Hello(c))
            }
            Command::StartTls if self.tls => {
                self.write(
                    &Reply::new(
                        554,
                        Some(EnhancedCode(5, 5, 1)),
                        "Error: TLS already active",
                    ),
                    ends,
                );
                None
            }
            Command::StartTls => self.wait(Pending::StartTls, ends, Event::StartTls),
            Command::Auth { .. } if self.authenticated => {
                self.write(&Reply::bad_sequence("already authenticated"), ends);
                None
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => self.wait(
                Pending::Auth,
                ends,
                Event::Auth {
                    mechanism,
                    initial_response,
                },
            ),
            Command::Mail { from, params } => {
                self.wait(Pending::Mail, ends, Event::Mail { from, params })
            }
            Command::Rcpt { .. } if self.recipients >= self.cfg.max_recipients => {
                self.write(&Reply::too_many_recipients(), ends);
                None
            }
            Command::Rcpt { to, params } => {
                self.wait(Pending::Rcpt, ends, Event::Rcpt { to, params })
            }
            Command::Data if self.bdat_started => {
                self.write(&Reply::bad_sequence("BDAT transaction in progress"), ends);
                None
            }
            Command::Data => self.wait(Pending::DataStart, ends, Event::DataStart { bdat: false }),
            c => {
                if matches!(
                    c,
                    Command::Rset
                        | Command::Noop(_)
                        | Command::Vrfy(_)
                        | Command::Expn(_)
                        | Command::Help(_)
                ) {
                    self.junk += 1;
                    if self.junk > self.cfg.junk_command_limit {
                        self.count_error();
                        if self.closed {
                            return None;
                        }
                    }
                }
                if c == Command::Rset {
                    self.wait(Pending::Rset, ends, Event::Other(Command::Rset))
                } else {
                    self.wait(Pending::Other, ends, Event::Other(c))
                }
            }
        }
    }
}
