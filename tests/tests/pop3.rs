//! pop3d with real clients: Python's poplib over STLS and implicit TLS,
//! verifying the server certificate against the test CA.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use postern_tests::{Daemon, TestEnv};

/// Write the config with fast brute-force delays, and add a user with mailctl.
fn setup(env: &TestEnv, user: &str, password: &str) -> PathBuf {
    postern_tests::stack::setup_user(env, user, password)
}

fn messages() -> Vec<Vec<u8>> {
    let mut big = b"Subject: big\r\nX-8bit: caf\xc3\xa9\r\n\r\n".to_vec();
    for i in 0..2000 {
        big.extend_from_slice(format!("line {i} {}\r\n", "x".repeat(i % 990)).as_bytes());
    }
    vec![
        b"Subject: first\r\nFrom: a@example.test\r\n\r\nbody line 1\r\nbody line 2\r\n".to_vec(),
        b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\n...three\r\nend\r\n".to_vec(),
        big,
        b"Subject: empty body\r\n\r\n".to_vec(),
    ]
}

fn deliver_all(maildir: &Path, msgs: &[Vec<u8>], expected_dir: &Path) {
    std::fs::create_dir_all(expected_dir).unwrap();
    for (i, m) in msgs.iter().enumerate() {
        mailstore::deliver(maildir, "INBOX", m).unwrap();
        std::fs::write(expected_dir.join(format!("{}.eml", i + 1)), m).unwrap();
        // Distinct delivery times keep the order unambiguous.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[test]
fn poplib_stls_retr_top_dele_rset_uidl_in_use() {
    let env = TestEnv::new();
    let password = "correct horse";
    let maildir = setup(&env, "alice@example.test", password);
    let expected = env.path().join("expected");
    deliver_all(&maildir, &messages(), &expected);
    let _authd = Daemon::start(&env, "authd");
    let _pop3d = Daemon::start(&env, "pop3d");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/pop3_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(env.ports["pop3"].to_string())
        .arg(env.ports["pop3s"].to_string())
        .arg(&env.cert.ca_file)
        .arg("alice@example.test")
        .arg(password)
        .arg(&expected)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "poplib checks failed:\n{}{}\n--- pop3d ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        _pop3d.output()
    );
}

#[test]
fn plaintext_login_works_when_allowed_and_warns() {
    let env = TestEnv::new();
    let maildir = setup(&env, "bob@example.test", "pw-bob");
    let mut text = std::fs::read_to_string(&env.config_path).unwrap();
    text = text.replace("[pop3d]\n", "[pop3d]\nallow_plaintext_auth = true\n");
    std::fs::write(&env.config_path, text).unwrap();
    mailstore::deliver(&maildir, "INBOX", b"Subject: hi\r\n\r\nhello\r\n").unwrap();
    let _authd = Daemon::start(&env, "authd");
    let pop3d = Daemon::start(&env, "pop3d");
    pop3d
        .wait_output("allow_plaintext_auth is set", postern_tests::TIMEOUT)
        .unwrap();
    let py = format!(
        "import poplib\np=poplib.POP3('127.0.0.1',{})\np.user('bob@example.test')\np.pass_('pw-bob')\nassert p.stat()[0]==1\nprint(b'\\r\\n'.join(p.retr(1)[1]))\np.quit()\n",
        env.ports["pop3"]
    );
    let out = Command::new("python3").arg("-c").arg(py).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello"));
}

#[test]
fn raw_pipelining_and_bad_commands() {
    use std::io::{BufRead, BufReader};
    let env = TestEnv::new();
    let text = env.config_text("level = \"info\"");
    std::fs::write(
        &env.config_path,
        text.replace(
            "[pop3d]\nlistener",
            "[pop3d]\nallow_plaintext_auth = true\nlistener",
        ),
    )
    .unwrap();
    let _authd = Daemon::start(&env, "authd");
    let _pop3d = Daemon::start(&env, "pop3d");
    let s = std::net::TcpStream::connect(("127.0.0.1", env.ports["pop3"])).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("+OK"), "{line}");
    // Pipelined: CAPA, an unknown verb, STAT before login, an overlong line, QUIT.
    let long = "X".repeat(400);
    w.write_all(format!("CAPA\r\nFOO\r\nSTAT\r\n{long}\r\nQUIT\r\n").as_bytes())
        .unwrap();
    let mut all = String::new();
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        all.push_str(&line);
        line.clear();
    }
    let replies: Vec<&str> = all.lines().collect();
    let capa_end = replies.iter().position(|l| *l == ".").expect(&all);
    assert!(
        replies[1..capa_end].contains(&"USER") && replies[1..capa_end].contains(&"STLS"),
        "{all}"
    );
    let rest = &replies[capa_end + 1..];
    assert_eq!(rest.len(), 4, "{all}");
    assert!(
        rest[0].starts_with("-ERR") && rest[1].starts_with("-ERR") && rest[2].starts_with("-ERR"),
        "{all}"
    );
    assert!(rest[3].starts_with("+OK"), "{all}");
}

/// A raw POP3 connection (no TLS) for the bounds tests.
struct Raw {
    r: std::io::BufReader<std::net::TcpStream>,
    w: std::net::TcpStream,
}

impl Raw {
    fn connect(port: u16) -> (Self, String) {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let w = s.try_clone().unwrap();
        let mut c = Raw {
            r: std::io::BufReader::new(s),
            w,
        };
        let greeting = c.line().expect("greeting");
        (c, greeting)
    }

    /// One reply line; `None` at end of stream.
    fn line(&mut self) -> Option<String> {
        use std::io::BufRead;
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) => None,
            Ok(_) => Some(l.trim_end().to_string()),
            Err(e) => panic!("read: {e}"),
        }
    }

    fn cmd(&mut self, c: &str) -> String {
        self.w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        self.line().unwrap_or_default()
    }

    fn capa(&mut self) -> Vec<String> {
        assert!(self.cmd("CAPA").starts_with("+OK"));
        let mut v = Vec::new();
        while let Some(l) = self.line() {
            if l == "." {
                break;
            }
            v.push(l);
        }
        v
    }
}

fn bounds_env(extra: &str) -> (TestEnv, PathBuf) {
    let env = TestEnv::new();
    let maildir = setup(&env, "carol@example.test", "pw-carol");
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text.replace(
            "[pop3d]\n",
            &format!("[pop3d]\nallow_plaintext_auth = true\n{extra}"),
        ),
    )
    .unwrap();
    (env, maildir)
}

#[test]
fn idle_timeout_closes_with_err_and_warns_below_rfc_minimum() {
    let (env, _) = bounds_env("idle_timeout = \"2s\"\n");
    let _authd = Daemon::start(&env, "authd");
    let pop3d = Daemon::start(&env, "pop3d");
    pop3d
        .wait_output("below RFC 1939", postern_tests::TIMEOUT)
        .unwrap();
    let start = std::time::Instant::now();
    let (mut c, greeting) = Raw::connect(env.ports["pop3"]);
    assert!(greeting.starts_with("+OK"));
    // After login too: the timer runs in TRANSACTION state.
    assert!(c.cmd("USER carol@example.test").starts_with("+OK"));
    assert!(c.cmd("PASS pw-carol").starts_with("+OK"));
    let bye = c.line().expect("autologout line");
    assert!(bye.starts_with("-ERR") && bye.contains("idle"), "{bye}");
    assert_eq!(c.line(), None, "connection closed after the autologout");
    let waited = start.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(2) && waited < std::time::Duration::from_secs(15),
        "{waited:?}"
    );
}

#[test]
fn login_delay_is_announced_and_enforced() {
    let (env, _) = bounds_env("login_delay = \"60s\"\n");
    let _authd = Daemon::start(&env, "authd");
    let _pop3d = Daemon::start(&env, "pop3d");
    let (mut c, _) = Raw::connect(env.ports["pop3"]);
    assert!(c.capa().contains(&"LOGIN-DELAY 60".to_string()));
    assert!(c.cmd("USER carol@example.test").starts_with("+OK"));
    assert!(c.cmd("PASS pw-carol").starts_with("+OK"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let (mut c, _) = Raw::connect(env.ports["pop3"]);
    assert!(c.cmd("USER carol@example.test").starts_with("+OK"));
    let r = c.cmd("PASS pw-carol");
    assert!(r.starts_with("-ERR [LOGIN-DELAY]"), "{r}");
    // A wrong password is still [AUTH], not a hint about the delay.
    assert!(c.cmd("USER carol@example.test").starts_with("+OK"));
    let r = c.cmd("PASS wrong");
    assert!(r.starts_with("-ERR [AUTH]"), "{r}");
}

#[test]
fn failed_command_limit_apop_disabled_and_no_apop_banner() {
    let (env, _) = bounds_env("");
    let _authd = Daemon::start(&env, "authd");
    let _pop3d = Daemon::start(&env, "pop3d");
    let (mut c, greeting) = Raw::connect(env.ports["pop3"]);
    // No APOP timestamp in the banner, no APOP: it needs clear-text
    // equivalent stored passwords.
    assert!(!greeting.contains('<'), "{greeting}");
    let r = c.cmd("APOP carol@example.test c4c9334bac560ecc979e58001b3e22fb");
    assert!(r.starts_with("-ERR"), "{r}");
    // pop3_proto::MAX_FAILED_COMMANDS (10) failures close the session; APOP
    // was the first.
    for i in 2..10 {
        let r = c.cmd(&format!("BOGUS{i}"));
        assert!(r.starts_with("-ERR"), "{i}: {r}");
    }
    let r = c.cmd("BOGUS10");
    assert!(r.starts_with("-ERR"), "{r}");
    let bye = c.line().unwrap_or_default();
    assert!(bye.contains("Too many errors"), "{bye}");
    assert_eq!(c.line(), None, "closed after the limit");
}

/// Issue 7: IMAP sessions run alongside a POP3 session on the same INBOX
/// and see its deletions once it QUITs; the UIDL is the IMAP UID.
#[test]
fn imap_session_alongside_sees_pop3_deletions() {
    let env = TestEnv::new();
    let maildir = setup(&env, "dave@example.test", "pw-dave");
    for i in 0..3 {
        mailstore::deliver(
            &maildir,
            "INBOX",
            format!("Subject: m{i}\r\n\r\nbody {i}\r\n").as_bytes(),
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _authd = Daemon::start(&env, "authd");
    let _pop3d = Daemon::start(&env, "pop3d");
    let imapd = Daemon::start(&env, "imapd");
    let py = format!(
        r#"
import imaplib, poplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
m = imaplib.IMAP4_SSL("localhost", {imaps}, ssl_context=ctx)
m.login("dave@example.test", "pw-dave")
typ, data = m.select("INBOX")
assert data[0] == b"3", data
validity = int(m.untagged_responses["UIDVALIDITY"][0])
p = poplib.POP3_SSL("localhost", {pop3s}, context=ctx)
p.user("dave@example.test"); p.pass_("pw-dave")
uidl = p.uidl(2)
assert uidl.split()[2] == b"%08X%08X" % (2, validity), (uidl, validity)
p.dele(2)
# Before QUIT nothing is deleted: IMAP still sees three.
m.noop()
assert "EXPUNGE" not in m.untagged_responses, m.untagged_responses
p.quit()
typ, data = m.noop()
assert m.untagged_responses.pop("EXPUNGE", None) == [b"2"], m.untagged_responses
typ, data = m.uid("SEARCH", "ALL")
assert data[0] == b"1 3", data
m.logout()
print("ok")
"#,
        ca = env.cert.ca_file.display().to_string(),
        imaps = env.ports["imaps"],
        pop3s = env.ports["pop3s"],
    );
    let out = Command::new("python3").arg("-c").arg(py).output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "{}{}\n--- imapd ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        imapd.output()
    );
}
