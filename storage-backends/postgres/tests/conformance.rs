//! The storage conformance suite against PostgreSQL: the typed stores, and persistence across
//! reopening. Each check gets a database of its own on the server `SIREN_TEST_POSTGRES_URL`
//! names (started by scripts/test.sh).

mod support;

use siren_storage_conformance::PersistentBackend;
use siren_storage_postgres::PgStorage;
use support::TestDb;

/// A database that outlives the stores opened on it.
struct Backend {
    db: TestDb,
}

impl PersistentBackend for Backend {
    type Store = PgStorage;

    async fn open(&self) -> PgStorage {
        self.db.open().await
    }
}

siren_storage_conformance::storage_tests!(async || {
    let db = TestDb::create().await;
    let storage = db.open().await;
    (storage, db)
});

siren_storage_conformance::persistence_tests!(async || Backend {
    db: TestDb::create().await,
});
