//! Presence (PROTOCOL.md §14): publish this user's, subscribe to contacts'.

use siren_api::Uid;
use siren_proto::message::{ClientMessage, Presence, Topic};

use super::{Client, Platform, Store};

impl<S: Store, P: Platform> Client<S, P> {
    /// Publishes this user's presence to the contacts subscribed to it right now.
    pub async fn publish(&mut self, presence: Presence) -> anyhow::Result<()> {
        self.request(|rid| ClientMessage::Publish {
            rid,
            presence: presence.clone(),
        })
        .await?;
        Ok(())
    }

    /// Subscribes this session to the presence of `uids` (each must share it with this user).
    pub async fn subscribe(&mut self, uids: &[Uid]) -> anyhow::Result<()> {
        let topics: Vec<Topic> = uids
            .iter()
            .map(|uid| Topic::Presence { uid: uid.clone() })
            .collect();
        self.request(|rid| ClientMessage::Subscribe {
            rid,
            topics: topics.clone(),
        })
        .await?;
        Ok(())
    }
}
