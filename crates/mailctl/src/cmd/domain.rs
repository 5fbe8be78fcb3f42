//! `mailctl domain add|del|list`.

use std::path::Path;

use clap::Subcommand;

use super::admin;

#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// Add a domain (mail for it is then accepted for its users and aliases).
    Add { domain: String },
    /// Delete a domain; refused while it still has users or aliases.
    Del { domain: String },
    /// List the domains, one per line.
    List {
        /// Also print `enabled`/`disabled` and the transport, if any.
        #[arg(short, long)]
        long: bool,
    },
}

pub fn run(file: &Path, cmd: DomainCmd) -> u8 {
    let cfg = match admin::load_config(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    admin::block_on(async move {
        let dir = match admin::open(&cfg, file).await {
            Ok(d) => d,
            Err(code) => return code,
        };
        match cmd {
            DomainCmd::Add { domain } => match dir.domain_add(&domain).await {
                Ok(d) => {
                    println!("domain {} added", d.name);
                    admin::cache_hint(&dir);
                    0
                }
                Err(e) => admin::report(&e),
            },
            DomainCmd::Del { domain } => match dir.domain_del(&domain).await {
                Ok(()) => {
                    println!("domain {} deleted", domain.trim().to_ascii_lowercase());
                    admin::cache_hint(&dir);
                    0
                }
                Err(e) => admin::report(&e),
            },
            DomainCmd::List { long } => match dir.domain_list().await {
                Ok(list) => {
                    for d in list {
                        if long {
                            println!(
                                "{} {} {}",
                                d.name,
                                if d.enabled { "enabled" } else { "disabled" },
                                d.transport.as_deref().unwrap_or("-")
                            );
                        } else {
                            println!("{}", d.name);
                        }
                    }
                    0
                }
                Err(e) => admin::report(&e),
            },
        }
    })
}
