//! Arbitrary bytes into the command receiver, whole and split at a data-chosen
//! point: no panic, identical results, bounded buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_proto::{CommandReceiver, MAX_COMMAND_LINE};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| b as usize).min(data.len());
    let mut whole = CommandReceiver::new();
    whole.push(data);
    let mut a = Vec::new();
    while let Some(r) = whole.next_command() {
        if let Err(e) = &r {
            let reply = e.reply();
            assert!((500..600).contains(&reply.code));
        }
        a.push(r);
    }
    assert!(whole.buffered() <= MAX_COMMAND_LINE + 1);

    let mut parts = CommandReceiver::new();
    let mut b = Vec::new();
    for chunk in [&data[..split], &data[split..]] {
        parts.push(chunk);
        while let Some(r) = parts.next_command() {
            b.push(r);
        }
    }
    assert_eq!(a, b);
    // Every command line ends with LF, so there are at most that many results.
    assert!(a.len() <= data.iter().filter(|&&c| c == b'\n').count());
});
