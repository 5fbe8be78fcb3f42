//! One IMAP connection: framing, state, commands.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use mailstore::{Mailbox, special_use};
use postern_common::Shutdown;
use postern_common::conn::Conn;
use postern_ipc::auth::v1 as pb;
use postern_ipc::sasl::{SaslExchange, SaslStep};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::Channel;

use crate::codec;
use crate::parse::{self, Framed, Token};

/// RFC 9051 section 5.4: at least 30 minutes once authenticated.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Before login.
pub const PREAUTH_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on a TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Failed commands (BAD/NO for bad input or failed logins) before the
/// connection is closed.
pub const MAX_FAILED_COMMANDS: u32 = 20;
/// Longest keyword name accepted (Dovecot's limit is also in this range).
pub const MAX_KEYWORD_LEN: usize = 128;
/// How often an IDLE session looks for changes when the mailbox is not
/// watched (no inotify).
pub const IDLE_POLL: Duration = Duration::from_millis(500);
/// How often an IDLE session on a watched mailbox looks for changes anyway
/// (wake-ups come from [`crate::notify`]; this only bounds a lost one).
pub const IDLE_POLL_WATCHED: Duration = Duration::from_secs(10);
const READ_CHUNK: usize = 16 * 1024;
/// Read size while no command is in progress (see `Session::fill`).
const IDLE_READ_CHUNK: usize = 1024;
/// Input/output buffer capacity kept between commands; larger ones are freed.
const KEEP_BUFFER: usize = 16 * 1024;

/// What every session shares.
pub struct Shared {
    pub hostname: String,
    pub acceptor: TlsAcceptor,
    pub auth: pb::auth_client::AuthClient<Channel>,
    pub allow_plaintext: bool,
    /// `imapd.mail_max_userip_connections` (0: no limit).
    pub max_userip: usize,
    /// `imapd.client_connection_count_limit` (0: no limit).
    pub max_per_ip: usize,
    /// Logged-in sessions per (user, client IP).
    pub userip: UserIpCounts,
}

/// RFC 4978 COMPRESS=DEFLATE: raw deflate (no zlib header) in both
/// directions, each flush of ours ending with a sync flush.
struct Deflate {
    inflate: flate2::Decompress,
    deflate: flate2::Compress,
}

impl Default for Deflate {
    fn default() -> Self {
        Deflate {
            inflate: flate2::Decompress::new(false),
            deflate: flate2::Compress::new(flate2::Compression::default(), false),
        }
    }
}

impl Deflate {
    /// Inflate `data` onto `out`; an error past `limit` bytes in `out`.
    fn unpack(&mut self, mut data: &[u8], out: &mut Vec<u8>, limit: usize) -> std::io::Result<()> {
        loop {
            out.reserve(READ_CHUNK);
            let (in0, out0) = (self.inflate.total_in(), out.len());
            self.inflate
                .decompress_vec(data, out, flate2::FlushDecompress::None)
                .map_err(std::io::Error::other)?;
            let used = (self.inflate.total_in() - in0) as usize;
            data = &data[used..];
            if out.len() > limit {
                return Err(std::io::Error::other(
                    "inflated input over the command bound",
                ));
            }
            if used == 0 && out.len() == out0 {
                return Ok(());
            }
        }
    }

    /// Deflate `data`, ending with a sync flush so the client can decode
    /// everything sent so far.
    fn pack(&mut self, mut data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        loop {
            out.reserve(READ_CHUNK);
            let in0 = self.deflate.total_in();
            self.deflate
                .compress_vec(data, &mut out, flate2::FlushCompress::Sync)
                .map_err(std::io::Error::other)?;
            data = &data[(self.deflate.total_in() - in0) as usize..];
            if data.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Logged-in sessions per (user, client IP), shared by all sessions.
pub type UserIpCounts = Arc<std::sync::Mutex<HashMap<(String, IpAddr), usize>>>;

/// One logged-in session counted in [`UserIpCounts`]; released on drop.
struct UserIpSlot {
    counts: UserIpCounts,
    key: (String, IpAddr),
}

impl UserIpSlot {
    /// Count a session of `user` from `ip`, unless `limit` (non-zero) are
    /// already there.
    fn acquire(counts: &UserIpCounts, user: &str, ip: IpAddr, limit: usize) -> Option<Self> {
        let key = (user.to_ascii_lowercase(), ip);
        let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.clone()).or_insert(0);
        if limit != 0 && *n >= limit {
            return None;
        }
        *n += 1;
        Some(Self {
            counts: counts.clone(),
            key,
        })
    }
}

impl Drop for UserIpSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

struct Selected {
    _name: String,
    mb: Mailbox,
    /// The mailbox's keywords by letter (`dovecot-keywords`).
    keywords: Vec<String>,
    /// UIDs in MSN order as this session knows them.
    uids: Vec<u32>,
    readonly: bool,
    /// Modification times of `new/`, `cur/` and the keyword list when the
    /// mailbox was last synced (see [`MailboxStamp`]).
    stamp: Option<MailboxStamp>,
}

/// Modification times that change whenever a message arrives, is renamed
/// (flags) or removed, or a keyword is added: `new/`, `cur/`,
/// `dovecot-keywords`. An IDLE session polling every [`IDLE_POLL`] skips
/// the directory scan while they are unchanged, which keeps thousands of
/// idle sessions cheap.
type MailboxStamp = [std::time::SystemTime; 3];

/// Changes within this long of a stamp's times may share their timestamp
/// tick with it (file system time granularity): no skipping then.
const STAMP_SETTLE: Duration = Duration::from_secs(2);

fn mailbox_stamp(dir: &Path) -> Option<MailboxStamp> {
    let m = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified());
    let keywords = m(dir.join(mailstore::KEYWORDS_FILE)).unwrap_or(std::time::UNIX_EPOCH);
    Some([m(dir.join("new")).ok()?, m(dir.join("cur")).ok()?, keywords])
}

struct Session {
    conn: Conn<TcpStream>,
    input: Vec<u8>,
    out: Vec<u8>,
    peer: SocketAddr,
    session_id: String,
    user: Option<String>,
    root: Option<PathBuf>,
    /// The user's quota from the directory (bytes; 0 = none).
    quota_bytes: u64,
    sel: Option<Selected>,
    failures: u32,
    cont_sent: Option<usize>,
    /// RFC 7162 CONDSTORE enabled (ENABLE, or a command that uses it):
    /// untagged FETCH responses with FLAGS then carry MODSEQ.
    condstore: bool,
    /// RFC 7162 QRESYNC enabled: expunges are reported as `* VANISHED`.
    qresync: bool,
    /// `ENABLE IMAP4rev2` (RFC 9051): mailbox names in UTF-8, no RECENT,
    /// SEARCH answered with ESEARCH, a LIST line and `[CLOSED]` at SELECT.
    rev2: bool,
    /// RFC 5182 SEARCHRES: the UIDs of the last `RETURN (SAVE)` search
    /// (`$`); cleared when a mailbox is selected or closed.
    saved: Vec<u32>,
    /// RFC 4978 COMPRESS=DEFLATE, once started.
    deflate: Option<Box<Deflate>>,
    /// This session's place in `mail_max_userip_connections`.
    _userip: Option<UserIpSlot>,
}

enum Flow {
    Continue,
    Close,
}

/// Serve one connection.
pub async fn run(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    implicit_tls: bool,
    shutdown: Shutdown,
) {
    let session_id = postern_common::session_id();
    let span = tracing::info_span!("session", id = %session_id, remote = %peer);
    let _enter = span.enter();
    // Every connection of an address counts (key: the empty user name).
    let Some(_ip_slot) = UserIpSlot::acquire(&shared.userip, "", peer.ip(), shared.max_per_ip)
    else {
        tracing::info!(
            limit = shared.max_per_ip,
            "refused: client_connection_count_limit"
        );
        postern_common::metrics::connection_refused("client_connection_count");
        let mut stream = stream;
        let _ = tokio::time::timeout(
            TLS_HANDSHAKE_TIMEOUT,
            stream.write_all(b"* BYE Too many connections from your address\r\n"),
        )
        .await;
        return;
    };
    let conn = if implicit_tls {
        match tokio::time::timeout(
            TLS_HANDSHAKE_TIMEOUT,
            Conn::accept_tls(stream, &shared.acceptor),
        )
        .await
        {
            Ok(Ok(c)) => c,
            _ => {
                tracing::info!("TLS handshake failed");
                return;
            }
        }
    } else {
        Conn::Plain(stream)
    };
    let mut s = Session {
        conn,
        input: Vec::new(),
        out: Vec::new(),
        peer,
        session_id,
        user: None,
        root: None,
        quota_bytes: 0,
        sel: None,
        failures: 0,
        cont_sent: None,
        condstore: false,
        qresync: false,
        rev2: false,
        saved: Vec::new(),
        deflate: None,
        _userip: None,
    };
    tracing::info!(tls = s.conn.is_tls(), "connected");
    let caps = s.capabilities(&shared);
    s.out.extend_from_slice(
        format!(
            "* OK [CAPABILITY {caps}] {} IMAP ready\r\n",
            shared.hostname
        )
        .as_bytes(),
    );
    if s.flush().await.is_err() {
        return;
    }
    loop {
        match s.next_command().await {
            Ok(Some(cmd)) => match s.command(&shared, &cmd, &shutdown).await {
                Ok(Flow::Continue) => {}
                _ => break,
            },
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "read");
                break;
            }
        }
        if s.flush().await.is_err() {
            break;
        }
        if shutdown.is_triggered() {
            s.out.extend_from_slice(b"* BYE Server shutting down\r\n");
            postern_common::metrics::session_outcome("shutdown");
            break;
        }
    }
    let _ = s.flush().await;
    let _ = s.conn.shutdown().await;
    tracing::info!(user = s.user.as_deref().unwrap_or("-"), "disconnected");
}

/// IMAP flag names of Maildir flag letters; lowercase letters are the
/// mailbox's keywords (`kw`, from `dovecot-keywords`).
fn flag_names(letters: &str, kw: &[String]) -> String {
    let mut v = Vec::new();
    for c in letters.chars() {
        v.push(match c {
            'S' => "\\Seen",
            'R' => "\\Answered",
            'F' => "\\Flagged",
            'T' => "\\Deleted",
            'D' => "\\Draft",
            'a'..='z' => match kw.get((c as u8 - b'a') as usize) {
                Some(k) if !k.is_empty() => k.as_str(),
                _ => continue,
            },
            _ => continue,
        });
    }
    v.join(" ")
}

/// The keyword names among a message's flag letters.
fn keyword_names(letters: &str, kw: &[String]) -> Vec<String> {
    letters
        .chars()
        .filter(char::is_ascii_lowercase)
        .filter_map(|c| kw.get((c as u8 - b'a') as usize))
        .filter(|k| !k.is_empty())
        .cloned()
        .collect()
}

/// A keyword a client may set: an atom without `\\` and without the
/// characters IMAP reserves (RFC 3501 `atom-specials`).
fn valid_keyword(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_KEYWORD_LEN
        && k.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        })
}

/// A flag list from a command: system flag letters and keyword names.
fn parse_flags(toks: &[Token]) -> Result<(String, Vec<String>), String> {
    // One parenthesised list, or bare flags.
    let toks = match toks {
        [Token::LParen, inner @ .., Token::RParen] => inner,
        t => t,
    };
    let mut letters = String::new();
    let mut keywords: Vec<String> = Vec::new();
    for t in toks {
        match t {
            Token::Atom(a) => match flag_letter(a) {
                Some(c) => letters.push(c),
                None if a.starts_with('\\') => return Err(format!("BAD Unknown system flag {a}")),
                None if valid_keyword(a) => {
                    if !keywords.iter().any(|k| k.eq_ignore_ascii_case(a)) {
                        keywords.push(a.clone());
                    }
                }
                None => return Err("BAD Invalid keyword".into()),
            },
            Token::LParen | Token::RParen => return Err("BAD Invalid flag list".into()),
            Token::Str(_) => return Err("BAD Flags are atoms".into()),
        }
    }
    Ok((letters, keywords))
}

/// Letters for keyword names in the mailbox at `dir` (created as needed).
fn keyword_letters_for(dir: &Path, names: &[String]) -> Result<String, String> {
    if names.is_empty() {
        return Ok(String::new());
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let letters = tokio::task::block_in_place(|| mailstore::keyword_letters(dir, &refs, true))
        .map_err(|e| format!("NO [SERVERBUG] {e}"))?;
    letters
        .into_iter()
        .map(|l| l.ok_or_else(|| "NO [LIMIT] Too many keywords in this mailbox".to_string()))
        .collect()
}

/// The untagged FLAGS and PERMANENTFLAGS lines for a mailbox's keywords.
fn flags_lines(kw: &[String], readonly: bool) -> String {
    let mut all = String::from("\\Answered \\Flagged \\Deleted \\Seen \\Draft");
    for k in kw.iter().filter(|k| !k.is_empty()) {
        all.push(' ');
        all.push_str(k);
    }
    let mut o = format!("* FLAGS ({all})\r\n");
    if readonly {
        o.push_str("* OK [PERMANENTFLAGS ()] Read-only\r\n");
    } else {
        o.push_str(&format!(
            "* OK [PERMANENTFLAGS ({all} \\*)] Flags and keywords\r\n"
        ));
    }
    o
}

fn flag_letter(name: &str) -> Option<char> {
    Some(match name.to_ascii_lowercase().as_str() {
        "\\seen" => 'S',
        "\\answered" => 'R',
        "\\flagged" => 'F',
        "\\deleted" => 'T',
        "\\draft" => 'D',
        _ => return None,
    })
}

/// Folders of a Maildir: INBOX and every `.Name` with `cur/`.
fn folders(root: &Path) -> Vec<String> {
    let mut v = vec!["INBOX".to_string()];
    if let Ok(rd) = std::fs::read_dir(root) {
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                let name = n.strip_prefix('.')?;
                (!name.is_empty() && name != "." && e.path().join("cur").is_dir())
                    .then(|| name.to_string())
            })
            .collect();
        names.sort();
        v.extend(names);
    }
    v
}

fn valid_folder(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FOLDER_NAME
        && !name.contains('/')
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.chars().any(|c| c.is_control())
        && valid_mutf7(name)
}

/// RFC 3501 `date-time` (`"dd-Mon-yyyy hh:mm:ss +zzzz"`, the day may be
/// space-padded) to seconds since the epoch; `None` if malformed or before
/// 1970.
fn parse_date_time(s: &str) -> Option<u64> {
    let s = s.trim_start();
    let (date, rest) = s.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let days = crate::search::parse_date(date)?;
    let mut t = time.split(':');
    let (h, m, sec): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    if t.next().is_some() || h > 23 || m > 59 || sec > 60 || zone.len() != 5 || !zone.is_ascii() {
        return None;
    }
    let sign = match zone.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zh: i64 = zone[1..3].parse().ok()?;
    let zm: i64 = zone[3..5].parse().ok()?;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec - sign * (zh * 3600 + zm * 60);
    u64::try_from(secs).ok()
}

/// Bytes used by a Maildir (INBOX and every folder): the `S=` sizes in the
/// file names of `cur/` and `new/`, or the file size for names without one.
fn storage_used(root: &Path) -> u64 {
    let mut total = 0;
    for folder in folders(root) {
        let dir = mailstore::folder_path(root, &folder);
        for sub in ["cur", "new"] {
            let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if !mailstore::name::is_message(name) {
                    continue;
                }
                total += match mailstore::name::parse(name).size {
                    Some(s) => s,
                    None => e.metadata().map_or(0, |m| m.len()),
                };
            }
        }
    }
    total
}

/// RFC 3516 BINARY section: the whole message for `""`, else the part's
/// body with its Content-Transfer-Encoding (base64, quoted-printable)
/// undone; `NO [UNKNOWN-CTE]` for encodings we cannot undo.
fn binary_section(msg: &[u8], spec: &str) -> Result<Vec<u8>, String> {
    if spec.is_empty() {
        return Ok(msg.to_vec());
    }
    let body = parse::part_section(msg, spec).ok_or("BAD Invalid BINARY section")?;
    let mime = parse::part_section(msg, &format!("{spec}.MIME")).unwrap_or_default();
    let cte = parse::raw_header(&mime, "Content-Transfer-Encoding")
        .map(|v| String::from_utf8_lossy(&v).trim().to_ascii_lowercase())
        .unwrap_or_default();
    match cte.as_str() {
        "" | "7bit" | "8bit" | "binary" => Ok(body),
        "base64" => {
            let clean: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
                .collect();
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(&clean)
                .map_err(|_| "NO [UNKNOWN-CTE] Invalid base64 content".to_string())
        }
        "quoted-printable" => Ok(decode_qp(&body)),
        _ => Err("NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding".into()),
    }
}

/// Quoted-printable (RFC 2045 section 6.7) to bytes: `=XX` escapes, soft
/// line breaks removed; malformed escapes are kept as they are.
fn decode_qp(body: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'=' {
            match (body.get(i + 1), body.get(i + 2)) {
                (Some(b'\r'), Some(b'\n')) => {
                    i += 3;
                    continue;
                }
                (Some(b'\n'), _) => {
                    i += 2;
                    continue;
                }
                (Some(&a), Some(&b)) if hex(a).is_some() && hex(b).is_some() => {
                    out.push(hex(a).unwrap_or(0) << 4 | hex(b).unwrap_or(0));
                    i += 3;
                    continue;
                }
                _ => {}
            }
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

/// Longest folder name (a path component on disk: 255 bytes with the `.`).
pub const MAX_FOLDER_NAME: usize = 250;

/// RFC 3501 section 5.1.3: mailbox names are 7-bit, with other characters
/// in modified UTF-7 (`&` + modified base64 of UTF-16 + `-`, `&-` for `&`).
/// They are kept that way on disk, as Dovecot does.
fn valid_mutf7(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            0x20..=0x7e if b[i] != b'&' => i += 1,
            b'&' => {
                let Some(end) = b[i + 1..].iter().position(|&c| c == b'-') else {
                    return false;
                };
                let run = &b[i + 1..i + 1 + end];
                if !run
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b',')
                {
                    return false;
                }
                if !run.is_empty() && decode_mutf7_run(run).is_none() {
                    return false;
                }
                i += end + 2;
            }
            _ => return false,
        }
    }
    true
}

/// Decode one modified-base64 run to text; `None` if it is not valid
/// UTF-16 or encodes printable ASCII (which must appear as itself).
fn decode_mutf7_run(run: &[u8]) -> Option<String> {
    let std: Vec<u8> = run
        .iter()
        .map(|&c| if c == b',' { b'/' } else { c })
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&std)
        .ok()?;
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let text = String::from_utf16(&units).ok()?;
    (!text.chars().any(|c| (' '..='~').contains(&c))).then_some(text)
}

/// A section of a message in wire form.
/// Message cache fields (`mailstore::cache`) of FETCH items; the suffix is
/// a format version, bumped when the computation changes so that old
/// entries are not used.
const CACHE_ENVELOPE: &str = "imap.envelope.1";
const CACHE_BODYSTRUCTURE: &str = "imap.bodystructure.1";
const CACHE_BODY: &str = "imap.body.1";

/// A message's header in wire form (CRLF), from the mail store's cache.
fn header_wire(sel: &Selected, uid: u32) -> Result<Vec<u8>, String> {
    tokio::task::block_in_place(|| sel.mb.header(uid))
        .map(|h| parse::to_crlf(&h))
        .map_err(|e| format!("NO [SERVERBUG] Cannot read message: {e}"))
}

fn section(msg: &[u8], spec: &str) -> Option<Vec<u8>> {
    let hdr_end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(msg.len());
    let upper = spec.to_ascii_uppercase();
    if upper.is_empty() {
        Some(msg.to_vec())
    } else if upper == "HEADER" {
        Some(msg[..hdr_end].to_vec())
    } else if upper == "TEXT" {
        Some(msg[hdr_end..].to_vec())
    } else if let Some(rest) = upper.strip_prefix("HEADER.FIELDS") {
        let (not, rest) = match rest.strip_prefix(".NOT") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let list = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
        let names: Vec<&str> = list
            .split_whitespace()
            .map(|n| n.trim_matches('"'))
            .collect();
        let mut out = Vec::new();
        let mut keep = false;
        for line in msg[..hdr_end].split_inclusive(|&b| b == b'\n') {
            if line == b"\r\n" {
                break;
            }
            if line[0] != b' ' && line[0] != b'\t' {
                let name = line.split(|&b| b == b':').next().unwrap_or(b"");
                let name = String::from_utf8_lossy(name).trim().to_ascii_uppercase();
                keep = names.iter().any(|n| *n == name) != not;
            }
            if keep {
                out.extend_from_slice(line);
            }
        }
        out.extend_from_slice(b"\r\n");
        Some(out)
    } else if let Some(pos) = upper.find(".HEADER.FIELDS") {
        // `n.HEADER.FIELDS (..)`: the fields of an encapsulated message's
        // header (a message/rfc822 part).
        let part = &spec[..pos];
        if !part
            .split('.')
            .all(|n| n.parse::<u32>().is_ok_and(|n| n > 0))
        {
            return None;
        }
        let header = parse::part_section(msg, &format!("{part}.HEADER"))?;
        section(&header, &spec[pos + 1..])
    } else {
        parse::part_section(msg, spec)
    }
}

impl Session {
    fn capabilities(&self, shared: &Shared) -> String {
        let mut c = String::from(
            "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR IDLE NAMESPACE UNSELECT ID ENABLE UIDPLUS MOVE CHILDREN \
             CONDSTORE STATUS=SIZE ESEARCH LIST-EXTENDED LIST-STATUS SPECIAL-USE SORT \
             THREAD=ORDEREDSUBJECT THREAD=REFERENCES QUOTA QUOTA=RES-STORAGE QRESYNC SEARCHRES \
             COMPRESS=DEFLATE BINARY",
        );
        if self.user.is_none() {
            if !self.conn.is_tls() {
                c.push_str(" STARTTLS");
            }
            if self.conn.is_tls() || shared.allow_plaintext {
                c.push_str(" AUTH=PLAIN AUTH=LOGIN");
            } else {
                c.push_str(" LOGINDISABLED");
            }
        }
        c.push_str(&format!(" APPENDLIMIT={}", parse::APPEND_LIMIT));
        c
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            match self.deflate.as_mut() {
                Some(z) => {
                    let packed = z.pack(&self.out)?;
                    self.conn.write_all(&packed).await?;
                }
                None => self.conn.write_all(&self.out).await?,
            }
            self.out.clear();
        }
        self.conn.flush().await
    }

    /// Bytes read from the socket, inflated when COMPRESS is active. More
    /// than a whole command with its literals (`parse::APPEND_LIMIT` +
    /// `parse::MAX_COMMAND`) pending is an error (a compression bomb).
    fn absorb(&mut self, data: &[u8]) -> std::io::Result<()> {
        let limit = parse::APPEND_LIMIT + 2 * parse::MAX_COMMAND;
        match self.deflate.as_mut() {
            Some(z) => z.unpack(data, &mut self.input, limit),
            None => {
                self.input.extend_from_slice(data);
                Ok(())
            }
        }
    }

    async fn fill(&mut self) -> std::io::Result<bool> {
        let timeout = if self.user.is_some() {
            IDLE_TIMEOUT
        } else {
            PREAUTH_TIMEOUT
        };
        // The pending read holds its buffer for as long as the client is
        // silent, which for an idle (IDLE-ing) client is hours: wait with a
        // small one when no command is in progress, a large one for the rest
        // of a command and its literals. Buffers grown by a large command or
        // response are released here too.
        if self.input.is_empty() && self.input.capacity() > KEEP_BUFFER {
            self.input = Vec::new();
        }
        if self.out.is_empty() && self.out.capacity() > KEEP_BUFFER {
            self.out = Vec::new();
        }
        let size = if self.input.is_empty() {
            IDLE_READ_CHUNK
        } else {
            READ_CHUNK
        };
        let mut buf = vec![0u8; size];
        match tokio::time::timeout(timeout, self.conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => Ok(false),
            Ok(Ok(n)) => {
                self.absorb(&buf[..n])?;
                Ok(true)
            }
            Err(_) => {
                self.out
                    .extend_from_slice(b"* BYE Autologout; idle for too long\r\n");
                postern_common::metrics::session_outcome("timeout");
                Ok(false)
            }
        }
    }

    /// Read one framed command (sending `+` for synchronizing literals).
    async fn next_command(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            let limit = if self.user.is_some() {
                parse::APPEND_LIMIT + parse::MAX_COMMAND
            } else {
                parse::MAX_COMMAND
            };
            match parse::frame(&self.input, limit) {
                Framed::Command(n) => {
                    self.cont_sent = None;
                    return Ok(Some(self.input.drain(..n).collect()));
                }
                Framed::TooLong => {
                    let (tag, _) = codec::tag_and_verb(&self.input);
                    self.reply(&tag, "BAD Command line too long");
                    self.out
                        .extend_from_slice(b"* BYE Command line or literal too long\r\n");
                    return Ok(None);
                }
                Framed::LiteralTooBig { line_end, sync } => {
                    // Refused before the data is sent (`{n}`: the client
                    // waits for `+`, so the session goes on); a `{n+}`
                    // literal is already on its way: the connection ends.
                    let (tag, verb) = codec::tag_and_verb(&self.input);
                    let text = if verb.as_deref() == Some("APPEND") && self.user.is_some() {
                        "NO [TOOBIG] Message larger than APPENDLIMIT"
                    } else {
                        "BAD Literal too big"
                    };
                    self.input.drain(..line_end);
                    self.cont_sent = None;
                    let close = self.fail(&tag, text);
                    if !sync && !close {
                        self.out
                            .extend_from_slice(b"* BYE Command line or literal too long\r\n");
                    }
                    if close || !sync {
                        return Ok(None);
                    }
                    self.flush().await?;
                    continue;
                }
                Framed::Incomplete(Some(pos)) if self.cont_sent != Some(pos) => {
                    self.cont_sent = Some(pos);
                    self.out.extend_from_slice(b"+ Ready for literal data\r\n");
                    self.flush().await?;
                }
                Framed::Incomplete(_) => {}
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Read one CRLF line (for SASL and IDLE).
    async fn read_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(p) = self.input.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.input.drain(..=p).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            if self.input.len() > parse::MAX_COMMAND || !self.fill().await? {
                return Ok(None);
            }
        }
    }

    fn reply(&mut self, tag: &str, text: &str) {
        self.out
            .extend_from_slice(format!("{tag} {text}\r\n").as_bytes());
    }

    /// Answer with a failure; true if the connection should be closed.
    fn fail(&mut self, tag: &str, text: &str) -> bool {
        self.reply(tag, text);
        self.failures += 1;
        if self.failures >= MAX_FAILED_COMMANDS {
            self.out.extend_from_slice(b"* BYE Too many errors\r\n");
            true
        } else {
            false
        }
    }

    async fn command(
        &mut self,
        shared: &Shared,
        raw: &[u8],
        shutdown: &Shutdown,
    ) -> std::io::Result<Flow> {
        // The grammar is imap-codec's (codec.rs); the meaning is ours.
        let names = if self.rev2 {
            codec::Names::Utf8
        } else {
            codec::Names::Mutf7
        };
        let cmd = match codec::decode_with(raw, names) {
            Ok(c) => c,
            Err(r) => return Ok(self.bad(&r.tag, &r.text)),
        };
        let (tag, verb, args) = (cmd.tag, cmd.verb, &cmd.args[..]);
        let authed = self.user.is_some();
        match (verb.as_str(), authed) {
            ("CAPABILITY", _) => {
                let c = self.capabilities(shared);
                self.out
                    .extend_from_slice(format!("* CAPABILITY {c}\r\n").as_bytes());
                self.reply(&tag, "OK CAPABILITY completed");
            }
            ("NOOP", _) | ("CHECK", true) => {
                self.updates();
                self.reply(&tag, "OK NOOP completed");
            }
            ("LOGOUT", _) => {
                self.out.extend_from_slice(b"* BYE Logging out\r\n");
                postern_common::metrics::session_outcome("quit");
                self.reply(&tag, "OK LOGOUT completed");
                return Ok(Flow::Close);
            }
            ("ID", _) => {
                self.out.extend_from_slice(
                    format!(
                        "* ID (\"name\" \"postern-imapd\" \"version\" \"{}\")\r\n",
                        env!("CARGO_PKG_VERSION")
                    )
                    .as_bytes(),
                );
                self.reply(&tag, "OK ID completed");
            }
            ("ENABLE", true) => {
                // CONDSTORE is the one ENABLE-able extension implemented
                // (QRESYNC is not: it is left out of the answer).
                let mut enabled = String::from("* ENABLED");
                if args.iter().any(|t| t.is_atom("CONDSTORE")) {
                    self.condstore = true;
                    enabled.push_str(" CONDSTORE");
                }
                if args.iter().any(|t| t.is_atom("QRESYNC")) {
                    // QRESYNC implies CONDSTORE (RFC 7162 section 3.2.3).
                    self.condstore = true;
                    self.qresync = true;
                    enabled.push_str(" QRESYNC");
                }
                if args.iter().any(|t| t.is_atom("IMAP4rev2")) {
                    self.rev2 = true;
                    enabled.push_str(" IMAP4rev2");
                }
                enabled.push_str("\r\n");
                self.out.extend_from_slice(enabled.as_bytes());
                self.reply(&tag, "OK ENABLE completed");
            }
            ("COMPRESS", true) => {
                if !args.first().is_some_and(|t| t.is_atom("DEFLATE")) || args.len() != 1 {
                    return Ok(self.bad(&tag, "BAD Only COMPRESS DEFLATE is supported"));
                }
                if self.deflate.is_some() {
                    return Ok(self.bad(&tag, "NO [COMPRESSIONACTIVE] Already compressing"));
                }
                // The OK goes out uncompressed; everything after it is
                // compressed both ways (RFC 4978 section 3).
                self.reply(&tag, "OK DEFLATE active");
                self.flush().await?;
                self.deflate = Some(Box::default());
                // Bytes already read after the command are compressed too.
                let pending = std::mem::take(&mut self.input);
                self.absorb(&pending)?;
            }
            ("GETQUOTAROOT", true) | ("GETQUOTA", true) => {
                return Ok(self.quota(&tag, &verb, args));
            }
            ("SETQUOTA", true) => {
                return Ok(self.bad(&tag, "NO [NOPERM] Quotas are set by the administrator"));
            }
            ("NAMESPACE", true) => {
                self.out
                    .extend_from_slice(b"* NAMESPACE ((\"\" \".\")) NIL NIL\r\n");
                self.reply(&tag, "OK NAMESPACE completed");
            }
            ("STARTTLS", false) => {
                if self.conn.is_tls() {
                    return Ok(self.bad(&tag, "BAD TLS already active"));
                }
                self.reply(&tag, "OK Begin TLS negotiation now");
                self.flush().await?;
                // STARTTLS injection: anything pipelined before the handshake is dropped.
                self.input.clear();
                match tokio::time::timeout(
                    TLS_HANDSHAKE_TIMEOUT,
                    self.conn.upgrade(&shared.acceptor),
                )
                .await
                {
                    Ok(Ok(())) => {}
                    _ => {
                        tracing::info!("STARTTLS handshake failed");
                        return Ok(Flow::Close);
                    }
                }
            }
            ("LOGIN", false) => {
                if !self.conn.is_tls() && !shared.allow_plaintext {
                    return Ok(self.bad(
                        &tag,
                        "NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS",
                    ));
                }
                let (Some(u), Some(p)) = (
                    args.first().and_then(Token::astring),
                    args.get(1).and_then(|t| match t {
                        Token::Atom(a) => Some(a.as_bytes().to_vec()),
                        Token::Str(s) => Some(s.clone()),
                        _ => None,
                    }),
                ) else {
                    return Ok(self.bad(&tag, "BAD LOGIN needs user and password"));
                };
                let mut ir = vec![0];
                ir.extend_from_slice(u.as_bytes());
                ir.push(0);
                ir.extend_from_slice(&p);
                return self.authenticate(shared, &tag, "PLAIN", Some(ir)).await;
            }
            ("AUTHENTICATE", false) => {
                let Some(mech) = args.first().and_then(Token::astring) else {
                    return Ok(self.bad(&tag, "BAD AUTHENTICATE needs a mechanism"));
                };
                let mech = mech.to_ascii_uppercase();
                if mech != "PLAIN" && mech != "LOGIN" {
                    return Ok(self.bad(&tag, "NO Unsupported mechanism"));
                }
                if !self.conn.is_tls() && !shared.allow_plaintext {
                    return Ok(self.bad(&tag, "NO [PRIVACYREQUIRED] Use STARTTLS first"));
                }
                let ir = match args.get(1).and_then(Token::astring) {
                    None => None,
                    Some(s) if s == "=" => Some(Vec::new()),
                    Some(s) => match base64::engine::general_purpose::STANDARD.decode(s) {
                        Ok(v) => Some(v),
                        Err(_) => return Ok(self.bad(&tag, "BAD Invalid base64")),
                    },
                };
                return self.authenticate(shared, &tag, &mech, ir).await;
            }
            ("LIST", true) | ("LSUB", true) => self.list(&tag, &verb, args),
            ("SELECT", true) | ("EXAMINE", true) => {
                return Ok(self.select(&tag, verb == "EXAMINE", args));
            }
            ("STATUS", true) => return Ok(self.status(&tag, args)),
            ("CLOSE", true) | ("UNSELECT", true) if self.sel.is_some() => {
                if verb == "CLOSE" {
                    self.expunge_deleted(None);
                }
                self.sel = None;
                self.saved.clear();
                self.reply(&tag, &format!("OK {verb} completed"));
            }
            ("IDLE", true) => return self.idle(&tag, shutdown).await,
            ("CREATE", true) => return Ok(self.create(&tag, args)),
            ("DELETE", true) => return Ok(self.delete(&tag, args)),
            ("RENAME", true) => return Ok(self.rename(&tag, args)),
            ("SUBSCRIBE", true) | ("UNSUBSCRIBE", true) => {
                return Ok(self.subscribe(&tag, verb == "SUBSCRIBE", args));
            }
            ("APPEND", true) => return Ok(self.append(&tag, args)),
            ("COPY", true) | ("MOVE", true) if self.sel.is_some() => {
                return Ok(self.copy(&tag, &verb, false, args));
            }
            ("SORT", true) | ("THREAD", true) if self.sel.is_some() => {
                return Ok(self.sort_or_thread(&tag, &verb, false, args));
            }
            ("FETCH", true) | ("STORE", true) | ("SEARCH", true) | ("EXPUNGE", true)
                if self.sel.is_some() =>
            {
                return Ok(self.selected(&tag, &verb, false, args));
            }
            ("UID", true) if self.sel.is_some() => {
                let sub = args.first().and_then(Token::astring).unwrap_or_default();
                let sub = sub.to_ascii_uppercase();
                if sub == "COPY" || sub == "MOVE" {
                    return Ok(self.copy(&tag, &sub, true, &args[1..]));
                }
                if sub == "SORT" || sub == "THREAD" {
                    return Ok(self.sort_or_thread(&tag, &sub, true, &args[1..]));
                }
                if !matches!(sub.as_str(), "FETCH" | "STORE" | "SEARCH" | "EXPUNGE") {
                    return Ok(self.bad(&tag, "BAD Unknown UID command"));
                }
                return Ok(self.selected(&tag, &sub, true, &args[1..]));
            }
            (_, false)
                if matches!(
                    verb.as_str(),
                    "LIST"
                        | "LSUB"
                        | "SELECT"
                        | "EXAMINE"
                        | "STATUS"
                        | "IDLE"
                        | "ENABLE"
                        | "NAMESPACE"
                ) =>
            {
                return Ok(self.bad(&tag, "BAD Log in first"));
            }
            _ => return Ok(self.bad(&tag, "BAD Unknown command or wrong state")),
        }
        Ok(Flow::Continue)
    }

    fn bad(&mut self, tag: &str, text: &str) -> Flow {
        if self.fail(tag, text) {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    async fn authenticate(
        &mut self,
        shared: &Shared,
        tag: &str,
        mech: &str,
        ir: Option<Vec<u8>>,
    ) -> std::io::Result<Flow> {
        let mut auth = shared.auth.clone();
        let start = pb::AuthStart {
            mechanism: mech.to_string(),
            initial_response: ir,
            client: Some(pb::ClientInfo {
                service: "imap".into(),
                remote_ip: self.peer.ip().to_string(),
                remote_port: self.peer.port() as u32,
                secured: self.conn.is_tls() || shared.allow_plaintext,
                session_id: self.session_id.clone(),
                ..Default::default()
            }),
        };
        let (mut exchange, mut step) = match SaslExchange::start(&mut auth, start).await {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "authd unavailable");
                self.reply(tag, "NO [UNAVAILABLE] Authentication service unavailable");
                return Ok(Flow::Continue);
            }
        };
        let user = loop {
            match step {
                SaslStep::Challenge(data) => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
                    self.out
                        .extend_from_slice(format!("+ {b64}\r\n").as_bytes());
                    self.flush().await?;
                    let Some(line) = self.read_line().await? else {
                        return Ok(Flow::Close);
                    };
                    step = if line == b"*" {
                        self.reply(tag, "BAD Authentication cancelled");
                        let _ = exchange.cancel().await;
                        return Ok(Flow::Continue);
                    } else {
                        match base64::engine::general_purpose::STANDARD.decode(&line) {
                            Ok(d) => exchange.respond(d).await,
                            Err(_) => {
                                let _ = exchange.cancel().await;
                                return Ok(self.bad(tag, "BAD Invalid base64"));
                            }
                        }
                    }
                    .unwrap_or_else(|e| {
                        SaslStep::Fail(pb::AuthFail {
                            temporary: true,
                            reason: e.message().to_string(),
                            delay_ms: 0,
                        })
                    });
                }
                SaslStep::Ok(ok) => break ok.user,
                SaslStep::Fail(f) => {
                    let text = if f.temporary {
                        "NO [UNAVAILABLE] Temporary authentication failure"
                    } else {
                        "NO [AUTHENTICATIONFAILED] Authentication failed"
                    };
                    return Ok(self.bad(tag, text));
                }
            }
        };
        let info = match auth
            .lookup_user(pb::LookupUserRequest { user: user.clone() })
            .await
        {
            Ok(r) if r.get_ref().found => r.into_inner().info.unwrap_or_default(),
            Ok(_) => {
                self.reply(tag, "NO [SERVERBUG] No mailbox for this user");
                return Ok(Flow::Continue);
            }
            Err(e) => {
                tracing::error!(error = %e, "user lookup failed");
                self.reply(tag, "NO [UNAVAILABLE] Mailbox lookup failed");
                return Ok(Flow::Continue);
            }
        };
        let Some(slot) =
            UserIpSlot::acquire(&shared.userip, &user, self.peer.ip(), shared.max_userip)
        else {
            tracing::info!(user = %user, limit = shared.max_userip, "login refused: mail_max_userip_connections");
            return Ok(self.bad(
                tag,
                "NO [LIMIT] Too many connections for this user from this address",
            ));
        };
        self._userip = Some(slot);
        let root = PathBuf::from(&info.mailbox);
        if let Err(e) = mailstore::create_maildir(&root) {
            tracing::error!(error = %e, "cannot open maildir");
            self.reply(tag, "NO [SERVERBUG] Cannot open the mailbox");
            return Ok(Flow::Continue);
        }
        tracing::info!(user = %user, "logged in");
        self.user = Some(user);
        self.root = Some(root);
        self.quota_bytes = info.quota_bytes;
        let caps = self.capabilities(shared);
        self.reply(tag, &format!("OK [CAPABILITY {caps}] Logged in"));
        Ok(Flow::Continue)
    }

    /// LIST and LSUB, with RFC 5258 LIST-EXTENDED selection options
    /// (SUBSCRIBED, SPECIAL-USE, RECURSIVEMATCH, REMOTE), several patterns,
    /// and return options (SUBSCRIBED, CHILDREN, SPECIAL-USE, and RFC 5819
    /// STATUS).
    fn list(&mut self, tag: &str, verb: &str, args: &[Token]) {
        let mut i = 0;
        let mut select_subscribed = false;
        let mut select_special = false;
        if verb == "LIST" && args.first() == Some(&Token::LParen) {
            i = 1;
            while let Some(Token::Atom(o)) = args.get(i) {
                match o.to_ascii_uppercase().as_str() {
                    "SUBSCRIBED" => select_subscribed = true,
                    "SPECIAL-USE" => select_special = true,
                    "RECURSIVEMATCH" | "REMOTE" => {}
                    _ => {
                        self.fail(tag, "BAD Unknown LIST selection option");
                        return;
                    }
                }
                i += 1;
            }
            if args.get(i) != Some(&Token::RParen) {
                self.fail(tag, "BAD Invalid LIST selection options");
                return;
            }
            i += 1;
        }
        let Some(reference) = args.get(i).and_then(Token::astring) else {
            self.fail(tag, "BAD LIST needs reference and pattern");
            return;
        };
        i += 1;
        let mut patterns = Vec::new();
        if verb == "LIST" && args.get(i) == Some(&Token::LParen) {
            i += 1;
            while let Some(p) = args.get(i).and_then(Token::astring) {
                patterns.push(p);
                i += 1;
            }
            if args.get(i) != Some(&Token::RParen) || patterns.is_empty() {
                self.fail(tag, "BAD Invalid LIST patterns");
                return;
            }
            i += 1;
        } else if let Some(p) = args.get(i).and_then(Token::astring) {
            patterns.push(p);
            i += 1;
        } else {
            self.fail(tag, "BAD LIST needs reference and pattern");
            return;
        }
        let mut return_subscribed = false;
        let mut return_status: Option<Vec<Token>> = None;
        if let Some(t) = args.get(i) {
            if !(verb == "LIST" && t.is_atom("RETURN") && args.get(i + 1) == Some(&Token::LParen)) {
                self.fail(tag, "BAD Unexpected LIST arguments");
                return;
            }
            i += 2;
            loop {
                match args.get(i) {
                    Some(Token::RParen) if i + 1 == args.len() => break,
                    Some(t) if t.is_atom("SUBSCRIBED") => return_subscribed = true,
                    Some(t) if t.is_atom("CHILDREN") || t.is_atom("SPECIAL-USE") => {}
                    Some(t) if t.is_atom("STATUS") && args.get(i + 1) == Some(&Token::LParen) => {
                        let Some(close) = args[i + 2..].iter().position(|t| *t == Token::RParen)
                        else {
                            self.fail(tag, "BAD Invalid STATUS return option");
                            return;
                        };
                        return_status = Some(args[i + 2..i + 2 + close].to_vec());
                        i += 2 + close;
                    }
                    _ => {
                        self.fail(tag, "BAD Invalid LIST return options");
                        return;
                    }
                }
                i += 1;
            }
        }
        let root = self.root.clone().expect("authenticated");
        if patterns.len() == 1 && patterns[0].is_empty() {
            self.out
                .extend_from_slice(format!("* {verb} (\\Noselect) \".\" \"\"\r\n").as_bytes());
            self.reply(tag, &format!("OK {verb} completed"));
            return;
        }
        let mut subscribed: Vec<String> = std::fs::read_to_string(root.join("subscriptions"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        subscribed.push("INBOX".into());
        let only_subscribed = verb == "LSUB" || select_subscribed;
        let all = folders(&root);
        // Names LIST reports without a mailbox of their own (RFC 5258
        // section 3, RFC 9051 section 6.3.9): parents in the hierarchy of
        // existing folders (`a` of `a.b`) and, with the SUBSCRIBED
        // selection option, subscriptions whose mailbox is gone.
        let mut phantoms: Vec<(String, bool)> = Vec::new();
        if verb == "LIST" {
            for f in &all {
                let mut at = 0;
                while let Some(dot) = f[at..].find('.') {
                    let parent = &f[..at + dot];
                    if !all.iter().any(|x| x == parent)
                        && !phantoms.iter().any(|(p, _)| p == parent)
                    {
                        phantoms.push((parent.to_string(), true));
                    }
                    at += dot + 1;
                }
            }
            if select_subscribed {
                for s in &subscribed {
                    if !all.iter().any(|x| x == s) && !phantoms.iter().any(|(p, _)| p == s) {
                        phantoms.push((s.clone(), false));
                    }
                }
            }
        }
        for (p, has_children) in &phantoms {
            if !patterns
                .iter()
                .any(|pat| parse::list_match(format!("{reference}{pat}").as_bytes(), p.as_bytes()))
            {
                continue;
            }
            let is_subscribed = subscribed.iter().any(|x| x == p);
            if (only_subscribed && !is_subscribed) || select_special {
                continue;
            }
            // `\NonExistent` implies `\Noselect` (RFC 5258); an IMAP4rev1
            // client without LIST-EXTENDED syntax gets the RFC 3501 word.
            let extended = self.rev2 || select_subscribed || return_subscribed;
            let mut attrs = vec![if extended {
                "\\NonExistent"
            } else {
                "\\Noselect"
            }];
            attrs.push(if *has_children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
            if is_subscribed && (select_subscribed || return_subscribed) {
                attrs.push("\\Subscribed");
            }
            let mut line = format!("* {verb} ({}) \".\" ", attrs.join(" ")).into_bytes();
            parse::mailbox_out(p, self.rev2, &mut line);
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
        }
        for f in &all {
            let f = f.clone();
            if !patterns
                .iter()
                .any(|p| parse::list_match(format!("{reference}{p}").as_bytes(), f.as_bytes()))
            {
                continue;
            }
            let is_subscribed = subscribed.iter().any(|x| x == &f);
            if only_subscribed && !is_subscribed {
                continue;
            }
            if select_special && special_use(&f).is_none() {
                continue;
            }
            let prefix = format!("{f}.");
            let children = all.iter().any(|x| x.starts_with(&prefix));
            let mut attrs = vec![if children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            }];
            if is_subscribed && verb == "LIST" && (select_subscribed || return_subscribed) {
                attrs.push("\\Subscribed");
            }
            if let Some(u) = special_use(&f) {
                attrs.push(u);
            }
            let mut line = format!("* {verb} ({}) \".\" ", attrs.join(" ")).into_bytes();
            parse::mailbox_out(&f, self.rev2, &mut line);
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
            if let Some(items) = &return_status
                && let Some((name, mb)) = self.open_folder(&f)
            {
                match self.status_line(&name, &mb, items) {
                    Ok(l) => self.out.extend_from_slice(&l),
                    Err(e) => {
                        self.fail(tag, &e);
                        return;
                    }
                }
            }
        }
        self.reply(tag, &format!("OK {verb} completed"));
    }

    /// The canonical name and directory of an existing folder.
    fn folder_dir(&self, name: &str) -> Option<(String, PathBuf)> {
        let root = self.root.as_ref()?;
        let canonical = if name.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_string()
        } else if valid_folder(name) {
            name.to_string()
        } else {
            return None;
        };
        let dir = mailstore::folder_path(root, &canonical);
        if !dir.join("cur").is_dir() {
            return None;
        }
        Some((canonical, dir))
    }

    /// Open a folder; `watched` for the selected one (later syncs read
    /// only the index log and new/ unless something else changed cur/, and
    /// IDLE is woken by changes).
    fn open_folder_with(&self, name: &str, watched: bool) -> Option<(String, Mailbox)> {
        let (canonical, dir) = self.folder_dir(name)?;
        let mb = tokio::task::block_in_place(|| {
            if watched {
                Mailbox::open_watched(&dir)
            } else {
                Mailbox::open(&dir)
            }
        });
        postern_common::metrics::mailstore_op("open", mb.is_ok());
        let mb = mb.ok()?;
        Some((canonical, mb))
    }

    /// The LIST attributes of an existing mailbox (CHILDREN, SPECIAL-USE),
    /// for the LIST line of an IMAP4rev2 SELECT.
    fn list_attributes(&self, name: &str) -> String {
        let prefix = format!("{name}.");
        let children = self
            .root
            .as_deref()
            .is_some_and(|r| folders(r).iter().any(|f| f.starts_with(&prefix)));
        let mut attrs = vec![if children {
            "\\HasChildren"
        } else {
            "\\HasNoChildren"
        }];
        if let Some(u) = special_use(name) {
            attrs.push(u);
        }
        attrs.join(" ")
    }

    fn open_folder(&self, name: &str) -> Option<(String, Mailbox)> {
        self.open_folder_with(name, false)
    }

    fn select(&mut self, tag: &str, readonly: bool, args: &[Token]) -> Flow {
        // RFC 9051 section 7.1 / RFC 7162 section 3.2.11: the previous
        // mailbox is closed first, and said so.
        if self.sel.take().is_some() && (self.rev2 || self.qresync) {
            self.out
                .extend_from_slice(b"* OK [CLOSED] Previous mailbox closed\r\n");
        }
        self.saved.clear();
        let Some(name) = args.first().and_then(Token::astring) else {
            return self.bad(tag, "BAD SELECT needs a mailbox");
        };
        // Parameters: `(CONDSTORE)`, `(QRESYNC (uidvalidity modseq
        // [known-uids [seq-match]]))` (RFC 7162).
        let mut resync: Option<(u32, u64, Option<String>)> = None;
        if let [Token::LParen, inner @ .., Token::RParen] = &args[1..] {
            let mut j = 0;
            while j < inner.len() {
                match &inner[j] {
                    t if t.is_atom("CONDSTORE") => {
                        self.condstore = true;
                        j += 1;
                    }
                    t if t.is_atom("QRESYNC")
                        && self.qresync
                        && inner.get(j + 1) == Some(&Token::LParen) =>
                    {
                        let mut depth = 0usize;
                        let mut close = None;
                        for (k, t) in inner.iter().enumerate().skip(j + 1) {
                            match t {
                                Token::LParen => depth += 1,
                                Token::RParen => {
                                    depth -= 1;
                                    if depth == 0 {
                                        close = Some(k);
                                        break;
                                    }
                                }
                                _ => {}
                            }
                        }
                        let Some(close) = close else {
                            return self.bad(tag, "BAD Invalid QRESYNC parameter");
                        };
                        let q = &inner[j + 2..close];
                        let num = |t: Option<&Token>| t.and_then(Token::astring);
                        let (Some(v), Some(m)) = (
                            num(q.first()).and_then(|v| v.parse::<u32>().ok()),
                            num(q.get(1)).and_then(|m| m.parse::<u64>().ok()),
                        ) else {
                            return self.bad(tag, "BAD Invalid QRESYNC parameter");
                        };
                        let known = match q.get(2) {
                            Some(Token::Atom(a)) => Some(a.clone()),
                            _ => None,
                        };
                        resync = Some((v, m, known));
                        j = close + 1;
                    }
                    _ => return self.bad(tag, "BAD Unsupported SELECT parameters"),
                }
            }
        } else if args.len() > 1 {
            return self.bad(tag, "BAD Unsupported SELECT parameters");
        }
        let Some((name, mb)) = self.open_folder_with(&name, true) else {
            return self.bad(tag, "NO [NONEXISTENT] No such mailbox");
        };
        let uids: Vec<u32> = mb.messages().iter().map(|m| m.uid).collect();
        let unseen = mb.messages().iter().position(|m| !m.flags.contains('S'));
        let keywords = mailstore::read_keywords(mb.dir());
        let mut o = String::new();
        o.push_str(&format!("* {} EXISTS\r\n", uids.len()));
        if self.rev2 {
            // RFC 9051 section 6.3.2: no RECENT and no UNSEEN, but the
            // mailbox's LIST line.
            let mut line = format!("* LIST ({}) \".\" ", self.list_attributes(&name)).into_bytes();
            parse::mailbox_out(&name, true, &mut line);
            o.push_str(&String::from_utf8_lossy(&line));
            o.push_str("\r\n");
        } else {
            o.push_str("* 0 RECENT\r\n");
            if let Some(u) = unseen {
                o.push_str(&format!("* OK [UNSEEN {}] First unseen\r\n", u + 1));
            }
        }
        o.push_str(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid\r\n* OK [UIDNEXT {}] Predicted next UID\r\n",
            mb.uidvalidity(),
            mb.uidnext()
        ));
        o.push_str(&flags_lines(&keywords, readonly));
        o.push_str(&format!(
            "* OK [HIGHESTMODSEQ {}] Highest\r\n",
            mb.highest_modseq()
        ));
        if let Some((v, since, known)) = resync
            && v == mb.uidvalidity()
        {
            // No expunge history is kept: every UID the client may know
            // (its known-uids, else 1 up to UIDNEXT) that is gone now is
            // reported; UIDs that never existed are harmless to the client.
            let max = mb.uidnext().saturating_sub(1);
            let candidates: Vec<u32> = match known.as_deref().map(|k| parse::sequence_set(k, max)) {
                Some(Some(set)) => set.into_iter().filter(|&u| u <= max).collect(),
                Some(None) => return self.bad(tag, "BAD Invalid known-uids"),
                None => (1..=max).collect(),
            };
            let gone: Vec<u32> = candidates
                .iter()
                .copied()
                .filter(|u| uids.binary_search(u).is_err())
                .collect();
            if !gone.is_empty() {
                o.push_str(&format!(
                    "* VANISHED (EARLIER) {}\r\n",
                    parse::compress_set(&gone)
                ));
            }
            for (i, m) in mb.messages().iter().enumerate() {
                if m.modseq > since && candidates.binary_search(&m.uid).is_ok() {
                    o.push_str(&format!(
                        "* {} FETCH (UID {} FLAGS ({}) MODSEQ ({}))\r\n",
                        i + 1,
                        m.uid,
                        flag_names(&m.flags, &keywords),
                        m.modseq
                    ));
                }
            }
        }
        self.out.extend_from_slice(o.as_bytes());
        let mode = if readonly { "READ-ONLY" } else { "READ-WRITE" };
        let verb = if readonly { "EXAMINE" } else { "SELECT" };
        self.reply(tag, &format!("OK [{mode}] {verb} completed"));
        self.sel = Some(Selected {
            _name: name,
            mb,
            keywords,
            uids,
            readonly,
            stamp: None,
        });
        Flow::Continue
    }

    fn status(&mut self, tag: &str, args: &[Token]) -> Flow {
        let Some(name) = args.first().and_then(Token::astring) else {
            return self.bad(tag, "BAD STATUS needs a mailbox");
        };
        let Some((name, mb)) = self.open_folder(&name) else {
            return self.bad(tag, "NO [NONEXISTENT] No such mailbox");
        };
        match self.status_line(&name, &mb, &args[1..]) {
            Ok(line) => {
                self.out.extend_from_slice(&line);
                self.reply(tag, "OK STATUS completed");
                Flow::Continue
            }
            Err(e) => self.bad(tag, &e),
        }
    }

    /// `* STATUS name (items)` for STATUS and LIST-STATUS.
    fn status_line(
        &mut self,
        name: &str,
        mb: &Mailbox,
        items: &[Token],
    ) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        for t in items {
            let Token::Atom(a) = t else { continue };
            let a = a.to_ascii_uppercase();
            let v = match a.as_str() {
                "MESSAGES" => mb.messages().len() as u64,
                "UIDNEXT" => mb.uidnext() as u64,
                "UIDVALIDITY" => mb.uidvalidity() as u64,
                "UNSEEN" => mb
                    .messages()
                    .iter()
                    .filter(|m| !m.flags.contains('S'))
                    .count() as u64,
                "RECENT" => 0,
                // RFC 9051 section 6.3.11: messages with \Deleted.
                "DELETED" => mb
                    .messages()
                    .iter()
                    .filter(|m| m.flags.contains('T'))
                    .count() as u64,
                "SIZE" => mb.messages().iter().map(|m| m.vsize).sum(),
                "HIGHESTMODSEQ" => {
                    self.condstore = true;
                    mb.highest_modseq()
                }
                _ => return Err("BAD Unknown STATUS item".into()),
            };
            out.push(format!("{a} {v}"));
        }
        let mut line = b"* STATUS ".to_vec();
        parse::mailbox_out(name, self.rev2, &mut line);
        line.extend_from_slice(format!(" ({})\r\n", out.join(" ")).as_bytes());
        Ok(line)
    }

    /// Report changes made by others: EXPUNGE (MSNs adjusted as each is
    /// removed), EXISTS, flag changes.
    fn updates(&mut self) {
        let Some(sel) = self.sel.as_mut() else { return };
        // A watched mailbox syncs cheaply (index log and new/ only, unless
        // something else changed cur/): no stamps needed.
        let stamp = if sel.mb.is_watched() {
            None
        } else {
            mailbox_stamp(sel.mb.dir())
        };
        let settled = stamp.is_some_and(|s| {
            s.iter()
                .all(|t| t.elapsed().is_ok_and(|age| age > STAMP_SETTLE))
        });
        if settled && stamp == sel.stamp {
            return;
        }
        // Flags as this session last saw them: the index on disk is shared,
        // so another session's sync may already have recorded a change
        // that this session has not reported yet.
        let before: HashMap<u32, String> = sel
            .mb
            .messages()
            .iter()
            .map(|m| (m.uid, m.flags.clone()))
            .collect();
        if let Err(e) = tokio::task::block_in_place(|| sel.mb.sync()) {
            tracing::warn!(error = %e, "sync failed");
            return;
        }
        sel.stamp = stamp;
        let flags_changed: Vec<u32> = sel
            .mb
            .messages()
            .iter()
            .filter(|m| before.get(&m.uid).is_some_and(|f| *f != m.flags))
            .map(|m| m.uid)
            .collect();
        let kw = mailstore::read_keywords(sel.mb.dir());
        if kw != sel.keywords {
            sel.keywords = kw;
            self.out
                .extend_from_slice(flags_lines(&sel.keywords, sel.readonly).as_bytes());
        }
        let now: std::collections::HashSet<u32> = sel.mb.messages().iter().map(|m| m.uid).collect();
        let mut i = 0;
        let mut vanished = Vec::new();
        while i < sel.uids.len() {
            if now.contains(&sel.uids[i]) {
                i += 1;
            } else {
                if self.qresync {
                    vanished.push(sel.uids[i]);
                } else {
                    self.out
                        .extend_from_slice(format!("* {} EXPUNGE\r\n", i + 1).as_bytes());
                }
                sel.uids.remove(i);
            }
        }
        if !vanished.is_empty() {
            vanished.sort_unstable();
            self.out.extend_from_slice(
                format!("* VANISHED {}\r\n", parse::compress_set(&vanished)).as_bytes(),
            );
        }
        let last = sel.uids.last().copied().unwrap_or(0);
        let before = sel.uids.len();
        sel.uids.extend(
            sel.mb
                .messages()
                .iter()
                .map(|m| m.uid)
                .filter(|&u| u > last),
        );
        if sel.uids.len() != before {
            self.out
                .extend_from_slice(format!("* {} EXISTS\r\n", sel.uids.len()).as_bytes());
        }
        for uid in flags_changed {
            if let (Some(pos), Some(m)) = (
                sel.uids.iter().position(|&u| u == uid),
                sel.mb.messages().iter().find(|m| m.uid == uid),
            ) {
                self.out.extend_from_slice(
                    format!(
                        "* {} FETCH (FLAGS ({}){})\r\n",
                        pos + 1,
                        flag_names(&m.flags, &sel.keywords),
                        if self.condstore {
                            format!(" MODSEQ ({})", m.modseq)
                        } else {
                            String::new()
                        }
                    )
                    .as_bytes(),
                );
            }
        }
    }

    /// Expunge \Deleted messages (all, or only these UIDs); returns the
    /// MSNs to report, in the order to send them.
    fn expunge_deleted(&mut self, only: Option<&[u32]>) -> Vec<(u32, u32)> {
        let Some(sel) = self.sel.as_mut() else {
            return Vec::new();
        };
        if sel.readonly {
            return Vec::new();
        }
        let gone: Vec<u32> = sel
            .mb
            .messages()
            .iter()
            .filter(|m| m.flags.contains('T') && only.is_none_or(|o| o.contains(&m.uid)))
            .map(|m| m.uid)
            .collect();
        let expunged = tokio::task::block_in_place(|| sel.mb.expunge(&gone));
        postern_common::metrics::mailstore_op("expunge", expunged.is_ok());
        if let Err(e) = expunged {
            tracing::error!(error = %e, "expunge failed");
        }
        let mut msns = Vec::new();
        for uid in gone {
            if let Some(pos) = sel.uids.iter().position(|&u| u == uid) {
                msns.push((pos as u32 + 1, uid));
                sel.uids.remove(pos);
            }
        }
        msns
    }

    /// FETCH / STORE / SEARCH / EXPUNGE (and their UID forms).
    fn selected(&mut self, tag: &str, verb: &str, uid_mode: bool, args: &[Token]) -> Flow {
        let name = if uid_mode {
            format!("UID {verb}")
        } else {
            verb.to_string()
        };
        if verb == "EXPUNGE" {
            let only = if uid_mode {
                let Some(set) = args.first().and_then(Token::astring) else {
                    return self.bad(tag, "BAD UID EXPUNGE needs a set");
                };
                let max = self
                    .sel
                    .as_ref()
                    .map_or(0, |s| s.mb.uidnext().saturating_sub(1));
                match parse::sequence_set(&set, max) {
                    Some(v) => Some(v),
                    None => return self.bad(tag, "BAD Invalid UID set"),
                }
            } else {
                None
            };
            if self.sel.as_ref().is_some_and(|s| s.readonly) {
                return self.bad(tag, "NO [READ-ONLY] Mailbox is read-only");
            }
            let gone = self.expunge_deleted(only.as_deref());
            if self.qresync {
                let mut uids: Vec<u32> = gone.iter().map(|g| g.1).collect();
                uids.sort_unstable();
                if !uids.is_empty() {
                    self.out.extend_from_slice(
                        format!("* VANISHED {}\r\n", parse::compress_set(&uids)).as_bytes(),
                    );
                }
            } else {
                for (msn, _) in gone {
                    self.out
                        .extend_from_slice(format!("* {msn} EXPUNGE\r\n").as_bytes());
                }
            }
            self.updates();
            self.reply(tag, &format!("OK {name} completed"));
            return Flow::Continue;
        }
        if verb == "SEARCH" {
            return self.search(tag, &name, uid_mode, args);
        }
        let Some(set) = args.first().and_then(Token::astring) else {
            return self.bad(tag, "BAD Missing sequence set");
        };
        let Some(targets) = self.resolve(&set, uid_mode) else {
            return self.bad(tag, "BAD Invalid sequence set");
        };
        let result = if verb == "FETCH" {
            self.fetch(&targets, uid_mode, &set, &args[1..])
                .map(|()| String::new())
        } else {
            self.store(&targets, uid_mode, &args[1..])
        };
        match result {
            Ok(code) => {
                self.reply(tag, &format!("OK {code}{name} completed"));
                Flow::Continue
            }
            Err(e) => self.bad(tag, &e),
        }
    }

    /// (MSN, UID) pairs of a set.
    fn resolve(&self, set: &str, uid_mode: bool) -> Option<Vec<(u32, u32)>> {
        let sel = self.sel.as_ref()?;
        if set == "$" {
            // SEARCHRES: the saved UIDs still present, in either mode.
            return Some(
                sel.uids
                    .iter()
                    .enumerate()
                    .filter(|(_, u)| self.saved.binary_search(u).is_ok())
                    .map(|(i, &u)| (i as u32 + 1, u))
                    .collect(),
            );
        }
        if uid_mode {
            let max = sel.uids.last().copied().unwrap_or(0);
            let want = parse::sequence_set(set, max)?;
            Some(
                sel.uids
                    .iter()
                    .enumerate()
                    .filter(|(_, u)| want.binary_search(u).is_ok())
                    .map(|(i, &u)| (i as u32 + 1, u))
                    .collect(),
            )
        } else {
            let max = sel.uids.len() as u32;
            let want = parse::sequence_set(set, max)?;
            if want.iter().any(|&n| n > max || n == 0) {
                return None;
            }
            Some(
                want.into_iter()
                    .map(|n| (n, sel.uids[n as usize - 1]))
                    .collect(),
            )
        }
    }

    fn fetch(
        &mut self,
        targets: &[(u32, u32)],
        uid_mode: bool,
        set: &str,
        args: &[Token],
    ) -> Result<(), String> {
        // `(items) (modifiers)` or `item (modifiers)`; sections such as
        // `BODY[HEADER.FIELDS (A B)]` are single atoms.
        let (item_toks, modifiers) = match args {
            [Token::LParen, rest @ ..] => {
                let close = rest
                    .iter()
                    .position(|t| *t == Token::RParen)
                    .ok_or("BAD Unbalanced FETCH items")?;
                (&rest[..close], &rest[close + 1..])
            }
            [one, rest @ ..] => (std::slice::from_ref(one), rest),
            [] => return Err("BAD FETCH needs items".into()),
        };
        let (changed_since, vanished) = match modifiers {
            [] => (None, false),
            [
                Token::LParen,
                Token::Atom(k),
                Token::Atom(n),
                rest @ ..,
                Token::RParen,
            ] if k.eq_ignore_ascii_case("CHANGEDSINCE") => {
                let n = n.parse::<u64>().map_err(|_| "BAD Invalid CHANGEDSINCE")?;
                match rest {
                    [] => (Some(n), false),
                    // RFC 7162 section 3.2.6: UID FETCH only, QRESYNC enabled.
                    [v] if v.is_atom("VANISHED") && uid_mode && self.qresync => (Some(n), true),
                    _ => return Err("BAD Unsupported FETCH modifier".into()),
                }
            }
            _ => return Err("BAD Unsupported FETCH modifier".into()),
        };
        let mut items: Vec<String> = item_toks
            .iter()
            .filter_map(|t| match t {
                Token::Atom(a) => Some(a.clone()),
                _ => None,
            })
            .collect();
        if changed_since.is_some() {
            self.condstore = true;
            if !items.iter().any(|i| i.eq_ignore_ascii_case("MODSEQ")) {
                items.push("MODSEQ".into());
            }
        }
        if items.iter().any(|i| i.eq_ignore_ascii_case("MODSEQ")) {
            self.condstore = true;
        }
        let mut expanded = Vec::new();
        for i in items.drain(..) {
            match i.to_ascii_uppercase().as_str() {
                "ALL" => expanded
                    .extend(["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"].map(String::from)),
                "FULL" => expanded.extend(
                    ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"].map(String::from),
                ),
                "FAST" => {
                    expanded.extend(["FLAGS", "INTERNALDATE", "RFC822.SIZE"].map(String::from))
                }
                _ => expanded.push(i),
            }
        }
        if uid_mode && !expanded.iter().any(|i| i.eq_ignore_ascii_case("UID")) {
            expanded.insert(0, "UID".into());
        }
        if expanded.is_empty() {
            return Err("BAD FETCH needs items".into());
        }
        // Validate before answering.
        for i in &expanded {
            let u = i.to_ascii_uppercase();
            let ok = matches!(
                u.as_str(),
                "FLAGS"
                    | "UID"
                    | "MODSEQ"
                    | "RFC822.SIZE"
                    | "INTERNALDATE"
                    | "RFC822"
                    | "RFC822.HEADER"
                    | "RFC822.TEXT"
                    | "ENVELOPE"
                    | "BODYSTRUCTURE"
                    | "BODY"
            ) || ((u.starts_with("BODY[") || u.starts_with("BODY.PEEK["))
                && u.contains(']')
                && section(b"", &u[u.find('[').unwrap() + 1..u.find(']').unwrap()]).is_some())
                || ((u.starts_with("BINARY[")
                    || u.starts_with("BINARY.PEEK[")
                    || u.starts_with("BINARY.SIZE["))
                    && u.find(']').is_some_and(|c| {
                        u[u.find('[').unwrap_or(0) + 1..c]
                            .split('.')
                            .all(|n| n.parse::<u32>().is_ok_and(|n| n > 0))
                            || c == u.find('[').unwrap_or(0) + 1
                    }));
            if !ok {
                return Err(format!("BAD Unsupported FETCH item {i}"));
            }
        }
        let readonly = self.sel.as_ref().is_some_and(|s| s.readonly);
        if vanished && let Some(sel) = self.sel.as_ref() {
            // Requested UIDs that are gone (a superset of those expunged
            // since CHANGEDSINCE: no expunge history is kept).
            let max = sel.mb.uidnext().saturating_sub(1);
            let gone: Vec<u32> = parse::sequence_set(set, max)
                .unwrap_or_default()
                .into_iter()
                .filter(|u| *u <= max && sel.uids.binary_search(u).is_err())
                .collect();
            if !gone.is_empty() {
                self.out.extend_from_slice(
                    format!("* VANISHED (EARLIER) {}\r\n", parse::compress_set(&gone)).as_bytes(),
                );
            }
        }
        for &(msn, uid) in targets {
            let sel = self.sel.as_mut().expect("selected");
            let Some(m) = sel.mb.messages().iter().find(|m| m.uid == uid).cloned() else {
                continue;
            };
            if changed_since.is_some_and(|c| m.modseq <= c) {
                continue;
            }
            let mut body: Option<Vec<u8>> = None;
            let mut set_seen = false;
            let mut parts: Vec<Vec<u8>> = Vec::new();
            for item in &expanded {
                let u = item.to_ascii_uppercase();
                let mut load = |sel: &mut Selected| -> Result<Vec<u8>, String> {
                    if body.is_none() {
                        let raw = tokio::task::block_in_place(|| sel.mb.read_message(uid))
                            .map_err(|e| format!("NO [SERVERBUG] Cannot read message: {e}"))?;
                        body = Some(parse::to_crlf(&raw));
                    }
                    Ok(body.clone().unwrap_or_default())
                };
                let mut p = Vec::new();
                match u.as_str() {
                    "UID" => p.extend_from_slice(format!("UID {uid}").as_bytes()),
                    // Added at the end, after a \Seen change bumped it.
                    "FLAGS" | "MODSEQ" => {}
                    "RFC822.SIZE" => {
                        p.extend_from_slice(format!("RFC822.SIZE {}", m.vsize).as_bytes())
                    }
                    "INTERNALDATE" => p.extend_from_slice(
                        format!("INTERNALDATE \"{}\"", parse::internal_date(m.internal_date))
                            .as_bytes(),
                    ),
                    // Cached in the mail store's message cache: computed
                    // once per message (ENVELOPE from the cached header).
                    "ENVELOPE" => match sel.mb.cached(uid, CACHE_ENVELOPE) {
                        Some(v) => p.extend_from_slice(&v),
                        None => {
                            let v = parse::envelope(&header_wire(sel, uid)?);
                            p.extend_from_slice(&sel.mb.cache_put(uid, CACHE_ENVELOPE, &v));
                        }
                    },
                    "BODYSTRUCTURE" | "BODY" => {
                        let field = if u == "BODY" {
                            CACHE_BODY
                        } else {
                            CACHE_BODYSTRUCTURE
                        };
                        match sel.mb.cached(uid, field) {
                            Some(v) => p.extend_from_slice(&v),
                            None => {
                                let msg = load(sel)?;
                                let v = if u == "BODY" {
                                    parse::body(&msg)
                                } else {
                                    parse::bodystructure(&msg)
                                };
                                p.extend_from_slice(&sel.mb.cache_put(uid, field, &v));
                            }
                        }
                    }
                    _ if u.starts_with("BINARY") => {
                        let open = item.find('[').unwrap_or(0);
                        let close = item.find(']').unwrap_or(item.len());
                        let spec = &item[open + 1..close];
                        let partial = &item[close + 1..];
                        let msg = load(sel)?;
                        let mut data = binary_section(&msg, spec)?;
                        if u.starts_with("BINARY.SIZE") {
                            p.extend_from_slice(
                                format!("BINARY.SIZE[{spec}] {}", data.len()).as_bytes(),
                            );
                        } else {
                            let mut origin = String::new();
                            if !partial.is_empty() {
                                let (a, b) = partial
                                    .strip_prefix('<')
                                    .and_then(|p| p.strip_suffix('>'))
                                    .and_then(|p| p.split_once('.'))
                                    .ok_or("BAD Invalid partial")?;
                                let a: usize = a.parse().map_err(|_| "BAD Invalid partial")?;
                                let b: usize = b.parse().map_err(|_| "BAD Invalid partial")?;
                                let start = a.min(data.len());
                                let end = start.saturating_add(b).min(data.len());
                                data = data[start..end].to_vec();
                                origin = format!("<{a}>");
                            }
                            if !u.starts_with("BINARY.PEEK") {
                                set_seen = true;
                            }
                            // literal8 when the data holds a NUL (RFC 3516).
                            let tilde = if data.contains(&0) { "~" } else { "" };
                            p.extend_from_slice(
                                format!("BINARY[{spec}]{origin} {tilde}{{{}}}\r\n", data.len())
                                    .as_bytes(),
                            );
                            p.extend_from_slice(&data);
                        }
                    }
                    "RFC822" | "RFC822.HEADER" | "RFC822.TEXT" => {
                        let msg = if u == "RFC822.HEADER" {
                            section(&header_wire(sel, uid)?, "HEADER").unwrap_or_default()
                        } else {
                            load(sel)?
                        };
                        let data = match u.as_str() {
                            "RFC822" => {
                                set_seen = true;
                                msg
                            }
                            "RFC822.HEADER" => msg,
                            _ => {
                                set_seen = true;
                                section(&msg, "TEXT").unwrap_or_default()
                            }
                        };
                        p.extend_from_slice(format!("{u} {{{}}}\r\n", data.len()).as_bytes());
                        p.extend_from_slice(&data);
                    }
                    _ => {
                        let peek = u.starts_with("BODY.PEEK[");
                        let open = item.find('[').unwrap_or(0);
                        let close = item.find(']').unwrap_or(item.len());
                        let spec = &item[open + 1..close];
                        let partial = &item[close + 1..];
                        // Top-level header sections come from the cached
                        // header; everything else reads the message.
                        let msg = if spec.to_ascii_uppercase().starts_with("HEADER") {
                            header_wire(sel, uid)?
                        } else {
                            load(sel)?
                        };
                        let mut data = section(&msg, spec).unwrap_or_default();
                        let mut origin = String::new();
                        if !partial.is_empty() {
                            let inner = partial
                                .strip_prefix('<')
                                .and_then(|p| p.strip_suffix('>'))
                                .ok_or("BAD Invalid partial")?;
                            let (a, b) = inner.split_once('.').ok_or("BAD Invalid partial")?;
                            let a: usize = a.parse().map_err(|_| "BAD Invalid partial")?;
                            let b: usize = b.parse().map_err(|_| "BAD Invalid partial")?;
                            let start = a.min(data.len());
                            let end = start.saturating_add(b).min(data.len());
                            data = data[start..end].to_vec();
                            origin = format!("<{a}>");
                        }
                        if !peek {
                            set_seen = true;
                        }
                        p.extend_from_slice(
                            format!(
                                "BODY[{}]{origin} {{{}}}\r\n",
                                spec.to_ascii_uppercase(),
                                data.len()
                            )
                            .as_bytes(),
                        );
                        p.extend_from_slice(&data);
                    }
                }
                if u != "FLAGS" {
                    parts.push(p);
                }
            }
            let mut flags = m.flags.clone();
            if set_seen && !readonly && !flags.contains('S') {
                flags.push('S');
                if let Err(e) = tokio::task::block_in_place(|| sel.mb.set_flags(uid, &flags)) {
                    tracing::warn!(error = %e, "cannot set \\Seen");
                    flags = m.flags.clone();
                }
            }
            let with_flags = expanded.iter().any(|i| i.eq_ignore_ascii_case("FLAGS"))
                || (set_seen && flags != m.flags);
            if with_flags {
                parts.push(format!("FLAGS ({})", flag_names(&flags, &sel.keywords)).into_bytes());
            }
            if expanded.iter().any(|i| i.eq_ignore_ascii_case("MODSEQ"))
                || (with_flags && self.condstore)
            {
                let modseq = sel
                    .mb
                    .messages()
                    .iter()
                    .find(|x| x.uid == uid)
                    .map_or(m.modseq, |x| x.modseq);
                parts.push(format!("MODSEQ ({modseq})").into_bytes());
            }
            self.out
                .extend_from_slice(format!("* {msn} FETCH (").as_bytes());
            self.out.extend_from_slice(&parts.join(&b' '));
            self.out.extend_from_slice(b")\r\n");
        }
        Ok(())
    }

    fn store(
        &mut self,
        targets: &[(u32, u32)],
        uid_mode: bool,
        args: &[Token],
    ) -> Result<String, String> {
        let (unchanged_since, args) = match args {
            [
                Token::LParen,
                Token::Atom(k),
                Token::Atom(n),
                Token::RParen,
                rest @ ..,
            ] if k.eq_ignore_ascii_case("UNCHANGEDSINCE") => {
                self.condstore = true;
                let n = n.parse::<u64>().map_err(|_| "BAD Invalid UNCHANGEDSINCE")?;
                (Some(n), rest)
            }
            a => (None, a),
        };
        let Some(Token::Atom(op)) = args.first() else {
            return Err("BAD STORE needs an operation".into());
        };
        let op = op.to_ascii_uppercase();
        let (mode, silent) = match op.as_str() {
            "FLAGS" => ('=', false),
            "FLAGS.SILENT" => ('=', true),
            "+FLAGS" => ('+', false),
            "+FLAGS.SILENT" => ('+', true),
            "-FLAGS" => ('-', false),
            "-FLAGS.SILENT" => ('-', true),
            _ => return Err("BAD Unknown STORE operation".into()),
        };
        let (mut letters, names) = parse_flags(&args[1..])?;
        let sel = self.sel.as_mut().expect("selected");
        if sel.readonly {
            return Err("NO [READ-ONLY] Mailbox is read-only".into());
        }
        if mode == '-' {
            // Removing a keyword the mailbox never had is a no-op.
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let dir = sel.mb.dir().to_path_buf();
            let found =
                tokio::task::block_in_place(|| mailstore::keyword_letters(&dir, &refs, false))
                    .map_err(|e| format!("NO [SERVERBUG] {e}"))?;
            letters.extend(found.into_iter().flatten());
        } else {
            letters.push_str(&keyword_letters_for(sel.mb.dir(), &names)?);
        }
        let kw = mailstore::read_keywords(sel.mb.dir());
        if kw != sel.keywords {
            sel.keywords = kw;
            self.out
                .extend_from_slice(flags_lines(&sel.keywords, sel.readonly).as_bytes());
        }
        let mut modified = Vec::new();
        for &(msn, uid) in targets {
            let Some(m) = sel.mb.messages().iter().find(|m| m.uid == uid).cloned() else {
                continue;
            };
            if unchanged_since.is_some_and(|n| m.modseq > n) {
                modified.push(if uid_mode { uid } else { msn }.to_string());
                continue;
            }
            let new: String = match mode {
                '=' => letters.clone(),
                '+' => format!("{}{}", m.flags, letters),
                _ => m.flags.chars().filter(|c| !letters.contains(*c)).collect(),
            };
            let mut sorted: Vec<char> = new.chars().collect();
            sorted.sort_unstable();
            sorted.dedup();
            let new: String = sorted.into_iter().collect();
            let stored = tokio::task::block_in_place(|| sel.mb.set_flags(uid, &new));
            postern_common::metrics::mailstore_op("store_flags", stored.is_ok());
            stored.map_err(|e| format!("NO [SERVERBUG] {e}"))?;
            if !silent {
                let uidpart = if uid_mode {
                    format!("UID {uid} ")
                } else {
                    String::new()
                };
                let modseq = if self.condstore {
                    let now = sel.mb.messages().iter().find(|x| x.uid == uid);
                    format!(" MODSEQ ({})", now.map_or(m.modseq, |x| x.modseq))
                } else {
                    String::new()
                };
                self.out.extend_from_slice(
                    format!(
                        "* {msn} FETCH ({uidpart}FLAGS ({}){modseq})\r\n",
                        flag_names(&new, &sel.keywords)
                    )
                    .as_bytes(),
                );
            }
        }
        Ok(if modified.is_empty() {
            String::new()
        } else {
            format!("[MODIFIED {}] ", modified.join(","))
        })
    }

    fn search(&mut self, tag: &str, name: &str, uid_mode: bool, args: &[Token]) -> Flow {
        // RFC 4731 ESEARCH: `RETURN (MIN MAX COUNT ALL)`; `RETURN ()` = ALL.
        let (esearch, args) = match args {
            [Token::Atom(r), Token::LParen, rest @ ..] if r.eq_ignore_ascii_case("RETURN") => {
                let Some(close) = rest.iter().position(|t| *t == Token::RParen) else {
                    return self.bad(tag, "BAD Unbalanced RETURN options");
                };
                let mut opts = Vec::new();
                for t in &rest[..close] {
                    match t.astring().map(|o| o.to_ascii_uppercase()).as_deref() {
                        Some(o @ ("MIN" | "MAX" | "COUNT" | "ALL" | "SAVE")) => {
                            opts.push(o.to_string())
                        }
                        _ => return self.bad(tag, "BAD Unsupported RETURN option"),
                    }
                }
                if opts.is_empty() {
                    opts.push("ALL".into());
                }
                (Some(opts), &rest[close + 1..])
            }
            // IMAP4rev2 has no `* SEARCH`: a plain SEARCH is RETURN (ALL)
            // (RFC 9051 section 6.4.4).
            a if self.rev2 => (Some(vec!["ALL".to_string()]), a),
            a => (None, a),
        };
        let sel = self.sel.as_ref().expect("selected");
        let max_uid = sel.uids.last().copied().unwrap_or(0);
        let key = match crate::search::parse_with_saved(
            args,
            sel.uids.len() as u32,
            max_uid,
            &self.saved,
        ) {
            Ok(k) => k,
            Err(e) => {
                if esearch
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|o| o == "SAVE"))
                {
                    self.saved.clear();
                }
                return self.bad(tag, &e);
            }
        };
        if key.uses_modseq() {
            self.condstore = true;
        }
        let sel = self.sel.as_ref().expect("selected");
        let by_uid: std::collections::HashMap<u32, &mailstore::Message> =
            sel.mb.messages().iter().map(|m| (m.uid, m)).collect();
        let mut hits = Vec::new();
        let mut max_modseq = 0;
        tokio::task::block_in_place(|| {
            for (i, &uid) in sel.uids.iter().enumerate() {
                // Expunged by another session but not reported yet: no match.
                let Some(m) = by_uid.get(&uid) else { continue };
                let mut c = crate::search::Candidate {
                    msn: i as u32 + 1,
                    uid,
                    flags: &m.flags,
                    keywords: keyword_names(&m.flags, &sel.keywords),
                    vsize: m.vsize,
                    internal_date: m.internal_date,
                    modseq: m.modseq,
                    path: m.path.clone(),
                    cached: None,
                    header: None,
                    mailbox: Some(&sel.mb),
                };
                if c.matches(&key) {
                    hits.push(if uid_mode { uid } else { i as u32 + 1 });
                    max_modseq = max_modseq.max(m.modseq);
                }
            }
        });
        let with_modseq = key.uses_modseq() && !hits.is_empty();
        if let Some(opts) = esearch.as_ref()
            && opts.iter().any(|o| o == "SAVE")
        {
            let sel = self.sel.as_ref().expect("selected");
            let mut uids: Vec<u32> = if uid_mode {
                hits.clone()
            } else {
                hits.iter().map(|&n| sel.uids[n as usize - 1]).collect()
            };
            uids.sort_unstable();
            self.saved = uids;
            if opts.len() == 1 {
                // SAVE alone: no ESEARCH answer (RFC 5182 section 2.1).
                self.reply(tag, &format!("OK {name} completed"));
                return Flow::Continue;
            }
        }
        if let Some(opts) = esearch {
            let mut line = format!("* ESEARCH (TAG \"{tag}\")");
            if uid_mode {
                line.push_str(" UID");
            }
            for o in &opts {
                match (o.as_str(), hits.first(), hits.last()) {
                    ("MIN", Some(v), _) | ("MAX", _, Some(v)) => {
                        line.push_str(&format!(" {o} {v}"));
                    }
                    ("COUNT", ..) => line.push_str(&format!(" COUNT {}", hits.len())),
                    ("ALL", Some(_), _) => {
                        line.push_str(&format!(" ALL {}", parse::compress_set(&hits)));
                    }
                    _ => {}
                }
            }
            if with_modseq {
                line.push_str(&format!(" MODSEQ {max_modseq}"));
            }
            line.push_str("\r\n");
            self.out.extend_from_slice(line.as_bytes());
            self.reply(tag, &format!("OK {name} completed"));
            return Flow::Continue;
        }
        let mut line = String::from("* SEARCH");
        for h in hits {
            line.push(' ');
            line.push_str(&h.to_string());
        }
        if with_modseq {
            line.push_str(&format!(" (MODSEQ {max_modseq})"));
        }
        line.push_str("\r\n");
        self.out.extend_from_slice(line.as_bytes());
        self.reply(tag, &format!("OK {name} completed"));
        Flow::Continue
    }

    /// GETQUOTAROOT / GETQUOTA (RFC 9208): one root `""` per user with the
    /// directory's quota as STORAGE (KiB); usage is the on-disk size of all
    /// folders, from the `S=` in the file names (no file is read).
    fn quota(&mut self, tag: &str, verb: &str, args: &[Token]) -> Flow {
        let Some(arg) = args.first().and_then(Token::astring) else {
            return self.bad(tag, "BAD Missing argument");
        };
        let root = self.root.clone().expect("authenticated");
        let line = |used: u64, limit: u64| {
            format!(
                "* QUOTA \"\" (STORAGE {} {})\r\n",
                used.div_ceil(1024),
                limit.div_ceil(1024)
            )
        };
        if verb == "GETQUOTAROOT" {
            if self.open_folder(&arg).is_none() {
                return self.bad(tag, "NO [NONEXISTENT] No such mailbox");
            }
            let mut out = b"* QUOTAROOT ".to_vec();
            parse::astring_out(arg.as_bytes(), &mut out);
            if self.quota_bytes > 0 {
                out.extend_from_slice(b" \"\"\r\n");
                let used = tokio::task::block_in_place(|| storage_used(&root));
                out.extend_from_slice(line(used, self.quota_bytes).as_bytes());
            } else {
                out.extend_from_slice(b"\r\n");
            }
            self.out.extend_from_slice(&out);
        } else {
            if !arg.is_empty() || self.quota_bytes == 0 {
                return self.bad(tag, "NO [NONEXISTENT] No such quota root");
            }
            let used = tokio::task::block_in_place(|| storage_used(&root));
            self.out
                .extend_from_slice(line(used, self.quota_bytes).as_bytes());
        }
        self.reply(tag, &format!("OK {verb} completed"));
        Flow::Continue
    }

    /// SORT and THREAD (RFC 5256; THREAD=ORDEREDSUBJECT only) and their UID
    /// forms: `SORT (criteria) charset keys`, `THREAD algorithm charset keys`.
    fn sort_or_thread(&mut self, tag: &str, verb: &str, uid_mode: bool, args: &[Token]) -> Flow {
        let name = if uid_mode {
            format!("UID {verb}")
        } else {
            verb.to_string()
        };
        let (criteria, rest) = if verb == "SORT" {
            let Some(Token::LParen) = args.first() else {
                return self.bad(tag, "BAD SORT needs criteria");
            };
            let Some(close) = args.iter().position(|t| *t == Token::RParen) else {
                return self.bad(tag, "BAD Unbalanced SORT criteria");
            };
            let atoms: Vec<String> = args[1..close].iter().filter_map(Token::astring).collect();
            let Some(c) = crate::sort::parse_criteria(&atoms) else {
                return self.bad(tag, "BAD Invalid SORT criteria");
            };
            (Some(c), &args[close + 1..])
        } else {
            if !args
                .first()
                .is_some_and(|t| t.is_atom("ORDEREDSUBJECT") || t.is_atom("REFERENCES"))
            {
                return self.bad(tag, "BAD Unsupported THREAD algorithm");
            }
            (None, &args[1..])
        };
        let Some(charset) = rest.first().and_then(Token::astring) else {
            return self.bad(tag, "BAD Missing charset");
        };
        if !charset.eq_ignore_ascii_case("UTF-8") && !charset.eq_ignore_ascii_case("US-ASCII") {
            return self.bad(tag, "NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
        }
        let sel = self.sel.as_ref().expect("selected");
        let max_uid = sel.uids.last().copied().unwrap_or(0);
        let key = match crate::search::parse(&rest[1..], sel.uids.len() as u32, max_uid) {
            Ok(k) => k,
            Err(e) => return self.bad(tag, &e),
        };
        let by_uid: HashMap<u32, &mailstore::Message> =
            sel.mb.messages().iter().map(|m| (m.uid, m)).collect();
        let mut keys = Vec::new();
        for (i, &uid) in sel.uids.iter().enumerate() {
            let Some(m) = by_uid.get(&uid) else { continue };
            let mut c = crate::search::Candidate {
                msn: i as u32 + 1,
                uid,
                flags: &m.flags,
                keywords: keyword_names(&m.flags, &sel.keywords),
                vsize: m.vsize,
                internal_date: m.internal_date,
                modseq: m.modseq,
                path: m.path.clone(),
                cached: None,
                header: None,
                mailbox: Some(&sel.mb),
            };
            if !tokio::task::block_in_place(|| c.matches(&key)) {
                continue;
            }
            // The header from the mail store's cache (read once, ever).
            let header = tokio::task::block_in_place(|| sel.mb.header(uid))
                .unwrap_or_else(|_| std::sync::Arc::from(&b""[..]));
            keys.push(crate::sort::SortKeys::from_header(
                i as u32 + 1,
                uid,
                m.internal_date,
                m.vsize,
                &header,
            ));
        }
        let id = |k: &crate::sort::SortKeys| if uid_mode { k.uid } else { k.msn };
        let line = match criteria {
            Some(c) => {
                let mut l = String::from("* SORT");
                for k in crate::sort::sort(keys, &c) {
                    l.push_str(&format!(" {}", id(&k)));
                }
                l
            }
            None if args[0].is_atom("REFERENCES") => {
                format!("* THREAD {}", crate::sort::references(keys, id))
            }
            None => format!("* THREAD {}", crate::sort::ordered_subject(keys, id)),
        };
        self.out.extend_from_slice(format!("{line}\r\n").as_bytes());
        self.reply(tag, &format!("OK {name} completed"));
        Flow::Continue
    }

    fn create(&mut self, tag: &str, args: &[Token]) -> Flow {
        let Some(name) = args.first().and_then(Token::astring) else {
            return self.bad(tag, "BAD CREATE needs a mailbox");
        };
        let name = name.trim_end_matches('.').to_string();
        if name.eq_ignore_ascii_case("INBOX") || !valid_folder(&name) {
            return self.bad(tag, "NO [CANNOT] Invalid mailbox name");
        }
        let root = self.root.clone().expect("authenticated");
        match tokio::task::block_in_place(|| mailstore::create_folder(&root, &name)) {
            Ok(()) => {
                self.reply(tag, "OK CREATE completed");
                Flow::Continue
            }
            Err(_) if mailstore::folder_path(&root, &name).join("cur").is_dir() => {
                self.bad(tag, "NO [ALREADYEXISTS] Mailbox exists")
            }
            Err(e) => {
                tracing::error!(error = %e, "create failed");
                self.bad(tag, "NO [SERVERBUG] Cannot create the mailbox")
            }
        }
    }

    fn delete(&mut self, tag: &str, args: &[Token]) -> Flow {
        let Some(name) = args.first().and_then(Token::astring) else {
            return self.bad(tag, "BAD DELETE needs a mailbox");
        };
        if name.eq_ignore_ascii_case("INBOX") {
            return self.bad(tag, "NO [CANNOT] INBOX cannot be deleted");
        }
        if self.sel.as_ref().is_some_and(|s| s._name == name) {
            self.sel = None;
        }
        let Some((name, _)) = self.open_folder(&name) else {
            return self.bad(tag, "NO [NONEXISTENT] No such mailbox");
        };
        let root = self.root.clone().expect("authenticated");
        let dir = mailstore::folder_path(&root, &name);
        // Rename away first so a half-removed folder never shows in LIST.
        let trash = root.join(format!("postern-deleting-{}", self.session_id));
        let r = std::fs::rename(&dir, &trash).and_then(|()| std::fs::remove_dir_all(&trash));
        match r {
            Ok(()) => {
                self.reply(tag, "OK DELETE completed");
                Flow::Continue
            }
            Err(e) => {
                tracing::error!(error = %e, "delete failed");
                self.bad(tag, "NO [SERVERBUG] Cannot delete the mailbox")
            }
        }
    }

    /// RENAME (RFC 3501 section 6.3.5): subfolders move along, INBOX's
    /// messages move into the new folder, subscriptions follow.
    fn rename(&mut self, tag: &str, args: &[Token]) -> Flow {
        let (Some(old), Some(new), 2) = (
            args.first().and_then(Token::astring),
            args.get(1).and_then(Token::astring),
            args.len(),
        ) else {
            return self.bad(tag, "BAD RENAME needs two mailbox names");
        };
        let new = new.trim_end_matches('.').to_string();
        if new.eq_ignore_ascii_case("INBOX") || !valid_folder(&new) {
            return self.bad(tag, "NO [CANNOT] Invalid new mailbox name");
        }
        let inbox = old.eq_ignore_ascii_case("INBOX");
        if !inbox && !valid_folder(&old) {
            return self.bad(tag, "NO [NONEXISTENT] No such mailbox");
        }
        let root = self.root.clone().expect("authenticated");
        match tokio::task::block_in_place(|| mailstore::rename_folder(&root, &old, &new)) {
            Ok(()) => {}
            Err(mailstore::StoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                return self.bad(tag, "NO [ALREADYEXISTS] Target mailbox exists");
            }
            Err(mailstore::StoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return self.bad(tag, "NO [NONEXISTENT] No such mailbox");
            }
            Err(e) => {
                tracing::error!(error = %e, "rename failed");
                return self.bad(tag, "NO [SERVERBUG] Cannot rename the mailbox");
            }
        }
        // A renamed selected folder stays selected under its new name (the
        // index moved with it, UIDs are unchanged).
        if !inbox
            && let Some(sel) = self.sel.as_mut()
            && (sel._name == old || sel._name.starts_with(&format!("{old}.")))
        {
            let renamed = format!("{new}{}", &sel._name[old.len()..]);
            let dir = mailstore::folder_path(&root, &renamed);
            match tokio::task::block_in_place(|| Mailbox::open(&dir)) {
                Ok(mb) => {
                    sel.mb = mb;
                    sel._name = renamed;
                }
                Err(_) => self.sel = None,
            }
        }
        if !inbox {
            let path = root.join("subscriptions");
            let list: Vec<String> = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    if l == old {
                        new.clone()
                    } else if let Some(rest) = l.strip_prefix(&format!("{old}.")) {
                        format!("{new}.{rest}")
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            let text: String = list.iter().map(|l| format!("{l}\n")).collect();
            if let Err(e) =
                tokio::task::block_in_place(|| mailstore::write_atomic(&path, text.as_bytes()))
            {
                tracing::warn!(error = %e, "subscriptions not updated after rename");
            }
        }
        self.reply(tag, "OK RENAME completed");
        Flow::Continue
    }

    fn subscribe(&mut self, tag: &str, on: bool, args: &[Token]) -> Flow {
        let Some(name) = args.first().and_then(Token::astring) else {
            return self.bad(tag, "BAD Missing mailbox");
        };
        if !name.eq_ignore_ascii_case("INBOX") && !valid_folder(&name) {
            return self.bad(tag, "NO [CANNOT] Invalid mailbox name");
        }
        let root = self.root.clone().expect("authenticated");
        let path = root.join("subscriptions");
        let mut list: Vec<String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty() && *l != name)
            .map(str::to_string)
            .collect();
        if on {
            list.push(name);
        }
        let text: String = list.iter().map(|l| format!("{l}\n")).collect();
        match tokio::task::block_in_place(|| mailstore::write_atomic(&path, text.as_bytes())) {
            Ok(()) => {
                let verb = if on { "SUBSCRIBE" } else { "UNSUBSCRIBE" };
                self.reply(tag, &format!("OK {verb} completed"));
                Flow::Continue
            }
            Err(e) => {
                tracing::error!(error = %e, "subscriptions write failed");
                self.bad(tag, "NO [SERVERBUG] Cannot update subscriptions")
            }
        }
    }

    /// Deliver `data` into folder `name` with flags; returns (UIDVALIDITY, UID).
    /// Deliver an APPENDed message; `(uidvalidity, Some(uid))`, or `None`
    /// for the UID when another session expunged the message before its
    /// UID could be read back (then there is no APPENDUID to give).
    ///
    /// Into the selected mailbox it goes through the session's own
    /// [`Mailbox`] (no reopening); elsewhere through `dest`, opened on
    /// first use and kept by the caller for the next message of a COPY.
    fn put(
        &mut self,
        name: &str,
        dest: &mut Option<Mailbox>,
        data: &[u8],
        flags: &str,
        internal_date: Option<u64>,
    ) -> Result<(u32, Option<u32>), String> {
        let root = self.root.clone().expect("authenticated");
        let dir = mailstore::folder_path(&root, name);
        tokio::task::block_in_place(|| {
            let mb = match self.sel.as_mut() {
                Some(sel) if sel.mb.dir() == dir.as_path() => &mut sel.mb,
                _ => match dest {
                    Some(mb) => mb,
                    None => dest.insert(Mailbox::open(&dir).map_err(|e| e.to_string())?),
                },
            };
            let uid = mb
                .append(data, flags, internal_date)
                .map_err(|e| e.to_string())?;
            Ok((mb.uidvalidity(), Some(uid)))
        })
    }

    fn append(&mut self, tag: &str, args: &[Token]) -> Flow {
        let Some(name) = args.first().and_then(Token::astring) else {
            return self.bad(tag, "BAD APPEND needs a mailbox");
        };
        let Some((name, _)) = self.folder_dir(&name) else {
            return self.bad(tag, "NO [TRYCREATE] No such mailbox");
        };
        let mut i = 1;
        let mut letters = String::new();
        if args.get(i) == Some(&Token::LParen) {
            let start = i + 1;
            i += 1;
            while let Some(Token::Atom(_)) = args.get(i) {
                i += 1;
            }
            if args.get(i) != Some(&Token::RParen) {
                return self.bad(tag, "BAD Invalid flag list");
            }
            let root = self.root.clone().expect("authenticated");
            let parsed = parse_flags(&args[start..i]).and_then(|(sys, names)| {
                let dir = mailstore::folder_path(&root, &name);
                Ok(sys + &keyword_letters_for(&dir, &names)?)
            });
            match parsed {
                Ok(l) => letters = l,
                Err(e) => return self.bad(tag, &e),
            }
            i += 1;
        }
        // An optional date-time: the message's internal date.
        let mut date = None;
        if let Some(Token::Str(s)) = args.get(i)
            && args.len() > i + 1
        {
            match std::str::from_utf8(s).ok().and_then(parse_date_time) {
                Some(d) => date = Some(d),
                None => return self.bad(tag, "BAD Invalid date-time"),
            }
            i += 1;
        }
        let Some(Token::Str(data)) = args.get(i) else {
            return self.bad(tag, "BAD APPEND needs a message literal");
        };
        if data.len() > parse::APPEND_LIMIT {
            return self.bad(tag, "NO [TOOBIG] Message too big");
        }
        match self.put(&name, &mut None, data, &letters, date) {
            Ok((v, Some(u))) => {
                self.updates();
                self.reply(tag, &format!("OK [APPENDUID {v} {u}] APPEND completed"));
                Flow::Continue
            }
            Ok((_, None)) => {
                self.updates();
                self.reply(tag, "OK APPEND completed");
                Flow::Continue
            }
            Err(e) => {
                tracing::error!(error = %e, "append failed");
                self.bad(tag, "NO [SERVERBUG] APPEND failed")
            }
        }
    }

    /// COPY / MOVE (and UID forms) with UIDPLUS COPYUID.
    fn copy(&mut self, tag: &str, verb: &str, uid_mode: bool, args: &[Token]) -> Flow {
        let (Some(set), Some(dest)) = (
            args.first().and_then(Token::astring),
            args.get(1).and_then(Token::astring),
        ) else {
            return self.bad(tag, "BAD Missing set or mailbox");
        };
        let Some(targets) = self.resolve(&set, uid_mode) else {
            return self.bad(tag, "BAD Invalid sequence set");
        };
        let Some((dest, _)) = self.folder_dir(&dest) else {
            return self.bad(tag, "NO [TRYCREATE] No such mailbox");
        };
        if verb == "MOVE" && self.sel.as_ref().is_some_and(|s| s.readonly) {
            return self.bad(tag, "NO [READ-ONLY] Mailbox is read-only");
        }
        let mut src = Vec::new();
        let mut dst = Vec::new();
        let mut validity = 0;
        let root = self.root.clone().expect("authenticated");
        let dest_dir = mailstore::folder_path(&root, &dest);
        // MOVE between folders renames each file into the destination's
        // cur/ (atomic per message; name, so internal date, kept); what
        // cannot be renamed is copied and expunged below.
        let mut targets = targets;
        if verb == "MOVE"
            && let Some(sel) = self.sel.as_ref()
            && sel.mb.dir() != dest_dir.as_path()
        {
            let mut moved: Vec<(u32, String)> = Vec::new();
            let mut rest = Vec::new();
            // Base names already in the destination (a rename must not
            // create a second file with the same base).
            let dest_bases: std::collections::HashSet<String> = tokio::task::block_in_place(|| {
                ["cur", "new"]
                    .iter()
                    .flat_map(|d| std::fs::read_dir(dest_dir.join(d)).into_iter().flatten())
                    .flatten()
                    .filter_map(|e| {
                        let n = e.file_name().into_string().ok()?;
                        Some(mailstore::name::parse(&n).base.to_string())
                    })
                    .collect()
            });
            for &(msn, uid) in &targets {
                let Some(m) = sel.mb.messages().iter().find(|m| m.uid == uid) else {
                    continue;
                };
                let names = keyword_names(&m.flags, &sel.keywords);
                let mut flags: String = m.flags.chars().filter(char::is_ascii_uppercase).collect();
                match keyword_letters_for(&dest_dir, &names) {
                    Ok(l) => flags.push_str(&l),
                    Err(e) => return self.bad(tag, &e),
                }
                let to = dest_dir
                    .join("cur")
                    .join(mailstore::name::with_flags(&m.base, &flags));
                if dest_bases.contains(&m.base) {
                    rest.push((msn, uid));
                    continue;
                }
                match tokio::task::block_in_place(|| std::fs::rename(&m.path, &to)) {
                    Ok(()) => moved.push((uid, m.base.clone())),
                    // Expunged meanwhile by another session: nothing to move.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(_) => rest.push((msn, uid)),
                }
            }
            if !moved.is_empty() {
                let synced = tokio::task::block_in_place(|| {
                    mailstore::fsync_dir(&dest_dir.join("cur"))?;
                    mailstore::fsync_dir(&sel.mb.dir().join("cur"))?;
                    Mailbox::open(&dest_dir)
                });
                match synced {
                    Ok(dmb) => {
                        validity = dmb.uidvalidity();
                        for (uid, base) in moved {
                            if let Some(d) = dmb.messages().iter().find(|x| x.base == base) {
                                src.push(uid.to_string());
                                dst.push(d.uid.to_string());
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "move sync failed");
                        return self.bad(tag, "NO [SERVERBUG] MOVE failed");
                    }
                }
            }
            targets = rest;
        }
        let mut dest_mb = None;
        for &(_, uid) in &targets {
            let sel = self.sel.as_ref().expect("selected");
            let Some(m) = sel.mb.messages().iter().find(|m| m.uid == uid).cloned() else {
                continue;
            };
            let data = match tokio::task::block_in_place(|| sel.mb.read_message(uid)) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "copy read failed");
                    return self.bad(tag, "NO [SERVERBUG] Cannot read a message");
                }
            };
            // Keyword letters are per mailbox: translate through the names.
            let names = keyword_names(&m.flags, &sel.keywords);
            let mut flags: String = m.flags.chars().filter(char::is_ascii_uppercase).collect();
            match keyword_letters_for(&dest_dir, &names) {
                Ok(l) => flags.push_str(&l),
                Err(e) => return self.bad(tag, &e),
            }
            // COPY keeps the internal date (RFC 3501 section 6.4.7).
            match self.put(&dest, &mut dest_mb, &data, &flags, Some(m.internal_date)) {
                Ok((v, Some(u))) => {
                    validity = v;
                    src.push(uid.to_string());
                    dst.push(u.to_string());
                }
                // Copied, but already expunged there by another session:
                // no pair for COPYUID.
                Ok((v, None)) => validity = v,
                Err(e) => {
                    tracing::error!(error = %e, "copy failed");
                    return self.bad(tag, "NO [SERVERBUG] COPY failed");
                }
            }
        }
        let code = if src.is_empty() {
            String::new()
        } else {
            format!("[COPYUID {validity} {} {}] ", src.join(","), dst.join(","))
        };
        if verb == "MOVE" {
            if !code.is_empty() {
                self.out
                    .extend_from_slice(format!("* OK {code}Moved\r\n").as_bytes());
            }
            let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
            let sel = self.sel.as_mut().expect("selected");
            if let Err(e) = tokio::task::block_in_place(|| sel.mb.expunge(&uids)) {
                tracing::error!(error = %e, "move expunge failed");
            }
            self.updates();
            self.reply(tag, &format!("OK {verb} completed"));
        } else {
            self.reply(tag, &format!("OK {code}{verb} completed"));
        }
        Flow::Continue
    }

    async fn idle(&mut self, tag: &str, shutdown: &Shutdown) -> std::io::Result<Flow> {
        self.out.extend_from_slice(b"+ idling\r\n");
        let wake = self
            .sel
            .as_ref()
            .filter(|s| s.mb.is_watched())
            .and_then(|s| crate::notify::subscribe(s.mb.dir()));
        let poll = if wake.is_some() {
            IDLE_POLL_WATCHED
        } else {
            IDLE_POLL
        };
        self.updates();
        self.flush().await?;
        let deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
        let mut buf = vec![0u8; 1024];
        let mut check = false;
        loop {
            if let Some(p) = self.input.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=p).collect();
                let text = String::from_utf8_lossy(&line);
                if text.trim().eq_ignore_ascii_case("DONE") {
                    self.reply(tag, "OK IDLE terminated");
                    return Ok(Flow::Continue);
                }
                return Ok(self.bad(tag, "BAD Expected DONE"));
            }
            if self.input.len() > 1024 {
                return Ok(self.bad(tag, "BAD Expected DONE"));
            }
            // Registered before looking, so a change made while we look
            // still wakes us.
            let notified = wake.as_deref().map(tokio::sync::Notify::notified);
            tokio::pin!(notified);
            if let Some(n) = notified.as_mut().as_pin_mut() {
                n.enable();
            }
            if check {
                check = false;
                self.updates();
                self.flush().await?;
            }
            tokio::select! {
                _ = shutdown.triggered() => {
                    self.out.extend_from_slice(b"* BYE Server shutting down\r\n");
                    postern_common::metrics::session_outcome("shutdown");
                    return Ok(Flow::Close);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.out.extend_from_slice(b"* BYE Autologout; idle for too long\r\n");
                    postern_common::metrics::session_outcome("timeout");
                    return Ok(Flow::Close);
                }
                r = self.conn.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return Ok(Flow::Close),
                    Ok(n) => self.absorb(&buf[..n])?,
                },
                () = async {
                    match notified.as_mut().as_pin_mut() {
                        Some(n) => n.await,
                        None => std::future::pending().await,
                    }
                } => check = true,
                _ = tokio::time::sleep(poll) => check = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections() {
        let msg = b"Subject: a\r\nFrom: b\r\n c\r\nTo: d\r\n\r\nbody\r\n";
        assert_eq!(section(msg, "").unwrap(), msg);
        assert_eq!(section(msg, "HEADER").unwrap(), &msg[..34]);
        assert_eq!(section(msg, "TEXT").unwrap(), b"body\r\n");
        assert_eq!(
            section(msg, "HEADER.FIELDS (FROM)").unwrap(),
            b"From: b\r\n c\r\n\r\n"
        );
        assert_eq!(
            section(msg, "HEADER.FIELDS.NOT (FROM TO)").unwrap(),
            b"Subject: a\r\n\r\n"
        );
        assert!(section(msg, "X.MIME").is_none());
        let nested = b"Subject: outer\r\nContent-Type: multipart/mixed; boundary=Z\r\n\r\n--Z\r\nContent-Type: text/plain\r\n\r\nhi\r\n--Z\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nFrom: i@x\r\n\r\ninner body\r\n--Z--\r\n";
        assert_eq!(
            section(nested, "2.HEADER.FIELDS (SUBJECT)").unwrap(),
            b"Subject: inner\r\n\r\n"
        );
        assert_eq!(
            section(nested, "2.HEADER.FIELDS.NOT (SUBJECT)").unwrap(),
            b"From: i@x\r\n\r\n"
        );
        assert!(section(b"", "2.HEADER.FIELDS (SUBJECT)").is_some());
        assert!(section(b"", "x.HEADER.FIELDS (SUBJECT)").is_none());
        assert_eq!(section(msg, "1").unwrap(), b"body\r\n");
    }

    #[test]
    fn binary_sections() {
        let msg = b"Subject: b\r\nContent-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n/w==\r\n--X\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nsoft=3D\r\n--X\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--X--\r\n";
        assert_eq!(binary_section(msg, "1").unwrap(), [0, 1, 2, 255]);
        assert_eq!(binary_section(msg, "2").unwrap(), "café soft=".as_bytes());
        assert!(
            binary_section(msg, "3")
                .unwrap_err()
                .contains("UNKNOWN-CTE")
        );
        assert_eq!(binary_section(msg, "").unwrap(), msg);
        assert_eq!(decode_qp(b"a=3"), b"a=3");
    }

    #[test]
    fn date_times_and_mutf7() {
        assert_eq!(
            parse_date_time("17-Jul-1996 02:44:25 -0700"),
            Some(837_596_665)
        );
        assert_eq!(parse_date_time(" 1-Jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(parse_date_time("1-Jan-1970 00:00:00 +0100"), None);
        assert_eq!(parse_date_time("1-Jan-1970 24:00:00 +0000"), None);
        assert_eq!(parse_date_time("garbage"), None);
        assert_eq!(parse_date_time("1-Jan-1970 00:00:00 +0\u{e9}0"), None);
        assert_eq!(parse_date_time("1-Jan-1970 00:00:00 \u{e9}\u{e9}0"), None);
        assert!(valid_mutf7("&ZeVnLIqe-") && valid_mutf7("Tom &- Jerry"));
        assert_eq!(decode_mutf7_run(b"ZeVnLIqe").as_deref(), Some("日本語"));
        assert!(!valid_mutf7("&ZeVnLIqe") && !valid_mutf7("&AGE-") && !valid_mutf7("日本"));
        assert!(!valid_mutf7("&Jjo!-"));
    }

    #[test]
    fn flags_map() {
        assert_eq!(
            flag_names("FRSTab", &["$Junk".into()]),
            "\\Flagged \\Answered \\Seen \\Deleted $Junk"
        );
        assert_eq!(
            keyword_names("Sab", &["$Junk".into(), "Work".into()]),
            ["$Junk", "Work"]
        );
        assert!(valid_keyword("$Forwarded") && !valid_keyword("a(b") && !valid_keyword("\\x"));
        assert_eq!(flag_letter("\\SEEN"), Some('S'));
        assert_eq!(flag_letter("$Junk"), None);
        assert!(valid_folder("Sent"));
        assert!(!valid_folder("../x"));
        assert!(!valid_folder(".hidden"));
    }
}
