//! Arbitrary text as an aliases(5) file, with and without commands and
//! files allowed: no panic, and every reported bad line is a line of the input.
#![no_main]

use directory::aliases::{AliasPolicy, parse_str};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (allow_commands, allow_files) in [(false, false), (true, true)] {
        let policy = AliasPolicy {
            allow_commands,
            allow_files,
        };
        let parsed = parse_str(&text, "fuzz", policy);
        let lines = text.split('\n').count();
        for e in &parsed.errors {
            // :include: files named in the input may be reported too.
            if e.file == "fuzz" {
                assert!(e.line >= 1 && e.line <= lines, "{e:?}");
            }
        }
    }
});
