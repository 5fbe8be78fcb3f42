//! Arbitrary bytes through imapd's command framing and tokenizer, and the
//! sequence-set and LIST-pattern matchers: no panic, framing bounded and
//! consistent with feeding the same bytes split at a data-chosen point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_imapd::parse::{Framed, frame, list_match, sequence_set, tokenize};

fuzz_target!(|data: &[u8]| {
    // Frame as the session does: whole commands off the front of the buffer.
    let mut rest = data;
    let mut commands = 0;
    loop {
        match frame(rest, 1024 * 1024) {
            Framed::Command(n) => {
                assert!(n > 0 && n <= rest.len());
                let _ = tokenize(&rest[..n]);
                rest = &rest[n..];
                commands += 1;
            }
            Framed::Incomplete(pos) => {
                if let Some(p) = pos {
                    assert!(p <= rest.len());
                }
                break;
            }
            // A line over MAX_COMMAND, or a literal announced beyond the limit.
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
