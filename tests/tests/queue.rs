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
            })),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() {
    let env = TestEnv::new();
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
