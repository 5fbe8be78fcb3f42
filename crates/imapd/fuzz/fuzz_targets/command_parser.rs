//! Arbitrary bytes through imapd's command framing and its grammar wrapper
//! (`codec::decode`: imap-codec, lowered to the session's tokens, with the
//! narrow tokenizer fallback), and the sequence-set and LIST-pattern
//! matchers: no panic, framing bounded and consistent with feeding the
//! same bytes split at a data-chosen point, decoded commands well-formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_imapd::codec;
use postern_imapd::parse::{Framed, frame, list_match, sequence_set};

fuzz_target!(|data: &[u8]| {
    // Frame as the session does: whole commands off the front of the buffer.
    let mut rest = data;
    let mut commands = 0;
    loop {
        match frame(rest, 1024 * 1024) {
            Framed::Command(n) => {
                assert!(n > 0 && n <= rest.len());
                // Split reads: any shorter prefix is still incomplete.
                let k = rest.first().map_or(0, |&b| b as usize) % n;
                assert!(
                    matches!(frame(&rest[..k], 1024 * 1024), Framed::Incomplete(_)),
                    "prefix {k} of a {n}-byte command"
                );
                match codec::decode(&rest[..n]) {
                    Ok(c) => {
                        assert!(!c.tag.is_empty() && !c.tag.contains([' ', '\r', '\n']));
                        assert!(!c.verb.is_empty() && c.verb == c.verb.to_ascii_uppercase());
                    }
                    Err(r) => {
                        assert!(!r.tag.is_empty() && !r.tag.contains([' ', '\r', '\n']));
                        assert!(r.text.starts_with("BAD "));
                    }
                }
                rest = &rest[n..];
                commands += 1;
            }
            Framed::Incomplete(pos) => {
                if let Some(p) = pos {
                    assert!(p <= rest.len());
                }
                break;
            }
            // A `{n}` literal over the bound is refused and the session
            // reads on after its line; `{n+}` ends the connection.
            Framed::LiteralTooBig { line_end, sync } => {
                assert!(line_end > 0 && line_end <= rest.len());
                if !sync {
                    break;
                }
                rest = &rest[line_end..];
            }
            // A line over MAX_COMMAND.
            Framed::TooLong => break,
        }
    }
    assert!(commands <= data.len());
    // The other small parsers on the same input.
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(set) = sequence_set(s, 1000) {
            // Sorted, deduplicated, no 0; numbers above `*` only where
            // written literally (callers filter them).
            assert!(set.windows(2).all(|w| w[0] < w[1]));
            assert!(set.first().is_none_or(|&n| n >= 1));
        }
    }
    let (pattern, name) = data.split_at(data.len() / 2);
    let _ = list_match(pattern, name);
});
