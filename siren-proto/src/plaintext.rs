//! What an envelope carries once opened (PROTOCOL.md §"Envelopes", "The plaintext"): a map in
//! Siren's CBOR profile whose text field `type` names what it is, from the registry in
//! [`TYPES`].
//!
//! The receiving rules are what makes new types possible without a new protocol version:
//!
//! * unknown fields are ignored;
//! * a `type` the receiver does not know is [`Plaintext::Unsupported`], shown to the person as an
//!   unsupported message and never treated as an error (the message was delivered, verified and
//!   decrypted; only this client cannot show it);
//! * a plaintext outside the profile, without a text `type`, or of a known type whose fields do
//!   not match, is malformed.

use serde::{Deserialize, Serialize};

use crate::message::{DecodeError, DecodeErrorKind};

/// The `type` values defined so far, in the order of PROTOCOL.md's registry.
pub const TYPES: &[&str] = &[TEXT];

const TEXT: &str = "text";

/// An opened message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Plaintext {
    /// `type: "text"`: a text message.
    Text {
        /// What it says.
        body: String,
        /// When the sender wrote it, in seconds since the Unix epoch (the sender's clock).
        ts: u64,
    },
    /// A `type` this implementation does not know (a newer sender's receipt, file, …).
    Unsupported {
        /// The `type` it named.
        kind: String,
    },
}

/// The `type` field alone (every other field ignored).
#[derive(Deserialize)]
struct Kind {
    #[serde(rename = "type", with = "crate::strict::text")]
    kind: String,
}

#[derive(Serialize)]
struct TextOut<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    body: &'a str,
    ts: u64,
}

#[derive(Deserialize)]
struct TextIn {
    #[serde(with = "crate::strict::text")]
    body: String,
    ts: u64,
}

#[derive(Serialize)]
struct KindOnly<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
}

impl Plaintext {
    /// Encodes the plaintext in Siren's CBOR profile, fields in the documented order
    /// (`type`, then the type's fields).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Plaintext::Text { body, ts } => crate::message::encode_cbor(&TextOut {
                kind: TEXT,
                body,
                ts: *ts,
            }),
            Plaintext::Unsupported { kind } => crate::message::encode_cbor(&KindOnly { kind }),
        }
    }

    /// Decodes an opened envelope's plaintext by the receiving rules above.
    pub fn decode(bytes: &[u8]) -> Result<Plaintext, DecodeError> {
        let malformed = |e: String| DecodeError {
            kind: DecodeErrorKind::Malformed(e),
            rid: None,
        };
        crate::message::check_profile(bytes).map_err(malformed)?;
        let Kind { kind } = crate::message::decode_checked(bytes).map_err(malformed)?;
        match kind.as_str() {
            TEXT => {
                let TextIn { body, ts } =
                    crate::message::decode_checked(bytes).map_err(malformed)?;
                Ok(Plaintext::Text { body, ts })
            }
            _ => Ok(Plaintext::Unsupported { kind }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::Value;

    fn cbor(fields: Vec<(&str, Value)>) -> Vec<u8> {
        let map = Value::Map(
            fields
                .into_iter()
                .map(|(k, v)| (Value::Text(k.into()), v))
                .collect(),
        );
        let mut out = Vec::new();
        ciborium::into_writer(&map, &mut out).unwrap();
        out
    }

    #[test]
    fn text_round_trips_in_the_documented_shape() {
        let text = Plaintext::Text {
            body: "hello".into(),
            ts: 1_767_225_600,
        };
        let bytes = text.encode();
        assert_eq!(
            bytes,
            cbor(vec![
                ("type", Value::Text("text".into())),
                ("body", Value::Text("hello".into())),
                ("ts", Value::Integer(1_767_225_600.into())),
            ])
        );
        assert_eq!(Plaintext::decode(&bytes).unwrap(), text);
    }

    #[test]
    fn unknown_fields_are_ignored_and_unknown_types_are_unsupported() {
        let with_extra = cbor(vec![
            ("ts", Value::Integer(5.into())),
            ("reply_to", Value::Bytes(vec![1; 16])),
            ("body", Value::Text("hi".into())),
            ("type", Value::Text("text".into())),
        ]);
        assert_eq!(
            Plaintext::decode(&with_extra).unwrap(),
            Plaintext::Text {
                body: "hi".into(),
                ts: 5
            }
        );
        let receipt = cbor(vec![
            ("type", Value::Text("receipt".into())),
            ("ids", Value::Array(vec![])),
        ]);
        assert_eq!(
            Plaintext::decode(&receipt).unwrap(),
            Plaintext::Unsupported {
                kind: "receipt".into()
            }
        );
    }

    #[test]
    fn malformed_plaintexts_are_refused() {
        for bytes in [
            // JSON is not CBOR.
            br#"{"type":"text","body":"hello"}"#.to_vec(),
            // No type; a type that is not text; text without ts; a body that is bytes.
            cbor(vec![("body", Value::Text("x".into()))]),
            cbor(vec![("type", Value::Bytes(b"text".to_vec()))]),
            cbor(vec![
                ("type", Value::Text("text".into())),
                ("body", Value::Text("x".into())),
            ]),
            cbor(vec![
                ("type", Value::Text("text".into())),
                ("body", Value::Bytes(b"x".to_vec())),
                ("ts", Value::Integer(1.into())),
            ]),
            // Outside the profile even in an unknown type.
            cbor(vec![
                ("type", Value::Text("receipt".into())),
                ("at", Value::Float(1.5)),
            ]),
        ] {
            assert!(
                matches!(
                    Plaintext::decode(&bytes).unwrap_err().kind,
                    DecodeErrorKind::Malformed(_)
                ),
                "{bytes:02x?}"
            );
        }
    }
}
