//! One open outbound link: a writer task (every write has a deadline), a reader task that hands
//! answers to the requests waiting for them, and a keepalive. A link whose write does not finish
//! in time (the peer stopped reading), whose reader fails, or that nobody holds any more is
//! closed: both socket halves are dropped and every waiting request fails at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use siren_api::ServerName;
use siren_net::{NetError, Receiver, Sender};
use siren_proto::envelope::Envelope;
use siren_proto::message::{self, LinkMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// How often an open outbound link is pinged (well inside the peer's idle timeout).
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Messages waiting for the writer; a sender beyond this waits (within its own deadline).
const OUT_QUEUE: usize = 16;

/// Presence events peers send over outbound links, with the peer's name.
pub(super) type Events = mpsc::UnboundedSender<(ServerName, LinkMessage)>;

/// What the link's tasks and its holders share.
#[derive(Default)]
struct State {
    alive: AtomicBool,
    /// Requests waiting for their answer, by request id.
    pending: Mutex<HashMap<u32, oneshot::Sender<LinkMessage>>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl State {
    /// Marks the link dead, fails the waiting requests and stops its tasks (which drops both
    /// halves of the socket).
    fn close(&self) {
        self.alive.store(false, Ordering::Release);
        // Dropping the waiting senders fails their requests ("the link closed").
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

/// What the writer writes: a message, or one encoded already (a `deliver` spliced from the
/// outbox's stored envelopes, `message::encode_link_deliver`).
pub(super) enum Outgoing {
    Message(LinkMessage),
    Encoded(Vec<u8>),
}

impl From<LinkMessage> for Outgoing {
    fn from(message: LinkMessage) -> Outgoing {
        Outgoing::Message(message)
    }
}

/// An open link to one peer.
pub(super) struct Link {
    out: mpsc::Sender<Outgoing>,
    state: Arc<State>,
    next_rid: AtomicU32,
    /// The largest frame the peer accepts (its `link_ready`).
    pub(super) max_frame: usize,
}

/// Why a request over a link got no answer.
#[derive(Debug, thiserror::Error)]
#[error("the link closed")]
pub(super) struct LinkClosed;

impl Link {
    /// Starts the tasks of a link whose handshake and `link_ready` are done: writes go through
    /// one writer, each within `write_deadline`, in frames of at most `max_frame` bytes.
    pub(super) fn start(
        peer: &ServerName,
        mut sender: Sender,
        receiver: Receiver,
        max_frame: usize,
        write_deadline: Duration,
        events: Events,
    ) -> Arc<Link> {
        sender.set_max_frame(max_frame);
        let state = Arc::new(State::default());
        state.alive.store(true, Ordering::Release);
        let (out, queued) = mpsc::channel(OUT_QUEUE);
        let writer = tokio::spawn(write_messages(
            peer.clone(),
            sender,
            queued,
            write_deadline,
            state.clone(),
        ));
        let reader = tokio::spawn(read_answers(peer.clone(), receiver, state.clone(), events));
        state
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend([writer.abort_handle(), reader.abort_handle()]);
        let link = Arc::new(Link {
            out,
            state,
            next_rid: AtomicU32::new(1),
            max_frame,
        });
        tokio::spawn(keepalive(Arc::downgrade(&link)));
        link
    }

    /// Closes the link now (its peer is no longer allowed): waiting requests fail.
    pub(super) fn close(&self) {
        self.state.close();
    }

    /// Whether the link is still open.
    pub(super) fn is_alive(&self) -> bool {
        self.state.alive.load(Ordering::Acquire)
    }

    /// Sends a request and waits for its answer, as long as the caller waits (the caller puts
    /// a deadline on it; a request given up is forgotten).
    pub(super) async fn request(
        &self,
        make: impl FnOnce(u32) -> LinkMessage,
    ) -> Result<LinkMessage, LinkClosed> {
        self.send(make).await?.answer().await
    }

    /// Queues a request for the writer (waiting for room) and returns what waits for its
    /// answer: requests sent one after another are written in that order, so their answers
    /// can be awaited later, several at a time.
    pub(super) async fn send<O: Into<Outgoing>>(
        &self,
        make: impl FnOnce(u32) -> O,
    ) -> Result<Answer, LinkClosed> {
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.state
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(rid, tx);
        let answer = Answer {
            rx,
            _forget: Forget {
                state: self.state.clone(),
                rid,
            },
        };
        if !self.is_alive() || self.out.send(make(rid).into()).await.is_err() {
            return Err(LinkClosed);
        }
        Ok(answer)
    }
}

/// The answer a sent request waits for; dropping it forgets the request.
pub(super) struct Answer {
    rx: oneshot::Receiver<LinkMessage>,
    _forget: Forget,
}

impl Answer {
    /// Waits for the answer (the link closing fails it).
    pub(super) async fn answer(self) -> Result<LinkMessage, LinkClosed> {
        let Answer { rx, _forget } = self;
        rx.await.map_err(|_| LinkClosed)
    }
}

impl Link {
    /// Queues signals for the writer without waiting, in as many `signal` messages as the peer's
    /// frames need; an envelope that fits no frame of the peer's is left out. Returns false if
    /// the writer's queue had no room (the rest is dropped: signals are ephemeral).
    pub(super) fn signal(&self, msgs: Vec<Envelope>) -> bool {
        if !self.is_alive() {
            return false;
        }
        for batch in signal_batches(msgs, self.max_frame) {
            if self
                .out
                .try_send(LinkMessage::Signal { msgs: batch }.into())
                .is_err()
            {
                return false;
            }
        }
        true
    }
}

/// Splits envelopes into `signal` messages whose frames fit `max_frame` bytes (the message, the
/// longest array header and the transport's tag); an envelope too large for any frame is
/// dropped.
fn signal_batches(msgs: Vec<Envelope>, max_frame: usize) -> Vec<Vec<Envelope>> {
    let empty = message::encode(&LinkMessage::Signal { msgs: Vec::new() }).len()
        + 8
        + siren_proto::transport::OVERHEAD;
    let mut batches = Vec::new();
    let (mut batch, mut size) = (Vec::new(), empty);
    for env in msgs {
        let len = message::encode_value(&env).len();
        if empty + len > max_frame {
            continue;
        }
        if size + len > max_frame {
            batches.push(std::mem::take(&mut batch));
            size = empty;
        }
        size += len;
        batch.push(env);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

impl Drop for Link {
    fn drop(&mut self) {
        self.state.close();
    }
}

/// Removes a request's entry when the request ends, answered or given up.
struct Forget {
    state: Arc<State>,
    rid: u32,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.state
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.rid);
    }
}

/// Writes the queued messages, each within `deadline`; a write that fails or takes longer (the
/// peer stopped reading) closes the link.
async fn write_messages(
    peer: ServerName,
    mut sender: Sender,
    mut queued: mpsc::Receiver<Outgoing>,
    deadline: Duration,
    state: Arc<State>,
) {
    while let Some(message) = queued.recv().await {
        let encoded = match message {
            Outgoing::Message(message) => message::encode(&message),
            Outgoing::Encoded(bytes) => bytes,
        };
        match tokio::time::timeout(deadline, sender.send_encoded(&encoded)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "a link write failed; link closed");
                break;
            }
            Err(_) => {
                tracing::warn!(%peer, after = ?deadline, "a link write did not finish in time (the peer stopped reading); link closed");
                break;
            }
        }
    }
    state.close();
}

/// Reads a link's answers and hands each to the request waiting for it; presence events go to
/// `events`.
async fn read_answers(peer: ServerName, mut receiver: Receiver, state: Arc<State>, events: Events) {
    loop {
        let message = match receiver.recv::<LinkMessage>().await {
            Ok(m) => m,
            Err(e) => {
                if !matches!(e, NetError::Io(_)) {
                    tracing::warn!(%peer, error = %e, "link failed");
                }
                break;
            }
        };
        if matches!(message, LinkMessage::Event { .. }) {
            let _ = events.send((peer.clone(), message));
            continue;
        }
        let rid = match &message {
            LinkMessage::Directory { rid, .. }
            | LinkMessage::DeliverAck { rid, .. }
            | LinkMessage::Ok { rid } => Some(*rid),
            LinkMessage::Error { rid, .. } => *rid,
            _ => None,
        };
        if let Some(rid) = rid {
            let waiting = state
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&rid);
            if let Some(tx) = waiting {
                let _ = tx.send(message);
            }
        }
    }
    tracing::info!(%peer, "link closed");
    state.close();
}

/// Pings the link every [`KEEPALIVE`] so an idle link stays open and a dead one is noticed (the
/// next request then opens a new link); ends with the link.
async fn keepalive(link: Weak<Link>) {
    loop {
        tokio::time::sleep(KEEPALIVE).await;
        let Some(link) = link.upgrade() else { return };
        if !link.is_alive() {
            return;
        }
        let rid = link.next_rid.fetch_add(1, Ordering::Relaxed);
        // A full queue means the link is busy, which keeps it alive as well.
        if let Err(mpsc::error::TrySendError::Closed(_)) =
            link.out.try_send(LinkMessage::Ping { rid }.into())
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(ct: usize) -> Envelope {
        crate::testing::envelope("b.test", 3, ct)
    }

    #[test]
    fn signal_batches_fit_the_frame() {
        let max = 4096;
        let msgs: Vec<Envelope> = (0..40).map(|_| env(300)).collect();
        let batches = signal_batches(msgs, max);
        assert!(batches.len() > 1);
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 40);
        for batch in batches {
            let framed = message::encode(&LinkMessage::Signal { msgs: batch }).len()
                + siren_proto::transport::OVERHEAD;
            assert!(framed <= max, "{framed}");
        }
        // Too large for any frame of this peer: left out.
        assert!(signal_batches(vec![env(max)], max).is_empty());
    }
}
