//! What the one-shot commands (`siren send`, `recv`, `listen`) write to the history: the same
//! records the client core makes ([`siren_client_core::model`]), for drivers without a core.

use siren_api::Uid;
use siren_client_core::model::{Body, ChatMessage, FileProgress, MessageState, Millis};
use siren_proto::ids::MessageId;
use siren_proto::plaintext::{Plaintext, ReceiptState};

use super::{History, HistoryError};
use crate::client::Received;

impl History {
    /// Records a text this device sent and the server accepted (state `Sent`). `now` is this
    /// device's clock in milliseconds; the sender's timestamp is taken from it.
    pub fn record_sent(
        &mut self,
        to: &Uid,
        id: MessageId,
        text: &str,
        now: Millis,
    ) -> Result<ChatMessage, HistoryError> {
        let msg = ChatMessage {
            id,
            peer: to.clone(),
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

    /// Records what a received message changes, as a command that printed it sees it: a text,
    /// a file's announcement (its chunks are not assembled by a one-shot command) or a kind this
    /// client cannot show becomes a new record (state `Seen`: it was shown); a receipt raises
    /// the state of the peer's conversation's outgoing message; an edit or deletion changes the
    /// sender's own earlier message; a copy from another device of this account (`me`) records
    /// what that device sent. Returns the record written, if any.
    pub fn record_received(
        &mut self,
        me: &Uid,
        received: &Received,
        now: Millis,
    ) -> Result<Option<ChatMessage>, HistoryError> {
        let from = &received.from;
        if from == me {
            return match &received.content {
                Plaintext::Copy { to, id, msg } if to != me => self.apply(to, *id, msg, true, now),
                _ => Ok(None),
            };
        }
        self.apply(from, received.id, &received.content, false, now)
    }

    fn apply(
        &mut self,
        peer: &Uid,
        id: MessageId,
        content: &Plaintext,
        outgoing: bool,
        now: Millis,
    ) -> Result<Option<ChatMessage>, HistoryError> {
        let new = |ts: u64, body: Body| ChatMessage {
            id,
            peer: peer.clone(),
            outgoing,
            ts,
            at: now,
            body,
            state: if outgoing {
                MessageState::Sent
            } else {
                MessageState::Seen
            },
            edited: false,
        };
        let msg = match content {
            Plaintext::Text { body, ts } => new(*ts, Body::Text(body.clone())),
            Plaintext::File(m) => new(
                m.ts,
                Body::File {
                    file: m.file,
                    name: m.name.clone(),
                    size: m.size,
                    progress: if outgoing {
                        FileProgress::Sent
                    } else {
                        FileProgress::Failed(
                            "not assembled: `siren recv` and `siren listen` do not receive files"
                                .into(),
                        )
                    },
                },
            ),
            Plaintext::Receipt { state, ids, .. } if !outgoing => {
                let to = match state {
                    ReceiptState::Delivered => MessageState::Delivered,
                    ReceiptState::Read => MessageState::Read,
                };
                for of in ids {
                    if let Some(mut m) = self.get(peer, of)?
                        && m.outgoing
                        && m.state.rank() < to.rank()
                    {
                        m.state = to.clone();
                        self.store(&m)?;
                    }
                }
                return Ok(None);
            }
            Plaintext::Edit { of, body, .. } => {
                return self.change(peer, of, outgoing, Body::Text(body.clone()));
            }
            Plaintext::Delete { of, .. } => return self.change(peer, of, outgoing, Body::Deleted),
            Plaintext::Unsupported { kind } => new(now / 1000, Body::Unsupported(kind.clone())),
            // Chunks, typing, receipts in copies and copies of copies change nothing here.
            _ => return Ok(None),
        };
        self.store(&msg)?;
        Ok(Some(msg))
    }

    /// An edit or deletion: only of a text the same side wrote, never of a deleted message.
    fn change(
        &mut self,
        peer: &Uid,
        of: &MessageId,
        outgoing: bool,
        body: Body,
    ) -> Result<Option<ChatMessage>, HistoryError> {
        let Some(mut m) = self.get(peer, of)? else {
            return Ok(None);
        };
        if m.outgoing != outgoing || !matches!(m.body, Body::Text(_)) {
            return Ok(None);
        }
        m.edited |= matches!(body, Body::Text(_));
        m.body = body;
        self.store(&m)?;
        Ok(Some(m))
    }
}
