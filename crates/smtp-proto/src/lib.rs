//! postern-smtp-proto (placeholder)
