//! A throwaway Unix account (`useradd`, password set with `chpasswd` as
//! SHA512 crypt), removed with `userdel -r` on drop. Needs root.

use std::io::Write;
use std::process::{Command, Stdio};

/// A Unix user that exists while this value lives.
pub struct SystemUser {
    pub name: String,
    pub uid: u32,
}

impl SystemUser {
    /// Create `pt<random>` with `password`. Panics (with the reason) when
    /// not root or when the shadow tools are missing.
    pub fn create(password: &str) -> Self {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "the system-user test needs root (useradd/chpasswd); CI runs as root"
        );
        let mut b = [0u8; 5];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
            .expect("/dev/urandom");
        let name = format!(
            "pt{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        );
        let out = Command::new("useradd")
            .args(["--create-home", "--shell", "/usr/sbin/nologin", &name])
            .output()
            .unwrap_or_else(|e| panic!("cannot run useradd (package passwd): {e}"));
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // From here on, drop removes the account even if a step fails.
        let uid = nix::unistd::User::from_name(&name)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw());
        let user = SystemUser {
            name,
            uid: uid.unwrap_or(0),
        };
        assert!(uid.is_some(), "{} not in the passwd database", user.name);
        let mut c = Command::new("chpasswd")
            .args(["--crypt-method", "SHA512"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chpasswd");
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{}:{password}\n", user.name).as_bytes())
            .unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "chpasswd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        user
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        let ok = Command::new("userdel")
            .args(["-r", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("warning: userdel -r {} failed", self.name);
        }
    }
}
