//! `mailq` and `mailctl queue` against a running queue-manager: messages
//! submitted with sendmail(1) are deferred while lmtp-delivery is down;
//! `mailq` lists them in Postfix's format with the deferral reason; hold,
//! release, show, delete and flush act on the live spool; after a flush
//! (the only thing that can trigger a retry here: backoff and scan delay
//! are one hour) the messages reach the Maildir.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postern_tests::stack::{maildir, wait_for_messages};
use postern_tests::{Daemon, TestEnv, bin, run_tool};

const WAIT: Duration = Duration::from_secs(30);

/// mailctl installed under another name (`sendmail`, `mailq`).
fn link(env: &TestEnv, name: &str) -> PathBuf {
    let p = env.path().join(name);
    if !p.exists() {
        std::os::unix::fs::symlink(bin("mailctl"), &p).unwrap();
    }
    p
}

fn sendmail(env: &TestEnv, subject: &str) {
    let mut c = Command::new(link(env, "sendmail"))
        .arg("-C")
        .arg(&env.config_path)
        .args(["-i", "-f", "carol@example.org", "-N", "failure,delay"])
        .args(["-R", "hdrs", "-V", &format!("envid-{subject}")])
        .arg("alice@example.test")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("Subject: {subject}\n\nbody of {subject}\n").as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sendmail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (exit code, stdout, stderr) of `prog -C config args...`.
fn run_as(prog: &Path, config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(prog)
        .arg("-C")
        .arg(config)
        .args(args)
        .env_remove("POSTERN_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mailq(env: &TestEnv) -> String {
    let (code, out, err) = run_as(&link(env, "mailq"), &env.config_path, &[]);
    assert_eq!(code, 0, "mailq: {err}");
    out
}

fn queue(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    let mut a = vec!["queue"];
    a.extend_from_slice(args);
    run_tool(env, "mailctl", &a)
}

/// Queue ids in mailq output, in order, with their flag (`*`, `!` or none).
fn ids(listing: &str) -> Vec<(String, String)> {
    listing
        .lines()
        .skip(1)
        .filter(|l| l.len() > 17 && l.as_bytes()[0].is_ascii_alphanumeric())
        .map(|l| {
            let id = l[..16].to_string();
            let flag = l[16..17].trim().to_string();
            (id, flag)
        })
        .collect()
}

#[test]
fn mailq_hold_release_show_delete_flush_on_the_running_daemon() {
    let env = TestEnv::new();
    postern_tests::stack::setup_users(
        &env,
        "\n[queue]\ndelivery_transport = \"lmtp\"\nqueue_run_delay = \"1h\"\nminimal_backoff_time = \"1h\"\nmaximal_backoff_time = \"2h\"\n",
    );
    // lmtp-delivery and authd are not running yet: deliveries fail
    // temporarily and the messages are deferred.
    let qm = Daemon::start(&env, "queue-manager");
    assert_eq!(mailq(&env), "Mail queue is empty\n");
    for s in ["one", "two", "three"] {
        sendmail(&env, s);
    }
    let end = Instant::now() + WAIT;
    let listing = loop {
        let l = mailq(&env);
        // All three deferred (no longer active), each with its reason.
        let q = ids(&l);
        if q.len() == 3
            && q.iter().all(|(_, f)| f.is_empty())
            && l.lines()
                .filter(|x| x.trim_start().starts_with('('))
                .count()
                == 3
        {
            break l;
        }
        assert!(Instant::now() < end, "not deferred:\n{l}\n{}", qm.output());
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(
        lines[0],
        "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------"
    );
    assert!(
        lines[1].ends_with(" carol@example.org") && lines[1].len() == 17 + 1 + 8 + 1 + 19 + 1 + 17,
        "{listing}"
    );
    assert!(lines[2].trim_start().starts_with('(') && lines[2].ends_with(')'));
    assert_eq!(lines[3], format!("{:47}alice@example.test", ""));
    assert_eq!(lines[4], "");
    assert_eq!(lines.last().unwrap(), &"-- 0 Kbytes in 3 Requests.");
    let q = ids(&listing);
    assert!(q.iter().all(|(_, f)| f.is_empty()), "{listing}");
    let (a, b, c) = (q[0].0.clone(), q[1].0.clone(), q[2].0.clone());
    // sendmail -bp is mailq too.
    let (code, bp, _) = run_as(&link(&env, "sendmail"), &env.config_path, &["-bp"]);
    assert_eq!((code, bp.as_str()), (0, listing.as_str()));

    // hold one: `!` after its id; show prints envelope and message.
    let (code, out, err) = queue(&env, &["hold", &a]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "mailctl: placed on hold: 1 message\n");
    // Again: already on hold, nothing changes, and mailctl says so.
    let (code, out, err) = queue(&env, &["hold", &a]);
    assert_eq!(code, 0);
    assert_eq!(out, "mailctl: placed on hold: 0 messages\n");
    assert!(err.contains("1 message not changed"), "{err}");
    let l = mailq(&env);
    assert_eq!(
        ids(&l),
        vec![
            (a.clone(), "!".into()),
            (b.clone(), "".into()),
            (c.clone(), "".into())
        ]
    );
    let (code, show, _) = queue(&env, &["show", &a]);
    assert_eq!(code, 0);
    assert!(
        show.starts_with(&format!("*** ENVELOPE RECORDS hold/{a} ***\n")),
        "{show}"
    );
    for needle in [
        "sender: carol@example.org\n",
        "envid: envid-one\nret: HDRS\n",
        "origin: sendmail\n",
        "recipient: alice@example.test (deferred)\n",
        "  notify: FAILURE,DELAY\n",
        "  last reply: ",
        "Subject: one\r\n",
        "body of one\r\n",
        &format!("*** MESSAGE FILE END hold/{a} ***\n"),
    ] {
        assert!(show.contains(needle), "{needle:?} in\n{show}");
    }
    let (_, env_only, _) = queue(&env, &["show", "-e", &a]);
    assert!(!env_only.contains("Subject: one"), "{env_only}");

    // hold ALL, release ALL.
    let (code, out, _) = queue(&env, &["hold", "ALL"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "mailctl: placed on hold: 2 messages\n")
    );
    assert!(ids(&mailq(&env)).iter().all(|(_, f)| f == "!"));
    let (code, out, _) = queue(&env, &["release", "ALL"]);
    assert_eq!(
        (code, out.as_str()),
        (0, "mailctl: released from hold: 3 messages\n")
    );
    assert!(ids(&mailq(&env)).iter().all(|(_, f)| f.is_empty()));
    // Only deferred messages are listed with `queue list deferred`.
    let (_, d, _) = queue(&env, &["list", "deferred"]);
    assert_eq!(ids(&d).len(), 3);
    let (_, h, _) = queue(&env, &["list", "hold"]);
    assert_eq!(h, "Mail queue is empty\n");

    // delete one; an unknown id and a malformed one fail.
    let (code, out, _) = queue(&env, &["delete", &c]);
    assert_eq!((code, out.as_str()), (0, "mailctl: deleted: 1 message\n"));
    let (code, _, err) = queue(&env, &["delete", &c]);
    assert_eq!(code, 1);
    assert!(err.contains("no such message"), "{err}");
    let (code, _, err) = queue(&env, &["delete", "../../etc/passwd"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("invalid queue id"), "{err}");
    assert_eq!(
        ids(&mailq(&env))
            .into_iter()
            .map(|x| x.0)
            .collect::<Vec<_>>(),
        vec![a.clone(), b.clone()]
    );

    // Now the mailbox side comes up; nothing is retried before an hour
    // unless flushed.
    let _authd = Daemon::start(&env, "authd");
    let _lmtp = Daemon::start(&env, "lmtp-delivery");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ids(&mailq(&env)).len(), 2, "not retried without a flush");
    let (code, out, err) = queue(&env, &["flush"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "mailctl: scheduled for immediate delivery: 2 messages\n"
    );
    let got = wait_for_messages(&maildir(&env, "alice"), 2, WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", qm.output()));
    assert_eq!(got.len(), 2);
    let end = Instant::now() + WAIT;
    while mailq(&env) != "Mail queue is empty\n" {
        assert!(Instant::now() < end, "{}", mailq(&env));
        std::thread::sleep(Duration::from_millis(100));
    }
    let bodies: Vec<String> = got
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(bodies.iter().any(|b| b.contains("Subject: one")));
    assert!(bodies.iter().any(|b| b.contains("Subject: two")));
    assert!(
        !bodies.iter().any(|b| b.contains("Subject: three")),
        "deleted"
    );

    // queue-manager down: mailq says so with EX_TEMPFAIL.
    drop(qm);
    let (code, _, err) = run_as(&link(&env, "mailq"), &env.config_path, &[]);
    assert_eq!(code, 75, "{err}");
}
