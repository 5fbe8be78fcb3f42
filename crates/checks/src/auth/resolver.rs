//! The DNS resolver of the authentication checks and organizational
//! domains (the Public Suffix List).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use mail_auth::MessageAuthenticator;
use postern_common::Config;
use publicsuffix::Psl;

/// Bound on one DNS query (RFC 7208 4.6.4 asks for at least 20 s over a
/// whole SPF evaluation; each of its at most 10 lookups gets this).
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the Public Suffix List file (today's is ~250 KB).
const MAX_PSL_FILE: u64 = 4 * 1024 * 1024;

/// Parse one `queue.dns_servers` entry: `ip` (port 53) or `ip:port` /
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

/// The resolver of `queue.dns_servers` (empty: `/etc/resolv.conf`).
pub fn resolver_from_config(cfg: &Config) -> anyhow::Result<MessageAuthenticator> {
    let mut servers = Vec::new();
    for s in &cfg.queue.dns_servers {
        servers.push(parse_dns_server(s).map_err(|e| anyhow::anyhow!("queue.dns_servers: {e}"))?);
    }
    let mut opts = ResolverOpts::default();
    opts.timeout = DNS_TIMEOUT;
    opts.attempts = 2;
    // Absolute names only: no search list for mail domains.
    opts.ndots = 0;
    let builder = if servers.is_empty() {
        match TokioResolver::builder_tokio() {
            Ok(b) => b,
            Err(e) => {
                // Start anyway: every lookup then fails temporarily, which
                // the checks record as temperror (never a 5xx).
                tracing::error!(error = %e, "cannot read the system DNS configuration: SPF/DKIM/DMARC results will be temperror");
                TokioResolver::builder_with_config(
                    ResolverConfig::new(),
                    TokioConnectionProvider::default(),
                )
            }
        }
    } else {
        let mut rc = ResolverConfig::new();
        for a in servers {
            rc.add_name_server(NameServerConfig::new(a, Protocol::Udp));
            rc.add_name_server(NameServerConfig::new(a, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(rc, TokioConnectionProvider::default())
    };
    Ok(MessageAuthenticator(builder.with_options(opts).build()))
}

/// Organizational domains (RFC 7489 3.2) from the Public Suffix List, or
/// the last two labels when no list could be read.
#[derive(Default)]
pub struct OrgDomains {
    list: Option<publicsuffix::List>,
}

impl OrgDomains {
    /// Read the list at `path`; a missing or unreadable file is logged and
    /// the two-label fallback used.
    pub fn load(path: &Path) -> Self {
        let read = || -> Result<publicsuffix::List, String> {
            let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
            if meta.len() > MAX_PSL_FILE {
                return Err(format!("larger than {MAX_PSL_FILE} bytes"));
            }
            let text = std::fs::read(path).map_err(|e| e.to_string())?;
            publicsuffix::List::from_bytes(&text).map_err(|e| e.to_string())
        };
        match read() {
            Ok(list) => Self { list: Some(list) },
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "public suffix list not loaded: organizational domains are the last two labels");
                Self { list: None }
            }
        }
    }

    /// From a list text (tests).
    pub fn from_text(text: &str) -> Self {
        Self {
            list: publicsuffix::List::from_bytes(text.as_bytes()).ok(),
        }
    }

    /// The organizational domain of `name` (a suffix of it).
    pub fn org<'a>(&self, name: &'a str) -> &'a str {
        let name = name.trim_end_matches('.');
        if let Some(list) = &self.list
            && let Some(d) = list.domain(name.to_ascii_lowercase().as_bytes())
        {
            let n = d.as_bytes().len();
            if n <= name.len() {
                return &name[name.len() - n..];
            }
        }
        two_labels(name)
    }
}

fn two_labels(name: &str) -> &str {
    let mut dots = name.rmatch_indices('.');
    dots.next();
    match dots.next() {
        Some((i, _)) => &name[i + 1..],
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_server_forms() {
        assert_eq!(
            parse_dns_server("127.0.0.1").unwrap(),
            "127.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_dns_server("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_dns_server("[::1]:53").unwrap(),
            "[::1]:53".parse().unwrap()
        );
        assert!(parse_dns_server("dns.example").is_err());
    }

    #[test]
    fn organizational_domains() {
        let none = OrgDomains::default();
        assert_eq!(none.org("a.b.example.org"), "example.org");
        assert_eq!(none.org("example.org"), "example.org");
        assert_eq!(none.org("org"), "org");
        let psl = OrgDomains::from_text(
            "// ===BEGIN ICANN DOMAINS===\norg\nuk\nco.uk\n// ===END ICANN DOMAINS===\n",
        );
        assert_eq!(psl.org("mail.example.co.uk"), "example.co.uk");
        assert_eq!(psl.org("Mail.Example.ORG"), "Example.ORG");
        // Not under any listed suffix: the list's default rule "*".
        assert_eq!(psl.org("a.b.example.test"), "example.test");
    }

    #[test]
    fn debian_list_when_installed() {
        let p = Path::new("/usr/share/publicsuffix/public_suffix_list.dat");
        if !p.exists() {
            return;
        }
        let o = OrgDomains::load(p);
        assert!(o.list.is_some());
        assert_eq!(o.org("a.b.example.co.uk"), "example.co.uk");
    }
}
