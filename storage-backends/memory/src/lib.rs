//! An in-memory Siren store, for tests and experiments.
//!
//! [`MemoryEngine`] is a [`BTreeMap`] behind a [`RwLock`], implementing
//! [`KvEngine`]; [`storage`] wraps it in the [`KvStorage`] adapter. Nothing survives the process,
//! so [`Durability`] is ignored and [`KvEngine::flush`] does nothing.
//!
//! **Needs to run:** nothing but memory, and (like every [`KvStorage`]) a tokio runtime for the
//! async store methods.
//!
//! # Example
//!
//! ```
//! use siren_api::storage::{AccountStore, Account};
//! use siren_api::Username;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), siren_api::Error> {
//! let storage = siren_storage_memory::storage();
//! let alice = Username::parse("alice").expect("a valid username");
//! storage
//!     .put_account(&Account { user: alice.clone(), created: 1, credential: None, credential_stamp: 0 })
//!     .await?;
//! assert_eq!(storage.list_accounts().await?, vec![alice]);
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use siren_api::storage::{Durability, KeyRange, KvEngine, KvPair, WriteBatch, WriteOp};
use siren_api::{Error, ErrorCode};
pub use siren_storage_kv::KvStorage;

/// The in-memory store: every typed store over a [`MemoryEngine`].
pub type MemoryStorage = KvStorage<MemoryEngine>;

/// A new, empty in-memory store.
pub fn storage() -> MemoryStorage {
    KvStorage::new(MemoryEngine::new())
}

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// A sorted map in memory, as a [`KvEngine`].
#[derive(Debug, Default)]
pub struct MemoryEngine {
    map: RwLock<Map>,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, Map>, Error> {
        self.map.read().map_err(poisoned)
    }

    fn write_lock(&self) -> Result<RwLockWriteGuard<'_, Map>, Error> {
        self.map.write().map_err(poisoned)
    }
}

/// A writer panicked while holding the lock (say, out of memory half-way through a batch): the
/// map may hold part of a batch, so it is not used again.
fn poisoned<T>(_: PoisonError<T>) -> Error {
    Error::new(
        ErrorCode::Internal,
        "memory engine: a writer failed half-way; the map may hold a partial batch",
    )
}

impl KvEngine for MemoryEngine {
    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.read()?.get(key).cloned())
    }

    /// Everything is in memory.
    fn get_cached(&self, key: &[u8]) -> Option<Result<Option<Vec<u8>>, Error>> {
        Some(self.get(key))
    }

    /// Everything is in memory (a scan's work is bounded by its `limit`: no deleted entries).
    fn scan_cached(
        &self,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> Option<Result<Vec<KvPair>, Error>> {
        Some(self.scan(range, limit, reverse))
    }

    fn scan(
        &self,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Error> {
        // `BTreeMap::range` panics on an inverted range; such a range is simply empty.
        if !range.end.is_empty() && range.start >= range.end {
            return Ok(Vec::new());
        }
        let end = match range.end.as_slice() {
            [] => Bound::Unbounded,
            end => Bound::Excluded(end),
        };
        let map = self.read()?;
        let entries = map.range::<[u8], _>((Bound::Included(range.start.as_slice()), end));
        let clone = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if reverse {
            entries.rev().take(limit).map(clone).collect()
        } else {
            entries.take(limit).map(clone).collect()
        })
    }

    fn write(&self, batch: &WriteBatch, _durability: Durability) -> Result<(), Error> {
        // One write lock for the whole batch: readers see all of it or none of it.
        let mut map = self.write_lock()?;
        for op in &batch.ops {
            match op {
                WriteOp::Put(key, value) => {
                    map.insert(key.clone(), value.clone());
                }
                WriteOp::Delete(key) => {
                    map.remove(key);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), Error> {
        Ok(())
    }

    fn quick_buffered_write(&self) -> bool {
        true
    }
}
