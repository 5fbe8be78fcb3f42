//! smtpd with Debian's swaks and raw sockets: byte-exact delivery of 8-bit,
//! dot-stuffing edge cases, 998-char lines and a 10 MiB message; unknown
//! user 550; relay refused; alias delivered to both targets; submission AUTH
//! PLAIN and LOGIN right and wrong with certificate verification; the
//! pipelining sequence after end-of-data; BDAT; Date/Message-ID added on
//! submission only; connection, recipient, error and timeout limits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use postern_tests::stack::{files, mailctl, maildir, setup_users, wait_for_messages};
use postern_tests::{Daemon, TestEnv};

/// Start authd, lmtp-delivery, queue-manager, smtpd. `smtpd_keys` go into
/// the `[smtpd]` section. Loopback is not in mynetworks, so relay refusal
/// and the per-IP limits are visible.
fn start(env: &TestEnv, smtpd_keys: &str, global_keys: &str) -> Vec<Daemon> {
    // Routing (the default "auto" transport) expands aliases; short
    // brute-force delays keep the wrong-password cases quick.
    setup_users(
        env,
        "\n[authd]\nauth_failure_delay = \"10ms\"\nauth_failure_delay_max = \"40ms\"\n",
    );
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let text = text
        .replace(
            "[global]\n",
            &format!("[global]\nmynetworks = [\"192.0.2.0/24\"]\n{global_keys}\n"),
        )
        .replace("[smtpd]\n", &format!("[smtpd]\n{smtpd_keys}\n"));
    std::fs::write(&env.config_path, text).unwrap();
    ["authd", "lmtp-delivery", "queue-manager", "smtpd"]
        .into_iter()
        .map(|d| Daemon::start(env, d))
        .collect()
}

/// Run swaks; (exit code, transcript).
fn swaks(args: &[&str]) -> (i32, String) {
    let out = Command::new("swaks")
        .args(args)
        .output()
        .expect("swaks is installed (scripts/test-deps.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// swaks sends `--data` as is with `--no-data-fixup`: no dot-stuffing and no
/// terminating `.` line. Do both here, as any SMTP client must.
fn stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16);
    for line in body.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The stored message without our three trace lines, CRLF line ends.
fn stored_after_trace(path: &std::path::Path) -> Vec<u8> {
    let stored = std::fs::read(path).unwrap();
    let text = stored;
    // Return-Path, Delivered-To, then the Received field (folded lines).
    let mut lines = text.split_inclusive(|&b| b == b'\n').peekable();
    let mut out = Vec::new();
    let mut skipped = 0;
    while let Some(l) = lines.next() {
        if skipped < 3 {
            if l.starts_with(b"Received:") {
                while lines.peek().is_some_and(|n| n[0] == b' ' || n[0] == b'\t') {
                    lines.next();
                }
            }
            skipped += 1;
            continue;
        }
        out.extend_from_slice(l);
    }
    // The store keeps LF line ends; compare in CRLF.
    let mut crlf = Vec::with_capacity(out.len() + out.len() / 40);
    for &b in &out {
        if b == b'\n' {
            crlf.push(b'\r');
        }
        crlf.push(b);
    }
    crlf
}

#[test]
fn swaks_delivers_byte_exact_and_is_refused_where_it_must_be() {
    let env = TestEnv::new();
    let daemons = start(&env, "", "message_size_limit = 20971520");
    mailctl(
        &env,
        &[
            "alias",
            "add",
            "team@example.test",
            "alice@example.test",
            "bob@example.test",
        ],
        None,
    );
    let server = format!("127.0.0.1:{}", env.ports["smtp"]);

    // 8-bit text, dot-stuffing edge cases, a 998-octet line.
    let mut body =
        b"From: carol@example.org\r\nTo: alice@example.test\r\nSubject: swaks edge cases\r\n\r\n"
            .to_vec();
    body.extend_from_slice(b"caf\xc3\xa9 \xe2\x82\xac\r\n.\r\n..\r\n.x\r\n...\r\n");
    body.extend(std::iter::repeat_n(b'y', 998));
    body.extend_from_slice(b"\r\nend\r\n");
    let data = env.path().join("edge.eml");
    std::fs::write(&data, stuff(&body)).unwrap();
    let (code, t) = swaks(&[
        "--server",
        &server,
        "--from",
        "carol@example.org",
        "--to",
        "alice@example.test",
        "--data",
        &format!("@{}", data.display()),
        "--no-data-fixup",
    ]);
    assert_eq!(code, 0, "{t}");
    assert!(t.contains("250 2.0.0 Ok: queued as"), "{t}");

    // 10 MiB, random-looking printable lines.
    let mut big = b"From: carol@example.org\r\nSubject: big\r\n\r\n".to_vec();
    let mut n: u64 = 1;
    while big.len() < 10 * 1024 * 1024 {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let line: String = (0..76)
            .map(|i| (b'!' + ((n >> (i % 60)) as u8 % 90)) as char)
            .collect();
        let line = line.replace('.', "-");
        big.extend_from_slice(line.as_bytes());
        big.extend_from_slice(b"\r\n");
    }
    let big_path = env.path().join("big.eml");
    std::fs::write(&big_path, stuff(&big)).unwrap();
    let (code, t) = swaks(&[
        "--server",
        &server,
        "--from",
        "carol@example.org",
        "--to",
        "bob@example.test",
        "--data",
        &format!("@{}", big_path.display()),
        "--no-data-fixup",
        "--suppress-data",
    ]);
    assert_eq!(code, 0, "{}", &t[..t.len().min(4000)]);

    // Unknown user and relay: refused at RCPT (swaks exits 24 for RCPT failures).
    let (code, t) = swaks(&[
        "--server",
        &server,
        "--from",
        "carol@example.org",
        "--to",
        "nobody@example.test",
    ]);
    assert_ne!(code, 0);
    assert!(t.contains("550 5.1.1"), "{t}");
    let (code, t) = swaks(&[
        "--server",
        &server,
        "--from",
        "carol@example.org",
        "--to",
        "someone@elsewhere.example",
    ]);
    assert_ne!(code, 0);
    assert!(t.contains("554 5.7.1"), "{t}");

    // An alias with two targets.
    let (code, t) = swaks(&[
        "--server",
        &server,
        "--from",
        "carol@example.org",
        "--to",
        "team@example.test",
        "--header",
        "Subject: to the team",
    ]);
    assert_eq!(code, 0, "{t}");

    let alice = wait_for_messages(&maildir(&env, "alice"), 2, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", daemons[1].output(), daemons[2].output()));
    let bob = wait_for_messages(&maildir(&env, "bob"), 2, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", daemons[1].output(), daemons[2].output()));
    let edge = alice
        .iter()
        .find(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(10)
                .any(|w| w == b"edge cases")
        })
        .expect("edge-case message in alice's Maildir");
    assert_eq!(stored_after_trace(edge), body, "edge cases not byte-exact");
    let bigf = bob
        .iter()
        .find(|p| std::fs::metadata(p).unwrap().len() > 10_000_000)
        .expect("10 MiB message in bob's Maildir");
    assert!(
        stored_after_trace(bigf) == big,
        "10 MiB message not byte-exact"
    );
    for f in [&alice, &bob] {
        assert!(
            f.iter().any(|p| std::fs::read(p)
                .unwrap()
                .windows(11)
                .any(|w| w == b"to the team")),
            "alias target missing the team message"
        );
    }
}

#[test]
fn swaks_submission_auth_plain_and_login() {
    let env = TestEnv::new();
    let _d = start(&env, "", "");
    let server = format!("127.0.0.1:{}", env.ports["submission"]);
    let ca = env.cert.ca_file.display().to_string();
    let run = |mech: &str, user: &str, pw: &str, to: &str| {
        swaks(&[
            "--server",
            &server,
            "--tls",
            "--tls-verify",
            "--tls-ca-path",
            &ca,
            "--tls-sni",
            "mail.example.test",
            "--auth",
            mech,
            "--auth-user",
            user,
            "--auth-password",
            pw,
            "--from",
            user,
            "--to",
            to,
        ])
    };
    let (code, t) = run(
        "PLAIN",
        "alice@example.test",
        "pw-alice",
        "bob@example.test",
    );
    assert_eq!(code, 0, "{t}");
    assert!(t.contains("235 2.7.0"), "{t}");
    let (code, t) = run("LOGIN", "bob@example.test", "pw-bob", "alice@example.test");
    assert_eq!(code, 0, "{t}");
    assert!(t.contains("235 2.7.0"), "{t}");
    // Relaying after AUTH is allowed (the queue keeps it; delivery is not
    // part of this test).
    let (code, t) = run(
        "PLAIN",
        "bob@example.test",
        "pw-bob",
        "far@elsewhere.example",
    );
    assert_eq!(code, 0, "{t}");
    for mech in ["PLAIN", "LOGIN"] {
        let (code, t) = run(mech, "alice@example.test", "wrong", "bob@example.test");
        assert_ne!(code, 0, "{t}");
        assert!(t.contains("535 5.7.8"), "{mech}: {t}");
        // Unknown users look exactly like wrong passwords.
        let (_, t2) = run(mech, "nobody@example.test", "wrong", "bob@example.test");
        assert!(t2.contains("535 5.7.8"), "{mech}: {t2}");
    }
    wait_for_messages(&maildir(&env, "bob"), 1, Duration::from_secs(20)).unwrap();
    wait_for_messages(&maildir(&env, "alice"), 1, Duration::from_secs(20)).unwrap();
    // Submitted without Date/Message-ID (swaks adds both by default, so
    // check that ours were not added twice and the originals are kept).
    let f = &files(&maildir(&env, "bob"))[0];
    let text = String::from_utf8(std::fs::read(f).unwrap()).unwrap();
    assert_eq!(text.matches("\nDate: ").count(), 1, "{text}");
    assert_eq!(
        text.to_lowercase().matches("\nmessage-id: ").count(),
        1,
        "{text}"
    );
}

/// A raw SMTP client.
struct Raw {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Raw {
    fn connect(port: u16) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Raw {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }
    /// One whole (possibly multi-line) reply.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }
    fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).unwrap();
    }
    fn cmd(&mut self, s: &str) -> String {
        self.send(s);
        self.reply()
    }
    /// True once the server closed the connection.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}

#[test]
fn pipelining_after_end_of_data_bdat_and_vrfy() {
    let env = TestEnv::new();
    let _d = start(&env, "", "");
    let mut c = Raw::connect(env.ports["smtp"]);
    assert!(c.reply().starts_with("220 "));
    assert!(
        c.cmd("EHLO client.example.org\r\n")
            .contains("250-PIPELINING")
    );
    c.send("MAIL FROM:<carol@example.org>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n");
    assert!(c.reply().starts_with("250 2.1.0"));
    assert!(c.reply().starts_with("250 2.1.5"));
    assert!(c.reply().starts_with("354 "));
    // End of data, then a whole new transaction in the same packet.
    c.send(
        "Subject: one\r\n\r\nfirst\r\n.\r\nRSET\r\nMAIL FROM:<carol@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n",
    );
    let replies: Vec<String> = (0..5).map(|_| c.reply()).collect();
    assert!(
        replies[0].starts_with("250 2.0.0 Ok: queued as"),
        "{replies:?}"
    );
    assert!(replies[1].starts_with("250 "), "{replies:?}");
    assert!(replies[2].starts_with("250 2.1.0"), "{replies:?}");
    assert!(replies[3].starts_with("250 2.1.5"), "{replies:?}");
    assert!(replies[4].starts_with("354 "), "{replies:?}");
    assert!(
        c.cmd("Subject: two\r\n\r\nsecond\r\n.\r\n")
            .starts_with("250 2.0.0")
    );
    // BDAT in two chunks, the first with a bare "." line that is content.
    c.send("MAIL FROM:<carol@example.org>\r\nRCPT TO:<alice@example.test>\r\n");
    assert!(c.reply().starts_with("250 2.1.0"));
    assert!(c.reply().starts_with("250 2.1.5"));
    let chunk1 = "Subject: bdat\r\n\r\n.\r\n";
    let chunk2 = "last line\r\n";
    let r1 = c.cmd(&format!("BDAT {}\r\n{chunk1}", chunk1.len()));
    assert!(r1.starts_with("250 "), "{r1}");
    let r2 = c.cmd(&format!("BDAT {} LAST\r\n{chunk2}", chunk2.len()));
    assert!(r2.starts_with("250 2.0.0 Ok: queued as"), "{r2}");
    // VRFY is disabled by default: 252 without a lookup.
    assert!(
        c.cmd("VRFY alice@example.test\r\n")
            .starts_with("252 2.0.0")
    );
    assert!(
        c.cmd("VRFY nobody@example.test\r\n")
            .starts_with("252 2.0.0")
    );
    // Unknown MAIL parameters: 555.
    assert!(
        c.cmd("MAIL FROM:<a@b.example> FOO=BAR\r\n")
            .starts_with("555 5.5.4")
    );
    assert!(c.cmd("QUIT\r\n").starts_with("221 "));
    let alice = wait_for_messages(&maildir(&env, "alice"), 2, Duration::from_secs(20)).unwrap();
    let bdat = alice
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .find(|t| t.contains("Subject: bdat"))
        .expect("BDAT message delivered");
    assert!(bdat.ends_with("Subject: bdat\n\n.\nlast line\n"), "{bdat}");
    wait_for_messages(&maildir(&env, "bob"), 1, Duration::from_secs(20)).unwrap();
    // MX mail is not touched: no Message-ID/Date added.
    let one = alice
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .find(|t| t.contains("Subject: one"))
        .unwrap();
    assert!(
        !one.contains("Message-ID:") && !one.contains("\nDate:"),
        "{one}"
    );
}

/// Submit `messages` over implicit TLS (port 465, CA verified) with
/// Python's smtplib, logged in as `user`, each to `rcpt`.
fn submit(env: &TestEnv, user: &str, pw: &str, rcpt: &str, messages: &[&str]) {
    let sends: String = messages
        .iter()
        .map(|m| format!("s.sendmail({user:?}, [{rcpt:?}], {m:?}.encode())\n"))
        .collect();
    let script = format!(
        "import smtplib, ssl\nctx = ssl.create_default_context(cafile={ca:?})\n\
         s = smtplib.SMTP_SSL(\"127.0.0.1\", {port}, context=ctx)\n\
         s.login({user:?}, {pw:?})\n{sends}s.quit()\n",
        ca = env.cert.ca_file.display().to_string(),
        port = env.ports["submissions"]
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Wait for `n` messages in `user`'s Maildir; their texts.
fn read_all(env: &TestEnv, user: &str, n: usize) -> Vec<String> {
    wait_for_messages(&maildir(env, user), n, Duration::from_secs(20))
        .unwrap()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn vrfy_when_enabled_and_date_message_id_on_submission() {
    let env = TestEnv::new();
    let _d = start(&env, "disable_vrfy_command = false", "");
    let mut c = Raw::connect(env.ports["smtp"]);
    c.reply();
    c.cmd("EHLO c\r\n");
    assert!(
        c.cmd("VRFY <alice@example.test>\r\n")
            .starts_with("250 2.1.5")
    );
    assert!(
        c.cmd("VRFY nobody@example.test\r\n")
            .starts_with("550 5.1.1")
    );
    assert!(c.cmd("VRFY x@elsewhere.example\r\n").starts_with("252 "));
    c.cmd("QUIT\r\n");

    // Submission over implicit TLS with Python's smtplib: a message without
    // Date and Message-ID gets both, one with them keeps its own.
    submit(
        &env,
        "alice@example.test",
        "pw-alice",
        "bob@example.test",
        &[
            "Subject: bare\r\n\r\nno date\r\n",
            "Subject: own\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <mine@example.test>\r\n\r\nown\r\n",
        ],
    );
    let texts = read_all(&env, "bob", 2);
    let bare = texts.iter().find(|t| t.contains("Subject: bare")).unwrap();
    let (head, body) = bare.split_once("\n\n").unwrap();
    assert!(head.contains("\nDate: "), "{bare}");
    assert!(
        head.contains("\nMessage-ID: <") && head.contains("@mail.example.test>"),
        "{bare}"
    );
    assert_eq!(body, "no date\n");
    let own = texts.iter().find(|t| t.contains("Subject: own")).unwrap();
    assert_eq!(own.matches("Date: ").count(), 1, "{own}");
    assert!(own.contains("Message-ID: <mine@example.test>"), "{own}");
    assert_eq!(own.matches("Message-ID:").count(), 1, "{own}");
}

#[test]
fn connection_recipient_error_and_timeout_limits() {
    let env = TestEnv::new();
    let daemons = start(
        &env,
        "smtpd_client_connection_count_limit = 2\nsmtpd_recipient_limit = 2\nsmtpd_hard_error_limit = 3\nsmtpd_timeout = \"2s\"",
        "",
    );
    let port = env.ports["smtp"];
    // Per-IP concurrency: the third concurrent connection gets 421.
    let mut a = Raw::connect(port);
    let mut b = Raw::connect(port);
    assert!(a.reply().starts_with("220 "));
    assert!(b.reply().starts_with("220 "));
    let mut third = Raw::connect(port);
    let r = third.reply();
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert!(third.closed());
    // Recipient limit: 452 for the third RCPT, the message still goes to two.
    a.cmd("EHLO c\r\n");
    a.cmd("MAIL FROM:<carol@example.org>\r\n");
    assert!(a.cmd("RCPT TO:<alice@example.test>\r\n").starts_with("250"));
    assert!(a.cmd("RCPT TO:<bob@example.test>\r\n").starts_with("250"));
    let r = a.cmd("RCPT TO:<alice@example.test>\r\n");
    assert!(r.starts_with("452 4.5.3"), "{r}");
    assert!(a.cmd("QUIT\r\n").starts_with("221"));
    // A slot is free again once a session ends.
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    let mut d = Raw::connect(port);
    assert!(d.reply().starts_with("220 "));
    // Hard error limit: after 3 errors, 421 and close.
    d.cmd("EHLO c\r\n");
    assert!(d.cmd("BOGUS\r\n").starts_with("500"));
    assert!(d.cmd("RCPT TO:<x@y.example>\r\n").starts_with("503"));
    assert!(d.cmd("BOGUS\r\n").starts_with("500"));
    let r = d.reply();
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert!(d.closed());
    // Command timeout: an idle client is told 421 4.4.2 and closed.
    b.cmd("EHLO c\r\n");
    let started = std::time::Instant::now();
    let r = b.reply();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(b.closed());
    // The refusals and the timeout are logged (read asynchronously: wait).
    for needle in ["connection refused by limit", "timeout in_message=false"] {
        daemons[3]
            .wait_output(needle, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{needle:?} not logged: {e}"));
    }
}

#[test]
fn connection_rate_limit() {
    let env = TestEnv::new();
    let _d = start(
        &env,
        "smtpd_client_connection_rate_limit = 3\nanvil_rate_time_unit = \"60s\"",
        "",
    );
    let port = env.ports["smtp"];
    for _ in 0..3 {
        let mut c = Raw::connect(port);
        assert!(c.reply().starts_with("220 "));
        assert!(c.cmd("QUIT\r\n").starts_with("221"));
    }
    let mut c = Raw::connect(port);
    let r = c.reply();
    assert!(r.starts_with("421 4.7.0") && r.contains("slow down"), "{r}");
}

#[test]
fn bare_newline_policy_and_received_privacy() {
    // Default: a bare LF in DATA is refused (SMTP smuggling defence).
    let env = TestEnv::new();
    let _d = start(&env, "", "");
    let mut c = Raw::connect(env.ports["smtp"]);
    c.reply();
    c.cmd("EHLO c\r\n");
    c.cmd("MAIL FROM:<carol@example.org>\r\n");
    c.cmd("RCPT TO:<alice@example.test>\r\n");
    assert!(c.cmd("DATA\r\n").starts_with("354"));
    let r = c.cmd("Subject: x\r\n\r\nsmuggled\n.\nMAIL FROM:<evil@example.org>\r\n.\r\n");
    assert!(r.starts_with("550 5.5.2"), "{r}");
    drop(c);

    // normalize: stored with the bare LF made a line end; the "." after it
    // is content, not the end of data. And the authenticated user is named
    // in Received: when smtpd_sasl_authenticated_header is on.
    let env = TestEnv::new();
    let _d = start(
        &env,
        "smtpd_forbid_bare_newline = \"normalize\"\nsmtpd_sasl_authenticated_header = true",
        "",
    );
    let mut c = Raw::connect(env.ports["smtp"]);
    c.reply();
    c.cmd("EHLO c\r\n");
    c.cmd("MAIL FROM:<carol@example.org>\r\n");
    c.cmd("RCPT TO:<alice@example.test>\r\n");
    assert!(c.cmd("DATA\r\n").starts_with("354"));
    let r = c.cmd("Subject: bare\r\n\r\nline one\nline two\r\n.\r\n");
    assert!(r.starts_with("250 2.0.0"), "{r}");
    submit(
        &env,
        "bob@example.test",
        "pw-bob",
        "alice@example.test",
        &["Subject: from bob\r\n\r\nhi\r\n"],
    );
    let texts = read_all(&env, "alice", 2);
    let bare = texts.iter().find(|t| t.contains("Subject: bare")).unwrap();
    assert!(bare.ends_with("\n\nline one\nline two\n"), "{bare}");
    let from_bob = texts
        .iter()
        .find(|t| t.contains("Subject: from bob"))
        .unwrap();
    assert!(from_bob.contains("bob@example.test"), "{from_bob}");
    let received: String = from_bob
        .split("\nReceived: ")
        .nth(1)
        .unwrap()
        .split("\nSubject:")
        .next()
        .unwrap()
        .to_string();
    assert!(received.contains("bob@example.test"), "{received}");
}

#[test]
fn identical_messages_in_one_session_are_all_delivered() {
    // lmtp-delivery suppresses the duplicate an LMTP retry would store,
    // keyed on the bytes: smtpd's per-message trace id keeps real repeats apart.
    let env = TestEnv::new();
    let _d = start(&env, "", "");
    let mut c = Raw::connect(env.ports["smtp"]);
    c.reply();
    c.cmd("EHLO c\r\n");
    for _ in 0..5 {
        c.cmd("MAIL FROM:<carol@example.org>\r\n");
        c.cmd("RCPT TO:<alice@example.test>\r\n");
        assert!(c.cmd("DATA\r\n").starts_with("354"));
        let r = c.cmd("Subject: same\r\nMessage-ID: <same@example.org>\r\n\r\nsame body\r\n.\r\n");
        assert!(r.starts_with("250 2.0.0"), "{r}");
    }
    c.cmd("QUIT\r\n");
    wait_for_messages(&maildir(&env, "alice"), 5, Duration::from_secs(20)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(files(&maildir(&env, "alice")).len(), 5);
}

#[test]
fn size_limit_while_streaming_and_command_line_bound() {
    let env = TestEnv::new();
    let _d = start(&env, "", "message_size_limit = 4096");
    let mut c = Raw::connect(env.ports["smtp"]);
    c.reply();
    assert!(c.cmd("EHLO c\r\n").contains("250-SIZE 4096"));
    // Declared too big: refused at MAIL.
    assert!(
        c.cmd("MAIL FROM:<carol@example.org> SIZE=5000\r\n")
            .starts_with("552 5.3.4")
    );
    // Not declared: refused while streaming, after the whole DATA was read.
    c.cmd("MAIL FROM:<carol@example.org>\r\n");
    c.cmd("RCPT TO:<alice@example.test>\r\n");
    assert!(c.cmd("DATA\r\n").starts_with("354"));
    let mut big = String::from("Subject: big\r\n\r\n");
    while big.len() < 6000 {
        big.push_str("0123456789012345678901234567890123456789\r\n");
    }
    big.push_str(".\r\n");
    let r = c.cmd(&big);
    assert!(r.starts_with("552 5.3.4"), "{r}");
    // The session goes on; a command line over the bound (512 octets per
    // RFC 5321 4.5.3.1.4, plus room for extensions) is refused, not cut.
    let long = format!("NOOP {}\r\n", "x".repeat(5000));
    let r = c.cmd(&long);
    assert!(r.starts_with("500 5.5.2"), "{r}");
    assert!(c.cmd("NOOP\r\n").starts_with("250"));
    // Nothing of the refused message was delivered.
    c.cmd("QUIT\r\n");
    std::thread::sleep(Duration::from_millis(500));
    assert!(files(&maildir(&env, "alice")).is_empty());
}
