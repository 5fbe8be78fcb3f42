//! One module per subcommand group or entry point.
pub mod admin;
pub mod alias;
pub mod aliases;
pub mod backup;
pub mod config;
pub mod dkim;
pub mod dns;
pub mod doctor;
pub mod domain;
pub mod import;
pub mod password;
pub mod pw;
pub mod queue;
pub mod sendmail;
pub mod status;
pub mod user;
