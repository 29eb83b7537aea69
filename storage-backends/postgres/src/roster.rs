//! [`RosterStore`]: the `rosters` table, replaced by compare-and-set on `version`.

use async_trait::async_trait;
use siren_api::storage::{RosterStore, StoredRoster};
use siren_api::{Error, ErrorCode, Username};

use crate::{PgStorage, rows, seq_from_db, seq_to_db};

/// Version 1: inserted if the user has no roster (a stored version 0, which only an import
/// can leave, counts as none).
const PUT_FIRST: &str = "
INSERT INTO rosters AS r (username, version, roster) VALUES ($1, $2::bigint, $3)
ON CONFLICT (username) DO UPDATE SET version = excluded.version, roster = excluded.roster
WHERE r.version = excluded.version - 1";

/// A later version: replaces version `n - 1` only. Of racing writers, the first takes the row
/// lock; the others wait, then find the version moved on and change nothing.
const PUT_NEXT: &str = "
UPDATE rosters SET version = $2::bigint, roster = $3
WHERE username = $1 AND version = $2::bigint - 1";

#[async_trait]
impl RosterStore for PgStorage {
    async fn roster(&self, user: &Username) -> Result<Option<StoredRoster>, Error> {
        let op = "roster";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        let statement = client
            .prepare_cached("SELECT version, roster FROM rosters WHERE username = $1")
            .await
            .map_err(db)?;
        let Some(row) = client
            .query_opt(&statement, &[&user.as_str()])
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        Ok(Some(StoredRoster {
            version: seq_from_db("roster version", row.try_get(0).map_err(db)?)?,
            bytes: row.try_get(1).map_err(db)?,
        }))
    }

    async fn put_roster(&self, user: &Username, roster: &StoredRoster) -> Result<(), Error> {
        let op = "put_roster";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        let version = roster.version;
        // 0 follows nothing; a version past 2^63 - 1 follows nothing stored.
        let sql = match seq_to_db(version) {
            Some(1) => Some(PUT_FIRST),
            Some(v) if v > 1 => Some(PUT_NEXT),
            _ => None,
        };
        if let (Some(sql), Some(db_version)) = (sql, seq_to_db(version)) {
            let statement = client.prepare_cached(sql).await.map_err(db)?;
            let changed = client
                .execute(
                    &statement,
                    &[&user.as_str(), &db_version, &roster.bytes.as_slice()],
                )
                .await
                .map_err(db)?;
            if rows(changed) == 1 {
                return Ok(());
            }
        }
        let statement = client
            .prepare_cached("SELECT version FROM rosters WHERE username = $1")
            .await
            .map_err(db)?;
        let stored = match client
            .query_opt(&statement, &[&user.as_str()])
            .await
            .map_err(db)?
        {
            Some(row) => seq_from_db("roster version", row.try_get(0).map_err(db)?)?,
            None => 0,
        };
        if stored.checked_add(1) == Some(version) && sql.is_none() {
            // Only over version 2^63 - 1, which no roster reaches.
            return Err(Error::new(
                ErrorCode::Internal,
                format!("the roster of {user} is at the last version this store can hold"),
            ));
        }
        let held = match stored {
            0 => format!("{user} has no roster"),
            v => format!("the roster of {user} is at version {v}"),
        };
        Err(Error::new(
            ErrorCode::Rollback,
            format!("{held}; version {version} does not follow it"),
        ))
    }

    async fn delete_roster(&self, user: &Username) -> Result<bool, Error> {
        let sql = "DELETE FROM rosters WHERE username = $1";
        Ok(self.change("delete_roster", sql, &[&user.as_str()]).await? > 0)
    }
}
