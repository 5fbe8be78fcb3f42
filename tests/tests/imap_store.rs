//! imapd over the mail store's incremental index: sessions of one imapd
//! see each other's changes through the index log, IDLE is woken by a
//! delivery (inotify) instead of polling, flags survive a restart, and
//! ENVELOPE, BODYSTRUCTURE and header searches come from the message cache
//! without reading the message file again.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use postern_tests::{Daemon, TestEnv};

/// IDLE on a watched mailbox polls only every `IDLE_POLL_WATCHED` (10 s);
/// an update that arrives well before that came from the wake-up. The
/// wake-up takes milliseconds; this bound only tells it from the poll.
const BEFORE_THE_POLL: Duration = Duration::from_secs(8);

struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
    n: u32,
}

impl Client {
    fn login(port: u16, user: &str, pass: &str) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let w = s.try_clone().unwrap();
        let mut c = Client {
            w,
            r: BufReader::new(s),
            n: 0,
        };
        let g = c.line();
        assert!(g.starts_with("* OK"), "{g}");
        c.ok(&format!("LOGIN \"{user}\" \"{pass}\""));
        c
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l
    }

    /// Send a command; everything up to its tagged OK (asserted).
    fn ok(&mut self, cmd: &str) -> String {
        self.n += 1;
        let tag = format!("t{}", self.n);
        self.w
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .unwrap();
        let mut all = String::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "connection closed during {cmd}: {all}");
            if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
                assert!(rest.starts_with("OK"), "{cmd}: {all}{l}");
                return all;
            }
            all.push_str(&l);
        }
    }
}

fn setup() -> (TestEnv, PathBuf) {
    let env = TestEnv::new();
    let maildir = postern_tests::stack::setup_user(&env, "alice@example.test", "pw-alice");
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text.replace("[imapd]\n", "[imapd]\nallow_plaintext_auth = true\n"),
    )
    .unwrap();
    for n in 1..=3 {
        mailstore::deliver(
            &maildir,
            "INBOX",
            format!(
                "Subject: message {n}\r\nFrom: Sender <s@example.test>\r\n\
                 Content-Type: text/plain\r\n\r\nbody {n}\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    (env, maildir)
}

#[test]
fn sessions_see_each_others_changes_and_idle_wakes_on_delivery() {
    let (env, maildir) = setup();
    let _authd = Daemon::start(&env, "authd");
    let imapd = Daemon::start(&env, "imapd");
    let port = env.ports["imap"];
    let mut a = Client::login(port, "alice@example.test", "pw-alice");
    let mut b = Client::login(port, "alice@example.test", "pw-alice");
    assert!(a.ok("SELECT INBOX").contains("* 3 EXISTS"));
    assert!(b.ok("SELECT INBOX").contains("* 3 EXISTS"));

    // A flag change by one session is reported to the other at its next
    // command.
    a.ok("STORE 1 +FLAGS (\\Flagged)");
    let seen = b.ok("NOOP");
    assert!(seen.contains("* 1 FETCH (FLAGS (\\Flagged))"), "{seen}");
    assert!(!b.ok("NOOP").contains("FETCH"), "reported once");

    // IDLE: another session's flag change and a delivery by another
    // program arrive without a command and before the slow poll.
    b.w.write_all(b"i1 IDLE\r\n").unwrap();
    assert!(b.line().starts_with("+ "));
    b.r.get_ref()
        .set_read_timeout(Some(BEFORE_THE_POLL))
        .unwrap();
    a.ok("STORE 2 +FLAGS (\\Answered)");
    let l = b.line();
    assert_eq!(
        l,
        "* 2 FETCH (FLAGS (\\Answered))\r\n",
        "{}",
        imapd.output()
    );
    mailstore::deliver(&maildir, "INBOX", b"Subject: during idle\r\n\r\nhi\r\n").unwrap();
    let l = b.line();
    assert_eq!(l, "* 4 EXISTS\r\n", "{}", imapd.output());
    b.r.get_ref()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    b.w.write_all(b"DONE\r\n").unwrap();
    assert!(b.line().starts_with("i1 OK"));

    // EXPUNGE in one session; the other sees it with the MSN right.
    a.ok("STORE 3 +FLAGS.SILENT (\\Deleted)");
    let gone = a.ok("EXPUNGE");
    assert!(gone.contains("* 3 EXPUNGE"), "{gone}");
    let seen = b.ok("NOOP");
    assert!(seen.contains("* 3 EXPUNGE"), "{seen}");
    // A learns of the message delivered during B's IDLE (it became MSN 3).
    let a_noop = a.ok("NOOP");
    assert!(
        format!("{gone}{a_noop}").contains("* 3 EXISTS"),
        "{gone}{a_noop}"
    );

    // APPEND by one session: the other sees EXISTS and finds it by
    // subject; the UID from APPENDUID is the one the other sees.
    let msg = b"Subject: appended here\r\n\r\nappended body\r\n";
    a.w.write_all(format!("ap APPEND INBOX (\\Seen) {{{}}}\r\n", msg.len()).as_bytes())
        .unwrap();
    assert!(a.line().starts_with("+"));
    a.w.write_all(msg).unwrap();
    a.w.write_all(b"\r\n").unwrap();
    let l = a.line();
    assert!(
        l.starts_with("* 4 EXISTS") || l.starts_with("ap OK [APPENDUID"),
        "{l}"
    );
    let ok = if l.starts_with("ap OK") { l } else { a.line() };
    let uid: u32 = ok
        .split_whitespace()
        .nth(4)
        .and_then(|u| u.trim_end_matches(']').parse().ok())
        .unwrap_or_else(|| panic!("no APPENDUID: {ok}"));
    let seen = b.ok("NOOP");
    assert!(seen.contains("* 4 EXISTS"), "{seen}");
    let found = b.ok("UID SEARCH SUBJECT \"appended here\"");
    assert!(found.contains(&format!("* SEARCH {uid}\r\n")), "{found}");
    a.ok("LOGOUT");
    b.ok("LOGOUT");

    // The index is a snapshot plus a change log, and the flags survive a
    // restart of imapd (they are in the file names too).
    assert!(maildir.join(mailstore::LOG_FILE).exists());
    drop(imapd);
    let _imapd = Daemon::start(&env, "imapd");
    let mut c = Client::login(port, "alice@example.test", "pw-alice");
    c.ok("SELECT INBOX");
    let flags = c.ok("FETCH 1:* (UID FLAGS)");
    assert!(
        flags.contains("* 1 FETCH (UID 1 FLAGS (\\Flagged))"),
        "{flags}"
    );
    assert!(
        flags.contains("* 2 FETCH (UID 2 FLAGS (\\Answered))"),
        "{flags}"
    );
    assert!(
        flags.contains(&format!("FETCH (UID {uid} FLAGS (\\Seen))")),
        "{flags}"
    );
    c.ok("LOGOUT");
}

#[test]
fn envelope_bodystructure_and_header_search_come_from_the_cache() {
    let (env, maildir) = setup();
    let _authd = Daemon::start(&env, "authd");
    let imapd = Daemon::start(&env, "imapd");
    let port = env.ports["imap"];
    let mut a = Client::login(port, "alice@example.test", "pw-alice");
    a.ok("SELECT INBOX");
    let first = a.ok("FETCH 1:3 (ENVELOPE BODYSTRUCTURE)");
    assert!(first.contains("\"message 2\""), "{first}");
    assert!(first.contains("BODYSTRUCTURE ("), "{first}");
    assert!(
        a.ok("SEARCH SUBJECT \"message 2\"")
            .contains("* SEARCH 2\r\n")
    );
    a.ok("LOGOUT");
    // Empty every message file: what the cache holds no longer matches
    // the files, so answers that still carry it were not read from them.
    let mut emptied = 0;
    for e in std::fs::read_dir(maildir.join("cur")).unwrap() {
        std::fs::write(e.unwrap().path(), b"").unwrap();
        emptied += 1;
    }
    assert_eq!(emptied, 3);
    // A new imapd process: the cache comes from the cache file.
    drop(imapd);
    let _imapd = Daemon::start(&env, "imapd");
    let mut b = Client::login(port, "alice@example.test", "pw-alice");
    b.ok("SELECT INBOX");
    let again = b.ok("FETCH 1:3 (ENVELOPE BODYSTRUCTURE)");
    assert_eq!(again, first);
    let found = b.ok("SEARCH SUBJECT \"message 2\" FROM sender");
    assert!(found.contains("* SEARCH 2\r\n"), "{found}");
    let header = b.ok("FETCH 3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    assert!(header.contains("Subject: message 3\r\n"), "{header}");
    // The body itself is read from the (now empty) file.
    let text = b.ok("FETCH 3 (BODY.PEEK[TEXT])");
    assert!(text.contains("BODY[TEXT] {0}"), "{text}");
    b.ok("LOGOUT");
}
