//! Pure maildrop bookkeeping for the TRANSACTION state: message numbers,
//! deletion marks, STAT / LIST / UIDL answers, RSET and the expunge list.

use crate::response::{Response, encode_multiline};

/// Longest unique-id string (RFC 1939 section 7, UIDL: "up to 70
/// characters").
pub const MAX_UID_LEN: usize = 70;

/// One message as the session sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Wire size ([`wire_size`](crate::wire_size)): what LIST reports and
    /// what RETR's `+OK n octets` says.
    pub size: u64,
    /// The unique-id listing string: 1 to [`MAX_UID_LEN`] characters in
    /// 0x21..=0x7E, stable across sessions.
    pub uid: String,
    /// Marked by DELE in this session.
    pub deleted: bool,
}

/// Why a maildrop operation failed. Every variant maps to a `-ERR` reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaildropError {
    /// No message with that number (0 or past the end).
    #[error("no such message")]
    NoSuchMessage,
    /// The message is marked as deleted.
    #[error("message {0} already deleted")]
    AlreadyDeleted(u32),
    /// A uid given to [`Maildrop::new`] is empty, too long, or has characters
    /// outside 0x21..=0x7E.
    #[error("invalid unique id for message {0}")]
    InvalidUid(u32),
    /// More messages than message numbers can address.
    #[error("too many messages")]
    TooManyMessages,
}

impl MaildropError {
    /// The `-ERR` reply for this error.
    pub fn reply(&self) -> Response {
        Response::err(self.to_string())
    }
}

/// The messages of one session's maildrop, numbered from 1 in the order
/// given, with their deletion marks.
///
/// Deleted messages keep their number (numbers never shift during a
/// session) but are excluded from STAT, LIST and UIDL and refused by RETR,
/// TOP and DELE (RFC 1939 section 5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Maildrop {
    messages: Vec<MessageInfo>,
}

impl Maildrop {
    /// Builds the maildrop from `(wire size, uid)` pairs, message 1 first.
    pub fn new<I, S>(messages: I) -> Result<Self, MaildropError>
    where
        I: IntoIterator<Item = (u64, S)>,
        S: Into<String>,
    {
        let mut v = Vec::new();
        for (i, (size, uid)) in messages.into_iter().enumerate() {
            let n = u32::try_from(i + 1).map_err(|_| MaildropError::TooManyMessages)?;
            let uid = uid.into();
            let valid = !uid.is_empty()
                && uid.len() <= MAX_UID_LEN
                && uid.bytes().all(|b| (0x21..=0x7e).contains(&b));
            if !valid {
                return Err(MaildropError::InvalidUid(n));
            }
            v.push(MessageInfo {
                size,
                uid,
                deleted: false,
            });
        }
        Ok(Maildrop { messages: v })
    }

    /// Number of messages, deleted ones included (the highest valid number).
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// True when the maildrop holds no message at all.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The message `msg` (1-based) if it exists and is not deleted: what
    /// RETR and TOP need.
    pub fn get(&self, msg: u32) -> Result<&MessageInfo, MaildropError> {
        let m = self.any(msg)?;
        if m.deleted {
            Err(MaildropError::AlreadyDeleted(msg))
        } else {
            Ok(m)
        }
    }

    fn any(&self, msg: u32) -> Result<&MessageInfo, MaildropError> {
        (msg as usize)
            .checked_sub(1)
            .and_then(|i| self.messages.get(i))
            .ok_or(MaildropError::NoSuchMessage)
    }

    /// STAT: number of undeleted messages and their total size.
    pub fn stat(&self) -> (usize, u64) {
        self.live()
            .fold((0, 0), |(n, s), (_, m)| (n + 1, s.saturating_add(m.size)))
    }

    /// Undeleted messages with their numbers, in order.
    pub fn live(&self) -> impl Iterator<Item = (u32, &MessageInfo)> {
        (1u32..).zip(&self.messages).filter(|(_, m)| !m.deleted)
    }

    /// DELE: marks `msg` deleted.
    pub fn dele(&mut self, msg: u32) -> Result<(), MaildropError> {
        self.get(msg)?;
        let i = (msg as usize) - 1;
        if let Some(m) = self.messages.get_mut(i) {
            m.deleted = true;
        }
        Ok(())
    }

    /// RSET: removes every deletion mark.
    pub fn rset(&mut self) {
        for m in &mut self.messages {
            m.deleted = false;
        }
    }

    /// QUIT in TRANSACTION (entering UPDATE): the numbers of the messages to
    /// expunge, ascending. The daemon removes them, then replies `+OK` or, if
    /// some could not be removed, `-ERR [SYS/TEMP] ...` (RFC 1939 section 6).
    pub fn to_expunge(&self) -> Vec<u32> {
        (1u32..)
            .zip(&self.messages)
            .filter(|(_, m)| m.deleted)
            .map(|(n, _)| n)
            .collect()
    }

    /// Appends the complete STAT reply.
    pub fn answer_stat(&self, out: &mut Vec<u8>) {
        let (n, size) = self.stat();
        Response::ok(format!("{n} {size}")).encode(out);
    }

    /// Appends the complete LIST reply: single line for `Some(msg)`,
    /// multi-line scan listing for `None`, `-ERR` for a missing or deleted
    /// message. Returns false when the reply was `-ERR`.
    pub fn answer_list(&self, msg: Option<u32>, out: &mut Vec<u8>) -> bool {
        self.answer(
            msg,
            out,
            |n, m| format!("{n} {}", m.size),
            |n, s| format!("{n} messages ({s} octets)"),
        )
    }

    /// Appends the complete UIDL reply (as [`Maildrop::answer_list`]).
    pub fn answer_uidl(&self, msg: Option<u32>, out: &mut Vec<u8>) -> bool {
        self.answer(
            msg,
            out,
            |n, m| format!("{n} {}", m.uid),
            |_, _| String::new(),
        )
    }

    fn answer(
        &self,
        msg: Option<u32>,
        out: &mut Vec<u8>,
        line: impl Fn(u32, &MessageInfo) -> String,
        header: impl Fn(usize, u64) -> String,
    ) -> bool {
        match msg {
            Some(n) => match self.get(n) {
                Ok(m) => {
                    Response::ok(line(n, m)).encode(out);
                    true
                }
                Err(e) => {
                    e.reply().encode(out);
                    false
                }
            },
            None => {
                let (count, size) = self.stat();
                encode_multiline(
                    &Response::ok(header(count, size)),
                    self.live().map(|(n, m)| line(n, m)),
                    out,
                );
                true
            }
        }
    }
}
