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
//! **Junk.** A message carrying smtpd's `X-Postern-Junk: yes` (DMARC
//! `p=quarantine`, `[checks.dmarc] quarantine_action = "junk"`) above its
//! first `Received:` field goes into the recipient's `Junk` folder instead
//! of INBOX or a `+extension` folder. Every `X-Postern-Junk` field is
//! removed from the stored copy; one below the first `Received:` (written
//! by the sender, not by smtpd) is ignored ([`junk`]). By the same rule,
//! `Authentication-Results` fields naming our `myhostname` below the first
//! `Received:` are forged and removed before the message is stored (RFC
//! 8601 section 5).
//!
//! **Mailbox owners.** authd's `UserInfo` says who owns a mailbox: uid 0
//! (virtual users) means the daemon's own user, `vmail`. A user with another
//! uid:gid — a system user (`[authd.directory] backend = "system"`, mailbox
//! `~/Maildir`), or an SQL row with `uid`/`gid` — has its whole delivery
//! done with that identity ([`identity`]): the `+extension` folder lookup,
//! the duplicate check, the quota count, creating the Maildir and its
//! default folders on first delivery, the message, and the duplicate record.
//! It runs on the blocking delivery thread with Linux `setfsuid`/`setfsgid`
//! (per thread; checked to have taken effect; always restored by a guard,
//! also on error or panic, before the thread delivers the next recipient).
//! Files and directories are therefore created owned by the user, and the
//! kernel applies the user's permission checks, so lmtp-delivery can write
//! nothing the user could not (a symlinked `~/Maildir` pointing into someone
//! else's files is no use). This was chosen over "create as the daemon,
//! then `fchown`", which would check the daemon's permissions in a directory
//! the user controls and leave a window with files of the wrong owner.
//! If the daemon lacks `CAP_SETUID`/`CAP_SETGID` (see SECURITY) the switch
//! is not even attempted (the shipped unit's system-call filter would kill
//! the process for it), and if it is attempted but does not take effect,
//! the same happens: the recipient gets `451 4.3.0` (the client keeps the
//! mail queued) and `delivery failed` is logged with the reason; nothing is
//! written.
//!
//! **Root.** No identity switch ever goes to root: uid 0 in the contract
//! means "the daemon's own" (so a daemon itself run as root, as in the
//! test suite, writes such mailboxes as root: do not run it as root), the `system` backend treats accounts below
//! `system_min_uid` (root, daemons) as disabled (`550 5.2.1`: route their
//! mail with an alias such as `root: alice`, as Postfix's `local(8)` setups
//! do), and an owner with a real uid but group 0 is refused at RCPT with
//! `550 5.7.1` and `mailbox owner refused` in the log (permanent: the
//! directory entry is wrong, retrying cannot help).
//!
//! **Status:** working for virtual users (owned by the daemon's user) and
//! for users with a uid/gid of their own (system users' `~/Maildir`). Not
//! yet: new-mail notification to imapd (imapd polls), BINARYMIME. pop3d and
//! imapd still access mailboxes as `vmail`: they cannot open a system
//! user's private `~/Maildir` (POP3/IMAP for system users: not yet).
//!
//! # SECURITY
//! Runs as the `vmail` user that owns the virtual mailboxes. The socket is
//! mode 0660 in the private socket directory (a Postfix `lmtp(8)` client
//! needs the socket's group, or the TCP listener). Files: each mailbox's
//! Maildir, and in it `postern-lmtp-seen/` (duplicate records, removed after
//! six days; not a Maildir++ folder, so readers ignore it). In a system
//! user's Maildir the records are the user's too: tampering with them can
//! only suppress or duplicate that user's own mail, and a record is read
//! with the user's identity, bounded, and never followed outside the
//! Maildir.
//!
//! Delivering to system users needs `CAP_SETUID` and `CAP_SETGID` (for
//! `setfsuid`/`setfsgid`), access to `/home`, and those two calls past the
//! system-call filter. The shipped unit grants none of this: most
//! installations serve virtual users only, and the capabilities would let a
//! compromised lmtp-delivery write as any non-root user. Enable it with a
//! drop-in (`systemctl edit postern-lmtp-delivery`):
//!
//! ```text
//! [Service]
//! AmbientCapabilities=CAP_SETUID CAP_SETGID
//! CapabilityBoundingSet=CAP_SETUID CAP_SETGID
//! SystemCallFilter=setfsuid setfsgid
//! ProtectHome=no
//! ReadWritePaths=/home
//! ```
//!
//! The capabilities are used only for the file-system identity of the
//! delivery thread, never to change the process's real or effective ids.
//! Supplementary groups are not switched: the daemon's own (`postern`)
//! stay in the permission checks while writing a user's Maildir.
//!
//! # STANDARDS
//! RFC 2033 (LMTP), RFC 5321.
//!
//! # CONFIGURATION
//! `[lmtp] socket, listener, mail_directory`. See `deploy/postern.toml`.
//!
//! # DIAGNOSTICS
//! Logs to stderr (journald) with `daemon=lmtp-delivery`: `delivered` and
//! `delivery failed` per recipient (`rcpt`, `peer`, `uid` when written as
//! another user; the error names a
//! failed identity switch and the missing capabilities), `duplicate
//! suppressed: delivered before` (with the existing file), `user lookup
//! failed` (authd down: `451 4.3.0`), `mailbox owner refused` (group 0:
//! `550 5.7.1`), `cannot restore the file-system identity; aborting` (a
//! broken invariant: the process aborts rather than deliver on as someone
//! else). Exit status 0 after
//! a clean stop, 78 for a configuration error, 1 otherwise.
//!
//! # SEE ALSO
//! queue-manager(8), postern.toml(5)

pub mod dedupe;
pub mod deliver;
/// The file-system identity switch (shared with pop3d, in `postern-common`).
pub use postern_common::identity;
pub mod junk;
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
