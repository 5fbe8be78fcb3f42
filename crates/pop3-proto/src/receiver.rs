//! Splitting the client byte stream into lines, with a bound.

use crate::command::{
    Command, MAX_COMMAND_LINE, MAX_SASL_LINE, SaslResponse, parse_command, parse_sasl_line,
};
use crate::error::ParseError;

/// Incremental, sans-I/O reader of client lines.
///
/// Feed it whatever the socket produced, as a `&mut &[u8]` cursor: each call
/// consumes bytes from the front of the slice and returns
///
/// * `Ok(Some(cmd))` — one complete command; the slice is left at the first
///   byte after its line end (pipelined commands stay in the slice; call
///   again),
/// * `Ok(None)` — the slice is exhausted and a line is incomplete: read more
///   from the socket,
/// * `Err(e)` — the line was bad; it has been consumed entirely, reply
///   `e.reply()` and call again (errors are per line, the stream stays in sync).
///
/// Lines end with CRLF; a bare LF is accepted as well. The receiver keeps at
/// most one partial line internally, bounded by [`MAX_COMMAND_LINE`] (or
/// [`MAX_SASL_LINE`] while reading SASL continuation lines with
/// [`Receiver::feed_sasl`]). A longer line is skipped to its end without being
/// stored and reported once, as [`ParseError::LineTooLong`], when its line end
/// arrives.
///
/// After `STLS` the daemon must throw away anything still buffered — both the
/// rest of the slice and [`Receiver::has_partial_line`] data, via
/// [`Receiver::reset`] — so that plaintext injected before the handshake is
/// never executed inside TLS (the CVE-2011-0411 class of bug).
#[derive(Debug, Default, Clone)]
pub struct Receiver {
    line: Vec<u8>,
    discarding: bool,
}

impl Receiver {
    /// A receiver at the start of a line.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the next command (see the type documentation).
    pub fn feed(&mut self, input: &mut &[u8]) -> Result<Option<Command>, ParseError> {
        match self.next_line(input, MAX_COMMAND_LINE) {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(())) => {
                let r = parse_command(strip_cr(&self.line));
                self.line.clear();
                r.map(Some)
            }
        }
    }

    /// Reads the next SASL continuation line (the client's base64 answer to a
    /// `+ ` challenge, or `*` to cancel), with the larger [`MAX_SASL_LINE`]
    /// bound. Use this instead of [`Receiver::feed`] between sending a
    /// continuation and the end of the exchange. On `Err` the daemon should
    /// abort the exchange with `-ERR`.
    pub fn feed_sasl(&mut self, input: &mut &[u8]) -> Result<Option<SaslResponse>, ParseError> {
        match self.next_line(input, MAX_SASL_LINE) {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(())) => {
                let r = parse_sasl_line(strip_cr(&self.line));
                self.line.clear();
                r.map(Some)
            }
        }
    }

    /// True when part of a line has been consumed but its end not yet seen
    /// (including an overlong line being skipped).
    pub fn has_partial_line(&self) -> bool {
        !self.line.is_empty() || self.discarding
    }

    /// Octets of a partial line held internally; never more than the line
    /// bound of the current mode minus one.
    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    /// Forgets any partial line. Call after STLS succeeds.
    pub fn reset(&mut self) {
        self.line.clear();
        self.discarding = false;
    }

    /// Moves bytes from `input` into `self.line` up to and including the next
    /// LF. `Some(Ok(()))`: `self.line` holds a complete line ending in LF.
    fn next_line(&mut self, input: &mut &[u8], max: usize) -> Option<Result<(), ParseError>> {
        let data: &[u8] = input;
        match data.iter().position(|&b| b == b'\n') {
            Some(i) => {
                *input = &data[i + 1..];
                if self.discarding || self.line.len() + i + 1 > max {
                    self.reset();
                    return Some(Err(ParseError::LineTooLong { limit: max }));
                }
                self.line.extend_from_slice(&data[..=i]);
                Some(Ok(()))
            }
            None => {
                *input = &data[data.len()..];
                if !self.discarding {
                    // Without its LF a line may hold at most max - 1 octets.
                    if self.line.len() + data.len() >= max {
                        self.line.clear();
                        self.discarding = true;
                    } else {
                        self.line.extend_from_slice(data);
                    }
                }
                None
            }
        }
    }
}

/// Removes the LF and an optional CR before it.
fn strip_cr(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
