//! # NAME
//! imapd — postern IMAP server (143 STARTTLS, 993 implicit TLS)
//!
//! # DESCRIPTION
//! Serves the Maildirs written by lmtp-delivery to mail clients; logins go
//! through authd (SASL relayed with `SaslExchange`, mailbox path from
//! `LookupUser`).
//!
//! **Status (first protocol version, issue 8 core):** implemented are
//! CAPABILITY, NOOP, LOGOUT, ID, ENABLE (CONDSTORE, QRESYNC), NAMESPACE,
//! STARTTLS, LOGIN, AUTHENTICATE PLAIN/LOGIN (with SASL-IR); LIST/LSUB
//! (INBOX and Maildir++ folders `.Name` with `cur/`, special-use attributes,
//! separator `.`; LSUB filters by the `subscriptions` file; LIST-EXTENDED
//! selection options SUBSCRIBED, SPECIAL-USE (RECURSIVEMATCH, REMOTE
//! accepted), several patterns, RETURN (SUBSCRIBED CHILDREN SPECIAL-USE
//! STATUS (..)) with LIST-STATUS `* STATUS` lines), SELECT/EXAMINE,
//! STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT=0 SIZE HIGHESTMODSEQ),
//! CLOSE, UNSELECT,
//! CHECK; FETCH/UID FETCH with FLAGS, UID, RFC822.SIZE (the CRLF size),
//! INTERNALDATE, ENVELOPE (raw Date/Subject/Message-ID/In-Reply-To, addresses
//! parsed with mail-parser), BODYSTRUCTURE (with extension data: multipart
//! parameters, disposition, language, location; MD5 is NIL) and BODY
//! (without) from mail-parser's MIME tree, multipart and message/rfc822
//! nesting (described down to `parse::MAX_MIME_DEPTH` levels), sizes of
//! the still-encoded bodies, ALL/FAST/FULL, RFC822, RFC822.HEADER, RFC822.TEXT, BODY[]/BODY.PEEK[] with
//! sections `HEADER`, `TEXT`, `HEADER.FIELDS (..)`, `HEADER.FIELDS.NOT (..)`,
//! MIME parts `1`, `2.1`, `2.MIME`, `2.HEADER`, `2.TEXT`,
//! `2.HEADER.FIELDS[.NOT] (..)` (raw, still encoded),
//! and partials `<n.m>` (messages are sent with CRLF line ends; non-PEEK
//! fetches set `\Seen`); STORE/UID STORE (FLAGS, +FLAGS, -FLAGS, .SILENT) with
//! the system flags mapped to Maildir letters S R F T D; EXPUNGE, UID EXPUNGE;
//! SEARCH/UID SEARCH (`search` module) with every RFC 3501 key: ALL,
//! (UN)SEEN, (UN)DELETED, (UN)FLAGGED, (UN)ANSWERED, (UN)DRAFT, (UN)KEYWORD,
//! NEW/RECENT (match nothing: no message is ever `\Recent`), OLD, LARGER,
//! SMALLER, BEFORE/ON/SINCE (internal date, by UTC day), SENTBEFORE/SENTON/
//! SENTSINCE (the Date: header's day in its own zone), SUBJECT, FROM, TO,
//! CC, BCC, HEADER, BODY, TEXT (case-insensitive substring, first on the
//! raw message, then on the decoded form: RFC 2047 encoded words in headers,
//! text parts with their transfer encoding and charset undone by
//! mail-parser; header keys use the cached header, BODY and TEXT read a
//! message once per search however many keys need it), UID and sequence
//! sets, NOT, OR, parenthesised lists,
//! `CHARSET` UTF-8/US-ASCII (others: `[BADCHARSET]`), nesting bounded by
//! `search::MAX_SEARCH_DEPTH`; IDLE
//! (woken by the mail store's inotify watcher through `notify`: a delivery,
//! another session's or process's index change, or a foreign change in
//! `cur/` is reported at once; a slow poll every
//! `session::IDLE_POLL_WATCHED` (10 s) bounds a lost wake-up; without
//! inotify the mailbox is polled every 500 ms, skipping the directory scan
//! while the modification times of `new/`, `cur/` and the keyword list are
//! unchanged and older than two seconds); the selected mailbox is opened
//! watched (`mailstore::Mailbox::open_watched`), so a command's sync reads
//! only the index log and `new/`, not `cur/`; ENVELOPE, BODYSTRUCTURE and
//! BODY are kept in the mail store's message cache, and header sections,
//! header SEARCH keys and SORT/THREAD use the cached header, so they read a
//! message file at most once in its life; APPEND and COPY add the message
//! with its flags in one step (`mailstore::Mailbox::append`); untagged
//! EXPUNGE/EXISTS/FETCH FLAGS
//! (and FLAGS when the keyword list grows; flag changes are found against
//! this session's own last view, not the shared index, so another
//! session's change is reported even when that session synced first)
//! for other sessions' changes at NOOP, CHECK, EXPUNGE and IDLE, with MSNs
//! adjusted as each expunge is reported; CREATE,
//! DELETE (not INBOX), RENAME (subfolders move along, subscriptions follow;
//! `RENAME INBOX x` moves INBOX's messages into a new folder `x` and leaves
//! INBOX empty), SUBSCRIBE, UNSUBSCRIBE (Maildir++ `.Name`, the
//! `subscriptions` file); LIST attributes `\HasChildren`/`\HasNoChildren`
//! (CHILDREN); folder names in modified UTF-7, validated and stored on disk
//! as sent (as Dovecot does); keywords (custom flags, `PERMANENTFLAGS` with
//! `\*`): STORE, APPEND, FETCH FLAGS, SEARCH, kept by COPY/MOVE, stored as
//! Maildir letters `a`..`z` with Dovecot's `dovecot-keywords` list (26 per
//! mailbox; more gets `NO [LIMIT]`);
//! APPEND with flags and keywords (`APPENDLIMIT`, `[APPENDUID]`; the
//! date-time becomes the internal date);
//! COPY, MOVE and their UID forms with UIDPLUS `[COPYUID]` (flags, keywords
//! and the internal date are kept; copies are written with
//! `mailstore::deliver_dated`; MOVE between folders renames each file into
//! the destination's `cur/`, atomic per message, and falls back to copy and
//! expunge only when a rename is impossible); CONDSTORE (RFC 7162) from the mail store's
//! per-message MODSEQ: `HIGHESTMODSEQ` on SELECT/EXAMINE and in STATUS,
//! `SELECT (CONDSTORE)`, FETCH `MODSEQ` and `(CHANGEDSINCE n)`, STORE
//! `(UNCHANGEDSINCE n)` with `[MODIFIED set]`, SEARCH `MODSEQ` (the answer
//! ends with the highest MODSEQ of the matches; per-flag entries are
//! accepted and treated as the message's MODSEQ); once enabled, untagged
//! FETCH responses with FLAGS carry MODSEQ; QRESYNC (RFC 7162 section
//! 3.2): once enabled, expunges are reported as `* VANISHED uid-set`,
//! `SELECT/EXAMINE (QRESYNC (uidvalidity modseq [known-uids]))` answers
//! `* VANISHED (EARLIER)` and the flags changed since, `UID FETCH ...
//! (CHANGEDSINCE n VANISHED)` likewise. No expunge history is kept, so
//! VANISHED (EARLIER) lists every UID of the client's range that is gone
//! (a superset of those expunged since the given MODSEQ, which the client
//! handles; the sequence-match data is ignored); ESEARCH (RFC 4731): SEARCH and
//! UID SEARCH `RETURN (MIN MAX COUNT ALL)` answered with `* ESEARCH`;
//! SEARCHRES (RFC 5182): `RETURN (SAVE)` keeps the result's UIDs for `$`
//! in FETCH/STORE/COPY/MOVE/SEARCH (and `UID $`) until the next SELECT,
//! CLOSE or UNSELECT;
//! SORT/UID SORT (RFC 5256: ARRIVAL CC DATE FROM SIZE SUBJECT TO, REVERSE;
//! a simplified base subject without MIME decoding), THREAD=ORDEREDSUBJECT
//! and THREAD=REFERENCES (Message-ID/References/In-Reply-To threading with
//! empty containers pruned; step 5's subject gathering simplified to "roots
//! with the same base subject go under the earliest one"; reply chains are
//! cut at `sort::MAX_THREAD_DEPTH` so crafted References cannot exhaust
//! the stack) (`sort` module); QUOTA (RFC 9208, `QUOTA=RES-STORAGE`): GETQUOTAROOT
//! and GETQUOTA report one root `""` with the directory's quota and the
//! on-disk size of all folders (from the `S=` in the file names), SETQUOTA
//! is refused (quotas are set with `mailctl user quota`); COMPRESS=DEFLATE
//! (RFC 4978, raw deflate both ways with a sync flush per write, after
//! login; inflated input is bounded like any command with its literals);
//! BINARY (RFC 3516): FETCH `BINARY[part]`, `BINARY.PEEK[part]` with
//! partials and `BINARY.SIZE[part]` undo base64 and quoted-printable
//! (`NO [UNKNOWN-CTE]` for other encodings), data with a NUL is sent as a
//! literal8 `~{n}`, and `~{n}` literals are accepted in commands.
//!
//! Tested with Python's imaplib (`tests/tests/imap.rs`,
//! `tests/tests/imap_features.rs`, `tests/tests/imap_rev2.rs`) and Debian's real clients
//! (`tests/tests/imap_clients.rs`): mbsync syncing INBOX and two folders
//! both ways over STARTTLS with certificate verification, fetchmail over
//! IMAP, mutt reading and moving a message, and mutt resynchronising with
//! its header cache through CONDSTORE/QRESYNC.
//!
//! IMAP4rev2 (RFC 9051) is advertised beside IMAP4rev1; after `ENABLE
//! IMAP4rev2` a session gets the rev2 forms: mailbox names in UTF-8 both
//! ways (quoted strings may hold UTF-8; names stay modified UTF-7 on disk,
//! so IMAP4rev1 sessions see the same mailboxes), SELECT/EXAMINE without
//! `* n RECENT` and `[UNSEEN]` but with the mailbox's `* LIST` line, SEARCH
//! and UID SEARCH answered with `* ESEARCH` (a plain SEARCH is `RETURN
//! (ALL)`). In both modes: `[CLOSED]` when SELECT/EXAMINE closes a
//! mailbox (rev2 or QRESYNC enabled), STATUS `DELETED` and `SIZE`, LIST
//! `\NonExistent` (IMAP4rev1 without LIST-EXTENDED syntax: `\Noselect`)
//! for hierarchy parents without a mailbox of their own (`a` of `a.b`) and,
//! with `(SUBSCRIBED)`, for subscriptions whose mailbox is gone.
//!
//! **Grammar.** Commands are decoded by imap-codec (the `codec` module,
//! the one place that knows it): [`parse::frame`] finds a command's end and
//! its literals (sending `+` for `{n}`, not for `{n+}`), imap-codec parses
//! it into imap-types, and `codec` lowers that into the session's tokens;
//! what a mailbox, flag, set or search key means is imapd's own. imap-codec
//! has no grammar for LIST-EXTENDED/LIST-STATUS command syntax, ESEARCH
//! `RETURN (..)` and SEARCHRES `$`: commands of exactly those shapes fall
//! back to the old bounded tokenizer (`parse::tokenize`); see `codec`.
//!
//! **Not implemented yet:** charsets
//! other than UTF-8/US-ASCII in SEARCH, SCRAM-SHA-256 over IMAP,
//! IMAP4rev2's LIST `OLDNAME` (UTF-8 names are not NFC-normalised).
//!
//! # SECURITY
//! LOGIN and AUTHENTICATE are refused before STARTTLS (`LOGINDISABLED` is
//! advertised) unless `imapd.allow_plaintext_auth` (a warning is logged at
//! start). Anything pipelined after STARTTLS is discarded. Command lines,
//! and before login commands with their literals, are limited to
//! `parse::MAX_COMMAND` (64 KiB): a longer line gets a tagged `BAD` and
//! `* BYE`; a `{n}` literal over the bound is refused before the client
//! sends it (tagged `BAD`, or `NO [TOOBIG]` for APPEND after login) and the
//! session goes on, a `{n+}` one (its data is already on the way) gets the
//! same answer and `* BYE`. Anything imap-codec cannot decode is answered
//! `BAD` (search nesting is bounded by imap-codec too);
//! `session::MAX_FAILED_COMMANDS` failed commands close the
//! connection; idle sessions are closed after 30 minutes once logged in
//! (RFC 9051) and after 60 seconds before. Folder names containing `/`,
//! `..`, starting with `.`, longer than `session::MAX_FOLDER_NAME`, not
//! 7-bit or with invalid modified UTF-7 are refused; keywords are atoms of
//! at most `session::MAX_KEYWORD_LEN` bytes. Literals larger than a command
//! line are accepted only after login, up to `parse::APPEND_LIMIT` (25 MiB)
//! and held in memory. Failed logins go through authd's
//! brute-force delay. Runs as `vmail`, the owner of the mailboxes.
//!
//! # STANDARDS
//! RFC 3501 (IMAP4rev1), RFC 9051 (IMAP4rev2, after `ENABLE IMAP4rev2`),
//! RFC 2177
//! (IDLE), RFC 2342 (NAMESPACE), RFC 3691 (UNSELECT), RFC 2971 (ID),
//! RFC 3348 (CHILDREN), RFC 7162 (CONDSTORE), RFC 8438 (STATUS=SIZE),
//! RFC 9208 (QUOTA), RFC 4978 (COMPRESS), RFC 3516 (BINARY), RFC 5182 (SEARCHRES), RFC 4731 (ESEARCH), RFC 5256 (SORT, THREAD), RFC 5258 (LIST-EXTENDED), RFC 5819 (LIST-STATUS),
//! RFC 5161 (ENABLE), RFC 7888 (LITERAL+), RFC 4959 (SASL-IR), RFC 4315
//! (UIDPLUS), RFC 6851 (MOVE), RFC 7889 (APPENDLIMIT), RFC 6154
//! (special-use attributes in LIST), RFC 8314 (implicit TLS).
//!
//! # CONFIGURATION
//! `[imapd] listener = [{ name, address, role = "imap" | "imaps" }]`,
//! `allow_plaintext_auth` (false), `mail_max_userip_connections`
//! (logged-in sessions per user and client address; default 0 = no limit,
//! Dovecot's 10 is a good production value),
//! `client_connection_count_limit` (connections per client address, logged
//! in or not; one more gets `* BYE` before any TLS; default 0 = no limit); `[tls] cert_file, key_file`; `[authd] socket`.
//! See `deploy/postern.toml`.
//!
//! # DIAGNOSTICS
//! `refused: client_connection_count_limit` for a connection over the
//! per-address limit; `login refused: mail_max_userip_connections` when a
//! login is over the
//! per-user-and-address limit (the client gets `NO [LIMIT]`).
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

pub mod codec;
pub mod notify;
pub mod parse;
pub mod search;
pub mod session;
pub mod sort;

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
        max_userip: cfg.imapd.mail_max_userip_connections,
        max_per_ip: cfg.imapd.client_connection_count_limit,
        userip: Default::default(),
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
