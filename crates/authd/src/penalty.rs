//! Brute-force defence: per client IP address, a growing delay on failed
//! logins and a failure-rate limit (Dovecot's `auth_failure_delay` and
//! anvil penalty, in one place).
//!
//! * Each failure from an IP within `window` of the previous one counts; the
//!   failure reply is sent after `base * 2^(n-1)`, capped at `max`.
//! * After `limit` failures in the window, attempts from that IP are refused
//!   without looking at the credentials (after `max`) until the window passes.
//! * A success clears the IP's count.
//!
//! The table is bounded ([`MAX_TRACKED`]): when full, the oldest entries go.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bound on the number of IP addresses tracked at once.
pub const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

/// The penalty table, shared by every exchange.
#[derive(Debug)]
pub struct Penalties {
    base: Duration,
    max: Duration,
    window: Duration,
    limit: u32,
    table: Mutex<HashMap<String, Entry>>,
}

impl Penalties {
    pub fn new(base: Duration, max: Duration, window: Duration, limit: u32) -> Self {
        Self {
            base,
            max,
            window,
            limit,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn live(&self, e: &Entry, now: Instant) -> bool {
        now.duration_since(e.last) < self.window
    }

    /// Whether the IP is over the failure limit (refuse without checking).
    pub fn blocked(&self, ip: &str) -> bool {
        let now = Instant::now();
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table
            .get(ip)
            .is_some_and(|e| self.live(e, now) && e.failures >= self.limit)
    }

    /// Record a failure; returns how long to wait before answering.
    pub fn failure(&self, ip: &str) -> Duration {
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= MAX_TRACKED && !table.contains_key(ip) {
            let window = self.window;
            table.retain(|_, e| now.duration_since(e.last) < window);
            if table.len() >= MAX_TRACKED
                && let Some(oldest) = table
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone())
            {
                table.remove(&oldest);
            }
        }
        let e = table.entry(ip.to_string()).or_insert(Entry {
            failures: 0,
            last: now,
        });
        if !self.live(e, now) {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        self.delay_for(e.failures)
    }

    /// The delay after `n` failures.
    pub fn delay_for(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay for a blocked IP.
    pub fn max_delay(&self) -> Duration {
        self.max
    }

    /// A success clears the IP.
    pub fn success(&self, ip: &str) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.remove(ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_blocks_and_clears() {
        let p = Penalties::new(
            Duration::from_secs(2),
            Duration::from_secs(15),
            Duration::from_secs(60),
            5,
        );
        let delays: Vec<u64> = (0..5).map(|_| p.failure("192.0.2.1").as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 15, 15]);
        assert!(p.blocked("192.0.2.1"));
        assert!(!p.blocked("192.0.2.2"), "other addresses are not affected");
        assert_eq!(p.failure("192.0.2.2").as_secs(), 2);
        p.success("192.0.2.1");
        assert!(!p.blocked("192.0.2.1"));
        assert_eq!(p.failure("192.0.2.1").as_secs(), 2);
    }

    #[test]
    fn window_expiry_resets() {
        let p = Penalties::new(
            Duration::from_millis(1),
            Duration::from_millis(8),
            Duration::from_millis(30),
            2,
        );
        p.failure("a");
        p.failure("a");
        assert!(p.blocked("a"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!p.blocked("a"));
        assert_eq!(p.failure("a"), Duration::from_millis(1));
    }
}
