//! Arbitrary bytes into a Session with trivial hooks (accept everything, SASL
//! continues once): no panic, no endless loop, output is whole reply lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_proto::{Event, Reply, Session, SessionConfig};

fuzz_target!(|data: &[u8]| {
    let lmtp = data.first().is_some_and(|b| b & 1 == 1);
    let mut s = Session::new(SessionConfig {
        lmtp,
        message_size_limit: 100,
        ..SessionConfig::default()
    });
    let mut out = Vec::new();
    for chunk in data.chunks(7) {
        s.feed(chunk);
        while let Some(ev) = s.poll() {
            if ev.needs_reply() {
                let r = match &ev {
                    Event::DataStart { bdat: false } => Reply::start_data(),
                    Event::Auth { .. } => Reply::auth_challenge(""),
                    Event::StartTls => Reply::starttls_ready(),
                    _ => Reply::ok(),
                };
                for _ in 0..s.replies_expected().max(1) {
                    s.reply(r.clone());
                }
            }
        }
        out.extend(s.take_output());
    }
    assert!(out.is_empty() || out.ends_with(b"\r\n"));
});
