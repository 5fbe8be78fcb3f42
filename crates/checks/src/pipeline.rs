//! Stages, verdicts and the pipeline that runs the checks.
//!
//! Every verdict is logged (`check verdict`, with the session id, stage,
//! check, action and reason) and counted in
//! `postern_smtpd_check_verdicts_total{check,action}`.

use std::net::IpAddr;
use std::sync::Arc;

use postern_common::Config;
use postern_common::checks::CheckRole;

/// The listener role a session runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Port 25: mail from the Internet.
    Mx,
    /// Ports 587 and 465: authenticated submission.
    Submission,
}

impl Role {
    /// Whether a check configured for `roles` runs on this role.
    pub fn in_roles(self, roles: &[CheckRole]) -> bool {
        roles.iter().any(|r| {
            matches!(
                (self, r),
                (Role::Mx, CheckRole::Mx) | (Role::Submission, CheckRole::Submission)
            )
        })
    }
}

/// Where in the SMTP dialogue a check is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Helo => "helo",
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
        }
    }
}

/// What a check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Refuse permanently: `code` (5xx), enhanced code, text.
    Reject {
        code: u16,
        enhanced: (u8, u16, u16),
        text: String,
    },
    /// Refuse temporarily (4xx): the client retries.
    TempFail {
        code: u16,
        enhanced: (u8, u16, u16),
        text: String,
    },
    /// Accept, but keep the message in the `hold` queue for review
    /// (`mailctl queue release` delivers it); the reason is stored with it.
    Hold { reason: String },
    /// Accept and drop silently (the client gets 250).
    Discard,
    /// Prepend a header field (`name: value`, value unfolded or folded with
    /// CRLF + whitespace; no trailing CRLF).
    AddHeader { name: String, value: String },
    /// Replace every recipient with this address.
    Redirect { to: String },
    /// Deliver a copy to this address too (audit / archive mailbox).
    Archive { to: String },
}

impl Action {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Reject { .. } => "reject",
            Action::TempFail { .. } => "tempfail",
            Action::Hold { .. } => "hold",
            Action::Discard => "discard",
            Action::AddHeader { .. } => "add_header",
            Action::Redirect { .. } => "redirect",
            Action::Archive { .. } => "archive",
        }
    }

    /// Reject or TempFail: the stage ends here.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Action::Reject { .. } | Action::TempFail { .. })
    }
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The check's name (its config section: "spf", "dnsbl", …).
    pub check: &'static str,
    pub action: Action,
    /// Why, for the log (and the audit log); never a message body.
    pub reason: String,
}

impl Verdict {
    pub fn new(check: &'static str, action: Action, reason: impl Into<String>) -> Self {
        Self {
            check,
            action,
            reason: reason.into(),
        }
    }
}

/// What is known about the client connection. Updated by smtpd as the
/// dialogue goes on (HELO, TLS, AUTH).
#[derive(Debug, Clone)]
pub struct Connection {
    pub session_id: String,
    pub ip: IpAddr,
    pub port: u16,
    pub role: Role,
    /// The client is in `mynetworks`.
    pub trusted: bool,
    /// HELO/EHLO argument, empty before it.
    pub helo: String,
    pub tls: bool,
    /// The authenticated user, if any.
    pub auth_user: Option<String>,
    /// Our host name (`global.myhostname`), for `Authentication-Results`.
    pub hostname: String,
}

/// The envelope at end-of-data.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// Reverse-path, empty = `<>`.
    pub sender: String,
    pub recipients: Vec<String>,
}

/// A check, built once from the configuration.
pub trait Check: Send + Sync {
    /// Its name (the config section).
    fn name(&self) -> &'static str;
    /// Open the per-connection state.
    fn session(self: Arc<Self>, conn: &Connection) -> Box<dyn CheckSession>;
}

/// A check's per-connection side. Every stage defaults to "no verdict".
#[async_trait::async_trait]
pub trait CheckSession: Send {
    async fn connect(&mut self, _conn: &Connection) -> Vec<Verdict> {
        Vec::new()
    }
    async fn helo(&mut self, _conn: &Connection) -> Vec<Verdict> {
        Vec::new()
    }
    async fn mail(&mut self, _conn: &Connection, _sender: &str) -> Vec<Verdict> {
        Vec::new()
    }
    async fn rcpt(&mut self, _conn: &Connection, _sender: &str, _rcpt: &str) -> Vec<Verdict> {
        Vec::new()
    }
    /// End of data. `message` is the message as it will be queued (our
    /// `Received:` header first, CRLF line ends, dot-unstuffed).
    async fn data(
        &mut self,
        _conn: &Connection,
        _envelope: &Envelope,
        _message: &[u8],
    ) -> Vec<Verdict> {
        Vec::new()
    }
    /// The transaction ended (RSET, new MAIL, after end-of-data).
    async fn reset(&mut self) {}
    /// The connection is closing.
    async fn close(&mut self) {}
}

/// The verdicts of one stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub verdicts: Vec<Verdict>,
}

impl Outcome {
    /// The refusal that ended the stage, if any.
    pub fn refusal(&self) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.action.is_refusal())
    }

    /// Header fields to prepend, in verdict order, as `Name: value\r\n`.
    pub fn headers(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for v in &self.verdicts {
            if let Action::AddHeader { name, value } = &v.action {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    /// Hold reasons (joined), if any check asked to hold.
    pub fn hold(&self) -> Option<String> {
        let reasons: Vec<String> = self
            .verdicts
            .iter()
            .filter_map(|v| match &v.action {
                Action::Hold { reason } => Some(format!("{}: {reason}", v.check)),
                _ => None,
            })
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    pub fn discard(&self) -> bool {
        self.verdicts
            .iter()
            .any(|v| matches!(v.action, Action::Discard))
    }

    /// The last redirect asked for.
    pub fn redirect(&self) -> Option<&str> {
        self.verdicts.iter().rev().find_map(|v| match &v.action {
            Action::Redirect { to } => Some(to.as_str()),
            _ => None,
        })
    }

    /// Archive copies asked for (deduplicated, in order).
    pub fn archive(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in &self.verdicts {
            if let Action::Archive { to } = &v.action
                && !out.contains(to)
            {
                out.push(to.clone());
            }
        }
        out
    }

    fn extend(&mut self, other: Outcome) {
        self.verdicts.extend(other.verdicts);
    }

    /// One outcome from the verdicts of several stages, in stage order
    /// (smtpd: connect, HELO, MAIL and RCPT, then end-of-data), so actions
    /// given before end of data apply to the message too.
    pub fn combine<I: IntoIterator<Item = Vec<Verdict>>>(stages: I) -> Outcome {
        Outcome {
            verdicts: stages.into_iter().flatten().collect(),
        }
    }
}

/// Every enabled check, in order.
#[derive(Clone, Default)]
pub struct Pipeline {
    checks: Vec<(Arc<dyn Check>, Vec<CheckRole>)>,
}

impl Pipeline {
    /// Build from `[checks.*]`. Order: flood, dnsbl, helo, greylist, spf,
    /// dkim, arc, dmarc, milter, clamav, audit, dkim_sign.
    pub fn from_config(cfg: &Config) -> anyhow::Result<Self> {
        let mut p = Pipeline::default();
        crate::reputation::build(cfg, &mut p)?;
        crate::auth::build_verify(cfg, &mut p)?;
        crate::scan::build(cfg, &mut p)?;
        crate::audit::build(cfg, &mut p)?;
        crate::auth::build_sign(cfg, &mut p)?;
        Ok(p)
    }

    /// Add a check that runs on `roles`.
    pub fn push(&mut self, check: Arc<dyn Check>, roles: Vec<CheckRole>) {
        self.checks.push((check, roles));
    }

    /// Names of the checks, in order (for the startup log).
    pub fn names(&self) -> Vec<&'static str> {
        self.checks.iter().map(|(c, _)| c.name()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Open the checks for one connection (only those enabled for its role).
    pub fn session(&self, conn: Connection) -> PipelineSession {
        let checks = self
            .checks
            .iter()
            .filter(|(_, roles)| conn.role.in_roles(roles))
            .map(|(c, _)| (c.name(), c.clone().session(&conn)))
            .collect();
        PipelineSession { conn, checks }
    }
}

/// The checks of one connection.
pub struct PipelineSession {
    /// What is known about the client; smtpd updates it (HELO, TLS, AUTH).
    pub conn: Connection,
    checks: Vec<(&'static str, Box<dyn CheckSession>)>,
}

impl PipelineSession {
    /// Whether any check runs on this connection (smtpd keeps a copy of the
    /// message for end-of-data only then).
    pub fn is_active(&self) -> bool {
        !self.checks.is_empty()
    }

    async fn run(&mut self, args: StageArgs<'_>) -> Outcome {
        let stage = args.stage();
        let mut out = Outcome::default();
        for (name, check) in self.checks.iter_mut() {
            let conn = &self.conn;
            let verdicts = match args {
                StageArgs::Connect => check.connect(conn).await,
                StageArgs::Helo => check.helo(conn).await,
                StageArgs::Mail(sender) => check.mail(conn, sender).await,
                StageArgs::Rcpt(sender, rcpt) => check.rcpt(conn, sender, rcpt).await,
                StageArgs::Data(env, msg) => check.data(conn, env, msg).await,
            };
            for v in &verdicts {
                postern_common::metrics::check_verdict(v.check, v.action.name());
                tracing::info!(
                    session = %conn.session_id,
                    stage = stage.as_str(),
                    check = v.check,
                    action = v.action.name(),
                    reason = %v.reason,
                    "check verdict"
                );
            }
            let refused = verdicts.iter().any(|v| v.action.is_refusal());
            out.extend(Outcome { verdicts });
            if refused {
                tracing::debug!(check = *name, "stage ended by refusal");
                break;
            }
        }
        out
    }

    pub async fn connect(&mut self) -> Outcome {
        self.run(StageArgs::Connect).await
    }

    pub async fn helo(&mut self) -> Outcome {
        self.run(StageArgs::Helo).await
    }

    pub async fn mail(&mut self, sender: &str) -> Outcome {
        self.run(StageArgs::Mail(sender)).await
    }

    pub async fn rcpt(&mut self, sender: &str, rcpt: &str) -> Outcome {
        self.run(StageArgs::Rcpt(sender, rcpt)).await
    }

    pub async fn data(&mut self, envelope: &Envelope, message: &[u8]) -> Outcome {
        self.run(StageArgs::Data(envelope, message)).await
    }

    pub async fn reset(&mut self) {
        for (_, c) in self.checks.iter_mut() {
            c.reset().await;
        }
    }

    pub async fn close(&mut self) {
        for (_, c) in self.checks.iter_mut() {
            c.close().await;
        }
    }
}

#[derive(Clone, Copy)]
enum StageArgs<'a> {
    Connect,
    Helo,
    Mail(&'a str),
    Rcpt(&'a str, &'a str),
    Data(&'a Envelope, &'a [u8]),
}

impl StageArgs<'_> {
    fn stage(self) -> Stage {
        match self {
            StageArgs::Connect => Stage::Connect,
            StageArgs::Helo => Stage::Helo,
            StageArgs::Mail(_) => Stage::Mail,
            StageArgs::Rcpt(..) => Stage::Rcpt,
            StageArgs::Data(..) => Stage::Data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A check that answers from a table and records the stages it saw.
    struct Fake {
        name: &'static str,
        on: Stage,
        action: Action,
        seen: Arc<Mutex<Vec<(&'static str, Stage)>>>,
    }

    struct FakeSession(Arc<Fake>);

    impl Check for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn session(self: Arc<Self>, _conn: &Connection) -> Box<dyn CheckSession> {
            Box::new(FakeSession(self))
        }
    }

    impl FakeSession {
        fn at(&self, stage: Stage) -> Vec<Verdict> {
            self.0.seen.lock().unwrap().push((self.0.name, stage));
            if stage == self.0.on {
                vec![Verdict::new(self.0.name, self.0.action.clone(), "test")]
            } else {
                Vec::new()
            }
        }
    }

    #[async_trait::async_trait]
    impl CheckSession for FakeSession {
        async fn connect(&mut self, _c: &Connection) -> Vec<Verdict> {
            self.at(Stage::Connect)
        }
        async fn helo(&mut self, _c: &Connection) -> Vec<Verdict> {
            self.at(Stage::Helo)
        }
        async fn mail(&mut self, _c: &Connection, _s: &str) -> Vec<Verdict> {
            self.at(Stage::Mail)
        }
        async fn rcpt(&mut self, _c: &Connection, _s: &str, _r: &str) -> Vec<Verdict> {
            self.at(Stage::Rcpt)
        }
        async fn data(&mut self, _c: &Connection, _e: &Envelope, _m: &[u8]) -> Vec<Verdict> {
            self.at(Stage::Data)
        }
    }

    fn conn(role: Role) -> Connection {
        Connection {
            session_id: "S1".into(),
            ip: "192.0.2.1".parse().unwrap(),
            port: 12345,
            role,
            trusted: false,
            helo: "client.example".into(),
            tls: false,
            auth_user: None,
            hostname: "mx.example".into(),
        }
    }

    fn reject() -> Action {
        Action::Reject {
            code: 554,
            enhanced: (5, 7, 1),
            text: "no".into(),
        }
    }

    fn header(name: &str) -> Action {
        Action::AddHeader {
            name: name.into(),
            value: "yes".into(),
        }
    }

    #[tokio::test]
    async fn refusal_ends_the_stage_and_other_actions_accumulate() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut p = Pipeline::default();
        let table = [
            ("a", Stage::Data, header("X-A")),
            ("b", Stage::Rcpt, reject()),
            ("c", Stage::Data, Action::Hold { reason: "r".into() }),
            ("d", Stage::Data, header("X-D")),
            (
                "e",
                Stage::Data,
                Action::Archive {
                    to: "audit@example".into(),
                },
            ),
        ];
        for (name, on, action) in table {
            p.push(
                Arc::new(Fake {
                    name,
                    on,
                    action,
                    seen: seen.clone(),
                }),
                vec![CheckRole::Mx],
            );
        }
        let mut s = p.session(conn(Role::Mx));
        assert!(s.is_active());
        assert_eq!(s.connect().await, Outcome::default());
        // RCPT: "b" refuses; "c".."e" are not asked.
        let out = s.rcpt("a@x", "b@y").await;
        assert_eq!(out.refusal().map(|v| v.check), Some("b"));
        let rcpt_seen: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, st)| *st == Stage::Rcpt)
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(rcpt_seen, ["a", "b"]);
        // DATA: no refusal; headers in order, hold reason named, archive.
        let out = s.data(&Envelope::default(), b"").await;
        assert!(out.refusal().is_none());
        assert_eq!(out.headers(), b"X-A: yes\r\nX-D: yes\r\n");
        assert_eq!(out.hold().as_deref(), Some("c: r"));
        assert_eq!(out.archive(), ["audit@example"]);
        assert!(!out.discard());
        assert_eq!(out.redirect(), None);
    }

    #[test]
    fn earlier_stages_apply_to_the_message() {
        let v = |check, action| Verdict::new(check, action, "t");
        let out = Outcome::combine([
            vec![v("connect", header("X-Connect"))],
            vec![v("helo", header("X-Helo"))],
            vec![v("rcpt", Action::Hold { reason: "r".into() })],
            vec![v("data", header("X-Data"))],
        ]);
        assert_eq!(
            out.headers(),
            b"X-Connect: yes\r\nX-Helo: yes\r\nX-Data: yes\r\n"
        );
        assert_eq!(out.hold().as_deref(), Some("rcpt: r"));
    }

    #[tokio::test]
    async fn checks_run_only_on_their_roles() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut p = Pipeline::default();
        p.push(
            Arc::new(Fake {
                name: "mx-only",
                on: Stage::Connect,
                action: reject(),
                seen: seen.clone(),
            }),
            vec![CheckRole::Mx],
        );
        let mut sub = p.session(conn(Role::Submission));
        assert!(!sub.is_active());
        assert!(sub.connect().await.refusal().is_none());
        let mut mx = p.session(conn(Role::Mx));
        assert!(mx.connect().await.refusal().is_some());
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[test]
    fn empty_config_builds_an_empty_pipeline() {
        let p = Pipeline::from_config(&Config::default()).unwrap();
        assert!(p.is_empty());
    }
}
