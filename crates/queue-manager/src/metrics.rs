//! Counting delivery results for `postern_queue_manager_*` (see
//! `postern_common::metrics` and docs/METRICS.md).

use std::time::Duration;

use postern_common::metrics::{self, DeliveryOutcome};

use crate::scheduler::Outcome;

/// The domain part of `address` (the whole string when it has no `@`).
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(_, d)| d)
}

/// One recipient's `outcome` from `transport` for next-hop `domain`.
pub fn record(transport: &str, domain: &str, outcome: &Outcome) {
    let kind = match outcome {
        Outcome::Delivered | Outcome::Relayed { .. } | Outcome::Expanded { .. } => {
            DeliveryOutcome::Delivered
        }
        Outcome::TempFail(_) => DeliveryOutcome::Deferred,
        Outcome::PermFail(_) => DeliveryOutcome::Bounced,
    };
    metrics::delivery(kind, transport, domain);
}

/// One delivery attempt of a group of recipients took `elapsed`.
pub fn attempt(transport: &str, elapsed: Duration) {
    metrics::delivery_duration(transport, elapsed);
}

/// Count the spool's queues for `queue_messages` (a directory listing per
/// queue, at scrape time).
pub fn count_queues(root: &std::path::Path) {
    for queue in ["incoming", "active", "deferred", "hold"] {
        let n = std::fs::read_dir(root.join(queue))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        e.file_name()
                            .to_str()
                            .is_some_and(|n| crate::spool::QueueId::parse(n).is_ok())
                    })
                    .count()
            })
            .unwrap_or(0);
        metrics::queue_size(queue, n as u64);
    }
}
