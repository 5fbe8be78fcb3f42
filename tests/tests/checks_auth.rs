//! Sender authentication end to end: real smtpd, queue-manager, authd and
//! lmtp-delivery, a real DNS server on loopback (Debian's dnsmasq) serving
//! SPF, DKIM and DMARC records, mail sent with Python's smtplib, and
//! Debian's dkimpy (`python3-dkim`) as the independent DKIM implementation:
//! it verifies postern's signatures (RSA and Ed25519) and signs a message
//! postern must verify.
//!
//! The test client connects from 127.0.0.1, which the configuration takes
//! out of `mynetworks` (mail from there would not be checked).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postern_tests::dnsmasq::Dnsmasq;
use postern_tests::stack::{files, mailctl, maildir, setup_users};
use postern_tests::{Daemon, TestEnv, free_port, run_tool};

/// Debian's interpreter, where `python3-dkim` is installed.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// dnsmasq on 127.0.0.1:`port` answering for `*.test` with `txt` records
/// (name → strings of at most 255 bytes); waits until it answers.
fn dnsmasq(dir: &Path, port: u16, txt: &BTreeMap<String, Vec<String>>) -> Dnsmasq {
    // dnsmasq splits the strings at commas and keeps quotes literally: the
    // values here have no commas and go in unquoted.
    let records: Vec<String> = txt
        .iter()
        .map(|(name, strings)| format!("--txt-record={name},{}", strings.join(",")))
        .collect();
    Dnsmasq::start(dir, port, &records)
}

/// A TXT value as DNS character-strings of at most 255 bytes.
fn chunks(text: &str) -> Vec<String> {
    text.as_bytes()
        .chunks(255)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect()
}

const CHECKS: &str = r#"
[checks.spf]
enabled = true
fail_action = "reject"

[checks.dkim]
enabled = true

[checks.arc]
enabled = true

[checks.dmarc]
enabled = true

[checks.dkim_sign]
enabled = true
"#;

/// Config (the checks, `dns` as the resolver, 127.0.0.1 outside
/// mynetworks), domain example.test with alice and bob.
fn configure(env: &TestEnv, dns_port: u16) {
    setup_users(
        env,
        &format!("\n[queue]\ndns_servers = [\"127.0.0.1:{dns_port}\"]\n{CHECKS}"),
    );
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let text = text.replacen(
        "[global]\n",
        "[global]\nmynetworks = [\"192.0.2.0/24\"]\n",
        1,
    );
    std::fs::write(&env.config_path, text).unwrap();
}

fn start(env: &TestEnv) -> Vec<Daemon> {
    ["authd", "lmtp-delivery", "queue-manager", "smtpd"]
        .into_iter()
        .map(|d| Daemon::start(env, d))
        .collect()
}

/// Send `message` with smtplib to the MX port (HELO `client.test`), or
/// with `login` to the submissions port (implicit TLS, CA verified).
/// Returns the first refusal (MAIL, RCPT or DATA) or the DATA reply.
fn send(
    env: &TestEnv,
    login: Option<(&str, &str)>,
    from: &str,
    to: &str,
    message: &[u8],
) -> (u16, String) {
    let path = env.path().join(format!("msg-{}", free_port()));
    std::fs::write(&path, message).unwrap();
    let connect = match login {
        None => format!(
            "s = smtplib.SMTP('127.0.0.1', {})\ns.ehlo('client.test')\n",
            env.ports["smtp"]
        ),
        Some((u, p)) => format!(
            "ctx = ssl.create_default_context(cafile={ca:?})\n\
             s = smtplib.SMTP_SSL('127.0.0.1', {port}, context=ctx)\ns.ehlo('client.test')\ns.login({u:?}, {p:?})\n",
            ca = env.cert.ca_file.display().to_string(),
            port = env.ports["submissions"]
        ),
    };
    let script = format!(
        "import smtplib, ssl, sys\n{connect}\
         def out(code, text):\n    print(code, text.decode())\n    s.quit()\n    sys.exit(0)\n\
         code, text = s.mail({from:?})\n\
         if code != 250: out(code, text)\n\
         code, text = s.rcpt({to:?})\n\
         if code != 250: out(code, text)\n\
         try:\n    code, text = s.data(open({path:?}, 'rb').read())\n\
         except smtplib.SMTPDataError as e:\n    code, text = e.smtp_code, e.smtp_error\n\
         out(code, text)\n",
        path = path.display().to_string()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, text) = stdout.trim().split_once(' ').unwrap();
    (code.parse().unwrap(), text.to_string())
}

fn message(from: &str, subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <bob@example.test>\r\nSubject: {subject}\r\n\
         Date: Thu, 03 Dec 2026 11:00:00 +0000\r\nMessage-ID: <{subject}@client.test>\r\n\
         {extra}\r\nhello {subject}\r\n"
    )
    .into_bytes()
}

/// Wait for the message with `subject` in `dir` (new/ or cur/) and return it.
fn find(dir: &Path, subject: &str) -> String {
    find_with(dir, subject, "")
}

/// [`find`], the message also containing `also`.
fn find_with(dir: &Path, subject: &str, also: &str) -> String {
    let needle = format!("Subject: {subject}\r\n");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        for f in files(dir) {
            // Stored with LF line ends (Maildir); back to the wire form.
            if let Ok(m) =
                std::fs::read_to_string(&f).map(|m| m.replace("\r\n", "\n").replace('\n', "\r\n"))
                && m.contains(&needle)
                && m.contains(also)
            {
                return m;
            }
        }
        assert!(
            Instant::now() < end,
            "no message {subject:?} in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Our `Authentication-Results` field (authserv-id mail.example.test) of
/// a stored message, unfolded; there must be exactly one.
fn auth_results(msg: &str) -> String {
    let head = msg.split("\r\n\r\n").next().unwrap();
    let unfolded = head.replace("\r\n\t", " ").replace("\r\n ", " ");
    let fields: Vec<&str> = unfolded
        .lines()
        .filter(|l| l.starts_with("Authentication-Results: mail.example.test"))
        .collect();
    assert_eq!(
        fields.len(),
        1,
        "one Authentication-Results of ours in\n{head}"
    );
    fields[0].to_string()
}

#[test]
fn spf_and_dmarc_policies_against_records_in_dns() {
    let env = TestEnv::new();
    let dns_port = free_port();
    let mut txt = BTreeMap::new();
    for (name, value) in [
        ("pass.test", "v=spf1 ip4:127.0.0.1 -all"),
        ("fail.test", "v=spf1 ip4:192.0.2.7 -all"),
        ("softfail.test", "v=spf1 ~all"),
        ("reject.test", "v=spf1 ~all"),
        ("_dmarc.reject.test", "v=DMARC1; p=reject"),
        ("quar.test", "v=spf1 ~all"),
        ("_dmarc.quar.test", "v=DMARC1; p=quarantine"),
        // The subdomain policy applies to sub.reject.test (no own record).
        ("sub.reject.test", "v=spf1 ~all"),
        ("_dmarc.relaxed.test", "v=DMARC1; p=reject; sp=none"),
        ("sub.relaxed.test", "v=spf1 ~all"),
    ] {
        txt.insert(name.to_string(), vec![value.to_string()]);
    }
    let _dns = dnsmasq(env.path(), dns_port, &txt);
    configure(&env, dns_port);
    let daemons = start(&env);
    let bob = maildir(&env, "bob");
    let logs = || -> String { daemons.iter().map(|d| d.output()).collect() };

    // SPF pass: delivered, with our Authentication-Results.
    let (code, text) = send(
        &env,
        None,
        "a@pass.test",
        "bob@example.test",
        &message("a@pass.test", "pass", ""),
    );
    assert_eq!(code, 250, "{text}\n{}", logs());
    let m = find(&bob, "pass");
    let ar = auth_results(&m);
    assert!(
        ar.starts_with("Authentication-Results: mail.example.test;"),
        "{ar}"
    );
    assert!(ar.contains("spf=pass"), "{ar}");
    assert!(ar.contains("smtp.mailfrom=a@pass.test"), "{ar}");
    assert!(ar.contains("dkim=none"), "{ar}");
    // No DMARC record: none.
    assert!(ar.contains("dmarc=none header.from=pass.test"), "{ar}");
    assert!(ar.contains("smtp.helo=client.test"), "{ar}");
    // Above smtpd's own Received: (prepended).
    assert!(m.find("Authentication-Results:").unwrap() < m.find("Received:").unwrap());

    // SPF fail with fail_action = "reject": refused at MAIL FROM.
    let (code, text) = send(
        &env,
        None,
        "a@fail.test",
        "bob@example.test",
        &message("a@fail.test", "fail", ""),
    );
    assert_eq!(code, 550, "{text}");
    assert!(text.starts_with("5.7.23"), "{text}");
    assert!(text.contains("fail.test"), "{text}");

    // Softfail never rejects.
    let (code, text) = send(
        &env,
        None,
        "a@softfail.test",
        "bob@example.test",
        &message("a@softfail.test", "soft", ""),
    );
    assert_eq!(code, 250, "{text}");
    let ar = auth_results(&find(&bob, "soft"));
    assert!(ar.contains("spf=softfail"), "{ar}");

    // DMARC p=reject without aligned SPF or DKIM: 550 5.7.1 at end of data.
    let (code, text) = send(
        &env,
        None,
        "a@reject.test",
        "bob@example.test",
        &message("a@reject.test", "rej", ""),
    );
    assert_eq!(code, 550, "{text}");
    assert!(text.starts_with("5.7.1"), "{text}");
    assert!(text.contains("DMARC policy of reject.test"), "{text}");
    // The organizational domain's record covers a subdomain (sp = p).
    let (code, text) = send(
        &env,
        None,
        "a@sub.reject.test",
        "bob@example.test",
        &message("a@sub.reject.test", "subrej", ""),
    );
    assert_eq!(code, 550, "{text}");
    // sp=none: a subdomain of relaxed.test is only recorded.
    let (code, text) = send(
        &env,
        None,
        "a@sub.relaxed.test",
        "bob@example.test",
        &message("a@sub.relaxed.test", "subnone", ""),
    );
    assert_eq!(code, 250, "{text}");
    let ar = auth_results(&find(&bob, "subnone"));
    assert!(
        ar.contains("dmarc=fail header.from=sub.relaxed.test policy.dmarc=none"),
        "{ar}"
    );

    // DMARC p=quarantine: accepted, delivered into Junk, marker removed.
    let (code, text) = send(
        &env,
        None,
        "a@quar.test",
        "bob@example.test",
        &message("a@quar.test", "quar", ""),
    );
    assert_eq!(code, 250, "{text}");
    let junk = find(&bob.join(".Junk"), "quar");
    assert!(junk.contains("Subject: quar"), "{junk}");
    assert!(!junk.contains("X-Postern-Junk"), "{junk}");
    let ar = auth_results(&junk);
    assert!(
        ar.contains("dmarc=fail header.from=quar.test policy.dmarc=quarantine"),
        "{ar}"
    );
    assert_eq!(files(&bob).len(), 3, "not in INBOX");

    // A sender planting the marker gets INBOX, and the marker is gone.
    let (code, text) = send(
        &env,
        None,
        "a@pass.test",
        "bob@example.test",
        &message(
            "a@pass.test",
            "planted",
            "X-Postern-Junk: yes\r\nAuthentication-Results: mail.example.test; dmarc=pass header.from=bank.test\r\n",
        ),
    );
    assert_eq!(code, 250, "{text}");
    let m = find(&bob, "planted");
    assert!(m.contains("Subject: planted"), "{m}");
    assert!(!m.contains("X-Postern-Junk"), "{m}");
    // The forged Authentication-Results naming us is gone (RFC 8601 5):
    // only ours is left.
    assert!(!m.contains("bank.test"), "{m}");
    assert!(auth_results(&m).contains("smtp.mailfrom=a@pass.test"));
    assert_eq!(files(&bob.join(".Junk")).len(), 1);

    // Verdicts are logged with the check and reason.
    let log = logs();
    assert!(log.contains("check=dmarc"), "{log}");
    assert!(
        log.contains("dmarc=fail header.from=reject.test policy=reject"),
        "{log}"
    );
}

/// A DNS server that answers every query SERVFAIL (a broken or unreachable
/// authoritative server, as the resolver reports it).
fn servfail_server() -> (
    u16,
    std::thread::JoinHandle<()>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if n < 12 {
                continue;
            }
            let mut r = buf[..n].to_vec();
            r[2] = 0x80 | (buf[2] & 0x01); // QR, keep RD
            r[3] = 0x80 | 2; // RA, RCODE SERVFAIL
            r[6..12].fill(0); // no answer/authority/additional
            let _ = sock.send_to(&r, peer);
        }
    });
    (port, h, stop)
}

#[test]
fn temporary_dns_failures_are_temperror_never_5xx() {
    let env = TestEnv::new();
    let (port, handle, stop) = servfail_server();
    configure(&env, port);
    let daemons = start(&env);
    let bob = maildir(&env, "bob");
    // reject.test would be rejected with working DNS; here nothing can be
    // known: accepted and recorded.
    let (code, text) = send(
        &env,
        None,
        "a@reject.test",
        "bob@example.test",
        &message("a@reject.test", "temp", ""),
    );
    assert_eq!(
        code,
        250,
        "{text}\n{}",
        daemons.iter().map(|d| d.output()).collect::<String>()
    );
    let ar = auth_results(&find(&bob, "temp"));
    assert!(ar.contains("spf=temperror"), "{ar}");
    assert!(ar.contains("dmarc=temperror"), "{ar}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    handle.join().unwrap();
}

/// Verify `msg` with dkimpy, the TXT records given; returns its verdict.
fn dkimpy_verify(env: &TestEnv, msg: &[u8], txt: &BTreeMap<String, String>) -> bool {
    let path = env.path().join(format!("verify-{}", free_port()));
    std::fs::write(&path, msg).unwrap();
    let records: Vec<String> = txt.iter().map(|(k, v)| format!("{k:?}: {v:?}")).collect();
    let script = format!(
        "import dkim, sys\n\
         recs = {{{}}}\n\
         def dnsfunc(name, timeout=5):\n    n = name.decode().rstrip('.')\n    return recs.get(n, '').encode() or None\n\
         msg = open({:?}, 'rb').read()\n\
         d = dkim.DKIM(msg)\n\
         try:\n    ok = d.verify(dnsfunc=dnsfunc)\n\
         except dkim.ValidationError as e:\n    print(e, file=sys.stderr)\n    ok = False\n\
         print('PASS' if ok else 'FAIL')\n",
        records.join(", "),
        path.display().to_string()
    );
    let out = Command::new(DEBIAN_PYTHON)
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dkimpy (Debian python3-dkim) failed: {stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(msg)
    );
    stdout.trim() == "PASS"
}

/// The DKIM TXT records `mailctl dns` prints for example.test.
fn published_keys(env: &TestEnv) -> BTreeMap<String, String> {
    let (code, out, err) = run_tool(
        env,
        "mailctl",
        &["dns", "example.test", "--ip", "127.0.0.1", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    j["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"].as_str().unwrap().contains("._domainkey."))
        .map(|r| {
            (
                r["name"]
                    .as_str()
                    .unwrap()
                    .trim_end_matches('.')
                    .to_string(),
                r["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Strip the trace fields lmtp-delivery adds (a next hop never sees them).
fn strip_trace(msg: &str) -> String {
    msg.split_inclusive("\r\n")
        .filter(|l| !l.starts_with("Return-Path:") && !l.starts_with("Delivered-To:"))
        .collect()
}

/// A 2048-bit RSA key from openssl: (private PEM path, public key base64).
fn openssl_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("signer.pem");
    let st = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    use base64::Engine;
    (
        key,
        base64::engine::general_purpose::STANDARD.encode(&out.stdout),
    )
}

#[test]
fn dkim_signatures_verify_both_ways_and_satisfy_dmarc() {
    let env = TestEnv::new();
    let dns_port = free_port();
    configure(&env, dns_port);
    // Our keys: RSA (active, first) and Ed25519 (rotated in later).
    mailctl(
        &env,
        &["dkim", "generate", "example.test", "--selector", "rsa1"],
        None,
    );
    mailctl(
        &env,
        &[
            "dkim",
            "generate",
            "example.test",
            "--selector",
            "ed1",
            "--algorithm",
            "ed25519",
        ],
        None,
    );
    let ours = published_keys(&env);
    assert_eq!(ours.len(), 2, "{ours:?}");
    assert!(ours["rsa1._domainkey.example.test"].starts_with("v=DKIM1; k=rsa; p="));
    assert!(ours["ed1._domainkey.example.test"].starts_with("v=DKIM1; k=ed25519; p="));
    let key_file = env.path().join("lib/dkim/example.test/rsa1.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // An independent signer's key (openssl) for signer.test.
    let (signer_key, signer_pub) = openssl_key(env.path());

    let mut txt: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &ours {
        txt.insert(name.clone(), chunks(value));
    }
    // SPF fails for both domains from 127.0.0.1 and both ask for reject:
    // only an aligned DKIM pass gets their mail in.
    for (name, value) in [
        ("example.test", "v=spf1 ip4:192.0.2.7 -all".to_string()),
        ("_dmarc.example.test", "v=DMARC1; p=reject".to_string()),
        ("signer.test", "v=spf1 ~all".to_string()),
        ("_dmarc.signer.test", "v=DMARC1; p=reject".to_string()),
        (
            "py._domainkey.signer.test",
            format!("v=DKIM1; k=rsa; p={signer_pub}"),
        ),
    ] {
        txt.insert(name.to_string(), chunks(&value));
    }
    let _dns = dnsmasq(env.path(), dns_port, &txt);
    // SPF of example.test would refuse the resend at MAIL FROM: record only.
    let text = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("fail_action = \"reject\"", "fail_action = \"record\"");
    std::fs::write(&env.config_path, text).unwrap();
    let daemons = start(&env);
    let logs = || -> String { daemons.iter().map(|d| d.output()).collect() };
    let bob = maildir(&env, "bob");

    // 1. Submission: signed with rsa1; dkimpy verifies it.
    let (code, text) = send(
        &env,
        Some(("alice@example.test", "pw-alice")),
        "alice@example.test",
        "bob@example.test",
        &message("alice@example.test", "signed", ""),
    );
    assert_eq!(code, 250, "{text}\n{}", logs());
    let signed = find(&bob, "signed");
    assert!(
        signed.contains("DKIM-Signature: v=1; a=rsa-sha256; s=rsa1; d=example.test;"),
        "{signed}"
    );
    assert!(
        !signed.contains("Authentication-Results"),
        "submission mail is not verified: {signed}"
    );
    assert!(
        dkimpy_verify(&env, signed.as_bytes(), &ours),
        "dkimpy refused our RSA signature:\n{signed}"
    );
    // Tampered: dkimpy says no (the check above can fail).
    let tampered = signed.replace("hello signed", "hello changed");
    assert!(!dkimpy_verify(&env, tampered.as_bytes(), &ours));

    // 2. The same message back in through the MX: our verifier passes it
    //    (key from dnsmasq), DMARC passes on DKIM alone.
    let resend = strip_trace(&signed);
    let (code, text) = send(
        &env,
        None,
        "alice@example.test",
        "bob@example.test",
        resend.as_bytes(),
    );
    assert_eq!(code, 250, "{text}\n{}", logs());
    let ar = auth_results(&find_with(&bob, "signed", "Authentication-Results"));
    assert!(
        ar.contains("dkim=pass header.d=example.test header.s=rsa1"),
        "{ar}"
    );
    assert!(ar.contains("spf=fail"), "{ar}");
    assert!(ar.contains("dmarc=pass header.from=example.test"), "{ar}");
    // Tampered in transit: DKIM fails, DMARC p=reject refuses it.
    let (code, text) = send(
        &env,
        None,
        "alice@example.test",
        "bob@example.test",
        strip_trace(&tampered).as_bytes(),
    );
    assert_eq!(code, 550, "{text}");
    assert!(text.starts_with("5.7.1"), "{text}");

    // 3. Rotation to the Ed25519 key: the next message is signed with ed1
    //    (read per message, no reload); dkimpy verifies RFC 8463.
    mailctl(&env, &["dkim", "activate", "example.test", "ed1"], None);
    let (code, text) = send(
        &env,
        Some(("alice@example.test", "pw-alice")),
        "alice@example.test",
        "bob@example.test",
        &message("alice@example.test", "ed", ""),
    );
    assert_eq!(code, 250, "{text}");
    let ed = find(&bob, "ed");
    assert!(
        ed.contains("a=ed25519-sha256; s=ed1; d=example.test;"),
        "{ed}"
    );
    assert!(
        dkimpy_verify(&env, ed.as_bytes(), &ours),
        "dkimpy refused our Ed25519 signature:\n{ed}"
    );
    let (code, text) = send(
        &env,
        None,
        "alice@example.test",
        "bob@example.test",
        strip_trace(&ed).as_bytes(),
    );
    assert_eq!(code, 250, "{text}\n{}", logs());
    let ar = auth_results(&find_with(&bob, "ed", "Authentication-Results"));
    assert!(
        ar.contains("dkim=pass header.d=example.test header.s=ed1"),
        "{ar}"
    );

    // 4. Signed by dkimpy: our verifier passes it.
    let raw = message("news@signer.test", "dkimpy", "");
    let script = format!(
        "import dkim, sys\nmsg = sys.stdin.buffer.read()\n\
         sig = dkim.sign(msg, b'py', b'signer.test', open({:?}, 'rb').read(), include_headers=[b'from', b'to', b'subject', b'date', b'message-id'])\n\
         sys.stdout.buffer.write(sig + msg)\n",
        signer_key.display().to_string()
    );
    let mut child = Command::new(DEBIAN_PYTHON)
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py_signed = String::from_utf8(out.stdout)
        .unwrap()
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    let (code, text) = send(
        &env,
        None,
        "news@signer.test",
        "bob@example.test",
        py_signed.as_bytes(),
    );
    assert_eq!(code, 250, "{text}\n{}", logs());
    let ar = auth_results(&find(&bob, "dkimpy"));
    // dkimpy writes i=@signer.test, which A-R reports as header.i.
    assert!(
        ar.contains("dkim=pass header.i=@signer.test header.s=py"),
        "{ar}"
    );
    assert!(ar.contains("dmarc=pass header.from=signer.test"), "{ar}");

    // 5. An ARC set added by dkimpy (a forwarder, authserv-id
    //    forwarder.test, sealing with the signer.test key): arc=pass; the
    //    same message changed after sealing: not pass (From arc.test has no
    //    DMARC record, so it is delivered either way).
    let raw = String::from_utf8(message(
        "news@arc.test",
        "arc",
        "Authentication-Results: forwarder.test; spf=pass smtp.mailfrom=news@arc.test; arc=none\r\n",
    ))
    .unwrap();
    let arc_signed = python_sign(
        &raw,
        &format!(
            "h = dkim.arc_sign(msg, b'py', b'signer.test', open({:?}, 'rb').read(), b'forwarder.test', include_headers=[b'from', b'to', b'subject', b'date', b'message-id'])\n\
             sys.stdout.buffer.write(b''.join(h) + msg)\n",
            signer_key.display().to_string()
        ),
    );
    assert!(
        arc_signed.starts_with("ARC-Seal: i=1; cv=none;"),
        "{arc_signed}"
    );
    let (code, text) = send(
        &env,
        None,
        "news@arc.test",
        "bob@example.test",
        arc_signed.as_bytes(),
    );
    assert_eq!(code, 250, "{text}");
    let ar = auth_results(&find(&bob, "arc"));
    assert!(ar.contains("arc=pass smtp.remote-ip=127.0.0.1"), "{ar}");
    let broken = arc_signed
        .replace("Subject: arc", "Subject: arc2")
        .replace("hello arc", "hello changed");
    let (code, text) = send(
        &env,
        None,
        "news@arc.test",
        "bob@example.test",
        broken.as_bytes(),
    );
    assert_eq!(code, 250, "{text}");
    let ar = auth_results(&find(&bob, "arc2"));
    // mail-auth reports a broken body hash as neutral (not fail).
    assert!(!ar.contains("arc=pass"), "{ar}");
    assert!(
        ar.contains("arc=neutral (body hash did not verify)") || ar.contains("arc=fail"),
        "{ar}"
    );
}

/// Run `code` with Debian's python3 (dkimpy), `msg` (bytes of `message`)
/// defined; returns its standard output with CRLF line ends.
fn python_sign(message: &str, code: &str) -> String {
    let script = format!("import dkim, sys\nmsg = sys.stdin.buffer.read()\n{code}");
    let mut child = Command::new(DEBIAN_PYTHON)
        .arg("-c")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dkimpy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
}
