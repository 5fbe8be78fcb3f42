//! `mailctl dns DOMAIN`: every DNS record the domain needs, as a BIND zone
//! fragment (default) or JSON (`--json`).
//!
//! | record | value |
//! | --- | --- |
//! | `DOMAIN MX` | `10 <myhostname>` (`--mx-preference`) |
//! | `<myhostname> A/AAAA` | from `--ip`/`--ipv6`, else resolved with the system resolver (getaddrinfo: `/etc/hosts`, then DNS); the output says which, and prints a comment instead when there is none |
//! | `DOMAIN TXT` (SPF, RFC 7208) | `v=spf1 mx -all`: only the domain's MX hosts send its mail; everything else fails |
//! | `<selector>._domainkey.DOMAIN TXT` (DKIM, RFC 6376/8463) | `v=DKIM1; k=rsa\|ed25519; p=<public key>` for every key `mailctl dkim generate` made for the domain (active or not: rotation keeps two published); a note when there is none |
//! | `_dmarc.DOMAIN TXT` (RFC 7489) | `v=DMARC1; p=quarantine; rua=mailto:postmaster@DOMAIN`: mail failing SPF alignment goes to spam, aggregate reports to the domain's postmaster (who must exist: an alias will do) |
//! | `_mta-sts.DOMAIN TXT` (RFC 8461) | `v=STSv1; id=<hash of the policy>`; the policy (mode `autoconfig.mta_sts_mode`, mx `myhostname`) is served by autoconfigd at `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` |
//! | `_smtp._tls.DOMAIN TXT` (RFC 8460) | `v=TLSRPTv1; rua=mailto:postmaster@DOMAIN` |
//! | SRV (RFC 6186, RFC 8314) | `_submission._tcp`, `_submissions._tcp`, `_imap._tcp`, `_imaps._tcp`, `_pop3._tcp`, `_pop3s._tcp`: `0 1 <port> <myhostname>` with the port of the first listener of that role, or `0 0 0 .` (service not offered) when there is none |
//! | CNAME | `autoconfig`, `autodiscover` and `mta-sts` `.DOMAIN` → `myhostname` (where autoconfigd answers; the certificate must name them) |
//!
//! Names are absolute (trailing dot), so the fragment can be pasted into
//! any zone file or `$INCLUDE`d. The JSON form has `domain`, `hostname`,
//! `ttl`, `address_source` (`"option"`, `"resolved"`, `"none"`), `notes`
//! and `records`: objects with `name`, `type`, `ttl`, `data` (the zone-file
//! RDATA) and the typed fields of the record.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::path::Path;

use clap::Args;
use postern_autoconfigd::services::{self, Services};
use postern_checks::auth::keys::KeyStore;
use postern_common::Config;
use serde_json::{Value, json};

use super::admin;

/// Default TTL of the printed records (one hour).
pub const DEFAULT_TTL: u32 = 3600;
/// Longest character-string in a TXT record (RFC 1035 section 3.3).
const TXT_CHUNK: usize = 255;

#[derive(Debug, Args)]
pub struct DnsCmd {
    /// The mail domain (e.g. example.org).
    pub domain: String,
    /// IPv4 address of the mail host (repeatable); with --ip or --ipv6
    /// nothing is resolved.
    #[arg(long = "ip", value_name = "IPV4")]
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 address of the mail host (repeatable).
    #[arg(long = "ipv6", value_name = "IPV6")]
    pub ipv6: Vec<Ipv6Addr>,
    /// Print JSON instead of a BIND zone fragment.
    #[arg(long)]
    pub json: bool,
    /// TTL of every record, in seconds.
    #[arg(long, default_value_t = DEFAULT_TTL)]
    pub ttl: u32,
    /// Preference of the MX record.
    #[arg(long, default_value_t = 10)]
    pub mx_preference: u16,
}

/// Where the host addresses came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSource {
    /// `--ip` / `--ipv6`.
    Option,
    /// Resolved with the system resolver.
    Resolved,
    /// Neither given nor resolvable.
    None,
}

impl AddressSource {
    fn as_str(self) -> &'static str {
        match self {
            AddressSource::Option => "option",
            AddressSource::Resolved => "resolved",
            AddressSource::None => "none",
        }
    }
}

/// The data of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    Mx {
        preference: u16,
        exchange: String,
    },
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Txt(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Cname(String),
}

/// One resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute owner name, with the trailing dot.
    pub name: String,
    pub ttl: u32,
    pub data: RData,
    /// What the record is for (a comment line above it in the zone form).
    pub comment: Option<String>,
}

impl Record {
    pub fn rtype(&self) -> &'static str {
        match self.data {
            RData::Mx { .. } => "MX",
            RData::A(_) => "A",
            RData::Aaaa(_) => "AAAA",
            RData::Txt(_) => "TXT",
            RData::Srv { .. } => "SRV",
            RData::Cname(_) => "CNAME",
        }
    }

    /// The RDATA in zone-file presentation format.
    pub fn rdata(&self) -> String {
        match &self.data {
            RData::Mx {
                preference,
                exchange,
            } => format!("{preference} {exchange}"),
            RData::A(a) => a.to_string(),
            RData::Aaaa(a) => a.to_string(),
            RData::Txt(t) => txt_rdata(t),
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => format!("{priority} {weight} {port} {target}"),
            RData::Cname(c) => c.clone(),
        }
    }

    fn json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "type": self.rtype(),
            "ttl": self.ttl,
            "data": self.rdata(),
        });
        let extra = match &self.data {
            RData::Mx {
                preference,
                exchange,
            } => json!({ "preference": preference, "exchange": exchange }),
            RData::A(a) => json!({ "address": a.to_string() }),
            RData::Aaaa(a) => json!({ "address": a.to_string() }),
            RData::Txt(t) => json!({ "text": t }),
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => json!({ "priority": priority, "weight": weight, "port": port, "target": target }),
            RData::Cname(c) => json!({ "target": c }),
        };
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v
    }
}

/// TXT RDATA: quoted character-strings of at most 255 bytes, `"` and `\`
/// escaped (RFC 1035 section 5.1). The input is ASCII (built here).
pub fn txt_rdata(text: &str) -> String {
    let bytes = text.as_bytes();
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(TXT_CHUNK).collect()
    };
    chunks
        .iter()
        .map(|c| {
            let mut s = String::from("\"");
            for &b in *c {
                match b {
                    b'"' | b'\\' => {
                        s.push('\\');
                        s.push(b as char);
                    }
                    0x20..=0x7e => s.push(b as char),
                    other => s.push_str(&format!("\\{other:03}")),
                }
            }
            s.push('"');
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// Everything `mailctl dns` prints, computed from the configuration.
#[derive(Debug, Clone)]
pub struct Zone {
    pub domain: String,
    pub hostname: String,
    pub ttl: u32,
    pub address_source: AddressSource,
    pub records: Vec<Record>,
    pub notes: Vec<String>,
}

/// The records for `domain`, `addresses` being the host's (and where they
/// came from).
pub fn records(
    cfg: &Config,
    domain: &str,
    addresses: &[IpAddr],
    source: AddressSource,
    ttl: u32,
    mx_preference: u16,
) -> Zone {
    let s = Services::from_config(cfg);
    let host = fqdn(&s.hostname);
    let dom = fqdn(domain);
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let mut push = |name: String, data: RData, comment: Option<String>| {
        out.push(Record {
            name,
            ttl,
            data,
            comment,
        })
    };
    push(
        dom.clone(),
        RData::Mx {
            preference: mx_preference,
            exchange: host.clone(),
        },
        Some("mail exchanger: mail for the domain goes to this host".into()),
    );
    let addr_comment = match source {
        AddressSource::Option => format!("addresses of {host} (given with --ip/--ipv6)"),
        AddressSource::Resolved => {
            format!(
                "addresses of {host} (resolved with the system resolver: check they are the public ones)"
            )
        }
        AddressSource::None => String::new(),
    };
    let mut first = true;
    for a in addresses {
        let data = match a {
            IpAddr::V4(v4) => RData::A(*v4),
            IpAddr::V6(v6) => RData::Aaaa(*v6),
        };
        push(host.clone(), data, first.then(|| addr_comment.clone()));
        first = false;
    }
    if addresses.is_empty() {
        notes.push(format!(
            "no address for {host}: none given with --ip/--ipv6 and the system resolver found none; add its A/AAAA records"
        ));
    }
    push(
        dom.clone(),
        RData::Txt("v=spf1 mx -all".into()),
        Some("SPF (RFC 7208): only the MX hosts send mail for the domain".into()),
    );
    let store = KeyStore::new(
        cfg.checks
            .dkim_sign
            .key_directory(&cfg.global.state_directory),
    );
    let mut first = true;
    let mut keys = 0;
    for k in store.keys(&domain.to_ascii_lowercase()) {
        match k {
            Ok(k) => {
                keys += 1;
                push(
                    format!("{}.", k.dns_name()),
                    RData::Txt(k.dns_txt()),
                    first.then(|| {
                        "DKIM (RFC 6376, RFC 8463): every key of the domain, the active one and those being rotated in or out".to_string()
                    }),
                );
                first = false;
            }
            Err(e) => notes.push(format!("DKIM: {e}")),
        }
    }
    if keys == 0 {
        notes.push(format!(
            "DKIM: no key for {domain}: create one with mailctl dkim generate {domain}, then run this again"
        ));
    } else if store
        .active_selector(&domain.to_ascii_lowercase())
        .is_none()
    {
        notes.push(format!(
            "DKIM: no active key for {domain}: mailctl dkim activate {domain} SELECTOR"
        ));
    }
    push(
        format!("_dmarc.{dom}"),
        RData::Txt(format!(
            "v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"
        )),
        Some(format!(
            "DMARC (RFC 7489): unaligned mail to spam, aggregate reports to postmaster@{domain}"
        )),
    );
    let policy = services::mta_sts_policy(cfg);
    push(
        format!("_mta-sts.{dom}"),
        RData::Txt(format!("v=STSv1; id={}", services::mta_sts_id(&policy))),
        Some(format!(
            "MTA-STS (RFC 8461): policy mode {} served by autoconfigd at https://mta-sts.{domain}/.well-known/mta-sts.txt",
            cfg.autoconfig.mta_sts_mode
        )),
    );
    push(
        format!("_smtp._tls.{dom}"),
        RData::Txt(format!("v=TLSRPTv1; rua=mailto:postmaster@{domain}")),
        Some("TLS-RPT (RFC 8460): reports of TLS failures to postmaster".into()),
    );
    let mut first = true;
    for (protocol, security) in services::ALL {
        let label = services::srv_label(protocol, security);
        let data = match s.get(protocol, security) {
            Some(svc) => RData::Srv {
                priority: 0,
                weight: 1,
                port: svc.port,
                target: host.clone(),
            },
            None => RData::Srv {
                priority: 0,
                weight: 0,
                port: 0,
                target: ".".into(),
            },
        };
        push(
            format!("{label}.{dom}"),
            data,
            first.then(|| {
                "client discovery (RFC 6186, RFC 8314); \"0 0 0 .\" = not offered".to_string()
            }),
        );
        first = false;
    }
    let mut first = true;
    for label in ["autoconfig", "autodiscover", "mta-sts"] {
        push(
            format!("{label}.{dom}"),
            RData::Cname(host.clone()),
            first.then(|| {
                "client autoconfiguration and the MTA-STS policy (autoconfigd, HTTPS)".to_string()
            }),
        );
        first = false;
    }
    Zone {
        domain: domain.to_string(),
        hostname: s.hostname,
        ttl,
        address_source: source,
        records: out,
        notes,
    }
}

/// The BIND zone fragment.
pub fn render_bind(z: &Zone, config: &Path) -> String {
    let mut s = format!(
        "; DNS records for {}, mail host {} (mailctl dns, from {})\n",
        z.domain,
        z.hostname,
        config.display()
    );
    for n in &z.notes {
        s.push_str(&format!("; {n}\n"));
    }
    let width = z.records.iter().map(|r| r.name.len()).max().unwrap_or(0);
    for r in &z.records {
        if let Some(c) = r.comment.as_deref().filter(|c| !c.is_empty()) {
            s.push_str(&format!("; {c}\n"));
        }
        s.push_str(&format!(
            "{:<width$} {} IN {:<5} {}\n",
            r.name,
            r.ttl,
            r.rtype(),
            r.rdata()
        ));
    }
    s
}

/// The JSON document.
pub fn render_json(z: &Zone) -> Value {
    json!({
        "domain": z.domain,
        "hostname": z.hostname,
        "ttl": z.ttl,
        "address_source": z.address_source.as_str(),
        "notes": z.notes,
        "records": z.records.iter().map(Record::json).collect::<Vec<_>>(),
    })
}

/// The host's addresses with the system resolver (getaddrinfo), v4 first.
fn resolve(host: &str) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = match (host, 0u16).to_socket_addrs() {
        Ok(it) => it.map(|a| a.ip()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort_by_key(|a| (a.is_ipv6(), *a));
    v.dedup();
    v
}

pub fn run(file: &Path, cmd: DnsCmd) -> u8 {
    let cfg = match admin::load_config(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let domain = match postern_autoconfigd::documents::check_domain(&cmd.domain) {
        Ok(d) => d,
        Err(_) => {
            eprintln!("mailctl: {:?} is not a valid domain name", cmd.domain);
            return admin::EXIT_DATAERR;
        }
    };
    let (addresses, source) = if cmd.ipv4.is_empty() && cmd.ipv6.is_empty() {
        let found = resolve(&cfg.global.myhostname);
        let source = if found.is_empty() {
            AddressSource::None
        } else {
            AddressSource::Resolved
        };
        (found, source)
    } else {
        let given = cmd
            .ipv4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(cmd.ipv6.iter().map(|a| IpAddr::V6(*a)))
            .collect();
        (given, AddressSource::Option)
    };
    let zone = records(
        &cfg,
        &domain,
        &addresses,
        source,
        cmd.ttl,
        cmd.mx_preference,
    );
    if cmd.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&render_json(&zone)).unwrap_or_default()
        );
    } else {
        print!("{}", render_bind(&zone, file));
    }
    if source == AddressSource::None {
        eprintln!(
            "mailctl: no address found for {}: pass --ip/--ipv6",
            cfg.global.myhostname
        );
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        Config::parse_str(
            &format!("[global]\nmyhostname = \"mx.example.org\"\n{extra}"),
            Path::new("t.toml"),
            &Default::default(),
        )
        .unwrap()
    }

    fn find<'a>(z: &'a Zone, name: &str, rtype: &str) -> Vec<&'a Record> {
        z.records
            .iter()
            .filter(|r| r.name == name && r.rtype() == rtype)
            .collect()
    }

    #[test]
    fn txt_strings_are_quoted_escaped_and_split() {
        let cases: &[(&str, &str)] = &[
            ("v=spf1 mx -all", "\"v=spf1 mx -all\""),
            ("a\"b\\c", "\"a\\\"b\\\\c\""),
            ("", "\"\""),
            ("tab\there", "\"tab\\009here\""),
        ];
        for (input, want) in cases {
            assert_eq!(txt_rdata(input), *want, "{input:?}");
        }
        let long = "x".repeat(300);
        assert_eq!(
            txt_rdata(&long),
            format!("\"{}\" \"{}\"", "x".repeat(255), "x".repeat(45))
        );
    }

    #[test]
    fn every_record_the_domain_needs() {
        let addrs = ["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let z = records(
            &cfg(""),
            "example.org",
            &addrs,
            AddressSource::Option,
            300,
            5,
        );
        // (name, type, rdata) for each expected record.
        let table: &[(&str, &str, &str)] = &[
            ("example.org.", "MX", "5 mx.example.org."),
            ("mx.example.org.", "A", "192.0.2.1"),
            ("mx.example.org.", "AAAA", "2001:db8::1"),
            ("example.org.", "TXT", "\"v=spf1 mx -all\""),
            (
                "_dmarc.example.org.",
                "TXT",
                "\"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org\"",
            ),
            (
                "_smtp._tls.example.org.",
                "TXT",
                "\"v=TLSRPTv1; rua=mailto:postmaster@example.org\"",
            ),
            (
                "_submission._tcp.example.org.",
                "SRV",
                "0 1 587 mx.example.org.",
            ),
            (
                "_submissions._tcp.example.org.",
                "SRV",
                "0 1 465 mx.example.org.",
            ),
            ("_imap._tcp.example.org.", "SRV", "0 1 143 mx.example.org."),
            ("_imaps._tcp.example.org.", "SRV", "0 1 993 mx.example.org."),
            ("_pop3._tcp.example.org.", "SRV", "0 1 110 mx.example.org."),
            ("_pop3s._tcp.example.org.", "SRV", "0 1 995 mx.example.org."),
            ("autoconfig.example.org.", "CNAME", "mx.example.org."),
            ("autodiscover.example.org.", "CNAME", "mx.example.org."),
            ("mta-sts.example.org.", "CNAME", "mx.example.org."),
        ];
        for (name, rtype, rdata) in table {
            let found = find(&z, name, rtype);
            assert!(
                found.iter().any(|r| r.rdata() == *rdata),
                "{name} {rtype} {rdata}: got {found:?}"
            );
        }
        let sts = find(&z, "_mta-sts.example.org.", "TXT");
        assert_eq!(sts.len(), 1);
        assert!(sts[0].rdata().starts_with("\"v=STSv1; id="));
        assert_eq!(z.records.len(), table.len() + 1);
        assert!(z.records.iter().all(|r| r.ttl == 300));
        assert!(z.notes.iter().any(|n| n.contains("DKIM")));
    }

    #[test]
    fn missing_listeners_are_announced_as_not_offered() {
        let z = records(
            &cfg(
                "[pop3d]\nlistener = []\n[imapd]\nlistener = [{ name = \"i\", address = \"127.0.0.1:2993\", role = \"imaps\" }]\n",
            ),
            "example.org",
            &[],
            AddressSource::None,
            DEFAULT_TTL,
            10,
        );
        for (name, rdata) in [
            ("_pop3._tcp.example.org.", "0 0 0 ."),
            ("_pop3s._tcp.example.org.", "0 0 0 ."),
            ("_imap._tcp.example.org.", "0 0 0 ."),
            ("_imaps._tcp.example.org.", "0 1 2993 mx.example.org."),
        ] {
            assert_eq!(find(&z, name, "SRV")[0].rdata(), rdata, "{name}");
        }
        assert!(find(&z, "mx.example.org.", "A").is_empty());
        assert!(z.notes.iter().any(|n| n.contains("no address")));
    }

    #[test]
    fn bind_and_json_forms() {
        let addrs = ["192.0.2.1".parse().unwrap()];
        let z = records(
            &cfg(""),
            "example.org",
            &addrs,
            AddressSource::Resolved,
            DEFAULT_TTL,
            10,
        );
        let text = render_bind(&z, Path::new("/etc/postern/postern.toml"));
        let data_lines: Vec<&str> = text.lines().filter(|l| !l.starts_with(';')).collect();
        assert_eq!(data_lines.len(), z.records.len());
        for l in &data_lines {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f[0].ends_with('.'), "{l}");
            assert_eq!(f[1], "3600", "{l}");
            assert_eq!(f[2], "IN", "{l}");
        }
        assert!(text.contains("resolved with the system resolver"));
        assert!(text.contains(
            "; DKIM: no key for example.org: create one with mailctl dkim generate example.org"
        ));
        let j = render_json(&z);
        assert_eq!(j["address_source"], "resolved");
        assert_eq!(j["records"].as_array().unwrap().len(), z.records.len());
        assert_eq!(j["records"][0]["type"], "MX");
        assert_eq!(j["records"][0]["exchange"], "mx.example.org.");
        assert_eq!(j["records"][1]["address"], "192.0.2.1");
    }
}
