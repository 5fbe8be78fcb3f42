//! One SASL exchange, independent of the transport that carries it (the
//! gRPC `Authenticate` stream or a Dovecot-protocol connection).

use std::time::Duration;

use directory::sasl::{Mechanism, SaslServer, Step};
use directory::{AuthError, Directory};

use crate::penalty::Penalties;

/// Bound on challenge/response rounds in one exchange (SCRAM needs 2, LOGIN 2).
pub const MAX_ROUNDS: usize = 8;

/// Where the attempt comes from and what it starts with.
#[derive(Debug, Clone, Default)]
pub struct Start {
    pub mechanism: String,
    pub initial_response: Option<Vec<u8>>,
    pub service: String,
    pub remote_ip: String,
    /// TLS on the client connection (or plaintext explicitly allowed by the caller).
    pub secured: bool,
    pub session: String,
}

/// The client's answer to a challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Data(Vec<u8>),
    /// The client sent `*`.
    Cancel,
}

/// The result sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok {
        user: String,
        final_data: Vec<u8>,
    },
    Fail {
        temporary: bool,
        reason: &'static str,
        delay: Duration,
    },
}

/// How the exchange talks to the client: send a challenge, get the answer
/// (`None` when the client went away).
pub trait Io {
    fn challenge(
        &mut self,
        data: Vec<u8>,
    ) -> impl std::future::Future<Output = Option<Reply>> + Send;
}

/// Shared by every exchange.
pub struct Core {
    pub dir: Directory,
    pub penalties: Penalties,
}

/// The generic failure text: never says which part was wrong.
pub const FAILED: &str = "authentication failed";

/// Mechanisms offered: SCRAM always, the plaintext ones only when secured.
pub fn mechanisms(secured: bool) -> Vec<&'static str> {
    let mut m = Vec::new();
    if secured {
        m.extend(["PLAIN", "LOGIN"]);
    }
    m.push("SCRAM-SHA-256");
    m
}

impl Core {
    /// Run one exchange to its end (counted in `postern_authd_auth_attempts_total`).
    pub async fn run(&self, start: Start, io: &mut impl Io) -> Outcome {
        use postern_common::metrics::{AuthResult, auth_attempt};
        let (service, mechanism) = (start.service.clone(), start.mechanism.clone());
        let outcome = self.exchange(start, io).await;
        let result = match &outcome {
            Outcome::Ok { .. } => AuthResult::Success,
            Outcome::Fail {
                temporary: true, ..
            } => AuthResult::Temporary,
            Outcome::Fail { .. } => AuthResult::Failure,
        };
        auth_attempt(&service, &mechanism, result);
        outcome
    }

    async fn exchange(&self, start: Start, io: &mut impl Io) -> Outcome {
        let ip = start.remote_ip.as_str();
        let Some(mech) = Mechanism::from_name(&start.mechanism) else {
            return self
                .fail(&start, None, "unsupported mechanism", false)
                .await;
        };
        if mech.is_plaintext() && !start.secured {
            tracing::warn!(remote = %start.remote_ip, service = %start.service, mechanism = %start.mechanism, session = %start.session, "plaintext mechanism refused on a connection without TLS");
            return Outcome::Fail {
                temporary: false,
                reason: "plaintext authentication disallowed without TLS",
                delay: Duration::ZERO,
            };
        }
        if !ip.is_empty() && self.penalties.blocked(ip) {
            let delay = self.penalties.max_delay();
            tracing::warn!(remote = ip, service = %start.service, mechanism = %start.mechanism, session = %start.session, "too many authentication failures from this address; refused");
            tokio::time::sleep(delay).await;
            return Outcome::Fail {
                temporary: true,
                reason: "too many authentication failures; try again later",
                delay,
            };
        }
        let mut sasl = SaslServer::new(mech);
        let mut step = sasl.start(start.initial_response.as_deref());
        let mut rounds = 0;
        let mut login: Option<String> = None;
        loop {
            step = match step {
                Step::Challenge(data) => {
                    rounds += 1;
                    if rounds > MAX_ROUNDS {
                        return self
                            .fail(&start, login.as_deref(), "too many rounds", false)
                            .await;
                    }
                    match io.challenge(data).await {
                        Some(Reply::Data(d)) => sasl.step(&d),
                        Some(Reply::Cancel) => {
                            return Outcome::Fail {
                                temporary: false,
                                reason: "authentication cancelled",
                                delay: Duration::ZERO,
                            };
                        }
                        None => {
                            return Outcome::Fail {
                                temporary: false,
                                reason: "client went away",
                                delay: Duration::ZERO,
                            };
                        }
                    }
                }
                Step::NeedScramSecret { authcid } => {
                    login = Some(authcid.clone());
                    match self.dir.scram_secret(&authcid).await {
                        Ok(secret) => sasl.scram_secret(secret),
                        Err(AuthError::Temporary) => return self.temp_fail(&start),
                        Err(AuthError::Failed) => {
                            return self.fail(&start, Some(&authcid), FAILED, true).await;
                        }
                    }
                }
                Step::Credentials(c) => {
                    return match self.dir.authenticate_credentials(&c).await {
                        Ok((user, acting)) => {
                            if user.verified.deprecated {
                                tracing::warn!(user = %user.user.address, "password stored with a deprecated scheme; set a new one with mailctl user passwd");
                            }
                            self.ok(&start, acting, Vec::new())
                        }
                        Err(AuthError::Temporary) => self.temp_fail(&start),
                        Err(AuthError::Failed) => {
                            self.fail(&start, Some(&c.id.authcid), FAILED, true).await
                        }
                    };
                }
                Step::Done { id, final_data } => {
                    let user = match self.dir.lookup_user(&id.authcid).await {
                        Ok(Some(u)) if u.enabled => u,
                        Ok(_) => return self.fail(&start, Some(&id.authcid), FAILED, true).await,
                        Err(_) => return self.temp_fail(&start),
                    };
                    return match self.dir.authorize(&id, &user).await {
                        Ok(acting) => self.ok(&start, acting, final_data.unwrap_or_default()),
                        Err(AuthError::Temporary) => self.temp_fail(&start),
                        Err(AuthError::Failed) => {
                            self.fail(&start, Some(&id.authcid), FAILED, true).await
                        }
                    };
                }
                Step::Failed(e) => {
                    tracing::debug!(error = %e, "SASL mechanism failed");
                    return self.fail(&start, login.as_deref(), FAILED, true).await;
                }
            };
        }
    }

    fn ok(&self, start: &Start, user: String, final_data: Vec<u8>) -> Outcome {
        if !start.remote_ip.is_empty() {
            self.penalties.success(&start.remote_ip);
        }
        tracing::info!(user = %user, remote = %start.remote_ip, service = %start.service, mechanism = %start.mechanism, session = %start.session, "authenticated");
        Outcome::Ok { user, final_data }
    }

    fn temp_fail(&self, start: &Start) -> Outcome {
        tracing::error!(remote = %start.remote_ip, service = %start.service, mechanism = %start.mechanism, session = %start.session, "authentication failed temporarily: directory unavailable");
        Outcome::Fail {
            temporary: true,
            reason: "temporary authentication failure",
            delay: Duration::ZERO,
        }
    }

    /// A failure: logged with IP, mechanism and attempted login (never the
    /// password), penalised when `penalise`, answered after the delay.
    async fn fail(
        &self,
        start: &Start,
        login: Option<&str>,
        reason: &'static str,
        penalise: bool,
    ) -> Outcome {
        let delay = if penalise && !start.remote_ip.is_empty() {
            self.penalties.failure(&start.remote_ip)
        } else if penalise {
            self.penalties.delay_for(1)
        } else {
            Duration::ZERO
        };
        tracing::warn!(
            login = login.unwrap_or("-"),
            remote = %start.remote_ip,
            service = %start.service,
            mechanism = %start.mechanism,
            session = %start.session,
            delay_ms = delay.as_millis() as u64,
            reason,
            "authentication failed"
        );
        tokio::time::sleep(delay).await;
        Outcome::Fail {
            temporary: false,
            reason: if penalise { FAILED } else { reason },
            delay,
        }
    }
}
