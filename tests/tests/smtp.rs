//! smtpd end to end with Python's smtplib: MX delivery into the Maildir,
//! relay refused, unknown user 550, submission with STARTTLS (certificate
//! verified) and AUTH through authd, sender ownership, STARTTLS injection.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use postern_tests::stack::{maildir, setup_users, wait_for_messages};
use postern_tests::{Daemon, TestEnv};

fn start_all(env: &TestEnv) -> Vec<Daemon> {
    setup_users(env, "\n[queue]\ndelivery_transport = \"lmtp\"\n");
    // Loopback is not a trusted network here, so relay refusal is visible.
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let text = text.replace("[global]\n", "[global]\nmynetworks = [\"192.0.2.0/24\"]\n");
    std::fs::write(&env.config_path, text).unwrap();
    ["authd", "lmtp-delivery", "queue-manager", "smtpd"]
        .into_iter()
        .map(|d| Daemon::start(env, d))
        .collect()
}

fn python(script: &str) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn mx_delivers_byte_exact_refuses_relay_and_unknown_users() {
    let env = TestEnv::new();
    let daemons = start_all(&env);
    let port = env.ports["smtp"];
    // 998-char lines, dot-stuffing edge cases, 8-bit bytes.
    let out = python(&format!(
        r#"
import smtplib
body = b"Subject: mx test\r\nFrom: carol@example.org\r\n\r\n" + b"x" * 998 + b"\r\n.\r\n..\r\n.x\r\ncaf\xc3\xa9\r\n"
s = smtplib.SMTP("127.0.0.1", {port})
s.ehlo("client.example.org")
assert s.has_extn("pipelining") and s.has_extn("starttls") and not s.has_extn("auth"), s.esmtp_features
code, msg = s.mail("carol@example.org")
assert code == 250, (code, msg)
print("unknown", s.rcpt("nobody@example.test")[0])
print("relay", s.rcpt("someone@elsewhere.example")[0])
print("ok", s.rcpt("alice@example.test")[0])
code, msg = s.data(body)
print("data", code, msg.decode())
s.quit()
open({out:?}, "wb").write(body)
"#,
        out = env.path().join("sent.eml").display().to_string()
    ));
    assert!(
        out.contains("unknown 550") && out.contains("relay 554") && out.contains("ok 250"),
        "{out}"
    );
    assert!(
        out.contains("data 250") && out.contains("queued as"),
        "{out}"
    );
    let files = wait_for_messages(&maildir(&env, "alice"), 1, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", daemons[2].output()));
    let stored = std::fs::read(&files[0]).unwrap();
    let sent = std::fs::read(env.path().join("sent.eml")).unwrap();
    // The store keeps LF line ends; the body after our trace headers must be
    // what was sent, dot-unstuffed by smtplib's stuffing.
    let sent_lf = String::from_utf8(sent).unwrap().replace("\r\n", "\n");
    let stored = String::from_utf8(stored).unwrap();
    assert!(stored.starts_with("Return-Path: <carol@example.org>\nDelivered-To: alice@example.test\nReceived: from client.example.org"), "{stored}");
    assert!(stored.ends_with(&sent_lf), "body not byte-exact:\n{stored}");
}

#[test]
fn submission_needs_tls_and_auth_and_checks_the_sender() {
    let env = TestEnv::new();
    let _daemons = start_all(&env);
    let out = python(&format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
s = smtplib.SMTP("127.0.0.1", {port})
s.ehlo()
print("auth-before-tls", s.has_extn("auth"))
code, _ = s.mail("alice@example.test")
print("mail-before-tls", code)
s.rset()
s.starttls(context=ctx)
s.ehlo()
print("auth-after-tls", s.has_extn("auth"), s.esmtp_features.get("auth", ""))
try:
    s.login("alice@example.test", "wrong")
except smtplib.SMTPAuthenticationError as e:
    print("wrong", e.smtp_code)
s.login("alice@example.test", "pw-alice")
code, _ = s.mail("bob@example.test")
print("foreign-sender", code)
s.rset()
s.mail("alice@example.test")
print("relay-ok", s.rcpt("friend@elsewhere.example")[0])
print("local-ok", s.rcpt("bob@example.test")[0])
code, msg = s.data(b"Subject: submitted\r\n\r\nhi bob\r\n")
print("data", code)
s.quit()
s = smtplib.SMTP_SSL("127.0.0.1", {port465}, context=ctx)
s.login("bob@example.test", "pw-bob")
print("465", s.noop()[0])
s.quit()
"#,
        ca = env.cert.ca_file.display().to_string(),
        port = env.ports["submission"],
        port465 = env.ports["submissions"],
    ));
    for needle in [
        "auth-before-tls False",
        "mail-before-tls 530",
        "auth-after-tls True",
        "PLAIN LOGIN",
        "wrong 535",
        "foreign-sender 553",
        "relay-ok 250",
        "local-ok 250",
        "data 250",
        "465 250",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    wait_for_messages(&maildir(&env, "bob"), 1, Duration::from_secs(20)).unwrap();
}

#[test]
fn starttls_injection_is_discarded() {
    let env = TestEnv::new();
    let _daemons = start_all(&env);
    // Send STARTTLS with a pipelined command behind it; after the handshake
    // the injected command must not be executed (no reply to it in TLS).
    let out = python(&format!(
        r#"
import socket, ssl
ctx = ssl.create_default_context(cafile={ca:?})
s = socket.create_connection(("127.0.0.1", {port}))
f = s.makefile("rb")
f.readline()
s.sendall(b"EHLO x\r\n")
while True:
    l = f.readline()
    if l[3:4] == b" ": break
s.sendall(b"STARTTLS\r\nRSET\r\n")
print(f.readline().decode().strip())
t = ctx.wrap_socket(s, server_hostname="localhost")
t.settimeout(2)
t.sendall(b"NOOP\r\n")
print("after", t.recv(1000).decode().strip())
"#,
        ca = env.cert.ca_file.display().to_string(),
        port = env.ports["smtp"],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("220"), "{out}");
    // Only NOOP's reply: the RSET sent before the handshake was dropped.
    assert_eq!(lines[1].matches("250").count(), 1, "{out}");
}

#[test]
fn raw_pipelining_group_answers_in_order() {
    let env = TestEnv::new();
    let _daemons = start_all(&env);
    let s = std::net::TcpStream::connect(("127.0.0.1", env.ports["smtp"])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    w.write_all(b"EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\nSubject: p\r\n\r\nbody\r\n.\r\nRSET\r\nMAIL FROM:<a@example.org> FOO=1\r\nQUIT\r\n").unwrap();
    let mut codes = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.as_bytes().get(3) == Some(&b' ') {
            codes.push(line[..3].to_string());
        }
    }
    assert_eq!(
        codes,
        [
            "250", "250", "250", "550", "354", "250", "250", "555", "221"
        ],
        "{codes:?}"
    );
}
