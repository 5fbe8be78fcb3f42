//! # NAME
//! queue-manager — postern mail queue: spool, delivery scheduling, retries
//!
//! # DESCRIPTION
//! Owns the spool (`tmp/ incoming/ active/ deferred/ hold/ corrupt/ status/`
//! under `queue.spool_directory`, format in [`spool`]) and serves
//! `postern.queue.v1` on a private socket (daemons, `mailctl`) and a public
//! one (`sendmail`).
//!
//! `Enqueue` buffers the streamed message (bounded by
//! `global.message_size_limit`, RESOURCE_EXHAUSTED beyond), checks
//! `End.total_bytes`, writes `tmp/<id>`, fsyncs it, renames it into
//! `incoming/`, fsyncs the directory, and only then answers with the queue id.
//! Concurrent enqueues are group-committed by one writer thread
//! ([`spool::Committer`]): each file is still fsynced, the directory fsync is
//! shared by up to 64 messages.
//! A stream that ends without `End` or a client that goes away leaves no file.
//! On start, `tmp/` leftovers are removed, `active/` goes back to
//! `incoming/`, and files in `incoming/` without a valid END record are moved
//! to `corrupt/` (logged at error level with `queue_id`), never delivered.
//!
//! The [`scheduler`] delivers through a pluggable [`scheduler::Transport`],
//! records each recipient's result in the append-only status log
//! (`status/<id>`, fsynced per update) so a restart never re-delivers a
//! delivered recipient, retries temporary failures from `deferred/` with
//! exponential backoff (`minimal_backoff_time` doubling up to
//! `maximal_backoff_time`), bounces after `maximal_queue_lifetime`, and
//! removes a message once every recipient is delivered or bounced.
//!
//! **Status:** spool, recovery, the gRPC service (Enqueue, List, Inspect,
//! Hold, Release, Delete, Flush), the scheduler with its retry policy (tested
//! with a fake transport) and an LMTP client transport ([`lmtp`], tested
//! against a scripted LMTP server) work. The scheduler runs only with
//! `queue.delivery_transport = "lmtp"`; the default `"none"` starts no
//! scheduler, so messages stay queued and nothing is marked delivered.
//! **Not yet:** no routing (with `"lmtp"` *every* recipient goes to LMTP, no
//! remote SMTP client), no DSN bounce messages (a bounced recipient is only
//! logged at error level and recorded; the message is removed once every
//! recipient is final, so the bounce is lost apart from the log); messages
//! are buffered in memory while streamed in and read whole for delivery and
//! Inspect (bounded by `message_size_limit`), one delivery at a time, no
//! end-to-end test of the daemon delivering into lmtp-delivery yet.
//! Hold/Delete skip a message that is in `active/` (being delivered).
//!
//! # SECURITY
//! Runs as the `postern` user. The private socket is mode 0660; the public
//! socket is 0666 (local submission by any user, as Postfix's
//! `public/pickup`): only `Handshake` and `Enqueue` are served there, the
//! administration calls answer PERMISSION_DENIED. Queue ids from clients are
//! validated (`[0-9A-V]{16}`) before any path is built from them. Files:
//! the spool directory only.
//!
//! # STANDARDS
//! RFC 2033 (LMTP client), RFC 5321 4.5.2 (dot-stuffing) and 4.2 (reply
//! syntax), RFC 3461 (DSN parameters kept in the envelope); later: RFC 5321
//! SMTP client, RFC 3464 (DSN).
//!
//! # CONFIGURATION
//! `[queue]`: `socket`, `public_socket`, `spool_directory`,
//! `minimal_backoff_time` (300s), `maximal_backoff_time` (4000s),
//! `maximal_queue_lifetime` (5d), `queue_run_delay` (300s),
//! `delivery_transport` ("none"; "lmtp" delivers to `lmtp.socket`).
//! `[global] message_size_limit`. See `deploy/postern.toml`.
//!
//! # DIAGNOSTICS
//! Logs to stderr (journald) with `daemon=queue-manager` and `queue_id` on
//! every message event (`queued`, `delivered`, `deferred`, `bounced`,
//! `corrupt queue file moved to corrupt/`). Exit status 0 after a clean stop,
//! 78 for a configuration error, 1 otherwise.
//!
//! # SEE ALSO
//! lmtp-delivery(8), smtpd(8), mailctl(8)

pub mod bounce;
pub mod lmtp;
pub mod scheduler;
pub mod service;
pub mod spool;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use postern_common::{Config, ConfigError, Context};
use postern_ipc::queue::v1 as pb;

pub use service::QueueService;
pub use spool::QUEUES;

/// Checks beyond the shared configuration validation.
pub fn validate(cfg: &Config, file: &Path) -> Result<(), ConfigError> {
    let q = &cfg.queue;
    if !matches!(q.delivery_transport.as_str(), "none" | "lmtp") {
        return Err(ConfigError::new(
            file,
            "queue.delivery_transport",
            format!("{:?}: must be \"none\" or \"lmtp\"", q.delivery_transport),
        ));
    }
    if q.minimal_backoff_time.is_zero() {
        return Err(ConfigError::new(
            file,
            "queue.minimal_backoff_time",
            "must be more than 0",
        ));
    }
    if q.maximal_backoff_time < q.minimal_backoff_time {
        return Err(ConfigError::new(
            file,
            "queue.maximal_backoff_time",
            "must not be less than queue.minimal_backoff_time",
        ));
    }
    if q.queue_run_delay.is_zero() {
        return Err(ConfigError::new(
            file,
            "queue.queue_run_delay",
            "must be more than 0",
        ));
    }
    Ok(())
}

/// Run until shutdown.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let cfg = ctx.config();
    let root = cfg.queue.spool_directory.clone();
    let (spool, ready) = tokio::task::spawn_blocking(move || {
        let spool = spool::Spool::open(&root)?;
        let ready = spool.recover()?;
        Ok::<_, spool::SpoolError>((spool, ready))
    })
    .await?
    .with_context(|| format!("cannot open spool {}", cfg.queue.spool_directory.display()))?;
    tracing::info!(ready = ready.len(), "spool recovered");
    let private = Config::socket_uri(&cfg.queue.socket);
    let public = Config::socket_uri(&cfg.queue.public_socket);
    let private_l = ctx.listeners.unix("queue", &private, 0o660)?;
    let public_l = ctx.listeners.unix("submit", &public, 0o666)?;
    tracing::info!(socket = %private, public = %public, spool = %cfg.queue.spool_directory.display(), "listening");
    let wake = Arc::new(tokio::sync::Notify::new());
    if cfg.queue.delivery_transport == "lmtp" {
        let socket = Config::socket_uri(&cfg.lmtp.socket).path().to_path_buf();
        tracing::info!(lmtp = %socket.display(), "delivering over LMTP");
        let sched = scheduler::Scheduler {
            spool: spool.clone(),
            transport: Arc::new(lmtp::LmtpTransport {
                socket,
                helo_name: cfg.global.myhostname.clone(),
            }),
            policy: scheduler::Policy {
                minimal_backoff: cfg.queue.minimal_backoff_time,
                maximal_backoff: cfg.queue.maximal_backoff_time,
                maximal_lifetime: cfg.queue.maximal_queue_lifetime,
            },
            bounce: Some(Arc::new(bounce::Bouncer::new(bounce::Settings {
                myhostname: cfg.global.myhostname.clone(),
                notice_recipient: cfg.queue.bounce_notice_recipient.clone(),
                size_limit: cfg.queue.bounce_size_limit,
            }))),
        };
        ctx.shutdown.spawn(sched.run(
            cfg.queue.queue_run_delay,
            wake.clone(),
            ctx.shutdown.signal(),
        ));
    } else {
        // No transport: the scheduler is not started, so nothing is
        // delivered and nothing is marked delivered; messages stay queued.
        tracing::warn!("queue.delivery_transport = \"none\": messages stay queued");
    }
    let committer = spool::Committer::start(spool.clone());
    let service = |public| {
        pb::queue_server::QueueServer::new(QueueService {
            spool: spool.clone(),
            public,
            message_size_limit: cfg.global.message_size_limit,
            wake: wake.clone(),
            committer: committer.clone(),
        })
    };
    let a = postern_ipc::serve(
        tonic::transport::Server::builder().add_service(service(false)),
        private_l,
        ctx.shutdown.signal(),
    );
    let b = postern_ipc::serve(
        tonic::transport::Server::builder().add_service(service(true)),
        public_l,
        ctx.shutdown.signal(),
    );
    ctx.ready("serving postern.queue.v1");
    tokio::try_join!(a, b)?;
    Ok(())
}
