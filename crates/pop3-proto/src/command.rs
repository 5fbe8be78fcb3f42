//! POP3 commands and the line parsers.
//!
//! [`parse_command`] turns one complete line (without its line end) into a
//! [`Command`]; [`parse_sasl_line`] does the same for a SASL continuation line.
//! The [`Receiver`](crate::Receiver) splits a byte stream into lines and calls
//! them; they are public so that tests and fuzzers can use them directly.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::error::ParseError;
use crate::secret::Secret;
use crate::session::COMMANDS;

/// Largest command line, in octets including the terminating CRLF.
///
/// RFC 2449 section 4: "The maximum length of a command is increased from 47
/// characters ... to 255 octets, including the terminating CRLF." RFC 5034
/// section 4 keeps AUTH (with its initial response) under the same limit: a
/// client whose initial response would not fit must omit it and send it as a
/// continuation line instead.
pub const MAX_COMMAND_LINE: usize = 255;

/// Largest SASL continuation line (the client's base64 answer to a `+`
/// challenge), in octets including the terminating CRLF.
///
/// RFC 5034 does not apply the 255-octet command limit to these lines.
/// 16 KiB of base64 decodes to 12 KiB, which covers GSSAPI/Kerberos tokens
/// with large PACs; PLAIN, LOGIN and SCRAM answers are a few hundred octets.
/// Dovecot's auth client uses the same order of magnitude.
pub const MAX_SASL_LINE: usize = 16 * 1024;

/// Largest message number or TOP line count accepted.
///
/// Message numbers are 1-based (RFC 1939 section 5); a maildrop with more
/// than four thousand million messages is not something POP3 can serve, so
/// anything above `u32::MAX` is rejected as [`ParseError::NumberTooLarge`]
/// rather than wrapped.
pub const MAX_NUMBER: u32 = u32::MAX;

/// Longest SASL mechanism name (RFC 4422 section 3.1: 1 to 20 characters
/// from `A-Z`, `0-9`, `-`, `_`).
pub const MAX_MECHANISM_NAME: usize = 20;

/// Length of an APOP digest: an MD5 digest in hexadecimal (RFC 1939 section 7).
pub const APOP_DIGEST_LEN: usize = 32;

/// Longest keyword kept in [`Command::Unknown`]; longer ones are truncated
/// (they are only logged and echoed nowhere).
pub const MAX_UNKNOWN_VERB: usize = 16;

/// A parsed client command.
///
/// Keywords are case-insensitive; arguments keep their case. Message numbers
/// are 1-based and never 0. Credentials are wrapped in [`Secret`], so the
/// derived `Debug` is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name` (RFC 1939 section 7).
    User {
        /// The mailbox name, case preserved.
        name: String,
    },
    /// `PASS password` (RFC 1939 section 7). The password is everything after
    /// `PASS ` up to the line end, spaces included, and need not be UTF-8.
    Pass {
        /// The password octets.
        password: Secret<Vec<u8>>,
    },
    /// `STAT`.
    Stat,
    /// `LIST [msg]`.
    List {
        /// The message number, or `None` for the whole scan listing.
        msg: Option<u32>,
    },
    /// `RETR msg`.
    Retr {
        /// The message number (1-based).
        msg: u32,
    },
    /// `DELE msg`.
    Dele {
        /// The message number (1-based).
        msg: u32,
    },
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `QUIT`.
    Quit,
    /// `TOP msg n`.
    Top {
        /// The message number (1-based).
        msg: u32,
        /// Number of body lines to send after the headers (may be 0).
        lines: u32,
    },
    /// `UIDL [msg]`.
    Uidl {
        /// The message number, or `None` for the whole listing.
        msg: Option<u32>,
    },
    /// `APOP name digest` (RFC 1939 section 7).
    Apop {
        /// The mailbox name.
        name: String,
        /// The MD5 digest, normalised to lower-case hex.
        digest: Secret<String>,
    },
    /// `CAPA` (RFC 2449).
    Capa,
    /// `STLS` (RFC 2595).
    Stls,
    /// `AUTH [mechanism [initial-response]]` (RFC 5034). Bare `AUTH` (no
    /// mechanism) asks for the mechanism list.
    Auth {
        /// The mechanism name, upper-cased; `None` for bare `AUTH`.
        mechanism: Option<String>,
        /// The decoded initial response. `Some(empty)` when the client sent
        /// `=`; `None` when it sent no initial response.
        initial_response: Option<Secret<Vec<u8>>>,
    },
    /// Any other keyword, upper-cased and truncated to
    /// [`MAX_UNKNOWN_VERB`] characters (non-ASCII replaced by `?`).
    Unknown(String),
}

/// A client line received while a SASL exchange is in progress
/// (RFC 5034 section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslResponse {
    /// The client sent `*`: cancel the exchange; the server replies `-ERR`.
    Cancel,
    /// The decoded response (an empty line, or `=`, gives empty data).
    Data(Secret<Vec<u8>>),
}

/// Parses one command line. `line` is the line without CRLF / LF.
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    if line.contains(&0) {
        return Err(ParseError::NulByte);
    }
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    if verb.is_empty() {
        return Err(ParseError::EmptyCommand);
    }
    // Every keyword we know is three or four letters (RFC 1939, 2449, 2595,
    // 5034); anything longer is unknown without further inspection.
    if verb.len() > 4 {
        return Ok(Command::Unknown(unknown_verb(verb)));
    }
    let mut buf = [0u8; 4];
    for (d, s) in buf.iter_mut().zip(verb) {
        *d = s.to_ascii_uppercase();
    }
    let kw = &buf[..verb.len()];
    // The command table is the one list of keywords.
    if !COMMANDS.iter().any(|c| c.name.as_bytes() == kw) {
        return Ok(Command::Unknown(unknown_verb(verb)));
    }
    // PASS takes the raw rest of the line: spaces and non-UTF-8 octets are
    // part of the password (RFC 1939 section 7, PASS discussion).
    if kw == b"PASS" {
        return match rest {
            Some(pw) if !pw.is_empty() => Ok(Command::Pass {
                password: Secret::new(pw.to_vec()),
            }),
            _ => Err(ParseError::MissingArgument { command: "PASS" }),
        };
    }
    let rest = match rest {
        Some(r) => std::str::from_utf8(r).map_err(|_| ParseError::InvalidUtf8)?,
        None => "",
    };
    // Names and numbers never contain control characters; refusing them
    // here keeps CR, ESC and friends out of logs and directory lookups.
    if rest.chars().any(char::is_control) {
        return Err(ParseError::ControlCharacter);
    }
    // Arguments are separated by single spaces (RFC 1939 section 3); runs of
    // spaces and a trailing space, which some clients send, are tolerated.
    let mut args = rest.split(' ').filter(|a| !a.is_empty());
    let cmd = match kw {
        b"USER" => {
            let name = need(&mut args, "USER")?.to_owned();
            done(&mut args, "USER")?;
            Command::User { name }
        }
        b"STAT" => no_args(args, "STAT", Command::Stat)?,
        b"NOOP" => no_args(args, "NOOP", Command::Noop)?,
        b"RSET" => no_args(args, "RSET", Command::Rset)?,
        b"QUIT" => no_args(args, "QUIT", Command::Quit)?,
        b"CAPA" => no_args(args, "CAPA", Command::Capa)?,
        b"STLS" => no_args(args, "STLS", Command::Stls)?,
        b"LIST" => {
            let msg = args.next().map(|a| msg_number(a, "LIST")).transpose()?;
            done(&mut args, "LIST")?;
            Command::List { msg }
        }
        b"UIDL" => {
            let msg = args.next().map(|a| msg_number(a, "UIDL")).transpose()?;
            done(&mut args, "UIDL")?;
            Command::Uidl { msg }
        }
        b"RETR" => {
            let msg = msg_number(need(&mut args, "RETR")?, "RETR")?;
            done(&mut args, "RETR")?;
            Command::Retr { msg }
        }
        b"DELE" => {
            let msg = msg_number(need(&mut args, "DELE")?, "DELE")?;
            done(&mut args, "DELE")?;
            Command::Dele { msg }
        }
        b"TOP" => {
            let msg = msg_number(need(&mut args, "TOP")?, "TOP")?;
            let lines = number(need(&mut args, "TOP")?, "TOP")?;
            done(&mut args, "TOP")?;
            Command::Top { msg, lines }
        }
        b"APOP" => {
            let name = need(&mut args, "APOP")?.to_owned();
            let digest = need(&mut args, "APOP")?;
            done(&mut args, "APOP")?;
            if digest.len() != APOP_DIGEST_LEN || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseError::InvalidDigest);
            }
            Command::Apop {
                name,
                digest: Secret::new(digest.to_ascii_lowercase()),
            }
        }
        b"AUTH" => {
            let mechanism = args.next().map(mechanism_name).transpose()?;
            let initial_response = args.next().map(initial_response).transpose()?;
            done(&mut args, "AUTH")?;
            Command::Auth {
                mechanism,
                initial_response,
            }
        }
        _ => Command::Unknown(unknown_verb(verb)),
    };
    Ok(cmd)
}

/// Parses one SASL continuation line (RFC 5034 section 4). `line` is the line
/// without CRLF / LF.
pub fn parse_sasl_line(line: &[u8]) -> Result<SaslResponse, ParseError> {
    if line == b"*" {
        return Ok(SaslResponse::Cancel);
    }
    if line.is_empty() || line == b"=" {
        return Ok(SaslResponse::Data(Secret::new(Vec::new())));
    }
    BASE64
        .decode(line)
        .map(|d| SaslResponse::Data(Secret::new(d)))
        .map_err(|_| ParseError::InvalidBase64)
}

fn need<'a>(
    args: &mut impl Iterator<Item = &'a str>,
    command: &'static str,
) -> Result<&'a str, ParseError> {
    args.next().ok_or(ParseError::MissingArgument { command })
}

fn done<'a>(
    args: &mut impl Iterator<Item = &'a str>,
    command: &'static str,
) -> Result<(), ParseError> {
    match args.next() {
        Some(_) => Err(ParseError::TooManyArguments { command }),
        None => Ok(()),
    }
}

fn no_args<'a>(
    mut args: impl Iterator<Item = &'a str>,
    command: &'static str,
    cmd: Command,
) -> Result<Command, ParseError> {
    done(&mut args, command)?;
    Ok(cmd)
}

/// Parses a non-negative decimal number: ASCII digits only (no sign, no
/// spaces), at most [`MAX_NUMBER`].
fn number(s: &str, command: &'static str) -> Result<u32, ParseError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::InvalidNumber { command });
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        n = n * 10 + u64::from(b - b'0');
        if n > u64::from(MAX_NUMBER) {
            return Err(ParseError::NumberTooLarge { command });
        }
    }
    u32::try_from(n).map_err(|_| ParseError::NumberTooLarge { command })
}

fn msg_number(s: &str, command: &'static str) -> Result<u32, ParseError> {
    match number(s, command)? {
        0 => Err(ParseError::ZeroMessageNumber { command }),
        n => Ok(n),
    }
}

fn mechanism_name(s: &str) -> Result<String, ParseError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_MECHANISM_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_ascii_uppercase())
    } else {
        Err(ParseError::InvalidMechanism)
    }
}

fn initial_response(s: &str) -> Result<Secret<Vec<u8>>, ParseError> {
    if s == "=" {
        return Ok(Secret::new(Vec::new()));
    }
    BASE64
        .decode(s)
        .map(Secret::new)
        .map_err(|_| ParseError::InvalidBase64)
}

fn unknown_verb(verb: &[u8]) -> String {
    verb.iter()
        .take(MAX_UNKNOWN_VERB)
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b.to_ascii_uppercase())
            } else {
                '?'
            }
        })
        .collect()
}
