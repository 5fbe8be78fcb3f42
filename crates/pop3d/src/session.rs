//! One POP3 connection: read commands, answer them in order, flush when the
//! input is drained (RFC 2449 PIPELINING).

use postern_common::identity::{Owner, as_owner};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pop3_proto::{
    BodyEncoder, Capabilities, Command, Extract, FailureVerdict, Maildrop as ProtoMaildrop,
    Receiver, RespCode, Response, SaslResponse, Session as ProtoSession, State,
    encode_continuation,
};
use postern_common::Shutdown;
use postern_common::conn::Conn;
use postern_ipc::auth::v1 as pb;
use postern_ipc::sasl::{SaslExchange, SaslStep};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::Channel;

use crate::store::{Maildrop, Store, StoreError};

/// RFC 1939 section 3: the autologout timer is at least 10 minutes. The
/// default of `pop3d.idle_timeout`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Users remembered for `pop3d.login_delay` before old entries are pruned.
const MAX_LOGIN_DELAY_ENTRIES: usize = 100_000;
/// Bound on a TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Read size per socket read.
const READ_CHUNK: usize = 16 * 1024;
/// Bytes of a message read per step while sending RETR/TOP.
const RETR_CHUNK: usize = 64 * 1024;

/// What every session shares.
pub struct Shared {
    pub hostname: String,
    pub acceptor: TlsAcceptor,
    pub auth: pb::auth_client::AuthClient<Channel>,
    pub store: Arc<dyn Store>,
    pub allow_plaintext: bool,
    pub capabilities: Capabilities,
    /// `pop3d.idle_timeout`.
    pub idle_timeout: Duration,
    /// `pop3d.login_delay` (zero: none) and each user's last login.
    pub login_delay: Duration,
    pub last_login: std::sync::Mutex<HashMap<String, Instant>>,
}

impl Shared {
    /// Records a login of `user` now, unless the previous one was less than
    /// `login_delay` ago (then `false`: refuse with `[LOGIN-DELAY]`).
    pub fn admit_login(&self, user: &str) -> bool {
        if self.login_delay.is_zero() {
            return true;
        }
        let now = Instant::now();
        let mut map = self.last_login.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(user)
            .is_some_and(|t| now.duration_since(*t) < self.login_delay)
        {
            return false;
        }
        if map.len() >= MAX_LOGIN_DELAY_ENTRIES {
            let delay = self.login_delay;
            map.retain(|_, t| now.duration_since(*t) < delay);
        }
        map.insert(user.to_string(), now);
        true
    }
}

/// The mechanisms pop3d relays to authd.
pub const MECHANISMS: [&str; 3] = ["PLAIN", "LOGIN", "SCRAM-SHA-256"];

enum Flow {
    Continue,
    Close,
}

struct Conversation {
    conn: Conn<TcpStream>,
    rx: Receiver,
    input: Vec<u8>,
    out: Vec<u8>,
    peer: SocketAddr,
    session_id: String,
    session: ProtoSession,
    user: Option<String>,
    drop_: Option<(Box<dyn Maildrop>, ProtoMaildrop)>,
    /// Whose file-system identity the maildrop is used with (a system
    /// user's own; the daemon's for virtual users).
    owner: Owner,
}

/// Serve one connection until QUIT, timeout, error or shutdown.
pub async fn run(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    shutdown: Shutdown,
) {
    let session_id = postern_common::session_id();
    let span = tracing::info_span!("session", id = %session_id, remote = %peer);
    let _enter = span.enter();
    let conn = if implicit_tls {
        match tokio::time::timeout(
            TLS_HANDSHAKE_TIMEOUT,
            Conn::accept_tls(stream, &shared.acceptor),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::info!("TLS handshake timed out");
                return;
            }
        }
    } else {
        Conn::Plain(stream)
    };
    let tls = conn.is_tls();
    let mut c = Conversation {
        conn,
        rx: Receiver::new(),
        input: Vec::new(),
        out: Vec::new(),
        peer,
        session_id,
        session: ProtoSession::new(tls, shared.allow_plaintext),
        user: None,
        drop_: None,
        owner: Owner::Daemon,
    };
    tracing::info!(tls, "connected");
    Response::ok(format!("{} POP3 ready", shared.hostname)).encode(&mut c.out);
    if c.flush().await.is_err() {
        return;
    }
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = tokio::select! {
            _ = shutdown.triggered() => {
                Response::err_code(RespCode::SysTemp, "Server shutting down").encode(&mut c.out);
                postern_common::metrics::session_outcome("shutdown");
                let _ = c.flush().await;
                break;
            }
            r = tokio::time::timeout(shared.idle_timeout, c.conn.read(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) => {
                    Response::err("Autologout: idle for too long").encode(&mut c.out);
                    postern_common::metrics::session_outcome("timeout");
                    let _ = c.flush().await;
                    break;
                }
            },
        };
        c.input.extend_from_slice(&buf[..n]);
        let flow = c.process(&shared).await;
        // Send what was answered, the last reply (QUIT's) included.
        if c.flush().await.is_err() {
            break;
        }
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Close) | Err(_) => break,
        }
    }
    let _ = c.conn.shutdown().await;
    tracing::info!(user = c.user.as_deref().unwrap_or("-"), "disconnected");
}

impl Conversation {
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.conn.write_all(&self.out).await?;
            self.out.clear();
        }
        self.conn.flush().await
    }

    /// Answer every complete command in the input.
    async fn process(&mut self, shared: &Shared) -> std::io::Result<Flow> {
        loop {
            let mut cursor: &[u8] = &self.input;
            let before = cursor.len();
            let parsed = self.rx.feed(&mut cursor);
            let used = before - cursor.len();
            self.input.drain(..used);
            let cmd = match parsed {
                Ok(Some(cmd)) => cmd,
                Ok(None) => return Ok(Flow::Continue),
                Err(e) => {
                    e.reply().encode(&mut self.out);
                    if self.fail() {
                        return Ok(Flow::Close);
                    }
                    continue;
                }
            };
            if let Err(reply) = self.session.check(&cmd) {
                reply.encode(&mut self.out);
                if self.fail() {
                    return Ok(Flow::Close);
                }
                continue;
            }
            if let Flow::Close = self.command(shared, cmd).await? {
                return Ok(Flow::Close);
            }
        }
    }

    fn fail(&mut self) -> bool {
        if self.session.record_failure() == FailureVerdict::Close {
            Response::err("Too many errors, closing").encode(&mut self.out);
            true
        } else {
            false
        }
    }

    async fn command(&mut self, shared: &Shared, cmd: Command) -> std::io::Result<Flow> {
        match cmd {
            Command::Capa => {
                shared
                    .capabilities
                    .advertised(
                        self.session.state(),
                        self.session.tls_active(),
                        shared.allow_plaintext,
                    )
                    .encode(&mut self.out);
            }
            Command::Noop => Response::ok("").encode(&mut self.out),
            Command::Stls => {
                Response::ok("Begin TLS negotiation").encode(&mut self.out);
                self.flush().await?;
                // STARTTLS injection: nothing read before the handshake counts.
                self.input.clear();
                self.rx.reset();
                match tokio::time::timeout(
                    TLS_HANDSHAKE_TIMEOUT,
                    self.conn.upgrade(&shared.acceptor),
                )
                .await
                {
                    Ok(Ok(())) => {}
                    _ => {
                        tracing::info!("STLS handshake failed");
                        return Ok(Flow::Close);
                    }
                }
                self.session.tls_started();
            }
            Command::User { name } => {
                self.session.set_user(name);
                Response::ok("").encode(&mut self.out);
            }
            Command::Pass { password } => {
                let user = self.session.take_user().unwrap_or_default();
                let mut ir = Vec::with_capacity(user.len() + password.expose().len() + 2);
                ir.push(0);
                ir.extend_from_slice(user.as_bytes());
                ir.push(0);
                ir.extend_from_slice(password.expose());
                return self.authenticate(shared, "PLAIN", Some(ir)).await;
            }
            Command::Auth {
                mechanism: None, ..
            } => {
                let mechs = self.offered_mechanisms(shared);
                Response::ok("").encode(&mut self.out);
                for m in mechs {
                    self.out.extend_from_slice(m.as_bytes());
                    self.out.extend_from_slice(b"\r\n");
                }
                self.out.extend_from_slice(b".\r\n");
            }
            Command::Auth {
                mechanism: Some(mech),
                initial_response,
            } => {
                if !self.offered_mechanisms(shared).contains(&mech.as_str()) {
                    Response::err("Unsupported authentication mechanism").encode(&mut self.out);
                    if self.fail() {
                        return Ok(Flow::Close);
                    }
                    return Ok(Flow::Continue);
                }
                let ir = initial_response.map(|s| s.expose().clone());
                return self.authenticate(shared, &mech, ir).await;
            }
            Command::Apop { .. } => {
                // APOP needs a clear-text-equivalent stored password; not offered.
                Response::err("APOP is not enabled").encode(&mut self.out);
                if self.fail() {
                    return Ok(Flow::Close);
                }
            }
            Command::Stat
            | Command::List { .. }
            | Command::Uidl { .. }
            | Command::Dele { .. }
            | Command::Rset => {
                // The command table admits these only in TRANSACTION state,
                // where the maildrop is open.
                let Some((_, view)) = self.drop_.as_mut() else {
                    Response::err("No mailbox open").encode(&mut self.out);
                    return Ok(Flow::Continue);
                };
                let answered = match cmd {
                    Command::Stat => {
                        view.answer_stat(&mut self.out);
                        true
                    }
                    Command::List { msg } => view.answer_list(msg, &mut self.out),
                    Command::Uidl { msg } => view.answer_uidl(msg, &mut self.out),
                    Command::Dele { msg } => match view.dele(msg) {
                        Ok(()) => {
                            Response::ok("Marked to be deleted").encode(&mut self.out);
                            true
                        }
                        Err(e) => {
                            e.reply().encode(&mut self.out);
                            false
                        }
                    },
                    _ => {
                        view.rset();
                        Response::ok("").encode(&mut self.out);
                        true
                    }
                };
                if !answered && self.fail() {
                    return Ok(Flow::Close);
                }
            }
            Command::Retr { msg } => return self.send_message(msg, Extract::Whole).await,
            Command::Top { msg, lines } => {
                return self
                    .send_message(msg, Extract::Top { body_lines: lines })
                    .await;
            }
            Command::Quit => {
                postern_common::metrics::session_outcome("quit");
                if self.session.quit() == State::Update
                    && let Some((store, view)) = self.drop_.as_mut()
                {
                    let gone: Vec<usize> = view
                        .to_expunge()
                        .into_iter()
                        .map(|n| n as usize - 1)
                        .collect();
                    let count = gone.len();
                    let owner = self.owner;
                    let expunged = tokio::task::block_in_place(|| {
                        as_owner(owner, || store.expunge(&gone))
                            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                    });
                    postern_common::metrics::mailstore_op("expunge", expunged.is_ok());
                    match expunged {
                        Ok(()) => {
                            tracing::info!(
                                user = self.user.as_deref().unwrap_or("-"),
                                deleted = count,
                                "logout"
                            );
                            Response::ok("Logging out").encode(&mut self.out);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "expunge failed");
                            Response::err_code(
                                RespCode::SysTemp,
                                "Some deleted messages were not removed",
                            )
                            .encode(&mut self.out);
                        }
                    }
                } else {
                    Response::ok("Logging out").encode(&mut self.out);
                }
                return Ok(Flow::Close);
            }
            Command::Unknown(verb) => {
                tracing::debug!(verb = %verb, "unknown command");
                Response::err("Unknown command").encode(&mut self.out);
                if self.fail() {
                    return Ok(Flow::Close);
                }
            }
        }
        Ok(Flow::Continue)
    }

    fn offered_mechanisms(&self, shared: &Shared) -> Vec<&'static str> {
        let cleartext_ok = self.session.tls_active() || shared.allow_plaintext;
        MECHANISMS
            .into_iter()
            .filter(|m| cleartext_ok || !pop3_proto::is_cleartext_mechanism(m))
            .collect()
    }

    async fn send_message(&mut self, msg: u32, extract: Extract) -> std::io::Result<Flow> {
        let (store, view) = self
            .drop_
            .as_mut()
            .expect("TRANSACTION state has a maildrop");
        let size = match view.get(msg) {
            Ok(info) => info.size,
            Err(e) => {
                e.reply().encode(&mut self.out);
                return Ok(Flow::Continue);
            }
        };
        let owner = self.owner;
        let read = tokio::task::block_in_place(|| {
            as_owner(owner, || store.read(msg as usize - 1))
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        });
        postern_common::metrics::mailstore_op("read", read.is_ok());
        let mut reader = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(msg, error = %e, "cannot read message");
                Response::err_code(RespCode::SysTemp, "Cannot read the message")
                    .encode(&mut self.out);
                return Ok(Flow::Continue);
            }
        };
        match extract {
            Extract::Whole => Response::ok(format!("{size} octets")).encode(&mut self.out),
            Extract::Top { .. } => Response::ok("").encode(&mut self.out),
        }
        let mut enc = BodyEncoder::new(extract);
        let mut chunk = vec![0u8; RETR_CHUNK];
        loop {
            let n = tokio::task::block_in_place(|| reader.read(&mut chunk))?;
            if n == 0 {
                break;
            }
            enc.encode(&chunk[..n], &mut self.out);
            if self.out.len() >= RETR_CHUNK {
                self.flush().await?;
            }
            if enc.is_done() {
                break;
            }
        }
        enc.finish(&mut self.out);
        Ok(Flow::Continue)
    }

    /// A SASL exchange relayed to authd, then the maildrop opened.
    async fn authenticate(
        &mut self,
        shared: &Shared,
        mech: &str,
        ir: Option<Vec<u8>>,
    ) -> std::io::Result<Flow> {
        let mut auth = shared.auth.clone();
        let start = pb::AuthStart {
            mechanism: mech.to_string(),
            initial_response: ir,
            client: Some(pb::ClientInfo {
                service: "pop3".into(),
                remote_ip: self.peer.ip().to_string(),
                remote_port: self.peer.port() as u32,
                secured: self.session.tls_active() || shared.allow_plaintext,
                session_id: self.session_id.clone(),
                ..Default::default()
            }),
        };
        let (mut exchange, mut step) = match SaslExchange::start(&mut auth, start).await {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "authd unavailable");
                Response::err_code(RespCode::SysTemp, "Authentication service unavailable")
                    .encode(&mut self.out);
                return Ok(Flow::Continue);
            }
        };
        let user = loop {
            match step {
                SaslStep::Challenge(data) => {
                    encode_continuation(&data, &mut self.out);
                    self.flush().await?;
                    let reply = match self.read_sasl_line(shared.idle_timeout).await? {
                        Some(r) => r,
                        None => return Ok(Flow::Close),
                    };
                    step = match reply {
                        Ok(SaslResponse::Data(d)) => exchange.respond(d.expose().clone()).await,
                        Ok(SaslResponse::Cancel) => exchange.cancel().await,
                        Err(e) => {
                            e.reply().encode(&mut self.out);
                            exchange.cancel().await
                        }
                    }
                    .unwrap_or_else(|e| {
                        SaslStep::Fail(pb::AuthFail {
                            temporary: true,
                            reason: e.message().to_string(),
                            delay_ms: 0,
                        })
                    });
                }
                SaslStep::Ok(ok) => break ok.user,
                SaslStep::Fail(f) => {
                    if f.temporary {
                        Response::err_code(RespCode::SysTemp, "Temporary authentication failure")
                            .encode(&mut self.out);
                    } else {
                        Response::err_code(RespCode::Auth, "Authentication failed")
                            .encode(&mut self.out);
                    }
                    if self.fail() {
                        return Ok(Flow::Close);
                    }
                    return Ok(Flow::Continue);
                }
            }
        };
        if !shared.admit_login(&user) {
            tracing::info!(user = %user, "login refused: login_delay");
            Response::err_code(RespCode::LoginDelay, "Logged in too recently, try later")
                .encode(&mut self.out);
            if self.fail() {
                return Ok(Flow::Close);
            }
            return Ok(Flow::Continue);
        }
        // Authenticated: find and lock the maildrop.
        let info = match auth
            .lookup_user(pb::LookupUserRequest { user: user.clone() })
            .await
        {
            Ok(r) if r.get_ref().found => r.into_inner().info.unwrap_or_default(),
            Ok(_) => {
                Response::err_code(RespCode::SysPerm, "No mailbox for this user")
                    .encode(&mut self.out);
                return Ok(Flow::Close);
            }
            Err(e) => {
                tracing::error!(error = %e, "user lookup failed");
                Response::err_code(RespCode::SysTemp, "Mailbox lookup failed")
                    .encode(&mut self.out);
                return Ok(Flow::Continue);
            }
        };
        // A system user's Maildir is used with the user's own file-system
        // identity (files pop3d creates or renames stay the user's).
        let owner = match Owner::for_process(info.uid, info.gid) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(user = %user, uid = info.uid, gid = info.gid, error = %e, "mailbox owner refused");
                Response::err_code(RespCode::SysPerm, "Mailbox is not usable")
                    .encode(&mut self.out);
                return Ok(Flow::Close);
            }
        };
        let store = shared.store.clone();
        let path = std::path::PathBuf::from(&info.mailbox);
        let opened = tokio::task::spawn_blocking(move || {
            as_owner(owner, || store.open(&path))
                .unwrap_or_else(|e| Err(StoreError::Io(e.to_string())))
        })
        .await
        .unwrap_or_else(|e| Err(StoreError::Io(e.to_string())));
        postern_common::metrics::mailstore_op("open", opened.is_ok());
        match opened {
            Ok(md) => {
                let view =
                    ProtoMaildrop::new(md.messages().iter().map(|m| (m.wire_size, m.uidl.clone())));
                match view {
                    Ok(view) => {
                        tracing::info!(user = %user, messages = view.len(), "logged in");
                        self.user = Some(user);
                        self.owner = owner;
                        self.drop_ = Some((md, view));
                        self.session.logged_in();
                        Response::ok("Logged in").encode(&mut self.out);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "bad maildrop listing");
                        Response::err_code(RespCode::SysTemp, "Mailbox is not usable")
                            .encode(&mut self.out);
                    }
                }
            }
            Err(StoreError::InUse) => {
                Response::err_code(RespCode::InUse, "Mailbox is locked by another POP3 session")
                    .encode(&mut self.out);
            }
            Err(e) => {
                tracing::error!(user = %user, error = %e, "cannot open maildrop");
                Response::err_code(RespCode::SysTemp, "Cannot open the mailbox")
                    .encode(&mut self.out);
            }
        }
        Ok(Flow::Continue)
    }

    /// One SASL continuation line (reading more input as needed).
    async fn read_sasl_line(
        &mut self,
        idle_timeout: Duration,
    ) -> std::io::Result<Option<Result<SaslResponse, pop3_proto::ParseError>>> {
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let mut cursor: &[u8] = &self.input;
            let before = cursor.len();
            let parsed = self.rx.feed_sasl(&mut cursor);
            let used = before - cursor.len();
            self.input.drain(..used);
            match parsed {
                Ok(Some(r)) => return Ok(Some(Ok(r))),
                Err(e) => return Ok(Some(Err(e))),
                Ok(None) => {}
            }
            let n = match tokio::time::timeout(idle_timeout, self.conn.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Ok(None),
                Ok(Ok(n)) => n,
            };
            self.input.extend_from_slice(&buf[..n]);
        }
    }
}
