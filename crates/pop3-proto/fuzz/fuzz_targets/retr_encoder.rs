//! Fuzzes the RETR/TOP BodyEncoder and the wire-size counter.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    postern_pop3_proto_fuzz::retr_encoder(data);
});
