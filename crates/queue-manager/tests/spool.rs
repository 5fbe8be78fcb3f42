//! Spool: ids, record format, corruption, recovery, status persistence.

use postern_queue_manager::spool::{
    Envelope, ID_LEN, QueueId, RcptState, RcptStatus, Recipient, Spool, decode, encode,
};

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        arrival_micros: 1_700_000_000_123_456,
        sender: "alice@example.test".into(),
        recipients: rcpts
            .iter()
            .map(|a| Recipient {
                address: a.to_string(),
                notify: 4 | 8,
                orcpt: format!("rfc822;{a}"),
            })
            .collect(),
        body: 1,
        smtputf8: true,
        ret: 2,
        envid: "ENV-1".into(),
        size_hint: 42,
        helo: "client.example".into(),
        client_address: "192.0.2.1".into(),
        client_hostname: "client.example".into(),
        auth_user: "alice".into(),
        origin: "smtpd".into(),
        session_id: "S1".into(),
        hold_reason: String::new(),
    }
}

#[test]
fn ids_sort_by_time_and_have_fixed_length() {
    let a = QueueId::generate();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let b = QueueId::generate();
    let c = QueueId::generate();
    assert_eq!(a.as_str().len(), ID_LEN);
    assert!(a < b && b < c, "{a} {b} {c}");
    assert!(
        a.as_str()
            .bytes()
            .all(|x| x.is_ascii_digit() || x.is_ascii_uppercase())
    );
    assert_eq!(QueueId::parse(a.as_str()).unwrap(), a);
}

#[test]
fn id_validation_refuses_traversal_and_junk() {
    for bad in [
        "",
        "..",
        "../../etc/passwd",
        "0123456789ABCDE/",
        "0123456789ABCD..",
        "0123456789abcdef",
        "0123456789ABCDEFG",
        "0123456789ABCDE",
        "0123456789ABCDEZ",
        "0123456789ABCD\0E",
    ] {
        assert!(QueueId::parse(bad).is_err(), "{bad:?} accepted");
    }
    assert!(QueueId::parse("0123456789ABCDEV").is_ok());
}

#[test]
fn records_round_trip() {
    let env = envelope(&["bob@example.test", "carol@example.test"]);
    let body = vec![b'x'; 3 * 1024 * 1024 + 17]; // several CONTENT chunks
    let data = encode(&env, &body);
    let (e2, c2, total) = decode(&data, true).unwrap();
    assert_eq!(e2, env);
    assert_eq!(c2, body);
    assert_eq!(total, body.len() as u64);
    let (_, empty, _) = decode(&data, false).unwrap();
    assert!(empty.is_empty());
}

#[test]
fn every_truncation_and_missing_end_is_refused() {
    let data = encode(
        &envelope(&["bob@example.test"]),
        b"Subject: hi\r\n\r\nbody\r\n",
    );
    for cut in 0..data.len() {
        assert!(
            decode(&data[..cut], false).is_err(),
            "truncated at {cut} accepted"
        );
    }
    // Trailing garbage after END.
    let mut more = data.clone();
    more.push(b'C');
    assert!(decode(&more, false).is_err());
    // END with a wrong total.
    let mut wrong = data.clone();
    let n = wrong.len();
    wrong[n - 1] ^= 1;
    assert!(decode(&wrong, false).is_err());
}

#[test]
fn enqueue_is_in_incoming_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path()).unwrap();
    let id = s
        .enqueue(&envelope(&["bob@example.test"]), b"hello\r\n")
        .unwrap();
    assert_eq!(s.locate(&id), Some("incoming"));
    assert!(dir.path().join("incoming").join(id.as_str()).is_file());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    let m = s.read(&id).unwrap();
    assert_eq!(m.envelope.sender, "alice@example.test");
    assert_eq!(m.size, 7);
    assert_eq!(s.read_content(&id).unwrap(), b"hello\r\n");
    assert_eq!(m.status[0].state, RcptState::Pending);
}

#[test]
fn recovery_moves_corrupt_files_and_removes_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path()).unwrap();
    let good = s
        .enqueue(&envelope(&["bob@example.test"]), b"ok\r\n")
        .unwrap();
    let active = s
        .enqueue(&envelope(&["bob@example.test"]), b"ok\r\n")
        .unwrap();
    s.move_to(&active, "incoming", "active").unwrap();
    // A truncated file (crash mid-write that somehow got renamed).
    let trunc = QueueId::generate();
    let full = encode(&envelope(&["bob@example.test"]), b"body\r\n");
    std::fs::write(
        dir.path().join("incoming").join(trunc.as_str()),
        &full[..full.len() - 3],
    )
    .unwrap();
    // A file without END at all.
    let noend = QueueId::generate();
    std::fs::write(
        dir.path().join("active").join(noend.as_str()),
        b"PSTQV\0\0\0\x01\x01",
    )
    .unwrap();
    // tmp leftover.
    std::fs::write(dir.path().join("tmp").join("0000000000000000"), b"partial").unwrap();

    let ready = s.recover().unwrap();
    assert_eq!(ready, vec![good.clone(), active.clone()]);
    assert_eq!(s.locate(&trunc), Some("corrupt"));
    assert_eq!(s.locate(&noend), Some("corrupt"));
    assert_eq!(s.locate(&active), Some("incoming"));
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn status_persists_across_reopen_and_torn_line_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let s = Spool::open(dir.path()).unwrap();
        let id = s
            .enqueue(&envelope(&["a@x.test", "b@x.test"]), b"m\r\n")
            .unwrap();
        s.record_status(
            &id,
            &[(
                0,
                RcptStatus {
                    state: RcptState::Delivered,
                    attempts: 1,
                    next_attempt_unix: 0,
                    last_reply: "250 2.0.0 ok".into(),
                },
            )],
        )
        .unwrap();
        id
    };
    // A torn append after a crash.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("status").join(id.as_str()))
        .unwrap();
    f.write_all(b"1 delivered 1 0 250 o").unwrap();
    let s = Spool::open(dir.path()).unwrap();
    let m = s.read(&id).unwrap();
    assert_eq!(m.status[0].state, RcptState::Delivered);
    assert_eq!(m.status[0].last_reply, "250 2.0.0 ok");
    assert_eq!(m.status[1].state, RcptState::Pending);
    s.delete(&id).unwrap();
    assert!(s.locate(&id).is_none());
    assert!(!dir.path().join("status").join(id.as_str()).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_answers_every_concurrent_enqueue() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(dir.path()).unwrap();
    let c = postern_queue_manager::spool::Committer::start(s.clone());
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.enqueue(
                    envelope(&["bob@example.test"]),
                    format!("m{i}\r\n").into_bytes(),
                )
                .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    assert_eq!(s.list("incoming").unwrap(), ids);
    for id in &ids {
        assert!(s.read_content(id).unwrap().starts_with(b"m"));
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}
