//! DATA and BDAT receiver tests: every input is also fed split at every byte and
//! byte by byte, with identical output.

use smtp_proto::*;

/// (message bytes, end, leftover) or None if no terminator found.
type Res = (Vec<u8>, Option<(DataEnd, Vec<u8>)>);

fn run_chunks(chunks: &[&[u8]], limit: u64, policy: BareNewlinePolicy) -> Res {
    let mut rx = DataReceiver::new(limit, policy);
    let mut out = Vec::new();
    let mut iter = chunks.iter();
    while let Some(c) = iter.next() {
        if let Some((used, end)) = rx.feed(c, &mut out) {
            let mut left = c[used..].to_vec();
            for c in iter {
                left.extend_from_slice(c);
            }
            return (out, Some((end, left)));
        }
    }
    (out, None)
}

fn data(input: &[u8], limit: u64, policy: BareNewlinePolicy) -> Res {
    let reference = run_chunks(&[input], limit, policy);
    for i in 0..=input.len() {
        let r = run_chunks(&[&input[..i], &input[i..]], limit, policy);
        assert_eq!(
            r,
            reference,
            "split at {i} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let bytes: Vec<&[u8]> = input.iter().map(std::slice::from_ref).collect();
    assert_eq!(
        run_chunks(&bytes, limit, policy),
        reference,
        "byte-at-a-time"
    );
    reference
}

fn ok(input: &[u8]) -> (Vec<u8>, Vec<u8>) {
    match data(input, u64::MAX, BareNewlinePolicy::Reject) {
        (msg, Some((end, left))) => {
            assert_eq!(end.result, Ok(()), "{:?}", String::from_utf8_lossy(input));
            assert_eq!(end.size, msg.len() as u64);
            (msg, left)
        }
        (_, None) => panic!("no end in {:?}", String::from_utf8_lossy(input)),
    }
}

#[test]
fn terminator_and_unstuffing() {
    let table: &[(&[u8], &[u8], &[u8])] = &[
        (b".\r\n", b"", b""),
        (b"a\r\n.\r\n", b"a\r\n", b""),
        (b"a\r\n.\r\nQUIT\r\n", b"a\r\n", b"QUIT\r\n"),
        (b"..\r\n.\r\n", b".\r\n", b""),
        (b"...\r\n.\r\n", b"..\r\n", b""),
        (b".x\r\n.\r\n", b"x\r\n", b""),
        (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", b""),
        (b"a.\r\nb.b\r\n.\r\n", b"a.\r\nb.b\r\n", b""),
        (b"a\r\n. \r\n.\r\n", b"a\r\n \r\n", b""),
        (b"\r\n\r\n.\r\n", b"\r\n\r\n", b""),
        (b"x\r\n.\r\n.\r\n", b"x\r\n", b".\r\n"),
        (
            b"8bit \xff\xfe\x00\x80\r\n.\r\n",
            b"8bit \xff\xfe\x00\x80\r\n",
            b"",
        ),
        (b"no final crlf.\r\n.\r\n", b"no final crlf.\r\n", b""),
    ];
    for (input, msg, left) in table {
        let (m, l) = ok(input);
        assert_eq!(
            (m.as_slice(), l.as_slice()),
            (*msg, *left),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn long_lines_pass_through() {
    for n in [997, 998, 999, 5000] {
        let line = vec![b'x'; n];
        let mut input = line.clone();
        input.extend_from_slice(b"\r\n.\r\n");
        let (m, _) = ok(&input);
        assert_eq!(&m[..n], line.as_slice());
        assert_eq!(&m[n..], b"\r\n");
    }
}

#[test]
fn streaming_is_incremental() {
    // Output appears while the message is still coming, not only at the end.
    let mut rx = DataReceiver::new(u64::MAX, BareNewlinePolicy::Reject);
    let mut out = Vec::new();
    let line = b"0123456789012345678901234567890123456789\r\n";
    for i in 0..10_000 {
        out.clear();
        assert!(rx.feed(line, &mut out).is_none());
        assert_eq!(out.as_slice(), line, "chunk {i}");
    }
    out.clear();
    let (used, end) = rx.feed(b".\r\n", &mut out).expect("end");
    assert_eq!((used, end.size), (3, 10_000 * line.len() as u64));
}

#[test]
fn smuggling_never_ends_data() {
    // Bare-LF / bare-CR dot lines never end the message, in any policy.
    let cases: &[&[u8]] = &[
        b"a\n.\nMAIL FROM:<x@y>\n",
        b"a\n.\r\nMAIL FROM:<x@y>\r\n",
        b"a\r\n.\nMAIL FROM:<x@y>\r\n",
        b"a\r.\rMAIL FROM:<x@y>\r",
        b"a\r.\r\nMAIL FROM:<x@y>\r\n",
        b"a\r\n.\rMAIL FROM:<x@y>\r\n",
    ];
    for policy in [
        BareNewlinePolicy::Reject,
        BareNewlinePolicy::Normalize,
        BareNewlinePolicy::Allow,
    ] {
        for input in cases {
            let (_, end) = data(input, u64::MAX, policy);
            assert!(
                end.is_none(),
                "{policy:?} {:?} ended data",
                String::from_utf8_lossy(input)
            );
        }
    }
}

#[test]
fn bare_newline_policies() {
    let input = b"a\nb\rc\n.\nd\r\n.\r\nNEXT";
    let (msg, end) = data(input, u64::MAX, BareNewlinePolicy::Reject);
    let (end, left) = end.expect("ends at CRLF.CRLF");
    assert_eq!(end.result, Err(DataError::BareNewline));
    assert_eq!(end.result.err().map(|e| e.reply().code), Some(550));
    assert_eq!(msg, b"a\nb\rc\n.\nd\r\n");
    assert_eq!(left, b"NEXT");

    let (msg, end) = data(input, u64::MAX, BareNewlinePolicy::Normalize);
    assert_eq!(
        end.map(|(e, l)| (e.result, l)),
        Some((Ok(()), b"NEXT".to_vec()))
    );
    // Bare LF → CRLF; the dot after a bare LF is kept (not a real line start).
    assert_eq!(msg, b"a\r\nb\rc\r\n.\r\nd\r\n");

    let (msg, end) = data(input, u64::MAX, BareNewlinePolicy::Allow);
    assert_eq!(end.map(|(e, _)| e.result), Some(Ok(())));
    assert_eq!(msg, b"a\nb\rc\n.\nd\r\n");

    // Only CRLF: Reject accepts.
    let (_, end) = data(b"a\r\nb\r\n.\r\n", u64::MAX, BareNewlinePolicy::Reject);
    assert_eq!(end.map(|(e, _)| e.result), Some(Ok(())));
    // ". CR x" line: dot unstuffed, the CR is bare.
    let (msg, end) = data(b".\rx\r\n.\r\n", u64::MAX, BareNewlinePolicy::Reject);
    assert_eq!(msg, b"\rx\r\n");
    assert_eq!(
        end.map(|(e, _)| e.result),
        Some(Err(DataError::BareNewline))
    );
}

#[test]
fn size_limit() {
    let input = b"0123456789\r\n0123456789\r\n.\r\nQUIT\r\n";
    // Exactly at the limit: accepted.
    let (msg, end) = data(input, 24, BareNewlinePolicy::Reject);
    assert_eq!(msg.len(), 24);
    assert_eq!(end.map(|(e, _)| e.result), Some(Ok(())));
    // One under: consumed to the end, reported, leftover intact, output bounded.
    let (msg, end) = data(input, 23, BareNewlinePolicy::Reject);
    assert!(msg.len() <= 23);
    let (end, left) = end.expect("still finds the end");
    assert_eq!(end.result, Err(DataError::SizeExceeded { limit: 23 }));
    assert_eq!(
        end.result.err().map(|e| e.reply().encode()),
        Some(b"552 5.3.4 Error: message file too big\r\n".to_vec())
    );
    assert_eq!(left, b"QUIT\r\n");
    // Size exceeded wins over bare newline.
    let (_, end) = data(b"a\nbbbb\r\n.\r\n", 3, BareNewlinePolicy::Reject);
    assert_eq!(
        end.map(|(e, _)| e.result),
        Some(Err(DataError::SizeExceeded { limit: 3 }))
    );
}

fn bdat(
    size: u64,
    last: bool,
    before: u64,
    limit: u64,
    input: &[u8],
) -> (Vec<u8>, Option<(usize, DataEnd)>) {
    let mut whole_out = Vec::new();
    let reference = BdatReceiver::new(size, last, before, limit).feed(input, &mut whole_out);
    for i in 0..=input.len() {
        let mut rx = BdatReceiver::new(size, last, before, limit);
        let mut out = Vec::new();
        let r = match rx.feed(&input[..i], &mut out) {
            Some(done) => Some(done),
            None => rx.feed(&input[i..], &mut out).map(|(u, e)| (u + i, e)),
        };
        assert_eq!((&out, r), (&whole_out, reference), "split {i}");
    }
    (whole_out, reference)
}

#[test]
fn bdat_chunks() {
    // Exactly n octets, no unstuffing or line-ending processing.
    let (out, r) = bdat(8, true, 0, 100, b"a\r\n.\r\n\n.BDAT 0 LAST\r\n");
    assert_eq!(out, b"a\r\n.\r\n\n.");
    let (used, end) = r.expect("complete");
    assert_eq!((used, end.size, end.result), (8, 8, Ok(())));
    // Incomplete chunk.
    let (out, r) = bdat(10, false, 0, 100, b"abc");
    assert_eq!((out.as_slice(), r), (&b"abc"[..], None));
    // BDAT 0 LAST completes immediately.
    let mut rx = BdatReceiver::new(0, true, 5, 100);
    let r = rx.feed(b"QUIT\r\n", &mut Vec::new());
    assert_eq!(
        r,
        Some((
            0,
            DataEnd {
                size: 5,
                result: Ok(())
            }
        ))
    );
    assert!(rx.is_last());
    // Size limit counts earlier chunks; the chunk is still consumed fully.
    let (out, r) = bdat(6, false, 95, 100, b"abcdefNEXT");
    assert!(out.is_empty());
    assert_eq!(
        r.map(|(u, e)| (u, e.result)),
        Some((6, Err(DataError::SizeExceeded { limit: 100 })))
    );
    let (_, r) = bdat(5, false, 95, 100, b"abcde");
    assert_eq!(r.map(|(_, e)| (e.size, e.result)), Some((100, Ok(()))));
    // 8-bit and binary bytes pass through.
    let bin: Vec<u8> = (0..=255).collect();
    let (out, r) = bdat(256, true, 0, 1000, &bin);
    assert_eq!(out, bin);
    assert!(r.is_some());
}
