//! DSN bounces end to end: smtpd → queue-manager → lmtp-delivery answers
//! `552 5.2.2` for a user over quota → queue-manager queues an RFC 3464
//! DSN from the null sender → it is delivered into the sender's Maildir,
//! where Python's `email` package must see a multipart/report with a
//! message/delivery-status naming the recipient and the status. A bounce
//! that cannot be delivered is not bounced again.

use std::process::Command;
use std::time::{Duration, Instant};

use postern_tests::stack::{files, mailctl, maildir, wait_for_messages};
use postern_tests::{Daemon, TestEnv, run_tool};

const WAIT: Duration = Duration::from_secs(30);

/// Send one message over SMTP with Python's smtplib to `to` (addresses
/// separated by commas; DSN parameters given as ESMTP options); panics
/// unless every recipient is accepted.
fn smtp_send(env: &TestEnv, from: &str, to: &str, mail_opts: &[&str], rcpt_opts: &[&str]) {
    let py = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=30)
s.ehlo("client.example.org")
assert s.has_extn("dsn"), "smtpd does not offer DSN"
msg = (b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\n"
       b"Subject: bounce me\r\nMessage-ID: <bounce-test@example.test>\r\n\r\n"
       b"the body of the bounced message\r\n")
refused = s.sendmail({from:?}, {to:?}.split(","), msg, mail_options={mail:?}, rcpt_options={rcpt:?})
assert not refused, refused
s.quit()
"#,
        port = env.ports["smtp"],
        mail = mail_opts,
        rcpt = rcpt_opts,
    );
    let out = Command::new("python3").arg("-c").arg(py).output().unwrap();
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Wait until `mailctl queue list` says the queue is empty.
fn wait_queue_empty(env: &TestEnv, qm: &Daemon) {
    let end = Instant::now() + WAIT;
    loop {
        let (code, out, err) = run_tool(env, "mailctl", &["queue", "list"]);
        assert_eq!(code, 0, "mailctl queue list: {err}");
        if out == "Mail queue is empty\n" {
            return;
        }
        assert!(
            Instant::now() < end,
            "queue not empty:\n{out}\n--- queue-manager ---\n{}",
            qm.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn over_quota_recipient_bounces_a_dsn_into_the_senders_maildir_and_a_bounce_is_never_bounced() {
    let env = TestEnv::new();
    // queue_run_delay 1h: the DSN must be delivered because the scheduler
    // runs another pass after queuing it, not because of a periodic scan.
    // Postmaster copies go to postmaster@.
    postern_tests::stack::setup_users(
        &env,
        "\n[queue]\ndelivery_transport = \"lmtp\"\nqueue_run_delay = \"1h\"\nbounce_notice_recipient = \"postmaster@example.test\"\n",
    );
    mailctl(
        &env,
        &["user", "add", "postmaster@example.test", "--password-stdin"],
        Some("pw-pm\n"),
    );
    // A 1-byte quota: every delivery to bob is refused with 552 5.2.2.
    mailctl(&env, &["user", "quota", "bob@example.test", "1"], None);
    let _authd = Daemon::start(&env, "authd");
    let lmtp = Daemon::start(&env, "lmtp-delivery");
    let qm = Daemon::start(&env, "queue-manager");
    let _smtpd = Daemon::start(&env, "smtpd");

    smtp_send(
        &env,
        "alice@example.test",
        "bob@example.test",
        &["RET=HDRS", "ENVID=e2e-envid-1"],
        &["NOTIFY=FAILURE", "ORCPT=rfc822;Bob@Example.test"],
    );
    let alice = maildir(&env, "alice");
    let got = wait_for_messages(&alice, 1, WAIT).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- queue-manager ---\n{}\n--- lmtp ---\n{}",
            qm.output(),
            lmtp.output()
        )
    });
    assert_eq!(files(&maildir(&env, "bob")).len(), 0);
    let py = r#"
import email, email.policy, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.compat32)
assert m["Return-Path"] == "<>", m["Return-Path"]
assert m.get_content_type() == "multipart/report", m.get_content_type()
assert m.get_param("report-type") == "delivery-status"
assert m["From"].startswith("MAILER-DAEMON@mail.example.test"), m["From"]
assert m["To"] == "alice@example.test", m["To"]
parts = m.get_payload()
print([p.get_content_type() for p in parts])
ds = parts[1].get_payload()
print("envid", ds[0]["Original-Envelope-Id"])
print("mta", ds[0]["Reporting-MTA"])
for r in ds[1:]:
    print("rcpt", r["Final-Recipient"], "|", r["Original-Recipient"], "|", r["Action"], "|", r["Status"], "|", r["Diagnostic-Code"])
hdrs = parts[2].get_payload()
print("subject-returned", "Subject: bounce me" in hdrs, "body-returned", "the body" in hdrs)
print("human", "<bob@example.test>: 552 5.2.2" in parts[0].get_payload())
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(py)
        .arg(&got[0])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}\n{text}\n--- DSN ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&got[0]).unwrap_or_default()
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "['text/plain', 'message/delivery-status', 'text/rfc822-headers']"
    );
    assert_eq!(lines[1], "envid e2e-envid-1");
    assert_eq!(lines[2], "mta dns; mail.example.test");
    assert!(
        lines[3].starts_with(
            "rcpt rfc822; bob@example.test | rfc822; Bob@Example.test | failed | 5.2.2 | smtp; 552 5.2.2"
        ),
        "{}",
        lines[3]
    );
    assert_eq!(lines.len(), 6, "one recipient block only: {text}");
    assert_eq!(
        lines[4], "subject-returned True body-returned False",
        "RET=HDRS"
    );
    assert_eq!(lines[5], "human True");
    // The postmaster copy: same report, headers only, null sender.
    let pm = maildir(&env, "postmaster");
    let copy = wait_for_messages(&pm, 1, WAIT).unwrap_or_else(|e| panic!("{e}\n{}", qm.output()));
    let copy = std::fs::read_to_string(&copy[0]).unwrap();
    for needle in [
        "Return-Path: <>",
        "Subject: Postmaster Copy: Undelivered Mail",
        "To: postmaster@example.test",
        "Final-Recipient: rfc822; bob@example.test",
        "Content-Type: text/rfc822-headers",
        "Subject: bounce me",
    ] {
        assert!(copy.contains(needle), "{needle:?} in\n{copy}");
    }
    assert!(!copy.contains("the body of the bounced message"));
    wait_queue_empty(&env, &qm);

    // NOTIFY=NEVER: bounced without any DSN (nor a postmaster copy).
    smtp_send(
        &env,
        "alice@example.test",
        "bob@example.test",
        &[],
        &["NOTIFY=NEVER"],
    );
    qm.wait_output("no DSN: NOTIFY did not ask for one", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    wait_queue_empty(&env, &qm);
    assert_eq!(files(&alice).len(), 1);

    // A message from the null sender that fails: no DSN, just the log.
    smtp_send(&env, "", "bob@example.test", &[], &[]);
    qm.wait_output("null sender: no DSN", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    wait_queue_empty(&env, &qm);

    // Alice over quota too: bob's failure bounces to alice, the bounce
    // fails as well and is dropped, not bounced again (it has the null
    // sender); nothing loops, the queue empties.
    mailctl(&env, &["user", "quota", "alice@example.test", "1"], None);
    std::thread::sleep(Duration::from_millis(1200)); // authd cache_ttl_secs = 1
    let before = qm.output().matches("null sender: no DSN").count();
    smtp_send(&env, "alice@example.test", "bob@example.test", &[], &[]);
    let end = Instant::now() + WAIT;
    while qm.output().matches("null sender: no DSN").count() < before + 1 {
        assert!(Instant::now() < end, "{}", qm.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_queue_empty(&env, &qm);
    // Still only the first DSN in alice's Maildir; exactly four DSNs were
    // ever queued (twice one to alice and a postmaster copy; none for the
    // null-sender message, none for the failed bounce).
    assert_eq!(files(&alice).len(), 1);
    assert_eq!(files(&pm).len(), 2);
    let out = qm.output();
    assert_eq!(
        out.matches("sender non-delivery notification queued")
            .count(),
        2,
        "{out}"
    );
    assert_eq!(
        out.matches("postmaster copy of the non-delivery notification queued")
            .count(),
        2,
        "{out}"
    );
}

/// The default transport (`"auto"`: routed through authd) and no DSN
/// parameters: the DSN returns the whole message (`message/rfc822`) and
/// lands in the sender's Maildir the same way.
#[test]
fn default_routing_and_no_dsn_parameters_return_the_whole_message() {
    let env = TestEnv::new();
    postern_tests::stack::setup_users(&env, "\n[queue]\nqueue_run_delay = \"1h\"\n");
    mailctl(&env, &["user", "quota", "bob@example.test", "1"], None);
    mailctl(
        &env,
        &[
            "user",
            "add",
            "carol@example.test",
            "--password-stdin",
            "--quota",
            "1",
        ],
        Some("pw-carol\n"),
    );
    let _authd = Daemon::start(&env, "authd");
    let lmtp = Daemon::start(&env, "lmtp-delivery");
    let qm = Daemon::start(&env, "queue-manager");
    let _smtpd = Daemon::start(&env, "smtpd");
    // Two recipients failing in the same attempt: one DSN naming both.
    smtp_send(
        &env,
        "alice@example.test",
        "bob@example.test,carol@example.test",
        &[],
        &[],
    );
    let got = wait_for_messages(&maildir(&env, "alice"), 1, WAIT).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- queue-manager ---\n{}\n--- lmtp ---\n{}",
            qm.output(),
            lmtp.output()
        )
    });
    let py = r#"
import email, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"))
assert m.get_content_type() == "multipart/report"
parts = m.get_payload()
print([p.get_content_type() for p in parts])
for r in parts[1].get_payload()[1:]:
    print(r["Final-Recipient"], "|", r["Action"], "|", r["Status"])
inner = parts[2].get_payload()[0]
print(inner["Subject"], "|", inner.get_payload().strip())
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(py)
        .arg(&got[0])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text,
        "['text/plain', 'message/delivery-status', 'message/rfc822']\n\
         rfc822; bob@example.test | failed | 5.2.2\n\
         rfc822; carol@example.test | failed | 5.2.2\n\
         bounce me | the body of the bounced message\n"
    );
    wait_queue_empty(&env, &qm);
    assert_eq!(files(&maildir(&env, "alice")).len(), 1, "one DSN only");

    // NOTIFY=SUCCESS: the message and a "delivered" report (headers only).
    smtp_send(
        &env,
        "alice@example.test",
        "alice@example.test",
        &[],
        &["NOTIFY=SUCCESS,FAILURE"],
    );
    let got = wait_for_messages(&maildir(&env, "alice"), 3, WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", qm.output()));
    let texts: Vec<String> = got
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let report = texts
        .iter()
        .find(|t| t.contains("Subject: Successful Mail Delivery Report"))
        .unwrap_or_else(|| panic!("no success DSN in {texts:#?}"));
    for needle in [
        "Return-Path: <>",
        "Final-Recipient: rfc822; alice@example.test",
        "Action: delivered",
        "Status: 2.",
        "Content-Type: text/rfc822-headers",
    ] {
        assert!(report.contains(needle), "{needle:?} in\n{report}");
    }
    assert!(!report.contains("the body of the bounced message"));
    wait_queue_empty(&env, &qm);
}

/// Delay warnings: with `delay_warning_time = "2s"` and the mailbox side
/// down, the sender gets exactly one "delayed" DSN once the message is two
/// seconds old, however many retries follow; once lmtp-delivery is up both
/// the message and the warning arrive.
#[test]
fn one_delay_warning_when_the_message_is_older_than_delay_warning_time() {
    let env = TestEnv::new();
    postern_tests::stack::setup_users(
        &env,
        "\n[queue]\ndelivery_transport = \"lmtp\"\nqueue_run_delay = \"1s\"\nminimal_backoff_time = \"1s\"\nmaximal_backoff_time = \"1s\"\ndelay_warning_time = \"2s\"\n",
    );
    let _authd = Daemon::start(&env, "authd");
    let qm = Daemon::start(&env, "queue-manager");
    let _smtpd = Daemon::start(&env, "smtpd");
    smtp_send(&env, "alice@example.test", "bob@example.test", &[], &[]);
    qm.wait_output("sender delay notification queued", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    // More retries happen (every second), no second warning.
    std::thread::sleep(Duration::from_secs(4));
    let out = qm.output();
    assert_eq!(
        out.matches("sender delay notification queued").count(),
        1,
        "{out}"
    );
    assert!(out.matches("deferred").count() >= 3, "retried: {out}");
    let lmtp = Daemon::start(&env, "lmtp-delivery");
    let (code, _, err) = run_tool(&env, "mailctl", &["queue", "flush"]);
    assert_eq!(code, 0, "{err}");
    let got = wait_for_messages(&maildir(&env, "alice"), 1, WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", qm.output(), lmtp.output()));
    let warning = std::fs::read_to_string(&got[0]).unwrap();
    for needle in [
        "Return-Path: <>",
        "Subject: Delayed Mail (still being retried)",
        "Final-Recipient: rfc822; bob@example.test",
        "Action: delayed",
        "Status: 4.",
        "Content-Type: text/rfc822-headers",
    ] {
        assert!(warning.contains(needle), "{needle:?} in\n{warning}");
    }
    wait_for_messages(&maildir(&env, "bob"), 1, WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", qm.output()));
    wait_queue_empty(&env, &qm);
    assert_eq!(files(&maildir(&env, "alice")).len(), 1);
}
