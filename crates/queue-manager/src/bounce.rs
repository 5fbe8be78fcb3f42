//! Delivery status notifications (RFC 3464 DSNs): bounces, success reports
//! and the postmaster copy.
//!
//! [`build`] is a pure function from the original message, its envelope and
//! per-recipient reports to a DSN message (envelope + CRLF text):
//!
//! ```text
//! From: MAILER-DAEMON@<myhostname> (Mail Delivery System)
//! To: <original sender>
//! Subject: Undelivered Mail Returned to Sender
//! Auto-Submitted: auto-replied
//! Content-Type: multipart/report; report-type=delivery-status; boundary=...
//!
//!   1. text/plain           human-readable explanation, one line per recipient
//!   2. message/delivery-status
//!        Reporting-MTA: dns; <myhostname>
//!        X-Postern-Queue-ID, Original-Envelope-Id (ENVID), Arrival-Date
//!        per recipient: Final-Recipient, Original-Recipient (ORCPT),
//!        Action, Status, Remote-MTA (when known),
//!        Diagnostic-Code: smtp; <reply>  (X-Postern; <reason> when not a reply)
//!   3. message/rfc822 (the whole message) or text/rfc822-headers
//! ```
//!
//! Policy, as Postfix:
//!
//! * The DSN is sent with the null reverse-path (`MAIL FROM:<>`), so a DSN
//!   that cannot be delivered is never bounced again: a message whose
//!   sender is null gets no DSN at all; its failure is only logged.
//! * NOTIFY (RFC 3461 4.1): `NEVER` → no DSN; not given → a DSN on failure
//!   and, when `queue.delay_warning_time` is set, a delay warning;
//!   otherwise one per requested event (`FAILURE`, `SUCCESS`, `DELAY`).
//! * Delay warnings (Postfix `delay_warning_time`, default off): one
//!   "delayed" DSN (headers only) for the recipients deferred in the
//!   attempt during which the message's age passes the threshold. Which
//!   attempt that is follows from the status log (the previous attempt's
//!   time is its next-attempt time minus the backoff), so no extra state
//!   is kept: after a flush (next-attempt time reset) the previous attempt
//!   time is unknown and that attempt sends no warning, and a crash at the
//!   wrong moment may repeat one. Warnings are advisory: one that cannot be
//!   queued is logged, not retried.
//! * RET (RFC 3461 4.3): `HDRS` → the headers only (`text/rfc822-headers`);
//!   `FULL` or not given → the whole message (`message/rfc822`), as Postfix
//!   does. A message larger than `queue.bounce_size_limit` (Postfix's
//!   `bounce_size_limit`, default 50000 bytes) is returned as headers only,
//!   whatever RET says; success reports and delay warnings always carry
//!   headers only.
//! * Several recipients of one message that fail in the same attempt get one
//!   DSN.
//! * The postmaster copy (`queue.bounce_notice_recipient`, empty = off, like
//!   Postfix's `notify_classes = bounce` with `bounce_notice_recipient`) is a
//!   separate message with the same report and the original headers only,
//!   also from the null sender, sent when the sender gets a non-delivery
//!   report (not for NOTIFY=NEVER, nor for a failed bounce).
//!
//! * Success (NOTIFY=SUCCESS): `delivered` for a mailbox (LMTP);
//!   `relayed` for a remote SMTP server without DSN; **no report** for a
//!   remote server that offers DSN — the RCPT carried NOTIFY/ORCPT (and
//!   MAIL the ENVID/RET), so it reports itself (RFC 3461 5.2.2);
//!   `expanded` for an alias with several targets, whose copies then go
//!   out without SUCCESS (as Postfix; a single-target alias passes NOTIFY
//!   on and the target's report carries the ORCPT).
//! * `Remote-MTA: dns; <host>` names the SMTP server whose reply is
//!   reported (the reply is kept as `host NAME[IP] said: REPLY`, Postfix's
//!   wording, in the recipient's status and in mailq).
//!
//! Not yet: for SMTPUTF8
//! mail the report stays `message/delivery-status` + `message/rfc822` with
//! `utf-8;` address types, not RFC 6533's `message/global-delivery-status`
//! and `message/global`. No `Will-Retry-Until` in delay warnings.

use std::fmt::Write as _;

use crate::spool::{Envelope, Message, RcptState, RcptStatus, Recipient, Spool};

/// NOTIFY bits as stored in the spool ([`Recipient::notify`]).
pub const NOTIFY_NEVER: u8 = 1;
pub const NOTIFY_SUCCESS: u8 = 2;
pub const NOTIFY_FAILURE: u8 = 4;
pub const NOTIFY_DELAY: u8 = 8;

/// RET as stored in the spool ([`Envelope::ret`]).
pub const RET_FULL: u8 = 1;
pub const RET_HDRS: u8 = 2;

/// Default of `queue.bounce_size_limit` (Postfix `bounce_size_limit`).
pub const DEFAULT_BOUNCE_SIZE_LIMIT: u64 = 50_000;

/// Bound on one Diagnostic-Code value (a reply joined from many lines could
/// be long; RFC 5322 2.1.1 limits a line to 998 octets).
const MAX_DIAGNOSTIC: usize = 900;

/// Bound on the headers returned with `text/rfc822-headers`: a message whose
/// header section is larger is cut at a line boundary below this.
const MAX_RETURNED_HEADERS: usize = 64 * 1024;

/// What happened to a recipient (RFC 3464 2.3.3 `Action`).
/// RFC 3464 2.3.3 `Action` of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Failed,
    Delayed,
    /// Put into the recipient's mailbox.
    Delivered,
    /// Handed to an SMTP server that does not offer DSN (RFC 3461 5.2.2):
    /// no more reports will come.
    Relayed,
    /// An alias expanded into several recipients (RFC 3461 6.2.7).
    Expanded,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Delayed => "delayed",
            Self::Delivered => "delivered",
            Self::Relayed => "relayed",
            Self::Expanded => "expanded",
        }
    }

    fn notify_bit(self) -> u8 {
        match self.class() {
            Self::Failed => NOTIFY_FAILURE,
            Self::Delayed => NOTIFY_DELAY,
            _ => NOTIFY_SUCCESS,
        }
    }

    /// The kind of report it goes in: failure, delay, or success
    /// (delivered, relayed and expanded share the success report).
    fn class(self) -> Self {
        match self {
            Self::Relayed | Self::Expanded => Self::Delivered,
            a => a,
        }
    }
}

/// `last_reply` of a recipient accepted by a remote SMTP server that offers
/// DSN: it reports success itself (RFC 3461 5.2.2), so we send none.
pub const RELAYED_DSN_PREFIX: &str = "relayed (next hop reports): ";
/// `last_reply` of a recipient accepted by a remote SMTP server without
/// DSN: our success report says `relayed`.
pub const RELAYED_PREFIX: &str = "relayed: ";
/// `last_reply` of an alias expanded into several recipients.
pub const EXPANDED: &str = "expanded";
/// `last_reply` of an alias with one target: NOTIFY went on with the copy,
/// whose report (with the ORCPT) is the one the sender gets.
pub const FORWARDED: &str = "forwarded";

/// A reply that came from a remote host, as Postfix words it:
/// `host NAME[IP] said: REPLY`. [`split_remote`] takes it apart again for
/// the DSN's `Remote-MTA` and `Diagnostic-Code`.
pub fn from_remote(host: &str, reply: &str) -> String {
    format!("host {host} said: {reply}")
}

/// `(reply, remote host)` of a recipient's last reply; the host is empty
/// when the reply did not come from a remote host.
pub fn split_remote(s: &str) -> (&str, &str) {
    if let Some(rest) = s.strip_prefix("host ")
        && let Some((host, reply)) = rest.split_once(" said: ")
    {
        // "name[ip]": Remote-MTA names the host (RFC 3464 2.3.5, dns type).
        let name = host.split('[').next().unwrap_or(host);
        return (reply, name);
    }
    (s, "")
}

/// Whether the sender asked for a DSN of this kind for a recipient with
/// these NOTIFY bits (RFC 3461 4.1; not given = FAILURE, and DELAY at the
/// MTA's discretion, which we use only for delay warnings).
pub fn wanted(notify: u8, action: Action) -> bool {
    if notify & NOTIFY_NEVER != 0 {
        return false;
    }
    if notify == 0 {
        return matches!(action, Action::Failed | Action::Delayed);
    }
    notify & action.notify_bit() != 0
}

/// One recipient in a DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub recipient: Recipient,
    pub action: Action,
    /// The reply or reason, e.g. `552 5.2.2 Mailbox full`.
    pub diagnostic: String,
    /// RFC 3463 status; empty = derived from the diagnostic.
    pub status: String,
    /// The host that gave the reply, when known (`Remote-MTA: dns; host`).
    pub remote_mta: String,
}

/// Settings from `[queue]` and `[global]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `global.myhostname`: Reporting-MTA and the From: domain.
    pub myhostname: String,
    /// `queue.bounce_notice_recipient`; empty = no postmaster copy.
    pub notice_recipient: String,
    /// `queue.bounce_size_limit`: larger messages come back as headers only.
    pub size_limit: u64,
    /// `queue.delay_warning_time`; zero = no delay warnings.
    pub delay_warning_time: std::time::Duration,
}

/// A DSN ready to be queued.
#[derive(Debug, Clone)]
pub struct Dsn {
    pub envelope: Envelope,
    pub content: Vec<u8>,
}

/// Which copy of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// To the original sender.
    Sender,
    /// To `bounce_notice_recipient` (headers only).
    Postmaster,
}

/// The RFC 3463 status of a recipient: the enhanced code at the start of the
/// reply text when there is one whose class matches the reply code, else
/// `<class>.0.0` from the reply code, else by action.
pub fn status_of(diagnostic: &str, action: Action) -> String {
    let mut words = diagnostic.split_whitespace();
    let code = words
        .next()
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()));
    if let Some(code) = code {
        let class = &code[..1];
        if let Some(enh) = words.next()
            && is_enhanced(enh)
            && enh.starts_with(class)
        {
            return enh.to_string();
        }
        if matches!(class, "2" | "4" | "5") {
            return format!("{class}.0.0");
        }
    }
    match action.class() {
        Action::Failed => "5.0.0",
        Action::Delayed => "4.0.0",
        _ => "2.0.0",
    }
    .to_string()
}

/// Whether `s` starts with a reply code (`2xx`-`5xx` then a space or the end).
fn is_reply(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 3
        && (b'2'..=b'5').contains(&b[0])
        && b[1..3].iter().all(u8::is_ascii_digit)
        && b.get(3).is_none_or(|&c| c == b' ' || c == b'-')
}

/// `class "." subject "." detail` (RFC 3463 2): class 2, 4 or 5, subject and
/// detail 1 to 3 digits.
fn is_enhanced(s: &str) -> bool {
    let p: Vec<&str> = s.split('.').collect();
    p.len() == 3
        && matches!(p[0], "2" | "4" | "5")
        && p[1..]
            .iter()
            .all(|x| (1..=3).contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit()))
}

/// Control characters (CR, LF, ...) become spaces, the text is cut at
/// `max` bytes (on a char boundary): safe inside a header field.
fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// `rfc822; addr`, or `utf-8; addr` for an internationalised address
/// (RFC 6533 3).
fn address_field(addr: &str) -> String {
    let addr = one_line(addr, 512);
    if addr.is_ascii() {
        format!("rfc822; {addr}")
    } else {
        format!("utf-8; {addr}")
    }
}

/// ORCPT is kept as `addr-type;address` (xtext already decoded).
fn original_recipient(orcpt: &str) -> Option<String> {
    let (t, a) = orcpt.split_once(';')?;
    let t = t.trim();
    if t.is_empty() || a.trim().is_empty() {
        return None;
    }
    Some(format!("{}; {}", one_line(t, 64), one_line(a.trim(), 512)))
}

/// RFC 5322 date-time in UTC.
pub fn rfc2822(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc2822)
                .ok()
        })
        .unwrap_or_else(|| "Thu, 1 Jan 1970 00:00:00 +0000".to_string())
}

/// The header section of a message (up to and including the empty line
/// that ends it, or the whole message when there is no body), bounded by
/// [`MAX_RETURNED_HEADERS`] at a line boundary.
fn header_section(content: &[u8]) -> &[u8] {
    let end = content
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| content.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(content.len());
    let mut h = &content[..end];
    if h.len() > MAX_RETURNED_HEADERS {
        let cut = h[..MAX_RETURNED_HEADERS]
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|p| p + 1)
            .unwrap_or(0);
        h = &h[..cut];
    }
    h
}

/// Build the DSN for `reports` about the message `(env, content)` queued
/// as `queue_id`, at `now` (Unix seconds). Recipients whose NOTIFY does not
/// ask for this kind of report are left out; `None` when nobody is left,
/// when the original sender is null (never bounce a bounce), or, for the
/// postmaster copy, when no notice recipient is configured or the report
/// is not about failures.
pub fn build(
    settings: &Settings,
    copy: Copy,
    queue_id: &str,
    env: &Envelope,
    content: &[u8],
    reports: &[Report],
    now: i64,
) -> Option<Dsn> {
    if env.sender.is_empty() {
        return None;
    }
    let reports: Vec<&Report> = reports
        .iter()
        .filter(|r| wanted(r.recipient.notify, r.action))
        .collect();
    let first = reports.first()?;
    let action = first.action.class();
    // One kind of report per DSN: the caller groups them.
    let reports: Vec<&Report> = reports
        .into_iter()
        .filter(|r| r.action.class() == action)
        .collect();
    let to = match copy {
        Copy::Sender => env.sender.clone(),
        Copy::Postmaster => {
            if settings.notice_recipient.is_empty() || action != Action::Failed {
                return None;
            }
            settings.notice_recipient.clone()
        }
    };
    let host = one_line(&settings.myhostname, 255);
    let subject = match (copy, action) {
        (Copy::Postmaster, _) => "Postmaster Copy: Undelivered Mail",
        (_, Action::Failed) => "Undelivered Mail Returned to Sender",
        (_, Action::Delayed) => "Delayed Mail (still being retried)",
        (_, _) => "Successful Mail Delivery Report",
    };
    let full = copy == Copy::Sender
        && action == Action::Failed
        && env.ret != RET_HDRS
        && (settings.size_limit == 0 || content.len() as u64 <= settings.size_limit);
    // A boundary that does not occur in the returned text (bounded: the
    // counter makes each candidate different).
    let mut boundary = String::new();
    for n in 0u32..1000 {
        boundary = format!("{queue_id}.{now}.{n}/{host}");
        if !content
            .windows(boundary.len())
            .any(|w| w == boundary.as_bytes())
        {
            break;
        }
    }

    let mut m = String::new();
    let _ = write!(
        m,
        "From: MAILER-DAEMON@{host} (Mail Delivery System)\r\n\
         To: {to}\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{queue_id}.{now}.{kind}@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n",
        to = one_line(&to, 512),
        date = rfc2822(now),
        kind = action.as_str(),
    );

    // 1. Human-readable part.
    let _ = write!(
        m,
        "--{boundary}\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         This is the mail system at host {host}.\r\n\r\n"
    );
    if copy == Copy::Postmaster {
        let _ = write!(
            m,
            "A message from <{}> could not be delivered. The report\r\n\
             and the message headers are attached; the sender was notified.\r\n\r\n",
            one_line(&env.sender, 512)
        );
    }
    m.push_str(match action {
        Action::Failed => {
            "I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients. It's attached below.\r\n\r\n\
             For further assistance, please send mail to postmaster.\r\n\r\n\
             If you do so, please include this problem report. You can\r\n\
             delete your own text from the attached returned message.\r\n\r\n"
        }
        Action::Delayed => {
            "Your message could not be delivered for some time.\r\n\
             It will be retried until it is too old; you do not need to\r\n\
             send it again. The report below says why.\r\n\r\n"
        }
        _ => {
            "Your message was successfully delivered to the destination(s)\r\n\
             listed below, as you asked with a delivery status notification\r\n\
             request.\r\n\r\n"
        }
    });
    for r in &reports {
        let _ = write!(
            m,
            "<{}>: {}\r\n",
            one_line(&r.recipient.address, 512),
            one_line(&r.diagnostic, MAX_DIAGNOSTIC)
        );
    }
    m.push_str("\r\n");

    // 2. message/delivery-status (RFC 3464 2.2 per-message, 2.3 per-recipient).
    let _ = write!(
        m,
        "--{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {host}\r\n\
         X-Postern-Queue-ID: {queue_id}\r\n"
    );
    if !env.envid.is_empty() {
        let _ = write!(m, "Original-Envelope-Id: {}\r\n", one_line(&env.envid, 100));
    }
    let _ = write!(
        m,
        "X-Postern-Sender: {}\r\n\
         Arrival-Date: {}\r\n",
        address_field(&env.sender),
        rfc2822(env.arrival_micros / 1_000_000)
    );
    for r in &reports {
        m.push_str("\r\n");
        let _ = write!(
            m,
            "Final-Recipient: {}\r\n",
            address_field(&r.recipient.address)
        );
        if let Some(o) = original_recipient(&r.recipient.orcpt) {
            let _ = write!(m, "Original-Recipient: {o}\r\n");
        }
        let status = if r.status.is_empty() || !is_enhanced(&r.status) {
            status_of(&r.diagnostic, r.action)
        } else {
            r.status.clone()
        };
        let _ = write!(m, "Action: {}\r\nStatus: {status}\r\n", r.action.as_str());
        if !r.remote_mta.is_empty() {
            let _ = write!(m, "Remote-MTA: dns; {}\r\n", one_line(&r.remote_mta, 255));
        }
        if !r.diagnostic.is_empty() {
            // An SMTP/LMTP reply is `smtp`; our own reasons (no next hop,
            // a DNS failure) are not replies: `X-Postern` (RFC 3464 2.3.6
            // allows X- types; Postfix says `X-Postfix`).
            let kind = if is_reply(&r.diagnostic) {
                "smtp"
            } else {
                "X-Postern"
            };
            let _ = write!(
                m,
                "Diagnostic-Code: {kind}; {}\r\n",
                one_line(&r.diagnostic, MAX_DIAGNOSTIC)
            );
        }
    }
    m.push_str("\r\n");

    // 3. The returned message or its headers.
    let mut out = m.into_bytes();
    if full {
        write_part_head(&mut out, &boundary, "Undelivered Message", "message/rfc822");
        out.extend_from_slice(content);
        if !content.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    } else {
        let desc = match action {
            Action::Delayed => "Delayed Message Headers",
            Action::Failed => "Undelivered Message Headers",
            _ => "Message Headers",
        };
        write_part_head(&mut out, &boundary, desc, "text/rfc822-headers");
        let h = header_section(content);
        out.extend_from_slice(h);
        if !h.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());

    let eight_bit = out.iter().any(|&b| b >= 0x80);
    let envelope = Envelope {
        arrival_micros: now.saturating_mul(1_000_000),
        sender: String::new(),
        recipients: vec![Recipient {
            address: to,
            // The DSN's own failures are never reported (null sender).
            notify: NOTIFY_NEVER,
            orcpt: String::new(),
        }],
        body: u8::from(eight_bit),
        smtputf8: env.smtputf8,
        ret: RET_HDRS,
        envid: String::new(),
        size_hint: out.len() as u64,
        helo: String::new(),
        client_address: String::new(),
        client_hostname: String::new(),
        auth_user: String::new(),
        origin: "bounce".to_string(),
        session_id: queue_id.to_string(),
        hold_reason: String::new(),
    };
    Some(Dsn {
        envelope,
        content: out,
    })
}

fn write_part_head(out: &mut Vec<u8>, boundary: &str, desc: &str, ctype: &str) {
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Description: {desc}\r\nContent-Type: {ctype}\r\n\
             Content-Transfer-Encoding: 8bit\r\n\r\n"
        )
        .as_bytes(),
    );
}

// ---------------------------------------------------------------------------
// The scheduler hook

/// Reason recorded for a recipient whose temporary failure outlived
/// `maximal_queue_lifetime`; the status reported is `4.4.7` (RFC 3463
/// "delivery time expired").
pub const EXPIRED_PREFIX: &str = "gave up after maximal_queue_lifetime: ";

/// Called by the scheduler after an attempt, before the recipients' new
/// status is recorded: queues (durably, in `incoming/`) the DSN for the
/// recipients that became `bounced` (and, when asked with NOTIFY=SUCCESS,
/// `delivered`) in `updates`, plus the postmaster copy. Only when that
/// succeeded may their status be made final, so a crash never loses a
/// bounce (it may, at worst, send it twice: crash after the DSN is queued
/// and before the status is recorded → the recipient is tried again).
///
/// If the DSN cannot be queued, the bounced recipients are recorded as
/// deferred instead (retried after `minimal_backoff`, bounced again then).
/// Recipients deferred in this attempt get a delay warning when the
/// message's age passed `delay_warning_time` since the previous attempt.
/// Returns how many DSN messages were queued.
pub fn notify(
    spool: &Spool,
    settings: &Settings,
    msg: &Message,
    content: &[u8],
    updates: &mut [(usize, RcptStatus)],
    now: i64,
    policy: &crate::scheduler::Policy,
) -> usize {
    let retry_after = policy.minimal_backoff.as_secs() as i64;
    let env = &msg.envelope;
    let report = |i: usize, st: &RcptStatus, action: Action| {
        let (reply, status) = match st.last_reply.strip_prefix(EXPIRED_PREFIX) {
            Some(r) => (r, "4.4.7".to_string()),
            None => (st.last_reply.as_str(), String::new()),
        };
        let (action, reply) = match action {
            Action::Delivered if reply == EXPANDED => (Action::Expanded, ""),
            Action::Delivered => match reply.strip_prefix(RELAYED_PREFIX) {
                Some(r) => (Action::Relayed, r),
                None => (action, reply),
            },
            a => (a, reply),
        };
        let (diagnostic, remote) = split_remote(reply);
        let diagnostic = if diagnostic == "delivered" {
            ""
        } else {
            diagnostic
        };
        Report {
            recipient: env.recipients[i].clone(),
            action,
            diagnostic: diagnostic.to_string(),
            status,
            remote_mta: remote.to_string(),
        }
    };
    let failed: Vec<Report> = updates
        .iter()
        .filter(|(_, s)| s.state == RcptState::Bounced)
        .map(|(i, s)| report(*i, s, Action::Failed))
        .collect();
    // A next hop that offers DSN reports success itself (RFC 3461 5.2.2).
    let delivered: Vec<Report> = updates
        .iter()
        .filter(|(_, s)| {
            s.state == RcptState::Delivered
                && !s.last_reply.starts_with(RELAYED_DSN_PREFIX)
                && s.last_reply != FORWARDED
        })
        .map(|(i, s)| report(*i, s, Action::Delivered))
        .collect();
    let delayed: Vec<Report> = updates
        .iter()
        .filter(|(i, s)| {
            s.state == RcptState::Deferred
                && msg
                    .status
                    .get(*i)
                    .is_some_and(|prev| warn_now(settings, env, prev, now, policy))
        })
        .map(|(i, s)| report(*i, s, Action::Delayed))
        .collect();
    if failed.is_empty() && delivered.is_empty() && delayed.is_empty() {
        return 0;
    }
    if env.sender.is_empty() {
        for r in &failed {
            tracing::warn!(queue_id = %msg.id, to = %r.recipient.address, "null sender: no DSN (a bounce is never bounced)");
        }
        return 0;
    }
    let id = msg.id.as_str();
    let mut queued = 0;
    if !failed.is_empty() {
        let dsns: Vec<Dsn> = [Copy::Sender, Copy::Postmaster]
            .into_iter()
            .filter_map(|c| build(settings, c, id, env, content, &failed, now))
            .collect();
        let refs: Vec<(&Envelope, &[u8])> = dsns
            .iter()
            .map(|d| (&d.envelope, d.content.as_slice()))
            .collect();
        let results = if refs.is_empty() {
            Vec::new()
        } else {
            spool.enqueue_batch(&refs)
        };
        match results.iter().find_map(|r| r.as_ref().err()) {
            None => {
                for (d, r) in dsns.iter().zip(&results) {
                    if let Ok(dsn_id) = r {
                        let to = &d.envelope.recipients[0].address;
                        if *to == env.sender {
                            tracing::info!(queue_id = %msg.id, dsn_queue_id = %dsn_id, to = %to, nrcpt = failed.len(), "sender non-delivery notification queued");
                        } else {
                            tracing::info!(queue_id = %msg.id, dsn_queue_id = %dsn_id, to = %to, nrcpt = failed.len(), "postmaster copy of the non-delivery notification queued");
                        }
                    }
                }
                queued += results.len();
                if dsns.is_empty() {
                    tracing::info!(queue_id = %msg.id, nrcpt = failed.len(), "no DSN: NOTIFY did not ask for one");
                }
            }
            Some(e) => {
                tracing::error!(queue_id = %msg.id, error = %e, "cannot queue the DSN: bounced recipients deferred instead");
                // A copy that did get queued is removed so that the retry
                // does not send it twice (best effort).
                for r in results.iter().flatten() {
                    let _ = spool.delete(r);
                }
                for (_, s) in updates.iter_mut() {
                    if s.state == RcptState::Bounced {
                        s.state = RcptState::Deferred;
                        s.next_attempt_unix = now + retry_after;
                        s.last_reply = format!("4.3.0 bounce not queued ({e}); {}", s.last_reply);
                    }
                }
            }
        }
    }
    // Success reports and delay warnings that cannot be queued are logged
    // and not retried: they are advisory.
    for (reports, what) in [
        (&delivered, "sender delivery notification queued"),
        (&delayed, "sender delay notification queued"),
    ] {
        if reports.is_empty() {
            continue;
        }
        let Some(d) = build(settings, Copy::Sender, id, env, content, reports, now) else {
            continue;
        };
        match spool.enqueue(&d.envelope, &d.content) {
            Ok(dsn_id) => {
                tracing::info!(queue_id = %msg.id, dsn_queue_id = %dsn_id, to = %env.sender, "{what}");
                queued += 1;
            }
            Err(e) => {
                tracing::error!(queue_id = %msg.id, error = %e, "cannot queue the DSN (success or delay report)")
            }
        }
    }
    queued
}

/// Whether a recipient deferred now, whose status before this attempt was
/// `prev`, gets the delay warning: the message's age crossed
/// `delay_warning_time` between the previous attempt and now.
fn warn_now(
    settings: &Settings,
    env: &Envelope,
    prev: &RcptStatus,
    now: i64,
    policy: &crate::scheduler::Policy,
) -> bool {
    let threshold = settings.delay_warning_time.as_secs() as i64;
    if threshold == 0 {
        return false;
    }
    let arrival = env.arrival_micros / 1_000_000;
    let previous = if prev.attempts == 0 {
        arrival
    } else if prev.next_attempt_unix > 0 {
        prev.next_attempt_unix - policy.backoff(prev.attempts).as_secs() as i64
    } else {
        // Flushed: when the previous attempt was is not known.
        return false;
    };
    previous - arrival < threshold && now - arrival >= threshold
}

/// The scheduler's handle: settings plus a flag telling the scheduler to
/// run another pass at once after it queued a DSN (so a bounce does not
/// wait for `queue_run_delay`).
#[derive(Debug)]
pub struct Bouncer {
    pub settings: Settings,
    queued: std::sync::atomic::AtomicBool,
}

impl Bouncer {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            queued: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Note that DSNs were queued.
    pub fn mark_queued(&self) {
        self.queued
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether DSNs were queued since the last call.
    pub fn take_queued(&self) -> bool {
        self.queued
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    const ORIGINAL: &[u8] = b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: lunch?\r\nMessage-ID: <m1@example.test>\r\n\r\nsee you at noon\r\n";

    fn settings() -> Settings {
        Settings {
            myhostname: "mail.example.test".into(),
            notice_recipient: String::new(),
            size_limit: DEFAULT_BOUNCE_SIZE_LIMIT,
            delay_warning_time: std::time::Duration::ZERO,
        }
    }

    fn policy() -> crate::scheduler::Policy {
        crate::scheduler::Policy {
            minimal_backoff: std::time::Duration::from_secs(300),
            maximal_backoff: std::time::Duration::from_secs(4000),
            maximal_lifetime: std::time::Duration::from_secs(5 * 86400),
        }
    }

    fn rcpt(a: &str, notify: u8, orcpt: &str) -> Recipient {
        Recipient {
            address: a.into(),
            notify,
            orcpt: orcpt.into(),
        }
    }

    fn envelope(sender: &str, ret: u8) -> Envelope {
        Envelope {
            arrival_micros: 1_700_000_000_000_000,
            sender: sender.into(),
            recipients: vec![
                rcpt("bob@example.test", 0, "rfc822;Bob@Example.test"),
                rcpt("carol@example.test", 0, ""),
            ],
            ret,
            envid: "ENV-42".into(),
            ..Default::default()
        }
    }

    fn failed(r: Recipient, diag: &str) -> Report {
        Report {
            recipient: r,
            action: Action::Failed,
            diagnostic: diag.into(),
            status: String::new(),
            remote_mta: String::new(),
        }
    }

    fn two_failures(env: &Envelope) -> Vec<Report> {
        vec![
            failed(env.recipients[0].clone(), "552 5.2.2 Mailbox full"),
            failed(env.recipients[1].clone(), "550 no such user"),
        ]
    }

    /// (content type of each part of the multipart/report, part texts).
    fn parts(dsn: &[u8]) -> (Vec<String>, Vec<String>) {
        let m = MessageParser::default().parse(dsn).expect("parses");
        let ct = m.content_type().expect("content type");
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let ids = m.parts[0].sub_parts().expect("multipart").to_vec();
        let mut types = Vec::new();
        let mut texts = Vec::new();
        for id in ids {
            let p = &m.parts[id as usize];
            let ct = p.content_type().expect("part content type");
            types.push(format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")));
            texts.push(String::from_utf8_lossy(p.contents()).into_owned());
        }
        (types, texts)
    }

    #[test]
    fn failure_dsn_is_a_multipart_report_about_every_failed_recipient() {
        let env = envelope("alice@example.test", 0);
        let dsn = build(
            &settings(),
            Copy::Sender,
            "0123456789ABCDEF",
            &env,
            ORIGINAL,
            &two_failures(&env),
            1_700_000_100,
        )
        .expect("a DSN");
        // Envelope: null sender, to the original sender, never reported on.
        assert_eq!(dsn.envelope.sender, "");
        assert_eq!(dsn.envelope.recipients.len(), 1);
        assert_eq!(dsn.envelope.recipients[0].address, "alice@example.test");
        assert_eq!(dsn.envelope.recipients[0].notify, NOTIFY_NEVER);
        assert_eq!(dsn.envelope.origin, "bounce");
        let m = MessageParser::default().parse(&dsn.content).unwrap();
        assert_eq!(m.subject(), Some("Undelivered Mail Returned to Sender"));
        assert_eq!(
            m.from().and_then(|a| a.first()).and_then(|a| a.address()),
            Some("MAILER-DAEMON@mail.example.test")
        );
        assert_eq!(
            m.to().and_then(|a| a.first()).and_then(|a| a.address()),
            Some("alice@example.test")
        );
        let (types, texts) = parts(&dsn.content);
        assert_eq!(
            types,
            ["text/plain", "message/delivery-status", "message/rfc822"]
        );
        assert!(texts[0].contains("<bob@example.test>: 552 5.2.2 Mailbox full"));
        let ds = &texts[1];
        for line in [
            "Reporting-MTA: dns; mail.example.test",
            "Original-Envelope-Id: ENV-42",
            "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000",
            "Final-Recipient: rfc822; bob@example.test",
            "Original-Recipient: rfc822; Bob@Example.test",
            "Status: 5.2.2",
            "Diagnostic-Code: smtp; 552 5.2.2 Mailbox full",
            "Final-Recipient: rfc822; carol@example.test",
            "Status: 5.0.0",
            "Diagnostic-Code: smtp; 550 no such user",
        ] {
            assert!(ds.contains(&format!("{line}\r\n")), "{line:?} in\n{ds}");
        }
        assert_eq!(ds.matches("Action: failed\r\n").count(), 2);
        // Per-recipient groups are separated by empty lines (RFC 3464 2.1).
        assert_eq!(ds.matches("\r\n\r\nFinal-Recipient:").count(), 2);
        // Carol has no ORCPT: no Original-Recipient for her.
        assert_eq!(ds.matches("Original-Recipient:").count(), 1);
        // RET not given: the whole message comes back.
        let m = MessageParser::default().parse(&dsn.content).unwrap();
        let inner = m.parts.iter().find_map(|p| p.message()).expect("rfc822");
        assert_eq!(inner.subject(), Some("lunch?"));
        assert_eq!(inner.body_text(0).as_deref(), Some("see you at noon\r\n"));
    }

    #[test]
    fn ret_hdrs_and_oversize_messages_return_headers_only() {
        let env = envelope("alice@example.test", RET_HDRS);
        let dsn = build(
            &settings(),
            Copy::Sender,
            "0123456789ABCDEF",
            &env,
            ORIGINAL,
            &two_failures(&env),
            1_700_000_100,
        )
        .unwrap();
        let (types, texts) = parts(&dsn.content);
        assert_eq!(types[2], "text/rfc822-headers");
        assert!(texts[2].contains("Subject: lunch?"));
        assert!(!texts[2].contains("see you at noon"));
        // RET=FULL, but larger than bounce_size_limit: headers only too.
        let env = envelope("alice@example.test", RET_FULL);
        let s = Settings {
            size_limit: 40,
            ..settings()
        };
        let dsn = build(
            &s,
            Copy::Sender,
            "0123456789ABCDEF",
            &env,
            ORIGINAL,
            &two_failures(&env),
            1,
        )
        .unwrap();
        assert_eq!(parts(&dsn.content).0[2], "text/rfc822-headers");
        // RET=FULL within the limit: message/rfc822.
        let dsn = build(
            &settings(),
            Copy::Sender,
            "0123456789ABCDEF",
            &env,
            ORIGINAL,
            &two_failures(&env),
            1,
        )
        .unwrap();
        assert_eq!(parts(&dsn.content).0[2], "message/rfc822");
    }

    #[test]
    fn notify_never_null_sender_and_unrequested_kinds_give_no_dsn() {
        let mut env = envelope("alice@example.test", 0);
        let go = |env: &Envelope, reports: &[Report]| {
            build(
                &settings(),
                Copy::Sender,
                "0123456789ABCDEF",
                env,
                ORIGINAL,
                reports,
                1,
            )
        };
        // Null sender: a bounce is never bounced.
        let null = envelope("", 0);
        assert!(go(&null, &two_failures(&null)).is_none());
        // NOTIFY=NEVER for both.
        for r in &mut env.recipients {
            r.notify = NOTIFY_NEVER;
        }
        assert!(go(&env, &two_failures(&env)).is_none());
        // NOTIFY=SUCCESS only: no failure report.
        for r in &mut env.recipients {
            r.notify = NOTIFY_SUCCESS;
        }
        assert!(go(&env, &two_failures(&env)).is_none());
        // NEVER for one, FAILURE for the other: only the other is reported.
        env.recipients[0].notify = NOTIFY_NEVER;
        env.recipients[1].notify = NOTIFY_FAILURE | NOTIFY_DELAY;
        let dsn = go(&env, &two_failures(&env)).unwrap();
        let ds = &parts(&dsn.content).1[1];
        assert!(!ds.contains("bob@example.test"), "{ds}");
        assert!(ds.contains("Final-Recipient: rfc822; carol@example.test"));
        // Success reports only when asked for.
        let ok = |r: &Recipient| Report {
            recipient: r.clone(),
            action: Action::Delivered,
            diagnostic: "250 2.0.0 ok".into(),
            status: String::new(),
            remote_mta: "mx.example.org".into(),
        };
        let plain = envelope("alice@example.test", 0);
        assert!(go(&plain, &[ok(&plain.recipients[0])]).is_none());
        let mut asked = plain.clone();
        asked.recipients[0].notify = NOTIFY_SUCCESS | NOTIFY_FAILURE;
        let dsn = go(&asked, &[ok(&asked.recipients[0])]).unwrap();
        let m = MessageParser::default().parse(&dsn.content).unwrap();
        assert_eq!(m.subject(), Some("Successful Mail Delivery Report"));
        let (types, texts) = parts(&dsn.content);
        assert_eq!(types[2], "text/rfc822-headers", "success: headers only");
        for line in [
            "Action: delivered",
            "Status: 2.0.0",
            "Remote-MTA: dns; mx.example.org",
        ] {
            assert!(texts[1].contains(line), "{line} in {}", texts[1]);
        }
    }

    #[test]
    fn postmaster_copy_only_when_configured_and_headers_only() {
        let env = envelope("alice@example.test", RET_FULL);
        let reports = two_failures(&env);
        assert!(
            build(
                &settings(),
                Copy::Postmaster,
                "0123456789ABCDEF",
                &env,
                ORIGINAL,
                &reports,
                1
            )
            .is_none()
        );
        let s = Settings {
            notice_recipient: "postmaster@example.test".into(),
            ..settings()
        };
        let dsn = build(
            &s,
            Copy::Postmaster,
            "0123456789ABCDEF",
            &env,
            ORIGINAL,
            &reports,
            1,
        )
        .unwrap();
        assert_eq!(
            dsn.envelope.recipients[0].address,
            "postmaster@example.test"
        );
        assert_eq!(dsn.envelope.sender, "");
        let (types, texts) = parts(&dsn.content);
        assert_eq!(types[2], "text/rfc822-headers");
        assert!(texts[0].contains("A message from <alice@example.test>"));
        assert!(texts[1].contains("Final-Recipient: rfc822; bob@example.test"));
    }

    #[test]
    fn status_codes_and_hostile_replies() {
        assert_eq!(status_of("552 5.2.2 Mailbox full", Action::Failed), "5.2.2");
        assert_eq!(status_of("550 4.1.1 inconsistent", Action::Failed), "5.0.0");
        assert_eq!(status_of("554 transaction failed", Action::Failed), "5.0.0");
        assert_eq!(status_of("451 4.3.0 later", Action::Failed), "4.3.0");
        assert_eq!(status_of("421 busy", Action::Failed), "4.0.0");
        assert_eq!(status_of("no reply at all", Action::Failed), "5.0.0");
        assert_eq!(status_of("", Action::Delivered), "2.0.0");
        assert_eq!(status_of("550 5.1234.1 x", Action::Failed), "5.0.0");
        assert!(is_reply("550 5.1.1 x") && is_reply("421") && !is_reply("5500 x"));
        assert!(!is_reply("domain example.org has a null MX") && !is_reply(""));
        let env = envelope("alice@example.test", 0);
        let dsn = build(
            &settings(),
            Copy::Sender,
            "0123456789ABCDEF",
            &env,
            ORIGINAL,
            &[failed(
                env.recipients[0].clone(),
                "null MX: example.org accepts no mail",
            )],
            1,
        )
        .unwrap();
        assert!(
            parts(&dsn.content).1[1]
                .contains("Diagnostic-Code: X-Postern; null MX: example.org accepts no mail\r\n")
        );
        // A reply with line breaks or a boundary-looking text cannot break
        // the structure.
        let env = envelope("alice@example.test", 0);
        let evil = "550 5.7.1 no\r\nContent-Type: text/html\r\n\r\n--x";
        let content = b"Subject: x\r\n\r\n--0123456789ABCDEF.1.0/mail.example.test\r\n";
        let dsn = build(
            &settings(),
            Copy::Sender,
            "0123456789ABCDEF",
            &env,
            content,
            &[failed(env.recipients[0].clone(), evil)],
            1,
        )
        .unwrap();
        let (types, texts) = parts(&dsn.content);
        assert_eq!(types.len(), 3, "{types:?}");
        assert!(texts[1].contains("Diagnostic-Code: smtp; 550 5.7.1 no  Content-Type"));
        let m = MessageParser::default().parse(&dsn.content).unwrap();
        let inner = m.parts.iter().find_map(|p| p.message()).unwrap();
        assert_eq!(inner.subject(), Some("x"));
    }

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path()).unwrap();
        (dir, s)
    }

    fn status(state: RcptState, reply: &str) -> RcptStatus {
        RcptStatus {
            state,
            attempts: 1,
            next_attempt_unix: 0,
            last_reply: reply.into(),
        }
    }

    #[test]
    fn hook_queues_one_dsn_for_all_failures_and_postmaster_copy() {
        let (_d, s) = spool();
        let env = envelope("alice@example.test", 0);
        let id = s.enqueue(&env, ORIGINAL).unwrap();
        let msg = s.read(&id).unwrap();
        let mut updates = vec![
            (0, status(RcptState::Bounced, "552 5.2.2 Mailbox full")),
            (
                1,
                status(
                    RcptState::Bounced,
                    &format!("{EXPIRED_PREFIX}421 4.4.2 timeout"),
                ),
            ),
        ];
        let st = Settings {
            notice_recipient: "postmaster@example.test".into(),
            ..settings()
        };
        assert_eq!(
            notify(&s, &st, &msg, ORIGINAL, &mut updates, 100, &policy()),
            2
        );
        assert!(updates.iter().all(|(_, u)| u.state == RcptState::Bounced));
        let queued: Vec<_> = s
            .list("incoming")
            .unwrap()
            .into_iter()
            .filter(|i| *i != id)
            .collect();
        assert_eq!(queued.len(), 2);
        let mut to = Vec::new();
        for q in &queued {
            let m = s.read(q).unwrap();
            assert_eq!(m.envelope.sender, "");
            to.push(m.envelope.recipients[0].address.clone());
            let text = String::from_utf8(s.read_content(q).unwrap()).unwrap();
            assert!(text.contains("Status: 5.2.2\r\n"));
            // Expired: 4.4.7 with the last reply as diagnostic.
            assert!(text.contains("Status: 4.4.7\r\nDiagnostic-Code: smtp; 421 4.4.2 timeout\r\n"));
        }
        to.sort();
        assert_eq!(to, ["alice@example.test", "postmaster@example.test"]);

        // The DSN itself failing: null sender, nothing queued.
        let dsn = s.read(&queued[0]).unwrap();
        let mut u = vec![(0, status(RcptState::Bounced, "552 5.2.2 full"))];
        assert_eq!(notify(&s, &st, &dsn, b"", &mut u, 100, &policy()), 0);
        assert_eq!(s.list("incoming").unwrap().len(), 3);
        assert_eq!(u[0].1.state, RcptState::Bounced, "dropped, not retried");
    }

    #[test]
    fn hook_defers_the_recipient_when_the_dsn_cannot_be_queued() {
        let (d, s) = spool();
        let env = envelope("alice@example.test", 0);
        let id = s.enqueue(&env, ORIGINAL).unwrap();
        let msg = s.read(&id).unwrap();
        // Make tmp/ unusable: the DSN cannot be written.
        std::fs::remove_dir(d.path().join("tmp")).unwrap();
        std::fs::write(d.path().join("tmp"), b"not a directory").unwrap();
        let mut updates = vec![
            (0, status(RcptState::Bounced, "552 5.2.2 Mailbox full")),
            (1, status(RcptState::Delivered, "250 ok")),
        ];
        assert_eq!(
            notify(
                &s,
                &settings(),
                &msg,
                ORIGINAL,
                &mut updates,
                100,
                &policy()
            ),
            0
        );
        assert_eq!(updates[0].1.state, RcptState::Deferred);
        assert_eq!(updates[0].1.next_attempt_unix, 400);
        assert!(updates[0].1.last_reply.contains("552 5.2.2 Mailbox full"));
        assert_eq!(updates[1].1.state, RcptState::Delivered);
    }

    #[test]
    fn delay_warning_once_when_the_age_passes_the_threshold() {
        let (_d, s) = spool();
        let mut env = envelope("alice@example.test", RET_FULL);
        env.arrival_micros = 1_000 * 1_000_000;
        env.recipients[1].notify = NOTIFY_FAILURE; // no DELAY: not warned
        let id = s.enqueue(&env, ORIGINAL).unwrap();
        let mut msg = s.read(&id).unwrap();
        let st = Settings {
            delay_warning_time: std::time::Duration::from_secs(3600),
            ..settings()
        };
        let deferred = |next: i64| RcptStatus {
            state: RcptState::Deferred,
            attempts: 3,
            next_attempt_unix: next,
            last_reply: "451 4.4.1 no answer".into(),
        };
        let dsns = |s: &Spool| {
            s.list("incoming")
                .unwrap()
                .into_iter()
                .filter(|i| *i != id)
                .count()
        };
        // Previous attempt (attempt 2) at arrival + 3000 s: its status says
        // next = 3000 + backoff(2) = 3000 + 600. Now = arrival + 3700:
        // the threshold (3600 s) was passed since then → one warning.
        let prev = 1_000 + 3_000 + policy().backoff(2).as_secs() as i64;
        msg.status = vec![
            RcptStatus {
                attempts: 2,
                ..deferred(prev)
            };
            2
        ];
        let now = 1_000 + 3_700;
        let mut updates = vec![(0, deferred(now + 1200)), (1, deferred(now + 1200))];
        assert_eq!(
            notify(&s, &st, &msg, ORIGINAL, &mut updates, now, &policy()),
            1
        );
        assert_eq!(dsns(&s), 1);
        let q = s
            .list("incoming")
            .unwrap()
            .into_iter()
            .find(|i| *i != id)
            .unwrap();
        let text = s.read_content(&q).unwrap();
        let m = MessageParser::default().parse(&text).unwrap();
        assert_eq!(m.subject(), Some("Delayed Mail (still being retried)"));
        let (types, texts) = parts(&text);
        assert_eq!(types[2], "text/rfc822-headers", "warnings: headers only");
        assert!(
            texts[1].contains("Action: delayed\r\nStatus: 4.4.1\r\n"),
            "{}",
            texts[1]
        );
        assert!(!texts[1].contains("carol@"), "NOTIFY without DELAY");
        // The status still says deferred: nothing became final.
        assert!(updates.iter().all(|(_, u)| u.state == RcptState::Deferred));

        // The next attempt (previous one already past the threshold): none.
        msg.status = vec![deferred(now + 1200); 2];
        let later = now + 1200;
        let mut updates = vec![(0, deferred(later + 2400))];
        assert_eq!(
            notify(&s, &st, &msg, ORIGINAL, &mut updates, later, &policy()),
            0
        );
        // Off by default; flushed status (next = 0): none either.
        msg.status = vec![
            RcptStatus {
                attempts: 2,
                ..deferred(prev)
            };
            2
        ];
        let mut updates = vec![(0, deferred(now + 1200))];
        assert_eq!(
            notify(
                &s,
                &settings(),
                &msg,
                ORIGINAL,
                &mut updates,
                now,
                &policy()
            ),
            0
        );
        msg.status = vec![deferred(0); 2];
        assert_eq!(
            notify(&s, &st, &msg, ORIGINAL, &mut updates, now, &policy()),
            0
        );
        assert_eq!(dsns(&s), 1);
    }
}
