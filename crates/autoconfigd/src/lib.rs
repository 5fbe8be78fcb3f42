//! # NAME
//! autoconfigd — client autoconfiguration and MTA-STS policy over HTTP
//!
//! # DESCRIPTION
//! Serves, generated from the configuration at each request (so a SIGHUP
//! reload takes effect at once):
//!
//! | path | document |
//! | --- | --- |
//! | `GET /.well-known/autoconfig/mail/config-v1.1.xml`, `GET /mail/config-v1.1.xml` | Thunderbird autoconfig (`clientConfig` 1.1); optional `?emailaddress=` names the domain, else the `Host:` header (`autoconfig.<domain>`), else `global.mydomain` |
//! | `POST /autodiscover/autodiscover.xml` (also `GET ...?email=`) | Outlook autodiscover, "POX" (`outlook/responseschema/2006a`); the path is matched case-insensitively |
//! | `GET /apple/postern.mobileconfig?email=ADDRESS` | Apple configuration profile (unsigned XML plist, `com.apple.mail.managed`) |
//! | `GET /.well-known/mta-sts.txt` | the MTA-STS policy (RFC 8461) that `mailctl dns` announces |
//!
//! Each document names `global.myhostname` as the server and, per
//! protocol, the port of the first listener of each role: IMAP `imaps`
//! (SSL) and `imap` (STARTTLS), POP3 `pop3s`/`pop3`, submission
//! `submissions` (SSL) and `submission` (STARTTLS); implicit TLS is listed
//! first (RFC 8314). The MX listener is never offered to clients. Logins are
//! the full address with a cleartext password inside TLS.
//!
//! The documents are the same for every domain: autoconfigd does not ask
//! authd whether a domain or address exists (so it answers nothing an
//! attacker could not read from DNS), it only checks that the address and
//! domain are well formed. Autodiscover answers only the Outlook "POX"
//! schema, not ActiveSync (`mobilesync`).
//!
//! ## Why a daemon of its own
//! It speaks HTTP, which no other postern daemon does; it needs no access
//! to the directory, the queue or the mailboxes, so it runs as the
//! unprivileged `postern` user with nothing writable; it is off by default
//! (many sites serve these files from their web server) and can be stopped
//! or exposed on its own. Putting HTTP into smtpd or imapd would give a
//! mail daemon a second, unrelated attack surface.
//!
//! # SECURITY
//! Runs as `postern`; reads the configuration and, for `https` listeners,
//! the `[tls]` certificate and key; writes nothing. Every input is bounded:
//! request head [`MAX_HEAD_BYTES`], request body [`MAX_BODY_BYTES`], time to
//! send the request head [`HEADER_READ_TIMEOUT`], TLS handshake
//! [`TLS_HANDSHAKE_TIMEOUT`], connection lifetime [`CONNECTION_LIFETIME`],
//! concurrent connections [`MAX_CONNECTIONS`] (more are closed at once).
//! Addresses are checked (dot-atom local part, at most 254 octets) and every
//! value is XML-escaped. Only HTTP/1.1.
//!
//! A `http` listener is plain HTTP, meant to sit behind a reverse proxy
//! that terminates TLS (clients and MTA-STS fetchers require HTTPS on port
//! 443; the documents carry no secret). A `https` listener uses the `[tls]`
//! certificate, which must then also name `autoconfig.<domain>`,
//! `autodiscover.<domain>` and `mta-sts.<domain>`.
//!
//! # STANDARDS
//! RFC 9112 (HTTP/1.1, via hyper); Mozilla's autoconfig file format 1.1;
//! Microsoft's "[MS-OXDSCLI]" POX autodiscover; Apple's Configuration
//! Profile Reference (`com.apple.mail.managed`); RFC 8461 (MTA-STS);
//! RFC 8314 (implicit TLS preferred); RFC 6186 (the SRV records
//! `mailctl dns` prints alongside).
//!
//! # CONFIGURATION
//! `[autoconfig]`: `listener` (default empty: autoconfigd refuses to start
//! with exit 78; role `http` or `https`), `mta_sts_mode` (default
//! `"testing"`). It reads `global.myhostname`, `global.mydomain` and the
//! `smtpd`, `imapd` and `pop3d` listeners. `make run` serves plain HTTP on
//! 127.0.0.1:2080.
//!
//! # DIAGNOSTICS
//! `ready` once listening; per request a debug event with `remote`,
//! `method`, `path`, `status`; `connection error` at debug level. Exit codes
//! as every daemon: 0, 1, 64, 78.
//!
//! # SEE ALSO
//! `mailctl dns` (the DNS records pointing clients here), smtpd(8),
//! imapd(8), pop3d(8).

pub mod documents;
pub mod services;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use postern_common::config::{ConfigError, HttpRole};
use postern_common::{Config, Context};
use tokio::sync::{Semaphore, watch};

use documents::BadInput;
use services::Services;

/// Largest request head (request line and headers). hyper's smallest
/// allowed read buffer is 8 KiB; 16 KiB fits any real client's headers.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body (an autodiscover POX request is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Time a client has to send the request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection (keep-alive included) may stay open.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Connections served at the same time, all listeners together.
pub const MAX_CONNECTIONS: usize = 256;

/// Daemon-specific checks before binding: at least one listener.
pub fn validate(cfg: &Config, file: &Path) -> Result<(), ConfigError> {
    if cfg.autoconfig.listener.is_empty() {
        return Err(ConfigError::new(
            file,
            "autoconfig.listener",
            "no listener configured: autoconfigd is off (set [autoconfig] listener to serve)",
        ));
    }
    Ok(())
}

/// Run until shutdown.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let cfg = ctx.config();
    let tls = if cfg
        .autoconfig
        .listener
        .iter()
        .any(|l| l.role == HttpRole::Https)
    {
        let base = postern_common::tls::from_config(&cfg, &ctx.config_path)?;
        let mut c = (*base).clone();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(c)))
    } else {
        None
    };
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut loops = tokio::task::JoinSet::new();
    for l in &cfg.autoconfig.listener {
        let listener = ctx.listeners.tcp(&l.name, &l.address)?;
        tracing::info!(listener = %l.name, address = %l.address, role = ?l.role, "listening");
        let acceptor = match l.role {
            HttpRole::Https => tls.clone(),
            HttpRole::Http => None,
        };
        let config = ctx.config_updates();
        let shutdown = ctx.shutdown.clone();
        let limit = limit.clone();
        loops.spawn(postern_common::listen::accept_tcp(
            l.name.clone(),
            listener,
            ctx.shutdown.clone(),
            move |stream, peer| {
                let permit = limit.clone().try_acquire_owned();
                let acceptor = acceptor.clone();
                let config = config.clone();
                let shutdown = shutdown.clone();
                async move {
                    let Ok(_permit) = permit else {
                        tracing::warn!(remote = %peer, "connection limit reached, closing");
                        return;
                    };
                    connection(stream, peer, acceptor, config, shutdown).await;
                }
            },
        ));
    }
    ctx.ready("serving autoconfiguration");
    while loops.join_next().await.is_some() {}
    Ok(())
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    config: watch::Receiver<Arc<Config>>,
    shutdown: postern_common::Shutdown,
) {
    match acceptor {
        Some(a) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, a.accept(stream)).await {
            Ok(Ok(tls)) => {
                postern_common::metrics::tls_handshake(true);
                serve(TokioIo::new(tls), peer, config, shutdown).await
            }
            Ok(Err(e)) => {
                postern_common::metrics::tls_handshake(false);
                tracing::debug!(remote = %peer, error = %e, "TLS handshake failed")
            }
            Err(_) => tracing::debug!(remote = %peer, "TLS handshake timed out"),
        },
        None => serve(TokioIo::new(stream), peer, config, shutdown).await,
    }
}

async fn serve<I>(
    io: I,
    peer: SocketAddr,
    config: watch::Receiver<Arc<Config>>,
    shutdown: postern_common::Shutdown,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let cfg = config.borrow().clone();
        async move { Ok::<_, Infallible>(handle(&cfg, req, peer).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let deadline = tokio::time::sleep(CONNECTION_LIFETIME);
    tokio::pin!(deadline);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.triggered() => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await.unwrap_or(Ok(()))
        }
        _ = &mut deadline => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await.unwrap_or(Ok(()))
        }
    };
    if let Err(e) = result {
        tracing::debug!(remote = %peer, error = %e, "connection error");
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", format!("{body}\n"))
}

const XML: &str = "application/xml; charset=utf-8";

/// The first value of query parameter `name` (any of `names`).
fn query_param(req: &Request<Incoming>, names: &[&str]) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
        .map(|(_, v)| v.into_owned())
}

/// The domain a Thunderbird request is about.
fn thunderbird_domain(cfg: &Config, req: &Request<Incoming>) -> Result<String, BadInput> {
    if let Some(a) = query_param(req, &["emailaddress"]) {
        return documents::parse_address(&a).map(|(_, d)| d);
    }
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name))
        .and_then(|h| h.strip_prefix("autoconfig."));
    match host {
        Some(h) => documents::check_domain(h),
        None => Ok(cfg.global.mydomain.clone()),
    }
}

async fn handle(cfg: &Config, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_ascii_lowercase();
    let resp = route(cfg, req, &method, &path).await;
    tracing::debug!(remote = %peer, %method, path, status = resp.status().as_u16(), "request");
    resp
}

async fn route(
    cfg: &Config,
    req: Request<Incoming>,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    let services = Services::from_config(cfg);
    let get = *method == Method::GET || *method == Method::HEAD;
    let not_allowed = |allow: &'static str| {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static(allow));
        r
    };
    match path {
        "/.well-known/autoconfig/mail/config-v1.1.xml" | "/mail/config-v1.1.xml" => {
            if !get {
                return not_allowed("GET, HEAD");
            }
            match thunderbird_domain(cfg, &req) {
                Ok(d) => reply(StatusCode::OK, XML, documents::thunderbird(&services, &d)),
                Err(_) => text(StatusCode::BAD_REQUEST, "bad email address or host name"),
            }
        }
        "/autodiscover/autodiscover.xml" => {
            let address = if *method == Method::POST {
                let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
                    .collect()
                    .await
                {
                    Ok(b) => b.to_bytes(),
                    Err(_) => {
                        return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
                    }
                };
                let body = String::from_utf8_lossy(&body);
                documents::autodiscover_request_address(&body).map(str::to_string)
            } else if get {
                query_param(&req, &["email", "emailaddress"])
            } else {
                return not_allowed("GET, HEAD, POST");
            };
            match address.as_deref().map(documents::parse_address) {
                Some(Ok((a, _))) => {
                    reply(StatusCode::OK, XML, documents::autodiscover(&services, &a))
                }
                _ => reply(
                    StatusCode::BAD_REQUEST,
                    XML,
                    documents::autodiscover_error("missing or malformed EMailAddress"),
                ),
            }
        }
        "/apple/postern.mobileconfig" => {
            if !get {
                return not_allowed("GET, HEAD");
            }
            let Some(Ok((a, d))) = query_param(&req, &["email"])
                .as_deref()
                .map(documents::parse_address)
            else {
                return text(StatusCode::BAD_REQUEST, "add ?email=ADDRESS");
            };
            match documents::mobileconfig(&services, &a, &d) {
                Some(doc) => {
                    let mut r = reply(StatusCode::OK, "application/x-apple-aspen-config", doc);
                    if let Ok(v) = "attachment; filename=\"postern.mobileconfig\"".parse() {
                        r.headers_mut().insert("content-disposition", v);
                    }
                    r
                }
                None => text(
                    StatusCode::NOT_FOUND,
                    "no IMAP/POP3 or submission listener configured",
                ),
            }
        }
        "/.well-known/mta-sts.txt" => {
            if !get {
                return not_allowed("GET, HEAD");
            }
            reply(StatusCode::OK, "text/plain", services::mta_sts_policy(cfg))
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}
