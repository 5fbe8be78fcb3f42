//! # NAME
//! imapd — postern IMAP server (143 STARTTLS, 993 implicit TLS)
//!
//! # DESCRIPTION
//! Serves the Maildirs written by lmtp-delivery to mail clients; logins go
//! through authd.
//!
//! **Status:** the daemon skeleton is in place (configuration, listeners with
//! socket activation, TLS certificate loading, graceful shutdown). The
//! protocol itself is not wired in yet (issue 8): every connection gets
//! `* BYE [UNAVAILABLE] IMAP service not built yet` and is closed.
//!
//! # SECURITY
//! Runs as the `postern` user (mailbox access as the mailbox owner comes with
//! the protocol work); ports below 1024 come from systemd `.socket` units or
//! `CAP_NET_BIND_SERVICE`.
//!
//! # STANDARDS
//! RFC 3501 and RFC 9051 (IMAP), RFC 8314 (implicit TLS).
//!
//! # CONFIGURATION
//! `[imapd] listener = [{ name, address, role }]`, `allow_plaintext_auth`;
//! `[tls] cert_file, key_file`. See `deploy/postern.toml`.
//!
//! # DIAGNOSTICS
//! Logs to stderr (journald) with `daemon=imapd`. Exit status 0 after a clean
//! stop, 78 for a configuration error, 1 otherwise.
//!
//! # SEE ALSO
//! authd(8), lmtp-delivery(8), postern.toml(5)

use std::path::Path;

use postern_common::config::ImapRole;
use postern_common::listen::accept_tcp;
use postern_common::{Config, ConfigError, Context};
use tokio::io::AsyncWriteExt;

/// Checks beyond the shared configuration validation.
pub fn validate(cfg: &Config, file: &Path) -> Result<(), ConfigError> {
    if cfg.imapd.listener.is_empty() {
        return Err(ConfigError::new(
            file,
            "imapd.listener",
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
    if cfg.imapd.allow_plaintext_auth {
        tracing::warn!(
            "imapd.allow_plaintext_auth is set: passwords may cross the network unencrypted"
        );
    }
    let mut loops = tokio::task::JoinSet::new();
    for l in &cfg.imapd.listener {
        let listener = ctx.listeners.tcp(&l.name, &l.address)?;
        tracing::info!(listener = %l.name, address = %l.address, role = ?l.role, "listening");
        let role = l.role;
        let acceptor = acceptor.clone();
        loops.spawn(accept_tcp(l.name.clone(), listener, ctx.shutdown.clone(), move |stream, peer| {
            let acceptor = acceptor.clone();
            async move {
                let reply = b"* BYE [UNAVAILABLE] IMAP service not built yet\r\n";
                let result = if role == ImapRole::Imaps {
                    match acceptor.accept(stream).await {
                        Ok(mut tls) => tls.write_all(reply).await.and(tls.shutdown().await),
                        Err(e) => Err(e),
                    }
                } else {
                    let mut stream = stream;
                    stream.write_all(reply).await
                };
                tracing::info!(%peer, ?role, ok = result.is_ok(), "connection refused (not implemented)");
            }
        }));
    }
    ctx.ready("accepting connections");
    while loops.join_next().await.is_some() {}
    Ok(())
}
