//! `flood`: per-sender and per-user message and recipient rates, plus the
//! settings of the two smtpd session hooks (pre-greeting talk and the
//! tarpit after errors).
//!
//! Rates use sliding windows ([`super::rate`]) over `rate_time_unit`: a
//! message counts at MAIL FROM, a recipient at RCPT TO (like Postfix's
//! anvil). Over a limit the command is refused with
//! `rate_limit_reply_code` (450 by default) and `x.7.1`, and a warning is
//! logged with the key, the count and the limit. The null sender is not
//! rate limited per sender (bounces), an authenticated user always is per
//! user. Clients in `[smtpd] smtpd_client_event_limit_exceptions` (default
//! `mynetworks`) are exempt from the per-sender limits and the hooks, not
//! from the per-user ones (an account is limited wherever it connects
//! from); users and senders in `exempt_users` are exempt.
//!
//! The hooks: smtpd's session loop asks [`hooks`] for the settings of its
//! pipeline (set by [`install`] when the pipeline is built): how long to
//! wait before the greeting for a client that talks first
//! ([`Hooks::greet_wait`]) and how long to delay an error reply
//! ([`Hooks::error_delay`]).

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use postern_common::checks::CheckRole;
use postern_common::checks::reputation::FloodConfig;

use super::rate::{Hit, Window};
use crate::{Action, Check, CheckSession, Connection, Role, Verdict};

const NAME: &str = "flood";

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SenderMessages,
    SenderRecipients,
    UserMessages,
    UserRecipients,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::SenderMessages => "sender_message_rate",
            Kind::SenderRecipients => "sender_recipient_rate",
            Kind::UserMessages => "user_message_rate",
            Kind::UserRecipients => "user_recipient_rate",
        }
    }
}

/// Whether `who` (an address or user name) is in `list` (full addresses or
/// user names, or `@domain`), case-insensitively.
pub fn listed(list: &[String], who: &str) -> bool {
    list.iter().any(|e| match e.strip_prefix('@') {
        Some(domain) => who
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain)),
        None => e.eq_ignore_ascii_case(who),
    })
}

/// The check.
pub struct Flood {
    cfg: FloodConfig,
    exceptions: Vec<IpNet>,
    sender_messages: Window,
    sender_recipients: Window,
    user_messages: Window,
    user_recipients: Window,
}

impl Flood {
    pub fn new(cfg: FloodConfig, exceptions: Vec<IpNet>) -> Self {
        let w = cfg.rate_time_unit;
        Self {
            cfg,
            exceptions,
            sender_messages: Window::new(w),
            sender_recipients: Window::new(w),
            user_messages: Window::new(w),
            user_recipients: Window::new(w),
        }
    }

    fn window(&self, kind: Kind) -> (&Window, u32) {
        match kind {
            Kind::SenderMessages => (&self.sender_messages, self.cfg.sender_message_rate_limit),
            Kind::SenderRecipients => (
                &self.sender_recipients,
                self.cfg.sender_recipient_rate_limit,
            ),
            Kind::UserMessages => (&self.user_messages, self.cfg.user_message_rate_limit),
            Kind::UserRecipients => (&self.user_recipients, self.cfg.user_recipient_rate_limit),
        }
    }

    /// Count one event of `kind` for `key`; a verdict when over the limit.
    fn count(&self, conn: &Connection, kind: Kind, key: &str) -> Option<Verdict> {
        let (window, limit) = self.window(kind);
        if limit == 0 || key.is_empty() || listed(&self.cfg.exempt_users, key) {
            return None;
        }
        let key_l = key.to_lowercase();
        match window.hit(&key_l, limit, Instant::now()) {
            Hit::Counted(n) => {
                tracing::debug!(session = %conn.session_id, limit_kind = kind.as_str(), key = %key_l, count = n, limit, "rate counted");
                None
            }
            Hit::Untracked => {
                tracing::warn!(
                    limit_kind = kind.as_str(),
                    "rate table full: event not counted"
                );
                None
            }
            Hit::Over(n) => {
                tracing::warn!(
                    session = %conn.session_id,
                    client = %conn.ip,
                    limit_kind = kind.as_str(),
                    key = %key_l,
                    count = n,
                    limit,
                    window = %postern_common::duration::format(self.cfg.rate_time_unit),
                    "rate limit exceeded"
                );
                let what = match kind {
                    Kind::SenderMessages | Kind::UserMessages => "messages",
                    Kind::SenderRecipients | Kind::UserRecipients => "recipients",
                };
                let text = format!(
                    "Error: too many {what} from {}, slow down",
                    super::printable(key, 256)
                );
                let code = self.cfg.rate_limit_reply_code;
                let action = if (500..600).contains(&code) {
                    Action::Reject {
                        code,
                        enhanced: (5, 7, 1),
                        text,
                    }
                } else {
                    Action::TempFail {
                        code,
                        enhanced: (4, 7, 1),
                        text,
                    }
                };
                Some(Verdict::new(
                    NAME,
                    action,
                    format!(
                        "{} {key_l}: {n} in {}",
                        kind.as_str(),
                        postern_common::duration::format(self.cfg.rate_time_unit)
                    ),
                ))
            }
        }
    }

    fn exempt(&self, conn: &Connection) -> bool {
        let ip = super::dns::canonical(conn.ip);
        self.exceptions.iter().any(|n| n.contains(&ip))
    }
}

impl Check for Flood {
    fn name(&self) -> &'static str {
        NAME
    }

    fn session(self: Arc<Self>, conn: &Connection) -> Box<dyn CheckSession> {
        let exempt = self.exempt(conn);
        Box::new(Session {
            check: self,
            exempt,
        })
    }
}

struct Session {
    check: Arc<Flood>,
    exempt: bool,
}

impl Session {
    /// Count one message or recipient: per user (wherever the user connects
    /// from: a stolen password used through webmail on localhost is still
    /// limited), then per sender address (not for exempt networks or users).
    fn count(
        &self,
        conn: &Connection,
        sender: &str,
        user_kind: Kind,
        sender_kind: Kind,
    ) -> Vec<Verdict> {
        let c = &self.check;
        if let Some(user) = &conn.auth_user {
            if let Some(v) = c.count(conn, user_kind, user) {
                return vec![v];
            }
            if listed(&c.cfg.exempt_users, user) {
                return Vec::new();
            }
        }
        if self.exempt {
            return Vec::new();
        }
        c.count(conn, sender_kind, sender).into_iter().collect()
    }
}

#[async_trait::async_trait]
impl CheckSession for Session {
    async fn mail(&mut self, conn: &Connection, sender: &str) -> Vec<Verdict> {
        self.count(conn, sender, Kind::UserMessages, Kind::SenderMessages)
    }

    async fn rcpt(&mut self, conn: &Connection, sender: &str, _rcpt: &str) -> Vec<Verdict> {
        self.count(conn, sender, Kind::UserRecipients, Kind::SenderRecipients)
    }
}

/// The settings smtpd's session loop needs (see the module docs).
#[derive(Debug, Clone)]
pub struct Hooks {
    roles: Vec<CheckRole>,
    exceptions: Vec<IpNet>,
    greet_wait: Duration,
    soft_error_limit: u32,
    error_sleep: Duration,
}

impl Hooks {
    pub fn new(cfg: &FloodConfig, exceptions: Vec<IpNet>) -> Self {
        Self {
            roles: cfg.roles.clone(),
            exceptions,
            greet_wait: cfg.greet_wait,
            soft_error_limit: cfg.smtpd_soft_error_limit,
            error_sleep: cfg.smtpd_error_sleep_time,
        }
    }

    fn applies(&self, role: Role, ip: IpAddr) -> bool {
        let ip = super::dns::canonical(ip);
        role.in_roles(&self.roles) && !self.exceptions.iter().any(|n| n.contains(&ip))
    }

    /// How long to wait for a client's silence before the greeting; `None`:
    /// greet at once. MX listeners only, like postscreen: submission
    /// clients are our users' programs, which wait for the greeting anyway.
    pub fn greet_wait(&self, role: Role, ip: IpAddr) -> Option<Duration> {
        (!self.greet_wait.is_zero() && role == Role::Mx && self.applies(role, ip))
            .then_some(self.greet_wait)
    }

    /// The delay before an error reply when the session has made `errors`
    /// error replies so far (this one included); `None`: no delay.
    pub fn error_delay(&self, role: Role, ip: IpAddr, errors: u32) -> Option<Duration> {
        (errors > self.soft_error_limit && !self.error_sleep.is_zero() && self.applies(role, ip))
            .then_some(self.error_sleep)
    }
}

/// What a client did while smtpd waited before the greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pregreet {
    /// Silent for the whole wait: greet it.
    Quiet,
    /// It talked first: refuse it. `preview`: the start of what it sent
    /// (printable, for the log).
    Talked { bytes: usize, preview: String },
    /// It closed the connection (or the read failed).
    Gone,
}

/// Wait `wait` for `client` to stay silent (postscreen `greet_wait`).
pub async fn watch_pregreet<R: tokio::io::AsyncRead + Unpin>(
    client: &mut R,
    wait: Duration,
) -> Pregreet {
    use tokio::io::AsyncReadExt as _;
    let mut early = [0u8; 128];
    match tokio::time::timeout(wait, client.read(&mut early)).await {
        Err(_) => Pregreet::Quiet,
        Ok(Ok(0)) | Ok(Err(_)) => Pregreet::Gone,
        Ok(Ok(n)) => Pregreet::Talked {
            bytes: n,
            preview: super::printable(&String::from_utf8_lossy(&early[..n]), 64),
        },
    }
}

static HOOKS: RwLock<Option<Arc<Hooks>>> = RwLock::new(None);

/// Make `hooks` the process's (called when the pipeline is built; `None`
/// when the flood check is off).
pub fn install(hooks: Option<Hooks>) {
    *HOOKS.write().unwrap_or_else(|e| e.into_inner()) = hooks.map(Arc::new);
}

/// The hooks of the pipeline built last, if the flood check is on.
pub fn hooks() -> Option<Arc<Hooks>> {
    HOOKS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(user: Option<&str>) -> Connection {
        Connection {
            session_id: "t".into(),
            ip: "192.0.2.1".parse().unwrap(),
            port: 1,
            role: Role::Submission,
            trusted: false,
            helo: "c.example".into(),
            tls: true,
            auth_user: user.map(str::to_string),
            hostname: "mx.example".into(),
        }
    }

    #[test]
    fn exempt_lists() {
        let list = vec![
            "boss@example.org".to_string(),
            "@trusted.example".to_string(),
        ];
        for (who, want) in [
            ("boss@example.org", true),
            ("BOSS@Example.org", true),
            ("x@trusted.example", true),
            ("x@nottrusted.example", false),
            ("trusted.example", false),
            ("other@example.org", false),
        ] {
            assert_eq!(listed(&list, who), want, "{who}");
        }
    }

    #[tokio::test]
    async fn user_limits() {
        let cfg = FloodConfig {
            user_message_rate_limit: 2,
            user_recipient_rate_limit: 3,
            exempt_users: vec!["boss@example.org".into()],
            ..FloodConfig::default()
        };
        let f = Arc::new(Flood::new(cfg, vec!["127.0.0.0/8".parse().unwrap()]));
        let c = conn(Some("alice@example.org"));
        let mut s = f.clone().session(&c);
        assert!(s.mail(&c, "alice@example.org").await.is_empty());
        assert!(s.rcpt(&c, "alice@example.org", "a@x").await.is_empty());
        assert!(s.rcpt(&c, "alice@example.org", "b@x").await.is_empty());
        assert!(s.rcpt(&c, "alice@example.org", "c@x").await.is_empty());
        let v = s.rcpt(&c, "alice@example.org", "d@x").await;
        assert!(
            matches!(
                v[0].action,
                Action::TempFail {
                    code: 450,
                    enhanced: (4, 7, 1),
                    ..
                }
            ),
            "{v:?}"
        );
        assert!(s.mail(&c, "alice@example.org").await.is_empty());
        let v = s.mail(&c, "alice@example.org").await;
        assert!(
            matches!(v[0].action, Action::TempFail { code: 450, .. }),
            "{v:?}"
        );
        // Another user, an exempt user, and an exempt network are not limited.
        let b = conn(Some("bob@example.org"));
        assert!(
            f.clone()
                .session(&b)
                .mail(&b, "bob@example.org")
                .await
                .is_empty()
        );
        let boss = conn(Some("boss@example.org"));
        let mut bs = f.clone().session(&boss);
        for _ in 0..5 {
            assert!(bs.mail(&boss, "boss@example.org").await.is_empty());
        }
        // Per-user limits apply from exempt networks too (webmail on
        // localhost), per-sender ones do not.
        let mut local = conn(Some("alice@example.org"));
        local.ip = "127.0.0.1".parse().unwrap();
        assert!(
            !f.clone()
                .session(&local)
                .mail(&local, "alice@example.org")
                .await
                .is_empty()
        );
        let senders = Arc::new(Flood::new(
            FloodConfig {
                sender_message_rate_limit: 1,
                ..FloodConfig::default()
            },
            vec!["127.0.0.0/8".parse().unwrap()],
        ));
        let mut anon = conn(None);
        anon.ip = "127.0.0.1".parse().unwrap();
        let mut s = senders.clone().session(&anon);
        for _ in 0..3 {
            assert!(s.mail(&anon, "app@example.org").await.is_empty());
        }
        let outside = conn(None);
        let mut s = senders.clone().session(&outside);
        assert!(s.mail(&outside, "app@example.org").await.is_empty());
        assert!(!s.mail(&outside, "app@example.org").await.is_empty());
    }

    #[tokio::test]
    async fn pregreet_watch() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let wait = Duration::from_millis(50);
        assert_eq!(watch_pregreet(&mut a, wait).await, Pregreet::Quiet);
        tokio::io::AsyncWriteExt::write_all(&mut b, b"EHLO x\r\n")
            .await
            .unwrap();
        assert_eq!(
            watch_pregreet(&mut a, wait).await,
            Pregreet::Talked {
                bytes: 8,
                preview: "EHLO x??".into()
            }
        );
        drop(b);
        assert_eq!(watch_pregreet(&mut a, wait).await, Pregreet::Gone);
    }

    #[test]
    fn hook_settings() {
        let cfg = FloodConfig {
            greet_wait: Duration::from_secs(2),
            smtpd_soft_error_limit: 2,
            roles: vec![CheckRole::Mx],
            ..FloodConfig::default()
        };
        let h = Hooks::new(&cfg, vec!["127.0.0.1/32".parse().unwrap()]);
        let out: IpAddr = "127.0.0.2".parse().unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(h.greet_wait(Role::Mx, out), Some(Duration::from_secs(2)));
        assert_eq!(h.greet_wait(Role::Mx, local), None);
        assert_eq!(h.greet_wait(Role::Submission, out), None);
        assert_eq!(h.error_delay(Role::Mx, out, 2), None);
        assert_eq!(
            h.error_delay(Role::Mx, out, 3),
            Some(Duration::from_secs(1))
        );
        let both = Hooks::new(
            &FloodConfig {
                greet_wait: Duration::from_secs(2),
                ..FloodConfig::default()
            },
            Vec::new(),
        );
        assert_eq!(both.greet_wait(Role::Submission, out), None);
        assert_eq!(both.greet_wait(Role::Mx, out), Some(Duration::from_secs(2)));
        let off = Hooks::new(&FloodConfig::default(), Vec::new());
        assert_eq!(off.greet_wait(Role::Mx, out), None);
    }
}
