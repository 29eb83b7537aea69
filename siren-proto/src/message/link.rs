//! Server ↔ server messages over a federation link.

use serde::{Deserialize, Serialize};
use siren_api::{ServerName, Uid};

use super::client::{MAX_ENVELOPES, MAX_TOPICS};
use super::common::{Presence, RequestId, Topic, check_listing, check_signal};
use super::server::MAX_ERROR_TEXT;
use super::{LimitError, WireMessage, limit};
use crate::envelope::Envelope;
use crate::ids::MessageId;
use crate::records::DirectoryListing;

/// Most recipients of one relayed event.
pub const MAX_EVENT_RECIPIENTS: usize = 1024;

/// A message on a federation link (tagged by `t`). Either side may send requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LinkMessage {
    /// The responder's first message after the handshake.
    LinkReady {
        /// The responder's name.
        server: ServerName,
        /// The largest frame it accepts.
        max_frame: u32,
    },
    /// Look up one of the receiving server's users on behalf of a client.
    Lookup {
        /// Request id.
        rid: RequestId,
        /// Who (must belong to the receiving server).
        uid: Uid,
    },
    /// Answer to `lookup`.
    Directory {
        /// The `lookup` request id.
        rid: RequestId,
        /// The listing.
        listing: DirectoryListing,
    },
    /// Envelopes for the receiving server's users.
    Deliver {
        /// Request id.
        rid: RequestId,
        /// The envelopes (senders belong to the sending server).
        msgs: Vec<Envelope>,
    },
    /// The envelopes of a `deliver` are committed by the receiving server.
    DeliverAck {
        /// The `deliver` request id.
        rid: RequestId,
        /// The ids accepted.
        ids: Vec<MessageId>,
    },
    /// Ephemeral envelopes (signals) for live devices of the receiving server's users: no
    /// request id and no answer; the receiver delivers them to live sessions or drops them.
    Signal {
        /// The envelopes (senders belong to the sending server).
        msgs: Vec<Envelope>,
    },
    /// A user of the sending server subscribes to topics of the receiving server.
    Subscribe {
        /// Request id.
        rid: RequestId,
        /// The subscriber (belongs to the sending server).
        from: Uid,
        /// Topics (belong to the receiving server).
        topics: Vec<Topic>,
    },
    /// Withdraws a subscription.
    Unsubscribe {
        /// Request id.
        rid: RequestId,
        /// The subscriber.
        from: Uid,
        /// Topics.
        topics: Vec<Topic>,
    },
    /// A pub/sub event for subscribers on the receiving server.
    Event {
        /// The subscribers to notify.
        to: Vec<Uid>,
        /// The topic.
        topic: Topic,
        /// The publisher (belongs to the sending server).
        from: Uid,
        /// The presence published.
        presence: Presence,
    },
    /// The request succeeded.
    Ok {
        /// The request id.
        rid: RequestId,
    },
    /// The request (or, without `rid`, the link) failed.
    Error {
        /// The request id, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rid: Option<RequestId>,
        /// A stable code from PROTOCOL.md.
        code: u16,
        /// Human-readable text.
        #[serde(with = "crate::strict::text")]
        msg: String,
    },
    /// Keepalive.
    Ping {
        /// Request id.
        rid: RequestId,
    },
    /// Answer to `ping`.
    Pong {
        /// The `ping` request id.
        rid: RequestId,
    },
}

impl WireMessage for LinkMessage {
    const TYPES: &'static [&'static str] = &[
        "link_ready",
        "lookup",
        "directory",
        "deliver",
        "deliver_ack",
        "signal",
        "subscribe",
        "unsubscribe",
        "event",
        "ok",
        "error",
        "ping",
        "pong",
    ];

    fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            LinkMessage::Directory { listing, .. } => check_listing(listing),
            LinkMessage::Deliver { msgs, .. } => limit("envelopes", msgs.len(), MAX_ENVELOPES),
            LinkMessage::DeliverAck { ids, .. } => limit("message ids", ids.len(), MAX_ENVELOPES),
            LinkMessage::Signal { msgs } => check_signal(msgs),
            LinkMessage::Subscribe { topics, .. } | LinkMessage::Unsubscribe { topics, .. } => {
                limit("topics", topics.len(), MAX_TOPICS)
            }
            LinkMessage::Event { to, presence, .. } => {
                limit("event recipients", to.len(), MAX_EVENT_RECIPIENTS)?;
                presence.check_limits()
            }
            LinkMessage::Error { msg, .. } => limit("error text", msg.len(), MAX_ERROR_TEXT),
            _ => Ok(()),
        }
    }
}
