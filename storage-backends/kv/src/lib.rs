//! Every typed Siren store over any ordered key-value engine.
//!
//! [`KvStorage`] wraps a [`KvEngine`] (six blocking methods: get, scan, atomic batch write,
//! flush, describe) and implements [`Storage`] and its five typed stores on top of it. The
//! memory and RocksDB backends are this adapter over their engines; so is a researcher's wasm
//! engine.
//!
//! **Needs to run:** a tokio runtime. Engine calls block, so every async method runs them on
//! tokio's blocking pool ([`tokio::task::spawn_blocking`]); called outside a runtime, a method
//! returns an [`ErrorCode::Internal`] error instead of panicking. The exception: with an engine
//! whose buffered writes do not wait for a device ([`KvEngine::quick_buffered_write`]), the
//! queue's buffered enqueues (of devices whose counter is known) and its acknowledgements run
//! on the calling task, saving two thread hand-offs per relayed message; and a point read
//! (a session, an account, a roster) that the engine can answer from memory
//! ([`KvEngine::get_cached`]) is answered on the calling task, and so is a read of a queue's
//! next items (a session's backlog, a federation outbox) that the engine can answer from memory
//! over few deleted entries ([`KvEngine::scan_cached`]). The adapter must be the only
//! writer of its engine: the compare-and-set stores (directory, roster) and the queue's sequence
//! numbers rely on locks and counters held in the adapter.
//!
//! # Key layout
//!
//! Every key starts with a one-letter keyspace and `/`. Integers are big-endian, so byte order
//! is numeric order; usernames never contain `/`, so `d/alice/` is never a prefix of another
//! user's keys. Values are fixed-width fields followed by the opaque bytes the host handed over
//! (which take the rest of the value).
//!
//! | key | value | what |
//! |---|---|---|
//! | `a/<username>` | `created u64`, `2 u8`, `stamp u64`, `flag u8`, credential UTF-8 | account (flag 0: no credential, 1: credential follows) |
//! | `d/<username>/<seq u64>` | `kind u8` (0 add, 1 revoke), `device [32]`, entry bytes | directory entry |
//! | `q/<device [32]><seq u64>` | `expires u64`, item bytes | queue item |
//! | `x/<expires u64><device [32]><seq u64>` | empty | expiry index: one key per queue item |
//! | `n/<device [32]>` | `seq u64` | queue high-water mark: highest seq ever removed |
//! | `s/<id [16]>` | `device [32]`, `last_seen u64`, `2 u8`, `stamp flag u8` (+ `stamp u64` if 1), `flag u8`, username | session |
//! | `r/<username>` | `version u64`, roster bytes | roster |
//!
//! The `2` after the fixed fields of accounts and sessions marks values with a credential stamp
//! ([`Account::credential_stamp`](siren_api::storage::Account::credential_stamp),
//! [`SessionRecord::credential_stamp`](siren_api::storage::SessionRecord::credential_stamp)).
//! Values written before stamps existed have the text flag (0 or 1) in its place and still read:
//! as stamp 0 (and stamp `Some(0)` for a logged-in session), so no migration is needed.
//!
//! # How the promises of [`siren_api::storage`] are kept
//!
//! * **Durability.** Every write is one [`WriteBatch`], so it is atomic, and
//!   [`Durability::Synced`] unless the trait says it need not be: only
//!   [`ack`](siren_api::storage::QueueStore::ack), and an
//!   [`enqueue_announced`](siren_api::storage::QueueStore::enqueue_announced) the host asks to
//!   be buffered (it then calls [`sync`](siren_api::storage::QueueStore::sync) itself), write
//!   [`Durability::Buffered`].
//! * **Queue sequence numbers.** The adapter keeps the last allocated number of each device in
//!   memory (a map behind a mutex that is held only to allocate, never across a write), so
//!   overlapping [`enqueue`](siren_api::storage::QueueStore::enqueue) calls each make one
//!   synced write outside every lock, and the engine can group-commit them. A device's counter
//!   is recovered on first use as the larger of its highest stored item (a reverse scan of
//!   `q/<device>`, limit 1) and its high-water mark `n/<device>`, which every removal (ack,
//!   purge, expire) raises in the same atomic batch. So a number once stored is never handed
//!   out again, even after the queue was emptied and the store reopened. (A number from
//!   [`number`](siren_api::storage::QueueStore::number) that was never stored may come again
//!   after a restart, as the trait allows.)
//! * **Expiry** is a range scan of `x/` up to `now`, not a scan of every queue.
//! * **Removals** (ack, purge, expire) are serialised by one lock, so each item is counted once
//!   and the high-water mark only grows.
//! * **Compare-and-set** (directory appends, roster replacement, credential updates) reads,
//!   checks and writes under a lock of its store, so two racing writers cannot both win.
//! * **Deleting a user's sessions** scans every session (there is no index by user): an
//!   administrator's command, not a request path.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod accounts;
mod directory;
mod export;
mod layout;
mod queue;
mod roster;
mod sessions;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use siren_api::storage::{Durability, KeyRange, KvEngine, KvPair, Storage, WriteBatch};
use siren_api::{Error, ErrorCode};

/// How many entries a scan of a whole keyspace reads at a time.
const PAGE: usize = 1024;

/// [`Storage`] over a [`KvEngine`]. Cheap to clone: clones share the engine and its locks.
pub struct KvStorage<E: KvEngine> {
    inner: Arc<Inner<E>>,
}

impl<E: KvEngine> Clone for KvStorage<E> {
    fn clone(&self) -> Self {
        KvStorage {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<E: KvEngine> std::fmt::Debug for KvStorage<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStorage")
            .field("engine", &self.inner.engine.describe())
            .finish_non_exhaustive()
    }
}

/// What the blocking tasks share.
struct Inner<E> {
    engine: E,
    queue: queue::QueueState,
    /// Held across the read-check-write of a directory append.
    directory_cas: Mutex<()>,
    /// Held across the read-check-write of a roster replacement.
    roster_cas: Mutex<()>,
    /// Held across the read-check-write of a credential update.
    account_cas: Mutex<()>,
}

impl<E: KvEngine> KvStorage<E> {
    /// Wraps an engine. Does no IO: queue counters are recovered lazily, per device.
    pub fn new(engine: E) -> Self {
        KvStorage {
            inner: Arc::new(Inner {
                engine,
                queue: queue::QueueState::default(),
                directory_cas: Mutex::new(()),
                roster_cas: Mutex::new(()),
                account_cas: Mutex::new(()),
            }),
        }
    }

    /// The engine underneath.
    pub fn engine(&self) -> &E {
        &self.inner.engine
    }

    /// Runs `f` on tokio's blocking pool. Errors gain the operation's name; engines report IO
    /// failures as [`ErrorCode::Unavailable`], and the code is kept.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Inner<E>) -> Result<T, Error> + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::new(
                ErrorCode::Internal,
                format!("{op}: the key-value storage adapter needs a tokio runtime"),
            )
        })?;
        let inner = Arc::clone(&self.inner);
        runtime
            .spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| {
                Error::new(
                    ErrorCode::Internal,
                    format!("{op}: storage task failed: {e}"),
                )
            })?
            .map_err(|e| Error::new(e.code, format!("{op}: {}", e.message)))
    }
}

impl<E: KvEngine> KvStorage<E> {
    /// Reads `key` and decodes what is there with `decode`: on the calling task when the
    /// engine has it in memory ([`KvEngine::get_cached`]), otherwise on a blocking thread like
    /// [`KvStorage::run`]. A point read of a hot record (a resuming session's, its account's)
    /// then costs no thread hand-off.
    async fn get_with<T, D>(&self, op: &'static str, key: Vec<u8>, decode: D) -> Result<T, Error>
    where
        T: Send + 'static,
        D: FnOnce(Option<Vec<u8>>) -> Result<T, Error> + Send + 'static,
    {
        if let Some(found) = self.inner.engine.get_cached(&key) {
            return found
                .and_then(decode)
                .map_err(|e| Error::new(e.code, format!("{op}: {}", e.message)));
        }
        self.run(op, move |inner| decode(inner.engine.get(&key)?))
            .await
    }

    /// Scans up to `limit` entries of `range` and decodes them with `decode`: on the calling
    /// task when the engine has them in memory ([`KvEngine::scan_cached`]), otherwise on a
    /// blocking thread like [`KvStorage::run`]. A queue's next items, written or read lately,
    /// then cost no thread hand-off.
    async fn scan_with<T, D>(
        &self,
        op: &'static str,
        range: KeyRange,
        limit: usize,
        decode: D,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        D: FnOnce(Vec<KvPair>) -> Result<T, Error> + Send + 'static,
    {
        if let Some(found) = self.inner.engine.scan_cached(&range, limit, false) {
            return found
                .and_then(decode)
                .map_err(|e| Error::new(e.code, format!("{op}: {}", e.message)));
        }
        self.run(op, move |inner| {
            decode(inner.engine.scan(&range, limit, false)?)
        })
        .await
    }

    /// Runs `f` at once, on the calling task, if it is `buffered` work (only buffered writes
    /// and reads of what was written lately) and the engine's buffered writes do not wait for a
    /// device ([`KvEngine::quick_buffered_write`]); otherwise like [`KvStorage::run`].
    async fn run_quick<T, F>(&self, op: &'static str, buffered: bool, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Inner<E>) -> Result<T, Error> + Send + 'static,
    {
        if buffered && self.inner.engine.quick_buffered_write() {
            return f(&self.inner).map_err(|e| Error::new(e.code, format!("{op}: {}", e.message)));
        }
        self.run(op, f).await
    }
}

/// Locks a mutex whose data cannot be left inconsistent by a panic (a unit, or counters that
/// are only ever raised), so a poisoned lock is as good as a healthy one.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Calls `visit` with every entry of `range`, in key order, [`PAGE`] entries at a time. `visit`
/// may delete what it was given.
fn scan_pages<E: KvEngine>(
    engine: &E,
    range: &KeyRange,
    mut visit: impl FnMut(Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut range = range.clone();
    loop {
        let page = engine.scan(&range, PAGE, false)?;
        let full = page.len() == PAGE;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        // The smallest key after `last`.
        let mut next = last.clone();
        next.push(0);
        visit(page)?;
        if !full {
            return Ok(());
        }
        range.start = next;
    }
}

/// A batch with one put.
fn put(key: Vec<u8>, value: Vec<u8>) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(key, value);
    batch
}

/// Deletes `key` if it exists (synced); whether it did. (Two concurrent deletes of one key may
/// both report `true`; accounts and sessions are deleted by one administrator or one session.)
fn delete_existing<E: KvEngine>(engine: &E, key: Vec<u8>) -> Result<bool, Error> {
    if engine.get(&key)?.is_none() {
        return Ok(false);
    }
    let mut batch = WriteBatch::new();
    batch.delete(key);
    engine.write(&batch, Durability::Synced)?;
    Ok(true)
}

#[async_trait]
impl<E: KvEngine> Storage for KvStorage<E> {
    fn describe(&self) -> String {
        self.inner.engine.describe()
    }

    async fn flush(&self) -> Result<(), Error> {
        self.run("flush", |inner| inner.engine.flush()).await
    }

    async fn backup(&self, dir: &std::path::Path) -> Result<(), Error> {
        let dir = dir.to_path_buf();
        self.run("backup", move |inner| inner.engine.checkpoint(&dir))
            .await
    }
}
