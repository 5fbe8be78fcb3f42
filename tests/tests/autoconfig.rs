//! autoconfigd: every document fetched from the running daemon (plain HTTP
//! and HTTPS with the configured certificate), parsed by Python's
//! xml.etree / plistlib (`tests/py/autoconfig_fetch.py`), and checked
//! against the listeners of the configuration; malformed requests refused.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use postern_tests::{Daemon, TestEnv, free_port, run_tool};
use serde_json::Value;

struct Autoconfig {
    env: TestEnv,
    http: u16,
    https: u16,
    daemon: Daemon,
}

fn start() -> Autoconfig {
    let env = TestEnv::new();
    let (http, https) = (free_port(), free_port());
    let text = format!(
        "{}\n[autoconfig]\nlistener = [\n  {{ name = \"http\", address = \"127.0.0.1:{http}\", role = \"http\" }},\n  {{ name = \"https\", address = \"127.0.0.1:{https}\", role = \"https\" }},\n]\n",
        env.config_text("level = \"debug\"")
    );
    std::fs::write(&env.config_path, text).unwrap();
    let daemon = Daemon::start(&env, "autoconfigd");
    Autoconfig {
        env,
        http,
        https,
        daemon,
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/autoconfig_fetch.py")
}

fn fetch(kind: &str, url: &str, extra: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(script())
        .args([kind, url])
        .args(extra)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{kind} {url}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from the fetch script")
}

/// The servers the Thunderbird document must list, in order.
fn expected_thunderbird(env: &TestEnv) -> Vec<(String, String, u64, String)> {
    let p = |n: &str| u64::from(env.ports[n]);
    [
        ("incomingServer", "imap", p("imaps"), "SSL"),
        ("incomingServer", "imap", p("imap"), "STARTTLS"),
        ("incomingServer", "pop3", p("pop3s"), "SSL"),
        ("incomingServer", "pop3", p("pop3"), "STARTTLS"),
        ("outgoingServer", "smtp", p("submissions"), "SSL"),
        ("outgoingServer", "smtp", p("submission"), "STARTTLS"),
    ]
    .into_iter()
    .map(|(k, t, port, s)| (k.to_string(), t.to_string(), port, s.to_string()))
    .collect()
}

fn thunderbird_servers(doc: &Value) -> Vec<(String, String, u64, String)> {
    doc["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["hostname"], "mail.example.test");
            assert_eq!(s["username"], "%EMAILADDRESS%");
            assert_eq!(s["authentication"], "password-cleartext");
            (
                s["kind"].as_str().unwrap().to_string(),
                s["type"].as_str().unwrap().to_string(),
                s["port"].as_u64().unwrap(),
                s["socketType"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn thunderbird_documents_match_the_listeners() {
    let a = start();
    let base = format!("http://127.0.0.1:{}", a.http);
    let doc = fetch(
        "thunderbird",
        &format!(
            "{base}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice%40Other.test"
        ),
        &[],
    );
    assert_eq!(doc["status"], 200);
    assert!(doc["content_type"].as_str().unwrap().contains("xml"));
    assert_eq!(doc["domain"], "other.test");
    assert_eq!(doc["id"], "other.test");
    assert_eq!(thunderbird_servers(&doc), expected_thunderbird(&a.env));
    // The other path, domain from the Host header (autoconfig.<domain>).
    let doc = fetch(
        "thunderbird",
        &format!("{base}/mail/config-v1.1.xml"),
        &["--host", "autoconfig.example.test"],
    );
    assert_eq!(doc["domain"], "example.test");
    assert_eq!(thunderbird_servers(&doc), expected_thunderbird(&a.env));
    // Over HTTPS, the certificate verified against the test CA.
    let ca = a.env.cert.ca_file.display().to_string();
    let doc = fetch(
        "thunderbird",
        &format!("https://127.0.0.1:{}/mail/config-v1.1.xml", a.https),
        &["--cafile", &ca],
    );
    assert_eq!(doc["status"], 200);
    assert_eq!(doc["domain"], "example.test", "global.mydomain");
    assert_eq!(thunderbird_servers(&doc), expected_thunderbird(&a.env));
}

#[test]
fn autodiscover_answers_post_and_get() {
    let a = start();
    let url = format!("http://127.0.0.1:{}/autodiscover/autodiscover.xml", a.http);
    let request = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
        <Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\">\
        <Request><EMailAddress>bob@example.test</EMailAddress>\
        <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>\
        </Request></Autodiscover>";
    let p = |n: &str| a.env.ports[n].to_string();
    let expected = [
        ("IMAP", p("imaps"), "SSL"),
        ("POP3", p("pop3s"), "SSL"),
        ("SMTP", p("submissions"), "SSL"),
    ];
    let upper = url.replace("autodiscover/autodiscover", "Autodiscover/Autodiscover");
    for doc in [
        fetch("autodiscover", &upper, &["--post", request]),
        fetch(
            "autodiscover",
            &format!("{url}?email=bob@example.test"),
            &[],
        ),
    ] {
        assert_eq!(doc["status"], 200, "{doc}");
        let protos = doc["protocols"].as_array().unwrap();
        assert_eq!(protos.len(), expected.len(), "{doc}");
        for (p, (kind, port, enc)) in protos.iter().zip(&expected) {
            assert_eq!(p["Type"], *kind);
            assert_eq!(p["Server"], "mail.example.test");
            assert_eq!(p["Port"], port.as_str());
            assert_eq!(p["SSL"], "on");
            assert_eq!(p["Encryption"], *enc);
            assert_eq!(p["LoginName"], "bob@example.test");
            assert_eq!(p["AuthRequired"], "on");
        }
    }
    // No address: an error document with 400.
    let doc = fetch(
        "raw",
        &url,
        &["--post", "<Autodiscover><Request/></Autodiscover>"],
    );
    assert_eq!(doc["status"], 400);
    assert!(
        doc["body"]
            .as_str()
            .unwrap()
            .contains("<ErrorCode>600</ErrorCode>")
    );
}

#[test]
fn apple_profile_is_a_valid_plist() {
    let a = start();
    let url = format!(
        "http://127.0.0.1:{}/apple/postern.mobileconfig?email=carol%40example.test",
        a.http
    );
    let doc = fetch("mobileconfig", &url, &[]);
    assert_eq!(doc["status"], 200);
    assert_eq!(doc["content_type"], "application/x-apple-aspen-config");
    let m = &doc["mail"];
    assert_eq!(m["EmailAccountType"], "EmailTypeIMAP");
    assert_eq!(m["EmailAddress"], "carol@example.test");
    assert_eq!(m["IncomingMailServerHostName"], "mail.example.test");
    assert_eq!(m["IncomingMailServerPortNumber"], a.env.ports["imaps"]);
    assert_eq!(m["IncomingMailServerUseSSL"], true);
    assert_eq!(m["IncomingMailServerUsername"], "carol@example.test");
    assert_eq!(m["OutgoingMailServerHostName"], "mail.example.test");
    assert_eq!(
        m["OutgoingMailServerPortNumber"],
        a.env.ports["submissions"]
    );
    assert_eq!(m["OutgoingMailServerUseSSL"], true);
    assert_eq!(m["OutgoingPasswordSameAsIncomingPassword"], true);
    // The same address gets the same identifiers (reinstalling replaces).
    assert_eq!(
        fetch("mobileconfig", &url, &[])["profile_uuid"],
        doc["profile_uuid"]
    );
    let other = fetch("mobileconfig", &url.replace("carol", "dave"), &[]);
    assert_ne!(other["profile_uuid"], doc["profile_uuid"]);
}

#[test]
fn mta_sts_policy_is_served() {
    let a = start();
    let doc = fetch(
        "raw",
        &format!("http://127.0.0.1:{}/.well-known/mta-sts.txt", a.http),
        &[],
    );
    assert_eq!(doc["status"], 200);
    assert_eq!(
        doc["body"],
        "version: STSv1\r\nmode: testing\r\nmx: mail.example.test\r\nmax_age: 604800\r\n"
    );
}

/// One raw HTTP/1.1 exchange; returns the status line's code.
fn raw(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    // The server may close before reading everything (oversized input).
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1).unwrap_or("closed").to_string()
}

#[test]
fn malformed_requests_are_refused() {
    let a = start();
    let cases: Vec<(String, Vec<u8>)> = vec![
        (
            "400".into(),
            b"GET /mail/config-v1.1.xml?emailaddress=%3Cscript%3E@x.test HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "400".into(),
            b"GET /apple/postern.mobileconfig HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ),
        (
            "400".into(),
            b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.bad_name\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "404".into(),
            b"GET /etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        (
            "405".into(),
            b"DELETE /mail/config-v1.1.xml HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ),
        ("413".into(), {
            let mut r = format!(
                "POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                20 * 1024
            )
            .into_bytes();
            r.extend(std::iter::repeat_n(b'a', 20 * 1024));
            r
        }),
        ("431".into(), {
            let mut r = b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
            r.extend(std::iter::repeat_n(b'a', 64 * 1024));
            r.extend(b"\r\n\r\n");
            r
        }),
    ];
    for (want, request) in cases {
        let got = raw(a.http, &request);
        assert_eq!(
            got,
            want,
            "{}",
            String::from_utf8_lossy(&request[..request.len().min(120)])
        );
    }
    // Still serving.
    let ok = raw(
        a.http,
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(ok, "200");
}

#[test]
fn without_a_listener_autoconfigd_is_off() {
    let env = TestEnv::new();
    let (code, _, err) = run_tool(&env, "autoconfigd", &[]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("autoconfig.listener"), "{err}");
}

#[test]
fn sighup_applies_a_new_mta_sts_mode_and_mailctl_dns_follows() {
    let a = start();
    let url = format!("http://127.0.0.1:{}/.well-known/mta-sts.txt", a.http);
    let id = |env: &TestEnv| {
        let (code, out, err) = run_tool(
            env,
            "mailctl",
            &["dns", "example.test", "--json", "--ip", "192.0.2.1"],
        );
        assert_eq!(code, 0, "{err}");
        let j: Value = serde_json::from_str(&out).unwrap();
        j["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "_mta-sts.example.test.")
            .map(|r| r["text"].as_str().unwrap().to_string())
            .unwrap()
    };
    let before = id(&a.env);
    let text =
        std::fs::read_to_string(&a.env.config_path).unwrap() + "mta_sts_mode = \"enforce\"\n";
    std::fs::write(&a.env.config_path, text).unwrap();
    a.daemon.signal(nix::sys::signal::Signal::SIGHUP);
    a.daemon
        .wait_output("configuration reloaded", Duration::from_secs(10))
        .unwrap();
    let doc = fetch("raw", &url, &[]);
    assert!(
        doc["body"].as_str().unwrap().contains("mode: enforce\r\n"),
        "{doc}"
    );
    let after = id(&a.env);
    assert_ne!(before, after, "the _mta-sts id changes with the policy");
}
