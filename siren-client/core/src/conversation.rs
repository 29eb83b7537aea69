//! One conversation's loaded messages, in the order this device recorded them, and what is
//! derived from them (unread count, preview).

use siren_proto::ids::MessageId;

use crate::model::{Body, ChatMessage, MessageState, Millis};

/// Longest preview in the conversation list, in characters.
const PREVIEW_CHARS: usize = 80;

/// The loaded part of a conversation (the newest messages; older ones stay in history until
/// scrolled to).
#[derive(Debug, Default)]
pub(crate) struct Conversation {
    /// Oldest first, by `at` then id.
    pub messages: Vec<ChatMessage>,
    /// Incoming messages not seen yet (also those not loaded).
    pub unread: u32,
    /// The peer is typing until then (device clock), if they said so.
    pub typing_until: Option<Millis>,
    /// History may hold older messages than the loaded ones.
    pub more_history: bool,
    /// When the last message was recorded.
    pub last_at: Millis,
}

impl Conversation {
    /// The position of a message, searched from the newest (receipts name recent messages).
    pub fn position(&self, id: &MessageId) -> Option<usize> {
        self.messages.iter().rposition(|m| m.id == *id)
    }

    /// The message with this id.
    pub fn get_mut(&mut self, id: &MessageId) -> Option<&mut ChatMessage> {
        let i = self.position(id)?;
        self.messages.get_mut(i)
    }

    /// Adds a message in order (a new one goes last; one restored from history goes where its
    /// `at` says). Returns false (and changes nothing) if the id is already here.
    pub fn insert(&mut self, msg: ChatMessage) -> bool {
        if self.position(&msg.id).is_some() {
            return false;
        }
        self.last_at = self.last_at.max(msg.at);
        let key = (msg.at, msg.id);
        let at = self.messages.partition_point(|m| (m.at, m.id) <= key);
        self.messages.insert(at, msg);
        true
    }

    /// Older messages from history, put in front; duplicates skipped.
    pub fn prepend(&mut self, older: Vec<ChatMessage>) -> usize {
        let mut added = 0;
        for msg in older {
            if self.insert(msg) {
                added += 1;
            }
        }
        added
    }

    /// The unread count, recounted from the loaded messages (after a restart: history keeps
    /// each message's state).
    pub fn recount_unread(&mut self) {
        let n = self
            .messages
            .iter()
            .filter(|m| m.state == MessageState::Unread)
            .count();
        self.unread = u32::try_from(n).unwrap_or(u32::MAX);
    }

    /// A one-line preview of the last message.
    pub fn preview(&self) -> Option<String> {
        let last = self.messages.last()?;
        let text = match &last.body {
            Body::Text(t) => t.clone(),
            Body::File { name, .. } => format!("[file] {name}"),
            Body::Deleted => "message deleted".to_owned(),
            Body::Unsupported(kind) => format!("unsupported message ({kind})"),
            Body::Event(text) => text.clone(),
        };
        let line: String = text
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .take(PREVIEW_CHARS)
            .collect();
        Some(if last.outgoing {
            format!("you: {line}")
        } else if last.group.is_some() && !matches!(last.body, Body::Event(_)) {
            format!("{}: {line}", last.peer.user())
        } else {
            line
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siren_api::Uid;

    fn msg(id: u8, at: Millis, state: MessageState) -> ChatMessage {
        ChatMessage {
            id: MessageId::from_bytes([id; 16]),
            peer: Uid::parse("bob@example.org").unwrap(),
            group: None,
            outgoing: false,
            ts: 0,
            at,
            body: Body::Text(format!("m{id}")),
            state,
            edited: false,
        }
    }

    #[test]
    fn messages_stay_ordered_and_unique() {
        let mut c = Conversation::default();
        assert!(c.insert(msg(2, 20, MessageState::Unread)));
        assert!(c.insert(msg(3, 30, MessageState::Seen)));
        assert!(!c.insert(msg(2, 25, MessageState::Unread)));
        assert_eq!(c.prepend(vec![msg(1, 10, MessageState::Unread)]), 1);
        let order: Vec<u64> = c.messages.iter().map(|m| m.at).collect();
        assert_eq!(order, vec![10, 20, 30]);
        c.recount_unread();
        assert_eq!(c.unread, 2);
        assert_eq!(c.last_at, 30);
        assert_eq!(c.preview().as_deref(), Some("m3"));
    }
}
