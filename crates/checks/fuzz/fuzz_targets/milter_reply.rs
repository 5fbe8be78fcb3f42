//! Fuzzes the milter reply decoder and the SMFIR_REPLYCODE parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    postern_checks_fuzz::milter_reply(data);
});
