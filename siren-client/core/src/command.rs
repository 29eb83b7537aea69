//! What the person asks for, as a user interface reports it. A driver turns each into effects
//! through the core (sending, storing, reading a file from disk).

use siren_api::Uid;
use siren_proto::ids::{FileId, MessageId};
use siren_proto::keys::DekPublic;

use crate::model::Chat;

/// One request of the person.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Open (or start) a conversation.
    Open(Chat),
    /// Send a text.
    SendText {
        /// To whom (a user or a group).
        to: Chat,
        /// What.
        body: String,
    },
    /// The person is typing in (or stopped typing in) a conversation (never told to a group).
    SetTyping {
        /// The conversation.
        to: Chat,
        /// Typing now.
        typing: bool,
    },
    /// The person sees the conversation: its incoming messages are read.
    MarkRead(Chat),
    /// Send a file (the driver reads `path`).
    SendFile {
        /// To whom (a user or a group).
        to: Chat,
        /// The file on this machine.
        path: String,
    },
    /// Save a received file to the downloads folder.
    SaveFile(FileId),
    /// Replace the text of one of this account's messages.
    Edit {
        /// The conversation.
        chat: Chat,
        /// The message.
        id: MessageId,
        /// The new text.
        body: String,
    },
    /// Withdraw one of this account's messages.
    Delete {
        /// The conversation.
        chat: Chat,
        /// The message.
        id: MessageId,
    },
    /// Accept a contact request (add the user to the contacts).
    AcceptContact(Uid),
    /// Block a user (refuse a contact request, or stop a conversation).
    Block(Uid),
    /// Unblock a user.
    Unblock(Uid),
    /// Show the safety number with a user.
    ShowSafetyNumber(Uid),
    /// The person compared the safety number: mark the user verified (and the key-change
    /// warning acknowledged).
    MarkVerified(Uid),
    /// Approve or deny a new device of this account.
    AnswerApproval {
        /// The new device.
        new_dek: DekPublic,
        /// Approve (the codes matched) or deny.
        approve: bool,
    },
    /// Send read receipts or not.
    SetReadReceipts(bool),
}
