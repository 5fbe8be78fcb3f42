//! `mailctl config export` / `config apply`, black box: the directory is
//! exported (YAML and JSON), wiped by applying an empty document, and
//! restored by applying the export to the same running authd; the same
//! passwords then log in over IMAP (imaplib) and POP3 (poplib) and SMTP
//! AUTH (smtplib on submission), and a second export equals the first.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use postern_tests::stack::{mailctl, setup_users};
use postern_tests::{Daemon, TestEnv, run_tool};

/// (IMAP, POP3, SMTP AUTH) login results for `user`/`password`: "ok" or
/// the server's refusal.
fn logins(env: &TestEnv, user: &str, password: &str) -> [String; 3] {
    let py = r#"
import imaplib, poplib, smtplib, ssl, sys
imaps, pop3s, submissions, ca, user, pw = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
out = []
try:
    m = imaplib.IMAP4_SSL("127.0.0.1", int(imaps), ssl_context=ctx, timeout=20)
    m.login(user, pw); m.logout(); out.append("ok")
except imaplib.IMAP4.error as e:
    out.append("imap refused: %s" % e)
try:
    p = poplib.POP3_SSL("127.0.0.1", int(pop3s), context=ctx, timeout=20)
    p.user(user); p.pass_(pw); p.quit(); out.append("ok")
except poplib.error_proto as e:
    out.append("pop3 refused: %s" % e)
try:
    s = smtplib.SMTP_SSL("127.0.0.1", int(submissions), context=ctx, timeout=20)
    s.login(user, pw); s.quit(); out.append("ok")
except smtplib.SMTPAuthenticationError as e:
    out.append("smtp refused: %s" % e.smtp_code)
print("\n".join(out))
"#;
    let out = Command::new("python3")
        .args(["-c", py])
        .arg(env.ports["imaps"].to_string())
        .arg(env.ports["pop3s"].to_string())
        .arg(env.ports["submissions"].to_string())
        .arg(&env.cert.ca_file)
        .args([user, password])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(v.len(), 3, "{text}");
    [v[0].clone(), v[1].clone(), v[2].clone()]
}

fn ok(r: (i32, String, String)) -> (String, String) {
    assert_eq!(r.0, 0, "stdout: {}\nstderr: {}", r.1, r.2);
    (r.1, r.2)
}

#[test]
fn export_wipe_apply_restores_the_same_logins() {
    let env = TestEnv::new();
    setup_users(
        &env,
        "[authd]\nauth_failure_delay = \"10ms\"\nauth_failure_delay_max = \"40ms\"\n",
    );
    mailctl(&env, &["domain", "add", "other.test"], None);
    mailctl(
        &env,
        &[
            "alias",
            "add",
            "team@example.test",
            "alice@example.test",
            "bob@example.test",
        ],
        None,
    );
    mailctl(&env, &["user", "quota", "bob@example.test", "1M"], None);
    let mut daemons: Vec<Daemon> = [
        "authd",
        "lmtp-delivery",
        "queue-manager",
        "smtpd",
        "pop3d",
        "imapd",
    ]
    .iter()
    .map(|d| Daemon::start(&env, d))
    .collect();
    let ok3 = ["ok", "ok", "ok"].map(String::from);
    assert_eq!(logins(&env, "alice@example.test", "pw-alice"), ok3);
    assert_eq!(logins(&env, "bob@example.test", "pw-bob"), ok3);

    let yaml = env.path().join("state.yaml");
    let y = yaml.to_str().unwrap();
    ok(run_tool(&env, "mailctl", &["config", "export", "-o", y]));
    let exported = std::fs::read_to_string(&yaml).unwrap();
    let mode = std::fs::metadata(&yaml).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the export holds password hashes");
    for needle in [
        "version: 1",
        "name: example.test",
        "name: other.test",
        "address: alice@example.test",
        "password_hash: '{ARGON2ID}",
        "quota_bytes: 1048576",
        "source: team@example.test",
    ] {
        assert!(exported.contains(needle), "{needle:?} in\n{exported}");
    }
    assert!(!exported.contains("pw-alice") && !exported.contains("pw-bob"));
    let (json, _) = ok(run_tool(
        &env,
        "mailctl",
        &["config", "export", "--format", "json"],
    ));
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(j["users"].as_array().unwrap().len(), 2);
    assert_eq!(j["aliases"].as_array().unwrap().len(), 2);

    // Wipe: an empty document removes everything, aliases first.
    let empty = env.path().join("empty.yaml");
    std::fs::write(&empty, "version: 1\n").unwrap();
    let (diff, _) = ok(run_tool(
        &env,
        "mailctl",
        &["config", "apply", empty.to_str().unwrap()],
    ));
    assert_eq!(
        diff,
        "- alias team@example.test alice@example.test\n\
         - alias team@example.test bob@example.test\n\
         - user alice@example.test\n\
         - user bob@example.test\n\
         - domain example.test\n\
         - domain other.test\n"
    );
    let (users, _) = ok(run_tool(&env, "mailctl", &["user", "list"]));
    assert_eq!(users, "");
    let refused = logins(&env, "alice@example.test", "pw-alice");
    assert!(refused.iter().all(|r| r != "ok"), "{refused:?}");

    // Dry run: the difference, nothing changed.
    let (diff, err) = ok(run_tool(
        &env,
        "mailctl",
        &["config", "apply", "--dry-run", y],
    ));
    assert_eq!(
        diff,
        "+ domain example.test\n\
         + domain other.test\n\
         + user alice@example.test\n\
         + user bob@example.test\n\
         + alias team@example.test alice@example.test\n\
         + alias team@example.test bob@example.test\n"
    );
    assert!(err.contains("dry run: 6 change(s) not made"), "{err}");
    assert_eq!(ok(run_tool(&env, "mailctl", &["user", "list"])).0, "");

    // Apply; authd (never restarted) drops its cached refusals on SIGHUP,
    // as `systemctl reload postern-authd` would send.
    let (_, err) = ok(run_tool(&env, "mailctl", &["config", "apply", y]));
    assert!(err.contains("6 change(s) made"), "{err}");
    assert!(err.contains("SIGHUP"), "{err}");
    let authd = &mut daemons[0];
    authd.signal(Signal::SIGHUP);
    authd
        .wait_output("directory cache cleared", Duration::from_secs(30))
        .unwrap();
    assert_eq!(logins(&env, "alice@example.test", "pw-alice"), ok3);
    assert_eq!(logins(&env, "bob@example.test", "pw-bob"), ok3);
    let wrong = logins(&env, "bob@example.test", "pw-alice");
    assert!(wrong.iter().all(|r| r != "ok"), "{wrong:?}");

    ok(run_tool(&env, "mailctl", &["config", "export", "-o", y]));
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), exported);
    let (diff, err) = ok(run_tool(&env, "mailctl", &["config", "apply", y]));
    assert_eq!(diff, "");
    assert!(err.contains("already matches"), "{err}");
}

#[test]
fn apply_changes_hashes_quotas_transports_and_refuses_a_bad_document() {
    let env = TestEnv::new();
    setup_users(&env, "");
    let (text, _) = ok(run_tool(&env, "mailctl", &["config", "export"]));
    // Bob gets alice's hash, a quota and is disabled; the domain a transport.
    let alice_hash = text
        .lines()
        .skip_while(|l| !l.contains("address: alice@example.test"))
        .find_map(|l| l.trim().strip_prefix("password_hash: "))
        .unwrap()
        .to_string();
    let mut changed = String::new();
    let mut in_bob = false;
    for l in text.lines() {
        if l.contains("address: ") {
            in_bob = l.contains("bob@example.test");
        }
        let l = if in_bob && l.trim().starts_with("password_hash: ") {
            format!("  password_hash: {alice_hash}")
        } else if in_bob && l.trim().starts_with("quota_bytes: ") {
            "  quota_bytes: 4096".to_string()
        } else if in_bob && l.trim().starts_with("enabled: ") {
            "  enabled: false".to_string()
        } else if l.trim() == "transport: null" {
            "  transport: lmtp:inet:127.0.0.1:24".to_string()
        } else {
            l.to_string()
        };
        changed.push_str(&l);
        changed.push('\n');
    }
    let f = env.path().join("changed.yaml");
    std::fs::write(&f, &changed).unwrap();
    let (diff, _) = ok(run_tool(
        &env,
        "mailctl",
        &["config", "apply", f.to_str().unwrap()],
    ));
    assert_eq!(
        diff,
        "~ domain example.test: transport lmtp:inet:127.0.0.1:24\n\
         ~ user bob@example.test: password\n\
         ~ user bob@example.test: quota 4096\n\
         ~ user bob@example.test: enabled false\n"
    );
    let (show, _) = ok(run_tool(
        &env,
        "mailctl",
        &["user", "show", "bob@example.test"],
    ));
    assert!(show.contains("enabled: no\n"), "{show}");
    let (domains, _) = ok(run_tool(&env, "mailctl", &["domain", "list", "-l"]));
    assert!(domains.contains("lmtp:inet:127.0.0.1:24"), "{domains}");
    // The directory now holds exactly the document (bob with alice's hash).
    let (after, _) = ok(run_tool(&env, "mailctl", &["config", "export"]));
    assert_eq!(after, changed);

    for bad in ["version: 2\n", "version: 1\nusers: 3\n", "not yaml: [\n"] {
        std::fs::write(&f, bad).unwrap();
        let (code, out, err) = run_tool(&env, "mailctl", &["config", "apply", f.to_str().unwrap()]);
        assert_eq!(code, 65, "{bad:?}: {out}{err}");
        assert_eq!(out, "");
    }
    assert!(
        ok(run_tool(&env, "mailctl", &["user", "list"]))
            .0
            .contains("bob@example.test")
    );
}

/// DKIM selectors travel in the document: export lists them with the one
/// that signs; apply switches the signing selector back to the document's,
/// and a selector whose key is not here is reported (exit 1) rather than
/// invented.
#[test]
fn dkim_selectors_are_exported_and_applied() {
    let env = TestEnv::new();
    setup_users(&env, "");
    ok(run_tool(
        &env,
        "mailctl",
        &["dkim", "generate", "example.test", "--selector", "s1"],
    ));
    ok(run_tool(
        &env,
        "mailctl",
        &[
            "dkim",
            "generate",
            "example.test",
            "--selector",
            "s2",
            "--algorithm",
            "ed25519",
        ],
    ));
    ok(run_tool(
        &env,
        "mailctl",
        &["dkim", "activate", "example.test", "s2"],
    ));
    let (doc, _) = ok(run_tool(
        &env,
        "mailctl",
        &["config", "export", "--format", "json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let dkim: Vec<(String, String, String, bool)> = v["dkim"]
        .as_array()
        .unwrap_or_else(|| panic!("no dkim in {doc}"))
        .iter()
        .map(|k| {
            (
                k["domain"].as_str().unwrap().to_string(),
                k["selector"].as_str().unwrap().to_string(),
                k["algorithm"].as_str().unwrap().to_string(),
                k["active"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        dkim,
        [
            ("example.test".into(), "s1".into(), "rsa".into(), false),
            ("example.test".into(), "s2".into(), "ed25519".into(), true),
        ]
    );
    let file = env.path().join("state.json");
    std::fs::write(&file, &doc).unwrap();

    // Someone switched back to s1: apply makes s2 sign again.
    ok(run_tool(
        &env,
        "mailctl",
        &["dkim", "activate", "example.test", "s1"],
    ));
    let (out, _) = ok(run_tool(
        &env,
        "mailctl",
        &["config", "apply", file.to_str().unwrap()],
    ));
    assert_eq!(out, "~ dkim example.test: signing with selector s2\n");
    let (list, _) = ok(run_tool(&env, "mailctl", &["dkim", "list", "example.test"]));
    let active: Vec<&str> = list
        .lines()
        .filter(|l| l.contains("active") && !l.contains("inactive"))
        .collect();
    assert!(active.len() == 1 && active[0].contains("s2"), "{list}");

    // A selector whose key is not in the key directory: reported, exit 1.
    let other = doc.replace("\"s1\"", "\"s9\"");
    std::fs::write(&file, other).unwrap();
    let (code, out, err) = run_tool(
        &env,
        "mailctl",
        &["config", "apply", file.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("! dkim example.test selector s9 (rsa): no key here"),
        "{out}"
    );
}
