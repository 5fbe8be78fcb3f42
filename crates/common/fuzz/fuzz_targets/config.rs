//! Arbitrary text as postern.toml: parsing, environment overrides,
//! derived defaults and validation never panic; an error always names the
//! file, a key (or position) and a reason.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use postern_common::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = BTreeMap::new();
    match Config::parse_str(text, Path::new("fuzz.toml"), &env) {
        Ok(cfg) => {
            let _ = cfg.flatten();
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("fuzz.toml"), "{msg}");
        }
    }
});
