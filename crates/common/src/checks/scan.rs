//! `[[checks.milter]]` and `[checks.clamav]`: external content scanners.

use serde::{Deserialize, Serialize};

use super::{CheckRole, mx_only};

crate::check_section!(
    /// `[[checks.milter]]`: one milter (Sendmail/Postfix milter protocol).
    MilterConfig,
    mx_only
);
crate::check_section!(
    /// `[checks.clamav]`: virus scanning through clamd's INSTREAM protocol.
    ClamavConfig,
    mx_only
);
