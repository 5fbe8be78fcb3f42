//! postern-lmtp-delivery (placeholder)
