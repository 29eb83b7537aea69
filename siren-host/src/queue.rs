//! The Message Queue: store-and-forward per device, and the background sweeper.
//!
//! [`Queue::enqueue`] returns only once each item is durable in the store or acknowledged by
//! its device ([`crate::deferred`]); only then does the session acknowledge the `send`. Live
//! sessions are offered the items through the [`Hub`] as soon as the store numbers them;
//! everything else waits in the store until its device connects, acknowledges it, or its time
//! to live runs out.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use siren_api::Error;
use siren_api::storage::{Durability, NewQueueItem, Storage, UnixTime};
use siren_proto::envelope::Envelope;
use siren_proto::keys::DekPublic;
use siren_proto::message::{self, QueueItem};
use tokio::sync::watch;

use crate::deferred::{self, Deferred};
use crate::hub::Hub;
use crate::quota::UsageCache;

/// Seconds since the Unix epoch.
pub fn now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long the oldest item of `device`'s queue has waited, in seconds (`None`: the queue is
/// empty). Items carry only their expiry, which is their enqueue time plus `ttl`.
pub async fn oldest_age(
    storage: &dyn Storage,
    device: &siren_api::storage::DeviceKey,
    ttl: u64,
) -> Result<Option<u64>, siren_api::Error> {
    Ok(storage
        .pending(device, 0, 1)
        .await?
        .first()
        .map(|item| now().saturating_sub(item.expires.saturating_sub(ttl))))
}

/// Message queues over the store, with live delivery through the hub.
pub struct Queue {
    storage: Arc<dyn Storage>,
    hub: Arc<Hub>,
    ttl: std::sync::atomic::AtomicU64,
    /// Per-device usage, for the quota.
    pub usage: Arc<UsageCache>,
    /// Commits written without a sync, waiting for their devices' acknowledgements.
    pub deferred: Arc<Deferred>,
    /// Items acknowledged by their device before any sync was needed.
    acknowledged_unsynced: Counter,
}

impl Queue {
    /// Queues over `storage`; items live `ttl` seconds; `usage` enforces the per-device quota.
    /// `acknowledged_unsynced` counts items whose devices acknowledged them before any sync.
    pub fn new(
        storage: Arc<dyn Storage>,
        hub: Arc<Hub>,
        ttl: u64,
        usage: Arc<UsageCache>,
        acknowledged_unsynced: Counter,
    ) -> Self {
        Queue {
            storage,
            hub,
            ttl: std::sync::atomic::AtomicU64::new(ttl),
            usage,
            deferred: Arc::default(),
            acknowledged_unsynced,
        }
    }

    /// Changes how long new items live (a reload); items already queued keep their expiry.
    pub fn set_ttl(&self, ttl: u64) {
        self.ttl.store(ttl, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stores the envelopes durably (one atomic batch), then offers each to its device's live
    /// session.
    pub async fn enqueue(&self, envelopes: Vec<Envelope>) -> Result<(), Error> {
        self.enqueue_to(
            envelopes
                .into_iter()
                .map(|env| (env.to_dek, QueueItem::Message { env }))
                .collect(),
        )
        .await
    }

    /// Stores queue items (messages or notices) for the given devices, then offers them to live
    /// sessions. Messages to local devices must have been reserved with
    /// [`UsageCache::reserve`] (the caller releases the reservation if this fails); notices are
    /// counted here.
    pub async fn enqueue_to(&self, items: Vec<(DekPublic, QueueItem)>) -> Result<(), Error> {
        self.enqueue_numbered_first(items, None).await.map(drop)
    }

    /// [`Queue::enqueue_to`], sending on `numbered` as soon as the items have their final
    /// numbers (before the write, with a store that numbers first; otherwise once written), so
    /// that a session can start its next commit while this one settles: the next one's items
    /// are then numbered after these, and each device receives them in order. Dropped without
    /// a send if the enqueue fails first. Returns the items' numbers, in their order.
    pub async fn enqueue_numbered_first(
        &self,
        items: Vec<(DekPublic, QueueItem)>,
        numbered: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<Vec<u64>, Error> {
        let numbered = std::sync::Mutex::new(numbered);
        let signal = move || {
            if let Some(tx) = numbered.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(());
            }
        };
        let signal = Arc::new(signal);
        if items.is_empty() {
            signal();
            return Ok(Vec::new());
        }
        let expires = now().saturating_add(self.ttl.load(std::sync::atomic::Ordering::Relaxed));
        let batch: crate::hub::OfferedItems = items
            .iter()
            .map(|(dek, item)| NewQueueItem {
                device: *dek.as_bytes(),
                expires,
                bytes: message::encode_value(item),
            })
            .collect();
        // Live devices are offered the items as soon as they are numbered (before the write is
        // durable, with a store that numbers first). When the store can sync later for less,
        // the write is not synced: if every item goes to a live device, the commit settles when
        // the devices acknowledge or a sync makes the items durable (crate::deferred);
        // otherwise a sync follows at once, shared with every commit asking meanwhile (the
        // write itself then needs no blocking thread).
        let buffered = self.storage.defers_sync();
        let defer = buffered && self.hub.all_live(items.iter().map(|(d, _)| d));
        // Messages only (a notice is counted in the quota before it can be acknowledged, which
        // the unwritten commit does not wait for): numbered, offered, and written only if not
        // acknowledged in time.
        let notices = items
            .iter()
            .any(|(_, item)| matches!(item, QueueItem::Notice { .. }));
        if defer
            && !notices
            && let Some(done) = self.enqueue_unwritten(&items, &batch, &*signal).await
        {
            return done;
        }
        let started: Arc<std::sync::Mutex<Option<deferred::Commit>>> = Arc::default();
        let announce = {
            let (hub, offered) = (self.hub.clone(), batch.clone());
            let deferred = defer.then(|| (self.deferred.clone(), started.clone()));
            let signal = signal.clone();
            Box::new(move |seqs: &[u64]| {
                if let Some((deferred, started)) = deferred {
                    let devices: Vec<DekPublic> = offered
                        .iter()
                        .map(|i| DekPublic::from_bytes(i.device))
                        .collect();
                    let commit = deferred.start(&devices, seqs);
                    *started.lock().unwrap_or_else(|p| p.into_inner()) = Some(commit);
                }
                hub.offer(&offered, seqs);
                signal();
            })
        };
        let durability = if buffered {
            Durability::Buffered
        } else {
            Durability::Synced
        };
        let written = self
            .storage
            .enqueue_announced(&batch, announce, durability)
            .await;
        let commit = started.lock().unwrap_or_else(|p| p.into_inner()).take();
        let seqs = match written {
            Ok(seqs) => seqs,
            Err(e) => {
                if let Some(commit) = commit {
                    self.deferred.forget(commit);
                }
                return Err(e);
            }
        };
        // Counted before any device can acknowledge a notice (which uncounts it).
        let notices: Vec<(DekPublic, u64)> = items
            .iter()
            .zip(batch.iter())
            .filter(|((_, item), _)| matches!(item, QueueItem::Notice { .. }))
            .map(|((dek, _), stored)| (*dek, stored.bytes.len() as u64))
            .collect();
        self.usage.added_notices(&notices);
        let numbers = seqs.clone();
        let durable: Vec<(DekPublic, u64)> = match commit {
            Some(commit) => {
                self.deferred.written(&commit);
                let unacknowledged = self.deferred.settle(&*self.storage, commit).await?;
                let acknowledged = seqs.len().saturating_sub(unacknowledged.len());
                self.acknowledged_unsynced.inc_by(acknowledged as u64);
                unacknowledged
            }
            None => {
                if buffered {
                    self.deferred.sync(&*self.storage).await?;
                }
                items.iter().map(|(dek, _)| *dek).zip(seqs).collect()
            }
        };
        // Their sessions are told the items are durable (or, if an offer did not fit, that
        // there is something to read).
        for (dek, seq) in durable {
            self.hub.push(&dek, seq);
        }
        Ok(numbers)
    }

    /// Numbers `batch` (of `items`) without writing it and offers it to the live sessions; it
    /// is written only if some device has not acknowledged its item within
    /// [`deferred::SYNC_AFTER`] ([`Deferred::settle_unwritten`]). `None` if the store cannot
    /// number without IO (the caller then enqueues as usual); otherwise the items' numbers.
    async fn enqueue_unwritten(
        &self,
        items: &[(DekPublic, QueueItem)],
        batch: &crate::hub::OfferedItems,
        numbered: &(dyn Fn() + Send + Sync),
    ) -> Option<Result<Vec<u64>, Error>> {
        let devices: Vec<siren_api::storage::DeviceKey> = batch.iter().map(|i| i.device).collect();
        let deks: Vec<DekPublic> = items.iter().map(|(dek, _)| *dek).collect();
        let mut started = None;
        let seqs = self.storage.number(&devices, &mut |seqs| {
            // Waiting before it is offered: the quickest acknowledgement finds it.
            started = Some(self.deferred.start_unwritten(&deks, seqs));
            self.hub.offer(batch, seqs);
        })?;
        numbered();
        let Some(commit) = started else {
            // The store returned numbers without announcing them (against its contract): the
            // items are neither stored nor waited for, so the send fails rather than vanish.
            return Some(Err(Error::new(
                siren_api::ErrorCode::Internal,
                "the store numbered items without announcing them",
            )));
        };
        let written = match self
            .deferred
            .settle_unwritten(&*self.storage, commit, batch)
            .await
        {
            Ok(written) => written,
            Err(e) => return Some(Err(e)),
        };
        let acknowledged = seqs.len().saturating_sub(written.len());
        self.acknowledged_unsynced.inc_by(acknowledged as u64);
        for (dek, seq) in written {
            self.hub.push(&dek, seq);
        }
        Some(Ok(seqs))
    }
}

/// Removes expired queue items and stale sessions every `interval`, until shutdown.
pub async fn sweeper(
    storage: Arc<dyn Storage>,
    usage: Arc<UsageCache>,
    interval: Duration,
    session_ttl: u64,
    expired_total: prometheus_client::metrics::counter::Counter,
    mut shutdown: watch::Receiver<bool>,
) {
    const BATCH: usize = 10_000;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = now();
        let mut expired = 0;
        loop {
            match storage.expire(now, BATCH).await {
                Ok(n) => {
                    expired += n;
                    if n < BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "queue sweep failed");
                    break;
                }
            }
        }
        if expired > 0 {
            expired_total.inc_by(expired as u64);
            usage.forget_all();
            tracing::info!(expired, "expired queue items removed");
        }
        match storage
            .expire_sessions(now.saturating_sub(session_ttl))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "stale sessions forgotten"),
            Err(e) => tracing::warn!(error = %e, "session sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn queue(storage: Arc<dyn Storage>) -> Queue {
        let usage = UsageCache::new(storage.clone(), 1000, 1 << 20);
        Queue::new(storage, Arc::default(), 60, usage, Counter::default())
    }

    fn notice(n: u8) -> (DekPublic, QueueItem) {
        let from: siren_api::Uid = "carol@alpha.test".parse().unwrap();
        (
            DekPublic::from_bytes([n; 32]),
            QueueItem::Notice {
                notice: siren_proto::message::Notice::ContactRequest { from },
            },
        )
    }

    /// With a store that syncs later for less, items for a device with no live session are
    /// written without a sync, and the enqueue returns only after a sync covering them.
    #[tokio::test]
    async fn an_enqueue_for_an_offline_device_returns_after_a_sync() {
        let (storage, syncs) = crate::deferred::tests::storage(Duration::ZERO);
        let storage: Arc<dyn Storage> = Arc::new(storage);
        let queue = queue(storage.clone());
        queue.enqueue_to(vec![notice(1), notice(2)]).await.unwrap();
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
        let device = *DekPublic::from_bytes([1; 32]).as_bytes();
        assert_eq!(storage.pending(&device, 0, 10).await.unwrap().len(), 1);
        queue.enqueue_to(vec![notice(1)]).await.unwrap();
        assert_eq!(syncs.load(Ordering::SeqCst), 2);
    }
}
