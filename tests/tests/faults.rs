//! Fault tests (issue 9): the stack with authd down, and with a full spool
//! file system.
//!
//! * authd killed: smtpd answers 4xx at RCPT and AUTH (never 5xx, never
//!   accepts and loses), pop3d `-ERR [SYS/TEMP]`, imapd `NO [UNAVAILABLE]`;
//!   mail already queued waits (the queue's routing cannot resolve the
//!   recipient through authd: 451 4.3.0, deferred) and is
//!   delivered once authd is back; everything resumes without restarting
//!   the other daemons.
//! * spool on a 4 MiB tmpfs that is then filled: smtpd answers `452 4.3.1`
//!   after DATA, nothing half-written stays in the spool or reaches the
//!   Maildir, and mail flows again once there is room;
//! * the mail store's file system full: lmtp-delivery 451, the queue defers,
//!   delivery once there is room, no partial file in the Maildir.
//!
//! The tmpfs tests need root (mount); CI runs as root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use postern_tests::stack::{files, maildir, setup_users, wait_for_messages};
use postern_tests::{Daemon, TestEnv, bin};

fn python(script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every client-facing check with authd in the state the caller arranged:
/// prints `rcpt <code>`, `auth <code>`, `pop3 <reply>`, `imap <reply>`.
fn probe(env: &TestEnv) -> String {
    python(&format!(
        r#"
import smtplib, poplib, imaplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
s = smtplib.SMTP("127.0.0.1", {smtp}, timeout=20)
s.ehlo("client.example.org")
s.mail("carol@example.org")
print("rcpt", s.rcpt("alice@example.test")[0])
s.quit()
s = smtplib.SMTP("127.0.0.1", {sub}, timeout=20)
s.starttls(context=ctx)
s.ehlo("client.example.org")
try:
    s.login("alice@example.test", "pw-alice")
    print("auth 235")
except smtplib.SMTPAuthenticationError as e:
    print("auth", e.smtp_code)
s.quit()
p = poplib.POP3_SSL("127.0.0.1", {pop3s}, context=ctx, timeout=20)
p.user("alice@example.test")
try:
    print("pop3", p.pass_("pw-alice").decode())
except poplib.error_proto as e:
    print("pop3", e.args[0].decode())
p.quit()
i = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx, timeout=20)
try:
    typ, data = i.login("alice@example.test", "pw-alice")
    print("imap", typ, data[0].decode())
    i.logout()
except imaplib.IMAP4.error as e:
    print("imap NO", str(e))
"#,
        ca = env.cert.ca_file.display().to_string(),
        smtp = env.ports["smtp"],
        sub = env.ports["submission"],
        pop3s = env.ports["pop3s"],
        imaps = env.ports["imaps"],
    ))
}

/// Submit through the `sendmail` entry point (the queue's public socket,
/// no authd involved).
fn sendmail(env: &TestEnv, rcpt: &str, body: &str) {
    let link = env.path().join("sendmail");
    if !link.exists() {
        std::os::unix::fs::symlink(bin("mailctl"), &link).unwrap();
    }
    let mut c = Command::new(&link)
        .arg("-C")
        .arg(&env.config_path)
        .args(["-i", rcpt])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sendmail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn authd_down_gives_temporary_errors_and_service_resumes() {
    let env = TestEnv::new();
    setup_users(
        &env,
        "\n[queue]\nminimal_backoff_time = \"1s\"\nmaximal_backoff_time = \"1s\"\nqueue_run_delay = \"1s\"\n",
    );
    let mut authd = Daemon::start(&env, "authd");
    let others: Vec<Daemon> = ["lmtp-delivery", "queue-manager", "smtpd", "pop3d", "imapd"]
        .into_iter()
        .map(|d| Daemon::start(&env, d))
        .collect();
    let up = probe(&env);
    for want in ["rcpt 250", "auth 235", "pop3 +OK", "imap OK"] {
        assert!(up.contains(want), "with authd up, {want:?} missing:\n{up}");
    }

    authd.signal(Signal::SIGKILL);
    authd
        .wait_exit(Duration::from_secs(10))
        .expect("authd exit");
    drop(authd);
    let down = probe(&env);
    let line = |p: &str| {
        down.lines()
            .find(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no {p} line:\n{down}"))
            .to_string()
    };
    // lmtp-delivery asked directly (as Postfix or `delivery_transport =
    // "lmtp"` would): 451 at RCPT, so the LMTP client keeps the message.
    let lmtp = python(&format!(
        "import smtplib\nc = smtplib.LMTP({:?})\nc.ehlo('x')\nc.mail('carol@example.org')\nprint('lmtp', c.rcpt('alice@example.test')[0])\nc.quit()\n",
        env.socket("private/lmtp.sock").display().to_string()
    ));
    assert_eq!(lmtp.trim(), "lmtp 451", "LMTP RCPT with authd down");
    let rcpt = line("rcpt ");
    let auth = line("auth ");
    // Temporary (the client keeps the message and retries), never 5xx.
    assert_eq!(rcpt, "rcpt 451", "RCPT with authd down");
    assert_eq!(auth, "auth 454", "AUTH with authd down");
    assert!(
        line("pop3 ").starts_with("pop3 -ERR [SYS/TEMP]"),
        "POP3 with authd down:\n{down}"
    );
    assert!(
        line("imap ").contains("[UNAVAILABLE]"),
        "IMAP with authd down:\n{down}"
    );

    // Mail queued while authd is down is not lost: the queue cannot resolve
    // alice (routing asks authd; 451 4.3.0), defers it and delivers it
    // later.
    sendmail(
        &env,
        "alice@example.test",
        "Subject: while authd was down\n\nkept\n",
    );
    let queue = &others[1];
    queue
        .wait_output("deferred", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n--- lmtp-delivery ---\n{}", others[0].output()));
    assert!(files(&maildir(&env, "alice")).is_empty());

    // authd back: everything resumes, no other daemon restarted.
    let _authd = Daemon::start(&env, "authd");
    let end = Instant::now() + Duration::from_secs(20);
    let again = loop {
        let p = probe(&env);
        if ["rcpt 250", "auth 235", "pop3 +OK", "imap OK"]
            .iter()
            .all(|w| p.contains(w))
        {
            break p;
        }
        assert!(Instant::now() < end, "service did not resume:\n{p}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(again.contains("rcpt 250"));
    let got = wait_for_messages(&maildir(&env, "alice"), 1, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", queue.output()));
    assert_eq!(got.len(), 1);
    assert!(
        std::fs::read_to_string(&got[0])
            .unwrap()
            .contains("Subject: while authd was down")
    );
    for d in &others {
        assert!(
            !d.output().contains("panicked"),
            "{} panicked:\n{}",
            d.name,
            d.output()
        );
    }
}

/// A tmpfs mounted for the test; unmounted (lazily) on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed (the test needs root and mount rights): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Write zeros into `path` until the file system is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    // Top up byte-sized leftovers too.
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn full_spool_gives_452_and_nothing_half_written() {
    let env = TestEnv::new();
    setup_users(
        &env,
        "\n[queue]\nminimal_backoff_time = \"1s\"\nmaximal_backoff_time = \"1s\"\nqueue_run_delay = \"1s\"\n",
    );
    let spool = env.path().join("lib/spool");
    let _mount = Mount::tmpfs(&spool, "4m");
    let mut daemons: Vec<Daemon> = ["authd", "lmtp-delivery", "queue-manager", "smtpd"]
        .into_iter()
        .map(|d| Daemon::start(&env, d))
        .collect();
    let send = |subject: &str| -> String {
        python(&format!(
            r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=30)
s.ehlo("client.example.org")
s.mail("carol@example.org")
s.rcpt("alice@example.test")
code, msg = s.data(b"Subject: {subject}\r\n\r\n" + b"0123456789abcdef" * 4096 + b"\r\n")
print(code, msg.decode())
s.quit()
"#,
            port = env.ports["smtp"]
        ))
    };
    let first = send("before full");
    assert!(first.starts_with("250"), "{first}");
    wait_for_messages(&maildir(&env, "alice"), 1, Duration::from_secs(20)).unwrap();
    // The queue finishes with the first message (status record, removal)
    // after the Maildir has it: wait until the spool is empty before
    // filling the disk, so what is checked below is the refused message only.
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while ["incoming", "active", "deferred"].iter().any(|q| {
        std::fs::read_dir(spool.join(q))
            .map(|d| d.count() > 0)
            .unwrap_or(false)
    }) {
        assert!(
            std::time::Instant::now() < end,
            "first message still queued"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let filler = spool.join("filler");
    fill(&filler);
    let full = send("while full");
    assert!(
        full.starts_with("452 4.3.1"),
        "full spool: {full}\n--- queue-manager ---\n{}\n--- smtpd ---\n{}",
        daemons[2].output(),
        daemons[3].output()
    );
    // Local submission too: sendmail exits 75 (EX_TEMPFAIL), saying why.
    let link = env.path().join("sendmail");
    std::os::unix::fs::symlink(bin("mailctl"), &link).unwrap();
    let mut c = Command::new(&link)
        .arg("-C")
        .arg(&env.config_path)
        .args(["-i", "alice@example.test"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"Subject: sendmail while full\n\nx\n")
        .unwrap();
    let out = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("insufficient system storage"), "{err}");
    // Nothing half-written left behind for delivery.
    for q in ["tmp", "incoming", "active", "deferred", "corrupt"] {
        let n = std::fs::read_dir(spool.join(q))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(n, 0, "{q}/ not empty after a refused message");
    }
    // A crash now (spool still full) and the recovery on restart find
    // nothing to deliver either.
    daemons[2].signal(Signal::SIGKILL);
    daemons[2].wait_exit(Duration::from_secs(10)).unwrap();
    daemons[2] = Daemon::start(&env, "queue-manager");

    std::fs::remove_file(&filler).unwrap();
    let after = send("after full");
    assert!(after.starts_with("250"), "{after}");
    let got = wait_for_messages(&maildir(&env, "alice"), 2, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", daemons[2].output()));
    // Give a stray delivery of the refused message time to show up.
    std::thread::sleep(Duration::from_secs(2));
    let got = if files(&maildir(&env, "alice")).len() > got.len() {
        files(&maildir(&env, "alice"))
    } else {
        got
    };
    let subjects: Vec<String> = got
        .iter()
        .map(|f| {
            let t = std::fs::read_to_string(f).unwrap();
            assert!(
                t.ends_with("0123456789abcdef\n"),
                "truncated: {}",
                f.display()
            );
            t.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap()
                .to_string()
        })
        .collect();
    let mut subjects = subjects;
    subjects.sort();
    assert_eq!(subjects, ["after full", "before full"]);
}

/// The mail store's file system full: lmtp-delivery answers 451 (the copy
/// in `tmp/` is removed), the queue keeps the message deferred, and once
/// there is room it is delivered, once and complete.
#[test]
fn full_mail_store_defers_and_delivers_later() {
    let env = TestEnv::new();
    setup_users(
        &env,
        "\n[queue]\nminimal_backoff_time = \"1s\"\nmaximal_backoff_time = \"1s\"\nqueue_run_delay = \"1s\"\n",
    );
    let store = env.path().join("lib/mail");
    let _mount = Mount::tmpfs(&store, "4m");
    let daemons: Vec<Daemon> = ["authd", "lmtp-delivery", "queue-manager", "smtpd"]
        .into_iter()
        .map(|d| Daemon::start(&env, d))
        .collect();
    let md = maildir(&env, "alice");
    mailstore::create_maildir(&md).unwrap();
    let filler = store.join("filler");
    fill(&filler);
    let out = python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=30)
s.sendmail("carol@example.org", ["alice@example.test"], b"Subject: store full\r\n\r\n" + b"0123456789abcdef" * 4096 + b"\r\n")
s.quit()
print("sent")
"#,
        port = env.ports["smtp"]
    ));
    assert!(out.contains("sent"));
    daemons[2]
        .wait_output("deferred", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n--- lmtp-delivery ---\n{}", daemons[1].output()));
    assert!(
        daemons[1].output().contains("delivery failed"),
        "{}",
        daemons[1].output()
    );
    for sub in ["tmp", "new", "cur"] {
        assert_eq!(
            std::fs::read_dir(md.join(sub)).unwrap().count(),
            0,
            "{sub}/ not empty while the store is full"
        );
    }
    std::fs::remove_file(&filler).unwrap();
    let got = wait_for_messages(&md, 1, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", daemons[2].output()));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(files(&md).len(), 1, "delivered more than once");
    let text = std::fs::read_to_string(&got[0]).unwrap();
    assert!(text.contains("Subject: store full") && text.ends_with("0123456789abcdef\n"));
    assert_eq!(std::fs::read_dir(md.join("tmp")).unwrap().count(), 0);
}
