//! One LMTP connection, driven by the shared sans-I/O engine in `smtp-proto`
//! (LMTP mode: LHLO, one reply per accepted recipient after the message).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postern_common::Shutdown;
use postern_ipc::auth::v1 as pb;
use smtp_proto::{Capability, EnhancedCode, Event, Reply, Session, SessionConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tonic::transport::Channel;

use crate::deliver::{Delivery, Target, deliver};
use crate::identity::Owner;

/// An LMTP client (queue-manager, Postfix) that sends nothing for this long is dropped.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const READ_CHUNK: usize = 64 * 1024;

/// Shared by every connection.
pub struct Shared {
    pub hostname: String,
    pub auth: pb::auth_client::AuthClient<Channel>,
    pub message_size_limit: u64,
    /// `recipient_delimiter` characters (`user+ext@`).
    pub delimiter: String,
}

fn reply(code: u16, enh: (u8, u16, u16), text: &str) -> Reply {
    Reply::new(code, Some(EnhancedCode(enh.0, enh.1, enh.2)), text)
}

/// Split `local+ext@domain` into (`local@domain`, `ext`).
pub fn split_extension(address: &str, delimiter: &str) -> (String, String) {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return (address.to_string(), String::new());
    };
    match local.find(|c| delimiter.contains(c)) {
        Some(i) if !delimiter.is_empty() && i > 0 => (
            format!("{}@{domain}", &local[..i]),
            local[i + 1..].to_string(),
        ),
        _ => (address.to_string(), String::new()),
    }
}

/// Look up a recipient: Ok(target) / Err(reply).
async fn target_for(shared: &Shared, rcpt: &str) -> Result<Target, Reply> {
    let (base, ext) = split_extension(rcpt, &shared.delimiter);
    let mut auth = shared.auth.clone();
    match auth.lookup_user(pb::LookupUserRequest { user: base }).await {
        Ok(r) if r.get_ref().found => {
            let info = r.into_inner().info.unwrap_or_default();
            if !info.enabled {
                return Err(reply(550, (5, 2, 1), "Mailbox disabled"));
            }
            let owner = match Owner::for_process(info.uid, info.gid) {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(rcpt = %rcpt, user = %info.user, uid = info.uid, gid = info.gid, error = %e, "mailbox owner refused");
                    return Err(reply(
                        550,
                        (5, 7, 1),
                        "Delivery with root privileges refused; use an alias",
                    ));
                }
            };
            Ok(Target {
                address: rcpt.to_string(),
                maildir: PathBuf::from(&info.mailbox),
                // Resolved at delivery, with the owner's identity (a system
                // user's ~/Maildir need not be readable by the daemon).
                folder: String::new(),
                extension: ext,
                quota_bytes: info.quota_bytes,
                owner,
            })
        }
        Ok(_) => Err(reply(550, (5, 1, 1), "User unknown")),
        Err(e) => {
            tracing::error!(error = %e, "user lookup failed");
            Err(reply(451, (4, 3, 0), "Temporary lookup failure"))
        }
    }
}

/// Serve one connection until QUIT, error, timeout or shutdown.
pub async fn run<S>(shared: Arc<Shared>, mut stream: S, peer: String, shutdown: Shutdown)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session::new(SessionConfig {
        lmtp: true,
        message_size_limit: shared.message_size_limit,
        hostname: shared.hostname.clone(),
        ..Default::default()
    });
    let greeting = Reply::greeting(&shared.hostname, "LMTP postern ready");
    if stream.write_all(&greeting.encode()).await.is_err() {
        return;
    }
    let mut sender = String::new();
    let mut targets: Vec<Target> = Vec::new();
    let mut message: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        while let Some(ev) = session.poll() {
            match ev {
                Event::Hello(_) => {
                    let caps = [
                        Capability::Pipelining,
                        Capability::Size(Some(shared.message_size_limit)),
                        Capability::EightBitMime,
                        Capability::SmtpUtf8,
                        Capability::EnhancedStatusCodes,
                        Capability::Chunking,
                    ];
                    targets.clear();
                    session.reply(Reply::lhlo(&shared.hostname, "postern", &caps));
                }
                Event::StartTls => session.reply(Reply::not_implemented()),
                Event::Auth { .. } | Event::AuthResponse(_) => {
                    session.reply(Reply::not_implemented())
                }
                Event::Mail { from, params } => {
                    if let Some(p) = params.unknown.first() {
                        session.reply(Reply::unsupported_parameter(&p.0));
                        continue;
                    }
                    sender = from.map(|a| a.to_string()).unwrap_or_default();
                    targets.clear();
                    message.clear();
                    session.reply(Reply::sender_ok());
                }
                Event::Rcpt { to, .. } => match target_for(&shared, &to.to_string()).await {
                    Ok(t) => {
                        targets.push(t);
                        session.reply(Reply::recipient_ok());
                    }
                    Err(r) => session.reply(r),
                },
                Event::DataStart { bdat } => {
                    message.clear();
                    session.reply(if bdat {
                        Reply::ok()
                    } else {
                        Reply::start_data()
                    });
                }
                Event::Data(chunk) => message.extend_from_slice(&chunk),
                Event::DataEnd(_) => {
                    // One reply per accepted recipient, in RCPT order.
                    // Authentication-Results claiming our name that our
                    // smtpd did not add (RFC 8601 5) go before anything is
                    // stored or de-duplicated.
                    let msg = crate::junk::strip_forged_results(
                        std::mem::take(&mut message),
                        &shared.hostname,
                    );
                    let sender_now = sender.clone();
                    let batch = std::mem::take(&mut targets);
                    let results = tokio::task::spawn_blocking(move || {
                        batch
                            .iter()
                            .map(|t| (t.address.clone(), t.owner, deliver(t, &sender_now, &msg)))
                            .collect::<Vec<_>>()
                    })
                    .await;
                    match results {
                        Ok(results) => {
                            if results.iter().any(|(_, _, r)| r.is_ok()) {
                                postern_common::metrics::message_received();
                            }
                            for (rcpt, owner, r) in results {
                                postern_common::metrics::mailstore_op("deliver", r.is_ok());
                                let uid = match owner {
                                    Owner::Daemon => None,
                                    Owner::User { uid, .. } => Some(uid),
                                };
                                match r {
                                    Ok(Delivery::Written(d)) => {
                                        tracing::info!(%peer, rcpt = %rcpt, uid, size = d.size, "delivered");
                                        session.reply(reply(
                                            250,
                                            (2, 0, 0),
                                            &format!("<{rcpt}> delivered"),
                                        ));
                                    }
                                    Ok(Delivery::Duplicate(path)) => {
                                        tracing::info!(%peer, rcpt = %rcpt, file = %path.display(), "duplicate suppressed: delivered before");
                                        session.reply(reply(
                                            250,
                                            (2, 0, 0),
                                            &format!("<{rcpt}> delivered"),
                                        ));
                                    }
                                    Err(e) => {
                                        let (code, enh, text) = e.reply();
                                        tracing::warn!(%peer, rcpt = %rcpt, uid, error = %e, "delivery failed");
                                        session.reply(reply(
                                            code,
                                            enh,
                                            &format!("<{rcpt}> {text}"),
                                        ));
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "delivery task failed");
                            for _ in 0..session.replies_expected().max(1) {
                                session.reply(reply(451, (4, 3, 0), "Local delivery error"));
                            }
                        }
                    }
                }
                Event::DataAborted(e) => {
                    tracing::info!(%peer, error = ?e, "message refused");
                    message.clear();
                }
                Event::Other(cmd) => {
                    use smtp_proto::Command;
                    session.reply(match cmd {
                        Command::Rset => {
                            targets.clear();
                            message.clear();
                            Reply::ok()
                        }
                        Command::Vrfy(_) => Reply::vrfy_disabled(),
                        _ => Reply::ok(),
                    });
                }
            }
            if session.wants_flush() && stream.write_all(&session.take_output()).await.is_err() {
                return;
            }
        }
        let out = session.take_output();
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
        if session.is_closed() {
            let _ = stream.shutdown().await;
            return;
        }
        let n = tokio::select! {
            _ = shutdown.triggered() => {
                let _ = stream.write_all(&Reply::shutting_down(&shared.hostname).encode()).await;
                return;
            }
            r = tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(n)) => n,
            },
        };
        session.feed(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::split_extension;

    #[test]
    fn extensions() {
        assert_eq!(
            split_extension("alice+lists@ex.test", "+"),
            ("alice@ex.test".into(), "lists".into())
        );
        assert_eq!(
            split_extension("alice-x@ex.test", "+-"),
            ("alice@ex.test".into(), "x".into())
        );
        assert_eq!(
            split_extension("alice@ex.test", "+"),
            ("alice@ex.test".into(), String::new())
        );
        assert_eq!(
            split_extension("+x@ex.test", "+"),
            ("+x@ex.test".into(), String::new())
        );
        assert_eq!(
            split_extension("a+b@ex.test", ""),
            ("a+b@ex.test".into(), String::new())
        );
    }
}
