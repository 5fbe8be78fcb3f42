//! LMTP client transport against a scripted LMTP server on a Unix socket.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use postern_queue_manager::lmtp::{LmtpTransport, Reply, dot_stuff, read_reply};
use postern_queue_manager::scheduler::{Outcome, Transport};
use postern_queue_manager::spool::{Envelope, Message, QueueId, RcptStatus, Recipient};

#[tokio::test]
async fn multi_line_replies() {
    let input = b"250-first\r\n250-8BITMIME\r\n250 last\r\n220 x\r\n421\r\n".to_vec();
    let mut r = BufReader::new(&input[..]);
    assert_eq!(
        read_reply(&mut r).await.unwrap(),
        Reply {
            code: 250,
            text: "first 8BITMIME last".into()
        }
    );
    assert_eq!(read_reply(&mut r).await.unwrap().code, 220);
    assert_eq!(
        read_reply(&mut r).await.unwrap(),
        Reply {
            code: 421,
            text: "".into()
        }
    );
    assert!(read_reply(&mut r).await.is_err(), "EOF");
    for bad in [
        &b"250-a\r\n251 b\r\n"[..],
        b"25\r\n",
        b"abc x\r\n",
        b"250xabc\r\n",
        b"250-a\r\n",
    ] {
        let mut r = BufReader::new(bad);
        assert!(
            read_reply(&mut r).await.is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn dot_stuffing() {
    assert_eq!(
        dot_stuff(b".a\r\n..b\r\nc.\r\n"),
        b"..a\r\n...b\r\nc.\r\n.\r\n"
    );
    assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
    assert_eq!(dot_stuff(b""), b".\r\n");
}

fn message(rcpts: &[&str]) -> Message {
    Message {
        id: QueueId::generate(),
        queue: "active",
        envelope: Envelope {
            sender: "s@x.test".into(),
            recipients: rcpts
                .iter()
                .map(|a| Recipient {
                    address: a.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
        size: 0,
        status: vec![RcptStatus::default(); rcpts.len()],
    }
}

#[tokio::test]
async fn per_recipient_replies_after_data() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("lmtp.sock");
    let l = UnixListener::bind(&sock).unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        let mut log = Vec::new();
        w.write_all(b"220-lmtp.test\r\n220 ready\r\n")
            .await
            .unwrap();
        let mut data = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap() == 0 {
                break;
            }
            log.push(line.clone());
            let reply: &[u8] = match line.trim_end() {
                l if l.starts_with("LHLO") => {
                    b"250-lmtp.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                }
                l if l.starts_with("MAIL") => b"250 2.1.0 ok\r\n",
                "RCPT TO:<nobody@x.test>" => b"550 5.1.1 no such user\r\n",
                l if l.starts_with("RCPT") => b"250 2.1.5 ok\r\n",
                "DATA" => {
                    w.write_all(b"354 go\r\n").await.unwrap();
                    loop {
                        let mut l = Vec::new();
                        r.read_until(b'\n', &mut l).await.unwrap();
                        if l == b".\r\n" {
                            break;
                        }
                        data.extend_from_slice(&l);
                    }
                    // a@: delivered; full@: over quota (multi-line 452).
                    b"250 2.0.0 a ok\r\n452-4.2.2 mailbox\r\n452 4.2.2 full\r\n"
                }
                "QUIT" => {
                    w.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
                _ => b"500 what\r\n",
            };
            w.write_all(reply).await.unwrap();
        }
        (log, data)
    });
    let t = LmtpTransport {
        socket: sock,
        helo_name: "mx.test".into(),
    };
    let m = message(&["a@x.test", "nobody@x.test", "full@x.test"]);
    let out = t
        .deliver(&m, b"Subject: t\r\n\r\n.dot\r\n", &[0, 1, 2])
        .await;
    assert_eq!(
        out,
        vec![
            Outcome::Delivered,
            Outcome::PermFail("550 5.1.1 no such user".into()),
            Outcome::TempFail("452 4.2.2 mailbox 4.2.2 full".into()),
        ]
    );
    let (log, data) = server.await.unwrap();
    assert_eq!(log[0], "LHLO mx.test\r\n");
    assert_eq!(log[1], "MAIL FROM:<s@x.test>\r\n");
    assert_eq!(data, b"Subject: t\r\n\r\n..dot\r\n");
}

#[tokio::test]
async fn no_server_is_a_temporary_failure() {
    let dir = tempfile::tempdir().unwrap();
    let t = LmtpTransport {
        socket: dir.path().join("none.sock"),
        helo_name: "mx.test".into(),
    };
    let out = t.deliver(&message(&["a@x.test"]), b"x\r\n", &[0]).await;
    assert!(matches!(&out[..], [Outcome::TempFail(_)]), "{out:?}");
}
