//! postern-pop3d (placeholder)
