//! Sans-I/O SASL server mechanisms: PLAIN (RFC 4616), LOGIN
//! (draft-murchison-sasl-login), SCRAM-SHA-256 (RFC 5802, RFC 7677).
//!
//! # Encoding
//!
//! A [`SaslServer`] consumes client responses as **raw bytes, already
//! base64-decoded**, and returns challenges as raw bytes; the protocol layer
//! (SMTP `334`, IMAP `+`, POP3 `+`) base64-encodes them. [`decode_response`]
//! and [`encode_challenge`] do that step with the bounds of this module and
//! the `*` cancel rule.
//!
//! # Flow
//!
//! ```text
//! let mut s = SaslServer::new(Mechanism::Plain);
//! match s.start(initial_response) {            // None if the client sent none
//!     Step::Challenge(c)    => send c, feed the reply to s.step(reply)
//!     Step::Credentials(c)  => verify c.password for c.authcid (Directory::authenticate),
//!                              then c.authorize(is_master) for the effective user
//!     Step::NeedScramSecret { authcid } => look the user up, s.scram_secret(secret_or_none)
//!     Step::Done { id, final_data } => authenticated; Directory::authorize(id, user);
//!                              send final_data (SCRAM server-final) as the protocol allows
//!     Step::Failed(e)       => fail the exchange (never say why to the client)
//! }
//! ```
//!
//! PLAIN and LOGIN end in [`Step::Credentials`]: the caller verifies the
//! password. SCRAM-SHA-256 verifies inside the mechanism and ends in
//! [`Step::Done`]; it needs the user's [`ScramSecret`], which exists only
//! for stored passwords in `{SCRAM-SHA-256}` form, or `{PLAIN}` form when
//! plain text is allowed (see [`ScramSecret::from_stored`]). For an
//! unknown user, or a user whose hash cannot serve SCRAM, pass `None`: the
//! exchange continues with a fake salt derived from the name (so it looks
//! the same as for a real user) and fails at the proof.
//!
//! SCRAM's server-final message (`v=...`) comes with [`Step::Done`] as
//! `final_data` ("additional data with success", `AuthOk.final_data` in
//! `postern.auth.v1`). The protocol daemon sends it the way its protocol
//! says: SMTP (RFC 4954) and POP3 as a last challenge answered by an empty
//! response, then success; IMAP in the tagged OK when SASL-IR style
//! success data is allowed, else the same as SMTP.
//!
//! # Authorization identity
//!
//! A client may ask to act as another user (authzid). [`Authenticated::authorize`]
//! refuses an authzid different from the authcid unless the caller says the
//! authenticated user is a master user.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::scheme::{ScramSecret, hmac_sha256};
use crate::secret::Secret;

/// Longest decoded client response we accept. PLAIN carries two identities
/// and a password; SCRAM messages are short. Dovecot uses a similar bound.
pub const MAX_RESPONSE_LEN: usize = 8192;
/// Longest base64 response line (before decoding): 4/3 of the decoded bound.
pub const MAX_ENCODED_RESPONSE_LEN: usize = MAX_RESPONSE_LEN.div_ceil(3) * 4;
/// Longest authentication or authorization identity (an address is at most
/// 254 octets, RFC 5321; room for escapes).
pub const MAX_IDENTITY_LEN: usize = 512;
/// Longest password.
pub const MAX_PASSWORD_LEN: usize = crate::scheme::MAX_PASSWORD_LEN;
/// Number of client responses after which an exchange is failed (SCRAM needs
/// 2, LOGIN 2, PLAIN 1; one spare).
pub const MAX_STEPS: usize = 4;
/// Length of the random server nonce part (before base64).
const SERVER_NONCE_LEN: usize = 18;

/// Supported mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The de facto LOGIN mechanism.
    Login,
    /// RFC 7677.
    ScramSha256,
}

impl Mechanism {
    /// All mechanisms, in order of preference (strongest first).
    pub const ALL: [Mechanism; 3] = [Mechanism::ScramSha256, Mechanism::Plain, Mechanism::Login];

    /// IANA name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    /// Parse a mechanism name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// Whether the mechanism sends the password in clear (needs TLS).
    pub fn is_plaintext(self) -> bool {
        matches!(self, Mechanism::Plain | Mechanism::Login)
    }
}

/// Why an exchange failed. Tell the client only "authentication failed".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Response larger than a named bound.
    #[error("response too long")]
    TooLong,
    /// Response not valid base64.
    #[error("bad base64")]
    BadBase64,
    /// The client cancelled with `*`.
    #[error("cancelled by client")]
    Cancelled,
    /// Response does not follow the mechanism's syntax.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// Identity not valid UTF-8, empty, or too long.
    #[error("bad identity")]
    BadIdentity,
    /// Channel binding requested; not supported.
    #[error("channel binding not supported")]
    ChannelBinding,
    /// Wrong credentials (SCRAM proof did not verify).
    #[error("authentication failed")]
    AuthFailed,
    /// authzid differs from authcid and the user is not a master user.
    #[error("not authorized to act as another user")]
    NotAuthorized,
    /// A step was called when the mechanism did not expect it.
    #[error("unexpected step")]
    Unexpected,
}

/// The authenticated (or to-be-verified) identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Authentication identity (the login).
    pub authcid: String,
    /// Requested authorization identity, if the client sent one.
    pub authzid: Option<String>,
}

impl Authenticated {
    /// The user the session acts as: the authcid, or the authzid when it
    /// differs and `authcid_is_master` is true. An authzid equal to the
    /// authcid is always fine.
    pub fn authorize(&self, authcid_is_master: bool) -> Result<&str, SaslError> {
        match &self.authzid {
            None => Ok(&self.authcid),
            Some(z) if z == &self.authcid => Ok(&self.authcid),
            Some(z) if authcid_is_master => Ok(z),
            Some(_) => Err(SaslError::NotAuthorized),
        }
    }
}

/// PLAIN/LOGIN result: identities and the password for the caller to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Identities.
    pub id: Authenticated,
    /// Password (Debug prints `***`).
    pub password: Secret<Vec<u8>>,
}

impl Credentials {
    /// See [`Authenticated::authorize`].
    pub fn authorize(&self, authcid_is_master: bool) -> Result<&str, SaslError> {
        self.id.authorize(authcid_is_master)
    }
}

/// What the mechanism wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge (raw; base64 it on the wire) and feed the reply
    /// to [`SaslServer::step`].
    Challenge(Vec<u8>),
    /// PLAIN/LOGIN: verify these credentials.
    Credentials(Credentials),
    /// SCRAM: look up the user and call [`SaslServer::scram_secret`].
    NeedScramSecret {
        /// The user to look up.
        authcid: String,
    },
    /// SCRAM: authenticated.
    Done {
        /// The identities.
        id: Authenticated,
        /// Additional data with success (SCRAM server-final `v=...`), raw.
        final_data: Option<Vec<u8>>,
    },
    /// The exchange failed.
    Failed(SaslError),
}

/// Decode a client response line: `*` cancels, empty is an empty response
/// (SMTP sends `=` for an empty initial response, which decodes to empty).
pub fn decode_response(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    if line.len() > MAX_ENCODED_RESPONSE_LEN {
        return Err(SaslError::TooLong);
    }
    if line == b"*" {
        return Err(SaslError::Cancelled);
    }
    if line == b"=" || line.is_empty() {
        return Ok(Vec::new());
    }
    B64.decode(line).map_err(|_| SaslError::BadBase64)
}

/// Base64 a challenge for the wire.
pub fn encode_challenge(challenge: &[u8]) -> String {
    B64.encode(challenge)
}

#[derive(Debug)]
enum State {
    Start,
    LoginUser,
    LoginPass { user: String },
    ScramFirst,
    ScramWaitSecret(ScramClientFirst),
    ScramFinal(Box<ScramPending>),
    End,
}

#[derive(Debug)]
struct ScramClientFirst {
    gs2_header: String,
    bare: String,
    authcid: String,
    authzid: Option<String>,
    client_nonce: String,
}

#[derive(Debug)]
struct ScramPending {
    first: ScramClientFirst,
    server_first: String,
    nonce: String,
    secret: ScramSecret,
    real: bool,
}

/// One server-side SASL exchange.
#[derive(Debug)]
pub struct SaslServer {
    mech: Mechanism,
    state: State,
    steps: usize,
    nonce_override: Option<String>,
}

impl SaslServer {
    /// A new exchange with `mech`.
    pub fn new(mech: Mechanism) -> Self {
        SaslServer {
            mech,
            state: State::Start,
            steps: 0,
            nonce_override: None,
        }
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// Start, with the client's initial response if it sent one (`Some(b"")`
    /// is an empty initial response, different from none).
    pub fn start(&mut self, initial: Option<&[u8]>) -> Step {
        if !matches!(self.state, State::Start) {
            return self.fail(SaslError::Unexpected);
        }
        match (self.mech, initial) {
            (Mechanism::Plain, None) => Step::Challenge(Vec::new()),
            (Mechanism::Plain, Some(r)) => self.step(r),
            (Mechanism::Login, None) => {
                self.state = State::LoginUser;
                Step::Challenge(b"Username:".to_vec())
            }
            // Some clients send the user name as initial response.
            (Mechanism::Login, Some(r)) => {
                self.state = State::LoginUser;
                self.step(r)
            }
            (Mechanism::ScramSha256, None) => {
                self.state = State::ScramFirst;
                Step::Challenge(Vec::new())
            }
            (Mechanism::ScramSha256, Some(r)) => {
                self.state = State::ScramFirst;
                self.step(r)
            }
        }
    }

    /// Feed one client response (raw, base64-decoded).
    pub fn step(&mut self, response: &[u8]) -> Step {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return self.fail(SaslError::Unexpected);
        }
        if response.len() > MAX_RESPONSE_LEN {
            return self.fail(SaslError::TooLong);
        }
        let state = std::mem::replace(&mut self.state, State::End);
        let r = match state {
            State::Start if self.mech == Mechanism::Plain => {
                parse_plain(response).map(Step::Credentials)
            }
            State::LoginUser => identity(response).map(|user| {
                self.state = State::LoginPass { user };
                Step::Challenge(b"Password:".to_vec())
            }),
            State::LoginPass { user } => password(response).map(|password| {
                Step::Credentials(Credentials {
                    id: Authenticated {
                        authcid: user,
                        authzid: None,
                    },
                    password,
                })
            }),
            State::ScramFirst => parse_scram_client_first(response).map(|first| {
                let authcid = first.authcid.clone();
                self.state = State::ScramWaitSecret(first);
                Step::NeedScramSecret { authcid }
            }),
            State::ScramFinal(p) => self.scram_final(*p, response),
            State::Start | State::ScramWaitSecret(_) | State::End => Err(SaslError::Unexpected),
        };
        match r {
            Ok(step) => step,
            Err(e) => self.fail(e),
        }
    }

    /// SCRAM: give the user's secret after [`Step::NeedScramSecret`], or
    /// `None` for an unknown user / a hash that cannot serve SCRAM.
    pub fn scram_secret(&mut self, secret: Option<ScramSecret>) -> Step {
        let State::ScramWaitSecret(first) = std::mem::replace(&mut self.state, State::End) else {
            return self.fail(SaslError::Unexpected);
        };
        let (secret, real) = match secret {
            Some(s) => (s, true),
            None => (fake_secret(&first.authcid), false),
        };
        let server_nonce = self.nonce_override.take().unwrap_or_else(|| {
            let mut b = [0u8; SERVER_NONCE_LEN];
            rand::rngs::OsRng.fill_bytes(&mut b);
            B64.encode(b)
        });
        let nonce = format!("{}{}", first.client_nonce, server_nonce);
        let server_first = format!(
            "r={},s={},i={}",
            nonce,
            B64.encode(&secret.salt),
            secret.iterations
        );
        let challenge = server_first.clone().into_bytes();
        self.state = State::ScramFinal(Box::new(ScramPending {
            first,
            server_first,
            nonce,
            secret,
            real,
        }));
        Step::Challenge(challenge)
    }

    fn scram_final(&mut self, p: ScramPending, response: &[u8]) -> Result<Step, SaslError> {
        let msg = std::str::from_utf8(response).map_err(|_| SaslError::Malformed("not UTF-8"))?;
        let (without_proof, proof_b64) = msg
            .rsplit_once(",p=")
            .ok_or(SaslError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        let cb = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(SaslError::Malformed("no channel binding attribute"))?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(SaslError::Malformed("no nonce"))?;
        let cb = B64
            .decode(cb)
            .map_err(|_| SaslError::Malformed("bad c= base64"))?;
        if cb != p.first.gs2_header.as_bytes() {
            return Err(SaslError::Malformed(
                "channel binding data differs from gs2 header",
            ));
        }
        if !bool::from(nonce.as_bytes().ct_eq(p.nonce.as_bytes())) {
            return Err(SaslError::Malformed("nonce mismatch"));
        }
        let proof = B64
            .decode(proof_b64)
            .map_err(|_| SaslError::Malformed("bad proof base64"))?;
        if proof.len() != 32 {
            return Err(SaslError::Malformed("proof length"));
        }
        let auth_message = format!("{},{},{}", p.first.bare, p.server_first, without_proof);
        let client_signature = hmac_sha256(&p.secret.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for ((k, p), s) in client_key.iter_mut().zip(&proof).zip(&client_signature) {
            *k = p ^ s;
        }
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        let ok = bool::from(computed.ct_eq(&p.secret.stored_key)) & p.real;
        if !ok {
            return Err(SaslError::AuthFailed);
        }
        let server_signature = hmac_sha256(&p.secret.server_key, auth_message.as_bytes());
        Ok(Step::Done {
            id: Authenticated {
                authcid: p.first.authcid,
                authzid: p.first.authzid,
            },
            final_data: Some(format!("v={}", B64.encode(server_signature)).into_bytes()),
        })
    }

    fn fail(&mut self, e: SaslError) -> Step {
        self.state = State::End;
        Step::Failed(e)
    }

    #[cfg(test)]
    fn with_server_nonce(mut self, n: &str) -> Self {
        self.nonce_override = Some(n.to_string());
        self
    }
}

fn identity(bytes: &[u8]) -> Result<String, SaslError> {
    if bytes.is_empty() || bytes.len() > MAX_IDENTITY_LEN || bytes.contains(&0) {
        return Err(SaslError::BadIdentity);
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| SaslError::BadIdentity)
}

fn password(bytes: &[u8]) -> Result<Secret<Vec<u8>>, SaslError> {
    if bytes.is_empty() || bytes.len() > MAX_PASSWORD_LEN || bytes.contains(&0) {
        return Err(SaslError::Malformed("bad password field"));
    }
    Ok(Secret::new(bytes.to_vec()))
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`.
fn parse_plain(msg: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = msg.splitn(3, |b| *b == 0);
    let (Some(z), Some(c), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SaslError::Malformed(
            "PLAIN needs authzid NUL authcid NUL password",
        ));
    };
    let authzid = if z.is_empty() {
        None
    } else {
        Some(identity(z)?)
    };
    Ok(Credentials {
        id: Authenticated {
            authcid: identity(c)?,
            authzid,
        },
        password: password(p)?,
    })
}

/// RFC 5802 `saslname`: `=2C` is `,`, `=3D` is `=`, other `=` is an error.
fn unescape_saslname(s: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).ok_or(SaslError::BadIdentity)?;
        match esc {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return Err(SaslError::BadIdentity),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    identity(out.as_bytes())
}

fn parse_scram_client_first(msg: &[u8]) -> Result<ScramClientFirst, SaslError> {
    let msg = std::str::from_utf8(msg).map_err(|_| SaslError::Malformed("not UTF-8"))?;
    // gs2-header = gs2-cbind-flag "," [ authzid ] ","
    let mut it = msg.splitn(3, ',');
    let (Some(flag), Some(az), Some(bare)) = (it.next(), it.next(), it.next()) else {
        return Err(SaslError::Malformed("no gs2 header"));
    };
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(SaslError::ChannelBinding),
        _ => return Err(SaslError::Malformed("bad gs2 flag")),
    }
    let authzid = if az.is_empty() {
        None
    } else {
        let z = az
            .strip_prefix("a=")
            .ok_or(SaslError::Malformed("bad authzid attribute"))?;
        Some(unescape_saslname(z)?)
    };
    let gs2_header = format!("{flag},{az},");
    // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    if bare.starts_with("m=") {
        return Err(SaslError::Malformed("mandatory extension not supported"));
    }
    let mut attrs = bare.split(',');
    let user = attrs
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .ok_or(SaslError::Malformed("no username"))?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(SaslError::Malformed("no nonce"))?;
    // printable ASCII except ','
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(SaslError::Malformed("bad nonce"));
    }
    Ok(ScramClientFirst {
        gs2_header,
        bare: bare.to_string(),
        authcid: unescape_saslname(user)?,
        authzid,
        client_nonce: nonce.to_string(),
    })
}

/// A stable fake secret for users without one, so that the server-first
/// message of an unknown user looks like that of a real user (stable salt
/// per name across exchanges, usual iteration count).
fn fake_secret(user: &str) -> ScramSecret {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        k
    });
    let salt = hmac_sha256(key, user.as_bytes());
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    ScramSecret {
        iterations: 4096,
        salt: salt[..16].to_vec(),
        stored_key: k,
        server_key: k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(z: Option<&str>, c: &str, p: &str) -> Step {
        Step::Credentials(Credentials {
            id: Authenticated {
                authcid: c.into(),
                authzid: z.map(Into::into),
            },
            password: Secret::new(p.as_bytes().to_vec()),
        })
    }

    #[test]
    fn plain_table() {
        let long_user = "u".repeat(MAX_IDENTITY_LEN + 1);
        let long_msg = format!("\0{long_user}\0pw");
        let oversize = vec![b'a'; MAX_RESPONSE_LEN + 1];
        let cases: Vec<(&[u8], Step)> = vec![
            (
                b"\0tim\0tanstaaftanstaaf",
                creds(None, "tim", "tanstaaftanstaaf"),
            ),
            (
                b"Ursel\0Kurt\0xipj3plmq",
                creds(Some("Ursel"), "Kurt", "xipj3plmq"),
            ),
            (
                b"\0tim\0pass\0word",
                Step::Failed(SaslError::Malformed("bad password field")),
            ),
            (
                b"tim\0pass",
                Step::Failed(SaslError::Malformed(
                    "PLAIN needs authzid NUL authcid NUL password",
                )),
            ),
            (
                b"timpass",
                Step::Failed(SaslError::Malformed(
                    "PLAIN needs authzid NUL authcid NUL password",
                )),
            ),
            (
                b"",
                Step::Failed(SaslError::Malformed(
                    "PLAIN needs authzid NUL authcid NUL password",
                )),
            ),
            (b"\0\0pass", Step::Failed(SaslError::BadIdentity)),
            (
                b"\0tim\0",
                Step::Failed(SaslError::Malformed("bad password field")),
            ),
            (b"\0t\xffm\0pass", Step::Failed(SaslError::BadIdentity)),
            (long_msg.as_bytes(), Step::Failed(SaslError::BadIdentity)),
            (&oversize, Step::Failed(SaslError::TooLong)),
        ];
        for (input, want) in cases {
            // as initial response
            let mut s = SaslServer::new(Mechanism::Plain);
            assert_eq!(
                s.start(Some(input)),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            // after an empty challenge
            let mut s = SaslServer::new(Mechanism::Plain);
            assert_eq!(s.start(None), Step::Challenge(vec![]));
            assert_eq!(s.step(input), want);
            // nothing after the end
            assert_eq!(s.step(b"x"), Step::Failed(SaslError::Unexpected));
        }
    }

    #[test]
    fn login_exchange() {
        let mut s = SaslServer::new(Mechanism::Login);
        assert_eq!(s.start(None), Step::Challenge(b"Username:".to_vec()));
        assert_eq!(
            s.step(b"tim@example.org"),
            Step::Challenge(b"Password:".to_vec())
        );
        assert_eq!(s.step(b"secret"), creds(None, "tim@example.org", "secret"));

        let mut s = SaslServer::new(Mechanism::Login);
        assert_eq!(
            s.start(Some(b"tim")),
            Step::Challenge(b"Password:".to_vec())
        );
        assert_eq!(s.step(b"pw"), creds(None, "tim", "pw"));

        let bad: &[(&[u8], &[u8], SaslError)] = &[
            (b"", b"pw", SaslError::BadIdentity),
            (b"a\0b", b"pw", SaslError::BadIdentity),
            (b"tim", b"", SaslError::Malformed("bad password field")),
        ];
        for (u, p, e) in bad {
            let mut s = SaslServer::new(Mechanism::Login);
            s.start(None);
            let r = s.step(u);
            let r = if matches!(r, Step::Challenge(_)) {
                s.step(p)
            } else {
                r
            };
            assert_eq!(r, Step::Failed(e.clone()));
        }
    }

    #[test]
    fn decode_response_table() {
        let too_long = vec![b'A'; MAX_ENCODED_RESPONSE_LEN + 4];
        type Case<'a> = (&'a [u8], Result<Vec<u8>, SaslError>);
        let cases: Vec<Case> = vec![
            (
                b"AHRpbQB0YW5zdGFhZnRhbnN0YWFm",
                Ok(b"\0tim\0tanstaaftanstaaf".to_vec()),
            ),
            (
                b"AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n",
                Ok(b"\0tim\0tanstaaftanstaaf".to_vec()),
            ),
            (b"=", Ok(vec![])),
            (b"", Ok(vec![])),
            (b"*", Err(SaslError::Cancelled)),
            (b"!!!", Err(SaslError::BadBase64)),
            (b"AHRpbQ", Err(SaslError::BadBase64)),
            (&too_long, Err(SaslError::TooLong)),
        ];
        for (input, want) in cases {
            assert_eq!(
                decode_response(input),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(encode_challenge(b"Username:"), "VXNlcm5hbWU6");
        assert_eq!(encode_challenge(b"Password:"), "UGFzc3dvcmQ6");
    }

    #[test]
    fn authzid_rule() {
        let a = |z: Option<&str>| Authenticated {
            authcid: "kurt".into(),
            authzid: z.map(Into::into),
        };
        assert_eq!(a(None).authorize(false), Ok("kurt"));
        assert_eq!(a(Some("kurt")).authorize(false), Ok("kurt"));
        assert_eq!(
            a(Some("ursel")).authorize(false),
            Err(SaslError::NotAuthorized)
        );
        assert_eq!(a(Some("ursel")).authorize(true), Ok("ursel"));
    }

    /// RFC 7677 section 3 example.
    const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC_CLIENT_FIRST: &[u8] = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SERVER_FIRST: &[u8] =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &[u8] = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_secret(password: &str) -> ScramSecret {
        ScramSecret::derive(password.as_bytes(), &B64.decode(RFC_SALT).unwrap(), 4096).unwrap()
    }

    #[test]
    fn scram_rfc7677_example() {
        let mut s = SaslServer::new(Mechanism::ScramSha256).with_server_nonce(RFC_SERVER_NONCE);
        assert_eq!(
            s.start(Some(RFC_CLIENT_FIRST)),
            Step::NeedScramSecret {
                authcid: "user".into()
            }
        );
        assert_eq!(
            s.scram_secret(Some(rfc_secret("pencil"))),
            Step::Challenge(RFC_SERVER_FIRST.to_vec())
        );
        assert_eq!(
            s.step(RFC_CLIENT_FINAL),
            Step::Done {
                id: Authenticated {
                    authcid: "user".into(),
                    authzid: None
                },
                final_data: Some(RFC_SERVER_FINAL.to_vec())
            }
        );
        // nothing after the end
        assert_eq!(s.step(b""), Step::Failed(SaslError::Unexpected));
    }

    #[test]
    fn scram_failures() {
        // wrong password, unknown user, tampered final messages
        let tampered_nonce = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let tampered_cb = b"c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let no_proof = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let cases: Vec<(Option<ScramSecret>, &[u8], SaslError)> = vec![
            (
                Some(rfc_secret("pencil2")),
                RFC_CLIENT_FINAL,
                SaslError::AuthFailed,
            ),
            (None, RFC_CLIENT_FINAL, SaslError::AuthFailed),
            (
                Some(rfc_secret("pencil")),
                tampered_nonce,
                SaslError::Malformed("nonce mismatch"),
            ),
            (
                Some(rfc_secret("pencil")),
                tampered_cb,
                SaslError::Malformed("channel binding data differs from gs2 header"),
            ),
            (
                Some(rfc_secret("pencil")),
                no_proof,
                SaslError::Malformed("no proof"),
            ),
        ];
        for (secret, fin, err) in cases {
            let mut s = SaslServer::new(Mechanism::ScramSha256).with_server_nonce(RFC_SERVER_NONCE);
            assert!(matches!(s.start(None), Step::Challenge(c) if c.is_empty()));
            assert!(matches!(
                s.step(RFC_CLIENT_FIRST),
                Step::NeedScramSecret { .. }
            ));
            let Step::Challenge(first) = s.scram_secret(secret) else {
                panic!("no server-first")
            };
            assert!(first.starts_with(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s="));
            assert_eq!(s.step(fin), Step::Failed(err));
        }
        // Unknown users get a stable salt, like real ones.
        let salt_of = |user: &str| {
            let mut s = SaslServer::new(Mechanism::ScramSha256);
            s.start(Some(format!("n,,n={user},r=abc").as_bytes()));
            match s.scram_secret(None) {
                Step::Challenge(c) => String::from_utf8(c)
                    .unwrap()
                    .split(',')
                    .nth(1)
                    .unwrap()
                    .to_string(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(salt_of("ghost"), salt_of("ghost"));
        assert_ne!(salt_of("ghost"), salt_of("ghost2"));
    }

    #[test]
    fn scram_client_first_table() {
        type Case<'a> = (&'a [u8], Result<(&'a str, Option<&'a str>), SaslError>);
        let cases: &[Case] = &[
            (b"n,,n=user,r=abc", Ok(("user", None))),
            (b"y,,n=user,r=abc", Ok(("user", None))),
            (b"n,a=admin,n=user,r=abc", Ok(("user", Some("admin")))),
            (b"n,,n=a=2Cb=3Dc,r=abc", Ok(("a,b=c", None))),
            (b"n,,n=a=2Xb,r=abc", Err(SaslError::BadIdentity)),
            (
                b"p=tls-unique,,n=user,r=abc",
                Err(SaslError::ChannelBinding),
            ),
            (
                b"x,,n=user,r=abc",
                Err(SaslError::Malformed("bad gs2 flag")),
            ),
            (
                b"n,,m=ext,n=user,r=abc",
                Err(SaslError::Malformed("mandatory extension not supported")),
            ),
            (b"n,,r=abc", Err(SaslError::Malformed("no username"))),
            (b"n,,n=user", Err(SaslError::Malformed("no nonce"))),
            (b"n,,n=user,r=", Err(SaslError::Malformed("bad nonce"))),
            (b"n,,n=,r=abc", Err(SaslError::BadIdentity)),
            (
                b"n,b=x,n=user,r=abc",
                Err(SaslError::Malformed("bad authzid attribute")),
            ),
            (b"nonsense", Err(SaslError::Malformed("no gs2 header"))),
            (
                b"n,,n=us\xffer,r=abc",
                Err(SaslError::Malformed("not UTF-8")),
            ),
        ];
        for (input, want) in cases {
            let mut s = SaslServer::new(Mechanism::ScramSha256);
            let got = s.start(Some(input));
            match (want, got) {
                (Ok((c, _)), Step::NeedScramSecret { authcid }) => assert_eq!(&authcid, c),
                (Err(e), Step::Failed(g)) => {
                    assert_eq!(&g, e, "{:?}", String::from_utf8_lossy(input))
                }
                (w, g) => panic!(
                    "{:?}: want {w:?}, got {g:?}",
                    String::from_utf8_lossy(input)
                ),
            }
        }
        // authzid is carried to Done and subject to the master rule
        let mut s = SaslServer::new(Mechanism::ScramSha256).with_server_nonce("SN");
        s.start(Some(b"n,a=boss,n=user,r=cn"));
        let secret = rfc_secret("pencil");
        let Step::Challenge(sf) = s.scram_secret(Some(secret.clone())) else {
            panic!()
        };
        let without_proof = "c=bixhPWJvc3Ms,r=cnSN";
        let am = format!(
            "n=user,r=cn,{},{}",
            String::from_utf8(sf).unwrap(),
            without_proof
        );
        let salted = crate::scheme::hi(b"pencil", &B64.decode(RFC_SALT).unwrap(), 4096);
        let ck = hmac_sha256(&salted, b"Client Key");
        let sig = hmac_sha256(&secret.stored_key, am.as_bytes());
        let proof: Vec<u8> = ck.iter().zip(sig.iter()).map(|(a, b)| a ^ b).collect();
        let fin = format!("{without_proof},p={}", B64.encode(proof));
        let Step::Done { id: a, final_data } = s.step(fin.as_bytes()) else {
            panic!()
        };
        assert!(final_data.unwrap().starts_with(b"v="));
        assert_eq!(a.authzid.as_deref(), Some("boss"));
        assert_eq!(a.authorize(false), Err(SaslError::NotAuthorized));
    }

    #[test]
    fn too_many_steps_fail() {
        let mut s = SaslServer::new(Mechanism::Login);
        s.start(None);
        for _ in 0..MAX_STEPS {
            s.step(b"x");
        }
        assert_eq!(s.step(b"x"), Step::Failed(SaslError::Unexpected));
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(
            Mechanism::from_name("scram-sha-256"),
            Some(Mechanism::ScramSha256)
        );
        assert_eq!(Mechanism::from_name("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::from_name("CRAM-MD5"), None);
    }
}

#[cfg(test)]
mod robustness {
    use super::*;

    /// Pseudo-random responses to every mechanism at every step: no panic,
    /// and nothing but PLAIN/LOGIN credentials or failures come out (no
    /// SCRAM success without the right proof).
    #[test]
    fn random_responses_never_panic_or_succeed() {
        const PIECES: &[&[u8]] = &[
            b"n", b"y", b"p=x", b",", b"=", b"a=", b"n=", b"r=", b"c=", b"p=", b"biws", b"=2C",
            b"=3D", b"\0", b"user", b"\xff", b"m=", b"s=", b"v=",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for round in 0..3000 {
            let mech = Mechanism::ALL[round % 3];
            let mut s = SaslServer::new(mech);
            let mut step = s.start(None);
            for _ in 0..5 {
                let mut msg = Vec::new();
                for _ in 0..next(12) {
                    msg.extend_from_slice(PIECES[next(PIECES.len() as u64) as usize]);
                }
                step = match step {
                    Step::NeedScramSecret { .. } => s.scram_secret(None),
                    Step::Challenge(_) => s.step(&msg),
                    Step::Done { .. } => panic!("SCRAM success from noise"),
                    Step::Credentials(_) | Step::Failed(_) => break,
                };
            }
        }
    }
}
