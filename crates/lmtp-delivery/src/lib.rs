//! # NAME
//! lmtp-delivery — postern LMTP server writing Maildir
//!
//! # DESCRIPTION
//! The only process that writes mailboxes: takes mail over LMTP (RFC 2033)
//! on a Unix socket and optional TCP listeners, and writes each accepted
//! recipient's copy into its Maildir (fsynced before the per-recipient 250).
//!
//! **Status:** the skeleton binds the LMTP socket and listeners. The LMTP
//! engine and the Maildir writer are issue 6: until then each connection is
//! answered with `421 4.3.2` so that a client (queue-manager, Postfix)
//! keeps the mail queued.
//!
//! # SECURITY
//! Runs as the `vmail` user that owns the virtual mailboxes. The socket is
//! mode 0660 in the private socket directory.
//!
//! # STANDARDS
//! RFC 2033 (LMTP), RFC 5321.
//!
//! # CONFIGURATION
//! `[lmtp] socket, listener, mail_directory`. See `deploy/postern.toml`.
//!
//! # DIAGNOSTICS
//! Logs to stderr (journald) with `daemon=lmtp-delivery`. Exit status 0 after
//! a clean stop, 78 for a configuration error, 1 otherwise.
//!
//! # SEE ALSO
//! queue-manager(8), postern.toml(5)

pub mod deliver;

use std::path::Path;
use std::sync::Arc;

use postern_common::listen::{accept_tcp, accept_unix};
use postern_common::{Config, ConfigError, Context};
use tokio::io::AsyncWriteExt;

/// Checks beyond the shared configuration validation.
pub fn validate(_cfg: &Config, _file: &Path) -> Result<(), ConfigError> {
    Ok(())
}

/// Run until shutdown.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let cfg = ctx.config();
    let reply: Arc<str> = format!(
        "421 4.3.2 {} LMTP service not available: delivery engine not built yet\r\n",
        cfg.global.myhostname
    )
    .into();
    let uri = Config::socket_uri(&cfg.lmtp.socket);
    let unix = ctx.listeners.unix("lmtp", &uri, 0o660)?;
    tracing::info!(socket = %uri, "listening");
    let mut loops = tokio::task::JoinSet::new();
    let r = reply.clone();
    loops.spawn(accept_unix(
        "lmtp".into(),
        unix,
        ctx.shutdown.clone(),
        move |mut s| {
            let r = r.clone();
            async move {
                let _ = s.write_all(r.as_bytes()).await;
            }
        },
    ));
    for l in &cfg.lmtp.listener {
        let listener = ctx.listeners.tcp(&l.name, &l.address)?;
        tracing::info!(listener = %l.name, address = %l.address, "listening");
        let r = reply.clone();
        loops.spawn(accept_tcp(
            l.name.clone(),
            listener,
            ctx.shutdown.clone(),
            move |mut s, _| {
                let r = r.clone();
                async move {
                    let _ = s.write_all(r.as_bytes()).await;
                }
            },
        ));
    }
    ctx.ready("accepting LMTP connections");
    while loops.join_next().await.is_some() {}
    Ok(())
}
