//! What the directory subcommands (`domain`, `user`, `alias`) share: loading
//! the configuration, opening the directory the way authd does, turning
//! [`DirectoryError`]s into messages and exit codes, and the cache hint.

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use directory::{BackendKind, Directory, DirectoryError};
use postern_common::Config;

/// Exit status: a directory operation failed (unknown domain, duplicate, ...).
pub const EXIT_FAILURE: u8 = 1;
/// Exit status: bad input data (a malformed address or domain; `EX_DATAERR`).
pub const EXIT_DATAERR: u8 = 65;
/// Exit status: configuration error (`EX_CONFIG`).
pub const EXIT_CONFIG: u8 = postern_common::daemon::EXIT_CONFIG;

/// Load the configuration; on error print it and return 78.
pub fn load_config(file: &Path) -> Result<Config, u8> {
    Config::load(file).map_err(|e| {
        eprintln!("mailctl: configuration error: {e}");
        EXIT_CONFIG
    })
}

/// Run `f` on a small runtime and return its exit code.
pub fn block_on(f: impl Future<Output = u8>) -> u8 {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("mailctl: {e}");
            EXIT_FAILURE
        }
    }
}

/// Open the directory exactly as authd does (`[authd.directory]`).
pub async fn open(cfg: &Config, file: &Path) -> Result<Directory, u8> {
    if let Err(e) = postern_authd::directory_config(cfg, file) {
        eprintln!("mailctl: configuration error: {e}");
        return Err(EXIT_CONFIG);
    }
    match postern_authd::open_directory(cfg, file).await {
        Ok(d) => {
            fix_ownership(d.config());
            Ok(d)
        }
        Err(e) => {
            eprintln!("mailctl: {e:#}");
            let config = e
                .chain()
                .any(|c| matches!(c.downcast_ref(), Some(DirectoryError::Config(_))));
            Err(if config { EXIT_CONFIG } else { EXIT_FAILURE })
        }
    }
}

/// Print a directory error with a hint where one helps; return the exit code.
pub fn report(e: &DirectoryError) -> u8 {
    let hint = match e {
        DirectoryError::UnknownDomain(d) => {
            format!(" (add it first: mailctl domain add {d})")
        }
        DirectoryError::DomainNotEmpty(d) => {
            format!(" (see: mailctl user list --domain {d}; mailctl alias list {d})")
        }
        DirectoryError::Unsupported(_) => {
            " (mailctl manages the sqlite, mysql and postgres backends)".to_string()
        }
        _ => String::new(),
    };
    eprintln!("mailctl: {e}{hint}");
    match e {
        DirectoryError::BadAddress { .. } => EXIT_DATAERR,
        DirectoryError::Config(_) => EXIT_CONFIG,
        _ => EXIT_FAILURE,
    }
}

/// After a change: authd caches lookups (negative ones too).
pub fn cache_hint(dir: &Directory) {
    let ttl = dir.config().cache_ttl_secs;
    if ttl > 0 {
        eprintln!(
            "mailctl: note: authd caches lookups for {ttl}s (cache_ttl_secs); it sees this \
             change within that time, or at once after `systemctl reload postern-authd`"
        );
    }
}

/// mailctl usually runs as root while authd runs as `postern`: SQLite files
/// (database, `-wal`, `-shm`) that root just created would be unwritable
/// for authd. When running as root, give root-owned ones to the owner of
/// the directory they are in (the state directory, owned by `postern`).
fn fix_ownership(cfg: &directory::DirectoryConfig) {
    if cfg.backend != BackendKind::Sqlite || !nix::unistd::geteuid().is_root() {
        return;
    }
    let Some(parent) = cfg.path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return;
    };
    let Ok(dir_meta) = std::fs::metadata(parent) else {
        return;
    };
    if dir_meta.uid() == 0 {
        return;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut p = cfg.path.clone().into_os_string();
        p.push(suffix);
        let p = std::path::PathBuf::from(p);
        if std::fs::metadata(&p).is_ok_and(|m| m.uid() == 0) {
            let _ = nix::unistd::chown(
                &p,
                Some(nix::unistd::Uid::from_raw(dir_meta.uid())),
                Some(nix::unistd::Gid::from_raw(dir_meta.gid())),
            );
        }
    }
}

/// `--quota` values: bytes, or with a binary suffix `K`, `M`, `G`, `T`
/// (`512M` = 536870912). 0 = no quota.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix {c:?} (use K, M, G or T)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size in bytes (e.g. 1073741824 or 1G)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        for bad in [
            "",
            "x",
            "1X",
            "-1",
            "1.5G",
            "99999999999999999999",
            "20000000T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_map_to_exit_codes() {
        assert_eq!(
            report(&DirectoryError::BadAddress {
                address: "x".into(),
                reason: "no @".into()
            }),
            EXIT_DATAERR
        );
        assert_eq!(
            report(&DirectoryError::UnknownDomain("a.test".into())),
            EXIT_FAILURE
        );
        assert_eq!(report(&DirectoryError::Duplicate("a".into())), EXIT_FAILURE);
        assert_eq!(report(&DirectoryError::Config("x".into())), EXIT_CONFIG);
    }
}
