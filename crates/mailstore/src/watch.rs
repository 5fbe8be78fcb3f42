//! Change notification for watched mailboxes (Linux inotify).
//!
//! One inotify instance per process ([`global`]) watches, for each
//! [`Mailbox`](crate::Mailbox) that asked for it with
//! [`Mailbox::watch`](crate::Mailbox::watch), the mailbox directory (index
//! log changes by any postern process), `new/` (deliveries) and `cur/`
//! (renames and removals). Watches are reference-counted per directory, so
//! many sessions on one mailbox share three watches.
//!
//! Two uses:
//!
//! * **No rescan of `cur/` for our own changes.** Before this process
//!   renames or removes a file in `cur/` it registers the events it expects
//!   ([`Watcher::expect`]); they are ignored when they arrive. Any other
//!   event in `cur/` (mutt renamed a file, a folder was copied in) bumps the
//!   directory's generation, and the next sync of every mailbox on it scans
//!   `cur/` again. Events are queued by the kernel when the operation
//!   completes, and a sync reads the queue first ([`Watcher::drain`]), so a
//!   change finished before a sync starts is never missed.
//! * **Wake-ups.** A listener ([`Watcher::set_listener`]) is called with the
//!   mailbox directory for every event that is not expected (a delivery,
//!   another session's or process's index log append, a foreign change):
//!   imapd wakes its IDLE sessions on that mailbox with it.
//!
//! The event queue overflowing (`IN_Q_OVERFLOW`) marks every watched
//! directory changed. When inotify is unavailable (no instance or watch
//! left), mailboxes are not watched and every sync scans `cur/`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// Which directory of a mailbox a watch is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The mailbox directory itself (index and log files).
    Top,
    New,
    Cur,
}

/// An event this process expects from its own operation in `cur/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expect {
    /// A file renamed away from `cur/` (or within it: the old name).
    MovedFrom,
    /// A file renamed into `cur/` (or within it: the new name).
    MovedTo,
    /// A file unlinked from `cur/`.
    Deleted,
}

struct Dir {
    wds: [WatchDescriptor; 3],
    refs: usize,
    /// Bumped by every unexpected event in `cur/` (and on overflow).
    cur_generation: u64,
}

#[derive(Default)]
struct State {
    dirs: HashMap<PathBuf, Dir>,
    by_wd: HashMap<WatchDescriptor, (PathBuf, Part)>,
    /// Pending own events in `cur/`: (mailbox dir, kind, file name) → count.
    expected: HashMap<(PathBuf, Expect, OsString), u32>,
}

type Listener = Arc<dyn Fn(&Path) + Send + Sync>;

/// The process's inotify instance and what it watches.
pub struct Watcher {
    inotify: Inotify,
    state: Mutex<State>,
    listener: Mutex<Option<Listener>>,
}

/// Bound on pending expected events per process: a leak (an operation
/// whose event never came) cannot grow without limit; past it the table is
/// cleared, which at worst costs one extra scan of `cur/`.
const MAX_EXPECTED: usize = 100_000;

/// The process's watcher, created on first use; `None` when inotify is not
/// available.
pub fn global() -> Option<&'static Watcher> {
    static W: OnceLock<Option<Watcher>> = OnceLock::new();
    W.get_or_init(|| match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
        Ok(inotify) => Some(Watcher {
            inotify,
            state: Mutex::new(State::default()),
            listener: Mutex::new(None),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "inotify unavailable: mailboxes are rescanned at every sync");
            None
        }
    })
    .as_ref()
}

/// A mailbox's share of the watches; released on drop.
#[derive(Debug)]
pub struct WatchGuard {
    dir: PathBuf,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        if let Some(w) = global() {
            w.release(&self.dir);
        }
    }
}

impl Watcher {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The inotify descriptor, for waiting on readiness (imapd registers
    /// it with tokio and calls [`Watcher::drain`] when it is readable).
    pub fn raw_fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }

    /// Call `f` with the mailbox directory of every unexpected event.
    pub fn set_listener(&self, f: impl Fn(&Path) + Send + Sync + 'static) {
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(f));
    }

    /// Watch the mailbox at `dir`; `None` when a watch cannot be added.
    pub(crate) fn watch(&self, dir: &Path) -> Option<WatchGuard> {
        let mut st = self.lock();
        if let Some(d) = st.dirs.get_mut(dir) {
            d.refs += 1;
            return Some(WatchGuard {
                dir: dir.to_path_buf(),
            });
        }
        let files = AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_ONLYDIR;
        let cur = AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ONLYDIR;
        let new = AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_ONLYDIR;
        let mut wds = Vec::with_capacity(3);
        for (path, mask, part) in [
            (dir.to_path_buf(), files, Part::Top),
            (dir.join("new"), new, Part::New),
            (dir.join("cur"), cur, Part::Cur),
        ] {
            match self.inotify.add_watch(&path, mask) {
                Ok(wd) => wds.push((wd, part)),
                Err(e) => {
                    tracing::debug!(dir = %path.display(), error = %e, "cannot watch");
                    for (wd, _) in wds {
                        let _ = self.inotify.rm_watch(wd);
                    }
                    return None;
                }
            }
        }
        for (wd, part) in &wds {
            st.by_wd.insert(*wd, (dir.to_path_buf(), *part));
        }
        st.dirs.insert(
            dir.to_path_buf(),
            Dir {
                wds: [wds[0].0, wds[1].0, wds[2].0],
                refs: 1,
                cur_generation: 0,
            },
        );
        Some(WatchGuard {
            dir: dir.to_path_buf(),
        })
    }

    fn release(&self, dir: &Path) {
        let mut st = self.lock();
        let Some(d) = st.dirs.get_mut(dir) else {
            return;
        };
        d.refs -= 1;
        if d.refs > 0 {
            return;
        }
        let wds = d.wds;
        st.dirs.remove(dir);
        for wd in wds {
            // A watch the kernel dropped (directory removed) may have had
            // its number reused for another directory: leave that alone.
            if st.by_wd.get(&wd).is_some_and(|(d, _)| d == dir) {
                st.by_wd.remove(&wd);
                let _ = self.inotify.rm_watch(wd);
            }
        }
        st.expected.retain(|(d, _, _), _| d != dir);
    }

    /// Whether `dir` is watched.
    pub fn is_watched(&self, dir: &Path) -> bool {
        self.lock().dirs.contains_key(dir)
    }

    /// The generation of `dir`'s `cur/`: it changes whenever something
    /// other than this process's expected operations changed `cur/`. Reads
    /// the pending events first.
    pub(crate) fn cur_generation(&self, dir: &Path) -> Option<u64> {
        self.drain();
        self.lock().dirs.get(dir).map(|d| d.cur_generation)
    }

    /// Register an event this process is about to cause in `dir/cur/`.
    /// A no-op for a directory that is not watched.
    pub(crate) fn expect(&self, dir: &Path, kind: Expect, name: &str) {
        let mut st = self.lock();
        if !st.dirs.contains_key(dir) {
            return;
        }
        if st.expected.len() >= MAX_EXPECTED {
            st.expected.clear();
        }
        *st.expected
            .entry((dir.to_path_buf(), kind, OsString::from(name)))
            .or_insert(0) += 1;
    }

    /// Withdraw an expectation whose operation failed.
    pub(crate) fn unexpect(&self, dir: &Path, kind: Expect, name: &str) {
        let mut st = self.lock();
        let key = (dir.to_path_buf(), kind, OsString::from(name));
        if let Some(n) = st.expected.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                st.expected.remove(&key);
            }
        }
    }

    /// Read every pending event: update generations and call the listener
    /// once per mailbox directory with an unexpected event. Never blocks.
    pub fn drain(&self) {
        let mut touched: Vec<PathBuf> = Vec::new();
        {
            let mut st = self.lock();
            loop {
                let events = match self.inotify.read_events() {
                    Ok(ev) if !ev.is_empty() => ev,
                    Ok(_) | Err(nix::errno::Errno::EAGAIN) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "inotify read");
                        break;
                    }
                };
                for ev in events {
                    if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                        let dirs: Vec<PathBuf> = st.dirs.keys().cloned().collect();
                        for d in st.dirs.values_mut() {
                            d.cur_generation += 1;
                        }
                        st.expected.clear();
                        touched.extend(dirs);
                        continue;
                    }
                    let Some((dir, part)) = st.by_wd.get(&ev.wd).cloned() else {
                        continue;
                    };
                    if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                        // The directory is gone (or was unmounted).
                        st.by_wd.remove(&ev.wd);
                        if let Some(d) = st.dirs.get_mut(&dir) {
                            d.cur_generation += 1;
                        }
                        touched.push(dir);
                        continue;
                    }
                    match part {
                        Part::Top => {
                            // Only the index files and the keyword list
                            // matter; the cache file does not wake anyone.
                            let relevant =
                                ev.name.as_ref().and_then(|n| n.to_str()).is_some_and(|n| {
                                    n == crate::INDEX_FILE
                                        || n == crate::index::LOG_FILE
                                        || n == crate::KEYWORDS_FILE
                                });
                            if relevant {
                                touched.push(dir);
                            }
                        }
                        Part::New => touched.push(dir),
                        Part::Cur => {
                            let kind = if ev.mask.contains(AddWatchFlags::IN_MOVED_FROM) {
                                Some(Expect::MovedFrom)
                            } else if ev.mask.contains(AddWatchFlags::IN_MOVED_TO) {
                                Some(Expect::MovedTo)
                            } else if ev.mask.contains(AddWatchFlags::IN_DELETE) {
                                Some(Expect::Deleted)
                            } else {
                                None
                            };
                            let mut own = false;
                            if let (Some(kind), Some(name)) = (kind, ev.name) {
                                let key = (dir.clone(), kind, name);
                                if let Some(n) = st.expected.get_mut(&key) {
                                    own = true;
                                    *n -= 1;
                                    if *n == 0 {
                                        st.expected.remove(&key);
                                    }
                                }
                            }
                            if !own {
                                if let Some(d) = st.dirs.get_mut(&dir) {
                                    d.cur_generation += 1;
                                }
                                touched.push(dir);
                            }
                        }
                    }
                }
            }
        }
        if touched.is_empty() {
            return;
        }
        touched.sort();
        touched.dedup();
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(f) = listener {
            for d in &touched {
                f(d);
            }
        }
    }
}
