//! postern-directory (placeholder)
