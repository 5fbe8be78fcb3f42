//! Routing and remote delivery, black box: the real daemons, a real DNS
//! server on loopback (Debian's dnsmasq) serving MX records, and a scripted
//! SMTP server on loopback as the remote MX (`tests/src/sink.py`, STARTTLS
//! with the test certificate), and in one test Debian's Postfix as the
//! remote MX. Mail goes in through our smtpd with Python's smtplib.
//!
//! DNS data: `remote.test MX 10 mx.remote.test` and `other.test MX 10
//! mx.other.test` (both A 127.0.0.1, the sink); `nullmx.test MX 0 .`
//! (RFC 7505); `direct.test` with an A record and no MX; `pf.test MX 10
//! mx.pf.test` (127.0.0.1, Debian's Postfix in the last test); every other
//! name under `test` is NXDOMAIN.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postern_ipc::queue::v1 as qpb;
use postern_tests::dnsmasq::Dnsmasq;
use postern_tests::stack::{files, mailctl, maildir, setup_users, wait_for_messages};
use postern_tests::{Daemon, TestEnv, free_port};

/// A child process killed (SIGTERM, then SIGKILL) on drop.
struct Guard {
    name: &'static str,
    child: Child,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{}: SIGKILL after 5s", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dnsmasq on 127.0.0.1:`port` with the test zone; waits until it answers.
fn dnsmasq(dir: &Path, port: u16) -> Dnsmasq {
    let records = [
        "--mx-host=remote.test,mx.remote.test,10",
        "--host-record=mx.remote.test,127.0.0.1",
        // Null MX: preference 0, root exchange (RFC 7505).
        "--dns-rr=nullmx.test,15,000000",
        "--host-record=direct.test,127.0.0.1",
        "--mx-host=other.test,mx.other.test,10",
        "--host-record=mx.other.test,127.0.0.1",
        "--mx-host=pf.test,mx.pf.test,10",
        "--host-record=mx.pf.test,127.0.0.1",
        // We (mail.example.test) are the best MX; the worse one must
        // not get the mail (backup-MX cut-off).
        "--mx-host=ownbest.test,mail.example.test,10",
        "--mx-host=ownbest.test,mx.remote.test,20",
    ];
    Dnsmasq::start(dir, port, &records.map(String::from))
}

/// The scripted remote SMTP server with `cert`; returns the guard and its
/// output dir.
fn sink(env: &TestEnv, port: u16, cert: &postern_common::devcert::DevCert) -> (Guard, PathBuf) {
    let out = env.path().join("sink");
    std::fs::create_dir_all(&out).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sink.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(port.to_string())
        .arg(&out)
        .arg(&cert.cert_file)
        .arg(&cert.key_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sink.py");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "sink.py did not start");
    (
        Guard {
            name: "sink",
            child,
        },
        out,
    )
}

struct Stack {
    env: TestEnv,
    sink_dir: PathBuf,
    daemons: Vec<Daemon>,
    _dns: Dnsmasq,
    _sink: Guard,
}

impl Stack {
    fn queue_log(&self) -> String {
        self.daemons[2].output()
    }
}

/// Our stack (authd, lmtp-delivery, queue-manager with routing, smtpd),
/// dnsmasq and the sink (with the test certificate, names
/// mail.example.test and localhost). `queue_extra`: more `[queue]` keys.
/// Retries only when flushed (backoff 1h).
fn start(queue_extra: &str) -> Stack {
    start_with(queue_extra, false)
}

/// [`start`]; `mx_cert`: the sink gets a certificate for mx.remote.test
/// from its own CA. In `queue_extra`, `{sink_port}`, `{smtpd_port}` (our
/// own MX listener), `{mx_ca}` (that CA's file) and `{env}` (the test
/// directory, which holds `relay.pw` with the password "relaypass") are
/// replaced.
fn start_with(queue_extra: &str, mx_cert: bool) -> Stack {
    let env = TestEnv::new();
    let dns_port = free_port();
    let sink_port = free_port();
    let dns = dnsmasq(env.path(), dns_port);
    let cert = if mx_cert {
        postern_common::devcert::ensure(&env.path().join("mxtls"), &["mx.remote.test"]).unwrap()
    } else {
        env.cert.clone()
    };
    let (sink, sink_dir) = sink(&env, sink_port, &cert);
    std::fs::write(env.path().join("relay.pw"), "relaypass\n").unwrap();
    let queue_extra = queue_extra
        .replace("{sink_port}", &sink_port.to_string())
        .replace("{mx_ca}", &cert.ca_file.display().to_string())
        .replace("{env}", &env.path().display().to_string())
        .replace("{smtpd_port}", &env.ports["smtp"].to_string());
    setup_users(
        &env,
        &format!(
            "\n[queue]\ndns_servers = [\"127.0.0.1:{dns_port}\"]\nsmtp_port = {sink_port}\nminimal_backoff_time = \"1h\"\nmaximal_backoff_time = \"1h\"\nqueue_run_delay = \"1h\"\n{queue_extra}\n"
        ),
    );
    let daemons = ["authd", "lmtp-delivery", "queue-manager", "smtpd"]
        .into_iter()
        .map(|d| Daemon::start(&env, d))
        .collect();
    Stack {
        env,
        sink_dir,
        daemons,
        _dns: dns,
        _sink: sink,
    }
}

/// Send one message with smtplib to our MX port; returns the DATA reply code.
fn send(env: &TestEnv, from: &str, to: &[&str], subject: &str) {
    send_with(env, from, to, subject, &[]);
}

/// [`send`] with ESMTP options on every RCPT.
fn send_with(env: &TestEnv, from: &str, to: &[&str], subject: &str, rcpt_options: &[&str]) {
    let rcpts: Vec<String> = to.iter().map(|t| format!("{t:?}")).collect();
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
s.ehlo("client.example.org")
refused = s.sendmail({from:?}, [{rcpts}], b"From: <{from}>\r\nSubject: {subject}\r\n\r\nhello\r\n.dot line\r\n", rcpt_options={rcpt_options:?})
assert not refused, refused
s.quit()
"#,
        port = env.ports["smtp"],
        rcpts = rcpts.join(", "),
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Messages the sink accepted, sorted by name.
fn sink_messages(dir: &Path) -> Vec<String> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("msg-"))
        })
        .collect();
    v.sort();
    v.iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

fn wait_sink(st: &Stack, n: usize) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let m = sink_messages(&st.sink_dir);
        if m.len() >= n {
            return m;
        }
        assert!(
            Instant::now() < end,
            "{} of {n} messages at the sink\n--- queue-manager ---\n{}",
            m.len(),
            st.queue_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sink_log(st: &Stack) -> String {
    std::fs::read_to_string(st.sink_dir.join("log")).unwrap_or_default()
}

fn wait_log(st: &Stack, needle: &str) {
    st.daemons[2]
        .wait_output(needle, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn queue_client(env: &TestEnv) -> qpb::queue_client::QueueClient<tonic::transport::Channel> {
    let ch = postern_ipc::dial(
        &postern_ipc::SocketUri::from_path(env.socket("private/queue.sock")),
        &postern_ipc::DialOptions::default(),
    )
    .unwrap();
    qpb::queue_client::QueueClient::new(ch)
}

fn list(env: &TestEnv) -> Vec<qpb::QueueEntry> {
    rt().block_on(async {
        queue_client(env)
            .list(qpb::ListRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries
    })
}

#[test]
fn remote_mail_goes_to_the_mx_over_starttls_with_the_envelope_intact() {
    let st = start("");
    send(
        &st.env,
        "alice@example.test",
        &["someone@remote.test", "other@remote.test"],
        "to the mx",
    );
    let msgs = wait_sink(&st, 1);
    let m = &msgs[0];
    // One transaction for both recipients of the same destination.
    assert!(
        m.contains("X-Sink-Rcpt: someone@remote.test\r\nX-Sink-Rcpt: other@remote.test\r\n"),
        "{m}"
    );
    assert!(m.contains("X-Sink-Tls: yes"), "STARTTLS not used:\n{m}");
    assert!(
        m.contains("X-Sink-Mail: MAIL FROM:<alice@example.test> SIZE="),
        "{m}"
    );
    assert!(m.contains("Subject: to the mx\r\n"), "{m}");
    // Dot-stuffing undone by the server: the line is what was sent.
    assert!(m.contains("\r\n.dot line\r\n"), "{m}");
    // Our smtpd's trace header travelled along.
    assert!(m.contains("Received: from client.example.org"), "{m}");
    let log = sink_log(&st);
    assert!(log.contains("\nSTARTTLS\n"), "{log}");
    // EHLO again after TLS, with our name; the transaction only under TLS.
    assert!(log.contains("tls EHLO mail.example.test"), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("MAIL")), "{log}");
    wait_log(&st, "removed: every recipient final");
    assert!(list(&st.env).is_empty());
}

#[test]
fn a_domain_without_mx_gets_mail_at_its_address_record() {
    let st = start("");
    send(
        &st.env,
        "alice@example.test",
        &["x@direct.test"],
        "implicit mx",
    );
    let msgs = wait_sink(&st, 1);
    assert!(
        msgs[0].contains("X-Sink-Rcpt: x@direct.test"),
        "{}",
        msgs[0]
    );
}

#[test]
fn temporary_failure_defers_then_flush_delivers() {
    let st = start("");
    std::fs::write(st.sink_dir.join("defer"), "").unwrap();
    send(
        &st.env,
        "alice@example.test",
        &["defer-me@remote.test"],
        "later",
    );
    wait_log(&st, "deferred");
    // The status is logged before the file moves to deferred/: poll.
    let end = Instant::now() + Duration::from_secs(30);
    let entries = loop {
        let entries = list(&st.env);
        if entries.len() == 1 && entries[0].queue == "deferred" || Instant::now() > end {
            break entries;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e.queue, "deferred");
    assert_eq!(e.recipients[0].status, "deferred");
    // Postfix's wording: which host said what.
    assert!(
        e.recipients[0]
            .last_reply
            .starts_with("host mx.remote.test[127.0.0.1] said: 451 4.2.0"),
        "{:?}",
        e.recipients[0]
    );
    assert!(sink_messages(&st.sink_dir).is_empty());
    // The peer recovers; a flush retries at once (the backoff is 1h).
    std::fs::remove_file(st.sink_dir.join("defer")).unwrap();
    rt().block_on(async {
        queue_client(&st.env)
            .flush(qpb::QueueIds::default())
            .await
            .unwrap()
    });
    let msgs = wait_sink(&st, 1);
    assert!(msgs[0].contains("X-Sink-Rcpt: defer-me@remote.test"));
    wait_log(&st, "removed: every recipient final");
    assert!(list(&st.env).is_empty());
}

#[test]
fn permanent_failure_and_null_mx_bounce_the_recipient() {
    let st = start("");
    send(
        &st.env,
        "alice@example.test",
        &["reject-me@remote.test", "fine@remote.test"],
        "mixed",
    );
    // The accepted one is delivered, the refused one bounced.
    let msgs = wait_sink(&st, 1);
    assert!(msgs[0].contains("X-Sink-Rcpt: fine@remote.test"));
    assert!(!msgs[0].contains("reject-me"));
    wait_log(&st, "550 5.1.1 <reject-me@remote.test>");
    let q = st.queue_log();
    assert!(
        q.lines()
            .any(|l| l.contains("bounced") && l.contains("reject-me@remote.test")),
        "{q}"
    );

    send(
        &st.env,
        "alice@example.test",
        &["nobody@nullmx.test"],
        "null mx",
    );
    wait_log(&st, "5.1.10");
    let q = st.queue_log();
    assert!(
        q.lines()
            .any(|l| l.contains("bounced") && l.contains("nobody@nullmx.test")),
        "{q}"
    );
    // Never connected for it.
    assert!(!sink_log(&st).contains("nullmx.test"));
    // A domain that does not exist bounces too.
    send(
        &st.env,
        "alice@example.test",
        &["x@no-such-domain.test"],
        "nx",
    );
    wait_log(&st, "5.1.2 host or domain name not found");
    // Larger than the peer's SIZE 100000: refused before MAIL FROM.
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
s.sendmail("alice@example.test", ["big@remote.test"], b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 2000)
s.quit()
"#,
        port = st.env.ports["smtp"]
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_log(&st, "552 5.3.4 message size");
    assert!(!sink_log(&st).contains("big@remote.test"));
    // The sender gets DSNs (crate::bounce) for the bounced recipients.
    let dsns = wait_for_messages(&maildir(&st.env, "alice"), 4, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", st.queue_log()));
    let all: String = dsns
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for rcpt in [
        "reject-me@remote.test",
        "nobody@nullmx.test",
        "x@no-such-domain.test",
        "big@remote.test",
    ] {
        assert!(
            all.contains(&format!("Final-Recipient: rfc822; {rcpt}"))
                || all.contains(&format!("Final-Recipient: rfc822;{rcpt}")),
            "no DSN for {rcpt}:\n{all}"
        );
    }
    assert!(all.contains("multipart/report"), "{all}");
    // The refusal came from the MX: the DSN names it (RFC 3464 2.3.5) and
    // keeps its reply as the diagnostic.
    assert!(all.contains("Remote-MTA: dns; mx.remote.test"), "{all}");
    assert!(
        all.contains("Diagnostic-Code: smtp; 550 5.1.1 <reject-me@remote.test>"),
        "{all}"
    );
}

/// Send with NOTIFY=SUCCESS,FAILURE on the recipient.
fn send_notify_success(st: &Stack, from: &str, to: &str, subject: &str) {
    send_with(&st.env, from, &[to], subject, &["NOTIFY=SUCCESS,FAILURE"]);
}

/// NOTIFY=SUCCESS to a remote MX that offers DSN: the RCPT carries NOTIFY
/// on and the MX reports success itself, so we send no report (RFC 3461
/// 5.2.2).
#[test]
fn a_dsn_capable_next_hop_reports_success_itself() {
    let st = start("");
    send_notify_success(&st, "alice@example.test", "dsn@remote.test", "dsn next hop");
    wait_sink(&st, 1);
    let log = sink_log(&st);
    assert!(
        log.lines().any(
            |l| l.contains("RCPT TO:<dsn@remote.test>") && l.contains("NOTIFY=SUCCESS,FAILURE")
        ),
        "{log}"
    );
    // A local recipient with NOTIFY=SUCCESS still gets "delivered": the
    // report for it is the only one in the sender's mailbox.
    send_notify_success(&st, "alice@example.test", "bob@example.test", "local");
    let reports = wait_for_messages(&maildir(&st.env, "alice"), 1, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", st.queue_log()));
    let report = std::fs::read_to_string(&reports[0]).unwrap();
    assert!(report.contains("Action: delivered"), "{report}");
    assert!(!report.contains("dsn@remote.test"), "{report}");
    assert_eq!(files(&maildir(&st.env, "alice")).len(), 1);
}

/// NOTIFY=SUCCESS to a remote MX without DSN: we send a `relayed` report
/// naming it (RFC 3461 5.2.2).
#[test]
fn a_next_hop_without_dsn_gets_a_relayed_report() {
    let st = start("");
    std::fs::write(st.sink_dir.join("nodsn"), b"").unwrap();
    send_notify_success(
        &st,
        "alice@example.test",
        "plain@remote.test",
        "plain next hop",
    );
    wait_sink(&st, 1);
    assert!(!sink_log(&st).contains("NOTIFY="), "{}", sink_log(&st));
    let reports = wait_for_messages(&maildir(&st.env, "alice"), 1, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", st.queue_log()));
    let report = std::fs::read_to_string(&reports[0]).unwrap();
    for needle in [
        "Subject: Successful Mail Delivery Report",
        "Final-Recipient: rfc822; plain@remote.test",
        "Action: relayed",
        "Remote-MTA: dns; mx.remote.test",
    ] {
        assert!(report.contains(needle), "{needle:?} in\n{report}");
    }
}

#[test]
fn alias_with_a_local_and_a_remote_target_reaches_both() {
    let st = start("");
    mailctl(
        &st.env,
        &[
            "alias",
            "add",
            "team@example.test",
            "alice@example.test",
            "friend@remote.test",
        ],
        None,
    );
    send(
        &st.env,
        "bob@example.test",
        &["team@example.test"],
        "team mail",
    );
    let msgs = wait_sink(&st, 1);
    assert!(
        msgs[0].contains("X-Sink-Rcpt: friend@remote.test"),
        "{}",
        msgs[0]
    );
    let local = wait_for_messages(&maildir(&st.env, "alice"), 1, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", st.queue_log()));
    let text = std::fs::read_to_string(&local[0]).unwrap();
    assert!(text.contains("Subject: team mail"), "{text}");
    assert!(text.contains("Delivered-To: alice@example.test"), "{text}");
    // The original recipient travels as ORCPT (the peer offers DSN).
    let log = sink_log(&st);
    assert!(
        log.contains("RCPT TO:<friend@remote.test> ORCPT=rfc822;team@example.test"),
        "{log}"
    );
    wait_log(&st, "alias expanded, re-queued");
    // Exactly one copy each.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(files(&maildir(&st.env, "alice")).len(), 1);
    assert_eq!(sink_messages(&st.sink_dir).len(), 1);

    // NOTIFY=SUCCESS to the alias: the sender gets one "expanded" report for
    // the alias, and the copies go on without SUCCESS (RFC 3461 6.2.7).
    send_notify_success(&st, "bob@example.test", "team@example.test", "team notify");
    wait_sink(&st, 2);
    wait_for_messages(&maildir(&st.env, "alice"), 2, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", st.queue_log()));
    let reports = wait_for_messages(&maildir(&st.env, "bob"), 1, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", st.queue_log()));
    let report = std::fs::read_to_string(&reports[0]).unwrap();
    for needle in [
        "Final-Recipient: rfc822; team@example.test",
        "Action: expanded",
    ] {
        assert!(report.contains(needle), "{needle:?} in\n{report}");
    }
    let log = sink_log(&st);
    assert!(
        log.lines()
            .any(|l| l.contains("RCPT TO:<friend@remote.test> NOTIFY=FAILURE ORCPT=")),
        "{log}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(files(&maildir(&st.env, "bob")).len(), 1, "one report only");
}

#[test]
fn catch_all_and_plus_address_are_delivered_locally_by_routing() {
    let st = start("");
    mailctl(
        &st.env,
        &["alias", "add", "@example.test", "bob@example.test"],
        None,
    );
    send(
        &st.env,
        "someone@elsewhere.test",
        &["random@example.test"],
        "catch all",
    );
    let bob = wait_for_messages(&maildir(&st.env, "bob"), 1, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", st.queue_log()));
    let text = std::fs::read_to_string(&bob[0]).unwrap();
    assert!(text.contains("Subject: catch all"), "{text}");
    assert!(text.contains("Delivered-To: bob@example.test"), "{text}");
    send(
        &st.env,
        "someone@elsewhere.test",
        &["alice+lists@example.test"],
        "plus",
    );
    let alice = wait_for_messages(&maildir(&st.env, "alice"), 1, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", st.queue_log()));
    let text = std::fs::read_to_string(&alice[0]).unwrap();
    assert!(text.contains("Subject: plus"), "{text}");
    // Nothing of this left the host.
    assert!(sink_messages(&st.sink_dir).is_empty());
}

#[test]
fn transport_maps_and_error_transport() {
    // mapped.test is unknown to DNS (NXDOMAIN): only the transport_maps
    // entry (the sink by IP, no MX lookup) gets it delivered; blocked.test
    // bounces with the configured text.
    let st = start_with_maps();
    send(&st.env, "alice@example.test", &["u@mapped.test"], "mapped");
    let msgs = wait_sink(&st, 1);
    assert!(msgs[0].contains("X-Sink-Rcpt: u@mapped.test"));
    send(
        &st.env,
        "alice@example.test",
        &["u@blocked.test"],
        "blocked",
    );
    wait_log(&st, "550 5.0.0 no mail for blocked.test");
}

fn start_with_maps() -> Stack {
    // The sink port is only known inside start(); transport_maps uses the
    // smtp_port default through "smtp:[127.0.0.1]".
    start(
        "transport_maps = { \"mapped.test\" = \"smtp:[127.0.0.1]\", \"blocked.test\" = \"error:no mail for blocked.test\" }",
    )
}

#[test]
fn many_messages_are_delivered_concurrently() {
    let st = start("delivery_concurrency_limit = 8\n");
    let n = 20;
    let script = format!(
        r#"
import smtplib, threading
def one(i):
    s = smtplib.SMTP("127.0.0.1", {port})
    s.sendmail("alice@example.test", ["r%d@remote.test" % i], b"Subject: n%d\r\n\r\nhi\r\n" % i)
    s.quit()
ts = [threading.Thread(target=one, args=(i,)) for i in range({n})]
[t.start() for t in ts]
[t.join() for t in ts]
"#,
        port = st.env.ports["smtp"]
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msgs = wait_sink(&st, n);
    assert_eq!(msgs.len(), n);
    // Each recipient exactly once.
    for i in 0..n {
        let needle = format!("X-Sink-Rcpt: r{i}@remote.test\r\n");
        assert_eq!(
            msgs.iter().filter(|m| m.contains(&needle)).count(),
            1,
            "r{i}"
        );
    }
}

#[test]
fn verify_policy_checks_the_mx_certificate() {
    let st = start_with(
        "smtp_tls_security_level = \"verify\"\nsmtp_tls_ca_file = \"{mx_ca}\"\n",
        true,
    );
    // mx.remote.test presents a certificate for its name from the CA we trust.
    send(
        &st.env,
        "alice@example.test",
        &["a@remote.test"],
        "verified",
    );
    let msgs = wait_sink(&st, 1);
    assert!(msgs[0].contains("X-Sink-Tls: yes"), "{}", msgs[0]);
    // mx.other.test is the same server: the name does not match, so the
    // message is not sent and stays deferred.
    send(
        &st.env,
        "alice@example.test",
        &["b@other.test"],
        "unverified",
    );
    wait_log(&st, "deferred");
    let entries = list(&st.env);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let reply = &entries[0].recipients[0].last_reply;
    assert!(reply.starts_with("451 4.4.1 mx.other.test"), "{reply}");
    assert_eq!(sink_messages(&st.sink_dir).len(), 1);
    assert!(!sink_log(&st).contains("b@other.test"));
}

#[test]
fn relayhost_with_auth_over_tls() {
    let st = start(
        "relayhost = \"[127.0.0.1]:{sink_port}\"\nrelayhost_username = \"relayuser\"\nrelayhost_password_file = \"{env}/relay.pw\"\n",
    );
    // elsewhere.test does not exist in DNS: only the relayhost can take it.
    send(
        &st.env,
        "alice@example.test",
        &["x@elsewhere.test"],
        "relayed",
    );
    let msgs = wait_sink(&st, 1);
    assert!(msgs[0].contains("X-Sink-Auth: relayuser"), "{}", msgs[0]);
    assert!(msgs[0].contains("X-Sink-Tls: yes"), "{}", msgs[0]);
    assert!(msgs[0].contains("X-Sink-Rcpt: x@elsewhere.test"));
    // Local mail still goes to the mailbox, not to the relayhost.
    send(
        &st.env,
        "bob@example.test",
        &["alice@example.test"],
        "local",
    );
    wait_for_messages(&maildir(&st.env, "alice"), 1, Duration::from_secs(30)).unwrap();
    assert_eq!(sink_messages(&st.sink_dir).len(), 1);
    assert!(!st.queue_log().contains("relaypass"));
}

#[test]
fn per_destination_limit_bounds_parallel_connections() {
    let st = start("delivery_concurrency_limit = 10\ndefault_destination_concurrency_limit = 3\n");
    let n = 9;
    let script = format!(
        r#"
import smtplib, threading
def one(i):
    s = smtplib.SMTP("127.0.0.1", {port})
    s.sendmail("alice@example.test", ["slow%d@remote.test" % i], b"Subject: s%d\r\n\r\nhi\r\n" % i)
    s.quit()
ts = [threading.Thread(target=one, args=(i,)) for i in range({n})]
[t.start() for t in ts]
[t.join() for t in ts]
"#,
        port = st.env.ports["smtp"]
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_sink(&st, n);
    let max: usize = std::fs::read_to_string(st.sink_dir.join("maxconc"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Concurrent (each delivery takes 0.5 s), but never more than the limit.
    assert!((2..=3).contains(&max), "{max} connections at once");
}

#[test]
fn a_next_hop_that_is_ourselves_is_a_loop_and_bounces() {
    let st = start("transport_maps = { \"loop.test\" = \"smtp:[127.0.0.1]:{smtpd_port}\" }\n");
    send(&st.env, "alice@example.test", &["x@loop.test"], "loop");
    wait_log(&st, "554 5.4.6 mail for 127.0.0.1 loops back to myself");
    let q = st.queue_log();
    assert!(
        q.lines()
            .any(|l| l.contains("bounced") && l.contains("x@loop.test")),
        "{q}"
    );
    // Our smtpd saw only the one submission, no looping copy.
    let smtpd = st.daemons[3].output();
    assert_eq!(
        smtpd.lines().filter(|l| l.contains("queued")).count(),
        1,
        "{smtpd}"
    );
    // We are the best MX of ownbest.test: never to the worse MX (which the
    // sink would accept), a loop instead.
    send(&st.env, "alice@example.test", &["y@ownbest.test"], "own mx");
    wait_log(&st, "554 5.4.6 mail for ownbest.test loops back to myself");
    assert!(!sink_log(&st).contains("ownbest.test"), "{}", sink_log(&st));
}

#[test]
fn the_connection_to_a_destination_is_reused_for_the_next_message() {
    let st = start("");
    for i in 1..=3 {
        send(
            &st.env,
            "alice@example.test",
            &[&format!("u{i}@remote.test")],
            "reuse",
        );
        wait_sink(&st, i);
    }
    let log = sink_log(&st);
    // One connection (one STARTTLS), then RSET before each reuse.
    assert_eq!(log.matches("STARTTLS").count(), 1, "{log}");
    assert_eq!(log.matches("tls RSET").count(), 2, "{log}");
    assert_eq!(log.matches("tls MAIL FROM").count(), 3, "{log}");
    // Idle connections are closed with QUIT after a few seconds.
    let end = Instant::now() + Duration::from_secs(10);
    while !sink_log(&st).contains("tls QUIT") {
        assert!(Instant::now() < end, "cached connection never closed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The remote MX is Debian's Postfix (tests/src/postfix.rs), found through
/// DNS (`pf.test MX 10 mx.pf.test`), with STARTTLS on its side; it stores
/// the message with its virtual(8) agent in a Maildir.
#[test]
fn debians_postfix_as_the_remote_mx_receives_over_starttls() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let dns_port = free_port();
    let _dns = dnsmasq(env.path(), dns_port);
    // Postfix's processes run as other users: they need to reach the
    // certificate and the mail directory under the test directory.
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let tls = env.path().join("pftls");
    std::fs::create_dir(&tls).unwrap();
    std::fs::set_permissions(&tls, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(&env.cert.cert_file, tls.join("cert.pem")).unwrap();
    std::fs::copy(&env.cert.key_file, tls.join("key.pem")).unwrap();
    for f in ["cert.pem", "key.pem"] {
        std::fs::set_permissions(tls.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let vmail = env.path().join("pfmail");
    std::fs::create_dir(&vmail).unwrap();
    nix::unistd::chown(&vmail, Some(65534.into()), Some(65534.into())).unwrap();
    let pf = postern_tests::postfix::Postfix::start(&format!(
        "virtual_mailbox_domains = pf.test\n\
         virtual_mailbox_base = {vmail}\n\
         virtual_mailbox_maps = inline:{{ user@pf.test=user/ }}\n\
         virtual_uid_maps = static:65534\n\
         virtual_gid_maps = static:65534\n\
         smtpd_tls_cert_file = {tls}/cert.pem\n\
         smtpd_tls_key_file = {tls}/key.pem\n\
         smtpd_tls_security_level = may\n\
         smtpd_tls_received_header = yes\n",
        vmail = vmail.display(),
        tls = tls.display(),
    ));
    setup_users(
        &env,
        &format!(
            "\n[queue]\ndns_servers = [\"127.0.0.1:{dns_port}\"]\nsmtp_port = {}\n",
            pf.port
        ),
    );
    let daemons: Vec<Daemon> = ["authd", "lmtp-delivery", "queue-manager", "smtpd"]
        .into_iter()
        .map(|d| Daemon::start(&env, d))
        .collect();
    send(&env, "alice@example.test", &["user@pf.test"], "to postfix");
    let new = vmail.join("user/new");
    let end = Instant::now() + Duration::from_secs(60);
    let file = loop {
        if let Some(f) = std::fs::read_dir(&new)
            .into_iter()
            .flatten()
            .flatten()
            .next()
        {
            break f.path();
        }
        assert!(
            Instant::now() < end,
            "not delivered by Postfix\n--- queue-manager ---\n{}\n--- maillog ---\n{}",
            daemons[2].output(),
            pf.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("Subject: to postfix"), "{text}");
    assert!(text.contains("Delivered-To: user@pf.test"), "{text}");
    // Postfix's Received header: from our EHLO name, over TLS.
    assert!(text.contains("from mail.example.test"), "{text}");
    assert!(text.contains("with ESMTPS"), "{text}");
    assert!(text.contains("Received: from client.example.org"), "{text}");
    // This Postfix has smtputf8_enable = no: a message with a UTF-8 header
    // submitted with SMTPUTF8 cannot go there and bounces (RFC 6531 3.2).
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
s.ehlo("client.example.org")
assert s.has_extn("smtputf8")
s.sendmail("alice@example.test", ["user@pf.test"], "Subject: caf\u00e9\r\n\r\nhi\r\n".encode(), mail_options=["SMTPUTF8", "BODY=8BITMIME"])
s.quit()
"#,
        port = env.ports["smtp"]
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    daemons[2]
        .wait_output("550 5.6.7", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(std::fs::read_dir(&new).unwrap().count(), 1);
}

#[test]
fn bad_routing_settings_are_configuration_errors() {
    let env = TestEnv::new();
    for (extra, key) in [
        (
            "transport_maps = { \"x.test\" = \"uucp:x\" }",
            "queue.transport_maps.x.test",
        ),
        ("relayhost = \"[x\"", "queue.relayhost"),
        (
            "smtp_tls_security_level = \"dane\"",
            "queue.smtp_tls_security_level",
        ),
        (
            "smtp_tls_security_level = \"verify\"\nsmtp_tls_ca_file = \"/nonexistent/ca.pem\"",
            "queue.smtp_tls_ca_file",
        ),
        ("dns_servers = [\"ns.example\"]", "queue.dns_servers"),
        (
            "relayhost_username = \"u\"\nrelayhost_password_file = \"/nonexistent/pw\"",
            "queue.relayhost_password_file",
        ),
        ("delivery_transport = \"smtp\"", "queue.delivery_transport"),
        (
            "default_destination_concurrency_limit = 0",
            "queue.default_destination_concurrency_limit",
        ),
    ] {
        let mut text = env.config_text("level = \"info\"");
        text.push_str(&format!("\n[queue]\n{extra}\n"));
        std::fs::write(&env.config_path, text).unwrap();
        let (code, _, err) = postern_tests::run_tool(&env, "queue-manager", &["--check-config"]);
        assert_eq!(code, 78, "{extra}: {err}");
        assert!(err.contains(key), "{extra}: {err}");
    }
}

/// Send a `BODY=BINARYMIME` message with BDAT over a raw socket (smtplib
/// has no BDAT); the body holds a NUL and a bare CR.
fn send_binarymime(env: &TestEnv, to: &str) {
    let script = format!(
        r#"
import socket
s = socket.create_connection(("127.0.0.1", {port}))
f = s.makefile("rb")
def reply():
    while True:
        l = f.readline()
        if l[3:4] != b"-":
            return l
assert reply().startswith(b"220")
body = b"Subject: binary\r\n\r\nbytes \x00 and \r bare CR\r\n"
s.sendall(b"EHLO client.example.org\r\n")
assert reply().startswith(b"250")
s.sendall(b"MAIL FROM:<alice@example.test> BODY=BINARYMIME\r\n")
assert reply().startswith(b"250")
s.sendall(b"RCPT TO:<{to}>\r\n")
assert reply().startswith(b"250")
s.sendall(b"BDAT %d LAST\r\n" % len(body) + body)
r = reply()
assert r.startswith(b"250"), r
s.sendall(b"QUIT\r\n")
"#,
        port = env.ports["smtp"],
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// RFC 3030 towards the next hop: BDAT when it offers CHUNKING (content as
/// it is, no dot stuffing), BINARYMIME content only to a next hop that
/// offers CHUNKING and BINARYMIME, a bounce (5.6.3) otherwise.
#[test]
fn bdat_and_binarymime_to_the_next_hop() {
    let st = start("");
    // 1. No CHUNKING at the MX: binary content cannot go, it bounces.
    send_binarymime(&st.env, "bin1@remote.test");
    wait_log(&st, "554 5.6.3 mx.remote.test does not support BINARYMIME");
    assert!(!sink_log(&st).contains("bin1@remote.test"));
    // 2. CHUNKING: an ordinary message goes with BDAT, byte-exact (the
    //    ".dot line" is not stuffed).
    std::fs::write(st.sink_dir.join("chunking"), b"").unwrap();
    send(
        &st.env,
        "alice@example.test",
        &["plain@remote.test"],
        "chunked",
    );
    let msgs = wait_sink(&st, 1);
    assert!(msgs[0].contains("\r\n.dot line\r\n"), "{}", msgs[0]);
    let log = sink_log(&st);
    assert!(
        log.lines()
            .any(|l| l.contains("BDAT ") && l.ends_with(" LAST")),
        "{log}"
    );
    assert!(!log.lines().any(|l| l.trim() == "tls DATA"), "{log}");
    // 3. BINARYMIME goes as such, NUL and bare CR intact.
    send_binarymime(&st.env, "bin2@remote.test");
    let msgs = wait_sink(&st, 2);
    let bin = msgs
        .iter()
        .find(|m| m.contains("X-Sink-Rcpt: bin2@remote.test"))
        .unwrap_or_else(|| panic!("{msgs:?}"));
    assert!(bin.contains("BODY=BINARYMIME"), "{bin}");
    assert!(bin.contains("bytes \0 and \r bare CR\r\n"), "{bin:?}");
}
