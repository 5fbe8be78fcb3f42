//! Content audit.
//!
//! (Being written: the check does not exist yet; `build` adds nothing.)

use postern_common::Config;

use crate::Pipeline;

/// Add the audit check when enabled.
pub fn build(_cfg: &Config, _p: &mut Pipeline) -> anyhow::Result<()> {
    Ok(())
}
