//! Which node drains a peer's outbox, in a cluster (`[cluster]`): a worker first takes the
//! store's lease `outbox:<peer>` ([`siren_api::storage::Storage::lease`], [`LEASE_TTL`], renewed
//! every [`LEASE_RENEW`] in the background) and stops at once if another node has it. A worker
//! that empties its outbox ends the lease; one that stops with envelopes left (shutdown) leaves it
//! expired, and a node that dies leaves it to lapse (`super::outbox::adopt`).

use std::sync::Arc;
use std::time::Duration;

use siren_api::ServerName;
use tokio::sync::Notify;

use crate::shared::Shared;

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
pub(super) struct Lease {
    shared: Arc<Shared>,
    name: String,
    node: String,
    /// Set (and `lost_wake` notified) when a renewal found another holder, or the store could
    /// not be reached for longer than the lease lasts.
    lost: Arc<std::sync::atomic::AtomicBool>,
    pub(super) lost_wake: Arc<Notify>,
    renewer: tokio::task::JoinHandle<()>,
}

/// Whether a worker may drain a peer's outbox here.
pub(super) enum Hold {
    /// Not a cluster: this process is the only one.
    Alone,
    /// This node has the lease.
    Here(Lease),
    /// Another node has it (or the store could not say).
    Elsewhere,
}

impl Lease {
    pub(super) async fn take(shared: &Arc<Shared>, peer: &ServerName) -> Hold {
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

    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ends the lease: forgotten if the outbox is `done` (empty, or held by the policy),
    /// otherwise left expired for another node to take over at once.
    pub(super) async fn end(self, done: bool) {
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
