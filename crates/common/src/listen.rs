//! Listening sockets: taken from systemd socket activation when present,
//! bound by the daemon otherwise.
//!
//! An activated socket is matched to a configured listener first by name
//! (`FileDescriptorName=` in the `.socket` unit equals the listener's `name`),
//! then by its bound address.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use anyhow::Context as _;
use postern_ipc::SocketUri;

use crate::systemd::{ActivatedSocket, take_listen_fds};

/// The sockets handed over by systemd, consumed as listeners claim them.
#[derive(Debug, Default)]
pub struct Listeners {
    activated: Mutex<Vec<ActivatedSocket>>,
}

impl Listeners {
    /// Take over `LISTEN_FDS` (call once, early in `main`).
    pub fn from_env() -> Self {
        Self {
            activated: Mutex::new(take_listen_fds()),
        }
    }

    fn claim(&self, pred: impl Fn(&ActivatedSocket) -> bool) -> Option<OwnedFd> {
        let mut list = self.activated.lock().unwrap_or_else(|e| e.into_inner());
        let pos = list.iter().position(pred)?;
        Some(list.remove(pos).fd)
    }

    /// A TCP listener named `name` on `address`.
    pub fn tcp(&self, name: &str, address: &str) -> anyhow::Result<tokio::net::TcpListener> {
        let addr: SocketAddr = address
            .parse()
            .with_context(|| format!("listener {name}: bad address {address:?}"))?;
        let by_name = self.claim(|s| s.name == name);
        let fd = by_name.or_else(|| {
            self.claim(|s| {
                nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(
                    std::os::fd::AsRawFd::as_raw_fd(&s.fd.as_fd()),
                )
                .ok()
                .and_then(|a| sockaddr_to_std(&a))
                    == Some(addr)
            })
        });
        let std_listener = match fd {
            Some(fd) => {
                tracing::info!(listener = name, %addr, "using socket from systemd");
                std::net::TcpListener::from(fd)
            }
            None => {
                bind_tcp(addr).with_context(|| format!("listener {name}: cannot bind {addr}"))?
            }
        };
        std_listener.set_nonblocking(true)?;
        Ok(tokio::net::TcpListener::from_std(std_listener)?)
    }

    /// A Unix stream listener for `uri` (mode applied when we bind it ourselves).
    pub fn unix(
        &self,
        name: &str,
        uri: &SocketUri,
        mode: u32,
    ) -> anyhow::Result<tokio::net::UnixListener> {
        if let Some(fd) = self.claim(|s| s.name == name) {
            tracing::info!(listener = name, socket = %uri, "using socket from systemd");
            let l = std::os::unix::net::UnixListener::from(fd);
            l.set_nonblocking(true)?;
            return Ok(tokio::net::UnixListener::from_std(l)?);
        }
        Ok(postern_ipc::bind_unix(uri, mode)?)
    }

    /// Activated sockets nobody claimed (logged as a configuration mismatch).
    pub fn unclaimed(&self) -> Vec<String> {
        let list = self.activated.lock().unwrap_or_else(|e| e.into_inner());
        list.iter().map(|s| s.name.clone()).collect()
    }
}

fn bind_tcp(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrStorage, setsockopt, sockopt,
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = nix::sys::socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    let sa = SockaddrStorage::from(addr);
    nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &sa)?;
    nix::sys::socket::listen(&fd, nix::sys::socket::Backlog::new(1024)?)?;
    Ok(std::net::TcpListener::from(fd))
}

fn sockaddr_to_std(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    if let Some(v6) = a.as_sockaddr_in6() {
        return Some(SocketAddr::from((v6.ip(), v6.port())));
    }
    None
}

/// Accept connections on `listener` until shutdown begins; each connection
/// runs `session` as a task that shutdown drains. Accept errors (e.g. out of
/// file descriptors) are logged and retried after a short pause.
pub async fn accept_tcp<F, Fut>(
    name: String,
    listener: tokio::net::TcpListener,
    shutdown: crate::Shutdown,
    session: F,
) where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            _ = shutdown.triggered() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    shutdown.spawn(crate::metrics::track_session(&name, session(stream, peer)));
                }
                Err(e) => {
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
    tracing::debug!(listener = %name, "stopped accepting");
}

/// [`accept_tcp`] for Unix stream sockets (LMTP, local submission).
pub async fn accept_unix<F, Fut>(
    name: String,
    listener: tokio::net::UnixListener,
    shutdown: crate::Shutdown,
    session: F,
) where
    F: Fn(tokio::net::UnixStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            _ = shutdown.triggered() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shutdown.spawn(crate::metrics::track_session(&name, session(stream)));
                }
                Err(e) => {
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
    tracing::debug!(listener = %name, "stopped accepting");
}
