//! Device → server messages.

use serde::{Deserialize, Serialize};
use siren_api::Uid;

use super::common::{Presence, RequestId, Topic, check_record, check_signal};
use super::{LimitError, WireMessage, limit};
use crate::approval::{ApprovalNonce, UskTransfer};
use crate::envelope::Envelope;
use crate::keys::DekPublic;
use crate::records::{DeviceRecord, DeviceRevocation, MAX_DEVICE_NAME};
use crate::roster::{MAX_BLOCKED, MAX_CONTACTS, Roster};
use crate::transcript::Digest;

/// Longest authentication mechanism name (SASL allows 20 characters).
pub const MAX_MECHANISM_NAME: usize = 20;
/// Most bytes in one authentication step.
pub const MAX_AUTH_DATA: usize = 8192;
/// Most envelopes in one `send` (recipients × their devices).
pub const MAX_ENVELOPES: usize = 256;
/// Most queue sequence numbers in one `ack`.
pub const MAX_ACKS: usize = 1024;
/// Most topics in one `subscribe` or `unsubscribe`.
pub const MAX_TOPICS: usize = 256;
/// Most ciphertext bytes (`ct`) of one envelope in a `signal`: signals are small (PROTOCOL.md
/// §14).
pub const MAX_SIGNAL_CIPHERTEXT: usize = 4096;

/// A message from a device to its server (tagged by `t`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMessage {
    /// Start authenticating with one of the offered mechanisms.
    AuthStart {
        /// Request id.
        rid: RequestId,
        /// The chosen mechanism.
        #[serde(with = "crate::strict::text")]
        mech: String,
        /// The mechanism's initial response (may be empty).
        #[serde(with = "crate::strict::bytes")]
        data: Vec<u8>,
    },
    /// The next step of the chosen mechanism.
    AuthStep {
        /// Request id (the same as `auth_start`'s).
        rid: RequestId,
        /// The mechanism's response.
        #[serde(with = "crate::strict::bytes")]
        data: Vec<u8>,
    },
    /// Publish this device's DEK in the directory (a signed record continuing the chain).
    Register {
        /// Request id.
        rid: RequestId,
        /// The record.
        record: DeviceRecord,
    },
    /// Revoke one of the user's devices.
    Revoke {
        /// Request id.
        rid: RequestId,
        /// The signed revocation.
        revocation: DeviceRevocation,
    },
    /// Look a user up in the directory (local or, through federation, remote).
    Lookup {
        /// Request id.
        rid: RequestId,
        /// Who.
        uid: Uid,
    },
    /// Hand envelopes to the server for delivery.
    Send {
        /// Request id.
        rid: RequestId,
        /// One envelope per recipient device.
        msgs: Vec<Envelope>,
    },
    /// Hand ephemeral envelopes (a `typing` notice) to the server: delivered only to the
    /// recipient devices' live sessions at this moment, never stored or queued.
    Signal {
        /// Request id.
        rid: RequestId,
        /// One envelope per recipient device (each `ct` at most [`MAX_SIGNAL_CIPHERTEXT`]).
        msgs: Vec<Envelope>,
    },
    /// Acknowledge delivered queue entries: the server may now delete them.
    Ack {
        /// Queue sequence numbers from `deliver`.
        seqs: Vec<u64>,
    },
    /// Subscribe this session to topics.
    Subscribe {
        /// Request id.
        rid: RequestId,
        /// What to subscribe to.
        topics: Vec<Topic>,
    },
    /// Unsubscribe this session from topics.
    Unsubscribe {
        /// Request id.
        rid: RequestId,
        /// What to unsubscribe from.
        topics: Vec<Topic>,
    },
    /// Publish this user's presence.
    Publish {
        /// Request id.
        rid: RequestId,
        /// The new presence.
        presence: Presence,
    },
    /// Fetch the user's roster.
    RosterGet {
        /// Request id.
        rid: RequestId,
    },
    /// Store a new roster version.
    RosterPut {
        /// Request id.
        rid: RequestId,
        /// The signed roster.
        roster: Roster,
    },
    /// (New device) ask the user's existing devices for approval.
    ApprovalRequest {
        /// Request id.
        rid: RequestId,
        /// Commitment to this device's approval nonce.
        commit: Digest,
        /// A name for this device.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::strict::opt_text"
        )]
        name: Option<String>,
    },
    /// (Existing device) answer an approval request with a nonce.
    ApprovalChallenge {
        /// Request id.
        rid: RequestId,
        /// The new device.
        to: DekPublic,
        /// This device's nonce.
        #[serde(with = "crate::strict::fixed")]
        nonce: ApprovalNonce,
    },
    /// (New device) reveal the committed nonce.
    ApprovalReveal {
        /// Request id.
        rid: RequestId,
        /// The approving device.
        to: DekPublic,
        /// The nonce.
        #[serde(with = "crate::strict::fixed")]
        nonce: ApprovalNonce,
    },
    /// (Existing device) approve: send the sealed USK.
    ApprovalGrant {
        /// Request id.
        rid: RequestId,
        /// The sealed USK (its `to_dek` names the new device).
        transfer: UskTransfer,
    },
    /// (Existing device) refuse.
    ApprovalDeny {
        /// Request id.
        rid: RequestId,
        /// The new device.
        to: DekPublic,
    },
    /// Liveness check.
    Ping {
        /// Request id.
        rid: RequestId,
    },
    /// Close the session cleanly (it stays resumable).
    Bye,
}

impl ClientMessage {
    /// The request id, for the messages that are requests (`ack` and `bye` are not).
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            ClientMessage::AuthStart { rid, .. }
            | ClientMessage::AuthStep { rid, .. }
            | ClientMessage::Register { rid, .. }
            | ClientMessage::Revoke { rid, .. }
            | ClientMessage::Lookup { rid, .. }
            | ClientMessage::Send { rid, .. }
            | ClientMessage::Signal { rid, .. }
            | ClientMessage::Subscribe { rid, .. }
            | ClientMessage::Unsubscribe { rid, .. }
            | ClientMessage::Publish { rid, .. }
            | ClientMessage::RosterGet { rid }
            | ClientMessage::RosterPut { rid, .. }
            | ClientMessage::ApprovalRequest { rid, .. }
            | ClientMessage::ApprovalChallenge { rid, .. }
            | ClientMessage::ApprovalReveal { rid, .. }
            | ClientMessage::ApprovalGrant { rid, .. }
            | ClientMessage::ApprovalDeny { rid, .. }
            | ClientMessage::Ping { rid } => Some(*rid),
            ClientMessage::Ack { .. } | ClientMessage::Bye => None,
        }
    }
}

impl WireMessage for ClientMessage {
    const TYPES: &'static [&'static str] = &[
        "auth_start",
        "auth_step",
        "register",
        "revoke",
        "lookup",
        "send",
        "signal",
        "ack",
        "subscribe",
        "unsubscribe",
        "publish",
        "roster_get",
        "roster_put",
        "approval_request",
        "approval_challenge",
        "approval_reveal",
        "approval_grant",
        "approval_deny",
        "ping",
        "bye",
    ];

    fn decode_direct(t: &str, bytes: &[u8]) -> Option<Result<Self, String>> {
        /// `send`'s fields (the `t` key is read and ignored, as unknown keys are).
        #[derive(Deserialize)]
        struct SendFields {
            rid: RequestId,
            msgs: Vec<Envelope>,
        }
        /// `ack`'s fields.
        #[derive(Deserialize)]
        struct AckFields {
            seqs: Vec<u64>,
        }
        match t {
            "send" => Some(
                super::cbor::decode_checked::<SendFields>(bytes)
                    .map(|SendFields { rid, msgs }| ClientMessage::Send { rid, msgs }),
            ),
            "ack" => Some(
                super::cbor::decode_checked::<AckFields>(bytes)
                    .map(|AckFields { seqs }| ClientMessage::Ack { seqs }),
            ),
            _ => None,
        }
    }

    fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            ClientMessage::AuthStart { mech, data, .. } => {
                limit("mechanism name", mech.len(), MAX_MECHANISM_NAME)?;
                limit("auth data", data.len(), MAX_AUTH_DATA)
            }
            ClientMessage::AuthStep { data, .. } => limit("auth data", data.len(), MAX_AUTH_DATA),
            ClientMessage::Register { record, .. } => check_record(record),
            ClientMessage::Send { msgs, .. } => limit("envelopes", msgs.len(), MAX_ENVELOPES),
            ClientMessage::Signal { msgs, .. } => check_signal(msgs),
            ClientMessage::Ack { seqs } => limit("acks", seqs.len(), MAX_ACKS),
            ClientMessage::Subscribe { topics, .. } | ClientMessage::Unsubscribe { topics, .. } => {
                limit("topics", topics.len(), MAX_TOPICS)
            }
            ClientMessage::Publish { presence, .. } => presence.check_limits(),
            ClientMessage::RosterPut { roster, .. } => {
                limit("contacts", roster.contacts.len(), MAX_CONTACTS)?;
                limit("blocked users", roster.blocked.len(), MAX_BLOCKED)
            }
            ClientMessage::ApprovalRequest { name, .. } => limit(
                "device name",
                name.as_ref().map_or(0, String::len),
                MAX_DEVICE_NAME,
            ),
            _ => Ok(()),
        }
    }
}
