//! What the core asks its driver to do. The core decides; the driver seals and sends, writes
//! history, reads and writes files, edits the roster, and feeds the outcome back in.

use siren_api::Uid;
use siren_proto::ids::{FileId, GroupId, MessageId};
use siren_proto::keys::DekPublic;
use siren_proto::plaintext::Plaintext;

use crate::model::{Chat, ChatMessage};

/// One thing for the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// Seal `content` to every device of `to` and send it (queued, durable) with message id
    /// `id`; report the server's answer with [`crate::Core::sent`] or
    /// [`crate::Core::send_failed`]. `to` may be this account: then every device of it but
    /// this one.
    Send {
        /// The recipient.
        to: Uid,
        /// The message id.
        id: MessageId,
        /// What to seal.
        content: Plaintext,
    },
    /// Send `content` to group `group` (PROTOCOL.md §12.1: wrapped in a `group` plaintext, sealed
    /// to every device of every member of the version held, this account's other devices
    /// included) with message id `id`; report as for [`Effect::Send`].
    SendGroup {
        /// The group.
        group: GroupId,
        /// The message id.
        id: MessageId,
        /// What to send (a `text`, `file`, `file_chunk`, `edit` or `delete`).
        content: Plaintext,
    },
    /// Seal `content` to every live device of `to` as an ephemeral signal (never queued; lost
    /// if nobody is online). Nothing is reported back.
    Signal {
        /// The recipient.
        to: Uid,
        /// What to seal (typing).
        content: Plaintext,
    },
    /// Write (or replace) this message in the local history.
    Store(ChatMessage),
    /// Save a received, checked file to the downloads folder; report the path with
    /// [`crate::Core::file_saved`].
    SaveFile {
        /// The file.
        file: FileId,
        /// The name the sender gave (the driver makes it a safe file name).
        name: String,
        /// The whole file, checked against the manifest's hash.
        data: Vec<u8>,
    },
    /// Read this file from disk and hand it to [`crate::Core::send_file`].
    ReadFile {
        /// For whom.
        to: Chat,
        /// The path the person gave.
        path: String,
    },
    /// Add `uid` to the roster's contacts (accepting a contact request), removing a block.
    AddContact(Uid),
    /// Put `uid` on the roster's blocked list.
    Block(Uid),
    /// Take `uid` off the roster's blocked list.
    Unblock(Uid),
    /// Remember that the person verified `uid`'s safety number (and acknowledged a key change).
    MarkVerified(Uid),
    /// Load older history of a conversation into the core ([`crate::Core::history_loaded`]).
    LoadHistory {
        /// The conversation.
        chat: Chat,
        /// Messages before this one (None: the newest).
        before: Option<ChatMessage>,
        /// How many.
        limit: usize,
    },
    /// Answer a new device's approval request.
    AnswerApproval {
        /// The new device.
        new_dek: DekPublic,
        /// Approve (hand over the USK) or deny.
        approve: bool,
    },
    /// The person changed a setting (for the driver to keep).
    SetReadReceipts(bool),
}
