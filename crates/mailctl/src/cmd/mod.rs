//! One module per subcommand group or entry point.
pub mod config;
pub mod sendmail;
