//! `[[checks.milter]]` and `[checks.clamav]`: external content scanners.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{CheckRole, mx_only};

/// Where a scanner listens: `unix:/path` or `inet:host:port` (the Postfix
/// `smtpd_milters` notation; an IPv6 host goes in brackets:
/// `inet:[::1]:8891`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanSocket {
    Unix(PathBuf),
    /// `host:port` as written (resolved when connecting).
    Inet(String),
}

impl ScanSocket {
    /// Parse `unix:/path` or `inet:host:port`; the error says what is
    /// accepted.
    pub fn parse(s: &str) -> Result<Self, String> {
        let usage = "use unix:/path/to/socket or inet:host:port";
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{s:?}: the unix socket path must be absolute ({usage})"
                ));
            }
            return Ok(ScanSocket::Unix(PathBuf::from(path)));
        }
        if let Some(hp) = s.strip_prefix("inet:") {
            let (host, port) = hp
                .rsplit_once(':')
                .ok_or_else(|| format!("{s:?}: no port ({usage})"))?;
            let host_ok = !host.is_empty()
                && (host.starts_with('[') && host.ends_with(']') || !host.contains(':'));
            if !host_ok || port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
                return Err(format!("{s:?}: not host:port ({usage})"));
            }
            return Ok(ScanSocket::Inet(hp.to_string()));
        }
        Err(format!("{s:?}: {usage}"))
    }
}

impl std::fmt::Display for ScanSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanSocket::Unix(p) => write!(f, "unix:{}", p.display()),
            ScanSocket::Inet(hp) => write!(f, "inet:{hp}"),
        }
    }
}

impl Serialize for ScanSocket {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ScanSocket {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let s = String::deserialize(de)?;
        ScanSocket::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `milter_default_action`: what happens when a milter is down, times out
/// or breaks the protocol (Postfix's names; default `tempfail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MilterDefaultAction {
    /// Go on as if the milter were not configured.
    Accept,
    /// `451 4.7.1`: the client retries later.
    #[default]
    Tempfail,
    /// `550 5.7.1`.
    Reject,
    /// Accept the message into the hold queue.
    Quarantine,
}

/// `[[checks.milter]]`: one milter (Sendmail/Postfix milter protocol,
/// version 6). Its timeouts are Postfix's `milter_*_timeout` and default to
/// the same values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MilterConfig {
    /// Run this milter. Default `true`: listing a milter turns it on.
    pub enabled: bool,
    /// Listener roles it runs on. Default `["mx"]`.
    pub roles: Vec<CheckRole>,
    /// Name in logs and verdict reasons; default: the socket.
    pub name: String,
    /// `unix:/path` or `inet:host:port`. Required.
    pub socket: Option<ScanSocket>,
    /// Connecting and option negotiation (`milter_connect_timeout`, 30s).
    #[serde(with = "crate::duration")]
    pub connect_timeout: Duration,
    /// Each SMTP command and its reply (`milter_command_timeout`, 30s).
    #[serde(with = "crate::duration")]
    pub command_timeout: Duration,
    /// Sending the message and waiting for the end-of-message reply
    /// (`milter_content_timeout`, 300s).
    #[serde(with = "crate::duration")]
    pub content_timeout: Duration,
    /// What happens when the milter is down or misbehaves
    /// (`milter_default_action`): accept, tempfail (default), reject,
    /// quarantine.
    pub default_action: MilterDefaultAction,
}

impl Default for MilterConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            roles: mx_only(),
            name: String::new(),
            socket: None,
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(30),
            content_timeout: Duration::from_secs(300),
            default_action: MilterDefaultAction::Tempfail,
        }
    }
}

/// `[checks.clamav] infected_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InfectedAction {
    /// `554 5.7.1` naming the virus (default).
    #[default]
    Reject,
    /// Accept into the hold queue (quarantine) for review.
    Hold,
}

/// `[checks.clamav] on_error`: what happens when clamd cannot scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanErrorAction {
    /// `451 4.7.1`: the client retries later (default).
    #[default]
    Tempfail,
    /// Accept with an `X-Virus-Scan: unscanned (...)` header.
    Accept,
}

/// `[checks.clamav]`: virus scanning through clamd's INSTREAM protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClamavConfig {
    /// Run this check. Default `false`.
    pub enabled: bool,
    /// Listener roles it runs on. Default `["mx"]`.
    pub roles: Vec<CheckRole>,
    /// clamd's socket (`LocalSocket` or `TCPSocket` in clamd.conf); Debian's
    /// default is `unix:/run/clamav/clamd.ctl`.
    pub socket: ScanSocket,
    /// Connecting to clamd. Default 10s.
    #[serde(with = "crate::duration")]
    pub connect_timeout: Duration,
    /// Sending the message and waiting for the verdict. Default 120s.
    #[serde(with = "crate::duration")]
    pub scan_timeout: Duration,
    /// clamd's `StreamMaxLength` in bytes (clamd's default 25M). A larger
    /// message is not sent (clamd would refuse it): it is accepted unscanned
    /// with an `X-Virus-Scan: unscanned (...)` header and a warning in the log.
    pub stream_max_length: u64,
    /// A virus found: `reject` (default) or `hold`.
    pub infected_action: InfectedAction,
    /// clamd down, timing out or answering ERROR: `tempfail` (default) or
    /// `accept`.
    pub on_error: ScanErrorAction,
}

impl Default for ClamavConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            roles: mx_only(),
            socket: ScanSocket::Unix(PathBuf::from("/run/clamav/clamd.ctl")),
            connect_timeout: Duration::from_secs(10),
            scan_timeout: Duration::from_secs(120),
            stream_max_length: 25 * 1024 * 1024,
            infected_action: InfectedAction::Reject,
            on_error: ScanErrorAction::Tempfail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets() {
        assert_eq!(
            ScanSocket::parse("unix:/run/x.sock").unwrap(),
            ScanSocket::Unix("/run/x.sock".into())
        );
        assert_eq!(
            ScanSocket::parse("inet:127.0.0.1:8891").unwrap(),
            ScanSocket::Inet("127.0.0.1:8891".into())
        );
        assert_eq!(
            ScanSocket::parse("inet:[::1]:8891").unwrap(),
            ScanSocket::Inet("[::1]:8891".into())
        );
        for bad in [
            "",
            "/run/x.sock",
            "unix:run/x",
            "inet:host",
            "inet::25",
            "inet:host:0",
            "inet:host:99999",
            "inet:::1:25",
            "tcp:host:25",
        ] {
            assert!(ScanSocket::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn milter_table_parses_with_defaults() {
        let m: MilterConfig =
            toml::from_str("socket = \"inet:127.0.0.1:8891\"\ndefault_action = \"accept\"\n")
                .unwrap();
        assert!(m.enabled);
        assert_eq!(m.roles, vec![CheckRole::Mx]);
        assert_eq!(m.default_action, MilterDefaultAction::Accept);
        assert_eq!(m.command_timeout, Duration::from_secs(30));
        assert!(toml::from_str::<MilterConfig>("socket = \"x\"").is_err());
        assert!(toml::from_str::<MilterConfig>("sockett = \"unix:/x\"").is_err());
    }
}
