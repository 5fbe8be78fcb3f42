//! `[checks.spf]`, `[checks.dkim]`, `[checks.arc]`, `[checks.dmarc]`,
//! `[checks.dkim_sign]`: sender authentication (RFC 7208, 6376, 8617, 7489)
//! and DKIM signing.

use serde::{Deserialize, Serialize};

use super::{CheckRole, mx_only, submission_only};

crate::check_section!(
    /// `[checks.spf]`: SPF verification of MAIL FROM / HELO (RFC 7208).
    SpfConfig,
    mx_only
);
crate::check_section!(
    /// `[checks.dkim]`: DKIM signature verification (RFC 6376, RFC 8463).
    DkimConfig,
    mx_only
);
crate::check_section!(
    /// `[checks.arc]`: ARC chain verification (RFC 8617).
    ArcConfig,
    mx_only
);
crate::check_section!(
    /// `[checks.dmarc]`: DMARC policy (RFC 7489).
    DmarcConfig,
    mx_only
);
crate::check_section!(
    /// `[checks.dkim_sign]`: DKIM signing of mail from our domains.
    DkimSignConfig,
    submission_only
);
