//! postern-bench — protocol load generator used by `make bench`.
//!
//! It speaks plain SMTP, POP3 and IMAP over TCP to any server, so the same
//! numbers can be taken for postern and for Postfix + Dovecot on the same box.
//!
//! ```text
//! postern-bench smtp --server 127.0.0.1:2525 --from a@x --to b@y --messages 2000 --size 10240 --concurrency 8 [--maildir DIR]
//! postern-bench pop3 --server 127.0.0.1:2110 --user u --pass p
//! postern-bench imap-idle --server 127.0.0.1:2143 --user u --pass p --connections 500 --pid PID
//! ```
//!
//! `smtp` prints the accept rate (messages acknowledged with 250 per second)
//! and p50/p99 of the per-message latency (MAIL FROM to the 250 after the
//! final dot); with `--maildir` it also waits until that many new files are
//! in `DIR/new` + `DIR/cur` and prints the end-to-end rate.
//! `pop3` logs in, LISTs, and RETRs every message in one session: msg/s.
//! `imap-idle` opens N logged-in idle IMAP connections and reports the
//! server's RSS growth per connection from `/proc/PID/status`.
//! Numbers are printed, never judged: tests do not fail on timing.

mod chart;
mod imap;
mod suite;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(name = "postern-bench", about = "Protocol load generator (make bench)")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// SMTP accept rate and latency; end-to-end with --maildir.
    Smtp(SmtpArgs),
    /// POP3 LIST + RETR of every message in one session.
    Pop3 {
        #[arg(long)]
        server: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        pass: String,
        #[arg(long, default_value = "server")]
        label: String,
    },
    /// Memory per idle, logged-in IMAP connection.
    ImapIdle {
        #[arg(long)]
        server: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        pass: String,
        #[arg(long, default_value_t = 200)]
        connections: usize,
        /// Server processes whose RSS is summed (repeat for several).
        #[arg(long)]
        pid: Vec<u32>,
        #[arg(long, default_value = "server")]
        label: String,
    },
    /// IMAP mixed commands (LOGIN, SELECT, FETCH, STORE, SEARCH, APPEND,
    /// EXPUNGE, LOGOUT) by several concurrent clients: commands/s.
    ImapMixed {
        #[arg(long)]
        server: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        pass: String,
        #[arg(long, default_value_t = 10)]
        clients: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value = "server")]
        label: String,
    },
    /// The whole comparison behind `make bench`: postern and a Postfix +
    /// Dovecot reference on this machine, same workloads, median of runs.
    Suite(suite::SuiteArgs),
}

#[derive(clap::Args)]
pub struct SmtpArgs {
    #[arg(long)]
    server: String,
    #[arg(long, default_value = "bench@example.test")]
    from: String,
    #[arg(long)]
    to: String,
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    #[arg(long, default_value_t = 10 * 1024)]
    size: usize,
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Maildir whose new/ + cur/ receive the messages (end-to-end timing).
    #[arg(long)]
    maildir: Option<std::path::PathBuf>,
    /// Label printed with the results.
    #[arg(long, default_value = "server")]
    label: String,
}

struct Line {
    r: BufReader<tokio::io::ReadHalf<TcpStream>>,
    w: tokio::io::WriteHalf<TcpStream>,
    buf: String,
}

impl Line {
    async fn connect(addr: &str) -> anyhow::Result<Self> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        s.set_nodelay(true)?;
        let (r, w) = tokio::io::split(s);
        Ok(Self {
            r: BufReader::new(r),
            w,
            buf: String::new(),
        })
    }
    async fn line(&mut self) -> anyhow::Result<&str> {
        self.buf.clear();
        if self.r.read_line(&mut self.buf).await? == 0 {
            bail!("connection closed");
        }
        Ok(self.buf.trim_end())
    }
    /// An SMTP reply (multi-line aware); returns the code.
    async fn smtp_reply(&mut self) -> anyhow::Result<u16> {
        loop {
            let l = self.line().await?.to_string();
            let code: u16 = l
                .get(..3)
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("bad reply {l:?}"))?;
            if l.as_bytes().get(3) != Some(&b'-') {
                return Ok(code);
            }
        }
    }
    async fn send(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.w.write_all(data).await?;
        Ok(())
    }
}

fn message(size: usize, n: usize) -> Vec<u8> {
    let mut m = format!("From: bench@example.test\r\nTo: bench@example.test\r\nSubject: bench {n}\r\nMessage-ID: <bench.{n}@example.test>\r\n\r\n").into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghij\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m.extend_from_slice(b".\r\n");
    m
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn count_files(dir: &std::path::Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|d| {
            std::fs::read_dir(dir.join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum()
}

async fn smtp_worker(
    server: String,
    from: String,
    to: String,
    size: usize,
    ids: Vec<usize>,
) -> anyhow::Result<Vec<Duration>> {
    let mut c = Line::connect(&server).await?;
    if c.smtp_reply().await? != 220 {
        bail!("no 220 greeting");
    }
    c.send(b"EHLO bench.example.test\r\n").await?;
    if c.smtp_reply().await? != 250 {
        bail!("EHLO refused");
    }
    let mut lat = Vec::with_capacity(ids.len());
    for n in ids {
        let t = Instant::now();
        // PIPELINING: MAIL, RCPT, DATA in one write.
        c.send(format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes())
            .await?;
        for expect in [250, 250, 354] {
            let code = c.smtp_reply().await?;
            if code != expect {
                bail!("expected {expect}, got {code}");
            }
        }
        c.send(&message(size, n)).await?;
        let code = c.smtp_reply().await?;
        if code != 250 {
            bail!("message {n} refused with {code}");
        }
        lat.push(t.elapsed());
    }
    c.send(b"QUIT\r\n").await?;
    Ok(lat)
}

/// Results of one SMTP run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SmtpResult {
    /// Messages acknowledged with 250 per second.
    pub accept_per_s: f64,
    /// Messages in the mailbox per second (start to last one visible).
    pub end_to_end_per_s: Option<f64>,
    /// Latency MAIL FROM to the 250 after the dot.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

async fn smtp(a: SmtpArgs) -> anyhow::Result<SmtpResult> {
    let SmtpArgs {
        server,
        from,
        to,
        messages,
        size,
        concurrency: conc,
        maildir,
        label,
    } = a;
    let before = maildir.as_deref().map(count_files).unwrap_or(0);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let conc = conc.max(1);
    for w in 0..conc {
        let ids: Vec<usize> = (0..messages).filter(|i| i % conc == w).collect();
        tasks.spawn(smtp_worker(
            server.clone(),
            from.clone(),
            to.clone(),
            size,
            ids,
        ));
    }
    let mut lat = Vec::with_capacity(messages);
    while let Some(r) = tasks.join_next().await {
        lat.extend(r??);
    }
    let accept = start.elapsed();
    lat.sort();
    let mut res = SmtpResult {
        accept_per_s: messages as f64 / accept.as_secs_f64(),
        end_to_end_per_s: None,
        p50_ms: percentile(&lat, 0.5).as_secs_f64() * 1000.0,
        p99_ms: percentile(&lat, 0.99).as_secs_f64() * 1000.0,
    };
    println!(
        "{label}: smtp accept: {messages} msgs x {size} B, concurrency {conc}: {:.0} msg/s, latency p50 {:.1} ms p99 {:.1} ms",
        messages as f64 / accept.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0
    );
    if let Some(dir) = maildir {
        let deadline = Instant::now() + Duration::from_secs(600);
        while count_files(&dir) < before + messages {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {messages} messages reached {}",
                    count_files(&dir) - before,
                    dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let total = start.elapsed();
        println!(
            "{label}: smtp to mailbox: {messages} msgs in {:.2} s: {:.0} msg/s end-to-end",
            total.as_secs_f64(),
            messages as f64 / total.as_secs_f64()
        );
        res.end_to_end_per_s = Some(messages as f64 / total.as_secs_f64());
    }
    Ok(res)
}

/// POP3 LIST + RETR of every message in one session; returns msg/s.
async fn pop3(server: String, user: String, pass: String, label: String) -> anyhow::Result<f64> {
    let mut c = Line::connect(&server).await?;
    let ok = |l: &str| l.starts_with("+OK");
    if !ok(c.line().await?) {
        bail!("no POP3 greeting");
    }
    let start = Instant::now();
    c.send(format!("USER {user}\r\nPASS {pass}\r\n").as_bytes())
        .await?;
    for _ in 0..2 {
        let l = c.line().await?.to_string();
        if !ok(&l) {
            bail!("login failed: {l}");
        }
    }
    c.send(b"LIST\r\n").await?;
    c.line().await?;
    let mut n = 0usize;
    while c.line().await? != "." {
        n += 1;
    }
    let mut bytes = 0usize;
    for i in 1..=n {
        c.send(format!("RETR {i}\r\n").as_bytes()).await?;
        if !ok(c.line().await?) {
            bail!("RETR {i} failed");
        }
        loop {
            let l = c.line().await?;
            if l == "." {
                break;
            }
            bytes += l.len() + 2;
        }
    }
    c.send(b"QUIT\r\n").await?;
    let t = start.elapsed();
    println!(
        "{label}: pop3 LIST+RETR: {n} msgs ({:.1} MB) in {:.2} s: {:.0} msg/s",
        bytes as f64 / 1e6,
        t.as_secs_f64(),
        n as f64 / t.as_secs_f64()
    );
    Ok(n as f64 / t.as_secs_f64())
}

/// Memory of `pids` in kB: the proportional set size (Pss, from
/// `/proc/PID/smaps_rollup`), so pages shared between the processes of a
/// process-per-connection server are not counted once per process; VmRSS
/// where Pss is not available. For one process Pss is its RSS minus its
/// share of pages it shares with others (libraries).
fn rss_kb(pids: &[u32]) -> u64 {
    let field = |path: String, key: &str| -> Option<u64> {
        std::fs::read_to_string(path)
            .ok()?
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    pids.iter()
        .filter_map(|p| {
            field(format!("/proc/{p}/smaps_rollup"), "Pss:")
                .or_else(|| field(format!("/proc/{p}/status"), "VmRSS:"))
        })
        .sum()
}

/// Opens `n` logged-in idle IMAP connections; returns the server's RSS
/// growth per connection in KB. `pids` is called before and after, so a
/// process-per-connection server (Dovecot) can be measured too.
async fn imap_idle(
    server: String,
    user: String,
    pass: String,
    n: usize,
    pids: impl Fn() -> Vec<u32>,
    label: String,
) -> anyhow::Result<f64> {
    let before = rss_kb(&pids());
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = Line::connect(&server).await?;
        c.line().await?;
        c.send(format!("a LOGIN \"{user}\" \"{pass}\"\r\nb SELECT INBOX\r\n").as_bytes())
            .await?;
        let mut done = 0;
        while done < 2 {
            let l = c.line().await?.to_string();
            if l.starts_with("a NO") || l.starts_with("a BAD") || l.starts_with("b NO") {
                bail!("connection {i}: {l}");
            }
            if l.starts_with("a OK") || l.starts_with("b OK") {
                done += 1;
            }
        }
        conns.push(c);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kb(&pids());
    let per = after.saturating_sub(before) as f64 / n.max(1) as f64;
    println!(
        "{label}: imap idle: {n} logged-in connections, server memory (Pss) {before} kB -> {after} kB: {per:.1} KB per connection"
    );
    drop(conns);
    Ok(per)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Smtp(a) => smtp(a).await.map(drop),
        Cmd::Pop3 {
            server,
            user,
            pass,
            label,
        } => pop3(server, user, pass, label).await.map(drop),
        Cmd::ImapIdle {
            server,
            user,
            pass,
            connections,
            pid,
            label,
        } => imap_idle(server, user, pass, connections, move || pid.clone(), label)
            .await
            .map(drop),
        Cmd::ImapMixed {
            server,
            user,
            pass,
            clients,
            seconds,
            label,
        } => imap::mixed(
            &server,
            &user,
            &pass,
            None,
            clients,
            Duration::from_secs(seconds),
            &label,
        )
        .await
        .map(drop),
        Cmd::Suite(a) => suite::run(a).await,
    }
}
