//! imapd with a real client: Python's imaplib over STARTTLS and implicit TLS
//! (certificate chain verified against the test CA), plus poplib for the
//! POP3 UIDL = IMAP UID/UIDVALIDITY relation.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use postern_tests::{Daemon, TestEnv, bin};

fn setup(env: &TestEnv, user: &str, password: &str) -> PathBuf {
    let mut text = env.config_text("level = \"info\"");
    text.push_str("\n[authd]\nauth_failure_delay = \"10ms\"\nauth_failure_delay_max = \"40ms\"\n\n[authd.directory]\ncache_ttl_secs = 1\n");
    std::fs::write(&env.config_path, text).unwrap();
    let (local, domain) = user.split_once('@').unwrap();
    let mailctl = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new(bin("mailctl"))
            .arg("--config")
            .arg(&env.config_path)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "mailctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    mailctl(&["domain", "add", domain], None);
    mailctl(
        &["user", "add", user, "--password-stdin"],
        Some(&format!("{password}\n")),
    );
    env.path()
        .join("lib/mail")
        .join(domain)
        .join(local)
        .join("Maildir")
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
