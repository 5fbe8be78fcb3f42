//! The `postern.auth.v1` gRPC service.

use std::pin::Pin;
use std::sync::Arc;

use directory::Resolution;
use postern_ipc::auth::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::exchange::{Core, Io, Outcome, Reply, Start, mechanisms};

/// The service, sharing the directory and penalty table with the Dovecot listener.
#[derive(Clone)]
pub struct AuthService {
    pub core: Arc<Core>,
}

type AuthStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::AuthenticateResponse, Status>> + Send>>;

struct GrpcIo {
    tx: mpsc::Sender<Result<pb::AuthenticateResponse, Status>>,
    inbound: Streaming<pb::AuthenticateRequest>,
}

impl Io for GrpcIo {
    async fn challenge(&mut self, data: Vec<u8>) -> Option<Reply> {
        let msg = pb::AuthenticateResponse {
            step: Some(pb::authenticate_response::Step::Challenge(pb::Challenge {
                data,
            })),
        };
        self.tx.send(Ok(msg)).await.ok()?;
        match self.inbound.message().await {
            Ok(Some(pb::AuthenticateRequest {
                step: Some(pb::authenticate_request::Step::Continue(c)),
            })) => Some(if c.cancel {
                Reply::Cancel
            } else {
                Reply::Data(c.response)
            }),
            // A second Start, an empty message or a broken stream: give up.
            _ => None,
        }
    }
}

pub(crate) fn user_info(u: &directory::User) -> pb::UserInfo {
    pb::UserInfo {
        user: u.address.clone(),
        mailbox: u.mailbox.display().to_string(),
        quota_bytes: u.quota_bytes,
        uid: u.uid.unwrap_or(0),
        gid: u.gid.unwrap_or(0),
        host: u.host.clone().unwrap_or_default(),
        enabled: u.enabled,
    }
}

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
        Ok(Response::new(pb::MechanismsResponse {
            mechanisms: mechanisms(req.get_ref().secured)
                .into_iter()
                .map(String::from)
                .collect(),
        }))
    }

    type AuthenticateStream = AuthStream;

    async fn authenticate(
        &self,
        req: Request<Streaming<pb::AuthenticateRequest>>,
    ) -> Result<Response<Self::AuthenticateStream>, Status> {
        let mut inbound = req.into_inner();
        let start = match inbound.message().await? {
            Some(pb::AuthenticateRequest {
                step: Some(pb::authenticate_request::Step::Start(s)),
            }) => s,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be AuthStart",
                ));
            }
        };
        let client = start.client.unwrap_or_default();
        let start = Start {
            mechanism: start.mechanism.to_ascii_uppercase(),
            initial_response: start.initial_response,
            service: client.service,
            remote_ip: client.remote_ip,
            secured: client.secured,
            session: client.session_id,
        };
        let (tx, rx) = mpsc::channel(4);
        let core = self.core.clone();
        tokio::spawn(async move {
            let mut io = GrpcIo {
                tx: tx.clone(),
                inbound,
            };
            let step = match core.run(start, &mut io).await {
                Outcome::Ok { user, final_data } => {
                    pb::authenticate_response::Step::Ok(pb::AuthOk { user, final_data })
                }
                Outcome::Fail {
                    temporary,
                    reason,
                    delay,
                } => pb::authenticate_response::Step::Fail(pb::AuthFail {
                    temporary,
                    reason: reason.to_string(),
                    delay_ms: delay.as_millis().min(u32::MAX as u128) as u32,
                }),
            };
            let _ = tx
                .send(Ok(pb::AuthenticateResponse { step: Some(step) }))
                .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lookup_user(
        &self,
        req: Request<pb::LookupUserRequest>,
    ) -> Result<Response<pb::LookupUserResponse>, Status> {
        let found = self.core.dir.lookup_user(&req.get_ref().user).await;
        postern_common::metrics::lookup(
            "user",
            match &found {
                Ok(Some(_)) => "found",
                Ok(None) => "not_found",
                Err(_) => "error",
            },
        );
        match found {
            Ok(Some(u)) => Ok(Response::new(pb::LookupUserResponse {
                found: true,
                info: Some(user_info(&u)),
            })),
            Ok(None) => Ok(Response::new(pb::LookupUserResponse {
                found: false,
                info: None,
            })),
            Err(e) => {
                tracing::error!(error = %e, "user lookup failed");
                Err(Status::unavailable("directory lookup failed"))
            }
        }
    }

    async fn resolve_recipient(
        &self,
        req: Request<pb::ResolveRecipientRequest>,
    ) -> Result<Response<pb::ResolveRecipientResponse>, Status> {
        use pb::resolve_recipient_response::Status as S;
        let address = &req.get_ref().address;
        let mut out = pb::ResolveRecipientResponse::default();
        match self.core.dir.resolve_recipient(address).await {
            Ok(Resolution::NotOurs) => out.status = S::NotOurs as i32,
            Ok(Resolution::Unknown) => out.status = S::Unknown as i32,
            Ok(Resolution::Disabled) => out.status = S::Disabled as i32,
            Ok(Resolution::Deliver(d)) => {
                out.status = S::Local as i32;
                out.detail = d
                    .local
                    .iter()
                    .find_map(|m| m.extension.clone())
                    .unwrap_or_default();
                out.mailboxes = d
                    .local
                    .iter()
                    .map(|m| pb::UserInfo {
                        user: m.user.clone(),
                        mailbox: m.mailbox.display().to_string(),
                        quota_bytes: m.quota_bytes,
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                        host: m.host.clone().unwrap_or_default(),
                        enabled: true,
                    })
                    .collect();
                out.remote = d.remote;
                if !d.commands.is_empty() || !d.files.is_empty() {
                    tracing::warn!(recipient = %address, "alias command/file targets are not delivered by this version");
                }
                if out.mailboxes.is_empty() && out.remote.is_empty() {
                    // Every target was dropped (unknown, disabled, loop).
                    out.status = S::Unknown as i32;
                }
            }
            Err(e) => {
                tracing::error!(recipient = %address, error = %e, "recipient resolution failed");
                out.status = S::TempFail as i32;
            }
        }
        postern_common::metrics::lookup(
            "recipient",
            match S::try_from(out.status) {
                Ok(S::Local) => "local",
                Ok(S::NotOurs) => "not_ours",
                Ok(S::TempFail) => "error",
                _ => "not_found",
            },
        );
        if let Some((_, domain)) = address.rsplit_once('@')
            && let Ok(Some(t)) = self.core.dir.transport(domain).await
        {
            out.transport = t;
        }
        Ok(Response::new(out))
    }
}
