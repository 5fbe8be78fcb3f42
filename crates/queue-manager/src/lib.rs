//! postern-queue-manager (placeholder)
