//! Versioned schema migrations, embedded SQL applied at start-up.

use siren_api::{Error, ErrorCode};

use crate::PgStorage;

/// One schema version: its number, a short name, and the SQL that brings the previous version
/// to it.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order; versions are 1, 2, 3, … without gaps (checked by a test).
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "credential_stamps",
        sql: include_str!("../migrations/0002_credential_stamps.sql"),
    },
    Migration {
        version: 3,
        name: "leases",
        sql: include_str!("../migrations/0003_leases.sql"),
    },
];

/// The schema version this build brings a database to (the last migration's).
pub const SCHEMA_VERSION: i32 = 3;

/// The key of the transaction-scoped advisory lock held while migrating (`pg_advisory_xact_lock`):
/// the bytes of `"siren"` and the schema's purpose, so it does not collide with another
/// application's lock by accident.
pub const MIGRATION_LOCK: i64 = 0x7369_7265_6e5f_7363; // "siren_sc"

/// How long a start-up waits for another server's migration before giving up.
const LOCK_TIMEOUT: &str = "60s";

/// Brings the schema up to [`SCHEMA_VERSION`]; the version the database is at afterwards.
pub(crate) async fn migrate(storage: &PgStorage) -> Result<i32, Error> {
    let op = "migrate";
    let db = |e: tokio_postgres::Error| storage.db_error(op, &e);
    let mut client = storage.client(op).await?;
    let tx = client.transaction().await.map_err(db)?;
    tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .await
        .map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| {
            let mut err = storage.db_error(op, &e);
            err.message.push_str(
                " (waiting for another server that is migrating the same database; \
                 retry when it is done)",
            );
            err
        })?;
    // Created only when missing: `CREATE TABLE IF NOT EXISTS` would need the right to create
    // tables even when the table exists.
    let exists: bool = tx
        .query_one("SELECT to_regclass('siren_schema') IS NOT NULL", &[])
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    if !exists {
        tx.batch_execute(
            "CREATE TABLE siren_schema (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(db)?;
    }
    let current: Option<i32> = tx
        .query_one("SELECT max(version) FROM siren_schema", &[])
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    let current = current.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(Error::new(
            ErrorCode::Internal,
            format!(
                "postgresql at {}: the database has schema version {current}, newer than \
                 version {SCHEMA_VERSION}, the newest this sirend knows; refusing to start \
                 (run the sirend that upgraded it, or a newer one)",
                storage.target
            ),
        ));
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(migration.sql).await.map_err(|e| {
            let mut err = storage.db_error(op, &e);
            err.message.push_str(&format!(
                " (applying migration {:04}_{})",
                migration.version, migration.name
            ));
            err
        })?;
        tx.execute(
            "INSERT INTO siren_schema (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(db)?;
        tracing::info!(
            target: "siren_storage_postgres",
            "postgresql at {}: applied migration {:04}_{}",
            storage.target,
            migration.version,
            migration.name
        );
    }
    tx.commit().await.map_err(db)?;
    Ok(SCHEMA_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_1_to_the_schema_version() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i as i32 + 1, "{}", migration.name);
            assert!(!migration.sql.trim().is_empty());
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }
}
