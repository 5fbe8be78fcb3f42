//! imapd with a real client: Python's imaplib over STARTTLS and implicit TLS
//! (certificate chain verified against the test CA), plus poplib for the
//! POP3 UIDL = IMAP UID/UIDVALIDITY relation.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use postern_tests::{Daemon, TestEnv};

fn setup(env: &TestEnv, user: &str, password: &str) -> PathBuf {
    postern_tests::stack::setup_user(env, user, password)
}

#[test]
fn imaplib_starttls_list_select_fetch_store_expunge_idle_uidl() {
    let env = TestEnv::new();
    let password = "correct horse";
    let maildir = setup(&env, "alice@example.test", password);
    let expected = env.path().join("expected");
    std::fs::create_dir_all(&expected).unwrap();
    // Delivered with CRLF; stored with LF; IMAP must send the CRLF form.
    let msgs: Vec<Vec<u8>> = vec![
        b"Subject: first\r\nFrom: a@example.test\r\n\r\nbody line 1\r\nbody line 2\r\n".to_vec(),
        b"Subject: second\r\n\r\n.\r\n..\r\nend\r\n".to_vec(),
        {
            let mut big = b"Subject: big\r\nX-8bit: caf\xc3\xa9\r\n\r\n".to_vec();
            for i in 0..2000 {
                big.extend_from_slice(format!("line {i} {}\r\n", "x".repeat(i % 990)).as_bytes());
            }
            big
        },
        b"Subject: empty body\r\n\r\n".to_vec(),
    ];
    for (i, m) in msgs.iter().enumerate() {
        mailstore::deliver(&maildir, "INBOX", m).unwrap();
        std::fs::write(expected.join(format!("{}.eml", i + 1)), m).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _authd = Daemon::start(&env, "authd");
    let imapd = Daemon::start(&env, "imapd");
    let pop3d = Daemon::start(&env, "pop3d");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/imap_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(env.ports["imap"].to_string())
        .arg(env.ports["imaps"].to_string())
        .arg(env.ports["pop3"].to_string())
        .arg(&env.cert.ca_file)
        .arg("alice@example.test")
        .arg(password)
        .arg(&expected)
        .arg(&maildir)
        .output()
        .expect("python3");
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("all imap checks passed"),
        "imaplib checks failed:\n{}{}\n--- imapd ---\n{}\n--- pop3d ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        imapd.output(),
        pop3d.output()
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}

/// Raw protocol: LOGINDISABLED before TLS, literals (synchronizing and
/// LITERAL+), SASL-IR and AUTH=LOGIN when plaintext is allowed, bad input,
/// the literal size bound.
#[test]
fn raw_literals_sasl_bounds() {
    use std::io::{BufRead, BufReader};
    let env = TestEnv::new();
    let maildir = setup(&env, "bob@example.test", "pw-bob");
    mailstore::deliver(&maildir, "INBOX", b"Subject: hi\r\n\r\nhello\r\n").unwrap();
    let _authd = Daemon::start(&env, "authd");
    let _imapd = Daemon::start(&env, "imapd");
    let connect = |port: u16| {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut greeting = String::new();
        r.read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("* OK [CAPABILITY "), "{greeting}");
        assert!(greeting.contains("LOGINDISABLED"), "{greeting}");
        (w, r)
    };
    let line = |r: &mut BufReader<std::net::TcpStream>| {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        l
    };
    let (mut w, mut r) = connect(env.ports["imap"]);
    // Synchronizing literal gets "+", LITERAL+ does not; LOGIN still refused.
    w.write_all(b"a LOGIN {16}\r\n").unwrap();
    assert!(line(&mut r).starts_with("+ "));
    w.write_all(b"bob@example.test {6+}\r\npw-bob\r\n").unwrap();
    let l = line(&mut r);
    assert!(l.starts_with("a NO [PRIVACYREQUIRED]"), "{l}");
    w.write_all(b"b AUTHENTICATE PLAIN AGJvYkBleGFtcGxlLnRlc3QAcHctYm9i\r\n")
        .unwrap();
    let l = line(&mut r);
    assert!(l.starts_with("b NO [PRIVACYREQUIRED]"), "{l}");
    // Bad input answers BAD and the session goes on.
    w.write_all(b"c FETCH 1 (FLAGS)\r\nd \"unterminated\r\n\r\ne NOOP\r\n")
        .unwrap();
    let l = line(&mut r);
    assert!(l.starts_with("c BAD"), "{l}");
    let l = line(&mut r);
    assert!(l.starts_with("d BAD"), "{l}");
    let mut l = line(&mut r);
    if l.starts_with("* BAD") {
        l = line(&mut r);
    }
    assert!(l.starts_with("e OK"), "{l}");
    // A literal over the bound: `{n}` is refused before its data is sent
    // (tagged BAD, no `+`, the session goes on); `{n+}` data is already on
    // its way, so that one ends the connection.
    w.write_all(b"f LOGIN {99999999}\r\n").unwrap();
    let l = line(&mut r);
    assert!(l.starts_with("f BAD"), "{l}");
    w.write_all(b"g NOOP\r\n").unwrap();
    let l = line(&mut r);
    assert!(l.starts_with("g OK"), "{l}");
    w.write_all(b"h LOGIN bob {99999999+}\r\n").unwrap();
    let l = line(&mut r);
    assert!(l.starts_with("h BAD"), "{l}");
    let l = line(&mut r);
    assert!(l.starts_with("* BYE"), "{l}");
    assert_eq!(line(&mut r), "");
    // A command line over 64 KiB: tagged BAD, then BYE.
    let (mut w, mut r) = connect(env.ports["imap"]);
    let mut long = b"i NOOP ".to_vec();
    long.resize(70_000, b'x');
    let _ = w.write_all(&long);
    let l = line(&mut r);
    assert!(l.starts_with("i BAD"), "{l}");
    assert!(line(&mut r).starts_with("* BYE"));

    // With plaintext allowed: SASL-IR PLAIN works, AUTH=LOGIN with challenges.
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text.replace("[imapd]\n", "[imapd]\nallow_plaintext_auth = true\n"),
    )
    .unwrap();
    drop(_imapd);
    let _imapd = Daemon::start(&env, "imapd");
    let s = std::net::TcpStream::connect(("127.0.0.1", env.ports["imap"])).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let g = line(&mut r);
    assert!(
        g.contains("AUTH=PLAIN") && !g.contains("LOGINDISABLED"),
        "{g}"
    );
    w.write_all(b"a AUTHENTICATE PLAIN AGJvYkBleGFtcGxlLnRlc3QAd3Jvbmc=\r\n")
        .unwrap();
    let l = line(&mut r);
    assert!(l.starts_with("a NO [AUTHENTICATIONFAILED]"), "{l}");
    w.write_all(b"b AUTHENTICATE LOGIN\r\n").unwrap();
    assert!(line(&mut r).starts_with("+ "));
    w.write_all(b"Ym9iQGV4YW1wbGUudGVzdA==\r\n").unwrap();
    assert!(line(&mut r).starts_with("+ "));
    w.write_all(b"cHctYm9i\r\n").unwrap();
    let l = line(&mut r);
    assert!(l.starts_with("b OK"), "{l}");
    w.write_all(b"c EXAMINE INBOX\r\nd FETCH 1 (BODY[])\r\ne FETCH 1 (FLAGS)\r\nf LOGOUT\r\n")
        .unwrap();
    let mut all = String::new();
    loop {
        let l = line(&mut r);
        if l.is_empty() {
            break;
        }
        all.push_str(&l);
    }
    assert!(all.contains("c OK [READ-ONLY]"), "{all}");
    assert!(all.contains("hello\r\n"), "{all}");
    // EXAMINE is read-only: BODY[] does not set \Seen.
    assert!(all.contains("* 1 FETCH (FLAGS ())"), "{all}");
    assert!(all.contains("f OK"), "{all}");
}
