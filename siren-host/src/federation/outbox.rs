//! Outbound deliveries (PROTOCOL.md §17): a persisted queue per peer, drained over the link by
//! one worker per peer while it has envelopes.
//!
//! * **Admission** ([`admit`], at `send`): an envelope that can never fit the peer's link frames
//!   is refused (107), and so is a first envelope for one more peer beyond the per-user limit
//!   (107) or the server's (203).
//! * **Batches** are built by encoded size within the frame size the peer announced in its
//!   `link_ready`. An envelope too large for it, or refused by the peer for good (a permanent
//!   error code), is dead-lettered: removed, with an `undeliverable` notice to its sender's
//!   device. A permanent refusal of a batch of several is retried one envelope at a time, so
//!   only the offending one is given up; transient failures are retried with backoff.
//! * **Policy.** Nothing leaves while federation is off or the policy denies the peer: no worker
//!   starts then, and a running one stops; the envelopes are held (not deleted) until their TTL.
//! * **Workers** exit when their outbox is empty, and are started again by the next commit for
//!   that peer (after the commit, so no envelope is left without a worker) and at start-up for
//!   non-empty outboxes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use siren_api::federation::Direction;
use siren_api::{Error, ErrorCode, ServerName, Uid, Username};
use siren_proto::envelope::Envelope;
use siren_proto::keys::DekPublic;
use siren_proto::message::{self, LinkMessage, Notice, QueueItem};

use crate::links::RequestError;
use crate::shared::Shared;

/// The queue that holds envelopes waiting for `peer`: an ordinary device queue in the store,
/// named by a key no device can have (a hash of a label and the peer's name), so it gets the
/// store's durability, order and expiry with no new table.
pub fn outbox_key(peer: &ServerName) -> DekPublic {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"siren/v1/outbox\0");
    h.update(peer.as_str().as_bytes());
    DekPublic::from_bytes(h.finalize().into())
}

/// Queue items read from an outbox at a time (a batch holds at most these).
const PAGE: usize = 64;

/// Shortest and longest wait between attempts to reach a peer.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Checks an envelope of a `send` for another server's user before anything is stored: it must
/// fit in one frame of the peer's links (as far as this server knows them), and the sender may
/// not have envelopes waiting for too many servers. Counts the peer for the sender.
pub fn admit(shared: &Arc<Shared>, from: &Uid, env: &Envelope) -> Result<(), Error> {
    let peer = env.to.server();
    let size = deliver_size(&[env]);
    let limit = shared
        .links
        .known_frame_limit(peer)
        .unwrap_or(siren_proto::frame::DEFAULT_MAX_FRAME);
    if size > limit {
        return Err(Error::new(
            ErrorCode::LimitExceeded,
            format!(
                "the message to {} takes {size} bytes in a link frame; {peer} accepts at most {limit}",
                env.to
            ),
        ));
    }
    shared.outboxes.reserve(from.user(), peer)
}

/// Commits queue items (as [`crate::queue::Queue::enqueue_numbered_first`], which sends on
/// `numbered` once they are numbered) and then starts the workers of the outboxes among them:
/// started after the commit, a worker always finds the new envelopes.
pub async fn enqueue(
    shared: &Arc<Shared>,
    items: Vec<(DekPublic, QueueItem)>,
    numbered: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), Error> {
    let local = &shared.config().server.name;
    let remote: BTreeSet<(Username, ServerName)> = items
        .iter()
        .filter_map(|(_, item)| match item {
            QueueItem::Message { env } if env.to.server() != local => {
                Some((env.from.user().clone(), env.to.server().clone()))
            }
            _ => None,
        })
        .collect();
    shared.queue.enqueue_numbered_first(items, numbered).await?;
    for (user, peer) in remote {
        shared.outboxes.committed(&user, &peer);
        ensure_worker(shared, &peer);
    }
    Ok(())
}

/// Starts the worker that drains `peer`'s outbox, unless it runs already or federation is off.
pub fn ensure_worker(shared: &Arc<Shared>, peer: &ServerName) {
    if shared.config().federation.enabled && shared.outboxes.claim(peer) {
        tokio::spawn(run_outbox(shared.clone(), peer.clone()));
    }
}

/// Bytes of a `deliver` frame carrying `msgs`: the message, the array header's longest form and
/// the transport's tag.
fn deliver_size(msgs: &[&Envelope]) -> usize {
    let empty = message::encode(&LinkMessage::Deliver {
        rid: u32::MAX,
        msgs: Vec::new(),
    })
    .len();
    let envelopes: usize = msgs.iter().map(|e| message::encode_value(e).len()).sum();
    empty + 8 + envelopes + siren_proto::transport::OVERHEAD
}

/// Error codes a peer answers `deliver` with that will not change by trying again: the
/// envelope, its sender or its recipient is wrong for that peer, or the recipient's queue is at
/// its quota (given up with a notice, as a local `send` is refused at once: waiting would hold
/// up every other message to that peer behind it). Anything else (rate limits, federation
/// refusals, server trouble, codes this version does not know) is retried until the TTL.
fn permanent(code: u16) -> bool {
    ErrorCode::from_u16(code).is_some_and(|c| {
        matches!(
            c,
            ErrorCode::MalformedMessage
                | ErrorCode::UnknownMessageType
                | ErrorCode::UnexpectedMessage
                | ErrorCode::LimitExceeded
                | ErrorCode::NotFound
                | ErrorCode::BadSignature
                | ErrorCode::KeyMismatch
                | ErrorCode::UnknownDevice
                | ErrorCode::ForgedSender
                | ErrorCode::QueueFull
                | ErrorCode::Refused
        )
    })
}

/// One stored outbox item.
struct Item {
    seq: u64,
    /// `None`: the stored bytes are not an envelope (removed without sending).
    env: Option<Envelope>,
}

/// What to do with the head of an outbox.
enum Next {
    /// Send these envelopes in one `deliver`, then remove these items.
    Deliver { seqs: Vec<u64>, msgs: Vec<Envelope> },
    /// The first envelope alone is larger than a frame: give it up.
    TooLarge {
        seq: u64,
        env: Box<Envelope>,
        size: usize,
    },
}

/// The longest run of items from the head that fits one frame of `limit` bytes (one item only
/// when `single`).
fn next_batch(page: Vec<Item>, limit: usize, single: bool) -> Next {
    let mut seqs = Vec::new();
    let mut msgs: Vec<Envelope> = Vec::new();
    let mut size = deliver_size(&[]);
    for item in page {
        let Some(env) = item.env else {
            seqs.push(item.seq);
            continue;
        };
        let more = message::encode_value(&env).len();
        if size + more > limit {
            if msgs.is_empty() {
                return Next::TooLarge {
                    seq: item.seq,
                    size: size + more,
                    env: Box::new(env),
                };
            }
            break;
        }
        size += more;
        seqs.push(item.seq);
        msgs.push(env);
        if single {
            break;
        }
    }
    Next::Deliver { seqs, msgs }
}

/// Replaces control characters (a peer's text goes into a notice a client prints).
fn printable(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    crate::links::error_text(clean)
}

/// Gives an envelope up: an `undeliverable` notice to its sender's device is committed, then
/// the envelope is removed from the outbox.
async fn dead_letter(
    shared: &Shared,
    peer: &ServerName,
    seq: u64,
    env: &Envelope,
    code: u16,
    reason: &str,
) -> Result<(), Error> {
    tracing::info!(%peer, id = %env.id.to_hex(), from = %env.from, to = %env.to, code, reason, "a message for another server is given up; its sender is told");
    let notice = Notice::Undeliverable {
        id: env.id,
        to: env.to.clone(),
        code,
        reason: printable(reason),
    };
    shared
        .queue
        .enqueue_to(vec![(env.from_dek, QueueItem::Notice { notice })])
        .await?;
    shared
        .storage
        .ack(outbox_key(peer).as_bytes(), &[seq])
        .await
        .map(drop)
}

/// Drains `peer`'s outbox: reads the stored envelopes in order, delivers them in batches, and
/// removes them only after the peer acknowledged its commit. While the peer is unreachable it
/// retries with exponential backoff (1 s doubling to 30 s); expired envelopes are removed by the
/// sweeper like any queue item. Stops when the outbox is empty, when the policy no longer
/// allows the peer (the envelopes are held) and at shutdown.
async fn run_outbox(shared: Arc<Shared>, peer: ServerName) {
    let key = outbox_key(&peer);
    let mut backoff = MIN_BACKOFF;
    // After a permanent refusal of a batch: how many envelopes to send one at a time.
    let mut single = 0usize;
    let mut shutdown = shared.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let wait = match drain_once(&shared, &peer, &key, &mut single).await {
            Step::Continue => {
                backoff = MIN_BACKOFF;
                continue;
            }
            Step::Stop => return,
            Step::Retry => {
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What the worker does after one step.
enum Step {
    /// Go on at once.
    Continue,
    /// Wait (backoff), then go on.
    Retry,
    /// The worker is done.
    Stop,
}

/// One step of a worker: ask the policy, read the head of the outbox, deliver or dead-letter.
async fn drain_once(
    shared: &Arc<Shared>,
    peer: &ServerName,
    key: &DekPublic,
    single: &mut usize,
) -> Step {
    if let Err(e) = shared.links.allowed(peer, Direction::Outbound).await {
        tracing::warn!(%peer, error = %e, "federation with this peer is not allowed: its outbox is held until its messages expire");
        shared.outboxes.stop(peer);
        return Step::Stop;
    }
    let page = match shared.storage.pending(key.as_bytes(), 0, PAGE).await {
        Ok(page) => page,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot read the outbox");
            return Step::Retry;
        }
    };
    if page.is_empty() {
        let generation = shared.outboxes.unclaim(peer);
        // An envelope committed before the unclaim started no worker (this one still ran), but
        // this second look sees it; one committed after it starts a new worker.
        match shared.storage.pending(key.as_bytes(), 0, 1).await {
            Ok(more) if more.is_empty() => shared.outboxes.forget(peer, generation),
            _ if shared.outboxes.claim(peer) => return Step::Continue,
            _ => {}
        }
        tracing::info!(%peer, "outbox empty; its worker stopped");
        return Step::Stop;
    }
    let limit = match shared.links.frame_limit(peer).await {
        Ok(limit) => limit,
        Err(e) => {
            tracing::info!(%peer, error = %e, "peer unreachable; envelopes stay queued");
            return Step::Retry;
        }
    };
    let items = page
        .into_iter()
        .map(|item| Item {
            seq: item.seq,
            env: match message::decode_value(&item.bytes) {
                Ok(QueueItem::Message { env }) => Some(env),
                _ => None,
            },
        })
        .collect();
    match next_batch(items, limit, *single > 0) {
        Next::TooLarge { seq, env, size } => {
            let reason =
                format!("it takes {size} bytes in a link frame; {peer} accepts at most {limit}");
            match dead_letter(
                shared,
                peer,
                seq,
                &env,
                ErrorCode::LimitExceeded.as_u16(),
                &reason,
            )
            .await
            {
                Ok(()) => Step::Continue,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "cannot give an envelope up");
                    Step::Retry
                }
            }
        }
        Next::Deliver { seqs, msgs } if msgs.is_empty() => {
            // Only items that are not envelopes: nothing to send.
            remove(shared, peer, key, &seqs).await
        }
        Next::Deliver { seqs, msgs } => {
            let count = msgs.len();
            let first = msgs.first().cloned();
            match shared.links.deliver(peer, msgs).await {
                Ok(()) => {
                    *single = single.saturating_sub(count);
                    remove(shared, peer, key, &seqs).await
                }
                Err(RequestError::Refused { code, error }) if permanent(code) => {
                    if let (1, Some(env), Some(seq)) = (count, first, seqs.last()) {
                        *single = single.saturating_sub(1);
                        let reason = format!("the other server refused it ({})", error.message);
                        match dead_letter(shared, peer, *seq, &env, code, &reason).await {
                            Ok(()) => Step::Continue,
                            Err(e) => {
                                tracing::warn!(%peer, error = %e, "cannot give an envelope up");
                                Step::Retry
                            }
                        }
                    } else {
                        // Find the envelope the peer refuses: one at a time for this batch.
                        tracing::info!(%peer, error = %error, count, "a peer refused a batch for good; trying its envelopes one by one");
                        *single = count;
                        Step::Continue
                    }
                }
                Err(e) => {
                    tracing::info!(%peer, error = %e, "delivery failed; envelopes stay queued");
                    Step::Retry
                }
            }
        }
    }
}

/// Removes delivered (or unusable) items from the outbox.
async fn remove(shared: &Shared, peer: &ServerName, key: &DekPublic, seqs: &[u64]) -> Step {
    match shared.storage.ack(key.as_bytes(), seqs).await {
        Ok(_) => Step::Continue,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot remove delivered envelopes");
            Step::Retry
        }
    }
}

/// Starts outbox workers for every peer with envelopes waiting (after a restart), unless
/// federation is off or the policy denies the peer: those outboxes are held until their
/// envelopes expire.
pub async fn resume_outboxes(shared: &Arc<Shared>) {
    let devices = match shared.storage.queue_devices().await {
        Ok(devices) => devices,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list queues to resume outboxes");
            return;
        }
    };
    for device in devices {
        let Ok(page) = shared.storage.pending(&device, 0, 1).await else {
            continue;
        };
        let Some(item) = page.first() else { continue };
        let Ok(QueueItem::Message { env }) = message::decode_value(&item.bytes) else {
            continue;
        };
        let peer = env.to.server();
        if peer == &shared.config().server.name || outbox_key(peer).as_bytes() != &device {
            continue;
        }
        match shared.links.allowed(peer, Direction::Outbound).await {
            Ok(()) => ensure_worker(shared, peer),
            Err(e) => {
                tracing::warn!(%peer, error = %e, "an outbox is held: federation with this peer is not allowed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siren_proto::ids::MessageId;
    use siren_proto::keys::{DekSecret, UskSecret};

    fn envelope(len: usize) -> Envelope {
        let mut rng = siren_proto::os_rng();
        let usk = UskSecret::generate(&mut rng);
        let dek = DekSecret::generate(&mut rng);
        let from = Uid::parse("alice@alpha.test").unwrap();
        let to = Uid::parse("bob@beta.test").unwrap();
        Envelope::seal(
            siren_proto::envelope::Sender {
                uid: &from,
                usk: &usk,
                dek: &dek.public(),
            },
            &to,
            &DekSecret::generate(&mut rng).public(),
            MessageId::random(&mut rng),
            1,
            &vec![0; len],
            &mut rng,
        )
        .unwrap()
    }

    fn items(envs: &[Envelope]) -> Vec<Item> {
        envs.iter()
            .enumerate()
            .map(|(i, e)| Item {
                seq: i as u64 + 1,
                env: Some(e.clone()),
            })
            .collect()
    }

    #[test]
    fn batches_fit_the_frame_and_a_too_large_head_is_set_apart() {
        let envs = [envelope(600_000), envelope(600_000), envelope(10)];
        let mib = 1 << 20;
        // Two 600 KB envelopes never share a 1 MiB frame.
        match next_batch(items(&envs), mib, false) {
            Next::Deliver { seqs, msgs } => {
                assert_eq!(seqs, [1]);
                assert!(deliver_size(&msgs.iter().collect::<Vec<_>>()) <= mib);
            }
            Next::TooLarge { .. } => panic!("fits"),
        }
        // The same batch, encoded as the link will send it, fits the frame.
        let one = LinkMessage::Deliver {
            rid: u32::MAX,
            msgs: vec![envs[0].clone()],
        };
        let framed = message::encode(&one).len() + siren_proto::transport::OVERHEAD;
        assert!(
            framed <= deliver_size(&[&envs[0]]),
            "the estimate is an upper bound"
        );
        // The small one rides along with what fits before it.
        match next_batch(items(&envs[1..]), mib, false) {
            Next::Deliver { seqs, .. } => assert_eq!(seqs, [1, 2]),
            Next::TooLarge { .. } => panic!("fits"),
        }
        // One at a time when asked.
        match next_batch(items(&envs[1..]), mib, true) {
            Next::Deliver { seqs, .. } => assert_eq!(seqs, [1]),
            Next::TooLarge { .. } => panic!("fits"),
        }
        // Larger than the frame by itself: set apart, whatever follows.
        match next_batch(items(&envs), 64 * 1024, false) {
            Next::TooLarge { seq, size, .. } => {
                assert_eq!(seq, 1);
                assert!(size > 600_000);
            }
            Next::Deliver { .. } => panic!("too large"),
        }
        // Items that are not envelopes go with the batch, to be removed.
        let mut page = items(&envs[2..]);
        page.insert(0, Item { seq: 9, env: None });
        match next_batch(page, mib, false) {
            Next::Deliver { seqs, msgs } => {
                assert_eq!(seqs, [9, 1]);
                assert_eq!(msgs.len(), 1);
            }
            Next::TooLarge { .. } => panic!("fits"),
        }
    }

    #[test]
    fn only_problems_of_the_envelope_itself_are_permanent() {
        for code in [101, 102, 106, 107, 300, 301, 303, 304, 400, 401, 402] {
            assert!(permanent(code), "{code}");
        }
        for code in [
            100, 105, 203, 500, 501, 502, 503, 900, 901, 902, 399, 499, 0,
        ] {
            assert!(!permanent(code), "{code}");
        }
    }
}
