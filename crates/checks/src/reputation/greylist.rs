//! `greylist`: greylisting by (client network, sender, recipient) triplet,
//! the way postgrey does it, persisted in SQLite.
//!
//! A triplet seen for the first time is refused at RCPT with `450 4.7.1`
//! for `delay`; a retry after the delay (and within `retry_window`) passes
//! and the triplet stays passed until unused for `max_age`. Each triplet
//! that passes after waiting counts one success for its client network;
//! after `auto_whitelist_clients` successes the network is whitelisted for
//! every sender and recipient. The client network is the /24 (IPv4) or /64
//! (IPv6) around the client, because large senders retry from another
//! address of the same pool; the sender is normalised like postgrey does
//! (lower case, BATV tag and `+extension` removed, numbers in the local part
//! replaced by `#`) so VERP bounces and per-message tags do not start over.
//!
//! `mynetworks` and authenticated clients are exempt. When the database
//! cannot be opened or written the check lets mail through and logs an
//! error (greylisting is a filter, not worth losing mail over).

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use postern_common::checks::reputation::GreylistConfig;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tokio::sync::OnceCell;

use super::{Allowlisted, dns};
use crate::{Action, Check, CheckSession, Connection, Verdict};

const NAME: &str = "greylist";
/// How often expired entries are deleted (at most; on the next RCPT).
const EXPIRE_EVERY: Duration = Duration::from_secs(3600);
/// Longest sender or recipient kept in a triplet (RFC 5321 4.5.3.1.3 path
/// limit); longer ones are cut.
const MAX_ADDRESS: usize = 256;

/// Errors of the greylist database.
#[derive(Debug, thiserror::Error)]
pub enum GreylistError {
    #[error("greylist database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("greylist database: {0}")]
    Query(#[from] sqlx::Error),
}

/// The client network of a triplet, as text (`192.0.2.0/24`).
pub fn client_net(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> String {
    let ip = dns::canonical(ip);
    let prefix = match ip {
        IpAddr::V4(_) => v4_prefix.min(32),
        IpAddr::V6(_) => v6_prefix.min(128),
    };
    IpNet::new(ip, prefix)
        .map(|n| n.trunc().to_string())
        .unwrap_or_else(|_| ip.to_string())
}

fn cut(s: &str) -> &str {
    if s.len() <= MAX_ADDRESS {
        return s;
    }
    let mut end = MAX_ADDRESS;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The sender as stored in a triplet (postgrey's substitutions).
pub fn normalise_sender(sender: &str) -> String {
    let s = cut(sender).to_lowercase();
    let Some((local, domain)) = s.rsplit_once('@') else {
        return s;
    };
    // BATV (prvs=tag=local) and its variants.
    let mut local = local;
    for (prefix, sep) in [("prvs=", "="), ("msprvs1=", "="), ("btv1==", "==")] {
        if let Some(rest) = local.strip_prefix(prefix)
            && let Some((_, l)) = rest.split_once(sep)
        {
            local = l;
        }
    }
    // Address extension (VERP and per-message tags).
    let local = local.split('+').next().unwrap_or(local);
    // Numbers between word boundaries become '#'.
    let mut out = String::with_capacity(local.len() + domain.len() + 1);
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            out.push('#');
        } else {
            out.push_str(token);
        }
        token.clear();
    };
    for c in local.chars() {
        if c.is_alphanumeric() || c == '_' {
            token.push(c);
        } else {
            flush(&mut token, &mut out);
            out.push(c);
        }
    }
    flush(&mut token, &mut out);
    out.push('@');
    out.push_str(domain);
    out
}

/// The recipient as stored in a triplet.
pub fn normalise_rcpt(rcpt: &str) -> String {
    cut(rcpt).to_lowercase()
}

/// A stored triplet (times in milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub first_seen: i64,
    pub last_seen: i64,
    pub passed: bool,
}

/// What to do with a triplet now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Accept; `first` = it just passed after waiting (one success for the
    /// client's auto-whitelist count).
    Pass { first: bool },
    /// Refuse for `remaining` ms more; `restart` = (re)start the triplet now.
    Defer { remaining: i64, restart: bool },
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Decide over a stored triplet at `now` (ms).
pub fn decide(entry: Option<Entry>, now: i64, cfg: &GreylistConfig) -> Decision {
    let delay = ms(cfg.delay);
    let restart = Decision::Defer {
        remaining: delay,
        restart: true,
    };
    let Some(e) = entry else {
        return restart;
    };
    if e.passed {
        if now.saturating_sub(e.last_seen) > ms(cfg.max_age) {
            return restart;
        }
        return Decision::Pass { first: false };
    }
    let age = now.saturating_sub(e.first_seen);
    if age > ms(cfg.retry_window) || age < 0 {
        return restart;
    }
    if age >= delay {
        Decision::Pass { first: true }
    } else {
        Decision::Defer {
            remaining: delay - age,
            restart: false,
        }
    }
}

/// The answer for one RCPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The client network is whitelisted.
    Whitelisted,
    Pass {
        first: bool,
    },
    Defer {
        remaining: i64,
    },
}

/// The SQLite store.
pub struct Store {
    pool: SqlitePool,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS triplets (
        net TEXT NOT NULL, sender TEXT NOT NULL, rcpt TEXT NOT NULL,
        first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, passed INTEGER NOT NULL,
        PRIMARY KEY (net, sender, rcpt))",
    "CREATE TABLE IF NOT EXISTS clients (
        net TEXT PRIMARY KEY, successes INTEGER NOT NULL, last_seen INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS triplets_last_seen ON triplets (last_seen)",
];

impl Store {
    /// Open (create) the database at `path`.
    pub async fn open(path: &std::path::Path) -> Result<Self, GreylistError> {
        let err = |source| GreylistError::Open {
            path: path.to_path_buf(),
            source,
        };
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        // One connection: smtpd is the only writer and each RCPT is a short
        // transaction, so writes never wait on each other's locks.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(err)?;
        for stmt in SCHEMA {
            sqlx::query(stmt).execute(&pool).await.map_err(err)?;
        }
        Ok(Self { pool })
    }

    /// Check and record one triplet at `now` (ms).
    pub async fn check(
        &self,
        cfg: &GreylistConfig,
        net: &str,
        sender: &str,
        rcpt: &str,
        now: i64,
    ) -> Result<Answer, GreylistError> {
        let mut tx = self.pool.begin().await?;
        let max_age = ms(cfg.max_age);
        if cfg.auto_whitelist_clients > 0 {
            let row = sqlx::query("SELECT successes, last_seen FROM clients WHERE net = ?")
                .bind(net)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = row {
                let (n, seen): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
                if n >= i64::from(cfg.auto_whitelist_clients) && now - seen <= max_age {
                    sqlx::query("UPDATE clients SET last_seen = ? WHERE net = ?")
                        .bind(now)
                        .bind(net)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    return Ok(Answer::Whitelisted);
                }
            }
        }
        let row = sqlx::query(
            "SELECT first_seen, last_seen, passed FROM triplets WHERE net = ? AND sender = ? AND rcpt = ?",
        )
        .bind(net)
        .bind(sender)
        .bind(rcpt)
        .fetch_optional(&mut *tx)
        .await?;
        let entry = match row {
            Some(r) => Some(Entry {
                first_seen: r.try_get(0)?,
                last_seen: r.try_get(1)?,
                passed: r.try_get::<i64, _>(2)? != 0,
            }),
            None => None,
        };
        let answer = match decide(entry, now, cfg) {
            Decision::Defer { remaining, restart } => {
                if restart {
                    sqlx::query(
                        "INSERT INTO triplets (net, sender, rcpt, first_seen, last_seen, passed)
                         VALUES (?, ?, ?, ?, ?, 0)
                         ON CONFLICT (net, sender, rcpt) DO UPDATE
                         SET first_seen = excluded.first_seen, last_seen = excluded.last_seen, passed = 0",
                    )
                    .bind(net)
                    .bind(sender)
                    .bind(rcpt)
                    .bind(now)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                Answer::Defer { remaining }
            }
            Decision::Pass { first } => {
                sqlx::query(
                    "UPDATE triplets SET last_seen = ?, passed = 1 WHERE net = ? AND sender = ? AND rcpt = ?",
                )
                .bind(now)
                .bind(net)
                .bind(sender)
                .bind(rcpt)
                .execute(&mut *tx)
                .await?;
                if first && cfg.auto_whitelist_clients > 0 {
                    sqlx::query(
                        "INSERT INTO clients (net, successes, last_seen) VALUES (?, 1, ?)
                         ON CONFLICT (net) DO UPDATE
                         SET successes = successes + 1, last_seen = excluded.last_seen",
                    )
                    .bind(net)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                Answer::Pass { first }
            }
        };
        tx.commit().await?;
        Ok(answer)
    }

    /// Delete what has expired at `now`: triplets never retried within
    /// `retry_window`, passed triplets and clients unused for `max_age`.
    /// Returns the rows deleted.
    pub async fn expire(&self, cfg: &GreylistConfig, now: i64) -> Result<u64, GreylistError> {
        let a = sqlx::query(
            "DELETE FROM triplets WHERE (passed = 0 AND first_seen < ?) OR (passed = 1 AND last_seen < ?)",
        )
        .bind(now - ms(cfg.retry_window))
        .bind(now - ms(cfg.max_age))
        .execute(&self.pool)
        .await?
        .rows_affected();
        let b = sqlx::query("DELETE FROM clients WHERE last_seen < ?")
            .bind(now - ms(cfg.max_age))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(a + b)
    }
}

/// Milliseconds since the epoch (wall clock: entries survive restarts).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(ms)
        .unwrap_or(0)
}

/// The check.
pub struct Greylist {
    cfg: GreylistConfig,
    path: PathBuf,
    store: OnceCell<Option<Store>>,
    last_expire: Mutex<Option<std::time::Instant>>,
    allow: Arc<Allowlisted>,
}

impl Greylist {
    /// `path`: the database file (its directory is created if missing).
    /// `allow`: sessions the DNSBL allowlisted (never greylisted).
    pub fn new(
        cfg: GreylistConfig,
        path: PathBuf,
        allow: Arc<Allowlisted>,
    ) -> std::io::Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Self {
            cfg,
            path,
            store: OnceCell::new(),
            last_expire: Mutex::new(None),
            allow,
        })
    }

    async fn store(&self) -> Option<&Store> {
        self.store
            .get_or_init(|| async {
                match Store::open(&self.path).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::error!(error = %e, "greylisting off: cannot open its database");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }

    async fn maybe_expire(&self, store: &Store, now: i64) {
        {
            let mut last = self.last_expire.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < EXPIRE_EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        match store.expire(&self.cfg, now).await {
            Ok(n) => tracing::debug!(deleted = n, "greylist entries expired"),
            Err(e) => tracing::error!(error = %e, "greylist expiry failed"),
        }
    }

    async fn rcpt(&self, conn: &Connection, sender: &str, rcpt: &str) -> Option<Verdict> {
        let store = self.store().await?;
        let now = now_ms();
        self.maybe_expire(store, now).await;
        let net = client_net(conn.ip, self.cfg.ipv4_prefix, self.cfg.ipv6_prefix);
        let (s, r) = (normalise_sender(sender), normalise_rcpt(rcpt));
        match store.check(&self.cfg, &net, &s, &r, now).await {
            Ok(Answer::Defer { remaining }) => {
                let secs = (remaining + 999) / 1000;
                tracing::info!(session = %conn.session_id, net = %net, sender = %s, rcpt = %r, remaining_secs = secs, "greylisted");
                Some(Verdict::new(
                    NAME,
                    Action::TempFail {
                        code: 450,
                        enhanced: (4, 7, 1),
                        text: format!(
                            "<{}>: Recipient address rejected: Greylisted, please try again in {secs} seconds",
                            super::printable(rcpt, 256)
                        ),
                    },
                    format!("triplet {net} {s} {r}: {secs}s to wait"),
                ))
            }
            Ok(Answer::Pass { first: true }) => {
                tracing::info!(session = %conn.session_id, net = %net, sender = %s, rcpt = %r, "greylist passed after retry");
                None
            }
            Ok(Answer::Pass { first: false }) => None,
            Ok(Answer::Whitelisted) => {
                tracing::debug!(session = %conn.session_id, net = %net, "greylist: client whitelisted");
                None
            }
            Err(e) => {
                tracing::error!(session = %conn.session_id, error = %e, "greylist lookup failed: accepting");
                None
            }
        }
    }
}

impl Check for Greylist {
    fn name(&self) -> &'static str {
        NAME
    }

    fn session(self: Arc<Self>, _conn: &Connection) -> Box<dyn CheckSession> {
        Box::new(Session { check: self })
    }
}

struct Session {
    check: Arc<Greylist>,
}

#[async_trait::async_trait]
impl CheckSession for Session {
    async fn rcpt(&mut self, conn: &Connection, sender: &str, rcpt: &str) -> Vec<Verdict> {
        if conn.trusted
            || conn.auth_user.is_some()
            || self.check.allow.get(&conn.session_id).is_some()
        {
            return Vec::new();
        }
        self.check
            .rcpt(conn, sender, rcpt)
            .await
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nets() {
        let cases = [
            ("192.0.2.77", "192.0.2.0/24"),
            ("::ffff:192.0.2.77", "192.0.2.0/24"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ];
        for (ip, want) in cases {
            assert_eq!(client_net(ip.parse().unwrap(), 24, 64), want, "{ip}");
        }
        assert_eq!(
            client_net("192.0.2.77".parse().unwrap(), 32, 64),
            "192.0.2.77/32"
        );
        assert_eq!(
            client_net("192.0.2.77".parse().unwrap(), 99, 64),
            "192.0.2.77/32"
        );
    }

    #[test]
    fn senders() {
        let cases = [
            ("Alice@Example.ORG", "alice@example.org"),
            ("", ""),
            ("bounce-12345-678@list.example", "bounce-#-#@list.example"),
            ("user+tag@example.org", "user@example.org"),
            ("prvs=1234abcdef=user@example.org", "user@example.org"),
            ("btv1==123abc==user@example.org", "user@example.org"),
            ("a1b2@example.org", "a1b2@example.org"),
            ("2024.news@example.org", "#.news@example.org"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_sender(input), want, "{input}");
        }
        assert_eq!(normalise_rcpt("Bob@Example.Test"), "bob@example.test");
        assert!(normalise_sender(&"x".repeat(5000)).len() <= MAX_ADDRESS);
    }

    #[test]
    fn decisions() {
        let cfg = GreylistConfig {
            delay: Duration::from_secs(300),
            retry_window: Duration::from_secs(3600),
            max_age: Duration::from_secs(86_400),
            ..GreylistConfig::default()
        };
        let e = |first: i64, last: i64, passed| {
            Some(Entry {
                first_seen: first,
                last_seen: last,
                passed,
            })
        };
        let s = 1000;
        let t0 = 1_000_000_000;
        use Decision::*;
        let cases = [
            (
                None,
                t0,
                Defer {
                    remaining: 300 * s,
                    restart: true,
                },
            ),
            (
                e(t0, t0, false),
                t0 + 100 * s,
                Defer {
                    remaining: 200 * s,
                    restart: false,
                },
            ),
            (e(t0, t0, false), t0 + 300 * s, Pass { first: true }),
            // Retried too late: starts over.
            (
                e(t0, t0, false),
                t0 + 3601 * s,
                Defer {
                    remaining: 300 * s,
                    restart: true,
                },
            ),
            (
                e(t0, t0 + 400 * s, true),
                t0 + 5000 * s,
                Pass { first: false },
            ),
            // Passed, but unused for longer than max_age.
            (
                e(t0, t0, true),
                t0 + 86_401 * s,
                Defer {
                    remaining: 300 * s,
                    restart: true,
                },
            ),
            // Clock went backwards: start over rather than pass.
            (
                e(t0, t0, false),
                t0 - s,
                Defer {
                    remaining: 300 * s,
                    restart: true,
                },
            ),
        ];
        for (entry, now, want) in cases {
            assert_eq!(decide(entry, now, &cfg), want, "{entry:?} at {now}");
        }
    }

    #[tokio::test]
    async fn store_auto_whitelists_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gl.sqlite");
        let cfg = GreylistConfig {
            delay: Duration::from_secs(60),
            retry_window: Duration::from_secs(3600),
            max_age: Duration::from_secs(86_400),
            auto_whitelist_clients: 2,
            ..GreylistConfig::default()
        };
        let t0 = 1_000_000_000_000;
        let s = 1000;
        let net = "192.0.2.0/24";
        {
            let st = Store::open(&path).await.unwrap();
            assert_eq!(
                st.check(&cfg, net, "a@x", "r@y", t0).await.unwrap(),
                Answer::Defer { remaining: 60 * s }
            );
            assert_eq!(
                st.check(&cfg, net, "a@x", "r@y", t0 + 30 * s)
                    .await
                    .unwrap(),
                Answer::Defer { remaining: 30 * s }
            );
            assert_eq!(
                st.check(&cfg, net, "a@x", "r@y", t0 + 61 * s)
                    .await
                    .unwrap(),
                Answer::Pass { first: true }
            );
            assert_eq!(
                st.check(&cfg, net, "a@x", "r@y", t0 + 62 * s)
                    .await
                    .unwrap(),
                Answer::Pass { first: false }
            );
            // A second triplet from the same network: the second success.
            st.check(&cfg, net, "b@x", "r@y", t0).await.unwrap();
            assert_eq!(
                st.check(&cfg, net, "b@x", "r@y", t0 + 70 * s)
                    .await
                    .unwrap(),
                Answer::Pass { first: true }
            );
        }
        // Reopened (a restart): whitelisted for any new triplet.
        let st = Store::open(&path).await.unwrap();
        assert_eq!(
            st.check(&cfg, net, "new@x", "other@y", t0 + 80 * s)
                .await
                .unwrap(),
            Answer::Whitelisted
        );
        // Another network is not.
        assert!(matches!(
            st.check(&cfg, "198.51.100.0/24", "new@x", "other@y", t0 + 80 * s)
                .await
                .unwrap(),
            Answer::Defer { .. }
        ));
        // Everything is forgotten after max_age.
        let later = t0 + 80 * s + 86_401 * s;
        assert!(st.expire(&cfg, later).await.unwrap() >= 3);
        assert!(matches!(
            st.check(&cfg, net, "a@x", "r@y", later).await.unwrap(),
            Answer::Defer { .. }
        ));
    }
}
