use super::*;

fn msg(n: usize) -> Vec<u8> {
    format!("Subject: m{n}\r\n\r\nbody {n}\r\n.leading dot\r\n").into_bytes()
}

#[test]
fn delivery_is_complete_in_new_with_sizes_in_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("alice/Maildir");
    let d = deliver(&root, "INBOX", b"Subject: x\r\n\r\nhello\r\n").unwrap();
    assert!(d.path.starts_with(root.join("new")));
    assert_eq!(fs::read(&d.path).unwrap(), b"Subject: x\n\nhello\n");
    assert_eq!((d.size, d.vsize), (18, 21));
    let p = name::parse(d.path.file_name().unwrap().to_str().unwrap());
    assert_eq!((p.size, p.vsize), (Some(18), Some(21)));
    assert!(
        fs::read_dir(root.join("tmp")).unwrap().next().is_none(),
        "tmp/ is empty"
    );
    for (f, _) in DEFAULT_FOLDERS {
        assert!(root.join(format!(".{f}/cur")).is_dir(), "{f}");
        assert!(root.join(format!(".{f}/maildirfolder")).exists(), "{f}");
    }
    assert!(
        fs::read_to_string(root.join("subscriptions"))
            .unwrap()
            .contains("Sent\n")
    );
    assert_eq!(special_use("sent"), Some("\\Sent"));
}

#[test]
fn stored_form_and_crlf_size() {
    assert_eq!(to_stored_form(b"a\r\nb\r\n"), (b"a\nb\n".to_vec(), 6));
    assert_eq!(to_stored_form(b"a\nb"), (b"a\nb".to_vec(), 4));
    assert_eq!(to_stored_form(b"a\rb\r\n"), (b"a\rb\n".to_vec(), 5));
}

#[test]
fn uids_in_delivery_order_and_stable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for n in 0..5 {
        deliver(root, "", &msg(n)).unwrap();
    }
    let mb = Mailbox::open(root).unwrap();
    let uids: Vec<u32> = mb.messages().iter().map(|m| m.uid).collect();
    assert_eq!(uids, [1, 2, 3, 4, 5]);
    let subjects: Vec<String> = mb
        .messages()
        .iter()
        .map(|m| {
            String::from_utf8(mb.read_message(m.uid).unwrap())
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        subjects,
        [
            "Subject: m0",
            "Subject: m1",
            "Subject: m2",
            "Subject: m3",
            "Subject: m4"
        ]
    );
    assert!(
        fs::read_dir(root.join("new")).unwrap().next().is_none(),
        "new/ moved to cur/"
    );
    let validity = mb.uidvalidity();
    drop(mb);
    deliver(root, "", &msg(5)).unwrap();
    let mut mb = Mailbox::open(root).unwrap();
    assert_eq!(mb.uidvalidity(), validity);
    assert_eq!(
        mb.messages().iter().map(|m| m.uid).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(mb.uidnext(), 7);
    assert_eq!(mb.sync().unwrap(), Changes::default(), "nothing changed");
    assert_eq!(pop3_uidl(6, 0x5f00_0001), "000000065F000001");
}

#[test]
fn external_changes_are_seen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for n in 0..3 {
        deliver(root, "", &msg(n)).unwrap();
    }
    let mut mb = Mailbox::open(root).unwrap();
    let before = mb.highest_modseq();
    // mutt marks message 2 seen and deletes message 3 by hand.
    let m2 = mb.messages()[1].clone();
    fs::rename(&m2.path, root.join("cur").join(format!("{}:2,S", m2.base))).unwrap();
    fs::remove_file(&mb.messages()[2].path).unwrap();
    let ch = mb.sync().unwrap();
    assert_eq!(ch.flags_changed, [2]);
    assert_eq!(ch.expunged, [3]);
    assert!(ch.new.is_empty());
    assert_eq!(mb.messages()[1].flags, "S");
    assert!(mb.messages()[1].modseq > before && mb.highest_modseq() > before);
    // A foreign file without sizes in its name, with CRLF and LF lines.
    fs::write(root.join("new/1234567890.foreign.host"), b"a\r\nb\n").unwrap();
    let ch = mb.sync().unwrap();
    assert_eq!(ch.new, [4]);
    let m = mb.messages().last().unwrap();
    assert_eq!((m.size, m.vsize, m.internal_date), (5, 6, 1_234_567_890));
}

#[test]
fn flags_expunge_and_uids_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for n in 0..3 {
        deliver(root, "", &msg(n)).unwrap();
    }
    let mut mb = Mailbox::open(root).unwrap();
    mb.set_flags(1, "SF").unwrap();
    assert_eq!(mb.messages()[0].flags, "FS");
    assert!(mb.messages()[0].path.to_str().unwrap().ends_with(":2,FS"));
    mb.expunge(&[1, 3]).unwrap();
    assert_eq!(mb.messages().iter().map(|m| m.uid).collect::<Vec<_>>(), [2]);
    deliver(root, "", &msg(9)).unwrap();
    mb.sync().unwrap();
    assert_eq!(
        mb.messages().iter().map(|m| m.uid).collect::<Vec<_>>(),
        [2, 4]
    );
    assert!(matches!(
        mb.open_message(1),
        Err(StoreError::NoSuchMessage(1))
    ));
}

#[test]
fn corrupt_index_is_rebuilt_with_a_new_uidvalidity() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    deliver(root, "", &msg(0)).unwrap();
    let mb = Mailbox::open(root).unwrap();
    drop(mb);
    fs::write(root.join(INDEX_FILE), "postern-uidlist 1 Vx N2 M3\n").unwrap();
    let mb = Mailbox::open(root).unwrap();
    assert_eq!(mb.messages().len(), 1);
    assert_eq!(mb.messages()[0].uid, 1);
    // An index whose UIDs exceed UIDNEXT is not trusted either.
    fs::write(
        root.join(INDEX_FILE),
        "postern-uidlist 1 V7 N2 M3\n9 1 : x\n",
    )
    .unwrap();
    assert!(Index::parse(&fs::read_to_string(root.join(INDEX_FILE)).unwrap()).is_none());
}

#[test]
fn pop3_lock_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let first = Pop3Lock::acquire(dir.path()).unwrap();
    assert!(matches!(
        Pop3Lock::acquire(dir.path()),
        Err(StoreError::Pop3InUse)
    ));
    drop(first);
    Pop3Lock::acquire(dir.path()).unwrap();
    // The POP3 lock does not block index access (IMAP goes on).
    let _again = Pop3Lock::acquire(dir.path());
    Mailbox::open(dir.path()).unwrap();
}

#[test]
fn large_mailbox_listing_uses_names_not_bodies() {
    // 5,000 messages: after the first sync, make every body unreadable by
    // truncating it to nothing; sizes must still come from the names, which
    // proves listing does not read bodies.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for n in 0..5_000 {
        deliver(root, "", &msg(n)).unwrap_or_else(|e| panic!("{n}: {e}"));
    }
    let mb = Mailbox::open(root).unwrap();
    let total: u64 = mb.messages().iter().map(|m| m.vsize).sum();
    for m in mb.messages() {
        fs::write(&m.path, b"").unwrap();
    }
    let mb2 = Mailbox::open(root).unwrap();
    assert_eq!(mb2.messages().len(), 5_000);
    assert_eq!(mb2.messages().iter().map(|m| m.vsize).sum::<u64>(), total);
    assert_eq!(mb2.messages().last().unwrap().uid, 5_000);
}

#[test]
fn folders_get_their_own_index() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    deliver(root, "Archive", &msg(1)).unwrap();
    deliver(root, "", &msg(2)).unwrap();
    let archive = Mailbox::open(&folder_path(root, "Archive")).unwrap();
    assert_eq!(archive.messages().len(), 1);
    let inbox = Mailbox::open(root).unwrap();
    assert_eq!(inbox.messages().len(), 1);
    assert!(root.join(".Archive").join(INDEX_FILE).exists());
}

#[test]
fn create_folder_makes_a_maildir_once() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("Maildir");
    create_maildir(&root).unwrap();
    create_folder(&root, "Work").unwrap();
    assert!(root.join(".Work/cur").is_dir() && root.join(".Work/maildirfolder").exists());
    assert!(create_folder(&root, "Work").is_err());
    assert!(create_folder(&root, "INBOX").is_err());
    deliver(&root, "Work", b"Subject: x\r\n\r\ny\r\n").unwrap();
    assert_eq!(
        Mailbox::open(&root.join(".Work")).unwrap().messages().len(),
        1
    );
}

#[test]
fn set_flags_after_another_session_renamed_or_expunged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for n in 0..2 {
        deliver(root, "", &msg(n)).unwrap();
    }
    let mut a = Mailbox::open(root).unwrap();
    let mut b = Mailbox::open(root).unwrap();
    // A changes message 1's flags (renames the file); B, not synced, still
    // has the old name and must follow the rename.
    a.set_flags(1, "S").unwrap();
    b.set_flags(1, "F").unwrap();
    a.sync().unwrap();
    assert_eq!(a.find(1).unwrap().flags, "F");
    // A expunges message 2; B's flag change on it is a no-op, not an error.
    a.expunge(&[2]).unwrap();
    b.set_flags(2, "S").unwrap();
    assert!(b.find(2).is_err(), "gone after B's sync");
}

#[test]
fn keywords_get_letters_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    create_maildir(root).unwrap();
    assert!(read_keywords(root).is_empty());
    assert_eq!(keyword_letters(root, &["$Junk"], false).unwrap(), [None]);
    assert_eq!(
        keyword_letters(root, &["$Junk", "Work", "$junk"], true).unwrap(),
        [Some('a'), Some('b'), Some('a')]
    );
    assert_eq!(read_keywords(root), ["$Junk", "Work"]);
    assert_eq!(
        fs::read_to_string(root.join(KEYWORDS_FILE)).unwrap(),
        "0 $Junk\n1 Work\n"
    );
    assert_eq!(
        keyword_letters(root, &["work"], false).unwrap(),
        [Some('b')]
    );
    let names: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let got = keyword_letters(root, &refs, true).unwrap();
    assert_eq!(got.iter().filter(|l| l.is_some()).count(), MAX_KEYWORDS - 2);
    assert_eq!(got[29], None, "no 27th letter");
    // A message with keyword letters keeps them through a sync.
    deliver(root, "", b"Subject: k\r\n\r\nx\r\n").unwrap();
    let mut mb = Mailbox::open(root).unwrap();
    let uid = mb.messages()[0].uid;
    mb.set_flags(uid, "Sab").unwrap();
    let mb = Mailbox::open(root).unwrap();
    assert_eq!(mb.messages()[0].flags, "Sab");
}

#[test]
fn rename_folders_and_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    create_maildir(root).unwrap();
    create_folder(root, "Work").unwrap();
    create_folder(root, "Work.Sub").unwrap();
    deliver(root, "Work.Sub", b"Subject: sub\r\n\r\nx\r\n").unwrap();
    let before = Mailbox::open(&folder_path(root, "Work.Sub")).unwrap();
    rename_folder(root, "Work", "Job").unwrap();
    assert!(!root.join(".Work").exists() && !root.join(".Work.Sub").exists());
    let after = Mailbox::open(&folder_path(root, "Job.Sub")).unwrap();
    assert_eq!(after.uidvalidity(), before.uidvalidity());
    assert_eq!(after.messages()[0].uid, before.messages()[0].uid);
    assert!(matches!(
        rename_folder(root, "Job", "Sent"),
        Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists
    ));
    assert!(matches!(
        rename_folder(root, "Nope", "Other"),
        Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound
    ));
    // INBOX: messages move, flags and keywords kept, INBOX stays.
    deliver(root, "", b"Subject: a\r\n\r\nx\r\n").unwrap();
    deliver(root, "", b"Subject: b\r\n\r\ny\r\n").unwrap();
    let mut inbox = Mailbox::open(root).unwrap();
    keyword_letters(root, &["$Junk"], true).unwrap();
    let uid = inbox.messages()[0].uid;
    inbox.set_flags(uid, "Sa").unwrap();
    rename_folder(root, "INBOX", "Old").unwrap();
    assert!(Mailbox::open(root).unwrap().messages().is_empty());
    let old = Mailbox::open(&folder_path(root, "Old")).unwrap();
    assert_eq!(old.messages().len(), 2);
    assert!(old.messages().iter().any(|m| m.flags == "Sa"));
    assert_eq!(read_keywords(&folder_path(root, "Old")), ["$Junk"]);
}

#[test]
fn dated_delivery_sets_internal_date_and_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let d = deliver_dated(root, "", b"Subject: old\r\n\r\nx\r\n", Some(760_000_000)).unwrap();
    let mtime = fs::metadata(&d.path).unwrap().modified().unwrap();
    assert_eq!(
        mtime.duration_since(UNIX_EPOCH).unwrap().as_secs(),
        760_000_000
    );
    let mb = Mailbox::open(root).unwrap();
    assert_eq!(mb.messages()[0].internal_date, 760_000_000);
}

#[test]
fn changes_go_to_the_log_and_other_mailboxes_replay_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for n in 0..3 {
        deliver(root, "", &msg(n)).unwrap();
    }
    let mut a = Mailbox::open(root).unwrap();
    let mut b = Mailbox::open(root).unwrap();
    let snapshot = fs::read(root.join(INDEX_FILE)).unwrap();
    a.set_flags(2, "S").unwrap();
    a.expunge(&[3]).unwrap();
    // The snapshot is not rewritten for small changes: the log has them.
    assert_eq!(fs::read(root.join(INDEX_FILE)).unwrap(), snapshot);
    let ch = b.sync().unwrap();
    assert_eq!(ch.flags_changed, [2]);
    assert_eq!(ch.expunged, [3]);
    assert_eq!(b.messages()[1].flags, "S");
    assert_eq!(b.messages()[1].modseq, a.messages()[1].modseq);
    assert_eq!(b.highest_modseq(), a.highest_modseq());
    // A new process sees the same.
    let c = Mailbox::open(root).unwrap();
    assert_eq!(c.messages(), a.messages());
    assert_eq!(c.uidnext(), 4);
}

#[test]
fn a_torn_log_tail_is_ignored_and_cut_before_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for n in 0..3 {
        deliver(root, "", &msg(n)).unwrap();
    }
    let mut a = Mailbox::open(root).unwrap();
    a.set_flags(1, "F").unwrap();
    let modseq = a.messages()[0].modseq;
    drop(a);
    // A crash in the middle of the next record.
    let log = root.join(LOG_FILE);
    let good = fs::read(&log).unwrap();
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(b"0badc0de + 2 99 :S 17000").unwrap();
    drop(f);
    let mut b = Mailbox::open(root).unwrap();
    assert_eq!(b.messages()[0].flags, "F");
    assert_eq!(b.messages()[0].modseq, modseq);
    assert_eq!(b.messages()[1].flags, "", "the torn record is not applied");
    assert!(b.highest_modseq() < 99);
    // The next change cuts the torn bytes, so its record is readable.
    b.set_flags(3, "S").unwrap();
    let text = fs::read(&log).unwrap();
    assert!(text.starts_with(&good));
    assert!(!String::from_utf8_lossy(&text).contains("0badc0de"));
    let c = Mailbox::open(root).unwrap();
    assert_eq!(c.messages()[2].flags, "S");
    assert_eq!(c.messages(), b.messages());
}

#[test]
fn a_large_log_is_compacted_into_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    deliver(root, "", &msg(0)).unwrap();
    let mut a = Mailbox::open(root).unwrap();
    let mut b = Mailbox::open(root).unwrap();
    let mut i = 0;
    while fs::metadata(root.join(LOG_FILE)).map_or(0, |m| m.len()) < index::COMPACT_AT / 2 || i < 10
    {
        a.set_flags(1, if i % 2 == 0 { "S" } else { "F" }).unwrap();
        i += 1;
        if i > 20_000 {
            break;
        }
    }
    // Keep going until a compaction happened (the log starts again).
    let before = fs::metadata(root.join(LOG_FILE)).unwrap().len();
    loop {
        a.set_flags(1, if i % 2 == 0 { "S" } else { "F" }).unwrap();
        i += 1;
        if fs::metadata(root.join(LOG_FILE)).unwrap().len() < before {
            break;
        }
    }
    let snap = Index::parse(&fs::read_to_string(root.join(INDEX_FILE)).unwrap()).unwrap();
    assert!(snap.highest_modseq > 100, "the snapshot was rewritten");
    b.sync().unwrap();
    assert_eq!(b.messages(), a.messages());
    assert_eq!(b.highest_modseq(), a.highest_modseq());
    assert_eq!(Mailbox::open(root).unwrap().messages(), a.messages());
}

#[test]
fn append_numbers_the_message_and_caches_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    create_maildir(root).unwrap();
    let mut a = Mailbox::open(root).unwrap();
    let uid = a
        .append(
            b"Subject: cached\r\nFrom: a@b\r\n\r\nbody\r\n",
            "S",
            Some(1_700_000_000),
        )
        .unwrap();
    assert_eq!(uid, 1);
    let m = a.messages()[0].clone();
    assert_eq!(
        (m.flags.as_str(), m.internal_date, m.vsize),
        ("S", 1_700_000_000, 36)
    );
    assert!(m.path.starts_with(root.join("cur")));
    // The header comes from the cache, not the file: empty the file.
    fs::write(&m.path, b"").unwrap();
    assert_eq!(&*a.header(uid).unwrap(), b"Subject: cached\nFrom: a@b\n\n");
    a.cache_put(uid, "envelope", b"(NIL)");
    drop(a);
    // Another process (the in-memory copy is gone with the last mailbox)
    // reads the cache file.
    let b = Mailbox::open(root).unwrap();
    assert_eq!(&*b.header(uid).unwrap(), b"Subject: cached\nFrom: a@b\n\n");
    assert_eq!(b.cached(uid, "envelope").as_deref(), Some(&b"(NIL)"[..]));
    assert_eq!(b.cached(uid, "body"), None);
}

#[test]
fn header_is_read_once_then_cached() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    deliver(root, "", b"Subject: one\r\n\r\nbody\r\n").unwrap();
    deliver(root, "", b"Subject: no body").unwrap();
    let mb = Mailbox::open(root).unwrap();
    assert_eq!(&*mb.header(1).unwrap(), b"Subject: one\n\n");
    assert_eq!(&*mb.header(2).unwrap(), b"Subject: no body");
    fs::remove_file(&mb.messages()[0].path).unwrap();
    assert_eq!(&*mb.header(1).unwrap(), b"Subject: one\n\n");
    assert_eq!(
        mb.cached(1, cache::HEADER).as_deref(),
        Some(&b"Subject: one\n\n"[..])
    );
}

#[test]
fn watched_mailboxes_see_foreign_and_own_changes() {
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    for n in 0..3 {
        deliver(&root, "", &msg(n)).unwrap();
    }
    let Some(w) = watch::global() else {
        eprintln!("no inotify here: nothing to test");
        return;
    };
    static HEARD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    w.set_listener(|d| HEARD.lock().unwrap().push(d.to_path_buf()));
    let mut a = Mailbox::open_watched(&root).unwrap();
    let mut b = Mailbox::open_watched(&root).unwrap();
    assert!(a.is_watched() && b.is_watched());
    // Our own change reaches the other mailbox through the log.
    a.set_flags(1, "S").unwrap();
    assert_eq!(b.sync().unwrap().flags_changed, [1]);
    assert_eq!(b.messages()[0].flags, "S");
    // mutt renames a file and removes another: a watched mailbox rescans.
    let m2 = b.messages()[1].clone();
    fs::rename(&m2.path, root.join("cur").join(format!("{}:2,F", m2.base))).unwrap();
    fs::remove_file(&b.messages()[2].path).unwrap();
    let ch = b.sync().unwrap();
    assert_eq!((ch.flags_changed, ch.expunged), (vec![2], vec![3]));
    let ch = a.sync().unwrap();
    assert_eq!((ch.flags_changed, ch.expunged), (vec![2], vec![3]));
    // A delivery is heard by the listener.
    HEARD.lock().unwrap().clear();
    deliver(&root, "", &msg(7)).unwrap();
    w.drain();
    assert!(HEARD.lock().unwrap().contains(&root));
    assert_eq!(a.sync().unwrap().new, [4]);
    assert_eq!(b.sync().unwrap().new, [4]);
    drop(a);
    drop(b);
    assert!(!w.is_watched(&root));
}

#[test]
fn new_and_cur_files_are_numbered_together_in_delivery_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    create_maildir(root).unwrap();
    // An older file copied into cur/ by another program, a newer delivery
    // in new/: the older one gets the lower UID.
    fs::write(root.join("cur/1600000000.M1P7Q1.h,S=2,W=3:2,S"), b"x\n").unwrap();
    let d = deliver(root, "", b"Subject: newer\r\n\r\n").unwrap();
    let mb = Mailbox::open(root).unwrap();
    let bases: Vec<&str> = mb.messages().iter().map(|m| m.base.as_str()).collect();
    let newer = d.path.file_name().unwrap().to_str().unwrap();
    assert_eq!(bases, ["1600000000.M1P7Q1.h,S=2,W=3", newer]);
    assert_eq!(mb.messages()[0].uid, 1);
}
