//! `mailctl queue list|show|hold|release|delete|flush` and `mailq`: the
//! mail queue, over queue-manager's private socket (`queue.socket`, the
//! `postern.queue.v1` administration calls).
//!
//! ```text
//! mailctl queue list [QUEUE...]            (= mailq; QUEUE: incoming active deferred hold corrupt)
//! mailctl queue show QUEUE_ID [--envelope] (like postcat -q: envelope, then the message)
//! mailctl queue hold    QUEUE_ID... | ALL [QUEUE]   (like postsuper -h)
//! mailctl queue release QUEUE_ID... | ALL [QUEUE]   (like postsuper -H)
//! mailctl queue delete  QUEUE_ID... | ALL [QUEUE]   (like postsuper -d)
//! mailctl queue flush  [QUEUE_ID...]                (like postqueue -f / -i; none = all deferred)
//! mailq [-C config] [-v]                   (mailctl installed or linked as mailq; also sendmail -bp)
//! ```
//!
//! `list` prints what Postfix's `mailq` prints with long queue ids (ours
//! are 16 characters): a header line, then per message (oldest first,
//! whatever its queue) the id followed by
//! `*` when it is being delivered (`active/`) or `!` when it is on hold,
//! the size, the arrival time (UTC), the sender (`MAILER-DAEMON` for the
//! null sender); for each deferral reason the reason in parentheses,
//! right-aligned to column 78 (as Postfix), followed by the recipients it applies to;
//! recipients without a reason after that; an empty line; and a total
//! `-- N Kbytes in M Requests.` — or `Mail queue is empty`. Recipients
//! already delivered or bounced are not shown (Postfix removes them from
//! the queue file). A message that smtpd's check pipeline put on hold
//! shows its hold reason in the same place a deferral reason goes,
//! `(held: <reason>)` (Postfix has no stored reason: this line is ours);
//! `show` prints it as `hold_reason:` (also after a release, as history). `mailq` lists incoming, active, deferred and hold;
//! `corrupt/` only when asked with `mailctl queue list corrupt`.
//!
//! `ALL` takes every message of the queues the operation applies to
//! (hold: incoming and deferred; release: hold; delete: every queue), or of
//! the one queue named after it. A message in `active/` (being delivered)
//! is neither held nor deleted (try again once it is deferred).
//!
//! The administration calls are served only on the private socket (mode
//! 0660: root and the `postern` group); unlike Postfix's `mailq`, other
//! users cannot list the queue.
//!
//! Exit status: 0 success; 1 a named queue id was not found, or the
//! server refused the call; 64 usage; 75 queue-manager unreachable; 77 no
//! permission to use the queue socket; 78 configuration error.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use postern_common::Config;
use postern_ipc::queue::v1 as pb;

use super::admin;

/// Exit status: queue-manager could not be reached (`EX_TEMPFAIL`).
pub const EXIT_TEMPFAIL: u8 = 75;
/// Exit status: no permission to use the queue socket (`EX_NOPERM`).
pub const EXIT_NOPERM: u8 = 77;

/// The queues `mailq` lists.
const MAILQ_QUEUES: [&str; 4] = ["incoming", "active", "deferred", "hold"];

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// List queued messages, Postfix mailq style.
    List {
        /// Only these queues (incoming, active, deferred, hold, corrupt).
        queues: Vec<String>,
    },
    /// Print a message's envelope and text (like postcat -q).
    Show {
        queue_id: String,
        /// Only the envelope, not the message text.
        #[arg(short, long)]
        envelope: bool,
    },
    /// Put messages on hold: they are not delivered until released.
    Hold {
        /// Queue ids, or ALL, optionally followed by a queue name.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Release held messages (they are retried at once).
    Release {
        /// Queue ids, or ALL, optionally followed by a queue name.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Delete messages from the queue, without notification.
    Delete {
        /// Queue ids, or ALL, optionally followed by a queue name.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Retry deferred messages now (all when no id is given).
    Flush { ids: Vec<String> },
}

type Client = pb::queue_client::QueueClient<tonic::transport::Channel>;

async fn connect(cfg: &Config) -> Result<Client, u8> {
    let uri = Config::socket_uri(&cfg.queue.socket);
    // A plain connect first, for a clear message: gRPC would only say
    // "transport error" for a missing socket or a permission problem.
    if let Err(e) = std::os::unix::net::UnixStream::connect(uri.path()) {
        eprintln!(
            "mailctl: cannot connect to queue-manager at {}: {e}",
            uri.path().display()
        );
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            eprintln!("mailctl: the queue socket is for root and the postern group");
            return Err(EXIT_NOPERM);
        }
        return Err(EXIT_TEMPFAIL);
    }
    let channel = postern_ipc::dial(&uri, &postern_ipc::DialOptions::default()).map_err(|e| {
        eprintln!("mailctl: queue-manager at {uri}: {e}");
        EXIT_TEMPFAIL
    })?;
    let mut client = pb::queue_client::QueueClient::new(channel);
    let hello = client
        .handshake(postern_ipc::queue_handshake("mailctl"))
        .await
        .map_err(|s| failed(&format!("queue-manager at {uri}"), &s))?;
    postern_ipc::check_queue_version(hello.get_ref().version.as_ref())
        .map_err(|s| failed("queue-manager", &s))?;
    Ok(client)
}

/// Print a failed call; 75 when the server was unreachable, else 1.
fn failed(what: &str, s: &tonic::Status) -> u8 {
    eprintln!("mailctl: {what}: {}", s.message());
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => EXIT_TEMPFAIL,
        _ => admin::EXIT_FAILURE,
    }
}

pub fn run(file: &Path, cmd: QueueCmd) -> u8 {
    let cfg = match admin::load_config(file) {
        Ok(c) => c,
        Err(code) => return code,
    };
    admin::block_on(async move {
        let mut client = match connect(&cfg).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        match cmd {
            QueueCmd::List { queues } => list(&mut client, queues).await,
            QueueCmd::Show { queue_id, envelope } => show(&mut client, &queue_id, envelope).await,
            QueueCmd::Hold { ids } => admin_op(&mut client, Op::Hold, ids).await,
            QueueCmd::Release { ids } => admin_op(&mut client, Op::Release, ids).await,
            QueueCmd::Delete { ids } => admin_op(&mut client, Op::Delete, ids).await,
            QueueCmd::Flush { ids } => admin_op(&mut client, Op::Flush, ids).await,
        }
    })
}

async fn list(client: &mut Client, queues: Vec<String>) -> u8 {
    let queues = if queues.is_empty() {
        MAILQ_QUEUES.iter().map(|q| q.to_string()).collect()
    } else {
        queues
    };
    match client.list(pb::ListRequest { queues }).await {
        Ok(r) => {
            // Oldest first, whatever queue a message is in (ids sort by time).
            let mut entries = r.into_inner().entries;
            entries.sort_by(|a, b| a.queue_id.cmp(&b.queue_id));
            let text = format_mailq(&entries);
            let mut out = std::io::stdout().lock();
            if out.write_all(text.as_bytes()).is_err() {
                return admin::EXIT_FAILURE;
            }
            0
        }
        Err(s) => failed("list", &s),
    }
}

/// `Thu Dec  3 08:00:13` (Postfix's `%a %b %e %H:%M:%S`), UTC.
fn arrival(unix: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(unix) else {
        return "-".into();
    };
    let fmt = time::macros::format_description!(
        "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second]"
    );
    t.format(&fmt).unwrap_or_else(|_| "-".into())
}

/// Control characters would let a sender or a remote reply rewrite the
/// operator's terminal: they are shown as `?`.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Postfix `mailq` output (long queue id format) for `entries`.
pub fn format_mailq(entries: &[pb::QueueEntry]) -> String {
    if entries.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut out = format!(
        "{:<17} {:>8} {:<19} {}\n",
        "----Queue ID-----", "--Size--", "---Arrival Time----", "--Sender/Recipient------"
    );
    let mut total: u64 = 0;
    for e in entries {
        total = total.saturating_add(e.size);
        let flag = match e.queue.as_str() {
            "active" => "*",
            "hold" => "!",
            "corrupt" => "#",
            _ => "",
        };
        let sender = if e.sender.is_empty() {
            "MAILER-DAEMON".to_string()
        } else {
            printable(&e.sender)
        };
        out.push_str(&format!(
            "{:<17} {:>8} {:>19} {}\n",
            format!("{}{flag}", e.queue_id),
            e.size,
            arrival(e.arrival_unix),
            sender
        ));
        // Reason → recipients, in first-seen order; recipients without a
        // reason (not tried yet) last.
        let mut by_reason: BTreeMap<usize, (String, Vec<String>)> = BTreeMap::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut plain = Vec::new();
        for r in &e.recipients {
            if matches!(r.status.as_str(), "delivered" | "bounced") {
                continue;
            }
            let addr = printable(&r.address);
            if r.status == "deferred" && !r.last_reply.is_empty() {
                let reason = printable(&r.last_reply);
                let n = index.len();
                let k = *index.entry(reason.clone()).or_insert(n);
                by_reason
                    .entry(k)
                    .or_insert_with(|| (reason, Vec::new()))
                    .1
                    .push(addr);
            } else {
                plain.push(addr);
            }
        }
        if e.queue == "hold" && !e.hold_reason.is_empty() {
            by_reason.insert(
                usize::MAX,
                (format!("held: {}", printable(&e.hold_reason)), Vec::new()),
            );
        }
        for (reason, rcpts) in by_reason.into_values() {
            let width = reason.chars().count() + 2;
            out.push_str(&format!(
                "{:pad$}({reason})\n",
                "",
                pad = 78usize.saturating_sub(width)
            ));
            for a in rcpts {
                out.push_str(&format!("{:47}{a}\n", ""));
            }
        }
        for a in plain {
            out.push_str(&format!("{:47}{a}\n", ""));
        }
        out.push('\n');
    }
    let n = entries.len();
    out.push_str(&format!(
        "-- {} Kbytes in {n} Request{}.\n",
        total / 1024,
        if n == 1 { "" } else { "s" }
    ));
    out
}

async fn show(client: &mut Client, id: &str, envelope_only: bool) -> u8 {
    let r = match client
        .inspect(pb::InspectRequest {
            queue_id: id.to_string(),
            with_body: !envelope_only,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return failed(id, &s),
    };
    let Some(e) = r.entry else {
        eprintln!("mailctl: {id}: no entry in the reply");
        return admin::EXIT_FAILURE;
    };
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", format_envelope(&e, r.envelope.as_ref()));
    if !envelope_only {
        let _ = writeln!(out, "*** MESSAGE CONTENTS {}/{} ***", e.queue, e.queue_id);
        let _ = out.write_all(&r.message);
        if !r.message.ends_with(b"\n") {
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "*** MESSAGE FILE END {}/{} ***", e.queue, e.queue_id);
    }
    0
}

/// NOTIFY as written in RCPT TO (`-` = not given).
fn notify_text(r: &pb::Recipient) -> String {
    let mut v = Vec::new();
    for (on, name) in [
        (r.notify_never, "NEVER"),
        (r.notify_success, "SUCCESS"),
        (r.notify_failure, "FAILURE"),
        (r.notify_delay, "DELAY"),
    ] {
        if on {
            v.push(name);
        }
    }
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// The envelope part of `show`, `postcat -q` style: `name: value` lines;
/// `full` (the stored envelope, from servers that send it) adds the DSN
/// parameters and where the message came from.
pub fn format_envelope(e: &pb::QueueEntry, full: Option<&pb::Envelope>) -> String {
    let mut out = format!("*** ENVELOPE RECORDS {}/{} ***\n", e.queue, e.queue_id);
    out.push_str(&format!("message_size: {}\n", e.size));
    out.push_str(&format!(
        "message_arrival_time: {} UTC\n",
        arrival(e.arrival_unix)
    ));
    out.push_str(&format!("sender: {}\n", printable(&e.sender)));
    if !e.hold_reason.is_empty() {
        out.push_str(&format!("hold_reason: {}\n", printable(&e.hold_reason)));
    }
    if let Some(f) = full {
        let ret = match f.ret {
            1 => "FULL",
            2 => "HDRS",
            _ => "-",
        };
        let body = match f.body {
            1 => "8BITMIME",
            2 => "BINARYMIME",
            _ => "7BIT",
        };
        for (k, v) in [
            ("envid", f.envid.as_str()),
            ("ret", ret),
            ("body", body),
            ("smtputf8", if f.smtputf8 { "yes" } else { "no" }),
            ("origin", f.origin.as_str()),
            ("client_helo", f.client_helo.as_str()),
            ("client_address", f.client_address.as_str()),
            ("client_hostname", f.client_hostname.as_str()),
            ("auth_user", f.auth_user.as_str()),
            ("session_id", f.session_id.as_str()),
        ] {
            if !v.is_empty() {
                out.push_str(&format!("{k}: {}\n", printable(v)));
            }
        }
    }
    for (i, r) in e.recipients.iter().enumerate() {
        out.push_str(&format!(
            "recipient: {} ({})\n",
            printable(&r.address),
            r.status
        ));
        if let Some(fr) = full.and_then(|f| f.recipients.get(i)) {
            out.push_str(&format!("  notify: {}\n", notify_text(fr)));
            if !fr.orcpt.is_empty() {
                out.push_str(&format!("  orcpt: {}\n", printable(&fr.orcpt)));
            }
        }
        if !r.last_reply.is_empty() {
            out.push_str(&format!("  last reply: {}\n", printable(&r.last_reply)));
        }
        if r.status == "deferred" && r.next_attempt_unix > 0 {
            out.push_str(&format!(
                "  next attempt: {} UTC\n",
                arrival(r.next_attempt_unix)
            ));
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Hold,
    Release,
    Delete,
    Flush,
}

impl Op {
    /// Queues `ALL` stands for.
    fn all_queues(self) -> &'static [&'static str] {
        match self {
            Op::Hold => &["incoming", "deferred"],
            Op::Release => &["hold"],
            Op::Delete => &["incoming", "deferred", "hold", "corrupt"],
            Op::Flush => &["deferred"],
        }
    }

    fn done(self) -> &'static str {
        match self {
            Op::Hold => "placed on hold",
            Op::Release => "released from hold",
            Op::Delete => "deleted",
            Op::Flush => "scheduled for immediate delivery",
        }
    }
}

/// `ALL [QUEUE]` or explicit ids.
fn expand_all(op: Op, ids: &[String]) -> Result<Option<Vec<String>>, String> {
    match ids.first().map(String::as_str) {
        Some("ALL") => match &ids[1..] {
            [] => Ok(Some(
                op.all_queues().iter().map(|q| q.to_string()).collect(),
            )),
            [q] if postern_queue_names().contains(&q.as_str()) => Ok(Some(vec![q.clone()])),
            [q] => Err(format!("unknown queue {q:?}")),
            _ => Err("ALL takes at most one queue name".into()),
        },
        _ if ids.iter().any(|i| i == "ALL") => Err("ALL must come first".into()),
        _ => Ok(None),
    }
}

fn postern_queue_names() -> [&'static str; 5] {
    ["incoming", "active", "deferred", "hold", "corrupt"]
}

async fn admin_op(client: &mut Client, op: Op, ids: Vec<String>) -> u8 {
    let ids = match expand_all(op, &ids) {
        Err(e) => {
            eprintln!("mailctl: {e}");
            return 64;
        }
        Ok(None) => ids,
        Ok(Some(queues)) => match client.list(pb::ListRequest { queues }).await {
            Ok(r) => {
                let ids: Vec<String> = r
                    .into_inner()
                    .entries
                    .into_iter()
                    .map(|e| e.queue_id)
                    .collect();
                if ids.is_empty() {
                    println!("mailctl: {}: 0 messages", op.done());
                    return 0;
                }
                ids
            }
            Err(s) => return failed("list", &s),
        },
    };
    let asked = ids.len();
    let req = pb::QueueIds { queue_ids: ids };
    let r = match op {
        Op::Hold => client.hold(req).await,
        Op::Release => client.release(req).await,
        Op::Delete => client.delete(req).await,
        Op::Flush => client.flush(req).await,
    };
    match r {
        Ok(r) => {
            let r = r.into_inner();
            println!(
                "mailctl: {}: {} message{}",
                op.done(),
                r.affected,
                if r.affected == 1 { "" } else { "s" }
            );
            for id in &r.not_found {
                eprintln!("mailctl: {id}: no such message");
            }
            let unchanged = asked.saturating_sub(r.affected as usize + r.not_found.len());
            // An empty flush means "every deferred message": nothing to say.
            if unchanged > 0 {
                eprintln!(
                    "mailctl: {unchanged} message{} not changed (being delivered right now, or not in a queue this applies to)",
                    if unchanged == 1 { "" } else { "s" }
                );
            }
            if r.not_found.is_empty() {
                0
            } else {
                admin::EXIT_FAILURE
            }
        }
        Err(s) => failed(
            match op {
                Op::Hold => "hold",
                Op::Release => "release",
                Op::Delete => "delete",
                Op::Flush => "flush",
            },
            &s,
        ),
    }
}

/// `mailq [-C config] [-v]` (and `sendmail -bp`): the queue listing.
pub fn mailq(args: &[OsString]) -> u8 {
    match mailq_config(args) {
        Ok(file) => run(&file, QueueCmd::List { queues: Vec::new() }),
        Err(e) => {
            eprintln!("mailq: {e}");
            eprintln!("usage: mailq [-C config-file]");
            64
        }
    }
}

/// The configuration file for `mailq`: `-C FILE`, `--config FILE`,
/// `$POSTERN_CONFIG`, the default path. `-v` and `-bp` are accepted.
pub fn mailq_config(args: &[OsString]) -> Result<PathBuf, String> {
    super::aliases::entry_point_config(args, &["-v", "-bp"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(a: &str, status: &str, reply: &str) -> pb::RecipientStatus {
        pb::RecipientStatus {
            address: a.into(),
            status: status.into(),
            last_reply: reply.into(),
            next_attempt_unix: 0,
        }
    }

    /// The layout (column widths, the reason right-aligned to column 78,
    /// recipients at column 47, the flags) was checked against the output
    /// of Debian's Postfix 3 `postqueue -p` with `enable_long_queue_ids =
    /// yes` for a deferred and a held message.
    #[test]
    fn mailq_format_matches_postfix_long_ids() {
        let refused = "connect to 127.0.0.1[127.0.0.1]:1: Connection refused";
        let entries = vec![
            pb::QueueEntry {
                queue_id: "0123456789ABCDEF".into(),
                queue: "deferred".into(),
                size: 259,
                // Thu Dec  3 08:00:13 2026 UTC
                arrival_unix: 1_796_284_813,
                sender: "alice@example.test".into(),
                recipients: vec![
                    rcpt("carol@example.org", "deferred", refused),
                    rcpt("done@example.org", "delivered", "250 ok"),
                    rcpt("dave@example.org", "deferred", refused),
                    rcpt("new@example.org", "pending", ""),
                ],
                hold_reason: String::new(),
            },
            pb::QueueEntry {
                queue_id: "0123456789ABCDEG".into(),
                queue: "hold".into(),
                size: 1800,
                arrival_unix: 1_796_284_813,
                sender: String::new(),
                recipients: vec![rcpt("bob@example.org", "pending", "")],
                hold_reason: String::new(),
            },
            pb::QueueEntry {
                queue_id: "0123456789ABCDEH".into(),
                queue: "active".into(),
                size: 10,
                arrival_unix: 1_796_284_813,
                sender: "x\u{1b}[2J@example.test".into(),
                recipients: vec![rcpt("eve@example.org", "pending", "")],
                hold_reason: String::new(),
            },
        ];
        let expected = "\
----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
0123456789ABCDEF       259 Thu Dec  3 08:00:13 alice@example.test
                       (connect to 127.0.0.1[127.0.0.1]:1: Connection refused)
                                               carol@example.org
                                               dave@example.org
                                               new@example.org

0123456789ABCDEG!     1800 Thu Dec  3 08:00:13 MAILER-DAEMON
                                               bob@example.org

0123456789ABCDEH*       10 Thu Dec  3 08:00:13 x?[2J@example.test
                                               eve@example.org

-- 2 Kbytes in 3 Requests.
";
        assert_eq!(format_mailq(&entries), expected);
        assert_eq!(format_mailq(&[]), "Mail queue is empty\n");
        assert!(format_mailq(&entries[1..2]).ends_with("-- 1 Kbytes in 1 Request.\n"));
    }

    #[test]
    fn show_envelope_lists_dsn_parameters_and_status() {
        let e = pb::QueueEntry {
            queue_id: "0123456789ABCDEF".into(),
            queue: "deferred".into(),
            size: 42,
            arrival_unix: 1_796_284_813,
            sender: "alice@example.test".into(),
            recipients: vec![pb::RecipientStatus {
                address: "bob@example.org".into(),
                status: "deferred".into(),
                last_reply: "451 4.3.0 later".into(),
                next_attempt_unix: 1_796_285_113,
            }],
            hold_reason: String::new(),
        };
        let full = pb::Envelope {
            recipients: vec![pb::Recipient {
                address: "bob@example.org".into(),
                notify_failure: true,
                notify_delay: true,
                orcpt: "rfc822;Bob@example.org".into(),
                ..Default::default()
            }],
            ret: 2,
            envid: "E1".into(),
            origin: "smtpd".into(),
            ..Default::default()
        };
        assert_eq!(
            format_envelope(&e, Some(&full)),
            "*** ENVELOPE RECORDS deferred/0123456789ABCDEF ***\n\
             message_size: 42\n\
             message_arrival_time: Thu Dec  3 08:00:13 UTC\n\
             sender: alice@example.test\n\
             envid: E1\n\
             ret: HDRS\n\
             body: 7BIT\n\
             smtputf8: no\n\
             origin: smtpd\n\
             recipient: bob@example.org (deferred)\n\
             \x20 notify: FAILURE,DELAY\n\
             \x20 orcpt: rfc822;Bob@example.org\n\
             \x20 last reply: 451 4.3.0 later\n\
             \x20 next attempt: Thu Dec  3 08:05:13 UTC\n"
        );
        // An older server without the envelope: the basic lines only.
        assert!(!format_envelope(&e, None).contains("notify:"));
    }

    /// A message the check pipeline held: mailq shows the reason where a
    /// deferral reason goes, `show` as `hold_reason:`; a message in another
    /// queue (released) keeps it in `show` only.
    #[test]
    fn hold_reason_in_mailq_and_show() {
        let mut e = pb::QueueEntry {
            queue_id: "0123456789ABCDEG".into(),
            queue: "hold".into(),
            size: 1800,
            arrival_unix: 1_796_284_813,
            sender: "alice@example.test".into(),
            recipients: vec![rcpt("bob@example.org", "pending", "")],
            hold_reason: "audit: rule secret\u{1b}[2J matched in body".into(),
        };
        let expected = "\
----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
0123456789ABCDEG!     1800 Thu Dec  3 08:00:13 alice@example.test
                                (held: audit: rule secret?[2J matched in body)
                                               bob@example.org

-- 1 Kbytes in 1 Request.
";
        assert_eq!(format_mailq(std::slice::from_ref(&e)), expected);
        assert!(
            format_envelope(&e, None)
                .contains("\nhold_reason: audit: rule secret?[2J matched in body\n")
        );
        e.queue = "deferred".into();
        assert!(!format_mailq(std::slice::from_ref(&e)).contains("held:"));
        assert!(format_envelope(&e, None).contains("\nhold_reason: "));
    }

    #[test]
    fn all_expands_to_the_queues_of_the_operation() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            expand_all(Op::Hold, &v(&["ALL"])).unwrap(),
            Some(v(&["incoming", "deferred"]))
        );
        assert_eq!(
            expand_all(Op::Delete, &v(&["ALL", "deferred"])).unwrap(),
            Some(v(&["deferred"]))
        );
        assert_eq!(expand_all(Op::Release, &v(&["ABC"])).unwrap(), None);
        assert!(expand_all(Op::Delete, &v(&["ALL", "nope"])).is_err());
        assert!(expand_all(Op::Delete, &v(&["X", "ALL"])).is_err());
        assert!(expand_all(Op::Delete, &v(&["ALL", "hold", "deferred"])).is_err());
    }

    #[test]
    fn mailq_arguments() {
        let a = |s: &[&str]| s.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            mailq_config(&a(&["-C", "/x.toml", "-v"])).unwrap(),
            PathBuf::from("/x.toml")
        );
        assert_eq!(
            mailq_config(&a(&["-C/y.toml"])).unwrap(),
            PathBuf::from("/y.toml")
        );
        assert!(mailq_config(&a(&["-q"])).is_err());
        assert!(mailq_config(&a(&["-C"])).is_err());
    }
}
