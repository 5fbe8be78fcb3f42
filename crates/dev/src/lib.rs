//! postern-dev (placeholder)
