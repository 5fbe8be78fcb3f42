//! The message cache `postern-cache`: data derived from a message file
//! (its header, and whatever a reader stores under a field name, such as
//! imapd's ENVELOPE and BODYSTRUCTURE) kept beside the index so it is not
//! read or computed again.
//!
//! ```text
//! <field> <length> <checksum> <base name>\n<length bytes>\n
//! ```
//!
//! Records are appended with one `write` each (`O_APPEND`), so processes
//! sharing a mailbox do not interleave them; a record cut short by a crash
//! or with a wrong checksum (FNV-1a over field, base name and data) ends
//! the file for readers. A message file never changes once delivered and
//! its base name is never reused, so an entry stays valid for the
//! message's life. Nothing here is fsynced: a lost record is only
//! computed again. When the file is loaded and more than half of it
//! belongs to messages that are gone (and it is over [`COMPACT_MIN`]), it
//! is rewritten without them.
//!
//! One in-memory copy per mailbox directory is shared by every
//! [`Mailbox`](crate::Mailbox) of the process.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::index::fnv32;

/// The cache file's name in a mailbox directory.
pub const CACHE_FILE: &str = "postern-cache";
/// Headers larger than this are not cached (read from the file each time).
pub const MAX_CACHED_HEADER: usize = 64 * 1024;
/// Bound on one cached field's data.
pub const MAX_FIELD: usize = 256 * 1024;
/// Cache files smaller than this are never compacted.
pub const COMPACT_MIN: u64 = 1024 * 1024;
/// Field name of a message's header (stored form, LF line ends, up to and
/// including the empty line).
pub const HEADER: &str = "header";

type Fields = HashMap<String, Arc<[u8]>>;

pub(crate) struct Inner {
    path: PathBuf,
    loaded: bool,
    entries: HashMap<String, Fields>,
    file: Option<File>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("path", &self.path)
            .field("loaded", &self.loaded)
            .field("messages", &self.entries.len())
            .finish()
    }
}

/// The process's shared cache of one mailbox directory.
pub(crate) type Shared = Arc<Mutex<Inner>>;

/// The shared cache of `dir` (loaded on first use).
pub(crate) fn open(dir: &Path) -> Shared {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Weak<Mutex<Inner>>>>> = OnceLock::new();
    let mut reg = REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(c) = reg.get(dir).and_then(Weak::upgrade) {
        return c;
    }
    reg.retain(|_, w| w.strong_count() > 0);
    let c = Arc::new(Mutex::new(Inner {
        path: dir.join(CACHE_FILE),
        loaded: false,
        entries: HashMap::new(),
        file: None,
    }));
    reg.insert(dir.to_path_buf(), Arc::downgrade(&c));
    c
}

fn encode(field: &str, base: &str, data: &[u8]) -> Vec<u8> {
    let mut sum_input = Vec::with_capacity(field.len() + base.len() + data.len() + 2);
    sum_input.extend_from_slice(field.as_bytes());
    sum_input.push(0);
    sum_input.extend_from_slice(base.as_bytes());
    sum_input.push(0);
    sum_input.extend_from_slice(data);
    let mut out = format!("{field} {} {:08x} {base}\n", data.len(), fnv32(&sum_input)).into_bytes();
    out.extend_from_slice(data);
    out.push(b'\n');
    out
}

/// Decode records; returns (field, base, data) triples and the bytes used.
fn decode(buf: &[u8]) -> (Vec<(String, String, Vec<u8>)>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(&buf[pos..pos + nl]) else {
            break;
        };
        let mut f = line.splitn(4, ' ');
        let (Some(field), Some(len), Some(sum), Some(base)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            break;
        };
        let (Ok(len), Ok(sum)) = (len.parse::<usize>(), u32::from_str_radix(sum, 16)) else {
            break;
        };
        let start = pos + nl + 1;
        let Some(end) = start.checked_add(len) else {
            break;
        };
        if len > MAX_FIELD.max(MAX_CACHED_HEADER) || buf.len() <= end || buf[end] != b'\n' {
            break;
        }
        let data = &buf[start..end];
        let mut sum_input = Vec::with_capacity(field.len() + base.len() + len + 2);
        sum_input.extend_from_slice(field.as_bytes());
        sum_input.push(0);
        sum_input.extend_from_slice(base.as_bytes());
        sum_input.push(0);
        sum_input.extend_from_slice(data);
        if fnv32(&sum_input) != sum {
            break;
        }
        out.push((field.to_string(), base.to_string(), data.to_vec()));
        pos = end + 1;
    }
    (out, pos)
}

impl Inner {
    /// Whether [`Inner::load`] still has to read the file.
    pub(crate) fn needs_load(&self) -> bool {
        !self.loaded
    }

    /// Load the file once; `live` are the base names still in the mailbox.
    pub(crate) fn load(&mut self, live: &HashSet<&str>) {
        if self.loaded {
            return;
        }
        self.loaded = true;
        let mut buf = Vec::new();
        match File::open(&self.path).and_then(|mut f| f.read_to_end(&mut buf)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot read the message cache");
                return;
            }
        }
        let (records, used) = decode(&buf);
        let mut dead = (buf.len() - used) as u64;
        for (field, base, data) in records {
            if live.contains(base.as_str()) {
                self.entries
                    .entry(base)
                    .or_default()
                    .insert(field, Arc::from(data));
            } else {
                dead += (field.len() + base.len() + data.len() + 20) as u64;
            }
        }
        if buf.len() as u64 >= COMPACT_MIN && dead * 2 > buf.len() as u64 {
            self.rewrite();
        } else if used < buf.len() {
            // A torn tail: cut it so that appended records are readable.
            if let Ok(f) = OpenOptions::new().write(true).open(&self.path) {
                let _ = f.set_len(used as u64);
            }
        }
    }

    fn rewrite(&mut self) {
        let mut out = Vec::new();
        for (base, fields) in &self.entries {
            for (field, data) in fields {
                out.extend_from_slice(&encode(field, base, data));
            }
        }
        self.file = None;
        if let Err(e) = crate::write_atomic(&self.path, &out) {
            tracing::warn!(error = %e, "cannot compact the message cache");
        }
    }

    pub(crate) fn get(&self, base: &str, field: &str) -> Option<Arc<[u8]>> {
        self.entries.get(base)?.get(field).cloned()
    }

    /// Remember and append a field (best effort: a write error is logged).
    pub(crate) fn put(&mut self, base: &str, field: &str, data: &[u8]) -> Arc<[u8]> {
        let data: Arc<[u8]> = Arc::from(data);
        if field.is_empty()
            || field.contains([' ', '\n'])
            || base.contains('\n')
            || data.len() > MAX_FIELD.max(MAX_CACHED_HEADER)
        {
            return data;
        }
        self.entries
            .entry(base.to_string())
            .or_default()
            .insert(field.to_string(), data.clone());
        if self.file.is_none() {
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| tracing::warn!(file = %self.path.display(), error = %e, "cannot open the message cache"))
                .ok();
        }
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.write_all(&encode(field, base, &data))
        {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot append to the message cache");
            self.file = None;
        }
        data
    }

    /// Forget the entries of expunged messages.
    pub(crate) fn forget(&mut self, base: &str) {
        self.entries.remove(base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_torn_tails_end_the_file() {
        let mut buf = encode("header", "1.M2P3Q4.h,S=5,W=6", b"Subject: x\n\n");
        let first = buf.len();
        buf.extend(encode("envelope", "1.M2P3Q4.h,S=5,W=6", b"(NIL \"x\")"));
        let (r, used) = decode(&buf);
        assert_eq!(r.len(), 2);
        assert_eq!(used, buf.len());
        assert_eq!(r[1].2, b"(NIL \"x\")");
        for cut in first..buf.len() {
            let (r, used) = decode(&buf[..cut]);
            assert_eq!((r.len(), used), (1, first), "cut at {cut}");
        }
        let mut bad = buf.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0x20;
        assert_eq!(decode(&bad).0.len(), 1);
    }
}
