//! Leases (schema version 3): which node of a cluster does a piece of work that one node at a
//! time may do. Expiry is by the database's clock (`now()`), so the nodes' clocks do not matter.

use siren_api::Error;

use crate::PgStorage;

/// Takes lease `name` for `holder` for `ttl`, or renews it: whether `holder` has it now.
pub(crate) async fn take(
    storage: &PgStorage,
    name: &str,
    holder: &str,
    ttl: std::time::Duration,
) -> Result<bool, Error> {
    let op = "lease";
    let db = |e: tokio_postgres::Error| storage.db_error(op, &e);
    let client = storage.client(op).await?;
    let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let statement = client
        .prepare_cached(
            "INSERT INTO leases (name, holder, until)
             VALUES ($1::text, $2::text, now() + $3::bigint * interval '1 millisecond')
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
             WHERE leases.holder = excluded.holder OR leases.until < now()
             RETURNING holder",
        )
        .await
        .map_err(db)?;
    let rows = client
        .query(&statement, &[&name, &holder, &millis])
        .await
        .map_err(db)?;
    Ok(!rows.is_empty())
}

/// Ends `holder`'s lease `name`: forgotten when `done`, otherwise left expired.
pub(crate) async fn end(
    storage: &PgStorage,
    name: &str,
    holder: &str,
    done: bool,
) -> Result<(), Error> {
    let op = "end_lease";
    let db = |e: tokio_postgres::Error| storage.db_error(op, &e);
    let client = storage.client(op).await?;
    let sql = if done {
        "DELETE FROM leases WHERE name = $1::text AND holder = $2::text"
    } else {
        "UPDATE leases SET until = now() - interval '1 millisecond'
         WHERE name = $1::text AND holder = $2::text"
    };
    client.execute(sql, &[&name, &holder]).await.map_err(db)?;
    Ok(())
}

/// The leases whose names start with `prefix` and that expired.
pub(crate) async fn expired(storage: &PgStorage, prefix: &str) -> Result<Vec<String>, Error> {
    let op = "expired_leases";
    let db = |e: tokio_postgres::Error| storage.db_error(op, &e);
    let client = storage.client(op).await?;
    let rows = client
        .query(
            "SELECT name FROM leases WHERE until < now() AND starts_with(name, $1::text)
             ORDER BY name",
            &[&prefix],
        )
        .await
        .map_err(db)?;
    rows.iter()
        .map(|row| row.try_get::<_, String>(0).map_err(db))
        .collect()
}
