//! postern-pop3-proto (placeholder)
