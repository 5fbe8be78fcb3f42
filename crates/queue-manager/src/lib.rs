//! # NAME
//! queue-manager — postern mail queue: spool, routing, LMTP/SMTP delivery, retries
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
//! `End` also carries what smtpd's check pipeline decided (accepted on the
//! private socket only; PERMISSION_DENIED on the public one): `prepend`
//! (header fields, validated as such, bounded by
//! [`service::MAX_PREPEND`]) is put in front of the content, `redirect_to`
//! replaces the recipients, `archive_to` adds recipients with NOTIFY=NEVER
//! (same queue file, so the archive copy is byte-identical), and a
//! non-empty `hold_reason` writes the message straight into `hold/` (never
//! through `incoming/`/`active/`) with the reason in a HOLD REASON record,
//! shown by List/Inspect; Release moves it to `deferred/`, due at once.
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
//! Up to `delivery_concurrency_limit` messages are delivered at the same
//! time (a slow destination does not hold up the others), a message never
//! twice at once; on SIGTERM no new attempt starts and those in progress
//! finish.
//!
//! Which transport (`queue.delivery_transport`):
//!
//! * `"auto"` (default): [`route`] — each recipient is resolved by authd
//!   (aliases, virtual aliases, catch-all, plus-addressing); local mailboxes
//!   go over LMTP ([`lmtp`]) to `lmtp.socket`, other domains by SMTP
//!   ([`smtp_client`]) to their MX hosts ([`mx`], hickory-resolver) or to
//!   `relayhost`; `transport_maps` overrides per domain (`lmtp:unix:`,
//!   `lmtp:inet:`, `smtp:[host]:port`, `smtp:host`, `relay`, `error:`). An
//!   alias with several targets is re-queued once as a new message for the
//!   expanded list, so each target has its own durable status.
//! * `"lmtp"`: every recipient as it is over LMTP to `lmtp.socket`, no
//!   lookups (a host whose LMTP server does its own alias handling).
//! * `"none"`: no scheduler runs; messages stay queued.
//!
//! Bounces ([`bounce`]): a recipient that fails permanently (5xx) or is
//! still undelivered after `maximal_queue_lifetime` gets an RFC 3464 DSN
//! to the envelope sender: `multipart/report; report-type=delivery-status`
//! from `MAILER-DAEMON@<myhostname>` with the null reverse-path, a
//! human-readable part, a `message/delivery-status` part (Reporting-MTA,
//! Original-Envelope-Id from ENVID, Arrival-Date, and per recipient
//! Final-Recipient, Original-Recipient from ORCPT, Action, Status,
//! Diagnostic-Code with the next hop's reply; status 4.4.7 for an expired
//! message), and the original message (`message/rfc822`, RET=FULL or not
//! given, as Postfix) or its headers (`text/rfc822-headers`, RET=HDRS, or a
//! message larger than `bounce_size_limit`). All recipients that fail in
//! one attempt share one DSN. NOTIFY=NEVER suppresses it; NOTIFY without
//! FAILURE too; NOTIFY=SUCCESS gets a "delivered" report (headers only). A
//! message with the null sender (a bounce) gets no DSN: its failure is
//! logged and the message dropped, so bounces never loop. The DSN is
//! queued in `incoming/` (fsynced as any message) *before* the failed
//! recipient's status is recorded final; if it cannot be queued the
//! recipient is deferred instead and bounced again later. A crash between
//! the two may send the DSN twice, never lose it. With
//! `bounce_notice_recipient` set, a copy (headers only) goes there too.
//! With `delay_warning_time` set (default off, as Postfix), the sender gets
//! one "delayed" DSN (headers only) for the recipients still deferred when
//! the message passes that age (unless NOTIFY excludes DELAY).
//! After queuing DSNs the scheduler runs another pass at once.
//!
//! **Status:** spool, recovery, gRPC service, scheduler, routing, LMTP and
//! SMTP delivery work and are tested end to end (`tests/tests/remote.rs`:
//! dnsmasq serving MX/null MX on loopback, a scripted SMTP peer with
//! STARTTLS). SMTP and LMTP connections are kept for reuse (idle 2 s;
//! SMTP keyed by host name, address and AUTH, see [`smtp_client`] and
//! [`lmtp::LmtpPool`]; `"lmtp"` mode uses one connection per message).
//! BDAT to a next hop that offers CHUNKING (BINARYMIME content only to
//! one that also offers BINARYMIME, `5.6.3` otherwise).
//! **Not yet:** DANE/MTA-STS, alias targets that are commands or files (authd logs and drops them); messages
//! are buffered in memory while streamed in and read whole for delivery and
//! Inspect (bounded by `message_size_limit`). Hold/Delete skip a message
//! that is in `active/` (being delivered).
//!
//! # SECURITY
//! Runs as the `postern` user. Outgoing SMTP uses STARTTLS when offered
//! (`smtp_tls_security_level = "may"`: encrypted but not authenticated, as
//! Postfix's default for MX delivery; `"verify"` checks the certificate and
//! host name). Relayhost credentials are only ever sent over TLS; the
//! password is read from `relayhost_password_file` and never logged. The private socket is mode 0660; the public
//! socket is 0666 (local submission by any user, as Postfix's
//! `public/pickup`): only `Handshake` and `Enqueue` are served there, the
//! administration calls answer PERMISSION_DENIED. Queue ids from clients are
//! validated (`[0-9A-V]{16}`) before any path is built from them. Files:
//! the spool directory only.
//!
//! # STANDARDS
//! RFC 2033 (LMTP client), RFC 5321 (SMTP client: 5.1 MX ordering and
//! implicit MX, 4.5.2 dot-stuffing, 4.2 replies, 4.5.3.2 timeouts),
//! RFC 3207 (STARTTLS), RFC 7435 (opportunistic TLS), RFC 2920
//! (PIPELINING), RFC 1870 (SIZE), RFC 6152 (8BITMIME), RFC 6531
//! (SMTPUTF8), RFC 3461 (DSN parameters passed on), RFC 4954 (AUTH PLAIN to
//! the relayhost), RFC 7505 (null MX), RFC 3464 (DSN).
//!
//! # CONFIGURATION
//! `[queue]`: `socket`, `public_socket`, `spool_directory`,
//! `minimal_backoff_time` (300s), `maximal_backoff_time` (4000s),
//! `maximal_queue_lifetime` (5d), `queue_run_delay` (300s),
//! `delivery_transport` ("auto"; "lmtp"; "none"), `transport_maps` ({}),
//! `relayhost` (""), `relayhost_username`, `relayhost_password_file`,
//! `smtp_tls_security_level` ("may"), `smtp_tls_ca_file`, `smtp_port` (25;
//! other values mainly for tests), `dns_servers` ([] = /etc/resolv.conf),
//! `delivery_concurrency_limit` (100),
//! `default_destination_concurrency_limit` (20), `bounce_notice_recipient`
//! ("" = no postmaster copy), `bounce_size_limit` (50000 bytes; 0 = none),
//! `delay_warning_time` ("0s" = no delay warnings).
//! `[global] myhostname` (EHLO/LHLO name), `recipient_delimiter`,
//! `message_size_limit`. See `deploy/postern.toml`.
//!
//! # DIAGNOSTICS
//! Logs to stderr (journald) with `daemon=queue-manager` and `queue_id` on
//! every message event (`queued`, `sent` with `to` and `relay`, `delivered`,
//! `deferred`, `bounced`, `alias expanded, re-queued` with `new_queue_id`,
//! `no next hop`, `host failed, trying the next one`,
//! `sender non-delivery notification queued` with `dsn_queue_id`,
//! `postmaster copy of the non-delivery notification queued`,
//! `sender delivery notification queued` (NOTIFY=SUCCESS),
//! `sender delay notification queued` (delay warning),
//! `null sender: no DSN (a bounce is never bounced)`,
//! `cannot queue the DSN: bounced recipients deferred instead`,
//! `corrupt queue file moved to corrupt/`, `spool full`: ENOSPC/EDQUOT while
//! writing, Enqueue answers RESOURCE_EXHAUSTED `insufficient system storage`,
//! which smtpd turns into `452 4.3.1` and sendmail into exit 75; nothing is
//! left in `tmp/`). Exit status 0 after a clean stop,
//! 78 for a configuration error, 1 otherwise.
//!
//! # SEE ALSO
//! lmtp-delivery(8), smtpd(8), mailctl(8)

pub mod bounce;
pub mod lmtp;
pub mod metrics;
pub mod mx;
pub mod route;
pub mod scheduler;
pub mod service;
pub mod smtp_client;
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
    if !matches!(q.delivery_transport.as_str(), "auto" | "none" | "lmtp") {
        return Err(ConfigError::new(
            file,
            "queue.delivery_transport",
            format!(
                "{:?}: must be \"auto\", \"lmtp\" or \"none\"",
                q.delivery_transport
            ),
        ));
    }
    if let Err((k, e)) = route::TransportMaps::parse(&q.transport_maps) {
        return Err(ConfigError::new(
            file,
            format!("queue.transport_maps.{k}"),
            e,
        ));
    }
    if !q.relayhost.is_empty()
        && let Err(e) = route::parse_smtp_dest(&q.relayhost)
    {
        return Err(ConfigError::new(file, "queue.relayhost", e));
    }
    if !q.relayhost_username.is_empty() && q.relayhost_password_file.as_os_str().is_empty() {
        return Err(ConfigError::new(
            file,
            "queue.relayhost_password_file",
            "needed when queue.relayhost_username is set",
        ));
    }
    match smtp_client::TlsLevel::parse(&q.smtp_tls_security_level) {
        Err(e) => return Err(ConfigError::new(file, "queue.smtp_tls_security_level", e)),
        Ok(level) => {
            if let Err(e) = smtp_client::tls_configs(level, &q.smtp_tls_ca_file) {
                return Err(ConfigError::new(file, "queue.smtp_tls_ca_file", e));
            }
        }
    }
    if !q.relayhost_username.is_empty()
        && let Err(e) = std::fs::File::open(&q.relayhost_password_file)
    {
        return Err(ConfigError::new(
            file,
            "queue.relayhost_password_file",
            format!("{}: {e}", q.relayhost_password_file.display()),
        ));
    }
    if q.smtp_port == 0 {
        return Err(ConfigError::new(file, "queue.smtp_port", "must not be 0"));
    }
    for s in &q.dns_servers {
        if let Err(e) = mx::parse_dns_server(s) {
            return Err(ConfigError::new(file, "queue.dns_servers", e));
        }
    }
    if q.delivery_concurrency_limit == 0 {
        return Err(ConfigError::new(
            file,
            "queue.delivery_concurrency_limit",
            "must be more than 0",
        ));
    }
    if q.default_destination_concurrency_limit == 0 {
        return Err(ConfigError::new(
            file,
            "queue.default_destination_concurrency_limit",
            "must be more than 0",
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

/// The routing transport from `[queue]`.
fn router(
    cfg: &Config,
    lmtp_socket: std::path::PathBuf,
    committer: spool::Committer,
    wake: Arc<tokio::sync::Notify>,
) -> anyhow::Result<route::Router> {
    let q = &cfg.queue;
    let maps = route::TransportMaps::parse(&q.transport_maps)
        .map_err(|(k, e)| anyhow::anyhow!("queue.transport_maps.{k}: {e}"))?;
    let relayhost = if q.relayhost.is_empty() {
        None
    } else {
        Some(
            route::parse_smtp_dest(&q.relayhost)
                .map_err(|e| anyhow::anyhow!("queue.relayhost: {e}"))?,
        )
    };
    let relay_auth = if q.relayhost_username.is_empty() {
        None
    } else {
        let text = std::fs::read_to_string(&q.relayhost_password_file).with_context(|| {
            format!(
                "queue.relayhost_password_file {}",
                q.relayhost_password_file.display()
            )
        })?;
        Some(smtp_client::Credentials {
            username: q.relayhost_username.clone(),
            password: text.lines().next().unwrap_or("").to_string(),
        })
    };
    let level = smtp_client::TlsLevel::parse(&q.smtp_tls_security_level)
        .map_err(|e| anyhow::anyhow!("queue.smtp_tls_security_level: {e}"))?;
    let (tls_unverified, tls_verified) = smtp_client::tls_configs(level, &q.smtp_tls_ca_file)
        .map_err(|e| anyhow::anyhow!("queue.smtp_tls_ca_file: {e}"))?;
    let servers = q
        .dns_servers
        .iter()
        .map(|s| mx::parse_dns_server(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("queue.dns_servers: {e}"))?;
    let dns = mx::Dns::new(&servers)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_own_names(std::slice::from_ref(&cfg.global.myhostname));
    let auth = postern_ipc::dial(
        &Config::socket_uri(&cfg.authd.socket),
        &postern_ipc::DialOptions::default(),
    )?;
    let mut router = route::Router::new(
        postern_ipc::auth::v1::auth_client::AuthClient::new(auth),
        lmtp_socket,
        maps,
        relayhost,
        relay_auth,
        smtp_client::SmtpClient {
            helo_name: cfg.global.myhostname.clone(),
            tls_level: level,
            tls_unverified,
            tls_verified,
            cache: smtp_client::ConnCache::start(),
        },
        dns,
        q.smtp_port,
        cfg.global.myhostname.clone(),
        cfg.global
            .recipient_delimiter
            .chars()
            .next()
            .map(String::from)
            .unwrap_or_default(),
        committer,
        wake,
        q.default_destination_concurrency_limit,
    );
    router.own_addresses = own_smtp_addresses(cfg);
    Ok(router)
}

/// Where our smtpd listens, with unspecified addresses (`0.0.0.0`, `::`)
/// expanded to this host's interface addresses: SMTP next hops among them
/// are mail loops.
fn own_smtp_addresses(cfg: &Config) -> Vec<std::net::SocketAddr> {
    use std::net::{IpAddr, SocketAddr};
    let mut local_ips: Vec<IpAddr> = Vec::new();
    if let Ok(ifs) = nix::ifaddrs::getifaddrs() {
        for i in ifs {
            let Some(a) = i.address else { continue };
            if let Some(v4) = a.as_sockaddr_in() {
                local_ips.push(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = a.as_sockaddr_in6() {
                local_ips.push(IpAddr::V6(v6.ip()));
            }
        }
    }
    let mut out = Vec::new();
    for l in &cfg.smtpd.listener {
        let Ok(a) = l.address.parse::<SocketAddr>() else {
            continue;
        };
        if a.ip().is_unspecified() {
            out.extend(
                local_ips
                    .iter()
                    .filter(|ip| ip.is_ipv4() == a.is_ipv4() || a.is_ipv6())
                    .map(|ip| SocketAddr::new(*ip, a.port())),
            );
        } else {
            out.push(a);
        }
    }
    out.sort();
    out.dedup();
    out
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
    let spool_root = cfg.queue.spool_directory.clone();
    postern_common::metrics::on_scrape(move || metrics::count_queues(&spool_root));
    let private = Config::socket_uri(&cfg.queue.socket);
    let public = Config::socket_uri(&cfg.queue.public_socket);
    let private_l = ctx.listeners.unix("queue", &private, 0o660)?;
    let public_l = ctx.listeners.unix("submit", &public, 0o666)?;
    tracing::info!(socket = %private, public = %public, spool = %cfg.queue.spool_directory.display(), "listening");
    let wake = Arc::new(tokio::sync::Notify::new());
    let committer = spool::Committer::start(spool.clone());
    if cfg.queue.delivery_transport != "none" {
        let socket = Config::socket_uri(&cfg.lmtp.socket).path().to_path_buf();
        let transport: Arc<dyn scheduler::Transport> = if cfg.queue.delivery_transport == "lmtp" {
            tracing::info!(lmtp = %socket.display(), "delivering every recipient over LMTP");
            Arc::new(lmtp::LmtpTransport {
                socket,
                helo_name: cfg.global.myhostname.clone(),
            })
        } else {
            tracing::info!(lmtp = %socket.display(), "routing: local over LMTP, remote by SMTP");
            Arc::new(router(&cfg, socket, committer.clone(), wake.clone())?)
        };
        let sched = scheduler::Scheduler {
            spool: spool.clone(),
            transport,
            policy: scheduler::Policy {
                minimal_backoff: cfg.queue.minimal_backoff_time,
                maximal_backoff: cfg.queue.maximal_backoff_time,
                maximal_lifetime: cfg.queue.maximal_queue_lifetime,
            },
            bounce: Some(Arc::new(bounce::Bouncer::new(bounce::Settings {
                myhostname: cfg.global.myhostname.clone(),
                notice_recipient: cfg.queue.bounce_notice_recipient.clone(),
                size_limit: cfg.queue.bounce_size_limit,
                delay_warning_time: cfg.queue.delay_warning_time,
            }))),
        };
        ctx.shutdown.spawn(sched.run(
            cfg.queue.queue_run_delay,
            cfg.queue.delivery_concurrency_limit,
            wake.clone(),
            ctx.shutdown.signal(),
        ));
    } else {
        // No transport: the scheduler is not started, so nothing is
        // delivered and nothing is marked delivered; messages stay queued.
        tracing::warn!("queue.delivery_transport = \"none\": messages stay queued");
    }
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
