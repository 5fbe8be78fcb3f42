//! Duplicate suppression for LMTP's at-least-once window.
//!
//! An LMTP client (our queue-manager, Postfix) that loses the connection
//! after lmtp-delivery wrote a copy but before the `250` reached it, or that
//! is itself killed before recording the `250`, delivers the same message
//! again later. Postfix + Dovecot have the same window and live with the
//! duplicate; we close it:
//!
//! For each recipient the key is SHA-256 over (envelope sender, recipient
//! address, message bytes). The message bytes include the trace headers of
//! the hops before us (smtpd's `Received: ... id`, Postfix's queue id), so
//! two different submissions never share a key, while a retry of the same
//! queue file always does. Before the copy is renamed from `tmp/` into
//! `new/` (its content already fsynced), a record `<Maildir>/`[`SEEN_DIR`]`/<key>`
//! is written holding the folder and the file's base name. A later delivery
//! with the same key finds the record, checks that the file is still in the
//! folder (`new/<base>`, or `cur/<base>:2,...`) and then answers `250`
//! without writing a second copy. A record whose file is not there (the
//! crash came between record and rename, or the user already deleted the
//! message) does not suppress anything: the message is delivered again, so
//! a record can cause a duplicate at worst, never a loss.
//!
//! Records are not fsynced: they survive a killed process (the page cache
//! keeps them), not necessarily a power failure, after which a duplicate is
//! possible again. They are removed after [`RECORD_LIFETIME`], checked every
//! [`PRUNE_EVERY`] deliveries for the mailbox being delivered to.
//! `SEEN_DIR` does not start with a dot, so Maildir++ readers (imapd, pop3d,
//! Dovecot, mutt) do not take it for a folder; the quota count skips it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// Directory of duplicate records inside a Maildir.
pub const SEEN_DIR: &str = "postern-lmtp-seen";
/// How long a record is kept: beyond Postfix's and our queue's
/// `maximal_queue_lifetime` (5 days), after which no client retries.
pub const RECORD_LIFETIME: Duration = Duration::from_secs(6 * 24 * 3600);
/// Prune one mailbox's records every this many deliveries (per process).
pub const PRUNE_EVERY: u64 = 256;
/// Bound on a record file read back (folder name + base name).
const MAX_RECORD: u64 = 4096;

static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// The key of one recipient's copy.
pub fn key(sender: &str, rcpt: &str, message: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(sender.as_bytes());
    h.update([0]);
    h.update(rcpt.to_ascii_lowercase().as_bytes());
    h.update([0]);
    h.update(message);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn record_path(maildir: &Path, key: &str) -> PathBuf {
    maildir.join(SEEN_DIR).join(key)
}

/// The file of an earlier delivery with this key, if it is still in the
/// mailbox.
pub fn already_delivered(maildir: &Path, key: &str) -> Option<PathBuf> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(record_path(maildir, key))
        .ok()?
        .take(MAX_RECORD)
        .read_to_string(&mut text)
        .ok()?;
    let (folder, base) = text.trim_end().split_once('\n')?;
    if base.is_empty() || base.contains('/') || folder.contains('/') {
        return None;
    }
    let dir = mailstore::folder_path(maildir, folder);
    let new = dir.join("new").join(base);
    if new.exists() {
        return Some(new);
    }
    // Moved to cur/ (seen by a reader), perhaps with flags: a scan, but
    // only for a message that really was delivered before.
    let prefix = format!("{base}:");
    std::fs::read_dir(dir.join("cur"))
        .ok()?
        .flatten()
        .find(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n == base || n.starts_with(&prefix))
        })
        .map(|e| e.path())
}

/// Record that the copy with `key` is about to become `folder/new/<base>`.
/// Failure is logged and ignored: without a record a retry can only cause
/// a duplicate.
pub fn record(maildir: &Path, key: &str, folder: &str, base: &str) {
    let dir = maildir.join(SEEN_DIR);
    let write = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(record_path(maildir, key), format!("{folder}\n{base}\n")));
    if let Err(e) = write {
        tracing::warn!(maildir = %maildir.display(), error = %e, "cannot write duplicate record");
    }
    if DELIVERIES.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
        prune(maildir, RECORD_LIFETIME);
    }
}

/// Remove the records older than `lifetime`; returns how many.
pub fn prune(maildir: &Path, lifetime: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(maildir.join(SEEN_DIR)) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age >= lifetime);
        if old && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_sender_recipient_and_content() {
        let k = key("a@x", "b@y", b"m");
        assert_eq!(k.len(), 64);
        assert_eq!(k, key("a@x", "B@Y", b"m"));
        assert_ne!(k, key("a@x", "c@y", b"m"));
        assert_ne!(k, key("z@x", "b@y", b"m"));
        assert_ne!(k, key("a@x", "b@y", b"m2"));
        // The separator keeps field boundaries apart.
        assert_ne!(key("a", "bc", b""), key("ab", "c", b""));
    }

    #[test]
    fn a_record_suppresses_only_while_the_file_exists() {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("Maildir");
        let k = key("a@x", "alice@y", b"Subject: s\r\n\r\nbody\r\n");
        assert!(already_delivered(&md, &k).is_none());
        let d = mailstore::deliver_with(&md, "", b"Subject: s\r\n\r\nbody\r\n", |base| {
            record(&md, &k, "", base)
        })
        .unwrap();
        assert_eq!(already_delivered(&md, &k), Some(d.path.clone()));
        // Moved to cur/ with flags by a reader: still found.
        let base = d.path.file_name().unwrap().to_str().unwrap().to_string();
        let cur = md.join("cur").join(format!("{base}:2,S"));
        std::fs::rename(&d.path, &cur).unwrap();
        assert_eq!(already_delivered(&md, &k), Some(cur.clone()));
        // Deleted (or never renamed): no suppression.
        std::fs::remove_file(&cur).unwrap();
        assert!(already_delivered(&md, &k).is_none());
        // A folder record points into that folder.
        mailstore::create_maildir(&md).unwrap();
        let k2 = key("a@x", "alice+archive@y", b"x");
        let d2 = mailstore::deliver_with(&md, "Archive", b"x", |base| {
            record(&md, &k2, "Archive", base)
        })
        .unwrap();
        assert_eq!(already_delivered(&md, &k2), Some(d2.path));
        // Garbage records are ignored, not followed.
        std::fs::write(md.join(SEEN_DIR).join("bad"), "../..\n../etc/passwd\n").unwrap();
        assert!(already_delivered(&md, "bad").is_none());
        assert_eq!(prune(&md, Duration::from_secs(3600)), 0);
        assert_eq!(prune(&md, Duration::ZERO), 3);
    }
}
