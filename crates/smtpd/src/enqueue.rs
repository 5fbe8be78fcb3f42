//! Streaming a message to queue-manager's `Enqueue` while it is received,
//! so large messages never sit whole in smtpd's memory. The queue id comes
//! back only after queue-manager has the message on disk; anything else
//! (error, disconnect) means "not accepted" and smtpd answers 451.

use postern_ipc::queue::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::Channel;

/// Chunks buffered between smtpd and the gRPC stream.
const CHANNEL_DEPTH: usize = 8;

/// An open `Enqueue` call.
pub struct EnqueueStream {
    tx: mpsc::Sender<pb::EnqueueRequest>,
    reply: tokio::task::JoinHandle<Result<String, Status>>,
    sent: u64,
}

impl EnqueueStream {
    /// Start the call with the envelope.
    pub async fn start(
        client: &pb::queue_client::QueueClient<Channel>,
        envelope: pb::Envelope,
    ) -> Result<Self, Status> {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        tx.send(pb::EnqueueRequest {
            part: Some(pb::enqueue_request::Part::Envelope(envelope)),
        })
        .await
        .map_err(|_| Status::internal("enqueue channel closed"))?;
        let mut client = client.clone();
        let reply = tokio::spawn(async move {
            client
                .enqueue(ReceiverStream::new(rx))
                .await
                .map(|r| r.into_inner().queue_id)
        });
        Ok(Self { tx, reply, sent: 0 })
    }

    /// Send message bytes. An error means the queue went away: stop, answer
    /// 451, and call [`EnqueueStream::finish`] for the queue's reason.
    pub async fn chunk(&mut self, data: Vec<u8>) -> Result<(), Status> {
        if data.is_empty() {
            return Ok(());
        }
        self.sent += data.len() as u64;
        if self
            .tx
            .send(pb::EnqueueRequest {
                part: Some(pb::enqueue_request::Part::Chunk(data)),
            })
            .await
            .is_err()
        {
            return Err(Status::unavailable("the queue closed the enqueue stream"));
        }
        Ok(())
    }

    async fn failure(self) -> Status {
        drop(self.tx);
        match self.reply.await {
            Ok(Err(s)) => s,
            Ok(Ok(_)) => Status::internal("queue answered before the end of the message"),
            Err(e) => Status::internal(e.to_string()),
        }
    }

    /// End the message and wait for the durable queue id.
    pub async fn finish(self) -> Result<String, Status> {
        self.finish_with(pb::End::default()).await
    }

    /// End the message with the check pipeline's decisions in `end`
    /// (prepended headers, hold, redirect, archive copies).
    pub async fn finish_with(self, end: pb::End) -> Result<String, Status> {
        let end = pb::EnqueueRequest {
            part: Some(pb::enqueue_request::Part::End(pb::End {
                total_bytes: self.sent,
                ..end
            })),
        };
        if self.tx.send(end).await.is_err() {
            return Err(self.failure().await);
        }
        drop(self.tx);
        match self.reply.await {
            Ok(Ok(id)) if !id.is_empty() => Ok(id),
            Ok(Ok(_)) => Err(Status::internal("queue returned an empty queue id")),
            Ok(Err(s)) => Err(s),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }

    /// Abandon the message (size exceeded, client gone): the queue drops it.
    pub fn abort(self) {
        self.reply.abort();
    }
}

/// The SMTP reply (code, enhanced code, text) for an enqueue the queue
/// refused: a full spool is `452 4.3.1` (RFC 3463; Postfix's wording), a
/// size refusal `552 5.3.4`, anything else `451 4.3.0`. Never 2xx: the
/// message is not on disk.
pub fn failure_reply(s: &Status) -> (u16, (u8, u16, u16), &'static str) {
    match s.code() {
        tonic::Code::ResourceExhausted
            if s.message() == postern_ipc::queue::INSUFFICIENT_STORAGE =>
        {
            (452, (4, 3, 1), "Insufficient system storage")
        }
        tonic::Code::ResourceExhausted => (552, (5, 3, 4), "Message size exceeds fixed limit"),
        _ => (451, (4, 3, 0), "Queue error, try again later"),
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;

    #[test]
    fn full_spool_is_452_size_is_552_else_451() {
        let full = Status::resource_exhausted(postern_ipc::queue::INSUFFICIENT_STORAGE);
        assert_eq!(failure_reply(&full).0, 452);
        assert_eq!(failure_reply(&full).1, (4, 3, 1));
        let big = Status::resource_exhausted("message size exceeds fixed limit");
        assert_eq!(failure_reply(&big).0, 552);
        assert_eq!(failure_reply(&Status::internal("spool I/O error")).0, 451);
        assert_eq!(failure_reply(&Status::unavailable("down")).0, 451);
    }
}
