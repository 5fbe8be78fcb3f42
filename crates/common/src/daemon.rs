//! The common life cycle of every postern daemon.
//!
//! [`main`] does, in order: parse the command line; take systemd's sockets;
//! load and validate the configuration (a bad file prints
//! `<daemon>: configuration error: <file>: <key>: <reason>` and exits 78,
//! `EX_CONFIG`, before any socket is bound); set up logging; start the tokio
//! runtime; run the daemon with a [`Context`]; handle signals:
//!
//! * SIGTERM / SIGINT: `STOPPING=1`, stop accepting, let in-flight sessions
//!   finish within `global.shutdown_timeout`, exit 0. A second signal exits at once.
//! * SIGHUP: re-read the file; if it is valid, publish it to the daemon
//!   ([`Context::config_updates`]) and apply the log filter; if not, log the
//!   error and keep running with the old configuration. Listener addresses
//!   and socket paths need a restart; the log names keys that changed.
//!
//! If `[metrics] <daemon>` is set, the Prometheus endpoint ([`crate::metrics`])
//! is bound before the daemon runs (a failure to bind exits 1).
//!
//! Exit codes: 0 clean stop, 1 runtime failure, 64 bad usage, 78 bad configuration.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::sync::watch;

use crate::config::{CONFIG_ENV, Config, ConfigError, DEFAULT_CONFIG_PATH};
use crate::listen::Listeners;
use crate::logging::{self, LogHandle};
use crate::shutdown::Shutdown;
use crate::systemd;

/// `EX_CONFIG` from sysexits.h: configuration error.
pub const EXIT_CONFIG: u8 = 78;
/// `EX_USAGE` from sysexits.h: bad command line.
pub const EXIT_USAGE: u8 = 64;

/// Command line shared by the daemons.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct DaemonArgs {
    /// Configuration file.
    #[arg(short, long, env = CONFIG_ENV, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Validate the configuration and exit (0 if valid, 78 if not).
    #[arg(long)]
    pub check_config: bool,
}

/// A daemon-specific validation step run after the shared one, before binding.
pub type Validate = fn(&Config, &Path) -> Result<(), ConfigError>;

/// What a running daemon gets.
pub struct Context {
    pub daemon: &'static str,
    pub config_path: PathBuf,
    config: watch::Receiver<Arc<Config>>,
    pub shutdown: Shutdown,
    pub listeners: Listeners,
}

impl Context {
    /// The current configuration (replaced on a successful SIGHUP reload).
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// A receiver that changes on every successful reload.
    pub fn config_updates(&self) -> watch::Receiver<Arc<Config>> {
        self.config.clone()
    }

    /// Tell systemd (and the log) that the daemon is serving.
    pub fn ready(&self, status: &str) {
        tracing::info!(status, "ready");
        systemd::notify_ready(status);
    }
}

/// Wrap a configuration problem found by a daemon at start (e.g. an
/// unreadable certificate) so that [`main`] exits with 78.
pub fn config_error(file: &Path, key: &str, reason: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(ConfigError::new(file, key, reason.to_string()))
}

/// Run a daemon: see the module documentation for the sequence.
pub fn main<F, Fut>(daemon: &'static str, validate: Validate, run: F) -> ExitCode
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let args = match DaemonArgs::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let listeners = Listeners::from_env();
    let config = match load(&args.config, validate) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{daemon}: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.check_config {
        println!("{daemon}: configuration {} is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    let log = logging::init(daemon, &config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{daemon}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let shutdown = Shutdown::new();
        let drain_timeout = config.global.shutdown_timeout;
        let (tx, rx) = watch::channel(Arc::new(config));
        // Install the handlers now, before the daemon can report READY=1:
        // a SIGTERM right after readiness must find them in place.
        let handlers = match SignalHandlers::install() {
            Ok(h) => h,
            Err(e) => {
                eprintln!("{daemon}: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::spawn(signals(daemon, handlers, args.config.clone(), validate, tx, log, shutdown.clone()));
        if let Some(every) = systemd::watchdog_interval() {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    systemd::notify_watchdog();
                }
            });
        }
        tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %args.config.display(), "starting");
        crate::metrics::init(daemon);
        if let Some(address) = rx.borrow().metrics.address(daemon) {
            match crate::metrics::bind(address).await {
                Ok(l) => {
                    tokio::spawn(crate::metrics::serve(l, shutdown.clone()));
                }
                Err(e) => {
                    tracing::error!(%address, "fatal: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let ctx = Context {
            daemon,
            config_path: args.config,
            config: rx,
            shutdown: shutdown.clone(),
            listeners,
        };
        let result = run(ctx).await;
        shutdown.trigger();
        let in_flight = shutdown.in_flight();
        if in_flight > 0 {
            tracing::info!(in_flight, timeout = ?drain_timeout, "draining sessions");
        }
        if !shutdown.drain(drain_timeout).await {
            tracing::warn!(left = shutdown.in_flight(), "drain timeout reached, closing remaining sessions");
        }
        match result {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) if e.downcast_ref::<ConfigError>().is_some() => {
                tracing::error!("configuration error: {e:#}");
                eprintln!("{daemon}: configuration error: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
            Err(e) => {
                tracing::error!("fatal: {e:#}");
                ExitCode::FAILURE
            }
        }
    });
    // Do not wait for blocking tasks left behind by a timed-out drain.
    runtime.shutdown_background();
    code
}

fn load(path: &Path, validate: Validate) -> Result<Config, ConfigError> {
    let cfg = Config::load(path)?;
    validate(&cfg, path)?;
    Ok(cfg)
}

struct SignalHandlers {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl SignalHandlers {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

async fn signals(
    daemon: &'static str,
    handlers: SignalHandlers,
    path: PathBuf,
    validate: Validate,
    tx: watch::Sender<Arc<Config>>,
    log: LogHandle,
    shutdown: Shutdown,
) {
    let SignalHandlers {
        mut term,
        mut int,
        mut hup,
    } = handlers;
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => {
                reload(daemon, &path, validate, &tx, &log);
                continue;
            }
        };
        if shutdown.is_triggered() {
            tracing::warn!(signal = name, "second stop signal, exiting now");
            std::process::exit(1);
        }
        tracing::info!(signal = name, "shutting down");
        systemd::notify_stopping();
        shutdown.trigger();
    }
}

fn reload(
    daemon: &str,
    path: &Path,
    validate: Validate,
    tx: &watch::Sender<Arc<Config>>,
    log: &LogHandle,
) {
    systemd::notify_reloading();
    match load(path, validate) {
        Ok(new) => {
            let old = tx.borrow().clone();
            let before: std::collections::BTreeMap<_, _> = old.flatten().into_iter().collect();
            let changed: Vec<String> = new
                .flatten()
                .into_iter()
                .filter(|(k, v)| before.get(k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            if let Err(e) = log.set_level(&new.log.level) {
                tracing::warn!(error = %e, "cannot apply log.level");
            }
            tracing::info!(changed = changed.join(","), "configuration reloaded");
            tx.send_replace(Arc::new(new));
        }
        Err(e) => {
            tracing::error!(%daemon, "reload refused, keeping the running configuration: {e}");
        }
    }
    systemd::notify_ready("reloaded");
}
