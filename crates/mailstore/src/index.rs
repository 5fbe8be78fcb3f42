//! The index files of a mailbox: the snapshot `postern-uidlist` and the
//! append-only change log `postern-uidlist.log` beside it.
//!
//! ```text
//! postern-uidlist 1 V<uidvalidity> N<uidnext> M<highestmodseq>
//! <uid> <modseq> :<flags> <base name>
//!
//! postern-uidlist.log 1 V<uidvalidity> I<inode of the snapshot it follows>
//! <checksum> + <uid> <modseq> :<flags> <base name>     a message and its flags
//! <checksum> - <uid> <modseq>                          a message expunged
//! ```
//!
//! The state is the snapshot with the log's records applied in order; each
//! record carries absolute values, so applying it twice changes nothing.
//! The checksum (FNV-1a, 8 hex digits) covers the rest of the line: a line
//! that is cut short or does not match ends the log there (a torn tail
//! after a crash), and the next writer truncates the file to the last good
//! record before appending. A log whose `I` is not the inode of the current
//! snapshot belongs to an older snapshot and is ignored; when the log has
//! grown past [`COMPACT_AT`] the snapshot is rewritten (temp file, fsync,
//! rename) and a new log started for it.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{INDEX_FILE, INDEX_VERSION};

/// The change log's file name.
pub const LOG_FILE: &str = "postern-uidlist.log";
/// Log size (bytes) past which the snapshot is rewritten, when the log is
/// also larger than the snapshot.
pub const COMPACT_AT: u64 = 256 * 1024;

/// The snapshot: what `postern-uidlist` holds.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    /// base name -> (uid, modseq, flags seen at the last sync)
    pub entries: HashMap<String, (u32, u64, String)>,
}

impl Index {
    pub fn fresh() -> Self {
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
    pub fn parse(text: &str) -> Option<Self> {
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

    pub fn render(&self) -> String {
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

/// One change-log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// Message `base` has UID `uid`, MODSEQ `modseq` and these flags.
    Set {
        uid: u32,
        modseq: u64,
        flags: String,
        base: String,
    },
    /// Message `uid` was expunged at `modseq`.
    Expunged { uid: u32, modseq: u64 },
}

/// FNV-1a, 32 bits: enough to tell a torn or garbled line.
pub(crate) fn fnv32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let body = match self {
            Record::Set {
                uid,
                modseq,
                flags,
                base,
            } => format!("+ {uid} {modseq} :{flags} {base}"),
            Record::Expunged { uid, modseq } => format!("- {uid} {modseq}"),
        };
        out.extend_from_slice(format!("{:08x} {body}\n", fnv32(body.as_bytes())).as_bytes());
    }

    fn decode(line: &str) -> Option<Self> {
        let (sum, body) = line.split_once(' ')?;
        if sum.len() != 8 || u32::from_str_radix(sum, 16).ok()? != fnv32(body.as_bytes()) {
            return None;
        }
        let mut f = body.splitn(5, ' ');
        let kind = f.next()?;
        let uid: u32 = f.next()?.parse().ok()?;
        let modseq: u64 = f.next()?.parse().ok()?;
        if uid == 0 {
            return None;
        }
        match kind {
            "+" => {
                let flags = f.next()?.strip_prefix(':')?.to_string();
                let base = f.next()?.to_string();
                if base.is_empty() {
                    return None;
                }
                Some(Record::Set {
                    uid,
                    modseq,
                    flags,
                    base,
                })
            }
            "-" => f
                .next()
                .is_none()
                .then_some(Record::Expunged { uid, modseq }),
            _ => None,
        }
    }
}

/// The log's first line.
pub(crate) fn log_header(uidvalidity: u32, snapshot_ino: u64) -> String {
    format!("{LOG_FILE} 1 V{uidvalidity} I{snapshot_ino}\n")
}

/// Parse a log header: (uidvalidity, snapshot inode, header length).
pub(crate) fn parse_log_header(data: &[u8]) -> Option<(u32, u64, usize)> {
    let end = data.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&data[..end]).ok()?;
    let f: Vec<&str> = line.split(' ').collect();
    if f.len() != 4 || f[0] != LOG_FILE || f[1] != "1" {
        return None;
    }
    let v = f[2].strip_prefix('V')?.parse().ok()?;
    let i = f[3].strip_prefix('I')?.parse().ok()?;
    Some((v, i, end + 1))
}

/// Decode the records in `data` (a part of the log that starts at a record
/// boundary). Returns the records and how many bytes they take; anything
/// after is a torn or garbled tail.
pub(crate) fn decode_records(data: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut used = 0;
    while let Some(nl) = data[used..].iter().position(|&b| b == b'\n') {
        let line = &data[used..used + nl];
        let Some(rec) = std::str::from_utf8(line).ok().and_then(Record::decode) else {
            break;
        };
        out.push(rec);
        used += nl + 1;
    }
    (out, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_is_cut() {
        let recs = vec![
            Record::Set {
                uid: 3,
                modseq: 9,
                flags: "FS".into(),
                base: "123.M1P2Q3.host name,S=1,W=2".into(),
            },
            Record::Expunged { uid: 2, modseq: 10 },
        ];
        let mut buf = Vec::new();
        for r in &recs {
            r.encode(&mut buf);
        }
        let whole = buf.len();
        assert_eq!(decode_records(&buf), (recs.clone(), whole));
        // Every cut inside the last record leaves the first one.
        let first = buf.iter().position(|&b| b == b'\n').unwrap() + 1;
        for cut in first..whole {
            let (r, used) = decode_records(&buf[..cut]);
            assert_eq!(r, recs[..1], "cut at {cut}");
            assert_eq!(used, first);
        }
        // A flipped byte is not taken for a record.
        let mut bad = buf.clone();
        bad[first + 12] ^= 0x01;
        assert_eq!(decode_records(&bad), (recs[..1].to_vec(), first));
    }

    #[test]
    fn log_header() {
        let h = super::log_header(7, 12345);
        assert_eq!(parse_log_header(h.as_bytes()), Some((7, 12345, h.len())));
        assert_eq!(parse_log_header(b"postern-uidlist.log 1 V7\n"), None);
        assert_eq!(parse_log_header(b"garbage"), None);
    }
}
