//! A small mail system for end-to-end tests: config with the queue
//! delivering over LMTP, domain `example.test`, users alice (`pw-alice`)
//! and bob (`pw-bob`) created with mailctl.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{TestEnv, bin};

/// Write the config (`extra` appended) and create the domain and users.
pub fn setup_users(env: &TestEnv, extra: &str) {
    let mut text = env.config_text("level = \"info\"");
    text.push_str("\n[authd.directory]\ncache_ttl_secs = 1\n");
    text.push_str(extra);
    std::fs::write(&env.config_path, text).unwrap();
    mailctl(env, &["domain", "add", "example.test"], None);
    mailctl(
        env,
        &["user", "add", "alice@example.test", "--password-stdin"],
        Some("pw-alice\n"),
    );
    mailctl(
        env,
        &["user", "add", "bob@example.test", "--password-stdin"],
        Some("pw-bob\n"),
    );
}

/// Run mailctl with the environment's config; panics on failure.
pub fn mailctl(env: &TestEnv, args: &[&str], stdin: Option<&str>) {
    let mut c = Command::new(bin("mailctl"))
        .arg("--config")
        .arg(&env.config_path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mailctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A user's Maildir.
pub fn maildir(env: &TestEnv, user: &str) -> PathBuf {
    env.path()
        .join("lib/mail/example.test")
        .join(user)
        .join("Maildir")
}

/// Message files in a Maildir (new/ and cur/), sorted by name.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = ["new", "cur"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(dir.join(d))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
        })
        .collect();
    v.sort();
    v
}

/// Wait until `dir` holds `n` messages.
pub fn wait_for_messages(
    dir: &Path,
    n: usize,
    timeout: std::time::Duration,
) -> Result<Vec<PathBuf>, String> {
    let end = std::time::Instant::now() + timeout;
    loop {
        let f = files(dir);
        if f.len() >= n {
            return Ok(f);
        }
        if std::time::Instant::now() > end {
            return Err(format!("{} of {n} messages in {}", f.len(), dir.display()));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Write a config with fast brute-force delays and a short directory cache,
/// create `user`'s domain and the user with mailctl; returns its Maildir.
pub fn setup_user(env: &TestEnv, user: &str, password: &str) -> PathBuf {
    let mut text = env.config_text("level = \"info\"");
    text.push_str(
        "\n[authd]\nauth_failure_delay = \"10ms\"\nauth_failure_delay_max = \"40ms\"\n\n[authd.directory]\ncache_ttl_secs = 1\n",
    );
    std::fs::write(&env.config_path, text).unwrap();
    let (local, domain) = user.split_once('@').unwrap();
    mailctl(env, &["domain", "add", domain], None);
    mailctl(
        env,
        &["user", "add", user, "--password-stdin"],
        Some(&format!("{password}\n")),
    );
    env.path()
        .join("lib/mail")
        .join(domain)
        .join(local)
        .join("Maildir")
}
