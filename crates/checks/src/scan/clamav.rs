//! `[checks.clamav]`: every message through clamd's INSTREAM command.
//!
//! One connection per message: `zINSTREAM\0`, the message in chunks each
//! preceded by its length (4 bytes, big-endian), a zero length to end, then
//! one NUL-terminated reply: `stream: OK`, `stream: <virus> FOUND` or
//! `<reason> ERROR`. clamd drops a stream longer than its
//! `StreamMaxLength`; a message longer than `stream_max_length` is not sent
//! at all but accepted unscanned with a warning header.
//!
//! Verdicts: a virus → `554 5.7.1` naming it, or hold (`infected_action`);
//! clamd down, slow or answering ERROR → `451 4.7.1`, or accept with an
//! `X-Virus-Scan: unscanned (...)` header (`on_error`).

use std::sync::Arc;

use postern_common::checks::scan::{ClamavConfig, InfectedAction, ScanErrorAction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Action, Check, CheckSession, Connection, Envelope, Verdict};

const NAME: &str = "clamav";

/// Bytes per INSTREAM chunk (clamd reads chunks of any size up to its
/// StreamMaxLength; 64 KiB keeps our writes and its reads small).
pub const CHUNK: usize = 64 * 1024;

/// Longest clamd reply read (a verdict line with a signature name).
pub const MAX_REPLY: usize = 4096;

/// Longest virus name put into an SMTP reply or hold reason.
pub const MAX_VIRUS_NAME: usize = 100;

/// The header added when a message is accepted without a scan.
pub const UNSCANNED_HEADER: &str = "X-Virus-Scan";

/// What clamd said about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanResult {
    Clean,
    /// The signature name, sanitized.
    Infected(String),
    /// clamd's error text, sanitized.
    Error(String),
}

/// The bytes of an INSTREAM request for `message`: command, chunks, end.
pub fn instream_request(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16 + 4 * (message.len() / CHUNK + 1));
    out.extend_from_slice(b"zINSTREAM\0");
    for chunk in message.chunks(CHUNK) {
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// Parse clamd's reply (with or without the terminating NUL / newline).
pub fn parse_reply(reply: &[u8]) -> ScanResult {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n', '\r']).trim();
    if let Some(rest) = text.strip_suffix(" FOUND") {
        // "stream: Name FOUND"; with IDSESSION a "<id>: " prefix comes first.
        let name = match rest.rsplit_once(": ") {
            Some((_, n)) => n,
            None if rest.ends_with(':') => "",
            None => rest,
        };
        let name = sanitize(name, MAX_VIRUS_NAME);
        return if name.is_empty() {
            ScanResult::Error("FOUND without a signature name".into())
        } else {
            ScanResult::Infected(name)
        };
    }
    if text.ends_with(": OK") || text == "OK" {
        return ScanResult::Clean;
    }
    if let Some(rest) = text.strip_suffix(" ERROR") {
        return ScanResult::Error(sanitize(rest, 200));
    }
    ScanResult::Error(format!("unexpected reply {:?}", sanitize(text, 200)))
}

/// Printable ASCII only (no CR/LF reaching an SMTP reply or a header),
/// at most `max` characters.
fn sanitize(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Why a scan did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ClamdError {
    #[error("clamd at {socket}: {source}")]
    Io {
        socket: String,
        source: std::io::Error,
    },
    #[error("clamd at {socket}: no verdict within {timeout}")]
    Timeout { socket: String, timeout: String },
    #[error("clamd at {0}: connection closed without a verdict")]
    NoReply(String),
}

/// The ClamAV check.
pub struct ClamavCheck {
    cfg: ClamavConfig,
}

impl ClamavCheck {
    pub fn new(cfg: &ClamavConfig) -> Self {
        Self { cfg: cfg.clone() }
    }

    /// Send `message` to clamd and read its verdict.
    pub async fn scan(&self, message: &[u8]) -> Result<ScanResult, ClamdError> {
        let socket = self.cfg.socket.to_string();
        let io = |source| ClamdError::Io {
            socket: socket.clone(),
            source,
        };
        let mut s = super::connect(&self.cfg.socket, self.cfg.connect_timeout)
            .await
            .map_err(io)?;
        let exchange = async {
            let request = instream_request(message);
            // clamd may close early (size limit, error) and still have
            // written its reply: read it even when the write failed.
            let write = s.write_all(&request).await;
            let _ = s.flush().await;
            let mut reply = Vec::new();
            let mut buf = [0u8; 512];
            while reply.len() < MAX_REPLY && !reply.contains(&0) {
                match s.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => reply.extend_from_slice(&buf[..n]),
                    Err(e) if reply.is_empty() => return Err(io(e)),
                    Err(_) => break,
                }
            }
            if reply.is_empty() {
                return Err(match write {
                    Err(e) => io(e),
                    Ok(()) => ClamdError::NoReply(socket.clone()),
                });
            }
            reply.truncate(MAX_REPLY);
            Ok(parse_reply(&reply))
        };
        match tokio::time::timeout(self.cfg.scan_timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(ClamdError::Timeout {
                socket: socket.clone(),
                timeout: postern_common::duration::format(self.cfg.scan_timeout),
            }),
        }
    }

    /// The verdicts for `message` (empty when clean).
    pub async fn check(&self, session: &str, message: &[u8]) -> Vec<Verdict> {
        if message.len() as u64 > self.cfg.stream_max_length {
            tracing::warn!(
                session,
                size = message.len(),
                stream_max_length = self.cfg.stream_max_length,
                "clamav: message larger than stream_max_length, not scanned"
            );
            return vec![Verdict::new(
                NAME,
                Action::AddHeader {
                    name: UNSCANNED_HEADER.into(),
                    value: "unscanned (larger than the scanner's limit)".into(),
                },
                format!(
                    "not scanned: {} bytes > stream_max_length {}",
                    message.len(),
                    self.cfg.stream_max_length
                ),
            )];
        }
        let started = std::time::Instant::now();
        let result = self.scan(message).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(ScanResult::Clean) => {
                tracing::debug!(session, elapsed_ms, "clamav: clean");
                Vec::new()
            }
            Ok(ScanResult::Infected(name)) => {
                let action = match self.cfg.infected_action {
                    InfectedAction::Reject => Action::Reject {
                        code: 554,
                        enhanced: (5, 7, 1),
                        text: format!("Message rejected: virus found: {name}"),
                    },
                    InfectedAction::Hold => Action::Hold {
                        reason: format!("virus {name}"),
                    },
                };
                vec![Verdict::new(NAME, action, format!("virus {name}"))]
            }
            Ok(ScanResult::Error(e)) => self.on_error(session, &format!("clamd error: {e}")),
            Err(e) => self.on_error(session, &e.to_string()),
        }
    }

    fn on_error(&self, session: &str, why: &str) -> Vec<Verdict> {
        tracing::warn!(session, error = %why, "clamav: message not scanned");
        let action = match self.cfg.on_error {
            ScanErrorAction::Tempfail => Action::TempFail {
                code: 451,
                enhanced: (4, 7, 1),
                text: "Virus scanner unavailable, try again later".into(),
            },
            ScanErrorAction::Accept => Action::AddHeader {
                name: UNSCANNED_HEADER.into(),
                value: "unscanned (virus scanner unavailable)".into(),
            },
        };
        vec![Verdict::new(NAME, action, format!("not scanned: {why}"))]
    }
}

impl Check for ClamavCheck {
    fn name(&self) -> &'static str {
        NAME
    }

    fn session(self: Arc<Self>, _conn: &Connection) -> Box<dyn CheckSession> {
        Box::new(ClamavSession(self))
    }
}

struct ClamavSession(Arc<ClamavCheck>);

#[async_trait::async_trait]
impl CheckSession for ClamavSession {
    async fn data(&mut self, conn: &Connection, _env: &Envelope, message: &[u8]) -> Vec<Verdict> {
        self.0.check(&conn.session_id, message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_common::checks::scan::ScanSocket;
    use std::time::Duration;
    use tokio::net::TcpListener;

    fn cfg(socket: ScanSocket) -> ClamavConfig {
        ClamavConfig {
            enabled: true,
            socket,
            scan_timeout: Duration::from_millis(300),
            ..ClamavConfig::default()
        }
    }

    #[tokio::test]
    async fn a_hanging_or_absent_clamd_gets_on_error_and_big_mail_is_not_sent() {
        // clamd that reads everything and never answers.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        let c = ClamavCheck::new(&cfg(ScanSocket::Inet(addr.clone())));
        let v = c.check("s1", b"Subject: x\r\n\r\nhi\r\n").await;
        assert!(
            matches!(v[0].action, Action::TempFail { code: 451, .. }),
            "{v:?}"
        );
        assert!(v[0].reason.contains("no verdict within"), "{v:?}");

        let mut accept = cfg(ScanSocket::Inet(addr));
        accept.on_error = ScanErrorAction::Accept;
        let v = ClamavCheck::new(&accept).check("s1", b"x").await;
        assert_eq!(
            v[0].action,
            Action::AddHeader {
                name: UNSCANNED_HEADER.into(),
                value: "unscanned (virus scanner unavailable)".into()
            }
        );

        let gone = ClamavCheck::new(&cfg(ScanSocket::Unix("/nonexistent/clamd.ctl".into())));
        let v = gone.check("s1", b"x").await;
        assert!(matches!(v[0].action, Action::TempFail { .. }), "{v:?}");

        // Larger than stream_max_length: not sent (the socket does not
        // even exist), accepted with the header.
        let mut small = cfg(ScanSocket::Unix("/nonexistent/clamd.ctl".into()));
        small.stream_max_length = 10;
        let v = ClamavCheck::new(&small).check("s1", &[b'x'; 11]).await;
        assert!(
            matches!(&v[0].action, Action::AddHeader { value, .. } if value.contains("larger")),
            "{v:?}"
        );
    }

    #[test]
    fn request_framing() {
        assert_eq!(instream_request(b""), b"zINSTREAM\0\0\0\0\0");
        assert_eq!(
            instream_request(b"abc"),
            b"zINSTREAM\0\0\0\0\x03abc\0\0\0\0"
        );
        let big = vec![b'x'; CHUNK + 5];
        let r = instream_request(&big);
        assert_eq!(&r[10..14], &(CHUNK as u32).to_be_bytes());
        assert_eq!(&r[14 + CHUNK..18 + CHUNK], &5u32.to_be_bytes());
        assert_eq!(&r[r.len() - 4..], &[0, 0, 0, 0]);
        assert_eq!(r.len(), 10 + 4 + CHUNK + 4 + 5 + 4);
    }

    #[test]
    fn replies() {
        let cases: [(&[u8], ScanResult); 9] = [
            (b"stream: OK\0", ScanResult::Clean),
            (b"stream: OK\n", ScanResult::Clean),
            (
                b"stream: Eicar-Test-Signature FOUND\0",
                ScanResult::Infected("Eicar-Test-Signature".into()),
            ),
            (
                b"1: stream: Win.Test.EICAR_HDB-1 FOUND\0",
                ScanResult::Infected("Win.Test.EICAR_HDB-1".into()),
            ),
            (
                b"stream: Evil\r\nInjected: x FOUND\0",
                ScanResult::Infected("x".into()),
            ),
            (
                b"INSTREAM size limit exceeded. ERROR\0",
                ScanResult::Error("INSTREAM size limit exceeded.".into()),
            ),
            (
                b"stream: FOUND\0",
                ScanResult::Error("FOUND without a signature name".into()),
            ),
            (b"", ScanResult::Error("unexpected reply \"\"".into())),
            (
                b"PONG\0",
                ScanResult::Error("unexpected reply \"PONG\"".into()),
            ),
        ];
        for (reply, want) in cases {
            assert_eq!(
                parse_reply(reply),
                want,
                "{:?}",
                String::from_utf8_lossy(reply)
            );
        }
        let long = format!("stream: {} FOUND\0", "A".repeat(1000));
        match parse_reply(long.as_bytes()) {
            ScanResult::Infected(n) => assert_eq!(n.len(), MAX_VIRUS_NAME),
            other => panic!("{other:?}"),
        }
    }
}
