//! postern-examples (placeholder)
