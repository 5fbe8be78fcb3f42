//! # NAME
//! smtpd — postern SMTP server for MX (25), submission (587) and submissions (465)
//!
//! # DESCRIPTION
//! Accepts mail on each `[[smtpd.listener]]`, checks recipients through
//! authd, authenticates submission clients through authd, and hands each
//! message to queue-manager; the 250 after DATA is sent only once the queue
//! has the message on disk.
//!
//! The protocol engine is the shared sans-I/O `smtp-proto` session (also
//! used by lmtp-delivery): pipelining, DATA and BDAT, size limit while
//! streaming, bare-LF refusal (SMTP smuggling), STARTTLS with the
//! plaintext buffer discarded, error limit. Roles: `mx` (no AUTH; relaying
//! only for `mynetworks`), `submission` (STARTTLS required, then AUTH
//! PLAIN/LOGIN relayed to authd, before MAIL), `submissions` (implicit TLS).
//! RCPT is checked with authd (`550 5.1.1` unknown, `554 5.7.1` relay denied,
//! `451 4.3.0` when authd cannot answer); an authenticated sender must own
//! its MAIL FROM address (`553 5.7.1`). The message is streamed to
//! queue-manager with a `Received:` header in front, and `250 ... queued as
//! ID` is sent only once the queue has it on disk; when the queue cannot
//! take it the reply is `452 4.3.1 Insufficient system storage` (spool file
//! system full), `552 5.3.4` (size) or `451 4.3.0` (queue down or any other
//! error), never a 2xx ([`enqueue::failure_reply`]). With authd down, RCPT
//! gets `451 4.3.0` and AUTH `454 4.7.0`: temporary, so clients retry. On submission (an
//! authenticated session) a missing `Date:` or `Message-ID:` is added at the
//! end of the header section ([`headers`]).
//!
//! Limits ([`limits`], and the engine's counters): concurrent connections
//! over all listeners (`max_connections`) and per client IP
//! (`smtpd_client_connection_count_limit`), new connections per IP per
//! `anvil_rate_time_unit` (`smtpd_client_connection_rate_limit`) — refused
//! with `421 4.7.0` before the greeting, `mynetworks` exempt from the per-IP
//! ones by default; recipients per message (`452 4.5.3`), error replies per
//! session (`421 4.7.0` after `smtpd_hard_error_limit`), junk commands
//! (NOOP/VRFY/EXPN/HELP/RSET beyond `smtpd_junk_command_limit` count as
//! errors); timeouts for a command line (`smtpd_timeout`), for message
//! content (`smtpd_data_timeout`) and for a TLS handshake
//! (`smtpd_starttls_timeout`), each ending the session with `421 4.4.2`.
//! VRFY answers `252` unless `disable_vrfy_command = false`, then it
//! resolves the address through authd.
//!
//! The check pipeline (`postern-checks`, `[checks.*]`, docs/CHECKS.md) is
//! asked at connect (a refusal replaces the greeting: `554`, or `421` for a
//! temporary one, then the connection is closed), after HELO/EHLO, MAIL and
//! RCPT (the check's reply instead of the 250), and at end-of-data over a
//! copy of the message as it will be queued (kept in memory only when a
//! check runs on the connection's role). At end-of-data a refusal aborts the
//! queue stream and is the reply; `discard` aborts it and answers `250 2.0.0
//! Ok: discarded`; otherwise header fields to add, a hold reason, a redirect
//! and archive copies travel with the message's End to queue-manager, which
//! applies them before the 250. Actions other than refusals given at
//! connect, HELO, MAIL or RCPT go with the message too. The flood check
//! has two hooks in the session loop: on MX listeners the greeting waits
//! `checks.flood` `greet_wait` and a client that talks first gets `554
//! 5.5.1` (postscreen's pre-greet test); after `smtpd_soft_error_limit`
//! error replies each further error reply is delayed (tarpit).
//!
//! # SECURITY
//! Runs as the `postern` user; needs `CAP_NET_BIND_SERVICE` only for ports
//! below 1024 (or gets them from systemd `.socket` units). Talks to authd and
//! queue-manager over their private Unix sockets.
//!
//! # STANDARDS
//! RFC 5321 (SMTP), RFC 3207 (STARTTLS), RFC 8314 (implicit TLS for
//! submission), RFC 6409 (message submission: adding Date/Message-ID),
//! RFC 2920 (PIPELINING), RFC 3030 (CHUNKING), RFC 1870 (SIZE), RFC 6152
//! (8BITMIME), RFC 6531 (SMTPUTF8), RFC 3461 (DSN parameters), RFC 2034
//! (ENHANCEDSTATUSCODES), RFC 4954 (AUTH).
//!
//! # CONFIGURATION
//! `[smtpd] listener = [{ name, address, role = "mx" | "submission" | "submissions" }]`,
//! `smtpd_recipient_limit` (1000), `smtpd_hard_error_limit` (20),
//! `smtpd_junk_command_limit` (100), `max_connections` (1000),
//! `smtpd_client_connection_count_limit` (50),
//! `smtpd_client_connection_rate_limit` (0 = off), `anvil_rate_time_unit`
//! (60s), `smtpd_client_event_limit_exceptions` (`global.mynetworks`),
//! `smtpd_timeout` (300s), `smtpd_data_timeout` (300s),
//! `smtpd_starttls_timeout` (60s), `disable_vrfy_command` (true),
//! `smtpd_forbid_bare_newline` ("reject" | "normalize" | "allow"),
//! `smtpd_sasl_authenticated_header` (false);
//! `[tls] cert_file, key_file`, `[global] myhostname, mynetworks,
//! message_size_limit`. See `deploy/postern.toml`.
//!
//! # DIAGNOSTICS
//! Logs to stderr (journald), one line per event with `daemon=smtpd` and the
//! session id: `connected`, `connection refused by limit` (with the limit),
//! `authenticated` (user), `recipient refused`, `queued` (queue id),
//! `missing header fields added`, `check verdict` (stage, check, action,
//! reason), `check verdict applied` (with the queue id), `refused at
//! connect`, `message refused by check`, `pregreet: client talked before
//! the greeting`, `tarpit`, `timeout`, `disconnected`; `enqueue
//! failed` (error level, with the queue's reason) before a 4xx/5xx after
//! DATA, `authd unavailable` before a 4xx at AUTH.
//! Exit status 0 after a clean stop, 78 for a configuration error, 1 otherwise.
//!
//! # SEE ALSO
//! queue-manager(8), authd(8), postern.toml(5)

pub mod enqueue;
pub mod headers;
pub mod limits;
pub mod policy;
pub mod received;
pub mod session;

use std::path::Path;
use std::sync::Arc;

use postern_common::listen::accept_tcp;
use postern_common::{Config, ConfigError, Context};

/// Checks beyond the shared configuration validation.
pub fn validate(cfg: &Config, file: &Path) -> Result<(), ConfigError> {
    if cfg.smtpd.listener.is_empty() {
        return Err(ConfigError::new(
            file,
            "smtpd.listener",
            "at least one listener is needed",
        ));
    }
    Ok(())
}

/// Run until shutdown.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let cfg = ctx.config();
    let tls = postern_common::tls::from_config(&cfg, &ctx.config_path)?;
    let opts = postern_ipc::DialOptions::default();
    let auth = postern_ipc::dial(&Config::socket_uri(&cfg.authd.socket), &opts)?;
    let queue = postern_ipc::dial(&Config::socket_uri(&cfg.queue.socket), &opts)?;
    let checks = postern_checks::Pipeline::from_config(&cfg)
        .map_err(|e| anyhow::anyhow!("{}: checks: {e:#}", ctx.config_path.display()))?;
    tracing::info!(checks = ?checks.names(), "check pipeline");
    let shared = Arc::new(session::Shared {
        hostname: cfg.global.myhostname.clone(),
        acceptor: tokio_rustls::TlsAcceptor::from(tls),
        auth: postern_ipc::auth::v1::auth_client::AuthClient::new(auth),
        queue: postern_ipc::queue::v1::queue_client::QueueClient::new(queue),
        mynetworks: cfg.global.mynetworks.clone(),
        message_size_limit: cfg.global.message_size_limit,
        limits: limits::Limits::new(limits::LimitConfig {
            max_connections: cfg.smtpd.max_connections,
            per_ip: cfg.smtpd.smtpd_client_connection_count_limit,
            rate: cfg.smtpd.smtpd_client_connection_rate_limit,
            window: cfg.smtpd.anvil_rate_time_unit,
            exceptions: cfg
                .smtpd
                .smtpd_client_event_limit_exceptions
                .clone()
                .unwrap_or_else(|| cfg.global.mynetworks.clone()),
        }),
        cfg: cfg.smtpd.clone(),
        checks,
    });
    let mut loops = tokio::task::JoinSet::new();
    for l in &cfg.smtpd.listener {
        let listener = ctx.listeners.tcp(&l.name, &l.address)?;
        tracing::info!(listener = %l.name, address = %l.address, role = ?l.role, "listening");
        let role = l.role;
        let (sh, down) = (shared.clone(), ctx.shutdown.clone());
        loops.spawn(accept_tcp(
            l.name.clone(),
            listener,
            ctx.shutdown.clone(),
            move |stream, peer| session::run(sh.clone(), stream, peer, role, down.clone()),
        ));
    }
    ctx.ready("accepting connections");
    while loops.join_next().await.is_some() {}
    Ok(())
}
