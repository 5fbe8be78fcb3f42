//! DATA and BDAT message receivers.

use crate::reply::Reply;

/// Default message size limit in octets (Postfix `message_size_limit` default:
/// 10240000).
pub const DEFAULT_MESSAGE_SIZE_LIMIT: u64 = 10_240_000;

/// What to do with a bare LF or bare CR in message content (Postfix 3.9
/// `smtpd_forbid_bare_newline`). In every mode the end of data is only the exact
/// sequence `CRLF . CRLF`: `LF.LF`, `LF.CRLF`, `CRLF.LF` and `CR.CR` never end the
/// message (SMTP smuggling, CVE-2023-51764 class).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BareNewlinePolicy {
    /// Receive to the end, then refuse the message with `550 5.5.2`
    /// ([`DataError::BareNewline`]). Bytes are still passed on as sent.
    #[default]
    Reject,
    /// A bare LF is stored as CRLF (like Postfix `normalize`). A bare CR is
    /// passed on unchanged. A line after a bare LF is not a line start for dot
    /// unstuffing: its leading dot is kept as content.
    Normalize,
    /// Pass bare LF and bare CR on unchanged.
    Allow,
}

/// Why an otherwise complete message must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// More than the limit was sent; the excess was discarded. Reply `552 5.3.4`.
    #[error("message size exceeds limit of {limit} octets")]
    SizeExceeded {
        /// The limit in force.
        limit: u64,
    },
    /// Bare LF or bare CR seen under [`BareNewlinePolicy::Reject`]. Reply `550 5.5.2`.
    #[error("bare <LF> or <CR> received")]
    BareNewline,
}

impl DataError {
    /// The reply for this error.
    pub fn reply(&self) -> Reply {
        match self {
            DataError::SizeExceeded { .. } => Reply::message_too_big(),
            DataError::BareNewline => Reply::bare_newline(),
        }
    }
}

/// Result of a finished DATA or BDAT transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataEnd {
    /// Octets of message content passed to the output (after unstuffing/normalising).
    pub size: u64,
    /// `Ok` if the message may be accepted.
    pub result: Result<(), DataError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// After CRLF (or at the start of the message).
    LineStart,
    /// Line start, saw `.` (not yet emitted).
    Dot,
    /// Line start, saw `.` CR.
    DotCr,
    /// Inside a line.
    Mid,
    /// Inside a line, saw CR (not yet emitted).
    Cr,
}

/// Receives the message after `354`: finds `CRLF.CRLF`, removes dot-stuffing, is
/// otherwise byte-exact (8-bit bytes and lines of any length pass through), and
/// enforces a size limit while streaming.
///
/// Memory: the receiver itself buffers at most one pending CR or dot; output per
/// [`feed`](Self::feed) call is at most twice the input (bare LF normalisation).
#[derive(Debug, Clone)]
pub struct DataReceiver {
    st: St,
    limit: u64,
    size: u64,
    exceeded: bool,
    bare: bool,
    policy: BareNewlinePolicy,
}

impl DataReceiver {
    /// New receiver with a size limit in octets (`u64::MAX` for none).
    pub fn new(limit: u64, policy: BareNewlinePolicy) -> Self {
        DataReceiver {
            st: St::LineStart,
            limit,
            size: 0,
            exceeded: false,
            bare: false,
            policy,
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        if self.exceeded {
            return;
        }
        let n = bytes.len() as u64;
        if self.size.saturating_add(n) > self.limit {
            self.exceeded = true;
            return;
        }
        self.size += n;
        out.extend_from_slice(bytes);
    }

    fn bare_lf(&mut self, out: &mut Vec<u8>) {
        match self.policy {
            BareNewlinePolicy::Reject => {
                self.bare = true;
                self.emit(out, b"\n");
            }
            BareNewlinePolicy::Normalize => self.emit(out, b"\r\n"),
            BareNewlinePolicy::Allow => self.emit(out, b"\n"),
        }
        self.st = St::Mid;
    }

    fn bare_cr(&mut self, out: &mut Vec<u8>) {
        if self.policy == BareNewlinePolicy::Reject {
            self.bare = true;
        }
        self.emit(out, b"\r");
    }

    /// Process a byte in the `Mid` state.
    fn mid(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'\r' => self.st = St::Cr,
            b'\n' => self.bare_lf(out),
            _ => {
                self.emit(out, &[b]);
                self.st = St::Mid;
            }
        }
    }

    /// Feed bytes; message content is appended to `out`. Returns `None` if all of
    /// `input` was consumed and more is needed, or `Some((consumed, end))` when the
    /// terminating `CRLF.CRLF` was found: `input[consumed..]` are pipelined bytes
    /// that belong to the command receiver.
    ///
    /// The final CRLF before the dot is part of the message (RFC 5321 4.1.4).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<(usize, DataEnd)> {
        for (i, &b) in input.iter().enumerate() {
            match self.st {
                St::LineStart => match b {
                    b'.' => self.st = St::Dot,
                    _ => self.mid(b, out),
                },
                St::Dot => {
                    if b == b'\r' {
                        self.st = St::DotCr;
                    } else {
                        // Unstuff: drop the leading dot.
                        self.mid(b, out);
                    }
                }
                St::DotCr => {
                    if b == b'\n' {
                        self.st = St::LineStart;
                        return Some((i + 1, self.end()));
                    }
                    // "." CR x: the dot is unstuffed, the CR is bare.
                    self.st = St::Cr;
                    self.cr_then(b, out);
                }
                St::Mid => self.mid(b, out),
                St::Cr => self.cr_then(b, out),
            }
        }
        None
    }

    /// State `Cr`, next byte `b`.
    fn cr_then(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'\n' => {
                self.emit(out, b"\r\n");
                self.st = St::LineStart;
            }
            b'\r' => {
                self.bare_cr(out);
                self.st = St::Cr;
            }
            _ => {
                self.bare_cr(out);
                self.st = St::Mid;
                self.mid(b, out);
            }
        }
    }

    fn end(&self) -> DataEnd {
        let result = if self.exceeded {
            Err(DataError::SizeExceeded { limit: self.limit })
        } else if self.bare {
            Err(DataError::BareNewline)
        } else {
            Ok(())
        };
        DataEnd {
            size: self.size,
            result,
        }
    }

    /// Octets of content accepted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// True once the size limit was exceeded (the server may keep reading to the end).
    pub fn size_exceeded(&self) -> bool {
        self.exceeded
    }
}

/// Receives one `BDAT n` chunk (RFC 3030): exactly `n` octets, no unstuffing, no
/// line-ending checks. The size limit counts the whole message across chunks.
#[derive(Debug, Clone)]
pub struct BdatReceiver {
    remaining: u64,
    last: bool,
    limit: u64,
    total: u64,
    exceeded: bool,
}

impl BdatReceiver {
    /// Receive a chunk of `size` octets. `received_before` is the message size from
    /// earlier chunks of this transaction; `limit` the message size limit.
    pub fn new(size: u64, last: bool, received_before: u64, limit: u64) -> Self {
        // The chunk size is known up front: decide now, so that output never
        // depends on how the input is split.
        let exceeded = received_before.saturating_add(size) > limit;
        BdatReceiver {
            remaining: size,
            last,
            limit,
            total: received_before,
            exceeded,
        }
    }

    /// Feed bytes; chunk content goes to `out`, unless the chunk would exceed the
    /// limit (then nothing of it is passed on, it is only consumed). Returns
    /// `Some((consumed, end))` when the chunk is complete; `input[consumed..]` is the
    /// next command. `end.size` is the total message size so far.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<(usize, DataEnd)> {
        let take = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(input.len());
        let chunk = &input[..take];
        self.remaining -= take as u64;
        let n = take as u64;
        if !self.exceeded {
            out.extend_from_slice(chunk);
            self.total += n;
        }
        if self.remaining == 0 {
            let result = if self.exceeded {
                Err(DataError::SizeExceeded { limit: self.limit })
            } else {
                Ok(())
            };
            Some((
                take,
                DataEnd {
                    size: self.total,
                    result,
                },
            ))
        } else {
            None
        }
    }

    /// Whether this is the `LAST` chunk.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// Octets still expected.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}
