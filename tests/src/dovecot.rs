//! A throwaway instance of Debian's Dovecot (packages `dovecot-core`,
//! `dovecot-imapd`, `dovecot-pop3d`, `dovecot-lmtpd`, installed by
//! `make test-deps`): `dovecot -F -c <conf>` with its own `base_dir`,
//! `state_dir` and log under a temporary directory, a passwd-file passdb
//! and userdb, IMAP, POP3 and LMTP on 127.0.0.1 on free ports (no TLS),
//! LMTP also on a Unix socket in `base_dir`. The system's `/etc/dovecot` and any running
//! Dovecot are left alone.
//!
//! Mail is accessed as the `mail` account (uid/gid 8 on Debian):
//! Dovecot refuses to touch mailboxes as root, so a Maildir it should read
//! must belong to `mail` ([`Dovecot::hand_over`]). Drop stops the master
//! (SIGTERM, SIGKILL after a timeout) and removes the directory. Needs root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};

use crate::free_port;

/// One passwd-file account.
pub struct DovecotUser<'a> {
    /// Login name and LMTP recipient, e.g. `alice@example.test`.
    pub name: &'a str,
    pub password: &'a str,
    /// `mail_location` for this user (`maildir:/path`); `None`: the
    /// instance's default, `~/Maildir` under a home in the temporary dir.
    pub mail: Option<String>,
}

/// A running Dovecot instance.
pub struct Dovecot {
    dir: tempfile::TempDir,
    master: Child,
    pub imap_port: u16,
    pub pop3_port: u16,
    /// Dovecot's LMTP on 127.0.0.1 (besides the Unix socket).
    pub lmtp_port: u16,
    uid: u32,
    gid: u32,
}

fn missing(what: &str) -> ! {
    panic!(
        "{what} not found: install the test dependencies with `make test-deps` (scripts/test-deps.sh)"
    )
}

impl Dovecot {
    pub const COMMAND: &'static str = "/usr/sbin/dovecot";
    pub const DOVEADM: &'static str = "/usr/bin/doveadm";

    /// Start an instance serving `users`.
    pub fn start(users: &[DovecotUser<'_>]) -> Self {
        Self::start_with(users, "")
    }

    /// [`start`](Self::start) with `extra` appended to `dovecot.conf`
    /// (settings there win over the base ones).
    pub fn start_with(users: &[DovecotUser<'_>], extra: &str) -> Self {
        for p in [
            Self::COMMAND,
            Self::DOVEADM,
            "/usr/lib/dovecot/imap",
            "/usr/lib/dovecot/pop3",
            "/usr/lib/dovecot/lmtp",
        ] {
            if !Path::new(p).exists() {
                missing(p);
            }
        }
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "the Dovecot test needs root; CI runs as root"
        );
        let mail = User::from_name("mail")
            .ok()
            .flatten()
            .unwrap_or_else(|| missing("the `mail` account"));
        let (uid, gid) = (mail.uid.as_raw(), mail.gid.as_raw());
        let dir = tempfile::Builder::new()
            .prefix("ptdc")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let d = dir.path();
        for sub in ["run", "state", "home"] {
            std::fs::create_dir(d.join(sub)).expect("mkdir");
        }
        // Dovecot's login processes (dovenull) must reach base_dir.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        nix::unistd::chown(&d.join("home"), Some(mail.uid), Some(mail.gid)).expect("chown home");
        let mut passwd = String::new();
        for u in users {
            let local = u.name.split('@').next().unwrap_or(u.name);
            let extra = u
                .mail
                .as_ref()
                .map(|m| format!("userdb_mail={m}"))
                .unwrap_or_default();
            passwd.push_str(&format!(
                "{}:{{PLAIN}}{}:{uid}:{gid}::{}::{extra}\n",
                u.name,
                u.password,
                d.join("home").join(local).display()
            ));
        }
        std::fs::write(d.join("users"), passwd).expect("users");
        let (imap_port, pop3_port, lmtp_port) = (free_port(), free_port(), free_port());
        let conf = format!(
            r#"# postern test instance
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
instance_name = postern-test-{imap_port}
protocols = imap pop3 lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = {uid}
last_valid_uid = {uid}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
{extra}
"#,
            d = d.display()
        );
        std::fs::write(d.join("dovecot.conf"), conf).expect("dovecot.conf");
        let master = Command::new(Self::COMMAND)
            .arg("-F")
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dovecot: {e}"));
        let dc = Dovecot {
            dir,
            master,
            imap_port,
            pop3_port,
            lmtp_port,
            uid,
            gid,
        };
        dc.wait_ready();
        dc
    }

    fn wait_ready(&self) {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let up = std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.pop3_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.lmtp_port)).is_ok()
                && self.lmtp_socket().exists();
            if up {
                return;
            }
            assert!(
                Instant::now() < end,
                "Dovecot not ready\n--- log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The master process id.
    pub fn pid(&self) -> u32 {
        self.master.id()
    }

    /// The configuration file (`doveadm -c`).
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    /// Dovecot's LMTP socket (mode 0666).
    pub fn lmtp_socket(&self) -> PathBuf {
        self.dir.path().join("run/lmtp")
    }

    /// The default Maildir of `user` (`~/Maildir`).
    pub fn maildir(&self, user: &str) -> PathBuf {
        let local = user.split('@').next().unwrap_or(user);
        self.dir.path().join("home").join(local).join("Maildir")
    }

    /// The instance's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Give `path` (recursively) to the account Dovecot accesses mail as.
    pub fn hand_over(&self, path: &Path) {
        let st = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path)
            .status()
            .expect("chown");
        assert!(st.success(), "chown -R {}", path.display());
    }

    /// Run `doveadm -c <conf> <args>`; returns (success, stdout, stderr).
    pub fn doveadm(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(Self::DOVEADM)
            .arg("-c")
            .arg(self.config())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run doveadm: {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.master.id() as i32), Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = self.master.try_wait() {
                break;
            }
            if Instant::now() > end {
                let _ = self.master.kill();
                let _ = self.master.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The TempDir removes configuration, mail and log.
    }
}
