//! `[checks.audit]`: content audit rules over headers, decoded body text and
//! attachment names, inbound and outbound.

use serde::{Deserialize, Serialize};

use super::CheckRole;

fn both() -> Vec<CheckRole> {
    vec![CheckRole::Mx, CheckRole::Submission]
}

crate::check_section!(
    /// `[checks.audit]`: content audit.
    AuditConfig,
    both
);
