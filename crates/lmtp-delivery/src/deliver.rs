//! Writing one accepted message into each recipient's Maildir.

use std::path::{Path, PathBuf};

use crate::dedupe;
use crate::identity::{FsIdentity, IdentityError, Owner};

/// Why one recipient's copy was not delivered. Each maps to its own LMTP reply.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Over quota: `552 5.2.2`.
    #[error("mailbox full")]
    OverQuota,
    /// Disk or permission problem: `451 4.3.0` (the client retries).
    #[error("cannot write the mailbox: {0}")]
    Store(#[from] mailstore::StoreError),
    /// Cannot take the mailbox owner's identity: `451 4.3.0`.
    #[error("{0}")]
    Identity(#[from] IdentityError),
}

impl DeliveryError {
    /// The LMTP reply line for this failure.
    pub fn reply(&self) -> (u16, (u8, u16, u16), &'static str) {
        match self {
            DeliveryError::OverQuota => (552, (5, 2, 2), "Mailbox full"),
            DeliveryError::Store(_) => (451, (4, 3, 0), "Temporary failure writing the mailbox"),
            DeliveryError::Identity(_) => (451, (4, 3, 0), "Temporary local delivery error"),
        }
    }
}

/// Where one recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The envelope recipient, for `Delivered-To:`.
    pub address: String,
    /// Maildir root.
    pub maildir: PathBuf,
    /// Folder (`""` = INBOX).
    pub folder: String,
    /// The `+extension` of the address: selects an existing folder of that
    /// name when `folder` is empty (looked up with the owner's identity).
    pub extension: String,
    /// Bytes; 0 = unlimited.
    pub quota_bytes: u64,
    /// Whose identity the copy is written with.
    pub owner: Owner,
}

/// Bytes used by a Maildir (all folders), from the `S=` sizes in file names
/// (a stat for files without one). Only computed when a quota is set.
pub fn usage(maildir: &Path) -> u64 {
    let mut dirs = vec![maildir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(maildir) {
        dirs.extend(
            entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.starts_with('.') && n.len() > 1 && n != "..")
                })
                .map(|e| e.path()),
        );
    }
    let mut total = 0u64;
    for d in dirs {
        for sub in ["cur", "new"] {
            let Ok(entries) = std::fs::read_dir(d.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                total += mailstore::name::parse(name)
                    .size
                    .or_else(|| e.metadata().ok().map(|m| m.len()))
                    .unwrap_or(0);
            }
        }
    }
    total
}

/// The folder a `user+ext@` address delivers to: the extension when a
/// folder of that name (any case) exists, else INBOX.
pub fn folder_for_extension(maildir: &Path, extension: &str) -> String {
    if extension.is_empty() || extension.contains(['/', '.']) {
        return String::new();
    }
    if let Ok(entries) = std::fs::read_dir(maildir) {
        for e in entries.flatten() {
            if let Some(name) = e.file_name().to_str().and_then(|n| n.strip_prefix('.'))
                && name.eq_ignore_ascii_case(extension)
                && e.path().join("cur").is_dir()
            {
                return name.to_string();
            }
        }
    }
    String::new()
}

/// The trace headers lmtp-delivery adds (RFC 5321 4.4 `Return-Path`, and
/// `Delivered-To` as Postfix and Dovecot write it).
pub fn trace_headers(return_path: &str, rcpt: &str) -> Vec<u8> {
    format!("Return-Path: <{return_path}>\r\nDelivered-To: {rcpt}\r\n").into_bytes()
}

/// The folder a message marked as junk is delivered to (the `\Junk`
/// special-use folder every new Maildir gets, `mailstore::DEFAULT_FOLDERS`).
pub const JUNK_FOLDER: &str = "Junk";

/// What [`deliver`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A new copy was written.
    Written(mailstore::Delivered),
    /// The same message for the same recipient was delivered before and is
    /// still in the mailbox (a client retrying after a lost `250`, see
    /// [`crate::dedupe`]); nothing was written.
    Duplicate(PathBuf),
}

/// Deliver `message` (CRLF, without trace headers) to `target`, unless it
/// was delivered there before ([`crate::dedupe`]). Durable (fsynced) when
/// it returns `Ok`.
///
/// For an [`Owner::User`] everything (folder lookup, duplicate check, quota
/// count, Maildir creation, the copy, the duplicate record) runs with that
/// user's file-system identity on the calling thread, which must therefore
/// be a blocking thread, not an async worker; the identity is restored
/// before this returns.
pub fn deliver(
    target: &Target,
    return_path: &str,
    message: &[u8],
) -> Result<Delivery, DeliveryError> {
    let _identity = match target.owner {
        Owner::Daemon => None,
        Owner::User { uid, gid } => Some(FsIdentity::switch(uid, gid)?),
    };
    // smtpd's junk marker (DMARC quarantine): removed from the copy, and
    // when it is ours, the copy goes to Junk instead of INBOX or the
    // +extension folder.
    let (cleaned, junk) = crate::junk::take_marker(message);
    let message = cleaned.as_deref().unwrap_or(message);
    if junk && target.folder.is_empty() {
        let resolved = Target {
            folder: JUNK_FOLDER.to_string(),
            extension: String::new(),
            ..target.clone()
        };
        return deliver_here(&resolved, return_path, message);
    }
    if target.folder.is_empty() && !target.extension.is_empty() {
        let folder = folder_for_extension(&target.maildir, &target.extension);
        let resolved = Target {
            folder,
            extension: String::new(),
            ..target.clone()
        };
        return deliver_here(&resolved, return_path, message);
    }
    deliver_here(target, return_path, message)
}

fn deliver_here(
    target: &Target,
    return_path: &str,
    message: &[u8],
) -> Result<Delivery, DeliveryError> {
    let key = dedupe::key(return_path, &target.address, message);
    if let Some(path) = dedupe::already_delivered(&target.maildir, &key) {
        return Ok(Delivery::Duplicate(path));
    }
    let mut full = trace_headers(return_path, &target.address);
    full.extend_from_slice(message);
    if target.quota_bytes > 0 && usage(&target.maildir) + full.len() as u64 > target.quota_bytes {
        return Err(DeliveryError::OverQuota);
    }
    let d = mailstore::deliver_with(&target.maildir, &target.folder, &full, |base| {
        dedupe::record(&target.maildir, &key, &target.folder, base)
    })?;
    Ok(Delivery::Written(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailstore_files(md: &Path) -> usize {
        std::fs::read_dir(md.join("new")).unwrap().count()
    }

    fn target(dir: &Path, quota: u64) -> Target {
        Target {
            address: "alice@example.test".into(),
            maildir: dir.join("Maildir"),
            folder: String::new(),
            extension: String::new(),
            quota_bytes: quota,
            owner: Owner::Daemon,
        }
    }

    #[test]
    fn adds_trace_headers_and_writes_durably() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path(), 0);
        let Delivery::Written(d) =
            deliver(&t, "bob@example.test", b"Subject: x\r\n\r\nhi\r\n").unwrap()
        else {
            panic!("first delivery is not a duplicate")
        };
        let text = std::fs::read_to_string(&d.path).unwrap();
        assert_eq!(
            text,
            "Return-Path: <bob@example.test>\nDelivered-To: alice@example.test\nSubject: x\n\nhi\n"
        );
        let Delivery::Written(null) = deliver(&t, "", b"Subject: bounce\r\n\r\n").unwrap() else {
            panic!("not a duplicate")
        };
        assert!(
            std::fs::read_to_string(&null.path)
                .unwrap()
                .starts_with("Return-Path: <>\n")
        );
        // The same message for the same recipient again (a client retrying
        // after a lost 250): no second copy.
        assert_eq!(
            deliver(&t, "bob@example.test", b"Subject: x\r\n\r\nhi\r\n").unwrap(),
            Delivery::Duplicate(d.path.clone())
        );
        assert_eq!(mailstore_files(&t.maildir), 2);
    }

    #[test]
    fn our_junk_marker_files_into_junk_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path(), 0);
        let Delivery::Written(d) = deliver(
            &t,
            "a@b",
            b"X-Postern-Junk: yes (DMARC)\r\nReceived: x\r\nSubject: j\r\n\r\nhi\r\n",
        )
        .unwrap() else {
            panic!("not written")
        };
        assert!(
            d.path.starts_with(dir.path().join("Maildir/.Junk/new")),
            "{:?}",
            d.path
        );
        let stored = std::fs::read(&d.path).unwrap();
        assert!(!String::from_utf8_lossy(&stored).contains("X-Postern-Junk"));
        // A planted one (below Received:) is removed and goes to INBOX.
        let Delivery::Written(d) = deliver(
            &t,
            "a@b",
            b"Received: x\r\nX-Postern-Junk: yes\r\nSubject: k\r\n\r\nhi\r\n",
        )
        .unwrap() else {
            panic!("not written")
        };
        assert!(
            d.path.starts_with(dir.path().join("Maildir/new")),
            "{:?}",
            d.path
        );
        assert!(
            !String::from_utf8_lossy(&std::fs::read(&d.path).unwrap()).contains("X-Postern-Junk")
        );
    }

    #[test]
    fn quota_counts_every_folder() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = target(dir.path(), 300);
        deliver(&t, "a@b", &[b'x'; 60]).unwrap();
        t.folder = "Archive".into();
        deliver(&t, "a@b", &[b'y'; 60]).unwrap();
        assert!(usage(&t.maildir) > 200);
        assert!(matches!(
            deliver(&t, "a@b", &[b'z'; 60]),
            Err(DeliveryError::OverQuota)
        ));
        assert_eq!(DeliveryError::OverQuota.reply().0, 552);
    }

    #[test]
    fn extension_picks_an_existing_folder_only() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path(), 0);
        mailstore::create_maildir(&t.maildir).unwrap();
        assert_eq!(folder_for_extension(&t.maildir, "archive"), "Archive");
        assert_eq!(folder_for_extension(&t.maildir, "lists"), "");
        assert_eq!(folder_for_extension(&t.maildir, "../x"), "");
        assert_eq!(folder_for_extension(&t.maildir, ""), "");
    }
}
