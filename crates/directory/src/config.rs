//! Configuration of the directory, meant to be embedded in a daemon's config
//! section (`[authd.directory]`, `[queue-manager.directory]`, ...).
//!
//! ```toml
//! backend = "sqlite"                     # sqlite | mysql | postgres | system
//! path = "/var/lib/postern/directory.db" # sqlite only
//! # url = "mysql://mail:secret@db/mail"  # mysql / postgres
//! mydestination = ["localhost", "mail.example.org"]
//! myorigin = "mail.example.org"
//! recipient_delimiter = "+"
//! cache_ttl_secs = 60
//! aliases_file = "/etc/aliases"
//! ```
//!
//! Every field has a default, documented on the field.

use std::path::PathBuf;

use serde::Deserialize;

use crate::aliases::AliasPolicy;
use crate::secret::Secret;

/// Which store holds users, domains and forwardings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Embedded SQLite file at `path` (default).
    #[default]
    Sqlite,
    /// MySQL / MariaDB at `url`.
    Mysql,
    /// PostgreSQL at `url`.
    Postgres,
    /// Unix system users (`/etc/passwd` + `/etc/shadow`), local domains only.
    System,
}

/// Directory configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Store kind. Default `sqlite`.
    pub backend: BackendKind,
    /// SQLite database file. Default `/var/lib/postern/directory.db`.
    /// Created (with the schema, WAL mode) on first open.
    pub path: PathBuf,
    /// Database URL for `mysql` / `postgres` (`mysql://user:pass@host/db`,
    /// `postgres://...`). Default empty. It usually holds a password, so it
    /// is a [`Secret`]: `Debug` (and so `mailctl config check`) prints `***`.
    pub url: Secret<String>,
    /// Connection pool size. Default 4.
    pub max_connections: u32,
    /// Create the postern schema (`CREATE TABLE IF NOT EXISTS`) on open for
    /// MySQL/PostgreSQL too. Default false (an existing classic schema is
    /// used through `queries`). Always done for SQLite. Where postern owns
    /// the schema (SQLite, or `create_schema = true`) and `queries` is left
    /// at its default, [`SqlQueries::postern`] is used. Management
    /// functions (`mailctl`) need the postern schema.
    pub create_schema: bool,
    /// Lookup queries (Postfix `mysql_table(5)` style). Defaults fit both
    /// the postern schema and the classic virtual-mail schema.
    pub queries: SqlQueries,
    /// Domains delivered with local semantics (Postfix `mydestination`):
    /// `/etc/aliases` applies to their local parts, and with the `system`
    /// backend their users are Unix accounts. Default empty.
    pub mydestination: Vec<String>,
    /// Domain appended to bare local names (alias targets like `root`, system
    /// logins). Default: the first `mydestination` entry, else `localhost`.
    pub myorigin: String,
    /// Domain appended to logins without `@` for virtual users (Dovecot
    /// `auth_default_realm`). Default empty: logins must be full addresses.
    pub default_login_domain: String,
    /// Plus-addressing delimiter characters (Postfix `recipient_delimiter`).
    /// Default `+`; empty disables.
    pub recipient_delimiter: String,
    /// Cache TTL in seconds for user lookups and recipient resolutions,
    /// negative answers included. Default 60; 0 disables the cache.
    pub cache_ttl_secs: u64,
    /// Cache size bound (entries). Default 10000.
    pub cache_max_entries: usize,
    /// Accept `{PLAIN}`/`{CLEAR}` stored passwords. Default false.
    pub allow_plaintext_schemes: bool,
    /// Scheme for new hashes (`mailctl user add/passwd`). Default `ARGON2ID`.
    pub default_scheme: String,
    /// Local aliases file (sendmail format). Default none.
    pub aliases_file: Option<PathBuf>,
    /// Allow `|command` targets in the aliases file. Default false.
    pub allow_command_targets: bool,
    /// Allow `/file` targets in the aliases file. Default false.
    pub allow_file_targets: bool,
    /// Mailbox path for users whose row has none; `%d` domain, `%u` local
    /// part, `%s` address. Default `/var/vmail/%d/%u/Maildir`.
    pub mailbox_template: String,
    /// Users allowed to log in as someone else (SASL authzid). Default empty.
    pub master_users: Vec<String>,
    /// Unix users: passwd file. Default `/etc/passwd`.
    pub passwd_file: PathBuf,
    /// Unix users: shadow file. Default `/etc/shadow`.
    pub shadow_file: PathBuf,
    /// Unix users: lowest uid that may receive mail / log in (system
    /// accounts below it are refused, root included). Default 1000.
    pub system_min_uid: u32,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            backend: BackendKind::Sqlite,
            path: PathBuf::from("/var/lib/postern/directory.db"),
            url: Secret::default(),
            max_connections: 4,
            create_schema: false,
            queries: SqlQueries::default(),
            mydestination: Vec::new(),
            myorigin: String::new(),
            default_login_domain: String::new(),
            recipient_delimiter: "+".into(),
            cache_ttl_secs: 60,
            cache_max_entries: 10_000,
            allow_plaintext_schemes: false,
            default_scheme: "ARGON2ID".into(),
            aliases_file: None,
            allow_command_targets: false,
            allow_file_targets: false,
            mailbox_template: "/var/vmail/%d/%u/Maildir".into(),
            master_users: Vec::new(),
            passwd_file: PathBuf::from("/etc/passwd"),
            shadow_file: PathBuf::from("/etc/shadow"),
            system_min_uid: 1000,
        }
    }
}

impl DirectoryConfig {
    /// The domain for bare names.
    pub fn origin(&self) -> String {
        if !self.myorigin.is_empty() {
            self.myorigin.to_ascii_lowercase()
        } else {
            self.mydestination
                .first()
                .map(|d| d.to_ascii_lowercase())
                .unwrap_or_else(|| "localhost".into())
        }
    }

    /// Policy for the aliases file.
    pub fn alias_policy(&self) -> AliasPolicy {
        AliasPolicy {
            allow_commands: self.allow_command_targets,
            allow_files: self.allow_file_targets,
        }
    }
}

/// Lookup queries. Placeholders, as in Postfix `mysql_table(5)`:
/// `%s` the whole key, `%u` its local part, `%d` its domain, `%%` a `%`
/// (for a key without `@` — a domain — `%u` and `%d` are the whole key).
/// They are passed as bound parameters, never spliced into the SQL.
///
/// Result columns are read by name; missing optional columns take defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlQueries {
    /// Is the domain ours. One row if so; an optional `enabled` column
    /// (0 = disabled). Default `SELECT 1 AS enabled FROM domains WHERE domain = %s`
    /// (the classic schema has no `enabled` column; the postern schema
    /// does, see [`SqlQueries::postern`]).
    pub domain: String,
    /// A user by address. Columns: `email`, `password` (required);
    /// `quota_bytes`, `enabled`, `maildir`, `host`, `uid`, `gid` (optional).
    /// Default `SELECT email, password FROM users WHERE email = %s`.
    pub user: String,
    /// Forwarding destinations of a source (`user@dom` or `@dom` for the
    /// catch-all). One `destination` per row; comma-separated lists in a
    /// row are split. Default
    /// `SELECT destination FROM forwardings WHERE source = %s`.
    pub forwardings: String,
    /// Transport of a domain. Column `transport`. Default
    /// `SELECT transport FROM transport WHERE domain = %s`.
    pub transport: String,
}

impl Default for SqlQueries {
    fn default() -> Self {
        SqlQueries {
            domain: "SELECT 1 AS enabled FROM domains WHERE domain = %s".into(),
            user: "SELECT email, password FROM users WHERE email = %s".into(),
            forwardings: "SELECT destination FROM forwardings WHERE source = %s".into(),
            transport: "SELECT transport FROM transport WHERE domain = %s".into(),
        }
    }
}

impl SqlQueries {
    /// Queries for the schema postern creates (SQLite default, or any
    /// backend with `create_schema = true`).
    pub fn postern() -> Self {
        SqlQueries {
            domain: "SELECT enabled FROM domains WHERE domain = %s".into(),
            user: "SELECT email, password, quota_bytes, enabled, maildir, host, uid, gid \
                   FROM users WHERE email = %s"
                .into(),
            ..SqlQueries::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let c: DirectoryConfig =
            toml::from_str("backend = \"mysql\"\nurl = \"mysql://x/y\"").unwrap();
        assert_eq!(c.backend, BackendKind::Mysql);
        assert_eq!(c.recipient_delimiter, "+");
        assert_eq!(c.cache_ttl_secs, 60);
        assert_eq!(c.origin(), "localhost");
        assert!(toml::from_str::<DirectoryConfig>("bakend = \"mysql\"").is_err());
        assert!(toml::from_str::<DirectoryConfig>("backend = \"ldap\"").is_err());
        let q: DirectoryConfig = toml::from_str(
            "mydestination = [\"Mail.Example.org\"]\n[queries]\nuser = \"SELECT email, password FROM mailbox WHERE username = %s\"",
        )
        .unwrap();
        assert_eq!(q.queries.forwardings, SqlQueries::default().forwardings);
        assert_eq!(q.origin(), "mail.example.org");
        assert!(toml::from_str::<DirectoryConfig>("[queries]\nusr = \"x\"").is_err());
        assert_eq!(c.url.expose(), "mysql://x/y");
        let printed = format!("{c:?}");
        assert!(
            printed.contains("url: ***") && !printed.contains("mysql://"),
            "{printed}"
        );
    }

    /// The example at the top of this module parses.
    #[test]
    fn module_doc_example_parses() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start().to_string() + "\n")
            .collect();
        assert!(example.contains("backend"), "{example}");
        let c: DirectoryConfig = toml::from_str(&example).unwrap();
        assert_eq!(
            c.aliases_file.as_deref(),
            Some(std::path::Path::new("/etc/aliases"))
        );
        assert_eq!(c.origin(), "mail.example.org");
    }
}
