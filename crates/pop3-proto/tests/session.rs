//! Command table, session transitions, failure counter, maildrop, replies.

use pop3_proto::*;

fn samples() -> Vec<(Command, Verb)> {
    vec![
        (Command::User { name: "a".into() }, Verb::User),
        (
            Command::Pass {
                password: Secret::new(b"p".to_vec()),
            },
            Verb::Pass,
        ),
        (
            Command::Apop {
                name: "a".into(),
                digest: Secret::new("0".repeat(32)),
            },
            Verb::Apop,
        ),
        (
            Command::Auth {
                mechanism: None,
                initial_response: None,
            },
            Verb::Auth,
        ),
        (Command::Stls, Verb::Stls),
        (Command::Capa, Verb::Capa),
        (Command::Quit, Verb::Quit),
        (Command::Stat, Verb::Stat),
        (Command::List { msg: None }, Verb::List),
        (Command::Retr { msg: 1 }, Verb::Retr),
        (Command::Dele { msg: 1 }, Verb::Dele),
        (Command::Noop, Verb::Noop),
        (Command::Rset, Verb::Rset),
        (Command::Top { msg: 1, lines: 0 }, Verb::Top),
        (Command::Uidl { msg: None }, Verb::Uidl),
    ]
}

/// The states each command is valid in, written out from RFC 1939/2449/
/// 2595/5034 independently of the library's table.
fn rfc_states(v: Verb) -> &'static [State] {
    use State::*;
    match v {
        Verb::User | Verb::Pass | Verb::Apop | Verb::Auth | Verb::Stls => &[Authorization],
        Verb::Capa | Verb::Quit => &[Authorization, Transaction],
        Verb::Stat
        | Verb::List
        | Verb::Retr
        | Verb::Dele
        | Verb::Noop
        | Verb::Rset
        | Verb::Top
        | Verb::Uidl => &[Transaction],
    }
}

fn err_text(r: Result<(), Response>) -> String {
    match r {
        Ok(()) => "OK".into(),
        Err(resp) => {
            assert_eq!(resp.status, Status::Err);
            String::from_utf8(resp.to_bytes()).unwrap_or_default()
        }
    }
}

#[test]
fn table_has_every_verb_once() {
    let table = CommandTable::standard();
    assert_eq!(table.specs().len(), samples().len());
    for (cmd, verb) in samples() {
        assert_eq!(cmd.verb(), Some(verb));
        let spec = table.spec(verb).expect("row");
        assert_eq!(table.specs().iter().filter(|s| s.verb == verb).count(), 1);
        // The row's name parses back to the same verb.
        let parsed = match verb {
            Verb::Retr | Verb::Dele => parse_command(format!("{} 1", spec.name).as_bytes()),
            Verb::Top => parse_command(b"TOP 1 1"),
            Verb::User | Verb::Pass => parse_command(format!("{} x", spec.name).as_bytes()),
            Verb::Apop => parse_command(format!("APOP x {}", "0".repeat(32)).as_bytes()),
            _ => parse_command(spec.name.as_bytes()),
        };
        assert_eq!(parsed.map(|c| c.verb()), Ok(Some(verb)), "{}", spec.name);
    }
    assert_eq!(Command::Unknown("X".into()).verb(), None);
}

#[test]
fn states_match_rfc() {
    let table = CommandTable::standard();
    for (cmd, verb) in samples() {
        for state in [State::Authorization, State::Transaction, State::Update] {
            // TLS on, so only state rules apply (except STLS, tested below).
            let tls = verb != Verb::Stls;
            let got = err_text(table.check(&cmd, state, tls, false));
            let want = if state == State::Update {
                "-ERR Session is closing\r\n"
            } else if !rfc_states(verb).contains(&state) {
                if state == State::Authorization {
                    "-ERR Not logged in\r\n"
                } else {
                    "-ERR Command not valid in this state\r\n"
                }
            } else {
                "OK"
            };
            assert_eq!(got, want, "{verb:?} in {state:?}");
            assert_eq!(
                table.spec(verb).map(|s| s.allowed_in(state)),
                Some(rfc_states(verb).contains(&state))
            );
        }
    }
}

#[test]
fn unknown_command() {
    let table = CommandTable::standard();
    for state in [State::Authorization, State::Transaction] {
        assert_eq!(
            err_text(table.check(&Command::Unknown("LAST".into()), state, true, true)),
            "-ERR Unknown command\r\n"
        );
    }
}

#[test]
fn tls_rules() {
    let table = CommandTable::standard();
    let auth = |m: Option<&str>| Command::Auth {
        mechanism: m.map(str::to_owned),
        initial_response: None,
    };
    let refused = format!("-ERR [AUTH] {PLAINTEXT_DISALLOWED}\r\n");
    let a = State::Authorization;
    // (command, tls, plaintext_allowed, expected)
    let cases: Vec<(Command, bool, bool, &str)> = vec![
        (Command::User { name: "u".into() }, false, false, &refused),
        (Command::User { name: "u".into() }, false, true, "OK"),
        (Command::User { name: "u".into() }, true, false, "OK"),
        (
            Command::Pass {
                password: Secret::new(b"p".to_vec()),
            },
            false,
            false,
            &refused,
        ),
        (
            Command::Pass {
                password: Secret::new(b"p".to_vec()),
            },
            true,
            false,
            "OK",
        ),
        (
            Command::Pass {
                password: Secret::new(b"p".to_vec()),
            },
            false,
            true,
            "OK",
        ),
        (auth(Some("PLAIN")), false, false, &refused),
        (auth(Some("LOGIN")), false, false, &refused),
        (auth(Some("PLAIN")), false, true, "OK"),
        (auth(Some("PLAIN")), true, false, "OK"),
        (auth(Some("CRAM-MD5")), false, false, "OK"),
        (auth(Some("SCRAM-SHA-256")), false, false, "OK"),
        (auth(None), false, false, "OK"),
        (
            Command::Apop {
                name: "u".into(),
                digest: Secret::new("0".repeat(32)),
            },
            false,
            false,
            "OK",
        ),
        (Command::Stls, false, false, "OK"),
        (
            Command::Stls,
            true,
            false,
            "-ERR Command not permitted when TLS active\r\n",
        ),
        (
            Command::Stls,
            true,
            true,
            "-ERR Command not permitted when TLS active\r\n",
        ),
        (Command::Capa, false, false, "OK"),
        (Command::Quit, false, false, "OK"),
    ];
    for (cmd, tls, plain, want) in cases {
        assert_eq!(
            err_text(table.check(&cmd, a, tls, plain)),
            want,
            "{cmd:?} tls={tls} plain={plain}"
        );
    }
    // STLS after login is a state error, not a TLS error.
    assert_eq!(
        err_text(table.check(&Command::Stls, State::Transaction, false, false)),
        "-ERR Command not valid in this state\r\n"
    );
}

#[test]
fn session_flow() {
    let mut s = Session::new(false, false);
    assert_eq!(s.state(), State::Authorization);
    let user = Command::User {
        name: "alice".into(),
    };
    let pass = Command::Pass {
        password: Secret::new(b"pw".to_vec()),
    };
    // Plaintext refused before STLS.
    assert!(s.check(&user).is_err());
    assert!(s.check(&Command::Stls).is_ok());
    s.tls_started();
    assert!(s.tls_active());
    assert!(s.check(&Command::Stls).is_err());
    // PASS needs a USER first.
    assert_eq!(err_text(s.check(&pass)), "-ERR No username given\r\n");
    assert!(s.check(&user).is_ok());
    s.set_user("alice".into());
    assert!(s.check(&pass).is_ok());
    assert_eq!(s.take_user().as_deref(), Some("alice"));
    assert!(s.check(&pass).is_err());
    s.set_user("alice".into());
    s.clear_user();
    assert!(s.check(&pass).is_err());
    // PASS only immediately after USER: anything in between forgets it.
    s.set_user("alice".into());
    assert!(s.check(&Command::Capa).is_ok());
    assert_eq!(err_text(s.check(&pass)), "-ERR No username given\r\n");
    // USER immediately followed by PASS passes the check.
    s.set_user("alice".into());
    assert!(s.check(&user).is_ok());
    assert!(s.check(&pass).is_ok());
    assert!(s.check(&Command::Stat).is_err());
    s.logged_in();
    assert_eq!(s.state(), State::Transaction);
    assert!(s.check(&Command::Stat).is_ok());
    assert!(s.check(&user).is_err());
    assert_eq!(s.quit(), State::Update);
    assert!(s.check(&Command::Quit).is_err());
}

#[test]
fn quit_in_authorization_does_not_enter_update() {
    let mut s = Session::new(true, false);
    assert_eq!(s.quit(), State::Authorization);
}

#[test]
fn failure_counter_limit() {
    let mut c = FailureCounter::default();
    assert_eq!(c.limit(), MAX_FAILED_COMMANDS);
    for i in 1..MAX_FAILED_COMMANDS {
        assert_eq!(c.record(), FailureVerdict::Continue, "failure {i}");
    }
    assert_eq!(c.record(), FailureVerdict::Close);
    assert_eq!(c.record(), FailureVerdict::Close);
    assert_eq!(c.count(), MAX_FAILED_COMMANDS + 1);
    let mut c = FailureCounter::new(0);
    assert_eq!(c.record(), FailureVerdict::Close);
    let mut s = Session::new(true, true);
    for _ in 1..MAX_FAILED_COMMANDS {
        assert_eq!(s.record_failure(), FailureVerdict::Continue);
    }
    assert_eq!(s.record_failure(), FailureVerdict::Close);
    assert_eq!(s.failures().count(), MAX_FAILED_COMMANDS);
}

fn drop3() -> Maildrop {
    Maildrop::new([(120u64, "uid-a"), (200, "uid-b"), (7, ".dot")]).expect("valid")
}

fn s(out: &[u8]) -> &str {
    std::str::from_utf8(out).unwrap_or("<non-utf8>")
}

#[test]
fn maildrop_answers() {
    let mut m = drop3();
    assert_eq!(m.len(), 3);
    assert_eq!(m.stat(), (3, 327));
    let mut out = Vec::new();
    m.answer_stat(&mut out);
    assert_eq!(s(&out), "+OK 3 327\r\n");

    out.clear();
    assert!(m.answer_list(None, &mut out));
    assert_eq!(
        s(&out),
        "+OK 3 messages (327 octets)\r\n1 120\r\n2 200\r\n3 7\r\n.\r\n"
    );
    out.clear();
    assert!(m.answer_list(Some(2), &mut out));
    assert_eq!(s(&out), "+OK 2 200\r\n");
    out.clear();
    assert!(!m.answer_list(Some(4), &mut out));
    assert_eq!(s(&out), "-ERR no such message\r\n");
    out.clear();
    assert!(!m.answer_list(Some(0), &mut out));
    assert_eq!(s(&out), "-ERR no such message\r\n");
    out.clear();
    assert!(m.answer_uidl(None, &mut out));
    // ".dot" is not at line start, so no stuffing is needed.
    assert_eq!(s(&out), "+OK\r\n1 uid-a\r\n2 uid-b\r\n3 .dot\r\n.\r\n");
    out.clear();
    assert!(m.answer_uidl(Some(1), &mut out));
    assert_eq!(s(&out), "+OK 1 uid-a\r\n");

    // DELE 2: excluded everywhere, numbers do not shift.
    assert_eq!(m.dele(2), Ok(()));
    assert_eq!(m.stat(), (2, 127));
    assert_eq!(m.dele(2), Err(MaildropError::AlreadyDeleted(2)));
    assert_eq!(m.get(2), Err(MaildropError::AlreadyDeleted(2)));
    assert_eq!(m.dele(9), Err(MaildropError::NoSuchMessage));
    assert_eq!(m.get(3).map(|x| x.uid.as_str()), Ok(".dot"));
    out.clear();
    assert!(m.answer_list(None, &mut out));
    assert_eq!(
        s(&out),
        "+OK 2 messages (127 octets)\r\n1 120\r\n3 7\r\n.\r\n"
    );
    out.clear();
    assert!(!m.answer_list(Some(2), &mut out));
    assert_eq!(s(&out), "-ERR message 2 already deleted\r\n");
    out.clear();
    assert!(m.answer_uidl(None, &mut out));
    assert_eq!(s(&out), "+OK\r\n1 uid-a\r\n3 .dot\r\n.\r\n");
    out.clear();
    assert!(!m.answer_uidl(Some(2), &mut out));

    // RSET undeletes.
    m.rset();
    assert_eq!(m.stat(), (3, 327));
    assert!(m.to_expunge().is_empty());
    assert!(m.get(2).is_ok());

    // QUIT: expunge list.
    m.dele(3).ok();
    m.dele(1).ok();
    assert_eq!(m.to_expunge(), vec![1, 3]);
    assert_eq!(m.stat(), (1, 200));
    assert_eq!(m.live().map(|(n, _)| n).collect::<Vec<_>>(), vec![2]);
}

#[test]
fn empty_maildrop() {
    let m = Maildrop::new(Vec::<(u64, String)>::new()).expect("empty ok");
    assert!(m.is_empty());
    let mut out = Vec::new();
    m.answer_stat(&mut out);
    assert!(m.answer_list(None, &mut out));
    assert!(!m.answer_list(Some(1), &mut out));
    assert_eq!(
        s(&out),
        "+OK 0 0\r\n+OK 0 messages (0 octets)\r\n.\r\n-ERR no such message\r\n"
    );
}

#[test]
fn maildrop_rejects_bad_uids() {
    let long = "x".repeat(MAX_UID_LEN + 1);
    let ok = "x".repeat(MAX_UID_LEN);
    assert!(Maildrop::new([(1u64, ok.as_str())]).is_ok());
    for bad in ["", "a b", "tab\t", "\u{e9}", long.as_str(), "a\r\n"] {
        assert_eq!(
            Maildrop::new([(1u64, "good"), (2, bad)]),
            Err(MaildropError::InvalidUid(2)),
            "{bad:?}"
        );
    }
}

#[test]
fn responses() {
    assert_eq!(Response::ok("").to_bytes(), b"+OK\r\n");
    assert_eq!(Response::ok("hi there").to_bytes(), b"+OK hi there\r\n");
    assert_eq!(Response::err("no").to_bytes(), b"-ERR no\r\n");
    let codes = [
        (RespCode::Auth, "-ERR [AUTH] x\r\n"),
        (RespCode::SysTemp, "-ERR [SYS/TEMP] x\r\n"),
        (RespCode::SysPerm, "-ERR [SYS/PERM] x\r\n"),
        (RespCode::InUse, "-ERR [IN-USE] x\r\n"),
        (RespCode::LoginDelay, "-ERR [LOGIN-DELAY] x\r\n"),
    ];
    for (c, want) in codes {
        assert_eq!(s(&Response::err_code(c, "x").to_bytes()), want);
    }
    // No line injection through the text.
    assert_eq!(
        Response::err("a\r\n+OK evil\0").to_bytes(),
        b"-ERR a  +OK evil \r\n"
    );
    // Length bound, cut on a character boundary.
    let long = "\u{e9}".repeat(600);
    let r = Response::err_code(RespCode::SysTemp, long).to_bytes();
    assert!(r.len() <= MAX_RESPONSE_LINE, "{}", r.len());
    assert!(r.len() >= MAX_RESPONSE_LINE - 1);
    assert!(std::str::from_utf8(&r).is_ok());
    assert!(r.ends_with(b"\r\n"));
}

#[test]
fn continuation() {
    let mut out = Vec::new();
    encode_continuation(b"", &mut out);
    encode_continuation(b"test", &mut out);
    assert_eq!(s(&out), "+ \r\n+ dGVzdA==\r\n");
}

#[test]
fn multiline_stuffing() {
    let mut out = Vec::new();
    encode_multiline(&Response::ok("x"), [".a", "b", ".", "c\nd"], &mut out);
    assert_eq!(s(&out), "+OK x\r\n..a\r\nb\r\n..\r\nc d\r\n.\r\n");
}

fn full_caps() -> Capabilities {
    Capabilities {
        top: true,
        uidl: true,
        user: true,
        resp_codes: true,
        auth_resp_code: true,
        pipelining: true,
        sasl: vec!["PLAIN".into(), "LOGIN".into(), "SCRAM-SHA-256".into()],
        stls: true,
        expire: Some(Expire::Never),
        login_delay: Some(900),
        per_user_policy: true,
        implementation: Some("postern".into()),
    }
}

#[test]
fn capa_encoding() {
    let mut out = Vec::new();
    full_caps().encode(&mut out);
    assert_eq!(
        s(&out),
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN LOGIN SCRAM-SHA-256\r\n\
         RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nEXPIRE NEVER\r\n\
         LOGIN-DELAY 900 USER\r\nIMPLEMENTATION postern\r\n.\r\n"
    );
    let mut c = full_caps();
    c.expire = Some(Expire::Days(30));
    c.per_user_policy = false;
    c.sasl.clear();
    let mut out = Vec::new();
    c.encode(&mut out);
    let text = s(&out);
    assert!(text.contains("\r\nEXPIRE 30\r\n"), "{text}");
    assert!(text.contains("\r\nLOGIN-DELAY 900\r\n"), "{text}");
    assert!(!text.contains("SASL"), "{text}");
    let mut out = Vec::new();
    Capabilities::default().encode(&mut out);
    assert_eq!(s(&out), "+OK Capability list follows\r\n.\r\n");
}

#[test]
fn capa_advertised_per_situation() {
    let c = full_caps();
    // Plaintext connection, plaintext auth disabled: STLS shown, no USER,
    // no PLAIN/LOGIN.
    let a = c.advertised(State::Authorization, false, false);
    assert!(a.stls && !a.user);
    assert_eq!(a.sasl, vec!["SCRAM-SHA-256".to_owned()]);
    // Plaintext allowed.
    let a = c.advertised(State::Authorization, false, true);
    assert!(a.stls && a.user);
    assert_eq!(a.sasl.len(), 3);
    // After STLS.
    let a = c.advertised(State::Authorization, true, false);
    assert!(!a.stls && a.user);
    assert_eq!(a.sasl.len(), 3);
    // Logged in: no login capabilities, per-user tag dropped.
    let a = c.advertised(State::Transaction, true, false);
    assert!(!a.stls && !a.user && a.sasl.is_empty() && !a.per_user_policy);
    assert!(a.top && a.uidl && a.pipelining && a.resp_codes);
    assert!(is_cleartext_mechanism("plain"));
    assert!(!is_cleartext_mechanism("CRAM-MD5"));
}
