//! `mailctl doctor`, black box: `mailctl dns`'s zone fragment (plus a
//! reverse zone) served by a real BIND (`named`, Debian's bind9) on
//! loopback, the whole daemon set running with the test certificate, the
//! open-relay self-test from 127.0.0.2 (outside `mynetworks`). Doctor
//! reports no problem; with one record removed from the zone it reports
//! exactly that one; a wrong SRV port, a PTR naming another host, a
//! stopped daemon's listeners and (without the test CA) untrusted
//! certificates are each reported; an smtpd that trusts the test's source
//! address is reported as an open relay.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postern_tests::stack::mailctl;
use postern_tests::{DAEMONS, Daemon, TestEnv, free_port, run_tool};

const ZONE_HEAD: &str = "$ORIGIN example.test.\n$TTL 3600\n\
@ IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300\n\
@ IN NS ns1.example.test.\n\
ns1 IN A 192.0.2.53\n";

const REVERSE_ZONE: &str = "$ORIGIN 2.0.192.in-addr.arpa.\n$TTL 3600\n\
@ IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300\n\
@ IN NS ns1.example.test.\n\
10 IN PTR mail.example.test.\n";

/// BIND's named in the foreground on 127.0.0.1:`port`, stopped on drop.
struct Named {
    child: Child,
    log: PathBuf,
}

impl Named {
    /// Serve `zone` (example.test) and `reverse` (2.0.192.in-addr.arpa)
    /// from `dir`; waits until both are loaded.
    fn start(dir: &Path, port: u16, zone: &str, reverse: &str) -> Self {
        let bin = Path::new("/usr/sbin/named");
        assert!(
            bin.exists(),
            "named not found: install the test dependencies (scripts/test-deps.sh, package bind9)"
        );
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("example.test.zone"), zone).unwrap();
        std::fs::write(dir.join("reverse.zone"), reverse).unwrap();
        let d = dir.display();
        let conf = format!(
            r#"options {{
  directory "{d}";
  pid-file "{d}/named.pid";
  session-keyfile "{d}/session.key";
  listen-on port {port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  allow-query {{ any; }};
}};
controls {{ }};
zone "example.test" {{ type primary; file "{d}/example.test.zone"; }};
zone "2.0.192.in-addr.arpa" {{ type primary; file "{d}/reverse.zone"; }};
"#
        );
        let conf_path = dir.join("named.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = dir.join("named.log");
        let mut cmd = Command::new(bin);
        cmd.args(["-g", "-4", "-c"]).arg(&conf_path);
        if nix::unistd::geteuid().is_root() {
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start named");
        let mut n = Named { child, log };
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            if text.contains("running") {
                break;
            }
            if let Ok(Some(s)) = n.child.try_wait() {
                panic!("named exited with {s}:\n{text}");
            }
            assert!(Instant::now() < end, "named did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&n.log).unwrap_or_default();
        assert!(
            !text.contains("not loaded due to errors"),
            "a zone did not load:\n{text}"
        );
        n
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
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

/// Config with `mynetworks` = 127.0.0.1 only (so 127.0.0.2 is an outside
/// client), the domain and one user.
fn setup(env: &TestEnv) {
    let text = env.config_text("level = \"info\"").replacen(
        "[global]\n",
        "[global]\nmynetworks = [\"127.0.0.1/32\"]\n",
        1,
    );
    std::fs::write(
        &env.config_path,
        format!("{text}\n[authd.directory]\ncache_ttl_secs = 1\n"),
    )
    .unwrap();
    mailctl(env, &["domain", "add", "example.test"], None);
    mailctl(
        env,
        &["user", "add", "alice@example.test", "--password-stdin"],
        Some("pw-alice\n"),
    );
}

fn zone(env: &TestEnv) -> String {
    let (code, out, err) = run_tool(
        env,
        "mailctl",
        &["dns", "example.test", "--ip", "192.0.2.10"],
    );
    assert_eq!(code, 0, "{err}");
    format!("{ZONE_HEAD}{out}")
}

/// Run doctor against the DNS server on `port` (trusting the test CA);
/// (exit code, PROBLEM lines, whole output).
fn doctor(env: &TestEnv, port: u16) -> (i32, Vec<String>, String) {
    let ca = env.cert.ca_file.display().to_string();
    doctor_with(env, port, &["--ca-file", &ca])
}

fn doctor_with(env: &TestEnv, port: u16, extra: &[&str]) -> (i32, Vec<String>, String) {
    let resolver = format!("127.0.0.1:{port}");
    let mut args = vec![
        "doctor",
        "example.test",
        "--resolver",
        &resolver,
        "--ip",
        "192.0.2.10",
        "--relay-source",
        "127.0.0.2",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = run_tool(env, "mailctl", &args);
    let problems = out
        .lines()
        .filter(|l| l.starts_with("PROBLEM"))
        .map(str::to_string)
        .collect();
    (code, problems, format!("{out}\n--- stderr ---\n{err}"))
}

#[test]
fn doctor_finds_nothing_wrong_then_exactly_the_removed_record() {
    let env = TestEnv::new();
    setup(&env);
    let _daemons: Vec<Daemon> = DAEMONS.iter().map(|d| Daemon::start(&env, d)).collect();
    let full = zone(&env);

    let port = free_port();
    let named = Named::start(&env.path().join("named"), port, &full, REVERSE_ZONE);
    let (code, problems, out) = doctor(&env, port);
    assert!(problems.is_empty(), "{out}");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no problems found"), "{out}");
    // Every check ran: DNS, reverse DNS, each TLS listener, the relay test.
    for needle in [
        "ok       DNS: example.test. MX",
        "ok       DNS: _dmarc.example.test. TXT",
        "ok       DNS: _imaps._tcp.example.test. SRV",
        "ok       DNS: autoconfig.example.test. CNAME",
        "ok       reverse DNS: 192.0.2.10 -> mail.example.test",
        "ok       TLS: listener smtp",
        "ok       TLS: listener submission",
        "ok       TLS: listener submissions",
        "ok       TLS: listener pop3 ",
        "ok       TLS: listener pop3s",
        "ok       TLS: listener imap ",
        "ok       TLS: listener imaps",
        "ok       open relay: smtp",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
    drop(named);

    // The same zone without the DMARC record: exactly that problem.
    let without: String = full
        .lines()
        .filter(|l| !l.starts_with("_dmarc."))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, full);
    let port = free_port();
    let _named = Named::start(&env.path().join("named2"), port, &without, REVERSE_ZONE);
    let (code, problems, out) = doctor(&env, port);
    assert_eq!(code, 1, "{out}");
    assert_eq!(problems.len(), 1, "{out}");
    assert!(
        problems[0].contains("_dmarc.example.test. TXT") && problems[0].contains("not published"),
        "{out}"
    );
    assert!(
        out.contains("fix: publish _dmarc.example.test. 3600 IN TXT \"v=DMARC1;"),
        "{out}"
    );
}

#[test]
fn doctor_reports_a_wrong_ptr_a_wrong_srv_port_a_stopped_listener_and_untrusted_certificates() {
    let env = TestEnv::new();
    setup(&env);
    let mut daemons: Vec<Daemon> = DAEMONS.iter().map(|d| Daemon::start(&env, d)).collect();
    // pop3d stopped: both its TLS listeners are problems, with the unit to start.
    let pop3d = daemons.iter_mut().find(|d| d.name == "pop3d").unwrap();
    pop3d.stop();
    let imaps = env.ports["imaps"];
    let zone = zone(&env).replace(
        &format!(" {imaps} mail.example.test."),
        " 1993 mail.example.test.",
    );
    // Reverse DNS naming the provider's host instead of ours.
    let reverse = REVERSE_ZONE.replace("mail.example.test.", "host-10.provider.test.");
    let port = free_port();
    let _named = Named::start(&env.path().join("named"), port, &zone, &reverse);
    let (code, problems, out) = doctor(&env, port);
    assert_eq!(code, 1, "{out}");
    assert_eq!(problems.len(), 4, "{out}");
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(has("_imaps._tcp.example.test. SRV: published"), "{out}");
    assert!(
        has("reverse DNS: 192.0.2.10 points to \"host-10.provider.test\""),
        "{out}"
    );
    assert!(has("TLS: listener pop3 "), "{out}");
    assert!(has("TLS: listener pop3s"), "{out}");
    assert!(out.contains("fix: start postern-pop3d"), "{out}");

    // Without the test CA, every certificate still served is untrusted.
    let (code, problems, out) = doctor_with(&env, port, &[]);
    assert_eq!(code, 1, "{out}");
    let untrusted: Vec<&String> = problems
        .iter()
        .filter(|p| p.contains("certificate not signed by a trusted CA"))
        .collect();
    assert_eq!(
        untrusted.len(),
        5,
        "smtp, submission, submissions, imap, imaps:\n{out}"
    );
    assert!(
        out.contains("fix: use a certificate from a public CA"),
        "{out}"
    );
}

#[test]
fn doctor_detects_an_open_relay() {
    // smtpd trusts all of 127.0.0.0/8 (so 127.0.0.2 may relay); doctor's
    // copy of the configuration says only 127.0.0.1 is trusted, as an
    // operator who believes so would have it.
    let env = TestEnv::new();
    setup(&env);
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let believed = env.path().join("believed.toml");
    std::fs::write(&believed, &text).unwrap();
    std::fs::write(
        &env.config_path,
        text.replacen(
            "mynetworks = [\"127.0.0.1/32\"]",
            "mynetworks = [\"127.0.0.0/8\"]",
            1,
        ),
    )
    .unwrap();
    let _daemons: Vec<Daemon> = DAEMONS.iter().map(|d| Daemon::start(&env, d)).collect();
    let port = free_port();
    let _named = Named::start(&env.path().join("named"), port, &zone(&env), REVERSE_ZONE);
    let out = Command::new(postern_tests::bin("mailctl"))
        .arg("--config")
        .arg(&believed)
        .args([
            "doctor",
            "example.test",
            "--ip",
            "192.0.2.10",
            "--relay-source",
            "127.0.0.2",
        ])
        .arg("--resolver")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--ca-file")
        .arg(&env.cert.ca_file)
        .env_remove("POSTERN_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("PROBLEM")).collect();
    assert_eq!(problems.len(), 1, "{text}");
    assert!(
        problems[0]
            .contains("OPEN RELAY: RCPT TO:<postern-relay-test@relay-test.invalid> accepted"),
        "{text}"
    );
    assert!(
        text.contains("fix: remove untrusted networks from global.mynetworks"),
        "{text}"
    );
}
