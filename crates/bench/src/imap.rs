//! IMAP mixed-command workload: each client loops LOGIN, SELECT INBOX, then
//! rounds of FETCH (flags and a full body), STORE, SEARCH, APPEND, and an
//! EXPUNGE of what it appended, and LOGOUT every few rounds — the commands
//! a mail client sends most. Commands per second over all clients.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Rounds per login session before LOGOUT and a new LOGIN.
const ROUNDS_PER_SESSION: usize = 20;

struct Client {
    r: BufReader<tokio::io::ReadHalf<TcpStream>>,
    w: tokio::io::WriteHalf<TcpStream>,
    tag: u32,
    /// The last tagged OK line.
    last_ok: String,
}

impl Client {
    async fn connect(addr: &str) -> anyhow::Result<Self> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        s.set_nodelay(true)?;
        let (r, w) = tokio::io::split(s);
        let mut c = Client {
            r: BufReader::new(r),
            w,
            tag: 0,
            last_ok: String::new(),
        };
        let mut greeting = String::new();
        c.r.read_line(&mut greeting).await?;
        if !greeting.starts_with("* OK") {
            bail!("no IMAP greeting: {greeting:?}");
        }
        Ok(c)
    }

    /// Send a command (the tag is added) and read to its tagged reply,
    /// skipping literals. Returns the untagged lines.
    async fn cmd(&mut self, command: &str) -> anyhow::Result<Vec<String>> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.w
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        self.finish(&tag, command).await
    }

    /// APPEND with a synchronising literal; the UID from APPENDUID if given.
    async fn append(&mut self, msg: &[u8]) -> anyhow::Result<Option<u32>> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.w
            .write_all(format!("{tag} APPEND INBOX (\\Seen) {{{}}}\r\n", msg.len()).as_bytes())
            .await?;
        let mut l = String::new();
        self.r.read_line(&mut l).await?;
        if !l.starts_with('+') {
            bail!("APPEND: no continuation: {l:?}");
        }
        self.w.write_all(msg).await?;
        self.w.write_all(b"\r\n").await?;
        self.finish(&tag, "APPEND").await?;
        Ok(self
            .last_ok
            .split_once("[APPENDUID ")
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|u| u.trim_end_matches(']').parse().ok()))
    }

    async fn finish(&mut self, tag: &str, what: &str) -> anyhow::Result<Vec<String>> {
        let mut untagged = Vec::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).await? == 0 {
                bail!("connection closed during {what}");
            }
            // A literal at the end of the line: read it and the rest.
            while let Some(n) = literal_len(&l) {
                let mut lit = vec![0u8; n];
                self.r.read_exact(&mut lit).await?;
                let mut rest = String::new();
                self.r.read_line(&mut rest).await?;
                l = format!("{}{rest}", &l[..l.rfind('{').unwrap_or(l.len())]);
            }
            if let Some(status) = l.strip_prefix(tag) {
                if status.trim_start().starts_with("OK") {
                    self.last_ok = l;
                    return Ok(untagged);
                }
                bail!("{what}: {}", l.trim_end());
            }
            untagged.push(l);
        }
    }
}

fn literal_len(line: &str) -> Option<usize> {
    let t = line.trim_end_matches(['\r', '\n']);
    let open = t.rfind('{')?;
    t.strip_suffix('}')?[open + 1..]
        .trim_end_matches('+')
        .parse()
        .ok()
}

fn message(n: usize) -> Vec<u8> {
    let mut m = format!(
        "From: bench@example.test\r\nTo: bench@example.test\r\nSubject: imap bench {n}\r\n\r\n"
    )
    .into_bytes();
    while m.len() < 2048 {
        m.extend_from_slice(b"The quick brown fox jumps over the lazy dog 0123456789\r\n");
    }
    m
}

/// One client's loop until `deadline`; returns the commands completed.
async fn client(
    server: String,
    user: String,
    pass: String,
    id: usize,
    base: Option<usize>,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let mut count = 0u64;
    let mut round = 0usize;
    while Instant::now() < deadline {
        let mut c = Client::connect(&server).await?;
        c.cmd(&format!("LOGIN \"{user}\" \"{pass}\"")).await?;
        let sel = c.cmd("SELECT INBOX").await?;
        count += 2;
        let exists = sel
            .iter()
            .find_map(|l| {
                l.strip_prefix("* ")?
                    .strip_suffix(" EXISTS\r\n")?
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0);
        for _ in 0..ROUNDS_PER_SESSION {
            if Instant::now() >= deadline {
                break;
            }
            round += 1;
            // The messages present before the run keep UIDs 1..=base in a
            // fresh mailbox; others come and go (APPEND/EXPUNGE by the
            // other clients), so address by UID within that range.
            let limit = base.unwrap_or(exists);
            if limit > 0 {
                let n = 1 + (round * 7 + id * 13) % limit;
                c.cmd(&format!("UID FETCH {n} (FLAGS RFC822.SIZE)")).await?;
                c.cmd(&format!("UID FETCH {n} BODY.PEEK[]")).await?;
                c.cmd(&format!("UID STORE {n} +FLAGS (\\Flagged)")).await?;
                c.cmd(&format!("UID STORE {n} -FLAGS (\\Flagged)")).await?;
                count += 4;
            }
            c.cmd("SEARCH UNSEEN").await?;
            c.append(&message(round)).await?;
            // Delete what this round appended: the highest UID of INBOX.
            let found = c.cmd("UID SEARCH SUBJECT \"imap bench\"").await?;
            let uids: Vec<&str> = found
                .iter()
                .filter_map(|l| l.strip_prefix("* SEARCH"))
                .flat_map(|l| l.split_whitespace())
                .collect();
            count += 3;
            if !uids.is_empty() {
                c.cmd(&format!(
                    "UID STORE {} +FLAGS.SILENT (\\Deleted)",
                    uids.join(",")
                ))
                .await?;
                c.cmd("EXPUNGE").await?;
                count += 2;
            }
        }
        c.cmd("LOGOUT").await?;
        count += 1;
    }
    Ok(count)
}

/// Run the workload; returns commands per second. `base`: the messages
/// with UIDs 1..=base that stay in the mailbox (default: EXISTS at SELECT).
pub async fn mixed(
    server: &str,
    user: &str,
    pass: &str,
    base: Option<usize>,
    clients: usize,
    duration: Duration,
    label: &str,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..clients.max(1) {
        tasks.spawn(client(
            server.to_string(),
            user.to_string(),
            pass.to_string(),
            id,
            base,
            deadline,
        ));
    }
    let mut total = 0u64;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    println!(
        "{label}: imap mixed: {clients} clients, {total} commands in {:.1} s: {rate:.0} commands/s",
        start.elapsed().as_secs_f64()
    );
    Ok(rate)
}

#[cfg(test)]
mod tests {
    #[test]
    fn literal_lengths() {
        assert_eq!(super::literal_len("* 1 FETCH (BODY[] {123}\r\n"), Some(123));
        assert_eq!(super::literal_len("* 1 FETCH (BODY[] {12+}\r\n"), Some(12));
        assert_eq!(super::literal_len("* OK done\r\n"), None);
    }
}
