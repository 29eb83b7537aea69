//! The messages exchanged once a session or link is open, and their CBOR encoding.
//!
//! Every message is a CBOR map with a text field `t` naming its type (`"send"`, `"deliver"`, …)
//! and short text keys for its fields; PROTOCOL.md gives the schema of each. Three sets:
//! [`ClientMessage`] (device → server), [`ServerMessage`] (server → device) and [`LinkMessage`]
//! (server ↔ server over a federation link).
//!
//! Versioning rules, enforced by [`decode`]:
//!
//! * unknown fields are ignored (a newer peer may add optional fields);
//! * an unknown `t` is reported as [`DecodeErrorKind::UnknownType`], which the receiver answers
//!   with error 102 (`unknown_message_type`) and carries on;
//! * a known `t` whose fields do not match is [`DecodeErrorKind::Malformed`] (error 101);
//! * counts and lengths beyond the protocol's limits are [`DecodeErrorKind::Limit`] (error 107).
//!
//! Where the undecodable message carried a request id (`rid`), the error says so, so the answer
//! can name the request it refuses.

mod cbor;
mod client;
mod common;
mod link;
mod server;

pub use client::{
    ClientMessage, MAX_ACKS, MAX_AUTH_DATA, MAX_ENVELOPES, MAX_MECHANISM_NAME,
    MAX_SIGNAL_CIPHERTEXT, MAX_TOPICS,
};
pub use common::{
    MAX_STATUS_TEXT, NextStep, Notice, Presence, PresenceStatus, QueueItem, RequestId, Topic,
};
pub use link::{LinkMessage, MAX_EVENT_RECIPIENTS};
pub use server::{MAX_ERROR_TEXT, MAX_MECHANISMS, ServerMessage};

use serde::Serialize;
use serde::de::DeserializeOwned;
use siren_api::ErrorCode;

pub use cbor::{MAX_KEY_LEN, MAX_MAP_ENTRIES, MAX_NESTING};
pub(crate) use cbor::{check_profile, decode_cbor, decode_checked, encode_cbor};

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct DecodeError {
    /// What went wrong.
    pub kind: DecodeErrorKind,
    /// The request id, if the message carried a readable one.
    pub rid: Option<RequestId>,
}

/// The kinds of decoding failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// Not CBOR, not a map with a text `t`, or fields that do not match the type's schema.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A `t` this side does not know.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A count or length beyond the protocol's limit.
    #[error("{what} exceeds the limit of {max}")]
    Limit {
        /// Which field.
        what: &'static str,
        /// The limit.
        max: usize,
    },
}

impl DecodeError {
    /// The error code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self.kind {
            DecodeErrorKind::Malformed(_) => ErrorCode::MalformedMessage,
            DecodeErrorKind::UnknownType(_) => ErrorCode::UnknownMessageType,
            DecodeErrorKind::Limit { .. } => ErrorCode::LimitExceeded,
        }
    }
}

/// A message set that travels in frames.
pub trait WireMessage: Serialize + DeserializeOwned {
    /// Every `t` value of the set.
    const TYPES: &'static [&'static str];

    /// Checks counts and lengths against the protocol's limits.
    fn check_limits(&self) -> Result<(), LimitError>;

    /// Decodes a message of type `t` straight into its fields, for the types a server or client
    /// decodes most (`send`, `ack`): serde reads an internally tagged enum by first buffering the
    /// whole message into its own tree, then reading the tree again, which takes about twice as
    /// long (`cargo bench -p siren-proto --bench proto -- decode_send`). `None`: the generic path
    /// (same result, same errors).
    fn decode_direct(t: &str, bytes: &[u8]) -> Option<Result<Self, String>> {
        let _ = (t, bytes);
        None
    }
}

/// A count or length beyond its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitError {
    /// Which field.
    pub what: &'static str,
    /// The limit.
    pub max: usize,
}

/// Returns an error if `len > max`.
pub(crate) fn limit(what: &'static str, len: usize, max: usize) -> Result<(), LimitError> {
    if len > max {
        Err(LimitError { what, max })
    } else {
        Ok(())
    }
}

/// Encodes a message as CBOR (the payload of one frame, before transport encryption).
pub fn encode<M: WireMessage>(msg: &M) -> Vec<u8> {
    encode_cbor(msg)
}

/// Encodes any Siren value (a record, an envelope, a roster) in the CBOR profile, e.g. for a
/// client's cache or for test vectors.
pub fn encode_value<T: Serialize>(value: &T) -> Vec<u8> {
    encode_cbor(value)
}

/// Decodes any Siren value, checking the CBOR profile.
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_cbor(bytes).map_err(|e| DecodeError {
        kind: DecodeErrorKind::Malformed(e),
        rid: None,
    })
}

/// Encodes `deliver { seq, item }` around a queue item that is already encoded (as the queue
/// stores it, with [`encode_value`]) without decoding it again. The bytes are the same as
/// `encode(&ServerMessage::Deliver { seq, item })`.
pub fn encode_deliver(seq: u64, item: &[u8]) -> Vec<u8> {
    use ciborium_ll::{Encoder, Header};
    let mut out = Vec::with_capacity(item.len() + 24);
    {
        let mut enc = Encoder::from(&mut out);
        // Writing into a Vec cannot fail.
        let _ = enc.push(Header::Map(Some(3)));
        let _ = enc.text("t", None);
        let _ = enc.text("deliver", None);
        let _ = enc.text("seq", None);
        let _ = enc.push(Header::Positive(seq));
        let _ = enc.text("item", None);
    }
    out.extend_from_slice(item);
    out
}

/// The start of a queue item holding an envelope as [`encode_value`] writes
/// `QueueItem::Message { env }`: a map of two, `k` = `message`, then `env` (a test checks it
/// against the encoding).
const QUEUED_MESSAGE_PREFIX: &[u8] = b"\xa2\x61k\x67message\x63env";

/// The envelope inside a stored queue item, as encoded bytes, without decoding it: `Some` when
/// `item` is `QueueItem::Message { env }` as [`encode_value`] writes it (the bytes after its
/// `env` key are then exactly `encode_value(&env)`), `None` for anything else (another kind of
/// item, or another layout: decode those). For a server forwarding what it stored itself.
pub fn queued_envelope(item: &[u8]) -> Option<&[u8]> {
    item.strip_prefix(QUEUED_MESSAGE_PREFIX)
        .filter(|env| !env.is_empty())
}

/// Encodes a link's `deliver { rid, msgs }` around envelopes that are already encoded (with
/// [`encode_value`], or found by [`queued_envelope`]) without decoding them. The bytes are the
/// same as `encode(&LinkMessage::Deliver { rid, msgs })`.
pub fn encode_link_deliver(rid: RequestId, envelopes: &[&[u8]]) -> Vec<u8> {
    use ciborium_ll::{Encoder, Header};
    let body: usize = envelopes.iter().map(|e| e.len()).sum();
    let mut out = Vec::with_capacity(body + 32);
    {
        let mut enc = Encoder::from(&mut out);
        // Writing into a Vec cannot fail.
        let _ = enc.push(Header::Map(Some(3)));
        let _ = enc.text("t", None);
        let _ = enc.text("deliver", None);
        let _ = enc.text("rid", None);
        let _ = enc.push(Header::Positive(u64::from(rid)));
        let _ = enc.text("msgs", None);
        let _ = enc.push(Header::Array(Some(envelopes.len())));
    }
    for env in envelopes {
        out.extend_from_slice(env);
    }
    out
}

/// Decodes one message, applying the versioning rules and limits described above.
pub fn decode<M: WireMessage>(bytes: &[u8]) -> Result<M, DecodeError> {
    let malformed = |e, rid| DecodeError {
        kind: DecodeErrorKind::Malformed(e),
        rid,
    };
    let peek = cbor::check_profile(bytes).map_err(|e| malformed(e, None))?;
    let rid = peek.rid;
    let t = peek
        .t
        .ok_or_else(|| malformed("no text field \"t\" naming the message type".into(), rid))?;
    if !M::TYPES.contains(&t.as_str()) {
        return Err(DecodeError {
            kind: DecodeErrorKind::UnknownType(t),
            rid,
        });
    }
    let msg: M = match M::decode_direct(&t, bytes) {
        Some(decoded) => decoded,
        None => cbor::decode_checked(bytes),
    }
    .map_err(|e| malformed(e, rid))?;
    msg.check_limits()
        .map_err(|LimitError { what, max }| DecodeError {
            kind: DecodeErrorKind::Limit { what, max },
            rid,
        })?;
    Ok(msg)
}

#[cfg(test)]
mod tests;
