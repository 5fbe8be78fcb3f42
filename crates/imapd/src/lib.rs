//! postern-imapd (placeholder)
