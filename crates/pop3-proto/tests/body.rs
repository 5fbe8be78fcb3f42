//! RETR/TOP encoder and wire size.

use pop3_proto::*;

fn encode_chunks(chunks: &[&[u8]], extract: Extract) -> Vec<u8> {
    let mut enc = BodyEncoder::new(extract);
    let mut out = Vec::new();
    for c in chunks {
        enc.encode(c, &mut out);
    }
    enc.finish(&mut out);
    // finish is idempotent, and input after finish is ignored.
    enc.finish(&mut out);
    enc.encode(b"late\n", &mut out);
    out
}

fn size_chunks(chunks: &[&[u8]]) -> u64 {
    let mut c = WireSizeCounter::new();
    for ch in chunks {
        c.update(ch);
    }
    c.finish()
}

/// Encodes whole, split at every byte, and byte-at-a-time; all must agree.
/// Also checks the streaming size counter the same way.
fn encode_all_ways(msg: &[u8], extract: Extract) -> Vec<u8> {
    let whole = encode_chunks(&[msg], extract);
    let size = wire_size(msg);
    for i in 0..=msg.len() {
        let (a, b) = msg.split_at(i);
        assert_eq!(
            encode_chunks(&[a, b], extract),
            whole,
            "split at {i}: {msg:?}"
        );
        assert_eq!(size_chunks(&[a, b]), size, "size split at {i}: {msg:?}");
        for j in i..=msg.len() {
            let (b1, b2) = b.split_at(j - i);
            assert_eq!(
                encode_chunks(&[a, b1, b2], extract),
                whole,
                "split at {i},{j}"
            );
        }
    }
    let bytes: Vec<&[u8]> = msg.chunks(1).collect();
    assert_eq!(encode_chunks(&bytes, extract), whole);
    assert_eq!(size_chunks(&bytes), size);
    whole
}

/// Undoes the wire form: strips the terminator and the stuffing dots.
fn unstuff(wire: &[u8]) -> Vec<u8> {
    let body = wire.strip_suffix(b".\r\n").expect("terminator");
    let mut out = Vec::new();
    let mut at_start = true;
    for &b in body {
        if at_start && b == b'.' {
            // The stuffing dot; the next one is content.
            at_start = false;
            continue;
        }
        out.push(b);
        at_start = b == b'\n';
    }
    out
}

/// Checks the wire form is well formed: every LF preceded by CR, every line
/// starting with '.' is stuffed, ends with ".\r\n" after a complete line.
fn assert_well_formed(wire: &[u8]) {
    assert!(wire.ends_with(b".\r\n"));
    let body = &wire[..wire.len() - 3];
    assert!(body.is_empty() || body.ends_with(b"\r\n"), "{wire:?}");
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && body[i - 1] == b'\r', "bare LF in {wire:?}");
        }
    }
    for line in body.split(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            assert_eq!(line.get(1), Some(&b'.'), "unstuffed line in {wire:?}");
        }
    }
}

const RETR: Extract = Extract::Whole;
fn top(n: u32) -> Extract {
    Extract::Top { body_lines: n }
}

#[test]
fn retr_cases() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"", b".\r\n"),
        (b"a\nb\n", b"a\r\nb\r\n.\r\n"),
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\r\nb\n", b"a\r\nb\r\n.\r\n"),
        (b"a\nb\r\nc\n", b"a\r\nb\r\nc\r\n.\r\n"),
        (b"a\nb", b"a\r\nb\r\n.\r\n"),
        (b"a\r\nb", b"a\r\nb\r\n.\r\n"),
        (b"\n", b"\r\n.\r\n"),
        (b"\n\n", b"\r\n\r\n.\r\n"),
        (b"\r\n\r\n", b"\r\n\r\n.\r\n"),
        // dot-stuffing
        (b".\n", b"..\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"..x\n", b"...x\r\n.\r\n"),
        (b".y", b"..y\r\n.\r\n"),
        (b"a.\n.b\n", b"a.\r\n..b\r\n.\r\n"),
        (b"x\n.\nz\n", b"x\r\n..\r\nz\r\n.\r\n"),
        (b"x\r\n.\r\nz\r\n", b"x\r\n..\r\nz\r\n.\r\n"),
        (b" .a\n", b" .a\r\n.\r\n"),
        // bare CR is content; a final CR ends the last line
        (b"a\rb\n", b"a\rb\r\n.\r\n"),
        (b"a\r", b"a\r\n.\r\n"),
        (b"\r", b"\r\n.\r\n"),
        (b"\r\r\n", b"\r\r\n.\r\n"),
        (b"\r.\n", b"\r.\r\n.\r\n"),
        (b"a\r\r", b"a\r\r\n.\r\n"),
        (b"a\n\r.b\n", b"a\r\n\r.b\r\n.\r\n"),
        // a message of dots and line ends
        (b"..\n.\r\n.", b"...\r\n..\r\n..\r\n.\r\n"),
    ];
    for &(msg, want) in cases {
        let got = encode_all_ways(msg, RETR);
        assert_eq!(got, want, "msg {:?}", String::from_utf8_lossy(msg));
        assert_well_formed(&got);
        assert_eq!(
            wire_size(msg),
            unstuff(&got).len() as u64,
            "size of {:?}",
            String::from_utf8_lossy(msg)
        );
    }
}

const MSG_LF: &[u8] = b"From: a@b\nSubject: hi\n\nline 1\n.line 2\nline 3\n";
const MSG_CRLF: &[u8] = b"From: a@b\r\nSubject: hi\r\n\r\nline 1\r\n.line 2\r\nline 3\r\n";
const MSG_MIXED: &[u8] = b"From: a@b\r\nSubject: hi\n\r\nline 1\n.line 2\r\nline 3\n";
const HEAD: &[u8] = b"From: a@b\r\nSubject: hi\r\n\r\n";

#[test]
fn top_cases() {
    for msg in [MSG_LF, MSG_CRLF, MSG_MIXED] {
        let t0 = encode_all_ways(msg, top(0));
        assert_eq!(t0, [HEAD, b".\r\n"].concat());
        let t1 = encode_all_ways(msg, top(1));
        assert_eq!(t1, [HEAD, b"line 1\r\n.\r\n"].concat());
        let t2 = encode_all_ways(msg, top(2));
        assert_eq!(t2, [HEAD, b"line 1\r\n..line 2\r\n.\r\n"].concat());
        let all = [HEAD, b"line 1\r\n..line 2\r\nline 3\r\n.\r\n"].concat();
        assert_eq!(encode_all_ways(msg, top(3)), all);
        // Beyond the end: the whole message, same as RETR.
        assert_eq!(encode_all_ways(msg, top(4)), all);
        assert_eq!(encode_all_ways(msg, top(u32::MAX)), all);
        assert_eq!(encode_all_ways(msg, RETR), all);
        for w in [&t0, &t1, &t2, &all] {
            assert_well_formed(w);
        }
    }
}

#[test]
fn top_edge_cases() {
    let cases: &[(&[u8], u32, &[u8])] = &[
        // no blank line: all header, sent whole
        (b"A: 1\nB: 2", 0, b"A: 1\r\nB: 2\r\n.\r\n"),
        (b"A: 1\nB: 2\n", 5, b"A: 1\r\nB: 2\r\n.\r\n"),
        // empty header
        (b"\nbody1\nbody2\n", 1, b"\r\nbody1\r\n.\r\n"),
        (b"\nbody1\nbody2\n", 0, b"\r\n.\r\n"),
        (b"\r\nbody1\r\n", 0, b"\r\n.\r\n"),
        // last body line without line end
        (b"H: x\n\nb1", 5, b"H: x\r\n\r\nb1\r\n.\r\n"),
        (b"H: x\n\nb1", 1, b"H: x\r\n\r\nb1\r\n.\r\n"),
        // blank body lines count as lines
        (b"H: x\n\n\n\nb3\n", 2, b"H: x\r\n\r\n\r\n\r\n.\r\n"),
        // a header line holding only a bare CR is not the separator
        (b"H: x\n\r\nb\n", 0, b"H: x\r\n\r\n.\r\n"),
        (b"H: x\n\rX\n\nb\n", 0, b"H: x\r\n\rX\r\n\r\n.\r\n"),
        // dot lines in header and body
        (b".H\n\n.b\n.c\n", 1, b"..H\r\n\r\n..b\r\n.\r\n"),
        (b"", 0, b".\r\n"),
        (b"", 3, b".\r\n"),
    ];
    for &(msg, n, want) in cases {
        let got = encode_all_ways(msg, top(n));
        assert_eq!(got, want, "TOP {n} of {:?}", String::from_utf8_lossy(msg));
        assert_well_formed(&got);
    }
}

#[test]
fn top_is_done_early() {
    let mut enc = BodyEncoder::new(top(1));
    let mut out = Vec::new();
    enc.encode(b"H: 1\n\nb1\r", &mut out);
    assert!(!enc.is_done());
    enc.encode(b"\nb2\n", &mut out);
    assert!(enc.is_done());
    enc.encode(b"more\n", &mut out);
    enc.finish(&mut out);
    assert_eq!(out, b"H: 1\r\n\r\nb1\r\n.\r\n");

    let mut enc = BodyEncoder::new(RETR);
    let mut out = Vec::new();
    enc.encode(MSG_LF, &mut out);
    assert!(!enc.is_done());
}

/// Small deterministic generator (xorshift), so the test needs no extra
/// dependency and always runs the same cases.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Straightforward non-streaming model of the rules in the `body` module.
fn model(msg: &[u8], extract: Extract) -> (Vec<u8>, u64) {
    // Normalise: CRLF -> LF, final CR -> LF; bare CRs stay.
    let mut norm = Vec::new();
    let mut i = 0;
    while i < msg.len() {
        if msg[i] == b'\r' && (i + 1 == msg.len() || msg[i + 1] == b'\n') {
            norm.push(b'\n');
            i += if i + 1 == msg.len() { 1 } else { 2 };
        } else {
            norm.push(msg[i]);
            i += 1;
        }
    }
    let mut lines: Vec<&[u8]> = norm.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    let size: u64 = lines.iter().map(|l| l.len() as u64 + 2).sum();
    let keep = match extract {
        Extract::Whole => lines.len(),
        Extract::Top { body_lines } => match lines.iter().position(|l| l.is_empty()) {
            Some(blank) => (blank + 1 + body_lines as usize).min(lines.len()),
            None => lines.len(),
        },
    };
    let mut out = Vec::new();
    for l in &lines[..keep] {
        if l.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(l);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    (out, size)
}

#[test]
fn random_messages_match_model() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let alphabet = b"ab.\r\n\n :";
    for _ in 0..3000 {
        let len = rng.below(40);
        let msg: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        let extract = match rng.below(3) {
            0 => RETR,
            _ => top(rng.below(4) as u32),
        };
        // Random chunking.
        let mut chunks = Vec::new();
        let mut rest = &msg[..];
        while !rest.is_empty() {
            let (a, b) = rest.split_at(1 + rng.below(rest.len()));
            chunks.push(a);
            rest = b;
        }
        let got = encode_chunks(&chunks, extract);
        let (want, size) = model(&msg, extract);
        assert_eq!(got, want, "{extract:?} of {msg:?} in {chunks:?}");
        assert_well_formed(&got);
        assert_eq!(wire_size(&msg), size, "size of {msg:?}");
        assert_eq!(size_chunks(&chunks), size);
        if extract == RETR {
            assert_eq!(unstuff(&got).len() as u64, size);
        }
    }
}

#[test]
fn retr_octet_count_equals_list_size() {
    for msg in [
        MSG_LF,
        MSG_CRLF,
        MSG_MIXED,
        b".\n.\n..\n" as &[u8],
        b"no newline",
    ] {
        let wire = encode_chunks(&[msg], RETR);
        assert_eq!(unstuff(&wire).len() as u64, wire_size(msg));
    }
    assert_eq!(wire_size(MSG_LF), MSG_CRLF.len() as u64);
    assert_eq!(wire_size(MSG_CRLF), MSG_CRLF.len() as u64);
    assert_eq!(wire_size(MSG_MIXED), MSG_CRLF.len() as u64);
    assert_eq!(wire_size(b""), 0);
    assert_eq!(wire_size(b"x"), 3);
}
