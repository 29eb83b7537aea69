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
    /// The configuration.
    pub config: Config,
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
    /// Which peer servers this server may talk to.
    pub federation: Arc<dyn siren_api::federation::FederationPolicy>,
    /// Links to peer servers.
    pub links: crate::links::Links,
    /// Message filters (plugins), asked about every `send`.
    pub filters: Vec<Arc<dyn siren_api::hooks::MessageFilter>>,
    /// Directory hooks (plugins), told about device additions and revocations.
    pub directory_hooks: Vec<Arc<dyn siren_api::hooks::DirectoryHook>>,
    /// Flips to `true` when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// Whether this server may talk to `peer` in `direction`: federation on (else 500) and the
    /// policy allows it (else 501).
    pub async fn remote_allowed(
        &self,
        peer: &siren_api::ServerName,
        direction: siren_api::federation::Direction,
    ) -> Result<(), siren_api::Error> {
        use siren_api::federation::Decision;
        use siren_api::{Error, ErrorCode};
        if !self.config.federation.enabled {
            return Err(Error::new(
                ErrorCode::FederationDisabled,
                format!("{peer} is another server and federation is disabled here"),
            ));
        }
        // A policy plugin's call blocks (up to its deadline): off the async executor. A
        // failed task denies (fail closed).
        let policy = self.federation.clone();
        let asked = peer.clone();
        let decision = tokio::task::spawn_blocking(move || policy.decide(&asked, direction))
            .await
            .unwrap_or_else(|e| Decision::Deny(format!("the policy task failed: {e}")));
        match decision {
            Decision::Deny(reason) => {
                tracing::info!(%peer, ?direction, policy = self.federation.name(), %reason, "federation refused by policy");
                Err(Error::new(
                    ErrorCode::FederationDenied,
                    format!("this server's federation policy does not allow {peer}"),
                ))
            }
            Decision::Allow => Ok(()),
        }
    }

    /// Tells every directory hook about an event (a hook's failure is logged by its adapter).
    pub fn directory_event(&self, event: siren_api::hooks::DirectoryEvent) {
        for hook in &self.directory_hooks {
            hook.event(&event);
        }
    }
}
