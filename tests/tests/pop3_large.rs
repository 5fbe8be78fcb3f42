//! pop3d on a large mailbox: STAT, LIST and UIDL come from the file names
//! and the mail store's index, never from the message bodies.
//!
//! The mailbox is made of `POSTERN_POP3_LARGE_COUNT` (default 100,000)
//! files written straight into `Maildir/cur` with Dovecot-style names whose
//! `S=`/`W=` sizes deliberately differ from the files' real sizes: if
//! pop3d read a body to size it, LIST and STAT would disagree with the
//! names. The assertions are about correctness, not timing.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use postern_tests::{Daemon, TestEnv};

const USER: &str = "big@example.test";
const PASSWORD: &str = "pw-big";

fn count() -> u32 {
    std::env::var("POSTERN_POP3_LARGE_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The size a message's name claims (CRLF size, `W=`).
fn claimed_vsize(n: u32) -> u64 {
    1000 + u64::from(n % 5000)
}

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
        let w = s.try_clone().unwrap();
        let mut c = Client {
            r: BufReader::new(s),
            w,
        };
        let greeting = c.line();
        assert!(greeting.starts_with("+OK"), "{greeting}");
        c
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        assert!(l.ends_with("\r\n"), "unterminated line {l:?}");
        l.truncate(l.len() - 2);
        l
    }

    fn cmd(&mut self, c: &str) -> String {
        self.w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        self.line()
    }

    /// A multi-line answer's lines (after `+OK`), unstuffed.
    fn multi(&mut self, c: &str) -> Vec<String> {
        let first = self.cmd(c);
        assert!(first.starts_with("+OK"), "{c}: {first}");
        let mut v = Vec::new();
        loop {
            let l = self.line();
            if l == "." {
                return v;
            }
            v.push(l.strip_prefix('.').map(str::to_string).unwrap_or(l));
        }
    }
}

#[test]
fn stat_list_uidl_on_a_large_mailbox_come_from_names_not_bodies() {
    let n = count();
    let env = TestEnv::new();
    let maildir = postern_tests::stack::setup_user(&env, USER, PASSWORD);
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text.replace("[pop3d]\n", "[pop3d]\nallow_plaintext_auth = true\n"),
    )
    .unwrap();
    mailstore::create_maildir(&maildir).unwrap();
    let cur = maildir.join("cur");
    // Names in delivery order: one second apart from a fixed start. The
    // bodies are 3 bytes; the names claim ~1 KB.
    let t0 = 1_600_000_000u64;
    for i in 0..n {
        let w = claimed_vsize(i + 1);
        let name = format!(
            "{}.M{}P7Q{}.bighost,S={},W={w}:2,S",
            t0 + u64::from(i),
            i % 1_000_000,
            i,
            w - 20
        );
        std::fs::write(cur.join(name), b"x\n").unwrap();
    }
    // One real message delivered normally, at the end.
    let real = b"Subject: real\r\n\r\n.dot line\r\nlast\r\n";
    mailstore::deliver(&maildir, "INBOX", real).unwrap();
    let total = n + 1;

    let _authd = Daemon::start(&env, "authd");
    let pop3d = Daemon::start(&env, "pop3d");
    for round in 0..2 {
        // Round 0 builds the index; round 1 reads it.
        let mut c = Client::connect(env.ports["pop3"]);
        assert!(c.cmd(&format!("USER {USER}")).starts_with("+OK"));
        let pass = c.cmd(&format!("PASS {PASSWORD}"));
        assert!(pass.starts_with("+OK"), "{pass}\n{}", pop3d.output());

        let want_sizes: Vec<u64> = (1..=n)
            .map(claimed_vsize)
            .chain([(real.len()) as u64])
            .collect();
        let want_total: u64 = want_sizes.iter().sum();
        let stat = c.cmd("STAT");
        assert_eq!(stat, format!("+OK {total} {want_total}"), "round {round}");

        let list = c.multi("LIST");
        assert_eq!(list.len(), total as usize);
        for (i, l) in list.iter().enumerate() {
            assert_eq!(*l, format!("{} {}", i + 1, want_sizes[i]), "LIST line {i}");
        }
        assert_eq!(
            c.cmd(&format!("LIST {n}")),
            format!("+OK {n} {}", claimed_vsize(n))
        );

        let uidl = c.multi("UIDL");
        assert_eq!(uidl.len(), total as usize);
        let validity = &uidl[0][uidl[0].len() - 8..];
        for (i, l) in uidl.iter().enumerate() {
            // UIDs in delivery order: message k has UID k.
            assert_eq!(
                *l,
                format!("{} {:08X}{validity}", i + 1, i + 1),
                "UIDL line {i}"
            );
        }
        // The one real message reads back byte-exact (dot-stuffed on the wire).
        let retr = c.multi(&format!("RETR {total}"));
        assert_eq!(retr.join("\r\n") + "\r\n", String::from_utf8_lossy(real));
        assert!(c.cmd("QUIT").starts_with("+OK"));
    }
}
