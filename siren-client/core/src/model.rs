//! The view model: everything a user interface shows, as plain data. `siren chat`, the CLI and
//! the browser draw this; none of them keep chat state of their own.
//!
//! Every string here may have come from someone else (a message body, a file name, a presence
//! text, a device name): a terminal UI escapes control and bidi characters when it prints them.

use serde::{Deserialize, Serialize};
use siren_api::Uid;
use siren_proto::ids::{FileId, GroupId, MessageId};
use siren_proto::keys::DekPublic;
use siren_proto::message::PresenceStatus;

/// Milliseconds since the Unix epoch, as the driver's clock says.
pub type Millis = u64;

/// A conversation: with one user, or in a group (PROTOCOL.md §12.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Chat {
    /// With one user.
    User(Uid),
    /// In a group.
    Group(GroupId),
}

impl Chat {
    /// The user of a conversation with one user.
    pub fn user(&self) -> Option<&Uid> {
        match self {
            Chat::User(uid) => Some(uid),
            Chat::Group(_) => None,
        }
    }

    /// The group of a group conversation.
    pub fn group(&self) -> Option<&GroupId> {
        match self {
            Chat::User(_) => None,
            Chat::Group(id) => Some(id),
        }
    }

    /// The conversation a record names by its user or its group (a group wins; neither: none).
    pub fn from_parts(user: Option<&Uid>, group: Option<GroupId>) -> Option<Chat> {
        match (user, group) {
            (_, Some(group)) => Some(Chat::Group(group)),
            (Some(user), None) => Some(Chat::User(user.clone())),
            (None, None) => None,
        }
    }

    /// Parses [`Chat`]'s `Display` form: a user id, or `#` and a group id in hex.
    pub fn parse(text: &str) -> Option<Chat> {
        match text.strip_prefix('#') {
            Some(hex) => GroupId::from_hex(hex).map(Chat::Group),
            None => Uid::parse(text).ok().map(Chat::User),
        }
    }
}

impl std::fmt::Display for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Chat::User(uid) => write!(f, "{uid}"),
            Chat::Group(id) => write!(f, "#{}", id.to_hex()),
        }
    }
}

/// Where a message stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageState {
    /// Outgoing: handed to the connection, not yet acknowledged by the server.
    Sending,
    /// Outgoing: the server committed it (`send_ack`).
    Sent,
    /// Outgoing: a device of the recipient received it (a `delivered` receipt).
    Delivered,
    /// Outgoing: the recipient saw it (a `read` receipt).
    Read,
    /// Outgoing: it could not be sent; the text says why.
    Failed(String),
    /// Incoming, not yet seen here.
    Unread,
    /// Incoming, seen here (or on another device of this account).
    Seen,
}

impl MessageState {
    /// How far an outgoing message got (receipts never move a message backwards).
    pub fn rank(&self) -> u8 {
        match self {
            MessageState::Failed(_) => 0,
            MessageState::Sending => 1,
            MessageState::Sent => 2,
            MessageState::Delivered => 3,
            MessageState::Read => 4,
            MessageState::Unread => 5,
            MessageState::Seen => 6,
        }
    }
}

/// Where a file transfer stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileProgress {
    /// Outgoing: chunks handed to the server so far.
    Sending {
        /// Chunks acknowledged by the server.
        sent: u32,
        /// All chunks.
        of: u32,
    },
    /// Outgoing: every chunk is with the server.
    Sent,
    /// Incoming: chunks received so far.
    Receiving {
        /// Chunks received and opened.
        have: u32,
        /// All chunks.
        of: u32,
    },
    /// Incoming: complete and checked, not saved yet.
    Complete,
    /// Incoming: saved by the driver at this path.
    Saved {
        /// Where.
        path: String,
    },
    /// Something went wrong (a missing or corrupted chunk, a hash mismatch); nothing was saved.
    Failed(String),
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// A text.
    Text(String),
    /// A file.
    File {
        /// Its id.
        file: FileId,
        /// The name the sender gave.
        name: String,
        /// Its size in bytes.
        size: u64,
        /// How far it got.
        progress: FileProgress,
    },
    /// Withdrawn by its sender.
    Deleted,
    /// A kind this client cannot show (the `type` it named).
    Unsupported(String),
    /// A change told in a group's conversation ("alice added carol"), or a problem with it (a
    /// refused version, missing versions). Recorded by this device; never sent.
    Event(String),
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The message id (the same on every device that has the message).
    pub id: MessageId,
    /// The other party of a conversation with one user; in a group, who wrote it (this
    /// account for its own messages) or made the change.
    pub peer: Uid,
    /// The group, for a message of a group's conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
    /// Sent by this account (from this device or, as a copy, from another one).
    pub outgoing: bool,
    /// When the sender says it wrote it (seconds, the sender's clock).
    pub ts: u64,
    /// When this device first recorded it (its own clock): the order of the conversation.
    pub at: Millis,
    /// What it says.
    pub body: Body,
    /// Where it stands.
    pub state: MessageState,
    /// Edited by its sender after it was sent.
    pub edited: bool,
}

impl ChatMessage {
    /// The conversation it belongs to.
    pub fn chat(&self) -> Chat {
        match self.group {
            Some(group) => Chat::Group(group),
            None => Chat::User(self.peer.clone()),
        }
    }
}

/// A group, as the conversation list shows it (the version this device holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// Its title (maybe empty).
    pub title: String,
    /// Its members.
    pub members: Vec<Uid>,
    /// Its admins.
    pub admins: Vec<Uid>,
    /// The version held.
    pub version: u64,
}

/// A conversation in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    /// With whom, or which group.
    pub chat: Chat,
    /// The contact's name in the roster, or the group's title (or the first digits of its id
    /// when it has none).
    pub name: Option<String>,
    /// For a group: its membership as held (this account may have left or been removed).
    pub group: Option<GroupSummary>,
    /// Incoming messages not seen yet.
    pub unread: u32,
    /// A short preview of the last message.
    pub preview: Option<String>,
    /// When the last message was recorded.
    pub last_at: Millis,
    /// The peer's presence, if they share it and it is known.
    pub presence: Option<PresenceStatus>,
    /// The peer is typing right now.
    pub typing: bool,
    /// The person compared the safety number and marked it verified.
    pub verified: bool,
    /// The peer's keys changed since last seen (a warning until acknowledged).
    pub key_changed: bool,
    /// This account blocked the peer.
    pub blocked: bool,
}

/// A first message from someone not in the contacts (PROTOCOL.md §15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRequest {
    /// Who.
    pub from: Uid,
}

/// A new device of this account waiting for approval (PROTOCOL.md §16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApproval {
    /// The new device's key.
    pub new_dek: DekPublic,
    /// The name it gave.
    pub name: Option<String>,
    /// The six-digit code ("913 163") once the exchange got that far: the person compares it
    /// with the new device's before approving.
    pub code: Option<String>,
}

/// The connection, as a status line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Opening a session.
    Connecting,
    /// Logged in and receiving.
    Online,
    /// Not connected; the driver tries again in `retry_in` seconds.
    Offline {
        /// Seconds until the next attempt.
        retry_in: u64,
        /// Why the last attempt failed.
        why: String,
    },
}

/// Something to tell the person prominently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Banner {
    /// A contact's keys changed: their devices or signing key are not the ones seen before.
    KeyChanged {
        /// Whose.
        uid: Uid,
    },
    /// A message could not be delivered or shown; the text says why.
    Problem(String),
    /// Something happened worth a line (a file saved, a device approved).
    Info(String),
}

/// What a user interface draws: the whole state, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// This account.
    pub me: Uid,
    /// The connection.
    pub status: Status,
    /// Conversations, most recent first.
    pub conversations: Vec<ConversationSummary>,
    /// Contact requests not answered yet.
    pub requests: Vec<ContactRequest>,
    /// New devices waiting for approval.
    pub approvals: Vec<PendingApproval>,
    /// Things to tell the person, oldest first.
    pub banners: Vec<Banner>,
}
