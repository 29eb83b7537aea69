//! What the page keeps for its device — the session's [`Store`], the account it belongs to and
//! the conversations' history — in IndexedDB, sealed under a key only the passphrase opens
//! ([`sealed`] says how; [`idb`] is the database). Nothing is written in clear but the lock
//! (a salt and the sealed store key).

pub mod idb;
pub mod sealed;

use std::collections::VecDeque;

use anyhow::{Context as _, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use siren_api::Uid;
use siren_client_session::store::{ContactState, RosterSeen, Secrets, SeenRequest, Store};
use siren_proto::ids::MessageId;
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

/// One item of a conversation's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    /// Sent by this account (else received from the peer).
    pub outgoing: bool,
    /// The message id (hex).
    pub id: String,
    /// When it was sent or received (milliseconds since the Unix epoch, this device's clock).
    pub at: u64,
    /// The text.
    pub text: String,
}

/// One conversation in the list.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Conversation {
    /// With whom.
    pub peer: Uid,
    /// How many items its history holds.
    pub items: u64,
    /// How many received items are unread.
    pub unread: u64,
    /// When the last item was added (milliseconds since the Unix epoch).
    pub last_at: u64,
}

/// The page's device store, unlocked.
pub struct DeviceStore {
    db: Idb,
    sealer: Sealer,
}

const ACCOUNT: &str = "account";
const SECRETS: &str = "secrets";
const ROSTER_SEEN: &str = "roster_seen";
const APPROVAL_REQUESTS: &str = "approval_requests";
const SEEN: &str = "seen";
const CONVERSATIONS: &str = "conversations";

fn contact_name(uid: &Uid) -> String {
    format!("contact/{uid}")
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
        let store = DeviceStore { db, sealer };
        let mut secrets = Secrets::default();
        let _ = secrets.history_seed();
        // One transaction: the lock never exists without the account and keys it opens.
        let entries = vec![
            (LOCK_KEY.to_owned(), lock.to_bytes()?),
            store.sealed(ACCOUNT, account)?,
            store.sealed(SECRETS, &secrets)?,
        ];
        store.db.put(&entries).await?;
        Ok(store)
    }

    /// Unlocks this browser's device with `passphrase`: the store, and whose device it is.
    pub async fn unlock(passphrase: &str) -> anyhow::Result<(DeviceStore, Account)> {
        let db = Idb::open().await?;
        let Some(lock) = db.get(LOCK_KEY).await? else {
            bail!("this browser holds no Siren device yet");
        };
        let sealer = Sealer::unlock(&Lock::from_bytes(&lock)?, passphrase)?;
        let store = DeviceStore { db, sealer };
        let account = store
            .get(ACCOUNT)
            .await?
            .context("the stored device names no account")?;
        Ok((store, account))
    }

    /// Deletes this browser's device: its keys, what it verified and its history.
    pub async fn remove(self) -> anyhow::Result<()> {
        Ok(self.db.delete().await?)
    }

    fn sealed<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> anyhow::Result<(String, Vec<u8>)> {
        let key = self.sealer.key(name);
        let sealed = self.sealer.seal(&key, value, &mut siren_proto::os_rng())?;
        Ok((key, sealed))
    }

    async fn get<T: DeserializeOwned>(&self, name: &str) -> anyhow::Result<Option<T>> {
        let key = self.sealer.key(name);
        match self.db.get(&key).await? {
            None => Ok(None),
            Some(bytes) => Ok(Some(self.sealer.open(&key, &bytes, name)?)),
        }
    }

    async fn put<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> anyhow::Result<()> {
        let entry = self.sealed(name, value)?;
        Ok(self.db.put(&[entry]).await?)
    }

    /// The conversations, the most recent first.
    pub async fn conversations(&self) -> anyhow::Result<Vec<Conversation>> {
        let mut list: Vec<Conversation> = self.get(CONVERSATIONS).await?.unwrap_or_default();
        list.sort_by_key(|c| std::cmp::Reverse(c.last_at));
        Ok(list)
    }

    /// Adds `item` to the history of the conversation with `peer` (counted unread if received),
    /// on disk when it returns.
    pub async fn append(&self, peer: &Uid, item: &HistoryItem) -> anyhow::Result<()> {
        let mut list: Vec<Conversation> = self.get(CONVERSATIONS).await?.unwrap_or_default();
        let i = match list.iter().position(|c| c.peer == *peer) {
            Some(i) => i,
            None => {
                list.push(Conversation {
                    peer: peer.clone(),
                    items: 0,
                    unread: 0,
                    last_at: 0,
                });
                list.len() - 1
            }
        };
        let Some(conversation) = list.get_mut(i) else {
            bail!("the conversation list changed under us");
        };
        let key = self.sealer.history_key(peer, conversation.items);
        conversation.items += 1;
        conversation.last_at = conversation.last_at.max(item.at);
        if !item.outgoing {
            conversation.unread += 1;
        }
        let sealed = self.sealer.seal(&key, item, &mut siren_proto::os_rng())?;
        // The item and the list that counts it, in one transaction.
        let entries = vec![(key, sealed), self.sealed(CONVERSATIONS, &list)?];
        Ok(self.db.put(&entries).await?)
    }

    /// The history of the conversation with `peer`, oldest first.
    pub async fn history(&self, peer: &Uid) -> anyhow::Result<Vec<HistoryItem>> {
        let list: Vec<Conversation> = self.get(CONVERSATIONS).await?.unwrap_or_default();
        let Some(conversation) = list.iter().find(|c| c.peer == *peer) else {
            return Ok(Vec::new());
        };
        let sealed = self.db.range(&self.sealer.history_prefix(peer)).await?;
        // Items open only under their own keys: numbered from 0, in key order.
        sealed
            .iter()
            .zip(0..conversation.items)
            .map(|(bytes, n)| {
                let key = self.sealer.history_key(peer, n);
                Ok(self.sealer.open(&key, bytes, "history")?)
            })
            .collect()
    }

    /// Marks the conversation with `peer` read.
    pub async fn mark_read(&self, peer: &Uid) -> anyhow::Result<()> {
        let mut list: Vec<Conversation> = self.get(CONVERSATIONS).await?.unwrap_or_default();
        match list.iter_mut().find(|c| c.peer == *peer) {
            Some(c) if c.unread > 0 => c.unread = 0,
            _ => return Ok(()),
        }
        self.put(CONVERSATIONS, &list).await
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
}
