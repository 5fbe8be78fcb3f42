//! SQL store (SQLite, MySQL/MariaDB, PostgreSQL) through sqlx's `Any`
//! driver: one code path, queries with bound parameters only.
//!
//! # Schema
//!
//! The postern schema is the classic virtual-mail schema (`domains`,
//! `users`, `forwardings`, `transport`) with a few more columns, so an
//! existing Postfix/Dovecot database works with the default
//! [`SqlQueries`](crate::config::SqlQueries) and a postern-created one works
//! with [`SqlQueries::postern`](crate::config::SqlQueries::postern):
//!
//! ```sql
//! domains(domain PK, enabled)
//! users(email PK, password, quota_bytes, enabled, maildir, host, uid, gid)
//! forwardings(source, destination, PK(source, destination))  -- source "@dom" = catch-all
//! transport(domain PK, transport)
//! ```
//!
//! SQLite files are created on first open, in WAL mode. Management
//! functions (for `mailctl`) work on the postern schema only.

use std::path::PathBuf;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::address::{Address, normalize_domain};
use crate::config::{BackendKind, DirectoryConfig, SqlQueries};
use crate::model::{DirectoryError, Domain, User};
use crate::secret::Secret;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS domains (
        domain VARCHAR(253) NOT NULL PRIMARY KEY,
        enabled INTEGER NOT NULL DEFAULT 1
    )",
    "CREATE TABLE IF NOT EXISTS users (
        email VARCHAR(254) NOT NULL PRIMARY KEY,
        password VARCHAR(1024) NOT NULL,
        quota_bytes BIGINT NOT NULL DEFAULT 0,
        enabled INTEGER NOT NULL DEFAULT 1,
        maildir VARCHAR(1024),
        host VARCHAR(253),
        uid BIGINT,
        gid BIGINT
    )",
    "CREATE TABLE IF NOT EXISTS forwardings (
        source VARCHAR(254) NOT NULL,
        destination VARCHAR(254) NOT NULL,
        PRIMARY KEY (source, destination)
    )",
    "CREATE TABLE IF NOT EXISTS transport (
        domain VARCHAR(253) NOT NULL PRIMARY KEY,
        transport VARCHAR(255) NOT NULL
    )",
];

/// Longest list of forwarding destinations read for one source.
pub const MAX_FORWARDINGS: usize = 1000;

/// A SQL-backed store.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    kind: BackendKind,
    queries: SqlQueries,
    mailbox_template: String,
}

/// Rewrite `?` placeholders to `$1, $2, ...` for PostgreSQL.
fn dialect(sql: &str, kind: BackendKind) -> String {
    if kind != BackendKind::Postgres {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Turn a Postfix-style query (`%s %u %d %%`) into SQL with placeholders
/// and the list of values to bind, in order.
pub(crate) fn expand_query(template: &str, key: &str, kind: BackendKind) -> (String, Vec<String>) {
    let (local, domain) = match key.rsplit_once('@') {
        Some((l, d)) => (l, d),
        None => (key, key),
    };
    let mut sql = String::with_capacity(template.len());
    let mut binds = Vec::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            sql.push(c);
            continue;
        }
        let value = match chars.peek() {
            Some('s') => key,
            Some('u') => local,
            Some('d') => domain,
            Some('%') => {
                chars.next();
                sql.push('%');
                continue;
            }
            _ => {
                sql.push('%');
                continue;
            }
        };
        chars.next();
        binds.push(value.to_string());
        if kind == BackendKind::Postgres {
            sql.push('$');
            sql.push_str(&binds.len().to_string());
        } else {
            sql.push('?');
        }
    }
    (sql, binds)
}

fn opt_str(row: &AnyRow, col: &str) -> Result<Option<String>, sqlx::Error> {
    match row.try_get::<Option<String>, _>(col) {
        Ok(v) => Ok(v),
        Err(sqlx::Error::ColumnNotFound(_)) => Ok(None),
        // MySQL may report TEXT with a binary collation as BLOB.
        Err(sqlx::Error::ColumnDecode { .. }) => Ok(row
            .try_get::<Option<Vec<u8>>, _>(col)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())),
        Err(e) => Err(e),
    }
}

fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i64>, sqlx::Error> {
    match row.try_get::<Option<i64>, _>(col) {
        Ok(v) => Ok(v),
        Err(sqlx::Error::ColumnNotFound(_)) => Ok(None),
        Err(sqlx::Error::ColumnDecode { .. }) => {
            if let Ok(b) = row.try_get::<Option<bool>, _>(col) {
                return Ok(b.map(i64::from));
            }
            Ok(opt_str(row, col)?.and_then(|s| s.trim().parse().ok()))
        }
        Err(e) => Err(e),
    }
}

fn opt_id(v: Option<i64>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok())
}

/// Apply `%d`, `%u`, `%s` to a mailbox template.
pub(crate) fn mailbox_path(template: &str, address: &str) -> PathBuf {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.peek() {
                Some('d') => out.push_str(domain),
                Some('u') => out.push_str(local),
                Some('s') => out.push_str(address),
                Some('%') => out.push('%'),
                _ => {
                    out.push('%');
                    continue;
                }
            }
            chars.next();
        } else {
            out.push(c);
        }
    }
    PathBuf::from(out)
}

impl SqlStore {
    /// Connect (SQLite: create the file and schema, WAL mode).
    pub async fn open(cfg: &DirectoryConfig) -> Result<Self, DirectoryError> {
        sqlx::any::install_default_drivers();
        let url = match cfg.backend {
            BackendKind::Sqlite => {
                let p = cfg.path.to_str().ok_or_else(|| {
                    DirectoryError::Config("sqlite path is not valid UTF-8".into())
                })?;
                if p.is_empty() {
                    return Err(DirectoryError::Config("sqlite path is empty".into()));
                }
                format!("sqlite://{p}?mode=rwc")
            }
            BackendKind::Mysql | BackendKind::Postgres => {
                let url = cfg.url.expose();
                if url.is_empty() {
                    return Err(DirectoryError::Config(
                        "url is required for mysql/postgres".into(),
                    ));
                }
                let ok = match cfg.backend {
                    BackendKind::Mysql => {
                        url.starts_with("mysql://") || url.starts_with("mariadb://")
                    }
                    _ => url.starts_with("postgres://") || url.starts_with("postgresql://"),
                };
                if !ok {
                    return Err(DirectoryError::Config(
                        "url scheme does not match the backend".into(),
                    ));
                }
                url.clone()
            }
            BackendKind::System => {
                return Err(DirectoryError::Config(
                    "system backend has no SQL store".into(),
                ));
            }
        };
        let pool = AnyPoolOptions::new()
            .max_connections(cfg.max_connections.max(1))
            .connect(&url)
            .await?;
        // Where postern owns the schema, default queries mean the postern
        // ones (which read enabled, quota, maildir, ...).
        let owns_schema = cfg.backend == BackendKind::Sqlite || cfg.create_schema;
        let queries = if owns_schema && cfg.queries == SqlQueries::default() {
            SqlQueries::postern()
        } else {
            cfg.queries.clone()
        };
        let store = SqlStore {
            pool,
            kind: cfg.backend,
            queries,
            mailbox_template: cfg.mailbox_template.clone(),
        };
        if cfg.backend == BackendKind::Sqlite {
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&store.pool)
                .await?;
        }
        if cfg.backend == BackendKind::Sqlite || cfg.create_schema {
            store.create_schema().await?;
        }
        Ok(store)
    }

    /// `CREATE TABLE IF NOT EXISTS` for the postern schema.
    /// MySQL/MariaDB tables are created as utf8mb4 with a binary collation
    /// (whatever the server default): addresses are stored lowercased and
    /// compared exactly, internationalised ones included.
    pub async fn create_schema(&self) -> Result<(), DirectoryError> {
        for stmt in SCHEMA {
            let sql = if self.kind == BackendKind::Mysql {
                format!("{stmt} DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
            } else {
                stmt.to_string()
            };
            sqlx::query(&sql).execute(&self.pool).await?;
        }
        Ok(())
    }

    /// The backend kind.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    async fn fetch(&self, template: &str, key: &str) -> Result<Vec<AnyRow>, DirectoryError> {
        let (sql, binds) = expand_query(template, key, self.kind);
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        Ok(q.fetch_all(&self.pool).await?)
    }

    // ------------------------------------------------------------ lookups

    /// Is `domain` ours; `Some(enabled)` if so.
    pub async fn domain_enabled(&self, domain: &str) -> Result<Option<bool>, DirectoryError> {
        let rows = self.fetch(&self.queries.domain, domain).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(opt_int(row, "enabled")?.unwrap_or(1) != 0))
    }

    /// A user by normalised address.
    pub async fn user(&self, address: &str) -> Result<Option<User>, DirectoryError> {
        let rows = self.fetch(&self.queries.user, address).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        self.user_from_row(row, address).map(Some)
    }

    fn user_from_row(&self, row: &AnyRow, fallback: &str) -> Result<User, DirectoryError> {
        let address = opt_str(row, "email")?
            .unwrap_or_else(|| fallback.to_string())
            .to_lowercase();
        let password = opt_str(row, "password")?.unwrap_or_default();
        let mailbox = match opt_str(row, "maildir")? {
            Some(m) if !m.is_empty() => PathBuf::from(m),
            _ => mailbox_path(&self.mailbox_template, &address),
        };
        Ok(User {
            login: address.clone(),
            address,
            password_hash: Secret::new(password),
            quota_bytes: opt_int(row, "quota_bytes")?.unwrap_or(0).max(0) as u64,
            enabled: opt_int(row, "enabled")?.unwrap_or(1) != 0,
            mailbox,
            host: opt_str(row, "host")?.filter(|h| !h.is_empty()),
            uid: opt_id(opt_int(row, "uid")?),
            gid: opt_id(opt_int(row, "gid")?),
        })
    }

    /// Forwarding destinations of `source` (`user@dom` or `@dom`).
    pub async fn forwardings(&self, source: &str) -> Result<Vec<String>, DirectoryError> {
        let rows = self.fetch(&self.queries.forwardings, source).await?;
        let mut out = Vec::new();
        for row in rows.iter().take(MAX_FORWARDINGS) {
            let d = match opt_str(row, "destination")? {
                Some(d) => d,
                None => row.try_get::<String, _>(0usize)?,
            };
            for part in d.split([',', ' ', '\n']) {
                let part = part.trim();
                if !part.is_empty() && out.len() < MAX_FORWARDINGS {
                    out.push(part.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Transport of a domain.
    pub async fn transport(&self, domain: &str) -> Result<Option<String>, DirectoryError> {
        let rows = self.fetch(&self.queries.transport, domain).await?;
        match rows.first() {
            Some(r) => Ok(opt_str(r, "transport")?.filter(|t| !t.is_empty())),
            None => Ok(None),
        }
    }

    // ------------------------------------------------- management (mailctl)

    fn q(&self, sql: &str) -> String {
        dialect(sql, self.kind)
    }

    async fn exists(&self, sql: &str, key: &str) -> Result<bool, DirectoryError> {
        let sql = self.q(sql);
        Ok(sqlx::query(&sql)
            .bind(key.to_string())
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    async fn require_domain(&self, domain: &str) -> Result<(), DirectoryError> {
        if !self
            .exists("SELECT 1 FROM domains WHERE domain = ?", domain)
            .await?
        {
            return Err(DirectoryError::UnknownDomain(domain.to_string()));
        }
        Ok(())
    }

    fn map_unique(e: sqlx::Error, what: &str) -> DirectoryError {
        if let sqlx::Error::Database(d) = &e
            && d.is_unique_violation()
        {
            return DirectoryError::Duplicate(what.to_string());
        }
        DirectoryError::Database(e)
    }

    /// Add a domain.
    pub async fn domain_add(&self, domain: &str) -> Result<Domain, DirectoryError> {
        let d = normalize_domain(domain).map_err(|r| DirectoryError::bad_address(domain, r))?;
        if self
            .exists("SELECT 1 FROM domains WHERE domain = ?", &d)
            .await?
        {
            return Err(DirectoryError::Duplicate(d));
        }
        sqlx::query(&self.q("INSERT INTO domains (domain, enabled) VALUES (?, 1)"))
            .bind(d.clone())
            .execute(&self.pool)
            .await
            .map_err(|e| Self::map_unique(e, &d))?;
        Ok(Domain {
            name: d,
            enabled: true,
            transport: None,
        })
    }

    /// Delete a domain; refused while it has users or aliases.
    pub async fn domain_del(&self, domain: &str) -> Result<(), DirectoryError> {
        let d = normalize_domain(domain).map_err(|r| DirectoryError::bad_address(domain, r))?;
        self.require_domain(&d).await?;
        let pattern = format!("%@{d}");
        let users = self
            .exists("SELECT 1 FROM users WHERE email LIKE ?", &pattern)
            .await?;
        let aliases = self
            .exists("SELECT 1 FROM forwardings WHERE source LIKE ?", &pattern)
            .await?;
        if users || aliases {
            return Err(DirectoryError::DomainNotEmpty(d));
        }
        for sql in [
            "DELETE FROM transport WHERE domain = ?",
            "DELETE FROM domains WHERE domain = ?",
        ] {
            sqlx::query(&self.q(sql))
                .bind(d.clone())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Enable or disable a domain.
    pub async fn domain_set_enabled(
        &self,
        domain: &str,
        enabled: bool,
    ) -> Result<(), DirectoryError> {
        let d = normalize_domain(domain).map_err(|r| DirectoryError::bad_address(domain, r))?;
        self.require_domain(&d).await?;
        sqlx::query(&self.q("UPDATE domains SET enabled = ? WHERE domain = ?"))
            .bind(i64::from(enabled))
            .bind(d)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// All domains, sorted, with their transports.
    pub async fn domain_list(&self) -> Result<Vec<Domain>, DirectoryError> {
        let rows = sqlx::query(
            "SELECT d.domain AS domain, d.enabled AS enabled, t.transport AS transport \
             FROM domains d LEFT JOIN transport t ON t.domain = d.domain ORDER BY d.domain",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Domain {
                    name: opt_str(r, "domain")?.unwrap_or_default(),
                    enabled: opt_int(r, "enabled")?.unwrap_or(1) != 0,
                    transport: opt_str(r, "transport")?,
                })
            })
            .collect()
    }

    /// Remove the transport of a domain (none set is fine).
    pub async fn transport_del(&self, domain: &str) -> Result<(), DirectoryError> {
        let d = normalize_domain(domain).map_err(|r| DirectoryError::bad_address(domain, r))?;
        sqlx::query(&self.q("DELETE FROM transport WHERE domain = ?"))
            .bind(d)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Set (or replace) the transport of a domain.
    pub async fn transport_set(&self, domain: &str, transport: &str) -> Result<(), DirectoryError> {
        let d = normalize_domain(domain).map_err(|r| DirectoryError::bad_address(domain, r))?;
        self.require_domain(&d).await?;
        if transport.trim().is_empty() || transport.len() > 255 {
            return Err(DirectoryError::Config(
                "transport must be 1..255 bytes".into(),
            ));
        }
        sqlx::query(&self.q("DELETE FROM transport WHERE domain = ?"))
            .bind(d.clone())
            .execute(&self.pool)
            .await?;
        sqlx::query(&self.q("INSERT INTO transport (domain, transport) VALUES (?, ?)"))
            .bind(d)
            .bind(transport.trim().to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Add a user with an already computed hash.
    pub(crate) async fn user_insert(
        &self,
        user: &User,
        maildir: Option<&str>,
    ) -> Result<(), DirectoryError> {
        let (_, domain) = user.address.rsplit_once('@').unwrap_or(("", ""));
        self.require_domain(domain).await?;
        if self
            .exists("SELECT 1 FROM users WHERE email = ?", &user.address)
            .await?
        {
            return Err(DirectoryError::Duplicate(user.address.clone()));
        }
        sqlx::query(&self.q(
            "INSERT INTO users (email, password, quota_bytes, enabled, maildir, host, uid, gid) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(user.address.clone())
        .bind(user.password_hash.expose().clone())
        .bind(i64::try_from(user.quota_bytes).unwrap_or(i64::MAX))
        .bind(i64::from(user.enabled))
        .bind(maildir.map(str::to_string))
        .bind(user.host.clone())
        .bind(user.uid.map(i64::from))
        .bind(user.gid.map(i64::from))
        .execute(&self.pool)
        .await
        .map_err(|e| Self::map_unique(e, &user.address))?;
        Ok(())
    }

    async fn update_user(
        &self,
        sql: &str,
        address: &str,
        bind: UpdateValue,
    ) -> Result<(), DirectoryError> {
        let sql = self.q(sql);
        let q = sqlx::query(&sql);
        let q = match bind {
            UpdateValue::Int(i) => q.bind(i),
            UpdateValue::Str(s) => q.bind(s),
        };
        let r = q.bind(address.to_string()).execute(&self.pool).await?;
        if r.rows_affected() == 0 {
            return Err(DirectoryError::UnknownUser(address.to_string()));
        }
        Ok(())
    }

    /// Delete a user (and nothing else: aliases pointing to it stay).
    pub async fn user_del(&self, address: &str) -> Result<(), DirectoryError> {
        let r = sqlx::query(&self.q("DELETE FROM users WHERE email = ?"))
            .bind(address.to_string())
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(DirectoryError::UnknownUser(address.to_string()));
        }
        Ok(())
    }

    /// Store a new hash.
    pub(crate) async fn user_set_hash(
        &self,
        address: &str,
        hash: String,
    ) -> Result<(), DirectoryError> {
        self.update_user(
            "UPDATE users SET password = ? WHERE email = ?",
            address,
            UpdateValue::Str(hash),
        )
        .await
    }

    /// Enable or disable a user.
    pub async fn user_set_enabled(
        &self,
        address: &str,
        enabled: bool,
    ) -> Result<(), DirectoryError> {
        self.update_user(
            "UPDATE users SET enabled = ? WHERE email = ?",
            address,
            UpdateValue::Int(i64::from(enabled)),
        )
        .await
    }

    /// Set a user's quota (0 = none).
    pub async fn user_set_quota(
        &self,
        address: &str,
        quota_bytes: u64,
    ) -> Result<(), DirectoryError> {
        self.update_user(
            "UPDATE users SET quota_bytes = ? WHERE email = ?",
            address,
            UpdateValue::Int(i64::try_from(quota_bytes).unwrap_or(i64::MAX)),
        )
        .await
    }

    /// Users, sorted, optionally of one domain.
    pub async fn user_list(&self, domain: Option<&str>) -> Result<Vec<User>, DirectoryError> {
        let cols =
            "SELECT email, password, quota_bytes, enabled, maildir, host, uid, gid FROM users";
        let rows = match domain {
            Some(d) => {
                let d = normalize_domain(d).map_err(|r| DirectoryError::bad_address(d, r))?;
                sqlx::query(&self.q(&format!("{cols} WHERE email LIKE ? ORDER BY email")))
                    .bind(format!("%@{d}"))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("{cols} ORDER BY email"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let u = self.user_from_row(r, "")?;
            // LIKE treats '_' as a wildcard: filter exactly.
            if domain.is_none_or(|d| {
                u.address.rsplit_once('@').map(|x| x.1) == Some(&d.to_ascii_lowercase())
            }) {
                out.push(u);
            }
        }
        Ok(out)
    }

    /// Add `source -> destination`. `source` is `user@dom` or `@dom`; its
    /// domain must exist.
    pub async fn alias_add(&self, source: &str, destination: &str) -> Result<(), DirectoryError> {
        let domain = source.rsplit_once('@').map(|x| x.1).unwrap_or("");
        self.require_domain(domain).await?;
        let dup =
            sqlx::query(&self.q("SELECT 1 FROM forwardings WHERE source = ? AND destination = ?"))
                .bind(source.to_string())
                .bind(destination.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let what = format!("{source} -> {destination}");
        if dup.is_some() {
            return Err(DirectoryError::Duplicate(what));
        }
        sqlx::query(&self.q("INSERT INTO forwardings (source, destination) VALUES (?, ?)"))
            .bind(source.to_string())
            .bind(destination.to_string())
            .execute(&self.pool)
            .await
            .map_err(|e| Self::map_unique(e, &what))?;
        Ok(())
    }

    /// Delete one `source -> destination`, or every row of `source`.
    pub async fn alias_del(
        &self,
        source: &str,
        destination: Option<&str>,
    ) -> Result<(), DirectoryError> {
        let r = match destination {
            Some(d) => {
                sqlx::query(&self.q("DELETE FROM forwardings WHERE source = ? AND destination = ?"))
                    .bind(source.to_string())
                    .bind(d.to_string())
                    .execute(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&self.q("DELETE FROM forwardings WHERE source = ?"))
                    .bind(source.to_string())
                    .execute(&self.pool)
                    .await?
            }
        };
        if r.rows_affected() == 0 {
            return Err(DirectoryError::UnknownAlias(source.to_string()));
        }
        Ok(())
    }

    /// `(source, destination)` rows, sorted, optionally of one domain.
    pub async fn alias_list(
        &self,
        domain: Option<&str>,
    ) -> Result<Vec<(String, String)>, DirectoryError> {
        let rows = match domain {
            Some(d) => {
                let d = normalize_domain(d).map_err(|r| DirectoryError::bad_address(d, r))?;
                sqlx::query(&self.q(
                    "SELECT source, destination FROM forwardings WHERE source LIKE ? \
                     ORDER BY source, destination",
                ))
                .bind(format!("%@{d}"))
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT source, destination FROM forwardings ORDER BY source, destination",
                )
                .fetch_all(&self.pool)
                .await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let s = opt_str(r, "source")?.unwrap_or_default();
            let d = opt_str(r, "destination")?.unwrap_or_default();
            if domain.is_none_or(|dom| {
                s.rsplit_once('@').map(|x| x.1) == Some(&dom.to_ascii_lowercase())
            }) {
                out.push((s, d));
            }
        }
        Ok(out)
    }

    /// Validate an address for management input.
    pub(crate) fn parse_address(s: &str) -> Result<Address, DirectoryError> {
        Address::parse(s).map_err(|r| DirectoryError::bad_address(s, r))
    }
}

enum UpdateValue {
    Int(i64),
    Str(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_query_binds_in_order() {
        let (sql, b) = expand_query(
            "SELECT x FROM t WHERE a = %s AND b = %u AND c = %d AND d LIKE '50%%' AND e = '%x'",
            "joe@example.org",
            BackendKind::Mysql,
        );
        assert_eq!(
            sql,
            "SELECT x FROM t WHERE a = ? AND b = ? AND c = ? AND d LIKE '50%' AND e = '%x'"
        );
        assert_eq!(b, ["joe@example.org", "joe", "example.org"]);
        let (sql, b) = expand_query(
            "SELECT 1 FROM d WHERE d = %s OR d = %d",
            "example.org",
            BackendKind::Postgres,
        );
        assert_eq!(sql, "SELECT 1 FROM d WHERE d = $1 OR d = $2");
        assert_eq!(b, ["example.org", "example.org"]);
        // The key never reaches the SQL text.
        let (sql, _) = expand_query(
            "SELECT 1 WHERE a = %s",
            "x' OR '1'='1@y",
            BackendKind::Sqlite,
        );
        assert_eq!(sql, "SELECT 1 WHERE a = ?");
    }

    #[test]
    fn dialect_and_mailbox_path() {
        assert_eq!(
            dialect("a = ? AND b = ?", BackendKind::Postgres),
            "a = $1 AND b = $2"
        );
        assert_eq!(dialect("a = ?", BackendKind::Sqlite), "a = ?");
        assert_eq!(
            mailbox_path("/var/vmail/%d/%u/Maildir", "joe@example.org"),
            PathBuf::from("/var/vmail/example.org/joe/Maildir")
        );
        assert_eq!(
            mailbox_path("/m/%s/%%/%x", "a@b"),
            PathBuf::from("/m/a@b/%/%x")
        );
    }
}
