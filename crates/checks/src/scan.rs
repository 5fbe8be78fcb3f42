//! External content scanners: milters ([`milter`]), then ClamAV
//! ([`clamav`]). Both talk to a daemon over a Unix or TCP socket
//! ([`ScanSocket`]) with bounded waits; when the daemon is down the
//! configured default action applies.

pub mod clamav;
pub mod milter;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use postern_common::Config;
use postern_common::checks::scan::ScanSocket;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Pipeline;

/// Add the enabled scanners, in order: each milter, then clamav.
pub fn build(cfg: &Config, p: &mut Pipeline) -> anyhow::Result<()> {
    for (i, m) in cfg.checks.milter.iter().enumerate() {
        if !m.enabled {
            continue;
        }
        let check = milter::MilterCheck::new(m, &cfg.global.myhostname)
            .with_context(|| format!("checks.milter[{i}]"))?;
        p.push(Arc::new(check), m.roles.clone());
    }
    let c = &cfg.checks.clamav;
    if c.enabled {
        p.push(Arc::new(clamav::ClamavCheck::new(c)), c.roles.clone());
    }
    Ok(())
}

/// A connected scanner socket.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// Connect to `socket` within `timeout`.
pub async fn connect(socket: &ScanSocket, timeout: Duration) -> std::io::Result<Box<dyn Stream>> {
    let fut = async {
        Ok::<Box<dyn Stream>, std::io::Error>(match socket {
            ScanSocket::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            ScanSocket::Inet(hp) => {
                // `[::1]:port` → `::1` and port for the resolver.
                let (host, port) = hp.rsplit_once(':').unwrap_or((hp.as_str(), "0"));
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let port: u16 = port.parse().unwrap_or(0);
                let s = tokio::net::TcpStream::connect((host, port)).await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
        })
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no connection within {}",
                postern_common::duration::format(timeout)
            ),
        )),
    }
}
