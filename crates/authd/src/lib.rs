//! postern-authd (placeholder)
