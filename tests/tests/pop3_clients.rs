//! pop3d with Debian's real POP3 clients: fetchmail (STLS with certificate
//! verification against the test CA, keep and delete modes, delivery to an
//! MDA compared byte for byte) and mutt (`pops://` and `pop://` with STLS,
//! reading into an mbox and deleting on the server).

use std::path::Path;

use postern_tests::clients::{Fetchmail, lf, mutt};
use postern_tests::{Daemon, TestEnv};

const USER: &str = "alice@example.test";
const PASSWORD: &str = "pw alice";

fn messages() -> Vec<Vec<u8>> {
    let mut big = b"Subject: big\r\nX-8bit: caf\xc3\xa9\r\n\r\n".to_vec();
    for i in 0..3000 {
        big.extend_from_slice(format!("line {i} {}\r\n", "y".repeat(i % 700)).as_bytes());
    }
    vec![
        b"Subject: first\r\nFrom: a@example.test\r\nMessage-ID: <1@example.test>\r\n\r\nbody line 1\r\n"
            .to_vec(),
        b"Subject: dots\r\nMessage-ID: <2@example.test>\r\n\r\n.\r\n..\r\n.x\r\n...three\r\nend\r\n"
            .to_vec(),
        big,
        b"Subject: empty body\r\nMessage-ID: <4@example.test>\r\n\r\n".to_vec(),
    ]
}

fn deliver(maildir: &Path, msgs: &[Vec<u8>]) {
    for m in msgs {
        mailstore::deliver(maildir, "INBOX", m).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

fn fetchmail_rc(port: u16, ca: &Path, fm: &Fetchmail, mode: &str) -> String {
    // `poll localhost`: fetchmail checks the certificate's DNS names only
    // (not IP addresses); the test certificate names localhost.
    format!(
        "set no syslog\n\
         poll localhost with proto POP3 port {port}\n\
         \x20 user \"{USER}\" there with password \"{PASSWORD}\" is root here\n\
         \x20 sslproto 'tls1.2+' sslcertck sslcertfile \"{ca}\"\n\
         \x20 {mode}\n\
         \x20 {mda}\n",
        ca = ca.display(),
        mda = fm.mda(),
    )
}

#[test]
fn fetchmail_stls_verified_keep_then_delete() {
    let env = TestEnv::new();
    let maildir = postern_tests::stack::setup_user(&env, USER, PASSWORD);
    let msgs = messages();
    deliver(&maildir, &msgs);
    let _authd = Daemon::start(&env, "authd");
    let pop3d = Daemon::start(&env, "pop3d");
    let fm = Fetchmail::new(&env.path().join("fetchmail"));
    let port = env.ports["pop3"];
    let ctx = |r: &postern_tests::clients::Run| format!("{r:?}\n--- pop3d ---\n{}", pop3d.output());

    // A CA that did not sign the server certificate: fetchmail must refuse.
    let other =
        postern_common::devcert::ensure(&env.path().join("other-ca"), &["localhost"]).unwrap();
    let r = fm.run(&fetchmail_rc(port, &other.ca_file, &fm, "keep"));
    assert_eq!(
        r.code,
        Some(2),
        "untrusted certificate must fail: {}",
        ctx(&r)
    );
    assert!(fm.take().is_empty());

    // Keep mode: everything fetched over STLS, byte-exact, nothing deleted.
    let rc_keep = fetchmail_rc(port, &env.cert.ca_file, &fm, "keep");
    let r = fm.run(&rc_keep);
    assert_eq!(r.code, Some(0), "{}", ctx(&r));
    assert!(r.output.contains("POP3> STLS"), "{}", ctx(&r));
    assert!(r.output.contains("POP3> UIDL"), "{}", ctx(&r));
    let want: Vec<Vec<u8>> = sorted(msgs.iter().map(|m| lf(m)).collect());
    assert_eq!(fm.take(), want, "fetched messages differ: {}", ctx(&r));
    assert_eq!(postern_tests::stack::files(&maildir).len(), msgs.len());

    // Again: the UIDLs are stable, so nothing is new (exit 1: no mail).
    let r = fm.run(&rc_keep);
    assert_eq!(r.code, Some(1), "{}", ctx(&r));
    assert!(fm.take().is_empty());

    // One new delivery: only that one is fetched.
    let late = b"Subject: late\r\nMessage-ID: <5@example.test>\r\n\r\narrived later\r\n".to_vec();
    deliver(&maildir, std::slice::from_ref(&late));
    let r = fm.run(&rc_keep);
    assert_eq!(r.code, Some(0), "{}", ctx(&r));
    assert_eq!(fm.take(), vec![lf(&late)], "{}", ctx(&r));

    // Delete mode (fetchall: the old ones too): all fetched, then deleted
    // on the server at QUIT.
    let r = fm.run(&fetchmail_rc(
        port,
        &env.cert.ca_file,
        &fm,
        "fetchall nokeep",
    ));
    assert_eq!(r.code, Some(0), "{}", ctx(&r));
    assert!(r.output.contains("POP3> DELE"), "{}", ctx(&r));
    let mut all = want.clone();
    all.push(lf(&late));
    assert_eq!(fm.take(), sorted(all), "{}", ctx(&r));
    assert!(
        postern_tests::stack::files(&maildir).is_empty(),
        "server mailbox must be empty: {:?}",
        postern_tests::stack::files(&maildir)
    );
    let r = fm.run(&rc_keep);
    assert_eq!(r.code, Some(1), "nothing left: {}", ctx(&r));
}

/// `auth`: mutt's `pop_authenticators` (mutt tries SCRAM-SHA-256 first
/// otherwise, which authd cannot do for hashed passwords; the failure
/// message makes mutt drop the pushed keystrokes).
fn muttrc(ca: &Path, auth: &str) -> String {
    format!(
        "set ssl_ca_certificates_file=\"{ca}\"\n\
         set ssl_starttls=yes\n\
         set ssl_force_tls=yes\n\
         set pop_user=\"{USER}\"\n\
         set pop_pass=\"{PASSWORD}\"\n\
         set mbox_type=mbox\n\
         set confirmcreate=no\n\
         set confirmappend=no\n\
         set quit=yes\n\
         set move=no\n\
         set delete=yes\n\
         set auto_tag=yes\n\
         set wait_key=no\n\
         set header_cache=\"\"\n\
         set message_cachedir=\"\"\n\
         set pop_authenticators=\"{auth}\"\n",
        ca = ca.display()
    )
}

/// Split an mbox written by mutt into (subject, body) pairs.
fn mbox_messages(mbox: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(mbox);
    let mut out = Vec::new();
    for chunk in text.split("\nFrom ").map(|c| c.trim_start_matches("From ")) {
        let Some((head, body)) = chunk.split_once("\n\n") else {
            continue;
        };
        let subject = head
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or("")
            .to_string();
        out.push((subject, body.trim_end_matches('\n').to_string()));
    }
    out.sort();
    out
}

#[test]
fn mutt_reads_over_pops_and_deletes_over_stls() {
    let env = TestEnv::new();
    let maildir = postern_tests::stack::setup_user(&env, USER, PASSWORD);
    let msgs = [
        b"Subject: one\r\nFrom: a@example.test\r\n\r\nfirst body\r\n".to_vec(),
        b"Subject: two\r\nFrom: b@example.test\r\n\r\n.leading dot\r\nsecond body\r\n".to_vec(),
        b"Subject: three\r\nFrom: c@example.test\r\n\r\nthird body\r\n".to_vec(),
    ];
    deliver(&maildir, &msgs);
    let _authd = Daemon::start(&env, "authd");
    let pop3d = Daemon::start(&env, "pop3d");
    let dir = env.path().join("mutt");
    std::fs::create_dir_all(&dir).unwrap();
    let mbox = dir.join("saved.mbox");

    // pops:// (995): copy every message into a local mbox.
    let r = mutt(
        &dir,
        &muttrc(&env.cert.ca_file, "PLAIN"),
        &format!("pops://localhost:{}/", env.ports["pop3s"]),
        &format!(
            "<tag-pattern>~A<enter><copy-message>{}<enter><quit>",
            mbox.display()
        ),
    );
    assert_eq!(r.code, Some(0), "{r:?}\n--- pop3d ---\n{}", pop3d.output());
    let saved = std::fs::read(&mbox).unwrap_or_default();
    assert_eq!(
        mbox_messages(&saved),
        vec![
            ("one".into(), "first body".into()),
            ("three".into(), "third body".into()),
            ("two".into(), ".leading dot\nsecond body".into()),
        ],
        "mutt's mbox:\n{}\n{r:?}",
        String::from_utf8_lossy(&saved)
    );
    assert_eq!(
        postern_tests::stack::files(&maildir).len(),
        3,
        "reading deletes nothing"
    );

    // pop:// with STLS (ssl_force_tls): delete "two", quit: gone on the server.
    let r = mutt(
        &dir,
        &muttrc(&env.cert.ca_file, "user"),
        &format!("pop://localhost:{}/", env.ports["pop3"]),
        "<delete-pattern>~s two<enter><quit>",
    );
    assert_eq!(r.code, Some(0), "{r:?}\n--- pop3d ---\n{}", pop3d.output());
    let left: Vec<String> = postern_tests::stack::files(&maildir)
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}\n{r:?}\n{}", pop3d.output());
    assert!(left.iter().all(|m| !m.contains("Subject: two")), "{left:?}");
    assert!(pop3d.output().contains("deleted=1"), "{}", pop3d.output());
}
