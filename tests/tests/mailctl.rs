//! mailctl directory administration, black-box: domains, users, aliases,
//! password hashes, the aliases file (`newaliases`), and logins through the
//! real authd for users mailctl created; postern-dev's development users.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use postern_ipc::auth::v1::{AuthStart, ClientInfo, auth_client::AuthClient};
use postern_ipc::sasl::{SaslExchange, SaslStep};
use postern_ipc::{DialOptions, SocketUri, dial};
use postern_tests::{Daemon, TIMEOUT, TestEnv, bin, run_tool};

/// A test environment whose config has `extra` appended (whole sections).
fn env_with(extra: &str) -> TestEnv {
    let env = TestEnv::new();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&env.config_path)
        .unwrap();
    write!(f, "\n{extra}").unwrap();
    env
}

/// Fast hashes, no cache, small brute-force penalty.
const FAST: &str = "[authd]
auth_failure_delay = \"10ms\"
auth_failure_delay_max = \"50ms\"

[authd.directory]
default_scheme = \"SHA512-CRYPT\"
cache_ttl_secs = 0
";

fn mailctl(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    run_tool(env, "mailctl", args)
}

/// mailctl with `input` on standard input.
fn mailctl_stdin(env: &TestEnv, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(bin("mailctl"))
        .arg("--config")
        .arg(&env.config_path)
        .args(args)
        .env_remove("POSTERN_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(r: (i32, String, String)) -> String {
    assert_eq!(r.0, 0, "stdout: {}\nstderr: {}", r.1, r.2);
    r.1
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// SASL PLAIN through authd's gRPC socket, as smtpd/imapd would.
fn login(socket: &Path, user: &str, password: &str) -> SaslStep {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ch = dial(
            &SocketUri::from_path(socket.to_path_buf()),
            &DialOptions::default(),
        )
        .unwrap();
        let mut client = AuthClient::new(ch);
        let (_ex, step) = SaslExchange::start(
            &mut client,
            AuthStart {
                mechanism: "PLAIN".into(),
                initial_response: Some(format!("\0{user}\0{password}").into_bytes()),
                client: Some(ClientInfo {
                    service: "imap".into(),
                    remote_ip: "127.0.0.1".into(),
                    secured: true,
                    ..Default::default()
                }),
            },
        )
        .await
        .expect("Authenticate call");
        step
    })
}

fn assert_login_ok(socket: &Path, user: &str, password: &str) {
    match login(socket, user, password) {
        SaslStep::Ok(ok) => assert_eq!(ok.user, user),
        other => panic!("login {user} with the right password: {other:?}"),
    }
}

fn assert_login_fails(socket: &Path, user: &str, password: &str) {
    match login(socket, user, password) {
        SaslStep::Fail(f) => assert!(!f.temporary, "{f:?}"),
        other => panic!("login {user} with {password:?}: {other:?}"),
    }
}

#[test]
fn domain_add_list_del_and_clear_errors() {
    let env = env_with(FAST);
    let out = ok(mailctl(&env, &["domain", "add", "Example.TEST"]));
    assert!(out.contains("example.test"), "{out}");
    ok(mailctl(&env, &["domain", "add", "other.test"]));
    assert_eq!(
        lines(&ok(mailctl(&env, &["domain", "list"]))),
        ["example.test", "other.test"]
    );
    let long = ok(mailctl(&env, &["domain", "list", "-l"]));
    assert!(long.contains("example.test enabled"), "{long}");

    let (code, _, err) = mailctl(&env, &["domain", "add", "example.test"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("\"example.test\" already exists"), "{err}");
    let (code, _, err) = mailctl(&env, &["domain", "add", "no spaces.test"]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("bad address"), "{err}");

    // A domain with a user cannot go.
    ok(mailctl_stdin(
        &env,
        &["user", "add", "u@other.test", "--password-stdin"],
        "pw\n",
    ));
    let (code, _, err) = mailctl(&env, &["domain", "del", "other.test"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("still has users or aliases"), "{err}");
    ok(mailctl(&env, &["user", "del", "u@other.test"]));
    ok(mailctl(&env, &["domain", "del", "other.test"]));
    assert_eq!(
        lines(&ok(mailctl(&env, &["domain", "list"]))),
        ["example.test"]
    );
    let (code, _, err) = mailctl(&env, &["domain", "del", "other.test"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn users_add_list_show_passwd_enable_disable_quota() {
    let env = env_with(FAST);
    ok(mailctl(&env, &["domain", "add", "example.test"]));
    ok(mailctl(&env, &["domain", "add", "other.test"]));
    let (code, out, err) = mailctl_stdin(
        &env,
        &[
            "user",
            "add",
            "alice@example.test",
            "--quota",
            "1M",
            "--password-stdin",
        ],
        "s3cret\nignored second line\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("user alice@example.test added"), "{out}");
    // authd's cache: the hint says when authd sees the change.
    assert!(!err.contains("cache"), "cache_ttl_secs = 0: no hint: {err}");
    ok(mailctl_stdin(
        &env,
        &["user", "add", "bob@example.test", "--password-stdin"],
        "pw-bob\n",
    ));
    ok(mailctl_stdin(
        &env,
        &["user", "add", "carol@other.test", "--password-stdin"],
        "pw\n",
    ));

    // Errors: unknown domain, duplicate, bad address, no terminal.
    let (code, _, err) = mailctl_stdin(
        &env,
        &["user", "add", "dave@nowhere.test", "--password-stdin"],
        "pw\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown domain \"nowhere.test\""), "{err}");
    assert!(err.contains("mailctl domain add nowhere.test"), "{err}");
    let (code, _, err) = mailctl_stdin(
        &env,
        &["user", "add", "alice@example.test", "--password-stdin"],
        "pw\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = mailctl_stdin(
        &env,
        &["user", "add", "not-an-address", "--password-stdin"],
        "pw\n",
    );
    assert_eq!(code, 65, "{err}");
    let (code, _, err) = mailctl_stdin(
        &env,
        &["user", "add", "erin@example.test", "--password-stdin"],
        "\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("empty password"), "{err}");
    // Without --password-stdin and without a terminal: a clear refusal
    // (setsid: no controlling terminal even when the tests run in one).
    let out = Command::new("setsid")
        .arg(bin("mailctl"))
        .arg("--config")
        .arg(&env.config_path)
        .args(["user", "add", "erin@example.test"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--password-stdin"), "{err}");
    // A password in argv is a usage error.
    let (code, _, _) = mailctl(&env, &["user", "add", "erin@example.test", "pw"]);
    assert_eq!(code, 64);

    assert_eq!(
        lines(&ok(mailctl(&env, &["user", "list"]))),
        ["alice@example.test", "bob@example.test", "carol@other.test"]
    );
    assert_eq!(
        lines(&ok(mailctl(
            &env,
            &["user", "list", "--domain", "example.test"]
        ))),
        ["alice@example.test", "bob@example.test"]
    );

    let show = ok(mailctl(&env, &["user", "show", "Alice@Example.test"]));
    assert!(show.contains("address: alice@example.test\n"), "{show}");
    assert!(show.contains("enabled: yes\n"), "{show}");
    assert!(show.contains("quota: 1048576\n"), "{show}");
    assert!(show.contains("password_scheme: SHA512-CRYPT\n"), "{show}");
    assert!(show.contains("mailbox: "), "{show}");
    assert!(!show.contains("$6$"), "the hash is never printed: {show}");
    let (code, _, err) = mailctl(&env, &["user", "show", "nobody@example.test"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown user"), "{err}");

    ok(mailctl(&env, &["user", "disable", "bob@example.test"]));
    let long = ok(mailctl(&env, &["user", "list", "-l"]));
    assert!(long.contains("bob@example.test disabled"), "{long}");
    assert!(
        long.contains("alice@example.test enabled quota=1048576"),
        "{long}"
    );
    ok(mailctl(&env, &["user", "enable", "bob@example.test"]));
    ok(mailctl(
        &env,
        &["user", "quota", "bob@example.test", "2048"],
    ));
    let show = ok(mailctl(&env, &["user", "show", "bob@example.test"]));
    assert!(show.contains("enabled: yes\nquota: 2048\n"), "{show}");

    ok(mailctl_stdin(
        &env,
        &["user", "passwd", "bob@example.test", "--password-stdin"],
        "new-pw\n",
    ));
    let (code, _, err) = mailctl_stdin(
        &env,
        &["user", "passwd", "zed@example.test", "--password-stdin"],
        "x\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown user"), "{err}");

    ok(mailctl(&env, &["user", "del", "carol@other.test"]));
    let (code, _, err) = mailctl(&env, &["user", "del", "carol@other.test"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        lines(&ok(mailctl(&env, &["user", "list"]))),
        ["alice@example.test", "bob@example.test"]
    );
}

#[test]
fn changes_print_the_authd_cache_hint() {
    let env = env_with("[authd.directory]\ndefault_scheme = \"SHA512-CRYPT\"\n");
    let (code, _, err) = mailctl(&env, &["domain", "add", "example.test"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("authd caches lookups for 60s"), "{err}");
    assert!(err.contains("systemctl reload postern-authd"), "{err}");
    // Read-only commands do not.
    let (_, _, err) = mailctl(&env, &["domain", "list"]);
    assert!(!err.contains("caches"), "{err}");
}

#[test]
fn aliases_add_list_del_with_catch_all() {
    let env = env_with(FAST);
    ok(mailctl(&env, &["domain", "add", "example.test"]));
    ok(mailctl(&env, &["domain", "add", "other.test"]));
    ok(mailctl(
        &env,
        &[
            "alias",
            "add",
            "team@example.test",
            "alice@example.test",
            "bob@remote.test",
        ],
    ));
    ok(mailctl(
        &env,
        &["alias", "add", "@example.test", "alice@example.test"],
    ));
    ok(mailctl(
        &env,
        &["alias", "add", "info@other.test", "alice@example.test"],
    ));
    assert_eq!(
        lines(&ok(mailctl(&env, &["alias", "list"]))),
        [
            "@example.test alice@example.test",
            "info@other.test alice@example.test",
            "team@example.test alice@example.test",
            "team@example.test bob@remote.test",
        ]
    );
    assert_eq!(
        lines(&ok(mailctl(&env, &["alias", "list", "@example.test"]))),
        ["@example.test alice@example.test"]
    );
    assert_eq!(
        lines(&ok(mailctl(&env, &["alias", "list", "team@example.test"]))),
        [
            "team@example.test alice@example.test",
            "team@example.test bob@remote.test"
        ]
    );
    assert_eq!(
        lines(&ok(mailctl(&env, &["alias", "list", "example.test"]))).len(),
        3
    );

    let (code, _, err) = mailctl(
        &env,
        &["alias", "add", "team@example.test", "bob@remote.test"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = mailctl(
        &env,
        &["alias", "add", "x@nowhere.test", "alice@example.test"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown domain"), "{err}");

    ok(mailctl(
        &env,
        &["alias", "del", "team@example.test", "bob@remote.test"],
    ));
    assert_eq!(
        lines(&ok(mailctl(&env, &["alias", "list", "team@example.test"]))),
        ["team@example.test alice@example.test"]
    );
    ok(mailctl(&env, &["alias", "del", "@example.test"]));
    let (code, _, err) = mailctl(&env, &["alias", "del", "@example.test"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown alias"), "{err}");
    assert_eq!(
        lines(&ok(mailctl(&env, &["alias", "list"]))),
        [
            "info@other.test alice@example.test",
            "team@example.test alice@example.test",
        ]
    );
}

#[test]
fn pw_hash_sha512_crypt_output_verifies() {
    let env = TestEnv::new();
    let hash = ok(mailctl_stdin(
        &env,
        &["pw", "hash", "--scheme", "SHA512-CRYPT", "--password-stdin"],
        "correct horse\n",
    ));
    let hash = hash.trim();
    let body = hash.strip_prefix("{SHA512-CRYPT}$6$").expect(hash);
    assert!(body.contains('$'), "{hash}");
    assert!(!hash.contains("correct horse"));
    let (code, out, err) = mailctl_stdin(
        &env,
        &["pw", "verify", hash, "--password-stdin"],
        "correct horse\n",
    );
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("verified SHA512-CRYPT"), "{out}");
    let (code, out, _) = mailctl_stdin(
        &env,
        &["pw", "verify", hash, "--password-stdin"],
        "wrong horse\n",
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("mismatch"), "{out}");
    // Two hashes of one password differ (salted).
    let again = ok(mailctl_stdin(
        &env,
        &["pw", "hash", "-s", "sha512-crypt", "--password-stdin"],
        "correct horse\n",
    ));
    assert_ne!(again.trim(), hash);
    let (code, _, err) = mailctl_stdin(
        &env,
        &["pw", "hash", "-s", "MD5-CRYPT", "--password-stdin"],
        "x\n",
    );
    assert_eq!(code, 64, "{err}");
}

#[test]
fn newaliases_reports_each_bad_line_with_its_number() {
    let env = TestEnv::new();
    let aliases = env.path().join("aliases");
    std::fs::write(
        &aliases,
        "# local aliases\n\
         postmaster: root\n\
         root: alice@example.test\n\
         this line has no colon\n\
         team: alice,\n\
         \tbob\n\
         robot: \"|/usr/bin/robot\"\n\
         empty:\n",
    )
    .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&env.config_path)
        .unwrap();
    write!(
        f,
        "\n[authd.directory]\naliases_file = \"{}\"\n",
        aliases.display()
    )
    .unwrap();
    drop(f);
    let file = aliases.display().to_string();

    let (code, out, err) = mailctl(&env, &["aliases", "check"]);
    assert_eq!(code, 1, "{out} {err}");
    let bad: Vec<&str> = err.lines().filter(|l| l.starts_with(&file)).collect();
    assert_eq!(bad.len(), 3, "{err}");
    assert!(bad[0].starts_with(&format!("{file}:4: ")), "{err}");
    assert!(bad[1].starts_with(&format!("{file}:7: ")), "{err}");
    assert!(bad[1].contains("command"), "{err}");
    assert!(bad[2].starts_with(&format!("{file}:8: ")), "{err}");

    // newaliases: mailctl under that name.
    let link = env.path().join("newaliases");
    std::os::unix::fs::symlink(bin("mailctl"), &link).unwrap();
    let run_newaliases = || {
        Command::new(&link)
            .arg("-C")
            .arg(&env.config_path)
            .env_remove("POSTERN_CONFIG")
            .output()
            .unwrap()
    };
    let o = run_newaliases();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{file}:4: ")), "{err}");
    assert!(err.contains("not activated"), "{err}");

    // Fixed: the count, exit 0.
    std::fs::write(
        &aliases,
        "postmaster: root\nroot: alice@example.test\nteam: alice,\n\tbob\n",
    )
    .unwrap();
    let (code, out, err) = mailctl(&env, &["aliases", "check"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{file}: 3 aliases\n"));
    let o = run_newaliases();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("{file}: 3 aliases")));

    // No aliases file configured: a configuration error.
    let env2 = TestEnv::new();
    let (code, _, err) = mailctl(&env2, &["aliases", "check"]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("aliases_file"), "{err}");
}

#[test]
fn bad_directory_configuration_exits_78() {
    let env = env_with("[authd.directory]\nbackend = \"nosuch\"\n");
    let (code, _, err) = mailctl(&env, &["domain", "list"]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("authd.directory"), "{err}");
}

#[test]
fn user_added_with_mailctl_logs_in_through_authd() {
    // The default scheme (ARGON2ID) here: what production writes.
    let env = env_with(
        "[authd]
auth_failure_delay = \"10ms\"
auth_failure_delay_max = \"50ms\"
",
    );
    ok(mailctl(&env, &["domain", "add", "example.test"]));
    ok(mailctl_stdin(
        &env,
        &["user", "add", "alice@example.test", "--password-stdin"],
        "pw\n",
    ));
    let show = ok(mailctl(&env, &["user", "show", "alice@example.test"]));
    assert!(show.contains("password_scheme: ARGON2ID"), "{show}");

    let authd = Daemon::start(&env, "authd");
    let sock = env.socket("private/auth.sock");
    assert_login_ok(&sock, "alice@example.test", "pw");
    assert_login_fails(&sock, "alice@example.test", "wrong");
    assert_login_fails(&sock, "nobody@example.test", "pw");

    // A new password and a disabled account, applied at once by a reload
    // (SIGHUP empties authd's cache).
    ok(mailctl_stdin(
        &env,
        &["user", "passwd", "alice@example.test", "--password-stdin"],
        "pw2\n",
    ));
    authd.signal(Signal::SIGHUP);
    authd
        .wait_output("directory cache cleared", TIMEOUT)
        .unwrap();
    assert_login_fails(&sock, "alice@example.test", "pw");
    assert_login_ok(&sock, "alice@example.test", "pw2");
    ok(mailctl(&env, &["user", "disable", "alice@example.test"]));
    authd.signal(Signal::SIGHUP);
    let end = std::time::Instant::now() + TIMEOUT;
    while authd.output().matches("directory cache cleared").count() < 2 {
        assert!(std::time::Instant::now() < end, "{}", authd.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_login_fails(&sock, "alice@example.test", "pw2");
}

/// `users: alice@example.test / PW, bob@example.test / PW` from the banner.
fn banner_users(output: &str) -> Vec<(String, String)> {
    let line = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("users: "))
        .unwrap_or_else(|| panic!("no users line in:\n{output}"));
    line.split(", ")
        .map(|u| {
            let (a, p) = u.split_once(" / ").expect(u);
            (a.to_string(), p.to_string())
        })
        .collect()
}

#[test]
fn dev_supervisor_creates_users_prints_passwords_that_log_in() {
    let env = TestEnv::new();
    let start = || {
        let mut cmd = Command::new(bin("postern-dev"));
        cmd.arg("--bin-dir").arg(postern_tests::bin_dir());
        let d = Daemon::spawn(&env, "postern-dev", cmd);
        d.wait_output("postern is running", Duration::from_secs(120))
            .unwrap();
        d
    };
    let mut d = start();
    let users = banner_users(&d.output());
    assert_eq!(
        users.iter().map(|u| u.0.as_str()).collect::<Vec<_>>(),
        ["alice@example.test", "bob@example.test"]
    );
    for (_, pw) in &users {
        assert_eq!(pw.len(), 12, "{pw}");
        assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()), "{pw}");
    }
    assert_ne!(users[0].1, users[1].1);
    let file = env.path().join("lib/dev-passwords.txt");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    for (a, p) in &users {
        assert!(text.contains(&format!("{a} {p}\n")), "{text}");
    }
    let sock = env.socket("private/auth.sock");
    for (a, p) in &users {
        assert_login_ok(&sock, a, p);
    }
    // The banner says how to connect, with the working services.
    let out = d.output();
    for needle in [
        "Thunderbird: IMAP 127.0.0.1:",
        "mutt -f 'imaps://alice%40",
        "swaks --server",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    d.signal(Signal::SIGINT);
    assert_eq!(
        d.wait_exit(Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0),
        "{}",
        d.output()
    );
    drop(d);

    // Second run: same users, same passwords, nothing created.
    let mut d = start();
    assert_eq!(banner_users(&d.output()), users);
    assert!(!d.output().contains("postern-dev: user"), "{}", d.output());
    assert!(
        !d.output().contains("postern-dev: domain"),
        "{}",
        d.output()
    );
    assert_login_ok(&sock, &users[1].0, &users[1].1);
    d.signal(Signal::SIGINT);
    d.wait_exit(Duration::from_secs(60));
}
