//! Connection limits: total concurrent connections, concurrent connections
//! per client IP, and new connections per client IP per time unit (what
//! Postfix's master process limit and anvil(8) do).
//!
//! [`Limits::admit`] is called once per accepted connection; it either
//! refuses (the caller answers `421 4.7.0` and closes) or returns a
//! [`Permit`] that releases the counts when the session ends.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// The limits (from `[smtpd]`).
#[derive(Debug, Clone)]
pub struct LimitConfig {
    /// All listeners together.
    pub max_connections: usize,
    /// Concurrent per IP; 0 = unlimited.
    pub per_ip: usize,
    /// New connections per IP per `window`; 0 = unlimited.
    pub rate: usize,
    /// Rate window.
    pub window: Duration,
    /// Exempt from `per_ip` and `rate`.
    pub exceptions: Vec<IpNet>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` reached.
    Total,
    /// Too many concurrent connections from this IP.
    PerIp,
    /// Too many new connections from this IP in the window.
    Rate,
}

impl Refusal {
    /// Text of the `421 4.7.0` reply.
    pub fn text(self) -> &'static str {
        match self {
            Refusal::Total => "Error: too many connections, try again later",
            Refusal::PerIp => "Error: too many connections from your address",
            Refusal::Rate => "Error: too many connections from your address, slow down",
        }
    }
}

#[derive(Default)]
struct State {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    recent: HashMap<IpAddr, VecDeque<Instant>>,
}

/// Shared counters.
pub struct Limits {
    cfg: LimitConfig,
    state: Mutex<State>,
}

/// Held for the life of an admitted connection.
pub struct Permit {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = self.limits.lock();
        st.total = st.total.saturating_sub(1);
        if let Some(n) = st.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                st.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Limits {
    /// New counters.
    pub fn new(cfg: LimitConfig) -> Arc<Self> {
        Arc::new(Limits {
            cfg,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The counters stay consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admit a connection from `ip` now.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        self.admit_at(ip, Instant::now())
    }

    /// [`admit`](Self::admit) at a given instant (for tests).
    pub fn admit_at(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Permit, Refusal> {
        let exempt = self.cfg.exceptions.iter().any(|n| n.contains(&ip));
        let mut st = self.lock();
        if st.total >= self.cfg.max_connections {
            return Err(Refusal::Total);
        }
        if !exempt {
            if self.cfg.per_ip > 0 && st.per_ip.get(&ip).copied().unwrap_or(0) >= self.cfg.per_ip {
                return Err(Refusal::PerIp);
            }
            if self.cfg.rate > 0 {
                let window = self.cfg.window;
                let q = st.recent.entry(ip).or_default();
                while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
                    q.pop_front();
                }
                if q.len() >= self.cfg.rate {
                    return Err(Refusal::Rate);
                }
                q.push_back(now);
                // Bound the table: forget addresses whose window has passed.
                if st.recent.len() > 10_000 {
                    st.recent
                        .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
                }
            }
        }
        st.total += 1;
        *st.per_ip.entry(ip).or_default() += 1;
        Ok(Permit {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections currently admitted (all, and from `ip`).
    pub fn current(&self, ip: IpAddr) -> (usize, usize) {
        let st = self.lock();
        (st.total, st.per_ip.get(&ip).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitConfig {
        LimitConfig {
            max_connections: 3,
            per_ip: 2,
            rate: 0,
            window: Duration::from_secs(60),
            exceptions: vec!["10.0.0.0/8".parse().unwrap()],
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
    const X: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 1, 1));

    #[test]
    fn per_ip_and_total_counts_are_released_on_drop() {
        let l = Limits::new(cfg());
        let a1 = l.admit(A).unwrap();
        let _a2 = l.admit(A).unwrap();
        assert_eq!(l.admit(A).err(), Some(Refusal::PerIp));
        let _b1 = l.admit(B).unwrap();
        assert_eq!(l.admit(B).err(), Some(Refusal::Total));
        assert_eq!(l.current(A), (3, 2));
        drop(a1);
        assert_eq!(l.current(A), (2, 1));
        let _a3 = l.admit(A).unwrap();
    }

    #[test]
    fn exceptions_skip_per_ip_but_not_total() {
        let l = Limits::new(cfg());
        let _x: Vec<_> = (0..3).map(|_| l.admit(X).unwrap()).collect();
        assert_eq!(l.admit(X).err(), Some(Refusal::Total));
    }

    #[test]
    fn rate_window_slides() {
        let l = Limits::new(LimitConfig {
            max_connections: 100,
            per_ip: 0,
            rate: 2,
            ..cfg()
        });
        let t0 = Instant::now();
        drop(l.admit_at(A, t0).unwrap());
        drop(l.admit_at(A, t0 + Duration::from_secs(1)).unwrap());
        assert_eq!(
            l.admit_at(A, t0 + Duration::from_secs(2)).err(),
            Some(Refusal::Rate)
        );
        // Another address has its own window.
        drop(l.admit_at(B, t0 + Duration::from_secs(2)).unwrap());
        // After the first connection leaves the window, one more fits.
        drop(l.admit_at(A, t0 + Duration::from_secs(60)).unwrap());
        assert_eq!(
            l.admit_at(A, t0 + Duration::from_secs(60)).err(),
            Some(Refusal::Rate)
        );
        // Exempt addresses are not rate limited.
        for i in 0..5 {
            drop(l.admit_at(X, t0 + Duration::from_secs(i)).unwrap());
        }
    }
}
