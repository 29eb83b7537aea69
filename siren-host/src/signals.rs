//! Ephemeral signals (PROTOCOL.md §14): envelopes such as `typing` that reach only the
//! recipient device's live session at the moment they arrive.
//!
//! Nothing about a signal is written to a store or a queue. It goes to the mailbox of the
//! recipient device's live session through the hub ([`crate::hub::Hub::signal`]); a signal for
//! a DEK without a live session, or for a session whose mailbox already holds
//! [`crate::mailbox::SIGNALS`] (it does not read fast enough), is dropped. Before handing a signal
//! over, the recipient's roster is asked ([`crate::roster::Rosters::admit_signal`]): nothing from
//! a blocked user, nothing from a non-contact to a user with a roster (unless the non-contact
//! policy is `accept`). The sender is answered the same whether or not anything was delivered.

use siren_api::ServerName;
use siren_proto::envelope::Envelope;

use crate::shared::Shared;

/// Delivers a signal to a device of a local user, if the recipient's roster admits the sender
/// and the device has a live session; otherwise drops it. The caller checked the sender.
pub async fn deliver_local(shared: &Shared, env: Envelope) {
    match shared.rosters.admit_signal(&env.to, &env.from).await {
        Ok(true) => {
            shared.hub.signal(env);
        }
        Ok(false) => {}
        Err(e) => tracing::debug!(error = %e, "a signal was dropped: the roster is unreadable"),
    }
}

/// Signals a peer server sent over its link (PROTOCOL.md §17): each must come from one of the
/// peer's users and be addressed to one of ours; those that are not are dropped (a signal has no
/// answer) and logged. The rest are delivered like local ones.
pub async fn accept_from_peer(shared: &Shared, peer: &ServerName, msgs: Vec<Envelope>) {
    for env in msgs {
        if env.from.server() != peer {
            tracing::warn!(%peer, sender = %env.from, "a peer sent a signal from another server's user; dropped");
            continue;
        }
        if env.to.server() != &shared.config().server.name {
            tracing::warn!(%peer, recipient = %env.to, "a peer sent a signal for a user of another server; dropped");
            continue;
        }
        deliver_local(shared, env).await;
    }
}
