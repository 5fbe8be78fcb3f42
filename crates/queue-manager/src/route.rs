//! Routing (`queue.delivery_transport = "auto"`): decides, per recipient,
//! where a message goes, and delivers it there.
//!
//! For each envelope recipient not yet final:
//!
//! 1. authd resolves it (`ResolveRecipient`): aliases, virtual aliases,
//!    forwardings, catch-all and plus-addressing, with loop detection and
//!    duplicate removal done by the directory.
//!    * `LOCAL` with exactly one target: that target is delivered to directly
//!      (a mailbox keeps the `+detail` of the recipient, so lmtp-delivery
//!      can file it into that folder).
//!    * `LOCAL` with several targets (an alias with two or more
//!      destinations): the message is **re-queued** once for the expanded
//!      list as a new queue file (origin `alias-expansion`, ORCPT = the
//!      alias) and the alias recipient is recorded delivered ("expanded"),
//!      as Postfix's local(8) does for forwarding. Each target then has its
//!      own durable status, so a target that is deferred never makes a
//!      delivered one receive the message twice. Recipients of such a
//!      message are not expanded again (an alias that lists its own address
//!      ends at its mailbox).
//!    * `NOT_OURS`: a remote recipient.
//!    * `UNKNOWN` → `550 5.1.1`, `DISABLED` → `550 5.2.1` (bounce);
//!      `TEMP_FAIL` or authd unreachable → `451 4.3.0` (retry).
//! 2. The final address's domain picks the next hop: `queue.transport_maps`
//!    (exact domain, then `.parent` entries, then `*`); for local mailboxes
//!    the directory's per-domain transport when it names one; local
//!    mailboxes otherwise go over LMTP to `lmtp.socket`; remote addresses go
//!    to `queue.relayhost` when set, otherwise by SMTP to the MX of their
//!    domain ([`crate::mx`], [`crate::smtp_client`]).
//! 3. SMTP next hops that are this host's own SMTP listeners (an MX or
//!    transport pointing back at us) are skipped; when nothing else is
//!    left the recipient bounces with `554 5.4.6 mail for ... loops back
//!    to myself`, as in Postfix. When `global.myhostname` is one of the
//!    domain's MX hosts (we are a backup MX), only MX hosts of better
//!    preference are tried ([`crate::mx::cut_at_self`]).
//! 4. Recipients with the same next hop share one LMTP/SMTP transaction.
//!    At most `queue.default_destination_concurrency_limit` transactions run
//!    at the same time per next hop.
//!
//! A crash between the re-queue of an expansion and the fsync of the
//! alias's status re-expands it on restart: its targets may get the message
//! twice (at-least-once, as everywhere in the queue).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use postern_ipc::auth::v1 as apb;
use postern_ipc::auth::v1::resolve_recipient_response::Status as Resolved;
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use crate::lmtp::{self, LmtpTarget};
use crate::mx::{Dns, Host};
use crate::scheduler::{Outcome, Transport};
use crate::smtp_client::{self, Credentials, RcptTo, SmtpClient};
use crate::spool::{Committer, Envelope, Message, Recipient};

/// `origin` of a message re-queued for an alias's expanded targets.
pub const EXPANDED_ORIGIN: &str = "alias-expansion";
/// Bound on the per-destination semaphores kept (idle ones are pruned).
const MAX_DESTINATIONS: usize = 10_000;

/// A configured transport (`transport_maps` value, or the directory's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nexthop {
    /// `lmtp`, `local`, `virtual`: LMTP to `lmtp.socket`.
    DefaultLmtp,
    /// `lmtp:unix:/path`, `lmtp:inet:host:port`.
    Lmtp(LmtpTarget),
    /// `smtp`, `smtp:host[:port]`, `smtp:[host][:port]`. `host` None = the
    /// recipient's domain; `mx` = look up MX records of `host`.
    Smtp {
        host: Option<String>,
        port: Option<u16>,
        mx: bool,
    },
    /// `relay`: `queue.relayhost` (MX of the recipient domain when unset).
    Relay,
    /// `error:text`: bounce with `text`.
    Error(String),
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && (h.parse::<std::net::IpAddr>().is_ok()
            || h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'))
}

/// `[host]:port`, `[host]` (no MX lookup), `host:port`, `host` (MX lookup).
pub fn parse_smtp_dest(s: &str) -> Result<(String, Option<u16>, bool), String> {
    let bad = |why: &str| format!("{s:?}: {why}");
    let port_of = |p: &str| p.parse::<u16>().ok().filter(|&p| p > 0);
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ]"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .and_then(port_of)
                    .ok_or_else(|| bad("bad port"))?,
            ),
        };
        if !valid_host(host) {
            return Err(bad("bad host name"));
        }
        return Ok((host.to_ascii_lowercase(), port, false));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(port_of(p).ok_or_else(|| bad("bad port"))?)),
        None => (s, None),
    };
    if !valid_host(host) {
        return Err(bad("bad host name"));
    }
    Ok((host.to_ascii_lowercase(), port, true))
}

/// Parse a transport (see [`Nexthop`]).
pub fn parse_transport(s: &str) -> Result<Nexthop, String> {
    let s = s.trim();
    let (kind, rest) = match s.split_once(':') {
        Some((k, r)) => (k, r),
        None => (s, ""),
    };
    match kind.to_ascii_lowercase().as_str() {
        "lmtp" | "local" | "virtual" if rest.is_empty() => Ok(Nexthop::DefaultLmtp),
        "lmtp" => {
            if let Some(p) = rest.strip_prefix("unix:") {
                if !p.starts_with('/') {
                    return Err(format!("{s:?}: lmtp:unix: needs an absolute path"));
                }
                return Ok(Nexthop::Lmtp(LmtpTarget::Unix(PathBuf::from(p))));
            }
            let hp = rest.strip_prefix("inet:").unwrap_or(rest);
            let (h, port, _) = parse_smtp_dest(hp)?;
            Ok(Nexthop::Lmtp(LmtpTarget::Inet(h, port.unwrap_or(24))))
        }
        "smtp" if rest.is_empty() => Ok(Nexthop::Smtp {
            host: None,
            port: None,
            mx: true,
        }),
        "smtp" => {
            let (h, port, mx) = parse_smtp_dest(rest)?;
            Ok(Nexthop::Smtp {
                host: Some(h),
                port,
                mx,
            })
        }
        "relay" if rest.is_empty() => Ok(Nexthop::Relay),
        "error" => {
            let text: String = rest.chars().filter(|c| !c.is_control()).take(200).collect();
            Ok(Nexthop::Error(if text.is_empty() {
                "mail for this destination is not accepted".into()
            } else {
                text
            }))
        }
        _ => Err(format!(
            "{s:?}: unknown transport (lmtp, lmtp:unix:/path, lmtp:inet:host:port, smtp, smtp:[host]:port, smtp:host, relay, error:text)"
        )),
    }
}

/// `queue.transport_maps`, parsed.
#[derive(Debug, Clone, Default)]
pub struct TransportMaps(BTreeMap<String, Nexthop>);

impl TransportMaps {
    /// Parse every entry; the error names the key.
    pub fn parse(map: &BTreeMap<String, String>) -> Result<Self, (String, String)> {
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let n = parse_transport(v).map_err(|e| (k.clone(), e))?;
            out.insert(k.trim().to_ascii_lowercase(), n);
        }
        Ok(Self(out))
    }

    /// Exact domain, then `.parent` entries from the nearest, then `*`.
    pub fn lookup(&self, domain: &str) -> Option<&Nexthop> {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(n) = self.0.get(&d) {
            return Some(n);
        }
        let mut rest = d.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(n) = self.0.get(&format!(".{parent}")) {
                return Some(n);
            }
            rest = parent;
        }
        self.0.get("*")
    }
}

/// A concrete next hop, the key for grouping and concurrency.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Dest {
    Lmtp(LmtpTarget),
    Smtp {
        host: String,
        port: u16,
        mx: bool,
        auth: bool,
    },
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::Lmtp(t) => write!(f, "lmtp:{t}"),
            Dest::Smtp {
                host,
                port,
                mx: true,
                ..
            } => write!(f, "smtp:{host}:{port}"),
            Dest::Smtp { host, port, .. } => write!(f, "smtp:[{host}]:{port}"),
        }
    }
}

enum Plan {
    Done(Outcome),
    Send(Dest, RcptTo),
    /// Targets of a multi-destination alias: (address, is a local mailbox).
    Expand(Vec<String>),
}

/// The routing transport.
pub struct Router {
    pub auth: apb::auth_client::AuthClient<Channel>,
    /// `lmtp.socket`.
    pub lmtp_socket: PathBuf,
    pub maps: TransportMaps,
    /// `queue.relayhost`: (host, port, MX lookup).
    pub relayhost: Option<(String, Option<u16>, bool)>,
    pub relay_auth: Option<Credentials>,
    pub smtp: SmtpClient,
    pub dns: Dns,
    /// `queue.smtp_port`.
    pub smtp_port: u16,
    /// Name in LHLO (`global.myhostname`).
    pub helo_name: String,
    /// First character of `global.recipient_delimiter` ("" = none).
    pub delimiter: String,
    /// Where expansions are re-queued.
    pub committer: Committer,
    /// Wakes the scheduler after a re-queue.
    pub wake: Arc<tokio::sync::Notify>,
    /// `queue.default_destination_concurrency_limit`.
    pub destination_limit: usize,
    /// This host's SMTP listening addresses (loop detection); empty = none.
    pub own_addresses: Vec<std::net::SocketAddr>,
    /// Idle LMTP connections for reuse.
    pub lmtp_pool: lmtp::LmtpPool,
    dests: Mutex<HashMap<Dest, Arc<Semaphore>>>,
}

impl Router {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        auth: apb::auth_client::AuthClient<Channel>,
        lmtp_socket: PathBuf,
        maps: TransportMaps,
        relayhost: Option<(String, Option<u16>, bool)>,
        relay_auth: Option<Credentials>,
        smtp: SmtpClient,
        dns: Dns,
        smtp_port: u16,
        helo_name: String,
        delimiter: String,
        committer: Committer,
        wake: Arc<tokio::sync::Notify>,
        destination_limit: usize,
    ) -> Self {
        Self {
            auth,
            lmtp_socket,
            maps,
            relayhost,
            relay_auth,
            smtp,
            dns,
            smtp_port,
            helo_name,
            delimiter,
            committer,
            wake,
            destination_limit: destination_limit.max(1),
            own_addresses: Vec::new(),
            lmtp_pool: lmtp::LmtpPool::default(),
            dests: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, d: &Dest) -> Arc<Semaphore> {
        let mut map = self.dests.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_DESTINATIONS {
            let limit = self.destination_limit;
            map.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < limit);
        }
        map.entry(d.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.destination_limit)))
            .clone()
    }

    /// The next hop for a final address.
    fn dest_for(&self, address: &str, local: bool, dir_transport: &str) -> Result<Dest, Outcome> {
        let domain = address
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        let hop = if let Some(n) = self.maps.lookup(&domain) {
            n.clone()
        } else if local {
            match parse_transport(dir_transport) {
                Ok(n) if !dir_transport.trim().is_empty() => n,
                Ok(_) => Nexthop::DefaultLmtp,
                Err(e) => {
                    tracing::warn!(domain, transport = dir_transport, error = %e, "directory transport not understood, delivering over LMTP");
                    Nexthop::DefaultLmtp
                }
            }
        } else if self.relayhost.is_some() {
            Nexthop::Relay
        } else {
            Nexthop::Smtp {
                host: None,
                port: None,
                mx: true,
            }
        };
        Ok(match hop {
            Nexthop::DefaultLmtp => Dest::Lmtp(LmtpTarget::Unix(self.lmtp_socket.clone())),
            Nexthop::Lmtp(t) => Dest::Lmtp(t),
            Nexthop::Smtp { host, port, mx } => Dest::Smtp {
                host: host.unwrap_or(domain),
                port: port.unwrap_or(self.smtp_port),
                mx,
                auth: false,
            },
            Nexthop::Relay => match &self.relayhost {
                Some((h, p, mx)) => Dest::Smtp {
                    host: h.clone(),
                    port: p.unwrap_or(self.smtp_port),
                    mx: *mx,
                    auth: self.relay_auth.is_some(),
                },
                None => Dest::Smtp {
                    host: domain,
                    port: self.smtp_port,
                    mx: true,
                    auth: false,
                },
            },
            Nexthop::Error(text) => return Err(Outcome::PermFail(format!("550 5.0.0 {text}"))),
        })
    }

    /// The address a mailbox is delivered to: the user's address, with the
    /// recipient's `+detail` when there is one.
    fn mailbox_address(&self, user: &str, original: &str, detail: &str) -> String {
        let user = if user.contains('@') {
            user.to_string()
        } else {
            let dom = original.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            format!("{user}@{dom}")
        };
        match (
            user.rsplit_once('@'),
            self.delimiter.is_empty() || detail.is_empty(),
        ) {
            (Some((l, d)), false) => format!("{l}{}{detail}@{d}", self.delimiter),
            _ => user,
        }
    }

    async fn plan(&self, m: &Message, i: usize) -> Plan {
        let r = &m.envelope.recipients[i];
        let addr = r.address.as_str();
        let mut auth = self.auth.clone();
        let resp = match auth
            .resolve_recipient(apb::ResolveRecipientRequest {
                address: addr.to_string(),
                authenticated: false,
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(e) => {
                tracing::warn!(queue_id = %m.id, to = %addr, error = %e, "recipient lookup failed");
                return Plan::Done(Outcome::TempFail(
                    "451 4.3.0 recipient lookup failed (authd unavailable)".into(),
                ));
            }
        };
        let rcpt = |address: String| {
            let orcpt = if !r.orcpt.is_empty() {
                r.orcpt.clone()
            } else if !address.eq_ignore_ascii_case(addr) {
                format!("rfc822;{addr}")
            } else {
                String::new()
            };
            RcptTo {
                address,
                notify: r.notify,
                orcpt,
            }
        };
        let send =
            |address: String, local: bool| match self.dest_for(&address, local, &resp.transport) {
                Ok(d) => Plan::Send(d, rcpt(address)),
                Err(o) => Plan::Done(o),
            };
        match Resolved::try_from(resp.status).unwrap_or(Resolved::Unspecified) {
            Resolved::NotOurs => send(addr.to_string(), false),
            Resolved::Local => {
                // Recipients of an expansion are final addresses already.
                if m.envelope.origin == EXPANDED_ORIGIN {
                    return send(addr.to_string(), true);
                }
                let mut targets: Vec<(String, bool)> = resp
                    .mailboxes
                    .iter()
                    .map(|mb| (self.mailbox_address(&mb.user, addr, &resp.detail), true))
                    .collect();
                targets.extend(resp.remote.iter().map(|a| (a.clone(), false)));
                match targets.len() {
                    0 => Plan::Done(Outcome::PermFail(format!(
                        "550 5.1.1 <{addr}>: recipient address unknown"
                    ))),
                    1 => {
                        let (a, local) = targets.pop().expect("one target");
                        send(a, local)
                    }
                    _ => Plan::Expand(targets.into_iter().map(|(a, _)| a).collect()),
                }
            }
            Resolved::Unknown => Plan::Done(Outcome::PermFail(format!(
                "550 5.1.1 <{addr}>: recipient address unknown"
            ))),
            Resolved::Disabled => Plan::Done(Outcome::PermFail(format!(
                "550 5.2.1 <{addr}>: mailbox disabled"
            ))),
            Resolved::TempFail | Resolved::Unspecified => Plan::Done(Outcome::TempFail(
                "451 4.3.0 recipient lookup failed temporarily".into(),
            )),
        }
    }

    /// Re-queue `content` for the expanded targets of `aliases` (recipient
    /// indexes, with their targets).
    async fn requeue(
        &self,
        m: &Message,
        content: &[u8],
        aliases: &[(usize, Vec<String>)],
    ) -> Result<String, String> {
        let mut recipients: Vec<Recipient> = Vec::new();
        for (i, targets) in aliases {
            let orig = &m.envelope.recipients[*i];
            for t in targets {
                if recipients.iter().any(|r| r.address.eq_ignore_ascii_case(t)) {
                    continue;
                }
                // Several targets: the alias gets an `expanded` success
                // report and its copies go out without SUCCESS (RFC 3461
                // 6.2.7, as Postfix); one target passes NOTIFY on.
                let notify = if targets.len() > 1 {
                    orig.notify & !crate::bounce::NOTIFY_SUCCESS
                } else {
                    orig.notify
                };
                recipients.push(Recipient {
                    address: t.clone(),
                    notify,
                    orcpt: if orig.orcpt.is_empty() {
                        format!("rfc822;{}", orig.address)
                    } else {
                        orig.orcpt.clone()
                    },
                });
            }
        }
        let env = Envelope {
            recipients,
            origin: EXPANDED_ORIGIN.to_string(),
            ..m.envelope.clone()
        };
        let id = self
            .committer
            .enqueue(env, content.to_vec())
            .await
            .map_err(|e| e.to_string())?;
        self.wake.notify_one();
        Ok(id.to_string())
    }

    async fn deliver_group(
        &self,
        dest: &Dest,
        m: &Message,
        content: &[u8],
        rcpts: &[RcptTo],
    ) -> Vec<Outcome> {
        let sem = self.semaphore(dest);
        let _permit = sem.acquire().await;
        match dest {
            Dest::Lmtp(t) => {
                lmtp::deliver_to(t, &self.helo_name, Some(&self.lmtp_pool), m, content, rcpts).await
            }
            Dest::Smtp {
                host,
                port,
                mx,
                auth,
            } => {
                let literal = host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok();
                let hosts = if *mx && !literal {
                    self.dns.mx_hosts(host).await
                } else {
                    self.dns.host(host).await.map(|addrs| {
                        vec![Host {
                            name: host.clone(),
                            addrs,
                        }]
                    })
                };
                let hosts = match hosts {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::info!(queue_id = %m.id, destination = %dest, error = %e, "no next hop");
                        let o = if e.is_permanent() {
                            Outcome::PermFail(e.to_string())
                        } else {
                            Outcome::TempFail(e.to_string())
                        };
                        return vec![o; rcpts.len()];
                    }
                };
                let creds = if *auth {
                    self.relay_auth.as_ref()
                } else {
                    None
                };
                let (own, targets): (Vec<_>, Vec<_>) = smtp_client::targets(&hosts, *port)
                    .into_iter()
                    .partition(|t| self.own_addresses.contains(&t.addr));
                if targets.is_empty() && !own.is_empty() {
                    tracing::error!(queue_id = %m.id, destination = %dest, "mail loops back to myself");
                    return vec![
                        Outcome::PermFail(format!(
                            "554 5.4.6 mail for {host} loops back to myself"
                        ));
                        rcpts.len()
                    ];
                }
                self.smtp.deliver(&targets, creds, m, content, rcpts).await
            }
        }
    }
}

#[tonic::async_trait]
impl Transport for Router {
    async fn deliver(&self, m: &Message, content: &[u8], rcpts: &[usize]) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = vec![None; rcpts.len()];
        let mut groups: Vec<(Dest, Vec<(usize, RcptTo)>)> = Vec::new();
        let mut expand: Vec<(usize, Vec<String>)> = Vec::new();
        for (k, &i) in rcpts.iter().enumerate() {
            match self.plan(m, i).await {
                Plan::Done(o) => {
                    let address = &m.envelope.recipients[i].address;
                    crate::metrics::record("none", crate::metrics::domain_of(address), &o);
                    out[k] = Some(o)
                }
                Plan::Send(d, r) => match groups.iter_mut().find(|(g, _)| *g == d) {
                    Some((_, v)) => v.push((k, r)),
                    None => groups.push((d, vec![(k, r)])),
                },
                Plan::Expand(t) => expand.push((k, t)),
            }
        }
        if !expand.is_empty() {
            let with_idx: Vec<(usize, Vec<String>)> =
                expand.iter().map(|(k, t)| (rcpts[*k], t.clone())).collect();
            let queued = self.requeue(m, content, &with_idx).await;
            for (k, t) in &expand {
                out[*k] = Some(match &queued {
                    Ok(id) => {
                        tracing::info!(queue_id = %m.id, to = %m.envelope.recipients[rcpts[*k]].address, targets = t.len(), new_queue_id = %id, "alias expanded, re-queued");
                        Outcome::Expanded { targets: t.len() }
                    }
                    Err(e) => {
                        tracing::error!(queue_id = %m.id, error = %e, "cannot re-queue an alias expansion");
                        Outcome::TempFail("451 4.3.0 cannot queue the alias expansion".into())
                    }
                });
            }
        }
        for (dest, list) in groups {
            let rc: Vec<RcptTo> = list.iter().map(|(_, r)| r.clone()).collect();
            tracing::debug!(queue_id = %m.id, destination = %dest, n = rc.len(), "delivering");
            let started = std::time::Instant::now();
            let res = self.deliver_group(&dest, m, content, &rc).await;
            let (transport, hop) = match &dest {
                Dest::Lmtp(_) => ("lmtp", None),
                Dest::Smtp { host, .. } => ("smtp", Some(host.as_str())),
            };
            crate::metrics::attempt(transport, started.elapsed());
            for ((_, r), o) in list.iter().zip(&res) {
                let domain = hop.unwrap_or_else(|| crate::metrics::domain_of(&r.address));
                crate::metrics::record(transport, domain, o);
            }
            for ((k, r), o) in list.iter().zip(res) {
                if o.is_success() {
                    tracing::info!(queue_id = %m.id, to = %r.address, relay = %dest, "sent");
                }
                out[*k] = Some(o);
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::TempFail("451 4.3.0 not routed".into())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_parse() {
        assert_eq!(parse_transport("lmtp").unwrap(), Nexthop::DefaultLmtp);
        assert_eq!(parse_transport("virtual:").unwrap(), Nexthop::DefaultLmtp);
        assert_eq!(
            parse_transport("lmtp:unix:/run/dovecot/lmtp").unwrap(),
            Nexthop::Lmtp(LmtpTarget::Unix("/run/dovecot/lmtp".into()))
        );
        assert_eq!(
            parse_transport("lmtp:inet:10.0.0.3:2424").unwrap(),
            Nexthop::Lmtp(LmtpTarget::Inet("10.0.0.3".into(), 2424))
        );
        assert_eq!(
            parse_transport("lmtp:[mail.example]").unwrap(),
            Nexthop::Lmtp(LmtpTarget::Inet("mail.example".into(), 24))
        );
        assert_eq!(
            parse_transport("smtp:[10.0.0.2]:2525").unwrap(),
            Nexthop::Smtp {
                host: Some("10.0.0.2".into()),
                port: Some(2525),
                mx: false
            }
        );
        assert_eq!(
            parse_transport("smtp:Relay.Example").unwrap(),
            Nexthop::Smtp {
                host: Some("relay.example".into()),
                port: None,
                mx: true
            }
        );
        assert_eq!(
            parse_transport("smtp:[::1]:25").unwrap(),
            Nexthop::Smtp {
                host: Some("::1".into()),
                port: Some(25),
                mx: false
            }
        );
        assert_eq!(
            parse_transport("smtp").unwrap(),
            Nexthop::Smtp {
                host: None,
                port: None,
                mx: true
            }
        );
        assert_eq!(parse_transport("relay").unwrap(), Nexthop::Relay);
        assert_eq!(
            parse_transport("error:no mail here").unwrap(),
            Nexthop::Error("no mail here".into())
        );
        for bad in [
            "uucp:x",
            "lmtp:unix:relative",
            "smtp:[x",
            "smtp:host:99999",
            "smtp:ho st",
            "smtp:[h]x",
        ] {
            assert!(parse_transport(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn maps_lookup_order() {
        let m: BTreeMap<String, String> = [
            ("example.net", "smtp:[10.0.0.1]"),
            (".example.net", "smtp:[10.0.0.2]"),
            ("*", "relay"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let t = TransportMaps::parse(&m).unwrap();
        let host = |d: &str| match t.lookup(d) {
            Some(Nexthop::Smtp { host, .. }) => host.clone().unwrap(),
            Some(Nexthop::Relay) => "relay".into(),
            other => panic!("{other:?}"),
        };
        assert_eq!(host("Example.NET"), "10.0.0.1");
        assert_eq!(host("a.b.example.net"), "10.0.0.2");
        assert_eq!(host("other.org"), "relay");
        let bad: BTreeMap<String, String> = [("x.test".to_string(), "nope:".to_string())].into();
        assert_eq!(TransportMaps::parse(&bad).unwrap_err().0, "x.test");
        assert!(TransportMaps::default().lookup("x.test").is_none());
    }

    #[test]
    fn relayhost_syntax() {
        assert_eq!(
            parse_smtp_dest("[smtp.isp.example]:587").unwrap(),
            ("smtp.isp.example".into(), Some(587), false)
        );
        assert_eq!(
            parse_smtp_dest("isp.example").unwrap(),
            ("isp.example".into(), None, true)
        );
        assert!(parse_smtp_dest("").is_err());
    }
}
