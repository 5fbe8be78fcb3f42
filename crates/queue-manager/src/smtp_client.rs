//! SMTP client (RFC 5321) for remote delivery, over tokio.
//!
//! One transaction per call, to the first host of a list that answers:
//! greeting, `EHLO` (falling back to `HELO` on a 5xx), `STARTTLS` when
//! offered and `queue.smtp_tls_security_level` is not `none` (`may`:
//! certificate not verified and, when the TLS handshake fails, the same host
//! again in plain text; `encrypt`: TLS required, not verified; `verify`: TLS
//! required and the certificate verified against the CA file and the host
//! name), `AUTH PLAIN` (relayhost only, only over TLS), then `MAIL FROM`
//! with `SIZE=`, `BODY=8BITMIME`, `SMTPUTF8` and the DSN parameters `RET`
//! and `ENVID` as the peer offers them, `RCPT TO` (with `NOTIFY`/`ORCPT`
//! when the peer offers DSN), pipelined when it offers PIPELINING, `DATA`
//! with dot-stuffing, `QUIT`.
//!
//! Results per recipient: 2xx relayed (the success DSN says `relayed`, or
//! there is none when the server offers DSN and so reports itself), 4xx temporary (retry later), 5xx
//! permanent (bounce). A message larger than the peer's `SIZE` is refused
//! before it is sent (`552 5.3.4`); a message that needs SMTPUTF8 (non-ASCII
//! addresses or headers) to a peer without it bounces (`550 5.6.7`, RFC 6531
//! 3.2).
//! Connection trouble, a bad greeting or `EHLO`/`HELO` refusal moves on to
//! the next host; once `MAIL FROM` was sent, trouble is a temporary failure
//! for every recipient not yet answered (the message might otherwise be
//! delivered twice).
//!
//! Connection reuse ([`ConnCache`]): after a transaction that reached the
//! end-of-data reply, the connection is kept idle for up to
//! [`CACHE_IDLE`] and reused for the next message to the same host name,
//! address and AUTH state (after a `RSET` that must answer 250), at most
//! [`MAX_REUSE`] messages and [`REUSE_TIME_LIMIT`] per connection, as
//! Postfix's connection cache. The host name is part of the key, so a
//! connection verified for one name is never used for another.
//!
//! The content goes with `BDAT <size> LAST` (as it is, no dot stuffing) to
//! a server that offers CHUNKING, otherwise with DATA. A message received
//! with `BODY=BINARYMIME` goes only to a server that offers CHUNKING and
//! BINARYMIME; to any other it bounces `554 5.6.3` (RFC 3030 3: no
//! conversion, as Postfix, which never relays binary content).
//!
//! Not done: DANE and MTA-STS; no downgrade of SMTPUTF8 messages (RFC 6857).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;

use crate::lmtp::{Reply, dot_stuff, path, read_reply_lines};
use crate::scheduler::Outcome;
use crate::spool::Message;

/// Connect timeout (Postfix `smtp_connect_timeout` is 30s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-command timeout (RFC 5321 4.5.3.2: 5 minutes for most commands).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Timeout for the reply to the final dot (RFC 5321 4.5.3.2.6: 10 minutes).
pub const DATA_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a connection may stay idle in the cache (Postfix
/// `smtp_connection_cache_time_limit` is 2s).
pub const CACHE_IDLE: Duration = Duration::from_secs(2);
/// Messages per connection (Postfix's `smtp_connection_reuse_count_limit`
/// has no limit by default).
pub const MAX_REUSE: u32 = 100;
/// Age after which a connection is not reused (Postfix
/// `smtp_connection_reuse_time_limit`).
pub const REUSE_TIME_LIMIT: Duration = Duration::from_secs(300);
/// Bound on idle connections per key and in all.
const CACHE_PER_KEY: usize = 8;
const CACHE_TOTAL: usize = 256;

/// A byte stream: TCP, TLS, or a Unix socket (LMTP).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One recipient as sent on the wire: the address to deliver to and its
/// DSN parameters (RFC 3461).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo {
    pub address: String,
    /// NOTIFY bits as in [`crate::spool::Recipient::notify`].
    pub notify: u8,
    /// `type;address`, decoded; empty = none.
    pub orcpt: String,
}

/// `queue.smtp_tls_security_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsLevel {
    None,
    May,
    Encrypt,
    Verify,
}

impl TlsLevel {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "none" => Self::None,
            "may" => Self::May,
            "encrypt" => Self::Encrypt,
            "verify" => Self::Verify,
            _ => {
                return Err(format!(
                    "{s:?}: must be \"none\", \"may\", \"encrypt\" or \"verify\""
                ));
            }
        })
    }
    fn required(self) -> bool {
        matches!(self, Self::Encrypt | Self::Verify)
    }
}

/// Credentials for AUTH PLAIN.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A host to try: name (SNI, verification, logs) and one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
}

/// The SMTP client settings.
#[derive(Clone)]
pub struct SmtpClient {
    pub helo_name: String,
    pub tls_level: TlsLevel,
    /// Used for `may` and `encrypt`: no certificate verification.
    pub tls_unverified: Arc<rustls::ClientConfig>,
    /// Used for `verify`.
    pub tls_verified: Option<Arc<rustls::ClientConfig>>,
    /// Idle connections for reuse.
    pub cache: Arc<ConnCache>,
}

/// (host name, address, authenticated)
type CacheKey = (String, SocketAddr, bool);

struct Cached {
    conn: Conn,
    ext: Extensions,
    uses: u32,
    born: Instant,
    idle_since: Instant,
}

/// Idle SMTP connections by destination; see the module documentation.
#[derive(Default)]
pub struct ConnCache {
    idle: std::sync::Mutex<HashMap<CacheKey, Vec<Cached>>>,
}

impl ConnCache {
    /// A cache with a task (on the current tokio runtime) that closes
    /// connections idle for longer than [`CACHE_IDLE`] with QUIT.
    pub fn start() -> Arc<Self> {
        let cache = Arc::new(Self::default());
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Some(c) = weak.upgrade() else { return };
                let old = c.expired();
                drop(c);
                for mut x in old {
                    let _ = tokio::time::timeout(Duration::from_secs(2), x.conn.cmd("QUIT")).await;
                }
            }
        });
        cache
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Vec<Cached>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expired(&self) -> Vec<Cached> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut map = self.lock();
        for v in map.values_mut() {
            let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(v)
                .into_iter()
                .partition(|c| now.duration_since(c.idle_since) > CACHE_IDLE);
            *v = keep;
            out.extend(old);
        }
        map.retain(|_, v| !v.is_empty());
        out
    }

    fn take(&self, k: &CacheKey) -> Option<Cached> {
        let now = Instant::now();
        let mut map = self.lock();
        let v = map.get_mut(k)?;
        while let Some(c) = v.pop() {
            if now.duration_since(c.idle_since) <= CACHE_IDLE {
                return Some(c);
            }
        }
        None
    }

    fn put(&self, k: CacheKey, c: Cached) -> Option<Cached> {
        if c.uses >= MAX_REUSE || c.born.elapsed() > REUSE_TIME_LIMIT {
            return Some(c);
        }
        let mut map = self.lock();
        let total: usize = map.values().map(Vec::len).sum();
        let v = map.entry(k).or_default();
        if v.len() >= CACHE_PER_KEY || total >= CACHE_TOTAL {
            return Some(c);
        }
        v.push(c);
        None
    }

    /// Idle connections held now.
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Default CA bundle for `verify` when `queue.smtp_tls_ca_file` is empty.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// TLS client configurations: the unverified one always, the verified one
/// when `level` is `verify` (from `ca_file`, PEM).
pub fn tls_configs(
    level: TlsLevel,
    ca_file: &std::path::Path,
) -> Result<(Arc<rustls::ClientConfig>, Option<Arc<rustls::ClientConfig>>), String> {
    let provider = postern_common::tls::provider();
    let unverified = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(postern_common::tls::AnyServerCert(
            provider.clone(),
        )))
        .with_no_client_auth();
    let verified = if level == TlsLevel::Verify {
        let path = if ca_file.as_os_str().is_empty() {
            std::path::Path::new(SYSTEM_CA_FILE)
        } else {
            ca_file
        };
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut &pem[..]) {
            let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(c)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("{}: no certificates", path.display()));
        }
        Some(Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ))
    } else {
        None
    };
    Ok((Arc::new(unverified), verified))
}

/// xtext (RFC 3461 4): `+XX` for `+`, `=`, and bytes outside `!`..`~`.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// `Envelope::body` of a message received with `BODY=BINARYMIME`.
const BODY_BINARYMIME: u8 = 2;

/// Extensions from an EHLO reply (keywords upper-cased, with parameters).
#[derive(Debug, Default, Clone)]
pub struct Extensions {
    pub starttls: bool,
    pub pipelining: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    /// `SIZE n` (0 = no limit announced); None = no SIZE.
    pub size: Option<u64>,
    pub auth_plain: bool,
    /// RFC 3030 CHUNKING (BDAT) and BINARYMIME.
    pub chunking: bool,
    pub binarymime: bool,
}

impl Extensions {
    /// `lines` = the reply lines after the first (the greeting line).
    pub fn parse(lines: &[String]) -> Self {
        let mut e = Self::default();
        for l in lines.iter().skip(1) {
            let mut words = l.split_ascii_whitespace();
            let Some(kw) = words.next() else { continue };
            match kw.to_ascii_uppercase().as_str() {
                "STARTTLS" => e.starttls = true,
                "PIPELINING" => e.pipelining = true,
                "8BITMIME" => e.eightbitmime = true,
                "SMTPUTF8" => e.smtputf8 = true,
                "DSN" => e.dsn = true,
                "CHUNKING" => e.chunking = true,
                "BINARYMIME" => e.binarymime = true,
                "SIZE" => e.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "AUTH" => {
                    e.auth_plain = words.any(|m| m.eq_ignore_ascii_case("PLAIN"));
                }
                _ => {}
            }
        }
        e
    }
}

/// Why a host was given up.
enum HostError {
    /// Before the transaction: try the next host.
    Next(String),
    /// TLS handshake failed; under `may` the same host is tried in clear.
    Tls(String),
}

struct Conn {
    s: BufReader<Box<dyn Io>>,
    /// Lines of the last reply (for EHLO parsing).
    last_lines: Vec<String>,
}

fn io_err(e: std::io::Error) -> HostError {
    HostError::Next(e.to_string())
}

impl Conn {
    async fn reply(&mut self, t: Duration) -> std::io::Result<Reply> {
        let (r, lines) = tokio::time::timeout(t, read_reply_lines(&mut self.s))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "reply timeout"))??;
        self.last_lines = lines;
        Ok(r)
    }
    async fn send(&mut self, line: &str) -> std::io::Result<()> {
        let w = self.s.get_mut();
        let mut buf = Vec::with_capacity(line.len() + 2);
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b"\r\n");
        tokio::time::timeout(COMMAND_TIMEOUT, w.write_all(&buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timeout"))??;
        w.flush().await
    }
    async fn cmd(&mut self, line: &str) -> std::io::Result<Reply> {
        self.send(line).await?;
        self.reply(COMMAND_TIMEOUT).await
    }
}

/// Whether a message submitted with SMTPUTF8 really needs it: non-ASCII
/// in the envelope addresses or in the header section (RFC 6531 3.2; as
/// Postfix's `smtputf8_autodetect`, an ASCII-only message is sent without).
fn needs_smtputf8(m: &Message, content: &[u8], rcpts: &[RcptTo]) -> bool {
    let header_end = content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| content.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(content.len());
    !m.envelope.sender.is_ascii()
        || rcpts.iter().any(|r| !r.address.is_ascii())
        || !content[..header_end].is_ascii()
}

fn notify_param(bits: u8) -> Option<String> {
    if bits == 0 {
        return None;
    }
    if bits & 1 != 0 {
        return Some("NEVER".into());
    }
    let mut v = Vec::new();
    if bits & 2 != 0 {
        v.push("SUCCESS");
    }
    if bits & 4 != 0 {
        v.push("FAILURE");
    }
    if bits & 8 != 0 {
        v.push("DELAY");
    }
    (!v.is_empty()).then(|| v.join(","))
}

/// Outcome of a reply from `remote` ("name[ip]") for a recipient; `dsn`:
/// the server offered DSN. Failures keep Postfix's wording
/// (`host NAME[IP] said: REPLY`), which the DSN turns into `Remote-MTA`.
pub fn outcome_of(r: &Reply, remote: &str, dsn: bool) -> Outcome {
    let s = format!("{} {}", r.code, r.text);
    match r.code {
        200..=299 => Outcome::Relayed {
            remote: remote.to_string(),
            reply: s,
            dsn,
        },
        500..=599 => Outcome::PermFail(crate::bounce::from_remote(remote, &s)),
        _ => Outcome::TempFail(crate::bounce::from_remote(remote, &s)),
    }
}

impl SmtpClient {
    /// Deliver `m` to `rcpts` through the first of `targets` that works.
    /// `auth`: AUTH PLAIN credentials (relayhost). One outcome per
    /// recipient, in order.
    pub async fn deliver(
        &self,
        targets: &[Target],
        auth: Option<&Credentials>,
        m: &Message,
        content: &[u8],
        rcpts: &[RcptTo],
    ) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = vec![None; rcpts.len()];
        let mut last = String::from("no host to connect to");
        'hosts: for t in targets {
            let key: CacheKey = (t.name.clone(), t.addr, auth.is_some());
            if let Some(mut cached) = self.cache.take(&key) {
                match cached.conn.cmd("RSET").await {
                    Ok(r) if r.code == 250 => {
                        tracing::debug!(queue_id = %m.id, host = %t.name, uses = cached.uses, "reusing connection");
                        self.run(t, key, cached, m, content, rcpts, &mut out).await;
                        break 'hosts;
                    }
                    // Closed by the peer meanwhile: connect afresh.
                    _ => drop(cached),
                }
            }
            let mut use_tls = self.tls_level != TlsLevel::None;
            for _ in 0..2 {
                match self
                    .session(t, use_tls, auth, m, content, rcpts, &mut out)
                    .await
                {
                    Ok(()) => break 'hosts,
                    Err(HostError::Tls(e)) if self.tls_level == TlsLevel::May && use_tls => {
                        tracing::warn!(queue_id = %m.id, host = %t.name, addr = %t.addr, error = %e, "TLS handshake failed, trying again without TLS");
                        use_tls = false;
                    }
                    Err(HostError::Tls(e)) | Err(HostError::Next(e)) => {
                        tracing::info!(queue_id = %m.id, host = %t.name, addr = %t.addr, error = %e, "host failed, trying the next one");
                        last = format!("{}[{}]: {e}", t.name, t.addr.ip());
                        break;
                    }
                }
            }
            // A host that answered part of the transaction ends the search.
            if out.iter().any(Option::is_some) {
                break;
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::TempFail(format!("451 4.4.1 {last}"))))
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    async fn session(
        &self,
        t: &Target,
        use_tls: bool,
        auth: Option<&Credentials>,
        m: &Message,
        content: &[u8],
        rcpts: &[RcptTo],
        out: &mut [Option<Outcome>],
    ) -> Result<(), HostError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(t.addr))
            .await
            .map_err(|_| HostError::Next("connect timeout".into()))?
            .map_err(io_err)?;
        let _ = tcp.set_nodelay(true);
        let mut c = Conn {
            s: BufReader::new(Box::new(tcp) as Box<dyn Io>),
            last_lines: Vec::new(),
        };
        let greet = c.reply(COMMAND_TIMEOUT).await.map_err(io_err)?;
        if greet.code != 220 {
            let _ = c.send("QUIT").await;
            return Err(HostError::Next(format!(
                "greeting: {} {}",
                greet.code, greet.text
            )));
        }
        let mut ext = self.hello(&mut c).await?;
        let mut tls = false;
        if use_tls && ext.starttls {
            let r = c.cmd("STARTTLS").await.map_err(io_err)?;
            if r.code != 220 {
                if self.tls_level.required() {
                    return Err(HostError::Next(format!(
                        "STARTTLS refused: {} {}",
                        r.code, r.text
                    )));
                }
            } else {
                if !c.s.buffer().is_empty() {
                    return Err(HostError::Next("data after STARTTLS reply".into()));
                }
                let (config, verify) = match (self.tls_level, &self.tls_verified) {
                    (TlsLevel::Verify, Some(v)) => (v.clone(), true),
                    _ => (self.tls_unverified.clone(), false),
                };
                let name = if verify {
                    rustls::pki_types::ServerName::try_from(t.name.clone())
                        .map_err(|e| HostError::Next(format!("bad host name for TLS: {e}")))?
                } else {
                    // SNI with the host name when it is one; the IP otherwise.
                    rustls::pki_types::ServerName::try_from(t.name.clone())
                        .unwrap_or(rustls::pki_types::ServerName::IpAddress(t.addr.ip().into()))
                };
                let inner = c.s.into_inner();
                let stream = tokio::time::timeout(
                    COMMAND_TIMEOUT,
                    TlsConnector::from(config).connect(name, inner),
                )
                .await
                .map_err(|_| HostError::Tls("TLS handshake timeout".into()))?
                .map_err(|e| HostError::Tls(e.to_string()))?;
                c = Conn {
                    s: BufReader::new(Box::new(stream) as Box<dyn Io>),
                    last_lines: Vec::new(),
                };
                tls = true;
                ext = self.hello(&mut c).await?;
            }
        }
        if !tls && self.tls_level.required() {
            let _ = c.send("QUIT").await;
            return Err(HostError::Next("TLS is required but not offered".into()));
        }
        tracing::debug!(queue_id = %m.id, host = %t.name, tls, "connected");
        if let Some(cred) = auth {
            if !tls {
                let _ = c.send("QUIT").await;
                return Err(HostError::Next(
                    "AUTH is configured but the connection is not encrypted".into(),
                ));
            }
            if !ext.auth_plain {
                let _ = c.send("QUIT").await;
                return Err(HostError::Next(
                    "relayhost does not offer AUTH PLAIN".into(),
                ));
            }
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("\0{}\0{}", cred.username, cred.password));
            let r = c
                .cmd(&format!("AUTH PLAIN {token}"))
                .await
                .map_err(io_err)?;
            if r.code != 235 {
                let _ = c.send("QUIT").await;
                return Err(HostError::Next(format!(
                    "AUTH failed: {} {}",
                    r.code, r.text
                )));
            }
        }
        // From here on, the host has the transaction: no next host.
        let now = Instant::now();
        let cached = Cached {
            conn: c,
            ext,
            uses: 0,
            born: now,
            idle_since: now,
        };
        let key = (t.name.clone(), t.addr, auth.is_some());
        self.run(t, key, cached, m, content, rcpts, out).await;
        Ok(())
    }

    /// One transaction on an open connection; keeps it for reuse when the
    /// transaction ended cleanly.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        t: &Target,
        key: CacheKey,
        mut cached: Cached,
        m: &Message,
        content: &[u8],
        rcpts: &[RcptTo],
        out: &mut [Option<Outcome>],
    ) {
        let ext = cached.ext.clone();
        let c = &mut cached.conn;
        let fail_all = |o: Outcome, out: &mut [Option<Outcome>]| {
            for x in out.iter_mut().filter(|x| x.is_none()) {
                *x = Some(o.clone());
            }
        };
        if let Some(limit) = ext.size
            && limit > 0
            && content.len() as u64 > limit
        {
            fail_all(
                Outcome::PermFail(format!(
                    "552 5.3.4 message size {} exceeds the limit {limit} of {}",
                    content.len(),
                    t.name
                )),
                out,
            );
            let _ = c.cmd("QUIT").await;
            return;
        }
        if m.envelope.body == BODY_BINARYMIME && !(ext.chunking && ext.binarymime) {
            // RFC 3030 3: binary content cannot go with DATA, and we do
            // not convert it (as Postfix, which never sends BINARYMIME).
            fail_all(
                Outcome::PermFail(format!(
                    "554 5.6.3 {} does not support BINARYMIME, needed by this message",
                    t.name
                )),
                out,
            );
            let _ = c.cmd("QUIT").await;
            return;
        }
        if m.envelope.smtputf8 && !ext.smtputf8 && needs_smtputf8(m, content, rcpts) {
            fail_all(
                Outcome::PermFail(format!(
                    "550 5.6.7 {} does not support SMTPUTF8, needed by this message",
                    t.name
                )),
                out,
            );
            let _ = c.cmd("QUIT").await;
            return;
        }
        let remote = format!("{}[{}]", t.name, t.addr.ip());
        match self
            .transaction(c, &ext, &remote, m, content, rcpts, out)
            .await
        {
            Ok(true) => {
                cached.uses += 1;
                cached.idle_since = Instant::now();
                if let Some(mut c) = self.cache.put(key, cached) {
                    let _ = c.conn.cmd("QUIT").await;
                }
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(queue_id = %m.id, host = %t.name, error = %e, "SMTP session failed during the transaction");
                fail_all(
                    Outcome::TempFail(format!("451 4.4.2 {}: lost connection: {e}", t.name)),
                    out,
                );
            }
        }
    }

    async fn hello(&self, c: &mut Conn) -> Result<Extensions, HostError> {
        let r = c
            .cmd(&format!("EHLO {}", self.helo_name))
            .await
            .map_err(io_err)?;
        if r.code == 250 {
            return Ok(Extensions::parse(&c.last_lines));
        }
        let r = c
            .cmd(&format!("HELO {}", self.helo_name))
            .await
            .map_err(io_err)?;
        if r.code == 250 {
            return Ok(Extensions::default());
        }
        Err(HostError::Next(format!(
            "HELO refused: {} {}",
            r.code, r.text
        )))
    }

    /// MAIL, RCPT, DATA. `Ok(true)`: the transaction reached the
    /// end-of-data reply and the connection may be reused; `Ok(false)`: it
    /// was ended with QUIT.
    #[allow(clippy::too_many_arguments)]
    async fn transaction(
        &self,
        c: &mut Conn,
        ext: &Extensions,
        remote: &str,
        m: &Message,
        content: &[u8],
        rcpts: &[RcptTo],
        out: &mut [Option<Outcome>],
    ) -> std::io::Result<bool> {
        let e = &m.envelope;
        let mut mail = format!("MAIL FROM:{}", path(&e.sender));
        if ext.size.is_some() {
            mail.push_str(&format!(" SIZE={}", content.len()));
        }
        if e.body == BODY_BINARYMIME {
            // Checked in `run`: the peer offers CHUNKING and BINARYMIME.
            mail.push_str(" BODY=BINARYMIME");
        } else if e.body != 0 && ext.eightbitmime {
            mail.push_str(" BODY=8BITMIME");
        }
        if e.smtputf8 && ext.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if ext.dsn {
            match e.ret {
                1 => mail.push_str(" RET=FULL"),
                2 => mail.push_str(" RET=HDRS"),
                _ => {}
            }
            if !e.envid.is_empty() {
                mail.push_str(&format!(" ENVID={}", xtext_encode(&e.envid)));
            }
        }
        let rcpt_lines: Vec<String> = rcpts
            .iter()
            .map(|r| {
                let mut l = format!("RCPT TO:{}", path(&r.address));
                if ext.dsn {
                    if let Some(n) = notify_param(r.notify) {
                        l.push_str(&format!(" NOTIFY={n}"));
                    }
                    if let Some((ty, a)) = r.orcpt.split_once(';')
                        && !ty.is_empty()
                        && !a.is_empty()
                    {
                        l.push_str(&format!(" ORCPT={ty};{}", xtext_encode(a)));
                    }
                }
                l
            })
            .collect();
        let mut replies = Vec::with_capacity(rcpts.len());
        let mail_reply;
        if ext.pipelining {
            // RFC 2920: MAIL and RCPTs in one write, replies in order.
            let mut batch = mail.clone();
            for l in &rcpt_lines {
                batch.push_str("\r\n");
                batch.push_str(l);
            }
            c.send(&batch).await?;
            mail_reply = c.reply(COMMAND_TIMEOUT).await?;
            for _ in &rcpt_lines {
                replies.push(c.reply(COMMAND_TIMEOUT).await?);
            }
        } else {
            mail_reply = c.cmd(&mail).await?;
            if mail_reply.code / 100 == 2 {
                for l in &rcpt_lines {
                    replies.push(c.cmd(l).await?);
                }
            }
        }
        if mail_reply.code / 100 != 2 {
            let o = outcome_of(&mail_reply, remote, ext.dsn);
            for x in out.iter_mut() {
                *x = Some(o.clone());
            }
            let _ = c.cmd("QUIT").await;
            return Ok(false);
        }
        let mut accepted = Vec::new();
        for (k, r) in replies.iter().enumerate() {
            if r.code / 100 == 2 {
                accepted.push(k);
            } else {
                out[k] = Some(outcome_of(r, remote, ext.dsn));
            }
        }
        if accepted.is_empty() {
            let _ = c.cmd("QUIT").await;
            return Ok(false);
        }
        if ext.chunking {
            // RFC 3030: one BDAT chunk with the content as it is (no dot
            // stuffing, no end-of-data line).
            let w = c.s.get_mut();
            let mut buf = format!("BDAT {} LAST\r\n", content.len()).into_bytes();
            buf.extend_from_slice(content);
            tokio::time::timeout(DATA_TIMEOUT, w.write_all(&buf))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "write timeout")
                })??;
            w.flush().await?;
        } else {
            let r = c.cmd("DATA").await?;
            if r.code != 354 {
                let o = outcome_of(&r, remote, ext.dsn);
                for &k in &accepted {
                    out[k] = Some(o.clone());
                }
                let _ = c.cmd("QUIT").await;
                return Ok(false);
            }
            let w = c.s.get_mut();
            tokio::time::timeout(DATA_TIMEOUT, w.write_all(&dot_stuff(content)))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "write timeout")
                })??;
            w.flush().await?;
        }
        let r = c.reply(DATA_TIMEOUT).await?;
        let o = outcome_of(&r, remote, ext.dsn);
        for &k in &accepted {
            out[k] = Some(o.clone());
        }
        // Clean state after the end-of-data reply: reusable.
        Ok(true)
    }
}

/// Targets for a list of hosts: every address of each host, in order, on
/// `port`.
pub fn targets(hosts: &[crate::mx::Host], port: u16) -> Vec<Target> {
    hosts
        .iter()
        .flat_map(|h| {
            h.addrs.iter().map(move |a: &IpAddr| Target {
                name: h.name.clone(),
                addr: SocketAddr::new(*a, port),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ehlo_extensions() {
        let lines: Vec<String> = [
            "mx.test hello",
            "PIPELINING",
            "SIZE 1000",
            "8bitmime",
            "STARTTLS",
            "AUTH LOGIN PLAIN",
            "DSN",
            "SMTPUTF8",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let e = Extensions::parse(&lines);
        assert!(
            e.pipelining && e.eightbitmime && e.starttls && e.auth_plain && e.dsn && e.smtputf8
        );
        assert_eq!(e.size, Some(1000));
        let e = Extensions::parse(&["mx.test".to_string(), "SIZE".to_string()]);
        assert_eq!(e.size, Some(0));
        assert!(!e.pipelining && !e.starttls);
    }

    #[tokio::test]
    async fn multi_line_ehlo_reply_gives_each_line() {
        let mut input: &[u8] =
            b"250-mx.test greets you\r\n250-PIPELINING\r\n250-SIZE 10\r\n250 STARTTLS\r\n220 next";
        let (r, lines) = read_reply_lines(&mut input).await.unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(
            lines,
            ["mx.test greets you", "PIPELINING", "SIZE 10", "STARTTLS"]
        );
        let e = Extensions::parse(&lines);
        assert!(e.pipelining && e.starttls && e.size == Some(10));
        // Mixed codes and garbage are errors, not panics.
        let mut bad: &[u8] = b"250-a\r\n550 b\r\n";
        assert!(read_reply_lines(&mut bad).await.is_err());
        let mut bad: &[u8] = b"25\r\n";
        assert!(read_reply_lines(&mut bad).await.is_err());
        let mut eof: &[u8] = b"250-a\r\n";
        assert!(read_reply_lines(&mut eof).await.is_err());
    }

    #[test]
    fn xtext_and_notify() {
        assert_eq!(xtext_encode("a+b=c d@x"), "a+2Bb+3Dc+20d@x");
        assert_eq!(notify_param(0), None);
        assert_eq!(notify_param(1).unwrap(), "NEVER");
        assert_eq!(notify_param(2 | 4 | 8).unwrap(), "SUCCESS,FAILURE,DELAY");
        assert_eq!(notify_param(4).unwrap(), "FAILURE");
    }

    #[test]
    fn tls_levels() {
        assert_eq!(TlsLevel::parse("may").unwrap(), TlsLevel::May);
        assert!(TlsLevel::parse("dane").is_err());
        assert!(TlsLevel::Verify.required() && !TlsLevel::May.required());
    }

    #[test]
    fn reply_outcomes() {
        let r = |code, text: &str| Reply {
            code,
            text: text.into(),
        };
        let host = "mx.example[192.0.2.1]";
        assert_eq!(
            outcome_of(&r(250, "ok"), host, true),
            Outcome::Relayed {
                remote: host.into(),
                reply: "250 ok".into(),
                dsn: true
            }
        );
        assert_eq!(
            outcome_of(&r(451, "4.3.0 later"), host, false),
            Outcome::TempFail("host mx.example[192.0.2.1] said: 451 4.3.0 later".into())
        );
        let perm = outcome_of(&r(550, "5.1.1 unknown"), host, false);
        assert_eq!(
            perm,
            Outcome::PermFail("host mx.example[192.0.2.1] said: 550 5.1.1 unknown".into())
        );
        let Outcome::PermFail(text) = perm else {
            unreachable!()
        };
        assert_eq!(
            crate::bounce::split_remote(&text),
            ("550 5.1.1 unknown", "mx.example")
        );
        assert_eq!(
            crate::bounce::split_remote("552 5.2.2 full"),
            ("552 5.2.2 full", "")
        );
    }
}
