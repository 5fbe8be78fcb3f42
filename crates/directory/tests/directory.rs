//! Directory API against real databases: SQLite always; MySQL/MariaDB and
//! PostgreSQL when `POSTERN_TEST_MYSQL_URL` / `POSTERN_TEST_PG_URL` are set
//! (those tests DROP and recreate the postern tables in that database).

use std::path::PathBuf;

use directory::scheme::{HashParams, Scheme};
use directory::{
    AuthError, BackendKind, Directory, DirectoryConfig, DirectoryError, DroppedReason, NewUser,
    Resolution, Secret, SqlQueries,
};

fn cheap() -> HashParams {
    HashParams {
        argon2_m_kib: 64,
        argon2_t: 1,
        argon2_p: 1,
        bcrypt_cost: 4,
        sha_crypt_rounds: 1000,
        scram_iterations: 64,
    }
}

fn pw(s: &str) -> Secret<String> {
    Secret::new(s.to_string())
}

fn sqlite_config(dir: &tempfile::TempDir) -> DirectoryConfig {
    DirectoryConfig {
        backend: BackendKind::Sqlite,
        path: dir.path().join("directory.db"),
        mailbox_template: "/var/vmail/%d/%u/Maildir".into(),
        ..DirectoryConfig::default()
    }
}

async fn open(cfg: DirectoryConfig) -> Directory {
    let mut d = Directory::open(cfg).await.unwrap();
    d.set_hash_params(cheap());
    d
}

fn local_users(r: &Resolution) -> Vec<String> {
    match r {
        Resolution::Deliver(d) => d.local.iter().map(|m| m.user.clone()).collect(),
        other => panic!("expected Deliver, got {other:?}"),
    }
}

fn remote(r: &Resolution) -> Vec<String> {
    match r {
        Resolution::Deliver(d) => d.remote.clone(),
        other => panic!("expected Deliver, got {other:?}"),
    }
}

/// The management + lookup scenario shared by every backend.
async fn scenario(dir: &Directory) {
    // ---- domains
    assert_eq!(
        dir.domain_add("Example.ORG").await.unwrap().name,
        "example.org"
    );
    dir.domain_add("example.net").await.unwrap();
    assert!(matches!(
        dir.domain_add("example.org").await,
        Err(DirectoryError::Duplicate(_))
    ));
    assert!(matches!(
        dir.domain_add("bad domain").await,
        Err(DirectoryError::BadAddress { .. })
    ));
    let names: Vec<_> = dir
        .domain_list()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["example.net", "example.org"]);

    // ---- users
    let alice = dir
        .user_add(NewUser::new("Alice@Example.org", pw("wonderland")))
        .await
        .unwrap();
    assert_eq!(alice.address, "alice@example.org");
    assert_eq!(
        alice.mailbox,
        PathBuf::from("/var/vmail/example.org/alice/Maildir")
    );
    assert!(
        alice
            .password_hash
            .expose()
            .starts_with("{ARGON2ID}$argon2id$")
    );
    let mut bob = NewUser::new("bob@example.org", pw("builder"));
    bob.quota_bytes = 1 << 30;
    bob.mailbox = Some("/srv/mail/bob".into());
    bob.uid = Some(5000);
    bob.gid = Some(5000);
    dir.user_add(bob).await.unwrap();
    dir.user_add(NewUser::new("carol@example.net", pw("c")))
        .await
        .unwrap();
    assert!(matches!(
        dir.user_add(NewUser::new("alice@example.org", pw("x")))
            .await,
        Err(DirectoryError::Duplicate(_))
    ));
    assert!(matches!(
        dir.user_add(NewUser::new("eve@nowhere.test", pw("x")))
            .await,
        Err(DirectoryError::UnknownDomain(_))
    ));
    for bad in [
        "not an address",
        "../etc@example.org",
        "a/b@example.org",
        ".hidden@example.org",
    ] {
        assert!(
            matches!(
                dir.user_add(NewUser::new(bad, pw("x"))).await,
                Err(DirectoryError::BadAddress { .. })
            ),
            "{bad}"
        );
    }
    let mut explicit = NewUser::new("a/b@example.net", pw("x"));
    explicit.mailbox = Some("/srv/mail/ab".into());
    dir.user_add(explicit).await.unwrap();
    dir.user_del("a/b@example.net").await.unwrap();
    let list: Vec<_> = dir
        .user_list(Some("example.org"))
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.address)
        .collect();
    assert_eq!(list, ["alice@example.org", "bob@example.org"]);
    assert_eq!(dir.user_list(None).await.unwrap().len(), 3);
    let shown = dir.user_show("BOB@example.org").await.unwrap();
    assert_eq!(shown.quota_bytes, 1 << 30);
    assert_eq!(shown.mailbox, PathBuf::from("/srv/mail/bob"));
    assert_eq!((shown.uid, shown.gid), (Some(5000), Some(5000)));
    assert_eq!(format!("{:?}", shown.password_hash), "***");
    assert!(matches!(
        dir.user_show("nobody@example.org").await,
        Err(DirectoryError::UnknownUser(_))
    ));
    assert!(matches!(
        dir.domain_del("example.net").await,
        Err(DirectoryError::DomainNotEmpty(_))
    ));

    // ---- authentication
    let ok = dir
        .authenticate("alice@example.org", &pw("wonderland"))
        .await
        .unwrap();
    assert_eq!(ok.user.address, "alice@example.org");
    assert_eq!(ok.verified.scheme, Scheme::Argon2id);
    assert_eq!(
        dir.authenticate("ALICE@EXAMPLE.ORG", &pw("wonderland"))
            .await
            .unwrap()
            .user
            .address,
        "alice@example.org"
    );
    assert_eq!(
        dir.authenticate("alice@example.org", &pw("Wonderland"))
            .await,
        Err(AuthError::Failed)
    );
    assert_eq!(
        dir.authenticate("ghost@example.org", &pw("wonderland"))
            .await,
        Err(AuthError::Failed)
    );
    assert_eq!(
        dir.authenticate("alice", &pw("wonderland")).await,
        Err(AuthError::Failed),
        "no default_login_domain"
    );
    assert_eq!(dir.authenticate("", &pw("")).await, Err(AuthError::Failed));
    dir.user_passwd("alice@example.org", pw("looking-glass"))
        .await
        .unwrap();
    assert_eq!(
        dir.authenticate("alice@example.org", &pw("wonderland"))
            .await,
        Err(AuthError::Failed)
    );
    dir.authenticate("alice@example.org", &pw("looking-glass"))
        .await
        .unwrap();
    assert!(matches!(
        dir.user_passwd("ghost@example.org", pw("x")).await,
        Err(DirectoryError::UnknownUser(_))
    ));
    dir.user_set_enabled("bob@example.org", false)
        .await
        .unwrap();
    assert_eq!(
        dir.authenticate("bob@example.org", &pw("builder")).await,
        Err(AuthError::Failed),
        "disabled"
    );
    assert_eq!(
        dir.resolve_recipient("bob@example.org").await.unwrap(),
        Resolution::Disabled
    );
    dir.user_set_enabled("bob@example.org", true).await.unwrap();
    dir.authenticate("bob@example.org", &pw("builder"))
        .await
        .unwrap();
    assert!(
        dir.scram_secret("alice@example.org")
            .await
            .unwrap()
            .is_none(),
        "argon2 cannot serve SCRAM"
    );

    // ---- aliases
    dir.alias_add("team@example.org", "alice@example.org")
        .await
        .unwrap();
    dir.alias_add("team@example.org", "Bob@Example.org")
        .await
        .unwrap();
    dir.alias_add("team@example.org", "friend@remote.test")
        .await
        .unwrap();
    assert!(matches!(
        dir.alias_add("team@example.org", "alice@example.org").await,
        Err(DirectoryError::Duplicate(_))
    ));
    assert!(matches!(
        dir.alias_add("x@nowhere.test", "alice@example.org").await,
        Err(DirectoryError::UnknownDomain(_))
    ));
    assert!(matches!(
        dir.alias_add("x@example.org", "not valid").await,
        Err(DirectoryError::BadAddress { .. })
    ));
    dir.alias_add("all@example.org", "team@example.org")
        .await
        .unwrap();
    dir.alias_add("all@example.org", "alice@example.org")
        .await
        .unwrap();
    dir.alias_add("all@example.org", "carol@example.net")
        .await
        .unwrap();
    dir.alias_add("loop1@example.org", "loop2@example.org")
        .await
        .unwrap();
    dir.alias_add("loop2@example.org", "loop1@example.org")
        .await
        .unwrap();
    dir.alias_add("loop2@example.org", "alice@example.org")
        .await
        .unwrap();
    dir.alias_add("keep@example.net", "keep@example.net")
        .await
        .unwrap();
    dir.alias_add("keep@example.net", "copy@remote.test")
        .await
        .unwrap();
    dir.user_add(NewUser::new("keep@example.net", pw("k")))
        .await
        .unwrap();
    dir.alias_add("dangling@example.org", "ghost@example.org")
        .await
        .unwrap();
    dir.alias_add("dangling@example.org", "alice@example.org")
        .await
        .unwrap();
    let rows = dir.alias_list(Some("example.org")).await.unwrap();
    assert!(
        rows.contains(&("team@example.org".into(), "bob@example.org".into())),
        "{rows:?}"
    );
    assert!(!rows.iter().any(|(s, _)| s.ends_with("example.net")));

    // ---- resolution
    assert_eq!(
        dir.resolve_recipient("someone@elsewhere.test")
            .await
            .unwrap(),
        Resolution::NotOurs
    );
    assert_eq!(
        dir.resolve_recipient("nobody@example.org").await.unwrap(),
        Resolution::Unknown
    );
    assert!(matches!(
        dir.resolve_recipient("no at sign").await,
        Err(DirectoryError::BadAddress { .. })
    ));
    let r = dir.resolve_recipient("Alice@EXAMPLE.org").await.unwrap();
    assert_eq!(local_users(&r), ["alice@example.org"]);
    // plus-addressing: extension kept for the mailbox
    let Resolution::Deliver(d) = dir
        .resolve_recipient("alice+lists@example.org")
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.local[0].user, "alice@example.org");
    assert_eq!(d.local[0].extension.as_deref(), Some("lists"));
    assert_eq!(
        d.local[0].mailbox,
        PathBuf::from("/var/vmail/example.org/alice/Maildir")
    );
    let Resolution::Deliver(d) = dir.resolve_recipient("bob@example.org").await.unwrap() else {
        panic!()
    };
    assert_eq!(
        (d.local[0].quota_bytes, d.local[0].uid),
        (1 << 30, Some(5000))
    );
    // multi-target alias, with remote
    let r = dir.resolve_recipient("team@example.org").await.unwrap();
    assert_eq!(local_users(&r), ["alice@example.org", "bob@example.org"]);
    assert_eq!(remote(&r), ["friend@remote.test"]);
    // alias with extension falls back to the alias without it
    assert_eq!(
        local_users(&dir.resolve_recipient("team+x@example.org").await.unwrap()).len(),
        2
    );
    // recursive, duplicates removed
    let r = dir.resolve_recipient("all@example.org").await.unwrap();
    assert_eq!(
        local_users(&r),
        ["alice@example.org", "carol@example.net", "bob@example.org"]
    );
    assert_eq!(remote(&r), ["friend@remote.test"]);
    // loop: loop1 -> loop2 -> (loop1: loop, alice)
    let Resolution::Deliver(d) = dir.resolve_recipient("loop1@example.org").await.unwrap() else {
        panic!()
    };
    assert_eq!(
        d.local.iter().map(|m| m.user.as_str()).collect::<Vec<_>>(),
        ["alice@example.org"]
    );
    assert_eq!(
        d.dropped,
        [("loop1@example.org".to_string(), DroppedReason::Loop)]
    );
    // self-reference keeps the mailbox
    let r = dir.resolve_recipient("keep@example.net").await.unwrap();
    assert_eq!(local_users(&r), ["keep@example.net"]);
    assert_eq!(remote(&r), ["copy@remote.test"]);
    // dangling target reported
    let Resolution::Deliver(d) = dir.resolve_recipient("dangling@example.org").await.unwrap()
    else {
        panic!()
    };
    assert_eq!(
        d.dropped,
        [("ghost@example.org".to_string(), DroppedReason::Unknown)]
    );
    assert_eq!(d.local.len(), 1);

    // catch-all: only when no user or alias matched
    dir.alias_add("@example.org", "alice@example.org")
        .await
        .unwrap();
    dir.alias_add("@example.net", "@remote.test").await.unwrap();
    dir.invalidate_all();
    assert_eq!(
        local_users(&dir.resolve_recipient("random@example.org").await.unwrap()),
        ["alice@example.org"]
    );
    assert_eq!(
        local_users(&dir.resolve_recipient("bob@example.org").await.unwrap()),
        ["bob@example.org"]
    );
    assert_eq!(
        local_users(&dir.resolve_recipient("team@example.org").await.unwrap()).len(),
        2
    );
    assert_eq!(
        remote(&dir.resolve_recipient("Who@example.net").await.unwrap()),
        ["who@remote.test"]
    );
    assert_eq!(
        local_users(&dir.resolve_recipient("carol@example.net").await.unwrap()),
        ["carol@example.net"]
    );
    dir.alias_del("@example.org", None).await.unwrap();
    assert_eq!(
        dir.resolve_recipient("random@example.org").await.unwrap(),
        Resolution::Unknown
    );
    assert!(matches!(
        dir.alias_del("@example.org", None).await,
        Err(DirectoryError::UnknownAlias(_))
    ));
    dir.alias_del("team@example.org", Some("friend@remote.test"))
        .await
        .unwrap();
    assert!(remote(&dir.resolve_recipient("team@example.org").await.unwrap()).is_empty());

    // transport
    assert_eq!(dir.transport("example.org").await.unwrap(), None);
    dir.transport_set("example.org", "lmtp:unix:/run/postern/lmtp.sock")
        .await
        .unwrap();
    assert_eq!(
        dir.transport("EXAMPLE.org").await.unwrap().as_deref(),
        Some("lmtp:unix:/run/postern/lmtp.sock")
    );
    dir.transport_set("example.org", "smtp:[relay.test]:25")
        .await
        .unwrap();
    let doms = dir.domain_list().await.unwrap();
    assert_eq!(
        doms.iter()
            .find(|d| d.name == "example.org")
            .unwrap()
            .transport
            .as_deref(),
        Some("smtp:[relay.test]:25")
    );

    // disabled domain
    dir.sql()
        .unwrap()
        .domain_set_enabled("example.net", false)
        .await
        .unwrap();
    dir.invalidate_all();
    assert_eq!(
        dir.resolve_recipient("carol@example.net").await.unwrap(),
        Resolution::Disabled
    );

    // deletions
    dir.user_del("carol@example.net").await.unwrap();
    dir.user_del("keep@example.net").await.unwrap();
    assert!(matches!(
        dir.user_del("carol@example.net").await,
        Err(DirectoryError::UnknownUser(_))
    ));
    dir.alias_del("keep@example.net", None).await.unwrap();
    dir.alias_del("@example.net", None).await.unwrap();
    dir.domain_del("example.net").await.unwrap();
    assert!(matches!(
        dir.domain_del("example.net").await,
        Err(DirectoryError::UnknownDomain(_))
    ));
}

fn assert_send<T: Send>(_: &T) {}

#[tokio::test]
async fn api_is_usable_from_spawned_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Directory>();
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::sync::Arc::new(open(sqlite_config(&tmp)).await);
    let p = pw("x");
    assert_send(&dir.resolve_recipient("a@b.test"));
    assert_send(&dir.authenticate("a@b.test", &p));
    assert_send(&dir.lookup_user("a@b.test"));
    let d = dir.clone();
    let r = tokio::spawn(async move { d.resolve_recipient("a@b.test").await.unwrap() })
        .await
        .unwrap();
    assert_eq!(r, Resolution::NotOurs);
}

#[tokio::test]
async fn sqlite_scenario() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(sqlite_config(&tmp)).await;
    scenario(&dir).await;
    // WAL mode is on.
    assert!(tmp.path().join("directory.db-wal").exists());
    // Reopen: the data persisted and the schema creation is idempotent.
    drop(dir);
    let dir = open(sqlite_config(&tmp)).await;
    assert_eq!(dir.user_list(None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn cache_keeps_negative_entries_until_invalidated() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(sqlite_config(&tmp)).await;
    let b = open(sqlite_config(&tmp)).await;
    a.domain_add("example.org").await.unwrap();
    assert_eq!(
        a.resolve_recipient("late@example.org").await.unwrap(),
        Resolution::Unknown
    );
    assert_eq!(a.lookup_user("late@example.org").await.unwrap(), None);
    // Another process (b) adds the user: a still answers from its cache.
    b.user_add(NewUser::new("late@example.org", pw("x")))
        .await
        .unwrap();
    assert_eq!(
        a.resolve_recipient("late@example.org").await.unwrap(),
        Resolution::Unknown
    );
    assert_eq!(a.lookup_user("late@example.org").await.unwrap(), None);
    a.invalidate_all();
    assert_eq!(
        local_users(&a.resolve_recipient("late@example.org").await.unwrap()),
        ["late@example.org"]
    );
    assert!(a.lookup_user("late@example.org").await.unwrap().is_some());
    // Authentication is never cached.
    b.user_passwd("late@example.org", pw("y")).await.unwrap();
    a.authenticate("late@example.org", &pw("y")).await.unwrap();

    // ttl 0 disables the cache
    let c = open(DirectoryConfig {
        cache_ttl_secs: 0,
        ..sqlite_config(&tmp)
    })
    .await;
    assert_eq!(c.lookup_user("later@example.org").await.unwrap(), None);
    b.user_add(NewUser::new("later@example.org", pw("x")))
        .await
        .unwrap();
    assert!(c.lookup_user("later@example.org").await.unwrap().is_some());
}

#[tokio::test]
async fn self_referencing_alias_with_extension_keeps_the_mailbox() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(sqlite_config(&tmp)).await;
    dir.domain_add("example.org").await.unwrap();
    dir.user_add(NewUser::new("alice@example.org", pw("x")))
        .await
        .unwrap();
    dir.alias_add("alice@example.org", "alice@example.org")
        .await
        .unwrap();
    dir.alias_add("alice@example.org", "copy@remote.test")
        .await
        .unwrap();
    for rcpt in ["alice@example.org", "alice+tag@example.org"] {
        let r = dir.resolve_recipient(rcpt).await.unwrap();
        assert_eq!(local_users(&r), ["alice@example.org"], "{rcpt}");
        assert_eq!(remote(&r), ["copy@remote.test"], "{rcpt}");
        let Resolution::Deliver(d) = r else { panic!() };
        assert!(d.dropped.is_empty(), "{rcpt}: {:?}", d.dropped);
    }
    // a three-step loop with no mailbox anywhere delivers nothing and says why
    dir.alias_add("x@example.org", "y@example.org")
        .await
        .unwrap();
    dir.alias_add("y@example.org", "z@example.org")
        .await
        .unwrap();
    dir.alias_add("z@example.org", "x@example.org")
        .await
        .unwrap();
    let Resolution::Deliver(d) = dir.resolve_recipient("y@example.org").await.unwrap() else {
        panic!()
    };
    assert!(d.is_empty());
    assert_eq!(
        d.dropped,
        [("y@example.org".to_string(), DroppedReason::Loop)]
    );
}

#[tokio::test]
async fn alias_depth_and_expansion_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(sqlite_config(&tmp)).await;
    dir.domain_add("example.org").await.unwrap();
    dir.user_add(NewUser::new("end@example.org", pw("x")))
        .await
        .unwrap();
    // a chain longer than MAX_ALIAS_DEPTH
    let n = directory::MAX_ALIAS_DEPTH + 2;
    for i in 0..n {
        dir.alias_add(
            &format!("c{i}@example.org"),
            &format!("c{}@example.org", i + 1),
        )
        .await
        .unwrap();
    }
    dir.alias_add(&format!("c{n}@example.org"), "end@example.org")
        .await
        .unwrap();
    assert!(matches!(
        dir.resolve_recipient("c0@example.org").await,
        Err(DirectoryError::AliasLimit(_))
    ));
    // a chain within the bound works
    assert_eq!(
        local_users(&dir.resolve_recipient("c5@example.org").await.unwrap()),
        ["end@example.org"]
    );
}

#[tokio::test]
async fn recipient_delimiter_is_configurable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = open(DirectoryConfig {
        recipient_delimiter: "-".into(),
        ..sqlite_config(&tmp)
    })
    .await;
    dir.domain_add("example.org").await.unwrap();
    dir.user_add(NewUser::new("joe@example.org", pw("x")))
        .await
        .unwrap();
    assert_eq!(
        local_users(&dir.resolve_recipient("joe-tag@example.org").await.unwrap()),
        ["joe@example.org"]
    );
    assert_eq!(
        dir.resolve_recipient("joe+tag@example.org").await.unwrap(),
        Resolution::Unknown
    );
    let off = open(DirectoryConfig {
        recipient_delimiter: String::new(),
        ..sqlite_config(&tmp)
    })
    .await;
    assert_eq!(
        off.resolve_recipient("joe-tag@example.org").await.unwrap(),
        Resolution::Unknown
    );
}

#[tokio::test]
async fn local_aliases_for_mydestination() {
    let tmp = tempfile::tempdir().unwrap();
    let aliases = tmp.path().join("aliases");
    std::fs::write(
        &aliases,
        "# local aliases\npostmaster: root\nroot: alice, admin@remote.test\nbroken line\nrobot: \"|/usr/bin/robot\"\n",
    )
    .unwrap();
    let dir = open(DirectoryConfig {
        mydestination: vec!["mail.example.org".into(), "localhost".into()],
        aliases_file: Some(aliases.clone()),
        ..sqlite_config(&tmp)
    })
    .await;
    dir.domain_add("mail.example.org").await.unwrap();
    dir.user_add(NewUser::new("alice@mail.example.org", pw("x")))
        .await
        .unwrap();
    let r = dir
        .resolve_recipient("PostMaster@mail.example.org")
        .await
        .unwrap();
    assert_eq!(local_users(&r), ["alice@mail.example.org"]);
    assert_eq!(remote(&r), ["admin@remote.test"]);
    // bare "root" in a delivery means root@myorigin (first mydestination)
    assert_eq!(
        local_users(&dir.resolve_recipient("root").await.unwrap()),
        ["alice@mail.example.org"]
    );
    // local aliases do not apply to other domains; robot was refused by policy
    assert_eq!(
        dir.resolve_recipient("robot@mail.example.org")
            .await
            .unwrap(),
        Resolution::Unknown
    );
    // localhost is local even without a domains row; no such user there
    assert_eq!(
        dir.resolve_recipient("nobody@localhost").await.unwrap(),
        Resolution::Unknown
    );
    let errors = dir.reload_aliases().unwrap();
    assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [4, 5]);

    // with commands allowed, the command is part of the delivery
    let dir = open(DirectoryConfig {
        mydestination: vec!["mail.example.org".into()],
        aliases_file: Some(aliases),
        allow_command_targets: true,
        ..sqlite_config(&tmp)
    })
    .await;
    let Resolution::Deliver(d) = dir
        .resolve_recipient("robot@mail.example.org")
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.commands, ["/usr/bin/robot"]);
}

#[tokio::test]
async fn stored_hash_forms_and_policies() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("directory.db");
    let dir = open(sqlite_config(&tmp)).await;
    dir.domain_add("example.org").await.unwrap();
    dir.user_add(NewUser::new("old@example.org", pw("x")))
        .await
        .unwrap();
    dir.user_add(NewUser::new("plain@example.org", pw("x")))
        .await
        .unwrap();
    dir.user_add(NewUser::new("scram@example.org", pw("x")))
        .await
        .unwrap();
    // Write migrated hashes directly, as an import would.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for (user, hash) in [
        (
            "old@example.org",
            "{MD5-CRYPT}$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/",
        ),
        ("plain@example.org", "{PLAIN}password"),
        (
            "scram@example.org",
            "{SCRAM-SHA-256}4096,MDEyMzQ1Njc4OWFiY2RlZg==,nQpbZ77WudtqufPwikHXGRt6g2QJ4zns8bZLw273DRM=,jn2amWP1q1h+jgjy0YTO14S6/F02SV7taipOeB7ef20=",
        ),
    ] {
        sqlx::query("UPDATE users SET password = ? WHERE email = ?")
            .bind(hash)
            .bind(user)
            .execute(&pool)
            .await
            .unwrap();
    }
    let v = dir
        .authenticate("old@example.org", &pw("password"))
        .await
        .unwrap()
        .verified;
    assert!(v.deprecated && v.needs_rehash);
    assert_eq!(
        dir.authenticate("plain@example.org", &pw("password")).await,
        Err(AuthError::Failed)
    );
    assert!(
        dir.scram_secret("plain@example.org")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        dir.authenticate("scram@example.org", &pw("pencil"))
            .await
            .unwrap()
            .verified
            .scheme,
        Scheme::ScramSha256
    );
    assert_eq!(
        dir.scram_secret("scram@example.org")
            .await
            .unwrap()
            .unwrap()
            .iterations,
        4096
    );
    assert!(
        dir.scram_secret("ghost@example.org")
            .await
            .unwrap()
            .is_none()
    );

    let lax = open(DirectoryConfig {
        allow_plaintext_schemes: true,
        default_login_domain: "example.org".into(),
        ..sqlite_config(&tmp)
    })
    .await;
    lax.authenticate("plain", &pw("password")).await.unwrap();
    assert!(
        lax.scram_secret("plain@example.org")
            .await
            .unwrap()
            .is_some()
    );

    // default_scheme is configurable; verify-only schemes are refused
    let scram = open(DirectoryConfig {
        default_scheme: "SCRAM-SHA-256".into(),
        ..sqlite_config(&tmp)
    })
    .await;
    scram
        .user_add(NewUser::new("new@example.org", pw("pw")))
        .await
        .unwrap();
    assert!(
        scram
            .scram_secret("new@example.org")
            .await
            .unwrap()
            .is_some()
    );
    for bad in ["MD5-CRYPT", "NOPE", "PLAIN"] {
        let r = Directory::open(DirectoryConfig {
            default_scheme: bad.into(),
            ..sqlite_config(&tmp)
        })
        .await;
        assert!(matches!(r, Err(DirectoryError::Config(_))), "{bad}");
    }
}

#[tokio::test]
async fn system_backend() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("passwd"),
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("shadow"),
        "root:*:1::::::\nalice:$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1:1::::::\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("aliases"), "root: alice\n").unwrap();
    let dir = open(DirectoryConfig {
        backend: BackendKind::System,
        passwd_file: tmp.path().join("passwd"),
        shadow_file: tmp.path().join("shadow"),
        aliases_file: Some(tmp.path().join("aliases")),
        mydestination: vec!["example.org".into()],
        ..DirectoryConfig::default()
    })
    .await;
    let ok = dir
        .authenticate("alice", &pw("Hello world!"))
        .await
        .unwrap();
    assert_eq!(ok.user.login, "alice");
    assert_eq!(ok.user.uid, Some(1000));
    dir.authenticate("alice@example.org", &pw("Hello world!"))
        .await
        .unwrap();
    assert_eq!(
        dir.authenticate("alice", &pw("nope")).await,
        Err(AuthError::Failed)
    );
    assert_eq!(
        dir.authenticate("root", &pw("")).await,
        Err(AuthError::Failed)
    );
    let Resolution::Deliver(d) = dir.resolve_recipient("root@example.org").await.unwrap() else {
        panic!()
    };
    assert_eq!(d.local[0].mailbox, PathBuf::from("/home/alice/Maildir"));
    assert_eq!((d.local[0].uid, d.local[0].gid), (Some(1000), Some(1000)));
    assert_eq!(
        dir.resolve_recipient("ghost@example.org").await.unwrap(),
        Resolution::Unknown
    );
    assert_eq!(
        dir.resolve_recipient("x@other.test").await.unwrap(),
        Resolution::NotOurs
    );
    assert!(matches!(
        dir.domain_add("x.test").await,
        Err(DirectoryError::Unsupported(_))
    ));
}

async fn server_scenario(kind: BackendKind, env: &str) {
    let Ok(url) = std::env::var(env) else {
        println!("SKIPPED: {env} is not set; no {kind:?} server to test against");
        return;
    };
    let cfg = DirectoryConfig {
        backend: kind,
        url: Secret::new(url.clone()),
        create_schema: false,
        queries: SqlQueries::postern(),
        ..DirectoryConfig::default()
    };
    // Fresh tables in the test database.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    for t in ["domains", "users", "forwardings", "transport"] {
        sqlx::query(&format!("DROP TABLE IF EXISTS {t}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    let dir = open(DirectoryConfig {
        create_schema: true,
        ..cfg.clone()
    })
    .await;
    scenario(&dir).await;
    // Non-ASCII local parts survive the round trip (utf8mb4 on MySQL).
    dir.user_add(NewUser::new("jürgen@example.org", pw("x")))
        .await
        .unwrap();
    assert_eq!(
        dir.user_show("JÜRGEN@example.org").await.unwrap().address,
        "jürgen@example.org"
    );
    dir.user_del("jürgen@example.org").await.unwrap();
    // The classic default queries work on the same tables.
    let classic = open(DirectoryConfig {
        queries: SqlQueries::default(),
        ..cfg.clone()
    })
    .await;
    classic
        .authenticate("alice@example.org", &pw("looking-glass"))
        .await
        .unwrap();
    assert_eq!(
        local_users(&classic.resolve_recipient("team@example.org").await.unwrap()).len(),
        2
    );
    // A hand-made legacy table with TEXT columns, through a custom query
    // with %u/%d placeholders and a bare SHA512-CRYPT hash.
    sqlx::query("DROP TABLE IF EXISTS legacy_mailbox")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE legacy_mailbox (username TEXT, dom TEXT, pw TEXT, home TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO legacy_mailbox VALUES ('dora', 'example.org', \
         '$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1', \
         '/srv/legacy/dora')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let legacy = open(DirectoryConfig {
        queries: SqlQueries {
            user: "SELECT pw AS password, home AS maildir FROM legacy_mailbox \
                   WHERE username = %u AND dom = %d"
                .into(),
            ..SqlQueries::default()
        },
        ..cfg
    })
    .await;
    let dora = legacy
        .authenticate("dora@example.org", &pw("Hello world!"))
        .await
        .unwrap();
    assert_eq!(dora.user.address, "dora@example.org");
    assert_eq!(dora.user.mailbox, PathBuf::from("/srv/legacy/dora"));
    assert_eq!(dora.verified.scheme, Scheme::Sha512Crypt);
}

#[tokio::test]
async fn mysql_scenario() {
    server_scenario(BackendKind::Mysql, "POSTERN_TEST_MYSQL_URL").await;
}

#[tokio::test]
async fn postgres_scenario() {
    server_scenario(BackendKind::Postgres, "POSTERN_TEST_PG_URL").await;
}

/// The exchanges authd runs: SASL mechanism → directory → authorization.
mod sasl_flows {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use directory::sasl::{Mechanism, SaslServer, Step, decode_response};
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }

    /// A SCRAM-SHA-256 client (RFC 5802), independent of the server code.
    fn client_final(
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").unwrap();
        let salt = B64.decode(attrs[1].strip_prefix("s=").unwrap()).unwrap();
        let iters: u32 = attrs[2].strip_prefix("i=").unwrap().parse().unwrap();
        let mut salted = hmac(
            password.as_bytes(),
            &[&salt[..], &1u32.to_be_bytes()].concat(),
        );
        let mut u = salted.clone();
        for _ in 1..iters {
            u = hmac(password.as_bytes(), &u);
            salted.iter_mut().zip(&u).for_each(|(s, x)| *s ^= x);
        }
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_sig = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
        let mut v = b"v=".to_vec();
        v.extend_from_slice(B64.encode(server_sig).as_bytes());
        (format!("{without_proof},p={}", B64.encode(proof)), v)
    }

    async fn setup(tmp: &tempfile::TempDir) -> Directory {
        let dir = open(DirectoryConfig {
            default_scheme: "SCRAM-SHA-256".into(),
            master_users: vec!["admin@example.org".into()],
            ..sqlite_config(tmp)
        })
        .await;
        dir.domain_add("example.org").await.unwrap();
        for u in ["alice@example.org", "admin@example.org", "bob@example.org"] {
            dir.user_add(NewUser::new(u, pw("pencil"))).await.unwrap();
        }
        dir
    }

    #[tokio::test]
    async fn plain_then_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = setup(&tmp).await;
        // (base64 initial response, expected acting identity or None for failure)
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"\0alice@example.org\0pencil", Some("alice@example.org")),
            (
                b"Alice@example.org\0alice@example.org\0pencil",
                Some("alice@example.org"),
            ),
            (b"\0alice@example.org\0wrong", None),
            (b"\0ghost@example.org\0pencil", None),
            (b"bob@example.org\0alice@example.org\0pencil", None),
            (
                b"bob@example.org\0admin@example.org\0pencil",
                Some("bob@example.org"),
            ),
            (b"ghost@example.org\0admin@example.org\0pencil", None),
        ];
        for (raw, want) in cases {
            let line = B64.encode(raw);
            let decoded = decode_response(line.as_bytes()).unwrap();
            let mut s = SaslServer::new(Mechanism::Plain);
            let Step::Credentials(c) = s.start(Some(&decoded)) else {
                panic!()
            };
            let got = dir
                .authenticate_credentials(&c)
                .await
                .map(|(_, acting)| acting);
            match want {
                Some(w) => assert_eq!(got.as_deref(), Ok(*w), "{raw:?}"),
                None => assert_eq!(got, Err(AuthError::Failed), "{raw:?}"),
            }
        }
        // disabled domain blocks logins
        dir.sql()
            .unwrap()
            .domain_set_enabled("example.org", false)
            .await
            .unwrap();
        assert_eq!(
            dir.authenticate("alice@example.org", &pw("pencil")).await,
            Err(AuthError::Failed)
        );
    }

    #[tokio::test]
    async fn scram_then_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = setup(&tmp).await;
        for (user, password, ok) in [
            ("alice@example.org", "pencil", true),
            ("alice@example.org", "crayon", false),
            ("ghost@example.org", "pencil", false),
        ] {
            let bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
            let mut s = SaslServer::new(Mechanism::ScramSha256);
            let Step::NeedScramSecret { authcid } = s.start(Some(format!("n,,{bare}").as_bytes()))
            else {
                panic!()
            };
            let secret = dir.scram_secret(&authcid).await.unwrap();
            let Step::Challenge(server_first) = s.scram_secret(secret) else {
                panic!()
            };
            let (fin, expected_v) =
                client_final(password, &bare, std::str::from_utf8(&server_first).unwrap());
            match s.step(fin.as_bytes()) {
                Step::Done { id, final_data } => {
                    assert!(ok, "{user}/{password} must not pass");
                    assert_eq!(final_data, Some(expected_v), "server signature");
                    let user = dir.lookup_user(&id.authcid).await.unwrap().unwrap();
                    assert_eq!(
                        dir.authorize(&id, &user).await.unwrap(),
                        "alice@example.org"
                    );
                }
                Step::Failed(_) => assert!(!ok, "{user}/{password} must pass"),
                other => panic!("{other:?}"),
            }
        }
    }
}
