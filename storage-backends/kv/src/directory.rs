//! [`DirectoryStore`]: `d/<username>/<seq>` keys, appended by compare-and-set.

use async_trait::async_trait;
use siren_api::storage::{DirectoryStore, Durability, KeyRange, KvEngine, StoredEntry, WriteBatch};
use siren_api::{Error, ErrorCode, Username};

use crate::layout;
use crate::{KvStorage, lock, put, scan_pages};

#[async_trait]
impl<E: KvEngine> DirectoryStore for KvStorage<E> {
    async fn entries(&self, user: &Username) -> Result<Vec<StoredEntry>, Error> {
        let prefix = layout::directory_prefix(user);
        self.run("entries", move |inner| {
            let mut entries = Vec::new();
            scan_pages(&inner.engine, &KeyRange::prefix(&prefix), |page| {
                for (key, value) in page {
                    let seq = layout::directory_seq(&key, prefix.len())?;
                    let (kind, device, bytes) = layout::read_entry(&value)?;
                    entries.push(StoredEntry {
                        seq,
                        kind,
                        device,
                        bytes,
                    });
                }
                Ok(())
            })?;
            Ok(entries)
        })
        .await
    }

    async fn append_entry(&self, user: &Username, entry: &StoredEntry) -> Result<(), Error> {
        let user = user.clone();
        let seq = entry.seq;
        let key = layout::directory_key(&user, seq);
        let value = layout::entry_value(entry.kind, &entry.device, &entry.bytes);
        self.run("append_entry", move |inner| {
            // The adapter is the engine's only writer, so holding this lock from the read to the
            // write makes the check and the append one step: of two racing appends of the same
            // sequence number, the second sees the first's entry.
            let _cas = lock(&inner.directory_cas);
            let prefix = layout::directory_prefix(&user);
            let last = match inner
                .engine
                .scan(&KeyRange::prefix(&prefix), 1, true)?
                .first()
            {
                Some((key, _)) => layout::directory_seq(key, prefix.len())?,
                None => 0,
            };
            if last.checked_add(1) != Some(seq) {
                return Err(Error::new(
                    ErrorCode::Rollback,
                    format!(
                        "the directory of {user} ends at entry {last}; entry {seq} does not follow it"
                    ),
                ));
            }
            inner.engine.write(&put(key, value), Durability::Synced)
        })
        .await
    }

    async fn delete_entries(&self, user: &Username) -> Result<usize, Error> {
        let prefix = layout::directory_prefix(user);
        self.run("delete_entries", move |inner| {
            // Under the append lock: an append racing with the deletion is either removed with
            // the rest or starts a new chain at 1 afterwards.
            let _cas = lock(&inner.directory_cas);
            let mut batch = WriteBatch::new();
            scan_pages(&inner.engine, &KeyRange::prefix(&prefix), |page| {
                for (key, _) in page {
                    batch.delete(key);
                }
                Ok(())
            })?;
            let removed = batch.ops.len();
            if removed > 0 {
                inner.engine.write(&batch, Durability::Synced)?;
            }
            Ok(removed)
        })
        .await
    }
}
