//! The spool: durable message files and per-recipient status logs.
//!
//! Layout under `queue.spool_directory`:
//!
//! * `tmp/` — files being written; never acknowledged, removed on start;
//! * `incoming/ active/ deferred/ hold/ corrupt/` — message files named by
//!   queue id (a message is in exactly one of them);
//! * `status/<id>` — the per-recipient status log of a message (it does not
//!   move when the message file moves between queues).
//!
//! # Message file format, version 1
//!
//! `b"PSTQ"` magic, then records. A record is 1 type byte, a 4-byte
//! big-endian payload length, the payload. Record types, in file order:
//!
//! | type | name | payload |
//! | --- | --- | --- |
//! | `V` | VERSION | 1 byte, `1` |
//! | `A` | ARRIVAL | i64 BE, microseconds since the Unix epoch |
//! | `S` | SENDER | the reverse-path (empty = `<>`) |
//! | `R` | RECIPIENT (one per recipient) | fields: address, notify bits (1 byte: never=1, success=2, failure=4, delay=8), orcpt |
//! | `E` | ENVELOPE params | fields: body (1 byte), smtputf8 (1 byte), ret (1 byte), size hint (u64 BE), envid |
//! | `P` | PROVENANCE | fields: helo, client address, client hostname, auth user, origin, session id |
//! | `H` | HOLD REASON (optional, at most one) | UTF-8 text: why the message was put in `hold/` on arrival (smtpd's check pipeline) |
//! | `C` | CONTENT (zero or more chunks) | message bytes |
//! | `X` | END | u64 BE total content bytes |
//!
//! "fields" = a sequence of (u32 BE length, bytes). Optional records are
//! written only when they carry something, so files written before a record
//! type existed still read (the HOLD REASON record came with the check
//! pipeline; a file without it has no reason). A file whose last record
//! is not a valid END (or whose END total does not match the content, or
//! that has bytes after END) is corrupt: it goes to `corrupt/` and is never
//! delivered.
//!
//! # Status log
//!
//! The message file is immutable once committed. Recipient status lives in
//! `status/<id>`, an append-only text log, one line per update:
//! `<rcpt index> <pending|deferred|delivered|bounced> <attempts> <next attempt unix> <reply>\n`,
//! fsynced after each append (and the `status/` directory fsynced when the
//! log is created). The last complete line for a recipient wins; a torn last
//! line (no `\n`, after a crash) is ignored, so the update it carried is
//! simply redone. Append + fsync is cheaper than rewrite + rename + two
//! fsyncs, and a delivered recipient is recorded before the message can be
//! removed, so a restart never re-delivers it (the window: a crash between the
//! transport's success and the fsync of the log line re-delivers that
//! recipient once — the at-least-once side, as Postfix).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Message queues, as Postfix's.
pub const QUEUES: [&str; 5] = ["incoming", "active", "deferred", "hold", "corrupt"];

const MAGIC: &[u8; 4] = b"PSTQ";
const FORMAT_VERSION: u8 = 1;
/// Bound on one non-content record, so a damaged length cannot make us
/// allocate gigabytes (addresses are <= 256 octets, RFC 5321 4.5.3.1.3).
const MAX_RECORD: usize = 64 * 1024;
/// Bound on one content chunk record.
const MAX_CHUNK: usize = 1 << 20;
/// Bound on a stored hold reason (bytes): the joined reasons of the checks
/// that asked for the hold; longer ones are cut at a character boundary.
pub const MAX_HOLD_REASON: usize = 1000;

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("invalid queue id {0:?}")]
    BadId(String),
    #[error("queue id {0} not found")]
    NotFound(String),
    #[error("corrupt queue file {id}: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("spool I/O error: {0}")]
    Io(#[from] io::Error),
}

// ---------------------------------------------------------------------------
// Queue ids

/// Length of a queue id: 11 base-32 digits of microseconds since the epoch
/// (good until the year 3000+) and 5 of a per-process sequence number.
pub const ID_LEN: usize = 16;
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHIJKLMNOPQRSTUV";

/// A validated queue id: `[0-9A-V]{16}`, sorts by arrival time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(String);

static SEQ: AtomicU64 = AtomicU64::new(0);

impl QueueId {
    /// A new id for now.
    pub fn generate() -> Self {
        let micros = now_micros() as u64;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut s = String::with_capacity(ID_LEN);
        push_base32(&mut s, micros, 11);
        push_base32(&mut s, seq, 5);
        Self(s)
    }

    /// Validate an id from the outside before any path is built from it.
    pub fn parse(s: &str) -> Result<Self, SpoolError> {
        if s.len() == ID_LEN && s.bytes().all(|b| ALPHABET.contains(&b)) {
            Ok(Self(s.to_string()))
        } else {
            Err(SpoolError::BadId(s.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for QueueId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn push_base32(s: &mut String, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        let d = ((v >> (5 * i)) & 31) as usize;
        s.push(ALPHABET[d] as char);
    }
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    now_micros() / 1_000_000
}

// ---------------------------------------------------------------------------
// Envelope

/// A recipient and its DSN parameters (RFC 3461).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    /// NOTIFY bits: never=1, success=2, failure=4, delay=8; 0 = not given.
    pub notify: u8,
    pub orcpt: String,
}

/// The envelope of a queued message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub arrival_micros: i64,
    pub sender: String,
    pub recipients: Vec<Recipient>,
    /// 0 = 7BIT, 1 = 8BITMIME, 2 = BINARYMIME.
    pub body: u8,
    pub smtputf8: bool,
    /// 0 = unspecified, 1 = FULL, 2 = HDRS.
    pub ret: u8,
    pub envid: String,
    pub size_hint: u64,
    pub helo: String,
    pub client_address: String,
    pub client_hostname: String,
    pub auth_user: String,
    pub origin: String,
    pub session_id: String,
    /// Why the message was put in `hold/` when it arrived (empty = it was
    /// not). Kept after a release, as history; where the message lands is
    /// the caller's choice ([`Landing`]), not derived from this field, so an
    /// alias expansion copying the envelope is not held again.
    pub hold_reason: String,
}

/// Make a hold reason safe to store and show: control characters become
/// spaces, and it is cut to [`MAX_HOLD_REASON`] bytes at a character
/// boundary.
pub fn clean_hold_reason(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len().min(MAX_HOLD_REASON));
    for c in reason.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_HOLD_REASON {
            break;
        }
        out.push(c);
    }
    out.trim().to_string()
}

/// Where a newly committed message lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landing {
    /// `incoming/`: delivered at once.
    Incoming,
    /// `hold/`: kept for review until `mailctl queue release`; never passes
    /// through `incoming/` or `active/`.
    Hold,
}

impl Landing {
    pub fn queue(self) -> &'static str {
        match self {
            Landing::Incoming => "incoming",
            Landing::Hold => "hold",
        }
    }
}

fn put_record(out: &mut Vec<u8>, t: u8, payload: &[u8]) {
    out.push(t);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

fn fields(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(&(p.len() as u32).to_be_bytes());
        v.extend_from_slice(p);
    }
    v
}

fn parse_fields(mut p: &[u8], n: usize) -> Option<Vec<&[u8]>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if p.len() < 4 {
            return None;
        }
        let len = u32::from_be_bytes(p[..4].try_into().ok()?) as usize;
        p = &p[4..];
        if p.len() < len {
            return None;
        }
        out.push(&p[..len]);
        p = &p[len..];
    }
    p.is_empty().then_some(out)
}

/// Encode a whole message file (envelope, content, END).
pub fn encode(env: &Envelope, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 512);
    out.extend_from_slice(MAGIC);
    put_record(&mut out, b'V', &[FORMAT_VERSION]);
    put_record(&mut out, b'A', &env.arrival_micros.to_be_bytes());
    put_record(&mut out, b'S', env.sender.as_bytes());
    for r in &env.recipients {
        put_record(
            &mut out,
            b'R',
            &fields(&[r.address.as_bytes(), &[r.notify], r.orcpt.as_bytes()]),
        );
    }
    put_record(
        &mut out,
        b'E',
        &fields(&[
            &[env.body],
            &[env.smtputf8 as u8],
            &[env.ret],
            &env.size_hint.to_be_bytes(),
            env.envid.as_bytes(),
        ]),
    );
    put_record(
        &mut out,
        b'P',
        &fields(&[
            env.helo.as_bytes(),
            env.client_address.as_bytes(),
            env.client_hostname.as_bytes(),
            env.auth_user.as_bytes(),
            env.origin.as_bytes(),
            env.session_id.as_bytes(),
        ]),
    );
    if !env.hold_reason.is_empty() {
        put_record(&mut out, b'H', env.hold_reason.as_bytes());
    }
    for chunk in content.chunks(MAX_CHUNK) {
        put_record(&mut out, b'C', chunk);
    }
    put_record(&mut out, b'X', &(content.len() as u64).to_be_bytes());
    out
}

fn string(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "field is not UTF-8".to_string())
}

/// Decode a message file; `with_content` = false skips copying the body.
/// Any deviation from the format (including a missing END) is an error.
pub fn decode(data: &[u8], with_content: bool) -> Result<(Envelope, Vec<u8>, u64), String> {
    let mut p = data
        .strip_prefix(MAGIC.as_slice())
        .ok_or("bad magic (not a postern queue file)")?;
    let mut env = Envelope::default();
    let mut content = Vec::new();
    let mut total: u64 = 0;
    let mut seen_version = false;
    loop {
        if p.len() < 5 {
            return Err("truncated: no END record".into());
        }
        let t = p[0];
        let len = u32::from_be_bytes(p[1..5].try_into().unwrap()) as usize;
        let limit = if t == b'C' { MAX_CHUNK } else { MAX_RECORD };
        if len > limit {
            return Err(format!("record {:?} too long ({len})", t as char));
        }
        if p.len() < 5 + len {
            return Err("truncated record".into());
        }
        let payload = &p[5..5 + len];
        p = &p[5 + len..];
        if !seen_version && t != b'V' {
            return Err("first record is not VERSION".into());
        }
        let bad = |what: &str| format!("malformed {what} record");
        match t {
            b'V' => {
                if payload != [FORMAT_VERSION] {
                    return Err("unsupported format version".into());
                }
                seen_version = true;
            }
            b'A' => {
                env.arrival_micros =
                    i64::from_be_bytes(payload.try_into().map_err(|_| bad("ARRIVAL"))?)
            }
            b'S' => env.sender = string(payload)?,
            b'R' => {
                let f = parse_fields(payload, 3).ok_or_else(|| bad("RECIPIENT"))?;
                if f[1].len() != 1 {
                    return Err(bad("RECIPIENT"));
                }
                env.recipients.push(Recipient {
                    address: string(f[0])?,
                    notify: f[1][0],
                    orcpt: string(f[2])?,
                });
            }
            b'E' => {
                let f = parse_fields(payload, 5).ok_or_else(|| bad("ENVELOPE"))?;
                if f[0].len() != 1 || f[1].len() != 1 || f[2].len() != 1 {
                    return Err(bad("ENVELOPE"));
                }
                env.body = f[0][0];
                env.smtputf8 = f[1][0] != 0;
                env.ret = f[2][0];
                env.size_hint = u64::from_be_bytes(f[3].try_into().map_err(|_| bad("ENVELOPE"))?);
                env.envid = string(f[4])?;
            }
            b'P' => {
                let f = parse_fields(payload, 6).ok_or_else(|| bad("PROVENANCE"))?;
                env.helo = string(f[0])?;
                env.client_address = string(f[1])?;
                env.client_hostname = string(f[2])?;
                env.auth_user = string(f[3])?;
                env.origin = string(f[4])?;
                env.session_id = string(f[5])?;
            }
            b'H' => {
                if !env.hold_reason.is_empty() || payload.is_empty() {
                    return Err(bad("HOLD REASON"));
                }
                env.hold_reason = string(payload)?;
            }
            b'C' => {
                total += len as u64;
                if with_content {
                    content.extend_from_slice(payload);
                }
            }
            b'X' => {
                let n = u64::from_be_bytes(payload.try_into().map_err(|_| bad("END"))?);
                if n != total {
                    return Err(format!("END says {n} content bytes, file has {total}"));
                }
                if !p.is_empty() {
                    return Err("data after END".into());
                }
                if env.recipients.is_empty() {
                    return Err("no recipients".into());
                }
                return Ok((env, content, total));
            }
            other => return Err(format!("unknown record type {other:#04x}")),
        }
    }
}

// ---------------------------------------------------------------------------
// Recipient status

/// State of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptState {
    Pending,
    Deferred,
    Delivered,
    Bounced,
}

impl RcptState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Deferred => "deferred",
            Self::Delivered => "delivered",
            Self::Bounced => "bounced",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "deferred" => Self::Deferred,
            "delivered" => Self::Delivered,
            "bounced" => Self::Bounced,
            _ => return None,
        })
    }
    /// Delivered or bounced: never tried again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Bounced)
    }
}

/// Persisted status of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptStatus {
    pub state: RcptState,
    pub attempts: u32,
    pub next_attempt_unix: i64,
    pub last_reply: String,
}

impl Default for RcptStatus {
    fn default() -> Self {
        Self {
            state: RcptState::Pending,
            attempts: 0,
            next_attempt_unix: 0,
            last_reply: String::new(),
        }
    }
}

// ---------------------------------------------------------------------------
// The spool

/// A message read back from the spool.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: QueueId,
    pub queue: &'static str,
    pub envelope: Envelope,
    pub size: u64,
    pub status: Vec<RcptStatus>,
}

/// The spool directory. All calls are blocking (std::fs); call them from
/// `spawn_blocking` in async code.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Spool {
    /// Open (creating the directories as needed).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, SpoolError> {
        let root = root.into();
        for d in QUEUES.iter().chain(&["tmp", "status"]) {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, queue: &str, id: &QueueId) -> PathBuf {
        self.root.join(queue).join(id.as_str())
    }

    fn status_path(&self, id: &QueueId) -> PathBuf {
        self.root.join("status").join(id.as_str())
    }

    /// Durably store a message in `incoming/`: write `tmp/<id>`, fsync it,
    /// rename into `incoming/`, fsync `incoming/`. Only then is the id
    /// returned. On any error nothing is left behind.
    pub fn enqueue(&self, env: &Envelope, content: &[u8]) -> Result<QueueId, SpoolError> {
        self.enqueue_batch(&[(env, content)])
            .pop()
            .expect("one result per message")
    }

    /// Group commit: store several messages with one `incoming/` directory
    /// fsync. Each file is written to `tmp/` and fsynced, then all are
    /// renamed into `incoming/`, then the directory is fsynced once. One
    /// result per message, in order; an id is returned only for a message
    /// whose file and directory entry are both on disk.
    pub fn enqueue_batch(&self, msgs: &[(&Envelope, &[u8])]) -> Vec<Result<QueueId, SpoolError>> {
        let msgs: Vec<(&Envelope, &[u8], Landing)> = msgs
            .iter()
            .map(|(e, c)| (*e, *c, Landing::Incoming))
            .collect();
        self.enqueue_batch_to(&msgs)
    }

    /// Store a message durably where `landing` says (`hold/` for a message
    /// a check put on hold), as [`Spool::enqueue`].
    pub fn enqueue_to(
        &self,
        env: &Envelope,
        content: &[u8],
        landing: Landing,
    ) -> Result<QueueId, SpoolError> {
        self.enqueue_batch_to(&[(env, content, landing)])
            .pop()
            .expect("one result per message")
    }

    /// [`Spool::enqueue_batch`] with a landing queue per message: each
    /// queue directory that received a file is fsynced once.
    pub fn enqueue_batch_to(
        &self,
        msgs: &[(&Envelope, &[u8], Landing)],
    ) -> Vec<Result<QueueId, SpoolError>> {
        // Each message is written and fsynced on its own thread: fsyncs
        // issued together are merged by the file system's journal (one
        // commit for many files), where one after the other each would
        // wait for its own. Then every file is renamed into incoming/ and
        // the directory fsynced once for the batch.
        let write_one =
            |(env, content, landing): &(&Envelope, &[u8], Landing)| -> Result<QueueId, SpoolError> {
                let id = QueueId::generate();
                let tmp = self.root.join("tmp").join(id.as_str());
                let r = (|| -> io::Result<()> {
                    let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
                    f.write_all(&encode(env, content))?;
                    f.sync_all()?;
                    fs::rename(&tmp, self.path(landing.queue(), &id))
                })();
                match r {
                    Ok(()) => Ok(id),
                    Err(e) => {
                        let _ = fs::remove_file(&tmp);
                        Err(e.into())
                    }
                }
            };
        let mut results: Vec<Result<QueueId, SpoolError>> = if msgs.len() == 1 {
            vec![write_one(&msgs[0])]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = msgs
                    .chunks(msgs.len().div_ceil(MAX_WRITER_THREADS))
                    .map(|chunk| {
                        let h =
                            scope.spawn(move || chunk.iter().map(write_one).collect::<Vec<_>>());
                        (chunk.len(), h)
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|(n, h)| {
                        h.join().unwrap_or_else(|_| {
                            (0..n)
                                .map(|_| {
                                    Err(SpoolError::Io(io::Error::other("spool writer panicked")))
                                })
                                .collect()
                        })
                    })
                    .collect()
            })
        };
        for landing in [Landing::Incoming, Landing::Hold] {
            let landed = |i: usize| msgs[i].2 == landing;
            if !results
                .iter()
                .enumerate()
                .any(|(i, r)| r.is_ok() && landed(i))
            {
                continue;
            }
            if let Err(e) = fsync_dir(&self.root.join(landing.queue())) {
                // Not durable: none of them may be acknowledged. Remove them
                // (best effort) so they are not delivered unacknowledged.
                for (i, r) in results.iter_mut().enumerate() {
                    if let Ok(id) = r
                        && landed(i)
                    {
                        let _ = fs::remove_file(self.path(landing.queue(), id));
                        *r = Err(io::Error::new(e.kind(), e.to_string()).into());
                    }
                }
            }
        }
        results
    }

    /// Which queue holds `id`, if any.
    pub fn locate(&self, id: &QueueId) -> Option<&'static str> {
        QUEUES.into_iter().find(|q| self.path(q, id).exists())
    }

    /// Move a message between queues (rename + fsync of both directories).
    pub fn move_to(&self, id: &QueueId, from: &str, to: &str) -> Result<(), SpoolError> {
        if from == to {
            return Ok(());
        }
        fs::rename(self.path(from, id), self.path(to, id)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                SpoolError::NotFound(id.to_string())
            } else {
                e.into()
            }
        })?;
        fsync_dir(&self.root.join(to))?;
        fsync_dir(&self.root.join(from))?;
        Ok(())
    }

    /// Ids in a queue, oldest first. Names that are not valid ids are skipped.
    pub fn list(&self, queue: &str) -> Result<Vec<QueueId>, SpoolError> {
        let mut ids: Vec<QueueId> = fs::read_dir(self.root.join(queue))?
            .filter_map(|e| e.ok())
            .filter_map(|e| QueueId::parse(e.file_name().to_str()?).ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Read and validate a message file.
    pub fn read_raw(
        &self,
        queue: &str,
        id: &QueueId,
        with_content: bool,
    ) -> Result<(Envelope, Vec<u8>, u64), SpoolError> {
        let mut data = Vec::new();
        File::open(self.path(queue, id))
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    SpoolError::NotFound(id.to_string())
                } else {
                    e.into()
                }
            })?
            .read_to_end(&mut data)?;
        decode(&data, with_content).map_err(|reason| SpoolError::Corrupt {
            id: id.to_string(),
            reason,
        })
    }

    /// Envelope and recipient status of a message, wherever it is.
    pub fn read(&self, id: &QueueId) -> Result<Message, SpoolError> {
        let queue = self
            .locate(id)
            .ok_or_else(|| SpoolError::NotFound(id.to_string()))?;
        let (envelope, _, size) = self.read_raw(queue, id, false)?;
        let status = self.load_status(id, envelope.recipients.len())?;
        Ok(Message {
            id: id.clone(),
            queue,
            envelope,
            size,
            status,
        })
    }

    /// The message text (read whole; bounded by `message_size_limit`).
    pub fn read_content(&self, id: &QueueId) -> Result<Vec<u8>, SpoolError> {
        let queue = self
            .locate(id)
            .ok_or_else(|| SpoolError::NotFound(id.to_string()))?;
        Ok(self.read_raw(queue, id, true)?.1)
    }

    /// Remove a message and its status log.
    pub fn delete(&self, id: &QueueId) -> Result<(), SpoolError> {
        let queue = self
            .locate(id)
            .ok_or_else(|| SpoolError::NotFound(id.to_string()))?;
        fs::remove_file(self.path(queue, id))?;
        fsync_dir(&self.root.join(queue))?;
        match fs::remove_file(self.status_path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Current status of each of `n` recipients (pending when never updated).
    pub fn load_status(&self, id: &QueueId, n: usize) -> Result<Vec<RcptStatus>, SpoolError> {
        let mut out = vec![RcptStatus::default(); n];
        let text = match fs::read(self.status_path(id)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        // Only complete lines count: a torn tail is an update never made.
        let complete = match text.iter().rposition(|&b| b == b'\n') {
            Some(end) => &text[..=end],
            None => return Ok(out),
        };
        for line in String::from_utf8_lossy(complete).lines() {
            let mut it = line.splitn(5, ' ');
            let (Some(i), Some(st), Some(att), Some(next)) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                continue;
            };
            let reply = it.next().unwrap_or("");
            let (Ok(i), Some(state), Ok(attempts), Ok(next)) = (
                i.parse::<usize>(),
                RcptState::parse(st),
                att.parse::<u32>(),
                next.parse::<i64>(),
            ) else {
                continue;
            };
            if let Some(slot) = out.get_mut(i) {
                *slot = RcptStatus {
                    state,
                    attempts,
                    next_attempt_unix: next,
                    last_reply: reply.to_string(),
                };
            }
        }
        Ok(out)
    }

    /// Append status updates `(recipient index, status)` and fsync.
    pub fn record_status(
        &self,
        id: &QueueId,
        updates: &[(usize, RcptStatus)],
    ) -> Result<(), SpoolError> {
        if updates.is_empty() {
            return Ok(());
        }
        let path = self.status_path(id);
        let created = !path.exists();
        let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut buf = String::new();
        for (i, s) in updates {
            let reply: String = s
                .last_reply
                .chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
                .collect();
            buf.push_str(&format!(
                "{i} {} {} {} {reply}\n",
                s.state.as_str(),
                s.attempts,
                s.next_attempt_unix
            ));
        }
        f.write_all(buf.as_bytes())?;
        f.sync_all()?;
        if created {
            fsync_dir(&self.root.join("status"))?;
        }
        Ok(())
    }

    /// Recovery on start: remove `tmp/` leftovers (never acknowledged), move
    /// everything in `active/` back to `incoming/`, and move any file in
    /// `incoming/` that does not validate (no END, ...) to `corrupt/`.
    /// Returns the ids ready for delivery.
    pub fn recover(&self) -> Result<Vec<QueueId>, SpoolError> {
        for e in fs::read_dir(self.root.join("tmp"))?.flatten() {
            tracing::warn!(file = ?e.file_name(), "removing unacknowledged temporary file");
            fs::remove_file(e.path())?;
        }
        for id in self.list("active")? {
            self.move_to(&id, "active", "incoming")?;
        }
        let mut ready = Vec::new();
        for id in self.list("incoming")? {
            match self.read_raw("incoming", &id, true) {
                Ok(_) => ready.push(id),
                Err(SpoolError::Corrupt { reason, .. }) => {
                    tracing::error!(queue_id = %id, %reason, "corrupt queue file moved to corrupt/");
                    self.move_to(&id, "incoming", "corrupt")?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(ready)
    }
}

// ---------------------------------------------------------------------------
// Group commit

/// Most messages committed with one directory fsync.
const MAX_BATCH: usize = 64;
/// Threads writing and fsyncing one batch's files at the same time.
const MAX_WRITER_THREADS: usize = 16;

type Job = (
    Envelope,
    Vec<u8>,
    Landing,
    tokio::sync::oneshot::Sender<Result<QueueId, SpoolError>>,
);

/// A writer thread that batches concurrent enqueues (group commit): it
/// takes every request waiting when it becomes free (up to 64), stores them
/// with [`Spool::enqueue_batch`] and answers each. The thread ends when the
/// last `Committer` clone is dropped.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: std::sync::mpsc::Sender<Job>,
}

impl Committer {
    pub fn start(spool: Spool) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => batch.push(j),
                            Err(_) => break,
                        }
                    }
                    let msgs: Vec<(&Envelope, &[u8], Landing)> = batch
                        .iter()
                        .map(|(e, c, l, _)| (e, c.as_slice(), *l))
                        .collect();
                    let results = spool.enqueue_batch_to(&msgs);
                    tracing::debug!(batch = batch.len(), "group commit");
                    for ((_, _, _, reply), r) in batch.into_iter().zip(results) {
                        if let Err(Ok(id)) = reply.send(r) {
                            // The caller went away after the commit: the
                            // message is queued but nobody got its id.
                            tracing::warn!(queue_id = %id, "queued, but the client went away before the reply");
                        }
                    }
                }
            })
            .expect("spawn spool writer thread");
        Self { tx }
    }

    /// Store a message durably; the id comes back after the fsyncs.
    pub async fn enqueue(&self, env: Envelope, content: Vec<u8>) -> Result<QueueId, SpoolError> {
        self.enqueue_to(env, content, Landing::Incoming).await
    }

    /// Store a message durably in the queue `landing` says.
    pub async fn enqueue_to(
        &self,
        env: Envelope,
        content: Vec<u8>,
        landing: Landing,
    ) -> Result<QueueId, SpoolError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let gone = || SpoolError::Io(io::Error::other("spool writer thread is gone"));
        self.tx
            .send((env, content, landing, tx))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Envelope {
        Envelope {
            arrival_micros: 1_700_000_000_000_000,
            sender: "a@x.test".into(),
            recipients: vec![Recipient {
                address: "b@x.test".into(),
                notify: 0,
                orcpt: String::new(),
            }],
            session_id: "S1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn hold_reason_record_round_trips_and_is_optional() {
        let mut e = env();
        // Without a reason no HOLD REASON record is written: the file is
        // byte for byte what the format wrote before the record existed.
        let plain = encode(&e, b"m\r\n");
        assert!(
            !plain
                .windows(5)
                .any(|w| w[0] == b'H' && w[1..] == [0, 0, 0, 0])
        );
        let (d, _, _) = decode(&plain, true).unwrap();
        assert_eq!(d.hold_reason, "");

        e.hold_reason = "audit: rule secret matched in body".into();
        let held = encode(&e, b"m\r\n");
        assert_eq!(held.len(), plain.len() + 5 + e.hold_reason.len());
        let (d, c, _) = decode(&held, true).unwrap();
        assert_eq!(d, e);
        assert_eq!(c, b"m\r\n");
    }

    /// A version-1 file as written before the HOLD REASON record existed
    /// (built record by record here, not with `encode`) still reads.
    #[test]
    fn a_file_from_before_the_hold_record_reads() {
        let mut f = MAGIC.to_vec();
        put_record(&mut f, b'V', &[1]);
        put_record(&mut f, b'A', &7i64.to_be_bytes());
        put_record(&mut f, b'S', b"a@x.test");
        put_record(&mut f, b'R', &fields(&[b"b@x.test", &[0], b""]));
        put_record(
            &mut f,
            b'E',
            &fields(&[&[0], &[0], &[0], &0u64.to_be_bytes(), b""]),
        );
        put_record(
            &mut f,
            b'P',
            &fields(&[b"h", b"192.0.2.1", b"", b"", b"smtpd", b"S1"]),
        );
        put_record(&mut f, b'C', b"m\r\n");
        put_record(&mut f, b'X', &3u64.to_be_bytes());
        let (d, c, n) = decode(&f, true).unwrap();
        assert_eq!(
            (d.sender.as_str(), d.hold_reason.as_str(), n),
            ("a@x.test", "", 3)
        );
        assert_eq!(c, b"m\r\n");
    }

    #[test]
    fn duplicate_or_empty_hold_records_are_corrupt() {
        let mut e = env();
        e.hold_reason = "r".into();
        let held = encode(&e, b"m\r\n");
        // Insert a second H record right after the first.
        let at = held.windows(6).position(|w| w == b"H\0\0\0\x01r").unwrap() + 6;
        let mut twice = held[..at].to_vec();
        put_record(&mut twice, b'H', b"again");
        twice.extend_from_slice(&held[at..]);
        assert!(decode(&twice, false).unwrap_err().contains("HOLD REASON"));
        let mut empty = held[..at].to_vec();
        empty.truncate(at - 6);
        put_record(&mut empty, b'H', b"");
        empty.extend_from_slice(&held[at..]);
        assert!(decode(&empty, false).is_err());
    }

    #[test]
    fn enqueue_to_hold_never_touches_incoming() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path()).unwrap();
        let mut e = env();
        e.hold_reason = "audit: r".into();
        let held = s.enqueue_to(&e, b"m\r\n", Landing::Hold).unwrap();
        let plain = s.enqueue(&env(), b"m\r\n").unwrap();
        assert_eq!(s.locate(&held), Some("hold"));
        assert_eq!(s.locate(&plain), Some("incoming"));
        assert_eq!(s.list("incoming").unwrap(), vec![plain]);
        assert_eq!(s.read(&held).unwrap().envelope.hold_reason, "audit: r");
        // Recovery leaves hold/ alone.
        assert!(!s.recover().unwrap().contains(&held));
        assert_eq!(s.locate(&held), Some("hold"));
        // A batch mixing both lands each where asked.
        let r = s.enqueue_batch_to(&[
            (&e, b"1\r\n", Landing::Hold),
            (&env(), b"2\r\n", Landing::Incoming),
        ]);
        assert_eq!(s.locate(r[0].as_ref().unwrap()), Some("hold"));
        assert_eq!(s.locate(r[1].as_ref().unwrap()), Some("incoming"));
    }
}
