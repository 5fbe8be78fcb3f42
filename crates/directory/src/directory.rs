//! [`Directory`]: the async API authd, queue-manager, smtpd and mailctl use.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use crate::address::{Address, normalize_domain};
use crate::aliases::{AliasLineError, AliasTable, AliasTarget};
use crate::cache::TtlCache;
use crate::config::{BackendKind, DirectoryConfig};
use crate::model::{
    AuthError, AuthenticatedUser, Delivery, DirectoryError, Domain, DroppedReason, LocalMailbox,
    NewUser, Resolution, User,
};
use crate::sasl::{Authenticated, Credentials};
use crate::scheme::{self, HashParams, Scheme, ScramSecret, VerifyPolicy};
use crate::secret::Secret;
use crate::sql::{SqlStore, mailbox_path};
use crate::system::SystemStore;

/// Alias recursion bound (Postfix `virtual_alias_recursion_limit` is 1000;
/// real alias chains are a few levels deep).
pub const MAX_ALIAS_DEPTH: usize = 20;
/// Bound on the number of targets one recipient may expand to (Postfix
/// `virtual_alias_expansion_limit`).
pub const MAX_EXPANSION: usize = 1000;

#[derive(Debug)]
enum Store {
    Sql(SqlStore),
    System(SystemStore),
}

/// The directory: a store, the local aliases table, and caches.
#[derive(Debug)]
pub struct Directory {
    cfg: DirectoryConfig,
    store: Store,
    local_domains: Vec<String>,
    origin: String,
    aliases: RwLock<AliasTable>,
    user_cache: TtlCache<String, Option<User>>,
    resolve_cache: TtlCache<String, Resolution>,
    default_scheme: Scheme,
    hash_params: HashParams,
    /// Hash of a random password in the default scheme, for unknown users.
    dummy: Arc<OnceLock<String>>,
}

/// One level of resolution of an address.
enum Node {
    NotOurs,
    Unknown,
    Disabled,
    Mailbox(LocalMailbox),
    Expand(Vec<AliasTarget>),
}

impl Directory {
    /// Open the store (creating a SQLite file if needed) and load the
    /// aliases file. Bad alias lines are logged (warn) and skipped; an
    /// unreadable aliases file is an error.
    pub async fn open(cfg: DirectoryConfig) -> Result<Self, DirectoryError> {
        let default_scheme = Scheme::from_name(&cfg.default_scheme)
            .filter(|s| s.can_hash())
            .ok_or_else(|| {
                DirectoryError::Config(format!(
                    "default_scheme {:?} cannot hash",
                    cfg.default_scheme
                ))
            })?;
        if default_scheme.is_plaintext() && !cfg.allow_plaintext_schemes {
            return Err(DirectoryError::Config(
                "default_scheme PLAIN needs allow_plaintext_schemes".into(),
            ));
        }
        let mut local_domains = Vec::new();
        for d in &cfg.mydestination {
            local_domains.push(
                normalize_domain(d)
                    .map_err(|r| DirectoryError::Config(format!("mydestination {d:?}: {r}")))?,
            );
        }
        if cfg.backend == BackendKind::System && local_domains.is_empty() {
            return Err(DirectoryError::Config(
                "the system backend needs mydestination (the domains its users receive mail for)"
                    .into(),
            ));
        }
        let origin = cfg.origin();
        let store = match cfg.backend {
            BackendKind::System => Store::System(SystemStore::new(
                cfg.passwd_file.clone(),
                cfg.shadow_file.clone(),
                cfg.system_min_uid,
                origin.clone(),
            )),
            _ => Store::Sql(SqlStore::open(&cfg).await?),
        };
        let ttl = Duration::from_secs(cfg.cache_ttl_secs);
        let dir = Directory {
            user_cache: TtlCache::new(ttl, cfg.cache_max_entries),
            resolve_cache: TtlCache::new(ttl, cfg.cache_max_entries),
            cfg,
            store,
            local_domains,
            origin,
            aliases: RwLock::new(AliasTable::default()),
            default_scheme,
            hash_params: HashParams::default(),
            dummy: Arc::new(OnceLock::new()),
        };
        dir.reload_aliases()?;
        Ok(dir)
    }

    /// Cost parameters for new hashes (tests use cheap ones).
    pub fn set_hash_params(&mut self, params: HashParams) {
        self.hash_params = params;
        self.dummy = Arc::new(OnceLock::new());
    }

    /// The configuration in use.
    pub fn config(&self) -> &DirectoryConfig {
        &self.cfg
    }

    /// The SQL store, for management; `Unsupported` for the system backend.
    pub fn sql(&self) -> Result<&SqlStore, DirectoryError> {
        match &self.store {
            Store::Sql(s) => Ok(s),
            Store::System(_) => Err(DirectoryError::Unsupported(
                "system users are managed with useradd/passwd",
            )),
        }
    }

    /// Re-read the aliases file (`newaliases`, SIGHUP) and drop the caches.
    /// Returns the bad lines (also logged).
    pub fn reload_aliases(&self) -> Result<Vec<AliasLineError>, DirectoryError> {
        let parsed = match &self.cfg.aliases_file {
            None => Default::default(),
            Some(p) => crate::aliases::load(p, self.cfg.alias_policy()).map_err(|e| match e {
                crate::aliases::AliasFileError::Io { path, source } => {
                    DirectoryError::Io { path, source }
                }
                crate::aliases::AliasFileError::TooLarge(p) => {
                    DirectoryError::Config(format!("{p} too large"))
                }
            })?,
        };
        for e in &parsed.errors {
            tracing::warn!(file = %e.file, line = e.line, reason = %e.kind, "bad alias line skipped");
        }
        *self.aliases.write().unwrap_or_else(|p| p.into_inner()) = parsed.table;
        self.invalidate_all();
        Ok(parsed.errors)
    }

    /// Drop all cached lookups (SIGHUP, after management changes).
    pub fn invalidate_all(&self) {
        self.user_cache.invalidate_all();
        self.resolve_cache.invalidate_all();
    }

    fn is_local_domain(&self, domain: &str) -> bool {
        self.local_domains.iter().any(|d| d == domain)
    }

    /// Whether `login` may act as other users (SASL authzid).
    pub fn is_master(&self, login: &str) -> bool {
        self.cfg
            .master_users
            .iter()
            .any(|m| m.eq_ignore_ascii_case(login))
    }

    async fn store_user(&self, addr: &Address) -> Result<Option<User>, DirectoryError> {
        match &self.store {
            Store::Sql(s) => s.user(&addr.to_string()).await,
            Store::System(s) => {
                if self.is_local_domain(addr.domain()) {
                    let s = s.clone();
                    let login = addr.local().to_string();
                    tokio::task::spawn_blocking(move || s.user(&login))
                        .await
                        .map_err(|e| DirectoryError::Config(format!("lookup task: {e}")))?
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// Look a user up by address or login (cached, negative answers too).
    /// A login without `@` gets `default_login_domain` (virtual users) or
    /// the origin (system users), as in [`Directory::authenticate`]. No
    /// plus-address stripping: this is the user, not a recipient.
    pub async fn lookup_user(&self, address: &str) -> Result<Option<User>, DirectoryError> {
        let addr = self
            .login_address(address)
            .ok_or_else(|| DirectoryError::bad_address(address, "not an address or login"))?;
        let key = addr.to_string();
        if let Some(hit) = self.user_cache.get(&key) {
            return Ok(hit);
        }
        let u = self.store_user(&addr).await?;
        self.user_cache.insert(key, u.clone());
        Ok(u)
    }

    /// The login as an address: lowercase; `default_login_domain` appended
    /// to a bare login (virtual users), the origin for system users.
    fn login_address(&self, login: &str) -> Option<Address> {
        let login = login.trim();
        if login.contains('@') {
            return Address::parse(login).ok();
        }
        let domain = match self.store {
            Store::System(_) => self.origin.as_str(),
            Store::Sql(_) if !self.cfg.default_login_domain.is_empty() => {
                &self.cfg.default_login_domain
            }
            Store::Sql(_) => return None,
        };
        Address::from_parts(login, domain).ok()
    }

    /// Verify a login and password (SASL PLAIN/LOGIN, IMAP LOGIN, POP3
    /// USER/PASS). Uncached: a password change applies at once.
    ///
    /// Every failure — unknown user, wrong password, disabled account,
    /// unusable hash — is [`AuthError::Failed`], and an unknown user costs
    /// a dummy verification so timing does not tell either. The reason is
    /// logged at `info` without the password. [`AuthError::Temporary`]
    /// means the store could not answer.
    pub async fn authenticate(
        &self,
        login: &str,
        password: &Secret<impl AsRef<[u8]>>,
    ) -> Result<AuthenticatedUser, AuthError> {
        let pw = Secret::new(password.expose().as_ref().to_vec());
        let Some(addr) = self.login_address(login) else {
            self.dummy_verify(pw).await;
            tracing::info!(reason = "bad login syntax", "authentication failed");
            return Err(AuthError::Failed);
        };
        let user = match self.store_user(&addr).await {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(user = %addr, error = %e, "directory lookup failed during authentication");
                return Err(AuthError::Temporary);
            }
        };
        let Some(user) = user else {
            self.dummy_verify(pw).await;
            tracing::info!(user = %addr, reason = "unknown user", "authentication failed");
            return Err(AuthError::Failed);
        };
        let policy = VerifyPolicy {
            allow_plaintext: self.cfg.allow_plaintext_schemes,
        };
        let stored = user.password_hash.expose().clone();
        let result = run_blocking(move || scheme::verify(&stored, &pw, policy)).await;
        let mut verified = match result {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                tracing::info!(user = %addr, reason = %e, "authentication failed");
                return Err(AuthError::Failed);
            }
            None => return Err(AuthError::Temporary),
        };
        if !user.enabled {
            tracing::info!(user = %addr, reason = "account disabled", "authentication failed");
            return Err(AuthError::Failed);
        }
        if !self.domain_allows_login(&addr).await? {
            tracing::info!(user = %addr, reason = "domain disabled", "authentication failed");
            return Err(AuthError::Failed);
        }
        // "needs rehash" is relative to the configured default scheme
        verified.needs_rehash = verified.scheme != self.default_scheme;
        if verified.deprecated {
            tracing::warn!(user = %addr, scheme = %verified.scheme, "login with a deprecated password scheme; rehash it");
        }
        Ok(AuthenticatedUser { user, verified })
    }

    /// Verify against a hash of a random password in the configured scheme
    /// and parameters: an unknown user costs what a known one costs.
    async fn dummy_verify(&self, pw: Secret<Vec<u8>>) {
        let dummy = self.dummy.clone();
        let (scheme, params) = (self.default_scheme, self.hash_params);
        run_blocking(move || {
            let stored = dummy.get_or_init(|| scheme::dummy_hash(scheme, &params));
            let _ = scheme::verify(
                stored,
                &pw,
                VerifyPolicy {
                    allow_plaintext: true,
                },
            );
        })
        .await;
    }

    /// A disabled domain (SQL `domains.enabled = 0`) blocks its users' logins.
    async fn domain_allows_login(&self, addr: &Address) -> Result<bool, AuthError> {
        match &self.store {
            Store::Sql(s) if !self.is_local_domain(addr.domain()) => {
                match s.domain_enabled(addr.domain()).await {
                    Ok(e) => Ok(e != Some(false)),
                    Err(e) => {
                        tracing::error!(user = %addr, error = %e, "directory lookup failed during authentication");
                        Err(AuthError::Temporary)
                    }
                }
            }
            _ => Ok(true),
        }
    }

    /// Finish a SASL PLAIN/LOGIN exchange: verify the password of
    /// `creds.id.authcid`, then apply the authorization rule (an authzid
    /// other than the authcid needs a master user, and the target user must
    /// exist and be enabled). Returns the authenticated user and the
    /// identity the session acts as.
    pub async fn authenticate_credentials(
        &self,
        creds: &Credentials,
    ) -> Result<(AuthenticatedUser, String), AuthError> {
        let user = self
            .authenticate(&creds.id.authcid, &creds.password)
            .await?;
        let acting = self.authorize(&creds.id, &user.user).await?;
        Ok((user, acting))
    }

    /// Apply the authorization rule to a finished exchange (SCRAM's
    /// [`Step::Done`](crate::sasl::Step::Done), or PLAIN/LOGIN after
    /// [`Directory::authenticate`]); `user` is the authenticated user.
    /// Returns the identity the session acts as (an address).
    pub async fn authorize(&self, id: &Authenticated, user: &User) -> Result<String, AuthError> {
        let Some(z) = id.authzid.as_deref() else {
            return Ok(user.address.clone());
        };
        let master = self.is_master(&id.authcid) || self.is_master(&user.address);
        let Some(target) = self.login_address(z) else {
            tracing::info!(user = %user.address, "authorization identity is not an address");
            return Err(AuthError::Failed);
        };
        if target.to_string() == user.address {
            return Ok(user.address.clone());
        }
        if id.authorize(master).is_err() {
            tracing::info!(user = %user.address, authzid = %target, "authorization denied: not a master user");
            return Err(AuthError::Failed);
        }
        match self.store_user(&target).await {
            Ok(Some(u)) if u.enabled => {
                tracing::info!(user = %user.address, authzid = %u.address, "master user login");
                Ok(u.address)
            }
            Ok(_) => {
                tracing::info!(user = %user.address, authzid = %target, "master login to unknown or disabled user");
                Err(AuthError::Failed)
            }
            Err(e) => {
                tracing::error!(error = %e, "directory lookup failed during authorization");
                Err(AuthError::Temporary)
            }
        }
    }

    /// SCRAM-SHA-256 keys of a login, for
    /// [`SaslServer::scram_secret`](crate::sasl::SaslServer::scram_secret).
    /// `Ok(None)` for unknown or disabled users and hashes that cannot
    /// serve SCRAM (the mechanism then fails the exchange without telling
    /// why).
    pub async fn scram_secret(&self, login: &str) -> Result<Option<ScramSecret>, AuthError> {
        let Some(addr) = self.login_address(login) else {
            return Ok(None);
        };
        let user = self.store_user(&addr).await.map_err(|e| {
            tracing::error!(user = %addr, error = %e, "directory lookup failed during authentication");
            AuthError::Temporary
        })?;
        let policy = VerifyPolicy {
            allow_plaintext: self.cfg.allow_plaintext_schemes,
        };
        Ok(user
            .filter(|u| u.enabled)
            .and_then(|u| ScramSecret::from_stored(u.password_hash.expose(), &u.address, policy)))
    }

    /// Transport of a domain (`transport` table), if any.
    pub async fn transport(&self, domain: &str) -> Result<Option<String>, DirectoryError> {
        let d = normalize_domain(domain).map_err(|r| DirectoryError::bad_address(domain, r))?;
        match &self.store {
            Store::Sql(s) => s.transport(&d).await,
            Store::System(_) => Ok(None),
        }
    }

    /// Where mail for `address` goes. Applies, in order: lowercasing,
    /// plus-addressing, local `/etc/aliases` (for `mydestination` domains),
    /// virtual aliases (`forwardings`, exact address with extension, then
    /// without), the user's mailbox, the catch-all `@domain` (only when no
    /// user or alias matched), recursively with loop detection and bounds
    /// ([`MAX_ALIAS_DEPTH`], [`MAX_EXPANSION`]). Duplicates are removed.
    ///
    /// An alias that lists its own address (`a@d -> a@d, b@x`) delivers to
    /// that address's mailbox, as in Postfix. A target already being
    /// expanded higher in the chain is a loop: it is dropped and listed in
    /// [`Delivery::dropped`].
    pub async fn resolve_recipient(&self, address: &str) -> Result<Resolution, DirectoryError> {
        let addr = self
            .parse_target(address)
            .map_err(|r| DirectoryError::bad_address(address, r))?;
        let key = addr.to_string();
        if let Some(hit) = self.resolve_cache.get(&key) {
            return Ok(hit);
        }
        let r = self.resolve_uncached(addr).await?;
        self.resolve_cache.insert(key, r.clone());
        Ok(r)
    }

    /// Parse an address or a bare local name (→ `name@origin`).
    fn parse_target(&self, s: &str) -> Result<Address, String> {
        if s.contains('@') {
            Address::parse(s)
        } else {
            Address::from_parts(s.trim(), &self.origin)
        }
    }

    async fn resolve_uncached(&self, top: Address) -> Result<Resolution, DirectoryError> {
        let top_key = top.to_string();
        let mut out = Delivery::default();
        match self.classify(&top, true).await? {
            Node::NotOurs => return Ok(Resolution::NotOurs),
            Node::Unknown => return Ok(Resolution::Unknown),
            Node::Disabled => return Ok(Resolution::Disabled),
            Node::Mailbox(m) => {
                out.local.push(m);
                return Ok(Resolution::Deliver(out));
            }
            Node::Expand(targets) => {
                // (target, chain of expanded ancestors)
                let mut queue: VecDeque<(AliasTarget, Vec<String>)> = targets
                    .into_iter()
                    .map(|t| (t, vec![top_key.clone()]))
                    .collect();
                let mut seen: HashSet<(String, bool)> = HashSet::new();
                let mut processed = 0usize;
                while let Some((target, chain)) = queue.pop_front() {
                    processed += 1;
                    if processed > MAX_EXPANSION {
                        return Err(DirectoryError::AliasLimit(top_key));
                    }
                    let s = match target {
                        AliasTarget::Command(c) => {
                            if !out.commands.contains(&c) {
                                out.commands.push(c);
                            }
                            continue;
                        }
                        AliasTarget::File(p) => {
                            if !out.files.contains(&p) {
                                out.files.push(p);
                            }
                            continue;
                        }
                        AliasTarget::Address(s) => s,
                    };
                    let Ok(addr) = self.parse_target(&s) else {
                        out.dropped.push((s, DroppedReason::BadAddress));
                        continue;
                    };
                    let key = addr.to_string();
                    // Self-reference: the target is the alias being expanded,
                    // extensions aside (`a+x@d` expanded through `a@d -> a@d, b@x`).
                    let parent = chain.last().map(String::as_str).unwrap_or("");
                    let self_ref = self.without_extension(&key) == self.without_extension(parent);
                    if !self_ref && chain.contains(&key) {
                        tracing::warn!(recipient = %top_key, target = %key, "alias loop, target dropped");
                        out.dropped.push((key, DroppedReason::Loop));
                        continue;
                    }
                    if !seen.insert((key.clone(), self_ref)) {
                        continue; // reached twice through different aliases
                    }
                    if chain.len() > MAX_ALIAS_DEPTH {
                        return Err(DirectoryError::AliasLimit(top_key));
                    }
                    match self.classify(&addr, !self_ref).await? {
                        Node::NotOurs => {
                            if !out.remote.contains(&key) {
                                out.remote.push(key);
                            }
                        }
                        Node::Unknown => out.dropped.push((key, DroppedReason::Unknown)),
                        Node::Disabled => out.dropped.push((key, DroppedReason::Disabled)),
                        Node::Mailbox(m) => {
                            if !out.local.iter().any(|l| l.user == m.user) {
                                out.local.push(m);
                            }
                        }
                        Node::Expand(ts) => {
                            let mut chain = chain.clone();
                            chain.push(key);
                            queue.extend(ts.into_iter().map(|t| (t, chain.clone())));
                        }
                    }
                }
            }
        }
        Ok(Resolution::Deliver(out))
    }

    fn without_extension(&self, address: &str) -> String {
        match Address::parse(address) {
            Ok(a) => match a.strip_extension(&self.cfg.recipient_delimiter) {
                Some((base, _)) => base.to_string(),
                None => a.to_string(),
            },
            Err(_) => address.to_string(),
        }
    }

    fn mailbox(user: &User, extension: Option<String>) -> LocalMailbox {
        LocalMailbox {
            user: user.address.clone(),
            mailbox: user.mailbox.clone(),
            quota_bytes: user.quota_bytes,
            uid: user.uid,
            gid: user.gid,
            host: user.host.clone(),
            extension,
        }
    }

    /// One level of resolution.
    async fn classify(&self, addr: &Address, aliases: bool) -> Result<Node, DirectoryError> {
        let (base, ext) = match addr.strip_extension(&self.cfg.recipient_delimiter) {
            Some((b, e)) => (b, Some(e)),
            None => (addr.clone(), None),
        };
        let domain = addr.domain();
        let local = self.is_local_domain(domain);
        if !local {
            let enabled = match &self.store {
                Store::Sql(s) => s.domain_enabled(domain).await?,
                Store::System(_) => None,
            };
            match enabled {
                None => return Ok(Node::NotOurs),
                Some(false) => return Ok(Node::Disabled),
                Some(true) => {}
            }
        }
        if aliases {
            if local {
                let table = self.aliases.read().unwrap_or_else(|p| p.into_inner());
                for key in [addr.local(), base.local()] {
                    if let Some(t) = table.get(key) {
                        return Ok(Node::Expand(t.to_vec()));
                    }
                }
            }
            if let Store::Sql(s) = &self.store {
                let mut keys = vec![addr.to_string()];
                if ext.is_some() {
                    keys.push(base.to_string());
                }
                for k in keys {
                    let f = s.forwardings(&k).await?;
                    if !f.is_empty() {
                        return Ok(Node::Expand(
                            f.into_iter().map(AliasTarget::Address).collect(),
                        ));
                    }
                }
            }
        }
        if let Some(u) = self.store_user(&base).await? {
            if !u.enabled {
                return Ok(Node::Disabled);
            }
            return Ok(Node::Mailbox(Self::mailbox(&u, ext)));
        }
        if aliases && let Store::Sql(s) = &self.store {
            let f = s.forwardings(&format!("@{domain}")).await?;
            if !f.is_empty() {
                let targets = f
                    .into_iter()
                    .map(|t| match t.strip_prefix('@') {
                        // `@dom -> @other`: same local part, other domain
                        Some(other) => AliasTarget::Address(format!("{}@{other}", addr.local())),
                        None => AliasTarget::Address(t),
                    })
                    .collect();
                return Ok(Node::Expand(targets));
            }
        }
        Ok(Node::Unknown)
    }

    // ------------------------------------------------- management (mailctl)

    /// Add a domain.
    pub async fn domain_add(&self, domain: &str) -> Result<Domain, DirectoryError> {
        let r = self.sql()?.domain_add(domain).await;
        self.invalidate_all();
        r
    }

    /// Delete an empty domain.
    pub async fn domain_del(&self, domain: &str) -> Result<(), DirectoryError> {
        let r = self.sql()?.domain_del(domain).await;
        self.invalidate_all();
        r
    }

    /// All domains.
    pub async fn domain_list(&self) -> Result<Vec<Domain>, DirectoryError> {
        self.sql()?.domain_list().await
    }

    /// Add a user; the password is hashed with `default_scheme`.
    pub async fn user_add(&self, new: NewUser) -> Result<User, DirectoryError> {
        let store = self.sql()?;
        let addr = SqlStore::parse_address(&new.address)?;
        if new.mailbox.is_none() {
            // The local part becomes a path component through
            // mailbox_template: no separators, no dot files, no "..".
            let l = addr.local();
            if l.contains(['/', '\\']) || l.starts_with('.') {
                return Err(DirectoryError::bad_address(
                    &new.address,
                    "local part unsafe in a mailbox path; give an explicit mailbox",
                ));
            }
        }
        let hash = self.hash_blocking(new.password).await?;
        let address = addr.to_string();
        let maildir = new
            .mailbox
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        let user = User {
            login: address.clone(),
            mailbox: new
                .mailbox
                .clone()
                .unwrap_or_else(|| mailbox_path(&self.cfg.mailbox_template, &address)),
            address,
            password_hash: Secret::new(hash),
            quota_bytes: new.quota_bytes,
            enabled: true,
            host: new.host,
            uid: new.uid,
            gid: new.gid,
        };
        let r = store.user_insert(&user, maildir.as_deref()).await;
        self.invalidate_all();
        r.map(|()| user)
    }

    async fn hash_blocking(&self, password: Secret<String>) -> Result<String, DirectoryError> {
        let scheme = self.default_scheme;
        let params = self.hash_params;
        tokio::task::spawn_blocking(move || scheme::hash_with(scheme, &password, &params))
            .await
            .map_err(|e| DirectoryError::Config(format!("hash task: {e}")))?
            .map_err(DirectoryError::from)
    }

    /// Delete a user.
    pub async fn user_del(&self, address: &str) -> Result<(), DirectoryError> {
        let addr = SqlStore::parse_address(address)?;
        let r = self.sql()?.user_del(&addr.to_string()).await;
        self.invalidate_all();
        r
    }

    /// Set a new password.
    pub async fn user_passwd(
        &self,
        address: &str,
        password: Secret<String>,
    ) -> Result<(), DirectoryError> {
        let addr = SqlStore::parse_address(address)?;
        let store = self.sql()?;
        let hash = self.hash_blocking(password).await?;
        let r = store.user_set_hash(&addr.to_string(), hash).await;
        self.invalidate_all();
        r
    }

    /// Enable or disable a user.
    pub async fn user_set_enabled(
        &self,
        address: &str,
        enabled: bool,
    ) -> Result<(), DirectoryError> {
        let addr = SqlStore::parse_address(address)?;
        let r = self
            .sql()?
            .user_set_enabled(&addr.to_string(), enabled)
            .await;
        self.invalidate_all();
        r
    }

    /// Set a user's quota.
    pub async fn user_set_quota(
        &self,
        address: &str,
        quota_bytes: u64,
    ) -> Result<(), DirectoryError> {
        let addr = SqlStore::parse_address(address)?;
        let r = self
            .sql()?
            .user_set_quota(&addr.to_string(), quota_bytes)
            .await;
        self.invalidate_all();
        r
    }

    /// Users, optionally of one domain.
    pub async fn user_list(&self, domain: Option<&str>) -> Result<Vec<User>, DirectoryError> {
        self.sql()?.user_list(domain).await
    }

    /// One user, uncached; `UnknownUser` if absent.
    pub async fn user_show(&self, address: &str) -> Result<User, DirectoryError> {
        let addr = SqlStore::parse_address(address)?;
        self.store_user(&addr)
            .await?
            .ok_or_else(|| DirectoryError::UnknownUser(addr.to_string()))
    }

    /// Add `source -> destination`. `source` is `user@dom` or `@dom`
    /// (catch-all) with `dom` in the directory; `destination` an address
    /// (or `@otherdom` for a catch-all domain rewrite).
    pub async fn alias_add(&self, source: &str, destination: &str) -> Result<(), DirectoryError> {
        let (src, dst) = self.alias_keys(source, Some(destination))?;
        let r = self
            .sql()?
            .alias_add(&src, dst.as_deref().unwrap_or(""))
            .await;
        self.invalidate_all();
        r
    }

    /// Delete one alias row, or all rows of `source`.
    pub async fn alias_del(
        &self,
        source: &str,
        destination: Option<&str>,
    ) -> Result<(), DirectoryError> {
        let (src, dst) = self.alias_keys(source, destination)?;
        let r = self.sql()?.alias_del(&src, dst.as_deref()).await;
        self.invalidate_all();
        r
    }

    /// Alias rows, optionally of one domain.
    pub async fn alias_list(
        &self,
        domain: Option<&str>,
    ) -> Result<Vec<(String, String)>, DirectoryError> {
        self.sql()?.alias_list(domain).await
    }

    /// Set a domain's transport.
    pub async fn transport_set(&self, domain: &str, transport: &str) -> Result<(), DirectoryError> {
        let r = self.sql()?.transport_set(domain, transport).await;
        self.invalidate_all();
        r
    }

    /// Add a user whose password is already hashed (`mailctl config
    /// apply`, `restore`): the `{SCHEME}` hash is stored as given. The
    /// mailbox is stored only when it differs from `mailbox_template`'s.
    pub async fn user_add_hashed(&self, user: &User) -> Result<(), DirectoryError> {
        let store = self.sql()?;
        let addr = SqlStore::parse_address(&user.address)?;
        let mut user = user.clone();
        user.address = addr.to_string();
        user.login = user.address.clone();
        let templated = mailbox_path(&self.cfg.mailbox_template, &user.address);
        let explicit =
            (user.mailbox != templated).then(|| user.mailbox.to_string_lossy().into_owned());
        let r = store.user_insert(&user, explicit.as_deref()).await;
        self.invalidate_all();
        r
    }

    /// Store an already computed `{SCHEME}` hash (`mailctl config apply`).
    pub async fn user_set_password_hash(
        &self,
        address: &str,
        hash: &str,
    ) -> Result<(), DirectoryError> {
        let addr = SqlStore::parse_address(address)?;
        let r = self
            .sql()?
            .user_set_hash(&addr.to_string(), hash.to_string())
            .await;
        self.invalidate_all();
        r
    }

    /// Remove a domain's transport (back to the default routing).
    pub async fn transport_del(&self, domain: &str) -> Result<(), DirectoryError> {
        let r = self.sql()?.transport_del(domain).await;
        self.invalidate_all();
        r
    }

    fn alias_keys(
        &self,
        source: &str,
        destination: Option<&str>,
    ) -> Result<(String, Option<String>), DirectoryError> {
        let src = match source.trim().strip_prefix('@') {
            Some(d) => format!(
                "@{}",
                normalize_domain(d).map_err(|r| DirectoryError::bad_address(source, r))?
            ),
            None => SqlStore::parse_address(source)?.to_string(),
        };
        let dst = match destination {
            None => None,
            Some(d) => Some(match d.trim().strip_prefix('@') {
                Some(dom) if src.starts_with('@') => {
                    format!(
                        "@{}",
                        normalize_domain(dom).map_err(|r| DirectoryError::bad_address(d, r))?
                    )
                }
                _ => SqlStore::parse_address(d)?.to_string(),
            }),
        };
        Ok((src, dst))
    }
}

/// Run CPU-heavy password work off the async threads. `None` if the task
/// panicked or was cancelled.
async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}
