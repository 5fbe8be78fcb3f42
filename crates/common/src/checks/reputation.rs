//! `[checks.flood]`, `[checks.dnsbl]`, `[checks.helo]`, `[checks.greylist]`:
//! client reputation and rate limits.

use serde::{Deserialize, Serialize};

use super::{CheckRole, mx_only};

crate::check_section!(
    /// `[checks.flood]`: pre-greeting talk, per-sender and per-user rates, tarpit.
    FloodConfig,
    mx_only
);
crate::check_section!(
    /// `[checks.dnsbl]`: DNS block and allow lists with weights.
    DnsblConfig,
    mx_only
);
crate::check_section!(
    /// `[checks.helo]`: forward-confirmed reverse DNS and HELO sanity.
    HeloConfig,
    mx_only
);
crate::check_section!(
    /// `[checks.greylist]`: greylisting by (client, sender, recipient) triplet.
    GreylistConfig,
    mx_only
);
