//! `mailctl import maildir|mbox PATH --user ADDRESS [--folder F]` and
//! `mailctl export maildir|mbox --user ADDRESS PATH [--folder F]`.
//!
//! The user's Maildir is the `mailbox` the directory gives
//! (`mailctl user show`); messages go in through the `mailstore` crate
//! ([`mailstore::deliver_dated`]: temp file, fsync, rename) and are renamed
//! into `cur/` with their flags (`<name>:2,<flags>`, as mutt or Dovecot
//! would), then the mailbox is opened once so the index numbers them. UIDs
//! follow the internal dates (the store numbers new files in the order of
//! the time in their names).
//!
//! What is kept:
//!
//! * **Maildir** (a directory with `cur/` and `new/`): the bytes, the
//!   standard flags of the `:2,` info (`D F P R S T`) and keywords
//!   (letters `a`..`z` named by the source's `dovecot-keywords`, given the
//!   target folder's letters), the internal date from the file's mtime
//!   (what Dovecot uses). Its Maildir++ subfolders (`.Sent`,
//!   `.Archive.2024`, ...) go into the folders of the same name (under
//!   `--folder` when that is not INBOX), created when missing. With a
//!   Dovecot `dovecot-uidlist` (format 1 or 3), each folder keeps its UIDs
//!   and UIDVALIDITY when it has never numbered a message (a new folder, or
//!   the untouched INBOX of a new user): IMAP clients that knew the old
//!   server do not download the mail again. Otherwise UIDs follow the
//!   internal dates (after the kept ones for messages the list does not
//!   name; [`mailstore::adopt_uids`]). The summary says how many UIDs were
//!   kept.
//! * **mbox** (mboxrd: `>From ` lines unescaped, one level of `>` removed):
//!   the bytes; `Status:` (`R` → `\Seen`) and `X-Status:` (`A` → answered,
//!   `F` → flagged, `T` → draft, `D` → deleted) become flags and are
//!   removed from the stored headers, as is `X-Keywords:` (Dovecot's
//!   keyword header, names separated by spaces); the internal date from the `From `
//!   line (asctime, UTC), else the import time.
//!
//! Export writes the folder (default INBOX) in UID order: a Maildir
//! (`cur/<name>:2,<flags>` and its `dovecot-keywords`, mtime = internal date) or an mboxrd file
//! (`From <Return-Path or MAILER-DAEMON> <asctime of the internal date>`,
//! `Status:`/`X-Status:`/`X-Keywords:` added from the flags, `From ` lines escaped, a blank
//! line after each message). mbox export → import → export gives the same
//! bytes. Progress goes to stderr (a progress bar on a terminal, a summary
//! line always). Run as root, files created in the mail store are given to the
//! owner of the user's mailbox directory (or of `lmtp.mail_directory`), the
//! `vmail` user in production.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use mailstore::{Mailbox, name};

use super::admin;

/// Largest message accepted from an import source: far above any SMTP
/// limit, but a bound on memory for a corrupt mbox without `From ` lines.
pub const MAX_IMPORT_MESSAGE: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Maildir,
    Mbox,
}

#[derive(Debug, Subcommand)]
pub enum ImportCmd {
    /// Import a Maildir directory.
    Maildir {
        path: PathBuf,
        #[arg(long)]
        user: String,
        /// Target folder (created if missing). Default INBOX.
        #[arg(long, default_value = "INBOX")]
        folder: String,
    },
    /// Import an mbox file.
    Mbox {
        path: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "INBOX")]
        folder: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCmd {
    /// Export a folder as a Maildir directory (created; must not hold mail).
    Maildir {
        #[arg(long)]
        user: String,
        path: PathBuf,
        #[arg(long, default_value = "INBOX")]
        folder: String,
    },
    /// Export a folder as an mbox file (created or replaced).
    Mbox {
        #[arg(long)]
        user: String,
        path: PathBuf,
        #[arg(long, default_value = "INBOX")]
        folder: String,
    },
}

/// One message to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub bytes: Vec<u8>,
    /// Maildir flag letters (`DFPRST`).
    pub flags: String,
    /// Seconds since the epoch.
    pub date: Option<u64>,
    /// IMAP keywords (`$Forwarded`, `Work`, ...).
    pub keywords: Vec<String>,
    /// Base name of the source file (Maildir), to find its UID in a
    /// `dovecot-uidlist`.
    pub source_name: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub messages: usize,
    pub folders: usize,
    /// Messages that kept their `dovecot-uidlist` UID.
    pub uids_kept: usize,
    /// Messages named by a `dovecot-uidlist` that got a new UID.
    pub uids_renumbered: usize,
}

/// Dovecot's UID list of a Maildir folder.
pub const DOVECOT_UIDLIST: &str = "dovecot-uidlist";

/// Parse a `dovecot-uidlist` (format 1: `1 <uidvalidity> <nextuid>` and
/// `<uid> <file name>` lines; formats 2 and 3: `3 V<uidvalidity> N<nextuid>
/// ...` and `<uid> [extensions] :<file name>` lines): UIDVALIDITY and
/// base name → UID. `None` when the header is not understood.
pub fn parse_dovecot_uidlist(text: &str) -> Option<(u32, HashMap<String, u32>)> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let version = *header.first()?;
    let uidvalidity: u32 = match version {
        "1" => header.get(1)?.parse().ok()?,
        "2" | "3" => header
            .iter()
            .skip(1)
            .find_map(|f| f.strip_prefix('V'))?
            .parse()
            .ok()?,
        _ => return None,
    };
    let mut map = HashMap::new();
    for line in lines {
        let Some((uid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        let file = if version == "1" {
            rest.trim()
        } else {
            match rest.strip_prefix(':') {
                Some(f) => f,
                None => match rest.split_once(" :") {
                    Some((_, f)) => f,
                    None => continue,
                },
            }
        };
        let base = file.split_once(':').map_or(file, |(b, _)| b);
        if uid > 0 && !base.is_empty() {
            map.insert(base.to_string(), uid);
        }
    }
    Some((uidvalidity, map))
}

/// The folders of a Maildir to import: the root into `folder`, each
/// Maildir++ subfolder `.Name` into `Name` (or `folder.Name`), sorted.
pub fn maildir_folders(path: &Path, folder: &str) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut out = vec![(path.to_path_buf(), folder.to_string())];
    let mut subs = Vec::new();
    for e in fs::read_dir(path).with_context(|| path.display().to_string())? {
        let e = e?;
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(name) = n.strip_prefix('.') else {
            continue;
        };
        if name.is_empty() || name == "." || !e.file_type()?.is_dir() {
            continue;
        }
        let p = e.path();
        if !p.join("cur").is_dir() && !p.join("new").is_dir() {
            continue;
        }
        let target = if folder.is_empty() || folder.eq_ignore_ascii_case("INBOX") {
            name.to_string()
        } else {
            format!("{folder}.{name}")
        };
        subs.push((p, target));
    }
    subs.sort();
    out.extend(subs);
    Ok(out)
}

/// The user's Maildir root from the directory.
fn mailbox_root(file: &Path, user: &str) -> Result<(postern_common::Config, PathBuf), u8> {
    let cfg = admin::load_config(file)?;
    let mut root = None;
    let code = admin::block_on(async {
        let dir = match admin::open(&cfg, file).await {
            Ok(d) => d,
            Err(code) => return code,
        };
        match dir.user_show(user).await {
            Ok(u) => {
                root = Some(u.mailbox);
                0
            }
            Err(e) => admin::report(&e),
        }
    });
    match root {
        Some(r) if code == 0 => Ok((cfg, r)),
        _ => Err(code.max(1)),
    }
}

pub fn run_import(file: &Path, cmd: ImportCmd) -> u8 {
    let (format, path, user, folder) = match cmd {
        ImportCmd::Maildir { path, user, folder } => (Format::Maildir, path, user, folder),
        ImportCmd::Mbox { path, user, folder } => (Format::Mbox, path, user, folder),
    };
    let (cfg, root) = match mailbox_root(file, &user) {
        Ok(x) => x,
        Err(code) => return code,
    };
    match import(&cfg, &root, format, &path, &folder) {
        Ok(s) => {
            let uids = if s.uids_kept + s.uids_renumbered > 0 {
                format!(
                    "; dovecot-uidlist UIDs kept for {}, new UIDs for {}",
                    s.uids_kept, s.uids_renumbered
                )
            } else {
                String::new()
            };
            eprintln!(
                "mailctl: imported {} message(s) in {} folder(s) from {} into {user} {folder}{uids}",
                s.messages,
                s.folders,
                path.display()
            );
            0
        }
        Err(e) => {
            eprintln!("mailctl: import: {e:#}");
            1
        }
    }
}

pub fn run_export(file: &Path, cmd: ExportCmd) -> u8 {
    let (format, path, user, folder) = match cmd {
        ExportCmd::Maildir { path, user, folder } => (Format::Maildir, path, user, folder),
        ExportCmd::Mbox { path, user, folder } => (Format::Mbox, path, user, folder),
    };
    let (_, root) = match mailbox_root(file, &user) {
        Ok(x) => x,
        Err(code) => return code,
    };
    match export(&root, format, &path, &folder) {
        Ok(n) => {
            eprintln!(
                "mailctl: exported {n} message(s) of {user} {folder} to {}",
                path.display()
            );
            0
        }
        Err(e) => {
            eprintln!("mailctl: export: {e:#}");
            1
        }
    }
}

/// A progress bar on stderr when it is a terminal (nothing otherwise);
/// `n` counts either way.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    n: usize,
}

impl Progress {
    /// `total`: the number of messages, when known.
    fn new(what: &str, total: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total.unwrap_or(0));
            let template = if total.is_some() {
                "{msg} [{bar:40}] {pos}/{len} messages ({eta} left)"
            } else {
                "{msg} {pos} messages"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(what.to_string());
            b
        });
        Self { bar, n: 0 }
    }
    fn tick(&mut self) {
        self.n += 1;
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }
    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Message files in a Maildir folder's `cur/` and `new/` (for the bar).
fn count_files(dir: &Path) -> u64 {
    ["cur", "new"]
        .iter()
        .filter_map(|s| fs::read_dir(dir.join(s)).ok())
        .map(|rd| rd.count() as u64)
        .sum()
}

/// Import from `path` into `folder` of the Maildir at `root` (a Maildir
/// with its subfolders, see the module documentation).
pub fn import(
    cfg: &postern_common::Config,
    root: &Path,
    format: Format,
    path: &Path,
    folder: &str,
) -> anyhow::Result<Summary> {
    let mut summary = Summary::default();
    match format {
        Format::Maildir => {
            if !path.join("cur").is_dir() && !path.join("new").is_dir() {
                bail!("{}: not a Maildir (no cur/ or new/)", path.display());
            }
            let folders = maildir_folders(path, folder)?;
            let total = folders.iter().map(|(p, _)| count_files(p)).sum();
            let mut progress = Progress::new("importing", Some(total));
            for (src, target) in &folders {
                let uidlist = fs::read_to_string(src.join(DOVECOT_UIDLIST))
                    .ok()
                    .and_then(|t| parse_dovecot_uidlist(&t));
                let mut wanted: Vec<(String, u32)> = Vec::new();
                for item in read_maildir(src)? {
                    let item = item?;
                    let uid = uidlist.as_ref().and_then(|(_, map)| {
                        item.source_name
                            .as_deref()
                            .and_then(|b| map.get(b))
                            .copied()
                    });
                    let base = deliver_item(root, target, &item)?;
                    if let Some(uid) = uid {
                        wanted.push((base, uid));
                    }
                    progress.tick();
                }
                let dir = mailstore::folder_path(root, target);
                if let Some((uidvalidity, _)) = &uidlist {
                    let a = mailstore::adopt_uids(&dir, *uidvalidity, &wanted)
                        .with_context(|| format!("UIDs of {}", dir.display()))?;
                    summary.uids_kept += a.kept;
                    summary.uids_renumbered += a.renumbered;
                }
                finish_folder(&dir)?;
                summary.folders += 1;
            }
            progress.done();
            summary.messages = progress.n;
        }
        Format::Mbox => {
            let f = fs::File::open(path).with_context(|| format!("{}", path.display()))?;
            // The number of messages in an mbox is known only at its end.
            let mut progress = Progress::new("importing", None);
            read_mbox(BufReader::new(f), &mut |item| {
                deliver_item(root, folder, &item)?;
                progress.tick();
                Ok(())
            })?;
            progress.done();
            finish_folder(&mailstore::folder_path(root, folder))?;
            summary.messages = progress.n;
            summary.folders = 1;
        }
    }
    give_to_owner(cfg, root);
    Ok(summary)
}

/// Number what was imported into the folder at `dir`.
fn finish_folder(dir: &Path) -> anyhow::Result<()> {
    if dir.join("cur").exists() {
        mailstore::fsync_dir(&dir.join("cur")).context("fsync cur/")?;
        Mailbox::open(dir).context("indexing the mailbox")?;
    }
    Ok(())
}

/// Deliver one message into `folder` and give it its flags; returns the
/// base name it got.
fn deliver_item(root: &Path, folder: &str, item: &Item) -> anyhow::Result<String> {
    let d = mailstore::deliver_dated(root, folder, &item.bytes, item.date)
        .with_context(|| format!("delivering into {}", root.display()))?;
    let base = d
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .context("delivered file name")?
        .to_string();
    let dir = mailstore::folder_path(root, folder);
    let mut flags = item.flags.clone();
    if !item.keywords.is_empty() {
        let names: Vec<&str> = item.keywords.iter().map(String::as_str).collect();
        let letters = mailstore::keyword_letters(&dir, &names, true)
            .with_context(|| format!("keywords of {}", dir.display()))?;
        flags.extend(letters.into_iter().flatten());
        flags = name::normalize_flags(&flags);
    }
    let dest = dir.join("cur").join(name::with_flags(&base, &flags));
    // A running imapd/pop3d may have synced the mailbox meanwhile and
    // moved the file to cur/ with an empty info part: rename that one.
    let moved = dir.join("cur").join(name::with_flags(&base, ""));
    fs::rename(&d.path, &dest)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => fs::rename(&moved, &dest),
            _ => Err(e),
        })
        .with_context(|| format!("moving to {}", dest.display()))?;
    Ok(base)
}

/// When run as root: files and directories root created under the user's
/// Maildir go to the owner of the mailbox directory's parent (the domain
/// directory), else of `lmtp.mail_directory`.
fn give_to_owner(cfg: &postern_common::Config, root: &Path) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let owner = [root.parent(), Some(cfg.lmtp.mail_directory.as_path())]
        .into_iter()
        .flatten()
        .filter_map(|p| fs::metadata(p).ok())
        .find(|m| m.uid() != 0);
    let Some(m) = owner else { return };
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(m.uid()),
        nix::unistd::Gid::from_raw(m.gid()),
    );
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if let Ok(meta) = fs::symlink_metadata(&p) {
            if meta.uid() == 0 {
                let _ = nix::unistd::chown(&p, Some(uid), Some(gid));
            }
            if meta.is_dir()
                && let Ok(rd) = fs::read_dir(&p)
            {
                stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        }
    }
}

/// The standard flags of a Maildir `:2,` info.
fn maildir_flags(file_name: &str) -> String {
    let info = file_name.rsplit_once(":2,").map_or("", |(_, i)| i);
    name::normalize_flags(
        &info
            .chars()
            .filter(|c| "DFPRST".contains(*c))
            .collect::<String>(),
    )
}

/// The messages of a Maildir's `cur/` and `new/`, oldest first.
pub fn read_maildir(path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Item>>> {
    if !path.join("cur").is_dir() && !path.join("new").is_dir() {
        bail!("{}: not a Maildir (no cur/ or new/)", path.display());
    }
    let keywords = mailstore::read_keywords(path);
    let mut files = Vec::new();
    for sub in ["cur", "new"] {
        let dir = path.join(sub);
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd {
            let e = e.with_context(|| dir.display().to_string())?;
            let meta = e.metadata()?;
            if !meta.is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            files.push((
                mtime.unwrap_or(0),
                name,
                e.path(),
                sub == "new",
                mtime,
                meta.len(),
            ));
        }
    }
    files.sort();
    Ok(files.into_iter().map(move |(_, name, p, new, mtime, len)| {
        if len as usize > MAX_IMPORT_MESSAGE {
            bail!("{}: larger than {MAX_IMPORT_MESSAGE} bytes", p.display());
        }
        let bytes = fs::read(&p).with_context(|| p.display().to_string())?;
        let info = name.rsplit_once(":2,").map_or("", |(_, i)| i);
        let names = if new {
            Vec::new()
        } else {
            info.chars()
                .filter(char::is_ascii_lowercase)
                .filter_map(|c| keywords.get(usize::from(c as u8 - b'a')))
                .filter(|k| !k.is_empty())
                .cloned()
                .collect()
        };
        Ok(Item {
            bytes,
            flags: if new {
                String::new()
            } else {
                maildir_flags(&name)
            },
            date: mtime,
            keywords: names,
            source_name: Some(
                name.split_once(':')
                    .map_or(name.as_str(), |(b, _)| b)
                    .to_string(),
            ),
        })
    }))
}

/// Flags from `Status:`/`X-Status:` values.
fn mbox_flags(status: &str, x_status: &str) -> String {
    let mut f = String::new();
    if x_status.contains('T') {
        f.push('D');
    }
    if x_status.contains('F') {
        f.push('F');
    }
    if x_status.contains('A') {
        f.push('R');
    }
    if status.contains('R') {
        f.push('S');
    }
    if x_status.contains('D') {
        f.push('T');
    }
    name::normalize_flags(&f)
}

/// One mbox message (the lines after its `From ` line, separator blank
/// line removed) into an [`Item`].
fn mbox_item(from_line: &[u8], lines: &[Vec<u8>]) -> Item {
    let mut bytes = Vec::new();
    let (mut status, mut x_status) = (String::new(), String::new());
    let mut keywords: Vec<String> = Vec::new();
    let mut in_header = true;
    for l in lines {
        if in_header {
            if l == b"\n" || l == b"\r\n" {
                in_header = false;
            } else {
                let text = String::from_utf8_lossy(l);
                let lower = text.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("status:") {
                    status = v.trim().to_ascii_uppercase();
                    continue;
                }
                if let Some(v) = lower.strip_prefix("x-status:") {
                    x_status = v.trim().to_ascii_uppercase();
                    continue;
                }
                if lower.starts_with("x-keywords:") {
                    keywords.extend(
                        text["x-keywords:".len()..]
                            .split(|c: char| c.is_whitespace() || c == ',')
                            .filter(|k| !k.is_empty())
                            .map(str::to_string),
                    );
                    continue;
                }
            }
        }
        // mboxrd: ">From ", ">>From " ... lose one '>'.
        let gt = l.iter().take_while(|&&b| b == b'>').count();
        if gt > 0 && l[gt..].starts_with(b"From ") {
            bytes.extend_from_slice(&l[1..]);
        } else {
            bytes.extend_from_slice(l);
        }
    }
    Item {
        bytes,
        flags: mbox_flags(&status, &x_status),
        date: parse_from_line_date(&String::from_utf8_lossy(from_line)),
        keywords,
        source_name: None,
    }
}

/// Read an mbox, calling `each` per message.
pub fn read_mbox(
    mut r: impl BufRead,
    each: &mut dyn FnMut(Item) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut from_line: Option<Vec<u8>> = None;
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut size = 0usize;
    let mut prev_blank = true;
    let mut flush = |from: &Option<Vec<u8>>, lines: &mut Vec<Vec<u8>>| -> anyhow::Result<()> {
        if let Some(f) = from {
            if lines.last().is_some_and(|l| l == b"\n" || l == b"\r\n") {
                lines.pop();
            }
            each(mbox_item(f, lines))?;
        }
        lines.clear();
        Ok(())
    };
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if prev_blank && line.starts_with(b"From ") {
            flush(&from_line, &mut lines)?;
            from_line = Some(line);
            size = 0;
            prev_blank = false;
            continue;
        }
        if from_line.is_none() {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            bail!("not an mbox: the first line is not a \"From \" line");
        }
        prev_blank = line == b"\n" || line == b"\r\n";
        size += line.len();
        if size > MAX_IMPORT_MESSAGE {
            bail!("a message is larger than {MAX_IMPORT_MESSAGE} bytes");
        }
        lines.push(line);
    }
    flush(&from_line, &mut lines)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The asctime date of a `From sender Thu Dec  3 09:00:00 2026` line, as
/// UTC seconds; `None` when it has none.
pub fn parse_from_line_date(line: &str) -> Option<u64> {
    let t: Vec<&str> = line.split_whitespace().collect();
    // From sender wday mon day hh:mm:ss [zone] year
    let i = t.iter().position(|w| MONTHS.contains(w))?;
    let month = MONTHS.iter().position(|m| *m == t[i])? as u8 + 1;
    let day: u8 = t.get(i + 1)?.parse().ok()?;
    let hms: Vec<u8> = t
        .get(i + 2)?
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let year: i32 = t[i + 3..]
        .iter()
        .find_map(|w| (w.len() == 4).then(|| w.parse().ok()).flatten())?;
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    let time = time::Time::from_hms(
        *hms.first()?,
        *hms.get(1)?,
        hms.get(2).copied().unwrap_or(0),
    )
    .ok()?;
    let ts = time::PrimitiveDateTime::new(date, time)
        .assume_utc()
        .unix_timestamp();
    u64::try_from(ts).ok()
}

/// asctime of UTC seconds: `Thu Dec  3 09:00:00 2026`.
pub fn asctime(secs: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        WEEKDAYS[t.weekday().number_days_from_monday() as usize],
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

/// One message in mboxrd form (From_ line, Status headers, escaped body,
/// blank separator line).
pub fn mbox_entry(message: &[u8], flags: &str, keywords: &[String], date: u64) -> Vec<u8> {
    let header_end = message
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|p| p + 1)
        .unwrap_or(message.len());
    let header = &message[..header_end];
    let sender = String::from_utf8_lossy(header)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("return-path").then(|| {
                v.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
        })
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        .unwrap_or_else(|| "MAILER-DAEMON".into());
    let mut out = format!("From {sender} {}\n", asctime(date)).into_bytes();
    let mut status = String::new();
    if flags.contains('S') {
        status.push('R');
    }
    status.push('O');
    let mut x = String::new();
    for (f, c) in [('R', 'A'), ('F', 'F'), ('D', 'T'), ('T', 'D')] {
        if flags.contains(f) {
            x.push(c);
        }
    }
    let mut meta = format!("Status: {status}\n");
    if !x.is_empty() {
        meta.push_str(&format!("X-Status: {x}\n"));
    }
    if !keywords.is_empty() {
        meta.push_str(&format!("X-Keywords: {}\n", keywords.join(" ")));
    }
    let body_lines = message.split_inclusive(|&b| b == b'\n');
    let mut in_header = true;
    let mut wrote_status = false;
    for l in body_lines {
        if in_header && (l == b"\n" || l == b"\r\n") {
            in_header = false;
            out.extend(meta.as_bytes());
            wrote_status = true;
        }
        let gt = l.iter().take_while(|&&b| b == b'>').count();
        if l[gt..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(l);
    }
    if !wrote_status {
        // A message without a body: the flags still belong to the header.
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend(meta.as_bytes());
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// Export `folder` of the Maildir at `root`.
pub fn export(root: &Path, format: Format, path: &Path, folder: &str) -> anyhow::Result<usize> {
    let dir = mailstore::folder_path(root, folder);
    if !dir.join("cur").is_dir() {
        bail!("no folder {folder:?} in {}", root.display());
    }
    let mailbox = Mailbox::open(&dir).context("opening the mailbox")?;
    let mut progress = Progress::new("exporting", Some(mailbox.messages().len() as u64));
    match format {
        Format::Mbox => {
            let tmp = path.with_extension("mailctl-tmp");
            let mut f = std::io::BufWriter::new(
                fs::File::create(&tmp).with_context(|| tmp.display().to_string())?,
            );
            let names = mailstore::read_keywords(&dir);
            for m in mailbox.messages() {
                let bytes = mailbox.read_message(m.uid)?;
                let keywords: Vec<String> = m
                    .flags
                    .chars()
                    .filter(char::is_ascii_lowercase)
                    .filter_map(|c| names.get(usize::from(c as u8 - b'a')))
                    .filter(|k| !k.is_empty())
                    .cloned()
                    .collect();
                f.write_all(&mbox_entry(&bytes, &m.flags, &keywords, m.internal_date))?;
                progress.tick();
            }
            let f = f.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            fs::rename(&tmp, path).with_context(|| path.display().to_string())?;
        }
        Format::Maildir => {
            for sub in ["cur", "new", "tmp"] {
                fs::create_dir_all(path.join(sub))
                    .with_context(|| path.join(sub).display().to_string())?;
            }
            let keywords = dir.join(mailstore::KEYWORDS_FILE);
            if keywords.exists() {
                fs::copy(&keywords, path.join(mailstore::KEYWORDS_FILE))
                    .with_context(|| keywords.display().to_string())?;
            }
            for m in mailbox.messages() {
                let bytes = mailbox.read_message(m.uid)?;
                let dest = path.join("cur").join(name::with_flags(&m.base, &m.flags));
                if dest.exists() {
                    bail!("{} exists", dest.display());
                }
                let f = fs::File::create(&dest).with_context(|| dest.display().to_string())?;
                (&f).write_all(&bytes)?;
                f.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(m.internal_date))?;
                f.sync_all()?;
                progress.tick();
            }
        }
    }
    progress.done();
    Ok(progress.n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_line_dates() {
        let cases: &[(&str, Option<u64>)] = &[
            (
                "From alice@x.test Thu Dec  3 09:00:00 2026\n",
                Some(1_796_288_400),
            ),
            ("From MAILER-DAEMON Thu Jan  1 00:00:00 1970", Some(0)),
            ("From a@b Mon Feb 29 12:00:00 2027", None),
            ("From a@b no date", None),
            (
                "From a@b Thu Dec  3 09:00:00 +0000 2026",
                Some(1_796_288_400),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_from_line_date(line), *want, "{line}");
        }
        assert_eq!(asctime(1_796_288_400), "Thu Dec  3 09:00:00 2026");
    }

    #[test]
    fn dovecot_uidlists_of_both_formats() {
        let v3 = "3 V1700000000 N9 G0123456789abcdef\n\
                  4 :1700000001.M1P1.host,S=10,W=11\n\
                  7 W123 S120 :1700000002.M2P1.host,S=12:2,S\n\
                  garbage\n";
        let (v, map) = parse_dovecot_uidlist(v3).unwrap();
        assert_eq!(v, 1_700_000_000);
        assert_eq!(map.len(), 2);
        assert_eq!(map["1700000001.M1P1.host,S=10,W=11"], 4);
        assert_eq!(map["1700000002.M2P1.host,S=12"], 7);
        let (v, map) = parse_dovecot_uidlist("1 42 3\n1 a.host\n2 b.host:2,S\n").unwrap();
        assert_eq!(v, 42);
        assert_eq!((map["a.host"], map["b.host"]), (1, 2));
        assert!(parse_dovecot_uidlist("9 V1 N1\n").is_none());
        assert!(parse_dovecot_uidlist("").is_none());
    }

    #[test]
    fn flags_from_maildir_names_and_mbox_status() {
        assert_eq!(maildir_flags("123.M1P2.host,S=5:2,SRab"), "RS");
        assert_eq!(maildir_flags("123.M1P2.host:2,"), "");
        assert_eq!(maildir_flags("123.M1P2.host"), "");
        assert_eq!(mbox_flags("RO", "AF"), "FRS");
        assert_eq!(mbox_flags("O", ""), "");
        assert_eq!(mbox_flags("", "DT"), "DT");
    }

    fn parse(text: &[u8]) -> Vec<Item> {
        let mut out = Vec::new();
        read_mbox(text, &mut |i| {
            out.push(i);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn mbox_round_trip_is_byte_exact() {
        let src = b"From a@x.test Thu Dec  3 09:00:00 2026\nSubject: one\nStatus: RO\nX-Status: F\n\nbody\n>From the start\n>>From deeper\nFrom inside a line is fine\n\nFrom b@x.test Fri Dec  4 10:00:00 2026\nSubject: two\n\nlast\n\n";
        let items = parse(src);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].flags, "FS");
        assert_eq!(
            items[0].bytes,
            b"Subject: one\n\nbody\nFrom the start\n>From deeper\nFrom inside a line is fine\n"
        );
        assert_eq!(items[1].flags, "");
        assert_eq!(items[1].bytes, b"Subject: two\n\nlast\n");
        let mut again = Vec::new();
        for i in &items {
            again.extend(mbox_entry(&i.bytes, &i.flags, &i.keywords, i.date.unwrap()));
        }
        let items2 = parse(&again);
        assert_eq!(items, items2);
        let mut third = Vec::new();
        for i in &items2 {
            third.extend(mbox_entry(&i.bytes, &i.flags, &i.keywords, i.date.unwrap()));
        }
        assert_eq!(again, third);
        assert!(parse(b"").is_empty());
        let mut none = Vec::new();
        assert!(
            read_mbox(&b"Subject: x\n\nbody\n"[..], &mut |i| {
                none.push(i);
                Ok(())
            })
            .is_err()
        );
    }
}
