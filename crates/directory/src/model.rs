//! Directory records, resolution results and errors.

use std::path::PathBuf;

use crate::scheme::{SchemeError, Verified};
use crate::secret::Secret;

/// A mailbox user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Address (lowercase); for system users `login@origin`.
    pub address: String,
    /// Login name for system users (the Unix name); the address otherwise.
    pub login: String,
    /// Stored password hash (`{SCHEME}...`). Debug prints `***`.
    pub password_hash: Secret<String>,
    /// Quota in bytes; 0 = no quota.
    pub quota_bytes: u64,
    /// Login and delivery allowed.
    pub enabled: bool,
    /// Maildir path.
    pub mailbox: PathBuf,
    /// Backend node holding the mailbox (proxying), if not this one.
    pub host: Option<String>,
    /// Unix uid to deliver as, if the store says.
    pub uid: Option<u32>,
    /// Unix gid to deliver as, if the store says.
    pub gid: Option<u32>,
}

/// A domain row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Name (lowercase).
    pub name: String,
    /// Mail for it accepted.
    pub enabled: bool,
    /// Transport (`lmtp:unix:/path`, `smtp:[relay]:25`, ...), if set.
    pub transport: Option<String>,
}

/// New user for [`crate::Directory::user_add`].
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Address; its domain must exist.
    pub address: String,
    /// Password (hashed with the configured default scheme).
    pub password: Secret<String>,
    /// Quota in bytes, 0 = none.
    pub quota_bytes: u64,
    /// Mailbox path; `None` = from `mailbox_template`.
    pub mailbox: Option<PathBuf>,
    /// Backend host.
    pub host: Option<String>,
    /// uid.
    pub uid: Option<u32>,
    /// gid.
    pub gid: Option<u32>,
}

impl NewUser {
    /// A user with defaults for everything but address and password.
    pub fn new(address: &str, password: Secret<String>) -> Self {
        NewUser {
            address: address.into(),
            password,
            quota_bytes: 0,
            mailbox: None,
            host: None,
            uid: None,
            gid: None,
        }
    }
}

/// A local mailbox a recipient resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMailbox {
    /// The user's address (after alias expansion, without extension).
    pub user: String,
    /// Maildir path.
    pub mailbox: PathBuf,
    /// Quota bytes (0 = none).
    pub quota_bytes: u64,
    /// uid.
    pub uid: Option<u32>,
    /// gid.
    pub gid: Option<u32>,
    /// Backend host, when the mailbox lives on another node.
    pub host: Option<String>,
    /// Plus-address extension of the original recipient (`tag` of
    /// `user+tag@dom`), when it reached this mailbox directly.
    pub extension: Option<String>,
}

/// Why one target of an expansion was dropped (the caller bounces or logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DroppedReason {
    /// Our domain, no such user.
    Unknown,
    /// User or domain disabled.
    Disabled,
    /// Alias loop: the address was already being expanded and has no
    /// mailbox of its own.
    Loop,
    /// Not a valid address.
    BadAddress,
}

/// Where mail for one recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Not one of our domains (relay only if the client may relay).
    NotOurs,
    /// One of our domains, but no such user or alias.
    Unknown,
    /// The user or its domain is disabled.
    Disabled,
    /// Deliver to these (duplicates removed).
    Deliver(Delivery),
}

/// The targets of a recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Local mailboxes.
    pub local: Vec<LocalMailbox>,
    /// Addresses to relay to (not ours).
    pub remote: Vec<String>,
    /// Commands from the local aliases file (`|prog`), when allowed.
    pub commands: Vec<String>,
    /// Files from the local aliases file, when allowed.
    pub files: Vec<PathBuf>,
    /// Alias targets that could not be delivered, with the reason.
    pub dropped: Vec<(String, DroppedReason)>,
}

impl Delivery {
    /// Whether nothing would receive the message.
    pub fn is_empty(&self) -> bool {
        self.local.is_empty()
            && self.remote.is_empty()
            && self.commands.is_empty()
            && self.files.is_empty()
    }
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    /// The user (hash included, Debug-safe).
    pub user: User,
    /// Scheme details: `deprecated` (already logged as a warning),
    /// `needs_rehash` (not in the configured `default_scheme`: the caller
    /// may call `Directory::user_passwd` with the password it now knows;
    /// nothing is rehashed automatically).
    pub verified: Verified,
}

/// Login failure. `Failed` never says whether the user exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Wrong login or password, or the account is disabled.
    #[error("authentication failed")]
    Failed,
    /// The directory could not answer (database down...): tell the client
    /// to try later, do not count it as a failed attempt.
    #[error("temporary directory failure")]
    Temporary,
}

/// Directory and management errors.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Not a valid address or domain.
    #[error("bad address {address:?}: {reason}")]
    BadAddress {
        /// the input
        address: String,
        /// why
        reason: String,
    },
    /// The domain is not in the directory.
    #[error("unknown domain {0:?}")]
    UnknownDomain(String),
    /// The user is not in the directory.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// The alias is not in the directory.
    #[error("unknown alias {0:?}")]
    UnknownAlias(String),
    /// Already exists.
    #[error("{0:?} already exists")]
    Duplicate(String),
    /// The domain still has users or aliases.
    #[error("domain {0:?} still has users or aliases")]
    DomainNotEmpty(String),
    /// Alias expansion went past a bound.
    #[error("alias expansion of {0:?} exceeds the depth or size limit")]
    AliasLimit(String),
    /// Password scheme problem.
    #[error(transparent)]
    Scheme(#[from] SchemeError),
    /// Database error.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// File error (aliases, passwd, shadow).
    #[error("{path}: {source}")]
    Io {
        /// the file
        path: String,
        /// the error
        source: std::io::Error,
    },
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// The backend cannot do this (e.g. adding users to `system`).
    #[error("not supported by this backend: {0}")]
    Unsupported(&'static str),
}

impl DirectoryError {
    pub(crate) fn bad_address(address: &str, reason: impl Into<String>) -> Self {
        DirectoryError::BadAddress {
            address: address.chars().take(300).collect(),
            reason: reason.into(),
        }
    }
}
