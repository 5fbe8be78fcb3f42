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
    postern_tests::stack::mailctl(&env, &["user", "quota", "alice@example.test", "1M"], None);
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    for last in [
        "ok UID FETCH VANISHED",
        "ok THREAD ORDEREDSUBJECT",
        "all ok",
    ] {
        assert!(stdout.contains(last), "the script stopped early:\n{stdout}");
    }
}

/// `imapd.mail_max_userip_connections`: the (limit+1)th logged-in session of
/// one user from one address is refused with `NO [LIMIT]`; a slot frees
/// when a session ends.
#[test]
fn mail_max_userip_connections_limits_logins() {
    use std::io::{BufRead, BufReader, Write};
    let env = TestEnv::new();
    postern_tests::stack::setup_user(&env, "bob@example.test", "pw-bob");
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text.replace(
            "[imapd]\n",
            "[imapd]\nallow_plaintext_auth = true\nmail_max_userip_connections = 2\n",
        ),
    )
    .unwrap();
    let _authd = Daemon::start(&env, "authd");
    let imapd = Daemon::start(&env, "imapd");
    let login = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", env.ports["imap"])).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        w.write_all(b"a LOGIN bob@example.test pw-bob\r\n").unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        (w, r, line)
    };
    let (mut w1, _r1, l1) = login();
    let (_w2, _r2, l2) = login();
    assert!(l1.starts_with("a OK") && l2.starts_with("a OK"), "{l1}{l2}");
    let (_w3, _r3, l3) = login();
    assert!(l3.starts_with("a NO [LIMIT]"), "{l3}");
    // The first logs out: a new login fits again.
    w1.write_all(b"b LOGOUT\r\n").unwrap();
    drop(w1);
    let mut ok = false;
    for _ in 0..50 {
        let (_w, _r, l) = login();
        if l.starts_with("a OK") {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ok, "slot not released\n{}", imapd.output());
    assert!(imapd.output().contains("mail_max_userip_connections"));
}

/// `imapd.client_connection_count_limit`: the (limit+1)th connection from
/// one address gets `* BYE` before anything else; closing one frees a slot.
#[test]
fn client_connection_count_limit_per_address() {
    use std::io::{BufRead, BufReader};
    let env = TestEnv::new();
    postern_tests::stack::setup_user(&env, "bob@example.test", "pw-bob");
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text.replace("[imapd]\n", "[imapd]\nclient_connection_count_limit = 2\n"),
    )
    .unwrap();
    let _authd = Daemon::start(&env, "authd");
    let imapd = Daemon::start(&env, "imapd");
    let greet = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", env.ports["imap"])).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        (r, line)
    };
    let (c1, g1) = greet();
    let (_c2, g2) = greet();
    assert!(g1.starts_with("* OK") && g2.starts_with("* OK"), "{g1}{g2}");
    let (_c3, g3) = greet();
    assert!(g3.starts_with("* BYE"), "{g3}");
    drop(c1);
    let mut ok = false;
    for _ in 0..50 {
        if greet().1.starts_with("* OK") {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ok, "slot not released\n{}", imapd.output());
    assert!(imapd.output().contains("client_connection_count_limit"));
}
