//! Fuzz checks for the milter reply parser of postern-checks, shared by the
//! cargo-fuzz target in `fuzz_targets/` and by the stable `cargo test` below.

#[path = "../../src/scan/milter/codec.rs"]
#[allow(dead_code)]
pub mod codec;

use codec::{CodecError, MAX_REPLY_LEN, MAX_REPLY_TEXT, Reply, decode, parse_reply_code};

/// Decode everything `data` holds, fed in chunks whose sizes come from
/// byte 0. Properties: never panics; the result (replies, then the error or
/// the leftover) is the same however the input is split; the buffer never
/// holds more than a packet's worth when decode asks for more; a reply code
/// that parses is 4xx/5xx with a bounded, control-free text.
pub fn milter_reply(data: &[u8]) {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = run(&[input]);
    let split = run(&chunks(input, seed));
    assert_eq!(whole, split, "result depends on how the input is split");
    for r in &whole.0 {
        if let Reply::ReplyCode(s) = r {
            check_reply_code(s);
        }
    }
    if let Ok(s) = std::str::from_utf8(input) {
        check_reply_code(s);
    }
}

fn check_reply_code(s: &str) {
    if let Some(r) = parse_reply_code(s) {
        assert!((400..600).contains(&r.code), "{s:?}");
        assert!(r.text.len() <= MAX_REPLY_TEXT);
        assert!(!r.text.chars().any(char::is_control));
        if let Some((class, _, _)) = r.enhanced {
            assert_eq!(u16::from(class), r.code / 100);
        }
    }
}

type Run = (Vec<Reply>, Option<CodecError>, usize);

fn run(parts: &[&[u8]]) -> Run {
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    for part in parts {
        buf.extend_from_slice(part);
        loop {
            match decode(&mut buf) {
                Ok(Some(r)) => replies.push(r),
                Ok(None) => {
                    assert!(buf.len() < 4 + MAX_REPLY_LEN);
                    break;
                }
                Err(e) => return (replies, Some(e), 0),
            }
        }
    }
    (replies, None, buf.len())
}

/// Chunk lengths derived from `seed` (1..=16, cycling).
fn chunks(data: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut v = Vec::new();
    let mut rest = data;
    let mut s = u32::from(seed) | 1;
    while !rest.is_empty() {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (((s >> 16) % 16) as usize + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        v.push(a);
        rest = b;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn milter_reply_random() {
        let mut rng = Rng(7);
        let codes = b"Oacdrtyspqhimb+-2ef4lZ";
        for _ in 0..20_000 {
            let mut data = vec![(rng.next() & 0xff) as u8];
            for _ in 0..(rng.next() % 4) {
                let len = (rng.next() % 24) as usize;
                let body: Vec<u8> = (0..len)
                    .map(|_| match rng.next() % 6 {
                        0 => 0,
                        1 => b'5',
                        2 => b' ',
                        3 => b'.',
                        4 => b'\n',
                        _ => (rng.next() & 0xff) as u8,
                    })
                    .collect();
                let n = if rng.next().is_multiple_of(10) {
                    rng.next() as u32
                } else {
                    len as u32 + 1
                };
                data.extend_from_slice(&n.to_be_bytes());
                data.push(codes[(rng.next() % codes.len() as u64) as usize]);
                data.extend_from_slice(&body);
            }
            milter_reply(&data);
        }
        milter_reply(b"\x01550 5.7.1 ok");
        milter_reply(b"\x05\0\0\0\x0ey550 5.7.1 x\0");
    }
}
