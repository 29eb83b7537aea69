//! Queue delivery to the device and `send` from it (PROTOCOL.md §12, §13): the backlog read page
//! by page, group commit of `send`s, message filters, acknowledgements.
//!
//! **The online fast path.** Items the queue offers before they are durable ([`crate::hub`])
//! are delivered at once when that keeps the order: the session is not reading its backlog,
//! no earlier offer was dropped, and the item's number is the one after the last delivered
//! (numbers of one device are consecutive, so a gap means an item is missing and everything
//! waits for the store). Such an item is *early* until it is known durable: the queue
//! tells the session when its commit is done (through the same mailbox, after the offer); if
//! that note does not fit, the push lowers the session's mark instead and a store read, whose
//! items are all written, confirms it. A device's `ack` of an early item frees its place in
//! flight at once but is applied to the store only once the item's write is: at once if the
//! commit is one the deferred sync waits on ([`crate::deferred`], which then counts the item
//! as settled, so the sender's `send_ack` needs no disk sync), otherwise once the item is seen
//! durable. A removal can never come before the write (which would bring the item back). The
//! sender's `send_ack` waits until each item is durable or acknowledged by its device: an
//! acknowledged message is never lost. An item delivered early whose write then fails was seen
//! by the device while its sender was told it failed; the sender's retry under the same message
//! id is dropped as a duplicate by the device.

use std::collections::BTreeMap;

use siren_api::hooks::{FilterDecision, RoutingMeta};
use siren_api::{Error, ErrorCode, Uid, Username};
use siren_proto::envelope::Envelope;
use siren_proto::ids::MessageId;
use siren_proto::message::{self, Notice, QueueItem, RequestId, ServerMessage};
use siren_proto::records::UserDirectory;

use super::{Outcome, Session, short};
use crate::deferred::Acknowledged;
use crate::hub::{Mailbox, NO_LAG};
use crate::roster::Admission;

/// Most early items acknowledged by the device and not yet seen durable (a safety bound: past
/// it the oldest are forgotten, which at worst delivers them once more after a reconnect).
const MAX_ACKED_EARLY: usize = 4096;
/// Most offers taken at once (written to the device in one batch).
const OFFER_BATCH: usize = 64;

/// The fast path's state in one live session.
#[derive(Default)]
pub(super) struct Early {
    /// The highest sequence number delivered (or seen in the store) in this session.
    max_delivered: u64,
    /// The lowest number of an offer that was not delivered: offers wait until the store has
    /// brought everything up to it.
    dropped: Option<u64>,
    /// Delivered from an offer, not yet seen durable.
    undurable: std::collections::BTreeSet<u64>,
    /// Acknowledged by the device before they were seen durable: number → stored size.
    acked: BTreeMap<u64, u64>,
}

/// Most `send` requests waiting for the next commit; beyond this the session stops reading.
pub(super) const MAX_BATCHED: usize = 64;
/// Most commits of one session in flight at once: a commit whose items are numbered may still
/// wait for its devices' acknowledgements (up to 2 ms, `crate::deferred`) while the next ones
/// proceed; `send_ack`s still go in order. Eight rather than four: with four, a sender whose
/// recipient acknowledges deliveries in batches (every 16, as the bench's receiver then did) had all
/// its commits waiting for those acknowledgements and stopped reading, the CPUs idle
/// (siren-bench README, "Commits in flight").
pub(super) const MAX_COMMITS: usize = 8;
/// Queue items fetched from the store at a time.
const PAGE: usize = 64;

impl Session {
    /// Starts committing the waiting envelopes, unless the newest commit in flight has not
    /// numbered its items yet (the next one's must come after them) or [`MAX_COMMITS`] are in
    /// flight.
    pub(super) fn start_commit(&mut self) {
        if let Some(rx) = &mut self.numbering
            && !matches!(
                rx.try_recv(),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty)
            )
        {
            // Numbered (or failed) already, even if the loop has not heard of it yet.
            self.numbering = None;
        }
        if self.numbering.is_some()
            || self.commits.len() >= MAX_COMMITS
            || self.batch_rids.is_empty()
        {
            return;
        }
        let items = std::mem::take(&mut self.batch);
        let rids = std::mem::take(&mut self.batch_rids);
        let reserved = std::mem::take(&mut self.batch_reserved);
        let shared = self.shared.clone();
        let (numbered, numbering) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(async move {
            let envelopes = items.len() as u64;
            let started = std::time::Instant::now();
            let done = crate::federation::outbox::enqueue(&shared, items, Some(numbered)).await;
            crate::metrics::Metrics::time(&shared.metrics.commit_seconds, started.elapsed());
            match done {
                Ok(()) => {
                    shared.metrics.messages_accepted.inc_by(envelopes);
                }
                Err(_) => shared.queue.usage.release(&reserved),
            }
            done
        });
        self.commits.push_back((handle, rids));
        self.numbering = Some(numbering);
    }

    /// Answers the requests of the oldest commit, now finished, and starts the next one.
    pub(super) async fn finish_commit(
        &mut self,
        done: Result<Result<(), Error>, tokio::task::JoinError>,
    ) -> Result<(), Outcome> {
        let Some((_, rids)) = self.commits.pop_front() else {
            return Ok(());
        };
        let failure = match done {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => {
                // The commit's `send_ack`s in one write (a commit holds the `send`s that came
                // while the one before was numbering: several, under load).
                let acks: Vec<Vec<u8>> = rids
                    .into_iter()
                    .map(|(rid, ids)| message::encode(&ServerMessage::SendAck { rid, ids }))
                    .collect();
                self.send_encoded_batch(&acks).await?;
            }
            Some(why) => {
                tracing::warn!(error = %why, "enqueue failed");
                for (rid, _) in rids {
                    self.error(
                        Some(rid),
                        &Error::new(
                            ErrorCode::Unavailable,
                            "the message store is unavailable; nothing was accepted",
                        ),
                    )
                    .await?;
                }
            }
        }
        self.start_commit();
        Ok(())
    }

    /// Registers the (logged-in) session in the hub and starts reading its backlog.
    pub(super) fn go_live(&mut self, user: &Username) -> std::sync::Arc<Mailbox> {
        let mailbox = self.shared.hub.register_session(
            self.dek,
            self.conn,
            user.clone(),
            self.credential_stamp,
        );
        self.count_ready();
        self.early = Early::default();
        self.cursor = Some(0);
        self.drained_sent = false;
        mailbox
    }

    /// Counts this session as one of its user's ready sessions (for presence), once registered.
    pub(super) fn count_ready(&mut self) {
        if let (Some(user), true, false) = (&self.user, self.usk_registered, self.counted_ready) {
            self.shared.pubsub.session_ready(user);
            self.counted_ready = true;
        }
    }

    pub(super) fn max_in_flight(&self) -> usize {
        self.shared.config().limits.max_in_flight
    }

    /// Delivers from the stored backlog while there is room in flight.
    pub(super) async fn pump(&mut self, mailbox: &Mailbox) -> Result<(), Outcome> {
        let lag = mailbox.take_lag();
        if lag != NO_LAG {
            let from = lag.saturating_sub(1);
            self.cursor = Some(self.cursor.map_or(from, |c| c.min(from)));
        }
        while let Some(after) = self.cursor {
            let room = self.max_in_flight().saturating_sub(self.inflight.len());
            if room == 0 {
                return Ok(());
            }
            let want = room.min(PAGE);
            let items = match self
                .shared
                .storage
                .pending(self.dek.as_bytes(), after, want)
                .await
            {
                Ok(items) => items,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the queue failed");
                    return Err(Outcome::Failed(e.to_string()));
                }
            };
            let mut frames: Vec<Vec<u8>> = Vec::with_capacity(items.len());
            let mut confirmed: Vec<(u64, u64)> = Vec::new();
            for item in &items {
                let early = &mut self.early;
                early.max_delivered = early.max_delivered.max(item.seq);
                match self.inflight.entry(item.seq) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        // Delivered already (early, or by an earlier read): now known durable.
                        early.undurable.remove(&item.seq);
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        if let Some(size) = early.acked.remove(&item.seq) {
                            // Delivered early and acknowledged: the removal can go to the store.
                            confirmed.push((item.seq, size));
                        } else {
                            slot.insert(item.bytes.len() as u64);
                            frames.push(message::encode_deliver(item.seq, &item.bytes));
                        }
                    }
                }
            }
            if self
                .early
                .dropped
                .is_some_and(|d| d <= self.early.max_delivered)
            {
                self.early.dropped = None;
            }
            self.write_deliveries(&confirmed, &frames).await?;
            if items.len() < want {
                self.cursor = None;
                if !self.drained_sent {
                    self.drained_sent = true;
                    self.send(&ServerMessage::QueueDrained).await?;
                }
            } else {
                self.cursor = items.last().map(|i| i.seq);
            }
        }
        Ok(())
    }

    pub(super) async fn send_envelopes(
        &mut self,
        rid: RequestId,
        user: &Username,
        msgs: Vec<Envelope>,
    ) -> Result<(), Outcome> {
        let me = self.uid(user);
        let own = match self.shared.directory.get(user).await {
            Ok(Some(dir)) => dir,
            Ok(None) => {
                return self
                    .error(
                        Some(rid),
                        &Error::new(ErrorCode::UnknownDevice, "this device is not registered"),
                    )
                    .await;
            }
            Err(e) => return self.error(Some(rid), &e).await,
        };
        let mut ids: Vec<MessageId> = Vec::new();
        let mut items = Vec::with_capacity(msgs.len());
        // Every check that can refuse the `send` comes before anything is remembered about it
        // (the contact-request marks of `admit`).
        for env in &msgs {
            if let Err(e) = self.check_envelope(env, &me, &own).await {
                return self.error(Some(rid), &e).await;
            }
        }
        if let Err(e) = self.filter(&me, &msgs).await {
            return self.error(Some(rid), &e).await;
        }
        // Charged for every envelope, delivered or dropped (so the rate does not reveal blocks).
        let bytes: u64 = msgs.iter().map(|e| e.ct.len() as u64).sum();
        if let Err(e) = self.shared.send_rate.charge(user, msgs.len(), bytes) {
            self.shared.metrics.limit_refused("send_rate");
            return self.error(Some(rid), &e).await;
        }
        for env in msgs {
            if !ids.contains(&env.id) {
                ids.push(env.id);
            }
            if env.to.server() != &self.shared.config().server.name {
                let peer = env.to.server().clone();
                items.push((
                    crate::federation::outbox::outbox_key(&peer),
                    QueueItem::Message { env },
                ));
                continue;
            }
            let admission = match self
                .shared
                .rosters
                .admit(env.to.user(), &env.to_dek, &me)
                .await
            {
                Ok(a) => a,
                Err(e) => return self.error(Some(rid), &e).await,
            };
            match admission {
                Admission::Drop => {}
                Admission::Refuse => {
                    let e = Error::new(
                        ErrorCode::Refused,
                        format!("{} accepts messages only from contacts", env.to),
                    );
                    return self.error(Some(rid), &e).await;
                }
                Admission::DeliverWithRequest => {
                    let notice = Notice::ContactRequest { from: me.clone() };
                    items.push((env.to_dek, QueueItem::Notice { notice }));
                    items.push((env.to_dek, QueueItem::Message { env }));
                }
                Admission::Deliver => items.push((env.to_dek, QueueItem::Message { env })),
            }
        }
        // Room in each local recipient device's queue, for the messages (notices always fit).
        let local = &self.shared.config().server.name;
        let reserve: Vec<(siren_proto::keys::DekPublic, u64)> = items
            .iter()
            .filter(
                |(_, item)| matches!(item, QueueItem::Message { env } if env.to.server() == local),
            )
            .map(|(dek, item)| (*dek, message::encode_value(item).len() as u64))
            .collect();
        if let Err(e) = self.shared.queue.usage.reserve(&reserve).await {
            if e.code == ErrorCode::QueueFull {
                self.shared.metrics.limit_refused("queue_quota");
            }
            return self.error(Some(rid), &e).await;
        }
        self.batch_reserved.extend(reserve);
        self.batch.extend(items);
        self.batch_rids.push((rid, ids));
        self.start_commit();
        Ok(())
    }

    /// Asks the configured message filters about each recipient of a `send` (routing metadata
    /// only: who, to whom, how many devices, how many bytes, when). A denial refuses the whole
    /// `send` with the filter's reason; a delay refuses it with `rate_limited` and the seconds
    /// to wait, so the client retries (nothing is held in the server's memory).
    pub(super) async fn filter(&self, me: &Uid, msgs: &[Envelope]) -> Result<(), Error> {
        if self.shared.filters.load().is_empty() {
            return Ok(());
        }
        let mut per_recipient: Vec<(Uid, u32, u64)> = Vec::new();
        for env in msgs {
            let size = env.ct.len() as u64;
            match per_recipient.iter_mut().find(|(uid, _, _)| uid == &env.to) {
                Some((_, devices, bytes)) => {
                    *devices += 1;
                    *bytes += size;
                }
                None => per_recipient.push((env.to.clone(), 1, size)),
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let metas: Vec<RoutingMeta> = per_recipient
            .into_iter()
            .map(|(recipient, devices, bytes)| RoutingMeta {
                sender: me.clone(),
                recipient,
                recipient_devices: devices,
                payload_size: bytes,
                timestamp: now,
            })
            .collect();
        // Plugin calls block (up to their deadline): off the async executor.
        let filters = self.shared.filters.load_full();
        let verdict = tokio::task::spawn_blocking(move || {
            for meta in &metas {
                for filter in filters.iter() {
                    match filter.check(meta) {
                        FilterDecision::Allow => {}
                        FilterDecision::Deny(reason) => {
                            tracing::info!(filter = filter.name(), sender = %meta.sender, recipient = %meta.recipient, %reason, "message refused by a filter");
                            return Err(Error::new(ErrorCode::Refused, format!("refused: {reason}")));
                        }
                        FilterDecision::Delay(secs) => {
                            return Err(Error::new(
                                ErrorCode::RateLimited,
                                format!("too many messages; retry in {secs} s"),
                            ));
                        }
                    }
                }
            }
            Ok(())
        })
        .await;
        match verdict {
            Ok(result) => result,
            Err(e) => Err(Error::new(
                ErrorCode::Internal,
                format!("a message filter task failed: {e}"),
            )),
        }
    }

    /// The sender fields name this session's user and DEK (400): what every envelope a session
    /// hands over must show. With `[limits] check_envelope_signatures`, also that it is signed
    /// by the user's USK (301); without, that is left to the recipients, who always check it
    /// (PROTOCOL.md §12): the sender fields are bound to the session, so the server carries
    /// nothing a recipient cannot verify for itself.
    pub(super) fn check_sender(
        &self,
        env: &Envelope,
        me: &Uid,
        own: &UserDirectory,
    ) -> Result<(), Error> {
        if &env.from != me || env.from_dek != self.dek {
            return Err(Error::new(
                ErrorCode::ForgedSender,
                "the sender fields must name this session's user and DEK",
            ));
        }
        if !self.shared.config().limits.check_envelope_signatures {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let verified = env.verify_sender(own.usk());
        crate::metrics::Metrics::time(&self.shared.metrics.verify_seconds, started.elapsed());
        verified.map_err(|_| {
            Error::new(
                ErrorCode::BadSignature,
                "the envelope is not signed by your USK",
            )
        })
    }

    /// Checks one envelope of a `send`: the sender is this session, signed by the sender's USK,
    /// addressed to a live device of a local user.
    pub(super) async fn check_envelope(
        &self,
        env: &Envelope,
        me: &Uid,
        own: &UserDirectory,
    ) -> Result<(), Error> {
        self.check_sender(env, me, own)?;
        if env.to.server() != &self.shared.config().server.name {
            // For another server: allowed by the policy, it waits in that server's outbox (if it
            // fits the peer's frames and the limits on outboxes); the receiving server checks
            // the device and the recipient's roster.
            self.shared
                .remote_allowed(env.to.server(), siren_api::federation::Direction::Outbound)
                .await?;
            return crate::federation::outbox::admit(&self.shared, me, env);
        }
        self.check_local_recipient(env).await
    }

    /// The envelope is addressed to a live device of a local user (304 no such user, 300 no
    /// such device).
    pub(super) async fn check_local_recipient(&self, env: &Envelope) -> Result<(), Error> {
        let dir = self
            .shared
            .directory
            .get(env.to.user())
            .await?
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no devices for {}", env.to)))?;
        if !dir.is_live(&env.to_dek) {
            return Err(Error::new(
                ErrorCode::UnknownDevice,
                format!(
                    "device {} of {} is not registered; look the user up again",
                    short(&env.to_dek),
                    env.to
                ),
            ));
        }
        Ok(())
    }

    /// Takes what the queue tells this session (see the module's text): items offered before
    /// they are durable, delivered when that keeps the order, and commits, which confirm early
    /// items durable (and apply their held acks) or, for an item not delivered early, start a
    /// store read from it.
    pub(super) async fn offered(&mut self, mailbox: &Mailbox) -> Result<(), Outcome> {
        let mut frames = Vec::new();
        let mut confirmed: Vec<(u64, u64)> = Vec::new();
        let mut next = mailbox.next_offer();
        while let Some(told) = next {
            let early = &mut self.early;
            match told {
                crate::hub::Offered::Item(offer) => {
                    let in_order = self.cursor.is_none()
                        && early.dropped.is_none()
                        && early.max_delivered.checked_add(1) == Some(offer.seq);
                    let room = self.inflight.len() < self.shared.config().limits.max_in_flight;
                    match offer.bytes() {
                        Some(bytes) if in_order && room => {
                            self.inflight.insert(offer.seq, bytes.len() as u64);
                            early.undurable.insert(offer.seq);
                            early.max_delivered = offer.seq;
                            frames.push(message::encode_deliver(offer.seq, bytes));
                        }
                        _ if offer.seq > early.max_delivered => {
                            early.dropped =
                                Some(early.dropped.map_or(offer.seq, |d| d.min(offer.seq)));
                        }
                        _ => {}
                    }
                }
                crate::hub::Offered::Durable(seq) => {
                    if early.undurable.remove(&seq) {
                        // Delivered early; now durable.
                    } else if let Some(size) = early.acked.remove(&seq) {
                        confirmed.push((seq, size));
                    } else if !self.inflight.contains_key(&seq) {
                        // Not delivered yet (its offer was dropped): from the store.
                        let from = seq.saturating_sub(1);
                        self.cursor = Some(self.cursor.map_or(from, |c| c.min(from)));
                    }
                }
            }
            next = if frames.len() < OFFER_BATCH {
                mailbox.next_offer()
            } else {
                None
            };
        }
        self.write_deliveries(&confirmed, &frames).await?;
        self.shared
            .metrics
            .messages_delivered_early
            .inc_by(frames.len() as u64);
        Ok(())
    }

    /// Applies the held acks of early items now known written (`confirmed`), then writes the
    /// `deliver` frames to the device in one batch and counts them.
    async fn write_deliveries(
        &mut self,
        confirmed: &[(u64, u64)],
        frames: &[Vec<u8>],
    ) -> Result<(), Outcome> {
        if !confirmed.is_empty() {
            self.remove_acknowledged(confirmed).await;
        }
        if !frames.is_empty() {
            self.send_encoded_batch(frames).await?;
            self.shared
                .metrics
                .messages_delivered
                .inc_by(frames.len() as u64);
        }
        Ok(())
    }

    pub(super) async fn ack(&mut self, seqs: &[u64]) -> Result<(), Outcome> {
        let (mut items, mut bytes) = (0, 0);
        let (mut unwritten, mut unwritten_bytes) = (0, 0);
        let mut now = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if self.early.acked.contains_key(seq) {
                // Acknowledged twice before it was seen durable: still waits.
                continue;
            }
            if let Some(size) = self.inflight.remove(seq) {
                let early = self.early.undurable.remove(seq);
                match self.shared.queue.deferred.acknowledge(&self.dek, *seq) {
                    // Never written, and now never will be: nothing to remove.
                    Acknowledged::Unwritten => {
                        unwritten += 1;
                        unwritten_bytes += size;
                        continue;
                    }
                    // Written without a sync and waiting for this acknowledgement (or a sync):
                    // the write is applied, so the item can go at once.
                    Acknowledged::Written => {}
                    // Delivered before its write: removed from the store once it is seen
                    // durable.
                    Acknowledged::NotWaiting if early => {
                        self.early.acked.insert(*seq, size);
                        continue;
                    }
                    Acknowledged::NotWaiting => {}
                }
                items += 1;
                bytes += size;
            }
            now.push(*seq);
        }
        while self.early.acked.len() > MAX_ACKED_EARLY {
            self.early.acked.pop_first();
        }
        if unwritten > 0 {
            self.shared.metrics.messages_acknowledged.inc_by(unwritten);
            self.shared
                .queue
                .usage
                .acknowledged(&self.dek, unwritten, unwritten_bytes);
        }
        self.remove(&now, items, bytes).await;
        Ok(())
    }

    /// Removes early items the device acknowledged, now that they are durable.
    async fn remove_acknowledged(&mut self, confirmed: &[(u64, u64)]) {
        let seqs: Vec<u64> = confirmed.iter().map(|(seq, _)| *seq).collect();
        for seq in &seqs {
            // Seen written by a store read: the commit waiting on it (if any) is settled.
            self.shared.queue.deferred.acknowledge(&self.dek, *seq);
        }
        let bytes = confirmed.iter().map(|(_, size)| size).sum();
        self.remove(&seqs, confirmed.len() as u64, bytes).await;
    }

    /// Removes acknowledged items from the store and from the quota's count.
    async fn remove(&mut self, seqs: &[u64], items: u64, bytes: u64) {
        if seqs.is_empty() {
            return;
        }
        match self.shared.storage.ack(self.dek.as_bytes(), seqs).await {
            Ok(removed) => {
                self.shared
                    .metrics
                    .messages_acknowledged
                    .inc_by(removed as u64);
                self.shared
                    .queue
                    .usage
                    .acknowledged(&self.dek, items, bytes)
            }
            Err(e) => tracing::warn!(error = %e, "ack failed"),
        }
    }
}
