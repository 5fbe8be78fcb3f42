//! Delivery scheduler: takes messages from `incoming/` and due ones from
//! `deferred/`, hands them to a [`Transport`], records per-recipient
//! results in the status log, retries with exponential backoff and gives
//! up after `maximal_queue_lifetime`.
//!
//! A recipient that bounces (5xx, or a temporary failure past
//! `maximal_queue_lifetime`) gets a DSN to the sender ([`crate::bounce`]),
//! queued durably before its `bounced` status is recorded.

use std::sync::Arc;
use std::time::Duration;

use crate::spool::{self, Message, QueueId, RcptState, RcptStatus, Spool, SpoolError};

/// Result of delivering to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Accepted by a remote SMTP server `remote` ("name[ip]") with `reply`;
    /// `dsn`: it offered DSN (it then reports success itself).
    Relayed {
        remote: String,
        reply: String,
        dsn: bool,
    },
    /// An alias expanded into `targets` recipients, queued anew.
    Expanded {
        targets: usize,
    },
    /// 4xx or connection trouble: try again later.
    TempFail(String),
    /// 5xx: give up on this recipient.
    PermFail(String),
}

impl Outcome {
    /// Delivered, relayed or expanded.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            Outcome::Delivered | Outcome::Relayed { .. } | Outcome::Expanded { .. }
        )
    }
}

/// A way to deliver a message (LMTP, SMTP, ...). `recipients` are indexes
/// into `message.envelope.recipients`; the result must have one outcome per
/// index, in the same order (missing ones count as temporary failures).
#[tonic::async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn deliver(
        &self,
        message: &Message,
        content: &[u8],
        recipients: &[usize],
    ) -> Vec<Outcome>;
}

/// Retry policy (from `[queue]`).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub minimal_backoff: Duration,
    pub maximal_backoff: Duration,
    pub maximal_lifetime: Duration,
}

impl Policy {
    /// Delay after the `attempts`-th failed attempt: minimal * 2^(attempts-1),
    /// at most maximal.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(30);
        self.minimal_backoff
            .saturating_mul(1u32 << shift)
            .min(self.maximal_backoff)
            .max(self.minimal_backoff.min(self.maximal_backoff))
    }
}

/// The scheduler.
pub struct Scheduler {
    pub spool: Spool,
    pub transport: Arc<dyn Transport>,
    pub policy: Policy,
    /// DSN generation; `None` = no DSNs (the retry-policy tests).
    pub bounce: Option<Arc<crate::bounce::Bouncer>>,
}

impl Scheduler {
    /// One pass: deliver everything in `incoming/` and every due message of
    /// `deferred/`, one after the other. Returns how many messages were
    /// attempted. (The daemon uses [`Scheduler::run`], which delivers
    /// concurrently.)
    pub async fn run_once(&self) -> Result<usize, SpoolError> {
        let due = self.due().await?;
        let n = due.len();
        for (id, from) in due {
            if let Err(e) = self.attempt(&id, from).await {
                tracing::error!(queue_id = %id, error = %e, "delivery attempt failed");
            }
        }
        Ok(n)
    }

    /// Messages due now: every one in `incoming/`, and those of `deferred/`
    /// whose next attempt has come.
    pub async fn due(&self) -> Result<Vec<(QueueId, &'static str)>, SpoolError> {
        let spool = self.spool.clone();
        let now = spool::now_unix();
        let due = tokio::task::spawn_blocking(
            move || -> Result<Vec<(QueueId, &'static str)>, SpoolError> {
                let mut due: Vec<_> = spool
                    .list("incoming")?
                    .into_iter()
                    .map(|id| (id, "incoming"))
                    .collect();
                for id in spool.list("deferred")? {
                    let m = match spool.read(&id) {
                        Ok(m) => m,
                        // attempt() moves it to corrupt/ and logs it.
                        Err(SpoolError::Corrupt { .. }) => {
                            due.push((id, "deferred"));
                            continue;
                        }
                        // Moved or removed meanwhile.
                        Err(_) => continue,
                    };
                    let next = m
                        .status
                        .iter()
                        .filter(|s| !s.state.is_final())
                        .map(|s| s.next_attempt_unix)
                        .min()
                        .unwrap_or(0);
                    if next <= now {
                        due.push((id, "deferred"));
                    }
                }
                Ok(due)
            },
        )
        .await
        .map_err(|e| SpoolError::Io(std::io::Error::other(e)))??;
        Ok(due)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Spool) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || f(&spool))
            .await
            .map_err(|e| SpoolError::Io(std::io::Error::other(e)))?
    }

    async fn attempt(&self, id: &QueueId, from: &'static str) -> Result<(), SpoolError> {
        let idc = id.clone();
        let loaded = self
            .blocking(move |s| {
                s.move_to(&idc, from, "active")?;
                match s.read_raw("active", &idc, true) {
                    Ok((envelope, content, size)) => {
                        let status = s.load_status(&idc, envelope.recipients.len())?;
                        Ok(Some((
                            Message {
                                id: idc.clone(),
                                queue: "active",
                                envelope,
                                size,
                                status,
                            },
                            content,
                        )))
                    }
                    Err(SpoolError::Corrupt { reason, .. }) => {
                        tracing::error!(queue_id = %idc, %reason, "corrupt queue file moved to corrupt/");
                        s.move_to(&idc, "active", "corrupt")?;
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        let Some((msg, content)) = loaded else {
            return Ok(());
        };
        let todo: Vec<usize> = (0..msg.status.len())
            .filter(|&i| !msg.status[i].state.is_final())
            .collect();
        let outcomes = if todo.is_empty() {
            Vec::new()
        } else {
            self.transport.deliver(&msg, &content, &todo).await
        };
        let now = spool::now_unix();
        let expired = spool::now_micros().saturating_sub(msg.envelope.arrival_micros)
            >= self.policy.maximal_lifetime.as_micros() as i64;
        let mut updates = Vec::new();
        for (k, &i) in todo.iter().enumerate() {
            let outcome = outcomes
                .get(k)
                .cloned()
                .unwrap_or_else(|| Outcome::TempFail("4.3.0 transport gave no result".into()));
            let prev = &msg.status[i];
            let attempts = prev.attempts.saturating_add(1);
            let rcpt = &msg.envelope.recipients[i].address;
            let st = match outcome {
                Outcome::Delivered => {
                    tracing::info!(queue_id = %id, to = %rcpt, "delivered");
                    RcptStatus {
                        state: RcptState::Delivered,
                        attempts,
                        next_attempt_unix: 0,
                        last_reply: "delivered".into(),
                    }
                }
                Outcome::Relayed { remote, reply, dsn } => {
                    tracing::info!(queue_id = %id, to = %rcpt, relay = %remote, dsn, "delivered");
                    let prefix = if dsn {
                        crate::bounce::RELAYED_DSN_PREFIX
                    } else {
                        crate::bounce::RELAYED_PREFIX
                    };
                    RcptStatus {
                        state: RcptState::Delivered,
                        attempts,
                        next_attempt_unix: 0,
                        last_reply: format!(
                            "{prefix}{}",
                            crate::bounce::from_remote(&remote, &reply)
                        ),
                    }
                }
                Outcome::Expanded { targets } => {
                    tracing::info!(queue_id = %id, to = %rcpt, targets, "expanded");
                    RcptStatus {
                        state: RcptState::Delivered,
                        attempts,
                        next_attempt_unix: 0,
                        last_reply: if targets > 1 {
                            crate::bounce::EXPANDED.into()
                        } else {
                            crate::bounce::FORWARDED.into()
                        },
                    }
                }
                Outcome::PermFail(r) => {
                    tracing::error!(queue_id = %id, to = %rcpt, reply = %r, "bounced");
                    RcptStatus {
                        state: RcptState::Bounced,
                        attempts,
                        next_attempt_unix: 0,
                        last_reply: r,
                    }
                }
                Outcome::TempFail(r) if expired => {
                    tracing::error!(queue_id = %id, to = %rcpt, reply = %r, "bounced: maximal_queue_lifetime exceeded");
                    postern_common::metrics::delivery(
                        postern_common::metrics::DeliveryOutcome::Bounced,
                        "expired",
                        crate::metrics::domain_of(rcpt),
                    );
                    RcptStatus {
                        state: RcptState::Bounced,
                        attempts,
                        next_attempt_unix: 0,
                        last_reply: format!("{}{r}", crate::bounce::EXPIRED_PREFIX),
                    }
                }
                Outcome::TempFail(r) => {
                    let next = now + self.policy.backoff(attempts).as_secs() as i64;
                    tracing::info!(queue_id = %id, to = %rcpt, reply = %r, next_attempt = next, "deferred");
                    RcptStatus {
                        state: RcptState::Deferred,
                        attempts,
                        next_attempt_unix: next,
                        last_reply: r,
                    }
                }
            };
            updates.push((i, st));
        }
        // Bounce hook: queue the DSN before any status becomes final.
        if let Some(bouncer) = &self.bounce {
            let (b, m, policy) = (bouncer.clone(), msg.clone(), self.policy);
            let (n, u) = self
                .blocking(move |s| {
                    let n = crate::bounce::notify(
                        s,
                        &b.settings,
                        &m,
                        &content,
                        &mut updates,
                        now,
                        &policy,
                    );
                    Ok((n, updates))
                })
                .await?;
            updates = u;
            if n > 0 {
                bouncer.mark_queued();
            }
        }
        let all_final = msg.status.iter().enumerate().all(|(i, s)| {
            s.state.is_final() || updates.iter().any(|(j, u)| *j == i && u.state.is_final())
        });
        let idc = id.clone();
        self.blocking(move |s| {
            s.record_status(&idc, &updates)?;
            if all_final {
                tracing::info!(queue_id = %idc, "removed: every recipient final");
                s.delete(&idc)
            } else {
                s.move_to(&idc, "active", "deferred")
            }
        })
        .await
    }

    /// Run passes until `shutdown`, every `interval` or when `wake` fires.
    /// Up to `concurrency` messages (`queue.delivery_concurrency_limit`) are
    /// delivered at the same time; a pass does not wait for slow deliveries,
    /// so new mail is not held up behind them. A message is never attempted
    /// twice at once. On shutdown no new attempt starts and the ones in
    /// progress are awaited (bounded by the daemon's `shutdown_timeout`).
    pub async fn run(
        self,
        interval: Duration,
        concurrency: usize,
        wake: Arc<tokio::sync::Notify>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let me = Arc::new(self);
        let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let inflight: Arc<std::sync::Mutex<std::collections::HashSet<QueueId>>> =
            Default::default();
        let mut tasks = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        'run: loop {
            match me.due().await {
                Ok(due) => {
                    for (id, from) in due {
                        let busy = |f: &dyn Fn(&mut std::collections::HashSet<QueueId>) -> bool| {
                            f(&mut inflight.lock().unwrap_or_else(|e| e.into_inner()))
                        };
                        if busy(&|s| s.contains(&id)) {
                            continue;
                        }
                        let permit = tokio::select! {
                            _ = &mut shutdown => break 'run,
                            p = permits.clone().acquire_owned() => match p {
                                Ok(p) => p,
                                Err(_) => break 'run,
                            },
                        };
                        busy(&|s| s.insert(id.clone()));
                        let (me, inflight, wake) = (me.clone(), inflight.clone(), wake.clone());
                        tasks.spawn(async move {
                            match me.attempt(&id, from).await {
                                Ok(()) => {}
                                // Finished by an attempt that ended after this
                                // pass listed it.
                                Err(SpoolError::NotFound(_)) => {
                                    tracing::debug!(queue_id = %id, "already handled")
                                }
                                Err(e) => {
                                    tracing::error!(queue_id = %id, error = %e, "delivery attempt failed")
                                }
                            }
                            inflight
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&id);
                            drop(permit);
                            // DSNs queued by this attempt are delivered at once.
                            if me.bounce.as_ref().is_some_and(|b| b.take_queued()) {
                                wake.notify_one();
                            }
                        });
                        while tasks.try_join_next().is_some() {}
                    }
                }
                Err(e) => tracing::error!(error = %e, "queue scan failed"),
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(interval) => {}
                _ = wake.notified() => {}
            }
        }
        // SIGTERM drains: deliveries in progress finish and record status.
        while tasks.join_next().await.is_some() {}
    }
}
