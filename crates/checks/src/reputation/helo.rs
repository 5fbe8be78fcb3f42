//! `helo`: HELO/EHLO sanity and forward-confirmed reverse DNS of the client.
//!
//! HELO rules (Postfix `reject_invalid_helo_hostname`,
//! `reject_non_fqdn_helo_hostname`, plus two common `check_helo_access`
//! rules: a bare IP address without brackets, and our own name or address)
//! are pure functions over the HELO argument. FCrDNS (Postfix
//! `reject_unknown_client_hostname`): the client's PTR names are looked up
//! at connect, in the background, and each name's addresses must include
//! the client's address. Every refusal is given at RCPT TO (Postfix
//! `smtpd_delay_reject = yes`); `unknown_client_hostname = "header"` adds
//! `X-Postern-FCrDNS` to the message instead. `mynetworks` and
//! authenticated clients are exempt.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use postern_common::checks::reputation::{FcrdnsAction, HeloConfig};
use tokio::task::JoinHandle;

use super::{Allowlisted, dns, printable};
use crate::{Action, Check, CheckSession, Connection, Verdict};

const NAME: &str = "helo";

/// PTR names checked per client (a client with more is judged on these).
pub const MAX_PTR_NAMES: usize = 10;
/// Longest host name (RFC 1035 2.3.4 plus a trailing dot).
const MAX_HOSTNAME: usize = 254;

/// What is wrong with a HELO argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeloProblem {
    /// Not a host name or address literal.
    Invalid,
    /// A host name without a dot.
    NonFqdn,
    /// An IP address without brackets.
    Unbracketed,
    /// Our own name or address.
    Own,
}

/// Names and addresses that are ours.
#[derive(Debug, Clone, Default)]
pub struct Own {
    /// Lower case, without a trailing dot.
    pub names: Vec<String>,
    pub addrs: Vec<IpAddr>,
}

fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// Judge a HELO argument (the checks that are on are passed as flags).
pub fn helo_problem(helo: &str, own: &Own, cfg: &HeloConfig) -> Option<HeloProblem> {
    // Address literal: [192.0.2.1] or [IPv6:2001:db8::1] (RFC 5321 4.1.3).
    if let Some(inner) = helo.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let ip = match inner.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("ipv6:") => inner[5..]
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(IpAddr::V6),
            _ => inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
        };
        return match ip {
            None if cfg.reject_invalid_helo_hostname => Some(HeloProblem::Invalid),
            Some(ip) if cfg.reject_own_helo && own.addrs.contains(&dns::canonical(ip)) => {
                Some(HeloProblem::Own)
            }
            _ => None,
        };
    }
    if let Ok(ip) = helo.parse::<IpAddr>() {
        if cfg.reject_unbracketed_ip_helo {
            return Some(HeloProblem::Unbracketed);
        }
        if cfg.reject_own_helo && own.addrs.contains(&dns::canonical(ip)) {
            return Some(HeloProblem::Own);
        }
        return None;
    }
    let name = helo.strip_suffix('.').unwrap_or(helo);
    let labels: Vec<&str> = name.split('.').collect();
    let valid = helo.len() <= MAX_HOSTNAME
        && labels.iter().all(|l| valid_label(l))
        // All-numeric names are broken addresses, not host names.
        && !labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return cfg
            .reject_invalid_helo_hostname
            .then_some(HeloProblem::Invalid);
    }
    if labels.len() < 2 && cfg.reject_non_fqdn_helo_hostname {
        return Some(HeloProblem::NonFqdn);
    }
    if cfg.reject_own_helo && own.names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        return Some(HeloProblem::Own);
    }
    None
}

fn helo_verdict(helo: &str, p: HeloProblem) -> Verdict {
    let shown = printable(helo, 100);
    let (code, enhanced, what) = match p {
        HeloProblem::Invalid => (501, (5, 5, 2), "Invalid name"),
        HeloProblem::NonFqdn => (504, (5, 5, 2), "need fully-qualified hostname"),
        HeloProblem::Unbracketed => (
            550,
            (5, 7, 1),
            "an address literal needs brackets, like [192.0.2.1]",
        ),
        HeloProblem::Own => (550, (5, 7, 1), "that is my name, not yours"),
    };
    Verdict::new(
        NAME,
        Action::Reject {
            code,
            enhanced,
            text: format!("<{shown}>: Helo command rejected: {what}"),
        },
        format!("HELO {shown:?}: {p:?}"),
    )
}

/// The result of the FCrDNS lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fcrdns {
    /// A PTR name whose addresses include the client's.
    Confirmed(String),
    /// No PTR record.
    NoPtr,
    /// PTR names, none of which resolves back to the client.
    NotConfirmed(Vec<String>),
    /// A lookup failed or timed out.
    TempFail,
}

/// The check.
pub struct Helo {
    cfg: HeloConfig,
    own: Own,
    resolver: TokioResolver,
    allow: Arc<Allowlisted>,
}

impl Helo {
    /// `allow`: sessions the DNSBL allowlisted (skipped).
    pub fn new(cfg: HeloConfig, own: Own, allow: Arc<Allowlisted>) -> Result<Self, dns::BadServer> {
        let resolver = dns::resolver(&cfg.dns_servers, cfg.dns_timeout)?;
        Ok(Self {
            cfg,
            own,
            resolver,
            allow,
        })
    }

    /// Forward-confirmed reverse DNS of `ip`, within `dns_timeout`.
    pub async fn fcrdns(&self, ip: IpAddr) -> Fcrdns {
        let ip = dns::canonical(ip);
        match tokio::time::timeout(self.cfg.dns_timeout, self.fcrdns_inner(ip)).await {
            Ok(r) => r,
            Err(_) => Fcrdns::TempFail,
        }
    }

    async fn fcrdns_inner(&self, ip: IpAddr) -> Fcrdns {
        let names: Vec<String> = match self.resolver.reverse_lookup(ip).await {
            Ok(l) => l
                .iter()
                .take(MAX_PTR_NAMES)
                .map(|p| p.0.to_ascii().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => return Fcrdns::NoPtr,
            Err(e) => {
                tracing::debug!(client = %ip, error = %e, "PTR lookup failed");
                return Fcrdns::TempFail;
            }
        };
        if names.is_empty() {
            return Fcrdns::NoPtr;
        }
        let lookups = names.iter().map(|n| {
            let resolver = &self.resolver;
            async move { resolver.lookup_ip(format!("{n}.")).await }
        });
        let results = futures::future::join_all(lookups).await;
        let mut temp = false;
        for (name, r) in names.iter().zip(results) {
            match r {
                Ok(addrs) if addrs.iter().any(|a| dns::canonical(a) == ip) => {
                    return Fcrdns::Confirmed(name.clone());
                }
                Ok(_) => {}
                Err(e) if e.is_nx_domain() || e.is_no_records_found() => {}
                Err(_) => temp = true,
            }
        }
        if temp {
            Fcrdns::TempFail
        } else {
            Fcrdns::NotConfirmed(names)
        }
    }

    fn fcrdns_verdict(&self, ip: IpAddr, r: &Fcrdns) -> Option<Verdict> {
        let why = match r {
            Fcrdns::Confirmed(_) => return None,
            Fcrdns::NoPtr => "no PTR record".to_string(),
            Fcrdns::NotConfirmed(names) => {
                format!("{} does not resolve to the client", names.join(", "))
            }
            Fcrdns::TempFail => "DNS lookup failed".to_string(),
        };
        match self.cfg.unknown_client_hostname {
            FcrdnsAction::Off => None,
            FcrdnsAction::Header => Some(Verdict::new(
                NAME,
                Action::AddHeader {
                    name: "X-Postern-FCrDNS".into(),
                    value: format!(
                        "{} (client [{ip}]: {why})",
                        if *r == Fcrdns::TempFail {
                            "temperror"
                        } else {
                            "fail"
                        }
                    ),
                },
                format!("FCrDNS: {why}"),
            )),
            FcrdnsAction::Reject => {
                let code = if *r == Fcrdns::TempFail {
                    450
                } else {
                    self.cfg.unknown_client_hostname_reject_code
                };
                let text = format!("Client host rejected: cannot find your hostname, [{ip}]");
                let action = if (400..500).contains(&code) {
                    Action::TempFail {
                        code,
                        enhanced: (4, 7, 25),
                        text,
                    }
                } else {
                    Action::Reject {
                        code,
                        enhanced: (5, 7, 25),
                        text,
                    }
                };
                Some(Verdict::new(NAME, action, format!("FCrDNS: {why}")))
            }
        }
    }
}

impl Check for Helo {
    fn name(&self) -> &'static str {
        NAME
    }

    fn session(self: Arc<Self>, _conn: &Connection) -> Box<dyn CheckSession> {
        Box::new(Session {
            check: self,
            pending: None,
            fcrdns: None,
        })
    }
}

struct Session {
    check: Arc<Helo>,
    pending: Option<JoinHandle<Fcrdns>>,
    fcrdns: Option<Fcrdns>,
}

impl Session {
    fn exempt(&self, conn: &Connection) -> bool {
        conn.trusted || conn.auth_user.is_some() || self.check.allow.get(&conn.session_id).is_some()
    }

    async fn fcrdns(&mut self, conn: &Connection) -> Option<Fcrdns> {
        if self.fcrdns.is_none()
            && let Some(h) = self.pending.take()
        {
            let r = h.await.unwrap_or(Fcrdns::TempFail);
            tracing::info!(session = %conn.session_id, client = %conn.ip, result = ?r, "FCrDNS");
            self.fcrdns = Some(r);
        }
        self.fcrdns.clone()
    }
}

#[async_trait::async_trait]
impl CheckSession for Session {
    async fn connect(&mut self, conn: &Connection) -> Vec<Verdict> {
        if !conn.trusted && self.check.cfg.unknown_client_hostname != FcrdnsAction::Off {
            let check = self.check.clone();
            let ip = conn.ip;
            self.pending = Some(tokio::spawn(async move { check.fcrdns(ip).await }));
        }
        Vec::new()
    }

    async fn rcpt(&mut self, conn: &Connection, _sender: &str, _rcpt: &str) -> Vec<Verdict> {
        if self.exempt(conn) {
            return Vec::new();
        }
        if let Some(p) = helo_problem(&conn.helo, &self.check.own, &self.check.cfg) {
            return vec![helo_verdict(&conn.helo, p)];
        }
        if self.check.cfg.unknown_client_hostname == FcrdnsAction::Reject
            && let Some(r) = self.fcrdns(conn).await
        {
            return self.check.fcrdns_verdict(conn.ip, &r).into_iter().collect();
        }
        Vec::new()
    }

    async fn data(
        &mut self,
        conn: &Connection,
        _envelope: &crate::Envelope,
        _message: &[u8],
    ) -> Vec<Verdict> {
        if self.exempt(conn) || self.check.cfg.unknown_client_hostname != FcrdnsAction::Header {
            return Vec::new();
        }
        match self.fcrdns(conn).await {
            Some(r) => self.check.fcrdns_verdict(conn.ip, &r).into_iter().collect(),
            None => Vec::new(),
        }
    }

    async fn close(&mut self) {
        if let Some(h) = self.pending.take() {
            h.abort();
        }
    }
}

/// A session can end without `close` (the client hangs up, a timeout).
impl Drop for Session {
    fn drop(&mut self) {
        if let Some(h) = self.pending.take() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helo_rules() {
        let own = Own {
            names: vec!["mail.example.test".into(), "localhost".into()],
            addrs: vec![
                "192.0.2.25".parse().unwrap(),
                "2001:db8::25".parse().unwrap(),
            ],
        };
        let cfg = HeloConfig::default();
        use HeloProblem as P;
        let cases: &[(&str, Option<HeloProblem>)] = &[
            ("client.example.org", None),
            ("client.example.org.", None),
            ("mx_1.example.org", None),
            ("[198.51.100.7]", None),
            ("[IPv6:2001:db8::7]", None),
            ("[ipv6:2001:db8::7]", None),
            ("[198.51.100]", Some(P::Invalid)),
            ("[IPv6:zz::1]", Some(P::Invalid)),
            ("bad..example.org", Some(P::Invalid)),
            ("-bad.example.org", Some(P::Invalid)),
            ("bad!.example.org", Some(P::Invalid)),
            ("1.2.3", Some(P::Invalid)),
            ("localhost", Some(P::NonFqdn)),
            ("client", Some(P::NonFqdn)),
            ("198.51.100.7", Some(P::Unbracketed)),
            ("2001:db8::7", Some(P::Unbracketed)),
            ("MAIL.example.test", Some(P::Own)),
            ("mail.example.test.", Some(P::Own)),
            ("[192.0.2.25]", Some(P::Own)),
            ("[IPv6:2001:db8::25]", Some(P::Own)),
        ];
        for (helo, want) in cases {
            assert_eq!(helo_problem(helo, &own, &cfg), *want, "{helo}");
        }
        let long = format!("{}.example.org", "a".repeat(64));
        assert_eq!(helo_problem(&long, &own, &cfg), Some(P::Invalid));
        // Each rule can be turned off.
        let off = HeloConfig {
            reject_invalid_helo_hostname: false,
            reject_non_fqdn_helo_hostname: false,
            reject_unbracketed_ip_helo: false,
            reject_own_helo: false,
            ..HeloConfig::default()
        };
        for (helo, _) in cases {
            assert_eq!(helo_problem(helo, &own, &off), None, "{helo}");
        }
    }

    #[test]
    fn helo_replies() {
        let v = helo_verdict("client", HeloProblem::NonFqdn);
        let Action::Reject { code, text, .. } = v.action else {
            panic!("{v:?}")
        };
        assert_eq!(code, 504);
        assert_eq!(
            text,
            "<client>: Helo command rejected: need fully-qualified hostname"
        );
        let v = helo_verdict("bad\u{1}name", HeloProblem::Invalid);
        let Action::Reject { text, .. } = v.action else {
            panic!("{v:?}")
        };
        assert!(text.starts_with("<bad?name>"), "{text}");
    }
}
