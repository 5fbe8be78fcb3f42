//! `dnsbl`: DNS block and allow lists with weights, postscreen's way.
//!
//! At connect every list in `postscreen_dnsbl_sites` is queried at once
//! (RFC 5782 query names) in a background task, so the lookups overlap the
//! greeting and HELO; the verdict is taken where `reject_stage` says: at
//! connect (the refusal replaces the greeting) or at each RCPT (default,
//! like Postfix `reject_rbl_client` / postscreen `enforce`). The score is
//! the sum of the weights of the lists whose answer matches their filter
//! (allow lists have negative weights); at `postscreen_dnsbl_threshold` or
//! above the client is refused with `554 5.7.1`. Lists that have not
//! answered within `postscreen_dnsbl_timeout` count 0 (fail open: a slow
//! list never blocks mail). `mynetworks` clients are not looked up;
//! authenticated clients are never refused.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use postern_common::checks::reputation::{DnsblConfig, DnsblSite, RejectStage};
use tokio::task::JoinHandle;

use super::{Allowlisted, dns};
use crate::{Action, Check, CheckSession, Connection, Verdict};

const NAME: &str = "dnsbl";

/// What the lookups found for one client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Score {
    pub total: i32,
    /// `zone*weight` of every list that counted.
    pub hits: Vec<String>,
    /// Zones that did not answer in time or failed.
    pub failed: Vec<String>,
}

/// Add up the answers: `answers[i]` is list `i`'s A records, `None` when the
/// lookup failed or timed out (NXDOMAIN is `Some(empty)`).
pub fn score(sites: &[DnsblSite], answers: &[Option<Vec<Ipv4Addr>>]) -> Score {
    let mut s = Score::default();
    for (site, ans) in sites.iter().zip(answers) {
        match ans {
            None => s.failed.push(site.zone.clone()),
            Some(addrs) if addrs.iter().any(|a| site.matches(*a)) => {
                s.total = s.total.saturating_add(site.weight);
                s.hits.push(format!("{}*{}", site.zone, site.weight));
            }
            Some(_) => {}
        }
    }
    s
}

/// The check.
pub struct Dnsbl {
    cfg: DnsblConfig,
    resolver: TokioResolver,
    allow: Arc<Allowlisted>,
}

impl Dnsbl {
    /// `allow`: where sessions at or under the allowlist threshold are
    /// recorded for the later checks.
    pub fn new(cfg: DnsblConfig, allow: Arc<Allowlisted>) -> Result<Self, dns::BadServer> {
        let resolver = dns::resolver(&cfg.dns_servers, cfg.postscreen_dnsbl_timeout)?;
        Ok(Self {
            cfg,
            resolver,
            allow,
        })
    }

    /// Whether `score` passes `postscreen_dnsbl_allowlist_threshold`.
    pub fn allowlisted(&self, score: i32) -> bool {
        let t = self.cfg.postscreen_dnsbl_allowlist_threshold;
        t < 0 && score <= t
    }

    /// Query every list for `ip` at once; waits at most the timeout.
    pub async fn lookup(&self, ip: IpAddr) -> Score {
        let sites = &self.cfg.postscreen_dnsbl_sites;
        let queries = sites.iter().map(|site| {
            let name = dns::dnsbl_name(ip, &site.zone);
            let resolver = &self.resolver;
            async move {
                match tokio::time::timeout(
                    self.cfg.postscreen_dnsbl_timeout,
                    resolver.ipv4_lookup(name.as_str()),
                )
                .await
                {
                    Ok(Ok(l)) => Some(l.iter().map(|a| a.0).collect()),
                    Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => Some(Vec::new()),
                    Ok(Err(e)) => {
                        tracing::debug!(zone = %site.zone, error = %e, "DNSBL lookup failed");
                        None
                    }
                    Err(_) => None,
                }
            }
        });
        let answers = futures::future::join_all(queries).await;
        score(sites, &answers)
    }

    fn verdict(&self, ip: IpAddr, s: &Score) -> Option<Verdict> {
        if s.total < self.cfg.postscreen_dnsbl_threshold {
            return None;
        }
        let zones: Vec<&str> = s
            .hits
            .iter()
            .map(|h| h.split('*').next().unwrap_or(h))
            .collect();
        let code = self.cfg.maps_rbl_reject_code;
        let text = format!(
            "Service unavailable; Client host [{ip}] blocked using {}",
            zones.join(", ")
        );
        let action = if (400..500).contains(&code) {
            Action::TempFail {
                code,
                enhanced: (4, 7, 1),
                text,
            }
        } else {
            Action::Reject {
                code,
                enhanced: (5, 7, 1),
                text,
            }
        };
        Some(Verdict::new(
            NAME,
            action,
            format!(
                "score {} >= {} ({})",
                s.total,
                self.cfg.postscreen_dnsbl_threshold,
                s.hits.join(" ")
            ),
        ))
    }
}

impl Check for Dnsbl {
    fn name(&self) -> &'static str {
        NAME
    }

    fn session(self: Arc<Self>, conn: &Connection) -> Box<dyn CheckSession> {
        Box::new(Session {
            check: self,
            session_id: conn.session_id.clone(),
            pending: None,
            score: None,
        })
    }
}

struct Session {
    check: Arc<Dnsbl>,
    session_id: String,
    pending: Option<JoinHandle<Score>>,
    score: Option<Score>,
}

impl Session {
    /// The score, waiting for the lookups if they are still running.
    async fn score(&mut self, conn: &Connection) -> Score {
        if let Some(s) = &self.score {
            return s.clone();
        }
        let s = match self.pending.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => Score::default(),
        };
        if s.total != 0 || !s.failed.is_empty() {
            tracing::info!(
                session = %conn.session_id,
                client = %conn.ip,
                score = s.total,
                hits = %s.hits.join(" "),
                failed = %s.failed.join(" "),
                "DNSBL score"
            );
        }
        if self.check.allowlisted(s.total) {
            tracing::info!(session = %conn.session_id, client = %conn.ip, score = s.total, "DNSBL allowlisted: helo and greylist skipped");
            self.check.allow.insert(&conn.session_id, s.total);
        }
        self.score = Some(s.clone());
        s
    }

    async fn decide(&mut self, conn: &Connection) -> Vec<Verdict> {
        if conn.trusted || conn.auth_user.is_some() {
            return Vec::new();
        }
        let s = self.score(conn).await;
        self.check.verdict(conn.ip, &s).into_iter().collect()
    }
}

#[async_trait::async_trait]
impl CheckSession for Session {
    async fn connect(&mut self, conn: &Connection) -> Vec<Verdict> {
        if conn.trusted || self.check.cfg.postscreen_dnsbl_sites.is_empty() {
            return Vec::new();
        }
        let check = self.check.clone();
        let ip = conn.ip;
        self.pending = Some(tokio::spawn(async move { check.lookup(ip).await }));
        match self.check.cfg.reject_stage {
            RejectStage::Connect => self.decide(conn).await,
            RejectStage::Rcpt => Vec::new(),
        }
    }

    async fn rcpt(&mut self, conn: &Connection, _sender: &str, _rcpt: &str) -> Vec<Verdict> {
        match self.check.cfg.reject_stage {
            RejectStage::Rcpt => self.decide(conn).await,
            RejectStage::Connect => Vec::new(),
        }
    }

    async fn close(&mut self) {
        if let Some(h) = self.pending.take() {
            h.abort();
        }
        self.check.allow.remove(&self.session_id);
    }
}

/// A session can end without `close` (the client hangs up, a timeout):
/// the lookups and the allowlist entry go with it anyway.
impl Drop for Session {
    fn drop(&mut self) {
        if let Some(h) = self.pending.take() {
            h.abort();
        }
        self.check.allow.remove(&self.session_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_session_leaves_no_allowlist_entry() {
        let allow = Arc::new(Allowlisted::default());
        let cfg = DnsblConfig {
            postscreen_dnsbl_allowlist_threshold: -1,
            dns_servers: vec!["127.0.0.1:9".into()],
            ..DnsblConfig::default()
        };
        let check = Arc::new(Dnsbl::new(cfg, allow.clone()).unwrap());
        assert!(check.allowlisted(-1) && check.allowlisted(-5) && !check.allowlisted(0));
        let conn = Connection {
            session_id: "s1".into(),
            ip: "192.0.2.1".parse().unwrap(),
            port: 1,
            role: crate::Role::Mx,
            trusted: false,
            helo: String::new(),
            tls: false,
            auth_user: None,
            hostname: "mx.example".into(),
        };
        let mut s = Session {
            check: check.clone(),
            session_id: "s1".into(),
            pending: Some(tokio::spawn(async {
                Score {
                    total: -2,
                    ..Score::default()
                }
            })),
            score: None,
        };
        assert_eq!(s.score(&conn).await.total, -2);
        assert_eq!(allow.get("s1"), Some(-2));
        // The client hung up: smtpd drops the session without close().
        drop(s);
        assert_eq!(allow.get("s1"), None);
    }

    #[test]
    fn scores() {
        let sites: Vec<DnsblSite> = [
            "bl.test=127.0.0.[2..11]*3",
            "weak.test*1",
            "wl.test=127.0.[0..255].[1..3]*-2",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let a = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
        // (answers, total, hits, failed)
        type Answers = Vec<Option<Vec<Ipv4Addr>>>;
        let cases: Vec<(Answers, i32, usize, usize)> = vec![
            (vec![Some(vec![]), Some(vec![]), Some(vec![])], 0, 0, 0),
            (
                vec![Some(vec![a("127.0.0.2")]), Some(vec![]), Some(vec![])],
                3,
                1,
                0,
            ),
            // Outside the filter: does not count.
            (
                vec![Some(vec![a("127.0.0.1")]), Some(vec![]), Some(vec![])],
                0,
                0,
                0,
            ),
            // Allow list lowers the score.
            (
                vec![
                    Some(vec![a("127.0.0.4")]),
                    Some(vec![a("127.0.0.2")]),
                    Some(vec![a("127.0.9.2")]),
                ],
                2,
                3,
                0,
            ),
            // A failed list counts 0 and is reported.
            (vec![None, Some(vec![a("127.0.0.2")]), None], 1, 1, 2),
        ];
        for (answers, total, hits, failed) in cases {
            let s = score(&sites, &answers);
            assert_eq!(
                (s.total, s.hits.len(), s.failed.len()),
                (total, hits, failed),
                "{answers:?}"
            );
        }
    }
}
