//! [`SessionStore`]: the `sessions` table.

use async_trait::async_trait;
use siren_api::storage::{DeviceKey, SessionRecord, SessionStore, UnixTime};
use siren_api::{Error, Username};

use crate::accounts::username;
use crate::directory::device_key;
use crate::{PgStorage, rows, stamp_from_db, stamp_to_db, time_from_db, time_to_db};

/// Sessions last seen at or before `$1`, for a time below 2^63 (stored as itself).
const EXPIRE: &str = "DELETE FROM sessions WHERE last_seen >= 0 AND last_seen <= $1";

/// The same from 2^63 on: every time below 2^63, and the times stored as negative numbers up
/// to `$1`'s.
const EXPIRE_HIGH: &str = "DELETE FROM sessions WHERE last_seen >= 0 OR last_seen <= $1";

#[async_trait]
impl SessionStore for PgStorage {
    async fn session(&self, id: &[u8; 16]) -> Result<Option<SessionRecord>, Error> {
        let op = "session";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        let statement = client
            .prepare_cached(
                "SELECT device, username, last_seen, credential_stamp FROM sessions WHERE id = $1",
            )
            .await
            .map_err(db)?;
        let Some(row) = client
            .query_opt(&statement, &[&&id[..]])
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let user: Option<&str> = row.try_get(1).map_err(db)?;
        Ok(Some(SessionRecord {
            id: *id,
            device: device_key("session", row.try_get(0).map_err(db)?)?,
            user: user.map(|name| username("session", name)).transpose()?,
            last_seen: time_from_db(row.try_get(2).map_err(db)?),
            credential_stamp: row
                .try_get::<_, Option<i64>>(3)
                .map_err(db)?
                .map(stamp_from_db),
        }))
    }

    async fn put_session(&self, session: &SessionRecord) -> Result<(), Error> {
        let op = "put_session";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO sessions (id, device, username, last_seen, credential_stamp)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET device = excluded.device,
                     username = excluded.username, last_seen = excluded.last_seen,
                     credential_stamp = excluded.credential_stamp",
            )
            .await
            .map_err(db)?;
        client
            .execute(
                &statement,
                &[
                    &&session.id[..],
                    &&session.device[..],
                    &session.user.as_ref().map(|u| u.as_str()),
                    &time_to_db(session.last_seen),
                    &session.credential_stamp.map(stamp_to_db),
                ],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn delete_session(&self, id: &[u8; 16]) -> Result<bool, Error> {
        let sql = "DELETE FROM sessions WHERE id = $1";
        Ok(self.change("delete_session", sql, &[&&id[..]]).await? > 0)
    }

    /// One `DELETE` through the `last_seen` index.
    async fn expire_sessions(&self, cutoff: UnixTime) -> Result<usize, Error> {
        let op = "expire_sessions";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        // Last seen before `cutoff`: at or before `cutoff - 1`.
        let Some(last) = cutoff.checked_sub(1) else {
            return Ok(0);
        };
        let sql = if i64::try_from(last).is_ok() {
            EXPIRE
        } else {
            EXPIRE_HIGH
        };
        let client = self.client(op).await?;
        let statement = client.prepare_cached(sql).await.map_err(db)?;
        let removed = client
            .execute(&statement, &[&time_to_db(last)])
            .await
            .map_err(db)?;
        Ok(rows(removed))
    }

    /// One `DELETE` through the `username` index.
    async fn delete_user_sessions(
        &self,
        user: &Username,
        device: Option<&DeviceKey>,
    ) -> Result<usize, Error> {
        let sql = "DELETE FROM sessions WHERE username = $1 AND ($2::bytea IS NULL OR device = $2)";
        let device = device.map(|d| &d[..]);
        self.change("delete_user_sessions", sql, &[&user.as_str(), &device])
            .await
    }
}
