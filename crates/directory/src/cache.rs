//! A small TTL cache for directory lookups, negative answers included
//! (callers store `None`/`Unknown` values like any other).
//!
//! Bounded: when full, expired entries are dropped; if it is still full, the
//! whole cache is cleared (simple, and a burst of distinct keys — e.g. a
//! dictionary attack on RCPT — cannot grow memory). [`TtlCache::invalidate_all`]
//! is what a daemon calls on SIGHUP or after a management change.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Cache with a fixed TTL.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    max_entries: usize,
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// A cache; `ttl` zero or `max_entries` zero disables it.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        TtlCache {
            ttl,
            max_entries,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.max_entries > 0
    }

    /// A fresh entry, if any.
    pub fn get(&self, key: &K) -> Option<V> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&self, key: &K, now: Instant) -> Option<V> {
        if !self.enabled() {
            return None;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((t, v)) if now.saturating_duration_since(*t) < self.ttl => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Store a value.
    pub fn insert(&self, key: K, value: V) {
        self.insert_at(key, value, Instant::now())
    }

    fn insert_at(&self, key: K, value: V, now: Instant) {
        if !self.enabled() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max_entries && !map.contains_key(&key) {
            let ttl = self.ttl;
            map.retain(|_, (t, _)| now.saturating_duration_since(*t) < ttl);
            if map.len() >= self.max_entries {
                map.clear();
            }
        }
        map.insert(key, (now, value));
    }

    /// Drop everything (SIGHUP, after a management change).
    pub fn invalidate_all(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Number of entries (fresh or not).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_negative_entries_bound_and_invalidate() {
        let c: TtlCache<String, Option<u32>> = TtlCache::new(Duration::from_secs(10), 3);
        let t0 = Instant::now();
        c.insert_at("a".into(), Some(1), t0);
        c.insert_at("ghost".into(), None, t0);
        assert_eq!(
            c.get_at(&"a".into(), t0 + Duration::from_secs(9)),
            Some(Some(1))
        );
        assert_eq!(
            c.get_at(&"ghost".into(), t0),
            Some(None),
            "negative entry cached"
        );
        assert_eq!(
            c.get_at(&"a".into(), t0 + Duration::from_secs(10)),
            None,
            "expired"
        );
        assert_eq!(c.len(), 1, "expired entry removed on read");
        c.insert_at("b".into(), Some(2), t0);
        c.insert_at("c".into(), Some(3), t0);
        // full (ghost, b, c): a fourth key clears expired ones, then all
        c.insert_at("d".into(), Some(4), t0 + Duration::from_secs(1));
        assert_eq!(c.len(), 1);
        assert_eq!(
            c.get_at(&"d".into(), t0 + Duration::from_secs(1)),
            Some(Some(4))
        );
        c.invalidate_all();
        assert!(c.is_empty());
        let off: TtlCache<u8, u8> = TtlCache::new(Duration::ZERO, 10);
        off.insert(1, 1);
        assert_eq!(off.get(&1), None);
    }
}
