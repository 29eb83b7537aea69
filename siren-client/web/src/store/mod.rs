//! What the page keeps for its device — the session's [`Store`], the account it belongs to and
//! the conversations' history (the chat driver's [`History`]) — in IndexedDB, sealed under a key only the passphrase opens
//! ([`sealed`] says how; [`idb`] is the database). Nothing is written in clear but the lock
//! (a salt and the sealed store key).

pub mod idb;
pub mod sealed;

use std::collections::VecDeque;
use std::rc::Rc;

use anyhow::{Context as _, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use siren_api::Uid;
use siren_client_core::model::{Chat, ChatMessage};
use siren_client_session::chat::History;
use siren_client_session::groups::GroupRecord;
use siren_client_session::store::{ContactState, RosterSeen, Secrets, SeenRequest, Store};
use siren_proto::ids::{GroupId, MessageId};
use siren_proto::keys::SekPublic;

use idb::Idb;
use sealed::{LOCK_KEY, Lock, Sealer};

/// Which account the stored device belongs to (sealed, like everything else).
#[derive(Clone, Serialize, Deserialize)]
pub struct Account {
    /// The account.
    pub uid: Uid,
    /// The server's key, pinned when the device was created (base64).
    pub sek: String,
}

impl Account {
    /// The pinned server key.
    pub fn sek(&self) -> anyhow::Result<SekPublic> {
        SekPublic::from_base64(&self.sek).context("the stored server key")
    }
}

/// One conversation of the history, as the `peers` record lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PeerEntry {
    /// The user (written before groups: always there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer: Option<Uid>,
    /// The group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<GroupId>,
    /// How many messages it holds.
    count: u64,
    /// When its newest message was recorded.
    last_at: u64,
}

impl PeerEntry {
    fn chat(&self) -> Option<Chat> {
        Chat::from_parts(self.peer.as_ref(), self.group)
    }
}

/// The database and the keys that seal its records (shared by the store and the history).
#[derive(Clone)]
struct Records {
    db: Idb,
    sealer: Rc<Sealer>,
}

impl Records {
    /// The record at database key `key`, opened (`what` names it in errors).
    async fn read<T: DeserializeOwned>(&self, key: &str, what: &str) -> anyhow::Result<Option<T>> {
        match self.db.get(key).await? {
            None => Ok(None),
            Some(bytes) => Ok(Some(self.sealer.open(key, &bytes, what)?)),
        }
    }

    /// `value` sealed for database key `key`, ready for [`Idb::put`].
    fn entry<T: Serialize + ?Sized>(
        &self,
        key: String,
        value: &T,
    ) -> anyhow::Result<(String, Vec<u8>)> {
        let sealed = self.sealer.seal(&key, value, &mut siren_proto::os_rng())?;
        Ok((key, sealed))
    }
}

/// The page's device store, unlocked.
pub struct DeviceStore {
    records: Records,
}

/// The history, in the same database under the same key ([`sealed`] gives its layout).
pub struct WebHistory {
    records: Records,
}

const ACCOUNT: &str = "account";
const SECRETS: &str = "secrets";
const ROSTER_SEEN: &str = "roster_seen";
const APPROVAL_REQUESTS: &str = "approval_requests";
const SEEN: &str = "seen";
const PEERS: &str = "peers";
const GROUPS: &str = "groups";

fn contact_name(uid: &Uid) -> String {
    format!("contact/{uid}")
}

fn group_name(id: &GroupId) -> String {
    format!("group/{}", id.to_hex())
}

impl DeviceStore {
    /// Whether this browser already holds a device.
    pub async fn exists() -> anyhow::Result<bool> {
        Ok(Idb::open().await?.get(LOCK_KEY).await?.is_some())
    }

    /// Creates the store of a new device of `account`, locked with `passphrase`. Refused if
    /// this browser already holds a device (one per browser profile).
    pub async fn create(passphrase: &str, account: &Account) -> anyhow::Result<DeviceStore> {
        if passphrase.is_empty() {
            bail!("choose a passphrase: it protects this device's keys and history here");
        }
        let db = Idb::open().await?;
        if db.get(LOCK_KEY).await?.is_some() {
            bail!("this browser already holds a Siren device: unlock it, or remove it first");
        }
        let (sealer, lock) = Sealer::create(passphrase, &mut siren_proto::os_rng())?;
        let store = DeviceStore {
            records: Records {
                db,
                sealer: Rc::new(sealer),
            },
        };
        let mut secrets = Secrets::default();
        let _ = secrets.history_seed();
        // One transaction: the lock never exists without the account and keys it opens.
        let entries = vec![
            (LOCK_KEY.to_owned(), lock.to_bytes()?),
            store.sealed(ACCOUNT, account)?,
            store.sealed(SECRETS, &secrets)?,
        ];
        store.records.db.put(&entries).await?;
        Ok(store)
    }

    /// Unlocks this browser's device with `passphrase`: the store, and whose device it is.
    pub async fn unlock(passphrase: &str) -> anyhow::Result<(DeviceStore, Account)> {
        let db = Idb::open().await?;
        let Some(lock) = db.get(LOCK_KEY).await? else {
            bail!("this browser holds no Siren device yet");
        };
        let sealer = Sealer::unlock(&Lock::from_bytes(&lock)?, passphrase)?;
        let store = DeviceStore {
            records: Records {
                db,
                sealer: Rc::new(sealer),
            },
        };
        let account = store
            .get(ACCOUNT)
            .await?
            .context("the stored device names no account")?;
        Ok((store, account))
    }

    /// The history kept beside the device's records.
    pub fn history(&self) -> WebHistory {
        WebHistory {
            records: self.records.clone(),
        }
    }

    fn sealed<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> anyhow::Result<(String, Vec<u8>)> {
        self.records.entry(self.records.sealer.key(name), value)
    }

    async fn get<T: DeserializeOwned>(&self, name: &str) -> anyhow::Result<Option<T>> {
        self.records
            .read(&self.records.sealer.key(name), name)
            .await
    }

    async fn put<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> anyhow::Result<()> {
        let entry = self.sealed(name, value)?;
        Ok(self.records.db.put(&[entry]).await?)
    }
}

impl WebHistory {
    async fn peer_entries(&self) -> anyhow::Result<Vec<PeerEntry>> {
        Ok(self
            .records
            .read(&self.records.sealer.key(PEERS), "conversation list")
            .await?
            .unwrap_or_default())
    }
}

impl History for WebHistory {
    /// A later state of a message replaces its record in place (the `at` first recorded is
    /// kept, so a conversation is never reordered); the record, when it was recorded and the
    /// conversation list go in one transaction.
    async fn store(&mut self, msg: &ChatMessage) -> anyhow::Result<()> {
        let r = &self.records;
        let chat = msg.chat();
        let recorded_key = r.sealer.recorded_key(&chat, &msg.id);
        let first_at: Option<u64> = r.read(&recorded_key, "history").await?;
        let mut record = msg.clone();
        let mut entries = Vec::new();
        match first_at {
            Some(at) => record.at = at,
            None => {
                let mut peers = self.peer_entries().await?;
                match peers.iter_mut().find(|p| p.chat().as_ref() == Some(&chat)) {
                    Some(entry) => {
                        entry.count = entry.count.saturating_add(1);
                        entry.last_at = entry.last_at.max(msg.at);
                    }
                    None => peers.push(PeerEntry {
                        peer: chat.user().cloned(),
                        group: chat.group().copied(),
                        count: 1,
                        last_at: msg.at,
                    }),
                }
                entries.push(r.entry(recorded_key, &msg.at)?);
                entries.push(r.entry(r.sealer.key(PEERS), &peers)?);
            }
        }
        let key = r.sealer.message_key(&chat, record.at, &record.id);
        entries.push(r.entry(key, &record)?);
        Ok(r.db.put(&entries).await?)
    }

    async fn page(
        &self,
        chat: &Chat,
        before: Option<&ChatMessage>,
        limit: usize,
    ) -> anyhow::Result<(Vec<ChatMessage>, bool)> {
        let r = &self.records;
        let lower = r.sealer.message_prefix(chat);
        let upper = match before {
            Some(b) => r.sealer.message_key(chat, b.at, &b.id),
            // Past every message of the conversation (hex digits and '/' sort below '~').
            None => format!("{lower}~"),
        };
        let keys = r.db.keys(&lower, &upper).await?;
        let more = keys.len() > limit;
        let Some(first) = keys
            .len()
            .checked_sub(limit)
            .and_then(|i| keys.get(i))
            .or(keys.first())
        else {
            return Ok((Vec::new(), false));
        };
        let mut msgs = Vec::new();
        for (key, sealed) in r.db.entries(first, &upper).await? {
            let msg: ChatMessage = r.sealer.open(&key, &sealed, "history")?;
            if msg.chat() != *chat {
                anyhow::bail!(
                    "the stored history is damaged: a message under another conversation"
                );
            }
            msgs.push(msg);
        }
        Ok((msgs, more))
    }

    async fn chats(&self) -> anyhow::Result<Vec<Chat>> {
        let mut peers = self.peer_entries().await?;
        peers.sort_by_key(|p| std::cmp::Reverse(p.last_at));
        Ok(peers.iter().filter_map(PeerEntry::chat).collect())
    }
}

impl Store for DeviceStore {
    async fn secrets(&self) -> anyhow::Result<Secrets> {
        Ok(self.get(SECRETS).await?.unwrap_or_default())
    }
    async fn save_secrets(&mut self, secrets: &Secrets) -> anyhow::Result<()> {
        self.put(SECRETS, secrets).await
    }
    async fn contact(&self, uid: &Uid) -> anyhow::Result<ContactState> {
        Ok(self.get(&contact_name(uid)).await?.unwrap_or_default())
    }
    async fn save_contact(&mut self, uid: &Uid, state: &ContactState) -> anyhow::Result<()> {
        self.put(&contact_name(uid), state).await
    }
    async fn roster_seen(&self) -> anyhow::Result<Option<RosterSeen>> {
        self.get(ROSTER_SEEN).await
    }
    async fn save_roster_seen(&mut self, seen: &RosterSeen) -> anyhow::Result<()> {
        self.put(ROSTER_SEEN, seen).await
    }
    async fn approval_requests(&self) -> anyhow::Result<Vec<SeenRequest>> {
        Ok(self.get(APPROVAL_REQUESTS).await?.unwrap_or_default())
    }
    async fn save_approval_requests(&mut self, requests: &[SeenRequest]) -> anyhow::Result<()> {
        self.put(APPROVAL_REQUESTS, requests).await
    }
    async fn seen(&self) -> anyhow::Result<VecDeque<MessageId>> {
        Ok(self.get(SEEN).await?.unwrap_or_default())
    }
    async fn save_seen(&mut self, seen: &VecDeque<MessageId>) -> anyhow::Result<()> {
        self.put(SEEN, seen).await
    }
    async fn group(&self, id: &GroupId) -> anyhow::Result<Option<GroupRecord>> {
        self.get(&group_name(id)).await
    }
    /// The record, and the list of groups when it is a new one, in one transaction.
    async fn save_group(&mut self, id: &GroupId, record: &GroupRecord) -> anyhow::Result<()> {
        let mut entries = vec![self.sealed(&group_name(id), record)?];
        let mut groups = self.groups().await?;
        if !groups.contains(id) {
            groups.push(*id);
            entries.push(self.sealed(GROUPS, &groups)?);
        }
        Ok(self.records.db.put(&entries).await?)
    }
    async fn groups(&self) -> anyhow::Result<Vec<GroupId>> {
        Ok(self.get(GROUPS).await?.unwrap_or_default())
    }
}
