//! What `siren send` writes to the history: the record the client core makes for a sent text
//! ([`siren_client_core::model`]). What arrives is recorded by the core itself (`siren recv`,
//! `listen` and `login` drive it through [`crate::driver::oneshot`]).

use siren_api::Uid;
use siren_client_core::model::{Body, Chat, ChatMessage, MessageState, Millis};
use siren_proto::ids::MessageId;

use super::{History, HistoryError};

impl History {
    /// Records a text this device (of account `me`) sent to `to` and the server accepted
    /// (state `Sent`). `now` is this device's clock in milliseconds; the sender's timestamp is
    /// taken from it.
    pub fn record_sent(
        &mut self,
        me: &Uid,
        to: &Chat,
        id: MessageId,
        text: &str,
        now: Millis,
    ) -> Result<ChatMessage, HistoryError> {
        let msg = ChatMessage {
            id,
            peer: to.user().unwrap_or(me).clone(),
            group: to.group().copied(),
            outgoing: true,
            ts: now / 1000,
            at: now,
            body: Body::Text(text.to_owned()),
            state: MessageState::Sent,
            edited: false,
        };
        self.store(&msg)?;
        Ok(msg)
    }
}
