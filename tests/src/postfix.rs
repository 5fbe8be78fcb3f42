//! A throwaway instance of Debian's Postfix (package `postfix`, installed
//! by `make test-deps`): its own configuration directory, queue and data
//! directory under a temporary directory, smtpd on 127.0.0.1 on a free
//! port, every service unchrooted. The system's `/etc/postfix` is only
//! read (its `master.cf` is the template), never changed, and the
//! system's Postfix, if any, is left alone.
//!
//! `postfix -c <dir> start` runs the instance; drop runs
//! `postfix -c <dir> stop`, waits for the master to exit (SIGKILL after
//! a timeout) and removes the directory. Needs root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, chown};

use crate::free_port;

/// A running Postfix instance.
pub struct Postfix {
    dir: tempfile::TempDir,
    /// The smtpd port on 127.0.0.1.
    pub port: u16,
}

fn missing(what: &str) -> ! {
    panic!(
        "{what} not found: install the test dependencies with `make test-deps` (scripts/test-deps.sh)"
    )
}

impl Postfix {
    /// Path of the `postfix` command.
    pub const COMMAND: &'static str = "/usr/sbin/postfix";

    /// Start an instance whose `main.cf` is the base settings plus `extra`
    /// (`key = value` lines, which win over the base ones).
    pub fn start(extra: &str) -> Self {
        for p in [Self::COMMAND, "/etc/postfix/master.cf"] {
            if !Path::new(p).exists() {
                missing(p);
            }
        }
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "the Postfix test needs root (postfix start); CI runs as root"
        );
        let owner = User::from_name("postfix")
            .ok()
            .flatten()
            .unwrap_or_else(|| missing("the `postfix` account"));
        let dir = tempfile::Builder::new()
            .prefix("ptpf")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let d = dir.path();
        for sub in ["etc", "spool", "data"] {
            std::fs::create_dir(d.join(sub)).expect("mkdir");
        }
        chown(&d.join("data"), Some(owner.uid), None).expect("chown data_directory");
        let port = free_port();
        let master = std::fs::read_to_string("/etc/postfix/master.cf").expect("master.cf");
        std::fs::write(d.join("etc/master.cf"), master_cf(&master, port)).expect("master.cf");
        let main = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {d}/spool\n\
             data_directory = {d}/data\n\
             maillog_file_prefixes = {d}\n\
             maillog_file = {d}/maillog\n\
             myhostname = postfix.example.test\n\
             mydestination =\n\
             alias_maps =\n\
             alias_database =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             smtputf8_enable = no\n\
             {extra}\n",
            d = d.display()
        );
        std::fs::write(d.join("etc/main.cf"), main).expect("main.cf");
        let pf = Postfix { dir, port };
        let out = pf.command(&["start"]);
        assert!(
            out.status.success(),
            "postfix start failed ({}):\n{}{}\n--- maillog ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            pf.log()
        );
        pf.wait_listening();
        pf
    }

    /// The configuration directory (`postfix -c`).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    /// The instance's log (`maillog_file`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    fn command(&self, args: &[&str]) -> std::process::Output {
        Command::new(Self::COMMAND)
            .arg("-c")
            .arg(self.config_dir())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run postfix: {e}"))
    }

    fn wait_listening(&self) {
        let end = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < end,
                "Postfix smtpd not listening on 127.0.0.1:{}\n--- maillog ---\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn master_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("spool/pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Whether `pid` is gone (or a zombie waiting for its reaper).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
    }
}

/// Debian's `master.cf` with smtpd on `127.0.0.1:<port>` and every service
/// unchrooted (the chroot would hide authd's socket and the certificate).
pub fn master_cf(template: &str, port: u16) -> String {
    let mut out = String::new();
    for line in template.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let service_line =
            !line.starts_with(|c: char| c.is_whitespace() || c == '#') && fields.len() >= 8;
        if !service_line {
            out.push_str(line);
        } else {
            let mut f: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
            if f[0] == "smtp" && f[1] == "inet" {
                f[0] = format!("127.0.0.1:{port}");
            }
            f[4] = "n".into();
            out.push_str(&f.join(" "));
        }
        out.push('\n');
    }
    out
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let pid = self.master_pid();
        let _ = self.command(&["stop"]);
        if let Some(pid) = pid {
            let end = Instant::now() + Duration::from_secs(20);
            while !gone(pid) {
                if Instant::now() > end {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // The TempDir removes configuration, queue and log.
    }
}
