//! postern's internal contracts: gRPC services over Unix sockets.
//!
//! The `.proto` files live in `proto/` at the top of the workspace and are
//! compiled at build time by `protox` (pure Rust), so no system `protoc` is
//! needed. This crate re-exports the generated code per versioned package
//! ([`auth::v1`], [`queue::v1`]) and offers the two helpers every daemon needs:
//!
//! * [`bind_unix`] + [`serve`]: serve a tonic router on a Unix socket until a
//!   shutdown future resolves (in-flight calls are drained by tonic);
//! * [`dial`]: a lazily connected [`Channel`] to a `unix:` URI with connect and
//!   per-call timeouts. The channel reconnects by itself: when the server
//!   restarts, the next call dials again.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use postern_ipc::{auth::v1 as auth, dial, DialOptions, SocketUri};
//! let uri: SocketUri = "unix:/run/postern/private/auth.sock".parse()?;
//! let channel = dial(&uri, &DialOptions::default())?;
//! let mut client = auth::auth_client::AuthClient::new(channel);
//! let reply = client.handshake(postern_ipc::auth_handshake("smtpd")).await?;
//! postern_ipc::check_auth_version(reply.get_ref().version.as_ref())?;
//! # Ok(()) }
//! ```
//!
//! Version rule (DESIGN.md §4): the major version of a contract must match,
//! the minor is informative. [`AUTH_VERSION`] and [`QUEUE_VERSION`] are the
//! versions this build speaks.

pub mod sasl;

use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::Router;
use tonic::transport::{Channel, Endpoint};

/// Generated code for the `postern.auth.*` packages.
pub mod auth {
    /// `postern.auth.v1`: directory and SASL service of authd.
    #[allow(clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("postern.auth.v1");
    }
}

/// Generated code for the `postern.queue.*` packages.
pub mod queue {
    /// `postern.queue.v1`: the mail queue of queue-manager.
    #[allow(clippy::all, clippy::pedantic)]
    pub mod v1 {
        tonic::include_proto!("postern.queue.v1");
    }

    /// Message of the `RESOURCE_EXHAUSTED` status `Enqueue` returns when the
    /// spool's file system is full (ENOSPC, EDQUOT): smtpd answers
    /// `452 4.3.1` for it (RFC 3463 4.3.1, Postfix's "Insufficient system
    /// storage"), where a size-limit refusal with the same code is `552`.
    pub const INSUFFICIENT_STORAGE: &str = "insufficient system storage";
}

/// A contract version (major must match, minor is informative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractVersion {
    pub major: u32,
    pub minor: u32,
}

/// Version of `postern.auth.v1` spoken by this build.
pub const AUTH_VERSION: ContractVersion = ContractVersion { major: 1, minor: 0 };
/// Version of `postern.queue.v1` spoken by this build.
pub const QUEUE_VERSION: ContractVersion = ContractVersion { major: 1, minor: 0 };

/// Errors of the IPC helpers.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("invalid socket URI {uri:?}: {reason}")]
    BadUri { uri: String, reason: &'static str },
    #[error("cannot bind Unix socket {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("gRPC transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A Unix-socket address as written in configuration: `unix:/path`,
/// `unix:///path` or a bare absolute or relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketUri {
    path: PathBuf,
}

impl SocketUri {
    /// The socket's filesystem path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Build from a filesystem path.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl FromStr for SocketUri {
    type Err = IpcError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| IpcError::BadUri {
            uri: s.to_string(),
            reason,
        };
        let path = if let Some(rest) = s.strip_prefix("unix://") {
            // unix:///abs/path -> /abs/path; unix://rel is not a thing.
            if !rest.starts_with('/') {
                return Err(bad("unix:// must be followed by an absolute path"));
            }
            rest
        } else if let Some(rest) = s.strip_prefix("unix:") {
            rest
        } else if s.contains("://") {
            return Err(bad("only unix: URIs are supported"));
        } else {
            s
        };
        if path.is_empty() {
            return Err(bad("empty path"));
        }
        if path.len() > MAX_SOCKET_PATH {
            return Err(bad("path longer than a Unix socket address allows"));
        }
        Ok(Self {
            path: PathBuf::from(path),
        })
    }
}

impl fmt::Display for SocketUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unix:{}", self.path.display())
    }
}

/// `sun_path` holds 108 bytes on Linux, including the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// Bind a Unix stream socket for a gRPC service: creates the parent
/// directory, removes a stale socket file left by a previous run, and sets
/// the socket's mode (e.g. `0o660` for private sockets, `0o666` for the
/// public submission socket).
pub fn bind_unix(uri: &SocketUri, mode: u32) -> Result<UnixListener, IpcError> {
    let path = uri.path();
    let err = |source| IpcError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(socket = %path.display(), "removed stale socket"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)?;
    Ok(listener)
}

/// Serve `router` on an already bound Unix listener until `shutdown`
/// resolves. After that no new connections are accepted and in-flight calls
/// are allowed to finish.
pub async fn serve<F>(router: Router, listener: UnixListener, shutdown: F) -> Result<(), IpcError>
where
    F: std::future::Future<Output = ()> + Send,
{
    router
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// Timeouts for a client channel.
#[derive(Debug, Clone)]
pub struct DialOptions {
    /// Bound on establishing the Unix socket connection.
    pub connect_timeout: Duration,
    /// Bound on each call (a streaming call counts as one).
    pub request_timeout: Duration,
}

impl Default for DialOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// A lazily connected channel to a Unix-socket service. It does not fail
/// when the server is not up yet: each call dials as needed, so a restarted
/// server is picked up again (reconnect) and a missing one fails the call
/// with `UNAVAILABLE`.
pub fn dial(uri: &SocketUri, opts: &DialOptions) -> Result<Channel, IpcError> {
    let path = uri.path().to_path_buf();
    // The authority is not used for Unix sockets, but tonic needs a valid URI.
    let endpoint = Endpoint::from_static("http://postern.local")
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.request_timeout);
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        })),
    )
}

/// The request a client of `postern.auth.v1` sends first.
pub fn auth_handshake(client: &str) -> auth::v1::HandshakeRequest {
    auth::v1::HandshakeRequest {
        version: Some(auth::v1::Version {
            major: AUTH_VERSION.major,
            minor: AUTH_VERSION.minor,
        }),
        client: client.to_string(),
    }
}

/// The request a client of `postern.queue.v1` sends first.
pub fn queue_handshake(client: &str) -> queue::v1::HandshakeRequest {
    queue::v1::HandshakeRequest {
        version: Some(queue::v1::Version {
            major: QUEUE_VERSION.major,
            minor: QUEUE_VERSION.minor,
        }),
        client: client.to_string(),
    }
}

fn check_major(
    contract: &str,
    ours: ContractVersion,
    theirs: Option<(u32, u32)>,
) -> Result<(), tonic::Status> {
    match theirs {
        Some((major, _minor)) if major == ours.major => Ok(()),
        Some((major, minor)) => Err(tonic::Status::failed_precondition(format!(
            "{contract} version {major}.{minor} is not compatible with {}.{}",
            ours.major, ours.minor
        ))),
        None => Err(tonic::Status::invalid_argument(format!(
            "{contract} handshake without a version"
        ))),
    }
}

/// Check the peer's `postern.auth` version: the major must match ours.
pub fn check_auth_version(v: Option<&auth::v1::Version>) -> Result<(), tonic::Status> {
    check_major("postern.auth", AUTH_VERSION, v.map(|v| (v.major, v.minor)))
}

/// Check the peer's `postern.queue` version: the major must match ours.
pub fn check_queue_version(v: Option<&queue::v1::Version>) -> Result<(), tonic::Status> {
    check_major(
        "postern.queue",
        QUEUE_VERSION,
        v.map(|v| (v.major, v.minor)),
    )
}

/// The handshake reply a server of `postern.auth.v1` sends.
pub fn auth_handshake_reply(server: &str) -> auth::v1::HandshakeResponse {
    auth::v1::HandshakeResponse {
        version: Some(auth::v1::Version {
            major: AUTH_VERSION.major,
            minor: AUTH_VERSION.minor,
        }),
        server: server.to_string(),
    }
}

/// The handshake reply a server of `postern.queue.v1` sends.
pub fn queue_handshake_reply(server: &str) -> queue::v1::HandshakeResponse {
    queue::v1::HandshakeResponse {
        version: Some(queue::v1::Version {
            major: QUEUE_VERSION.major,
            minor: QUEUE_VERSION.minor,
        }),
        server: server.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_uris() {
        let ok = [
            (
                "unix:/run/postern/private/auth.sock",
                "/run/postern/private/auth.sock",
            ),
            ("unix:///run/x.sock", "/run/x.sock"),
            ("unix:var/run/x.sock", "var/run/x.sock"),
            ("/run/x.sock", "/run/x.sock"),
        ];
        for (input, path) in ok {
            let uri: SocketUri = input.parse().unwrap();
            assert_eq!(uri.path(), Path::new(path), "{input}");
        }
        let long = format!("unix:/{}", "a".repeat(200));
        for bad in [
            "unix:",
            "http://localhost:80",
            "unix://relative",
            long.as_str(),
            "",
        ] {
            assert!(bad.parse::<SocketUri>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn version_rule() {
        let same_major = auth::v1::Version { major: 1, minor: 7 };
        assert!(check_auth_version(Some(&same_major)).is_ok());
        let other_major = auth::v1::Version { major: 2, minor: 0 };
        let err = check_auth_version(Some(&other_major)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            check_queue_version(None).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
