//! `mailctl import` / `mailctl export`, black-box: an mbox and a Maildir
//! imported into users made with mailctl, read back through the real imapd
//! (Python's imaplib over IMAPS: counts, flags, internal dates, bytes) and
//! through the store; export then import round-trips byte-exact.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use postern_tests::{Daemon, TestEnv, bin, run_tool};
use serde_json::Value;

const FAST: &str = "[authd.directory]
default_scheme = \"SHA512-CRYPT\"
cache_ttl_secs = 0
";

const PASSWORD: &str = "import-test-pw";

fn env() -> TestEnv {
    let env = TestEnv::new();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&env.config_path)
        .unwrap();
    write!(f, "\n{FAST}").unwrap();
    env
}

fn ok(r: (i32, String, String)) -> (String, String) {
    assert_eq!(r.0, 0, "stdout: {}\nstderr: {}", r.1, r.2);
    (r.1, r.2)
}

fn mailctl(env: &TestEnv, args: &[&str]) -> (String, String) {
    ok(run_tool(env, "mailctl", args))
}

fn add_user(env: &TestEnv, address: &str) -> PathBuf {
    let mut child = Command::new(bin("mailctl"))
        .arg("--config")
        .arg(&env.config_path)
        .args(["user", "add", address, "--password-stdin"])
        .env_remove("POSTERN_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (show, _) = mailctl(env, &["user", "show", address]);
    let mailbox = show
        .lines()
        .find_map(|l| l.strip_prefix("mailbox: "))
        .expect("mailbox line");
    PathBuf::from(mailbox)
}

const MBOX: &[u8] = b"From alice@example.test Thu Dec  3 09:00:00 2026
Return-Path: <alice@example.test>
Subject: first
Status: RO
X-Status: AF
X-Keywords: Work $Forwarded

seen, answered and flagged
>From escaped in the file
\x20

From bob@example.test Fri Dec  4 10:30:00 2026
Subject: second

unread
From in the middle of a line is not a separator

From carol@example.test Sat Dec  5 11:45:10 2026
Subject: third
Status: O
X-Status: T

a draft

";

/// What imapd says about a folder: per message (flags, internal date,
/// bytes), via Python's imaplib over IMAPS with the test CA.
fn imap_read(env: &TestEnv, user: &str, folder: &str) -> Vec<Value> {
    let script = r#"
import imaplib, json, ssl, sys, time
port, ca, user, pw, folder = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx, timeout=20)
m.login(user, pw)
typ, _ = m.select(folder, readonly=True)
assert typ == "OK", typ
out = []
typ, data = m.fetch("1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
# A message is a (head, literal) tuple followed by the rest of its line
# (b")" or b" FLAGS (...))" when the server sends items after the literal).
for i, part in enumerate(data):
    if isinstance(part, tuple):
        meta = part[0]
        if i + 1 < len(data) and isinstance(data[i + 1], bytes):
            meta += data[i + 1]
        flags = sorted(f.decode() for f in imaplib.ParseFlags(meta))
        tt = imaplib.Internaldate2tuple(meta)
        out.append({"flags": flags, "date": int(time.mktime(tt)), "body": part[1].decode("latin-1")})
m.logout()
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(env.ports["imaps"].to_string())
        .arg(&env.cert.ca_file)
        .args([user, PASSWORD, folder])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn flags(v: &Value) -> Vec<String> {
    v["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .filter(|f| f != "\\Recent")
        .collect()
}

#[test]
fn mbox_and_maildir_imports_read_back_through_imapd() {
    let env = env();
    mailctl(&env, &["domain", "add", "example.test"]);
    add_user(&env, "alice@example.test");
    let src = env.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mbox = src.join("mail.mbox");
    std::fs::write(&mbox, MBOX).unwrap();
    let (_, err) = mailctl(
        &env,
        &[
            "import",
            "mbox",
            mbox.to_str().unwrap(),
            "--user",
            "alice@example.test",
        ],
    );
    assert!(err.contains("imported 3 message(s)"), "{err}");

    // A Maildir: one seen+flagged in cur/, one new, with their mtimes.
    let md = src.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    let put = |rel: &str, body: &str, mtime: u64| {
        let p = md.join(rel);
        std::fs::write(&p, body).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
            .unwrap();
    };
    // Keyword letters: a = Important, b = $Junk (Dovecot's list).
    std::fs::write(md.join("dovecot-keywords"), "0 Important\n1 $Junk\n").unwrap();
    put(
        "cur/1700000000.M1P1.old,S=30:2,FSb",
        "Subject: kept\n\nflagged and seen\n",
        1_700_000_000,
    );
    put(
        "new/1700000100.M2P1.old",
        "Subject: fresh\n\nnew mail\n",
        1_700_000_100,
    );
    mailctl(
        &env,
        &[
            "import",
            "maildir",
            md.to_str().unwrap(),
            "--user",
            "alice@example.test",
            "--folder",
            "Archive",
        ],
    );

    let _authd = Daemon::start(&env, "authd");
    let _imapd = Daemon::start(&env, "imapd");
    let inbox = imap_read(&env, "alice@example.test", "INBOX");
    assert_eq!(inbox.len(), 3, "{inbox:?}");
    assert_eq!(
        flags(&inbox[0]),
        ["$Forwarded", "Work", "\\Answered", "\\Flagged", "\\Seen"]
    );
    assert_eq!(inbox[0]["date"], 1_796_288_400u64, "From_ line date");
    assert_eq!(
        inbox[0]["body"],
        "Return-Path: <alice@example.test>\r\nSubject: first\r\n\r\nseen, answered and flagged\r\nFrom escaped in the file\r\n \r\n"
    );
    assert!(flags(&inbox[1]).is_empty(), "{:?}", inbox[1]);
    assert_eq!(inbox[1]["date"], 1_796_380_200u64);
    assert!(
        inbox[1]["body"]
            .as_str()
            .unwrap()
            .ends_with("unread\r\nFrom in the middle of a line is not a separator\r\n")
    );
    assert_eq!(flags(&inbox[2]), ["\\Draft"]);
    let archive = imap_read(&env, "alice@example.test", "Archive");
    assert_eq!(archive.len(), 2, "{archive:?}");
    assert_eq!(flags(&archive[0]), ["$Junk", "\\Flagged", "\\Seen"]);
    assert_eq!(archive[0]["date"], 1_700_000_000u64);
    assert_eq!(
        archive[0]["body"],
        "Subject: kept\r\n\r\nflagged and seen\r\n"
    );
    assert!(flags(&archive[1]).is_empty());
    assert_eq!(archive[1]["date"], 1_700_000_100u64);
}

#[test]
fn export_then_import_round_trips_byte_exact() {
    let env = env();
    mailctl(&env, &["domain", "add", "example.test"]);
    let a = add_user(&env, "alice@example.test");
    let b = add_user(&env, "bob@example.test");
    let dir = env.path().join("x");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("in.mbox");
    std::fs::write(&src, MBOX).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    mailctl(
        &env,
        &["import", "mbox", &s(&src), "--user", "alice@example.test"],
    );
    // mbox: alice -> file -> bob -> file, both files equal.
    let (one, two) = (dir.join("one.mbox"), dir.join("two.mbox"));
    mailctl(
        &env,
        &["export", "mbox", "--user", "alice@example.test", &s(&one)],
    );
    mailctl(
        &env,
        &["import", "mbox", &s(&one), "--user", "bob@example.test"],
    );
    mailctl(
        &env,
        &["export", "mbox", "--user", "bob@example.test", &s(&two)],
    );
    let (x, y) = (std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
    assert_eq!(String::from_utf8_lossy(&x), String::from_utf8_lossy(&y));
    assert_eq!(
        String::from_utf8_lossy(&x).matches("\nFrom ").count() + 1,
        3
    );

    // Maildir: bob -> directory -> bob's "Copy" folder; same bytes, flags, dates.
    let md = dir.join("export-md");
    mailctl(
        &env,
        &["export", "maildir", "--user", "bob@example.test", &s(&md)],
    );
    mailctl(
        &env,
        &[
            "import",
            "maildir",
            &s(&md),
            "--user",
            "bob@example.test",
            "--folder",
            "Copy",
        ],
    );
    let inbox = mailstore::Mailbox::open(&b).unwrap();
    let copy = mailstore::Mailbox::open(&mailstore::folder_path(&b, "Copy")).unwrap();
    let alice = mailstore::Mailbox::open(&a).unwrap();
    assert_eq!(inbox.messages().len(), 3);
    for ((m, c), o) in inbox
        .messages()
        .iter()
        .zip(copy.messages())
        .zip(alice.messages())
    {
        let bytes = inbox.read_message(m.uid).unwrap();
        assert_eq!(bytes, copy.read_message(c.uid).unwrap());
        assert_eq!(bytes, alice.read_message(o.uid).unwrap());
        assert_eq!((&m.flags, m.internal_date), (&c.flags, c.internal_date));
        assert_eq!((&m.flags, m.internal_date), (&o.flags, o.internal_date));
    }
    // Refused: an unknown user, a path that is not a Maildir.
    let (code, _, err) = run_tool(
        &env,
        "mailctl",
        &["import", "mbox", &s(&src), "--user", "nobody@example.test"],
    );
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = run_tool(
        &env,
        "mailctl",
        &["import", "maildir", &s(&dir), "--user", "bob@example.test"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a Maildir"), "{err}");
}

/// Per folder of `user` through imapd (imaplib over IMAPS): UIDVALIDITY,
/// UIDs in order and message count, plus the LIST names.
fn imap_uids(env: &TestEnv, user: &str, folders: &[&str]) -> Value {
    let script = r#"
import imaplib, json, ssl, sys
port, ca, user, pw = sys.argv[1:5]
folders = sys.argv[5:]
ctx = ssl.create_default_context(cafile=ca)
m = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx, timeout=20)
m.login(user, pw)
out = {"list": []}
typ, data = m.list('""', "*")
for line in data:
    out["list"].append(line.decode().rsplit(' ', 1)[1].strip('"'))
for f in folders:
    typ, data = m.select(f, readonly=True)
    assert typ == "OK", (f, typ, data)
    count = int(data[0])
    uidvalidity = int(m.untagged_responses["UIDVALIDITY"][0])
    uids = []
    if count:
        typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
        for d in data:
            s = d.decode()
            uids.append(int(s.split("UID ")[1].split()[0].rstrip(")")))
    typ, st = m.status(f, "(MESSAGES)")
    out[f] = {"uidvalidity": uidvalidity, "uids": uids, "count": count, "status": st[0].decode()}
m.logout()
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(env.ports["imaps"].to_string())
        .arg(&env.cert.ca_file)
        .args([user, PASSWORD])
        .args(folders)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn dovecot_maildir_keeps_uids_and_subfolders_land_in_their_folders() {
    let env = env();
    mailctl(&env, &["domain", "add", "example.test"]);
    add_user(&env, "alice@example.test");
    let md = env.path().join("src/Maildir");
    let put = |rel: &str, body: &str, mtime: u64| {
        let p = md.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
            .unwrap();
    };
    for d in ["", ".Sent/", ".Archive.2024/"] {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(format!("{d}{sub}"))).unwrap();
        }
    }
    // INBOX: two messages Dovecot numbered 5 and 9 (UIDVALIDITY 1234567),
    // one it never saw (gets the next UID after them).
    put(
        "cur/1700000000.M1P1.old,S=20:2,S",
        "Subject: a\n\none\n",
        1_700_000_000,
    );
    put(
        "new/1700000100.M2P1.old",
        "Subject: b\n\ntwo\n",
        1_700_000_100,
    );
    put(
        "cur/1700000200.M3P1.old:2,",
        "Subject: c\n\nthree\n",
        1_700_000_200,
    );
    std::fs::write(
        md.join("dovecot-uidlist"),
        "3 V1234567 N12 G3085f01b7f11094c501100008c4a11c1\n\
         5 :1700000000.M1P1.old,S=20\n\
         9 W18 :1700000100.M2P1.old\n",
    )
    .unwrap();
    // Sent: format 1 list, UIDVALIDITY 777.
    put(
        ".Sent/cur/1700000300.M4P1.old:2,S",
        "Subject: s1\n\nsent\n",
        1_700_000_300,
    );
    put(
        ".Sent/cur/1700000400.M5P1.old:2,S",
        "Subject: s2\n\nsent\n",
        1_700_000_400,
    );
    std::fs::write(
        md.join(".Sent/dovecot-uidlist"),
        "1 777 5\n3 1700000300.M4P1.old\n4 1700000400.M5P1.old\n",
    )
    .unwrap();
    // A nested folder without a UID list.
    put(
        ".Archive.2024/cur/1700000500.M6P1.old:2,",
        "Subject: old\n\nold\n",
        1_700_000_500,
    );

    let (_, err) = mailctl(
        &env,
        &[
            "import",
            "maildir",
            md.to_str().unwrap(),
            "--user",
            "alice@example.test",
        ],
    );
    assert!(
        err.contains("imported 6 message(s) in 3 folder(s)"),
        "{err}"
    );
    assert!(err.contains("UIDs kept for 4, new UIDs for 0"), "{err}");

    let _authd = Daemon::start(&env, "authd");
    let _imapd = Daemon::start(&env, "imapd");
    let v = imap_uids(
        &env,
        "alice@example.test",
        &["INBOX", "Sent", "Archive.2024"],
    );
    assert_eq!(v["INBOX"]["uidvalidity"], 1_234_567, "{v}");
    assert_eq!(v["INBOX"]["uids"], serde_json::json!([5, 9, 10]), "{v}");
    assert_eq!(v["Sent"]["uidvalidity"], 777, "{v}");
    assert_eq!(v["Sent"]["uids"], serde_json::json!([3, 4]), "{v}");
    assert_eq!(v["Archive.2024"]["count"], 1, "{v}");
    assert!(
        v["Archive.2024"]["status"]
            .as_str()
            .unwrap()
            .contains("MESSAGES 1"),
        "{v}"
    );
    let list: Vec<&str> = v["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for f in ["INBOX", "Sent", "Archive", "Archive.2024"] {
        assert!(list.contains(&f), "{f} not in LIST {list:?}");
    }

    // Imported again into folders that already numbered messages: the
    // UIDs cannot be reused, new ones follow.
    let (_, err) = mailctl(
        &env,
        &[
            "import",
            "maildir",
            md.to_str().unwrap(),
            "--user",
            "alice@example.test",
        ],
    );
    assert!(err.contains("UIDs kept for 0, new UIDs for 4"), "{err}");
    let v = imap_uids(&env, "alice@example.test", &["INBOX", "Sent"]);
    assert_eq!(v["INBOX"]["uidvalidity"], 1_234_567, "{v}");
    assert_eq!(
        v["INBOX"]["uids"],
        serde_json::json!([5, 9, 10, 11, 12, 13]),
        "{v}"
    );
    assert_eq!(v["Sent"]["uids"], serde_json::json!([3, 4, 5, 6]), "{v}");
}
