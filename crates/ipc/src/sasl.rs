//! Client side of the `Auth.Authenticate` streaming SASL exchange, for the
//! protocol daemons (smtpd, pop3d, imapd): they relay challenges to their
//! client (`334 …`, `+ …`) and feed the answers back with [`SaslExchange::respond`].

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::auth::v1::{
    AuthContinue, AuthFail, AuthOk, AuthStart, AuthenticateRequest, AuthenticateResponse,
    auth_client::AuthClient, authenticate_request, authenticate_response,
};

/// What the server said next.
#[derive(Debug, Clone, PartialEq)]
pub enum SaslStep {
    /// Send this challenge to the client and call [`SaslExchange::respond`].
    Challenge(Vec<u8>),
    /// Authenticated (not authorised: the caller still decides what the user may do).
    Ok(AuthOk),
    /// Failed; `temporary` tells 4xx from 5xx.
    Fail(AuthFail),
}

/// One running exchange.
pub struct SaslExchange {
    tx: mpsc::Sender<AuthenticateRequest>,
    rx: Streaming<AuthenticateResponse>,
}

fn step(msg: Option<AuthenticateResponse>) -> Result<SaslStep, Status> {
    match msg.and_then(|m| m.step) {
        Some(authenticate_response::Step::Challenge(c)) => Ok(SaslStep::Challenge(c.data)),
        Some(authenticate_response::Step::Ok(ok)) => Ok(SaslStep::Ok(ok)),
        Some(authenticate_response::Step::Fail(f)) => Ok(SaslStep::Fail(f)),
        None => Err(Status::aborted(
            "authentication stream ended without a result",
        )),
    }
}

impl SaslExchange {
    /// Open the stream with the mechanism and optional initial response.
    pub async fn start(
        client: &mut AuthClient<Channel>,
        start: AuthStart,
    ) -> Result<(Self, SaslStep), Status> {
        let (tx, rx) = mpsc::channel(2);
        tx.send(AuthenticateRequest {
            step: Some(authenticate_request::Step::Start(start)),
        })
        .await
        .map_err(|_| Status::internal("request channel closed"))?;
        let mut rx = client
            .authenticate(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let first = step(rx.message().await?)?;
        Ok((Self { tx, rx }, first))
    }

    /// Answer the last challenge.
    pub async fn respond(&mut self, response: Vec<u8>) -> Result<SaslStep, Status> {
        self.send(AuthContinue {
            response,
            cancel: false,
        })
        .await
    }

    /// The client cancelled (`*`); the server answers with a failure.
    pub async fn cancel(&mut self) -> Result<SaslStep, Status> {
        self.send(AuthContinue {
            response: Vec::new(),
            cancel: true,
        })
        .await
    }

    async fn send(&mut self, c: AuthContinue) -> Result<SaslStep, Status> {
        self.tx
            .send(AuthenticateRequest {
                step: Some(authenticate_request::Step::Continue(c)),
            })
            .await
            .map_err(|_| Status::aborted("authentication stream closed"))?;
        step(self.rx.message().await?)
    }
}
