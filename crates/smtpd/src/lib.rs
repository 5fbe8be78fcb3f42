//! postern-smtpd (placeholder)
