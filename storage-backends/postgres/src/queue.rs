//! [`QueueStore`]: the `queue_items` table and the `queue_counters` of each device.

use std::collections::HashMap;

use async_trait::async_trait;
use siren_api::storage::{DeviceKey, NewQueueItem, QueueStore, QueueUsage, QueuedItem, UnixTime};
use siren_api::{Error, ErrorCode};

use crate::directory::device_key;
use crate::{
    PgStorage, error, limit_to_db, rows, seq_from_db, seq_to_db, time_from_db, time_to_db,
};

/// One statement, so one transaction: raises each device's counter by its number of items
/// (inserting the counter for a new device; rows in device order, so two batches lock shared
/// counters in the same order and cannot deadlock), then inserts the items under the numbers
/// just reserved, in the order given within each device. Returns each device's new counter.
const ENQUEUE: &str = "
WITH new AS (
    SELECT t.device, t.expires, t.item,
           count(*) OVER (PARTITION BY t.device) AS n,
           row_number() OVER (PARTITION BY t.device ORDER BY t.ord) AS nth
    FROM unnest($1::bytea[], $2::bigint[], $3::bytea[])
         WITH ORDINALITY AS t(device, expires, item, ord)
), counted AS (
    INSERT INTO queue_counters AS c (device, last_seq)
    SELECT device, count(*) FROM new GROUP BY device ORDER BY device
    ON CONFLICT (device) DO UPDATE SET last_seq = c.last_seq + excluded.last_seq
    RETURNING device, last_seq
), stored AS (
    INSERT INTO queue_items (device, seq, expires, item)
    SELECT new.device, counted.last_seq - new.n + new.nth, new.expires, new.item
    FROM new JOIN counted USING (device)
)
SELECT device, last_seq FROM counted";

/// Expired items, for `now` below 2^63 (times stored as themselves): oldest first, skipping
/// rows a concurrent acknowledgement holds.
const EXPIRE: &str = "
DELETE FROM queue_items WHERE (device, seq) IN (
    SELECT device, seq FROM queue_items
    WHERE expires >= 0 AND expires <= $1
    ORDER BY expires LIMIT $2
    FOR UPDATE SKIP LOCKED)";

/// The same for `now` from 2^63 on: every time below 2^63 has passed, and the times stored as
/// negative numbers (from 2^63 on) up to `now`'s negative number.
const EXPIRE_HIGH: &str = "
DELETE FROM queue_items WHERE (device, seq) IN (
    SELECT device, seq FROM queue_items
    WHERE expires >= 0 OR expires <= $1
    ORDER BY expires < 0, expires LIMIT $2
    FOR UPDATE SKIP LOCKED)";

/// How often an enqueue is tried again after the database aborted it as a deadlock or a
/// serialisation failure (it then stored nothing).
const ENQUEUE_ATTEMPTS: usize = 3;

impl PgStorage {
    /// Enqueues `items` in one statement (one transaction), retrying a deadlock or
    /// serialisation failure.
    async fn enqueue_statement(&self, items: &[NewQueueItem]) -> Result<Vec<u64>, Error> {
        let op = "enqueue";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let devices: Vec<&[u8]> = items.iter().map(|i| &i.device[..]).collect();
        let expires: Vec<i64> = items.iter().map(|i| time_to_db(i.expires)).collect();
        let bytes: Vec<&[u8]> = items.iter().map(|i| i.bytes.as_slice()).collect();
        let client = self.client(op).await?;
        let statement = client.prepare_cached(ENQUEUE).await.map_err(db)?;
        let mut attempt = 0;
        let counters = loop {
            attempt += 1;
            match client
                .query(&statement, &[&devices, &expires, &bytes])
                .await
            {
                Ok(counters) => break counters,
                Err(e) => {
                    let state = e.code().map(|s| s.code());
                    let retry = matches!(state, Some("40P01" | "40001"));
                    if retry && attempt < ENQUEUE_ATTEMPTS {
                        continue;
                    }
                    if state == Some("22003") {
                        // numeric_value_out_of_range: a counter reached 2^63 - 1.
                        return Err(Error::new(
                            ErrorCode::Internal,
                            format!("{op}: queue sequence numbers exhausted"),
                        ));
                    }
                    return Err(db(e));
                }
            }
        };

        // Each device's first new number, then one more for each of its items, in order.
        let mut count: HashMap<DeviceKey, u64> = HashMap::new();
        for item in items {
            *count.entry(item.device).or_insert(0) += 1;
        }
        let mut next: HashMap<DeviceKey, u64> = HashMap::with_capacity(counters.len());
        for row in &counters {
            let device = device_key("queue counter", row.try_get(0).map_err(db)?)?;
            let last = seq_from_db("queue counter", row.try_get(1).map_err(db)?)?;
            let n = count.get(&device).copied().unwrap_or(0);
            let first = (last + 1).checked_sub(n).ok_or_else(|| {
                error::corrupt("queue counter", format!("{last} after {n} new items"))
            })?;
            next.insert(device, first);
        }
        items
            .iter()
            .map(|item| {
                let seq = next.get_mut(&item.device).ok_or_else(|| {
                    Error::new(
                        ErrorCode::Internal,
                        format!("{op}: the database returned no counter for a device"),
                    )
                })?;
                let this = *seq;
                *seq += 1;
                Ok(this)
            })
            .collect()
    }
}

#[async_trait]
impl QueueStore for PgStorage {
    /// Joins the next statement (`batch`): whoever's turn comes runs everything pending then.
    async fn enqueue(&self, items: &[NewQueueItem]) -> Result<Vec<u64>, Error> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut answer = self.enqueues.join(items);
        let abandoned = |_| {
            Err(Error::new(
                ErrorCode::Internal,
                "enqueue: the statement carrying these items was abandoned",
            ))
        };
        tokio::select! {
            biased;
            done = &mut answer => return done.unwrap_or_else(abandoned),
            _turn = self.enqueues.turn.lock() => {
                if let Some(taken) = self.enqueues.take() {
                    let result = self.enqueue_statement(&taken.items).await;
                    taken.answer(result);
                }
            }
        }
        answer.await.unwrap_or_else(abandoned)
    }

    async fn pending(
        &self,
        device: &DeviceKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<QueuedItem>, Error> {
        let op = "pending";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        // No stored number is above 2^63 - 1.
        let Some(after) = seq_to_db(after) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let client = self.client(op).await?;
        let statement = client
            .prepare_cached(
                "SELECT seq, expires, item FROM queue_items
                 WHERE device = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .await
            .map_err(db)?;
        client
            .query(&statement, &[&&device[..], &after, &limit_to_db(limit)])
            .await
            .map_err(db)?
            .iter()
            .map(|row| {
                Ok(QueuedItem {
                    seq: seq_from_db("queue item number", row.try_get(0).map_err(db)?)?,
                    expires: time_from_db(row.try_get(1).map_err(db)?),
                    bytes: row.try_get(2).map_err(db)?,
                })
            })
            .collect()
    }

    /// Committed synchronously like every other write (the trait would allow less).
    async fn ack(&self, device: &DeviceKey, seqs: &[u64]) -> Result<usize, Error> {
        let op = "ack";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        // Numbers that do not fit are not stored; repeats are counted once by the database.
        let seqs: Vec<i64> = seqs.iter().filter_map(|&s| seq_to_db(s)).collect();
        if seqs.is_empty() {
            return Ok(0);
        }
        let client = self.client(op).await?;
        let statement = client
            .prepare_cached("DELETE FROM queue_items WHERE device = $1 AND seq = ANY($2)")
            .await
            .map_err(db)?;
        let removed = client
            .execute(&statement, &[&&device[..], &seqs])
            .await
            .map_err(db)?;
        Ok(rows(removed))
    }

    /// The device's counter stays: numbers continue above the purged ones.
    async fn purge(&self, device: &DeviceKey) -> Result<usize, Error> {
        let op = "purge";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        let statement = client
            .prepare_cached("DELETE FROM queue_items WHERE device = $1")
            .await
            .map_err(db)?;
        let removed = client
            .execute(&statement, &[&&device[..]])
            .await
            .map_err(db)?;
        Ok(rows(removed))
    }

    async fn expire(&self, now: UnixTime, limit: usize) -> Result<usize, Error> {
        let op = "expire";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        if limit == 0 {
            return Ok(0);
        }
        let sql = if i64::try_from(now).is_ok() {
            EXPIRE
        } else {
            EXPIRE_HIGH
        };
        let client = self.client(op).await?;
        let statement = client.prepare_cached(sql).await.map_err(db)?;
        let removed = client
            .execute(&statement, &[&time_to_db(now), &limit_to_db(limit)])
            .await
            .map_err(db)?;
        Ok(rows(removed))
    }

    async fn count(&self, device: &DeviceKey) -> Result<u64, Error> {
        let op = "count";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        let statement = client
            .prepare_cached("SELECT count(*) FROM queue_items WHERE device = $1")
            .await
            .map_err(db)?;
        let row = client
            .query_one(&statement, &[&&device[..]])
            .await
            .map_err(db)?;
        seq_from_db("queue item count", row.try_get(0).map_err(db)?)
    }

    async fn usage(&self, device: &DeviceKey) -> Result<QueueUsage, Error> {
        let op = "usage";
        let db = |e: tokio_postgres::Error| self.db_error(op, &e);
        let client = self.client(op).await?;
        // octet_length reads the TOAST header, not the value.
        let statement = client
            .prepare_cached(
                "SELECT count(*), coalesce(sum(octet_length(item)), 0)::bigint \
                 FROM queue_items WHERE device = $1",
            )
            .await
            .map_err(db)?;
        let row = client
            .query_one(&statement, &[&&device[..]])
            .await
            .map_err(db)?;
        Ok(QueueUsage {
            items: seq_from_db("queue item count", row.try_get(0).map_err(db)?)?,
            bytes: seq_from_db("queue byte count", row.try_get(1).map_err(db)?)?,
        })
    }
}
