//! The Message Queue: store-and-forward per device, and the background sweeper.
//!
//! [`Queue::enqueue`] returns only after the store has committed the items durably; only then
//! does the session acknowledge the `send`. Live sessions are then told through the [`Hub`]; everything else waits in the store until its device connects, acknowledges it,
//! or its time to live runs out.

use std::sync::Arc;
use std::time::Duration;

use siren_api::Error;
use siren_api::storage::{NewQueueItem, Storage, UnixTime};
use siren_proto::envelope::Envelope;
use siren_proto::keys::DekPublic;
use siren_proto::message::{self, QueueItem};
use tokio::sync::watch;

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
}

impl Queue {
    /// Queues over `storage`; items live `ttl` seconds; `usage` enforces the per-device quota.
    pub fn new(storage: Arc<dyn Storage>, hub: Arc<Hub>, ttl: u64, usage: Arc<UsageCache>) -> Self {
        Queue {
            storage,
            hub,
            ttl: std::sync::atomic::AtomicU64::new(ttl),
            usage,
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
        if items.is_empty() {
            return Ok(());
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
        // durable, with a store that numbers first); the pushes below follow the commit.
        let announce = {
            let (hub, offered) = (self.hub.clone(), batch.clone());
            Box::new(move |seqs: &[u64]| hub.offer(&offered, seqs))
        };
        let seqs = self.storage.enqueue_announced(&batch, announce).await?;
        let notices: Vec<(DekPublic, u64)> = items
            .iter()
            .zip(batch.iter())
            .filter(|((_, item), _)| matches!(item, QueueItem::Notice { .. }))
            .map(|((dek, _), stored)| (*dek, stored.bytes.len() as u64))
            .collect();
        self.usage.added_notices(&notices);
        for ((dek, _), seq) in items.iter().zip(seqs) {
            self.hub.push(dek, seq);
        }
        Ok(())
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
