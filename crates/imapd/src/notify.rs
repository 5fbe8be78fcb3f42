//! Mailbox change wake-ups for IDLE.
//!
//! The mail store's inotify watcher ([`mailstore::watch`]) sees a delivery
//! into `new/`, another session's or process's index log append, and
//! changes other programs make in `cur/`. One task per process waits for
//! the watcher's descriptor to become readable and drains it; the
//! watcher's listener then wakes the IDLE sessions of that mailbox through
//! a [`Notify`] per mailbox directory. Sessions still poll slowly
//! ([`crate::session::IDLE_POLL_WATCHED`]) in case a wake-up is lost, and
//! fast ([`crate::session::IDLE_POLL`]) where there is no watcher.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

type Registry = Mutex<HashMap<PathBuf, Weak<Notify>>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// The watcher's descriptor, borrowed (the watcher owns and keeps it).
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Start the drain task once per process; false when it cannot run.
fn start(w: &'static mailstore::watch::Watcher) -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    *STARTED.get_or_init(|| {
        w.set_listener(|dir: &Path| {
            let n = registry()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(dir)
                .and_then(Weak::upgrade);
            if let Some(n) = n {
                n.notify_waiters();
            }
        });
        // SAFETY: the descriptor belongs to the process-wide watcher, a
        // `'static` that is never dropped, so it stays open and means the
        // same inotify instance for the whole life of this `AsyncFd`.
        let registered =
            unsafe { AsyncFd::register_with_interest(Fd(w.raw_fd()), Interest::READABLE) };
        let fd = match registered.map_err(|e| e.into_parts().1) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(error = %e, "cannot wait on inotify: IDLE polls");
                return false;
            }
        };
        tokio::spawn(async move {
            loop {
                match fd.readable().await {
                    Ok(mut ready) => {
                        // Clear first: an event after the drain makes the
                        // descriptor ready again.
                        ready.clear_ready();
                        w.drain();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "inotify wait failed: IDLE polls");
                        return;
                    }
                }
            }
        });
        true
    })
}

/// The wake-up of the mailbox at `dir` (shared by its IDLE sessions);
/// `None` when changes are not watched (then IDLE polls).
pub fn subscribe(dir: &Path) -> Option<Arc<Notify>> {
    let w = mailstore::watch::global()?;
    if !start(w) {
        return None;
    }
    let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = reg.get(dir).and_then(Weak::upgrade) {
        return Some(n);
    }
    reg.retain(|_, n| n.strong_count() > 0);
    let n = Arc::new(Notify::new());
    reg.insert(dir.to_path_buf(), Arc::downgrade(&n));
    Some(n)
}
