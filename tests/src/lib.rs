//! Test harness: start real postern binaries on a temporary directory with
//! free loopback ports, wait for their systemd-style `READY=1`, and stop them
//! (SIGTERM, then SIGKILL) when dropped.
//!
//! The binaries are taken from the same target directory as the test
//! executable; `cargo test --workspace` (and `make test`) builds them first.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The daemons, in start order.
pub const DAEMONS: [&str; 6] = [
    "authd",
    "lmtp-delivery",
    "queue-manager",
    "smtpd",
    "pop3d",
    "imapd",
];

/// How long a daemon may take to become ready or to stop.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Directory holding the workspace binaries.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary; panics with a hint when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace` (make test does)",
        p.display()
    );
    p
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A temporary installation: directory, certificate, ports and config file.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub ports: BTreeMap<&'static str, u16>,
    pub cert: postern_common::devcert::DevCert,
    pub config_path: PathBuf,
}

impl TestEnv {
    /// A fresh environment with the default test configuration written.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pt")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let cert = postern_common::devcert::ensure(
            &dir.path().join("tls"),
            &["mail.example.test", "localhost"],
        )
        .expect("certificate");
        let ports = [
            "smtp",
            "submission",
            "submissions",
            "pop3",
            "pop3s",
            "imap",
            "imaps",
        ]
        .into_iter()
        .map(|n| (n, free_port()))
        .collect();
        let env = Self {
            config_path: dir.path().join("postern.toml"),
            dir,
            ports,
            cert,
        };
        env.write_config("");
        env
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The base configuration text, with `extra` appended to `[global]`-less
    /// tail (pass whole sections, e.g. `"[log]\nformat = \"json\"\n"`).
    pub fn config_text(&self, log: &str) -> String {
        let d = self.path().display();
        let p = |n: &str| self.ports[n];
        format!(
            r#"[global]
myhostname = "mail.example.test"
mydomain = "example.test"
state_directory = "{d}/lib"
run_directory = "{d}/run"
shutdown_timeout = "5s"

[log]
{log}

[tls]
cert_file = "{cert}"
key_file = "{key}"

[smtpd]
listener = [
  {{ name = "smtp", address = "127.0.0.1:{smtp}", role = "mx" }},
  {{ name = "submission", address = "127.0.0.1:{sub}", role = "submission" }},
  {{ name = "submissions", address = "127.0.0.1:{subs}", role = "submissions" }},
]

[pop3d]
listener = [
  {{ name = "pop3", address = "127.0.0.1:{pop3}", role = "pop3" }},
  {{ name = "pop3s", address = "127.0.0.1:{pop3s}", role = "pop3s" }},
]

[imapd]
listener = [
  {{ name = "imap", address = "127.0.0.1:{imap}", role = "imap" }},
  {{ name = "imaps", address = "127.0.0.1:{imaps}", role = "imaps" }},
]
"#,
            cert = self.cert.cert_file.display(),
            key = self.cert.key_file.display(),
            smtp = p("smtp"),
            sub = p("submission"),
            subs = p("submissions"),
            pop3 = p("pop3"),
            pop3s = p("pop3s"),
            imap = p("imap"),
            imaps = p("imaps"),
        )
    }

    /// (Re)write the config file; `log` is the body of the `[log]` section.
    pub fn write_config(&self, log: &str) {
        let log = if log.is_empty() {
            "level = \"info\""
        } else {
            log
        };
        std::fs::write(&self.config_path, self.config_text(log)).expect("write config");
    }

    /// A socket path under the environment's run directory.
    pub fn socket(&self, rel: &str) -> PathBuf {
        self.path().join("run").join(rel)
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// A running daemon process.
pub struct Daemon {
    pub name: String,
    child: Child,
    notify: UnixDatagram,
    notify_path: PathBuf,
    notifications: Vec<String>,
    output: Arc<Mutex<String>>,
    /// Threads copying stdout/stderr; joined once the process has exited so
    /// that `output()` then holds everything it wrote.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Start `name` with the environment's config and wait for `READY=1`.
    pub fn start(env: &TestEnv, name: &str) -> Self {
        let mut d = Self::spawn(env, name, Command::new(bin(name)));
        if let Err(e) = d.wait_notification("READY=1", TIMEOUT) {
            panic!(
                "{name} did not become ready: {e}\n--- output ---\n{}",
                d.output()
            );
        }
        d
    }

    /// Spawn `cmd` (a daemon binary, or a wrapper) with `--config` and a
    /// private `NOTIFY_SOCKET`, without waiting.
    pub fn spawn(env: &TestEnv, name: &str, mut cmd: Command) -> Self {
        let notify_path = env.path().join(format!("notify-{name}-{}", free_port()));
        let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .ok();
        let mut child = cmd
            .arg("--config")
            .arg(&env.config_path)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("JOURNAL_STREAM")
            .env_remove("POSTERN_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = output.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                    o.push_str(&line);
                    o.push('\n');
                }
            }));
        }
        Self {
            name: name.to_string(),
            child,
            notify,
            notify_path,
            notifications: Vec::new(),
            output,
            readers,
        }
    }

    /// Everything the daemon wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Wait until the output contains `needle`.
    pub fn wait_output(&self, needle: &str, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.output().contains(needle) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "{:?} not seen in output:\n{}",
            needle,
            self.output()
        ))
    }

    /// Wait for an sd_notify line such as `READY=1` or `STOPPING=1`.
    pub fn wait_notification(&mut self, line: &str, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if self.notifications.iter().any(|n| n == line) {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(format!("no {line} (got {:?})", self.notifications));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Drain what is left, then give up.
                while let Ok(n) = self.notify.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                    self.notifications.extend(msg.lines().map(str::to_string));
                }
                if self.notifications.iter().any(|n| n == line) {
                    return Ok(());
                }
                return Err(format!("exited with {status} before {line}"));
            }
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                self.notifications.extend(msg.lines().map(str::to_string));
            }
        }
    }

    /// Send a signal.
    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), sig);
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for exit up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                // The pipes reach EOF unless a grandchild still holds them.
                for r in std::mem::take(&mut self.readers) {
                    let _ = r.join();
                }
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM and wait; returns the exit status (SIGKILL after [`TIMEOUT`]).
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        match self.wait_exit(TIMEOUT) {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                self.child.wait().expect("wait")
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.is_running() {
            self.signal(Signal::SIGTERM);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        let _ = std::fs::remove_file(&self.notify_path);
    }
}

/// Run a binary to completion with the environment's config; returns
/// (exit code, stdout, stderr).
pub fn run_tool(env: &TestEnv, name: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin(name))
        .arg("--config")
        .arg(&env.config_path)
        .args(args)
        .env_remove("POSTERN_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
pub mod clients;
pub mod db;
pub mod dnsmasq;
pub mod dovecot;
pub mod postfix;
pub mod stack;
pub mod sysuser;
