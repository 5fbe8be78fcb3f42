//! Sender authentication (SPF, DKIM, ARC, DMARC) and DKIM signing, with the
//! mail-auth crate over hickory-resolver.
//!
//! * `verify` — one pipeline check named `auth` that runs the enabled parts
//!   of `[checks.spf]`, `[checks.dkim]`, `[checks.arc]` and `[checks.dmarc]`
//!   (each on its own `roles`): they share their results (DMARC needs SPF
//!   and DKIM), so the DNS lookups and the signature checks happen once.
//!   SPF at MAIL FROM, the rest at end of data; one
//!   `Authentication-Results` header (RFC 8601, authserv-id `myhostname`)
//!   carries every result. Its verdicts name the section (`spf`, `dmarc`,
//!   and `auth` for the header).
//! * `sign` — `[checks.dkim_sign]`: a DKIM-Signature for mail whose From
//!   domain has an active key, from authenticated or `mynetworks` clients.
//! * `keys` — the key directory `mailctl dkim` manages.
//!
//! DNS: `queue.dns_servers` (the resolver queue-manager uses; empty = the
//! system's). A lookup that fails temporarily is recorded as `temperror`
//! and never turns into a 5xx.

pub mod keys;
mod resolver;
mod sign;
mod verify;

use std::sync::Arc;

use postern_common::Config;

use crate::{Pipeline, Role};

pub use resolver::{OrgDomains, resolver_from_config};
pub use sign::DkimSignCheck;
pub use verify::AuthCheck;

/// Add the sender-authentication check when any of spf, dkim, arc, dmarc is
/// enabled (one check, see the module documentation).
pub fn build_verify(cfg: &Config, p: &mut Pipeline) -> anyhow::Result<()> {
    let c = &cfg.checks;
    let mut roles = Vec::new();
    for (enabled, r) in [
        (c.spf.enabled, &c.spf.roles),
        (c.dkim.enabled, &c.dkim.roles),
        (c.arc.enabled, &c.arc.roles),
        (c.dmarc.enabled, &c.dmarc.roles),
    ] {
        if enabled {
            for role in r {
                if !roles.contains(role) {
                    roles.push(*role);
                }
            }
        }
    }
    if roles.is_empty() {
        return Ok(());
    }
    let check = AuthCheck::from_config(cfg)?;
    p.push(Arc::new(check), roles);
    Ok(())
}

/// Add DKIM signing when enabled (last, so it signs what is queued).
pub fn build_sign(cfg: &Config, p: &mut Pipeline) -> anyhow::Result<()> {
    let c = &cfg.checks.dkim_sign;
    if !c.enabled {
        return Ok(());
    }
    let check = DkimSignCheck::from_config(cfg);
    p.push(Arc::new(check), c.roles.clone());
    Ok(())
}

/// Whether a section's roles include the connection's role.
fn on(enabled: bool, roles: &[postern_common::checks::CheckRole], role: Role) -> bool {
    enabled && role.in_roles(roles)
}
