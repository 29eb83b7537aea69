//! The local message history: every conversation of this device, in `history.redb` in the
//! profile directory, sealed at rest.
//!
//! Records are the core's [`ChatMessage`]s, CBOR-encoded and sealed with XSalsa20-Poly1305
//! (a random nonce each) under a key derived from the profile's history seed ([`seal`]), so the
//! history is exactly as protected as the profile's other secrets: under the passphrase if the
//! profile has one, by the file permissions (0600 in a 0700 directory) if not.
//!
//! What the file shows without the key: how many conversations and how many messages each
//! holds, and when each message was recorded (`at`, in the keys, to keep the order). Peers and
//! message ids appear only as keyed hashes ([`seal::HistoryKeys::peer_tag`]), texts, names,
//! states and everything else only sealed. A record is checked against the key it is stored
//! under when it is opened, so records cannot be swapped between conversations unnoticed.
//!
//! Tables (keys in clear, values sealed):
//!
//! ```text
//! messages  chat tag (16) ‖ at (8, big-endian) ‖ id tag (16)  →  sealed ChatMessage
//! ids       chat tag (16) ‖ id tag (16)                       →  at (to upsert in place)
//! peers     chat tag (16)                                     →  sealed (peer or group, count)
//! ```
//!
//! A conversation's tag is [`seal::HistoryKeys::chat_tag`]: with a user, the keyed hash of their
//! id; in a group, the keyed hash of the group's id (apart from any user's).
//!
//! ```text
//! meta      "check"                                           →  sealed constant (wrong key?)
//! ```
//!
//! Search decrypts and scans (a keyed word index would show which messages share words).

mod record;
pub mod seal;
#[cfg(test)]
mod tests;

use std::fs;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use redb::{Database, ReadableTable, ReadableTableMetadata as _, TableDefinition};
use serde::{Deserialize, Serialize};
use siren_api::Uid;
use siren_client_core::model::{Body, Chat, ChatMessage};
use siren_proto::ids::{GroupId, MessageId};
use siren_proto::message;

use crate::profile::Profile;
use seal::{HistoryKeys, TAG_LEN, Tag};

/// The history file's name in the profile directory.
pub const FILE_NAME: &str = "history.redb";

const MESSAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("messages");
const IDS: TableDefinition<&[u8], u64> = TableDefinition::new("ids");
const PEERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("peers");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Sealed under the history key in `meta`, to tell a wrong key from damaged records.
const CHECK: &[u8] = b"siren/v1/history-check";

const MESSAGE_KEY_LEN: usize = TAG_LEN + 8 + TAG_LEN;

/// What can go wrong with the history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The store itself failed (I/O, a damaged file, opened by another process).
    #[error("history store: {0}")]
    Store(Box<redb::Error>),
    /// The file was sealed under another key than this profile's.
    #[error(
        "the history file was sealed under another key than this profile's (was the keys file replaced?)"
    )]
    WrongKey,
    /// One record cannot be read.
    #[error("history record {record} is damaged: {why}")]
    Damaged {
        /// Which record (its table and key, in hex).
        record: String,
        /// What is wrong with it.
        why: String,
    },
    /// A search without any word.
    #[error("nothing to search for: give at least one word")]
    NoWords,
}

fn store_err(e: impl Into<redb::Error>) -> HistoryError {
    HistoryError::Store(Box::new(e.into()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `peers` holds for each conversation: the user, or the group (written before groups,
/// only the user).
#[derive(Serialize, Deserialize)]
struct PeerEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer: Option<Uid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<GroupId>,
    count: u64,
}

impl PeerEntry {
    fn chat(&self) -> Option<Chat> {
        Chat::from_parts(self.peer.as_ref(), self.group)
    }
}

/// An open history (one process at a time: redb locks the file).
pub struct History {
    db: Database,
    keys: HistoryKeys,
}

/// A conversation, as [`History::conversations`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationEntry {
    /// With whom, or which group.
    pub chat: Chat,
    /// Its newest message.
    pub last: ChatMessage,
    /// How many messages it holds.
    pub count: usize,
}

impl History {
    /// Opens the profile's history (creating it if missing). Reads the profile's secrets for
    /// the history seed, creating and saving one if this profile predates history.
    ///
    /// A running [`crate::client::Client`] owns its profile; use
    /// [`crate::client::Client::history`] there.
    pub fn open(profile: &Profile) -> anyhow::Result<History> {
        let mut secrets = profile.secrets()?;
        let (seed, created) = secrets.history_seed();
        if created {
            profile.save_secrets(&secrets)?;
        }
        Ok(History::open_in(profile.dir(), &seed)?)
    }

    /// Opens (or creates) `history.redb` in `dir` under the key derived from `seed`.
    pub(crate) fn open_in(dir: &Path, seed: &[u8; 32]) -> Result<History, HistoryError> {
        let path = dir.join(FILE_NAME);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| store_err(redb::StorageError::Io(e)))?;
        let db = redb::Builder::new().create_file(file).map_err(store_err)?;
        let history = History {
            db,
            keys: HistoryKeys::derive(seed),
        };
        history.init()?;
        Ok(history)
    }

    /// Creates the tables and the key check, or verifies the check.
    fn init(&self) -> Result<(), HistoryError> {
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            txn.open_table(MESSAGES).map_err(store_err)?;
            txn.open_table(IDS).map_err(store_err)?;
            txn.open_table(PEERS).map_err(store_err)?;
            let mut meta = txn.open_table(META).map_err(store_err)?;
            let existing = meta
                .get("check")
                .map_err(store_err)?
                .map(|v| v.value().to_vec());
            match existing {
                Some(sealed) => match self.keys.open(&sealed) {
                    Ok(plain) if plain.as_slice() == CHECK => {}
                    _ => return Err(HistoryError::WrongKey),
                },
                None => {
                    meta.insert(
                        "check",
                        self.keys.seal(CHECK, &mut siren_proto::os_rng()).as_slice(),
                    )
                    .map_err(store_err)?;
                }
            }
        }
        txn.commit().map_err(store_err)?;
        Ok(())
    }

    fn message_key(&self, peer: &Tag, at: u64, id: &Tag) -> [u8; MESSAGE_KEY_LEN] {
        let mut key = [0u8; MESSAGE_KEY_LEN];
        key[..TAG_LEN].copy_from_slice(peer);
        key[TAG_LEN..TAG_LEN + 8].copy_from_slice(&at.to_be_bytes());
        key[TAG_LEN + 8..].copy_from_slice(id);
        key
    }

    /// Opens one `messages` record and checks that it belongs under its key.
    fn open_message(&self, key: &[u8], sealed: &[u8]) -> Result<ChatMessage, HistoryError> {
        let damaged = |why: &str| HistoryError::Damaged {
            record: format!("messages/{}", hex(key)),
            why: why.to_owned(),
        };
        let plain = self
            .keys
            .open(sealed)
            .map_err(|_| damaged("it does not open under this profile's key"))?;
        let msg: ChatMessage = message::decode_value(&plain)
            .map_err(|e| damaged(&format!("not a message record: {e}")))?;
        let expected = self.message_key(
            &self.keys.chat_tag(&msg.chat()),
            msg.at,
            &self.keys.id_tag(&msg.id),
        );
        if key != expected.as_slice() {
            return Err(damaged("it is stored under another message's key"));
        }
        Ok(msg)
    }

    fn open_peer(&self, key: &[u8], sealed: &[u8]) -> Result<(Chat, u64), HistoryError> {
        let damaged = |why: &str| HistoryError::Damaged {
            record: format!("peers/{}", hex(key)),
            why: why.to_owned(),
        };
        let plain = self
            .keys
            .open(sealed)
            .map_err(|_| damaged("it does not open under this profile's key"))?;
        let entry: PeerEntry = message::decode_value(&plain)
            .map_err(|e| damaged(&format!("not a conversation record: {e}")))?;
        let chat = entry
            .chat()
            .ok_or_else(|| damaged("it names no conversation"))?;
        if key != self.keys.chat_tag(&chat).as_slice() {
            return Err(damaged("it is stored under another conversation's key"));
        }
        Ok((chat, entry.count))
    }

    /// Stores a message, or replaces the stored record of the same (peer, id): a later state
    /// (delivered, read, edited, deleted) replaces the earlier one in place, keeping the `at`
    /// first recorded (so the conversation is never reordered).
    pub fn store(&mut self, msg: &ChatMessage) -> Result<(), HistoryError> {
        self.store_all(std::slice::from_ref(msg))
    }

    /// [`History::store`] for several messages, in one transaction (one disk sync).
    pub fn store_all<'m>(
        &mut self,
        msgs: impl IntoIterator<Item = &'m ChatMessage>,
    ) -> Result<(), HistoryError> {
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut messages = txn.open_table(MESSAGES).map_err(store_err)?;
            let mut ids = txn.open_table(IDS).map_err(store_err)?;
            let mut peers = txn.open_table(PEERS).map_err(store_err)?;
            for msg in msgs {
                let chat = msg.chat();
                let peer = self.keys.chat_tag(&chat);
                let id = self.keys.id_tag(&msg.id);
                let mut id_key = [0u8; 2 * TAG_LEN];
                id_key[..TAG_LEN].copy_from_slice(&peer);
                id_key[TAG_LEN..].copy_from_slice(&id);
                let first_at = ids
                    .get(id_key.as_slice())
                    .map_err(store_err)?
                    .map(|v| v.value());
                let mut record = msg.clone();
                if let Some(at) = first_at {
                    record.at = at;
                } else {
                    ids.insert(id_key.as_slice(), msg.at).map_err(store_err)?;
                    let existing = peers
                        .get(peer.as_slice())
                        .map_err(store_err)?
                        .map(|v| v.value().to_vec());
                    let count = match existing {
                        Some(sealed) => self.open_peer(&peer, &sealed)?.1,
                        None => 0,
                    };
                    let entry = PeerEntry {
                        peer: chat.user().cloned(),
                        group: chat.group().copied(),
                        count: count.saturating_add(1),
                    };
                    let sealed = self
                        .keys
                        .seal(&message::encode_value(&entry), &mut siren_proto::os_rng());
                    peers
                        .insert(peer.as_slice(), sealed.as_slice())
                        .map_err(store_err)?;
                }
                let key = self.message_key(&peer, record.at, &id);
                let plain = zeroize::Zeroizing::new(message::encode_value(&record));
                let sealed = self.keys.seal(&plain, &mut siren_proto::os_rng());
                messages
                    .insert(key.as_slice(), sealed.as_slice())
                    .map_err(store_err)?;
            }
        }
        txn.commit().map_err(store_err)?;
        Ok(())
    }

    /// The stored record of message `id` of conversation `chat`, if any.
    pub fn get(&self, chat: &Chat, id: &MessageId) -> Result<Option<ChatMessage>, HistoryError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let ids = txn.open_table(IDS).map_err(store_err)?;
        let messages = txn.open_table(MESSAGES).map_err(store_err)?;
        let peer_tag = self.keys.chat_tag(chat);
        let id_tag = self.keys.id_tag(id);
        let mut id_key = [0u8; 2 * TAG_LEN];
        id_key[..TAG_LEN].copy_from_slice(&peer_tag);
        id_key[TAG_LEN..].copy_from_slice(&id_tag);
        let Some(at) = ids
            .get(id_key.as_slice())
            .map_err(store_err)?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let key = self.message_key(&peer_tag, at, &id_tag);
        match messages.get(key.as_slice()).map_err(store_err)? {
            Some(sealed) => self.open_message(&key, sealed.value()).map(Some),
            None => Err(HistoryError::Damaged {
                record: format!("ids/{}", hex(&id_key)),
                why: "its message record is missing".into(),
            }),
        }
    }

    /// A page of conversation `chat`: the `limit` messages just before `before` (the newest if
    /// `None`), oldest first, ordered by `at` then id; and whether older ones remain.
    pub fn page(
        &self,
        chat: &Chat,
        before: Option<&ChatMessage>,
        limit: usize,
    ) -> Result<(Vec<ChatMessage>, bool), HistoryError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let messages = txn.open_table(MESSAGES).map_err(store_err)?;
        let tag = self.keys.chat_tag(chat);
        let low = self.message_key(&tag, 0, &[0; TAG_LEN]);
        let high = match before {
            Some(b) => self.message_key(&tag, b.at, &[0xff; TAG_LEN]),
            None => self.message_key(&tag, u64::MAX, &[0xff; TAG_LEN]),
        };
        // Keys order by `at` then the id's keyed hash; the page orders by `at` then the id, so
        // messages recorded in the same millisecond as the page's edge are all read and sorted.
        let mut got: Vec<ChatMessage> = Vec::new();
        for entry in messages
            .range(low.as_slice()..=high.as_slice())
            .map_err(store_err)?
            .rev()
        {
            let (key, sealed) = entry.map_err(store_err)?;
            let msg = self.open_message(key.value(), sealed.value())?;
            if let Some(b) = before
                && (msg.at, msg.id) >= (b.at, b.id)
            {
                continue;
            }
            if got.len() > limit && got.last().is_some_and(|last| msg.at < last.at) {
                break;
            }
            got.push(msg);
        }
        got.sort_by_key(|m| (m.at, m.id));
        let more = got.len() > limit;
        let excess = got.len().saturating_sub(limit);
        got.drain(..excess);
        Ok((got, more))
    }

    /// Every conversation with its newest message and its message count, the most recent
    /// first.
    pub fn conversations(&self) -> Result<Vec<ConversationEntry>, HistoryError> {
        let entries = {
            let txn = self.db.begin_read().map_err(store_err)?;
            let peers = txn.open_table(PEERS).map_err(store_err)?;
            let mut entries = Vec::new();
            for entry in peers.iter().map_err(store_err)? {
                let (key, sealed) = entry.map_err(store_err)?;
                entries.push(self.open_peer(key.value(), sealed.value())?);
            }
            entries
        };
        let mut out = Vec::with_capacity(entries.len());
        for (chat, count) in entries {
            let (mut last, _) = self.page(&chat, None, 1)?;
            let Some(last) = last.pop() else {
                return Err(HistoryError::Damaged {
                    record: format!("peers/{}", hex(&self.keys.chat_tag(&chat))),
                    why: "the conversation has no message records".into(),
                });
            };
            out.push(ConversationEntry {
                chat,
                last,
                count: usize::try_from(count).unwrap_or(usize::MAX),
            });
        }
        out.sort_by_key(|c| std::cmp::Reverse((c.last.at, c.last.id)));
        Ok(out)
    }

    /// Messages whose text (or file name) contains every word of `words`, ignoring case: the
    /// newest `limit`, oldest first; in conversation `chat`, or in all of them.
    pub fn search(
        &self,
        words: &str,
        chat: Option<&Chat>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, HistoryError> {
        let words: Vec<String> = words.split_whitespace().map(str::to_lowercase).collect();
        if words.is_empty() {
            return Err(HistoryError::NoWords);
        }
        let txn = self.db.begin_read().map_err(store_err)?;
        let messages = txn.open_table(MESSAGES).map_err(store_err)?;
        let range = match chat {
            Some(chat) => {
                let tag = self.keys.chat_tag(chat);
                let low = self.message_key(&tag, 0, &[0; TAG_LEN]);
                let high = self.message_key(&tag, u64::MAX, &[0xff; TAG_LEN]);
                messages
                    .range(low.as_slice()..=high.as_slice())
                    .map_err(store_err)?
            }
            None => messages.iter().map_err(store_err)?,
        };
        let mut found = Vec::new();
        for entry in range {
            let (key, sealed) = entry.map_err(store_err)?;
            let msg = self.open_message(key.value(), sealed.value())?;
            let text = match &msg.body {
                Body::Text(t) => t.to_lowercase(),
                Body::File { name, .. } => name.to_lowercase(),
                _ => continue,
            };
            if words.iter().all(|w| text.contains(w.as_str())) {
                found.push(msg);
            }
        }
        found.sort_by_key(|m| (m.at, m.id));
        let excess = found.len().saturating_sub(limit);
        found.drain(..excess);
        Ok(found)
    }

    /// How many messages the history holds (all conversations).
    pub fn len(&self) -> Result<u64, HistoryError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let messages = txn.open_table(MESSAGES).map_err(store_err)?;
        messages.len().map_err(store_err)
    }

    /// Whether the history holds no message.
    pub fn is_empty(&self) -> Result<bool, HistoryError> {
        Ok(self.len()? == 0)
    }
}
