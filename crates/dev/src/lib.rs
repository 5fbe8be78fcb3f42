//! # NAME
//! postern-dev — run the whole postern stack in the foreground for development
//!
//! # SYNOPSIS
//! `postern-dev [--config dev/postern.toml] [--bin-dir DIR]` (what `make run` calls)
//!
//! # DESCRIPTION
//! A small supervisor for development only; production uses one systemd unit
//! per daemon (`deploy/`). It
//!
//! 1. loads the configuration like every daemon (a bad file stops it with 78);
//! 2. creates the state directories and, on first run, a private CA and a
//!    server certificate for `myhostname`, `localhost`, 127.0.0.1 and ::1
//!    (`<tls dir>/ca.pem` is what clients should trust);
//! 3. on first run creates the domain `global.mydomain` in the directory
//!    (through `postern_authd::open_directory`, the same store authd opens)
//!    and the users `alice` and `bob` with random passwords, kept in
//!    `<state_directory>/dev-passwords.txt` (mode 0600, `address password`
//!    per line); later runs keep existing users and passwords. A user that
//!    exists without an entry in that file (made with mailctl) is left
//!    alone and shown without a password;
//! 4. starts the daemons as child processes in dependency order (authd,
//!    lmtp-delivery, queue-manager, smtpd, pop3d, imapd), each with its own
//!    `NOTIFY_SOCKET`, and waits for each one's `READY=1` before the next —
//!    the same readiness protocol systemd uses with `Type=notify`; then
//!    autoconfigd, only when `[autoconfig] listener` is set (as in
//!    `dev/postern.toml`: plain HTTP on 127.0.0.1:2080);
//! 5. prefixes each child's output lines with its name;
//! 6. prints how to connect, with the users and their passwords;
//! 7. on Ctrl-C (SIGINT) or SIGTERM stops the daemons in reverse order with
//!    SIGTERM (SIGKILL after the drain timeout) and exits 0. If a daemon dies
//!    on its own, the others are stopped and postern-dev exits 1.
//!
//! The children run in their own process group, so the terminal's Ctrl-C
//! reaches only the supervisor, which then stops them in order.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use postern_common::Config;
use postern_common::config::CONFIG_ENV;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};

/// Start order; stop order is the reverse.
pub const DAEMONS: [&str; 6] = [
    "authd",
    "lmtp-delivery",
    "queue-manager",
    "smtpd",
    "pop3d",
    "imapd",
];

/// Development users created on first run, `<name>@<mydomain>`.
pub const DEV_USERS: [&str; 2] = ["alice", "bob"];

/// Length of the generated passwords.
pub const PASSWORD_LEN: usize = 12;

/// Characters of generated passwords: letters and digits without the ones
/// easily misread (0 O o 1 l I).
pub const PASSWORD_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// Name of the password file under `global.state_directory`.
pub const PASSWORDS_FILE: &str = "dev-passwords.txt";

/// How long a daemon may take to report `READY=1`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Parser)]
#[command(
    name = "postern-dev",
    version,
    about = "Run the postern stack in the foreground (development)"
)]
pub struct Args {
    /// Configuration file.
    #[arg(short, long, env = CONFIG_ENV, default_value = "dev/postern.toml")]
    pub config: PathBuf,
    /// Where the daemon binaries are (default: next to postern-dev).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    let cfg = match Config::load(&args.config)
        .and_then(|c| postern_authd::validate(&c, &args.config).map(|()| c))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postern-dev: configuration error: {e}");
            return ExitCode::from(78);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("postern-dev: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(supervise(args, cfg)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("postern-dev: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Running {
    name: &'static str,
    child: Child,
    /// Tasks copying the child's stdout/stderr; awaited after it exits so
    /// its last lines ("stopped") are not lost.
    output: Vec<tokio::task::JoinHandle<()>>,
}

async fn supervise(args: Args, cfg: Config) -> anyhow::Result<ExitCode> {
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .context("no directory for the current executable")?
            .to_path_buf(),
    };
    prepare(&cfg)?;
    let users = ensure_users(&cfg, &args.config).await?;
    let notify_dir = cfg.global.run_directory.join("dev-notify");
    std::fs::create_dir_all(&notify_dir)?;
    let notify_dir = std::fs::canonicalize(&notify_dir)?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut running: Vec<Running> = Vec::new();
    let optional = (!cfg.autoconfig.listener.is_empty()).then_some("autoconfigd");
    for name in DAEMONS.into_iter().chain(optional) {
        let started = tokio::select! {
            r = start(name, &bin_dir, &args.config, &notify_dir) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted during start-up")),
            _ = term.recv() => Err(anyhow::anyhow!("terminated during start-up")),
        };
        match started {
            Ok(child) => running.push(Running {
                name,
                child: child.0,
                output: child.1,
            }),
            Err(e) => {
                eprintln!("postern-dev: {name}: {e:#}");
                stop_all(&mut running, cfg.global.shutdown_timeout).await;
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    print_banner(&cfg, &args.config, &users);

    let code = tokio::select! {
        _ = tokio::signal::ctrl_c() => { eprintln!("postern-dev: Ctrl-C, stopping"); ExitCode::SUCCESS }
        _ = term.recv() => { eprintln!("postern-dev: SIGTERM, stopping"); ExitCode::SUCCESS }
        (name, status) = first_exit(&mut running) => {
            eprintln!("postern-dev: {name} exited on its own ({status}); stopping the others");
            ExitCode::FAILURE
        }
    };
    stop_all(&mut running, cfg.global.shutdown_timeout).await;
    Ok(code)
}

/// Directories and the development certificate.
fn prepare(cfg: &Config) -> anyhow::Result<()> {
    for dir in [&cfg.global.state_directory, &cfg.global.run_directory] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tls_dir = cfg.tls.cert_file.parent().unwrap_or(Path::new("."));
    let names = [cfg.global.myhostname.as_str(), "localhost"];
    postern_common::devcert::ensure(tls_dir, &names)?;
    Ok(())
}

/// A random password of [`PASSWORD_LEN`] characters from
/// [`PASSWORD_ALPHABET`], from `/dev/urandom` (rejection sampling, so every
/// character is equally likely).
pub fn random_password() -> std::io::Result<String> {
    use std::io::Read;
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    let n = PASSWORD_ALPHABET.len();
    let limit = 256 - 256 % n; // bytes >= limit would bias the choice
    let mut out = String::with_capacity(PASSWORD_LEN);
    let mut buf = [0u8; 64];
    while out.len() < PASSWORD_LEN {
        urandom.read_exact(&mut buf)?;
        for &b in &buf {
            if (b as usize) < limit && out.len() < PASSWORD_LEN {
                out.push(PASSWORD_ALPHABET[b as usize % n] as char);
            }
        }
    }
    Ok(out)
}

/// Entries of the password file: `address password` lines.
pub fn parse_passwords(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (a, p) = l.trim().split_once(' ')?;
            let p = p.trim();
            (!a.is_empty() && !p.is_empty()).then(|| (a.to_string(), p.to_string()))
        })
        .collect()
}

/// A development user as shown in the banner; `password` is `None` for a
/// user that exists but was not created by postern-dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevUser {
    pub address: String,
    pub password: Option<String>,
}

/// Create the domain and the development users if they are missing; keep
/// what exists. Returns the users for the banner.
async fn ensure_users(cfg: &Config, config_path: &Path) -> anyhow::Result<Vec<DevUser>> {
    use directory::{DirectoryError, NewUser, Secret};
    let file = cfg.global.state_directory.join(PASSWORDS_FILE);
    let mut known = match std::fs::read_to_string(&file) {
        Ok(t) => parse_passwords(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let dir = postern_authd::open_directory(cfg, config_path).await?;
    if dir.sql().is_err() {
        eprintln!("postern-dev: the system backend has no domains or users to create");
        return Ok(Vec::new());
    }
    let domain = cfg.global.mydomain.to_ascii_lowercase();
    match dir.domain_add(&domain).await {
        Ok(_) => eprintln!("postern-dev: domain {domain} created"),
        Err(DirectoryError::Duplicate(_)) => {}
        Err(e) => return Err(e).context("cannot create the development domain"),
    }
    let mut users = Vec::new();
    let mut changed = false;
    for name in DEV_USERS {
        let address = format!("{name}@{domain}");
        let saved = known
            .iter()
            .find(|(a, _)| *a == address)
            .map(|(_, p)| p.clone());
        match dir.user_show(&address).await {
            Ok(_) => users.push(DevUser {
                address,
                password: saved,
            }),
            Err(DirectoryError::UnknownUser(_)) => {
                let password = match saved {
                    Some(p) => p,
                    None => {
                        let p = random_password().context("cannot read /dev/urandom")?;
                        known.push((address.clone(), p.clone()));
                        changed = true;
                        p
                    }
                };
                dir.user_add(NewUser::new(&address, Secret::new(password.clone())))
                    .await
                    .with_context(|| format!("cannot create {address}"))?;
                eprintln!("postern-dev: user {address} created");
                users.push(DevUser {
                    address,
                    password: Some(password),
                });
            }
            Err(e) => return Err(e).with_context(|| format!("cannot look up {address}")),
        }
    }
    if changed || !file.exists() {
        write_passwords(&file, &known)?;
    }
    Ok(users)
}

fn write_passwords(file: &Path, entries: &[(String, String)]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let text: String = entries.iter().map(|(a, p)| format!("{a} {p}\n")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

async fn start(
    name: &'static str,
    bin_dir: &Path,
    config: &Path,
    notify_dir: &Path,
) -> anyhow::Result<(Child, Vec<tokio::task::JoinHandle<()>>)> {
    let socket_path = notify_dir.join(format!("{name}.sock"));
    let _ = std::fs::remove_file(&socket_path);
    let notify = UnixDatagram::bind(&socket_path)
        .with_context(|| format!("cannot bind {}", socket_path.display()))?;
    let bin = bin_dir.join(name);
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut output = Vec::new();
    for pipe in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        output.push(tokio::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{name:>13} | {line}");
            }
        }));
    }
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::sleep(READY_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = notify.recv(&mut buf) => {
                let n = r?;
                let msg = String::from_utf8_lossy(&buf[..n]);
                if msg.lines().any(|l| l == "READY=1") {
                    // Keep reading later notifications (RELOADING, STOPPING,
                    // WATCHDOG) so the daemon's sd_notify calls succeed.
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 4096];
                        while notify.recv(&mut buf).await.is_ok() {}
                    });
                    return Ok((child, output));
                }
            }
            status = child.wait() => bail!("exited before it was ready ({})", status?),
            _ = &mut deadline => bail!("not ready after {READY_TIMEOUT:?}"),
        }
    }
}

async fn first_exit(running: &mut [Running]) -> (&'static str, String) {
    loop {
        for r in running.iter_mut() {
            if let Ok(Some(status)) = r.child.try_wait() {
                return (r.name, status.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stop_all(running: &mut Vec<Running>, drain: Duration) {
    while let Some(mut r) = running.pop() {
        if let Some(pid) = r.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(drain + Duration::from_secs(5), r.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => eprintln!("postern-dev: {} stopped with {status}", r.name),
            _ => {
                eprintln!("postern-dev: {} did not stop in time, killing it", r.name);
                let _ = r.child.kill().await;
            }
        }
        for task in r.output {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap_or(addr)
}

fn print_banner(cfg: &Config, config_path: &Path, users: &[DevUser]) {
    let users_line = users
        .iter()
        .map(|u| match &u.password {
            Some(p) => format!("{} / {p}", u.address),
            None => format!("{} / (password not set by postern-dev)", u.address),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let users_line = if users_line.is_empty() {
        "(none created: not an SQL directory)".to_string()
    } else {
        users_line
    };
    let pw_file = cfg.global.state_directory.join(PASSWORDS_FILE);
    let g = &cfg.global;
    let find = |list: Vec<(&str, &str)>, name: &str| {
        list.into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| port_of(a).to_string())
            .unwrap_or_else(|| "-".into())
    };
    let smtp: Vec<_> = cfg
        .smtpd
        .listener
        .iter()
        .map(|l| (l.name.as_str(), l.address.as_str()))
        .collect();
    let pop: Vec<_> = cfg
        .pop3d
        .listener
        .iter()
        .map(|l| (l.name.as_str(), l.address.as_str()))
        .collect();
    let imap: Vec<_> = cfg
        .imapd
        .listener
        .iter()
        .map(|l| (l.name.as_str(), l.address.as_str()))
        .collect();
    let ca = cfg
        .tls
        .cert_file
        .parent()
        .unwrap_or(Path::new("."))
        .join("ca.pem");
    eprintln!(
        "
postern is running (development stack, Ctrl-C stops it).
  domain {domain}, host {host}; state under {state}
  SMTP        127.0.0.1:{mx}   (MX, STARTTLS)
  submission  127.0.0.1:{sub}  (STARTTLS + AUTH)   submissions 127.0.0.1:{subs} (TLS)
  POP3        127.0.0.1:{pop}  (STLS)              POP3S       127.0.0.1:{pops}
  IMAP        127.0.0.1:{imapp}  (STARTTLS)          IMAPS       127.0.0.1:{imaps}
  TLS: trust the development CA {ca}
  users: {users_line}
         (saved in {pw_file}; manage: mailctl --config {config} user ...)

Try:
  swaks --server 127.0.0.1:{mx} --to alice@{domain} --from bob@{domain}
  swaks --server 127.0.0.1:{sub} --tls --auth PLAIN --auth-user alice@{domain} \\
        --auth-password <alice's password> --from alice@{domain} --to bob@{domain}
  mutt -f 'imaps://alice%40{domain}@127.0.0.1:{imaps}/'   (after: export SSL_CERT_FILE={ca})
  mutt -f 'pops://alice%40{domain}@127.0.0.1:{pops}/'
  ln -s $PWD/target/debug/mailctl /tmp/sendmail                 (local submission:)
  echo hi | POSTERN_CONFIG={config} /tmp/sendmail bob@{domain}
  mailctl --config {config} queue list                          (the queue, like mailq)
  Thunderbird: IMAP 127.0.0.1:{imaps} SSL/TLS (or POP3 127.0.0.1:{pops}),
               SMTP 127.0.0.1:{sub} STARTTLS, user alice@{domain};
               import {ca} under Certificates > Authorities.

Mail for {domain} is delivered into var/lib/mail/{domain}/<user>/Maildir; mail for other
domains is routed by MX lookup (queue.delivery_transport = \"auto\"), so it stays deferred
on a machine without outside DNS. Not built yet (see README \"Status\"): the security
pipeline (SPF/DKIM/DMARC, greylisting, milters) and metrics.
",
        domain = g.mydomain,
        host = g.myhostname,
        state = g.state_directory.display(),
        mx = find(smtp.clone(), "smtp"),
        sub = find(smtp.clone(), "submission"),
        subs = find(smtp, "submissions"),
        pop = find(pop.clone(), "pop3"),
        pops = find(pop, "pop3s"),
        imapp = find(imap.clone(), "imap"),
        imaps = find(imap, "imaps"),
        ca = ca.display(),
        pw_file = pw_file.display(),
        config = config_path.display(),
    );
    if let Some(l) = cfg.autoconfig.listener.first() {
        let scheme = match l.role {
            postern_common::config::HttpRole::Http => "http",
            postern_common::config::HttpRole::Https => "https",
        };
        eprintln!(
            "Client autoconfiguration (autoconfigd): {scheme}://{addr}/mail/config-v1.1.xml?emailaddress=alice@{domain}\n  \
             also /autodiscover/autodiscover.xml, /apple/postern.mobileconfig?email=..., /.well-known/mta-sts.txt\n",
            addr = l.address,
            domain = g.mydomain,
        );
    }
    let metrics: Vec<String> = cfg
        .metrics
        .entries()
        .into_iter()
        .filter(|(_, a)| !a.is_empty())
        .map(|(d, a)| format!("  {d:<14} http://{a}/metrics"))
        .collect();
    if !metrics.is_empty() {
        eprintln!(
            "Prometheus metrics (docs/METRICS.md):\n{}\nHealth of the stack: mailctl --config {} status\n",
            metrics.join("\n"),
            config_path.display(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_passwords_use_the_alphabet_and_differ() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.bytes().all(|c| PASSWORD_ALPHABET.contains(&c)), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn password_file_lines() {
        assert_eq!(
            parse_passwords("alice@x.test abc\n\nbad\nbob@x.test  def \n"),
            [
                ("alice@x.test".to_string(), "abc".to_string()),
                ("bob@x.test".to_string(), "def".to_string())
            ]
        );
    }
}
