//! [`DirectoryStore`]: the `directory_entries` table, appended by compare-and-set.

use async_trait::async_trait;
use siren_api::storage::{DeviceKey, DirectoryStore, EntryKind, StoredEntry};
use siren_api::{Error, ErrorCode, Username};

use crate::{PgStorage, error, rows, seq_from_db, seq_to_db};

fn kind_to_db(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Add => "add",
        EntryKind::Revoke => "revoke",
    }
}

fn kind_from_db(kind: &str) -> Result<EntryKind, Error> {
    match kind {
        "add" => Ok(EntryKind::Add),
        "revoke" => Ok(EntryKind::Revoke),
        other => Err(error::corrupt(
            "directory entry",
            format!("unknown kind {other:?}"),
        )),
    }
}

/// A stored 32-byte device key.
pub(crate) fn device_key(what: &str, bytes: &[u8]) -> Result<DeviceKey, Error> {
    bytes
        .try_into()
        .map_err(|_| error::corrupt(what, format!("a device key of {} bytes", bytes.len())))
}

impl PgStorage {
    /// The number of the user's last entry (0 if none).
    async fn last_entry(
        &self,
        op: &str,
        client: &deadpool_postgres::Client,
        user: &Username,
    ) -> Result<u64, Error> {
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let statement = client
            .prepare_cached(
                "SELECT coalesce(max(seq), 0) FROM directory_entries WHERE username = $1",
            )
            .await
            .map_err(db)?;
        let row = client
            .query_one(&statement, &[&user.as_str()])
            .await
            .map_err(db)?;
        seq_from_db("directory entry number", row.try_get(0).map_err(db)?)
    }
}

#[async_trait]
impl DirectoryStore for PgStorage {
    async fn entries(&self, user: &Username) -> Result<Vec<StoredEntry>, Error> {
        let op = "entries";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        let statement = client
            .prepare_cached(
                "SELECT seq, kind, device, entry FROM directory_entries
                 WHERE username = $1 ORDER BY seq",
            )
            .await
            .map_err(db)?;
        client
            .query(&statement, &[&user.as_str()])
            .await
            .map_err(db)?
            .iter()
            .map(|row| {
                Ok(StoredEntry {
                    seq: seq_from_db("directory entry number", row.try_get(0).map_err(db)?)?,
                    kind: kind_from_db(row.try_get(1).map_err(db)?)?,
                    device: device_key("directory entry", row.try_get(2).map_err(db)?)?,
                    bytes: row.try_get(3).map_err(db)?,
                })
            })
            .collect()
    }

    /// One statement: the entry is inserted only if the user's last stored entry is
    /// `seq - 1`, and `ON CONFLICT DO NOTHING` on the `(username, seq)` key settles a race:
    /// of two appends of the same number, the second waits for the first's commit and then
    /// inserts nothing. An entry is only ever inserted when its predecessor was committed
    /// before the statement began, so a chain never has a gap. (If the predecessor committed
    /// just after the statement began, the statement runs again.)
    async fn append_entry(&self, user: &Username, entry: &StoredEntry) -> Result<(), Error> {
        let op = "append_entry";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        let seq = entry.seq;
        let fits = seq_to_db(seq).filter(|&s| s > 0);
        let mut attempts = 0;
        loop {
            attempts += 1;
            if let Some(db_seq) = fits {
                let statement = client
                    .prepare_cached(
                        "INSERT INTO directory_entries (username, seq, kind, device, entry)
                         SELECT $1::text, $2::bigint, $3::text, $4::bytea, $5::bytea
                         WHERE (SELECT coalesce(max(seq), 0) FROM directory_entries
                                WHERE username = $1::text) = $2::bigint - 1
                         ON CONFLICT (username, seq) DO NOTHING",
                    )
                    .await
                    .map_err(db)?;
                let inserted = client
                    .execute(
                        &statement,
                        &[
                            &user.as_str(),
                            &db_seq,
                            &kind_to_db(entry.kind),
                            &&entry.device[..],
                            &entry.bytes.as_slice(),
                        ],
                    )
                    .await
                    .map_err(db)?;
                if rows(inserted) == 1 {
                    return Ok(());
                }
            }
            // Refused (or 0, or a number past 2^63 - 1, which follows nothing stored).
            let last = self.last_entry(op, &client, user).await?;
            if last.checked_add(1) != Some(seq) {
                return Err(Error::new(
                    ErrorCode::Rollback,
                    format!(
                        "the directory of {user} ends at entry {last}; \
                         entry {seq} does not follow it"
                    ),
                ));
            }
            if fits.is_none() {
                // Only when the chain is at 2^63 - 1 entries, which no chain reaches.
                return Err(Error::new(
                    ErrorCode::Internal,
                    format!("the directory of {user} is full at entry {last}"),
                ));
            }
            if attempts == 3 {
                return Err(Error::new(
                    ErrorCode::Unavailable,
                    format!("the directory of {user} kept changing during the append; retry"),
                ));
            }
            // Entry `seq - 1` was committed after the statement took its snapshot: again.
        }
    }

    async fn delete_entries(&self, user: &Username) -> Result<usize, Error> {
        let sql = "DELETE FROM directory_entries WHERE username = $1";
        self.change("delete_entries", sql, &[&user.as_str()]).await
    }
}
