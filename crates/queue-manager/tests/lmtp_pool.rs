//! LMTP connection reuse: a pooled connection serves the next transaction
//! after RSET; a connection the server closed meanwhile is replaced.

use std::sync::{Arc, Mutex};

use postern_queue_manager::lmtp::{LmtpPool, LmtpTarget, deliver_to};
use postern_queue_manager::scheduler::Outcome;
use postern_queue_manager::smtp_client::RcptTo;
use postern_queue_manager::spool::{Envelope, Message, QueueId, RcptStatus, Recipient};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

fn message() -> Message {
    Message {
        id: QueueId::generate(),
        queue: "active",
        envelope: Envelope {
            sender: "s@x.test".into(),
            recipients: vec![Recipient {
                address: "a@x.test".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
        size: 0,
        status: vec![RcptStatus::default()],
    }
}

/// A scripted LMTP server: one task per connection; it counts
/// connections and logs commands, and closes a connection after
/// `close_after` transactions.
async fn server(
    l: UnixListener,
    close_after: usize,
    log: Arc<Mutex<Vec<String>>>,
    conns: Arc<Mutex<usize>>,
) {
    loop {
        let Ok((s, _)) = l.accept().await else { return };
        *conns.lock().unwrap() += 1;
        tokio::spawn(serve(s, close_after, log.clone()));
    }
}

async fn serve(s: tokio::net::UnixStream, close_after: usize, log: Arc<Mutex<Vec<String>>>) {
    {
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 lmtp.test ready\r\n").await.unwrap();
        let mut done = 0;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                break;
            }
            log.lock().unwrap().push(line.trim_end().to_string());
            let reply: &[u8] = match line.trim_end() {
                l if l.starts_with("LHLO") => b"250-lmtp.test\r\n250 PIPELINING\r\n",
                l if l.starts_with("MAIL") || l.starts_with("RCPT") || l == "RSET" => b"250 ok\r\n",
                "DATA" => {
                    w.write_all(b"354 go\r\n").await.unwrap();
                    loop {
                        let mut l = Vec::new();
                        r.read_until(b'\n', &mut l).await.unwrap();
                        if l == b".\r\n" || l.is_empty() {
                            break;
                        }
                    }
                    done += 1;
                    b"250 2.0.0 delivered\r\n"
                }
                "QUIT" => {
                    let _ = w.write_all(b"221 bye\r\n").await;
                    break;
                }
                _ => b"500 what\r\n",
            };
            if w.write_all(reply).await.is_err() {
                break;
            }
            if done >= close_after {
                break;
            }
        }
    }
}

#[tokio::test]
async fn pooled_connection_is_reused_and_replaced_when_closed() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lmtp.sock");
    let l = UnixListener::bind(&sock).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let conns = Arc::new(Mutex::new(0));
    // The server drops each connection after 3 transactions.
    tokio::spawn(server(l, 3, log.clone(), conns.clone()));
    let pool = LmtpPool::default();
    let target = LmtpTarget::Unix(sock);
    let rcpt = [RcptTo {
        address: "a@x.test".into(),
        notify: 0,
        orcpt: String::new(),
    }];
    for _ in 0..3 {
        let out = deliver_to(&target, "mx.test", Some(&pool), &message(), b"x\r\n", &rcpt).await;
        assert_eq!(out, vec![Outcome::Delivered]);
    }
    assert_eq!(*conns.lock().unwrap(), 1, "{:?}", log.lock().unwrap());
    {
        let log = log.lock().unwrap();
        assert_eq!(log.iter().filter(|l| *l == "RSET").count(), 2, "{log:?}");
        assert_eq!(log.iter().filter(|l| l.starts_with("LHLO")).count(), 1);
        assert!(!log.iter().any(|l| l == "QUIT"), "{log:?}");
    }
    // The server closed it after the third: RSET fails, a new connection
    // delivers, nothing is lost.
    let out = deliver_to(&target, "mx.test", Some(&pool), &message(), b"x\r\n", &rcpt).await;
    assert_eq!(out, vec![Outcome::Delivered]);
    assert_eq!(*conns.lock().unwrap(), 2);
    assert_eq!(pool.len(), 1);
    // Without a pool: QUIT after the transaction.
    let out = deliver_to(&target, "mx.test", None, &message(), b"x\r\n", &rcpt).await;
    assert_eq!(out, vec![Outcome::Delivered]);
    assert_eq!(log.lock().unwrap().last().unwrap(), "QUIT");
}
