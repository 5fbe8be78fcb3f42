//! `[checks.*]`: the smtpd check pipeline (see the `postern-checks` crate).
//!
//! One section per check, each off by default and enabled per listener role
//! (`roles = ["mx"]`, `["submission"]` — which also covers `submissions` —
//! or both). Checks run in a fixed order (cheap, connection-level first):
//! flood, dnsbl, helo, greylist, spf, dkim, arc, dmarc, milter, clamav,
//! audit, then DKIM signing.

use serde::{Deserialize, Serialize};

/// A check section with only `enabled` and `roles` (a check that has more
/// keys replaces its use of this macro with a full struct).
#[macro_export]
macro_rules! check_section {
    ($(#[$m:meta])* $name:ident, $roles:path) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            /// Run this check. Default `false`.
            pub enabled: bool,
            /// Listener roles it runs on.
            pub roles: Vec<CheckRole>,
        }

        impl Default for $name {
            fn default() -> Self {
                Self { enabled: false, roles: $roles() }
            }
        }
    };
}

pub mod audit;
pub mod auth;
pub mod reputation;
pub mod scan;

pub use audit::AuditConfig;
pub use auth::{ArcConfig, DkimConfig, DkimSignConfig, DmarcConfig, SpfConfig};
pub use reputation::{DnsblConfig, FloodConfig, GreylistConfig, HeloConfig};
pub use scan::{ClamavConfig, MilterConfig};

/// Which listener roles a check runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckRole {
    /// Port 25: mail from the Internet.
    Mx,
    /// Ports 587 and 465: authenticated submission.
    Submission,
}

/// `[checks]`: every check's section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChecksConfig {
    pub flood: FloodConfig,
    pub dnsbl: DnsblConfig,
    pub helo: HeloConfig,
    pub greylist: GreylistConfig,
    pub spf: SpfConfig,
    pub dkim: DkimConfig,
    pub arc: ArcConfig,
    pub dmarc: DmarcConfig,
    /// `[[checks.milter]]`: zero or more milters, run in order.
    pub milter: Vec<MilterConfig>,
    pub clamav: ClamavConfig,
    pub audit: AuditConfig,
    pub dkim_sign: DkimSignConfig,
}

/// The default roles of an inbound check: MX only.
pub fn mx_only() -> Vec<CheckRole> {
    vec![CheckRole::Mx]
}

/// The default roles of an outbound check: submission only.
pub fn submission_only() -> Vec<CheckRole> {
    vec![CheckRole::Submission]
}
