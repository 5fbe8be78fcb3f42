//! One SMTP connection on the shared `smtp-proto` engine: the engine does
//! sequencing, pipelining, DATA/BDAT framing and limits; this module answers
//! its events with authd (recipients, AUTH) and queue-manager (the message).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ipnet::IpNet;
use postern_common::Shutdown;
use postern_common::config::{BareNewline, SmtpRole};
use postern_common::conn::Conn;
use postern_ipc::auth::v1 as apb;
use postern_ipc::queue::v1 as qpb;
use postern_ipc::sasl::{SaslExchange, SaslStep};
use smtp_proto::{
    BareNewlinePolicy, Body, Capability, Command, EnhancedCode, Event, Reply, Ret, Session,
    SessionConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::Channel;

use crate::enqueue::EnqueueStream;
use crate::headers::{Additions, HeaderFixer};
use crate::limits::Limits;
use crate::policy::{in_mynetworks, rcpt_verdict};
use crate::received::{Trace, received};
use postern_checks::{Action, Connection, PipelineSession, Role as CheckRole, Verdict};

/// Bytes read from the client at a time.
const READ_CHUNK: usize = 64 * 1024;

/// What every session shares.
pub struct Shared {
    pub hostname: String,
    pub acceptor: TlsAcceptor,
    pub auth: apb::auth_client::AuthClient<Channel>,
    pub queue: qpb::queue_client::QueueClient<Channel>,
    pub mynetworks: Vec<IpNet>,
    pub message_size_limit: u64,
    pub limits: Arc<Limits>,
    /// `[smtpd]` settings (limits, timeouts, VRFY).
    pub cfg: postern_common::config::SmtpdConfig,
    /// The check pipeline (`[checks.*]`).
    pub checks: postern_checks::Pipeline,
}

fn r(code: u16, enh: (u8, u16, u16), text: &str) -> Reply {
    Reply::new(code, Some(EnhancedCode(enh.0, enh.1, enh.2)), text)
}

#[derive(Default)]
struct Txn {
    envelope: qpb::Envelope,
    stream: Option<EnqueueStream>,
    failed: bool,
    /// Submission: adds a missing Date/Message-ID.
    fixer: Option<HeaderFixer>,
    /// A copy of the message as queued, for the end-of-data checks (kept
    /// only when a check runs on this connection; bounded by the engine's
    /// `message_size_limit`).
    copy: Option<Vec<u8>>,
    /// Verdicts other than refusals given at MAIL and RCPT (applied to the
    /// message at end-of-data with the data stage's).
    verdicts: Vec<Verdict>,
}

struct State {
    helo: String,
    esmtp: bool,
    auth_user: Option<String>,
    sasl: Option<SaslExchange>,
    txn: Txn,
    session_id: String,
    /// Messages started in this session (for Message-ID uniqueness).
    messages: u32,
    /// This connection's side of the check pipeline.
    checks: PipelineSession,
    /// Error replies (4xx/5xx) given by `handle`, for the tarpit.
    errors: u32,
    /// Verdicts other than refusals given at connect and at the last
    /// HELO/EHLO: they apply to every message of the session.
    connect_verdicts: Vec<Verdict>,
    helo_verdicts: Vec<Verdict>,
}

impl State {
    /// Bring what the checks know about the client up to date.
    fn sync_checks(&mut self, tls: bool) {
        let c = &mut self.checks.conn;
        c.helo.clone_from(&self.helo);
        c.tls = tls;
        c.auth_user.clone_from(&self.auth_user);
    }
}

/// The SMTP reply for a refusing verdict.
fn refusal_reply(v: &Verdict) -> Reply {
    match &v.action {
        Action::Reject {
            code,
            enhanced,
            text,
        }
        | Action::TempFail {
            code,
            enhanced,
            text,
        } => r(*code, *enhanced, text),
        _ => r(451, (4, 3, 0), "Temporary failure, try again later"),
    }
}

/// Serve one connection.
pub async fn run(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    role: SmtpRole,
    shutdown: Shutdown,
) {
    let session_id = postern_common::session_id();
    let span = tracing::info_span!("session", id = %session_id, remote = %peer);
    let _e = span.enter();
    let _permit = match shared.limits.admit(peer.ip()) {
        Ok(p) => p,
        Err(refusal) => {
            tracing::warn!(?role, limit = ?refusal, "connection refused by limit");
            postern_common::metrics::connection_refused(match refusal {
                crate::limits::Refusal::Total => "max_connections",
                crate::limits::Refusal::PerIp => "client_connection_count",
                crate::limits::Refusal::Rate => "client_connection_rate",
            });
            let mut stream = stream;
            let reply = Reply::new(
                421,
                Some(EnhancedCode(4, 7, 0)),
                format!("{} {}", shared.hostname, refusal.text()),
            );
            let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&reply.encode()))
                .await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    let tls_timeout = shared.cfg.smtpd_starttls_timeout;
    let mut conn = if role == SmtpRole::Submissions {
        match tokio::time::timeout(tls_timeout, Conn::accept_tls(stream, &shared.acceptor)).await {
            Ok(Ok(c)) => c,
            _ => {
                tracing::info!("TLS handshake failed");
                return;
            }
        }
    } else {
        Conn::Plain(stream)
    };
    let submission = role != SmtpRole::Mx;
    let mut session = Session::new(SessionConfig {
        message_size_limit: shared.message_size_limit,
        hostname: shared.hostname.clone(),
        tls_required: role == SmtpRole::Submission,
        auth_required: submission,
        max_recipients: shared.cfg.smtpd_recipient_limit,
        hard_error_limit: shared.cfg.smtpd_hard_error_limit,
        junk_command_limit: shared.cfg.smtpd_junk_command_limit,
        bare_newline: match shared.cfg.smtpd_forbid_bare_newline {
            BareNewline::Reject => BareNewlinePolicy::Reject,
            BareNewline::Normalize => BareNewlinePolicy::Normalize,
            BareNewline::Allow => BareNewlinePolicy::Allow,
        },
        ..Default::default()
    });
    if conn.is_tls() {
        session.tls_started();
    }
    tracing::info!(?role, tls = conn.is_tls(), "connected");
    let checks = shared.checks.session(Connection {
        session_id: session_id.clone(),
        ip: peer.ip(),
        port: peer.port(),
        role: if submission {
            CheckRole::Submission
        } else {
            CheckRole::Mx
        },
        trusted: in_mynetworks(peer.ip(), &shared.mynetworks),
        helo: String::new(),
        tls: conn.is_tls(),
        auth_user: None,
        hostname: shared.hostname.clone(),
    });
    let mut st = State {
        helo: String::new(),
        esmtp: false,
        auth_user: None,
        sasl: None,
        txn: Txn::default(),
        session_id,
        messages: 0,
        checks,
        errors: 0,
        connect_verdicts: Vec::new(),
        helo_verdicts: Vec::new(),
    };
    if st.checks.is_active() {
        let outcome = st.checks.connect().await;
        if let Some(v) = outcome.refusal() {
            // Refused at connect: the verdict's code instead of the 220
            // greeting (554 or 421, RFC 5321 3.1), then close.
            let reply = match &v.action {
                Action::TempFail { enhanced, text, .. } => r(421, *enhanced, text),
                _ => refusal_reply(v),
            };
            tracing::info!(check = v.check, code = reply.code, "refused at connect");
            let _ = conn.write_all(&reply.encode()).await;
            let _ = conn.shutdown().await;
            st.checks.close().await;
            return;
        }
        st.connect_verdicts = outcome.verdicts;
    }
    // Flood check: a client that talks before the greeting is refused
    // (postscreen greet_wait); the wait overlaps the connect-stage lookups.
    let flood = postern_checks::reputation::flood::hooks();
    if !conn.is_tls()
        && let Some(wait) = flood
            .as_ref()
            .and_then(|h| h.greet_wait(st.checks.conn.role, peer.ip()))
    {
        use postern_checks::reputation::flood::{Pregreet, watch_pregreet};
        match watch_pregreet(&mut conn, wait).await {
            Pregreet::Quiet => {}
            Pregreet::Gone => {
                st.checks.close().await;
                return;
            }
            Pregreet::Talked { bytes, preview } => {
                tracing::warn!(bytes, preview = %preview, "pregreet: client talked before the greeting");
                postern_common::metrics::check_verdict("flood", "reject");
                let reply = r(554, (5, 5, 1), "Protocol error: talked before the greeting");
                let _ = conn.write_all(&reply.encode()).await;
                let _ = conn.shutdown().await;
                st.checks.close().await;
                return;
            }
        }
    }
    if conn
        .write_all(&Reply::greeting(&shared.hostname, "ESMTP postern").encode())
        .await
        .is_err()
    {
        return;
    }
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        while let Some(ev) = session.poll() {
            let starttls = matches!(ev, Event::StartTls);
            let reply = handle(&shared, &mut st, &conn, peer, submission, ev).await;
            if let Some(reply) = reply {
                // Flood check: tarpit after smtpd_soft_error_limit errors.
                if reply.code >= 400 {
                    st.errors += 1;
                    if let Some(d) = flood
                        .as_ref()
                        .and_then(|h| h.error_delay(st.checks.conn.role, peer.ip(), st.errors))
                    {
                        tracing::debug!(
                            errors = st.errors,
                            delay_ms = d.as_millis() as u64,
                            "tarpit"
                        );
                        tokio::time::sleep(d).await;
                    }
                }
                let accepted_tls = starttls && reply.code == 220;
                session.reply(reply);
                if accepted_tls {
                    if conn.write_all(&session.take_output()).await.is_err() {
                        return;
                    }
                    if tokio::time::timeout(tls_timeout, conn.upgrade(&shared.acceptor))
                        .await
                        .map_or(true, |r| r.is_err())
                    {
                        tracing::info!("STARTTLS handshake failed");
                        return;
                    }
                    session.tls_started();
                    st.helo.clear();
                    st.auth_user = None;
                    st.txn = Txn::default();
                }
            }
            if session.wants_flush() && conn.write_all(&session.take_output()).await.is_err() {
                return;
            }
        }
        let out = session.take_output();
        if !out.is_empty() && conn.write_all(&out).await.is_err() {
            return;
        }
        if session.is_closed() {
            st.checks.close().await;
            let _ = conn.shutdown().await;
            tracing::info!(
                user = st.auth_user.as_deref().unwrap_or("-"),
                "disconnected"
            );
            postern_common::metrics::session_outcome("quit");
            return;
        }
        let wait = if session.in_message() {
            shared.cfg.smtpd_data_timeout
        } else {
            shared.cfg.smtpd_timeout
        };
        let n = tokio::select! {
            _ = shutdown.triggered() => {
                postern_common::metrics::session_outcome("shutdown");
                let _ = conn.write_all(&Reply::shutting_down(&shared.hostname).encode()).await;
                return;
            }
            res = tokio::time::timeout(wait, conn.read(&mut buf)) => match res {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => n,
                Err(_) => {
                    tracing::info!(in_message = session.in_message(), "timeout");
                    postern_common::metrics::session_outcome("timeout");
                    let _ = conn.write_all(&r(421, (4, 4, 2), "Timeout, closing connection").encode()).await;
                    return;
                }
            },
        };
        session.feed(&buf[..n]);
    }
}

async fn handle(
    shared: &Shared,
    st: &mut State,
    conn: &Conn<TcpStream>,
    peer: SocketAddr,
    submission: bool,
    ev: Event,
) -> Option<Reply> {
    let tls = conn.is_tls();
    Some(match ev {
        Event::Hello(cmd) => {
            st.txn = Txn::default();
            match cmd {
                Command::Ehlo(d) | Command::Lhlo(d) => {
                    st.helo = d;
                    st.esmtp = true;
                    if let Some(reply) = helo_checks(st, tls).await {
                        return Some(reply);
                    }
                    let mut caps = vec![
                        Capability::Pipelining,
                        Capability::Size(Some(shared.message_size_limit)),
                        Capability::EightBitMime,
                        Capability::SmtpUtf8,
                        Capability::EnhancedStatusCodes,
                        Capability::Chunking,
                        Capability::Dsn,
                    ];
                    if !tls {
                        caps.push(Capability::StartTls);
                    }
                    if submission && tls {
                        caps.push(Capability::Auth(vec!["PLAIN".into(), "LOGIN".into()]));
                    }
                    Reply::ehlo(&shared.hostname, "postern", &caps)
                }
                Command::Helo(d) => {
                    st.helo = d;
                    st.esmtp = false;
                    if let Some(reply) = helo_checks(st, tls).await {
                        return Some(reply);
                    }
                    Reply::helo(&shared.hostname)
                }
                _ => Reply::ok(),
            }
        }
        Event::StartTls => {
            if tls {
                Reply::bad_sequence("TLS already active")
            } else {
                Reply::starttls_ready()
            }
        }
        Event::Auth {
            mechanism,
            initial_response,
        } => {
            if !submission || !tls || st.auth_user.is_some() {
                return Some(r(503, (5, 5, 1), "AUTH not available here"));
            }
            let ir = match initial_response.as_deref() {
                None => None,
                Some("=") => Some(Vec::new()),
                Some(b) => match B64.decode(b) {
                    Ok(v) => Some(v),
                    Err(_) => return Some(r(501, (5, 5, 2), "Invalid base64 data")),
                },
            };
            let start = apb::AuthStart {
                mechanism,
                initial_response: ir,
                client: Some(apb::ClientInfo {
                    service: "submission".into(),
                    remote_ip: peer.ip().to_string(),
                    remote_port: peer.port() as u32,
                    secured: tls,
                    session_id: st.session_id.clone(),
                    ..Default::default()
                }),
            };
            let mut auth = shared.auth.clone();
            match SaslExchange::start(&mut auth, start).await {
                Ok((x, step)) => {
                    st.sasl = Some(x);
                    sasl_reply(st, step)
                }
                Err(e) => {
                    tracing::error!(error = %e, "authd unavailable");
                    r(454, (4, 7, 0), "Temporary authentication failure")
                }
            }
        }
        Event::AuthResponse(line) => {
            let Some(mut x) = st.sasl.take() else {
                return Some(Reply::bad_sequence("no AUTH in progress"));
            };
            let step = if line.trim() == "*" {
                x.cancel().await
            } else {
                match B64.decode(line.trim()) {
                    Ok(d) => x.respond(d).await,
                    Err(_) => x.cancel().await,
                }
            };
            st.sasl = Some(x);
            match step {
                Ok(step) => sasl_reply(st, step),
                Err(_) => {
                    st.sasl = None;
                    r(454, (4, 7, 0), "Temporary authentication failure")
                }
            }
        }
        Event::Mail { from, params } => {
            if let Some((p, _)) = params.unknown.first() {
                return Some(Reply::unsupported_parameter(p));
            }
            if params.size.is_some_and(|s| s > shared.message_size_limit) {
                return Some(Reply::message_too_big());
            }
            let sender = from.map(|a| a.to_string()).unwrap_or_default();
            if let Some(user) = &st.auth_user
                && !sender.is_empty()
                && !sender_owned(shared, &sender, user).await
            {
                tracing::warn!(sender = %sender, user = %user, "sender address not owned by the authenticated user");
                return Some(r(
                    553,
                    (5, 7, 1),
                    "Sender address rejected: not owned by user",
                ));
            }
            st.txn = Txn::default();
            if st.checks.is_active() {
                st.sync_checks(tls);
                st.checks.reset().await;
                let outcome = st.checks.mail(&sender).await;
                if let Some(v) = outcome.refusal() {
                    return Some(refusal_reply(v));
                }
                st.txn.verdicts = outcome.verdicts;
            }
            let e = &mut st.txn.envelope;
            e.sender = sender;
            e.body = match params.body {
                Some(Body::EightBitMime) => qpb::BodyType::Body8bitmime as i32,
                Some(Body::BinaryMime) => qpb::BodyType::BodyBinarymime as i32,
                _ => qpb::BodyType::Unspecified as i32,
            };
            e.smtputf8 = params.smtputf8;
            e.ret = match params.ret {
                Some(Ret::Full) => qpb::DsnRet::Full as i32,
                Some(Ret::Hdrs) => qpb::DsnRet::Hdrs as i32,
                None => qpb::DsnRet::Unspecified as i32,
            };
            e.envid = params.envid.unwrap_or_default();
            e.size_hint = params.size.unwrap_or(0);
            e.client_helo = st.helo.clone();
            e.client_address = peer.ip().to_string();
            e.auth_user = st.auth_user.clone().unwrap_or_default();
            e.origin = "smtpd".into();
            e.session_id = st.session_id.clone();
            Reply::sender_ok()
        }
        Event::Rcpt { to, params } => {
            if let Some((p, _)) = params.unknown.first() {
                return Some(Reply::unsupported_parameter(p));
            }
            let addr = to.to_string();
            let may_relay = st.auth_user.is_some() || in_mynetworks(peer.ip(), &shared.mynetworks);
            let mut auth = shared.auth.clone();
            let resolved = match auth
                .resolve_recipient(apb::ResolveRecipientRequest {
                    address: addr.clone(),
                    authenticated: st.auth_user.is_some(),
                })
                .await
            {
                Ok(resp) => {
                    apb::resolve_recipient_response::Status::try_from(resp.get_ref().status).ok()
                }
                Err(e) => {
                    tracing::error!(error = %e, "recipient lookup failed");
                    None
                }
            };
            if let Some((code, enh, text)) = rcpt_verdict(resolved, may_relay) {
                tracing::info!(rcpt = %addr, code, "recipient refused");
                return Some(r(code, enh, text));
            }
            if st.checks.is_active() {
                st.sync_checks(tls);
                let sender = st.txn.envelope.sender.clone();
                let outcome = st.checks.rcpt(&sender, &addr).await;
                if let Some(v) = outcome.refusal() {
                    tracing::info!(rcpt = %addr, check = v.check, "recipient refused by check");
                    return Some(refusal_reply(v));
                }
                st.txn.verdicts.extend(outcome.verdicts);
            }
            let notify = params.notify.unwrap_or_default();
            st.txn.envelope.recipients.push(qpb::Recipient {
                address: addr,
                notify_never: notify.never,
                notify_success: notify.success,
                notify_failure: notify.failure,
                notify_delay: notify.delay,
                orcpt: params
                    .orcpt
                    .map(|o| format!("{};{}", o.addr_type, o.address))
                    .unwrap_or_default(),
            });
            Reply::recipient_ok()
        }
        Event::DataStart { bdat } => {
            let envelope = st.txn.envelope.clone();
            let single =
                (envelope.recipients.len() == 1).then(|| envelope.recipients[0].address.clone());
            match EnqueueStream::start(&shared.queue, envelope).await {
                Ok(mut s) => {
                    let tls_info = conn.tls_info();
                    let date = time::OffsetDateTime::now_utc()
                        .format(&time::format_description::well_known::Rfc2822)
                        .unwrap_or_default();
                    // Every message gets its own trace id (session id and
                    // message number): two identical messages in one session
                    // are never byte-identical, which lmtp-delivery's
                    // retry de-duplication relies on.
                    st.messages += 1;
                    let trace_id = format!("{}.{}", st.session_id, st.messages);
                    let header = received(&Trace {
                        helo: &st.helo,
                        client_ip: peer.ip(),
                        myhostname: &shared.hostname,
                        esmtp: st.esmtp,
                        tls: tls_info
                            .as_ref()
                            .map(|t| (t.version.as_str(), t.cipher.as_str())),
                        auth_user: st.auth_user.as_deref(),
                        show_auth_user: shared.cfg.smtpd_sasl_authenticated_header,
                        for_rcpt: single.as_deref(),
                        date: &date,
                        session: &trace_id,
                    });
                    if st.checks.is_active() {
                        st.txn.copy = Some(header.clone().into_bytes());
                    }
                    if s.chunk(header.into_bytes()).await.is_err() {
                        st.txn.failed = true;
                    }
                    st.txn.stream = Some(s);
                    if st.auth_user.is_some() {
                        st.txn.fixer = Some(HeaderFixer::new(Additions {
                            date,
                            message_id: message_id(&st.session_id, st.messages, &shared.hostname),
                        }));
                    }
                    if bdat {
                        Reply::ok()
                    } else {
                        Reply::start_data()
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "queue unavailable");
                    r(451, (4, 3, 0), "Queue unavailable, try again later")
                }
            }
        }
        Event::Data(chunk) => {
            let chunk = match st.txn.fixer.as_mut() {
                Some(f) => f.feed(&chunk),
                None => chunk,
            };
            if let Some(copy) = st.txn.copy.as_mut() {
                copy.extend_from_slice(&chunk);
            }
            if !chunk.is_empty()
                && let Some(s) = st.txn.stream.as_mut()
                && !st.txn.failed
                && s.chunk(chunk).await.is_err()
            {
                st.txn.failed = true;
            }
            return None;
        }
        Event::DataEnd(_) => {
            let mut txn = std::mem::take(&mut st.txn);
            let Some(mut s) = txn.stream else {
                return Some(r(451, (4, 3, 0), "Queue unavailable, try again later"));
            };
            if let Some(f) = txn.fixer.as_mut() {
                let rest = f.finish();
                if let Some(copy) = txn.copy.as_mut() {
                    copy.extend_from_slice(&rest);
                }
                if !rest.is_empty() && !txn.failed && s.chunk(rest).await.is_err() {
                    txn.failed = true;
                }
                if f.gave_up {
                    tracing::warn!("header section too long to check for Date/Message-ID");
                } else if !f.added.is_empty() {
                    tracing::info!(added = ?f.added, "missing header fields added");
                }
            }
            let mut end = qpb::End::default();
            let mut applied = Vec::new();
            if let Some(copy) = txn.copy.take() {
                st.sync_checks(tls);
                let envelope = postern_checks::Envelope {
                    sender: txn.envelope.sender.clone(),
                    recipients: txn
                        .envelope
                        .recipients
                        .iter()
                        .map(|r| r.address.clone())
                        .collect(),
                };
                let data = st.checks.data(&envelope, &copy).await;
                st.checks.reset().await;
                // What connect, HELO, MAIL and RCPT decided applies too
                // (headers first, in stage order).
                let outcome = postern_checks::Outcome::combine([
                    st.connect_verdicts.clone(),
                    st.helo_verdicts.clone(),
                    std::mem::take(&mut txn.verdicts),
                    data.verdicts,
                ]);
                if let Some(v) = outcome.refusal() {
                    s.abort();
                    tracing::info!(check = v.check, sender = %txn.envelope.sender, "message refused by check");
                    return Some(refusal_reply(v));
                }
                if outcome.discard() {
                    s.abort();
                    tracing::info!(sender = %txn.envelope.sender, verdicts = ?outcome.verdicts, "message discarded by check");
                    return Some(r(250, (2, 0, 0), "Ok: discarded"));
                }
                end.prepend = outcome.headers();
                end.hold_reason = outcome.hold().unwrap_or_default();
                end.redirect_to = outcome.redirect().map(str::to_string).into_iter().collect();
                end.archive_to = outcome.archive();
                applied = outcome.verdicts;
            }
            match s.finish_with(end).await {
                Ok(id) if !txn.failed => {
                    tracing::info!(queue_id = %id, sender = %txn.envelope.sender, rcpts = txn.envelope.recipients.len(), "queued");
                    postern_common::metrics::message_received();
                    for v in &applied {
                        tracing::info!(queue_id = %id, check = v.check, action = v.action.name(), reason = %v.reason, "check verdict applied");
                    }
                    Reply::queued(&id)
                }
                Ok(id) => {
                    tracing::error!(queue_id = %id, "stream failed but queue answered; refusing to be safe");
                    r(451, (4, 3, 0), "Queue error, try again later")
                }
                Err(e) => {
                    tracing::error!(error = %e, "enqueue failed");
                    let (code, enh, text) = crate::enqueue::failure_reply(&e);
                    r(code, enh, text)
                }
            }
        }
        Event::DataAborted(e) => {
            tracing::info!(error = ?e, "message refused");
            if let Some(s) = std::mem::take(&mut st.txn).stream {
                s.abort();
            }
            return None;
        }
        Event::Other(cmd) => match cmd {
            Command::Rset => {
                if let Some(s) = std::mem::take(&mut st.txn).stream {
                    s.abort();
                }
                if st.checks.is_active() {
                    st.checks.reset().await;
                }
                Reply::ok()
            }
            Command::Vrfy(arg) if !shared.cfg.disable_vrfy_command => vrfy(shared, &arg).await,
            Command::Vrfy(_) | Command::Expn(_) => Reply::vrfy_disabled(),
            Command::Help(_) => r(214, (2, 0, 0), "See RFC 5321"),
            _ => Reply::ok(),
        },
    })
}

/// A `Message-ID` for a submitted message without one: unique by time,
/// session and message number.
fn message_id(session: &str, n: u32, host: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "<{}.{:06}.{session}.{n}@{host}>",
        now.as_secs(),
        now.subsec_micros()
    )
}

/// Run the HELO checks after `st.helo` was set; `Some` = refused. The
/// other verdicts replace those of an earlier HELO/EHLO.
async fn helo_checks(st: &mut State, tls: bool) -> Option<Reply> {
    if !st.checks.is_active() {
        return None;
    }
    st.sync_checks(tls);
    let outcome = st.checks.helo().await;
    if let Some(v) = outcome.refusal() {
        return Some(refusal_reply(v));
    }
    st.helo_verdicts = outcome.verdicts;
    None
}

/// VRFY when enabled (`disable_vrfy_command = false`): look the address up.
async fn vrfy(shared: &Shared, arg: &str) -> Reply {
    let addr = arg
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string();
    if !addr.contains('@') {
        return r(501, (5, 5, 2), "VRFY needs a full address");
    }
    let mut auth = shared.auth.clone();
    use apb::resolve_recipient_response::Status as S;
    match auth
        .resolve_recipient(apb::ResolveRecipientRequest {
            address: addr.clone(),
            authenticated: false,
        })
        .await
        .map(|resp| S::try_from(resp.get_ref().status).ok())
    {
        Ok(Some(S::Local)) => r(250, (2, 1, 5), &format!("<{addr}>")),
        Ok(Some(S::Unknown)) => r(
            550,
            (5, 1, 1),
            &format!("<{addr}>: Recipient address rejected: User unknown"),
        ),
        Ok(Some(S::TempFail)) => r(451, (4, 3, 0), "Temporary lookup failure"),
        Ok(_) => Reply::vrfy_disabled(),
        Err(e) => {
            tracing::error!(error = %e, "recipient lookup failed");
            r(451, (4, 3, 0), "Temporary lookup failure")
        }
    }
}

fn sasl_reply(st: &mut State, step: SaslStep) -> Reply {
    match step {
        SaslStep::Challenge(data) => Reply::auth_challenge(&B64.encode(data)),
        SaslStep::Ok(ok) => {
            st.sasl = None;
            tracing::info!(user = %ok.user, "authenticated");
            st.auth_user = Some(ok.user);
            Reply::auth_ok()
        }
        SaslStep::Fail(f) => {
            st.sasl = None;
            if f.temporary {
                r(454, (4, 7, 0), "Temporary authentication failure")
            } else {
                Reply::auth_failed()
            }
        }
    }
}

/// `reject_sender_login_mismatch`: the user's own address, or an address
/// that resolves to the user's mailbox (an alias of theirs).
async fn sender_owned(shared: &Shared, sender: &str, user: &str) -> bool {
    if sender.eq_ignore_ascii_case(user) {
        return true;
    }
    let mut auth = shared.auth.clone();
    match auth
        .resolve_recipient(apb::ResolveRecipientRequest {
            address: sender.to_string(),
            authenticated: true,
        })
        .await
    {
        Ok(resp) => resp
            .get_ref()
            .mailboxes
            .iter()
            .any(|m| m.user.eq_ignore_ascii_case(user)),
        Err(_) => false,
    }
}
