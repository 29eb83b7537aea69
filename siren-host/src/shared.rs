//! What every session and federation task shares: the configuration, the keys, the store and
//! the server's parts, and the checks several request kinds ask (may we talk to that server?).

use std::sync::Arc;

use siren_api::Username;
use siren_api::storage::Storage;
use siren_proto::handshake::ResponderKeys;
use tokio::sync::watch;

use crate::admission::Admission;
use crate::approvals::Approvals;
use crate::auth::AuthManager;
use crate::config::Config;
use crate::directory::Directory;
use crate::hub::Hub;
use crate::pubsub::PubSub;
use crate::queue::Queue;
use crate::quota::SendRate;
use crate::rate::Buckets;
use crate::roster::Rosters;

/// Everything the sessions share.
pub struct Shared {
    /// The configuration in force: replaced whole by a reload (read with [`Shared::config`]).
    pub running: arc_swap::ArcSwap<Config>,
    /// The SEK (and retired ones).
    pub keys: ResponderKeys,
    /// The store.
    pub storage: Arc<dyn Storage>,
    /// Mechanisms and login limits.
    pub auth: AuthManager,
    /// Limits on connections that have not logged in.
    pub admission: Arc<Admission>,
    /// Per-sender send rates.
    pub send_rate: SendRate,
    /// Device registrations and revocations per user.
    pub directory_changes: Buckets<Username>,
    /// The credential backend, asked whether the accounts of sessions still exist.
    pub credentials: Arc<dyn siren_api::auth::CredentialBackend>,
    /// Local users' device chains.
    pub directory: Directory,
    /// Message queues.
    pub queue: Queue,
    /// Live sessions.
    pub hub: Arc<Hub>,
    /// Signed rosters.
    pub rosters: Rosters,
    /// Presence subscriptions.
    pub pubsub: PubSub,
    /// New devices waiting for approval.
    pub approvals: Approvals,
    /// Links to peer servers (and which peers this server may talk to).
    pub links: crate::links::Links,
    /// Outboxes to peer servers: their workers and the limits on how many there are.
    pub outboxes: crate::federation::waiting::Outboxes,
    /// Message filters (plugins), asked about every `send` (replaced by a reload).
    pub filters: arc_swap::ArcSwap<Vec<Arc<dyn siren_api::hooks::MessageFilter>>>,
    /// Directory hooks (plugins), told about device additions and revocations (replaced by a
    /// reload).
    pub directory_hooks: arc_swap::ArcSwap<Vec<Arc<dyn siren_api::hooks::DirectoryHook>>>,
    /// What the server counts, for Prometheus.
    pub metrics: crate::metrics::Metrics,
    /// Flips to `true` when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// This node's link to the other nodes of its cluster (`[cluster]`), once joined.
    pub cluster: std::sync::OnceLock<crate::cluster::Cluster>,
}

impl Shared {
    /// The configuration in force. Read it where it is used rather than keeping a copy, so
    /// that a reload reaches every request after it.
    pub fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.running.load()
    }

    /// Whether this server may talk to `peer` in `direction`: federation on (else 500) and the
    /// policy allows it (else 501).
    pub async fn remote_allowed(
        &self,
        peer: &siren_api::ServerName,
        direction: siren_api::federation::Direction,
    ) -> Result<(), siren_api::Error> {
        self.links.allowed(peer, direction).await
    }

    /// Tells every directory hook about an event (a hook's failure is logged by its adapter).
    pub fn directory_event(&self, event: siren_api::hooks::DirectoryEvent) {
        for hook in self.directory_hooks.load().iter() {
            hook.event(&event);
        }
    }
}
