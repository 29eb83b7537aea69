//! Types shared by several message sets.

use serde::{Deserialize, Serialize};
use siren_api::Uid;

use super::server::MAX_ERROR_TEXT;
use super::{LimitError, limit};
use crate::approval::{ApprovalNonce, UskTransfer};
use crate::envelope::Envelope;
use crate::ids::MessageId;
use crate::keys::DekPublic;
use crate::records::{
    ChainHead, DeviceRecord, DirectoryListing, MAX_DEVICE_NAME, MAX_DEVICES, MAX_LISTED_REVOCATIONS,
};
use crate::transcript::Digest;

/// A request id chosen by the requester and echoed in the answer, so requests can be pipelined.
pub type RequestId = u32;

/// Longest presence status text, in bytes.
pub const MAX_STATUS_TEXT: usize = 256;

/// Availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// Online and reachable.
    Available,
    /// Online but away.
    Away,
    /// Online, do not disturb.
    Busy,
    /// Not connected.
    Offline,
}

/// A presence update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// Availability.
    pub status: PresenceStatus,
    /// Optional free text ("in a meeting"), at most 256 bytes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::strict::opt_text"
    )]
    pub text: Option<String>,
}

impl Presence {
    pub(crate) fn check_limits(&self) -> Result<(), LimitError> {
        limit(
            "status text",
            self.text.as_ref().map_or(0, String::len),
            MAX_STATUS_TEXT,
        )
    }
}

/// Something a session can subscribe to (tagged by `k`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Topic {
    /// A user's presence.
    Presence {
        /// Whose.
        uid: Uid,
    },
}

impl Topic {
    /// The user whose events the topic carries.
    pub fn publisher(&self) -> &Uid {
        match self {
            Topic::Presence { uid } => uid,
        }
    }
}

/// What a login leads to (tagged by `k`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NextStep {
    /// This DEK is already registered: the session is ready.
    Ready,
    /// The user has no devices: generate a USK and register this DEK as entry 1.
    CreateUser,
    /// The user has devices: wait for one of them to approve this one (the listing lets the new
    /// device check the USK transfer).
    AwaitApproval {
        /// The user's current directory.
        listing: DirectoryListing,
    },
}

/// An entry of a device's message queue (tagged by `k`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
#[non_exhaustive]
pub enum QueueItem {
    /// An end-to-end message.
    Message {
        /// The sealed message.
        env: Envelope,
    },
    /// A critical notification from the server or relayed between the user's devices.
    Notice {
        /// What happened.
        notice: Notice,
    },
    /// An item of a kind this side does not know (a newer server's): a receiver skips it and
    /// acknowledges it, so it is not delivered again (PROTOCOL.md §13). Never sent.
    #[serde(other)]
    Unknown,
}

/// Critical notifications, delivered through the queue so an offline device still gets them
/// (tagged by `k`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Notice {
    /// A user's directory changed (device added or revoked): look them up again.
    DirectoryChanged {
        /// Whose directory.
        uid: Uid,
        /// Its new head.
        head: ChainHead,
    },
    /// A new device asks to join this user's account (to the user's existing devices).
    ApprovalRequest {
        /// The new device.
        new_dek: DekPublic,
        /// Its commitment to its approval nonce.
        commit: Digest,
        /// Its name, if it gave one.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::strict::opt_text"
        )]
        name: Option<String>,
    },
    /// An existing device answers an approval request with its nonce (to the new device).
    ApprovalChallenge {
        /// The approving device.
        from_dek: DekPublic,
        /// Its nonce.
        #[serde(with = "crate::strict::fixed")]
        nonce: ApprovalNonce,
    },
    /// The new device reveals its nonce (to the approving device).
    ApprovalReveal {
        /// The new device.
        from_dek: DekPublic,
        /// The nonce it committed to.
        #[serde(with = "crate::strict::fixed")]
        nonce: ApprovalNonce,
    },
    /// The approving device sends the sealed USK (to the new device).
    ApprovalGrant {
        /// The sealed USK.
        transfer: UskTransfer,
    },
    /// The approving device refused (to the new device).
    ApprovalDeny {
        /// The device that refused.
        from_dek: DekPublic,
    },
    /// Someone who is not a contact sent a first message; the message follows in the queue.
    ContactRequest {
        /// Who.
        from: Uid,
    },
    /// A message this device sent to a user of another server was given up (to the sending
    /// device): it can never fit the peer's frames, or the peer refused it for good.
    Undeliverable {
        /// The message's id (as in the `send_ack`).
        id: MessageId,
        /// The recipient.
        to: Uid,
        /// Why, as an error code (PROTOCOL.md §18).
        code: u16,
        /// Why, in words.
        #[serde(with = "crate::strict::text")]
        reason: String,
    },
    /// A notice of a kind this side does not know (a newer server's): a receiver skips it and
    /// acknowledges it (PROTOCOL.md §13). Never sent.
    #[serde(other)]
    Unknown,
}

impl Notice {
    pub(crate) fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            Notice::ApprovalRequest { name, .. } => limit(
                "device name",
                name.as_ref().map_or(0, String::len),
                MAX_DEVICE_NAME,
            ),
            Notice::Undeliverable { reason, .. } => {
                limit("error text", reason.len(), MAX_ERROR_TEXT)
            }
            _ => Ok(()),
        }
    }
}

impl QueueItem {
    pub(crate) fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            QueueItem::Message { .. } | QueueItem::Unknown => Ok(()),
            QueueItem::Notice { notice } => notice.check_limits(),
        }
    }
}

pub(crate) fn check_listing(listing: &DirectoryListing) -> Result<(), LimitError> {
    limit("devices", listing.records.len(), MAX_DEVICES)?;
    limit("revocations", listing.revoked.len(), MAX_LISTED_REVOCATIONS)
}

pub(crate) fn check_record(record: &DeviceRecord) -> Result<(), LimitError> {
    limit(
        "device name",
        record.name.as_ref().map_or(0, String::len),
        MAX_DEVICE_NAME,
    )
}

/// The envelopes of a `signal` (device request or link message): at most as many as a `send`
/// carries, each with a small ciphertext.
pub(crate) fn check_signal(msgs: &[Envelope]) -> Result<(), LimitError> {
    limit("envelopes", msgs.len(), super::client::MAX_ENVELOPES)?;
    msgs.iter().try_for_each(check_signal_envelope)
}

/// One envelope of a signal: its ciphertext within [`super::client::MAX_SIGNAL_CIPHERTEXT`].
pub(crate) fn check_signal_envelope(env: &Envelope) -> Result<(), LimitError> {
    limit(
        "signal ciphertext",
        env.ct.len(),
        super::client::MAX_SIGNAL_CIPHERTEXT,
    )
}
