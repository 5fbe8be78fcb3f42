//! lmtp-delivery writing a system user's `~/Maildir` with that user's
//! identity (uid:gid from authd), while virtual users' mailboxes stay the
//! daemon's. Real authd (`system` and SQLite backends), real lmtp-delivery,
//! Python's smtplib.LMTP on the Unix socket, a throwaway Unix account.
//! Needs root (useradd; the daemon switches its file-system uid); CI runs
//! as root.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use postern_tests::stack::{files, maildir, setup_users};
use postern_tests::sysuser::SystemUser;
use postern_tests::{Daemon, TestEnv, bin};

const MSG1: &[u8] = b"Subject: to a system user\r\nFrom: carol@example.org\r\n\r\nline one\r\n.dot line\r\ncaf\xc3\xa9\r\n";
const MSG2: &[u8] = b"Subject: second\r\n\r\nfor the archive\r\n";

struct Account {
    _user: SystemUser,
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

fn account() -> Account {
    let user = SystemUser::create("Sys-pw 9");
    let pw = nix::unistd::User::from_name(&user.name)
        .unwrap()
        .expect("passwd entry");
    Account {
        name: user.name.clone(),
        uid: pw.uid.as_raw(),
        gid: pw.gid.as_raw(),
        home: pw.dir,
        _user: user,
    }
}

/// Send `msg` from `sender` to `rcpts` over LMTP; returns one line per
/// recipient: `<rcpt> <code>` (250 for accepted ones).
fn lmtp(env: &TestEnv, sender: &str, rcpts: &[&str], msg: &[u8], daemon: &Daemon) -> Vec<String> {
    let py = format!(
        r#"
import re, smtplib
c = smtplib.LMTP({sock:?})
code, _ = c.ehlo("client.example")
assert code == 250, code
rcpts = {rcpts:?}
code, _ = c.mail({sender:?})
assert code == 250, code
codes = {{}}
for r in rcpts:
    codes[r] = c.rcpt(r)[0]
accepted = [r for r in rcpts if codes[r] == 250]
if accepted:
    code, _ = c.docmd("DATA")
    assert code == 354, code
    c.send(re.sub(rb"(?m)^\.", b"..", bytes.fromhex({hex:?})) + b".\r\n")
    # LMTP: one reply per accepted recipient, in RCPT order.
    for r in accepted:
        codes[r] = c.getreply()[0]
for r in rcpts:
    print(r, codes[r])
c.quit()
"#,
        sock = env.socket("private/lmtp.sock").display().to_string(),
        hex = msg.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    );
    let out = Command::new("python3").arg("-c").arg(py).output().unwrap();
    assert!(
        out.status.success(),
        "{}\n--- lmtp-delivery ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.output()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

/// Every file and directory under `root` (and `root` itself).
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let mut children: Vec<_> = std::fs::read_dir(&out[i])
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            children.sort();
            out.extend(children);
        }
        i += 1;
    }
    out
}

fn daemon_ids() -> (u32, u32) {
    (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

fn expected(rcpt: &str, msg: &[u8]) -> Vec<u8> {
    let mut v = format!("Return-Path: <carol@example.org>\nDelivered-To: {rcpt}\n").into_bytes();
    v.extend(mailstore::to_stored_form(msg).0);
    v
}

/// A test environment whose directory is the system's users
/// (`sys.example.test`).
fn system_env() -> TestEnv {
    let env = TestEnv::new();
    let mut text = env.config_text("level = \"info\"");
    text.push_str(
        "\n[authd.directory]\nbackend = \"system\"\nmydestination = [\"sys.example.test\"]\n\
         myorigin = \"sys.example.test\"\ncache_ttl_secs = 1\n",
    );
    std::fs::write(&env.config_path, text).unwrap();
    env
}

#[test]
fn system_user_mail_is_written_as_the_user() {
    let acct = account();
    let env = system_env();
    let _authd = Daemon::start(&env, "authd");
    let lmtpd = Daemon::start(&env, "lmtp-delivery");
    assert_ne!(
        (acct.uid, acct.gid),
        daemon_ids(),
        "the test needs a daemon identity other than the user's"
    );
    let addr = format!("{}@sys.example.test", acct.name);
    let ext = format!("{}+archive@sys.example.test", acct.name);
    let md = acct.home.join("Maildir");
    assert!(!md.exists());

    // First delivery creates ~/Maildir with its default folders; the
    // retry of the same message is recognised as a duplicate; root is
    // refused (below system_min_uid: disabled).
    let r = lmtp(
        &env,
        "carol@example.org",
        &[&addr, "root@sys.example.test"],
        MSG1,
        &lmtpd,
    );
    assert_eq!(
        r,
        [format!("{addr} 250"), "root@sys.example.test 550".into()]
    );
    let r = lmtp(&env, "carol@example.org", &[&addr], MSG1, &lmtpd);
    assert_eq!(r, [format!("{addr} 250")]);
    // user+archive@ finds the Archive folder (looked up as the user).
    let r = lmtp(&env, "carol@example.org", &[&ext], MSG2, &lmtpd);
    assert_eq!(r, [format!("{ext} 250")]);

    let inbox = files(&md);
    assert_eq!(inbox.len(), 1, "one copy despite the retry: {inbox:?}");
    assert!(inbox[0].starts_with(md.join("new")));
    assert_eq!(std::fs::read(&inbox[0]).unwrap(), expected(&addr, MSG1));
    let archive = files(&md.join(".Archive"));
    assert_eq!(archive.len(), 1, "{archive:?}");
    assert_eq!(std::fs::read(&archive[0]).unwrap(), expected(&ext, MSG2));

    // Everything lmtp-delivery created is the user's: the Maildir, its
    // folders and their markers, subscriptions, the messages, the
    // duplicate records and their directory.
    let all = walk(&md);
    for must in [
        md.join("new"),
        md.join("tmp"),
        md.join(".Sent/cur"),
        md.join(".Archive/maildirfolder"),
        md.join("subscriptions"),
        md.join("postern-lmtp-seen"),
    ] {
        assert!(all.contains(&must), "{} missing", must.display());
    }
    let records: Vec<_> = std::fs::read_dir(md.join("postern-lmtp-seen"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(records.len(), 2, "one duplicate record per copy");
    for p in &all {
        assert_eq!(
            owner(p),
            (acct.uid, acct.gid),
            "{} not owned by the user",
            p.display()
        );
    }
    let out = lmtpd.output();
    assert!(out.contains("duplicate suppressed"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("delivered") && l.contains(&format!("uid={}", acct.uid))),
        "{out}"
    );
}

/// Virtual users (SQLite, no uid) and a user with a uid/gid of its own in
/// the same daemon: after a delivery as the user the same blocking thread
/// writes the next recipient's copy with the daemon's identity again.
fn mixed_setup(env: &TestEnv, acct: &Account) {
    setup_users(env, "");
    postern_tests::stack::mailctl(
        env,
        &["user", "add", "sys@example.test", "--password-stdin"],
        Some("pw-sys\n"),
    );
    postern_tests::stack::mailctl(
        env,
        &["user", "add", "wheel@example.test", "--password-stdin"],
        Some("pw-wheel\n"),
    );
    let db = env.path().join("lib/directory.sqlite");
    let py = format!(
        "import sqlite3\nc = sqlite3.connect({db:?})\n\
         n = c.execute('UPDATE users SET uid = ?, gid = ?, maildir = ? WHERE email = ?', ({uid}, {gid}, {md:?}, 'sys@example.test')).rowcount\n\
         assert n == 1, n\n\
         n = c.execute('UPDATE users SET uid = ?, gid = 0, maildir = ? WHERE email = ?', ({uid}, {md:?}, 'wheel@example.test')).rowcount\n\
         assert n == 1, n\nc.commit()\n",
        db = db.display().to_string(),
        uid = acct.uid,
        gid = acct.gid,
        md = acct.home.join("Maildir").display().to_string(),
    );
    let out = Command::new("python3").arg("-c").arg(py).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn identity_is_restored_for_the_next_virtual_recipient() {
    let acct = account();
    let env = TestEnv::new();
    mixed_setup(&env, &acct);
    let _authd = Daemon::start(&env, "authd");
    let lmtpd = Daemon::start(&env, "lmtp-delivery");
    let rcpts = ["sys@example.test", "alice@example.test", "bob@example.test"];
    // One transaction: the copies are written one after the other on one
    // thread, the system user's first.
    let r = lmtp(&env, "carol@example.org", &rcpts, MSG1, &lmtpd);
    assert_eq!(r, rcpts.map(|a| format!("{a} 250")));
    // An owner with group root is refused at RCPT, permanently.
    let r = lmtp(
        &env,
        "carol@example.org",
        &["wheel@example.test", "bob@example.test"],
        MSG2,
        &lmtpd,
    );
    assert_eq!(r, ["wheel@example.test 550", "bob@example.test 250"]);
    assert!(lmtpd.output().contains("mailbox owner refused"));
    // And the next transaction, virtual only.
    let r = lmtp(
        &env,
        "carol@example.org",
        &["alice@example.test"],
        MSG2,
        &lmtpd,
    );
    assert_eq!(r, ["alice@example.test 250"]);

    let sys = acct.home.join("Maildir");
    assert_eq!(files(&sys).len(), 1);
    for p in walk(&sys) {
        assert_eq!(owner(&p), (acct.uid, acct.gid), "{}", p.display());
    }
    let alice = maildir(&env, "alice");
    assert_eq!(files(&alice).len(), 2);
    assert_eq!(files(&maildir(&env, "bob")).len(), 2);
    for user in ["alice", "bob"] {
        let md = maildir(&env, user);
        let all = walk(&md);
        assert!(all.contains(&md.join("postern-lmtp-seen")));
        for p in all {
            assert_eq!(
                owner(&p),
                daemon_ids(),
                "{} is not the daemon's: identity not restored",
                p.display()
            );
        }
    }
    assert_eq!(
        std::fs::read(&files(&sys)[0]).unwrap(),
        expected("sys@example.test", MSG1)
    );
}

/// Without CAP_SETUID/CAP_SETGID (root with both removed from its
/// capability sets) the switch fails: `451 4.3.0` for the system user,
/// nothing written in its home, virtual users still delivered.
#[test]
fn without_the_capabilities_the_user_gets_451() {
    let acct = account();
    let env = TestEnv::new();
    mixed_setup(&env, &acct);
    let _authd = Daemon::start(&env, "authd");
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--inh-caps=-setuid,-setgid",
        "--bounding-set=-setuid,-setgid",
        "--",
    ])
    .arg(bin("lmtp-delivery"));
    let mut lmtpd = Daemon::spawn(&env, "lmtp-delivery", cmd);
    lmtpd
        .wait_notification("READY=1", std::time::Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", lmtpd.output()));
    let rcpts = ["sys@example.test", "alice@example.test"];
    let r = lmtp(&env, "carol@example.org", &rcpts, MSG1, &lmtpd);
    assert_eq!(r, ["sys@example.test 451", "alice@example.test 250"]);
    assert!(!acct.home.join("Maildir").exists());
    assert_eq!(files(&maildir(&env, "alice")).len(), 1);
    let out = lmtpd.output();
    assert!(
        out.contains("delivery failed") && out.contains("CAP_SETUID"),
        "{out}"
    );
}

/// The whole local path: sendmail(1) → queue-manager → LMTP →
/// lmtp-delivery → the system user's `~/Maildir`, owned by the user.
#[test]
fn sendmail_to_a_system_user_through_the_queue() {
    let acct = account();
    let env = TestEnv::new();
    let mut text = env.config_text("level = \"info\"");
    text.push_str(
        "\n[queue]\ndelivery_transport = \"lmtp\"\n\n[authd.directory]\nbackend = \"system\"\n\
         mydestination = [\"sys.example.test\"]\nmyorigin = \"sys.example.test\"\ncache_ttl_secs = 1\n",
    );
    std::fs::write(&env.config_path, text).unwrap();
    let _authd = Daemon::start(&env, "authd");
    let _lmtpd = Daemon::start(&env, "lmtp-delivery");
    let queue = Daemon::start(&env, "queue-manager");
    let link = env.path().join("sendmail");
    std::os::unix::fs::symlink(bin("mailctl"), &link).unwrap();
    let addr = format!("{}@sys.example.test", acct.name);
    let mut c = Command::new(&link)
        .args(["-C"])
        .arg(&env.config_path)
        .args(["-i", "-f", "carol@example.org", &addr])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin
        .take()
        .unwrap()
        .write_all(b"Subject: via the queue\n\nhello system user\n")
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sendmail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = acct.home.join("Maildir");
    let got = postern_tests::stack::wait_for_messages(&md, 1, std::time::Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", queue.output()));
    let text = String::from_utf8(std::fs::read(&got[0]).unwrap()).unwrap();
    assert!(text.contains(&format!("Delivered-To: {addr}\n")), "{text}");
    assert!(text.ends_with("\n\nhello system user\n"), "{text}");
    for p in walk(&md) {
        assert_eq!(owner(&p), (acct.uid, acct.gid), "{}", p.display());
    }
}

/// The drop-in that enables system-user delivery, as README and the man
/// page print it (the same lines in both), applied to the shipped unit,
/// passes `systemd-analyze verify`.
#[test]
fn documented_drop_in_is_a_valid_unit() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let section = &readme[readme
        .find("### System users' mail")
        .expect("README section")..];
    let block = section
        .split_once("```ini\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("ini block")
        .0;
    let man = std::fs::read_to_string(repo.join("crates/lmtp-delivery/src/lib.rs")).unwrap();
    let man_block: String = man
        .split_once("//! ```text\n")
        .and_then(|(_, rest)| rest.split_once("//! ```"))
        .expect("man page block")
        .0
        .lines()
        .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
        .collect();
    assert_eq!(block, man_block, "README and man page differ");
    let drop_in = block
        .strip_prefix("[Service]\n")
        .expect("[Service] section");
    assert!(drop_in.contains("CAP_SETUID") && drop_in.contains("setfsuid"));

    let unit =
        std::fs::read_to_string(repo.join("deploy/systemd/postern-lmtp-delivery.service")).unwrap();
    // Alone, without the rest of postern.target; ExecStart at the built binary.
    let unit: String = unit
        .lines()
        .filter(|l| {
            !l.starts_with("PartOf=") && !l.starts_with("After=") && !l.starts_with("Wants=")
        })
        .map(|l| match l.strip_prefix("ExecStart=") {
            Some(rest) => format!(
                "ExecStart={} {}\n",
                bin("lmtp-delivery").display(),
                rest.split_once(' ').map_or("", |x| x.1)
            ),
            None => format!("{l}\n"),
        })
        .collect::<String>()
        .replace("[Install]", &format!("{drop_in}\n[Install]"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postern-lmtp-delivery.service");
    std::fs::write(&path, &unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("systemd-analyze (package systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}\n{unit}"
    );
}

/// Like the shipped unit without the drop-in: no CAP_SETUID/CAP_SETGID and
/// a system-call filter that kills the process on `setfsuid` (systemd's
/// `SystemCallFilter=~@privileged`). lmtp-delivery must not even try:
/// `451` for the system user, and the daemon keeps running.
#[test]
fn under_a_setfsuid_filter_the_daemon_survives() {
    let nr = match std::env::consts::ARCH {
        "x86_64" => 122,
        "aarch64" => 151,
        other => panic!("setfsuid's syscall number on {other}: add it"),
    };
    let acct = account();
    let env = TestEnv::new();
    mixed_setup(&env, &acct);
    let _authd = Daemon::start(&env, "authd");
    // A classic-BPF seccomp filter: setfsuid → kill the process, all else allowed.
    let py = format!(
        r#"
import ctypes, os, struct, sys
insns = [(0x20, 0, 0, 0), (0x15, 0, 1, {nr}), (0x06, 0, 0, 0x80000000), (0x06, 0, 0, 0x7fff0000)]
buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in insns))
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Prog(len(insns), ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
assert libc.prctl(38, 1, 0, 0, 0) == 0, ctypes.get_errno()
assert libc.prctl(22, 2, ctypes.addressof(prog), 0, 0) == 0, ctypes.get_errno()
os.execvp(sys.argv[1], sys.argv[1:])
"#
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(py)
        .args([
            "setpriv",
            "--inh-caps=-setuid,-setgid",
            "--bounding-set=-setuid,-setgid",
            "--",
        ])
        .arg(bin("lmtp-delivery"));
    let mut lmtpd = Daemon::spawn(&env, "lmtp-delivery", cmd);
    lmtpd
        .wait_notification("READY=1", std::time::Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", lmtpd.output()));
    let rcpts = ["sys@example.test", "alice@example.test"];
    let r = lmtp(&env, "carol@example.org", &rcpts, MSG1, &lmtpd);
    assert_eq!(r, ["sys@example.test 451", "alice@example.test 250"]);
    assert!(lmtpd.is_running(), "killed:\n{}", lmtpd.output());
    let r = lmtp(
        &env,
        "carol@example.org",
        &["bob@example.test"],
        MSG2,
        &lmtpd,
    );
    assert_eq!(r, ["bob@example.test 250"]);
    assert!(!acct.home.join("Maildir").exists());
}

/// pop3d serves a system user's `~/Maildir` with the user's own identity:
/// the user logs in with the Unix password, reads what lmtp-delivery wrote
/// byte-exact, deletes one message; everything pop3d created or renamed in
/// the Maildir (index, lock, the expunge) is the user's, not the daemon's.
#[test]
fn pop3d_uses_a_system_users_maildir_as_the_user() {
    let acct = account();
    let env = system_env();
    let _authd = Daemon::start(&env, "authd");
    let lmtpd = Daemon::start(&env, "lmtp-delivery");
    let pop3d = Daemon::start(&env, "pop3d");
    assert_ne!((acct.uid, acct.gid), daemon_ids());
    let addr = format!("{}@sys.example.test", acct.name);
    for msg in [MSG1, MSG2] {
        let r = lmtp(&env, "carol@example.org", &[&addr], msg, &lmtpd);
        assert_eq!(r, [format!("{addr} 250")]);
    }
    let md = acct.home.join("Maildir");
    assert_eq!(files(&md).len(), 2);
    let want = expected(&addr, MSG1);
    let py = format!(
        r#"
import poplib, ssl
p = poplib.POP3("127.0.0.1", {port}, timeout=30)
p.stls(ssl.create_default_context(cafile={ca:?}))
p.user({user:?})
p.pass_("Sys-pw 9")
assert p.stat()[0] == 2, p.stat()
resp, lines, _ = p.retr(1)
got = b"\n".join(lines) + b"\n"
want = bytes.fromhex({want:?})
assert got == want, (got, want)
p.dele(2)
p.quit()
"#,
        port = env.ports["pop3"],
        ca = env.cert.ca_file.display().to_string(),
        user = acct.name,
        want = want.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    );
    let out = Command::new("python3").arg("-c").arg(&py).output().unwrap();
    assert!(
        out.status.success(),
        "poplib: {}\n--- pop3d ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        pop3d.output()
    );
    assert_eq!(files(&md).len(), 1, "DELE + QUIT expunged one message");
    for p in walk(&md) {
        assert_eq!(
            owner(&p),
            (acct.uid, acct.gid),
            "{} not owned by the user\n--- pop3d ---\n{}",
            p.display(),
            pop3d.output()
        );
    }
}
