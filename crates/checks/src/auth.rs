//! Sender authentication (SPF, DKIM, ARC, DMARC) and DKIM signing.
//!
//! (Being written: none of these checks exists yet; `build_*` add nothing.)

use postern_common::Config;

use crate::Pipeline;

/// Add the enabled verification checks, in order: spf, dkim, arc, dmarc.
pub fn build_verify(_cfg: &Config, _p: &mut Pipeline) -> anyhow::Result<()> {
    Ok(())
}

/// Add DKIM signing when enabled (last, so it signs what is queued).
pub fn build_sign(_cfg: &Config, _p: &mut Pipeline) -> anyhow::Result<()> {
    Ok(())
}
