//! imapd extensions with Python's imaplib over implicit TLS (certificate
//! verified against the test CA): keywords, SEARCH date/size/OR/NOT keys,
//! APPEND date-time, RENAME, CHILDREN, modified UTF-7 names, NAMESPACE, ID,
//! ENABLE, UNSELECT. The checks are in `tests/py/imap_features.py`.

use std::path::Path;
use std::process::Command;

use postern_tests::{Daemon, TestEnv};

#[test]
fn imaplib_keywords_search_rename_mutf7_and_small_extensions() {
    let env = TestEnv::new();
    let password = "pw alice";
    let maildir = postern_tests::stack::setup_user(&env, "alice@example.test", password);
    let _authd = Daemon::start(&env, "authd");
    let imapd = Daemon::start(&env, "imapd");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/imap_features.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(env.ports["imaps"].to_string())
        .arg(&env.cert.ca_file)
        .arg("alice@example.test")
        .arg(password)
        .arg(&maildir)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "imaplib checks failed:\n{}{}\n--- imapd ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        imapd.output()
    );
}
