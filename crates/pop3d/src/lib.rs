//! # NAME
//! pop3d — postern POP3 server (110 with STLS, 995 with implicit TLS)
//!
//! # DESCRIPTION
//! Serves INBOX of the Maildirs written by lmtp-delivery to POP3 clients
//! (fetchmail, Thunderbird, phones). RFC 1939 commands USER, PASS, STAT,
//! LIST, RETR, DELE, NOOP, RSET, QUIT, TOP, UIDL; RFC 2449 CAPA with
//! RESP-CODES, AUTH-RESP-CODE, PIPELINING, LOGIN-DELAY (when configured);
//! RFC 2595 STLS; RFC 5034 AUTH (PLAIN, LOGIN, SCRAM-SHA-256, with initial
//! response) relayed to authd. Response codes: `[AUTH]` for refused
//! credentials, `[SYS/TEMP]` when authd or the store fails, `[SYS/PERM]`
//! for a user without mailbox, `[IN-USE]`, `[LOGIN-DELAY]`.
//! Protocol logic is the sans-I/O `pop3-proto` crate; this crate does the I/O.
//!
//! Messages are sent with CRLF line ends and dot-stuffing whatever is on
//! disk; RETR's octet count equals LIST's size. UIDLs come from the mail
//! store and equal IMAP's INBOX UID and UIDVALIDITY (`%08X%08X`), so
//! switching between POP3 and IMAP clients does not download mail twice.
//! Deletions happen at QUIT (UPDATE state) only. One POP3 session per
//! mailbox at a time (`-ERR [IN-USE]`); IMAP sessions may run alongside.
//!
//! # SECURITY
//! Plaintext logins (USER/PASS, AUTH PLAIN/LOGIN) only after TLS unless
//! `pop3d.allow_plaintext_auth` (a warning is logged at start). APOP is
//! never enabled: the banner carries no timestamp and APOP answers `-ERR`
//! (it needs clear-text-equivalent stored passwords, which authd does not
//! keep). Failed logins go through authd's brute-force delay; after
//! `pop3_proto::MAX_FAILED_COMMANDS` (10) failed commands (parse errors,
//! refused commands, failed logins, APOP) the connection is closed with
//! `-ERR Too many errors`. Sessions idle for `pop3d.idle_timeout` (10
//! minutes, RFC 1939) get `-ERR Autologout` and are closed.
//! `pop3d.login_delay` refuses a user's login that comes sooner than that
//! after the previous one (`-ERR [LOGIN-DELAY]`). Runs as `vmail`, the
//! owner of the mailboxes. A system user's `~/Maildir` (authd gives its
//! uid:gid) is opened, read and expunged with that user's file-system
//! identity (`postern_common::identity`: per-thread `setfsuid`/`setfsgid`
//! on the blocking call, restored after it), which needs `CAP_SETUID` and
//! `CAP_SETGID` (the systemd drop-in in the README's "System users'
//! mail"); without them the login gets `-ERR [SYS/TEMP]`.
//!
//! Listing a mailbox (STAT, LIST, UIDL) never reads message bodies: sizes
//! come from the `S=`/`W=` parts of the file names and UIDs from the mail
//! store's index (tested on 100,000 messages).
//!
//! # STANDARDS
//! RFC 1939, RFC 2449, RFC 2595, RFC 3206, RFC 5034, RFC 8314.
//!
//! # CONFIGURATION
//! `[pop3d] listener = [{ name, address, role = "pop3" | "pop3s" }]`,
//! `allow_plaintext_auth` (false), `idle_timeout` ("10m"; shorter values
//! are accepted with a warning), `login_delay` ("0s": off);
//! `[tls] cert_file, key_file`;
//! `[authd] socket`. See `deploy/postern.toml`.
//!
//! # DIAGNOSTICS
//! One `connected` / `logged in user=… messages=…` / `logout deleted=…` /
//! `disconnected` line per session, with `session` and `remote` fields;
//! `login refused: login_delay`; a warning at start for
//! `allow_plaintext_auth` and for an `idle_timeout` under 10 minutes.
//! Exit status 0 after a clean stop, 78 for a configuration error, 1 otherwise.
//!
//! # SEE ALSO
//! authd(8), imapd(8), lmtp-delivery(8), postern.toml(5)

use std::path::Path;
use std::sync::Arc;

use pop3_proto::Capabilities;
use postern_common::config::Pop3Role;
use postern_common::listen::accept_tcp;
use postern_common::{Config, ConfigError, Context};
use postern_ipc::auth::v1 as pb;

pub mod mailstore_store;
pub mod session;
pub mod store;

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

/// The capabilities pop3d implements (filtered per session state);
/// `login_delay` is `pop3d.login_delay` (announced when not zero).
pub fn capabilities(login_delay: std::time::Duration) -> Capabilities {
    Capabilities {
        login_delay: (!login_delay.is_zero())
            .then(|| u32::try_from(login_delay.as_secs().max(1)).unwrap_or(u32::MAX)),
        top: true,
        uidl: true,
        user: true,
        resp_codes: true,
        auth_resp_code: true,
        pipelining: true,
        sasl: session::MECHANISMS.iter().map(|m| m.to_string()).collect(),
        stls: true,
        implementation: Some(format!("postern-pop3d {}", env!("CARGO_PKG_VERSION"))),
        ..Default::default()
    }
}

/// Run until shutdown.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let cfg = ctx.config();
    let tls = postern_common::tls::from_config(&cfg, &ctx.config_path)?;
    if cfg.pop3d.allow_plaintext_auth {
        tracing::warn!(
            "pop3d.allow_plaintext_auth is set: passwords may cross the network unencrypted"
        );
    }
    if cfg.pop3d.idle_timeout < session::IDLE_TIMEOUT {
        tracing::warn!(
            idle_timeout = ?cfg.pop3d.idle_timeout,
            "pop3d.idle_timeout is below RFC 1939's minimum of 10 minutes"
        );
    }
    let channel = postern_ipc::dial(
        &Config::socket_uri(&cfg.authd.socket),
        &postern_ipc::DialOptions::default(),
    )?;
    let shared = Arc::new(session::Shared {
        hostname: cfg.global.myhostname.clone(),
        acceptor: tokio_rustls::TlsAcceptor::from(tls),
        auth: pb::auth_client::AuthClient::new(channel),
        store: Arc::new(mailstore_store::MailstoreStore),
        allow_plaintext: cfg.pop3d.allow_plaintext_auth,
        capabilities: capabilities(cfg.pop3d.login_delay),
        idle_timeout: cfg.pop3d.idle_timeout,
        login_delay: cfg.pop3d.login_delay,
        last_login: Default::default(),
    });
    let mut loops = tokio::task::JoinSet::new();
    for l in &cfg.pop3d.listener {
        let listener = ctx.listeners.tcp(&l.name, &l.address)?;
        tracing::info!(listener = %l.name, address = %l.address, role = ?l.role, "listening");
        let implicit = l.role == Pop3Role::Pop3s;
        let shared = shared.clone();
        let shutdown = ctx.shutdown.clone();
        loops.spawn(accept_tcp(
            l.name.clone(),
            listener,
            ctx.shutdown.clone(),
            move |stream, peer| {
                session::run(shared.clone(), stream, peer, implicit, shutdown.clone())
            },
        ));
    }
    ctx.ready("accepting connections");
    while loops.join_next().await.is_some() {}
    Ok(())
}
