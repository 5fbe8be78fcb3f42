//! External content scanners: milters, then ClamAV.
//!
//! (Being written: none of these checks exists yet; `build` adds nothing.)

use postern_common::Config;

use crate::Pipeline;

/// Add the enabled scanners, in order: each milter, then clamav.
pub fn build(_cfg: &Config, _p: &mut Pipeline) -> anyhow::Result<()> {
    Ok(())
}
