//! `sendmail` — local submission, compatible with the options that `mail`,
//! `s-nail`, `mutt`, cron and scripts use:
//!
//! ```text
//! sendmail [-t] [-i | -oi] [-f sender | -r sender] [-F full-name] [-C config] [-v] [--] [recipient ...]
//! ```
//!
//! The configuration file is `-C file`, else `$POSTERN_CONFIG`, else
//! `/etc/postern/postern.toml`. The message is read from standard input (a line with a single `.` ends it
//! unless `-i`/`-oi` is given), line ends are normalised to CRLF, missing
//! `From:`, `Date:` and `Message-ID:` headers are added (as Postfix's cleanup
//! does for local submission), `-t` takes recipients from `To:`, `Cc:` and
//! `Bcc:` and removes `Bcc:`. Bare names get `@<myorigin>`. The message goes
//! to queue-manager through the public submission socket
//! (`queue.public_socket`); exit status 0 means queue-manager has it on disk.
//!
//! DSN requests (RFC 3461) as Postfix's sendmail: `-N never` or
//! `-N success,failure,delay` (any of them), `-R full|hdrs`, `-V envid`
//! (printable ASCII, at most 100 characters); they end up in the envelope
//! exactly as the SMTP `NOTIFY`, `RET` and `ENVID` parameters would.
//!
//! Accepted and ignored for compatibility: `-bm`, `-odi`, `-odb`, `-oem`,
//! `-oep`, `-om`, `-oQ…`, `-B type`, `-L label`, `-U`.
//! Refused with a clear message: other `-b` modes except `-bp` (= mailq, see
//! [`crate::cmd::queue`]) and `-bi` (= newaliases, see [`crate::cmd::aliases`]).
//!
//! Exit codes follow sysexits: 64 usage, 65 bad message data, 75 temporary
//! failure (queue unreachable: try again), 78 configuration.

use std::ffi::OsString;
use std::io::Read;

use postern_common::Config;

/// Bound on how much standard input is read: the configured message size
/// limit plus room for the headers we add.
pub const HEADER_ROOM: u64 = 4096;

/// Parsed command line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SendmailArgs {
    pub extract_recipients: bool,
    pub ignore_dots: bool,
    pub sender: Option<String>,
    pub full_name: Option<String>,
    pub verbose: bool,
    pub recipients: Vec<String>,
    /// `-bp` / `-bi`: run as mailq / newaliases instead.
    pub mode: Mode,
    /// `-C file`: configuration file (sendmail's alternate-config option).
    pub config: Option<String>,
    /// `-N`: NOTIFY bits (never=1, success=2, failure=4, delay=8); 0 = not given.
    pub notify: u8,
    /// `-R`: 0 = not given, 1 = FULL, 2 = HDRS.
    pub ret: u8,
    /// `-V`: the envelope id.
    pub envid: String,
}

/// Longest `-V` envelope id (RFC 3461 4.4: 100 characters).
pub const MAX_ENVID: usize = 100;

/// `-N` value: `never`, or a comma list of `success`, `failure`, `delay`.
fn parse_notify(v: &str) -> Result<u8, String> {
    let mut bits = 0u8;
    for w in v.split(',').map(|w| w.trim().to_ascii_lowercase()) {
        bits |= match w.as_str() {
            "never" => 1,
            "success" => 2,
            "failure" => 4,
            "delay" => 8,
            _ => return Err(format!("-N {v:?}: use never or success,failure,delay")),
        };
    }
    if bits & 1 != 0 && bits != 1 {
        return Err("-N never cannot be combined with other values".into());
    }
    Ok(bits)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Deliver,
    ListQueue,
    RebuildAliases,
}

/// Parse sendmail(1) arguments (without argv\[0\]).
pub fn parse_args(args: &[OsString]) -> Result<SendmailArgs, String> {
    let mut out = SendmailArgs::default();
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.to_str()
                .map(str::to_string)
                .ok_or("arguments must be UTF-8")
        })
        .collect::<Result<_, _>>()?;
    let mut i = 0;
    // Takes the value attached (`-fuser`) or the next argument (`-f user`).
    let value = |i: &mut usize, attached: &str, opt: &str| -> Result<String, String> {
        if !attached.is_empty() {
            return Ok(attached.to_string());
        }
        *i += 1;
        args.get(*i)
            .cloned()
            .ok_or(format!("option -{opt} needs a value"))
    };
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            out.recipients.extend(args[i + 1..].iter().cloned());
            break;
        }
        let Some(opt) = a.strip_prefix('-').filter(|o| !o.is_empty()) else {
            out.recipients.push(a.clone());
            i += 1;
            continue;
        };
        let (flag, rest) = opt.split_at(1);
        match flag {
            "t" if rest.is_empty() => out.extract_recipients = true,
            "i" if rest.is_empty() => out.ignore_dots = true,
            "v" if rest.is_empty() => out.verbose = true,
            "U" if rest.is_empty() => {}
            "f" | "r" => out.sender = Some(value(&mut i, rest, flag)?),
            "F" => out.full_name = Some(value(&mut i, rest, flag)?),
            "C" => out.config = Some(value(&mut i, rest, flag)?),
            "N" => out.notify = parse_notify(&value(&mut i, rest, flag)?)?,
            "R" => {
                out.ret = match value(&mut i, rest, flag)?.to_ascii_lowercase().as_str() {
                    "full" => 1,
                    "hdrs" => 2,
                    other => return Err(format!("-R {other:?}: use full or hdrs")),
                }
            }
            "V" => {
                let v = value(&mut i, rest, flag)?;
                if v.is_empty()
                    || v.len() > MAX_ENVID
                    || !v.bytes().all(|b| (33..=126).contains(&b))
                {
                    return Err(format!(
                        "-V: the envelope id must be 1 to {MAX_ENVID} printable ASCII characters"
                    ));
                }
                out.envid = v;
            }
            "B" | "L" => {
                value(&mut i, rest, flag)?;
            }
            "o" => match rest {
                "i" => out.ignore_dots = true,
                "" => return Err("option -o needs a letter".into()),
                // -odi -odb -oem -oep -om -oQ... -oXfoo: delivery-mode and
                // queue options of other MTAs; ours are fixed.
                _ => {}
            },
            "b" => match rest {
                "m" => {}
                "p" => out.mode = Mode::ListQueue,
                "i" => out.mode = Mode::RebuildAliases,
                other => return Err(format!("-b{other} is not supported (use -bm, -bp or -bi)")),
            },
            _ => return Err(format!("unknown option -{opt}")),
        }
        i += 1;
    }
    Ok(out)
}

/// Qualify a bare local name with `@origin`.
pub fn qualify(addr: &str, origin: &str) -> String {
    let a = addr.trim();
    if a.is_empty() || a.contains('@') {
        a.to_string()
    } else {
        format!("{a}@{origin}")
    }
}

/// Read the message from `input`: stop at a lone `.` line unless
/// `ignore_dots`, normalise line ends to CRLF, refuse more than `limit` bytes.
pub fn read_message(
    mut input: impl Read,
    ignore_dots: bool,
    limit: u64,
) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    input
        .by_ref()
        .take(limit + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot read the message: {e}"))?;
    if raw.len() as u64 > limit {
        return Err(format!("message larger than the {limit}-byte limit"));
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if !ignore_dots && body == b"." {
            break;
        }
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// The header block (up to and excluding the empty line) and the rest.
fn split_header(msg: &[u8]) -> (&[u8], &[u8]) {
    if msg.starts_with(b"\r\n") {
        return (&[], msg);
    }
    match msg.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => (&msg[..p + 2], &msg[p + 2..]),
        None => (msg, b""),
    }
}

/// Header fields as (name, raw field including continuation lines).
fn fields(header: &[u8]) -> Vec<(String, &[u8])> {
    let mut out: Vec<(String, &[u8])> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        let end = header[i..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(header.len(), |p| i + p + 2);
        let continuation = matches!(header.get(end), Some(b' ' | b'\t'));
        if !continuation {
            let field = &header[start..end];
            let name = field.split(|&b| b == b':').next().unwrap_or_default();
            out.push((
                String::from_utf8_lossy(name).trim().to_ascii_lowercase(),
                field,
            ));
            start = end;
        }
        i = end;
    }
    out
}

/// The result of preparing a message for the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub sender: String,
    pub recipients: Vec<String>,
    pub message: Vec<u8>,
    /// DSN requests from `-N`, `-R`, `-V` (see [`SendmailArgs`]).
    pub notify: u8,
    pub ret: u8,
    pub envid: String,
}

/// Add missing headers, extract `-t` recipients, drop `Bcc:`.
pub fn prepare(
    args: &SendmailArgs,
    login: &str,
    cfg: &Config,
    message: &[u8],
    now: time::OffsetDateTime,
) -> Result<Prepared, String> {
    let origin = &cfg.global.myorigin;
    let sender = match &args.sender {
        Some(s) if s.is_empty() || s == "<>" => String::new(),
        Some(s) => qualify(s.trim_start_matches('<').trim_end_matches('>'), origin),
        None => qualify(login, origin),
    };
    let (header, body) = split_header(message);
    let fields = fields(header);
    let mut recipients: Vec<String> = args
        .recipients
        .iter()
        .flat_map(|r| r.split(','))
        .map(|r| qualify(r, origin))
        .filter(|r| !r.is_empty())
        .collect();
    if args.extract_recipients {
        for (name, raw) in &fields {
            if matches!(name.as_str(), "to" | "cc" | "bcc") {
                recipients.extend(
                    header_addresses(raw)
                        .into_iter()
                        .map(|a| qualify(&a, origin)),
                );
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    recipients.retain(|r| seen.insert(r.to_ascii_lowercase()));
    if recipients.is_empty() {
        return Err("no recipients given (name them as arguments or use -t)".into());
    }
    let has = |n: &str| fields.iter().any(|(name, _)| name == n);
    let mut out = Vec::with_capacity(message.len() + 256);
    // A trace field like Postfix's pickup adds ("by host (Postfix, from
    // userid N) id ..."): it records the local origin and makes every
    // submission unique, so two identical messages piped in one after the
    // other are two messages (lmtp-delivery's retry de-duplication keys on
    // the bytes).
    let rfc2822 = time::format_description::well_known::Rfc2822;
    out.extend_from_slice(
        format!(
            "Received: by {} (postern sendmail, from user {})\r\n\tid {}.{:09}.{}; {}\r\n",
            cfg.global.myhostname,
            login.replace(|c: char| !c.is_ascii_graphic() || c == ';', "?"),
            now.unix_timestamp(),
            now.nanosecond(),
            std::process::id(),
            now.format(&rfc2822).map_err(|e| e.to_string())?
        )
        .as_bytes(),
    );
    if !has("from") {
        let addr = if sender.is_empty() {
            qualify(login, origin)
        } else {
            sender.clone()
        };
        match &args.full_name {
            Some(name) => out.extend_from_slice(
                format!(
                    "From: \"{}\" <{addr}>\r\n",
                    name.replace(['"', '\\', '\r', '\n'], "")
                )
                .as_bytes(),
            ),
            None => out.extend_from_slice(format!("From: {addr}\r\n").as_bytes()),
        }
    }
    if !has("date") {
        let fmt = time::format_description::well_known::Rfc2822;
        out.extend_from_slice(
            format!("Date: {}\r\n", now.format(&fmt).map_err(|e| e.to_string())?).as_bytes(),
        );
    }
    if !has("message-id") {
        out.extend_from_slice(
            format!(
                "Message-ID: <{}.{}.{}@{}>\r\n",
                now.unix_timestamp(),
                now.nanosecond(),
                std::process::id(),
                cfg.global.myhostname
            )
            .as_bytes(),
        );
    }
    for (name, raw) in &fields {
        if name != "bcc" {
            out.extend_from_slice(raw);
        }
    }
    out.extend_from_slice(body);
    if header.is_empty() && body.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    Ok(Prepared {
        sender,
        recipients,
        message: out,
        notify: args.notify,
        ret: args.ret,
        envid: args.envid.clone(),
    })
}

/// Addresses of an address-list header field, parsed with mail-parser.
fn header_addresses(raw_field: &[u8]) -> Vec<String> {
    let mut msg = raw_field.to_vec();
    msg.extend_from_slice(b"\r\n");
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(&msg) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for h in parsed.headers() {
        if let Some(addr) = h.value().as_address() {
            for a in addr.iter() {
                match (a.address(), a.name()) {
                    (Some(email), _) => out.push(email.to_string()),
                    // A bare local name ("To: bob"): mail-parser sees a display name.
                    (None, Some(name))
                        if !name.trim().is_empty() && !name.contains(char::is_whitespace) =>
                    {
                        out.push(name.trim().to_string())
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// The local login name of the calling user.
pub fn login_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "nobody".into())
}

/// Submit to queue-manager's public socket; returns the queue id.
pub async fn submit(cfg: &Config, p: &Prepared, login: &str) -> Result<String, tonic::Status> {
    use postern_ipc::queue::v1 as q;
    let uri = Config::socket_uri(&cfg.queue.public_socket);
    let channel = postern_ipc::dial(&uri, &postern_ipc::DialOptions::default())
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = q::queue_client::QueueClient::new(channel);
    let hello = client
        .handshake(postern_ipc::queue_handshake("sendmail"))
        .await?;
    postern_ipc::check_queue_version(hello.get_ref().version.as_ref())?;
    let envelope = q::Envelope {
        sender: p.sender.clone(),
        recipients: p
            .recipients
            .iter()
            .map(|r| q::Recipient {
                address: r.clone(),
                notify_never: p.notify & 1 != 0,
                notify_success: p.notify & 2 != 0,
                notify_failure: p.notify & 4 != 0,
                notify_delay: p.notify & 8 != 0,
                orcpt: String::new(),
            })
            .collect(),
        ret: i32::from(p.ret),
        envid: p.envid.clone(),
        body: q::BodyType::Body8bitmime as i32,
        auth_user: login.to_string(),
        origin: "sendmail".into(),
        size_hint: p.message.len() as u64,
        ..Default::default()
    };
    let mut parts = vec![q::EnqueueRequest {
        part: Some(q::enqueue_request::Part::Envelope(envelope)),
    }];
    for chunk in p.message.chunks(64 * 1024) {
        parts.push(q::EnqueueRequest {
            part: Some(q::enqueue_request::Part::Chunk(chunk.to_vec())),
        });
    }
    parts.push(q::EnqueueRequest {
        part: Some(q::enqueue_request::Part::End(q::End {
            total_bytes: p.message.len() as u64,
            ..Default::default()
        })),
    });
    Ok(client
        .enqueue(tokio_stream::iter(parts))
        .await?
        .into_inner()
        .queue_id)
}

/// `sendmail` main: returns the process exit code.
pub fn run(args: &[OsString]) -> u8 {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sendmail: {e}");
            return 64;
        }
    };
    let cfg_path = args
        .config
        .clone()
        .or_else(|| std::env::var(postern_common::config::CONFIG_ENV).ok())
        .unwrap_or_else(|| postern_common::config::DEFAULT_CONFIG_PATH.to_string());
    let cfg = match Config::load(cfg_path.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sendmail: configuration error: {e}");
            return 78;
        }
    };
    match args.mode {
        Mode::Deliver => {}
        Mode::RebuildAliases => {
            return crate::cmd::aliases::run(
                cfg_path.as_ref(),
                crate::cmd::aliases::AliasesCmd::Rebuild,
            );
        }
        Mode::ListQueue => {
            return crate::cmd::queue::run(
                cfg_path.as_ref(),
                crate::cmd::queue::QueueCmd::List { queues: Vec::new() },
            );
        }
    }
    let limit = cfg.global.message_size_limit.saturating_add(HEADER_ROOM);
    let message = match read_message(std::io::stdin().lock(), args.ignore_dots, limit) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("sendmail: {e}");
            return 65;
        }
    };
    let login = login_name();
    let now = time::OffsetDateTime::now_utc();
    let prepared = match prepare(&args, &login, &cfg, &message, now) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sendmail: {e}");
            return 64;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sendmail: {e}");
            return 75;
        }
    };
    match rt.block_on(submit(&cfg, &prepared, &login)) {
        Ok(id) => {
            if args.verbose {
                eprintln!("sendmail: queued as {id}");
            }
            0
        }
        Err(e) => {
            eprintln!(
                "sendmail: cannot submit the message, not sent: {}",
                e.message()
            );
            75
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<SendmailArgs, String> {
        parse_args(&list.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn options_like_mail_mutt_and_cron_use() {
        let a = args(&["-oi", "-t"]).unwrap();
        assert!(a.ignore_dots && a.extract_recipients && a.recipients.is_empty());
        let a = args(&[
            "-i",
            "-fbob@example.test",
            "-FBob B",
            "--",
            "alice",
            "-weird",
        ])
        .unwrap();
        assert_eq!(a.sender.as_deref(), Some("bob@example.test"));
        assert_eq!(a.full_name.as_deref(), Some("Bob B"));
        assert_eq!(a.recipients, ["alice", "-weird"]);
        let a = args(&[
            "-f",
            "<>",
            "-odi",
            "-oem",
            "-bm",
            "-N",
            "never",
            "-C/etc/p.toml",
            "x@y",
        ])
        .unwrap();
        assert_eq!(a.config.as_deref(), Some("/etc/p.toml"));
        assert_eq!(a.sender.as_deref(), Some("<>"));
        assert_eq!(a.recipients, ["x@y"]);
        assert_eq!(args(&["-bp"]).unwrap().mode, Mode::ListQueue);
        assert_eq!(a.notify, 1, "-N never");
        let a = args(&["-N", "success,DELAY", "-Rhdrs", "-V", "env-1", "x@y"]).unwrap();
        assert_eq!((a.notify, a.ret, a.envid.as_str()), (2 | 8, 2, "env-1"));
        assert_eq!(args(&["-R", "FULL"]).unwrap().ret, 1);
        for bad in [
            &["-N", "sometimes"][..],
            &["-N", "never,success"],
            &["-R", "body"],
            &["-V", "has space"],
            &["-V", &"x".repeat(101)],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
        for bad in [&["-bs"][..], &["-f"], &["-q"], &["-o"]] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reading_stops_at_dot_unless_i() {
        let input = b"Subject: x\n\nline\n.\nafter\n";
        assert_eq!(
            read_message(&input[..], false, 1000).unwrap(),
            b"Subject: x\r\n\r\nline\r\n"
        );
        assert_eq!(
            read_message(&input[..], true, 1000).unwrap(),
            b"Subject: x\r\n\r\nline\r\n.\r\nafter\r\n"
        );
        assert_eq!(
            read_message(&b"a\r\nb"[..], true, 1000).unwrap(),
            b"a\r\nb\r\n"
        );
        assert!(read_message(&[b'x'; 2000][..], true, 1000).is_err());
    }

    fn cfg() -> Config {
        let mut c = Config::default();
        c.global.myhostname = "mail.example.test".into();
        c.global.mydomain = "example.test".into();
        c.finalize();
        c
    }

    #[test]
    fn adds_missing_headers_and_extracts_recipients() {
        let a = args(&["-t", "-F", "Root User"]).unwrap();
        let msg = b"To: Alice <alice@example.test>, bob\r\nCc: \"C, c\" <carol@example.org>\r\nBcc: secret@example.org\r\nSubject: hi\r\n\r\nbody\r\n";
        let now = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let p = prepare(&a, "root", &cfg(), msg, now).unwrap();
        assert_eq!(p.sender, "root@example.test");
        assert_eq!(
            p.recipients,
            [
                "alice@example.test",
                "bob@example.test",
                "carol@example.org",
                "secret@example.org"
            ]
        );
        let text = String::from_utf8(p.message).unwrap();
        assert!(text.starts_with("Received: by mail.example.test (postern sendmail, from user root)\r\n\tid 1700000000."), "{text}");
        assert!(text.contains("; Tue, 14 Nov 2023 22:13:20 +0000\r\nFrom: \"Root User\" <root@example.test>\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <1700000000."), "{text}");
        assert!(!text.contains("Bcc") && !text.contains("secret"), "{text}");
        assert!(text.ends_with("Subject: hi\r\n\r\nbody\r\n"), "{text}");
    }

    #[test]
    fn keeps_existing_headers_and_needs_a_recipient() {
        let a = args(&["alice"]).unwrap();
        let msg = b"From: me@example.org\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nhi\r\n";
        let now = time::OffsetDateTime::from_unix_timestamp(0).unwrap();
        let p = prepare(&a, "bob", &cfg(), msg, now).unwrap();
        // Only our trace field in front; the message's own headers are kept.
        let text = String::from_utf8(p.message.clone()).unwrap();
        let (trace, rest) = text.split_once("+0000\r\n").unwrap();
        assert!(
            trace.starts_with("Received: by mail.example.test (postern sendmail, from user bob)\r\n\tid 0.000000000."),
            "{trace}"
        );
        assert_eq!(rest.as_bytes(), msg);
        // Two submissions of the same bytes differ (unique id).
        let later = time::OffsetDateTime::from_unix_timestamp_nanos(1).unwrap();
        assert_ne!(
            prepare(&a, "bob", &cfg(), msg, later).unwrap().message,
            p.message
        );
        assert_eq!(p.recipients, ["alice@example.test"]);
        assert!(prepare(&args(&[]).unwrap(), "bob", &cfg(), msg, now).is_err());
        let p = prepare(
            &args(&["-f", "<>", "x@y.z"]).unwrap(),
            "bob",
            &cfg(),
            b"\r\nbody\r\n",
            now,
        )
        .unwrap();
        assert_eq!(p.sender, "");
    }
}
