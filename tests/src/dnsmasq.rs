//! Debian's dnsmasq as the real DNS server of a test: on 127.0.0.1 at a
//! free port, authoritative for `.test` (every other name under it is
//! NXDOMAIN), with the records a test gives it, queries logged to
//! `<dir>/dnsmasq.log`. Stopped (SIGTERM, then SIGKILL) when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running dnsmasq.
pub struct Dnsmasq {
    child: Child,
}

impl Dnsmasq {
    /// Start dnsmasq on 127.0.0.1:`port` with `extra` options (records such
    /// as `--mx-host=…`, `--txt-record=…`, more `--local=/zone/`); waits
    /// until it answers over TCP (it binds UDP and TCP together).
    pub fn start(dir: &Path, port: u16, extra: &[String]) -> Dnsmasq {
        let bin = "/usr/sbin/dnsmasq";
        assert!(
            Path::new(bin).exists(),
            "dnsmasq not found: install the test dependencies (scripts/test-deps.sh, package dnsmasq-base)"
        );
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| "root".into());
        let child = Command::new(bin)
            .args([
                "--no-daemon".to_string(),
                "--keep-in-foreground".into(),
                format!("--port={port}"),
                "--listen-address=127.0.0.1".into(),
                "--bind-interfaces".into(),
                "--no-resolv".into(),
                "--no-hosts".into(),
                "--conf-file=/dev/null".into(),
                format!("--user={user}"),
                format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
                "--local=/test/".into(),
                "--log-queries".into(),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("dnsmasq.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("dnsmasq.err")).unwrap())
            .spawn()
            .expect("start dnsmasq");
        let d = Dnsmasq { child };
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "dnsmasq did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
