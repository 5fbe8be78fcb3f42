//! Fuzz checks for postern-pop3-proto, shared by the cargo-fuzz targets in
//! `fuzz_targets/` and by the stable `cargo test` below.
//!
//! Each check takes arbitrary bytes, must never panic on valid library
//! behaviour, and asserts properties that must hold for every input.

use pop3_proto::{
    BodyEncoder, Command, Extract, MAX_SASL_LINE, ParseError, Receiver, SaslResponse,
    WireSizeCounter, parse_command, wire_size,
};

#[derive(Debug, PartialEq, Eq)]
enum Out {
    Cmd(Result<Command, ParseError>),
    Sasl(Result<SaslResponse, ParseError>),
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

/// Feeds `chunks`; the k-th line is read in SASL mode when bit `k % 8` of
/// `modes` is set.
fn drive(chunks: &[&[u8]], modes: u8) -> Vec<Out> {
    let mut rx = Receiver::new();
    let mut outs = Vec::new();
    for chunk in chunks {
        let mut input: &[u8] = chunk;
        while !input.is_empty() {
            let sasl = (modes >> (outs.len() % 8)) & 1 == 1;
            let out = if sasl {
                rx.feed_sasl(&mut input).transpose().map(Out::Sasl)
            } else {
                rx.feed(&mut input).transpose().map(Out::Cmd)
            };
            assert!(rx.buffered() < MAX_SASL_LINE);
            match out {
                Some(o) => outs.push(o),
                None => assert!(input.is_empty(), "Ok(None) with input left"),
            }
        }
    }
    outs
}

/// Receiver/parser check. Byte 0 selects the chunking, byte 1 the modes.
/// Properties: same results however the input is chunked; one result per
/// line end; error replies are a single safe line; Debug output of parsed
/// commands never contains a PASS argument.
pub fn command_parser(data: &[u8]) {
    let [seed, modes, rest @ ..] = data else {
        return;
    };
    let whole = drive(&[rest], *modes);
    assert_eq!(drive(&chunks(rest, *seed), *modes), whole);
    if rest.len() <= 4096 {
        let bytes: Vec<&[u8]> = rest.chunks(1).collect();
        assert_eq!(drive(&bytes, *modes), whole);
    }
    let line_ends = rest.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(whole.len(), line_ends);
    for o in &whole {
        let err = match o {
            Out::Cmd(Err(e)) | Out::Sasl(Err(e)) => Some(e),
            _ => None,
        };
        if let Some(e) = err {
            let r = e.reply().to_bytes();
            assert!(r.starts_with(b"-ERR "));
            assert_eq!(r.iter().filter(|&&b| b == b'\n' || b == b'\r').count(), 2);
        }
        if let Out::Cmd(Ok(Command::Pass { .. })) = o {
            assert_eq!(format!("{o:?}"), "Cmd(Ok(Pass { password: *** }))");
        }
    }
    // The pure parser never panics on a raw line either.
    let _ = parse_command(rest);
}

/// Encodes in one go.
fn encode(chunks: &[&[u8]], extract: Extract) -> Vec<u8> {
    let mut enc = BodyEncoder::new(extract);
    let mut out = Vec::new();
    for c in chunks {
        enc.encode(c, &mut out);
    }
    enc.finish(&mut out);
    out
}

/// BodyEncoder check. Byte 0 selects the chunking, byte 1 RETR (0) or
/// TOP n (n = byte 1 - 1). Properties: output independent of chunking; CRLF
/// only; every '.'-leading line stuffed; ends with ".\r\n"; for RETR the
/// unstuffed length equals `wire_size`; TOP output is a prefix of RETR's;
/// the streaming size counter agrees with `wire_size`.
pub fn retr_encoder(data: &[u8]) {
    let [seed, mode, msg @ ..] = data else {
        return;
    };
    let extract = match mode {
        0 => Extract::Whole,
        n => Extract::Top {
            body_lines: u32::from(*n - 1),
        },
    };
    let parts = chunks(msg, *seed);
    let out = encode(&[msg], extract);
    assert_eq!(encode(&parts, extract), out);

    let body = out.strip_suffix(b".\r\n").expect("terminator");
    assert!(body.is_empty() || body.ends_with(b"\r\n"));
    let mut unstuffed = 0u64;
    for (i, line) in body.split_inclusive(|&b| b == b'\n').enumerate() {
        assert!(line.ends_with(b"\r\n"), "line {i} not CRLF-terminated");
        assert!(!line[..line.len() - 1].contains(&b'\n'));
        let stuffed = line.first() == Some(&b'.');
        if stuffed {
            assert_eq!(line.get(1), Some(&b'.'), "line {i} not stuffed");
        }
        unstuffed += line.len() as u64 - u64::from(stuffed);
    }

    let size = wire_size(msg);
    let mut counter = WireSizeCounter::new();
    for p in &parts {
        counter.update(p);
    }
    assert_eq!(counter.finish(), size);

    let retr = encode(&[msg], Extract::Whole);
    if extract == Extract::Whole {
        assert_eq!(unstuffed, size);
    } else {
        let retr_body = &retr[..retr.len() - 3];
        assert!(retr_body.starts_with(body), "TOP is not a prefix of RETR");
    }
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
        fn bytes(&mut self, alphabet: &[u8], max: usize) -> Vec<u8> {
            let n = (self.next() % max as u64) as usize;
            (0..n)
                .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn command_parser_random() {
        let mut rng = Rng(42);
        let words: &[&[u8]] = &[
            b"USER ",
            b"PASS ",
            b"LIST",
            b"RETR ",
            b"TOP ",
            b"AUTH ",
            b"PLAIN ",
            b"=",
            b"*",
            b"dGVzdA==",
            b"1",
            b"0",
            b" ",
            b"\r\n",
            b"\n",
            b"\r",
            b"4294967296",
            b"\0",
            b"\xff",
        ];
        for _ in 0..3000 {
            let mut data = vec![rng.next() as u8, rng.next() as u8];
            for _ in 0..rng.next() % 20 {
                data.extend_from_slice(words[(rng.next() % words.len() as u64) as usize]);
            }
            command_parser(&data);
        }
        let mut long = vec![0, 0];
        long.extend(std::iter::repeat_n(b'x', 20_000));
        long.extend_from_slice(b"\r\nNOOP\r\n");
        command_parser(&long);
        long[1] = 0xff;
        command_parser(&long);
    }

    #[test]
    fn retr_encoder_random() {
        let mut rng = Rng(7);
        for _ in 0..5000 {
            let mut data = vec![rng.next() as u8, (rng.next() % 6) as u8];
            data.extend(rng.bytes(b"a.\r\n\n :", 64));
            retr_encoder(&data);
        }
    }
}
