//! IMAP4rev2 (RFC 9051) with Python's imaplib over implicit TLS: ENABLE
//! IMAP4rev2, UTF-8 mailbox names, SELECT without RECENT but with its LIST
//! line and `[CLOSED]`, ESEARCH answers to SEARCH, STATUS DELETED/SIZE,
//! LIST `\NonExistent`; an IMAP4rev1 session beside it keeps the RFC 3501
//! forms. The checks are in `tests/py/imap_rev2.py`.

use std::path::Path;
use std::process::Command;

use postern_tests::{Daemon, TestEnv};

#[test]
fn imaplib_enable_imap4rev2() {
    let env = TestEnv::new();
    let password = "pw alice";
    let maildir = postern_tests::stack::setup_user(&env, "alice@example.test", password);
    let _authd = Daemon::start(&env, "authd");
    let imapd = Daemon::start(&env, "imapd");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/imap_rev2.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(env.ports["imaps"].to_string())
        .arg(&env.cert.ca_file)
        .arg("alice@example.test")
        .arg(password)
        .arg(&maildir)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all ok"),
        "imaplib IMAP4rev2 checks failed:\n{stdout}{}\n--- imapd ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        imapd.output()
    );
}
