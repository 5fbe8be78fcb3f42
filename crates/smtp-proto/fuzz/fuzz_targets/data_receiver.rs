//! Arbitrary bytes into the DATA receiver under every policy and a small size
//! limit, whole and split: no panic, identical output, invariants on the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_proto::{BareNewlinePolicy, DataError, DataReceiver};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| b as usize).min(data.len());
    for policy in [
        BareNewlinePolicy::Reject,
        BareNewlinePolicy::Normalize,
        BareNewlinePolicy::Allow,
    ] {
        let limit = 64;
        let mut rx = DataReceiver::new(limit, policy);
        let mut out_a = Vec::new();
        let a = rx.feed(data, &mut out_a);
        assert!(out_a.len() as u64 <= limit);

        let mut rx = DataReceiver::new(limit, policy);
        let mut out_b = Vec::new();
        let b = match rx.feed(&data[..split], &mut out_b) {
            Some(r) => Some(r),
            None => rx
                .feed(&data[split..], &mut out_b)
                .map(|(u, e)| (u + split, e)),
        };
        assert_eq!(out_a, out_b);
        assert_eq!(a, b);
        if let Some((used, end)) = a {
            // The terminator is exactly CRLF.CRLF ending at `used`.
            assert!(used >= 3 && used <= data.len());
            assert_eq!(&data[used - 3..used], b".\r\n");
            assert_eq!(end.size, out_a.len() as u64);
            if policy != BareNewlinePolicy::Reject {
                assert_ne!(end.result, Err(DataError::BareNewline));
            }
        }
    }
});
