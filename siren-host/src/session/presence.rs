//! Presence (PROTOCOL.md §14): subscriptions of this session, local and on peer servers, and
//! publishing.

use siren_api::{Error, ErrorCode, Uid, Username};
use siren_proto::message::{RequestId, Topic};

use super::{Outcome, Session};
use crate::shared::Shared;

impl Session {
    pub(super) async fn subscribe(
        &mut self,
        rid: RequestId,
        user: &Username,
        topics: Vec<Topic>,
    ) -> Result<(), Outcome> {
        let me = self.uid(user);
        let max = self.shared.config().limits.max_subscriptions_per_session;
        let new = self.shared.pubsub.new_topics(self.conn, &topics);
        if self.shared.pubsub.subscription_count(self.conn) + new > max {
            self.shared.metrics.limit_refused("subscriptions");
            let e = Error::new(
                ErrorCode::LimitExceeded,
                format!("a session may subscribe to at most {max} topics"),
            );
            return self.error(Some(rid), &e).await;
        }
        // All or nothing: check every topic first (a peer checks its users' topics itself).
        let mut remote: std::collections::BTreeMap<siren_api::ServerName, Vec<Topic>> =
            Default::default();
        for topic in &topics {
            let uid = topic.publisher();
            let refusal = if uid.server() != &self.shared.config().server.name {
                remote
                    .entry(uid.server().clone())
                    .or_default()
                    .push(topic.clone());
                self.shared
                    .remote_allowed(uid.server(), siren_api::federation::Direction::Outbound)
                    .await
                    .err()
            } else {
                match self
                    .shared
                    .rosters
                    .shares_presence_with(uid.user(), &me)
                    .await
                {
                    Ok(true) => None,
                    Ok(false) => Some(Error::new(
                        ErrorCode::Refused,
                        format!("{uid} does not share presence with you"),
                    )),
                    Err(e) => Some(e),
                }
            };
            if let Some(e) = refusal {
                return self.error(Some(rid), &e).await;
            }
        }
        // Registered here before a peer is asked: the peer answers at once with its user's
        // current state, which must find this session subscribed.
        let mut fresh = Vec::new();
        for topic in &topics {
            let uid = topic.publisher();
            if !self.shared.pubsub.is_subscribed(self.conn, uid) {
                fresh.push(uid.clone());
            }
            if let Some(inbox) = self.shared.pubsub.subscribe(self.conn, &me, uid) {
                self.inbox = Some(inbox);
            }
        }
        for (peer, peer_topics) in remote {
            if let Err(e) = self.shared.links.subscribe(&peer, &me, peer_topics).await {
                // All or nothing: what this request added is taken back.
                for uid in &fresh {
                    self.shared.pubsub.unsubscribe(self.conn, uid);
                }
                return self.error(Some(rid), &e).await;
            }
        }
        // Each local publisher's current state, once (a peer sends its users' own).
        for topic in &topics {
            let uid = topic.publisher();
            if uid.server() == &self.shared.config().server.name
                && !self.shared.rosters.blocks(user, uid).await.unwrap_or(true)
            {
                let here = self.shared.pubsub.is_online(uid.user());
                let presence = match (here, self.shared.cluster.get()) {
                    (false, Some(cluster)) => cluster
                        .presence_elsewhere(uid.user())
                        .await
                        .unwrap_or_else(crate::pubsub::PubSub::offline),
                    _ => self.shared.pubsub.current(uid.user()),
                };
                self.shared.pubsub.deliver_to(self.conn, uid, &presence);
            }
        }
        self.ok(rid).await
    }

    /// Sends `presence` of `me` to the sessions subscribed right now that may see it.
    pub(super) async fn publish(&self, me: &Uid, presence: &siren_proto::message::Presence) {
        publish_presence(&self.shared, me, presence).await;
    }
}

/// Fans a presence update out to the current subscribers that the publisher's roster allows and
/// that have not blocked the publisher; in a cluster, to the other nodes' subscribers too.
pub(super) async fn publish_presence(
    shared: &Shared,
    me: &Uid,
    presence: &siren_proto::message::Presence,
) {
    shared.pubsub.published(me.user(), presence);
    if let Some(remote) = shared.hub.remote() {
        let _ = remote.try_send(crate::hub::Routed::Presence(Box::new((
            me.clone(),
            presence.clone(),
        ))));
    }
    fan_out_presence(shared, me, presence).await;
}

/// Hands local user `me`'s `presence` to this node's sessions subscribed to them that the
/// roster allows and that have not blocked them (published here, or on another node of the
/// cluster).
pub(crate) async fn fan_out_presence(
    shared: &Shared,
    me: &Uid,
    presence: &siren_proto::message::Presence,
) {
    for (subscriber, tx) in shared.pubsub.subscribers(me) {
        let allowed = shared
            .rosters
            .shares_presence_with(me.user(), &subscriber)
            .await
            .unwrap_or(false);
        // A subscriber of another server: its server applies its blocking.
        let blocked = subscriber.server() == &shared.config().server.name
            && shared
                .rosters
                .blocks(subscriber.user(), me)
                .await
                .unwrap_or(true);
        if allowed && !blocked {
            crate::pubsub::PubSub::deliver(&tx, me, presence);
        }
    }
}
