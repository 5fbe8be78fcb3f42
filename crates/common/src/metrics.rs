//! Prometheus metrics: one process-wide registry and a tiny HTTP endpoint.
//!
//! Every daemon calls [`init`] once with its name (done by
//! [`crate::daemon::main`]); that registers the metric families the daemon
//! has under the names `postern_<daemon>_<thing>_<unit>` (hyphens in the
//! daemon name become underscores: `postern_queue_manager_...`). Code counts
//! with the free functions below ([`connection_opened`], [`auth_attempt`],
//! [`check_verdict`], ...): they are cheap (an atomic add after a hash
//! lookup), never fail, and do nothing visible in a process that did not
//! register the family (a library used by `mailctl`, a unit test).
//!
//! [`serve`] answers `GET /metrics` with the Prometheus text exposition
//! format (version 0.0.4) on the address from `[metrics] <daemon>`; any other
//! path gets 404. The server reads one request head (at most
//! [`MAX_REQUEST_HEAD`] bytes, within [`REQUEST_TIMEOUT`]), answers and closes
//! the connection; at most [`MAX_CONNECTIONS`] scrapes run at once.
//!
//! Label values that come from outside (SASL mechanism names, next-hop
//! domains) are cleaned ([`label`]) and each family keeps at most
//! [`MAX_SERIES`] label sets: once full, new values are counted under
//! `_other`, so a client cannot grow the registry without bound.
//!
//! Every metric is listed in `docs/METRICS.md`.

use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::ConfigError;
use crate::shutdown::Shutdown;

/// Longest HTTP request head the metrics endpoint reads (a scrape request is
/// about 200 bytes; 8 KiB is the common server limit for a request line plus
/// headers).
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes served at the same time; more wait in the accept backlog.
pub const MAX_CONNECTIONS: usize = 16;
/// Label sets kept per family before new values are counted as `_other`.
pub const MAX_SERIES: usize = 1000;
/// Longest label value kept; longer values are cut.
pub const MAX_LABEL_LEN: usize = 64;

/// `Content-Type` of the answer (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Errors of the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot listen on {address} for metrics: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// `[metrics]`: the address of each daemon's metrics endpoint
/// (`"127.0.0.1:9425"`); empty (the default) serves none. The endpoint is not
/// authenticated: bind it to loopback or a management network. A change needs
/// a restart of that daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub smtpd: String,
    pub queue_manager: String,
    pub lmtp_delivery: String,
    pub authd: String,
    pub pop3d: String,
    pub imapd: String,
    pub autoconfigd: String,
}

impl MetricsConfig {
    /// `(daemon, configured address)` for every daemon, in start order.
    pub fn entries(&self) -> [(&'static str, &str); 7] {
        [
            ("authd", &self.authd),
            ("lmtp-delivery", &self.lmtp_delivery),
            ("queue-manager", &self.queue_manager),
            ("smtpd", &self.smtpd),
            ("pop3d", &self.pop3d),
            ("imapd", &self.imapd),
            ("autoconfigd", &self.autoconfigd),
        ]
    }

    /// The metrics address of `daemon`, if one is set.
    pub fn address(&self, daemon: &str) -> Option<SocketAddr> {
        self.entries()
            .into_iter()
            .find(|(d, _)| *d == daemon)
            .and_then(|(_, a)| a.parse().ok())
    }

    /// Every set address must be `IP:port`.
    pub fn validate(&self, file: &std::path::Path) -> Result<(), ConfigError> {
        for (daemon, address) in self.entries() {
            if !address.is_empty() && address.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::new(
                    file,
                    format!("metrics.{}", daemon.replace('-', "_")),
                    format!("{address:?} is not an IP:port address (use [::1]:9425 for IPv6)"),
                ));
            }
        }
        Ok(())
    }
}

type Labels = Vec<(&'static str, String)>;
type CounterFamily = Family<Labels, Counter>;
type GaugeFamily = Family<Labels, Gauge>;

fn latency_histogram() -> Histogram {
    // 10 ms .. ~82 s: local LMTP deliveries take milliseconds, remote SMTP
    // deliveries seconds.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.01, 2.0, 14,
    ))
}

/// Every metric family postern has; [`init`] registers the ones a daemon uses.
struct Metrics {
    build_info: GaugeFamily,
    start_time: Gauge<f64, std::sync::atomic::AtomicU64>,
    connections_active: GaugeFamily,
    connections: CounterFamily,
    connections_refused: CounterFamily,
    sessions: CounterFamily,
    tls_handshakes: CounterFamily,
    auth_attempts: CounterFamily,
    messages_received: CounterFamily,
    messages_enqueued: CounterFamily,
    messages_delivered: CounterFamily,
    messages_deferred: CounterFamily,
    messages_bounced: CounterFamily,
    queue_messages: GaugeFamily,
    delivery_duration: Family<Labels, Histogram, fn() -> Histogram>,
    mailstore_operations: CounterFamily,
    check_verdicts: CounterFamily,
    lookups: CounterFamily,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    build_info: Default::default(),
    start_time: Default::default(),
    connections_active: Default::default(),
    connections: Default::default(),
    connections_refused: Default::default(),
    sessions: Default::default(),
    tls_handshakes: Default::default(),
    auth_attempts: Default::default(),
    messages_received: Default::default(),
    messages_enqueued: Default::default(),
    messages_delivered: Default::default(),
    messages_deferred: Default::default(),
    messages_bounced: Default::default(),
    queue_messages: Default::default(),
    delivery_duration: Family::new_with_constructor(latency_histogram),
    mailstore_operations: Default::default(),
    check_verdicts: Default::default(),
    lookups: Default::default(),
});

static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();

/// Which groups of metrics a daemon exposes.
struct Groups {
    network: bool,
    auth: bool,
    received: bool,
    queue: bool,
    mailstore: bool,
    checks: bool,
    lookups: bool,
}

fn groups(daemon: &str) -> Groups {
    let none = Groups {
        network: false,
        auth: false,
        received: false,
        queue: false,
        mailstore: false,
        checks: false,
        lookups: false,
    };
    match daemon {
        "smtpd" => Groups {
            network: true,
            received: true,
            checks: true,
            ..none
        },
        "queue-manager" => Groups {
            queue: true,
            ..none
        },
        "lmtp-delivery" => Groups {
            network: true,
            received: true,
            mailstore: true,
            ..none
        },
        "authd" => Groups {
            auth: true,
            lookups: true,
            ..none
        },
        "pop3d" | "imapd" => Groups {
            network: true,
            mailstore: true,
            ..none
        },
        "autoconfigd" => Groups {
            network: true,
            ..none
        },
        _ => none,
    }
}

/// The metric name prefix of a daemon: `postern_queue_manager` for `queue-manager`.
pub fn prefix(daemon: &str) -> String {
    format!("postern_{}", daemon.replace('-', "_"))
}

/// Register the metrics of `daemon` (idempotent: only the first call counts).
pub fn init(daemon: &str) {
    REGISTRY.get_or_init(|| Mutex::new(build_registry(daemon)));
}

fn build_registry(daemon: &str) -> Registry {
    let m = &*METRICS;
    let mut r = Registry::with_prefix(prefix(daemon));
    let g = groups(daemon);
    r.register(
        "build_info",
        "Always 1; the version label is the running postern version",
        m.build_info.clone(),
    );
    m.build_info
        .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
        .set(1);
    r.register_with_unit(
        "start_time",
        "Start time of the process since the Unix epoch",
        Unit::Seconds,
        m.start_time.clone(),
    );
    m.start_time.set(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
    );
    if g.network {
        r.register(
            "connections_active",
            "Client connections open now, by listener",
            m.connections_active.clone(),
        );
        r.register(
            "connections",
            "Client connections accepted, by listener",
            m.connections.clone(),
        );
        r.register(
            "connections_refused",
            "Client connections refused before the greeting, by listener and limit",
            m.connections_refused.clone(),
        );
        r.register(
            "sessions",
            "Finished client sessions, by listener and outcome",
            m.sessions.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes (implicit TLS and STARTTLS), by listener and result",
            m.tls_handshakes.clone(),
        );
    }
    if g.auth {
        r.register(
            "auth_attempts",
            "Authentication exchanges, by service, mechanism and result (success, failure, temporary)",
            m.auth_attempts.clone(),
        );
    }
    if g.received {
        r.register(
            "messages_received",
            "Messages accepted from clients (250 after DATA/BDAT), by listener",
            m.messages_received.clone(),
        );
    }
    if g.queue {
        r.register(
            "messages_enqueued",
            "Messages written to the spool through the queue API, by socket (private: smtpd and daemons; public: sendmail)",
            m.messages_enqueued.clone(),
        );
        r.register(
            "messages_delivered",
            "Recipients delivered, by transport and next-hop domain",
            m.messages_delivered.clone(),
        );
        r.register(
            "messages_deferred",
            "Recipients deferred (temporary failure), by transport and next-hop domain",
            m.messages_deferred.clone(),
        );
        r.register(
            "messages_bounced",
            "Recipients bounced (permanent failure or expired), by transport and next-hop domain",
            m.messages_bounced.clone(),
        );
        for queue in ["incoming", "active", "deferred", "hold"] {
            m.queue_messages
                .get_or_create(&vec![("queue", queue.to_string())])
                .set(0);
        }
        r.register(
            "queue_messages",
            "Messages in the spool, by queue (incoming, active, deferred, hold)",
            m.queue_messages.clone(),
        );
        r.register_with_unit(
            "delivery_duration",
            "Time of one delivery attempt to a next hop, by transport",
            Unit::Seconds,
            m.delivery_duration.clone(),
        );
    }
    if g.mailstore {
        r.register(
            "mailstore_operations",
            "Mail store operations, by operation and result",
            m.mailstore_operations.clone(),
        );
    }
    if g.checks {
        r.register(
            "check_verdicts",
            "Verdicts of the check pipeline, by check and action",
            m.check_verdicts.clone(),
        );
    }
    if g.lookups {
        r.register(
            "lookups",
            "Directory lookups, by kind and result",
            m.lookups.clone(),
        );
    }
    r
}

type Hook = Box<dyn Fn() + Send + Sync>;
static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// Run `hook` before every scrape, to refresh gauges that are cheaper to
/// read on demand than to keep current (queue-manager counts its spool
/// directories). Hooks run on a blocking thread.
pub fn on_scrape(hook: impl Fn() + Send + Sync + 'static) {
    HOOKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Box::new(hook));
}

/// The current values in the Prometheus text format (runs the
/// [`on_scrape`] hooks first; may block on them).
pub fn render() -> String {
    for hook in HOOKS.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        hook();
    }
    let mut out = String::new();
    if let Some(r) = REGISTRY.get() {
        let r = r.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &r);
    }
    out
}

/// A label value safe to keep: printable ASCII without quotes or
/// backslashes, at most [`MAX_LABEL_LEN`] characters, lower case kept as given.
pub fn label(value: &str) -> String {
    let v: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(MAX_LABEL_LEN)
        .collect();
    if v.is_empty() { "_empty".into() } else { v }
}

/// The label set for `pairs`, or `_other` values once the family is full.
fn bounded<M, C>(family: &Family<Labels, M, C>, pairs: &[(&'static str, &str)]) -> Labels
where
    M: prometheus_client::metrics::TypedMetric,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    let labels: Labels = pairs.iter().map(|(k, v)| (*k, label(v))).collect();
    if family.len() >= MAX_SERIES && !family.contains(&labels) {
        return pairs
            .iter()
            .map(|(k, _)| (*k, "_other".to_string()))
            .collect();
    }
    labels
}

fn inc(family: &CounterFamily, pairs: &[(&'static str, &str)]) {
    family.get_or_create(&bounded(family, pairs)).inc();
}

/// What [`track_session`] knows about the session its task runs.
struct SessionCtx {
    listener: String,
    outcome: Mutex<&'static str>,
}

tokio::task_local! {
    static SESSION: std::sync::Arc<SessionCtx>;
}

/// Run one connection's session `fut` accepted on `listener` (done by
/// [`crate::listen::accept_tcp`] and [`crate::listen::accept_unix`]): counts
/// the connection in `connections_total` and `connections_active`, and when
/// it ends, the session in `sessions_total` with the outcome the daemon set
/// with [`session_outcome`] (default `disconnect`: the client went away).
pub fn track_session<F: std::future::Future<Output = ()>>(
    listener: &str,
    fut: F,
) -> impl std::future::Future<Output = ()> + use<F> {
    let guard = connection_opened(listener);
    let ctx = std::sync::Arc::new(SessionCtx {
        listener: guard
            .labels
            .first()
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        outcome: Mutex::new("disconnect"),
    });
    async move {
        SESSION.scope(ctx.clone(), fut).await;
        let outcome = *ctx.outcome.lock().unwrap_or_else(|p| p.into_inner());
        session_ended(&ctx.listener, outcome);
        drop(guard);
    }
}

/// The listener of the session this task runs, or `-` outside one.
fn current_listener() -> String {
    SESSION
        .try_with(|c| c.listener.clone())
        .unwrap_or_else(|_| "-".into())
}

/// Set how the current session ended (`quit`, `timeout`, `refused`,
/// `tls_failed`, `shutdown`, `error`, ...); the last call wins. Does
/// nothing outside a session task.
pub fn session_outcome(outcome: &'static str) {
    let _ = SESSION.try_with(|c| *c.outcome.lock().unwrap_or_else(|p| p.into_inner()) = outcome);
}

/// An open client connection: counted in `connections_total` and
/// `connections_active` until dropped.
#[must_use = "the connection counts as active until the guard is dropped"]
pub struct ConnectionGuard {
    labels: Labels,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        METRICS.connections_active.get_or_create(&self.labels).dec();
    }
}

/// A connection was accepted on `listener`; keep the guard for its lifetime.
pub fn connection_opened(listener: &str) -> ConnectionGuard {
    let m = &*METRICS;
    let labels = bounded(&m.connections, &[("listener", listener)]);
    m.connections.get_or_create(&labels).inc();
    m.connections_active.get_or_create(&labels).inc();
    ConnectionGuard { labels }
}

/// The current session's connection was refused by a limit (`reason`:
/// e.g. `max_connections`, `per_ip`, `rate`); also sets the session outcome
/// `refused`.
pub fn connection_refused(reason: &str) {
    let listener = current_listener();
    inc(
        &METRICS.connections_refused,
        &[("listener", &listener), ("reason", reason)],
    );
    session_outcome("refused");
}

/// A session on `listener` ended with `outcome` (e.g. `quit`, `timeout`,
/// `disconnect`, `error`, `limit`, `shutdown`).
pub fn session_ended(listener: &str, outcome: &str) {
    inc(
        &METRICS.sessions,
        &[("listener", listener), ("outcome", outcome)],
    );
}

/// A TLS handshake in the current session finished (counted by
/// [`crate::conn::Conn::accept_tls`]; a handshake cut by the caller's
/// timeout is not counted); a failure sets the outcome `tls_failed`.
pub fn tls_handshake(ok: bool) {
    let listener = current_listener();
    let result = if ok { "success" } else { "failure" };
    inc(
        &METRICS.tls_handshakes,
        &[("listener", &listener), ("result", result)],
    );
    if !ok {
        session_outcome("tls_failed");
    }
}

/// Result of an authentication attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    Success,
    /// Wrong credentials, unknown user, disabled account, aborted exchange.
    Failure,
    /// The directory or authd could not answer.
    Temporary,
}

impl AuthResult {
    fn as_str(self) -> &'static str {
        match self {
            AuthResult::Success => "success",
            AuthResult::Failure => "failure",
            AuthResult::Temporary => "temporary",
        }
    }
}

/// authd finished an authentication exchange for `service` (`smtp`,
/// `submission`, `pop3`, `imap`, ... as the client daemon says) with SASL
/// `mechanism` (`PLAIN`, `LOGIN`, `SCRAM-SHA-256`; IMAP LOGIN and POP3
/// USER/PASS arrive as `PLAIN`).
pub fn auth_attempt(service: &str, mechanism: &str, result: AuthResult) {
    let mechanism = mechanism.to_ascii_uppercase();
    inc(
        &METRICS.auth_attempts,
        &[
            ("service", service),
            ("mechanism", &mechanism),
            ("result", result.as_str()),
        ],
    );
}

/// The current session's client handed over a message and got its `250`
/// (smtpd: queued; lmtp-delivery: accepted for at least one recipient).
pub fn message_received() {
    let listener = current_listener();
    inc(&METRICS.messages_received, &[("listener", &listener)]);
}

/// queue-manager wrote a message to the spool; `source` is the socket it
/// came through (`private`, `public`).
pub fn message_enqueued(source: &str) {
    inc(&METRICS.messages_enqueued, &[("source", source)]);
}

/// What became of one recipient after a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    Deferred,
    Bounced,
}

/// One recipient was delivered, deferred or bounced by `transport` (`lmtp`,
/// `smtp`, `relay`, `error`) to `domain` (the next hop's domain, for local
/// mail the recipient's).
pub fn delivery(outcome: DeliveryOutcome, transport: &str, domain: &str) {
    let m = &*METRICS;
    let family = match outcome {
        DeliveryOutcome::Delivered => &m.messages_delivered,
        DeliveryOutcome::Deferred => &m.messages_deferred,
        DeliveryOutcome::Bounced => &m.messages_bounced,
    };
    let domain = domain.to_ascii_lowercase();
    inc(family, &[("transport", transport), ("domain", &domain)]);
}

/// One delivery attempt over `transport` took `elapsed`.
pub fn delivery_duration(transport: &str, elapsed: Duration) {
    let m = &*METRICS;
    m.delivery_duration
        .get_or_create(&bounded(&m.delivery_duration, &[("transport", transport)]))
        .observe(elapsed.as_secs_f64());
}

/// The spool's `queue` (`incoming`, `active`, `deferred`, `hold`) holds `count` messages.
pub fn queue_size(queue: &str, count: u64) {
    let m = &*METRICS;
    m.queue_messages
        .get_or_create(&bounded(&m.queue_messages, &[("queue", queue)]))
        .set(i64::try_from(count).unwrap_or(i64::MAX));
}

/// A mail store operation (`deliver`, `open`, `fetch`, `store_flags`,
/// `expunge`, `append`, `copy`, ...) ended with `ok`.
pub fn mailstore_op(operation: &str, ok: bool) {
    let result = if ok { "success" } else { "failure" };
    inc(
        &METRICS.mailstore_operations,
        &[("operation", operation), ("result", result)],
    );
}

/// The check pipeline's `check` (e.g. `spf`, `dnsbl`, `greylist`, `clamav`)
/// gave `action` (e.g. `accept`, `reject`, `tempfail`, `hold`, `discard`,
/// `quarantine`, `add_header`).
pub fn check_verdict(check: &str, action: &str) {
    inc(
        &METRICS.check_verdicts,
        &[("check", check), ("action", action)],
    );
}

/// authd answered a directory lookup of `kind` (`user`, `recipient`) with
/// `result` (`found`, `not_found`, `error`).
pub fn lookup(kind: &str, result: &str) {
    inc(&METRICS.lookups, &[("kind", kind), ("result", result)]);
}

/// Bind `address` for [`serve`] (separate so a bad address fails at start).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| MetricsError::Bind { address, source })
}

/// Serve `GET /metrics` on `listener` until `shutdown` triggers.
pub async fn serve(listener: TcpListener, shutdown: Shutdown) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving metrics");
    }
    loop {
        let permit = tokio::select! {
            _ = shutdown.triggered() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, remote) = tokio::select! {
            _ = shutdown.triggered() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = handle(stream).await {
                tracing::debug!(%remote, error = %e, "metrics request failed");
            }
        });
    }
}

async fn handle(mut stream: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = async {
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if head.len() > MAX_REQUEST_HEAD {
                return Ok(true);
            }
        }
    };
    let complete = match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Ok(r) => r?,
        Err(_) => return Ok(()),
    };
    if !complete {
        return Ok(());
    }
    let (status, content_type, mut body) = respond(&head);
    if content_type == CONTENT_TYPE {
        body = tokio::task::spawn_blocking(render)
            .await
            .unwrap_or_default();
    }
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    if !head.starts_with(b"HEAD ") {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// Status line, content type and body for a request head.
fn respond(head: &[u8]) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if head.len() > MAX_REQUEST_HEAD {
        return ("431 Request Header Fields Too Large", TEXT, String::new());
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_ascii_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", TEXT, "use GET /metrics\n".into());
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" => ("200 OK", CONTENT_TYPE, String::new()),
        "/" => ("200 OK", TEXT, "postern metrics: GET /metrics\n".into()),
        _ => ("404 Not Found", TEXT, "not found; try /metrics\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_cleaned_and_bounded() {
        assert_eq!(label("PLAIN"), "PLAIN");
        assert_eq!(label("a\"b\\c\nd é"), "abcd");
        assert_eq!(label(""), "_empty");
        assert_eq!(label(&"x".repeat(500)).len(), MAX_LABEL_LEN);
        let family = CounterFamily::default();
        for i in 0..MAX_SERIES + 10 {
            family
                .get_or_create(&bounded(&family, &[("domain", &format!("d{i}.test"))]))
                .inc();
        }
        assert_eq!(family.len(), MAX_SERIES + 1);
        let other = vec![("domain", "_other".to_string())];
        assert_eq!(family.get_or_create(&other).get(), 10);
        // A value already present is still counted under its own name.
        let known = bounded(&family, &[("domain", "d1.test")]);
        assert_eq!(known, vec![("domain", "d1.test".to_string())]);
    }

    #[test]
    fn requests_are_routed() {
        assert_eq!(respond(b"GET /metrics HTTP/1.1\r\n\r\n").0, "200 OK");
        assert_eq!(respond(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").0, "200 OK");
        assert_eq!(respond(b"GET /nope HTTP/1.1\r\n\r\n").0, "404 Not Found");
        assert_eq!(
            respond(b"POST /metrics HTTP/1.1\r\n\r\n").0,
            "405 Method Not Allowed"
        );
        assert_eq!(respond(b"\xff\xfe\r\n\r\n").0, "405 Method Not Allowed");
        assert!(
            respond(&vec![b'a'; MAX_REQUEST_HEAD + 1])
                .0
                .starts_with("431")
        );
    }

    #[test]
    fn registry_names_follow_the_daemon() {
        let r = build_registry("queue-manager");
        // Families print nothing until they have a label set.
        delivery(DeliveryOutcome::Delivered, "lmtp", "Example.TEST");
        delivery_duration("lmtp", Duration::from_millis(5));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        assert!(
            out.contains("postern_queue_manager_build_info{version="),
            "{out}"
        );
        assert!(
            out.contains("# TYPE postern_queue_manager_messages_delivered_total counter"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE postern_queue_manager_delivery_duration_seconds histogram"),
            "{out}"
        );
        assert!(
            out.contains("postern_queue_manager_queue_messages{queue=\"hold\"} 0"),
            "{out}"
        );
        assert!(
            out.contains(
                "postern_queue_manager_messages_delivered_total{transport=\"lmtp\",domain=\"example.test\"} 1"
            ),
            "{out}"
        );
        assert!(!out.contains("connections_active"), "{out}");
    }
}
