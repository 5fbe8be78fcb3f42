//! deploy/: `make install` lays out binaries, units and config; the units
//! pass `systemd-analyze verify`; the example config documents every key
//! with its default; socket units match listener names.

use std::path::{Path, PathBuf};
use std::process::Command;

use postern_common::Config;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The example file with every commented-out key (`#key = ...`, and the
/// lines of commented arrays) switched on.
fn uncommented_example() -> String {
    let text = std::fs::read_to_string(repo().join("deploy/postern.toml")).unwrap();
    text.lines()
        .map(|l| {
            let body = l.strip_prefix('#');
            match body {
                Some(b) if b.starts_with(|c: char| c.is_ascii_lowercase() || c == ']') => {
                    b.to_string()
                }
                Some(b) if b.starts_with("  {") => b.to_string(),
                _ => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_config_is_valid_as_shipped_and_uncommented() {
    let dir = tempfile::tempdir().unwrap();
    Config::load(&repo().join("deploy/postern.toml")).expect("shipped example loads");
    let path = dir.path().join("all.toml");
    std::fs::write(&path, uncommented_example()).unwrap();
    let cfg = Config::load(&path).expect("uncommented example loads");
    // Every key of the configuration appears in the example.
    let documented: std::collections::BTreeSet<String> = cfg
        .explicit_keys
        .iter()
        .map(|k| k.split('[').next().unwrap().to_string())
        .collect();
    let mut all = Config::default();
    all.finalize();
    for (key, _) in all.flatten() {
        let base = key.split('[').next().unwrap().to_string();
        let covered = documented
            .iter()
            .any(|d| *d == base || d.starts_with(&format!("{base}.")));
        assert!(covered, "{base} is not documented in deploy/postern.toml");
    }
}

#[test]
fn uncommented_defaults_equal_the_built_in_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.toml");
    std::fs::write(&path, uncommented_example()).unwrap();
    let cfg = Config::load(&path).unwrap();
    let mut defaults = Config::default();
    defaults.finalize();
    // Keys whose shown value is an example rather than the default.
    let examples = [
        "global.myhostname",
        "global.mydomain",
        "global.myorigin",
        "global.mydestination",
        "lmtp.listener",
        "autoconfig.listener",
    ];
    let dflt: std::collections::BTreeMap<_, _> = defaults.flatten().into_iter().collect();
    for (k, v) in cfg.flatten() {
        if examples.iter().any(|e| k.starts_with(e)) || k.starts_with("authd.directory") {
            continue;
        }
        assert_eq!(
            dflt.get(&k),
            Some(&v),
            "deploy/postern.toml shows {k} = {v}, the default differs"
        );
    }
}

#[test]
fn make_install_and_systemd_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let profile = postern_tests::bin_dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let out = Command::new("make")
        .current_dir(repo())
        .args(["-s", "install", "NO_USERS=1"])
        .arg(format!("PROFILE={profile}"))
        .arg(format!("PREFIX={}/usr", root.display()))
        .arg(format!("SYSCONFDIR={}/etc", root.display()))
        .output()
        .expect("make");
    assert!(
        out.status.success(),
        "make install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for d in postern_tests::DAEMONS {
        assert!(root.join("usr/lib/postern").join(d).exists(), "{d}");
        assert!(
            root.join(format!("etc/systemd/system/postern-{d}.service"))
                .exists(),
            "{d}"
        );
    }
    for f in [
        "usr/sbin/mailctl",
        "usr/sbin/sendmail",
        "usr/sbin/mailq",
        "usr/sbin/newaliases",
        "etc/postern/postern.toml",
        "etc/tmpfiles.d/postern.conf",
        "etc/systemd/system/postern.target",
    ] {
        assert!(root.join(f).exists(), "{f}");
    }
    assert_eq!(
        std::fs::read_link(root.join("usr/sbin/sendmail")).unwrap(),
        PathBuf::from("mailctl")
    );
    let units: Vec<PathBuf> = std::fs::read_dir(root.join("etc/systemd/system"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .expect("systemd-analyze (package systemd; make test-deps installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );

    // Socket units name listeners that exist in the default configuration.
    let cfg = Config::default();
    let names: Vec<&str> = cfg
        .smtpd
        .listener
        .iter()
        .map(|l| l.name.as_str())
        .chain(cfg.pop3d.listener.iter().map(|l| l.name.as_str()))
        .chain(cfg.imapd.listener.iter().map(|l| l.name.as_str()))
        .collect();
    for unit in units
        .iter()
        .filter(|u| u.extension().is_some_and(|e| e == "socket"))
    {
        let text = std::fs::read_to_string(unit).unwrap();
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("FileDescriptorName="))
            .expect("FileDescriptorName");
        assert!(
            names.contains(&name),
            "{}: {name} is not a default listener",
            unit.display()
        );
    }
}
