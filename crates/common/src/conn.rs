//! A client connection that may start in plaintext and switch to TLS
//! (STARTTLS / STLS), or start in TLS (ports 465, 995, 993).
//!
//! Protocol daemons read and write through [`Conn`] whatever the state; the
//! STARTTLS handshake consumes the plain stream and returns the TLS one, so
//! nothing read before the handshake can leak into the TLS session (the
//! caller must also discard its own read buffer: STARTTLS command injection,
//! CVE-2011-0411 and friends).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A plaintext or TLS stream over `S` (a `TcpStream` or `UnixStream`).
pub enum Conn<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
    /// Left behind by a failed [`Conn::upgrade`]: reads see EOF, writes fail.
    Closed,
}

/// What the TLS session negotiated, for `Received:` headers and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// e.g. `TLSv1.3`
    pub version: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`
    pub cipher: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Implicit TLS: handshake first.
    pub async fn accept_tls(stream: S, acceptor: &TlsAcceptor) -> io::Result<Self> {
        let tls = acceptor.accept(stream).await;
        crate::metrics::tls_handshake(tls.is_ok());
        Ok(Conn::Tls(Box::new(tls?)))
    }

    /// STARTTLS: upgrade a plaintext connection. Fails if already TLS.
    pub async fn start_tls(self, acceptor: &TlsAcceptor) -> io::Result<Self> {
        match self {
            Conn::Plain(s) => Self::accept_tls(s, acceptor).await,
            Conn::Tls(_) => Err(io::Error::other("TLS already active")),
            Conn::Closed => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    /// [`Conn::start_tls`] in place; on failure the connection is left
    /// [`Conn::Closed`].
    pub async fn upgrade(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        let plain = std::mem::replace(self, Conn::Closed);
        *self = plain.start_tls(acceptor).await?;
        Ok(())
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }

    /// Negotiated version and cipher suite, when TLS is active.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        match self {
            Conn::Plain(_) | Conn::Closed => None,
            Conn::Tls(t) => {
                let (_, session) = t.get_ref();
                Some(TlsInfo {
                    version: session
                        .protocol_version()
                        .and_then(|v| v.as_str())
                        .unwrap_or("TLS")
                        .replace("TLSv1_", "TLSv1."),
                    cipher: session
                        .negotiated_cipher_suite()
                        .and_then(|c| c.suite().as_str())
                        .unwrap_or("unknown")
                        .to_string(),
                })
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Closed => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Closed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// A plaintext exchange, STARTTLS, then an exchange over TLS verified
    /// against the generated CA.
    #[tokio::test]
    async fn plain_then_starttls() {
        let dir = tempfile::tempdir().unwrap();
        let cert = crate::devcert::ensure(dir.path(), &["localhost"]).unwrap();
        let acceptor =
            TlsAcceptor::from(crate::tls::server_config(&cert.cert_file, &cert.key_file).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut conn = Conn::Plain(s);
            assert!(!conn.is_tls() && conn.tls_info().is_none());
            conn.write_all(b"ready\n").await.unwrap();
            let mut conn = conn;
            conn.upgrade(&acceptor).await.unwrap();
            let info = conn.tls_info().unwrap();
            conn.write_all(format!("{} {}\n", info.version, info.cipher).as_bytes())
                .await
                .unwrap();
            conn.flush().await.unwrap();
            conn.shutdown().await.unwrap();
        });
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert.ca_file).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let client_cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut line = [0u8; 6];
        tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut line)
            .await
            .unwrap();
        assert_eq!(&line, b"ready\n");
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_cfg));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let mut text = String::new();
        BufReader::new(tls).read_line(&mut text).await.unwrap();
        assert!(text.starts_with("TLSv1.3 TLS13_"), "{text}");
        server.await.unwrap();
    }
}
