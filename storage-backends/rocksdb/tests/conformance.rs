//! The storage conformance suite against RocksDB: the typed stores, persistence across
//! reopening, and the engine contract. Each check gets its own temporary directory.

use siren_storage_conformance::PersistentBackend;
use siren_storage_rocksdb::{RocksEngine, RocksStorage};
use tempfile::TempDir;

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// A database directory that outlives the stores opened on it.
struct Backend {
    dir: TempDir,
}

impl PersistentBackend for Backend {
    type Store = RocksStorage;

    async fn open(&self) -> RocksStorage {
        siren_storage_rocksdb::open(self.dir.path()).expect("open the database")
    }
}

siren_storage_conformance::storage_tests!(async || {
    let dir = temp_dir();
    let storage = siren_storage_rocksdb::open(dir.path()).expect("open the database");
    (storage, dir)
});

siren_storage_conformance::persistence_tests!(async || Backend { dir: temp_dir() });

siren_storage_conformance::kv_engine_tests!(|| {
    let dir = temp_dir();
    let engine = RocksEngine::open(dir.path()).expect("open the database");
    (engine, dir)
});

/// `open` creates missing parent directories, and a second open of a database that is open
/// fails (RocksDB's lock) with `Unavailable` instead of corrupting it.
#[test]
fn open_creates_directories_and_is_exclusive() {
    let dir = temp_dir();
    let path = dir.path().join("a/b/siren");
    let engine = RocksEngine::open(&path).expect("open a nested path");
    assert_eq!(engine.path(), path);
    let second = RocksEngine::open(&path).expect_err("a second open while the first holds it");
    assert_eq!(second.code, siren_api::ErrorCode::Unavailable);
    assert!(second.message.contains("open"), "{second}");
    drop(engine);
    RocksEngine::open(&path).expect("reopen after closing");
}

/// `get_cached` never reads a file: after a reopen (an empty block cache) a value that is only
/// in a table file is not answered from memory, `get` reads it, and from then on its block is
/// cached and `get_cached` answers. A value still in the memtable is answered at once.
#[test]
fn cached_reads_do_not_touch_files() {
    use siren_api::storage::{Durability, KvEngine, WriteBatch};
    let dir = temp_dir();
    let engine = RocksEngine::open(dir.path()).expect("open");
    let mut batch = WriteBatch::new();
    batch.put(b"on disk".to_vec(), b"v".to_vec());
    engine.write(&batch, Durability::Synced).expect("write");
    engine.flush().expect("flush to a table file");
    drop(engine);

    let engine = RocksEngine::open(dir.path()).expect("reopen");
    assert!(
        engine.get_cached(b"on disk").is_none(),
        "a value only in a table file was answered without reading it"
    );
    assert_eq!(engine.get(b"on disk").expect("get"), Some(b"v".to_vec()));
    assert_eq!(
        engine
            .get_cached(b"on disk")
            .map(|r| r.expect("cached get")),
        Some(Some(b"v".to_vec())),
        "the block just read is not in the cache"
    );
    let mut batch = WriteBatch::new();
    batch.put(b"fresh".to_vec(), b"w".to_vec());
    engine.write(&batch, Durability::Buffered).expect("write");
    assert_eq!(
        engine.get_cached(b"fresh").map(|r| r.expect("cached get")),
        Some(Some(b"w".to_vec()))
    );
}

/// `scan_cached` answers a queue's next items from memory, never reads a file, and gives up
/// over a long run of deleted entries (work the async executor must not do): after a reopen an
/// item only in a table file is not answered, a scan reads it and from then on it is; items
/// just written are answered at once; thousands of removed items before the next live one send
/// the scan to a blocking thread (`None`), and `scan` still finds the item.
#[test]
fn cached_scans_stay_in_memory_and_give_up_over_many_deletions() {
    use siren_api::storage::{Durability, KeyRange, KvEngine, WriteBatch};
    let key = |i: u32| [b"q/".as_slice(), &i.to_be_bytes()].concat();
    let range = KeyRange::prefix(b"q/");
    let dir = temp_dir();
    let engine = RocksEngine::open(dir.path()).expect("open");
    let mut batch = WriteBatch::new();
    batch.put(key(0), b"on disk".to_vec());
    engine.write(&batch, Durability::Synced).expect("write");
    engine.flush().expect("flush to a table file");
    drop(engine);

    let engine = RocksEngine::open(dir.path()).expect("reopen");
    assert!(
        engine.scan_cached(&range, 10, false).is_none(),
        "an item only in a table file was answered without reading it"
    );
    let read = engine.scan(&range, 10, false).expect("scan");
    assert_eq!(read, vec![(key(0), b"on disk".to_vec())]);
    assert_eq!(
        engine
            .scan_cached(&range, 10, false)
            .map(|r| r.expect("cached scan")),
        Some(read),
        "the block just read is not in the cache"
    );

    // A queue that delivered and removed 5,000 items, its next item behind their tombstones.
    let mut batch = WriteBatch::new();
    for i in 1..=5_000 {
        batch.put(key(i), b"delivered".to_vec());
    }
    engine.write(&batch, Durability::Buffered).expect("enqueue");
    let mut batch = WriteBatch::new();
    for i in 0..=5_000 {
        batch.delete(key(i));
    }
    engine.write(&batch, Durability::Buffered).expect("remove");
    let mut batch = WriteBatch::new();
    batch.put(key(5_001), b"next".to_vec());
    engine
        .write(&batch, Durability::Buffered)
        .expect("enqueue the next");
    assert!(
        engine.scan_cached(&range, 10, false).is_none(),
        "a cached scan stepped over 5,000 removed items on the caller's thread"
    );
    let next = vec![(key(5_001), b"next".to_vec())];
    assert_eq!(engine.scan(&range, 10, false).expect("scan"), next);
    // Starting after the removed items (as a queue reader that knows where it stopped does),
    // the same item is answered from memory.
    let after = KeyRange {
        start: key(5_001),
        end: range.end.clone(),
    };
    assert_eq!(
        engine
            .scan_cached(&after, 10, false)
            .map(|r| r.expect("cached scan")),
        Some(next)
    );
}
