//! The `postern.queue.v1` gRPC service over the spool.

use std::sync::Arc;

use postern_ipc::queue::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

use crate::spool::{
    self, Envelope, Landing, QUEUES, QueueId, RcptStatus, Recipient, Spool, SpoolError,
};

/// Bound on `End.prepend` (header lines from smtpd's checks), bytes: a
/// few `Authentication-Results`/`X-*` fields; not counted in
/// `message_size_limit`.
pub const MAX_PREPEND: usize = 64 * 1024;
/// Bound on `End.redirect_to` and on `End.archive_to`, addresses each.
pub const MAX_END_RECIPIENTS: usize = 100;
/// Bound on one address of `redirect_to`/`archive_to`, octets (RFC 5321
/// 4.5.3.1.3: a path is at most 256 octets including the brackets).
const MAX_ADDRESS: usize = 254;
/// NOTIFY=NEVER: an archive copy that fails never bounces to the sender
/// (who must not learn about the audit mailbox).
const NOTIFY_NEVER: u8 = 1;

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
        hold_reason: String::new(),
    }
}

/// `prepend` must be complete header fields: `Name: value` lines with
/// CRLF ends, continuation lines starting with a space or tab, no NUL and
/// no bare CR or LF, so it cannot end the header section or smuggle a body.
fn check_prepend(p: &[u8]) -> Result<(), &'static str> {
    if p.is_empty() {
        return Ok(());
    }
    if p.len() > MAX_PREPEND {
        return Err("End.prepend too long");
    }
    let Some(body) = p.strip_suffix(b"\r\n") else {
        return Err("End.prepend must end with CRLF");
    };
    let mut first = true;
    let mut rest = body;
    loop {
        let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        if line.is_empty() || line.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
            return Err("End.prepend has an empty line, a bare CR or LF, or a NUL");
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if first {
                return Err("End.prepend starts with a continuation line");
            }
        } else {
            let colon = line.iter().position(|&b| b == b':');
            match colon {
                Some(c) if c > 0 && line[..c].iter().all(|&b| (33..=126).contains(&b)) => {}
                _ => return Err("End.prepend has a line that is not a header field"),
            }
        }
        first = false;
        match next {
            Some(n) => rest = n,
            None => return Ok(()),
        }
    }
}

/// An address of `redirect_to`/`archive_to`: bounded, no spaces, controls or
/// angle brackets (it is written into LMTP/SMTP commands).
fn check_address(a: &str) -> Result<(), String> {
    if a.is_empty()
        || a.len() > MAX_ADDRESS
        || a.chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
    {
        return Err(format!(
            "bad address in End: {:?}",
            a.chars().take(64).collect::<String>()
        ));
    }
    Ok(())
}

/// Apply what smtpd's check pipeline decided (`End`'s optional fields) to a
/// message about to be stored: headers put in front of the content, the
/// recipients replaced (redirect) and extended (archive copies), and where
/// it lands (`hold/` with a reason). Refuses malformed values as a whole.
pub fn apply_end(
    end: &pb::End,
    envelope: &mut Envelope,
    content: &mut Vec<u8>,
) -> Result<Landing, Status> {
    check_prepend(&end.prepend).map_err(Status::invalid_argument)?;
    if end.redirect_to.len() > MAX_END_RECIPIENTS || end.archive_to.len() > MAX_END_RECIPIENTS {
        return Err(Status::invalid_argument("too many End recipients"));
    }
    for a in end.redirect_to.iter().chain(&end.archive_to) {
        check_address(a).map_err(Status::invalid_argument)?;
    }
    if !end.prepend.is_empty() {
        let mut v = Vec::with_capacity(end.prepend.len() + content.len());
        v.extend_from_slice(&end.prepend);
        v.append(content);
        *content = v;
    }
    if !end.redirect_to.is_empty() {
        // The envelope's recipients are replaced; the DSN parameters they
        // carried belonged to them, so the new ones get the defaults.
        envelope.recipients.clear();
        for a in &end.redirect_to {
            if !envelope
                .recipients
                .iter()
                .any(|r| r.address.eq_ignore_ascii_case(a))
            {
                envelope.recipients.push(Recipient {
                    address: a.clone(),
                    ..Default::default()
                });
            }
        }
    }
    for a in &end.archive_to {
        if !envelope
            .recipients
            .iter()
            .any(|r| r.address.eq_ignore_ascii_case(a))
        {
            envelope.recipients.push(Recipient {
                address: a.clone(),
                notify: NOTIFY_NEVER,
                orcpt: String::new(),
            });
        }
    }
    let reason = spool::clean_hold_reason(&end.hold_reason);
    Ok(if reason.is_empty() {
        Landing::Incoming
    } else {
        envelope.hold_reason = reason;
        Landing::Hold
    })
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
        hold_reason: m.envelope.hold_reason.clone(),
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
        let mut envelope = envelope_from(env);
        let mut content = Vec::new();
        let end = loop {
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
                    break end;
                }
                Some(Part::Envelope(_)) => {
                    return Err(Status::invalid_argument(
                        "second Envelope in Enqueue stream",
                    ));
                }
                None => return Err(Status::invalid_argument("empty Enqueue message")),
            }
        };
        // The check pipeline's decisions come from smtpd only: a local
        // user on the public socket may not park mail in hold/ or add
        // recipients behind the envelope's back.
        let decided = !end.prepend.is_empty()
            || !end.hold_reason.is_empty()
            || !end.redirect_to.is_empty()
            || !end.archive_to.is_empty();
        if decided && self.public {
            return Err(Status::permission_denied(
                "End's check fields are not accepted on the public socket",
            ));
        }
        let landing = apply_end(&end, &mut envelope, &mut content)?;
        let nrcpt = envelope.recipients.len();
        let from = envelope.sender.clone();
        let hold_reason = envelope.hold_reason.clone();
        let id = self
            .committer
            .enqueue_to(envelope, content, landing)
            .await
            .map_err(status_of)?;
        if landing == Landing::Hold {
            tracing::info!(queue_id = %id, from = %from, nrcpt, public = self.public, reason = %hold_reason, "queued on hold");
        } else {
            tracing::info!(queue_id = %id, from = %from, nrcpt, public = self.public, "queued");
            self.wake.notify_one();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(rcpts: &[&str]) -> Envelope {
        Envelope {
            sender: "a@x.test".into(),
            recipients: rcpts
                .iter()
                .map(|a| Recipient {
                    address: a.to_string(),
                    notify: 4,
                    orcpt: format!("rfc822;{a}"),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn prepend_must_be_header_fields() {
        for ok in [
            &b""[..],
            b"X-A: 1\r\n",
            b"X-A: 1\r\nX-B: 2\r\n",
            b"Authentication-Results: mx;\r\n\tspf=pass\r\n",
        ] {
            assert_eq!(
                check_prepend(ok),
                Ok(()),
                "{:?}",
                String::from_utf8_lossy(ok)
            );
        }
        for bad in [
            &b"X-A: 1"[..],            // no CRLF
            b"X-A: 1\n",               // bare LF at the end
            b"X-A: 1\nX-B: 2\r\n",     // bare LF inside
            b"X-A: 1\rX-B: 2\r\n",     // bare CR
            b"X-A: 1\r\n\r\nbody\r\n", // ends the header section
            b"\r\n",                   // empty line
            b" cont\r\n",              // starts with a continuation
            b"no colon\r\n",           // not a field
            b": empty name\r\n",       // empty name
            b"Bad Name: x\r\n",        // space in the name
            b"X-A: a\0b\r\n",          // NUL
        ] {
            assert!(
                check_prepend(bad).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        let mut long = b"X-A: ".to_vec();
        long.resize(MAX_PREPEND + 1, b'a');
        long.extend_from_slice(b"\r\n");
        assert!(check_prepend(&long).is_err());
    }

    #[test]
    fn end_fields_change_content_recipients_and_landing() {
        // Nothing set: nothing changes.
        let mut e = env(&["b@x.test"]);
        let mut c = b"Subject: s\r\n\r\nhi\r\n".to_vec();
        let l = apply_end(&pb::End::default(), &mut e, &mut c).unwrap();
        assert_eq!(l, Landing::Incoming);
        assert_eq!(e, env(&["b@x.test"]));
        assert_eq!(c, b"Subject: s\r\n\r\nhi\r\n");

        // Prepend, archive (deduplicated, NOTIFY=NEVER), hold.
        let end = pb::End {
            prepend: b"X-Audit: r1\r\n".to_vec(),
            hold_reason: "audit: rule r1\nmatched".into(),
            archive_to: vec![
                "audit@x.test".into(),
                "B@x.test".into(),
                "audit@x.test".into(),
            ],
            ..Default::default()
        };
        let l = apply_end(&end, &mut e, &mut c).unwrap();
        assert_eq!(l, Landing::Hold);
        assert_eq!(c, b"X-Audit: r1\r\nSubject: s\r\n\r\nhi\r\n");
        let addrs: Vec<_> = e.recipients.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(addrs, ["b@x.test", "audit@x.test"]);
        assert_eq!(e.recipients[0].notify, 4);
        assert_eq!(e.recipients[1].notify, NOTIFY_NEVER);
        assert_eq!(e.hold_reason, "audit: rule r1 matched");

        // Redirect replaces every recipient (and their DSN parameters);
        // archive copies are added after it.
        let mut e = env(&["b@x.test", "c@x.test"]);
        let end = pb::End {
            redirect_to: vec!["quarantine@x.test".into()],
            archive_to: vec!["audit@x.test".into()],
            ..Default::default()
        };
        assert_eq!(apply_end(&end, &mut e, &mut c).unwrap(), Landing::Incoming);
        let addrs: Vec<_> = e.recipients.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(addrs, ["quarantine@x.test", "audit@x.test"]);
        assert_eq!(e.recipients[0].orcpt, "");

        // A reason of only control characters is no reason.
        let mut e = env(&["b@x.test"]);
        let end = pb::End {
            hold_reason: "\r\n".into(),
            ..Default::default()
        };
        assert_eq!(apply_end(&end, &mut e, &mut c).unwrap(), Landing::Incoming);
    }

    #[test]
    fn bad_end_fields_are_refused_whole() {
        let c0 = b"Subject: s\r\n\r\nhi\r\n".to_vec();
        for end in [
            pb::End {
                redirect_to: vec!["a b@x.test".into()],
                ..Default::default()
            },
            pb::End {
                archive_to: vec!["<a@x.test>".into()],
                ..Default::default()
            },
            pb::End {
                archive_to: vec!["a@x.test\r\nRCPT TO:<e@x.test>".into()],
                ..Default::default()
            },
            pb::End {
                redirect_to: vec![String::new()],
                ..Default::default()
            },
            pb::End {
                redirect_to: vec![format!("{}@x.test", "a".repeat(300))],
                ..Default::default()
            },
            pb::End {
                archive_to: (0..=MAX_END_RECIPIENTS)
                    .map(|i| format!("a{i}@x.test"))
                    .collect(),
                ..Default::default()
            },
            pb::End {
                prepend: b"X-A: 1\r\n\r\n".to_vec(),
                hold_reason: "r".into(),
                ..Default::default()
            },
        ] {
            let mut e = env(&["b@x.test"]);
            let mut c = c0.clone();
            let err = apply_end(&end, &mut e, &mut c).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert_eq!(e, env(&["b@x.test"]), "envelope changed by a refused End");
            assert_eq!(c, c0);
        }
    }

    #[test]
    fn long_hold_reasons_are_cut_at_a_character_boundary() {
        let r = spool::clean_hold_reason(&"机".repeat(1000));
        assert!(r.len() <= spool::MAX_HOLD_REASON);
        assert!(r.chars().all(|c| c == '机'));
        assert_eq!(r.chars().count(), spool::MAX_HOLD_REASON / 3);
    }
}
