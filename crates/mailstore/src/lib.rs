//! postern-mailstore (placeholder)
