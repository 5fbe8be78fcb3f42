//! Throwaway database servers for the directory backends: a MariaDB and a
//! PostgreSQL server from the Debian packages (`make test-deps` installs
//! them), each initialised in a fresh temporary directory, listening on
//! 127.0.0.1 on a free port, with a database `postern` owned by a user
//! `postern` with a random password. Stopped (and the directory removed)
//! on drop.
//!
//! Run as root (as CI does), the servers run as the packages' `mysql` and
//! `postgres` accounts; otherwise as the current user. A missing server
//! binary is a test failure that names `make test-deps`, never a skip.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User, chown};

use crate::free_port;

/// How long a server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    MariaDb,
    Postgres,
}

/// A running database server.
pub struct DbServer {
    pub kind: DbKind,
    pub port: u16,
    /// `mysql://postern:<pw>@127.0.0.1:<port>/postern` or `postgres://...`.
    pub url: String,
    dir: tempfile::TempDir,
    child: Child,
    /// The account the server runs as (root: `mysql` / `postgres`).
    run_as: Option<User>,
    log: PathBuf,
}

fn missing(what: &str) -> ! {
    panic!(
        "{what} not found: install the test dependencies with `make test-deps` (scripts/test-deps.sh)"
    )
}

fn random_token() -> String {
    let mut b = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("/dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `account` when running as root (the server refuses root), else nobody.
fn service_account(account: &str) -> Option<User> {
    if !Uid::effective().is_root() {
        return None;
    }
    Some(
        User::from_name(account)
            .ok()
            .flatten()
            .unwrap_or_else(|| missing(&format!("the `{account}` account"))),
    )
}

fn as_account(cmd: &mut Command, user: &Option<User>) {
    if let Some(u) = user {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
}

fn check(what: &str, out: std::io::Result<Output>) -> Output {
    let out = out.unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl DbServer {
    /// Start a throwaway MariaDB.
    pub fn mariadb() -> Self {
        let install = Path::new("/usr/bin/mariadb-install-db");
        let server = Path::new("/usr/sbin/mariadbd");
        let client = Path::new("/usr/bin/mariadb");
        for p in [install, server, client] {
            if !p.exists() {
                missing(&p.display().to_string());
            }
        }
        let run_as = service_account("mysql");
        let dir = tempdir(&run_as);
        let data = dir.path().join("data");
        // A private temporary directory: with the shared /tmp the bootstrap
        // once failed in CI under parallel tests ("Could not remove temporary
        // table '/tmp/#sql-temptable-...'", then "Unknown table").
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).expect("mkdir tmp");
        if let Some(u) = &run_as {
            chown(&tmp, Some(u.uid), Some(u.gid)).expect("chown tmp");
        }
        let mut c = Command::new(install);
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg("--auth-root-authentication-method=socket")
            .arg("--skip-test-db")
            .current_dir(dir.path());
        if let Some(u) = &run_as {
            c.arg(format!("--user={}", u.name));
        }
        check("mariadb-install-db", c.output());
        let port = free_port();
        let log = dir.path().join("mariadbd.log");
        let mut c = Command::new(server);
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=16M")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(u) = &run_as {
            c.arg(format!("--user={}", u.name));
        }
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mariadbd: {e}"));
        let password = random_token();
        let mut s = DbServer {
            kind: DbKind::MariaDb,
            port,
            url: format!("mysql://postern:{password}@127.0.0.1:{port}/postern"),
            dir,
            child,
            run_as,
            log,
        };
        s.wait_ready();
        s.admin_sql(&format!(
            "CREATE DATABASE postern; CREATE USER 'postern'@'127.0.0.1' IDENTIFIED BY '{password}'; \
             GRANT ALL PRIVILEGES ON postern.* TO 'postern'@'127.0.0.1';"
        ));
        s
    }

    /// Start a throwaway PostgreSQL (the newest version installed).
    pub fn postgres() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path().join("bin"))
                    .filter(|p| p.join("postgres").exists() && p.join("initdb").exists())
                    .max_by_key(|p| {
                        p.parent()
                            .and_then(|v| v.file_name())
                            .and_then(|v| v.to_str())
                            .and_then(|v| v.parse::<u32>().ok())
                            .unwrap_or(0)
                    })
            })
            .unwrap_or_else(|| missing("/usr/lib/postgresql/<version>/bin/postgres"));
        let psql = Path::new("/usr/bin/psql");
        if !psql.exists() {
            missing("/usr/bin/psql");
        }
        let run_as = service_account("postgres");
        let dir = tempdir(&run_as);
        let data = dir.path().join("data");
        let mut c = Command::new(bin.join("initdb"));
        c.arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir(dir.path())
            .env("LC_ALL", "C");
        as_account(&mut c, &run_as);
        check("initdb", c.output());
        let port = free_port();
        let log = dir.path().join("postgres.log");
        let log_file = std::fs::File::create(&log).expect("postgres log");
        if let Some(u) = &run_as {
            chown(&log, Some(u.uid), Some(u.gid)).expect("chown log");
        }
        let mut c = Command::new(bin.join("postgres"));
        c.arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .current_dir(dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        as_account(&mut c, &run_as);
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start postgres: {e}"));
        let password = random_token();
        let mut s = DbServer {
            kind: DbKind::Postgres,
            port,
            url: format!("postgres://postern:{password}@127.0.0.1:{port}/postern"),
            dir,
            child,
            run_as,
            log,
        };
        s.wait_ready();
        s.admin_sql(&format!("CREATE USER postern PASSWORD '{password}'"));
        s.admin_sql("CREATE DATABASE postern OWNER postern");
        s
    }

    /// The directory backend name (`[authd.directory] backend`).
    pub fn backend(&self) -> &'static str {
        match self.kind {
            DbKind::MariaDb => "mysql",
            DbKind::Postgres => "postgres",
        }
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn client(&self, database: Option<&str>, sql: &str) -> Command {
        match self.kind {
            DbKind::MariaDb => {
                let mut c = Command::new("/usr/bin/mariadb");
                c.arg("--no-defaults")
                    .arg(format!(
                        "--socket={}",
                        self.dir.path().join("sock").display()
                    ))
                    .args(["-u", "root", "--batch", "-e", sql]);
                if let Some(db) = database {
                    c.arg(db);
                }
                c
            }
            DbKind::Postgres => {
                let mut c = Command::new("/usr/bin/psql");
                c.arg("-h")
                    .arg(self.dir.path())
                    .arg("-p")
                    .arg(self.port.to_string())
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
                    .args([
                        "-U",
                        if database.is_some() {
                            "postern"
                        } else {
                            "postgres"
                        },
                    ])
                    .args(["-d", database.unwrap_or("postgres")])
                    .args(["-c", sql])
                    .current_dir(self.dir.path());
                as_account(&mut c, &self.run_as);
                c
            }
        }
    }

    fn admin_sql(&self, sql: &str) {
        let out = self.client(None, sql).output();
        check(&format!("{:?} admin SQL {sql:?}", self.kind), out);
    }

    /// Run SQL statements in the `postern` database (as its owner on
    /// PostgreSQL, as root on MariaDB); panics on any error.
    pub fn sql(&self, sql: &str) {
        let out = self.client(Some("postern"), sql).output();
        check(&format!("{:?} SQL {sql:?}", self.kind), out);
    }

    fn wait_ready(&mut self) {
        let end = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{:?} server exited with {status} during start; log:\n{}",
                    self.kind,
                    self.log()
                );
            }
            let ok = self
                .client(None, "SELECT 1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            if Instant::now() > end {
                panic!(
                    "{:?} server not ready after {START_TIMEOUT:?}; log:\n{}",
                    self.kind,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A temporary directory the service account can use.
fn tempdir(run_as: &Option<User>) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ptdb")
        .tempdir_in("/tmp")
        .expect("tempdir");
    if let Some(u) = run_as {
        chown(dir.path(), Some(u.uid), Some(u.gid)).expect("chown tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod tempdir");
    }
    dir
}

impl Drop for DbServer {
    fn drop(&mut self) {
        // SIGTERM is a clean shutdown for mariadbd; for PostgreSQL it is a
        // "smart" shutdown that waits for clients, so use SIGINT ("fast").
        let sig = match self.kind {
            DbKind::MariaDb => Signal::SIGTERM,
            DbKind::Postgres => Signal::SIGINT,
        };
        let _ = kill(Pid::from_raw(self.child.id() as i32), sig);
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > end => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        // The TempDir removes the data directory.
    }
}
