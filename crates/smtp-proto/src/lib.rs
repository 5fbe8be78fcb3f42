//! Sans-I/O SMTP (RFC 5321) and LMTP (RFC 2033) server-side protocol library,
//! shared by `smtpd` and `lmtp-delivery`. It is the only SMTP parser in postern.
//!
//! # Design
//!
//! Nothing here does I/O. The daemon reads bytes from its socket and hands them to
//! small state machines, which return parsed commands or message bytes; the daemon
//! decides what to answer and writes encoded [`Reply`]s. "Needs more data" is
//! normal (`None`), not an error.
//!
//! * [`CommandReceiver`] splits the stream into command lines (CRLF; a bare LF
//!   also ends a command line, like Postfix), bounded by [`MAX_COMMAND_LINE`], and
//!   parses them into [`Command`]s. Parse problems are [`Error`]s with
//!   [`Error::reply`]. Unknown verbs are `Ok(Command::Unknown(verb))`.
//! * [`Command::parse`] parses one line: verbs case-insensitive, RFC 5321/6531
//!   paths ([`Address`], with [`Address::needs_smtputf8`]), typed ESMTP
//!   parameters ([`MailParams`], [`RcptParams`]); unknown parameters are kept in
//!   `unknown` so the server can answer `555 5.5.4`
//!   ([`Reply::unsupported_parameter`]).
//! * [`COMMAND_TABLE`] / [`Command::spec`] give per-verb flags: allowed [`Stage`]s,
//!   allowed before TLS / before AUTH, ends a pipelining group
//!   ([`Command::ends_group`]).
//! * After `354`, [`DataReceiver`] takes the bytes (start with
//!   [`CommandReceiver::take_buffered`]), unstuffs dots, finds `CRLF.CRLF`, streams
//!   content out chunk by chunk, enforces the size limit and the
//!   [`BareNewlinePolicy`], and returns how many input bytes it consumed so that
//!   pipelined commands after the message are not lost.
//! * For `BDAT n`, [`BdatReceiver`] takes exactly `n` octets.
//! * After `STARTTLS`, call [`CommandReceiver::discard_buffered`] before the
//!   handshake: plaintext bytes pipelined behind STARTTLS must not be executed.
//!
//! * [`Session`] is the optional engine on top of all this, shared by smtpd and
//!   LMTP: sequencing (503), TLS/AUTH requirements, error limit, pipelining
//!   output, DATA/BDAT streaming, LMTP per-recipient replies. It yields
//!   [`Event`]s; the caller (async hooks) answers with [`Session::reply`].
//!
//! # Decisions and limits
//!
//! * Command lines: CRLF, or a bare LF (accepted like Postfix). Lines longer than
//!   [`MAX_COMMAND_LINE`] (2048, Postfix `line_length_limit`) are skipped to their
//!   end and reported as [`Error::LineTooLong`] (`500 5.5.2`). Control characters
//!   other than HT (including a bare CR) make the line a syntax error.
//! * Paths: `<>`, `<postmaster>` (RCPT only), quoted local parts, source routes
//!   (validated, then dropped), UTF-8 local parts and U-label domains (flagged in
//!   [`Address::needs_smtputf8`]), `[IPv4]` and `[IPv6:...]` literals. General
//!   address literals (`[tag:...]`) are refused. Bounds: [`MAX_LOCAL_PART`],
//!   [`MAX_DOMAIN`], [`MAX_LABEL`], [`MAX_PATH`], [`MAX_PARAMS`], [`MAX_ENVID`].
//!   Addresses are kept as sent (no case folding, no IDNA conversion).
//! * DATA: the end is only `CRLF.CRLF`, whatever the [`BareNewlinePolicy`]; a line
//!   after a bare LF is not a line start for unstuffing. No line-length limit in
//!   content (998+ octet lines are passed on as sent).
//! * The size limit is checked while streaming; excess bytes are consumed and
//!   dropped, and the end is reported as [`DataError::SizeExceeded`].
//!
//! # Example
//!
//! ```
//! use smtp_proto::{BareNewlinePolicy, Command, CommandReceiver, DataReceiver, Reply};
//!
//! let mut rx = CommandReceiver::new();
//! let mut replies = Vec::new();
//! rx.push(b"EHLO client.example\r\nMAIL FROM:<a@example.org> SIZE=10\r\nRCPT TO:<b@example.net>\r\nDATA\r\nHi\r\n..dot\r\n.\r\nQUIT\r\n");
//! let mut message = Vec::new();
//! while let Some(cmd) = rx.next_command() {
//!     let cmd = match cmd {
//!         Ok(c) => c,
//!         Err(e) => { e.reply().write_to(&mut replies); continue; }
//!     };
//!     match cmd {
//!         Command::Data => {
//!             Reply::start_data().write_to(&mut replies);
//!             let mut data = DataReceiver::new(1 << 20, BareNewlinePolicy::Reject);
//!             let input = rx.take_buffered();
//!             // A real server loops: read more from the socket while feed() is None.
//!             let (used, end) = data.feed(&input, &mut message).expect("complete in this example");
//!             assert!(end.result.is_ok());
//!             rx.push(&input[used..]); // pipelined commands after the message
//!             Reply::queued("4Xyz").write_to(&mut replies);
//!         }
//!         Command::Quit => Reply::bye().write_to(&mut replies),
//!         _ => Reply::ok().write_to(&mut replies),
//!     }
//! }
//! assert_eq!(message, b"Hi\r\n.dot\r\n");
//! assert!(replies.ends_with(b"221 2.0.0 Bye\r\n"));
//! ```

mod command;
mod data;
mod error;
mod receiver;
mod reply;
mod session;
mod table;

pub use command::{
    Address, Body, Command, MAX_DOMAIN, MAX_ENVID, MAX_LABEL, MAX_LOCAL_PART, MAX_PARAMS, MAX_PATH,
    MailParams, Notify, Orcpt, RcptParams, Ret, parse_domain, xtext_decode,
};
pub use data::{
    BareNewlinePolicy, BdatReceiver, DEFAULT_MESSAGE_SIZE_LIMIT, DataEnd, DataError, DataReceiver,
};
pub use error::Error;
pub use receiver::{CommandReceiver, MAX_COMMAND_LINE};
pub use reply::{Capability, EnhancedCode, Reply};
pub use session::{
    DEFAULT_HARD_ERROR_LIMIT, DEFAULT_MAX_RECIPIENTS, Event, Session, SessionConfig,
};
pub use table::{COMMAND_TABLE, CommandSpec, Protocol, Stage, lookup};
