//! Fuzzes the Receiver (command and SASL modes) and the line parsers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    postern_pop3_proto_fuzz::command_parser(data);
});
