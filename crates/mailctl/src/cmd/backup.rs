//! `mailctl backup DIR` and `mailctl restore DIR`.
//!
//! A backup is a directory (created; it must not exist or be empty):
//!
//! | path | what |
//! | --- | --- |
//! | `MANIFEST` | when, from which host and configuration, what is inside |
//! | `directory.yaml` | the directory as `mailctl config export` writes it (domains, users with password hashes, aliases, transports), mode 0600: works for every backend |
//! | `directory.sqlite` | with the SQLite backend, a consistent copy of the database (`VACUUM INTO`, safe while authd runs), mode 0600 |
//! | `spool/` | `queue.spool_directory`: the queues and status logs (not `tmp/`) |
//! | `mail/` | `lmtp.mail_directory`: every Maildir, with its indexes |
//! | `dkim/` | the DKIM signing keys (`checks.dkim_sign.key_directory`, default `<state_directory>/dkim`, where `mailctl dkim` keeps them), when there are any |
//!
//! **Consistency on a live system.** The directory is read in one pass
//! (a SQL snapshot for SQLite). Maildir files never change once written,
//! they only move (`new/` → `cur/`, flag renames); a file that moved while
//! being copied is found again by its base name, so every message present
//! during the whole backup is in it once. The spool is copied queue by
//! queue in the order mail moves (`incoming`, `active`, `deferred`,
//! `hold`, `corrupt`), then listed again until two passes agree, so a
//! message moving meanwhile is kept once, in the queue it was last seen
//! in; a message delivered during the backup may be both in the copy and
//! in a mailbox (a restore then delivers it twice, never loses it). For a
//! spool snapshot without that window, stop queue-manager during the
//! backup (smtpd then answers 451 and senders retry). Files keep their
//! mode, mtime and (run as root) owner.
//!
//! **Restore** puts the directory back with `config apply`'s logic (added,
//! changed and removed entries; authd is reloaded or told to be), and
//! copies `spool/` and `mail/` back into place. It refuses when the spool
//! or the mail directory holds any file already (`--force` merges: files
//! that exist are kept). Stop queue-manager before restoring the spool and
//! start it afterwards: it picks up `incoming/` and `active/` at start.
//! pop3d and imapd may run; they see the restored Maildirs at their next
//! login.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use postern_common::Config;

use super::admin;
use super::config::state;

/// Queues in the order mail moves through them.
const QUEUES: [&str; 5] = ["incoming", "active", "deferred", "hold", "corrupt"];
/// Bound on the spool listing passes of one backup.
const SPOOL_PASSES: usize = 5;

#[derive(Debug, Args)]
pub struct BackupCmd {
    /// Backup directory (created; must not exist or be empty).
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreCmd {
    /// A directory written by `mailctl backup`.
    pub dir: PathBuf,
    /// Restore into a non-empty spool or mail directory (existing files
    /// are kept).
    #[arg(long)]
    pub force: bool,
}

pub fn run_backup(file: &Path, cmd: BackupCmd) -> u8 {
    let cfg = match admin::load_config(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match backup(&cfg, file, &cmd.dir) {
        Ok(summary) => {
            eprintln!("mailctl: backup in {}: {summary}", cmd.dir.display());
            0
        }
        Err(e) => {
            eprintln!("mailctl: backup: {e:#}");
            1
        }
    }
}

pub fn run_restore(file: &Path, cmd: RestoreCmd) -> u8 {
    let cfg = match admin::load_config(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match restore(&cfg, file, &cmd.dir, cmd.force) {
        Ok(summary) => {
            eprintln!("mailctl: restored from {}: {summary}", cmd.dir.display());
            0
        }
        Err(e) => {
            eprintln!("mailctl: restore: {e:#}");
            1
        }
    }
}

/// Where `mailctl dkim` keeps the signing keys (`checks.dkim_sign.key_directory`,
/// by default `<state_directory>/dkim`).
fn dkim_dir(cfg: &Config) -> PathBuf {
    cfg.checks
        .dkim_sign
        .key_directory(&cfg.global.state_directory)
}

fn is_empty_dir(p: &Path) -> bool {
    fs::read_dir(p).map_or(true, |mut rd| rd.next().is_none())
}

/// Whether `p` holds any regular file (at any depth).
fn holds_files(p: &Path) -> bool {
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => return true,
                Err(_) => {}
            }
        }
    }
    false
}

fn backup(cfg: &Config, file: &Path, out: &Path) -> anyhow::Result<String> {
    if out.exists() && !is_empty_dir(out) {
        bail!("{} exists and is not empty", out.display());
    }
    fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    fs::set_permissions(out, fs::Permissions::from_mode(0o700))?;
    // Directory first: users created meanwhile may lack their mail, never
    // the other way round.
    let mut parts = Vec::new();
    let code = admin::block_on(async {
        let dir = match admin::open(cfg, file).await {
            Ok(d) => d,
            Err(code) => return code,
        };
        let r: anyhow::Result<()> = async {
            let s = state::read(&dir).await?;
            state::write_private(
                &out.join("directory.yaml"),
                state::render(&s, state::Format::Yaml)?.as_bytes(),
            )?;
            parts.push(format!(
                "directory ({} domains, {} users, {} aliases)",
                s.domains.len(),
                s.users.len(),
                s.aliases.len()
            ));
            let dc = dir.config();
            if dc.backend == directory::BackendKind::Sqlite {
                sqlite_snapshot(&dc.path, &out.join("directory.sqlite")).await?;
                parts.push("directory.sqlite".into());
            }
            Ok(())
        }
        .await;
        match r {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("mailctl: backup: directory: {e:#}");
                1
            }
        }
    });
    if code != 0 {
        bail!("the directory could not be saved");
    }
    let n = copy_spool(&cfg.queue.spool_directory, &out.join("spool"))?;
    parts.push(format!("spool ({n} messages)"));
    let n = copy_tree(&cfg.lmtp.mail_directory, &out.join("mail"), false)?;
    parts.push(format!("mail ({n} files)"));
    let keys = dkim_dir(cfg);
    if keys.is_dir() {
        let n = copy_tree(&keys, &out.join("dkim"), false)?;
        parts.push(format!("dkim ({n} files)"));
    }
    let manifest = format!(
        "postern backup\ncreated: {}\nhost: {}\nconfiguration: {}\ncontents: {}\n",
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        cfg.global.myhostname,
        file.display(),
        parts.join(", ")
    );
    let mut f = fs::File::create(out.join("MANIFEST"))?;
    f.write_all(manifest.as_bytes())?;
    f.sync_all()?;
    Ok(parts.join(", "))
}

/// `VACUUM INTO`: a consistent copy of a live SQLite database.
async fn sqlite_snapshot(db: &Path, dest: &Path) -> anyhow::Result<()> {
    use sqlx::ConnectOptions as _;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .with_context(|| db.display().to_string())?;
    sqlx::query("VACUUM INTO ?")
        .bind(dest.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await
        .with_context(|| format!("VACUUM INTO {}", dest.display()))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Copy one file keeping mode, mtime and (as root) owner; `Ok(false)` when
/// the source vanished.
fn copy_file(src: &Path, dest: &Path) -> anyhow::Result<bool> {
    let meta = match fs::metadata(src) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| src.display().to_string()),
    };
    match fs::copy(src, dest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !src.exists() => return Ok(false),
        Err(e) => {
            return Err(e).with_context(|| format!("{} -> {}", src.display(), dest.display()));
        }
    }
    let f = fs::OpenOptions::new().write(true).open(dest)?;
    f.set_modified(meta.modified()?)?;
    f.sync_all()?;
    fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    own_like(dest, &meta);
    Ok(true)
}

fn own_like(p: &Path, meta: &fs::Metadata) {
    if nix::unistd::geteuid().is_root() {
        let _ = nix::unistd::chown(
            p,
            Some(nix::unistd::Uid::from_raw(meta.uid())),
            Some(nix::unistd::Gid::from_raw(meta.gid())),
        );
    }
}

fn make_dir_like(src: &Path, dest: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dest).with_context(|| dest.display().to_string())?;
    if let Ok(meta) = fs::metadata(src) {
        fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        own_like(dest, &meta);
    }
    Ok(())
}

/// Base name of a Maildir file (before `:2,`).
fn base_name(name: &str) -> &str {
    name.split_once(':').map_or(name, |(b, _)| b)
}

/// Copy a tree (Maildirs, or a restore), skipping `tmp/` contents of
/// Maildirs. A message that moved in its Maildir (`new/` → `cur/`, a flag
/// rename) while being copied is looked up again by base name. With
/// `keep_existing`, files already at the destination are left alone.
/// Returns the number of files copied.
fn copy_tree(src: &Path, dest: &Path, keep_existing: bool) -> anyhow::Result<usize> {
    if !src.exists() {
        return Ok(0);
    }
    let mut n = 0;
    let mut stack = vec![(src.to_path_buf(), dest.to_path_buf())];
    while let Some((s, d)) = stack.pop() {
        make_dir_like(&s, &d)?;
        let in_maildir_sub = matches!(s.file_name().and_then(|n| n.to_str()), Some("cur" | "new"));
        let rd = match fs::read_dir(&s) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| s.display().to_string()),
        };
        for e in rd {
            let e = e?;
            let name = e.file_name();
            let ft = e.file_type()?;
            if ft.is_dir() {
                if name == "tmp" && s.join("cur").is_dir() {
                    make_dir_like(&e.path(), &d.join(&name))?;
                    continue;
                }
                stack.push((e.path(), d.join(&name)));
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let target = d.join(&name);
            if keep_existing && target.exists() {
                continue;
            }
            if copy_file(&e.path(), &target)? {
                n += 1;
            } else if in_maildir_sub {
                // Moved meanwhile: find it by base name in cur/.
                let base = base_name(&name.to_string_lossy()).to_string();
                let maildir = s.parent().unwrap_or(&s).to_path_buf();
                let cur = maildir.join("cur");
                if let Ok(rd) = fs::read_dir(&cur) {
                    for c in rd.flatten() {
                        let cn = c.file_name().to_string_lossy().into_owned();
                        if base_name(&cn) == base {
                            let dcur = d.parent().unwrap_or(&d).join("cur");
                            make_dir_like(&cur, &dcur)?;
                            if !dcur.join(&cn).exists() && copy_file(&c.path(), &dcur.join(&cn))? {
                                n += 1;
                            }
                            break;
                        }
                    }
                }
            }
        }
    }
    Ok(n)
}

/// id → queue of the spool's message files.
fn list_spool(spool: &Path) -> BTreeMap<String, &'static str> {
    let mut out = BTreeMap::new();
    for q in QUEUES {
        if let Ok(rd) = fs::read_dir(spool.join(q)) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    out.insert(e.file_name().to_string_lossy().into_owned(), q);
                }
            }
        }
    }
    out
}

/// Copy the spool (see the module doc); returns the number of messages.
fn copy_spool(spool: &Path, dest: &Path) -> anyhow::Result<usize> {
    if !spool.exists() {
        return Ok(0);
    }
    make_dir_like(spool, dest)?;
    for sub in QUEUES.iter().chain(&["tmp", "status"]) {
        make_dir_like(&spool.join(sub), &dest.join(sub))?;
    }
    let mut copied: BTreeMap<String, &'static str> = BTreeMap::new();
    for _ in 0..SPOOL_PASSES {
        let now = list_spool(spool);
        let mut changed = false;
        for (id, q) in &now {
            if copied.get(id) == Some(q) {
                continue;
            }
            if copy_file(&spool.join(q).join(id), &dest.join(q).join(id))? {
                if let Some(old) = copied.insert(id.clone(), q) {
                    let _ = fs::remove_file(dest.join(old).join(id));
                }
                let _ = copy_file(
                    &spool.join("status").join(id),
                    &dest.join("status").join(id),
                )?;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // Status logs last: they only grow, so the copy is at least as recent
    // as the message files.
    for id in copied.keys() {
        let _ = copy_file(
            &spool.join("status").join(id),
            &dest.join("status").join(id),
        )?;
    }
    Ok(copied.len())
}

fn restore(cfg: &Config, file: &Path, from: &Path, force: bool) -> anyhow::Result<String> {
    let manifest = from.join("MANIFEST");
    if !manifest.exists() {
        bail!("{}: not a mailctl backup (no MANIFEST)", from.display());
    }
    let spool = &cfg.queue.spool_directory;
    let mail = &cfg.lmtp.mail_directory;
    if !force {
        for (what, p) in [("spool", spool), ("mail directory", mail)] {
            if holds_files(p) {
                bail!(
                    "the {what} {} is not empty (restore into an empty one, or --force to merge)",
                    p.display()
                );
            }
        }
    }
    let text = fs::read_to_string(from.join("directory.yaml")).context("directory.yaml")?;
    let want = state::parse(&text).context("directory.yaml")?;
    let mut parts = Vec::new();
    let code = admin::block_on(async {
        let dir = match admin::open(cfg, file).await {
            Ok(d) => d,
            Err(code) => return code,
        };
        let r: anyhow::Result<usize> = async {
            let live = state::read(&dir).await?;
            let changes = state::diff(&live, &want);
            for c in &changes {
                println!("{}", c.line());
            }
            state::apply(&dir, &state::key_store(cfg), &changes).await?;
            if !changes.is_empty() {
                state::reload_authd(&dir);
            }
            Ok(changes.len())
        }
        .await;
        match r {
            Ok(n) => {
                parts.push(format!("directory ({n} changes)"));
                0
            }
            Err(e) => {
                eprintln!("mailctl: restore: directory: {e:#}");
                1
            }
        }
    });
    if code != 0 {
        bail!("the directory could not be restored");
    }
    let n = copy_tree(&from.join("spool"), spool, true)?;
    parts.push(format!("spool ({n} files)"));
    let n = copy_tree(&from.join("mail"), mail, true)?;
    parts.push(format!("mail ({n} files)"));
    if from.join("dkim").is_dir() {
        let n = copy_tree(&from.join("dkim"), &dkim_dir(cfg), true)?;
        parts.push(format!("dkim ({n} files)"));
    }
    Ok(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_tree_keeps_maildir_files_and_skips_tmp() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        for d in ["cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"] {
            fs::create_dir_all(src.join(d)).unwrap();
        }
        fs::write(src.join("cur/1.M1P1.h:2,S"), "a").unwrap();
        fs::write(src.join("new/2.M1P1.h"), "b").unwrap();
        fs::write(src.join("tmp/3.M1P1.h"), "partial").unwrap();
        fs::write(src.join(".Sent/cur/4.M1P1.h:2,"), "c").unwrap();
        fs::write(src.join("postern-uidlist"), "idx").unwrap();
        let dest = t.path().join("dest");
        assert_eq!(copy_tree(&src, &dest, false).unwrap(), 4);
        assert_eq!(fs::read(dest.join("cur/1.M1P1.h:2,S")).unwrap(), b"a");
        assert!(dest.join("tmp").is_dir());
        assert!(!dest.join("tmp/3.M1P1.h").exists());
        assert!(dest.join(".Sent/cur/4.M1P1.h:2,").exists());
        assert!(holds_files(&dest));
        assert_eq!(copy_tree(&src, &dest, true).unwrap(), 0);
    }
}
