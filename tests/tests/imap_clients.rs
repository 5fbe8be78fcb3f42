//! imapd with Debian's real IMAP clients: mbsync (isync) syncing INBOX and
//! two folders both ways over STARTTLS with certificate verification,
//! fetchmail over IMAP (keep and delete modes, byte-exact), and mutt reading
//! a message and moving it to another folder.

use std::path::Path;

use postern_tests::clients::{
    CLIENT_TIMEOUT, Fetchmail, Run, lf, mutt, mutt_with_flags, run_bounded,
};
use postern_tests::{Daemon, TestEnv};

const USER: &str = "alice@example.test";
const PASSWORD: &str = "pw alice";

fn deliver(maildir: &Path, folder: &str, msgs: &[&[u8]]) {
    for m in msgs {
        mailstore::deliver(maildir, folder, m).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// A message without the `X-TUID:` header mbsync puts into every message it
/// propagates (its own bookkeeping, in both directions; see mbsync(1)).
fn without_tuid(msg: Vec<u8>) -> Vec<u8> {
    let text = msg;
    let mut out = Vec::with_capacity(text.len());
    let mut in_header = true;
    for line in text.split_inclusive(|&b| b == b'\n') {
        if in_header && (line == b"\n" || line == b"\r\n") {
            in_header = false;
        }
        if in_header && line.starts_with(b"X-TUID: ") {
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}

/// (flags, content) of every message file in a Maildir folder directory,
/// sorted by content, with mbsync's `X-TUID` removed. Flags are the
/// letters after `:2,`.
fn folder_state(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = ["new", "cur"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(dir.join(d))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let flags = name
                .split_once(":2,")
                .map(|(_, f)| f.to_string())
                .unwrap_or_default();
            (flags, without_tuid(lf(&std::fs::read(e.path()).unwrap())))
        })
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

fn contents(state: &[(String, Vec<u8>)]) -> Vec<Vec<u8>> {
    state.iter().map(|(_, c)| c.clone()).collect()
}

fn flags_of(state: &[(String, Vec<u8>)], needle: &str) -> String {
    state
        .iter()
        .find(|(_, c)| String::from_utf8_lossy(c).contains(needle))
        .map(|(f, _)| f.clone())
        .unwrap_or_else(|| panic!("no message containing {needle:?}"))
}

fn mbsync_rc(port: u16, ca: &Path, local: &Path) -> String {
    format!(
        "IMAPAccount acc\n\
         Host localhost\n\
         Port {port}\n\
         User {USER}\n\
         Pass \"{PASSWORD}\"\n\
         SSLType STARTTLS\n\
         CertificateFile {ca}\n\
         \n\
         IMAPStore remote\n\
         Account acc\n\
         \n\
         MaildirStore local\n\
         Path {local}/\n\
         Inbox {local}/INBOX\n\
         SubFolders Verbatim\n\
         \n\
         Channel ch\n\
         Far :remote:\n\
         Near :local:\n\
         Patterns INBOX Work Lists\n\
         Create Both\n\
         Expunge Both\n\
         SyncState *\n\
         Sync All\n",
        ca = ca.display(),
        local = local.display(),
    )
}

fn mbsync(dir: &Path, rc: &str) -> Run {
    let rcfile = dir.join("mbsyncrc");
    std::fs::write(&rcfile, rc).unwrap();
    let mut cmd = std::process::Command::new("mbsync");
    cmd.arg("-V")
        .arg("-c")
        .arg(&rcfile)
        .arg("-a")
        .env("HOME", dir);
    run_bounded(cmd, CLIENT_TIMEOUT)
}

#[test]
fn mbsync_syncs_inbox_and_two_folders_both_ways_over_starttls() {
    let env = TestEnv::new();
    let maildir = postern_tests::stack::setup_user(&env, USER, PASSWORD);
    let inbox: [&[u8]; 3] = [
        b"Subject: in one\r\nMessage-ID: <i1@example.test>\r\n\r\nfirst\r\n",
        b"Subject: in two\r\nMessage-ID: <i2@example.test>\r\n\r\n.dot\r\nsecond\r\n",
        b"Subject: in three\r\nMessage-ID: <i3@example.test>\r\nX-8bit: caf\xc3\xa9\r\n\r\nthird\r\n",
    ];
    deliver(&maildir, "INBOX", &inbox);
    mailstore::create_folder(&maildir, "Lists").unwrap();
    let list1: &[u8] = b"Subject: list one\r\nMessage-ID: <l1@example.test>\r\n\r\nlist mail\r\n";
    deliver(&maildir, "Lists", &[list1]);
    // The local side: a Work folder with a message the server does not have.
    let dir = env.path().join("mbsync");
    let local = dir.join("mail");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(local.join("Work").join(sub)).unwrap();
    }
    let work1: &[u8] = b"Subject: work one\nMessage-ID: <w1@example.test>\n\nwritten locally\n";
    std::fs::write(local.join("Work/new/1600000000.1_1.localhost"), work1).unwrap();

    let _authd = Daemon::start(&env, "authd");
    let imapd = Daemon::start(&env, "imapd");
    let port = env.ports["imap"];
    let ctx = |r: &Run| format!("{}\n--- imapd ---\n{}", r.output, imapd.output());

    // A CA that did not sign the server certificate: mbsync refuses.
    let other =
        postern_common::devcert::ensure(&env.path().join("other-ca"), &["localhost"]).unwrap();
    let r = mbsync(&dir, &mbsync_rc(port, &other.ca_file, &local));
    assert_ne!(
        r.code,
        Some(0),
        "untrusted certificate must fail: {}",
        ctx(&r)
    );
    assert!(folder_state(&maildir.join(".Work")).is_empty());

    let rc = mbsync_rc(port, &env.cert.ca_file, &local);
    let r = mbsync(&dir, &rc);
    assert_eq!(r.code, Some(0), "first sync: {}", ctx(&r));
    // Server -> local, byte for byte (LF form on both sides).
    let want_inbox: Vec<Vec<u8>> = {
        let mut v: Vec<Vec<u8>> = inbox.iter().map(|m| lf(m)).collect();
        v.sort();
        v
    };
    assert_eq!(contents(&folder_state(&local.join("INBOX"))), want_inbox);
    assert_eq!(
        contents(&folder_state(&local.join("Lists"))),
        vec![lf(list1)]
    );
    // Local -> server: Work created on the server, the message APPENDed.
    assert!(maildir.join(".Work/cur").is_dir(), "Work created");
    assert_eq!(
        contents(&folder_state(&maildir.join(".Work"))),
        vec![work1.to_vec()]
    );

    // Changes on both sides.
    // Local: flag "in one" (\Flagged \Seen), delete "in three", add to Lists.
    let local_inbox = local.join("INBOX");
    for d in ["cur", "new"] {
        for e in std::fs::read_dir(local_inbox.join(d)).unwrap().flatten() {
            let text = std::fs::read(e.path()).unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let base = name.split_once(":2,").map_or(name.as_str(), |(b, _)| b);
            if String::from_utf8_lossy(&text).contains("in one") {
                std::fs::rename(
                    e.path(),
                    local_inbox.join("cur").join(format!("{base}:2,FS")),
                )
                .unwrap();
            } else if String::from_utf8_lossy(&text).contains("in three") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    let list2: &[u8] = b"Subject: list two\nMessage-ID: <l2@example.test>\n\nfrom the near side\n";
    std::fs::write(local.join("Lists/new/1600000001.2_2.localhost"), list2).unwrap();
    // Server: a new Work message, and "in two" answered by another client.
    let work2: &[u8] = b"Subject: work two\r\nMessage-ID: <w2@example.test>\r\n\r\nserver side\r\n";
    deliver(&maildir, "Work", &[work2]);
    let mut mb = mailstore::Mailbox::open(&maildir).unwrap();
    let two = mb
        .messages()
        .iter()
        .find(|m| String::from_utf8_lossy(&std::fs::read(&m.path).unwrap()).contains("in two"))
        .unwrap()
        .uid;
    mb.set_flags(two, "R").unwrap();
    drop(mb);

    let r = mbsync(&dir, &rc);
    assert_eq!(r.code, Some(0), "second sync: {}", ctx(&r));
    let server_inbox = folder_state(&maildir);
    assert_eq!(
        server_inbox.len(),
        2,
        "local deletion expunged on the server: {server_inbox:?}"
    );
    assert_eq!(
        flags_of(&server_inbox, "in one"),
        "FS",
        "local flags reached the server"
    );
    let near_inbox = folder_state(&local_inbox);
    assert_eq!(
        flags_of(&near_inbox, "in two"),
        "R",
        "server flags reached the near side"
    );
    let mut want_lists = vec![lf(list1), list2.to_vec()];
    want_lists.sort();
    assert_eq!(contents(&folder_state(&maildir.join(".Lists"))), want_lists);
    let mut want_work = vec![work1.to_vec(), lf(work2)];
    want_work.sort();
    assert_eq!(contents(&folder_state(&local.join("Work"))), want_work);

    // A third run changes nothing.
    let r = mbsync(&dir, &rc);
    assert_eq!(r.code, Some(0), "third sync: {}", ctx(&r));
    assert_eq!(folder_state(&maildir), server_inbox);
    assert_eq!(folder_state(&local_inbox), near_inbox);
    assert_eq!(folder_state(&maildir.join(".Work")).len(), 2);
    assert_eq!(folder_state(&local.join("Lists")).len(), 2);
}

fn fetchmail_rc(port: u16, ca: &Path, fm: &Fetchmail, folder: &str, mode: &str) -> String {
    format!(
        "set no syslog\n\
         poll localhost with proto IMAP port {port}\n\
         \x20 user \"{USER}\" there with password \"{PASSWORD}\" is root here\n\
         \x20 sslproto 'tls1.2+' sslcertck sslcertfile \"{ca}\"\n\
         \x20 folder \"{folder}\"\n\
         \x20 {mode}\n\
         \x20 {mda}\n",
        ca = ca.display(),
        mda = fm.mda(),
    )
}

#[test]
fn fetchmail_over_imap_keep_then_delete() {
    let env = TestEnv::new();
    let maildir = postern_tests::stack::setup_user(&env, USER, PASSWORD);
    let mut big = b"Subject: big\r\nMessage-ID: <b@example.test>\r\n\r\n".to_vec();
    for i in 0..2000 {
        big.extend_from_slice(format!("line {i} {}\r\n", "z".repeat(i % 500)).as_bytes());
    }
    let msgs: Vec<&[u8]> = vec![
        b"Subject: one\r\nMessage-ID: <1@example.test>\r\n\r\nbody one\r\n",
        b"Subject: dots\r\nMessage-ID: <2@example.test>\r\n\r\n.\r\n..x\r\nend\r\n",
        &big,
    ];
    deliver(&maildir, "INBOX", &msgs);
    let _authd = Daemon::start(&env, "authd");
    let imapd = Daemon::start(&env, "imapd");
    let fm = Fetchmail::new(&env.path().join("fetchmail"));
    let port = env.ports["imap"];
    let ctx = |r: &Run| format!("{r:?}\n--- imapd ---\n{}", imapd.output());
    let mut want: Vec<Vec<u8>> = msgs.iter().map(|m| lf(m)).collect();
    want.sort();

    // Keep: fetched over STARTTLS, marked \Seen on the server, not deleted.
    let rc_keep = fetchmail_rc(port, &env.cert.ca_file, &fm, "INBOX", "keep");
    let r = fm.run(&rc_keep);
    assert_eq!(r.code, Some(0), "{}", ctx(&r));
    assert!(r.output.contains("IMAP> A0001 STARTTLS"), "{}", ctx(&r));
    assert_eq!(fm.take(), want, "{}", ctx(&r));
    let state = folder_state(&maildir);
    assert_eq!(state.len(), 3);
    assert!(state.iter().all(|(f, _)| f == "S"), "{state:?}");
    // Nothing unseen: nothing fetched.
    let r = fm.run(&rc_keep);
    assert_eq!(r.code, Some(1), "{}", ctx(&r));
    assert!(fm.take().is_empty());
    // A new one: only it.
    let late: &[u8] = b"Subject: late\r\nMessage-ID: <4@example.test>\r\n\r\nlate\r\n";
    deliver(&maildir, "INBOX", &[late]);
    let r = fm.run(&rc_keep);
    assert_eq!(r.code, Some(0), "{}", ctx(&r));
    assert_eq!(fm.take(), vec![lf(late)]);

    // Delete mode from a folder: everything fetched, then expunged.
    let work: &[u8] = b"Subject: work\r\nMessage-ID: <5@example.test>\r\n\r\nin a folder\r\n";
    mailstore::create_folder(&maildir, "Work").unwrap();
    deliver(&maildir, "Work", &[work, late]);
    let r = fm.run(&fetchmail_rc(
        port,
        &env.cert.ca_file,
        &fm,
        "Work",
        "fetchall nokeep",
    ));
    assert_eq!(r.code, Some(0), "{}", ctx(&r));
    let mut want_work = vec![lf(work), lf(late)];
    want_work.sort();
    assert_eq!(fm.take(), want_work, "{}", ctx(&r));
    assert!(
        folder_state(&maildir.join(".Work")).is_empty(),
        "{}",
        ctx(&r)
    );
    assert_eq!(folder_state(&maildir).len(), 4, "INBOX untouched");
}

#[test]
fn mutt_reads_a_message_and_moves_it_to_a_folder() {
    let env = TestEnv::new();
    let maildir = postern_tests::stack::setup_user(&env, USER, PASSWORD);
    let msgs: [&[u8]; 2] = [
        b"Subject: keep me\r\nFrom: a@example.test\r\nMessage-ID: <k@example.test>\r\n\r\nstays in INBOX\r\n",
        b"Subject: move me\r\nFrom: b@example.test\r\nMessage-ID: <m@example.test>\r\n\r\n.dot line\r\ngoes to Work\r\n",
    ];
    deliver(&maildir, "INBOX", &msgs);
    mailstore::create_folder(&maildir, "Work").unwrap();
    let _authd = Daemon::start(&env, "authd");
    let imapd = Daemon::start(&env, "imapd");
    let dir = env.path().join("mutt");
    std::fs::create_dir_all(&dir).unwrap();
    let port = env.ports["imap"];
    let rc = format!(
        "set ssl_ca_certificates_file=\"{ca}\"\n\
         set ssl_starttls=yes\n\
         set ssl_force_tls=yes\n\
         set imap_user=\"{USER}\"\n\
         set imap_pass=\"{PASSWORD}\"\n\
         set imap_authenticators=\"login\"\n\
         set folder=\"imap://localhost:{port}/\"\n\
         set spoolfile=\"+INBOX\"\n\
         set mbox_type=mbox\n\
         set confirmcreate=no\n\
         set confirmappend=no\n\
         set quit=yes\n\
         set move=no\n\
         set delete=yes\n\
         set mark_old=no\n\
         set wait_key=no\n\
         set pager_stop=yes\n\
         set header_cache=\"\"\n\
         set message_cachedir=\"\"\n",
        ca = env.cert.ca_file.display()
    );
    let saved = dir.join("read.mbox");
    // Find "move me", read it (\Seen), copy it to a local mbox, save
    // (= move) it to =Work, sync.
    let keys = format!(
        "<search>~s move<enter><display-message><exit>\
         <copy-message>{}<enter><save-message>=Work<enter><sync-mailbox><quit>",
        saved.display()
    );
    let r = mutt(&dir, &rc, &format!("imap://localhost:{port}/INBOX"), &keys);
    assert_eq!(r.code, Some(0), "{r:?}\n--- imapd ---\n{}", imapd.output());
    let text = String::from_utf8_lossy(&std::fs::read(&saved).unwrap_or_default()).into_owned();
    assert!(
        text.contains("Subject: move me") && text.contains("\n.dot line\ngoes to Work\n"),
        "mutt's copy:\n{text}\n{r:?}"
    );
    assert!(!text.contains("keep me"), "{text}");
    let inbox = folder_state(&maildir);
    assert_eq!(
        contents(&inbox),
        vec![lf(msgs[0])],
        "only 'keep me' left in INBOX"
    );
    let work = folder_state(&maildir.join(".Work"));
    assert_eq!(contents(&work), vec![lf(msgs[1])], "moved byte-exact");
    assert!(work[0].0.contains('S'), "read, so \\Seen: {work:?}");
}

/// mutt with its header cache, `imap_condstore` and `imap_qresync`: the
/// second open resynchronises through ENABLE QRESYNC / SELECT (QRESYNC ...)
/// and must see a message expunged and a flag changed by another client in
/// between.
#[test]
fn mutt_resyncs_with_qresync_and_header_cache() {
    let env = TestEnv::new();
    let maildir = postern_tests::stack::setup_user(&env, USER, PASSWORD);
    let msgs: [&[u8]; 3] = [
        b"Subject: q one\r\nFrom: a@example.test\r\nMessage-ID: <q1@example.test>\r\n\r\none\r\n",
        b"Subject: q two\r\nFrom: b@example.test\r\nMessage-ID: <q2@example.test>\r\n\r\ntwo\r\n",
        b"Subject: q three\r\nFrom: c@example.test\r\nMessage-ID: <q3@example.test>\r\n\r\nthree\r\n",
    ];
    deliver(&maildir, "INBOX", &msgs);
    let _authd = Daemon::start(&env, "authd");
    let imapd = Daemon::start(&env, "imapd");
    let dir = env.path().join("mutt");
    std::fs::create_dir_all(dir.join("hcache")).unwrap();
    let port = env.ports["imap"];
    let rc = format!(
        "set ssl_ca_certificates_file=\"{ca}\"\n\
         set ssl_starttls=yes\n\
         set ssl_force_tls=yes\n\
         set imap_user=\"{USER}\"\n\
         set imap_pass=\"{PASSWORD}\"\n\
         set imap_authenticators=\"login\"\n\
         set imap_condstore=yes\n\
         set imap_qresync=yes\n\
         set header_cache=\"{hc}\"\n\
         set folder=\"imap://localhost:{port}/\"\n\
         set mbox_type=mbox\n\
         set confirmcreate=no\n\
         set confirmappend=no\n\
         set quit=yes\n\
         set move=no\n\
         set mark_old=no\n\
         set wait_key=no\n\
         set auto_tag=yes\n",
        ca = env.cert.ca_file.display(),
        hc = dir.join("hcache").display(),
    );
    let copy_all = |out: &Path| {
        format!(
            "<tag-pattern>~A<enter><copy-message>{}<enter><quit>",
            out.display()
        )
    };
    let url = format!("imap://localhost:{port}/INBOX");
    let first = dir.join("first.mbox");
    let r = mutt_with_flags(&dir, &rc, &url, &copy_all(&first), "-d 2");
    assert_eq!(r.code, Some(0), "{r:?}\n--- imapd ---\n{}", imapd.output());
    let text = String::from_utf8_lossy(&std::fs::read(&first).unwrap_or_default()).into_owned();
    assert_eq!(text.matches("Subject: q ").count(), 3, "{text}");

    // Another client: "q two" expunged, "q three" flagged.
    let mut mb = mailstore::Mailbox::open(&maildir).unwrap();
    let find = |mb: &mailstore::Mailbox, s: &str| {
        mb.messages()
            .iter()
            .find(|m| String::from_utf8_lossy(&std::fs::read(&m.path).unwrap()).contains(s))
            .map(|m| m.uid)
            .unwrap()
    };
    let two = find(&mb, "q two");
    let three = find(&mb, "q three");
    mb.expunge(&[two]).unwrap();
    mb.set_flags(three, "F").unwrap();
    drop(mb);

    let second = dir.join("second.mbox");
    let r = mutt_with_flags(&dir, &rc, &url, &copy_all(&second), "-d 2");
    assert_eq!(r.code, Some(0), "{r:?}\n--- imapd ---\n{}", imapd.output());
    let text = String::from_utf8_lossy(&std::fs::read(&second).unwrap_or_default()).into_owned();
    assert_eq!(text.matches("Subject: q ").count(), 2, "{text}");
    assert!(!text.contains("q two"), "{text}");
    // mutt writes \Flagged as `X-Status: F` in the mbox copy.
    let three_part = text
        .split("\nFrom ")
        .find(|p| p.contains("q three"))
        .unwrap_or("");
    assert!(
        three_part
            .lines()
            .any(|l| l.starts_with("X-Status:") && l.contains('F')),
        "flag change seen through the resync:\n{text}"
    );
    // It really used QRESYNC: mutt's debug log holds the resync SELECT.
    let log = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".muttdebug"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(log.contains("ENABLE QRESYNC"), "no QRESYNC in mutt's log");
    let selects: Vec<&str> = log.lines().filter(|l| l.contains("SELECT")).collect();
    assert!(
        selects.iter().any(|l| l.contains("QRESYNC")),
        "no SELECT (QRESYNC ...) in mutt's log: {selects:?}"
    );
}
