//! # NAME
//! smtpd — postern SMTP server for MX (25), submission (587) and submissions (465)
//!
//! # DESCRIPTION
//! Accepts mail on each `[[smtpd.listener]]`, checks recipients through
//! authd, authenticates submission clients through authd, and hands each
//! message to queue-manager; the 250 after DATA is sent only once the queue
//! has the message on disk.
//!
//! **Status:** the daemon skeleton is in place (configuration, listeners with
//! socket activation, TLS certificate loading, graceful shutdown). The SMTP
//! protocol engine is not wired in yet (issue 5): every connection is
//! answered with `421 4.3.2` ("service not available"), the RFC 5321 way of
//! telling a client to come back later, so no mail is accepted and none is lost.
//!
//! # SECURITY
//! Runs as the `postern` user; needs `CAP_NET_BIND_SERVICE` only for ports
//! below 1024 (or gets them from systemd `.socket` units). Talks to authd and
//! queue-manager over their private Unix sockets.
//!
//! # STANDARDS
//! RFC 5321 (SMTP), RFC 3207 (STARTTLS), RFC 8314 (implicit TLS for submission).
//!
//! # CONFIGURATION
//! `[smtpd] listener = [{ name, address, role = "mx" | "submission" | "submissions" }]`,
//! `[tls] cert_file, key_file`, `[global] myhostname`. See `deploy/postern.toml`.
//!
//! # DIAGNOSTICS
//! Logs to stderr (journald), one line per event with `daemon=smtpd`.
//! Exit status 0 after a clean stop, 78 for a configuration error, 1 otherwise.
//!
//! # SEE ALSO
//! queue-manager(8), authd(8), postern.toml(5)

pub mod enqueue;
pub mod policy;
pub mod received;

use std::path::Path;
use std::sync::Arc;

use postern_common::config::SmtpRole;
use postern_common::listen::accept_tcp;
use postern_common::{Config, ConfigError, Context};
use tokio::io::AsyncWriteExt;

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
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut loops = tokio::task::JoinSet::new();
    for l in &cfg.smtpd.listener {
        let listener = ctx.listeners.tcp(&l.name, &l.address)?;
        tracing::info!(listener = %l.name, address = %l.address, role = ?l.role, "listening");
        let role = l.role;
        let acceptor = acceptor.clone();
        let hostname: Arc<str> = cfg.global.myhostname.as_str().into();
        loops.spawn(accept_tcp(l.name.clone(), listener, ctx.shutdown.clone(), move |stream, peer| {
            let acceptor = acceptor.clone();
            let hostname = hostname.clone();
            async move {
                let reply = format!("421 4.3.2 {hostname} Service not available: SMTP engine not built yet\r\n");
                let result = if role == SmtpRole::Submissions {
                    match acceptor.accept(stream).await {
                        Ok(mut tls) => tls.write_all(reply.as_bytes()).await.and(tls.shutdown().await),
                        Err(e) => Err(e),
                    }
                } else {
                    let mut stream = stream;
                    stream.write_all(reply.as_bytes()).await
                };
                tracing::info!(%peer, ?role, ok = result.is_ok(), "connection refused with 421 (not implemented)");
            }
        }));
    }
    ctx.ready("accepting connections");
    while loops.join_next().await.is_some() {}
    Ok(())
}
