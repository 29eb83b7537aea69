//! [`ExportStore`]: whole-table reads for `sirend migrate-store`, and verbatim roster import.

use async_trait::async_trait;
use siren_api::storage::{DeviceKey, ExportStore, SessionRecord, StoredRoster};
use siren_api::{Error, ErrorCode, Username};

use crate::accounts::username;
use crate::directory::device_key;
use crate::{PgStorage, rows, seq_to_db, stamp_from_db, time_from_db};

impl PgStorage {
    /// The usernames that `sql` selects, in its order.
    async fn usernames(&self, op: &str, what: &str, sql: &str) -> Result<Vec<Username>, Error> {
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        client
            .query(sql, &[])
            .await
            .map_err(db)?
            .iter()
            .map(|row| username(what, row.try_get(0).map_err(db)?))
            .collect()
    }
}

#[async_trait]
impl ExportStore for PgStorage {
    async fn directory_users(&self) -> Result<Vec<Username>, Error> {
        self.usernames(
            "directory_users",
            "directory entry",
            "SELECT DISTINCT username FROM directory_entries ORDER BY username",
        )
        .await
    }

    async fn roster_users(&self) -> Result<Vec<Username>, Error> {
        self.usernames(
            "roster_users",
            "roster",
            "SELECT username FROM rosters ORDER BY username",
        )
        .await
    }

    async fn queue_devices(&self) -> Result<Vec<DeviceKey>, Error> {
        let op = "queue_devices";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        // bytea sorts bytewise.
        client
            .query(
                "SELECT DISTINCT device FROM queue_items ORDER BY device",
                &[],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|row| device_key("queue item", row.try_get(0).map_err(db)?))
            .collect()
    }

    async fn sessions(&self) -> Result<Vec<SessionRecord>, Error> {
        let op = "sessions";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        client
            .query(
                "SELECT id, device, username, last_seen, credential_stamp FROM sessions
                 ORDER BY id",
                &[],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|row| {
                let id: &[u8] = row.try_get(0).map_err(db)?;
                let user: Option<&str> = row.try_get(2).map_err(db)?;
                Ok(SessionRecord {
                    id: id.try_into().map_err(|_| {
                        crate::error::corrupt("session", format!("an id of {} bytes", id.len()))
                    })?,
                    device: device_key("session", row.try_get(1).map_err(db)?)?,
                    user: user.map(|name| username("session", name)).transpose()?,
                    last_seen: time_from_db(row.try_get(3).map_err(db)?),
                    credential_stamp: row
                        .try_get::<_, Option<i64>>(4)
                        .map_err(db)?
                        .map(stamp_from_db),
                })
            })
            .collect()
    }

    async fn import_roster(&self, user: &Username, roster: &StoredRoster) -> Result<(), Error> {
        let op = "import_roster";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let version = seq_to_db(roster.version).ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                format!(
                    "{op}: roster version {} of {user} is beyond what this store holds",
                    roster.version
                ),
            )
        })?;
        let client = self.client(op).await?;
        let inserted = client
            .execute(
                "INSERT INTO rosters (username, version, roster) VALUES ($1, $2, $3)
                 ON CONFLICT (username) DO NOTHING",
                &[&user.as_str(), &version, &roster.bytes.as_slice()],
            )
            .await
            .map_err(db)?;
        if rows(inserted) == 1 {
            Ok(())
        } else {
            Err(Error::new(
                ErrorCode::Rollback,
                format!("{user} already has a roster in the target store"),
            ))
        }
    }
}
