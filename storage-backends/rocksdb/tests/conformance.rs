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
