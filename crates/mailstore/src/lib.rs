//! # mailstore — Maildir++ with a UID index
//!
//! The mail store shared by lmtp-delivery (the only writer of new mail),
//! pop3d and imapd (which change flags and expunge).
//!
//! ## Layout (compatible with Dovecot and mutt)
//!
//! ```text
//! <root>/cur/ new/ tmp/                INBOX
//! <root>/.Sent/cur/ new/ tmp/ maildirfolder   folders, Maildir++ (`.` separated)
//! <root>/subscriptions                  subscribed folders, one per line
//! <root>/postern-uidlist                the INBOX index snapshot (per folder: in the folder)
//! <root>/postern-uidlist.log            its change log
//! <root>/postern-cache                  the message cache (headers, IMAP ENVELOPE, ...)
//! ```
//!
//! Message files are named `<secs>.M<usec>P<pid>Q<n>.<host>,S=<size>,W=<vsize>`
//! (Dovecot's form, [`name`]); in `cur/` with `:2,<flags>`. `S=` is the
//! size on disk, `W=` the size with CRLF line ends (what POP3 LIST and IMAP
//! RFC822.SIZE report), so listings never read message bodies. Messages are
//! stored with LF line ends, as Dovecot and mutt do; [`deliver`] converts
//! CRLF input and counts both sizes in one pass.
//!
//! ## Durability
//!
//! [`deliver`] writes `tmp/<name>`, fsyncs it, renames it into `new/` and
//! fsyncs `new/`; only then does it return, so lmtp-delivery's per-recipient
//! 250 means the message is on disk. Directories it creates are fsynced in
//! their parent too. [`Mailbox::append`] (IMAP APPEND and COPY) does the
//! same into `cur/` with the flags in the name, then logs the UID. A flag
//! change renames the file, fsyncs `cur/` and appends one log record with
//! one `fdatasync` ([`Mailbox::set_flags_many`]: one of each for a batch); an expunge
//! unlinks, fsyncs `cur/` and logs. So every change acknowledged to a client
//! is on disk, and the Maildir file names stay the truth for flags.
//!
//! ## The index and who locks what
//!
//! The index maps each message's base name to its UID and MODSEQ, with the
//! mailbox's UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ. It is a snapshot,
//! `postern-uidlist`, plus an append-only change log,
//! `postern-uidlist.log` (formats and crash rules in the `index` module):
//!
//! ```text
//! postern-uidlist 1 V<uidvalidity> N<uidnext> M<highestmodseq>
//! <uid> <modseq> :<flags at last sync> <base name>
//!
//! postern-uidlist.log 1 V<uidvalidity> I<inode of the snapshot>
//! <checksum> + <uid> <modseq> :<flags> <base name>
//! <checksum> - <uid> <modseq>
//! ```
//!
//! A change (new UIDs, flags, expunges) appends records to the log; the
//! snapshot is rewritten atomically (temp file, fsync, rename) only when the
//! log has grown past 256 KiB, and a new log is started for it. A torn
//! record at the end of the log (a crash while writing it) is ignored and
//! cut before the next append; a log that belongs to an older snapshot is
//! ignored.
//!
//! A [`Mailbox`] keeps the state in memory and [`Mailbox::sync`] brings it
//! up to date: it reads only what was appended to the log since (another
//! session's or process's changes), moves `new/` to `cur/` numbering what
//! it finds, and reads `cur/` only when something else may have changed it:
//! always for [`Mailbox::open`] (pop3d, mailctl), and for
//! [`Mailbox::open_watched`] (imapd) only when the inotify watcher
//! ([`watch`]) saw a change in `cur/` that this process did not make
//! itself (mutt renamed or deleted a file, a Maildir was copied in). The
//! file name is the truth for flags (so a flag change by mutt is seen);
//! the index remembers the flags of the last sync only to notice such a
//! change, which bumps the message's MODSEQ. Mail written by another program
//! into `new/` or `cur/` gets new UIDs in delivery order.
//!
//! Every reader and writer of the index takes an exclusive `flock` on
//! `postern-uidlist.lock` while it reads the
//! log and directories and appends; lmtp-delivery takes no lock: it only
//! adds files to `new/`, which the next sync picks up and numbers in
//! delivery order. A missing or unreadable snapshot is rebuilt with a new
//! UIDVALIDITY (clients then resynchronise, as the IMAP rules require).
//!
//! ## The message cache
//!
//! `postern-cache` ([`cache`]) keeps data derived from message files, which
//! never change once delivered: the header ([`Mailbox::header`]: read once,
//! cached, up to 64 KiB) and fields a reader stores by name
//! ([`Mailbox::cached`], [`Mailbox::cache_put`]; imapd keeps ENVELOPE,
//! BODYSTRUCTURE and BODY there). One copy in memory per mailbox and
//! process, shared by its [`Mailbox`]es; records are appended unsynced with
//! checksums (a lost or torn one is only computed again) and entries of
//! expunged messages are dropped when the file is compacted.
//!
//! POP3's maildrop lock is a separate `flock` ([`Pop3Lock`]) so that only one
//! POP3 session uses a mailbox while IMAP sessions go on.
//!
//! UIDs are shared by IMAP and POP3: [`pop3_uidl`] is Dovecot's
//! `%08Xu%08Xv`, so a client switching protocols does not fetch mail twice.
//!
//! ## Status
//!
//! Done: delivery, Maildir creation with the default folders, INBOX and
//! folder indexes, listing with sizes from names, reading, flag changes by
//! rename, expunge, the POP3 lock, external changes (mutt renames and
//! deletes) seen at sync, folder creation, keywords as the letters `a`..`z`
//! with Dovecot's `dovecot-keywords` list ([`read_keywords`],
//! [`keyword_letters`]). Folder names are stored as IMAP sends them
//! (modified UTF-7, as Dovecot does by default); the incremental index
//! (snapshot + change log), the message cache, inotify watching. Not yet:
//! quotas; the message cache of a very large mailbox is held in memory
//! whole once used.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub mod cache;
mod index;
pub mod name;
pub mod watch;

use index::Index;
pub use index::LOG_FILE;
mod adopt;
pub use adopt::{Adopted, adopt_uids};

/// Index file name inside a mailbox directory.
pub const INDEX_FILE: &str = "postern-uidlist";
/// Lock file guarding the index.
pub const INDEX_LOCK: &str = "postern-uidlist.lock";
/// Lock file of the POP3 maildrop lock.
pub const POP3_LOCK: &str = "postern-pop3.lock";
/// Index format version written in its header.
pub const INDEX_VERSION: u32 = 1;
/// Folders created with a new Maildir, with their RFC 6154 special use.
pub const DEFAULT_FOLDERS: [(&str, &str); 5] = [
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
];

/// Errors of the store. IO errors carry the path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("mailbox is locked by another POP3 session")]
    Pop3InUse,
    #[error("no message with UID {0}")]
    NoSuchMessage(u32),
}

type Result<T> = std::result::Result<T, StoreError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// fsync a directory so that a rename or create in it is durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn create_dir_durable(dir: &Path) -> Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                fsync_dir(parent)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                create_dir_durable(parent)?;
            }
            create_dir_durable(dir)
        }
        Err(e) => Err(io_err(dir)(e)),
    }
}

fn ensure_maildir_dirs(dir: &Path) -> Result<()> {
    for sub in ["cur", "new", "tmp"] {
        create_dir_durable(&dir.join(sub))?;
    }
    Ok(())
}

/// Path of a folder: `""` or `"INBOX"` is the root, others are `.Name`
/// (hierarchy separator `.` on disk, as Maildir++).
pub fn folder_path(root: &Path, folder: &str) -> PathBuf {
    if folder.is_empty() || folder.eq_ignore_ascii_case("INBOX") {
        root.to_path_buf()
    } else {
        root.join(format!(".{folder}"))
    }
}

/// Create a Maildir and its default folders (if missing), subscribed.
pub fn create_maildir(root: &Path) -> Result<()> {
    let fresh = !root.join("cur").exists();
    ensure_maildir_dirs(root)?;
    if fresh {
        for (folder, _) in DEFAULT_FOLDERS {
            let dir = folder_path(root, folder);
            ensure_maildir_dirs(&dir)?;
            let marker = dir.join("maildirfolder");
            File::create(&marker).map_err(io_err(&marker))?;
        }
        let subs = root.join("subscriptions");
        if !subs.exists() {
            let list: String = DEFAULT_FOLDERS
                .iter()
                .map(|(f, _)| format!("{f}\n"))
                .collect();
            fs::write(&subs, list).map_err(io_err(&subs))?;
        }
        fsync_dir(root)?;
    }
    Ok(())
}

/// The special-use attribute of a default folder, for IMAP LIST.
pub fn special_use(folder: &str) -> Option<&'static str> {
    DEFAULT_FOLDERS
        .iter()
        .find(|(f, _)| f.eq_ignore_ascii_case(folder))
        .map(|(_, u)| *u)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Convert CRLF line ends to LF; returns (stored bytes, size with CRLF).
/// Bare CR and bare LF are kept as they are; the CRLF size counts each LF
/// as two bytes, which is what POP3 and IMAP send.
pub fn to_stored_form(message: &[u8]) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(message.len());
    let mut i = 0;
    while i < message.len() {
        if message[i] == b'\r' && message.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(message[i]);
        i += 1;
    }
    let lf = out.iter().filter(|&&b| b == b'\n').count() as u64;
    let vsize = out.len() as u64 + lf;
    (out, vsize)
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Where the file is (in `new/`).
    pub path: PathBuf,
    /// Bytes on disk.
    pub size: u64,
    /// Bytes with CRLF line ends.
    pub vsize: u64,
}

/// Deliver a message (CRLF or LF line ends) into `folder` of the Maildir at
/// `root`, creating the Maildir (with default folders) or the folder if
/// needed. Returns only once file and directory entry are fsynced.
pub fn deliver(root: &Path, folder: &str, message: &[u8]) -> Result<Delivered> {
    deliver_with(root, folder, message, |_| {})
}

/// [`deliver`], calling `before_rename` with the file's base name once its
/// content is fsynced in `tmp/` and before it is renamed into `new/`. A
/// caller that records the name there (lmtp-delivery's duplicate records)
/// can later tell "renamed" from "never made it" after a crash.
pub fn deliver_with(
    root: &Path,
    folder: &str,
    message: &[u8],
    before_rename: impl FnOnce(&str),
) -> Result<Delivered> {
    deliver_inner(root, folder, message, None, before_rename)
}

/// [`deliver`] with an internal date (seconds since the epoch, for IMAP
/// APPEND's date-time): it becomes the time in the file name (which is what
/// [`Mailbox`] reports as `internal_date`) and the file's mtime (what
/// Dovecot reads).
pub fn deliver_dated(
    root: &Path,
    folder: &str,
    message: &[u8],
    internal_date: Option<u64>,
) -> Result<Delivered> {
    deliver_inner(root, folder, message, internal_date, |_| {})
}

/// A message written and fsynced in `tmp/`, not yet renamed.
struct TmpMessage {
    tmp: PathBuf,
    base: String,
    size: u64,
    vsize: u64,
}

/// Write `message` (converted to the stored form) to `dir/tmp/` under a new
/// base name and fsync it.
fn write_tmp(dir: &Path, message: &[u8], internal_date: Option<u64>) -> Result<TmpMessage> {
    let (stored, vsize) = to_stored_form(message);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let base = format!(
        "{}.M{}P{}Q{}.{},S={},W={}",
        internal_date.unwrap_or(now.as_secs()),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        name::escape_host(&hostname()),
        stored.len(),
        vsize
    );
    let tmp = dir.join("tmp").join(&base);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    let written = f
        .write_all(&stored)
        .and_then(|()| match internal_date {
            Some(secs) => f.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(secs)),
            None => Ok(()),
        })
        .and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp)(e));
    }
    Ok(TmpMessage {
        tmp,
        base,
        size: stored.len() as u64,
        vsize,
    })
}

fn deliver_inner(
    root: &Path,
    folder: &str,
    message: &[u8],
    internal_date: Option<u64>,
    before_rename: impl FnOnce(&str),
) -> Result<Delivered> {
    create_maildir(root)?;
    let dir = folder_path(root, folder);
    if !dir.join("new").exists() {
        ensure_maildir_dirs(&dir)?;
        let marker = dir.join("maildirfolder");
        File::create(&marker).map_err(io_err(&marker))?;
    }
    let t = write_tmp(&dir, message, internal_date)?;
    before_rename(&t.base);
    let new_dir = dir.join("new");
    let dest = new_dir.join(&t.base);
    fs::rename(&t.tmp, &dest).map_err(io_err(&dest))?;
    fsync_dir(&new_dir)?;
    Ok(Delivered {
        path: dest,
        size: t.size,
        vsize: t.vsize,
    })
}

/// Create a folder (Maildir++ `.Name` with `cur/ new/ tmp/` and the
/// `maildirfolder` marker). Fails with `AlreadyExists` if it exists.
pub fn create_folder(root: &Path, folder: &str) -> Result<()> {
    let dir = folder_path(root, folder);
    if dir == root || dir.join("cur").exists() {
        return Err(io_err(&dir)(io::Error::from(io::ErrorKind::AlreadyExists)));
    }
    ensure_maildir_dirs(&dir)?;
    let marker = dir.join("maildirfolder");
    File::create(&marker).map_err(io_err(&marker))?;
    fsync_dir(root)?;
    Ok(())
}

/// Rename folder `old` to `new` together with its subfolders (`old.x` →
/// `new.x`), keeping UIDs and UIDVALIDITY (the index moves with the
/// directory). Renaming INBOX (RFC 3501 section 6.3.5) creates `new`, moves
/// every INBOX message into it (flags and keyword list kept; new UIDs
/// there) and leaves INBOX empty; INBOX's subfolders stay. Errors:
/// `NotFound` when `old` does not exist, `AlreadyExists` when `new` (or
/// one of the renamed subfolders' new names) does.
pub fn rename_folder(root: &Path, old: &str, new: &str) -> Result<()> {
    let exists = |e: io::ErrorKind, p: &Path| io_err(p)(io::Error::from(e));
    let new_dir = folder_path(root, new);
    if new_dir == root || new_dir.exists() {
        return Err(exists(io::ErrorKind::AlreadyExists, &new_dir));
    }
    if old.eq_ignore_ascii_case("INBOX") {
        create_folder(root, new)?;
        let kw = root.join(KEYWORDS_FILE);
        if kw.exists() {
            let text = fs::read(&kw).map_err(io_err(&kw))?;
            write_atomic(&new_dir.join(KEYWORDS_FILE), &text)?;
        }
        for sub in ["new", "cur"] {
            let from = root.join(sub);
            let to = new_dir.join(sub);
            for entry in fs::read_dir(&from).map_err(io_err(&from))? {
                let entry = entry.map_err(io_err(&from))?;
                let fname = entry.file_name();
                if !fname.to_str().is_some_and(name::is_message) {
                    continue;
                }
                match fs::rename(entry.path(), to.join(&fname)) {
                    Ok(()) => {}
                    // Expunged meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&entry.path())(e)),
                }
            }
            fsync_dir(&to)?;
            fsync_dir(&from)?;
        }
        return Ok(());
    }
    let old_dir = folder_path(root, old);
    if !old_dir.join("cur").is_dir() {
        return Err(exists(io::ErrorKind::NotFound, &old_dir));
    }
    // The folder and its subfolders, with their new directory names.
    let prefix = format!(".{old}.");
    let mut moves = vec![(old_dir, new_dir)];
    for entry in fs::read_dir(root).map_err(io_err(root))? {
        let entry = entry.map_err(io_err(root))?;
        if let Some(rest) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
        {
            moves.push((entry.path(), root.join(format!(".{new}.{rest}"))));
        }
    }
    if let Some((_, taken)) = moves.iter().find(|(_, to)| to.exists()) {
        return Err(exists(io::ErrorKind::AlreadyExists, taken));
    }
    for (from, to) in &moves {
        fs::rename(from, to).map_err(io_err(from))?;
    }
    fsync_dir(root)
}

/// POP3's UIDL for a message: Dovecot's `%08Xu%08Xv`.
pub fn pop3_uidl(uid: u32, uidvalidity: u32) -> String {
    format!("{uid:08X}{uidvalidity:08X}")
}

/// One message of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub uid: u32,
    pub modseq: u64,
    /// Base name (before `:2,`).
    pub base: String,
    /// Current path (in `cur/` after a sync).
    pub path: PathBuf,
    /// Flag letters from the file name (`DFPRST` + keyword letters).
    pub flags: String,
    /// Bytes on disk.
    pub size: u64,
    /// Bytes with CRLF line ends.
    pub vsize: u64,
    /// Seconds since the epoch: the delivery time in the name, else mtime.
    pub internal_date: u64,
}

/// What a sync found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub new: Vec<u32>,
    pub expunged: Vec<u32>,
    pub flags_changed: Vec<u32>,
}

/// An exclusive `flock` held until dropped.
struct FileLock {
    _file: File,
}

fn lock(path: &Path, nonblocking: bool) -> Result<Option<FileLock>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    let arg = if nonblocking {
        nix::fcntl::FlockArg::LockExclusiveNonblock
    } else {
        nix::fcntl::FlockArg::LockExclusive
    };
    #[allow(deprecated)] // nix's Flock wrapper takes the File by value; we keep ours.
    let r = nix::fcntl::flock(std::os::fd::AsRawFd::as_raw_fd(&file.as_fd()), arg);
    match r {
        Ok(()) => Ok(Some(FileLock { _file: file })),
        Err(nix::errno::Errno::EWOULDBLOCK) if nonblocking => Ok(None),
        Err(e) => Err(io_err(path)(io::Error::from(e))),
    }
}

/// The POP3 maildrop lock of a mailbox: held for a POP3 session's life.
pub struct Pop3Lock {
    _lock: FileLock,
}

impl Pop3Lock {
    /// Take the lock or fail with [`StoreError::Pop3InUse`].
    pub fn acquire(dir: &Path) -> Result<Self> {
        ensure_maildir_dirs(dir)?;
        match lock(&dir.join(POP3_LOCK), true)? {
            Some(l) => Ok(Self { _lock: l }),
            None => Err(StoreError::Pop3InUse),
        }
    }
}

/// Dovecot's keyword list, one per mailbox directory: `<n> <name>` lines,
/// keyword `n` being the flag letter `'a' + n` in the file names.
pub const KEYWORDS_FILE: &str = "dovecot-keywords";
/// Maildir has the letters `a`..`z` for keywords: at most 26 per mailbox.
pub const MAX_KEYWORDS: usize = 26;

/// The keywords of the mailbox at `dir`, indexed by letter (`a` = 0); an
/// unused slot is an empty string. A missing file means no keywords.
pub fn read_keywords(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let Ok(text) = fs::read_to_string(dir.join(KEYWORDS_FILE)) else {
        return v;
    };
    for line in text.lines() {
        let Some((n, name)) = line.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else { continue };
        if n >= MAX_KEYWORDS || name.is_empty() {
            continue;
        }
        if v.len() <= n {
            v.resize(n + 1, String::new());
        }
        v[n] = name.to_string();
    }
    v
}

/// The flag letter of each keyword name (compared without regard to ASCII
/// case), adding unknown names to the mailbox's list when `create`.
/// `None` for a name that is unknown (and not created) or when all 26
/// letters are taken.
pub fn keyword_letters(dir: &Path, names: &[&str], create: bool) -> Result<Vec<Option<char>>> {
    let letter = |i: usize| char::from(b'a' + i as u8);
    let known = read_keywords(dir);
    let find = |list: &[String], n: &str| list.iter().position(|k| k.eq_ignore_ascii_case(n));
    if !create || names.iter().all(|n| find(&known, n).is_some()) {
        return Ok(names.iter().map(|n| find(&known, n).map(letter)).collect());
    }
    // Re-read under the index lock so two sessions do not hand out one
    // letter twice.
    let _guard = lock(&dir.join(INDEX_LOCK), false)?;
    let mut list = read_keywords(dir);
    let mut changed = false;
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let i = match find(&list, n) {
            Some(i) => Some(i),
            None => match list.iter().position(String::is_empty) {
                Some(free) => {
                    list[free] = n.to_string();
                    changed = true;
                    Some(free)
                }
                None if list.len() < MAX_KEYWORDS => {
                    list.push(n.to_string());
                    changed = true;
                    Some(list.len() - 1)
                }
                None => None,
            },
        };
        out.push(i.map(letter));
    }
    if changed {
        let text: String = list
            .iter()
            .enumerate()
            .filter(|(_, k)| !k.is_empty())
            .map(|(i, k)| format!("{i} {k}\n"))
            .collect();
        write_atomic(&dir.join(KEYWORDS_FILE), text.as_bytes())?;
    }
    Ok(out)
}

/// An opened mailbox (INBOX or a folder): its messages in UID order.
///
/// The state lives in memory and is brought up to date by [`Mailbox::sync`]
/// (and before every change) from the index log, `new/` and, when needed,
/// `cur/`; see the crate documentation.
#[derive(Debug)]
pub struct Mailbox {
    dir: PathBuf,
    uidvalidity: u32,
    uidnext: u32,
    highest_modseq: u64,
    messages: Vec<Message>,
    /// Base name → UID of every message in `messages`.
    by_base: HashMap<String, u32>,
    /// The snapshot file the state was loaded from (`None`: not loaded).
    snapshot: Option<FileId>,
    /// The log's inode when it is valid for `snapshot` (`None`: no log, or
    /// a stale one; a new one is started at the next change).
    log_ino: Option<u64>,
    /// Bytes of the log applied (the end of its last good record).
    log_offset: u64,
    /// The log has a torn tail past `log_offset`: cut it before appending.
    log_torn: bool,
    /// Foreign messages whose sizes are not known yet (measured at the
    /// next scan of `cur/`, which has their real paths).
    unmeasured: Vec<u32>,
    watch: Option<watch::WatchGuard>,
    /// `cur/`'s watch generation at our last scan of it.
    cur_generation: Option<u64>,
    cache: std::sync::OnceLock<cache::Shared>,
}

/// Identity of a file version: inode, size, modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl FileId {
    fn of(m: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }
}

/// A file seen in `cur/` during a scan.
struct Found {
    base: String,
    flags: String,
    path: PathBuf,
    size: Option<u64>,
    vsize: Option<u64>,
}

/// Sort key of a base name: `<secs>.M<usec>P<pid>Q<n>.` as numbers; names
/// of other programs fall back to their leading seconds and then the text.
fn delivery_key(base: &str) -> (u64, u64, u64, &str) {
    let num = |s: &str| -> u64 {
        s.bytes().take_while(u8::is_ascii_digit).fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        })
    };
    let mut parts = base.splitn(3, '.');
    let secs = parts.next().map_or(0, num);
    let mid = parts.next().unwrap_or("");
    let (usec, q) = match mid.strip_prefix('M') {
        Some(rest) => (num(rest), mid.rsplit_once('Q').map_or(0, |(_, q)| num(q))),
        None => (0, 0),
    };
    (secs, usec, q, base)
}

/// Seconds in the `<secs>.` prefix of a Maildir name.
fn name_time(base: &str) -> Option<u64> {
    base.split('.').next()?.parse().ok()
}

/// CRLF size of a file made by another program (no `W=` in its name).
fn count_vsize(path: &Path) -> io::Result<u64> {
    let mut f = BufReader::new(File::open(path)?);
    let mut total = 0u64;
    let mut prev = 0u8;
    loop {
        let buf = f.fill_buf()?;
        if buf.is_empty() {
            return Ok(total);
        }
        for &b in buf {
            total += 1;
            if b == b'\n' && prev != b'\r' {
                total += 1;
            }
            prev = b;
        }
        let n = buf.len();
        f.consume(n);
    }
}

/// Sizes of a message from its name, else measured from the file.
fn sizes(p: &name::FileName<'_>, path: &Path) -> (u64, u64) {
    let size = match p.size {
        Some(s) => s,
        None => fs::metadata(path).map(|m| m.len()).unwrap_or(0),
    };
    let vsize = match p.vsize {
        Some(v) => v,
        None => count_vsize(path).unwrap_or(size),
    };
    (size, vsize)
}

fn internal_date_of(base: &str, path: &Path) -> u64 {
    name_time(base).unwrap_or_else(|| {
        fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    })
}

/// A directory entry that names a message file we can index.
fn message_name(entry: &fs::DirEntry, dir: &Path) -> Option<String> {
    let Some(fname) = entry.file_name().to_str().map(str::to_string) else {
        tracing::warn!(dir = %dir.display(), "skipping a file name that is not UTF-8");
        return None;
    };
    (name::is_message(&fname) && !fname.contains(['\n', '\r'])).then_some(fname)
}

impl Mailbox {
    /// Open the mailbox at `dir` (a Maildir root for INBOX, or a folder
    /// directory), creating its directories if needed, and sync it.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_inner(dir, false)
    }

    /// [`Mailbox::open`], watching the mailbox (see [`watch`]) when inotify
    /// is available: later syncs then scan `cur/` only when something other
    /// than this process's own operations changed it, and the watcher's
    /// listener hears of changes. For long-lived readers (imapd sessions).
    pub fn open_watched(dir: &Path) -> Result<Self> {
        Self::open_inner(dir, true)
    }

    fn open_inner(dir: &Path, watched: bool) -> Result<Self> {
        ensure_maildir_dirs(dir)?;
        let mut mb = Self {
            dir: dir.to_path_buf(),
            uidvalidity: 0,
            uidnext: 1,
            highest_modseq: 1,
            messages: Vec::new(),
            by_base: HashMap::new(),
            snapshot: None,
            log_ino: None,
            log_offset: 0,
            log_torn: false,
            unmeasured: Vec::new(),
            watch: None,
            cur_generation: None,
            cache: std::sync::OnceLock::new(),
        };
        if watched {
            mb.watch = watch::global().and_then(|w| w.watch(dir));
        }
        mb.sync()?;
        Ok(mb)
    }

    pub fn uidvalidity(&self) -> u32 {
        self.uidvalidity
    }
    pub fn uidnext(&self) -> u32 {
        self.uidnext
    }
    pub fn highest_modseq(&self) -> u64 {
        self.highest_modseq
    }
    /// Messages in UID order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Whether the mailbox is watched (see [`Mailbox::open_watched`]).
    pub fn is_watched(&self) -> bool {
        self.watch.is_some()
    }

    /// The index lock (opened each time rather than kept open, so that
    /// thousands of idle sessions do not hold a descriptor each).
    fn lock_index(&self) -> Result<FileLock> {
        lock(&self.dir.join(INDEX_LOCK), false)?.ok_or_else(|| {
            io_err(&self.dir.join(INDEX_LOCK))(io::Error::from(io::ErrorKind::WouldBlock))
        })
    }

    /// Bring the state up to date: apply what other sessions and processes
    /// wrote to the index log, number new files (moving them from `new/` to
    /// `cur/`), notice files removed or renamed by other programs (scanning
    /// `cur/` when it may have changed), bump MODSEQs, log the changes.
    /// Never opens message files, except to measure foreign files without
    /// `S=`/`W=` in their names.
    pub fn sync(&mut self) -> Result<Changes> {
        let _guard = self.lock_index()?;
        let mut ch = Changes::default();
        let mut recs = Vec::new();
        self.catch_up(&mut ch)?;
        let cur_scan = self.cur_needs_scan();
        // When cur/ is read anyway, files moved from new/ are numbered
        // there, together with any found in cur/, in delivery order.
        self.scan_new(cur_scan.is_none(), &mut ch, &mut recs)?;
        if let Some(generation) = cur_scan {
            self.scan_cur(generation, &mut ch, &mut recs)?;
        }
        self.commit(&recs)?;
        ch.tidy();
        Ok(ch)
    }

    /// `Some(generation to record)` when `cur/` must be scanned.
    fn cur_needs_scan(&self) -> Option<Option<u64>> {
        let generation = match (&self.watch, watch::global()) {
            (Some(_), Some(w)) => w.cur_generation(&self.dir),
            _ => None,
        };
        if generation.is_some() && generation == self.cur_generation {
            None
        } else {
            Some(generation)
        }
    }

    fn position(&self, uid: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// Read what changed in the index files since we last looked.
    fn catch_up(&mut self, ch: &mut Changes) -> Result<()> {
        let snap = self.dir.join(INDEX_FILE);
        let id = match fs::metadata(&snap) {
            Ok(m) => Some(FileId::of(&m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&snap)(e)),
        };
        if id.is_none() || id != self.snapshot {
            return self.reload(ch);
        }
        let log = self.dir.join(index::LOG_FILE);
        let meta = match fs::metadata(&log) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.log_ino = None;
                return Ok(());
            }
            Err(e) => return Err(io_err(&log)(e)),
        };
        let ino = FileId::of(&meta).ino;
        if Some(ino) != self.log_ino {
            self.read_log(ch, true)
        } else if meta.len() < self.log_offset {
            // Cut by someone else: trust nothing we derived from it.
            self.reload(ch)
        } else if meta.len() > self.log_offset && !self.log_torn {
            self.read_log(ch, false)
        } else {
            Ok(())
        }
    }

    /// Apply the log: all of it (`whole`, after checking its header) or
    /// what was appended since `log_offset`.
    fn read_log(&mut self, ch: &mut Changes, whole: bool) -> Result<()> {
        let path = self.dir.join(index::LOG_FILE);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.log_ino = None;
                return Ok(());
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let meta = f.metadata().map_err(io_err(&path))?;
        let mut data = Vec::new();
        let start = if whole {
            f.read_to_end(&mut data).map_err(io_err(&path))?;
            let snapshot_ino = self.snapshot.map_or(0, |s| s.ino);
            match index::parse_log_header(&data) {
                Some((v, i, len)) if v == self.uidvalidity && i == snapshot_ino => len,
                _ => {
                    // Another snapshot's log (or none readable): ignored,
                    // replaced at the next change.
                    self.log_ino = None;
                    return Ok(());
                }
            }
        } else {
            use std::io::Seek;
            f.seek(io::SeekFrom::Start(self.log_offset))
                .map_err(io_err(&path))?;
            f.read_to_end(&mut data).map_err(io_err(&path))?;
            0
        };
        let (records, used) = index::decode_records(&data[start..]);
        for r in records {
            self.apply(r, ch);
        }
        let base = if whole { 0 } else { self.log_offset };
        self.log_ino = Some(FileId::of(&meta).ino);
        self.log_offset = base + (start + used) as u64;
        self.log_torn = start + used < data.len();
        if self.log_torn {
            tracing::warn!(log = %path.display(), "index log ends in a torn record; ignoring it");
        }
        Ok(())
    }

    fn apply(&mut self, r: index::Record, ch: &mut Changes) {
        match r {
            index::Record::Set {
                uid,
                modseq,
                flags,
                base,
            } => {
                self.uidnext = self.uidnext.max(uid.saturating_add(1));
                self.highest_modseq = self.highest_modseq.max(modseq);
                let path = self.dir.join("cur").join(name::with_flags(&base, &flags));
                match self.position(uid) {
                    Some(i) => {
                        let m = &mut self.messages[i];
                        if m.flags != flags {
                            ch.flags_changed.push(uid);
                        }
                        m.modseq = modseq;
                        m.flags = flags;
                        m.path = path;
                    }
                    None => {
                        if let Some(old) = self.by_base.get(&base).copied() {
                            // Renumbered (should not happen): keep one.
                            self.remove_uid(old);
                        }
                        let p = name::parse(&base);
                        let (size, vsize) = sizes(&p, &path);
                        let internal_date = internal_date_of(&base, &path);
                        let at = self.messages.partition_point(|m| m.uid < uid);
                        self.by_base.insert(base.clone(), uid);
                        self.messages.insert(
                            at,
                            Message {
                                uid,
                                modseq,
                                base,
                                path,
                                flags,
                                size,
                                vsize,
                                internal_date,
                            },
                        );
                        ch.new.push(uid);
                    }
                }
            }
            index::Record::Expunged { uid, modseq } => {
                self.highest_modseq = self.highest_modseq.max(modseq);
                if self.remove_uid(uid) {
                    ch.expunged.push(uid);
                }
            }
        }
    }

    fn remove_uid(&mut self, uid: u32) -> bool {
        match self.position(uid) {
            Some(i) => {
                let m = self.messages.remove(i);
                self.by_base.remove(&m.base);
                if let Some(c) = self.cache.get() {
                    c.lock().unwrap_or_else(|e| e.into_inner()).forget(&m.base);
                }
                true
            }
            None => false,
        }
    }

    /// Load the snapshot and its log from scratch (first sync, or another
    /// process rewrote the snapshot). A missing or unreadable snapshot is
    /// replaced by a fresh one with a new UIDVALIDITY.
    fn reload(&mut self, ch: &mut Changes) -> Result<()> {
        let snap = self.dir.join(INDEX_FILE);
        let index = match fs::read_to_string(&snap) {
            Ok(text) => match Index::parse(&text) {
                Some(i) => Some(i),
                None => {
                    tracing::warn!(index = %snap.display(), "unreadable mailbox index, rebuilding with a new UIDVALIDITY");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&snap)(e)),
        };
        let index = match index {
            Some(i) => i,
            None => {
                let fresh = Index::fresh();
                write_atomic(&snap, fresh.render().as_bytes())?;
                fresh
            }
        };
        let meta = fs::metadata(&snap).map_err(io_err(&snap))?;
        let same_validity = index.uidvalidity == self.uidvalidity;
        let old: HashMap<u32, (String, u64, u64)> = self
            .messages
            .drain(..)
            .map(|m| (m.uid, (m.flags, m.size, m.vsize)))
            .collect();
        self.by_base.clear();
        self.unmeasured.clear();
        self.uidvalidity = index.uidvalidity;
        self.uidnext = index.uidnext;
        self.highest_modseq = index.highest_modseq;
        let mut rows: Vec<(String, (u32, u64, String))> = index.entries.into_iter().collect();
        rows.sort_by_key(|(_, (uid, _, _))| *uid);
        for (base, (uid, modseq, flags)) in rows {
            let p = name::parse(&base);
            let path = self.dir.join("cur").join(name::with_flags(&base, &flags));
            let (size, vsize) = match (p.size, p.vsize, old.get(&uid)) {
                (Some(s), Some(v), _) => (s, v),
                (_, _, Some((_, s, v))) if same_validity => (*s, *v),
                _ => {
                    self.unmeasured.push(uid);
                    (p.size.unwrap_or(0), p.vsize.or(p.size).unwrap_or(0))
                }
            };
            let internal_date = match name_time(&base) {
                Some(t) => t,
                None => {
                    // From the file's mtime, at the next scan of `cur/`.
                    if !self.unmeasured.contains(&uid) {
                        self.unmeasured.push(uid);
                    }
                    0
                }
            };
            self.by_base.insert(base.clone(), uid);
            self.messages.push(Message {
                uid,
                modseq,
                base,
                path,
                flags,
                size,
                vsize,
                internal_date,
            });
        }
        self.snapshot = Some(FileId::of(&meta));
        self.log_ino = None;
        self.log_offset = 0;
        self.log_torn = false;
        // Paths are guesses until `cur/` is read again.
        self.cur_generation = None;
        let mut log_changes = Changes::default();
        self.read_log(&mut log_changes, true)?;
        for m in &self.messages {
            match old.get(&m.uid) {
                Some((flags, _, _)) if same_validity => {
                    if *flags != m.flags {
                        ch.flags_changed.push(m.uid);
                    }
                }
                _ => ch.new.push(m.uid),
            }
        }
        if same_validity {
            ch.expunged
                .extend(old.keys().filter(|u| self.position(**u).is_none()));
        }
        Ok(())
    }

    /// Move what is in `new/` to `cur/` (with an empty info part, as
    /// Dovecot does) and, when `number`, number it in delivery order.
    fn scan_new(
        &mut self,
        number: bool,
        ch: &mut Changes,
        recs: &mut Vec<index::Record>,
    ) -> Result<()> {
        let new_dir = self.dir.join("new");
        let cur_dir = self.dir.join("cur");
        let mut moved = Vec::new();
        for entry in fs::read_dir(&new_dir).map_err(io_err(&new_dir))? {
            let entry = entry.map_err(io_err(&new_dir))?;
            let Some(fname) = message_name(&entry, &new_dir) else {
                continue;
            };
            let p = name::parse(&fname);
            let dest_name = name::with_flags(p.base, p.flags);
            let dest = cur_dir.join(&dest_name);
            self.expect(watch::Expect::MovedTo, &dest_name);
            match fs::rename(entry.path(), &dest) {
                Ok(()) => moved.push(Found {
                    base: p.base.to_string(),
                    flags: name::normalize_flags(p.flags),
                    path: dest,
                    size: p.size,
                    vsize: p.vsize,
                }),
                Err(e) => {
                    self.unexpect(watch::Expect::MovedTo, &dest_name);
                    if e.kind() != io::ErrorKind::NotFound {
                        return Err(io_err(&dest)(e));
                    }
                    // Taken by another reader.
                }
            }
        }
        if moved.is_empty() {
            return Ok(());
        }
        fsync_dir(&new_dir)?;
        fsync_dir(&cur_dir)?;
        if !number {
            return Ok(());
        }
        moved.sort_by(|a, b| delivery_key(&a.base).cmp(&delivery_key(&b.base)));
        for f in moved {
            self.found(f, ch, recs);
        }
        Ok(())
    }

    /// A file seen in `cur/`: known (flags and path brought up to date) or
    /// new (numbered).
    fn found(&mut self, f: Found, ch: &mut Changes, recs: &mut Vec<index::Record>) {
        if let Some(uid) = self.by_base.get(&f.base).copied()
            && let Some(i) = self.position(uid)
        {
            let measure = self.unmeasured.contains(&uid);
            let m = &mut self.messages[i];
            m.path = f.path;
            if measure {
                let fname = m.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let (size, vsize) = sizes(&name::parse(fname), &m.path);
                m.size = size;
                m.vsize = vsize;
                m.internal_date = internal_date_of(&m.base, &m.path);
            }
            if m.flags != f.flags {
                self.highest_modseq += 1;
                m.modseq = self.highest_modseq;
                m.flags = f.flags;
                ch.flags_changed.push(uid);
                recs.push(index::Record::Set {
                    uid,
                    modseq: m.modseq,
                    flags: m.flags.clone(),
                    base: m.base.clone(),
                });
            }
            return;
        }
        let uid = self.uidnext;
        self.uidnext += 1;
        self.highest_modseq += 1;
        let size = match f.size {
            Some(s) => s,
            None => fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0),
        };
        let vsize = match f.vsize {
            Some(v) => v,
            None => count_vsize(&f.path).unwrap_or(size),
        };
        let internal_date = internal_date_of(&f.base, &f.path);
        recs.push(index::Record::Set {
            uid,
            modseq: self.highest_modseq,
            flags: f.flags.clone(),
            base: f.base.clone(),
        });
        self.by_base.insert(f.base.clone(), uid);
        self.messages.push(Message {
            uid,
            modseq: self.highest_modseq,
            base: f.base,
            path: f.path,
            flags: f.flags,
            size,
            vsize,
            internal_date,
        });
        ch.new.push(uid);
    }

    /// Read `cur/`: new files numbered, renamed ones' flags taken, missing
    /// ones expunged. `generation`: the watch generation read before.
    fn scan_cur(
        &mut self,
        generation: Option<u64>,
        ch: &mut Changes,
        recs: &mut Vec<index::Record>,
    ) -> Result<()> {
        let cur_dir = self.dir.join("cur");
        let mut found: Vec<Found> = Vec::new();
        for entry in fs::read_dir(&cur_dir).map_err(io_err(&cur_dir))? {
            let entry = entry.map_err(io_err(&cur_dir))?;
            let Some(fname) = message_name(&entry, &cur_dir) else {
                continue;
            };
            let p = name::parse(&fname);
            found.push(Found {
                base: p.base.to_string(),
                flags: name::normalize_flags(p.flags),
                path: entry.path(),
                size: p.size,
                vsize: p.vsize,
            });
        }
        // New base names get UIDs in delivery order (time, microseconds,
        // per-process counter; compared as numbers, not as text).
        found.sort_by(|a, b| delivery_key(&a.base).cmp(&delivery_key(&b.base)));
        let mut seen = std::collections::HashSet::with_capacity(found.len());
        for f in found {
            if !seen.insert(f.base.clone()) {
                tracing::warn!(file = %f.path.display(), "two files with the same base name; ignoring this one");
                continue;
            }
            self.found(f, ch, recs);
        }
        let gone: Vec<u32> = self
            .messages
            .iter()
            .filter(|m| !seen.contains(m.base.as_str()))
            .map(|m| m.uid)
            .collect();
        if !gone.is_empty() {
            self.highest_modseq += 1;
            for uid in gone {
                self.remove_uid(uid);
                ch.expunged.push(uid);
                recs.push(index::Record::Expunged {
                    uid,
                    modseq: self.highest_modseq,
                });
            }
        }
        self.unmeasured.clear();
        self.cur_generation = generation;
        Ok(())
    }

    fn expect(&self, kind: watch::Expect, name: &str) {
        if self.watch.is_some()
            && let Some(w) = watch::global()
        {
            w.expect(&self.dir, kind, name);
        }
    }

    fn unexpect(&self, kind: watch::Expect, name: &str) {
        if self.watch.is_some()
            && let Some(w) = watch::global()
        {
            w.unexpect(&self.dir, kind, name);
        }
    }

    /// Append records to the log (one write, one fdatasync), starting a log
    /// first when there is none for the current snapshot; rewrite the
    /// snapshot when the log has grown large.
    fn commit(&mut self, recs: &[index::Record]) -> Result<()> {
        if recs.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(index::LOG_FILE);
        if self.log_ino.is_none() {
            let header = index::log_header(self.uidvalidity, self.snapshot.map_or(0, |s| s.ino));
            write_atomic(&path, header.as_bytes())?;
            let meta = fs::metadata(&path).map_err(io_err(&path))?;
            self.log_ino = Some(FileId::of(&meta).ino);
            self.log_offset = header.len() as u64;
            self.log_torn = false;
        }
        let f = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if self.log_torn {
            f.set_len(self.log_offset).map_err(io_err(&path))?;
            self.log_torn = false;
        }
        let mut buf = Vec::with_capacity(recs.len() * 96);
        for r in recs {
            r.encode(&mut buf);
        }
        (&f).write_all(&buf)
            .and_then(|()| f.sync_data())
            .map_err(io_err(&path))?;
        self.log_offset += buf.len() as u64;
        if self.log_offset > index::COMPACT_AT
            && self.log_offset > self.snapshot.map_or(0, |s| s.len)
        {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrite the snapshot from the state and start a new log for it.
    fn compact(&mut self) -> Result<()> {
        let snap = self.dir.join(INDEX_FILE);
        let index = Index {
            uidvalidity: self.uidvalidity,
            uidnext: self.uidnext,
            highest_modseq: self.highest_modseq,
            entries: self
                .messages
                .iter()
                .map(|m| (m.base.clone(), (m.uid, m.modseq, m.flags.clone())))
                .collect(),
        };
        write_atomic(&snap, index.render().as_bytes())?;
        let meta = fs::metadata(&snap).map_err(io_err(&snap))?;
        self.snapshot = Some(FileId::of(&meta));
        let path = self.dir.join(index::LOG_FILE);
        let header = index::log_header(self.uidvalidity, FileId::of(&meta).ino);
        write_atomic(&path, header.as_bytes())?;
        let lmeta = fs::metadata(&path).map_err(io_err(&path))?;
        self.log_ino = Some(FileId::of(&lmeta).ino);
        self.log_offset = header.len() as u64;
        self.log_torn = false;
        Ok(())
    }

    fn find(&self, uid: u32) -> Result<&Message> {
        self.position(uid)
            .map(|i| &self.messages[i])
            .ok_or(StoreError::NoSuchMessage(uid))
    }

    /// Open a message for reading.
    pub fn open_message(&self, uid: u32) -> Result<File> {
        let m = self.find(uid)?;
        File::open(&m.path).map_err(io_err(&m.path))
    }

    /// Read a whole message (stored form, LF line ends).
    pub fn read_message(&self, uid: u32) -> Result<Vec<u8>> {
        let mut f = self.open_message(uid)?;
        let mut buf = Vec::new();
        let path = self.find(uid)?.path.clone();
        f.read_to_end(&mut buf).map_err(io_err(&path))?;
        Ok(buf)
    }

    fn cache(&self) -> &cache::Shared {
        self.cache.get_or_init(|| cache::open(&self.dir))
    }

    fn with_cache<T>(&self, f: impl FnOnce(&mut cache::Inner) -> T) -> T {
        let mut c = self.cache().lock().unwrap_or_else(|e| e.into_inner());
        let live: std::collections::HashSet<&str> = if c.needs_load() {
            self.messages.iter().map(|m| m.base.as_str()).collect()
        } else {
            Default::default()
        };
        c.load(&live);
        f(&mut c)
    }

    /// A field of the message cache ([`cache`]) for message `uid`.
    pub fn cached(&self, uid: u32, field: &str) -> Option<Arc<[u8]>> {
        let base = &self.find(uid).ok()?.base;
        self.with_cache(|c| c.get(base, field))
    }

    /// Store a field in the message cache for message `uid` (kept for the
    /// message's life; best effort). Returns the data as shared bytes.
    pub fn cache_put(&self, uid: u32, field: &str, data: &[u8]) -> Arc<[u8]> {
        match self.find(uid) {
            Ok(m) => {
                let base = m.base.clone();
                self.with_cache(|c| c.put(&base, field, data))
            }
            Err(_) => Arc::from(data),
        }
    }

    /// The message's header (stored form, up to and including the empty
    /// line that ends it), from the cache or read from the file once and
    /// cached (headers up to [`cache::MAX_CACHED_HEADER`]).
    pub fn header(&self, uid: u32) -> Result<Arc<[u8]>> {
        if let Some(h) = self.cached(uid, cache::HEADER) {
            return Ok(h);
        }
        let m = self.find(uid)?;
        let mut f = File::open(&m.path).map_err(io_err(&m.path))?;
        let mut buf = Vec::with_capacity(8192);
        (&mut f)
            .take(cache::MAX_CACHED_HEADER as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(io_err(&m.path))?;
        if let Some(end) = header_end(&buf) {
            buf.truncate(end);
            return Ok(self.cache_put(uid, cache::HEADER, &buf));
        }
        if buf.len() <= cache::MAX_CACHED_HEADER {
            // No body: the whole message is its header.
            return Ok(self.cache_put(uid, cache::HEADER, &buf));
        }
        // A header too large to cache.
        f.read_to_end(&mut buf).map_err(io_err(&m.path))?;
        let end = header_end(&buf).unwrap_or(buf.len());
        buf.truncate(end);
        Ok(Arc::from(buf))
    }

    /// Replace a message's flags (renames the file) and bump its MODSEQ.
    ///
    /// Another session may have renamed the file (its own flag change) or
    /// expunged it since our last sync: on `NotFound` `cur/` is read again
    /// and the rename retried once under the new name; a message that is
    /// gone is left alone (`Ok`, like a STORE on a message another session
    /// expunged; the expunge is reported at the next sync). An unknown UID
    /// is [`StoreError::NoSuchMessage`].
    pub fn set_flags(&mut self, uid: u32, flags: &str) -> Result<()> {
        self.find(uid)?;
        self.set_flags_many(&[(uid, flags.to_string())])
    }

    /// [`Mailbox::set_flags`] for several messages: renames, one fsync of
    /// `cur/`, one log append. UIDs not in the mailbox are skipped.
    pub fn set_flags_many(&mut self, changes: &[(u32, String)]) -> Result<()> {
        let _guard = self.lock_index()?;
        let mut ch = Changes::default();
        let mut recs = Vec::new();
        self.catch_up(&mut ch)?;
        let mut retry = Vec::new();
        for (uid, flags) in changes {
            if !self.rename_flags(*uid, flags, &mut recs)? {
                retry.push((*uid, flags));
            }
        }
        if !retry.is_empty() {
            let generation = self.cur_needs_scan().flatten();
            self.scan_cur(generation, &mut ch, &mut recs)?;
            for (uid, flags) in retry {
                self.rename_flags(uid, flags, &mut recs)?;
            }
        }
        if !recs.is_empty() {
            fsync_dir(&self.dir.join("cur"))?;
        }
        self.commit(&recs)
    }

    /// Rename one message for new flags; `false` when its file was not
    /// found under the name we know.
    fn rename_flags(
        &mut self,
        uid: u32,
        flags: &str,
        recs: &mut Vec<index::Record>,
    ) -> Result<bool> {
        let flags = name::normalize_flags(flags);
        let Some(i) = self.position(uid) else {
            return Ok(true);
        };
        if self.messages[i].flags == flags {
            return Ok(true);
        }
        let from = self.messages[i].path.clone();
        let from_name = from
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let to_name = name::with_flags(&self.messages[i].base, &flags);
        let to = self.dir.join("cur").join(&to_name);
        self.expect(watch::Expect::MovedFrom, &from_name);
        self.expect(watch::Expect::MovedTo, &to_name);
        match fs::rename(&from, &to) {
            Ok(()) => {
                self.highest_modseq += 1;
                let m = &mut self.messages[i];
                m.modseq = self.highest_modseq;
                m.flags = flags;
                m.path = to;
                recs.push(index::Record::Set {
                    uid,
                    modseq: m.modseq,
                    flags: m.flags.clone(),
                    base: m.base.clone(),
                });
                Ok(true)
            }
            Err(e) => {
                self.unexpect(watch::Expect::MovedFrom, &from_name);
                self.unexpect(watch::Expect::MovedTo, &to_name);
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(false)
                } else {
                    Err(io_err(&from)(e))
                }
            }
        }
    }

    /// Remove messages (unlink, then log the expunge). Unknown UIDs are
    /// ignored (already gone).
    pub fn expunge(&mut self, uids: &[u32]) -> Result<()> {
        let _guard = self.lock_index()?;
        let mut ch = Changes::default();
        let mut recs = Vec::new();
        self.catch_up(&mut ch)?;
        let mut missing = false;
        for &uid in uids {
            if !self.unlink(uid)? {
                missing = true;
            }
        }
        if missing {
            // Renamed by someone else meanwhile: find the new names.
            let generation = self.cur_needs_scan().flatten();
            self.scan_cur(generation, &mut ch, &mut recs)?;
            for &uid in uids {
                self.unlink(uid)?;
            }
        }
        fsync_dir(&self.dir.join("cur"))?;
        let gone: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|u| {
                self.position(*u).is_some() && !self.find(*u).is_ok_and(|m| m.path.exists())
            })
            .collect();
        if !gone.is_empty() {
            self.highest_modseq += 1;
            for uid in gone {
                self.remove_uid(uid);
                recs.push(index::Record::Expunged {
                    uid,
                    modseq: self.highest_modseq,
                });
            }
        }
        self.commit(&recs)
    }

    /// Unlink a message's file; `false` when it was not found under the
    /// name we know.
    fn unlink(&mut self, uid: u32) -> Result<bool> {
        let Ok(m) = self.find(uid) else {
            return Ok(true);
        };
        let path = m.path.clone();
        let fname = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        self.expect(watch::Expect::Deleted, &fname);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) => {
                self.unexpect(watch::Expect::Deleted, &fname);
                if e.kind() == io::ErrorKind::NotFound {
                    Ok(false)
                } else {
                    Err(io_err(&path)(e))
                }
            }
        }
    }

    /// Add a message to this mailbox (an IMAP APPEND or COPY): written to
    /// `tmp/`, fsynced, renamed into `cur/` with its flags, numbered and
    /// logged; its header goes into the message cache. Returns its UID.
    pub fn append(
        &mut self,
        message: &[u8],
        flags: &str,
        internal_date: Option<u64>,
    ) -> Result<u32> {
        let t = write_tmp(&self.dir, message, internal_date)?;
        let flags = name::normalize_flags(flags);
        let dest_name = name::with_flags(&t.base, &flags);
        let dest = self.dir.join("cur").join(&dest_name);
        let _guard = self.lock_index()?;
        let mut ch = Changes::default();
        let mut recs = Vec::new();
        self.catch_up(&mut ch)?;
        self.expect(watch::Expect::MovedTo, &dest_name);
        if let Err(e) = fs::rename(&t.tmp, &dest) {
            self.unexpect(watch::Expect::MovedTo, &dest_name);
            let _ = fs::remove_file(&t.tmp);
            return Err(io_err(&dest)(e));
        }
        fsync_dir(&self.dir.join("cur"))?;
        let base = t.base.clone();
        self.found(
            Found {
                base: t.base,
                flags,
                path: dest,
                size: Some(t.size),
                vsize: Some(t.vsize),
            },
            &mut ch,
            &mut recs,
        );
        self.commit(&recs)?;
        let uid = self.by_base.get(&base).copied().unwrap_or(0);
        let (stored, _) = to_stored_form(message);
        let end = header_end(&stored).unwrap_or(stored.len());
        if end <= cache::MAX_CACHED_HEADER {
            self.cache_put(uid, cache::HEADER, &stored[..end]);
        }
        Ok(uid)
    }
}

/// Where a stored-form header ends (after its empty line), if it does.
fn header_end(data: &[u8]) -> Option<usize> {
    if data.starts_with(b"\n") {
        return Some(1);
    }
    data.windows(2).position(|w| w == b"\n\n").map(|p| p + 2)
}

impl Changes {
    fn tidy(&mut self) {
        for v in [&mut self.new, &mut self.expunged, &mut self.flags_changed] {
            v.sort_unstable();
            v.dedup();
        }
    }
}

/// Write a file atomically: temp file, fsync, rename, fsync directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    fsync_dir(dir)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod key_tests {
    #[test]
    fn delivery_order_is_numeric() {
        let mut names = vec![
            "1700000000.M99999P1Q2.h,S=1,W=1",
            "1700000000.M100000P1Q3.h,S=1,W=1",
            "1700000000.M5P1Q1.h,S=1,W=1",
            "1699999999.M999999P1Q0.h",
            "1700000000.M5P1Q10.h",
        ];
        names.sort_by(|a, b| super::delivery_key(a).cmp(&super::delivery_key(b)));
        assert_eq!(
            names,
            [
                "1699999999.M999999P1Q0.h",
                "1700000000.M5P1Q1.h,S=1,W=1",
                "1700000000.M5P1Q10.h",
                "1700000000.M99999P1Q2.h,S=1,W=1",
                "1700000000.M100000P1Q3.h,S=1,W=1",
            ]
        );
    }
}
