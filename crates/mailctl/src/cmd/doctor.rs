//! `mailctl doctor [DOMAIN]`: what is wrong with this mail server, and how
//! to fix it.
//!
//! Checks, in order, each printed as `ok` or `PROBLEM` (with a `fix:` line)
//! or `note` (could not check; not counted as a problem):
//!
//! * **DNS**: every record `mailctl dns DOMAIN` says is needed, looked up
//!   with the configured resolver (`queue.dns_servers`, else the system's;
//!   `--resolver IP:PORT` overrides). MX: the mail host must be among the
//!   exchanges; A/AAAA of the mail host: the `--ip`/`--ipv6` addresses must
//!   be published (without them, the host must have at least one address);
//!   SPF: exactly one `v=spf1` TXT record at the domain (two are an SPF
//!   `permerror`); DMARC, TLS-RPT: a `v=DMARC1` / `v=TLSRPTv1` record;
//!   MTA-STS: the `id` must be the one of the policy autoconfigd serves
//!   (else senders keep a stale policy); SRV: exactly the expected
//!   priority/weight/port/target (a service not offered, `0 0 0 .`, may also
//!   be absent); autoconfig CNAMEs: a CNAME to the mail host or an address
//!   record; any other TXT record (e.g. DKIM keys): the exact text.
//! * **Reverse DNS**: each address of the mail host must have a PTR record
//!   naming `global.myhostname` (receivers reject or mark mail from hosts
//!   without matching forward and reverse DNS).
//! * **TLS**: every TLS listener of smtpd, pop3d, imapd and autoconfigd
//!   (implicit TLS, or STARTTLS/STLS on the plain ones) is connected to (an
//!   unspecified listen address is reached on loopback) and its certificate
//!   chain verified for `global.myhostname` against the system CAs
//!   (`/etc/ssl/certs/ca-certificates.crt`) plus `--ca-file`; a
//!   certificate valid now but not in [`EXPIRY_WARNING_DAYS`] days is a
//!   problem too (renewal failed).
//! * **Open relay**: a self-test. From a source address outside
//!   `global.mynetworks` (`--relay-source`, else the first address of the
//!   mail host that is local and not in `mynetworks`) it connects to the
//!   first `mx` listener and asks to relay to `RELAY_TEST_RECIPIENT`; the
//!   server must refuse with a 5xx. Nothing is sent (no DATA). When no
//!   such source address exists the test is skipped with a note.
//!
//! Without DOMAIN, every domain of the directory is checked (or
//! `global.mydomain` when the directory cannot be read). Exit status 0 when
//! there is no problem, 1 when there is at least one, 78 on a
//! configuration error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData as HRData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use postern_common::Config;
use postern_common::config::{HttpRole, ImapRole, Pop3Role, SmtpRole};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::admin;
use super::dns::{self, AddressSource, RData, Record};

/// A certificate that expires within this many days is a problem.
pub const EXPIRY_WARNING_DAYS: u64 = 14;
/// Connect, read and write timeout of each network check.
const NET_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest reply line read from a server under test.
const MAX_LINE: usize = 4096;
/// Recipient of the open-relay self-test: a reserved domain (RFC 2606),
/// never delivered anywhere even by an open relay.
pub const RELAY_TEST_RECIPIENT: &str = "postern-relay-test@relay-test.invalid";
/// Default CA bundle.
const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, Args)]
pub struct DoctorCmd {
    /// Domain to check (default: every domain of the directory).
    pub domain: Option<String>,
    /// DNS server to ask (`IP` or `IP:PORT`, repeatable) instead of
    /// `queue.dns_servers` / the system resolver.
    #[arg(long, value_name = "IP:PORT")]
    pub resolver: Vec<String>,
    /// Public IPv4 address the mail host must have (repeatable).
    #[arg(long = "ip", value_name = "IPV4")]
    pub ipv4: Vec<Ipv4Addr>,
    /// Public IPv6 address the mail host must have (repeatable).
    #[arg(long = "ipv6", value_name = "IPV6")]
    pub ipv6: Vec<Ipv6Addr>,
    /// More trusted CA certificates (PEM), besides the system's.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Local source address of the open-relay self-test (must not be in
    /// `global.mynetworks`).
    #[arg(long, value_name = "IP")]
    pub relay_source: Option<IpAddr>,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Ok(String),
    Problem { what: String, fix: String },
    Note(String),
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn ok(&mut self, what: impl Into<String>) {
        self.findings.push(Finding::Ok(what.into()));
    }
    fn problem(&mut self, what: impl Into<String>, fix: impl Into<String>) {
        self.findings.push(Finding::Problem {
            what: what.into(),
            fix: fix.into(),
        });
    }
    fn note(&mut self, what: impl Into<String>) {
        self.findings.push(Finding::Note(what.into()));
    }
    pub fn problems(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| matches!(f, Finding::Problem { .. }))
            .count()
    }
    pub fn render(&self) -> String {
        let mut s = String::new();
        for f in &self.findings {
            match f {
                Finding::Ok(w) => s.push_str(&format!("ok       {w}\n")),
                Finding::Note(w) => s.push_str(&format!("note     {w}\n")),
                Finding::Problem { what, fix } => {
                    s.push_str(&format!("PROBLEM  {what}\n         fix: {fix}\n"))
                }
            }
        }
        match self.problems() {
            0 => s.push_str("no problems found\n"),
            1 => s.push_str("1 problem found\n"),
            n => s.push_str(&format!("{n} problems found\n")),
        }
        s
    }
}

pub fn run(file: &Path, cmd: DoctorCmd) -> u8 {
    let cfg = match admin::load_config(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let domains: Vec<String> = match &cmd.domain {
        Some(d) => match postern_autoconfigd::documents::check_domain(d) {
            Ok(d) => vec![d],
            Err(_) => {
                eprintln!("mailctl: {d:?} is not a valid domain name");
                return admin::EXIT_DATAERR;
            }
        },
        None => directory_domains(&cfg, file),
    };
    let servers: Vec<String> = if cmd.resolver.is_empty() {
        cfg.queue.dns_servers.clone()
    } else {
        cmd.resolver.clone()
    };
    let mut report = Report::default();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailctl: {e}");
            return 1;
        }
    };
    let resolver = match resolver(&servers) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailctl: doctor: {e:#}");
            return admin::EXIT_CONFIG;
        }
    };
    let given: Vec<IpAddr> = cmd
        .ipv4
        .iter()
        .map(|a| IpAddr::V4(*a))
        .chain(cmd.ipv6.iter().map(|a| IpAddr::V6(*a)))
        .collect();
    let host_addrs =
        rt.block_on(async { check_dns(&cfg, &resolver, &domains, &given, &mut report).await });
    rt.block_on(check_reverse(&cfg, &resolver, &host_addrs, &mut report));
    let verifier = match verifier(cmd.ca_file.as_deref()) {
        Ok(v) => Some(v),
        Err(e) => {
            report.problem(
                format!("TLS: no trusted CA certificates: {e:#}"),
                "install the ca-certificates package or pass --ca-file",
            );
            None
        }
    };
    if let Some(v) = verifier {
        check_tls(&cfg, &v, &mut report);
    }
    rt.block_on(check_relay(
        &cfg,
        cmd.relay_source,
        &host_addrs,
        &mut report,
    ));
    print!("{}", report.render());
    u8::from(report.problems() > 0)
}

/// The directory's domains; `global.mydomain` when it cannot be read.
fn directory_domains(cfg: &Config, file: &Path) -> Vec<String> {
    let mut out = Vec::new();
    admin::block_on(async {
        if let Ok(d) = admin::open(cfg, file).await
            && let Ok(list) = d.domain_list().await
        {
            out.extend(list.into_iter().map(|d| d.name));
        }
        0
    });
    if out.is_empty() && !cfg.global.mydomain.is_empty() {
        out.push(cfg.global.mydomain.clone());
    }
    out
}

fn resolver(servers: &[String]) -> anyhow::Result<TokioResolver> {
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(5);
    opts.attempts = 2;
    opts.ndots = 0;
    opts.cache_size = 0;
    let mut builder = if servers.is_empty() {
        TokioResolver::builder_tokio().context("the system resolver configuration")?
    } else {
        let mut rc = ResolverConfig::new();
        for s in servers {
            let a = s
                .parse::<SocketAddr>()
                .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| anyhow!("{s:?}: not an IP address or IP:PORT"))?;
            rc.add_name_server(NameServerConfig::new(a, Protocol::Udp));
            rc.add_name_server(NameServerConfig::new(a, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(rc, TokioConnectionProvider::default())
    };
    *builder.options_mut() = opts;
    Ok(builder.build())
}

/// Published records of one name and type, as hickory RData; `Err` on a
/// lookup failure other than "no such name / no such record".
async fn lookup(r: &TokioResolver, name: &str, rtype: RecordType) -> Result<Vec<HRData>, String> {
    match r.lookup(name, rtype).await {
        Ok(l) => Ok(l
            .record_iter()
            .filter(|rec| rec.record_type() == rtype)
            .map(|rec| rec.data().clone())
            .collect()),
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

fn txt_text(d: &HRData) -> Option<String> {
    match d {
        HRData::TXT(t) => Some(
            t.txt_data()
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect(),
        ),
        _ => None,
    }
}

fn zone_line(r: &Record) -> String {
    format!("{} {} IN {} {}", r.name, r.ttl, r.rtype(), r.rdata())
}

/// The DNS checks; returns the mail host's addresses (given, else
/// published) for the reverse-DNS and relay checks.
async fn check_dns(
    cfg: &Config,
    r: &TokioResolver,
    domains: &[String],
    given: &[IpAddr],
    report: &mut Report,
) -> Vec<IpAddr> {
    let host = format!("{}.", cfg.global.myhostname.trim_end_matches('.'));
    let mut published: Vec<IpAddr> = Vec::new();
    let mut failed = false;
    for t in [RecordType::A, RecordType::AAAA] {
        match lookup(r, &host, t).await {
            Ok(v) => published.extend(v.iter().filter_map(|d| match d {
                HRData::A(a) => Some(IpAddr::V4(a.0)),
                HRData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })),
            Err(e) => {
                failed = true;
                report.problem(
                    format!("DNS: lookup of {host} {t} failed: {e}"),
                    "check the resolver (queue.dns_servers, /etc/resolv.conf) and that the zone is served",
                );
            }
        }
    }
    let (addrs, source) = if given.is_empty() {
        if published.is_empty() && !failed {
            report.problem(
                format!("DNS: {host} has no A or AAAA record"),
                format!(
                    "publish the public address(es) of the mail host: {host} 3600 IN A <address> (see mailctl dns --ip)"
                ),
            );
        }
        (published.clone(), AddressSource::Resolved)
    } else {
        (given.to_vec(), AddressSource::Option)
    };
    for domain in domains {
        let zone = dns::records(cfg, domain, &addrs, source, dns::DEFAULT_TTL, 10);
        for rec in &zone.records {
            if source == AddressSource::Resolved && matches!(rec.rtype(), "A" | "AAAA") {
                report.ok(format!("DNS: {} {} {}", rec.name, rec.rtype(), rec.rdata()));
                continue;
            }
            check_record(r, rec, &host, report).await;
        }
    }
    addrs
}

async fn check_record(r: &TokioResolver, rec: &Record, host: &str, report: &mut Report) {
    let what = format!("DNS: {} {}", rec.name, rec.rtype());
    let publish = format!("publish {}", zone_line(rec));
    let lookup_type = match rec.rtype() {
        "MX" => RecordType::MX,
        "A" => RecordType::A,
        "AAAA" => RecordType::AAAA,
        "TXT" => RecordType::TXT,
        "SRV" => RecordType::SRV,
        "CNAME" => RecordType::CNAME,
        other => {
            report.note(format!("{what}: records of type {other} are not checked"));
            return;
        }
    };
    let found = match lookup(r, &rec.name, lookup_type).await {
        Ok(v) => v,
        Err(e) => {
            report.problem(
                format!("{what}: lookup failed: {e}"),
                "check the resolver and that the zone is served",
            );
            return;
        }
    };
    match &rec.data {
        RData::Mx { exchange, .. } => {
            if found
                .iter()
                .any(|d| matches!(d, HRData::MX(m) if same_name(&m.exchange().to_utf8(), exchange)))
            {
                report.ok(format!("{what} -> {exchange}"));
            } else {
                report.problem(
                    format!("{what}: {exchange} is not an MX of the domain"),
                    publish,
                );
            }
        }
        RData::A(a) => {
            if found.iter().any(|d| matches!(d, HRData::A(x) if x.0 == *a)) {
                report.ok(format!("{what} {a}"));
            } else {
                report.problem(format!("{what}: {a} not published"), publish);
            }
        }
        RData::Aaaa(a) => {
            if found
                .iter()
                .any(|d| matches!(d, HRData::AAAA(x) if x.0 == *a))
            {
                report.ok(format!("{what} {a}"));
            } else {
                report.problem(format!("{what}: {a} not published"), publish);
            }
        }
        RData::Txt(want) => {
            let texts: Vec<String> = found.iter().filter_map(txt_text).collect();
            let prefix = ["v=spf1", "v=DMARC1", "v=STSv1", "v=TLSRPTv1"]
                .into_iter()
                .find(|p| want.starts_with(&format!("{p};")) || want.starts_with(&format!("{p} ")));
            let matching: Vec<&String> = match prefix {
                Some(p) => texts
                    .iter()
                    .filter(|t| {
                        t.len() >= p.len()
                            && t[..p.len()].eq_ignore_ascii_case(p)
                            && t[p.len()..].starts_with([';', ' '])
                    })
                    .collect(),
                None => texts.iter().filter(|t| *t == want).collect(),
            };
            match (prefix, matching.as_slice()) {
                (_, []) => report.problem(format!("{what}: {:?} not published", want), publish),
                (Some("v=spf1"), [_, _, ..]) => report.problem(
                    format!(
                        "{what}: {} SPF records (receivers treat that as a permanent error)",
                        matching.len()
                    ),
                    format!("keep only one: {}", zone_line(rec)),
                ),
                (Some("v=STSv1"), [one]) if *one != want => report.problem(
                    format!("{what}: published {one:?}, the policy served now has {want:?}"),
                    format!(
                        "update the record (senders refetch the policy when the id changes): {}",
                        zone_line(rec)
                    ),
                ),
                (_, [one, ..]) => report.ok(format!("{what} {one:?}")),
            }
        }
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            let not_offered = target == ".";
            let same = found.iter().any(|d| {
                matches!(d, HRData::SRV(s) if s.priority() == *priority && s.weight() == *weight
                    && s.port() == *port && same_name(&s.target().to_utf8(), target))
            });
            if same || (not_offered && found.is_empty()) {
                report.ok(format!("{what} {}", rec.rdata()));
            } else if found.is_empty() {
                report.problem(format!("{what}: not published"), publish);
            } else {
                let got: Vec<String> = found.iter().map(|d| d.to_string()).collect();
                report.problem(
                    format!(
                        "{what}: published {:?}, expected {}",
                        got.join(", "),
                        rec.rdata()
                    ),
                    format!("replace it with {}", zone_line(rec)),
                );
            }
        }
        RData::Cname(target) => {
            let cname_ok = found
                .iter()
                .any(|d| matches!(d, HRData::CNAME(c) if same_name(&c.0.to_utf8(), target)));
            let has_address = if cname_ok || !found.is_empty() {
                false
            } else {
                matches!(lookup(r, &rec.name, RecordType::A).await, Ok(v) if !v.is_empty())
                    || matches!(lookup(r, &rec.name, RecordType::AAAA).await, Ok(v) if !v.is_empty())
            };
            if cname_ok {
                report.ok(format!("{what} -> {target}"));
            } else if has_address {
                report.ok(format!(
                    "{what}: has its own address records (not a CNAME to {host})"
                ));
            } else {
                report.problem(format!("{what}: not published"), publish);
            }
        }
    }
}

/// PTR of each address must name myhostname.
async fn check_reverse(cfg: &Config, r: &TokioResolver, addrs: &[IpAddr], report: &mut Report) {
    let host = cfg.global.myhostname.trim_end_matches('.');
    for a in addrs {
        match r.reverse_lookup(*a).await {
            Ok(l) => {
                let names: Vec<String> = l
                    .iter()
                    .map(|p| p.0.to_utf8().trim_end_matches('.').to_string())
                    .collect();
                if names.iter().any(|n| same_name(n, host)) {
                    report.ok(format!("reverse DNS: {a} -> {host}"));
                } else {
                    report.problem(
                        format!("reverse DNS: {a} points to {:?}, not {host}", names.join(", ")),
                        format!("have the owner of {a} (your hosting provider) set its PTR record to {host}."),
                    );
                }
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => report.problem(
                format!("reverse DNS: {a} has no PTR record"),
                format!(
                    "have the owner of {a} (your hosting provider) set its PTR record to {host}."
                ),
            ),
            Err(e) => report.problem(
                format!("reverse DNS: lookup of {a} failed: {e}"),
                "check the resolver",
            ),
        }
    }
}

/// Records the server's certificate chain; handshake signatures are still
/// checked. The chain is verified afterwards, so that each failure can be
/// named and the expiry checked at a later time too.
#[derive(Debug)]
struct Capture {
    provider: Arc<rustls::crypto::CryptoProvider>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl rustls::client::danger::ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let mut c = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        c.clear();
        c.push(end_entity.clone().into_owned());
        c.extend(intermediates.iter().map(|i| i.clone().into_owned()));
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The verifier for the chains: system CAs plus `extra`.
fn verifier(extra: Option<&Path>) -> anyhow::Result<Arc<rustls::client::WebPkiServerVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    let mut files: Vec<&Path> = vec![Path::new(SYSTEM_CA_FILE)];
    files.extend(extra);
    for f in files {
        let pem = match std::fs::read(f) {
            Ok(p) => p,
            Err(e)
                if f == Path::new(SYSTEM_CA_FILE) && e.kind() == std::io::ErrorKind::NotFound =>
            {
                continue;
            }
            Err(e) => return Err(e).with_context(|| f.display().to_string()),
        };
        for c in rustls_pemfile::certs(&mut &pem[..]) {
            let c = c.with_context(|| f.display().to_string())?;
            let _ = roots.add(c);
        }
    }
    if roots.is_empty() {
        bail!("{SYSTEM_CA_FILE} missing and no --ca-file");
    }
    rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        postern_common::tls::provider(),
    )
    .build()
    .map_err(|e| anyhow!("{e}"))
}

/// How to reach a TLS listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Starttls {
    Implicit,
    Smtp,
    Pop3,
    Imap,
}

/// The address to connect to for a listen address (unspecified → loopback).
fn connect_addr(listen: &str) -> Option<SocketAddr> {
    let mut a = listen.to_socket_addrs().ok()?.next()?;
    if a.ip().is_unspecified() {
        a.set_ip(match a.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Some(a)
}

fn check_tls(cfg: &Config, v: &rustls::client::WebPkiServerVerifier, report: &mut Report) {
    let mut targets: Vec<(String, String, Starttls, &str)> = Vec::new();
    for l in &cfg.smtpd.listener {
        let (mode, unit) = match l.role {
            SmtpRole::Mx | SmtpRole::Submission => (Starttls::Smtp, "postern-smtpd"),
            SmtpRole::Submissions => (Starttls::Implicit, "postern-smtpd"),
        };
        targets.push((l.name.clone(), l.address.clone(), mode, unit));
    }
    for l in &cfg.pop3d.listener {
        let mode = match l.role {
            Pop3Role::Pop3 => Starttls::Pop3,
            Pop3Role::Pop3s => Starttls::Implicit,
        };
        targets.push((l.name.clone(), l.address.clone(), mode, "postern-pop3d"));
    }
    for l in &cfg.imapd.listener {
        let mode = match l.role {
            ImapRole::Imap => Starttls::Imap,
            ImapRole::Imaps => Starttls::Implicit,
        };
        targets.push((l.name.clone(), l.address.clone(), mode, "postern-imapd"));
    }
    for l in &cfg.autoconfig.listener {
        if l.role == HttpRole::Https {
            targets.push((
                l.name.clone(),
                l.address.clone(),
                Starttls::Implicit,
                "postern-autoconfigd",
            ));
        }
    }
    let host = cfg.global.myhostname.trim_end_matches('.').to_string();
    for (name, address, mode, unit) in targets {
        let what = format!("TLS: listener {name} ({address})");
        let Some(addr) = connect_addr(&address) else {
            report.problem(
                format!("{what}: address cannot be resolved"),
                "fix the listener address in the configuration",
            );
            continue;
        };
        let chain = match fetch_chain(addr, mode, &host) {
            Ok(c) => c,
            Err(e) => {
                report.problem(
                    format!("{what}: no TLS handshake: {e:#}"),
                    format!("start {unit} (systemctl start {unit}) and check its log (journalctl -u {unit})"),
                );
                continue;
            }
        };
        match verify_chain(v, &chain, &host) {
            Ok(()) => report.ok(format!(
                "{what}: certificate valid for {host} for at least {EXPIRY_WARNING_DAYS} days"
            )),
            Err(e) => report.problem(format!("{what}: {}", e.0), e.1),
        }
    }
}

/// Verify `chain` for `host` now and in [`EXPIRY_WARNING_DAYS`] days;
/// `Err((problem, fix))`.
fn verify_chain(
    v: &rustls::client::WebPkiServerVerifier,
    chain: &[CertificateDer<'static>],
    host: &str,
) -> Result<(), (String, String)> {
    use rustls::client::danger::ServerCertVerifier as _;
    let Some((ee, rest)) = chain.split_first() else {
        return Err((
            "the server sent no certificate".into(),
            "configure [tls] cert_file".into(),
        ));
    };
    let name = ServerName::try_from(host.to_string()).map_err(|e| {
        (
            format!("{host:?} is not a valid server name: {e}"),
            "fix global.myhostname".to_string(),
        )
    })?;
    let now = UnixTime::now();
    let later = UnixTime::since_unix_epoch(
        Duration::from_secs(now.as_secs()) + Duration::from_secs(EXPIRY_WARNING_DAYS * 86_400),
    );
    let explain = |e: rustls::Error, when: &str| -> (String, String) {
        use rustls::CertificateError as C;
        let renew = "renew the certificate (e.g. certbot renew), install it as [tls] cert_file and reload the daemons (systemctl reload postern.target)".to_string();
        match &e {
            rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) if when == "now" => {
                (format!("certificate expired: {e}"), renew)
            }
            rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => (
                format!("certificate expires within {EXPIRY_WARNING_DAYS} days"),
                renew,
            ),
            rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => (
                format!("certificate does not name {host}: {e}"),
                format!("get a certificate that includes {host} (and autoconfig/mta-sts names if autoconfigd serves HTTPS)"),
            ),
            rustls::Error::InvalidCertificate(C::UnknownIssuer) => (
                format!("certificate not signed by a trusted CA: {e}"),
                "use a certificate from a public CA (e.g. Let's Encrypt) and send the full chain (fullchain.pem) as [tls] cert_file".to_string(),
            ),
            _ => (format!("certificate not valid: {e}"), renew),
        }
    };
    v.verify_server_cert(ee, rest, &name, &[], now)
        .map_err(|e| explain(e, "now"))?;
    v.verify_server_cert(ee, rest, &name, &[], later)
        .map_err(|e| explain(e, "later"))?;
    Ok(())
}

fn read_line(r: &mut impl BufRead) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    r.by_ref()
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .context("reading a reply")?;
    if buf.is_empty() {
        bail!("connection closed");
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
}

/// An SMTP reply (the last line's code, all text).
fn smtp_reply(r: &mut impl BufRead) -> anyhow::Result<(u16, String)> {
    let mut text = String::new();
    loop {
        let l = read_line(r)?;
        text.push_str(&l);
        text.push('\n');
        if l.len() < 4 || l.as_bytes()[3] != b'-' {
            let code = l.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            return Ok((code, text.trim_end().to_string()));
        }
    }
}

fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, NET_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(NET_TIMEOUT))?;
    s.set_write_timeout(Some(NET_TIMEOUT))?;
    Ok(s)
}

/// Connect, STARTTLS if needed, handshake; the server's chain.
fn fetch_chain(
    addr: SocketAddr,
    mode: Starttls,
    host: &str,
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let tcp = connect(addr)?;
    {
        let mut w = tcp.try_clone()?;
        // Unbuffered reads: nothing of the TLS handshake may be swallowed.
        let mut r = BufReader::with_capacity(1, tcp.try_clone()?);
        match mode {
            Starttls::Implicit => {}
            Starttls::Smtp => {
                let (c, t) = smtp_reply(&mut r)?;
                if c != 220 {
                    bail!("greeting: {t}");
                }
                w.write_all(b"EHLO postern-doctor.invalid\r\n")?;
                let (c, t) = smtp_reply(&mut r)?;
                if c != 250 {
                    bail!("EHLO: {t}");
                }
                if !t.to_ascii_uppercase().contains("STARTTLS") {
                    bail!("STARTTLS not offered");
                }
                w.write_all(b"STARTTLS\r\n")?;
                let (c, t) = smtp_reply(&mut r)?;
                if c != 220 {
                    bail!("STARTTLS: {t}");
                }
            }
            Starttls::Pop3 => {
                let l = read_line(&mut r)?;
                if !l.starts_with("+OK") {
                    bail!("greeting: {l}");
                }
                w.write_all(b"STLS\r\n")?;
                let l = read_line(&mut r)?;
                if !l.starts_with("+OK") {
                    bail!("STLS: {l}");
                }
            }
            Starttls::Imap => {
                let l = read_line(&mut r)?;
                if !l.starts_with("* OK") {
                    bail!("greeting: {l}");
                }
                w.write_all(b"d1 STARTTLS\r\n")?;
                loop {
                    let l = read_line(&mut r)?;
                    if let Some(rest) = l.strip_prefix("d1 ") {
                        if !rest.starts_with("OK") {
                            bail!("STARTTLS: {l}");
                        }
                        break;
                    }
                }
            }
        }
    }
    let provider = postern_common::tls::provider();
    let capture = Arc::new(Capture {
        provider: provider.clone(),
        chain: Mutex::new(Vec::new()),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("{e}"))?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|e| anyhow!("{host}: {e}"))?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| anyhow!("{e}"))?;
    let mut tcp = tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).context("TLS handshake")?;
    }
    let chain = capture
        .chain
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(chain)
}

/// Whether `ip` is in `global.mynetworks`.
fn trusted(cfg: &Config, ip: IpAddr) -> bool {
    cfg.global.mynetworks.iter().any(|n| n.contains(&ip))
}

async fn check_relay(
    cfg: &Config,
    source: Option<IpAddr>,
    host_addrs: &[IpAddr],
    report: &mut Report,
) {
    let Some(l) = cfg.smtpd.listener.iter().find(|l| l.role == SmtpRole::Mx) else {
        report.note("open relay: no mx listener configured, nothing to test");
        return;
    };
    let Some(addr) = connect_addr(&l.address) else {
        report.problem(
            format!(
                "open relay: listener {} address {:?} cannot be resolved",
                l.name, l.address
            ),
            "fix the listener address",
        );
        return;
    };
    let source = match source {
        Some(s) => {
            if trusted(cfg, s) {
                report.problem(
                    format!("open relay: --relay-source {s} is in global.mynetworks (trusted: may relay)"),
                    "pass a source address outside mynetworks",
                );
                return;
            }
            s
        }
        None => {
            let local = host_addrs.iter().copied().find(|a| {
                !trusted(cfg, *a)
                    && a.is_ipv4() == addr.is_ipv4()
                    && std::net::TcpListener::bind((*a, 0)).is_ok()
            });
            match local {
                Some(a) => a,
                None => {
                    report.note(format!(
                        "open relay: not tested: no local address of the mail host outside mynetworks (pass --relay-source IP, an address of this machine outside {:?})",
                        cfg.global.mynetworks.iter().map(|n| n.to_string()).collect::<Vec<_>>()
                    ));
                    return;
                }
            }
        }
    };
    let what = format!("open relay: {} ({addr}) from {source}", l.name);
    match relay_attempt(addr, source).await {
        Ok((code, text)) if (500..600).contains(&code) => {
            report.ok(format!("{what}: relaying to {RELAY_TEST_RECIPIENT} refused ({text})"));
        }
        Ok((code, text)) if (200..300).contains(&code) => report.problem(
            format!("{what}: OPEN RELAY: RCPT TO:<{RELAY_TEST_RECIPIENT}> accepted ({text})"),
            "remove untrusted networks from global.mynetworks; only authenticated clients and mynetworks may relay",
        ),
        Ok((_, text)) => report.problem(
            format!("{what}: inconclusive, RCPT answered {text}"),
            "check that authd is running (smtpd answers 451 without it) and run doctor again",
        ),
        Err(e) => report.problem(
            format!("{what}: test failed: {e:#}"),
            "start postern-smtpd and check the listener address",
        ),
    }
}

/// MAIL and RCPT to an outside domain; the RCPT reply.
async fn relay_attempt(addr: SocketAddr, source: IpAddr) -> anyhow::Result<(u16, String)> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.bind(SocketAddr::new(source, 0))
        .with_context(|| format!("binding to {source}"))?;
    let s = tokio::time::timeout(NET_TIMEOUT, sock.connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr}: timeout"))?
        .with_context(|| format!("connecting to {addr}"))?;
    let s = s.into_std()?;
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(NET_TIMEOUT))?;
    s.set_write_timeout(Some(NET_TIMEOUT))?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<(u16, String)> {
        let mut w = s.try_clone()?;
        let mut r = BufReader::new(s);
        let (c, t) = smtp_reply(&mut r)?;
        if c != 220 {
            bail!("greeting: {t}");
        }
        w.write_all(b"EHLO postern-doctor.invalid\r\n")?;
        let (c, t) = smtp_reply(&mut r)?;
        if c != 250 {
            bail!("EHLO: {t}");
        }
        w.write_all(b"MAIL FROM:<postern-doctor@relay-test.invalid>\r\n")?;
        let (c, t) = smtp_reply(&mut r)?;
        if c != 250 {
            // Refused already at MAIL: no relaying either.
            w.write_all(b"QUIT\r\n").ok();
            return Ok((c, t));
        }
        w.write_all(format!("RCPT TO:<{RELAY_TEST_RECIPIENT}>\r\n").as_bytes())?;
        let reply = smtp_reply(&mut r)?;
        w.write_all(b"RSET\r\nQUIT\r\n").ok();
        Ok(reply)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_counts_and_renders_problems() {
        let mut r = Report::default();
        r.ok("a");
        r.note("b");
        assert_eq!(r.problems(), 0);
        assert!(r.render().ends_with("no problems found\n"));
        r.problem("c", "do d");
        let text = r.render();
        assert_eq!(r.problems(), 1);
        assert!(text.contains("PROBLEM  c\n         fix: do d\n"), "{text}");
        assert!(text.ends_with("1 problem found\n"));
    }

    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        assert_eq!(
            connect_addr("0.0.0.0:25"),
            Some("127.0.0.1:25".parse().unwrap())
        );
        assert_eq!(connect_addr("[::]:993"), Some("[::1]:993".parse().unwrap()));
        assert_eq!(
            connect_addr("192.0.2.1:25"),
            Some("192.0.2.1:25".parse().unwrap())
        );
    }
}
