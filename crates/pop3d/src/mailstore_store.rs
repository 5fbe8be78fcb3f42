//! [`Store`] over the `mailstore` crate: INBOX of the user's Maildir, the
//! POP3 lock, sizes and UIDLs from the index (no message bodies read).

use std::path::Path;

use mailstore::{Mailbox, Pop3Lock, StoreError as MsError, pop3_uidl};

use crate::store::{Maildrop, Pop3Message, Store, StoreError};

/// The production store.
pub struct MailstoreStore;

struct Opened {
    // Field order: the mailbox first, the lock is released last.
    mailbox: Mailbox,
    list: Vec<Pop3Message>,
    uids: Vec<u32>,
    _lock: Pop3Lock,
}

impl Store for MailstoreStore {
    fn open(&self, mailbox: &Path) -> Result<Box<dyn Maildrop>, StoreError> {
        let lock = match Pop3Lock::acquire(mailbox) {
            Ok(l) => l,
            Err(MsError::Pop3InUse) => return Err(StoreError::InUse),
            Err(e) => return Err(StoreError::Io(e.to_string())),
        };
        let mb = Mailbox::open(mailbox).map_err(|e| StoreError::Io(e.to_string()))?;
        let validity = mb.uidvalidity();
        let list = mb
            .messages()
            .iter()
            .map(|m| Pop3Message {
                wire_size: m.vsize,
                uidl: pop3_uidl(m.uid, validity),
            })
            .collect();
        let uids = mb.messages().iter().map(|m| m.uid).collect();
        Ok(Box::new(Opened {
            mailbox: mb,
            list,
            uids,
            _lock: lock,
        }))
    }
}

impl Maildrop for Opened {
    fn messages(&self) -> &[Pop3Message] {
        &self.list
    }

    fn read(&mut self, index: usize) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        let uid = *self.uids.get(index).ok_or(std::io::ErrorKind::NotFound)?;
        let f = self
            .mailbox
            .open_message(uid)
            .map_err(std::io::Error::other)?;
        Ok(Box::new(f))
    }

    fn expunge(&mut self, indexes: &[usize]) -> std::io::Result<()> {
        let uids: Vec<u32> = indexes
            .iter()
            .filter_map(|&i| self.uids.get(i).copied())
            .collect();
        self.mailbox.expunge(&uids).map_err(std::io::Error::other)
    }
}
