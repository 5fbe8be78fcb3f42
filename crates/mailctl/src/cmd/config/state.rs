//! `mailctl config export [--format yaml|json] [-o FILE]` and
//! `mailctl config apply FILE [--dry-run]`: the directory as one document.
//!
//! ```yaml
//! version: 1
//! domains:
//! - name: example.org
//!   enabled: true
//!   transport: null            # or "lmtp:unix:/run/dovecot/lmtp", ...
//! users:
//! - address: alice@example.org
//!   password_hash: '{ARGON2ID}$argon2id$v=19$...'
//!   quota_bytes: 0
//!   enabled: true
//!   mailbox: /var/lib/postern/mail/example.org/alice/Maildir
//!   host: null
//!   uid: null
//!   gid: null
//! aliases:
//! - source: team@example.org   # or @example.org (catch-all)
//!   destination: alice@example.org
//! dkim:                        # only when there are DKIM keys
//! - domain: example.org
//!   selector: ed-20261203
//!   algorithm: ed25519
//!   active: true               # the selector that signs
//! ```
//!
//! The export holds password **hashes** (never passwords): keep the file
//! like `/etc/shadow` (`-o` writes it with mode 0600). DKIM private keys
//! are not part of it (`mailctl dkim` keeps them as files in
//! `checks.dkim_sign.key_directory`; `mailctl backup` copies them), only
//! the selectors: `apply` makes the document's active selector sign again
//! and reports (`!`, exit 1) a selector whose key is not in the key
//! directory; it never deletes a key.
//!
//! `apply` computes the difference between the file and the live directory
//! and makes the directory match: missing domains, users and aliases are
//! added (users with the hash as it is in the file), changed ones updated
//! (password hash, quota, enabled, transport; a changed mailbox, host, uid
//! or gid re-creates the user row — the Maildir on disk is not touched),
//! and what the file does not list is deleted (aliases, then users, then
//! domains; mail on disk stays). `--dry-run` prints the same difference
//! and changes nothing. Each line is `+` (add), `-` (delete) or `~`
//! (change, naming the fields, never the hashes).
//!
//! No daemon is restarted. authd caches lookups for
//! `[authd.directory] cache_ttl_secs`; after a change `apply` runs
//! `systemctl reload postern-authd` (SIGHUP: authd empties its cache at
//! once) when systemd is running, and otherwise says to send authd SIGHUP
//! (or wait for the TTL).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use directory::{Directory, Secret, User};
use postern_checks::auth::keys::KeyStore;
use serde::{Deserialize, Serialize};

use crate::cmd::admin;

/// Version of the document format.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

/// The directory as a document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub domains: Vec<DomainEntry>,
    #[serde(default)]
    pub users: Vec<UserEntry>,
    #[serde(default)]
    pub aliases: Vec<AliasEntry>,
    /// DKIM selectors held in `checks.dkim_sign.key_directory` (the keys
    /// themselves are files and stay out of the document: `mailctl backup`
    /// copies them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dkim: Vec<DkimEntry>,
}

/// One DKIM selector of a domain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimEntry {
    pub domain: String,
    pub selector: String,
    /// `rsa` or `ed25519`.
    pub algorithm: String,
    /// The selector that signs the domain's mail.
    #[serde(default)]
    pub active: bool,
}

/// The DKIM selectors in `store`, sorted.
pub fn read_dkim(store: &KeyStore) -> Vec<DkimEntry> {
    let mut out: Vec<DkimEntry> = store
        .domains()
        .iter()
        .flat_map(|d| store.keys(d))
        .flatten()
        .map(|k| DkimEntry {
            domain: k.domain,
            selector: k.selector,
            algorithm: k.algorithm.k().to_string(),
            active: k.active,
        })
        .collect();
    out.sort();
    out
}

/// The key store of `cfg` (`checks.dkim_sign.key_directory`).
pub fn key_store(cfg: &postern_common::Config) -> KeyStore {
    KeyStore::new(
        cfg.checks
            .dkim_sign
            .key_directory(&cfg.global.state_directory),
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainEntry {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub transport: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub address: String,
    /// `{SCHEME}...` as stored.
    pub password_hash: String,
    #[serde(default)]
    pub quota_bytes: u64,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub mailbox: PathBuf,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasEntry {
    pub source: String,
    pub destination: String,
}

fn yes() -> bool {
    true
}

/// Read the live directory.
pub async fn read(dir: &Directory) -> anyhow::Result<State> {
    let domains = dir
        .domain_list()
        .await?
        .into_iter()
        .map(|d| DomainEntry {
            name: d.name,
            enabled: d.enabled,
            transport: d.transport,
        })
        .collect();
    let mut users: Vec<UserEntry> = dir
        .user_list(None)
        .await?
        .into_iter()
        .map(|u| UserEntry {
            password_hash: u.password_hash.expose().clone(),
            address: u.address,
            quota_bytes: u.quota_bytes,
            enabled: u.enabled,
            mailbox: u.mailbox,
            host: u.host,
            uid: u.uid,
            gid: u.gid,
        })
        .collect();
    users.sort_by(|a, b| a.address.cmp(&b.address));
    let mut aliases: Vec<AliasEntry> = dir
        .alias_list(None)
        .await?
        .into_iter()
        .map(|(source, destination)| AliasEntry {
            source,
            destination,
        })
        .collect();
    aliases.sort();
    Ok(State {
        version: STATE_VERSION,
        domains,
        users,
        aliases,
        dkim: Vec::new(),
    })
}

/// The document text.
pub fn render(state: &State, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Yaml => serde_norway::to_string(state)?,
        Format::Json => format!("{}\n", serde_json::to_string_pretty(state)?),
    })
}

/// Parse a document (YAML; JSON is YAML too).
pub fn parse(text: &str) -> anyhow::Result<State> {
    let s: State = serde_norway::from_str(text)?;
    if s.version != STATE_VERSION {
        bail!(
            "version {} not understood (this mailctl writes {STATE_VERSION})",
            s.version
        );
    }
    Ok(s)
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    AddDomain(DomainEntry),
    SetDomainEnabled(String, bool),
    SetTransport(String, Option<String>),
    AddUser(UserEntry),
    /// Delete and add again (mailbox, host, uid or gid changed).
    ReplaceUser(UserEntry, Vec<&'static str>),
    SetHash(String, String),
    SetQuota(String, u64),
    SetEnabled(String, bool),
    AddAlias(AliasEntry),
    DelAlias(AliasEntry),
    DelUser(String),
    DelDomain(String),
    /// Make this selector the one that signs the domain's mail.
    DkimActivate(DkimEntry),
    /// The document names a selector whose key is not here: apply cannot
    /// make a private key, so it says so and fails.
    DkimMissing(DkimEntry),
}

impl Change {
    /// The diff line (no hashes).
    pub fn line(&self) -> String {
        match self {
            Change::AddDomain(d) => format!(
                "+ domain {}{}{}",
                d.name,
                if d.enabled { "" } else { " (disabled)" },
                d.transport
                    .as_ref()
                    .map(|t| format!(" transport {t}"))
                    .unwrap_or_default()
            ),
            Change::SetDomainEnabled(d, e) => format!("~ domain {d}: enabled {e}"),
            Change::SetTransport(d, Some(t)) => format!("~ domain {d}: transport {t}"),
            Change::SetTransport(d, None) => format!("~ domain {d}: no transport"),
            Change::AddUser(u) => format!("+ user {}", u.address),
            Change::ReplaceUser(u, fields) => {
                format!(
                    "~ user {}: {} (row re-created)",
                    u.address,
                    fields.join(", ")
                )
            }
            Change::SetHash(a, _) => format!("~ user {a}: password"),
            Change::SetQuota(a, q) => format!("~ user {a}: quota {q}"),
            Change::SetEnabled(a, e) => format!("~ user {a}: enabled {e}"),
            Change::AddAlias(a) => format!("+ alias {} {}", a.source, a.destination),
            Change::DelAlias(a) => format!("- alias {} {}", a.source, a.destination),
            Change::DelUser(a) => format!("- user {a}"),
            Change::DelDomain(d) => format!("- domain {d}"),
            Change::DkimActivate(k) => {
                format!("~ dkim {}: signing with selector {}", k.domain, k.selector)
            }
            Change::DkimMissing(k) => format!(
                "! dkim {} selector {} ({}): no key here; copy its key file into the key directory (from `mailctl backup`) or `mailctl dkim generate`",
                k.domain, k.selector, k.algorithm
            ),
        }
    }
}

/// What turns `live` into `want`, in an order the directory accepts
/// (domains before their users, aliases before their domain goes).
pub fn diff(live: &State, want: &State) -> Vec<Change> {
    let mut out = Vec::new();
    let live_d: BTreeMap<&str, &DomainEntry> =
        live.domains.iter().map(|d| (d.name.as_str(), d)).collect();
    let want_d: BTreeMap<&str, &DomainEntry> =
        want.domains.iter().map(|d| (d.name.as_str(), d)).collect();
    for (name, w) in &want_d {
        match live_d.get(name) {
            None => out.push(Change::AddDomain((*w).clone())),
            Some(l) => {
                if l.enabled != w.enabled {
                    out.push(Change::SetDomainEnabled(name.to_string(), w.enabled));
                }
                if l.transport != w.transport {
                    out.push(Change::SetTransport(name.to_string(), w.transport.clone()));
                }
            }
        }
    }
    let live_a: BTreeSet<&AliasEntry> = live.aliases.iter().collect();
    let want_a: BTreeSet<&AliasEntry> = want.aliases.iter().collect();
    for a in live_a.difference(&want_a) {
        out.push(Change::DelAlias((*a).clone()));
    }
    let live_u: BTreeMap<&str, &UserEntry> =
        live.users.iter().map(|u| (u.address.as_str(), u)).collect();
    let want_u: BTreeMap<&str, &UserEntry> =
        want.users.iter().map(|u| (u.address.as_str(), u)).collect();
    for (addr, l) in &live_u {
        if !want_u.contains_key(addr) {
            out.push(Change::DelUser(l.address.clone()));
        }
    }
    for (addr, w) in &want_u {
        let Some(l) = live_u.get(addr) else {
            out.push(Change::AddUser((*w).clone()));
            continue;
        };
        let mut fields = Vec::new();
        if l.mailbox != w.mailbox {
            fields.push("mailbox");
        }
        if l.host != w.host {
            fields.push("host");
        }
        if l.uid != w.uid {
            fields.push("uid");
        }
        if l.gid != w.gid {
            fields.push("gid");
        }
        if !fields.is_empty() {
            out.push(Change::ReplaceUser((*w).clone(), fields));
            continue;
        }
        if l.password_hash != w.password_hash {
            out.push(Change::SetHash(w.address.clone(), w.password_hash.clone()));
        }
        if l.quota_bytes != w.quota_bytes {
            out.push(Change::SetQuota(w.address.clone(), w.quota_bytes));
        }
        if l.enabled != w.enabled {
            out.push(Change::SetEnabled(w.address.clone(), w.enabled));
        }
    }
    for a in want_a.difference(&live_a) {
        out.push(Change::AddAlias((*a).clone()));
    }
    for name in live_d.keys() {
        if !want_d.contains_key(name) {
            out.push(Change::DelDomain(name.to_string()));
        }
    }
    // DKIM last. Keys are never deleted by apply; a selector the document
    // does not name stays (not signing once another is active).
    for w in &want.dkim {
        let here = live
            .dkim
            .iter()
            .find(|l| l.domain == w.domain && l.selector == w.selector);
        match here {
            Some(l) if l.algorithm != w.algorithm => out.push(Change::DkimMissing(w.clone())),
            Some(l) if w.active && !l.active => out.push(Change::DkimActivate(w.clone())),
            Some(_) => {}
            None => out.push(Change::DkimMissing(w.clone())),
        }
    }
    out
}

fn user_of(u: &UserEntry) -> User {
    User {
        address: u.address.clone(),
        login: u.address.clone(),
        password_hash: Secret::new(u.password_hash.clone()),
        quota_bytes: u.quota_bytes,
        enabled: u.enabled,
        mailbox: u.mailbox.clone(),
        host: u.host.clone(),
        uid: u.uid,
        gid: u.gid,
    }
}

async fn add_user(dir: &Directory, u: &UserEntry) -> anyhow::Result<()> {
    dir.user_add_hashed(&user_of(u)).await?;
    if !u.enabled {
        dir.user_set_enabled(&u.address, false).await?;
    }
    Ok(())
}

/// Carry out `changes`, in order (DKIM selectors in `keys`).
pub async fn apply(dir: &Directory, keys: &KeyStore, changes: &[Change]) -> anyhow::Result<()> {
    for c in changes {
        let r: anyhow::Result<()> = async {
            match c {
                Change::AddDomain(d) => {
                    dir.domain_add(&d.name).await?;
                    if !d.enabled {
                        dir.sql()?.domain_set_enabled(&d.name, false).await?;
                    }
                    if let Some(t) = &d.transport {
                        dir.transport_set(&d.name, t).await?;
                    }
                }
                Change::SetDomainEnabled(d, e) => {
                    dir.sql()?.domain_set_enabled(d, *e).await?;
                    dir.invalidate_all();
                }
                Change::SetTransport(d, Some(t)) => dir.transport_set(d, t).await?,
                Change::SetTransport(d, None) => dir.transport_del(d).await?,
                Change::AddUser(u) => add_user(dir, u).await?,
                Change::ReplaceUser(u, _) => {
                    dir.user_del(&u.address).await?;
                    add_user(dir, u).await?;
                }
                Change::SetHash(a, h) => dir.user_set_password_hash(a, h).await?,
                Change::SetQuota(a, q) => dir.user_set_quota(a, *q).await?,
                Change::SetEnabled(a, e) => dir.user_set_enabled(a, *e).await?,
                Change::AddAlias(a) => dir.alias_add(&a.source, &a.destination).await?,
                Change::DelAlias(a) => dir.alias_del(&a.source, Some(&a.destination)).await?,
                Change::DelUser(a) => dir.user_del(a).await?,
                Change::DelDomain(d) => dir.domain_del(d).await?,
                Change::DkimActivate(k) => keys.activate(&k.domain, &k.selector)?,
                Change::DkimMissing(_) => bail!("the key is missing"),
            }
            Ok(())
        }
        .await;
        r.with_context(|| c.line())?;
    }
    Ok(())
}

/// Have a running authd forget its cache: `systemctl reload postern-authd`
/// under systemd, otherwise a note. Returns whether it was done.
pub fn reload_authd(dir: &Directory) -> bool {
    if Path::new("/run/systemd/system").exists() {
        match std::process::Command::new("systemctl")
            .args(["reload", "postern-authd"])
            .status()
        {
            Ok(s) if s.success() => {
                eprintln!("mailctl: authd reloaded (its lookup cache is empty)");
                return true;
            }
            Ok(s) => eprintln!("mailctl: `systemctl reload postern-authd` failed ({s})"),
            Err(e) => eprintln!("mailctl: cannot run systemctl: {e}"),
        }
    }
    let ttl = dir.config().cache_ttl_secs;
    eprintln!(
        "mailctl: note: authd sees the changes within {ttl}s (cache_ttl_secs), or at once after SIGHUP (systemctl reload postern-authd)"
    );
    false
}

pub fn run_export(file: &Path, format: Format, output: Option<&Path>) -> u8 {
    let cfg = match admin::load_config(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    admin::block_on(async {
        let dir = match admin::open(&cfg, file).await {
            Ok(d) => d,
            Err(code) => return code,
        };
        let keys = key_store(&cfg);
        let text = match read(&dir)
            .await
            .map(|s| State {
                dkim: read_dkim(&keys),
                ..s
            })
            .and_then(|s| render(&s, format))
        {
            Ok(t) => t,
            Err(e) => {
                eprintln!("mailctl: config export: {e:#}");
                return 1;
            }
        };
        match output {
            None => {
                print!("{text}");
                0
            }
            Some(p) => match write_private(p, text.as_bytes()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("mailctl: config export: {e:#}");
                    1
                }
            },
        }
    })
}

/// Write a file readable by its owner only (it holds password hashes).
pub fn write_private(p: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(p)
        .with_context(|| p.display().to_string())?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| p.display().to_string())
}

pub fn run_apply(file: &Path, input: &Path, dry_run: bool) -> u8 {
    let cfg = match admin::load_config(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let want = match std::fs::read_to_string(input)
        .with_context(|| input.display().to_string())
        .and_then(|t| parse(&t).with_context(|| input.display().to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mailctl: config apply: {e:#}");
            return admin::EXIT_DATAERR;
        }
    };
    admin::block_on(async {
        let dir = match admin::open(&cfg, file).await {
            Ok(d) => d,
            Err(code) => return code,
        };
        let keys = key_store(&cfg);
        let changes = match read(&dir).await {
            Ok(live) => diff(
                &State {
                    dkim: read_dkim(&keys),
                    ..live
                },
                &want,
            ),
            Err(e) => {
                eprintln!("mailctl: config apply: {e:#}");
                return 1;
            }
        };
        for c in &changes {
            println!("{}", c.line());
        }
        if changes.is_empty() {
            eprintln!("mailctl: the directory already matches {}", input.display());
            return 0;
        }
        if dry_run {
            eprintln!("mailctl: dry run: {} change(s) not made", changes.len());
            return 0;
        }
        let r = apply(&dir, &keys, &changes).await;
        reload_authd(&dir);
        match r {
            Ok(()) => {
                eprintln!("mailctl: {} change(s) made", changes.len());
                0
            }
            Err(e) => {
                eprintln!("mailctl: config apply: {e:#}");
                1
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(a: &str, h: &str) -> UserEntry {
        UserEntry {
            address: a.into(),
            password_hash: h.into(),
            quota_bytes: 0,
            enabled: true,
            mailbox: format!("/m/{a}").into(),
            host: None,
            uid: None,
            gid: None,
        }
    }

    fn dkim(d: &str, s: &str, active: bool) -> DkimEntry {
        DkimEntry {
            domain: d.into(),
            selector: s.into(),
            algorithm: "rsa".into(),
            active,
        }
    }

    fn dom(n: &str) -> DomainEntry {
        DomainEntry {
            name: n.into(),
            enabled: true,
            transport: None,
        }
    }

    #[test]
    fn diff_orders_changes_the_directory_accepts() {
        let live = State {
            version: 1,
            domains: vec![dom("a.test"), dom("old.test")],
            users: vec![user("x@a.test", "{PLAIN}1"), user("y@old.test", "{PLAIN}2")],
            aliases: vec![AliasEntry {
                source: "t@old.test".into(),
                destination: "y@old.test".into(),
            }],
            dkim: vec![
                dkim("a.test", "s1", true),
                dkim("a.test", "s2", false),
                dkim("old.test", "s1", true),
            ],
        };
        let mut moved = user("x@a.test", "{PLAIN}3");
        moved.quota_bytes = 5;
        let want = State {
            version: 1,
            domains: vec![dom("a.test"), dom("new.test")],
            users: vec![moved, user("z@new.test", "{PLAIN}4")],
            aliases: vec![],
            dkim: vec![
                dkim("a.test", "s1", false),
                dkim("a.test", "s2", true),
                dkim("new.test", "s9", true),
            ],
        };
        let lines: Vec<String> = diff(&live, &want).iter().map(Change::line).collect();
        assert_eq!(
            lines,
            [
                "+ domain new.test",
                "- alias t@old.test y@old.test",
                "- user y@old.test",
                "~ user x@a.test: password",
                "~ user x@a.test: quota 5",
                "+ user z@new.test",
                "- domain old.test",
                "~ dkim a.test: signing with selector s2",
                "! dkim new.test selector s9 (rsa): no key here; copy its key file into the key directory (from `mailctl backup`) or `mailctl dkim generate`",
            ]
        );
        assert!(diff(&want, &want).is_empty());
        assert!(lines.iter().all(|l| !l.contains("{PLAIN}")));
    }

    #[test]
    fn yaml_and_json_round_trip() {
        let s = State {
            version: 1,
            domains: vec![DomainEntry {
                name: "a.test".into(),
                enabled: false,
                transport: Some("lmtp:inet:127.0.0.1:24".into()),
            }],
            users: vec![user(
                "x@a.test",
                "{ARGON2ID}$argon2id$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA",
            )],
            aliases: vec![AliasEntry {
                source: "@a.test".into(),
                destination: "x@a.test".into(),
            }],
            dkim: vec![dkim("a.test", "s1", true)],
        };
        for f in [Format::Yaml, Format::Json] {
            assert_eq!(parse(&render(&s, f).unwrap()).unwrap(), s, "{f:?}");
        }
        assert!(parse("version: 2\n").is_err());
        assert!(parse("version: 1\nfoo: 1\n").is_err());
    }
}
