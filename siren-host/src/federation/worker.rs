//! The task that drains one peer's outbox (PROTOCOL.md §17): reads the stored envelopes past
//! what is in flight and sends them in `deliver` batches, several in flight, removing each batch
//! once the peer answered; retries with backoff while the peer is unreachable; gives up what the
//! peer refuses for good; and, while the peer answers, takes the fast path
//! ([`crate::federation::early`]): commits for the peer are offered to it before they are
//! written and sent on at once. What a batch is and how a stored envelope is sent on are
//! [`super::outbox`]'s.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use siren_api::federation::Direction;
use siren_api::{Error, ErrorCode, ServerName};
use siren_proto::keys::DekPublic;
use tokio::sync::Notify;

use super::lease::{Hold, Lease};
use super::outbox::{
    Item, MAX_BACKOFF, MIN_BACKOFF, Next, PAGE, Stored, dead_letter, deliver_size, next_batch,
    outbox_key, permanent,
};
use crate::federation::early::{Durable, Early};
use crate::hub::{Mailbox, NO_LAG, Offer, Offered};
use crate::links::{DeliveryAnswer, RequestError};
use crate::shared::Shared;

/// Drains `peer`'s outbox: reads the stored envelopes in order, delivers them in batches (up to
/// [`IN_FLIGHT`] sent before the oldest is answered), and removes each batch only after the peer
/// acknowledged its commit. While the peer is unreachable it retries with exponential backoff
/// (1 s doubling to 30 s); expired envelopes are removed by the sweeper like any queue item.
/// Stops when the outbox is empty (on the fast path, once it has stayed empty for [`LINGER`]),
/// when the policy no longer allows the peer (the envelopes are held) and at shutdown.
pub(super) async fn run_outbox(shared: Arc<Shared>, peer: ServerName, wake: Arc<Notify>) {
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
            // Woken by a commit (`ensure_worker`, after its envelopes were answered): its
            // senders were counted for the peer again, and the next pass here uncounts them.
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
            // Replaced (never by design: one worker per peer): the store is read instead (the
            // newer registration stays, `unregister` removes only this one's).
            self.unregister();
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
