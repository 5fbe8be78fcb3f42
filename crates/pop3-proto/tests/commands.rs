//! Receiver and command parser: every command, table-driven, each input fed
//! whole, split at every byte, and byte-at-a-time.

use pop3_proto::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Cmd(Result<Command, ParseError>),
    Sasl(Result<SaslResponse, ParseError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Cmd,
    Sasl,
}

/// Feeds `chunks` to a fresh receiver; the n-th line is read in `modes[n]`
/// (the last mode repeats). Returns everything produced, and checks that
/// `Ok(None)` only ever comes with the input exhausted.
fn drive(chunks: &[&[u8]], modes: &[Mode]) -> (Vec<Out>, Receiver) {
    let mut rx = Receiver::new();
    let mut outs = Vec::new();
    for chunk in chunks {
        let mut input: &[u8] = chunk;
        while !input.is_empty() {
            let mode = modes
                .get(outs.len())
                .or(modes.last())
                .copied()
                .unwrap_or(Mode::Cmd);
            let before = input.len();
            let out = match mode {
                Mode::Cmd => rx.feed(&mut input).transpose().map(Out::Cmd),
                Mode::Sasl => rx.feed_sasl(&mut input).transpose().map(Out::Sasl),
            };
            assert!(rx.buffered() < MAX_SASL_LINE);
            match out {
                Some(o) => outs.push(o),
                None => {
                    assert!(input.is_empty(), "Ok(None) with input left");
                    assert!(before > 0);
                }
            }
        }
    }
    (outs, rx)
}

/// Runs `input` whole, split in two at every position, and one byte at a
/// time; asserts identical results and returns them.
fn all_ways(input: &[u8], modes: &[Mode]) -> Vec<Out> {
    let (whole, rx) = drive(&[input], modes);
    let partial = rx.has_partial_line();
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        let (got, rx) = drive(&[a, b], modes);
        assert_eq!(
            got,
            whole,
            "split at {i} of {:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(rx.has_partial_line(), partial);
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let (got, rx) = drive(&bytes, modes);
    assert_eq!(
        got,
        whole,
        "byte-at-a-time of {:?}",
        String::from_utf8_lossy(input)
    );
    assert_eq!(rx.has_partial_line(), partial);
    whole
}

fn secret(b: &[u8]) -> Secret<Vec<u8>> {
    Secret::new(b.to_vec())
}

fn cases() -> Vec<(&'static [u8], Result<Command, ParseError>)> {
    use Command as C;
    use ParseError as E;
    let user = |n: &str| Ok(C::User { name: n.into() });
    let pass = |p: &[u8]| {
        Ok(C::Pass {
            password: secret(p),
        })
    };
    vec![
        // USER
        (b"USER alice", user("alice")),
        (b"user Alice", user("Alice")),
        (b"uSeR alice@example.org", user("alice@example.org")),
        (b"USER  alice ", user("alice")),
        (b"USER", Err(E::MissingArgument { command: "USER" })),
        (b"USER ", Err(E::MissingArgument { command: "USER" })),
        (b"USER a b", Err(E::TooManyArguments { command: "USER" })),
        (b"USER \xffbad", Err(E::InvalidUtf8)),
        // PASS: rest of line, spaces and any octets kept
        (b"PASS secret word", pass(b"secret word")),
        (b"pass  lead", pass(b" lead")),
        (b"PASS trail ", pass(b"trail ")),
        (b"PASS \xff\xfe", pass(b"\xff\xfe")),
        (b"PASS a\tb", pass(b"a\tb")),
        (b"PASS", Err(E::MissingArgument { command: "PASS" })),
        (b"PASS ", Err(E::MissingArgument { command: "PASS" })),
        // no-argument commands
        (b"STAT", Ok(C::Stat)),
        (b"stat", Ok(C::Stat)),
        (b"STAT ", Ok(C::Stat)),
        (b"STAT 1", Err(E::TooManyArguments { command: "STAT" })),
        (b"NOOP", Ok(C::Noop)),
        (b"noop x", Err(E::TooManyArguments { command: "NOOP" })),
        (b"RSET", Ok(C::Rset)),
        (b"Rset", Ok(C::Rset)),
        (b"QUIT", Ok(C::Quit)),
        (b"quit", Ok(C::Quit)),
        (b"QUIT now", Err(E::TooManyArguments { command: "QUIT" })),
        (b"CAPA", Ok(C::Capa)),
        (b"capa", Ok(C::Capa)),
        (b"STLS", Ok(C::Stls)),
        (b"STLS x", Err(E::TooManyArguments { command: "STLS" })),
        // LIST
        (b"LIST", Ok(C::List { msg: None })),
        (b"list 1", Ok(C::List { msg: Some(1) })),
        (b"LIST 007", Ok(C::List { msg: Some(7) })),
        (
            b"LIST 4294967295",
            Ok(C::List {
                msg: Some(u32::MAX),
            }),
        ),
        (
            b"LIST 4294967296",
            Err(E::NumberTooLarge { command: "LIST" }),
        ),
        (
            b"LIST 99999999999999999999999999",
            Err(E::NumberTooLarge { command: "LIST" }),
        ),
        (b"LIST 0", Err(E::ZeroMessageNumber { command: "LIST" })),
        (b"LIST 000", Err(E::ZeroMessageNumber { command: "LIST" })),
        (b"LIST -1", Err(E::InvalidNumber { command: "LIST" })),
        (b"LIST +1", Err(E::InvalidNumber { command: "LIST" })),
        (b"LIST 1a", Err(E::InvalidNumber { command: "LIST" })),
        (b"LIST 0x10", Err(E::InvalidNumber { command: "LIST" })),
        (b"LIST \xd9\xa1", Err(E::InvalidNumber { command: "LIST" })), // Arabic-Indic one
        (b"LIST 1 2", Err(E::TooManyArguments { command: "LIST" })),
        // RETR / DELE
        (b"RETR 1", Ok(C::Retr { msg: 1 })),
        (b"retr 42", Ok(C::Retr { msg: 42 })),
        (b"RETR", Err(E::MissingArgument { command: "RETR" })),
        (b"RETR 0", Err(E::ZeroMessageNumber { command: "RETR" })),
        (b"RETR x", Err(E::InvalidNumber { command: "RETR" })),
        (b"RETR 1 1", Err(E::TooManyArguments { command: "RETR" })),
        (
            b"RETR 5000000000",
            Err(E::NumberTooLarge { command: "RETR" }),
        ),
        (b"DELE 3", Ok(C::Dele { msg: 3 })),
        (b"DELE", Err(E::MissingArgument { command: "DELE" })),
        (b"DELE 0", Err(E::ZeroMessageNumber { command: "DELE" })),
        (b"DELE -3", Err(E::InvalidNumber { command: "DELE" })),
        // TOP
        (b"TOP 1 0", Ok(C::Top { msg: 1, lines: 0 })),
        (b"top 2 10", Ok(C::Top { msg: 2, lines: 10 })),
        (
            b"TOP 1 4294967295",
            Ok(C::Top {
                msg: 1,
                lines: u32::MAX,
            }),
        ),
        (
            b"TOP 1 4294967296",
            Err(E::NumberTooLarge { command: "TOP" }),
        ),
        (b"TOP 1", Err(E::MissingArgument { command: "TOP" })),
        (b"TOP", Err(E::MissingArgument { command: "TOP" })),
        (b"TOP 0 5", Err(E::ZeroMessageNumber { command: "TOP" })),
        (b"TOP 1 -1", Err(E::InvalidNumber { command: "TOP" })),
        (b"TOP 1 2 3", Err(E::TooManyArguments { command: "TOP" })),
        // UIDL
        (b"UIDL", Ok(C::Uidl { msg: None })),
        (b"uidl 5", Ok(C::Uidl { msg: Some(5) })),
        (b"UIDL 0", Err(E::ZeroMessageNumber { command: "UIDL" })),
        (b"UIDL 1 2", Err(E::TooManyArguments { command: "UIDL" })),
        // APOP (example from RFC 1939)
        (
            b"APOP mrose c4c9334bac560ecc979e58001b3e22fb",
            Ok(C::Apop {
                name: "mrose".into(),
                digest: Secret::new("c4c9334bac560ecc979e58001b3e22fb".into()),
            }),
        ),
        (
            b"apop mrose C4C9334BAC560ECC979E58001B3E22FB",
            Ok(C::Apop {
                name: "mrose".into(),
                digest: Secret::new("c4c9334bac560ecc979e58001b3e22fb".into()),
            }),
        ),
        (
            b"APOP mrose c4c9334bac560ecc979e58001b3e22f",
            Err(E::InvalidDigest),
        ),
        (
            b"APOP mrose c4c9334bac560ecc979e58001b3e22fbb",
            Err(E::InvalidDigest),
        ),
        (
            b"APOP mrose g4c9334bac560ecc979e58001b3e22fb",
            Err(E::InvalidDigest),
        ),
        (b"APOP mrose", Err(E::MissingArgument { command: "APOP" })),
        (b"APOP", Err(E::MissingArgument { command: "APOP" })),
        (
            b"APOP a c4c9334bac560ecc979e58001b3e22fb x",
            Err(E::TooManyArguments { command: "APOP" }),
        ),
        // AUTH (RFC 5034)
        (
            b"AUTH",
            Ok(C::Auth {
                mechanism: None,
                initial_response: None,
            }),
        ),
        (
            b"auth plain",
            Ok(C::Auth {
                mechanism: Some("PLAIN".into()),
                initial_response: None,
            }),
        ),
        (
            b"AUTH SCRAM-SHA-256",
            Ok(C::Auth {
                mechanism: Some("SCRAM-SHA-256".into()),
                initial_response: None,
            }),
        ),
        (
            b"AUTH PLAIN =",
            Ok(C::Auth {
                mechanism: Some("PLAIN".into()),
                initial_response: Some(secret(b"")),
            }),
        ),
        (
            b"AUTH PLAIN AGFsaWNlAHNlY3JldA==",
            Ok(C::Auth {
                mechanism: Some("PLAIN".into()),
                initial_response: Some(secret(b"\0alice\0secret")),
            }),
        ),
        (b"AUTH PLAIN !!!!", Err(E::InvalidBase64)),
        (b"AUTH PLAIN AGFsaWNlAHNlY3JldA", Err(E::InvalidBase64)),
        (b"AUTH PL@IN", Err(E::InvalidMechanism)),
        (b"AUTH ABCDEFGHIJKLMNOPQRSTU", Err(E::InvalidMechanism)),
        (
            b"AUTH ABCDEFGHIJKLMNOPQRST",
            Ok(C::Auth {
                mechanism: Some("ABCDEFGHIJKLMNOPQRST".into()),
                initial_response: None,
            }),
        ),
        (
            b"AUTH PLAIN = x",
            Err(E::TooManyArguments { command: "AUTH" }),
        ),
        // unknown and malformed
        (b"", Err(E::EmptyCommand)),
        (b" STAT", Err(E::EmptyCommand)),
        (b"LAST", Ok(C::Unknown("LAST".into()))),
        (b"xtnd XMIT", Ok(C::Unknown("XTND".into()))),
        (b"HELO", Ok(C::Unknown("HELO".into()))),
        (b"STATISTICS", Ok(C::Unknown("STATISTICS".into()))),
        (
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            Ok(C::Unknown("ABCDEFGHIJKLMNOP".into())),
        ),
        (b"\xc3\xa9", Ok(C::Unknown("??".into()))),
        (b"ST\0T", Err(E::NulByte)),
        (b"PASS a\0b", Err(E::NulByte)),
        (b"STA", Ok(C::Unknown("STA".into()))),
        (b"GET / HTTP/1.1", Ok(C::Unknown("GET".into()))),
        // unknown verbs are unknown whatever their arguments
        (b"XTND \xff\x01", Ok(C::Unknown("XTND".into()))),
        (b"X \r", Ok(C::Unknown("X".into()))),
        // control characters in arguments
        (b"USER a\rb", Err(E::ControlCharacter)),
        (b"USER a\tb", Err(E::ControlCharacter)),
        (b"USER a\x1b[2J", Err(E::ControlCharacter)),
        (b"USER a\xc2\x85", Err(E::ControlCharacter)),
        (b"LIST 1\r2", Err(E::ControlCharacter)),
        (b"STAT\rX", Ok(C::Unknown("STAT?X".into()))),
        (b"PASS a\rb", pass(b"a\rb")),
    ]
}

#[test]
fn every_command_crlf_and_lf_all_splits() {
    for (line, expected) in cases() {
        for end in [&b"\r\n"[..], b"\n"] {
            let input = [line, end].concat();
            let got = all_ways(&input, &[Mode::Cmd]);
            assert_eq!(
                got,
                vec![Out::Cmd(expected.clone())],
                "input {:?}",
                String::from_utf8_lossy(&input)
            );
            // The pure line parser agrees with the receiver.
            assert_eq!(parse_command(line), expected);
        }
    }
}

#[test]
fn pipelined_commands_in_one_chunk() {
    let cases = cases();
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for (line, exp) in &cases {
        input.extend_from_slice(line);
        input.extend_from_slice(b"\r\n");
        expected.push(Out::Cmd(exp.clone()));
    }
    // A long pipelined stream: whole and byte-at-a-time (every two-way split
    // is also checked, ~2 KB of splits).
    assert_eq!(all_ways(&input, &[Mode::Cmd]), expected);
}

#[test]
fn typical_pipeline() {
    let got = all_ways(
        b"STAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n",
        &[Mode::Cmd],
    );
    let want: Vec<Out> = [
        Command::Stat,
        Command::List { msg: None },
        Command::Retr { msg: 1 },
        Command::Dele { msg: 1 },
        Command::Quit,
    ]
    .into_iter()
    .map(|c| Out::Cmd(Ok(c)))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn incomplete_line_waits() {
    let mut rx = Receiver::new();
    let mut input: &[u8] = b"STA";
    assert_eq!(rx.feed(&mut input), Ok(None));
    assert!(input.is_empty());
    assert!(rx.has_partial_line());
    assert_eq!(rx.buffered(), 3);
    let mut input: &[u8] = b"T\r";
    assert_eq!(rx.feed(&mut input), Ok(None));
    let mut input: &[u8] = b"\nNOOP";
    assert_eq!(rx.feed(&mut input), Ok(Some(Command::Stat)));
    assert_eq!(input, b"NOOP");
    assert_eq!(rx.feed(&mut input), Ok(None));
    // Empty input is not an error.
    let mut empty: &[u8] = b"";
    assert_eq!(rx.feed(&mut empty), Ok(None));
    rx.reset();
    assert!(!rx.has_partial_line());
}

fn too_long(limit: usize) -> Out {
    Out::Cmd(Err(ParseError::LineTooLong { limit }))
}

#[test]
fn line_length_bound_exact() {
    // USER + space + name + CRLF = exactly MAX_COMMAND_LINE: accepted.
    let name = "a".repeat(MAX_COMMAND_LINE - 7);
    let input = format!("USER {name}\r\n");
    assert_eq!(input.len(), MAX_COMMAND_LINE);
    assert_eq!(
        all_ways(input.as_bytes(), &[Mode::Cmd]),
        vec![Out::Cmd(Ok(Command::User { name: name.clone() }))]
    );
    // Same with a bare LF: one octet shorter, still accepted.
    let input = format!("USER {name}\n");
    assert_eq!(
        all_ways(input.as_bytes(), &[Mode::Cmd]),
        vec![Out::Cmd(Ok(Command::User { name: name.clone() }))]
    );
    // One more octet: rejected, and the next command still parses.
    let input = format!("USER {name}a\r\nNOOP\r\n");
    assert_eq!(input.len(), MAX_COMMAND_LINE + 1 + 6);
    assert_eq!(
        all_ways(input.as_bytes(), &[Mode::Cmd]),
        vec![too_long(MAX_COMMAND_LINE), Out::Cmd(Ok(Command::Noop))]
    );
    let input = format!("USER {name}aa\nNOOP\n");
    assert_eq!(
        all_ways(input.as_bytes(), &[Mode::Cmd]),
        vec![too_long(MAX_COMMAND_LINE), Out::Cmd(Ok(Command::Noop))]
    );
}

#[test]
fn overlong_line_is_discarded_without_buffering() {
    let mut rx = Receiver::new();
    let junk = vec![b'x'; 4096];
    for _ in 0..256 {
        // 1 MiB without a line end.
        let mut input: &[u8] = &junk;
        assert_eq!(rx.feed(&mut input), Ok(None));
        assert!(input.is_empty());
        assert!(rx.buffered() < MAX_COMMAND_LINE);
        assert!(rx.has_partial_line());
    }
    let mut input: &[u8] = b"yyy\r\nNOOP\r\nSTAT\r\n";
    assert_eq!(
        rx.feed(&mut input),
        Err(ParseError::LineTooLong {
            limit: MAX_COMMAND_LINE
        })
    );
    assert_eq!(rx.feed(&mut input), Ok(Some(Command::Noop)));
    assert_eq!(rx.feed(&mut input), Ok(Some(Command::Stat)));
    assert!(input.is_empty());
    assert!(!rx.has_partial_line());
}

#[test]
fn overlong_then_commands_all_splits() {
    let mut input = b"NOOP\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'z', 600));
    input.extend_from_slice(b"\r\nSTAT\r\nPASS x\r\n");
    assert_eq!(
        all_ways(&input, &[Mode::Cmd]),
        vec![
            Out::Cmd(Ok(Command::Noop)),
            too_long(MAX_COMMAND_LINE),
            Out::Cmd(Ok(Command::Stat)),
            Out::Cmd(Ok(Command::Pass {
                password: secret(b"x")
            })),
        ]
    );
}

#[test]
fn sasl_lines() {
    let cases: Vec<(&[u8], Result<SaslResponse, ParseError>)> = vec![
        (b"*", Ok(SaslResponse::Cancel)),
        (b"", Ok(SaslResponse::Data(secret(b"")))),
        (b"=", Ok(SaslResponse::Data(secret(b"")))),
        (b"dGVzdA==", Ok(SaslResponse::Data(secret(b"test")))),
        (
            b"AGFsaWNlAHNlY3JldA==",
            Ok(SaslResponse::Data(secret(b"\0alice\0secret"))),
        ),
        (b"dGVzdA", Err(ParseError::InvalidBase64)),
        (b"dGVz dA==", Err(ParseError::InvalidBase64)),
        (b"**", Err(ParseError::InvalidBase64)),
        (b"QUIT now", Err(ParseError::InvalidBase64)),
        // Four letters are valid base64: a command sent mid-exchange is data.
        (b"STAT", Ok(SaslResponse::Data(secret(b"I0\x13")))),
    ];
    for (line, expected) in cases {
        let input = [line, b"\r\n"].concat();
        assert_eq!(
            all_ways(&input, &[Mode::Sasl]),
            vec![Out::Sasl(expected.clone())]
        );
        assert_eq!(parse_sasl_line(line), expected);
    }
}

#[test]
fn sasl_line_bound() {
    use base64::Engine as _;
    // Longest accepted continuation line: MAX_SASL_LINE octets with CRLF.
    let raw = vec![7u8; (MAX_SASL_LINE - 2) / 4 * 3];
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    assert!(b64.len() + 2 <= MAX_SASL_LINE);
    assert!(b64.len() + 2 > MAX_COMMAND_LINE);
    let input = format!("{b64}\r\n");
    let (got, _) = drive(&[input.as_bytes()], &[Mode::Sasl]);
    assert_eq!(
        got,
        vec![Out::Sasl(Ok(SaslResponse::Data(Secret::new(raw))))]
    );
    // The same line is far too long as a command.
    let (got, _) = drive(&[input.as_bytes()], &[Mode::Cmd]);
    assert_eq!(got, vec![too_long(MAX_COMMAND_LINE)]);
    // Over the SASL bound.
    let input = format!("{}\r\n*\r\n", "A".repeat(MAX_SASL_LINE));
    let bytes: Vec<&[u8]> = input.as_bytes().chunks(1000).collect();
    let (got, _) = drive(&bytes, &[Mode::Sasl]);
    assert_eq!(
        got,
        vec![
            Out::Sasl(Err(ParseError::LineTooLong {
                limit: MAX_SASL_LINE
            })),
            Out::Sasl(Ok(SaslResponse::Cancel)),
        ]
    );
}

#[test]
fn auth_exchange_switches_modes() {
    let input = b"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nAUTH LOGIN\r\n*\r\nNOOP\r\n";
    let modes = [Mode::Cmd, Mode::Sasl, Mode::Cmd, Mode::Sasl, Mode::Cmd];
    assert_eq!(
        all_ways(input, &modes),
        vec![
            Out::Cmd(Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial_response: None
            })),
            Out::Sasl(Ok(SaslResponse::Data(secret(b"\0alice\0secret")))),
            Out::Cmd(Ok(Command::Auth {
                mechanism: Some("LOGIN".into()),
                initial_response: None
            })),
            Out::Sasl(Ok(SaslResponse::Cancel)),
            Out::Cmd(Ok(Command::Noop)),
        ]
    );
}

#[test]
fn passwords_never_in_debug() {
    let mut rx = Receiver::new();
    let mut input: &[u8] =
        b"PASS hunter2 x\r\nAPOP u c4c9334bac560ecc979e58001b3e22fb\r\nAUTH PLAIN AGh1bnRlcjIAaHVudGVyMg==\r\n";
    let mut dbg = String::new();
    while let Ok(Some(c)) = rx.feed(&mut input) {
        dbg.push_str(&format!("{c:?} {c:#?}"));
    }
    let mut input: &[u8] = b"aHVudGVyMg==\r\n";
    let r = rx.feed_sasl(&mut input);
    dbg.push_str(&format!("{r:?}"));
    assert!(dbg.contains("***"), "{dbg}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(!dbg.contains("c4c9334b"), "{dbg}");
    assert!(!dbg.contains("aHVudGVy"), "{dbg}");
}

#[test]
fn errors_map_to_safe_err_replies() {
    for (line, expected) in cases() {
        if let Err(e) = expected {
            let r = e.reply().to_bytes();
            assert!(r.starts_with(b"-ERR "), "{r:?}");
            assert!(r.ends_with(b"\r\n"));
            assert_eq!(r.iter().filter(|&&b| b == b'\n').count(), 1);
            // Never echoes the client's line.
            if line.len() > 8 {
                assert!(!r.windows(line.len()).any(|w| w == line));
            }
        }
    }
}

#[test]
fn buffer_never_exceeds_bound() {
    let mut rx = Receiver::new();
    let part = vec![b'a'; MAX_COMMAND_LINE - 1];
    let mut input: &[u8] = &part;
    assert_eq!(rx.feed(&mut input), Ok(None));
    // Still possibly valid if an LF comes next.
    assert_eq!(rx.buffered(), MAX_COMMAND_LINE - 1);
    let mut input: &[u8] = b"a";
    assert_eq!(rx.feed(&mut input), Ok(None));
    // Cannot be valid any more: dropped, only skipping to the line end.
    assert_eq!(rx.buffered(), 0);
    assert!(rx.has_partial_line());
    let mut input: &[u8] = b"\n";
    assert_eq!(
        rx.feed(&mut input),
        Err(ParseError::LineTooLong {
            limit: MAX_COMMAND_LINE
        })
    );
    // MAX_COMMAND_LINE - 1 octets + LF is exactly the bound: accepted.
    let mut rx = Receiver::new();
    let mut input: &[u8] = &part;
    assert_eq!(rx.feed(&mut input), Ok(None));
    let mut input: &[u8] = b"\n";
    assert_eq!(
        rx.feed(&mut input),
        Ok(Some(Command::Unknown("A".repeat(16))))
    );
}
