//! The smtpd check pipeline: stages, verdicts, and one module per check.
//!
//! smtpd builds one [`Pipeline`] from `[checks.*]` at start and opens a
//! [`PipelineSession`] per SMTP connection. At each stage — connect, HELO,
//! MAIL, RCPT, end-of-data — the session asks every check enabled for the
//! listener's role, in the fixed order of [`Pipeline::from_config`], and
//! returns an [`Outcome`]: the verdicts given. The first `Reject` or
//! `TempFail` ends the stage (later checks are not asked: no DNS lookups for
//! a client already refused); the other actions accumulate and smtpd applies
//! them to the message at end-of-data (headers prepended, hold with a
//! reason, discard, redirect, archive copy).
//!
//! A check is a factory ([`Check`]) that opens a per-connection
//! [`CheckSession`], so a check can keep state for a connection (a milter
//! connection, counters) while a stateless check just shares an `Arc`.
//!
//! Every verdict is logged by the pipeline with the session id, the check
//! and the reason; smtpd logs the final disposition with the queue id.

pub mod audit;
pub mod auth;
pub mod pipeline;
pub mod reputation;
pub mod scan;

pub use pipeline::{
    Action, Check, CheckSession, Connection, Envelope, Outcome, Pipeline, PipelineSession, Role,
    Stage, Verdict,
};
