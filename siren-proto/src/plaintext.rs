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
use zeroize::Zeroize;

use crate::crypto;
use crate::group::GroupState;
use crate::ids::{FileId, GroupId, MessageId};
use crate::message::{DecodeError, DecodeErrorKind};
use siren_api::Uid;

/// The `type` values defined so far, in the order of PROTOCOL.md's registry.
pub const TYPES: &[&str] = &[
    TEXT,
    RECEIPT,
    TYPING,
    FILE,
    FILE_CHUNK,
    EDIT,
    DELETE,
    COPY,
    GROUP,
    GROUP_UPDATE,
    GROUP_SYNC,
];

/// The types a `group` message may carry (PROTOCOL.md §12.1); a type this implementation does
/// not know is carried as unsupported, like a top-level one.
pub const GROUP_CONTENT: &[&str] = &[TEXT, FILE, FILE_CHUNK, EDIT, DELETE];

const TEXT: &str = "text";
const RECEIPT: &str = "receipt";
const TYPING: &str = "typing";
const FILE: &str = "file";
const FILE_CHUNK: &str = "file_chunk";
const EDIT: &str = "edit";
const DELETE: &str = "delete";
const COPY: &str = "copy";
const GROUP: &str = "group";
const GROUP_UPDATE: &str = "group_update";
const GROUP_SYNC: &str = "group_sync";

/// Largest file a manifest may announce: 25 MiB.
pub const MAX_FILE_SIZE: u64 = 25 << 20;
/// Largest plaintext chunk of a file: 256 KiB (a chunk's envelope fits the default 1 MiB frame
/// with room to spare).
pub const MAX_CHUNK_SIZE: u32 = 256 << 10;
/// Most message ids in one receipt.
pub const MAX_RECEIPT_IDS: usize = 256;
/// Longest file name, in bytes.
pub const MAX_FILE_NAME: usize = 255;

/// Delivered or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptState {
    /// The recipient's device received and stored the messages.
    Delivered,
    /// The recipient saw them.
    Read,
}

/// What a file manifest says: everything a receiver needs to fetch, decrypt and check it.
#[derive(Clone, PartialEq, Eq)]
pub struct FileManifest {
    /// Names the file and its chunks.
    pub file: FileId,
    /// The file name the sender gave (not a path; at most [`MAX_FILE_NAME`] bytes).
    pub name: String,
    /// Size of the plaintext file in bytes (at most [`MAX_FILE_SIZE`]).
    pub size: u64,
    /// Plaintext bytes per chunk (the last may be shorter; at most [`MAX_CHUNK_SIZE`]).
    pub chunk_size: u32,
    /// How many chunks: `ceil(size / chunk_size)`.
    pub chunks: u32,
    /// SHA-256 of the whole plaintext file.
    pub sha256: [u8; 32],
    /// The random key the chunks are sealed under.
    pub key: [u8; 32],
    /// When the sender sent it.
    pub ts: u64,
}

impl std::fmt::Debug for FileManifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileManifest")
            .field("file", &self.file)
            .field("name", &self.name)
            .field("size", &self.size)
            .field("chunk_size", &self.chunk_size)
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

impl Drop for FileManifest {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

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
    /// `type: "receipt"`: the sender's device got (or the person read) these messages of the
    /// receiver's.
    Receipt {
        /// Delivered or read.
        state: ReceiptState,
        /// Which messages (1 to [`MAX_RECEIPT_IDS`]).
        ids: Vec<MessageId>,
        /// When.
        ts: u64,
    },
    /// `type: "typing"`: the sender is typing (or stopped). Sent only as an ephemeral `signal`,
    /// never queued.
    Typing {
        /// Typing now.
        typing: bool,
    },
    /// `type: "file"`: a file's manifest; its chunks follow as `file_chunk` messages.
    File(Box<FileManifest>),
    /// `type: "file_chunk"`: one sealed chunk of a file.
    FileChunk {
        /// The file.
        file: FileId,
        /// Which chunk, from 0.
        index: u32,
        /// The chunk sealed with the manifest's key ([`seal_chunk`]).
        data: Vec<u8>,
    },
    /// `type: "edit"`: replaces the text of an earlier message of the same sender.
    Edit {
        /// The message edited.
        of: MessageId,
        /// Its new text.
        body: String,
        /// When.
        ts: u64,
    },
    /// `type: "delete"`: withdraws an earlier message of the same sender.
    Delete {
        /// The message deleted.
        of: MessageId,
        /// When.
        ts: u64,
    },
    /// `type: "copy"`: a message this account sent to `to` from another of its devices, so
    /// every device shows both sides of the conversation.
    Copy {
        /// Whom the original went to.
        to: Uid,
        /// The original's message id.
        id: MessageId,
        /// The original's plaintext (any type but `copy`).
        msg: Box<Plaintext>,
    },
    /// `type: "group"`: a message to a group, sent to every member device (PROTOCOL.md §12.1).
    Group {
        /// The group.
        group: GroupId,
        /// The membership version the sender held when sending.
        version: u64,
        /// The message (one of [`GROUP_CONTENT`], or a type this implementation does not know).
        msg: Box<Plaintext>,
    },
    /// `type: "group_update"`: a new version of a group's membership, sent by the member who
    /// made it to every member device of the version before and of the new one.
    GroupUpdate(Box<GroupState>),
    /// `type: "group_sync"`: asks a member for the versions of a group after `have` (sent by
    /// a member who saw a gap).
    GroupSync {
        /// The group.
        group: GroupId,
        /// The version the asking member holds.
        have: u64,
    },
    /// A `type` this implementation does not know (a newer sender's).
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

#[derive(Serialize, Deserialize)]
struct TextWire {
    #[serde(rename = "type", skip_deserializing)]
    kind: &'static str,
    #[serde(with = "crate::strict::text")]
    body: String,
    ts: u64,
}

#[derive(Serialize, Deserialize)]
struct ReceiptWire {
    #[serde(rename = "type", skip_deserializing)]
    kind: &'static str,
    state: ReceiptState,
    ids: Vec<MessageId>,
    ts: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TypingState {
    Typing,
    Idle,
}

#[derive(Serialize, Deserialize)]
struct TypingWire {
    #[serde(rename = "type", skip_deserializing)]
    kind: &'static str,
    state: TypingState,
}

#[derive(Serialize, Deserialize)]
struct FileWire {
    #[serde(rename = "type", skip_deserializing)]
    kind: &'static str,
    file: FileId,
    #[serde(with = "crate::strict::text")]
    name: String,
    size: u64,
    chunk_size: u32,
    chunks: u32,
    #[serde(with = "crate::strict::fixed")]
    sha256: [u8; 32],
    #[serde(with = "crate::strict::fixed")]
    key: [u8; 32],
    ts: u64,
}

#[derive(Serialize, Deserialize)]
struct ChunkWire {
    #[serde(rename = "type", skip_deserializing)]
    kind: &'static str,
    file: FileId,
    index: u32,
    #[serde(with = "crate::strict::bytes")]
    data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct EditWire {
    #[serde(rename = "type", skip_deserializing)]
    kind: &'static str,
    of: MessageId,
    #[serde(with = "crate::strict::text")]
    body: String,
    ts: u64,
}

#[derive(Serialize, Deserialize)]
struct DeleteWire {
    #[serde(rename = "type", skip_deserializing)]
    kind: &'static str,
    of: MessageId,
    ts: u64,
}

#[derive(Serialize, Deserialize)]
struct CopyWire {
    #[serde(rename = "type", skip_deserializing)]
    kind: &'static str,
    to: Uid,
    id: MessageId,
    #[serde(with = "crate::strict::bytes")]
    msg: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct GroupWire {
    #[serde(rename = "type", skip_deserializing)]
    kind: &'static str,
    group: GroupId,
    version: u64,
    #[serde(with = "crate::strict::bytes")]
    msg: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct GroupUpdateWire {
    #[serde(rename = "type", skip_deserializing)]
    kind: &'static str,
    state: GroupState,
}

#[derive(Serialize, Deserialize)]
struct GroupSyncWire {
    #[serde(rename = "type", skip_deserializing)]
    kind: &'static str,
    group: GroupId,
    have: u64,
}

/// Where a plaintext sits: at the top of an envelope, or inside a `copy` or a `group`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Within {
    Envelope,
    Copy,
    Group,
}

#[derive(Serialize)]
struct KindOnly<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
}

/// Why a plaintext of a known type is refused although it parses.
fn invalid(what: impl Into<String>) -> DecodeError {
    DecodeError {
        kind: DecodeErrorKind::Malformed(what.into()),
        rid: None,
    }
}

impl Plaintext {
    /// Encodes the plaintext in Siren's CBOR profile, fields in the documented order
    /// (`type`, then the type's fields).
    pub fn encode(&self) -> Vec<u8> {
        use crate::message::encode_cbor;
        match self {
            Plaintext::Text { body, ts } => encode_cbor(&TextWire {
                kind: TEXT,
                body: body.clone(),
                ts: *ts,
            }),
            Plaintext::Receipt { state, ids, ts } => encode_cbor(&ReceiptWire {
                kind: RECEIPT,
                state: *state,
                ids: ids.clone(),
                ts: *ts,
            }),
            Plaintext::Typing { typing } => encode_cbor(&TypingWire {
                kind: TYPING,
                state: if *typing {
                    TypingState::Typing
                } else {
                    TypingState::Idle
                },
            }),
            Plaintext::File(m) => encode_cbor(&FileWire {
                kind: FILE,
                file: m.file,
                name: m.name.clone(),
                size: m.size,
                chunk_size: m.chunk_size,
                chunks: m.chunks,
                sha256: m.sha256,
                key: m.key,
                ts: m.ts,
            }),
            Plaintext::FileChunk { file, index, data } => encode_cbor(&ChunkWire {
                kind: FILE_CHUNK,
                file: *file,
                index: *index,
                data: data.clone(),
            }),
            Plaintext::Edit { of, body, ts } => encode_cbor(&EditWire {
                kind: EDIT,
                of: *of,
                body: body.clone(),
                ts: *ts,
            }),
            Plaintext::Delete { of, ts } => encode_cbor(&DeleteWire {
                kind: DELETE,
                of: *of,
                ts: *ts,
            }),
            Plaintext::Copy { to, id, msg } => encode_cbor(&CopyWire {
                kind: COPY,
                to: to.clone(),
                id: *id,
                msg: msg.encode(),
            }),
            Plaintext::Group {
                group,
                version,
                msg,
            } => encode_cbor(&GroupWire {
                kind: GROUP,
                group: *group,
                version: *version,
                msg: msg.encode(),
            }),
            Plaintext::GroupUpdate(state) => encode_cbor(&GroupUpdateWire {
                kind: GROUP_UPDATE,
                state: (**state).clone(),
            }),
            Plaintext::GroupSync { group, have } => encode_cbor(&GroupSyncWire {
                kind: GROUP_SYNC,
                group: *group,
                have: *have,
            }),
            Plaintext::Unsupported { kind } => encode_cbor(&KindOnly { kind }),
        }
    }

    /// Decodes an opened envelope's plaintext by the receiving rules above.
    pub fn decode(bytes: &[u8]) -> Result<Plaintext, DecodeError> {
        Self::decode_nested(bytes, Within::Envelope)
    }

    fn decode_nested(bytes: &[u8], within: Within) -> Result<Plaintext, DecodeError> {
        let malformed = |e: String| DecodeError {
            kind: DecodeErrorKind::Malformed(e),
            rid: None,
        };
        crate::message::check_profile(bytes).map_err(malformed)?;
        let Kind { kind } = crate::message::decode_checked(bytes).map_err(malformed)?;
        if within == Within::Group
            && TYPES.contains(&kind.as_str())
            && !GROUP_CONTENT.contains(&kind.as_str())
        {
            return Err(invalid(format!("a {kind} inside a group message")));
        }
        macro_rules! wire {
            ($t:ty) => {
                crate::message::decode_checked::<$t>(bytes).map_err(malformed)?
            };
        }
        Ok(match kind.as_str() {
            TEXT => {
                let w = wire!(TextWire);
                Plaintext::Text {
                    body: w.body,
                    ts: w.ts,
                }
            }
            RECEIPT => {
                let w = wire!(ReceiptWire);
                if w.ids.is_empty() || w.ids.len() > MAX_RECEIPT_IDS {
                    return Err(invalid(format!(
                        "a receipt names 1 to {MAX_RECEIPT_IDS} messages, not {}",
                        w.ids.len()
                    )));
                }
                Plaintext::Receipt {
                    state: w.state,
                    ids: w.ids,
                    ts: w.ts,
                }
            }
            TYPING => {
                let w = wire!(TypingWire);
                Plaintext::Typing {
                    typing: matches!(w.state, TypingState::Typing),
                }
            }
            FILE => {
                let w = wire!(FileWire);
                let m = FileManifest {
                    file: w.file,
                    name: w.name,
                    size: w.size,
                    chunk_size: w.chunk_size,
                    chunks: w.chunks,
                    sha256: w.sha256,
                    key: w.key,
                    ts: w.ts,
                };
                m.check()?;
                Plaintext::File(Box::new(m))
            }
            FILE_CHUNK => {
                let w = wire!(ChunkWire);
                if w.data.len() > MAX_CHUNK_SIZE as usize + crypto::TAG_LEN {
                    return Err(invalid("a file chunk is larger than a chunk can be"));
                }
                Plaintext::FileChunk {
                    file: w.file,
                    index: w.index,
                    data: w.data,
                }
            }
            EDIT => {
                let w = wire!(EditWire);
                Plaintext::Edit {
                    of: w.of,
                    body: w.body,
                    ts: w.ts,
                }
            }
            DELETE => {
                let w = wire!(DeleteWire);
                Plaintext::Delete { of: w.of, ts: w.ts }
            }
            COPY if within == Within::Envelope => {
                let w = wire!(CopyWire);
                let inner = Plaintext::decode_nested(&w.msg, Within::Copy)?;
                Plaintext::Copy {
                    to: w.to,
                    id: w.id,
                    msg: Box::new(inner),
                }
            }
            COPY => return Err(invalid("a copy inside a copy")),
            GROUP => {
                let w = wire!(GroupWire);
                let inner = Plaintext::decode_nested(&w.msg, Within::Group)?;
                Plaintext::Group {
                    group: w.group,
                    version: w.version,
                    msg: Box::new(inner),
                }
            }
            GROUP_UPDATE => {
                let w = wire!(GroupUpdateWire);
                Plaintext::GroupUpdate(Box::new(w.state))
            }
            GROUP_SYNC => {
                let w = wire!(GroupSyncWire);
                Plaintext::GroupSync {
                    group: w.group,
                    have: w.have,
                }
            }
            _ => Plaintext::Unsupported { kind },
        })
    }

    /// The `type` name (for an unsupported one, the name it carried).
    pub fn kind(&self) -> &str {
        match self {
            Plaintext::Text { .. } => TEXT,
            Plaintext::Receipt { .. } => RECEIPT,
            Plaintext::Typing { .. } => TYPING,
            Plaintext::File(_) => FILE,
            Plaintext::FileChunk { .. } => FILE_CHUNK,
            Plaintext::Edit { .. } => EDIT,
            Plaintext::Delete { .. } => DELETE,
            Plaintext::Copy { .. } => COPY,
            Plaintext::Group { .. } => GROUP,
            Plaintext::GroupUpdate(_) => GROUP_UPDATE,
            Plaintext::GroupSync { .. } => GROUP_SYNC,
            Plaintext::Unsupported { kind } => kind,
        }
    }
}

impl FileManifest {
    /// The manifest's own consistency: name, size, chunking.
    fn check(&self) -> Result<(), DecodeError> {
        if self.name.is_empty() || self.name.len() > MAX_FILE_NAME {
            return Err(invalid(format!(
                "a file name has 1 to {MAX_FILE_NAME} bytes"
            )));
        }
        if self.size > MAX_FILE_SIZE {
            return Err(invalid(format!(
                "a file of {} bytes is larger than {MAX_FILE_SIZE}",
                self.size
            )));
        }
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(invalid(format!(
                "a chunk size is 1 to {MAX_CHUNK_SIZE} bytes"
            )));
        }
        if u64::from(self.chunks) != self.size.div_ceil(u64::from(self.chunk_size)) {
            return Err(invalid("the chunk count does not match the size"));
        }
        Ok(())
    }

    /// Plaintext bytes of chunk `index` (the last one may be short).
    pub fn chunk_len(&self, index: u32) -> u64 {
        let start = u64::from(index) * u64::from(self.chunk_size);
        self.size
            .saturating_sub(start)
            .min(u64::from(self.chunk_size))
    }
}

/// The nonce of chunk `index`: 16 zero bytes, then the index as a big-endian u64. Unique per
/// chunk under a key that seals one file only.
fn chunk_nonce(index: u32) -> [u8; crypto::NONCE_LEN] {
    let mut nonce = [0u8; crypto::NONCE_LEN];
    nonce[16..].copy_from_slice(&u64::from(index).to_be_bytes());
    nonce
}

/// Seals chunk `index` of a file under the file's key (XSalsa20-Poly1305; tag then ciphertext).
pub fn seal_chunk(key: &[u8; 32], index: u32, plaintext: &[u8]) -> Vec<u8> {
    crypto::seal(key, &chunk_nonce(index), plaintext)
}

/// Opens chunk `index`; `None` if it was altered, belongs to another index or another key.
pub fn open_chunk(key: &[u8; 32], index: u32, sealed: &[u8]) -> Option<Vec<u8>> {
    crypto::open(key, &chunk_nonce(index), sealed).ok()
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
        let sticker = cbor(vec![
            ("type", Value::Text("sticker".into())),
            ("pack", Value::Array(vec![])),
        ]);
        assert_eq!(
            Plaintext::decode(&sticker).unwrap(),
            Plaintext::Unsupported {
                kind: "sticker".into()
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

    fn every_kind() -> Vec<Plaintext> {
        let id = MessageId::from_bytes([3; 16]);
        let file = FileId::from_bytes([4; 16]);
        let key = [9u8; 32];
        vec![
            Plaintext::Text {
                body: "hi".into(),
                ts: 7,
            },
            Plaintext::Receipt {
                state: ReceiptState::Read,
                ids: vec![id],
                ts: 8,
            },
            Plaintext::Typing { typing: true },
            Plaintext::Typing { typing: false },
            Plaintext::File(Box::new(FileManifest {
                file,
                name: "notes.txt".into(),
                size: 600_000,
                chunk_size: MAX_CHUNK_SIZE,
                chunks: 3,
                sha256: [1; 32],
                key,
                ts: 9,
            })),
            Plaintext::FileChunk {
                file,
                index: 2,
                data: seal_chunk(&key, 2, b"tail"),
            },
            Plaintext::Edit {
                of: id,
                body: "hello".into(),
                ts: 10,
            },
            Plaintext::Delete { of: id, ts: 11 },
            Plaintext::Copy {
                to: Uid::parse("bob@beta.test").unwrap(),
                id,
                msg: Box::new(Plaintext::Text {
                    body: "sent from my phone".into(),
                    ts: 12,
                }),
            },
            Plaintext::Group {
                group: GroupId::from_bytes([5; 16]),
                version: 3,
                msg: Box::new(Plaintext::Text {
                    body: "hello all".into(),
                    ts: 13,
                }),
            },
            Plaintext::GroupUpdate(Box::new(group_state())),
            Plaintext::GroupSync {
                group: GroupId::from_bytes([5; 16]),
                have: 2,
            },
        ]
    }

    fn group_state() -> GroupState {
        let alice = Uid::parse("alice@alpha.test").unwrap();
        GroupState::create(
            &crate::keys::UskSecret::from_bytes(&[1; 32]),
            alice.clone(),
            GroupId::from_bytes([5; 16]),
            14,
            crate::group::Membership {
                title: "lunch".into(),
                members: vec![alice.clone(), Uid::parse("bob@beta.test").unwrap()],
                admins: vec![alice],
            },
        )
        .unwrap()
    }

    /// A group message carries a message people see (or a type this client does not know);
    /// nothing that steers the client — receipts, typing, copies, group changes — rides in it.
    #[test]
    fn group_messages_carry_messages_only() {
        let group = |msg| Plaintext::Group {
            group: GroupId::from_bytes([5; 16]),
            version: 1,
            msg: Box::new(msg),
        };
        for inside in every_kind()
            .into_iter()
            .filter(|p| !GROUP_CONTENT.contains(&p.kind()))
        {
            let kind = inside.kind().to_owned();
            let refused = Plaintext::decode(&group(inside).encode());
            assert!(refused.is_err(), "a {kind} inside a group: {refused:?}");
        }
        let unknown = group(Plaintext::Unsupported {
            kind: "poll".into(),
        });
        assert_eq!(Plaintext::decode(&unknown.encode()).unwrap(), unknown);
    }

    #[test]
    fn every_kind_round_trips_and_names_its_type_first() {
        for p in every_kind() {
            let bytes = p.encode();
            assert_eq!(Plaintext::decode(&bytes).unwrap(), p, "{}", p.kind());
            let v: Value = ciborium::from_reader(&bytes[..]).unwrap();
            let first = v.as_map().unwrap().first().unwrap();
            assert_eq!(first.0.as_text(), Some("type"));
            assert_eq!(first.1.as_text(), Some(p.kind()));
            assert!(TYPES.contains(&p.kind()));
        }
    }

    #[test]
    fn manifests_that_do_not_add_up_are_refused() {
        let base = FileManifest {
            file: FileId::from_bytes([4; 16]),
            name: "a".into(),
            size: 10,
            chunk_size: 4,
            chunks: 3,
            sha256: [0; 32],
            key: [0; 32],
            ts: 0,
        };
        assert!(base.check().is_ok());
        let bad = |edit: &dyn Fn(&mut FileManifest)| {
            let mut m = base.clone();
            edit(&mut m);
            let bytes = Plaintext::File(Box::new(m)).encode();
            assert!(Plaintext::decode(&bytes).is_err());
        };
        bad(&|m| m.size = 10 << 30); // ten GiB
        bad(&|m| m.chunks = 2);
        bad(&|m| m.chunk_size = 0);
        bad(&|m| m.chunk_size = MAX_CHUNK_SIZE + 1);
        bad(&|m| m.name = String::new());
        bad(&|m| m.name = "x".repeat(MAX_FILE_NAME + 1));
        assert_eq!(base.chunk_len(2), 2);
        assert_eq!(base.chunk_len(0), 4);
    }

    #[test]
    fn receipts_name_some_messages_and_copies_do_not_nest() {
        let empty = Plaintext::Receipt {
            state: ReceiptState::Delivered,
            ids: Vec::new(),
            ts: 0,
        };
        assert!(Plaintext::decode(&empty.encode()).is_err());
        let copy = |msg| Plaintext::Copy {
            to: Uid::parse("bob@beta.test").unwrap(),
            id: MessageId::from_bytes([1; 16]),
            msg: Box::new(msg),
        };
        let nested = copy(copy(Plaintext::Typing { typing: true }));
        assert!(Plaintext::decode(&nested.encode()).is_err());
    }

    #[test]
    fn chunks_open_only_under_their_key_and_index() {
        let key = [5u8; 32];
        let sealed = seal_chunk(&key, 1, b"chunk one");
        assert_eq!(
            open_chunk(&key, 1, &sealed).as_deref(),
            Some(&b"chunk one"[..])
        );
        assert_eq!(open_chunk(&key, 2, &sealed), None);
        assert_eq!(open_chunk(&[6u8; 32], 1, &sealed), None);
        let mut altered = sealed.clone();
        altered[20] ^= 1;
        assert_eq!(open_chunk(&key, 1, &altered), None);
    }
}
