//! postern-directory: users, domains, aliases, password schemes, SASL.
//! (crate documentation at the end of the work)

pub mod aliases;
pub mod sasl;
pub mod scheme;
pub mod secret;

pub use secret::Secret;
