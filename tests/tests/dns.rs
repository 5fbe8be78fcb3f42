//! `mailctl dns`: the BIND fragment is loaded into a zone by BIND's own
//! checker (`named-checkzone`, Debian's bind9-utils) with full integrity
//! checks, its canonical form (`named-compilezone`) equals the JSON form,
//! and the SRV ports are the configured listeners'.

use std::collections::BTreeSet;
use std::process::Command;

use postern_tests::{TestEnv, bin, run_tool};
use serde_json::Value;

const ZONE_HEAD: &str = "$ORIGIN example.test.\n$TTL 3600\n\
@ IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300\n\
@ IN NS ns1.example.test.\n\
ns1 IN A 192.0.2.53\n";

fn dns(env: &TestEnv, extra: &[&str]) -> String {
    let mut args = vec![
        "dns",
        "example.test",
        "--ip",
        "192.0.2.10",
        "--ipv6",
        "2001:db8::10",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = run_tool(env, "mailctl", &args);
    assert_eq!(code, 0, "{err}");
    out
}

/// named-checkzone with every integrity check made fatal; (success, output).
fn checkzone(env: &TestEnv, zone: &str) -> (bool, String) {
    let path = env.path().join("example.test.zone");
    std::fs::write(&path, zone).unwrap();
    let out = Command::new("named-checkzone")
        .args(["-i", "full", "-k", "fail", "-m", "fail", "-M", "fail"])
        .args(["-n", "fail", "-S", "fail", "example.test"])
        .arg(&path)
        .output()
        .expect("named-checkzone (package bind9-utils; make test-deps installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The zone in BIND's canonical text form: (name, type, rdata) per record.
fn compiled(env: &TestEnv, zone: &str) -> BTreeSet<(String, String, String)> {
    let path = env.path().join("compile.zone");
    std::fs::write(&path, zone).unwrap();
    let out = Command::new("named-compilezone")
        .args([
            "-i",
            "none",
            "-f",
            "text",
            "-F",
            "text",
            "-o",
            "-",
            "example.test",
        ])
        .arg(&path)
        .output()
        .expect("named-compilezone");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // name ttl IN type rdata...
            (f.len() >= 5 && f[2] == "IN")
                .then(|| (f[0].to_string(), f[3].to_string(), f[4..].join(" ")))
        })
        .filter(|(_, t, _)| t != "SOA" && t != "NS")
        .filter(|(n, _, _)| n != "ns1.example.test.")
        .collect()
}

#[test]
fn bind_fragment_passes_named_checkzone_and_equals_the_json() {
    let env = TestEnv::new();
    let fragment = dns(&env, &[]);
    let zone = format!("{ZONE_HEAD}{fragment}");
    let (ok, text) = checkzone(&env, &zone);
    assert!(
        ok,
        "named-checkzone refused the fragment:\n{text}\n{fragment}"
    );
    assert!(
        fragment.contains("; DKIM: no key for example.test: create one with mailctl dkim generate"),
        "{fragment}"
    );
    assert!(fragment.contains("given with --ip/--ipv6"), "{fragment}");

    let json: Value = serde_json::from_str(&dns(&env, &["--json"])).expect("JSON");
    assert_eq!(json["address_source"], "option");
    assert_eq!(json["hostname"], "mail.example.test");
    let from_json: BTreeSet<(String, String, String)> = json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["type"].as_str().unwrap().to_string(),
                r["data"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        compiled(&env, &zone),
        from_json,
        "BIND's reading of the fragment vs --json"
    );

    // The SRV records carry the configured listener ports.
    let p = |n: &str| env.ports[n];
    for (label, port) in [
        ("_submission._tcp", p("submission")),
        ("_submissions._tcp", p("submissions")),
        ("_imap._tcp", p("imap")),
        ("_imaps._tcp", p("imaps")),
        ("_pop3._tcp", p("pop3")),
        ("_pop3s._tcp", p("pop3s")),
    ] {
        let want = (
            format!("{label}.example.test."),
            "SRV".to_string(),
            format!("0 1 {port} mail.example.test."),
        );
        assert!(from_json.contains(&want), "{want:?} in {from_json:?}");
    }
    for (name, rtype, data) in [
        ("example.test.", "MX", "10 mail.example.test."),
        ("mail.example.test.", "A", "192.0.2.10"),
        ("mail.example.test.", "AAAA", "2001:db8::10"),
        ("example.test.", "TXT", "\"v=spf1 mx -all\""),
        ("autoconfig.example.test.", "CNAME", "mail.example.test."),
        ("autodiscover.example.test.", "CNAME", "mail.example.test."),
        ("mta-sts.example.test.", "CNAME", "mail.example.test."),
    ] {
        assert!(
            from_json.contains(&(name.into(), rtype.into(), data.into())),
            "{name} {rtype} {data}"
        );
    }
    for name in ["_dmarc", "_mta-sts", "_smtp._tls"] {
        assert!(
            from_json
                .iter()
                .any(|(n, t, _)| *n == format!("{name}.example.test.") && t == "TXT"),
            "{name}"
        );
    }
}

#[test]
fn named_checkzone_notices_a_missing_address_record() {
    // The checker is not a rubber stamp: without the host's A/AAAA records
    // the MX and SRV targets in the zone have no address.
    let env = TestEnv::new();
    let fragment: String = dns(&env, &[])
        .lines()
        .filter(|l| !l.contains(" IN A ") && !l.contains(" IN AAAA "))
        .map(|l| format!("{l}\n"))
        .collect();
    let (ok, text) = checkzone(&env, &format!("{ZONE_HEAD}{fragment}"));
    assert!(!ok, "{text}");
    assert!(text.contains("has no address records"), "{text}");
}

#[test]
fn addresses_are_resolved_when_not_given() {
    let env = TestEnv::new();
    let out = Command::new(bin("mailctl"))
        .arg("--config")
        .arg(&env.config_path)
        .args(["dns", "example.test", "--json"])
        .env("POSTERN_GLOBAL__MYHOSTNAME", "localhost")
        .env_remove("POSTERN_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["address_source"], "resolved", "{json}");
    let records = json["records"].as_array().unwrap();
    assert!(
        records
            .iter()
            .any(|r| r["name"] == "localhost." && r["type"] == "A" && r["address"] == "127.0.0.1"),
        "{json}"
    );
}

#[test]
fn a_malformed_domain_is_refused() {
    let env = TestEnv::new();
    for bad in ["exa mple.test", "x-.test", "a..b", "", "under_score.test"] {
        let (code, out, err) = run_tool(&env, "mailctl", &["dns", bad]);
        assert_eq!(code, 65, "{bad:?}: {out}{err}");
        assert!(out.is_empty());
    }
}

#[test]
fn dkim_keys_are_published_and_pass_named_checkzone() {
    let env = TestEnv::new();
    let gen_args: [&[&str]; 2] = [
        &["dkim", "generate", "example.test", "--selector", "rsa1"],
        &[
            "dkim",
            "generate",
            "example.test",
            "--selector",
            "ed1",
            "--algorithm",
            "ed25519",
        ],
    ];
    for args in gen_args {
        let (code, out, err) = run_tool(&env, "mailctl", args);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("._domainkey.example.test. 3600 IN TXT \"v=DKIM1; k="),
            "{out}"
        );
    }
    let fragment = dns(&env, &[]);
    assert!(!fragment.contains("DKIM: no key"), "{fragment}");
    let zone = format!("{ZONE_HEAD}{fragment}");
    let (ok, text) = checkzone(&env, &zone);
    assert!(
        ok,
        "named-checkzone refused the fragment:\n{text}\n{fragment}"
    );
    // The RSA key is longer than one TXT string: BIND reads the same
    // strings the JSON names.
    let json: Value = serde_json::from_str(&dns(&env, &["--json"])).expect("JSON");
    let from_json: BTreeSet<(String, String, String)> = json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["type"].as_str().unwrap().to_string(),
                r["data"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let bind = compiled(&env, &zone);
    assert_eq!(bind, from_json, "BIND's reading of the fragment vs --json");
    let rsa = bind
        .iter()
        .find(|(n, t, _)| n == "rsa1._domainkey.example.test." && t == "TXT")
        .expect("rsa1 record");
    assert!(rsa.2.starts_with("\"v=DKIM1; k=rsa; p=MIIBIjAN"), "{rsa:?}");
    assert!(rsa.2.contains("\" \""), "two strings: {rsa:?}");
    assert!(
        bind.iter()
            .any(|(n, _, d)| n == "ed1._domainkey.example.test." && d.contains("k=ed25519"))
    );

    // list: the first key signs, the second waits for activate.
    let (code, out, _) = run_tool(&env, "mailctl", &["dkim", "list"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "example.test ed1 ed25519 inactive\nexample.test rsa1 rsa active\n"
    );
    let (code, _, _) = run_tool(
        &env,
        "mailctl",
        &["dkim", "activate", "example.test", "ed1"],
    );
    assert_eq!(code, 0);
    let (_, out, _) = run_tool(&env, "mailctl", &["dkim", "list", "example.test"]);
    assert_eq!(
        out,
        "example.test ed1 ed25519 active\nexample.test rsa1 rsa inactive\n"
    );

    // Mistakes: exit codes and messages, nothing overwritten.
    let (code, _, err) = run_tool(&env, "mailctl", gen_args[0]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("exists already"), "{err}");
    let (code, _, err) = run_tool(&env, "mailctl", &["dkim", "generate", "../etc"]);
    assert_eq!(code, 65, "{err}");
    let (code, _, err) = run_tool(
        &env,
        "mailctl",
        &["dkim", "generate", "example.test", "--selector", "a.b"],
    );
    assert_eq!(code, 65, "{err}");
    let (code, _, err) = run_tool(
        &env,
        "mailctl",
        &["dkim", "generate", "example.test", "--algorithm", "dsa"],
    );
    assert_eq!(code, 64, "{err}");
    let (code, _, err) = run_tool(
        &env,
        "mailctl",
        &["dkim", "activate", "example.test", "nope"],
    );
    assert_eq!(code, 1, "{err}");
}
