//! # NAME
//! lmtp-delivery — postern LMTP server writing Maildir
//!
//! # DESCRIPTION
//! The only process that writes mailboxes: takes mail over LMTP (RFC 2033)
//! on a Unix socket and optional TCP listeners, and writes each accepted
//! recipient's copy into its Maildir (fsynced before the per-recipient 250).
//!
//! Recipients are looked up in authd (`LookupUser`, after removing a
//! `+extension`, which selects an existing folder of that name); unknown
//! users get `550 5.1.1`, an unreachable authd `451 4.3.0`. Each accepted
//! recipient's copy gets `Return-Path:` and `Delivered-To:` and is written
//! with `mailstore::deliver` (tmp, fsync, rename, directory fsync) before its
//! `250`; a full mailbox gets `552 5.2.2`, a mailbox that cannot be written
//! (disk full, permissions) `451 4.3.0`. The protocol engine is the shared
//! sans-I/O `smtp-proto` session in LMTP mode.
//!
//! **Duplicates.** LMTP is at-least-once: a client whose `250` got lost
//! (lmtp-delivery killed after writing, the client killed before recording
//! it) delivers the message again. lmtp-delivery recognises the retry — same
//! envelope sender, recipient and message bytes — through a record written
//! before the copy is renamed into `new/`, and answers `250` without a
//! second copy as long as the first one is still in the mailbox ([`dedupe`]).
//! Tested by killing each daemon during a burst (`tests/tests/crash.rs`).
//!
//! **Status:** working for virtual users owned by the daemon's user. Not yet:
//! delivery as other uids (system users' `~/Maildir`), new-mail notification
//! to imapd (imapd polls), BINARYMIME.
//!
//! # SECURITY
//! Runs as the `vmail` user that owns the virtual mailboxes. The socket is
//! mode 0660 in the private socket directory (a Postfix `lmtp(8)` client
//! needs the socket's group, or the TCP listener). Files: each mailbox's
//! Maildir, and in it `postern-lmtp-seen/` (duplicate records, removed after
//! six days; not a Maildir++ folder, so readers ignore it).
//!
//! # STANDARDS
//! RFC 2033 (LMTP), RFC 5321.
//!
//! # CONFIGURATION
//! `[lmtp] socket, listener, mail_directory`. See `deploy/postern.toml`.
//!
//! # DIAGNOSTICS
//! Logs to stderr (journald) with `daemon=lmtp-delivery`: `delivered` and
//! `delivery failed` per recipient (`rcpt`, `peer`), `duplicate suppressed:
//! delivered before` (with the existing file), `user lookup failed` (authd
//! down: `451 4.3.0`). Exit status 0 after
//! a clean stop, 78 for a configuration error, 1 otherwise.
//!
//! # SEE ALSO
//! queue-manager(8), postern.toml(5)

pub mod dedupe;
pub mod deliver;
pub mod identity;
pub mod session;

use std::path::Path;
use std::sync::Arc;

use postern_common::listen::{accept_tcp, accept_unix};
use postern_common::{Config, ConfigError, Context};

/// Checks beyond the shared configuration validation.
pub fn validate(_cfg: &Config, _file: &Path) -> Result<(), ConfigError> {
    Ok(())
}

/// Run until shutdown.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let cfg = ctx.config();
    let channel = postern_ipc::dial(
        &Config::socket_uri(&cfg.authd.socket),
        &postern_ipc::DialOptions::default(),
    )?;
    let shared = Arc::new(session::Shared {
        hostname: cfg.global.myhostname.clone(),
        auth: postern_ipc::auth::v1::auth_client::AuthClient::new(channel),
        message_size_limit: cfg.global.message_size_limit,
        delimiter: cfg.global.recipient_delimiter.clone(),
    });
    let uri = Config::socket_uri(&cfg.lmtp.socket);
    let unix = ctx.listeners.unix("lmtp", &uri, 0o660)?;
    tracing::info!(socket = %uri, "listening");
    let mut loops = tokio::task::JoinSet::new();
    let (sh, down) = (shared.clone(), ctx.shutdown.clone());
    loops.spawn(accept_unix(
        "lmtp".into(),
        unix,
        ctx.shutdown.clone(),
        move |s| session::run(sh.clone(), s, "unix".to_string(), down.clone()),
    ));
    for l in &cfg.lmtp.listener {
        let listener = ctx.listeners.tcp(&l.name, &l.address)?;
        tracing::info!(listener = %l.name, address = %l.address, "listening");
        let (sh, down) = (shared.clone(), ctx.shutdown.clone());
        loops.spawn(accept_tcp(
            l.name.clone(),
            listener,
            ctx.shutdown.clone(),
            move |s, peer| session::run(sh.clone(), s, peer.to_string(), down.clone()),
        ));
    }
    ctx.ready("accepting LMTP connections");
    while loops.join_next().await.is_some() {}
    Ok(())
}
