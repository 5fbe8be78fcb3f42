//! The IPC helpers over a real Unix socket: serve, dial, stream, reconnect.

use std::time::Duration;

use postern_ipc::queue::v1 as q;
use postern_ipc::{DialOptions, SocketUri, bind_unix, dial, serve};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};

/// A test queue that counts the streamed bytes and answers with a fake id.
struct CountingQueue;

#[tonic::async_trait]
impl q::queue_server::Queue for CountingQueue {
    async fn handshake(
        &self,
        req: Request<q::HandshakeRequest>,
    ) -> Result<Response<q::HandshakeResponse>, Status> {
        postern_ipc::check_queue_version(req.get_ref().version.as_ref())?;
        Ok(Response::new(postern_ipc::queue_handshake_reply("test")))
    }

    async fn enqueue(
        &self,
        req: Request<Streaming<q::EnqueueRequest>>,
    ) -> Result<Response<q::EnqueueResponse>, Status> {
        let mut stream = req.into_inner();
        let mut envelope = None;
        let mut bytes = 0u64;
        while let Some(msg) = stream.message().await? {
            match msg.part {
                Some(q::enqueue_request::Part::Envelope(e)) => envelope = Some(e),
                Some(q::enqueue_request::Part::Chunk(c)) => bytes += c.len() as u64,
                Some(q::enqueue_request::Part::End(end)) => {
                    if end.total_bytes != bytes {
                        return Err(Status::data_loss("byte count mismatch"));
                    }
                    let env = envelope.ok_or_else(|| Status::invalid_argument("no envelope"))?;
                    return Ok(Response::new(q::EnqueueResponse {
                        queue_id: format!("{}:{}:{}", env.sender, env.recipients.len(), bytes),
                    }));
                }
                None => return Err(Status::invalid_argument("empty part")),
            }
        }
        Err(Status::aborted("stream ended without End"))
    }

    async fn list(&self, _: Request<q::ListRequest>) -> Result<Response<q::ListResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn inspect(
        &self,
        _: Request<q::InspectRequest>,
    ) -> Result<Response<q::InspectResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn hold(&self, _: Request<q::QueueIds>) -> Result<Response<q::AdminResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn release(&self, _: Request<q::QueueIds>) -> Result<Response<q::AdminResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn delete(&self, _: Request<q::QueueIds>) -> Result<Response<q::AdminResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
    async fn flush(&self, _: Request<q::QueueIds>) -> Result<Response<q::AdminResponse>, Status> {
        Err(Status::unimplemented("test"))
    }
}

fn start(uri: &SocketUri) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = bind_unix(uri, 0o600).expect("bind");
    let (tx, rx) = oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .add_service(q::queue_server::QueueServer::new(CountingQueue));
    let task = tokio::spawn(async move {
        serve(router, listener, async {
            let _ = rx.await;
        })
        .await
        .expect("serve");
    });
    (tx, task)
}

async fn enqueue(
    client: &mut q::queue_client::QueueClient<tonic::transport::Channel>,
) -> Result<String, Status> {
    let chunks = vec![vec![b'x'; 100_000], vec![b'y'; 23]];
    let total: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    let mut parts = vec![q::EnqueueRequest {
        part: Some(q::enqueue_request::Part::Envelope(q::Envelope {
            sender: "a@example.test".into(),
            recipients: vec![q::Recipient {
                address: "b@example.test".into(),
                ..Default::default()
            }],
            ..Default::default()
        })),
    }];
    parts.extend(chunks.into_iter().map(|c| q::EnqueueRequest {
        part: Some(q::enqueue_request::Part::Chunk(c)),
    }));
    parts.push(q::EnqueueRequest {
        part: Some(q::enqueue_request::Part::End(q::End {
            total_bytes: total,
            ..Default::default()
        })),
    });
    Ok(client
        .enqueue(tokio_stream::iter(parts))
        .await?
        .into_inner()
        .queue_id)
}

#[tokio::test]
async fn round_trip_stream_and_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let uri = SocketUri::from_path(dir.path().join("sub/queue.sock"));
    let opts = DialOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
    };

    // The client is created before the server exists: dialing is lazy.
    let channel = dial(&uri, &opts).unwrap();
    let mut client = q::queue_client::QueueClient::new(channel);
    let err = client
        .handshake(postern_ipc::queue_handshake("test"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");

    let (stop, task) = start(&uri);
    let reply = client
        .handshake(postern_ipc::queue_handshake("test"))
        .await
        .unwrap();
    assert!(postern_ipc::check_queue_version(reply.get_ref().version.as_ref()).is_ok());
    assert_eq!(
        enqueue(&mut client).await.unwrap(),
        "a@example.test:1:100023"
    );

    // Server goes away: calls fail with UNAVAILABLE, not hang.
    stop.send(()).unwrap();
    task.await.unwrap();
    let err = enqueue(&mut client).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");

    // Server comes back on the same path (stale socket removed): the same
    // channel reconnects by itself.
    let (stop, task) = start(&uri);
    let mut ok = None;
    for _ in 0..50 {
        match enqueue(&mut client).await {
            Ok(id) => {
                ok = Some(id);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(ok.as_deref(), Some("a@example.test:1:100023"));
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn wrong_major_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let uri = SocketUri::from_path(dir.path().join("queue.sock"));
    let (stop, task) = start(&uri);
    let mut client =
        q::queue_client::QueueClient::new(dial(&uri, &DialOptions::default()).unwrap());
    let mut req = postern_ipc::queue_handshake("test");
    req.version = Some(q::Version {
        major: 99,
        minor: 0,
    });
    let err = client.handshake(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    stop.send(()).unwrap();
    task.await.unwrap();
}
