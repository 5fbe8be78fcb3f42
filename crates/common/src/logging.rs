//! Per-daemon logging with `tracing`.
//!
//! Every line carries the daemon name. Two formats:
//!
//! * `human` (default): `2026-11-23T01:02:03.456Z smtpd[1234]: INFO session{id=..}: message key=value`.
//!   When stderr is connected to journald (`JOURNAL_STREAM` is set, as under
//!   systemd), the timestamp is left out (journald adds its own) and each
//!   line starts with a `<N>` syslog priority prefix, which journald turns
//!   into the entry's priority (so `journalctl -p warning -u postern-smtpd` works).
//! * `json`: one object per line with `timestamp`, `level`, `daemon`, `pid`,
//!   `target`, `message`, the event's fields and the fields of the enclosing
//!   spans (`session`, `queue_id`, `user`, ...).
//!
//! The filter (`log.level`) can be changed at run time with [`LogHandle`]
//! (SIGHUP reload).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, reload};

use crate::config::{LogConfig, LogFormat};

/// Changes the log filter of a running daemon.
#[derive(Clone)]
pub struct LogHandle {
    inner: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
}

impl LogHandle {
    /// Replace the filter, e.g. after a SIGHUP with a new `log.level`.
    pub fn set_level(&self, level: &str) -> Result<(), String> {
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        self.inner.reload(filter).map_err(|e| e.to_string())
    }
}

/// Install the global subscriber for `daemon`. Call once, early in `main`.
pub fn init(daemon: &'static str, cfg: &LogConfig) -> LogHandle {
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let format = LineFormat {
        daemon,
        pid: std::process::id(),
        json: cfg.format == LogFormat::Json,
        journald: std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if format.json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(format)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(format)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    LogHandle { inner: handle }
}

/// The line format shared by both modes.
#[derive(Debug, Clone, Copy)]
pub struct LineFormat {
    daemon: &'static str,
    pid: u32,
    json: bool,
    journald: bool,
}

/// syslog priorities, for journald's `<N>` prefix.
fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt).unwrap_or_default()
}

/// Collects an event's fields: `message` apart, the rest in order.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.rest
                .push((field.name(), serde_json::Value::String(text)));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest.push((field.name(), value.into()));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest.push((field.name(), value.into()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest.push((field.name(), value.into()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest.push((field.name(), value.into()));
    }
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("timestamp".into(), now_rfc3339().into());
            obj.insert("level".into(), meta.level().as_str().into());
            obj.insert("daemon".into(), self.daemon.into());
            obj.insert("pid".into(), self.pid.into());
            obj.insert("target".into(), meta.target().into());
            obj.insert("message".into(), fields.message.into());
            if let Some(scope) = ctx.event_scope() {
                for span in scope.from_root() {
                    let ext = span.extensions();
                    if let Some(f) = ext.get::<FormattedFields<N>>()
                        && let Ok(serde_json::Value::Object(map)) =
                            serde_json::from_str::<serde_json::Value>(f)
                    {
                        obj.extend(map);
                    }
                }
            }
            for (k, v) in fields.rest {
                obj.insert(k.into(), v);
            }
            let line = serde_json::Value::Object(obj).to_string();
            return writeln!(w, "{line}");
        }
        let mut line = String::new();
        if self.journald {
            let _ = write!(line, "<{}>", syslog_priority(meta.level()));
        } else {
            let _ = write!(line, "{} ", now_rfc3339());
        }
        let _ = write!(line, "{}[{}]: {:>5} ", self.daemon, self.pid, meta.level());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                line.push_str(span.name());
                let ext = span.extensions();
                if let Some(f) = ext.get::<FormattedFields<N>>()
                    && !f.is_empty()
                {
                    let _ = write!(line, "{{{f}}}");
                }
                line.push_str(": ");
            }
        }
        line.push_str(&fields.message);
        for (k, v) in fields.rest {
            match v {
                serde_json::Value::String(s) => {
                    if s.contains(' ') || s.is_empty() {
                        let _ = write!(line, " {k}={s:?}");
                    } else {
                        let _ = write!(line, " {k}={s}");
                    }
                }
                other => {
                    let _ = write!(line, " {k}={other}");
                }
            }
        }
        writeln!(w, "{line}")
    }
}
