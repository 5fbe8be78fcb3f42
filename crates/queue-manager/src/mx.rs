//! Next-hop lookup for SMTP delivery with hickory-resolver: MX records in
//! preference order (equal preferences shuffled, RFC 5321 5.1), the domain's
//! own A/AAAA records when it has no MX (the "implicit MX"), null MX
//! (RFC 7505: a single `MX 0 .`) as a permanent failure. When this host is
//! itself one of the domain's MX hosts (a backup MX), only the hosts of
//! better (lower) preference are used, as in Postfix; when it is the best
//! one, the mail loops back to itself (`554 5.4.6`).
//!
//! The resolver reads the system configuration (`/etc/resolv.conf`) unless
//! `queue.dns_servers` names servers (UDP and TCP to each, in order).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use rand::seq::SliceRandom;

/// Bound on the MX hosts tried for one domain (Postfix
/// `smtp_mx_address_limit` is 5 addresses; hosts here).
pub const MAX_MX_HOSTS: usize = 10;
/// Bound on the addresses tried for one host.
pub const MAX_ADDRS_PER_HOST: usize = 4;

/// Why no next hop was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The domain publishes a null MX (RFC 7505): it accepts no mail.
    #[error("556 5.1.10 domain {0} accepts no mail (null MX)")]
    NullMx(String),
    /// The name does not exist, or has neither MX nor address records.
    #[error("550 5.1.2 host or domain name not found: {0}")]
    NotFound(String),
    /// This host is the best MX of the domain: the mail would come back.
    #[error("554 5.4.6 mail for {0} loops back to myself")]
    Loop(String),
    /// The lookup failed temporarily (timeout, SERVFAIL, no server).
    #[error("451 4.4.3 DNS lookup of {name} failed: {reason}")]
    Temporary { name: String, reason: String },
}

impl DnsError {
    pub fn is_permanent(&self) -> bool {
        !matches!(self, DnsError::Temporary { .. })
    }
}

/// One host to connect to, with its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Host name (for logs, TLS SNI and verification).
    pub name: String,
    pub addrs: Vec<IpAddr>,
}

/// Order MX records: ascending preference, equal preferences shuffled.
/// A null MX (`.`) set is reported as `None`; `.` entries among real ones
/// are dropped.
pub fn order_mx<R: rand::Rng>(mut records: Vec<(u16, String)>, rng: &mut R) -> Option<Vec<String>> {
    let is_root = |h: &str| h.is_empty() || h == ".";
    if !records.is_empty() && records.iter().all(|(_, h)| is_root(h)) {
        return None;
    }
    records.retain(|(_, h)| !is_root(h));
    records.shuffle(rng);
    // Stable sort keeps the shuffled order within each preference.
    records.sort_by_key(|(p, _)| *p);
    let mut hosts: Vec<String> = Vec::new();
    for (_, h) in records {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    hosts.truncate(MAX_MX_HOSTS);
    Some(hosts)
}

/// Backup-MX cut-off: when one of `own` (our host names, lower case) is
/// among the MX `records`, keep only the records of lower preference than
/// our best one (RFC 5321 5.1: an MX never relays to hosts of its own or
/// worse preference). `None` = we are the best MX: nothing is left.
pub fn cut_at_self(records: Vec<(u16, String)>, own: &[String]) -> Option<Vec<(u16, String)>> {
    let norm = |h: &str| h.trim_end_matches('.').to_ascii_lowercase();
    let mine = records
        .iter()
        .filter(|(_, h)| own.contains(&norm(h)))
        .map(|(p, _)| *p)
        .min();
    match mine {
        None => Some(records),
        Some(p) => {
            let better: Vec<_> = records.into_iter().filter(|(q, _)| *q < p).collect();
            (!better.is_empty()).then_some(better)
        }
    }
}

/// Parse `queue.dns_servers` entries: `ip` (port 53) or `ip:port` /
/// `[v6]:port`.
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!("{s:?}: not an IP address or IP:port"))
}

/// The resolver.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    /// Our own host names (lower case), for the backup-MX cut-off.
    own_names: Vec<String>,
}

impl Dns {
    /// `servers` empty = the system configuration.
    pub fn new(servers: &[SocketAddr]) -> Result<Self, String> {
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        // Absolute names only: no search list for mail domains.
        opts.ndots = 0;
        let builder = if servers.is_empty() {
            match TokioResolver::builder_tokio() {
                Ok(b) => b,
                // No usable /etc/resolv.conf: start anyway; remote lookups
                // fail temporarily (mail is deferred) until it is fixed.
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the system DNS configuration: remote mail will be deferred");
                    TokioResolver::builder_with_config(
                        ResolverConfig::new(),
                        TokioConnectionProvider::default(),
                    )
                }
            }
        } else {
            let mut cfg = ResolverConfig::new();
            for &a in servers {
                cfg.add_name_server(NameServerConfig::new(a, Protocol::Udp));
                cfg.add_name_server(NameServerConfig::new(a, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(cfg, TokioConnectionProvider::default())
        };
        let mut builder = builder;
        *builder.options_mut() = opts;
        Ok(Self {
            resolver: builder.build(),
            own_names: Vec::new(),
        })
    }

    /// Name this host (`global.myhostname`) for the backup-MX cut-off.
    pub fn with_own_names(mut self, names: &[String]) -> Self {
        self.own_names = names
            .iter()
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        self
    }

    fn fqdn(name: &str) -> String {
        if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        }
    }

    /// Addresses of `host` (A and AAAA), at most [`MAX_ADDRS_PER_HOST`].
    pub async fn host(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(vec![ip]);
        }
        match self.resolver.lookup_ip(Self::fqdn(host)).await {
            Ok(l) => {
                let mut v: Vec<IpAddr> = l.iter().collect();
                v.truncate(MAX_ADDRS_PER_HOST);
                if v.is_empty() {
                    Err(DnsError::NotFound(host.to_string()))
                } else {
                    Ok(v)
                }
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                Err(DnsError::NotFound(host.to_string()))
            }
            Err(e) => Err(DnsError::Temporary {
                name: host.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// MX host names of `domain` in delivery order; the domain itself when it
    /// has no MX record.
    pub async fn mx(&self, domain: &str) -> Result<Vec<String>, DnsError> {
        match self.resolver.mx_lookup(Self::fqdn(domain)).await {
            Ok(l) => {
                let records: Vec<(u16, String)> = l
                    .iter()
                    .map(|mx| {
                        let n = mx.exchange();
                        let s = if n.is_root() {
                            ".".to_string()
                        } else {
                            n.to_utf8()
                        };
                        (mx.preference(), s)
                    })
                    .collect();
                if records.is_empty() {
                    return Ok(vec![domain.to_ascii_lowercase()]);
                }
                let records = cut_at_self(records, &self.own_names)
                    .ok_or_else(|| DnsError::Loop(domain.to_string()))?;
                order_mx(records, &mut rand::thread_rng())
                    .ok_or_else(|| DnsError::NullMx(domain.to_string()))
            }
            Err(e) if e.is_nx_domain() => Err(DnsError::NotFound(domain.to_string())),
            // No MX: the domain's own address records (RFC 5321 5.1).
            Err(e) if e.is_no_records_found() => Ok(vec![domain.to_ascii_lowercase()]),
            Err(e) => Err(DnsError::Temporary {
                name: domain.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Hosts with addresses for `domain` via MX. A host whose lookup fails
    /// is skipped; when none resolves, the first error is returned.
    pub async fn mx_hosts(&self, domain: &str) -> Result<Vec<Host>, DnsError> {
        let names = self.mx(domain).await?;
        let mut out = Vec::new();
        let mut first_err = None;
        for name in names {
            match self.host(&name).await {
                Ok(addrs) => out.push(Host { name, addrs }),
                Err(e) => {
                    tracing::warn!(domain, mx = %name, error = %e, "MX host does not resolve");
                    first_err.get_or_insert(e);
                }
            }
        }
        if out.is_empty() {
            // A name that does not resolve is a temporary problem of the
            // MX host (Postfix defers), unless it was the domain itself.
            return Err(match first_err {
                Some(DnsError::NotFound(n)) if n.eq_ignore_ascii_case(domain) => {
                    DnsError::NotFound(n)
                }
                Some(DnsError::NotFound(n)) => DnsError::Temporary {
                    name: n,
                    reason: "MX host has no address".into(),
                },
                Some(e) => e,
                None => DnsError::NotFound(domain.to_string()),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn recs(v: &[(u16, &str)]) -> Vec<(u16, String)> {
        v.iter().map(|(p, h)| (*p, h.to_string())).collect()
    }

    #[test]
    fn mx_sorted_by_preference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let o = order_mx(
            recs(&[(30, "c.test."), (10, "a.test."), (20, "B.test")]),
            &mut rng,
        )
        .unwrap();
        assert_eq!(o, ["a.test", "b.test", "c.test"]);
    }

    #[test]
    fn equal_preferences_are_shuffled_but_stay_in_their_rank() {
        let mut seen_first = std::collections::HashSet::new();
        for seed in 0..64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let o = order_mx(
                recs(&[
                    (5, "z.test"),
                    (10, "a.test"),
                    (10, "b.test"),
                    (10, "c.test"),
                ]),
                &mut rng,
            )
            .unwrap();
            assert_eq!(o[0], "z.test");
            let mut rest = o[1..].to_vec();
            seen_first.insert(rest[0].clone());
            rest.sort();
            assert_eq!(rest, ["a.test", "b.test", "c.test"]);
        }
        assert_eq!(seen_first.len(), 3, "equal preferences never shuffled");
    }

    #[test]
    fn null_mx_and_duplicates() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(order_mx(recs(&[(0, ".")]), &mut rng), None);
        // A "." among real records is ignored.
        assert_eq!(
            order_mx(recs(&[(0, "."), (10, "mx.test")]), &mut rng).unwrap(),
            ["mx.test"]
        );
        assert_eq!(
            order_mx(recs(&[(10, "mx.test."), (20, "MX.test")]), &mut rng).unwrap(),
            ["mx.test"]
        );
    }

    #[test]
    fn backup_mx_uses_only_better_hosts() {
        let own = vec!["mx2.example".to_string()];
        type Records<'a> = &'a [(u16, &'a str)];
        let table: &[(Records, Option<Records>)] = &[
            // Not an MX of the domain: unchanged.
            (
                &[(10, "a.test"), (20, "b.test")],
                Some(&[(10, "a.test"), (20, "b.test")]),
            ),
            // Backup MX at 20: only the better one is left, equal and worse go.
            (
                &[
                    (10, "mx1.example."),
                    (20, "MX2.example."),
                    (20, "peer.test"),
                    (30, "c.test"),
                ],
                Some(&[(10, "mx1.example.")]),
            ),
            // Best MX: nothing left (a loop).
            (&[(10, "mx2.example"), (20, "mx3.example")], None),
            // Listed twice: the best of our preferences counts.
            (
                &[(5, "a.test"), (10, "mx2.example"), (30, "mx2.example")],
                Some(&[(5, "a.test")]),
            ),
        ];
        for (records, want) in table {
            let got = cut_at_self(recs(records), &own);
            assert_eq!(got, want.map(recs), "{records:?}");
        }
        assert_eq!(
            DnsError::Loop("example".into()).to_string(),
            "554 5.4.6 mail for example loops back to myself"
        );
        assert!(DnsError::Loop("x".into()).is_permanent());
    }

    #[test]
    fn dns_server_syntax() {
        assert_eq!(
            parse_dns_server("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_dns_server("::1").unwrap(),
            "[::1]:53".parse().unwrap()
        );
        assert!(parse_dns_server("ns.example").is_err());
    }
}
