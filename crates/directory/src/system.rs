//! Unix system users: `/etc/passwd` for uid, gid and home, `/etc/shadow`
//! for the crypt hash (the classic "useradd + passwd" tutorial setup).
//!
//! The local part of an address in a `mydestination` domain is the login
//! name; the mailbox is `~/Maildir`. Accounts with a uid below
//! `system_min_uid` (root, daemons) are treated as disabled: they neither
//! log in nor receive mail directly (route their mail with `/etc/aliases`,
//! e.g. `root: alice`). Locked (`!...`) or password-less (`*`, `!!`, empty)
//! shadow entries never verify: their hash has no scheme we recognise.
//!
//! Files are read on each lookup (the directory cache sits above); both are
//! size-bounded. Reading `/etc/shadow` needs the privileges authd runs with.

use std::path::{Path, PathBuf};

use crate::model::{DirectoryError, User};
use crate::secret::Secret;

/// Largest passwd/shadow file read.
pub const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login.
    pub name: String,
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

/// Find `name` in passwd text. Malformed lines are skipped.
pub fn find_passwd(text: &str, name: &str) -> Option<PasswdEntry> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0] != name || f[0].is_empty() {
            return None;
        }
        Some(PasswdEntry {
            name: f[0].to_string(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: PathBuf::from(f[5]),
        })
    })
}

/// Find the hash field of `name` in shadow text.
pub fn find_shadow(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next()? == name).then(|| f.next().unwrap_or("").to_string())
    })
}

/// The system-user store.
#[derive(Debug, Clone)]
pub struct SystemStore {
    passwd: PathBuf,
    shadow: PathBuf,
    min_uid: u32,
    origin: String,
}

fn read(path: &Path) -> Result<String, DirectoryError> {
    let io = |source| DirectoryError::Io {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > MAX_FILE_SIZE {
        return Err(DirectoryError::Config(format!(
            "{} too large",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl SystemStore {
    /// A store on these files; `origin` is the domain of user addresses.
    pub fn new(passwd: PathBuf, shadow: PathBuf, min_uid: u32, origin: String) -> Self {
        SystemStore {
            passwd,
            shadow,
            min_uid,
            origin,
        }
    }

    /// Look a login up. The name must be a plausible Unix login (no `:`,
    /// `/`, whitespace, not empty, at most 32 bytes).
    pub fn user(&self, login: &str) -> Result<Option<User>, DirectoryError> {
        if login.is_empty()
            || login.len() > 32
            || login.contains([':', '/', '\n'])
            || login.chars().any(char::is_whitespace)
        {
            return Ok(None);
        }
        let passwd = read(&self.passwd)?;
        let Some(pw) = find_passwd(&passwd, login) else {
            return Ok(None);
        };
        let shadow = read(&self.shadow)?;
        let hash = find_shadow(&shadow, login).unwrap_or_default();
        Ok(Some(User {
            address: format!("{login}@{}", self.origin),
            login: login.to_string(),
            password_hash: Secret::new(hash),
            quota_bytes: 0,
            enabled: pw.uid >= self.min_uid,
            mailbox: pw.home.join("Maildir"),
            host: None,
            uid: Some(pw.uid),
            gid: Some(pw.gid),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash
broken:x:notanumber:1000::/home/broken:/bin/sh
bob:x:1001:100:Bob:/home/bob:/bin/bash
";
    // alice: `openssl passwd -6 -salt saltstring 'Hello world!'`; bob locked.
    const SHADOW: &str = "root:*:19000:0:99999:7:::
alice:$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1:19000:0:99999:7:::
bob:!$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1:19000:0:99999:7:::
";

    #[test]
    fn lookup_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let (p, s) = (dir.path().join("passwd"), dir.path().join("shadow"));
        std::fs::write(&p, PASSWD).unwrap();
        std::fs::write(&s, SHADOW).unwrap();
        let store = SystemStore::new(p, s, 1000, "example.org".into());
        let alice = store.user("alice").unwrap().unwrap();
        assert_eq!(alice.address, "alice@example.org");
        assert_eq!(alice.mailbox, PathBuf::from("/home/alice/Maildir"));
        assert_eq!((alice.uid, alice.gid), (Some(1000), Some(1000)));
        assert!(alice.enabled);
        assert!(alice.password_hash.expose().starts_with("$6$"));
        assert!(!store.user("root").unwrap().unwrap().enabled);
        assert!(store.user("broken").unwrap().is_none());
        assert!(store.user("nobody").unwrap().is_none());
        assert!(store.user("ali:ce").unwrap().is_none());
        assert_eq!(store.user("bob").unwrap().unwrap().gid, Some(100));
    }

    #[test]
    fn unreadable_shadow_is_an_error_not_a_missing_user() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("passwd");
        std::fs::write(&p, PASSWD).unwrap();
        let store = SystemStore::new(p, dir.path().join("nope"), 1000, "x".into());
        assert!(matches!(
            store.user("alice"),
            Err(DirectoryError::Io { .. })
        ));
    }
}
