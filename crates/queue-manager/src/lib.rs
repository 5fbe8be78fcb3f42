//! # NAME
//! queue-manager — postern mail queue: spool, routing, delivery, retries, bounces
//!
//! # DESCRIPTION
//! Owns the spool (`incoming/ active/ deferred/ hold/ corrupt/` under
//! `queue.spool_directory`), serves `postern.queue.v1` on a private socket
//! (daemons, `mailctl`) and a public one (`sendmail`), delivers local mail
//! over LMTP and remote mail over SMTP.
//!
//! **Status:** the skeleton creates the spool directories and serves the
//! `Handshake` call on both sockets. `Enqueue` and the administration calls
//! are issue 6: until then they answer `UNAVAILABLE`, so smtpd answers 451
//! and no message is acknowledged that is not on disk.
//!
//! # SECURITY
//! Runs as the `postern` user. The private socket is mode 0660; the public
//! socket is 0666 (local submission by any user, as Postfix's `public/pickup`).
//!
//! # STANDARDS
//! RFC 5321 (SMTP client), RFC 2033 (LMTP client), RFC 3464 (DSN).
//!
//! # CONFIGURATION
//! `[queue] socket, public_socket, spool_directory`. See `deploy/postern.toml`.
//!
//! # DIAGNOSTICS
//! Logs to stderr (journald) with `daemon=queue-manager` and `queue_id` on
//! every message event. Exit status 0 after a clean stop, 78 for a
//! configuration error, 1 otherwise.
//!
//! # SEE ALSO
//! lmtp-delivery(8), smtpd(8), mailctl(8)

use std::path::Path;

use anyhow::Context as _;
use postern_common::{Config, ConfigError, Context};
use postern_ipc::queue::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

/// Spool subdirectories, as Postfix's queue.
pub const QUEUES: [&str; 5] = ["incoming", "active", "deferred", "hold", "corrupt"];

/// Checks beyond the shared configuration validation.
pub fn validate(_cfg: &Config, _file: &Path) -> Result<(), ConfigError> {
    Ok(())
}

/// The gRPC service.
#[derive(Debug, Default, Clone)]
pub struct QueueService;

fn not_yet() -> Status {
    Status::unavailable("queue not built yet")
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
    async fn enqueue(
        &self,
        _req: Request<Streaming<pb::EnqueueRequest>>,
    ) -> Result<Response<pb::EnqueueResponse>, Status> {
        Err(not_yet())
    }
    async fn list(
        &self,
        _req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        Err(not_yet())
    }
    async fn inspect(
        &self,
        _req: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        Err(not_yet())
    }
    async fn hold(
        &self,
        _req: Request<pb::QueueIds>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        Err(not_yet())
    }
    async fn release(
        &self,
        _req: Request<pb::QueueIds>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        Err(not_yet())
    }
    async fn delete(
        &self,
        _req: Request<pb::QueueIds>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        Err(not_yet())
    }
    async fn flush(
        &self,
        _req: Request<pb::QueueIds>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        Err(not_yet())
    }
}

/// Run until shutdown.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let cfg = ctx.config();
    for q in QUEUES {
        let dir = cfg.queue.spool_directory.join(q);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let private = Config::socket_uri(&cfg.queue.socket);
    let public = Config::socket_uri(&cfg.queue.public_socket);
    let private_l = ctx.listeners.unix("queue", &private, 0o660)?;
    let public_l = ctx.listeners.unix("submit", &public, 0o666)?;
    tracing::info!(socket = %private, public = %public, spool = %cfg.queue.spool_directory.display(), "listening");
    let service = || pb::queue_server::QueueServer::new(QueueService);
    let a = postern_ipc::serve(
        tonic::transport::Server::builder().add_service(service()),
        private_l,
        ctx.shutdown.signal(),
    );
    let b = postern_ipc::serve(
        tonic::transport::Server::builder().add_service(service()),
        public_l,
        ctx.shutdown.signal(),
    );
    ctx.ready("serving postern.queue.v1");
    tokio::try_join!(a, b)?;
    Ok(())
}
