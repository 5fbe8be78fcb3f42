//! Graceful shutdown: stop accepting, let sessions finish, bounded wait.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shared by a daemon's accept loops and sessions. Cloning is cheap.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Begin shutdown (SIGTERM/SIGINT do this).
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when shutdown begins; accept loops `select!` on it.
    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    /// A future for APIs that take a shutdown signal by value (tonic).
    pub fn signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let token = self.token.clone();
        async move { token.cancelled().await }
    }

    /// Spawn a session (or any in-flight work) that shutdown waits for.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    /// Number of tracked tasks still running.
    pub fn in_flight(&self) -> usize {
        self.tracker.len()
    }

    /// Wait up to `timeout` for tracked tasks; true if all finished.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_finished_and_times_out_on_stuck() {
        let s = Shutdown::new();
        let s2 = s.clone();
        s.spawn(async move {
            s2.triggered().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        s.trigger();
        assert!(s.drain(Duration::from_secs(5)).await);

        let s = Shutdown::new();
        s.spawn(async { tokio::time::sleep(Duration::from_secs(3600)).await });
        s.trigger();
        assert!(!s.drain(Duration::from_millis(50)).await);
        assert_eq!(s.in_flight(), 1);
    }
}
