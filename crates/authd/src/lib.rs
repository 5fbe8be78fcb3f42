//! # NAME
//! authd — postern directory and authentication service
//!
//! # DESCRIPTION
//! Serves `postern.auth.v1` over a private Unix socket: version handshake,
//! SASL mechanism list and exchanges, user lookup and recipient resolution
//! for smtpd, pop3d, imapd, queue-manager and lmtp-delivery.
//!
//! **Status:** the service is bound and answers `Handshake` and
//! `Mechanisms`. The directory behind it (users, domains, aliases, password
//! verification) is issue 4: until it is wired in, `Authenticate` answers a
//! temporary failure and the lookups `UNAVAILABLE`, so callers refuse with
//! 4xx and nothing is accepted by mistake.
//!
//! # SECURITY
//! Runs as the `postern` user; the socket is mode 0660 in the private
//! socket directory. Failures never reveal whether a user exists.
//!
//! # STANDARDS
//! RFC 4422 (SASL), RFC 4616 (PLAIN).
//!
//! # CONFIGURATION
//! `[authd] socket` (default `unix:<run_directory>/private/auth.sock`),
//! `[authd.directory]` backend settings.
//!
//! # DIAGNOSTICS
//! Logs to stderr (journald) with `daemon=authd`. Exit status 0 after a
//! clean stop, 78 for a configuration error, 1 otherwise.
//!
//! # SEE ALSO
//! smtpd(8), mailctl(8), postern.toml(5)

use std::path::Path;
use std::pin::Pin;

use postern_common::{Config, ConfigError, Context};
use postern_ipc::auth::v1 as pb;
use tonic::{Request, Response, Status, Streaming};

/// Mode of the private gRPC socket: daemons of the `postern` group only.
pub const SOCKET_MODE: u32 = 0o660;

/// Checks beyond the shared configuration validation.
pub fn validate(_cfg: &Config, _file: &Path) -> Result<(), ConfigError> {
    Ok(())
}

/// The gRPC service.
#[derive(Debug, Default)]
pub struct AuthService;

type AuthStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::AuthenticateResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthService {
    async fn handshake(
        &self,
        req: Request<pb::HandshakeRequest>,
    ) -> Result<Response<pb::HandshakeResponse>, Status> {
        postern_ipc::check_auth_version(req.get_ref().version.as_ref())?;
        tracing::debug!(client = %req.get_ref().client, "handshake");
        Ok(Response::new(postern_ipc::auth_handshake_reply(concat!(
            "postern-authd/",
            env!("CARGO_PKG_VERSION")
        ))))
    }

    async fn mechanisms(
        &self,
        req: Request<pb::MechanismsRequest>,
    ) -> Result<Response<pb::MechanismsResponse>, Status> {
        // Plaintext mechanisms only over TLS (the daemons may be configured
        // to allow them without TLS; they then ask with secured = true).
        let mechanisms = if req.get_ref().secured {
            vec!["PLAIN".into(), "LOGIN".into()]
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::MechanismsResponse { mechanisms }))
    }

    type AuthenticateStream = AuthStream;

    async fn authenticate(
        &self,
        _req: Request<Streaming<pb::AuthenticateRequest>>,
    ) -> Result<Response<Self::AuthenticateStream>, Status> {
        let fail = pb::AuthenticateResponse {
            step: Some(pb::authenticate_response::Step::Fail(pb::AuthFail {
                temporary: true,
                reason: "authentication service not available".into(),
                delay_ms: 0,
            })),
        };
        Ok(Response::new(Box::pin(tokio_stream::iter([Ok(fail)]))))
    }

    async fn lookup_user(
        &self,
        _req: Request<pb::LookupUserRequest>,
    ) -> Result<Response<pb::LookupUserResponse>, Status> {
        Err(Status::unavailable("directory not built yet"))
    }

    async fn resolve_recipient(
        &self,
        _req: Request<pb::ResolveRecipientRequest>,
    ) -> Result<Response<pb::ResolveRecipientResponse>, Status> {
        Err(Status::unavailable("directory not built yet"))
    }
}

/// Run until shutdown.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let cfg = ctx.config();
    let uri = Config::socket_uri(&cfg.authd.socket);
    let listener = ctx.listeners.unix("auth", &uri, SOCKET_MODE)?;
    tracing::info!(socket = %uri, "listening");
    let router = tonic::transport::Server::builder()
        .add_service(pb::auth_server::AuthServer::new(AuthService));
    ctx.ready("serving postern.auth.v1");
    postern_ipc::serve(router, listener, ctx.shutdown.signal()).await?;
    Ok(())
}
