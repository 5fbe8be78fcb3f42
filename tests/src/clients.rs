//! Running Debian's mail clients (fetchmail, mutt, mbsync) against the
//! daemons: bounded in time, killed when they overrun, with their output
//! kept for the assertion messages.
//!
//! mutt needs a terminal; it runs under `script(1)` (a pseudo-terminal)
//! with its keystrokes given by `-e 'push ...'`, so nothing waits for a
//! human. A prompt nobody answers (for example an untrusted certificate)
//! makes mutt hang until the time bound kills it, which fails the test.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one client run may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a client run produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code; `None` when killed (time bound or signal).
    pub code: Option<i32>,
    /// stdout and stderr, in that order.
    pub output: String,
}

/// Run `cmd` with stdin from /dev/null, killing it after `timeout`.
pub fn run_bounded(cmd: Command, timeout: Duration) -> Run {
    run_with_stdin(cmd, timeout, false)
}

/// [`run_bounded`], optionally with stdin an open, silent pipe instead of
/// /dev/null: script(1) passes an end of input on as end-of-file keys to
/// the program in its terminal, which would interrupt mutt's pushed keys.
fn run_with_stdin(mut cmd: Command, timeout: Duration, open_stdin: bool) -> Run {
    let mut child = cmd
        .stdin(if open_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Held (never written) until the child has exited.
    let _stdin = child.stdin.take();
    let pipes: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().expect("stdout")),
        Box::new(child.stderr.take().expect("stderr")),
    ];
    let readers: Vec<_> = pipes
        .into_iter()
        .map(|mut p| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = p.read_to_end(&mut v);
                v
            })
        })
        .collect();
    let end = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() >= end {
            // The whole process group: script(1) and the mutt under it.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut output = String::new();
    for r in readers {
        output.push_str(&String::from_utf8_lossy(&r.join().unwrap_or_default()));
    }
    Run {
        code: status.and_then(|s| s.code()),
        output,
    }
}

/// Write an executable shell script.
pub fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A fetchmail set-up in `dir`: rc file (mode 0600, as fetchmail demands),
/// an MDA script storing each message in its own file under `dir/out`, and
/// the UIDL id file.
pub struct Fetchmail {
    pub dir: PathBuf,
    pub out: PathBuf,
}

impl Fetchmail {
    pub fn new(dir: &Path) -> Self {
        let out = dir.join("out");
        std::fs::create_dir_all(&out).expect("fetchmail dir");
        write_script(
            &dir.join("mda"),
            &format!("exec cat > \"$(mktemp {}/msg.XXXXXXXX)\"\n", out.display()),
        );
        Self {
            dir: dir.to_path_buf(),
            out,
        }
    }

    /// The `mda` clause for a poll entry.
    pub fn mda(&self) -> String {
        format!("mda \"{}\"", self.dir.join("mda").display())
    }

    /// Run fetchmail once (`-v`, no Received header, no address rewriting)
    /// with this rc text.
    pub fn run(&self, rc: &str) -> Run {
        let rcfile = self.dir.join("fetchmailrc");
        std::fs::write(&rcfile, rc).expect("rc");
        std::fs::set_permissions(&rcfile, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let mut cmd = Command::new("fetchmail");
        cmd.arg("-f")
            .arg(&rcfile)
            .args(["--nodetach", "-v", "--invisible", "--norewrite", "-i"])
            .arg(self.dir.join("fetchids"))
            .env("FETCHMAILHOME", &self.dir)
            .env("HOME", &self.dir)
            .env("LC_ALL", "C");
        run_bounded(cmd, CLIENT_TIMEOUT)
    }

    /// Contents of the delivered files, sorted; the files are removed so
    /// the next run starts empty.
    pub fn take(&self) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = std::fs::read_dir(&self.out)
            .expect("out dir")
            .flatten()
            .map(|e| {
                let d = std::fs::read(e.path()).expect("read");
                std::fs::remove_file(e.path()).expect("rm");
                d
            })
            .collect();
        v.sort();
        v
    }
}

/// Run mutt with `muttrc` on `folder` (a URL), typing `keys` (mutt's
/// `push` syntax: `<function>`, `<enter>`), under a pseudo-terminal.
/// Mutt's screen output is returned in [`Run::output`].
pub fn mutt(dir: &Path, muttrc: &str, folder: &str, keys: &str) -> Run {
    mutt_with_flags(dir, muttrc, folder, keys, "")
}

/// [`mutt`] with extra command-line flags (e.g. `-d 2`: a debug log in
/// `dir/.muttdebug0`).
pub fn mutt_with_flags(dir: &Path, muttrc: &str, folder: &str, keys: &str, flags: &str) -> Run {
    let rc = dir.join("muttrc");
    // mutt asks (outside curses, eating the pushed keys) whether to create
    // a missing ~/Mail.
    std::fs::create_dir_all(dir.join("Mail")).expect("~/Mail");
    std::fs::write(&rc, muttrc).expect("muttrc");
    // script(1) runs its command through a shell: quote for it.
    let inner = format!(
        "mutt -n {flags} -F '{}' -f '{folder}' -e 'push \"{keys}\"'",
        rc.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &inner, "/dev/null"])
        .env("TERM", "xterm")
        .env("HOME", dir)
        .env("LC_ALL", "C.UTF-8")
        .env_remove("MAIL");
    run_with_stdin(cmd, CLIENT_TIMEOUT, true)
}

/// A message's stored form (what fetchmail hands its MDA and what mutt
/// shows): CRLF line ends turned into LF.
pub fn lf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut i = 0;
    while i < message.len() {
        if !(message[i] == b'\r' && message.get(i + 1) == Some(&b'\n')) {
            out.push(message[i]);
        }
        i += 1;
    }
    out
}
