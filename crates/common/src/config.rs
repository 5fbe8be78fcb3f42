//! The configuration file: one TOML file with a section per daemon.
//!
//! Key names follow Postfix where Postfix has one (`myhostname`, `mydomain`,
//! `mydestination`, `mynetworks`, `message_size_limit`, `recipient_delimiter`).
//! Every key has a default (shown by `mailctl config check --all`), and every
//! key can be overridden from the environment as
//! `POSTERN_<SECTION>__<KEY>=value` (double underscore between section and key,
//! e.g. `POSTERN_GLOBAL__MYHOSTNAME=mx.example.org`). Variables without the
//! double underscore, such as `POSTERN_CONFIG`, are not overrides.
//!
//! Loading is strict: unknown keys, wrong types and bad values are errors that
//! name the file, the key and the reason ([`ConfigError`]); daemons print it
//! and exit with status 78 (`EX_CONFIG`) before binding any socket.
//!
//! Relative paths are taken relative to the daemon's working directory (the
//! dev stack runs from the repository root; production configs use absolute
//! paths).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::duration;

/// Default location of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/postern/postern.toml";

/// Environment variable naming the configuration file (overridden by `--config`).
pub const CONFIG_ENV: &str = "POSTERN_CONFIG";

/// Prefix of environment overrides (`POSTERN_<SECTION>__<KEY>`).
pub const ENV_PREFIX: &str = "POSTERN_";

/// A configuration error: which file, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    /// The file (or "environment" for an override).
    pub file: String,
    /// The dotted key, e.g. `smtpd.listener[0].address`; "-" when not known.
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(file: &Path, key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            file: file.display().to_string(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Keys shared by every daemon (Postfix `main.cf` basics).
    pub global: Global,
    pub log: LogConfig,
    pub tls: TlsConfig,
    pub authd: AuthdConfig,
    pub smtpd: SmtpdConfig,
    pub queue: QueueConfig,
    pub lmtp: LmtpConfig,
    pub pop3d: Pop3dConfig,
    pub imapd: ImapdConfig,
    pub autoconfig: AutoconfigConfig,
    /// `[metrics]`: Prometheus endpoints, one address per daemon.
    pub metrics: crate::metrics::MetricsConfig,
    /// `[checks.*]`: the smtpd check pipeline.
    pub checks: crate::checks::ChecksConfig,
    /// Keys set explicitly in the file or the environment (what
    /// `postconf -n` would show). Not a configuration key itself.
    #[serde(skip)]
    pub explicit_keys: std::collections::BTreeSet<String>,
}

/// `[global]`: identity of the mail system and shared paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Global {
    /// Fully qualified host name used in greetings and `Received:` headers.
    /// Default: the system host name.
    pub myhostname: String,
    /// The domain of this host. Default: `myhostname` minus its first label.
    pub mydomain: String,
    /// Domain appended to bare local names of locally submitted mail.
    /// Default: `mydomain`.
    pub myorigin: String,
    /// Domains delivered locally (system users, `/etc/aliases`). Default:
    /// `myhostname`, `localhost.<mydomain>`, `localhost`. Virtual domains come
    /// from the directory.
    pub mydestination: Vec<String>,
    /// Trusted client networks, allowed to relay. Default: loopback only.
    pub mynetworks: Vec<IpNet>,
    /// Separator of address extensions (`user+tag@dom`); empty disables.
    pub recipient_delimiter: String,
    /// Largest message accepted, in bytes (Postfix default 10240000).
    pub message_size_limit: u64,
    /// Persistent state: spool, mail store, SQLite directory.
    pub state_directory: PathBuf,
    /// Runtime state: sockets under `private/` (daemons only) and `public/`.
    pub run_directory: PathBuf,
    /// On SIGTERM, how long in-flight sessions may take to finish.
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
}

impl Default for Global {
    fn default() -> Self {
        Self {
            myhostname: String::new(),
            mydomain: String::new(),
            myorigin: String::new(),
            mydestination: Vec::new(),
            mynetworks: vec![
                "127.0.0.0/8".parse().expect("literal"),
                "::1/128".parse().expect("literal"),
            ],
            recipient_delimiter: "+".into(),
            message_size_limit: 10_240_000,
            state_directory: "/var/lib/postern".into(),
            run_directory: "/run/postern".into(),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event; journald-friendly on stderr.
    Human,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `info,postern_smtpd=debug`, ...
    /// Reloaded on SIGHUP.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// `[tls]`: the server certificate used by every TLS listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: "/etc/postern/tls/cert.pem".into(),
            key_file: "/etc/postern/tls/key.pem".into(),
        }
    }
}

/// A network listener of a daemon: a name (matched against systemd's
/// `FileDescriptorName=` for socket activation), an address and a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener<R> {
    pub name: String,
    pub address: String,
    pub role: R,
}

impl<R> Listener<R> {
    fn new(name: &str, address: &str, role: R) -> Self {
        Self {
            name: name.into(),
            address: address.into(),
            role,
        }
    }
}

/// Role of an SMTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpRole {
    /// Port 25: mail from the Internet, STARTTLS offered, AUTH not offered.
    Mx,
    /// Port 587: submission with STARTTLS, AUTH required.
    Submission,
    /// Port 465: submission over implicit TLS, AUTH required.
    Submissions,
}

/// Role of a POP3 listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pop3Role {
    /// Port 110, STLS offered.
    Pop3,
    /// Port 995, implicit TLS.
    Pop3s,
}

/// Role of an IMAP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapRole {
    /// Port 143, STARTTLS offered.
    Imap,
    /// Port 993, implicit TLS.
    Imaps,
}

/// `[authd]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthdConfig {
    /// gRPC `postern.auth.v1` socket. Default `unix:<run_directory>/private/auth.sock`.
    pub socket: String,
    /// Dovecot authentication protocol (v1) socket, for a Postfix with
    /// `smtpd_sasl_type = dovecot`. Default
    /// `unix:<run_directory>/private/dovecot-auth`. Set `dovecot_protocol = false`
    /// to not serve it.
    pub dovecot_socket: String,
    /// Serve the Dovecot authentication protocol on `dovecot_socket`.
    pub dovecot_protocol: bool,
    /// Delay before answering a failed login; doubles with each further
    /// failure from the same IP address (Dovecot `auth_failure_delay`).
    #[serde(with = "crate::duration")]
    pub auth_failure_delay: Duration,
    /// Upper bound of that growing delay.
    #[serde(with = "crate::duration")]
    pub auth_failure_delay_max: Duration,
    /// Failures from one IP address are counted over this window; a success
    /// clears them.
    #[serde(with = "crate::duration")]
    pub auth_failure_window: Duration,
    /// After this many failures in the window, further attempts from that IP
    /// are refused without checking the password (with the maximal delay)
    /// until the window has passed.
    pub auth_failure_limit: u32,
    /// Backend settings of the directory, checked by authd
    /// (see the `directory` crate's documentation). `mydestination`,
    /// `myorigin` and `recipient_delimiter` default to the `[global]` keys,
    /// `path` to `<state_directory>/directory.sqlite` and `mailbox_template`
    /// to `<lmtp.mail_directory>/%d/%u/Maildir`.
    pub directory: toml::Table,
}

impl Default for AuthdConfig {
    fn default() -> Self {
        Self {
            socket: String::new(),
            dovecot_socket: String::new(),
            dovecot_protocol: true,
            auth_failure_delay: Duration::from_secs(2),
            auth_failure_delay_max: Duration::from_secs(15),
            auth_failure_window: Duration::from_secs(900),
            auth_failure_limit: 50,
            directory: toml::Table::new(),
        }
    }
}

/// `[smtpd]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpdConfig {
    pub listener: Vec<Listener<SmtpRole>>,
    /// Recipients per message; more get `452 4.5.3` (Postfix
    /// `smtpd_recipient_limit`). Default 1000.
    pub smtpd_recipient_limit: usize,
    /// Error replies before `421` and disconnect (Postfix
    /// `smtpd_hard_error_limit`). Default 20.
    pub smtpd_hard_error_limit: u32,
    /// NOOP/VRFY/EXPN/HELP/RSET per session before each one counts as an
    /// error (Postfix `smtpd_junk_command_limit`). Default 100.
    pub smtpd_junk_command_limit: u32,
    /// Concurrent connections over all listeners; beyond it new ones get
    /// `421 4.7.0` and are closed (Postfix: the master.cf process limit).
    /// Default 1000.
    pub max_connections: usize,
    /// Concurrent connections from one IP address; 0 = no limit (Postfix
    /// `smtpd_client_connection_count_limit`). Default 50.
    pub smtpd_client_connection_count_limit: usize,
    /// New connections from one IP address per `anvil_rate_time_unit`; 0 = no
    /// limit (Postfix `smtpd_client_connection_rate_limit`). Default 0.
    pub smtpd_client_connection_rate_limit: usize,
    /// Window of the rate limit (Postfix `anvil_rate_time_unit`). Default `60s`.
    #[serde(with = "duration")]
    pub anvil_rate_time_unit: Duration,
    /// Networks exempt from the per-IP count and rate limits (Postfix
    /// `smtpd_client_event_limit_exceptions`). Default: `global.mynetworks`.
    pub smtpd_client_event_limit_exceptions: Option<Vec<IpNet>>,
    /// Wait for a command line (Postfix `smtpd_timeout`; RFC 5321 4.5.3.2.7
    /// asks for at least 5 minutes). Default `300s`.
    #[serde(with = "duration")]
    pub smtpd_timeout: Duration,
    /// Wait for the next part of the message while receiving DATA or BDAT
    /// content. Default `300s`.
    #[serde(with = "duration")]
    pub smtpd_data_timeout: Duration,
    /// Bound on a TLS handshake, STARTTLS or implicit (Postfix
    /// `smtpd_starttls_timeout`). Default `60s`.
    #[serde(with = "duration")]
    pub smtpd_starttls_timeout: Duration,
    /// `true`: VRFY answers `252` without looking anything up (no address
    /// harvesting). `false`: VRFY resolves the address through authd (`250`,
    /// `550 5.1.1`). Postfix's default is `false`; ours is `true`. Default `true`.
    pub disable_vrfy_command: bool,
    /// Bare LF or CR in message content (SMTP smuggling, Postfix 3.9
    /// `smtpd_forbid_bare_newline`): `"reject"` refuses the message with
    /// `550 5.5.2`, `"normalize"` stores a bare LF as CRLF, `"allow"`
    /// passes both on. Default `"reject"`.
    pub smtpd_forbid_bare_newline: BareNewline,
    /// Show the authenticated user name in the `Received:` header (Postfix
    /// `smtpd_sasl_authenticated_header`). Default `false` (privacy).
    pub smtpd_sasl_authenticated_header: bool,
}

/// `smtpd.smtpd_forbid_bare_newline`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareNewline {
    #[default]
    Reject,
    Normalize,
    Allow,
}

impl Default for SmtpdConfig {
    fn default() -> Self {
        Self {
            listener: vec![
                Listener::new("smtp", "0.0.0.0:25", SmtpRole::Mx),
                Listener::new("submission", "0.0.0.0:587", SmtpRole::Submission),
                Listener::new("submissions", "0.0.0.0:465", SmtpRole::Submissions),
            ],
            smtpd_recipient_limit: 1000,
            smtpd_hard_error_limit: 20,
            smtpd_junk_command_limit: 100,
            max_connections: 1000,
            smtpd_client_connection_count_limit: 50,
            smtpd_client_connection_rate_limit: 0,
            anvil_rate_time_unit: Duration::from_secs(60),
            smtpd_client_event_limit_exceptions: None,
            smtpd_timeout: Duration::from_secs(300),
            smtpd_data_timeout: Duration::from_secs(300),
            smtpd_starttls_timeout: Duration::from_secs(60),
            disable_vrfy_command: true,
            smtpd_forbid_bare_newline: BareNewline::Reject,
            smtpd_sasl_authenticated_header: false,
        }
    }
}

/// `[queue]` (queue-manager).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// gRPC `postern.queue.v1` socket for daemons and administration.
    /// Default `unix:<run_directory>/private/queue.sock`.
    pub socket: String,
    /// Local submission socket (sendmail(1)), reachable by local users.
    /// Default `unix:<run_directory>/public/submit.sock`.
    pub public_socket: String,
    /// Spool directory. Default `<state_directory>/spool`.
    pub spool_directory: PathBuf,
    /// Shortest delay before retrying a deferred message (Postfix
    /// `minimal_backoff_time`). Default `300s`.
    #[serde(with = "duration")]
    pub minimal_backoff_time: Duration,
    /// Longest delay between retries; the delay doubles per attempt up to
    /// this (Postfix `maximal_backoff_time`). Default `4000s`.
    #[serde(with = "duration")]
    pub maximal_backoff_time: Duration,
    /// How long a message may stay queued before its undelivered recipients
    /// are bounced (Postfix `maximal_queue_lifetime`). Default `5d`.
    #[serde(with = "duration")]
    pub maximal_queue_lifetime: Duration,
    /// How often the scheduler scans the queue for due messages (Postfix
    /// `queue_run_delay`). Default `300s`.
    #[serde(with = "duration")]
    pub queue_run_delay: Duration,
    /// Where a copy of each non-delivery notification (with the original
    /// headers only) goes, e.g. `postmaster` (Postfix `notify_classes =
    /// bounce` with `bounce_notice_recipient`). Default empty: no copy.
    pub bounce_notice_recipient: String,
    /// Largest original message returned whole in a DSN, in bytes; a larger
    /// one comes back as headers only (Postfix `bounce_size_limit`).
    /// Default 50000; 0 = no limit.
    pub bounce_size_limit: u64,
    /// After this long in the queue, the sender of a message still not
    /// delivered to some recipient gets one "delayed" DSN (delay warning),
    /// unless NOTIFY excludes DELAY (Postfix `delay_warning_time`).
    /// Default `0s`: no delay warnings, as Postfix.
    #[serde(with = "duration")]
    pub delay_warning_time: Duration,
    /// How queued mail is delivered: `"auto"` (route each recipient: local
    /// domains over LMTP to `lmtp.socket` after alias expansion by authd,
    /// `transport_maps`, `relayhost`, otherwise SMTP to the domain's MX),
    /// `"lmtp"` (every recipient as it is over LMTP to `lmtp.socket`, no
    /// lookups) or `"none"` (nothing is delivered, mail stays queued).
    /// Default `"auto"`.
    pub delivery_transport: String,
    /// Per-domain transports (Postfix `transport_maps`): keys are a domain,
    /// `.domain` (its subdomains) or `*`; values `lmtp:unix:/path`,
    /// `lmtp:inet:host:port`, `smtp:[host]:port` (no MX lookup),
    /// `smtp:host[:port]` (MX lookup of host), `smtp` (MX of the recipient
    /// domain), `relay` (the relayhost), `lmtp` (the default LMTP socket),
    /// `error:text` (bounce with text). Default empty.
    pub transport_maps: BTreeMap<String, String>,
    /// Smarthost for mail to other domains (Postfix `relayhost`):
    /// `[host]:port` / `[host]` (no MX lookup) or `host[:port]` (MX lookup).
    /// Default empty: deliver to the recipient domain's MX.
    pub relayhost: String,
    /// User name for AUTH PLAIN at the relayhost (only over TLS). Default
    /// empty: no AUTH.
    pub relayhost_username: String,
    /// File holding the relayhost password (first line). Default empty.
    pub relayhost_password_file: PathBuf,
    /// TLS for outgoing SMTP (Postfix `smtp_tls_security_level`): `"none"`,
    /// `"may"` (STARTTLS when offered, certificate not verified),
    /// `"encrypt"` (TLS required, not verified), `"verify"` (TLS required,
    /// certificate verified against `smtp_tls_ca_file` and the host name).
    /// Default `"may"`.
    pub smtp_tls_security_level: String,
    /// CA certificates (PEM) for `"verify"`. Default empty: the system's
    /// `/etc/ssl/certs/ca-certificates.crt`.
    pub smtp_tls_ca_file: PathBuf,
    /// TCP port for SMTP delivery to MX hosts and `smtp:host` next hops.
    /// Default 25; other values are mainly for tests.
    pub smtp_port: u16,
    /// DNS servers for MX/A/AAAA lookups (`"ip"` or `"ip:port"`). Default
    /// empty: the system resolver configuration (`/etc/resolv.conf`).
    pub dns_servers: Vec<String>,
    /// Messages being delivered at the same time, all destinations together.
    /// Default 100.
    pub delivery_concurrency_limit: usize,
    /// Connections at the same time to one destination (next hop) (Postfix
    /// `default_destination_concurrency_limit`). Default 20.
    pub default_destination_concurrency_limit: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            socket: String::new(),
            public_socket: String::new(),
            spool_directory: PathBuf::new(),
            minimal_backoff_time: Duration::from_secs(300),
            maximal_backoff_time: Duration::from_secs(4000),
            maximal_queue_lifetime: Duration::from_secs(5 * 86_400),
            queue_run_delay: Duration::from_secs(300),
            bounce_notice_recipient: String::new(),
            bounce_size_limit: 50_000,
            delay_warning_time: Duration::ZERO,
            delivery_transport: "auto".to_string(),
            transport_maps: BTreeMap::new(),
            relayhost: String::new(),
            relayhost_username: String::new(),
            relayhost_password_file: PathBuf::new(),
            smtp_tls_security_level: "may".to_string(),
            smtp_tls_ca_file: PathBuf::new(),
            smtp_port: 25,
            dns_servers: Vec::new(),
            delivery_concurrency_limit: 100,
            default_destination_concurrency_limit: 20,
        }
    }
}

/// `[lmtp]` (lmtp-delivery).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmtpConfig {
    /// LMTP Unix socket. Default `unix:<run_directory>/private/lmtp.sock`.
    pub socket: String,
    /// Optional LMTP TCP listeners (e.g. for a Postfix on another host).
    pub listener: Vec<Listener<LmtpRole>>,
    /// Root of the virtual mailboxes. Default `<state_directory>/mail`.
    pub mail_directory: PathBuf,
}

/// Role of an LMTP TCP listener (there is one kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LmtpRole {
    Lmtp,
}

/// `[pop3d]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pop3dConfig {
    pub listener: Vec<Listener<Pop3Role>>,
    /// Allow USER/PASS and AUTH PLAIN without TLS (Dovecot
    /// `disable_plaintext_auth = no`). A warning is logged at start.
    pub allow_plaintext_auth: bool,
    /// Close a session that sends nothing for this long (RFC 1939 section
    /// 3 asks for at least 10 minutes; a shorter value is accepted with a
    /// warning at start). Default `10m`.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Minimum time between two logins of the same user, announced in CAPA
    /// as `LOGIN-DELAY` (RFC 2449 section 6.5) and enforced with
    /// `-ERR [LOGIN-DELAY]`; `0s` = no delay, not announced. Remembered per
    /// pop3d process. Default `0s`.
    #[serde(with = "duration")]
    pub login_delay: Duration,
}

impl Default for Pop3dConfig {
    fn default() -> Self {
        Self {
            listener: vec![
                Listener::new("pop3", "0.0.0.0:110", Pop3Role::Pop3),
                Listener::new("pop3s", "0.0.0.0:995", Pop3Role::Pop3s),
            ],
            allow_plaintext_auth: false,
            idle_timeout: Duration::from_secs(600),
            login_delay: Duration::ZERO,
        }
    }
}

/// `[imapd]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapdConfig {
    pub listener: Vec<Listener<ImapRole>>,
    /// Allow LOGIN and AUTHENTICATE PLAIN without TLS. A warning is logged.
    pub allow_plaintext_auth: bool,
    /// Logged-in sessions one user may have from one IP address at a time
    /// (Dovecot `mail_max_userip_connections`, whose default is 10); one
    /// more gets `NO [LIMIT]` at login. 0 = no limit. Default 0 (the
    /// benchmark holds 10,000 sessions of one user from one address).
    pub mail_max_userip_connections: usize,
    /// Connections one client IP address may hold at a time, logged in or
    /// not (like Postfix `smtpd_client_connection_count_limit`, default 50
    /// there); one more is greeted with `* BYE` and closed. 0 = no limit.
    /// Default 0.
    pub client_connection_count_limit: usize,
}

impl Default for ImapdConfig {
    fn default() -> Self {
        Self {
            listener: vec![
                Listener::new("imap", "0.0.0.0:143", ImapRole::Imap),
                Listener::new("imaps", "0.0.0.0:993", ImapRole::Imaps),
            ],
            allow_plaintext_auth: false,
            mail_max_userip_connections: 0,
            client_connection_count_limit: 0,
        }
    }
}

/// Role of an autoconfigd listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpRole {
    /// Plain HTTP, for a reverse proxy that terminates TLS in front of it.
    Http,
    /// HTTPS with the `[tls]` certificate.
    Https,
}

/// `[autoconfig]` (autoconfigd: client autoconfiguration and the MTA-STS
/// policy over HTTP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoconfigConfig {
    /// HTTP(S) listeners. Default empty: autoconfigd is off (it refuses to
    /// start without a listener).
    pub listener: Vec<Listener<HttpRole>>,
    /// Mode of the MTA-STS policy served at `/.well-known/mta-sts.txt` and
    /// announced by `mailctl dns` (RFC 8461): `"testing"`, `"enforce"` or
    /// `"none"`. Default `"testing"`: senders report but do not refuse.
    pub mta_sts_mode: String,
}

impl Default for AutoconfigConfig {
    fn default() -> Self {
        Self {
            listener: Vec::new(),
            mta_sts_mode: "testing".into(),
        }
    }
}

impl Config {
    /// Load `path`, apply `POSTERN_<SECTION>__<KEY>` overrides from the
    /// process environment, fill in derived defaults and validate.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::load_with_env(path, &env)
    }

    /// [`Config::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        path: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "-", format!("cannot read file: {e}")))?;
        Self::parse_str(&text, path, env)
    }

    /// Parse and validate configuration `text`; `path` only names it in
    /// errors. What [`Config::load_with_env`] does after reading the file
    /// (also the entry point of the `config` fuzz target).
    pub fn parse_str(
        text: &str,
        path: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        // Parse once with `toml` for precise syntax errors (line and column).
        let raw = match text.parse::<toml::Table>() {
            Ok(raw) => raw,
            Err(e) => {
                let reason = e.message().to_string();
                let key = match e.span() {
                    Some(span) => {
                        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                        format!("line {line}")
                    }
                    None => "-".into(),
                };
                return Err(ConfigError::new(
                    path,
                    key,
                    format!("syntax error: {reason}"),
                ));
            }
        };
        let overrides = env_overrides(env);
        let mut explicit = Vec::new();
        flatten_into("", &toml::Value::Table(raw), &mut explicit);
        let explicit_keys = explicit
            .into_iter()
            .map(|(k, _)| k)
            .chain(overrides.keys().map(|k| k.replace("__", ".")))
            .collect();
        let built = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::default()
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(overrides.into_iter().collect())),
            )
            .build()
            .map_err(|e| from_config_error(path, e))?;
        let mut cfg: Config = built
            .try_deserialize()
            .map_err(|e| from_config_error(path, e))?;
        cfg.explicit_keys = explicit_keys;
        cfg.finalize();
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Fill in the defaults that derive from other keys (Postfix's
    /// `$myhostname`-style references).
    pub fn finalize(&mut self) {
        let g = &mut self.global;
        if g.myhostname.is_empty() {
            g.myhostname = system_hostname();
        }
        if g.mydomain.is_empty() {
            g.mydomain = match g.myhostname.split_once('.') {
                Some((_, rest)) if !rest.is_empty() => rest.to_string(),
                _ => "localdomain".into(),
            };
        }
        if g.myorigin.is_empty() {
            g.myorigin = g.mydomain.clone();
        }
        if g.mydestination.is_empty() {
            g.mydestination = vec![
                g.myhostname.clone(),
                format!("localhost.{}", g.mydomain),
                "localhost".into(),
            ];
        }
        if self.smtpd.smtpd_client_event_limit_exceptions.is_none() {
            self.smtpd.smtpd_client_event_limit_exceptions = Some(g.mynetworks.clone());
        }
        let run = g.run_directory.clone();
        let state = g.state_directory.clone();
        let sock = |s: &mut String, rel: &str| {
            if s.is_empty() {
                *s = format!("unix:{}", run.join(rel).display());
            }
        };
        sock(&mut self.authd.socket, "private/auth.sock");
        sock(&mut self.authd.dovecot_socket, "private/dovecot-auth");
        sock(&mut self.queue.socket, "private/queue.sock");
        sock(&mut self.queue.public_socket, "public/submit.sock");
        sock(&mut self.lmtp.socket, "private/lmtp.sock");
        if self.queue.spool_directory.as_os_str().is_empty() {
            self.queue.spool_directory = state.join("spool");
        }
        if self.lmtp.mail_directory.as_os_str().is_empty() {
            self.lmtp.mail_directory = state.join("mail");
        }
    }

    /// Check values that the types alone do not constrain.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let err = |key: &str, reason: String| ConfigError::new(file, key, reason);
        let g = &self.global;
        for (key, value) in [
            ("global.myhostname", &g.myhostname),
            ("global.mydomain", &g.mydomain),
            ("global.myorigin", &g.myorigin),
        ] {
            check_domain(value).map_err(|r| err(key, r))?;
        }
        for (i, d) in g.mydestination.iter().enumerate() {
            check_domain(d).map_err(|r| err(&format!("global.mydestination[{i}]"), r))?;
        }
        if g.recipient_delimiter.chars().count() > 1
            || g.recipient_delimiter
                .chars()
                .any(|c| c.is_alphanumeric() || c == '@' || c.is_whitespace())
        {
            return Err(err(
                "global.recipient_delimiter",
                format!(
                    "{:?} must be empty or one punctuation character such as \"+\" or \"-\"",
                    g.recipient_delimiter
                ),
            ));
        }
        if g.message_size_limit == 0 {
            return Err(err(
                "global.message_size_limit",
                "must be greater than 0".into(),
            ));
        }
        if self.authd.auth_failure_delay > self.authd.auth_failure_delay_max {
            return Err(err(
                "authd.auth_failure_delay",
                "must not exceed authd.auth_failure_delay_max".into(),
            ));
        }
        let sm = &self.smtpd;
        for (key, zero) in [
            ("smtpd.smtpd_recipient_limit", sm.smtpd_recipient_limit == 0),
            (
                "smtpd.smtpd_hard_error_limit",
                sm.smtpd_hard_error_limit == 0,
            ),
            ("smtpd.max_connections", sm.max_connections == 0),
            (
                "smtpd.anvil_rate_time_unit",
                sm.anvil_rate_time_unit.is_zero(),
            ),
            ("smtpd.smtpd_timeout", sm.smtpd_timeout.is_zero()),
            ("pop3d.idle_timeout", self.pop3d.idle_timeout.is_zero()),
            ("smtpd.smtpd_data_timeout", sm.smtpd_data_timeout.is_zero()),
            (
                "smtpd.smtpd_starttls_timeout",
                sm.smtpd_starttls_timeout.is_zero(),
            ),
        ] {
            if zero {
                return Err(err(key, "must be greater than 0".into()));
            }
        }
        if g.shutdown_timeout.is_zero() {
            return Err(err(
                "global.shutdown_timeout",
                "must be greater than 0".into(),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            err(
                "log.level",
                format!("{:?} is not a valid filter: {e}", self.log.level),
            )
        })?;
        for (key, value) in [
            ("authd.socket", &self.authd.socket),
            ("authd.dovecot_socket", &self.authd.dovecot_socket),
            ("queue.socket", &self.queue.socket),
            ("queue.public_socket", &self.queue.public_socket),
            ("lmtp.socket", &self.lmtp.socket),
        ] {
            value
                .parse::<postern_ipc::SocketUri>()
                .map_err(|e| err(key, e.to_string()))?;
        }
        check_listeners(file, "smtpd", &self.smtpd.listener)?;
        check_listeners(file, "lmtp", &self.lmtp.listener)?;
        check_listeners(file, "pop3d", &self.pop3d.listener)?;
        check_listeners(file, "imapd", &self.imapd.listener)?;
        check_listeners(file, "autoconfig", &self.autoconfig.listener)?;
        self.metrics.validate(file)?;
        if !["testing", "enforce", "none"].contains(&self.autoconfig.mta_sts_mode.as_str()) {
            return Err(err(
                "autoconfig.mta_sts_mode",
                format!(
                    "{:?}: use \"testing\", \"enforce\" or \"none\"",
                    self.autoconfig.mta_sts_mode
                ),
            ));
        }
        Ok(())
    }

    /// Socket URI of a configured service (already validated by `load`).
    pub fn socket_uri(value: &str) -> postern_ipc::SocketUri {
        value
            .parse()
            .unwrap_or_else(|_| postern_ipc::SocketUri::from_path(value))
    }

    /// The effective configuration as `(dotted key, value)` pairs in file
    /// order, for `mailctl config check`.
    pub fn flatten(&self) -> Vec<(String, String)> {
        let value = toml::Value::try_from(self).unwrap_or(toml::Value::Table(Default::default()));
        let mut out = Vec::new();
        flatten_into("", &value, &mut out);
        out
    }

    /// `(key, effective value, set explicitly)` for every key; what
    /// `postconf -n` shows is the explicitly set ones.
    pub fn annotated(&self) -> Vec<(String, String, bool)> {
        self.flatten()
            .into_iter()
            .map(|(k, v)| {
                let explicit = self.explicit_keys.contains(&k)
                    || self.explicit_keys.iter().any(|e| {
                        k.starts_with(&format!("{e}.")) || k.starts_with(&format!("{e}["))
                    });
                (k, v, explicit)
            })
            .collect()
    }
}

fn check_listeners<R>(
    file: &Path,
    section: &str,
    listeners: &[Listener<R>],
) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for (i, l) in listeners.iter().enumerate() {
        let key = format!("{section}.listener[{i}]");
        if l.name.is_empty()
            || !l
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::new(
                file,
                format!("{key}.name"),
                format!("{:?}: use letters, digits, '-' and '_'", l.name),
            ));
        }
        if !names.insert(l.name.as_str()) {
            return Err(ConfigError::new(
                file,
                format!("{key}.name"),
                format!("duplicate listener name {:?}", l.name),
            ));
        }
        l.address.parse::<SocketAddr>().map_err(|_| {
            ConfigError::new(
                file,
                format!("{key}.address"),
                format!(
                    "{:?} is not an IP:port address (use [::1]:143 for IPv6)",
                    l.address
                ),
            )
        })?;
    }
    Ok(())
}

/// A plausible DNS name: labels of letters, digits and hyphens.
fn check_domain(d: &str) -> Result<(), String> {
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{d:?} is not a valid domain name"))
    }
}

fn system_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| check_domain(h).is_ok())
        .unwrap_or_else(|| "localhost".into())
}

/// `POSTERN_SMTPD__FOO=1` → `smtpd__foo = 1` for the config crate's
/// environment source (which splits on `__`). Variables without a section
/// separator are not overrides.
fn env_overrides(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(ENV_PREFIX)?;
            rest.contains("__")
                .then(|| (rest.to_ascii_lowercase(), v.clone()))
        })
        .collect()
}

fn from_config_error(file: &Path, e: config::ConfigError) -> ConfigError {
    // The config crate appends " for key `x.y`" or " in <origin>" to
    // messages; pull the key out when it is there.
    let text = e.to_string();
    if let Some((reason, rest)) = text.split_once(" for key `") {
        // The config crate writes `a[0]b` for `a[0].b`.
        let raw = rest.split('`').next().unwrap_or("-");
        let mut key = String::with_capacity(raw.len() + 4);
        let mut after_bracket = false;
        for c in raw.chars() {
            if after_bracket && c.is_ascii_alphabetic() {
                key.push('.');
            }
            after_bracket = c == ']';
            key.push(c);
        }
        let mut reason = reason.to_string();
        if let Some(field) = reason
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            key = format!("{key}.{field}");
            reason = format!("unknown key (check the spelling); {reason}");
        }
        let origin = if rest.contains("in the environment") {
            "environment (POSTERN_… override) or "
        } else {
            ""
        };
        return ConfigError {
            file: format!("{origin}{}", file.display()),
            key,
            reason,
        };
    }
    let (reason, key) = match text.find("unknown field `") {
        Some(i) => {
            let name = text[i + 15..].split('`').next().unwrap_or("-");
            (
                format!("unknown key (check the spelling): {text}"),
                name.to_string(),
            )
        }
        None => (text.clone(), "-".to_string()),
    };
    ConfigError {
        file: file.display().to_string(),
        key,
        reason,
    }
}

fn flatten_into(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(t) if !t.is_empty() || prefix.is_empty() => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_into(&key, v, out);
            }
        }
        toml::Value::Array(items) if items.iter().any(|v| v.is_table()) => {
            for (i, v) in items.iter().enumerate() {
                flatten_into(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let f = write(text);
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(f.path(), &env)
    }

    #[test]
    fn empty_file_gives_defaults_with_derived_values() {
        let cfg = load("[global]\nmyhostname = \"mail.example.org\"\n", &[]).unwrap();
        assert_eq!(cfg.global.mydomain, "example.org");
        assert_eq!(cfg.global.myorigin, "example.org");
        assert_eq!(
            cfg.global.mydestination,
            ["mail.example.org", "localhost.example.org", "localhost"]
        );
        assert_eq!(cfg.authd.socket, "unix:/run/postern/private/auth.sock");
        assert_eq!(
            cfg.queue.spool_directory,
            Path::new("/var/lib/postern/spool")
        );
        assert_eq!(cfg.smtpd.listener.len(), 3);
    }

    #[test]
    fn environment_overrides_win() {
        let cfg = load(
            "[global]\nmyhostname = \"a.example.org\"\nmessage_size_limit = 5\n",
            &[
                ("POSTERN_GLOBAL__MESSAGE_SIZE_LIMIT", "12345"),
                ("POSTERN_GLOBAL__MYHOSTNAME", "b.example.org"),
                ("POSTERN_CONFIG", "/not/an/override.toml"),
                ("OTHER_GLOBAL__MYHOSTNAME", "ignored.example"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.global.message_size_limit, 12345);
        assert_eq!(cfg.global.myhostname, "b.example.org");
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[global]\nmessage_size_limit = \"big\"\n",
                "global.message_size_limit",
                "invalid type",
            ),
            (
                "[global]\nmyhostnam = \"x\"\n",
                "global.myhostnam",
                "unknown key",
            ),
            (
                "[smtpd]\nlistener = [{ name = \"smtp\", address = \"127.0.0.1:25\", role = \"mx\", port = 1 }]\n",
                "-",
                "unknown",
            ),
            ("[nosuchsection]\nx = 1\n", "nosuchsection", "unknown key"),
            (
                "[smtpd]\nlistener = [{ name = \"smtp\", address = \"localhost:25\", role = \"mx\" }]\n",
                "smtpd.listener[0].address",
                "not an IP:port",
            ),
            (
                "[smtpd]\nlistener = [{ name = \"smtp\", address = \"127.0.0.1:25\", role = \"relay\" }]\n",
                "smtpd.listener[0].role",
                "does not have variant",
            ),
            (
                "[global]\nmyhostname = \"bad host\"\n",
                "global.myhostname",
                "not a valid domain",
            ),
            (
                "[global]\nshutdown_timeout = \"5 parsecs\"\n",
                "global.shutdown_timeout",
                "duration",
            ),
            (
                "[log]\nlevel = \"[[[\"\n",
                "log.level",
                "not a valid filter",
            ),
            ("[global\n", "line 1", "syntax error"),
            (
                "[global]\nrecipient_delimiter = \"ab\"\n",
                "global.recipient_delimiter",
                "punctuation",
            ),
            (
                "[authd]\nsocket = \"http://x\"\n",
                "authd.socket",
                "only unix",
            ),
        ];
        for (text, key, reason) in cases {
            let f = write(text);
            let e = Config::load_with_env(f.path(), &BTreeMap::new()).unwrap_err();
            assert!(
                e.file.contains(&f.path().display().to_string()),
                "{text}: {e}"
            );
            if *key != "-" {
                assert_eq!(e.key, *key, "{text}: {e}");
            }
            assert!(
                e.reason.contains(reason),
                "{text}: expected {reason:?} in {e}"
            );
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = Config::load_with_env(Path::new("/nonexistent/postern.toml"), &BTreeMap::new())
            .unwrap_err();
        assert!(e.reason.contains("cannot read"), "{e}");
    }

    #[test]
    fn annotated_marks_only_explicit_keys() {
        let cfg = load(
            "[global]\nmyhostname = \"mail.example.org\"\nmessage_size_limit = 100\n",
            &[],
        )
        .unwrap();
        let changed: Vec<_> = cfg
            .annotated()
            .into_iter()
            .filter(|(_, _, explicit)| *explicit)
            .map(|(k, _, _)| k)
            .collect();
        assert_eq!(changed, ["global.message_size_limit", "global.myhostname"]);
    }
}
