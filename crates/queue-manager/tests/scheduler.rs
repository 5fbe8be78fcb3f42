//! Scheduler with a fake transport: deferral with backoff, bounces, mixed
//! results, no re-delivery after a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_queue_manager::scheduler::{Outcome, Policy, Scheduler, Transport};
use postern_queue_manager::spool::{self, Envelope, Message, RcptState, Recipient, Spool};

/// Answers per address; records every (address) it was asked to deliver.
#[derive(Default)]
struct Fake {
    answers: Mutex<HashMap<String, Outcome>>,
    calls: Mutex<Vec<String>>,
}

#[tonic::async_trait]
impl Transport for Fake {
    async fn deliver(&self, m: &Message, content: &[u8], rcpts: &[usize]) -> Vec<Outcome> {
        assert_eq!(content, b"body\r\n");
        let answers = self.answers.lock().unwrap();
        rcpts
            .iter()
            .map(|&i| {
                let a = &m.envelope.recipients[i].address;
                self.calls.lock().unwrap().push(a.clone());
                answers.get(a).cloned().unwrap_or(Outcome::Delivered)
            })
            .collect()
    }
}

fn env(rcpts: &[&str]) -> Envelope {
    Envelope {
        arrival_micros: spool::now_micros(),
        sender: "s@x.test".into(),
        recipients: rcpts
            .iter()
            .map(|a| Recipient {
                address: a.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn policy() -> Policy {
    Policy {
        minimal_backoff: Duration::from_secs(300),
        maximal_backoff: Duration::from_secs(4000),
        maximal_lifetime: Duration::from_secs(5 * 86400),
    }
}

fn sched(spool: &Spool, fake: &Arc<Fake>, policy: Policy) -> Scheduler {
    Scheduler {
        spool: spool.clone(),
        transport: fake.clone(),
        policy,
        bounce: None,
    }
}

#[test]
fn backoff_doubles_and_is_capped() {
    let p = policy();
    assert_eq!(p.backoff(1), Duration::from_secs(300));
    assert_eq!(p.backoff(2), Duration::from_secs(600));
    assert_eq!(p.backoff(4), Duration::from_secs(2400));
    assert_eq!(p.backoff(5), Duration::from_secs(4000));
    assert_eq!(p.backoff(100), Duration::from_secs(4000));
}

#[tokio::test]
async fn all_delivered_removes_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path()).unwrap();
    let id = s
        .enqueue(&env(&["a@x.test", "b@x.test"]), b"body\r\n")
        .unwrap();
    let fake = Arc::new(Fake::default());
    assert_eq!(sched(&s, &fake, policy()).run_once().await.unwrap(), 1);
    assert!(s.locate(&id).is_none());
    assert_eq!(fake.calls.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn mixed_results_then_restart_does_not_redeliver() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path()).unwrap();
    let id = s
        .enqueue(
            &env(&["ok@x.test", "temp@x.test", "perm@x.test"]),
            b"body\r\n",
        )
        .unwrap();
    let fake = Arc::new(Fake::default());
    fake.answers.lock().unwrap().extend([
        (
            "temp@x.test".to_string(),
            Outcome::TempFail("451 4.3.0 later".into()),
        ),
        (
            "perm@x.test".to_string(),
            Outcome::PermFail("550 5.1.1 no such user".into()),
        ),
    ]);
    let before = spool::now_unix();
    sched(&s, &fake, policy()).run_once().await.unwrap();
    let m = s.read(&id).unwrap();
    assert_eq!(m.queue, "deferred");
    assert_eq!(m.status[0].state, RcptState::Delivered);
    assert_eq!(m.status[1].state, RcptState::Deferred);
    assert_eq!(m.status[1].attempts, 1);
    assert_eq!(m.status[1].last_reply, "451 4.3.0 later");
    let next = m.status[1].next_attempt_unix;
    assert!(
        next >= before + 300 && next <= spool::now_unix() + 300,
        "{next}"
    );
    assert_eq!(m.status[2].state, RcptState::Bounced);

    // Not due yet: a second pass does nothing.
    assert_eq!(sched(&s, &fake, policy()).run_once().await.unwrap(), 0);
    assert_eq!(fake.calls.lock().unwrap().len(), 3);

    // "Restart": a new spool handle and scheduler, recovery, then a forced
    // retry (Flush-like: next attempt now). Only temp@ is tried again.
    drop(s);
    let s = Spool::open(dir.path()).unwrap();
    s.recover().unwrap();
    let st = s.read(&id).unwrap().status[1].clone();
    s.record_status(
        &id,
        &[(
            1,
            spool::RcptStatus {
                next_attempt_unix: 0,
                ..st
            },
        )],
    )
    .unwrap();
    fake.answers.lock().unwrap().remove("temp@x.test");
    fake.calls.lock().unwrap().clear();
    assert_eq!(sched(&s, &fake, policy()).run_once().await.unwrap(), 1);
    assert_eq!(*fake.calls.lock().unwrap(), vec!["temp@x.test".to_string()]);
    assert!(s.locate(&id).is_none(), "every recipient final: removed");
}

#[tokio::test]
async fn crash_while_active_is_recovered_without_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path()).unwrap();
    let id = s
        .enqueue(&env(&["a@x.test", "b@x.test"]), b"body\r\n")
        .unwrap();
    // Simulate: a@ was delivered and recorded, then the process died with
    // the message in active/.
    s.move_to(&id, "incoming", "active").unwrap();
    s.record_status(
        &id,
        &[(
            0,
            spool::RcptStatus {
                state: RcptState::Delivered,
                attempts: 1,
                next_attempt_unix: 0,
                last_reply: "250 ok".into(),
            },
        )],
    )
    .unwrap();
    let s = Spool::open(dir.path()).unwrap();
    assert_eq!(s.recover().unwrap(), vec![id.clone()]);
    let fake = Arc::new(Fake::default());
    sched(&s, &fake, policy()).run_once().await.unwrap();
    assert_eq!(*fake.calls.lock().unwrap(), vec!["b@x.test".to_string()]);
    assert!(s.locate(&id).is_none());
}

#[tokio::test]
async fn temp_failure_past_lifetime_bounces() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path()).unwrap();
    let mut e = env(&["temp@x.test"]);
    e.arrival_micros -= 6 * 86400 * 1_000_000;
    let id = s.enqueue(&e, b"body\r\n").unwrap();
    let fake = Arc::new(Fake::default());
    fake.answers
        .lock()
        .unwrap()
        .insert("temp@x.test".into(), Outcome::TempFail("421 busy".into()));
    sched(&s, &fake, policy()).run_once().await.unwrap();
    // Bounced (final) -> removed; the status log is gone with it.
    assert!(s.locate(&id).is_none());
    // With a young message the same answer defers instead.
    let id2 = s.enqueue(&env(&["temp@x.test"]), b"body\r\n").unwrap();
    sched(&s, &fake, policy()).run_once().await.unwrap();
    assert_eq!(s.read(&id2).unwrap().queue, "deferred");
}

#[tokio::test]
async fn corrupt_file_is_never_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path()).unwrap();
    let id = spool::QueueId::generate();
    let full = spool::encode(&env(&["a@x.test"]), b"body\r\n");
    std::fs::write(
        dir.path().join("incoming").join(id.as_str()),
        &full[..full.len() - 13],
    )
    .unwrap();
    let fake = Arc::new(Fake::default());
    sched(&s, &fake, policy()).run_once().await.unwrap();
    assert!(fake.calls.lock().unwrap().is_empty());
    assert_eq!(s.locate(&id), Some("corrupt"));
}

#[tokio::test]
async fn corrupt_file_in_deferred_goes_to_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path()).unwrap();
    let id = spool::QueueId::generate();
    let full = spool::encode(&env(&["a@x.test"]), b"body\r\n");
    std::fs::write(
        dir.path().join("deferred").join(id.as_str()),
        &full[..full.len() - 1],
    )
    .unwrap();
    let fake = Arc::new(Fake::default());
    sched(&s, &fake, policy()).run_once().await.unwrap();
    assert!(fake.calls.lock().unwrap().is_empty());
    assert_eq!(s.locate(&id), Some("corrupt"));
}
