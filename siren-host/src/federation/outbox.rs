//! Outbound deliveries (PROTOCOL.md §17): a persisted queue per peer, drained over the link by
//! one worker per peer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use siren_api::ServerName;

use crate::shared::Shared;

/// The queue that holds envelopes waiting for `peer`: an ordinary device queue in the store,
/// named by a key no device can have (a hash of a label and the peer's name), so it gets the
/// store's durability, order and expiry with no new table.
pub fn outbox_key(peer: &ServerName) -> siren_proto::keys::DekPublic {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"siren/v1/outbox\0");
    h.update(peer.as_str().as_bytes());
    siren_proto::keys::DekPublic::from_bytes(h.finalize().into())
}

/// The hub registration id of outbox workers (sessions count up from 1).
const OUTBOX_CONN: u64 = u64::MAX;

/// Envelopes sent per `deliver`.
const DELIVER_BATCH: usize = 64;

/// Longest wait between attempts to reach a peer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Starts the worker that drains `peer`'s outbox, unless it runs already.
pub fn ensure_worker(shared: &Arc<Shared>, peer: &ServerName) {
    if shared.links.claim_worker(peer) {
        tokio::spawn(run_outbox(shared.clone(), peer.clone()));
    }
}

/// Drains `peer`'s outbox for the life of the server: reads the stored envelopes in order,
/// delivers them, and removes them only after the peer acknowledged its commit. While the peer
/// is unreachable it retries with exponential backoff (1 s doubling to 30 s); new envelopes
/// wake it at once. Expired envelopes are removed by the sweeper like any queue item.
async fn run_outbox(shared: Arc<Shared>, peer: ServerName) {
    let key = outbox_key(&peer);
    let registration = shared.hub.register(key, OUTBOX_CONN);
    let mut backoff = Duration::from_secs(1);
    let mut shutdown = shared.shutdown.clone();
    loop {
        registration
            .lag
            .store(crate::hub::NO_LAG, Ordering::Relaxed);
        let page = match shared
            .storage
            .pending(key.as_bytes(), 0, DELIVER_BATCH)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot read the outbox");
                Vec::new()
            }
        };
        let mut seqs = Vec::new();
        let mut msgs = Vec::new();
        for item in &page {
            seqs.push(item.seq);
            if let Ok(siren_proto::message::QueueItem::Message { env }) =
                siren_proto::message::decode_value(&item.bytes)
            {
                msgs.push(env);
            }
        }
        let wait = if page.is_empty() {
            None
        } else {
            let delivered = if msgs.is_empty() {
                Ok(())
            } else {
                shared.links.deliver(&peer, msgs).await
            };
            match delivered {
                Ok(()) => {
                    if let Err(e) = shared.storage.ack(key.as_bytes(), &seqs).await {
                        tracing::warn!(%peer, error = %e, "cannot remove delivered envelopes");
                    }
                    backoff = Duration::from_secs(1);
                    continue;
                }
                Err(e) => {
                    tracing::info!(%peer, error = %e, retry_in = ?backoff, "peer unreachable; envelopes stay queued");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    Some(wait)
                }
            }
        };
        let woken = registration.wake.notified();
        tokio::select! {
            _ = woken, if wait.is_none() => {}
            _ = tokio::time::sleep(wait.unwrap_or(MAX_BACKOFF)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Starts outbox workers for every peer with envelopes waiting (after a restart).
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
        if let Ok(siren_proto::message::QueueItem::Message { env }) =
            siren_proto::message::decode_value(&item.bytes)
        {
            let peer = env.to.server();
            if peer != &shared.config.server.name && outbox_key(peer).as_bytes() == &device {
                ensure_worker(shared, peer);
            }
        }
    }
}
