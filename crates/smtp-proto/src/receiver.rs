//! Command line receiver: splits a byte stream into command lines.

use crate::command::Command;
use crate::error::Error;

/// Longest command line accepted, excluding CRLF: RFC 5321 4.5.3.1.4 gives 512
/// octets including CRLF; SMTPUTF8 addresses, AUTH initial responses and
/// extension parameters (RFC 1869 4.1.2 allows +4000 for MAIL/RCPT) need more,
/// so we use Postfix's `line_length_limit` default, 2048.
pub const MAX_COMMAND_LINE: usize = 2048;

/// Splits incoming bytes into command lines and parses them.
///
/// Line ending: CRLF. A bare LF is also accepted as the end of a *command* line
/// (like Postfix; the CR before it, if any, is stripped). This is harmless at
/// command level; the SMTP-smuggling danger is only in DATA, see
/// [`crate::DataReceiver`]. A CR not followed by LF stays in the line and makes
/// it a syntax error.
///
/// The buffer holds at most one incomplete line plus whatever the caller pushed
/// in one go: a line longer than [`MAX_COMMAND_LINE`] is skipped up to its LF
/// without being stored, then reported once as [`Error::LineTooLong`].
#[derive(Debug, Default)]
pub struct CommandReceiver {
    buf: Vec<u8>,
    /// Skipping the rest of an overlong line.
    discarding: bool,
    /// Start offset of unscanned data in `buf` (bytes before it contain no LF).
    scanned: usize,
    /// An overlong line ended; report [`Error::LineTooLong`] next.
    pending_too_long: bool,
}

impl CommandReceiver {
    /// A new, empty receiver.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append bytes received from the client.
    pub fn push(&mut self, data: &[u8]) {
        if self.discarding {
            // Drop everything up to the end of the overlong line right away.
            if let Some(i) = data.iter().position(|&b| b == b'\n') {
                self.discarding = false;
                self.buf.clear();
                self.scanned = 0;
                self.pending_too_long = true;
                self.buf.extend_from_slice(&data[i + 1..]);
            }
            return;
        }
        self.buf.extend_from_slice(data);
    }

    /// Next complete command, `None` if more data is needed.
    ///
    /// Call repeatedly after each [`push`](Self::push) until it returns `None`.
    pub fn next_command(&mut self) -> Option<Result<Command, Error>> {
        self.next_line()
            .map(|r| r.and_then(|line| Command::parse(&line)))
    }

    /// Next complete line without its line ending, unparsed (used for SASL
    /// responses after `334`). Same length bound and line-ending rules as
    /// [`next_command`](Self::next_command).
    pub fn next_line(&mut self) -> Option<Result<Vec<u8>, Error>> {
        if self.pending_too_long {
            self.pending_too_long = false;
            return Some(Err(Error::LineTooLong));
        }
        if self.discarding {
            return None;
        }
        match self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(rel) => {
                let end = self.scanned + rel;
                let mut line_end = end;
                if line_end > 0 && self.buf[line_end - 1] == b'\r' {
                    line_end -= 1;
                }
                let result = if line_end > MAX_COMMAND_LINE {
                    Err(Error::LineTooLong)
                } else {
                    Ok(self.buf[..line_end].to_vec())
                };
                self.buf.drain(..=end);
                self.scanned = 0;
                Some(result)
            }
            None => {
                // +1: the CR of a CRLF may already be here.
                if self.buf.len() > MAX_COMMAND_LINE + 1 {
                    self.buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                } else {
                    self.scanned = self.buf.len();
                }
                None
            }
        }
    }

    /// Take the bytes buffered after the last returned command (for example the
    /// start of the message after `DATA`/`BDAT`, to feed to a [`crate::DataReceiver`]).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.scanned = 0;
        std::mem::take(&mut self.buf)
    }

    /// Discard buffered bytes, returning how many were dropped. A server must call
    /// this after `STARTTLS` (before the handshake) so that plaintext commands
    /// pipelined behind it are never executed inside TLS (CVE-2011-0411 class,
    /// RFC 3207 sec. 6). Also drops a pending overlong-line state.
    pub fn discard_buffered(&mut self) -> usize {
        let n = self.buf.len();
        self.buf.clear();
        self.scanned = 0;
        self.discarding = false;
        self.pending_too_long = false;
        n
    }

    /// Number of bytes currently buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
