//! Swapping daemons for their classic counterparts (README "Swapping a
//! daemon"), with Debian's packages:
//!
//! * Postfix delivering to our lmtp-delivery (`virtual_transport =
//!   lmtp:unix:...`, and `lmtp:inet:...` through `transport_maps`), mail
//!   injected with swaks, read back with our pop3d and imapd;
//! * our smtpd + queue-manager delivering to Dovecot's LMTP;
//! * Dovecot's IMAP and doveadm reading the Maildir our lmtp-delivery wrote.
//!
//! Needs root (private Postfix and Dovecot instances); CI runs as root.

use std::process::Command;
use std::time::Duration;

use postern_tests::dovecot::{Dovecot, DovecotUser};
use postern_tests::postfix::Postfix;
use postern_tests::stack::{files, maildir, setup_users, wait_for_messages};
use postern_tests::{Daemon, TestEnv, free_port};

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

/// A message with the edge cases that break naive relays: a dot-only line,
/// a line starting with dots, 8-bit text, a 998-octet line. It carries its
/// own Message-ID and Date so that no relay needs to add them.
fn edge_case_message(subject: &str) -> Vec<u8> {
    let mut m = format!(
        "From: Carol <carol@example.org>\r\nTo: alice@example.test\r\nSubject: {subject}\r\nMessage-ID: <{subject}@example.org>\r\nDate: Thu, 03 Dec 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(b"first line\r\n.\r\n..two dots\r\ncaf\xc3\xa9 \xe2\x82\xac\r\n");
    m.extend_from_slice(&[b'y'; 998]);
    m.extend_from_slice(b"\r\nlast line\r\n");
    m
}

fn lf(b: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(b)
        .replace("\r\n", "\n")
        .into_bytes()
}

/// Postfix (Debian's package, a private instance) takes mail over SMTP and
/// delivers it over LMTP to lmtp-delivery: alice through the Unix socket
/// (`virtual_transport`), bob through the TCP listener (`transport_maps`),
/// nobody refused per recipient (550 5.1.1, Postfix bounces). What lands in
/// the Maildir is the message as sent plus the trace headers, and our pop3d
/// and imapd serve it byte for byte.
#[test]
fn postfix_delivers_to_our_lmtp_delivery() {
    let env = TestEnv::new();
    let lmtp_port = free_port();
    setup_users(
        &env,
        &format!(
            "\n[lmtp]\nlistener = [{{ name = \"lmtp\", address = \"127.0.0.1:{lmtp_port}\", role = \"lmtp\" }}]\n"
        ),
    );
    let _authd = Daemon::start(&env, "authd");
    let lmtp = Daemon::start(&env, "lmtp-delivery");
    let _pop3d = Daemon::start(&env, "pop3d");
    let _imapd = Daemon::start(&env, "imapd");
    // Postfix's lmtp(8) runs as `postfix`: give it the socket's group, as an
    // operator would (mode 0660 stays).
    let sock = env.socket("private/lmtp.sock");
    let pf_group = nix::unistd::Group::from_name("postfix")
        .unwrap()
        .expect("postfix group");
    nix::unistd::chown(&sock, None, Some(pf_group.gid)).unwrap();
    for dir in [env.path().join("run"), env.path().join("run/private")] {
        use std::os::unix::fs::PermissionsExt;
        let mut p = std::fs::metadata(&dir).unwrap().permissions();
        p.set_mode(p.mode() | 0o011);
        std::fs::set_permissions(&dir, p).unwrap();
    }
    let pf = Postfix::start(&format!(
        "virtual_mailbox_domains = example.test\n\
         virtual_transport = lmtp:unix:{sock}\n\
         transport_maps = inline:{{bob@example.test=lmtp:inet:127.0.0.1:{lmtp_port}}}\n\
         smtpd_reject_unlisted_recipient = no\n\
         lmtp_destination_recipient_limit = 10\n",
        sock = sock.display()
    ));
    let msg = edge_case_message("postfix-interop");
    let file = env.path().join("sent.eml");
    std::fs::write(&file, &msg).unwrap();
    let out = Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{}", pf.port)])
        .args(["--from", "carol@example.org"])
        .args([
            "--to",
            "alice@example.test,bob@example.test,nobody@example.test",
        ])
        .args(["--helo", "client.example.org"])
        .arg("--data")
        .arg(format!("@{}", file.display()))
        .args(["--timeout", "20"])
        .output()
        .expect("swaks");
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && transcript.contains("250 2.0.0 Ok: queued"),
        "swaks:\n{transcript}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // swaks ends DATA with CRLF "." CRLF after the file's own final CRLF
    // (its transcript shows the empty line), so what Postfix received is
    // the file plus one empty line.
    let mut msg = msg;
    msg.extend_from_slice(b"\r\n");
    for user in ["alice", "bob"] {
        let got = wait_for_messages(&maildir(&env, user), 1, Duration::from_secs(30))
            .unwrap_or_else(|e| {
                panic!(
                    "{e}\n--- postfix ---\n{}\n--- lmtp-delivery ---\n{}",
                    pf.log(),
                    lmtp.output()
                )
            });
        assert_eq!(got.len(), 1, "{user}: {got:?}");
        let stored = std::fs::read(&got[0]).unwrap();
        let text = String::from_utf8_lossy(&stored);
        let head = format!(
            "Return-Path: <carol@example.org>\nDelivered-To: {user}@example.test\nReceived: from client.example.org"
        );
        assert!(text.starts_with(&head), "{user}: {text}");
        assert!(
            text.contains("by postfix.example.test (Postfix) with ESMTP id"),
            "{text}"
        );
        assert!(
            stored.ends_with(&lf(&msg)),
            "{user}: message not byte-exact after Postfix and LMTP:\n{text}"
        );
    }
    // The unknown recipient was refused per recipient and bounced by Postfix.
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = pf.log();
        let bounced = log.lines().any(|l| {
            l.contains("to=<nobody@example.test>")
                && l.contains("status=bounced")
                && l.contains("550 5.1.1")
        });
        if bounced {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "no bounce for nobody@:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Both LMTP paths were used.
    let log = pf.log();
    assert!(log.contains(&format!("[{}], ", sock.display())), "{log}");
    assert!(
        log.contains(&format!("relay=127.0.0.1[127.0.0.1]:{lmtp_port}")),
        "{log}"
    );

    // Our POP3 and IMAP servers serve what Postfix delivered.
    let stored_crlf =
        String::from_utf8_lossy(&std::fs::read(&files(&maildir(&env, "alice"))[0]).unwrap())
            .replace('\n', "\r\n")
            .into_bytes();
    let expected = env.path().join("expected.eml");
    std::fs::write(&expected, &stored_crlf).unwrap();
    let out = python(&format!(
        r#"
import imaplib, poplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
want = open({expected:?}, "rb").read()
p = poplib.POP3_SSL("127.0.0.1", {pop3s}, context=ctx)
p.user("alice@example.test"); p.pass_("pw-alice")
lines = p.retr(1)[1]
assert b"\r\n".join(lines) + b"\r\n" == want, (lines[:5], want[:200])
p.quit()
i = imaplib.IMAP4_SSL("127.0.0.1", {imaps}, ssl_context=ctx)
i.login("alice@example.test", "pw-alice")
i.select("INBOX")
typ, data = i.fetch("1", "(BODY.PEEK[])")
assert typ == "OK" and data[0][1] == want, data
i.logout()
print("read back ok")
"#,
        ca = env.cert.ca_file.display().to_string(),
        expected = expected.display().to_string(),
        pop3s = env.ports["pop3s"],
        imaps = env.ports["imaps"],
    ));
    assert!(out.contains("read back ok"), "{out}");
}

/// Our smtpd and queue-manager deliver to Dovecot's LMTP (no lmtp-delivery
/// running): the message a client submitted lands in Dovecot's Maildir,
/// body unchanged, and the queue forgets it once Dovecot said 250.
#[test]
fn our_queue_delivers_to_dovecot_lmtp() {
    let dc = Dovecot::start(&[DovecotUser {
        name: "alice@example.test",
        password: "dc-alice",
        mail: None,
    }]);
    let env = TestEnv::new();
    setup_users(
        &env,
        &format!(
            "\n[queue]\ndelivery_transport = \"lmtp\"\n\n[lmtp]\nsocket = \"unix:{}\"\n",
            dc.lmtp_socket().display()
        ),
    );
    let _authd = Daemon::start(&env, "authd");
    let queue = Daemon::start(&env, "queue-manager");
    let smtpd = Daemon::start(&env, "smtpd");
    let msg = edge_case_message("to-dovecot");
    let sent = env.path().join("sent.eml");
    std::fs::write(&sent, &msg).unwrap();
    let out = python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
s.ehlo("client.example.org")
code, msg = s.mail("carol@example.org")
assert code == 250, (code, msg)
code, msg = s.rcpt("alice@example.test")
assert code == 250, (code, msg)
code, msg = s.data(open({sent:?}, "rb").read())
print("data", code, msg.decode())
s.quit()
"#,
        port = env.ports["smtp"],
        sent = sent.display().to_string()
    ));
    assert!(out.contains("data 250"), "{out}");
    let got = wait_for_messages(
        &dc.maildir("alice@example.test"),
        1,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n--- queue-manager ---\n{}\n--- smtpd ---\n{}\n--- dovecot ---\n{}",
            queue.output(),
            smtpd.output(),
            dc.log()
        )
    });
    assert_eq!(got.len(), 1);
    let stored = std::fs::read(&got[0]).unwrap();
    let text = String::from_utf8_lossy(&stored);
    // Dovecot's trace headers, then ours (smtpd's Received), then the
    // message exactly as sent.
    assert!(
        text.starts_with("Return-Path: <carol@example.org>\nDelivered-To: alice@example.test\n"),
        "{text}"
    );
    assert!(text.contains("with LMTP"), "Dovecot's Received: {text}");
    assert!(text.contains("Received: from client.example.org"), "{text}");
    assert!(stored.ends_with(&lf(&msg)), "not byte-exact:\n{text}");
    // doveadm finds it by Message-ID.
    let (ok, out, err) = dc.doveadm(&[
        "search",
        "-u",
        "alice@example.test",
        "header",
        "Message-ID",
        "<to-dovecot@example.org>",
    ]);
    assert!(ok && out.lines().count() == 1, "doveadm search: {out}{err}");
    assert!(
        dc.log()
            .contains("msgid=<to-dovecot@example.org>: saved mail to INBOX"),
        "{}",
        dc.log()
    );
    // The queue recorded the delivery and removed the message.
    let spool = env.path().join("lib/spool");
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left: usize = ["incoming", "active", "deferred"]
            .iter()
            .map(|q| {
                std::fs::read_dir(spool.join(q))
                    .map(|d| d.count())
                    .unwrap_or(0)
            })
            .sum();
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "{left} messages still queued\n{}",
            queue.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Dovecot (IMAP and doveadm) reads the Maildir that lmtp-delivery wrote:
/// same messages, same bytes as our imapd serves, the flag our imapd set
/// (`\Seen`, in the file name) and the folder a `+archive` address filled.
#[test]
fn dovecot_reads_our_maildir() {
    let env = TestEnv::new();
    setup_users(&env, "\n[queue]\ndelivery_transport = \"lmtp\"\n");
    let daemons: Vec<Daemon> = ["authd", "lmtp-delivery", "queue-manager", "smtpd", "imapd"]
        .into_iter()
        .map(|d| Daemon::start(&env, d))
        .collect();
    let md = maildir(&env, "alice");
    mailstore::create_maildir(&md).unwrap();
    let out = python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
s.ehlo("client.example.org")
for n, rcpt in enumerate(["alice@example.test", "alice@example.test", "alice+archive@example.test"]):
    body = open({sent:?}, "rb").read().replace(b"Subject: dovecot-reads", b"Subject: dovecot-reads-%d" % n).replace(b"<dovecot-reads@", b"<dovecot-reads-%d@" % n)
    s.sendmail("carol@example.org", [rcpt], body)
s.quit()
print("sent")
"#,
        port = env.ports["smtp"],
        sent = {
            let p = env.path().join("sent.eml");
            std::fs::write(&p, edge_case_message("dovecot-reads")).unwrap();
            p.display().to_string()
        }
    ));
    assert!(out.contains("sent"), "{out}");
    wait_for_messages(&md, 2, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", daemons[2].output()));
    wait_for_messages(&md.join(".Archive"), 1, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", daemons[2].output()));
    // Our imapd: mark the first message \Seen, dump INBOX bodies by subject.
    let dump = |port: u16, user: &str, pw: &str, tls: bool| -> String {
        python(&format!(
            r#"
import imaplib, ssl, json
if {tls}:
    i = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ssl.create_default_context(cafile={ca:?}))
else:
    i = imaplib.IMAP4("127.0.0.1", {port})
i.login({user:?}, {pw:?})
typ, boxes = i.list()
names = sorted(b.decode().rsplit(" ", 1)[1].strip('"') for b in boxes)
out = {{"boxes": names}}
for box in ["INBOX", "Archive"]:
    typ, data = i.select(box)
    msgs = []
    for n in range(1, int(data[0]) + 1):
        typ, f = i.fetch(str(n), "(FLAGS)")
        typ, b = i.fetch(str(n), "(BODY.PEEK[])")
        msgs.append([b[0][1].decode("utf-8", "replace"), "\\Seen" in f[0].decode()])
    out[box] = sorted(msgs)
print(json.dumps(out))
i.logout()
"#,
            tls = if tls { "True" } else { "False" },
            ca = env.cert.ca_file.display().to_string(),
        ))
    };
    python(&format!(
        r#"
import imaplib, ssl
i = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ssl.create_default_context(cafile={ca:?}))
i.login("alice@example.test", "pw-alice")
i.select("INBOX")
typ, data = i.search(None, "HEADER", "Subject", "dovecot-reads-0")
assert typ == "OK" and data[0], data
typ, _ = i.store(data[0].split()[0], "+FLAGS", "(\\Seen)")
assert typ == "OK"
i.logout()
"#,
        port = env.ports["imaps"],
        ca = env.cert.ca_file.display().to_string(),
    ));
    let ours: serde_json::Value = serde_json::from_str(&dump(
        env.ports["imaps"],
        "alice@example.test",
        "pw-alice",
        true,
    ))
    .unwrap();
    // Dovecot gets the same Maildir, owned by the account it reads mail as.
    drop(daemons);
    let dc = Dovecot::start(&[DovecotUser {
        name: "alice@example.test",
        password: "dc-alice",
        mail: Some(format!("maildir:{}", md.display())),
    }]);
    dc.hand_over(md.parent().unwrap());
    let theirs: serde_json::Value =
        serde_json::from_str(&dump(dc.imap_port, "alice@example.test", "dc-alice", false))
            .unwrap_or_else(|e| panic!("{e}\n{}", dc.log()));
    assert_eq!(ours["INBOX"].as_array().unwrap().len(), 2, "{ours}");
    assert_eq!(ours["Archive"].as_array().unwrap().len(), 1, "{ours}");
    assert_eq!(
        ours["INBOX"], theirs["INBOX"],
        "INBOX differs (ours vs Dovecot)"
    );
    assert_eq!(ours["Archive"], theirs["Archive"]);
    let seen: Vec<bool> = theirs["INBOX"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[1].as_bool().unwrap())
        .collect();
    assert_eq!(seen.iter().filter(|s| **s).count(), 1, "{theirs}");
    for b in ["INBOX", "Archive", "Sent", "Trash"] {
        assert!(
            theirs["boxes"].as_array().unwrap().iter().any(|n| n == b),
            "Dovecot does not list {b}: {theirs}"
        );
    }
    // Dovecot's POP3 on the same Maildir: the two INBOX messages, same bytes.
    let pop = python(&format!(
        r#"
import poplib
p = poplib.POP3("127.0.0.1", {port})
p.user("alice@example.test"); p.pass_("dc-alice")
n = p.stat()[0]
bodies = sorted((b"\r\n".join(p.retr(i)[1]) + b"\r\n").decode("utf-8", "replace") for i in range(1, n + 1))
p.quit()
import json
print(json.dumps(bodies))
"#,
        port = dc.pop3_port
    ));
    let pop: serde_json::Value = serde_json::from_str(&pop).unwrap();
    let ours_bodies: Vec<&serde_json::Value> = ours["INBOX"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m[0])
        .collect();
    assert_eq!(
        pop.as_array().unwrap().iter().collect::<Vec<_>>(),
        ours_bodies,
        "Dovecot's POP3 differs"
    );
    // doveadm: search by header, fetch the body.
    let (ok, out, err) = dc.doveadm(&[
        "fetch",
        "-u",
        "alice@example.test",
        "hdr.message-id flags",
        "mailbox",
        "INBOX",
        "all",
    ]);
    assert!(ok, "{err}\n{}", dc.log());
    assert!(out.contains("<dovecot-reads-0@example.org>"), "{out}");
    assert!(out.contains("<dovecot-reads-1@example.org>"), "{out}");
    let (ok, out, err) = dc.doveadm(&[
        "search",
        "-u",
        "alice@example.test",
        "mailbox",
        "Archive",
        "header",
        "Message-ID",
        "<dovecot-reads-2@example.org>",
    ]);
    assert!(ok && out.lines().count() == 1, "{out}{err}");
}

/// Routing (`delivery_transport = "auto"`, the default) with a per-domain
/// transport to Dovecot's LMTP over TCP (`transport_maps`): an alias with
/// two targets is expanded by authd and each target lands in its Dovecot
/// mailbox once.
#[test]
fn transport_maps_route_a_domain_to_dovecot_lmtp_over_tcp() {
    let dc = Dovecot::start(&[
        DovecotUser {
            name: "alice@example.test",
            password: "dc-alice",
            mail: None,
        },
        DovecotUser {
            name: "bob@example.test",
            password: "dc-bob",
            mail: None,
        },
    ]);
    let env = TestEnv::new();
    setup_users(
        &env,
        &format!(
            "\n[queue.transport_maps]\n\"example.test\" = \"lmtp:inet:127.0.0.1:{}\"\n",
            dc.lmtp_port
        ),
    );
    postern_tests::stack::mailctl(
        &env,
        &[
            "alias",
            "add",
            "team@example.test",
            "alice@example.test",
            "bob@example.test",
        ],
        None,
    );
    let _authd = Daemon::start(&env, "authd");
    let queue = Daemon::start(&env, "queue-manager");
    let _smtpd = Daemon::start(&env, "smtpd");
    let out = python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
s.ehlo("client.example.org")
print(s.sendmail("carol@example.org", ["team@example.test", "alice@example.test"], b"Subject: routed\r\nMessage-ID: <routed@example.org>\r\n\r\nto the team\r\n"))
s.quit()
"#,
        port = env.ports["smtp"]
    ));
    assert_eq!(out.trim(), "{}");
    // alice: once as herself and once through the alias (two deliveries
    // of the message, as Postfix does for an alias and a direct recipient
    // in different transactions); bob: once.
    for (user, n) in [("alice@example.test", 2), ("bob@example.test", 1)] {
        let got = wait_for_messages(&dc.maildir(user), n, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}\n{}\n{}", queue.output(), dc.log()));
        for f in &got {
            let t = std::fs::read_to_string(f).unwrap();
            // Dovecot writes Delivered-To only for a one-recipient
            // transaction (the alias's targets share one).
            assert!(
                t.lines()
                    .filter_map(|l| l.strip_prefix("Delivered-To: "))
                    .all(|d| d == user),
                "{t}"
            );
            assert!(
                t.ends_with("Subject: routed\nMessage-ID: <routed@example.org>\n\nto the team\n"),
                "{t}"
            );
        }
    }
    // Dovecot's log process writes asynchronously: wait for both lines.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = dc.log();
        let saved = ["alice@example.test", "bob@example.test"].iter().all(|u| {
            log.lines().any(|l| {
                l.contains(&format!("lmtp({u})"))
                    && l.contains("msgid=<routed@example.org>: saved mail to INBOX")
            })
        });
        if saved && log.contains("Connect from 127.0.0.1") {
            break;
        }
        assert!(std::time::Instant::now() < end, "{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Per-recipient LMTP replies from Dovecot are honoured: bob exists in our
/// directory (smtpd accepts him) but not in Dovecot, which answers
/// `550 5.1.1` for him after DATA while alice gets `250`. The queue
/// delivers alice's copy once and bounces bob: the DSN goes to the sender
/// (alice, so through Dovecot's LMTP again).
#[test]
fn dovecot_lmtp_per_recipient_refusal_is_bounced() {
    let dc = Dovecot::start(&[DovecotUser {
        name: "alice@example.test",
        password: "dc-alice",
        mail: None,
    }]);
    let env = TestEnv::new();
    setup_users(
        &env,
        &format!(
            "\n[queue]\ndelivery_transport = \"lmtp\"\n\n[lmtp]\nsocket = \"unix:{}\"\n",
            dc.lmtp_socket().display()
        ),
    );
    let _authd = Daemon::start(&env, "authd");
    let queue = Daemon::start(&env, "queue-manager");
    let _smtpd = Daemon::start(&env, "smtpd");
    let out = python(&format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
print(s.sendmail("alice@example.test", ["alice@example.test", "bob@example.test"], b"Subject: half\r\nMessage-ID: <half@example.test>\r\n\r\nfor both\r\n"))
s.quit()
"#,
        port = env.ports["smtp"]
    ));
    assert_eq!(out.trim(), "{}");
    let got = wait_for_messages(
        &dc.maildir("alice@example.test"),
        2,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", queue.output(), dc.log()));
    let texts: Vec<String> = got
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let original = texts
        .iter()
        .filter(|t| {
            t.starts_with("Return-Path: <alice@example.test>\n")
                && t.ends_with("Message-ID: <half@example.test>\n\nfor both\n")
        })
        .count();
    assert_eq!(original, 1, "{texts:?}");
    let dsn = texts
        .iter()
        .find(|t| t.contains("multipart/report") && t.contains("report-type=delivery-status"))
        .unwrap_or_else(|| panic!("no DSN for bob: {texts:?}\n{}", queue.output()));
    assert!(dsn.starts_with("Return-Path: <>\n"), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822; bob@example.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    assert!(dsn.contains("Action: failed"), "{dsn}");
}
