//! What the page keeps for its device, as the session's [`Store`].
//!
//! This step keeps it in the page's memory only: a reload forgets the device (it logs in as a
//! new one). The IndexedDB store sealed under the passphrase key (`siren_client_core::at_rest`)
//! replaces it; the records are already what that store will seal, CBOR-encoded.

use std::collections::{BTreeMap, VecDeque};

use anyhow::Context as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use siren_api::Uid;
use siren_client_session::store::{ContactState, RosterSeen, Secrets, SeenRequest, Store};
use siren_proto::ids::MessageId;
use zeroize::Zeroizing;

/// The device's records, in memory.
#[derive(Default)]
pub struct MemoryStore {
    records: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

impl MemoryStore {
    fn get<T: DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        self.records
            .get(key)
            .map(|bytes| ciborium::from_reader(bytes.as_slice()))
            .transpose()
            .with_context(|| format!("the stored {key} is damaged"))
    }

    fn put<T: Serialize + ?Sized>(&mut self, key: String, value: &T) -> anyhow::Result<()> {
        let mut bytes = Zeroizing::new(Vec::new());
        ciborium::into_writer(value, &mut *bytes)
            .with_context(|| format!("cannot encode {key}"))?;
        self.records.insert(key, bytes);
        Ok(())
    }
}

fn contact_key(uid: &Uid) -> String {
    format!("contact/{uid}")
}

impl Store for MemoryStore {
    async fn secrets(&self) -> anyhow::Result<Secrets> {
        Ok(self.get("secrets")?.unwrap_or_default())
    }
    async fn save_secrets(&mut self, secrets: &Secrets) -> anyhow::Result<()> {
        self.put("secrets".into(), secrets)
    }
    async fn contact(&self, uid: &Uid) -> anyhow::Result<ContactState> {
        Ok(self.get(&contact_key(uid))?.unwrap_or_default())
    }
    async fn save_contact(&mut self, uid: &Uid, state: &ContactState) -> anyhow::Result<()> {
        self.put(contact_key(uid), state)
    }
    async fn roster_seen(&self) -> anyhow::Result<Option<RosterSeen>> {
        self.get("roster_seen")
    }
    async fn save_roster_seen(&mut self, seen: &RosterSeen) -> anyhow::Result<()> {
        self.put("roster_seen".into(), seen)
    }
    async fn approval_requests(&self) -> anyhow::Result<Vec<SeenRequest>> {
        Ok(self.get("approval_requests")?.unwrap_or_default())
    }
    async fn save_approval_requests(&mut self, requests: &[SeenRequest]) -> anyhow::Result<()> {
        self.put("approval_requests".into(), requests)
    }
    async fn seen(&self) -> anyhow::Result<VecDeque<MessageId>> {
        Ok(self.get("seen")?.unwrap_or_default())
    }
    async fn save_seen(&mut self, seen: &VecDeque<MessageId>) -> anyhow::Result<()> {
        self.put("seen".into(), seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(fut: impl Future<Output = T>) -> T {
        futures_util::FutureExt::now_or_never(fut).expect("the memory store never waits")
    }

    #[test]
    fn records_round_trip() {
        let mut store = MemoryStore::default();
        let alice = Uid::parse("alice@alpha.test").unwrap();
        assert!(block_on(store.roster_seen()).unwrap().is_none());
        assert!(block_on(store.secrets()).unwrap().usk.is_none());

        let secrets = Secrets {
            usk: Some([7; 32]),
            dek: None,
            session: None,
            counter: 41,
            history: None,
        };
        block_on(store.save_secrets(&secrets)).unwrap();
        let back = block_on(store.secrets()).unwrap();
        assert_eq!((back.usk, back.counter), (Some([7; 32]), 41));

        let seen: VecDeque<MessageId> = (0..3u8).map(|i| MessageId::from_bytes([i; 16])).collect();
        block_on(store.save_seen(&seen)).unwrap();
        assert_eq!(block_on(store.seen()).unwrap(), seen);

        assert!(block_on(store.contact(&alice)).unwrap().directory.is_none());
    }
}
