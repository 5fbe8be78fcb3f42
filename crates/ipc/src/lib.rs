//! postern-ipc (placeholder)
