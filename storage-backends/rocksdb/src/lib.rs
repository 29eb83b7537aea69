//! Siren's embedded default store: RocksDB in a data directory, nothing to install.
//!
//! [`RocksEngine`] implements [`KvEngine`] over one RocksDB database (default column family, no
//! compression: payloads are ciphertext); [`open`] wraps it in the [`KvStorage`] adapter, which
//! documents the key layout.
//!
//! **Needs to run:** a writable directory (created if missing; RocksDB keeps a `LOCK` file in it,
//! so one process opens it at a time) and, like every [`KvStorage`], a tokio runtime for the
//! async store methods. RocksDB itself is compiled into the binary (`librocksdb-sys`, which needs
//! a C++ compiler and libclang at build time).
//!
//! # Durability
//!
//! A [`Durability::Synced`] write sets [`WriteOptions::set_sync`], so it returns after the
//! write-ahead log is fsynced; RocksDB groups the WAL records of concurrent writers into one
//! sync (group commit), which is why this engine takes no lock of its own around writes. A
//! [`Durability::Buffered`] write still goes to the WAL (so a batch is never torn, and survives
//! a crash of the process) but may be lost if the machine fails before the next sync.
//! [`KvEngine::sync`] syncs the WAL (making every earlier buffered write durable: the queue's
//! deferred sync, PROTOCOL.md §13); [`KvEngine::flush`] syncs it and then flushes the memtables
//! to SST files.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::path::{Path, PathBuf};

use rocksdb::{DB, DBCompressionType, Options, ReadOptions, ReadTier, WriteOptions};
use siren_api::storage::{Durability, KeyRange, KvEngine, KvPair, WriteBatch, WriteOp};
use siren_api::{Error, ErrorCode};
pub use siren_storage_kv::KvStorage;

/// How many deleted or overwritten entries one step of [`RocksEngine::scan_cached`] (the seek
/// to the first entry, or the move to the next) may step over before the scan gives up and goes
/// to a blocking thread: enough for a queue's recent removals, little enough that a step on the
/// async executor stays short. (RocksDB counts per step, so a scan of `n` entries steps over at
/// most `n` times this: the queues' reads ask for at most a few hundred.)
const MAX_SKIPPED_CACHED: u64 = 1_000;

/// The RocksDB store: every typed store over a [`RocksEngine`].
pub type RocksStorage = KvStorage<RocksEngine>;

/// Opens (creating if missing) the RocksDB store in `path`. Blocking: call it before serving, or
/// from `tokio::task::spawn_blocking`.
pub fn open(path: impl AsRef<Path>) -> Result<RocksStorage, Error> {
    RocksEngine::open(path).map(KvStorage::new)
}

/// One RocksDB database as a [`KvEngine`]. Closed when dropped.
pub struct RocksEngine {
    db: DB,
    path: PathBuf,
}

impl std::fmt::Debug for RocksEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksEngine")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A RocksDB or filesystem failure, as [`ErrorCode::Unavailable`] naming the operation.
fn unavailable(op: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::Unavailable, format!("rocksdb {op}: {e}"))
}

impl RocksEngine {
    /// Opens the database in `path`, creating the directory and the database if missing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path)
            .map_err(|e| unavailable(&format!("create {}", path.display()), e))?;
        let mut options = Options::default();
        options.create_if_missing(true);
        // Payloads are ciphertext, and the build links no compression library.
        options.set_compression_type(DBCompressionType::None);
        let db = DB::open(&options, &path)
            .map_err(|e| unavailable(&format!("open {}", path.display()), e))?;
        Ok(RocksEngine { db, path })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_options(range: &KeyRange) -> ReadOptions {
        let mut options = ReadOptions::default();
        options.set_iterate_lower_bound(range.start.clone());
        if !range.end.is_empty() {
            options.set_iterate_upper_bound(range.end.clone());
        }
        options
    }

    /// Up to `limit` entries of `range` read with `options` (the range's bounds and whatever
    /// else the caller set), in key order or reverse key order.
    fn scan_with(
        &self,
        options: ReadOptions,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KvPair>, rocksdb::Error> {
        let mut entries = Vec::new();
        if limit == 0 || (!range.end.is_empty() && range.start >= range.end) {
            return Ok(entries);
        }
        // The bounds in the read options keep the iterator inside the range (and let RocksDB
        // skip what lies outside); the `contains` check below is the contract, whatever the
        // iterator does at the edges.
        let mut iter = self.db.raw_iterator_opt(options);
        if reverse {
            if range.end.is_empty() {
                iter.seek_to_last();
            } else {
                // The last key at or before `end`; `end` itself is excluded below.
                iter.seek_for_prev(&range.end);
            }
        } else {
            iter.seek(&range.start);
        }
        while let Some((key, value)) = iter.item() {
            if range.contains(key) {
                entries.push((key.to_vec(), value.to_vec()));
                if entries.len() == limit {
                    break;
                }
            } else if reverse == (key < range.start.as_slice()) {
                // Below the range going down, or above it going up: done. (Reverse scans may
                // first meet `end` itself, and step past it.)
                break;
            }
            if reverse {
                iter.prev();
            } else {
                iter.next();
            }
        }
        iter.status()?;
        Ok(entries)
    }
}

impl KvEngine for RocksEngine {
    fn describe(&self) -> String {
        format!("rocksdb at {}", self.path.display())
    }

    /// A RocksDB checkpoint: the WAL is synced and the memtables flushed, then the SST files are
    /// hard-linked (copied across file systems) into `dir` with the current manifest, so the copy
    /// is a consistent database holding every write that returned before, opened like any other.
    fn checkpoint(&self, dir: &Path) -> Result<(), Error> {
        self.db
            .flush_wal(true)
            .map_err(|e| unavailable("checkpoint (wal sync)", e))?;
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(|e| unavailable(&format!("checkpoint into {}", dir.display()), e))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.db.get(key).map_err(|e| unavailable("get", e))
    }

    /// A read confined to the memtables and the block cache (`ReadTier::BlockCache`): RocksDB
    /// answers `Incomplete` instead of reading a file, and the caller then reads on a blocking
    /// thread. A recently written or recently read key (a resuming session's record, its
    /// account) is answered here.
    fn get_cached(&self, key: &[u8]) -> Option<Result<Option<Vec<u8>>, Error>> {
        let mut options = ReadOptions::default();
        options.set_read_tier(ReadTier::BlockCache);
        match self.db.get_opt(key, &options) {
            Ok(value) => Some(Ok(value)),
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => None,
            Err(e) => Some(Err(unavailable("get", e))),
        }
    }

    /// A scan confined to the memtables and the block cache (`ReadTier::BlockCache`) that gives
    /// up when a step would pass over more than [`MAX_SKIPPED_CACHED`] deleted or overwritten
    /// entries: RocksDB answers `Incomplete` instead of reading a file or working on, and the
    /// caller then scans on a blocking thread. A queue's next items, written or read lately, are
    /// answered here.
    fn scan_cached(
        &self,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> Option<Result<Vec<KvPair>, Error>> {
        let mut options = Self::read_options(range);
        options.set_read_tier(ReadTier::BlockCache);
        options.set_max_skippable_internal_keys(MAX_SKIPPED_CACHED);
        match self.scan_with(options, range, limit, reverse) {
            Ok(entries) => Some(Ok(entries)),
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => None,
            Err(e) => Some(Err(unavailable("scan", e))),
        }
    }

    fn scan(
        &self,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Error> {
        self.scan_with(Self::read_options(range), range, limit, reverse)
            .map_err(|e| unavailable("scan", e))
    }

    fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<(), Error> {
        let mut rocks = rocksdb::WriteBatch::default();
        for op in &batch.ops {
            match op {
                WriteOp::Put(key, value) => rocks.put(key, value),
                WriteOp::Delete(key) => rocks.delete(key),
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(durability == Durability::Synced);
        self.db
            .write_opt(rocks, &options)
            .map_err(|e| unavailable("write", e))
    }

    fn flush(&self) -> Result<(), Error> {
        self.db
            .flush_wal(true)
            .map_err(|e| unavailable("flush WAL", e))?;
        self.db.flush().map_err(|e| unavailable("flush", e))
    }

    fn sync(&self) -> Result<(), Error> {
        // Syncs the write-ahead log: every write before this call is then on disk.
        self.db
            .flush_wal(true)
            .map_err(|e| unavailable("sync WAL", e))
    }

    fn buffered_is_cheaper(&self) -> bool {
        true
    }

    fn quick_buffered_write(&self) -> bool {
        // An unsynced write appends to the log in the OS's buffers and to the memtable; the
        // items the queue reads back for an acknowledgement were written moments ago (memtable)
        // or are in the block cache.
        true
    }
}
