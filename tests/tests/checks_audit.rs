//! The content audit check end to end: real smtpd, queue-manager, authd and
//! lmtp-delivery, messages sent with Python's smtplib. A GBK base64 body
//! with a listed Chinese word is refused `554 5.7.1` (or held, per rule)
//! and written to the audit log; a held message is in `hold/` with its
//! reason (mailq, `mailctl queue show`), not in the Maildir, and delivered
//! by `mailctl queue release`; an archive rule gives the audit mailbox a
//! byte-identical copy; an add_header rule's field is delivered in front of
//! the message; an outbound rule applies to authenticated submission only;
//! a bad audit configuration stops smtpd at start.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use postern_tests::stack::{mailctl, maildir, setup_users, wait_for_messages};
use postern_tests::{Daemon, TestEnv, run_tool};

/// Base64 wrapped at 76 columns, as MUAs send it.
fn b64(data: &[u8]) -> String {
    use base64::Engine;
    let s = base64::engine::general_purpose::STANDARD.encode(data);
    s.as_bytes()
        .chunks(76)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A message whose body is `text` in GBK, base64-encoded.
fn gbk_message(subject: &str, msgid: &str, text: &str) -> String {
    let (bytes, _, bad) = encoding_rs::GBK.encode(text);
    assert!(!bad);
    format!(
        "From: carol@example.org\r\nTo: someone@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{msgid}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=GBK\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        b64(&bytes)
    )
}

const RULES: &str = r#"
[checks.audit]
enabled = true
log_path = "LOG"

[[checks.audit.rule]]
name = "top-secret"
keywords = ["绝密"]
action = "reject"
code = 554
text = "Refused by the content audit"

[[checks.audit.rule]]
name = "confidential-hold"
keywords = ["机密"]
action = "hold"

[[checks.audit.rule]]
name = "payroll-archive"
keywords = ["payroll"]
scope = ["body"]
action = "archive"
archive_to = "audit@example.test"

[[checks.audit.rule]]
name = "tag-newsletter"
keywords = ["unsubscribe"]
action = "add_header"

[[checks.audit.rule]]
name = "customer-list-out"
roles = ["submission"]
keywords = ["customer list"]
action = "reject"
"#;

/// Start the stack with the audit rules; users alice, bob and audit.
fn start(env: &TestEnv) -> Vec<Daemon> {
    let log = env.path().join("audit.log");
    setup_users(env, &RULES.replace("LOG", &log.display().to_string()));
    mailctl(
        env,
        &["user", "add", "audit@example.test", "--password-stdin"],
        Some("pw-audit\n"),
    );
    ["authd", "lmtp-delivery", "queue-manager", "smtpd"]
        .into_iter()
        .map(|d| Daemon::start(env, d))
        .collect()
}

/// Send `message` (file) with smtplib: to the MX port, or with `login` to
/// the submissions port (implicit TLS, CA verified). Returns the reply to
/// the end of data: (code, text).
fn send(
    env: &TestEnv,
    login: Option<(&str, &str)>,
    from: &str,
    to: &str,
    message: &Path,
) -> (u16, String) {
    let connect = match login {
        None => format!("s = smtplib.SMTP('127.0.0.1', {})\n", env.ports["smtp"]),
        Some((u, p)) => format!(
            "ctx = ssl.create_default_context(cafile={ca:?})\n\
             s = smtplib.SMTP_SSL('127.0.0.1', {port}, context=ctx)\ns.login({u:?}, {p:?})\n",
            ca = env.cert.ca_file.display().to_string(),
            port = env.ports["submissions"]
        ),
    };
    let script = format!(
        "import smtplib, ssl, sys\n{connect}\
         s.ehlo_or_helo_if_needed()\n\
         s.mail({from:?})\ns.rcpt({to:?})\n\
         try:\n    code, text = s.data(open({path:?}, 'rb').read())\n\
         except smtplib.SMTPDataError as e:\n    code, text = e.smtp_code, e.smtp_error\n\
         print(code, text.decode())\ns.quit()\n",
        path = message.display().to_string()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, text) = stdout.trim().split_once(' ').unwrap();
    (code.parse().unwrap(), text.to_string())
}

fn write(env: &TestEnv, name: &str, text: &str) -> std::path::PathBuf {
    let p = env.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn queued_id(text: &str) -> String {
    text.rsplit(' ').next().unwrap().trim().to_string()
}

/// The audit log's lines, parsed.
fn audit_log(env: &TestEnv) -> Vec<serde_json::Value> {
    std::fs::read_to_string(env.path().join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A stored message without lmtp-delivery's per-recipient trace fields.
fn without_delivery_trace(path: &Path) -> Vec<u8> {
    let text = std::fs::read(path).unwrap();
    let mut rest = &text[..];
    while rest.starts_with(b"Return-Path:") || rest.starts_with(b"Delivered-To:") {
        let end = rest.iter().position(|&b| b == b'\n').unwrap();
        rest = &rest[end + 1..];
    }
    rest.to_vec()
}

#[test]
fn inbound_reject_hold_release_and_archive() {
    let env = TestEnv::new();
    let _d = start(&env);
    let bob = maildir(&env, "bob");

    // Reject: a listed word in a GBK base64 body.
    let m = write(
        &env,
        "reject.eml",
        &gbk_message("report", "r1@example.org", "这份文件是绝密的，请勿外传。"),
    );
    let (code, text) = send(&env, None, "carol@example.org", "bob@example.test", &m);
    assert_eq!(
        (code, text.as_str()),
        (554, "5.7.1 Refused by the content audit")
    );
    let log = audit_log(&env);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["rule"], "top-secret");
    assert_eq!(log[0]["action"], "reject");
    assert_eq!(log[0]["scope"], "body");
    assert_eq!(log[0]["role"], "mx");
    assert_eq!(log[0]["sender"], "carol@example.org");
    assert_eq!(
        log[0]["recipients"],
        serde_json::json!(["bob@example.test"])
    );
    assert_eq!(log[0]["message_id"], "r1@example.org");
    assert!(!log[0]["session"].as_str().unwrap().is_empty());
    let excerpt = log[0]["excerpt"].as_str().unwrap();
    assert!(
        excerpt.contains("绝密") && excerpt.chars().count() <= 80,
        "{excerpt}"
    );

    // Hold: accepted (250), straight into hold/ with the reason.
    let m = write(
        &env,
        "hold.eml",
        &gbk_message("minutes", "h1@example.org", "会议纪要（机密），仅限内部。"),
    );
    let (code, text) = send(&env, None, "carol@example.org", "bob@example.test", &m);
    assert_eq!(code, 250, "{text}");
    let held = queued_id(&text);
    let (rc, out, err) = run_tool(&env, "mailctl", &["queue", "list"]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains(&format!("{held}!")), "{out}");
    assert!(
        out.contains("(held: audit: rule confidential-hold matched in body)"),
        "{out}"
    );
    let (rc, out, err) = run_tool(&env, "mailctl", &["queue", "show", &held, "--envelope"]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.contains(&format!("*** ENVELOPE RECORDS hold/{held} ***")),
        "{out}"
    );
    assert!(
        out.contains("hold_reason: audit: rule confidential-hold matched in body"),
        "{out}"
    );
    assert_eq!(audit_log(&env)[1]["rule"], "confidential-hold");
    assert_eq!(audit_log(&env)[1]["action"], "hold");
    // The audit log's session id is the one stored with the queued message:
    // the join between an audit line and a queue id.
    let session = audit_log(&env)[1]["session"].as_str().unwrap().to_string();
    assert!(out.contains(&format!("\nsession_id: {session}\n")), "{out}");

    // A clean message sent after it is delivered; the held one is not
    // (it never entered incoming/).
    let m = write(
        &env,
        "clean.eml",
        &gbk_message("hello", "c1@example.org", "机会难得，周五见。"),
    );
    let (code, text) = send(&env, None, "carol@example.org", "bob@example.test", &m);
    assert_eq!(code, 250, "{text}");
    let got = wait_for_messages(&bob, 1, Duration::from_secs(20)).unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        std::fs::read_to_string(&got[0])
            .unwrap()
            .contains("Message-ID: <c1@example.org>")
    );
    assert_eq!(audit_log(&env).len(), 2, "the clean message matched a rule");
    let (_, out, _) = run_tool(&env, "mailctl", &["queue", "list", "hold"]);
    assert!(out.contains(&held), "{out}");

    // Release: delivered.
    let (rc, out, err) = run_tool(&env, "mailctl", &["queue", "release", &held]);
    assert_eq!(rc, 0, "{out}{err}");
    let got = wait_for_messages(&bob, 2, Duration::from_secs(20)).unwrap();
    assert!(got.iter().any(|p| {
        std::fs::read_to_string(p)
            .unwrap()
            .contains("Message-ID: <h1@example.org>")
    }));

    // Archive: the recipient and the audit mailbox get the same bytes.
    let m = write(
        &env,
        "archive.eml",
        "From: carol@example.org\r\nTo: alice@example.test\r\nSubject: numbers\r\n\
         Message-ID: <a1@example.org>\r\n\r\nThe payroll for December is attached.\r\n",
    );
    let (code, text) = send(&env, None, "carol@example.org", "alice@example.test", &m);
    assert_eq!(code, 250, "{text}");
    let alice = wait_for_messages(&maildir(&env, "alice"), 1, Duration::from_secs(20)).unwrap();
    let audit = wait_for_messages(&maildir(&env, "audit"), 1, Duration::from_secs(20)).unwrap();
    let a = without_delivery_trace(&alice[0]);
    assert_eq!(a, without_delivery_trace(&audit[0]));
    assert!(String::from_utf8_lossy(&a).contains("The payroll for December"));
    let log = audit_log(&env);
    assert_eq!(log[2]["rule"], "payroll-archive");
    assert_eq!(log[2]["action"], "archive");
    assert_eq!(log[2]["message_id"], "a1@example.org");
    // The outbound rule does not apply to mail from the Internet.
    let m = write(
        &env,
        "in-list.eml",
        "From: carol@example.org\r\nSubject: list\r\n\r\nour customer list, as asked\r\n",
    );
    let (code, text) = send(&env, None, "carol@example.org", "alice@example.test", &m);
    assert_eq!(code, 250, "{text}");
    assert_eq!(audit_log(&env).len(), 3);
    // Nothing else is left in the queue's hold/.
    let held_files = std::fs::read_dir(env.path().join("lib/spool/hold"))
        .unwrap()
        .count();
    assert_eq!(held_files, 0);
}

#[test]
fn outbound_rule_applies_to_authenticated_submission() {
    let env = TestEnv::new();
    let _d = start(&env);
    let m = write(
        &env,
        "out.eml",
        "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: as promised\r\n\r\n\
         Here is the Customer List you wanted.\r\n",
    );
    let (code, text) = send(
        &env,
        Some(("alice@example.test", "pw-alice")),
        "alice@example.test",
        "bob@example.test",
        &m,
    );
    assert_eq!(
        (code, text.as_str()),
        (550, "5.7.1 Message content rejected by policy")
    );
    let log = audit_log(&env);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["rule"], "customer-list-out");
    assert_eq!(log[0]["role"], "submission");
    assert_eq!(log[0]["auth_user"], "alice@example.test");
    assert!(
        log[0]["excerpt"]
            .as_str()
            .unwrap()
            .contains("Customer List")
    );
    // An inbound rule (both roles) applies to submission too: held.
    let m = write(
        &env,
        "out-hold.eml",
        &gbk_message("fwd", "o2@example.test", "转发：机密资料"),
    );
    let (code, text) = send(
        &env,
        Some(("alice@example.test", "pw-alice")),
        "alice@example.test",
        "bob@example.test",
        &m,
    );
    assert_eq!(code, 250, "{text}");
    let (_, out, _) = run_tool(&env, "mailctl", &["queue", "list", "hold"]);
    assert!(out.contains(&format!("{}!", queued_id(&text))), "{out}");
    // add_header: the field is put in front of the message (before smtpd's
    // Received:), the rest is delivered unchanged.
    let m = write(
        &env,
        "tagged.eml",
        "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: news\r\n\r\nTo unsubscribe, reply STOP.\r\n",
    );
    let (code, text) = send(
        &env,
        Some(("alice@example.test", "pw-alice")),
        "alice@example.test",
        "bob@example.test",
        &m,
    );
    assert_eq!(code, 250, "{text}");
    let got = wait_for_messages(&maildir(&env, "bob"), 1, Duration::from_secs(20)).unwrap();
    let stored = String::from_utf8(without_delivery_trace(&got[0])).unwrap();
    assert!(
        stored.starts_with("X-Postern-Audit: tag-newsletter\nReceived: "),
        "{stored}"
    );
    assert!(
        stored.ends_with("\n\nTo unsubscribe, reply STOP.\n"),
        "{stored}"
    );
    assert_eq!(audit_log(&env)[2]["action"], "add_header");
}

/// A bad rule or an audit log smtpd cannot open stops smtpd at start, with
/// the key named; it never runs with a half-built audit.
#[test]
fn smtpd_refuses_to_start_with_a_bad_audit_configuration() {
    let env = TestEnv::new();
    for (section, key) in [
        (
            "[checks.audit]\nenabled = true\nlog_path = \"/nonexistent-dir/audit.log\"\n",
            "checks.audit.log_path",
        ),
        (
            "[checks.audit]\nenabled = true\n\n[[checks.audit.rule]]\nname = \"r\"\nregex = [\"(unclosed\"]\n",
            "checks.audit.rule[0].regex[0]",
        ),
        (
            "[checks.audit]\nenabled = true\n\n[[checks.audit.rule]]\nname = \"r\"\nkeywords = [\"x\"]\naction = \"archive\"\n",
            "checks.audit.rule[0].archive_to",
        ),
    ] {
        let mut text = env.config_text("level = \"info\"");
        text.push_str(section);
        std::fs::write(&env.config_path, text).unwrap();
        let mut d = Daemon::spawn(&env, "smtpd", Command::new(postern_tests::bin("smtpd")));
        let status = d
            .wait_exit(postern_tests::TIMEOUT)
            .unwrap_or_else(|| panic!("smtpd kept running with {key} wrong"));
        assert!(!status.success());
        assert!(d.output().contains(key), "{key}: {}", d.output());
    }
}
