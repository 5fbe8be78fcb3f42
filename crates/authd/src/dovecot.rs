//! The Dovecot authentication protocol (v1.x, "auth-client" side), so a
//! stock Postfix with `smtpd_sasl_type = dovecot` can authenticate against
//! authd.
//!
//! ```text
//! S: VERSION 1 2 / MECH PLAIN plaintext / ... / SPID pid / CUID n / COOKIE hex / DONE
//! C: VERSION 1 x / CPID pid
//! C: AUTH id mech service=smtp [secured] [rip=..] [resp=base64]
//! S: CONT id base64          C: CONT id base64
//! S: OK id user=alice@example.org [resp=base64]  |  FAIL id reason=... [temp]
//! ```
//!
//! Fields are TAB-separated, lines end in LF; values use Dovecot's `\001`
//! escaping. One exchange at a time per connection (what Postfix does); an
//! `AUTH` with a new id while one runs cancels the running one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::exchange::{Core, Io, Outcome, Reply, Start, mechanisms};

/// Bound on one protocol line (Dovecot uses 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;
/// Major protocol version we speak.
pub const MAJOR: u32 = 1;

static CONNECTIONS: AtomicU32 = AtomicU32::new(1);

/// Decode Dovecot's `\001` escaping.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1}' {
            match chars.next() {
                Some('0') => out.push('\0'),
                Some('1') => out.push('\u{1}'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('n') | Some('l') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Apply Dovecot's `\001` escaping.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\u{1}0"),
            '\u{1}' => out.push_str("\u{1}1"),
            '\t' => out.push_str("\u{1}t"),
            '\r' => out.push_str("\u{1}r"),
            '\n' => out.push_str("\u{1}n"),
            c => out.push(c),
        }
    }
    out
}

/// Read one LF-terminated line of at most [`MAX_LINE`] bytes. `Ok(None)` at EOF.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(None);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(p) => (&available[..p], Some(p + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() > MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line too long",
            ));
        }
        buf.extend_from_slice(chunk);
        let used = done.unwrap_or(available.len());
        r.consume(used);
        if done.is_some() {
            let line = String::from_utf8(buf)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"))?;
            return Ok(Some(line.trim_end_matches('\r').to_string()));
        }
    }
}

struct DovecotIo<'a, R, W> {
    reader: &'a mut R,
    writer: &'a mut W,
    id: String,
}

impl<R: AsyncBufRead + Unpin + Send, W: AsyncWrite + Unpin + Send> Io for DovecotIo<'_, R, W> {
    async fn challenge(&mut self, data: Vec<u8>) -> Option<Reply> {
        let line = format!("CONT\t{}\t{}\n", self.id, B64.encode(data));
        self.writer.write_all(line.as_bytes()).await.ok()?;
        self.writer.flush().await.ok()?;
        let line = read_line(self.reader).await.ok()??;
        let mut f = line.split('\t');
        match (f.next(), f.next(), f.next()) {
            (Some("CONT"), Some(id), data) if id == self.id => {
                let data = data.unwrap_or("");
                if data == "*" {
                    return Some(Reply::Cancel);
                }
                // An undecodable response fails the exchange like a wrong answer.
                Some(Reply::Data(
                    B64.decode(data.trim()).unwrap_or_else(|_| vec![0xff]),
                ))
            }
            _ => None,
        }
    }
}

/// Serve one client connection.
pub async fn serve_connection<S>(core: Arc<Core>, stream: S)
where
    S: tokio::io::AsyncRead + AsyncWrite + Unpin + Send,
{
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    let cuid = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let mut hello = format!("VERSION\t{MAJOR}\t2\n");
    for m in mechanisms(true) {
        let flags = if m == "PLAIN" || m == "LOGIN" {
            "\tplaintext"
        } else {
            ""
        };
        hello.push_str(&format!("MECH\t{m}{flags}\n"));
    }
    let cookie: String = (0..16).map(|_| format!("{:02x}", rand_byte())).collect();
    hello.push_str(&format!(
        "SPID\t{}\nCUID\t{cuid}\nCOOKIE\t{cookie}\nDONE\n",
        std::process::id()
    ));
    if w.write_all(hello.as_bytes()).await.is_err() || w.flush().await.is_err() {
        return;
    }
    let mut version_ok = false;
    loop {
        let line = match read_line(&mut r).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "dovecot-auth client: bad input, closing");
                return;
            }
        };
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.first().copied() {
            Some("VERSION") => {
                if fields.get(1).and_then(|v| v.parse::<u32>().ok()) != Some(MAJOR) {
                    tracing::warn!(line = %line, "dovecot-auth client speaks another major version");
                    return;
                }
                version_ok = true;
            }
            Some("CPID") => {}
            Some("AUTH") if version_ok && fields.len() >= 3 => {
                let id = fields[1].to_string();
                let mut start = Start {
                    mechanism: fields[2].to_ascii_uppercase(),
                    ..Default::default()
                };
                for p in &fields[3..] {
                    match p.split_once('=') {
                        Some(("service", v)) => start.service = unescape(v),
                        Some(("rip", v)) => start.remote_ip = unescape(v),
                        Some(("session", v)) => start.session = unescape(v),
                        Some(("resp", v)) => {
                            start.initial_response =
                                Some(B64.decode(v.trim()).unwrap_or_else(|_| vec![0xff]))
                        }
                        None if *p == "secured" => start.secured = true,
                        _ => {}
                    }
                }
                if start.service.is_empty() {
                    start.service = "dovecot-auth".into();
                }
                let outcome = {
                    let mut io = DovecotIo {
                        reader: &mut r,
                        writer: &mut w,
                        id: id.clone(),
                    };
                    core.run(start, &mut io).await
                };
                let reply = match outcome {
                    Outcome::Ok { user, final_data } if final_data.is_empty() => {
                        format!("OK\t{id}\tuser={}\n", escape(&user))
                    }
                    Outcome::Ok { user, final_data } => format!(
                        "OK\t{id}\tuser={}\tresp={}\n",
                        escape(&user),
                        B64.encode(final_data)
                    ),
                    Outcome::Fail {
                        temporary: true,
                        reason,
                        ..
                    } => format!("FAIL\t{id}\treason={}\ttemp\n", escape(reason)),
                    Outcome::Fail { reason, .. } => {
                        format!("FAIL\t{id}\treason={}\n", escape(reason))
                    }
                };
                if w.write_all(reply.as_bytes()).await.is_err() || w.flush().await.is_err() {
                    return;
                }
            }
            _ => {
                tracing::warn!(
                    command = fields.first().copied().unwrap_or(""),
                    "dovecot-auth client: unexpected command, closing"
                );
                return;
            }
        }
    }
}

fn rand_byte() -> u8 {
    // The cookie only matters for Dovecot's master/login split, which we do
    // not have; it still should not be predictable.
    let mut b = [0u8; 1];
    let _ = getrandom(&mut b);
    b[0]
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        for s in ["plain", "tab\there", "nl\nx", "\u{1}", "nul\0", "cr\r"] {
            assert_eq!(unescape(&escape(s)), s);
            assert!(!escape(s).contains(['\t', '\n']));
        }
        assert_eq!(unescape("a\u{1}lb"), "a\nb");
    }

    #[tokio::test]
    async fn bounded_lines() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut r = BufReader::new(&long[..]);
        assert!(read_line(&mut r).await.is_err());
        let mut r = BufReader::new(&b"VERSION\t1\t0\r\nCPID\t1\n"[..]);
        assert_eq!(
            read_line(&mut r).await.unwrap().as_deref(),
            Some("VERSION\t1\t0")
        );
        assert_eq!(read_line(&mut r).await.unwrap().as_deref(), Some("CPID\t1"));
        assert_eq!(read_line(&mut r).await.unwrap(), None);
    }
}
