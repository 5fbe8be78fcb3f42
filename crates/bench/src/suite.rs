//! `postern-bench suite` — what `make bench` runs.
//!
//! For each of `--runs` rounds it starts a fresh postern stack (the six
//! daemons on a temporary directory and free loopback ports, the harness of
//! the black-box tests) and a fresh reference stack (Debian's Postfix
//! delivering through Dovecot's LMTP into Maildir, Dovecot serving POP3 and
//! IMAP, passwd-file users; also the tests' harness), and runs the same
//! workloads against both:
//!
//! * SMTP: `--messages` × `--size` over `--concurrency` sessions to one
//!   local user; accept rate (250s per second), p50/p99 latency, and
//!   end-to-end rate (timed until every message is a file in the Maildir);
//! * POP3: LIST + RETR of all those messages in one session;
//! * IMAP: mixed commands by `--imap-clients` clients for `--imap-seconds`.
//!
//! Each figure is the median of the runs. Then, once: RSS per idle
//! logged-in IMAP connection, `--idle` connections to postern's imapd, and
//! `--dovecot-idle` to Dovecot (whose figure is per process pair).
//!
//! Results go to `--out` as `bench-<date>.json` and `latest.json`, a PNG
//! chart `latest.png`, and a Markdown table on stdout (the README's).
//! `--only imap` measures the IMAP workload alone (after the SMTP fill it
//! needs; no POP3, no idle connections, nothing written to `--out`), e.g.
//! `postern-bench suite --only imap --runs 1 --no-reference`.
//!
//! Only loopback is used; every loop is bounded by count or time; both
//! stacks are stopped when the suite ends (drop guards).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use postern_tests::dovecot::{Dovecot, DovecotUser};
use postern_tests::postfix::Postfix;
use postern_tests::stack::mailctl;
use postern_tests::{Daemon, TestEnv};

use crate::{SmtpArgs, SmtpResult, imap_idle, pop3};

/// Options of `postern-bench suite`.
#[derive(clap::Args)]
pub struct SuiteArgs {
    /// Rounds; each figure is the median.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    #[arg(long, default_value_t = 10 * 1024)]
    size: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 10)]
    imap_clients: usize,
    #[arg(long, default_value_t = 30)]
    imap_seconds: u64,
    /// Idle IMAP connections to postern's imapd.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Idle IMAP connections to Dovecot (one process each).
    #[arg(long, default_value_t = 100)]
    dovecot_idle: usize,
    /// Skip the Postfix + Dovecot reference.
    #[arg(long)]
    no_reference: bool,
    /// Where the JSON and the chart go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Measure one workload only (`imap`: the mailbox is still filled over
    /// SMTP first; POP3 and the idle connections are skipped and nothing
    /// is written to `--out`).
    #[arg(long, value_enum)]
    only: Option<Only>,
}

/// The workloads `--only` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    /// IMAP mixed commands.
    Imap,
}

const USER: &str = "alice@example.test";
const PASS: &str = "bench-password";

/// One round's figures for one stack.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Round {
    pub smtp: SmtpResult,
    pub pop3_msg_per_s: f64,
    pub imap_cmd_per_s: f64,
}

/// A figure for the table: name, unit, postern, reference, higher is better.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub postern: f64,
    pub reference: Option<f64>,
    pub higher_is_better: bool,
}

impl Figure {
    /// postern relative to the reference, oriented so > 1 means postern is better.
    pub fn ratio(&self) -> Option<f64> {
        let r = self.reference?;
        if r <= 0.0 || self.postern <= 0.0 {
            return None;
        }
        Some(if self.higher_is_better {
            self.postern / r
        } else {
            r / self.postern
        })
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn raise_fd_limit(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let hard = hard.max(want);
        if setrlimit(Resource::RLIMIT_NOFILE, want.max(soft), hard).is_err() {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(want.max(soft)), hard);
        }
    }
}

/// A postern stack with one user, plaintext logins allowed on loopback
/// (both stacks are measured without TLS).
struct PosternStack {
    env: TestEnv,
    daemons: Vec<Daemon>,
}

impl PosternStack {
    fn start() -> anyhow::Result<Self> {
        let env = TestEnv::new();
        let mut text = env.config_text("level = \"info\"");
        text.push_str(
            "\n[authd.directory]\ncache_ttl_secs = 60\n\
             # A hash that costs about what Dovecot's passwd-file check does\n\
             # would be PLAIN; SHA512-CRYPT is the cheapest scheme we ship by default.\n\
             default_scheme = \"SHA512-CRYPT\"\n\
             \n[pop3d]\nallow_plaintext_auth = true\n\
             \n[imapd]\nallow_plaintext_auth = true\n",
        );
        // [pop3d]/[imapd] already exist in the base text: merge instead.
        let text = merge_sections(&text);
        std::fs::write(&env.config_path, text)?;
        mailctl(&env, &["domain", "add", "example.test"], None);
        mailctl(
            &env,
            &["user", "add", USER, "--password-stdin"],
            Some(&format!("{PASS}\n")),
        );
        let daemons = postern_tests::DAEMONS
            .iter()
            .map(|d| Daemon::start(&env, d))
            .collect();
        Ok(PosternStack { env, daemons })
    }

    fn maildir(&self) -> PathBuf {
        postern_tests::stack::maildir(&self.env, "alice")
    }

    fn port(&self, name: &str) -> String {
        format!("127.0.0.1:{}", self.env.ports[name])
    }

    fn imapd_pid(&self) -> u32 {
        self.daemons[5].pid()
    }
}

/// The base test config has `[pop3d]` and `[imapd]` with listeners; move
/// keys given in a second section of the same name into the first.
fn merge_sections(text: &str) -> String {
    // (header, lines); the first entry holds lines before any header.
    let mut sections: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
    let mut current = 0;
    for line in text.lines() {
        if line.starts_with('[') && !line.starts_with("[[") {
            let name = line.trim().to_string();
            current = match sections.iter().position(|(n, _)| *n == name) {
                Some(i) => i,
                None => {
                    sections.push((name, Vec::new()));
                    sections.len() - 1
                }
            };
            continue;
        }
        sections[current].1.push(line.to_string());
    }
    let mut out = String::new();
    for (name, lines) in sections {
        if !name.is_empty() {
            out.push_str(&name);
            out.push('\n');
        }
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// Postfix (smtpd, queue, lmtp client) → Dovecot LMTP → Maildir; Dovecot POP3/IMAP.
struct Reference {
    dovecot: Dovecot,
    postfix: Postfix,
}

impl Reference {
    fn start() -> Self {
        // Dovecot limits one user to 10 connections per IP by default;
        // the idle test opens more.
        let dovecot = Dovecot::start_with(
            &[DovecotUser {
                name: USER,
                password: PASS,
                mail: None,
            }],
            "protocol imap {\n  mail_max_userip_connections = 100000\n}\n\
             service imap {\n  process_limit = 100000\n}\n\
             service imap-login {\n  process_limit = 100000\n}\n\
             default_client_limit = 100000\n",
        );
        let postfix = Postfix::start(&format!(
            "virtual_mailbox_domains = example.test\n\
             virtual_mailbox_maps = static:OK\n\
             virtual_transport = lmtp:unix:{}\n\
             lmtp_destination_recipient_limit = 1\n",
            dovecot.lmtp_socket().display()
        ));
        Reference { dovecot, postfix }
    }

    /// Dovecot's IMAP processes (one `imap` and one `imap-login` per
    /// connection in the default high-security mode): children of the master.
    fn imap_pids(&self) -> Vec<u32> {
        let master = self.dovecot.pid();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let comm = head.rsplit_once('(').map(|(_, c)| c).unwrap_or("");
            let ppid: u32 = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if ppid == master && (comm == "imap" || comm == "imap-login") {
                pids.push(pid);
            }
        }
        pids
    }
}

async fn round(
    a: &SuiteArgs,
    label: &str,
    smtp_server: String,
    maildir: PathBuf,
    pop3_server: String,
    imap_server: String,
) -> anyhow::Result<Round> {
    let smtp = crate::smtp(SmtpArgs {
        server: smtp_server,
        from: "bench@example.org".into(),
        to: USER.into(),
        messages: a.messages,
        size: a.size,
        concurrency: a.concurrency,
        maildir: Some(maildir),
        label: label.into(),
    })
    .await
    .with_context(|| format!("{label}: SMTP"))?;
    let pop3_msg_per_s = if a.only == Some(Only::Imap) {
        0.0
    } else {
        pop3(pop3_server, USER.into(), PASS.into(), label.into())
            .await
            .with_context(|| format!("{label}: POP3"))?
    };
    let imap_cmd_per_s = crate::imap::mixed(
        &imap_server,
        USER,
        PASS,
        Some(a.messages),
        a.imap_clients,
        Duration::from_secs(a.imap_seconds),
        label,
    )
    .await
    .with_context(|| format!("{label}: IMAP"))?;
    Ok(Round {
        smtp,
        pop3_msg_per_s,
        imap_cmd_per_s,
    })
}

/// Run the suite.
pub async fn run(a: SuiteArgs) -> anyhow::Result<()> {
    raise_fd_limit((a.idle as u64) * 2 + 4096);
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..a.runs.max(1) {
        eprintln!("== round {} of {}", i + 1, a.runs.max(1));
        let p = PosternStack::start()?;
        ours.push(
            round(
                &a,
                "postern",
                p.port("smtp"),
                p.maildir(),
                p.port("pop3"),
                p.port("imap"),
            )
            .await?,
        );
        drop(p);
        if !a.no_reference {
            let r = Reference::start();
            let maildir = r.dovecot.maildir(USER);
            let res = round(
                &a,
                "postfix+dovecot",
                format!("127.0.0.1:{}", r.postfix.port),
                maildir,
                format!("127.0.0.1:{}", r.dovecot.pop3_port),
                format!("127.0.0.1:{}", r.dovecot.imap_port),
            )
            .await;
            match res {
                Ok(x) => theirs.push(x),
                Err(e) => {
                    eprintln!(
                        "reference failed: {e:#}\n--- postfix ---\n{}\n--- dovecot ---\n{}",
                        tail(&r.postfix.log()),
                        tail(&r.dovecot.log())
                    );
                    return Err(e);
                }
            }
        }
    }

    if a.only == Some(Only::Imap) {
        let med = |v: &[Round]| median(v.iter().map(|r| r.imap_cmd_per_s).collect());
        println!(
            "\nIMAP mixed commands, median of {} runs ({} clients, {} s): postern {:.1} cmd/s{}",
            a.runs.max(1),
            a.imap_clients,
            a.imap_seconds,
            med(&ours),
            if theirs.is_empty() {
                String::new()
            } else {
                format!(", Postfix + Dovecot {:.1} cmd/s", med(&theirs))
            }
        );
        return Ok(());
    }

    // Idle connections, once.
    eprintln!("== idle IMAP connections");
    let p = PosternStack::start()?;
    let pid = p.imapd_pid();
    let idle_ours = imap_idle(
        p.port("imap"),
        USER.into(),
        PASS.into(),
        a.idle,
        move || vec![pid],
        "postern".into(),
    )
    .await
    .context("postern: idle IMAP")?;
    let imapd_rss_kb = crate::rss_kb(&[pid]);
    drop(p);
    let idle_theirs = if a.no_reference {
        None
    } else {
        let r = Reference::start();
        let per = imap_idle(
            format!("127.0.0.1:{}", r.dovecot.imap_port),
            USER.into(),
            PASS.into(),
            a.dovecot_idle,
            || r.imap_pids(),
            "dovecot".into(),
        )
        .await
        .context("dovecot: idle IMAP")?;
        Some(per)
    };

    let med = |v: &[Round], f: fn(&Round) -> f64| median(v.iter().map(f).collect());
    let refm = |f: fn(&Round) -> f64| (!theirs.is_empty()).then(|| med(&theirs, f));
    let fig = |name: &str, unit: &str, f: fn(&Round) -> f64, higher: bool| Figure {
        name: name.into(),
        unit: unit.into(),
        postern: med(&ours, f),
        reference: refm(f),
        higher_is_better: higher,
    };
    let figures = vec![
        fig(
            "SMTP to mailbox (end-to-end, fsync on)",
            "msg/s",
            |r| r.smtp.end_to_end_per_s.unwrap_or(0.0),
            true,
        ),
        fig("SMTP accept rate", "msg/s", |r| r.smtp.accept_per_s, true),
        fig("SMTP latency p50", "ms", |r| r.smtp.p50_ms, false),
        fig("SMTP latency p99", "ms", |r| r.smtp.p99_ms, false),
        fig(
            "POP3 LIST+RETR, one session",
            "msg/s",
            |r| r.pop3_msg_per_s,
            true,
        ),
        fig("IMAP mixed commands", "cmd/s", |r| r.imap_cmd_per_s, true),
        Figure {
            name: "Memory (Pss) per idle IMAP connection".into(),
            unit: "KB".into(),
            postern: idle_ours,
            reference: idle_theirs,
            higher_is_better: false,
        },
    ];

    let machine = machine();
    let date = now_utc();
    let table = markdown(&figures, &a, &date, &machine, imapd_rss_kb);
    println!("\n{table}");
    std::fs::create_dir_all(&a.out).with_context(|| format!("create {}", a.out.display()))?;
    let json = serde_json::json!({
        "date": date,
        "machine": machine,
        "parameters": {
            "runs": a.runs, "messages": a.messages, "size": a.size,
            "concurrency": a.concurrency, "imap_clients": a.imap_clients,
            "imap_seconds": a.imap_seconds, "idle_connections": a.idle,
            "dovecot_idle_connections": a.dovecot_idle,
        },
        "figures": figures,
        "rounds": { "postern": ours, "reference": theirs },
        "imapd_rss_kb_with_idle_connections": imapd_rss_kb,
    });
    let text = serde_json::to_string_pretty(&json)?;
    let stamp = date.replace([':', ' '], "-");
    write(&a.out.join(format!("bench-{stamp}.json")), &text)?;
    write(&a.out.join("latest.json"), &text)?;
    write(&a.out.join("latest.md"), &table)?;
    match crate::chart::draw(&figures, &a.out.join("latest.png"), &date) {
        Ok(()) => eprintln!("chart: {}", a.out.join("latest.png").display()),
        Err(e) => eprintln!("chart not drawn: {e:#}"),
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn markdown(figs: &[Figure], a: &SuiteArgs, date: &str, machine: &str, rss_kb: u64) -> String {
    let mut t = format!(
        "Measured {date} on {machine} with `make bench` (median of {} runs; {} × {} B messages over {} SMTP sessions; {} IMAP clients for {} s; {} idle IMAP connections to postern, {} to Dovecot; imapd memory (Pss) with them: {} MB).\n\n\
         | workload | unit | postern | Postfix + Dovecot | postern advantage |\n|---|---|---:|---:|---:|\n",
        a.runs,
        a.messages,
        a.size,
        a.concurrency,
        a.imap_clients,
        a.imap_seconds,
        a.idle,
        a.dovecot_idle,
        rss_kb / 1024
    );
    for f in figs {
        let r = f.reference.map_or("—".into(), |v| format!("{v:.1}"));
        let x = f.ratio().map_or("—".into(), |v| format!("{v:.2}×"));
        t.push_str(&format!(
            "| {} | {} | {:.1} | {r} | {x} |\n",
            f.name, f.unit, f.postern
        ));
    }
    t
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024 / 1024);
    format!("{cores} cores ({cpu}), {mem_gb} GiB RAM")
}

fn now_utc() -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::now_utc()
        .format(&f)
        .unwrap_or_else(|_| "unknown date".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_ratio() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        let f = Figure {
            name: "x".into(),
            unit: "ms".into(),
            postern: 2.0,
            reference: Some(6.0),
            higher_is_better: false,
        };
        assert_eq!(f.ratio(), Some(3.0));
    }

    #[test]
    fn sections_are_merged() {
        let t = "[a]\nx = 1\n[b]\ny = 2\n[a]\nz = 3\n";
        assert_eq!(merge_sections(t), "[a]\nx = 1\nz = 3\n[b]\ny = 2\n");
    }
}
