//! The external scanners of the check pipeline against real programs from
//! Debian: clamd (`clamav-daemon`) with a private signature database holding
//! only an EICAR signature, OpenDKIM as a signing milter (its signature
//! verified by dkimpy), and a test milter on Debian's pymilter
//! (`tests/src/test_milter.py`, libmilter's protocol engine) that rejects,
//! quarantines and adds header fields. Each scanner is stopped to see the
//! configured default action. Everything runs on private Unix sockets under
//! the test's directory; every process is killed when the test ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postern_tests::stack::{maildir, setup_users, wait_for_messages};
use postern_tests::{Daemon, TestEnv, run_tool};

/// How long a helper program may take to come up or a message to arrive.
const WAIT: Duration = Duration::from_secs(60);

/// The EICAR test string, assembled so this source file does not itself
/// look like the test file to a scanner.
fn eicar() -> String {
    format!(
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}}${}$H+H*",
        "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!"
    )
}

/// Where a helper program listens.
enum Endpoint {
    Unix(PathBuf),
    Tcp(u16),
}

impl Endpoint {
    /// As a postern socket key.
    fn config(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("unix:{}", p.display()),
            Endpoint::Tcp(port) => format!("inet:127.0.0.1:{port}"),
        }
    }

    fn connect(&self) -> std::io::Result<Box<dyn ReadWrite>> {
        Ok(match self {
            Endpoint::Unix(p) => Box::new(UnixStream::connect(p)?),
            Endpoint::Tcp(port) => Box::new(TcpStream::connect(("127.0.0.1", *port))?),
        })
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A helper program in its own process group, killed (group and all) on
/// drop; output goes to `<dir>/<name>.log`.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(dir: &Path, name: &str, mut cmd: Command) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} (scripts/test-deps.sh): {e}"));
        Self {
            child: Some(child),
            log,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until `socket` accepts connections.
    fn wait_socket(&mut self, socket: &Endpoint) {
        let end = Instant::now() + WAIT;
        loop {
            if socket.connect().is_ok() {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("exited with {status}:\n{}", self.output());
            }
            assert!(
                Instant::now() < end,
                "{} not listening:\n{}",
                socket.config(),
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// clamd on a private socket with a database directory holding only a
/// body signature for the EICAR string (`.ndb`: name, any file type, any
/// offset, hex). No freshclam, no Internet. On a Unix socket, or with
/// `tcp` on a free loopback port.
fn start_clamd(dir: &Path, tcp: bool) -> (Proc, Endpoint) {
    let db = dir.join("clamav-db");
    std::fs::create_dir_all(&db).unwrap();
    let hex: String = eicar().bytes().map(|b| format!("{b:02x}")).collect();
    std::fs::write(
        db.join("postern-test.ndb"),
        format!("Postern.Test.EICAR:0:*:{hex}\n"),
    )
    .unwrap();
    let (socket, listen) = if tcp {
        let port = postern_tests::free_port();
        (
            Endpoint::Tcp(port),
            format!("TCPSocket {port}\nTCPAddr 127.0.0.1"),
        )
    } else {
        let path = dir.join("clamd.sock");
        let listen = format!("LocalSocket {}", path.display());
        (Endpoint::Unix(path), listen)
    };
    let conf = dir.join("clamd.conf");
    std::fs::write(
        &conf,
        format!(
            "{listen}\nDatabaseDirectory {db}\nForeground yes\n\
             LogFile {dir}/clamd-file.log\nTemporaryDirectory {dir}\n\
             StreamMaxLength 10M\nSelfCheck 3600\n",
            db = db.display(),
            dir = dir.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("clamd");
    cmd.arg("-c").arg(&conf);
    let mut p = Proc::spawn(dir, "clamd", cmd);
    p.wait_socket(&socket);
    // clamd loaded our one signature and nothing else.
    let mut s = socket.connect().unwrap();
    s.write_all(b"zVERSION\0").unwrap();
    let mut v = String::new();
    s.read_to_string(&mut v).unwrap();
    assert!(v.starts_with("ClamAV "), "{v}");
    let log = std::fs::read_to_string(dir.join("clamd-file.log")).unwrap_or_default();
    assert!(log.contains("Loaded 1 signatures"), "{log}");
    (p, socket)
}

/// Start authd, lmtp-delivery, queue-manager and smtpd with `checks`
/// appended to the test configuration.
fn start_stack(env: &TestEnv, checks: &str) -> Vec<Daemon> {
    setup_users(env, checks);
    ["authd", "lmtp-delivery", "queue-manager", "smtpd"]
        .into_iter()
        .map(|d| Daemon::start(env, d))
        .collect()
}

/// One SMTP transaction on port 25: the reply that ended it (the
/// end-of-data reply, or the first refusal), multi-line replies joined.
fn smtp(port: u16, from: &str, rcpts: &[&str], message: &str) -> String {
    let w = TcpStream::connect(("127.0.0.1", port)).unwrap();
    w.set_read_timeout(Some(WAIT)).unwrap();
    let mut r = BufReader::new(w.try_clone().unwrap());
    let mut w = w;
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                all.push_str("(connection closed)");
                return all;
            }
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    };
    let greeting = reply();
    if !greeting.starts_with("220") {
        return greeting;
    }
    let cmd = |w: &mut TcpStream, s: String| {
        w.write_all(s.as_bytes()).unwrap();
    };
    cmd(&mut w, "EHLO client.example.org\r\n".into());
    let ehlo = reply();
    if !ehlo.starts_with("250") {
        return ehlo;
    }
    cmd(&mut w, format!("MAIL FROM:<{from}>\r\n"));
    let m = reply();
    if !m.starts_with("250") {
        return m;
    }
    let mut accepted = 0;
    let mut refusals = String::new();
    for rcpt in rcpts {
        cmd(&mut w, format!("RCPT TO:<{rcpt}>\r\n"));
        let rr = reply();
        if rr.starts_with("250") {
            accepted += 1;
        } else {
            refusals.push_str(&rr);
        }
    }
    if accepted == 0 {
        return refusals;
    }
    cmd(&mut w, "DATA\r\n".into());
    let d = reply();
    if !d.starts_with("354") {
        return d;
    }
    let mut data = String::new();
    for line in message.split_inclusive('\n') {
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
    }
    data.push_str(".\r\n");
    cmd(&mut w, data);
    let end = reply();
    cmd(&mut w, "QUIT\r\n".into());
    format!("{refusals}{end}")
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: carol@example.org\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{}@example.org>\r\n\r\n{body}",
        subject.replace(' ', "-")
    )
}

/// A message with the EICAR string as a base64 attachment.
fn infected_message() -> String {
    let b64 = base64_encode(eicar().as_bytes());
    format!(
        "From: carol@example.org\r\nTo: alice@example.test\r\nSubject: an attachment\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nsee the attachment\r\n\
         --b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"eicar.com\"\r\n\r\n{b64}\r\n--b1--\r\n"
    )
}

fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Messages in alice's Maildir, as text.
fn alice_messages(env: &TestEnv, n: usize) -> Vec<String> {
    wait_for_messages(&maildir(env, "alice"), n, WAIT)
        .unwrap()
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// `mailctl queue list hold` (mailq format), waiting until it names
/// `needle`.
fn wait_held(env: &TestEnv, needle: &str) -> String {
    let end = Instant::now() + WAIT;
    loop {
        let (code, out, err) = run_tool(env, "mailctl", &["queue", "list", "hold"]);
        if code == 0 && out.contains(needle) {
            return out;
        }
        assert!(
            Instant::now() < end,
            "{needle:?} not in the hold queue: {code} {out} {err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn clamav_rejects_eicar_naming_it_delivers_clean_mail_and_tempfails_when_down() {
    let env = TestEnv::new();
    let (mut clamd, socket) = start_clamd(env.path(), false);
    let _d = start_stack(
        &env,
        &format!(
            "\n[checks.clamav]\nenabled = true\nroles = [\"mx\"]\nsocket = \"{}\"\n",
            socket.config()
        ),
    );
    let port = env.ports["smtp"];

    let r = smtp(
        port,
        "carol@example.org",
        &["alice@example.test"],
        &message("clean one", "nothing to see\r\n"),
    );
    assert!(r.starts_with("250"), "{r}");
    let got = alice_messages(&env, 1);
    assert!(got[0].contains("Subject: clean one"), "{}", got[0]);

    let r = smtp(
        port,
        "carol@example.org",
        &["alice@example.test"],
        &infected_message(),
    );
    assert!(
        r.starts_with("554 5.7.1") && r.contains("Postern.Test.EICAR"),
        "{r}"
    );

    // clamd gone: 451 4.7.1, the client keeps the message.
    clamd.kill();
    let r = smtp(
        port,
        "carol@example.org",
        &["alice@example.test"],
        &message("while clamd is down", "x\r\n"),
    );
    assert!(r.starts_with("451 4.7.1"), "{r}");
    // Only the clean message was delivered.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        postern_tests::stack::files(&maildir(&env, "alice")).len(),
        1
    );
}

#[test]
fn clamav_holds_infected_mail_and_accepts_with_a_header_when_down() {
    let env = TestEnv::new();
    // clamd on TCP this time.
    let (mut clamd, socket) = start_clamd(env.path(), true);
    let _d = start_stack(
        &env,
        &format!(
            "\n[checks.clamav]\nenabled = true\nsocket = \"{}\"\n\
             infected_action = \"hold\"\non_error = \"accept\"\n",
            socket.config()
        ),
    );
    let port = env.ports["smtp"];
    let r = smtp(
        port,
        "carol@example.org",
        &["alice@example.test"],
        &infected_message(),
    );
    assert!(r.starts_with("250"), "{r}");
    let held = wait_held(&env, "Postern.Test.EICAR");
    assert!(held.contains("carol@example.org"), "{held}");

    clamd.kill();
    let r = smtp(
        port,
        "carol@example.org",
        &["alice@example.test"],
        &message("unscanned", "x\r\n"),
    );
    assert!(r.starts_with("250"), "{r}");
    let got = alice_messages(&env, 1);
    assert!(
        got[0].contains("X-Virus-Scan: unscanned (virus scanner unavailable)"),
        "{}",
        got[0]
    );
    assert!(got[0].contains("Subject: unscanned"), "{}", got[0]);
}

/// The test milter on a free loopback port; its macro log.
fn start_test_milter(dir: &Path) -> (Proc, Endpoint, PathBuf) {
    let port = postern_tests::free_port();
    let socket = Endpoint::Tcp(port);
    let log = dir.join("test-milter-macros.log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/test_milter.py");
    // Debian's python3 (python3-milter is installed for it).
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script)
        .arg(format!("inet:{port}@127.0.0.1"))
        .arg(&log);
    let mut p = Proc::spawn(dir, "test-milter", cmd);
    p.wait_socket(&socket);
    (p, socket, log)
}

#[test]
fn a_real_milter_rejects_quarantines_adds_headers_and_its_absence_tempfails() {
    let env = TestEnv::new();
    let (mut milter, socket, log) = start_test_milter(env.path());
    // The second milter is never there: its default action is accept.
    let _d = start_stack(
        &env,
        &format!(
            "\n[[checks.milter]]\nname = \"test\"\nsocket = \"{}\"\n\
             command_timeout = \"20s\"\n\
             \n[[checks.milter]]\nname = \"absent\"\nsocket = \"unix:{}/nothing.sock\"\n\
             default_action = \"accept\"\n",
            socket.config(),
            env.path().display()
        ),
    );
    let port = env.ports["smtp"];

    // Accepted, with the milter's two header fields; bob refused at RCPT
    // with the milter's own reply.
    let r = smtp(
        port,
        "carol@example.org",
        &["alice@example.test", "bob@example.test"],
        &message("hello milter", "line one\r\n.dot line\r\n"),
    );
    assert!(
        r.contains("550 5.7.1 test milter refuses bob") && r.contains("\n250"),
        "{r}\n--- milter ---\n{}\n--- smtpd ---\n{}",
        milter.output(),
        _d[3].output()
    );
    let got = alice_messages(&env, 1);
    let m = &got[0];
    assert!(m.contains("X-Test-Milter: seen by test milter"), "{m}");
    assert!(m.contains("X-Test-Milter-Top: first"), "{m}");
    assert!(m.contains("\n.dot line"), "{m}");
    let macros = std::fs::read_to_string(&log).unwrap();
    for want in [
        "connect j=mail.example.test",
        "connect {daemon_name}=MTA",
        "connect {client_addr}=127.0.0.1",
        "connect hostname=[127.0.0.1] addr=127.0.0.1",
        "helo client.example.org",
        "envfrom {mail_addr}=carol@example.org",
        "envfrom <carol@example.org>",
        "envrcpt {rcpt_addr}=bob@example.test",
        "eom i=",
        // Our Received field, then the message's own fields.
        "eoh headers=Received,From,To,Subject,Message-ID",
        "eom body=21 subject=hello milter",
    ] {
        assert!(macros.contains(want), "{want:?} not in\n{macros}");
    }

    // The milter's end-of-message reply code.
    let r = smtp(
        port,
        "carol@example.org",
        &["alice@example.test"],
        &message("please REJECT-ME", "x\r\n"),
    );
    assert!(r.starts_with("554 5.7.1 test milter says no"), "{r}");
    let r = smtp(
        port,
        "carol@example.org",
        &["alice@example.test"],
        &message("please TEMPFAIL-ME", "x\r\n"),
    );
    assert!(r.starts_with("451 4.7.1"), "{r}");

    // Quarantine: accepted into the hold queue with the milter's reason.
    let r = smtp(
        port,
        "carol@example.org",
        &["alice@example.test"],
        &message("please HOLD-ME", "x\r\n"),
    );
    assert!(r.starts_with("250"), "{r}");
    wait_held(&env, "test milter holds it");

    // The milter gone: its default action (tempfail) on the next
    // connection, which is refused before the greeting (smtpd turns a
    // connect-stage 451 into 421).
    milter.kill();
    let r = smtp(
        port,
        "carol@example.org",
        &["alice@example.test"],
        &message("milter down", "x\r\n"),
    );
    assert!(r.starts_with("421 4.7.1"), "{r}");
    assert_eq!(
        postern_tests::stack::files(&maildir(&env, "alice")).len(),
        1
    );
}

/// OpenDKIM in signing mode with a key made by opendkim-genkey; its
/// public key record (selector `postern`, the `.txt` file).
/// Loopback is not in `InternalHosts`: OpenDKIM signs because the mail
/// comes through `{daemon_name}` `MSA` (its `MTA` list), i.e. submission.
/// `KeepAuthResults yes`: otherwise OpenDKIM requires the right to change
/// header fields (to delete forged Authentication-Results), which we do not
/// offer, and libmilter closes the connection at negotiation.
fn start_opendkim(dir: &Path) -> (Proc, Endpoint, String) {
    let keys = dir.join("dkim");
    std::fs::create_dir_all(&keys).unwrap();
    let out = Command::new("opendkim-genkey")
        .args(["-b", "2048", "-d", "example.test", "-s", "postern", "-D"])
        .arg(&keys)
        .output()
        .expect("opendkim-genkey (opendkim-tools, scripts/test-deps.sh)");
    assert!(out.status.success(), "{:?}", out);
    let txt = std::fs::read_to_string(keys.join("postern.txt")).unwrap();
    let record: String = txt
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    let socket = dir.join("opendkim.sock");
    let conf = dir.join("opendkim.conf");
    std::fs::write(
        &conf,
        format!(
            "Syslog no\nBackground no\nMode s\nDomain example.test\nSelector postern\n\
             KeyFile {keys}/postern.private\nSocket local:{sock}\nPidFile {dir}/opendkim.pid\n\
             RequireSafeKeys no\nInternalHosts 192.0.2.1\nMTA MSA\nUMask 000\n\
             Canonicalization simple/simple\nKeepAuthResults yes\n",
            keys = keys.display(),
            sock = socket.display(),
            dir = dir.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("opendkim");
    cmd.arg("-f").arg("-x").arg(&conf);
    let mut p = Proc::spawn(dir, "opendkim", cmd);
    let socket = Endpoint::Unix(socket);
    p.wait_socket(&socket);
    (p, socket, record)
}

#[test]
fn opendkim_signs_submitted_mail_and_dkimpy_verifies_it() {
    let env = TestEnv::new();
    let (opendkim, socket, record) = start_opendkim(env.path());
    let _d = start_stack(
        &env,
        &format!(
            "\n[[checks.milter]]\nname = \"opendkim\"\nroles = [\"submission\"]\n\
             socket = \"{}\"\n",
            socket.config()
        ),
    );
    // alice submits over STARTTLS (CA verified) with AUTH, to bob.
    let script = format!(
        "import smtplib, ssl\nctx = ssl.create_default_context(cafile={ca:?})\n\
         s = smtplib.SMTP(\"127.0.0.1\", {port})\ns.starttls(context=ctx)\n\
         s.login(\"alice@example.test\", \"pw-alice\")\n\
         s.sendmail(\"alice@example.test\", [\"bob@example.test\"], {msg:?}.encode())\n\
         s.quit()\n",
        ca = env.cert.ca_file.display().to_string(),
        port = env.ports["submission"],
        msg = "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\n\
               Subject: signed by opendkim\r\nDate: Thu, 03 Dec 2026 12:00:00 +0000\r\n\
               Message-ID: <dkim-1@example.test>\r\n\r\nHello Bob,\r\nthis is signed.\r\n"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n--- opendkim ---\n{}\n--- smtpd ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        opendkim.output(),
        _d[3].output()
    );
    let path = wait_for_messages(&maildir(&env, "bob"), 1, WAIT).unwrap()[0].clone();
    let stored = std::fs::read_to_string(&path).unwrap();
    assert!(stored.contains("DKIM-Signature: v=1;"), "{stored}");
    assert!(stored.contains("d=example.test"), "{stored}");
    assert!(stored.contains("s=postern"), "{stored}");

    // An independent verifier (dkimpy) with the key record served by a
    // DNS function instead of DNS.
    let verify = format!(
        "import dkim, sys\nmsg = open({path:?}, 'rb').read().replace(b'\\r\\n', b'\\n').replace(b'\\n', b'\\r\\n')\n\
         rec = {record:?}.encode()\n\
         ok = dkim.verify(msg, dnsfunc=lambda name, timeout=5: rec)\n\
         print('verified' if ok else 'FAILED')\nsys.exit(0 if ok else 1)\n",
        path = path.display().to_string()
    );
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(&verify)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dkimpy: {}{}\n{stored}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
