//! # NAME
//!
//! `pop3-proto` — sans-I/O POP3 server-side protocol library for postern's
//! `pop3d`.
//!
//! # DESCRIPTION
//!
//! Everything a POP3 server needs that is pure logic, with no sockets, no
//! files and no async runtime, so each piece is testable on its own and
//! fuzzable:
//!
//! * [`Receiver`] — turns the client's byte stream, fed in chunks of any
//!   size, into [`Command`]s (RFC 1939, 2449, 2595, 5034), or SASL
//!   continuation lines ([`SaslResponse`]) in its second reading mode.
//!   Bounded: [`MAX_COMMAND_LINE`], [`MAX_SASL_LINE`]; numbers are checked
//!   (1-based message numbers, no overflow). Passwords, APOP digests and
//!   SASL data are [`Secret`]s whose `Debug` prints `***`.
//! * [`Response`] — `+OK` / `-ERR [CODE]` lines with the RFC 2449/3206
//!   [`RespCode`]s; [`encode_continuation`] for `+ base64`;
//!   [`encode_multiline`]; [`Capabilities`] for CAPA.
//! * [`BodyEncoder`] — streaming RETR/TOP encoder: CRLF line ends whatever
//!   the stored form, dot-stuffing, `.` CRLF terminator, TOP's header + n
//!   body lines. [`wire_size`] / [`WireSizeCounter`] give the matching size
//!   for STAT/LIST so RETR's octet count equals the LIST size.
//! * [`CommandTable`] / [`Session`] — which command is valid in which
//!   [`State`], before or after TLS, with the exact `-ERR` reply otherwise;
//!   the [`FailureCounter`] ([`MAX_FAILED_COMMANDS`]).
//! * [`Maildrop`] — message numbers, DELE marks, STAT/LIST/UIDL answers,
//!   RSET, and the expunge list for the UPDATE state.
//!
//! # HOW A SERVER DRIVES IT
//!
//! Per connection the daemon keeps a [`Receiver`], a [`Session`] and (after
//! login) a [`Maildrop`]. It reads from the socket into a buffer, hands the
//! unread part to the receiver as a `&mut &[u8]` cursor, and answers each
//! command in order (pipelining, RFC 2449 `PIPELINING`, comes for free).
//! Replies are appended to an output buffer that the daemon writes out
//! when the input is exhausted.
//!
//! ```
//! use pop3_proto::*;
//!
//! // What the daemon would have read from the socket (two pipelined reads).
//! let reads: [&[u8]; 2] = [b"USER alice\r\nPASS sec", b"ret word\r\nSTAT\r\nDELE 1\r\nQUIT\r\n"];
//!
//! let mut rx = Receiver::new();
//! let mut session = Session::new(true, false); // port 995: TLS from the start
//! let mut drop_ = None::<Maildrop>;
//! let mut out = Vec::new();
//! let mut closed = false;
//!
//! for chunk in reads {
//!     let mut input: &[u8] = chunk;
//!     while !input.is_empty() && !closed {
//!         let cmd = match rx.feed(&mut input) {
//!             Ok(Some(cmd)) => cmd,
//!             Ok(None) => break, // need more bytes: read the socket again
//!             Err(e) => {
//!                 e.reply().encode(&mut out);
//!                 closed = session.record_failure() == FailureVerdict::Close;
//!                 continue;
//!             }
//!         };
//!         if let Err(reply) = session.check(&cmd) {
//!             reply.encode(&mut out);
//!             closed = session.record_failure() == FailureVerdict::Close;
//!             continue;
//!         }
//!         match cmd {
//!             Command::User { name } => {
//!                 session.set_user(name);
//!                 Response::ok("").encode(&mut out);
//!             }
//!             Command::Pass { password } => {
//!                 let user = session.take_user().unwrap_or_default();
//!                 // Ask authd; here a fixed password stands in for it.
//!                 if password.expose() == b"secret word" && user == "alice" {
//!                     // Open the Maildir and list it; sizes from wire_size().
//!                     drop_ = Some(Maildrop::new([(wire_size(b"a\n"), "uid1")]).unwrap());
//!                     session.logged_in();
//!                     Response::ok("Logged in").encode(&mut out);
//!                 } else {
//!                     Response::err_code(RespCode::Auth, "Authentication failed").encode(&mut out);
//!                     closed = session.record_failure() == FailureVerdict::Close;
//!                 }
//!             }
//!             Command::Stat => drop_.as_ref().unwrap().answer_stat(&mut out),
//!             Command::Dele { msg } => match drop_.as_mut().unwrap().dele(msg) {
//!                 Ok(()) => Response::ok("Marked to be deleted").encode(&mut out),
//!                 Err(e) => e.reply().encode(&mut out),
//!             },
//!             Command::Quit => {
//!                 if session.quit() == State::Update {
//!                     let gone = drop_.as_ref().unwrap().to_expunge();
//!                     assert_eq!(gone, [1]); // unlink these files, then:
//!                 }
//!                 Response::ok("Bye").encode(&mut out);
//!                 closed = true;
//!             }
//!             _ => Response::err("not in this example").encode(&mut out),
//!         }
//!     }
//! }
//! assert_eq!(
//!     out,
//!     b"+OK\r\n+OK Logged in\r\n+OK 1 3\r\n+OK Marked to be deleted\r\n+OK Bye\r\n"
//! );
//! ```
//!
//! RETR and TOP: check the message with [`Maildrop::get`], send
//! `+OK <size> octets`, then stream the file through a [`BodyEncoder`]
//! (stop reading early when [`BodyEncoder::is_done`] for TOP) and call
//! [`BodyEncoder::finish`].
//!
//! SASL (`AUTH mech [ir]`): send challenges with [`encode_continuation`] and
//! read answers with [`Receiver::feed_sasl`] until the exchange ends; `*`
//! gives [`SaslResponse::Cancel`], answer `-ERR`.
//!
//! STLS: after `+OK` and before the handshake, drop every unread byte (the
//! rest of the input slice and [`Receiver::reset`]), then
//! [`Session::tls_started`].
//!
//! # SECURITY
//!
//! No I/O. Every input bound is a named constant: [`MAX_COMMAND_LINE`],
//! [`MAX_SASL_LINE`], [`MAX_NUMBER`], [`MAX_MECHANISM_NAME`],
//! [`MAX_UNKNOWN_VERB`], [`MAX_UID_LEN`], [`MAX_RESPONSE_LINE`],
//! [`MAX_FAILED_COMMANDS`]. Memory held per connection by the receiver is at
//! most one line; by the body encoder, a few flags. No input can make the
//! library panic (fuzz targets in `fuzz/`). Credentials never appear in
//! `Debug` output. Reply text is sanitised so it cannot inject lines.
//!
//! # STANDARDS
//!
//! RFC 1939 (POP3), RFC 2449 (CAPA, response codes, PIPELINING), RFC 2595
//! (STLS), RFC 3206 (SYS and AUTH response codes), RFC 5034 (AUTH / SASL),
//! RFC 4422 (SASL mechanism names).
//!
//! # TESTING
//!
//! `tests/` holds table-driven tests: every command and error fed whole,
//! split at every byte and byte-at-a-time with identical results; pipelined
//! streams; line bounds to the octet; the SASL mode; the RETR/TOP encoder
//! against a simple model on pseudo-random messages with random chunking;
//! the command table against the RFC state lists; maildrop answers.
//! `fuzz/` is a cargo-fuzz package (not in the workspace) with the targets
//! `command_parser` and `retr_encoder`; their checks are in
//! `fuzz/src/lib.rs` and also run on stable with `cargo test` there.
//!
//! # SEE ALSO
//!
//! `crates/pop3d` (the daemon), `crates/smtp-proto` (the same design for SMTP).

mod body;
mod command;
mod error;
mod maildrop;
mod receiver;
mod response;
mod secret;
mod session;

pub use body::{BodyEncoder, Extract, WireSizeCounter, wire_size};
pub use command::{
    APOP_DIGEST_LEN, Command, MAX_COMMAND_LINE, MAX_MECHANISM_NAME, MAX_NUMBER, MAX_SASL_LINE,
    MAX_UNKNOWN_VERB, SaslResponse, parse_command, parse_sasl_line,
};
pub use error::ParseError;
pub use maildrop::{MAX_UID_LEN, Maildrop, MaildropError, MessageInfo};
pub use receiver::Receiver;
pub use response::{
    CLEARTEXT_MECHANISMS, Capabilities, Expire, MAX_RESPONSE_LINE, RespCode, Response, Status,
    encode_continuation, encode_multiline, is_cleartext_mechanism,
};
pub use secret::Secret;
pub use session::{
    COMMANDS, CommandSpec, CommandTable, FLAG_AUTHORIZATION, FLAG_CLEARTEXT_CREDENTIALS,
    FLAG_NOT_WITH_TLS, FLAG_TRANSACTION, FailureCounter, FailureVerdict, MAX_FAILED_COMMANDS,
    PLAINTEXT_DISALLOWED, Session, State, Verb,
};
