//! Health probes that speak the real protocol: connect, read the greeting,
//! send one harmless command, check the answer, say goodbye. Used by
//! `mailctl status`.
//!
//! | protocol | greeting | command | expected |
//! | --- | --- | --- | --- |
//! | SMTP / LMTP | `220` | `NOOP` | `250`, then `QUIT` |
//! | POP3 | `+OK` | `CAPA` | `+OK` (RFC 1939 allows NOOP only after login) |
//! | IMAP | `* OK` | `a NOOP` | `a OK`, then `b LOGOUT` |
//! | HTTP | — | `GET / HTTP/1.1` | an `HTTP/1.x` status line |
//!
//! Implicit-TLS listeners (465, 995, 993, HTTPS) are probed over TLS. The
//! server certificate is *not* verified: a probe checks that the service
//! answers, not who it is (`mailctl doctor` checks certificates). Every read
//! is bounded ([`MAX_LINE`]) and the whole probe by a timeout.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Longest reply line read from a probed server.
pub const MAX_LINE: usize = 4096;

/// Which protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Lmtp,
    Pop3,
    Imap,
    Http,
}

/// Where to connect.
#[derive(Debug, Clone)]
pub enum Target<'a> {
    Tcp { address: &'a str, tls: bool },
    Unix(&'a Path),
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected answer {0:?}")]
    Unexpected(String),
}

/// What a successful probe saw.
#[derive(Debug, Clone)]
pub struct ProbeOk {
    /// The greeting line (for HTTP: the status line).
    pub banner: String,
    /// Time from connect to the answer of the command.
    pub elapsed: Duration,
}

/// Probe `target` with `protocol` within `timeout`.
pub async fn probe(
    target: Target<'_>,
    protocol: Protocol,
    timeout: Duration,
) -> Result<ProbeOk, ProbeError> {
    let started = Instant::now();
    let run = async {
        match target {
            Target::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(ProbeError::Connect)?;
                converse(s, protocol).await
            }
            Target::Tcp { address, tls } => {
                let s = tokio::net::TcpStream::connect(address)
                    .await
                    .map_err(ProbeError::Connect)?;
                if tls {
                    let name =
                        rustls::pki_types::ServerName::try_from("localhost").expect("literal name");
                    let s = connector()
                        .connect(name, s)
                        .await
                        .map_err(ProbeError::Tls)?;
                    converse(s, protocol).await
                } else {
                    converse(s, protocol).await
                }
            }
        }
    };
    let banner = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| ProbeError::Timeout(timeout))??;
    Ok(ProbeOk {
        banner,
        elapsed: started.elapsed(),
    })
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    protocol: Protocol,
) -> Result<String, ProbeError> {
    let mut s = BufReader::new(stream);
    match protocol {
        Protocol::Smtp | Protocol::Lmtp => {
            let banner = reply(&mut s).await?;
            expect(&banner, "220")?;
            s.get_mut().write_all(b"NOOP\r\n").await?;
            expect(&reply(&mut s).await?, "250")?;
            s.get_mut().write_all(b"QUIT\r\n").await?;
            let _ = reply(&mut s).await;
            Ok(banner)
        }
        Protocol::Pop3 => {
            let banner = line(&mut s).await?;
            expect(&banner, "+OK")?;
            s.get_mut().write_all(b"CAPA\r\n").await?;
            expect(&line(&mut s).await?, "+OK")?;
            loop {
                if line(&mut s).await? == "." {
                    break;
                }
            }
            s.get_mut().write_all(b"QUIT\r\n").await?;
            let _ = line(&mut s).await;
            Ok(banner)
        }
        Protocol::Imap => {
            let banner = line(&mut s).await?;
            expect(&banner, "* OK")?;
            s.get_mut().write_all(b"a NOOP\r\n").await?;
            loop {
                let l = line(&mut s).await?;
                if l.starts_with("a ") {
                    expect(&l, "a OK")?;
                    break;
                }
            }
            s.get_mut().write_all(b"b LOGOUT\r\n").await?;
            let _ = line(&mut s).await;
            Ok(banner)
        }
        Protocol::Http => {
            s.get_mut()
                .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .await?;
            let status = line(&mut s).await?;
            expect(&status, "HTTP/1.")?;
            Ok(status)
        }
    }
}

fn expect(line: &str, prefix: &str) -> Result<(), ProbeError> {
    if line.starts_with(prefix) {
        Ok(())
    } else {
        Err(ProbeError::Unexpected(line.chars().take(200).collect()))
    }
}

/// One line without its line end, at most [`MAX_LINE`] bytes.
async fn line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<String, ProbeError> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Err(ProbeError::Unexpected("connection closed".into()));
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// An SMTP/LMTP reply (last line of a multi-line one).
async fn reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<String, ProbeError> {
    for _ in 0..100 {
        let l = line(r).await?;
        if l.as_bytes().get(3) != Some(&b'-') {
            return Ok(l);
        }
    }
    Err(ProbeError::Unexpected("reply with too many lines".into()))
}

use tokio::io::AsyncReadExt as _;

fn connector() -> tokio_rustls::TlsConnector {
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::tls::AnyServerCert(
            crate::tls::provider(),
        )))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A one-connection server that answers each line it reads with the
    /// next scripted answer (the first answer is sent at once).
    async fn server(script: Vec<&'static str>) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            let mut answers = script.into_iter();
            if let Some(a) = answers.next() {
                w.write_all(a.as_bytes()).await.unwrap();
            }
            for a in answers {
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                let _ = w.write_all(a.as_bytes()).await;
            }
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest).await;
        });
        address
    }

    async fn run(address: &str, protocol: Protocol) -> Result<ProbeOk, ProbeError> {
        let target = Target::Tcp {
            address,
            tls: false,
        };
        probe(target, protocol, Duration::from_secs(10)).await
    }

    #[tokio::test]
    async fn protocols_that_answer_pass() {
        let a = server(vec![
            "220-mx.test hi\r\n220 ready\r\n",
            "250 ok\r\n",
            "221 bye\r\n",
        ])
        .await;
        assert_eq!(run(&a, Protocol::Smtp).await.unwrap().banner, "220 ready");
        let a = server(vec!["+OK ready\r\n", "+OK\r\nUSER\r\n.\r\n", "+OK bye\r\n"]).await;
        assert_eq!(run(&a, Protocol::Pop3).await.unwrap().banner, "+OK ready");
        let a = server(vec![
            "* OK ready\r\n",
            "* 3 EXISTS\r\na OK done\r\n",
            "* BYE\r\n",
        ])
        .await;
        assert_eq!(run(&a, Protocol::Imap).await.unwrap().banner, "* OK ready");
        let a = server(vec!["", "HTTP/1.1 404 Not Found\r\n\r\n"]).await;
        assert!(
            run(&a, Protocol::Http)
                .await
                .unwrap()
                .banner
                .starts_with("HTTP/1.1 404")
        );
    }

    #[tokio::test]
    async fn wrong_answers_and_dead_servers_fail() {
        let a = server(vec!["554 go away\r\n"]).await;
        assert!(
            matches!(run(&a, Protocol::Smtp).await, Err(ProbeError::Unexpected(l)) if l == "554 go away")
        );
        let a = server(vec!["* OK ready\r\n", "a NO busy\r\n"]).await;
        assert!(matches!(
            run(&a, Protocol::Imap).await,
            Err(ProbeError::Unexpected(_))
        ));
        let a = server(vec!["+OK\r\n", "-ERR no\r\n"]).await;
        assert!(matches!(
            run(&a, Protocol::Pop3).await,
            Err(ProbeError::Unexpected(_))
        ));
        // A line longer than MAX_LINE is cut, never buffered without bound.
        let long: &'static str =
            Box::leak(format!("220 {}\r\n", "x".repeat(MAX_LINE * 2)).into_boxed_str());
        let a = server(vec![long, "250 ok\r\n"]).await;
        assert!(run(&a, Protocol::Smtp).await.is_err());
        // Nothing listens: a connect error.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            run(&free.to_string(), Protocol::Smtp).await,
            Err(ProbeError::Connect(_))
        ));
        // Silent server: the probe's own timeout ends it.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = l.local_addr().unwrap().to_string();
        let target = Target::Tcp {
            address: &silent,
            tls: false,
        };
        let r = probe(target, Protocol::Imap, Duration::from_millis(100)).await;
        assert!(matches!(r, Err(ProbeError::Timeout(_))), "{r:?}");
        drop(l);
    }
}
