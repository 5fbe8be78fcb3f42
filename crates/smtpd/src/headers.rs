//! Missing `Date:` and `Message-ID:` on submission (what Postfix's cleanup
//! does for `local_header_rewrite_clients`, and RFC 6409 8.2/8.3 allow an
//! MSA to do).
//!
//! [`HeaderFixer`] sits between the DATA/BDAT receiver and the queue stream:
//! it holds message bytes back only until the end of the header section is
//! seen (or [`MAX_HEADER_SCAN`] octets, whichever comes first), then emits
//! them with the missing fields inserted at the end of the header section,
//! and passes the rest through untouched. Sans-I/O: bytes in, bytes out.

/// How much of the message is held back while looking for the end of the
/// header section. A header section longer than this is passed through
/// unchanged (nothing is added; logged by the caller).
pub const MAX_HEADER_SCAN: usize = 256 * 1024;

/// What to add when missing.
#[derive(Debug, Clone)]
pub struct Additions {
    /// Full `Date:` value (RFC 5322 date-time).
    pub date: String,
    /// Full `Message-ID:` value including the angle brackets.
    pub message_id: String,
}

/// Streaming header fixer.
#[derive(Debug)]
pub struct HeaderFixer {
    add: Additions,
    held: Vec<u8>,
    /// Start of the first line of `held` not yet inspected.
    scanned: usize,
    done: bool,
    /// Fields added, for logging.
    pub added: Vec<&'static str>,
    /// The header section was too long to inspect.
    pub gave_up: bool,
}

impl HeaderFixer {
    /// A fixer that will add what `add` holds, where missing.
    pub fn new(add: Additions) -> Self {
        HeaderFixer {
            add,
            held: Vec::new(),
            scanned: 0,
            done: false,
            added: Vec::new(),
            gave_up: false,
        }
    }

    /// Feed message bytes; returns what may be passed on now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.done {
            return chunk.to_vec();
        }
        self.held.extend_from_slice(chunk);
        match header_end(&self.held, self.scanned) {
            Ok(end) => return self.release(end),
            Err(next) => self.scanned = next,
        }
        if self.held.len() > MAX_HEADER_SCAN {
            self.done = true;
            self.gave_up = true;
            return std::mem::take(&mut self.held);
        }
        Vec::new()
    }

    /// End of message: whatever is still held, fixed.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.done {
            return Vec::new();
        }
        // The whole message is a header section (no body), or it ends inside
        // a header line: the section ends after the last complete line.
        let end = match self.held.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => 0,
        };
        let end = header_end(&self.held, self.scanned).unwrap_or(end);
        self.release(end)
    }

    /// Emit `held`, inserting the missing fields at offset `end` (the end of
    /// the header section: before the empty line or the first non-header line).
    fn release(&mut self, end: usize) -> Vec<u8> {
        self.done = true;
        let held = std::mem::take(&mut self.held);
        let (head, rest) = held.split_at(end);
        let mut out = Vec::with_capacity(held.len() + 128);
        out.extend_from_slice(head);
        if !has_field(head, b"date") {
            out.extend_from_slice(format!("Date: {}\r\n", self.add.date).as_bytes());
            self.added.push("Date");
        }
        if !has_field(head, b"message-id") {
            out.extend_from_slice(format!("Message-ID: {}\r\n", self.add.message_id).as_bytes());
            self.added.push("Message-ID");
        }
        out.extend_from_slice(rest);
        out
    }
}

/// Offset where the header section ends: the start of the empty line, or of
/// the first line that is neither a field (`name:`) nor a continuation.
/// Scanning starts at line start `from`; `Err(next)` while the end is not
/// decidable from `buf` yet, with the line start to resume from.
fn header_end(buf: &[u8], from: usize) -> Result<usize, usize> {
    let mut pos = from;
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        let line = &buf[pos..pos + nl + 1];
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if content.is_empty() {
            return Ok(pos);
        }
        let continuation = pos > 0 && matches!(content[0], b' ' | b'\t');
        if !continuation && !is_field_line(content) {
            return Ok(pos);
        }
        pos += nl + 1;
    }
    Err(pos)
}

/// `name:` with a name of printable ASCII other than `:` (RFC 5322 ftext),
/// optionally followed by white space before the colon (obsolete syntax,
/// RFC 5322 4.5.8).
fn is_field_line(line: &[u8]) -> bool {
    let Some(i) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = &line[..i];
    let trimmed = name
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(&name[..0], |e| &name[..=e]);
    !trimmed.is_empty() && trimmed.iter().all(|&b| (33..=126).contains(&b))
}

/// Whether the header section `head` has a field named `name` (lower case).
fn has_field(head: &[u8], name: &[u8]) -> bool {
    head.split(|&b| b == b'\n').any(|line| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()..]
                .iter()
                .find(|&&b| b != b' ' && b != b'\t')
                .is_some_and(|&b| b == b':')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add() -> Additions {
        Additions {
            date: "Thu, 3 Dec 2026 08:00:00 +0000".into(),
            message_id: "<id@mx.test>".into(),
        }
    }

    /// Run with the input split at every byte and byte by byte; all equal.
    fn run(input: &[u8]) -> (Vec<u8>, Vec<&'static str>) {
        let whole = {
            let mut f = HeaderFixer::new(add());
            let mut out = f.feed(input);
            out.extend(f.finish());
            (out, f.added.clone())
        };
        for i in 0..=input.len() {
            let mut f = HeaderFixer::new(add());
            let mut out = f.feed(&input[..i]);
            out.extend(f.feed(&input[i..]));
            out.extend(f.finish());
            assert_eq!(out, whole.0, "split at {i}");
        }
        let mut f = HeaderFixer::new(add());
        let mut out = Vec::new();
        for b in input {
            out.extend(f.feed(std::slice::from_ref(b)));
        }
        out.extend(f.finish());
        assert_eq!(out, whole.0, "byte at a time");
        whole
    }

    #[test]
    fn table() {
        let d = "Date: Thu, 3 Dec 2026 08:00:00 +0000\r\n";
        let m = "Message-ID: <id@mx.test>\r\n";
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            (
                "Subject: x\r\n\r\nbody\r\n",
                format!("Subject: x\r\n{d}{m}\r\nbody\r\n"),
                vec!["Date", "Message-ID"],
            ),
            (
                "Subject: x\r\nDate: yesterday\r\nMessage-Id: <a@b>\r\n\r\nbody\r\n",
                "Subject: x\r\nDate: yesterday\r\nMessage-Id: <a@b>\r\n\r\nbody\r\n".into(),
                vec![],
            ),
            (
                "DATE : folded\r\n\tmore\r\n\r\nMessage-ID: in the body\r\n",
                format!("DATE : folded\r\n\tmore\r\n{m}\r\nMessage-ID: in the body\r\n"),
                vec!["Message-ID"],
            ),
            // No header section at all: fields go first.
            (
                "just a body line\r\n",
                format!("{d}{m}just a body line\r\n"),
                vec!["Date", "Message-ID"],
            ),
            // Headers only, no empty line.
            (
                "Subject: x\r\n",
                format!("Subject: x\r\n{d}{m}"),
                vec!["Date", "Message-ID"],
            ),
            // Date-Received is not Date.
            (
                "Date-Received: x\r\nMessage-ID: <a@b>\r\n\r\n",
                format!("Date-Received: x\r\nMessage-ID: <a@b>\r\n{d}\r\n"),
                vec!["Date"],
            ),
            ("", format!("{d}{m}"), vec!["Date", "Message-ID"]),
        ];
        for (input, want, added) in cases {
            let (out, got) = run(input.as_bytes());
            assert_eq!(String::from_utf8_lossy(&out), want, "input {input:?}");
            assert_eq!(got, added, "input {input:?}");
        }
    }

    #[test]
    fn long_header_section_passes_through() {
        let mut input = Vec::new();
        while input.len() <= 2 * MAX_HEADER_SCAN {
            input.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        input.extend_from_slice(b"\r\nbody\r\n");
        // Fed the way the DATA receiver hands it over: in chunks.
        let mut f = HeaderFixer::new(add());
        let mut out = Vec::new();
        for c in input.chunks(4096) {
            out.extend(f.feed(c));
        }
        out.extend(f.finish());
        assert!(out == input, "passed through unchanged");
        assert!(f.gave_up);
        assert!(f.added.is_empty());
    }
}
