//! The resolver shared by `dnsbl` and `helo` (hickory-resolver), and the
//! query names they build.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;

/// A configuration error in a `dns_servers` entry.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: not an IP address or IP:port")]
pub struct BadServer(pub String);

/// Parse a `dns_servers` entry: `ip` (port 53), `ip:port` or `[v6]:port`.
pub fn parse_server(s: &str) -> Result<SocketAddr, BadServer> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(BadServer(s.to_string()))
}

/// A resolver for `servers` (empty: the system configuration), one try per
/// server within `timeout`.
pub fn resolver(servers: &[String], timeout: Duration) -> Result<TokioResolver, BadServer> {
    let addrs = servers
        .iter()
        .map(|s| parse_server(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut opts = ResolverOpts::default();
    opts.timeout = timeout;
    opts.attempts = 1;
    // Absolute names only.
    opts.ndots = 0;
    let mut builder = if addrs.is_empty() {
        match TokioResolver::builder_tokio() {
            Ok(b) => b,
            Err(e) => {
                // Start anyway: lookups fail (and count as "not listed" /
                // "temporary failure") until the system configuration is fixed.
                tracing::error!(error = %e, "cannot read the system DNS configuration: DNS checks will fail");
                TokioResolver::builder_with_config(
                    ResolverConfig::new(),
                    TokioConnectionProvider::default(),
                )
            }
        }
    } else {
        let mut cfg = ResolverConfig::new();
        for &a in &addrs {
            cfg.add_name_server(NameServerConfig::new(a, Protocol::Udp));
            cfg.add_name_server(NameServerConfig::new(a, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(cfg, TokioConnectionProvider::default())
    };
    *builder.options_mut() = opts;
    Ok(builder.build())
}

/// An IPv4-mapped IPv6 address as IPv4; others unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The DNSBL query name of `ip` under `zone` (RFC 5782 2.1 and 2.4):
/// reversed octets for IPv4, reversed nibbles for IPv6; absolute.
pub fn dnsbl_name(ip: IpAddr, zone: &str) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(64 + zone.len() + 1);
            for b in v6.octets().iter().rev() {
                s.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
                s.push('.');
                s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
                s.push('.');
            }
            s.push_str(zone);
            s.push('.');
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names() {
        let cases = [
            ("192.0.2.99", "bl.test", "99.2.0.192.bl.test."),
            ("::ffff:127.0.0.2", "bl.test", "2.0.0.127.bl.test."),
            (
                "2001:db8:1:2:3:4:567:89ab",
                "bl.test",
                "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test.",
            ),
        ];
        for (ip, zone, want) in cases {
            assert_eq!(dnsbl_name(ip.parse().unwrap(), zone), want, "{ip}");
        }
    }

    #[test]
    fn servers() {
        assert_eq!(
            parse_server("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(parse_server("::1").unwrap().port(), 53);
        assert!(parse_server("ns.example").is_err());
    }
}
