//! `[checks.flood]`, `[checks.dnsbl]`, `[checks.helo]`, `[checks.greylist]`:
//! client reputation and rate limits.
//!
//! Key names follow Postfix (`postscreen_*`, `smtpd_*`) and postgrey where
//! they have one; the checks themselves are in `postern-checks`
//! (`reputation`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{CheckRole, mx_only};

/// Longest DNS name (RFC 1035 2.3.4), the bound on a DNSBL zone.
pub const MAX_ZONE_LEN: usize = 253;

/// An SMTP reply code a check may refuse with: 4xx or 5xx.
fn refusal_code<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let code = u16::deserialize(d)?;
    if (400..600).contains(&code) {
        Ok(code)
    } else {
        Err(serde::de::Error::custom(format!(
            "{code} is not a refusal: use a 4xx or 5xx code"
        )))
    }
}

/// `dns_servers` entries: `ip`, `ip:port` or `[v6]:port`.
fn dns_servers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    for s in &v {
        if s.parse::<std::net::SocketAddr>().is_err() && s.parse::<std::net::IpAddr>().is_err() {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is not an IP address or IP:port"
            )));
        }
    }
    Ok(v)
}

/// `[checks.flood]`: pre-greeting talk, per-sender and per-user rates, tarpit.
///
/// Per-client-IP connection counts and rates are `[smtpd]`'s
/// (`smtpd_client_connection_count_limit`, `..._rate_limit`); networks in
/// `[smtpd] smtpd_client_event_limit_exceptions` (default `mynetworks`) are
/// exempt from everything here but the per-user rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodConfig {
    /// Run this check. Default `false`.
    pub enabled: bool,
    /// Listener roles it runs on. Default both: the per-user limits are for
    /// submission.
    pub roles: Vec<CheckRole>,
    /// Wait this long before the greeting; a client that talks first is
    /// refused with `554 5.5.1` (postscreen `greet_wait` with the `enforce`
    /// action). MX listeners only. Default `0s`: off.
    #[serde(with = "crate::duration")]
    pub greet_wait: Duration,
    /// Messages (MAIL FROM) per `rate_time_unit` per sender address; 0 = off.
    pub sender_message_rate_limit: u32,
    /// Recipients (RCPT TO) per `rate_time_unit` per sender address; 0 = off.
    pub sender_recipient_rate_limit: u32,
    /// Messages per `rate_time_unit` per authenticated user; 0 = off.
    pub user_message_rate_limit: u32,
    /// Recipients per `rate_time_unit` per authenticated user; 0 = off.
    pub user_recipient_rate_limit: u32,
    /// The sliding window of the rate limits. Default `1h`.
    #[serde(with = "crate::duration")]
    pub rate_time_unit: Duration,
    /// Reply code over a rate limit: 4xx (default 450, the client retries
    /// later) or 5xx; the enhanced code is `x.7.1`.
    #[serde(deserialize_with = "refusal_code")]
    pub rate_limit_reply_code: u16,
    /// Users and sender addresses exempt from the rate limits: a full
    /// address or user name, or `@domain`. Default none.
    pub exempt_users: Vec<String>,
    /// After this many error replies in a session, each further error reply
    /// is delayed by `smtpd_error_sleep_time` (Postfix, default 10).
    pub smtpd_soft_error_limit: u32,
    /// The tarpit delay (Postfix, default `1s`).
    #[serde(with = "crate::duration")]
    pub smtpd_error_sleep_time: Duration,
}

impl Default for FloodConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            roles: vec![CheckRole::Mx, CheckRole::Submission],
            greet_wait: Duration::ZERO,
            sender_message_rate_limit: 0,
            sender_recipient_rate_limit: 0,
            user_message_rate_limit: 0,
            user_recipient_rate_limit: 0,
            rate_time_unit: Duration::from_secs(3600),
            rate_limit_reply_code: 450,
            exempt_users: Vec::new(),
            smtpd_soft_error_limit: 10,
            smtpd_error_sleep_time: Duration::from_secs(1),
        }
    }
}

/// Where the DNSBL verdict is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectStage {
    /// Instead of the greeting (`554 5.7.1`, then the connection closes).
    Connect,
    /// At every RCPT TO, after a normal greeting: what Postfix does
    /// (`reject_rbl_client`, postscreen `enforce`); the client's log shows
    /// the reason and ours the sender and recipient.
    Rcpt,
}

/// `[checks.dnsbl]`: DNS block and allow lists with weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsblConfig {
    /// Run this check. Default `false`.
    pub enabled: bool,
    /// Listener roles it runs on.
    pub roles: Vec<CheckRole>,
    /// Lists, postscreen syntax `zone[=filter][*weight]`: filter is an IPv4
    /// pattern whose octets are `n`, `[n..m]` or `[n;m;...]`; weight
    /// defaults to 1, negative for allow lists (DNSWL).
    /// Example: `["zen.spamhaus.org=127.0.0.[2..11]*3",
    /// "list.dnswl.org=127.0.[0..255].[1..3]*-2"]`. Default none.
    pub postscreen_dnsbl_sites: Vec<DnsblSite>,
    /// Refuse when the summed weight of the lists that list the client is
    /// at least this. Default 1.
    pub postscreen_dnsbl_threshold: i32,
    /// A client whose score is at most this (a negative number: on allow
    /// lists) skips the `helo` and `greylist` checks (Postfix
    /// `postscreen_dnsbl_allowlist_threshold`). Default 0: off.
    pub postscreen_dnsbl_allowlist_threshold: i32,
    /// Time to wait for the lookups (all run in parallel); lists that have
    /// not answered count 0. Default `10s`.
    #[serde(with = "crate::duration")]
    pub postscreen_dnsbl_timeout: Duration,
    /// `"rcpt"` (default) or `"connect"`: see [`RejectStage`].
    pub reject_stage: RejectStage,
    /// Reply code of the refusal (Postfix `maps_rbl_reject_code`, 554).
    #[serde(deserialize_with = "refusal_code")]
    pub maps_rbl_reject_code: u16,
    /// DNS servers (`"ip"` or `"ip:port"`). Default empty: the system
    /// resolver configuration (`/etc/resolv.conf`).
    #[serde(deserialize_with = "dns_servers")]
    pub dns_servers: Vec<String>,
}

impl Default for DnsblConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            roles: mx_only(),
            postscreen_dnsbl_sites: Vec::new(),
            postscreen_dnsbl_threshold: 1,
            postscreen_dnsbl_allowlist_threshold: 0,
            postscreen_dnsbl_timeout: Duration::from_secs(10),
            reject_stage: RejectStage::Rcpt,
            maps_rbl_reject_code: 554,
            dns_servers: Vec::new(),
        }
    }
}

/// One octet pattern of a DNSBL reply filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OctetSet(Vec<(u8, u8)>);

impl OctetSet {
    pub fn contains(&self, v: u8) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= v && v <= hi)
    }
}

/// One entry of `postscreen_dnsbl_sites`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsblSite {
    /// The zone, lower case, without a trailing dot.
    pub zone: String,
    /// Octet patterns the A record must match; `None` = any answer.
    pub filter: Option<[OctetSet; 4]>,
    pub weight: i32,
    /// The entry as written (for logs and serialisation).
    pub text: String,
}

impl DnsblSite {
    /// Whether a reply address counts.
    pub fn matches(&self, a: std::net::Ipv4Addr) -> bool {
        match &self.filter {
            None => true,
            Some(f) => a.octets().iter().zip(f).all(|(o, set)| set.contains(*o)),
        }
    }
}

fn parse_octet(s: &str) -> Result<OctetSet, String> {
    let num = |t: &str| {
        t.trim()
            .parse::<u8>()
            .map_err(|_| format!("{t:?} is not a number 0..255"))
    };
    let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        let n = num(s)?;
        return Ok(OctetSet(vec![(n, n)]));
    };
    let mut out = Vec::new();
    for part in inner.split(';') {
        match part.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range {part:?} is empty"));
                }
                out.push((a, b));
            }
            None => {
                let n = num(part)?;
                out.push((n, n));
            }
        }
    }
    Ok(OctetSet(out))
}

/// Split a filter at the dots outside `[...]`.
fn split_octets(f: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0u32, 0);
    for (i, c) in f.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                out.push(&f[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&f[start..]);
    out
}

impl FromStr for DnsblSite {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (rest, weight) = match t.rsplit_once('*') {
            Some((r, w)) => (
                r,
                w.trim()
                    .parse::<i32>()
                    .map_err(|_| format!("{text:?}: weight {w:?} is not an integer"))?,
            ),
            None => (t, 1),
        };
        let (zone, filter) = match rest.split_once('=') {
            Some((z, f)) => {
                let octets = split_octets(f);
                if octets.len() != 4 {
                    return Err(format!(
                        "{text:?}: filter {f:?} must have four octets, like 127.0.0.[2..11]"
                    ));
                }
                let sets = octets
                    .iter()
                    .map(|o| parse_octet(o))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{text:?}: {e}"))?;
                let sets: [OctetSet; 4] = sets.try_into().map_err(|_| "four octets".to_string())?;
                (z, Some(sets))
            }
            None => (rest, None),
        };
        let zone = zone.trim().trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if zone.len() > MAX_ZONE_LEN || !zone.contains('.') || !zone.split('.').all(label_ok) {
            return Err(format!("{text:?}: {zone:?} is not a DNS zone"));
        }
        Ok(DnsblSite {
            zone,
            filter,
            weight,
            text: t.to_string(),
        })
    }
}

impl fmt::Display for DnsblSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for DnsblSite {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for DnsblSite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What to do with a client without forward-confirmed reverse DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FcrdnsAction {
    /// Do not look.
    Off,
    /// Accept; add `X-Postern-FCrDNS: fail ...` to its messages.
    Header,
    /// Refuse (`unknown_client_hostname_reject_code`, Postfix
    /// `reject_unknown_client_hostname`); a DNS failure is always 450.
    Reject,
}

/// `[checks.helo]`: forward-confirmed reverse DNS and HELO sanity.
///
/// Refusals are given at RCPT TO (Postfix `smtpd_delay_reject = yes`): the
/// client sees them where it reports them, and our log has the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeloConfig {
    /// Run this check. Default `false`.
    pub enabled: bool,
    /// Listener roles it runs on.
    pub roles: Vec<CheckRole>,
    /// Refuse a HELO that is not a valid host name or address literal
    /// (`501 5.5.2`, Postfix `reject_invalid_helo_hostname`). Default true.
    pub reject_invalid_helo_hostname: bool,
    /// Refuse a HELO host name without a dot (`504 5.5.2`, Postfix
    /// `reject_non_fqdn_helo_hostname`). Default true.
    pub reject_non_fqdn_helo_hostname: bool,
    /// Refuse a bare IP address as HELO (RFC 5321 wants `[192.0.2.1]`):
    /// `550 5.7.1`. Default true.
    pub reject_unbracketed_ip_helo: bool,
    /// Refuse a HELO naming us (`myhostname`, `mydestination`, a listener
    /// address): `550 5.7.1`. Default true.
    pub reject_own_helo: bool,
    /// Forward-confirmed reverse DNS of the client: `"off"`, `"header"`
    /// (default) or `"reject"`.
    pub unknown_client_hostname: FcrdnsAction,
    /// Reply code for `unknown_client_hostname = "reject"` when the name
    /// does not confirm (Postfix `unknown_client_hostname_reject_code`,
    /// 450); lookups that fail temporarily always get 450.
    #[serde(deserialize_with = "refusal_code")]
    pub unknown_client_hostname_reject_code: u16,
    /// Time for the PTR and address lookups. Default `10s`.
    #[serde(with = "crate::duration")]
    pub dns_timeout: Duration,
    /// DNS servers (`"ip"` or `"ip:port"`). Default empty: the system
    /// resolver configuration.
    #[serde(deserialize_with = "dns_servers")]
    pub dns_servers: Vec<String>,
}

impl Default for HeloConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            roles: mx_only(),
            reject_invalid_helo_hostname: true,
            reject_non_fqdn_helo_hostname: true,
            reject_unbracketed_ip_helo: true,
            reject_own_helo: true,
            unknown_client_hostname: FcrdnsAction::Header,
            unknown_client_hostname_reject_code: 450,
            dns_timeout: Duration::from_secs(10),
            dns_servers: Vec::new(),
        }
    }
}

/// `[checks.greylist]`: greylisting by (client network, sender, recipient)
/// triplet, postgrey's way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GreylistConfig {
    /// Run this check. Default `false`.
    pub enabled: bool,
    /// Listener roles it runs on.
    pub roles: Vec<CheckRole>,
    /// A new triplet is refused (`450 4.7.1`) for this long. Default `300s`.
    #[serde(with = "crate::duration")]
    pub delay: Duration,
    /// A retry must come within this time after the first attempt, else the
    /// triplet starts over. Default `2d`.
    #[serde(with = "crate::duration")]
    pub retry_window: Duration,
    /// Passed triplets and whitelisted clients not seen for this long are
    /// forgotten. Default `35d`.
    #[serde(with = "crate::duration")]
    pub max_age: Duration,
    /// After this many successful retries a client network is whitelisted
    /// (no more delays for any sender or recipient); 0 = never. Default 5.
    pub auto_whitelist_clients: u32,
    /// The client network of a triplet: IPv4 prefix length. Default 24.
    pub ipv4_prefix: u8,
    /// IPv6 prefix length. Default 64.
    pub ipv6_prefix: u8,
    /// The SQLite database. Default empty: `<state_directory>/greylist.sqlite`.
    pub database: PathBuf,
}

impl Default for GreylistConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            roles: mx_only(),
            delay: Duration::from_secs(300),
            retry_window: Duration::from_secs(2 * 86_400),
            max_age: Duration::from_secs(35 * 86_400),
            auto_whitelist_clients: 5,
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            database: PathBuf::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnsbl_site_syntax() {
        // (text, zone, weight, probes that match, probes that do not)
        type Case<'a> = (&'a str, &'a str, i32, &'a [&'a str], &'a [&'a str]);
        let ok: &[Case] = &[
            (
                "zen.spamhaus.org",
                "zen.spamhaus.org",
                1,
                &["127.0.0.2", "10.1.2.3"],
                &[],
            ),
            ("bl.test*3", "bl.test", 3, &["127.0.0.2"], &[]),
            (
                "BL.Test.=127.0.0.2",
                "bl.test",
                1,
                &["127.0.0.2"],
                &["127.0.0.3"],
            ),
            (
                "zen.spamhaus.org=127.0.0.[2..11]*3",
                "zen.spamhaus.org",
                3,
                &["127.0.0.2", "127.0.0.11"],
                &["127.0.0.1", "127.0.0.12", "127.0.1.2"],
            ),
            (
                "list.dnswl.org=127.0.[0..255].[1..3]*-2",
                "list.dnswl.org",
                -2,
                &["127.0.5.1", "127.0.255.3"],
                &["127.0.5.0", "127.0.5.4", "127.0.0.255"],
            ),
            (
                "b.test=127.0.0.[2;4;6..7]",
                "b.test",
                1,
                &["127.0.0.4", "127.0.0.7"],
                &["127.0.0.5"],
            ),
        ];
        for (text, zone, weight, yes, no) in ok {
            let s: DnsblSite = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(s.zone, *zone, "{text}");
            assert_eq!(s.weight, *weight, "{text}");
            for p in *yes {
                assert!(s.matches(p.parse().unwrap()), "{text} should match {p}");
            }
            for p in *no {
                assert!(
                    !s.matches(p.parse().unwrap()),
                    "{text} should not match {p}"
                );
            }
        }
        for bad in [
            "",
            "nodot",
            "bl.test*x",
            "bl.test=127.0.0",
            "bl.test=127.0.0.256",
            "bl.test=127.0.0.[5..2]",
            "bl.test=127.0.0.[2..",
            "bad zone.test",
            "bl..test",
        ] {
            assert!(bad.parse::<DnsblSite>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sites_round_trip_through_toml() {
        #[derive(Serialize, Deserialize)]
        struct W {
            checks: DnsblConfig,
        }
        let w: W = toml::from_str(
            "[checks]\npostscreen_dnsbl_sites = [\"bl.test=127.0.0.[2..11]*2\"]\nreject_stage = \"connect\"\n",
        )
        .unwrap();
        assert_eq!(w.checks.postscreen_dnsbl_sites[0].weight, 2);
        assert_eq!(w.checks.reject_stage, RejectStage::Connect);
        let text = toml::to_string(&w).unwrap();
        assert!(text.contains("bl.test=127.0.0.[2..11]*2"), "{text}");
        for bad in [
            "postscreen_dnsbl_sites = [\"x\"]",
            "maps_rbl_reject_code = 250",
            "maps_rbl_reject_code = 600",
            "dns_servers = [\"ns.example\"]",
        ] {
            assert!(
                toml::from_str::<W>(&format!("[checks]\n{bad}\n")).is_err(),
                "{bad}"
            );
        }
        let ok: W = toml::from_str(
            "[checks]\nmaps_rbl_reject_code = 450\ndns_servers = [\"192.0.2.53\", \"[2001:db8::53]:5353\"]\n",
        )
        .unwrap();
        assert_eq!(ok.checks.maps_rbl_reject_code, 450);
    }
}
