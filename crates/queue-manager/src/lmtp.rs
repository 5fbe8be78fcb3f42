//! LMTP client transport (RFC 2033) over a Unix socket or TCP
//! (`lmtp:unix:/path`, `lmtp:inet:host:port` next hops of [`crate::route`]).
//!
//! One connection per delivery: greeting, `LHLO`, `MAIL FROM`, one
//! `RCPT TO` per recipient, `DATA` with dot-stuffing, then one reply per
//! accepted recipient after the final dot (RFC 2033 4.2), `QUIT`. With a
//! [`LmtpPool`] (the router's), a connection is instead kept idle after a
//! complete transaction for up to [`POOL_IDLE`] and reused for the next one
//! after a `RSET` answered 250 (a closed or restarted server fails the
//! `RSET`, and a fresh connection is made).
//! 2xx = delivered, 4xx = temporary, 5xx = permanent; any connection or
//! protocol trouble is a temporary failure for every recipient not yet
//! decided.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

use crate::scheduler::{Outcome, Transport};
use crate::smtp_client::{Io, RcptTo};
use crate::spool::Message;

/// Bound on one reply line (RFC 5321 4.5.3.1.5: 512 octets) with room.
const MAX_REPLY_LINE: usize = 2048;
/// Bound on the lines of one multi-line reply.
const MAX_REPLY_LINES: usize = 100;
/// Per-command timeout (RFC 5321 4.5.3.2 suggests minutes; local peer).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// A reply: code and the text of all its lines joined by a space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    fn outcome(&self) -> Outcome {
        let s = format!("{} {}", self.code, self.text);
        match self.code {
            200..=299 => Outcome::Delivered,
            500..=599 => Outcome::PermFail(s),
            _ => Outcome::TempFail(s),
        }
    }
}

/// Read one (possibly multi-line) reply: lines `ddd-text` continue, the
/// last is `ddd text` or `ddd`; every line must carry the same code.
pub async fn read_reply<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<Reply> {
    read_reply_lines(r).await.map(|(reply, _)| reply)
}

/// [`read_reply`], also returning the text of each line (EHLO keywords).
pub async fn read_reply_lines<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
) -> std::io::Result<(Reply, Vec<String>)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut texts = Vec::new();
    let mut code = None;
    for _ in 0..MAX_REPLY_LINES {
        let mut line = Vec::new();
        let n = AsyncReadExt::take(&mut *r, MAX_REPLY_LINE as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        if line.last() != Some(&b'\n') {
            return Err(bad("reply line too long"));
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        let b = line.as_bytes();
        if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&b[0]) {
            return Err(bad("malformed reply"));
        }
        let c: u16 = line[..3].parse().map_err(|_| bad("malformed reply"))?;
        if *code.get_or_insert(c) != c {
            return Err(bad("reply code changed within a multi-line reply"));
        }
        let (more, text) = match b.get(3) {
            None => (false, ""),
            Some(b' ') => (false, &line[4..]),
            Some(b'-') => (true, &line[4..]),
            Some(_) => return Err(bad("malformed reply")),
        };
        texts.push(text.to_string());
        if !more {
            let reply = Reply {
                code: c,
                text: texts.join(" "),
            };
            return Ok((reply, texts));
        }
    }
    Err(bad("too many reply lines"))
}

/// Dot-stuff `content` (RFC 5321 4.5.2), make it end with CRLF, and
/// append the terminating `.CRLF`.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 64 + 5);
    let mut at_line_start = true;
    for &b in content {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !content.is_empty() && !content.ends_with(b"\r\n") {
        if content.ends_with(b"\r") {
            out.push(b'\n');
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Delivers over LMTP to a Unix socket (`lmtp.socket`).
#[derive(Debug, Clone)]
pub struct LmtpTransport {
    pub socket: PathBuf,
    /// Name sent in LHLO (`global.myhostname`).
    pub helo_name: String,
}

/// Where an LMTP server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LmtpTarget {
    Unix(PathBuf),
    /// Host name or IP address, port.
    Inet(String, u16),
}

impl std::fmt::Display for LmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LmtpTarget::Unix(p) => write!(f, "unix:{}", p.display()),
            LmtpTarget::Inet(h, p) => write!(f, "inet:{h}:{p}"),
        }
    }
}

struct Conn {
    r: BufReader<tokio::io::ReadHalf<Box<dyn Io>>>,
    w: tokio::io::WriteHalf<Box<dyn Io>>,
}

impl Conn {
    async fn reply(&mut self) -> std::io::Result<Reply> {
        tokio::time::timeout(COMMAND_TIMEOUT, read_reply(&mut self.r))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "reply timeout"))?
    }
    async fn cmd(&mut self, line: &str) -> std::io::Result<Reply> {
        self.w.write_all(line.as_bytes()).await?;
        self.w.write_all(b"\r\n").await?;
        self.reply().await
    }
}

/// `<addr>` with CR/LF and angle brackets stripped, so an address can never
/// inject a command.
pub fn path(addr: &str) -> String {
    let clean: String = addr
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '<' | '>'))
        .collect();
    format!("<{clean}>")
}

async fn connect(target: &LmtpTarget) -> std::io::Result<Box<dyn Io>> {
    let timeout = |_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout");
    Ok(match target {
        LmtpTarget::Unix(p) => Box::new(
            tokio::time::timeout(COMMAND_TIMEOUT, UnixStream::connect(p))
                .await
                .map_err(timeout)??,
        ),
        LmtpTarget::Inet(h, port) => {
            let s = tokio::time::timeout(COMMAND_TIMEOUT, TcpStream::connect((h.as_str(), *port)))
                .await
                .map_err(timeout)??;
            let _ = s.set_nodelay(true);
            Box::new(s)
        }
    })
}

/// How long an LMTP connection may stay idle in a [`LmtpPool`].
pub const POOL_IDLE: Duration = Duration::from_secs(2);
/// Transactions per pooled LMTP connection.
pub const POOL_MAX_USES: u32 = 1000;
/// Bound on idle connections per target.
const POOL_PER_TARGET: usize = 16;

struct Pooled {
    conn: Conn,
    /// LHLO keywords, upper-cased.
    ext: String,
    uses: u32,
    idle_since: std::time::Instant,
}

/// Idle LMTP connections by target, reused (after a `RSET` answered 250)
/// for the next transaction within [`POOL_IDLE`]; expired ones are closed
/// when the pool is next used.
#[derive(Default)]
pub struct LmtpPool {
    idle: std::sync::Mutex<std::collections::HashMap<LmtpTarget, Vec<Pooled>>>,
}

impl LmtpPool {
    fn take(&self, t: &LmtpTarget) -> Option<Pooled> {
        let mut map = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        for v in map.values_mut() {
            v.retain(|p| now.duration_since(p.idle_since) <= POOL_IDLE);
        }
        map.get_mut(t)?.pop()
    }

    fn put(&self, t: &LmtpTarget, p: Pooled) -> Option<Pooled> {
        if p.uses >= POOL_MAX_USES {
            return Some(p);
        }
        let mut map = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let v = map.entry(t.clone()).or_default();
        if v.len() >= POOL_PER_TARGET {
            return Some(p);
        }
        v.push(p);
        None
    }

    /// Idle connections held now.
    pub fn len(&self) -> usize {
        let map = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        map.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Deliver `m` to `rcpts` over LMTP at `target`; one outcome per recipient.
/// With a `pool`, an idle connection is reused and this one is kept after
/// a complete transaction.
pub async fn deliver_to(
    target: &LmtpTarget,
    helo_name: &str,
    pool: Option<&LmtpPool>,
    m: &Message,
    content: &[u8],
    rcpts: &[RcptTo],
) -> Vec<Outcome> {
    let mut out: Vec<Option<Outcome>> = vec![None; rcpts.len()];
    if let Err(e) = session(target, helo_name, pool, m, content, rcpts, &mut out).await {
        tracing::warn!(queue_id = %m.id, error = %e, lmtp = %target, "LMTP session failed");
        for o in out.iter_mut().filter(|o| o.is_none()) {
            *o = Some(Outcome::TempFail(format!(
                "451 4.4.2 LMTP session failed: {e}"
            )));
        }
    }
    out.into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::TempFail("451 4.3.0 no reply".into())))
        .collect()
}

/// A pooled connection that still answers `RSET`.
async fn reuse(pool: Option<&LmtpPool>, target: &LmtpTarget) -> Option<Pooled> {
    let mut p = pool?.take(target)?;
    match p.conn.cmd("RSET").await {
        Ok(r) if r.code == 250 => Some(p),
        _ => None,
    }
}

async fn session(
    target: &LmtpTarget,
    helo_name: &str,
    pool: Option<&LmtpPool>,
    m: &Message,
    content: &[u8],
    rcpts: &[RcptTo],
    out: &mut [Option<Outcome>],
) -> std::io::Result<()> {
    let fail_all = |reply: &Reply, out: &mut [Option<Outcome>]| {
        for o in out.iter_mut().filter(|o| o.is_none()) {
            *o = Some(reply.outcome());
        }
    };
    let (mut c, ext, uses) = match reuse(pool, target).await {
        Some(p) => (p.conn, p.ext, p.uses),
        None => {
            let stream = connect(target).await?;
            let (r, w) = tokio::io::split(stream);
            let mut c = Conn {
                r: BufReader::new(r),
                w,
            };
            let greet = c.reply().await?;
            if greet.code != 220 {
                fail_all(&greet, out);
                return Ok(());
            }
            let lhlo = c.cmd(&format!("LHLO {helo_name}")).await?;
            if lhlo.code != 250 {
                fail_all(&lhlo, out);
                return Ok(());
            }
            (c, lhlo.text.to_ascii_uppercase(), 0)
        }
    };
    let mut mail = format!("MAIL FROM:{}", path(&m.envelope.sender));
    if m.envelope.body == 1 && ext.contains("8BITMIME") {
        mail.push_str(" BODY=8BITMIME");
    }
    if m.envelope.smtputf8 && ext.contains("SMTPUTF8") {
        mail.push_str(" SMTPUTF8");
    }
    let r = c.cmd(&mail).await?;
    if r.code / 100 != 2 {
        fail_all(&r, out);
        return Ok(());
    }
    let mut accepted = Vec::new();
    for (k, rcpt) in rcpts.iter().enumerate() {
        let r = c.cmd(&format!("RCPT TO:{}", path(&rcpt.address))).await?;
        if r.code / 100 == 2 {
            accepted.push(k);
        } else {
            out[k] = Some(r.outcome());
        }
    }
    if accepted.is_empty() {
        let _ = c.cmd("QUIT").await;
        return Ok(());
    }
    let r = c.cmd("DATA").await?;
    if r.code != 354 {
        fail_all(&r, out);
        return Ok(());
    }
    c.w.write_all(&dot_stuff(content)).await?;
    for k in accepted {
        let r = c.reply().await?;
        out[k] = Some(r.outcome());
    }
    // Complete transaction: keep the connection for the next one.
    let p = Pooled {
        conn: c,
        ext,
        uses: uses + 1,
        idle_since: std::time::Instant::now(),
    };
    let rest = match pool {
        Some(pool) => pool.put(target, p),
        None => Some(p),
    };
    if let Some(mut p) = rest {
        let _ = p.conn.cmd("QUIT").await;
    }
    Ok(())
}

/// `delivery_transport = "lmtp"`: every recipient as it is, no lookups.
#[tonic::async_trait]
impl Transport for LmtpTransport {
    async fn deliver(&self, m: &Message, content: &[u8], rcpts: &[usize]) -> Vec<Outcome> {
        let list: Vec<RcptTo> = rcpts
            .iter()
            .map(|&i| {
                let r = &m.envelope.recipients[i];
                RcptTo {
                    address: r.address.clone(),
                    notify: r.notify,
                    orcpt: r.orcpt.clone(),
                }
            })
            .collect();
        let target = LmtpTarget::Unix(self.socket.clone());
        let started = std::time::Instant::now();
        let out = deliver_to(&target, &self.helo_name, None, m, content, &list).await;
        crate::metrics::attempt("lmtp", started.elapsed());
        for (r, o) in list.iter().zip(&out) {
            crate::metrics::record("lmtp", crate::metrics::domain_of(&r.address), o);
        }
        out
    }
}
