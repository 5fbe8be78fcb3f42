//! postern-common (placeholder)
