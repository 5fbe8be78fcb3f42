//! Giving imported messages the UIDs they had in another store.
//!
//! `mailctl import` copies a Dovecot Maildir (with its `dovecot-uidlist`)
//! into a folder; when the folder has never numbered a message, the
//! source's UIDs and UIDVALIDITY can be kept, so IMAP clients that knew
//! the old server do not download the mail again.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

use crate::{
    INDEX_FILE, INDEX_LOCK, INDEX_VERSION, Result, StoreError, io_err, lock, name, write_atomic,
};

/// The index's change log, beside the snapshot (when the store keeps one).
const INDEX_LOG: &str = "postern-uidlist.log";

/// What [`adopt_uids`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Messages that got the UID asked for.
    pub kept: usize,
    /// Messages left to be numbered by the next sync (the mailbox had
    /// numbered messages before, the UID was asked twice, or no such file).
    pub renumbered: usize,
    /// Whether the folder now has the UIDVALIDITY asked for.
    pub uidvalidity_kept: bool,
}

/// UIDVALIDITY of a snapshot that has never numbered a message (UIDNEXT 1,
/// no entries); `None` for any other (or unreadable) snapshot.
fn pristine_uidvalidity(text: &str) -> Option<u32> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(' ').collect();
    if header.len() != 5
        || header[0] != INDEX_FILE
        || header[1] != INDEX_VERSION.to_string()
        || header[3] != "N1"
        || lines.any(|l| !l.is_empty())
    {
        return None;
    }
    header[2].strip_prefix('V')?.parse().ok()
}

/// Give the messages of the mailbox at `dir` (files already in its `cur/`
/// or `new/`, by base name) the UIDs in `wanted`, and the mailbox the
/// UIDVALIDITY `uidvalidity`, before any sync numbers them. Only a mailbox
/// that has never numbered a message (no index, or an index with UIDNEXT 1
/// and no change log) can take them: IMAP never lets a UID or the
/// UIDVALIDITY of a mailbox a client may have seen change. Otherwise
/// nothing is changed and every message is numbered by the next
/// [`crate::Mailbox::sync`] as usual (after the kept ones, when some were
/// kept). Takes the index lock and writes the index atomically, so a
/// concurrent sync sees either none or all of it.
pub fn adopt_uids(dir: &Path, uidvalidity: u32, wanted: &[(String, u32)]) -> Result<Adopted> {
    let _guard = lock(&dir.join(INDEX_LOCK), false)?;
    let index_path = dir.join(INDEX_FILE);
    let current = match fs::read_to_string(&index_path) {
        Ok(text) => pristine_uidvalidity(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(0),
        Err(e) => return Err(io_err(&index_path)(e)),
    };
    let mut out = Adopted {
        renumbered: wanted.len(),
        uidvalidity_kept: false,
        kept: 0,
    };
    if current.is_none() || dir.join(INDEX_LOG).exists() || uidvalidity == 0 {
        return Ok(out);
    }
    // Flags of the files as they are now (new/ files have none).
    let mut present: HashMap<String, String> = HashMap::new();
    for sub in ["new", "cur"] {
        let d = dir.join(sub);
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::Io { path: d, source: e }),
        };
        for entry in rd {
            let entry = entry.map_err(io_err(&d))?;
            if let Some(f) = entry.file_name().to_str().filter(|f| name::is_message(f)) {
                let p = name::parse(f);
                let flags = if sub == "cur" {
                    name::normalize_flags(p.flags)
                } else {
                    String::new()
                };
                present.insert(p.base.to_string(), flags);
            }
        }
    }
    let mut sorted: Vec<&(String, u32)> = wanted.iter().collect();
    sorted.sort_by_key(|(_, uid)| *uid);
    let mut rows = String::new();
    let mut uidnext = 1u32;
    let mut seen = std::collections::HashSet::new();
    for (base, uid) in sorted {
        let Some(flags) = present.get(base) else {
            continue;
        };
        if *uid < uidnext || *uid == u32::MAX || !seen.insert(base.as_str()) {
            continue;
        }
        // modseq 2: the index's first change.
        rows.push_str(&format!("{uid} 2 :{flags} {base}\n"));
        uidnext = uid + 1;
        out.kept += 1;
    }
    out.renumbered = wanted.len() - out.kept;
    out.uidvalidity_kept = true;
    let text = format!("{INDEX_FILE} {INDEX_VERSION} V{uidvalidity} N{uidnext} M2\n{rows}");
    write_atomic(&index_path, text.as_bytes())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mailbox, deliver};

    #[test]
    fn uids_and_uidvalidity_kept_only_in_a_mailbox_that_never_numbered() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Maildir");
        let bases: Vec<String> = (0..3)
            .map(|i| {
                let d = deliver(&root, "INBOX", format!("Subject: {i}\n\nx\n").as_bytes()).unwrap();
                d.path.file_name().unwrap().to_str().unwrap().to_string()
            })
            .collect();
        // The first two keep 7 and 3; the third is numbered after them.
        let wanted = vec![
            (bases[0].clone(), 7),
            (bases[1].clone(), 3),
            ("gone".to_string(), 9),
        ];
        let a = adopt_uids(&root, 42, &wanted).unwrap();
        assert_eq!(
            a,
            Adopted {
                kept: 2,
                renumbered: 1,
                uidvalidity_kept: true
            }
        );
        let mb = Mailbox::open(&root).unwrap();
        assert_eq!(mb.uidvalidity(), 42);
        let uids: Vec<(u32, &str)> = mb
            .messages()
            .iter()
            .map(|m| (m.uid, m.base.as_str()))
            .collect();
        assert_eq!(
            uids,
            [
                (3, bases[1].as_str()),
                (7, bases[0].as_str()),
                (8, bases[2].as_str())
            ]
        );
        // Numbered now: a UID below UIDNEXT or for a numbered message is
        // not taken, nor the UIDVALIDITY.
        let d = deliver(&root, "INBOX", b"Subject: late\n\nx\n").unwrap();
        let late = d.path.file_name().unwrap().to_str().unwrap().to_string();
        let a = adopt_uids(&root, 43, &[(late, 5), (bases[2].clone(), 50)]).unwrap();
        assert_eq!((a.kept, a.renumbered, a.uidvalidity_kept), (0, 2, false));
        let mb = Mailbox::open(&root).unwrap();
        assert_eq!(mb.uidvalidity(), 42);
        assert_eq!(mb.messages().last().unwrap().uid, 9);
    }
}
