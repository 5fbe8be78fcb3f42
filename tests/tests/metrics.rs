//! Metrics and health: every daemon's Prometheus endpoint scraped over HTTP,
//! counters that move after a real SMTP delivery (Python's smtplib) and
//! failed IMAP and POP3 logins (imaplib, poplib); `mailctl status` green on a
//! running stack and red, naming the daemon, with one stopped; the sample
//! Grafana dashboard and alert rules in deploy/ use only documented metrics
//! (and pass `promtool check rules` where Debian's prometheus is installed).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postern_tests::stack::{maildir, setup_users, wait_for_messages};
use postern_tests::{DAEMONS, Daemon, TestEnv, free_port, run_tool};

const ALL: [&str; 7] = [
    "authd",
    "lmtp-delivery",
    "queue-manager",
    "smtpd",
    "pop3d",
    "imapd",
    "autoconfigd",
];

struct Stack {
    env: TestEnv,
    metrics: BTreeMap<&'static str, u16>,
    daemons: Vec<(&'static str, Daemon)>,
}

impl Stack {
    fn start() -> Stack {
        let env = TestEnv::new();
        let metrics: BTreeMap<&'static str, u16> = ALL.iter().map(|d| (*d, free_port())).collect();
        let mut extra = String::from("\n[metrics]\n");
        for (d, port) in &metrics {
            extra.push_str(&format!("{} = \"127.0.0.1:{port}\"\n", d.replace('-', "_")));
        }
        extra.push_str(&format!(
            "\n[autoconfig]\nlistener = [{{ name = \"http\", address = \"127.0.0.1:{}\", role = \"http\" }}]\n",
            free_port()
        ));
        extra.push_str(
            "\n[authd]\nauth_failure_delay = \"10ms\"\nauth_failure_delay_max = \"40ms\"\n",
        );
        setup_users(&env, &extra);
        let daemons = DAEMONS
            .iter()
            .chain(["autoconfigd"].iter())
            .map(|d| (*d, Daemon::start(&env, d)))
            .collect();
        Stack {
            env,
            metrics,
            daemons,
        }
    }

    fn scrape(&self, daemon: &str) -> String {
        let (status, head, body) = http_get(self.metrics[daemon], "/metrics");
        assert_eq!(status, 200, "{daemon}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{daemon}: {head}"
        );
        body
    }

    /// Poll `daemon`'s endpoint until `series` reaches `min` (counters are
    /// updated right after the client sees its reply, so allow a moment).
    fn wait_value(&self, daemon: &str, series: &str, min: f64) -> f64 {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.scrape(daemon);
            let v = value(&text, series).unwrap_or(0.0);
            if v >= min {
                return v;
            }
            assert!(
                Instant::now() < end,
                "{daemon}: {series} is {v}, expected at least {min}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A plain HTTP/1.1 GET: (status, head, body).
fn http_get(port: u16, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// The value of the sample `series` (name with its labels, exactly as
/// exposed) in a text exposition.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn python(script: &str) -> (bool, String) {
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .expect("python3");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_daemon_serves_metrics_and_counters_move() {
    let st = Stack::start();
    let version = env!("CARGO_PKG_VERSION");
    for d in ALL {
        let text = st.scrape(d);
        let prefix = format!("postern_{}", d.replace('-', "_"));
        assert_eq!(
            value(
                &text,
                &format!("{prefix}_build_info{{version=\"{version}\"}}")
            ),
            Some(1.0),
            "{d}:\n{text}"
        );
        let started = value(&text, &format!("{prefix}_start_time_seconds")).unwrap_or(0.0);
        assert!(started > 1.6e9, "{d}: start time {started}");
        // Everything exposed is a documented postern metric of this daemon.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(name.starts_with(&prefix), "{d}: {line}");
        }
        // Only /metrics is served; other paths get 404.
        let (status, _, _) = http_get(st.metrics[d], "/nope");
        assert_eq!(status, 404, "{d}");
    }
    let queue = st.scrape("queue-manager");
    for q in ["incoming", "active", "deferred", "hold"] {
        assert_eq!(
            value(
                &queue,
                &format!("postern_queue_manager_queue_messages{{queue=\"{q}\"}}")
            ),
            Some(0.0),
            "{queue}"
        );
    }

    // A real SMTP delivery: smtplib to the MX listener, LMTP into alice's Maildir.
    let smtp = st.env.ports["smtp"];
    let (ok, out) = python(&format!(
        "import smtplib\ns = smtplib.SMTP('127.0.0.1', {smtp})\ns.ehlo('client.example')\n\
         s.sendmail('sender@elsewhere.test', ['alice@example.test'], \
         b'From: sender@elsewhere.test\\r\\nTo: alice@example.test\\r\\nSubject: metrics\\r\\n\\r\\nhello\\r\\n')\n\
         s.quit()\n"
    ));
    assert!(ok, "smtplib: {out}");
    wait_for_messages(&maildir(&st.env, "alice"), 1, Duration::from_secs(30)).unwrap();
    st.wait_value(
        "smtpd",
        "postern_smtpd_connections_total{listener=\"smtp\"}",
        1.0,
    );
    st.wait_value(
        "smtpd",
        "postern_smtpd_messages_received_total{listener=\"smtp\"}",
        1.0,
    );
    st.wait_value(
        "smtpd",
        "postern_smtpd_sessions_total{listener=\"smtp\",outcome=\"quit\"}",
        1.0,
    );
    st.wait_value(
        "smtpd",
        "postern_smtpd_connections_active{listener=\"smtp\"}",
        0.0,
    );
    st.wait_value(
        "queue-manager",
        "postern_queue_manager_messages_enqueued_total{source=\"private\"}",
        1.0,
    );
    st.wait_value(
        "queue-manager",
        "postern_queue_manager_messages_delivered_total{transport=\"lmtp\",domain=\"example.test\"}",
        1.0,
    );
    st.wait_value(
        "queue-manager",
        "postern_queue_manager_delivery_duration_seconds_count{transport=\"lmtp\"}",
        1.0,
    );
    st.wait_value(
        "lmtp-delivery",
        "postern_lmtp_delivery_mailstore_operations_total{operation=\"deliver\",result=\"success\"}",
        1.0,
    );
    st.wait_value(
        "authd",
        "postern_authd_lookups_total{kind=\"recipient\",result=\"local\"}",
        1.0,
    );

    // Failed logins over IMAPS and POP3S (the CA-verified TLS handshake counts too).
    let ca = st.env.cert.ca_file.display().to_string();
    let (imaps, pop3s) = (st.env.ports["imaps"], st.env.ports["pop3s"]);
    let (ok, out) = python(&format!(
        "import imaplib, poplib, ssl\nctx = ssl.create_default_context(cafile={ca:?})\n\
         m = imaplib.IMAP4_SSL('localhost', {imaps}, ssl_context=ctx)\n\
         try:\n    m.login('alice@example.test', 'wrong')\n    raise SystemExit('imap login worked')\n\
         except imaplib.IMAP4.error:\n    pass\nm.logout()\n\
         p = poplib.POP3_SSL('localhost', {pop3s}, context=ctx)\np.user('alice@example.test')\n\
         try:\n    p.pass_('wrong')\n    raise SystemExit('pop3 login worked')\n\
         except poplib.error_proto:\n    pass\np.quit()\n"
    ));
    assert!(ok, "imaplib/poplib: {out}");
    st.wait_value(
        "authd",
        "postern_authd_auth_attempts_total{service=\"imap\",mechanism=\"PLAIN\",result=\"failure\"}",
        1.0,
    );
    st.wait_value(
        "authd",
        "postern_authd_auth_attempts_total{service=\"pop3\",mechanism=\"PLAIN\",result=\"failure\"}",
        1.0,
    );
    st.wait_value(
        "imapd",
        "postern_imapd_tls_handshakes_total{listener=\"imaps\",result=\"success\"}",
        1.0,
    );
    st.wait_value(
        "imapd",
        "postern_imapd_connections_total{listener=\"imaps\"}",
        1.0,
    );
    st.wait_value(
        "pop3d",
        "postern_pop3d_connections_total{listener=\"pop3s\"}",
        1.0,
    );
    st.wait_value(
        "imapd",
        "postern_imapd_sessions_total{listener=\"imaps\",outcome=\"quit\"}",
        1.0,
    );
    st.wait_value(
        "pop3d",
        "postern_pop3d_sessions_total{listener=\"pop3s\",outcome=\"quit\"}",
        1.0,
    );
    drop(st.daemons);
}

fn status(env: &TestEnv, json: bool) -> (i32, String, String) {
    let args: &[&str] = if json {
        &["status", "--json"]
    } else {
        &["status"]
    };
    run_tool(env, "mailctl", args)
}

#[test]
fn mailctl_status_green_then_red_naming_the_stopped_daemon() {
    let mut st = Stack::start();
    let (code, out, err) = status(&st.env, false);
    eprintln!("{out}");
    assert_eq!(code, 0, "{out}{err}");
    for d in ALL {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(d))
            .unwrap_or_else(|| panic!("no line for {d}:\n{out}"));
        assert!(line.contains(" up "), "{line}\n{out}");
    }
    for check in [
        "smtp",
        "submission",
        "submissions",
        "pop3",
        "pop3s",
        "imap",
        "imaps",
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!(" {check} ")) && l.contains(" ok ")),
            "check {check}:\n{out}"
        );
    }
    let (code, out, err) = status(&st.env, true);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["ok"], true, "{out}");
    let daemons = v["daemons"].as_array().unwrap();
    assert_eq!(daemons.len(), ALL.len(), "{out}");
    for d in daemons {
        assert_eq!(d["state"], "up", "{d}");
        assert_eq!(d["version"], env!("CARGO_PKG_VERSION"), "{d}");
    }
    assert_eq!(v["queue"]["deferred"], 0, "{out}");

    // Stop imapd: red, and the output names it.
    let i = st.daemons.iter().position(|(n, _)| *n == "imapd").unwrap();
    let (_, mut imapd) = st.daemons.remove(i);
    imapd.stop();
    let (code, out, err) = status(&st.env, false);
    eprintln!("{out}{err}");
    assert_ne!(code, 0, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some("imapd"))
        .unwrap_or_else(|| panic!("no imapd line:\n{out}"));
    assert!(line.contains(" down"), "{line}");
    assert!(err.contains("imapd"), "stderr names the daemon: {err}");
    let smtpd = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some("smtpd"))
        .unwrap();
    assert!(smtpd.contains(" up "), "{smtpd}");
    let (code, out, _) = status(&st.env, true);
    assert_ne!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["ok"], false);
    let imapd = v["daemons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "imapd")
        .unwrap();
    assert_eq!(imapd["state"], "down", "{imapd}");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Metric names in docs/METRICS.md's table (first column, in backticks).
fn documented() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("docs/METRICS.md")).unwrap();
    text.lines()
        .filter(|l| l.starts_with("| `postern_"))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect()
}

/// Every `postern_...` name in `text`, with the histogram/summary suffixes
/// taken off.
fn referenced(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("postern_") {
        let start = i + pos;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        let preceded = start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        if !preceded {
            let name = &text[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|n| n.ends_with("_seconds")))
                .unwrap_or(name);
            out.push(base.to_string());
        }
        i = end;
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn dashboard_and_alert_rules_use_documented_metrics() {
    let docs = documented();
    assert!(docs.len() >= 20, "table of docs/METRICS.md: {docs:?}");
    let dashboard = std::fs::read_to_string(repo().join("deploy/grafana/postern.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    assert!(!json["panels"].as_array().unwrap().is_empty());
    let rules =
        std::fs::read_to_string(repo().join("deploy/prometheus/postern-rules.yml")).unwrap();
    for (file, text) in [("dashboard", &dashboard), ("rules", &rules)] {
        let names = referenced(text);
        assert!(names.len() >= 5, "{file}: {names:?}");
        for n in names {
            assert!(docs.contains(&n), "{file} uses {n}, not in docs/METRICS.md");
        }
    }
    // Every documented metric is exposed by the code: its family name is in
    // the metrics module (suffixes added by the encoder taken off).
    let code = std::fs::read_to_string(repo().join("crates/common/src/metrics.rs")).unwrap();
    for n in &docs {
        let rest = n.strip_prefix("postern_").unwrap();
        let family = ALL
            .iter()
            .map(|d| d.replace('-', "_"))
            .find_map(|d| rest.strip_prefix(&format!("{d}_")).map(str::to_string))
            .unwrap_or_else(|| panic!("{n}: no daemon prefix"));
        let family = family
            .strip_suffix("_total")
            .or_else(|| family.strip_suffix("_seconds"))
            .unwrap_or(&family);
        assert!(
            code.contains(&format!("\"{family}\"")),
            "{n}: family {family:?} not registered"
        );
    }
    match Command::new("promtool").arg("--version").output() {
        Ok(_) => {
            let out = Command::new("promtool")
                .args(["check", "rules"])
                .arg(repo().join("deploy/prometheus/postern-rules.yml"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) => {
            eprintln!("promtool not installed (Debian: prometheus); rules only checked for names")
        }
    }
}

#[test]
fn connections_refused_by_a_limit_are_counted() {
    let env = TestEnv::new();
    let metrics = free_port();
    // config_text already has an [smtpd] section: add the key to it.
    let mut text = env.config_text("level = \"info\"").replacen(
        "[smtpd]\n",
        "[smtpd]\nmax_connections = 1\n",
        1,
    );
    text.push_str(&format!("\n[metrics]\nsmtpd = \"127.0.0.1:{metrics}\"\n"));
    std::fs::write(&env.config_path, text).unwrap();
    let _smtpd = Daemon::start(&env, "smtpd");
    let port = env.ports["smtp"];
    let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = [0u8; 3];
    first.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"220");
    let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    let _ = second.read_to_string(&mut reply);
    assert!(reply.starts_with("421 4.7.0"), "{reply:?}");
    let scrape = || http_get(metrics, "/metrics").2;
    let end = Instant::now() + Duration::from_secs(20);
    let series = [
        "postern_smtpd_connections_refused_total{listener=\"smtp\",reason=\"max_connections\"}",
        "postern_smtpd_sessions_total{listener=\"smtp\",outcome=\"refused\"}",
        "postern_smtpd_connections_active{listener=\"smtp\"}",
    ];
    loop {
        let text = scrape();
        let v: Vec<f64> = series
            .iter()
            .map(|s| value(&text, s).unwrap_or(-1.0))
            .collect();
        // Refused once, counted as a refused session; the first connection is still open.
        if v == [1.0, 1.0, 1.0] {
            break;
        }
        assert!(Instant::now() < end, "{v:?}\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(first);
}
