//! Reading passwords: from the terminal (`/dev/tty`) with echo off, or the
//! first line of standard input (`--password-stdin`). Never from argv.
//!
//! While echo is off, a guard restores the terminal when the prompt ends,
//! whether reading succeeded or failed; SIGINT, SIGTERM and SIGHUP during the
//! prompt restore it too before the process dies with that signal.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use directory::Secret;
use directory::scheme::MAX_PASSWORD_LEN;
use nix::sys::termios::{self, LocalFlags, SetArg, Termios};

/// Where the password comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Ask on the terminal with echo off.
    Prompt,
    /// First line of standard input.
    Stdin,
}

impl Source {
    pub fn from_flag(password_stdin: bool) -> Self {
        if password_stdin {
            Source::Stdin
        } else {
            Source::Prompt
        }
    }
}

/// A new password: asked twice on the terminal (they must match), or read
/// once from stdin.
pub fn read_new(source: Source) -> Result<Secret<String>, String> {
    match source {
        Source::Stdin => first_line(std::io::stdin().lock()),
        Source::Prompt => {
            let first = prompt("New password: ")?;
            let again = prompt("Retype new password: ")?;
            if first.expose() != again.expose() {
                return Err("passwords do not match".into());
            }
            Ok(first)
        }
    }
}

/// A password to check: asked once, or read from stdin.
pub fn read_once(source: Source) -> Result<Secret<String>, String> {
    match source {
        Source::Stdin => first_line(std::io::stdin().lock()),
        Source::Prompt => prompt("Password: "),
    }
}

/// The first line of `r`, without its line end; bounded to
/// [`MAX_PASSWORD_LEN`] bytes; must be UTF-8 and not empty.
pub fn first_line(r: impl Read) -> Result<Secret<String>, String> {
    let mut buf = Vec::new();
    BufReader::new(r.take(MAX_PASSWORD_LEN as u64 + 3))
        .read_until(b'\n', &mut buf)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    let had_newline = buf.last() == Some(&b'\n');
    if had_newline {
        buf.pop();
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    if buf.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "password longer than {MAX_PASSWORD_LEN} bytes refused"
        ));
    }
    let pw = String::from_utf8(buf).map_err(|_| "password is not valid UTF-8".to_string())?;
    if pw.is_empty() {
        return Err("empty password refused".into());
    }
    Ok(Secret::new(pw))
}

/// The terminal settings saved before echo was turned off, for the signal
/// handler. Set once: it is the same terminal every time.
static SAVED: OnceLock<nix::libc::termios> = OnceLock::new();
/// The descriptor of `/dev/tty` during a prompt, -1 otherwise.
static TTY_FD: AtomicI32 = AtomicI32::new(-1);

/// Restores the saved terminal settings when dropped.
struct EchoOff<'a> {
    tty: &'a File,
    saved: Termios,
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.tty.as_fd(), SetArg::TCSAFLUSH, &self.saved);
    }
}

extern "C" fn restore_and_die(sig: nix::libc::c_int) {
    let fd = TTY_FD.load(Ordering::SeqCst);
    if let (Some(raw), true) = (SAVED.get(), fd >= 0) {
        // tcsetattr(3) is async-signal-safe.
        // SAFETY: a plain system call on the open terminal descriptor, with
        // a valid termios value.
        unsafe {
            nix::libc::tcsetattr(fd, nix::libc::TCSANOW, raw);
        }
    }
    // SAFETY: back to the default disposition, then die of the signal.
    unsafe {
        nix::libc::signal(sig, nix::libc::SIG_DFL);
        nix::libc::raise(sig);
    }
}

fn catch_signals() -> Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(
        SigHandler::Handler(restore_and_die),
        SaFlags::empty(),
        SigSet::empty(),
    );
    let mut old = Vec::new();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only calls async-signal-safe functions.
        if let Ok(prev) = unsafe { sigaction(sig, &action) } {
            old.push((sig, prev));
        }
    }
    old
}

fn restore_signals(old: Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)>) {
    for (sig, prev) in old {
        // SAFETY: reinstating the disposition that was there before.
        let _ = unsafe { nix::sys::signal::sigaction(sig, &prev) };
    }
}

/// Ask for a password on the controlling terminal with echo off.
pub fn prompt(text: &str) -> Result<Secret<String>, String> {
    let tty = File::options()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| {
            "no terminal to ask for the password on; pipe it with --password-stdin".to_string()
        })?;
    let saved = termios::tcgetattr(tty.as_fd())
        .map_err(|e| format!("/dev/tty: cannot read the terminal settings: {e}"))?;
    let _ = SAVED.set(saved.clone().into());
    TTY_FD.store(tty.as_raw_fd(), Ordering::SeqCst);
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    let old_handlers = catch_signals();
    let result = (|| {
        (&tty)
            .write_all(text.as_bytes())
            .and_then(|()| (&tty).flush())
            .map_err(|e| format!("/dev/tty: {e}"))?;
        termios::tcsetattr(tty.as_fd(), SetArg::TCSAFLUSH, &quiet)
            .map_err(|e| format!("/dev/tty: cannot turn echo off: {e}"))?;
        let _guard = EchoOff {
            tty: &tty,
            saved: saved.clone(),
        };
        first_line(&tty)
    })();
    restore_signals(old_handlers);
    TTY_FD.store(-1, Ordering::SeqCst);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_strips_line_ends_and_ignores_the_rest() {
        assert_eq!(first_line(&b"pw\nsecond\n"[..]).unwrap().expose(), "pw");
        assert_eq!(first_line(&b"pw\r\n"[..]).unwrap().expose(), "pw");
        assert_eq!(
            first_line(&b"no newline"[..]).unwrap().expose(),
            "no newline"
        );
        assert_eq!(
            first_line(&b" spaces kept \n"[..]).unwrap().expose(),
            " spaces kept "
        );
    }

    #[test]
    fn first_line_refuses_empty_long_and_non_utf8() {
        assert!(first_line(&b"\n"[..]).is_err());
        assert!(first_line(&b""[..]).is_err());
        assert!(first_line(&b"\xff\xfe\n"[..]).is_err());
        let long = vec![b'a'; MAX_PASSWORD_LEN + 1];
        assert!(first_line(&long[..]).is_err());
        let mut ok = vec![b'a'; MAX_PASSWORD_LEN];
        ok.push(b'\n');
        assert_eq!(
            first_line(&ok[..]).unwrap().expose().len(),
            MAX_PASSWORD_LEN
        );
    }
}
