//! Plumbing shared by every postern daemon: configuration ([`config`]),
//! logging ([`logging`]), systemd notification and socket activation
//! ([`systemd`], [`listen`]), signals and graceful shutdown ([`shutdown`],
//! [`daemon`]), TLS ([`tls`]) and time values ([`duration`]).
//!
//! A daemon's `main.rs` is one call to [`daemon::main`].

pub mod checks;
pub mod config;
pub mod conn;
pub mod daemon;
pub mod devcert;
pub mod duration;
pub mod identity;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod shutdown;
pub mod systemd;
pub mod tls;

pub use config::{Config, ConfigError};
pub use daemon::Context;
pub use shutdown::Shutdown;

/// A fresh, hard-to-guess id for a client session, for logs and trace headers.
pub fn session_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}
