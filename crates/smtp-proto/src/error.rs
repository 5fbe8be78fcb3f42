//! Parse errors. Every variant maps to an SMTP reply via [`Error::reply`].

use crate::reply::{EnhancedCode, Reply};

/// An error found while receiving or parsing a command line.
///
/// None of these end the session by themselves; the server sends
/// [`Error::reply`] and counts the error against its hard error limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The command line exceeded [`crate::MAX_COMMAND_LINE`]. The receiver
    /// has already skipped the rest of the line. Reply `500 5.5.2`.
    #[error("line too long")]
    LineTooLong,
    /// The command line is not valid UTF-8. Reply `500 5.5.2`.
    #[error("command line is not valid UTF-8")]
    InvalidUtf8,
    /// Syntax error in the arguments of a known command. Reply `501 5.5.4`.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// Malformed reverse-path in `MAIL FROM`. Reply `501 5.1.7`.
    #[error("bad sender address syntax: {0}")]
    BadSender(&'static str),
    /// Malformed forward-path in `RCPT TO`. Reply `501 5.1.3`.
    #[error("bad recipient address syntax: {0}")]
    BadRecipient(&'static str),
    /// A known MAIL/RCPT parameter with a malformed or duplicate value.
    /// Reply `501 5.5.4`.
    #[error("invalid parameter {0}")]
    InvalidParameter(String),
}

impl Error {
    /// The reply a server sends for this error.
    pub fn reply(&self) -> Reply {
        let (code, enh, text) = match self {
            Error::LineTooLong => (
                500,
                EnhancedCode(5, 5, 2),
                "Error: line too long".to_string(),
            ),
            Error::InvalidUtf8 => (
                500,
                EnhancedCode(5, 5, 2),
                "Error: invalid UTF-8 in command".to_string(),
            ),
            Error::Syntax(what) => (501, EnhancedCode(5, 5, 4), format!("Syntax error: {what}")),
            Error::BadSender(what) => (
                501,
                EnhancedCode(5, 1, 7),
                format!("Bad sender address syntax: {what}"),
            ),
            Error::BadRecipient(what) => (
                501,
                EnhancedCode(5, 1, 3),
                format!("Bad recipient address syntax: {what}"),
            ),
            Error::InvalidParameter(p) => {
                (501, EnhancedCode(5, 5, 4), format!("Invalid parameter {p}"))
            }
        };
        Reply::new(code, Some(enh), text)
    }
}
