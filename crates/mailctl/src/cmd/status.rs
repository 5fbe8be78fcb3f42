//! `mailctl status`: is every daemon up, and does it answer its protocol?
//!
//! For each daemon: its state from systemd when systemd runs the unit
//! (`systemctl show postern-<daemon>.service`), otherwise from its sockets;
//! its version and uptime from its metrics endpoint (`[metrics]`), else from
//! systemd; its listeners; and real protocol checks
//! ([`postern_common::probe`]): SMTP/LMTP greeting + NOOP, POP3 greeting +
//! CAPA, IMAP greeting + NOOP (over TLS on implicit-TLS listeners), HTTP for
//! autoconfigd, and the gRPC version handshake with authd and queue-manager
//! (which also gives the queue summary). autoconfigd without a listener is
//! `off`, not down.
//!
//! States: `up` (every check passed, and systemd says active when it knows
//! the unit), `degraded` (running but a check failed), `down` (not running,
//! or nothing answers). Exit 0 when every daemon is up or off, 1 otherwise
//! (the daemons that are not up are named on stderr), 78 for a bad
//! configuration.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use clap::Args;
use postern_common::Config;
use postern_common::probe::{self, Protocol, Target};
use serde_json::{Value, json};

use super::admin;

#[derive(Debug, Args)]
pub struct StatusCmd {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seconds each check may take.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
}

/// One protocol check.
struct Check {
    name: String,
    target: String,
    ok: bool,
    detail: String,
    ms: u128,
}

/// What is known about one daemon.
struct Daemon {
    name: &'static str,
    enabled: bool,
    state: &'static str,
    source: &'static str,
    version: Option<String>,
    uptime: Option<u64>,
    listeners: Vec<String>,
    checks: Vec<Check>,
}

const DAEMONS: [&str; 7] = [
    "authd",
    "lmtp-delivery",
    "queue-manager",
    "smtpd",
    "pop3d",
    "imapd",
    "autoconfigd",
];

pub fn run(file: &Path, cmd: StatusCmd) -> u8 {
    let cfg = match admin::load_config(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    admin::block_on(async move {
        let timeout = Duration::from_secs(cmd.timeout.max(1));
        let mut daemons = Vec::new();
        let mut queue = None;
        for name in DAEMONS {
            let (d, q) = inspect(&cfg, name, timeout).await;
            if q.is_some() {
                queue = q;
            }
            daemons.push(d);
        }
        let bad: Vec<&str> = daemons
            .iter()
            .filter(|d| d.enabled && d.state != "up")
            .map(|d| d.name)
            .collect();
        if cmd.json {
            println!("{}", to_json(&daemons, queue.as_ref(), bad.is_empty()));
        } else {
            print_table(&daemons, queue.as_ref());
        }
        if bad.is_empty() {
            0
        } else {
            eprintln!("mailctl: not up: {}", bad.join(", "));
            admin::EXIT_FAILURE
        }
    })
}

async fn inspect(
    cfg: &Config,
    name: &'static str,
    timeout: Duration,
) -> (Daemon, Option<BTreeMap<String, u64>>) {
    let enabled = name != "autoconfigd" || !cfg.autoconfig.listener.is_empty();
    let mut d = Daemon {
        name,
        enabled,
        state: "off",
        source: "sockets",
        version: None,
        uptime: None,
        listeners: listeners(cfg, name),
        checks: Vec::new(),
    };
    if !enabled {
        return (d, None);
    }
    let mut queue = None;
    match name {
        "authd" => d.checks.push(auth_handshake(cfg, timeout).await),
        "queue-manager" => {
            let (c, q) = queue_handshake(cfg, timeout).await;
            d.checks.push(c);
            queue = q;
        }
        "lmtp-delivery" => {
            let uri = Config::socket_uri(&cfg.lmtp.socket);
            d.checks.push(
                run_probe(
                    "lmtp",
                    uri.path().display().to_string(),
                    Target::Unix(uri.path()),
                    Protocol::Lmtp,
                    timeout,
                )
                .await,
            );
            for l in &cfg.lmtp.listener {
                d.checks.push(
                    run_probe(
                        &l.name,
                        l.address.clone(),
                        Target::Tcp {
                            address: &l.address,
                            tls: false,
                        },
                        Protocol::Lmtp,
                        timeout,
                    )
                    .await,
                );
            }
        }
        "smtpd" => {
            for l in &cfg.smtpd.listener {
                let tls = l.role == postern_common::config::SmtpRole::Submissions;
                d.checks.push(
                    run_probe(
                        &l.name,
                        l.address.clone(),
                        Target::Tcp {
                            address: &l.address,
                            tls,
                        },
                        Protocol::Smtp,
                        timeout,
                    )
                    .await,
                );
            }
        }
        "pop3d" => {
            for l in &cfg.pop3d.listener {
                let tls = l.role == postern_common::config::Pop3Role::Pop3s;
                d.checks.push(
                    run_probe(
                        &l.name,
                        l.address.clone(),
                        Target::Tcp {
                            address: &l.address,
                            tls,
                        },
                        Protocol::Pop3,
                        timeout,
                    )
                    .await,
                );
            }
        }
        "imapd" => {
            for l in &cfg.imapd.listener {
                let tls = l.role == postern_common::config::ImapRole::Imaps;
                d.checks.push(
                    run_probe(
                        &l.name,
                        l.address.clone(),
                        Target::Tcp {
                            address: &l.address,
                            tls,
                        },
                        Protocol::Imap,
                        timeout,
                    )
                    .await,
                );
            }
        }
        "autoconfigd" => {
            for l in &cfg.autoconfig.listener {
                let tls = l.role == postern_common::config::HttpRole::Https;
                d.checks.push(
                    run_probe(
                        &l.name,
                        l.address.clone(),
                        Target::Tcp {
                            address: &l.address,
                            tls,
                        },
                        Protocol::Http,
                        timeout,
                    )
                    .await,
                );
            }
        }
        _ => {}
    }
    if let Some(address) = cfg.metrics.address(name) {
        match scrape(&address.to_string(), name, timeout).await {
            Ok((version, started)) => {
                d.version = version;
                d.uptime = started.map(|s| now().saturating_sub(s));
                d.checks.push(Check {
                    name: "metrics".into(),
                    target: format!("http://{address}/metrics"),
                    ok: true,
                    detail: "scraped".into(),
                    ms: 0,
                });
            }
            Err(e) => d.checks.push(Check {
                name: "metrics".into(),
                target: format!("http://{address}/metrics"),
                ok: false,
                detail: e,
                ms: 0,
            }),
        }
    }
    if d.version.is_none() {
        // The gRPC handshake names the server: "postern-authd/0.1.0".
        let server = format!("postern-{name}/");
        d.version = d
            .checks
            .iter()
            .find_map(|c| c.detail.strip_prefix(&server).filter(|_| c.ok))
            .map(str::to_string);
    }
    let passed = d.checks.iter().filter(|c| c.ok).count();
    let from_sockets = if passed == d.checks.len() && passed > 0 {
        "up"
    } else if passed == 0 {
        "down"
    } else {
        "degraded"
    };
    d.state = match systemd(name) {
        Some(unit) => {
            d.source = "systemd";
            if d.uptime.is_none() {
                d.uptime = unit.since.map(|s| now().saturating_sub(s));
            }
            if unit.active == "active" {
                if from_sockets == "up" {
                    "up"
                } else {
                    "degraded"
                }
            } else {
                "down"
            }
        }
        None => from_sockets,
    };
    (d, queue)
}

fn listeners(cfg: &Config, name: &str) -> Vec<String> {
    let fmt = |n: &str, a: &str| format!("{n} {a}");
    match name {
        "authd" => vec![fmt("auth", &cfg.authd.socket)],
        "queue-manager" => vec![
            fmt("queue", &cfg.queue.socket),
            fmt("submit", &cfg.queue.public_socket),
        ],
        "lmtp-delivery" => std::iter::once(fmt("lmtp", &cfg.lmtp.socket))
            .chain(cfg.lmtp.listener.iter().map(|l| fmt(&l.name, &l.address)))
            .collect(),
        "smtpd" => cfg
            .smtpd
            .listener
            .iter()
            .map(|l| fmt(&l.name, &l.address))
            .collect(),
        "pop3d" => cfg
            .pop3d
            .listener
            .iter()
            .map(|l| fmt(&l.name, &l.address))
            .collect(),
        "imapd" => cfg
            .imapd
            .listener
            .iter()
            .map(|l| fmt(&l.name, &l.address))
            .collect(),
        "autoconfigd" => cfg
            .autoconfig
            .listener
            .iter()
            .map(|l| fmt(&l.name, &l.address))
            .collect(),
        _ => Vec::new(),
    }
}

async fn run_probe(
    name: &str,
    target_text: String,
    target: Target<'_>,
    protocol: Protocol,
    timeout: Duration,
) -> Check {
    let tls = matches!(target, Target::Tcp { tls: true, .. });
    let label = format!("{protocol:?}{}", if tls { "+TLS" } else { "" }).to_ascii_lowercase();
    match probe::probe(target, protocol, timeout).await {
        Ok(ok) => Check {
            name: name.to_string(),
            target: format!("{target_text} ({label})"),
            ok: true,
            detail: ok.banner.chars().take(80).collect(),
            ms: ok.elapsed.as_millis(),
        },
        Err(e) => Check {
            name: name.to_string(),
            target: format!("{target_text} ({label})"),
            ok: false,
            detail: e.to_string(),
            ms: 0,
        },
    }
}

fn dial_opts(timeout: Duration) -> postern_ipc::DialOptions {
    postern_ipc::DialOptions {
        connect_timeout: timeout,
        request_timeout: timeout,
    }
}

async fn auth_handshake(cfg: &Config, timeout: Duration) -> Check {
    use postern_ipc::auth::v1::auth_client::AuthClient;
    let uri = Config::socket_uri(&cfg.authd.socket);
    let started = std::time::Instant::now();
    let result = async {
        let channel = postern_ipc::dial(&uri, &dial_opts(timeout)).map_err(|e| e.to_string())?;
        let reply = AuthClient::new(channel)
            .handshake(postern_ipc::auth_handshake("mailctl"))
            .await
            .map_err(|e| e.message().to_string())?;
        postern_ipc::check_auth_version(reply.get_ref().version.as_ref())
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(reply.into_inner().server)
    }
    .await;
    Check {
        name: "auth".into(),
        target: format!("{uri} (grpc handshake)"),
        ok: result.is_ok(),
        ms: started.elapsed().as_millis(),
        detail: result.unwrap_or_else(|e| e),
    }
}

async fn queue_handshake(
    cfg: &Config,
    timeout: Duration,
) -> (Check, Option<BTreeMap<String, u64>>) {
    use postern_ipc::queue::v1 as pb;
    let uri = Config::socket_uri(&cfg.queue.socket);
    let started = std::time::Instant::now();
    let result = async {
        let channel = postern_ipc::dial(&uri, &dial_opts(timeout)).map_err(|e| e.to_string())?;
        let mut client = pb::queue_client::QueueClient::new(channel);
        let reply = client
            .handshake(postern_ipc::queue_handshake("mailctl"))
            .await
            .map_err(|e| e.message().to_string())?;
        let server = reply.into_inner().server;
        let list = client
            .list(pb::ListRequest { queues: Vec::new() })
            .await
            .map_err(|e| e.message().to_string())?;
        let mut counts: BTreeMap<String, u64> = ["incoming", "active", "deferred", "hold"]
            .iter()
            .map(|q| (q.to_string(), 0))
            .collect();
        for e in list.into_inner().entries {
            *counts.entry(e.queue).or_default() += 1;
        }
        Ok::<_, String>((server, counts))
    }
    .await;
    let ms = started.elapsed().as_millis();
    let target = format!("{uri} (grpc handshake + list)");
    match result {
        Ok((server, counts)) => (
            Check {
                name: "queue".into(),
                target,
                ok: true,
                detail: server,
                ms,
            },
            Some(counts),
        ),
        Err(e) => (
            Check {
                name: "queue".into(),
                target,
                ok: false,
                detail: e,
                ms,
            },
            None,
        ),
    }
}

/// Version and start time from a daemon's metrics endpoint.
async fn scrape(
    address: &str,
    daemon: &str,
    timeout: Duration,
) -> Result<(Option<String>, Option<u64>), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(address).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut body = Vec::new();
        // A scrape is small; 4 MiB bounds a misbehaving endpoint.
        (&mut s).take(4 << 20).read_to_end(&mut body).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&body).into_owned())
    };
    let text = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    if !text.starts_with("HTTP/1.1 200") {
        return Err(text.lines().next().unwrap_or("empty answer").to_string());
    }
    let prefix = postern_common::metrics::prefix(daemon);
    let version = text.lines().find_map(|l| {
        l.strip_prefix(&format!("{prefix}_build_info{{version=\""))?
            .split('"')
            .next()
            .map(str::to_string)
    });
    let started = text.lines().find_map(|l| {
        l.strip_prefix(&format!("{prefix}_start_time_seconds "))?
            .trim()
            .parse::<f64>()
            .ok()
            .map(|s| s as u64)
    });
    Ok((version, started))
}

struct Unit {
    active: String,
    since: Option<u64>,
}

/// The unit's state when systemd runs and knows `postern-<daemon>.service`.
fn systemd(daemon: &str) -> Option<Unit> {
    if !Path::new("/run/systemd/system").exists() {
        return None;
    }
    let out = std::process::Command::new("systemctl")
        .args([
            "show",
            &format!("postern-{daemon}.service"),
            "--timestamp=unix",
            "-p",
            "LoadState,ActiveState,ActiveEnterTimestamp",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_unit(&String::from_utf8_lossy(&out.stdout))
}

/// `systemctl show` output (`Key=Value` lines) → the unit's state, if loaded.
fn parse_unit(text: &str) -> Option<Unit> {
    let props: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    if props.get("LoadState") != Some(&"loaded") {
        return None;
    }
    Some(Unit {
        active: props.get("ActiveState").unwrap_or(&"unknown").to_string(),
        since: props
            .get("ActiveEnterTimestamp")
            .and_then(|t| t.trim_start_matches('@').parse().ok())
            .filter(|t| *t > 0),
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn human(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn print_table(daemons: &[Daemon], queue: Option<&BTreeMap<String, u64>>) {
    println!(
        "{:<14} {:<9} {:<9} {:<8} {:<8} LISTENERS",
        "DAEMON", "STATE", "VERSION", "UPTIME", "FROM"
    );
    for d in daemons {
        println!(
            "{:<14} {:<9} {:<9} {:<8} {:<8} {}",
            d.name,
            d.state,
            d.version.as_deref().unwrap_or("-"),
            d.uptime.map(human).unwrap_or_else(|| "-".into()),
            if d.enabled { d.source } else { "-" },
            if d.listeners.is_empty() {
                "-".to_string()
            } else {
                d.listeners.join(", ")
            },
        );
        for c in &d.checks {
            println!(
                "    - {:<12} {:<40} {:<4} {}{}",
                c.name,
                c.target,
                if c.ok { "ok" } else { "FAIL" },
                c.detail,
                if c.ok && c.ms > 0 {
                    format!(" ({} ms)", c.ms)
                } else {
                    String::new()
                },
            );
        }
    }
    match queue {
        Some(q) => println!(
            "queue: {}",
            q.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => println!("queue: unknown (queue-manager does not answer)"),
    }
}

fn to_json(daemons: &[Daemon], queue: Option<&BTreeMap<String, u64>>, ok: bool) -> Value {
    json!({
        "ok": ok,
        "daemons": daemons.iter().map(|d| json!({
            "name": d.name,
            "state": d.state,
            "source": d.source,
            "version": d.version,
            "uptime_seconds": d.uptime,
            "listeners": d.listeners,
            "checks": d.checks.iter().map(|c| json!({
                "name": c.name,
                "target": c.target,
                "ok": c.ok,
                "detail": c.detail,
                "ms": c.ms as u64,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "queue": queue,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_show_output_is_parsed() {
        let u =
            parse_unit("LoadState=loaded\nActiveState=active\nActiveEnterTimestamp=@1764700000\n")
                .unwrap();
        assert_eq!(u.active, "active");
        assert_eq!(u.since, Some(1764700000));
        let u =
            parse_unit("LoadState=loaded\nActiveState=failed\nActiveEnterTimestamp=\n").unwrap();
        assert_eq!((u.active.as_str(), u.since), ("failed", None));
        // A unit systemd does not know: fall back to the sockets.
        assert!(parse_unit("LoadState=not-found\nActiveState=inactive\n").is_none());
    }

    #[test]
    fn uptime_is_short_and_readable() {
        assert_eq!(human(59), "59s");
        assert_eq!(human(61), "1m01s");
        assert_eq!(human(3 * 3600 + 120), "3h02m");
        assert_eq!(human(2 * 86400 + 3600), "2d1h");
    }
}
