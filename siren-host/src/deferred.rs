//! The deferred sync (PROTOCOL.md §13, the online fast path): a commit whose every item goes to
//! a device with a live session is written without waiting for the disk, its items are
//! delivered at once, and the commit is *settled* — the sender's `send_ack` may go — as soon as
//! every item is either acknowledged by its device or made durable by a sync of the store,
//! whichever comes first. A device that acknowledges quickly (the common case for an online
//! device) saves the sync altogether; one that does not is waited for at most
//! [`SYNC_AFTER`], then the store is synced (one sync for all the commits waiting then).
//!
//! When the store numbers items in memory, such a commit is not even written at first
//! ([`Deferred::settle_unwritten`]): an item acknowledged within [`SYNC_AFTER`] is never
//! written (nor removed), and only the others are written and synced then.
//!
//! The same [`Deferred::sync`] serves the commits that cannot wait for acknowledgements (an
//! item for a device with no live session): they too are written unsynced, and sync at once,
//! sharing the sync with every commit asking meanwhile.
//!
//! Why this keeps the promise "an acknowledged message is never lost": the sender is told only
//! when each item is on disk or in the hands of its recipient device, which is all the promise
//! ever meant. An acknowledged item that was not synced is removed at once (its write is
//! already applied, so the removal cannot come before it); if the machine fails first, both
//! the write and the removal may be lost, or the removal only (the item is delivered once
//! more, and the device drops the duplicate by its message id).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use siren_api::Error;
use siren_api::storage::{Durability, NewQueueItem, Storage};
use siren_proto::keys::DekPublic;
use tokio::sync::Notify;

/// How long a commit waits for its devices' acknowledgements before it syncs the store.
pub const SYNC_AFTER: Duration = Duration::from_millis(2);

/// One commit's items that were written without a sync, counting down as their devices
/// acknowledge them.
pub struct Waiting {
    left: AtomicUsize,
    all_acknowledged: Notify,
    /// The write is applied (an acknowledgement before it must wait: a removal must never
    /// come before the write it removes).
    written: AtomicBool,
    /// Nothing is written until [`Deferred::settle_unwritten`] writes what is left: an
    /// acknowledged item needs no removal.
    unwritten: bool,
}

/// What an acknowledgement of an item meant to the commit it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledged {
    /// Not (or no longer) waiting here, or its write is not applied yet: the session holds the
    /// acknowledgement until it sees the item durable.
    NotWaiting,
    /// Counted for its commit; its write is applied, so the caller removes it from the store.
    Written,
    /// Counted for its commit, and it will never be written: nothing to remove.
    Unwritten,
}

impl Waiting {
    fn new(items: usize, unwritten: bool) -> Arc<Waiting> {
        Arc::new(Waiting {
            left: AtomicUsize::new(items),
            all_acknowledged: Notify::new(),
            written: AtomicBool::new(false),
            unwritten,
        })
    }

    /// Returns once every item was acknowledged by its device.
    async fn acknowledged(&self) {
        while self.left.load(Ordering::Acquire) > 0 {
            // `notify_one` stores a permit if this task is not waiting yet: nothing is missed.
            self.all_acknowledged.notified().await;
        }
    }
}

/// The unsynced items of every commit in progress, and the syncs that settle them.
#[derive(Default)]
pub struct Deferred {
    /// `(device, seq)` → the commit it belongs to, until it is acknowledged or settled.
    items: Mutex<HashMap<(DekPublic, u64), Arc<Waiting>>>,
    /// Syncs asked for (a ticket each).
    asked: AtomicU64,
    /// The highest ticket covered by a finished sync (held while a sync runs).
    synced: tokio::sync::Mutex<u64>,
}

/// A commit's unsynced items, from the write to its settling.
pub struct Commit {
    keys: Vec<(DekPublic, u64)>,
    waiting: Arc<Waiting>,
}

impl Deferred {
    fn items(&self) -> MutexGuard<'_, HashMap<(DekPublic, u64), Arc<Waiting>>> {
        // Single inserts and removals: a poisoned lock cannot hold a half-made change.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a commit of `devices[i]`'s item numbered `seqs[i]`, written without a sync: called
    /// once the numbers are known, before the items are offered to their devices (so that the
    /// quickest acknowledgement finds its item here).
    pub fn start(&self, devices: &[DekPublic], seqs: &[u64]) -> Commit {
        self.begin(devices, seqs, false)
    }

    /// Starts a commit of items numbered but not written at all (see
    /// [`Deferred::settle_unwritten`]); called like [`Deferred::start`].
    pub fn start_unwritten(&self, devices: &[DekPublic], seqs: &[u64]) -> Commit {
        self.begin(devices, seqs, true)
    }

    fn begin(&self, devices: &[DekPublic], seqs: &[u64], unwritten: bool) -> Commit {
        let keys: Vec<(DekPublic, u64)> =
            devices.iter().copied().zip(seqs.iter().copied()).collect();
        let waiting = Waiting::new(keys.len(), unwritten);
        let mut items = self.items();
        for key in &keys {
            items.insert(*key, waiting.clone());
        }
        Commit { keys, waiting }
    }

    /// `commit`'s write is applied (not necessarily durable).
    pub fn written(&self, commit: &Commit) {
        commit.waiting.written.store(true, Ordering::Release);
    }

    /// `device` acknowledged item `seq`: counted as settled for its commit if the item belongs
    /// to one still waiting whose write is applied ([`Acknowledged::Written`]: the caller
    /// removes it from the store at once) or that writes nothing of what is acknowledged in
    /// time ([`Acknowledged::Unwritten`]). Otherwise ([`Acknowledged::NotWaiting`]) the item
    /// waits for the sync, after which its device's session is told it is durable.
    pub fn acknowledge(&self, device: &DekPublic, seq: u64) -> Acknowledged {
        let (waiting, answer) = {
            let mut items = self.items();
            let key = (*device, seq);
            match items.get(&key) {
                Some(w) if w.unwritten => (items.remove(&key), Acknowledged::Unwritten),
                Some(w) if w.written.load(Ordering::Acquire) => {
                    (items.remove(&key), Acknowledged::Written)
                }
                _ => (None, Acknowledged::NotWaiting),
            }
        };
        let Some(waiting) = waiting else {
            return Acknowledged::NotWaiting;
        };
        if waiting.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            waiting.all_acknowledged.notify_one();
        }
        answer
    }

    /// Settles a commit started with [`Deferred::start_unwritten`] (`items[i]` numbered
    /// `seqs[i]`): if every item is acknowledged within [`SYNC_AFTER`], nothing is written at
    /// all; otherwise the items still unacknowledged are taken out of the commit (their later
    /// acknowledgements wait until they are seen durable, as for any item), written and synced.
    /// Returns those items (their devices are told they are durable), or the error.
    pub async fn settle_unwritten(
        &self,
        storage: &dyn Storage,
        commit: Commit,
        items: &[NewQueueItem],
    ) -> Result<Vec<(DekPublic, u64)>, Error> {
        let _ = tokio::time::timeout(SYNC_AFTER, commit.waiting.acknowledged()).await;
        let left = self.take_unacknowledged(&commit);
        if left.is_empty() {
            return Ok(Vec::new());
        }
        let write: Vec<NewQueueItem> = left.iter().filter_map(|&i| items.get(i).cloned()).collect();
        let keys: Vec<(DekPublic, u64)> = left
            .iter()
            .filter_map(|&i| commit.keys.get(i).copied())
            .collect();
        let seqs: Vec<u64> = keys.iter().map(|(_, seq)| *seq).collect();
        storage
            .enqueue_numbered(&write, &seqs, Durability::Buffered)
            .await?;
        self.sync(storage).await?;
        Ok(keys)
    }

    /// Waits until every item of `commit` is acknowledged, or [`SYNC_AFTER`] has passed and a
    /// sync of `storage` covering its write has finished. Returns the items that were not
    /// acknowledged (now durable: their devices are told so), or the sync's error. Either way
    /// the commit's items stop waiting here.
    pub async fn settle(
        &self,
        storage: &dyn Storage,
        commit: Commit,
    ) -> Result<Vec<(DekPublic, u64)>, Error> {
        let acknowledged = tokio::time::timeout(SYNC_AFTER, commit.waiting.acknowledged())
            .await
            .is_ok();
        let synced = if acknowledged {
            Ok(())
        } else {
            self.sync(storage).await
        };
        let unacknowledged = self
            .take_unacknowledged(&commit)
            .into_iter()
            .filter_map(|i| commit.keys.get(i).copied())
            .collect();
        synced.map(|()| unacknowledged)
    }

    /// Stops waiting for `commit`'s items: the positions of those not acknowledged yet (their
    /// later acknowledgements are the sessions' to hold until they see them durable).
    fn take_unacknowledged(&self, commit: &Commit) -> Vec<usize> {
        let mut items = self.items();
        (0..commit.keys.len())
            .filter(|&i| {
                commit
                    .keys
                    .get(i)
                    .is_some_and(|key| items.remove(key).is_some())
            })
            .collect()
    }

    /// Drops a commit whose write failed.
    pub fn forget(&self, commit: Commit) {
        self.take_unacknowledged(&commit);
    }

    /// Syncs `storage`, so that every write finished before this call is durable; callers that
    /// come while a sync runs share the next one.
    pub async fn sync(&self, storage: &dyn Storage) -> Result<(), Error> {
        let ticket = self.asked.fetch_add(1, Ordering::AcqRel) + 1;
        let mut synced = self.synced.lock().await;
        if *synced >= ticket {
            // A sync that started after this call's writes has finished meanwhile.
            return Ok(());
        }
        // Every ticket taken so far belongs to a write finished before now: this sync covers
        // them all.
        let covers = self.asked.load(Ordering::Acquire);
        storage.sync().await?;
        *synced = covers;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use siren_api::storage::{Durability, KeyRange, KvEngine, KvPair, QueueStore, WriteBatch};
    use siren_storage_kv::KvStorage;
    use siren_storage_memory::MemoryEngine;

    /// The memory engine, counting syncs (each taking `delay`).
    pub(crate) struct Counting {
        inner: MemoryEngine,
        syncs: Arc<AtomicUsize>,
        delay: Duration,
    }

    impl KvEngine for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
            self.inner.get(key)
        }
        fn scan(
            &self,
            range: &KeyRange,
            limit: usize,
            reverse: bool,
        ) -> Result<Vec<KvPair>, Error> {
            self.inner.scan(range, limit, reverse)
        }
        fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<(), Error> {
            self.inner.write(batch, durability)
        }
        fn flush(&self) -> Result<(), Error> {
            Ok(())
        }
        fn sync(&self) -> Result<(), Error> {
            std::thread::sleep(self.delay);
            self.syncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn buffered_is_cheaper(&self) -> bool {
            true
        }
    }

    pub(crate) fn storage(delay: Duration) -> (KvStorage<Counting>, Arc<AtomicUsize>) {
        let syncs = Arc::new(AtomicUsize::new(0));
        let engine = Counting {
            inner: MemoryEngine::new(),
            syncs: syncs.clone(),
            delay,
        };
        (KvStorage::new(engine), syncs)
    }

    fn dek(n: u8) -> DekPublic {
        DekPublic::from_bytes([n; 32])
    }

    #[tokio::test]
    async fn a_commit_acknowledged_by_its_devices_settles_without_a_sync() {
        let (storage, syncs) = storage(Duration::ZERO);
        let deferred = Deferred::default();
        let commit = deferred.start(&[dek(1), dek(2)], &[7, 3]);
        // Before the write is applied, an acknowledgement waits (a removal must follow it).
        assert_eq!(deferred.acknowledge(&dek(1), 7), Acknowledged::NotWaiting);
        deferred.written(&commit);
        assert_eq!(deferred.acknowledge(&dek(1), 7), Acknowledged::Written);
        assert_eq!(
            deferred.acknowledge(&dek(1), 7),
            Acknowledged::NotWaiting,
            "counted once"
        );
        assert_eq!(
            deferred.acknowledge(&dek(1), 3),
            Acknowledged::NotWaiting,
            "another device's item"
        );
        assert_eq!(deferred.acknowledge(&dek(2), 3), Acknowledged::Written);
        let left = deferred.settle(&storage, commit).await.unwrap();
        assert!(left.is_empty());
        assert_eq!(syncs.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_item_not_acknowledged_in_time_is_synced_and_reported() {
        let (storage, syncs) = storage(Duration::ZERO);
        let deferred = Deferred::default();
        let commit = deferred.start(&[dek(1), dek(1)], &[1, 2]);
        deferred.written(&commit);
        assert_eq!(deferred.acknowledge(&dek(1), 1), Acknowledged::Written);
        let left = deferred.settle(&storage, commit).await.unwrap();
        assert_eq!(left, vec![(dek(1), 2)]);
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
        // Settled: a late acknowledgement is the session's to hold until it hears "durable".
        assert_eq!(deferred.acknowledge(&dek(1), 2), Acknowledged::NotWaiting);
    }

    fn item(device: u8) -> NewQueueItem {
        NewQueueItem {
            device: [device; 32],
            expires: u64::MAX,
            bytes: vec![device],
        }
    }

    #[tokio::test]
    async fn an_unwritten_commit_acknowledged_in_time_writes_nothing() {
        let (storage, syncs) = storage(Duration::ZERO);
        let deferred = Deferred::default();
        let items = [item(1), item(2)];
        let commit = deferred.start_unwritten(&[dek(1), dek(2)], &[4, 9]);
        // Acknowledged at once: nothing was written, so nothing is to be removed.
        assert_eq!(deferred.acknowledge(&dek(1), 4), Acknowledged::Unwritten);
        assert_eq!(deferred.acknowledge(&dek(1), 4), Acknowledged::NotWaiting);
        assert_eq!(deferred.acknowledge(&dek(2), 9), Acknowledged::Unwritten);
        let left = deferred
            .settle_unwritten(&storage, commit, &items)
            .await
            .unwrap();
        assert!(left.is_empty());
        assert_eq!(syncs.load(Ordering::SeqCst), 0);
        for device in [[1; 32], [2; 32]] {
            assert!(storage.pending(&device, 0, 10).await.unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn an_unwritten_commit_writes_and_syncs_what_is_not_acknowledged_in_time() {
        let (storage, syncs) = storage(Duration::ZERO);
        let deferred = Deferred::default();
        let items = [item(1), item(2)];
        let commit = deferred.start_unwritten(&[dek(1), dek(2)], &[4, 9]);
        assert_eq!(deferred.acknowledge(&dek(1), 4), Acknowledged::Unwritten);
        let left = deferred
            .settle_unwritten(&storage, commit, &items)
            .await
            .unwrap();
        assert_eq!(left, vec![(dek(2), 9)]);
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
        assert!(storage.pending(&[1; 32], 0, 10).await.unwrap().is_empty());
        let stored = storage.pending(&[2; 32], 0, 10).await.unwrap();
        assert_eq!(
            stored
                .iter()
                .map(|i| (i.seq, i.bytes.clone()))
                .collect::<Vec<_>>(),
            vec![(9, vec![2])]
        );
        // Written now: a late acknowledgement waits until its session sees it durable.
        assert_eq!(deferred.acknowledge(&dek(2), 9), Acknowledged::NotWaiting);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn syncs_asked_for_while_one_runs_share_the_next() {
        let (storage, syncs) = storage(Duration::from_millis(100));
        let (storage, deferred) = (Arc::new(storage), Arc::new(Deferred::default()));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (storage, deferred) = (storage.clone(), deferred.clone());
            tasks.spawn(async move { deferred.sync(storage.as_ref()).await });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        // The first, then at most one for everyone who came while it ran.
        let n = syncs.load(Ordering::SeqCst);
        assert!((1..=2).contains(&n), "{n} syncs for 10 callers");
        // A later caller gets a sync of its own.
        deferred.sync(storage.as_ref()).await.unwrap();
        assert_eq!(syncs.load(Ordering::SeqCst), n + 1);
    }
}
