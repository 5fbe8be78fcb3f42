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
//! <root>/postern-uidlist                the INBOX index (per folder: in the folder)
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
//! their parent too.
//!
//! ## The index and who locks what
//!
//! `postern-uidlist` maps each message's base name to its UID and MODSEQ,
//! with the mailbox's UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ:
//!
//! ```text
//! postern-uidlist 1 V<uidvalidity> N<uidnext> M<highestmodseq>
//! <uid> <modseq> :<flags at last sync> <base name>
//! ```
//!
//! The file name is the truth for flags (so a flag change by mutt is seen);
//! the index remembers the flags of the last sync only to notice such a
//! change, which bumps the message's MODSEQ. The file is replaced atomically (temp file, fsync,
//! rename). Readers ([`Mailbox::open`], [`Mailbox::sync`]) take an
//! exclusive `flock` on `postern-uidlist.lock` while they read the
//! directories and update the index; lmtp-delivery takes no lock: it only
//! adds files to `new/`, which the next sync picks up and numbers in
//! delivery order. A missing or unreadable index is rebuilt with a new
//! UIDVALIDITY (clients then resynchronise, as the IMAP rules require).
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
//! (modified UTF-7, as Dovecot does by default). Not yet: quotas, cached
//! envelope/bodystructure.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub mod name;
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
    drop(f);
    before_rename(&base);
    let new_dir = dir.join("new");
    let dest = new_dir.join(&base);
    fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    fsync_dir(&new_dir)?;
    Ok(Delivered {
        path: dest,
        size: stored.len() as u64,
        vsize,
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

#[derive(Debug, Clone)]
struct Index {
    uidvalidity: u32,
    uidnext: u32,
    highest_modseq: u64,
    /// base name -> (uid, modseq, flags seen at the last sync)
    entries: HashMap<String, (u32, u64, String)>,
}

impl Index {
    fn fresh() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Self {
            uidvalidity: (now as u32).max(1),
            uidnext: 1,
            highest_modseq: 1,
            entries: HashMap::new(),
        }
    }

    /// Parse; `None` when the file is not a valid index (rebuild).
    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next()?.split(' ').collect();
        if header.len() != 5 || header[0] != INDEX_FILE || header[1] != INDEX_VERSION.to_string() {
            return None;
        }
        let uidvalidity = header[2].strip_prefix('V')?.parse().ok()?;
        let uidnext = header[3].strip_prefix('N')?.parse().ok()?;
        let highest_modseq = header[4].strip_prefix('M')?.parse().ok()?;
        let mut entries = HashMap::new();
        for line in lines {
            let mut f = line.splitn(4, ' ');
            let uid: u32 = f.next()?.parse().ok()?;
            let modseq: u64 = f.next()?.parse().ok()?;
            let flags = f.next()?.strip_prefix(':')?.to_string();
            let base = f.next()?.to_string();
            if uid == 0 || uid >= uidnext {
                return None;
            }
            entries.insert(base, (uid, modseq, flags));
        }
        Some(Self {
            uidvalidity,
            uidnext,
            highest_modseq,
            entries,
        })
    }

    fn render(&self) -> String {
        let mut rows: Vec<(&String, &(u32, u64, String))> = self.entries.iter().collect();
        rows.sort_by_key(|(_, (uid, _, _))| *uid);
        let mut s = format!(
            "{INDEX_FILE} {INDEX_VERSION} V{} N{} M{}\n",
            self.uidvalidity, self.uidnext, self.highest_modseq
        );
        for (base, (uid, modseq, flags)) in rows {
            s.push_str(&format!("{uid} {modseq} :{flags} {base}\n"));
        }
        s
    }
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
#[derive(Debug)]
pub struct Mailbox {
    dir: PathBuf,
    uidvalidity: u32,
    uidnext: u32,
    highest_modseq: u64,
    messages: Vec<Message>,
}

/// A file seen in `cur/` during a sync.
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

impl Mailbox {
    /// Open the mailbox at `dir` (a Maildir root for INBOX, or a folder
    /// directory), creating its directories if needed, and sync it.
    pub fn open(dir: &Path) -> Result<Self> {
        ensure_maildir_dirs(dir)?;
        let mut mb = Self {
            dir: dir.to_path_buf(),
            uidvalidity: 0,
            uidnext: 1,
            highest_modseq: 1,
            messages: Vec::new(),
        };
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

    /// Re-read the directories: number new files (moving them from `new/`
    /// to `cur/`), notice files removed or renamed by other programs, bump
    /// MODSEQs, persist the index. Never opens message files, except to
    /// measure foreign files without `S=`/`W=` in their names.
    pub fn sync(&mut self) -> Result<Changes> {
        let _guard = lock(&self.dir.join(INDEX_LOCK), false)?;
        let index_path = self.dir.join(INDEX_FILE);
        let mut index = match fs::read_to_string(&index_path) {
            Ok(text) => Index::parse(&text).unwrap_or_else(|| {
                tracing::warn!(index = %index_path.display(), "unreadable mailbox index, rebuilding with a new UIDVALIDITY");
                Index::fresh()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index::fresh(),
            Err(e) => return Err(io_err(&index_path)(e)),
        };
        let mut changed = index.uidvalidity != self.uidvalidity;
        // Move new/ to cur/ (with an empty info part), as Dovecot does.
        let new_dir = self.dir.join("new");
        let cur_dir = self.dir.join("cur");
        let mut moved = false;
        for entry in fs::read_dir(&new_dir).map_err(io_err(&new_dir))? {
            let entry = entry.map_err(io_err(&new_dir))?;
            let Some(fname) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !name::is_message(&fname) {
                continue;
            }
            let p = name::parse(&fname);
            let dest = cur_dir.join(name::with_flags(p.base, p.flags));
            match fs::rename(entry.path(), &dest) {
                Ok(()) => moved = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {} // taken by another reader
                Err(e) => return Err(io_err(&dest)(e)),
            }
        }
        if moved {
            fsync_dir(&new_dir)?;
            fsync_dir(&cur_dir)?;
        }
        // Scan cur/.
        let mut found: Vec<Found> = Vec::new();
        for entry in fs::read_dir(&cur_dir).map_err(io_err(&cur_dir))? {
            let entry = entry.map_err(io_err(&cur_dir))?;
            let Some(fname) = entry.file_name().to_str().map(str::to_string) else {
                tracing::warn!(dir = %cur_dir.display(), "skipping a file name that is not UTF-8");
                continue;
            };
            if !name::is_message(&fname) {
                continue;
            }
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
        let mut changes = Changes::default();
        let mut seen = std::collections::HashSet::with_capacity(found.len());
        let mut messages = Vec::with_capacity(found.len());
        for Found {
            base,
            flags,
            path,
            size,
            vsize,
        } in found
        {
            if !seen.insert(base.clone()) {
                tracing::warn!(file = %path.display(), "two files with the same base name; ignoring this one");
                continue;
            }
            let (uid, modseq) = match index.entries.get_mut(&base) {
                Some((uid, modseq, old_flags)) => {
                    if *old_flags != flags {
                        index.highest_modseq += 1;
                        *modseq = index.highest_modseq;
                        *old_flags = flags.clone();
                        changes.flags_changed.push(*uid);
                        changed = true;
                    }
                    (*uid, *modseq)
                }
                None => {
                    let uid = index.uidnext;
                    index.uidnext += 1;
                    index.highest_modseq += 1;
                    let modseq = index.highest_modseq;
                    index
                        .entries
                        .insert(base.clone(), (uid, modseq, flags.clone()));
                    changes.new.push(uid);
                    changed = true;
                    (uid, modseq)
                }
            };
            let size = match size {
                Some(s) => s,
                None => fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            };
            let vsize = match vsize {
                Some(v) => v,
                None => count_vsize(&path).unwrap_or(size),
            };
            let internal_date = name_time(&base).unwrap_or_else(|| {
                fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs())
            });
            messages.push(Message {
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
        let gone: Vec<String> = index
            .entries
            .keys()
            .filter(|b| !seen.contains(b.as_str()))
            .cloned()
            .collect();
        for base in gone {
            if let Some((uid, _, _)) = index.entries.remove(&base) {
                changes.expunged.push(uid);
                changed = true;
            }
        }
        if !changes.expunged.is_empty() {
            index.highest_modseq += 1;
        }
        messages.sort_by_key(|m| m.uid);
        changes.new.sort_unstable();
        changes.expunged.sort_unstable();
        changes.flags_changed.sort_unstable();
        if changed || !index_path.exists() {
            write_atomic(&index_path, index.render().as_bytes())?;
        }
        self.uidvalidity = index.uidvalidity;
        self.uidnext = index.uidnext;
        self.highest_modseq = index.highest_modseq;
        self.messages = messages;
        Ok(changes)
    }

    fn find(&self, uid: u32) -> Result<&Message> {
        self.messages
            .binary_search_by_key(&uid, |m| m.uid)
            .map(|i| &self.messages[i])
            .map_err(|_| StoreError::NoSuchMessage(uid))
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

    /// Replace a message's flags (renames the file) and bump its MODSEQ.
    ///
    /// Another session may have renamed the file (its own flag change) or
    /// expunged it since our last sync: on `NotFound` the index is synced and
    /// the rename retried once under the new name; a message that is gone
    /// is left alone (`Ok`, like a STORE on a message another session
    /// expunged; the expunge is reported at the next sync).
    pub fn set_flags(&mut self, uid: u32, flags: &str) -> Result<()> {
        let flags = name::normalize_flags(flags);
        for attempt in 0..2 {
            let m = match self.find(uid) {
                Ok(m) => m.clone(),
                Err(_) if attempt > 0 => return Ok(()),
                Err(e) => return Err(e),
            };
            if flags == m.flags {
                return Ok(());
            }
            let dest = self.dir.join("cur").join(name::with_flags(&m.base, &flags));
            match fs::rename(&m.path, &dest) {
                Ok(()) => {
                    self.sync()?;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt == 0 => {
                    self.sync()?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err(&m.path)(e)),
            }
        }
        Ok(())
    }

    /// Remove messages (unlink, then update the index). Unknown UIDs are
    /// ignored (already gone).
    pub fn expunge(&mut self, uids: &[u32]) -> Result<()> {
        for &uid in uids {
            if let Ok(m) = self.find(uid) {
                match fs::remove_file(&m.path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&m.path)(e)),
                }
            }
        }
        fsync_dir(&self.dir.join("cur"))?;
        self.sync()?;
        Ok(())
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
