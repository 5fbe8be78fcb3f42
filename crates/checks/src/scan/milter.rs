//! `[[checks.milter]]`: the MTA side of the Sendmail/Postfix milter
//! protocol (version 6), so existing milters (OpenDKIM, clamav-milter,
//! rspamd's proxy, …) plug into the pipeline.
//!
//! One milter connection per SMTP connection, opened at the connect stage:
//! option negotiation, then CONNECT, HELO, MAIL, RCPT, and at end-of-data
//! DATA, the header fields, EOH, the body in chunks and BODYEOB; ABORT when
//! a transaction ends early, QUIT at the end. Macros sent (Postfix's
//! defaults, where we know the value): `j`, `{daemon_name}` (`MTA` on the MX
//! role, `MSA` on submission, Sendmail's names), `v`, `_`, `{client_addr}`,
//! `{client_port}`, `{client_name}` (`unknown`: no reverse lookup here),
//! `{tls_version}` (only whether TLS is on), `i` (the session id and a
//! transaction number: the queue id is assigned after end-of-data),
//! `{auth_authen}`, `{mail_addr}`, `{rcpt_addr}`.
//!
//! Replies: continue; accept (no more milter calls for the connection or
//! the message); reject → `550 5.7.1`, tempfail → `451 4.7.1`, or the
//! milter's own reply (`SMFIR_REPLYCODE`, 4xx/5xx only); discard; at
//! end-of-message quarantine → hold, add/insert header → prepended header
//! field, add recipient → archive copy. The queue only prepends, so changing
//! or deleting header fields, replacing the body, removing recipients and
//! changing the sender are not offered in the negotiation: a milter that
//! requires them fails negotiation (libmilter logs "does not fulfill action
//! requirements") and the default action applies. Inserted fields go to the
//! top whatever index the milter asks for.
//!
//! A milter that cannot be reached, times out, or breaks the protocol gets
//! `default_action` (Postfix's `milter_default_action`): accept, tempfail
//! (default), reject or quarantine, for the rest of the SMTP connection.

pub mod codec;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use postern_common::checks::scan::{MilterConfig, MilterDefaultAction, ScanSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::codec::{Command, Family, Reply};
use super::Stream;
use crate::{Action, Check, CheckSession, Connection, Envelope, Role, Verdict};

const NAME: &str = "milter";

/// Longest header field name a milter may add.
pub const MAX_HEADER_NAME: usize = 100;
/// Longest header field value a milter may add (a DKIM or ARC signature with
/// a 4096-bit key is about 1 KiB).
pub const MAX_HEADER_VALUE: usize = 16 * 1024;
/// Most modification replies accepted for one message.
pub const MAX_MODIFICATIONS: usize = 100;
/// Progress replies may stretch the wait for one reply to this many times
/// its timeout, no more.
pub const MAX_PROGRESS_FACTOR: u32 = 10;

/// Why the milter could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MilterError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("no reply to {0} in time")]
    Timeout(&'static str),
    #[error("connection closed by the milter")]
    Closed,
    #[error("{0}")]
    Codec(#[from] codec::CodecError),
    #[error("negotiation: {0}")]
    Negotiation(String),
    #[error("unexpected reply {reply} to {step}")]
    Unexpected {
        reply: &'static str,
        step: &'static str,
    },
    #[error("invalid reply code {0:?}")]
    BadReplyCode(String),
    #[error("milter ended the connection ({0})")]
    Gone(&'static str),
    #[error("more than {MAX_MODIFICATIONS} modifications")]
    TooManyModifications,
}

/// One configured milter.
pub struct MilterCheck {
    name: String,
    socket: ScanSocket,
    connect_timeout: Duration,
    command_timeout: Duration,
    content_timeout: Duration,
    default_action: MilterDefaultAction,
    myhostname: String,
}

impl MilterCheck {
    pub fn new(cfg: &MilterConfig, myhostname: &str) -> anyhow::Result<Self> {
        let socket = cfg
            .socket
            .clone()
            .ok_or_else(|| anyhow::anyhow!("socket: missing (unix:/path or inet:host:port)"))?;
        Ok(Self {
            name: if cfg.name.is_empty() {
                socket.to_string()
            } else {
                cfg.name.clone()
            },
            socket,
            connect_timeout: cfg.connect_timeout,
            command_timeout: cfg.command_timeout,
            content_timeout: cfg.content_timeout,
            default_action: cfg.default_action,
            myhostname: myhostname.to_string(),
        })
    }
}

impl Check for MilterCheck {
    fn name(&self) -> &'static str {
        NAME
    }

    fn session(self: Arc<Self>, _conn: &Connection) -> Box<dyn CheckSession> {
        Box::new(MilterSession {
            m: self,
            state: State::Idle,
            tx: 0,
            in_tx: false,
            tx_accepted: false,
            tx_discard: false,
            tx_hold: None,
            conn_refusal: None,
        })
    }
}

/// A negotiated milter connection.
struct Link {
    stream: Box<dyn Stream>,
    rbuf: Vec<u8>,
    actions: u32,
    protocol: u32,
}

impl Link {
    async fn send(&mut self, cmds: &[Command<'_>], timeout: Duration) -> Result<(), MilterError> {
        let mut out = Vec::new();
        for c in cmds {
            c.encode(&mut out);
        }
        let step = step_name(cmds.last().map(|c| c.code()).unwrap_or(b'?'));
        match tokio::time::timeout(timeout, self.stream.write_all(&out)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(MilterError::Timeout(step)),
        }
    }

    /// The next reply that is not "progress", within `timeout`. A progress
    /// reply restarts the wait (Postfix does the same), but not beyond
    /// [`MAX_PROGRESS_FACTOR`] times `timeout` in all; bytes of a packet
    /// trickling in do not restart it.
    async fn reply(&mut self, step: &'static str, timeout: Duration) -> Result<Reply, MilterError> {
        let start = tokio::time::Instant::now();
        let hard = start + timeout * MAX_PROGRESS_FACTOR;
        let mut deadline = start + timeout;
        loop {
            match codec::decode(&mut self.rbuf)? {
                Some(Reply::Progress) => {
                    deadline = (tokio::time::Instant::now() + timeout).min(hard);
                    continue;
                }
                Some(r) => return Ok(r),
                None => {}
            }
            let mut buf = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(r) => r?,
                Err(_) => return Err(MilterError::Timeout(step)),
            };
            if n == 0 {
                return Err(MilterError::Closed);
            }
            self.rbuf.extend_from_slice(&buf[..n]);
        }
    }
}

fn step_name(code: u8) -> &'static str {
    match code {
        b'O' => "option negotiation",
        b'C' => "connect",
        b'H' => "helo",
        b'M' => "mail",
        b'R' => "rcpt",
        b'T' => "data",
        b'L' => "header",
        b'N' => "end of header",
        b'B' => "body",
        b'E' => "end of message",
        b'A' => "abort",
        b'Q' => "quit",
        _ => "command",
    }
}

enum State {
    /// Not connected yet.
    Idle,
    Up(Link),
    /// The milter accepted the connection: no more calls.
    Accepted(Link),
    /// Unreachable or broken: the default action applies.
    Down,
}

struct MilterSession {
    m: Arc<MilterCheck>,
    state: State,
    /// Transactions started on this connection (for the `i` macro).
    tx: u32,
    /// MAIL was sent and neither end-of-message nor ABORT yet.
    in_tx: bool,
    /// The milter accepted the message: no more calls until the next one.
    tx_accepted: bool,
    /// The milter asked to discard the message (said at MAIL or RCPT,
    /// applied at end-of-data).
    tx_discard: bool,
    /// Hold asked for before end-of-data (default action `quarantine`).
    tx_hold: Option<String>,
    /// The milter refused the connection: every later stage is refused too.
    conn_refusal: Option<Action>,
}

/// A protocol step: its command byte, the flag that leaves it out, the flag
/// that says the milter does not reply.
struct Step {
    code: u8,
    skip: u32,
    no_reply: u32,
}

const CONNECT: Step = Step {
    code: b'C',
    skip: codec::SMFIP_NOCONNECT,
    no_reply: codec::SMFIP_NR_CONN,
};
const HELO: Step = Step {
    code: b'H',
    skip: codec::SMFIP_NOHELO,
    no_reply: codec::SMFIP_NR_HELO,
};
const MAIL: Step = Step {
    code: b'M',
    skip: codec::SMFIP_NOMAIL,
    no_reply: codec::SMFIP_NR_MAIL,
};
const RCPT: Step = Step {
    code: b'R',
    skip: codec::SMFIP_NORCPT,
    no_reply: codec::SMFIP_NR_RCPT,
};
const DATA: Step = Step {
    code: b'T',
    skip: codec::SMFIP_NODATA,
    no_reply: codec::SMFIP_NR_DATA,
};
const HEADER: Step = Step {
    code: b'L',
    skip: codec::SMFIP_NOHDRS,
    no_reply: codec::SMFIP_NR_HDR,
};
const EOH: Step = Step {
    code: b'N',
    skip: codec::SMFIP_NOEOH,
    no_reply: codec::SMFIP_NR_EOH,
};
const BODY: Step = Step {
    code: b'B',
    skip: codec::SMFIP_NOBODY,
    no_reply: codec::SMFIP_NR_BODY,
};

fn reject(text: &str) -> Action {
    Action::Reject {
        code: 550,
        enhanced: (5, 7, 1),
        text: text.into(),
    }
}

fn tempfail() -> Action {
    Action::TempFail {
        code: 451,
        enhanced: (4, 7, 1),
        text: "Service unavailable - try again later".into(),
    }
}

/// A `SMFIR_REPLYCODE` as an action.
fn reply_code_action(s: &str) -> Result<Action, MilterError> {
    let r = codec::parse_reply_code(s).ok_or_else(|| MilterError::BadReplyCode(s.to_string()))?;
    let text = if r.text.is_empty() {
        "Command rejected".to_string()
    } else {
        r.text
    };
    Ok(if r.code >= 500 {
        Action::Reject {
            code: r.code,
            enhanced: r.enhanced.unwrap_or((5, 7, 1)),
            text,
        }
    } else {
        Action::TempFail {
            code: r.code,
            enhanced: r.enhanced.unwrap_or((4, 7, 1)),
            text,
        }
    })
}

/// A header field a milter wants added, made safe to prepend: a valid
/// field name, folds as CRLF + whitespace (a continuation line without
/// leading whitespace gets a tab, so no new field or body can be injected),
/// no blank lines or control characters.
pub fn header_field(name: &str, value: &str, leadspc: bool) -> Option<(String, String)> {
    if name.is_empty()
        || name.len() > MAX_HEADER_NAME
        || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        || value.len() > MAX_HEADER_VALUE
    {
        return None;
    }
    let mut lines = Vec::new();
    for (i, line) in value.split('\n').enumerate() {
        let line: String = line
            .trim_end_matches('\r')
            .chars()
            .filter(|c| *c == '\t' || !c.is_control())
            .collect();
        if i == 0 {
            // Our separator is ": ": with HDR_LEADSPC the milter's value
            // carries its own space.
            let first = if leadspc {
                line.strip_prefix(' ').unwrap_or(&line).to_string()
            } else {
                line
            };
            lines.push(first);
        } else if line.trim().is_empty() {
            continue;
        } else if line.starts_with([' ', '\t']) {
            lines.push(line);
        } else {
            lines.push(format!("\t{line}"));
        }
    }
    Some((name.to_string(), lines.join("\r\n")))
}

/// A header field as sent to the milter: name, value.
pub type Field<'a> = (&'a [u8], Vec<u8>);

/// The header fields (name, value with folds as LF and the leading space
/// removed unless `leadspc`) and the body of a CRLF message. A line that
/// is neither a field nor a continuation ends the header.
pub fn split_message(msg: &[u8], leadspc: bool) -> (Vec<Field<'_>>, &[u8]) {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        let (line, next) = match msg[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => (&msg[pos..pos + i], pos + i + 1),
            None => (&msg[pos..], msg.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return (fields, &msg[next..]);
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = fields.last_mut() {
                value.push(b'\n');
                value.extend_from_slice(line);
                pos = next;
                continue;
            }
            return (fields, &msg[pos..]);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return (fields, &msg[pos..]);
        };
        let name = line[..colon].trim_ascii_end();
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
            return (fields, &msg[pos..]);
        }
        let mut value = &line[colon + 1..];
        if !leadspc {
            value = value.trim_ascii_start();
        }
        fields.push((name, value.to_vec()));
        pos = next;
    }
    (fields, &msg[msg.len()..])
}

impl MilterSession {
    fn default_verdicts(&mut self, why: &str) -> Vec<Verdict> {
        let reason = format!("{}: {why}", self.m.name);
        match self.m.default_action {
            MilterDefaultAction::Accept => Vec::new(),
            MilterDefaultAction::Tempfail => vec![Verdict::new(NAME, tempfail(), reason)],
            MilterDefaultAction::Reject => {
                vec![Verdict::new(NAME, reject("Command rejected"), reason)]
            }
            MilterDefaultAction::Quarantine => {
                self.tx_hold = Some(format!("milter {} unavailable", self.m.name));
                Vec::new()
            }
        }
    }

    fn fail(&mut self, step: &'static str, err: MilterError) -> Vec<Verdict> {
        tracing::warn!(
            milter = %self.m.name,
            step,
            error = %err,
            default_action = ?self.m.default_action,
            "milter unavailable, default action applies"
        );
        self.state = State::Down;
        self.default_verdicts(&format!("unavailable at {step}: {err}"))
    }

    /// Open and negotiate.
    async fn open(&self) -> Result<Link, MilterError> {
        let stream = super::connect(&self.m.socket, self.m.connect_timeout)
            .await
            .map_err(MilterError::Connect)?;
        let mut link = Link {
            stream,
            rbuf: Vec::new(),
            actions: 0,
            protocol: 0,
        };
        link.send(
            &[Command::OptNeg {
                version: codec::VERSION,
                actions: codec::OFFERED_ACTIONS,
                protocol: codec::OFFERED_PROTOCOL,
            }],
            self.m.connect_timeout,
        )
        .await?;
        match link
            .reply("option negotiation", self.m.connect_timeout)
            .await?
        {
            Reply::OptNeg {
                version,
                actions,
                protocol,
            } => {
                if !(2..=codec::VERSION).contains(&version) {
                    return Err(MilterError::Negotiation(format!(
                        "protocol version {version} (we speak 2 to {})",
                        codec::VERSION
                    )));
                }
                if actions & !codec::OFFERED_ACTIONS != 0
                    || protocol & !codec::OFFERED_PROTOCOL != 0
                {
                    tracing::warn!(
                        milter = %self.m.name,
                        actions = format!("{actions:#x}"),
                        protocol = format!("{protocol:#x}"),
                        "milter asked for actions or protocol steps not offered; ignored"
                    );
                }
                link.actions = actions & codec::OFFERED_ACTIONS;
                link.protocol = protocol & codec::OFFERED_PROTOCOL;
                tracing::debug!(
                    milter = %self.m.name,
                    version,
                    actions = format!("{:#x}", link.actions),
                    protocol = format!("{:#x}", link.protocol),
                    "milter negotiated"
                );
                Ok(link)
            }
            other => Err(MilterError::Unexpected {
                reply: other.name(),
                step: "option negotiation",
            }),
        }
    }

    /// Send one step (with its macros) and wait for the reply, unless the
    /// milter left the step out (`None`) or does not reply to it
    /// (`Continue`).
    async fn step(
        link: &mut Link,
        step: &Step,
        macros: &[(&str, String)],
        cmd: Command<'_>,
        timeout: Duration,
    ) -> Result<Option<Reply>, MilterError> {
        if link.protocol & step.skip != 0 {
            return Ok(None);
        }
        let macro_cmd = Command::Macro {
            stage: step.code,
            pairs: macros,
        };
        if macros.is_empty() {
            link.send(&[cmd], timeout).await?;
        } else {
            link.send(&[macro_cmd, cmd], timeout).await?;
        }
        if link.protocol & step.no_reply != 0 {
            return Ok(Some(Reply::Continue));
        }
        link.reply(step_name(step.code), timeout).await.map(Some)
    }

    /// Open the connection and send CONNECT, once.
    async fn ensure_connected(&mut self, conn: &Connection) -> Vec<Verdict> {
        if !matches!(self.state, State::Idle) {
            return Vec::new();
        }
        let mut link = match self.open().await {
            Ok(l) => l,
            Err(e) => return self.fail("connect", e),
        };
        let (family, address) = match conn.ip {
            IpAddr::V4(a) => (Family::Inet4, a.to_string()),
            IpAddr::V6(a) => (Family::Inet6, a.to_string()),
        };
        let hostname = format!("[{address}]");
        let macros = vec![
            ("j", self.m.myhostname.clone()),
            (
                "{daemon_name}",
                match conn.role {
                    Role::Mx => "MTA".to_string(),
                    Role::Submission => "MSA".to_string(),
                },
            ),
            ("v", format!("postern {}", env!("CARGO_PKG_VERSION"))),
            ("_", format!("unknown [{address}]")),
            ("{client_addr}", address.clone()),
            ("{client_port}", conn.port.to_string()),
            ("{client_name}", "unknown".to_string()),
        ];
        let cmd = Command::Connect {
            hostname: &hostname,
            family,
            port: conn.port,
            address: &address,
        };
        let r = Self::step(&mut link, &CONNECT, &macros, cmd, self.m.command_timeout).await;
        self.state = State::Up(link);
        match r {
            Ok(r) => self.conn_reply("connect", r),
            Err(e) => self.fail("connect", e),
        }
    }

    /// A reply at connect or HELO.
    fn conn_reply(&mut self, step: &'static str, r: Option<Reply>) -> Vec<Verdict> {
        let action = match r {
            None | Some(Reply::Continue) | Some(Reply::Skip) => return Vec::new(),
            Some(Reply::Accept) => {
                if let State::Up(link) = std::mem::replace(&mut self.state, State::Down) {
                    self.state = State::Accepted(link);
                }
                return Vec::new();
            }
            Some(Reply::Reject) => reject("Command rejected"),
            Some(Reply::TempFail) => tempfail(),
            Some(Reply::ReplyCode(s)) => match reply_code_action(&s) {
                Ok(a) => a,
                Err(e) => return self.fail(step, e),
            },
            Some(Reply::Discard) => {
                tracing::warn!(milter = %self.m.name, step, "discard before a message: ignored");
                return Vec::new();
            }
            Some(Reply::ConnFail) => return self.fail(step, MilterError::Gone("connfail")),
            Some(Reply::Shutdown) => return self.fail(step, MilterError::Gone("shutdown")),
            Some(other) => {
                return self.fail(
                    step,
                    MilterError::Unexpected {
                        reply: other.name(),
                        step,
                    },
                );
            }
        };
        self.conn_refusal = Some(action.clone());
        vec![Verdict::new(
            NAME,
            action,
            format!("{} refused the connection at {step}", self.m.name),
        )]
    }

    /// A reply at MAIL, RCPT or DATA/header/EOH/body.
    fn tx_reply(&mut self, step: &'static str, r: Option<Reply>) -> Vec<Verdict> {
        let action = match r {
            None | Some(Reply::Continue) | Some(Reply::Skip) => return Vec::new(),
            Some(Reply::Accept) => {
                self.tx_accepted = true;
                return Vec::new();
            }
            Some(Reply::Discard) => {
                self.tx_discard = true;
                self.tx_accepted = true;
                return Vec::new();
            }
            Some(Reply::Reject) => reject("Command rejected"),
            Some(Reply::TempFail) => tempfail(),
            Some(Reply::ReplyCode(s)) => match reply_code_action(&s) {
                Ok(a) => a,
                Err(e) => return self.fail(step, e),
            },
            Some(Reply::ConnFail) => return self.fail(step, MilterError::Gone("connfail")),
            Some(Reply::Shutdown) => return self.fail(step, MilterError::Gone("shutdown")),
            Some(other) => {
                return self.fail(
                    step,
                    MilterError::Unexpected {
                        reply: other.name(),
                        step,
                    },
                );
            }
        };
        vec![Verdict::new(
            NAME,
            action,
            format!("{} refused at {step}", self.m.name),
        )]
    }

    /// Common entry of every stage: `Some(verdicts)` when the milter is not
    /// to be asked.
    fn short_circuit(&mut self) -> Option<Vec<Verdict>> {
        if let Some(a) = &self.conn_refusal {
            return Some(vec![Verdict::new(
                NAME,
                a.clone(),
                format!("{} refused the connection", self.m.name),
            )]);
        }
        match self.state {
            State::Down => Some(self.default_verdicts("unavailable")),
            State::Accepted(_) => Some(Vec::new()),
            _ => None,
        }
    }

    fn tx_id(&self, conn: &Connection) -> String {
        format!("{}.{}", conn.session_id, self.tx)
    }

    async fn end_of_message(
        &mut self,
        conn: &Connection,
        message: &[u8],
    ) -> Result<Vec<Verdict>, (&'static str, MilterError)> {
        let i = vec![("i", self.tx_id(conn))];
        let name = self.m.name.clone();
        let State::Up(link) = &mut self.state else {
            return Ok(Vec::new());
        };
        let (cmd_t, content_t) = (self.m.command_timeout, self.m.content_timeout);
        // DATA
        let r = Self::step(link, &DATA, &i, Command::Data, cmd_t)
            .await
            .map_err(|e| ("data", e))?;
        if !matches!(r, None | Some(Reply::Continue)) {
            return Ok(self.tx_reply("data", r));
        }
        let leadspc = link.protocol & codec::SMFIP_HDR_LEADSPC != 0;
        let (fields, body) = split_message(message, leadspc);
        for (fname, value) in &fields {
            let r = Self::step(
                link,
                &HEADER,
                &[],
                Command::Header { name: fname, value },
                cmd_t,
            )
            .await
            .map_err(|e| ("header", e))?;
            if !matches!(r, None | Some(Reply::Continue)) {
                return Ok(self.tx_reply("header", r));
            }
        }
        let r = Self::step(link, &EOH, &i, Command::Eoh, cmd_t)
            .await
            .map_err(|e| ("end of header", e))?;
        if !matches!(r, None | Some(Reply::Continue)) {
            return Ok(self.tx_reply("end of header", r));
        }
        for chunk in body.chunks(codec::BODY_CHUNK) {
            let r = Self::step(link, &BODY, &[], Command::Body(chunk), content_t)
                .await
                .map_err(|e| ("body", e))?;
            match r {
                None | Some(Reply::Continue) => {}
                Some(Reply::Skip) if link.protocol & codec::SMFIP_SKIP != 0 => break,
                other => return Ok(self.tx_reply("body", other)),
            }
            if link.protocol & BODY.skip != 0 {
                break;
            }
        }
        // End of message: modifications, then the verdict.
        let eom = [Command::Macro {
            stage: b'E',
            pairs: &i,
        }];
        link.send(&eom, cmd_t)
            .await
            .map_err(|e| ("end of message", e))?;
        link.send(&[Command::BodyEob], content_t)
            .await
            .map_err(|e| ("end of message", e))?;
        let mut mods = Vec::new();
        loop {
            let r = link
                .reply("end of message", content_t)
                .await
                .map_err(|e| ("end of message", e))?;
            match r {
                Reply::AddHeader { name: h, value } | Reply::InsHeader { name: h, value, .. } => {
                    match header_field(&h, &value, leadspc) {
                        Some((h, value)) => mods.push(Verdict::new(
                            NAME,
                            Action::AddHeader { name: h, value },
                            format!("{name} added a header field"),
                        )),
                        None => tracing::warn!(
                            milter = %name,
                            field = %h.escape_debug().to_string().chars().take(MAX_HEADER_NAME).collect::<String>(),
                            "invalid header field from milter ignored"
                        ),
                    }
                }
                Reply::Quarantine(reason) => {
                    let reason: String = reason
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(200)
                        .collect();
                    mods.push(Verdict::new(
                        NAME,
                        Action::Hold {
                            reason: format!("milter {name}: {reason}"),
                        },
                        format!("{name} quarantined the message"),
                    ));
                }
                Reply::AddRcpt(rcpt) | Reply::AddRcptPar { rcpt, .. } => {
                    let to = rcpt.trim().trim_start_matches('<').trim_end_matches('>');
                    if to.is_empty()
                        || to.len() > 320
                        || to.contains(|c: char| c.is_control() || c == ' ')
                    {
                        tracing::warn!(milter = %name, "invalid recipient from milter ignored");
                    } else {
                        mods.push(Verdict::new(
                            NAME,
                            Action::Archive { to: to.to_string() },
                            format!("{name} added a recipient"),
                        ));
                    }
                }
                Reply::ChgHeader { .. }
                | Reply::ReplBody(_)
                | Reply::DelRcpt(_)
                | Reply::ChgFrom { .. }
                | Reply::SetSymList => {
                    tracing::warn!(
                        milter = %name,
                        modification = r.name(),
                        "modification not negotiated (the queue only prepends): ignored"
                    );
                }
                Reply::Accept | Reply::Continue => {
                    self.in_tx = false;
                    let mut v = mods;
                    if self.tx_discard {
                        v.push(Verdict::new(
                            NAME,
                            Action::Discard,
                            format!("{name}: discard"),
                        ));
                    }
                    return Ok(v);
                }
                Reply::Discard => {
                    self.in_tx = false;
                    return Ok(vec![Verdict::new(
                        NAME,
                        Action::Discard,
                        format!("{name}: discard"),
                    )]);
                }
                final_reply => {
                    self.in_tx = false;
                    return Ok(self.tx_reply("end of message", Some(final_reply)));
                }
            }
            if mods.len() > MAX_MODIFICATIONS {
                return Err(("end of message", MilterError::TooManyModifications));
            }
        }
    }
}

#[async_trait::async_trait]
impl CheckSession for MilterSession {
    async fn connect(&mut self, conn: &Connection) -> Vec<Verdict> {
        self.ensure_connected(conn).await
    }

    async fn helo(&mut self, conn: &Connection) -> Vec<Verdict> {
        let v = self.ensure_connected(conn).await;
        if !v.is_empty() {
            return v;
        }
        if let Some(v) = self.short_circuit() {
            return v;
        }
        let State::Up(link) = &mut self.state else {
            return Vec::new();
        };
        let mut macros = Vec::new();
        if conn.tls {
            macros.push(("{tls_version}", "TLS".to_string()));
        }
        let r = Self::step(
            link,
            &HELO,
            &macros,
            Command::Helo(&conn.helo),
            self.m.command_timeout,
        )
        .await;
        match r {
            Ok(r) => self.conn_reply("helo", r),
            Err(e) => self.fail("helo", e),
        }
    }

    async fn mail(&mut self, conn: &Connection, sender: &str) -> Vec<Verdict> {
        let v = self.ensure_connected(conn).await;
        if !v.is_empty() {
            return v;
        }
        if let Some(v) = self.short_circuit() {
            return v;
        }
        self.tx += 1;
        self.tx_accepted = false;
        self.tx_discard = false;
        let mut macros = vec![("i", self.tx_id(conn)), ("{mail_addr}", sender.to_string())];
        if let Some(user) = &conn.auth_user {
            macros.push(("{auth_authen}", user.clone()));
        }
        let State::Up(link) = &mut self.state else {
            return Vec::new();
        };
        let arg = format!("<{sender}>");
        self.in_tx = true;
        let r = Self::step(
            link,
            &MAIL,
            &macros,
            Command::Mail(&[&arg]),
            self.m.command_timeout,
        )
        .await;
        match r {
            Ok(r) => self.tx_reply("mail", r),
            Err(e) => self.fail("mail", e),
        }
    }

    async fn rcpt(&mut self, conn: &Connection, _sender: &str, rcpt: &str) -> Vec<Verdict> {
        if let Some(v) = self.short_circuit() {
            return v;
        }
        if self.tx_accepted || !self.in_tx {
            return Vec::new();
        }
        let macros = vec![("i", self.tx_id(conn)), ("{rcpt_addr}", rcpt.to_string())];
        let State::Up(link) = &mut self.state else {
            return Vec::new();
        };
        let arg = format!("<{rcpt}>");
        let r = Self::step(
            link,
            &RCPT,
            &macros,
            Command::Rcpt(&[&arg]),
            self.m.command_timeout,
        )
        .await;
        match r {
            Ok(r) => self.tx_reply("rcpt", r),
            Err(e) => self.fail("rcpt", e),
        }
    }

    async fn data(&mut self, conn: &Connection, _env: &Envelope, message: &[u8]) -> Vec<Verdict> {
        let mut v = match self.short_circuit() {
            Some(v) => v,
            None if self.tx_accepted || !self.in_tx => Vec::new(),
            // A transaction the milter ended before end-of-message (a
            // refusal at DATA, a header or the body) stays open: the
            // reset that follows sends ABORT, as Sendmail and Postfix do.
            None => match self.end_of_message(conn, message).await {
                Ok(v) => v,
                Err((step, e)) => self.fail(step, e),
            },
        };
        if self.tx_discard && !v.iter().any(|x| matches!(x.action, Action::Discard)) {
            v.push(Verdict::new(
                NAME,
                Action::Discard,
                format!("{}: discard", self.m.name),
            ));
        }
        if let Some(reason) = self.tx_hold.take() {
            v.push(Verdict::new(
                NAME,
                Action::Hold {
                    reason: reason.clone(),
                },
                reason,
            ));
        }
        v
    }

    async fn reset(&mut self) {
        if self.in_tx
            && let State::Up(link) | State::Accepted(link) = &mut self.state
            && let Err(e) = link.send(&[Command::Abort], self.m.command_timeout).await
        {
            tracing::debug!(milter = %self.m.name, error = %e, "milter abort failed");
            self.state = State::Down;
        }
        self.in_tx = false;
        self.tx_accepted = false;
        self.tx_discard = false;
        self.tx_hold = None;
    }

    async fn close(&mut self) {
        if let State::Up(link) | State::Accepted(link) = &mut self.state {
            let _ = link.send(&[Command::Quit], self.m.command_timeout).await;
            let _ = link.stream.shutdown().await;
        }
        self.state = State::Down;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn conn() -> Connection {
        Connection {
            session_id: "s1".into(),
            ip: "192.0.2.7".parse().unwrap(),
            port: 4242,
            role: Role::Mx,
            trusted: false,
            helo: "client.example.org".into(),
            tls: false,
            auth_user: None,
            hostname: "mx.example.test".into(),
        }
    }

    /// A milter check on a scripted loopback peer.
    async fn check(
        default_action: MilterDefaultAction,
        command_timeout: Duration,
    ) -> (Arc<MilterCheck>, TcpListener) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = MilterConfig {
            socket: Some(ScanSocket::Inet(l.local_addr().unwrap().to_string())),
            command_timeout,
            content_timeout: command_timeout,
            default_action,
            ..MilterConfig::default()
        };
        (
            Arc::new(MilterCheck::new(&cfg, "mx.example.test").unwrap()),
            l,
        )
    }

    /// One packet from the MTA: (command, data).
    async fn packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let mut data = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut data).await.ok()?;
        let code = data.remove(0);
        Some((code, data))
    }

    async fn reply(s: &mut TcpStream, code: u8, data: &[u8]) {
        let mut out = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(code);
        out.extend_from_slice(data);
        s.write_all(&out).await.unwrap();
    }

    /// Accept, answer the negotiation with `actions` and `protocol`.
    async fn negotiate(l: &TcpListener, actions: u32, protocol: u32) -> TcpStream {
        let (mut s, _) = l.accept().await.unwrap();
        let (code, data) = packet(&mut s).await.unwrap();
        assert_eq!(code, b'O');
        assert_eq!(&data[0..4], &6u32.to_be_bytes());
        assert_eq!(&data[4..8], &codec::OFFERED_ACTIONS.to_be_bytes());
        let mut r = 6u32.to_be_bytes().to_vec();
        r.extend_from_slice(&actions.to_be_bytes());
        r.extend_from_slice(&protocol.to_be_bytes());
        reply(&mut s, b'O', &r).await;
        s
    }

    #[tokio::test]
    async fn a_silent_milter_gets_the_default_action_at_every_stage() {
        for (action, refused) in [
            (MilterDefaultAction::Tempfail, Some(451)),
            (MilterDefaultAction::Reject, Some(550)),
            (MilterDefaultAction::Accept, None),
        ] {
            let (m, l) = check(action, Duration::from_millis(200)).await;
            let peer = tokio::spawn(async move {
                let mut s = negotiate(&l, 0, 0).await;
                // Read CONNECT (with its macros), never answer.
                let mut seen = Vec::new();
                while let Some((code, _)) = packet(&mut s).await {
                    seen.push(code);
                }
                seen
            });
            let c = conn();
            let mut sess = m.clone().session(&c);
            let code = |v: &[Verdict]| match v.first().map(|v| &v.action) {
                Some(Action::TempFail { code, .. }) | Some(Action::Reject { code, .. }) => {
                    Some(*code)
                }
                _ => None,
            };
            let v = sess.connect(&c).await;
            assert_eq!(code(&v), refused, "{action:?} {v:?}");
            // Down for the rest of the connection: no more packets sent.
            let v = sess.mail(&c, "a@example.org").await;
            assert_eq!(code(&v), refused, "{action:?} {v:?}");
            sess.close().await;
            drop(sess);
            assert_eq!(peer.await.unwrap(), vec![b'D', b'C']);
        }
    }

    #[tokio::test]
    async fn a_refusal_before_end_of_message_is_followed_by_abort() {
        let (m, l) = check(MilterDefaultAction::Accept, Duration::from_secs(30)).await;
        let peer = tokio::spawn(async move {
            let mut s = negotiate(&l, 0, 0).await;
            let mut seen = Vec::new();
            while let Some((code, _)) = packet(&mut s).await {
                seen.push(code);
                match code {
                    b'C' | b'H' | b'M' | b'R' => reply(&mut s, b'c', b"").await,
                    b'T' => reply(&mut s, b't', b"").await,
                    _ => {}
                }
            }
            seen
        });
        let c = conn();
        let mut sess = m.clone().session(&c);
        assert!(sess.connect(&c).await.is_empty());
        assert!(sess.helo(&c).await.is_empty());
        assert!(sess.mail(&c, "a@example.org").await.is_empty());
        assert!(
            sess.rcpt(&c, "a@example.org", "b@example.test")
                .await
                .is_empty()
        );
        let v = sess
            .data(&c, &Envelope::default(), b"A: b\r\n\r\nx\r\n")
            .await;
        assert!(
            matches!(v[0].action, Action::TempFail { code: 451, .. }),
            "{v:?}"
        );
        sess.reset().await;
        sess.close().await;
        drop(sess);
        assert_eq!(String::from_utf8_lossy(&peer.await.unwrap()), "DCHDMDRDTAQ");
    }

    #[tokio::test]
    async fn endless_progress_replies_do_not_stall_the_session() {
        let (m, l) = check(MilterDefaultAction::Tempfail, Duration::from_millis(100)).await;
        tokio::spawn(async move {
            let mut s = negotiate(&l, 0, 0).await;
            packet(&mut s).await; // macros
            packet(&mut s).await; // CONNECT
            loop {
                let mut p = 1u32.to_be_bytes().to_vec();
                p.push(b'p');
                if s.write_all(&p).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let c = conn();
        let mut sess = m.clone().session(&c);
        let v = sess.connect(&c).await;
        assert!(matches!(v[0].action, Action::TempFail { .. }), "{v:?}");
        assert!(v[0].reason.contains("no reply to connect"), "{v:?}");
    }

    #[tokio::test]
    async fn an_oversized_or_malformed_reply_is_a_milter_failure() {
        let (m, l) = check(MilterDefaultAction::Reject, Duration::from_secs(30)).await;
        let peer = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            packet(&mut s).await.unwrap();
            s.write_all(&[0xff, 0xff, 0xff, 0xff, b'O']).await.unwrap();
            // Keep the connection open until the MTA hangs up.
            let _ = packet(&mut s).await;
        });
        let c = conn();
        let mut sess = m.clone().session(&c);
        let v = sess.connect(&c).await;
        assert!(
            matches!(v[0].action, Action::Reject { code: 550, .. }),
            "{v:?}"
        );
        assert!(v[0].reason.contains("limit"), "{v:?}");
        sess.close().await;
        drop(sess);
        peer.await.unwrap();
        // Nobody listening at all.
        let (m, l) = check(MilterDefaultAction::Tempfail, Duration::from_secs(30)).await;
        drop(l);
        let mut sess = m.clone().session(&c);
        let v = sess.connect(&c).await;
        assert!(v[0].reason.contains("cannot connect"), "{v:?}");
        // Quarantine: accepted at every stage, held at end of data.
        let (m, l) = check(MilterDefaultAction::Quarantine, Duration::from_secs(30)).await;
        drop(l);
        let mut sess = m.clone().session(&c);
        assert!(sess.connect(&c).await.is_empty());
        sess.reset().await;
        assert!(sess.mail(&c, "a@example.org").await.is_empty());
        assert!(
            sess.rcpt(&c, "a@example.org", "b@example.test")
                .await
                .is_empty()
        );
        let v = sess.data(&c, &Envelope::default(), b"A: b\r\n\r\n").await;
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            matches!(&v[0].action, Action::Hold { reason } if reason.contains("unavailable")),
            "{v:?}"
        );
    }

    #[tokio::test]
    async fn a_whole_transaction_with_no_reply_steps_skip_and_modifications() {
        let (m, l) = check(MilterDefaultAction::Tempfail, Duration::from_secs(30)).await;
        let protocol = codec::SMFIP_NOHELO | codec::SMFIP_NR_HDR | codec::SMFIP_SKIP;
        let peer = tokio::spawn(async move {
            let mut s = negotiate(&l, codec::SMFIF_ADDHDRS | codec::SMFIF_CHGHDRS, protocol).await;
            let mut seen = Vec::new();
            let mut macros = Vec::new();
            while let Some((code, data)) = packet(&mut s).await {
                seen.push(code);
                match code {
                    b'D' => macros.push(String::from_utf8_lossy(&data).into_owned()),
                    b'C' | b'M' | b'T' | b'N' => reply(&mut s, b'c', b"").await,
                    b'R' if data.starts_with(b"<bob@") => {
                        reply(&mut s, b'y', b"550 5.7.1 not bob\0").await
                    }
                    b'R' => reply(&mut s, b'c', b"").await,
                    // The first body chunk: enough.
                    b'B' => reply(&mut s, b's', b"").await,
                    b'E' => {
                        reply(&mut s, b'p', b"").await;
                        reply(&mut s, b'h', b"X-Scanned\0yes\0").await;
                        reply(&mut s, b'i', b"\0\0\0\0X-Top\0a\nb\0").await;
                        reply(&mut s, b'm', b"\0\0\0\x01Subject\0\0").await;
                        reply(&mut s, b'+', b"<archive@example.test>\0").await;
                        reply(&mut s, b'q', b"looks odd\0").await;
                        reply(&mut s, b'c', b"").await;
                    }
                    _ => {}
                }
            }
            (seen, macros)
        });
        let c = conn();
        let mut sess = m.clone().session(&c);
        assert!(sess.connect(&c).await.is_empty());
        assert!(sess.helo(&c).await.is_empty());
        assert!(sess.mail(&c, "carol@example.org").await.is_empty());
        assert!(
            sess.rcpt(&c, "carol@example.org", "alice@example.test")
                .await
                .is_empty()
        );
        let v = sess.rcpt(&c, "carol@example.org", "bob@example.test").await;
        assert_eq!(
            v[0].action,
            Action::Reject {
                code: 550,
                enhanced: (5, 7, 1),
                text: "not bob".into()
            }
        );
        let mut msg = b"Received: from x\r\nSubject: hi\r\n\r\n".to_vec();
        msg.extend(std::iter::repeat_n(b'x', 3 * codec::BODY_CHUNK));
        let env = Envelope::default();
        let v = sess.data(&c, &env, &msg).await;
        let actions: Vec<_> = v.iter().map(|v| v.action.clone()).collect();
        assert_eq!(
            actions,
            vec![
                Action::AddHeader {
                    name: "X-Scanned".into(),
                    value: "yes".into()
                },
                Action::AddHeader {
                    name: "X-Top".into(),
                    value: "a\r\n\tb".into()
                },
                Action::Archive {
                    to: "archive@example.test".into()
                },
                Action::Hold {
                    reason: format!("milter {}: looks odd", m.socket)
                },
            ]
        );
        sess.reset().await;
        // A second transaction on the same connection, ended by RSET.
        assert!(sess.mail(&c, "dave@example.org").await.is_empty());
        assert!(
            sess.rcpt(&c, "dave@example.org", "alice@example.test")
                .await
                .is_empty()
        );
        sess.reset().await;
        sess.close().await;
        drop(sess);
        let (seen, macros) = peer.await.unwrap();
        // No HELO (NOHELO), two header fields without replies, one body
        // chunk (SKIP), no ABORT after a finished message; ABORT after the
        // second, QUIT.
        assert_eq!(
            String::from_utf8_lossy(&seen),
            "DCDMDRDRDTLLDNBDEDMDRAQ",
            "{seen:?}"
        );
        assert!(macros.iter().any(|m| m.starts_with("Mi\0s1.2\0")));
        assert!(macros[0].starts_with("Cj\0mx.example.test\0{daemon_name}\0MTA\0"));
        assert!(
            macros
                .iter()
                .any(|m| m.contains("{mail_addr}\0carol@example.org\0"))
        );
        assert!(macros.iter().any(|m| m.starts_with("Ei\0s1.1\0")));
    }

    #[test]
    fn header_fields_are_made_safe() {
        type Case<'a> = (&'a str, &'a str, bool, Option<(&'a str, &'a str)>);
        let cases: [Case; 8] = [
            ("X-Spam", "yes", false, Some(("X-Spam", "yes"))),
            (
                "DKIM-Signature",
                "v=1; a=rsa-sha256;\n\tb=abc",
                false,
                Some(("DKIM-Signature", "v=1; a=rsa-sha256;\r\n\tb=abc")),
            ),
            ("X-A", " lead", true, Some(("X-A", "lead"))),
            (
                "X-Inject",
                "a\nBcc: victim@example.org",
                false,
                Some(("X-Inject", "a\r\n\tBcc: victim@example.org")),
            ),
            (
                "X-Blank",
                "a\n\n\nbody",
                false,
                Some(("X-Blank", "a\r\n\tbody")),
            ),
            ("X-Ctl", "a\x07b\r", false, Some(("X-Ctl", "ab"))),
            ("Bad Name", "x", false, None),
            ("", "x", false, None),
        ];
        for (name, value, lead, want) in cases {
            let got = header_field(name, value, lead);
            assert_eq!(
                got.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
                want,
                "{name}: {value:?}"
            );
        }
        assert!(header_field("X", &"a".repeat(MAX_HEADER_VALUE + 1), false).is_none());
        assert!(header_field("X:Y", "a", false).is_none());
    }

    #[test]
    fn messages_split_into_fields_and_body() {
        let msg = b"Received: from x\r\n\tby y\r\nSubject:  hi \r\nX-Empty:\r\n\r\nbody\r\n.\r\n";
        let (f, body) = split_message(msg, false);
        assert_eq!(
            f,
            vec![
                (&b"Received"[..], b"from x\n\tby y".to_vec()),
                (&b"Subject"[..], b"hi ".to_vec()),
                (&b"X-Empty"[..], b"".to_vec()),
            ]
        );
        assert_eq!(body, b"body\r\n.\r\n");
        let (f, _) = split_message(msg, true);
        assert_eq!(f[1].1, b"  hi ".to_vec());
        // No blank line: all header, empty body.
        let (f, body) = split_message(b"A: b\r\n", false);
        assert_eq!((f.len(), body), (1, &b""[..]));
        // A line that is no field starts the body.
        let (f, body) = split_message(b"A: b\r\nnot a field\r\nrest\r\n", false);
        assert_eq!((f.len(), body), (1, &b"not a field\r\nrest\r\n"[..]));
        let (f, body) = split_message(b" leading\r\n", false);
        assert_eq!((f.len(), body), (0, &b" leading\r\n"[..]));
        let (f, body) = split_message(b"", false);
        assert_eq!((f.len(), body), (0, &b""[..]));
    }

    #[test]
    fn reply_codes_become_actions() {
        assert_eq!(
            reply_code_action("554 5.7.1 spam").unwrap(),
            Action::Reject {
                code: 554,
                enhanced: (5, 7, 1),
                text: "spam".into()
            }
        );
        assert_eq!(
            reply_code_action("450 greylisted").unwrap(),
            Action::TempFail {
                code: 450,
                enhanced: (4, 7, 1),
                text: "greylisted".into()
            }
        );
        assert!(reply_code_action("250 ok").is_err());
    }
}
