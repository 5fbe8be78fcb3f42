//! Foundation: every daemon starts, reports ready, stops cleanly; bad
//! configuration exits 78 with file, key and reason; SIGHUP reload; systemd
//! socket activation; JSON logs; the gRPC contracts on the real daemons;
//! mailctl config check; the dev supervisor.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use postern_tests::{DAEMONS, Daemon, TIMEOUT, TestEnv, bin, run_tool};

fn read_greeting(port: u16) -> String {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(s), &mut line);
    line
}

#[test]
fn every_daemon_starts_reports_ready_and_exits_0_on_sigterm() {
    let env = TestEnv::new();
    for name in DAEMONS {
        let mut d = Daemon::start(&env, name);
        assert!(d.is_running(), "{name}");
        let status = d.stop();
        assert_eq!(
            status.code(),
            Some(0),
            "{name} exit status; output:\n{}",
            d.output()
        );
        d.wait_notification("STOPPING=1", Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = d.output();
        for needle in ["ready", "shutting down", "stopped"] {
            assert!(out.contains(needle), "{name}: {needle:?} missing in\n{out}");
        }
        // Every line carries the daemon name.
        for line in out.lines() {
            assert!(
                line.contains(&format!("{name}[")),
                "{name}: line without daemon name: {line}"
            );
        }
    }
}

#[test]
fn daemons_bind_what_the_config_says() {
    let env = TestEnv::new();
    let _authd = Daemon::start(&env, "authd");
    let _lmtp = Daemon::start(&env, "lmtp-delivery");
    let _queue = Daemon::start(&env, "queue-manager");
    let _smtpd = Daemon::start(&env, "smtpd");
    let _pop3d = Daemon::start(&env, "pop3d");
    let _imapd = Daemon::start(&env, "imapd");
    for sock in [
        "private/auth.sock",
        "private/queue.sock",
        "public/submit.sock",
        "private/lmtp.sock",
    ] {
        assert!(env.socket(sock).exists(), "{sock}");
    }
    for (name, prefix) in [
        ("smtp", "220 "),
        ("submission", "220 "),
        ("pop3", "+OK "),
        ("imap", "* "),
    ] {
        let greeting = read_greeting(env.ports[name]);
        assert!(greeting.starts_with(prefix), "{name}: {greeting:?}");
    }
}

#[test]
fn grpc_contracts_answer_on_the_real_daemons() {
    use postern_ipc::{DialOptions, SocketUri, dial};
    let env = TestEnv::new();
    let _authd = Daemon::start(&env, "authd");
    let _queue = Daemon::start(&env, "queue-manager");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let auth = dial(
            &SocketUri::from_path(env.socket("private/auth.sock")),
            &DialOptions::default(),
        )
        .unwrap();
        let mut auth = postern_ipc::auth::v1::auth_client::AuthClient::new(auth);
        let reply = auth
            .handshake(postern_ipc::auth_handshake("test"))
            .await
            .unwrap();
        assert!(reply.get_ref().server.starts_with("postern-authd/"));
        postern_ipc::check_auth_version(reply.get_ref().version.as_ref()).unwrap();
        let mut bad = postern_ipc::auth_handshake("test");
        bad.version = Some(postern_ipc::auth::v1::Version { major: 2, minor: 0 });
        assert_eq!(
            auth.handshake(bad).await.unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );

        for path in ["private/queue.sock", "public/submit.sock"] {
            let ch = dial(
                &SocketUri::from_path(env.socket(path)),
                &DialOptions::default(),
            )
            .unwrap();
            let mut q = postern_ipc::queue::v1::queue_client::QueueClient::new(ch);
            let reply = q
                .handshake(postern_ipc::queue_handshake("test"))
                .await
                .unwrap();
            assert!(
                reply.get_ref().server.starts_with("postern-queue-manager/"),
                "{path}"
            );
        }
    });
}

/// (config text, expected key, expected words in the reason)
const BAD_CONFIGS: &[(&str, &str, &str)] = &[
    (
        "[global]\nmessage_size_limit = \"ten\"\n",
        "global.message_size_limit",
        "invalid type",
    ),
    (
        "[global]\nmyhostnme = \"mx.example.org\"\n",
        "global.myhostnme",
        "unknown key",
    ),
    (
        "[smtpd]\nlistener = [{ name = \"smtp\", address = \"nowhere:25\", role = \"mx\" }]\n",
        "smtpd.listener[0].address",
        "not an IP:port",
    ),
    (
        "[global]\nmyhostname = \"not a host\"\n",
        "global.myhostname",
        "not a valid domain",
    ),
    ("[global\n", "line 1", "syntax error"),
];

#[test]
fn bad_configuration_exits_78_naming_file_key_and_reason() {
    let env = TestEnv::new();
    for (text, key, reason) in BAD_CONFIGS {
        std::fs::write(&env.config_path, text).unwrap();
        for name in DAEMONS.iter().copied().chain(["mailctl", "postern-dev"]) {
            let args: &[&str] = if name == "mailctl" {
                &["config", "check"]
            } else {
                &[]
            };
            let (code, _out, err) = run_tool(&env, name, args);
            assert_eq!(code, 78, "{name} with {text:?}: {err}");
            let file = env.config_path.display().to_string();
            assert!(err.contains(&file), "{name}: file missing in {err:?}");
            assert!(
                err.contains(&format!(": {key}: ")),
                "{name}: key {key} missing in {err:?}"
            );
            assert!(
                err.contains(reason),
                "{name}: reason {reason:?} missing in {err:?}"
            );
        }
    }
}

#[test]
fn unusable_certificate_is_a_configuration_error_before_binding() {
    let env = TestEnv::new();
    std::fs::write(&env.cert.cert_file, "not a certificate").unwrap();
    for name in ["smtpd", "pop3d", "imapd"] {
        let (code, _, err) = run_tool(&env, name, &[]);
        assert_eq!(code, 78, "{name}: {err}");
        assert!(err.contains("tls.cert_file"), "{name}: {err}");
    }
    // Nothing listens on the ports.
    assert!(TcpStream::connect(("127.0.0.1", env.ports["smtp"])).is_err());
}

#[test]
fn check_config_flag_and_environment_overrides() {
    let env = TestEnv::new();
    let (code, out, _) = run_tool(&env, "smtpd", &["--check-config"]);
    assert_eq!(code, 0);
    assert!(out.contains("is valid"), "{out}");
    let out = Command::new(bin("smtpd"))
        .arg("--config")
        .arg(&env.config_path)
        .arg("--check-config")
        .env("POSTERN_GLOBAL__MESSAGE_SIZE_LIMIT", "zero")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("global.message_size_limit"), "{err}");
}

#[test]
fn sighup_reloads_a_good_config_and_refuses_a_bad_one() {
    let env = TestEnv::new();
    let mut d = Daemon::start(&env, "smtpd");
    env.write_config("level = \"debug\"");
    d.signal(Signal::SIGHUP);
    d.wait_output("configuration reloaded changed=log.level", TIMEOUT)
        .unwrap();
    d.wait_notification("RELOADING=1", TIMEOUT).unwrap();

    std::fs::write(&env.config_path, "[global]\nbogus = 1\n").unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_output("reload refused", TIMEOUT).unwrap();
    assert!(d.output().contains("global.bogus"), "{}", d.output());
    assert!(d.is_running());
    assert!(read_greeting(env.ports["smtp"]).starts_with("220 "));
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn json_logs_carry_the_daemon_name() {
    let env = TestEnv::new();
    env.write_config("format = \"json\"\nlevel = \"info\"");
    let mut d = Daemon::start(&env, "authd");
    assert_eq!(d.stop().code(), Some(0));
    let out = d.output();
    let mut lines = 0;
    for line in out.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["daemon"], "authd", "{line}");
        assert!(v["level"].is_string() && v["message"].is_string() && v["timestamp"].is_string());
        lines += 1;
    }
    assert!(lines >= 3, "{out}");
}

#[test]
fn journald_mode_prefixes_priorities_and_drops_timestamps() {
    let env = TestEnv::new();
    // Daemon::spawn removes JOURNAL_STREAM; set it through a shell instead.
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c")
        .arg(format!(
            "JOURNAL_STREAM=8:1 exec {} \"$@\"",
            bin("authd").display()
        ))
        .arg("authd");
    let mut d = Daemon::spawn(&env, "authd", sh);
    d.wait_notification("READY=1", TIMEOUT).unwrap();
    assert_eq!(d.stop().code(), Some(0));
    let out = d.output();
    assert!(
        out.lines()
            .all(|l| l.starts_with("<6>authd[") || l.starts_with("<4>authd[")),
        "{out}"
    );
}

#[test]
fn systemd_socket_activation_is_used_when_given() {
    let env = TestEnv::new();
    // Hand smtpd an already-listening socket as systemd would: fd 3,
    // LISTEN_FDS=1, LISTEN_FDNAMES=smtp, LISTEN_PID = the daemon's pid
    // (set by exec'ing from a shell, which keeps the pid).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c")
        .arg(format!(
            "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=smtp exec {} \"$@\"",
            bin("smtpd").display()
        ))
        .arg("smtpd");
    // SAFETY: dup2 is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        sh.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec set; clear it instead.
            let rc = if fd == 3 {
                clear_cloexec(3)
            } else {
                libc_dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut d = Daemon::spawn(&env, "smtpd", sh);
    if let Err(e) = d.wait_notification("READY=1", TIMEOUT) {
        panic!("{e}\n{}", d.output());
    }
    drop(listener);
    assert!(
        d.output().contains("using socket from systemd"),
        "{}",
        d.output()
    );
    // The inherited socket serves; the configured smtp port is not bound.
    assert!(read_greeting(port).starts_with("220 "));
    assert!(TcpStream::connect(("127.0.0.1", env.ports["smtp"])).is_err());
    assert_eq!(d.stop().code(), Some(0));
}

// nix's dup2/fcntl want owned fds; raw calls keep this pre_exec simple
// (both are async-signal-safe).
unsafe extern "C" {
    fn dup2(oldfd: i32, newfd: i32) -> i32;
    fn fcntl(fd: i32, cmd: i32, ...) -> i32;
}

fn libc_dup2(from: i32, to: i32) -> i32 {
    // SAFETY: plain syscall on valid descriptor numbers.
    unsafe { dup2(from, to) }
}

fn clear_cloexec(fd: i32) -> i32 {
    const F_SETFD: i32 = 2;
    // SAFETY: plain syscall on a valid descriptor.
    unsafe { fcntl(fd, F_SETFD, 0) }
}

#[test]
fn mailctl_config_check_prints_explicit_keys_first() {
    let env = TestEnv::new();
    let (code, out, err) = run_tool(&env, "mailctl", &["config", "check"]);
    assert_eq!(code, 0, "{err}");
    let explicit_at = out
        .find("global.myhostname = \"mail.example.test\"")
        .expect(&out);
    let defaults_at = out.find("# defaults").expect(&out);
    let default_key = out
        .find("global.message_size_limit = 10240000")
        .expect(&out);
    assert!(
        explicit_at < defaults_at && defaults_at < default_key,
        "{out}"
    );
    let (code, out, _) = run_tool(&env, "mailctl", &["config", "check", "-n"]);
    assert_eq!(code, 0);
    assert!(!out.contains("message_size_limit"), "{out}");
    assert!(out.contains("smtpd.listener[0].address"), "{out}");
}

#[test]
fn dev_supervisor_starts_everything_and_ctrl_c_stops_cleanly() {
    let env = TestEnv::new();
    let mut cmd = Command::new(bin("postern-dev"));
    cmd.arg("--bin-dir").arg(postern_tests::bin_dir());
    let mut d = Daemon::spawn(&env, "postern-dev", cmd);
    d.wait_output("postern is running", Duration::from_secs(90))
        .unwrap();
    for name in DAEMONS {
        assert!(
            d.output().contains(&format!("{name:>13} | ")),
            "{name} not prefixed:\n{}",
            d.output()
        );
    }
    assert!(read_greeting(env.ports["imap"]).starts_with("* "));
    d.signal(Signal::SIGINT);
    let status = d
        .wait_exit(Duration::from_secs(60))
        .expect("postern-dev exits");
    assert_eq!(status.code(), Some(0), "{}", d.output());
    let out = d.output();
    assert_eq!(out.matches("INFO stopped").count(), DAEMONS.len(), "{out}");
}
