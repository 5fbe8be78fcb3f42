//! postern-directory: users, domains, aliases, password schemes, SASL.
//! (crate documentation at the end of the work)

pub mod address;
pub mod aliases;
pub mod cache;
pub mod config;
mod directory;
pub mod model;
pub mod sasl;
pub mod scheme;
pub mod secret;
pub mod sql;
pub mod system;

pub use address::Address;
pub use config::{BackendKind, DirectoryConfig, SqlQueries};
pub use directory::{Directory, MAX_ALIAS_DEPTH, MAX_EXPANSION};
pub use model::{
    AuthError, AuthenticatedUser, Delivery, DirectoryError, Domain, DroppedReason, LocalMailbox,
    NewUser, Resolution, User,
};
pub use sasl::{Authenticated, Credentials};
pub use secret::Secret;
