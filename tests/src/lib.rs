//! postern-tests (placeholder)
