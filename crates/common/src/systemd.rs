//! systemd integration: `sd_notify` states and socket activation.
//!
//! All of it degrades to nothing outside systemd: without `NOTIFY_SOCKET`
//! the notifications are no-ops, without `LISTEN_FDS` the daemon binds its
//! own sockets (see [`crate::listen`]).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use sd_notify::NotifyState;

/// `READY=1` with a status line: the daemon has bound its sockets.
pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STOPPING=1`: shutdown has begun.
pub fn notify_stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// `RELOADING=1`: a SIGHUP reload is in progress (follow with [`notify_ready`]).
pub fn notify_reloading() {
    notify(&[NotifyState::Reloading]);
}

/// `WATCHDOG=1`: still alive.
pub fn notify_watchdog() {
    notify(&[NotifyState::Watchdog]);
}

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// If the service manager asked for watchdog pings (`WatchdogSec=`), the
/// interval at which to send them (half the timeout, as systemd advises).
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec / 2))
    } else {
        None
    }
}

/// A socket passed by systemd (`LISTEN_FDS`), with its `FileDescriptorName=`.
#[derive(Debug)]
pub struct ActivatedSocket {
    pub name: String,
    pub fd: OwnedFd,
}

/// First file descriptor passed by systemd (sd_listen_fds(3)).
pub const SD_LISTEN_FDS_START: RawFd = 3;

/// Bound on how many sockets we accept from the service manager.
pub const MAX_LISTEN_FDS: usize = 64;

/// Take the sockets passed by systemd, once per process: checks
/// `LISTEN_PID`, reads `LISTEN_FDS` and `LISTEN_FDNAMES`, marks the
/// descriptors close-on-exec and removes the variables so children do not
/// inherit them.
pub fn take_listen_fds() -> Vec<ActivatedSocket> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    // SAFETY-free: only environment manipulation, done before threads that
    // read these variables exist (called from main before the runtime).
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: called at start-up, before other threads are spawned.
        unsafe { std::env::remove_var(var) };
    }
    if !pid_ok || count == 0 {
        return Vec::new();
    }
    if count > MAX_LISTEN_FDS {
        tracing::warn!(
            count,
            max = MAX_LISTEN_FDS,
            "too many LISTEN_FDS, ignoring the rest"
        );
    }
    (0..count.min(MAX_LISTEN_FDS))
        .map(|i| {
            let raw = SD_LISTEN_FDS_START + i as RawFd;
            // SAFETY: systemd passes these descriptors to us and nobody else
            // owns them; LISTEN_PID matched our pid.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let _ = nix::fcntl::fcntl(
                &fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
            ActivatedSocket {
                name: names.get(i).cloned().unwrap_or_else(|| "unknown".into()),
                fd,
            }
        })
        .collect()
}
