//! Presence events that peers send over our outbound links, handed to the local subscribers.

use std::sync::Arc;

use siren_api::ServerName;
use siren_proto::message::LinkMessage;

use crate::shared::Shared;

/// Hands presence events from peers to the local sessions subscribed to them: only events of
/// the peer's own users, only to the subscribers the peer named, never from a user the
/// subscriber blocked.
pub async fn deliver_events(
    shared: Arc<Shared>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<(ServerName, LinkMessage)>,
) {
    while let Some((peer, message)) = events.recv().await {
        let LinkMessage::Event {
            to, from, presence, ..
        } = message
        else {
            continue;
        };
        if from.server() != &peer {
            tracing::warn!(%peer, publisher = %from, "a peer sent presence of another server's user; dropped");
            continue;
        }
        for (subscriber, tx) in shared.pubsub.subscribers(&from) {
            if !to.contains(&subscriber) {
                continue;
            }
            let blocked = shared
                .rosters
                .blocks(subscriber.user(), &from)
                .await
                .unwrap_or(true);
            if !blocked {
                crate::pubsub::PubSub::deliver(&tx, &from, &presence);
            }
        }
    }
}
