//! Client reputation and rate checks: `flood`, `dnsbl`, `helo`, `greylist`
//! (docs/CHECKS.md has the operator's view).
//!
//! * [`flood`]: per-sender and per-user message/recipient rates, and the
//!   settings of smtpd's pre-greeting and tarpit hooks;
//! * [`dnsbl`]: weighted DNS block/allow lists, looked up in parallel at
//!   connect, refused at RCPT (or connect) with `554 5.7.1`;
//! * [`helo`]: HELO sanity and forward-confirmed reverse DNS;
//! * [`greylist`]: triplet greylisting in SQLite.
//!
//! Every check exempts `mynetworks` and authenticated clients (flood: the
//! `[smtpd] smtpd_client_event_limit_exceptions` networks, and it does rate
//! limit authenticated users: that is its point).

pub mod dns;
pub mod dnsbl;
pub mod flood;
pub mod greylist;
pub mod helo;
pub mod rate;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use postern_common::Config;

use crate::Pipeline;

/// `s` for a reply or log line: at most `max` characters, control and
/// non-ASCII characters as `?` (client input never reaches a reply raw).
pub(crate) fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Sessions whose DNSBL score reached `postscreen_dnsbl_allowlist_threshold`
/// (set by `dnsbl`, read by `helo` and `greylist`, which run after it).
#[derive(Default)]
pub struct Allowlisted(Mutex<HashMap<String, i32>>);

impl Allowlisted {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, i32>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record that session `id` is allowlisted with `score`.
    pub fn insert(&self, id: &str, score: i32) {
        self.map().insert(id.to_string(), score);
    }

    /// Forget session `id` (it closed).
    pub fn remove(&self, id: &str) {
        self.map().remove(id);
    }

    /// The score of session `id` if it is allowlisted.
    pub fn get(&self, id: &str) -> Option<i32> {
        self.map().get(id).copied()
    }
}

/// Our names and addresses, for the HELO check: `myhostname`,
/// `mydestination` and the listener addresses.
fn own(cfg: &Config) -> helo::Own {
    let mut names: Vec<String> = std::iter::once(&cfg.global.myhostname)
        .chain(&cfg.global.mydestination)
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    names.dedup();
    let addrs: Vec<IpAddr> = cfg
        .smtpd
        .listener
        .iter()
        .filter_map(|l| l.address.parse::<SocketAddr>().ok())
        .map(|a| dns::canonical(a.ip()))
        .filter(|ip| !ip.is_unspecified())
        .collect();
    helo::Own { names, addrs }
}

/// Add the enabled reputation checks, in order: flood, dnsbl, helo, greylist.
pub fn build(cfg: &Config, p: &mut Pipeline) -> anyhow::Result<()> {
    let c = &cfg.checks;
    let exceptions = cfg
        .smtpd
        .smtpd_client_event_limit_exceptions
        .clone()
        .unwrap_or_else(|| cfg.global.mynetworks.clone());
    if c.flood.enabled {
        flood::install(Some(flood::Hooks::new(&c.flood, exceptions.clone())));
        p.push(
            Arc::new(flood::Flood::new(c.flood.clone(), exceptions)),
            c.flood.roles.clone(),
        );
    } else {
        flood::install(None);
    }
    let allow = Arc::new(Allowlisted::default());
    if c.dnsbl.enabled {
        let check = dnsbl::Dnsbl::new(c.dnsbl.clone(), allow.clone())
            .context("checks.dnsbl.dns_servers")?;
        p.push(Arc::new(check), c.dnsbl.roles.clone());
    }
    if c.helo.enabled {
        let check = helo::Helo::new(c.helo.clone(), own(cfg), allow.clone())
            .context("checks.helo.dns_servers")?;
        p.push(Arc::new(check), c.helo.roles.clone());
    }
    if c.greylist.enabled {
        let path = if c.greylist.database.as_os_str().is_empty() {
            cfg.global.state_directory.join("greylist.sqlite")
        } else {
            c.greylist.database.clone()
        };
        let check = greylist::Greylist::new(c.greylist.clone(), path.clone(), allow)
            .with_context(|| format!("checks.greylist.database: {}", path.display()))?;
        p.push(Arc::new(check), c.greylist.roles.clone());
    }
    Ok(())
}
