//! authd with real components: the same gRPC suite against the SQLite,
//! MariaDB and PostgreSQL backends (real servers started on loopback by
//! the test, see `postern_tests::db`), the classic virtual-mail SQL schema
//! with the default queries, Unix system users, and Debian's Postfix
//! authenticating through authd's Dovecot-protocol socket.

use std::path::Path;

use postern_ipc::auth::v1 as pb;
use postern_ipc::auth::v1::auth_client::AuthClient;
use postern_ipc::auth::v1::resolve_recipient_response::Status as Rs;
use postern_ipc::sasl::{SaslExchange, SaslStep};
use postern_ipc::{DialOptions, SocketUri, dial};
use postern_tests::db::DbServer;
use postern_tests::sysuser::SystemUser;
use postern_tests::{Daemon, TestEnv};
use tonic::transport::Channel;

const ALICE_PW: &str = "alice pw 1!";
const BOB_PW: &str = "bob-pw-2";
const CAROL_PW: &str = "carol-pw-3";
const DAVE_PW: &str = "dave scram 5";
const FAILURE_LIMIT: u32 = 5;

/// The base config plus fast brute-force settings and `directory` as the
/// body of `[authd.directory]`.
fn write_config(env: &TestEnv, directory: &str) {
    let mut text = env.config_text("level = \"info\"");
    text.push_str(&format!(
        "\n[authd]\nauth_failure_delay = \"10ms\"\nauth_failure_delay_max = \"40ms\"\n\
         auth_failure_limit = {FAILURE_LIMIT}\n\n[authd.directory]\n{directory}\n"
    ));
    std::fs::write(&env.config_path, text).expect("write config");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Open the directory exactly as authd does (same file, same code).
async fn open_directory(env: &TestEnv) -> directory::Directory {
    let cfg = postern_common::Config::load(&env.config_path).expect("config");
    postern_authd::open_directory(&cfg, &env.config_path)
        .await
        .expect("open directory")
}

/// Domains, users and aliases of the shared suite, through the directory crate.
async fn populate(env: &TestEnv) {
    use directory::{NewUser, Secret};
    let dir = open_directory(env).await;
    dir.domain_add("example.test").await.unwrap();
    dir.domain_add("other.test").await.unwrap();
    for (u, p) in [
        ("alice@example.test", ALICE_PW),
        ("bob@example.test", BOB_PW),
        ("carol@example.test", CAROL_PW),
    ] {
        dir.user_add(NewUser::new(u, Secret::new(p.to_string())))
            .await
            .unwrap();
    }
    dir.user_set_enabled("carol@example.test", false)
        .await
        .unwrap();
    dir.alias_add("team@example.test", "alice@example.test")
        .await
        .unwrap();
    dir.alias_add("team@example.test", "bob@example.test")
        .await
        .unwrap();
    dir.alias_add("team@example.test", "partner@remote.invalid")
        .await
        .unwrap();
    dir.alias_add("@other.test", "bob@example.test")
        .await
        .unwrap();
    // dave's password is stored as {SCRAM-SHA-256}, so SCRAM can log him in.
    let mut cfg = dir.config().clone();
    drop(dir);
    cfg.default_scheme = "SCRAM-SHA-256".into();
    let dir = directory::Directory::open(cfg).await.unwrap();
    dir.user_add(NewUser::new(
        "dave@example.test",
        Secret::new(DAVE_PW.to_string()),
    ))
    .await
    .unwrap();
}

/// A SCRAM-SHA-256 client (RFC 5802/7677), written here independently of
/// the server code. Returns the final step and whether the server
/// signature (if the exchange succeeded) was right.
async fn scram(
    c: &mut AuthClient<Channel>,
    user: &str,
    pw: &str,
    ip: &str,
    secured: bool,
) -> (SaslStep, bool) {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }
    let cnonce = "rOprNGfwEbeRWgbNEkqO";
    let first_bare = format!("n={user},r={cnonce}");
    let (mut x, step) = SaslExchange::start(
        c,
        start(
            "SCRAM-SHA-256",
            Some(format!("n,,{first_bare}").into_bytes()),
            ip,
            secured,
        ),
    )
    .await
    .expect("Authenticate");
    let server_first = match step {
        SaslStep::Challenge(d) => String::from_utf8(d).unwrap(),
        other => return (other, false),
    };
    let attrs: Vec<&str> = server_first.split(',').collect();
    let nonce = attrs[0].strip_prefix("r=").expect("r=");
    assert!(nonce.starts_with(cnonce), "{server_first}");
    let salt = B64
        .decode(attrs[1].strip_prefix("s=").expect("s="))
        .unwrap();
    let iters: u32 = attrs[2].strip_prefix("i=").expect("i=").parse().unwrap();
    // Hi() = PBKDF2-HMAC-SHA-256 with one output block.
    let mut u = hmac(pw.as_bytes(), &[salt.as_slice(), &[0, 0, 0, 1]].concat());
    let mut salted = u.clone();
    for _ in 1..iters {
        u = hmac(pw.as_bytes(), &u);
        salted.iter_mut().zip(&u).for_each(|(a, b)| *a ^= b);
    }
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{first_bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let step = x
        .respond(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
        .await
        .expect("respond");
    let server_sig = B64.encode(hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes()));
    let verified = match &step {
        SaslStep::Ok(ok) => ok.final_data == format!("v={server_sig}").into_bytes(),
        _ => false,
    };
    (step, verified)
}

async fn client(env: &TestEnv) -> AuthClient<Channel> {
    let ch = dial(
        &SocketUri::from_path(env.socket("private/auth.sock")),
        &DialOptions::default(),
    )
    .expect("dial authd");
    AuthClient::new(ch)
}

fn start(mech: &str, initial: Option<Vec<u8>>, ip: &str, secured: bool) -> pb::AuthStart {
    pb::AuthStart {
        mechanism: mech.into(),
        initial_response: initial,
        client: Some(pb::ClientInfo {
            service: "smtp".into(),
            remote_ip: ip.into(),
            secured,
            session_id: "test".into(),
            ..Default::default()
        }),
    }
}

fn plain_ir(user: &str, pw: &str) -> Vec<u8> {
    format!("\0{user}\0{pw}").into_bytes()
}

/// PLAIN with an initial response: the final step.
async fn plain(c: &mut AuthClient<Channel>, user: &str, pw: &str, ip: &str) -> SaslStep {
    let (_x, step) = SaslExchange::start(c, start("PLAIN", Some(plain_ir(user, pw)), ip, true))
        .await
        .expect("Authenticate");
    step
}

fn ok_user(step: &SaslStep) -> &str {
    match step {
        SaslStep::Ok(ok) => &ok.user,
        other => panic!("expected success, got {other:?}"),
    }
}

fn fail(step: SaslStep) -> pb::AuthFail {
    match step {
        SaslStep::Fail(f) => f,
        other => panic!("expected failure, got {other:?}"),
    }
}

async fn resolve(c: &mut AuthClient<Channel>, addr: &str) -> pb::ResolveRecipientResponse {
    c.resolve_recipient(pb::ResolveRecipientRequest {
        address: addr.into(),
        authenticated: false,
    })
    .await
    .unwrap_or_else(|e| panic!("ResolveRecipient {addr}: {e}"))
    .into_inner()
}

fn status(r: &pb::ResolveRecipientResponse) -> Rs {
    Rs::try_from(r.status).expect("status")
}

fn mailbox_users(r: &pb::ResolveRecipientResponse) -> Vec<String> {
    let mut v: Vec<String> = r.mailboxes.iter().map(|m| m.user.clone()).collect();
    v.sort();
    v
}

/// The suite every backend passes: `directory` is the body of
/// `[authd.directory]`.
fn shared_suite(directory: &str) {
    let env = TestEnv::new();
    write_config(&env, directory);
    let rt = runtime();
    rt.block_on(populate(&env));
    let authd = Daemon::start(&env, "authd");
    rt.block_on(async {
        let mut c = client(&env).await;

        // PLAIN: right and wrong password.
        let ok = plain(&mut c, "alice@example.test", ALICE_PW, "192.0.2.1").await;
        assert_eq!(ok_user(&ok), "alice@example.test");
        let wrong = fail(plain(&mut c, "alice@example.test", "nope", "192.0.2.2").await);
        assert!(!wrong.temporary, "{wrong:?}");
        assert_eq!(wrong.reason, "authentication failed");
        assert!(wrong.delay_ms >= 10, "penalty delay applied: {wrong:?}");

        // Unknown user: the very same answer as a wrong password (first
        // failure from a fresh address each, so the same delay).
        let unknown = fail(plain(&mut c, "nobody@example.test", "nope", "192.0.2.3").await);
        assert_eq!(
            unknown, wrong,
            "unknown user distinguishable from wrong password"
        );
        let foreign = fail(plain(&mut c, "x@elsewhere.invalid", "nope", "192.0.2.4").await);
        assert_eq!(foreign, wrong);

        // Disabled user, right password: refused like a wrong password.
        let disabled = fail(plain(&mut c, "carol@example.test", CAROL_PW, "192.0.2.5").await);
        assert_eq!(disabled, wrong);

        // LOGIN: two challenges.
        let (mut x, step) = SaslExchange::start(&mut c, start("LOGIN", None, "192.0.2.6", true))
            .await
            .unwrap();
        assert!(matches!(step, SaslStep::Challenge(_)), "{step:?}");
        let step = x.respond(b"bob@example.test".to_vec()).await.unwrap();
        assert!(matches!(step, SaslStep::Challenge(_)), "{step:?}");
        let step = x.respond(BOB_PW.as_bytes().to_vec()).await.unwrap();
        assert_eq!(ok_user(&step), "bob@example.test");
        // LOGIN with a wrong password fails.
        let (mut x, _) = SaslExchange::start(&mut c, start("LOGIN", None, "192.0.2.7", true))
            .await
            .unwrap();
        x.respond(b"bob@example.test".to_vec()).await.unwrap();
        let step = x.respond(b"wrong".to_vec()).await.unwrap();
        assert_eq!(fail(step), wrong);

        // SCRAM-SHA-256 (allowed without TLS: the password never travels),
        // with the server signature checked; wrong password and unknown
        // user fail like a wrong PLAIN password.
        let (step, verified) =
            scram(&mut c, "dave@example.test", DAVE_PW, "192.0.2.20", false).await;
        assert_eq!(ok_user(&step), "dave@example.test");
        assert!(verified, "server signature wrong: {step:?}");
        let (step, _) = scram(&mut c, "dave@example.test", "nope", "192.0.2.21", false).await;
        assert_eq!(fail(step), wrong);
        let (step, _) = scram(&mut c, "nobody@example.test", "nope", "192.0.2.22", false).await;
        assert_eq!(fail(step), wrong);
        // A user whose hash cannot serve SCRAM (ARGON2ID) cannot use it.
        let (step, _) = scram(&mut c, "alice@example.test", ALICE_PW, "192.0.2.23", false).await;
        assert_eq!(fail(step), wrong);

        // Plaintext mechanisms without TLS: refused before any check,
        // even with the right password.
        for mech in ["PLAIN", "LOGIN"] {
            let ir = (mech == "PLAIN").then(|| plain_ir("alice@example.test", ALICE_PW));
            let (_x, step) = SaslExchange::start(&mut c, start(mech, ir, "192.0.2.8", false))
                .await
                .unwrap();
            let f = fail(step);
            assert!(!f.temporary);
            assert!(f.reason.contains("TLS"), "{mech}: {f:?}");
        }
        let mechs = c
            .mechanisms(pb::MechanismsRequest { secured: false })
            .await
            .unwrap()
            .into_inner()
            .mechanisms;
        assert!(
            !mechs.iter().any(|m| m == "PLAIN" || m == "LOGIN"),
            "{mechs:?}"
        );

        // Brute force: after the limit, the right password is refused
        // (temporarily) from that address; another address still logs in.
        let bad_ip = "198.51.100.9";
        for _ in 0..FAILURE_LIMIT {
            let f = fail(plain(&mut c, "alice@example.test", "guess", bad_ip).await);
            assert!(!f.temporary, "{f:?}");
        }
        let blocked = fail(plain(&mut c, "alice@example.test", ALICE_PW, bad_ip).await);
        assert!(blocked.temporary, "{blocked:?}");
        let other = plain(&mut c, "alice@example.test", ALICE_PW, "198.51.100.10").await;
        assert_eq!(ok_user(&other), "alice@example.test");

        // LookupUser.
        let r = c
            .lookup_user(pb::LookupUserRequest {
                user: "Alice@Example.TEST".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.found);
        let info = r.info.expect("info");
        assert_eq!(info.user, "alice@example.test");
        assert!(info.enabled);
        assert!(
            Path::new(&info.mailbox).ends_with("example.test/alice/Maildir"),
            "{info:?}"
        );
        let r = c
            .lookup_user(pb::LookupUserRequest {
                user: "nobody@example.test".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!r.found && r.info.is_none(), "{r:?}");

        // ResolveRecipient.
        let r = resolve(&mut c, "alice@example.test").await;
        assert_eq!(status(&r), Rs::Local);
        assert_eq!(mailbox_users(&r), ["alice@example.test"]);
        assert!(r.remote.is_empty());
        let r = resolve(&mut c, "team@example.test").await;
        assert_eq!(status(&r), Rs::Local, "{r:?}");
        assert_eq!(
            mailbox_users(&r),
            ["alice@example.test", "bob@example.test"]
        );
        assert_eq!(r.remote, ["partner@remote.invalid"]);
        let r = resolve(&mut c, "anything@other.test").await;
        assert_eq!(status(&r), Rs::Local, "catch-all: {r:?}");
        assert_eq!(mailbox_users(&r), ["bob@example.test"]);
        let r = resolve(&mut c, "alice+lists@example.test").await;
        assert_eq!(status(&r), Rs::Local, "{r:?}");
        assert_eq!(mailbox_users(&r), ["alice@example.test"]);
        assert_eq!(r.detail, "lists");
        let r = resolve(&mut c, "nobody@example.test").await;
        assert_eq!(status(&r), Rs::Unknown, "{r:?}");
        let r = resolve(&mut c, "carol@example.test").await;
        assert_eq!(status(&r), Rs::Disabled, "{r:?}");
        let r = resolve(&mut c, "someone@elsewhere.invalid").await;
        assert_eq!(status(&r), Rs::NotOurs, "{r:?}");
    });
    // No password in the log, and failures are logged with the address.
    let out = authd.output();
    assert!(!out.contains(ALICE_PW), "password logged:\n{out}");
    assert!(out.contains("authentication failed"), "{out}");
    assert!(out.contains("198.51.100.9"), "{out}");
}

#[test]
fn sqlite_backend() {
    shared_suite("cache_ttl_secs = 1\n");
}

fn server_backend(db: &DbServer) -> String {
    format!(
        "backend = \"{}\"\nurl = \"{}\"\ncreate_schema = true\ncache_ttl_secs = 1\n",
        db.backend(),
        db.url
    )
}

#[test]
fn mariadb_backend() {
    let db = DbServer::mariadb();
    shared_suite(&server_backend(&db));
}

#[test]
fn postgres_backend() {
    let db = DbServer::postgres();
    shared_suite(&server_backend(&db));
}

/// "Hello world!" in SHA-512 crypt: the test vector of the SHA-crypt
/// specification (glibc, Ulrich Drepper), produced independently of postern.
const CLASSIC_HASH: &str = "{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";

/// An existing virtual-mail database (the classic Postfix/Dovecot
/// tutorial schema, made with plain SQL), used through the default queries.
fn classic_schema(db: &DbServer) {
    db.sql(
        "CREATE TABLE domains (domain VARCHAR(128) NOT NULL PRIMARY KEY);\
         CREATE TABLE users (email VARCHAR(255) NOT NULL PRIMARY KEY, password VARCHAR(255) NOT NULL);\
         CREATE TABLE forwardings (source VARCHAR(255) NOT NULL, destination TEXT NOT NULL);\
         CREATE TABLE transport (domain VARCHAR(128) NOT NULL PRIMARY KEY, transport VARCHAR(128) NOT NULL);",
    );
    db.sql(&format!(
        "INSERT INTO domains (domain) VALUES ('example.test'), ('other.test');\
         INSERT INTO users (email, password) VALUES ('alice@example.test', '{CLASSIC_HASH}');\
         INSERT INTO forwardings (source, destination) VALUES \
           ('team@example.test', 'alice@example.test'), \
           ('team@example.test', 'partner@remote.invalid'), \
           ('@other.test', 'alice@example.test');\
         INSERT INTO transport (domain, transport) VALUES ('example.test', 'lmtp:unix:private/lmtp.sock');"
    ));
    let env = TestEnv::new();
    write_config(
        &env,
        &format!(
            "backend = \"{}\"\nurl = \"{}\"\ncache_ttl_secs = 1\n",
            db.backend(),
            db.url
        ),
    );
    let _authd = Daemon::start(&env, "authd");
    runtime().block_on(async {
        let mut c = client(&env).await;
        let ok = plain(&mut c, "alice@example.test", "Hello world!", "192.0.2.1").await;
        assert_eq!(ok_user(&ok), "alice@example.test");
        let f = fail(plain(&mut c, "alice@example.test", "Hello world", "192.0.2.2").await);
        assert!(!f.temporary, "{f:?}");
        let unknown = fail(plain(&mut c, "bob@example.test", "Hello world!", "192.0.2.3").await);
        assert_eq!(unknown, f);

        let r = resolve(&mut c, "alice@example.test").await;
        assert_eq!(status(&r), Rs::Local, "{r:?}");
        assert_eq!(mailbox_users(&r), ["alice@example.test"]);
        assert_eq!(r.transport, "lmtp:unix:private/lmtp.sock");
        let r = resolve(&mut c, "team@example.test").await;
        assert_eq!(status(&r), Rs::Local, "{r:?}");
        assert_eq!(mailbox_users(&r), ["alice@example.test"]);
        assert_eq!(r.remote, ["partner@remote.invalid"]);
        let r = resolve(&mut c, "x@other.test").await;
        assert_eq!(
            mailbox_users(&r),
            ["alice@example.test"],
            "catch-all: {r:?}"
        );
        let r = resolve(&mut c, "alice+tag@example.test").await;
        assert_eq!(mailbox_users(&r), ["alice@example.test"], "{r:?}");
        assert_eq!(r.detail, "tag");
        let r = resolve(&mut c, "nobody@example.test").await;
        assert_eq!(status(&r), Rs::Unknown, "{r:?}");
        let r = resolve(&mut c, "x@elsewhere.invalid").await;
        assert_eq!(status(&r), Rs::NotOurs, "{r:?}");
    });
}

#[test]
fn mariadb_classic_schema_default_queries() {
    classic_schema(&DbServer::mariadb());
}

#[test]
fn postgres_classic_schema_default_queries() {
    classic_schema(&DbServer::postgres());
}

#[test]
fn system_users() {
    let pw = "Sys tem-pw 4";
    let user = SystemUser::create(pw);
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    let hash = shadow
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{}:", user.name)))
        .expect("shadow entry");
    assert!(hash.starts_with("$6$"), "not SHA512 crypt: {hash}");
    let env = TestEnv::new();
    write_config(
        &env,
        "backend = \"system\"\nmydestination = [\"sys.example.test\"]\nmyorigin = \"sys.example.test\"\n\
         cache_ttl_secs = 1\n",
    );
    let authd = Daemon::start(&env, "authd");
    let addr = format!("{}@sys.example.test", user.name);
    runtime().block_on(async {
        let mut c = client(&env).await;
        // Bare login and full address.
        let ok = plain(&mut c, &user.name, pw, "192.0.2.1").await;
        assert_eq!(ok_user(&ok), addr);
        let ok = plain(&mut c, &addr, pw, "192.0.2.1").await;
        assert_eq!(ok_user(&ok), addr);
        let wrong = fail(plain(&mut c, &user.name, "wrong", "192.0.2.2").await);
        assert!(!wrong.temporary, "{wrong:?}");
        // A system account below system_min_uid (root) never logs in.
        let root = fail(plain(&mut c, "root", pw, "192.0.2.3").await);
        assert_eq!(root, wrong);
        let r = resolve(&mut c, &addr).await;
        assert_eq!(status(&r), Rs::Local, "{r:?}");
        assert_eq!(mailbox_users(&r), vec![addr.as_str()]);
        assert_eq!(r.mailboxes[0].uid, user.uid, "{r:?}");
        let r = resolve(&mut c, "nosuchuser@sys.example.test").await;
        assert_eq!(status(&r), Rs::Unknown, "{r:?}");
    });
    assert!(!authd.output().contains(pw));
}

/// Let the Postfix account (smtpd runs as `postfix`) reach authd's Dovecot
/// socket, the way a deployment puts `postfix` in the `postern` group:
/// search permission on the directories, the socket's group set to
/// `postfix` (authd makes it 0660).
fn open_socket_to_postfix(env: &TestEnv, socket: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let group = nix::unistd::Group::from_name("postfix")
        .ok()
        .flatten()
        .expect("group postfix (make test-deps installs the postfix package)");
    let mut p = socket.parent();
    while let Some(dir) = p {
        if !dir.starts_with(env.path()) {
            break;
        }
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001)).unwrap();
        p = dir.parent();
    }
    nix::unistd::chown(socket, None, Some(group.gid)).unwrap();
}

fn swaks(port: u16, tls: bool, user: &str, pw: &str) -> (i32, String) {
    let mut c = std::process::Command::new("swaks");
    c.args(["--server", &format!("127.0.0.1:{port}")])
        .args([
            "--auth",
            "PLAIN",
            "--auth-user",
            user,
            "--auth-password",
            pw,
        ])
        .args(["--quit-after", "AUTH", "--timeout", "30"]);
    if tls {
        c.arg("--tls");
    }
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run swaks ({e}): run `make test-deps`"));
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Debian's Postfix smtpd with `smtpd_sasl_type = dovecot` pointed at
/// authd's Dovecot-protocol socket: AUTH PLAIN over STARTTLS succeeds with
/// the right password and fails (535) with a wrong one or an unknown user;
/// without TLS, Postfix does not send `secured` and authd refuses the
/// plaintext mechanism even with the right password.
#[test]
fn postfix_smtpd_authenticates_through_authd_dovecot_socket() {
    use postern_tests::postfix::Postfix;
    let env = TestEnv::new();
    write_config(&env, "cache_ttl_secs = 1\n");
    let rt = runtime();
    rt.block_on(populate(&env));
    let authd = Daemon::start(&env, "authd");
    let socket = env.socket("private/dovecot-auth");
    assert!(socket.exists(), "{}", authd.output());
    open_socket_to_postfix(&env, &socket);
    let postfix = Postfix::start(&format!(
        "smtpd_sasl_auth_enable = yes\n\
         smtpd_sasl_type = dovecot\n\
         smtpd_sasl_path = {}\n\
         smtpd_tls_cert_file = {}\n\
         smtpd_tls_key_file = {}\n\
         smtpd_tls_security_level = may\n\
         smtpd_tls_auth_only = no\n",
        socket.display(),
        env.cert.cert_file.display(),
        env.cert.key_file.display(),
    ));
    let diag = |what: &str, out: &str| {
        format!(
            "{what}\n--- swaks ---\n{out}\n--- authd ---\n{}\n--- postfix ---\n{}",
            authd.output(),
            postfix.log()
        )
    };

    let (code, out) = swaks(postfix.port, true, "alice@example.test", ALICE_PW);
    assert_eq!(code, 0, "{}", diag("right password over TLS", &out));
    assert!(out.contains("235 "), "{}", diag("no 235", &out));

    let (code, out) = swaks(postfix.port, true, "alice@example.test", "wrong");
    assert_ne!(code, 0, "{}", diag("wrong password accepted", &out));
    assert!(out.contains("535 "), "{}", diag("no 535", &out));

    let (code, out) = swaks(postfix.port, true, "nobody@example.test", ALICE_PW);
    assert_ne!(code, 0, "{}", diag("unknown user accepted", &out));
    assert!(out.contains("535 "), "{}", diag("no 535", &out));

    // No TLS: Postfix offers AUTH (smtpd_tls_auth_only = no) but does not
    // tell authd the connection is secured, so PLAIN is refused.
    let (code, out) = swaks(postfix.port, false, "alice@example.test", ALICE_PW);
    assert_ne!(
        code,
        0,
        "{}",
        diag("plaintext AUTH without TLS accepted", &out)
    );
    assert!(out.contains("535 "), "{}", diag("no 535", &out));
    assert!(
        postfix
            .log()
            .contains("plaintext authentication disallowed without TLS"),
        "{}",
        diag("authd's reason not in Postfix's log", &out)
    );

    // The exchanges went through authd, with Postfix's service and address.
    let log = authd.output();
    assert!(
        log.contains("authenticated") && log.contains("service=smtp"),
        "{}",
        diag("authd did not log the Postfix logins", "")
    );
    assert!(log.contains("127.0.0.1"), "{log}");
    assert!(!log.contains(ALICE_PW), "password logged:\n{log}");
}
