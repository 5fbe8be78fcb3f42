//! Crash tests (issue 9): `kill -9` of smtpd, queue-manager and
//! lmtp-delivery, each in turn, in the middle of a burst of SMTP deliveries
//! from concurrent smtplib senders (tests/py/smtp_burst.py). The harness
//! restarts the killed daemon at once, as systemd's `Restart=on-failure`
//! would. Afterwards every message that got a 250 is in the mailbox exactly
//! once (counted by its unique `X-Burst-Id`), no message is there twice,
//! and the queue is empty: the stack recovered without manual steps.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use postern_tests::stack::{files, maildir, setup_users};
use postern_tests::{Daemon, TestEnv};

/// Messages in one burst, and concurrent senders.
const TOTAL: usize = 200;
const SENDERS: usize = 4;
/// The burst stops sending after this long even if not every message went.
const BURST_DEADLINE: Duration = Duration::from_secs(45);
/// Kills of one daemon happen once this many messages were acknowledged.
const KILL_AT: [usize; 2] = [40, 110];

/// `X-Burst-Id` → copies, over every message file of the Maildir.
fn count_ids(dir: &Path) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for f in files(dir) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let id = text
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix("X-Burst-Id: "))
            .unwrap_or_else(|| panic!("no X-Burst-Id in {}", f.display()))
            .to_string();
        *m.entry(id).or_insert(0) += 1;
    }
    m
}

fn queued(env: &TestEnv) -> usize {
    let spool = env.path().join("lib/spool");
    ["incoming", "active", "deferred"]
        .iter()
        .map(|q| {
            std::fs::read_dir(spool.join(q))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum()
}

/// One burst; `plan` says after how many acknowledged messages which
/// daemon is killed (and restarted).
fn burst_with_kills(plan: &[(usize, &'static str)]) {
    let victim = plan.iter().map(|(_, v)| *v).collect::<Vec<_>>().join("+");
    let env = TestEnv::new();
    // Short retry times so messages deferred while lmtp-delivery is down
    // are retried within the test.
    setup_users(
        &env,
        "\n[queue]\nminimal_backoff_time = \"1s\"\nmaximal_backoff_time = \"2s\"\nqueue_run_delay = \"1s\"\n",
    );
    let names = ["authd", "lmtp-delivery", "queue-manager", "smtpd"];
    let mut daemons: BTreeMap<&str, Daemon> =
        names.iter().map(|n| (*n, Daemon::start(&env, n))).collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/smtp_burst.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(env.ports["smtp"].to_string())
        .arg("alice@example.test")
        .arg(TOTAL.to_string())
        .arg(SENDERS.to_string())
        .arg(BURST_DEADLINE.as_secs().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        })
    };
    let acks = |lines: &Arc<Mutex<Vec<String>>>| {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("ACK "))
            .count()
    };
    let started = Instant::now();
    let mut kills = 0;
    // Output of the killed instances (for the logs below).
    let mut earlier_output = String::new();
    for &(at, victim) in plan {
        while acks(&lines) < at && started.elapsed() < BURST_DEADLINE {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        let mut d = daemons.remove(victim).unwrap();
        d.signal(Signal::SIGKILL);
        d.wait_exit(Duration::from_secs(10))
            .expect("killed daemon did not exit");
        earlier_output.push_str(&d.output());
        kills += 1;
        // Restart as systemd would (RestartSec is short in our units).
        daemons.insert(victim, Daemon::start(&env, victim));
    }
    let end = Instant::now() + BURST_DEADLINE + Duration::from_secs(15);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        assert!(Instant::now() < end, "burst did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    reader.join().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let lines = lines.lock().unwrap().clone();
    assert!(
        status.success() && lines.last().map(String::as_str) == Some("DONE"),
        "burst failed: {err}"
    );
    assert_eq!(kills, plan.len(), "the burst ended before the kills");
    let acked: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ACK "))
        .collect();
    let failed = lines.iter().filter(|l| l.starts_with("FAIL ")).count();
    // A daemon going away may cost a client its connection or give it a
    // 4xx (retry later); never a 5xx, which would make it drop the message.
    let permanent: Vec<&String> = lines
        .iter()
        .filter(|l| {
            l.starts_with("FAIL ") && l.split(' ').nth(2).is_some_and(|c| c.starts_with('5'))
        })
        .collect();
    assert!(permanent.is_empty(), "permanent failures: {permanent:?}");
    assert!(
        acked.len() >= TOTAL / 2,
        "only {} of {TOTAL} acknowledged:\n{}",
        acked.len(),
        lines.join("\n")
    );

    // Wait until every acknowledged message is delivered and the queue is
    // empty (deferred ones are retried after minimal_backoff_time).
    let dir = maildir(&env, "alice");
    let end = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let counts = count_ids(&dir);
        let missing = acked.iter().filter(|id| !counts.contains_key(**id)).count();
        if missing == 0 && queued(&env) == 0 {
            break counts;
        }
        assert!(
            Instant::now() < end,
            "{missing} acknowledged messages missing, {} still queued\n--- queue-manager ---\n{}\n--- lmtp-delivery ---\n{}",
            queued(&env),
            daemons["queue-manager"].output(),
            daemons["lmtp-delivery"].output()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "delivered more than once: {twice:?}\n--- queue-manager ---\n{}\n--- lmtp-delivery ---\n{}",
        daemons["queue-manager"].output(),
        daemons["lmtp-delivery"].output()
    );
    // Messages that were not acknowledged may have been delivered (the kill
    // came after the queue had them, before the 250 reached the client),
    // but only ones the burst really sent.
    let sent: std::collections::BTreeSet<&str> =
        lines.iter().filter_map(|l| l.split(' ').nth(1)).collect();
    assert!(counts.keys().all(|k| sent.contains(k.as_str())));
    let suppressed = format!("{earlier_output}{}", daemons["lmtp-delivery"].output())
        .matches("duplicate suppressed")
        .count();
    let codes: BTreeMap<&str, usize> = lines
        .iter()
        .filter(|l| l.starts_with("FAIL "))
        .filter_map(|l| l.split(' ').nth(2))
        .fold(BTreeMap::new(), |mut m, c| {
            *m.entry(c).or_insert(0) += 1;
            m
        });
    eprintln!("{victim}: failure codes {codes:?} (- = connection lost)");
    eprintln!(
        "{victim}: {} acknowledged, {failed} failed, {} delivered, {kills} kills, {suppressed} duplicates suppressed by lmtp-delivery",
        acked.len(),
        counts.len()
    );
    // Nothing half-written was left in the spool or the Maildir.
    assert_eq!(
        std::fs::read_dir(env.path().join("lib/spool/tmp"))
            .unwrap()
            .count(),
        0
    );
    assert!(
        std::fs::read_dir(env.path().join("lib/spool/corrupt"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "corrupt queue files after kill -9"
    );
}

#[test]
fn kill_9_smtpd_during_burst() {
    burst_with_kills(&[(KILL_AT[0], "smtpd"), (KILL_AT[1], "smtpd")]);
}

#[test]
fn kill_9_queue_manager_during_burst() {
    burst_with_kills(&[(KILL_AT[0], "queue-manager"), (KILL_AT[1], "queue-manager")]);
}

#[test]
fn kill_9_lmtp_delivery_during_burst() {
    burst_with_kills(&[(KILL_AT[0], "lmtp-delivery"), (KILL_AT[1], "lmtp-delivery")]);
}

/// One burst, the three daemons killed in turn.
#[test]
fn kill_9_each_daemon_in_turn_during_one_burst() {
    burst_with_kills(&[(30, "smtpd"), (80, "queue-manager"), (130, "lmtp-delivery")]);
}

/// The window itself, made deterministic: an LMTP client sends a message
/// and goes away before reading the replies after the final dot (its `250`
/// is lost), then delivers the same message again, as our queue-manager or
/// Postfix does after a crash. lmtp-delivery stores it once and says 250
/// both times. Once the user has deleted it, the same message is delivered
/// again: a record never causes a loss.
#[test]
fn lmtp_retry_after_a_lost_250_is_stored_once() {
    let env = TestEnv::new();
    setup_users(&env, "");
    let _authd = Daemon::start(&env, "authd");
    let lmtp = Daemon::start(&env, "lmtp-delivery");
    let dir = maildir(&env, "alice");
    let sock = env.socket("private/lmtp.sock").display().to_string();
    let msg = "Subject: lost reply\r\nMessage-ID: <lost@example.org>\r\n\r\nonce\r\n";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            r#"
import socket, smtplib, sys, time, os
msg = {msg:?}.encode()
s = socket.socket(socket.AF_UNIX)
s.connect({sock:?})
f = s.makefile("rb")
f.readline()
s.sendall(b"LHLO x\r\n")
while f.readline()[3:4] != b" ":
    pass
s.sendall(b"MAIL FROM:<carol@example.org>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
for _ in range(3):
    f.readline()
s.sendall(msg + b".\r\n")
s.close()   # the 250 after the dot is never read
dirs = [os.path.join({md:?}, d) for d in ("new", "cur")]
end = time.time() + 20
while sum(len(os.listdir(d)) for d in dirs if os.path.isdir(d)) == 0:
    assert time.time() < end, "first copy never written"
    time.sleep(0.02)
c = smtplib.LMTP({sock:?})
c.ehlo("x")
print("retry", c.sendmail("carol@example.org", ["alice@example.test"], msg))
c.quit()
"#,
            md = dir.display().to_string()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        lmtp.output()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "retry {}");
    assert_eq!(files(&dir).len(), 1, "stored twice");
    lmtp.wait_output("duplicate suppressed", Duration::from_secs(5))
        .unwrap();
    // The user deletes it; the same message again is a new delivery.
    std::fs::remove_file(&files(&dir)[0]).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import smtplib\nc = smtplib.LMTP({sock:?})\nc.ehlo('x')\nprint(c.sendmail('carol@example.org', ['alice@example.test'], {msg:?}.encode()))\n"
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{}");
    assert_eq!(files(&dir).len(), 1);
}

/// The same with Debian's Postfix as the LMTP client (README "Postfix in
/// front of our delivery"): lmtp-delivery is killed twice while Postfix
/// delivers a burst to it; Postfix defers, retries once it is back, and
/// every message Postfix accepted is in the mailbox exactly once. Needs
/// root (a private Postfix instance).
#[test]
fn kill_9_lmtp_delivery_under_postfix() {
    use postern_tests::postfix::Postfix;
    let env = TestEnv::new();
    let lmtp_port = postern_tests::free_port();
    setup_users(
        &env,
        &format!(
            "\n[lmtp]\nlistener = [{{ name = \"lmtp\", address = \"127.0.0.1:{lmtp_port}\", role = \"lmtp\" }}]\n"
        ),
    );
    let _authd = Daemon::start(&env, "authd");
    let mut lmtp = Daemon::start(&env, "lmtp-delivery");
    let pf = Postfix::start(&format!(
        "virtual_mailbox_domains = example.test\n\
         virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}\n\
         smtpd_reject_unlisted_recipient = no\n\
         minimal_backoff_time = 1s\n\
         maximal_backoff_time = 2s\n\
         queue_run_delay = 1s\n"
    ));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/smtp_burst.py");
    let total = 120;
    let out = Command::new("python3")
        .arg(script)
        .arg(pf.port.to_string())
        .arg("alice@example.test")
        .arg(total.to_string())
        .arg(SENDERS.to_string())
        .arg(BURST_DEADLINE.as_secs().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let dir = maildir(&env, "alice");
    let mut earlier_output = String::new();
    let started = Instant::now();
    for at in [20, 60] {
        while files(&dir).len() < at && started.elapsed() < BURST_DEADLINE {
            std::thread::sleep(Duration::from_millis(5));
        }
        lmtp.signal(Signal::SIGKILL);
        lmtp.wait_exit(Duration::from_secs(10)).expect("exit");
        earlier_output.push_str(&lmtp.output());
        drop(lmtp);
        lmtp = Daemon::start(&env, "lmtp-delivery");
    }
    let out = out.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("DONE\n"),
        "burst failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acked: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("ACK "))
        .collect();
    assert_eq!(acked.len(), total, "Postfix refused some: {text}");
    let end = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let counts = count_ids(&dir);
        if acked.iter().all(|id| counts.contains_key(*id)) {
            break counts;
        }
        assert!(
            Instant::now() < end,
            "{} of {total} delivered\n--- postfix ---\n{}",
            counts.len(),
            pf.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(counts.len(), total);
    let suppressed = format!("{earlier_output}{}", lmtp.output())
        .matches("duplicate suppressed")
        .count();
    let deferred = pf.log().matches("status=deferred").count();
    eprintln!(
        "postfix: {total} accepted and delivered once, {deferred} deferrals, {suppressed} duplicates suppressed"
    );
}
