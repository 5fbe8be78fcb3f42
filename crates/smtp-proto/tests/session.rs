//! Session engine tests with scripted hooks; every transcript is also produced
//! with the input split at every byte and byte by byte.

use smtp_proto::*;

#[derive(Debug, PartialEq, Eq)]
struct Transcript {
    output: Vec<u8>,
    message: Vec<u8>,
    events: Vec<String>,
    closed: bool,
}

fn hook(ev: &Event) -> Reply {
    match ev {
        Event::Hello(Command::Helo(_)) => Reply::helo("mx.test"),
        Event::Hello(_) => Reply::ehlo(
            "mx.test",
            "",
            &[Capability::Pipelining, Capability::Chunking],
        ),
        Event::StartTls => Reply::starttls_ready(),
        Event::Auth {
            initial_response: Some(_),
            ..
        } => Reply::auth_ok(),
        Event::Auth {
            initial_response: None,
            ..
        } => Reply::auth_challenge(""),
        Event::AuthResponse(r) if r == "*" => Reply::syntax("AUTH cancelled"),
        Event::AuthResponse(_) => Reply::auth_ok(),
        Event::Mail { params, .. } if !params.unknown.is_empty() => {
            Reply::unsupported_parameter(&params.unknown[0].0)
        }
        Event::Mail { .. } => Reply::sender_ok(),
        Event::Rcpt { to, .. } if to.local.starts_with("bad") => {
            Reply::user_unknown(&to.to_string())
        }
        Event::Rcpt { .. } => Reply::recipient_ok(),
        Event::DataStart { bdat: false } => Reply::start_data(),
        Event::DataStart { bdat: true } => Reply::ok(),
        Event::DataEnd(_) => Reply::queued("Q1"),
        _ => Reply::ok(),
    }
}

fn run_chunks(cfg: &SessionConfig, chunks: &[&[u8]]) -> Transcript {
    let mut s = Session::new(cfg.clone());
    let mut t = Transcript {
        output: Vec::new(),
        message: Vec::new(),
        events: Vec::new(),
        closed: false,
    };
    for c in chunks {
        s.feed(c);
        while let Some(ev) = s.poll() {
            match &ev {
                Event::Data(d) => t.message.extend_from_slice(d),
                e => t.events.push(format!("{e:?}")),
            }
            if ev.needs_reply() {
                let n = if matches!(ev, Event::DataEnd(_)) {
                    s.replies_expected()
                } else {
                    1
                };
                for _ in 0..n {
                    s.reply(hook(&ev));
                }
            }
            if s.wants_flush() {
                t.output.extend(s.take_output());
            }
        }
        t.output.extend(s.take_output());
        if s.is_closed() {
            break;
        }
    }
    t.closed = s.is_closed();
    t
}

fn run(cfg: &SessionConfig, input: &[u8]) -> Transcript {
    let reference = run_chunks(cfg, &[input]);
    for i in 0..=input.len() {
        assert_eq!(
            run_chunks(cfg, &[&input[..i], &input[i..]]),
            reference,
            "split at {i}"
        );
    }
    let bytes: Vec<&[u8]> = input.iter().map(std::slice::from_ref).collect();
    assert_eq!(run_chunks(cfg, &bytes), reference, "byte at a time");
    reference
}

fn lines(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out)
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn smtp_pipelined_transaction() {
    let t = run(
        &SessionConfig::default(),
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRCPT TO:<bad@y>\r\nDATA\r\nHello\r\n..dot\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(
        lines(&t.output),
        [
            "250-mx.test",
            "250-PIPELINING",
            "250 CHUNKING",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "550 5.1.1 <bad@y>: Recipient address rejected: User unknown",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as Q1",
            "221 2.0.0 Bye",
        ]
    );
    assert_eq!(t.message, b"Hello\r\n.dot\r\n");
    assert!(t.closed);
}

#[test]
fn sequencing_errors() {
    let t = run(
        &SessionConfig::default(),
        b"MAIL FROM:<a@b>\r\nHELO c\r\nRCPT TO:<x@y>\r\nDATA\r\nMAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nFOO\r\nLHLO x\r\nMAIL FROM:<a@b> XYZ=1\r\nRSET\r\nRCPT TO:<x@y>\r\n",
    );
    assert_eq!(
        lines(&t.output),
        [
            "503 5.5.1 Error: send HELO/EHLO first",
            "250 mx.test",
            "503 5.5.1 Error: need MAIL command",
            "503 5.5.1 Error: need RCPT command",
            "250 2.1.0 Ok",
            "503 5.5.1 Error: nested MAIL command",
            "500 5.5.2 Error: command not recognized",
            "500 5.5.2 Error: command not recognized",
            "503 5.5.1 Error: nested MAIL command",
            "250 2.0.0 Ok",
            "503 5.5.1 Error: need MAIL command",
        ]
    );
    let t = run(
        &SessionConfig::default(),
        b"EHLO c\r\nMAIL FROM:<a@b> XYZ=1\r\nMAIL FROM:<a@b\r\n",
    );
    assert_eq!(
        lines(&t.output)[3..],
        [
            "555 5.5.4 Unsupported option: XYZ",
            "501 5.1.7 Bad sender address syntax: missing >"
        ]
    );
}

#[test]
fn lmtp_per_recipient_replies() {
    let cfg = SessionConfig {
        lmtp: true,
        ..SessionConfig::default()
    };
    let t = run(
        &cfg,
        b"EHLO c\r\nLHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<u1@d>\r\nRCPT TO:<bad@d>\r\nRCPT TO:<u2@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
    );
    let l = lines(&t.output);
    assert_eq!(l[0], "500 5.5.2 Error: command not recognized");
    assert_eq!(
        &l[l.len() - 4..],
        [
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as Q1",
            "250 2.0.0 Ok: queued as Q1",
            "221 2.0.0 Bye"
        ]
    );
    // Before LHLO.
    let t = run(&cfg, b"MAIL FROM:<>\r\n");
    assert_eq!(lines(&t.output), ["503 5.5.1 Error: send LHLO first"]);
}

#[test]
fn starttls_drops_pipelined_plaintext() {
    let cfg = SessionConfig {
        tls_required: true,
        ..SessionConfig::default()
    };
    let mut s = Session::new(cfg);
    s.feed(b"EHLO c\r\nMAIL FROM:<a@b>\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\n");
    let mut events = Vec::new();
    while let Some(ev) = s.poll() {
        s.reply(hook(&ev));
        events.push(ev);
    }
    assert_eq!(
        events,
        [Event::Hello(Command::Ehlo("c".into())), Event::StartTls]
    );
    let out = lines(&s.take_output());
    assert_eq!(
        out[out.len() - 2..],
        [
            "530 5.7.0 Must issue a STARTTLS command first",
            "220 2.0.0 Ready to start TLS"
        ]
    );
    s.tls_started();
    s.feed(b"MAIL FROM:<a@b>\r\nEHLO c\r\nMAIL FROM:<a@b>\r\n");
    let mut events = Vec::new();
    while let Some(ev) = s.poll() {
        s.reply(hook(&ev));
        events.push(ev);
    }
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(lines(&s.take_output())[0].starts_with("503 5.5.1"));
}

#[test]
fn auth_exchange_and_requirement() {
    let cfg = SessionConfig {
        auth_required: true,
        ..SessionConfig::default()
    };
    let t = run(&cfg, b"EHLO c\r\nMAIL FROM:<a@b>\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN\r\ndGVzdA==\r\nAUTH PLAIN x\r\nMAIL FROM:<a@b>\r\n");
    assert_eq!(
        lines(&t.output)[3..],
        [
            "530 5.7.0 Authentication required",
            "334",
            "501 5.5.4 Syntax: AUTH cancelled",
            "334",
            "235 2.7.0 Authentication successful",
            "503 5.5.1 Error: already authenticated",
            "250 2.1.0 Ok",
        ]
    );
}

#[test]
fn hard_error_limit() {
    let cfg = SessionConfig {
        hard_error_limit: 3,
        ..SessionConfig::default()
    };
    let t = run(&cfg, b"A\r\nB\r\nC\r\nNOOP\r\n");
    assert_eq!(
        lines(&t.output),
        [
            "500 5.5.2 Error: command not recognized",
            "500 5.5.2 Error: command not recognized",
            "500 5.5.2 Error: command not recognized",
            "421 4.7.0 localhost Error: too many errors",
        ]
    );
    assert!(t.closed);
}

#[test]
fn size_limit_and_smuggling_in_session() {
    let cfg = SessionConfig {
        message_size_limit: 10,
        ..SessionConfig::default()
    };
    let t = run(
        &cfg,
        b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n0123456789abc\r\n.\r\nNOOP\r\n",
    );
    assert_eq!(
        lines(&t.output)[4..],
        ["552 5.3.4 Error: message file too big", "250 2.0.0 Ok"]
    );
    assert!(t.events.iter().any(|e| e.contains("DataAborted")));
    // Smuggled "end of data" + MAIL is message content; the bare LF rejects the message.
    let t = run(
        &SessionConfig::default(),
        b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\nx\n.\nMAIL FROM:<evil@x>\r\n.\r\nQUIT\r\n",
    );
    assert_eq!(
        lines(&t.output)[4..],
        ["550 5.5.2 Error: bare <LF> received", "221 2.0.0 Bye"]
    );
    assert!(!t.events.iter().any(|e| e.contains("evil")));
}

#[test]
fn bdat_in_session() {
    let t = run(
        &SessionConfig::default(),
        b"EHLO c\r\nBDAT 3\r\nabcMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nBDAT 5\r\nab\r\n.BDAT 2 LAST\r\n\r\nQUIT\r\n",
    );
    assert_eq!(
        lines(&t.output)[3..],
        [
            "503 5.5.1 Error: need RCPT command",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.0.0 Ok: 5 octets received",
            "250 2.0.0 Ok: queued as Q1",
            "221 2.0.0 Bye",
        ]
    );
    assert_eq!(t.message, b"ab\r\n.\r\n");
    // DATA after BDAT is out of sequence; BDAT 0 first does not restart the transaction.
    let t = run(
        &SessionConfig::default(),
        b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nBDAT 0\r\nDATA\r\nBDAT 2 LAST\r\nhi",
    );
    assert_eq!(
        lines(&t.output)[5..],
        [
            "250 2.0.0 Ok: 0 octets received",
            "503 5.5.1 Error: BDAT transaction in progress",
            "250 2.0.0 Ok: queued as Q1"
        ]
    );
    assert_eq!(
        t.events.iter().filter(|e| e.contains("DataStart")).count(),
        1
    );
    assert_eq!(t.message, b"hi");
}

#[test]
fn flush_at_group_end() {
    let mut s = Session::new(SessionConfig::default());
    s.feed(b"HELO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n");
    let mut flushes = Vec::new();
    while let Some(ev) = s.poll() {
        s.reply(hook(&ev));
        if s.wants_flush() {
            flushes.push(lines(&s.take_output()));
        }
    }
    assert_eq!(
        flushes,
        [
            vec!["250 mx.test".to_string()],
            vec![
                "250 2.1.0 Ok".into(),
                "250 2.1.5 Ok".into(),
                "354 End data with <CR><LF>.<CR><LF>".into()
            ]
        ]
    );
}

#[test]
fn pseudo_random_sessions_terminate() {
    // Stable stand-in for the `session` fuzz target: random mixes of commands and
    // message fragments, SMTP and LMTP, must neither panic nor loop, and every
    // output ends at a line boundary.
    let frags: &[&[u8]] = &[
        b"EHLO c\r\n",
        b"LHLO c\r\n",
        b"MAIL FROM:<a@b>\r\n",
        b"RCPT TO:<x@y>\r\n",
        b"RCPT TO:<bad@y>\r\n",
        b"DATA\r\n",
        b"BDAT 3\r\n",
        b"BDAT 2 LAST\r\n",
        b"AUTH PLAIN\r\n",
        b"STARTTLS\r\n",
        b"RSET\r\n",
        b".\r\n",
        b"..\r\n",
        b"\n.\n",
        b"x",
        b"\r",
        b"\n",
        b"\xff",
        b"NOOP\r\n",
        b"QUIT\r\n",
    ];
    let mut seed: u64 = 42;
    for round in 0..3000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut input = Vec::new();
        let mut x = seed;
        for _ in 0..((seed >> 60) + 4) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            input.extend_from_slice(frags[(x >> 33) as usize % frags.len()]);
        }
        let cfg = SessionConfig {
            lmtp: round % 2 == 0,
            message_size_limit: 20,
            ..SessionConfig::default()
        };
        let t = run_chunks(
            &cfg,
            &[&input[..input.len() / 2], &input[input.len() / 2..]],
        );
        assert!(t.output.is_empty() || t.output.ends_with(b"\r\n"));
    }
}

#[test]
fn junk_commands_count_as_errors_beyond_the_limit() {
    let cfg = SessionConfig {
        junk_command_limit: 2,
        hard_error_limit: 2,
        ..SessionConfig::default()
    };
    // Two junk commands are free; the third and fourth count as errors and the
    // fourth reaches the hard error limit: 421 and close, nothing after it runs.
    let t = run(&cfg, b"EHLO c\r\nNOOP\r\nRSET\r\nNOOP\r\nHELP\r\nNOOP\r\n");
    let l = lines(&t.output);
    assert_eq!(
        l.last().unwrap(),
        "421 4.7.0 localhost Error: too many errors"
    );
    assert_eq!(
        l.iter().filter(|x| x.starts_with("250 ")).count(),
        4,
        "{l:?}"
    );
    assert!(t.closed);
    // A junk command within the limit is answered normally.
    let t = run(&SessionConfig::default(), b"NOOP\r\nNOOP\r\nQUIT\r\n");
    assert_eq!(
        lines(&t.output),
        ["250 2.0.0 Ok", "250 2.0.0 Ok", "221 2.0.0 Bye"]
    );
}

#[test]
fn a_421_reply_from_the_caller_closes_the_session() {
    let mut s = Session::new(SessionConfig::default());
    s.feed(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    let mut n = 0;
    while let Some(ev) = s.poll() {
        n += 1;
        match ev {
            Event::Hello(_) => s.reply(Reply::ehlo("mx", "", &[])),
            _ => s.reply(Reply::new(
                421,
                Some(EnhancedCode(4, 7, 0)),
                "mx Error: too many connections",
            )),
        }
    }
    assert_eq!(n, 2, "nothing is processed after the 421");
    assert!(s.is_closed());
    assert_eq!(
        lines(&s.take_output()),
        ["250 mx", "421 4.7.0 mx Error: too many connections"]
    );
}
