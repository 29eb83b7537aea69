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
//! * **In a cluster** (`[cluster]`) one worker per peer runs in the whole cluster: a worker
//!   first takes the store's lease `outbox:<peer>` ([`siren_api::storage::Storage::lease`],
//!   [`LEASE_TTL`], renewed every [`LEASE_RENEW`]) and stops at once if another node has it,
//!   telling that node over NATS that envelopes were committed. A worker that empties its
//!   outbox ends the lease; one that stops with envelopes left (shutdown) leaves it expired, and
//!   a node that dies leaves it to lapse. Every `poll_secs` each node starts a worker for the
//!   expired leases and for the peers it committed envelopes for whose worker runs nowhere
//!   ([`adopt`]): the first to take the lease drains the outbox from its head.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use siren_api::federation::Direction;
use siren_api::{Error, ErrorCode, ServerName, Uid, Username};
use siren_proto::envelope::Envelope;
use siren_proto::keys::DekPublic;
use siren_proto::message::{self, LinkMessage, Notice, QueueItem};
use tokio::sync::Notify;

use crate::federation::early::{Durable, Early};
use crate::hub::{Mailbox, NO_LAG, Offer, Offered};
use crate::links::{DeliveryAnswer, RequestError};
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
        tokio::spawn(run_outbox(shared.clone(), peer.clone(), wake));
    }
}

/// Bytes of a `deliver` frame carrying envelopes of `envelopes` bytes in all (encoded): the
/// message, the array header's longest form and the transport's tag.
fn deliver_size(envelopes: usize) -> usize {
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
    env: Option<Stored>,
}

/// An envelope as the outbox stored it: sent on as it is, encoded, without a decode (the
/// server checked it when its sender sent it); decoded only to give it up, and after a failed
/// delivery (a peer closes the link on a `deliver` it cannot decode, so a stored item damaged
/// on disk would otherwise be sent again and again, holding up the outbox until it expires).
struct Stored {
    /// The stored queue item's bytes.
    bytes: Vec<u8>,
    /// Where the envelope starts in them.
    start: usize,
}

impl Stored {
    /// The envelope of a stored queue item; `None` if the item is no envelope (or, when
    /// `verify`, not one that decodes).
    fn from_item(bytes: Vec<u8>, verify: bool) -> Option<Stored> {
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
    fn envelope(&self) -> &[u8] {
        self.bytes.get(self.start..).unwrap_or_default()
    }

    /// The envelope, decoded (to tell its sender it was given up).
    fn decode(&self) -> Option<Envelope> {
        message::decode_value(self.envelope()).ok()
    }
}

/// What to do with the head of an outbox.
enum Next {
    /// Send these envelopes in one `deliver`, then remove these items.
    Deliver { seqs: Vec<u64>, msgs: Vec<Stored> },
    /// The first envelope alone is larger than a frame: give it up.
    TooLarge { seq: u64, env: Stored, size: usize },
}

/// The longest run of items from the head that fits one frame of `limit` bytes (one item only
/// when `single`).
fn next_batch(page: Vec<Item>, limit: usize, single: bool) -> Next {
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
async fn dead_letter(
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

/// How long a node's hold on a peer's outbox lasts unless renewed (in a cluster): a surviving
/// node takes the outbox of a dead one over this long after its last renewal, at most.
pub const LEASE_TTL: Duration = Duration::from_secs(6);
/// How often a worker renews its lease.
pub const LEASE_RENEW: Duration = Duration::from_secs(2);

/// The lease that says which node drains `peer`'s outbox.
fn lease_name(peer: &ServerName) -> String {
    format!("outbox:{peer}")
}

/// A node's hold on one peer's outbox, renewed in the background while the worker runs.
struct Lease {
    shared: Arc<Shared>,
    name: String,
    node: String,
    /// Set (and `lost_wake` notified) when a renewal found another holder, or the store could
    /// not be reached for longer than the lease lasts.
    lost: Arc<std::sync::atomic::AtomicBool>,
    lost_wake: Arc<Notify>,
    renewer: tokio::task::JoinHandle<()>,
}

/// Whether a worker may drain a peer's outbox here.
enum Hold {
    /// Not a cluster: this process is the only one.
    Alone,
    /// This node has the lease.
    Here(Lease),
    /// Another node has it (or the store could not say).
    Elsewhere,
}

impl Lease {
    async fn take(shared: &Arc<Shared>, peer: &ServerName) -> Hold {
        let cluster = &shared.config().cluster;
        if !cluster.enabled {
            return Hold::Alone;
        }
        let (name, node) = (lease_name(peer), cluster.node_id.clone());
        match shared.storage.lease(&name, &node, LEASE_TTL).await {
            Ok(true) => {}
            Ok(false) => return Hold::Elsewhere,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot take the lease of an outbox; tried again later");
                return Hold::Elsewhere;
            }
        }
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lost_wake = Arc::new(Notify::new());
        let renewer = tokio::spawn(renew(
            shared.clone(),
            name.clone(),
            node.clone(),
            lost.clone(),
            lost_wake.clone(),
        ));
        Hold::Here(Lease {
            shared: shared.clone(),
            name,
            node,
            lost,
            lost_wake,
            renewer,
        })
    }

    fn is_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ends the lease: forgotten if the outbox is `done` (empty, or held by the policy),
    /// otherwise left expired for another node to take over at once.
    async fn end(self, done: bool) {
        self.renewer.abort();
        if self.is_lost() {
            return;
        }
        if let Err(e) = self
            .shared
            .storage
            .end_lease(&self.name, &self.node, done)
            .await
        {
            tracing::warn!(lease = %self.name, error = %e, "cannot end a lease; it lapses by itself");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Renews lease `name` every [`LEASE_RENEW`] until it is lost (another holder has it, or no
/// renewal succeeded for [`LEASE_TTL`]): then sets `lost` and wakes the worker.
async fn renew(
    shared: Arc<Shared>,
    name: String,
    node: String,
    lost: Arc<std::sync::atomic::AtomicBool>,
    lost_wake: Arc<Notify>,
) {
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(LEASE_RENEW).await;
        match shared.storage.lease(&name, &node, LEASE_TTL).await {
            Ok(true) => renewed = tokio::time::Instant::now(),
            Ok(false) => break,
            Err(e) if renewed.elapsed() + LEASE_RENEW >= LEASE_TTL => {
                tracing::warn!(lease = %name, error = %e, "cannot renew a lease");
                break;
            }
            Err(e) => {
                tracing::info!(lease = %name, error = %e, "cannot renew a lease; trying again")
            }
        }
    }
    tracing::warn!(lease = %name, "lease lost: another node drains this outbox now");
    lost.store(true, std::sync::atomic::Ordering::Relaxed);
    lost_wake.notify_one();
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

/// Drains `peer`'s outbox: reads the stored envelopes in order, delivers them in batches (up to
/// [`IN_FLIGHT`] sent before the oldest is answered), and removes each batch only after the peer
/// acknowledged its commit. While the peer is unreachable it retries with exponential backoff
/// (1 s doubling to 30 s); expired envelopes are removed by the sweeper like any queue item.
/// Stops when the outbox is empty, when the policy no longer allows the peer (the envelopes are
/// held) and at shutdown.
async fn run_outbox(shared: Arc<Shared>, peer: ServerName, wake: Arc<Notify>) {
    let lease = match Lease::take(&shared, &peer).await {
        Hold::Alone => None,
        Hold::Here(lease) => {
            tracing::info!(%peer, "this node drains the outbox");
            Some(lease)
        }
        Hold::Elsewhere => {
            // Its worker runs on another node: it is told envelopes came.
            shared.outboxes.unclaim(&peer);
            shared.hub.outbox_committed(&peer);
            tracing::debug!(%peer, "another node drains the outbox");
            return;
        }
    };
    let done = drain(shared.clone(), peer.clone(), wake, lease.as_ref()).await;
    if !done {
        shared.outboxes.unclaim(&peer);
    }
    if let Some(lease) = lease {
        lease.end(done).await;
    }
}

/// Runs `peer`'s worker: `true` once there is nothing left for it (the outbox is empty, or the
/// policy holds it), `false` when it stopped with work left (shutdown, or the lease lost).
async fn drain(
    shared: Arc<Shared>,
    peer: ServerName,
    wake: Arc<Notify>,
    lease: Option<&Lease>,
) -> bool {
    // Where the last worker left off, unless in a cluster: there another node's commits are
    // not reported to this one (`take_first_committed`), so the read starts at the outbox's
    // first number.
    let floor = if lease.is_none() {
        shared.outboxes.floor(&peer)
    } else {
        0
    };
    let mut worker = Worker {
        key: outbox_key(&peer),
        wake,
        shared: shared.clone(),
        peer,
        single: 0,
        verify: false,
        sent: VecDeque::new(),
        floor,
        fast: lease.is_none() && shared.storage.defers_sync(),
        mailbox: None,
        early: Early::default(),
        held: None,
        told_idle: false,
    };
    let done = worker.run(lease).await;
    worker.unregister();
    if lease.is_none() {
        worker.shared.outboxes.left_at(&worker.peer, worker.floor);
    }
    done
}

impl Worker {
    /// Steps until the outbox is done (`true`), or the worker must stop with work left.
    async fn run(&mut self, lease: Option<&Lease>) -> bool {
        let mut backoff = MIN_BACKOFF;
        let mut shutdown = self.shared.shutdown.clone();
        let lost = || lease.is_some_and(Lease::is_lost);
        let never = Arc::new(Notify::new());
        let lost_wake = lease.map_or(never, |l| l.lost_wake.clone());
        loop {
            if *shutdown.borrow() || lost() {
                return false;
            }
            let wait = match self.step().await {
                Step::Continue => {
                    backoff = MIN_BACKOFF;
                    continue;
                }
                Step::Stop => return true,
                Step::Retry => {
                    // Whatever was in flight is read and sent again from the head.
                    self.restart();
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return false,
                _ = lost_wake.notified() => return false,
            }
        }
    }
}

/// Most `deliver`s of one outbox sent and not answered yet. The peer commits them in the order
/// sent (a reference server fails the ones after a failed one, PROTOCOL.md §17), so the batches
/// behind the oldest cross the link and start their commit while it settles.
const IN_FLIGHT: usize = 16;

/// Most envelopes of one outbox in flight at once (the head is read past them each time).
const ITEMS_IN_FLIGHT: usize = 4 * PAGE;

/// How long a worker on the fast path stays, idle, for the next offer once its outbox is empty
/// (a conversation's next message then goes early too); then it stops.
const LINGER: Duration = Duration::from_secs(60);

/// A `deliver` sent and waiting for its answer.
struct Sent {
    /// The outbox items it removes once answered.
    seqs: Vec<u64>,
    /// How many envelopes it carries, and the envelope when it is the only one (given up by
    /// itself if the peer refuses it for good).
    count: usize,
    first: Option<Stored>,
    answer: DeliveryAnswer,
    /// Its envelopes were offered and sent before they were written ([`crate::federation::early`]).
    early: bool,
}

/// The state of the task draining one peer's outbox.
struct Worker {
    shared: Arc<Shared>,
    peer: ServerName,
    key: DekPublic,
    /// Woken when envelopes are committed for the peer.
    wake: Arc<Notify>,
    /// After a permanent refusal of a batch: how many envelopes to send one at a time.
    single: usize,
    /// After a failed delivery, until one is answered: decode what is read before sending it
    /// ([`Stored`]), removing what does not decode.
    verify: bool,
    /// Deliveries sent, oldest first.
    sent: VecDeque<Sent>,
    /// No item below this number is in the outbox: reads start here rather than at the head,
    /// over the removed items (a log-structured store keeps them as tombstones for a while).
    floor: u64,
    /// Whether the fast path may be used: the store syncs later for less, and this is no
    /// cluster (another node's commits are not offered here).
    fast: bool,
    /// While the fast path is on and the peer answers: this worker's registration as the live
    /// consumer of the outbox queue ([`crate::hub::Hub::register_outbox`]).
    mailbox: Option<Arc<Mailbox>>,
    /// What was offered and sent before it was durable.
    early: Early,
    /// An offer that did not fit the last `deliver`: the next one starts with it.
    held: Option<Offer>,
    /// Whether the log said the outbox is empty since the worker took the fast path.
    told_idle: bool,
}

/// What sending the next batch did.
enum Sending {
    /// Sent one (or gave up or removed items that could not be sent): look again.
    More,
    /// The outbox has nothing after what is in flight.
    Nothing,
    /// Stop sending and go on with this step.
    Failed(Step),
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

impl Worker {
    /// Forgets the deliveries in flight (the peer fails those after a failed one, or they are
    /// duplicates its devices drop by id) and reads again from the head of the outbox; the
    /// fast path is off until a delivery is answered again.
    fn restart(&mut self) {
        self.sent.clear();
        self.verify = true;
        self.unregister();
    }

    /// Takes the fast path: commits for the peer are offered to this worker from now on.
    fn register(&mut self) {
        if self.fast && self.mailbox.is_none() {
            self.mailbox = Some(self.shared.hub.register_outbox(self.key));
            self.told_idle = false;
            // What was committed before is in the store.
            self.early.read = true;
        }
    }

    /// Leaves the fast path: commits for the peer are written, and read from the store (what
    /// was offered and not answered is written by its commit).
    fn unregister(&mut self) {
        if let Some(mailbox) = self.mailbox.take() {
            self.shared.hub.unregister_outbox(&self.key, &mailbox);
        }
        self.held = None;
        self.early.restart();
    }

    /// One step: send the next batch while there is room in flight and something to send (read
    /// from the store, or offered), otherwise wait for the oldest answer (or, with room, for
    /// envelopes to be committed or offered).
    async fn step(&mut self) -> Step {
        let room = if self.single > 0 {
            self.sent.is_empty()
        } else {
            self.sent.len() < IN_FLIGHT && self.items_in_flight() < ITEMS_IN_FLIGHT
        };
        let mailbox = self.mailbox.clone();
        // One envelope at a time (to find the one a peer refuses) goes through the store.
        let offers = mailbox.as_ref().filter(|_| self.single == 0);
        if room {
            if offers.is_none() || self.early.read {
                match self.send_next().await {
                    Sending::More => return Step::Continue,
                    Sending::Nothing if mailbox.is_none() && self.sent.is_empty() => {
                        return self.stop_if_empty().await;
                    }
                    Sending::Nothing => {
                        self.early.read = false;
                        if self.sent.is_empty() && self.single > 0 {
                            // Nothing left to send one at a time: offers are taken again.
                            self.single = 0;
                            return Step::Continue;
                        }
                    }
                    Sending::Failed(step) => return step,
                }
            }
            if let Some(mailbox) = offers {
                match self.send_offered(mailbox).await {
                    Sending::More => return Step::Continue,
                    Sending::Nothing if self.sent.is_empty() && !self.early.read => {
                        return self.idle(mailbox).await;
                    }
                    Sending::Nothing => {}
                    Sending::Failed(step) => return step,
                }
            }
        }
        let Some(oldest) = self.sent.front_mut() else {
            return Step::Continue;
        };
        let offered = async {
            match offers {
                Some(mailbox) => mailbox.changed().await,
                None => std::future::pending().await,
            }
        };
        let answer = tokio::select! {
            answer = &mut oldest.answer => answer,
            // Registered, commits come as offers and notes instead.
            () = self.wake.notified(), if room && mailbox.is_none() => return Step::Continue,
            () = offered, if room && offers.is_some() => return Step::Continue,
        };
        match self.sent.pop_front() {
            Some(sent) => self.answered(sent, answer).await,
            None => Step::Continue,
        }
    }

    fn items_in_flight(&self) -> usize {
        self.sent.iter().map(|s| s.seqs.len()).sum()
    }

    /// Registered, nothing in flight, nothing to read, nothing offered: the outbox is empty.
    /// Its committed envelopes count no more ([`crate::federation::waiting`]); the worker waits
    /// for the next offer for [`LINGER`], then leaves the fast path and stops (after one more
    /// look at the store).
    async fn idle(&mut self, mailbox: &Mailbox) -> Step {
        let generation = self.shared.outboxes.generation(&self.peer);
        self.shared.outboxes.emptied(&self.peer, generation);
        if !self.told_idle {
            // Once per registration (a conversation would log a line per message otherwise).
            self.told_idle = true;
            tracing::info!(peer = %self.peer, "outbox empty; its worker waits for more on the fast path");
        }
        let mut shutdown = self.shared.shutdown.clone();
        tokio::select! {
            () = mailbox.changed() => {}
            // Woken by a commit: what it wrote is noted in the mailbox.
            () = self.wake.notified() => {}
            _ = shutdown.changed() => {}
            () = tokio::time::sleep(LINGER) => self.unregister(),
        }
        Step::Continue
    }

    /// Handles what the mailbox holds: notes that items are durable (removing those the peer
    /// acknowledged already, or asking for a store read) and offers, of which those that may go
    /// early (in order, nothing to read first) are sent in one `deliver`. `Nothing` if no
    /// `deliver` was sent.
    async fn send_offered(&mut self, mailbox: &Mailbox) -> Sending {
        if mailbox.kicked().is_some() {
            // Replaced (never by design: one worker per peer): the store is read instead.
            self.mailbox = None;
            self.held = None;
            self.early.restart();
            return Sending::More;
        }
        if mailbox.take_lag() != NO_LAG {
            // A note that did not fit the mailbox.
            self.early.read = true;
        }
        let limit = self
            .shared
            .links
            .known_frame_limit(&self.peer)
            .unwrap_or(siren_proto::frame::DEFAULT_MAX_FRAME);
        let room = ITEMS_IN_FLIGHT
            .saturating_sub(self.items_in_flight())
            .min(PAGE);
        let mut items: Vec<Item> = Vec::new();
        let mut remove_now = Vec::new();
        let mut size = deliver_size(0);
        while items.len() < room {
            let Some(told) = self
                .held
                .take()
                .map(Offered::Item)
                .or_else(|| mailbox.next_offer())
            else {
                break;
            };
            let offer = match told {
                Offered::Durable(seq) => {
                    let in_flight = self.sent.iter().any(|s| s.seqs.contains(&seq));
                    if self.early.durable(seq, in_flight) == Durable::Remove {
                        remove_now.push(seq);
                    }
                    continue;
                }
                Offered::Item(offer) => offer,
            };
            let env = offer
                .bytes()
                .and_then(|bytes| Stored::from_item(bytes.to_vec(), false));
            let Some(env) = env else {
                self.early.pass(offer.seq);
                continue;
            };
            let more = env.envelope().len();
            if size + more > limit {
                if items.is_empty() {
                    // Larger than the peer's frames: given up from the store.
                    self.early.pass(offer.seq);
                    continue;
                }
                self.held = Some(offer);
                break;
            }
            if self.early.take(offer.seq) {
                size += more;
                items.push(Item {
                    seq: offer.seq,
                    env: Some(env),
                });
            }
        }
        if !remove_now.is_empty()
            && let Step::Retry = remove(&self.shared, &self.peer, &self.key, &remove_now).await
        {
            return Sending::Failed(Step::Retry);
        }
        if items.is_empty() {
            return Sending::Nothing;
        }
        if let Err(e) = self
            .shared
            .links
            .allowed(&self.peer, Direction::Outbound)
            .await
        {
            return self.denied(&e);
        }
        // Every item fits the frame (checked above): one `deliver` carries them all.
        self.send_batch(items, limit, true).await
    }
}
impl Worker {
    /// Reads the head of the outbox past what is in flight and sends the next batch (the policy
    /// is asked first), gives up an envelope too large for the peer's frames, or removes items
    /// that are not envelopes.
    ///
    /// The outbox is read from its first item every time, not after the last one sent: a store
    /// that numbers items before writing them may write a commit after a later one (several
    /// commits in flight, other senders), so an item can appear before items already sent. The
    /// read starts at the floor: the first item found last time, or lower if a commit since
    /// numbered lower ([`crate::federation::waiting::Outboxes::take_first_committed`]).
    async fn send_next(&mut self) -> Sending {
        let (shared, peer, key) = (&self.shared, &self.peer, &self.key);
        if let Err(e) = shared.links.allowed(peer, Direction::Outbound).await {
            return self.denied(&e);
        }
        let flying: HashSet<u64> = self
            .sent
            .iter()
            .flat_map(|s| s.seqs.iter().copied())
            .collect();
        if let Some(first) = shared.outboxes.take_first_committed(peer) {
            self.floor = self.floor.min(first);
        }
        let read = shared
            .storage
            .pending(
                key.as_bytes(),
                self.floor.saturating_sub(1),
                PAGE + flying.len(),
            )
            .await;
        // Items the peer acknowledged when they were sent early, now written: removed.
        let mut done = Vec::new();
        let page: Vec<_> = match read {
            Ok(page) => {
                if let Some(head) = page.first() {
                    self.floor = head.seq;
                }
                let early = &mut self.early;
                page.into_iter()
                    .filter(|item| {
                        if early.seen(item.seq) {
                            done.push(item.seq);
                            return false;
                        }
                        !flying.contains(&item.seq)
                    })
                    .collect()
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot read the outbox");
                return Sending::Failed(Step::Retry);
            }
        };
        if !done.is_empty() {
            return match remove(shared, peer, key, &done).await {
                Step::Continue => Sending::More,
                step => Sending::Failed(step),
            };
        }
        if page.is_empty() {
            return Sending::Nothing;
        }
        let limit = match shared.links.frame_limit(peer).await {
            Ok(limit) => limit,
            Err(e) => {
                tracing::info!(%peer, error = %e, "peer unreachable; envelopes stay queued");
                return Sending::Failed(Step::Retry);
            }
        };
        let items = page
            .into_iter()
            .map(|item| Item {
                seq: item.seq,
                env: Stored::from_item(item.bytes, self.verify),
            })
            .collect();
        self.send_batch(items, limit, false).await
    }

    /// The policy does not allow the peer (any more): the worker stops, the envelopes held.
    fn denied(&mut self, e: &Error) -> Sending {
        let peer = &self.peer;
        tracing::warn!(%peer, error = %e, "federation with this peer is not allowed: its outbox is held until its messages expire");
        self.shared.outboxes.stop(peer);
        Sending::Failed(Step::Stop)
    }

    /// Sends the longest run of `items` that fits a frame of `limit` bytes in one `deliver`
    /// (`early`: offered ones), gives up an envelope too large for it, or removes items that
    /// are not envelopes.
    async fn send_batch(&mut self, items: Vec<Item>, limit: usize, early: bool) -> Sending {
        let (shared, peer, key) = (&self.shared, &self.peer, &self.key);
        match next_batch(items, limit, self.single > 0) {
            Next::TooLarge { seq, env, size } => {
                let reason = format!(
                    "it takes {size} bytes in a link frame; {peer} accepts at most {limit}"
                );
                let code = ErrorCode::LimitExceeded.as_u16();
                match dead_letter(shared, peer, seq, &env, code, &reason).await {
                    Ok(()) => Sending::More,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "cannot give an envelope up");
                        Sending::Failed(Step::Retry)
                    }
                }
            }
            Next::Deliver { seqs, msgs } if msgs.is_empty() => {
                // Only items that are not envelopes: nothing to send.
                match remove(shared, peer, key, &seqs).await {
                    Step::Continue => Sending::More,
                    step => Sending::Failed(step),
                }
            }
            Next::Deliver { seqs, mut msgs } => {
                let count = msgs.len();
                let encoded: Vec<&[u8]> = msgs.iter().map(Stored::envelope).collect();
                let sending = shared.links.send_deliver(peer, &encoded).await;
                let first = msgs.pop().filter(|_| count == 1);
                match sending {
                    Ok(answer) => {
                        self.sent.push_back(Sent {
                            seqs,
                            count,
                            first,
                            answer,
                            early,
                        });
                        Sending::More
                    }
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "delivery failed; envelopes stay queued");
                        Sending::Failed(Step::Retry)
                    }
                }
            }
        }
    }

    /// Nothing in flight and nothing after it: the worker stops, unless an envelope committed
    /// meanwhile needs it.
    async fn stop_if_empty(&mut self) -> Step {
        let (shared, peer) = (&self.shared, &self.peer);
        let generation = shared.outboxes.unclaim(peer);
        // An envelope committed before the unclaim started no worker (this one still ran), but
        // this second look sees it (its commit lowered the floor before it tried to start a
        // worker); one committed after it starts a new worker.
        if let Some(first) = shared.outboxes.take_first_committed(peer) {
            self.floor = self.floor.min(first);
        }
        let after = self.floor.saturating_sub(1);
        match shared.storage.pending(self.key.as_bytes(), after, 1).await {
            Ok(more) if more.is_empty() => shared.outboxes.forget(peer, generation),
            _ => {
                if let Some(wake) = shared.outboxes.claim(peer) {
                    self.wake = wake;
                    self.restart();
                    return Step::Continue;
                }
            }
        }
        tracing::info!(%peer, "outbox empty; its worker stopped");
        Step::Stop
    }

    /// The oldest delivery's answer: removes its items once the peer committed
    /// them; after a permanent refusal gives its envelope up (or, for a batch of several, sends
    /// them again one at a time to find the one refused); otherwise retries after a backoff.
    async fn answered(&mut self, sent: Sent, answer: Result<(), RequestError>) -> Step {
        let peer = &self.peer.clone();
        let Sent {
            seqs,
            count,
            first,
            early,
            ..
        } = sent;
        match answer {
            Ok(()) => {
                self.verify = false;
                self.single = self.single.saturating_sub(count);
                self.register();
                let deferred = &self.shared.queue.deferred;
                let mut written = Vec::with_capacity(seqs.len());
                for seq in seqs {
                    // Settles the commit that waits for it (if any): its sender is answered.
                    let acknowledged = deferred.acknowledge(&self.key, seq);
                    if !early || self.early.answered(seq, acknowledged) {
                        written.push(seq);
                    }
                }
                if written.is_empty() {
                    return Step::Continue;
                }
                remove(&self.shared, peer, &self.key, &written).await
            }
            Err(RequestError::Refused { code, error }) if early && permanent(code) => {
                // Sent before it was written: its commit writes it, and it is given up (or
                // found) from the store like any other.
                tracing::info!(%peer, error = %error, count, "a peer refused envelopes sent early; they are tried again from the outbox");
                self.restart();
                Step::Continue
            }
            Err(RequestError::Refused { code, error }) if permanent(code) => {
                // The peer failed what was sent after it: read again from the head.
                self.restart();
                if let (Some(env), Some(seq)) = (first, seqs.last()) {
                    self.single = self.single.saturating_sub(1);
                    let reason = format!("the other server refused it ({})", error.message);
                    match dead_letter(&self.shared, peer, *seq, &env, code, &reason).await {
                        Ok(()) => Step::Continue,
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "cannot give an envelope up");
                            Step::Retry
                        }
                    }
                } else {
                    // Find the envelope the peer refuses: one at a time for this batch.
                    tracing::info!(%peer, error = %error, count, "a peer refused a batch for good; trying its envelopes one by one");
                    self.single = count;
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
