//! Local submission with the host's usual tools: `echo hi | mail -s test
//! alice@example.test` with Debian's s-nail, and mutt sending in batch mode,
//! both through our `sendmail` entry point (mailctl called by that name,
//! configuration from `$POSTERN_CONFIG`), then queue-manager → LMTP →
//! Maildir.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use postern_tests::stack::{maildir, setup_users, wait_for_messages};
use postern_tests::{Daemon, TestEnv, bin};

fn run(mut cmd: Command, stdin: &[u8]) -> String {
    let mut c = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client installed (scripts/test-deps.sh)");
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = c.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

#[test]
fn s_nail_and_mutt_submit_through_sendmail() {
    let env = TestEnv::new();
    setup_users(&env, "");
    let _d: Vec<Daemon> = ["authd", "lmtp-delivery", "queue-manager"]
        .into_iter()
        .map(|d| Daemon::start(&env, d))
        .collect();
    let link = env.path().join("sendmail");
    std::os::unix::fs::symlink(bin("mailctl"), &link).unwrap();
    let home = env.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    // s-nail (Debian's `mail`): -:/ loads no rc files; mta is its sendmail.
    let mut nail = Command::new("s-nail");
    nail.args(["-:/", "-Snosave", "-Sexpandaddr"])
        .arg(format!("-Smta={}", link.display()))
        .args(["-s", "test from mail", "alice@example.test"])
        .env("POSTERN_CONFIG", &env.config_path)
        .env("HOME", &home)
        .env("USER", "root");
    run(nail, b"hi\n");

    // mutt in batch mode (stdin not a terminal) with its sendmail variable.
    let mut mutt = Command::new("mutt");
    mutt.args(["-n", "-F", "/dev/null"])
        .arg("-e")
        .arg(format!(
            "set sendmail=\"{}\"; set from=\"root@example.test\"; set use_from=yes; set record=\"\"",
            link.display()
        ))
        .args(["-s", "test from mutt", "bob@example.test"])
        .env("POSTERN_CONFIG", &env.config_path)
        .env("HOME", &home)
        .env("TERM", "dumb");
    run(mutt, b"hello from mutt\n");

    let a = wait_for_messages(&maildir(&env, "alice"), 1, Duration::from_secs(20)).unwrap();
    let text = std::fs::read_to_string(&a[0]).unwrap();
    let first = a[0].clone();
    assert!(text.contains("Subject: test from mail"), "{text}");
    assert!(text.ends_with("\n\nhi\n"), "{text}");
    assert!(
        text.contains("Message-ID: <") || text.contains("Message-Id: <"),
        "{text}"
    );
    let b = wait_for_messages(&maildir(&env, "bob"), 1, Duration::from_secs(20)).unwrap();
    let text = std::fs::read_to_string(&b[0]).unwrap();
    assert!(text.contains("Subject: test from mutt"), "{text}");
    assert!(text.contains("hello from mutt"), "{text}");
    assert!(text.contains("Return-Path: <root@example.test>"), "{text}");

    // The same complete message piped to sendmail twice is two messages.
    let msg = b"From: root@example.test\nTo: alice@example.test\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <cron@example.test>\nSubject: cron\n\nsame output\n";
    for _ in 0..2 {
        let mut sm = Command::new(&link);
        sm.args(["-t", "-i"])
            .env("POSTERN_CONFIG", &env.config_path);
        run(sm, msg);
    }
    let a = wait_for_messages(&maildir(&env, "alice"), 3, Duration::from_secs(20)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let crons = postern_tests::stack::files(&maildir(&env, "alice"))
        .into_iter()
        .filter(|p| *p != first)
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("Subject: cron")
        })
        .count();
    assert_eq!(crons, 2, "{a:?}");
}
