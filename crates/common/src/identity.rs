//! Working as the mailbox's owner: the file-system identity of one thread
//! (lmtp-delivery writes a system user's copy with it, pop3d reads and
//! changes the user's Maildir with it).
//!
//! authd's `UserInfo` carries the uid and gid that own a mailbox (`0` = the
//! daemon's own: virtual users under `vmail`). System users (`backend =
//! "system"`) own their `~/Maildir`, so their copy is written with their
//! identity: files and directories are created owned by them and every
//! permission check is theirs, exactly as if they had written it.
//!
//! This is done with Linux's `setfsuid(2)`/`setfsgid(2)`, which change only
//! the identity used for file-system access, only for the calling thread
//! (glibc does not broadcast them to the other threads, unlike `setuid`), and
//! leave the real, effective and saved ids alone, so the daemon can always
//! switch back. [`FsIdentity`] is a guard: created on the delivery thread
//! (a blocking thread, never a tokio worker), it switches, verifies that the
//! switch took effect, and restores the previous identity when dropped,
//! also when the delivery fails or panics. It is not `Send`, so it cannot
//! leave the thread it was made on.
//!
//! Switching to a uid other than the process's needs `CAP_SETUID` (and
//! `CAP_SETGID` for the gid); without them the switch fails and the
//! recipient gets `451 4.3.0`, never a copy written under the wrong owner.
//! When the fsuid moves from 0 to another uid the kernel also drops the
//! file capabilities (`CAP_DAC_OVERRIDE`, `CAP_CHOWN`, `CAP_FOWNER`, ...)
//! for that thread, so a daemon run as root gets the user's permission
//! checks too. Supplementary groups are not changed (that call is
//! process-wide): the daemon's own supplementary groups (none for `vmail`)
//! stay in the permission checks.
//!
//! A thread started by a switched thread inherits its identity (Linux
//! copies the credentials on `clone`), so nothing that may start a thread
//! runs under the guard: only file-system calls do. The tokio blocking
//! pool starts its threads from the async workers, which never switch.
//!
//! Root is never a target: uid 0 means "the daemon's own" in the contract,
//! and a target with a real uid but gid 0 (group root) is refused
//! ([`Owner::for_ids`]).

use std::marker::PhantomData;

use nix::unistd::{Gid, Uid, setfsgid, setfsuid};

/// Whose identity one recipient's copy is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The daemon's own (virtual users, and any user whose uid and gid are
    /// the process's).
    Daemon,
    /// Another user's, through [`FsIdentity`].
    User { uid: u32, gid: u32 },
}

/// Why a mailbox owner is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The directory gave group 0 (root) to a non-root owner: delivering
    /// with root's group is refused (route such mail through an alias).
    #[error("refusing to deliver as {uid}:0 (group root)")]
    RootGroup { uid: u32 },
    /// `setfsuid`/`setfsgid` did not take effect (no `CAP_SETUID` /
    /// `CAP_SETGID`).
    #[error(
        "cannot switch the file-system identity to {uid}:{gid} (still {fsuid}:{fsgid}); \
         the daemon needs CAP_SETUID and CAP_SETGID to deliver as other users"
    )]
    Switch {
        uid: u32,
        gid: u32,
        fsuid: u32,
        fsgid: u32,
    },
}

impl Owner {
    /// The owner for authd's `uid`/`gid` when the process runs as
    /// `own_uid`/`own_gid` (its effective ids). uid 0 is the daemon's own;
    /// a non-zero uid with gid 0 is refused.
    pub fn for_ids(uid: u32, gid: u32, own_uid: u32, own_gid: u32) -> Result<Owner, IdentityError> {
        if uid == 0 {
            return Ok(Owner::Daemon);
        }
        if gid == 0 {
            return Err(IdentityError::RootGroup { uid });
        }
        if uid == own_uid && gid == own_gid {
            return Ok(Owner::Daemon);
        }
        Ok(Owner::User { uid, gid })
    }

    /// [`Owner::for_ids`] with this process's effective ids.
    pub fn for_process(uid: u32, gid: u32) -> Result<Owner, IdentityError> {
        Owner::for_ids(
            uid,
            gid,
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }
}

/// The calling thread's file-system identity switched to another user's
/// until this guard is dropped. Not `Send`: it must be dropped on the
/// thread that made it.
#[derive(Debug)]
#[must_use = "the identity is restored when the guard is dropped"]
pub struct FsIdentity {
    prev_uid: Uid,
    prev_gid: Gid,
    _not_send: PhantomData<*const ()>,
}

/// The thread's current fsuid and fsgid, read without changing them
/// (`setfsuid(-1)` is refused by the kernel and returns the current value).
pub fn current() -> (u32, u32) {
    (
        setfsuid(Uid::from_raw(u32::MAX)).as_raw(),
        setfsgid(Gid::from_raw(u32::MAX)).as_raw(),
    )
}

/// `CAP_SETGID` and `CAP_SETUID` (linux/capability.h).
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
/// Bound on the `/proc/thread-self/status` read.
const MAX_STATUS: u64 = 64 * 1024;

/// The calling thread's effective capabilities (`CapEff:` of
/// `/proc/thread-self/status`); none when it cannot be read.
pub fn effective_capabilities() -> u64 {
    use std::io::Read;
    let mut text = String::new();
    if std::fs::File::open("/proc/thread-self/status")
        .and_then(|f| f.take(MAX_STATUS).read_to_string(&mut text))
        .is_err()
    {
        return 0;
    }
    text.lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

impl FsIdentity {
    /// Switch the calling thread to `uid:gid` for file-system access and
    /// verify that both took effect; on failure nothing stays changed.
    /// Without `CAP_SETUID`/`CAP_SETGID` in the thread's effective set the
    /// calls are not made at all.
    pub fn switch(uid: u32, gid: u32) -> Result<FsIdentity, IdentityError> {
        if uid == 0 || gid == 0 {
            // Owner::for_ids never yields these; refuse rather than gain root.
            return Err(IdentityError::RootGroup { uid });
        }
        // Checked before any setfs* call, even the read-only one in
        // current(): under the shipped unit's system-call filter (without
        // the drop-in in lmtp-delivery(8) SECURITY) setfsuid kills the
        // process instead of failing. This thread is not switched yet, so
        // its fs ids are the effective ids.
        let (euid, egid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let caps = effective_capabilities();
        let lacking = |cap: u32, from: u32, to: u32| from != to && caps & (1 << cap) == 0;
        if lacking(CAP_SETUID, euid, uid) || lacking(CAP_SETGID, egid, gid) {
            return Err(IdentityError::Switch {
                uid,
                gid,
                fsuid: euid,
                fsgid: egid,
            });
        }
        // Group first, while the uid still carries the privileges.
        let prev_gid = setfsgid(Gid::from_raw(gid));
        let prev_uid = setfsuid(Uid::from_raw(uid));
        let guard = FsIdentity {
            prev_uid,
            prev_gid,
            _not_send: PhantomData,
        };
        // setfsuid returns the previous value whether or not it changed
        // anything: ask again to see what is in effect now.
        let (fsuid, fsgid) = current();
        if fsuid != uid || fsgid != gid {
            drop(guard);
            return Err(IdentityError::Switch {
                uid,
                gid,
                fsuid,
                fsgid,
            });
        }
        Ok(guard)
    }
}

/// Run `f` with `owner`'s file-system identity on this thread (a blocking
/// thread: never a tokio worker that may start threads meanwhile), restoring
/// it afterwards. `Owner::Daemon` runs `f` as is.
pub fn as_owner<T>(owner: Owner, f: impl FnOnce() -> T) -> Result<T, IdentityError> {
    match owner {
        Owner::Daemon => Ok(f()),
        Owner::User { uid, gid } => {
            let _guard = FsIdentity::switch(uid, gid)?;
            Ok(f())
        }
    }
}

impl Drop for FsIdentity {
    fn drop(&mut self) {
        setfsuid(self.prev_uid);
        setfsgid(self.prev_gid);
        let now = current();
        if now != (self.prev_uid.as_raw(), self.prev_gid.as_raw()) {
            // Switching back to one's own ids cannot fail; if it did, this
            // thread would write the next mailbox with a stranger's
            // identity. A broken invariant: stop the process.
            tracing::error!(
                fsuid = now.0,
                fsgid = now.1,
                want_uid = self.prev_uid.as_raw(),
                want_gid = self.prev_gid.as_raw(),
                "cannot restore the file-system identity; aborting"
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn capabilities_are_read() {
        let caps = effective_capabilities();
        if nix::unistd::geteuid().is_root() {
            // Root in CI holds at least these two (a container may lack others).
            assert_ne!(caps & (1 << CAP_SETUID), 0, "{caps:x}");
            assert_ne!(caps & (1 << CAP_SETGID), 0, "{caps:x}");
        } else {
            assert_eq!(caps & (1 << CAP_SETUID), 0, "{caps:x}");
        }
    }

    #[test]
    fn owners() {
        assert_eq!(Owner::for_ids(0, 0, 5000, 5000), Ok(Owner::Daemon));
        assert_eq!(Owner::for_ids(0, 7, 5000, 5000), Ok(Owner::Daemon));
        assert_eq!(Owner::for_ids(5000, 5000, 5000, 5000), Ok(Owner::Daemon));
        assert_eq!(
            Owner::for_ids(1000, 1000, 5000, 5000),
            Ok(Owner::User {
                uid: 1000,
                gid: 1000
            })
        );
        assert_eq!(
            Owner::for_ids(5000, 100, 5000, 5000),
            Ok(Owner::User {
                uid: 5000,
                gid: 100
            })
        );
        assert_eq!(
            Owner::for_ids(1000, 0, 5000, 5000),
            Err(IdentityError::RootGroup { uid: 1000 })
        );
        assert!(FsIdentity::switch(0, 0).is_err());
        assert!(FsIdentity::switch(1000, 0).is_err());
    }

    /// As root (CI): files are created as the target, permission checks
    /// are the target's, other threads are unaffected, and dropping the
    /// guard restores the thread. Not root: the switch fails and changes
    /// nothing.
    #[test]
    fn switch_and_restore_on_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let locked = dir.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = nix::unistd::geteuid().is_root();
        let own = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let (uid, gid) = (65534, 65533);
        let path = dir.path().to_path_buf();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let (done, done_rx) = std::sync::mpsc::channel::<()>();
        let p = path.clone();
        let other = std::thread::spawn(move || {
            if go_rx.recv().is_ok() {
                std::fs::write(p.join("other"), b"x").unwrap();
                done.send(()).unwrap();
            }
        });
        std::thread::spawn(move || {
            assert_eq!(current(), own);
            match FsIdentity::switch(uid, gid) {
                Ok(guard) => {
                    assert!(root, "switched without privileges");
                    assert_eq!(current(), (uid, gid));
                    std::fs::write(path.join("as-user"), b"x").unwrap();
                    // The user's permission checks: no DAC override.
                    assert!(std::fs::write(path.join("locked/f"), b"x").is_err());
                    // A thread that existed before keeps the daemon's
                    // identity meanwhile.
                    go.send(()).unwrap();
                    done_rx.recv().unwrap();
                    drop(guard);
                }
                Err(e) => {
                    assert!(!root, "root could not switch: {e}");
                    assert!(matches!(e, IdentityError::Switch { .. }), "{e}");
                }
            }
            assert_eq!(current(), own, "identity restored");
            std::fs::write(path.join("after"), b"x").unwrap();
            // A panic while switched still restores (drop during unwind).
            if root {
                let r = std::panic::catch_unwind(|| {
                    let _g = FsIdentity::switch(uid, gid).unwrap();
                    panic!("delivery blew up");
                });
                assert!(r.is_err());
                assert_eq!(current(), own);
            }
        })
        .join()
        .unwrap();
        other.join().unwrap();
        let owner = |n: &str| {
            let m = std::fs::metadata(dir.path().join(n)).unwrap();
            (m.uid(), m.gid())
        };
        if root {
            assert_eq!(owner("as-user"), (uid, gid));
            assert_eq!(owner("other"), own);
        }
        assert_eq!(owner("after"), own);
    }
}
