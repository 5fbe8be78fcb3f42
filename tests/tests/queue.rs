//! queue-manager black box: messages acknowledged by Enqueue survive a
//! `kill -9` of the daemon in the middle of concurrent enqueues.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use postern_ipc::queue::v1 as pb;
use postern_ipc::{DialOptions, SocketUri, dial};
use postern_tests::{Daemon, TestEnv};
use tonic::codegen::tokio_stream;

fn client(env: &TestEnv) -> pb::queue_client::QueueClient<tonic::transport::Channel> {
    let uri = SocketUri::from_path(env.socket("private/queue.sock"));
    pb::queue_client::QueueClient::new(dial(&uri, &DialOptions::default()).unwrap())
}

fn message(n: usize) -> Vec<pb::EnqueueRequest> {
    use pb::enqueue_request::Part;
    let body = format!("Subject: test {n}\r\n\r\n{}\r\n", "x".repeat(2000 + n));
    vec![
        pb::EnqueueRequest {
            part: Some(Part::Envelope(pb::Envelope {
                sender: "alice@example.test".into(),
                recipients: vec![pb::Recipient {
                    address: format!("user{n}@example.test"),
                    ..Default::default()
                }],
                origin: "test".into(),
                ..Default::default()
            })),
        },
        pb::EnqueueRequest {
            part: Some(Part::Chunk(body.clone().into_bytes())),
        },
        pb::EnqueueRequest {
            part: Some(Part::End(pb::End {
                total_bytes: body.len() as u64,
                ..Default::default()
            })),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() {
    let env = TestEnv::new();
    // No delivery: the messages must still be in incoming/ after the restart.
    let mut text = env.config_text("level = \"info\"");
    text.push_str("\n[queue]\ndelivery_transport = \"none\"\n");
    std::fs::write(&env.config_path, text).unwrap();
    let d = Daemon::start(&env, "queue-manager");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let mut c = client(&env);
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                match c
                    .enqueue(tokio_stream::iter(message(w * 100_000 + i)))
                    .await
                {
                    Ok(r) => acked.lock().unwrap().push(r.into_inner().queue_id),
                    Err(_) => return,
                }
            }
        }));
    }
    // Let some messages through, then kill -9 mid-stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 20 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.signal(Signal::SIGKILL);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    drop(d);
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 20,
        "only {} messages acknowledged",
        acked.len()
    );

    let d = Daemon::start(&env, "queue-manager");
    let list = client(&env)
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    for id in &acked {
        let e = list
            .entries
            .iter()
            .find(|e| &e.queue_id == id)
            .unwrap_or_else(|| panic!("acknowledged {id} lost\n{}", d.output()));
        assert_eq!(e.queue, "incoming", "{id}");
        assert_eq!(e.recipients.len(), 1);
    }
    assert!(
        list.entries.iter().all(|e| e.queue != "corrupt"),
        "corrupt entries after kill -9"
    );
    // Nothing half-written is left for delivery either.
    let spool = env.path().join("lib/spool");
    assert_eq!(std::fs::read_dir(spool.join("tmp")).unwrap().count(), 0);
    // Unacknowledged-but-complete messages may exist (the kill came after the
    // rename, before the reply); every one is valid.
    assert!(list.entries.len() >= acked.len());
}

/// A scripted LMTP server: `temp@` gets 451 while `fail_temp` is set, every
/// other recipient 250. Records every RCPT address it accepted for delivery.
fn lmtp_server(
    path: &std::path::Path,
    fail_temp: Arc<std::sync::atomic::AtomicBool>,
) -> Arc<Mutex<Vec<String>>> {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::Ordering;
    let l = std::os::unix::net::UnixListener::bind(path).unwrap();
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let log = delivered.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let mut rcpts = Vec::new();
            let _ = w.write_all(b"220 lmtp.test ready\r\n");
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end().to_string();
                let reply = if line.starts_with("LHLO") {
                    "250-lmtp.test\r\n250 8BITMIME\r\n".to_string()
                } else if line.starts_with("MAIL") {
                    "250 2.1.0 ok\r\n".to_string()
                } else if let Some(a) = line.strip_prefix("RCPT TO:<") {
                    rcpts.push(a.trim_end_matches('>').to_string());
                    "250 2.1.5 ok\r\n".to_string()
                } else if line == "DATA" {
                    let _ = w.write_all(b"354 go\r\n");
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                            break;
                        }
                    }
                    let mut out = String::new();
                    for a in rcpts.drain(..) {
                        if a.starts_with("temp@") && fail_temp.load(Ordering::SeqCst) {
                            out.push_str("451-4.3.0 try\r\n451 4.3.0 later\r\n");
                        } else {
                            log.lock().unwrap().push(a);
                            out.push_str("250 2.0.0 delivered\r\n");
                        }
                    }
                    out
                } else if line == "QUIT" {
                    let _ = w.write_all(b"221 bye\r\n");
                    break;
                } else {
                    "500 5.5.1 what\r\n".to_string()
                };
                let _ = w.write_all(reply.as_bytes());
            }
        }
    });
    delivered
}

async fn list(env: &TestEnv) -> Vec<pb::QueueEntry> {
    client(env)
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lmtp_delivery_defers_retries_and_never_redelivers_after_kill_9() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let env = TestEnv::new();
    let sock = env.path().join("lmtp-test.sock");
    let mut text = env.config_text("level = \"info\"");
    text.push_str(&format!(
        "\n[queue]\ndelivery_transport = \"lmtp\"\nqueue_run_delay = \"1h\"\n\n[lmtp]\nsocket = \"unix:{}\"\n",
        sock.display()
    ));
    std::fs::write(&env.config_path, text).unwrap();
    let fail_temp = Arc::new(AtomicBool::new(true));
    let delivered = lmtp_server(&sock, fail_temp.clone());

    let d = Daemon::start(&env, "queue-manager");
    let mut m = message(1);
    if let Some(pb::enqueue_request::Part::Envelope(e)) = &mut m[0].part {
        e.recipients = vec![
            pb::Recipient {
                address: "ok@example.test".into(),
                ..Default::default()
            },
            pb::Recipient {
                address: "temp@example.test".into(),
                ..Default::default()
            },
        ];
    }
    let id = client(&env)
        .enqueue(tokio_stream::iter(m))
        .await
        .unwrap()
        .into_inner()
        .queue_id;
    // The enqueue wakes the scheduler: ok@ delivered, temp@ deferred.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let entry = loop {
        let l = list(&env).await;
        if let Some(e) = l.iter().find(|e| e.queue_id == id && e.queue == "deferred") {
            break e.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not deferred: {l:?}\n{}",
            d.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(entry.recipients[0].status, "delivered");
    assert_eq!(entry.recipients[1].status, "deferred");
    assert_eq!(entry.recipients[1].last_reply, "451 4.3.0 try 4.3.0 later");
    assert!(entry.recipients[1].next_attempt_unix > 0);
    assert_eq!(
        *delivered.lock().unwrap(),
        vec!["ok@example.test".to_string()]
    );

    // kill -9 and restart: ok@ is not delivered again.
    d.signal(Signal::SIGKILL);
    drop(d);
    fail_temp.store(false, Ordering::SeqCst);
    let d = Daemon::start(&env, "queue-manager");
    let r = client(&env)
        .flush(pb::QueueIds {
            queue_ids: vec![id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.affected, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while list(&env).await.iter().any(|e| e.queue_id == id) {
        assert!(
            std::time::Instant::now() < deadline,
            "not removed\n{}",
            d.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        *delivered.lock().unwrap(),
        vec![
            "ok@example.test".to_string(),
            "temp@example.test".to_string()
        ]
    );
}
