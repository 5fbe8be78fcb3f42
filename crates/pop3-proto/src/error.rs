//! Errors produced while parsing client input.

use crate::response::Response;

/// Why a client line was rejected.
///
/// Parse errors are per line: after one is returned the
/// [`Receiver`](crate::Receiver) is positioned at the start of the next line
/// and can be fed again. Every variant maps to a `-ERR` reply with
/// [`ParseError::reply`]; the `Display` text never echoes client bytes, so it
/// is safe to send and to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line (including its CRLF) was longer than `limit` octets. The whole
    /// line has been consumed and discarded.
    #[error("line too long (limit {limit} octets)")]
    LineTooLong {
        /// The bound that was exceeded, in octets including CRLF.
        limit: usize,
    },
    /// An empty line, or a line starting with a space.
    #[error("empty command")]
    EmptyCommand,
    /// A NUL octet somewhere in the line.
    #[error("NUL octet in command line")]
    NulByte,
    /// An argument (other than the PASS password) is not valid UTF-8.
    #[error("argument is not valid UTF-8")]
    InvalidUtf8,
    /// An argument (other than the PASS password) contains a control
    /// character (C0, DEL or C1), such as a bare CR or a tab.
    #[error("control character in argument")]
    ControlCharacter,
    /// A required argument is absent.
    #[error("{command}: missing argument")]
    MissingArgument {
        /// The command keyword, upper case.
        command: &'static str,
    },
    /// More arguments than the command takes.
    #[error("{command}: too many arguments")]
    TooManyArguments {
        /// The command keyword, upper case.
        command: &'static str,
    },
    /// A numeric argument contains something other than ASCII digits.
    #[error("{command}: invalid number")]
    InvalidNumber {
        /// The command keyword, upper case.
        command: &'static str,
    },
    /// A message number of 0 (message numbers start at 1).
    #[error("{command}: message numbers start at 1")]
    ZeroMessageNumber {
        /// The command keyword, upper case.
        command: &'static str,
    },
    /// A number larger than [`MAX_NUMBER`](crate::MAX_NUMBER).
    #[error("{command}: number too large")]
    NumberTooLarge {
        /// The command keyword, upper case.
        command: &'static str,
    },
    /// The APOP digest is not 32 hexadecimal digits.
    #[error("APOP: digest must be 32 hexadecimal digits")]
    InvalidDigest,
    /// The SASL mechanism name does not follow RFC 4422 section 3.1.
    #[error("AUTH: invalid mechanism name")]
    InvalidMechanism,
    /// A SASL initial response or continuation line is not valid base64.
    #[error("invalid base64")]
    InvalidBase64,
}

impl ParseError {
    /// The `-ERR` reply to send for this error.
    pub fn reply(&self) -> Response {
        Response::err(self.to_string())
    }
}
