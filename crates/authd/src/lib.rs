//! # NAME
//! authd — postern directory and authentication service
//!
//! # DESCRIPTION
//! The one place that knows users, domains and aliases, and checks
//! passwords. It serves:
//!
//! * `postern.auth.v1` (gRPC) on `authd.socket` for smtpd, pop3d, imapd,
//!   queue-manager and lmtp-delivery: version `Handshake`, `Mechanisms`,
//!   streaming SASL `Authenticate` (PLAIN, LOGIN, SCRAM-SHA-256),
//!   `LookupUser` and `ResolveRecipient` (aliases, catch-all, plus-addressing,
//!   `/etc/aliases` for `mydestination` domains);
//! * the Dovecot authentication protocol v1 on `authd.dovecot_socket`, so a
//!   stock Postfix with `smtpd_sasl_type = dovecot` authenticates here.
//!
//! The directory itself (SQLite by default, MySQL/MariaDB, PostgreSQL, or
//! Unix system users) is the `directory` crate; `mailctl` manages it.
//!
//! # SECURITY
//! Runs as `postern`; both sockets are mode 0660 in the private socket
//! directory. Failures never tell an unknown user from a bad password (same
//! reply, same cost). Plaintext mechanisms (PLAIN, LOGIN) are refused unless
//! the caller says the client connection is secured (TLS, or plaintext
//! explicitly allowed in its configuration). Brute-force defence per client
//! IP: failed logins are answered after a delay that doubles per failure
//! (`auth_failure_delay`, up to `auth_failure_delay_max`); after
//! `auth_failure_limit` failures in `auth_failure_window` the IP is refused
//! without a password check. Every failure is logged with IP, service,
//! mechanism and attempted login — never the password.
//!
//! # STANDARDS
//! RFC 4422 (SASL), RFC 4616 (PLAIN), draft-murchison-sasl-login (LOGIN),
//! RFC 5802 and RFC 7677 (SCRAM-SHA-256); Dovecot authentication protocol 1.x.
//!
//! # CONFIGURATION
//! `[authd]`: `socket`, `dovecot_socket`, `dovecot_protocol`,
//! `auth_failure_delay` (2s), `auth_failure_delay_max` (15s),
//! `auth_failure_window` (15m), `auth_failure_limit` (50);
//! `[authd.directory]`: backend settings (see `deploy/postern.toml`).
//! SIGHUP empties the lookup cache and re-reads the aliases file.
//!
//! # DIAGNOSTICS
//! `authenticated user=… remote=… service=… mechanism=…` and
//! `authentication failed login=… remote=… delay_ms=…` per attempt.
//! Exit status 0 after a clean stop, 78 for a configuration error
//! (including an unusable `[authd.directory]`), 1 otherwise.
//!
//! # SEE ALSO
//! mailctl(8), smtpd(8), postern.toml(5)

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use directory::{Directory, DirectoryConfig};
use postern_common::listen::accept_unix;
use postern_common::{Config, ConfigError, Context};
use postern_ipc::auth::v1 as pb;

pub mod dovecot;
pub mod exchange;
pub mod penalty;
pub mod service;

/// Mode of the private sockets: the `postern` group only.
pub const SOCKET_MODE: u32 = 0o660;

/// The directory configuration: `[authd.directory]` with defaults taken
/// from `[global]` and `[lmtp]` for the keys it leaves out.
pub fn directory_config(cfg: &Config, file: &Path) -> Result<DirectoryConfig, ConfigError> {
    let mut table = cfg.authd.directory.clone();
    let g = &cfg.global;
    let mut default = |key: &str, value: toml::Value| {
        table.entry(key.to_string()).or_insert(value);
    };
    default(
        "path",
        toml::Value::String(
            g.state_directory
                .join("directory.sqlite")
                .display()
                .to_string(),
        ),
    );
    default(
        "mydestination",
        toml::Value::Array(
            g.mydestination
                .iter()
                .cloned()
                .map(toml::Value::String)
                .collect(),
        ),
    );
    default("myorigin", toml::Value::String(g.myorigin.clone()));
    default(
        "recipient_delimiter",
        toml::Value::String(g.recipient_delimiter.clone()),
    );
    default(
        "mailbox_template",
        toml::Value::String(format!(
            "{}/%d/%u/Maildir",
            cfg.lmtp.mail_directory.display()
        )),
    );
    toml::Value::Table(table)
        .try_into::<DirectoryConfig>()
        .map_err(|e| {
            ConfigError::new(
                file,
                "authd.directory",
                e.to_string().trim().replace('\n', " "),
            )
        })
}

/// Checks beyond the shared configuration validation.
pub fn validate(cfg: &Config, file: &Path) -> Result<(), ConfigError> {
    directory_config(cfg, file).map(|_| ())
}

/// Open the directory as configured (creating the SQLite file's directory).
pub async fn open_directory(cfg: &Config, file: &Path) -> anyhow::Result<Directory> {
    let dcfg = directory_config(cfg, file)?;
    if dcfg.backend == directory::BackendKind::Sqlite
        && let Some(parent) = dcfg.path.parent().filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let dir = Directory::open(dcfg)
        .await
        .context("cannot open the directory")?;
    Ok(dir)
}

/// Run until shutdown.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let cfg = ctx.config();
    let dir = open_directory(&cfg, &ctx.config_path).await?;
    let a = &cfg.authd;
    let core = Arc::new(exchange::Core {
        dir,
        penalties: penalty::Penalties::new(
            a.auth_failure_delay,
            a.auth_failure_delay_max,
            a.auth_failure_window,
            a.auth_failure_limit,
        ),
    });

    let uri = Config::socket_uri(&a.socket);
    let grpc = ctx.listeners.unix("auth", &uri, SOCKET_MODE)?;
    tracing::info!(socket = %uri, "listening (postern.auth.v1)");
    let mut tasks = tokio::task::JoinSet::new();
    if a.dovecot_protocol {
        let duri = Config::socket_uri(&a.dovecot_socket);
        let dl = ctx.listeners.unix("dovecot-auth", &duri, SOCKET_MODE)?;
        tracing::info!(socket = %duri, "listening (Dovecot auth protocol)");
        let core = core.clone();
        tasks.spawn(accept_unix(
            "dovecot-auth".into(),
            dl,
            ctx.shutdown.clone(),
            move |s| dovecot::serve_connection(core.clone(), s),
        ));
    }

    // SIGHUP: forget cached lookups, re-read the aliases file.
    let mut updates = ctx.config_updates();
    let reload_core = core.clone();
    let shutdown = ctx.shutdown.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.triggered() => break,
                changed = updates.changed() => {
                    if changed.is_err() { break; }
                    reload_core.dir.invalidate_all();
                    match reload_core.dir.reload_aliases() {
                        Ok(errors) if errors.is_empty() => tracing::info!("directory cache cleared, aliases reloaded"),
                        Ok(errors) => {
                            for e in errors {
                                tracing::warn!(error = %e, "aliases file");
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot reload the aliases file"),
                    }
                }
            }
        }
    });

    let router = tonic::transport::Server::builder().add_service(pb::auth_server::AuthServer::new(
        service::AuthService { core },
    ));
    ctx.ready("serving postern.auth.v1");
    postern_ipc::serve(router, grpc, ctx.shutdown.signal()).await?;
    while tasks.join_next().await.is_some() {}
    Ok(())
}
