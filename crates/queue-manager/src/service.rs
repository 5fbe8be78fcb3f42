//! The `postern.queue.v1` gRPC service over the spool.

use std::sync::Arc;

use postern_ipc::queue::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

use crate::spool::{self, Envelope, QUEUES, QueueId, RcptStatus, Recipient, Spool, SpoolError};

/// The gRPC service. `public` = served on the public (sendmail) socket:
/// administration calls (List, Inspect, Hold, Release, Delete, Flush) are
/// refused there with PERMISSION_DENIED; only Handshake and Enqueue work.
#[derive(Clone)]
pub struct QueueService {
    pub spool: Spool,
    pub public: bool,
    /// Largest message accepted (`global.message_size_limit`), bytes.
    pub message_size_limit: u64,
    /// Wakes the scheduler after an enqueue or a flush.
    pub wake: Arc<tokio::sync::Notify>,
    /// The group-commit writer for Enqueue.
    pub committer: spool::Committer,
}

fn status_of(e: SpoolError) -> Status {
    match e {
        SpoolError::BadId(_) => Status::invalid_argument(e.to_string()),
        SpoolError::NotFound(_) => Status::not_found(e.to_string()),
        SpoolError::Corrupt { .. } => Status::data_loss(e.to_string()),
        SpoolError::Io(ref io) if storage_full(io) => {
            tracing::error!(error = %e, "spool full");
            Status::resource_exhausted(postern_ipc::queue::INSUFFICIENT_STORAGE)
        }
        SpoolError::Io(_) => {
            tracing::error!(error = %e, "spool error");
            Status::internal("spool I/O error")
        }
    }
}

/// ENOSPC or EDQUOT: the spool's file system (or the queue owner's quota)
/// is full; the client should try again later.
fn storage_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28 | 122))
}

async fn blocking<T: Send + 'static>(
    spool: &Spool,
    f: impl FnOnce(&Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, Status> {
    let s = spool.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|_| Status::internal("spool task failed"))?
        .map_err(status_of)
}

fn envelope_from(e: pb::Envelope) -> Envelope {
    Envelope {
        arrival_micros: spool::now_micros(),
        sender: e.sender,
        recipients: e
            .recipients
            .into_iter()
            .map(|r| Recipient {
                notify: (r.notify_never as u8)
                    | (r.notify_success as u8) << 1
                    | (r.notify_failure as u8) << 2
                    | (r.notify_delay as u8) << 3,
                address: r.address,
                orcpt: r.orcpt,
            })
            .collect(),
        body: e.body.clamp(0, 2) as u8,
        smtputf8: e.smtputf8,
        ret: e.ret.clamp(0, 2) as u8,
        envid: e.envid,
        size_hint: e.size_hint,
        helo: e.client_helo,
        client_address: e.client_address,
        client_hostname: e.client_hostname,
        auth_user: e.auth_user,
        origin: e.origin,
        session_id: e.session_id,
    }
}

fn entry(m: &spool::Message) -> pb::QueueEntry {
    pb::QueueEntry {
        queue_id: m.id.to_string(),
        queue: m.queue.to_string(),
        size: m.size,
        arrival_unix: m.envelope.arrival_micros / 1_000_000,
        sender: m.envelope.sender.clone(),
        recipients: m
            .envelope
            .recipients
            .iter()
            .zip(&m.status)
            .map(|(r, s)| pb::RecipientStatus {
                address: r.address.clone(),
                status: s.state.as_str().to_string(),
                last_reply: s.last_reply.clone(),
                next_attempt_unix: s.next_attempt_unix,
            })
            .collect(),
    }
}

/// The stored envelope as the protocol's (for Inspect).
fn envelope_to(e: &Envelope) -> pb::Envelope {
    pb::Envelope {
        sender: e.sender.clone(),
        recipients: e
            .recipients
            .iter()
            .map(|r| pb::Recipient {
                address: r.address.clone(),
                notify_never: r.notify & 1 != 0,
                notify_success: r.notify & 2 != 0,
                notify_failure: r.notify & 4 != 0,
                notify_delay: r.notify & 8 != 0,
                orcpt: r.orcpt.clone(),
            })
            .collect(),
        body: i32::from(e.body),
        smtputf8: e.smtputf8,
        ret: i32::from(e.ret),
        envid: e.envid.clone(),
        size_hint: e.size_hint,
        client_helo: e.helo.clone(),
        client_address: e.client_address.clone(),
        client_hostname: e.client_hostname.clone(),
        auth_user: e.auth_user.clone(),
        origin: e.origin.clone(),
        session_id: e.session_id.clone(),
    }
}

/// Validate every id first; unknown-format ids are refused as a whole.
fn parse_ids(ids: &[String]) -> Result<Vec<QueueId>, Status> {
    ids.iter()
        .map(|s| QueueId::parse(s).map_err(status_of))
        .collect()
}

impl QueueService {
    fn admin(&self) -> Result<(), Status> {
        if self.public {
            Err(Status::permission_denied(
                "administration calls are not served on the public socket",
            ))
        } else {
            Ok(())
        }
    }

    /// Apply `op` to each id; returns (affected, not_found).
    async fn each(
        &self,
        ids: Vec<String>,
        op: fn(&Spool, &QueueId) -> Result<bool, SpoolError>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        self.admin()?;
        let ids = parse_ids(&ids)?;
        let (affected, not_found) = blocking(&self.spool, move |s| {
            let mut affected = 0;
            let mut not_found = Vec::new();
            for id in ids {
                match op(s, &id) {
                    Ok(true) => affected += 1,
                    Ok(false) => {}
                    Err(SpoolError::NotFound(_)) => not_found.push(id.to_string()),
                    Err(e) => return Err(e),
                }
            }
            Ok((affected, not_found))
        })
        .await?;
        self.wake.notify_one();
        Ok(Response::new(pb::AdminResponse {
            affected,
            not_found,
        }))
    }
}

fn locate(s: &Spool, id: &QueueId) -> Result<&'static str, SpoolError> {
    s.locate(id)
        .ok_or_else(|| SpoolError::NotFound(id.to_string()))
}

fn op_hold(s: &Spool, id: &QueueId) -> Result<bool, SpoolError> {
    match locate(s, id)? {
        q @ ("incoming" | "deferred") => s.move_to(id, q, "hold").map(|_| true),
        // active: being delivered right now; corrupt/hold: nothing to do.
        _ => Ok(false),
    }
}

fn op_release(s: &Spool, id: &QueueId) -> Result<bool, SpoolError> {
    match locate(s, id)? {
        "hold" => s.move_to(id, "hold", "deferred").map(|_| true),
        _ => Ok(false),
    }
}

fn op_delete(s: &Spool, id: &QueueId) -> Result<bool, SpoolError> {
    // A message in active/ is being delivered right now: not deleted under
    // the scheduler's feet (retry once it is deferred).
    if locate(s, id)? == "active" {
        return Ok(false);
    }
    s.delete(id).map(|_| true)
}

fn op_flush(s: &Spool, id: &QueueId) -> Result<bool, SpoolError> {
    if locate(s, id)? != "deferred" {
        return Ok(false);
    }
    let m = s.read(id)?;
    let updates: Vec<(usize, RcptStatus)> = m
        .status
        .iter()
        .enumerate()
        .filter(|(_, st)| !st.state.is_final())
        .map(|(i, st)| {
            (
                i,
                RcptStatus {
                    next_attempt_unix: 0,
                    ..st.clone()
                },
            )
        })
        .collect();
    s.record_status(id, &updates)?;
    Ok(true)
}

#[tonic::async_trait]
impl pb::queue_server::Queue for QueueService {
    async fn handshake(
        &self,
        req: Request<pb::HandshakeRequest>,
    ) -> Result<Response<pb::HandshakeResponse>, Status> {
        postern_ipc::check_queue_version(req.get_ref().version.as_ref())?;
        Ok(Response::new(postern_ipc::queue_handshake_reply(concat!(
            "postern-queue-manager/",
            env!("CARGO_PKG_VERSION")
        ))))
    }

    /// The message is buffered in memory (bounded by `message_size_limit`)
    /// and written only once End arrived, so an aborted stream never leaves
    /// a file behind.
    async fn enqueue(
        &self,
        req: Request<Streaming<pb::EnqueueRequest>>,
    ) -> Result<Response<pb::EnqueueResponse>, Status> {
        use pb::enqueue_request::Part;
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty Enqueue stream"))?;
        let Some(Part::Envelope(env)) = first.part else {
            return Err(Status::invalid_argument(
                "Enqueue must start with an Envelope",
            ));
        };
        if env.recipients.is_empty() {
            return Err(Status::invalid_argument("no recipients"));
        }
        if env.size_hint > self.message_size_limit && self.message_size_limit > 0 {
            return Err(Status::resource_exhausted(
                "message size exceeds fixed limit",
            ));
        }
        let envelope = envelope_from(env);
        let mut content = Vec::new();
        loop {
            let msg = stream.message().await?.ok_or_else(|| {
                Status::invalid_argument("Enqueue stream ended without End: message discarded")
            })?;
            match msg.part {
                Some(Part::Chunk(c)) => {
                    if self.message_size_limit > 0
                        && (content.len() + c.len()) as u64 > self.message_size_limit
                    {
                        return Err(Status::resource_exhausted(
                            "message size exceeds fixed limit",
                        ));
                    }
                    content.extend_from_slice(&c);
                }
                Some(Part::End(end)) => {
                    if end.total_bytes != content.len() as u64 {
                        return Err(Status::invalid_argument(format!(
                            "End.total_bytes {} but {} bytes received",
                            end.total_bytes,
                            content.len()
                        )));
                    }
                    break;
                }
                Some(Part::Envelope(_)) => {
                    return Err(Status::invalid_argument(
                        "second Envelope in Enqueue stream",
                    ));
                }
                None => return Err(Status::invalid_argument("empty Enqueue message")),
            }
        }
        let nrcpt = envelope.recipients.len();
        let from = envelope.sender.clone();
        let id = self
            .committer
            .enqueue(envelope, content)
            .await
            .map_err(status_of)?;
        tracing::info!(queue_id = %id, from = %from, nrcpt, public = self.public, "queued");
        self.wake.notify_one();
        postern_common::metrics::message_enqueued(if self.public { "public" } else { "private" });
        Ok(Response::new(pb::EnqueueResponse {
            queue_id: id.to_string(),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        self.admin()?;
        let mut queues = Vec::new();
        for q in &req.get_ref().queues {
            let known = QUEUES
                .into_iter()
                .find(|k| k == q)
                .ok_or_else(|| Status::invalid_argument(format!("unknown queue {q:?}")))?;
            queues.push(known);
        }
        if queues.is_empty() {
            queues = QUEUES.to_vec();
        }
        let entries = blocking(&self.spool, move |s| {
            let mut out = Vec::new();
            for q in queues {
                for id in s.list(q)? {
                    match s.read(&id) {
                        Ok(m) => out.push(entry(&m)),
                        // Moved or removed meanwhile.
                        Err(SpoolError::NotFound(_)) => {}
                        Err(SpoolError::Corrupt { .. }) => out.push(pb::QueueEntry {
                            queue_id: id.to_string(),
                            queue: q.to_string(),
                            ..Default::default()
                        }),
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(out)
        })
        .await?;
        Ok(Response::new(pb::ListResponse { entries }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        self.admin()?;
        let req = req.into_inner();
        let id = QueueId::parse(&req.queue_id).map_err(status_of)?;
        let (m, body) = blocking(&self.spool, move |s| {
            let m = s.read(&id)?;
            let body = if req.with_body {
                s.read_content(&id)?
            } else {
                Vec::new()
            };
            Ok((m, body))
        })
        .await?;
        Ok(Response::new(pb::InspectResponse {
            entry: Some(entry(&m)),
            message: body,
            envelope: Some(envelope_to(&m.envelope)),
        }))
    }

    async fn hold(
        &self,
        req: Request<pb::QueueIds>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        self.each(req.into_inner().queue_ids, op_hold).await
    }

    async fn release(
        &self,
        req: Request<pb::QueueIds>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        self.each(req.into_inner().queue_ids, op_release).await
    }

    async fn delete(
        &self,
        req: Request<pb::QueueIds>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        self.each(req.into_inner().queue_ids, op_delete).await
    }

    async fn flush(
        &self,
        req: Request<pb::QueueIds>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        self.admin()?;
        let mut ids = req.into_inner().queue_ids;
        if ids.is_empty() {
            let all = blocking(&self.spool, |s| s.list("deferred")).await?;
            ids = all.into_iter().map(|i| i.to_string()).collect();
        }
        self.each(ids, op_flush).await
    }
}
