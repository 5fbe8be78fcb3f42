//! Sliding-window event counters (the per-sender and per-user rates).
//!
//! Each key keeps the instants of its counted events within the window, at
//! most `limit` of them, so memory is bounded by the limit per key and by
//! [`MAX_KEYS`] keys. An event over the limit is refused and not counted:
//! a client that keeps trying is admitted again as soon as its oldest
//! counted event leaves the window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked at once; beyond this, expired keys are dropped, and if the
/// table is still full new keys are admitted without being counted (with a
/// warning) rather than growing without bound.
pub const MAX_KEYS: usize = 100_000;

/// The result of [`Window::hit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// Counted; this many events are now in the window.
    Counted(u32),
    /// Over the limit: `limit` events are already in the window.
    Over(u32),
    /// The table is full: admitted, not counted.
    Untracked,
}

/// Counters for one kind of event.
pub struct Window {
    window: Duration,
    max_keys: usize,
    keys: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Window {
    pub fn new(window: Duration) -> Self {
        Self::with_max_keys(window, MAX_KEYS)
    }

    pub fn with_max_keys(window: Duration, max_keys: usize) -> Self {
        Self {
            window,
            max_keys,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Count one event for `key` at `now`, unless `limit` (> 0) events are
    /// already in the window.
    pub fn hit(&self, key: &str, limit: u32, now: Instant) -> Hit {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.window;
        let expired = |t: &Instant| now.saturating_duration_since(*t) >= window;
        if !keys.contains_key(key) && keys.len() >= self.max_keys {
            keys.retain(|_, q| q.back().is_some_and(|t| !expired(t)));
            if keys.len() >= self.max_keys {
                return Hit::Untracked;
            }
        }
        let q = keys.entry(key.to_string()).or_default();
        while q.front().is_some_and(expired) {
            q.pop_front();
        }
        let n = u32::try_from(q.len()).unwrap_or(u32::MAX);
        if n >= limit {
            return Hit::Over(n);
        }
        q.push_back(now);
        Hit::Counted(n + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window() {
        let w = Window::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // (key, second, expected)
        let steps = [
            ("a", 0, Hit::Counted(1)),
            ("a", 1, Hit::Counted(2)),
            ("a", 2, Hit::Counted(3)),
            ("a", 3, Hit::Over(3)),
            // Another key has its own count.
            ("b", 3, Hit::Counted(1)),
            // Refused events are not counted: at 10 s the first one left.
            ("a", 9, Hit::Over(3)),
            ("a", 10, Hit::Counted(3)),
            ("a", 10, Hit::Over(3)),
            // Two more left by 12 s.
            ("a", 12, Hit::Counted(2)),
            ("a", 30, Hit::Counted(1)),
        ];
        for (key, s, want) in steps {
            assert_eq!(w.hit(key, 3, at(s)), want, "{key} at {s}s");
        }
    }

    #[test]
    fn bounded_keys() {
        let w = Window::with_max_keys(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        assert_eq!(w.hit("a", 5, t0), Hit::Counted(1));
        assert_eq!(w.hit("b", 5, t0), Hit::Counted(1));
        assert_eq!(w.hit("c", 5, t0), Hit::Untracked);
        // Once a and b expire there is room again.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(w.hit("c", 5, later), Hit::Counted(1));
    }
}
