//! # NAME
//! imapd — postern IMAP server (143 STARTTLS, 993 implicit TLS)
//!
//! # DESCRIPTION
//! Serves the Maildirs written by lmtp-delivery to mail clients; logins go
//! through authd (SASL relayed with `SaslExchange`, mailbox path from
//! `LookupUser`).
//!
//! **Status (first protocol version, issue 8 core):** implemented are
//! CAPABILITY, NOOP, LOGOUT, ID, ENABLE (enables nothing), NAMESPACE,
//! STARTTLS, LOGIN, AUTHENTICATE PLAIN/LOGIN (with SASL-IR); LIST/LSUB
//! (INBOX and Maildir++ folders `.Name` with `cur/`, special-use attributes,
//! separator `.`; LSUB filters by the `subscriptions` file), SELECT/EXAMINE,
//! STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT=0), CLOSE, UNSELECT,
//! CHECK; FETCH/UID FETCH with FLAGS, UID, RFC822.SIZE (the CRLF size),
//! INTERNALDATE, ENVELOPE (raw Date/Subject/Message-ID/In-Reply-To, addresses
//! parsed with mail-parser), BODYSTRUCTURE and BODY (from mail-parser's MIME
//! tree, multipart and message/rfc822 nesting, without extension data; sizes
//! of the still-encoded bodies), ALL/FAST/FULL, RFC822, RFC822.HEADER, RFC822.TEXT, BODY[]/BODY.PEEK[] with
//! sections `HEADER`, `TEXT`, `HEADER.FIELDS (..)`, `HEADER.FIELDS.NOT (..)`,
//! MIME parts `1`, `2.1`, `2.MIME`, `2.HEADER`, `2.TEXT` (raw, still encoded),
//! and partials `<n.m>` (messages are sent with CRLF line ends; non-PEEK
//! fetches set `\Seen`); STORE/UID STORE (FLAGS, +FLAGS, -FLAGS, .SILENT) with
//! the system flags mapped to Maildir letters S R F T D; EXPUNGE, UID EXPUNGE;
//! SEARCH/UID SEARCH with ALL, (UN)SEEN, (UN)DELETED, (UN)FLAGGED,
//! (UN)ANSWERED, (UN)DRAFT, SUBJECT, FROM, TO, CC, BCC, HEADER, BODY, TEXT
//! (ASCII case-insensitive substring on the raw, undecoded message; each
//! text search reads every message), UID sets and sequence sets (keys are
//! ANDed); IDLE
//! (the mailbox is polled every 500 ms); untagged EXPUNGE/EXISTS/FETCH FLAGS
//! for other sessions' changes at NOOP, CHECK, EXPUNGE and IDLE, with MSNs
//! adjusted as each expunge is reported; CREATE,
//! DELETE (not INBOX), SUBSCRIBE, UNSUBSCRIBE (Maildir++ `.Name`, the
//! `subscriptions` file);
//! APPEND with system flags (`APPENDLIMIT`, `[APPENDUID]`; the optional
//! date-time is accepted but the internal date is the time of the APPEND);
//! COPY, MOVE and their UID forms with UIDPLUS `[COPYUID]` (flags are kept;
//! copies are written with `mailstore::deliver`).
//!
//! **Not implemented yet:** BODYSTRUCTURE extension data (disposition,
//! language, MD5), `HEADER.FIELDS` inside MIME parts, MIME-decoding or charset-aware text search,
//! date and size SEARCH keys, OR/NOT, keywords (custom flags), RENAME,
//! CONDSTORE/QRESYNC, SCRAM-SHA-256 over IMAP, a
//! stored APPEND date-time. MOVE is not atomic (copy, then expunge). An IMAP
//! codec crate (imap-codec 2.0.0-alpha) was not evaluated: the work started
//! too close to the deadline, so commands are read by a small bounded,
//! hand-written tokenizer (`parse`) covering the commands above.
//!
//! # SECURITY
//! LOGIN and AUTHENTICATE are refused before STARTTLS (`LOGINDISABLED` is
//! advertised) unless `imapd.allow_plaintext_auth` (a warning is logged at
//! start). Anything pipelined after STARTTLS is discarded. Commands with
//! their literals are limited to `parse::MAX_COMMAND` (64 KiB; larger gets
//! `* BYE`); `session::MAX_FAILED_COMMANDS` failed commands close the
//! connection; idle sessions are closed after 30 minutes once logged in
//! (RFC 9051) and after 60 seconds before. Folder names containing `/`,
//! `..` or starting with `.` are refused. Literals larger than a command
//! line are accepted only after login, up to `parse::APPEND_LIMIT` (25 MiB)
//! and held in memory. Failed logins go through authd's
//! brute-force delay. Runs as `vmail`, the owner of the mailboxes.
//!
//! # STANDARDS
//! RFC 3501 (IMAP4rev1; IMAP4rev2/RFC 9051 is not advertised), RFC 2177
//! (IDLE), RFC 2342 (NAMESPACE), RFC 3691 (UNSELECT), RFC 2971 (ID),
//! RFC 5161 (ENABLE), RFC 7888 (LITERAL+), RFC 4959 (SASL-IR), RFC 4315
//! (UIDPLUS), RFC 6851 (MOVE), RFC 7889 (APPENDLIMIT), RFC 6154
//! (special-use attributes in LIST), RFC 8314 (implicit TLS).
//!
//! # CONFIGURATION
//! `[imapd] listener = [{ name, address, role = "imap" | "imaps" }]`,
//! `allow_plaintext_auth`; `[tls] cert_file, key_file`; `[authd] socket`.
//! See `deploy/postern.toml`.
//!
//! # DIAGNOSTICS
//! One `connected` / `logged in user=…` / `disconnected` line per session,
//! with `session` and `remote` fields. Exit status 0 after a clean stop, 78
//! for a configuration error, 1 otherwise.
//!
//! # SEE ALSO
//! authd(8), pop3d(8), lmtp-delivery(8), postern.toml(5)

use std::path::Path;
use std::sync::Arc;

use postern_common::config::ImapRole;
use postern_common::listen::accept_tcp;
use postern_common::{Config, ConfigError, Context};
use postern_ipc::auth::v1 as pb;

pub mod parse;
pub mod session;

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
    if cfg.imapd.allow_plaintext_auth {
        tracing::warn!(
            "imapd.allow_plaintext_auth is set: passwords may cross the network unencrypted"
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
        allow_plaintext: cfg.imapd.allow_plaintext_auth,
    });
    let mut loops = tokio::task::JoinSet::new();
    for l in &cfg.imapd.listener {
        let listener = ctx.listeners.tcp(&l.name, &l.address)?;
        tracing::info!(listener = %l.name, address = %l.address, role = ?l.role, "listening");
        let implicit = l.role == ImapRole::Imaps;
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
