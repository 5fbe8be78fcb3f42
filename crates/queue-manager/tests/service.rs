//! The gRPC service over a real Unix socket.

use std::sync::Arc;
use std::time::Duration;

use pb::enqueue_request::Part;
use postern_ipc::queue::v1 as pb;
use postern_ipc::{DialOptions, SocketUri, bind_unix, dial, serve};
use postern_queue_manager::QueueService;
use postern_queue_manager::spool::{QueueId, Spool};
use tonic::Code;

struct Env {
    dir: tempfile::TempDir,
    spool: Spool,
    private: pb::queue_client::QueueClient<tonic::transport::Channel>,
    public: pb::queue_client::QueueClient<tonic::transport::Channel>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(limit: u64) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path().join("spool")).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = futures::future::FutureExt::shared(async move {
        let _ = rx.await;
    });
    let mut clients = Vec::new();
    for (name, public) in [("private.sock", false), ("public.sock", true)] {
        let uri = SocketUri::from_path(dir.path().join(name));
        let l = bind_unix(&uri, 0o600).unwrap();
        let svc = QueueService {
            spool: spool.clone(),
            public,
            message_size_limit: limit,
            wake: Arc::new(tokio::sync::Notify::new()),
            committer: postern_queue_manager::spool::Committer::start(spool.clone()),
        };
        let router = tonic::transport::Server::builder()
            .add_service(pb::queue_server::QueueServer::new(svc));
        tokio::spawn(serve(router, l, rx.clone()));
        clients.push(pb::queue_client::QueueClient::new(
            dial(&uri, &DialOptions::default()).unwrap(),
        ));
    }
    let public = clients.pop().unwrap();
    let private = clients.pop().unwrap();
    Env {
        dir,
        spool,
        private,
        public,
        _stop: tx,
    }
}

fn envelope(rcpts: &[&str]) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        part: Some(Part::Envelope(pb::Envelope {
            sender: "alice@example.test".into(),
            recipients: rcpts
                .iter()
                .map(|a| pb::Recipient {
                    address: a.to_string(),
                    notify_failure: true,
                    ..Default::default()
                })
                .collect(),
            origin: "test".into(),
            ..Default::default()
        })),
    }
}

fn chunk(b: &[u8]) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        part: Some(Part::Chunk(b.to_vec())),
    }
}

fn end(n: u64) -> pb::EnqueueRequest {
    pb::EnqueueRequest {
        part: Some(Part::End(pb::End {
            total_bytes: n,
            ..Default::default()
        })),
    }
}

async fn enqueue(
    c: &mut pb::queue_client::QueueClient<tonic::transport::Channel>,
    parts: Vec<pb::EnqueueRequest>,
) -> Result<String, tonic::Status> {
    c.enqueue(tokio_stream::iter(parts))
        .await
        .map(|r| r.into_inner().queue_id)
}

fn files(env: &Env, q: &str) -> usize {
    std::fs::read_dir(env.dir.path().join("spool").join(q))
        .unwrap()
        .count()
}

#[tokio::test]
async fn enqueue_returns_id_of_a_complete_file_in_incoming() {
    let mut e = start(1_000_000).await;
    let id = enqueue(
        &mut e.private,
        vec![
            envelope(&["bob@example.test"]),
            chunk(b"Subject: x\r\n\r\n"),
            chunk(b"hi\r\n"),
            end(18),
        ],
    )
    .await
    .unwrap();
    let qid = QueueId::parse(&id).unwrap();
    let path = e.dir.path().join("spool/incoming").join(&id);
    let raw = std::fs::read(&path).unwrap();
    postern_queue_manager::spool::decode(&raw, false).expect("valid file with END");
    assert_eq!(
        e.spool.read_content(&qid).unwrap(),
        b"Subject: x\r\n\r\nhi\r\n"
    );
    // Also over the public socket (sendmail).
    let id2 = enqueue(
        &mut e.public,
        vec![envelope(&["bob@example.test"]), chunk(b"a\r\n"), end(3)],
    )
    .await
    .unwrap();
    assert!(id2 > id);
    assert_eq!(files(&e, "incoming"), 2);
}

#[tokio::test]
async fn oversize_and_bad_streams_leave_no_file() {
    let mut e = start(10).await;
    let err = enqueue(
        &mut e.private,
        vec![
            envelope(&["b@x.test"]),
            chunk(b"123456"),
            chunk(b"789012"),
            end(12),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    // Stream that ends without End.
    let err = enqueue(&mut e.private, vec![envelope(&["b@x.test"]), chunk(b"abc")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // Wrong total.
    let err = enqueue(
        &mut e.private,
        vec![envelope(&["b@x.test"]), chunk(b"abc"), end(4)],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Chunk before envelope.
    let err = enqueue(&mut e.private, vec![chunk(b"abc"), end(3)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // A client that goes away mid-stream.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(envelope(&["b@x.test"])).await.unwrap();
    tx.send(chunk(b"abc")).await.unwrap();
    let mut c = e.private.clone();
    let call = tokio::spawn(async move {
        c.enqueue(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    call.abort();
    drop(tx);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for q in ["tmp", "incoming", "active", "deferred", "hold", "corrupt"] {
        assert_eq!(files(&e, q), 0, "{q} not empty");
    }
}

#[tokio::test]
async fn admin_calls_work_on_private_and_are_refused_on_public() {
    let mut e = start(1_000_000).await;
    let id = enqueue(
        &mut e.private,
        vec![envelope(&["a@x.test", "b@x.test"]), chunk(b"m\r\n"), end(3)],
    )
    .await
    .unwrap();
    let ids = |v: &[&str]| pb::QueueIds {
        queue_ids: v.iter().map(|s| s.to_string()).collect(),
    };
    let unknown = "0000000000000000";

    let list = e
        .private
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.entries.len(), 1);
    let en = &list.entries[0];
    assert_eq!(
        (en.queue_id.as_str(), en.queue.as_str(), en.size),
        (id.as_str(), "incoming", 3)
    );
    assert_eq!(en.recipients[1].address, "b@x.test");
    assert_eq!(en.recipients[1].status, "pending");

    let r = e
        .private
        .hold(ids(&[&id, unknown]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.affected, r.not_found), (1, vec![unknown.to_string()]));
    let held = e
        .private
        .list(pb::ListRequest {
            queues: vec!["hold".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.entries.len(), 1);

    let r = e.private.release(ids(&[&id])).await.unwrap().into_inner();
    assert_eq!(r.affected, 1);
    assert_eq!(
        e.spool.locate(&QueueId::parse(&id).unwrap()),
        Some("deferred")
    );
    let r = e.private.flush(ids(&[])).await.unwrap().into_inner();
    assert_eq!(r.affected, 1);

    let ins = e
        .private
        .inspect(pb::InspectRequest {
            queue_id: id.clone(),
            with_body: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ins.message, b"m\r\n");
    assert_eq!(ins.entry.unwrap().sender, "alice@example.test");

    // Traversal attempts are refused before touching the file system.
    let err = e
        .private
        .inspect(pb::InspectRequest {
            queue_id: "../../etc/passwd".into(),
            with_body: true,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = e.private.delete(ids(&["../incoming/x"])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = e
        .private
        .inspect(pb::InspectRequest {
            queue_id: unknown.into(),
            with_body: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Public socket: administration refused.
    assert_eq!(
        e.public
            .list(pb::ListRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        e.public.delete(ids(&[&id])).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        e.public.hold(ids(&[&id])).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        e.public.flush(ids(&[])).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert!(e.spool.locate(&QueueId::parse(&id).unwrap()).is_some());

    let r = e.private.delete(ids(&[&id])).await.unwrap().into_inner();
    assert_eq!(r.affected, 1);
    assert!(
        e.private
            .list(pb::ListRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries
            .is_empty()
    );
}

/// End's check fields (what smtpd's pipeline decided): the held message is
/// in hold/ at once with its reason listed, carries the prepended headers
/// and the archive recipient; the public socket may not set them.
#[tokio::test]
async fn end_with_check_decisions_lands_in_hold_with_its_reason() {
    let mut e = start(1_000_000).await;
    let body = b"Subject: x\r\n\r\nhi\r\n";
    let decided = |n: u64| pb::EnqueueRequest {
        part: Some(Part::End(pb::End {
            total_bytes: n,
            prepend: b"X-Postern-Audit: secret\r\n".to_vec(),
            hold_reason: "audit: rule secret matched in body".into(),
            archive_to: vec!["audit@example.test".into()],
            ..Default::default()
        })),
    };
    let id = enqueue(
        &mut e.private,
        vec![envelope(&["bob@example.test"]), chunk(body), decided(18)],
    )
    .await
    .unwrap();
    let qid = QueueId::parse(&id).unwrap();
    assert_eq!(e.spool.locate(&qid), Some("hold"));
    assert_eq!(files(&e, "incoming"), 0);
    assert_eq!(
        e.spool.read_content(&qid).unwrap(),
        b"X-Postern-Audit: secret\r\nSubject: x\r\n\r\nhi\r\n"
    );
    let list = e
        .private
        .list(pb::ListRequest {
            queues: vec!["hold".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.entries.len(), 1);
    let en = &list.entries[0];
    assert_eq!(en.hold_reason, "audit: rule secret matched in body");
    let rcpts: Vec<_> = en.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(rcpts, ["bob@example.test", "audit@example.test"]);
    // The size is what is stored (with the prepended header).
    assert_eq!(en.size, 18 + 25);

    // Release: deferred and due now; the reason stays as history.
    let ids = pb::QueueIds {
        queue_ids: vec![id.clone()],
    };
    assert_eq!(
        e.private.release(ids).await.unwrap().into_inner().affected,
        1
    );
    assert_eq!(e.spool.locate(&qid), Some("deferred"));
    let ins = e
        .private
        .inspect(pb::InspectRequest {
            queue_id: id.clone(),
            with_body: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ins.entry.unwrap().hold_reason,
        "audit: rule secret matched in body"
    );

    // Not on the public (sendmail) socket; nothing is stored.
    let err = enqueue(
        &mut e.public,
        vec![envelope(&["bob@example.test"]), chunk(body), decided(18)],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // A malformed prepend is refused and leaves nothing behind.
    let err = enqueue(
        &mut e.private,
        vec![
            envelope(&["bob@example.test"]),
            chunk(body),
            pb::EnqueueRequest {
                part: Some(Part::End(pb::End {
                    total_bytes: 18,
                    prepend: b"X-A: 1\r\n\r\nsmuggled body\r\n".to_vec(),
                    ..Default::default()
                })),
            },
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        files(&e, "incoming") + files(&e, "hold") + files(&e, "tmp"),
        0
    );
}
