//! `mailctl backup` / `mailctl restore`, black box, on a running system:
//! a delivered message (flagged over IMAP) and a message waiting in the
//! queue (lmtp-delivery stopped) are backed up with the directory; the
//! directory is wiped, the mail directory and the spool deleted; after
//! the restore the same logins work, the message is back with its UID,
//! UIDVALIDITY and flag, and the queued message is delivered.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use postern_tests::stack::{maildir, setup_users, wait_for_messages};
use postern_tests::{Daemon, TestEnv, run_tool};

const WAIT: Duration = Duration::from_secs(30);

fn ok(r: (i32, String, String)) -> (String, String) {
    assert_eq!(r.0, 0, "stdout: {}\nstderr: {}", r.1, r.2);
    (r.1, r.2)
}

fn smtp_send(env: &TestEnv, to: &str, subject: &str) {
    let py = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=30)
msg = b"From: carol@remote.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"
assert not s.sendmail("carol@remote.test", ["{to}"], msg)
s.quit()
"#,
        port = env.ports["smtp"],
    );
    let out = Command::new("python3").arg("-c").arg(py).output().unwrap();
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// IMAP as `user`: "UIDVALIDITY uid:flags:subject ..." of INBOX, or the
/// login refusal. `flag`: first STORE +FLAGS (\Flagged) on UID 1.
fn imap_state(env: &TestEnv, user: &str, pw: &str, flag: bool) -> String {
    let py = r#"
import imaplib, ssl, sys
port, ca, user, pw, flag = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx, timeout=20)
try:
    m.login(user, pw)
except imaplib.IMAP4.error as e:
    print("refused"); sys.exit(0)
m.select("INBOX")
if flag == "1":
    m.uid("STORE", "1", "+FLAGS", "(\\Flagged)")
v = m.untagged_responses["UIDVALIDITY"][0].decode()
out = [v]
typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
flags = {}
for d in data:
    line = d.decode()
    uid = line.split("UID ")[1].split()[0].rstrip(")")
    flags[uid] = " ".join(sorted(f.decode() for f in imaplib.ParseFlags(d) if f != b"\\Recent"))
typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
for d in data:
    if isinstance(d, tuple):
        uid = d[0].decode().split("UID ")[1].split()[0]
        subj = d[1].decode().strip().split(": ", 1)[1]
        out.append("%s:%s:%s" % (uid, flags[uid], subj))
print(" ".join(out))
m.logout()
"#;
    let out = Command::new("python3")
        .args(["-c", py])
        .arg(env.ports["imaps"].to_string())
        .arg(&env.cert.ca_file)
        .args([user, pw, if flag { "1" } else { "0" }])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn spool_files(env: &TestEnv) -> usize {
    ["incoming", "active", "deferred", "hold"]
        .iter()
        .filter_map(|q| std::fs::read_dir(env.path().join("lib/spool").join(q)).ok())
        .map(|rd| rd.count())
        .sum()
}

#[test]
fn backup_delete_restore_brings_back_mail_queue_and_logins() {
    let env = TestEnv::new();
    setup_users(&env, "");
    let start = |name: &str| Daemon::start(&env, name);
    let authd = start("authd");
    let mut lmtp = Some(start("lmtp-delivery"));
    let mut qm = Some(start("queue-manager"));
    let _smtpd = start("smtpd");
    let _imapd = start("imapd");

    smtp_send(&env, "alice@example.test", "kept");
    wait_for_messages(&maildir(&env, "alice"), 1, WAIT).unwrap();
    let before = imap_state(&env, "alice@example.test", "pw-alice", true);
    assert!(before.ends_with(" 1:\\Flagged:kept"), "{before}");

    // Mail for bob waits in the queue while lmtp-delivery is down.
    lmtp.take().unwrap().stop();
    smtp_send(&env, "bob@example.test", "queued");
    let end = Instant::now() + WAIT;
    while spool_files(&env) == 0 {
        assert!(Instant::now() < end, "the message never reached the spool");
        std::thread::sleep(Duration::from_millis(50));
    }

    let bk = env.path().join("backup");
    let (_, err) = ok(run_tool(&env, "mailctl", &["backup", bk.to_str().unwrap()]));
    assert!(
        err.contains("directory (1 domains, 2 users, 0 aliases)"),
        "{err}"
    );
    assert!(err.contains("spool (1 messages)"), "{err}");
    let manifest = std::fs::read_to_string(bk.join("MANIFEST")).unwrap();
    assert!(manifest.starts_with("postern backup\n"), "{manifest}");
    for f in ["directory.yaml", "directory.sqlite"] {
        let mode = std::fs::metadata(bk.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // A second backup into the same directory is refused.
    let (code, _, err) = run_tool(&env, "mailctl", &["backup", bk.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");

    // Disaster: queue-manager stopped, directory wiped, mail and spool gone.
    qm.take().unwrap().stop();
    let empty = env.path().join("empty.yaml");
    std::fs::write(&empty, "version: 1\n").unwrap();
    ok(run_tool(
        &env,
        "mailctl",
        &["config", "apply", empty.to_str().unwrap()],
    ));
    std::fs::remove_dir_all(env.path().join("lib/mail")).unwrap();
    std::fs::remove_dir_all(env.path().join("lib/spool")).unwrap();
    std::fs::create_dir_all(env.path().join("lib/spool")).unwrap();
    assert_eq!(
        imap_state(&env, "alice@example.test", "pw-alice", false),
        "refused"
    );

    let (_, err) = ok(run_tool(
        &env,
        "mailctl",
        &["restore", bk.to_str().unwrap()],
    ));
    assert!(err.contains("restored from"), "{err}");
    // Restoring again is refused: the mail directory is no longer empty.
    let (code, _, err) = run_tool(&env, "mailctl", &["restore", bk.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not empty"), "{err}");

    // authd kept running; SIGHUP drops its cached refusal.
    authd.signal(Signal::SIGHUP);
    authd.wait_output("directory cache cleared", WAIT).unwrap();
    assert_eq!(
        imap_state(&env, "alice@example.test", "pw-alice", false),
        before
    );

    let _lmtp = start("lmtp-delivery");
    let _qm = start("queue-manager");
    ok(run_tool(&env, "mailctl", &["queue", "flush"]));
    wait_for_messages(&maildir(&env, "bob"), 1, WAIT).unwrap();
    let bob = imap_state(&env, "bob@example.test", "pw-bob", false);
    assert!(bob.ends_with(" 1::queued"), "{bob}");
}
