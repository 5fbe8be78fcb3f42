//! # NAME
//! pop3d — postern POP3 server (110 STLS, 995 implicit TLS)
//!
//! # DESCRIPTION
//! Serves the Maildirs written by lmtp-delivery to mail clients; logins go
//! through authd.
//!
//! **Status:** the daemon skeleton is in place (configuration, listeners with
//! socket activation, TLS certificate loading, graceful shutdown). The
//! protocol itself is not wired in yet (issue 7): every connection gets
//! `-ERR [SYS/TEMP] POP3 service not built yet` and is closed.
//!
//! # SECURITY
//! Runs as the `postern` user (mailbox access as the mailbox owner comes with
//! the protocol work); ports below 1024 come from systemd `.socket` units or
//! `CAP_NET_BIND_SERVICE`.
//!
//! # STANDARDS
//! RFC 1939 (POP3), RFC 2449 (CAPA), RFC 2595 (STLS).
//!
//! # CONFIGURATION
//! `[pop3d] listener = [{ name, address, role }]`, `allow_plaintext_auth`;
//! `[tls] cert_file, key_file`. See `deploy/postern.toml`.
//!
//! # DIAGNOSTICS
//! Logs to stderr (journald) with `daemon=pop3d`. Exit status 0 after a clean
//! stop, 78 for a configuration error, 1 otherwise.
//!
//! # SEE ALSO
//! authd(8), lmtp-delivery(8), postern.toml(5)

use std::path::Path;

use postern_common::config::Pop3Role;
use postern_common::listen::accept_tcp;
use postern_common::{Config, ConfigError, Context};
use tokio::io::AsyncWriteExt;

/// Checks beyond the shared configuration validation.
pub fn validate(cfg: &Config, file: &Path) -> Result<(), ConfigError> {
    if cfg.pop3d.listener.is_empty() {
        return Err(ConfigError::new(
            file,
            "pop3d.listener",
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
    if cfg.pop3d.allow_plaintext_auth {
        tracing::warn!(
            "pop3d.allow_plaintext_auth is set: passwords may cross the network unencrypted"
        );
    }
    let mut loops = tokio::task::JoinSet::new();
    for l in &cfg.pop3d.listener {
        let listener = ctx.listeners.tcp(&l.name, &l.address)?;
        tracing::info!(listener = %l.name, address = %l.address, role = ?l.role, "listening");
        let role = l.role;
        let acceptor = acceptor.clone();
        loops.spawn(accept_tcp(l.name.clone(), listener, ctx.shutdown.clone(), move |stream, peer| {
            let acceptor = acceptor.clone();
            async move {
                let reply = b"-ERR [SYS/TEMP] POP3 service not built yet\r\n";
                let result = if role == Pop3Role::Pop3s {
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
