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
//! * **Workers** (`super::worker`) exit when their outbox is empty (on the fast path,
//!   [`crate::federation::early`], a minute later), and are started again by the next commit
//!   for that peer (after the commit, so no envelope is left without a worker) and at start-up
//!   for non-empty outboxes.
//! * **In a cluster** (`[cluster]`) one worker per peer runs in the whole cluster: a worker
//!   first takes the store's lease `outbox:<peer>` ([`siren_api::storage::Storage::lease`],
//!   `super::lease`: 6 s, renewed every 2 s) and stops at once if another node has it,
//!   telling that node over NATS that envelopes were committed. A worker that empties its
//!   outbox ends the lease; one that stops with envelopes left (shutdown) leaves it expired, and
//!   a node that dies leaves it to lapse. Every `poll_secs` each node starts a worker for the
//!   expired leases and for the peers it committed envelopes for whose worker runs nowhere
//!   ([`adopt`]): the first to take the lease drains the outbox from its head.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use siren_api::federation::Direction;
use siren_api::{Error, ErrorCode, ServerName, Uid, Username};
use siren_proto::envelope::Envelope;
use siren_proto::keys::DekPublic;
use siren_proto::message::{self, LinkMessage, Notice, QueueItem};

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
pub(super) const PAGE: usize = 64;

/// Shortest and longest wait between attempts to reach a peer.
pub(super) const MIN_BACKOFF: Duration = Duration::from_secs(1);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Checks an envelope of a `send` for another server's user before anything is stored: it must
/// fit in one frame of the peer's links (as far as this server knows them), and the sender may
/// not have envelopes waiting for too many servers. Counts the peer for the sender.
pub fn admit(shared: &Arc<Shared>, from: &Uid, env: &Envelope) -> Result<(), Error> {
    let peer = env.to.server();
    let size = deliver_size(message::encode_value(env).len());
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
    // For each outbox among the items: its senders, and the items' place in the list.
    let remote: Vec<(usize, Username, ServerName)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, (_, item))| match item {
            QueueItem::Message { env } if env.to.server() != local => {
                Some((i, env.from.user().clone(), env.to.server().clone()))
            }
            _ => None,
        })
        .collect();
    let seqs = shared.queue.enqueue_numbered_first(items, numbered).await?;
    let mut first: BTreeMap<(Username, ServerName), u64> = BTreeMap::new();
    for (i, user, peer) in remote {
        let seq = seqs.get(i).copied().unwrap_or(0);
        let lowest = first.entry((user, peer)).or_insert(seq);
        *lowest = (*lowest).min(seq);
    }
    for ((user, peer), seq) in first {
        shared.outboxes.committed(&user, &peer, seq);
        ensure_worker(shared, &peer);
    }
    Ok(())
}

/// Starts the worker that drains `peer`'s outbox, unless it runs already or federation is off.
pub fn ensure_worker(shared: &Arc<Shared>, peer: &ServerName) {
    if shared.config().federation.enabled
        && let Some(wake) = shared.outboxes.claim(peer)
    {
        tokio::spawn(super::worker::run_outbox(
            shared.clone(),
            peer.clone(),
            wake,
        ));
    }
}

/// Bytes of a `deliver` frame carrying envelopes of `envelopes` bytes in all (encoded): the
/// message, the array header's longest form and the transport's tag.
pub(super) fn deliver_size(envelopes: usize) -> usize {
    let empty = message::encode(&LinkMessage::Deliver {
        rid: u32::MAX,
        msgs: Vec::new(),
    })
    .len();
    empty + 8 + envelopes + siren_proto::transport::OVERHEAD
}

/// Error codes a peer answers `deliver` with that will not change by trying again: the
/// envelope, its sender or its recipient is wrong for that peer, or the recipient's queue is at
/// its quota (given up with a notice, as a local `send` is refused at once: waiting would hold
/// up every other message to that peer behind it). Anything else (rate limits, federation
/// refusals, server trouble, codes this version does not know) is retried until the TTL.
pub(super) fn permanent(code: u16) -> bool {
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
pub(super) struct Item {
    pub(super) seq: u64,
    /// `None`: the stored bytes are not an envelope (removed without sending).
    pub(super) env: Option<Stored>,
}

/// An envelope as the outbox stored it: sent on as it is, encoded, without a decode (the
/// server checked it when its sender sent it); decoded only to give it up, and after a failed
/// delivery (a peer closes the link on a `deliver` it cannot decode, so a stored item damaged
/// on disk would otherwise be sent again and again, holding up the outbox until it expires).
pub(super) struct Stored {
    /// The stored queue item's bytes.
    bytes: Vec<u8>,
    /// Where the envelope starts in them.
    start: usize,
}

impl Stored {
    /// The envelope of a stored queue item; `None` if the item is no envelope (or, when
    /// `verify`, not one that decodes).
    pub(super) fn from_item(bytes: Vec<u8>, verify: bool) -> Option<Stored> {
        if let Some(env) = message::queued_envelope(&bytes) {
            let start = bytes.len() - env.len();
            let stored = Stored { bytes, start };
            return (!verify || stored.decode().is_some()).then_some(stored);
        }
        // Another layout than this server writes (an older one's, say): decoded and encoded.
        match message::decode_value(&bytes) {
            Ok(QueueItem::Message { env }) => Some(Stored {
                bytes: message::encode_value(&env),
                start: 0,
            }),
            _ => None,
        }
    }

    /// The envelope, encoded.
    pub(super) fn envelope(&self) -> &[u8] {
        self.bytes.get(self.start..).unwrap_or_default()
    }

    /// The envelope, decoded (to tell its sender it was given up).
    pub(super) fn decode(&self) -> Option<Envelope> {
        message::decode_value(self.envelope()).ok()
    }
}

/// What to do with the head of an outbox.
pub(super) enum Next {
    /// Send these envelopes in one `deliver`, then remove these items.
    Deliver { seqs: Vec<u64>, msgs: Vec<Stored> },
    /// The first envelope alone is larger than a frame: give it up.
    TooLarge { seq: u64, env: Stored, size: usize },
}

/// The longest run of items from the head that fits one frame of `limit` bytes (one item only
/// when `single`).
pub(super) fn next_batch(page: Vec<Item>, limit: usize, single: bool) -> Next {
    let mut seqs = Vec::new();
    let mut msgs: Vec<Stored> = Vec::new();
    let mut size = deliver_size(0);
    for item in page {
        let Some(env) = item.env else {
            seqs.push(item.seq);
            continue;
        };
        let more = env.envelope().len();
        if size + more > limit {
            if msgs.is_empty() {
                return Next::TooLarge {
                    seq: item.seq,
                    size: size + more,
                    env,
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
pub(super) async fn dead_letter(
    shared: &Shared,
    peer: &ServerName,
    seq: u64,
    stored: &Stored,
    code: u16,
    reason: &str,
) -> Result<(), Error> {
    match stored.decode() {
        Some(env) => {
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
        }
        None => {
            tracing::warn!(%peer, seq, code, reason, "an outbox item that is no envelope is given up");
        }
    }
    shared
        .storage
        .ack(outbox_key(peer).as_bytes(), &[seq])
        .await
        .map(drop)
}

/// In a cluster, every `poll_secs`: starts a worker for each outbox whose lease expired (its
/// node died or stopped before emptying it) and for each peer this node committed envelopes for
/// whose worker runs nowhere (its node emptied the outbox, stopped, and missed this node's
/// notice). A worker that cannot take the lease stops at once.
pub async fn adopt(shared: &Arc<Shared>) {
    if !shared.config().federation.enabled {
        return;
    }
    let mut peers: Vec<ServerName> = shared
        .outboxes
        .peers()
        .into_iter()
        .filter(|(_, running)| !running)
        .map(|(peer, _)| peer)
        .collect();
    match shared.storage.expired_leases("outbox:").await {
        Ok(names) => peers.extend(
            names
                .iter()
                .filter_map(|n| ServerName::parse(n.strip_prefix("outbox:")?).ok()),
        ),
        Err(e) => tracing::warn!(error = %e, "cannot list expired outbox leases"),
    }
    peers.sort();
    peers.dedup();
    for peer in peers {
        ensure_worker(shared, &peer);
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

    /// Outbox items as stored: `QueueItem::Message`s, numbered from 1.
    fn items(envs: &[Envelope]) -> Vec<Item> {
        envs.iter()
            .enumerate()
            .map(|(i, e)| Item {
                seq: i as u64 + 1,
                env: Stored::from_item(
                    message::encode_value(&QueueItem::Message { env: e.clone() }),
                    false,
                ),
            })
            .collect()
    }

    /// A stored envelope is sent as it was stored and decodes to what was sent; an item of
    /// another kind is no envelope; one stored in another layout is still found.
    #[test]
    fn stored_envelopes_are_sent_as_stored() {
        let env = envelope(100);
        let stored = items(std::slice::from_ref(&env))
            .pop()
            .and_then(|item| item.env)
            .unwrap();
        assert_eq!(stored.envelope(), message::encode_value(&env).as_slice());
        assert_eq!(stored.decode(), Some(env.clone()));
        let notice = QueueItem::Notice {
            notice: Notice::ContactRequest {
                from: Uid::parse("eve@alpha.test").unwrap(),
            },
        };
        assert!(Stored::from_item(message::encode_value(&notice), false).is_none());
        #[derive(serde::Serialize)]
        struct Reordered<'a> {
            env: &'a Envelope,
            k: &'static str,
        }
        let reordered = Reordered {
            env: &env,
            k: "message",
        };
        let other = Stored::from_item(message::encode_value(&reordered), false).unwrap();
        assert_eq!(other.decode(), Some(env.clone()));
        // Damaged on disk after the envelope's key: sent as it is, unless verifying (after a
        // failed delivery), when it is no envelope and is removed.
        let mut damaged = message::encode_value(&QueueItem::Message { env });
        damaged.truncate(damaged.len() - 10);
        assert!(Stored::from_item(damaged.clone(), false).is_some());
        assert!(Stored::from_item(damaged, true).is_none());
    }

    #[test]
    fn batches_fit_the_frame_and_a_too_large_head_is_set_apart() {
        let envs = [envelope(600_000), envelope(600_000), envelope(10)];
        let mib = 1 << 20;
        // Two 600 KB envelopes never share a 1 MiB frame.
        match next_batch(items(&envs), mib, false) {
            Next::Deliver { seqs, msgs } => {
                assert_eq!(seqs, [1]);
                let bytes = msgs.iter().map(|m| m.envelope().len()).sum();
                assert!(deliver_size(bytes) <= mib);
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
            framed <= deliver_size(message::encode_value(&envs[0]).len()),
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
