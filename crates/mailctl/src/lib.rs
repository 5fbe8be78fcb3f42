//! postern-mailctl (placeholder)
