//! Client reputation and rate checks: `flood`, `dnsbl`, `helo`, `greylist`.
//!
//! (Being written: none of these checks exists yet; `build` adds nothing.)

use postern_common::Config;

use crate::Pipeline;

/// Add the enabled reputation checks, in order: flood, dnsbl, helo, greylist.
pub fn build(_cfg: &Config, _p: &mut Pipeline) -> anyhow::Result<()> {
    Ok(())
}
