//! lmtp-delivery with Python's smtplib.LMTP over the Unix socket, and the
//! whole local path: sendmail(1) → queue-manager → LMTP → Maildir → POP3.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postern_tests::{Daemon, TestEnv, bin};

use postern_tests::stack::{files, maildir};

fn setup(env: &TestEnv, extra: &str) {
    postern_tests::stack::setup_users(env, extra);
}

#[test]
fn smtplib_lmtp_per_recipient_replies_and_maildir_content() {
    let env = TestEnv::new();
    setup(&env, "");
    let _authd = Daemon::start(&env, "authd");
    let lmtp = Daemon::start(&env, "lmtp-delivery");
    // Create alice's Maildir (with the default folders) so +archive has a folder.
    mailstore::create_maildir(&maildir(&env, "alice")).unwrap();
    let py = format!(
        r#"
import smtplib
c = smtplib.LMTP({sock:?})
code, _ = c.ehlo("client.example")
assert code == 250, code
msg = b"Subject: lmtp test\r\nFrom: carol@example.org\r\n\r\nline one\r\n.dot line\r\ncaf\xc3\xa9\r\n"
refused = c.sendmail("carol@example.org", ["alice@example.test", "nobody@example.test", "alice+archive@example.test", "bob@example.test"], msg)
print(sorted(refused.keys()), refused.get("nobody@example.test", (0,))[0])
c.quit()
"#,
        sock = env.socket("private/lmtp.sock").display().to_string()
    );
    let out = Command::new("python3").arg("-c").arg(py).output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        lmtp.output()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "['nobody@example.test'] 550"
    );
    let inbox = files(&maildir(&env, "alice"));
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let text = std::fs::read(&inbox[0]).unwrap();
    assert_eq!(
        text,
        b"Return-Path: <carol@example.org>\nDelivered-To: alice@example.test\nSubject: lmtp test\nFrom: carol@example.org\n\nline one\n.dot line\ncaf\xc3\xa9\n"
    );
    let archive = files(&maildir(&env, "alice").join(".Archive"));
    assert_eq!(archive.len(), 1, "user+folder@ goes to that folder");
    assert!(
        std::fs::read_to_string(&archive[0])
            .unwrap()
            .contains("Delivered-To: alice+archive@example.test")
    );
    assert_eq!(files(&maildir(&env, "bob")).len(), 1);
}

#[test]
fn sendmail_to_queue_to_lmtp_to_maildir_to_pop3() {
    let env = TestEnv::new();
    setup(&env, "\n[queue]\ndelivery_transport = \"lmtp\"\n");
    let _authd = Daemon::start(&env, "authd");
    let _lmtp = Daemon::start(&env, "lmtp-delivery");
    let queue = Daemon::start(&env, "queue-manager");
    let _pop3d = Daemon::start(&env, "pop3d");
    // sendmail is mailctl called by that name.
    let link = env.path().join("sendmail");
    std::os::unix::fs::symlink(bin("mailctl"), &link).unwrap();
    let mut c = Command::new(&link)
        .args(["-C"])
        .arg(&env.config_path)
        .args(["-t", "-i"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"To: alice@example.test\nSubject: via sendmail\n\nhello from the local queue\n.\nstill here\n")
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sendmail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The scheduler picks incoming/ up at once; wait for the Maildir.
    let dir = maildir(&env, "alice");
    let end = Instant::now() + Duration::from_secs(30);
    while files(&dir).is_empty() {
        assert!(Instant::now() < end, "not delivered:\n{}", queue.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    let py = format!(
        "import poplib,ssl\nctx=ssl.create_default_context(cafile={ca:?})\np=poplib.POP3_SSL('127.0.0.1',{port},context=ctx)\np.user('alice@example.test')\np.pass_('pw-alice')\nprint(b'\\n'.join(p.retr(1)[1]).decode())\np.quit()\n",
        ca = env.cert.ca_file.display().to_string(),
        port = env.ports["pop3s"]
    );
    let out = Command::new("python3").arg("-c").arg(py).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Delivered-To: alice@example.test",
        "Subject: via sendmail",
        "Message-ID: <",
        "hello from the local queue\n.\nstill here",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
}
