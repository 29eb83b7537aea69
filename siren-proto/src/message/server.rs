//! Server → device messages.

use serde::{Deserialize, Serialize};
use siren_api::{ServerName, Uid};

use super::client::{MAX_AUTH_DATA, MAX_ENVELOPES, MAX_MECHANISM_NAME};
use super::common::{
    NextStep, Presence, QueueItem, RequestId, Topic, check_listing, check_signal_envelope,
};
use super::{LimitError, WireMessage, limit};
use crate::envelope::Envelope;
use crate::ids::{MessageId, SessionId};
use crate::records::DirectoryListing;
use crate::roster::{MAX_BLOCKED, MAX_CONTACTS, Roster};

/// Most mechanisms a server offers.
pub const MAX_MECHANISMS: usize = 16;
/// Longest error text, in bytes.
pub const MAX_ERROR_TEXT: usize = 1024;

/// A message from a server to a device (tagged by `t`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// First message after the handshake: the session id (new or resumed).
    Welcome {
        /// The session id, bound to the DEK that opened the session.
        sid: SessionId,
        /// Whether an earlier session was resumed (then no login is needed).
        resumed: bool,
        /// The server's name.
        server: ServerName,
        /// The largest frame this server accepts.
        max_frame: u32,
        /// The user the resumed session belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<Uid>,
    },
    /// The authentication mechanisms on offer, most preferred first.
    AuthMechanisms {
        /// Mechanism names.
        #[serde(with = "crate::strict::text_list")]
        mechs: Vec<String>,
    },
    /// The mechanism's next challenge.
    AuthChallenge {
        /// The `auth_start` request id.
        rid: RequestId,
        /// Mechanism data.
        #[serde(with = "crate::strict::bytes")]
        data: Vec<u8>,
    },
    /// Authentication succeeded.
    AuthSuccess {
        /// The `auth_start` request id.
        rid: RequestId,
        /// Who the session now belongs to.
        uid: Uid,
        /// What the device must do next.
        next: NextStep,
    },
    /// The request succeeded (for requests with no other answer).
    Ok {
        /// The request id.
        rid: RequestId,
    },
    /// The request (or, without `rid`, the connection) failed.
    Error {
        /// The request id, if the error answers a request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// A stable code from PROTOCOL.md.
        code: u16,
        /// Human-readable text.
        #[serde(with = "crate::strict::text")]
        msg: String,
    },
    /// A directory listing (answer to `lookup`).
    Directory {
        /// The `lookup` request id.
        rid: RequestId,
        /// The listing.
        listing: DirectoryListing,
    },
    /// The envelopes of a `send` are committed: they will not be lost.
    SendAck {
        /// The `send` request id.
        rid: RequestId,
        /// The ids of the accepted messages.
        ids: Vec<MessageId>,
    },
    /// A queue entry for this device; acknowledge it with `ack` once processed.
    Deliver {
        /// Its sequence number in this device's queue.
        seq: u64,
        /// The entry.
        item: QueueItem,
    },
    /// Everything queued while the device was away has been delivered.
    QueueDrained,
    /// An ephemeral envelope (a `signal` of another device) for this live session: no sequence
    /// number, not stored, never acknowledged.
    Signal {
        /// The envelope, addressed to this session's DEK.
        env: Envelope,
    },
    /// A pub/sub event for a topic this session subscribed to.
    Event {
        /// The topic.
        topic: Topic,
        /// The publisher.
        from: Uid,
        /// The presence published.
        presence: Presence,
    },
    /// The user's roster (answer to `roster_get`); absent if none was stored.
    Roster {
        /// The `roster_get` request id.
        rid: RequestId,
        /// The stored roster.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        roster: Option<Roster>,
    },
    /// Answer to `ping`.
    Pong {
        /// The `ping` request id.
        rid: RequestId,
    },
}

impl WireMessage for ServerMessage {
    const TYPES: &'static [&'static str] = &[
        "welcome",
        "auth_mechanisms",
        "auth_challenge",
        "auth_success",
        "ok",
        "error",
        "directory",
        "send_ack",
        "deliver",
        "queue_drained",
        "signal",
        "event",
        "roster",
        "pong",
    ];

    fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            ServerMessage::AuthMechanisms { mechs } => {
                limit("mechanisms", mechs.len(), MAX_MECHANISMS)?;
                mechs
                    .iter()
                    .try_for_each(|m| limit("mechanism name", m.len(), MAX_MECHANISM_NAME))
            }
            ServerMessage::AuthChallenge { data, .. } => {
                limit("auth data", data.len(), MAX_AUTH_DATA)
            }
            ServerMessage::AuthSuccess {
                next: NextStep::AwaitApproval { listing },
                ..
            } => check_listing(listing),
            ServerMessage::Error { msg, .. } => limit("error text", msg.len(), MAX_ERROR_TEXT),
            ServerMessage::Directory { listing, .. } => check_listing(listing),
            ServerMessage::SendAck { ids, .. } => limit("message ids", ids.len(), MAX_ENVELOPES),
            ServerMessage::Deliver { item, .. } => item.check_limits(),
            ServerMessage::Signal { env } => check_signal_envelope(env),
            ServerMessage::Event { presence, .. } => presence.check_limits(),
            ServerMessage::Roster {
                roster: Some(roster),
                ..
            } => {
                limit("contacts", roster.contacts.len(), MAX_CONTACTS)?;
                limit("blocked users", roster.blocked.len(), MAX_BLOCKED)
            }
            _ => Ok(()),
        }
    }
}
