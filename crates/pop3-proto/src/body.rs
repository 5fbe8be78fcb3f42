//! The multi-line encoder for RETR and TOP, and the wire-size computation.
//!
//! Messages on disk may use LF or CRLF line ends (Maildir written by
//! postern's lmtp-delivery uses LF, others may use CRLF, some files mix
//! both). On the wire every line ends in CRLF, lines starting with `.` get
//! an extra `.` (RFC 1939 section 3), and the response ends with `.` CRLF.
//!
//! Line-end rules, shared by [`BodyEncoder`] and [`wire_size`] so that the
//! octet count in `+OK n octets` always equals the LIST size:
//!
//! * LF and CRLF both end a line and become CRLF (2 octets);
//! * a CR not followed by LF is ordinary content (1 octet);
//! * a CR as the very last octet of the message ends the last line (CRLF);
//! * a last line without line end gets a CRLF.
//!
//! The wire size is the size of the message in this CRLF form, before
//! byte-stuffing and without the terminating `.` CRLF (RFC 1939 section 11:
//! the size "may not be the same as the size as stored").

/// What part of the message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extract {
    /// The whole message (RETR).
    Whole,
    /// The header, the blank line after it, and the first `body_lines` lines
    /// of the body (TOP msg n). A message without blank line is all header
    /// and is sent whole.
    Top {
        /// Body lines to send (may be 0).
        body_lines: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// RETR: send everything.
    All,
    /// TOP, still in the header.
    Header { body_lines: u32 },
    /// TOP, in the body with this many lines still to send (> 0).
    Body { remaining: u32 },
    /// TOP: everything wanted has been sent; further input is ignored.
    Done,
}

/// Streaming RETR / TOP encoder.
///
/// Feed the stored message in chunks of any size with [`BodyEncoder::encode`]
/// and finish with [`BodyEncoder::finish`]; each call appends wire bytes to
/// `out`. Output is produced as soon as possible: at most one CR is held back
/// between calls (to see whether an LF follows), so memory use does not
/// depend on line length. The caller sends the `+OK` line first.
///
/// ```
/// use pop3_proto::{BodyEncoder, Extract};
/// let mut enc = BodyEncoder::new(Extract::Whole);
/// let mut out = Vec::new();
/// enc.encode(b"Subject: x\n\n.hidden\nbo", &mut out);
/// enc.encode(b"dy\r", &mut out);
/// enc.encode(b"\n", &mut out);
/// enc.finish(&mut out);
/// assert_eq!(out, b"Subject: x\r\n\r\n..hidden\r\nbody\r\n.\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct BodyEncoder {
    phase: Phase,
    at_line_start: bool,
    pending_cr: bool,
    finished: bool,
}

impl BodyEncoder {
    /// A new encoder for one message.
    pub fn new(extract: Extract) -> Self {
        BodyEncoder {
            phase: match extract {
                Extract::Whole => Phase::All,
                Extract::Top { body_lines } => Phase::Header { body_lines },
            },
            at_line_start: true,
            pending_cr: false,
            finished: false,
        }
    }

    /// True once TOP has sent every line it wants: the caller may stop
    /// reading the file and call [`BodyEncoder::finish`]. Never true for RETR.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Encodes the next chunk of the stored message, appending to `out`.
    /// Input after TOP is done, or after [`BodyEncoder::finish`], is ignored.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() && !self.finished && self.phase != Phase::Done {
            if self.pending_cr {
                self.pending_cr = false;
                if input[i] == b'\n' {
                    i += 1;
                    self.end_line(out);
                    continue;
                }
                // A bare CR is content; the byte at `i` is processed below.
                out.push(b'\r');
                self.at_line_start = false;
            }
            match input[i] {
                b'\r' => {
                    self.pending_cr = true;
                    i += 1;
                }
                b'\n' => {
                    i += 1;
                    self.end_line(out);
                }
                _ => {
                    let run = &input[i..];
                    let len = run
                        .iter()
                        .position(|&b| b == b'\r' || b == b'\n')
                        .unwrap_or(run.len());
                    if self.at_line_start && run[0] == b'.' {
                        out.push(b'.');
                    }
                    out.extend_from_slice(&run[..len]);
                    self.at_line_start = false;
                    i += len;
                }
            }
        }
    }

    /// Ends the message: completes a last line without line end and appends
    /// the terminating `.` CRLF. Calling it again does nothing.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        if self.phase != Phase::Done && (self.pending_cr || !self.at_line_start) {
            self.pending_cr = false;
            self.end_line(out);
        }
        out.extend_from_slice(b".\r\n");
        self.finished = true;
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        let was_empty = self.at_line_start;
        self.at_line_start = true;
        self.phase = match self.phase {
            Phase::Header { body_lines } if was_empty => match body_lines {
                0 => Phase::Done,
                n => Phase::Body { remaining: n },
            },
            Phase::Body { remaining } => match remaining.saturating_sub(1) {
                0 => Phase::Done,
                n => Phase::Body { remaining: n },
            },
            p => p,
        };
    }
}

/// The size POP3 reports for a message (STAT, LIST, `+OK n octets` of
/// RETR): its size with CRLF line ends, before byte-stuffing. See the module
/// documentation for the exact rules.
pub fn wire_size(message: &[u8]) -> u64 {
    let mut c = WireSizeCounter::new();
    c.update(message);
    c.finish()
}

/// Streaming form of [`wire_size`], for messages read in chunks.
#[derive(Debug, Clone, Default)]
pub struct WireSizeCounter {
    size: u64,
    pending_cr: bool,
    at_line_start: bool,
}

impl WireSizeCounter {
    /// A counter for one message.
    pub fn new() -> Self {
        WireSizeCounter {
            size: 0,
            pending_cr: false,
            at_line_start: true,
        }
    }

    /// Counts the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    self.size += 2;
                    self.at_line_start = true;
                    continue;
                }
                self.size += 1;
                self.at_line_start = false;
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => {
                    self.size += 2;
                    self.at_line_start = true;
                }
                _ => {
                    self.size += 1;
                    self.at_line_start = false;
                }
            }
        }
    }

    /// The wire size of everything counted.
    pub fn finish(&self) -> u64 {
        if self.pending_cr || !self.at_line_start {
            self.size + 2
        } else {
            self.size
        }
    }
}
