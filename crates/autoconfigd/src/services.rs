//! What clients connect to, derived from the configuration: the host name
//! (`global.myhostname`) and, per client-facing role, the port of the first
//! listener with that role. Shared by the autoconfiguration documents and
//! `mailctl dns` (SRV records, MTA-STS), so both always say the same.

use postern_common::Config;
use postern_common::config::{ImapRole, Listener, Pop3Role, SmtpRole};
use sha2::{Digest, Sha256};

/// The mail protocols a client is configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Pop3,
    /// Message submission (RFC 6409); the MX role (port 25) is not for clients.
    Submission,
}

/// How TLS starts on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (993, 995, 465).
    Implicit,
    /// Plaintext, upgraded with STARTTLS/STLS before login (143, 110, 587).
    StartTls,
}

/// One client-facing service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub protocol: Protocol,
    pub security: Security,
    pub port: u16,
}

impl Service {
    /// The RFC 6186 / RFC 8314 SRV owner label, e.g. `_imaps._tcp`.
    pub fn srv_label(&self) -> &'static str {
        srv_label(self.protocol, self.security)
    }
}

/// The RFC 6186 (and RFC 8314 for `_submissions`) SRV label of a service.
pub fn srv_label(protocol: Protocol, security: Security) -> &'static str {
    match (protocol, security) {
        (Protocol::Imap, Security::StartTls) => "_imap._tcp",
        (Protocol::Imap, Security::Implicit) => "_imaps._tcp",
        (Protocol::Pop3, Security::StartTls) => "_pop3._tcp",
        (Protocol::Pop3, Security::Implicit) => "_pop3s._tcp",
        (Protocol::Submission, Security::StartTls) => "_submission._tcp",
        (Protocol::Submission, Security::Implicit) => "_submissions._tcp",
    }
}

/// Every (protocol, security) pair in the order SRV records are printed.
pub const ALL: [(Protocol, Security); 6] = [
    (Protocol::Submission, Security::StartTls),
    (Protocol::Submission, Security::Implicit),
    (Protocol::Imap, Security::StartTls),
    (Protocol::Imap, Security::Implicit),
    (Protocol::Pop3, Security::StartTls),
    (Protocol::Pop3, Security::Implicit),
];

/// The services of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// The host clients connect to (`global.myhostname`).
    pub hostname: String,
    /// The configured services, implicit TLS before STARTTLS per protocol
    /// (RFC 8314 section 3 prefers implicit TLS).
    pub list: Vec<Service>,
}

fn port_of<R>(listeners: &[Listener<R>], pick: impl Fn(&R) -> bool) -> Option<u16> {
    listeners
        .iter()
        .find(|l| pick(&l.role))
        .and_then(|l| l.address.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.port())
}

impl Services {
    pub fn from_config(cfg: &Config) -> Self {
        let mut list = Vec::new();
        let mut add = |protocol, security, port: Option<u16>| {
            if let Some(port) = port {
                list.push(Service {
                    protocol,
                    security,
                    port,
                });
            }
        };
        add(
            Protocol::Imap,
            Security::Implicit,
            port_of(&cfg.imapd.listener, |r| *r == ImapRole::Imaps),
        );
        add(
            Protocol::Imap,
            Security::StartTls,
            port_of(&cfg.imapd.listener, |r| *r == ImapRole::Imap),
        );
        add(
            Protocol::Pop3,
            Security::Implicit,
            port_of(&cfg.pop3d.listener, |r| *r == Pop3Role::Pop3s),
        );
        add(
            Protocol::Pop3,
            Security::StartTls,
            port_of(&cfg.pop3d.listener, |r| *r == Pop3Role::Pop3),
        );
        add(
            Protocol::Submission,
            Security::Implicit,
            port_of(&cfg.smtpd.listener, |r| *r == SmtpRole::Submissions),
        );
        add(
            Protocol::Submission,
            Security::StartTls,
            port_of(&cfg.smtpd.listener, |r| *r == SmtpRole::Submission),
        );
        Self {
            hostname: cfg.global.myhostname.clone(),
            list,
        }
    }

    /// The services of one protocol, preferred first.
    pub fn of(&self, protocol: Protocol) -> impl Iterator<Item = &Service> {
        self.list.iter().filter(move |s| s.protocol == protocol)
    }

    /// The service for a (protocol, security) pair, if configured.
    pub fn get(&self, protocol: Protocol, security: Security) -> Option<&Service> {
        self.list
            .iter()
            .find(|s| s.protocol == protocol && s.security == security)
    }
}

/// Cache lifetime announced in the MTA-STS policy (`max_age`, seconds):
/// one week, the value RFC 8461 section 3.2 suggests for a stable policy.
pub const MTA_STS_MAX_AGE: u64 = 604_800;

/// The MTA-STS policy (RFC 8461 section 3.2) for `autoconfig.mta_sts_mode`
/// naming `global.myhostname` as the only MX, CRLF-terminated lines.
pub fn mta_sts_policy(cfg: &Config) -> String {
    format!(
        "version: STSv1\r\nmode: {}\r\nmx: {}\r\nmax_age: {MTA_STS_MAX_AGE}\r\n",
        cfg.autoconfig.mta_sts_mode, cfg.global.myhostname
    )
}

/// The `id=` of the `_mta-sts` TXT record: derived from the policy text, so
/// it changes exactly when the policy does (RFC 8461 section 3.1: 1 to 32
/// letters and digits).
pub fn mta_sts_id(policy: &str) -> String {
    let digest = Sha256::digest(policy.as_bytes());
    digest[..10].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::parse_str(
            &format!("[global]\nmyhostname = \"mx.example.org\"\n{text}"),
            std::path::Path::new("t.toml"),
            &Default::default(),
        )
        .unwrap()
    }

    #[test]
    fn defaults_give_the_standard_ports() {
        let s = Services::from_config(&cfg(""));
        assert_eq!(s.hostname, "mx.example.org");
        let got: Vec<_> = s.list.iter().map(|s| (s.srv_label(), s.port)).collect();
        assert_eq!(
            got,
            [
                ("_imaps._tcp", 993),
                ("_imap._tcp", 143),
                ("_pop3s._tcp", 995),
                ("_pop3._tcp", 110),
                ("_submissions._tcp", 465),
                ("_submission._tcp", 587),
            ]
        );
    }

    #[test]
    fn listeners_decide_ports_and_missing_roles_are_absent() {
        let s = Services::from_config(&cfg(
            "[imapd]\nlistener = [{ name = \"a\", address = \"127.0.0.1:1993\", role = \"imaps\" }, { name = \"b\", address = \"[::1]:2993\", role = \"imaps\" }]\n\
             [pop3d]\nlistener = []\n\
             [smtpd]\nlistener = [{ name = \"smtp\", address = \"0.0.0.0:25\", role = \"mx\" }, { name = \"s\", address = \"0.0.0.0:2587\", role = \"submission\" }]\n",
        ));
        let got: Vec<_> = s.list.iter().map(|s| (s.srv_label(), s.port)).collect();
        assert_eq!(got, [("_imaps._tcp", 1993), ("_submission._tcp", 2587)]);
        assert!(s.get(Protocol::Pop3, Security::Implicit).is_none());
        assert_eq!(s.of(Protocol::Imap).count(), 1);
    }

    #[test]
    fn mta_sts_id_follows_the_policy() {
        let a = cfg("");
        let b = cfg("[autoconfig]\nmta_sts_mode = \"enforce\"\n");
        let (pa, pb) = (mta_sts_policy(&a), mta_sts_policy(&b));
        assert!(pa.contains("mode: testing\r\n") && pa.contains("mx: mx.example.org\r\n"));
        assert_ne!(mta_sts_id(&pa), mta_sts_id(&pb));
        assert_eq!(mta_sts_id(&pa), mta_sts_id(&mta_sts_policy(&a)));
        let id = mta_sts_id(&pa);
        assert!(id.len() <= 32 && id.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
