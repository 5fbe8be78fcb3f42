//! The mailbox side of a POP3 session, behind a small trait so the session
//! logic is testable without a real store.

use std::path::Path;

/// Why a maildrop could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another POP3 session holds the maildrop lock (`-ERR [IN-USE]`).
    #[error("maildrop in use")]
    InUse,
    #[error("mail store error: {0}")]
    Io(String),
}

/// One message as POP3 sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Message {
    /// Size with CRLF line ends (LIST and RETR's octet count).
    pub wire_size: u64,
    /// UIDL string, stable across sessions and equal to IMAP's INBOX UID + UIDVALIDITY.
    pub uidl: String,
}

/// An opened, locked INBOX for one session. Dropping it releases the lock.
pub trait Maildrop: Send {
    fn messages(&self) -> &[Pop3Message];
    /// The stored bytes of message `index` (0-based), for RETR/TOP.
    fn read(&mut self, index: usize) -> std::io::Result<Box<dyn std::io::Read + Send>>;
    /// Remove these messages (0-based), at QUIT in TRANSACTION state.
    fn expunge(&mut self, indexes: &[usize]) -> std::io::Result<()>;
}

/// Opens maildrops.
pub trait Store: Send + Sync + 'static {
    fn open(&self, mailbox: &Path) -> Result<Box<dyn Maildrop>, StoreError>;
}
