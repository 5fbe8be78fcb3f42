//! The `auth` check: SPF (RFC 7208) at MAIL FROM, DKIM (RFC 6376, RFC
//! 8463), ARC (RFC 8617) and DMARC (RFC 7489) at end of data, and one
//! `Authentication-Results` header (RFC 8601).
//!
//! Decisions:
//! * clients in `mynetworks` and authenticated clients are not checked (no
//!   header either);
//! * SPF `fail` rejects only with `fail_action = "reject"` (`550 5.7.23`,
//!   RFC 7372); `softfail` never does;
//! * DMARC fails when neither an aligned SPF pass nor an aligned DKIM pass
//!   exists. The policy that applies is `p=` when the record is the From
//!   domain's own, `sp=` when it was found at a parent (RFC 7489 6.6.3);
//!   `pct` < 100 samples, the unsampled rest gets the next milder policy
//!   (6.6.4). When SPF or DKIM ended in `temperror` the policy is not
//!   enforced (the message may well pass later): it is recorded only.

use std::sync::Arc;

use mail_auth::common::cache::NoCache;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::{Dmarc, Policy};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcOutput, DmarcResult,
    MessageAuthenticator, SpfOutput, SpfResult, Txt,
};
use postern_common::Config;
use postern_common::checks::auth::{
    DmarcQuarantineAction, DmarcRejectAction, JUNK_HEADER, SpfFailAction,
};
use postern_common::checks::{ArcConfig, DkimConfig, DmarcConfig, SpfConfig};

use super::on;
use super::resolver::{OrgDomains, resolver_from_config};
use crate::{Action, Check, CheckSession, Connection, Envelope, Verdict};

/// Bound on the DKIM signatures verified per message (each costs a DNS
/// lookup and a signature check; OpenDKIM verifies 3 by default). Later
/// ones are ignored.
const MAX_DKIM_SIGNATURES: usize = 10;
/// Bound on verifying a message's DKIM signatures (and, separately, its ARC
/// chain, at most 50 sets in mail-auth), DNS included; past it the result
/// is `temperror` (DMARC is then not enforced).
const DKIM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The check (one per smtpd, shared by its connections).
pub struct AuthCheck {
    spf: SpfConfig,
    dkim: DkimConfig,
    arc: ArcConfig,
    dmarc: DmarcConfig,
    auth: MessageAuthenticator,
    org: OrgDomains,
}

impl AuthCheck {
    pub fn from_config(cfg: &Config) -> anyhow::Result<Self> {
        let c = &cfg.checks;
        let org = if c.dmarc.enabled {
            OrgDomains::load(&c.dmarc.public_suffix_list)
        } else {
            OrgDomains::default()
        };
        Ok(Self::new(
            c.spf.clone(),
            c.dkim.clone(),
            c.arc.clone(),
            c.dmarc.clone(),
            resolver_from_config(cfg)?,
            org,
        ))
    }

    pub fn new(
        spf: SpfConfig,
        dkim: DkimConfig,
        arc: ArcConfig,
        dmarc: DmarcConfig,
        auth: MessageAuthenticator,
        org: OrgDomains,
    ) -> Self {
        Self {
            spf,
            dkim,
            arc,
            dmarc,
            auth,
            org,
        }
    }
}

impl Check for AuthCheck {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn session(self: Arc<Self>, conn: &Connection) -> Box<dyn CheckSession> {
        let r = conn.role;
        let parts = Parts {
            spf: on(self.spf.enabled, &self.spf.roles, r),
            dkim: on(self.dkim.enabled, &self.dkim.roles, r),
            arc: on(self.arc.enabled, &self.arc.roles, r),
            dmarc: on(self.dmarc.enabled, &self.dmarc.roles, r),
        };
        Box::new(AuthSession {
            check: self,
            parts,
            txn: Txn::default(),
        })
    }
}

/// Which parts run on this connection's role.
#[derive(Debug, Clone, Copy)]
struct Parts {
    spf: bool,
    dkim: bool,
    arc: bool,
    dmarc: bool,
}

impl Parts {
    fn need_spf(self) -> bool {
        self.spf || self.dmarc
    }
    fn need_dkim(self) -> bool {
        self.dkim || self.dmarc
    }
}

/// What one transaction learnt at MAIL FROM.
#[derive(Default)]
struct Txn {
    /// HELO identity result (only with `[checks.spf] helo`).
    helo: Option<SpfOutput>,
    /// MAIL FROM identity result.
    mail: Option<SpfOutput>,
    /// The reverse-path as given ("" for `<>`).
    sender: String,
}

struct AuthSession {
    check: Arc<AuthCheck>,
    parts: Parts,
    txn: Txn,
}

/// Mail from these clients is ours: nothing to verify.
fn exempt(conn: &Connection) -> bool {
    conn.trusted || conn.auth_user.is_some()
}

/// A HELO argument usable as an SPF identity: a domain name (not an
/// address literal, not a bare label).
fn helo_domain(helo: &str) -> Option<&str> {
    let h = helo.trim_end_matches('.');
    let ok = h.contains('.')
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !h.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    ok.then_some(h)
}

/// Text from the client put into a header field: printable ASCII without
/// the characters that end or comment an RFC 8601 value.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' if !matches!(c, ';' | '(' | ')' | '"' | '\\') => c,
            _ => '?',
        })
        .collect()
}

fn spf_name(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_name(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

/// The DMARC evaluation in our terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DmarcEval {
    /// pass, fail, none, temperror, permerror.
    pub result: &'static str,
    /// The From domain.
    pub domain: String,
    /// The policy that applies (after sp= and pct).
    pub policy: Policy,
}

/// What a direct lookup says about a name, where mail-auth cannot tell:
/// it reports every answer without records, SERVFAIL included, as "not
/// found" (which SPF turns into `none`, DKIM into `permerror` and DMARC
/// into "no policy"). A failure of the DNS is a temporary error (RFC 7208
/// 2.6.6, RFC 6376 6.1.2, RFC 7489 6.6.3), never a reason to reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// The name has TXT records, or does not exist (NXDOMAIN / NODATA).
    Answered,
    /// SERVFAIL, REFUSED, timeout, no server: we do not know.
    Temporary,
}

async fn probe(auth: &MessageAuthenticator, name: &str) -> Probe {
    use hickory_resolver::ResolveErrorKind;
    use hickory_resolver::proto::ProtoErrorKind;
    use hickory_resolver::proto::op::ResponseCode;
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match auth.resolver().txt_lookup(fqdn).await {
        Ok(_) => Probe::Answered,
        Err(e) => match e.kind() {
            ResolveErrorKind::Proto(p) => match p.kind() {
                ProtoErrorKind::NoRecordsFound { response_code, .. }
                    if matches!(
                        *response_code,
                        ResponseCode::NXDomain | ResponseCode::NoError
                    ) =>
                {
                    Probe::Answered
                }
                _ => Probe::Temporary,
            },
            _ => Probe::Temporary,
        },
    }
}

/// A DKIM result that is really a DNS failure of the key lookup.
fn dkim_dns_temporary(r: &DkimResult) -> bool {
    use hickory_resolver::proto::op::ResponseCode;
    match r {
        DkimResult::PermError(mail_auth::Error::DnsRecordNotFound(code))
        | DkimResult::Neutral(mail_auth::Error::DnsRecordNotFound(code))
        | DkimResult::Fail(mail_auth::Error::DnsRecordNotFound(code)) => {
            !matches!(*code, ResponseCode::NXDomain | ResponseCode::NoError)
        }
        _ => false,
    }
}

impl AuthSession {
    async fn spf_at_mail(&mut self, conn: &Connection, sender: &str) -> Vec<Verdict> {
        let c = &self.check;
        self.txn.sender = sender.to_string();
        let helo = helo_domain(&conn.helo);
        if self.parts.spf
            && c.spf.helo
            && let Some(h) = helo
        {
            let mut out = c
                .auth
                .verify_spf(SpfParameters::verify_ehlo(conn.ip, h, &conn.hostname))
                .await;
            if out.result() == SpfResult::None && probe(&c.auth, h).await == Probe::Temporary {
                out = out.with_result(SpfResult::TempError);
            }
            tracing::debug!(session = %conn.session_id, identity = "helo", result = spf_name(out.result()), "spf");
            self.txn.helo = Some(out);
        }
        // RFC 7208 2.4: for the null sender the identity is
        // postmaster@<HELO>; without a usable HELO there is none.
        let identity = if sender.is_empty() {
            helo.map(|h| format!("postmaster@{h}"))
        } else {
            Some(sender.to_string())
        };
        let Some(identity) = identity else {
            self.txn.mail = Some(SpfOutput::default());
            return Vec::new();
        };
        let mut out = c
            .auth
            .verify_spf(SpfParameters::verify_mail_from(
                conn.ip,
                helo.unwrap_or(""),
                &conn.hostname,
                &identity,
            ))
            .await;
        if out.result() == SpfResult::None {
            let domain = identity.rsplit_once('@').map_or("", |(_, d)| d);
            if !domain.is_empty() && probe(&c.auth, domain).await == Probe::Temporary {
                out = out.with_result(SpfResult::TempError);
            }
        }
        tracing::debug!(session = %conn.session_id, identity = "mailfrom", result = spf_name(out.result()), "spf");
        let mut verdicts = Vec::new();
        if self.parts.spf
            && c.spf.fail_action == SpfFailAction::Reject
            && out.result() == SpfResult::Fail
        {
            let domain = out.domain().to_string();
            verdicts.push(Verdict::new(
                "spf",
                Action::Reject {
                    code: 550,
                    enhanced: (5, 7, 23),
                    text: format!(
                        "SPF: {} does not designate {} as a permitted sender",
                        header_safe(&domain),
                        conn.ip
                    ),
                },
                format!("spf=fail domain={domain} ip={}", conn.ip),
            ));
        }
        self.txn.mail = Some(out);
        verdicts
    }

    /// The From domain's policy: `p=` for its own record, `sp=` for a
    /// parent's, then `pct` sampling.
    async fn effective_policy(&self, domain: &str, record: &Dmarc) -> Policy {
        let own = self
            .check
            .auth
            .txt_lookup::<Dmarc>(format!("_dmarc.{domain}."), None::<&NoCache<String, Txt>>)
            .await
            .is_ok();
        let p = if own || record.sp == Policy::Unspecified {
            record.p
        } else {
            record.sp
        };
        if record.pct >= 100 || rand::random::<u8>() % 100 < record.pct {
            p
        } else {
            match p {
                Policy::Reject => Policy::Quarantine,
                _ => Policy::None,
            }
        }
    }

    async fn dmarc_eval(
        &self,
        msg: &AuthenticatedMessage<'_>,
        dkim: &[DkimOutput<'_>],
        spf: &SpfOutput,
        mail_from_domain: &str,
    ) -> DmarcEval {
        let org = &self.check.org;
        let out: DmarcOutput = self
            .check
            .auth
            .verify_dmarc(DmarcParameters {
                message: msg,
                dkim_output: dkim,
                rfc5321_mail_from_domain: mail_from_domain,
                spf_output: spf,
                domain_suffix_fn: |d: &str| org.org(d),
            })
            .await;
        let domain = out.domain().to_string();
        let Some(record) = out.dmarc_record() else {
            let mut result = match out.dkim_result() {
                DmarcResult::TempError(_) => "temperror",
                DmarcResult::PermError(_) => "permerror",
                _ => "none",
            };
            if result == "none" && !domain.is_empty() {
                for name in [
                    format!("_dmarc.{domain}"),
                    format!("_dmarc.{}", org.org(&domain)),
                ] {
                    if probe(&self.check.auth, &name).await == Probe::Temporary {
                        result = "temperror";
                        break;
                    }
                }
            }
            return DmarcEval {
                result,
                domain,
                policy: Policy::None,
            };
        };
        let pass =
            *out.spf_result() == DmarcResult::Pass || *out.dkim_result() == DmarcResult::Pass;
        if pass {
            return DmarcEval {
                result: "pass",
                domain,
                policy: record.p,
            };
        }
        let temp = spf.result() == SpfResult::TempError
            || dkim
                .iter()
                .any(|d| matches!(d.result(), DkimResult::TempError(_)));
        if temp {
            return DmarcEval {
                result: "temperror",
                domain,
                policy: Policy::None,
            };
        }
        let policy = self.effective_policy(&domain, record).await;
        DmarcEval {
            result: "fail",
            domain,
            policy,
        }
    }

    async fn at_data(&mut self, conn: &Connection, env: &Envelope, message: &[u8]) -> Vec<Verdict> {
        let c = self.check.clone();
        let parts = self.parts;
        if parts.need_spf() && self.txn.mail.is_none() {
            // MAIL FROM was not seen by this check (cannot happen through
            // smtpd, which runs every stage); evaluate now.
            self.spf_at_mail(conn, &env.sender).await;
        }
        let helo = helo_domain(&conn.helo).unwrap_or("unknown");
        let mut ar = AuthenticationResults::new(&conn.hostname);
        let mut summary = Vec::new();
        if parts.spf {
            if let Some(h) = &self.txn.helo {
                ar = ar.with_spf_ehlo_result(h, conn.ip, helo);
            }
            if let Some(m) = &self.txn.mail {
                ar = ar.with_spf_mailfrom_result(m, conn.ip, &header_safe(&self.txn.sender), helo);
                summary.push(format!("spf={}", spf_name(m.result())));
            }
        }
        let mut parsed = AuthenticatedMessage::parse(message);
        if let Some(m) = parsed.as_mut()
            && m.dkim_headers.len() > MAX_DKIM_SIGNATURES
        {
            tracing::info!(session = %conn.session_id, signatures = m.dkim_headers.len(), "only the first DKIM signatures are verified");
            m.dkim_headers.truncate(MAX_DKIM_SIGNATURES);
        }
        let empty = AuthenticatedMessage::default();
        let msg = parsed.as_ref().unwrap_or(&empty);
        let dkim: Vec<DkimOutput> = if parts.need_dkim() && parsed.is_some() {
            let verified = match tokio::time::timeout(DKIM_TIMEOUT, c.auth.verify_dkim(msg)).await {
                Ok(v) => v,
                Err(_) => {
                    tracing::warn!(session = %conn.session_id, "DKIM verification timed out: temperror");
                    vec![DkimOutput::temp_err(mail_auth::Error::DnsError(
                        "verification timed out".into(),
                    ))]
                }
            };
            verified
                .into_iter()
                .map(|d| {
                    if !dkim_dns_temporary(d.result()) {
                        return d;
                    }
                    let t = DkimOutput::temp_err(mail_auth::Error::DnsError(
                        "key lookup failed".into(),
                    ));
                    // The same signature, borrowed from the message.
                    let sig = msg
                        .dkim_headers
                        .iter()
                        .filter_map(|h| h.header.as_ref().ok())
                        .find(|s| Some(*s) == d.signature());
                    match sig {
                        Some(sig) => t.with_signature(sig),
                        None => t,
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut extra = String::new();
        if parts.dkim {
            if dkim.is_empty() {
                extra.push_str(";\r\n\tdkim=none");
                summary.push("dkim=none".into());
            } else {
                let from = msg.from().to_string();
                ar = ar.with_dkim_results(&dkim, &from);
                for d in &dkim {
                    summary.push(format!("dkim={}", dkim_name(d.result())));
                }
            }
        }
        if parts.arc && parsed.is_some() {
            let arc = match tokio::time::timeout(DKIM_TIMEOUT, c.auth.verify_arc(msg)).await {
                Ok(a) => a,
                Err(_) => mail_auth::ArcOutput::default().with_result(DkimResult::TempError(
                    mail_auth::Error::DnsError("verification timed out".into()),
                )),
            };
            summary.push(format!("arc={}", dkim_name(arc.result())));
            ar = ar.with_arc_result(&arc, conn.ip);
        }
        let mut verdicts = Vec::new();
        let mut action = None;
        if parts.dmarc {
            let spf = self.txn.mail.clone().unwrap_or_default();
            let mail_from_domain = match self.txn.sender.rsplit_once('@') {
                Some((_, d)) => d.to_ascii_lowercase(),
                None => helo.to_ascii_lowercase(),
            };
            let eval = self.dmarc_eval(msg, &dkim, &spf, &mail_from_domain).await;
            extra.push_str(&format!(
                ";\r\n\tdmarc={} header.from={} policy.dmarc={}",
                eval.result,
                header_safe(if eval.domain.is_empty() {
                    "unknown"
                } else {
                    &eval.domain
                }),
                eval.policy
            ));
            summary.push(format!("dmarc={}", eval.result));
            if eval.result == "fail" {
                action = self.policy_action(&eval);
            }
        }
        let mut value = ar.to_string();
        value.push_str(&extra);
        if value == conn.hostname {
            value.push_str("; none");
        }
        verdicts.push(Verdict::new(
            "auth",
            Action::AddHeader {
                name: "Authentication-Results".into(),
                value,
            },
            summary.join(" "),
        ));
        if let Some(v) = action {
            verdicts.push(v);
        }
        verdicts
    }

    fn policy_action(&self, eval: &DmarcEval) -> Option<Verdict> {
        let d = &self.check.dmarc;
        let reason = format!(
            "dmarc=fail header.from={} policy={}",
            eval.domain, eval.policy
        );
        let quarantine = |reason: String| match d.quarantine_action {
            DmarcQuarantineAction::Junk => Some(Verdict::new(
                "dmarc",
                Action::AddHeader {
                    name: JUNK_HEADER.into(),
                    value: format!(
                        "yes (DMARC policy quarantine of {})",
                        header_safe(&eval.domain)
                    ),
                },
                reason,
            )),
            DmarcQuarantineAction::Hold => Some(Verdict::new(
                "dmarc",
                Action::Hold {
                    reason: format!("DMARC policy quarantine of {}", eval.domain),
                },
                reason,
            )),
            DmarcQuarantineAction::Record => None,
        };
        match eval.policy {
            Policy::Reject => match d.reject_action {
                DmarcRejectAction::Reject => Some(Verdict::new(
                    "dmarc",
                    Action::Reject {
                        code: 550,
                        enhanced: (5, 7, 1),
                        text: format!(
                            "Message rejected: DMARC policy of {} (not authenticated by SPF or DKIM)",
                            header_safe(&eval.domain)
                        ),
                    },
                    reason,
                )),
                DmarcRejectAction::Quarantine => quarantine(reason),
                DmarcRejectAction::Record => None,
            },
            Policy::Quarantine => quarantine(reason),
            Policy::None | Policy::Unspecified => None,
        }
    }
}

#[async_trait::async_trait]
impl CheckSession for AuthSession {
    async fn mail(&mut self, conn: &Connection, sender: &str) -> Vec<Verdict> {
        self.txn = Txn::default();
        if exempt(conn) || !self.parts.need_spf() {
            return Vec::new();
        }
        self.spf_at_mail(conn, sender).await
    }

    async fn data(&mut self, conn: &Connection, env: &Envelope, message: &[u8]) -> Vec<Verdict> {
        if exempt(conn) {
            return Vec::new();
        }
        self.at_data(conn, env, message).await
    }

    async fn reset(&mut self) {
        self.txn = Txn::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helo_identity() {
        assert_eq!(helo_domain("mail.example.org"), Some("mail.example.org"));
        assert_eq!(helo_domain("mail.example.org."), Some("mail.example.org"));
        assert_eq!(helo_domain("[192.0.2.1]"), None);
        assert_eq!(helo_domain("192.0.2.1"), None);
        assert_eq!(helo_domain("localhost"), None);
        assert_eq!(helo_domain("a;b.example"), None);
    }

    #[test]
    fn client_text_cannot_break_the_header() {
        assert_eq!(header_safe("a@b.example"), "a@b.example");
        assert_eq!(header_safe("\"x;y\"@b\r\n.example"), "?x?y?@b??.example");
    }

    fn session(dmarc: DmarcConfig) -> AuthSession {
        use hickory_resolver::TokioResolver;
        use hickory_resolver::config::ResolverConfig;
        use hickory_resolver::name_server::TokioConnectionProvider;
        // No server: nothing here looks anything up.
        let resolver = TokioResolver::builder_with_config(
            ResolverConfig::new(),
            TokioConnectionProvider::default(),
        )
        .build();
        let check = AuthCheck::new(
            SpfConfig::default(),
            DkimConfig::default(),
            ArcConfig::default(),
            dmarc,
            MessageAuthenticator(resolver),
            OrgDomains::default(),
        );
        AuthSession {
            check: Arc::new(check),
            parts: Parts {
                spf: true,
                dkim: true,
                arc: false,
                dmarc: true,
            },
            txn: Txn::default(),
        }
    }

    fn eval(policy: Policy) -> DmarcEval {
        DmarcEval {
            result: "fail",
            domain: "example.net".into(),
            policy,
        }
    }

    #[tokio::test]
    async fn policy_knobs() {
        let d = DmarcConfig::default();
        let v = session(d.clone())
            .policy_action(&eval(Policy::Reject))
            .unwrap();
        assert!(matches!(
            v.action,
            Action::Reject { code: 550, enhanced: (5, 7, 1), ref text } if text.contains("DMARC policy of example.net")
        ));
        let v = session(d.clone())
            .policy_action(&eval(Policy::Quarantine))
            .unwrap();
        assert!(
            matches!(v.action, Action::AddHeader { ref name, ref value } if name == JUNK_HEADER && value.starts_with("yes"))
        );
        assert!(
            session(d.clone())
                .policy_action(&eval(Policy::None))
                .is_none()
        );

        let mut q = d.clone();
        q.reject_action = DmarcRejectAction::Quarantine;
        q.quarantine_action = DmarcQuarantineAction::Hold;
        let v = session(q.clone())
            .policy_action(&eval(Policy::Reject))
            .unwrap();
        assert!(matches!(v.action, Action::Hold { .. }));
        q.quarantine_action = DmarcQuarantineAction::Record;
        assert!(
            session(q.clone())
                .policy_action(&eval(Policy::Quarantine))
                .is_none()
        );
        let mut r = d;
        r.reject_action = DmarcRejectAction::Record;
        assert!(session(r).policy_action(&eval(Policy::Reject)).is_none());
    }

    #[test]
    fn exempt_clients() {
        let mut c = Connection {
            session_id: "s".into(),
            ip: "192.0.2.1".parse::<std::net::IpAddr>().unwrap(),
            port: 1,
            role: crate::Role::Mx,
            trusted: false,
            helo: String::new(),
            tls: false,
            auth_user: None,
            hostname: "mx.example".into(),
        };
        assert!(!exempt(&c));
        c.trusted = true;
        assert!(exempt(&c));
        c.trusted = false;
        c.auth_user = Some("a@b".into());
        assert!(exempt(&c));
    }
}
