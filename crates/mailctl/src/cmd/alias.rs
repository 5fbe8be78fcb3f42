//! `mailctl alias add|del|list`: virtual aliases (forwardings) in the
//! directory. `@domain` as SOURCE is the domain's catch-all, used only when
//! no user or alias matches the exact address.

use std::path::Path;

use clap::Subcommand;

use super::admin;

#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// Forward SOURCE to one or more destinations. SOURCE is user@domain
    /// or @domain (catch-all); its domain must exist.
    Add {
        source: String,
        #[arg(required = true, num_args = 1..)]
        destinations: Vec<String>,
    },
    /// Delete SOURCE -> DEST, or every destination of SOURCE.
    Del {
        source: String,
        destination: Option<String>,
    },
    /// List aliases as `source destination` lines; SOURCE may be an
    /// address, `@domain` (that catch-all) or a bare domain (all of its
    /// aliases).
    List { source: Option<String> },
}

/// What `alias list FILTER` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    /// Every alias of a domain.
    Domain(String),
    /// One source (`user@dom` or `@dom`).
    Source(String),
}

impl Filter {
    pub fn parse(s: Option<&str>) -> Filter {
        match s.map(|s| s.trim().to_ascii_lowercase()) {
            None => Filter::All,
            Some(s) if s.contains('@') => Filter::Source(s),
            Some(s) => Filter::Domain(s),
        }
    }

    /// The domain to ask the directory for.
    fn domain(&self) -> Option<&str> {
        match self {
            Filter::All => None,
            Filter::Domain(d) => Some(d),
            Filter::Source(s) => s.rsplit_once('@').map(|x| x.1),
        }
    }

    fn keeps(&self, source: &str) -> bool {
        match self {
            Filter::Source(s) => source == s,
            _ => true,
        }
    }
}

pub fn run(file: &Path, cmd: AliasCmd) -> u8 {
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
            AliasCmd::Add {
                source,
                destinations,
            } => {
                let mut code = 0;
                let mut changed = false;
                for dest in &destinations {
                    match dir.alias_add(&source, dest).await {
                        Ok(()) => {
                            println!("alias {} -> {} added", source.trim(), dest.trim());
                            changed = true;
                        }
                        Err(e) => code = admin::report(&e),
                    }
                }
                if changed {
                    admin::cache_hint(&dir);
                }
                code
            }
            AliasCmd::Del {
                source,
                destination,
            } => match dir.alias_del(&source, destination.as_deref()).await {
                Ok(()) => {
                    match &destination {
                        Some(d) => println!("alias {} -> {} deleted", source.trim(), d.trim()),
                        None => println!("alias {} deleted", source.trim()),
                    }
                    admin::cache_hint(&dir);
                    0
                }
                Err(e) => admin::report(&e),
            },
            AliasCmd::List { source } => {
                let filter = Filter::parse(source.as_deref());
                match dir.alias_list(filter.domain()).await {
                    Ok(rows) => {
                        for (src, dst) in rows.iter().filter(|(s, _)| filter.keeps(s)) {
                            println!("{src} {dst}");
                        }
                        0
                    }
                    Err(e) => admin::report(&e),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_filters() {
        assert_eq!(Filter::parse(None), Filter::All);
        let f = Filter::parse(Some("Example.test"));
        assert_eq!(f, Filter::Domain("example.test".into()));
        assert_eq!(f.domain(), Some("example.test"));
        let f = Filter::parse(Some("@example.test"));
        assert_eq!(f.domain(), Some("example.test"));
        assert!(f.keeps("@example.test"));
        assert!(!f.keeps("team@example.test"));
        let f = Filter::parse(Some("Team@example.test"));
        assert!(f.keeps("team@example.test"));
        assert!(!f.keeps("@example.test"));
    }
}
